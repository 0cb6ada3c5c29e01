//! Reconcile scenarios, one reconcile at a time, on the stand-in API server (stateful: what one
//! reconcile writes, the next one reads). Each asserts what is stored afterwards and, where the
//! order matters, the order of the requests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use herald_api::NotificationPipeline;
use herald_fake_apiserver::{Fault, Simulation};
use herald_operator::controller::{Context, error_policy, reconcile};
use herald_operator::fixtures::{FakeApiServer, FakeLag, FakeTopics, context, settings, social};
use herald_operator::kafka::prober::Prober;
use kube::runtime::controller::Action;

struct Setup {
    server: FakeApiServer,
    ctx: Arc<Context<FakeTopics>>,
    prober: Arc<Prober>,
    registry: prometheus::Registry,
}

fn setup(topics: FakeTopics, lag: FakeLag) -> Setup {
    let server = FakeApiServer::new();
    let (ctx, prober, registry) = context(&server, topics, lag, settings());
    Setup { server, ctx, prober, registry }
}

impl Setup {
    /// Creates `p` as a user would (the server gives it a uid and generation).
    fn create(&self, p: &NotificationPipeline) {
        self.server.put("notificationpipelines", serde_json::to_value(p).unwrap());
    }

    fn pipeline(&self) -> Option<NotificationPipeline> {
        self.server.get("notificationpipelines", "apps", "social").map(|v| serde_json::from_value(v).unwrap())
    }

    /// One reconcile of the stored pipeline.
    async fn reconcile(&self) -> Result<Action, herald_operator::Error> {
        reconcile(Arc::new(self.pipeline().expect("the pipeline exists")), self.ctx.clone()).await
    }

    fn status(&self) -> serde_json::Value {
        self.server.get("notificationpipelines", "apps", "social").unwrap()["status"].clone()
    }

    fn condition(&self, type_: &str) -> serde_json::Value {
        self.status()["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .cloned()
            .unwrap_or_else(|| panic!("no {type_} in {}", self.status()))
    }

    fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<serde_json::Value> {
        self.server.get(plural, namespace, name)
    }

    fn events(&self) -> Vec<serde_json::Value> {
        self.server.list("events", None)
    }

    fn metrics(&self) -> String {
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap()
    }
}

fn external() -> NotificationPipeline {
    social(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "External"}}))
}

