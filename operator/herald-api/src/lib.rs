//! The `NotificationPipeline` custom resource (`herald.dev/v1alpha1`): what an app team writes to
//! get a producer, consumers scaled to the topic's partitions and the topic itself.
//!
//! Validation lives in the schema (bounds, enums, CEL rules), so the API server rejects a bad
//! spec with a message before the operator ever sees it.

pub mod labels;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::core::crd::CustomResourceExt;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
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

/// Who may call the producer and the consumers. Every API request then needs
/// `Authorization: Bearer <token>`; `/healthz`, `/readyz` and `/metrics` (on its own port) stay
/// open.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("has(self.tokenSecretRef) || has(self.jwt)").message("spec.auth needs tokenSecretRef, jwt or both"))]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret key holding a static service token: it sends as any user and reads any user's
    /// notifications (for trusted backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<KeyRef>,
    /// User tokens: a JWT's `sub` is the user id; it reads only that user's notifications and
    /// sends only as that user, unless its `scope` holds `notifications:read:any` or
    /// `notifications:send:any`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,
}

/// How user JWTs are verified: `exp` is required, `nbf` honoured, with 30 s of leeway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("has(self.secretRef) != has(self.publicKeySecretRef)").message("spec.auth.jwt needs exactly one of secretRef (HS256/HS384/HS512) and publicKeySecretRef (RS256, ES256 or EdDSA)"))]
#[serde(rename_all = "camelCase")]
pub struct JwtSpec {
    /// Secret key holding the shared secret of HS256/HS384/HS512 tokens (at least 32 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<KeyRef>,
    /// Secret key holding the PEM public key of RS256, ES256 (P-256) or EdDSA (Ed25519) tokens;
    /// the algorithm follows the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_secret_ref: Option<KeyRef>,
    /// The `iss` every token must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub issuer: Option<String>,
    /// An `aud` every token must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub audience: Option<String>,
}

/// The pipeline's NetworkPolicies (ingress only; egress, to Kafka among others, is not
/// restricted). The consumers' API port is reachable from the pipeline's namespace (the other
/// consumers forward reads) and `readers`; the producers' from the namespace and `senders`; the
/// metrics ports from the namespaces the operator's `--metrics-namespace-selector` picks.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.readers) || self.readers.all(p, has(p.namespaceSelector) || has(p.podSelector))").message("spec.networkPolicy.readers: each peer needs namespaceSelector, podSelector or both"))]
#[x_kube(validation = Rule::new("!has(self.senders) || self.senders.all(p, has(p.namespaceSelector) || has(p.podSelector))").message("spec.networkPolicy.senders: each peer needs namespaceSelector, podSelector or both"))]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Keep a NetworkPolicy for the producers and one for the consumers (default `true`); with
    /// `false` the operator deletes the ones it made.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Who else may read notifications (the consumers' API port), e.g. an API gateway's
    /// namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub readers: Vec<NetworkPeer>,
    /// Who else may send (the producers' API port), e.g. an ingress controller's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub senders: Vec<NetworkPeer>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self { enabled: enabled(), readers: Vec::new(), senders: Vec::new() }
    }
}

fn enabled() -> bool {
    true
}

/// Pods allowed in, as in a NetworkPolicy: `podSelector` alone picks pods of the pipeline's
/// namespace, `namespaceSelector` alone every pod of those namespaces, both the matching pods of
/// those namespaces.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPeer {
    /// Namespaces by label (`{}`: every namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Pods by label (`{}`: every pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

/// How to reach the Kafka cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.authentication) || self.authentication.type != 'tls' || has(self.tls)").message("spec.kafka.authentication type tls needs spec.kafka.tls: client certificates are presented over TLS"))]
#[x_kube(validation = Rule::new("!has(self.tls) || has(self.tls.caSecretRef) || has(self.clusterRef)").message("spec.kafka.tls needs caSecretRef, or clusterRef to trust the Strimzi cluster CA"))]
#[x_kube(validation = Rule::new("!has(self.authentication) || has(self.clusterRef) || (has(self.authentication.producerSecretName) && has(self.authentication.consumerSecretName))").message("spec.kafka.authentication needs clusterRef (a Strimzi KafkaUser per role is created) or both producerSecretName and consumerSecretName"))]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Bootstrap servers, comma-separated `host:port` (e.g. `my-cluster-kafka-bootstrap.kafka:9092`,
    /// port 9093 for Strimzi's TLS listener).
    #[schemars(length(min = 1))]
    pub bootstrap_servers: String,
    /// The Strimzi `Kafka` cluster: it holds the topic when `topic.management` is `Strimzi`, the
    /// pipeline's KafkaUsers when `authentication` names no Secrets, and the cluster CA `tls` trusts
    /// by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ref: Option<ClusterRef>,
    /// Connect to the brokers with TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<KafkaTls>,
    /// How the producer and the consumers authenticate to Kafka, each as its own user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<KafkaAuthentication>,
    /// Extra librdkafka properties for every client of this pipeline (timeouts, batching). The
    /// security properties come from `tls` and `authentication`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// TLS to the brokers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTls {
    /// The CA certificate (PEM) that signed the brokers' certificates, in a Secret of the
    /// pipeline's namespace. Defaults to Strimzi's `<clusterRef.name>-cluster-ca-cert`, key `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<KeyRef>,
}

