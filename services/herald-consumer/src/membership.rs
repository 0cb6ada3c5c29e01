//! Who can answer for which partition. Every member publishes the partitions it holds at
//! `GET /internal/claims` with its advertised URL and how it holds each (serving, handing off,
//! standby, restoring); every member asks its peers (found by resolving `--peers`, in Kubernetes
//! the consumers' headless Service, and by asking again every address that answered lately, so a
//! pod that is leaving stays reachable while it hands off) and ranks, per partition, who can
//! answer completely now. The topic's partition count, which maps a user to a partition, comes
//! from the topic's metadata.
//!
//! Why not the group coordinator's own view (DescribeGroups, or offset-commit metadata)? A
//! librdkafka member cannot put its URL in its group metadata, and the broker we test on (nisshi)
//! answers DescribeGroups without client ids or assignments and OffsetFetch without metadata. The
//! peers' claims are the group's assignment as each member received it, and a stale view is
//! harmless: the member a read lands on checks that it holds the partition and is caught up.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::claims::{ClaimState, PeerClaims};
use crate::peer::PeerClient;

/// Parses `--peers`: comma-separated `host:port` entries (a host may resolve to many members).
pub fn parse_peers(value: &str) -> Result<Vec<String>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (host, port) = entry.rsplit_once(':').ok_or_else(|| format!("{entry:?} is not host:port"))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(format!("{entry:?} is not host:port"));
            }
            Ok(entry.to_string())
        })
        .collect()
}

/// A member that can be asked about a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Where to forward its reads: the address the member was reached at (a resolved `--peers`
    /// address) with the port it claims, never a host named in its claims.
    pub address: String,
    /// Its advertised URL (see [`Member::url`]).
    pub member: String,
    pub state: ClaimState,
}

/// A member that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its advertised URL: the name every member knows it by (standbys are chosen by it).
    pub url: String,
    /// It left the group and will take no partition again.
    pub leaving: bool,
}

/// The group as last seen.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The topic's partition count (0 while unknown).
    pub partitions: i32,
    /// Partition → the other members that hold it, best first: serving, handing off, standby,
    /// restoring (this member is not among them: it knows its own claims).
    pub holders: HashMap<i32, Vec<Candidate>>,
    /// Every member that answered at the last refresh, this one included.
    pub members: Vec<Member>,
    pub refreshed: Option<Instant>,
}

impl View {
    /// The view from the members' answers (each with the address it was reached at), as seen
    /// by the member advertising `self_url`.
    pub fn from_answers(
        partitions: i32,
        answers: impl IntoIterator<Item = (SocketAddr, PeerClaims)>,
        self_url: &str,
    ) -> Self {
        let mut view = View { partitions, refreshed: Some(Instant::now()), ..View::default() };
        for (addr, claims) in answers {
            let url = claims.url.trim_end_matches('/').to_string();
            view.members.push(Member { url: url.clone(), leaving: claims.leaving });
            if url == self_url.trim_end_matches('/') {
                continue;
            }
            // Reads go where this member was reached, on the port it claims: a claims body naming
            // some other host cannot send them anywhere else.
            let address = owner_address(addr, &claims.url);
            for (p, state) in claims.holdings() {
                view.holders.entry(p).or_default().push(Candidate {
                    address: address.clone(),
                    member: url.clone(),
                    state,
                });
            }
        }
        for candidates in view.holders.values_mut() {
            candidates.sort_by(|a, b| (a.state, &a.address).cmp(&(b.state, &b.address)));
        }
        view.members.sort_by(|a, b| a.url.cmp(&b.url));
        view.members.dedup_by(|a, b| a.url == b.url);
        view
    }

    /// The other members that hold `partition`, best first.
    pub fn holders(&self, partition: i32) -> &[Candidate] {
        self.holders.get(&partition).map_or(&[], Vec::as_slice)
    }

    /// Whether another member serves `partition` (the group's owner, restored).
    pub fn served_elsewhere(&self, partition: i32) -> bool {
        self.holders(partition).iter().any(|c| c.state == ClaimState::Serving)
    }
}

/// The shared, periodically refreshed view of the group.
pub struct Membership {
    view: RwLock<Arc<View>>,
    refresh_now: Notify,
    /// Woken at every new view.
    changed: Notify,
    refresh_requests: Option<prometheus::IntCounter>,
}

impl Default for Membership {
    fn default() -> Self {
        Self {
            view: RwLock::new(Arc::new(View::default())),
            refresh_now: Notify::new(),
            changed: Notify::new(),
            refresh_requests: None,
        }
    }
}

impl Membership {
    /// A membership that counts early refreshes in `refresh_requests`.
    pub fn new(refresh_requests: prometheus::IntCounter) -> Self {
        Self { refresh_requests: Some(refresh_requests), ..Self::default() }
    }

