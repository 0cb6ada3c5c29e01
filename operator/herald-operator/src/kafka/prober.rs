//! The background lag prober. Reconciles never call Kafka for the lag: they register what to
//! probe and read the latest result. Once per period the prober probes every registered
//! pipeline, all pipelines of one Kafka cluster in one batch through one client (see
//! [`super::protocol`]); a pipeline registered anew is probed at once, and its first result
//! triggers a reconcile so that scaling starts without waiting for a period.
//!
//! A failed probe keeps the last good reading until it is older than three periods; after that
//! the lag is unknown (the consumer count is kept) with the probe's error.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_api::KafkaSpec;
use prometheus::IntCounterVec;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::lag::{LagReport, LagSource, LagTarget, cluster_key};

/// What the reconcile learns about a pipeline's lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LagView {
    /// A reading no older than three periods.
    Known(LagReport),
    /// No usable reading: why.
    Unknown(String),
}

struct Registration {
    kafka: KafkaSpec,
    target: LagTarget,
    reading: Option<(LagReport, Instant)>,
    error: Option<String>,
    /// Not probed since it was registered (or changed).
    fresh: bool,
}

/// How many probes ran, by outcome (`ok`, `error`, `missing`).
#[derive(Clone)]
pub struct ProbeMetrics {
    pub probes: IntCounterVec,
}