#[tokio::test]
async fn create_path_applies_every_child_with_the_field_manager_and_scales_on_the_probed_lag() {
    let s = setup(FakeTopics::existing(6), FakeLag::fixed(6000));
    s.server.log_requests();
    s.create(&external());
    // First reconcile: no lag reading yet, so the minimum; the pipeline is registered for probing.
    assert_eq!(s.reconcile().await.unwrap(), Action::requeue(Duration::from_secs(15)));
    for (plural, name) in [
        ("deployments", "social-producer"),
        ("deployments", "social-consumer"),
        ("services", "social-producer"),
        ("services", "social-consumer"),
        ("services", "social-consumer-headless"),
        ("poddisruptionbudgets", "social-consumer"),
    ] {
        let child = s.get(plural, "apps", name).unwrap_or_else(|| panic!("{plural}/{name} missing"));
        assert_eq!(child["metadata"]["ownerReferences"][0]["kind"], "NotificationPipeline", "{plural}/{name}");
        assert_eq!(child["metadata"]["labels"]["app.kubernetes.io/managed-by"], "herald-operator");
    }
    for applied in s.server.logged().iter().filter(|r| r.method == "PATCH" && !r.path.ends_with("/status")) {
        assert!(
            applied.query.contains("fieldManager=herald-operator") && applied.query.contains("force=true"),
            "{applied:?}"
        );
    }
    assert_eq!(s.get("deployments", "apps", "social-consumer").unwrap()["spec"]["replicas"], 1);
    assert_eq!(s.condition("ScalingActive")["reason"], "LagUnknown");
    // The prober reads the lag; the next reconcile scales on it, and the one after (the
    // Deployment's status changed) finds the consumers ready.
    s.prober.probe_now().await;
    s.reconcile().await.unwrap();
    assert_eq!(s.get("deployments", "apps", "social-consumer").unwrap()["spec"]["replicas"], 6);
    assert_eq!(s.condition("ConsumersAvailable")["reason"], "Progressing");
    s.reconcile().await.unwrap();
    let status = s.status();
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(s.condition("Ready")["status"], "True");
    assert_eq!(s.condition("ScalingActive")["reason"], "LagBased");
    assert_eq!(status["topic"], serde_json::json!({"name": "social", "partitions": 6, "partitionHistory": [6]}));
    assert_eq!(status["consumer"]["desiredReplicas"], 6);
    assert_eq!(status["consumer"]["lag"], 6000);
    let scaled: Vec<_> = s.events().into_iter().filter(|e| e["reason"] == "Scaled").collect();
    assert!(scaled.iter().any(|e| e["note"].as_str().unwrap().contains("consumers 1 -> 6: lag 6000")), "{scaled:?}");
    // Nothing changed since: no status write.
    let writes = s.server.count("patch", "notificationpipelines/status");
    s.reconcile().await.unwrap();
    assert_eq!(
        s.server.count("patch", "notificationpipelines/status"),
        writes,
        "a status that did not change was written"
    );
    let text = s.metrics();
    assert!(text.contains(r#"herald_operator_reconciliations_total{outcome="ok"} 4"#), "{text}");
    assert!(text.contains(r#"herald_operator_topic_partitions{namespace="apps",pipeline="social"} 6"#), "{text}");
    assert!(text.contains("herald_operator_status_writes_total 3"), "{text}");
}

/// `name -> value` of a child Deployment's container env.
fn env_of(s: &Setup, deployment: &str) -> std::collections::BTreeMap<String, String> {
    let d = s.get("deployments", "apps", deployment).unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.to_string(), e["value"].as_str()?.to_string())))
        .collect()
}

#[tokio::test]
async fn a_topic_that_grew_is_remembered_and_its_history_reaches_the_producer_and_consumers() {
    let topics = FakeTopics::existing(3);
    let s = setup(topics.clone(), FakeLag::fixed(0));
    s.create(&external());
    s.reconcile().await.unwrap();
    assert_eq!(s.status()["topic"]["partitionHistory"], serde_json::json!([3]));
    // A topic that never grew: no history for the pods (nothing to restart on an upgrade).
    for d in ["social-producer", "social-consumer"] {
        assert!(!env_of(&s, d).contains_key("HERALD_PARTITION_HISTORY"), "{d}");
    }
    // Someone adds partitions (kafka-topics.sh, a KafkaTopic edit): the next reconcile records
    // it and both sides learn every count.
    *topics.partitions.lock().unwrap() = Some(6);
    s.reconcile().await.unwrap();
    assert_eq!(s.status()["topic"]["partitions"], 6);
    assert_eq!(s.status()["topic"]["partitionHistory"], serde_json::json!([3, 6]));
    assert_eq!(env_of(&s, "social-consumer")["HERALD_PARTITION_HISTORY"], "3,6");
    // Both pod templates change: the producer's follows once the consumers rolled out (the
    // stand-in's Deployments become ready at once; the next reconcile sees it).
    assert!(!env_of(&s, "social-producer").contains_key("HERALD_PARTITION_HISTORY"));
    s.reconcile().await.unwrap();
    for d in ["social-producer", "social-consumer"] {
        assert_eq!(env_of(&s, d)["HERALD_PARTITION_HISTORY"], "3,6", "{d}");
    }
    // Steady: nothing more is written.
    let writes = s.server.count("patch", "notificationpipelines/status");
    s.reconcile().await.unwrap();
    s.reconcile().await.unwrap();
    assert_eq!(s.status()["topic"]["partitionHistory"], serde_json::json!([3, 6]));
    assert!(s.server.count("patch", "notificationpipelines/status") <= writes + 1);
    // Grown again.
    *topics.partitions.lock().unwrap() = Some(12);
    s.reconcile().await.unwrap();
    assert_eq!(s.status()["topic"]["partitionHistory"], serde_json::json!([3, 6, 12]));
    assert_eq!(env_of(&s, "social-consumer")["HERALD_PARTITION_HISTORY"], "3,6,12");
}

#[tokio::test]
async fn admin_topics_are_created_once_and_replicas_above_the_partitions_are_capped() {
    let topics = FakeTopics::none();
    let s = setup(topics.clone(), FakeLag::fixed(0));
    s.create(&social(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "Admin"},
        "consumer": {"replicas": 10}})));
    s.reconcile().await.unwrap();
    assert_eq!(*topics.created.lock().unwrap(), ["social"]);
    assert_eq!(s.get("deployments", "apps", "social-consumer").unwrap()["spec"]["replicas"], 6);
    let capped = s.condition("ReplicasCapped");
    assert_eq!(capped["status"], "True");
    assert!(capped["message"].as_str().unwrap().contains("10 consumers requested, running 6"), "{capped}");
    assert_eq!(s.status()["topic"]["created"], true);
    // The topic now exists: this pipeline created it, so it keeps using it.
    s.reconcile().await.unwrap();
    assert_eq!(s.condition("TopicReady")["status"], "True");
    assert_eq!(topics.created.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_admin_topic_that_already_existed_is_used_only_when_adopted() {
    let s = setup(FakeTopics::existing(6), FakeLag::fixed(0));
    s.create(&social(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "Admin"}})));
    assert_eq!(s.reconcile().await.unwrap(), Action::await_change());
    let ready = s.condition("Ready");
    assert_eq!(ready["reason"], "NameConflict");
    assert!(ready["message"].as_str().unwrap().contains("adoptExisting"), "{ready}");
    assert!(s.get("deployments", "apps", "social-producer").is_none(), "nothing applied");
    s.create(&social(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"},
        "topic": {"management": "Admin", "adoptExisting": true}})));
    s.reconcile().await.unwrap();
    s.reconcile().await.unwrap();
    assert_eq!(s.condition("TopicReady")["reason"], "TopicExists");
    assert_eq!(s.condition("Ready")["status"], "True");
}

