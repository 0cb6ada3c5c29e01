//! Herald's values, with no I/O: the notification and its Kafka record codec, the packed form a
//! consumer keeps, read markers, user ids, the partitioner and duration flags. The producer, the
//! consumers, the token tool and the operator share them; nothing here opens a socket or a file.

pub mod duration;
pub mod error;
pub mod marker;
pub mod notification;
pub mod packed;
pub mod partition;
pub mod record;
pub mod time;
pub mod user_id;

pub use error::DecodeError;
pub use marker::{KIND_HEADER, KIND_READ, MAX_MARKER_IDS, ReadMarker, decode_marker};
pub use notification::{MAX_MESSAGE_BYTES, Notification, User, decode, seed_users};
pub use packed::Packed;
pub use record::{Record, decode_record};
pub use time::format_time;
pub use user_id::UserId;

#[cfg(test)]
mod tests;
