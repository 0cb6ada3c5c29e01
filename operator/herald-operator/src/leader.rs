//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it, so that two
//! operator replicas never both reconcile:
//!
//! - a standby takes the lease only once it has seen the lease record unchanged for a whole lease
//!   duration, measured on its own clock from when it saw the record change; the holder's
//!   timestamps are never compared with the local clock, so clock skew cannot shorten the wait;
//! - the leader renews every retry period and stops leading when it could not renew within the
//!   renew deadline (shorter than the lease duration), measured from the start of its last
//!   successful renewal; every API call is bounded by that deadline, so a hung call cannot keep a
//!   leader leading;
//! - a standby survives API errors (it tries again next period);
//! - a leader that stops releases the lease, so a standby takes over at once.
//!
//! The decision is pure ([`decide`]); [`LeaderElector`] does the I/O around it through a
//! [`LeaseStore`] (the Kubernetes API, or an in-memory store in tests).

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The lease timings (client-go's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// How long a standby waits, from when it last saw the lease change, before taking it.
    pub lease_duration: Duration,
    /// How long a leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby looks.
    pub retry_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with the lease as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder let it go unchanged for a whole lease duration: take it.
    Acquire,
    /// It is ours: renew it.
    Renew,
    /// Someone else holds it.
    Wait,
}

/// The parts of a lease record whose change shows that its holder is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    holder: Option<String>,
    renew_time: Option<String>,
    duration_seconds: Option<i32>,
    transitions: Option<i32>,
}

impl Record {
    fn of(spec: &LeaseSpec) -> Self {
        Self {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.as_ref().map(|t| t.0.to_string()),
            duration_seconds: spec.lease_duration_seconds,
            transitions: spec.lease_transitions,
        }
    }
}

/// The record as last seen, and when (on the local clock) it was first seen that way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub record: Record,
    pub since: Instant,
}

/// Decides from the lease as read now and what was observed before; updates `observed`.
pub fn decide(
    lease: Option<&LeaseSpec>,
    me: &str,
    now: Instant,
    observed: &mut Option<Observed>,
    default_duration: Duration,
) -> Decision {
    let Some(spec) = lease else {
        *observed = None;
        return Decision::Acquire;
    };
    let record = Record::of(spec);
    if observed.as_ref().is_none_or(|o| o.record != record) {
        *observed = Some(Observed { record: record.clone(), since: now });
    }
    match record.holder.as_deref() {
        None => Decision::Acquire,
        Some(holder) if holder == me => Decision::Renew,
        Some(_) => {
            let duration = record
                .duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(default_duration, Duration::from_secs);
            let since = observed.as_ref().map_or(now, |o| o.since);
            if now.saturating_duration_since(since) >= duration { Decision::Acquire } else { Decision::Wait }
        }
    }
}

/// Where the lease is read and written.
pub trait LeaseStore: Send + Sync {
    fn get(&self) -> impl Future<Output = Result<Option<Lease>, kube::Error>> + Send;
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<Lease, kube::Error>> + Send;
    /// Replaces the lease; `lease.metadata.resourceVersion` makes it conditional (409 on a race).
    fn replace(&self, lease: &Lease) -> impl Future<Output = Result<Lease, kube::Error>> + Send;
}

/// The Lease `name` in a namespace, through the Kubernetes API.
pub struct KubeLeases {
    api: Api<Lease>,
    name: String,
}

impl KubeLeases {
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self { api: Api::namespaced(client, namespace), name: name.to_string() }
    }
}

impl LeaseStore for KubeLeases {
    async fn get(&self) -> Result<Option<Lease>, kube::Error> {
        self.api.get_opt(&self.name).await
    }

    async fn create(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        self.api.create(&PostParams::default(), lease).await
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        self.api.replace(&self.name, &PostParams::default(), lease).await
    }
}

/// Why a round could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the Lease API: {0}")]
    Api(#[from] kube::Error),
    #[error("no answer from the Lease API in time")]
    Timeout,
}

/// Holds or waits for one lease as `identity`.
pub struct LeaderElector<S> {
    store: S,
    name: String,
    identity: String,
    timings: Timings,
    observed: Mutex<Option<Observed>>,
}

