//! Reconcile scenarios against a mocked API server (tower-test): each test asserts the exact
//! requests, in order, and answers them as the API server would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use herald_api::{KafkaSpec, NotificationPipeline};
use herald_operator::controller::{Context, FINALIZER, Topics, reconcile};
use herald_operator::desired::Images;
use herald_operator::metrics::OperatorMetrics;
use herald_operator::topic::{Ensured, LagReport, TopicError, WantedTopic};
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Topics that exist with a fixed partition count and a given total lag (spread evenly).
struct FixedTopics(Option<i32>, Option<i64>);

impl Topics for FixedTopics {
    async fn ensure(&self, _: &KafkaSpec, wanted: &WantedTopic) -> Result<Ensured, TopicError> {
        Ok(match self.0 {
            Some(partitions) => Ensured::Exists { partitions },
            None => Ensured::Created { partitions: wanted.partitions },
        })
    }

    async fn partitions(&self, _: &KafkaSpec, _: &str) -> Result<Option<i32>, TopicError> {
        Ok(self.0)
    }

    async fn lag(&self, _: &KafkaSpec, _: &str, _: &str) -> Result<Option<LagReport>, TopicError> {
        let (Some(partitions), Some(total)) = (self.0, self.1) else {
            return Err(TopicError::Unreachable(rdkafka::error::KafkaError::Canceled));
        };
        let per_partition = (0..partitions).map(|p| (p, total / i64::from(partitions))).collect();
        Ok(Some(LagReport { partitions, per_partition }))
    }
}

fn context(topics: FixedTopics) -> (Arc<Context<FixedTopics>>, Handle, prometheus::Registry) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let registry = prometheus::Registry::new();
    let client = Client::new(service, "default");
    let reporter = kube::runtime::events::Reporter { controller: "herald-operator".into(), instance: None };
    let ctx = Context {
        recorder: kube::runtime::events::Recorder::new(client.clone(), reporter),
        client,
        images: Images { producer: "herald/producer:1".into(), consumer: "herald/consumer:1".into() },
        topics,
        metrics: OperatorMetrics::register(&registry).unwrap(),
        sync_period: Duration::from_secs(15),
        clock: herald_operator::controller::system_clock(),
        scaling: Default::default(),
    };
    (Arc::new(ctx), handle, registry)
}

fn pipeline(spec: serde_json::Value) -> NotificationPipeline {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "herald.dev/v1alpha1",
        "kind": "NotificationPipeline",
        "metadata": {"name": "social", "namespace": "apps", "uid": "u-1", "generation": 3, "finalizers": [FINALIZER]},
        "spec": spec,
    }))
    .unwrap()
}

/// Receives the next request, checks method and path, answers with `respond(body)`.
async fn expect(
    handle: &mut Handle,
    method: &str,
    path: &str,
    respond: impl FnOnce(&serde_json::Value) -> (u16, serde_json::Value),
) -> (String, serde_json::Value) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request arrived; expected {method} {path}"))
        .expect("the client went away");
    let uri = req.uri().to_string();
    record_call(req.method().as_str(), req.uri().path());
    assert_eq!(req.method().as_str(), method, "{uri}");
    assert_eq!(req.uri().path(), path, "{uri}");
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value =
        if bytes.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    record_owner_reference_admission(method, path, &body);
    let (code, answer) = respond(&body);
    send.send_response(
        Response::builder().status(code).body(Body::from(serde_json::to_vec(&answer).unwrap())).unwrap(),
    );
    (uri, body)
}

/// Answers a server-side apply with the object, adding `status`.
fn echo_with(status: serde_json::Value) -> impl FnOnce(&serde_json::Value) -> (u16, serde_json::Value) {
    move |body| {
        let mut obj = body.clone();
        if !status.is_null() {
            obj["status"] = status;
        }
        (200, obj)
    }
}

