//! Per-object exponential backoff for failed reconciles: 1 s, doubling, at most 5 min; reset by a
//! success.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The first retry's delay.
pub const FIRST: Duration = Duration::from_secs(1);
/// The longest delay.
pub const CAP: Duration = Duration::from_secs(300);

/// Consecutive failures per object.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Counts a failure of `key` and returns how long to wait before retrying.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_string()).or_default();
        *n = n.saturating_add(1);
        delay(*n)
    }

    /// A success: the next failure starts over at [`FIRST`].
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// Consecutive failures of `key` so far.
    pub fn failures(&self, key: &str) -> u32 {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).get(key).copied().unwrap_or(0)
    }
}

/// The delay after `failures` consecutive failures (1 → [`FIRST`]).
pub fn delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    FIRST.saturating_mul(1 << doublings).min(CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_caps_at_five_minutes_and_resets_on_success() {
        let b = Backoff::default();
        let secs: Vec<u64> = (0..5).map(|_| b.failed("apps/social").as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16]);
        assert_eq!(b.failed("apps/other").as_secs(), 1, "per object");
        for _ in 0..20 {
            b.failed("apps/social");
        }
        assert_eq!(b.failed("apps/social"), CAP);
        b.succeeded("apps/social");
        assert_eq!(b.failures("apps/social"), 0);
        assert_eq!(b.failed("apps/social").as_secs(), 1, "a success resets");
    }
}
