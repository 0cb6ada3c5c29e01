//! A notification's structured content besides its message: `title`, `url`, `category` and
//! `data`, and their rules — checked by the producer (a 400 naming the rule) and again by every
//! consumer reading a record (a record breaking them is invalid: another writer cannot make a
//! consumer serve a `javascript:` link).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// The longest title, in Unicode scalar values.
pub const MAX_TITLE_CHARS: usize = 256;
/// The longest url, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// The longest category, in bytes.
pub const MAX_CATEGORY_BYTES: usize = 64;
/// The largest `data` object, in bytes of its compact form.
pub const MAX_DATA_BYTES: usize = 4096;

/// `title`: at most [`MAX_TITLE_CHARS`] characters.
pub fn check_title(title: &str) -> Result<(), String> {
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(format!("title is longer than {MAX_TITLE_CHARS} characters"));
    }
    Ok(())
}

/// `url`: an absolute `http(s)` URL with a host, or a path starting with a single `/`; no
/// whitespace or control characters; at most [`MAX_URL_BYTES`].
pub fn check_url(url: &str) -> Result<(), String> {
    const RULE: &str = "url must be an absolute http(s) URL or a path starting with a single /, \
                        without whitespace or control characters, at most 2048 bytes";
    let bad = || Err(RULE.to_string());
    if url.is_empty() || url.len() > MAX_URL_BYTES || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad();
    }
    if let Some(rest) = url.strip_prefix('/') {
        // `//host` and `/\host` are taken by browsers for another host.
        return if rest.starts_with('/') || rest.starts_with('\\') { bad() } else { Ok(()) };
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return bad();
    };
    // The authority: up to the first `/`, `?` or `#`; a host after any userinfo, before any port.
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if host_port.starts_with('[') {
        host_port.split(']').next().map(|h| h.trim_start_matches('[')).unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let host_ok = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_') || b >= 0x80)
        && !url.contains('\\');
    if host_ok { Ok(()) } else { bad() }
}

/// `category`: 1–[`MAX_CATEGORY_BYTES`] of `a–z 0–9 . _ -`.
pub fn check_category(category: &str) -> Result<(), String> {
    let ok = !category.is_empty()
        && category.len() <= MAX_CATEGORY_BYTES
        && category.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err("category must be 1-64 characters of a-z 0-9 . _ -".to_string()) }
}

/// The structured strings that are given, each under its rule: what the producer checks of a
/// request and a consumer of every record.
pub fn check_strings(title: Option<&str>, url: Option<&str>, category: Option<&str>) -> Result<(), String> {
    title.map_or(Ok(()), check_title)?;
    url.map_or(Ok(()), check_url)?;
    category.map_or(Ok(()), check_category)
}

/// `data`'s JSON text (valid JSON already): an object of at most [`MAX_DATA_BYTES`].
pub fn check_data(json: &str) -> Result<(), String> {
    if !json.starts_with('{') {
        return Err("data must be a JSON object".into());
    }
    if json.len() > MAX_DATA_BYTES {
        return Err(format!("data is {} bytes; at most {MAX_DATA_BYTES} are allowed", json.len()));
    }
    Ok(())
}

/// `data`: a JSON object, kept and served byte for byte as given (compact).
#[derive(Clone)]
pub struct Data(Box<RawValue>);

impl Data {
    /// A JSON object's text, made compact (whitespace outside strings removed, nothing else
    /// changed: key order and number forms stay as given); `Err` when it is not an object or is
    /// larger than [`MAX_DATA_BYTES`] compact.
    pub fn compact(raw: &str) -> Result<Self, String> {
        let compact = compact_json(raw);
        check_data(&compact)?;
        RawValue::from_string(compact).map(Self).map_err(|e| format!("data is not valid JSON: {e}"))
    }

    /// The object's JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

/// `raw` without whitespace outside strings (it is valid JSON: only the parser's checks follow).
fn compact_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in raw.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Data {}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Data({})", self.get())
    }
}

impl Serialize for Data {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Data::compact(raw.get()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for good in [
            "https://example.com",
            "http://example.com:8080/a?b=c#d",
            "HTTPS://Example.com/x",
            "https://user@host.example/p",
            "https://[::1]:8443/",
            "/inbox/42",
            "/",
            "https://bücher.example/",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        for bad in [
            "",
            "javascript:alert(1)",
            "JAVASCRIPT:alert(1)",
            "data:text/html,x",
            "ftp://example.com",
            "//evil.example",
            "/\\evil.example",
            "https://",
            "https:///path",
            "https://exa mple.com",
            "https://example.com/a b",
            "/a\nb",
            "relative/path",
            "https:\\\\evil.example",
            "https://evil.example\\@good.example",
            &long,
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn titles_and_categories() {
        assert!(check_title(&"é".repeat(256)).is_ok());
        assert!(check_title(&"é".repeat(257)).is_err());
        for good in ["billing", "a.b_c-1", &"x".repeat(64)] {
            assert_eq!(check_category(good), Ok(()), "{good}");
        }
        for bad in ["", "Billing", "a b", "a,b", "ü", &"x".repeat(65)] {
            assert!(check_category(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn data_is_a_compact_object_kept_as_given() {
        let d = Data::compact("{ \"b\": 1.50, \"a\" : [1, 2], \"s\": \"x  y \\\" z\" }").unwrap();
        assert_eq!(d.get(), r#"{"b":1.50,"a":[1,2],"s":"x  y \" z"}"#, "order, numbers and strings as given");
        assert_eq!(serde_json::to_string(&d).unwrap(), d.get());
        let back: Data = serde_json::from_str(" {\"k\": true} ").unwrap();
        assert_eq!(back.get(), r#"{"k":true}"#);
        for bad in ["[1]", "1", "\"x\"", "{", "{\"a\":}"] {
            assert!(Data::compact(bad).is_err(), "{bad}");
        }
        let big = format!(r#"{{"k":"{}"}}"#, "x".repeat(MAX_DATA_BYTES));
        assert!(Data::compact(&big).unwrap_err().contains("at most 4096"));
    }
}