fn echo(body: &serde_json::Value) -> (u16, serde_json::Value) {
    (200, body.clone())
}

/// Answers a status patch with the whole pipeline carrying that status.
fn echo_status(body: &serde_json::Value) -> (u16, serde_json::Value) {
    let mut obj = serde_json::to_value(pipeline(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}}))).unwrap();
    obj["status"] = body["status"].clone();
    (200, obj)
}

fn assert_apply(uri: &str) {
    assert!(uri.contains("fieldManager=herald-operator"), "{uri}");
    assert!(uri.contains("force=true"), "{uri}");
}

const APPS: &str = "/apis/apps/v1/namespaces/apps/deployments";
const SERVICES: &str = "/api/v1/namespaces/apps/services";
const PDBS: &str = "/apis/policy/v1/namespaces/apps/poddisruptionbudgets";
const STATUS: &str = "/apis/herald.dev/v1alpha1/namespaces/apps/notificationpipelines/social/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/apps/events";

/// The children, in order; returns the consumer Deployment's and the status bodies.
async fn expect_children(
    handle: &mut Handle,
    consumer_ready: Option<i32>,
) -> (Option<serde_json::Value>, serde_json::Value) {
    let (uri, _) = expect(
        handle,
        "PATCH",
        &format!("{APPS}/social-producer"),
        echo_with(serde_json::json!({"replicas": 1, "readyReplicas": 1})),
    )
    .await;
    assert_apply(&uri);
    for name in ["social-producer", "social-consumer", "social-consumer-headless"] {
        let (uri, _) = expect(handle, "PATCH", &format!("{SERVICES}/{name}"), echo).await;
        assert_apply(&uri);
    }
    let (uri, _) = expect(handle, "PATCH", &format!("{PDBS}/social-consumer"), echo).await;
    assert_apply(&uri);
    let consumer = match consumer_ready {
        Some(n) => {
            let (uri, body) = expect(
                handle,
                "PATCH",
                &format!("{APPS}/social-consumer"),
                echo_with(serde_json::json!({"replicas": n, "readyReplicas": n})),
            )
            .await;
            assert_apply(&uri);
            Some(body)
        }
        None => None,
    };
    let (uri, status) = expect(handle, "PATCH", STATUS, echo_status).await;
    assert_apply(&uri);
    if consumer.is_some() {
        // The consumer count went from nothing to the decision: a Scaled event.
        let (_, event) = expect(handle, "POST", EVENTS, echo).await;
        assert_eq!(event["reason"], "Scaled", "{event}");
    }
    (consumer, status)
}

fn condition<'a>(status: &'a serde_json::Value, type_: &str) -> &'a serde_json::Value {
    status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {status}"))
}

async fn run(
    ctx: Arc<Context<FixedTopics>>,
    p: NotificationPipeline,
) -> tokio::task::JoinHandle<Result<Action, herald_operator::Error>> {
    tokio::spawn(async move { reconcile(Arc::new(p), ctx).await })
}

