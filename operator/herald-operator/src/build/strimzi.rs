//! The topic as a Strimzi `KafkaTopic` and the pipeline's Kafka users as `KafkaUser`s: the
//! objects (pure) and the topic's readiness.

use std::collections::BTreeMap;

use herald_api::AuthenticationType;
use herald_api::labels::{Component, MANAGED_BY, label_value};
use kube::api::{ApiResource, DynamicObject};
use kube::core::ObjectMeta;

use super::names::{PIPELINE_LABEL, PIPELINE_NAMESPACE_LABEL, PIPELINE_UID_LABEL};
use super::reason::Reason;
use super::validate::ValidPipeline;

pub const GROUP: &str = "kafka.strimzi.io";
pub const KIND: &str = "KafkaTopic";
pub const USER_KIND: &str = "KafkaUser";

/// The labels of the Strimzi objects of `pipeline`: the cluster Strimzi's operators watch for,
/// and the way back to the pipeline.
fn strimzi_labels(pipeline: &ValidPipeline, cluster: &str) -> BTreeMap<String, String> {
    [
        ("strimzi.io/cluster".to_string(), label_value(cluster)),
        ("app.kubernetes.io/managed-by".to_string(), MANAGED_BY.to_string()),
        (PIPELINE_LABEL.to_string(), label_value(&pipeline.name)),
        (PIPELINE_NAMESPACE_LABEL.to_string(), label_value(&pipeline.namespace)),
        (PIPELINE_UID_LABEL.to_string(), label_value(&pipeline.uid)),
    ]
    .into()
}

/// The KafkaTopic of `pipeline` in the cluster's namespace, or `None` without a `clusterRef`.
pub fn kafka_topic(pipeline: &ValidPipeline, ar: &ApiResource) -> Option<DynamicObject> {
    let cluster = pipeline.spec().kafka.cluster_ref.as_ref()?;
    let topic = &pipeline.spec().topic;
    let mut obj = DynamicObject::new(&pipeline.kafka_topic, ar).within(&pipeline.cluster_namespace);
    obj.metadata = ObjectMeta { labels: Some(strimzi_labels(pipeline, &cluster.name)), ..obj.metadata };
    obj.data = serde_json::json!({
        "spec": {
            "topicName": pipeline.topic,
            "partitions": topic.partitions,
            "replicas": topic.replicas,
            "config": topic.config,
        }
    });
    Some(obj)
}

/// Whether a KafkaTopic was made by Herald for the pipeline `namespace/name` (this one or a
/// predecessor of the same name: with `deletionPolicy: Retain` the topic outlives the pipeline).
/// A topic labelled for a pipeline of that name in another namespace is not; one from before the
/// namespace label was written (it has none) is.
pub fn kafka_topic_is_ours(meta: &ObjectMeta, namespace: &str, name: &str) -> bool {
    let labels = meta.labels.clone().unwrap_or_default();
    labels.get("app.kubernetes.io/managed-by").map(String::as_str) == Some(MANAGED_BY)
        && labels.get(PIPELINE_LABEL) == Some(&label_value(name))
        && labels.get(PIPELINE_NAMESPACE_LABEL).is_none_or(|ns| *ns == label_value(namespace))
}

