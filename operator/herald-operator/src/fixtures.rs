//! Fixtures for tests and benchmarks (feature `fixtures`): pipeline builders, the example
//! pipelines of `deploy/examples/`, every Kafka-security combination a pipeline can ask for, and
//! the repository root. One place, so that every test and the operator bench build pipelines the
//! same way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use herald_api::{KafkaSpec, NotificationPipeline};
pub use herald_fake_apiserver::FakeApiServer;
use serde::Deserialize;

use crate::build::desired::{Defaults, Images};
use crate::build::validate::{AllowedNamespaces, TenancyPolicy, TopicNamePolicy};
use crate::controller::{Context, Settings};
use crate::kafka::admin::{Ensured, Topics, WantedTopic};
use crate::kafka::error::TopicError;
use crate::kafka::lag::{LagReport, LagSource, LagTarget};
use crate::kafka::prober::Prober;
use crate::metrics::OperatorMetrics;
use crate::run::RunArgs;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The uid the API server would have given the fixtures' pipelines.
pub const UID: &str = "00000000-0000-0000-0000-000000000000";

/// The repository root: the first directory holding `Cargo.lock` above the crate being tested
/// (read at run time, so that a test binary built from another checkout finds this one).
pub fn repo_root() -> PathBuf {
    let start =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    start
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").exists())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// A pipeline `name` in `namespace` as the API server would hand it over (uid, generation 1).
pub fn pipeline(name: &str, namespace: &str, spec: serde_json::Value) -> NotificationPipeline {
    let mut p: NotificationPipeline = serde_json::from_value(serde_json::json!({
        "apiVersion": "herald.dev/v1alpha1",
        "kind": "NotificationPipeline",
        "metadata": {"name": name, "namespace": namespace, "uid": UID, "generation": 1},
        "spec": spec,
    }))
    .expect("a valid NotificationPipeline");
    p.metadata.generation = Some(1);
    p
}

/// `social` in `apps` with `spec`.
pub fn social(spec: serde_json::Value) -> NotificationPipeline {
    pipeline("social", "apps", spec)
}

/// Every NotificationPipeline in `deploy/examples/`, labelled by file name. A pipeline without a
/// namespace (applied with `kubectl apply -n`) gets `apps`; each gets [`UID`].
pub fn example_pipelines() -> Vec<(String, NotificationPipeline)> {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("deploy/examples"))
        .expect("deploy/examples")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut found = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("example file");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_json::Value::deserialize(doc).expect("example YAML");
            if value["kind"] == "NotificationPipeline" {
                let mut p: NotificationPipeline = serde_json::from_value(value).expect("example pipeline");
                p.metadata.namespace.get_or_insert_with(|| "apps".to_string());
                p.metadata.uid = Some(UID.to_string());
                p.metadata.generation = Some(1);
                let file = path.file_name().expect("file name").to_string_lossy().into_owned();
                found.push((file, p));
            }
        }
    }
    found
}

/// Every combination of Kafka TLS (none, the Strimzi cluster CA, an own CA), Kafka
/// authentication (none; SCRAM or a client certificate, each from a Strimzi KafkaUser or a named
/// Secret) and API authentication (see [`api_auth_options`]), that the CRD accepts. Labelled by
/// what they combine.
pub fn security_variants() -> Vec<(String, NotificationPipeline)> {
    let tls_options = [
        ("no TLS", None),
        ("TLS with the cluster CA", Some(serde_json::json!({}))),
        ("TLS with an own CA", Some(serde_json::json!({"caSecretRef": {"name": "corp-ca", "key": "root.pem"}}))),
    ];
    let auth_options = [
        ("no authentication", None),
        ("SCRAM from KafkaUsers", Some(serde_json::json!({"type": "scram-sha-512"}))),
        (
            "SCRAM from named Secrets",
            Some(
                serde_json::json!({"type": "scram-sha-512", "producerSecretName": "writer", "consumerSecretName": "reader"}),
            ),
        ),
        ("client certificates from KafkaUsers", Some(serde_json::json!({"type": "tls"}))),
        (
            "client certificates from named Secrets",
            Some(serde_json::json!({"type": "tls", "producerSecretName": "writer", "consumerSecretName": "reader"})),
        ),
    ];
    let mut variants = Vec::new();
    for (tls_label, tls) in &tls_options {
        for (auth_label, auth) in &auth_options {
            let client_certificate = auth.as_ref().is_some_and(|a| a["type"] == "tls");
            if client_certificate && tls.is_none() {
                continue; // refused by the CRD: a client certificate needs TLS
            }
            for (api_label, api) in api_auth_options() {
                let mut kafka = serde_json::json!({
                    "bootstrapServers": "events-kafka-bootstrap:9093",
                    "clusterRef": {"name": "events"},
                });
                if let Some(tls) = tls {
                    kafka["tls"] = tls.clone();
                }
                if let Some(auth) = auth {
                    kafka["authentication"] = auth.clone();
                }
                let mut spec = serde_json::json!({"kafka": kafka});
                let mut label = format!("{tls_label}, {auth_label}");
                if let Some(api) = api {
                    for (field, value) in api.as_object().into_iter().flatten() {
                        spec[field] = value.clone();
                    }
                    label.push_str(&format!(", {api_label}"));
                }
                variants.push((label, social(spec)));
            }
        }
    }
    variants
}