#[tokio::test]
async fn create_path_applies_every_child_with_the_field_manager_then_status() {
    let (ctx, mut handle, registry) = context(FixedTopics(Some(6), Some(6000)));
    let p = pipeline(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "External"}}));
    let task = run(ctx, p).await;
    let (consumer, status) = expect_children(&mut handle, Some(6)).await;
    assert_eq!(consumer.unwrap()["spec"]["replicas"], 6);
    assert_eq!(status["apiVersion"], "herald.dev/v1alpha1");
    assert_eq!(status["status"]["observedGeneration"], 3);
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert_eq!(condition(&status, "TopicReady")["status"], "True");
    assert_eq!(condition(&status, "ReplicasCapped")["status"], "False");
    assert_eq!(status["status"]["topic"], serde_json::json!({"name": "social", "partitions": 6}));
    assert_eq!(status["status"]["consumer"]["desiredReplicas"], 6);
    assert_eq!(status["status"]["consumer"]["readyReplicas"], 6);
    assert!(
        status["status"]["consumer"]["selector"].as_str().unwrap().contains("app.kubernetes.io/component=consumer")
    );
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(Duration::from_secs(15)));
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
    assert!(text.contains(r#"herald_operator_reconciliations_total{outcome="ok"} 1"#), "{text}");
    assert!(text.contains(r#"herald_operator_topic_partitions{namespace="apps",pipeline="social"} 6"#), "{text}");
}

#[tokio::test]
async fn replicas_above_the_partitions_are_capped_with_a_condition() {
    let (ctx, mut handle, _) = context(FixedTopics(Some(6), Some(6000)));
    let p = pipeline(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092"},
        "topic": {"management": "Admin"},
        "consumer": {"replicas": 10},
    }));
    let task = run(ctx, p).await;
    let (consumer, status) = expect_children(&mut handle, Some(6)).await;
    assert_eq!(consumer.unwrap()["spec"]["replicas"], 6);
    let capped = condition(&status, "ReplicasCapped");
    assert_eq!(capped["status"], "True");
    assert!(capped["message"].as_str().unwrap().contains("10 consumers requested, running 6"), "{capped}");
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn strimzi_missing_sets_topic_ready_false_and_holds_the_consumers() {
    let (ctx, mut handle, _) = context(FixedTopics(Some(6), Some(6000)));
    let p = pipeline(
        serde_json::json!({"kafka": {"bootstrapServers": "k:9092", "clusterRef": {"name": "my-cluster", "namespace": "kafka"}}}),
    );
    let task = run(ctx, p).await;
    expect(&mut handle, "GET", "/apis", |_| {
        (200, serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}
        ]}))
    })
    .await;
    let (consumer, status) = expect_children(&mut handle, None).await;
    assert!(consumer.is_none(), "no consumers before the topic is ready");
    let topic = condition(&status, "TopicReady");
    assert_eq!((topic["status"].as_str(), topic["reason"].as_str()), (Some("False"), Some("StrimziNotInstalled")));
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(condition(&status, "ConsumersAvailable")["reason"], "WaitingForTopic");
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(Duration::from_secs(60)));
}

fn strimzi_discovery_answers() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "/apis",
            serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
                "name": "kafka.strimzi.io",
                "versions": [{"groupVersion": "kafka.strimzi.io/v1beta2", "version": "v1beta2"}],
                "preferredVersion": {"groupVersion": "kafka.strimzi.io/v1beta2", "version": "v1beta2"}
            }]}),
        ),
        (
            "/apis/kafka.strimzi.io/v1beta2",
            serde_json::json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "kafka.strimzi.io/v1beta2", "resources": [
                {"name": "kafkatopics", "singularName": "kafkatopic", "namespaced": true, "kind": "KafkaTopic", "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
                {"name": "kafkausers", "singularName": "kafkauser", "namespaced": true, "kind": "KafkaUser", "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}
            ]}),
        ),
    ]
}

