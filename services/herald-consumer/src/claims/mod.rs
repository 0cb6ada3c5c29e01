//! The partitions ("claims") this member holds, as the HTTP side sees them: what the member
//! does with each ([`Role`]: a group member's partition, one being handed off to its new owner,
//! a standby's), whether it is still restoring its users' notifications from the log, and how
//! far it has been read, so that a read can wait until everything acknowledged before it is
//! stored. The wire form other members read is in [`wire`].

pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

pub use self::wire::{CLAIMS_PATH, ClaimState, PeerClaim, PeerClaims};

/// What this member does with a partition it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Assigned to this member by the group: read by the member, offsets stored and committed.
    Member,
    /// Revoked from this member and still read outside the group (no group, no commits), so its
    /// reads stay complete until the new owner serves it: a handoff.
    HandingOff,
    /// Read outside the group as the partition's standby, to answer when its owner is gone.
    Standby,
}

impl Role {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Role::HandingOff,
            2 => Role::Standby,
            _ => Role::Member,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Role::Member => 0,
            Role::HandingOff => 1,
            Role::Standby => 2,
        }
    }

    /// Read by a reader outside the group (the tail), not by the member's poll loop.
    pub fn tailed(self) -> bool {
        !matches!(self, Role::Member)
    }
}

/// `restore_until` when the committed offset could not be read.
const TO_THE_LOG_END: i64 = i64::MIN;

/// One partition this member holds.
#[derive(Debug)]
pub struct Claim {
    pub partition: i32,
    /// Distinguishes this claim from an earlier or later one of the same partition: the store's
    /// notifications of the partition were built under it (a role change keeps it).
    pub generation: u64,
    /// When the claim's notifications started being built.
    pub assigned_at: Instant,
    restore_until: AtomicI64,
    handled: AtomicI64,
    restored: AtomicBool,
    role: AtomicU8,
    /// When the role last changed.
    role_since: Mutex<Instant>,
}

impl Claim {
    /// The offset after the last record read since the claim began (-1: none yet).
    pub fn handled(&self) -> i64 {
        self.handled.load(Ordering::Acquire)
    }

    /// The store holds everything the group had committed for this partition (or, read outside
    /// the group, everything up to the log end once).
    pub fn restored(&self) -> bool {
        self.restored.load(Ordering::Acquire)
    }

    /// Records before this offset were handled by the group before (the committed offset at
    /// assignment): they are re-read to rebuild the store, not counted again. `None` when the
    /// committed offset could not be read (or the claim is read outside the group); then the
    /// restore ends at the log end.
    pub fn restore_until(&self) -> Option<i64> {
        Some(self.restore_until.load(Ordering::Acquire)).filter(|v| *v != TO_THE_LOG_END)
    }

    pub fn role(&self) -> Role {
        Role::from_u8(self.role.load(Ordering::Acquire))
    }

    /// When the role last changed (a handoff's start).
    pub fn role_since(&self) -> Instant {
        self.role_since.lock().map(|t| *t).unwrap_or_else(|_| Instant::now())
    }

    /// Can answer a read completely once caught up with the log end: restored, whatever its role.
    pub fn answerable(&self) -> bool {
        self.restored()
    }

    /// What other members are told about it.
    pub fn state(&self) -> ClaimState {
        match (self.role(), self.restored()) {
            (Role::Member, true) => ClaimState::Serving,
            (Role::HandingOff, true) => ClaimState::HandingOff,
            (Role::Standby, true) => ClaimState::Standby,
            (Role::Standby, false) => ClaimState::Warming,
            (_, false) => ClaimState::Restoring,
        }
    }

    fn set_role(&self, role: Role) {
        self.role.store(role.as_u8(), Ordering::Release);
        if let Ok(mut since) = self.role_since.lock() {
            *since = Instant::now();
        }
    }
}

/// The claims of this member, shared by the readers of the log (writers) and HTTP handlers.
#[derive(Debug, Default)]
pub struct Claims {
    by_partition: Mutex<HashMap<i32, Arc<Claim>>>,
    next_generation: AtomicU64,
    /// Changes with every claim added, dropped or given another role.
    epoch: AtomicU64,
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
    fn insert(&self, partition: i32, restore_until: Option<i64>, role: Role, restored: bool) -> Arc<Claim> {
        let generation = self.next_generation.fetch_add(1, Ordering::AcqRel);
        let claim = Arc::new(Claim {
            partition,
            generation,
            assigned_at: Instant::now(),
            restore_until: AtomicI64::new(restore_until.unwrap_or(TO_THE_LOG_END)),
            handled: AtomicI64::new(-1),
            restored: AtomicBool::new(restored),
            role: AtomicU8::new(role.as_u8()),
            role_since: Mutex::new(Instant::now()),
        });
        if let Ok(mut map) = self.by_partition.lock() {
            map.insert(partition, claim.clone());
        }
        self.changed();
        claim
    }

    /// Records a new assignment of `partition` by the group; `restore_until` as on [`Claim`].
    pub fn assign(&self, partition: i32, restore_until: Option<i64>) -> Arc<Claim> {
        // Nothing was committed before: there is nothing to rebuild.
        self.insert(partition, restore_until, Role::Member, restore_until.is_some_and(|until| until <= 0))
    }

