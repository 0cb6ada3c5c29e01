//! The per-user notification store: for each recipient, in produce order, at most
//! `max_per_user` notifications (newest kept), each notification id at most once.

use std::collections::{HashMap, VecDeque};
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

/// Notifications by recipient, sharded so readers rarely wait for the writer.
#[derive(Debug)]
pub struct Store {
    max_per_user: usize,
    shards: Vec<RwLock<HashMap<u64, UserLog>>>,
}

impl Store {
    pub fn new(max_per_user: usize) -> Self {
        Self { max_per_user: max_per_user.max(1), shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect() }
    }

    fn shard(&self, user: u64) -> &RwLock<HashMap<u64, UserLog>> {
        &self.shards[(user % SHARDS as u64) as usize]
    }

    /// Stores a notification read at `partition`/`offset` for its recipient.
    pub fn insert(&self, notification: Notification, partition: i32, offset: i64) -> Insert {
        let user = notification.to.id;
        let mut shard = match self.shard(user).write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let log = shard.entry(user).or_default();
        if log.newest.is_some_and(|(p, o)| p == partition && offset <= o) {
            return Insert::Duplicate;
        }
        if log.ids.contains(&notification.id) {
            return Insert::Duplicate;
        }
        log.ids.push_back(notification.id);
        log.entries.push_back(Arc::new(Stored { notification, partition, offset }));
        while log.entries.len() > self.max_per_user {
            log.entries.pop_front();
            log.ids.pop_front();
        }
        log.newest = Some((partition, offset));
        Insert::Stored
    }

    /// A user's notifications, oldest first.
    pub fn get(&self, user: u64) -> Vec<Arc<Stored>> {
        let shard = match self.shard(user).read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        shard.get(&user).map(|log| log.entries.iter().cloned().collect()).unwrap_or_default()
    }

    /// How many notifications are stored in all.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().map(|m| m.values().map(|l| l.entries.len()).sum::<usize>()).unwrap_or(0))
            .sum()
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
        let s = Store::new(100);
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
        let s = Store::new(3);
        for i in 0..5 {
            s.insert(mk(2, &i.to_string()), 0, i);
        }
        assert_eq!(messages(&s, 2), ["2", "3", "4"]);
    }

    #[test]
    fn a_redelivered_record_is_stored_once() {
        let s = Store::new(3);
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
    fn serializes_with_partition_and_offset() {
        let s = Store::new(3);
        s.insert(mk(2, "a"), 4, 9);
        let v = serde_json::to_value(&*s.get(2)[0]).unwrap();
        assert_eq!(v["partition"], 4);
        assert_eq!(v["offset"], 9);
        assert_eq!(v["message"], "a");
        assert_eq!(v["to"]["id"], 2);
        assert!(v["sentAt"].is_string());
    }
}
