//! Reads while consumers come and go: a steady sender, a poller that keeps the set of consumers
//! whose `/readyz` answers 200 (as a Service does), and readers that call only those, checking
//! every 200 against what was acknowledged before the read. Used by the scaling tests and by
//! `herald-bench scaling`, so that a figure before and after a change comes from the same code.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::broker::Storage;
use crate::http::Http;
use crate::process::Service;
use crate::reads::{READY, SETTLE, assert_complete_everywhere, expected_lists, wait_assigned};
use crate::{Acked, Setup, wait_ready};

/// How long one read may take before it counts as failed.
const READ_LIMIT: Duration = Duration::from_secs(10);
/// Most sends in flight at once.
const SENDS_IN_FLIGHT: u32 = 32;
/// How often the poller asks every consumer of the pool for `/readyz`.
const READY_POLL: Duration = Duration::from_millis(100);

/// What the readers saw.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Reads answered (any status), connection errors not included.
    pub reads: usize,
    /// Answers other than 200 (503s and anything else), and reads that took longer than 10 s.
    pub not_200: usize,
    /// 200s that lacked a notification acknowledged before the read was sent.
    pub incomplete: usize,
    /// Reads that found no one listening (a consumer that had just been killed).
    pub connection_errors: usize,
    /// The longest time one user's reads kept failing.
    pub longest_failing: Duration,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// A few of the failures, for the message of a failed test.
    pub samples: Vec<String>,
    /// Notifications acknowledged meanwhile.
    pub sent: usize,
    /// Sends that were not acknowledged.
    pub send_errors: usize,
}

impl Report {
    /// `scaling 3->6->3 under load: N reads, F not 200 (P%), I incomplete 200s, longest failing run
    /// of one user S s` (with `label` for the first words).
    pub fn line(&self, label: &str) -> String {
        let share = if self.reads == 0 { 0.0 } else { 100.0 * self.not_200 as f64 / self.reads as f64 };
        format!(
            "{label} under load: {} reads, {} not 200 ({share:.1}%), {} incomplete 200s, longest failing run of one user {:.1} s (read p50 {:.1} ms, p99 {:.1} ms; {} connection errors to stopped consumers; {} sent, {} sends failed)",
            self.reads,
            self.not_200,
            self.incomplete,
            self.longest_failing.as_secs_f64(),
            self.p50_ms,
            self.p99_ms,
            self.connection_errors,
            self.sent,
            self.send_errors,
        )
    }
}

#[derive(Default)]
struct Tally {
    reads: usize,
    not_200: usize,
    incomplete: usize,
    connection_errors: usize,
    send_errors: usize,
    latencies_us: Vec<u64>,
    failing_since: HashMap<u64, Instant>,
    longest_failing: Duration,
    samples: Vec<String>,
}

impl Tally {
    fn failed(&mut self, user: u64, why: String) {
        self.failing_since.entry(user).or_insert_with(Instant::now);
        if self.samples.len() < 20 {
            self.samples.push(why);
        }
    }

    fn succeeded(&mut self, user: u64) {
        if let Some(since) = self.failing_since.remove(&user) {
            self.longest_failing = self.longest_failing.max(since.elapsed());
        }
    }
}

struct Shared {
    acked: Mutex<HashMap<u64, Vec<String>>>,
    all: Mutex<Vec<Acked>>,
    sent: AtomicUsize,
    pool: Mutex<Vec<String>>,
    ready: Mutex<HashSet<String>>,
    stop: AtomicBool,
    stop_sending: AtomicBool,
    /// Sends in flight.
    sending: Arc<tokio::sync::Semaphore>,
    tally: Mutex<Tally>,
    users: u64,
}

/// The consumers a load's readers call, seen from elsewhere.
#[derive(Clone)]
pub struct ReadyPool(Arc<Shared>);

impl ReadyPool {
    /// The consumers readers call now (in the pool and ready), in URL order.
    pub fn ready(&self) -> Vec<String> {
        let mut ready: Vec<String> = self.0.ready.lock().unwrap().iter().cloned().collect();
        ready.sort();
        ready
    }
}