/// Kafka client authentication.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaAuthentication {
    /// `scram-sha-512` (a password) or `tls` (a client certificate; needs `spec.kafka.tls`).
    #[serde(rename = "type")]
    pub kind: AuthenticationType,
    /// The producer's credentials: a Secret in Strimzi's KafkaUser layout (`password` for
    /// scram-sha-512; `user.crt` and `user.key` for tls), whose name is the Kafka user name.
    /// Without it, the operator creates the KafkaUser `<pipeline>-producer` (Write and Describe
    /// on the topic) and Strimzi writes its Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub producer_secret_name: Option<String>,
    /// The consumers' credentials, as `producerSecretName`. Without it, the operator creates the
    /// KafkaUser `<pipeline>-consumer` (Read and Describe on the topic, Read on the group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub consumer_secret_name: Option<String>,
}

/// The Kafka authentication mechanism.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AuthenticationType {
    /// SASL SCRAM-SHA-512 with a password.
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    /// Mutual TLS with a client certificate.
    #[serde(rename = "tls")]
    Tls,
}

/// A Strimzi `Kafka` cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// Name of the `Kafka` resource.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Namespace of the `Kafka` resource; defaults to the pipeline's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The topic that carries the notifications.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.partitions >= oldSelf.partitions").message("spec.topic.partitions may grow but never shrink: Kafka cannot remove partitions"))]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// Kafka topic name; defaults to the pipeline's name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 249), regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"))]
    pub name: Option<String>,
    /// Number of partitions (1 to 1000). May grow, never shrink. Consumers scale up to this count.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 1000))]
    pub partitions: i32,
    /// Replication factor (1 to 32767).
    #[serde(default = "default_topic_replicas")]
    #[schemars(range(min = 1, max = 32767))]
    pub replicas: i32,
    /// Topic configuration, e.g. `retention.ms: "604800000"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Who creates the topic: `Strimzi` (a KafkaTopic), `Admin` (the operator, with the Kafka
    /// Admin API) or `External` (it must already exist).
    #[serde(default)]
    pub management: TopicManagement,
    /// What happens to the topic when the pipeline is deleted: `Retain` or `Delete`.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// With `management: Admin`, use a topic that already exists in Kafka although the operator
    /// did not create it for this pipeline (by default such a pipeline is refused with
    /// `NameConflict`, so that one team cannot take over another's topic by naming it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt_existing: bool,
}

impl Default for TopicSpec {
    fn default() -> Self {
        Self {
            name: None,
            partitions: default_partitions(),
            replicas: default_topic_replicas(),
            config: BTreeMap::new(),
            management: TopicManagement::default(),
            deletion_policy: DeletionPolicy::default(),
            adopt_existing: false,
        }
    }
}

fn default_partitions() -> i32 {
    6
}

fn default_topic_replicas() -> i32 {
    3
}

/// Who creates and owns the topic.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TopicManagement {
    /// A Strimzi `KafkaTopic` in the cluster's namespace.
    #[default]
    Strimzi,
    /// The operator creates the topic with the Kafka Admin API.
    Admin,
    /// The topic must already exist; the operator only checks it.
    External,
}

/// What happens to the topic when the pipeline is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the topic and its records.
    #[default]
    Retain,
    /// Delete the topic with the pipeline.
    Delete,
}

/// A key in a Secret or ConfigMap of the pipeline's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct KeyRef {
    /// Name of the Secret or ConfigMap.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within it.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// The producer Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProducerSpec {
    /// Container image; the operator's `--producer-image` when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Number of producer pods.
    #[serde(default = "default_producer_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// CPU and memory requests and limits of the producer container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Deprecated alias of `spec.auth.tokenSecretRef` (it now protects the consumers too); set
    /// one of the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_secret_ref: Option<KeyRef>,
    /// ConfigMap key holding the user directory (`[{"id":1,"name":"Emma"}, ...]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_config_map_ref: Option<KeyRef>,
}

impl Default for ProducerSpec {
    fn default() -> Self {
        Self {
            image: None,
            replicas: default_producer_replicas(),
            resources: None,
            auth_token_secret_ref: None,
            users_config_map_ref: None,
        }
    }
}

fn default_producer_replicas() -> i32 {
    1
}

