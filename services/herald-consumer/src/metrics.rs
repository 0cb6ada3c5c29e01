//! The consumer's Prometheus metrics. Per-partition series exist only while the partition is
//! assigned to this member.

use herald_model::RecordKind;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// What happened to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    Stored,
    Duplicate,
    Invalid,
    /// A read marker, applied.
    Marker,
    /// A record kind this version does not know (the record contract's version rule): skipped.
    Unknown,
    /// An id already stored with other content: the first kept.
    ConflictingDuplicate,
}

impl RecordOutcome {
    pub const ALL: [RecordOutcome; 6] = [
        RecordOutcome::Stored,
        RecordOutcome::Duplicate,
        RecordOutcome::Invalid,
        RecordOutcome::Marker,
        RecordOutcome::Unknown,
        RecordOutcome::ConflictingDuplicate,
    ];

    /// Its place in [`RecordOutcome::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            RecordOutcome::Stored => "stored",
            RecordOutcome::Duplicate => "duplicate",
            RecordOutcome::Invalid => "invalid",
            RecordOutcome::Marker => "marker",
            RecordOutcome::Unknown => "unknown",
            RecordOutcome::ConflictingDuplicate => "conflicting_duplicate",
        }
    }
}

#[derive(Clone)]
pub struct ConsumerMetrics {
    pub records: IntCounterVec,
    pub processed_offset: IntGaugeVec,
    pub committed_offset: IntGaugeVec,
    pub log_end_offset: IntGaugeVec,
    pub lag: IntGaugeVec,
    pub assigned_partitions: IntGaugeVec,
    pub rebalances: IntCounter,
    pub assignments_lost: IntCounter,
    /// Offsets missing between two records of a partition: `refetched` (read again from the
    /// first missing one), `absent` (still missing when read again: not in the log).
    pub offset_gaps: IntCounterVec,
    pub streams: IntGauge,
    pub end_to_end_latency: Histogram,
    pub restore_records: IntCounterVec,
    pub restore_duration: Histogram,
    pub store_bytes: IntGauge,
    pub store_evictions: IntCounter,
    pub forwarded_requests: IntCounterVec,
    pub dead_letter_written: IntCounter,
    pub dead_letter_failed: IntCounter,
    /// Early looks at the peers' claims asked for (a forward failed, ownership moved, an
    /// authenticated peer's read landed on the wrong member).
    pub refresh_requests: IntCounter,
    /// Handoffs ended, by outcome: served (the new owner serves the partition) or timeout.
    pub handoffs: IntCounterVec,
    /// Partitions being handed off now.
    pub handoffs_in_progress: IntGauge,
    /// Partitions this member keeps as a standby.
    pub standby_partitions: IntGauge,
    /// Records a standby partition is behind its log end, per standby partition.
    pub standby_lag: IntGaugeVec,
    /// Reads and streams that asked the next member holding the partition after one could not
    /// answer (restoring, gone, or moved).
    pub read_retries: IntCounter,
    /// Streams refused because `--max-streams` were open.
    pub streams_refused: IntCounter,
    /// Records with fields this version does not know (skipped), by kind: notification, read.
    pub unknown_fields: IntCounterVec,
}

/// How a handoff ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffOutcome {
    /// The partition's new owner serves it.
    Served,
    /// `--handoff-timeout` passed first.
    Timeout,
}

impl HandoffOutcome {
    pub fn label(self) -> &'static str {
        match self {
            HandoffOutcome::Served => "served",
            HandoffOutcome::Timeout => "timeout",
        }
    }
}

/// How a read forwarded to the owner of a user's partition ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardOutcome {
    /// The owner answered 2xx.
    Ok,
    /// The owner answered, but not 2xx (it is restoring, rebalancing or overloaded).
    Rejected,
    /// The owner could not be reached in time.
    Failed,
}

impl ForwardOutcome {
    pub fn label(self) -> &'static str {
        match self {
            ForwardOutcome::Ok => "ok",
            ForwardOutcome::Rejected => "rejected",
            ForwardOutcome::Failed => "failed",
        }
    }
}

fn gauge_vec(name: &str, help: &str) -> prometheus::Result<IntGaugeVec> {
    IntGaugeVec::new(Opts::new(name, help), &["topic", "partition"])
}