/// The API-authentication options of [`security_variants`]: none, the deprecated producer token
/// (with a users directory), a service token with HMAC JWTs, and JWTs with a public key.
fn api_auth_options() -> [(&'static str, Option<serde_json::Value>); 4] {
    [
        ("an open API", None),
        (
            "the deprecated producer token and users",
            Some(serde_json::json!({"producer": {
                "authTokenSecretRef": {"name": "send-token", "key": "token"},
                "usersConfigMapRef": {"name": "users", "key": "users.json"},
            }})),
        ),
        (
            "a service token and HMAC JWTs",
            Some(serde_json::json!({"auth": {
                "tokenSecretRef": {"name": "api-token", "key": "token"},
                "jwt": {"secretRef": {"name": "jwt", "key": "secret"}, "issuer": "https://id.example"},
            }})),
        ),
        (
            "JWTs with a public key",
            Some(serde_json::json!({"auth": {"jwt": {"publicKeySecretRef": {"name": "idp", "key": "key.pem"}}}})),
        ),
    ]
}

/// Kafka as the tests want it: topics exist (or are created) with a partition count; `Admin`
/// creations are remembered.
#[derive(Clone, Default)]
pub struct FakeTopics {
    /// Every topic exists with this many partitions; `None`: only `named` ones (and created ones).
    pub partitions: Arc<Mutex<Option<i32>>>,
    /// Topics that exist, with their partitions.
    pub named: Arc<Mutex<std::collections::BTreeMap<String, i32>>>,
    /// Topics created through `ensure`.
    pub created: Arc<Mutex<Vec<String>>>,
}

impl FakeTopics {
    /// Every topic exists with `partitions` partitions.
    pub fn existing(partitions: i32) -> Self {
        Self { partitions: Arc::new(Mutex::new(Some(partitions))), ..Self::default() }
    }

    /// No topic exists (until `ensure` creates it).
    pub fn none() -> Self {
        Self::default()
    }

    /// Only `names` exist, with six partitions each.
    pub fn named(names: &[&str]) -> Self {
        let f = Self::default();
        f.named.lock().unwrap().extend(names.iter().map(|n| (n.to_string(), 6)));
        f
    }

    fn lookup(&self, topic: &str) -> Option<i32> {
        (*self.partitions.lock().unwrap())
            .or_else(|| self.named.lock().unwrap().get(topic).copied())
            .or_else(|| self.created.lock().unwrap().iter().any(|c| c == topic).then_some(6))
    }
}

impl Topics for FakeTopics {
    async fn ensure(&self, _: &KafkaSpec, wanted: &WantedTopic) -> Result<Ensured, TopicError> {
        Ok(match self.lookup(&wanted.name) {
            Some(partitions) => Ensured::Exists { partitions },
            None => {
                self.created.lock().unwrap().push(wanted.name.clone());
                Ensured::Created { partitions: wanted.partitions }
            }
        })
    }

    async fn partitions(&self, _: &KafkaSpec, topic: &str) -> Result<Option<i32>, TopicError> {
        Ok(self.lookup(topic))
    }
}

/// A lag source whose lag is set by the test (spread over six partitions, all on partition 0),
/// or changes on every probe; counts probes; can be made to fail.
#[derive(Clone, Default)]
pub struct FakeLag {
    /// The total lag the next probe reports.
    pub lag: Arc<AtomicI64>,
    /// Added to the lag after each probe (a lag that changes on every probe).
    pub step: Arc<AtomicI64>,
    /// Probes answered (one per pipeline per round).
    pub probes: Arc<AtomicU64>,
    pub failing: Arc<AtomicBool>,
}

impl FakeLag {
    /// A lag of `lag`, fixed.
    pub fn fixed(lag: i64) -> Self {
        let f = Self::default();
        f.lag.store(lag, Ordering::SeqCst);
        f
    }

    /// A lag that grows by `step` on every probe.
    pub fn changing(step: i64) -> Self {
        let f = Self::default();
        f.step.store(step, Ordering::SeqCst);
        f
    }
}

impl LagSource for FakeLag {
    fn probe<'a>(
        &'a self,
        _: &'a KafkaSpec,
        targets: &'a [LagTarget],
    ) -> BoxFuture<'a, Vec<Result<Option<LagReport>, TopicError>>> {
        Box::pin(async move {
            targets
                .iter()
                .map(|_| {
                    self.probes.fetch_add(1, Ordering::SeqCst);
                    if self.failing.load(Ordering::SeqCst) {
                        return Err(TopicError::Credentials("the fake cluster is down".into()));
                    }
                    let lag = self.lag.fetch_add(self.step.load(Ordering::SeqCst), Ordering::SeqCst);
                    let per_partition = (0..6).map(|p| (p, if p == 0 { lag } else { 0 })).collect();
                    Ok(Some(LagReport { partitions: 6, per_partition }))
                })
                .collect()
        })
    }

    fn retain(&self, _: &[String]) {}
}

