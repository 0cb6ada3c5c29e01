//! `herald-operator run`: the controller, the lag prober, the metrics endpoint and leader
//! election.
//!
//! The controller reconciles a pipeline when its spec changes (a generation predicate: status
//! writes, including the operator's own, never trigger one), when it is being deleted, when
//! [`RECONCILE_REQUEST`] changes, when one of its children changes, when its first lag reading
//! arrives, and once per sync period (which drives lag-based scaling from the prober's latest
//! reading).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use herald_api::NotificationPipeline;
use herald_kit::http::{EdgeArgs, HttpMetrics, ReadyCheck, metrics_routes, with_operational_routes};
use herald_model::duration::parse_duration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher::{self, Config as WatcherConfig};
use kube::runtime::{Controller, WatchStreamExt, metadata_watcher};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus::Registry;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::build::desired::{ChildKind, Defaults, Images};
use crate::build::validate::{AllowedNamespaces, TenancyPolicy, TopicNamePolicy};
use crate::controller::{ChildIndex, Context, RECONCILE_REQUEST, Settings, error_policy, reconcile};
use crate::kafka::admin::{KafkaTopics, Topics};
use crate::kafka::lag::LagSource;
use crate::kafka::prober::{ProbeMetrics, Prober};
use crate::kafka::protocol::KafkaLag;
use crate::leader::{KubeLeases, LeaderElector, Timings};
use crate::metrics::OperatorMetrics;

const DEFAULT_IMAGE: &str = concat!("ghcr.io/herald-dev/herald:", env!("CARGO_PKG_VERSION"));

/// Flags of `herald-operator run`; each one also reads an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Only watch pipelines in this namespace (default: all namespaces).
    #[arg(long, env = "HERALD_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "HERALD_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,
    /// Producer image for pipelines that name none.
    #[arg(long, env = "HERALD_PRODUCER_IMAGE", default_value = DEFAULT_IMAGE)]
    pub producer_image: String,
    /// Consumer image for pipelines that name none.
    #[arg(long, env = "HERALD_CONSUMER_IMAGE", default_value = DEFAULT_IMAGE)]
    pub consumer_image: String,
    /// Reconcile only while holding the `herald-operator` Lease (for more than one replica).
    #[arg(long, env = "HERALD_LEADER_ELECT", default_value_t = false)]
    pub leader_elect: bool,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "herald-system")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME", default_value = "herald-operator")]
    pub identity: String,
    /// How often each pipeline is reconciled and its lag probed when nothing else changes.
    #[arg(long, env = "HERALD_SYNC_PERIOD", default_value = "15s", value_parser = parse_duration)]
    pub sync_period: Duration,
    /// How long Kafka requests (topic creation, metadata, offsets) may take.
    #[arg(long, env = "HERALD_KAFKA_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub kafka_timeout: Duration,
    /// How long a failing cleanup of a deleted pipeline (deleting its KafkaTopic) is retried
    /// before its finalizer is released anyway, with a Warning Event.
    #[arg(long, env = "HERALD_CLEANUP_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub cleanup_timeout: Duration,
    /// Namespaces whose Strimzi clusters pipelines may use (`spec.kafka.clusterRef`),
    /// comma-separated, or `*` for any.
    #[arg(long, env = "HERALD_ALLOWED_CLUSTER_NAMESPACES", default_value = "*", value_parser = AllowedNamespaces::parse)]
    pub allowed_cluster_namespaces: AllowedNamespaces,
    /// `any`, or `namespace-prefix`: topic names and consumer group ids must start with
    /// `<namespace>.` or `<namespace>-`.
    #[arg(long, env = "HERALD_TOPIC_NAME_POLICY", value_enum, default_value_t = TopicNamePolicy::Any)]
    pub topic_name_policy: TopicNamePolicy,
    /// Reconciles running at once.
    #[arg(long, env = "HERALD_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// The namespaces whose pods may scrape every pipeline's `/metrics` through the pipelines'
    /// NetworkPolicies, as a label selector (`kubernetes.io/metadata.name=monitoring`); empty:
    /// any namespace.
    #[arg(long, env = "HERALD_METRICS_NAMESPACE_SELECTOR", default_value = "", value_parser = crate::build::selector::parse)]
    pub metrics_namespace_selector: LabelSelector,
}

/// What can stop the operator, by step.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Bind(#[from] herald_kit::http::BindError),
    #[error("lost the leader lease; exiting so that only one replica reconciles")]
    LostLease,
}

const LEASE: &str = "herald-operator";

