//! Test harness for Herald's cross-crate tests and benchmarks: a real Kafka-protocol broker
//! (nisshi) per test, the real service binaries as child processes, and small clients for
//! HTTP, Kafka and Prometheus text.

// A harness fails the test that uses it by panicking with a message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod broker;
pub mod http;
pub mod jwt;
pub mod kafka;
pub mod kubelet;
pub mod metrics;
pub mod process;
pub mod pss;
pub mod reads;
pub mod scaling;
pub mod sse;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Waits until `check` returns `Some`, polling every 50 ms; panics with `what` after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A name unique to this run, for topics and groups.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// The pieces of one pipeline under test: a broker, a topic and a group of its own.
pub struct Setup {
    pub broker: broker::Broker,
    pub topic: String,
    pub group: String,
    pub partitions: i32,
    pub users_file: tempfile::NamedTempFile,
    /// Ports consumers listen on, one per consumer started (in order); every consumer knows
    /// them all as its peers, as a headless Service would list every pod.
    consumer_ports: Vec<u16>,
    consumers_started: AtomicUsize,
    /// librdkafka's `fetch.wait.max.ms` for this setup's consumers (see
    /// [`Setup::with_fetch_wait_ms`]).
    fetch_wait_ms: u32,
}

/// Consumers one test may start in all.
const CONSUMER_SLOTS: usize = 16;

/// Group timeouts of every test consumer (librdkafka properties). nisshi holds a join for the
/// whole rebalance timeout (max.poll.interval.ms), so keep it short. Heartbeats every second,
/// not librdkafka's 3 s: a member frozen for half the session timeout right before a heartbeat
/// was due must still be inside the session.
pub const GROUP_TIMEOUTS: &str = "max.poll.interval.ms=10000,session.timeout.ms=6000,heartbeat.interval.ms=1000";

/// The librdkafka properties of every herald-consumer the tests and benches start: the group
/// timeouts above, and `fetch.wait.max.ms=5`. nisshi (like librdkafka's mock cluster) does not
/// answer a waiting fetch when a record arrives, as a real Kafka broker does, so with the default
/// 500 ms a consumer would see new records up to half a second late; the tests and benches then
/// measure Herald's own latency, not the broker's fetch wait.
pub const TEST_CONSUMER_PROPERTIES: &str =
    "max.poll.interval.ms=10000,session.timeout.ms=6000,heartbeat.interval.ms=1000,fetch.wait.max.ms=5";

impl Setup {
    /// A broker with a fresh topic of `partitions` partitions and a directory of `users` users.
    pub async fn new(storage: broker::Storage, partitions: i32, users: u64) -> Self {
        let broker = broker::Broker::start(storage);
        let topic = unique("notifications");
        kafka::create_topic(&broker.bootstrap(), &topic, partitions).await;
        let directory: Vec<serde_json::Value> =
            (1..=users).map(|id| serde_json::json!({"id": id, "name": format!("user{id}")})).collect();
        let users_file = tempfile::NamedTempFile::new().expect("users file");
        std::fs::write(users_file.path(), serde_json::to_vec(&directory).expect("users json")).expect("write users");
        let consumer_ports = (0..CONSUMER_SLOTS).map(|_| broker::free_port()).collect();
        Self {
            broker,
            topic,
            group: unique("group"),
            partitions,
            users_file,
            consumer_ports,
            consumers_started: AtomicUsize::new(0),
            fetch_wait_ms: 5,
        }
    }

    /// Consumers started from now on wait up to `ms` for a fetch (5 ms by default, see
    /// [`TEST_CONSUMER_PROPERTIES`]). For logs of tens of thousands of records: nisshi's memory
    /// engine lists every batch of a partition for each fetch below its end, and stops listing
    /// once the fetch's wait is used up — a fetch whose list takes longer comes back empty. On
    /// two busy CPUs, a 17,000-record partition's list takes longer than 5 ms, and a consumer
    /// catching up on it moved ~25 records/s (measured: the consumer-sigkill suite then missed
    /// its 120 s commit deadline). A real Kafka broker answers such a fetch at once.
    pub fn with_fetch_wait_ms(mut self, ms: u32) -> Self {
        self.fetch_wait_ms = ms;
        self
    }

