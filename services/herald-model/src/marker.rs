//! Read markers: records in a user's own partition saying which of their notifications are read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::DecodeError;
use crate::record::check_key;
use crate::time::rfc3339_utc;
use crate::user_id::UserId;
use crate::version::has_unknown_fields;

/// Most notification ids one read marker may name.
pub const MAX_MARKER_IDS: usize = 500;

/// A read marker: a record in the user's own partition (keyed by the user, like their
/// notifications) saying which of their notifications are read. Consumers apply markers in log
/// order, so `all` covers every notification before the marker in the log. Fields it does not
/// know are skipped (the version rule, [`crate::version`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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

/// A read marker as decoded, and whether it had fields this version does not know (skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedMarker {
    pub marker: ReadMarker,
    pub unknown_fields: bool,
}

/// The fields of a read marker this version knows.
const MARKER_FIELDS: &[&str] = &["user", "ids", "all", "at"];

/// Decodes a read marker and checks it: keyed by its user, naming 1–500 ids or `all`.
pub fn decode_marker(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<DecodedMarker, DecodeError> {
    let value = value.ok_or(DecodeError::MissingValue)?;
    let marker: ReadMarker =
        serde_json::from_slice(value).map_err(|e| DecodeError::InvalidJson(format!("read marker: {e}")))?;
    check_key(key, &marker.user)?;
    if marker.all != marker.ids.is_empty() || marker.ids.len() > MAX_MARKER_IDS {
        return Err(DecodeError::InvalidJson(format!(
            "read marker: it must name 1 to {MAX_MARKER_IDS} ids or all, not both"
        )));
    }
    Ok(DecodedMarker { unknown_fields: has_unknown_fields(value, MARKER_FIELDS), marker })
}
