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
