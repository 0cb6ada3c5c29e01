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
    assert!(read_url.ends_with("/notifications/2"), "{read_url}");

    let http = Http::new();
    let sent = http.send_form(producer, 1, 2, "Hello Bruno").await.unwrap();
    assert_eq!(sent.status, 200, "{}", sent.text);
    let got = wait_for("the notification at the printed URL", Duration::from_secs(30), || async {
        let a = http.get(&read_url).await.ok()?;
        (a.json["notifications"].as_array()?.len() == 1).then_some(a)
    })
    .await;
    assert_eq!(got.json["notifications"][0]["id"], sent.json["id"]);
    // Every component's /metrics is where the table says, not on its API port.
    let text = http.get(producer_metrics).await.unwrap().text;
    assert!(text.contains(r#"herald_producer_notifications_total{outcome="sent"} 1"#), "{text}");
    assert_eq!(http.get(&format!("{producer}/metrics")).await.unwrap().status, 404);
    for row in &rows {
        let metrics = row.split_whitespace().nth(2).unwrap();
        assert!(http.get(metrics).await.unwrap().text.contains("herald_consumer_records_total"), "{row}");
    }

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
    assert!(status.success(), "{status:?}");
    let out = read();
    assert!(out.contains("Herald stopped."), "{out}");
    assert!(out.contains("producer     sent 1 notifications"), "{out}");
    let processed: u64 = out
        .lines()
        .filter(|l| l.trim_start().starts_with("consumer-") && l.contains(" processed "))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum();
    assert_eq!(processed, 1, "{out}");
}
