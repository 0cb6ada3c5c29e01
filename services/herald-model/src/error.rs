//! Why a record on the topic is not what it claims to be.

use crate::user_id::UserId;

/// Why a record on the topic is not a valid notification.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record has no value")]
    MissingValue,
    #[error("record value is not a notification: {0}")]
    InvalidJson(String),
    #[error("record key {key:?} is not the recipient id {recipient}")]
    KeyMismatch { key: String, recipient: UserId },
    #[error("notification has an empty message")]
    EmptyMessage,
}
