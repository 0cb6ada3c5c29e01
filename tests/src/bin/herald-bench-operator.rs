//! Reconcile throughput and memory: N pipelines through the operator's reconcile against an
//! in-process mocked API server that answers every request as the API server would (applied
//! objects echoed back with a ready status). Prints figures; asserts nothing.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use herald_api::{KafkaSpec, NotificationPipeline};
use herald_operator::controller::{Context, FINALIZER, Topics, reconcile};
use herald_operator::desired::Images;
use herald_operator::metrics::OperatorMetrics;
use herald_operator::topic::{Ensured, LagReport, TopicError, WantedTopic};
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;

#[derive(Parser)]
#[command(name = "herald-bench-operator", about = "Reconcile throughput and memory against a mocked API server")]
struct Args {
    /// Pipelines to reconcile.
    #[arg(long, default_value_t = 1000)]
    pipelines: usize,
    /// Reconciles in flight at once (the controller's concurrency).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Rounds over all pipelines (the first creates, later ones re-apply, as a resync does).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

struct ExistingTopics;

impl Topics for ExistingTopics {
    async fn ensure(&self, _: &KafkaSpec, w: &WantedTopic) -> Result<Ensured, TopicError> {
        Ok(Ensured::Exists { partitions: w.partitions })
    }
    async fn partitions(&self, _: &KafkaSpec, _: &str) -> Result<Option<i32>, TopicError> {
        Ok(Some(6))
    }
    async fn lag(&self, _: &KafkaSpec, _: &str, _: &str) -> Result<Option<LagReport>, TopicError> {
        Ok(Some(LagReport { partitions: 6, per_partition: (0..6).map(|p| (p, 0)).collect() }))
    }
}

/// The API server: echoes applied objects with a ready status; status patches return the pipeline.
async fn api_server(req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let bytes = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mut obj: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::json!({}));
    if path.ends_with("/status") {
        let name = path.rsplit('/').nth(1).unwrap_or_default().to_string();
        let status = obj["status"].take();
        obj = serde_json::json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "NotificationPipeline",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {"kafka": {"bootstrapServers": "k:9092"}},
            "status": status,
        });
    } else if path.contains("/deployments/") {
        let replicas = obj["spec"]["replicas"].clone();
        obj["status"] = serde_json::json!({"replicas": replicas, "readyReplicas": replicas});
    }
    Ok(Response::new(Body::from(Bytes::from(serde_json::to_vec(&obj).unwrap()))))
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = kube::Client::new(tower::service_fn(api_server), "bench");
    let reporter = kube::runtime::events::Reporter { controller: "herald-operator".into(), instance: None };
    let ctx = Arc::new(Context {
        recorder: kube::runtime::events::Recorder::new(client.clone(), reporter),
        client,
        images: Images { producer: "herald:bench".into(), consumer: "herald:bench".into() },
        topics: ExistingTopics,
        metrics: OperatorMetrics::register(&prometheus::Registry::new()).unwrap(),
        sync_period: Duration::from_secs(15),
        clock: herald_operator::controller::system_clock(),
        scaling: Default::default(),
    });
    let pipelines: Vec<Arc<NotificationPipeline>> = (0..args.pipelines)
        .map(|i| {
            Arc::new(
                serde_json::from_value(serde_json::json!({
                    "apiVersion": "herald.dev/v1alpha1", "kind": "NotificationPipeline",
                    "metadata": {"name": format!("p{i}"), "namespace": "bench", "uid": format!("uid-{i}"), "generation": 1, "finalizers": [FINALIZER]},
                    "spec": {"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "External"}},
                }))
                .unwrap(),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = rss_kib("VmRSS:");
    println!(
        "operator reconcile: {} pipelines x {} rounds, {} in flight, mocked API server in process",
        args.pipelines, args.rounds, args.concurrency
    );
    use futures::StreamExt;
    for round in 1..=args.rounds {
        let start = Instant::now();
        let results: Vec<_> = futures::stream::iter(pipelines.iter().cloned())
            .map(|p| reconcile(p, ctx.clone()))
            .buffer_unordered(args.concurrency)
            .collect()
            .await;
        let took = start.elapsed().as_secs_f64();
        let failed = results.iter().filter(|r| r.is_err()).count();
        println!(
            "  round {round}: {:.0} reconciles/s ({} in {took:.2} s, {failed} failed)",
            args.pipelines as f64 / took,
            args.pipelines
        );
    }
    println!(
        "  resident memory     idle {:.1} MiB, peak {:.1} MiB",
        idle as f64 / 1024.0,
        rss_kib("VmHWM:") as f64 / 1024.0
    );
}
