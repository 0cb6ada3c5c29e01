//! Partitions that move between members without failing a read.
//!
//! When the group takes a partition from this member, the member keeps its notifications and
//! keeps reading it outside the group (the tail), so its reads stay complete; it lets go once
//! the new owner has restored the partition and serves it (seen in the peers' claims for a
//! grace period) or after `--handoff-timeout`, and says which in a log line and
//! `herald_consumer_handoffs_total{outcome}`. With `--standby`, each partition is also kept by one
//! other member chosen by rendezvous hashing over the members that stay, which answers for it
//! while its owner is gone (a crash) and takes it over without a restore when the group gives it
//! that partition. What this member publishes about its claims is built here too.

pub mod decide;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use self::decide::{Handoff, HandoffStep, handoff_step, standby_for};
use crate::claims::{Claim, ClaimState, Claims, PeerClaim, PeerClaims, Role};
use crate::group::GroupStatus;
use crate::group::handle::TailHandle;
use crate::membership::{Membership, View};
use crate::metrics::{ConsumerMetrics, HandoffOutcome};
use crate::store::Store;

/// How long the new owner must have been seen serving a partition before its old owner lets
/// go: about two refreshes of every member's view, so that reads find the new owner first.
const SERVED_GRACE: Duration = Duration::from_secs(2);
/// How long a standby no longer chosen keeps the partition while the chosen one catches up.
const STANDBY_GRACE: Duration = Duration::from_secs(10);
/// How often the claims are looked at against the group's view.
const STEP_EVERY: Duration = Duration::from_millis(200);

/// What moves partitions in and out of this member outside the group's own assignment.
pub struct Moves {
    topic: String,
    self_url: String,
    claims: Arc<Claims>,
    store: Arc<Store>,
    status: Arc<GroupStatus>,
    tail: TailHandle,
    metrics: ConsumerMetrics,
    timeout: Duration,
    standby: bool,
    leaving: AtomicBool,
    /// Partition → since when another member has been seen serving it (handoffs only).
    seen_served: Mutex<HashMap<i32, Instant>>,
    /// Partition → since when this member is no longer its chosen standby.
    unchosen: Mutex<HashMap<i32, Instant>>,
}

/// What [`Moves`] works with.
pub struct MovesConfig {
    pub topic: String,
    pub self_url: String,
    /// `--handoff-timeout`.
    pub timeout: Duration,
    /// `--standby`.
    pub standby: bool,
}

impl Moves {
    pub fn new(
        config: MovesConfig,
        claims: Arc<Claims>,
        store: Arc<Store>,
        status: Arc<GroupStatus>,
        tail: TailHandle,
        metrics: ConsumerMetrics,
    ) -> Self {
        Self {
            topic: config.topic,
            self_url: config.self_url.trim_end_matches('/').to_string(),
            claims,
            store,
            status,
            tail,
            metrics,
            timeout: config.timeout,
            standby: config.standby,
            leaving: AtomicBool::new(false),
            seen_served: Mutex::new(HashMap::new()),
            unchosen: Mutex::new(HashMap::new()),
        }
    }

    /// What this member tells the others at `/internal/claims`.
    pub fn published(&self) -> PeerClaims {
        let claims = self.claims.all().iter().map(|c| PeerClaim { partition: c.partition, state: c.state() }).collect();
        PeerClaims {
            url: self.self_url.clone(),
            partitions: self.status.assigned(),
            claims: Some(claims),
            leaving: self.leaving(),
        }
    }

    /// This member is shutting down: it takes no standby any more and tells the others.
    pub fn leave(&self) {
        self.leaving.store(true, Ordering::Release);
    }

    pub fn leaving(&self) -> bool {
        self.leaving.load(Ordering::Acquire)
    }

    /// Partitions this member still hands off.
    pub fn handing_off(&self) -> usize {
        self.claims.all().iter().filter(|c| c.role() == Role::HandingOff).count()
    }