#[tokio::test]
async fn strimzi_kafka_topic_is_applied_in_the_cluster_namespace_and_followed() {
    let (ctx, mut handle, _) = context(FixedTopics(Some(12), Some(12000)));
    let p = pipeline(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092", "clusterRef": {"name": "my-cluster", "namespace": "kafka"}},
        "topic": {"partitions": 12, "config": {"retention.ms": "604800000"}},
    }));
    let task = run(ctx, p).await;
    for (path, answer) in strimzi_discovery_answers() {
        expect(&mut handle, "GET", path, move |_| (200, answer)).await;
    }
    let (uri, topic) = expect(
        &mut handle,
        "PATCH",
        "/apis/kafka.strimzi.io/v1beta2/namespaces/kafka/kafkatopics/apps.social",
        |body| {
            let mut obj = body.clone();
            obj["metadata"]["generation"] = serde_json::json!(1);
            obj["status"] =
                serde_json::json!({"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]});
            (200, obj)
        },
    )
    .await;
    assert_apply(&uri);
    assert_eq!(topic["metadata"]["labels"]["strimzi.io/cluster"], "my-cluster");
    assert_eq!(
        topic["spec"],
        serde_json::json!({"topicName": "social", "partitions": 12, "replicas": 3, "config": {"retention.ms": "604800000"}})
    );
    assert!(topic["metadata"]["ownerReferences"].is_null(), "cross-namespace: no owner reference");
    let (consumer, status) = expect_children(&mut handle, Some(12)).await;
    assert_eq!(consumer.unwrap()["spec"]["replicas"], 12);
    assert_eq!(condition(&status, "TopicReady")["reason"], "TopicReady");
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn kafka_users_are_applied_before_the_pods_that_mount_their_secrets() {
    let p = pipeline(serde_json::json!({
        "kafka": {"bootstrapServers": "events-kafka-bootstrap.apps:9093", "clusterRef": {"name": "events"},
            "tls": {}, "authentication": {"type": "scram-sha-512"}},
        "topic": {"management": "External"},
    }));
    users_then_children(p).await;
}

/// A pipeline deleted and created again under the same name, before the garbage collector removed
/// its predecessor's children: the operator re-applies them under the new owner, which (with
/// OwnerReferencesPermissionEnforcement) takes `delete` on each of them.
#[tokio::test]
async fn a_recreated_pipeline_reapplies_its_predecessors_children() {
    let mut p = pipeline(serde_json::json!({
        "kafka": {"bootstrapServers": "events-kafka-bootstrap.apps:9093", "clusterRef": {"name": "events"},
            "tls": {}, "authentication": {"type": "scram-sha-512"}},
        "topic": {"management": "External"},
    }));
    *EXISTING_OWNER.lock().unwrap() = Some("u-0".into());
    p.metadata.uid = Some("u-1".into());
    users_then_children(p).await;
    *EXISTING_OWNER.lock().unwrap() = None;
}

async fn users_then_children(p: NotificationPipeline) {
    let (ctx, mut handle, _) = context(FixedTopics(Some(6), Some(6000)));
    let task = run(ctx, p).await;
    // The operator's own Kafka client (lag probe) authenticates as the consumers: the CA and
    // the consumers' Secret, as Strimzi wrote them.
    expect_secret(&mut handle, "events-cluster-ca-cert", Some(serde_json::json!({"ca.crt": "LS0tLS1CRUdJTg=="}))).await;
    expect_secret(&mut handle, "social-consumer", Some(serde_json::json!({"password": "czNjcmV0"}))).await;
    for (path, answer) in strimzi_discovery_answers() {
        expect(&mut handle, "GET", path, move |_| (200, answer)).await;
    }
    for role in ["producer", "consumer"] {
        let (uri, user) = expect(
            &mut handle,
            "PATCH",
            &format!("/apis/kafka.strimzi.io/v1beta2/namespaces/apps/kafkausers/social-{role}"),
            echo,
        )
        .await;
        assert_apply(&uri);
        assert_eq!(user["kind"], "KafkaUser");
        assert_eq!(user["metadata"]["labels"]["strimzi.io/cluster"], "events");
        assert_eq!(user["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(user["spec"]["authentication"]["type"], "scram-sha-512");
    }
    let (consumer, _) = expect_children(&mut handle, Some(6)).await;
    let env = consumer.unwrap()["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    assert!(env.to_string().contains("sasl.username=social-consumer"), "{env}");
    task.await.unwrap().unwrap();
}

/// Answers the GET of a Secret in `apps`: its `data`, or 404.
async fn expect_secret(handle: &mut Handle, name: &str, data: Option<serde_json::Value>) {
    expect(handle, "GET", &format!("/api/v1/namespaces/apps/secrets/{name}"), move |_| match data {
        Some(data) => (
            200,
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "apps"}, "data": data}),
        ),
        None => (
            404,
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
        ),
    })
    .await;
}

/// SCRAM without TLS, users created by the operator, an existing topic.
fn scram_with_strimzi_users() -> NotificationPipeline {
    pipeline(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092", "clusterRef": {"name": "events"}, "authentication": {"type": "scram-sha-512"}},
        "topic": {"management": "External"},
    }))
}

