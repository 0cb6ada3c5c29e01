//! The consumer-group member: a poll loop on its own thread that stores each notification and
//! only then stores its offset (at-least-once), commits on revoke and at shutdown, and keeps the
//! per-partition metrics.
//!
//! A newly assigned partition is read from its earliest retained record: the records before the
//! group's committed offset rebuild the store (a restore; their offsets are not stored again),
//! the rest is consumed as usual. A revoked partition's users are dropped from the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use herald_kit::kafka::{KafkaArgs, Required, ReservedProperty, client_config};
use herald_kit::model::{KIND_HEADER, KIND_READ, decode_marker, decode_record};
use prometheus::{IntCounter, IntGauge};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Headers;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::claims::{Claim, Claims};
use crate::dead_letter::{DeadLetter, Source};
use crate::history;
use crate::membership;
use crate::metrics::{ConsumerMetrics, RecordOutcome};
use crate::store::{Insert, Store};

/// Properties the at-least-once contract and the restore depend on.
pub const REQUIRED: &[Required] = &[
    Required {
        key: "enable.auto.offset.store",
        value: "false",
        why: "an offset is stored only after its notification is in the store",
    },
    Required { key: "enable.partition.eof", value: "true", why: "reaching the end of a partition ends its restore" },
];

/// How long the committed offsets of newly assigned partitions may take to read. The rebalance
/// callback blocks the poll loop meanwhile, so this stays well below max.poll.interval.ms; on a
/// timeout the restore runs to the log end instead.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(3);

/// Records handled between two readings of the wall clock (see `consume`).
const CLOCK_EVERY: u32 = 16;

