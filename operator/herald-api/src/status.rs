//! `.status`: what the operator observed and did (conditions, topic, producer, consumers and
//! their lag).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
