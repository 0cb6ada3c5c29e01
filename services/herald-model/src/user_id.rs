//! A user's id: one type for the model, the record key, the partitioner, auth identities, the
//! consumer's store and every HTTP route, so that the id's rules live in one place.
//!
//! The rule: 1–128 bytes of `A–Z a–z 0–9` and `. _ - ~ : @ +`, not made only of dots (`.` and
//! `..` are rewritten by clients and proxies). An id of digits alone — after an optional `+` or
//! `-` — is a **number**: the decimal form of 1..=18446744073709551615, without a sign or a
//! leading zero (`"02"`, `"+2"`, `"-2"` and `"0"` are refused rather than read as someone else).
//! Numbers are keyed, partitioned and served (as JSON numbers) exactly as the seed's integer ids
//! were; every other id is a JSON string, its record key its own bytes.

use std::fmt;

/// The rule's text, once for [`UserId::RULE`] and [`UserId::RULE_TEXT`].
macro_rules! rule {
    () => {
        "must be 1-128 characters of A-Z a-z 0-9 . _ - ~ : @ + (not only dots); an id of digits is a \
         number from 1 to 18446744073709551615 without a sign or leading zeros"
    };
}

/// The longest id, in bytes.
pub const MAX_USER_ID_BYTES: usize = 128;

/// A user's id as Herald takes, keys, partitions and serves it (see the module's rule). Passed by
/// reference: a text id owns its bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Repr);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Repr {
    /// 1..=u64::MAX, written in decimal.
    Number(u64),
    /// Any other valid id.
    Text(Box<str>),
}

/// Packed-form tags (see [`UserId::pack_into`]).
const PACKED_NUMBER: u8 = 0;
const PACKED_TEXT: u8 = 1;

impl UserId {
    /// What a valid id looks like, for the message of a 400 about the path's `userID`.
    pub const RULE: &'static str = concat!("userID ", rule!());
    /// The rule without the field's name (see [`UserId::rule_for`]).
    pub const RULE_TEXT: &'static str = rule!();

    /// The rule for a 400 about `field` (`toID must be …`).
    pub fn rule_for(field: &str) -> String {
        format!("{field} {}", Self::RULE_TEXT)
    }

