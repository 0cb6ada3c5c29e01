//! Herald's producer: `POST /send` turns a request into a notification record on Kafka and
//! answers 200 only once the broker acknowledged it.

pub mod app;
pub mod auth;
pub mod kafka;
pub mod metrics;
pub mod request;
pub mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herald_kit::config::parse_duration;
use herald_kit::http::{BindError, HttpMetrics, bind};
use herald_kit::kafka::KafkaArgs;
use herald_kit::model::seed_users;
use herald_kit::telemetry::LogArgs;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::app::{AppState, router};
use crate::auth::{BearerToken, TokenError};
use crate::kafka::{CreateError, Sender};
use crate::metrics::ProducerMetrics;
use crate::users::{Directory, DirectoryError};

/// Command-line flags; each one also reads an environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "herald-producer", version, about = "Herald producer: POST /send puts notifications on Kafka")]
pub struct Args {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Address the HTTP server listens on.
    #[arg(long, env = "HERALD_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// JSON file with the user directory (`[{"id":1,"name":"Emma"}, ...]`); the seed's four
    /// users when not given.
    #[arg(long, env = "HERALD_USERS_FILE")]
    pub users_file: Option<PathBuf>,

    /// File holding the bearer token `/send` requires; no token is required when not given.
    #[arg(long, env = "HERALD_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// How long a send may wait for Kafka to take and acknowledge a record before answering 503.
    #[arg(long, env = "HERALD_SEND_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub send_timeout: Duration,

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
    #[error("loading the auth token: {0}")]
    Token(#[from] TokenError),
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
    shutdown_timeout: Duration,
}

impl Producer {
    /// Validates the flags, loads the directory and token and creates the Kafka client.
    pub fn new(args: &Args) -> Result<Self, Error> {
        let directory = match &args.users_file {
            Some(path) => Directory::load(path)?,
            None => Directory::new(seed_users())
                .map_err(|problem| DirectoryError::Invalid { path: "<seed>".into(), problem })?,
        };
        let token = args.auth_token_file.as_deref().map(BearerToken::load).transpose()?;
        let registry = Registry::new();
        let http = HttpMetrics::register(&registry)?;
        let metrics = ProducerMetrics::register(&registry)?;
        let sender = Sender::new(&args.kafka, args.send_timeout, metrics.client_replacements.clone())?;
        tracing::info!(
            users = directory.len(),
            auth = token.is_some(),
            topic = %args.kafka.topic,
            bootstrap_servers = %args.kafka.bootstrap_servers,
            send_timeout_ms = args.send_timeout.as_millis() as u64,
            "producer configured"
        );
        Ok(Self {
            state: AppState { directory: Arc::new(directory), sender: Arc::new(sender), token, metrics },
            registry,
            http,
            shutdown_timeout: args.shutdown_timeout,
        })
    }

    /// Serves on `listener` until `shutdown` is cancelled, then drains requests and flushes.
    pub async fn serve(self, listener: tokio::net::TcpListener, shutdown: CancellationToken) -> Result<Summary, Error> {
        let sender = self.state.sender.clone();
        let metrics = self.state.metrics.clone();
        let readiness = tokio::spawn(sender.clone().watch_readiness(shutdown.clone()));
        let app = router(self.state, self.registry, self.http);
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "producer listening");
        }
        let served = herald_kit::http::serve(listener, app, shutdown.clone(), self.shutdown_timeout).await;
        shutdown.cancel();
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
    let listener = bind(args.listen).await?;
    producer.serve(listener, shutdown).await
}
