//! RBAC: each rendering of the chart grants exactly what the operator calls. For each rendering
//! (the default in `deploy/operator/`, one watching a single namespace, every option on), the
//! real operator runs with the flags that rendering gives it — on the stand-in API server,
//! through scenarios that touch every kind of object it manages — and every request it made is
//! compared, namespace by namespace, with the rendering's Roles and ClusterRoles: nothing it
//! called may be missing, and nothing granted may go unused. The stand-in records what the
//! OwnerReferencesPermissionEnforcement admission plugin asks for, too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use herald_fake_apiserver::Call;
use herald_operator::fixtures::{FakeApiServer, FakeLag, FakeTopics, pipeline, repo_root, run_args};
use herald_operator::run::run_with;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// A rule of a rendering: its scope (`None`: a ClusterRole) and what it grants.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    namespace: Option<String>,
    group: String,
    resource: String,
    verb: String,
}

struct Rendering {
    file: &'static str,
    grants: BTreeSet<Grant>,
    watch_namespace: Option<String>,
    leader_elect: bool,
}

fn rendering(file: &'static str) -> Rendering {
    let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
    let mut grants = BTreeSet::new();
    let (mut watch_namespace, mut leader_elect) = (None, false);
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc = serde_json::Value::deserialize(doc).unwrap();
        match doc["kind"].as_str() {
            Some("Role" | "ClusterRole") => {
                let namespace =
                    (doc["kind"] == "Role").then(|| doc["metadata"]["namespace"].as_str().unwrap().to_string());
                for rule in doc["rules"].as_array().unwrap() {
                    for group in rule["apiGroups"].as_array().unwrap() {
                        for resource in rule["resources"].as_array().unwrap() {
                            for verb in rule["verbs"].as_array().unwrap() {
                                grants.insert(Grant {
                                    namespace: namespace.clone(),
                                    group: group.as_str().unwrap().into(),
                                    resource: resource.as_str().unwrap().into(),
                                    verb: verb.as_str().unwrap().into(),
                                });
                            }
                        }
                    }
                }
            }
            Some("Deployment") => {
                for env in doc["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap() {
                    match env["name"].as_str() {
                        Some("HERALD_WATCH_NAMESPACE") => watch_namespace = env["value"].as_str().map(str::to_string),
                        Some("HERALD_LEADER_ELECT") => leader_elect = env["value"] == "true",
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Rendering { file, grants, watch_namespace, leader_elect }
}

fn allows(grant: &Grant, call: &Call) -> bool {
    grant.group == call.group
        && grant.resource == call.resource
        && grant.verb == call.verb
        && (grant.namespace.is_none() || grant.namespace == call.namespace)
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn condition(server: &FakeApiServer, name: &str, type_: &str) -> Option<(String, String)> {
    let p = server.get("notificationpipelines", "apps", name)?;
    let c = p["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?.clone();
    Some((c["status"].as_str()?.to_string(), c["reason"].as_str()?.to_string()))
}

/// Runs the operator as `r` configures it through every kind of object it manages; returns the
/// calls it made.
async fn exercise(r: &Rendering) -> BTreeSet<Call> {
    let server = FakeApiServer::new();
    server.serve_strimzi();
    // Where the Strimzi cluster lives: another namespace only where the rendering reaches it.
    let strimzi_elsewhere =
        r.grants.iter().any(|g| g.resource == "kafkatopics" && g.namespace.as_deref() == Some("kafka"))
            || r.watch_namespace.is_none();
    let cluster_namespace = if strimzi_elsewhere { "kafka" } else { "apps" };
    let create = |name: &str, spec: serde_json::Value| {
        server.put("notificationpipelines", serde_json::to_value(pipeline(name, "apps", spec)).unwrap());
    };
    create("plain", serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "External"}}));
    create("admin", serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "Admin"}}));
    create(
        "strimzi",
        serde_json::json!({"kafka": {"bootstrapServers": "k:9092",
            "clusterRef": {"name": "events", "namespace": cluster_namespace}}, "topic": {"deletionPolicy": "Delete"}}),
    );
    create(
        "local",
        serde_json::json!({"kafka": {"bootstrapServers": "k:9092", "clusterRef": {"name": "events"}},
            "topic": {"deletionPolicy": "Delete"}}),
    );
    create(
        "secured",
        serde_json::json!({"kafka": {"bootstrapServers": "k:9093", "clusterRef": {"name": "events"}, "tls": {},
            "authentication": {"type": "scram-sha-512"}}, "topic": {"management": "External"}}),
    );
    server.put(
        "secrets",
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "events-cluster-ca-cert", "namespace": "apps"},
            "data": {"ca.crt": "LS0tLS1CRUdJTg=="}}),
    );
    // A pipeline deleted and created again before the garbage collector removed its
    // predecessor's children.
    let predecessor = serde_json::json!([{"apiVersion": "herald.dev/v1alpha1", "kind": "NotificationPipeline",
        "name": "again", "uid": "uid-of-the-old-one", "controller": true}]);
    server.put(
        "services",
        serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "again-producer", "namespace": "apps",
            "ownerReferences": predecessor}, "spec": {"ports": [{"port": 8080}]}}),
    );
    server.put(
        "deployments",
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "again-producer", "namespace": "apps",
            "ownerReferences": predecessor}, "spec": {"replicas": 1}}),
    );
    server.put(
        "poddisruptionbudgets",
        serde_json::json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "again-consumer",
            "namespace": "apps", "ownerReferences": predecessor}, "spec": {}}),
    );
    server.put(
        "kafkausers",
        serde_json::json!({"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaUser",
            "metadata": {"name": "again-producer", "namespace": "apps", "ownerReferences": predecessor}, "spec": {}}),
    );
    server.put(
        "networkpolicies",
        serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "again-consumer", "namespace": "apps", "ownerReferences": predecessor,
                "labels": {"app.kubernetes.io/managed-by": "herald-operator"}}, "spec": {"podSelector": {}}}),
    );
    create(
        "again",
        serde_json::json!({"kafka": {"bootstrapServers": "k:9093", "clusterRef": {"name": "events"}, "tls": {},
            "authentication": {"type": "scram-sha-512"}}, "topic": {"management": "External"}}),
    );
    // A spec that cannot work, mended and broken again: the same Warning twice (a series).
    let invalid = serde_json::json!({"kafka": {"bootstrapServers": "k:9092", "properties": {"a": "x,y"}}, "topic": {"management": "External"}});
    create("flaky", invalid.clone());

    let mut args = run_args(Duration::from_millis(300));
    args.watch_namespace = r.watch_namespace.clone();
    args.leader_elect = r.leader_elect;
    let shutdown = CancellationToken::new();
    let operator = {
        let (client, shutdown) = (server.client(), shutdown.clone());
        tokio::spawn(async move {
            run_with(
                client,
                FakeTopics::named(&["plain", "secured", "again", "flaky"]),
                FakeLag::fixed(0),
                &args,
                prometheus::Registry::new(),
                shutdown,
            )
            .await
            .unwrap()
        })
    };
    for name in ["plain", "admin", "strimzi", "local", "secured", "again"] {
        wait_for(&format!("{name} Ready in {}", r.file), || {
            condition(&server, name, "Ready").is_some_and(|c| c.0 == "True")
        })
        .await;
    }
    wait_for("flaky refused", || condition(&server, "flaky", "Ready").is_some_and(|c| c.1 == "InvalidSpec")).await;
    create("flaky", serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "External"}}));
    wait_for("flaky Ready", || condition(&server, "flaky", "Ready").is_some_and(|c| c.0 == "True")).await;
    create("flaky", invalid);
    wait_for("flaky refused again", || condition(&server, "flaky", "Ready").is_some_and(|c| c.1 == "InvalidSpec"))
        .await;
    wait_for("the repeated Warning patched", || server.count("patch", "events") > 0).await;
    // NetworkPolicies turned off: the operator deletes the ones it made.
    assert!(server.get("networkpolicies", "apps", "plain-consumer").is_some());
    create(
        "plain",
        serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "External"},
            "networkPolicy": {"enabled": false}}),
    );
    let start = Instant::now();
    while server.get("networkpolicies", "apps", "plain-consumer").is_some()
        || server.get("networkpolicies", "apps", "plain-producer").is_some()
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for plain's NetworkPolicies to be deleted in {}; operator running: {}; plain: {}; \
             requests so far: {:?}",
            r.file,
            !operator.is_finished(),
            server.get("notificationpipelines", "apps", "plain").map(|p| p["status"].clone()).unwrap_or_default(),
            server.counts()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.delete("notificationpipelines", "apps", "strimzi");
    server.delete("notificationpipelines", "apps", "local");
    let start = Instant::now();
    while server.get("notificationpipelines", "apps", "strimzi").is_some()
        || server.get("kafkatopics", cluster_namespace, "apps.strimzi").is_some()
        || server.get("notificationpipelines", "apps", "local").is_some()
        || server.get("kafkatopics", "apps", "apps.local").is_some()
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for strimzi and local deleted with their KafkaTopics in {}; operator running: {}; \
             strimzi: {}; local: {}; topics: {:?} {:?}; requests so far: {:?}",
            r.file,
            !operator.is_finished(),
            server.get("notificationpipelines", "apps", "strimzi").unwrap_or_default(),
            server.get("notificationpipelines", "apps", "local").unwrap_or_default(),
            server.get("kafkatopics", cluster_namespace, "apps.strimzi").map(|t| t["metadata"].clone()),
            server.get("kafkatopics", "apps", "apps.local").map(|t| t["metadata"].clone()),
            server.counts(),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    operator.await.unwrap();
    server.calls()
}

async fn check(file: &'static str) {
    let r = rendering(file);
    let calls = exercise(&r).await;
    let missing: Vec<&Call> = calls.iter().filter(|c| !r.grants.iter().any(|g| allows(g, c))).collect();
    let unused: Vec<&Grant> = r.grants.iter().filter(|g| !calls.iter().any(|c| allows(g, c))).collect();
    assert!(missing.is_empty(), "{file}: the operator called what is not granted: {missing:#?}");
    assert!(unused.is_empty(), "{file}: granted but never called: {unused:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_rendering_grants_exactly_what_the_operator_calls() {
    check("deploy/operator/herald-operator.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_single_namespace_rendering_grants_exactly_what_the_operator_calls() {
    check("tests/packaging/rendered/watch-namespace.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendering_with_every_option_grants_exactly_what_the_operator_calls() {
    check("tests/packaging/rendered/all-on.yaml").await;
}