    /// An id exactly as given (no trimming: callers trim what a person typed), or `None` when it
    /// breaks the rule.
    pub fn parse(raw: &str) -> Option<Self> {
        let bytes = raw.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_USER_ID_BYTES || !bytes.iter().all(|b| allowed(*b)) {
            return None;
        }
        if bytes.iter().all(|b| *b == b'.') {
            return None;
        }
        let digits = match bytes {
            [b'+' | b'-', rest @ ..] => rest,
            all => all,
        };
        if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
            // Looks like a number: only the canonical form of one is accepted.
            if digits.len() != bytes.len() || digits[0] == b'0' {
                return None;
            }
            return raw.parse::<u64>().ok().map(|n| Self(Repr::Number(n)));
        }
        Some(Self(Repr::Text(raw.into())))
    }

    /// The id's number, when it is one.
    pub fn as_number(&self) -> Option<u64> {
        match &self.0 {
            Repr::Number(n) => Some(*n),
            Repr::Text(_) => None,
        }
    }

    /// Whether `key` is this user's record key: exactly the bytes [`UserId::key`] writes. A key
    /// such as `"02"` is not user 2's: it would land on another partition than user 2's
    /// records, so a consumer that stored it under user 2 could never serve it (it is invalid).
    pub fn is_key(&self, key: &[u8]) -> bool {
        match &self.0 {
            Repr::Text(text) => text.as_bytes() == key,
            // The decimal digits compared from the last, without formatting (once per record).
            Repr::Number(n) => {
                let mut n = *n;
                let mut rest = key;
                loop {
                    let Some((last, head)) = rest.split_last() else { return false };
                    if *last != b'0' + (n % 10) as u8 {
                        return false;
                    }
                    n /= 10;
                    if n == 0 {
                        return head.is_empty();
                    }
                    rest = head;
                }
            }
        }
    }

    /// The record key of this user's notifications and markers: the id as written in a path.
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// A bucket in `0..buckets` for sharding by user (`buckets` > 0).
    pub fn bucket(&self, buckets: usize) -> usize {
        let buckets = buckets.max(1) as u64;
        let hash = match &self.0 {
            Repr::Number(n) => *n,
            // FNV-1a: stable, cheap, spreads short ids.
            Repr::Text(text) => text
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)),
        };
        (hash % buckets) as usize
    }

    /// Appends the id in the packed form a consumer keeps notifications in: a tag byte, then
    /// the number (eight bytes, little endian) or the text's length (one byte) and bytes.
    pub fn pack_into(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Repr::Number(n) => {
                out.push(PACKED_NUMBER);
                out.extend_from_slice(&n.to_le_bytes());
            }
            Repr::Text(text) => {
                out.push(PACKED_TEXT);
                // At most MAX_USER_ID_BYTES (128) long.
                out.push(text.len() as u8);
                out.extend_from_slice(text.as_bytes());
            }
        }
    }

    /// How many bytes the id [`UserId::pack_into`] wrote at the start of `bytes` takes, without
    /// reading it.
    pub fn packed_len(bytes: &[u8]) -> Option<usize> {
        match bytes.split_first()? {
            (&PACKED_NUMBER, _) => Some(9),
            (&PACKED_TEXT, rest) => rest.first().map(|len| 2 + usize::from(*len)),
            _ => None,
        }
    }

    /// An id written by [`UserId::pack_into`] at the start of `bytes`, and how many bytes it took.
    pub fn unpack(bytes: &[u8]) -> Option<(Self, usize)> {
        match bytes.split_first()? {
            (&PACKED_NUMBER, rest) => {
                let n = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
                Some((Self(Repr::Number(n)), 9))
            }
            (&PACKED_TEXT, rest) => {
                let (len, rest) = rest.split_first()?;
                let text = std::str::from_utf8(rest.get(..usize::from(*len))?).ok()?;
                Some((Self(Repr::Text(text.into())), 2 + usize::from(*len)))
            }
            _ => None,
        }
    }
}

/// The bytes an id may be made of.
fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~' | b':' | b'@' | b'+')
}

impl From<u64> for UserId {
    /// A numeric id (tests and the seed's users; `0` is not one a request can name).
    fn from(id: u64) -> Self {
        Self(Repr::Number(id))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Number(n) => fmt::Display::fmt(n, f),
            Repr::Text(text) => f.write_str(text),
        }
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Number(n) => write!(f, "UserId({n})"),
            Repr::Text(text) => write!(f, "UserId({text:?})"),
        }
    }
}

impl std::str::FromStr for UserId {
    type Err = &'static str;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::parse(raw).ok_or(Self::RULE)
    }
}

impl serde::Serialize for UserId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Number(n) => serializer.serialize_u64(*n),
            Repr::Text(text) => serializer.serialize_str(text),
        }
    }
}

