//! A notification packed for a consumer's memory, and written back in the contract's form.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::record::{Borrowed, BorrowedUser, Record};
use crate::time::{format_time, time_text};
use crate::user_id::UserId;

/// A notification packed for a consumer's memory: the id as 16 bytes, both user ids packed
/// ([`UserId::pack_into`]: a number in 9 bytes, a text id in its length + 2) and the three strings
/// unescaped, without JSON's field names and quotes — about half the record's size for short
/// messages — written back in the contract's form when served ([`Packed::write_json`]). Layout:
/// id (16 bytes) | from name length (u32 LE; [`NO_NAME`] when unknown) | to name length | from
/// id | to id | from name | to name | message. The time is not in it: whoever keeps it keeps the time beside it,
/// for ordering without a lookup.
#[derive(Debug, Clone, Copy)]
pub struct Packed<'a>(&'a [u8]);

/// A name length meaning "no name" (a real one is below 4 GiB: a Kafka record is).
const NO_NAME: u32 = u32::MAX;

/// The fields of a [`Packed`] notification, located.
struct Parts<'a> {
    from: UserId,
    to: UserId,
    from_name: Option<&'a str>,
    to_name: Option<&'a str>,
    message: &'a str,
}

impl<'a> Packed<'a> {
    const LENGTHS: usize = 16 + 4 + 4;

    /// Bytes written by [`Record::pack`].
    pub fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0; N];
        if let Some(bytes) = self.0.get(at..at + N) {
            out.copy_from_slice(bytes);
        }
        out
    }

    pub fn id(&self) -> Uuid {
        Uuid::from_bytes(self.array(0))
    }

    fn text(&self, from: usize, to: usize) -> &'a str {
        // Written from `&str`s by `Record::pack`.
        self.0.get(from..to).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or_default()
    }

    /// The fields after the id (`None` only for bytes [`Record::pack`] did not write).
    fn parts(&self) -> Option<Parts<'a>> {
        let length = |at| match u32::from_le_bytes(self.array(at)) {
            NO_NAME => None,
            n => Some(n as usize),
        };
        let (from_len, to_len) = (length(16), length(20));
        let (from, used_from) = UserId::unpack(self.0.get(Self::LENGTHS..)?)?;
        let (to, used_to) = UserId::unpack(self.0.get(Self::LENGTHS + used_from..)?)?;
        let names = Self::LENGTHS + used_from + used_to;
        let to_names = names + from_len.unwrap_or(0);
        let message = to_names + to_len.unwrap_or(0);
        Some(Parts {
            from,
            to,
            from_name: from_len.map(|_| self.text(names, to_names)),
            to_name: to_len.map(|_| self.text(to_names, message)),
            message: self.text(message, self.0.len()),
        })
    }

    /// Writes the notification, sent at `sent_at_ms`, in the record contract's form: its fields
    /// in the contract's order, no whitespace, `sentAt` in UTC with milliseconds, nothing else —
    /// whatever order, whitespace, extra fields or time zone the record had. The producer's
    /// records come out byte for byte as they were sent.
    pub fn write_json(&self, sent_at_ms: i64, out: &mut Vec<u8>) {
        let Some(parts) = self.parts() else { return };
        let sent_at = DateTime::<Utc>::from_timestamp_millis(sent_at_ms).unwrap_or_default();
        let mut text = [0; 24];
        let sent_at = match time_text(&sent_at, &mut text) {
            Some(text) => std::borrow::Cow::Borrowed(text),
            None => format_time(&sent_at).into(),
        };
        let fields = Borrowed {
            id: self.id(),
            from: BorrowedUser { id: parts.from, name: parts.from_name.map(Into::into) },
            to: BorrowedUser { id: parts.to, name: parts.to_name.map(Into::into) },
            message: parts.message.into(),
            sent_at,
        };
        // Serializing strings, integers and a uuid into a vector cannot fail.
        let _ = serde_json::to_writer(out, &fields);
    }
}

impl Record<'_> {
    /// The notification packed for keeping in memory (see [`Packed`]); its time is kept apart.
    pub fn pack(&self) -> Box<[u8]> {
        let from = self.fields.from.name.as_deref();
        let to = self.fields.to.name.as_deref();
        let message = &self.fields.message;
        let len = |name: Option<&str>| name.map_or(0, str::len);
        let mut out = Vec::with_capacity(Packed::LENGTHS + 2 * 16 + len(from) + len(to) + message.len());
        out.extend_from_slice(self.id.as_bytes());
        // A Kafka record is smaller than 2 GiB, and so is each of its strings.
        let length = |name: Option<&str>| name.map_or(NO_NAME, |n| u32::try_from(n.len()).unwrap_or(NO_NAME - 1));
        out.extend_from_slice(&length(from).to_le_bytes());
        out.extend_from_slice(&length(to).to_le_bytes());
        self.fields.from.id.pack_into(&mut out);
        self.to.pack_into(&mut out);
        out.extend_from_slice(from.unwrap_or_default().as_bytes());
        out.extend_from_slice(to.unwrap_or_default().as_bytes());
        out.extend_from_slice(message.as_bytes());
        out.into_boxed_slice()
    }
}
