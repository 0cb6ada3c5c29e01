//! The `NotificationPipeline` custom resource (`herald.dev/v1alpha1`): what an app team writes to
//! get a producer, consumers scaled to the topic's partitions and the topic itself.
//!
//! Validation lives in the schema (bounds, enums, CEL rules), so the API server rejects a bad
//! spec with a message before the operator ever sees it.

pub mod labels;

mod auth;
mod consumer;
mod kafka;
mod key_ref;
mod network;
mod producer;
mod status;
mod topic;

pub use auth::{AuthSpec, JwtSpec};
pub use consumer::ConsumerSpec;
pub use kafka::{AuthenticationType, ClusterRef, KafkaAuthentication, KafkaSpec, KafkaTls};
pub use key_ref::KeyRef;
pub use network::{NetworkPeer, NetworkPolicySpec};
pub use producer::ProducerSpec;
pub use status::{
    ConsumerStatus, MAX_PARTITION_LAG_ENTRIES, NotificationPipelineStatus, PartitionLag, ProducerStatus, TopicStatus,
};
pub use topic::{DeletionPolicy, TopicManagement, TopicSpec};

use kube::core::crd::CustomResourceExt;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// API group of Herald's resources.
pub const GROUP: &str = "herald.dev";
/// API version of `NotificationPipeline`.
pub const VERSION: &str = "v1alpha1";

/// A notification pipeline: a Kafka topic, a producer that accepts `POST /send`, and a consumer
/// group whose members split the topic's partitions.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "NotificationPipeline",
    plural = "notificationpipelines",
    shortname = "npipe",
    namespaced,
    status = "NotificationPipelineStatus",
    derive = "PartialEq",
    doc = "A notification pipeline: a Kafka topic, a producer behind POST /send, and consumers scaled up to the topic's partition count.",
    scale = r#"{"specReplicasPath":".spec.consumer.replicas","statusReplicasPath":".status.consumer.replicas","labelSelectorPath":".status.consumer.selector"}"#,
    printcolumn = r#"{"name":"Topic","type":"string","jsonPath":".status.topic.name"}"#,
    printcolumn = r#"{"name":"Partitions","type":"integer","jsonPath":".status.topic.partitions"}"#,
    printcolumn = r#"{"name":"Consumers","type":"integer","jsonPath":".status.consumer.readyReplicas"}"#,
    printcolumn = r#"{"name":"Lag","type":"integer","jsonPath":".status.consumer.lag"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Auth","type":"string","jsonPath":".status.conditions[?(@.type==\"AuthConfigured\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new(
        "(has(self.spec.topic.name) ? self.spec.topic.name : self.metadata.name) == (has(oldSelf.spec.topic.name) ? oldSelf.spec.topic.name : oldSelf.metadata.name)"
    ).message("spec.topic.name is immutable: a pipeline cannot move to another topic"),
    validation = Rule::new("self.metadata.name.size() <= 45").message("metadata.name must be at most 45 characters: the pipeline's Services are named <name>-consumer-headless, which must fit a 63-character DNS label"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must consist of lowercase letters, digits and '-', start with a letter and end with a letter or digit (no dots): it names the pipeline's Services, which must be DNS-1035 labels"),
)]
#[x_kube(validation = Rule::new("!has(self.consumer.maxReplicas) || self.consumer.maxReplicas <= self.topic.partitions").message("spec.consumer.maxReplicas must not exceed spec.topic.partitions: a consumer without a partition sits idle"))]
#[x_kube(validation = Rule::new("!has(self.auth) || !has(self.auth.tokenSecretRef) || !has(self.producer) || !has(self.producer.authTokenSecretRef)").message("spec.producer.authTokenSecretRef is a deprecated alias of spec.auth.tokenSecretRef: set only spec.auth.tokenSecretRef"))]
#[serde(rename_all = "camelCase")]
pub struct NotificationPipelineSpec {
    /// How to reach the Kafka cluster.
    pub kafka: KafkaSpec,
    /// The topic that carries the notifications.
    #[serde(default)]
    pub topic: TopicSpec,
    /// The producer Deployment (`POST /send`).
    #[serde(default)]
    pub producer: ProducerSpec,
    /// The consumer Deployment (`GET /notifications/{userID}`) and how it scales.
    #[serde(default)]
    pub consumer: ConsumerSpec,
    /// Who may send and read: a service token and/or user JWTs, required by the producer and the
    /// consumers. Without it anyone who reaches a pod sends and reads for every user (the
    /// `AuthConfigured` condition says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// The NetworkPolicies the operator keeps for the pipeline's pods.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
}

/// The CRD as YAML, as `herald-operator crd` prints it and `deploy/crds/` holds it.
pub fn crd_yaml() -> String {
    let crd = NotificationPipeline::crd();
    // Serializing a CRD (plain maps, strings and numbers) cannot fail.
    serde_yaml::to_string(&crd).unwrap_or_default()
}
