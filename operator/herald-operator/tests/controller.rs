//! The real controller — `herald-operator run` (`run_with`), with its watches, predicates,
//! prober and requeues — on the stand-in API server, which pushes watch events. What only a
//! running loop shows: how often it reconciles under traffic, conflicts it must not retry,
//! policy refusals, and deletions that must not hang.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use herald_api::NotificationPipeline;
use herald_fake_apiserver::Fault;
use herald_operator::build::validate::{AllowedNamespaces, TopicNamePolicy};
use herald_operator::fixtures::{FakeApiServer, FakeLag, FakeTopics, pipeline, run_args};
use herald_operator::run::{RunArgs, run_with};
use tokio_util::sync::CancellationToken;

struct Running {
    server: FakeApiServer,
    registry: prometheus::Registry,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(server: &FakeApiServer, lag: FakeLag, args: RunArgs) -> Running {
    let registry = prometheus::Registry::new();
    let shutdown = CancellationToken::new();
    let task = {
        let (client, registry, shutdown) = (server.client(), registry.clone(), shutdown.clone());
        tokio::spawn(async move {
            run_with(client, FakeTopics::existing(6), lag, &args, registry, shutdown).await.unwrap();
        })
    };
    Running { server: server.clone(), registry, shutdown, task }
}

impl Running {
    /// The sum of a counter over all its labels.
    fn counter(&self, name: &str) -> f64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value()))
            .sum()
    }

    fn pipeline(&self, namespace: &str, name: &str) -> Option<NotificationPipeline> {
        self.server.get("notificationpipelines", namespace, name).map(|v| serde_json::from_value(v).unwrap())
    }

    fn ready(&self, namespace: &str, name: &str) -> Option<(String, String, String)> {
        let p = self.pipeline(namespace, name)?;
        let c = p.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
        Some((c.status, c.reason, c.message))
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("the operator stops").unwrap();
    }
}

async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn create(server: &FakeApiServer, p: NotificationPipeline) {
    server.put("notificationpipelines", serde_json::to_value(p).unwrap());
}