    /// Looks at the claims against the group's `view`: ends handoffs that are over, starts and
    /// ends standbys.
    pub fn step(&self, view: &View) {
        let now = Instant::now();
        let leaving = self.leaving();
        let staying: Vec<&str> = view.members.iter().filter(|m| !m.leaving).map(|m| m.url.as_str()).collect();
        let others_stay = staying.iter().any(|m| *m != self.self_url);
        for claim in self.claims.all() {
            if claim.role() != Role::HandingOff {
                continue;
            }
            let p = claim.partition;
            let served_since = {
                let mut seen = self.seen_served.lock().unwrap_or_else(|e| e.into_inner());
                if view.served_elsewhere(p) {
                    Some(*seen.entry(p).or_insert(now))
                } else {
                    seen.remove(&p);
                    None
                }
            };
            let facts = Handoff {
                started: claim.role_since(),
                served_since,
                leaving,
                others_stay,
                fresh_view: view.refreshed.is_some_and(|at| at > claim.role_since()),
            };
            match handoff_step(facts, now, self.timeout, SERVED_GRACE) {
                HandoffStep::Keep => {}
                HandoffStep::Served => self.end_handoff(&claim, HandoffOutcome::Served, view, &staying),
                HandoffStep::Timeout => self.end_handoff(&claim, HandoffOutcome::Timeout, view, &staying),
                HandoffStep::NoSuccessor => {
                    tracing::info!(partition = p, "no consumer that stays can take the partition; letting it go");
                    self.drop_claim(&claim);
                }
            }
        }
        if self.standby && !leaving {
            self.keep_standbys(view, &staying, now);
        }
        let all = self.claims.all();
        self.metrics.handoffs_in_progress.set(all.iter().filter(|c| c.role() == Role::HandingOff).count() as i64);
        self.metrics.standby_partitions.set(all.iter().filter(|c| c.role() == Role::Standby).count() as i64);
    }

    fn end_handoff(&self, claim: &Arc<Claim>, outcome: HandoffOutcome, view: &View, staying: &[&str]) {
        let p = claim.partition;
        self.metrics.handoffs.with_label_values(&[outcome.label()]).inc();
        self.seen_served.lock().unwrap_or_else(|e| e.into_inner()).remove(&p);
        let took_ms = claim.role_since().elapsed().as_millis() as u64;
        match outcome {
            HandoffOutcome::Served => {
                tracing::info!(partition = p, took_ms, "handoff done: the new owner serves the partition")
            }
            HandoffOutcome::Timeout => tracing::warn!(
                partition = p,
                took_ms,
                timeout_s = self.timeout.as_secs(),
                "handoff timed out: the new owner did not serve the partition in time; letting it go"
            ),
        }
        if self.standby
            && !self.leaving()
            && standby_for(p, staying, owner(view, p)) == Some(self.self_url.as_str())
            && self.claims.keep_as_standby(claim)
        {
            tracing::info!(partition = p, "kept as this member's standby of the partition");
            return;
        }
        self.drop_claim(claim);
    }

    /// Starts a standby of each partition this member is chosen for and holds nothing of; lets
    /// go of a standby no longer chosen once the partition is served and the chosen member has
    /// had time to catch up.
    fn keep_standbys(&self, view: &View, staying: &[&str], now: Instant) {
        let mut unchosen = self.unchosen.lock().unwrap_or_else(|e| e.into_inner());
        for p in 0..view.partitions {
            let local = self.claims.get(p);
            let owner = match &local {
                Some(c) if c.role() == Role::Member => Some(self.self_url.as_str()),
                _ => owner(view, p),
            };
            let chosen = standby_for(p, staying, owner) == Some(self.self_url.as_str());
            match local {
                None if chosen => {
                    self.claims.standby(p);
                    self.tail.follow(p, None);
                    tracing::info!(partition = p, "standing by for the partition");
                }
                Some(c) if c.role() == Role::Standby && !chosen => {
                    let since = *unchosen.entry(p).or_insert(now);
                    let someone_else = view.holders(p).iter().any(|h| h.state == ClaimState::Standby);
                    if view.served_elsewhere(p)
                        && (someone_else || now.saturating_duration_since(since) >= STANDBY_GRACE)
                    {
                        unchosen.remove(&p);
                        tracing::info!(partition = p, "no longer this partition's standby");
                        self.drop_claim(&c);
                    }
                }
                _ => {
                    unchosen.remove(&p);
                }
            }
        }
    }

    /// Forgets a claim read outside the group, and its notifications.
    fn drop_claim(&self, claim: &Claim) {
        if !self.claims.is_current(claim) {
            return;
        }
        let p = claim.partition;
        self.tail.stop(p);
        self.claims.revoke(p);
        let dropped_users = self.store.drop_partition(p);
        self.metrics.store_bytes.set(self.store.bytes() as i64);
        self.metrics.forget_standby(&self.topic, p);
        tracing::debug!(partition = p, dropped_users, "partition let go");
    }

    /// Looks at the claims against the group's view until `stop`.
    pub async fn run(self: Arc<Self>, membership: Arc<Membership>, stop: CancellationToken) {
        loop {
            self.step(&membership.view());
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(STEP_EVERY) => {}
            }
        }
    }

    /// After this member left the group: waits until every partition it handed off is let go
    /// (each handoff is bounded by `--handoff-timeout`), at most `limit`.
    pub async fn handed_off(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.handing_off() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(STEP_EVERY).await;
        }
    }
}

/// The member the group gave `partition` to, as the view shows it.
fn owner(view: &View, partition: i32) -> Option<&str> {
    view.holders(partition)
        .iter()
        .find(|c| matches!(c.state, ClaimState::Serving | ClaimState::Restoring))
        .map(|c| c.member.as_str())
}
