//! Who is calling, for the producer and the consumers (and the rules `herald-token` mints for).
//! Both services take the same flags and apply the same rules:
//!
//! - a static *service* token (`--auth-token-file`): sends as anyone, reads anyone;
//! - JWT bearer tokens, verified with a shared secret (`--jwt-secret-file`: HS256/384/512) or a
//!   public key (`--jwt-public-key-file`: RS256, ES256 or EdDSA, by the key's type — `alg: none`
//!   and tokens of another algorithm are refused); `exp` required, `nbf` honoured, 30 s leeway,
//!   issuer and audience checked when configured. `sub` is the user id in decimal; `scope` may
//!   hold `notifications:send:any` and `notifications:read:any`;
//! - a *peer* token shared by one pipeline's consumers (the consumer's `--peer-token-file`), for
//!   forwarded reads and `/internal/claims`.
//!
//! With none of them configured every caller is [`Identity::Anyone`]. Secrets are read from
//! files; only digests of the static tokens are kept; no token or key is ever logged.

mod args;
mod authenticator;
mod error;
mod identity;
mod jwt;
pub mod secret_file;
mod token;

pub use args::AuthArgs;
pub use authenticator::Authenticator;
pub use error::AuthSetupError;
pub use identity::{AuthError, Identity, MAX_NAME_CLAIM_BYTES, SendAs};
pub use jwt::{KeyUse, VERIFIED_TOKENS, key_algorithm};
pub use token::{BearerToken, PeerToken};

/// The scope that lets a token send as any user.
pub const SEND_ANY: &str = "notifications:send:any";
/// The scope that lets a token read any user's notifications.
pub const READ_ANY: &str = "notifications:read:any";
/// Leeway for `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// The shortest accepted HMAC secret (RFC 7518: a key at least as long as the hash).
pub const MIN_SECRET_BYTES: usize = 32;