#[tokio::test]
async fn strimzi_missing_sets_topic_ready_false_and_holds_the_consumers() {
    let s = setup(FakeTopics::existing(6), FakeLag::fixed(0));
    s.create(&social(serde_json::json!({"kafka": {"bootstrapServers": "k:9092",
        "clusterRef": {"name": "my-cluster", "namespace": "kafka"}}})));
    assert_eq!(s.reconcile().await.unwrap(), Action::requeue(Duration::from_secs(60)));
    let topic = s.condition("TopicReady");
    assert_eq!((topic["status"].as_str(), topic["reason"].as_str()), (Some("False"), Some("StrimziNotInstalled")));
    assert_eq!(s.condition("Ready")["status"], "False");
    assert_eq!(s.condition("ConsumersAvailable")["reason"], "WaitingForTopic");
    assert!(s.get("deployments", "apps", "social-consumer").is_none(), "no consumers before the topic is ready");
    assert!(s.get("deployments", "apps", "social-producer").is_some());
}

#[tokio::test]
async fn a_strimzi_kafka_topic_is_applied_in_the_cluster_namespace_and_only_when_it_differs() {
    let s = setup(FakeTopics::existing(12), FakeLag::fixed(0));
    s.server.serve_strimzi();
    s.create(&social(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092", "clusterRef": {"name": "my-cluster", "namespace": "kafka"}},
        "topic": {"partitions": 12, "config": {"retention.ms": "604800000"}},
    })));
    s.reconcile().await.unwrap();
    let topic = s.get("kafkatopics", "kafka", "apps.social").expect("KafkaTopic in the cluster's namespace");
    assert_eq!(topic["metadata"]["labels"]["strimzi.io/cluster"], "my-cluster");
    assert_eq!(topic["metadata"]["labels"]["herald.dev/pipeline-namespace"], "apps");
    assert_eq!(
        topic["spec"],
        serde_json::json!({"topicName": "social", "partitions": 12, "replicas": 3, "config": {"retention.ms": "604800000"}})
    );
    assert!(topic["metadata"]["ownerReferences"].is_null(), "cross-namespace: no owner reference");
    // Strimzi (simulated) reports it Ready; the next reconcile reads that without applying again.
    s.reconcile().await.unwrap();
    assert_eq!(s.condition("TopicReady")["reason"], "TopicReady");
    assert_eq!(s.server.count("patch", "kafkatopics"), 1, "an unchanged KafkaTopic is not applied again");
    assert_eq!(s.get("deployments", "apps", "social-consumer").unwrap()["spec"]["replicas"], 1);
    assert!(s.pipeline().unwrap().metadata.finalizers.is_none(), "Retain: no finalizer");
}

fn secured() -> NotificationPipeline {
    social(serde_json::json!({
        "kafka": {"bootstrapServers": "events-kafka-bootstrap.apps:9093", "clusterRef": {"name": "events"},
            "tls": {}, "authentication": {"type": "scram-sha-512"}},
        "topic": {"management": "External"},
    }))
}

fn ca_secret(server: &FakeApiServer) {
    server.put(
        "secrets",
        serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "events-cluster-ca-cert", "namespace": "apps"}, "data": {"ca.crt": "LS0tLS1CRUdJTg=="}}),
    );
}

