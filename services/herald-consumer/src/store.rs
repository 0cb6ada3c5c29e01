//! The per-user notification store: for each recipient, in produce order, at most
//! `max_per_user` notifications (newest kept), each notification id at most once, and at most
//! `budget_bytes` in all (beyond it the oldest notifications of the largest users go first).

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use herald_kit::model::Notification;
use serde::Serialize;
use uuid::Uuid;

const SHARDS: usize = 32;

/// A stored notification and where it was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stored {
    #[serde(flatten)]
    pub notification: Notification,
    pub partition: i32,
    pub offset: i64,
}

impl Stored {
    /// An estimate of the memory one stored notification takes: the strings plus the fixed
    /// parts (the record, its `Arc`, the id kept for deduplication and the queue slots).
    pub fn approx_bytes(&self) -> usize {
        const FIXED: usize = 192;
        let n = &self.notification;
        FIXED + n.message.len() + n.from.name.len() + n.to.name.len()
    }
}

/// What inserting a record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    Stored,
    /// Already stored (a redelivery): nothing changed.
    Duplicate,
}

#[derive(Debug, Default)]
struct UserLog {
    entries: VecDeque<Arc<Stored>>,
    /// The ids of `entries`, side by side, so the duplicate check scans contiguous memory.
    ids: VecDeque<Uuid>,
    /// The newest record stored for this user: records of one user come from one partition in
    /// offset order, so a record at or before it is a redelivery even once evicted.
    newest: Option<(i32, i64)>,
}

impl UserLog {
    /// Drops the oldest notification; returns its size.
    fn evict_oldest(&mut self) -> usize {
        self.ids.pop_front();
        self.entries.pop_front().map(|e| e.approx_bytes()).unwrap_or(0)
    }
}

type Shard = RwLock<HashMap<u64, UserLog>>;

/// Notifications by recipient, sharded so readers rarely wait for the writer.
#[derive(Debug)]
pub struct Store {
    max_per_user: usize,
    budget_bytes: usize,
    bytes: AtomicUsize,
    evicted_for_budget: AtomicU64,
    shards: Vec<Shard>,
}

