//! The per-user notification store: for each recipient, in produce order, at most
//! `max_per_user` notifications (newest kept), each notification id at most once, and at most
//! `budget_bytes` in all (beyond it the oldest notifications of the largest users go first).

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use herald_model::{Packed, ReadMarker, Record, UserId};
use uuid::Uuid;

const SHARDS: usize = 32;

/// A stored notification: packed ([`Packed`]: binary ids, unescaped strings — one allocation of
/// about half the record's size), with what reads, deduplication and eviction need beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    packed: Box<[u8]>,
    pub sent_at_ms: i64,
    pub partition: i32,
    /// A read marker named it (or covered it with `all`).
    pub read: bool,
    pub offset: i64,
}

impl Stored {
    pub fn new(record: &Record<'_>, partition: i32, offset: i64) -> Self {
        Self { packed: record.pack(), sent_at_ms: record.sent_at.timestamp_millis(), partition, read: false, offset }
    }

    pub fn id(&self) -> Uuid {
        self.packed().id()
    }

    /// The notification as the record contract has it, without its time (see [`Packed`]).
    pub fn packed(&self) -> Packed<'_> {
        Packed::new(&self.packed)
    }

    /// The packed form's bytes.
    pub fn packed_bytes(&self) -> &[u8] {
        &self.packed
    }

    /// The packed form's size in bytes.
    pub fn packed_len(&self) -> usize {
        self.packed.len()
    }

    /// An estimate of the memory one stored notification takes: the packed form and its
    /// allocation's rounding, plus the entry and the id's fingerprint in its user's queues.
    pub fn approx_bytes(&self) -> usize {
        const FIXED: usize = std::mem::size_of::<Stored>() + 16 + 8;
        FIXED + self.packed.len()
    }
}

/// What a stream of a user's inbox is told.
#[derive(Debug)]
pub enum Change {
    /// A notification was stored.
    Notification(Stored),
    /// A read marker marked these notifications read.
    Read(Vec<Uuid>),
}

/// How many changes a stream may fall behind before it is ended (its client reconnects and
/// replays from its last event id).
const STREAM_BACKLOG: usize = 1024;

/// What inserting a record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    Stored,
    /// Already stored (a redelivery): nothing changed.
    Duplicate,
    /// Its id is stored with other content (an `Idempotency-Key` reused for another notification
    /// through another producer): the first is kept, nothing changed.
    ConflictingDuplicate,
}

#[derive(Debug, Default)]
struct UserLog {
    entries: VecDeque<Stored>,
    /// The first 8 bytes of each entry's id, side by side, so that the duplicate check scans a
    /// short contiguous array instead of every entry.
    fingerprints: VecDeque<u64>,
    /// The newest record stored for this user: records of one user come from one partition in
    /// offset order, so a record at or before it is a redelivery even once evicted.
    newest: Option<(i32, i64)>,
}

impl UserLog {
    /// Drops the oldest notification; returns its size.
    fn evict_oldest(&mut self) -> usize {
        self.fingerprints.pop_front();
        self.entries.pop_front().map(|e| e.approx_bytes()).unwrap_or(0)
    }
}

