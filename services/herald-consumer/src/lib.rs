//! Herald's consumer: a consumer-group member that stores each notification for its recipient
//! and serves `GET /notifications/{userID}` for any user (forwarding to the member holding the
//! user's partition). Offsets move only after a record is stored; a newly assigned partition is
//! rebuilt from the log before its reads are served.

pub mod api;
pub mod claims;
pub mod dead_letter;
#[cfg(test)]
mod fixtures;
pub mod group;
pub mod history;
pub mod membership;
pub mod metrics;
pub mod page;
pub mod peer;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use herald_kit::auth::{AuthArgs, AuthSetupError, Authenticator, PeerToken};
use herald_kit::config::parse_duration;
use herald_kit::http::{BindError, EdgeArgs, HttpMetrics, Listeners, bind};
use herald_kit::kafka::KafkaArgs;
use herald_kit::partition::PartitionHistory;
use herald_kit::telemetry::LogArgs;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::api::slots::Streams;
use crate::api::{AppState, router};
use crate::claims::Claims;
use crate::group::apply::Applier;
use crate::group::{GroupConfig, GroupError, GroupStatus, Shared};
use crate::membership::{Discovery, Membership};
use crate::metrics::ConsumerMetrics;
use crate::peer::PeerClient;
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

    /// Address the API listens on (`GET /notifications/{userID}`, `/internal/claims`, probes).
    #[arg(long, env = "HERALD_LISTEN", default_value = "0.0.0.0:8081")]
    pub listen: SocketAddr,

    /// Address `/metrics` is served on, apart from the API.
    #[arg(long, env = "HERALD_METRICS_LISTEN", default_value = "0.0.0.0:9091")]
    pub metrics_listen: SocketAddr,

    #[command(flatten)]
    pub auth: AuthArgs,

    /// File holding the token this pipeline's consumers share: forwarded reads and
    /// `/internal/claims` carry it, and without it a request to `/internal/claims` or one marked
    /// as forwarded is refused.
    #[arg(long, env = "HERALD_PEER_TOKEN_FILE", value_name = "PATH")]
    pub peer_token_file: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub edge: EdgeArgs,

    /// Notifications kept per user (the newest ones).
    #[arg(long, env = "HERALD_MAX_PER_USER", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_per_user: u32,

    /// Memory the stored notifications may take in all (estimated); beyond it the oldest
    /// notifications of the users holding the most are evicted first.
    #[arg(long, env = "HERALD_STORE_BUDGET_BYTES", default_value_t = 256 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub store_budget_bytes: u64,

    /// URL other consumers forward reads to (this pod's address). Default: `http://<listen>`, or
    /// `http://$HOSTNAME:<port>` when listening on all interfaces.
    #[arg(long, env = "HERALD_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// Where the other consumers are: comma-separated `host:port` entries, each resolved again at
    /// every refresh (in Kubernetes the consumers' headless Service). Without it this consumer
    /// answers only for the partitions it holds.
    #[arg(long, env = "HERALD_PEERS", value_parser = parse_peers_flag)]
    pub peers: Option<Peers>,

    /// Copy records skipped as invalid to this topic (it must exist), with headers naming their
    /// source topic, partition, offset and the reason.
    #[arg(long, env = "HERALD_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: Option<String>,

    /// How long a read may wait for its partition to be restored or caught up before a 503.
    #[arg(long, env = "HERALD_READ_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub read_timeout: Duration,

    /// Keep and show only notifications sent within this window (e.g. `7d`, `12h`): a restore
    /// starts at the first record of the window (Kafka's offsets-for-times) instead of the start
    /// of the retained log, and reads leave older notifications out. Default: everything retained.
    #[arg(long, env = "HERALD_HISTORY", value_parser = parse_history)]
    pub history: Option<Duration>,

    /// Every partition count the topic has had, oldest first (e.g. `3,6`): a topic that grew
    /// maps some users to a new partition while their older notifications stay in the old one,
    /// so reads, pages and streams of those users merge every partition they mapped to. The
    /// operator sets it from `status.topic.partitionHistory`.
    #[arg(long, env = "HERALD_PARTITION_HISTORY", value_parser = PartitionHistory::parse)]
    pub partition_history: Option<PartitionHistory>,

    /// Most streams (`GET /notifications/{userID}/stream`, served or proxied) open at once; 503
    /// beyond.
    #[arg(long, env = "HERALD_MAX_STREAMS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: u32,

    /// How long a read forwarded to the partition's owner may take before a 503.
    #[arg(long, env = "HERALD_FORWARD_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub forward_timeout: Duration,

    /// On shutdown, how long in-flight requests may take to finish.
    #[arg(long, env = "HERALD_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    #[command(flatten)]
    pub log: LogArgs,
}