/// How long finding where the history window starts may take for one assignment (it blocks the
/// poll loop too); beyond it the rest restore from the log start.
const WINDOW_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a partition is read again from the first offset missing before a record (see the
/// gap check in [`consume`]) before the gap is taken as real.
const GAP_RETRIES: u32 = 2;
/// How long asking librdkafka to read a partition again may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the consumer could not start.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error(transparent)]
    Reserved(#[from] ReservedProperty),
    #[error("creating the Kafka consumer: {0}")]
    Create(KafkaError),
    #[error("subscribing to topic {topic}: {source}")]
    Subscribe { topic: String, source: KafkaError },
}

/// What the rest of the process can see of the member.
#[derive(Debug, Default)]
pub struct GroupStatus {
    ready: AtomicBool,
    epoch: AtomicU64,
    processed: AtomicU64,
    assigned: Mutex<Vec<i32>>,
}

impl GroupStatus {
    /// Joined the group and received an assignment (possibly empty).
    pub fn ready(&self) -> Result<(), String> {
        if self.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err("waiting for a partition assignment from the consumer group".into())
        }
    }

    /// Partitions assigned to this member, ascending.
    pub fn assigned(&self) -> Vec<i32> {
        self.assigned.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Records handled (stored, duplicate or invalid) since start.
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Offsets {
    committed: Option<i64>,
    log_start: Option<i64>,
    log_end: Option<i64>,
}

/// Receives librdkafka's callbacks: rebalances, commits, statistics and errors.
pub struct GroupContext {
    topic: String,
    metrics: ConsumerMetrics,
    status: Arc<GroupStatus>,
    claims: Arc<Claims>,
    store: Arc<Store>,
    membership: Arc<membership::Membership>,
    partitions: Mutex<BTreeMap<i32, Offsets>>,
    history: Option<(Duration, history::Seeker)>,
}

impl GroupContext {
    fn publish(&self, partition: i32, o: &Offsets) {
        let p = partition.to_string();
        let labels = [self.topic.as_str(), p.as_str()];
        if let Some(c) = o.committed {
            self.metrics.committed_offset.with_label_values(&labels).set(c);
        }
        if let Some(reported) = o.log_end {
            // The log reaches at least as far as what the group committed, whatever a broker
            // reports for its high watermark.
            let end = reported.max(o.committed.unwrap_or(0));
            self.metrics.log_end_offset.with_label_values(&labels).set(end);
            // Without a committed offset the group owes everything still retained.
            if let Some(from) = o.committed.or(o.log_start) {
                self.metrics.lag.with_label_values(&labels).set((end - from).max(0));
            }
        }
    }

    fn update(&self, tpl: &TopicPartitionList, f: impl Fn(&mut Offsets, i64)) {
        let Ok(mut partitions) = self.partitions.lock() else { return };
        for elem in tpl.elements_for_topic(&self.topic) {
            if let (Some(o), Offset::Offset(v)) = (partitions.get_mut(&elem.partition()), elem.offset()) {
                f(o, v);
                let snapshot = *o;
                self.publish(elem.partition(), &snapshot);
            }
        }
    }

    fn set_assignment(&self) {
        let Ok(partitions) = self.partitions.lock() else { return };
        let assigned: Vec<i32> = partitions.keys().copied().collect();
        self.metrics.assigned_partitions.with_label_values(&[&self.topic]).set(assigned.len() as i64);
        if let Ok(mut a) = self.status.assigned.lock() {
            *a = assigned;
        }
        self.status.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, stats: Statistics) {
        let Some(topic) = stats.topics.get(&self.topic) else { return };
        let Ok(mut partitions) = self.partitions.lock() else { return };
        for (id, p) in &topic.partitions {
            if let Some(o) = partitions.get_mut(id) {
                if p.hi_offset >= 0 {
                    o.log_end = Some(p.hi_offset);
                }
                if p.lo_offset >= 0 {
                    o.log_start = Some(p.lo_offset);
                }
                if o.committed.is_none() && p.committed_offset >= 0 {
                    o.committed = Some(p.committed_offset);
                }
                let snapshot = *o;
                self.publish(*id, &snapshot);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Reaching a partition's end is how a restore ends, not an error.
        if matches!(error, KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)) {
            return;
        }
        tracing::warn!(%error, reason, "Kafka client error");
    }
}

impl GroupContext {
    /// The committed offset of each partition in `tpl`: where its restore ends (0 when the group
    /// never committed one: nothing to restore). `None` for all when it cannot be read; those
    /// restores end at the log end instead.
    fn committed(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) -> HashMap<i32, Option<i64>> {
        match consumer.committed_offsets(tpl.clone(), COMMITTED_TIMEOUT) {
            Ok(committed) => committed
                .elements_for_topic(&self.topic)
                .iter()
                .map(|e| (e.partition(), Some(if let Offset::Offset(v) = e.offset() { v.max(0) } else { 0 })))
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "reading committed offsets failed; restoring up to the log end");
                tpl.elements_for_topic(&self.topic).iter().map(|e| (e.partition(), None)).collect()
            }
        }
    }

    /// With `--history`: the first offset of each partition whose record was written within the
    /// window — Kafka's offsets-for-times answer, checked by reading, or searched for when the
    /// broker answers wrongly (see [`history`]). A partition missing from the answer could not be
    /// asked or read in time and restores as without a window. Runs in the rebalance callback:
    /// bounded by `COMMITTED_TIMEOUT` and `WINDOW_TIMEOUT`, under `max.poll.interval.ms`.
    fn window_starts(&self, consumer: &BaseConsumer<Self>, partitions: &[i32]) -> HashMap<i32, i64> {
        let Some((history, seeker)) = &self.history else { return HashMap::new() };
        let deadline = std::time::Instant::now() + WINDOW_TIMEOUT;
        let since = Utc::now().timestamp_millis().saturating_sub(history.as_millis() as i64).max(0);
        let mut query = TopicPartitionList::new();
        for p in partitions {
            if let Err(error) = query.add_partition_offset(&self.topic, *p, Offset::Offset(since)) {
                tracing::warn!(partition = p, %error, "cannot ask where the history window starts");
            }
        }
        let answers: HashMap<i32, i64> = match consumer.offsets_for_times(query, COMMITTED_TIMEOUT) {
            Ok(found) => found
                .elements_for_topic(&self.topic)
                .iter()
                .filter_map(|e| match (e.error(), e.offset()) {
                    (Ok(()), Offset::Offset(o)) if o >= 0 => Some((e.partition(), o)),
                    _ => None,
                })
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "asking the broker where the history window starts failed; searching the log");
                HashMap::new()
            }
        };
        partitions
            .iter()
            .filter_map(|p| match seeker.window_start(*p, since, answers.get(p).copied(), deadline) {
                Ok(start) => Some((*p, start)),
                Err(error) => {
                    tracing::warn!(partition = p, %error, "finding where the history window starts failed; restoring the whole retained log");
                    None
                }
            })
            .collect()
    }

    fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let started = std::time::Instant::now();
        let partitions: Vec<i32> = tpl.elements_for_topic(&self.topic).iter().map(|e| e.partition()).collect();
        let committed = self.committed(consumer, tpl);
        let window = self.window_starts(consumer, &partitions);
        for p in &partitions {
            let restore_until = committed.get(p).copied().flatten();
            // Read from the start of the retained log (or of the history window) to rebuild this
            // partition's users. A window starting after the committed offset restores nothing:
            // the loop goes on from the committed offset, so no record new to the group is
            // skipped (those older than the window are stored, and reads leave them out).
            let start = match (window.get(p), restore_until) {
                (Some(w), Some(c)) => Offset::Offset((*w).min(c)),
                (Some(w), None) => Offset::Offset(*w),
                (None, _) => Offset::Beginning,
            };
            if let Err(error) = tpl.set_partition_offset(&self.topic, *p, start) {
                tracing::warn!(partition = p, %error, "cannot restore the partition; consuming from the committed offset");
            }
            let claim = self.claims.assign(*p, restore_until);
            if claim.restored() {
                self.metrics.restore_duration.observe(0.0);
            }
            if let Ok(mut table) = self.partitions.lock() {
                table.insert(*p, Offsets { committed: restore_until.filter(|c| *c > 0), ..Offsets::default() });
            }
        }
        let assigned = if matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative) {
            consumer.incremental_assign(tpl)
        } else {
            consumer.assign(tpl)
        };
        if let Err(error) = assigned {
            tracing::error!(?partitions, %error, "assigning partitions failed");
        }
        self.set_assignment();
        self.status.ready.store(true, Ordering::Release);
        self.membership.refresh_soon();
        tracing::info!(
            ?partitions,
            ?committed,
            ?window,
            assigned = ?self.status.assigned(),
            took_ms = started.elapsed().as_millis() as u64,
            "partitions assigned; restoring"
        );
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let partitions: Vec<i32> = tpl.elements_for_topic(&self.topic).iter().map(|e| e.partition()).collect();
        let lost = consumer.assignment_lost();
        if lost {
            self.metrics.assignments_lost.inc();
            tracing::warn!(
                ?partitions,
                "assignment lost; offsets stored since the last commit will be redelivered to the new owner"
            );
        } else if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit is not an error worth a warning.
            if !matches!(error, KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) {
                tracing::warn!(%error, ?partitions, "committing offsets before revocation failed");
            }
        }
        let mut dropped_users = 0;
        for p in &partitions {
            self.claims.revoke(*p);
            dropped_users += self.store.drop_partition(*p);
            if let Ok(mut table) = self.partitions.lock() {
                table.remove(p);
            }
            self.metrics.forget_partition(&self.topic, *p);
        }
        self.metrics.store_bytes.set(self.store.bytes() as i64);
        let unassigned = if matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative) {
            consumer.incremental_unassign(tpl)
        } else {
            consumer.unassign()
        };
        if let Err(error) = unassigned {
            tracing::warn!(?partitions, %error, "unassigning partitions failed");
        }
        self.set_assignment();
        if lost {
            self.status.ready.store(false, Ordering::Release);
        }
        self.membership.refresh_soon();
        tracing::info!(?partitions, dropped_users, "partitions revoked");
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        self.metrics.rebalances.inc();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.on_assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.on_revoke(consumer, tpl),
            other => {
                let code: rdkafka::types::RDKafkaErrorCode = other.into();
                tracing::warn!(error = %code, "rebalance error");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.update(offsets, |o, v| o.committed = Some(v)),
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "offset commit failed"),
        }
    }
}

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
    pub claims: Arc<Claims>,
    pub store: Arc<Store>,
    pub membership: Arc<membership::Membership>,
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
    let context = GroupContext {
        topic: config.kafka.topic.clone(),
        metrics: shared.metrics,
        status: shared.status,
        claims: shared.claims,
        store: shared.store,
        membership: shared.membership,
        partitions: Mutex::new(BTreeMap::new()),
        history: config.history.map(|h| history::seeker(&config.kafka).map(|s| (h, s))).transpose()?,
    };
    let consumer: BaseConsumer<GroupContext> = client.create_with_context(context).map_err(GroupError::Create)?;
    consumer
        .subscribe(&[&config.kafka.topic])
        .map_err(|source| GroupError::Subscribe { topic: config.kafka.topic.clone(), source })?;
    tracing::info!(group_id = %config.group_id, topic = %config.kafka.topic, "joining consumer group");
    Ok(consumer)
}

