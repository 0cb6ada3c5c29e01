//! Applying one record to the store and the claims: the part of handling a record that whoever
//! reads the partition does, the group member or a reader outside the group. Storing and
//! committing the offset is the member's own step (see [`super::poll`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use herald_model::{DecodeError, KIND_HEADER, RecordKind, decode_marker, decode_record};
use rdkafka::message::{BorrowedMessage, Headers, Message};

use crate::claims::{Claim, Claims};
use crate::metrics::{ConsumerMetrics, RecordOutcome};
use crate::store::{Insert, Store};

/// One record as the loop sees it.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// What the record is, by its `herald.kind` header.
    pub kind: RecordKind,
}

impl<'a> Incoming<'a> {
    pub fn of(message: &'a BorrowedMessage<'a>) -> Self {
        // A header without a value names no kind this version knows.
        let kind = match message.headers().and_then(|h| h.iter().find(|h| h.key == KIND_HEADER)) {
            None => RecordKind::Notification,
            Some(header) => RecordKind::of(Some(header.value.unwrap_or_default())),
        };
        Self {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key(),
            payload: message.payload(),
            kind,
        }
    }
}

/// What applying a record did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Stored,
    /// Already stored (a redelivery): nothing changed.
    Duplicate,
    /// Its id already stored with other content: the first kept.
    ConflictingDuplicate,
    /// A read marker, applied.
    Marker,
    /// A record kind this version does not know (the version rule): skipped, not invalid.
    Unknown,
    /// Not what its kind says it is: skipped.
    Invalid(DecodeError),
}

impl Applied {
    pub fn outcome(&self) -> RecordOutcome {
        match self {
            Applied::Stored => RecordOutcome::Stored,
            Applied::Duplicate => RecordOutcome::Duplicate,
            Applied::ConflictingDuplicate => RecordOutcome::ConflictingDuplicate,
            Applied::Marker => RecordOutcome::Marker,
            Applied::Unknown => RecordOutcome::Unknown,
            Applied::Invalid(_) => RecordOutcome::Invalid,
        }
    }
}

/// Applies records to the store and moves the claims' progress, keeping the store's metrics.
pub struct Applier {
    store: Arc<Store>,
    claims: Arc<Claims>,
    metrics: ConsumerMetrics,
    /// The store's budget evictions already counted in the metric.
    evicted_seen: AtomicU64,
}

impl Applier {
    pub fn new(store: Arc<Store>, claims: Arc<Claims>, metrics: ConsumerMetrics) -> Self {
        Self { store, claims, metrics, evicted_seen: AtomicU64::new(0) }
    }

    pub fn claims(&self) -> &Arc<Claims> {
        &self.claims
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Decodes `record` and applies it to the store. `now` is the time a new notification is
    /// stored at, for the end-to-end latency; `None` while restoring (the record is not new).
    pub fn apply(&self, record: &Incoming<'_>, now: Option<DateTime<Utc>>) -> Applied {
        let (partition, offset) = (record.partition, record.offset);
        let applied = match record.kind {
            RecordKind::Read => match decode_marker(record.key, record.payload) {
                Ok(decoded) => {
                    self.count_unknown_fields(decoded.unknown_fields && now.is_some(), RecordKind::Read);
                    let marker = decoded.marker;
                    let marked = self.store.mark_read(&marker, partition, offset);
                    tracing::debug!(partition, offset, marked, "read marker applied");
                    Applied::Marker
                }
                Err(error) => Applied::Invalid(error),
            },
            RecordKind::Notification => match decode_record(record.key, record.payload) {
                Ok(decoded) => {
                    self.count_unknown_fields(decoded.unknown_fields && now.is_some(), RecordKind::Notification);
                    let applied = match self.store.insert(&decoded, partition, offset) {
                        Insert::Stored => {
                            if let Some(now) = now {
                                let latency = (now.max(decoded.sent_at) - decoded.sent_at).to_std().unwrap_or_default();
                                self.metrics.end_to_end_latency.observe(latency.as_secs_f64());
                            }
                            Applied::Stored
                        }
                        Insert::Duplicate => Applied::Duplicate,
                        Insert::ConflictingDuplicate => Applied::ConflictingDuplicate,
                    };
                    let id = decoded.id;
                    tracing::debug!(partition, offset, %id, outcome = applied.outcome().label(), "record handled");
                    applied
                }
                Err(error) => Applied::Invalid(error),
            },
            RecordKind::Unknown => {
                tracing::debug!(partition, offset, "record of a kind this version does not know skipped");
                Applied::Unknown
            }
        };
        self.metrics.store_bytes.set(self.store.bytes() as i64);
        let evicted = self.store.evicted_for_budget();
        let seen = self.evicted_seen.fetch_max(evicted, Ordering::AcqRel);
        if evicted > seen {
            self.metrics.store_evictions.inc_by(evicted - seen);
        }
        applied
    }

    /// Everything of `claim` before `offset + 1` is handled (applied, or deliberately skipped): a
    /// reader waiting on it goes on. Called last for a record, so that such a reader finds it in
    /// the store.
    pub fn handled(&self, claim: &Claim, offset: i64) {
        if self.claims.handled(claim, offset) {
            self.restore_completed(claim, "reached the committed offset");
        }
    }

    /// The reader reached the end of `claim`'s log: its restore is complete.
    pub fn at_end(&self, claim: &Claim) {
        if self.claims.at_end(claim) {
            self.restore_completed(claim, "reached the log end");
        }
    }

    /// A new record of `kind` (not one restored, nor read outside the group: those were counted
    /// by the member that handled them) had fields this version does not know, skipped.
    fn count_unknown_fields(&self, unknown: bool, kind: RecordKind) {
        if unknown {
            self.metrics.unknown_fields(kind).inc();
        }
    }

    fn restore_completed(&self, claim: &Claim, how: &str) {
        let took = claim.assigned_at.elapsed();
        self.metrics.restore_duration.observe(took.as_secs_f64());
        tracing::info!(
            partition = claim.partition,
            restore_until = claim.restore_until(),
            took_ms = took.as_millis() as u64,
            how,
            "partition restored"
        );
    }
}
