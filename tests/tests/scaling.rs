//! Reads while partitions move, on real binaries and a real broker (nisshi, sqlite storage: its
//! offsets are exact): a steady 100 sends/s, readers that call only consumers whose `/readyz`
//! answers 200 (as a Service would), and the group scaled 3 → 6 → 3, rolled one consumer at a
//! time, and a consumer killed — with and without standbys. Every read must answer 200 and be
//! complete; streams of moving partitions carry on or resume without a gap or a duplicate, and a
//! move of 2,000 streams is back within seconds with none refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use herald_model::partition::partition_for_user;
use herald_tests::reads::{SETTLE, expected_lists, wait_assigned};
use herald_tests::scaling::{ReadyPool, Report, Scenario, USERS};
use herald_tests::sse::connect;
use herald_tests::{metrics, scrape, wait_for};

/// One scenario at a time: each runs a broker, a producer and up to seven consumers (debug
/// builds), and what it measures is the pipeline, not a host starved by five pipelines at once.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn assert_clean(s: &Scenario, report: &Report, what: &str) {
    assert!(
        report.not_200 == 0 && report.incomplete == 0,
        "{what}: {} reads not 200, {} incomplete; first failures:\n{}\nwhat the running consumers said about moves:\n{}",
        report.not_200,
        report.incomplete,
        report.samples.join("\n"),
        s.moves_log()
    );
    assert!(report.reads > 100, "{what}: only {} reads", report.reads);
    assert_eq!(report.send_errors, 0, "{what}: {}", report.samples.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scaling_3_to_6_to_3_and_a_rolling_restart_answer_every_read_completely() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut s = Scenario::start(3, &[]).await;
    let scaled = s.scale_3_6_3().await;
    println!("{}", scaled.line("scaling 3->6->3"));
    assert_clean(&s, &scaled, "scaling 3 -> 6 -> 3");
    let rolled = s.rolling_restart().await;
    println!("{}", rolled.line("rolling restart of 3"));
    assert_clean(&s, &rolled, "rolling restart");
    // The moves were handoffs, each ended by its new owner serving it.
    let mut served = 0.0;
    for c in &s.consumers {
        let text = scrape(&s.http, c).await;
        assert_eq!(metrics::sum(&text, "herald_consumer_handoffs_total", &[("outcome", "timeout")]), 0.0);
        served += metrics::sum(&text, "herald_consumer_handoffs_total", &[("outcome", "served")]);
    }
    // The survivors handed partitions off too (the first leaver's went to them and back).
    println!("handoffs served by the last three consumers: {served}");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_standbys_a_killed_consumer_fails_no_read() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut s = Scenario::start(3, &[("HERALD_STANDBY", "true".into())]).await;
    // Every partition has a standby, caught up, before the crash.
    s.wait_standbys(6).await;
    // One lag series per standby (the dashboard and HeraldStandbysBehind read them), none left
    // behind by a standby the group took over.
    wait_for("herald_consumer_standby_lag of each standby", SETTLE, || async {
        let mut series = 0;
        for c in &s.consumers {
            series += metrics::count(&scrape(&s.http, c).await, "herald_consumer_standby_lag", &[]);
        }
        (series == 6).then_some(())
    })
    .await;
    let killed = s.kill_one(Duration::from_secs(3)).await;
    println!("{}", killed.line("kill -9 of 1 of 3 (standbys)"));
    assert_clean(&s, &killed, "kill -9 with standbys");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_standbys_a_killed_consumers_users_wait_but_never_read_incomplete() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut s = Scenario::start(3, &[]).await;
    let killed = s.kill_one(Duration::from_secs(3)).await;
    // The gap a crash leaves without standbys: until the group notices (session timeout) and the
    // new owners restore.
    println!("{}", killed.line("kill -9 of 1 of 3 (no standbys)"));
    assert_eq!(killed.incomplete, 0, "{}", killed.samples.join("\n"));
    s.finish().await;
}

/// A client following one user's stream across moves: on an end or an error it reconnects to a
/// ready consumer with the last event id. Keeps the notification ids in the order received.
struct Follower {
    user: u64,
    received: Vec<String>,
    reconnects: usize,
    refused: Vec<String>,
}