/// What the loop did before it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consumed {
    /// Records handled (stored, duplicate or invalid), restores not included.
    pub processed: u64,
    /// Notifications in the store when the loop stopped (before leaving the group empties it).
    pub stored: usize,
}

fn restore_completed(ctx: &GroupContext, claim: &Claim, how: &str) {
    let took = claim.assigned_at.elapsed();
    ctx.metrics.restore_duration.observe(took.as_secs_f64());
    tracing::info!(
        partition = claim.partition,
        restore_until = claim.restore_until,
        took_ms = took.as_millis() as u64,
        how,
        "partition restored"
    );
}

/// A record that is neither a notification nor a read marker: logged and copied to the
/// dead-letter topic (when there is one), unless it is being restored (it was handled before).
fn invalid(
    ctx: &GroupContext,
    dead_letter: Option<&DeadLetter>,
    topic: &str,
    message: &rdkafka::message::BorrowedMessage<'_>,
    restoring: bool,
    error: &herald_kit::model::DecodeError,
) {
    if restoring {
        return;
    }
    let (partition, offset) = (message.partition(), message.offset());
    tracing::warn!(topic = %topic, partition, offset, %error, "invalid record skipped");
    let Some(dl) = dead_letter else { return };
    let source = Source { topic, partition, offset };
    match dl.copy(source, message.key(), message.payload(), &error.to_string()) {
        Ok(()) => ctx.metrics.dead_letter_written.inc(),
        Err(copy_error) => {
            // The record is not a notification; it stays in the topic itself.
            ctx.metrics.dead_letter_failed.inc();
            tracing::error!(
                partition, offset, error = %copy_error, dead_letter_topic = dl.topic(),
                "copying an invalid record to the dead-letter topic failed"
            );
        }
    }
}

