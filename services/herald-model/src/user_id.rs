//! A user's id: one type for the model, the record key, the partitioner, auth identities, the
//! consumer's store and every HTTP route, so that the id's rules live in one place.

use std::fmt;

/// A user's id as Herald takes, keys, partitions and serves it: today a positive integer,
/// written in decimal in paths, form fields, token subjects and record keys, and as a JSON number
/// in records and answers. Passed by reference: callers do not rely on it being a plain number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct UserId(u64);

impl UserId {
    /// What a valid id looks like, for the message of a 400.
    pub const RULE: &'static str = "userID must be a positive integer";

    /// An id as the API takes it in a path, a form field or a token: decimal digits only (no
    /// sign, no spaces), above zero.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        raw.parse().ok().filter(|id| *id > 0).map(Self)
    }

    /// Whether `key` is this user's record key: exactly the bytes [`UserId::key`] writes. A key
    /// such as `"02"` is not user 2's: it would land on another partition than user 2's
    /// records, so a consumer that stored it under user 2 could never serve it (it is invalid).
    pub fn is_key(&self, key: &[u8]) -> bool {
        // The decimal digits compared from the last, without formatting (once per record).
        let mut n = self.0;
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

    /// The record key of this user's notifications and markers.
    pub fn key(&self) -> String {
        self.0.to_string()
    }

    /// A bucket in `0..buckets` for sharding by user (`buckets` > 0).
    pub fn bucket(&self, buckets: usize) -> usize {
        (self.0 % buckets.max(1) as u64) as usize
    }

    /// The id in the packed form a consumer keeps notifications in (eight bytes, little endian).
    pub fn to_packed(&self) -> [u8; 8] {
        self.0.to_le_bytes()
    }

    /// An id written by [`UserId::to_packed`].
    pub fn from_packed(bytes: [u8; 8]) -> Self {
        Self(u64::from_le_bytes(bytes))
    }
}

impl From<u64> for UserId {
    fn from(id: u64) -> Self {
        Self(id)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::str::FromStr for UserId {
    type Err = &'static str;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::parse(raw).ok_or(Self::RULE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_decimal_integers() {
        assert_eq!(UserId::parse("42"), Some(UserId::from(42)));
        assert_eq!(UserId::parse("18446744073709551615"), Some(UserId::from(u64::MAX)));
        for bad in ["", "0", "-1", "+1", " 1", "1.5", "abc", "18446744073709551616"] {
            assert_eq!(UserId::parse(bad), None, "{bad:?}");
        }
        assert_eq!("7".parse::<UserId>(), Ok(UserId::from(7)));
        assert_eq!("x".parse::<UserId>(), Err(UserId::RULE));
    }

    #[test]
    fn keys_and_json_are_the_decimal_number() {
        let id = UserId::from(2);
        assert_eq!(id.key(), "2");
        assert!(id.is_key(b"2"));
        for other in [&b"02"[..], b"+2", b"2 ", b" 2", b"3", b"", &[0xff]] {
            assert!(!id.is_key(other), "{other:?}");
        }
        assert_eq!(serde_json::to_string(&id).unwrap(), "2");
        assert_eq!(serde_json::from_str::<UserId>("2").unwrap(), id);
        assert_eq!(UserId::from_packed(id.to_packed()), id);
        assert_eq!(id.to_string(), "2");
    }
}
