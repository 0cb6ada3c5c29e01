//! `spec.producer`: the producer Deployment behind `POST /send`.

use k8s_openapi::api::core::v1::ResourceRequirements;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::KeyRef;

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
    /// ConfigMap key holding a user directory (`[{"id":1,"name":"Emma"},{"id":"alice","name":"Alice"}]`):
    /// only its users send and receive, with its names. Without one any valid user id is accepted.
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
