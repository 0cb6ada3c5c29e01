//! The Kafka side of the producer: an idempotent producer, delivery with a deadline, and a
//! readiness probe that asks the broker for the topic's metadata.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use herald_kit::kafka::{KafkaArgs, Required, ReservedProperty, client_config};
use herald_model::partition::PartitionHistory;
use herald_model::{KIND_HEADER, KIND_READ, Notification, ReadMarker};
use prometheus::IntCounter;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _, PurgeConfig};
use rdkafka::{ClientConfig, ClientContext};
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

/// Logs librdkafka errors and remembers a fatal one (this client instance cannot continue).
pub struct ProducerContext {
    fatal: Arc<OnceLock<String>>,
}

impl ClientContext for ProducerContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            tracing::error!(%error, reason, "fatal Kafka producer error; the client will be replaced");
            let _ = self.fatal.set(reason.to_string());
        } else {
            tracing::warn!(%error, reason, "Kafka client error");
        }
    }
}

/// How long librdkafka gathers records into one request (`linger.ms`), by how many sends are in
/// flight when a send starts: a lone send goes out almost at once (a lower linger costs a
/// produce request per record, which only pays when there are few), and the more are in flight
/// the more are gathered into each request (fewer requests, less CPU per record for the
/// producer and the broker, which is what bounds throughput under load). Each lane is its own
/// librdkafka producer (its own idempotent producer id). A send starts only after an earlier
/// send to the same user was acknowledged or is concurrent with it, so lanes keep every order
/// a client can observe.
pub const LANES: &[Lane] = &[
    Lane { below: 16, linger_ms: "0.2" },
    Lane { below: 128, linger_ms: "1" },
    Lane { below: usize::MAX, linger_ms: "2" },
];

/// One lane: used while fewer than `below` sends are in flight.
#[derive(Debug, Clone, Copy)]
pub struct Lane {
    pub below: usize,
    pub linger_ms: &'static str,
}

/// The librdkafka producers of one generation: one per lane (one in all when the user set the
/// linger), idempotent, each with its own producer id and sequence numbers.
struct Client {
    lanes: Vec<(usize, FutureProducer<ProducerContext>)>,
    /// Set once by librdkafka's error callback (of any lane); read without a lock on every send.
    fatal: Arc<OnceLock<String>>,
    generation: u64,
}

impl Client {
    fn create(configs: &[(usize, ClientConfig)], generation: u64) -> Result<Self, KafkaError> {
        let fatal = Arc::new(OnceLock::new());
        let lanes = configs
            .iter()
            .map(|(below, config)| Ok((*below, config.create_with_context(ProducerContext { fatal: fatal.clone() })?)))
            .collect::<Result<_, KafkaError>>()?;
        Ok(Self { lanes, fatal, generation })
    }

    fn fatal(&self) -> Option<&str> {
        self.fatal.get().map(String::as_str)
    }

    /// The producer for a send that starts with `in_flight` others in flight.
    fn lane(&self, in_flight: usize) -> &FutureProducer<ProducerContext> {
        // The last lane takes any count (`usize::MAX`), and there is always one.
        match self.lanes.iter().find(|(below, _)| in_flight < *below) {
            Some((_, producer)) => producer,
            None => self.any(),
        }
    }

    fn any(&self) -> &FutureProducer<ProducerContext> {
        &self.lanes[0].1
    }
}

/// Errors after which the idempotent producer's session with the broker cannot be trusted: its
/// sequence numbers and the broker's disagree (typically after records timed out during a broker
/// outage, or after the broker lost its producer state). Such a client could later report a
/// record it never wrote as a duplicate, that is as delivered; it is replaced instead.
fn breaks_the_session(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fatal
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::Unknown
        )
    )
}

/// Counts a send in flight for as long as it lives.
struct InFlight<'a> {
    counter: &'a AtomicUsize,
    /// Sends in flight when this one started.
    others: usize,
}

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        Self { counter, others: counter.fetch_add(1, Ordering::Relaxed) }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The producer and what the service knows about its broker connection.
pub struct Sender {
    configs: Vec<(usize, ClientConfig)>,
    client: RwLock<Arc<Client>>,
    in_flight: AtomicUsize,
    replacements: IntCounter,
    topic: String,
    send_timeout: Duration,
    ready: AtomicBool,
    not_ready_reason: Mutex<String>,
    /// Every partition count the topic has had (`--partition-history`): a read marker goes to
    /// each partition its user mapped to, so that every partition's holder applies it.
    partition_history: PartitionHistory,
}

impl Sender {
    /// Creates the producer; `replacements` counts clients replaced after a broken session.
    pub fn new(kafka: &KafkaArgs, send_timeout: Duration, replacements: IntCounter) -> Result<Self, CreateError> {
        let timeout_ms = send_timeout.as_millis().max(1).to_string();
        let config = |linger_ms: &str| {
            let defaults = [
                ("linger.ms", linger_ms),
                ("message.timeout.ms", timeout_ms.as_str()),
                ("client.id", "herald-producer"),
                // The topic's partition count is part of the contract (users map to
                // partitions): never let a send or a readiness probe create it with the
                // broker's defaults.
                ("allow.auto.create.topics", "false"),
            ];
            client_config(&kafka.bootstrap_servers, &defaults, &kafka.properties, REQUIRED)
        };
        // A linger the user chose is theirs: one producer with it.
        let chosen = kafka.properties.values.iter().any(|(k, _)| k == "linger.ms" || k == "queue.buffering.max.ms");
        let configs = if chosen {
            vec![(usize::MAX, config(LANES[LANES.len() - 1].linger_ms)?)]
        } else {
            LANES
                .iter()
                .map(|lane| Ok((lane.below, config(lane.linger_ms)?)))
                .collect::<Result<_, ReservedProperty>>()?
        };
        let client = Client::create(&configs, 0).map_err(CreateError::Client)?;
        Ok(Self {
            configs,
            client: RwLock::new(Arc::new(client)),
            in_flight: AtomicUsize::new(0),
            replacements,
            topic: kafka.topic.clone(),
            send_timeout,
            ready: AtomicBool::new(false),
            not_ready_reason: Mutex::new("no broker contact yet".into()),
            partition_history: PartitionHistory::default(),
        })
    }

