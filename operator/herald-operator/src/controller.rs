//! The reconciler: validate → topic → build (pure) → apply in a stated order → status.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_api::labels::FIELD_MANAGER;
use herald_api::{DeletionPolicy, KafkaSpec, NotificationPipeline, TopicManagement};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::credentials;
use crate::desired::{self, BuildError, Images};
use crate::metrics::OperatorMetrics;
use crate::scaling::{self, History, Policy};
use crate::status::Scaling;
use crate::status::{self, TopicState};
use crate::strimzi;
use crate::topic::{Ensured, LagReport, TopicAdmin, TopicError, WantedTopic};

/// Finalizer that lets the operator delete a topic living outside the pipeline's namespace.
pub const FINALIZER: &str = "herald.dev/topic";

/// Reading and creating topics in Kafka (`Admin` and `External` management).
pub trait Topics: Send + Sync + 'static {
    fn ensure(
        &self,
        kafka: &KafkaSpec,
        wanted: &WantedTopic,
    ) -> impl Future<Output = Result<Ensured, TopicError>> + Send;
    fn partitions(
        &self,
        kafka: &KafkaSpec,
        topic: &str,
    ) -> impl Future<Output = Result<Option<i32>, TopicError>> + Send;
    fn lag(
        &self,
        kafka: &KafkaSpec,
        topic: &str,
        group: &str,
    ) -> impl Future<Output = Result<Option<LagReport>, TopicError>> + Send;
}

/// [`Topics`] through the Kafka Admin API of each pipeline's cluster, one client per cluster
/// and identity, kept across reconciles so that its connections are too.
pub struct KafkaTopics {
    timeout: Duration,
    /// By bootstrap servers and the properties that are not secrets; each with all its
    /// properties, so that a rotated password or certificate replaces the client.
    admins: std::sync::Mutex<HashMap<String, CachedAdmin>>,
}

/// An admin client and every property it was created with.
struct CachedAdmin {
    properties: BTreeMap<String, String>,
    admin: Arc<TopicAdmin>,
}

/// Properties holding secret material, left out of the cache key.
const SECRET_PROPERTIES: &[&str] = &["sasl.password", "ssl.key.pem", "ssl.certificate.pem", "ssl.ca.pem"];

impl KafkaTopics {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, admins: Default::default() }
    }

    fn admin(&self, kafka: &KafkaSpec) -> Result<Arc<TopicAdmin>, TopicError> {
        let public: Vec<_> =
            kafka.properties.iter().filter(|(k, _)| !SECRET_PROPERTIES.contains(&k.as_str())).collect();
        let key = format!("{}\n{public:?}", kafka.bootstrap_servers);
        let mut admins = self.admins.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(cached) = admins.get(&key)
            && cached.properties == kafka.properties
        {
            return Ok(cached.admin.clone());
        }
        let admin = Arc::new(TopicAdmin::new(&kafka.bootstrap_servers, &kafka.properties, self.timeout)?);
        admins.insert(key, CachedAdmin { properties: kafka.properties.clone(), admin: admin.clone() });
        Ok(admin)
    }
}

impl Topics for KafkaTopics {
    async fn ensure(&self, kafka: &KafkaSpec, wanted: &WantedTopic) -> Result<Ensured, TopicError> {
        self.admin(kafka)?.ensure(wanted).await
    }

    async fn partitions(&self, kafka: &KafkaSpec, topic: &str) -> Result<Option<i32>, TopicError> {
        self.admin(kafka)?.partitions(topic).await
    }

    async fn lag(&self, kafka: &KafkaSpec, topic: &str, group: &str) -> Result<Option<LagReport>, TopicError> {
        self.admin(kafka)?.lag(topic, group).await
    }
}

/// What every reconcile shares.
pub struct Context<T> {
    pub client: Client,
    /// Publishes Events on pipelines.
    pub recorder: Recorder,
    pub images: Images,
    pub topics: T,
    pub metrics: OperatorMetrics,
    /// How often a pipeline is reconciled (and its lag probed) when nothing else changes.
    pub sync_period: Duration,
    /// The time; a simulated clock in tests.
    pub clock: Clock,
    /// The scaling history of each pipeline (`namespace/name`).
    pub scaling: std::sync::Mutex<HashMap<String, History>>,
}

/// Where the reconciler reads the time.
pub type Clock = Arc<dyn Fn() -> k8s_openapi::jiff::Timestamp + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(k8s_openapi::jiff::Timestamp::now)
}

