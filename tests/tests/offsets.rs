//! Gaps in a partition's offsets, on a real broker (nisshi) and the real consumer: a fetch that
//! skipped records is read again, and a gap the log really has (here: the control records a
//! transactional producer's commits leave between its records) is gone past after two re-reads,
//! losing nothing; a log that ends with such a record still lets reads complete.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_model::{Notification, User};
use herald_tests::broker::Storage;
use herald_tests::http::Http;
use herald_tests::reads::{READY, SETTLE, read};
use herald_tests::{Setup, kafka, metrics, scrape, wait_for, wait_ready};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transaction_markers_are_gaps_gone_past_without_losing_a_notification() {
    const USER: u64 = 2;
    let s = Setup::new(Storage::Memory, 1, 3).await;
    let http = Http::new();
    // Three transactions of two notifications each: the log holds a commit marker after each
    // (offsets 2, 5 and 8), which a consumer never receives.
    let (bootstrap, topic) = (s.broker.bootstrap(), s.topic.clone());
    let sent: Vec<String> = tokio::task::spawn_blocking(move || {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("transactional.id", "herald-offsets-test")
            .create()
            .expect("transactional producer");
        producer.init_transactions(Duration::from_secs(10)).expect("init transactions");
        let mut ids = Vec::new();
        for t in 0..3 {
            producer.begin_transaction().expect("begin");
            for i in 0..2 {
                let n = Notification::new(
                    User { id: 1.into(), name: Some("user1".into()) },
                    User { id: USER.into(), name: Some("user2".into()) },
                    format!("transaction {t}, notification {i}"),
                );
                let (key, value) = (n.key(), n.encode());
                producer.send(BaseRecord::to(&topic).key(&key).payload(&value)).map_err(|(e, _)| e).expect("send");
                ids.push(n.id.to_string());
            }
            producer.commit_transaction(Duration::from_secs(10)).expect("commit");
        }
        ids
    })
    .await
    .unwrap();
    let log = kafka::read_all(&s.broker.bootstrap(), &s.topic, 1, Duration::from_secs(20));
    let offsets: Vec<i64> = log.keys().map(|(_, o)| *o).collect();
    assert_eq!(offsets, [0, 1, 3, 4, 6, 7], "the broker left no gaps to test with");

    // A consumer that starts after them reads the six records (and not the markers) in one go.
    let consumer = s.consumer(&[]);
    wait_ready(&http, &consumer, READY).await;

    // Every notification, in order, and a read that completes although the log ends with a
    // marker no consumer receives.
    let got = wait_for("a complete read", SETTLE, || read(&http, &consumer.url, USER)).await;
    assert_eq!(got, sent);
    let text = scrape(&http, &consumer).await;
    // Two gaps between records (offsets 2 and 5), each read again twice, then gone past.
    assert_eq!(metrics::sum(&text, "herald_consumer_offset_gaps_total", &[("outcome", "refetched")]), 4.0, "{text}");
    assert_eq!(metrics::sum(&text, "herald_consumer_offset_gaps_total", &[("outcome", "absent")]), 2.0, "{text}");
    assert_eq!(metrics::sum(&text, "herald_consumer_records_total", &[("outcome", "stored")]), 6.0, "{text}");
    assert_eq!(metrics::sum(&text, "herald_consumer_records_total", &[("outcome", "duplicate")]), 0.0, "{text}");
}
