//! The names a pipeline gives to what it becomes: its Kafka topic and group, its KafkaTopic and
//! KafkaUsers, the cluster namespace. One place, so the builders and the steps that apply them
//! agree.

use herald_api::NotificationPipeline;
use herald_api::labels::{self, Component};

/// The finalizer that lets the operator delete a KafkaTopic living outside the pipeline's
/// namespace (`deletionPolicy: Delete`; owner references cannot reach across namespaces).
pub const FINALIZER: &str = "herald.dev/topic";

/// Label on a KafkaTopic naming the pipeline that made it.
pub const PIPELINE_LABEL: &str = "herald.dev/pipeline";
/// Label on a KafkaTopic naming the pipeline's namespace (the topic lives in the cluster's).
pub const PIPELINE_NAMESPACE_LABEL: &str = "herald.dev/pipeline-namespace";
/// Label on a KafkaTopic with the uid of the pipeline that last applied it.
pub const PIPELINE_UID_LABEL: &str = "herald.dev/pipeline-uid";

fn name(pipeline: &NotificationPipeline) -> &str {
    pipeline.metadata.name.as_deref().unwrap_or_default()
}

/// The Kafka topic: `spec.topic.name`, else the pipeline's name.
pub fn topic_name(pipeline: &NotificationPipeline) -> String {
    pipeline.spec.topic.name.clone().unwrap_or_else(|| name(pipeline).to_string())
}

/// The consumer group: `spec.consumer.groupId`, else `<name>-consumers`.
pub fn group_id(pipeline: &NotificationPipeline) -> String {
    pipeline.spec.consumer.group_id.clone().unwrap_or_else(|| format!("{}-consumers", name(pipeline)))
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
    format!("{}.{}", pipeline.metadata.namespace.as_deref().unwrap_or_default(), name(pipeline))
}

/// The Kafka user (and Secret) of `role`: the Secret named in the spec, else the KafkaUser the
/// operator creates, `<pipeline>-<role>`. `None` without `spec.kafka.authentication`.
pub fn user_name(pipeline: &NotificationPipeline, role: Component) -> Option<String> {
    let auth = pipeline.spec.kafka.authentication.as_ref()?;
    let named = match role {
        Component::Producer => auth.producer_secret_name.clone(),
        Component::Consumer => auth.consumer_secret_name.clone(),
    };
    Some(named.unwrap_or_else(|| labels::child_name(name(pipeline), role)))
}

/// The roles whose KafkaUser the operator creates (those without a named Secret).
pub fn managed_users(pipeline: &NotificationPipeline) -> Vec<Component> {
    let Some(auth) = &pipeline.spec.kafka.authentication else {
        return Vec::new();
    };
    let mut roles = Vec::new();
    if auth.producer_secret_name.is_none() {
        roles.push(Component::Producer);
    }
    if auth.consumer_secret_name.is_none() {
        roles.push(Component::Consumer);
    }
    roles
}

/// The Secret holding the token a pipeline's consumers prove to each other that they are peers
/// with: `<pipeline>-peer-token`.
pub fn peer_token_secret(pipeline: &str) -> String {
    format!("{pipeline}-peer-token")
}

/// The key of a pipeline in the operator's own tables: `namespace/name`.
pub fn key(pipeline: &NotificationPipeline) -> String {
    format!("{}/{}", pipeline.metadata.namespace.as_deref().unwrap_or_default(), name(pipeline))
}
