//! The optional bearer token guarding `POST /send`.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A configured token. Only its digest is kept; it never appears in logs or `Debug` output.
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Why the token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading auth token file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("auth token file {path} is empty")]
    Empty { path: String },
}

impl BearerToken {
    pub fn new(token: &str) -> Option<Self> {
        let token = token.trim();
        (!token.is_empty()).then(|| Self { digest: Sha256::digest(token.as_bytes()).into() })
    }

    /// Reads the token from a file (surrounding whitespace, such as a trailing newline, is ignored).
    pub fn load(path: &Path) -> Result<Self, TokenError> {
        let shown = path.display().to_string();
        let raw = std::fs::read_to_string(path).map_err(|source| TokenError::Read { path: shown.clone(), source })?;
        Self::new(&raw).ok_or(TokenError::Empty { path: shown })
    }

    /// Whether an `Authorization` header value carries this token. Digests are compared in
    /// constant time, so neither the content nor the length of the token leaks through timing.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else { return false };
        let Some(given) = value.strip_prefix(b"Bearer ").or_else(|| value.strip_prefix(b"bearer ")) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(given.trim_ascii()).into();
        digest.ct_eq(&self.digest).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_right_bearer_token() {
        let t = BearerToken::new("s3cret\n").unwrap();
        assert!(t.accepts(Some(b"Bearer s3cret")));
        assert!(!t.accepts(Some(b"Bearer s3cre")));
        assert!(!t.accepts(Some(b"Bearer s3cretx")));
        assert!(!t.accepts(Some(b"Basic s3cret")));
        assert!(!t.accepts(Some(b"s3cret")));
        assert!(!t.accepts(None));
        assert!(BearerToken::new("  \n").is_none());
        assert_eq!(format!("{t:?}"), "BearerToken(<redacted>)");
    }
}
