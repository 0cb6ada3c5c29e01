//! Why a Kafka client of the consumer could not be created or subscribed.

use herald_kit::kafka::ReservedProperty;
use rdkafka::error::KafkaError;

/// Why the consumer could not start.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error(transparent)]
    Reserved(#[from] ReservedProperty),
    #[error("creating the Kafka consumer: {0}")]
    Create(KafkaError),
    #[error("subscribing to topic {topic}: {source}")]
    Subscribe { topic: String, source: KafkaError },
}