fn fingerprint(id: &Uuid) -> u64 {
    let b = id.as_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

type Shard = RwLock<HashMap<UserId, UserLog>>;

/// Notifications by recipient, sharded so readers rarely wait for the writer.
#[derive(Debug)]
pub struct Store {
    max_per_user: usize,
    budget_bytes: usize,
    bytes: AtomicUsize,
    evicted_for_budget: AtomicU64,
    shards: Vec<Shard>,
    /// The users someone streams, and their channels.
    watched: Mutex<HashMap<UserId, tokio::sync::broadcast::Sender<Arc<Change>>>>,
    /// Whether `watched` is empty, read without its lock on every insert.
    watching: AtomicUsize,
}

fn write(shard: &Shard) -> std::sync::RwLockWriteGuard<'_, HashMap<UserId, UserLog>> {
    shard.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read(shard: &Shard) -> std::sync::RwLockReadGuard<'_, HashMap<UserId, UserLog>> {
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
            watched: Mutex::new(HashMap::new()),
            watching: AtomicUsize::new(0),
        }
    }

    fn shard(&self, user: &UserId) -> &Shard {
        &self.shards[user.bucket(SHARDS)]
    }

    /// Most notifications kept per user.
    pub fn max_per_user(&self) -> usize {
        self.max_per_user
    }

    /// The estimated size of everything stored (see [`Stored::approx_bytes`]).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Notifications evicted to stay within the byte budget, since start.
    pub fn evicted_for_budget(&self) -> u64 {
        self.evicted_for_budget.load(Ordering::Relaxed)
    }

    /// Stores a record read at `partition`/`offset` for its recipient.
    pub fn insert(&self, record: &Record<'_>, partition: i32, offset: i64) -> Insert {
        let user = &record.to;
        let mut shard = write(self.shard(user));
        let log = shard.entry(user.clone()).or_default();
        if log.newest.is_some_and(|(p, o)| p == partition && offset <= o) {
            return Insert::Duplicate;
        }
        let fingerprint = fingerprint(&record.id);
        let entries = &log.entries;
        if let Some(i) =
            log.fingerprints.iter().enumerate().position(|(i, f)| *f == fingerprint && entries[i].id() == record.id)
        {
            // The same id written again (a retry): the same notification unless what it says
            // differs — the packed form holds everything but the time, which a retry renews.
            let same = entries.get(i).is_some_and(|e| *e.packed_bytes() == *record.pack());
            return if same { Insert::Duplicate } else { Insert::ConflictingDuplicate };
        }
        // Built under the lock only once it is known to be new: a redelivery costs no copy.
        let stored = Stored::new(record, partition, offset);
        let mut added = stored.approx_bytes() as isize;
        let published = (self.watching.load(Ordering::Acquire) > 0).then(|| stored.clone());
        log.entries.push_back(stored);
        log.fingerprints.push_back(fingerprint);
        while log.entries.len() > self.max_per_user {
            added -= log.evict_oldest() as isize;
        }
        log.newest = Some((partition, offset));
        drop(shard);
        if let Some(stored) = published {
            self.publish(user, || Change::Notification(stored));
        }
        self.add_bytes(added);
        if self.bytes() > self.budget_bytes {
            self.evict_to_budget();
        }
        Insert::Stored
    }

    /// The changes of `user`'s inbox from now on.
    pub fn subscribe(&self, user: &UserId) -> tokio::sync::broadcast::Receiver<Arc<Change>> {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        let receiver = watched
            .entry(user.clone())
            .or_insert_with(|| tokio::sync::broadcast::channel(STREAM_BACKLOG).0)
            .subscribe();
        self.watching.store(watched.len(), Ordering::Release);
        receiver
    }

    /// Tells `user`'s streams, if any, about a change; forgets the user once nobody listens.
    fn publish(&self, user: &UserId, change: impl FnOnce() -> Change) {
        if self.watching.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sender) = watched.get(user) else { return };
        if sender.send(Arc::new(change())).is_err() {
            watched.remove(user);
            self.watching.store(watched.len(), Ordering::Release);
        }
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
        let mut largest: BinaryHeap<(usize, UserId)> = self
            .shards
            .iter()
            .flat_map(|shard| {
                read(shard).iter().map(|(user, log)| (log.entries.len(), user.clone())).collect::<Vec<_>>()
            })
            .filter(|(len, _)| *len > 0)
            .collect();
        let mut evicted = 0;
        while self.bytes() > target {
            let Some((len, user)) = largest.pop() else { break };
            let mut shard = write(self.shard(&user));
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

    /// Applies a read marker read at `partition`/`offset`: the notifications it names, or with
    /// `all` every one before it in the log (in another partition: sent before it was written).
    /// Returns how many became read; unknown ids are ignored.
    pub fn mark_read(&self, marker: &ReadMarker, partition: i32, offset: i64) -> usize {
        let mut shard = write(self.shard(&marker.user));
        let Some(log) = shard.get_mut(&marker.user) else { return 0 };
        let at_ms = marker.at.timestamp_millis();
        let mut marked = Vec::new();
        for e in log.entries.iter_mut().filter(|e| !e.read) {
            let covered = if marker.all {
                if e.partition == partition { e.offset < offset } else { e.sent_at_ms <= at_ms }
            } else {
                marker.ids.contains(&e.id())
            };
            if covered {
                e.read = true;
                marked.push(e.id());
            }
        }
        drop(shard);
        let count = marked.len();
        if count > 0 {
            self.publish(&marker.user, || Change::Read(marked));
        }
        count
    }

    /// Forgets the notifications that come from `partition` (it moved to another member), and
    /// the users left with none; returns how many users were dropped.
    pub fn drop_partition(&self, partition: i32) -> usize {
        let mut dropped = 0;
        for shard in &self.shards {
            let mut map = write(shard);
            let mut freed = 0;
            map.retain(|_, log| {
                if log.entries.iter().any(|e| e.partition == partition) {
                    // A user of a grown topic may have notifications in more than one partition.
                    let (mut entries, mut fingerprints) = (VecDeque::new(), VecDeque::new());
                    for (e, f) in log.entries.drain(..).zip(log.fingerprints.drain(..)) {
                        if e.partition == partition {
                            freed += e.approx_bytes();
                        } else {
                            entries.push_back(e);
                            fingerprints.push_back(f);
                        }
                    }
                    (log.entries, log.fingerprints) = (entries, fingerprints);
                }
                if log.newest.is_some_and(|(p, _)| p == partition) {
                    log.newest = log.entries.back().map(|e| (e.partition, e.offset));
                }
                let keep = log.newest.is_some();
                if !keep {
                    dropped += 1;
                }
                keep
            });
            drop(map);
            self.add_bytes(-(freed as isize));
        }
        dropped
    }

    /// Runs `f` over a user's notifications, oldest first, under the shard's read lock (keep it
    /// short: the consumer waits for it to store a record of this shard).
    pub fn with_user<R>(&self, user: &UserId, f: impl FnOnce(&VecDeque<Stored>) -> R) -> R {
        const NONE: &VecDeque<Stored> = &VecDeque::new();
        f(read(self.shard(user)).get(user).map_or(NONE, |log| &log.entries))
    }

    /// A copy of a user's notifications, oldest first.
    pub fn get(&self, user: &UserId) -> Vec<Stored> {
        self.with_user(user, |entries| entries.iter().cloned().collect())
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
    use crate::fixtures::{decoded, notification as mk};
    use herald_model::Notification;

    /// The stored notification in the record contract's form.
    fn contract(stored: &Stored) -> Vec<u8> {
        let mut out = Vec::new();
        stored.packed().write_json(stored.sent_at_ms, &mut out);
        out
    }

    /// Stores `n` as the consumer does: decoded from its record.
    fn put(store: &Store, n: &Notification, partition: i32, offset: i64) -> Insert {
        decoded(n, |record| store.insert(record, partition, offset))
    }

    fn messages(store: &Store, user: u64) -> Vec<String> {
        let user = UserId::from(user);
        store.get(&user).iter().map(|s| serde_json::from_slice::<Notification>(&contract(s)).unwrap().message).collect()
    }

    #[test]
    fn keeps_produce_order_per_user() {
        let s = Store::new(100, usize::MAX);
        assert_eq!(put(&s, &mk(2, "a"), 0, 10), Insert::Stored);
        assert_eq!(put(&s, &mk(3, "x"), 1, 4), Insert::Stored);
        assert_eq!(put(&s, &mk(2, "b"), 0, 11), Insert::Stored);
        assert_eq!(messages(&s, 2), ["a", "b"]);
        assert_eq!(messages(&s, 3), ["x"]);
        assert!(s.get(&UserId::from(4)).is_empty());
        assert_eq!(s.len(), 3);
        let first = &s.get(&UserId::from(2))[0];
        assert_eq!((first.partition, first.offset), (0, 10));
    }

    #[test]
    fn an_id_written_again_with_other_content_is_a_conflicting_duplicate_and_the_first_stays() {
        let s = Store::new(100, usize::MAX);
        let first = mk(2, "shipped");
        assert_eq!(put(&s, &first, 0, 1), Insert::Stored);
        let mut retry = first.clone();
        retry.sent_at += chrono::Duration::seconds(3);
        assert_eq!(put(&s, &retry, 0, 2), Insert::Duplicate, "a retry renews only the time");
        let mut reused = first.clone();
        reused.message = "cancelled".into();
        assert_eq!(put(&s, &reused, 0, 3), Insert::ConflictingDuplicate);
        assert_eq!(messages(&s, 2), ["shipped"]);
    }

    #[test]
    fn caps_each_user_keeping_the_newest() {
        let s = Store::new(3, usize::MAX);
        for i in 0..5 {
            put(&s, &mk(2, &i.to_string()), 0, i);
        }
        assert_eq!(messages(&s, 2), ["2", "3", "4"]);
    }

    #[test]
    fn a_redelivered_record_is_stored_once() {
        let s = Store::new(3, usize::MAX);
        let a = mk(2, "a");
        assert_eq!(put(&s, &a, 0, 1), Insert::Stored);
        // Redelivered at the same offset after a rebalance.
        assert_eq!(put(&s, &a, 0, 1), Insert::Duplicate);
        // The same notification id at another offset (written twice upstream).
        assert_eq!(put(&s, &a, 0, 7), Insert::Duplicate);
        for i in 2..6 {
            put(&s, &mk(2, &i.to_string()), 0, i);
        }
        // Evicted from the window, but older than the newest stored record: still a duplicate,
        // and it must not reappear at the end of the list.
        assert_eq!(put(&s, &a, 0, 1), Insert::Duplicate);
        assert_eq!(messages(&s, 2), ["3", "4", "5"]);
    }

    #[test]
    fn the_budget_evicts_the_oldest_of_the_largest_users_first() {
        let one = { decoded(&mk(2, "m"), |record| Stored::new(record, 0, 0).approx_bytes()) };
        // Room for ten notifications.
        let s = Store::new(100, 10 * one);
        for i in 0..8 {
            put(&s, &mk(2, &format!("big{i}")[..1]), 0, i);
        }
        put(&s, &mk(3, "a"), 1, 0);
        put(&s, &mk(3, "b"), 1, 1);
        assert_eq!(s.len(), 10);
        assert!(s.bytes() <= 10 * one);
        put(&s, &mk(4, "x"), 2, 0);
        // Over budget: evicted down to 99 % of it, all from user 2 (the largest), oldest first;
        // the others keep theirs.
        assert!(s.bytes() <= 10 * one - 10 * one / 100, "{} bytes", s.bytes());
        assert_eq!(s.get(&UserId::from(2)).len(), 6);
        assert_eq!(s.get(&UserId::from(2))[0].offset, 2);
        assert_eq!(messages(&s, 3), ["a", "b"]);
        assert_eq!(messages(&s, 4), ["x"]);
        assert_eq!(s.evicted_for_budget(), 2);
    }

    #[test]
    fn dropping_a_partition_forgets_its_users_and_their_bytes() {
        let s = Store::new(100, usize::MAX);
        put(&s, &mk(2, "a"), 0, 0);
        put(&s, &mk(3, "b"), 1, 0);
        let before = s.bytes();
        assert_eq!(s.drop_partition(0), 1);
        assert!(s.get(&UserId::from(2)).is_empty());
        assert_eq!(messages(&s, 3), ["b"]);
        assert!(s.bytes() < before && s.bytes() > 0);
        assert_eq!(s.drop_partition(1), 1);
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn dropping_a_partition_keeps_a_grown_users_notifications_of_other_partitions() {
        let s = Store::new(100, usize::MAX);
        put(&s, &mk(2, "old"), 1, 0);
        put(&s, &mk(2, "new"), 4, 0);
        put(&s, &mk(5, "other"), 4, 1);
        let one = s.bytes() / 3;
        assert_eq!(s.drop_partition(4), 1);
        assert_eq!(messages(&s, 2), ["old"]);
        assert!(s.get(&UserId::from(5)).is_empty());
        assert_eq!(s.bytes(), one);
        // What is left still deduplicates by id, and new records of the dropped partition come in.
        put(&s, &mk(2, "again"), 4, 0);
        assert_eq!(messages(&s, 2), ["old", "again"]);
        assert_eq!(s.drop_partition(1), 0);
        assert_eq!(messages(&s, 2), ["again"]);
    }

    #[test]
    fn read_markers_mark_named_ids_or_everything_before_them() {
        let s = Store::new(100, usize::MAX);
        let notes: Vec<Notification> = (0..5).map(|i| mk(2, &format!("m{i}"))).collect();
        for (i, n) in notes.iter().enumerate() {
            put(&s, n, 0, 10 + i as i64);
        }
        let read = |s: &Store| s.get(&UserId::from(2)).iter().map(|e| e.read).collect::<Vec<_>>();
        let marker =
            |ids: Vec<uuid::Uuid>, all: bool| ReadMarker { user: UserId::from(2), ids, all, at: chrono::Utc::now() };
        // Two by id, one unknown id ignored.
        assert_eq!(s.mark_read(&marker(vec![notes[1].id, notes[3].id, uuid::Uuid::new_v4()], false), 0, 15), 2);
        assert_eq!(read(&s), [false, true, false, true, false]);
        // Replayed (a restore, a redelivery): nothing changes.
        assert_eq!(s.mark_read(&marker(vec![notes[1].id], false), 0, 15), 0);
        // All before offset 13: 10, 11, 12; not 13 or 14 (13 was already read).
        assert_eq!(s.mark_read(&marker(vec![], true), 0, 13), 2);
        assert_eq!(read(&s), [true, true, true, true, false]);
        // A marker for a user with nothing stored changes nothing.
        assert_eq!(s.mark_read(&ReadMarker { user: UserId::from(9), ..marker(vec![], true) }, 0, 99), 0);
    }
}
