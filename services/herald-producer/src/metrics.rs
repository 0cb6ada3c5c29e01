//! The producer's Prometheus metrics.

use herald_kit::http::latency_buckets;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

/// The outcome of one `/send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The broker acknowledged the record.
    Sent,
    /// The request was refused (4xx).
    Rejected,
    /// Kafka did not take or confirm the record (503).
    Failed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Clone)]
pub struct ProducerMetrics {
    notifications: IntCounterVec,
    pub send_duration: Histogram,
}

impl ProducerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let notifications = IntCounterVec::new(
            Opts::new(
                "herald_producer_notifications_total",
                "Send requests by outcome: sent (acknowledged by Kafka), rejected (client error), failed (Kafka did not confirm).",
            ),
            &["outcome"],
        )?;
        let send_duration = Histogram::with_opts(
            HistogramOpts::new(
                "herald_producer_send_duration_seconds",
                "Time from a /send request to the broker's acknowledgement of its record.",
            )
            .buckets(latency_buckets()),
        )?;
        registry.register(Box::new(notifications.clone()))?;
        registry.register(Box::new(send_duration.clone()))?;
        for outcome in [Outcome::Sent, Outcome::Rejected, Outcome::Failed] {
            notifications.with_label_values(&[outcome.label()]);
        }
        Ok(Self { notifications, send_duration })
    }

    pub fn count(&self, outcome: Outcome) {
        self.notifications.with_label_values(&[outcome.label()]).inc();
    }

    pub fn sent(&self) -> u64 {
        self.notifications.with_label_values(&[Outcome::Sent.label()]).get()
    }
}
