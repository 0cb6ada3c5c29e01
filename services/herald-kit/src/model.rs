//! The notification model and the Kafka record contract.
//!
//! - key: the recipient's user id as a decimal string (`"2"`);
//! - value: `{"id","from":{"id","name"},"to":{"id","name"},"message","sentAt"}` as JSON.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::user_id::UserId;

/// Upper bound of a notification's message, in bytes (UTF-8).
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// A user of the directory: who sends and who receives notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
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
        self.to.id.key()
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
    KeyMismatch { key: String, recipient: UserId },
    #[error("notification has an empty message")]
    EmptyMessage,
}

/// Decodes a record into a notification and checks the record contract: a JSON value with every
/// field, a non-empty message, and a key equal to the recipient's id.
/// (The owned form of [`decode_record`], which makes the checks.)
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Notification, DecodeError> {
    let Record { id, sent_at, fields, .. } = decode_record(key, value)?;
    let user = |u: BorrowedUser<'_>| User { id: u.id, name: u.name.into_owned() };
    Ok(Notification { id, from: user(fields.from), to: user(fields.to), message: fields.message.into_owned(), sent_at })
}

#[derive(Debug, Deserialize, Serialize, PartialEq)]
struct BorrowedUser<'a> {
    id: UserId,
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
}

/// A record value borrowing its strings (a string with escapes is the one that is copied), in the
/// contract's field order, so that serializing it writes the contract's canonical form.
#[derive(Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Borrowed<'a> {
    id: Uuid,
    #[serde(borrow)]
    from: BorrowedUser<'a>,
    #[serde(borrow)]
    to: BorrowedUser<'a>,
    #[serde(borrow)]
    message: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    sent_at: std::borrow::Cow<'a, str>,
}

/// A record read from the topic and checked against the contract, borrowing its bytes: what a
/// consumer needs to store it (id, recipient, time) and to serve it (see [`Record::pack`]).
#[derive(Debug)]
pub struct Record<'a> {
    pub id: Uuid,
    pub to: UserId,
    pub sent_at: DateTime<Utc>,
    fields: Borrowed<'a>,
}

/// Decodes a record without copying it and checks the record contract (see [`decode`]).
pub fn decode_record<'a>(key: Option<&[u8]>, value: Option<&'a [u8]>) -> Result<Record<'a>, DecodeError> {
    let value = value.ok_or(DecodeError::MissingValue)?;
    let fields: Borrowed<'a> = match parse_exact(value) {
        Some(fields) => fields,
        None => serde_json::from_slice(value).map_err(|e| DecodeError::InvalidJson(e.to_string()))?,
    };
    check_key(key, &fields.to.id)?;
    if fields.message.is_empty() {
        return Err(DecodeError::EmptyMessage);
    }
    // Kept as an instant: whatever form the record wrote it in, it is served in the contract's.
    let sent_at = parse_time(&fields.sent_at)?;
    Ok(Record { id: fields.id, to: fields.to.id.clone(), sent_at, fields })
}

