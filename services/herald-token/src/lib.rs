//! `herald-token mint`: a JWT that Herald's services accept, signed with the key they verify
//! with — an HMAC secret file (the one given to `--jwt-secret-file`) or the PEM private key whose
//! public half is given to `--jwt-public-key-file`. The algorithm follows the key, as it does in
//! the services. The key is read from a file and never printed.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand, ValueEnum};
use herald_auth::secret_file::{self, SecretFileError, Trim};
use herald_auth::{KeyUse, MIN_SECRET_BYTES, READ_ANY, SEND_ANY, key_algorithm};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

#[derive(Debug, Parser)]
#[command(name = "herald-token", version, about = "Mints bearer tokens for Herald's producer and consumers")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prints a signed JWT for one user.
    Mint(MintArgs),
}

/// HMAC algorithms (a PEM key decides its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Hmac {
    #[default]
    Hs256,
    Hs384,
    Hs512,
}

/// The scopes a token may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scope {
    /// `notifications:send:any`: send as any user.
    SendAny,
    /// `notifications:read:any`: read any user's notifications.
    ReadAny,
}

#[derive(Debug, Clone, clap::Args)]
pub struct MintArgs {
    /// The signing key: a shared secret of at least 32 bytes (HS256/384/512), or a PEM private key
    /// (PKCS#8 or PKCS#1: RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA).
    #[arg(long, env = "HERALD_TOKEN_KEY_FILE", value_name = "PATH")]
    pub key_file: PathBuf,
    /// The user the token speaks for (`sub`).
    #[arg(long, env = "HERALD_TOKEN_SUB", value_name = "USER_ID")]
    pub sub: herald_model::UserId,
    /// The user's display name (`name`): shown as the sender of what the token sends as itself
    /// when the producer has no user directory; at most 256 bytes.
    #[arg(long, env = "HERALD_TOKEN_NAME", value_parser = parse_name)]
    pub name: Option<String>,
    /// Extra rights (repeatable): send-any, read-any.
    #[arg(long, env = "HERALD_TOKEN_SCOPE", value_enum, value_delimiter = ',')]
    pub scope: Vec<Scope>,
    /// How long the token is valid (`exp` = now + ttl).
    #[arg(long, env = "HERALD_TOKEN_TTL", default_value = "1h", value_parser = herald_model::duration::parse_duration)]
    pub ttl: Duration,
    /// `iss`, when the services check one (`--jwt-issuer`).
    #[arg(long, env = "HERALD_TOKEN_ISSUER")]
    pub issuer: Option<String>,
    /// `aud`, when the services check one (`--jwt-audience`).
    #[arg(long, env = "HERALD_TOKEN_AUDIENCE")]
    pub audience: Option<String>,
    /// The HMAC algorithm for a secret key file.
    #[arg(long, env = "HERALD_TOKEN_HMAC", value_enum, default_value_t = Hmac::Hs256)]
    pub hmac: Hmac,
}

/// A `name` claim the services will use: not blank, at most 256 bytes.
fn parse_name(raw: &str) -> Result<String, String> {
    if raw.trim().is_empty() || raw.len() > herald_auth::MAX_NAME_CLAIM_BYTES {
        return Err(format!("a name of 1 to {} bytes", herald_auth::MAX_NAME_CLAIM_BYTES));
    }
    Ok(raw.to_string())
}

/// Why no token was minted, by step.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("reading the key file failed: {0}")]
    Read(#[from] SecretFileError),
    #[error("the key file {path}: {why}")]
    Key { path: String, why: String },
    #[error("signing the token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// The signing key and its algorithm, from the key file.
fn signing_key(args: &MintArgs) -> Result<(Algorithm, EncodingKey), MintError> {
    let path = args.key_file.display().to_string();
    // Read as the services read a JWT secret: one trailing line break is not part of it (a PEM
    // key's parser does not mind the missing line break).
    let raw = secret_file::read(&args.key_file, "key file", Trim::OneLineBreak)?;
    let key_error = |why: String| MintError::Key { path: path.clone(), why };
    let text = std::str::from_utf8(&raw).ok().filter(|t| t.contains("-----BEGIN "));
    let Some(pem) = text else {
        let secret = raw.as_slice();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(key_error(format!(
                "a secret of {} bytes; at least {MIN_SECRET_BYTES} are needed",
                secret.len()
            )));
        }
        let algorithm = match args.hmac {
            Hmac::Hs256 => Algorithm::HS256,
            Hmac::Hs384 => Algorithm::HS384,
            Hmac::Hs512 => Algorithm::HS512,
        };
        let key = EncodingKey::from_secret(secret).map_err(|e| key_error(format!("not a usable HMAC secret: {e}")))?;
        return Ok((algorithm, key));
    };
    let algorithm = key_algorithm(pem, KeyUse::Sign).map_err(key_error)?;
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
        _ => EncodingKey::from_ed_pem(pem.as_bytes()),
    }
    .map_err(|e| key_error(format!("not a usable {algorithm:?} private key: {e}")))?;
    Ok((algorithm, key))
}

/// The claims of a token minted at `now` (seconds since the epoch).
pub fn claims(args: &MintArgs, now: u64) -> serde_json::Value {
    let mut claims = serde_json::json!({
        "sub": args.sub.to_string(),
        "iat": now,
        "exp": now + args.ttl.as_secs().max(1),
    });
    let scopes: Vec<&str> = args
        .scope
        .iter()
        .map(|s| match s {
            Scope::SendAny => SEND_ANY,
            Scope::ReadAny => READ_ANY,
        })
        .collect();
    if !scopes.is_empty() {
        claims["scope"] = scopes.join(" ").into();
    }
    if let Some(name) = &args.name {
        claims["name"] = name.clone().into();
    }
    if let Some(issuer) = &args.issuer {
        claims["iss"] = issuer.clone().into();
    }
    if let Some(audience) = &args.audience {
        claims["aud"] = audience.clone().into();
    }
    claims
}

/// A signed token for `args`.
pub fn mint(args: &MintArgs) -> Result<String, MintError> {
    let (algorithm, key) = signing_key(args)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    jsonwebtoken::encode(&Header::new(algorithm), &claims(args, now), &key).map_err(MintError::Sign)
}

/// Runs the command: what to print.
pub fn run(cli: &Cli) -> Result<String, MintError> {
    match &cli.command {
        Command::Mint(args) => mint(args),
    }
}
