//! The reasons the reconcile decides on: why a pipeline is refused (its `Ready` condition) and
//! what state its topic is in (`TopicReady`). One enum, so that the controller's choices (how
//! soon to look again) match on variants, not on strings a typo could change.

use std::fmt;

/// A condition reason the reconcile sets and acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The spec breaks a rule the schema cannot express.
    InvalidSpec,
    /// The spec asks for what the operator's tenancy policy forbids.
    PolicyViolation,
    /// An object of a child's name (or the topic) is someone else's.
    NameConflict,
    /// The cluster does not serve the Strimzi API the pipeline needs.
    StrimziNotInstalled,
    /// A predecessor's peer-token Secret is still being collected.
    PeerTokenPending,
    /// `topic.management: Strimzi` without `spec.kafka.clusterRef`.
    NoClusterRef,
    /// The operator created the topic (`Admin`).
    TopicCreated,
    /// The topic exists (`Admin`, `External`).
    TopicExists,
    /// The topic does not exist (`External`).
    TopicNotFound,
    /// Kafka refused to create the topic, for a reason retrying cannot change.
    TopicRejected,
    /// Kafka could not be reached (or the operator has no credentials for it yet).
    KafkaUnreachable,
    /// Strimzi has not reconciled the current KafkaTopic yet.
    TopicPending,
    /// Strimzi reports the KafkaTopic ready.
    TopicReady,
    /// Strimzi's own reason for a KafkaTopic that is not ready, passed on as Strimzi wrote it.
    Strimzi(String),
}

impl Reason {
    pub fn as_str(&self) -> &str {
        match self {
            Reason::InvalidSpec => "InvalidSpec",
            Reason::PolicyViolation => "PolicyViolation",
            Reason::NameConflict => "NameConflict",
            Reason::StrimziNotInstalled => "StrimziNotInstalled",
            Reason::PeerTokenPending => "PeerTokenPending",
            Reason::NoClusterRef => "NoClusterRef",
            Reason::TopicCreated => "TopicCreated",
            Reason::TopicExists => "TopicExists",
            Reason::TopicNotFound => "TopicNotFound",
            Reason::TopicRejected => "TopicRejected",
            Reason::KafkaUnreachable => "KafkaUnreachable",
            Reason::TopicPending => "TopicPending",
            Reason::TopicReady => "TopicReady",
            Reason::Strimzi(reason) => reason,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