/// The prober and its registrations.
pub struct Prober {
    source: Box<dyn LagSource>,
    period: Duration,
    registrations: Mutex<HashMap<String, Registration>>,
    wake: Notify,
    /// Pipelines (`namespace/name`) whose first reading just arrived.
    first_readings: tokio::sync::mpsc::UnboundedSender<String>,
    metrics: Option<ProbeMetrics>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Prober {
    /// A prober probing every `period` through `source`; the receiver yields the pipelines
    /// whose first reading arrived (for the controller to reconcile them).
    pub fn new(
        source: impl LagSource,
        period: Duration,
        metrics: Option<ProbeMetrics>,
    ) -> (Arc<Self>, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let (first_readings, receiver) = tokio::sync::mpsc::unbounded_channel();
        let prober = Arc::new(Self {
            source: Box::new(source),
            period,
            registrations: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            first_readings,
            metrics,
        });
        (prober, receiver)
    }

    /// Probes `key`'s `target` on the cluster `kafka` reaches from now on (a no-op when nothing
    /// changed; a change starts over).
    pub fn register(&self, key: &str, kafka: &KafkaSpec, target: LagTarget) {
        let mut registrations = lock(&self.registrations);
        if let Some(r) = registrations.get_mut(key) {
            if r.target == target && r.kafka == *kafka {
                return;
            }
            let same_cluster = cluster_key(&r.kafka) == cluster_key(kafka) && r.target == target;
            r.kafka = kafka.clone();
            if same_cluster {
                // Rotated credentials: the readings still hold.
                return;
            }
            r.target = target;
            r.reading = None;
            r.error = None;
            r.fresh = true;
        } else {
            registrations.insert(
                key.to_string(),
                Registration { kafka: kafka.clone(), target, reading: None, error: None, fresh: true },
            );
        }
        drop(registrations);
        self.wake.notify_one();
    }

    /// Stops probing `key`.
    pub fn unregister(&self, key: &str) {
        lock(&self.registrations).remove(key);
    }

    /// The latest usable reading of `key`, or why there is none.
    pub fn latest(&self, key: &str) -> LagView {
        let registrations = lock(&self.registrations);
        let Some(r) = registrations.get(key) else {
            return LagView::Unknown("not probed".into());
        };
        match (&r.reading, &r.error) {
            (Some((report, at)), _) if at.elapsed() <= self.period * 3 => LagView::Known(report.clone()),
            (_, Some(error)) => LagView::Unknown(error.clone()),
            (Some(_), None) => LagView::Unknown("the last reading is older than three sync periods".into()),
            (None, None) => LagView::Unknown("waiting for the first lag probe".into()),
        }
    }

    /// The registered pipelines (`namespace/name`).
    pub fn keys(&self) -> Vec<String> {
        lock(&self.registrations).keys().cloned().collect()
    }

    /// How many pipelines are registered.
    pub fn len(&self) -> usize {
        lock(&self.registrations).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Probes every registration once, now (for tests and simulated timelines).
    pub async fn probe_now(&self) {
        self.round(true).await;
    }

    /// Probes until `shutdown`: every registration once per period, new ones at once.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut next_round = Instant::now();
        loop {
            let due_all = Instant::now() >= next_round;
            if due_all {
                next_round = Instant::now() + self.period;
            }
            self.round(due_all).await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next_round) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// One round: every registration (`all`) or only the fresh ones, batched by cluster.
    async fn round(&self, all: bool) {
        let mut batches: BTreeMap<String, (KafkaSpec, Vec<(String, LagTarget)>)> = BTreeMap::new();
        let in_use: Vec<String> = {
            let registrations = lock(&self.registrations);
            for (key, r) in registrations.iter().filter(|(_, r)| all || r.fresh) {
                batches
                    .entry(cluster_key(&r.kafka))
                    .or_insert_with(|| (r.kafka.clone(), Vec::new()))
                    .1
                    .push((key.clone(), r.target.clone()));
            }
            let mut keys: Vec<String> = registrations.values().map(|r| cluster_key(&r.kafka)).collect();
            keys.sort();
            keys.dedup();
            keys
        };
        if all {
            self.source.retain(&in_use);
        }
        let probes = batches.values().map(|(kafka, members)| async move {
            let targets: Vec<LagTarget> = members.iter().map(|(_, t)| t.clone()).collect();
            let results = self.source.probe(kafka, &targets).await;
            (members, results)
        });
        for (members, results) in futures::future::join_all(probes).await {
            let now = Instant::now();
            let mut registrations = lock(&self.registrations);
            for ((key, target), result) in members.iter().zip(results) {
                let Some(r) = registrations.get_mut(key) else { continue };
                if r.target != *target {
                    continue; // changed while probing
                }
                let first = r.reading.is_none() && r.error.is_none();
                let outcome = match result {
                    Ok(Some(report)) => {
                        r.reading = Some((report, now));
                        r.error = None;
                        "ok"
                    }
                    Ok(None) => {
                        r.error = Some(format!("topic {} not found", target.topic));
                        "missing"
                    }
                    Err(e) => {
                        r.error = Some(e.to_string());
                        "error"
                    }
                };
                r.fresh = false;
                if let Some(m) = &self.metrics {
                    m.probes.with_label_values(&[outcome]).inc();
                }
                if first {
                    let _ = self.first_readings.send(key.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::error::TopicError;
    use futures::future::BoxFuture;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    /// A cluster whose lag grows by one on every probe; can be made to fail.
    #[derive(Default)]
    struct Counting {
        lag: AtomicI64,
        batches: AtomicUsize,
        probes: AtomicUsize,
        failing: std::sync::atomic::AtomicBool,
    }

    impl LagSource for Arc<Counting> {
        fn probe<'a>(
            &'a self,
            _: &'a KafkaSpec,
            targets: &'a [LagTarget],
        ) -> BoxFuture<'a, Vec<Result<Option<LagReport>, TopicError>>> {
            Box::pin(async move {
                self.batches.fetch_add(1, Ordering::SeqCst);
                targets
                    .iter()
                    .map(|_| {
                        self.probes.fetch_add(1, Ordering::SeqCst);
                        if self.failing.load(Ordering::SeqCst) {
                            return Err(TopicError::Unreachable(rdkafka::error::KafkaError::Canceled));
                        }
                        let lag = self.lag.fetch_add(1, Ordering::SeqCst);
                        Ok(Some(LagReport { partitions: 1, per_partition: vec![(0, lag)] }))
                    })
                    .collect()
            })
        }

        fn retain(&self, _: &[String]) {}
    }

    fn kafka(servers: &str) -> KafkaSpec {
        serde_json::from_value(serde_json::json!({"bootstrapServers": servers})).unwrap()
    }

    fn target(t: &str) -> LagTarget {
        LagTarget { topic: t.into(), group: format!("{t}-g") }
    }

    #[tokio::test(start_paused = true)]
    async fn one_batch_per_cluster_per_period_and_new_pipelines_at_once() {
        let source = Arc::new(Counting::default());
        let (prober, mut first) = Prober::new(source.clone(), Duration::from_secs(10), None);
        for i in 0..5 {
            prober.register(&format!("apps/p{i}"), &kafka("a:9092"), target(&format!("t{i}")));
        }
        prober.register("apps/q", &kafka("b:9092"), target("q"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(prober.clone().run(shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(source.batches.load(Ordering::SeqCst), 2, "one batch per cluster");
        assert_eq!(source.probes.load(Ordering::SeqCst), 6);
        let mut firsts = Vec::new();
        while let Ok(k) = first.try_recv() {
            firsts.push(k);
        }
        assert_eq!(firsts.len(), 6, "each first reading is announced");
        assert!(matches!(prober.latest("apps/p0"), LagView::Known(_)));
        // A pipeline registered between rounds is probed at once, alone.
        tokio::time::sleep(Duration::from_secs(3)).await;
        prober.register("apps/new", &kafka("a:9092"), target("new"));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(source.probes.load(Ordering::SeqCst), 7);
        // Ten more periods: every pipeline once per period.
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(source.probes.load(Ordering::SeqCst), 7 + 10 * 7);
        // Registering again with nothing changed probes nothing extra.
        prober.register("apps/p0", &kafka("a:9092"), target("t0"));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(source.probes.load(Ordering::SeqCst), 77);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_probe_keeps_the_last_reading_for_three_periods() {
        let source = Arc::new(Counting::default());
        let (prober, _first) = Prober::new(source.clone(), Duration::from_secs(10), None);
        prober.register("apps/p", &kafka("a:9092"), target("t"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(prober.clone().run(shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let LagView::Known(good) = prober.latest("apps/p") else { panic!("no reading") };
        source.failing.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(prober.latest("apps/p"), LagView::Known(good), "kept within three periods");
        tokio::time::sleep(Duration::from_secs(10)).await;
        match prober.latest("apps/p") {
            LagView::Unknown(why) => assert!(why.contains("cannot reach Kafka"), "{why}"),
            other => panic!("{other:?}"),
        }
        prober.unregister("apps/p");
        assert!(prober.is_empty());
        shutdown.cancel();
        task.await.unwrap();
    }
}
