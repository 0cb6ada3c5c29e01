//! Herald's consumer: a consumer-group member that stores each notification for its recipient
//! and serves `GET /notifications/{userID}` for any user (forwarding to a member holding the
//! user's partition). Offsets move only after a record is stored; a newly assigned partition is
//! rebuilt from the log before its reads are served, and one moved away keeps being answered
//! until its new owner serves it ([`moves`]).

pub mod api;
pub mod args;
pub mod claims;
pub mod dead_letter;
#[cfg(test)]
mod fixtures;
pub mod group;
pub mod history;
pub mod membership;
pub mod metrics;
pub mod moves;
pub mod page;
pub mod peer;
pub mod readiness;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use herald_auth::{AuthSetupError, Authenticator, PeerToken};
use herald_kit::http::{BindError, EdgeArgs, HttpMetrics, Listeners, bind};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::api::log_ends::LogEnds;
use crate::api::slots::Streams;
use crate::api::{AppState, router};
pub use crate::args::{Args, Peers};
use crate::claims::Claims;
use crate::group::apply::Applier;
use crate::group::handle::TailHandle;
use crate::group::tail::Tail;
use crate::group::{GroupConfig, GroupError, GroupStatus, Shared};
use crate::membership::{Discovery, Membership};
use crate::metrics::ConsumerMetrics;
use crate::moves::{Moves, MovesConfig};
use crate::peer::PeerClient;
use crate::readiness::Readiness;
use crate::store::Store;

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
    /// The reader outside the group (handoffs and standbys), when either is on.
    tail: Option<Tail>,
    state: AppState,
    peers: Vec<String>,
    /// Look for the other members (off when the embedder keeps the membership current).
    discover: bool,
    registry: Registry,
    http: HttpMetrics,
    edge: EdgeArgs,
    shutdown_timeout: Duration,
    handoff_timeout: Duration,
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
        let peer_token =
            args.peer_token_file.as_deref().map(PeerToken::load).transpose().map_err(AuthSetupError::from)?;
        let auth = Authenticator::from_args(&args.auth, peer_token.as_ref())?;
        if !auth.required() {
            tracing::warn!(
                "no authentication configured (--auth-token-file, --jwt-secret-file, --jwt-public-key-file): anyone who reaches this port can read every user's notifications"
            );
        }
        tracing::info!(auth = %auth.describe(), "consumer authentication");
        let claims = Arc::new(Claims::default());
        let status = Arc::new(GroupStatus::default());
        let applier = Arc::new(Applier::new(store.clone(), claims.clone(), metrics.clone()));
        let moving = !args.handoff_timeout.is_zero() || args.standby;
        let (tail, handle) = if moving {
            let (tail, handle) = group::tail::create(&args.kafka, applier.clone(), status.clone(), metrics.clone())?;
            (Some(tail), handle)
        } else {
            (None, TailHandle::detached())
        };
        let shared = Shared {
            metrics: metrics.clone(),
            status: status.clone(),
            applier,
            membership: Arc::new(Membership::new(metrics.refresh_requests.clone())),
            tail: (!args.handoff_timeout.is_zero()).then(|| handle.clone()),
        };
        let peer = PeerClient::new(
            args.forward_timeout,
            forwarded_body_limit(args.max_per_user),
            peer_token,
            &self_url,
            &metrics,
        );
        let moves = Moves::new(
            MovesConfig {
                topic: args.kafka.topic.clone(),
                self_url: self_url.clone(),
                timeout: args.handoff_timeout,
                standby: args.standby,
            },
            claims.clone(),
            store.clone(),
            status.clone(),
            handle,
            metrics.clone(),
        );
        let probe = Arc::new(probe(&args.kafka)?);
        let state = AppState {
            store,
            status,
            claims,
            membership: shared.membership.clone(),
            log_ends: Arc::new(LogEnds::new(probe.clone(), &args.kafka.topic)),
            probe,
            topic: args.kafka.topic.clone(),
            read_timeout: args.read_timeout,
            history: args.history,
            partition_history: args.partition_history.clone().unwrap_or_default(),
            peer,
            auth: Arc::new(auth),
            streams: Streams::new(args.max_streams as usize, metrics.streams.clone()),
            metrics,
            moves: Arc::new(moves),
        };
        let config = GroupConfig { kafka: args.kafka.clone(), group_id: args.group_id.clone(), history: args.history };
        let consumer = group::subscribe(&config, shared)?;
        let dead_letter =
            args.dead_letter_topic.as_deref().map(|t| dead_letter::DeadLetter::new(&args.kafka, t)).transpose()?;
        Ok(Self {
            consumer,
            dead_letter,
            tail,
            state,
            peers: args.peers.clone().unwrap_or_default().0,
            discover: true,
            registry,
            http,
            edge: args.edge.clone(),
            shutdown_timeout: args.shutdown_timeout,
            handoff_timeout: args.handoff_timeout,
        })
    }

    /// The member's assignment and progress, for embedding (local mode).
    pub fn status(&self) -> Arc<GroupStatus> {
        self.state.status.clone()
    }

    /// What the member publishes about its claims, for an embedder that keeps the view of the
    /// group itself (local mode).
    pub fn moves(&self) -> Arc<Moves> {
        self.state.moves.clone()
    }

    /// Hands the view of the group to the embedder, which then keeps it current (local mode runs
    /// every member in one process, on a mock cluster that cannot describe groups).
    pub fn external_membership(&mut self) -> Arc<Membership> {
        self.discover = false;
        self.state.membership.clone()
    }

    /// Consumes and serves until `shutdown` is cancelled, then shuts down in phases: not ready
    /// any more, the poll loop finishes the record in hand, commits and leaves the group (its
    /// partitions are handed off), the member keeps answering for them until their new owners
    /// serve them (at most `--handoff-timeout`), and only then HTTP drains and stops.
    pub async fn serve(self, listeners: Listeners, shutdown: CancellationToken) -> Result<Summary, Error> {
        // Stops the poll loop (it leaves the group), and marks that it ended, for whatever reason.
        let (loop_stop, loop_ended) = (CancellationToken::new(), CancellationToken::new());
        // Stops what still answers for handed-off partitions: HTTP, the view, the tail.
        let serving_stop = CancellationToken::new();
        let consuming = {
            let (consumer, dead_letter) = (self.consumer, self.dead_letter);
            let (loop_stop, loop_ended) = (loop_stop.clone(), loop_ended.clone());
            tokio::task::spawn_blocking(move || {
                let consumed = group::consume(consumer, dead_letter.as_ref(), &loop_stop);
                loop_ended.cancel();
                consumed
            })
        };
        let tailing = self.tail.map(|tail| {
            let stop = serving_stop.clone();
            tokio::task::spawn_blocking(move || tail.run(&stop))
        });
        if self.discover && self.peers.is_empty() {
            tracing::warn!("no --peers: reads for partitions other consumers hold will answer 503");
        }
        let require_coverage = !self.discover || !self.peers.is_empty();
        let readiness = Arc::new(Readiness::new(
            self.state.status.clone(),
            self.state.claims.clone(),
            self.state.membership.clone(),
            require_coverage,
        ));
        let discovery = Discovery {
            peers: self.peers.clone(),
            self_url: self.state.self_url().to_string(),
            client: self.state.peer.clone(),
            probe: self.state.probe.clone(),
            topic: self.state.topic.clone(),
            every: MEMBERSHIP_REFRESH,
            timeout: Duration::from_secs(1),
            remember: self.handoff_timeout + Duration::from_secs(10),
            answered: Default::default(),
        };
        let refresher = self
            .discover
            .then(|| tokio::spawn(membership::refresh(self.state.membership.clone(), discovery, serving_stop.clone())));
        let mover = tokio::spawn(self.state.moves.clone().run(self.state.membership.clone(), serving_stop.clone()));
        let phases = {
            let (moves, membership, readiness) =
                (self.state.moves.clone(), self.state.membership.clone(), readiness.clone());
            let (loop_stop, loop_ended, serving_stop) = (loop_stop.clone(), loop_ended.clone(), serving_stop.clone());
            let limit = self.handoff_timeout + Duration::from_secs(5);
            tokio::spawn(async move {
                tokio::select! {
                    _ = shutdown.cancelled() => tracing::info!("shutting down: leaving the group, handing partitions off"),
                    _ = loop_ended.cancelled() => tracing::warn!("the consume loop ended; shutting down"),
                }
                readiness.drain();
                moves.leave();
                loop_stop.cancel();
                loop_ended.cancelled().await;
                membership.refresh_soon();
                tokio::select! {
                    _ = moves.handed_off(limit) => tracing::info!("partitions handed off; stopping HTTP"),
                    _ = serving_stop.cancelled() => {}
                }
                serving_stop.cancel();
            })
        };
        tracing::info!(advertise_url = %self.state.self_url(), "other consumers forward reads to this URL");
        let ready = readiness.clone();
        let app = router(self.state.clone(), Arc::new(move || ready.check()), self.http, &self.edge);
        if let Ok(addr) = listeners.api.local_addr() {
            tracing::info!(%addr, "consumer listening");
        }
        let header_timeout = self.edge.header_read_timeout;
        let served = herald_kit::http::serve_api_and_metrics(
            listeners,
            app,
            self.registry,
            &serving_stop,
            self.shutdown_timeout,
            header_timeout,
        )
        .await;
        // HTTP failed on its own: stop the rest too.
        loop_stop.cancel();
        let consumed = consuming.await.map_err(|e| Error::Loop(e.to_string()))?;
        let _ = phases.await;
        let _ = mover.await;
        if let Some(refresher) = refresher {
            let _ = refresher.await;
        }
        if let Some(tailing) = tailing {
            let _ = tailing.await;
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
    (max_per_user as usize).saturating_mul(herald_model::MAX_MESSAGE_BYTES + 1024).saturating_add(64 * 1024)
}

/// Runs the consumer until `shutdown` is cancelled.
pub async fn run(args: Args, shutdown: CancellationToken) -> Result<Summary, Error> {
    let service = ConsumerService::new(&args)?;
    let listeners = Listeners { api: bind(args.listen).await?, metrics: Some(bind(args.metrics_listen).await?) };
    service.serve(listeners, shutdown).await
}
