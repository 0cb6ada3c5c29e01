//! Reading a record from the topic without copying it: the producer's exact form by a small
//! reader of that form, anything else by the JSON parser; the contract checked either way, and
//! the notification packed for keeping (see [`crate::packed`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::content::{check_data, check_strings};
use crate::error::DecodeError;
#[cfg(test)]
use crate::time::format_time;
use crate::time::parse_time;
use crate::user_id::UserId;
use crate::version::has_unknown_fields;

#[derive(Debug, Deserialize, Serialize, PartialEq)]
pub(crate) struct BorrowedUser<'a> {
    pub(crate) id: UserId,
    /// Written only when known (see [`crate::User`]).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<std::borrow::Cow<'a, str>>,
}

/// `data` as the record holds it, borrowed (compared by its text).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(transparent)]
pub(crate) struct RawData<'a>(#[serde(borrow)] pub(crate) &'a RawValue);

impl RawData<'_> {
    pub(crate) fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawData<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

/// A record value borrowing its strings (a string with escapes is the one that is copied), in the
/// contract's field order, so that serializing it writes the contract's canonical form.
#[derive(Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Borrowed<'a> {
    pub(crate) id: Uuid,
    #[serde(borrow)]
    pub(crate) from: BorrowedUser<'a>,
    #[serde(borrow)]
    pub(crate) to: BorrowedUser<'a>,
    #[serde(borrow)]
    pub(crate) message: std::borrow::Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(crate) title: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(crate) category: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<RawData<'a>>,
    #[serde(borrow)]
    pub(crate) sent_at: std::borrow::Cow<'a, str>,
}

/// A record read from the topic and checked against the contract, borrowing its bytes: what a
/// consumer needs to store it (id, recipient, time) and to serve it (see [`Record::pack`], in [`crate::packed`]).
#[derive(Debug)]
pub struct Record<'a> {
    pub id: Uuid,
    pub to: UserId,
    pub sent_at: DateTime<Utc>,
    /// The value had fields this version does not know: skipped (the version rule,
    /// [`crate::version`]), not kept or served.
    pub unknown_fields: bool,
    pub(crate) fields: Borrowed<'a>,
}

/// The fields of a notification record this version knows.
const RECORD_FIELDS: &[&str] = &["id", "from", "to", "message", "title", "url", "category", "data", "sentAt"];

/// Decodes a record without copying it and checks the record contract (see [`decode`]).
pub fn decode_record<'a>(key: Option<&[u8]>, value: Option<&'a [u8]>) -> Result<Record<'a>, DecodeError> {
    let value = value.ok_or(DecodeError::MissingValue)?;
    let (fields, unknown_fields): (Borrowed<'a>, bool) = match parse_exact(value) {
        Some(fields) => (fields, false),
        None => {
            let fields = serde_json::from_slice(value).map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
            (fields, has_unknown_fields(value, RECORD_FIELDS))
        }
    };
    check_key(key, &fields.to.id)?;
    if fields.message.is_empty() {
        return Err(DecodeError::EmptyMessage);
    }
    check_content(&fields).map_err(DecodeError::InvalidContent)?;
    // Kept as an instant: whatever form the record wrote it in, it is served in the contract's.
    let sent_at = parse_time(&fields.sent_at)?;
    Ok(Record { id: fields.id, to: fields.to.id.clone(), sent_at, unknown_fields, fields })
}

/// The structured content's rules, as the producer checks them ([`crate::content`]).
fn check_content(fields: &Borrowed<'_>) -> Result<(), String> {
    check_strings(fields.title.as_deref(), fields.url.as_deref(), fields.category.as_deref())?;
    fields.data.map_or(Ok(()), |data| check_data(data.get()))
}

