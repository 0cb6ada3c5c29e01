//! Direct Kafka access for tests: topics, raw records, and the group's committed offsets.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&new], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
        .await
        .expect("create topics");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// A plain producer for writing records the services did not make (poison records).
pub fn raw_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "1")
        .create()
        .expect("raw producer")
}

pub async fn produce_raw(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> (i32, i64) {
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(v) = value {
        record = record.payload(v);
    }
    let d = producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("raw produce");
    (d.partition, d.offset)
}

/// Writes one record with `headers` (name, value), keyed by `key`, returning where it landed.
pub async fn produce_with_headers(
    producer: &FutureProducer,
    topic: &str,
    key: &[u8],
    value: &[u8],
    headers: &[(&str, &[u8])],
) -> (i32, i64) {
    let mut owned = rdkafka::message::OwnedHeaders::new();
    for (name, v) in headers {
        owned = owned.insert(rdkafka::message::Header { key: name, value: Some(*v) });
    }
    let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).key(key).payload(value).headers(owned);
    let d = producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("produce");
    (d.partition, d.offset)
}

/// Writes one record with its Kafka timestamp set to `timestamp_ms` (as a producer whose clock
/// says so would), returning where it landed.
pub async fn produce_at(
    producer: &FutureProducer,
    topic: &str,
    key: &[u8],
    value: &[u8],
    timestamp_ms: i64,
) -> (i32, i64) {
    let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).key(key).payload(value).timestamp(timestamp_ms);
    let d = producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("produce");
    (d.partition, d.offset)
}

/// The committed offset of `group` per partition (-1 when none); an OffsetFetch, no join.
pub fn committed(bootstrap: &str, topic: &str, group: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("offset reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    (0..partitions)
        .map(|p| {
            let c = committed
                .find_partition(topic, p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(-1);
            (p, c)
        })
        .collect()
}

/// One record as read back: key, value and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
}

fn record_of(m: &rdkafka::message::BorrowedMessage<'_>) -> ReadRecord {
    use rdkafka::message::{Headers, Message};
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                .collect()
        })
        .unwrap_or_default();
    ReadRecord { key: m.key().map(<[u8]>::to_vec), value: m.payload().map(<[u8]>::to_vec), headers }
}

/// A group-less consumer assigned every partition of `topic` from the beginning; `eof` reports
/// the end of each partition as an error event.
fn reader(bootstrap: &str, topic: &str, partitions: i32, eof: bool) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", if eof { "true" } else { "false" })
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// Reads `n` records of `topic` from the beginning of every partition (no group commits);
/// panics with what it read when fewer arrive within `limit`.
pub fn read_records(bootstrap: &str, topic: &str, partitions: i32, n: usize, limit: Duration) -> Vec<ReadRecord> {
    let consumer = reader(bootstrap, topic, partitions, false);
    let deadline = std::time::Instant::now() + limit;
    let mut read = Vec::new();
    while read.len() < n {
        assert!(std::time::Instant::now() < deadline, "read {} of {n} records of {topic}: {read:?}", read.len());
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            read.push(record_of(&m));
        }
    }
    read
}

/// Every record of `topic` from the beginning to the end of each partition, by (partition,
/// offset); the end is where the broker reports partition EOF. Panics after `limit`.
pub fn read_all(bootstrap: &str, topic: &str, partitions: i32, limit: Duration) -> BTreeMap<(i32, i64), ReadRecord> {
    use rdkafka::error::KafkaError;
    use rdkafka::message::Message;
    let consumer = reader(bootstrap, topic, partitions, true);
    let deadline = std::time::Instant::now() + limit;
    let mut at_end = std::collections::BTreeSet::new();
    let mut read = BTreeMap::new();
    while at_end.len() < partitions as usize {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic}: {} records read, partitions at their end {at_end:?} after {limit:?}",
            read.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                read.insert((m.partition(), m.offset()), record_of(&m));
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    read
}
