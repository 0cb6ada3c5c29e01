//! `spec.networkPolicy`: the ingress NetworkPolicies the operator keeps for the pipeline's pods.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