/// Whether Strimzi reports the KafkaTopic ready at its current generation, with why not.
pub fn readiness(obj: &DynamicObject) -> (bool, Reason, String) {
    let status = &obj.data["status"];
    let generation = obj.metadata.generation.unwrap_or(0);
    let observed = status["observedGeneration"].as_i64().unwrap_or(-1);
    let ready = status["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "Ready")).cloned();
    match ready {
        _ if observed < generation => {
            (false, Reason::TopicPending, "Strimzi has not reconciled the current KafkaTopic yet".into())
        }
        Some(c) if c["status"] == "True" => (true, Reason::TopicReady, "Strimzi reports the KafkaTopic ready".into()),
        Some(c) => (
            false,
            Reason::Strimzi(c["reason"].as_str().unwrap_or("TopicNotReady").to_string()),
            c["message"].as_str().unwrap_or("Strimzi reports the KafkaTopic not ready").to_string(),
        ),
        None => (false, Reason::TopicPending, "Strimzi has not reported on the KafkaTopic yet".into()),
    }
}

/// The KafkaUsers the operator creates for `pipeline`: one per role without a named Secret, in
/// the pipeline's namespace (which [`super::validate`] requires to be the cluster's), owned by
/// the pipeline so they go with it. Least privilege, literal names only: the producer may Write
/// and Describe the topic; the consumers may Read and Describe it and Read their group. Strimzi
/// writes each user's Secret under the same name.
pub fn kafka_users(pipeline: &ValidPipeline, ar: &ApiResource) -> Vec<DynamicObject> {
    let kafka = &pipeline.spec().kafka;
    let (Some(cluster), Some(auth)) = (&kafka.cluster_ref, &kafka.authentication) else {
        return Vec::new();
    };
    let authentication = match auth.kind {
        AuthenticationType::ScramSha512 => "scram-sha-512",
        AuthenticationType::Tls => "tls",
    };
    let acl = |kind: &str, name: &str, operations: &[&str]| {
        serde_json::json!({
            "resource": {"type": kind, "name": name, "patternType": "literal"},
            "operations": operations,
            "host": "*",
        })
    };
    pipeline
        .managed_users()
        .iter()
        .filter_map(|&role| {
            let name = pipeline.user(role)?;
            let acls = match role {
                Component::Producer => vec![acl("topic", &pipeline.topic, &["Write", "Describe"])],
                Component::Consumer => {
                    vec![acl("topic", &pipeline.topic, &["Read", "Describe"]), acl("group", &pipeline.group, &["Read"])]
                }
            };
            let mut obj = DynamicObject::new(name, ar).within(&pipeline.namespace);
            obj.metadata = ObjectMeta {
                labels: Some(strimzi_labels(pipeline, &cluster.name)),
                owner_references: Some(vec![pipeline.owner.clone()]),
                ..obj.metadata
            };
            obj.data = serde_json::json!({
                "spec": {
                    "authentication": {"type": authentication},
                    "authorization": {"type": "simple", "acls": acls},
                }
            });
            Some(obj)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::validate::{TenancyPolicy, validate};
    use herald_api::NotificationPipeline;

    #[test]
    fn kafka_users_get_least_privilege_acls() {
        let p: NotificationPipeline = serde_json::from_value(serde_json::json!({
            "apiVersion": "herald.dev/v1alpha1",
            "kind": "NotificationPipeline",
            "metadata": {"name": "social", "namespace": "apps", "uid": "u-1"},
            "spec": {"kafka": {"bootstrapServers": "k:9092", "clusterRef": {"name": "events"},
                "authentication": {"type": "scram-sha-512", "consumerSecretName": "readers"}},
                "topic": {"name": "notes"}, "consumer": {"groupId": "note-readers"}},
        }))
        .unwrap();
        let ar = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(GROUP, "v1beta2", USER_KIND));
        let users = kafka_users(&validate(&p, &TenancyPolicy::default()).unwrap(), &ar);
        // The consumers bring their own Secret: only the producer's user is created.
        assert_eq!(users.len(), 1);
        let u = &users[0];
        assert_eq!(u.metadata.name.as_deref(), Some("social-producer"));
        assert_eq!(u.metadata.namespace.as_deref(), Some("apps"));
        assert_eq!(u.metadata.labels.as_ref().unwrap()["strimzi.io/cluster"], "events");
        assert_eq!(u.metadata.owner_references.as_ref().unwrap()[0].uid, "u-1");
        assert_eq!(u.data["spec"]["authentication"]["type"], "scram-sha-512");
        assert_eq!(
            u.data["spec"]["authorization"]["acls"],
            serde_json::json!([{"resource": {"type": "topic", "name": "notes", "patternType": "literal"},
                "operations": ["Write", "Describe"], "host": "*"}])
        );

        let mut both = p.clone();
        if let Some(auth) = both.spec.kafka.authentication.as_mut() {
            auth.consumer_secret_name = None;
            auth.kind = AuthenticationType::Tls;
        }
        let users = kafka_users(&validate(&both, &TenancyPolicy::default()).unwrap(), &ar);
        let consumer = users.iter().find(|u| u.metadata.name.as_deref() == Some("social-consumer")).unwrap();
        assert_eq!(consumer.data["spec"]["authentication"]["type"], "tls");
        assert_eq!(
            consumer.data["spec"]["authorization"]["acls"],
            serde_json::json!([
                {"resource": {"type": "topic", "name": "notes", "patternType": "literal"},
                    "operations": ["Read", "Describe"], "host": "*"},
                {"resource": {"type": "group", "name": "note-readers", "patternType": "literal"},
                    "operations": ["Read"], "host": "*"},
            ])
        );
    }
}