    fn common_env(&self) -> Vec<(&'static str, String)> {
        vec![("KAFKA_BOOTSTRAP_SERVERS", self.broker.bootstrap()), ("HERALD_TOPIC", self.topic.clone())]
    }

    pub fn producer(&self, extra: &[(&'static str, String)]) -> process::Service {
        let mut env = vec![("HERALD_USERS_FILE", self.users_file.path().display().to_string())];
        env.extend_from_slice(extra);
        self.open_producer(&env)
    }

    /// A producer without a user directory (the default since open ids): any valid id sends and
    /// receives, names only from the sender's own token.
    pub fn open_producer(&self, extra: &[(&'static str, String)]) -> process::Service {
        let mut env = self.common_env();
        env.extend_from_slice(extra);
        process::Service::start("herald-producer", &[], &env)
    }

    /// Starts a consumer of the group on the next free consumer port.
    pub fn consumer(&self, extra: &[(&'static str, String)]) -> process::Service {
        // The next slot whose port is free: a killed consumer's slot is taken again.
        let port = (0..CONSUMER_SLOTS)
            .map(|_| self.consumer_ports[self.consumers_started.fetch_add(1, Ordering::Relaxed) % CONSUMER_SLOTS])
            .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
            .expect("more live consumers than CONSUMER_SLOTS");
        let peers: Vec<String> = self.consumer_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut env = self.common_env();
        env.push(("HERALD_GROUP_ID", self.group.clone()));
        env.push(("HERALD_PEERS", peers.join(",")));
        env.push((
            "HERALD_KAFKA_PROPERTIES",
            format!("{TEST_CONSUMER_PROPERTIES},statistics.interval.ms=1000,fetch.wait.max.ms={}", self.fetch_wait_ms),
        ));
        env.extend_from_slice(extra);
        process::Service::start_on("herald-consumer", port, &[], &env)
    }

    /// The group's committed offset per partition (-1: none).
    pub fn committed(&self) -> BTreeMap<i32, i64> {
        kafka::committed(&self.broker.bootstrap(), &self.topic, &self.group, self.partitions)
    }

    /// Waits until the group's committed offset of every partition in `ends` has reached the
    /// log end given there; on timeout the panic shows the offsets per partition.
    ///
    /// The ends come from acknowledged produce offsets, not from the broker's ListOffsets:
    /// nisshi 0.7.0-pre.2 answers ListOffsets(latest) with the last batch's base offset + 1.
    pub async fn wait_committed_to(&self, ends: &BTreeMap<i32, i64>, limit: Duration) {
        self.wait_committed_explained(ends, limit, &[]).await;
    }

    /// As [`Setup::wait_committed_to`]; on timeout the panic also shows the last lines of each of
    /// `consumers`' logs about offsets, assignments and errors (what a stuck member said).
    pub async fn wait_committed_explained(
        &self,
        ends: &BTreeMap<i32, i64>,
        limit: Duration,
        consumers: &[&process::Service],
    ) {
        const ABOUT: [&str; 9] =
            ["WARN", "ERROR", "panicked", "assigned", "revoked", "taken back", "offsets", "missing", "lost"];
        let start = Instant::now();
        loop {
            let committed = self.committed();
            let behind: Vec<_> = ends
                .iter()
                .filter(|(p, end)| committed.get(p).is_none_or(|c| c < end))
                .map(|(p, end)| (*p, *end, committed.get(p).copied()))
                .collect();
            if behind.is_empty() {
                return;
            }
            if start.elapsed() >= limit {
                let mut said = String::new();
                for c in consumers {
                    said.push_str(&format!("--- {}\n{}\n", c.url, c.log_excerpt(&ABOUT, 40)));
                }
                panic!(
                    "group {} did not commit up to the log end within {limit:?}: (partition, log end, committed) {behind:?}\n{said}",
                    self.group
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Waits until `/readyz` answers 200.
/// Waits until `/readyz` answers 200; on timeout the panic shows the end of the service's log.
pub async fn wait_ready(http: &http::Http, service: &process::Service, limit: Duration) {
    let url = format!("{}/readyz", service.url);
    let start = Instant::now();
    while !http.get(&url).await.is_ok_and(|a| a.status.is_success()) {
        if start.elapsed() > limit {
            let log = service.log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
            panic!("{} not ready at {url} after {limit:?}; its log ends:\n{}", service.name, tail.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The service's `/metrics` text (empty when it does not answer).
pub async fn scrape(http: &http::Http, service: &process::Service) -> String {
    http.get(&format!("{}/metrics", service.metrics_url)).await.map(|a| a.text).unwrap_or_default()
}

/// One acknowledged send.
#[derive(Debug, Clone)]
pub struct Acked {
    pub id: String,
    pub to: u64,
    pub partition: i64,
    pub offset: i64,
}

/// Sends `n` notifications through `/send` with `concurrency` requests in flight; the
/// recipient of the i-th is `to(i)`. Panics on anything but a 200.
pub async fn send_many(
    http: &http::Http,
    producer: &str,
    n: usize,
    concurrency: usize,
    to: impl Fn(usize) -> u64,
) -> Vec<Acked> {
    use futures::StreamExt;
    futures::stream::iter(0..n)
        .map(|i| {
            let recipient = to(i);
            let http = http.clone();
            let producer = producer.to_string();
            async move {
                let a = http.send_form(&producer, 1, recipient, &format!("message {i}")).await.expect("send");
                assert_eq!(a.status, 200, "send {i}: {}", a.text);
                Acked {
                    id: a.json["id"].as_str().expect("id").to_string(),
                    to: recipient,
                    partition: a.json["partition"].as_i64().expect("partition"),
                    offset: a.json["offset"].as_i64().expect("offset"),
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Sends notifications through `/send` with `concurrency` requests in flight until `stop` is
/// set, counting each acknowledgement in `acked` as it arrives; the recipient of the i-th is
/// `to(i)`. Panics on anything but a 200.
pub async fn send_until(
    http: &http::Http,
    producer: &str,
    concurrency: usize,
    to: impl Fn(usize) -> u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<AtomicUsize>,
) -> Vec<Acked> {
    use futures::StreamExt;
    futures::stream::iter(0..)
        .take_while(|_| std::future::ready(!stop.load(Ordering::Acquire)))
        .map(|i| {
            let recipient = to(i);
            let (http, producer, acked) = (http.clone(), producer.to_string(), acked.clone());
            async move {
                let a = http.send_form(&producer, 1, recipient, &format!("message {i}")).await.expect("send");
                assert_eq!(a.status, 200, "send {i}: {}", a.text);
                acked.fetch_add(1, Ordering::AcqRel);
                Acked {
                    id: a.json["id"].as_str().expect("id").to_string(),
                    to: recipient,
                    partition: a.json["partition"].as_i64().expect("partition"),
                    offset: a.json["offset"].as_i64().expect("offset"),
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// The notification ids a consumer returns for `user`.
pub async fn ids_for(http: &http::Http, consumer: &str, user: u64) -> Vec<String> {
    let a = http.get(&format!("{consumer}/notifications/{user}")).await.expect("get notifications");
    assert_eq!(a.status, 200, "{}", a.text);
    a.json["notifications"]
        .as_array()
        .expect("notifications array")
        .iter()
        .map(|n| n["id"].as_str().expect("id").to_string())
        .collect()
}

/// The log end per partition implied by acknowledged records: highest offset + 1.
pub fn log_ends(acked: impl IntoIterator<Item = (i32, i64)>) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for (partition, offset) in acked {
        let end = ends.entry(partition).or_insert(0);
        *end = (*end).max(offset + 1);
    }
    ends
}
