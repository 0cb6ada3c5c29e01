//! The poll loop as a type: its state across polls (the claims being read, gaps being re-read,
//! partition ends seen) and one step method per event — a change of the claims, a record, a gap,
//! the end of a partition, a record of a partition no longer read here, the commit. The group
//! member runs it ([`Mode::Member`]: it stores offsets and counts records), and so does the reader
//! outside the group that keeps handed-off and standby partitions current ([`Mode::Tail`], see
//! [`super::tail`]). The Kafka client is behind [`Reader`], so each step is tested without a
//! broker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::{IntCounter, IntGauge};
use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use tokio_util::sync::CancellationToken;

use super::apply::{Applied, Applier, Incoming};
use super::context::GroupContext;
use super::status::GroupStatus;
use crate::claims::{Claim, Role};
use crate::dead_letter::{DeadLetter, Source};
use crate::metrics::{ConsumerMetrics, RecordOutcome};

/// Records handled between two readings of the wall clock: reading it for each record cost more
/// than storing the record; the latency is off by at most the time those records take.
const CLOCK_EVERY: u32 = 16;
/// How often a partition is read again from the first offset missing before a record (see
/// [`PollLoop::gap`]) before the gap is taken as real.
const GAP_RETRIES: u32 = 2;
/// How long asking librdkafka to read a partition again may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(1);

/// What the loop needs of the Kafka client it reads with.
pub trait Reader {
    /// Reads `partition` again from `offset` (what was fetched after it is dropped).
    fn seek(&self, partition: i32, offset: i64) -> Result<(), String>;
    /// The offset the client reads `partition` from next.
    fn position(&self, partition: i32) -> Option<i64>;
    /// The record at `offset` is handled: the group may commit past it.
    fn store_offset(&self, partition: i32, offset: i64) -> Result<(), String>;
}

/// The group member's client as the loop's [`Reader`], with the record in hand (its offset is
/// stored through the message, without looking the topic up again).
struct Member<'a> {
    consumer: &'a BaseConsumer<GroupContext>,
    topic: &'a str,
    message: Option<&'a BorrowedMessage<'a>>,
}

/// [`Reader::seek`] for either client (the member's or the tail's).
pub(super) fn seek_client<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(), String> {
    consumer.seek(topic, partition, Offset::Offset(offset), SEEK_TIMEOUT).map_err(|e| e.to_string())
}

/// [`Reader::position`] for either client.
pub(super) fn client_position<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let list = consumer.position().ok()?;
    match list.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

impl Reader for Member<'_> {
    fn seek(&self, partition: i32, offset: i64) -> Result<(), String> {
        seek_client(self.consumer, self.topic, partition, offset)
    }

    fn position(&self, partition: i32) -> Option<i64> {
        client_position(self.consumer, self.topic, partition)
    }

    fn store_offset(&self, partition: i32, offset: i64) -> Result<(), String> {
        let stored = match self.message {
            Some(m) if m.partition() == partition && m.offset() == offset => self.consumer.store_offset_from_message(m),
            _ => self.consumer.store_offset(self.topic, partition, offset),
        };
        stored.map_err(|e| e.to_string())
    }
}

/// A claim of the current assignment and its processed-offset gauge, looked up once.
#[derive(Clone)]
struct Held {
    claim: Arc<Claim>,
    processed: IntGauge,
}

/// Which claims a loop reads, and what it does besides applying records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The group member: its own partitions; offsets stored for the commit, records counted.
    Member,
    /// The reader outside the group: handed-off and standby partitions; never a commit.
    Tail,
}

impl Mode {
    fn reads(self, role: Role) -> bool {
        match self {
            Mode::Member => role == Role::Member,
            Mode::Tail => role.tailed(),
        }
    }
}