/// Runs against the cluster of the ambient kubeconfig or service account, with real Kafka clients.
pub async fn run(args: RunArgs, shutdown: CancellationToken) -> Result<(), RunError> {
    let client = Client::try_default().await.map_err(RunError::Client)?;
    let topics = KafkaTopics::new(args.kafka_timeout);
    let lag = KafkaLag::new(args.kafka_timeout);
    run_with(client, topics, lag, &args, Registry::new(), shutdown).await
}

/// Reconciles when the generation changes, on deletion, and on an explicit request — never for a
/// status write or a label.
fn pipeline_predicate(p: &NotificationPipeline) -> Option<u64> {
    let mut h = DefaultHasher::new();
    p.metadata.generation.hash(&mut h);
    p.metadata.deletion_timestamp.is_some().hash(&mut h);
    p.annotations().get(RECONCILE_REQUEST).hash(&mut h);
    Some(h.finish())
}

/// A metadata-only watch of a child kind (labelled as Herald's), followed by `index` for the
/// ownership check and feeding the controller.
fn children<K>(
    api: Api<K>,
    index: Arc<ChildIndex>,
) -> impl futures::Stream<Item = Result<kube::core::PartialObjectMeta<K>, watcher::Error>>
where
    K: Resource<DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let kind = K::KIND;
    let owned = WatcherConfig::default().labels("app.kubernetes.io/managed-by=herald-operator");
    metadata_watcher(api, owned)
        .default_backoff()
        .inspect(move |event| {
            if let Ok(event) = event {
                index.observe(kind, event);
            }
        })
        .touched_objects()
}

