//! Herald's values, with no I/O: the notification and its Kafka record codec, the packed form a
//! consumer keeps, read markers, the record contract's version rule, user ids, the partitioner and duration flags. The producer, the
//! consumers, the token tool and the operator share them; nothing here opens a socket or a file.

pub mod content;
pub mod duration;
pub mod error;
pub mod marker;
pub mod notification;
pub mod packed;
pub mod partition;
pub mod record;
pub mod time;
pub mod user_id;
pub mod version;

pub use content::Data;
pub use error::DecodeError;
pub use marker::{DecodedMarker, MAX_MARKER_IDS, ReadMarker, decode_marker};
pub use notification::{MAX_MESSAGE_BYTES, Notification, User, decode, seed_users};
pub use packed::Packed;
pub use record::{Record, decode_record};
pub use time::format_time;
pub use user_id::UserId;
pub use version::{KIND_HEADER, KIND_NOTIFICATION, KIND_READ, RecordKind};

#[cfg(test)]
mod tests;
