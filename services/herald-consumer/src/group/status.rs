//! What the rest of the process can see of the group member: whether it has an assignment,
//! which partitions it holds, and how many records it handled.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What the rest of the process can see of the member.
#[derive(Debug, Default)]
pub struct GroupStatus {
    ready: AtomicBool,
    processed: AtomicU64,
    assigned: Mutex<Vec<i32>>,
}

impl GroupStatus {
    /// Joined the group and received an assignment (possibly empty).
    pub fn ready(&self) -> Result<(), String> {
        if self.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err("waiting for a partition assignment from the consumer group".into())
        }
    }

    /// Partitions assigned to this member, ascending.
    pub fn assigned(&self) -> Vec<i32> {
        self.assigned.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Records handled (stored, duplicate or invalid) since start.
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// The group assigned `assigned` to this member.
    pub(crate) fn set_assigned(&self, assigned: Vec<i32>) {
        if let Ok(mut a) = self.assigned.lock() {
            *a = assigned;
        }
    }

    pub(crate) fn count_processed(&self) {
        self.processed.fetch_add(1, Ordering::Relaxed);
    }
}
