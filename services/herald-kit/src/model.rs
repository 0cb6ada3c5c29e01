//! The notification model and the Kafka record contract.
//!
//! - key: the recipient's user id as a decimal string (`"2"`);
//! - value: `{"id","from":{"id","name"},"to":{"id","name"},"message","sentAt"}` as JSON.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Upper bound of a notification's message, in bytes (UTF-8).
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// A user of the directory: who sends and who receives notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
}

/// One notification, as it travels through Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: Uuid,
    pub from: User,
    pub to: User,
    pub message: String,
    #[serde(with = "rfc3339_utc")]
    pub sent_at: DateTime<Utc>,
}

impl Notification {
    /// A new notification with a fresh id, sent now.
    pub fn new(from: User, to: User, message: String) -> Self {
        Self { id: Uuid::new_v4(), from, to, message, sent_at: Utc::now() }
    }

    /// The record key: the recipient's id in decimal.
    pub fn key(&self) -> String {
        self.to.id.to_string()
    }

    /// The record value: the notification as JSON.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain structs of strings, integers and a formatted date cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Why a record on the topic is not a valid notification.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record has no value")]
    MissingValue,
    #[error("record value is not a notification: {0}")]
    InvalidJson(String),
    #[error("record key {key:?} is not the recipient id {recipient}")]
    KeyMismatch { key: String, recipient: u64 },
    #[error("notification has an empty message")]
    EmptyMessage,
}

/// Decodes a record into a notification and checks the record contract: a JSON value with every
/// field, a non-empty message, and a key equal to the recipient's id.
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Notification, DecodeError> {
    let value = value.ok_or(DecodeError::MissingValue)?;
    let notification: Notification =
        serde_json::from_slice(value).map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
    let expected = notification.to.id;
    let key_ok = key
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| k.parse::<u64>().ok())
        .is_some_and(|k| k == expected);
    if !key_ok {
        return Err(DecodeError::KeyMismatch {
            key: key.map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
            recipient: expected,
        });
    }
    if notification.message.is_empty() {
        return Err(DecodeError::EmptyMessage);
    }
    Ok(notification)
}

mod rfc3339_utc {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom)
    }
}

/// Formats a time the way the record contract does (RFC 3339, UTC, milliseconds).
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The seed's user directory, used when no users file is given.
pub fn seed_users() -> Vec<User> {
    [(1, "Emma"), (2, "Bruno"), (3, "Rick"), (4, "Lena")]
        .into_iter()
        .map(|(id, name)| User { id, name: name.to_string() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_notification() -> Notification {
        let users = seed_users();
        Notification::new(users[0].clone(), users[1].clone(), "hi".into())
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let n = mk_notification();
        let decoded = decode(Some(n.key().as_bytes()), Some(&n.encode())).unwrap();
        // sentAt travels with millisecond precision.
        assert_eq!(decoded.id, n.id);
        assert_eq!(decoded.from, n.from);
        assert_eq!(decoded.to, n.to);
        assert_eq!(decoded.message, n.message);
        assert_eq!(decoded.sent_at.timestamp_millis(), n.sent_at.timestamp_millis());
    }

    #[test]
    fn encoding_follows_the_contract() {
        let n = mk_notification();
        let v: serde_json::Value = serde_json::from_slice(&n.encode()).unwrap();
        assert_eq!(v["from"], serde_json::json!({"id": 1, "name": "Emma"}));
        assert_eq!(v["to"], serde_json::json!({"id": 2, "name": "Bruno"}));
        assert_eq!(v["message"], "hi");
        assert_eq!(v["id"], n.id.to_string());
        let sent = v["sentAt"].as_str().unwrap();
        assert!(sent.ends_with('Z'), "{sent}");
        assert_eq!(n.key(), "2");
    }

    #[test]
    fn rejects_poison_records() {
        let n = mk_notification();
        let good = n.encode();
        assert_eq!(decode(Some(b"2"), None), Err(DecodeError::MissingValue));
        assert!(matches!(decode(Some(b"2"), Some(b"\xff\x00garbage")), Err(DecodeError::InvalidJson(_))));
        assert!(matches!(decode(Some(b"2"), Some(&good[..good.len() / 2])), Err(DecodeError::InvalidJson(_))));
        assert!(matches!(decode(Some(b"2"), Some(br#"{"id":"x"}"#)), Err(DecodeError::InvalidJson(_))));
        assert!(matches!(decode(Some(b"3"), Some(&good)), Err(DecodeError::KeyMismatch { .. })));
        assert!(matches!(decode(None, Some(&good)), Err(DecodeError::KeyMismatch { .. })));
        assert!(matches!(decode(Some(b"02x"), Some(&good)), Err(DecodeError::KeyMismatch { .. })));
        let mut empty = n.clone();
        empty.message.clear();
        assert_eq!(decode(Some(b"2"), Some(&empty.encode())), Err(DecodeError::EmptyMessage));
        let wrong_type = br#"{"id":"6f1c0d5e-8a57-4c1e-9a4e-0d3a1b2c3d4e","from":{"id":"1","name":"E"},"to":{"id":2,"name":"B"},"message":"m","sentAt":"2026-01-01T00:00:00Z"}"#;
        assert!(matches!(decode(Some(b"2"), Some(wrong_type)), Err(DecodeError::InvalidJson(_))));
    }
}