/// Why a reconcile failed, by step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the pipeline has no namespace")]
    NoNamespace,
    #[error("discovering the Strimzi (kafka.strimzi.io) APIs: {0}")]
    Discovery(#[source] kube::Error),
    #[error("applying {kind} {name}: {source}")]
    Apply { kind: &'static str, name: String, source: kube::Error },
    #[error("deleting KafkaTopic {name}: {source}")]
    DeleteTopic { name: String, source: kube::Error },
    #[error("reading Secret {name} (Kafka credentials): {source}")]
    ReadSecret { name: String, source: kube::Error },
    #[error("updating the status: {0}")]
    Status(#[source] kube::Error),
    #[error("managing the finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// Whether retrying can help. The API server refusing an object (4xx other than conflict
    /// and throttling) will refuse it again until the pipeline changes.
    pub fn is_transient(&self) -> bool {
        let api = |e: &kube::Error| match e {
            kube::Error::Api(s) => !(400..500).contains(&s.code) || s.code == 409 || s.code == 429,
            _ => true,
        };
        match self {
            Error::NoNamespace => false,
            Error::Discovery(e) | Error::Status(e) => api(e),
            Error::Apply { source, .. } | Error::DeleteTopic { source, .. } | Error::ReadSecret { source, .. } => {
                api(source)
            }
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e.is_transient()
                }
                kube::runtime::finalizer::Error::AddFinalizer(e)
                | kube::runtime::finalizer::Error::RemoveFinalizer(e) => api(e),
                _ => false,
            },
        }
    }

    /// A bounded label for `herald_operator_reconcile_errors_total`.
    pub fn category(&self) -> &'static str {
        match self {
            Error::NoNamespace => "invalid",
            Error::Discovery(_) => "discovery",
            Error::Apply { .. } => "apply",
            Error::DeleteTopic { .. } => "delete_topic",
            Error::ReadSecret { .. } => "read_secret",
            Error::Status(_) => "status",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

/// Requeue for pipelines still converging and after transient errors.
const CONVERGING: Duration = Duration::from_secs(15);
const STRIMZI_MISSING: Duration = Duration::from_secs(60);

pub async fn reconcile<T: Topics>(pipeline: Arc<NotificationPipeline>, ctx: Arc<Context<T>>) -> Result<Action, Error> {
    let start = Instant::now();
    let namespace = pipeline.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<NotificationPipeline> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, pipeline, |event| async {
        match event {
            FinalizerEvent::Apply(p) => apply(&p, &ctx, &api).await,
            FinalizerEvent::Cleanup(p) => cleanup(&p, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.duration.observe(start.elapsed().as_secs_f64());
    let outcome = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics.reconciliations.with_label_values(&[outcome]).inc();
    result
}

/// Transient failures retry after a pause; permanent ones wait for the pipeline to change.
pub fn error_policy<T: Topics>(pipeline: Arc<NotificationPipeline>, error: &Error, ctx: Arc<Context<T>>) -> Action {
    let category = match error {
        Error::Finalizer(inner) => match inner.as_ref() {
            kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                e.category()
            }
            _ => error.category(),
        },
        _ => error.category(),
    };
    ctx.metrics.errors.with_label_values(&[category]).inc();
    let transient = error.is_transient();
    tracing::warn!(
        namespace = pipeline.namespace().unwrap_or_default(),
        pipeline = pipeline.name_any(),
        error = %error,
        category,
        transient,
        "reconcile failed"
    );
    if transient { Action::requeue(CONVERGING) } else { Action::await_change() }
}

async fn apply_object<K>(client: &Client, namespace: &str, kind: &'static str, obj: &K) -> Result<K, Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(obj))
        .await
        .map_err(|source| Error::Apply { kind, name, source })
}

/// How the operator reaches a pipeline's Kafka: the spec's servers and properties, plus the
/// consumers' credentials when the cluster requires them, or why it cannot yet.
enum KafkaAccess {
    Ready(KafkaSpec),
    Unavailable(String),
}

impl KafkaAccess {
    fn spec(&self) -> Result<&KafkaSpec, TopicError> {
        match self {
            KafkaAccess::Ready(kafka) => Ok(kafka),
            KafkaAccess::Unavailable(why) => Err(TopicError::Credentials(why.clone())),
        }
    }
}

/// Reads the Secrets the operator's own Kafka clients need (none without `tls` and
/// `authentication`).
async fn kafka_access<T: Topics>(
    p: &NotificationPipeline,
    ctx: &Context<T>,
    namespace: &str,
) -> Result<KafkaAccess, Error> {
    let wanted = credentials::operator_secrets(p);
    if wanted.is_empty() {
        return Ok(KafkaAccess::Ready(p.spec.kafka.clone()));
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let mut secrets = BTreeMap::new();
    for name in wanted {
        let secret = api.get_opt(&name).await.map_err(|source| Error::ReadSecret { name: name.clone(), source })?;
        let data = secret.map(|s| s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect());
        secrets.insert(name, data);
    }
    Ok(match credentials::operator_properties(p, &secrets) {
        Ok(properties) => {
            let mut kafka = p.spec.kafka.clone();
            kafka.properties.extend(properties);
            KafkaAccess::Ready(kafka)
        }
        Err(why) => KafkaAccess::Unavailable(why),
    })
}

async fn topic_state<T: Topics>(
    p: &NotificationPipeline,
    ctx: &Context<T>,
    access: &KafkaAccess,
) -> Result<TopicState, Error> {
    let spec = &p.spec.topic;
    let name = desired::topic_name(p);
    let state = |partitions: i32, ready: bool, reason: &str, message: String| TopicState {
        name: name.clone(),
        partitions,
        ready,
        reason: reason.to_string(),
        message,
    };
    Ok(match spec.management {
        TopicManagement::Strimzi => {
            let Some(ar) = strimzi::kafka_topic_api(&ctx.client).await.map_err(Error::Discovery)? else {
                return Ok(state(
                    spec.partitions,
                    false,
                    "StrimziNotInstalled",
                    "the kafka.strimzi.io KafkaTopic API is not served by this cluster; install Strimzi or use topic.management Admin or External".into(),
                ));
            };
            let Some(topic) = strimzi::kafka_topic(p, &ar) else {
                return Ok(state(
                    spec.partitions,
                    false,
                    "NoClusterRef",
                    "topic.management Strimzi needs spec.kafka.clusterRef".into(),
                ));
            };
            let ns = strimzi::cluster_namespace(p);
            let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &ar);
            let name_kt = strimzi::kafka_topic_name(p);
            let applied = api
                .patch(&name_kt, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&topic))
                .await
                .map_err(|source| Error::Apply { kind: "KafkaTopic", name: name_kt, source })?;
            let (ready, reason, message) = strimzi::readiness(&applied);
            state(spec.partitions, ready, &reason, message)
        }
        TopicManagement::Admin => {
            let wanted = WantedTopic {
                name: name.clone(),
                partitions: spec.partitions,
                replicas: spec.replicas,
                config: spec.config.clone(),
            };
            match async { ctx.topics.ensure(access.spec()?, &wanted).await }.await {
                Ok(Ensured::Created { partitions }) => {
                    state(partitions, true, "TopicCreated", format!("created with {partitions} partitions"))
                }
                Ok(Ensured::Exists { partitions }) => {
                    state(partitions, true, "TopicExists", format!("{partitions} partitions"))
                }
                Err(e) => state(
                    spec.partitions,
                    false,
                    if e.is_transient() { "KafkaUnreachable" } else { "TopicRejected" },
                    e.to_string(),
                ),
            }
        }
        TopicManagement::External => match async { ctx.topics.partitions(access.spec()?, &name).await }.await {
            Ok(Some(partitions)) => state(partitions, true, "TopicExists", format!("{partitions} partitions")),
            Ok(None) => state(
                spec.partitions,
                false,
                "TopicNotFound",
                format!("topic {name} does not exist in Kafka; create it or use topic.management Admin"),
            ),
            Err(e) => state(spec.partitions, false, "KafkaUnreachable", e.to_string()),
        },
    })
}

async fn apply<T: Topics>(
    p: &NotificationPipeline,
    ctx: &Context<T>,
    api: &Api<NotificationPipeline>,
) -> Result<Action, Error> {
    let namespace = p.namespace().ok_or(Error::NoNamespace)?;
    let name = p.name_any();
    // Before anything is applied: a name whose children the API server would refuse.
    if let Some(problem) = herald_api::labels::pipeline_name_problem(&name) {
        return invalid(p, ctx, api, &BuildError::InvalidName(problem)).await;
    }
    let now = Time((ctx.clock)());
    let access = kafka_access(p, ctx, &namespace).await?;
    let topic = topic_state(p, ctx, &access).await?;
    let scaling = if topic.ready { Some(scale(p, ctx, &access, &namespace, &name, &topic, &now).await) } else { None };
    let previous_desired = p.status.as_ref().and_then(|s| s.consumer.as_ref()).map(|c| c.desired_replicas);
    let consumers = scaling.as_ref().map_or(previous_desired.unwrap_or(0), |s| s.decision.replicas);
    let children = match desired::children(p, &ctx.images, consumers) {
        Ok(c) => c,
        Err(e) => return invalid(p, ctx, api, &e).await,
    };
    let client = &ctx.client;
    // The Kafka users first: Strimzi writes the Secrets the pods mount.
    if !credentials::managed_users(p).is_empty() {
        let Some(ar) = strimzi::kafka_user_api(client).await.map_err(Error::Discovery)? else {
            invalid(p, ctx, api, &BuildError::NoKafkaUserApi).await?;
            return Ok(Action::requeue(STRIMZI_MISSING));
        };
        let Some(owner) = p.controller_owner_ref(&()) else {
            return invalid(p, ctx, api, &BuildError::MissingMetadata("uid")).await;
        };
        let users: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &ar);
        for user in strimzi::kafka_users(p, &ar, &owner) {
            let user_name = user.metadata.name.clone().unwrap_or_default();
            users
                .patch(&user_name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&user))
                .await
                .map_err(|source| Error::Apply { kind: "KafkaUser", name: user_name, source })?;
        }
    }
    // Order: the producer first (it only needs the topic to exist to answer 503 meanwhile), the
    // consumers' Services and budget, then the consumers once the topic is ready.
    let producer = apply_object(client, &namespace, "Deployment", &children.producer_deployment).await?;
    apply_object::<Service>(client, &namespace, "Service", &children.producer_service).await?;
    apply_object::<Service>(client, &namespace, "Service", &children.consumer_service).await?;
    apply_object::<Service>(client, &namespace, "Service", &children.consumer_headless_service).await?;
    apply_object::<PodDisruptionBudget>(client, &namespace, "PodDisruptionBudget", &children.consumer_pdb).await?;
    let consumer: Option<Deployment> = if topic.ready {
        Some(apply_object(client, &namespace, "Deployment", &children.consumer_deployment).await?)
    } else {
        None
    };
    let status = status::compute(p, &topic, Some(&producer), consumer.as_ref(), scaling.as_ref(), &now);
    let ready = status.conditions.first().is_some_and(|c| c.status == "True");
    patch_status(api, &name, &status).await?;
    if let Some(s) = &scaling {
        publish_scaling_events(p, ctx, s, previous_desired, &topic).await;
    }

    let labels = [namespace.as_str(), name.as_str()];
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
    tracing::info!(
        namespace,
        pipeline = name,
        ready,
        topic_ready = topic.ready,
        partitions = topic.partitions,
        consumers,
        "reconciled"
    );
    Ok(Action::requeue(match (ready, topic.reason.as_str()) {
        (true, _) => ctx.sync_period,
        (false, "StrimziNotInstalled") => STRIMZI_MISSING,
        _ => CONVERGING.min(ctx.sync_period),
    }))
}

/// Probes the lag (bounded in time) and applies the scaling rule.
async fn scale<T: Topics>(
    p: &NotificationPipeline,
    ctx: &Context<T>,
    access: &KafkaAccess,
    namespace: &str,
    name: &str,
    topic: &TopicState,
    now: &Time,
) -> Scaling {
    let spec = &p.spec.consumer;
    let policy = Policy {
        fixed: spec.replicas,
        min: spec.min_replicas,
        max: spec.max_replicas,
        lag_threshold: spec.lag_threshold,
        stabilization: Duration::from_secs(spec.scale_down_stabilization_seconds.max(0) as u64),
    };
    let (lag, lag_error) = if policy.fixed.is_some() {
        (None, None)
    } else {
        match async { ctx.topics.lag(access.spec()?, &topic.name, &desired::group_id(p)).await }.await {
            Ok(Some(report)) => (Some((report.total(), report.per_partition)), None),
            Ok(None) => (None, Some(format!("topic {} not found", topic.name))),
            Err(e) => (None, Some(e.to_string())),
        }
    };
    let previous = p.status.as_ref().and_then(|s| s.consumer.as_ref());
    let current = previous.map(|c| c.desired_replicas);
    let key = format!("{namespace}/{name}");
    let decision = {
        let mut histories = ctx.scaling.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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

/// An Event on every scale change (from, to, why) and when partitions become saturated.
async fn publish_scaling_events<T: Topics>(
    p: &NotificationPipeline,
    ctx: &Context<T>,
    s: &Scaling,
    previous: Option<i32>,
    topic: &TopicState,
) {
    let from = previous.unwrap_or(0);
    let to = s.decision.replicas;
    let mut events = Vec::new();
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
        events.push((
            EventType::Normal,
            "Scaled",
            format!("Scale{from}To{to}"),
            format!("consumers {from} -> {to}: {why}"),
        ));
    }
    let was_saturated = p
        .status
        .as_ref()
        .is_some_and(|st| st.conditions.iter().any(|c| c.type_ == status::PARTITIONS_SATURATED && c.status == "True"));
    if s.decision.saturated && !was_saturated {
        let lag = s.lag.as_ref().map_or(0, |l| l.0);
        events.push((
            EventType::Warning,
            "PartitionsSaturated",
            "RecommendPartitions".to_string(),
            format!(
                "lag {lag} needs {} consumers but the topic has {} partitions; consider {} partitions",
                s.decision.demand,
                topic.partitions,
                scaling::recommended_partitions(lag, s.lag_threshold)
            ),
        ));
    }
    for (type_, reason, action, note) in events {
        let event = Event { type_, reason: reason.into(), note: Some(note), action, secondary: None };
        if let Err(error) = ctx.recorder.publish(&event, &p.object_ref(&())).await {
            tracing::warn!(%error, reason, "publishing an event failed");
        }
    }
}

async fn patch_status(
    api: &Api<NotificationPipeline>,
    name: &str,
    status: &herald_api::NotificationPipelineStatus,
) -> Result<(), Error> {
    let body = serde_json::json!({
        "apiVersion": format!("{}/{}", herald_api::GROUP, herald_api::VERSION),
        "kind": "NotificationPipeline",
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(Error::Status)?;
    Ok(())
}

/// A spec the API server accepted but that cannot work: `Ready=False` with the reason, and no
/// retry until the spec changes.
async fn invalid<T: Topics>(
    p: &NotificationPipeline,
    ctx: &Context<T>,
    api: &Api<NotificationPipeline>,
    e: &BuildError,
) -> Result<Action, Error> {
    tracing::warn!(namespace = p.namespace().unwrap_or_default(), pipeline = p.name_any(), error = %e, "pipeline cannot be built");
    let status = status::invalid(p, "InvalidSpec", &e.to_string(), &Time((ctx.clock)()));
    patch_status(api, &p.name_any(), &status).await?;
    let event = Event {
        type_: EventType::Warning,
        reason: "InvalidSpec".into(),
        note: Some(e.to_string()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &p.object_ref(&())).await {
        tracing::warn!(%error, "publishing the InvalidSpec event failed");
    }
    if let Some(ns) = p.namespace() {
        ctx.metrics.ready.with_label_values(&[ns.as_str(), p.name_any().as_str()]).set(0);
    }
    Ok(Action::await_change())
}

/// On deletion: children go with their owner references; the topic is deleted only with
/// `deletionPolicy: Delete`.
async fn cleanup<T: Topics>(p: &NotificationPipeline, ctx: &Context<T>) -> Result<Action, Error> {
    let namespace = p.namespace().unwrap_or_default();
    ctx.metrics.forget(&namespace, &p.name_any());
    ctx.scaling
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .remove(&format!("{namespace}/{}", p.name_any()));
    if p.spec.topic.deletion_policy != DeletionPolicy::Delete {
        tracing::info!(namespace, pipeline = p.name_any(), "pipeline deleted; topic retained");
        return Ok(Action::await_change());
    }
    if p.spec.topic.management == TopicManagement::Strimzi {
        if let Some(ar) = strimzi::kafka_topic_api(&ctx.client).await.map_err(Error::Discovery)? {
            let name = strimzi::kafka_topic_name(p);
            let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &strimzi::cluster_namespace(p), &ar);
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => tracing::info!(namespace, pipeline = p.name_any(), kafka_topic = name, "KafkaTopic deleted"),
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(source) => return Err(Error::DeleteTopic { name, source }),
            }
        }
    } else {
        tracing::warn!(
            namespace,
            pipeline = p.name_any(),
            "deletionPolicy Delete removes only Strimzi-managed topics; the Kafka topic is kept"
        );
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(password: &str) -> KafkaSpec {
        serde_json::from_value(serde_json::json!({
            "bootstrapServers": "127.0.0.1:1",
            "properties": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "social-consumer", "sasl.password": password},
        }))
        .unwrap()
    }

    #[test]
    fn admin_clients_are_reused_and_replaced_when_a_secret_rotates() {
        let topics = KafkaTopics::new(Duration::from_secs(1));
        let first = topics.admin(&kafka("one")).unwrap();
        assert!(Arc::ptr_eq(&first, &topics.admin(&kafka("one")).unwrap()));
        let rotated = topics.admin(&kafka("two")).unwrap();
        assert!(!Arc::ptr_eq(&first, &rotated));
        assert_eq!(topics.admins.lock().unwrap().len(), 1, "the old client is dropped, not kept");
    }
}