#[tokio::test]
async fn kafka_users_are_applied_before_the_pods_that_mount_their_secrets() {
    let s = setup(FakeTopics::existing(6), FakeLag::fixed(0));
    s.server.serve_strimzi();
    ca_secret(&s.server);
    s.server.log_requests();
    s.create(&secured());
    s.reconcile().await.unwrap();
    let writes: Vec<String> = s
        .server
        .logged()
        .into_iter()
        .filter(|r| r.method == "PATCH" && (r.path.contains("/kafkausers/") || r.path.contains("/deployments/")))
        .map(|r| {
            r.path.rsplit('/').next().unwrap().to_string()
                + if r.path.contains("kafkausers") { " user" } else { " pods" }
        })
        .collect();
    assert_eq!(writes[..2], ["social-producer user", "social-consumer user"], "{writes:?}");
    assert!(writes[2..].iter().all(|w| w.ends_with("pods")), "{writes:?}");
    // The consumers' Secret did not exist when this reconcile read the credentials; the next one
    // finds it (Strimzi, simulated, wrote it) and starts the consumers.
    s.reconcile().await.unwrap();
    let user = s.get("kafkausers", "apps", "social-consumer").unwrap();
    assert_eq!(user["spec"]["authentication"]["type"], "scram-sha-512");
    assert_eq!(user["metadata"]["ownerReferences"][0]["uid"], s.pipeline().unwrap().metadata.uid.unwrap().as_str());
    let consumer = s.get("deployments", "apps", "social-consumer").unwrap();
    assert!(
        consumer["spec"]["template"]["spec"]["containers"][0]["env"]
            .to_string()
            .contains("sasl.username=social-consumer")
    );
}

#[tokio::test]
async fn until_strimzi_wrote_the_credentials_the_topic_waits_with_the_reason() {
    let s = setup(FakeTopics::existing(6), FakeLag::fixed(0));
    s.server.serve_strimzi();
    s.server.simulate(Simulation { deployments_become_ready: true, strimzi_reconciles: false });
    s.create(&social(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092", "clusterRef": {"name": "events"}, "authentication": {"type": "scram-sha-512"}},
        "topic": {"management": "External"},
    })));
    // Looked at again soon: Strimzi writes the Secret a moment after the KafkaUser.
    assert_eq!(s.reconcile().await.unwrap(), Action::requeue(Duration::from_secs(15)));
    let topic_ready = s.condition("TopicReady");
    assert_eq!(topic_ready["status"], "False");
    assert!(
        topic_ready["message"].as_str().unwrap().contains("Secret social-consumer does not exist"),
        "{topic_ready}"
    );
    assert!(s.get("deployments", "apps", "social-consumer").is_none());
}

#[tokio::test]
async fn kafka_users_without_strimzi_say_so_and_look_again_later() {
    let s = setup(FakeTopics::existing(6), FakeLag::fixed(0));
    s.create(&social(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092", "clusterRef": {"name": "events"}, "authentication": {"type": "scram-sha-512"}},
        "topic": {"management": "External"},
    })));
    assert_eq!(s.reconcile().await.unwrap(), Action::requeue(Duration::from_secs(60)));
    let ready = s.condition("Ready");
    assert_eq!(ready["reason"], "StrimziNotInstalled");
    assert!(ready["message"].as_str().unwrap().contains("KafkaUser API"), "{ready}");
    assert!(s.events().iter().any(|e| e["reason"] == "StrimziNotInstalled" && e["type"] == "Warning"));
}

#[tokio::test]
async fn deletion_with_delete_removes_the_kafka_topic_then_the_finalizer() {
    let s = setup(FakeTopics::existing(6), FakeLag::fixed(0));
    s.server.serve_strimzi();
    s.create(&social(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092", "clusterRef": {"name": "my-cluster", "namespace": "kafka"}},
        "topic": {"deletionPolicy": "Delete"},
    })));
    s.reconcile().await.unwrap();
    assert_eq!(
        s.pipeline().unwrap().metadata.finalizers,
        Some(vec![herald_operator::controller::FINALIZER.to_string()])
    );
    assert!(s.get("kafkatopics", "kafka", "apps.social").is_some());
    s.server.delete("notificationpipelines", "apps", "social");
    assert!(s.pipeline().unwrap().metadata.deletion_timestamp.is_some(), "held by the finalizer");
    s.reconcile().await.unwrap();
    assert!(s.get("kafkatopics", "kafka", "apps.social").is_none(), "KafkaTopic deleted");
    assert!(s.pipeline().is_none(), "finalizer released, pipeline gone");
    assert!(s.get("deployments", "apps", "social-producer").is_none(), "children collected");
}