    /// The group assigned `partition` back to this member while it still reads it outside the
    /// group (a handoff or a standby): the claim, its notifications and its progress are kept
    /// and it becomes the member's again, its records before `restore_until` taken as a restore.
    /// `None` when there is no such claim (then the partition is restored from the log).
    pub fn take_back(&self, partition: i32, restore_until: Option<i64>) -> Option<Arc<Claim>> {
        let claim = self.get(partition).filter(|c| c.role().tailed() && c.restored())?;
        claim.restore_until.store(restore_until.unwrap_or(TO_THE_LOG_END), Ordering::Release);
        claim.set_role(Role::Member);
        self.changed();
        Some(claim)
    }

    /// The group revoked `partition`: a restored claim is handed off (read outside the group until
    /// its new owner serves it) and returned; one still restoring is dropped (`None`).
    pub fn hand_off(&self, partition: i32) -> Option<Arc<Claim>> {
        let claim = self.get(partition)?;
        if !(claim.role() == Role::Member && claim.restored()) {
            self.revoke(partition);
            return None;
        }
        claim.set_role(Role::HandingOff);
        self.changed();
        Some(claim)
    }

    /// Starts a standby claim of `partition`, read outside the group from the log start.
    pub fn standby(&self, partition: i32) -> Arc<Claim> {
        self.insert(partition, None, Role::Standby, false)
    }

    /// A handed-off claim is kept as this member's standby of the partition.
    pub fn keep_as_standby(&self, claim: &Claim) -> bool {
        if !self.is_current(claim) || claim.role() != Role::HandingOff {
            return false;
        }
        claim.set_role(Role::Standby);
        self.changed();
        true
    }

    /// Forgets `partition` (revoked, lost, handed off, or no longer a standby's).
    pub fn revoke(&self, partition: i32) {
        if let Ok(mut map) = self.by_partition.lock() {
            map.remove(&partition);
        }
        self.changed();
    }

    pub fn get(&self, partition: i32) -> Option<Arc<Claim>> {
        self.by_partition.lock().ok().and_then(|map| map.get(&partition).cloned())
    }

    /// Every claim, by partition.
    pub fn all(&self) -> Vec<Arc<Claim>> {
        let mut all: Vec<Arc<Claim>> =
            self.by_partition.lock().map(|map| map.values().cloned().collect()).unwrap_or_default();
        all.sort_by_key(|c| c.partition);
        all
    }

    /// Is `claim` still this member's claim of its partition?
    pub fn is_current(&self, claim: &Claim) -> bool {
        self.get(claim.partition).is_some_and(|c| c.generation == claim.generation)
    }

    /// Changes with every claim added, dropped or given another role.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The record at `offset` was read. Returns true when this completed the restore.
    pub fn handled(&self, claim: &Claim, offset: i64) -> bool {
        // Never backwards: a claim taken back from the reader outside the group may see that
        // reader's last record again.
        claim.handled.fetch_max(offset + 1, Ordering::AcqRel);
        let completed = !claim.restored()
            && claim.restore_until().is_some_and(|until| offset + 1 >= until)
            && !claim.restored.swap(true, Ordering::AcqRel);
        self.wake();
        completed
    }

    /// The reader reached the end of the partition's log. Returns true when this completed the
    /// restore.
    pub fn at_end(&self, claim: &Claim) -> bool {
        let completed = !claim.restored.swap(true, Ordering::AcqRel);
        self.wake();
        completed
    }

    fn changed(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.wake();
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
    fn a_revoked_claim_is_handed_off_only_once_restored_and_can_be_taken_back() {
        let claims = Claims::default();
        let restoring = claims.assign(1, Some(5));
        assert!(claims.hand_off(1).is_none(), "nothing complete to hand off");
        assert!(claims.get(1).is_none());
        assert!(!claims.is_current(&restoring));

        let c = claims.assign(0, Some(2));
        claims.handled(&c, 1);
        let epoch = claims.epoch();
        let handed = claims.hand_off(0).unwrap();
        assert_eq!((handed.role(), handed.state()), (Role::HandingOff, ClaimState::HandingOff));
        assert!(claims.is_current(&c), "same notifications, same claim");
        assert!(claims.epoch() > epoch);
        // The tail reads on; the group gives it back.
        claims.handled(&c, 6);
        let back = claims.take_back(0, Some(9)).unwrap();
        assert_eq!(
            (back.role(), back.restore_until(), back.handled(), back.restored()),
            (Role::Member, Some(9), 7, true)
        );
        assert_eq!(back.generation, c.generation);
        // Progress never goes backwards.
        claims.handled(&c, 3);
        assert_eq!(c.handled(), 7);
    }

    #[test]
    fn a_standby_restores_to_the_log_end_and_is_served_as_standby() {
        let claims = Claims::default();
        let s = claims.standby(2);
        assert_eq!((s.role(), s.state(), s.restore_until()), (Role::Standby, ClaimState::Warming, None));
        assert!(!claims.handled(&s, 10));
        assert!(claims.at_end(&s));
        assert_eq!(s.state(), ClaimState::Standby);
        assert!(claims.take_back(3, Some(0)).is_none());
        let m = claims.assign(3, Some(0));
        let handed = claims.hand_off(3).unwrap();
        assert!(claims.keep_as_standby(&handed));
        assert_eq!(m.role(), Role::Standby);
        assert!(!claims.keep_as_standby(&m), "only a handoff becomes a standby");
    }
}
