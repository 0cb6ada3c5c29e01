//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas never both
//! reconcile. The decision is pure; [`LeaderElector`] does the I/O around it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

/// What to do with the lease as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder let it expire: take it.
    Acquire,
    /// It is ours: renew it.
    Renew,
    /// Someone else holds it and it has not expired.
    Wait,
}

/// Decides from the lease's holder and last renewal.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp, default_duration: Duration) -> Decision {
    let Some(spec) = lease else { return Decision::Acquire };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    let duration = spec.lease_duration_seconds.map_or(default_duration.as_secs() as i64, i64::from);
    match &spec.renew_time {
        Some(MicroTime(renewed)) if now.duration_since(*renewed) < SignedDuration::from_secs(duration) => {
            Decision::Wait
        }
        _ => Decision::Acquire,
    }
}

/// Holds or waits for the lease `name` in `namespace` as `identity`.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaderElector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        Self { api: Api::namespaced(client, namespace), name: name.into(), identity: identity.into(), duration }
    }

    /// One round: returns whether we hold the lease afterwards. A lost race (conflict) is not an
    /// error: someone else got it.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(&self.name).await?;
        let now = Timestamp::now();
        let decision = decide(current.as_ref().and_then(|l| l.spec.as_ref()), &self.identity, now, self.duration);
        if decision == Decision::Wait {
            return Ok(false);
        }
        let previous = current.as_ref().and_then(|l| l.spec.clone()).unwrap_or_default();
        let acquire_time =
            if decision == Decision::Renew { previous.acquire_time.clone() } else { Some(MicroTime(now)) };
        let transitions =
            previous.lease_transitions.unwrap_or(0) + i32::from(decision == Decision::Acquire && current.is_some());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: current.as_ref().and_then(|l| l.metadata.resource_version.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.duration.as_secs() as i32),
                acquire_time,
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        };
        let written = match current {
            None => self.api.create(&PostParams::default(), &lease).await,
            Some(_) => self.api.replace(&self.name, &PostParams::default(), &lease).await,
        };
        match written {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, renewed_secs_ago: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::now() - SignedDuration::from_secs(renewed_secs_ago))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let d = Duration::from_secs(15);
        let now = Timestamp::now();
        assert_eq!(decide(None, "me", now, d), Decision::Acquire);
        assert_eq!(decide(Some(&held_by("me", 3)), "me", now, d), Decision::Renew);
        assert_eq!(decide(Some(&held_by("other", 3)), "me", now, d), Decision::Wait);
        assert_eq!(decide(Some(&held_by("other", 30)), "me", now, d), Decision::Acquire, "expired");
        assert_eq!(decide(Some(&LeaseSpec::default()), "me", now, d), Decision::Acquire, "released");
        let never_renewed = LeaseSpec { holder_identity: Some("other".into()), ..LeaseSpec::default() };
        assert_eq!(decide(Some(&never_renewed), "me", now, d), Decision::Acquire);
    }
}