#[tokio::test]
async fn until_strimzi_wrote_the_credentials_the_topic_waits_with_the_reason() {
    let (ctx, mut handle, _) = context(FixedTopics(Some(6), Some(6000)));
    let task = run(ctx, scram_with_strimzi_users()).await;
    expect_secret(&mut handle, "social-consumer", None).await;
    for (path, answer) in strimzi_discovery_answers() {
        expect(&mut handle, "GET", path, move |_| (200, answer)).await;
    }
    for role in ["producer", "consumer"] {
        let path = format!("/apis/kafka.strimzi.io/v1beta2/namespaces/apps/kafkausers/social-{role}");
        expect(&mut handle, "PATCH", &path, echo).await;
    }
    let (consumer, status) = expect_children(&mut handle, None).await;
    assert!(consumer.is_none(), "no consumers before the topic is confirmed");
    let topic_ready = condition(&status, "TopicReady");
    assert_eq!(topic_ready["status"], "False");
    assert!(topic_ready["message"].as_str().unwrap().contains("Secret social-consumer does not exist"), "{status}");
    // Looked at again soon: Strimzi writes the Secret a moment after the KafkaUser.
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(Duration::from_secs(15)));
}

#[tokio::test]
async fn kafka_users_without_strimzi_say_so() {
    let (ctx, mut handle, _) = context(FixedTopics(Some(6), Some(6000)));
    let task = run(ctx, scram_with_strimzi_users()).await;
    expect_secret(&mut handle, "social-consumer", None).await;
    expect(&mut handle, "GET", "/apis", |_| {
        (200, serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}))
    })
    .await;
    let (_, status) = expect(&mut handle, "PATCH", STATUS, echo_status).await;
    assert_eq!(condition(&status, "Ready")["reason"], "InvalidSpec");
    assert!(condition(&status, "Ready")["message"].as_str().unwrap().contains("KafkaUser API"), "{status}");
    let (_, event) = expect(&mut handle, "POST", EVENTS, echo).await;
    assert_eq!(event["reason"], "InvalidSpec");
    // Strimzi may be installed later: look again.
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(Duration::from_secs(60)));
}

fn deleted(policy: &str) -> NotificationPipeline {
    let mut p = pipeline(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092", "clusterRef": {"name": "my-cluster", "namespace": "kafka"}},
        "topic": {"deletionPolicy": policy},
    }));
    p.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    p
}

async fn expect_finalizer_removed(handle: &mut Handle) {
    let (_, patch) =
        expect(handle, "PATCH", "/apis/herald.dev/v1alpha1/namespaces/apps/notificationpipelines/social", |_| {
            (200, serde_json::to_value(pipeline(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}}))).unwrap())
        })
        .await;
    assert!(patch.to_string().contains("/metadata/finalizers"), "{patch}");
}

#[tokio::test]
async fn deletion_with_delete_removes_the_kafka_topic_then_the_finalizer() {
    let (ctx, mut handle, _) = context(FixedTopics(Some(6), Some(6000)));
    let task = run(ctx, deleted("Delete")).await;
    for (path, answer) in strimzi_discovery_answers() {
        expect(&mut handle, "GET", path, move |_| (200, answer)).await;
    }
    expect(&mut handle, "DELETE", "/apis/kafka.strimzi.io/v1beta2/namespaces/kafka/kafkatopics/apps.social", |_| {
        (200, serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}))
    })
    .await;
    expect_finalizer_removed(&mut handle).await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn deletion_with_retain_keeps_the_topic_and_removes_the_finalizer() {
    let (ctx, mut handle, _) = context(FixedTopics(Some(6), Some(6000)));
    let task = run(ctx, deleted("Retain")).await;
    expect_finalizer_removed(&mut handle).await;
    task.await.unwrap().unwrap();
    // Nothing else was asked of the API server (no KafkaTopic lookup, no delete).
    let more = tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await;
    assert!(!matches!(more, Ok(Some(_))), "unexpected request after the finalizer was removed");
}

