//! `Admin` and `External` topic management against a real Kafka-protocol broker (nisshi).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use herald_operator::kafka::admin::{Ensured, TopicAdmin, WantedTopic};
use herald_operator::kafka::lag::{LagSource, LagTarget};
use herald_operator::kafka::protocol::KafkaLag;
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
    let other_group = unique("group");
    let lag = KafkaLag::new(Duration::from_secs(10));
    let kafka = kafka_spec(&broker, serde_json::json!({}));
    let targets = [
        LagTarget { topic: topic.clone(), group: group.clone() },
        LagTarget { topic: topic.clone(), group: other_group.clone() },
        LagTarget { topic: "no-such-topic".into(), group: group.clone() },
    ];

    // No committed offsets: everything retained counts. Three pipelines, one batch, one client.
    let results = lag.probe(&kafka, &targets).await;
    let report = results[0].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(report.partitions, 6);
    let expected: Vec<(i32, i64)> = (0..6).map(|p| (p, written[p as usize])).collect();
    assert_eq!(report.per_partition, expected);
    assert_eq!(results[1].as_ref().unwrap().as_ref().unwrap().per_partition, expected);
    assert_eq!(*results[2].as_ref().unwrap(), None, "a missing topic");
    assert_eq!(lag.clients(), 1, "one client for the cluster");

    // One group commits part of every partition (half, rounded down); the other nothing.
    let committer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", broker.bootstrap()).set("group.id", &group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..6 {
        tpl.add_partition_offset(&topic, p, Offset::Offset(written[p as usize] / 2)).unwrap();
    }
    committer.commit(&tpl, CommitMode::Sync).unwrap();
    let results = lag.probe(&kafka, &targets).await;
    let report = results[0].as_ref().unwrap().as_ref().unwrap();
    let half: Vec<(i32, i64)> = (0..6).map(|p| (p, written[p as usize] - written[p as usize] / 2)).collect();
    assert_eq!(report.per_partition, half);
    assert_eq!(report.total(), half.iter().map(|(_, l)| l).sum::<i64>());
    assert_eq!(results[1].as_ref().unwrap().as_ref().unwrap().per_partition, expected, "groups apart");
    // The lag probe never joined either group: the committer's offsets are untouched.
    let committed = herald_tests::kafka::committed(&broker.bootstrap(), &topic, &group, 6);
    assert_eq!(committed.values().copied().collect::<Vec<_>>(), (0..6).map(|p| written[p] / 2).collect::<Vec<_>>());
    // No pipeline on the cluster any more: its client is closed.
    lag.retain(&[]);
    assert_eq!(lag.clients(), 0);
}

fn kafka_spec(broker: &Broker, properties: serde_json::Value) -> herald_api::KafkaSpec {
    serde_json::from_value(serde_json::json!({"bootstrapServers": broker.bootstrap(), "properties": properties}))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_probe_authenticates_with_scram_and_a_wrong_password_is_an_error() {
    let topic = unique("secured");
    let broker = Broker::start_with_sasl_users(&[("social-consumer", "c0nsumer-s3cret")], &[(&topic, 3)]).await;
    let scram = |password: &str| {
        kafka_spec(
            &broker,
            serde_json::json!({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "social-consumer", "sasl.password": password}),
        )
    };
    let target = [LagTarget { topic: topic.clone(), group: unique("group") }];
    let lag = KafkaLag::new(Duration::from_secs(10));
    let report = lag.probe(&scram("c0nsumer-s3cret"), &target).await.remove(0).unwrap().unwrap();
    assert_eq!(report.partitions, 3);
    assert_eq!(report.total(), 0);
    // A rotated (here: wrong) password replaces the client rather than adding one.
    let err = lag.probe(&scram("wrong"), &target).await.remove(0).unwrap_err().to_string();
    assert!(err.contains("authenticating"), "{err}");
    assert!(!err.contains("wrong"), "the password shows in the error: {err}");
    assert_eq!(lag.clients(), 1);
}