/// The producer's exact form — `{"id":"…","from":{"id":N,"name":"…"},"to":{"id":N,"name":"…"},
/// "message":"…","sentAt":"…"}`, no whitespace, no escapes in its strings — read without the
/// general JSON parser (which took a fifth of the consumer's time); `None` for anything else,
/// which the parser then reads or rejects with its message. It accepts only what the parser
/// accepts and reads it the same (`exact_reading_agrees_with_the_parser`).
fn parse_exact(value: &[u8]) -> Option<Borrowed<'_>> {
    let mut r = Exact(value);
    r.literal(br#"{"id":""#)?;
    let id = Uuid::try_parse_ascii(r.take(36)?).ok()?;
    r.literal(br#"","from":{"id":"#)?;
    let from_id = r.number()?;
    r.literal(br#","name":""#)?;
    let from_name = r.string()?;
    r.literal(br#"},"to":{"id":"#)?;
    let to_id = r.number()?;
    r.literal(br#","name":""#)?;
    let to_name = r.string()?;
    r.literal(br#"},"message":""#)?;
    let message = r.string()?;
    r.literal(br#","sentAt":""#)?;
    let sent_at = r.string()?;
    r.literal(b"}")?;
    r.0.is_empty().then_some(Borrowed {
        id,
        from: BorrowedUser { id: from_id.into(), name: from_name.into() },
        to: BorrowedUser { id: to_id.into(), name: to_name.into() },
        message: message.into(),
        sent_at: sent_at.into(),
    })
}

/// What is left of a record value being read by [`parse_exact`].
struct Exact<'a>(&'a [u8]);

impl<'a> Exact<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn literal(&mut self, expected: &[u8]) -> Option<()> {
        (self.take(expected.len())? == expected).then_some(())
    }

    /// A JSON integer as the parser reads a `u64`: `0`, or up to 19 digits without a leading
    /// zero (20 could overflow; such a record takes the parser's way).
    fn number(&mut self) -> Option<u64> {
        let digits = self.0.iter().take(20).take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 19 || (digits > 1 && self.0[0] == b'0') {
            return None;
        }
        let mut n = 0u64;
        for b in self.take(digits)? {
            n = n * 10 + u64::from(b - b'0');
        }
        Some(n)
    }

    /// The rest of a string whose opening quote was read, and its closing quote: only one
    /// without escapes or control characters, in UTF-8.
    fn string(&mut self) -> Option<&'a str> {
        let end = self.0.iter().position(|b| *b == b'"' || *b == b'\\' || *b < 0x20)?;
        if self.0[end] != b'"' {
            return None;
        }
        let text = std::str::from_utf8(self.take(end)?).ok()?;
        self.take(1)?;
        Some(text)
    }
}

fn parse_time(raw: &str) -> Result<DateTime<Utc>, DecodeError> {
    if let Some(t) = parse_contract_time(raw) {
        return Ok(t);
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| DecodeError::InvalidJson(format!("sentAt: {e}")))
}

/// The contract's own form of a time, `YYYY-MM-DDTHH:MM:SS.mmmZ`, read without the general
/// RFC 3339 parser; `None` for any other form or an impossible date (the parser then decides).
fn parse_contract_time(raw: &str) -> Option<DateTime<Utc>> {
    let b = raw.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0u32, |n, d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second, millis) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    if second > 59 {
        return None; // a leap second: the parser's rules
    }
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    Some(date.and_hms_milli_opt(hour, minute, second, millis)?.and_utc())
}

fn check_key(key: Option<&[u8]>, recipient: &UserId) -> Result<(), DecodeError> {
    if key.is_some_and(|k| recipient.is_key(k)) {
        Ok(())
    } else {
        Err(DecodeError::KeyMismatch {
            key: key.map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
            recipient: recipient.clone(),
        })
    }
}

impl Record<'_> {
    /// The notification in the record contract's form, straight from the decoded fields: what
    /// the tests hold [`Packed::write_json`]'s output against.
    #[cfg(test)]
    fn canonical(&self) -> Vec<u8> {
        let f = &self.fields;
        fn user<'b>(u: &'b BorrowedUser<'_>) -> BorrowedUser<'b> {
            BorrowedUser { id: u.id.clone(), name: u.name.as_ref().into() }
        }
        let fields = Borrowed {
            id: f.id,
            from: user(&f.from),
            to: user(&f.to),
            message: f.message.as_ref().into(),
            sent_at: format_time(&self.sent_at).into(),
        };
        serde_json::to_vec(&fields).unwrap()
    }

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

/// A notification packed for a consumer's memory: the id and both user ids as binary numbers and
/// the three strings unescaped, without JSON's field names and quotes — about half the record's
/// size for short messages — written back in the contract's form when served
/// ([`Packed::write_json`]). Layout: id (16 bytes) | from id (u64 LE) | to id (u64 LE) | from
/// name length (u32 LE) | to name length (u32 LE) | from name | to name | message. The time is
/// not in it: whoever keeps it keeps the time beside it, for ordering without a lookup.
#[derive(Debug, Clone, Copy)]
pub struct Packed<'a>(&'a [u8]);

impl<'a> Packed<'a> {
    const HEADER: usize = 16 + 8 + 8 + 4 + 4;

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

/// The record header that tells a read marker from a notification, and its value.
pub const KIND_HEADER: &str = "herald.kind";
pub const KIND_READ: &str = "read";

/// Most notification ids one read marker may name.
pub const MAX_MARKER_IDS: usize = 500;

/// A read marker: a record in the user's own partition (keyed by the user, like their
/// notifications) saying which of their notifications are read. Consumers apply markers in log
/// order, so `all` covers every notification before the marker in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadMarker {
    pub user: UserId,
    /// These notifications (unknown ids are ignored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<Uuid>,
    /// Every notification before the marker.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// When it was written (for notifications in another partition, after the topic grew).
    #[serde(with = "rfc3339_utc")]
    pub at: DateTime<Utc>,
}

