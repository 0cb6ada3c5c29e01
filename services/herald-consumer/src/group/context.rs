//! The member's librdkafka callbacks: a new assignment starts each partition's restore (from the
//! log start, or the history window's, up to the group's committed offset) — or takes back a
//! partition still read outside the group (a handoff or a standby) where that reader got to; a
//! revocation commits and hands the partition off (the tail keeps it current until its new
//! owner serves it) or, with handoffs off or nothing restored yet, drops its users from the
//! store; statistics and commits keep the per-partition offset metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::apply::Applier;
use super::handle::TailHandle;
use super::status::GroupStatus;
use crate::history;
use crate::membership::Membership;
use crate::metrics::ConsumerMetrics;

/// How long the committed offsets of newly assigned partitions may take to read. The rebalance
/// callback blocks the poll loop meanwhile, so this stays well below max.poll.interval.ms; on a
/// timeout the restore runs to the log end instead.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(3);

/// How long finding where the history window starts may take for one assignment (it blocks the
/// poll loop too); beyond it the rest restore from the log start.
const WINDOW_TIMEOUT: Duration = Duration::from_secs(5);

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
    applier: Arc<Applier>,
    membership: Arc<Membership>,
    partitions: Mutex<BTreeMap<i32, Offsets>>,
    history: Option<(Duration, history::Seeker)>,
    /// Where revoked partitions are handed off to; `None`: handoffs are off.
    tail: Option<TailHandle>,
}

impl GroupContext {
    pub(crate) fn new(
        topic: &str,
        metrics: ConsumerMetrics,
        status: Arc<GroupStatus>,
        applier: Arc<Applier>,
        membership: Arc<Membership>,
        history: Option<(Duration, history::Seeker)>,
        tail: Option<TailHandle>,
    ) -> Self {
        Self {
            topic: topic.to_string(),
            metrics,
            status,
            applier,
            membership,
            partitions: Mutex::new(BTreeMap::new()),
            history,
            tail,
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn applier(&self) -> &Arc<Applier> {
        &self.applier
    }

    pub fn status(&self) -> &Arc<GroupStatus> {
        &self.status
    }

    pub fn metrics(&self) -> &ConsumerMetrics {
        &self.metrics
    }

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
        self.status.set_assigned(assigned);
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
        // Nothing new (a cooperative rebalance that only took partitions, or none): nothing to
        // ask. Asking anyway blocks this callback, and with it the consuming of every partition
        // still held, for up to COMMITTED_TIMEOUT while the coordinator is slow or being left.
        if tpl.count() == 0 {
            return HashMap::new();
        }
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
        if partitions.is_empty() {
            return HashMap::new();
        }
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
            let mut start = match (window.get(p), restore_until) {
                (Some(w), Some(c)) => Offset::Offset((*w).min(c)),
                (Some(w), None) => Offset::Offset(*w),
                (None, _) => Offset::Beginning,
            };
            // Still read outside the group (handed off a moment ago, or a standby): its
            // notifications are here and current, so the member goes on from where that reader
            // got to instead of restoring.
            let kept = self.tail.as_ref().and_then(|tail| {
                let claim = self.applier.claims().take_back(*p, restore_until)?;
                tail.stop(*p);
                // A standby no more: its lag series goes with it.
                self.metrics.forget_standby(&self.topic, *p);
                Some(claim)
            });
            let claim = match kept {
                Some(claim) => {
                    if claim.handled() >= 0 {
                        start = Offset::Offset(claim.handled());
                    }
                    tracing::info!(partition = p, from = claim.handled(), "partition taken back; no restore needed");
                    claim
                }
                None => self.applier.claims().assign(*p, restore_until),
            };
            if let Err(error) = tpl.set_partition_offset(&self.topic, *p, start) {
                tracing::warn!(partition = p, %error, "cannot restore the partition; consuming from the committed offset");
            }
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
        self.status.set_ready(true);
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
        let (mut dropped_users, mut handed_off) = (0, Vec::new());
        for p in &partitions {
            // Complete here: keep answering for it, read outside the group, until its new owner
            // serves it (see `crate::handoff`).
            let handoff = self.tail.as_ref().and_then(|tail| {
                let claim = self.applier.claims().hand_off(*p)?;
                tail.follow(*p, Some(claim.handled()));
                Some(claim)
            });
            if handoff.is_some() {
                handed_off.push(*p);
            } else {
                self.applier.claims().revoke(*p);
                dropped_users += self.applier.store().drop_partition(*p);
            }
            if let Ok(mut table) = self.partitions.lock() {
                table.remove(p);
            }
            self.metrics.forget_partition(&self.topic, *p);
        }
        self.metrics.store_bytes.set(self.applier.store().bytes() as i64);
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
            self.status.set_ready(false);
        }
        self.membership.refresh_soon();
        tracing::info!(?partitions, ?handed_off, dropped_users, "partitions revoked");
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