fn apis<K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>>(
    client: &Client,
    namespace: Option<&str>,
) -> Api<K> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the operator on `client` with the given Kafka clients, its metrics in `registry`.
pub async fn run_with<T: Topics, L: LagSource>(
    client: Client,
    topics: T,
    lag: L,
    args: &RunArgs,
    registry: Registry,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let http = HttpMetrics::register(&registry)?;
    let metrics = OperatorMetrics::register(&registry)?;
    let leading = Arc::new(AtomicBool::new(!args.leader_elect));

    let listener = herald_kit::http::bind(args.metrics_listen).await?;
    let live: ReadyCheck = Arc::new(|| Ok(()));
    // Ready when able to serve: a standby replica is ready too (it takes over on failure).
    let ready: ReadyCheck = Arc::new(|| Ok(()));
    let edge = EdgeArgs::default();
    let app = with_operational_routes(metrics_routes(registry), http, &edge, live, ready);
    let server = tokio::spawn(herald_kit::http::serve(
        listener,
        app,
        shutdown.clone(),
        Duration::from_secs(5),
        edge.header_read_timeout,
    ));

    // With leader election: reconcile only while holding the lease; renew it until the controller
    // has stopped (graceful shutdown finishes in-flight reconciles under the lease), then release
    // it so that a standby takes over at once.
    let controller_stop = CancellationToken::new();
    let renew_stop = CancellationToken::new();
    let mut renewal = None;
    let elector = args.leader_elect.then(|| {
        Arc::new(LeaderElector::new(
            KubeLeases::new(client.clone(), &args.lease_namespace, LEASE),
            LEASE,
            &args.identity,
            Timings::default(),
        ))
    });
    if let Some(elector) = &elector {
        tracing::info!(identity = %args.identity, namespace = %args.lease_namespace, "waiting for the leader lease");
        if !elector.acquire(&shutdown).await {
            shutdown.cancel();
            let _ = server.await;
            return Ok(());
        }
        leading.store(true, Ordering::Release);
        tracing::info!(identity = %args.identity, "leader lease acquired");
        let (elector, renew_stop, controller_stop, leading) =
            (elector.clone(), renew_stop.clone(), controller_stop.clone(), leading.clone());
        renewal = Some(tokio::spawn(async move {
            let kept = elector.keep(&renew_stop).await;
            if !kept {
                // Stop reconciling before a standby may take the lease over.
                leading.store(false, Ordering::Release);
                controller_stop.cancel();
            }
            kept
        }));
    }

    let namespace = args.watch_namespace.as_deref();
    let (prober, first_readings) =
        Prober::new(lag, args.sync_period, Some(ProbeMetrics { probes: metrics.probes.clone() }));
    let prober_task = tokio::spawn(prober.clone().run(renew_stop.clone()));
    let index = Arc::new(ChildIndex::default());
    let reporter = Reporter { controller: "herald-operator".into(), instance: Some(args.identity.clone()) };
    let settings = Settings {
        defaults: Defaults {
            images: Images { producer: args.producer_image.clone(), consumer: args.consumer_image.clone() },
            metrics_namespaces: args.metrics_namespace_selector.clone(),
        },
        sync_period: args.sync_period,
        cleanup_timeout: args.cleanup_timeout,
        policy: TenancyPolicy {
            cluster_namespaces: args.allowed_cluster_namespaces.clone(),
            topic_names: args.topic_name_policy,
        },
    };
    let mut ctx = Context::new(
        client.clone(),
        Recorder::new(client.clone(), reporter),
        settings,
        topics,
        prober.clone(),
        metrics,
    );
    ctx.children = Some(index.clone());
    let ctx = Arc::new(ctx);

    let (pipelines, writer) = reflector::store();
    let pipeline_events = watcher::watcher(apis::<NotificationPipeline>(&client, namespace), WatcherConfig::default())
        .default_backoff()
        // Nothing reads a pipeline's managed fields or annotations (kubectl's
        // last-applied-configuration alone doubles a pipeline's size), but the reconcile request.
        .modify(|p| {
            let meta = p.meta_mut();
            meta.managed_fields = None;
            if let Some(annotations) = meta.annotations.as_mut() {
                annotations.retain(|k, _| k == RECONCILE_REQUEST);
            }
        })
        .reflect(writer)
        .applied_objects()
        .predicate_filter(pipeline_predicate, Default::default());
    let first_readings =
        tokio_stream::wrappers::UnboundedReceiverStream::new(first_readings).filter_map(|key| async move {
            let (ns, name) = key.split_once('/')?;
            Some(ObjectRef::<NotificationPipeline>::new(name).within(ns))
        });
    // Pipelines deleted without a finalizer are never reconciled again: forget them here.
    let sweeper = {
        let (ctx, pipelines, stop, period) = (ctx.clone(), pipelines.clone(), renew_stop.clone(), args.sync_period);
        tokio::spawn(async move {
            // An empty store means "no pipelines" only once it was filled.
            tokio::select! {
                _ = stop.cancelled() => return,
                ready = pipelines.wait_until_ready() => if ready.is_err() { return },
            }
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(period) => {}
                }
                for key in ctx.prober.keys() {
                    let Some((ns, name)) = key.split_once('/') else { continue };
                    if pipelines.get(&ObjectRef::new(name).within(ns)).is_none() {
                        ctx.forget(ns, name);
                    }
                }
            }
        })
    };
    tracing::info!(namespace = namespace.unwrap_or("<all>"), "operator started");
    let (stop, stop_leading) = (shutdown.clone(), controller_stop.clone());
    let mut controller = Controller::for_stream(pipeline_events, pipelines);
    // Every kind of child the pipelines have, watched (metadata only) for the ownership index and
    // to reconcile a pipeline whose child changed.
    for kind in ChildKind::ALL {
        let index = index.clone();
        controller = match kind {
            ChildKind::NetworkPolicy => {
                controller.owns_stream(children::<NetworkPolicy>(apis(&client, namespace), index))
            }
            ChildKind::Deployment => controller.owns_stream(children::<Deployment>(apis(&client, namespace), index)),
            ChildKind::Service => controller.owns_stream(children::<Service>(apis(&client, namespace), index)),
            ChildKind::PodDisruptionBudget => {
                controller.owns_stream(children::<PodDisruptionBudget>(apis(&client, namespace), index))
            }
        };
    }
    controller
        .reconcile_on(first_readings)
        // Bursts of triggers for one pipeline (its children created or rolling) become one
        // reconcile: a debounce of a thirtieth of the sync period, at most 100 ms.
        .with_config(
            ControllerConfig::default()
                .concurrency(args.concurrency)
                .debounce((args.sync_period / 30).min(Duration::from_millis(100))),
        )
        .graceful_shutdown_on(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = stop_leading.cancelled() => {}
            }
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
        })
        .await;
    renew_stop.cancel();
    let _ = tokio::join!(prober_task, sweeper);
    let kept = match renewal {
        Some(renewal) => renewal.await.unwrap_or(false),
        None => true,
    };
    shutdown.cancel();
    if let Some(elector) = &elector
        && kept
    {
        match elector.release().await {
            Ok(()) => tracing::info!(identity = %args.identity, "leader lease released"),
            Err(error) => {
                tracing::warn!(%error, "releasing the leader lease failed; a standby takes over when it expires")
            }
        }
    }
    let _ = server.await;
    if !kept {
        return Err(RunError::LostLease);
    }
    tracing::info!("operator stopped");
    Ok(())
}
