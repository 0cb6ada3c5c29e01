//! Herald's consumer: a consumer-group member that stores each notification for its recipient
//! and serves `GET /notifications/{userID}`. Offsets move only after a record is stored.

pub mod app;
pub mod group;
pub mod metrics;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use herald_kit::config::parse_duration;
use herald_kit::http::{BindError, HttpMetrics, bind};
use herald_kit::kafka::KafkaArgs;
use herald_kit::telemetry::LogArgs;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::app::{AppState, router};
use crate::group::{GroupConfig, GroupError, GroupStatus};
use crate::metrics::ConsumerMetrics;
use crate::store::Store;

/// Command-line flags; each one also reads an environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "herald-consumer", version, about = "Herald consumer: stores notifications per user and serves them")]
pub struct Args {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Consumer group to join; members split the topic's partitions.
    #[arg(long, env = "HERALD_GROUP_ID", default_value = "notifications-group")]
    pub group_id: String,

    /// Address the HTTP server listens on.
    #[arg(long, env = "HERALD_LISTEN", default_value = "0.0.0.0:8081")]
    pub listen: SocketAddr,

    /// Notifications kept per user (the newest ones).
    #[arg(long, env = "HERALD_MAX_PER_USER", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_per_user: u32,

    /// On shutdown, how long in-flight requests may take to finish.
    #[arg(long, env = "HERALD_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    #[command(flatten)]
    pub log: LogArgs,
}

/// What can stop the consumer, by step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("joining the consumer group: {0}")]
    Group(#[from] GroupError),
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
    #[error("the consume loop stopped unexpectedly: {0}")]
    Loop(String),
}

/// What the consumer did before it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub processed: u64,
    pub stored: usize,
}

/// A subscribed consumer ready to serve.
pub struct ConsumerService {
    consumer: rdkafka::consumer::BaseConsumer<group::GroupContext>,
    store: Arc<Store>,
    status: Arc<GroupStatus>,
    registry: Registry,
    http: HttpMetrics,
    shutdown_timeout: Duration,
}

impl ConsumerService {
    /// Validates the flags, creates the member and subscribes it to the topic.
    pub fn new(args: &Args) -> Result<Self, Error> {
        let registry = Registry::new();
        let http = HttpMetrics::register(&registry)?;
        let metrics = ConsumerMetrics::register(&registry)?;
        let status = Arc::new(GroupStatus::default());
        let config = GroupConfig { kafka: args.kafka.clone(), group_id: args.group_id.clone() };
        let consumer = group::subscribe(&config, metrics, status.clone())?;
        Ok(Self {
            consumer,
            store: Arc::new(Store::new(args.max_per_user as usize)),
            status,
            registry,
            http,
            shutdown_timeout: args.shutdown_timeout,
        })
    }

    /// The member's assignment and progress, for embedding (local mode).
    pub fn status(&self) -> Arc<GroupStatus> {
        self.status.clone()
    }

    /// Consumes and serves on `listener` until `shutdown` is cancelled; then finishes the record
    /// in hand, commits, leaves the group and drains HTTP.
    pub async fn serve(self, listener: tokio::net::TcpListener, shutdown: CancellationToken) -> Result<Summary, Error> {
        let store = self.store.clone();
        let loop_shutdown = shutdown.clone();
        let consumer = self.consumer;
        let consuming = tokio::task::spawn_blocking(move || {
            let processed = group::consume(consumer, &store, &loop_shutdown);
            // Whatever ended the loop, the whole process stops with it.
            loop_shutdown.cancel();
            processed
        });
        let app = router(AppState { store: self.store.clone(), status: self.status.clone() }, self.registry, self.http);
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "consumer listening");
        }
        let served = herald_kit::http::serve(listener, app, shutdown.clone(), self.shutdown_timeout).await;
        shutdown.cancel();
        let processed = consuming.await.map_err(|e| Error::Loop(e.to_string()))?;
        let summary = Summary { processed, stored: self.store.len() };
        tracing::info!(processed = summary.processed, stored = summary.stored, "consumer stopped");
        served.map_err(Error::Serve)?;
        Ok(summary)
    }
}

/// Runs the consumer until `shutdown` is cancelled.
pub async fn run(args: Args, shutdown: CancellationToken) -> Result<Summary, Error> {
    let service = ConsumerService::new(&args)?;
    let listener = bind(args.listen).await?;
    service.serve(listener, shutdown).await
}
