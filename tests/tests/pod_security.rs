//! Every pod Herald runs meets the `restricted` Pod Security Standard: the pipelines' pods the
//! operator builds (for several specs) and the operator's own pod from the chart (as rendered
//! into `deploy/operator/`, which the packaging check keeps equal to `helm template`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_api::NotificationPipeline;
use herald_operator::desired::{Images, children};
use herald_tests::pss::violations;
use serde::Deserialize;

fn pipeline(spec: serde_json::Value) -> NotificationPipeline {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "herald.dev/v1alpha1",
        "kind": "NotificationPipeline",
        "metadata": {"name": "social", "namespace": "apps", "uid": "1234"},
        "spec": spec,
    }))
    .unwrap()
}

#[test]
fn the_operators_pipeline_pods_are_restricted() {
    let images = Images { producer: "herald:1".into(), consumer: "herald:1".into() };
    let specs = [
        serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}}),
        serde_json::json!({
            "kafka": {"bootstrapServers": "k:9092", "properties": {"security.protocol": "SSL"}},
            "producer": {"replicas": 3, "authTokenSecretRef": {"name": "token", "key": "t"},
                         "usersConfigMapRef": {"name": "users", "key": "users.json"},
                         "resources": {"limits": {"memory": "128Mi"}}},
            "consumer": {"replicas": 2, "image": "custom:2"},
            "topic": {"management": "External", "partitions": 12},
        }),
    ];
    for spec in specs {
        let c = children(&pipeline(spec.clone()), &images, 3).unwrap();
        for d in [&c.producer_deployment, &c.consumer_deployment] {
            let pod = serde_json::to_value(&d.spec.as_ref().unwrap().template.spec).unwrap();
            let v = violations(&pod);
            assert!(v.is_empty(), "{} for {spec}: {v:?}", d.metadata.name.as_deref().unwrap());
        }
    }
}

#[test]
fn the_charts_operator_pod_is_restricted() {
    let root = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..");
    let text = std::fs::read_to_string(root.join("deploy/operator/herald-operator.yaml")).unwrap();
    let mut pods = 0;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc = serde_json::Value::deserialize(doc).unwrap();
        if doc["kind"] == "Deployment" {
            pods += 1;
            let v = violations(&doc["spec"]["template"]["spec"]);
            assert!(v.is_empty(), "{}: {v:?}", doc["metadata"]["name"]);
        }
    }
    assert_eq!(pods, 1);
}
