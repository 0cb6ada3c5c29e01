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
use crate::leader::LeaderElector;
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
    #[error("leader election: {0}")]
    Lease(#[source] kube::Error),
    #[error("lost the leader lease; exiting so that only one replica reconciles")]
    LostLease,
}

const LEASE: &str = "herald-operator";
const LEASE_DURATION: Duration = Duration::from_secs(15);
const LEASE_RENEW: Duration = Duration::from_secs(5);
/// A leader that could not renew for this long stops, before a standby may take the lease over
/// (which it can once `LEASE_DURATION` has passed since the last renewal).
const LEASE_RENEW_DEADLINE: Duration = Duration::from_secs(10);

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

    if args.leader_elect {
        let elector = LeaderElector::new(client.clone(), &args.lease_namespace, LEASE, &args.identity, LEASE_DURATION);
        tracing::info!(identity = %args.identity, namespace = %args.lease_namespace, "waiting for the leader lease");
        loop {
            if elector.try_acquire_or_renew().await.map_err(RunError::Lease)? {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(LEASE_RENEW) => {}
            }
        }
        leading.store(true, Ordering::Release);
        tracing::info!(identity = %args.identity, "leader lease acquired");
        let renew_shutdown = shutdown.clone();
        let renew_leading = leading.clone();
        tokio::spawn(async move {
            let mut renewed = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = renew_shutdown.cancelled() => return,
                    _ = tokio::time::sleep(LEASE_RENEW) => {}
                }
                let held = match elector.try_acquire_or_renew().await {
                    Ok(held) => held,
                    Err(error) if renewed.elapsed() < LEASE_RENEW_DEADLINE => {
                        tracing::warn!(%error, "renewing the leader lease failed; retrying");
                        continue;
                    }
                    // Past the deadline a standby may take the lease soon: stop reconciling rather
                    // than risk two leaders.
                    Err(error) => {
                        tracing::warn!(%error, "renewing the leader lease kept failing past the renew deadline");
                        false
                    }
                };
                if held {
                    renewed = tokio::time::Instant::now();
                } else {
                    tracing::error!("{}", RunError::LostLease);
                    renew_leading.store(false, Ordering::Release);
                    renew_shutdown.cancel();
                    return;
                }
            }
        });
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
    let stop = shutdown.clone();
    Controller::new(pipelines, WatcherConfig::default())
        .owns(deployments, owned.clone())
        .owns(services, owned.clone())
        .owns(pdbs, owned)
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "controller event");
            }
        })
        .await;
    shutdown.cancel();
    let _ = server.await;
    if args.leader_elect && !leading.load(Ordering::Acquire) {
        return Err(RunError::LostLease);
    }
    tracing::info!("operator stopped");
    Ok(())
}