/// What the loop keeps between polls.
pub struct PollLoop {
    mode: Mode,
    topic: String,
    applier: Arc<Applier>,
    status: Arc<GroupStatus>,
    metrics: ConsumerMetrics,
    counters: Vec<IntCounter>,
    restored_records: IntCounter,
    /// Per assigned partition, looked up once per assignment. Records come in runs of one
    /// partition, so the last one is kept at hand.
    held: HashMap<i32, Held>,
    last: Option<(i32, Held)>,
    /// Per partition being restored: how far the loop had got when the broker last reported the
    /// end of the partition.
    ends_reported: HashMap<i32, i64>,
    /// Per partition: the first missing offset of the last gap seen, and how often it was read
    /// again.
    gaps: HashMap<i32, (i64, u32)>,
    epoch: u64,
    /// The wall clock for the end-to-end latency and how many records ago it was read.
    clock: (DateTime<Utc>, u32),
}

/// What became of one record.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Handled: its outcome (restores count as their outcome too, but not in the metrics).
    Handled(RecordOutcome),
    /// Its partition is not read by this loop (any more): skipped.
    NotHeld,
    /// Records are missing before it: the partition is read again from the first missing one.
    Refetch(i64),
}

impl PollLoop {
    pub fn new(
        mode: Mode,
        topic: &str,
        applier: Arc<Applier>,
        status: Arc<GroupStatus>,
        metrics: ConsumerMetrics,
    ) -> Self {
        let counters = RecordOutcome::ALL.iter().map(|o| metrics.record_counter(topic, *o)).collect();
        Self {
            mode,
            topic: topic.to_string(),
            restored_records: metrics.restore_records.with_label_values(&[topic]),
            counters,
            epoch: applier.claims().epoch(),
            applier,
            status,
            metrics,
            held: HashMap::new(),
            last: None,
            ends_reported: HashMap::new(),
            gaps: HashMap::new(),
            clock: (Utc::now(), 0),
        }
    }

    /// Called after every poll: reads the clock again every few records (or when idle), and
    /// forgets what was cached about the claims when they changed.
    pub fn polled(&mut self, idle: bool) {
        self.clock.1 += 1;
        if idle || self.clock.1 >= CLOCK_EVERY {
            self.clock = (Utc::now(), 0);
        }
        let epoch = self.applier.claims().epoch();
        if epoch != self.epoch {
            self.assignment_changed(epoch);
        }
    }

    fn assignment_changed(&mut self, epoch: u64) {
        self.held.clear();
        self.last = None;
        self.ends_reported.clear();
        self.gaps.clear();
        self.epoch = epoch;
    }

    /// The claim of `partition` this loop reads, if any. Its role is checked for every record:
    /// the other loop may take it over at any moment.
    fn held(&mut self, partition: i32) -> Option<Held> {
        let held = self.cached(partition)?;
        self.mode.reads(held.claim.role()).then_some(held)
    }

    fn cached(&mut self, partition: i32) -> Option<Held> {
        if let Some((p, held)) = &self.last
            && *p == partition
        {
            return Some(held.clone());
        }
        let held = match self.held.get(&partition) {
            Some(known) => known.clone(),
            None => {
                let claim = self.applier.claims().get(partition)?;
                let known = Held { claim, processed: self.metrics.processed_gauge(&self.topic, partition) };
                self.held.insert(partition, known.clone());
                known
            }
        };
        self.last = Some((partition, held.clone()));
        Some(held)
    }

    /// The broker reported the end of `partition`'s log.
    pub fn end_of_partition(&mut self, reader: &impl Reader, partition: i32) {
        let Some(claim) = self.applier.claims().get(partition).filter(|c| self.mode.reads(c.role())) else {
            return;
        };
        // The log may end with records no consumer receives (a transactional producer's commit
        // markers): the position librdkafka reports at the end is past them, and everything
        // before it is handled — a read waiting for the log end completes.
        if let Some(position) = reader.position(partition)
            && position > claim.handled().max(0)
        {
            self.applier.handled(&claim, position - 1);
        }
        if claim.restored() {
            return;
        }
        // The end reported before the committed offset is reached: a broker whose fetch answers
        // lag behind its log (nisshi's memory engine does) — the restore goes on to the committed
        // offset. Reported again with no progress in between, the log really ends short of it (a
        // recreated topic): done.
        let handled = claim.handled();
        let short = claim.restore_until().is_some_and(|until| handled < until);
        let again = self.ends_reported.insert(partition, handled) == Some(handled);
        if !short || again {
            if short {
                tracing::warn!(
                    partition,
                    handled,
                    restore_until = claim.restore_until(),
                    "the log ends before the committed offset; restore complete"
                );
            }
            self.applier.at_end(&claim);
        }
    }

