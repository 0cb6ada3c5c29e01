//! The authentication flags both services take.

use std::path::PathBuf;

/// The authentication flags both services take (each also an environment variable).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthArgs {
    /// File holding a static service token: `Authorization: Bearer <token>` may send as any user
    /// and read any user.
    #[arg(long, env = "HERALD_AUTH_TOKEN_FILE", value_name = "PATH")]
    pub auth_token_file: Option<PathBuf>,
    /// File holding the shared secret of HS256/HS384/HS512 JWTs (at least 32 bytes).
    #[arg(long, env = "HERALD_JWT_SECRET_FILE", value_name = "PATH", conflicts_with = "jwt_public_key_file")]
    pub jwt_secret_file: Option<PathBuf>,
    /// File holding the PEM public key of RS256, ES256 (P-256) or EdDSA (Ed25519) JWTs; the
    /// algorithm follows the key.
    #[arg(long, env = "HERALD_JWT_PUBLIC_KEY_FILE", value_name = "PATH")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// The `iss` every JWT must carry (not checked when not set).
    #[arg(long, env = "HERALD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// An `aud` every JWT must carry (not checked when not set).
    #[arg(long, env = "HERALD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}
