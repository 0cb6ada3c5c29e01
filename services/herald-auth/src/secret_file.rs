//! The one reader of secret files (tokens, the JWT secret, the SASL password, signing keys),
//! each kind with its own, stated rule for what around the secret is not part of it. Nothing
//! read here is logged or shown by `Debug`.

use std::path::Path;

/// What of a secret file's text is not part of the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    /// Surrounding whitespace (spaces, tabs, line breaks): bearer tokens (the service token and
    /// the peer token), which never contain whitespace themselves.
    Whitespace,
    /// One trailing line break (`\n` or `\r\n`), which editors and `echo` add; every other byte is
    /// part of the secret: the JWT HMAC secret, the SASL password and `herald-token`'s key file.
    OneLineBreak,
    /// Nothing: PEM keys, whose parser reads the armour itself.
    Nothing,
}

impl Trim {
    /// `raw` cut by this rule.
    pub fn apply(self, raw: &[u8]) -> &[u8] {
        match self {
            Trim::Whitespace => raw.trim_ascii(),
            Trim::OneLineBreak => raw.strip_suffix(b"\n").map(|s| s.strip_suffix(b"\r").unwrap_or(s)).unwrap_or(raw),
            Trim::Nothing => raw,
        }
    }
}

/// A secret file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read {what} {path}: {source}")]
    Read { what: &'static str, path: String, source: std::io::Error },
    #[error("{what} {path} is empty")]
    Empty { what: &'static str, path: String },
}

/// The secret in the file at `path` (`what` names it in errors), cut by `trim`; an empty one is
/// refused.
pub fn read(path: &Path, what: &'static str, trim: Trim) -> Result<Vec<u8>, SecretFileError> {
    let shown = || path.display().to_string();
    let raw = std::fs::read(path).map_err(|source| SecretFileError::Read { what, path: shown(), source })?;
    let secret = trim.apply(&raw);
    if secret.is_empty() {
        return Err(SecretFileError::Empty { what, path: shown() });
    }
    Ok(secret.to_vec())
}

/// [`read`], for a secret that must be text (UTF-8).
pub fn read_text(path: &Path, what: &'static str, trim: Trim) -> Result<String, SecretFileError> {
    let bytes = read(path, what, trim)?;
    String::from_utf8(bytes).map_err(|_| SecretFileError::Read {
        what,
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_file_has_its_own_rule() {
        assert_eq!(Trim::Whitespace.apply(b"  t0ken \r\n"), b"t0ken");
        assert_eq!(Trim::OneLineBreak.apply(b"pass word \n"), b"pass word ");
        assert_eq!(Trim::OneLineBreak.apply(b"secret\r\n"), b"secret");
        assert_eq!(Trim::OneLineBreak.apply(b"secret\n\n"), b"secret\n", "only one line break");
        assert_eq!(Trim::OneLineBreak.apply(b" secret"), b" secret", "leading bytes are the secret's");
        assert_eq!(Trim::Nothing.apply(b"-----BEGIN\n"), b"-----BEGIN\n");
    }

    #[test]
    fn missing_and_empty_files_are_named_without_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let blank = dir.path().join("blank");
        std::fs::write(&blank, " \n").unwrap();
        let err = read(&blank, "auth token file", Trim::Whitespace).unwrap_err().to_string();
        assert_eq!(err, format!("auth token file {} is empty", blank.display()));
        assert_eq!(read(&blank, "SASL password file", Trim::OneLineBreak).unwrap(), b" ", "a space is a password");
        let err = read(&dir.path().join("absent"), "JWT secret", Trim::OneLineBreak).unwrap_err().to_string();
        assert!(err.starts_with("cannot read JWT secret "), "{err}");
        std::fs::write(&blank, [0xff, 0xfe]).unwrap();
        assert!(read_text(&blank, "SASL password file", Trim::OneLineBreak).is_err());
    }
}