fn parse_history(value: &str) -> Result<Duration, String> {
    match parse_duration(value)? {
        d if d.is_zero() => Err("the history window must be longer than zero".into()),
        d if d > Duration::from_secs(1000 * 365 * 24 * 3600) => {
            Err("the history window must be under 1000 years".into())
        }
        d => Ok(d),
    }
}

/// The `--peers` entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers(pub Vec<String>);

fn parse_peers_flag(value: &str) -> Result<Peers, String> {
    membership::parse_peers(value).map(Peers)
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
    #[error("invalid --advertise-url {url:?}: {why}")]
    AdvertiseUrl { url: String, why: &'static str },
    #[error(transparent)]
    DeadLetter(#[from] dead_letter::DeadLetterError),
    #[error("creating the Kafka client for topic metadata and log ends: {0}")]
    Probe(rdkafka::error::KafkaError),
    #[error("setting up authentication: {0}")]
    Auth(#[from] AuthSetupError),
}

impl Args {
    /// The URL this member advertises to the others.
    pub fn advertise_url(&self) -> Result<String, Error> {
        let url = match &self.advertise_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None if self.listen.ip().is_unspecified() => {
                let host =
                    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into());
                format!("http://{host}:{}", self.listen.port())
            }
            None => format!("http://{}", self.listen),
        };
        let invalid = |why| Error::AdvertiseUrl { url: url.clone(), why };
        let rest = url.strip_prefix("http://").ok_or_else(|| invalid("it must start with http://"))?;
        if rest.is_empty() || rest.contains('/') || rest.contains(char::is_whitespace) {
            return Err(invalid("it must be http://host:port with no path"));
        }
        Ok(url)
    }
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
    dead_letter: Option<dead_letter::DeadLetter>,
    state: AppState,
    peers: Vec<String>,
    /// Look for the other members (off when the embedder keeps the membership current).
    discover: bool,
    registry: Registry,
    http: HttpMetrics,
    edge: EdgeArgs,
    shutdown_timeout: Duration,
}

/// How often the peers are asked for their claims when nothing asks for it sooner.
const MEMBERSHIP_REFRESH: Duration = Duration::from_secs(1);

impl ConsumerService {
    /// Validates the flags, creates the member and subscribes it to the topic.
    pub fn new(args: &Args) -> Result<Self, Error> {
        let registry = Registry::new();
        let http = HttpMetrics::register(&registry)?;
        let metrics = ConsumerMetrics::register(&registry)?;
        let self_url = args.advertise_url()?;
        let store = Arc::new(Store::new(
            args.max_per_user as usize,
            usize::try_from(args.store_budget_bytes).unwrap_or(usize::MAX),
        ));
        let peer_token = args.peer_token_file.as_deref().map(PeerToken::load).transpose()?;
        let auth = Authenticator::from_args(&args.auth, peer_token.as_ref())?;
        if !auth.required() {
            tracing::warn!(
                "no authentication configured (--auth-token-file, --jwt-secret-file, --jwt-public-key-file): anyone who reaches this port can read every user's notifications"
            );
        }
        tracing::info!(auth = %auth.describe(), "consumer authentication");
        let claims = Arc::new(Claims::default());
        let shared = Shared {
            metrics: metrics.clone(),
            status: Arc::new(GroupStatus::default()),
            applier: Arc::new(Applier::new(store.clone(), claims.clone(), metrics.clone())),
            membership: Arc::new(Membership::new(metrics.refresh_requests.clone())),
        };
        let peer = PeerClient::new(
            args.forward_timeout,
            forwarded_body_limit(args.max_per_user),
            peer_token,
            &self_url,
            &metrics,
        );
        let state = AppState {
            store,
            status: shared.status.clone(),
            claims,
            membership: shared.membership.clone(),
            probe: Arc::new(probe(&args.kafka)?),
            topic: args.kafka.topic.clone(),
            read_timeout: args.read_timeout,
            history: args.history,
            partition_history: args.partition_history.clone().unwrap_or_default(),
            peer,
            auth: Arc::new(auth),
            streams: Streams::new(args.max_streams as usize, metrics.streams.clone()),
        };
        let config = GroupConfig { kafka: args.kafka.clone(), group_id: args.group_id.clone(), history: args.history };
        let consumer = group::subscribe(&config, shared)?;
        let dead_letter =
            args.dead_letter_topic.as_deref().map(|t| dead_letter::DeadLetter::new(&args.kafka, t)).transpose()?;
        Ok(Self {
            consumer,
            dead_letter,
            state,
            peers: args.peers.clone().unwrap_or_default().0,
            discover: true,
            registry,
            http,
            edge: args.edge.clone(),
            shutdown_timeout: args.shutdown_timeout,
        })
    }

    /// The member's assignment and progress, for embedding (local mode).
    pub fn status(&self) -> Arc<GroupStatus> {
        self.state.status.clone()
    }

    /// Hands the view of the group to the embedder, which then keeps it current (local mode runs
    /// every member in one process, on a mock cluster that cannot describe groups).
    pub fn external_membership(&mut self) -> Arc<Membership> {
        self.discover = false;
        self.state.membership.clone()
    }

    /// Consumes and serves until `shutdown` is cancelled; then finishes the record in hand,
    /// commits, leaves the group and drains HTTP.
    pub async fn serve(self, listeners: Listeners, shutdown: CancellationToken) -> Result<Summary, Error> {
        let loop_shutdown = shutdown.clone();
        let consumer = self.consumer;
        let dead_letter = self.dead_letter;
        let consuming = tokio::task::spawn_blocking(move || {
            let consumed = group::consume(consumer, dead_letter.as_ref(), &loop_shutdown);
            // Whatever ended the loop, the whole process stops with it.
            loop_shutdown.cancel();
            consumed
        });
        if self.discover && self.peers.is_empty() {
            tracing::warn!("no --peers: reads for partitions other consumers hold will answer 503");
        }
        let discovery = Discovery {
            peers: self.peers.clone(),
            self_url: self.state.self_url().to_string(),
            client: self.state.peer.clone(),
            probe: self.state.probe.clone(),
            topic: self.state.topic.clone(),
            every: MEMBERSHIP_REFRESH,
            timeout: Duration::from_secs(1),
        };
        let refresher = self
            .discover
            .then(|| tokio::spawn(membership::refresh(self.state.membership.clone(), discovery, shutdown.clone())));
        tracing::info!(advertise_url = %self.state.self_url(), "other consumers forward reads to this URL");
        let app = router(self.state.clone(), self.http, &self.edge);
        if let Ok(addr) = listeners.api.local_addr() {
            tracing::info!(%addr, "consumer listening");
        }
        let header_timeout = self.edge.header_read_timeout;
        let metrics_server =
            herald_kit::http::spawn_metrics_server(listeners.metrics, self.registry, &shutdown, header_timeout);
        let served =
            herald_kit::http::serve(listeners.api, app, shutdown.clone(), self.shutdown_timeout, header_timeout).await;
        shutdown.cancel();
        if let Some(metrics_server) = metrics_server {
            let _ = metrics_server.await;
        }
        let consumed = consuming.await.map_err(|e| Error::Loop(e.to_string()))?;
        if let Some(refresher) = refresher {
            let _ = refresher.await;
        }
        let summary = Summary { processed: consumed.processed, stored: consumed.stored };
        tracing::info!(processed = summary.processed, stored = summary.stored, "consumer stopped");
        served.map_err(Error::Serve)?;
        Ok(summary)
    }
}

/// A client without a group, for topic metadata and log ends (so those calls never wait behind the
/// member's own poll loop).
fn probe(kafka: &herald_kit::kafka::KafkaArgs) -> Result<rdkafka::consumer::BaseConsumer, Error> {
    let defaults = [("client.id", "herald-consumer-probe")];
    let config = herald_kit::kafka::client_config(&kafka.bootstrap_servers, &defaults, &kafka.properties, &[])
        .map_err(GroupError::from)?;
    config.create().map_err(Error::Probe)
}

/// The largest answer a peer may send for one forwarded read: a user's whole list, with room to
/// spare (at most `max_per_user` notifications of at most 4 KiB of message each).
fn forwarded_body_limit(max_per_user: u32) -> usize {
    (max_per_user as usize).saturating_mul(herald_kit::model::MAX_MESSAGE_BYTES + 1024).saturating_add(64 * 1024)
}

/// Runs the consumer until `shutdown` is cancelled.
pub async fn run(args: Args, shutdown: CancellationToken) -> Result<Summary, Error> {
    let service = ConsumerService::new(&args)?;
    let listeners = Listeners { api: bind(args.listen).await?, metrics: Some(bind(args.metrics_listen).await?) };
    service.serve(listeners, shutdown).await
}
