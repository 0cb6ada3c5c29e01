//! Static bearer tokens: the service token and the consumers' peer token, of which only digests
//! are compared.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret_file::{self, SecretFileError, Trim};

/// A static token, of which only a digest is kept.
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl BearerToken {
    pub fn new(token: &str) -> Option<Self> {
        let token = token.trim();
        (!token.is_empty()).then(|| Self { digest: Sha256::digest(token.as_bytes()).into() })
    }

    /// Reads a token from a file (surrounding whitespace, such as a trailing newline, ignored).
    pub fn load(path: &Path, what: &'static str) -> Result<Self, SecretFileError> {
        let raw = secret_file::read(path, what, Trim::Whitespace)?;
        Ok(Self { digest: Sha256::digest(&raw).into() })
    }

    /// Whether `given` is this token; digests compared in constant time, so neither the content
    /// nor the length of the token leaks through timing.
    pub fn matches(&self, given: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(given.trim_ascii()).into();
        digest.ct_eq(&self.digest).into()
    }
}

/// The peer token itself, which a consumer sends to its peers; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerToken(String);

impl std::fmt::Debug for PeerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerToken(<redacted>)")
    }
}

impl PeerToken {
    /// Reads the token from a file (surrounding whitespace ignored).
    pub fn load(path: &Path) -> Result<Self, SecretFileError> {
        Ok(Self(secret_file::read_text(path, "peer token file", Trim::Whitespace)?))
    }

    /// The token, for the peers' [`BearerToken`].
    pub(crate) fn text(&self) -> &str {
        &self.0
    }

    /// The `Authorization` value that carries it.
    pub fn header(&self) -> http::HeaderValue {
        let mut value = http::HeaderValue::from_str(&format!("Bearer {}", self.0))
            .unwrap_or(http::HeaderValue::from_static("Bearer"));
        value.set_sensitive(true);
        value
    }
}
