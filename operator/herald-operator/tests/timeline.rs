//! A simulated timeline through the reconciler: a recording mocked API server, a lag probe fed
//! a series of numbers, and a simulated clock. Lag grows → consumers 1 → 6 and
//! `PartitionsSaturated`; the consumers drain it → back to the minimum only after the window.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_api::{KafkaSpec, NotificationPipeline, NotificationPipelineStatus};
use herald_operator::controller::{Context, FINALIZER, Topics, reconcile};
use herald_operator::desired::Images;
use herald_operator::metrics::OperatorMetrics;
use herald_operator::topic::{Ensured, LagReport, TopicError, WantedTopic};
use http::{Request, Response};
use http_body_util::BodyExt;
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;

#[derive(Default)]
struct Seen {
    consumer_replicas: Option<i64>,
    status: Option<serde_json::Value>,
    events: Vec<(String, String)>,
}

struct SeriesLag(Arc<Mutex<i64>>);

impl Topics for SeriesLag {
    async fn ensure(&self, _: &KafkaSpec, w: &WantedTopic) -> Result<Ensured, TopicError> {
        Ok(Ensured::Exists { partitions: w.partitions })
    }
    async fn partitions(&self, _: &KafkaSpec, _: &str) -> Result<Option<i32>, TopicError> {
        Ok(Some(6))
    }
    async fn lag(&self, _: &KafkaSpec, _: &str, _: &str) -> Result<Option<LagReport>, TopicError> {
        let total = *self.0.lock().unwrap();
        Ok(Some(LagReport {
            partitions: 6,
            per_partition: (0..6).map(|p| (p, if p == 0 { total } else { 0 })).collect(),
        }))
    }
}

async fn api_server(seen: Arc<Mutex<Seen>>, req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    let mut obj: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::json!({}));
    let mut seen = seen.lock().unwrap();
    if path.ends_with("/status") {
        seen.status = Some(obj["status"].clone());
        let status = obj["status"].take();
        obj = serde_json::to_value(pipeline()).unwrap();
        obj["status"] = status;
    } else if path.ends_with("/deployments/social-consumer") {
        let replicas = obj["spec"]["replicas"].clone();
        seen.consumer_replicas = replicas.as_i64();
        obj["status"] = serde_json::json!({"replicas": replicas, "readyReplicas": replicas});
    } else if path.ends_with("/deployments/social-producer") {
        obj["status"] = serde_json::json!({"replicas": 1, "readyReplicas": 1});
    } else if path.contains("/events") && (method == "POST" || method == "PATCH") {
        seen.events.push((obj["reason"].as_str().unwrap().to_string(), obj["note"].as_str().unwrap().to_string()));
    }
    Ok(Response::new(Body::from(serde_json::to_vec(&obj).unwrap())))
}

fn pipeline() -> NotificationPipeline {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "herald.dev/v1alpha1", "kind": "NotificationPipeline",
        "metadata": {"name": "social", "namespace": "apps", "uid": "u-1", "generation": 1, "finalizers": [FINALIZER]},
        "spec": {"kafka": {"bootstrapServers": "k:9092"}, "topic": {"management": "External"}},
    }))
    .unwrap()
}

fn condition(status: &NotificationPipelineStatus, type_: &str) -> String {
    status.conditions.iter().find(|c| c.type_ == type_).map(|c| c.status.clone()).unwrap_or_default()
}

#[tokio::test]
async fn lag_drives_consumers_up_to_the_partitions_and_down_after_the_window() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let lag = Arc::new(Mutex::new(0i64));
    let clock = Arc::new(Mutex::new(Timestamp::from_second(1_800_000_000).unwrap()));
    let server_seen = seen.clone();
    let client = kube::Client::new(tower::service_fn(move |req| api_server(server_seen.clone(), req)), "apps");
    let reporter = kube::runtime::events::Reporter { controller: "herald-operator".into(), instance: None };
    let registry = prometheus::Registry::new();
    let now = clock.clone();
    let ctx = Arc::new(Context {
        recorder: kube::runtime::events::Recorder::new(client.clone(), reporter),
        client,
        images: Images { producer: "p".into(), consumer: "c".into() },
        topics: SeriesLag(lag.clone()),
        metrics: OperatorMetrics::register(&registry).unwrap(),
        sync_period: Duration::from_secs(15),
        clock: Arc::new(move || *now.lock().unwrap()),
        scaling: Default::default(),
    });

    // (seconds, lag): idle, a growing backlog far beyond what 6 partitions absorb, then drained.
    let mut series: Vec<(i64, i64)> = vec![(0, 0), (15, 2500), (30, 5500), (45, 30_000)];
    series.extend((60..=150).step_by(15).map(|t| (t, 40_000)));
    series.extend((165..=600).step_by(15).map(|t| (t, 0)));

    let mut p = pipeline();
    let mut timeline = Vec::new();
    let mut saturated_at = None;
    for (t, l) in &series {
        *clock.lock().unwrap() = Timestamp::from_second(1_800_000_000 + t).unwrap();
        *lag.lock().unwrap() = *l;
        reconcile(Arc::new(p.clone()), ctx.clone()).await.unwrap();
        let status: NotificationPipelineStatus =
            serde_json::from_value(seen.lock().unwrap().status.clone().unwrap()).unwrap();
        if saturated_at.is_none() && condition(&status, "PartitionsSaturated") == "True" {
            saturated_at = Some(*t);
        }
        p.status = Some(status);
        timeline.push((*t, seen.lock().unwrap().consumer_replicas.unwrap()));
    }
    let at = |secs: i64| timeline.iter().find(|(t, _)| *t == secs).unwrap().1;
    assert_eq!(at(0), 1, "idle: the minimum");
    assert_eq!(at(15), 3, "2,500 records at 1,000 per consumer");
    assert_eq!(at(30), 6);
    assert_eq!(at(45), 6, "capped at the partitions");
    // Saturated once demand exceeded the partitions for a minute (from 45 s on).
    assert_eq!(saturated_at, Some(105));
    // Drained at 165 s, but 6 was last wanted at 150 s: down only once the window has passed.
    for t in (165..=450).step_by(15) {
        assert_eq!(at(t), 6, "{t}s: inside the stabilization window");
    }
    assert_eq!(at(465), 1, "back to the minimum after the window");
    assert_eq!(at(600), 1);

    let events = seen.lock().unwrap().events.clone();
    let scaled: Vec<&String> = events.iter().filter(|(r, _)| r == "Scaled").map(|(_, n)| n).collect();
    assert_eq!(scaled.len(), 4, "0->1, 1->3, 3->6, 6->1: {scaled:?}");
    assert!(scaled[1].contains("consumers 1 -> 3: lag 2500, 1000 records per consumer, 6 partitions"), "{scaled:?}");
    let saturated: Vec<&String> = events.iter().filter(|(r, _)| r == "PartitionsSaturated").map(|(_, n)| n).collect();
    assert_eq!(saturated.len(), 1, "one event when it starts, not one per reconcile");
    assert!(saturated[0].contains("consider 40 partitions"), "{saturated:?}");

    let status = p.status.unwrap();
    assert_eq!(condition(&status, "PartitionsSaturated"), "False");
    assert_eq!(condition(&status, "ScalingActive"), "True");
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
    assert!(text.contains(r#"herald_operator_scale_events_total{direction="up"} 3"#), "{text}");
    assert!(text.contains(r#"herald_operator_scale_events_total{direction="down"} 1"#), "{text}");
    assert!(text.contains(r#"herald_operator_consumer_lag{namespace="apps",pipeline="social"} 0"#), "{text}");
}
