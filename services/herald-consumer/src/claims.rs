//! The partitions ("claims") this member holds, as the HTTP side sees them: whether a claim is
//! still restoring its users' notifications from the log, and how far the consume loop has
//! handled it, so that a read can wait until everything acknowledged before it is stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

/// The path a member publishes its claims on, for the other members.
pub const CLAIMS_PATH: &str = "/internal/claims";

/// What a member publishes about itself at [`CLAIMS_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerClaims {
    /// The member's advertised URL.
    pub url: String,
    /// Partitions of the topic assigned to it.
    pub partitions: Vec<i32>,
}

/// One assigned partition.
#[derive(Debug)]
pub struct Claim {
    pub partition: i32,
    /// Distinguishes this assignment from an earlier or later one of the same partition.
    pub generation: u64,
    /// Records before this offset were handled by the group before (the committed offset at
    /// assignment): they are re-read to rebuild the store, not counted again. `None` when the
    /// committed offset could not be read; then the restore ends at the log end.
    pub restore_until: Option<i64>,
    pub assigned_at: Instant,
    handled: AtomicI64,
    restored: AtomicBool,
}

impl Claim {
    /// The offset after the last record the loop handled since the assignment (-1: none yet).
    pub fn handled(&self) -> i64 {
        self.handled.load(Ordering::Acquire)
    }

    /// The store holds everything the group had committed for this partition.
    pub fn restored(&self) -> bool {
        self.restored.load(Ordering::Acquire)
    }
}

/// The claims of this member, shared by the consume loop (writer) and HTTP handlers (readers).
#[derive(Debug, Default)]
pub struct Claims {
    by_partition: Mutex<HashMap<i32, Arc<Claim>>>,
    next_generation: AtomicU64,
    progress: Notify,
    waiters: AtomicUsize,
}

/// Keeps a reader counted as waiting while it lives.
pub struct Waiting<'a>(&'a Claims);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Claims {
    /// Records a new assignment of `partition`; `restore_until` as on [`Claim`].
    pub fn assign(&self, partition: i32, restore_until: Option<i64>) -> Arc<Claim> {
        let generation = self.next_generation.fetch_add(1, Ordering::AcqRel);
        let claim = Arc::new(Claim {
            partition,
            generation,
            restore_until,
            assigned_at: Instant::now(),
            handled: AtomicI64::new(-1),
            // Nothing was committed before: there is nothing to rebuild.
            restored: AtomicBool::new(restore_until.is_some_and(|until| until <= 0)),
        });
        if let Ok(mut map) = self.by_partition.lock() {
            map.insert(partition, claim.clone());
        }
        self.wake();
        claim
    }

    /// Forgets `partition` (revoked or lost).
    pub fn revoke(&self, partition: i32) {
        if let Ok(mut map) = self.by_partition.lock() {
            map.remove(&partition);
        }
        self.wake();
    }

    pub fn get(&self, partition: i32) -> Option<Arc<Claim>> {
        self.by_partition.lock().ok().and_then(|map| map.get(&partition).cloned())
    }

    /// Is `claim` still the current assignment of its partition?
    pub fn is_current(&self, claim: &Claim) -> bool {
        self.get(claim.partition).is_some_and(|c| c.generation == claim.generation)
    }

    /// The loop handled the record at `offset`. Returns true when this completed the restore.
    pub fn handled(&self, claim: &Claim, offset: i64) -> bool {
        claim.handled.store(offset + 1, Ordering::Release);
        let completed = !claim.restored()
            && claim.restore_until.is_some_and(|until| offset + 1 >= until)
            && !claim.restored.swap(true, Ordering::AcqRel);
        self.wake();
        completed
    }

    /// The loop reached the end of the partition's log. Returns true when this completed the
    /// restore.
    pub fn at_end(&self, claim: &Claim) -> bool {
        let completed = !claim.restored.swap(true, Ordering::AcqRel);
        self.wake();
        completed
    }

    fn wake(&self) {
        if self.waiters.load(Ordering::Acquire) > 0 {
            self.progress.notify_waiters();
        }
    }

    /// Registers a reader that waits for progress (see [`Claims::progress`]).
    pub fn waiting(&self) -> Waiting<'_> {
        self.waiters.fetch_add(1, Ordering::AcqRel);
        Waiting(self)
    }

    /// Resolves at the loop's next progress; create it (and `enable` it) before checking the
    /// condition it waits for, so that no wake-up is missed.
    pub fn progress(&self) -> tokio::sync::futures::Notified<'_> {
        self.progress.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_restored_once_the_committed_offset_is_reached() {
        let claims = Claims::default();
        let c = claims.assign(3, Some(2));
        assert!(!c.restored());
        assert!(!claims.handled(&c, 0));
        assert_eq!(c.handled(), 1);
        assert!(claims.handled(&c, 1));
        assert!(c.restored());
        // Only the first completion counts.
        assert!(!claims.handled(&c, 2));
        assert!(!claims.at_end(&c));
    }

    #[test]
    fn nothing_committed_means_nothing_to_restore_and_unknown_waits_for_the_end() {
        let claims = Claims::default();
        assert!(claims.assign(0, Some(0)).restored());
        let unknown = claims.assign(1, None);
        assert!(!claims.handled(&unknown, 100));
        assert!(claims.at_end(&unknown));
        assert!(unknown.restored());
    }

    #[test]
    fn a_new_assignment_replaces_the_old_one() {
        let claims = Claims::default();
        let first = claims.assign(0, Some(0));
        assert!(claims.is_current(&first));
        claims.revoke(0);
        assert!(!claims.is_current(&first));
        assert!(claims.get(0).is_none());
        let second = claims.assign(0, Some(0));
        assert!(!claims.is_current(&first));
        assert!(claims.is_current(&second));
    }

    #[tokio::test]
    async fn readers_wake_on_progress() {
        let claims = Arc::new(Claims::default());
        let c = claims.assign(0, Some(5));
        let reader = {
            let claims = claims.clone();
            let c = c.clone();
            tokio::spawn(async move {
                let _waiting = claims.waiting();
                loop {
                    let progress = claims.progress();
                    tokio::pin!(progress);
                    progress.as_mut().enable();
                    if c.restored() {
                        return c.handled();
                    }
                    progress.await;
                }
            })
        };
        for offset in 0..5 {
            claims.handled(&c, offset);
            tokio::task::yield_now().await;
        }
        assert_eq!(reader.await.unwrap(), 5);
    }

    #[test]
    fn claims_travel_as_json() {
        let c = PeerClaims { url: "http://10.0.0.7:8081".into(), partitions: vec![0, 4] };
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json, serde_json::json!({"url": "http://10.0.0.7:8081", "partitions": [0, 4]}));
    }
}