#[tokio::test]
async fn deletion_leaves_a_kafka_topic_labelled_for_another_namespaces_pipeline() {
    let s = setup(FakeTopics::existing(6), FakeLag::fixed(0));
    s.server.serve_strimzi();
    s.create(&social(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092", "clusterRef": {"name": "my-cluster", "namespace": "kafka"}},
        "topic": {"deletionPolicy": "Delete"},
    })));
    s.reconcile().await.unwrap();
    // The KafkaTopic of that name now says it belongs to team-b's pipeline "social": the topic step
    // would refuse it as someone else's, and so must the cleanup.
    let mut topic = s.get("kafkatopics", "kafka", "apps.social").unwrap();
    topic["metadata"]["labels"]["herald.dev/pipeline-namespace"] = "team-b".into();
    s.server.put("kafkatopics", topic);
    s.server.delete("notificationpipelines", "apps", "social");
    s.reconcile().await.unwrap();
    assert!(s.pipeline().is_none(), "finalizer released");
    assert!(s.get("kafkatopics", "kafka", "apps.social").is_some(), "another namespace's KafkaTopic was deleted");
}

#[tokio::test]
async fn without_delete_no_finalizer_is_added_and_an_old_one_is_removed() {
    let s = setup(FakeTopics::existing(6), FakeLag::fixed(0));
    s.server.serve_strimzi();
    let mut p = social(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092", "clusterRef": {"name": "my-cluster", "namespace": "kafka"}},
    }));
    // A pipeline from an older operator, which added the finalizer to every pipeline.
    p.metadata.finalizers = Some(vec![herald_operator::controller::FINALIZER.to_string()]);
    s.create(&p);
    s.reconcile().await.unwrap();
    assert_eq!(s.pipeline().unwrap().metadata.finalizers, Some(vec![]), "removed");
    s.server.delete("notificationpipelines", "apps", "social");
    assert!(s.pipeline().is_none(), "deleted at once");
    assert!(s.get("kafkatopics", "kafka", "apps.social").is_some(), "Retain keeps the topic");
}

#[tokio::test]
async fn an_unusable_spec_sets_ready_false_warns_once_and_waits_for_a_change() {
    let s = setup(FakeTopics::existing(6), FakeLag::fixed(0));
    s.create(&social(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092", "properties": {"ssl.cipher.suites": "A,B"}},
        "topic": {"management": "External"},
    })));
    assert_eq!(s.reconcile().await.unwrap(), Action::await_change());
    let ready = s.condition("Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("InvalidSpec")));
    assert!(ready["message"].as_str().unwrap().contains("ssl.cipher.suites"), "{ready}");
    assert_eq!(s.reconcile().await.unwrap(), Action::await_change());
    let warnings: Vec<_> = s.events().into_iter().filter(|e| e["reason"] == "InvalidSpec").collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["type"], "Warning");
    assert_eq!(warnings[0]["regarding"]["name"], "social");
    assert!(s.get("deployments", "apps", "social-producer").is_none(), "nothing applied");
}