    /// Offsets of a partition are consecutive unless the log lacks some (compaction,
    /// transaction markers, retention); a fetch that skipped records must not lose them. On a
    /// gap the partition is read again from the first missing offset (the records after it are
    /// not handled now: they come again); still missing after [`GAP_RETRIES`] reads, the gap is
    /// real. `Some(first missing)` when the partition is to be read again.
    fn gap(&mut self, partition: i32, expected: i64, offset: i64) -> Option<i64> {
        if expected < 0 || offset <= expected {
            return None;
        }
        let tries = self.gaps.entry(partition).or_insert((expected, 0));
        if tries.0 != expected {
            *tries = (expected, 0);
        }
        if tries.1 < GAP_RETRIES {
            tries.1 += 1;
            self.metrics.offset_gaps.with_label_values(&["refetched"]).inc();
            tracing::warn!(
                partition,
                expected,
                offset,
                "records missing before this one; reading the partition again from the first"
            );
            return Some(expected);
        }
        self.metrics.offset_gaps.with_label_values(&["absent"]).inc();
        tracing::info!(partition, from = expected, to = offset, "offsets not in the log; going on");
        None
    }

    /// One record: checked for a gap, applied to the store, then its offset stored for the commit
    /// (unless it is being restored: the group handled it before). Invalid records are copied to
    /// `dead_letter` first, when there is one.
    pub fn record(&mut self, reader: &impl Reader, record: &Incoming<'_>, dead_letter: Option<&DeadLetter>) -> Step {
        let (partition, offset) = (record.partition, record.offset);
        let Some(held) = self.held(partition) else {
            // Fetched before its partition was revoked: the new owner handles it. Stored here, it
            // would pass for a redelivery's original if the partition came back, and the restore
            // would skip the records before it as duplicates.
            tracing::debug!(partition, offset, "record of a partition no longer assigned skipped");
            return Step::NotHeld;
        };
        if let Some(first_missing) = self.gap(partition, held.claim.handled(), offset) {
            match reader.seek(partition, first_missing) {
                Ok(()) => return Step::Refetch(first_missing),
                Err(error) => tracing::warn!(partition, %error, "reading the partition again failed; going on"),
            }
        }
        if self.mode == Mode::Tail {
            // The group's owner counts, commits and dead-letters it.
            let outcome = self.applier.apply(record, None).outcome();
            self.applier.handled(&held.claim, offset);
            return Step::Handled(outcome);
        }
        // Handled by the group before this assignment: rebuilding the store, not new.
        let restoring = held.claim.restore_until().is_some_and(|until| offset < until);
        let applied = self.applier.apply(record, (!restoring).then_some(self.clock.0));
        if let Applied::Invalid(error) = &applied
            && !restoring
        {
            self.invalid(record, dead_letter, error);
        }
        let outcome = applied.outcome();
        if restoring {
            self.restored_records.inc();
        } else {
            self.commit_step(reader, &held, record, outcome);
        }
        // Last: a reader waiting on this offset finds the record in the store.
        self.applier.handled(&held.claim, offset);
        Step::Handled(outcome)
    }

    /// A new record is handled (or deliberately skipped): counted, and only now may the offset
    /// move past it.
    fn commit_step(&self, reader: &impl Reader, held: &Held, record: &Incoming<'_>, outcome: RecordOutcome) {
        if let Some(c) = self.counters.get(outcome.index()) {
            c.inc();
        }
        if let Err(error) = reader.store_offset(record.partition, record.offset) {
            tracing::debug!(
                partition = record.partition,
                offset = record.offset,
                %error,
                "offset not stored (partition no longer assigned)"
            );
        }
        held.processed.set(record.offset + 1);
        self.status.count_processed();
    }

