//! The decisions behind moving partitions, as pure functions: when a handoff is over, which
//! member keeps a partition's standby, and whether a member can answer for every partition.

use std::time::{Duration, Instant};

use herald_model::partition::murmur2;

use crate::membership::View;

/// What to do with a partition being handed off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffStep {
    /// Keep answering for it.
    Keep,
    /// Its new owner has served it for a while (every member has had time to see so): let go.
    Served,
    /// The bound passed before the new owner served it: let go.
    Timeout,
    /// This member is leaving and no member that stays is left to take it: let go now.
    NoSuccessor,
}

/// The facts a handoff's end depends on.
#[derive(Debug, Clone, Copy)]
pub struct Handoff {
    /// When it began.
    pub started: Instant,
    /// Since when another member has been seen serving the partition.
    pub served_since: Option<Instant>,
    /// This member is shutting down.
    pub leaving: bool,
    /// Some other member that is not leaving answered at the last look at the group.
    pub others_stay: bool,
    /// The last look at the group was taken after the handoff began.
    pub fresh_view: bool,
}

/// Whether a handoff is over at `now`: served for at least `grace` (so that the other members'
/// views, refreshed about every second, name the new owner before this one lets go), or older
/// than `timeout`, or nobody is left to take it.
pub fn handoff_step(h: Handoff, now: Instant, timeout: Duration, grace: Duration) -> HandoffStep {
    if h.served_since.is_some_and(|since| now.saturating_duration_since(since) >= grace) {
        return HandoffStep::Served;
    }
    if now.saturating_duration_since(h.started) >= timeout {
        return HandoffStep::Timeout;
    }
    if h.leaving && h.fresh_view && !h.others_stay {
        return HandoffStep::NoSuccessor;
    }
    HandoffStep::Keep
}

/// The member that keeps `partition`'s standby: among `members` (advertised URLs; those staying
/// in the group) other than the partition's `owner`, the one whose hash with the partition is
/// highest (rendezvous hashing: every member computes the same choice from the same view, and
/// a member leaving moves only its own standbys).
pub fn standby_for<'a>(partition: i32, members: &[&'a str], owner: Option<&str>) -> Option<&'a str> {
    members
        .iter()
        .filter(|m| owner.is_none_or(|o| o.trim_end_matches('/') != m.trim_end_matches('/')))
        .max_by_key(|m| (murmur2(format!("{}#{partition}", m.trim_end_matches('/')).as_bytes()), **m))
        .copied()
}

/// Whether every partition of the topic can be answered completely now: by this member
/// (`here`) or by another one the view names as serving, handing off or standing by. The error
/// names the first that cannot.
pub fn covered(view: &View, here: impl Fn(i32) -> bool) -> Result<(), String> {
    if view.partitions <= 0 {
        return Err("the topic's partition count is not known yet".into());
    }
    match (0..view.partitions).find(|p| !here(*p) && !view.holders(*p).iter().any(|c| c.state.answers())) {
        Some(p) => Err(format!("no consumer can answer for partition {p} yet")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::ClaimState;
    use crate::membership::Candidate;

    fn handoff(started: Instant) -> Handoff {
        Handoff { started, served_since: None, leaving: false, others_stay: true, fresh_view: true }
    }

    #[test]
    fn a_handoff_ends_once_the_new_owner_served_for_the_grace_or_at_the_timeout() {
        let t0 = Instant::now();
        let (timeout, grace) = (Duration::from_secs(60), Duration::from_secs(2));
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(handoff_step(handoff(t0), at(10), timeout, grace), HandoffStep::Keep);
        let served = Handoff { served_since: Some(at(10)), ..handoff(t0) };
        assert_eq!(handoff_step(served, at(11), timeout, grace), HandoffStep::Keep, "others may not know yet");
        assert_eq!(handoff_step(served, at(12), timeout, grace), HandoffStep::Served);
        assert_eq!(handoff_step(handoff(t0), at(60), timeout, grace), HandoffStep::Timeout);
    }

    #[test]
    fn a_leaving_member_with_nobody_staying_lets_go_at_once_but_only_on_a_fresh_view() {
        let t0 = Instant::now();
        let (timeout, grace) = (Duration::from_secs(60), Duration::from_secs(2));
        let alone = Handoff { leaving: true, others_stay: false, ..handoff(t0) };
        assert_eq!(handoff_step(alone, t0, timeout, grace), HandoffStep::NoSuccessor);
        let stale = Handoff { fresh_view: false, ..alone };
        assert_eq!(handoff_step(stale, t0, timeout, grace), HandoffStep::Keep);
        // Not leaving: a revocation means another member took it; wait for it.
        let staying = Handoff { leaving: false, ..alone };
        assert_eq!(handoff_step(staying, t0, timeout, grace), HandoffStep::Keep);
        let others = Handoff { others_stay: true, ..alone };
        assert_eq!(handoff_step(others, t0, timeout, grace), HandoffStep::Keep);
    }

    #[test]
    fn the_standby_is_never_the_owner_and_moves_only_with_its_member() {
        let members = ["http://a:8081", "http://b:8081", "http://c:8081", "http://d:8081"];
        let mut moved = 0;
        for p in 0..60 {
            let owner = members[p as usize % 4];
            let chosen = standby_for(p, &members, Some(owner)).unwrap();
            assert_ne!(chosen, owner);
            // Another member (not the standby, not the owner) leaves: the standby stays.
            let other = members.iter().find(|m| **m != chosen && **m != owner).unwrap();
            let fewer: Vec<&str> = members.iter().copied().filter(|m| m != other).collect();
            assert_eq!(standby_for(p, &fewer, Some(owner)), Some(chosen), "partition {p}");
            // The owner dies: the same standby (the owner was never a candidate).
            let without_owner: Vec<&str> = members.iter().copied().filter(|m| *m != owner).collect();
            assert_eq!(standby_for(p, &without_owner, None), Some(chosen), "partition {p}");
            // The standby leaves: someone else, never the owner.
            let without: Vec<&str> = members.iter().copied().filter(|m| *m != chosen).collect();
            let next = standby_for(p, &without, Some(owner)).unwrap();
            assert!(next != owner && next != chosen);
            moved += usize::from(chosen != members[(p as usize + 1) % 4]);
        }
        // Spread over the members, not always the owner's neighbour.
        assert!(moved > 10, "{moved}");
        assert_eq!(standby_for(0, &["http://a:8081"], Some("http://a:8081")), None);
    }

    #[test]
    fn coverage_needs_an_answer_for_every_partition() {
        let mut view = View { partitions: 3, ..View::default() };
        assert_eq!(covered(&View::default(), |_| true), Err("the topic's partition count is not known yet".into()));
        let c = |state| Candidate { address: "http://b".into(), member: "http://b".into(), state };
        view.holders.insert(1, vec![c(ClaimState::Restoring)]);
        view.holders.insert(2, vec![c(ClaimState::HandingOff)]);
        assert_eq!(covered(&view, |p| p == 0), Err("no consumer can answer for partition 1 yet".into()));
        view.holders.insert(1, vec![c(ClaimState::Restoring), c(ClaimState::Standby)]);
        assert_eq!(covered(&view, |p| p == 0), Ok(()));
        assert!(covered(&view, |_| false).is_err());
    }
}
