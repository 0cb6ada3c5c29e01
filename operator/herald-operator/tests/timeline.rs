//! A simulated timeline through the reconciler on the stand-in API server: a lag series read by
//! the prober, a simulated clock. Lag grows → consumers 1 → 6 and `PartitionsSaturated`; the
//! consumers drain it → back to the minimum only after the stabilization window.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use herald_api::NotificationPipeline;
use herald_operator::controller::reconcile;
use herald_operator::fixtures::{FakeApiServer, FakeLag, FakeTopics, context, settings, social};
use k8s_openapi::jiff::Timestamp;

fn condition(p: &NotificationPipeline, type_: &str) -> String {
    let status = p.status.as_ref().unwrap();
    status.conditions.iter().find(|c| c.type_ == type_).map(|c| c.status.clone()).unwrap_or_default()
}

#[tokio::test]
async fn lag_drives_consumers_up_to_the_partitions_and_down_after_the_window() {
    let server = FakeApiServer::new();
    let lag = FakeLag::fixed(0);
    let (ctx, prober, registry) = context(&server, FakeTopics::existing(6), lag.clone(), settings());
    let clock = Arc::new(Mutex::new(Timestamp::from_second(1_800_000_000).unwrap()));
    let now = clock.clone();
    let mut ctx = Arc::try_unwrap(ctx).ok().expect("not shared yet");
    ctx.clock = Arc::new(move || *now.lock().unwrap());
    let ctx = Arc::new(ctx);
    server.put(
        "notificationpipelines",
        serde_json::to_value(social(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"},
            "topic": {"management": "External"}})))
        .unwrap(),
    );
    let stored = || -> NotificationPipeline {
        serde_json::from_value(server.get("notificationpipelines", "apps", "social").unwrap()).unwrap()
    };
    // Registered with the prober by a first reconcile.
    reconcile(Arc::new(stored()), ctx.clone()).await.unwrap();

    // (seconds, lag): idle, a growing backlog far beyond what 6 partitions absorb, then drained.
    let mut series: Vec<(i64, i64)> = vec![(0, 0), (15, 2500), (30, 5500), (45, 30_000)];
    series.extend((60..=150).step_by(15).map(|t| (t, 40_000)));
    series.extend((165..=600).step_by(15).map(|t| (t, 0)));

    let mut timeline = Vec::new();
    let mut saturated_at = None;
    for (t, l) in &series {
        *clock.lock().unwrap() = Timestamp::from_second(1_800_000_000 + t).unwrap();
        lag.lag.store(*l, Ordering::SeqCst);
        prober.probe_now().await;
        reconcile(Arc::new(stored()), ctx.clone()).await.unwrap();
        let p = stored();
        if saturated_at.is_none() && condition(&p, "PartitionsSaturated") == "True" {
            saturated_at = Some(*t);
        }
        let replicas =
            server.get("deployments", "apps", "social-consumer").unwrap()["spec"]["replicas"].as_i64().unwrap();
        timeline.push((*t, replicas));
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

    let events = server.list("events", Some("apps"));
    let notes = |reason: &str| -> Vec<String> {
        events.iter().filter(|e| e["reason"] == reason).map(|e| e["note"].as_str().unwrap().to_string()).collect()
    };
    let scaled = notes("Scaled");
    assert_eq!(scaled.len(), 4, "0->1, 1->3, 3->6, 6->1: {scaled:?}");
    assert!(
        scaled.iter().any(|n| n.contains("consumers 1 -> 3: lag 2500, 1000 records per consumer, 6 partitions")),
        "{scaled:?}"
    );
    let saturated = notes("PartitionsSaturated");
    assert_eq!(saturated.len(), 1, "one event when it starts, not one per reconcile");
    assert!(saturated[0].contains("consider 40 partitions"), "{saturated:?}");

    let p = stored();
    assert_eq!(condition(&p, "PartitionsSaturated"), "False");
    assert_eq!(condition(&p, "ScalingActive"), "True");
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
    assert!(text.contains(r#"herald_operator_scale_events_total{direction="up"} 3"#), "{text}");
    assert!(text.contains(r#"herald_operator_scale_events_total{direction="down"} 1"#), "{text}");
    assert!(text.contains(r#"herald_operator_consumer_lag{namespace="apps",pipeline="social"} 0"#), "{text}");
}
