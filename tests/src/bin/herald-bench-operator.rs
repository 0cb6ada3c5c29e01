//! The operator under steady traffic: the real controller (`herald-operator run`, through
//! `run_with`) against the stand-in API server, which runs as its own process
//! (`herald-fake-apiserver`) so that this process's memory is the operator's; N pipelines whose
//! lag changes on every probe. Prints how many reconciles, lag probes and status writes the
//! operator makes over a number of sync periods once the pipelines are ready, and its memory.
//! Figures; asserts nothing.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use herald_api::NotificationPipeline;
use herald_operator::fixtures::{FakeLag, FakeTopics, pipeline, run_args};
use herald_operator::run::run_with;
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "herald-bench-operator",
    about = "The operator's reconciles, probes, status writes and memory under steady traffic"
)]
struct Args {
    /// Pipelines.
    #[arg(long, default_value_t = 1000)]
    pipelines: usize,
    /// Sync periods measured once every pipeline is ready.
    #[arg(long, default_value_t = 10)]
    periods: u32,
    /// The operator's sync period.
    #[arg(long, default_value = "3s", value_parser = herald_model::duration::parse_duration)]
    sync_period: Duration,
}

fn kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn mib(k: u64) -> f64 {
    k as f64 / 1024.0
}

fn counter(registry: &prometheus::Registry, name: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value() as u64))
        .sum()
}

/// Pipelines the operator reports Ready (from its metrics: the bench itself reads nothing from
/// the API server meanwhile).
fn ready(registry: &prometheus::Registry) -> usize {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "herald_operator_pipeline_ready")
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_gauge().get_value() as usize))
        .sum()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut stand_in = Command::new(herald_tests::process::bin("herald-fake-apiserver"))
        .args(["--listen", "127.0.0.1:0", "--history", "1024"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting herald-fake-apiserver");
    let mut line = String::new();
    std::io::BufReader::new(stand_in.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").expect("the stand-in's address").to_string();
    let stand_in_pid = stand_in.id().to_string();
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let api: Api<NotificationPipeline> = Api::namespaced(client.clone(), "bench");
    for i in 0..args.pipelines {
        let p = pipeline(
            &format!("p{i}"),
            "bench",
            serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "External"}}),
        );
        api.create(&PostParams::default(), &p).await.unwrap();
    }
    let lag = FakeLag::changing(13);
    let registry = prometheus::Registry::new();
    let shutdown = CancellationToken::new();
    let operator = {
        let (client, lag, registry, shutdown) = (client.clone(), lag.clone(), registry.clone(), shutdown.clone());
        let run = run_args(args.sync_period);
        tokio::spawn(
            async move { run_with(client, FakeTopics::existing(6), lag, &run, registry, shutdown).await.unwrap() },
        )
    };
    let started = Instant::now();
    while ready(&registry) < args.pipelines {
        assert!(started.elapsed() < Duration::from_secs(600), "pipelines not ready after 10 minutes");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "creation: {} pipelines ready in {:.1} s, {} reconciles, {} probes, {} status writes",
        args.pipelines,
        started.elapsed().as_secs_f64(),
        counter(&registry, "herald_operator_reconciliations_total"),
        lag.probes.load(Ordering::SeqCst),
        counter(&registry, "herald_operator_status_writes_total"),
    );
    let (r0, w0, p0) = (
        counter(&registry, "herald_operator_reconciliations_total"),
        counter(&registry, "herald_operator_status_writes_total"),
        lag.probes.load(Ordering::SeqCst),
    );
    tokio::time::sleep(args.sync_period * args.periods).await;
    let reconciles = counter(&registry, "herald_operator_reconciliations_total") - r0;
    let writes = counter(&registry, "herald_operator_status_writes_total") - w0;
    let probes = lag.probes.load(Ordering::SeqCst) - p0;
    println!(
        "steady traffic: {} pipelines, {} sync periods, {reconciles} reconciles, {probes} probes, {writes} status writes, RSS {:.1} MiB",
        args.pipelines,
        args.periods,
        mib(kib("self", "VmRSS:"))
    );
    println!(
        "  sync period {:?}; operator peak RSS {:.1} MiB; the stand-in API server (its own process) RSS {:.1} MiB",
        args.sync_period,
        mib(kib("self", "VmHWM:")),
        mib(kib(&stand_in_pid, "VmRSS:")),
    );
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), operator).await;
    let _ = stand_in.kill();
    let _ = stand_in.wait();
}