/// The producer's exact form — `{"id":"…","from":{"id":U,"name":"…"},"to":{"id":U,"name":"…"},
/// "message":"…","sentAt":"…"}` where `U` is a number or a string and each `name` may be left
/// out, no whitespace, no escapes in its strings — read without the
/// general JSON parser (which took a fifth of the consumer's time); `None` for anything else,
/// which the parser then reads or rejects with its message. It accepts only what the parser
/// accepts and reads it the same (`exact_reading_agrees_with_the_parser`).
pub(crate) fn parse_exact(value: &[u8]) -> Option<Borrowed<'_>> {
    let mut r = Exact(value);
    r.literal(br#"{"id":""#)?;
    let id = Uuid::try_parse_ascii(r.take(36)?).ok()?;
    r.literal(br#"","from":{"id":"#)?;
    let from_id = r.user_id()?;
    let from_name = r.name()?;
    r.literal(br#","to":{"id":"#)?;
    let to_id = r.user_id()?;
    let to_name = r.name()?;
    r.literal(br#","message":""#)?;
    let message = r.string()?;
    let title = r.optional_string(br#","title":""#)?;
    let url = r.optional_string(br#","url":""#)?;
    let category = r.optional_string(br#","category":""#)?;
    let data = if r.0.starts_with(br#","data":"#) {
        r.take(8)?;
        Some(RawData(r.object()?))
    } else {
        None
    };
    r.literal(br#","sentAt":""#)?;
    let sent_at = r.string()?;
    r.literal(b"}")?;
    r.0.is_empty().then_some(Borrowed {
        id,
        from: BorrowedUser { id: from_id, name: from_name.map(Into::into) },
        to: BorrowedUser { id: to_id, name: to_name.map(Into::into) },
        message: message.into(),
        title: title.map(Into::into),
        url: url.map(Into::into),
        category: category.map(Into::into),
        data,
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

    /// `prefix` and a string, when the value goes on with `prefix`: `Some(None)` when it does
    /// not, `None` when what follows `prefix` is not a plain string.
    fn optional_string(&mut self, prefix: &[u8]) -> Option<Option<&'a str>> {
        if !self.0.starts_with(prefix) {
            return Some(None);
        }
        self.take(prefix.len())?;
        self.string().map(Some)
    }

    /// A JSON object, read by the JSON parser itself in one pass (it stops at the object's end).
    fn object(&mut self) -> Option<&'a RawValue> {
        if self.0.first() != Some(&b'{') {
            return None;
        }
        let mut values = serde_json::Deserializer::from_slice(self.0).into_iter::<&RawValue>();
        let object = values.next()?.ok()?;
        self.take(values.byte_offset())?;
        Some(object)
    }

    /// After a user's id: `,"name":"…"}` or `}` (no name), and the name.
    fn name(&mut self) -> Option<Option<&'a str>> {
        if self.0.first() == Some(&b'}') {
            self.take(1)?;
            return Some(None);
        }
        self.literal(br#","name":""#)?;
        let name = self.string()?;
        self.literal(b"}")?;
        Some(Some(name))
    }

    /// A user id: a JSON number or a string, as [`UserId`]'s deserializer reads them.
    fn user_id(&mut self) -> Option<UserId> {
        if self.0.first() == Some(&b'"') {
            self.take(1)?;
            return UserId::parse(self.string()?);
        }
        let n = self.number()?;
        (n > 0).then(|| UserId::from(n))
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

pub(crate) fn check_key(key: Option<&[u8]>, recipient: &UserId) -> Result<(), DecodeError> {
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
    /// the tests hold [`crate::Packed::write_json`]'s output against.
    #[cfg(test)]
    pub(crate) fn canonical(&self) -> Vec<u8> {
        let f = &self.fields;
        fn user<'b>(u: &'b BorrowedUser<'_>) -> BorrowedUser<'b> {
            BorrowedUser { id: u.id.clone(), name: u.name.as_deref().map(Into::into) }
        }
        let fields = Borrowed {
            id: f.id,
            from: user(&f.from),
            to: user(&f.to),
            message: f.message.as_ref().into(),
            title: f.title.as_deref().map(Into::into),
            url: f.url.as_deref().map(Into::into),
            category: f.category.as_deref().map(Into::into),
            data: f.data,
            sent_at: format_time(&self.sent_at).into(),
        };
        serde_json::to_vec(&fields).unwrap()
    }
}
