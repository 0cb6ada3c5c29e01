//! The README's first command: `herald-local` brings up a pipeline on the embedded cluster,
//! prints where everything is, serves the curl examples it prints, and stops cleanly on Ctrl-C.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use herald_tests::http::Http;
use herald_tests::{process, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_runs_the_pipeline_it_prints_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("stdout");
    let mut child = Command::new(process::bin("herald-local"))
        .args(["--partitions", "3", "--consumers", "5"])
        .args(["--producer-listen", "127.0.0.1:0", "--consumer-listen", "127.0.0.1:0"])
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    // A failed assertion must not leave the process running (it holds ports and CPU).
    struct KillOnDrop(u32, std::sync::atomic::AtomicBool);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if !self.1.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = Command::new("kill").args(["-s", "KILL", &self.0.to_string()]).status();
            }
        }
    }
    let guard = KillOnDrop(child.id(), std::sync::atomic::AtomicBool::new(false));
    let read = || std::fs::read_to_string(&out_path).unwrap_or_default();
    let table = wait_for("the table of components", Duration::from_secs(90), || async {
        let out = read();
        out.contains("Press Ctrl-C").then_some(out)
    })
    .await;

    // Five consumers asked for, three partitions: capped at one consumer per partition.
    let rows: Vec<&str> = table.lines().filter(|l| l.trim_start().starts_with("consumer-")).collect();
    assert_eq!(rows.len(), 3, "{table}");
    let mut partitions: Vec<String> = rows.iter().map(|r| r.split_whitespace().nth(3).unwrap().to_string()).collect();
    partitions.sort();
    assert_eq!(partitions, ["0", "1", "2"], "{table}");
    let producer_row: Vec<&str> =
        table.lines().find(|l| l.trim_start().starts_with("producer")).unwrap().split_whitespace().collect();
    let (producer, producer_metrics) = (producer_row[1], producer_row[2]);
    let read_url =
        table.lines().find_map(|l| l.trim().strip_prefix("curl http")).map(|rest| format!("http{rest}")).unwrap();
    // Local mode has no directory: the printed example uses the app's own string ids.
    assert!(read_url.ends_with("/notifications/alice"), "{read_url}");
    assert!(table.contains("-d fromID=bob -d toID=alice"), "{table}");

    let http = Http::new();
    let sent = http.send_between(producer, "bob", "alice", "Hello Alice").await.unwrap();
    assert_eq!(sent.status, 200, "{}", sent.text);
    let got = wait_for("the notification at the printed URL", Duration::from_secs(30), || async {
        let a = http.get(&read_url).await.ok()?;
        (a.json["notifications"].as_array()?.len() == 1).then_some(a)
    })
    .await;
    assert_eq!(got.json["notifications"][0]["id"], sent.json["id"]);
    assert_eq!(got.json["notifications"][0]["from"], serde_json::json!({"id": "bob"}), "no directory: no names");
    // Every component's /metrics is where the table says, not on its API port.
    let text = http.get(producer_metrics).await.unwrap().text;
    assert!(text.contains(r#"herald_producer_notifications_total{outcome="sent"} 1"#), "{text}");
    assert_eq!(http.get(&format!("{producer}/metrics")).await.unwrap().status, 404);
    for row in &rows {
        let metrics = row.split_whitespace().nth(2).unwrap();
        assert!(http.get(metrics).await.unwrap().text.contains("herald_consumer_records_total"), "{row}");
    }

    // Read right after send, as a user does: every read holds the notification just sent (the
    // read barrier), and answers in milliseconds (figures printed for the record, not asserted).
    let consumer_urls: Vec<&str> = rows.iter().map(|r| r.split_whitespace().nth(1).unwrap()).collect();
    let mut latencies = Vec::new();
    for i in 0..50u64 {
        let to = i % 4 + 1;
        let started = std::time::Instant::now();
        let sent = http.send_form(producer, 1, to, &format!("pair {i}")).await.unwrap();
        assert_eq!(sent.status, 200, "{}", sent.text);
        let sent_at = std::time::Instant::now();
        // Any consumer answers for any user: rotate over them.
        let consumer = consumer_urls[i as usize % consumer_urls.len()];
        let got = http.get(&format!("{consumer}/notifications/{to}")).await.unwrap();
        latencies.push((sent_at - started, sent_at.elapsed()));
        assert_eq!(got.status, 200, "{}", got.text);
        let ids: Vec<&str> =
            got.json["notifications"].as_array().unwrap().iter().filter_map(|n| n["id"].as_str()).collect();
        assert!(ids.contains(&sent.json["id"].as_str().unwrap()), "pair {i}: {} not in {ids:?}", sent.json["id"]);
    }
    let mut texts = Vec::new();
    for row in &rows {
        texts.push(http.get(row.split_whitespace().nth(2).unwrap()).await.unwrap().text);
    }
    let buckets = herald_tests::metrics::end_to_end_buckets(&texts);
    eprintln!(
        "local mode, end-to-end (sentAt -> stored) of those 51: p50 {:.1} ms p99 {:.1} ms",
        herald_tests::metrics::histogram_quantile(&buckets, 0.5) * 1000.0,
        herald_tests::metrics::histogram_quantile(&buckets, 0.99) * 1000.0
    );
    let mut reads: Vec<f64> = latencies.iter().map(|(_, r)| r.as_secs_f64() * 1000.0).collect();
    reads.sort_by(f64::total_cmp);
    eprintln!(
        "local mode, 50 send-then-read pairs: read-after-send p50 {:.1} ms p99 {:.1} ms",
        reads[reads.len() / 2],
        reads[(reads.len() * 99).div_ceil(100) - 1]
    );

    let _ = Command::new("kill").args(["-s", "INT", &child.id().to_string()]).status();
    let status = tokio::task::block_in_place(|| {
        for _ in 0..600 {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("herald-local did not stop within 30 s of Ctrl-C:\n{}", read());
    });
    guard.1.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(status.success(), "{status:?}");
    let out = read();
    assert!(out.contains("Herald stopped."), "{out}");
    assert!(out.contains("producer     sent 51 notifications"), "{out}");
    let processed: u64 = out
        .lines()
        .filter(|l| l.trim_start().starts_with("consumer-") && l.contains(" processed "))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum();
    assert_eq!(processed, 51, "{out}");
    // No client is given a property it does not use (librdkafka warns about each at start).
    let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(!log.contains("CONFWARN") && !log.contains("will be ignored"), "{log}");
}
