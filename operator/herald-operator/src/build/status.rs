//! The pipeline's status, computed from what the reconcile observed: pure functions.

use herald_api::labels::{self, Component};
use herald_api::{
    ConsumerStatus, MAX_PARTITION_LAG_ENTRIES, NotificationPipeline, NotificationPipelineStatus, PartitionLag,
    ProducerStatus, TopicStatus,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use herald_model::partition::MAX_HISTORY;

use super::reason::Reason;
use super::scaling::{Decision, recommended_partitions};
use super::validate::Auth;

pub const READY: &str = "Ready";
pub const TOPIC_READY: &str = "TopicReady";
pub const PRODUCER_AVAILABLE: &str = "ProducerAvailable";
pub const CONSUMERS_AVAILABLE: &str = "ConsumersAvailable";
pub const REPLICAS_CAPPED: &str = "ReplicasCapped";
pub const SCALING_ACTIVE: &str = "ScalingActive";
pub const PARTITIONS_SATURATED: &str = "PartitionsSaturated";
pub const AUTH_CONFIGURED: &str = "AuthConfigured";
/// `AuthConfigured=False`: the pipeline has no `spec.auth`.
pub const AUTH_OPEN: &str = "Open";

/// What the scaling step measured and decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    pub decision: Decision,
    /// `spec.consumer.replicas` was set.
    pub fixed: bool,
    /// Total lag and lag by partition, when the probe answered.
    pub lag: Option<(i64, Vec<(i32, i64)>)>,
    /// Why the probe did not answer.
    pub lag_error: Option<String>,
    pub lag_threshold: i64,
    /// When the consumer count last changed (now, if it changes in this reconcile).
    pub last_scale_time: Option<Time>,
}

/// What the reconcile learned about the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicState {
    pub name: String,
    /// The partition count consumers are capped at (the topic's, or the spec's until known).
    pub partitions: i32,
    pub ready: bool,
    pub reason: Reason,
    pub message: String,
    /// The operator created the topic for this pipeline (`Admin`).
    pub created: bool,
}

