//! A notification packed for a consumer's memory, and written back in the contract's form.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::record::{Borrowed, BorrowedUser, RawData, Record};
use crate::time::{format_time, time_text};
use crate::user_id::UserId;

/// A notification packed for a consumer's memory: the id as 16 bytes, both user ids packed
/// ([`UserId::pack_into`]: a number in 9 bytes, a text id in its length + 2) and the strings
/// unescaped, without JSON's field names and quotes — about half the record's size for short
/// messages — written back in the contract's form when served ([`Packed::write_json`]). Layout:
/// id (16 bytes) | which of the seven strings are there (one byte, bit i for string i) | the
/// length of each one there (u32 LE) | from id | to id | the strings there, in order: from name,
/// to name, message, title, url, category, data. A plain notification with both names pays 13
/// bytes for this table. The time is not in it: whoever keeps it keeps the time beside it, for
/// ordering without a lookup.
#[derive(Debug, Clone, Copy)]
pub struct Packed<'a>(&'a [u8]);

/// The strings after the ids, in order.
const STRINGS: usize = 7;
/// Where the category is among them.
const CATEGORY: usize = 5;
/// Where the presence byte is.
const PRESENT: usize = 16;

/// Where each string is, `(start, end)`, when it is there.
type Spans = [Option<(usize, usize)>; STRINGS];

/// The fields of a [`Packed`] notification, located.
struct Parts<'a> {
    from: UserId,
    to: UserId,
    /// from name, to name, message, title, url, category, data.
    strings: [Option<&'a str>; STRINGS],
}

impl<'a> Packed<'a> {
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

    /// Where the ids start, and each string's `(start, end)` when it is there — the ids skipped,
    /// not read. `None` only for bytes [`Record::pack`] did not write.
    fn locate(&self) -> Option<(usize, Spans)> {
        let present = *self.0.get(PRESENT)?;
        let ids = PRESENT + 1 + 4 * present.count_ones() as usize;
        let used_from = UserId::packed_len(self.0.get(ids..)?)?;
        let used_to = UserId::packed_len(self.0.get(ids + used_from..)?)?;
        let (mut length_at, mut at) = (PRESENT + 1, ids + used_from + used_to);
        let mut spans: Spans = [None; STRINGS];
        for (i, span) in spans.iter_mut().enumerate() {
            if present & (1 << i) == 0 {
                continue;
            }
            let end = at + u32::from_le_bytes(self.array(length_at)) as usize;
            *span = Some((at, end));
            (length_at, at) = (length_at + 4, end);
        }
        Some((ids, spans))
    }

    fn text(&self, span: Option<(usize, usize)>) -> Option<&'a str> {
        // Written from `&str`s by `Record::pack`.
        span.and_then(|(from, to)| self.0.get(from..to)).and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The notification's category, if it has one (read for every item a filtered read looks at).
    pub fn category(&self) -> Option<&'a str> {
        self.locate().and_then(|(_, spans)| self.text(spans[CATEGORY]))
    }

    /// The fields after the id (`None` only for bytes [`Record::pack`] did not write).
    fn parts(&self) -> Option<Parts<'a>> {
        let (ids, spans) = self.locate()?;
        let (from, used_from) = UserId::unpack(self.0.get(ids..)?)?;
        let (to, _) = UserId::unpack(self.0.get(ids + used_from..)?)?;
        Some(Parts { from, to, strings: spans.map(|span| self.text(span)) })
    }

    /// Writes the notification, sent at `sent_at_ms`, in the record contract's form: its fields
    /// in the contract's order, no whitespace, `sentAt` in UTC with milliseconds, nothing else —
    /// whatever order, whitespace, extra fields or time zone the record had. The producer's
    /// records come out byte for byte as they were sent.
    pub fn write_json(&self, sent_at_ms: i64, out: &mut Vec<u8>) {
        let Some(Parts { from, to, strings }) = self.parts() else { return };
        let [from_name, to_name, message, title, url, category, data] = strings;
        let sent_at = DateTime::<Utc>::from_timestamp_millis(sent_at_ms).unwrap_or_default();
        let mut text = [0; 24];
        let sent_at = match time_text(&sent_at, &mut text) {
            Some(text) => std::borrow::Cow::Borrowed(text),
            None => format_time(&sent_at).into(),
        };
        // Written from a checked RawValue by `Record::pack`.
        let data = data.and_then(|d| serde_json::from_str::<&RawValue>(d).ok()).map(RawData);
        let fields = Borrowed {
            id: self.id(),
            from: BorrowedUser { id: from, name: from_name.map(Into::into) },
            to: BorrowedUser { id: to, name: to_name.map(Into::into) },
            message: message.unwrap_or_default().into(),
            title: title.map(Into::into),
            url: url.map(Into::into),
            category: category.map(Into::into),
            data,
            sent_at,
        };
        // Serializing strings, integers and a uuid into a vector cannot fail.
        let _ = serde_json::to_writer(out, &fields);
    }
}

impl Record<'_> {
    /// The notification packed for keeping in memory (see [`Packed`]); its time is kept apart.
    pub fn pack(&self) -> Box<[u8]> {
        let f = &self.fields;
        let strings: [Option<&str>; STRINGS] = [
            f.from.name.as_deref(),
            f.to.name.as_deref(),
            Some(&f.message),
            f.title.as_deref(),
            f.url.as_deref(),
            f.category.as_deref(),
            f.data.as_ref().map(RawData::get),
        ];
        let total: usize = strings.iter().map(|s| s.map_or(0, str::len)).sum();
        let mut out = Vec::with_capacity(PRESENT + 1 + 4 * STRINGS + 2 * 16 + total);
        out.extend_from_slice(self.id.as_bytes());
        let present =
            strings.iter().enumerate().fold(0u8, |mask, (i, s)| if s.is_some() { mask | 1 << i } else { mask });
        out.push(present);
        for s in strings.iter().flatten() {
            // A Kafka record is smaller than 2 GiB, and so is each of its strings.
            out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
        }
        f.from.id.pack_into(&mut out);
        self.to.pack_into(&mut out);
        for s in strings.iter().flatten() {
            out.extend_from_slice(s.as_bytes());
        }
        out.into_boxed_slice()
    }
}
