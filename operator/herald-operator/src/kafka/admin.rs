//! The topic in Kafka itself, for `Admin` (the operator creates it) and `External` (it must
//! exist) management: read its partition count from metadata, create it when missing, through
//! one librdkafka admin client per cluster and identity.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_api::KafkaSpec;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::error::TopicError;
use super::lag::cluster_key;

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

/// Reading and creating topics in Kafka (`Admin` and `External` management).
pub trait Topics: Send + Sync + 'static {
    fn ensure(
        &self,
        kafka: &KafkaSpec,
        wanted: &WantedTopic,
    ) -> impl Future<Output = Result<Ensured, TopicError>> + Send;
    fn partitions(
        &self,
        kafka: &KafkaSpec,
        topic: &str,
    ) -> impl Future<Output = Result<Option<i32>, TopicError>> + Send;
}

/// [`Topics`] through the Kafka Admin API of each pipeline's cluster, one client per cluster
/// and identity, kept across reconciles so that its connections are too; a rotated password or
/// certificate replaces the client.
pub struct KafkaTopics {
    timeout: Duration,
    admins: Mutex<HashMap<String, CachedAdmin>>,
}

/// An admin client and every property it was created with.
struct CachedAdmin {
    properties: BTreeMap<String, String>,
    admin: Arc<TopicAdmin>,
}

impl KafkaTopics {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, admins: Default::default() }
    }

    fn admin(&self, kafka: &KafkaSpec) -> Result<Arc<TopicAdmin>, TopicError> {
        let key = cluster_key(kafka);
        let mut admins = self.admins.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(cached) = admins.get(&key)
            && cached.properties == kafka.properties
        {
            return Ok(cached.admin.clone());
        }
        let admin = Arc::new(TopicAdmin::new(&kafka.bootstrap_servers, &kafka.properties, self.timeout)?);
        admins.insert(key, CachedAdmin { properties: kafka.properties.clone(), admin: admin.clone() });
        Ok(admin)
    }
}

impl Topics for KafkaTopics {
    async fn ensure(&self, kafka: &KafkaSpec, wanted: &WantedTopic) -> Result<Ensured, TopicError> {
        self.admin(kafka)?.ensure(wanted).await
    }

    async fn partitions(&self, kafka: &KafkaSpec, topic: &str) -> Result<Option<i32>, TopicError> {
        self.admin(kafka)?.partitions(topic).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(password: &str) -> KafkaSpec {
        serde_json::from_value(serde_json::json!({
            "bootstrapServers": "127.0.0.1:1",
            "properties": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "social-consumer", "sasl.password": password},
        }))
        .unwrap()
    }

    #[test]
    fn admin_clients_are_reused_and_replaced_when_a_secret_rotates() {
        let topics = KafkaTopics::new(Duration::from_secs(1));
        let first = topics.admin(&kafka("one")).unwrap();
        assert!(Arc::ptr_eq(&first, &topics.admin(&kafka("one")).unwrap()));
        let rotated = topics.admin(&kafka("two")).unwrap();
        assert!(!Arc::ptr_eq(&first, &rotated));
        assert_eq!(topics.admins.lock().unwrap().len(), 1, "the old client is dropped, not kept");
    }
}
