//! Bulk sends against a real broker: 1,000 recipients in one request, each readable once; with a
//! directory, an unknown recipient fails the whole request; a retry after a broker outage — of
//! the whole request or of what failed — shows each recipient their notification once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use herald_tests::broker::Storage;
use herald_tests::http::Http;
use herald_tests::reads::start_consumers;
use herald_tests::{Setup, metrics, scrape, wait_for, wait_ready};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(60);

async fn bulk(http: &Http, producer: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, String)> = key.map(|k| ("idempotency-key", k.to_string())).into_iter().collect();
    let a = http.post_json_with(&format!("{producer}/send"), body, &headers).await.unwrap();
    (a.status.as_u16(), a.json)
}

/// The id each recipient's result names.
fn ids_by_recipient(answer: &Value) -> BTreeMap<String, String> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["toID"].as_str().map_or_else(|| r["toID"].to_string(), str::to_string),
                r["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn inbox_ids(http: &Http, consumer: &str, user: &str) -> Vec<String> {
    let a = http.get(&format!("{consumer}/notifications/{user}")).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.text);
    a.json["notifications"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_recipients_in_one_request_are_each_readable_once() {
    let s = Setup::new(Storage::Memory, 6, 4).await;
    let http = Http::new();
    let producer = s.open_producer(&[]);
    wait_ready(&http, &producer, READY).await;
    let consumers = start_consumers(&http, &s, 2).await;

    let recipients: Vec<String> = (0..1000).map(|i| format!("member-{i}@example.com")).collect();
    let body = json!({"fromID": "newsroom", "toIDs": recipients, "message": "Issue 42 is out", "category": "news"});
    let (status, answer) = bulk(&http, &producer.url, &body, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["message"], "Notifications sent successfully!");
    let ids = ids_by_recipient(&answer);
    assert_eq!(ids.len(), 1000);
    assert!(answer["results"].as_array().unwrap().iter().all(|r| r["status"] == "sent" && r["offset"].is_i64()));

    for (i, to) in recipients.iter().enumerate() {
        let got = inbox_ids(&http, &consumers[i % 2].url, to).await;
        assert_eq!(got, [ids[to].clone()], "{to}");
    }
    let text = scrape(&http, &producer).await;
    assert_eq!(metrics::sum(&text, "herald_producer_notifications_total", &[("outcome", "sent")]), 1000.0);

    // With a directory, one unknown recipient fails the whole request: nothing is sent.
    let directed = s.producer(&[]);
    wait_ready(&http, &directed, READY).await;
    let (status, answer) =
        bulk(&http, &directed.url, &json!({"fromID": 1, "toIDs": [2, "ghost", 3], "message": "m"}), None).await;
    assert_eq!((status, answer["message"].as_str()), (404, Some("Users not found: ghost")), "{answer}");
    for user in ["2", "3"] {
        assert!(inbox_ids(&http, &consumers[0].url, user).await.is_empty(), "user {user} got something");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retrying_a_bulk_send_after_a_broker_outage_shows_each_notification_once() {
    let mut s = Setup::new(Storage::Sqlite, 3, 4).await;
    let http = Http::new();
    let producer = s.open_producer(&[("HERALD_SEND_TIMEOUT", "2s".into())]);
    wait_ready(&http, &producer, READY).await;
    let consumers = start_consumers(&http, &s, 1).await;
    let consumer = &consumers[0].url;
    let everyone: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
    let request = |to: &[String]| json!({"fromID": "shop", "toIDs": to, "message": "Your order shipped"});

    // Half of them got theirs before the outage (an earlier try of the same request).
    let (status, first) = bulk(&http, &producer.url, &request(&everyone[..50]), Some("ship-7")).await;
    assert_eq!(status, 200, "{first}");
    let first = ids_by_recipient(&first);

    s.broker.stop();
    let (status, during) = bulk(&http, &producer.url, &request(&everyone), Some("ship-7")).await;
    assert_eq!(status, 503, "{during}");
    let failed: Vec<&Value> =
        during["results"].as_array().unwrap().iter().filter(|r| r["status"] == "failed").collect();
    assert!(!failed.is_empty(), "{during}");
    assert!(during["message"].as_str().unwrap().contains("not sent"), "{during}");
    let promised = ids_by_recipient(&during);
    for (to, id) in &first {
        assert_eq!(&promised[to], id, "the same key names the same notification for {to}");
    }

    s.broker.restart();
    // The client sends what failed again until it is taken (the producer reconnects first).
    let retry: Vec<String> = failed.iter().map(|r| r["toID"].as_str().unwrap().to_string()).collect();
    let again = wait_for("the retry of the failed recipients acknowledged", Duration::from_secs(60), || async {
        let (status, answer) = bulk(&http, &producer.url, &request(&retry), Some("ship-7")).await;
        (status == 200).then_some(answer)
    })
    .await;
    assert_eq!(again["results"].as_array().unwrap().len(), retry.len());
    // And then, unsure, the whole request once more.
    let (status, whole) = bulk(&http, &producer.url, &request(&everyone), Some("ship-7")).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(ids_by_recipient(&whole), promised);

    // The consumer catches up after the outage (until then a read is a 503, never short).
    wait_for("the consumer serving again after the outage", Duration::from_secs(60), || async {
        let a = http.get(&format!("{consumer}/notifications/{}", everyone[0])).await.ok()?;
        (a.status == 200).then_some(())
    })
    .await;
    for to in &everyone {
        let got = wait_for("a read after the outage", Duration::from_secs(30), || async {
            let a = http.get(&format!("{consumer}/notifications/{to}")).await.ok()?;
            (a.status == 200).then(|| {
                a.json["notifications"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n["id"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            })
        })
        .await;
        assert_eq!(got, [promised[to].clone()], "{to} sees their notification once");
    }
}