fn write(shard: &Shard) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, UserLog>> {
    shard.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read(shard: &Shard) -> std::sync::RwLockReadGuard<'_, HashMap<u64, UserLog>> {
    shard.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    /// A store keeping at most `max_per_user` notifications per user and about `budget_bytes`
    /// in all.
    pub fn new(max_per_user: usize, budget_bytes: usize) -> Self {
        Self {
            max_per_user: max_per_user.max(1),
            budget_bytes,
            bytes: AtomicUsize::new(0),
            evicted_for_budget: AtomicU64::new(0),
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, user: u64) -> &Shard {
        &self.shards[(user % SHARDS as u64) as usize]
    }

    /// The estimated size of everything stored (see [`Stored::approx_bytes`]).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Notifications evicted to stay within the byte budget, since start.
    pub fn evicted_for_budget(&self) -> u64 {
        self.evicted_for_budget.load(Ordering::Relaxed)
    }

    /// Stores a notification read at `partition`/`offset` for its recipient.
    pub fn insert(&self, notification: Notification, partition: i32, offset: i64) -> Insert {
        let user = notification.to.id;
        let mut shard = write(self.shard(user));
        let log = shard.entry(user).or_default();
        if log.newest.is_some_and(|(p, o)| p == partition && offset <= o) {
            return Insert::Duplicate;
        }
        if log.ids.contains(&notification.id) {
            return Insert::Duplicate;
        }
        let stored = Stored { notification, partition, offset };
        let mut added = stored.approx_bytes() as isize;
        log.ids.push_back(stored.notification.id);
        log.entries.push_back(Arc::new(stored));
        while log.entries.len() > self.max_per_user {
            added -= log.evict_oldest() as isize;
        }
        log.newest = Some((partition, offset));
        drop(shard);
        self.add_bytes(added);
        if self.bytes() > self.budget_bytes {
            self.evict_to_budget();
        }
        Insert::Stored
    }

    fn add_bytes(&self, delta: isize) {
        if delta >= 0 {
            self.bytes.fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// Evicts the oldest notifications of the users holding the most until the store is a little
    /// under budget (so that the scan over all users runs once per percent of budget, not per
    /// insert).
    fn evict_to_budget(&self) {
        let target = self.budget_bytes - self.budget_bytes / 100;
        let mut largest: BinaryHeap<(usize, u64)> = self
            .shards
            .iter()
            .flat_map(|shard| read(shard).iter().map(|(user, log)| (log.entries.len(), *user)).collect::<Vec<_>>())
            .filter(|(len, _)| *len > 0)
            .collect();
        let mut evicted = 0;
        while self.bytes() > target {
            let Some((len, user)) = largest.pop() else { break };
            let mut shard = write(self.shard(user));
            let Some(log) = shard.get_mut(&user) else { continue };
            let freed = log.evict_oldest();
            drop(shard);
            self.add_bytes(-(freed as isize));
            evicted += 1;
            if len > 1 {
                largest.push((len - 1, user));
            }
        }
        self.evicted_for_budget.fetch_add(evicted, Ordering::Relaxed);
        tracing::debug!(
            evicted,
            bytes = self.bytes(),
            budget = self.budget_bytes,
            "evicted to stay within the store budget"
        );
    }

    /// Forgets the users whose notifications come from `partition` (it moved to another member);
    /// returns how many users were dropped.
    pub fn drop_partition(&self, partition: i32) -> usize {
        let mut dropped = 0;
        for shard in &self.shards {
            let mut map = write(shard);
            let mut freed = 0;
            map.retain(|_, log| {
                let keep = log.newest.is_none_or(|(p, _)| p != partition);
                if !keep {
                    freed += log.entries.iter().map(|e| e.approx_bytes()).sum::<usize>();
                    dropped += 1;
                }
                keep
            });
            drop(map);
            self.add_bytes(-(freed as isize));
        }
        dropped
    }

    /// A user's notifications, oldest first.
    pub fn get(&self, user: u64) -> Vec<Arc<Stored>> {
        read(self.shard(user)).get(&user).map(|log| log.entries.iter().cloned().collect()).unwrap_or_default()
    }

    /// How many notifications are stored in all.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).values().map(|l| l.entries.len()).sum::<usize>()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_kit::model::User;

    fn mk(to: u64, message: &str) -> Notification {
        Notification::new(User { id: 1, name: "Emma".into() }, User { id: to, name: "Bruno".into() }, message.into())
    }

    fn messages(store: &Store, user: u64) -> Vec<String> {
        store.get(user).iter().map(|s| s.notification.message.clone()).collect()
    }

    #[test]
    fn keeps_produce_order_per_user() {
        let s = Store::new(100, usize::MAX);
        assert_eq!(s.insert(mk(2, "a"), 0, 10), Insert::Stored);
        assert_eq!(s.insert(mk(3, "x"), 1, 4), Insert::Stored);
        assert_eq!(s.insert(mk(2, "b"), 0, 11), Insert::Stored);
        assert_eq!(messages(&s, 2), ["a", "b"]);
        assert_eq!(messages(&s, 3), ["x"]);
        assert!(s.get(4).is_empty());
        assert_eq!(s.len(), 3);
        let first = &s.get(2)[0];
        assert_eq!((first.partition, first.offset), (0, 10));
    }

    #[test]
    fn caps_each_user_keeping_the_newest() {
        let s = Store::new(3, usize::MAX);
        for i in 0..5 {
            s.insert(mk(2, &i.to_string()), 0, i);
        }
        assert_eq!(messages(&s, 2), ["2", "3", "4"]);
    }

    #[test]
    fn a_redelivered_record_is_stored_once() {
        let s = Store::new(3, usize::MAX);
        let a = mk(2, "a");
        assert_eq!(s.insert(a.clone(), 0, 1), Insert::Stored);
        // Redelivered at the same offset after a rebalance.
        assert_eq!(s.insert(a.clone(), 0, 1), Insert::Duplicate);
        // The same notification id at another offset (written twice upstream).
        assert_eq!(s.insert(a.clone(), 0, 7), Insert::Duplicate);
        for i in 2..6 {
            s.insert(mk(2, &i.to_string()), 0, i);
        }
        // Evicted from the window, but older than the newest stored record: still a duplicate,
        // and it must not reappear at the end of the list.
        assert_eq!(s.insert(a, 0, 1), Insert::Duplicate);
        assert_eq!(messages(&s, 2), ["3", "4", "5"]);
    }

    #[test]
    fn the_budget_evicts_the_oldest_of_the_largest_users_first() {
        let one = Stored { notification: mk(2, "m"), partition: 0, offset: 0 }.approx_bytes();
        // Room for ten notifications.
        let s = Store::new(100, 10 * one);
        for i in 0..8 {
            s.insert(mk(2, &format!("big{i}")[..1]), 0, i);
        }
        s.insert(mk(3, "a"), 1, 0);
        s.insert(mk(3, "b"), 1, 1);
        assert_eq!(s.len(), 10);
        assert!(s.bytes() <= 10 * one);
        s.insert(mk(4, "x"), 2, 0);
        // Over budget: evicted down to 99 % of it, all from user 2 (the largest), oldest first;
        // the others keep theirs.
        assert!(s.bytes() <= 10 * one - 10 * one / 100, "{} bytes", s.bytes());
        assert_eq!(s.get(2).len(), 6);
        assert_eq!(s.get(2)[0].offset, 2);
        assert_eq!(messages(&s, 3), ["a", "b"]);
        assert_eq!(messages(&s, 4), ["x"]);
        assert_eq!(s.evicted_for_budget(), 2);
    }

    #[test]
    fn dropping_a_partition_forgets_its_users_and_their_bytes() {
        let s = Store::new(100, usize::MAX);
        s.insert(mk(2, "a"), 0, 0);
        s.insert(mk(3, "b"), 1, 0);
        let before = s.bytes();
        assert_eq!(s.drop_partition(0), 1);
        assert!(s.get(2).is_empty());
        assert_eq!(messages(&s, 3), ["b"]);
        assert!(s.bytes() < before && s.bytes() > 0);
        assert_eq!(s.drop_partition(1), 1);
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn serializes_with_partition_and_offset() {
        let s = Store::new(3, usize::MAX);
        s.insert(mk(2, "a"), 4, 9);
        let v = serde_json::to_value(&*s.get(2)[0]).unwrap();
        assert_eq!(v["partition"], 4);
        assert_eq!(v["offset"], 9);
        assert_eq!(v["message"], "a");
        assert_eq!(v["to"]["id"], 2);
        assert!(v["sentAt"].is_string());
    }
}