#[tokio::test]
async fn an_unusable_spec_sets_ready_false_and_waits_for_a_change() {
    let (ctx, mut handle, _) = context(FixedTopics(Some(6), Some(6000)));
    let p = pipeline(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092", "properties": {"ssl.cipher.suites": "A,B"}},
        "topic": {"management": "External"},
    }));
    let task = run(ctx, p).await;
    let (_, status) = expect(&mut handle, "PATCH", STATUS, echo_status).await;
    let ready = condition(&status, "Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("InvalidSpec")));
    assert!(ready["message"].as_str().unwrap().contains("ssl.cipher.suites"), "{ready}");
    let (_, event) = expect(&mut handle, "POST", EVENTS, echo).await;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "InvalidSpec");
    assert_eq!(event["regarding"]["name"], "social");
    assert!(event["note"].as_str().unwrap().contains("ssl.cipher.suites"), "{event}");
    // No retry storm: nothing happens again until the spec changes.
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
}

#[tokio::test]
async fn refused_objects_wait_for_a_change_while_outages_retry() {
    for (code, transient) in [(422u16, false), (503u16, true)] {
        let (ctx, mut handle, registry) = context(FixedTopics(Some(6), Some(6000)));
        let p =
            pipeline(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "External"}}));
        let task = run(ctx.clone(), p.clone()).await;
        expect(&mut handle, "PATCH", &format!("{APPS}/social-producer"), move |_| {
            (code, serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "refused", "reason": "Invalid", "code": code}))
        })
        .await;
        let error = task.await.unwrap().unwrap_err();
        assert_eq!(error.is_transient(), transient, "{code}: {error}");
        let action = herald_operator::controller::error_policy(Arc::new(p), &error, ctx);
        let expected = if transient { Action::requeue(Duration::from_secs(15)) } else { Action::await_change() };
        assert_eq!(action, expected, "{code}");
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
        assert!(text.contains(r#"herald_operator_reconcile_errors_total{error="apply"} 1"#), "{text}");
    }
}

/// The `herald_operator_…` names the alert rules and the dashboard in `deploy/monitoring/` use.
fn operator_names_in_monitoring() -> std::collections::BTreeSet<String> {
    let root = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../..");
    let mut text = std::fs::read_to_string(root.join("deploy/monitoring/herald.rules.yaml")).unwrap();
    text.push_str(&std::fs::read_to_string(root.join("deploy/monitoring/herald-dashboard.json")).unwrap());
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("herald_operator_"))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn every_operator_metric_the_dashboard_and_rules_use_is_exported() {
    let wanted = operator_names_in_monitoring();
    assert!(wanted.len() >= 5, "{wanted:?}");
    let mut exported = std::collections::BTreeSet::new();
    let mut collect = |registry: &prometheus::Registry| {
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
        exported.extend(
            text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).map(str::to_string),
        );
    };

    // A pipeline that converges, and one whose apply is refused.
    let (ctx, mut handle, registry) = context(FixedTopics(Some(6), Some(6000)));
    let p = pipeline(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "External"}}));
    let task = run(ctx, p).await;
    expect_children(&mut handle, Some(6)).await;
    task.await.unwrap().unwrap();
    collect(&registry);
    let (ctx, mut handle, registry) = context(FixedTopics(Some(6), Some(6000)));
    let p = pipeline(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "External"}}));
    let task = run(ctx.clone(), p.clone()).await;
    expect(&mut handle, "PATCH", &format!("{APPS}/social-producer"), |_| {
        (503, serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "down", "code": 503}))
    })
    .await;
    let error = task.await.unwrap().unwrap_err();
    // The controller hands a failed reconcile to the error policy, which counts it.
    herald_operator::controller::error_policy(Arc::new(p), &error, ctx);
    collect(&registry);

    let missing: Vec<_> = wanted.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(missing.is_empty(), "used in deploy/monitoring/ but not exported: {missing:?}\nexported: {exported:?}");
}