    pub fn view(&self) -> Arc<View> {
        self.view.read().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn set(&self, view: View) {
        if let Ok(mut v) = self.view.write() {
            *v = Arc::new(view);
        }
        self.changed.notify_waiters();
    }

    /// A view refreshed after `after`, asked for now; the latest one when none comes within
    /// `limit`.
    pub async fn view_after(&self, after: Instant, limit: Duration) -> Arc<View> {
        let deadline = tokio::time::Instant::now() + limit;
        self.refresh_soon();
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let view = self.view();
            if view.refreshed.is_some_and(|at| at > after) {
                return view;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.view();
            }
        }
    }

    /// Asks the refresher to look again now (ownership moved or a forward failed).
    pub fn refresh_soon(&self) {
        if let Some(counter) = &self.refresh_requests {
            counter.inc();
        }
        self.refresh_now.notify_one();
    }
}

/// How the refresher finds and asks the other members.
pub struct Discovery {
    pub peers: Vec<String>,
    pub self_url: String,
    /// Asks the peers for their claims (with the peer token, which their `/internal/claims`
    /// requires when configured).
    pub client: PeerClient,
    /// Topic metadata (the partition count).
    pub probe: Arc<BaseConsumer>,
    pub topic: String,
    pub every: Duration,
    pub timeout: Duration,
    /// How long an address that answered is asked again after it left `--peers` (a pod that is
    /// shutting down drops out of its Service while it still hands partitions off).
    pub remember: Duration,
    /// Addresses that answered, when they last did and what.
    pub answered: Mutex<HashMap<SocketAddr, (Instant, PeerClaims)>>,
}

/// How long a member's last answer stands in for one it missed (a refresh that timed out on a
/// busy pod): a read it misleads is checked where it lands and tries the next member, while a
/// member missing from the view would leave its partitions unanswered.
const LAST_ANSWER_STANDS: Duration = Duration::from_secs(3);

