//! Times in the record contract's form (RFC 3339, UTC, milliseconds): written without an
//! allocation, and read without the general parser when they are in exactly that form.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::DecodeError;

pub(crate) fn parse_time(raw: &str) -> Result<DateTime<Utc>, DecodeError> {
    if let Some(t) = parse_contract_time(raw) {
        return Ok(t);
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| DecodeError::InvalidJson(format!("sentAt: {e}")))
}

/// The contract's own form of a time, `YYYY-MM-DDTHH:MM:SS.mmmZ`, read without the general
/// RFC 3339 parser; `None` for any other form or an impossible date (the parser then decides).
pub(crate) fn parse_contract_time(raw: &str) -> Option<DateTime<Utc>> {
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
pub(crate) mod rfc3339_utc {
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
pub(crate) fn time_text<'b>(t: &DateTime<Utc>, buf: &'b mut [u8; 24]) -> Option<&'b str> {
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