#[tokio::test]
async fn refused_objects_wait_for_a_change_while_outages_retry_with_backoff() {
    for (code, transient) in [(422u16, false), (503u16, true)] {
        let s = setup(FakeTopics::existing(6), FakeLag::fixed(0));
        s.create(&external());
        s.server.inject(Fault { verb: "patch".into(), resource: "deployments".into(), name: None, code });
        let p = Arc::new(s.pipeline().unwrap());
        let mut actions = Vec::new();
        for _ in 0..3 {
            let error = reconcile(p.clone(), s.ctx.clone()).await.unwrap_err();
            assert_eq!(error.is_transient(), transient, "{code}: {error}");
            actions.push(error_policy(p.clone(), &error, s.ctx.clone()));
        }
        let expected: Vec<Action> = if transient {
            [1, 2, 4].map(|secs| Action::requeue(Duration::from_secs(secs))).to_vec()
        } else {
            vec![Action::await_change(); 3]
        };
        assert_eq!(actions, expected, "{code}");
        let text = s.metrics();
        assert!(text.contains(r#"herald_operator_reconcile_errors_total{error="apply"} 3"#), "{text}");
        // A success resets the backoff.
        s.server.clear_faults();
        reconcile(p.clone(), s.ctx.clone()).await.unwrap();
        assert_eq!(s.ctx.backoff.failures("apps/social"), 0);
    }
}

/// The `herald_operator_…` names the alert rules and the dashboard in `deploy/monitoring/` use.
fn operator_names_in_monitoring() -> std::collections::BTreeSet<String> {
    let root = herald_operator::fixtures::repo_root();
    let mut names = std::collections::BTreeSet::new();
    for file in ["deploy/monitoring/herald.rules.yaml", "deploy/monitoring/herald-dashboard.json"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("herald_operator_") {
            let name: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .fold(name.clone(), |n, s| n.strip_suffix(s).map_or(n.clone(), str::to_string));
            names.insert(base);
            rest = &rest[i + name.len()..];
        }
    }
    names
}

#[tokio::test]
async fn every_operator_metric_the_dashboard_and_rules_use_is_exported() {
    let wanted = operator_names_in_monitoring();
    assert!(!wanted.is_empty());
    let s = setup(FakeTopics::existing(6), FakeLag::fixed(6000));
    s.create(&external());
    s.reconcile().await.unwrap();
    s.prober.probe_now().await;
    s.reconcile().await.unwrap();
    s.server.inject(Fault { verb: "patch".into(), resource: "deployments".into(), name: None, code: 503 });
    let p = Arc::new(s.pipeline().unwrap());
    let error = reconcile(p.clone(), s.ctx.clone()).await.unwrap_err();
    error_policy(p, &error, s.ctx.clone());
    let exported: std::collections::BTreeSet<String> =
        s.registry.gather().iter().map(|f| f.name().to_string()).collect();
    let missing: Vec<_> = wanted.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(missing.is_empty(), "used in deploy/monitoring/ but not exported: {missing:?}\nexported: {exported:?}");
}

fn peer_token(s: &Setup) -> serde_json::Value {
    s.get("secrets", "apps", "social-peer-token").expect("the peer-token Secret")
}

fn consumer_template_annotation(s: &Setup) -> serde_json::Value {
    s.get("deployments", "apps", "social-consumer").unwrap()["spec"]["template"]["metadata"]["annotations"]
        ["herald.dev/peer-token-secret-uid"]
        .clone()
}

#[tokio::test]
async fn the_peer_token_is_created_once_owned_immutable_and_the_consumers_follow_it() {
    use base64::Engine as _;
    let s = setup(FakeTopics::existing(6), FakeLag::fixed(0));
    s.create(&external());
    s.reconcile().await.unwrap();
    let secret = peer_token(&s);
    let pipeline_uid = s.pipeline().unwrap().metadata.uid.unwrap();
    assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], pipeline_uid.as_str());
    assert_eq!(secret["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(secret["immutable"], true);
    let token = base64::engine::general_purpose::STANDARD.decode(secret["data"]["token"].as_str().unwrap()).unwrap();
    assert_eq!(token.len(), 64);
    assert!(token.iter().all(u8::is_ascii_hexdigit));
    let uid = secret["metadata"]["uid"].clone();
    assert_eq!(consumer_template_annotation(&s), uid);
    // Later reconciles read its metadata and create nothing.
    s.reconcile().await.unwrap();
    s.reconcile().await.unwrap();
    assert_eq!(s.server.count("create", "secrets"), 1);
    assert_eq!(peer_token(&s), secret, "the token never changes");
    // Never in the status or an Event.
    let token = String::from_utf8(token).unwrap();
    assert!(!s.status().to_string().contains(&token));
    assert!(!serde_json::to_string(&s.events()).unwrap().contains(&token));
    // Deleted by someone: a new Secret (a new token), and the consumers roll onto it together.
    s.server.delete("secrets", "apps", "social-peer-token");
    s.reconcile().await.unwrap();
    let renewed = peer_token(&s);
    assert_ne!(renewed["metadata"]["uid"], uid);
    assert_ne!(renewed["data"]["token"], secret["data"]["token"]);
    assert_eq!(consumer_template_annotation(&s), renewed["metadata"]["uid"]);
}

#[tokio::test]
async fn a_peer_token_secret_that_is_not_ours_is_left_alone_and_nothing_is_applied() {
    let s = setup(FakeTopics::existing(6), FakeLag::fixed(0));
    let foreign = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "social-peer-token", "namespace": "apps"}, "data": {"token": "a25vd24="}});
    s.server.put("secrets", foreign);
    let stored = peer_token(&s);
    s.create(&external());
    assert_eq!(s.reconcile().await.unwrap(), Action::await_change());
    let ready = s.condition("Ready");
    assert_eq!(ready["reason"], "NameConflict");
    assert!(ready["message"].as_str().unwrap().contains("Secret apps/social-peer-token"), "{ready}");
    assert_eq!(peer_token(&s), stored, "untouched");
    assert!(s.get("deployments", "apps", "social-producer").is_none(), "nothing applied");
    assert!(s.get("networkpolicies", "apps", "social-producer").is_none(), "nothing applied");

    // A predecessor's (a pipeline of the same name, deleted): wait until it is collected.
    s.server.delete("secrets", "apps", "social-peer-token");
    s.server.put(
        "secrets",
        serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "social-peer-token", "namespace": "apps", "ownerReferences": [{
                "apiVersion": "herald.dev/v1alpha1", "kind": "NotificationPipeline", "name": "social",
                "uid": "uid-of-the-old-one", "controller": true}]}, "data": {"token": "b2xk"}}),
    );
    let mut p = s.pipeline().unwrap();
    p.metadata.annotations = Some([(herald_operator::controller::RECONCILE_REQUEST.to_string(), "1".into())].into());
    assert_eq!(reconcile(Arc::new(p), s.ctx.clone()).await.unwrap(), Action::requeue(Duration::from_secs(5)));
    assert_eq!(s.condition("Ready")["reason"], "PeerTokenPending");
    s.server.delete("secrets", "apps", "social-peer-token");
    s.reconcile().await.unwrap();
    let pipeline_uid = s.pipeline().unwrap().metadata.uid.unwrap();
    assert_eq!(peer_token(&s)["metadata"]["ownerReferences"][0]["uid"], pipeline_uid.as_str());
    assert!(s.get("deployments", "apps", "social-producer").is_some());
}