impl ConsumerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let dead_letter = IntCounterVec::new(
            Opts::new(
                "herald_consumer_dead_letter_records_total",
                "Invalid records copied to --dead-letter-topic, by outcome: written or failed.",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(dead_letter.clone()))?;
        let m = Self {
            dead_letter_written: dead_letter.with_label_values(&["written"]),
            dead_letter_failed: dead_letter.with_label_values(&["failed"]),
            records: IntCounterVec::new(
                Opts::new(
                    "herald_consumer_records_total",
                    "Records handled, by outcome: stored, duplicate (already stored), marker (a read marker applied), unknown (a record kind this version does not know, skipped), conflicting_duplicate (an id already stored with other content; the first kept), invalid (skipped).",
                ),
                &["topic", "outcome"],
            )?,
            processed_offset: gauge_vec(
                "herald_consumer_processed_offset",
                "Next offset after the last record this member handled, per assigned partition.",
            )?,
            committed_offset: gauge_vec(
                "herald_consumer_committed_offset",
                "Offset committed for the group, per assigned partition.",
            )?,
            log_end_offset: gauge_vec(
                "herald_consumer_log_end_offset",
                "Log end offset (high watermark), per assigned partition.",
            )?,
            lag: gauge_vec(
                "herald_consumer_lag",
                "Records between the committed offset and the log end, per assigned partition.",
            )?,
            assigned_partitions: IntGaugeVec::new(
                Opts::new("herald_consumer_assigned_partitions", "Partitions currently assigned to this member."),
                &["topic"],
            )?,
            rebalances: IntCounter::new(
                "herald_consumer_rebalances_total",
                "Rebalance callbacks (assignments and revocations) this member handled.",
            )?,
            assignments_lost: IntCounter::new(
                "herald_consumer_assignments_lost_total",
                "Times this member lost its partitions without a revocation (it missed the session or poll deadline); what it stored since the last commit is redelivered to the new owner.",
            )?,
            offset_gaps: IntCounterVec::new(
                Opts::new(
                    "herald_consumer_offset_gaps_total",
                    "Records of a partition that came after a gap in its offsets: refetched (the partition is read again from the first missing offset), absent (read again and still missing: compacted, a transaction marker, or removed).",
                ),
                &["outcome"],
            )?,
            streams: IntGauge::new(
                "herald_consumer_streams",
                "Streams (GET /notifications/{userID}/stream) open on this consumer, served or proxied.",
            )?,
            end_to_end_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "herald_consumer_end_to_end_latency_seconds",
                    "Time from a notification's sentAt to its storage by a consumer.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                ]),
            )?,
            restore_records: IntCounterVec::new(
                Opts::new(
                    "herald_consumer_restore_records_total",
                    "Records re-read from the log to rebuild the store for newly assigned partitions.",
                ),
                &["topic"],
            )?,
            restore_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "herald_consumer_restore_duration_seconds",
                    "Time from a partition's assignment until its users' notifications are rebuilt.",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]),
            )?,
            store_bytes: IntGauge::new(
                "herald_consumer_store_bytes",
                "Estimated memory held by stored notifications (bounded by --store-budget-bytes).",
            )?,
            store_evictions: IntCounter::new(
                "herald_consumer_store_evictions_total",
                "Notifications evicted to stay within --store-budget-bytes (oldest of the largest users first).",
            )?,
            forwarded_requests: IntCounterVec::new(
                Opts::new(
                    "herald_consumer_forwarded_requests_total",
                    "Reads forwarded to the member owning the user's partition, by outcome: ok, rejected, failed.",
                ),
                &["outcome"],
            )?,
            handoffs: IntCounterVec::new(
                Opts::new(
                    "herald_consumer_handoffs_total",
                    "Partitions this member handed off after the group moved them, by outcome: served (kept answering until the new owner served it) or timeout (--handoff-timeout passed first).",
                ),
                &["outcome"],
            )?,
            handoffs_in_progress: IntGauge::new(
                "herald_consumer_handoffs_in_progress",
                "Partitions this member still answers for while their new owner restores them.",
            )?,
            standby_partitions: IntGauge::new(
                "herald_consumer_standby_partitions",
                "Partitions this member keeps as a standby (--standby).",
            )?,
            standby_lag: gauge_vec(
                "herald_consumer_standby_lag",
                "Records a standby partition is behind its log end, per standby partition.",
            )?,
            read_retries: IntCounter::new(
                "herald_consumer_read_retries_total",
                "Reads and streams that asked the next member holding the partition after one could not answer (restoring, gone or moved), or looked at the group again after none could.",
            )?,
            streams_refused: IntCounter::new(
                "herald_consumer_streams_refused_total",
                "Streams refused because --max-streams were open.",
            )?,
            unknown_fields: IntCounterVec::new(
                Opts::new(
                    "herald_consumer_unknown_fields_total",
                    "Records with fields this consumer version does not know (skipped; the rest of the record is used), by kind: notification or read. Written by a newer producer.",
                ),
                &["kind"],
            )?,
            refresh_requests: IntCounter::new(
                "herald_consumer_membership_refresh_requests_total",
                "Early looks at the peers' claims asked for: a forward failed, ownership moved, or an authenticated peer's forwarded read found this member no longer holds the partition.",
            )?,
        };
        for outcome in [ForwardOutcome::Ok, ForwardOutcome::Rejected, ForwardOutcome::Failed] {
            m.forwarded_requests.with_label_values(&[outcome.label()]);
        }
        registry.register(Box::new(m.refresh_requests.clone()))?;
        registry.register(Box::new(m.handoffs.clone()))?;
        // Both series from the start, at 0: an alert sees them before the first handoff.
        for outcome in [HandoffOutcome::Served, HandoffOutcome::Timeout] {
            m.handoffs.with_label_values(&[outcome.label()]);
        }
        registry.register(Box::new(m.handoffs_in_progress.clone()))?;
        registry.register(Box::new(m.standby_partitions.clone()))?;
        registry.register(Box::new(m.standby_lag.clone()))?;
        registry.register(Box::new(m.read_retries.clone()))?;
        registry.register(Box::new(m.streams_refused.clone()))?;
        registry.register(Box::new(m.unknown_fields.clone()))?;
        for kind in [RecordKind::Notification, RecordKind::Read] {
            m.unknown_fields(kind);
        }
        registry.register(Box::new(m.restore_records.clone()))?;
        registry.register(Box::new(m.restore_duration.clone()))?;
        registry.register(Box::new(m.store_bytes.clone()))?;
        registry.register(Box::new(m.store_evictions.clone()))?;
        registry.register(Box::new(m.forwarded_requests.clone()))?;
        registry.register(Box::new(m.records.clone()))?;
        registry.register(Box::new(m.processed_offset.clone()))?;
        registry.register(Box::new(m.committed_offset.clone()))?;
        registry.register(Box::new(m.log_end_offset.clone()))?;
        registry.register(Box::new(m.lag.clone()))?;
        registry.register(Box::new(m.assigned_partitions.clone()))?;
        registry.register(Box::new(m.rebalances.clone()))?;
        registry.register(Box::new(m.assignments_lost.clone()))?;
        registry.register(Box::new(m.offset_gaps.clone()))?;
        // Both series from the start, at 0: a dashboard or an alert sees them before any gap.
        for outcome in ["refetched", "absent"] {
            m.offset_gaps.with_label_values(&[outcome]);
        }
        registry.register(Box::new(m.streams.clone()))?;
        registry.register(Box::new(m.end_to_end_latency.clone()))?;
        Ok(m)
    }

    /// The counter of records of `kind` with fields this version does not know.
    pub fn unknown_fields(&self, kind: RecordKind) -> IntCounter {
        self.unknown_fields.with_label_values(&[kind.name()])
    }

    /// The counter for one outcome on `topic`, for callers that cache it.
    pub fn record_counter(&self, topic: &str, outcome: RecordOutcome) -> IntCounter {
        self.records.with_label_values(&[topic, outcome.label()])
    }

    pub fn processed_gauge(&self, topic: &str, partition: i32) -> IntGauge {
        self.processed_offset.with_label_values(&[topic, &partition.to_string()])
    }

    /// Drops every per-partition series of `partition`.
    pub fn forget_partition(&self, topic: &str, partition: i32) {
        let p = partition.to_string();
        for vec in [&self.processed_offset, &self.committed_offset, &self.log_end_offset, &self.lag] {
            let _ = vec.remove_label_values(&[topic, &p]);
        }
    }

    /// Drops the standby series of `partition`.
    pub fn forget_standby(&self, topic: &str, partition: i32) {
        let _ = self.standby_lag.remove_label_values(&[topic, &partition.to_string()]);
    }
}
