//! The inbox API on real binaries and a real broker (nisshi): pages of a user's notifications,
//! from the consumer holding the user's partition and through one that forwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_tests::broker::Storage;
use herald_tests::http::Http;
use herald_tests::reads::{READY, SETTLE, expected_lists, wait_assigned};
use herald_tests::{Setup, kafka, metrics, scrape, send_many, wait_for, wait_ready};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_of_100_walk_250_notifications_back_from_every_consumer() {
    const USERS: u64 = 3;
    let s = Setup::new(Storage::Memory, 6, USERS).await;
    let http = Http::new();
    let producer = s.producer(&[]);
    wait_ready(&http, &producer, READY).await;
    let keep = [("HERALD_MAX_PER_USER", "1000".to_string())];
    let consumers = [s.consumer(&keep), s.consumer(&keep)];
    wait_assigned(&http, &[&consumers[0], &consumers[1]], &[3.0, 3.0]).await;
    // 250 for user 2, ten for user 1 in between.
    let sent = send_many(&http, &producer.url, 260, 8, |i| if i % 26 == 25 { 1 } else { 2 }).await;
    let all = expected_lists(&sent)[&2].clone();
    assert_eq!(all.len(), 250);

    for consumer in &consumers {
        // The whole list first: every read below sees every acknowledged notification.
        let whole = wait_for("a complete read", SETTLE, || async {
            let a = http.get(&format!("{}/notifications/2", consumer.url)).await.ok()?;
            (a.status == 200).then_some(a)
        })
        .await;
        assert_eq!(whole.json["notifications"].as_array().unwrap().len(), 250);
        assert!(whole.json.get("next").is_none(), "no next without a limit: {}", whole.text);

        let mut url = format!("{}/notifications/2?limit=100", consumer.url);
        let mut pages: Vec<Vec<String>> = Vec::new();
        loop {
            let a = http.get(&url).await.unwrap();
            assert_eq!(a.status, 200, "{url}: {}", a.text);
            let ids: Vec<String> = a.json["notifications"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["id"].as_str().unwrap().to_string())
                .collect();
            pages.push(ids);
            match a.json["next"].as_str() {
                Some(cursor) => url = format!("{}/notifications/2?limit=100&before={cursor}", consumer.url),
                None => {
                    assert!(a.json["next"].is_null(), "{}", a.text);
                    break;
                }
            }
        }
        // Pages of 100, 100 and 50, newest first, each oldest first.
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [100, 100, 50], "{}", consumer.url);
        let walked: Vec<String> = pages.into_iter().rev().flatten().collect();
        assert_eq!(walked, all, "pages overlap, miss or reorder notifications");

        for (query, says) in
            [("limit=0", "limit"), ("limit=501", "limit"), ("limit=10&before=bad", "cursor"), ("before=x", "limit")]
        {
            let a = http.get(&format!("{}/notifications/2?{query}", consumer.url)).await.unwrap();
            assert_eq!(a.status, 400, "{query}: {}", a.text);
            assert!(a.json["message"].as_str().unwrap().contains(says), "{query}: {}", a.text);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_retried_with_its_idempotency_key_is_shown_once() {
    let s = Setup::new(Storage::Memory, 3, 4).await;
    let http = Http::new();
    let producer = s.producer(&[]);
    let consumer = s.consumer(&[]);
    wait_ready(&http, &producer, READY).await;
    wait_ready(&http, &consumer, READY).await;
    let send = |from: u64, key: &str| {
        let (http, url) = (http.clone(), format!("{}/send", producer.url));
        let body = serde_json::json!({"fromID": from, "toID": 2, "message": "your order shipped"});
        let key = key.to_string();
        async move { http.post_json_with(&url, &body, &[("idempotency-key", key)]).await.unwrap() }
    };
    // A retry after a lost answer: the same sender and key, written twice, one id.
    let first = send(1, "order-42/shipped").await;
    let retry = send(1, "order-42/shipped").await;
    assert!(first.status == 200 && retry.status == 200, "{} {}", first.text, retry.text);
    assert_eq!(first.json["id"], retry.json["id"]);
    assert_ne!((first.json["offset"].clone()), retry.json["offset"], "both records are in the log");
    // The same key for other content is refused while the producer remembers it (a consumer
    // would drop it as a duplicate that nobody sees).
    let reused = {
        let body = serde_json::json!({"fromID": 1, "toID": 2, "message": "your order was cancelled"});
        let url = format!("{}/send", producer.url);
        http.post_json_with(&url, &body, &[("idempotency-key", "order-42/shipped".to_string())]).await.unwrap()
    };
    assert_eq!(reused.status, 422, "{}", reused.text);
    assert_eq!(reused.json, serde_json::json!({"message": "Idempotency-Key was used for another notification"}));
    // Another sender with the same key is another notification.
    let other = send(3, "order-42/shipped").await;
    assert_eq!(other.status, 200, "{}", other.text);
    assert_ne!(other.json["id"], first.json["id"]);

    let ids = wait_for("both notifications readable", SETTLE, || async {
        let a = http.get(&format!("{}/notifications/2", consumer.url)).await.ok()?;
        let ids: Vec<String> =
            a.json["notifications"].as_array()?.iter().map(|n| n["id"].as_str().unwrap().to_string()).collect();
        (ids.len() >= 2).then_some(ids)
    })
    .await;
    assert_eq!(ids, [first.json["id"].as_str().unwrap(), other.json["id"].as_str().unwrap()]);

    // The same id with other content through a path the producer does not remember (another
    // producer pod, a restart): the consumer keeps the first and counts the conflict.
    let raw = kafka::raw_producer(&s.broker.bootstrap());
    let conflicting = serde_json::json!({"id": first.json["id"], "from": {"id": 1, "name": "Emma"},
        "to": {"id": 2, "name": "Bruno"}, "message": "your order was cancelled", "sentAt": "2026-12-06T00:00:00Z"});
    kafka::produce_raw(&raw, &s.topic, Some(b"2"), Some(conflicting.to_string().as_bytes())).await;
    let counted = wait_for("the conflicting duplicate counted", SETTLE, || async {
        let text = scrape(&http, &consumer).await;
        let n = metrics::sum(&text, "herald_consumer_records_total", &[("outcome", "conflicting_duplicate")]);
        (n == 1.0).then_some(n)
    })
    .await;
    assert_eq!(counted, 1.0);
    let a = http.get(&format!("{}/notifications/2", consumer.url)).await.unwrap();
    let messages: Vec<&str> =
        a.json["notifications"].as_array().unwrap().iter().map(|n| n["message"].as_str().unwrap()).collect();
    assert_eq!(messages, ["your order shipped", "your order shipped"], "the first kept, for both senders");

    for bad in ["", &"k".repeat(129), "tab\there"] {
        let a = send(1, bad).await;
        assert_eq!(a.status, 400, "{bad:?}: {}", a.text);
        assert!(a.json["message"].as_str().unwrap().contains("Idempotency-Key"), "{}", a.text);
    }
}

/// User 2's notifications as one consumer answers: ids with their `read` flag, and `unread`.
async fn inbox(http: &Http, consumer: &str) -> Option<(Vec<(String, bool)>, u64)> {
    let a = http.get(&format!("{consumer}/notifications/2")).await.ok()?;
    (a.status == 200).then(|| {
        let items = a.json["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["id"].as_str().unwrap().to_string(), n["read"].as_bool().expect("read flag")))
            .collect();
        (items, a.json["unread"].as_u64().expect("unread"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_markers_apply_on_every_consumer_and_survive_a_restart_of_all() {
    let s = Setup::new(Storage::Memory, 6, 4).await;
    let http = Http::new();
    let producer = s.producer(&[]);
    wait_ready(&http, &producer, READY).await;
    let mut consumers = vec![s.consumer(&[]), s.consumer(&[])];
    wait_assigned(&http, &[&consumers[0], &consumers[1]], &[3.0, 3.0]).await;
    let sent = send_many(&http, &producer.url, 12, 4, |i| if i % 6 == 5 { 3 } else { 2 }).await;
    let ids = expected_lists(&sent)[&2].clone();
    assert_eq!(ids.len(), 10);
    let mark = |body: serde_json::Value| {
        let (http, url) = (http.clone(), format!("{}/notifications/2/read", producer.url));
        async move { http.post_json_with(&url, &body, &[]).await.unwrap() }
    };

    // Two by id (and one id nobody sent, ignored).
    let a = mark(serde_json::json!({"ids": [ids[1], ids[4], "00000000-0000-4000-8000-000000000000"]})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let mut written: Vec<(i32, i64)> = sent.iter().map(|a| (a.partition as i32, a.offset)).collect();
    let marker_partition = a.json["partition"].as_i64().unwrap() as i32;
    written.push((marker_partition, a.json["offset"].as_i64().unwrap()));
    let expect = |read: &[usize]| -> (Vec<(String, bool)>, u64) {
        let items: Vec<(String, bool)> =
            ids.iter().enumerate().map(|(i, id)| (id.clone(), read.contains(&i))).collect();
        let unread = items.iter().filter(|(_, r)| !r).count() as u64;
        (items, unread)
    };
    // The read barrier covers the marker: a read right after the 200 shows it, on every consumer.
    for c in &consumers {
        let got = wait_for("a complete read", SETTLE, || inbox(&http, &c.url)).await;
        assert_eq!(got, expect(&[1, 4]), "{}", c.url);
    }
    // Then everything sent before the marker.
    let a = mark(serde_json::json!({"all": true})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    written.push((a.json["partition"].as_i64().unwrap() as i32, a.json["offset"].as_i64().unwrap()));
    let later = send_many(&http, &producer.url, 2, 1, |_| 2).await;
    written.extend(later.iter().map(|a| (a.partition as i32, a.offset)));
    let mut all_ids = ids.clone();
    all_ids.extend(later.iter().map(|a| a.id.clone()));
    let after_all: (Vec<(String, bool)>, u64) =
        (all_ids.iter().enumerate().map(|(i, id)| (id.clone(), i < ids.len())).collect(), 2);
    for c in &consumers {
        let got = wait_for("a complete read", SETTLE, || inbox(&http, &c.url)).await;
        assert_eq!(got, after_all, "{}", c.url);
    }
    let markers: f64 = {
        let mut n = 0.0;
        for c in &consumers {
            n += herald_tests::metrics::sum(
                &herald_tests::scrape(&http, c).await,
                "herald_consumer_records_total",
                &[("outcome", "marker")],
            );
        }
        n
    };
    assert_eq!(markers, 2.0);

    // Every consumer killed and replaced once the group committed everything: the new ones
    // rebuild notifications and read state from the log (a restore), identically.
    s.wait_committed_to(&herald_tests::log_ends(written.iter().copied()), SETTLE).await;
    for c in &mut consumers {
        c.kill9();
    }
    let fresh = [s.consumer(&[]), s.consumer(&[])];
    wait_assigned(&http, &[&fresh[0], &fresh[1]], &[3.0, 3.0]).await;
    for c in &fresh {
        let got = wait_for("a complete read after the restart", SETTLE, || inbox(&http, &c.url)).await;
        assert_eq!(got, after_all, "{}", c.url);
    }

    // Bad requests say what is wrong; none writes a marker.
    for (body, status, says) in [
        (serde_json::json!({"ids": []}), 400, "ids"),
        (serde_json::json!({"ids": [ids[0]], "all": true}), 400, "either"),
        (serde_json::json!({}), 400, "either"),
        (serde_json::json!({"ids": ["not-a-uuid"]}), 400, "body"),
        (serde_json::json!({"all": true, "extra": 1}), 400, "body"),
    ] {
        let a = mark(body.clone()).await;
        assert_eq!(a.status, status, "{body}: {}", a.text);
        assert!(a.json["message"].as_str().unwrap().contains(says), "{body}: {}", a.text);
    }
    let many: Vec<String> = (0..501).map(|i| format!("00000000-0000-4000-8000-{i:012}")).collect();
    let a = mark(serde_json::json!({ "ids": many })).await;
    assert!(a.status == 400 && a.json["message"].as_str().unwrap().contains("1 to 500"), "{}", a.text);
    let a = mark(serde_json::json!({"all": true, "padding": "x".repeat(40_000)})).await;
    assert!(a.status == 413 && a.json["message"].as_str().unwrap().contains("32768"), "{}", a.text);
    let a = http
        .post_json_with(&format!("{}/notifications/0/read", producer.url), &serde_json::json!({"all": true}), &[])
        .await
        .unwrap();
    assert_eq!(a.status, 400, "{}", a.text);
    let a = http
        .post_json_with(&format!("{}/notifications/99/read", producer.url), &serde_json::json!({"all": true}), &[])
        .await
        .unwrap();
    assert_eq!(a.status, 404, "{}", a.text);

    // The topic holds exactly what was acknowledged: no bad request wrote anything. The log is
    // read twice and the positions seen joined (a fetch of nisshi's memory engine may skip a
    // record now and then; a record that is there shows up in one of the reads).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2 {
        seen.extend(herald_tests::kafka::read_all(&s.broker.bootstrap(), &s.topic, 6, SETTLE).into_keys());
    }
    let acknowledged: std::collections::BTreeSet<(i32, i64)> = written.iter().copied().collect();
    assert_eq!(seen, acknowledged, "records in the topic besides the acknowledged ones");
    // And the next marker lands right after the last one in the user's partition.
    let last = written.iter().filter(|(p, _)| *p == marker_partition).map(|(_, o)| *o).max().unwrap();
    let a = mark(serde_json::json!({"all": true})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["offset"].as_i64(), Some(last + 1), "{}", a.text);
}
