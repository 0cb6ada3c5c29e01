//! The topic in Kafka itself, for `Admin` (the operator creates it) and `External` (it must
//! exist) management: read its partition count from metadata, create it when missing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

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
    #[error("no Kafka credentials for the operator: {0}")]
    Credentials(String),
}

impl TopicError {
    /// Whether retrying later can help (the broker may come back) or the spec must change.
    pub fn is_transient(&self) -> bool {
        match self {
            TopicError::Client(_) => false,
            TopicError::Unreachable(_) => true,
            // Strimzi writes a new KafkaUser's Secret a moment after the user is created.
            TopicError::Credentials(_) => true,
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

/// A group's lag on a topic, as read from Kafka (not from the consumers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagReport {
    /// The topic's partition count.
    pub partitions: i32,
    /// Lag by partition, every partition of the topic.
    pub per_partition: Vec<(i32, i64)>,
}

impl LagReport {
    pub fn total(&self) -> i64 {
        self.per_partition.iter().map(|(_, lag)| *lag).sum()
    }
}

/// The lag of one partition: from the committed offset to the log end, or, with nothing
/// committed, everything still retained (records removed by retention never count). A log end
/// reported below the committed offset (a broker quirk) counts as the committed offset.
pub fn partition_lag(log_start: i64, log_end: i64, committed: Option<i64>) -> i64 {
    match committed {
        Some(c) => (log_end.max(c) - c).max(0),
        None => (log_end - log_start.max(0)).max(0),
    }
}

/// A Kafka admin client bound to one cluster.
pub struct TopicAdmin {
    admin: Arc<AdminClient<DefaultClientContext>>,
    config: ClientConfig,
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
        Ok(Self { admin: Arc::new(admin), config, timeout })
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

    /// The lag of `group` on every partition of `topic`, within the client timeout per request.
    /// `Ok(None)` when the topic does not exist.
    pub async fn lag(&self, topic: &str, group: &str) -> Result<Option<LagReport>, TopicError> {
        let Some(partitions) = self.partitions(topic).await? else { return Ok(None) };
        let (admin, mut config, timeout, topic, group) =
            (self.admin.clone(), self.config.clone(), self.timeout, topic.to_string(), group.to_string());
        tokio::task::spawn_blocking(move || {
            // A consumer that only asks for the group's committed offsets (OffsetFetch); it never
            // subscribes, so it never joins the group or triggers a rebalance.
            config.set("group.id", &group).set("enable.auto.commit", "false");
            let consumer: BaseConsumer = config.create().map_err(TopicError::Client)?;
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition(&topic, p);
            }
            let committed = consumer.committed_offsets(tpl, timeout).map_err(TopicError::Unreachable)?;
            let mut per_partition = Vec::with_capacity(partitions as usize);
            for p in 0..partitions {
                let (start, end) =
                    admin.inner().fetch_watermarks(&topic, p, timeout).map_err(TopicError::Unreachable)?;
                let c = committed.find_partition(&topic, p).and_then(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o),
                    _ => None,
                });
                per_partition.push((p, partition_lag(start, end, c)));
            }
            Ok(Some(LagReport { partitions, per_partition }))
        })
        .await
        .map_err(|_| TopicError::Unreachable(KafkaError::Canceled))?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_lag_rules() {
        assert_eq!(partition_lag(0, 100, Some(60)), 40);
        assert_eq!(partition_lag(0, 100, Some(100)), 0);
        assert_eq!(partition_lag(0, 100, None), 100, "nothing committed: everything retained");
        assert_eq!(partition_lag(70, 100, None), 30, "records removed by retention never count");
        assert_eq!(partition_lag(0, 91, Some(100)), 0, "a log end reported below the commit");
        assert_eq!(partition_lag(0, 0, None), 0);
    }
}
