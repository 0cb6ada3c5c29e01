//! Why authentication cannot be set up (the service does not start).

use crate::secret_file::SecretFileError;

/// Why authentication cannot be set up (the service does not start).
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error("JWT secret {path} has {len} bytes; at least {} are required", crate::MIN_SECRET_BYTES)]
    ShortSecret { path: String, len: usize },
    #[error("JWT key {path}: {why}")]
    Key { path: String, why: String },
}
