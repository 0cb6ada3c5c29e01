//! `spec.kafka`: how the pipeline reaches its Kafka cluster (bootstrap, TLS, client
//! authentication, the Strimzi cluster).

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::KeyRef;

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