impl ReadMarker {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Decodes a read marker and checks it: keyed by its user, naming 1–500 ids or `all`.
pub fn decode_marker(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<ReadMarker, DecodeError> {
    let value = value.ok_or(DecodeError::MissingValue)?;
    let marker: ReadMarker =
        serde_json::from_slice(value).map_err(|e| DecodeError::InvalidJson(format!("read marker: {e}")))?;
    check_key(key, &marker.user)?;
    if marker.all != marker.ids.is_empty() || marker.ids.len() > MAX_MARKER_IDS {
        return Err(DecodeError::InvalidJson(format!(
            "read marker: it must name 1 to {MAX_MARKER_IDS} ids or all, not both"
        )));
    }
    Ok(marker)
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

/// [`format_time`]'s text written into `buf` without an allocation (a read writes one per
/// notification), for years 1000–9999; `None` for any other.
fn time_text<'b>(t: &DateTime<Utc>, buf: &'b mut [u8; 24]) -> Option<&'b str> {
    use chrono::{Datelike, Timelike};
    let year = u32::try_from(t.year()).ok().filter(|y| (1000..=9999).contains(y))?;
    let millis = t.timestamp_subsec_millis();
    if millis >= 1000 {
        return None; // a leap second: chrono's own formatting knows how to write it
    }
    let mut put = |at: usize, value: u32, digits: u32| {
        for i in 0..digits {
            buf[at + i as usize] = b'0' + ((value / 10u32.pow(digits - 1 - i)) % 10) as u8;
        }
    };
    put(0, year, 4);
    put(5, t.month(), 2);
    put(8, t.day(), 2);
    put(11, t.hour(), 2);
    put(14, t.minute(), 2);
    put(17, t.second(), 2);
    put(20, millis, 3);
    for (at, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (23, b'Z')] {
        buf[at] = c;
    }
    std::str::from_utf8(buf).ok()
}

/// The seed's user directory, used when no users file is given.
pub fn seed_users() -> Vec<User> {
    [(1, "Emma"), (2, "Bruno"), (3, "Rick"), (4, "Lena")]
        .into_iter()
        .map(|(id, name)| User { id: UserId::from(id), name: name.to_string() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::SubsecRound;

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

    #[test]
    fn the_producers_record_is_kept_byte_for_byte() {
        let n = mk_notification();
        let value = n.encode();
        let r = decode_record(Some(b"2"), Some(&value)).unwrap();
        assert_eq!((r.id, &r.to), (n.id, &UserId::from(2)));
        assert_eq!(r.sent_at.timestamp_millis(), n.sent_at.timestamp_millis());
        assert_eq!(String::from_utf8(r.canonical()).unwrap(), String::from_utf8(value.clone()).unwrap());
        assert_eq!(String::from_utf8(served(&r)).unwrap(), String::from_utf8(value.clone()).unwrap());
        // Escapes and non-ASCII text survive.
        let mut odd = n.clone();
        odd.message = "line\n\"quoted\" \\ é ✓ \u{1}".into();
        let value = odd.encode();
        let r = decode_record(Some(b"2"), Some(&value)).unwrap();
        assert_eq!(String::from_utf8(r.canonical()).unwrap(), String::from_utf8(value.clone()).unwrap());
        assert_eq!(String::from_utf8(served(&r)).unwrap(), String::from_utf8(value.clone()).unwrap());
        assert_eq!(Packed::new(&r.pack()).id(), n.id);
        // The packed form is about half the record for a short message.
        assert!(r.pack().len() * 2 < value.len() + 80, "{} of {}", r.pack().len(), value.len());
    }

    /// What a consumer serves from the packed form.
    fn served(r: &Record<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        Packed::new(&r.pack()).write_json(r.sent_at.timestamp_millis(), &mut out);
        out
    }

    fn encoded(id: u128, (from, to): (u64, u64), (sender, recipient): (&str, &str), message: &str, ms: i64) -> Vec<u8> {
        let user = |id: u64, name: &str| User { id: id.into(), name: name.to_string() };
        let sent_at = DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
        let (from, to) = (user(from, sender), user(to, recipient));
        Notification { id: Uuid::from_u128(id), from, to, message: message.into(), sent_at }.encode()
    }

    #[test]
    fn the_producers_records_are_read_without_the_json_parser() {
        let n = mk_notification();
        let value = n.encode();
        let exact = parse_exact(&value).expect("the producer's form");
        assert_eq!(Some(&exact), serde_json::from_slice::<Borrowed<'_>>(&value).ok().as_ref());
        assert_eq!(parse_contract_time(&format_time(&n.sent_at)), Some(n.sent_at.trunc_subsecs(3)));
        // Escapes, whitespace, another order, a leading zero, a big id: the parser's way.
        let escaped = encoded(1, (1, 2), ("E", "B"), "a\"b", 0);
        let spaced = String::from_utf8(value.clone()).unwrap().replacen(":", ": ", 1);
        let zero = String::from_utf8(value.clone()).unwrap().replacen(r#""from":{"id":1"#, r#""from":{"id":01"#, 1);
        let big = encoded(1, (u64::MAX, 2), ("E", "B"), "m", 0);
        for other in [escaped, spaced.into_bytes(), zero.into_bytes(), big] {
            assert!(parse_exact(&other).is_none(), "{}", String::from_utf8_lossy(&other));
        }
        assert!(decode_record(Some(b"2"), Some(&encoded(1, (u64::MAX, 2), ("E", "B"), "m", 0))).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
        /// Whatever the exact reading accepts, the JSON parser reads the same way; checked over
        /// the producer's records and copies with a few bytes changed.
        #[test]
        fn exact_reading_agrees_with_the_parser(
            id in proptest::prelude::any::<u128>(),
            users in proptest::prop_oneof![
                (0u64..100_000, 0u64..100_000),
                proptest::prelude::any::<(u64, u64)>()
            ],
            // Printable ASCII (with `"` and `\`), other scripts, a control character.
            names in ("[ -~é✓\u{1}]{0,12}", "[ -~é✓\u{1}]{0,12}"),
            message in "[ -~é✓\u{1}]{0,40}",
            ms in -62_000_000_000_000i64..250_000_000_000_000,
            edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 0..3),
        ) {
            let mut value = encoded(id, users, (&names.0, &names.1), &message, ms);
            for (at, byte) in edits {
                let i = at.index(value.len());
                value[i] = byte;
            }
            if let Some(exact) = parse_exact(&value) {
                proptest::prop_assert_eq!(Some(exact), serde_json::from_slice::<Borrowed<'_>>(&value).ok());
            }
            let raw = String::from_utf8_lossy(&value[value.len().saturating_sub(26)..value.len().saturating_sub(2)]).into_owned();
            if let Some(t) = parse_contract_time(&raw) {
                proptest::prop_assert_eq!(Some(t), DateTime::parse_from_rfc3339(&raw).ok().map(|t| t.with_timezone(&Utc)));
            }
        }
    }

    #[test]
    fn times_are_written_as_format_time_writes_them() {
        let mut buf = [0; 24];
        for ms in [0, 1, 999, 1_000, 59_999, 1_780_000_000_123, 4_102_444_799_999, -1, -62_135_596_800_000] {
            let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
            match time_text(&t, &mut buf) {
                Some(text) => assert_eq!(text, format_time(&t), "{ms}"),
                None => assert!(!(1000..=9999).contains(&chrono::Datelike::year(&t)), "{ms}"),
            }
        }
        let t = DateTime::<Utc>::from_timestamp_millis(1_780_000_000_123).unwrap();
        assert_eq!(time_text(&t, &mut buf), Some("2026-05-28T20:26:40.123Z"));
    }

    #[test]
    fn other_shapes_are_kept_in_the_contracts_shape() {
        let n = mk_notification();
        let canonical = String::from_utf8(n.encode()).unwrap();
        let at = n
            .sent_at
            .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
            .to_rfc3339_opts(SecondsFormat::Millis, false);
        for value in [
            // Whitespace and another field order.
            format!(
                "{{ \"sentAt\": \"{}\", \"message\": \"hi\", \"to\": {{\"name\": \"Bruno\", \"id\": 2}}, \"from\": {{\"id\": 1, \"name\": \"Emma\"}}, \"id\": \"{}\" }}\n",
                format_time(&n.sent_at),
                n.id
            ),
            // Another producer's extra fields: dropped, not served.
            format!(
                "{{\"id\":\"{}\",\"from\":{{\"id\":1,\"name\":\"Emma\"}},\"to\":{{\"id\":2,\"name\":\"Bruno\",\"email\":\"b@x\"}},\"message\":\"hi\",\"sentAt\":\"{}\",\"trace\":\"abc\"}}",
                n.id,
                format_time(&n.sent_at)
            ),
            // The same instant in another time zone: kept in UTC.
            format!(
                "{{\"id\":\"{}\",\"from\":{{\"id\":1,\"name\":\"Emma\"}},\"to\":{{\"id\":2,\"name\":\"Bruno\"}},\"message\":\"hi\",\"sentAt\":\"{at}\"}}",
                n.id
            ),
            // Escaped where it need not be.
            format!(
                "{{\"id\":\"{}\",\"from\":{{\"id\":1,\"name\":\"\\u0045mma\"}},\"to\":{{\"id\":2,\"name\":\"Bruno\"}},\"message\":\"h\\u0069\",\"sentAt\":\"{}\"}}",
                n.id,
                format_time(&n.sent_at)
            ),
        ] {
            let r = decode_record(Some(b"2"), Some(value.as_bytes())).unwrap();
            assert_eq!(String::from_utf8(r.canonical()).unwrap(), canonical, "{value}");
            assert_eq!(String::from_utf8(served(&r)).unwrap(), canonical, "{value}");
        }
    }

    #[test]
    fn read_markers_round_trip_and_are_checked() {
        let ids =
            ReadMarker { user: UserId::from(2), ids: vec![Uuid::new_v4(), Uuid::new_v4()], all: false, at: Utc::now() };
        let all = ReadMarker { user: UserId::from(2), ids: vec![], all: true, at: Utc::now() };
        for m in [&ids, &all] {
            let back = decode_marker(Some(b"2"), Some(&m.encode())).unwrap();
            assert_eq!((&back.user, &back.ids, back.all), (&m.user, &m.ids, m.all));
        }
        assert!(matches!(decode_marker(Some(b"3"), Some(&ids.encode())), Err(DecodeError::KeyMismatch { .. })));
        let neither = ReadMarker { ids: vec![], all: false, ..all.clone() };
        let both = ReadMarker { ids: ids.ids.clone(), ..all.clone() };
        let too_many = ReadMarker { ids: (0..501).map(|_| Uuid::new_v4()).collect(), ..ids.clone() };
        for bad in [neither, both, too_many] {
            assert!(matches!(decode_marker(Some(b"2"), Some(&bad.encode())), Err(DecodeError::InvalidJson(_))));
        }
        // A notification is not a marker.
        assert!(decode_marker(Some(b"2"), Some(&mk_notification().encode())).is_err());
    }

    #[test]
    fn decode_record_rejects_what_decode_rejects() {
        let n = mk_notification();
        let good = n.encode();
        assert_eq!(decode_record(Some(b"2"), None).err(), Some(DecodeError::MissingValue));
        assert!(matches!(decode_record(Some(b"2"), Some(b"\xff\x00garbage")), Err(DecodeError::InvalidJson(_))));
        assert!(matches!(decode_record(Some(b"2"), Some(&good[..good.len() / 2])), Err(DecodeError::InvalidJson(_))));
        assert!(matches!(decode_record(Some(b"3"), Some(&good)), Err(DecodeError::KeyMismatch { .. })));
        assert!(matches!(decode_record(None, Some(&good)), Err(DecodeError::KeyMismatch { .. })));
        let mut empty = n.clone();
        empty.message.clear();
        assert_eq!(decode_record(Some(b"2"), Some(&empty.encode())).err(), Some(DecodeError::EmptyMessage));
        let bad_time = String::from_utf8(good.clone()).unwrap().replace(&format_time(&n.sent_at), "yesterday");
        assert!(matches!(decode_record(Some(b"2"), Some(bad_time.as_bytes())), Err(DecodeError::InvalidJson(_))));
        let duplicate = String::from_utf8(good.clone()).unwrap().replacen(
            "\"message\":\"hi\"",
            "\"message\":\"hi\",\"message\":\"x\"",
            1,
        );
        assert!(matches!(decode_record(Some(b"2"), Some(duplicate.as_bytes())), Err(DecodeError::InvalidJson(_))));
    }
}