/// Every (API group, resource, verb) a request of these scenarios used.
static CALLS: std::sync::Mutex<std::collections::BTreeSet<(String, String, String)>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// The uid the children of the pipeline being reconciled are owned by in the scenario (a
/// pipeline deleted and created again under the same name: its predecessor's uid).
static EXISTING_OWNER: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// What the OwnerReferencesPermissionEnforcement admission plugin (on in OpenShift) asks of an
/// apply that sets owner references: `update` on the owner's `finalizers` subresource when an
/// owner reference blocks the owner's deletion, and `delete` on the object itself when its owner
/// references change (an object that already exists with another owner).
fn record_owner_reference_admission(method: &str, path: &str, body: &serde_json::Value) {
    let Some(owners) = body["metadata"]["ownerReferences"].as_array() else { return };
    if method != "PATCH" || owners.is_empty() {
        return;
    }
    if owners.iter().any(|o| o["blockOwnerDeletion"] == true) {
        CALLS.lock().unwrap().insert(("herald.dev".into(), "notificationpipelines/finalizers".into(), "update".into()));
    }
    let existing = EXISTING_OWNER.lock().unwrap().clone();
    if existing.is_some_and(|uid| owners.iter().all(|o| o["uid"] != uid.as_str())) {
        record_call("DELETE", path);
    }
}

/// Records what RBAC needs for one request (non-resource paths such as discovery need nothing).
fn record_call(method: &str, path: &str) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return,
    };
    let (resource, named) = match rest {
        ["namespaces", _, resource] => (resource.to_string(), false),
        ["namespaces", _, resource, _name] => (resource.to_string(), true),
        ["namespaces", _, resource, _name, sub] => (format!("{resource}/{sub}"), true),
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        _ => return,
    };
    let verb = match (method, named) {
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => return,
    };
    CALLS.lock().unwrap().insert((group.to_string(), resource, verb.to_string()));
}

/// The Role/ClusterRole rules of the chart with every option on, as (group, resource, verb).
fn chart_rules() -> std::collections::BTreeSet<(String, String, String)> {
    use serde::Deserialize;
    let root = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../..");
    let text = std::fs::read_to_string(root.join("tests/packaging/rendered/all-on.yaml")).unwrap();
    let mut rules = std::collections::BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc = serde_json::Value::deserialize(doc).unwrap();
        if doc["kind"] != "Role" && doc["kind"] != "ClusterRole" {
            continue;
        }
        for rule in doc["rules"].as_array().unwrap() {
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        rules.insert((
                            group.as_str().unwrap().to_string(),
                            resource.as_str().unwrap().to_string(),
                            verb.as_str().unwrap().to_string(),
                        ));
                    }
                }
            }
        }
    }
    rules
}