    /// A record that is neither a notification nor a read marker: logged and copied to the
    /// dead-letter topic (when there is one).
    fn invalid(&self, record: &Incoming<'_>, dead_letter: Option<&DeadLetter>, error: &herald_model::DecodeError) {
        let (partition, offset) = (record.partition, record.offset);
        // The error's text can hold a user id (the record's key) or a quoted value: debug only.
        tracing::warn!(topic = %self.topic, partition, offset, reason = error.kind(), "invalid record skipped");
        tracing::debug!(partition, offset, %error, "why the record is invalid");
        let Some(dl) = dead_letter else { return };
        let source = Source { topic: &self.topic, partition, offset };
        match dl.copy(source, record.key, record.payload, &error.to_string()) {
            Ok(()) => self.metrics.dead_letter_written.inc(),
            Err(copy_error) => {
                // The record is not a notification; it stays in the topic itself.
                self.metrics.dead_letter_failed.inc();
                tracing::error!(
                    partition, offset, error = %copy_error, dead_letter_topic = dl.topic(),
                    "copying an invalid record to the dead-letter topic failed"
                );
            }
        }
    }
}

/// What the loop did before it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consumed {
    /// Records handled (stored, duplicate or invalid), restores not included.
    pub processed: u64,
    /// Notifications in the store when the loop stopped (before leaving the group empties it).
    pub stored: usize,
}

