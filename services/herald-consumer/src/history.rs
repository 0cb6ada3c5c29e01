//! `--history`: where a partition's window starts — the first offset whose record was written at
//! or after `now − history`.
//!
//! Kafka answers this from its time index (ListOffsets by timestamp, `offsets_for_times`). Not
//! every Kafka-protocol broker keeps one (nisshi answers the log start for any time), so the
//! answer is checked by reading the record before it and the record at it; when it is wrong, a
//! binary search over the partition's timestamps finds the start by reading about log2(n)
//! records. Either way a restore never starts after a record of the window.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// A record's position and timestamp (milliseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub offset: i64,
    pub timestamp_ms: i64,
}

/// The first offset in `[low, high)` whose record has a timestamp at or after `since_ms` (`high`
/// when none has). `answer` is the broker's, checked before it is used; `read(o)` returns the
/// first record at or after offset `o` (compaction leaves gaps), `None` when it cannot be read —
/// then the search gives up (`None`: restore from the log start).
pub fn window_start(
    since_ms: i64,
    low: i64,
    high: i64,
    answer: Option<i64>,
    mut read: impl FnMut(i64) -> Option<Stamp>,
) -> Option<i64> {
    if low >= high {
        return Some(high);
    }
    if let Some(w) = answer.filter(|w| (low..=high).contains(w)) {
        let before_is_older = w == low || read(w - 1).is_some_and(|s| s.offset >= w || s.timestamp_ms < since_ms);
        let at_is_newer = w == high || read(w).is_some_and(|s| s.timestamp_ms >= since_ms);
        if before_is_older && at_is_newer {
            return Some(w);
        }
    }
    let (mut lo, mut hi) = (low, high);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let s = read(mid)?;
        if s.offset >= hi || s.timestamp_ms >= since_ms {
            hi = mid;
        } else {
            lo = s.offset + 1;
        }
    }
    Some(lo)
}

/// The seeker for `kafka`'s topic: a client of its own (no group, no commits), fetching little.
pub fn seeker(kafka: &herald_kit::kafka::KafkaArgs) -> Result<Seeker, crate::group::error::GroupError> {
    let defaults = [
        ("client.id", "herald-consumer-history"),
        // librdkafka refuses assign() without a group id; this client never joins or commits.
        ("group.id", "herald-consumer-history"),
        ("enable.auto.commit", "false"),
        ("enable.partition.eof", "false"),
        ("fetch.wait.max.ms", "10"),
        ("max.partition.fetch.bytes", "65536"),
        ("queued.max.messages.kbytes", "1024"),
    ];
    let config = herald_kit::kafka::client_config(&kafka.bootstrap_servers, &defaults, &kafka.properties, &[])?;
    let consumer = config.create().map_err(crate::group::error::GroupError::Create)?;
    Ok(Seeker::new(consumer, &kafka.topic))
}

/// A client of its own (no group, no commits) that reads single records' timestamps.
pub struct Seeker {
    consumer: BaseConsumer,
    topic: String,
}

impl Seeker {
    pub fn new(consumer: BaseConsumer, topic: &str) -> Self {
        Self { consumer, topic: topic.to_string() }
    }

    /// Where the window starting at `since_ms` starts in `partition`, by `deadline`; `answer` is
    /// the broker's offsets-for-times answer, if any. The error says why it is not known.
    pub fn window_start(
        &self,
        partition: i32,
        since_ms: i64,
        answer: Option<i64>,
        deadline: Instant,
    ) -> Result<i64, String> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let (low, high) = self
            .consumer
            .fetch_watermarks(&self.topic, partition, remaining)
            .map_err(|e| format!("reading the log start and end: {e}"))?;
        let mut failure = None;
        let found = window_start(since_ms, low, high, answer, |offset| {
            self.read(partition, offset, deadline).map_err(|e| failure = Some(e)).ok()
        });
        let _ = self.consumer.unassign();
        found.ok_or_else(|| failure.unwrap_or_default())
    }

    fn read(&self, partition: i32, offset: i64, deadline: Instant) -> Result<Stamp, String> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset)).map_err(|e| e.to_string())?;
        // A new assignment discards what was fetched for the previous one.
        self.consumer.assign(&tpl).map_err(|e| format!("assigning offset {offset}: {e}"))?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no record at offset {offset} in time"));
            }
            match self.consumer.poll(left.min(Duration::from_millis(100))) {
                Some(Ok(m)) if m.partition() == partition && m.offset() >= offset => {
                    let timestamp_ms = m
                        .timestamp()
                        .to_millis()
                        .ok_or_else(|| format!("the record at {} has no timestamp", m.offset()))?;
                    return Ok(Stamp { offset: m.offset(), timestamp_ms });
                }
                Some(Err(e)) => return Err(format!("reading offset {offset}: {e}")),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log from offset `low` with these timestamps; `None` entries are compacted away.
    fn log(low: i64, stamps: &[Option<i64>]) -> impl Fn(i64) -> Option<Stamp> + '_ {
        move |o| {
            (o.max(low)..low + stamps.len() as i64)
                .find_map(|at| stamps[(at - low) as usize].map(|t| Stamp { offset: at, timestamp_ms: t }))
        }
    }

    #[test]
    fn a_right_answer_is_taken_after_two_reads() {
        let stamps: Vec<Option<i64>> = (0..1000).map(Some).collect();
        let reads = std::cell::Cell::new(0);
        let read = |o| {
            reads.set(reads.get() + 1);
            log(0, &stamps)(o)
        };
        assert_eq!(window_start(600, 0, 1000, Some(600), read), Some(600));
        assert_eq!(reads.get(), 2);
    }

    #[test]
    fn a_wrong_answer_is_searched_past() {
        let stamps: Vec<Option<i64>> = (0..1000).map(|t| Some(t * 10)).collect();
        let reads = std::cell::Cell::new(0);
        let read = |o| {
            reads.set(reads.get() + 1);
            log(0, &stamps)(o)
        };
        // What nisshi answers for any time: the log start.
        assert_eq!(window_start(6000, 0, 1000, Some(0), read), Some(600));
        assert!(reads.get() <= 14, "{} reads", reads.get());
        assert_eq!(window_start(6005, 0, 1000, None, log(0, &stamps)), Some(601));
        // Older than everything, newer than everything.
        assert_eq!(window_start(-1, 0, 1000, Some(999), log(0, &stamps)), Some(0));
        assert_eq!(window_start(99_999, 0, 1000, Some(0), log(0, &stamps)), Some(1000));
    }

    #[test]
    fn gaps_and_a_trimmed_log_start_are_handled() {
        // Offsets 20..120 with times 0..100; every third record compacted away.
        let stamps: Vec<Option<i64>> = (0..100).map(|t| (t % 3 != 0).then_some(t)).collect();
        assert_eq!(window_start(50, 20, 120, None, log(20, &stamps)), Some(70));
        // Time 42 (offset 62) is gone: the search ends at the gap, whose next record (63, time
        // 43) is the window's first; nothing before 62 is in the window.
        assert_eq!(window_start(42, 20, 120, Some(3), log(20, &stamps)), Some(62));
        assert_eq!(window_start(5, 7, 7, None, |_| None), Some(7));
    }

    #[test]
    fn an_unreadable_log_gives_up() {
        assert_eq!(window_start(50, 0, 100, Some(10), |_| None), None);
    }
}
