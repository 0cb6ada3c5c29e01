//! The topic in Kafka itself, for `Admin` (the operator creates it) and `External` (it must
//! exist) management: read its partition count from metadata, create it when missing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// What a pipeline asks of its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedTopic {
    pub name: String,
    pub partitions: i32,
    pub replicas: i32,
    pub config: BTreeMap<String, String>,
}

/// The topic as Kafka has it after [`TopicAdmin::ensure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// It did not exist and was created with the wanted partitions.
    Created { partitions: i32 },
    /// It existed already; nothing was changed.
    Exists { partitions: i32 },
}

impl Ensured {
    pub fn partitions(self) -> i32 {
        match self {
            Ensured::Created { partitions } | Ensured::Exists { partitions } => partitions,
        }
    }
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
}

impl TopicError {
    /// Whether retrying later can help (the broker may come back) or the spec must change.
    pub fn is_transient(&self) -> bool {
        match self {
            TopicError::Client(_) => false,
            TopicError::Unreachable(_) => true,
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

/// A Kafka admin client bound to one cluster.
pub struct TopicAdmin {
    admin: Arc<AdminClient<DefaultClientContext>>,
    timeout: Duration,
}

impl TopicAdmin {
    /// A client for `bootstrap_servers` with the pipeline's extra librdkafka `properties`.
    pub fn new(
        bootstrap_servers: &str,
        properties: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<Self, TopicError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap_servers);
        for (k, v) in properties {
            config.set(k, v);
        }
        // A metadata request must never create the topic with the broker's defaults.
        config.set("allow.auto.create.topics", "false");
        let admin = config.create().map_err(TopicError::Client)?;
        Ok(Self { admin: Arc::new(admin), timeout })
    }

    /// The topic's partition count, or `None` when it does not exist.
    pub async fn partitions(&self, topic: &str) -> Result<Option<i32>, TopicError> {
        let (admin, name, timeout) = (self.admin.clone(), topic.to_string(), self.timeout);
        let metadata = tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(Some(&name), timeout))
            .await
            .map_err(|_| TopicError::Unreachable(KafkaError::Canceled))?
            .map_err(TopicError::Unreachable)?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len() as i32))
    }

    /// Creates the topic when it does not exist; an existing topic is left as it is (a second
    /// call is a no-op).
    pub async fn ensure(&self, wanted: &WantedTopic) -> Result<Ensured, TopicError> {
        if let Some(partitions) = self.partitions(&wanted.name).await? {
            return Ok(Ensured::Exists { partitions });
        }
        let mut new = NewTopic::new(&wanted.name, wanted.partitions, TopicReplication::Fixed(wanted.replicas));
        for (k, v) in &wanted.config {
            new = new.set(k, v);
        }
        let options = AdminOptions::new().operation_timeout(Some(self.timeout)).request_timeout(Some(self.timeout));
        let results = self.admin.create_topics([&new], &options).await.map_err(TopicError::Unreachable)?;
        for result in results {
            match result {
                Ok(_) => {}
                // Created concurrently (another operator replica, a user): it exists now.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    let partitions = self.partitions(&wanted.name).await?.unwrap_or(wanted.partitions);
                    return Ok(Ensured::Exists { partitions });
                }
                Err((topic, code)) => return Err(TopicError::Create { topic, code }),
            }
        }
        Ok(Ensured::Created { partitions: wanted.partitions })
    }
}