#[tokio::test]
async fn an_open_pipeline_says_so_once_and_a_protected_one_says_how() {
    let s = setup(FakeTopics::existing(6), FakeLag::fixed(0));
    s.create(&external());
    s.reconcile().await.unwrap();
    s.reconcile().await.unwrap();
    let auth = s.condition("AuthConfigured");
    assert_eq!((auth["status"].as_str(), auth["reason"].as_str()), (Some("False"), Some("Open")));
    assert!(auth["message"].as_str().unwrap().contains("anyone who reaches"), "{auth}");
    // How often it was warned: repeats of one Event are counted in its series.
    let warnings = || {
        let events: Vec<_> = s.events().into_iter().filter(|e| e["reason"] == "AuthOpen").collect();
        assert!(events.iter().all(|e| e["type"] == "Warning"), "{events:?}");
        events.iter().map(|e| e["series"]["count"].as_u64().unwrap_or(1)).sum::<u64>()
    };
    assert_eq!(warnings(), 1, "one Warning, not one per reconcile");
    // Open is not broken: the pipeline is Ready all the same.
    assert_eq!(s.condition("Ready")["status"], "True");

    s.create(&social(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "External"},
        "auth": {"tokenSecretRef": {"name": "backend", "key": "token"},
                 "jwt": {"publicKeySecretRef": {"name": "idp", "key": "es256.pem"}, "audience": "herald"}},
    })));
    s.reconcile().await.unwrap();
    let auth = s.condition("AuthConfigured");
    assert_eq!((auth["status"].as_str(), auth["reason"].as_str()), (Some("True"), Some("ServiceTokenAndJwt")));
    let message = auth["message"].as_str().unwrap();
    assert!(message.contains("Secret backend key token") && message.contains("Secret idp key es256.pem"), "{message}");
    assert!(message.contains("audience herald"), "{message}");
    let env =
        &s.get("deployments", "apps", "social-consumer").unwrap()["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(env.to_string().contains("HERALD_JWT_PUBLIC_KEY_FILE"), "{env}");

    // Opened again: warned again.
    s.create(&external());
    s.reconcile().await.unwrap();
    assert_eq!(s.condition("AuthConfigured")["reason"], "Open");
    assert_eq!(warnings(), 2);

    // The deprecated alias still protects the pipeline (both roles), and says it is deprecated.
    s.create(&social(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "External"},
        "producer": {"authTokenSecretRef": {"name": "send-token", "key": "token"}},
    })));
    s.reconcile().await.unwrap();
    let auth = s.condition("AuthConfigured");
    assert_eq!(auth["reason"], "ServiceToken");
    assert!(auth["message"].as_str().unwrap().contains("deprecated"), "{auth}");
}

#[tokio::test]
async fn network_policies_are_kept_and_removed_when_turned_off_but_never_someone_elses() {
    let s = setup(FakeTopics::existing(6), FakeLag::fixed(0));
    s.create(&external());
    s.reconcile().await.unwrap();
    for name in ["social-producer", "social-consumer"] {
        let policy = s.get("networkpolicies", "apps", name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(
            policy["metadata"]["ownerReferences"][0]["uid"],
            s.pipeline().unwrap().metadata.uid.unwrap().as_str()
        );
        assert_eq!(policy["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
    }
    let off = social(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "External"},
        "networkPolicy": {"enabled": false}}));
    s.create(&off);
    s.reconcile().await.unwrap();
    assert!(s.get("networkpolicies", "apps", "social-producer").is_none());
    assert!(s.get("networkpolicies", "apps", "social-consumer").is_none());
    // Someone else's policy of that name stays, whether the pipeline wants policies or not.
    let theirs = serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "social-consumer", "namespace": "apps"}, "spec": {"podSelector": {}}});
    s.server.put("networkpolicies", theirs);
    let stored = s.get("networkpolicies", "apps", "social-consumer").unwrap();
    s.reconcile().await.unwrap();
    assert_eq!(s.get("networkpolicies", "apps", "social-consumer").unwrap(), stored);
    s.create(&external());
    assert_eq!(s.reconcile().await.unwrap(), Action::await_change());
    assert!(s.condition("Ready")["message"].as_str().unwrap().contains("NetworkPolicy apps/social-consumer"));
    assert_eq!(s.get("networkpolicies", "apps", "social-consumer").unwrap(), stored);
}

