//! `Admin` and `External` topic management against a real Kafka-protocol broker (nisshi).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use herald_operator::topic::{Ensured, TopicAdmin, WantedTopic};
use herald_tests::broker::{Broker, Storage};
use herald_tests::{kafka, unique};

fn admin(broker: &Broker) -> TopicAdmin {
    TopicAdmin::new(&broker.bootstrap(), &BTreeMap::new(), Duration::from_secs(10)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_the_topic_once_and_a_second_reconcile_is_a_no_op() {
    let broker = Broker::start(Storage::Memory);
    let admin = admin(&broker);
    let wanted = WantedTopic {
        name: unique("social"),
        partitions: 6,
        replicas: 1,
        config: BTreeMap::from([("retention.ms".to_string(), "604800000".to_string())]),
    };
    assert_eq!(admin.partitions(&wanted.name).await.unwrap(), None);
    assert_eq!(admin.ensure(&wanted).await.unwrap(), Ensured::Created { partitions: 6 });
    assert_eq!(admin.partitions(&wanted.name).await.unwrap(), Some(6));
    // Second reconcile: nothing to do, and what exists is reported as it is.
    assert_eq!(admin.ensure(&wanted).await.unwrap(), Ensured::Exists { partitions: 6 });
    // A topic made elsewhere with another partition count is reported, not changed.
    let other = unique("external");
    kafka::create_topic(&broker.bootstrap(), &other, 3).await;
    let bigger = WantedTopic { name: other.clone(), partitions: 12, ..wanted.clone() };
    assert_eq!(admin.ensure(&bigger).await.unwrap(), Ensured::Exists { partitions: 3 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_a_transient_error() {
    let mut broker = Broker::start(Storage::Memory);
    let admin = TopicAdmin::new(&broker.bootstrap(), &BTreeMap::new(), Duration::from_secs(2)).unwrap();
    broker.stop();
    let err = admin.partitions("anything").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("cannot reach Kafka"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_probe_reads_exact_per_partition_lag_without_joining_the_group() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let broker = Broker::start(Storage::Memory);
    let topic = unique("lag");
    kafka::create_topic(&broker.bootstrap(), &topic, 6).await;
    // One record per produce request: nisshi reports the log end right only for single-record
    // batches (its ListOffsets answers with the last batch's base offset + 1).
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .create()
        .unwrap();
    let mut written = [0i64; 6];
    for i in 0..60 {
        let p: i32 = i * 7 % 6;
        let records = if p == 0 { 3 } else { 1 };
        for _ in 0..records {
            producer
                .send(FutureRecord::<(), _>::to(&topic).partition(p).payload("x"), Duration::from_secs(5))
                .await
                .unwrap();
            written[p as usize] += 1;
        }
    }
    let group = unique("group");
    let admin = admin(&broker);

    // No committed offsets: everything retained counts.
    let report = admin.lag(&topic, &group).await.unwrap().unwrap();
    assert_eq!(report.partitions, 6);
    let expected: Vec<(i32, i64)> = (0..6).map(|p| (p, written[p as usize])).collect();
    assert_eq!(report.per_partition, expected);

    // The group commits part of every partition (half, rounded down).
    let committer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", broker.bootstrap()).set("group.id", &group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..6 {
        tpl.add_partition_offset(&topic, p, Offset::Offset(written[p as usize] / 2)).unwrap();
    }
    committer.commit(&tpl, CommitMode::Sync).unwrap();
    let report = admin.lag(&topic, &group).await.unwrap().unwrap();
    let expected: Vec<(i32, i64)> = (0..6).map(|p| (p, written[p as usize] - written[p as usize] / 2)).collect();
    assert_eq!(report.per_partition, expected);
    assert_eq!(report.total(), expected.iter().map(|(_, l)| l).sum::<i64>());
    assert_eq!(admin.lag("no-such-topic", &group).await.unwrap(), None);
}