async fn follow(user: u64, pool: ReadyPool, stop: &AtomicBool) -> Follower {
    let mut f = Follower { user, received: Vec::new(), reconnects: 0, refused: Vec::new() };
    let mut last: Option<String> = None;
    let mut n = user;
    while !stop.load(Ordering::Acquire) {
        let ready = pool.ready();
        if ready.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let url = format!("{}/notifications/{user}/stream", ready[(n >> 33) as usize % ready.len()]);
        let mut stream = match connect(&url, last.as_deref()).await {
            Ok(stream) => stream,
            Err((status, text)) => {
                f.refused.push(format!("{url}: {status} {text}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if last.is_some() || !f.received.is_empty() {
            f.reconnects += 1;
        }
        loop {
            match stream.next(Duration::from_millis(300)).await {
                Ok(Some(e)) if e.event == "notification" => {
                    let item: serde_json::Value = serde_json::from_str(&e.data).unwrap();
                    f.received.push(item["id"].as_str().unwrap().to_string());
                    last = e.id;
                }
                Ok(Some(_)) => {}
                // Ended (the partition moved): reconnect.
                Ok(None) => break,
                Err(e) if e.starts_with("no event within") => {
                    if stop.load(Ordering::Acquire) {
                        return f;
                    }
                }
                Err(_) => break,
            }
        }
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_of_moving_partitions_carry_on_without_a_gap_or_a_duplicate() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut s = Scenario::start(3, &[]).await;
    // Two users on each partition.
    let mut users: Vec<u64> = Vec::new();
    for p in 0..6 {
        users.extend((1..=USERS).filter(|u| partition_for_user(&(*u).into(), 6) == p).take(2));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let pool = s.load.ready_pool();
    let followers = futures::future::join_all(users.iter().map(|u| follow(*u, pool.clone(), &stop)));
    let moving = async {
        // Let every follower connect and see some events first.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let scaled = s.scale_3_6_3().await;
        println!("{}", scaled.line("scaling 3->6->3 (with streams)"));
        // The sender stops; the streams catch up with its last sends.
        s.load.stop_sending().await;
        let acked = s.load.acked();
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Release);
        acked
    };
    let (followers, acked) = tokio::join!(followers, moving);
    let expected = expected_lists(&acked);
    for f in &followers {
        assert!(f.refused.is_empty(), "user {}: reconnects refused: {:?}", f.user, f.refused);
        let all = &expected[&f.user];
        let first = all.iter().position(|id| Some(id) == f.received.first()).expect("a first event");
        // Everything acknowledged from the first event on, once each, in order.
        let want = &all[first..];
        assert!(
            f.received[..] == want[..],
            "user {}: {} received after {} reconnects, not the acknowledged sequence\n got {:?}\nwant {:?}",
            f.user,
            f.received.len(),
            f.reconnects,
            f.received,
            want
        );
    }
    let reconnects: usize = followers.iter().map(|f| f.reconnects).sum();
    println!("streams: {} followers, {reconnects} reconnects, none refused", followers.len());
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_of_2000_streams_is_back_within_seconds_none_refused() {
    let _one = ONE_AT_A_TIME.lock().await;
    const STREAMS: usize = 2000;
    let mut s = Scenario::start(3, &[]).await;
    // The partition of the first consumer's first claim, and its users.
    let owner = s.consumers[0].url.clone();
    let claims = s.http.get(&format!("{owner}/internal/claims")).await.unwrap();
    let p = claims.json["partitions"][0].as_i64().unwrap() as i32;
    let users: Vec<u64> = (1..=USERS).filter(|u| partition_for_user(&(*u).into(), 6) == p).collect();
    let consumers: Vec<String> = s.consumers.iter().map(|c| c.url.clone()).collect();
    let open = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reopened_at = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let left = Arc::new(AtomicBool::new(false));
    // Spread over every consumer (two thirds pass through a consumer that does not hold p).
    let tasks: Vec<_> = (0..STREAMS)
        .map(|i| {
            let user = users[i % users.len()];
            let first = consumers[i % consumers.len()].clone();
            let others: Vec<String> = consumers.iter().filter(|c| **c != owner).cloned().collect();
            let (open, refused, reopened_at, stop, left) =
                (open.clone(), refused.clone(), reopened_at.clone(), stop.clone(), left.clone());
            tokio::spawn(async move {
                let mut target = first;
                let mut last: Option<String> = None;
                let mut counted = false;
                while !stop.load(Ordering::Acquire) {
                    let url = format!("{target}/notifications/{user}/stream");
                    let mut stream = match connect(&url, last.as_deref()).await {
                        Ok(stream) => stream,
                        Err((status, text)) => {
                            refused.lock().unwrap().push(format!("{status} {text}"));
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    };
                    if left.load(Ordering::Acquire) {
                        reopened_at.lock().unwrap().push(Instant::now());
                    }
                    if !counted {
                        open.fetch_add(1, Ordering::AcqRel);
                        counted = true;
                    }
                    loop {
                        match stream.next(Duration::from_millis(500)).await {
                            Ok(Some(e)) => {
                                if e.event == "notification" {
                                    last = e.id;
                                }
                            }
                            Err(e) if e.starts_with("no event within") => {
                                if stop.load(Ordering::Acquire) {
                                    return;
                                }
                            }
                            _ => break,
                        }
                    }
                    // Ended: back through a consumer that stays (as a Service would route it).
                    target = others[user as usize % others.len()].clone();
                }
            })
        })
        .collect();
    let start = Instant::now();
    while open.load(Ordering::Acquire) < STREAMS {
        let refused = refused.lock().unwrap().clone();
        assert!(
            start.elapsed() < SETTLE,
            "{} of {STREAMS} streams open after {SETTLE:?}; {} refused, the first: {:?}",
            open.load(Ordering::Acquire),
            refused.len(),
            &refused[..refused.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("{STREAMS} streams open after {:.1} s", start.elapsed().as_secs_f64());
    refused.lock().unwrap().clear();
    let text = scrape(&s.http, &s.consumers[0]).await;
    println!("streams open on the owner: {}", metrics::sum(&text, "herald_consumer_streams", &[]));
    // The owner of p leaves (out of the pool first); every stream through it, or through a proxy
    // to it, ends once its new owner serves p, and comes back.
    let mut leaving = s.consumers.remove(0);
    s.load.remove(&leaving.url);
    let started = Instant::now();
    left.store(true, Ordering::Release);
    assert!(leaving.terminate(Duration::from_secs(120)).success());
    let gone = started.elapsed();
    wait_assigned(&s.http, &s.consumers.iter().collect::<Vec<_>>(), &[3.0, 3.0]).await;
    let reopened = wait_for("every ended stream back", SETTLE, || async {
        let n = reopened_at.lock().unwrap().len();
        // Streams served by the surviving consumers' proxies to the old owner ended too; the
        // count of ended streams is what came back: compare after a quiet second.
        tokio::time::sleep(Duration::from_secs(1)).await;
        (reopened_at.lock().unwrap().len() == n && n > 0).then_some(n)
    })
    .await;
    let last_back = reopened_at.lock().unwrap().iter().max().map(|t| t.duration_since(started)).unwrap();
    println!(
        "2000 streams: {reopened} ended with the move and came back, the last {:.1} s after the SIGTERM (the old owner exited after {:.1} s); {} refused",
        last_back.as_secs_f64(),
        gone.as_secs_f64(),
        refused.lock().unwrap().len()
    );
    let refused: Vec<String> = refused.lock().unwrap().clone();
    assert!(refused.is_empty(), "{} refused, the first: {:?}", refused.len(), &refused[..refused.len().min(5)]);
    assert!(reopened >= STREAMS / 3, "only {reopened} streams moved");
    assert!(last_back <= gone + Duration::from_secs(10), "streams came back {last_back:?} after the SIGTERM");
    stop.store(true, Ordering::Release);
    for t in tasks {
        let _ = t.await;
    }
    s.finish().await;
}
