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
    /// A `title`, `url`, `category` or `data` that breaks its rule ([`crate::content`]).
    #[error("notification content is invalid: {0}")]
    InvalidContent(String),
}

impl DecodeError {
    /// What went wrong, without anything the record holds (its key is a user id; a parser's
    /// message can quote a value): what logs at `info` and above carry.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::MissingValue => "missing_value",
            DecodeError::InvalidJson(_) => "invalid_json",
            DecodeError::KeyMismatch { .. } => "key_mismatch",
            DecodeError::EmptyMessage => "empty_message",
            DecodeError::InvalidContent(_) => "invalid_content",
        }
    }
}
