//! Every pod Herald runs meets the `restricted` Pod Security Standard and can read the files it
//! is told to read: the pipelines' pods the operator builds, for every example pipeline and every
//! Kafka-security combination, and the operator's own pod from the chart (as rendered into
//! `deploy/operator/`, which the packaging check keeps equal to `helm template`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_operator::build::desired::{Defaults, Images, Observed, children};
use herald_operator::build::validate::{TenancyPolicy, validate};
use herald_operator::fixtures::{example_pipelines, repo_root, security_variants};
use herald_tests::kubelet::check_files;
use herald_tests::pss::violations;
use serde::Deserialize;

/// The pod specs of every pipeline variant, labelled.
fn pipeline_pods() -> Vec<(String, serde_json::Value)> {
    let defaults = Defaults {
        images: Images { producer: "herald:1".into(), consumer: "herald:1".into() },
        metrics_namespaces: Default::default(),
    };
    let observed = Observed::new(3, "uid-1");
    let mut pods = Vec::new();
    for (label, pipeline) in example_pipelines().into_iter().chain(security_variants()) {
        let valid = validate(&pipeline, &TenancyPolicy::default()).unwrap_or_else(|e| panic!("{label}: {e}"));
        let c = children(&valid, &defaults, &observed);
        for d in [&c.producer_deployment, &c.consumer_deployment] {
            let pod = serde_json::to_value(&d.spec.as_ref().unwrap().template.spec).unwrap();
            pods.push((format!("{} of {label}", d.metadata.name.as_deref().unwrap()), pod));
        }
    }
    assert!(pods.len() >= 2 * 30, "{} pods: too few variants", pods.len());
    pods
}

#[test]
fn every_pipeline_pod_is_restricted() {
    for (label, pod) in pipeline_pods() {
        let v = violations(&pod);
        assert!(v.is_empty(), "{label}: {v:?}");
    }
}

#[test]
fn every_pipeline_pod_can_read_every_file_it_is_given() {
    let mut files = 0;
    for (label, pod) in pipeline_pods() {
        for check in check_files(&pod) {
            files += 1;
            assert!(
                check.problem.is_none(),
                "{label}: {} cannot read {}: {}",
                check.container,
                check.path,
                check.problem.unwrap()
            );
        }
    }
    // Passwords, CAs, client certificates and keys, tokens and users files were all checked.
    assert!(files >= 100, "only {files} files checked");
}

#[test]
fn the_charts_operator_pod_is_restricted() {
    let text = std::fs::read_to_string(repo_root().join("deploy/operator/herald-operator.yaml")).unwrap();
    let mut pods = 0;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc = serde_json::Value::deserialize(doc).unwrap();
        if doc["kind"] == "Deployment" {
            pods += 1;
            let v = violations(&doc["spec"]["template"]["spec"]);
            assert!(v.is_empty(), "{}: {v:?}", doc["metadata"]["name"]);
            let unreadable: Vec<_> =
                check_files(&doc["spec"]["template"]["spec"]).into_iter().filter(|c| c.problem.is_some()).collect();
            assert!(unreadable.is_empty(), "{unreadable:?}");
        }
    }
    assert_eq!(pods, 1);
}
