//! The pipeline's status, computed from what the reconcile observed: pure functions.

use herald_api::labels::{self, Component};
use herald_api::{ConsumerStatus, NotificationPipeline, NotificationPipelineStatus, ProducerStatus, TopicStatus};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::desired::ConsumerReplicas;

pub const READY: &str = "Ready";
pub const TOPIC_READY: &str = "TopicReady";
pub const PRODUCER_AVAILABLE: &str = "ProducerAvailable";
pub const CONSUMERS_AVAILABLE: &str = "ConsumersAvailable";
pub const REPLICAS_CAPPED: &str = "ReplicasCapped";

/// What the reconcile learned about the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicState {
    pub name: String,
    /// The partition count consumers are capped at (the topic's, or the spec's until known).
    pub partitions: i32,
    pub ready: bool,
    pub reason: String,
    pub message: String,
}

/// A condition of this generation; `lastTransitionTime` is fixed up by [`merge_conditions`].
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// The new conditions, keeping each one's `lastTransitionTime` when its status did not change.
pub fn merge_conditions(previous: &[Condition], next: Vec<Condition>) -> Vec<Condition> {
    next.into_iter()
        .map(|mut c| {
            if let Some(old) = previous.iter().find(|o| o.type_ == c.type_ && o.status == c.status) {
                c.last_transition_time = old.last_transition_time.clone();
            }
            c
        })
        .collect()
}

fn counts(d: Option<&Deployment>) -> (i32, i32) {
    let s = d.and_then(|d| d.status.as_ref());
    (s.and_then(|s| s.replicas).unwrap_or(0), s.and_then(|s| s.ready_replicas).unwrap_or(0))
}

fn available(d: Option<&Deployment>, wanted: i32) -> (bool, String, String) {
    let (_, ready) = counts(d);
    match d {
        None => (false, "Waiting".into(), "not created yet".into()),
        Some(_) if wanted == 0 => (true, "ScaledToZero".into(), "scaled to zero".into()),
        Some(_) if ready >= wanted => (true, "Available".into(), format!("{ready}/{wanted} ready")),
        Some(_) if ready > 0 => (false, "Progressing".into(), format!("{ready}/{wanted} ready")),
        Some(_) => (false, "NoReadyPods".into(), format!("0/{wanted} ready")),
    }
}

/// The whole status of `pipeline` after a reconcile.
pub fn compute(
    pipeline: &NotificationPipeline,
    topic: &TopicState,
    producer: Option<&Deployment>,
    consumer: Option<&Deployment>,
    replicas: ConsumerReplicas,
    now: &Time,
) -> NotificationPipelineStatus {
    let name = pipeline.metadata.name.as_deref().unwrap_or_default();
    let generation = pipeline.metadata.generation;
    let previous = pipeline.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let producer_wanted = pipeline.spec.producer.replicas;
    let (producer_ok, producer_reason, producer_message) = available(producer, producer_wanted);
    let (consumers_ok, consumers_reason, consumers_message) = if topic.ready {
        available(consumer, replicas.desired)
    } else {
        (false, "WaitingForTopic".into(), format!("consumers start once topic {} is ready", topic.name))
    };
    let mut conditions = vec![
        condition(TOPIC_READY, topic.ready, &topic.reason, topic.message.clone(), generation, now),
        condition(PRODUCER_AVAILABLE, producer_ok, &producer_reason, producer_message, generation, now),
        condition(CONSUMERS_AVAILABLE, consumers_ok, &consumers_reason, consumers_message, generation, now),
        if replicas.capped {
            condition(
                REPLICAS_CAPPED,
                true,
                "AbovePartitionCount",
                format!(
                    "{} consumers requested, running {}: the topic has {} partitions and a consumer without a partition sits idle",
                    replicas.requested, replicas.desired, topic.partitions
                ),
                generation,
                now,
            )
        } else {
            condition(
                REPLICAS_CAPPED,
                false,
                "WithinPartitionCount",
                "the requested consumers fit the partitions",
                generation,
                now,
            )
        },
    ];
    let ready = topic.ready && producer_ok && consumers_ok;
    let (reason, message) = if ready {
        ("PipelineReady".to_string(), "topic, producer and consumers are ready".to_string())
    } else {
        let first = conditions.iter().find(|c| c.status == "False" && c.type_ != REPLICAS_CAPPED);
        first.map(|c| (c.reason.clone(), format!("{}: {}", c.type_, c.message))).unwrap_or_default()
    };
    conditions.insert(0, condition(READY, ready, &reason, message, generation, now));

    let (producer_replicas, producer_ready) = counts(producer);
    let (consumer_replicas, consumer_ready) = counts(consumer);
    NotificationPipelineStatus {
        observed_generation: generation,
        conditions: merge_conditions(previous, conditions),
        topic: Some(TopicStatus { name: topic.name.clone(), partitions: topic.partitions }),
        producer: Some(ProducerStatus { replicas: producer_replicas, ready_replicas: producer_ready }),
        consumer: Some(ConsumerStatus {
            replicas: consumer_replicas,
            ready_replicas: consumer_ready,
            desired_replicas: if topic.ready { replicas.desired } else { 0 },
            lag: pipeline.status.as_ref().and_then(|s| s.consumer.as_ref()).map_or(0, |c| c.lag),
            selector: labels::selector_string(name, Component::Consumer),
            last_scale_time: pipeline
                .status
                .as_ref()
                .and_then(|s| s.consumer.as_ref())
                .and_then(|c| c.last_scale_time.clone()),
        }),
    }
}

/// A pipeline that cannot be built: `Ready=False` with the reason, everything else kept.
pub fn invalid(pipeline: &NotificationPipeline, reason: &str, message: &str, now: &Time) -> NotificationPipelineStatus {
    let previous = pipeline.status.clone().unwrap_or_default();
    let generation = pipeline.metadata.generation;
    let mut conditions: Vec<Condition> = previous.conditions.iter().filter(|c| c.type_ != READY).cloned().collect();
    conditions.insert(0, condition(READY, false, reason, message, generation, now));
    NotificationPipelineStatus {
        observed_generation: generation,
        conditions: merge_conditions(&previous.conditions, conditions),
        ..previous
    }
}
