//! A topic that grew: users mapped to a partition of the 3-partition topic keep their older
//! notifications there while new ones land on their partition of the 6-partition topic. Every
//! consumer answers each user with both, merged in send order — as a whole list, as pages, in a
//! stream — and read markers reach both partitions. Real binaries on a real broker (nisshi).
//!
//! nisshi has no CreatePartitions: the topic is created with 6 partitions, and the records
//! "before growth" are written, as a producer of the 3-partition topic would have written them,
//! to the partition the 3-partition mapping gives their user.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use herald_model::partition::partition_for_user;
use herald_model::{Notification, User};
use herald_tests::broker::Storage;
use herald_tests::http::Http;
use herald_tests::process::Service;
use herald_tests::reads::{READY, SETTLE, read, wait_assigned};
use herald_tests::sse::connect;
use herald_tests::{Acked, Setup, kafka, metrics, scrape, send_many, wait_for, wait_ready};
use rdkafka::producer::{FutureProducer, FutureRecord};

const USERS: u64 = 200;

/// Writes one notification per user in `users` to the partition a 3-partition topic maps the
/// user to, as that topic's producers did.
async fn send_before_growth(
    raw: &FutureProducer,
    topic: &str,
    users: impl Iterator<Item = u64>,
    tag: &str,
) -> Vec<Acked> {
    futures::stream::iter(users)
        .map(|to| async move {
            let n = Notification::new(
                User { id: 1.into(), name: Some("user1".into()) },
                User { id: to.into(), name: Some(format!("user{to}")) },
                format!("{tag} {to}"),
            );
            let (key, value) = (n.key(), n.encode());
            let record = FutureRecord::to(topic).key(&key).payload(&value).partition(partition_for_user(&to.into(), 3));
            let d = raw.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("produce");
            Acked { id: n.id.to_string(), to, partition: i64::from(d.partition), offset: d.offset }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// What each consumer answers for `user`, once it answers 200.
async fn whole(http: &Http, consumer: &str, user: u64) -> Vec<String> {
    wait_for("a complete read", SETTLE, || read(http, consumer, user)).await
}

/// A served notification's id, partition and `sentAt`.
type Item = (String, i64, chrono::DateTime<chrono::FixedOffset>);

/// Each notification a consumer returns for `user`, in the answer's order.
async fn items(http: &Http, consumer: &str, user: u64) -> Vec<Item> {
    let a = http.get(&format!("{consumer}/notifications/{user}")).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.text);
    a.json["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let sent_at = chrono::DateTime::parse_from_rfc3339(n["sentAt"].as_str().unwrap()).unwrap();
            (n["id"].as_str().unwrap().to_string(), n["partition"].as_i64().unwrap(), sent_at)
        })
        .collect()
}

/// The partitions' lists in `items` (each kept in its order) merged as a read promises: the next
/// is always the earliest sent of the lists' heads, on a tie the lower partition.
fn merged_in_send_order(items: &[Item]) -> Vec<String> {
    let mut lists: BTreeMap<i64, std::collections::VecDeque<&Item>> = BTreeMap::new();
    for item in items {
        lists.entry(item.1).or_default().push_back(item);
    }
    let mut merged = Vec::with_capacity(items.len());
    while let Some(p) = lists.iter().filter_map(|(p, l)| l.front().map(|i| ((i.2, *p), *p))).min().map(|(_, p)| p) {
        let next = lists.get_mut(&p).and_then(|l| l.pop_front()).unwrap();
        merged.push(next.0.clone());
    }
    merged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_topic_grown_from_3_to_6_partitions_keeps_every_notification_readable_in_send_order() {
    let s = Setup::new(Storage::Memory, 6, USERS).await;
    let http = Http::new();
    let history = ("HERALD_PARTITION_HISTORY", "3,6".to_string());
    let raw = kafka::raw_producer(&s.broker.bootstrap());

    // Before growth: two notifications per user on the 3-partition mapping.
    let mut before = send_before_growth(&raw, &s.topic, 1..=USERS, "before").await;
    before.extend(send_before_growth(&raw, &s.topic, 1..=USERS, "before again").await);

    let producer = s.producer(std::slice::from_ref(&history));
    wait_ready(&http, &producer, READY).await;
    let consumers: Vec<Service> =
        (0..2).map(|_| s.consumer(&[history.clone(), ("HERALD_MAX_PER_USER", "1000".into())])).collect();
    for c in &consumers {
        wait_ready(&http, c, READY).await;
    }
    let refs: Vec<&Service> = consumers.iter().collect();
    wait_assigned(&http, &refs, &[3.0, 3.0]).await;
    // Which consumer holds which partition: the test is about users whose two partitions are
    // held by different consumers (6 being a multiple of 3, a user's new partition is their old
    // one or the old one + 3).
    let mut holder: HashMap<i64, usize> = HashMap::new();
    for (i, c) in consumers.iter().enumerate() {
        let a = http.get(&format!("{}/internal/claims", c.url)).await.unwrap();
        for p in a.json["partitions"].as_array().unwrap() {
            holder.insert(p.as_i64().unwrap(), i);
        }
    }
    let apart = |u: u64| {
        let (old, new) = (i64::from(partition_for_user(&u.into(), 3)), i64::from(partition_for_user(&u.into(), 6)));
        old != new && holder[&old] != holder[&new]
    };
    let user = (1..=USERS).find(|u| apart(*u)).expect("a user whose partitions two consumers hold");
    assert!((1..=USERS).filter(|u| apart(*u)).count() > USERS as usize / 4);

    // The growth: a producer that has not seen it yet goes on writing to the old mapping while
    // Herald's producer writes to the new one; then only the new one.
    let (stale, during) = tokio::join!(
        send_before_growth(&raw, &s.topic, 1..=USERS, "stale"),
        send_many(&http, &producer.url, USERS as usize, 16, |i| i as u64 + 1)
    );
    let after = send_many(&http, &producer.url, 2 * USERS as usize, 16, |i| (i as u64 % USERS) + 1).await;
    for a in during.iter().chain(&after) {
        assert_eq!(a.partition, i64::from(partition_for_user(&a.to.into(), 6)), "{a:?}");
    }

    let all: Vec<&Acked> = before.iter().chain(&stale).chain(&during).chain(&after).collect();
    let position: HashMap<&str, (i64, i64)> = all.iter().map(|a| (a.id.as_str(), (a.partition, a.offset))).collect();
    let mut by_user: BTreeMap<u64, Vec<&Acked>> = BTreeMap::new();
    for a in &all {
        by_user.entry(a.to).or_default().push(a);
    }
    let spanning =
        by_user.keys().filter(|u| partition_for_user(&(**u).into(), 3) != partition_for_user(&(**u).into(), 6)).count();
    assert!(spanning > USERS as usize / 3, "only {spanning} users span two partitions");

    // Every consumer, every user: every acknowledged notification once; each partition's in log
    // order; everything sent before the growth before everything sent after it.
    let jobs = refs.iter().flat_map(|c| by_user.iter().map(move |(u, sent)| (c.url.clone(), *u, sent)));
    futures::stream::iter(jobs)
        .for_each_concurrent(16, |(url, user, sent)| {
            let (http, position, before, after) = (&http, &position, &before, &after);
            async move {
                let got = whole(http, &url, user).await;
                let mut want: Vec<&str> = sent.iter().map(|a| a.id.as_str()).collect();
                want.sort_unstable();
                let mut sorted: Vec<&str> = got.iter().map(String::as_str).collect();
                sorted.sort_unstable();
                assert_eq!(sorted, want, "user {user} from {url}: missing or repeated notifications");
                for p in 0..6 {
                    let offsets: Vec<i64> =
                        got.iter().map(|id| position[id.as_str()]).filter(|(q, _)| *q == p).map(|(_, o)| o).collect();
                    assert!(
                        offsets.windows(2).all(|w| w[0] < w[1]),
                        "user {user} from {url}: partition {p} out of log order: {offsets:?}"
                    );
                }
                let rank = |id: &String| got.iter().position(|g| g == id).unwrap();
                let last_before = before.iter().filter(|a| a.to == user).map(|a| rank(&a.id)).max().unwrap();
                let first_after = after.iter().filter(|a| a.to == user).map(|a| rank(&a.id)).min().unwrap();
                assert!(last_before < first_after, "user {user} from {url}: not in send order: {got:?}");
                // A merge, not a concatenation of the partitions: the answer is the partitions'
                // lists merged by send time (each partition's log order is checked above).
                let answered = items(http, &url, user).await;
                let ids: Vec<String> = answered.iter().map(|i| i.0.clone()).collect();
                assert_eq!(ids, got, "user {user} from {url}: the answer changed");
                assert_eq!(merged_in_send_order(&answered), ids, "user {user} from {url}: not merged in send order");
            }
        })
        .await;

    // Pages of 2 walk the same merged list, from the holder of either partition.
    for c in &consumers {
        let list = whole(&http, &c.url, user).await;
        let mut url = format!("{}/notifications/{user}?limit=2", c.url);
        let mut pages: Vec<Vec<String>> = Vec::new();
        loop {
            let a = http.get(&url).await.unwrap();
            assert_eq!(a.status, 200, "{url}: {}", a.text);
            pages.push(
                a.json["notifications"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n["id"].as_str().unwrap().to_string())
                    .collect(),
            );
            match a.json["next"].as_str() {
                Some(cursor) => url = format!("{}/notifications/{user}?limit=2&before={cursor}", c.url),
                None => break,
            }
        }
        assert!(pages.iter().all(|p| p.len() <= 2));
        let walked: Vec<String> = pages.into_iter().rev().flatten().collect();
        assert_eq!(walked, list, "pages of user {user} from {}", c.url);
    }

    // Read state reaches both partitions: a notification from before the growth marked by id,
    // then everything.
    let old = before.iter().find(|a| a.to == user).unwrap().id.clone();
    let marked = http
        .post_json_with(&format!("{}/notifications/{user}/read", producer.url), &serde_json::json!({"ids": [old]}), &[])
        .await
        .unwrap();
    assert_eq!(marked.status, 200, "{}", marked.text);
    let total = by_user[&user].len() as u64;
    for c in &consumers {
        let a = wait_for("a complete read", SETTLE, || async {
            let a = http.get(&format!("{}/notifications/{user}", c.url)).await.ok()?;
            (a.status == 200).then_some(a)
        })
        .await;
        let items = a.json["notifications"].as_array().unwrap();
        let read: Vec<&str> = items.iter().filter(|n| n["read"] == true).map(|n| n["id"].as_str().unwrap()).collect();
        assert_eq!(read, [old.as_str()], "{}: {}", c.url, a.text);
        assert_eq!(a.json["unread"], total - 1, "{}", c.url);
    }
    let marked = http
        .post_json_with(&format!("{}/notifications/{user}/read", producer.url), &serde_json::json!({"all": true}), &[])
        .await
        .unwrap();
    assert_eq!(marked.status, 200, "{}", marked.text);
    for c in &consumers {
        let a = wait_for("a complete read", SETTLE, || async {
            let a = http.get(&format!("{}/notifications/{user}", c.url)).await.ok()?;
            (a.status == 200).then_some(a)
        })
        .await;
        assert_eq!(a.json["unread"], 0, "{}: {}", c.url, a.text);
    }

    // A stream replays from both partitions after the cursor it is given, then goes on live;
    // through every consumer (the holder of the user's current partition serves it).
    for c in &consumers {
        let list = whole(&http, &c.url, user).await;
        let page = http.get(&format!("{}/notifications/{user}?limit={}", c.url, list.len() - 1)).await.unwrap();
        // The oldest item of the page of all but the oldest: the second notification.
        let cursor = page.json["next"].as_str().expect("a cursor to the oldest notification").to_string();
        let mut stream = wait_for("a stream", SETTLE, || async {
            connect(&format!("{}/notifications/{user}/stream", c.url), Some(&cursor)).await.ok()
        })
        .await;
        let mut replayed = Vec::new();
        while replayed.len() < list.len() - 2 {
            replayed.push(next_notification(&mut stream).await);
        }
        assert_eq!(replayed, list[2..], "{}: the replay after the second notification", c.url);
        let sent = http.send_form(&producer.url, 1, user, "live").await.unwrap();
        assert_eq!(sent.status, 200, "{}", sent.text);
        assert_eq!(next_notification(&mut stream).await, sent.json["id"].as_str().unwrap(), "{}", c.url);
    }

    let mut markers = 0.0;
    for c in &consumers {
        let text = scrape(&http, c).await;
        assert_eq!(
            metrics::sum(&text, "herald_consumer_forwarded_requests_total", &[("outcome", "failed")]),
            0.0,
            "{}",
            c.url
        );
        markers += metrics::sum(&text, "herald_consumer_records_total", &[("outcome", "marker")]);
    }
    // Each of the two markers went to both of the user's partitions.
    assert_eq!(markers, 4.0);
}

/// The id of the stream's next notification event (read events are passed over).
async fn next_notification(stream: &mut herald_tests::sse::SseStream) -> String {
    loop {
        let e = stream.next(Duration::from_secs(10)).await.unwrap().expect("the stream ended early");
        if e.event == "notification" {
            return serde_json::from_str::<serde_json::Value>(&e.data).unwrap()["id"].as_str().unwrap().to_string();
        }
    }
}
