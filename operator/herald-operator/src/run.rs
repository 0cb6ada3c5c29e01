//! `herald-operator run`: the controller, its metrics endpoint and leader election.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use herald_api::NotificationPipeline;
use herald_kit::config::parse_duration;
use herald_kit::http::{HttpMetrics, ReadyCheck, with_operational_routes};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher::Config as WatcherConfig;
use kube::{Api, Client};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::controller::{Context, KafkaTopics, error_policy, reconcile};
use crate::desired::Images;
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
    /// How long Kafka admin requests (topic creation, metadata, offsets) may take.
    #[arg(long, env = "HERALD_KAFKA_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub kafka_timeout: Duration,
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

pub async fn run(args: RunArgs, shutdown: CancellationToken) -> Result<(), RunError> {
    let client = Client::try_default().await.map_err(RunError::Client)?;
    let registry = Registry::new();
    let http = HttpMetrics::register(&registry)?;
    let metrics = OperatorMetrics::register(&registry)?;
    let leading = Arc::new(AtomicBool::new(!args.leader_elect));

    let listener = herald_kit::http::bind(args.metrics_listen).await?;
    let live: ReadyCheck = Arc::new(|| Ok(()));
    // Ready when able to serve: a standby replica is ready too (it takes over on failure).
    let ready: ReadyCheck = Arc::new(|| Ok(()));
    let app = with_operational_routes(axum::Router::new(), registry, http, live, ready);
    let server = tokio::spawn(herald_kit::http::serve(listener, app, shutdown.clone(), Duration::from_secs(5)));

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

    let pipelines: Api<NotificationPipeline> = match &args.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (deployments, services, pdbs): (Api<Deployment>, Api<Service>, Api<PodDisruptionBudget>) =
        match &args.watch_namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone()), Api::all(client.clone())),
        };
    let reporter = Reporter { controller: "herald-operator".into(), instance: Some(args.identity.clone()) };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        images: Images { producer: args.producer_image.clone(), consumer: args.consumer_image.clone() },
        topics: KafkaTopics::new(args.kafka_timeout),
        metrics,
        sync_period: args.sync_period,
        clock: crate::controller::system_clock(),
        scaling: Default::default(),
    });
    tracing::info!(namespace = args.watch_namespace.as_deref().unwrap_or("<all>"), "operator started");
    let owned = WatcherConfig::default().labels("app.kubernetes.io/managed-by=herald-operator");
    let (stop, stop_leading) = (shutdown.clone(), controller_stop.clone());
    Controller::new(pipelines, WatcherConfig::default())
        .owns(deployments, owned.clone())
        .owns(services, owned.clone())
        .owns(pdbs, owned)
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
