//! `GET /notifications/{userID}/stream` on real binaries and a real broker (nisshi): live events,
//! replay after a reconnect, the same through a consumer that does not hold the partition, and
//! a stream that ends when its partition moves and resumes on the new owner.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use herald_model::partition::partition_for_user;
use herald_tests::broker::Storage;
use herald_tests::http::Http;
use herald_tests::process::Service;
use herald_tests::reads::{READY, SETTLE, wait_assigned};
use herald_tests::sse::{SseEvent, SseStream, connect};
use herald_tests::{Setup, metrics, scrape, send_many, wait_for, wait_ready};

const USER: u64 = 2;
const EVENT: Duration = Duration::from_secs(10);

async fn holds(http: &Http, c: &Service, partition: i64) -> bool {
    let a = http.get(&format!("{}/internal/claims", c.url)).await.unwrap();
    a.json["partitions"].as_array().unwrap().iter().any(|p| p.as_i64() == Some(partition))
}

async fn open(url: &str, last: Option<&str>) -> SseStream {
    wait_for("a stream", SETTLE, || async { connect(url, last).await.ok() }).await
}

/// The next `n` notification events (read events are returned too, in order).
async fn take(stream: &mut SseStream, n: usize) -> Vec<SseEvent> {
    let mut events = Vec::new();
    while events.len() < n {
        events.push(stream.next(EVENT).await.unwrap().expect("the stream ended early"));
    }
    events
}

fn ids(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(&e.data).unwrap()["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_are_live_replay_exactly_what_was_missed_and_follow_the_partition() {
    let s = Setup::new(Storage::Memory, 6, 4).await;
    let http = Http::new();
    let producer = s.producer(&[]);
    wait_ready(&http, &producer, READY).await;
    let limit = [("HERALD_MAX_STREAMS", "3".to_string())];
    let mut consumers = vec![s.consumer(&limit), s.consumer(&limit)];
    wait_assigned(&http, &[&consumers[0], &consumers[1]], &[3.0, 3.0]).await;
    let partition = i64::from(partition_for_user(&USER.into(), 6));
    let owner = if holds(&http, &consumers[0], partition).await { 0 } else { 1 };
    let other = 1 - owner;
    let stream_url = |c: &Service| format!("{}/notifications/{USER}/stream", c.url);

    // Live: a notification sent after connecting arrives within a second.
    let mut live = open(&stream_url(&consumers[owner]), None).await;
    let start = Instant::now();
    let sent = send_many(&http, &producer.url, 1, 1, |_| USER).await;
    let first = take(&mut live, 1).await;
    let took = start.elapsed();
    println!("STREAMS send → event {:.1} ms", took.as_secs_f64() * 1000.0);
    assert!(took < Duration::from_secs(1), "the event took {took:?}");
    assert_eq!(first[0].event, "notification");
    assert_eq!(ids(&first), [sent[0].id.clone()]);
    let first_id = first[0].id.clone().expect("an event id");
    // A read marker shows as a read event.
    let a = http
        .post_json_with(
            &format!("{}/notifications/{USER}/read", producer.url),
            &serde_json::json!({"ids": [sent[0].id]}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{}", a.text);
    let read = take(&mut live, 1).await;
    assert_eq!(read[0].event, "read");
    assert_eq!(read[0].data, serde_json::json!({"ids": [sent[0].id]}).to_string());
    let text = scrape(&http, &consumers[owner]).await;
    assert_eq!(metrics::sum(&text, "herald_consumer_streams", &[]), 1.0);
    drop(live);

    // Disconnected, five sent, reconnected with the last id: exactly those five, in order.
    let missed = send_many(&http, &producer.url, 5, 1, |_| USER).await;
    let mut again = open(&stream_url(&consumers[owner]), Some(&first_id)).await;
    let replay = take(&mut again, 5).await;
    assert_eq!(ids(&replay), missed.iter().map(|a| a.id.clone()).collect::<Vec<_>>());
    assert!(again.next(Duration::from_millis(500)).await.is_err(), "nothing more than what was missed");
    drop(again);

    // Through the consumer that does not hold the partition: the same replay, then live.
    let mut proxied = open(&stream_url(&consumers[other]), Some(&first_id)).await;
    assert_eq!(ids(&take(&mut proxied, 5).await), ids(&replay));
    let one = send_many(&http, &producer.url, 1, 1, |_| USER).await;
    let got = take(&mut proxied, 1).await;
    assert_eq!(ids(&got), [one[0].id.clone()]);
    let mut last_id = got[0].id.clone().unwrap();

    // At most 3 streams per consumer (the proxied one holds one on each).
    let (a, b) = (open(&stream_url(&consumers[owner]), None).await, open(&stream_url(&consumers[owner]), None).await);
    let refused = connect(&stream_url(&consumers[owner]), None).await.err().expect("a fourth stream");
    assert_eq!(refused.0, 503, "{}", refused.1);
    assert!(refused.1.contains("maximum of 3 streams"), "{}", refused.1);
    drop((a, b));

    // The owner goes: the stream through the other consumer ends; its reconnect lands on the
    // new owner and gets what was sent meanwhile, without loss or duplicates.
    assert!(consumers[owner].terminate(Duration::from_secs(30)).success());
    match proxied.next(SETTLE).await {
        Ok(None) => {}
        // The owner's connection went away under the proxy: ended too, abruptly.
        Err(e) => assert!(!e.starts_with("no event within"), "the stream did not end: {e}"),
        Ok(Some(e)) => panic!("the stream went on after its partition moved: {e:?}"),
    }
    let meanwhile = send_many(&http, &producer.url, 3, 1, |_| USER).await;
    let survivor = consumers.remove(other);
    wait_assigned(&http, &[&survivor], &[6.0]).await;
    let mut resumed = open(&stream_url(&survivor), Some(&last_id)).await;
    let got = take(&mut resumed, 3).await;
    assert_eq!(ids(&got), meanwhile.iter().map(|a| a.id.clone()).collect::<Vec<_>>());
    last_id = got[2].id.clone().unwrap();
    assert!(resumed.next(Duration::from_millis(500)).await.is_err(), "no duplicates after the replay");
    assert!(!last_id.is_empty());
}
