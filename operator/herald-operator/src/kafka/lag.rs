//! What a lag reading is and where one comes from: the targets, the reports, the rule for one
//! partition's lag, and the [`LagSource`] the prober reads through (the protocol client in
//! [`super::protocol`], a fake in tests).

use futures::future::BoxFuture;
use herald_api::KafkaSpec;

use super::error::TopicError;

/// One pipeline's lag to read: its topic and consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LagTarget {
    pub topic: String,
    pub group: String,
}

/// Reads the lag of many groups on one Kafka cluster in one go.
pub trait LagSource: Send + Sync + 'static {
    /// The lag of each target on the cluster `kafka` reaches (servers and every property,
    /// credentials included), in the order of `targets`. `Ok(None)`: the topic does not exist.
    fn probe<'a>(
        &'a self,
        kafka: &'a KafkaSpec,
        targets: &'a [LagTarget],
    ) -> BoxFuture<'a, Vec<Result<Option<LagReport>, TopicError>>>;

    /// Drops the clients of clusters no pipeline uses any more (`in_use`: their keys, as
    /// [`cluster_key`] makes them).
    fn retain(&self, in_use: &[String]);
}

/// Properties holding secret material: left out of a cluster's key, so that a rotated password
/// or certificate replaces the cluster's client instead of adding one.
pub const SECRET_PROPERTIES: &[&str] =
    &["sasl.password", "ssl.key.pem", "ssl.certificate.pem", "ssl.ca.pem", "ssl.key.password"];

/// What identifies a cluster and the identity used on it: the servers and every property that is
/// not a secret.
pub fn cluster_key(kafka: &KafkaSpec) -> String {
    let public: Vec<_> = kafka.properties.iter().filter(|(k, _)| !SECRET_PROPERTIES.contains(&k.as_str())).collect();
    format!("{}\n{public:?}", kafka.bootstrap_servers)
}

/// A group's lag on a topic, as read from Kafka (not from the consumers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagReport {
    /// The topic's partition count.
    pub partitions: i32,
    /// Lag by partition, every partition of the topic.
    pub per_partition: Vec<(i32, i64)>,
}

impl LagReport {
    pub fn total(&self) -> i64 {
        self.per_partition.iter().map(|(_, lag)| *lag).sum()
    }
}

/// The lag of one partition: from the committed offset to the log end, or, with nothing
/// committed, everything still retained (records removed by retention never count). A log end
/// reported below the committed offset (a broker quirk) counts as the committed offset.
pub fn partition_lag(log_start: i64, log_end: i64, committed: Option<i64>) -> i64 {
    match committed {
        Some(c) => (log_end.max(c) - c).max(0),
        None => (log_end - log_start.max(0)).max(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_lag_rules() {
        assert_eq!(partition_lag(0, 100, Some(60)), 40);
        assert_eq!(partition_lag(0, 100, Some(100)), 0);
        assert_eq!(partition_lag(0, 100, None), 100, "nothing committed: everything retained");
        assert_eq!(partition_lag(70, 100, None), 30, "records removed by retention never count");
        assert_eq!(partition_lag(0, 91, Some(100)), 0, "a log end reported below the commit");
        assert_eq!(partition_lag(0, 0, None), 0);
    }
}
