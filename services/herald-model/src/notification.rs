//! The notification and the Kafka record contract it travels in:
//!
//! - key: the recipient's user id as written in a path (`"2"`, `"alice"`; see [`UserId`]);
//! - value: `{"id","from":{"id","name"},"to":{"id","name"},"message","title","url","category",
//!   "data","sentAt"}` as JSON, each `name` only when known (a directory's, or the sender's
//!   token's) and `title` to `data` only when given.
//!
//! Reading a record without copying it is [`crate::record`]'s business; keeping it in memory,
//! [`crate::packed`]'s.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::content::Data;
use crate::error::DecodeError;
use crate::record::{BorrowedUser, Record, decode_record};
use crate::time::rfc3339_utc;
use crate::user_id::UserId;

/// Upper bound of a notification's message, in bytes (UTF-8).
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Who sends or receives a notification: the id, and the name when one is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl User {
    /// A user known only by id.
    pub fn anonymous(id: UserId) -> Self {
        Self { id, name: None }
    }
}

/// One notification, as it travels through Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: Uuid,
    pub from: User,
    pub to: User,
    pub message: String,
    /// Structured content (see [`crate::content`]), each left out of the record when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Data>,
    #[serde(with = "rfc3339_utc")]
    pub sent_at: DateTime<Utc>,
}

impl Notification {
    /// A new notification with a fresh id, sent now.
    pub fn new(from: User, to: User, message: String) -> Self {
        Self {
            id: Uuid::new_v4(),
            from,
            to,
            message,
            title: None,
            url: None,
            category: None,
            data: None,
            sent_at: Utc::now(),
        }
    }

    /// The record key: the recipient's id in decimal.
    pub fn key(&self) -> String {
        self.to.id.key()
    }

    /// The record value: the notification as JSON.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain structs of strings, integers and a formatted date cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
/// Decodes a record into a notification and checks the record contract: a JSON value with every
/// field, a non-empty message, and a key equal to the recipient's id.
/// (The owned form of [`decode_record`], which makes the checks.)
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Notification, DecodeError> {
    let Record { id, sent_at, fields, .. } = decode_record(key, value)?;
    let user = |u: BorrowedUser<'_>| User { id: u.id, name: u.name.map(|n| n.into_owned()) };
    let text = |t: Option<std::borrow::Cow<'_, str>>| t.map(|t| t.into_owned());
    Ok(Notification {
        id,
        from: user(fields.from),
        to: user(fields.to),
        message: fields.message.into_owned(),
        title: text(fields.title),
        url: text(fields.url),
        category: text(fields.category),
        data: fields.data.map(|d| Data::compact(d.get())).transpose().map_err(DecodeError::InvalidContent)?,
        sent_at,
    })
}
/// The seed's four users: the directory of the seed-compatibility tests and examples.
pub fn seed_users() -> Vec<User> {
    [(1, "Emma"), (2, "Bruno"), (3, "Rick"), (4, "Lena")]
        .into_iter()
        .map(|(id, name)| User { id: UserId::from(id), name: Some(name.to_string()) })
        .collect()
}
