//! The record contract's version rule, which lets pods of two versions share a topic during a
//! rolling update: a record kind (`herald.kind` header) a reader does not know is skipped and
//! counted, never taken for invalid; a field it does not know is skipped (the rest of the record
//! is read as usual) and counted. A newer producer can thus write a new kind of record, or a new
//! field, before every consumer knows it, without flooding the dead-letter topic.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::de::IgnoredAny;

/// The record header that tells record kinds apart. Absent: a notification (the seed's
/// records carry no header).
pub const KIND_HEADER: &str = "herald.kind";
/// `herald.kind` of a notification (written by no producer yet; read as one).
pub const KIND_NOTIFICATION: &str = "notification";
/// `herald.kind` of a read marker.
pub const KIND_READ: &str = "read";

/// What a record is, by its `herald.kind` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Notification,
    /// A read marker ([`crate::ReadMarker`]).
    Read,
    /// A kind this version does not know: skipped and counted.
    Unknown,
}

impl RecordKind {
    /// Its `herald.kind` value (`unknown` for a kind this version does not know).
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Notification => KIND_NOTIFICATION,
            RecordKind::Read => KIND_READ,
            RecordKind::Unknown => "unknown",
        }
    }

    /// The kind named by the `herald.kind` header's value; `None`: the record has no such header.
    pub fn of(header: Option<&[u8]>) -> Self {
        match header {
            None => RecordKind::Notification,
            Some(v) if v == KIND_NOTIFICATION.as_bytes() => RecordKind::Notification,
            Some(v) if v == KIND_READ.as_bytes() => RecordKind::Read,
            Some(_) => RecordKind::Unknown,
        }
    }
}

/// Whether the JSON object `value` has a top-level field outside `known`. Called only for values
/// the serde parser accepted (it skips unknown fields itself); this second look only counts them.
pub(crate) fn has_unknown_fields(value: &[u8], known: &[&str]) -> bool {
    serde_json::from_slice::<BTreeMap<Cow<'_, str>, IgnoredAny>>(value)
        .is_ok_and(|fields| fields.keys().any(|k| !known.contains(&k.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_header() {
        assert_eq!(RecordKind::of(None), RecordKind::Notification);
        assert_eq!(RecordKind::of(Some(b"notification")), RecordKind::Notification);
        assert_eq!(RecordKind::of(Some(b"read")), RecordKind::Read);
        for other in [&b"action"[..], b"", b"READ", b"read "] {
            assert_eq!(RecordKind::of(Some(other)), RecordKind::Unknown, "{other:?}");
        }
    }

    #[test]
    fn unknown_fields_are_top_level_names_outside_the_list() {
        assert!(!has_unknown_fields(br#"{"a":1,"b":{"z":2}}"#, &["a", "b"]));
        assert!(has_unknown_fields(br#"{"a":1,"c":[1,2]}"#, &["a", "b"]));
        assert!(has_unknown_fields(br#"{"a\u0000":1}"#, &["a"]));
        assert!(!has_unknown_fields(b"not json", &["a"]));
    }
}
