//! The served form: every place that writes or reads the JSON the read routes answer with — a
//! user's list (`{"notifications":[…],"unread":N}` and its page cursor), one item (the record
//! contract's form with `partition`, `offset` and `read` added), a peer's part of a merged read
//! read back, and the stream's events.

use axum::http::{HeaderValue, header};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use herald_model::{UserId, decode_record};
use uuid::Uuid;

use crate::page::{self, Cursor};
use crate::store::Stored;

/// One notification as a read serves it: the record contract's form (the producer's bytes as
/// they were sent) with `partition`, `offset` and `read` added.
pub fn write_item(entry: &Stored, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let start = out.len();
    entry.packed().write_json(entry.sent_at_ms, out);
    // The contract's form is a JSON object: it ends with `}`.
    if out.len() > start && out.last() == Some(&b'}') {
        out.pop();
    }
    let _ = write!(out, ",\"partition\":{},\"offset\":{},\"read\":{}}}", entry.partition, entry.offset, entry.read);
}

/// About how many bytes [`write_item`] writes (field names, quotes and the time come back), for
/// sizing an answer.
pub fn len_hint(entry: &Stored) -> usize {
    entry.packed_len() + 160
}

/// A notification of `user` as a peer's read served it ([`write_item`]), back in stored form:
/// what a merged read gathers from the owners of a grown topic's partitions.
pub fn item_from_served(user: &UserId, item: &[u8]) -> Result<Stored, String> {
    #[derive(serde::Deserialize)]
    struct Position {
        partition: i32,
        offset: i64,
        #[serde(default)]
        read: bool,
    }
    let at: Position = serde_json::from_slice(item).map_err(|e| format!("not a served notification: {e}"))?;
    let key = user.key();
    let record = decode_record(Some(key.as_bytes()), Some(item)).map_err(|e| e.to_string())?;
    let mut stored = Stored::new(&record, at.partition, at.offset);
    stored.read = at.read;
    Ok(stored)
}

/// A peer's answer to a `?partition=` request (see [`render`]), back in stored form.
pub fn parse_part(user: &UserId, bytes: &[u8]) -> Result<Vec<Stored>, String> {
    #[derive(serde::Deserialize)]
    struct Part<'a> {
        #[serde(borrow)]
        notifications: Vec<&'a serde_json::value::RawValue>,
    }
    let part: Part<'_> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    part.notifications.iter().map(|item| item_from_served(user, item.get().as_bytes())).collect()
}

/// A user's notifications as the query asks for them — `{"notifications":[…],"unread":N}`, with
/// `"next"` when a limit was given — written from the stored values (`entries`, oldest first),
/// leaving out those sent before `since_ms`. `unread` counts every shown notification not marked
/// read, not only the page's.
pub fn render<'a>(
    entries: impl DoubleEndedIterator<Item = &'a Stored> + Clone,
    since_ms: Option<i64>,
    query: &page::Query,
) -> Vec<u8> {
    let shown = |e: &Stored| since_ms.is_none_or(|since| e.sent_at_ms >= since) && query.matches(e);
    let unread = entries.clone().filter(|e| !e.read && shown(e)).count();
    let (items, next) = page::select(entries, query, shown);
    let mut body = Vec::with_capacity(96 + items.iter().map(|e| len_hint(e)).sum::<usize>());
    if items.is_empty() {
        body.extend_from_slice(br#"{"message":"No notifications found for user","notifications":["#);
    } else {
        body.extend_from_slice(br#"{"notifications":["#);
    }
    for (i, entry) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        write_item(entry, &mut body);
    }
    body.push(b']');
    body.extend_from_slice(format!(",\"unread\":{unread}").as_bytes());
    if query.limit.is_some() {
        body.extend_from_slice(br#","next":"#);
        match next {
            Some(cursor) => {
                body.push(b'"');
                body.extend_from_slice(cursor.encode().as_bytes());
                body.push(b'"');
            }
            None => body.extend_from_slice(b"null"),
        }
    }
    body.push(b'}');
    body
}

/// A rendered body as a 200 answer.
pub fn json(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// A stored notification as a stream's event: `event: notification`, its cursor as the id, the
/// item as a read serves it.
pub fn notification_event(entry: &Stored) -> Event {
    let mut data = Vec::with_capacity(len_hint(entry));
    write_item(entry, &mut data);
    Event::default().event("notification").id(Cursor::of(entry).encode()).data(String::from_utf8_lossy(&data))
}

/// A read marker's effect as a stream's event: `event: read`, `{"ids":[…]}`.
pub fn read_event(ids: &[Uuid]) -> Event {
    Event::default().event("read").data(serde_json::json!({ "ids": ids }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{decoded, notification as mk};
    use crate::store::{Insert, Store};
    use herald_model::{Notification, ReadMarker};

    fn served(stored: &Stored) -> Vec<u8> {
        let mut out = Vec::new();
        write_item(stored, &mut out);
        out
    }

    /// Stores `n` as the consumer does: decoded from its record.
    fn put(store: &Store, n: &Notification, partition: i32, offset: i64) -> Insert {
        decoded(n, |record| store.insert(record, partition, offset))
    }

    #[test]
    fn a_notification_marked_read_is_served_read() {
        let s = Store::new(100, usize::MAX);
        let n = mk(2, "a");
        put(&s, &n, 0, 10);
        let marker = ReadMarker { user: UserId::from(2), ids: vec![n.id], all: false, at: chrono::Utc::now() };
        assert_eq!(s.mark_read(&marker, 0, 11), 1);
        let item: serde_json::Value = serde_json::from_slice(&served(&s.get(&UserId::from(2))[0])).unwrap();
        assert_eq!(item["read"], true);
    }

    #[test]
    fn a_served_notification_comes_back_as_it_was_stored() {
        let s = Store::new(100, usize::MAX);
        let n = mk(2, "hé \"x\" / ok");
        put(&s, &n, 3, 41);
        let marker = ReadMarker { user: UserId::from(2), ids: vec![n.id], all: false, at: chrono::Utc::now() };
        s.mark_read(&marker, 3, 42);
        let stored = s.get(&UserId::from(2)).remove(0);
        let mut served = Vec::new();
        write_item(&stored, &mut served);
        assert_eq!(item_from_served(&UserId::from(2), &served).unwrap(), stored);
        // Another user's notification, or something else, is refused.
        assert!(item_from_served(&UserId::from(3), &served).is_err());
        assert!(item_from_served(&UserId::from(2), br#"{"partition":1,"offset":2}"#).is_err());
    }

    #[test]
    fn serves_the_value_with_partition_and_offset() {
        let s = Store::new(3, usize::MAX);
        let n = mk(2, "a");
        put(&s, &n, 4, 9);
        let stored = &s.get(&UserId::from(2))[0];
        assert_eq!((stored.id(), stored.sent_at_ms), (n.id, n.sent_at.timestamp_millis()));
        let served = served(stored);
        // The producer's bytes, byte for byte, then the position.
        let encoded = n.encode();
        assert_eq!(
            String::from_utf8_lossy(&served[..encoded.len() - 1]),
            String::from_utf8_lossy(&encoded[..encoded.len() - 1])
        );
        assert!(served.len() < encoded.len() + len_hint(stored));
        let v: serde_json::Value = serde_json::from_slice(&served).unwrap();
        let mut expected = serde_json::to_value(&n).unwrap();
        expected["partition"] = 4.into();
        expected["offset"] = 9.into();
        expected["read"] = false.into();
        assert_eq!(v, expected);
    }
}
