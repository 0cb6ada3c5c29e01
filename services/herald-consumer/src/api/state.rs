//! What the API's handlers share.

use std::sync::Arc;
use std::time::Duration;

use herald_auth::Authenticator;
use herald_model::partition::PartitionHistory;
use rdkafka::consumer::BaseConsumer;

use super::log_ends::LogEnds;
use super::slots::Streams;
use crate::claims::Claims;
use crate::group::GroupStatus;
use crate::membership::Membership;
use crate::metrics::ConsumerMetrics;
use crate::moves::Moves;
use crate::peer::PeerClient;
use crate::store::Store;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub status: Arc<GroupStatus>,
    pub claims: Arc<Claims>,
    pub membership: Arc<Membership>,
    /// A client of its own (no group) for topic metadata.
    pub probe: Arc<BaseConsumer>,
    /// The log ends the read barrier waits for, asked once for the reads waiting together.
    pub log_ends: Arc<LogEnds>,
    pub topic: String,
    /// How long a local read may wait for a restore or for the loop to catch up.
    pub read_timeout: Duration,
    /// Reads leave out notifications sent before now minus this (`--history`).
    pub history: Option<Duration>,
    /// Asks the other members (forwarded reads and streams); holds the peer token, which
    /// forwarded reads and `/internal/claims` require when set.
    pub peer: PeerClient,
    /// Who may read what.
    pub auth: Arc<Authenticator>,
    /// The open streams, bounded by `--max-streams`.
    pub streams: Arc<Streams>,
    /// Every partition count the topic has had (`--partition-history`).
    pub partition_history: PartitionHistory,
    pub metrics: ConsumerMetrics,
    /// What this member publishes about its claims.
    pub moves: Arc<Moves>,
}

impl AppState {
    /// This member's advertised URL.
    pub fn self_url(&self) -> &str {
        self.peer.self_url()
    }
}
