//! The reconciler, read top to bottom: validate → topic → build (pure) → apply → status.
//! Each step is its own module; this one holds what they share and the sequence.
//!
//! - [`crate::build::validate`]: every spec check and the tenancy policy, once;
//! - [`topic`]: the KafkaTopic (Strimzi) or the topic in Kafka (Admin, External);
//! - [`peer_token`]: the consumers' peer-token Secret, created once;
//! - [`crate::build::desired`], [`crate::build::strimzi`]: the objects (pure);
//! - [`apply`]: children applied in their declared order, none adopted from someone else;
//! - [`crate::build::status`]: the status (pure), written only when it differs;
//! - [`cleanup`]: the finalizer, only when a KafkaTopic must be deleted with the pipeline.

mod access;
mod apply;
pub mod backoff;
mod children;
mod cleanup;
mod events;
mod peer_token;
mod strimzi_api;
mod topic;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_api::labels::FIELD_MANAGER;
use herald_api::{NotificationPipeline, NotificationPipelineStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::{Client, ResourceExt};

pub use apply::{Conflict, Owner, owner_of};
pub use backoff::Backoff;
pub use children::ChildIndex;
pub use strimzi_api::StrimziApis;

use crate::build::desired::{self, Defaults, Observed};
use crate::build::names;
use crate::build::reason::Reason;
use crate::build::scaling::{self, History, Policy};
use crate::build::status::{self, Scaling, TopicState};
use crate::build::validate::{TenancyPolicy, ValidPipeline, validate};
use crate::kafka::admin::Topics;
use crate::kafka::lag::LagTarget;
use crate::kafka::prober::{LagView, Prober};
use crate::metrics::OperatorMetrics;

pub use crate::build::names::FINALIZER;

/// Annotation whose change asks for a reconcile (e.g. after a name conflict was cleared):
/// `kubectl annotate npipe <name> herald.dev/reconcile-requested-at="$(date +%s)" --overwrite`.
pub const RECONCILE_REQUEST: &str = "herald.dev/reconcile-requested-at";

/// The operator's settings for every reconcile.
#[derive(Debug, Clone)]
pub struct Settings {
    pub defaults: Defaults,
    /// How often a pipeline is reconciled (and its lag probed) when nothing else changes.
    pub sync_period: Duration,
    /// How long a failing cleanup is retried before the finalizer is released anyway.
    pub cleanup_timeout: Duration,
    pub policy: TenancyPolicy,
}

/// Where the reconciler reads the time.
pub type Clock = Arc<dyn Fn() -> k8s_openapi::jiff::Timestamp + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(k8s_openapi::jiff::Timestamp::now)
}

/// What every reconcile shares.
pub struct Context<T> {
    pub client: Client,
    /// Publishes Events on pipelines.
    pub recorder: Recorder,
    pub settings: Settings,
    pub topics: T,
    pub prober: Arc<Prober>,
    pub metrics: OperatorMetrics,
    /// The time; a simulated clock in tests.
    pub clock: Clock,
    /// The controlling owners of the children the controller watches; `None`: look each child
    /// up.
    pub children: Option<Arc<ChildIndex>>,
    pub backoff: Backoff,
    pub strimzi: StrimziApis,
    /// The scaling history of each pipeline (`namespace/name`).
    pub scaling: Mutex<HashMap<String, History>>,
    /// (pipeline uid, topic) of `Admin` topics this operator created.
    pub created_topics: Mutex<HashSet<(String, String)>>,
    /// The refusal each pipeline was last warned about, so that each gets one Warning Event.
    pub warned: Mutex<HashMap<String, String>>,
}