/// The consumer Deployment and how it scales.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.maxReplicas) || self.minReplicas <= self.maxReplicas").message("spec.consumer.minReplicas must not exceed spec.consumer.maxReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct ConsumerSpec {
    /// Container image; the operator's `--consumer-image` when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Consumer group id; defaults to `<pipeline name>-consumers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub group_id: Option<String>,
    /// A fixed number of consumers (capped at the partition count). When not set, consumers
    /// scale between minReplicas and maxReplicas with the lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Fewest consumers when scaling with the lag.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Most consumers when scaling with the lag; defaults to the partition count and may not exceed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_replicas: Option<i32>,
    /// Records of lag one consumer is expected to absorb.
    #[serde(default = "default_lag_threshold")]
    #[schemars(range(min = 1))]
    pub lag_threshold: i64,
    /// How long the desired count must stay lower before consumers are removed.
    #[serde(default = "default_stabilization")]
    #[schemars(range(min = 0, max = 86400))]
    pub scale_down_stabilization_seconds: i32,
    /// Notifications each consumer keeps per user (the newest).
    #[serde(default = "default_max_per_user")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_notifications_per_user: i32,
    /// Keep and show only notifications sent within this window (`30m`, `12h`, `7d`): a consumer
    /// restores from the window's first record instead of the start of the retained log, and
    /// reads leave older notifications out. Not set: everything the topic retains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[1-9][0-9]{0,4}(s|m|h|d)$"))]
    pub history: Option<String>,
    /// CPU and memory requests and limits of the consumer container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Standbys per partition: with 1, every partition is also kept current by one other
    /// consumer, which answers its reads while its owner is gone (a crash) and takes it over
    /// without a restore. Roughly doubles each consumer's memory; at least 2 consumers run.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1))]
    pub standby_replicas: i32,
}

impl Default for ConsumerSpec {
    fn default() -> Self {
        Self {
            image: None,
            group_id: None,
            replicas: None,
            min_replicas: default_min_replicas(),
            max_replicas: None,
            lag_threshold: default_lag_threshold(),
            scale_down_stabilization_seconds: default_stabilization(),
            max_notifications_per_user: default_max_per_user(),
            history: None,
            resources: None,
            standby_replicas: 0,
        }
    }
}

fn default_min_replicas() -> i32 {
    1
}

fn default_lag_threshold() -> i64 {
    1000
}

fn default_stabilization() -> i32 {
    300
}

fn default_max_per_user() -> i32 {
    100
}

/// What the operator observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPipelineStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `TopicReady`, `ProducerAvailable`, `ConsumersAvailable`, `ReplicasCapped`,
    /// `ScalingActive`, `PartitionsSaturated` and `AuthConfigured`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The topic as Kafka reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<TopicStatus>,
    /// The producer Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<ProducerStatus>,
    /// The consumer Deployment and its scaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<ConsumerStatus>,
}

/// The topic as Kafka reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    /// Kafka topic name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// The operator created this topic for this pipeline (`management: Admin`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
    /// Every partition count the topic has had, oldest first (e.g. `[3, 6]`). A topic that grew
    /// maps some users to new partitions while their older notifications stay where they were;
    /// the consumers read both (`HERALD_PARTITION_HISTORY`). Empty until the topic is first seen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub partition_history: Vec<i32>,
}

/// The producer Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProducerStatus {
    /// Pods the Deployment runs.
    pub replicas: i32,
    /// Pods that are ready.
    pub ready_replicas: i32,
}

/// The consumer Deployment and its scaling.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStatus {
    /// Consumers the Deployment runs (the scale subresource's status replicas).
    pub replicas: i32,
    /// Consumers that are ready.
    pub ready_replicas: i32,
    /// Consumers the operator wants: the request, capped at the partition count.
    pub desired_replicas: i32,
    /// Total records of lag of the consumer group.
    #[serde(default)]
    pub lag: i64,
    /// Label selector of the consumer pods (for the scale subresource).
    #[serde(default)]
    pub selector: String,
    /// When the consumer count last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// The partitions that lag, most lagging first (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_lag: Vec<PartitionLag>,
}

/// The lag of one partition.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct PartitionLag {
    /// Partition number.
    pub partition: i32,
    /// Records between the group's committed offset and the log end.
    pub lag: i64,
}

/// Most partitions listed in `status.consumer.partitionLag`.
pub const MAX_PARTITION_LAG_ENTRIES: usize = 20;

/// The CRD as YAML, as `herald-operator crd` prints it and `deploy/crds/` holds it.
pub fn crd_yaml() -> String {
    let crd = NotificationPipeline::crd();
    // Serializing a CRD (plain maps, strings and numbers) cannot fail.
    serde_yaml::to_string(&crd).unwrap_or_default()
}
