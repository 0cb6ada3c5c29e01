//! The consumer-group member: a poll loop on its own thread ([`poll`]) that applies each record
//! to the store ([`apply`]) and only then stores its offset (at-least-once), commits on revoke
//! and at shutdown, and the librdkafka callbacks that restore newly assigned partitions and keep
//! the per-partition metrics ([`context`]).
//!
//! A newly assigned partition is read from its earliest retained record: the records before the
//! group's committed offset rebuild the store (a restore; their offsets are not stored again),
//! the rest is consumed as usual. A revoked partition's users are dropped from the store.

pub mod apply;
pub mod context;
pub mod error;
pub mod handle;
pub mod poll;
pub mod status;
pub mod tail;

use std::sync::Arc;
use std::time::Duration;

use herald_kit::kafka::{KafkaArgs, Required, client_config};
use rdkafka::consumer::{BaseConsumer, Consumer};

pub use self::context::GroupContext;
pub use self::error::GroupError;
pub use self::poll::{Consumed, consume};
pub use self::status::GroupStatus;
use crate::history;
use crate::membership::Membership;
use crate::metrics::ConsumerMetrics;
use apply::Applier;

/// Properties the at-least-once contract and the restore depend on.
pub const REQUIRED: &[Required] = &[
    Required {
        key: "enable.auto.offset.store",
        value: "false",
        why: "an offset is stored only after its notification is in the store",
    },
    Required { key: "enable.partition.eof", value: "true", why: "reaching the end of a partition ends its restore" },
];

/// Consumer settings derived from the flags.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub kafka: KafkaArgs,
    pub group_id: String,
    /// Restore only the records of this window (`--history`).
    pub history: Option<Duration>,
}

/// What the member shares with the rest of the process.
pub struct Shared {
    pub metrics: ConsumerMetrics,
    pub status: Arc<GroupStatus>,
    pub applier: Arc<Applier>,
    pub membership: Arc<Membership>,
    /// Where revoked partitions are handed off to; `None`: handoffs are off.
    pub tail: Option<handle::TailHandle>,
}

/// Creates the member and subscribes it to the topic.
pub fn subscribe(config: &GroupConfig, shared: Shared) -> Result<BaseConsumer<GroupContext>, GroupError> {
    let defaults = [
        ("partition.assignment.strategy", "cooperative-sticky"),
        ("enable.auto.commit", "true"),
        ("auto.commit.interval.ms", "1000"),
        // A new group reads what was sent before it existed.
        ("auto.offset.reset", "earliest"),
        ("statistics.interval.ms", "5000"),
        // When the pre-fetch queue is full librdkafka pauses fetching for this long (default
        // 1 s), leaving some partitions idle while others drain; resume quickly instead.
        ("fetch.queue.backoff.ms", "50"),
        // The poll loop never blocks for long, so a dead member is noticed and a rebalance
        // (which waits up to max.poll.interval.ms for members to rejoin) completes quickly.
        ("session.timeout.ms", "10000"),
        ("max.poll.interval.ms", "30000"),
        ("client.id", "herald-consumer"),
    ];
    let mut client = client_config(&config.kafka.bootstrap_servers, &defaults, &config.kafka.properties, REQUIRED)?;
    client.set("group.id", &config.group_id);
    let history = config.history.map(|h| history::seeker(&config.kafka).map(|s| (h, s))).transpose()?;
    let context = GroupContext::new(
        &config.kafka.topic,
        shared.metrics,
        shared.status,
        shared.applier,
        shared.membership,
        history,
        shared.tail,
    );
    let consumer: BaseConsumer<GroupContext> = client.create_with_context(context).map_err(GroupError::Create)?;
    consumer
        .subscribe(&[&config.kafka.topic])
        .map_err(|source| GroupError::Subscribe { topic: config.kafka.topic.clone(), source })?;
    tracing::info!(group_id = %config.group_id, topic = %config.kafka.topic, "joining consumer group");
    Ok(consumer)
}