impl<T: Topics> Context<T> {
    pub fn new(
        client: Client,
        recorder: Recorder,
        settings: Settings,
        topics: T,
        prober: Arc<Prober>,
        metrics: OperatorMetrics,
    ) -> Self {
        Self {
            client,
            recorder,
            settings,
            topics,
            prober,
            metrics,
            clock: system_clock(),
            children: None,
            backoff: Backoff::default(),
            strimzi: StrimziApis::default(),
            scaling: Mutex::new(HashMap::new()),
            created_topics: Mutex::new(HashSet::new()),
            warned: Mutex::new(HashMap::new()),
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a reconcile failed, by step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("discovering the Strimzi (kafka.strimzi.io) APIs: {0}")]
    Discovery(#[source] kube::Error),
    #[error("reading {kind} {name} to check who owns it: {source}")]
    Read { kind: &'static str, name: String, source: kube::Error },
    #[error("applying {kind} {name}: {source}")]
    Apply { kind: &'static str, name: String, source: kube::Error },
    #[error("deleting KafkaTopic {name}: {source}")]
    DeleteTopic { name: String, source: kube::Error },
    #[error("reading Secret {name}: {source}")]
    ReadSecret { name: String, source: kube::Error },
    #[error("creating Secret {name} (the consumers' peer token): {source}")]
    CreateSecret { name: String, source: kube::Error },
    #[error("generating a peer token: the system's random number generator failed")]
    Random,
    #[error("deleting {kind} {name}: {source}")]
    Delete { kind: &'static str, name: String, source: kube::Error },
    #[error("updating the status: {0}")]
    Status(#[source] kube::Error),
    #[error("updating the finalizer: {0}")]
    Finalizer(#[source] kube::Error),
}

impl Error {
    /// Whether retrying can help. The API server refusing a request (4xx other than conflict
    /// and throttling) will refuse it again until something changes — except during cleanup,
    /// which is retried (with backoff) until the cleanup timeout whatever the error.
    pub fn is_transient(&self) -> bool {
        let source = match self {
            Error::DeleteTopic { .. } | Error::Random => return true,
            Error::Discovery(e) | Error::Status(e) | Error::Finalizer(e) => e,
            Error::Read { source, .. }
            | Error::Apply { source, .. }
            | Error::ReadSecret { source, .. }
            | Error::CreateSecret { source, .. }
            | Error::Delete { source, .. } => source,
        };
        match source {
            kube::Error::Api(s) => !(400..500).contains(&s.code) || s.code == 409 || s.code == 429,
            _ => true,
        }
    }

    /// A bounded label for `herald_operator_reconcile_errors_total`.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Discovery(_) => "discovery",
            Error::Read { .. } => "read",
            Error::Apply { .. } => "apply",
            Error::DeleteTopic { .. } => "delete_topic",
            Error::ReadSecret { .. } => "read_secret",
            Error::CreateSecret { .. } | Error::Random => "peer_token",
            Error::Delete { .. } => "delete",
            Error::Status(_) => "status",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

/// Requeue while a pipeline converges (topic pending, pods starting) and Strimzi is missing.
const CONVERGING: Duration = Duration::from_secs(15);
const STRIMZI_MISSING: Duration = Duration::from_secs(60);
/// Requeue while a predecessor's peer-token Secret is being collected.
const PEER_TOKEN_PENDING: Duration = Duration::from_secs(5);

pub async fn reconcile<T: Topics>(pipeline: Arc<NotificationPipeline>, ctx: Arc<Context<T>>) -> Result<Action, Error> {
    let start = Instant::now();
    let key = names::key(&pipeline);
    let result = if pipeline.metadata.deletion_timestamp.is_some() {
        cleanup::on_delete(&pipeline, &ctx).await
    } else {
        reconcile_pipeline(&pipeline, &ctx).await
    };
    ctx.metrics.duration.observe(start.elapsed().as_secs_f64());
    let outcome = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics.reconciliations.with_label_values(&[outcome]).inc();
    if result.is_ok() {
        ctx.backoff.succeeded(&key);
    }
    result
}

/// Transient failures retry with per-object exponential backoff; permanent ones wait for the
/// pipeline to change.
pub fn error_policy<T: Topics>(pipeline: Arc<NotificationPipeline>, error: &Error, ctx: Arc<Context<T>>) -> Action {
    let category = error.category();
    ctx.metrics.errors.with_label_values(&[category]).inc();
    let transient = error.is_transient();
    let retry = transient.then(|| ctx.backoff.failed(&names::key(&pipeline)));
    tracing::warn!(
        namespace = pipeline.namespace().unwrap_or_default(),
        pipeline = pipeline.name_any(),
        error = %error,
        category,
        transient,
        retry_in_ms = retry.map(|r| r.as_millis() as u64),
        "reconcile failed"
    );
    match retry {
        Some(delay) => {
            ctx.metrics.retries.inc();
            Action::requeue(delay)
        }
        None => Action::await_change(),
    }
}

/// validate → topic → build → apply → status.
async fn reconcile_pipeline<T: Topics>(p: &NotificationPipeline, ctx: &Context<T>) -> Result<Action, Error> {
    let now = Time((ctx.clock)());
    let valid = match validate(p, &ctx.settings.policy) {
        Ok(valid) => valid,
        Err(e) => return refuse(p, ctx, e.reason(), &e.to_string(), &now).await,
    };
    cleanup::keep_finalizer_only_when_needed(&valid, ctx).await?;
    let access = access::kafka_access(&valid, ctx).await?;
    let topic = match topic::state(&valid, ctx, &access).await? {
        Ok(topic) => topic,
        Err(conflict) => return refuse(p, ctx, Reason::NameConflict, &conflict.to_string(), &now).await,
    };
    let scaling = if topic.ready { Some(scale(&valid, ctx, &access, &topic, &now)) } else { None };
    let previous_desired = p.status.as_ref().and_then(|s| s.consumer.as_ref()).map(|c| c.desired_replicas);
    let consumers = scaling.as_ref().map_or(previous_desired.unwrap_or(0), |s| s.decision.replicas);
    let peer_token = match peer_token::check(&valid, ctx).await? {
        peer_token::PeerToken::Ready(uid) => Some(uid),
        peer_token::PeerToken::Absent => None,
        peer_token::PeerToken::Conflict(conflict) => {
            return refuse(p, ctx, Reason::NameConflict, &conflict.to_string(), &now).await;
        }
        peer_token::PeerToken::Pending(why) => {
            refuse(p, ctx, Reason::PeerTokenPending, &why, &now).await?;
            return Ok(Action::requeue(PEER_TOKEN_PENDING));
        }
    };
    let mut observed = Observed::new(consumers, peer_token.clone().unwrap_or_default());
    observed.partition_history = status::partition_history(p.status.as_ref(), &topic);
    let mut children = desired::children(&valid, &ctx.settings.defaults, &observed);
    match apply::check_all(&valid, ctx, &children, topic.ready).await? {
        apply::Check::Clear => {}
        apply::Check::Conflict(conflict) => {
            return refuse(p, ctx, Reason::NameConflict, &conflict.to_string(), &now).await;
        }
        apply::Check::NoKafkaUserApi => {
            let message = "spec.kafka.authentication without producerSecretName and consumerSecretName needs Strimzi's KafkaUser API (kafka.strimzi.io), which this cluster does not serve";
            refuse(p, ctx, Reason::StrimziNotInstalled, message, &now).await?;
            return Ok(Action::requeue(STRIMZI_MISSING));
        }
    }
    if peer_token.is_none() {
        observed.peer_token_uid = peer_token::create(&valid, ctx).await?;
        children = desired::children(&valid, &ctx.settings.defaults, &observed);
    }
    let applied = apply::all(&valid, ctx, &children, topic.ready).await?;
    let mut status = status::compute(
        p,
        &valid.auth,
        &topic,
        Some(&applied.producer),
        applied.consumer.as_ref(),
        scaling.as_ref(),
        &now,
    );
    if let Some(topic_status) = status.topic.as_mut() {
        topic_status.created = topic.created;
    }
    let ready = status.conditions.first().is_some_and(|c| c.status == "True");
    // Probed from now on, once its children run: only lag-scaled pipelines reachable with
    // credentials (and only after the apply, so that a refused pipeline is never probed).
    match (&scaling, access.spec()) {
        (Some(s), Ok(kafka)) if !s.fixed => ctx.prober.register(
            &valid.key(),
            kafka,
            LagTarget { topic: topic.name.clone(), group: valid.group.clone() },
        ),
        _ => ctx.prober.unregister(&valid.key()),
    }
    let opened = is_open(Some(&status)) && !is_open(p.status.as_ref());
    write_status(p, ctx, status).await?;
    lock(&ctx.warned).remove(&valid.key());
    if opened {
        let note = "no spec.auth: anyone who reaches the producer or a consumer can send and read notifications for every user; set spec.auth.tokenSecretRef or spec.auth.jwt".to_string();
        events::publish(p, ctx, EventType::Warning, "AuthOpen", "Reconcile", note).await;
    }
    if let Some(s) = &scaling {
        events::scaling(p, ctx, s, previous_desired, &topic).await;
    }
    let labels = [valid.namespace.as_str(), valid.name.as_str()];
    ctx.metrics.ready.with_label_values(&labels).set(i64::from(ready));
    ctx.metrics.topic_partitions.with_label_values(&labels).set(i64::from(topic.partitions));
    ctx.metrics.consumer_desired_replicas.with_label_values(&labels).set(i64::from(if topic.ready {
        consumers
    } else {
        0
    }));
    if let Some((lag, _)) = scaling.as_ref().and_then(|s| s.lag.as_ref()) {
        ctx.metrics.consumer_lag.with_label_values(&labels).set(*lag);
    }
    tracing::debug!(
        namespace = valid.namespace,
        pipeline = valid.name,
        ready,
        topic_ready = topic.ready,
        partitions = topic.partitions,
        consumers,
        "reconciled"
    );
    let sync = ctx.settings.sync_period;
    Ok(Action::requeue(match (ready, &topic.reason) {
        // The producer waits for the consumers' rollout; their Deployment's watch events bring
        // the next reconcile sooner, this is the fallback.
        _ if applied.producer_held => CONVERGING.min(sync),
        (true, _) => sync,
        (false, Reason::StrimziNotInstalled) => STRIMZI_MISSING,
        _ => CONVERGING.min(sync),
    }))
}

/// Whether `status` says the pipeline's API is open (one Warning Event when it becomes so).
fn is_open(status: Option<&NotificationPipelineStatus>) -> bool {
    status
        .into_iter()
        .flat_map(|s| &s.conditions)
        .any(|c| c.type_ == status::AUTH_CONFIGURED && c.status == "False" && c.reason == status::AUTH_OPEN)
}

/// The scaling rule over the prober's latest lag (registering the pipeline with it).
fn scale<T: Topics>(
    valid: &ValidPipeline,
    ctx: &Context<T>,
    access: &access::KafkaAccess,
    topic: &TopicState,
    now: &Time,
) -> Scaling {
    let spec = &valid.spec().consumer;
    let policy = Policy {
        fixed: spec.replicas,
        min: spec.min_replicas,
        max: spec.max_replicas,
        lag_threshold: spec.lag_threshold,
        stabilization: Duration::from_secs(spec.scale_down_stabilization_seconds.max(0) as u64),
        standbys: spec.standby_replicas,
    };
    let key = valid.key();
    let (lag, lag_error) = match (&policy.fixed, access.spec()) {
        (Some(_), _) => (None, None),
        (None, Err(why)) => (None, Some(why.to_string())),
        (None, Ok(_)) => match ctx.prober.latest(&key) {
            LagView::Known(report) => (Some((report.total(), report.per_partition)), None),
            LagView::Unknown(why) => (None, Some(why)),
        },
    };
    let previous = valid.pipeline.status.as_ref().and_then(|s| s.consumer.as_ref());
    let current = previous.map(|c| c.desired_replicas);
    let decision = {
        let mut histories = lock(&ctx.scaling);
        let history = histories.entry(key).or_default();
        scaling::decide(&policy, topic.partitions, lag.as_ref().map(|l| l.0), current, now.0, history)
    };
    let changed = current != Some(decision.replicas);
    Scaling {
        decision,
        fixed: policy.fixed.is_some(),
        lag,
        lag_error,
        lag_threshold: policy.lag_threshold,
        last_scale_time: if changed { Some(now.clone()) } else { previous.and_then(|c| c.last_scale_time.clone()) },
    }
}

/// Writes `status` when it differs from what is stored.
async fn write_status<T>(
    p: &NotificationPipeline,
    ctx: &Context<T>,
    status: NotificationPipelineStatus,
) -> Result<(), Error> {
    if p.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let body = serde_json::json!({
        "apiVersion": format!("{}/{}", herald_api::GROUP, herald_api::VERSION),
        "kind": "NotificationPipeline",
        "status": status,
    });
    let api: Api<NotificationPipeline> = Api::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default());
    api.patch_status(&p.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(Error::Status)?;
    ctx.metrics.status_writes.inc();
    Ok(())
}

/// A pipeline that cannot be reconciled as it is (invalid spec, policy, a name owned by someone
/// else): `Ready=False` with the reason, one Warning Event, and nothing more until it changes.
async fn refuse<T>(
    p: &NotificationPipeline,
    ctx: &Context<T>,
    reason: Reason,
    message: &str,
    now: &Time,
) -> Result<Action, Error> {
    let key = names::key(p);
    tracing::warn!(
        namespace = p.namespace().unwrap_or_default(),
        pipeline = p.name_any(),
        reason = %reason,
        message,
        "pipeline refused"
    );
    write_status(p, ctx, status::refused(p, &reason, message, now)).await?;
    let warning = format!("{reason}: {message}");
    if lock(&ctx.warned).insert(key, warning.clone()).as_deref() != Some(warning.as_str()) {
        events::publish(p, ctx, EventType::Warning, reason.as_str(), "Reconcile", message.to_string()).await;
    }
    if let Some(ns) = p.namespace() {
        ctx.metrics.ready.with_label_values(&[ns.as_str(), p.name_any().as_str()]).set(0);
    }
    Ok(Action::await_change())
}
