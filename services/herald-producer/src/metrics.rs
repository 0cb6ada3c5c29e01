//! The producer's Prometheus metrics.

use herald_kit::http::latency_buckets;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

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
    /// `herald_producer_notifications_total` by outcome: sent, rejected, failed (looked up once,
    /// not per request).
    notifications: [IntCounter; 3],
    pub send_duration: Histogram,
    /// `herald_producer_kafka_client_replacements_total`.
    pub client_replacements: IntCounter,
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
        let client_replacements = IntCounter::new(
            "herald_producer_kafka_client_replacements_total",
            "Kafka producer clients replaced because their idempotent session with the broker broke (fatal or sequence errors); their unconfirmed sends answered 503.",
        )?;
        registry.register(Box::new(client_replacements.clone()))?;
        registry.register(Box::new(notifications.clone()))?;
        registry.register(Box::new(send_duration.clone()))?;
        let counter = |o: Outcome| notifications.with_label_values(&[o.label()]);
        Ok(Self {
            notifications: [counter(Outcome::Sent), counter(Outcome::Rejected), counter(Outcome::Failed)],
            send_duration,
            client_replacements,
        })
    }

    fn counter(&self, outcome: Outcome) -> &IntCounter {
        match outcome {
            Outcome::Sent => &self.notifications[0],
            Outcome::Rejected => &self.notifications[1],
            Outcome::Failed => &self.notifications[2],
        }
    }

    pub fn count(&self, outcome: Outcome) {
        self.counter(outcome).inc();
    }

    /// `n` notifications with `outcome` (a bulk send's).
    pub fn count_many(&self, outcome: Outcome, n: u64) {
        self.counter(outcome).inc_by(n);
    }

    pub fn sent(&self) -> u64 {
        self.counter(Outcome::Sent).get()
    }
}
