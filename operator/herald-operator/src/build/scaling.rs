//! How many consumers a pipeline runs: a pure rule over the lag, the partition count and the
//! recent history, table-tested with a simulated clock.
//!
//! - A fixed `spec.consumer.replicas`: that number, capped at the partitions.
//! - Otherwise `clamp(ceil(totalLag / lagThreshold), minReplicas, min(maxReplicas, partitions))`.
//! - Up at once; down only after the wanted count stayed lower for the stabilization window, and
//!   then to the highest count wanted within it (no flapping on a noisy lag).
//! - Lag unknown: keep the current count; never scale down on missing data.
//! - Wanted above the partitions for longer than [`SATURATION_AFTER`]: saturated, with a
//!   recommended partition count (Herald never adds partitions on its own).
//! - With standbys (`spec.consumer.standbyReplicas: 1`), any running group has at least two
//!   consumers, even above the partitions: a standby lives on another consumer than its owner.

use std::collections::VecDeque;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// How long demand must exceed the partitions before `PartitionsSaturated` is raised.
pub const SATURATION_AFTER: Duration = Duration::from_secs(60);

/// The scaling settings of a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub fixed: Option<i32>,
    pub min: i32,
    pub max: Option<i32>,
    pub lag_threshold: i64,
    pub stabilization: Duration,
    /// Standbys per partition (`spec.consumer.standbyReplicas`, 0 or 1).
    pub standbys: i32,
}

impl Policy {
    /// `replicas` raised so that every partition's standby can live on another consumer than
    /// its owner; zero (scaled to nothing) stays zero.
    fn with_standbys(&self, replicas: i32) -> i32 {
        if replicas > 0 { replicas.max(1 + self.standbys.clamp(0, 1)) } else { replicas }
    }
}

/// What one decision produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Consumers to run now.
    pub replicas: i32,
    /// Consumers the lag alone asks for (before the window), uncapped by the partitions.
    pub demand: i32,
    /// A fixed request was larger than the partitions.
    pub capped: bool,
    /// The lag was unknown: the current count was kept.
    pub lag_unknown: bool,
    /// Demand has exceeded the partitions for longer than [`SATURATION_AFTER`].
    pub saturated: bool,
}

/// What the rule remembers between decisions for one pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The candidates for the highest count wanted within the stabilization window: (time,
    /// wanted), times ascending and counts strictly descending (a sliding-window maximum, so a
    /// pipeline keeps a few entries however often it is reconciled).
    wanted: VecDeque<(Timestamp, i32)>,
    /// Since when demand has exceeded the partitions.
    over_since: Option<Timestamp>,
}

fn ceil_div(a: i64, b: i64) -> i64 {
    if a <= 0 { 0 } else { (a + b - 1) / b }
}

/// Decides the consumer count. `current` is what runs now (the Deployment's replicas, if any).
pub fn decide(
    policy: &Policy,
    partitions: i32,
    lag: Option<i64>,
    current: Option<i32>,
    now: Timestamp,
    history: &mut History,
) -> Decision {
    let partitions = partitions.max(1);
    if let Some(fixed) = policy.fixed {
        history.wanted.clear();
        history.over_since = None;
        let capped_at = fixed.min(partitions);
        let replicas = policy.with_standbys(capped_at);
        return Decision { replicas, demand: fixed, capped: fixed > capped_at, lag_unknown: false, saturated: false };
    }
    let ceiling = policy.max.unwrap_or(partitions).min(partitions).max(1);
    let floor = policy.min.clamp(0, ceiling);
    let Some(lag) = lag else {
        // Missing data never scales: keep what runs (or the floor when nothing runs yet).
        let replicas = policy.with_standbys(current.unwrap_or(floor).clamp(floor, ceiling));
        return Decision { replicas, demand: replicas, capped: false, lag_unknown: true, saturated: false };
    };
    let demand = ceil_div(lag, policy.lag_threshold.max(1)).min(i64::from(i32::MAX)) as i32;
    let wanted = demand.clamp(floor, ceiling);

    // Saturation: demand beyond the partitions, sustained.
    if demand > partitions {
        history.over_since.get_or_insert(now);
    } else {
        history.over_since = None;
    }
    let saturated = history.over_since.is_some_and(|since| {
        now.duration_since(since) >= SignedDuration::try_from(SATURATION_AFTER).unwrap_or(SignedDuration::ZERO)
    });

    // Stabilization: remember what was wanted within the window; scale down only to its maximum.
    let window = SignedDuration::try_from(policy.stabilization).unwrap_or(SignedDuration::ZERO);
    while history.wanted.back().is_some_and(|(_, w)| *w <= wanted) {
        history.wanted.pop_back();
    }
    history.wanted.push_back((now, wanted));
    while history.wanted.front().is_some_and(|(t, _)| now.duration_since(*t) > window) {
        history.wanted.pop_front();
    }
    let highest_in_window = history.wanted.front().map_or(wanted, |(_, w)| *w);
    let current = current.unwrap_or(0);
    let replicas = if wanted >= current {
        wanted
    } else {
        // Lower only as far as the highest count wanted within the window allows.
        highest_in_window.min(current).max(wanted)
    };
    let replicas = policy.with_standbys(replicas);
    Decision { replicas, demand, capped: false, lag_unknown: false, saturated }
}

