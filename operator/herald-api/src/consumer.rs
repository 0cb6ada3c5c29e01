//! `spec.consumer`: the consumer Deployment and how it scales with lag.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

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
