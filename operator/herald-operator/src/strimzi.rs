//! The topic as a Strimzi `KafkaTopic` and the pipeline's Kafka users as `KafkaUser`s: which
//! API version the cluster serves, the objects (pure) and the topic's readiness.

use herald_api::labels::{Component, MANAGED_BY, label_value};
use herald_api::{AuthenticationType, NotificationPipeline};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ApiResource, DynamicObject};
use kube::core::ObjectMeta;

use crate::credentials::{managed_users, user_name};
use crate::desired::{group_id, topic_name};

pub const GROUP: &str = "kafka.strimzi.io";
pub const KIND: &str = "KafkaTopic";
pub const USER_KIND: &str = "KafkaUser";
/// Label linking a pipeline's KafkaTopic back to it (it lives in another namespace, so no owner
/// reference can).
pub const PIPELINE_LABEL: &str = "herald.dev/pipeline";

/// The KafkaTopic API the cluster serves, `v1` when present, else `v1beta2`; `None` when
/// Strimzi is not installed.
pub async fn kafka_topic_api(client: &kube::Client) -> Result<Option<ApiResource>, kube::Error> {
    strimzi_api(client, KIND).await
}

/// The KafkaUser API the cluster serves, as [`kafka_topic_api`].
pub async fn kafka_user_api(client: &kube::Client) -> Result<Option<ApiResource>, kube::Error> {
    strimzi_api(client, USER_KIND).await
}

async fn strimzi_api(client: &kube::Client, kind: &str) -> Result<Option<ApiResource>, kube::Error> {
    let group = match kube::discovery::group(client, GROUP).await {
        Ok(group) => group,
        Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(None),
        Err(kube::Error::Discovery(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    for version in ["v1", "v1beta2"] {
        if let Some((ar, _)) = group.versioned_resources(version).into_iter().find(|(ar, _)| ar.kind == kind) {
            return Ok(Some(ar));
        }
    }
    Ok(None)
}

/// The namespace of the Strimzi cluster: `clusterRef.namespace`, else the pipeline's.
pub fn cluster_namespace(pipeline: &NotificationPipeline) -> String {
    pipeline
        .spec
        .kafka
        .cluster_ref
        .as_ref()
        .and_then(|c| c.namespace.clone())
        .or_else(|| pipeline.metadata.namespace.clone())
        .unwrap_or_default()
}

/// `<pipeline namespace>.<pipeline name>`: unique across namespaces (namespaces have no dots).
pub fn kafka_topic_name(pipeline: &NotificationPipeline) -> String {
    format!(
        "{}.{}",
        pipeline.metadata.namespace.as_deref().unwrap_or_default(),
        pipeline.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The labels of the Strimzi objects of `pipeline`: the cluster Strimzi's operators watch for,
/// and the way back to the pipeline.
fn strimzi_labels(pipeline: &NotificationPipeline, cluster: &str) -> std::collections::BTreeMap<String, String> {
    [
        ("strimzi.io/cluster".to_string(), label_value(cluster)),
        ("app.kubernetes.io/managed-by".to_string(), MANAGED_BY.to_string()),
        (PIPELINE_LABEL.to_string(), label_value(pipeline.metadata.name.as_deref().unwrap_or_default())),
    ]
    .into()
}

/// The KafkaTopic of `pipeline`, or `None` without a `clusterRef`.
pub fn kafka_topic(pipeline: &NotificationPipeline, ar: &ApiResource) -> Option<DynamicObject> {
    let cluster = pipeline.spec.kafka.cluster_ref.as_ref()?;
    let topic = &pipeline.spec.topic;
    let mut obj = DynamicObject::new(&kafka_topic_name(pipeline), ar).within(&cluster_namespace(pipeline));
    obj.metadata = ObjectMeta { labels: Some(strimzi_labels(pipeline, &cluster.name)), ..obj.metadata };
    obj.data = serde_json::json!({
        "spec": {
            "topicName": topic_name(pipeline),
            "partitions": topic.partitions,
            "replicas": topic.replicas,
            "config": topic.config,
        }
    });
    Some(obj)
}

/// Whether Strimzi reports the KafkaTopic ready at its current generation, with why not.
pub fn readiness(obj: &DynamicObject) -> (bool, String, String) {
    let status = &obj.data["status"];
    let generation = obj.metadata.generation.unwrap_or(0);
    let observed = status["observedGeneration"].as_i64().unwrap_or(-1);
    let ready = status["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "Ready")).cloned();
    match ready {
        _ if observed < generation => {
            (false, "TopicPending".into(), "Strimzi has not reconciled the current KafkaTopic yet".into())
        }
        Some(c) if c["status"] == "True" => (true, "TopicReady".into(), "Strimzi reports the KafkaTopic ready".into()),
        Some(c) => (
            false,
            c["reason"].as_str().unwrap_or("TopicNotReady").to_string(),
            c["message"].as_str().unwrap_or("Strimzi reports the KafkaTopic not ready").to_string(),
        ),
        None => (false, "TopicPending".into(), "Strimzi has not reported on the KafkaTopic yet".into()),
    }
}

/// The KafkaUsers the operator creates for `pipeline`: one per role without a named Secret, in
/// the pipeline's namespace (which [`crate::credentials::validate`] requires to be the cluster's),
/// owned by the pipeline so they go with it. Least privilege: the producer may Write and Describe
/// the topic; the consumers may Read and Describe it and Read their group. Strimzi writes each
/// user's Secret under the same name.
pub fn kafka_users(pipeline: &NotificationPipeline, ar: &ApiResource, owner: &OwnerReference) -> Vec<DynamicObject> {
    let (Some(cluster), Some(auth)) = (&pipeline.spec.kafka.cluster_ref, &pipeline.spec.kafka.authentication) else {
        return Vec::new();
    };
    let authentication = match auth.kind {
        AuthenticationType::ScramSha512 => "scram-sha-512",
        AuthenticationType::Tls => "tls",
    };
    let topic = topic_name(pipeline);
    let acl = |kind: &str, name: &str, operations: &[&str]| {
        serde_json::json!({
            "resource": {"type": kind, "name": name, "patternType": "literal"},
            "operations": operations,
            "host": "*",
        })
    };
    managed_users(pipeline)
        .into_iter()
        .filter_map(|role| {
            let name = user_name(pipeline, role)?;
            let acls = match role {
                Component::Producer => vec![acl("topic", &topic, &["Write", "Describe"])],
                Component::Consumer => {
                    vec![acl("topic", &topic, &["Read", "Describe"]), acl("group", &group_id(pipeline), &["Read"])]
                }
            };
            let mut obj = DynamicObject::new(&name, ar).within(pipeline.metadata.namespace.as_deref()?);
            obj.metadata = ObjectMeta {
                labels: Some(strimzi_labels(pipeline, &cluster.name)),
                owner_references: Some(vec![owner.clone()]),
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
    use kube::Resource;

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
        let owner = p.controller_owner_ref(&()).unwrap();
        let users = kafka_users(&p, &ar, &owner);
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
        let users = kafka_users(&both, &ar, &owner);
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