impl Shared {
    fn send_failed(&self, why: String) {
        let mut tally = self.tally.lock().unwrap();
        tally.send_errors += 1;
        if tally.samples.len() < 20 {
            tally.samples.push(why);
        }
    }
}

/// A running load: sender, readiness poller and readers.
pub struct Load {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts sending `per_second` notifications to users 1..=`users` through `producer` and
    /// `readers` readers of the consumers in `pool`.
    pub fn start(http: &Http, producer: &str, pool: &[String], users: u64, per_second: u32, readers: usize) -> Self {
        let shared = Arc::new(Shared {
            acked: Mutex::new(HashMap::new()),
            all: Mutex::new(Vec::new()),
            sent: AtomicUsize::new(0),
            pool: Mutex::new(pool.to_vec()),
            ready: Mutex::new(HashSet::new()),
            stop: AtomicBool::new(false),
            stop_sending: AtomicBool::new(false),
            sending: Arc::new(tokio::sync::Semaphore::new(SENDS_IN_FLIGHT as usize)),
            tally: Mutex::new(Tally::default()),
            users,
        });
        let mut tasks = vec![
            tokio::spawn(send(http.clone(), producer.to_string(), shared.clone(), per_second)),
            tokio::spawn(poll_ready(http.clone(), shared.clone())),
        ];
        for r in 0..readers {
            tasks.push(tokio::spawn(read(http.clone(), shared.clone(), r as u64)));
        }
        Self { shared, tasks }
    }