impl<S: LeaseStore> LeaderElector<S> {
    pub fn new(store: S, name: &str, identity: &str, timings: Timings) -> Self {
        Self { store, name: name.into(), identity: identity.into(), timings, observed: Mutex::new(None) }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// One round, bounded by `deadline`: whether we hold the lease afterwards. A lost race
    /// (conflict) is not an error: someone else got it.
    pub async fn try_acquire_or_renew(&self, deadline: Instant) -> Result<bool, LeaseError> {
        tokio::time::timeout_at(deadline, self.round()).await.map_err(|_| LeaseError::Timeout)?
    }

    async fn round(&self) -> Result<bool, LeaseError> {
        let current = self.store.get().await?;
        let decision = {
            let mut observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
            decide(
                current.as_ref().and_then(|l| l.spec.as_ref()),
                &self.identity,
                Instant::now(),
                &mut observed,
                self.timings.lease_duration,
            )
        };
        if decision == Decision::Wait {
            return Ok(false);
        }
        let now = Timestamp::now();
        let previous = current.as_ref().and_then(|l| l.spec.clone()).unwrap_or_default();
        let renewing = decision == Decision::Renew;
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: current.as_ref().and_then(|l| l.metadata.resource_version.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.timings.lease_duration.as_secs() as i32),
                acquire_time: if renewing { previous.acquire_time.clone() } else { Some(MicroTime(now)) },
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(
                    previous.lease_transitions.unwrap_or(0) + i32::from(!renewing && current.is_some()),
                ),
                ..LeaseSpec::default()
            }),
        };
        let written = match current {
            None => self.store.create(&lease).await,
            Some(_) => self.store.replace(&lease).await,
        };
        match written {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until this replica holds the lease (`true`) or `shutdown` is cancelled (`false`).
    /// API errors are logged and retried.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> bool {
        loop {
            let deadline = Instant::now() + self.timings.retry_period.max(Duration::from_millis(100));
            match self.try_acquire_or_renew(deadline).await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, lease = %self.name, "reading the leader lease failed; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Renews every retry period until `shutdown` is cancelled (returns `true`) or a renewal did
    /// not succeed within the renew deadline of the last successful one (returns `false`: the
    /// caller must stop leading at once).
    pub async fn keep(&self, shutdown: &CancellationToken) -> bool {
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return true,
                _ = tokio::time::sleep(self.timings.retry_period) => {}
            }
            let deadline = renewed + self.timings.renew_deadline;
            loop {
                let started = Instant::now();
                if started >= deadline {
                    tracing::error!(lease = %self.name, "the leader lease was not renewed within the renew deadline");
                    return false;
                }
                match self.try_acquire_or_renew(deadline).await {
                    Ok(true) => {
                        renewed = started;
                        break;
                    }
                    Ok(false) => {
                        tracing::error!(lease = %self.name, "another replica holds the leader lease");
                        return false;
                    }
                    Err(error) => {
                        tracing::warn!(%error, lease = %self.name, "renewing the leader lease failed; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return true,
                            _ = tokio::time::sleep(self.timings.retry_period.min(Duration::from_millis(500))) => {}
                        }
                    }
                }
            }
        }
    }

    /// Gives the lease up (holder cleared, one-second duration) so that a standby takes over at
    /// once; only if we still hold it. Bounded by the renew deadline.
    pub async fn release(&self) -> Result<(), LeaseError> {
        let release = async {
            let Some(current) = self.store.get().await? else { return Ok(()) };
            let Some(spec) = current.spec.clone() else { return Ok(()) };
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    resource_version: current.metadata.resource_version.clone(),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: None,
                    lease_duration_seconds: Some(1),
                    renew_time: Some(MicroTime(Timestamp::now())),
                    ..spec
                }),
            };
            match self.store.replace(&lease).await {
                Ok(_) => Ok(()),
                // Someone wrote the lease meanwhile: it is not ours to release any more.
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(LeaseError::from(e)),
            }
        };
        tokio::time::timeout(self.timings.renew_deadline, release).await.map_err(|_| LeaseError::Timeout)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    fn held_by(holder: &str, renew: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(renew)),
            ..LeaseSpec::default()
        }
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn nobody_or_ourselves() {
        let now = Instant::now();
        let mut seen = None;
        assert_eq!(decide(None, "me", now, &mut seen, D), Decision::Acquire);
        assert_eq!(decide(Some(&held_by("me", Timestamp::now())), "me", now, &mut seen, D), Decision::Renew);
        assert_eq!(decide(Some(&LeaseSpec::default()), "me", now, &mut seen, D), Decision::Acquire, "released");
    }

    /// (what, the holder's clock offset from ours, whether the holder keeps renewing, seconds
    /// we watch, expected decision at the end)
    #[test]
    fn skewed_clocks_never_shorten_or_stretch_the_wait() {
        let cases: &[(&str, i64, bool, u64, Decision)] = &[
            ("holder's clock an hour behind, renewing", -3600, true, 60, Decision::Wait),
            ("holder's clock an hour ahead, renewing", 3600, true, 60, Decision::Wait),
            ("holder's clock an hour behind, dead", -3600, false, 14, Decision::Wait),
            ("holder's clock an hour behind, dead for a lease duration", -3600, false, 15, Decision::Acquire),
            ("holder's clock an hour ahead, dead for a lease duration", 3600, false, 15, Decision::Acquire),
            ("holder's clock right, dead, first seen just now", 0, false, 0, Decision::Wait),
        ];
        for (what, offset, renewing, watch, want) in cases {
            let start = Instant::now();
            let base = Timestamp::now();
            let holder_clock = |secs: u64| base + SignedDuration::from_secs(*offset + secs as i64);
            let mut seen = None;
            let mut last = decide(Some(&held_by("other", holder_clock(0))), "me", start, &mut seen, D);
            for s in (2..=*watch).step_by(2).chain(std::iter::once(*watch)) {
                let renewed_at = if *renewing { s } else { 0 };
                let lease = held_by("other", holder_clock(renewed_at));
                last = decide(Some(&lease), "me", start + Duration::from_secs(s), &mut seen, D);
            }
            assert_eq!(last, *want, "{what}");
        }
    }

    /// An in-memory lease store whose calls can be made to hang, shared by two electors.
    #[derive(Clone, Default)]
    struct Memory {
        lease: std::sync::Arc<Mutex<Option<Lease>>>,
        version: std::sync::Arc<std::sync::atomic::AtomicU64>,
        hung: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    struct Replica {
        memory: Memory,
        /// This replica's calls hang while `memory.hung` is set.
        hangs: bool,
    }

    impl Replica {
        async fn maybe_hang(&self) {
            if self.hangs && self.memory.hung.load(std::sync::atomic::Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
        }

        fn conflict() -> kube::Error {
            kube::Error::Api(kube::core::Status { code: 409, ..Default::default() }.boxed())
        }
    }

    impl LeaseStore for Replica {
        async fn get(&self) -> Result<Option<Lease>, kube::Error> {
            self.maybe_hang().await;
            Ok(self.memory.lease.lock().unwrap().clone())
        }

        async fn create(&self, lease: &Lease) -> Result<Lease, kube::Error> {
            self.maybe_hang().await;
            let mut stored = self.memory.lease.lock().unwrap();
            if stored.is_some() {
                return Err(Self::conflict());
            }
            let mut lease = lease.clone();
            lease.metadata.resource_version =
                Some(self.memory.version.fetch_add(1, std::sync::atomic::Ordering::SeqCst).to_string());
            *stored = Some(lease.clone());
            Ok(lease)
        }

        async fn replace(&self, lease: &Lease) -> Result<Lease, kube::Error> {
            self.maybe_hang().await;
            let mut stored = self.memory.lease.lock().unwrap();
            if stored.as_ref().map(|l| &l.metadata.resource_version) != Some(&lease.metadata.resource_version) {
                return Err(Self::conflict());
            }
            let mut lease = lease.clone();
            lease.metadata.resource_version =
                Some(self.memory.version.fetch_add(1, std::sync::atomic::Ordering::SeqCst).to_string());
            *stored = Some(lease.clone());
            Ok(lease)
        }
    }

    /// Runs acquire-then-keep for one replica, publishing whether it leads.
    fn spawn_replica(
        elector: std::sync::Arc<LeaderElector<Replica>>,
        leading: std::sync::Arc<std::sync::atomic::AtomicBool>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            if !elector.acquire(&shutdown).await {
                return;
            }
            leading.store(true, std::sync::atomic::Ordering::SeqCst);
            let kept = elector.keep(&shutdown).await;
            leading.store(false, std::sync::atomic::Ordering::SeqCst);
            if kept {
                let _ = elector.release().await;
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_renewal_steps_down_before_a_standby_takes_over() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let memory = Memory::default();
        let a =
            Arc::new(LeaderElector::new(Replica { memory: memory.clone(), hangs: true }, "l", "a", Timings::default()));
        let b = Arc::new(LeaderElector::new(
            Replica { memory: memory.clone(), hangs: false },
            "l",
            "b",
            Timings::default(),
        ));
        let (a_leads, b_leads) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let shutdown = CancellationToken::new();
        let ta = spawn_replica(a.clone(), a_leads.clone(), shutdown.clone());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(a_leads.load(Ordering::SeqCst), "a acquired the free lease");
        let tb = spawn_replica(b.clone(), b_leads.clone(), shutdown.clone());
        // A steady leader keeps the standby waiting.
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!b_leads.load(Ordering::SeqCst), "b took a lease that was being renewed");
        }
        // a's API calls hang from now on.
        memory.hung.store(true, Ordering::SeqCst);
        let hung_at = Instant::now();
        let mut a_stopped = None;
        let mut b_started = None;
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (al, bl) = (a_leads.load(Ordering::SeqCst), b_leads.load(Ordering::SeqCst));
            assert!(!(al && bl), "two leaders at {:?} after the hang", hung_at.elapsed());
            if !al && a_stopped.is_none() {
                a_stopped = Some(hung_at.elapsed());
            }
            if bl && b_started.is_none() {
                b_started = Some(hung_at.elapsed());
            }
        }
        let (a_stopped, b_started) = (a_stopped.expect("a stepped down"), b_started.expect("b took over"));
        assert!(a_stopped <= Duration::from_secs(12), "a stepped down after {a_stopped:?}");
        assert!(b_started > a_stopped, "b started at {b_started:?}, a stopped at {a_stopped:?}");
        shutdown.cancel();
        let _ = tokio::join!(ta, tb);
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_stops_releases_the_lease_and_a_standby_takes_over_at_once() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let memory = Memory::default();
        let a = Arc::new(LeaderElector::new(
            Replica { memory: memory.clone(), hangs: false },
            "l",
            "a",
            Timings::default(),
        ));
        let b = Arc::new(LeaderElector::new(
            Replica { memory: memory.clone(), hangs: false },
            "l",
            "b",
            Timings::default(),
        ));
        let (a_leads, b_leads) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
        let ta = spawn_replica(a, a_leads.clone(), stop_a.clone());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let tb = spawn_replica(b, b_leads.clone(), stop_b.clone());
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(a_leads.load(Ordering::SeqCst) && !b_leads.load(Ordering::SeqCst));
        stop_a.cancel();
        ta.await.unwrap();
        let stopped = Instant::now();
        let lease = memory.lease.lock().unwrap().clone().unwrap();
        assert_eq!(lease.spec.as_ref().unwrap().holder_identity, None, "released");
        while !b_leads.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(stopped.elapsed() <= Duration::from_secs(3), "b waited {:?} for a released lease", stopped.elapsed());
        stop_b.cancel();
        tb.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_standby_survives_api_errors() {
        struct Failing;
        impl LeaseStore for Failing {
            async fn get(&self) -> Result<Option<Lease>, kube::Error> {
                Err(kube::Error::Api(kube::core::Status { code: 500, ..Default::default() }.boxed()))
            }
            async fn create(&self, _: &Lease) -> Result<Lease, kube::Error> {
                unreachable!()
            }
            async fn replace(&self, _: &Lease) -> Result<Lease, kube::Error> {
                unreachable!()
            }
        }
        let elector = LeaderElector::new(Failing, "l", "me", Timings::default());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            stop.cancel();
        });
        assert!(!elector.acquire(&shutdown).await, "kept trying until shut down");
    }
}
