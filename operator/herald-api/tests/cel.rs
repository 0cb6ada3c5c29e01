//! The CRD's CEL rules, evaluated offline the way the API server evaluates them: every rule is
//! read from the generated schema and run at its place in the object, with `self` (and, on
//! updates, `oldSelf`) bound as the API server binds them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_api::{NotificationPipeline, NotificationPipelineSpec};
use kube::core::crd::CustomResourceExt;

struct Rule {
    path: Vec<String>,
    rule: String,
    message: String,
}

/// Every `x-kubernetes-validations` rule of the schema, with the object path it applies to.
fn rules() -> Vec<Rule> {
    fn walk(path: &[String], schema: &serde_json::Value, out: &mut Vec<Rule>) {
        if let Some(list) = schema.get("x-kubernetes-validations").and_then(|v| v.as_array()) {
            for r in list {
                out.push(Rule {
                    path: path.to_vec(),
                    rule: r["rule"].as_str().unwrap().to_string(),
                    message: r["message"].as_str().unwrap_or_default().to_string(),
                });
            }
        }
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, prop) in props {
                let mut here = path.to_vec();
                here.push(name.clone());
                walk(&here, prop, out);
            }
        }
    }
    let crd = serde_json::to_value(NotificationPipeline::crd()).unwrap();
    let mut out = Vec::new();
    walk(&[], &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], &mut out);
    out
}

fn at<'a>(doc: &'a serde_json::Value, path: &[String]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(doc, |v, k| v.get(k))
}

/// The messages of the rules `new` breaks (given `old` on an update).
fn violations(old: Option<&NotificationPipeline>, new: &NotificationPipeline) -> Vec<String> {
    let new_doc = serde_json::to_value(new).unwrap();
    let old_doc = old.map(|o| serde_json::to_value(o).unwrap());
    let mut broken = Vec::new();
    for r in rules() {
        let Some(this) = at(&new_doc, &r.path) else { continue };
        let transition = r.rule.contains("oldSelf");
        let mut ctx = cel::Context::default();
        ctx.add_variable("self", this.clone()).unwrap();
        if transition {
            // Transition rules only run on updates, when the old value exists.
            let Some(prev) = old_doc.as_ref().and_then(|d| at(d, &r.path)) else { continue };
            ctx.add_variable("oldSelf", prev.clone()).unwrap();
        }
        let program =
            cel::Program::compile(&r.rule).unwrap_or_else(|e| panic!("rule {:?} does not parse: {e:?}", r.rule));
        match program.execute(&ctx) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => broken.push(r.message.clone()),
            other => panic!("rule {:?} at {:?} did not evaluate to a bool: {other:?}", r.rule, r.path),
        }
    }
    broken
}

fn mk(name: &str, f: impl FnOnce(&mut NotificationPipelineSpec)) -> NotificationPipeline {
    let mut spec: NotificationPipelineSpec = serde_json::from_value(serde_json::json!({
        "kafka": {"bootstrapServers": "kafka:9092"}
    }))
    .unwrap();
    f(&mut spec);
    NotificationPipeline::new(name, spec)
}

fn assert_rejected(old: Option<&NotificationPipeline>, new: &NotificationPipeline, message: &str) {
    let v = violations(old, new);
    assert!(v.iter().any(|m| m.contains(message)), "expected {message:?}, got {v:?}");
}

fn assert_accepted(old: Option<&NotificationPipeline>, new: &NotificationPipeline) {
    let v = violations(old, new);
    assert!(v.is_empty(), "unexpected violations {v:?}");
}

#[test]
fn every_rule_is_found() {
    assert_eq!(
        rules().len(),
        14,
        "root three, spec two, spec.topic and spec.consumer one each, spec.kafka three, spec.auth, spec.auth.jwt one \
         each, spec.networkPolicy two"
    );
}

#[test]
fn pipeline_names_must_make_valid_service_names() {
    assert_accepted(None, &mk("social", |_| {}));
    assert_accepted(None, &mk(&format!("a{}", "b".repeat(43) + "9"), |_| {}));
    let too_long = "a".repeat(46);
    assert_rejected(None, &mk(&too_long, |_| {}), "metadata.name must be at most 45 characters");
    for bad in ["social.v2", "1social", "Social", "social-", "so_cial"] {
        assert_rejected(None, &mk(bad, |_| {}), "must consist of lowercase letters, digits and '-'");
    }
}

#[test]
fn partitions_may_grow_but_never_shrink() {
    let six = mk("social", |_| {});
    let twelve = mk("social", |s| s.topic.partitions = 12);
    assert_accepted(None, &six);
    assert_accepted(Some(&six), &twelve);
    assert_accepted(Some(&twelve), &twelve);
    assert_rejected(Some(&twelve), &six, "may grow but never shrink");
}

#[test]
fn the_topic_name_is_immutable() {
    let defaulted = mk("social", |_| {});
    let same_explicit = mk("social", |s| s.topic.name = Some("social".into()));
    let other = mk("social", |s| s.topic.name = Some("other".into()));
    assert_accepted(None, &other);
    assert_accepted(Some(&defaulted), &same_explicit);
    assert_accepted(Some(&same_explicit), &defaulted);
    assert_rejected(Some(&defaulted), &other, "spec.topic.name is immutable");
    assert_rejected(Some(&other), &defaulted, "spec.topic.name is immutable");
}

#[test]
fn min_replicas_may_not_exceed_max_replicas() {
    assert_rejected(
        None,
        &mk("p", |s| {
            s.consumer.min_replicas = 3;
            s.consumer.max_replicas = Some(2);
        }),
        "minReplicas must not exceed",
    );
    assert_accepted(None, &mk("p", |s| s.consumer.min_replicas = 3));
    assert_accepted(
        None,
        &mk("p", |s| {
            s.consumer.min_replicas = 2;
            s.consumer.max_replicas = Some(2);
        }),
    );
}

