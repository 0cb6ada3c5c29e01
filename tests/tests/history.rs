//! `--history`: a consumer keeps and shows only the notifications of its window, and a restore
//! starts at the window's first record instead of the start of the retained log — on a real
//! broker (nisshi), real consumer processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use chrono::{Duration as Age, Utc};
use herald_model::{Notification, User};
use herald_tests::broker::Storage;
use herald_tests::http::Http;
use herald_tests::reads::{READY, SETTLE, wait_assigned};
use herald_tests::{Setup, kafka, log_ends, metrics, scrape, wait_for};

const USERS: u64 = 4;
const OLD: usize = 40;
const RECENT: usize = 12;

async fn shown(http: &Http, consumer: &str, user: u64) -> Option<BTreeSet<String>> {
    let a = http.get(&format!("{consumer}/notifications/{user}")).await.ok()?;
    (a.status == 200).then(|| {
        a.json["notifications"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_older_than_the_window_are_neither_restored_nor_shown() {
    let s = Setup::new(Storage::Memory, 1, USERS).await;
    let http = Http::new();
    let producer = kafka::raw_producer(&s.broker.bootstrap());
    let users = herald_model::seed_users();
    // Three hours old, then recent; a one-hour window holds only the recent ones.
    let mut acked = Vec::new();
    let mut recent: Vec<BTreeSet<String>> = vec![BTreeSet::new(); USERS as usize + 1];
    for i in 0..OLD + RECENT {
        let to = (i as u64 % USERS) + 1;
        let mut n = Notification::new(
            users[0].clone(),
            User { id: to.into(), name: Some(format!("user{to}")) },
            format!("m{i}"),
        );
        if i < OLD {
            n.sent_at = Utc::now() - Age::hours(3);
        } else {
            recent[to as usize].insert(n.id.to_string());
        }
        let at = n.sent_at.timestamp_millis();
        acked.push(kafka::produce_at(&producer, &s.topic, n.key().as_bytes(), &n.encode(), at).await);
    }
    let history = [("HERALD_HISTORY", "1h".to_string())];

    // A new group handles every record (none is skipped) but shows only the window.
    let mut first = s.consumer(&history);
    wait_assigned(&http, &[&first], &[1.0]).await;
    wait_for("every record handled", SETTLE, || async {
        let t = metrics::sum(&scrape(&http, &first).await, "herald_consumer_records_total", &[]);
        (t >= (OLD + RECENT) as f64).then_some(())
    })
    .await;
    let text = scrape(&http, &first).await;
    assert_eq!(metrics::sum(&text, "herald_consumer_records_total", &[("outcome", "stored")]), (OLD + RECENT) as f64);
    for user in 1..=USERS {
        let ids = shown(&http, &first.url, user).await.expect("a complete read");
        assert_eq!(ids, recent[user as usize], "user {user}");
    }
    s.wait_committed_to(&log_ends(acked.iter().copied()), SETTLE).await;

    // A new member rebuilds the store from the window's first record: the recent ones only.
    first.kill9();
    let second = s.consumer(&history);
    wait_assigned(&http, &[&second], &[1.0]).await;
    for user in 1..=USERS {
        let ids = wait_for("a complete read after the restore", READY, || shown(&http, &second.url, user)).await;
        assert_eq!(ids, recent[user as usize], "user {user}");
    }
    let text = scrape(&http, &second).await;
    let restored = metrics::sum(&text, "herald_consumer_restore_records_total", &[]);
    assert_eq!(
        restored,
        RECENT as f64,
        "the restore read {restored} records; the partition holds {}; {:?}",
        OLD + RECENT,
        second.log().lines().filter(|l| l.contains("WARN") || l.contains("assigned")).collect::<Vec<_>>()
    );
    assert_eq!(metrics::sum(&text, "herald_consumer_records_total", &[]), 0.0, "nothing was new to the group");
}