    /// Waits until the poller has seen `url` ready (readers call it from then on).
    pub async fn wait_ready(&self, url: &str, limit: Duration) {
        let start = Instant::now();
        while !self.shared.ready.lock().unwrap().contains(url) {
            assert!(start.elapsed() < limit, "{url} not ready within {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Adds a consumer to the pool: readers call it once its `/readyz` answers 200.
    pub fn add(&self, url: &str) {
        self.shared.pool.lock().unwrap().push(url.to_string());
    }

    /// Takes a consumer out of the pool at once (as an endpoint removed from a Service).
    pub fn remove(&self, url: &str) {
        self.shared.pool.lock().unwrap().retain(|u| u != url);
        self.shared.ready.lock().unwrap().remove(url);
    }

    /// The consumers readers call now, as a handle of its own.
    pub fn ready_pool(&self) -> ReadyPool {
        ReadyPool(self.shared.clone())
    }

    /// Every notification acknowledged so far.
    pub fn acked(&self) -> Vec<Acked> {
        self.shared.all.lock().unwrap().clone()
    }

    /// What the readers saw since the last call (or the start); the load goes on.
    pub fn take_report(&self) -> Report {
        let sent = self.shared.sent.swap(0, Ordering::AcqRel);
        let mut tally = std::mem::take(&mut *self.shared.tally.lock().unwrap());
        for since in tally.failing_since.values() {
            tally.longest_failing = tally.longest_failing.max(since.elapsed());
        }
        tally.latencies_us.sort_unstable();
        let pct = |p: f64| {
            let v = &tally.latencies_us;
            if v.is_empty() { 0.0 } else { v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0 }
        };
        Report {
            reads: tally.reads,
            not_200: tally.not_200,
            incomplete: tally.incomplete,
            connection_errors: tally.connection_errors,
            longest_failing: tally.longest_failing,
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
            samples: tally.samples,
            sent,
            send_errors: tally.send_errors,
        }
    }

    /// Stops sending, and waits until every send in flight is answered (the readers go on).
    pub async fn stop_sending(&self) {
        self.shared.stop_sending.store(true, Ordering::Release);
        // Every permit back means no send in flight; closed, no new one starts.
        if let Ok(all) = self.shared.sending.acquire_many(SENDS_IN_FLIGHT).await {
            all.forget();
        }
        self.shared.sending.close();
    }

    /// Stops the load and waits for its tasks.
    pub async fn stop(self) {
        self.shared.stop.store(true, Ordering::Release);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn send(http: Http, producer: String, shared: Arc<Shared>, per_second: u32) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(per_second.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut i = 0u64;
    while !shared.stop.load(Ordering::Acquire) && !shared.stop_sending.load(Ordering::Acquire) {
        tick.tick().await;
        let Ok(permit) = shared.sending.clone().acquire_owned().await else { return };
        let to = i % shared.users + 1;
        i += 1;
        let (http, producer, shared) = (http.clone(), producer.clone(), shared.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match http.send_form(&producer, 1, to, &format!("load {i}")).await {
                Ok(a) if a.status == 200 => {
                    let id = a.json["id"].as_str().unwrap_or_default().to_string();
                    let acked = Acked {
                        id: id.clone(),
                        to,
                        partition: a.json["partition"].as_i64().unwrap_or(-1),
                        offset: a.json["offset"].as_i64().unwrap_or(-1),
                    };
                    shared.acked.lock().unwrap().entry(to).or_default().push(id);
                    shared.all.lock().unwrap().push(acked);
                    shared.sent.fetch_add(1, Ordering::AcqRel);
                }
                Ok(a) => shared.send_failed(format!("send to {to}: {} {}", a.status, a.text)),
                Err(e) => shared.send_failed(format!("send to {to}: {e}")),
            }
        });
    }
}

async fn poll_ready(http: Http, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::Acquire) {
        let pool = shared.pool.lock().unwrap().clone();
        for url in pool {
            let ok = tokio::time::timeout(Duration::from_secs(1), http.get(&format!("{url}/readyz")))
                .await
                .is_ok_and(|a| a.is_ok_and(|a| a.status == 200));
            let in_pool = shared.pool.lock().unwrap().contains(&url);
            let mut ready = shared.ready.lock().unwrap();
            if ok && in_pool {
                ready.insert(url);
            } else {
                ready.remove(&url);
            }
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

async fn read(http: Http, shared: Arc<Shared>, seed: u64) {
    let mut n = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    while !shared.stop.load(Ordering::Acquire) {
        n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let user = (n >> 33) % shared.users + 1;
        let consumer = {
            let ready = shared.ready.lock().unwrap();
            let mut all: Vec<&String> = ready.iter().collect();
            all.sort();
            all.get((n >> 20) as usize % all.len().max(1)).map(|u| (*u).clone())
        };
        let Some(consumer) = consumer else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let before: Vec<String> = shared.acked.lock().unwrap().get(&user).cloned().unwrap_or_default();
        let start = Instant::now();
        let answer = tokio::time::timeout(READ_LIMIT, http.get(&format!("{consumer}/notifications/{user}"))).await;
        let took = start.elapsed();
        record(&mut shared.tally.lock().unwrap(), user, &consumer, &before, answer, took);
        // Readers pace themselves a little: the point is many reads across the moves, not load.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Counts one read's outcome.
fn record(
    tally: &mut Tally,
    user: u64,
    consumer: &str,
    before: &[String],
    answer: Result<Result<crate::http::Answer, String>, tokio::time::error::Elapsed>,
    took: Duration,
) {
    match answer {
        Err(_) => {
            tally.reads += 1;
            tally.not_200 += 1;
            tally.failed(user, format!("user {user} from {consumer}: no answer within {READ_LIMIT:?}"));
        }
        Ok(Err(e)) => {
            tally.connection_errors += 1;
            note_connection_error(tally, format!("user {user} from {consumer}: {e}"));
        }
        Ok(Ok(a)) if a.status == 200 => {
            tally.reads += 1;
            tally.latencies_us.push(took.as_micros() as u64);
            let got: HashSet<&str> = a.json["notifications"]
                .as_array()
                .map(|l| l.iter().filter_map(|n| n["id"].as_str()).collect())
                .unwrap_or_default();
            let missing: Vec<&String> = before.iter().filter(|id| !got.contains(id.as_str())).collect();
            if missing.is_empty() {
                tally.succeeded(user);
            } else {
                tally.incomplete += 1;
                let why = format!("user {user} from {consumer}: 200 without acknowledged {missing:?}");
                tally.failed(user, why);
            }
        }
        Ok(Ok(a)) => {
            tally.reads += 1;
            tally.not_200 += 1;
            tally.latencies_us.push(took.as_micros() as u64);
            let at = chrono::Utc::now().format("%H:%M:%S%.3f");
            let ms = took.as_millis();
            tally.failed(user, format!("{at} user {user} from {consumer} ({ms} ms): {} {}", a.status, a.text));
        }
    }
}

/// A connection error is kept among the samples but is not a failed read: a killed consumer
/// stays in a Service until its readiness probe fails.
fn note_connection_error(tally: &mut Tally, why: String) {
    if tally.samples.len() < 20 {
        tally.samples.push(format!("(connection error) {why}"));
    }
}

/// Users the scenarios send to.
pub const USERS: u64 = 200;

/// A pipeline under steady load: a producer, consumers on nisshi's sqlite engine (its offsets
/// are exact, so the read barrier's log-end check is too), and the [`Load`].
pub struct Scenario {
    pub setup: Setup,
    pub http: Http,
    pub producer: Service,
    pub consumers: Vec<Service>,
    pub load: Load,
    env: Vec<(&'static str, String)>,
    /// Consumers stopped so far: their logs are part of [`Scenario::moves_log`].
    stopped: Vec<Service>,
}

impl Scenario {
    /// Starts `consumers` consumers with `env` (besides the harness's own) and the load: 100
    /// sends/s, four readers.
    pub async fn start(consumers: usize, env: &[(&'static str, String)]) -> Self {
        let setup = Setup::new(Storage::Sqlite, 6, USERS).await;
        let http = Http::new();
        let producer = setup.producer(&[]);
        wait_ready(&http, &producer, READY).await;
        let mut env = env.to_vec();
        env.push(("HERALD_MAX_PER_USER", "1000000".into()));
        // A member restoring a partition it was just given handles those records in the loop
        // that also consumes its other partitions, so their reads wait behind the restore. In
        // these debug builds, seven processes on two CPUs, a restore of ~1,500 records held
        // reads of the member's other partitions past the 2 s default (measured: 503s starting
        // within a second of an assignment, on the member that got it). Release builds restore
        // such a partition in milliseconds. What this scenario checks is that moves themselves
        // fail no read, so the reads get 6 s here; the README's known limits say the rest.
        env.push(("HERALD_READ_TIMEOUT", "6s".into()));
        let mut running = Vec::new();
        for _ in 0..consumers {
            running.push(setup.consumer(&env));
        }
        for c in &running {
            wait_ready(&http, c, READY).await;
        }
        let even = 6.0 / consumers as f64;
        wait_assigned(&http, &running.iter().collect::<Vec<_>>(), &vec![even; consumers]).await;
        let urls: Vec<String> = running.iter().map(|c| c.url.clone()).collect();
        let load = Load::start(&http, &producer.url, &urls, USERS, 100, 4);
        for url in &urls {
            load.wait_ready(url, READY).await;
        }
        // A few seconds of steady state first.
        tokio::time::sleep(Duration::from_secs(3)).await;
        Self { setup, http, producer, consumers: running, load, env, stopped: Vec::new() }
    }

    /// Scales the group 3 → 6 → 3, one consumer at a time on the way down, each taken out of the
    /// readers' pool before its SIGTERM (as a Service endpoint is). Returns what the readers saw
    /// meanwhile.
    pub async fn scale_3_6_3(&mut self) -> Report {
        let _ = self.load.take_report();
        for _ in 0..3 {
            let c = self.setup.consumer(&self.env);
            self.load.add(&c.url);
            self.consumers.push(c);
        }
        wait_assigned(&self.http, &self.consumers.iter().collect::<Vec<_>>(), &[1.0; 6]).await;
        for c in &self.consumers {
            self.load.wait_ready(&c.url, SETTLE).await;
        }
        for spread in [&[2.0, 1.0, 1.0, 1.0, 1.0][..], &[2.0, 2.0, 1.0, 1.0], &[2.0, 2.0, 2.0]] {
            let mut leaving = self.consumers.remove(0);
            self.load.remove(&leaving.url);
            assert!(leaving.terminate(Duration::from_secs(120)).success(), "{} did not exit cleanly", leaving.url);
            self.stopped.push(leaving);
            wait_assigned(&self.http, &self.consumers.iter().collect::<Vec<_>>(), spread).await;
        }
        self.load.take_report()
    }

    /// Replaces each consumer in turn, as a rolling update with one surge pod does: a new one
    /// starts, the readers call it once it is ready, then the old one is taken out of the pool
    /// and stopped with SIGTERM.
    pub async fn rolling_restart(&mut self) -> Report {
        let _ = self.load.take_report();
        let even = 6.0 / self.consumers.len() as f64;
        for _ in 0..self.consumers.len() {
            let fresh = self.setup.consumer(&self.env);
            self.load.add(&fresh.url);
            self.load.wait_ready(&fresh.url, SETTLE).await;
            let mut old = self.consumers.remove(0);
            self.consumers.push(fresh);
            self.load.remove(&old.url);
            assert!(old.terminate(Duration::from_secs(120)).success(), "{} did not exit cleanly", old.url);
            self.stopped.push(old);
            let spread = vec![even; self.consumers.len()];
            wait_assigned(&self.http, &self.consumers.iter().collect::<Vec<_>>(), &spread).await;
        }
        self.load.take_report()
    }

    /// SIGKILL of the first consumer, without a goodbye: it stays in the readers' pool until its
    /// `/readyz` stops answering (as a Service endpoint does until its probe fails). Returns what
    /// the readers saw until the survivors hold every partition and `settle` more passed.
    pub async fn kill_one(&mut self, settle: Duration) -> Report {
        let _ = self.load.take_report();
        let mut killed = self.consumers.remove(0);
        killed.kill9();
        let even = 6.0 / self.consumers.len() as f64;
        let spread = vec![even; self.consumers.len()];
        wait_assigned(&self.http, &self.consumers.iter().collect::<Vec<_>>(), &spread).await;
        tokio::time::sleep(settle).await;
        self.load.remove(&killed.url);
        self.load.take_report()
    }

    /// Waits until every partition has a caught-up standby (`--standby`): `partitions` claims in
    /// the `standby` state across the consumers.
    pub async fn wait_standbys(&self, partitions: usize) {
        crate::wait_for("a caught-up standby of every partition", SETTLE, || async {
            let mut standing = 0;
            for c in &self.consumers {
                let a = self.http.get(&format!("{}/internal/claims", c.url)).await.ok()?;
                standing += a.json["claims"].as_array()?.iter().filter(|c| c["state"] == "standby").count();
            }
            (standing == partitions).then_some(())
        })
        .await;
    }

    /// The consumers' memory, averaged: RSS and the store's estimate
    /// (`herald_consumer_store_bytes`), in MiB.
    pub async fn memory(&self) -> (f64, f64) {
        let (mut rss, mut store) = (0.0, 0.0);
        for c in &self.consumers {
            rss += c.rss_bytes().unwrap_or(0) as f64;
            store += crate::metrics::sum(&crate::scrape(&self.http, c).await, "herald_consumer_store_bytes", &[]);
        }
        let n = self.consumers.len().max(1) as f64 * 1_048_576.0;
        (rss / n, store / n)
    }

    /// The consumers' log lines about moves and trouble (the last 30 of each, stopped ones
    /// first): what a failed assertion shows next to the reads that failed.
    pub fn moves_log(&self) -> String {
        const ABOUT: [&str; 8] =
            ["handoff", "revoked", "assigned", "taken back", "standby", "WARN", "ERROR", "shutting down"];
        let mut out = String::new();
        let stopped = self.stopped.iter().map(|c| (c, " (stopped)"));
        for (c, what) in stopped.chain(self.consumers.iter().map(|c| (c, ""))) {
            out.push_str(&format!("--- {}{what}\n{}\n", c.url, c.log_excerpt(&ABOUT, 30)));
        }
        out
    }

    /// Stops the load; then every running consumer answers every user with every notification
    /// acknowledged, in order.
    pub async fn finish(self) {
        self.load.stop_sending().await;
        let acked = self.load.acked();
        self.load.stop().await;
        let refs: Vec<&Service> = self.consumers.iter().collect();
        assert_complete_everywhere(&self.http, &refs, &expected_lists(&acked), SETTLE).await;
    }
}