/// The partition count that would let one consumer absorb at most `lag_threshold` of `lag`.
pub fn recommended_partitions(lag: i64, lag_threshold: i64) -> i64 {
    ceil_div(lag, lag_threshold.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (what, policy, partitions, lag, current replicas, expected replicas)
    type Case = (&'static str, Policy, i32, Option<i64>, Option<i32>, i32);

    fn policy() -> Policy {
        Policy {
            fixed: None,
            min: 1,
            max: None,
            lag_threshold: 1000,
            stabilization: Duration::from_secs(300),
            standbys: 0,
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn once(p: &Policy, partitions: i32, lag: Option<i64>, current: Option<i32>) -> Decision {
        decide(p, partitions, lag, current, at(0), &mut History::default())
    }

    #[test]
    fn the_rule_table() {
        let p = policy();
        let cases: &[Case] = &[
            ("zero lag: the minimum", p, 6, Some(0), Some(1), 1),
            ("lag below one threshold: one", p, 6, Some(999), Some(1), 1),
            ("lag of exactly two thresholds: two", p, 6, Some(2000), Some(1), 2),
            ("just above two thresholds: three", p, 6, Some(2001), Some(1), 3),
            ("lag needing more than the partitions: the partitions", p, 6, Some(50_000), Some(1), 6),
            ("minimum bound", Policy { min: 3, ..p }, 6, Some(0), Some(3), 3),
            ("maximum bound", Policy { max: Some(4), ..p }, 6, Some(50_000), Some(1), 4),
            ("maximum above partitions is capped", Policy { max: Some(12), ..p }, 6, Some(50_000), Some(1), 6),
            ("fixed replicas", Policy { fixed: Some(3), ..p }, 6, Some(50_000), Some(1), 3),
            ("fixed replicas above the partitions are capped", Policy { fixed: Some(10), ..p }, 6, Some(0), Some(1), 6),
            ("fixed zero", Policy { fixed: Some(0), ..p }, 6, Some(50_000), Some(4), 0),
            ("lag unknown keeps the current count", p, 6, None, Some(4), 4),
            ("lag unknown with nothing running starts at the minimum", Policy { min: 2, ..p }, 6, None, None, 2),
            ("the topic grew: the cap grows", p, 12, Some(50_000), Some(6), 12),
            ("standbys: at least two", Policy { standbys: 1, ..p }, 6, Some(0), Some(1), 2),
            ("standbys: two even above one partition", Policy { standbys: 1, ..p }, 1, Some(0), Some(1), 2),
            ("standbys: fixed one becomes two", Policy { fixed: Some(1), standbys: 1, ..p }, 6, Some(0), Some(1), 2),
            ("standbys: fixed zero stays zero", Policy { fixed: Some(0), standbys: 1, ..p }, 6, Some(0), Some(2), 0),
            ("standbys: lag unknown keeps two", Policy { standbys: 1, ..p }, 6, None, Some(1), 2),
            ("standbys: more lag, more consumers", Policy { standbys: 1, ..p }, 6, Some(4000), Some(2), 4),
        ];
        for (what, policy, partitions, lag, current, want) in cases {
            assert_eq!(once(policy, *partitions, *lag, *current).replicas, *want, "{what}");
        }
        assert!(once(&Policy { fixed: Some(10), ..p }, 6, Some(0), None).capped);
        assert!(once(&p, 6, None, Some(4)).lag_unknown);
    }

    #[test]
    fn up_at_once_down_only_after_the_window() {
        let p = policy();
        let mut h = History::default();
        let mut current = 1;
        let mut step = |secs: i64, lag: i64, current: &mut i32| {
            let d = decide(&p, 6, Some(lag), Some(*current), at(secs), &mut h);
            *current = d.replicas;
            d.replicas
        };
        assert_eq!(step(0, 5500, &mut current), 6, "up at once");
        assert_eq!(step(15, 0, &mut current), 6, "drained, but inside the window");
        assert_eq!(step(200, 0, &mut current), 6);
        assert_eq!(step(299, 0, &mut current), 6);
        assert_eq!(step(301, 0, &mut current), 1, "the window has passed since 6 was last wanted");
    }

    #[test]
    fn down_to_the_highest_count_wanted_within_the_window() {
        let p = policy();
        let mut h = History::default();
        decide(&p, 6, Some(6000), Some(1), at(0), &mut h);
        decide(&p, 6, Some(3000), Some(6), at(100), &mut h);
        decide(&p, 6, Some(0), Some(6), at(200), &mut h);
        // At 350 the 6 (t=0) has left the window; the 3 (t=100) has not.
        let d = decide(&p, 6, Some(0), Some(6), at(350), &mut h);
        assert_eq!(d.replicas, 3);
        let d = decide(&p, 6, Some(0), Some(3), at(450), &mut h);
        assert_eq!(d.replicas, 1);
    }

    #[test]
    fn no_oscillation_under_a_noisy_lag() {
        let p = policy();
        let mut h = History::default();
        let mut current = 1;
        let mut changes = 0;
        // Lag jumps between ~1,500 and ~4,500 every 15 s for an hour.
        for i in 0..240 {
            let lag = if i % 2 == 0 { 4500 } else { 1500 } + (i * 37 % 300);
            let d = decide(&p, 6, Some(lag), Some(current), at(i * 15), &mut h);
            if d.replicas != current {
                changes += 1;
                current = d.replicas;
            }
        }
        assert_eq!(current, 5);
        assert!(changes <= 2, "{changes} scale changes for a steady noisy load");
        assert!(h.wanted.len() <= 2, "the history stays small: {} entries", h.wanted.len());
    }

    #[test]
    fn unknown_lag_never_scales_down() {
        let p = policy();
        let mut h = History::default();
        decide(&p, 6, Some(6000), Some(1), at(0), &mut h);
        for secs in [400, 800, 2000] {
            let d = decide(&p, 6, None, Some(6), at(secs), &mut h);
            assert_eq!(d.replicas, 6);
            assert!(d.lag_unknown);
        }
    }

    #[test]
    fn saturation_after_a_minute_with_a_recommendation() {
        let p = policy();
        let mut h = History::default();
        assert!(!decide(&p, 6, Some(20_000), Some(6), at(0), &mut h).saturated);
        assert!(!decide(&p, 6, Some(20_000), Some(6), at(45), &mut h).saturated);
        assert!(decide(&p, 6, Some(20_000), Some(6), at(60), &mut h).saturated);
        assert_eq!(recommended_partitions(20_000, 1000), 20);
        // Demand back within the partitions clears it.
        assert!(!decide(&p, 6, Some(5000), Some(6), at(75), &mut h).saturated);
        assert!(!decide(&p, 6, Some(20_000), Some(6), at(90), &mut h).saturated, "the minute starts over");
    }
}
