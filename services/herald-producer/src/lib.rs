//! Herald's producer: `POST /send` turns a request into a notification record on Kafka and
//! answers 200 only once the broker acknowledged it.

pub mod app;
pub mod idempotency;
pub mod kafka;
pub mod metrics;
pub mod request;
pub mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herald_auth::{AuthArgs, AuthSetupError, Authenticator};
use herald_kit::http::{BindError, EdgeArgs, HttpMetrics, Listeners, bind};
use herald_kit::kafka::KafkaArgs;
use herald_kit::telemetry::LogArgs;
use herald_model::duration::parse_duration;
use herald_model::partition::PartitionHistory;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::app::{AppState, router};
use crate::kafka::{CreateError, Sender};
use crate::metrics::ProducerMetrics;
use crate::users::{Directory, DirectoryError};

/// Command-line flags; each one also reads an environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "herald-producer", version, about = "Herald producer: POST /send puts notifications on Kafka")]
pub struct Args {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Address the API listens on (`POST /send`, `/healthz`, `/readyz`).
    #[arg(long, env = "HERALD_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Address `/metrics` is served on, apart from the API, so that network policy can let
    /// Prometheus in without opening the API.
    #[arg(long, env = "HERALD_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,

    /// JSON file with a user directory (`[{"id":1,"name":"Emma"}, {"id":"alice","name":"Alice"}]`):
    /// only its users may send and receive (others are a 404), and notifications carry their
    /// names. Without one (the default) any valid user id is accepted.
    #[arg(long, env = "HERALD_USERS_FILE")]
    pub users_file: Option<PathBuf>,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub edge: EdgeArgs,

    /// Every partition count the topic has had, oldest first (e.g. `3,6`): a read marker also goes
    /// to the partitions its user mapped to before the topic grew, where the consumers holding
    /// those partitions apply it to the older notifications. The operator sets it from
    /// `status.topic.partitionHistory`.
    #[arg(long, env = "HERALD_PARTITION_HISTORY", value_parser = PartitionHistory::parse)]
    pub partition_history: Option<PartitionHistory>,

    /// How long a send may wait for Kafka to take and acknowledge a record before answering 503.
    #[arg(long, env = "HERALD_SEND_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub send_timeout: Duration,

    /// Threads that serve HTTP. One serves tens of thousands of sends a second and leaves the
    /// other cores to librdkafka's threads (and, in a shared pod, to the neighbours); more only
    /// help when that one thread is saturated (`herald_http_requests_total` flat while CPU sits at
    /// 100 % of one core).
    #[arg(long, env = "HERALD_WORKER_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: u16,

    /// On shutdown, how long in-flight requests and queued records may take to finish.
    #[arg(long, env = "HERALD_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    #[command(flatten)]
    pub log: LogArgs,
}

/// What can stop the producer, by step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("loading the user directory: {0}")]
    Users(#[from] DirectoryError),
    #[error("setting up authentication: {0}")]
    Auth(#[from] AuthSetupError),
    #[error("configuring Kafka: {0}")]
    Kafka(#[from] CreateError),
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
}

/// What the producer did before it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub sent: u64,
    pub unflushed: i32,
}

/// A producer ready to serve: validated configuration and its Kafka client.
pub struct Producer {
    state: AppState,
    registry: Registry,
    http: HttpMetrics,
    edge: EdgeArgs,
    shutdown_timeout: Duration,
}

impl Producer {
    /// Validates the flags, loads the directory and token and creates the Kafka client.
    pub fn new(args: &Args) -> Result<Self, Error> {
        let directory = args.users_file.as_deref().map(Directory::load).transpose()?;
        let auth = Authenticator::from_args(&args.auth, None)?;
        if !auth.required() {
            tracing::warn!(
                "no authentication configured (--auth-token-file, --jwt-secret-file, --jwt-public-key-file): anyone who reaches this port can send as any user"
            );
        }
        let registry = Registry::new();
        let http = HttpMetrics::register(&registry)?;
        let metrics = ProducerMetrics::register(&registry)?;
        let sender = Sender::new(&args.kafka, args.send_timeout, metrics.client_replacements.clone())?
            .with_partition_history(args.partition_history.clone().unwrap_or_default());
        tracing::info!(
            directory_users = directory.as_ref().map(Directory::len),
            auth = %auth.describe(),
            topic = %args.kafka.topic,
            bootstrap_servers = %args.kafka.bootstrap_servers,
            send_timeout_ms = args.send_timeout.as_millis() as u64,
            "producer configured"
        );
        Ok(Self {
            state: AppState {
                directory: directory.map(Arc::new),
                sender: Arc::new(sender),
                auth: Arc::new(auth),
                metrics,
                keys: Arc::default(),
            },
            registry,
            http,
            edge: args.edge.clone(),
            shutdown_timeout: args.shutdown_timeout,
        })
    }

    /// Serves until `shutdown` is cancelled, then drains requests and flushes.
    pub async fn serve(self, listeners: Listeners, shutdown: CancellationToken) -> Result<Summary, Error> {
        let sender = self.state.sender.clone();
        let metrics = self.state.metrics.clone();
        let readiness = tokio::spawn(sender.clone().watch_readiness(shutdown.clone()));
        let app = router(self.state, self.http, &self.edge);
        if let Ok(addr) = listeners.api.local_addr() {
            tracing::info!(%addr, "producer listening");
        }
        let header_timeout = self.edge.header_read_timeout;
        let served = herald_kit::http::serve_api_and_metrics(
            listeners,
            app,
            self.registry,
            &shutdown,
            self.shutdown_timeout,
            header_timeout,
        )
        .await;
        let _ = readiness.await;
        let unflushed = sender.flush(self.shutdown_timeout).await;
        let summary = Summary { sent: metrics.sent(), unflushed };
        tracing::info!(sent = summary.sent, unflushed = summary.unflushed, "producer stopped");
        served.map_err(Error::Serve)?;
        Ok(summary)
    }
}

/// Runs the producer until `shutdown` is cancelled.
pub async fn run(args: Args, shutdown: CancellationToken) -> Result<Summary, Error> {
    let producer = Producer::new(&args)?;
    let listeners = Listeners { api: bind(args.listen).await?, metrics: Some(bind(args.metrics_listen).await?) };
    producer.serve(listeners, shutdown).await
}
