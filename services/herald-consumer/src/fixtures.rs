//! Fixtures for the crate's unit tests: notifications as the producer writes them, and their
//! records as the consumer decodes them.

use herald_model::{Notification, Record, User, decode_record};

/// A notification from user 1 (Emma) to user `to` (Bruno), sent now.
pub fn notification(to: u64, message: &str) -> Notification {
    Notification::new(
        User { id: 1.into(), name: Some("Emma".into()) },
        User { id: to.into(), name: Some("Bruno".into()) },
        message.into(),
    )
}

/// `f` over `n`'s record as the consumer decodes it from the topic.
pub fn decoded<R>(n: &Notification, f: impl FnOnce(&Record<'_>) -> R) -> R {
    let (key, value) = (n.key(), n.encode());
    f(&decode_record(Some(key.as_bytes()), Some(&value)).unwrap())
}