/// Every partition count the topic has had, oldest first: the previous status's history (or,
/// from a status written before histories were kept, its partition count), with the topic's
/// count added when it grew. Unchanged while the topic's count is not known; a topic with fewer
/// partitions than before, or another topic, starts a new history (its records are all new).
/// Keeps the newest [`MAX_HISTORY`] counts.
pub fn partition_history(previous: Option<&NotificationPipelineStatus>, topic: &TopicState) -> Vec<i32> {
    let before: Vec<i32> = match previous.and_then(|s| s.topic.as_ref()).filter(|t| t.name == topic.name) {
        Some(t) if !t.partition_history.is_empty() => t.partition_history.clone(),
        Some(t) if t.partitions > 0 => vec![t.partitions],
        _ => Vec::new(),
    };
    if !topic.ready || topic.partitions <= 0 {
        return before;
    }
    match before.last() {
        Some(last) if *last == topic.partitions => before,
        Some(last) if *last < topic.partitions => {
            let mut grown = before;
            grown.push(topic.partitions);
            let extra = grown.len().saturating_sub(MAX_HISTORY);
            grown.drain(..extra);
            grown
        }
        _ => vec![topic.partitions],
    }
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

/// `AuthConfigured`: which credentials the API takes, or `Open` (reason [`AUTH_OPEN`]).
pub fn auth_condition(pipeline: &NotificationPipeline, auth: &Auth, now: &Time) -> Condition {
    let generation = pipeline.metadata.generation;
    let key = |r: &herald_api::KeyRef| format!("Secret {} key {}", r.name, r.key);
    let mut parts = Vec::new();
    if let Some(token) = &auth.token {
        parts.push(format!("the service token in {}", key(token)));
    }
    if let Some(jwt) = &auth.jwt {
        let verified = match (&jwt.secret_ref, &jwt.public_key_secret_ref) {
            (Some(secret), _) => format!("the HMAC secret in {}", key(secret)),
            (None, Some(public)) => format!("the public key in {}", key(public)),
            (None, None) => "no key".to_string(),
        };
        let mut jwt_part = format!("user JWTs verified with {verified}");
        if let Some(issuer) = &jwt.issuer {
            jwt_part.push_str(&format!(", issuer {issuer}"));
        }
        if let Some(audience) = &jwt.audience {
            jwt_part.push_str(&format!(", audience {audience}"));
        }
        parts.push(jwt_part);
    }
    let reason = match (&auth.token, &auth.jwt) {
        (None, None) => {
            return condition(
                AUTH_CONFIGURED,
                false,
                AUTH_OPEN,
                "no spec.auth: anyone who reaches the producer or a consumer can send and read notifications for every user",
                generation,
                now,
            );
        }
        (Some(_), None) => "ServiceToken",
        (None, Some(_)) => "Jwt",
        (Some(_), Some(_)) => "ServiceTokenAndJwt",
    };
    let mut message = format!("requests need a bearer token: {}", parts.join("; or "));
    if pipeline.spec.producer.auth_token_secret_ref.is_some() {
        message.push_str(" (spec.producer.authTokenSecretRef is deprecated: move it to spec.auth.tokenSecretRef)");
    }
    condition(AUTH_CONFIGURED, true, reason, message, generation, now)
}

/// The whole status of `pipeline` after a reconcile; `scaling` is `None` until the topic is ready.
pub fn compute(
    pipeline: &NotificationPipeline,
    auth: &Auth,
    topic: &TopicState,
    producer: Option<&Deployment>,
    consumer: Option<&Deployment>,
    scaling: Option<&Scaling>,
    now: &Time,
) -> NotificationPipelineStatus {
    let name = pipeline.metadata.name.as_deref().unwrap_or_default();
    let generation = pipeline.metadata.generation;
    let previous_status = pipeline.status.clone().unwrap_or_default();
    let previous_consumer = previous_status.consumer.clone().unwrap_or_default();
    let producer_wanted = pipeline.spec.producer.replicas;
    let (producer_ok, producer_reason, producer_message) = available(producer, producer_wanted);
    let desired = scaling.map_or(0, |s| s.decision.replicas);
    let (consumers_ok, consumers_reason, consumers_message) = match scaling {
        Some(_) if topic.ready => available(consumer, desired),
        _ => (false, "WaitingForTopic".into(), format!("consumers start once topic {} is ready", topic.name)),
    };
    let c =
        |type_: &str, ok: bool, reason: &str, message: String| condition(type_, ok, reason, message, generation, now);
    let mut conditions = vec![
        c(TOPIC_READY, topic.ready, topic.reason.as_str(), topic.message.clone()),
        c(PRODUCER_AVAILABLE, producer_ok, &producer_reason, producer_message),
        c(CONSUMERS_AVAILABLE, consumers_ok, &consumers_reason, consumers_message),
    ];
    match scaling {
        Some(s) if s.decision.capped => conditions.push(c(
            REPLICAS_CAPPED,
            true,
            "AbovePartitionCount",
            format!(
                "{} consumers requested, running {}: the topic has {} partitions and a consumer without a partition sits idle",
                s.decision.demand, s.decision.replicas, topic.partitions
            ),
        )),
        _ => conditions.push(c(REPLICAS_CAPPED, false, "WithinPartitionCount", "the requested consumers fit the partitions".into())),
    }
    match scaling {
        None => conditions.push(c(
            SCALING_ACTIVE,
            false,
            "WaitingForTopic",
            "scaling starts once the topic is ready".into(),
        )),
        Some(s) if s.fixed => {
            conditions.push(c(SCALING_ACTIVE, false, "FixedReplicas", "spec.consumer.replicas is set".into()))
        }
        Some(s) if s.decision.lag_unknown => conditions.push(c(
            SCALING_ACTIVE,
            false,
            "LagUnknown",
            format!(
                "keeping {} consumers: the lag could not be read ({})",
                s.decision.replicas,
                s.lag_error.as_deref().unwrap_or("no answer")
            ),
        )),
        Some(s) => conditions.push(c(
            SCALING_ACTIVE,
            true,
            "LagBased",
            format!(
                "lag {} at {} records per consumer wants {} consumers",
                s.lag.as_ref().map_or(0, |l| l.0),
                s.lag_threshold,
                s.decision.demand
            ),
        )),
    }
    match scaling {
        Some(s) if s.decision.saturated => {
            let lag = s.lag.as_ref().map_or(0, |l| l.0);
            conditions.push(c(
                PARTITIONS_SATURATED,
                true,
                "DemandAbovePartitions",
                format!(
                    "lag {lag} needs {} consumers but the topic has {} partitions; consider {} partitions (raise spec.topic.partitions; reads follow users to their new partitions)",
                    s.decision.demand,
                    topic.partitions,
                    recommended_partitions(lag, s.lag_threshold)
                ),
            ))
        }
        _ => conditions.push(c(
            PARTITIONS_SATURATED,
            false,
            "WithinPartitions",
            "the partitions can absorb the lag".into(),
        )),
    }
    conditions.push(auth_condition(pipeline, auth, now));
    let ready = topic.ready && producer_ok && consumers_ok;
    let (reason, message) = if ready {
        ("PipelineReady".to_string(), "topic, producer and consumers are ready".to_string())
    } else {
        let first = conditions.iter().take(3).find(|c| c.status == "False");
        first.map(|c| (c.reason.clone(), format!("{}: {}", c.type_, c.message))).unwrap_or_default()
    };
    conditions.insert(0, condition(READY, ready, &reason, message, generation, now));

    let (producer_replicas, producer_ready) = counts(producer);
    let (consumer_replicas, consumer_ready) = match consumer {
        Some(_) => counts(consumer),
        None => (previous_consumer.replicas, previous_consumer.ready_replicas),
    };
    let (lag, partition_lag) = match scaling.and_then(|s| s.lag.as_ref()) {
        Some((total, per)) => {
            let mut lagging: Vec<PartitionLag> =
                per.iter().filter(|(_, l)| *l > 0).map(|(p, l)| PartitionLag { partition: *p, lag: *l }).collect();
            lagging.sort_by(|a, b| b.lag.cmp(&a.lag).then(a.partition.cmp(&b.partition)));
            lagging.truncate(MAX_PARTITION_LAG_ENTRIES);
            (*total, lagging)
        }
        None => (previous_consumer.lag, previous_consumer.partition_lag.clone()),
    };
    NotificationPipelineStatus {
        observed_generation: generation,
        conditions: merge_conditions(&previous_status.conditions, conditions),
        topic: Some(TopicStatus {
            name: topic.name.clone(),
            partitions: topic.partitions,
            created: topic.created,
            partition_history: partition_history(pipeline.status.as_ref(), topic),
        }),
        producer: Some(ProducerStatus { replicas: producer_replicas, ready_replicas: producer_ready }),
        consumer: Some(ConsumerStatus {
            replicas: consumer_replicas,
            ready_replicas: consumer_ready,
            desired_replicas: if scaling.is_some() { desired } else { previous_consumer.desired_replicas },
            lag,
            selector: labels::selector_string(name, Component::Consumer),
            last_scale_time: scaling.and_then(|s| s.last_scale_time.clone()).or(previous_consumer.last_scale_time),
            partition_lag,
        }),
    }
}

/// A pipeline that cannot be reconciled as it is: `Ready=False` with the reason, everything else
/// kept.
pub fn refused(
    pipeline: &NotificationPipeline,
    reason: &Reason,
    message: &str,
    now: &Time,
) -> NotificationPipelineStatus {
    let previous = pipeline.status.clone().unwrap_or_default();
    let generation = pipeline.metadata.generation;
    let mut conditions: Vec<Condition> = previous.conditions.iter().filter(|c| c.type_ != READY).cloned().collect();
    conditions.insert(0, condition(READY, false, reason.as_str(), message, generation, now));
    NotificationPipelineStatus {
        observed_generation: generation,
        conditions: merge_conditions(&previous.conditions, conditions),
        ..previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(partitions: i32, ready: bool) -> TopicState {
        TopicState {
            name: "t".into(),
            partitions,
            ready,
            reason: Reason::TopicPending,
            message: String::new(),
            created: false,
        }
    }

    fn with(name: &str, partitions: i32, history: &[i32]) -> NotificationPipelineStatus {
        NotificationPipelineStatus {
            topic: Some(TopicStatus {
                name: name.into(),
                partitions,
                created: false,
                partition_history: history.to_vec(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_partition_history_keeps_every_count_the_topic_had() {
        let cases: &[(&str, Option<NotificationPipelineStatus>, TopicState, &[i32])] = &[
            ("first sight", None, topic(3, true), &[3]),
            ("not known yet", None, topic(3, false), &[]),
            ("unchanged", Some(with("t", 3, &[3])), topic(3, true), &[3]),
            ("grown", Some(with("t", 3, &[3])), topic(6, true), &[3, 6]),
            ("grown again", Some(with("t", 6, &[3, 6])), topic(12, true), &[3, 6, 12]),
            ("count unknown meanwhile", Some(with("t", 6, &[3, 6])), topic(4, false), &[3, 6]),
            ("a status from before histories", Some(with("t", 3, &[])), topic(6, true), &[3, 6]),
            ("fewer partitions: a new topic", Some(with("t", 6, &[3, 6])), topic(2, true), &[2]),
            ("another topic", Some(with("u", 3, &[3])), topic(6, true), &[6]),
        ];
        for (what, previous, now, want) in cases {
            assert_eq!(partition_history(previous.as_ref(), now), want.to_vec(), "{what}");
        }
        let long: Vec<i32> = (1..=MAX_HISTORY as i32).collect();
        let grown = partition_history(Some(&with("t", MAX_HISTORY as i32, &long)), &topic(100, true));
        assert_eq!(grown.len(), MAX_HISTORY);
        assert_eq!((grown[0], grown[MAX_HISTORY - 1]), (2, 100));
    }
}
