//! The Kafka side of the producer: an idempotent producer, delivery with a deadline, and a
//! readiness probe that asks the broker for the topic's metadata.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_kit::kafka::{KafkaArgs, Required, ReservedProperty, client_config};
use herald_kit::model::Notification;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

/// Properties the producer cannot work without: a 200 means the record is durably written once,
/// and every producer (Java or not) maps a user to the same partition.
pub const REQUIRED: &[Required] = &[
    Required { key: "enable.idempotence", value: "true", why: "retries must not duplicate records" },
    Required { key: "acks", value: "all", why: "a 200 means every in-sync replica has the record" },
    Required { key: "partitioner", value: "murmur2_random", why: "users map to partitions as Java clients map them" },
];

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// Why a record was not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("Kafka did not confirm the record within {0:?}")]
    Timeout(Duration),
    #[error("Kafka rejected the record: {0}")]
    Kafka(KafkaError),
}

/// Why the producer could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Reserved(#[from] ReservedProperty),
    #[error("creating the Kafka producer: {0}")]
    Client(KafkaError),
}

/// Logs librdkafka errors and remembers a fatal one (the idempotent producer cannot continue).
pub struct ProducerContext {
    fatal: Arc<Mutex<Option<String>>>,
}

impl ClientContext for ProducerContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            tracing::error!(%error, reason, "fatal Kafka producer error; the process must restart");
            if let Ok(mut fatal) = self.fatal.lock() {
                *fatal = Some(reason.to_string());
            }
        } else {
            tracing::warn!(%error, reason, "Kafka client error");
        }
    }
}

/// The producer and what the service knows about its broker connection.
pub struct Sender {
    producer: FutureProducer<ProducerContext>,
    fatal: Arc<Mutex<Option<String>>>,
    topic: String,
    send_timeout: Duration,
    ready: AtomicBool,
    not_ready_reason: Mutex<String>,
}

impl Sender {
    pub fn new(kafka: &KafkaArgs, send_timeout: Duration) -> Result<Self, CreateError> {
        let timeout_ms = send_timeout.as_millis().max(1).to_string();
        let defaults = [
            // Small batches keep /send latency low; raise for throughput-bound deployments.
            ("linger.ms", "1"),
            ("message.timeout.ms", timeout_ms.as_str()),
            ("client.id", "herald-producer"),
            // The topic's partition count is part of the contract (users map to partitions):
            // never let a send or a readiness probe create it with the broker's defaults.
            ("allow.auto.create.topics", "false"),
        ];
        let config = client_config(&kafka.bootstrap_servers, &defaults, &kafka.properties.values, REQUIRED)?;
        let fatal = Arc::new(Mutex::new(None));
        let producer =
            config.create_with_context(ProducerContext { fatal: fatal.clone() }).map_err(CreateError::Client)?;
        Ok(Self {
            producer,
            fatal,
            topic: kafka.topic.clone(),
            send_timeout,
            ready: AtomicBool::new(false),
            not_ready_reason: Mutex::new("no broker contact yet".into()),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn send_timeout(&self) -> Duration {
        self.send_timeout
    }

    /// Sends a notification and waits for the broker's acknowledgement, at most `send_timeout`.
    pub async fn send(&self, notification: &Notification) -> Result<Delivered, SendError> {
        let key = notification.key();
        let payload = notification.encode();
        let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
        let delivery = self.producer.send(record, Timeout::After(self.send_timeout));
        match tokio::time::timeout(self.send_timeout, delivery).await {
            Err(_) => Err(SendError::Timeout(self.send_timeout)),
            Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), _))) => {
                Err(SendError::Timeout(self.send_timeout))
            }
            Ok(Err((error, _))) => Err(SendError::Kafka(error)),
            Ok(Ok(d)) => Ok(Delivered { partition: d.partition, offset: d.offset }),
        }
    }

    /// Alive unless the producer hit a fatal error.
    pub fn live(&self) -> Result<(), String> {
        match self.fatal.lock().ok().and_then(|f| f.clone()) {
            Some(reason) => Err(format!("fatal Kafka producer error: {reason}")),
            None => Ok(()),
        }
    }

    /// Ready when the last metadata request reached a broker and the topic exists.
    pub fn ready(&self) -> Result<(), String> {
        self.live()?;
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(self.not_ready_reason.lock().map(|r| r.clone()).unwrap_or_default())
    }

    fn probe(&self) -> Result<(), String> {
        let metadata = self
            .producer
            .client()
            .fetch_metadata(Some(&self.topic), Duration::from_secs(3))
            .map_err(|e| format!("cannot reach Kafka: {e}"))?;
        let topic = metadata.topics().iter().find(|t| t.name() == self.topic);
        match topic {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
            Some(t) => {
                Err(format!("topic {} is not available: {:?}", self.topic, t.error().map(RDKafkaErrorCode::from)))
            }
            None => Err(format!("topic {} does not exist", self.topic)),
        }
    }

    /// Probes the broker every few seconds (every second until the first success) until
    /// `shutdown` is cancelled.
    pub async fn watch_readiness(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let sender = self.clone();
            let outcome = tokio::task::spawn_blocking(move || sender.probe())
                .await
                .unwrap_or_else(|e| Err(format!("readiness probe failed: {e}")));
            let was_ready = self.ready.load(Ordering::Acquire);
            match outcome {
                Ok(()) => {
                    if !was_ready {
                        tracing::info!(topic = %self.topic, "Kafka reachable; ready");
                    }
                    self.ready.store(true, Ordering::Release);
                }
                Err(reason) => {
                    if was_ready {
                        tracing::warn!(topic = %self.topic, %reason, "Kafka not reachable; not ready");
                    }
                    if let Ok(mut r) = self.not_ready_reason.lock() {
                        *r = reason;
                    }
                    self.ready.store(false, Ordering::Release);
                }
            }
            let pause =
                if self.ready.load(Ordering::Acquire) { Duration::from_secs(5) } else { Duration::from_secs(1) };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Waits until every queued record is delivered or `timeout` passes; returns how many
    /// records were still queued.
    pub async fn flush(self: Arc<Self>, timeout: Duration) -> i32 {
        tokio::task::spawn_blocking(move || {
            if let Err(error) = self.producer.flush(timeout) {
                tracing::warn!(%error, "flushing the producer did not complete");
            }
            self.producer.in_flight_count()
        })
        .await
        .unwrap_or(-1)
    }
}
