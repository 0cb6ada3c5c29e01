//! What a producer remembers of the `Idempotency-Key`s it sent with: for each notification id
//! made from a key and its recipient, a digest of the content, for a bounded window. A retry
//! (same content) goes through and the consumers show it once; the same key reused for another
//! notification is refused with a 422 while it is remembered, instead of being dropped by the
//! consumers as a duplicate that nobody sees. Per pod: a retry that reaches another producer pod
//! is not checked there (the consumers then count a `conflicting_duplicate`).

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use herald_model::{Notification, UserId};
use uuid::Uuid;

/// How long a key is remembered.
pub const WINDOW: Duration = Duration::from_secs(10 * 60);
/// Most keys remembered at once (the oldest go first): a few MiB at most.
pub const CAPACITY: usize = 100_000;

/// What the memory says of a send with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Not remembered: send it.
    New,
    /// Sent before with the same content: a retry, send it again.
    Retry,
    /// Sent before with other content: refuse.
    Conflict,
}

type Key = (Uuid, UserId);

#[derive(Default)]
struct Inner {
    digests: HashMap<Key, u64>,
    /// When each key was remembered, oldest first.
    order: VecDeque<(Instant, Key)>,
}

/// The remembered keys of one producer.
pub struct Remembered {
    inner: Mutex<Inner>,
    window: Duration,
    capacity: usize,
}

impl Default for Remembered {
    fn default() -> Self {
        Self::new(WINDOW, CAPACITY)
    }
}

impl Remembered {
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self { inner: Mutex::new(Inner::default()), window, capacity: capacity.max(1) }
    }

    /// What to do with `notification` (its id made from a key) now.
    pub fn check(&self, notification: &Notification, now: Instant) -> Check {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.expire(&mut inner, now);
        match inner.digests.get(&(notification.id, notification.to.id.clone())) {
            None => Check::New,
            Some(digest) if *digest == content_digest(notification) => Check::Retry,
            Some(_) => Check::Conflict,
        }
    }

    /// Remembers `notification` as sent (once the broker acknowledged it).
    pub fn remember(&self, notification: &Notification, now: Instant) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.expire(&mut inner, now);
        let key = (notification.id, notification.to.id.clone());
        if inner.digests.insert(key.clone(), content_digest(notification)).is_none() {
            inner.order.push_back((now, key));
        }
        while inner.order.len() > self.capacity {
            if let Some((_, oldest)) = inner.order.pop_front() {
                inner.digests.remove(&oldest);
            }
        }
    }

    fn expire(&self, inner: &mut Inner, now: Instant) {
        while let Some((at, _)) = inner.order.front() {
            if now.saturating_duration_since(*at) < self.window {
                break;
            }
            if let Some((_, key)) = inner.order.pop_front() {
                inner.digests.remove(&key);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A digest of what a retry must repeat: the sender, the recipient and the content — message,
/// title, url, category and data (not `sentAt`, which every retry renews).
fn content_digest(n: &Notification) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    n.from.id.hash(&mut h);
    n.to.id.hash(&mut h);
    n.message.hash(&mut h);
    n.title.hash(&mut h);
    n.url.hash(&mut h);
    n.category.hash(&mut h);
    n.data.as_ref().map(herald_model::Data::get).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use herald_model::User;

    use super::*;

    fn sent(id: Uuid, to: u64, message: &str) -> Notification {
        let mut n = Notification::new(
            User { id: 1.into(), name: Some("Emma".into()) },
            User { id: to.into(), name: Some("Bruno".into()) },
            message.into(),
        );
        n.id = id;
        n
    }

    #[test]
    fn a_retry_passes_and_other_content_under_the_same_key_conflicts() {
        let r = Remembered::default();
        let (id, now) = (Uuid::new_v4(), Instant::now());
        let first = sent(id, 2, "shipped");
        assert_eq!(r.check(&first, now), Check::New);
        r.remember(&first, now);
        let mut retry = sent(id, 2, "shipped");
        retry.sent_at += chrono::Duration::seconds(5);
        assert_eq!(r.check(&retry, now), Check::Retry, "sentAt is renewed by every retry");
        assert_eq!(r.check(&sent(id, 2, "cancelled"), now), Check::Conflict);
        for change in [
            |n: &mut Notification| n.title = Some("t".into()),
            |n: &mut Notification| n.url = Some("/o/1".into()),
            |n: &mut Notification| n.category = Some("orders".into()),
            |n: &mut Notification| n.data = Some(herald_model::Data::compact(r#"{"a":1}"#).unwrap()),
        ] {
            let mut other = sent(id, 2, "shipped");
            change(&mut other);
            assert_eq!(r.check(&other, now), Check::Conflict, "{other:?}");
        }
        assert_eq!(r.check(&sent(id, 3, "cancelled"), now), Check::New, "another recipient");
    }

    #[test]
    fn keys_are_forgotten_after_the_window_and_beyond_the_capacity() {
        let r = Remembered::new(Duration::from_secs(60), 2);
        let now = Instant::now();
        let a = sent(Uuid::new_v4(), 2, "a");
        r.remember(&a, now);
        let other_a = sent(a.id, 2, "other");
        assert_eq!(r.check(&other_a, now + Duration::from_secs(59)), Check::Conflict);
        assert_eq!(r.check(&other_a, now + Duration::from_secs(60)), Check::New, "window over");
        let (b, c, d) = (sent(Uuid::new_v4(), 2, "b"), sent(Uuid::new_v4(), 2, "c"), sent(Uuid::new_v4(), 2, "d"));
        for n in [&b, &c, &d] {
            r.remember(n, now);
        }
        assert_eq!(r.len(), 2);
        assert_eq!(r.check(&sent(b.id, 2, "x"), now), Check::New, "the oldest went first");
        assert_eq!(r.check(&sent(d.id, 2, "x"), now), Check::Conflict);
    }
}
