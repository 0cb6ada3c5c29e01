//! The dead-letter topic: a copy of every record the consumer skips as invalid, with where it
//! came from and why, so that nothing written to the topic disappears without a trace.

use std::time::Duration;

use herald_kit::kafka::{KafkaArgs, Required, ReservedProperty, client_config};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

/// How long copying one record may take before it counts as failed.
const COPY_TIMEOUT: Duration = Duration::from_secs(10);

/// Properties a copy that is never lost or doubled depends on.
const REQUIRED: &[Required] = &[
    Required { key: "enable.idempotence", value: "true", why: "a retried copy must not be written twice" },
    Required { key: "acks", value: "all", why: "a copy counts as written once every in-sync replica has it" },
];

/// Why the dead-letter producer could not be created.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error(transparent)]
    Reserved(#[from] ReservedProperty),
    #[error("creating the dead-letter producer for topic {topic}: {source}")]
    Create { topic: String, source: KafkaError },
}

/// Where a skipped record came from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

pub struct DeadLetter {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetter {
    pub fn new(kafka: &KafkaArgs, topic: &str) -> Result<Self, DeadLetterError> {
        let defaults = [
            ("client.id", "herald-consumer-dead-letter"),
            ("linger.ms", "0"),
            // A missing dead-letter topic is an error to see, not a topic to create with the
            // broker's defaults.
            ("allow.auto.create.topics", "false"),
        ];
        let config = client_config(&kafka.bootstrap_servers, &defaults, &kafka.properties, REQUIRED)?;
        let producer =
            config.create().map_err(|source| DeadLetterError::Create { topic: topic.to_string(), source })?;
        Ok(Self { producer, topic: topic.to_string() })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Copies a skipped record (same key and value) with headers naming its source and the
    /// reason; blocks until the broker acknowledged it.
    pub fn copy(
        &self,
        source: Source<'_>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        reason: &str,
    ) -> Result<(), KafkaError> {
        let partition = source.partition.to_string();
        let offset = source.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "herald.source.topic", value: Some(source.topic) })
            .insert(Header { key: "herald.source.partition", value: Some(&partition) })
            .insert(Header { key: "herald.source.offset", value: Some(&offset) })
            .insert(Header { key: "herald.error", value: Some(reason) });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        futures::executor::block_on(self.producer.send(record, Timeout::After(COPY_TIMEOUT)))
            .map(|_| ())
            .map_err(|(error, _)| error)
    }
}
