//! The operator's own Kafka client for the lag probe: one per cluster (servers plus the
//! identity it uses), shared by every pipeline on that cluster, replaced when its credentials
//! rotate and closed when no pipeline uses the cluster any more. It speaks the Kafka protocol
//! itself (through `kafka-protocol`), so that one client can read the committed offsets of any
//! number of consumer groups and batch its requests per broker.

mod cluster;
mod conn;
mod scram;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use herald_api::KafkaSpec;

pub use cluster::Cluster;
pub use conn::Settings;

use super::error::{ProbeError, TopicError};
use super::lag::{LagReport, LagSource, LagTarget, cluster_key};

/// [`LagSource`] through one [`Cluster`] client per cluster key.
pub struct KafkaLag {
    timeout: Duration,
    clusters: Mutex<HashMap<String, (KafkaSpec, Arc<Cluster>)>>,
}

impl KafkaLag {
    /// Requests to the brokers may take `timeout` each.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, clusters: Mutex::new(HashMap::new()) }
    }

    /// The client for `kafka`, created (or replaced, when a credential changed) as needed.
    fn cluster(&self, kafka: &KafkaSpec) -> Result<Arc<Cluster>, ProbeError> {
        let key = cluster_key(kafka);
        let mut clusters = self.clusters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((spec, cluster)) = clusters.get(&key)
            && spec == kafka
        {
            return Ok(cluster.clone());
        }
        let cluster = Arc::new(Cluster::new(Settings::from_kafka(kafka, self.timeout)?));
        clusters.insert(key, (kafka.clone(), cluster.clone()));
        Ok(cluster)
    }

    /// How many cluster clients are open.
    pub fn clients(&self) -> usize {
        self.clusters.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl LagSource for KafkaLag {
    fn probe<'a>(
        &'a self,
        kafka: &'a KafkaSpec,
        targets: &'a [LagTarget],
    ) -> BoxFuture<'a, Vec<Result<Option<LagReport>, TopicError>>> {
        Box::pin(async move {
            let cluster = match self.cluster(kafka) {
                Ok(c) => c,
                Err(e) => return targets.iter().map(|_| Err(TopicError::Probe(e.clone()))).collect(),
            };
            cluster.lag(targets).await.into_iter().map(|r| r.map_err(TopicError::Probe)).collect()
        })
    }

    fn retain(&self, in_use: &[String]) {
        self.clusters.lock().unwrap_or_else(|p| p.into_inner()).retain(|key, _| in_use.contains(key));
    }
}
