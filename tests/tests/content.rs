//! Structured notifications end to end, against a real broker: title, url, category and data
//! sent, served exactly (data byte for byte), filtered by category with pages — by the holder of
//! the user's partition and through a member that forwards — and kept through a restore.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_tests::broker::Storage;
use herald_tests::http::Http;
use herald_tests::reads::start_consumers;
use herald_tests::{Setup, wait_ready};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(60);

/// The `category` of send `i`: orders, billing or none, in turn.
fn category(i: usize) -> Option<&'static str> {
    [Some("orders"), Some("billing"), None][i % 3]
}

/// Every page of `?category=<filter>&limit=2` from `consumer`, oldest first, and the `unread`
/// each page reported.
async fn filtered(http: &Http, consumer: &str, filter: &str) -> (Vec<Value>, Vec<u64>) {
    let (mut items, mut unread) = (Vec::new(), Vec::new());
    let mut query = format!("?category={filter}&limit=2");
    loop {
        let a = http.get(&format!("{consumer}/notifications/alice{query}")).await.unwrap();
        assert_eq!(a.status, 200, "{}", a.text);
        let page = a.json["notifications"].as_array().unwrap().clone();
        items.splice(0..0, page);
        unread.push(a.json["unread"].as_u64().unwrap());
        match a.json["next"].as_str() {
            Some(next) => query = format!("?category={filter}&limit=2&before={next}"),
            None => break,
        }
    }
    (items, unread)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn structured_fields_round_trip_and_category_filters_page_directly_and_forwarded() {
    let s = Setup::new(Storage::Memory, 3, 4).await;
    let http = Http::new();
    let producer = s.open_producer(&[]);
    wait_ready(&http, &producer, READY).await;
    let mut consumers = start_consumers(&http, &s, 2).await;

    let mut sent = Vec::new();
    for i in 0..12 {
        let mut body = json!({
            "fromID": "shop",
            "toID": "alice",
            "message": format!("message {i}"),
            "title": format!("Title {i} é"),
            "url": format!("/orders/{i}?tab=a"),
        });
        if let Some(c) = category(i) {
            body["category"] = json!(c);
        }
        let mut raw = body.to_string();
        if i % 2 == 0 {
            // Kept byte for byte, made compact: key order and the number's form stay as given.
            raw.pop();
            raw.push_str(&format!(r#", "data": {{"z": {i}, "a": [1.50, "x}}y"],  "n": {{"k": null}}}}}}"#));
        }
        let a = http.post_raw_json(&format!("{}/send", producer.url), raw.into_bytes()).await.unwrap();
        assert_eq!(a.status, 200, "{}", a.text);
        sent.push((i, a.json["id"].as_str().unwrap().to_string()));
    }

    let check = |consumers: Vec<String>| {
        let (http, sent) = (http.clone(), sent.clone());
        async move {
            for c in &consumers {
                // Everything, with every field as sent.
                let a = http.get(&format!("{c}/notifications/alice")).await.unwrap();
                let items = a.json["notifications"].as_array().unwrap();
                assert_eq!(items.len(), 12, "{}", a.text);
                for (n, (i, id)) in items.iter().zip(&sent) {
                    assert_eq!(n["id"], json!(id));
                    assert_eq!(n["title"], json!(format!("Title {i} é")));
                    assert_eq!(n["url"], json!(format!("/orders/{i}?tab=a")));
                    assert_eq!(n["category"], category(*i).map_or(Value::Null, |c| json!(c)));
                    if i % 2 == 0 {
                        assert!(
                            a.text.contains(&format!(r#""data":{{"z":{i},"a":[1.50,"x}}y"],"n":{{"k":null}}}}"#)),
                            "data is served verbatim: {}",
                            a.text
                        );
                    } else {
                        assert!(n.get("data").is_none());
                    }
                }
                // Filtered, a page of two at a time.
                for (filter, want) in [("orders", vec![0, 3, 6, 9]), ("orders,billing", vec![0, 1, 3, 4, 6, 7, 9, 10])]
                {
                    let (items, unread) = filtered(&http, c, filter).await;
                    let got: Vec<&str> = items.iter().map(|n| n["id"].as_str().unwrap()).collect();
                    let expected: Vec<&str> = want.iter().map(|i| sent[*i].1.as_str()).collect();
                    assert_eq!(got, expected, "{filter} on {c}");
                    assert!(unread.iter().all(|u| *u == want.len() as u64), "{filter} unread on {c}: {unread:?}");
                }
            }
        }
    };
    // One consumer holds alice's partition, the other forwards its reads there.
    check(consumers.iter().map(|c| c.url.clone()).collect()).await;

    for c in &mut consumers {
        c.kill9();
    }
    let replacements = start_consumers(&http, &s, 2).await;
    check(replacements.iter().map(|c| c.url.clone()).collect()).await;
}