/// Polls until `shutdown` is cancelled, then commits what was stored and leaves the group. Records
/// skipped as invalid are copied to `dead_letter` first, when there is one.
pub fn consume(
    consumer: BaseConsumer<GroupContext>,
    dead_letter: Option<&DeadLetter>,
    shutdown: &CancellationToken,
) -> Consumed {
    let store = consumer.context().store.clone();
    let ctx = consumer.context().clone();
    let topic = ctx.topic.clone();
    let counters: Vec<IntCounter> = RecordOutcome::ALL.iter().map(|o| ctx.metrics.record_counter(&topic, *o)).collect();
    let count = |o: RecordOutcome| {
        if let Some(c) = counters.get(o.index()) {
            c.inc();
        }
    };
    let restored_records = ctx.metrics.restore_records.with_label_values(&[&topic]);
    // Per assigned partition, looked up once per assignment: its claim and its processed-offset
    // gauge. Records come in runs of one partition, so the last one is kept at hand.
    let mut partitions: HashMap<i32, (Arc<Claim>, IntGauge)> = HashMap::new();
    let mut last: Option<(i32, Arc<Claim>, IntGauge)> = None;
    // Per partition being restored: how far the loop had got when the broker last reported the
    // end of the partition.
    let mut ends_reported: HashMap<i32, i64> = HashMap::new();
    // Per partition: the first missing offset of the last gap seen, and how often it was read
    // again.
    let mut gaps: HashMap<i32, (i64, u32)> = HashMap::new();
    let mut evicted_seen = 0;
    let mut epoch = ctx.status.epoch.load(Ordering::Acquire);
    // The wall clock for the end-to-end latency, read again every few records (reading it for
    // each one cost more than storing the record): off by at most the time those records take.
    let mut clock = (Utc::now(), 0u32);

    while !shutdown.is_cancelled() {
        let polled = consumer.poll(Duration::from_millis(100));
        clock.1 += 1;
        if polled.is_none() || clock.1 >= CLOCK_EVERY {
            clock = (Utc::now(), 0);
        }
        let now_epoch = ctx.status.epoch.load(Ordering::Acquire);
        if now_epoch != epoch {
            partitions.clear();
            last = None;
            ends_reported.clear();
            gaps.clear();
            epoch = now_epoch;
        }
        let message = match polled {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                let Some(claim) = ctx.claims.get(partition) else { continue };
                // The log may end with records no consumer receives (a transactional producer's
                // commit markers): the position librdkafka reports at the end is past them, and
                // everything before it is handled — a read waiting for the log end completes.
                let position = consumer.position().ok().and_then(|list| {
                    list.find_partition(&topic, partition).and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
                });
                if let Some(position) = position
                    && position > claim.handled().max(0)
                    && ctx.claims.handled(&claim, position - 1)
                {
                    restore_completed(&ctx, &claim, "reached the committed offset");
                }
                if !claim.restored() {
                    // The end reported before the committed offset is reached: a broker whose
                    // fetch answers lag behind its log (nisshi's memory engine does) — the
                    // restore goes on to the committed offset. Reported again with no progress
                    // in between, the log really ends short of it (a recreated topic): done.
                    let handled = claim.handled();
                    let short = claim.restore_until.is_some_and(|until| handled < until);
                    let again = ends_reported.insert(partition, handled) == Some(handled);
                    if (!short || again) && ctx.claims.at_end(&claim) {
                        if short {
                            tracing::warn!(
                                partition,
                                handled,
                                restore_until = claim.restore_until,
                                "the log ends before the committed offset; restore complete"
                            );
                        }
                        restore_completed(&ctx, &claim, "reached the log end");
                    }
                }
                continue;
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "consumer error");
                continue;
            }
            Some(Ok(m)) => m,
        };
        let (partition, offset) = (message.partition(), message.offset());
        let (claim, processed_gauge) = match &last {
            Some((p, claim, gauge)) if *p == partition => (claim.clone(), gauge.clone()),
            _ => {
                let cached = match partitions.get(&partition) {
                    Some(known) => Some(known.clone()),
                    None => ctx.claims.get(partition).map(|claim| {
                        let known = (claim, ctx.metrics.processed_gauge(&topic, partition));
                        partitions.insert(partition, known.clone());
                        known
                    }),
                };
                let Some((claim, gauge)) = cached else {
                    // Fetched before its partition was revoked: the new owner handles it. Stored
                    // here, it would pass for a redelivery's original if the partition came back,
                    // and the restore would skip the records before it as duplicates.
                    tracing::debug!(partition, offset, "record of a partition no longer assigned skipped");
                    continue;
                };
                last = Some((partition, claim.clone(), gauge.clone()));
                (claim, gauge)
            }
        };
        // Offsets of a partition are consecutive unless the log lacks some (compaction, transaction
        // markers, retention); a fetch that skipped records must not lose them. On a gap the
        // partition is read again from the first missing offset (the records after it are not
        // handled now: they come again); still missing after `GAP_RETRIES` reads, the gap is real.
        let expected = claim.handled();
        if expected >= 0 && offset > expected {
            let tries = gaps.entry(partition).or_insert((expected, 0));
            if tries.0 != expected {
                *tries = (expected, 0);
            }
            if tries.1 < GAP_RETRIES {
                tries.1 += 1;
                ctx.metrics.offset_gaps.with_label_values(&["refetched"]).inc();
                tracing::warn!(
                    partition,
                    expected,
                    offset,
                    "records missing before this one; reading the partition again from the first"
                );
                match consumer.seek(&topic, partition, Offset::Offset(expected), SEEK_TIMEOUT) {
                    Ok(()) => continue,
                    Err(error) => tracing::warn!(partition, %error, "reading the partition again failed; going on"),
                }
            } else {
                ctx.metrics.offset_gaps.with_label_values(&["absent"]).inc();
                tracing::info!(partition, from = expected, to = offset, "offsets not in the log; going on");
            }
        }
        // Handled by the group before this assignment: rebuilding the store, not new.
        let restoring = claim.restore_until.is_some_and(|until| offset < until);
        let is_marker = message
            .headers()
            .is_some_and(|h| h.iter().any(|h| h.key == KIND_HEADER && h.value == Some(KIND_READ.as_bytes())));
        let decoded = if is_marker {
            decode_marker(message.key(), message.payload()).map(|marker| {
                let marked = store.mark_read(&marker, partition, offset);
                tracing::debug!(partition, offset, user = marker.user, marked, "read marker applied");
                None
            })
        } else {
            decode_record(message.key(), message.payload()).map(Some)
        };
        let outcome = match decoded {
            Ok(None) => RecordOutcome::Marker,
            Ok(Some(record)) => {
                let id = record.id;
                let outcome = match store.insert(&record, partition, offset) {
                    Insert::Stored if restoring => RecordOutcome::Stored,
                    Insert::Stored => {
                        let latency = (clock.0.max(record.sent_at) - record.sent_at).to_std().unwrap_or_default();
                        ctx.metrics.end_to_end_latency.observe(latency.as_secs_f64());
                        RecordOutcome::Stored
                    }
                    Insert::Duplicate => RecordOutcome::Duplicate,
                };
                tracing::debug!(partition, offset, %id, outcome = outcome.label(), "record handled");
                outcome
            }
            Err(error) => {
                invalid(&ctx, dead_letter, &topic, &message, restoring, &error);
                RecordOutcome::Invalid
            }
        };
        if restoring {
            restored_records.inc();
        } else {
            count(outcome);
            // Stored (or deliberately skipped): only now may the offset move past it.
            if let Err(error) = consumer.store_offset_from_message(&message) {
                tracing::debug!(partition, offset, %error, "offset not stored (partition no longer assigned)");
            }
        }
        ctx.metrics.store_bytes.set(store.bytes() as i64);
        let evicted = store.evicted_for_budget();
        if evicted > evicted_seen {
            ctx.metrics.store_evictions.inc_by(evicted - evicted_seen);
            evicted_seen = evicted;
        }
        if !restoring {
            processed_gauge.set(offset + 1);
            ctx.status.processed.fetch_add(1, Ordering::Relaxed);
        }
        // Last: a reader waiting on this offset finds the record in the store.
        if ctx.claims.handled(&claim, offset) {
            restore_completed(&ctx, &claim, "reached the committed offset");
        }
    }

    let processed = ctx.status.processed();
    let stored = store.len();
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => tracing::info!("final offsets committed"),
        Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => tracing::warn!(%error, "committing final offsets failed; they will be redelivered"),
    }
    // Dropping closes the consumer: the assignment is revoked and the member leaves the group.
    drop(consumer);
    tracing::info!(processed, "left the consumer group");
    Consumed { processed, stored }
}