/// Polls until `shutdown` is cancelled, then commits what was stored and leaves the group. Records
/// skipped as invalid are copied to `dead_letter` first, when there is one.
pub fn consume(
    consumer: BaseConsumer<GroupContext>,
    dead_letter: Option<&DeadLetter>,
    shutdown: &CancellationToken,
) -> Consumed {
    let ctx = consumer.context().clone();
    let mut state =
        PollLoop::new(Mode::Member, ctx.topic(), ctx.applier().clone(), ctx.status().clone(), ctx.metrics().clone());
    while !shutdown.is_cancelled() {
        let polled = consumer.poll(Duration::from_millis(100));
        state.polled(polled.is_none());
        match polled {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                let reader = Member { consumer: &consumer, topic: ctx.topic(), message: None };
                state.end_of_partition(&reader, partition);
            }
            Some(Err(error)) => tracing::warn!(%error, "consumer error"),
            Some(Ok(message)) => {
                let reader = Member { consumer: &consumer, topic: ctx.topic(), message: Some(&message) };
                state.record(&reader, &Incoming::of(&message), dead_letter);
            }
        }
    }
    let processed = ctx.status().processed();
    let stored = ctx.applier().store().len();
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use herald_model::UserId;

    use super::*;
    use crate::claims::Claims;
    use crate::fixtures::notification;
    use crate::store::Store;

    /// A client that records what the loop asks of it.
    #[derive(Default)]
    struct FakeReader {
        seeks: RefCell<Vec<(i32, i64)>>,
        stored: RefCell<Vec<(i32, i64)>>,
        positions: HashMap<i32, i64>,
    }

    impl Reader for FakeReader {
        fn seek(&self, partition: i32, offset: i64) -> Result<(), String> {
            self.seeks.borrow_mut().push((partition, offset));
            Ok(())
        }
        fn position(&self, partition: i32) -> Option<i64> {
            self.positions.get(&partition).copied()
        }
        fn store_offset(&self, partition: i32, offset: i64) -> Result<(), String> {
            self.stored.borrow_mut().push((partition, offset));
            Ok(())
        }
    }

    struct Fixture {
        state: PollLoop,
        applier: Arc<Applier>,
        status: Arc<GroupStatus>,
        metrics: ConsumerMetrics,
        /// Record values by offset (all for user 2).
        values: Vec<(String, Vec<u8>)>,
    }

    impl Fixture {
        /// A member holding partition 0 with nothing to restore, and ten notifications for it.
        fn new() -> Self {
            let metrics = ConsumerMetrics::register(&prometheus::Registry::new()).unwrap();
            let claims = Arc::new(Claims::default());
            let store = Arc::new(Store::new(100, usize::MAX));
            let applier = Arc::new(Applier::new(store, claims.clone(), metrics.clone()));
            let status = Arc::new(GroupStatus::default());
            let state = PollLoop::new(Mode::Member, "t", applier.clone(), status.clone(), metrics.clone());
            claims.assign(0, Some(0));
            status.set_assigned(vec![0]);
            let values = (0..10)
                .map(|i| {
                    let n = notification(2, &format!("m{i}"));
                    (n.key(), n.encode())
                })
                .collect();
            Self { state, applier, status, metrics, values }
        }

        fn record(&mut self, reader: &FakeReader, offset: i64) -> Step {
            let (key, value) = &self.values[offset as usize];
            let record = Incoming {
                partition: 0,
                offset,
                key: Some(key.as_bytes()),
                payload: Some(value),
                kind: herald_model::RecordKind::Notification,
            };
            self.state.polled(false);
            self.state.record(reader, &record, None)
        }

        fn stored(&self) -> usize {
            self.applier.store().get(&UserId::from(2)).len()
        }

        fn gaps(&self, outcome: &str) -> u64 {
            self.metrics.offset_gaps.with_label_values(&[outcome]).get()
        }

        fn claim(&self) -> Arc<Claim> {
            self.applier.claims().get(0).unwrap()
        }
    }

    #[test]
    fn records_are_applied_then_their_offsets_stored() {
        let mut f = Fixture::new();
        let reader = FakeReader::default();
        for offset in 0..3 {
            assert_eq!(f.record(&reader, offset), Step::Handled(RecordOutcome::Stored));
        }
        assert_eq!(f.stored(), 3);
        assert_eq!(*reader.stored.borrow(), [(0, 0), (0, 1), (0, 2)]);
        assert_eq!(f.claim().handled(), 3);
        assert_eq!(f.status.processed(), 3);
        // A redelivery is a duplicate: counted and committed, not stored twice.
        assert_eq!(f.record(&reader, 2), Step::Handled(RecordOutcome::Duplicate));
        assert_eq!(f.stored(), 3);
    }

    #[test]
    fn a_gap_is_read_again_from_the_first_missing_offset() {
        let mut f = Fixture::new();
        let reader = FakeReader::default();
        for offset in 0..3 {
            f.record(&reader, offset);
        }
        // Offsets 3 and 4 skipped by the fetch: 5 is not handled, the partition is read from 3.
        assert_eq!(f.record(&reader, 5), Step::Refetch(3));
        assert_eq!(*reader.seeks.borrow(), [(0, 3)]);
        assert_eq!((f.stored(), f.claim().handled()), (3, 3));
        assert_eq!((f.gaps("refetched"), f.gaps("absent")), (1, 0));
        // Read again, they come in order.
        for offset in 3..6 {
            assert_eq!(f.record(&reader, offset), Step::Handled(RecordOutcome::Stored));
        }
        assert_eq!(f.stored(), 6);
        // Offset 5 was stored for the commit once, after 3 and 4: never before them.
        assert_eq!(*reader.stored.borrow(), (0..6).map(|o| (0, o)).collect::<Vec<_>>());
    }

    #[test]
    fn a_real_gap_is_given_up_after_two_re_reads() {
        let mut f = Fixture::new();
        let reader = FakeReader::default();
        f.record(&reader, 0);
        assert_eq!(f.record(&reader, 4), Step::Refetch(1));
        assert_eq!(f.record(&reader, 4), Step::Refetch(1));
        // The third time the offsets are taken as absent from the log.
        assert_eq!(f.record(&reader, 4), Step::Handled(RecordOutcome::Stored));
        assert_eq!(*reader.seeks.borrow(), [(0, 1), (0, 1)]);
        assert_eq!((f.gaps("refetched"), f.gaps("absent")), (2, 1));
        assert_eq!(f.claim().handled(), 5);
        // A later gap gets its own re-reads.
        assert_eq!(f.record(&reader, 7), Step::Refetch(5));
    }

    #[test]
    fn the_end_of_a_partition_after_transaction_markers_counts_as_handled() {
        let mut f = Fixture::new();
        // Records at 0 and 1, then a commit marker at 2 no consumer receives: the client's
        // position at the end is 3.
        let reader = FakeReader { positions: HashMap::from([(0, 3)]), ..FakeReader::default() };
        f.record(&reader, 0);
        f.record(&reader, 1);
        assert_eq!(f.claim().handled(), 2);
        f.state.end_of_partition(&reader, 0);
        assert_eq!(f.claim().handled(), 3, "a read waiting for the log end (3) completes");
        // A restore waiting for a committed offset behind the markers completes too.
        let restoring = f.applier.claims().assign(1, Some(3));
        let reader = FakeReader { positions: HashMap::from([(1, 3)]), ..FakeReader::default() };
        f.state.end_of_partition(&reader, 1);
        assert!(restoring.restored());
    }

    #[test]
    fn an_end_reported_short_of_the_committed_offset_waits_for_a_second_report() {
        let mut f = Fixture::new();
        let claim = f.applier.claims().assign(1, Some(10));
        let reader = FakeReader::default();
        f.state.end_of_partition(&reader, 1);
        assert!(!claim.restored(), "the broker's answer may lag its log");
        f.state.end_of_partition(&reader, 1);
        assert!(claim.restored(), "reported again without progress: the log ends there");
    }

    #[test]
    fn a_record_of_a_revoked_partition_is_skipped() {
        let mut f = Fixture::new();
        let reader = FakeReader::default();
        f.record(&reader, 0);
        f.applier.claims().revoke(0);
        f.status.set_assigned(vec![]);
        assert_eq!(f.record(&reader, 1), Step::NotHeld);
        assert_eq!(f.stored(), 1);
        assert_eq!(*reader.stored.borrow(), [(0, 0)], "no offset stored for it");
    }

    #[test]
    fn restored_records_are_not_counted_or_committed_again() {
        let mut f = Fixture::new();
        f.applier.claims().revoke(0);
        let claim = f.applier.claims().assign(0, Some(2));
        f.status.set_assigned(vec![0]);
        let reader = FakeReader::default();
        f.record(&reader, 0);
        f.record(&reader, 1);
        assert!(claim.restored());
        assert!(reader.stored.borrow().is_empty());
        assert_eq!(f.status.processed(), 0);
        assert_eq!(f.metrics.restore_records.with_label_values(&["t"]).get(), 2);
        f.record(&reader, 2);
        assert_eq!(*reader.stored.borrow(), [(0, 2)]);
    }

    #[test]
    fn a_handed_off_partition_is_read_by_the_tail_never_by_the_member() {
        let mut f = Fixture::new();
        let reader = FakeReader::default();
        f.record(&reader, 0);
        f.record(&reader, 1);
        let claim = f.applier.claims().hand_off(0).unwrap();
        // The member's loop leaves it alone now, even with the claim cached.
        assert_eq!(f.record(&reader, 2), Step::NotHeld);
        // The tail applies it, stores no offset and counts nothing.
        let mut tail = PollLoop::new(Mode::Tail, "t", f.applier.clone(), f.status.clone(), f.metrics.clone());
        let outside = FakeReader::default();
        let (key, value) = f.values[2].clone();
        let record = Incoming {
            partition: 0,
            offset: 2,
            key: Some(key.as_bytes()),
            payload: Some(&value),
            kind: herald_model::RecordKind::Notification,
        };
        tail.polled(false);
        assert_eq!(tail.record(&outside, &record, None), Step::Handled(RecordOutcome::Stored));
        assert_eq!((f.stored(), claim.handled()), (3, 3));
        assert!(outside.stored.borrow().is_empty());
        assert_eq!(*reader.stored.borrow(), [(0, 0), (0, 1)]);
        assert_eq!(f.metrics.record_counter("t", RecordOutcome::Stored).get(), 2);
        // Taken back by the group: the member goes on, the tail stops.
        f.applier.claims().take_back(0, Some(2));
        tail.polled(false);
        assert_eq!(tail.record(&outside, &record, None), Step::NotHeld);
        assert_eq!(f.record(&reader, 3), Step::Handled(RecordOutcome::Stored));
    }
}
