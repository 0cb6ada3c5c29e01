//! Why the operator's Kafka I/O failed: the protocol client's [`ProbeError`] and the admin
//! client's (and the lag probe's, as reconciles see it) [`TopicError`].

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// Why talking to the cluster failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    #[error("connecting to {addr}: {why}")]
    Connect { addr: String, why: String },
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("talking to {addr}: {why}")]
    Io { addr: String, why: String },
    #[error("authenticating to {addr}: {why}")]
    Auth { addr: String, why: String },
    #[error("{addr} does not speak {api:?} in a version this client knows")]
    Version { addr: String, api: ApiKey },
    #[error(
        "the operator's Kafka client does not support {0} (the lag probe speaks PLAINTEXT, SSL, SASL PLAIN and SCRAM)"
    )]
    Unsupported(String),
    #[error("{0}")]
    Broker(String),
}

/// Why the topic could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("creating the Kafka admin client: {0}")]
    Client(KafkaError),
    #[error("cannot reach Kafka: {0}")]
    Unreachable(KafkaError),
    #[error("Kafka refused to create topic {topic}: {code}")]
    Create { topic: String, code: RDKafkaErrorCode },
    #[error("no Kafka credentials for the operator: {0}")]
    Credentials(String),
    #[error("reading the lag: {0}")]
    Probe(ProbeError),
}

impl TopicError {
    /// Whether retrying later can help (the broker may come back) or the spec must change.
    pub fn is_transient(&self) -> bool {
        match self {
            TopicError::Client(_) => false,
            TopicError::Unreachable(_) => true,
            // Strimzi writes a new KafkaUser's Secret a moment after the user is created.
            TopicError::Credentials(_) => true,
            TopicError::Probe(e) => !matches!(e, ProbeError::Unsupported(_)),
            TopicError::Create { code, .. } => !matches!(
                code,
                RDKafkaErrorCode::InvalidTopic
                    | RDKafkaErrorCode::InvalidPartitions
                    | RDKafkaErrorCode::InvalidReplicationFactor
                    | RDKafkaErrorCode::InvalidConfig
                    | RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::PolicyViolation
            ),
        }
    }
}