fn external(name: &str) -> NotificationPipeline {
    pipeline(
        name,
        "apps",
        serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "External"}}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_lag_that_changes_on_every_probe_reconciles_and_probes_follow_the_sync_period() {
    const PIPELINES: usize = 5;
    const PERIODS: u32 = 10;
    let sync = Duration::from_millis(400);
    let server = FakeApiServer::new();
    for i in 0..PIPELINES {
        create(&server, external(&format!("p{i}")));
    }
    let lag = FakeLag::changing(7);
    let started = Instant::now();
    let op = start(&server, lag.clone(), run_args(sync));
    wait_for("every pipeline Ready", Duration::from_secs(20), || {
        (0..PIPELINES).all(|i| op.ready("apps", &format!("p{i}")).is_some_and(|r| r.0 == "True"))
    })
    .await;
    let (r0, w0, p0) = (
        op.counter("herald_operator_reconciliations_total"),
        op.counter("herald_operator_status_writes_total"),
        lag.probes.load(Ordering::SeqCst),
    );
    let converged = started.elapsed();
    // The measurement window: ten sync periods of steady traffic.
    tokio::time::sleep(sync * PERIODS).await;
    let reconciles = op.counter("herald_operator_reconciliations_total") - r0;
    let writes = op.counter("herald_operator_status_writes_total") - w0;
    let probes = lag.probes.load(Ordering::SeqCst) - p0;
    let per = |n: f64| n / PIPELINES as f64;
    eprintln!(
        "{PIPELINES} pipelines, {PERIODS} sync periods after converging in {converged:?}: {reconciles} reconciles, {probes} probes, {writes} status writes"
    );
    assert!(
        per(reconciles) <= f64::from(PERIODS) + 2.0,
        "{} reconciles per pipeline in {PERIODS} periods",
        per(reconciles)
    );
    assert!(
        per(reconciles) >= f64::from(PERIODS) - 2.0,
        "{} reconciles per pipeline: the sync period drives them",
        per(reconciles)
    );
    let probes_per = probes as f64 / PIPELINES as f64;
    assert!(
        (f64::from(PERIODS) - 1.0..=f64::from(PERIODS) + 1.0).contains(&probes_per),
        "{probes_per} probes per pipeline"
    );
    assert!(per(writes) <= f64::from(PERIODS) + 1.0, "{} status writes per pipeline", per(writes));
    // From the start, creation included: at most two reconciles per pipeline above one per period.
    let all = op.counter("herald_operator_reconciliations_total");
    let periods_since_start = (started.elapsed().as_secs_f64() / sync.as_secs_f64()).ceil();
    assert!(
        per(all) <= periods_since_start + 2.0,
        "{} reconciles per pipeline over {periods_since_start} periods",
        per(all)
    );
    // The lag in the status is the prober's, fresh every period.
    let lag_in_status = op.pipeline("apps", "p0").unwrap().status.unwrap().consumer.unwrap().lag;
    assert!(lag_in_status > 0, "{lag_in_status}");
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_it_does_not_own_are_left_alone_with_one_warning_and_no_retries() {
    let server = FakeApiServer::new();
    server.serve_strimzi();
    // Someone else's Deployment named like the producer of pipeline "chat", and an unlabelled
    // KafkaTopic named like the one pipeline "social" would make.
    server.put(
        "deployments",
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "chat-producer", "namespace": "apps", "labels": {"team": "billing"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "billing"}]}}}}),
    );
    server.put(
        "kafkatopics",
        serde_json::json!({"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaTopic",
            "metadata": {"name": "apps.social", "namespace": "kafka", "labels": {"strimzi.io/cluster": "c"}},
            "spec": {"topicName": "payments", "partitions": 3}}),
    );
    // As they stand once their own controllers (simulated) reported on them.
    let foreign = server.get("deployments", "apps", "chat-producer").unwrap();
    let foreign_topic = server.get("kafkatopics", "kafka", "apps.social").unwrap();
    create(&server, external("chat"));
    create(
        &server,
        pipeline(
            "social",
            "apps",
            serde_json::json!({"kafka": {"bootstrapServers": "k:9092",
            "clusterRef": {"name": "c", "namespace": "kafka"}}}),
        ),
    );
    let sync = Duration::from_millis(200);
    let op = start(&server, FakeLag::fixed(0), run_args(sync));
    for (name, what) in [("chat", "Deployment apps/chat-producer"), ("social", "KafkaTopic kafka/apps.social")] {
        wait_for(&format!("{name} NameConflict"), Duration::from_secs(10), || {
            op.ready("apps", name).is_some_and(|r| r.1 == "NameConflict" && r.2.contains(what))
        })
        .await;
    }
    // Both reconciles have finished (the status is written before a reconcile ends).
    wait_for("two reconciles counted", Duration::from_secs(10), || {
        op.counter("herald_operator_reconciliations_total") >= 2.0
    })
    .await;
    let reconciles = op.counter("herald_operator_reconciliations_total");
    assert_eq!(reconciles, 2.0, "one reconcile each");
    tokio::time::sleep(sync * 10).await;
    assert_eq!(op.counter("herald_operator_reconciliations_total"), reconciles, "a conflict is not retried");
    assert_eq!(server.get("deployments", "apps", "chat-producer").unwrap(), foreign, "untouched");
    assert_eq!(server.get("kafkatopics", "kafka", "apps.social").unwrap(), foreign_topic, "untouched");
    assert!(server.get("deployments", "apps", "social-producer").is_none(), "nothing applied after the conflict");
    let warnings: Vec<_> =
        server.list("events", Some("apps")).into_iter().filter(|e| e["reason"] == "NameConflict").collect();
    assert_eq!(warnings.len(), 2, "one Warning per pipeline: {warnings:?}");
    // The owner of the Deployment removes it and asks for a reconcile: the pipeline recovers.
    server.delete("deployments", "apps", "chat-producer");
    let mut chat = serde_json::to_value(op.pipeline("apps", "chat").unwrap()).unwrap();
    chat["metadata"]["annotations"] = serde_json::json!({herald_operator::controller::RECONCILE_REQUEST: "1"});
    server.put("notificationpipelines", chat);
    wait_for("chat Ready", Duration::from_secs(10), || op.ready("apps", "chat").is_some_and(|r| r.0 == "True")).await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_outside_the_tenancy_policy_are_refused_and_nothing_is_applied() {
    let server = FakeApiServer::new();
    server.serve_strimzi();
    create(
        &server,
        pipeline(
            "elsewhere",
            "apps",
            serde_json::json!({"kafka": {"bootstrapServers": "k:9092",
            "clusterRef": {"name": "c", "namespace": "team-b"}}, "topic": {"name": "apps.elsewhere"},
            "consumer": {"groupId": "apps.elsewhere"}}),
        ),
    );
    create(
        &server,
        pipeline(
            "unprefixed",
            "apps",
            serde_json::json!({"kafka": {"bootstrapServers": "k:9092",
            "clusterRef": {"name": "c", "namespace": "kafka"}}, "topic": {"name": "payments"}}),
        ),
    );
    create(
        &server,
        pipeline(
            "fine",
            "apps",
            serde_json::json!({"kafka": {"bootstrapServers": "k:9092",
            "clusterRef": {"name": "c", "namespace": "kafka"}}, "topic": {"name": "apps.fine"},
            "consumer": {"groupId": "apps.fine"}}),
        ),
    );
    let mut args = run_args(Duration::from_millis(300));
    args.allowed_cluster_namespaces = AllowedNamespaces::parse("kafka").unwrap();
    args.topic_name_policy = TopicNamePolicy::NamespacePrefix;
    let op = start(&server, FakeLag::fixed(0), args);
    for (name, words) in [("elsewhere", "namespace team-b are not allowed"), ("unprefixed", "topic payments")] {
        wait_for(&format!("{name} PolicyViolation"), Duration::from_secs(10), || {
            op.ready("apps", name).is_some_and(|r| r.1 == "PolicyViolation" && r.2.contains(words))
        })
        .await;
        assert!(server.get("deployments", "apps", &format!("{name}-producer")).is_none());
    }
    assert!(server.list("kafkatopics", None).iter().all(|t| t["metadata"]["name"] == "apps.fine"));
    wait_for("fine Ready", Duration::from_secs(10), || op.ready("apps", "fine").is_some_and(|r| r.0 == "True")).await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleanup_that_keeps_failing_releases_the_finalizer_after_the_timeout() {
    let server = FakeApiServer::new();
    server.serve_strimzi();
    let strimzi = |policy: &str| {
        serde_json::json!({"kafka": {"bootstrapServers": "k:9092", "clusterRef": {"name": "c", "namespace": "kafka"}},
            "topic": {"deletionPolicy": policy}})
    };
    create(&server, pipeline("social", "apps", strimzi("Delete")));
    create(&server, pipeline("kept", "apps", strimzi("Retain")));
    let mut args = run_args(Duration::from_millis(300));
    args.cleanup_timeout = Duration::from_secs(3);
    let op = start(&server, FakeLag::fixed(0), args);
    wait_for("both Ready", Duration::from_secs(10), || {
        ["social", "kept"].iter().all(|n| op.ready("apps", n).is_some_and(|r| r.0 == "True"))
    })
    .await;
    assert_eq!(
        op.pipeline("apps", "social").unwrap().metadata.finalizers.unwrap(),
        [herald_operator::controller::FINALIZER]
    );
    assert!(
        op.pipeline("apps", "kept").unwrap().metadata.finalizers.unwrap_or_default().is_empty(),
        "Retain: no finalizer"
    );
    // Without Delete, deletion is immediate.
    server.delete("notificationpipelines", "apps", "kept");
    assert!(op.pipeline("apps", "kept").is_none());
    // With Delete, the KafkaTopic's deletion is refused (403) again and again.
    server.inject(Fault { verb: "delete".into(), resource: "kafkatopics".into(), name: None, code: 403 });
    let deleting = Instant::now();
    server.delete("notificationpipelines", "apps", "social");
    wait_for("the pipeline gone", Duration::from_secs(30), || op.pipeline("apps", "social").is_none()).await;
    let took = deleting.elapsed();
    // deletionTimestamp has whole seconds (as the API server's): up to one second early.
    assert!(took >= Duration::from_secs(2), "released after {took:?}, before the cleanup timeout");
    assert!(server.get("kafkatopics", "kafka", "apps.social").is_some(), "left behind");
    let abandoned: Vec<_> =
        server.list("events", Some("apps")).into_iter().filter(|e| e["reason"] == "CleanupAbandoned").collect();
    assert_eq!(abandoned.len(), 1);
    assert!(
        abandoned[0]["note"].as_str().unwrap().contains("KafkaTopic kafka/apps.social was left behind"),
        "{abandoned:?}"
    );
    assert!(op.counter("herald_operator_reconcile_retries_total") >= 2.0, "retried with backoff meanwhile");
    op.stop().await;
}