/// The operator's settings in tests: test images, a 15 s sync period, a 10 min cleanup timeout,
/// the default tenancy policy.
pub fn settings() -> Settings {
    Settings {
        defaults: Defaults {
            images: Images { producer: "herald/producer:1".into(), consumer: "herald/consumer:1".into() },
            metrics_namespaces: LabelSelector::default(),
        },
        sync_period: Duration::from_secs(15),
        cleanup_timeout: Duration::from_secs(600),
        policy: TenancyPolicy::default(),
    }
}

/// A reconcile context on `server` with `topics` and a prober over `lag` (not running: probe
/// with [`Prober::probe_now`]); its metrics registered in the returned registry.
pub fn context<T: Topics>(
    server: &FakeApiServer,
    topics: T,
    lag: impl LagSource,
    settings: Settings,
) -> (Arc<Context<T>>, Arc<Prober>, prometheus::Registry) {
    let client = server.client();
    let registry = prometheus::Registry::new();
    let metrics = OperatorMetrics::register(&registry).expect("metrics");
    let (prober, _first) = Prober::new(lag, settings.sync_period, None);
    let reporter = kube::runtime::events::Reporter { controller: "herald-operator".into(), instance: None };
    let recorder = kube::runtime::events::Recorder::new(client.clone(), reporter);
    let ctx = Context::new(client, recorder, settings, topics, prober.clone(), metrics);
    (Arc::new(ctx), prober, registry)
}

/// `herald-operator run` flags for tests: metrics on an ephemeral loopback port, `sync_period`,
/// no leader election.
pub fn run_args(sync_period: Duration) -> RunArgs {
    RunArgs {
        watch_namespace: None,
        metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        producer_image: "herald/producer:1".into(),
        consumer_image: "herald/consumer:1".into(),
        leader_elect: false,
        lease_namespace: "herald-system".into(),
        identity: "herald-operator-test".into(),
        sync_period,
        kafka_timeout: Duration::from_secs(5),
        cleanup_timeout: Duration::from_secs(600),
        allowed_cluster_namespaces: AllowedNamespaces::Any,
        topic_name_policy: TopicNamePolicy::Any,
        concurrency: 16,
        metrics_namespace_selector: LabelSelector::default(),
    }
}
