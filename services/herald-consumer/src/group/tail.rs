//! The reader outside the group: keeps the partitions this member holds without owning them —
//! handed off to a new owner that does not serve them yet, or kept as a standby — current, on
//! a thread and a Kafka client of its own. It joins no group and never commits: the group's
//! owner of each partition does that. Records are applied exactly as the member applies them
//! (the same [`PollLoop`] in [`Mode::Tail`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

use herald_kit::kafka::{KafkaArgs, Required, client_config};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::apply::{Applier, Incoming};
use super::error::GroupError;
use super::handle::{Command, TailHandle};
use super::poll::{Mode, PollLoop, Reader, client_position, seek_client};
use super::status::GroupStatus;
use crate::claims::Role;
use crate::metrics::ConsumerMetrics;

/// Properties the tail depends on.
const REQUIRED: &[Required] = &[
    Required { key: "enable.auto.commit", value: "false", why: "the tail reads outside the group and never commits" },
    Required {
        key: "enable.partition.eof",
        value: "true",
        why: "reaching the end of a partition ends a standby's restore",
    },
];

/// Receives the tail client's statistics: the standby partitions' lag.
pub struct TailContext {
    topic: String,
    applier: Arc<Applier>,
    metrics: ConsumerMetrics,
}

impl ClientContext for TailContext {
    fn stats(&self, stats: Statistics) {
        let Some(topic) = stats.topics.get(&self.topic) else { return };
        for (id, p) in &topic.partitions {
            let Some(claim) = self.applier.claims().get(*id) else { continue };
            if claim.role() == Role::Standby && p.hi_offset >= 0 {
                let lag = (p.hi_offset - claim.handled().max(0)).max(0);
                self.metrics.standby_lag.with_label_values(&[&self.topic, &id.to_string()]).set(lag);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)) {
            return;
        }
        tracing::warn!(%error, reason, "Kafka client error (tail)");
    }
}

impl ConsumerContext for TailContext {}

/// The tail: its client, its loop and its commands.
pub struct Tail {
    consumer: BaseConsumer<TailContext>,
    commands: Receiver<Command>,
    state: PollLoop,
    topic: String,
    following: BTreeSet<i32>,
}

/// The tail's client as the loop's [`Reader`]: it stores no offsets.
struct Outside<'a> {
    consumer: &'a BaseConsumer<TailContext>,
    topic: &'a str,
}

impl Reader for Outside<'_> {
    fn seek(&self, partition: i32, offset: i64) -> Result<(), String> {
        seek_client(self.consumer, self.topic, partition, offset)
    }

    fn position(&self, partition: i32) -> Option<i64> {
        client_position(self.consumer, self.topic, partition)
    }

    fn store_offset(&self, _partition: i32, _offset: i64) -> Result<(), String> {
        Ok(())
    }
}

/// Creates the tail's client (reading nothing yet) and the handle that steers it.
pub fn create(
    kafka: &KafkaArgs,
    applier: Arc<Applier>,
    status: Arc<GroupStatus>,
    metrics: ConsumerMetrics,
) -> Result<(Tail, TailHandle), GroupError> {
    let defaults = [
        ("client.id", "herald-consumer-tail"),
        // librdkafka refuses assign() without a group id; this client never joins or commits.
        ("group.id", "herald-consumer-tail"),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("enable.partition.eof", "true"),
        ("statistics.interval.ms", "5000"),
        ("fetch.queue.backoff.ms", "50"),
    ];
    let config = client_config(&kafka.bootstrap_servers, &defaults, &kafka.properties, REQUIRED)?;
    let context = TailContext { topic: kafka.topic.clone(), applier: applier.clone(), metrics: metrics.clone() };
    let consumer: BaseConsumer<TailContext> = config.create_with_context(context).map_err(GroupError::Create)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let state = PollLoop::new(Mode::Tail, &kafka.topic, applier, status, metrics);
    let tail = Tail { consumer, commands: rx, state, topic: kafka.topic.clone(), following: BTreeSet::new() };
    Ok((tail, TailHandle::new(tx)))
}

impl Tail {
    /// Reads until `shutdown` (on a thread of its own: it blocks).
    pub fn run(mut self, shutdown: &CancellationToken) {
        while !shutdown.is_cancelled() {
            self.take_commands();
            if self.following.is_empty() {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let polled = self.consumer.poll(Duration::from_millis(100));
            self.state.polled(polled.is_none());
            let reader = Outside { consumer: &self.consumer, topic: &self.topic };
            match polled {
                None => {}
                Some(Err(KafkaError::PartitionEOF(partition))) => self.state.end_of_partition(&reader, partition),
                Some(Err(error)) => tracing::warn!(%error, "tail error"),
                Some(Ok(message)) => {
                    self.state.record(&reader, &Incoming::of(&message), None);
                }
            }
        }
    }

    fn take_commands(&mut self) {
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.apply(command),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    fn apply(&mut self, command: Command) {
        let mut tpl = TopicPartitionList::new();
        let (partition, changed) = match command {
            Command::Follow { partition, from } => {
                let offset = from.filter(|o| *o >= 0).map_or(Offset::Beginning, Offset::Offset);
                if tpl.add_partition_offset(&self.topic, partition, offset).is_err() {
                    return;
                }
                if self.following.contains(&partition) {
                    // Already read: start over where asked.
                    let _ = self.consumer.incremental_unassign(&tpl);
                }
                (partition, self.consumer.incremental_assign(&tpl).map(|()| self.following.insert(partition)))
            }
            Command::Stop(partition) => {
                if !self.following.contains(&partition) {
                    return;
                }
                tpl.add_partition(&self.topic, partition);
                (partition, self.consumer.incremental_unassign(&tpl).map(|()| self.following.remove(&partition)))
            }
        };
        match changed {
            Ok(_) => tracing::debug!(partition, ?command, following = ?self.following, "tail changed"),
            Err(error) => tracing::warn!(partition, ?command, %error, "the tail could not change what it reads"),
        }
    }
}
