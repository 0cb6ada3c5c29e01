//! A notification packed for a consumer's memory, and written back in the contract's form.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::record::{Borrowed, BorrowedUser, Record};
use crate::time::{format_time, time_text};
use crate::user_id::UserId;

/// A notification packed for a consumer's memory: the id and both user ids as binary numbers and
/// the three strings unescaped, without JSON's field names and quotes — about half the record's
/// size for short messages — written back in the contract's form when served
/// ([`Packed::write_json`]). Layout: id (16 bytes) | from id (u64 LE) | to id (u64 LE) | from
/// name length (u32 LE) | to name length (u32 LE) | from name | to name | message. The time is
/// not in it: whoever keeps it keeps the time beside it, for ordering without a lookup.
#[derive(Debug, Clone, Copy)]
pub struct Packed<'a>(&'a [u8]);

impl<'a> Packed<'a> {
    pub(crate) const HEADER: usize = 16 + 8 + 8 + 4 + 4;

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

    /// Writes the notification, sent at `sent_at_ms`, in the record contract's form: its fields
    /// in the contract's order, no whitespace, `sentAt` in UTC with milliseconds, nothing else —
    /// whatever order, whitespace, extra fields or time zone the record had. The producer's
    /// records come out byte for byte as they were sent.
    pub fn write_json(&self, sent_at_ms: i64, out: &mut Vec<u8>) {
        let from_len = u32::from_le_bytes(self.array(32)) as usize;
        let to_len = u32::from_le_bytes(self.array(36)) as usize;
        let names = Self::HEADER + from_len;
        let sent_at = DateTime::<Utc>::from_timestamp_millis(sent_at_ms).unwrap_or_default();
        let mut text = [0; 24];
        let sent_at = match time_text(&sent_at, &mut text) {
            Some(text) => std::borrow::Cow::Borrowed(text),
            None => format_time(&sent_at).into(),
        };
        let fields = Borrowed {
            id: self.id(),
            from: BorrowedUser { id: UserId::from_packed(self.array(16)), name: self.text(Self::HEADER, names).into() },
            to: BorrowedUser { id: UserId::from_packed(self.array(24)), name: self.text(names, names + to_len).into() },
            message: self.text(names + to_len, self.0.len()).into(),
            sent_at,
        };
        // Serializing strings, integers and a uuid into a vector cannot fail.
        let _ = serde_json::to_writer(out, &fields);
    }
}

impl Record<'_> {
    /// The notification packed for keeping in memory (see [`Packed`]); its time is kept apart.
    pub fn pack(&self) -> Box<[u8]> {
        let (from, to, message) = (&self.fields.from.name, &self.fields.to.name, &self.fields.message);
        let mut out = Vec::with_capacity(Packed::HEADER + from.len() + to.len() + message.len());
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&self.fields.from.id.to_packed());
        out.extend_from_slice(&self.to.to_packed());
        // A Kafka record is smaller than 2 GiB, and so is each of its strings.
        out.extend_from_slice(&u32::try_from(from.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&u32::try_from(to.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(from.as_bytes());
        out.extend_from_slice(to.as_bytes());
        out.extend_from_slice(message.as_bytes());
        out.into_boxed_slice()
    }
}