impl<'de> serde::Deserialize<'de> for UserId {
    /// A JSON number (1..=u64::MAX) or a string under the rule (`"2"` is user 2).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = UserId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a user id (a positive integer, or a string of 1-128 allowed characters)")
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<UserId, E> {
                if n == 0 { Err(E::custom(UserId::RULE)) } else { Ok(UserId(Repr::Number(n))) }
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<UserId, E> {
                u64::try_from(n).map_err(|_| E::custom(UserId::RULE)).and_then(|n| self.visit_u64(n))
            }

            fn visit_str<E: serde::de::Error>(self, raw: &str) -> Result<UserId, E> {
                UserId::parse(raw).ok_or_else(|| E::custom(UserId::RULE))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(raw: &str) -> UserId {
        UserId::parse(raw).unwrap_or_else(|| panic!("{raw:?} is valid"))
    }

    #[test]
    fn numbers_are_canonical_decimal_integers() {
        assert_eq!(UserId::parse("42"), Some(UserId::from(42)));
        assert_eq!(UserId::parse("18446744073709551615"), Some(UserId::from(u64::MAX)));
        assert_eq!(UserId::parse("42").and_then(|id| id.as_number()), Some(42));
        for bad in ["0", "00", "02", "+2", "-1", "-0", "18446744073709551616", "99999999999999999999999"] {
            assert_eq!(UserId::parse(bad), None, "{bad:?}");
        }
        assert_eq!("7".parse::<UserId>(), Ok(UserId::from(7)));
        assert_eq!("x y".parse::<UserId>(), Err(UserId::RULE));
    }

    #[test]
    fn text_ids_follow_the_rule() {
        let longest = "a".repeat(MAX_USER_ID_BYTES);
        for good in
            ["alice", "u_8f3k2", "a.b", "...a", "+", "-", "~", "1.5", "2a", "a@example.com", "x+tag:1~2", &longest]
        {
            let id = text(good);
            assert_eq!(id.as_number(), None, "{good:?}");
            assert_eq!(id.to_string(), good);
        }
        let too_long = "a".repeat(MAX_USER_ID_BYTES + 1);
        for bad in ["", ".", "..", "....", " a", "a ", "a b", "a/b", "a%2F", "é", "a\n", "a?b", "a#b", &too_long] {
            assert_eq!(UserId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_are_the_id_as_written_and_compared_byte_for_byte() {
        let two = UserId::from(2);
        assert_eq!(two.key(), "2");
        assert!(two.is_key(b"2"));
        for other in [&b"02"[..], b"+2", b"2 ", b" 2", b"3", b"", &[0xff]] {
            assert!(!two.is_key(other), "{other:?}");
        }
        let alice = text("alice");
        assert_eq!(alice.key(), "alice");
        assert!(alice.is_key(b"alice"));
        assert!(!alice.is_key(b"Alice") && !alice.is_key(b"alice ") && !alice.is_key(b"alic"));
    }

    #[test]
    fn json_numbers_stay_numbers_and_text_is_a_string() {
        let two = UserId::from(2);
        assert_eq!(serde_json::to_string(&two).unwrap(), "2");
        assert_eq!(serde_json::from_str::<UserId>("2").unwrap(), two);
        assert_eq!(serde_json::from_str::<UserId>(r#""2""#).unwrap(), two, "a string of a number is the number");
        let alice = text("alice@example.com");
        assert_eq!(serde_json::to_string(&alice).unwrap(), r#""alice@example.com""#);
        assert_eq!(serde_json::from_str::<UserId>(r#""alice@example.com""#).unwrap(), alice);
        for bad in ["0", "-1", "1.5", r#""02""#, r#""..""#, r#""a b""#, "null", "[]"] {
            assert!(serde_json::from_str::<UserId>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_packed_form_round_trips() {
        let longest = "z".repeat(MAX_USER_ID_BYTES);
        for id in [UserId::from(1), UserId::from(u64::MAX), text("alice"), text(&longest)] {
            let mut out = vec![7];
            id.pack_into(&mut out);
            out.push(9);
            let (back, used) = UserId::unpack(&out[1..]).unwrap();
            assert_eq!(UserId::packed_len(&out[1..]), Some(used));
            assert_eq!((back, used + 2), (id, out.len()));
        }
        assert_eq!(UserId::unpack(&[]), None);
        assert_eq!(UserId::unpack(&[0, 1, 2]), None);
        assert_eq!(UserId::unpack(&[1, 5, b'a']), None);
        assert_eq!(UserId::unpack(&[9]), None);
    }

    #[test]
    fn buckets_are_in_range_and_stable() {
        for id in [UserId::from(13), text("alice"), text("bob")] {
            assert!(id.bucket(8) < 8);
            assert_eq!(id.bucket(8), id.clone().bucket(8));
        }
        assert_eq!(UserId::from(13).bucket(8), 5, "numbers shard as before");
    }
}
