//! Which Strimzi APIs the cluster serves, looked up at most once a minute for all pipelines
//! (Strimzi may be installed or upgraded while the operator runs).

use std::sync::Mutex;
use std::time::Duration;

use kube::api::ApiResource;
use tokio::time::Instant;

use crate::build::strimzi::{GROUP, KIND, USER_KIND};

/// How long a discovery answer is reused.
pub const TTL: Duration = Duration::from_secs(60);

/// The KafkaTopic and KafkaUser APIs (`v1` when served, else `v1beta2`); `None` when absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Served {
    pub topic: Option<ApiResource>,
    pub user: Option<ApiResource>,
}

/// The cached answer.
#[derive(Default)]
pub struct StrimziApis {
    cached: Mutex<Option<(Instant, Served)>>,
}

impl StrimziApis {
    /// What the cluster serves (from the cache when fresh).
    pub async fn served(&self, client: &kube::Client) -> Result<Served, kube::Error> {
        if let Some((at, served)) = self.cached.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && at.elapsed() < TTL
        {
            return Ok(served.clone());
        }
        let served = match kube::discovery::group(client, GROUP).await {
            Ok(group) => {
                let find = |kind: &str| {
                    ["v1", "v1beta2"].iter().find_map(|version| {
                        group.versioned_resources(version).into_iter().find(|(ar, _)| ar.kind == kind).map(|(ar, _)| ar)
                    })
                };
                Served { topic: find(KIND), user: find(USER_KIND) }
            }
            Err(kube::Error::Api(status)) if status.is_not_found() => Served::default(),
            Err(kube::Error::Discovery(_)) => Served::default(),
            Err(e) => return Err(e),
        };
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), served.clone()));
        Ok(served)
    }
}