/// With the controller's child index (as `run` has it), a steady-state reconcile asks the API
/// server nothing about a child it would remove and the watch has not seen; the first reconcile
/// of a new spec asks all the same, so an object the watch has not reported yet is not left
/// behind.
#[tokio::test]
async fn with_the_child_index_a_new_spec_still_asks_the_api_server_about_children_it_removes() {
    let mut s = setup(FakeTopics::existing(6), FakeLag::fixed(0));
    // An index whose watches have reported nothing (yet): every lookup misses.
    Arc::get_mut(&mut s.ctx).expect("only this test holds the context").children =
        Some(Arc::new(herald_operator::controller::ChildIndex::default()));
    let off = social(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "External"},
        "networkPolicy": {"enabled": false}}));
    s.create(&external());
    s.reconcile().await.unwrap();
    assert!(s.get("networkpolicies", "apps", "social-consumer").is_some(), "created");

    // Policies turned off: the watch never reported them, but the new spec is checked against the
    // API server and both policies go.
    s.create(&off);
    s.server.reset_calls();
    s.reconcile().await.unwrap();
    assert!(s.server.count("get", "networkpolicies") >= 2, "a new spec reads what it removes");
    assert!(s.get("networkpolicies", "apps", "social-producer").is_none(), "removed although unseen by the watch");
    assert!(s.get("networkpolicies", "apps", "social-consumer").is_none(), "removed although unseen by the watch");

    // Once that generation is observed, a steady-state reconcile asks nothing about them.
    s.server.reset_calls();
    s.reconcile().await.unwrap();
    assert_eq!(s.server.count("get", "networkpolicies"), 0, "steady state: the index answers");
}

fn image(s: &Setup, deployment: &str) -> String {
    let d = s.get("deployments", "apps", deployment).unwrap_or_else(|| panic!("{deployment}"));
    d["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap().to_string()
}

/// Marks the stored Deployment's rollout complete, as the Deployment controller would.
fn rolled_out(s: &Setup, deployment: &str) {
    let mut d = s.get("deployments", "apps", deployment).unwrap();
    let replicas = d["spec"]["replicas"].clone();
    d["status"] = serde_json::json!({"observedGeneration": d["metadata"]["generation"], "replicas": replicas,
        "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas});
    s.server.put("deployments", d);
}

/// An upgrade that changes the pods of both Deployments rolls the consumers first: the producer
/// keeps its pods until the consumers' rollout is complete (a newer producer may write what older
/// consumers skip). A change to the producer alone is applied at once.
#[tokio::test]
async fn an_upgrade_rolls_the_consumers_before_the_producer() {
    let s = setup(FakeTopics::existing(6), FakeLag::fixed(0));
    let spec = |producer: &str, consumer: &str| {
        social(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "External"},
            "producer": {"image": producer}, "consumer": {"image": consumer}}))
    };
    s.create(&spec("herald/producer:1", "herald/consumer:1"));
    s.reconcile().await.unwrap();
    assert_eq!(
        (image(&s, "social-producer"), image(&s, "social-consumer")),
        ("herald/producer:1".into(), "herald/consumer:1".into())
    );

    // From now on the Deployment controller is slow: a rollout ends when the test says so.
    s.server.simulate(Simulation { deployments_become_ready: false, strimzi_reconciles: true });
    s.create(&spec("herald/producer:2", "herald/consumer:2"));
    assert_eq!(s.reconcile().await.unwrap(), Action::requeue(Duration::from_secs(15)), "looks again soon");
    assert_eq!(image(&s, "social-consumer"), "herald/consumer:2");
    assert_eq!(image(&s, "social-producer"), "herald/producer:1", "the producer waits for the consumers");
    s.reconcile().await.unwrap();
    assert_eq!(image(&s, "social-producer"), "herald/producer:1", "still rolling");

    rolled_out(&s, "social-consumer");
    s.reconcile().await.unwrap();
    assert_eq!(image(&s, "social-producer"), "herald/producer:2", "applied once the consumers are done");

    // The producer alone: nothing to wait for.
    s.create(&spec("herald/producer:3", "herald/consumer:2"));
    s.reconcile().await.unwrap();
    assert_eq!(image(&s, "social-producer"), "herald/producer:3");
}