impl Discovery {
    async fn partitions(&self) -> Result<i32, String> {
        let (probe, topic, timeout) = (self.probe.clone(), self.topic.clone(), self.timeout);
        tokio::task::spawn_blocking(move || {
            let metadata = probe.fetch_metadata(Some(&topic), timeout).map_err(|e| format!("reading metadata: {e}"))?;
            metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
                .map(|t| t.partitions().len() as i32)
                .ok_or_else(|| format!("topic {topic} not found"))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    async fn addresses(&self) -> BTreeSet<SocketAddr> {
        let mut all = BTreeSet::new();
        for entry in &self.peers {
            match tokio::time::timeout(self.timeout, tokio::net::lookup_host(entry.as_str())).await {
                Ok(Ok(addrs)) => all.extend(addrs),
                Ok(Err(error)) => tracing::debug!(peer = %entry, %error, "resolving a peer failed"),
                Err(_) => tracing::debug!(peer = %entry, "resolving a peer timed out"),
            }
        }
        if let Ok(answered) = self.answered.lock() {
            all.extend(answered.iter().filter(|(_, (at, _))| at.elapsed() < self.remember).map(|(a, _)| *a));
        }
        all
    }

    /// Asks every peer for its claims; the members that answer make the view.
    pub async fn look(&self, previous: &View) -> View {
        let partitions = match self.partitions().await {
            Ok(n) => n,
            Err(error) => {
                tracing::warn!(%error, topic = %self.topic, "reading the partition count failed; keeping the last one");
                previous.partitions
            }
        };
        let addrs = self.addresses().await;
        let answers = futures::future::join_all(addrs.iter().map(|a| self.client.claims(*a, self.timeout))).await;
        let mut ok = Vec::new();
        let mut missed = Vec::new();
        for (addr, answer) in addrs.iter().zip(answers) {
            match answer {
                Ok(claims) => ok.push((*addr, claims)),
                Err(error) => {
                    tracing::trace!(%addr, %error, "peer did not answer");
                    missed.push(*addr);
                }
            }
        }
        if let Ok(mut answered) = self.answered.lock() {
            // An address is asked again for `remember` after its last answer, whether or not it
            // answered this time (a leaving pod is out of its Service but still hands off).
            answered.retain(|_, (at, _)| at.elapsed() < self.remember);
            for (a, claims) in &ok {
                answered.insert(*a, (Instant::now(), claims.clone()));
            }
            for a in &missed {
                if let Some((at, claims)) = answered.get(a)
                    && at.elapsed() < LAST_ANSWER_STANDS
                {
                    ok.push((*a, claims.clone()));
                }
            }
        }
        View::from_answers(partitions, ok, &self.self_url)
    }
}

/// The base URL reads for a member are forwarded to: the address it was reached at, with the port
/// of its advertised URL (or of that address when the URL has none).
pub fn owner_address(reached: SocketAddr, advertised: &str) -> String {
    let port = advertised
        .trim_end_matches('/')
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .unwrap_or(reached.port());
    format!("http://{}", SocketAddr::new(reached.ip(), port))
}

/// Refreshes the view every `discovery.every` (and when asked to) until `shutdown`.
pub async fn refresh(membership: Arc<Membership>, discovery: Discovery, shutdown: CancellationToken) {
    loop {
        let view = discovery.look(&membership.view()).await;
        tracing::trace!(
            members = view.members.len(),
            held = view.holders.len(),
            partitions = view.partitions,
            "group seen"
        );
        membership.set(view);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(discovery.every) => {}
            _ = membership.refresh_now.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_waits_for_a_view_refreshed_after_it_began_and_no_longer_than_its_limit() {
        let membership = Arc::new(Membership::default());
        membership.set(View { partitions: 3, refreshed: Some(Instant::now()), ..View::default() });
        let began = Instant::now();
        let setter = membership.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            setter.set(View { partitions: 6, refreshed: Some(Instant::now()), ..View::default() });
        });
        let view = membership.view_after(began, Duration::from_secs(10)).await;
        assert_eq!(view.partitions, 6, "the view from before the read is not taken");
        // Nothing refreshes: the latest view once the limit passes.
        let view = membership.view_after(Instant::now(), Duration::from_millis(100)).await;
        assert_eq!(view.partitions, 6);
        assert!(began.elapsed() >= Duration::from_millis(150));
    }

    #[test]
    fn peers_are_host_port_entries() {
        assert_eq!(
            parse_peers("herald-consumer-headless.ns.svc:8081, 10.0.0.7:8081,").unwrap(),
            ["herald-consumer-headless.ns.svc:8081", "10.0.0.7:8081"]
        );
        assert!(parse_peers("").unwrap().is_empty());
        for bad in ["nohost", ":8081", "host:port", "host:99999"] {
            assert!(parse_peers(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_go_where_the_member_was_reached_never_to_a_claimed_host() {
        let reached: SocketAddr = "10.0.0.7:8081".parse().unwrap();
        assert_eq!(owner_address(reached, "http://10.0.0.7:8081"), "http://10.0.0.7:8081");
        assert_eq!(owner_address(reached, "http://evil.example:9999/"), "http://10.0.0.7:9999");
        assert_eq!(owner_address(reached, "http://169.254.169.254"), "http://10.0.0.7:8081");
        let v6: SocketAddr = "[fd00::7]:8081".parse().unwrap();
        assert_eq!(owner_address(v6, "http://x:8081"), "http://[fd00::7]:8081");
    }

    #[test]
    fn holders_are_ranked_by_what_they_can_answer_and_this_member_is_left_out() {
        use crate::claims::{PeerClaim, PeerClaims};
        let claims = |url: &str, held: &[(i32, ClaimState)], leaving: bool| PeerClaims {
            url: url.into(),
            partitions: vec![],
            claims: Some(held.iter().map(|(p, state)| PeerClaim { partition: *p, state: *state }).collect()),
            leaving,
        };
        let addr = |port: u16| SocketAddr::from(([10, 0, 0, 1], port));
        let view = View::from_answers(
            6,
            [
                (addr(1), claims("http://a:1", &[(0, ClaimState::Restoring), (1, ClaimState::Serving)], false)),
                (addr(2), claims("http://b:2", &[(0, ClaimState::HandingOff)], true)),
                (addr(3), claims("http://c:3", &[(0, ClaimState::Standby), (2, ClaimState::Warming)], false)),
                // An older member: its assignment, serving.
                (addr(4), PeerClaims { url: "http://d:4".into(), partitions: vec![0], claims: None, leaving: false }),
                (addr(5), claims("http://me:5", &[(0, ClaimState::Serving)], false)),
            ],
            "http://me:5/",
        );
        let ranked: Vec<(&str, ClaimState)> = view.holders(0).iter().map(|c| (c.address.as_str(), c.state)).collect();
        assert_eq!(
            ranked,
            [
                ("http://10.0.0.1:4", ClaimState::Serving),
                ("http://10.0.0.1:2", ClaimState::HandingOff),
                ("http://10.0.0.1:3", ClaimState::Standby),
                ("http://10.0.0.1:1", ClaimState::Restoring),
            ]
        );
        assert!(view.served_elsewhere(1) && !view.served_elsewhere(2));
        assert_eq!(view.members.len(), 5, "this member counts among the members");
        assert!(view.members.iter().any(|m| m.url == "http://b:2" && m.leaving));
    }
}
