//! Reading users back from consumers: the lists a set of acknowledged sends implies, single reads
//! that tell a 503 from a 200, and waits for complete answers and settled assignments.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::http::Http;
use crate::process::Service;
use crate::{Acked, Setup, metrics, scrape, wait_ready};

pub const READY: Duration = Duration::from_secs(90);
/// Long enough for a session timeout (6 s in tests), a rebalance and a restore.
pub const SETTLE: Duration = Duration::from_secs(120);

/// Each user's acknowledged notification ids in produce (offset) order.
pub fn expected_lists(acked: &[Acked]) -> BTreeMap<u64, Vec<String>> {
    let mut by_user: BTreeMap<u64, Vec<&Acked>> = BTreeMap::new();
    for a in acked {
        by_user.entry(a.to).or_default().push(a);
    }
    by_user
        .into_iter()
        .map(|(user, mut list)| {
            list.sort_by_key(|a| a.offset);
            (user, list.into_iter().map(|a| a.id.clone()).collect())
        })
        .collect()
}

/// One read: `Some(ids)` on 200, `None` on 503 (or a consumer that is going away); panics on
/// any other answer.
pub async fn read(http: &Http, consumer: &str, user: u64) -> Option<Vec<String>> {
    let a = http.get(&format!("{consumer}/notifications/{user}")).await.ok()?;
    if a.status == 503 {
        assert!(a.headers.contains_key("retry-after"), "503 without Retry-After: {}", a.text);
        return None;
    }
    assert_eq!(a.status, 200, "{consumer} user {user}: {}", a.text);
    let list = a.json["notifications"].as_array().expect("notifications");
    for n in list {
        assert_eq!(n["to"]["id"].as_u64(), Some(user));
    }
    Some(list.iter().map(|n| n["id"].as_str().expect("id").to_string()).collect())
}

/// Reads every user on every consumer until each answers 200; every 200 must be the complete
/// list. Returns how many reads answered 503 on the way.
pub async fn assert_complete_everywhere(
    http: &Http,
    consumers: &[&Service],
    expected: &BTreeMap<u64, Vec<String>>,
    limit: Duration,
) -> usize {
    let deadline = Instant::now() + limit;
    let unavailable = AtomicUsize::new(0);
    let jobs = consumers.iter().flat_map(|c| expected.iter().map(move |(user, ids)| (c.url.clone(), *user, ids)));
    futures::stream::iter(jobs)
        .for_each_concurrent(16, |(url, user, ids)| {
            let unavailable = &unavailable;
            async move {
                loop {
                    match read(http, &url, user).await {
                        Some(got) => {
                            if &got != ids {
                                // What every consumer logged about the notifications that differ.
                                let differ: Vec<&String> =
                                    ids.iter().filter(|id| !got.contains(id)).chain(got.iter().filter(|id| !ids.contains(id))).collect();
                                let logged: Vec<String> = consumers
                                    .iter()
                                    .flat_map(|c| {
                                        c.log()
                                            .lines()
                                            .filter(|l| differ.iter().any(|id| l.contains(id.as_str())) || l.contains("partitions"))
                                            .map(|l| format!("{}: {l}", c.url))
                                            .collect::<Vec<_>>()
                                    })
                                    .collect();
                                panic!(
                                    "user {user} from {url}: incomplete or out of order\n got: {got:?}\nwant: {ids:?}\n{}",
                                    logged.join("\n")
                                );
                            }
                            return;
                        }
                        None => {
                            unavailable.fetch_add(1, Ordering::Relaxed);
                            assert!(Instant::now() < deadline, "user {user} from {url}: still 503 after {limit:?}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        })
        .await;
    unavailable.into_inner()
}

pub async fn start_consumers(http: &Http, s: &Setup, n: usize) -> Vec<Service> {
    // Keep every notification a test sends (the default keeps a user's newest 100). Each record
    // handled is logged, so that a failed completeness read can show what the owner did with
    // the notifications that differ.
    let env = [("HERALD_MAX_PER_USER", "1000000".into()), ("RUST_LOG", "info,herald_consumer::group=debug".into())];
    let consumers: Vec<_> = (0..n).map(|_| s.consumer(&env)).collect();
    for c in &consumers {
        wait_ready(http, c, READY).await;
    }
    consumers
}

/// Waits until the consumers hold `each` partitions apiece; on timeout the panic shows the end of
/// each consumer's log.
pub async fn wait_assigned(http: &Http, consumers: &[&Service], each: &[f64]) {
    let mut want = each.to_vec();
    want.sort_by(|a, b| b.total_cmp(a));
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut got = Vec::new();
        for c in consumers {
            got.push(metrics::sum(&scrape(http, c).await, "herald_consumer_assigned_partitions", &[]));
        }
        got.sort_by(|a, b| b.total_cmp(a));
        if got == want {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = consumers
                .iter()
                .map(|c| {
                    let log = c.log();
                    let tail: Vec<&str> = log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
                    format!("--- {}\n{}", c.url, tail.join("\n"))
                })
                .collect();
            panic!("partitions assigned {got:?}, wanted {want:?} after {SETTLE:?}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
