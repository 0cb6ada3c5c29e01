//! `spec.topic`: the topic that carries the notifications, who manages it and what happens to it
//! when the pipeline goes.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