    /// Read markers also go to the partitions `history`'s earlier counts map their user to.
    pub fn with_partition_history(mut self, history: PartitionHistory) -> Self {
        self.partition_history = history;
        self
    }

    fn current(&self) -> Arc<Client> {
        self.client.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the client of `generation` (once, however many sends saw it fail) with a new
    /// one: a new producer id. Everything the old one still held is purged, so each of those
    /// sends answers 503 rather than waiting for a confirmation that cannot be trusted.
    fn replace(&self, generation: u64, why: &KafkaError) {
        let old = {
            let mut current = self.client.write().unwrap_or_else(|p| p.into_inner());
            if current.generation != generation {
                return;
            }
            match Client::create(&self.configs, generation + 1) {
                Ok(client) => std::mem::replace(&mut *current, Arc::new(client)),
                Err(error) => {
                    tracing::error!(%error, "creating a replacement Kafka producer failed; keeping the old one");
                    return;
                }
            }
        };
        self.replacements.inc();
        tracing::warn!(error = %why, generation = generation + 1, "Kafka producer session broken; replaced the client");
        // Purging and dropping block briefly (the drop flushes): not on the async workers.
        tokio::task::spawn_blocking(move || {
            for (_, producer) in &old.lanes {
                producer.purge(PurgeConfig::default().queue().inflight());
            }
            drop(old);
        });
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn send_timeout(&self) -> Duration {
        self.send_timeout
    }

    /// Sends a notification and waits for the broker's acknowledgement, at most `send_timeout`.
    pub async fn send(&self, notification: &Notification) -> Result<Delivered, SendError> {
        self.send_record(&notification.key(), &notification.encode(), None, None).await
    }

    /// Sends a read marker (keyed by its user, so it lands in the user's partition, after their
    /// notifications) and waits for the acknowledgement, as [`Sender::send`] does. In a topic
    /// that grew (`--partition-history`), the same marker also goes to each partition the user
    /// mapped to before, where their older notifications are; the answer waits for every one.
    pub async fn send_marker(&self, marker: &ReadMarker) -> Result<Delivered, SendError> {
        let headers = || Some(OwnedHeaders::new().insert(Header { key: KIND_HEADER, value: Some(KIND_READ) }));
        let (key, value) = (marker.user.key(), marker.encode());
        let older: Vec<i32> = match self.partition_history.counts().last() {
            Some(current) => {
                let mut all = self.partition_history.partitions_for_user(&marker.user, *current);
                all.pop();
                all
            }
            None => Vec::new(),
        };
        let current = self.send_record(&key, &value, headers(), None);
        let earlier =
            futures::future::try_join_all(older.iter().map(|p| self.send_record(&key, &value, headers(), Some(*p))));
        let (delivered, _) = futures::future::try_join(current, earlier).await?;
        Ok(delivered)
    }

    async fn send_record(
        &self,
        key: &str,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
        partition: Option<i32>,
    ) -> Result<Delivered, SendError> {
        let mut record = FutureRecord::to(&self.topic).key(key).payload(payload);
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        let client = self.current();
        if let Some(reason) = client.fatal() {
            let error = KafkaError::MessageProduction(RDKafkaErrorCode::Fatal);
            tracing::warn!(reason, "sending on a client that hit a fatal error");
            self.replace(client.generation, &error);
            return Err(SendError::Kafka(error));
        }
        let in_flight = InFlight::enter(&self.in_flight);
        let delivery = match client.lane(in_flight.others).send_result(record) {
            Ok(delivery) => delivery,
            Err((error, _)) => return Err(SendError::Kafka(error)),
        };
        let generation = client.generation;
        drop(client);
        let delivered = tokio::time::timeout(self.send_timeout, delivery).await;
        drop(in_flight);
        match delivered {
            Err(_) => Err(SendError::Timeout(self.send_timeout)),
            Ok(Err(_canceled)) => Err(SendError::Kafka(KafkaError::Canceled)),
            Ok(Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), _)))) => {
                Err(SendError::Timeout(self.send_timeout))
            }
            Ok(Ok(Err((error, _)))) => {
                if breaks_the_session(&error) {
                    self.replace(generation, &error);
                }
                Err(SendError::Kafka(error))
            }
            Ok(Ok(Ok(d))) => Ok(Delivered { partition: d.partition, offset: d.offset }),
        }
    }

    /// Alive unless the client hit a fatal error and could not be replaced.
    pub fn live(&self) -> Result<(), String> {
        match self.current().fatal() {
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
            .current()
            .any()
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
            let client = self.current();
            if client.fatal().is_some() {
                self.replace(client.generation, &KafkaError::MessageProduction(RDKafkaErrorCode::Fatal));
            }
            drop(client);
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
            let client = self.current();
            let deadline = std::time::Instant::now() + timeout;
            let mut left = 0;
            for (_, producer) in &client.lanes {
                if let Err(error) = producer.flush(deadline.saturating_duration_since(std::time::Instant::now())) {
                    tracing::warn!(%error, "flushing the producer did not complete");
                }
                left += producer.in_flight_count();
            }
            left
        })
        .await
        .unwrap_or(-1)
    }
}