/// Leader election against the mocked API server: no Lease yet (created), then renewed.
async fn leader_election_calls() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let elector = herald_operator::leader::LeaderElector::new(
        herald_operator::leader::KubeLeases::new(client, "herald-system", "herald-operator"),
        "herald-operator",
        "me",
        herald_operator::leader::Timings::default(),
    );
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(5);
    let leases = "/apis/coordination.k8s.io/v1/namespaces/herald-system/leases";
    let first = tokio::spawn(async move {
        let held = elector.try_acquire_or_renew(deadline()).await.unwrap();
        (elector, held)
    });
    expect(&mut handle, "GET", &format!("{leases}/herald-operator"), |_| {
        (404, serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}))
    })
    .await;
    let (_, lease) = expect(&mut handle, "POST", leases, |body| (201, body.clone())).await;
    let (elector, held) = first.await.unwrap();
    assert!(held);
    let second = tokio::spawn(async move {
        let held = elector.try_acquire_or_renew(deadline()).await.unwrap();
        (elector, held)
    });
    let mut current = lease.clone();
    current["metadata"]["resourceVersion"] = "1".into();
    expect(&mut handle, "GET", &format!("{leases}/herald-operator"), move |_| (200, current)).await;
    let (_, renewed) =
        expect(&mut handle, "PUT", &format!("{leases}/herald-operator"), |body| (200, body.clone())).await;
    let (elector, held) = second.await.unwrap();
    assert!(held);
    // Stopping: the lease is given up, not left to expire.
    let release = tokio::spawn(async move { elector.release().await.unwrap() });
    expect(&mut handle, "GET", &format!("{leases}/herald-operator"), move |_| (200, renewed)).await;
    let (_, released) =
        expect(&mut handle, "PUT", &format!("{leases}/herald-operator"), |body| (200, body.clone())).await;
    assert!(released["spec"].get("holderIdentity").is_none(), "{released}");
    assert_eq!(released["spec"]["leaseDurationSeconds"], 1);
    release.await.unwrap();
}

/// RBAC: the chart grants exactly what the operator calls. The calls are recorded from the
/// scenarios above (run again here) and leader election; the controller's list/watch of the
/// kinds it watches (run.rs), Event patches (the event recorder patches a repeated event instead
/// of creating it again) and the create that an apply of a missing object needs are added, as
/// this mock cannot show them.
#[test]
fn the_chart_grants_exactly_what_the_operator_calls() {
    create_path_applies_every_child_with_the_field_manager_then_status();
    replicas_above_the_partitions_are_capped_with_a_condition();
    strimzi_missing_sets_topic_ready_false_and_holds_the_consumers();
    strimzi_kafka_topic_is_applied_in_the_cluster_namespace_and_followed();
    kafka_users_are_applied_before_the_pods_that_mount_their_secrets();
    a_recreated_pipeline_reapplies_its_predecessors_children();
    kafka_users_without_strimzi_say_so();
    until_strimzi_wrote_the_credentials_the_topic_waits_with_the_reason();
    deletion_with_delete_removes_the_kafka_topic_then_the_finalizer();
    deletion_with_retain_keeps_the_topic_and_removes_the_finalizer();
    an_unusable_spec_sets_ready_false_and_waits_for_a_change();
    refused_objects_wait_for_a_change_while_outages_retry();
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(leader_election_calls());

    let mut needed = CALLS.lock().unwrap().clone();
    for (group, resource) in [
        ("herald.dev", "notificationpipelines"),
        ("apps", "deployments"),
        ("", "services"),
        ("policy", "poddisruptionbudgets"),
    ] {
        for verb in ["list", "watch"] {
            needed.insert((group.into(), resource.into(), verb.into()));
        }
    }
    needed.insert(("events.k8s.io".into(), "events".into(), "patch".into()));
    // A server-side apply of an object that does not exist yet is authorized as a create too.
    for (group, resource, _) in CALLS.lock().unwrap().iter().filter(|(_, r, v)| v == "patch" && !r.contains('/')) {
        if resource != "notificationpipelines" && resource != "events" {
            needed.insert((group.clone(), resource.clone(), "create".into()));
        }
    }
    let granted = chart_rules();
    let missing: Vec<_> = needed.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&needed).collect();
    assert!(missing.is_empty(), "the operator calls what the chart does not grant: {missing:?}");
    assert!(extra.is_empty(), "the chart grants what the operator never calls: {extra:?}");
}
