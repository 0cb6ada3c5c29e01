//! Who owns which partition. Every member publishes the partitions it holds at
//! `GET /internal/claims` together with its advertised URL; every member asks its peers (found by
//! resolving `--peers`, in Kubernetes the consumers' headless Service) and builds the map of
//! owners from their answers. The topic's partition count, which maps a user to a partition,
//! comes from the topic's metadata.
//!
//! Why not the group coordinator's own view (DescribeGroups, or offset-commit metadata)? A
//! librdkafka member cannot put its URL in its group metadata, and the broker we test on (nisshi)
//! answers DescribeGroups without client ids or assignments and OffsetFetch without metadata. The
//! peers' claims are the group's assignment as each member received it, and a stale view is
//! harmless: the member a read lands on checks that it holds the partition and is caught up.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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

/// The group as last seen.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The topic's partition count (0 while unknown).
    pub partitions: i32,
    /// Partition → where to forward its reads: the address the owner was reached at (a resolved
    /// `--peers` address) with the port it claims, never a host named in its claims.
    pub owners: HashMap<i32, String>,
    /// Members that answered at the last refresh.
    pub members: usize,
    pub refreshed: Option<Instant>,
}

/// The shared, periodically refreshed view of the group.
pub struct Membership {
    view: RwLock<Arc<View>>,
    refresh_now: Notify,
    refresh_requests: Option<prometheus::IntCounter>,
}

impl Default for Membership {
    fn default() -> Self {
        Self { view: RwLock::new(Arc::new(View::default())), refresh_now: Notify::new(), refresh_requests: None }
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
}

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
        let mut view = View { partitions, refreshed: Some(Instant::now()), ..View::default() };
        for (addr, answer) in addrs.iter().zip(answers) {
            match answer {
                Ok(claims) => {
                    view.members += 1;
                    if claims.url.trim_end_matches('/') == self.self_url {
                        continue;
                    }
                    // Reads go where this member was reached, on the port it claims: a claims
                    // body naming some other host cannot send them anywhere else.
                    let owner = owner_address(*addr, &claims.url);
                    for p in claims.partitions {
                        view.owners.insert(p, owner.clone());
                    }
                }
                Err(error) => tracing::trace!(%addr, %error, "peer did not answer"),
            }
        }
        view
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
        tracing::trace!(members = view.members, owners = view.owners.len(), partitions = view.partitions, "group seen");
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
}
