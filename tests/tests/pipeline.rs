//! The data plane against a real Kafka-protocol broker (nisshi), with the real binaries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use herald_model::{Notification, User};
use herald_tests::broker::Storage;
use herald_tests::http::Http;
use herald_tests::process::Service;
use herald_tests::reads::{assert_complete_everywhere, expected_lists};
use herald_tests::{
    Acked, Setup, ids_for, kafka, log_ends, metrics, scrape, send_many, send_until, wait_for, wait_ready,
};

/// A record's key and value as written to the topic, either possibly missing.
type RawRecord<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

const READY: Duration = Duration::from_secs(90);
const SETTLE: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn form_and_json_sends_are_readable_with_partition_and_offset() {
    let s = Setup::new(Storage::Memory, 6, 4).await;
    let http = Http::new();
    let producer = s.producer(&[]);
    let consumer = s.consumer(&[]);
    wait_ready(&http, &producer, READY).await;
    wait_ready(&http, &consumer, READY).await;

    let a = http.send_form(&producer.url, 1, 2, "Hello Bruno").await.unwrap();
    assert_eq!(a.status, 200, "{}", a.text);
    let b = http.send_json(&producer.url, 3, 2, "Hi again").await.unwrap();
    assert_eq!(b.status, 200, "{}", b.text);
    assert_eq!(a.json["partition"], b.json["partition"], "one user, one partition");
    assert_eq!(b.json["offset"].as_i64().unwrap(), a.json["offset"].as_i64().unwrap() + 1);

    let url = format!("{}/notifications/2", consumer.url);
    let list = wait_for("both notifications stored", SETTLE, || async {
        let got = http.get(&url).await.ok()?;
        let list = got.json["notifications"].as_array()?.clone();
        (list.len() == 2).then_some(list)
    })
    .await;
    for (sent, stored) in [(&a, &list[0]), (&b, &list[1])] {
        assert_eq!(stored["id"], sent.json["id"]);
        assert_eq!(stored["partition"], sent.json["partition"]);
        assert_eq!(stored["offset"], sent.json["offset"]);
        assert_eq!(stored["to"], serde_json::json!({"id": 2, "name": "user2"}));
        assert!(stored["sentAt"].as_str().unwrap().ends_with('Z'));
        assert_eq!(stored["read"], false);
    }
    assert_eq!(list[0]["message"], "Hello Bruno");
    assert_eq!(list[0]["from"]["id"], 1);
    assert_eq!(list[1]["message"], "Hi again");
    assert_eq!(list[1]["from"]["id"], 3);

    let none = http.get(&format!("{}/notifications/4", consumer.url)).await.unwrap();
    assert_eq!(none.status, 200);
    assert_eq!(
        none.json,
        serde_json::json!({"message": "No notifications found for user", "notifications": [], "unread": 0})
    );
    let bad = http.get(&format!("{}/notifications/02", consumer.url)).await.unwrap();
    assert_eq!(bad.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_spread_over_three_consumers_and_every_notification_is_stored_once() {
    const USERS: u64 = 300;
    const SENDS: usize = 6000;
    let s = Setup::new(Storage::Memory, 6, USERS).await;
    let http = Http::new();
    let producer = s.producer(&[]);
    // Each record handled is logged, so that a count that is off can name the record.
    let consumers: Vec<_> =
        (0..3).map(|_| s.consumer(&[("RUST_LOG", "info,herald_consumer::group=debug".into())])).collect();
    wait_ready(&http, &producer, READY).await;
    for c in &consumers {
        wait_ready(&http, c, READY).await;
    }
    wait_for("each consumer assigned exactly 2 partitions", READY, || async {
        let mut all = true;
        for c in &consumers {
            let text = scrape(&http, c).await;
            all &= metrics::sum(&text, "herald_consumer_assigned_partitions", &[]) == 2.0;
        }
        all.then_some(())
    })
    .await;

    let sent = send_many(&http, &producer.url, SENDS, 32, |i| (i as u64 % USERS) + 1).await;
    assert_eq!(sent.len(), SENDS);

    let ends = acked_ends(&sent);
    assert_eq!(ends.values().sum::<i64>(), SENDS as i64, "{ends:?}");
    s.wait_committed_to(&ends, SETTLE).await;

    let mut stored_total = 0.0;
    for c in &consumers {
        let text = scrape(&http, c).await;
        assert_eq!(metrics::sum(&text, "herald_consumer_assigned_partitions", &[]), 2.0);
        assert_eq!(metrics::count(&text, "herald_consumer_processed_offset", &[]), 2, "{text}");
        stored_total += metrics::sum(&text, "herald_consumer_records_total", &[("outcome", "stored")]);
        assert_eq!(metrics::sum(&text, "herald_consumer_records_total", &[("outcome", "invalid")]), 0.0);
    }
    let mut gaps = 0.0;
    for c in &consumers {
        gaps += metrics::sum(&scrape(&http, c).await, "herald_consumer_offset_gaps_total", &[]);
    }
    eprintln!("offset gaps the consumers read again or went past: {gaps}");
    if stored_total != SENDS as f64 {
        // What each consumer counted by outcome, for a failure that cannot be reproduced at will.
        let mut counted = Vec::new();
        for c in &consumers {
            let text = scrape(&http, c).await;
            counted.extend(
                text.lines()
                    .filter(|l| {
                        l.starts_with("herald_consumer_records_total")
                            || l.starts_with("herald_consumer_offset_gaps_total")
                    })
                    .map(|l| format!("{}: {l}", c.url)),
            );
        }
        // The acknowledged records no consumer logged as handled, and what the consumers logged
        // about assignments, skips and errors.
        let mut handled = std::collections::HashSet::new();
        let mut notes = Vec::new();
        for c in &consumers {
            for line in c.log().lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
                if v["message"] == "record handled" {
                    handled.insert((v["partition"].as_i64().unwrap_or(-1), v["offset"].as_i64().unwrap_or(-1)));
                } else if v["level"] != "DEBUG" || v["message"] != "read marker applied" {
                    notes.push(format!("{}: {line}", c.url));
                }
            }
        }
        let unhandled: Vec<&herald_tests::Acked> =
            sent.iter().filter(|a| !handled.contains(&(a.partition, a.offset))).collect();
        // Whether the log holds them (a fresh reader from the start of every partition).
        let log = herald_tests::kafka::read_all(&s.broker.bootstrap(), &s.topic, 6, Duration::from_secs(60));
        for a in &unhandled {
            let at = log.get(&(a.partition as i32, a.offset)).and_then(|r| r.value.clone());
            notes.push(format!(
                "in the log at {}/{}: {}",
                a.partition,
                a.offset,
                at.map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_else(|| "nothing".into())
            ));
        }
        panic!(
            "stored {stored_total} of {SENDS} acknowledged sends\n{}\nnever logged as handled: {unhandled:?}\n{}",
            counted.join("\n"),
            notes.join("\n")
        );
    }

    // Every acknowledged notification is stored once: asking one consumer per user (any of them
    // answers for any user) finds each exactly once.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for user in 1..=USERS {
        let c = &consumers[user as usize % consumers.len()];
        for id in ids_for(&http, &c.url, user).await {
            *seen.entry(id).or_default() += 1;
        }
    }
    for a in &sent {
        assert_eq!(seen.get(&a.id), Some(&1), "notification {a:?}");
    }
    assert_eq!(seen.len(), SENDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_a_consumer_mid_stream_and_restart_it_loses_nothing() {
    const USERS: u64 = 100;
    let s = Setup::new(Storage::Memory, 6, USERS).await;
    let http = Http::new();
    let producer = s.producer(&[]);
    // Every notification of the stream stays in the store, however long it runs.
    let keep_all = [("HERALD_MAX_PER_USER", "1000000".to_string())];
    let mut first = s.consumer(&keep_all);
    let second = s.consumer(&keep_all);
    wait_ready(&http, &producer, READY).await;
    wait_ready(&http, &first, READY).await;
    wait_ready(&http, &second, READY).await;

    // A stream that runs until it is told to stop: it is running when the signal is sent, while
    // the consumer shuts down, and after the restart.
    let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let sending = {
        let (http, url, stop, acked) = (http.clone(), producer.url.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move { send_until(&http, &url, 8, |i| (i as u64 % USERS) + 1, stop, acked).await })
    };
    wait_for("the first consumer handling the stream", SETTLE, || async {
        let text = scrape(&http, &first).await;
        (metrics::sum(&text, "herald_consumer_records_total", &[]) >= 300.0).then_some(())
    })
    .await;
    assert!(!sending.is_finished(), "the stream must still run at the signal");
    let at_signal = acked.load(Ordering::Acquire);
    let status = tokio::task::block_in_place(|| first.terminate(Duration::from_secs(30)));
    assert!(status.success(), "SIGTERM must end the consumer cleanly: {status:?}\n{}", first.log());
    assert!(!first.log_events("left the consumer group").is_empty(), "{}", first.log());
    let restarted = s.consumer(&keep_all);
    wait_ready(&http, &restarted, READY).await;
    let at_restart = acked.load(Ordering::Acquire);
    wait_for("more sends acknowledged after the restart", SETTLE, || async {
        (acked.load(Ordering::Acquire) >= at_restart + 300).then_some(())
    })
    .await;
    stop.store(true, Ordering::Release);
    let sent = sending.await.unwrap();
    assert!(
        at_signal >= 1 && at_restart > at_signal && sent.len() > at_restart,
        "{at_signal} {at_restart} {}",
        sent.len()
    );
    s.wait_committed_to(&acked_ends(&sent), SETTLE).await;

    // Every acknowledged notification — before, during and after the shutdown — is read back,
    // complete and once, from each survivor.
    let survivors = [&second, &restarted];
    assert_complete_everywhere(&http, &survivors, &expected_lists(&sent), SETTLE).await;
}

/// A broker, a dead-letter topic, a consumer copying invalid records to it and a producer, both
/// ready.
async fn with_dead_letter_topic() -> (Setup, String, Http, Service, Service) {
    let s = Setup::new(Storage::Memory, 3, 4).await;
    let dead_letter = herald_tests::unique("dead-letter");
    kafka::create_topic(&s.broker.bootstrap(), &dead_letter, 1).await;
    let http = Http::new();
    let consumer = s.consumer(&[("HERALD_DEAD_LETTER_TOPIC", dead_letter.clone())]);
    let producer = s.producer(&[]);
    wait_ready(&http, &consumer, READY).await;
    wait_ready(&http, &producer, READY).await;
    (s, dead_letter, http, consumer, producer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_records_are_counted_and_skipped_and_later_ones_stored() {
    let (s, dead_letter, http, consumer, producer) = with_dead_letter_topic().await;

    let raw = kafka::raw_producer(&s.broker.bootstrap());
    let valid_for_2 = Notification::new(
        User { id: 1.into(), name: Some("Emma".into()) },
        User { id: 2.into(), name: Some("Bruno".into()) },
        "x".into(),
    )
    .encode();
    let huge = vec![b'{'; 512 * 1024];
    let poison: Vec<RawRecord> = vec![
        (Some(b"2"), Some(b"\x00\xff not json at all")),
        (Some(b"2"), Some(&valid_for_2[..valid_for_2.len() / 2])),
        (Some(b"2"), Some(br#"{"id":"not-a-uuid","from":{"id":"1"},"to":{"id":2},"message":5}"#)),
        (Some(b"3"), Some(&valid_for_2)),
        (Some(b"2"), None),
        (None, Some(&valid_for_2)),
        (Some(b"2"), Some(&huge)),
    ];
    let mut written = Vec::new();
    for (key, value) in &poison {
        written.push(kafka::produce_raw(&raw, &s.topic, *key, *value).await);
    }
    let sent = send_many(&http, &producer.url, 5, 1, |_| 2).await;

    let url = format!("{}/notifications/2", consumer.url);
    let ids = wait_for("the valid notifications stored", SETTLE, || async {
        let got = http.get(&url).await.ok()?;
        let ids: Vec<String> =
            got.json["notifications"].as_array()?.iter().map(|n| n["id"].as_str().unwrap().to_string()).collect();
        (ids.len() == sent.len()).then_some(ids)
    })
    .await;
    assert_eq!(ids, sent.iter().map(|a| a.id.clone()).collect::<Vec<_>>(), "produce order");
    // Poison keyed elsewhere (or unkeyed) sits on other partitions, handled in their own order: wait for all of it.
    let text = wait_for("every poison record counted as invalid", SETTLE, || async {
        let text = scrape(&http, &consumer).await;
        let invalid = metrics::sum(&text, "herald_consumer_records_total", &[("outcome", "invalid")]);
        assert!(invalid <= poison.len() as f64, "more invalid records than written: {text}");
        (invalid == poison.len() as f64).then_some(text)
    })
    .await;
    assert_eq!(metrics::sum(&text, "herald_consumer_records_total", &[("outcome", "stored")]), sent.len() as f64);
    written.extend(sent.iter().map(|a| (a.partition as i32, a.offset)));
    s.wait_committed_to(&log_ends(written.clone()), SETTLE).await;
    let skipped = consumer.log_events("invalid record skipped");
    assert_eq!(skipped.len(), poison.len());
    assert!(
        skipped.iter().all(|e| e["partition"].is_i64() && e["offset"].is_i64() && e["topic"] == s.topic.as_str()),
        "{skipped:?}"
    );
    // A reason, never the error's text: that can quote the key (a user id) or a value.
    assert!(skipped.iter().all(|e| e["reason"].is_string() && e.get("error").is_none()), "{skipped:?}");
    assert!(skipped.iter().any(|e| e["reason"] == "key_mismatch"), "{skipped:?}");

    // Each skipped record is in the dead-letter topic, byte for byte, with where it came from
    // and why.
    let copies = kafka::read_records(&s.broker.bootstrap(), &dead_letter, 1, poison.len(), SETTLE);
    assert_eq!(metrics::sum(&text, "herald_consumer_dead_letter_records_total", &[("outcome", "written")]), 7.0);
    for ((key, value), at) in poison.iter().zip(&written) {
        let copy = copies
            .iter()
            .find(|c| {
                c.headers.get("herald.source.partition") == Some(&at.0.to_string())
                    && c.headers.get("herald.source.offset") == Some(&at.1.to_string())
            })
            .unwrap_or_else(|| panic!("no copy of {at:?}"));
        assert_eq!(copy.key.as_deref(), *key, "{at:?}");
        assert_eq!(copy.value.as_deref(), *value, "{at:?}");
        assert_eq!(copy.headers["herald.source.topic"], s.topic);
        assert!(!copy.headers["herald.error"].is_empty());
    }
}

/// The record contract's version rule, as a consumer of this version meets records of a newer
/// producer: a record kind it does not know is skipped and counted as `unknown` (not invalid, not
/// dead-lettered); fields it does not know are skipped, and the rest of the record is used. The
/// offsets move past all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_of_unknown_kinds_and_fields_are_skipped_not_dead_lettered() {
    let (s, _dead_letter, http, consumer, producer) = with_dead_letter_topic().await;

    let raw = kafka::raw_producer(&s.broker.bootstrap());
    let n = Notification::new(
        User { id: 1.into(), name: Some("Emma".into()) },
        User { id: 2.into(), name: Some("Bruno".into()) },
        "newer".into(),
    );
    let known = String::from_utf8(n.encode()).unwrap();
    // A newer producer's notification: new fields at the top and inside `from`.
    let newer = known
        .replacen(r#""message":"newer""#, r#""message":"newer","priority":"high","extra":{"k":[1,2]}"#, 1)
        .replacen(r#""name":"Emma""#, r#""name":"Emma","avatar":"a.png""#, 1);
    let mut at = vec![kafka::produce_with_headers(&raw, &s.topic, b"2", newer.as_bytes(), &[]).await];
    // A kind this version does not know (say, a newer inbox action).
    let action = format!(r#"{{"user":2,"action":"archive","ids":["{}"],"at":"2026-12-06T00:00:00Z"}}"#, n.id);
    at.push(kafka::produce_with_headers(&raw, &s.topic, b"2", action.as_bytes(), &[("herald.kind", b"archive")]).await);
    // A read marker with a field this version does not know: applied all the same.
    let marker = format!(r#"{{"user":2,"ids":["{}"],"at":"2026-12-06T00:00:01Z","category":"x"}}"#, n.id);
    at.push(kafka::produce_with_headers(&raw, &s.topic, b"2", marker.as_bytes(), &[("herald.kind", b"read")]).await);
    // A notification that says so.
    let labelled = Notification::new(n.from.clone(), n.to.clone(), "labelled".into());
    let labelled_json = labelled.encode();
    at.push(
        kafka::produce_with_headers(&raw, &s.topic, b"2", &labelled_json, &[("herald.kind", b"notification")]).await,
    );
    let partition = at[0].0;
    assert!(at.iter().all(|(p, _)| *p == partition), "one user, one partition: {at:?}");
    let sent = send_many(&http, &producer.url, 1, 1, |_| 2).await;

    let url = format!("{}/notifications/2", consumer.url);
    let items = wait_for("everything before the producer's notification handled", SETTLE, || async {
        let got = http.get(&url).await.ok()?;
        let items = got.json["notifications"].as_array()?.clone();
        (items.iter().any(|i| i["id"] == sent[0].id.as_str())).then_some(items)
    })
    .await;
    let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [n.id.to_string().as_str(), labelled.id.to_string().as_str(), sent[0].id.as_str()]);
    // The newer notification is served as this version knows it (no priority, extra or avatar)...
    let first = &items[0];
    assert_eq!(first["message"], "newer");
    assert_eq!(first["from"], serde_json::json!({"id": 1, "name": "Emma"}));
    assert!(first.get("priority").is_none() && first.get("extra").is_none(), "{first}");
    // ... and the marker with an unknown field marked it read.
    assert_eq!(first["read"], true, "{first}");
    assert_eq!(items[1]["read"], false);

    let text = scrape(&http, &consumer).await;
    let count = |outcome: &str| metrics::sum(&text, "herald_consumer_records_total", &[("outcome", outcome)]);
    assert_eq!(count("unknown"), 1.0, "the unknown kind");
    assert_eq!(count("invalid"), 0.0);
    assert_eq!(count("marker"), 1.0);
    assert_eq!(count("stored"), 3.0);
    let fields = |kind: &str| metrics::sum(&text, "herald_consumer_unknown_fields_total", &[("kind", kind)]);
    assert_eq!((fields("notification"), fields("read")), (1.0, 1.0));
    assert_eq!(metrics::sum(&text, "herald_consumer_dead_letter_records_total", &[("outcome", "written")]), 0.0);
    // The group's offset moves past every one of them.
    assert_eq!(sent[0].partition, i64::from(partition));
    let end = sent[0].offset + 1;
    wait_for("the offsets committed past the skipped records", SETTLE, || async {
        let committed = kafka::committed(&s.broker.bootstrap(), &s.topic, &s.group, 3);
        (committed.get(&partition).copied().unwrap_or(-1) >= end).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_outage_answers_503_within_the_send_timeout_never_200() {
    let mut s = Setup::new(Storage::Memory, 3, 4).await;
    let http = Http::new();
    let producer = s.producer(&[("HERALD_SEND_TIMEOUT", "2s".to_string())]);
    wait_ready(&http, &producer, READY).await;
    let ok = http.send_form(&producer.url, 1, 2, "before").await.unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text);

    s.broker.stop();
    let mut statuses = HashSet::new();
    for i in 0..5 {
        let start = Instant::now();
        let a = http.send_json(&producer.url, 1, 2, &format!("during {i}")).await.unwrap();
        let took = start.elapsed();
        assert_eq!(a.status, 503, "send {i} during the outage: {}", a.text);
        assert!(a.headers.contains_key("retry-after"));
        assert!(a.json["message"].as_str().unwrap().contains("not sent"), "{}", a.text);
        assert!(took < Duration::from_millis(3500), "send {i} answered after {took:?}");
        statuses.insert(a.status);
    }
    assert_eq!(statuses.len(), 1);
    wait_for("readiness to drop", Duration::from_secs(30), || async {
        let a = http.get(&format!("{}/readyz", producer.url)).await.ok()?;
        (a.status == 503).then_some(())
    })
    .await;
    let text = scrape(&http, &producer).await;
    assert_eq!(metrics::sum(&text, "herald_producer_notifications_total", &[("outcome", "failed")]), 5.0);
    assert_eq!(metrics::sum(&text, "herald_producer_notifications_total", &[("outcome", "sent")]), 1.0);
}

fn acked_ends(sent: &[Acked]) -> std::collections::BTreeMap<i32, i64> {
    log_ends(sent.iter().map(|a| (a.partition as i32, a.offset)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_producer_never_creates_a_missing_topic() {
    let s = Setup::new(Storage::Memory, 3, 4).await;
    let http = Http::new();
    let missing = herald_tests::unique("missing");
    let producer = s.producer(&[("HERALD_TOPIC", missing.clone()), ("HERALD_SEND_TIMEOUT", "1s".to_string())]);
    wait_for("the producer to answer", READY, || async { http.get(&format!("{}/healthz", producer.url)).await.ok() })
        .await;
    let ready = http.get(&format!("{}/readyz", producer.url)).await.unwrap();
    assert_eq!(ready.status, 503);
    let a = http.send_form(&producer.url, 1, 2, "nowhere to go").await.unwrap();
    assert_eq!(a.status, 503, "{}", a.text);
    let admin = herald_operator::kafka::admin::TopicAdmin::new(
        &s.broker.bootstrap(),
        &Default::default(),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(admin.partitions(&missing).await.unwrap(), None, "the topic must not be auto-created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bearer_token_comes_from_a_file_and_never_shows_in_logs_or_metrics() {
    const TOKEN: &str = "t0ken-from-a-Secret";
    const WRONG: &str = "n0t-the-t0ken";
    let s = Setup::new(Storage::Memory, 3, 4).await;
    let http = Http::new();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    // As a mounted Secret often is: with a trailing line break.
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    // Debug logging, so that anything logged about a request would show.
    let producer =
        s.producer(&[("HERALD_AUTH_TOKEN_FILE", token_file.display().to_string()), ("RUST_LOG", "debug".to_string())]);
    wait_ready(&http, &producer, READY).await;

    let send = |auth: Option<String>| {
        let (http, url) = (http.clone(), format!("{}/send", producer.url));
        async move {
            let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
            let value = auth.unwrap_or_default();
            if !value.is_empty() {
                headers.push(("authorization", value.as_str()));
            }
            http.request_with("POST", &url, &headers, b"fromID=1&toID=2&message=hi".to_vec()).await.unwrap()
        }
    };
    let missing = send(None).await;
    assert_eq!(missing.status, 401, "{}", missing.text);
    assert!(missing.json["message"].is_string());
    let wrong = send(Some(format!("Bearer {WRONG}"))).await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    let right = send(Some(format!("Bearer {TOKEN}"))).await;
    assert_eq!(right.status, 200, "{}", right.text);

    let text = scrape(&http, &producer).await;
    assert!(text.contains("herald_producer_notifications_total"), "{text}");
    let log = producer.log();
    // The searched log is the producer's, with a line for each request it answered.
    assert!(log.contains("producer listening") && log.lines().count() > 3, "{log}");
    for (what, output) in [("log", log), ("metrics", text)] {
        assert!(!output.contains(TOKEN), "the token is in the {what}");
        assert!(!output.contains(WRONG), "the wrong token is in the {what}");
    }
}
