//! The consumer's command-line flags; each one also reads an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use herald_auth::AuthArgs;
use herald_kit::http::EdgeArgs;
use herald_kit::kafka::KafkaArgs;
use herald_kit::telemetry::LogArgs;
use herald_model::duration::parse_duration;
use herald_model::partition::PartitionHistory;

use crate::membership;

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

    /// How long a partition the group moves away from this consumer is still answered here, read
    /// outside the group, until its new owner has restored it and serves it. `0s` turns handoffs
    /// off: a moved partition is dropped at once and its reads answer 503 until the new owner
    /// has restored it.
    #[arg(long, env = "HERALD_HANDOFF_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub handoff_timeout: Duration,

    /// Also keep a standby of partitions other consumers own (each partition on one other
    /// consumer, chosen by rendezvous hashing), which answers for them while their owner is gone
    /// (a crash) and takes them over without a restore. Roughly doubles the store's memory.
    #[arg(long, env = "HERALD_STANDBY")]
    pub standby: bool,

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

impl Args {
    /// The URL this member advertises to the others.
    pub fn advertise_url(&self) -> Result<String, crate::Error> {
        let url = match &self.advertise_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None if self.listen.ip().is_unspecified() => {
                let host =
                    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into());
                format!("http://{host}:{}", self.listen.port())
            }
            None => format!("http://{}", self.listen),
        };
        let invalid = |why| crate::Error::AdvertiseUrl { url: url.clone(), why };
        let rest = url.strip_prefix("http://").ok_or_else(|| invalid("it must start with http://"))?;
        if rest.is_empty() || rest.contains('/') || rest.contains(char::is_whitespace) {
            return Err(invalid("it must be http://host:port with no path"));
        }
        Ok(url)
    }
}
