//! The CRD as users and the API server see it: the committed YAML matches the types, the API
//! contract holds, the examples validate and bad specs are rejected with a readable reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::json as j;

use herald_api::{NotificationPipeline, TopicManagement, crd_yaml};
use kube::core::crd::CustomResourceExt;

/// The repository root. Read at run time: cargo reuses test binaries when a checkout moves (the CI
/// clone and a developer's tree share one target directory), so a path baked in at compile time can
/// point at a checkout that no longer exists.
fn repo() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    PathBuf::from(manifest_dir).join("../..")
}

#[test]
fn committed_crd_matches_the_types() {
    let path = repo().join("deploy/crds/notificationpipelines.herald.dev.yaml");
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        committed == crd_yaml(),
        "{} is out of date; regenerate it with\n  cargo run -q -p herald-operator -- crd > deploy/crds/notificationpipelines.herald.dev.yaml",
        path.display()
    );
}

#[test]
fn api_contract() {
    let crd = serde_json::to_value(NotificationPipeline::crd()).unwrap();
    let spec = &crd["spec"];
    assert_eq!(spec["group"], "herald.dev");
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["kind"], "NotificationPipeline");
    assert_eq!(spec["names"]["plural"], "notificationpipelines");
    assert_eq!(spec["names"]["shortNames"], serde_json::json!(["npipe"]));
    let version = &spec["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    let scale = &version["subresources"]["scale"];
    assert_eq!(scale["specReplicasPath"], ".spec.consumer.replicas");
    assert_eq!(scale["statusReplicasPath"], ".status.consumer.replicas");
    assert_eq!(scale["labelSelectorPath"], ".status.consumer.selector");
    let columns: Vec<&str> =
        version["additionalPrinterColumns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(columns, ["Topic", "Partitions", "Consumers", "Lag", "Ready", "Auth", "Age"]);
    let auth = &version["additionalPrinterColumns"][5];
    assert_eq!(auth["jsonPath"], r#".status.conditions[?(@.type=="AuthConfigured")].reason"#);
    let text = crd_yaml();
    for message in [
        "spec.topic.partitions may grow but never shrink",
        "spec.topic.name is immutable",
        "spec.consumer.minReplicas must not exceed spec.consumer.maxReplicas",
        "spec.consumer.maxReplicas must not exceed spec.topic.partitions",
    ] {
        assert!(text.contains(message), "missing CEL rule: {message}");
    }
}

#[test]
fn every_field_has_a_description() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, prop) in props {
                let here = format!("{path}.{name}");
                if prop.get("description").is_none() {
                    missing.push(here.clone());
                }
                walk(&here, prop, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let crd = serde_json::to_value(NotificationPipeline::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    let mut missing = Vec::new();
    walk("spec", &schema["spec"], &mut missing);
    walk("status", &schema["status"], &mut missing);
    assert!(missing.is_empty(), "fields without a description: {missing:?}");
}

fn validator() -> jsonschema::Validator {
    let crd = serde_json::to_value(NotificationPipeline::crd()).unwrap();
    let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    jsonschema::validator_for(&schema).unwrap()
}

fn examples() -> Vec<(PathBuf, serde_json::Value)> {
    let mut found: Vec<_> = std::fs::read_dir(repo().join("deploy/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    found.sort();
    found
        .into_iter()
        .flat_map(|p| {
            // A file may hold several documents (the Strimzi Kafka example does).
            let text = std::fs::read_to_string(&p).unwrap();
            serde_yaml::Deserializer::from_str(&text)
                .map(|d| serde_json::Value::deserialize(d).unwrap())
                .filter(|doc| doc["kind"] == "NotificationPipeline")
                .map(|doc| (p.clone(), doc))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_examples_validate_and_deserialize() {
    let v = validator();
    let found = examples();
    assert!(found.len() >= 3, "{found:?}");
    for (path, doc) in found {
        let errors: Vec<String> = v.iter_errors(&doc).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        let pipeline: NotificationPipeline = serde_json::from_value(doc).unwrap();
        assert!(!pipeline.spec.kafka.bootstrap_servers.is_empty());
    }
}

#[test]
fn a_minimal_spec_gets_the_documented_defaults() {
    let doc = examples().into_iter().find(|(p, _)| p.ends_with("minimal.yaml")).unwrap().1;
    let p: NotificationPipeline = serde_json::from_value(doc).unwrap();
    assert_eq!(p.spec.topic.partitions, 6);
    assert_eq!(p.spec.topic.replicas, 3);
    assert_eq!(p.spec.topic.management, TopicManagement::Strimzi);
    assert_eq!(p.spec.producer.replicas, 1);
    assert_eq!(p.spec.consumer.replicas, None);
    assert_eq!(p.spec.consumer.min_replicas, 1);
    assert_eq!(p.spec.consumer.lag_threshold, 1000);
    assert_eq!(p.spec.consumer.scale_down_stabilization_seconds, 300);
    assert_eq!(p.spec.consumer.max_notifications_per_user, 100);
    assert_eq!(p.spec.consumer.standby_replicas, 0);
}

/// Every bad spec a user may write that the schema catches, with the field the API server names
/// and the words of its message (`kubectl apply` prints `spec.<field>: Invalid value: ...: <why>`;
/// the jsonschema wording checked here is the same constraint). The CEL rules have their own
/// table in `tests/cel.rs`.
#[test]
fn invalid_specs_are_rejected_by_the_schema() {
    let v = validator();
    let base = examples().into_iter().find(|(p, _)| p.ends_with("minimal.yaml")).unwrap().1;
    let cases: Vec<(&str, serde_json::Value, &str, &str)> = vec![
        ("partitions 0", j!({"topic": {"partitions": 0}}), "/spec/topic/partitions", "less than the minimum of 1"),
        (
            "partitions above 1000",
            j!({"topic": {"partitions": 1001}}),
            "/spec/topic/partitions",
            "greater than the maximum of 1000",
        ),
        ("partitions as text", j!({"topic": {"partitions": "six"}}), "/spec/topic/partitions", "not of type"),
        ("replication factor 0", j!({"topic": {"replicas": 0}}), "/spec/topic/replicas", "less than the minimum of 1"),
        ("bad topic name", j!({"topic": {"name": "no spaces allowed"}}), "/spec/topic/name", "does not match"),
        ("topic name too long", j!({"topic": {"name": "t".repeat(250)}}), "/spec/topic/name", "does not match"),
        ("unknown management", j!({"topic": {"management": "Manual"}}), "/spec/topic/management", "is not one of"),
        (
            "unknown deletion policy",
            j!({"topic": {"deletionPolicy": "Archive"}}),
            "/spec/topic/deletionPolicy",
            "is not one of",
        ),
        (
            "topic config not text",
            j!({"topic": {"config": {"retention.ms": 5}}}),
            "/spec/topic/config/retention.ms",
            "not of type",
        ),
        (
            "negative producer replicas",
            j!({"producer": {"replicas": -1}}),
            "/spec/producer/replicas",
            "less than the minimum of 0",
        ),
        (
            "two standbys",
            j!({"consumer": {"standbyReplicas": 2}}),
            "/spec/consumer/standbyReplicas",
            "greater than the maximum of 1",
        ),
        (
            "token Secret without a key",
            j!({"producer": {"authTokenSecretRef": {"name": "herald-token"}}}),
            "/spec/producer/authTokenSecretRef",
            "\"key\" is a required property",
        ),
        (
            "auth token Secret without a key",
            j!({"auth": {"tokenSecretRef": {"name": "api-token"}}}),
            "/spec/auth/tokenSecretRef",
            "\"key\" is a required property",
        ),
        (
            "empty JWT issuer",
            j!({"auth": {"jwt": {"issuer": ""}}}),
            "/spec/auth/jwt/issuer",
            "shorter than 1 character",
        ),
        (
            "network policy switch as text",
            j!({"networkPolicy": {"enabled": "yes"}}),
            "/spec/networkPolicy/enabled",
            "not of type",
        ),
        (
            "too many readers",
            j!({"networkPolicy": {"readers": vec![j!({"podSelector": {}}); 33]}}),
            "/spec/networkPolicy/readers",
            "has more than 32 items",
        ),
        (
            "users ConfigMap with an empty name",
            j!({"producer": {"usersConfigMapRef": {"name": "", "key": "users.json"}}}),
            "/spec/producer/usersConfigMapRef/name",
            "shorter than 1 character",
        ),
        (
            "negative consumer replicas",
            j!({"consumer": {"replicas": -2}}),
            "/spec/consumer/replicas",
            "less than the minimum of 0",
        ),
        (
            "minReplicas 0",
            j!({"consumer": {"minReplicas": 0}}),
            "/spec/consumer/minReplicas",
            "less than the minimum of 1",
        ),
        (
            "maxReplicas 0",
            j!({"consumer": {"maxReplicas": 0}}),
            "/spec/consumer/maxReplicas",
            "less than the minimum of 1",
        ),
        (
            "lag threshold 0",
            j!({"consumer": {"lagThreshold": 0}}),
            "/spec/consumer/lagThreshold",
            "less than the minimum of 1",
        ),
        (
            "stabilization above a day",
            j!({"consumer": {"scaleDownStabilizationSeconds": 86401}}),
            "/spec/consumer/scaleDownStabilizationSeconds",
            "greater than the maximum of 86400",
        ),
        (
            "no notifications kept per user",
            j!({"consumer": {"maxNotificationsPerUser": 0}}),
            "/spec/consumer/maxNotificationsPerUser",
            "less than the minimum of 1",
        ),
        (
            "empty bootstrap servers",
            j!({"kafka": {"bootstrapServers": ""}}),
            "/spec/kafka/bootstrapServers",
            "shorter than 1 character",
        ),
        ("missing bootstrap servers", j!({"kafka": {}}), "/spec/kafka", "\"bootstrapServers\" is a required property"),
        (
            "cluster without a name",
            j!({"kafka": {"bootstrapServers": "k:9092", "clusterRef": {}}}),
            "/spec/kafka/clusterRef",
            "\"name\" is a required property",
        ),
        (
            "Kafka property not text",
            j!({"kafka": {"bootstrapServers": "k:9092", "properties": {"linger.ms": 5}}}),
            "/spec/kafka/properties/linger.ms",
            "not of type",
        ),
    ];
    for (what, patch, path, words) in cases {
        let mut doc = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            doc["spec"][k] = v.clone();
        }
        let errors: Vec<(String, String)> =
            v.iter_errors(&doc).map(|e| (e.instance_path().to_string(), e.to_string())).collect();
        assert!(
            errors.iter().any(|(p, message)| p == path && message.contains(words)),
            "{what}: expected an error at {path} saying {words:?}, got {errors:?}"
        );
    }
}