#[test]
fn max_replicas_may_not_exceed_partitions_but_fixed_replicas_may() {
    assert_rejected(
        None,
        &mk("p", |s| s.consumer.max_replicas = Some(7)),
        "maxReplicas must not exceed spec.topic.partitions",
    );
    assert_accepted(None, &mk("p", |s| s.consumer.max_replicas = Some(6)));
    // A fixed count above the partitions is accepted (autoscalers writing the scale
    // subresource must never fail) and capped by the operator.
    assert_accepted(None, &mk("p", |s| s.consumer.replicas = Some(10)));
}

/// The Kafka security rules: each bad combination with the message a user sees, and the
/// combinations that must pass.
#[test]
fn kafka_security_needs_what_it_uses() {
    let spec = |kafka: serde_json::Value| mk("p", |s| s.kafka = serde_json::from_value(kafka).unwrap());
    let cluster = serde_json::json!({"name": "events"});
    let rejected = [
        (
            serde_json::json!({"bootstrapServers": "k:9093", "clusterRef": cluster, "authentication": {"type": "tls"}}),
            "authentication type tls needs spec.kafka.tls",
        ),
        (
            serde_json::json!({"bootstrapServers": "k:9093", "tls": {}}),
            "spec.kafka.tls needs caSecretRef, or clusterRef",
        ),
        (
            serde_json::json!({"bootstrapServers": "k:9092", "authentication": {"type": "scram-sha-512"}}),
            "spec.kafka.authentication needs clusterRef",
        ),
        (
            serde_json::json!({"bootstrapServers": "k:9092", "authentication": {"type": "scram-sha-512", "producerSecretName": "p"}}),
            "both producerSecretName and consumerSecretName",
        ),
    ];
    for (kafka, message) in rejected {
        assert_rejected(None, &spec(kafka), message);
    }
    let accepted = [
        serde_json::json!({"bootstrapServers": "k:9093", "clusterRef": cluster, "tls": {}, "authentication": {"type": "tls"}}),
        serde_json::json!({"bootstrapServers": "k:9092", "clusterRef": cluster, "authentication": {"type": "scram-sha-512"}}),
        serde_json::json!({"bootstrapServers": "k:9093", "tls": {"caSecretRef": {"name": "ca", "key": "ca.crt"}},
            "authentication": {"type": "scram-sha-512", "producerSecretName": "p", "consumerSecretName": "c"}}),
        serde_json::json!({"bootstrapServers": "k:9092"}),
    ];
    for kafka in accepted {
        assert_accepted(None, &spec(kafka));
    }
}

#[test]
fn auth_needs_something_to_check_and_one_jwt_key() {
    let spec = |auth: serde_json::Value| mk("p", |s| s.auth = Some(serde_json::from_value(auth).unwrap()));
    let key = serde_json::json!({"name": "k", "key": "v"});
    assert_rejected(None, &spec(serde_json::json!({})), "spec.auth needs tokenSecretRef, jwt or both");
    assert_rejected(None, &spec(serde_json::json!({"jwt": {}})), "spec.auth.jwt needs exactly one of secretRef");
    assert_rejected(
        None,
        &spec(serde_json::json!({"jwt": {"secretRef": key, "publicKeySecretRef": key}})),
        "spec.auth.jwt needs exactly one of secretRef",
    );
    for accepted in [
        serde_json::json!({"tokenSecretRef": key}),
        serde_json::json!({"jwt": {"secretRef": key, "issuer": "i", "audience": "a"}}),
        serde_json::json!({"tokenSecretRef": key, "jwt": {"publicKeySecretRef": key}}),
    ] {
        assert_accepted(None, &spec(accepted));
    }
}

#[test]
fn the_deprecated_producer_token_and_spec_auth_token_are_not_both_set() {
    let key = || serde_json::from_value(serde_json::json!({"name": "k", "key": "v"})).unwrap();
    let alias = mk("p", |s| s.producer.auth_token_secret_ref = Some(key()));
    assert_accepted(None, &alias);
    let both = mk("p", |s| {
        s.producer.auth_token_secret_ref = Some(key());
        s.auth = Some(herald_api::AuthSpec { token_secret_ref: Some(key()), jwt: None });
    });
    assert_rejected(None, &both, "deprecated alias of spec.auth.tokenSecretRef");
    let alias_and_jwt = mk("p", |s| {
        s.producer.auth_token_secret_ref = Some(key());
        s.auth =
            Some(serde_json::from_value(serde_json::json!({"jwt": {"secretRef": {"name": "j", "key": "s"}}})).unwrap());
    });
    assert_accepted(None, &alias_and_jwt);
}

#[test]
fn network_policy_peers_select_something() {
    let spec = |policy: serde_json::Value| mk("p", |s| s.network_policy = serde_json::from_value(policy).unwrap());
    assert_accepted(None, &spec(serde_json::json!({"enabled": false})));
    assert_accepted(
        None,
        &spec(serde_json::json!({"readers": [{"namespaceSelector": {}}, {"podSelector": {"matchLabels": {"a": "b"}}}],
            "senders": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}, "podSelector": {}}]})),
    );
    assert_rejected(None, &spec(serde_json::json!({"readers": [{}]})), "spec.networkPolicy.readers: each peer needs");
    assert_rejected(
        None,
        &spec(serde_json::json!({"senders": [{"podSelector": {}}, {}]})),
        "spec.networkPolicy.senders: each peer needs",
    );
}
