//! Events on pipelines: scale changes, saturation, refusals.

use herald_api::NotificationPipeline;
use kube::Resource;
use kube::runtime::events::{Event, EventType};

use super::Context;
use crate::build::scaling;
use crate::build::status::{self, Scaling, TopicState};

/// Publishes one Event on `p` (a failure to publish is logged, never fatal).
pub async fn publish<T>(
    p: &NotificationPipeline,
    ctx: &Context<T>,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
    if let Err(error) = ctx.recorder.publish(&event, &p.object_ref(&())).await {
        tracing::warn!(%error, reason, "publishing an event failed");
    }
}

/// An Event on every scale change (from, to, why) and when partitions become saturated.
pub async fn scaling<T>(
    p: &NotificationPipeline,
    ctx: &Context<T>,
    s: &Scaling,
    previous: Option<i32>,
    topic: &TopicState,
) {
    let from = previous.unwrap_or(0);
    let to = s.decision.replicas;
    if from != to {
        let direction = if to > from { "up" } else { "down" };
        ctx.metrics.scale_events.with_label_values(&[direction]).inc();
        let why = match (&s.lag, s.fixed) {
            (_, true) => format!("spec.consumer.replicas asks for {}", s.decision.demand),
            (Some((lag, _)), false) => {
                format!("lag {lag}, {} records per consumer, {} partitions", s.lag_threshold, topic.partitions)
            }
            (None, false) => "lag unknown".to_string(),
        };
        // The action names the transition: kube's recorder folds events with the same key into a
        // series that keeps the first note, so each distinct change gets its own event.
        publish(
            p,
            ctx,
            EventType::Normal,
            "Scaled",
            &format!("Scale{from}To{to}"),
            format!("consumers {from} -> {to}: {why}"),
        )
        .await;
    }
    let was_saturated = p
        .status
        .as_ref()
        .is_some_and(|st| st.conditions.iter().any(|c| c.type_ == status::PARTITIONS_SATURATED && c.status == "True"));
    if s.decision.saturated && !was_saturated {
        let lag = s.lag.as_ref().map_or(0, |l| l.0);
        let note = format!(
            "lag {lag} needs {} consumers but the topic has {} partitions; consider {} partitions",
            s.decision.demand,
            topic.partitions,
            scaling::recommended_partitions(lag, s.lag_threshold)
        );
        publish(p, ctx, EventType::Warning, "PartitionsSaturated", "RecommendPartitions", note).await;
    }
}
