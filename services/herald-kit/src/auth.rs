//! Who is calling. Both services take the same flags and apply the same rules:
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

use std::path::{Path, PathBuf};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::JsonError;
use crate::user_id::UserId;

/// The scope that lets a token send as any user.
pub const SEND_ANY: &str = "notifications:send:any";
/// The scope that lets a token read any user's notifications.
pub const READ_ANY: &str = "notifications:read:any";
/// Leeway for `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// The shortest accepted HMAC secret (RFC 7518: a key at least as long as the hash).
pub const MIN_SECRET_BYTES: usize = 32;

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

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No authentication is configured: anyone who reaches the port.
    Anyone,
    /// The static service token.
    Service,
    /// Another consumer of the same pipeline (the peer token).
    Peer,
    /// A user, by a JWT.
    User { id: UserId, send_any: bool, read_any: bool },
}

impl Identity {
    /// Whether this caller may read `user`'s notifications.
    pub fn may_read(&self, user: &UserId) -> bool {
        match self {
            Identity::Anyone | Identity::Service | Identity::Peer => true,
            Identity::User { id, read_any, .. } => *read_any || id == user,
        }
    }

    /// The sender a send is made as: `from` as given, or (for a user who gave none) the user;
    /// `Err` when this caller may not send as `from` (or gave none and is not a user).
    pub fn sender(&self, from: Option<UserId>) -> Result<UserId, SendAs> {
        match (self, from) {
            (Identity::User { id, .. }, None) => Ok(id.clone()),
            (Identity::User { id, send_any, .. }, Some(from)) if *send_any || from == *id => Ok(from),
            (Identity::User { .. }, Some(_)) => Err(SendAs::Forbidden),
            (Identity::Peer, _) => Err(SendAs::Forbidden),
            (_, Some(from)) => Ok(from),
            (_, None) => Err(SendAs::Missing),
        }
    }
}

/// Why a send cannot be made as the sender asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendAs {
    /// No `fromID`, and the caller is not a user it could default to.
    Missing,
    /// Not this caller's to send as.
    Forbidden,
}

/// Why a request is not authenticated: answered 401 with `WWW-Authenticate: Bearer`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send Authorization: Bearer <token>")]
    Missing,
    #[error("malformed Authorization header: expected Bearer <token>")]
    Malformed,
    #[error("invalid bearer token")]
    Unknown,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token's algorithm is not accepted")]
    WrongAlgorithm,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token's audience is not accepted")]
    WrongAudience,
    #[error("the token has no {0} claim")]
    MissingClaim(String),
    #[error("the token's sub is not a user id (a positive integer)")]
    BadSubject,
    #[error("the token is not a well-formed JWT")]
    NotAJwt,
    #[error("this route needs the peer token")]
    PeerOnly,
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let mut response = JsonError::new(StatusCode::UNAUTHORIZED, self.to_string()).into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }
}

/// Why authentication cannot be set up (the service does not start).
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("reading {what} {path}: {source}")]
    Read { what: &'static str, path: String, source: std::io::Error },
    #[error("{what} {path} is empty")]
    Empty { what: &'static str, path: String },
    #[error("JWT secret {path} has {len} bytes; at least {MIN_SECRET_BYTES} are required")]
    ShortSecret { path: String, len: usize },
    #[error("JWT key {path}: {why}")]
    Key { path: String, why: String },
}

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
    pub fn load(path: &Path, what: &'static str) -> Result<Self, AuthSetupError> {
        let shown = path.display().to_string();
        let raw = std::fs::read_to_string(path).map_err(|source| AuthSetupError::Read {
            what,
            path: shown.clone(),
            source,
        })?;
        Self::new(&raw).ok_or(AuthSetupError::Empty { what, path: shown })
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
    pub fn load(path: &Path) -> Result<Self, AuthSetupError> {
        let shown = path.display().to_string();
        let raw = std::fs::read_to_string(path).map_err(|source| AuthSetupError::Read {
            what: "peer token file",
            path: shown.clone(),
            source,
        })?;
        let token = raw.trim();
        if token.is_empty() {
            return Err(AuthSetupError::Empty { what: "peer token file", path: shown });
        }
        Ok(Self(token.to_string()))
    }

    /// The `Authorization` value that carries it.
    pub fn header(&self) -> HeaderValue {
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", self.0)).unwrap_or(HeaderValue::from_static("Bearer"));
        value.set_sensitive(true);
        value
    }
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: Option<serde_json::Value>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
}

struct Jwt {
    key: DecodingKey,
    validation: Validation,
    verified: VerifiedTokens,
}

/// Most tokens [`VerifiedTokens`] remembers (about 100 bytes each).
pub const VERIFIED_TOKENS: usize = 10_000;

/// Tokens that passed every check, by the SHA-256 of the whole token, with the identity they
/// carry and their validity window: a client that sends one token many times pays for one
/// signature check (an ES256 verification costs far more than the rest of a request). Only a
/// token that verified completely is remembered, its time window is checked again on every use,
/// and the table is bounded (when full, expired entries go first, then everything), so it cannot
/// be grown by anyone without tokens the issuer signed.
#[derive(Default)]
struct VerifiedTokens {
    entries: std::sync::RwLock<std::collections::HashMap<[u8; 32], VerifiedToken>>,
}

#[derive(Clone)]
struct VerifiedToken {
    identity: Identity,
    exp: u64,
    nbf: u64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

impl VerifiedTokens {
    /// The identity of `digest` if it verified before and is within its window `now` (with the
    /// leeway); `None` means: verify it in full.
    fn get(&self, digest: &[u8; 32], now: u64) -> Option<Identity> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let t = entries.get(digest)?;
        (now <= t.exp.saturating_add(LEEWAY_SECS) && now.saturating_add(LEEWAY_SECS) >= t.nbf)
            .then(|| t.identity.clone())
    }

    fn insert(&self, digest: [u8; 32], token: VerifiedToken, now: u64) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= VERIFIED_TOKENS {
            entries.retain(|_, t| now <= t.exp.saturating_add(LEEWAY_SECS));
            if entries.len() >= VERIFIED_TOKENS {
                entries.clear();
            }
        }
        entries.insert(digest, token);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Whether a PEM key is expected to be public (to verify) or private (to sign).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    Verify,
    Sign,
}

/// The JWT algorithm a PEM key is for, from its type: RS256 for RSA, ES256 for EC P-256, EdDSA
/// for Ed25519. Public keys as SPKI (`PUBLIC KEY`) or PKCS#1 (`RSA PUBLIC KEY`); private keys as
/// PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`).
pub fn key_algorithm(pem: &str, key_use: KeyUse) -> Result<Algorithm, String> {
    use base64::Engine as _;
    let (generic, rsa, expected) = match key_use {
        KeyUse::Verify => ("PUBLIC KEY", "RSA PUBLIC KEY", "a PEM public key"),
        KeyUse::Sign => ("PRIVATE KEY", "RSA PRIVATE KEY", "a PEM private key"),
    };
    if pem.contains(&format!("-----BEGIN {rsa}-----")) {
        return Ok(Algorithm::RS256);
    }
    if key_use == KeyUse::Sign && pem.contains("-----BEGIN EC PRIVATE KEY-----") {
        return Err("a SEC1 EC key: convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt`".into());
    }
    let begin = format!("-----BEGIN {generic}-----");
    let body: String =
        pem.lines().skip_while(|l| !l.starts_with(&begin)).skip(1).take_while(|l| !l.starts_with("-----END")).collect();
    if body.is_empty() {
        return Err(format!("not {expected} (expected {begin})"));
    }
    let der =
        base64::engine::general_purpose::STANDARD.decode(body.trim()).map_err(|e| format!("not valid base64: {e}"))?;
    let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    const RSA: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    const EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    if has(RSA) {
        Ok(Algorithm::RS256)
    } else if has(EC) && has(P256) {
        Ok(Algorithm::ES256)
    } else if has(EC) {
        Err("an EC key on a curve other than P-256 (only ES256 is accepted)".into())
    } else if has(ED25519) {
        Ok(Algorithm::EdDSA)
    } else {
        Err("a key of a type other than RSA, EC P-256 or Ed25519".into())
    }
}

impl Jwt {
    fn validation(algorithms: Vec<Algorithm>, args: &AuthArgs) -> Validation {
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &args.jwt_issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &args.jwt_audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        validation
    }

    fn from_args(args: &AuthArgs) -> Result<Option<Self>, AuthSetupError> {
        if let Some(path) = &args.jwt_secret_file {
            let shown = path.display().to_string();
            let raw = std::fs::read(path).map_err(|source| AuthSetupError::Read {
                what: "JWT secret",
                path: shown.clone(),
                source,
            })?;
            let secret = raw.strip_suffix(b"\n").map(|s| s.strip_suffix(b"\r").unwrap_or(s)).unwrap_or(&raw);
            if secret.is_empty() {
                return Err(AuthSetupError::Empty { what: "JWT secret", path: shown });
            }
            if secret.len() < MIN_SECRET_BYTES {
                return Err(AuthSetupError::ShortSecret { path: shown, len: secret.len() });
            }
            let validation = Self::validation(vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512], args);
            let key = DecodingKey::from_secret(secret)
                .map_err(|e| AuthSetupError::Key { path: shown, why: e.to_string() })?;
            return Ok(Some(Self { key, validation, verified: VerifiedTokens::default() }));
        }
        if let Some(path) = &args.jwt_public_key_file {
            let shown = path.display().to_string();
            let pem = std::fs::read_to_string(path).map_err(|source| AuthSetupError::Read {
                what: "JWT public key",
                path: shown.clone(),
                source,
            })?;
            let key_error = |why: String| AuthSetupError::Key { path: shown.clone(), why };
            let algorithm = key_algorithm(&pem, KeyUse::Verify).map_err(key_error)?;
            let key = match algorithm {
                Algorithm::RS256 => DecodingKey::from_rsa_pem(pem.as_bytes()),
                Algorithm::ES256 => DecodingKey::from_ec_pem(pem.as_bytes()),
                _ => DecodingKey::from_ed_pem(pem.as_bytes()),
            }
            .map_err(|e| key_error(e.to_string()))?;
            return Ok(Some(Self {
                key,
                validation: Self::validation(vec![algorithm], args),
                verified: VerifiedTokens::default(),
            }));
        }
        Ok(None)
    }

    fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = unix_now();
        if let Some(identity) = self.verified.get(&digest, now) {
            return Ok(identity);
        }
        let (identity, claims) = self.verify_in_full(token)?;
        // `exp` is required (checked above); a token without a usable one is not remembered.
        if let Some(exp) = claims.exp.filter(|e| e.is_finite() && *e >= 0.0) {
            let nbf = claims.nbf.filter(|n| n.is_finite() && *n >= 0.0).unwrap_or(0.0);
            let entry = VerifiedToken { identity: identity.clone(), exp: exp as u64, nbf: nbf.ceil() as u64 };
            self.verified.insert(digest, entry, now);
        }
        Ok(identity)
    }

    fn verify_in_full(&self, token: &str) -> Result<(Identity, Claims), AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::WrongAlgorithm,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
            _ => AuthError::NotAJwt,
        })?;
        let id = match &data.claims.sub {
            Some(serde_json::Value::String(s)) => UserId::parse(s),
            _ => None,
        }
        .ok_or(AuthError::BadSubject)?;
        let scopes = data.claims.scope.clone().unwrap_or_default();
        let has = |scope: &str| scopes.split_ascii_whitespace().any(|s| s == scope);
        Ok((Identity::User { id, send_any: has(SEND_ANY), read_any: has(READ_ANY) }, data.claims))
    }
}

/// Decides who a request comes from.
pub struct Authenticator {
    service: Option<BearerToken>,
    peer: Option<BearerToken>,
    jwt: Option<Jwt>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("service_token", &self.service.is_some())
            .field("peer_token", &self.peer.is_some())
            .field("jwt", &self.jwt.as_ref().map(|j| &j.validation.algorithms))
            .finish()
    }
}

impl Authenticator {
    /// From the flags, and the peer token (consumers).
    pub fn from_args(args: &AuthArgs, peer: Option<&PeerToken>) -> Result<Self, AuthSetupError> {
        Ok(Self {
            service: args.auth_token_file.as_deref().map(|p| BearerToken::load(p, "auth token file")).transpose()?,
            peer: peer.and_then(|p| BearerToken::new(&p.0)),
            jwt: Jwt::from_args(args)?,
        })
    }

    /// Nobody needs to prove anything.
    pub fn open() -> Self {
        Self { service: None, peer: None, jwt: None }
    }

    /// Whether callers of the API must present a token.
    pub fn required(&self) -> bool {
        self.service.is_some() || self.jwt.is_some()
    }

    /// Whether the peer token is configured.
    pub fn has_peer_token(&self) -> bool {
        self.peer.is_some()
    }

    /// A short description for the start-up log (never the secrets).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.service.is_some() {
            parts.push("service token".to_string());
        }
        if let Some(jwt) = &self.jwt {
            parts.push(format!("JWT {:?}", jwt.validation.algorithms));
        }
        if self.peer.is_some() {
            parts.push("peer token".to_string());
        }
        if parts.is_empty() { "none".into() } else { parts.join(", ") }
    }

    /// Who sent `headers` (their `Authorization`).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return if self.required() { Err(AuthError::Missing) } else { Ok(Identity::Anyone) };
        };
        let token = value
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .or_else(|| value.as_bytes().strip_prefix(b"bearer "))
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Malformed)?;
        if self.peer.as_ref().is_some_and(|p| p.matches(token)) {
            return Ok(Identity::Peer);
        }
        if self.service.as_ref().is_some_and(|s| s.matches(token)) {
            return Ok(Identity::Service);
        }
        if let Some(jwt) = &self.jwt {
            let token = std::str::from_utf8(token).map_err(|_| AuthError::NotAJwt)?;
            if token.split('.').count() == 3 {
                return jwt.verify(token);
            }
            return Err(AuthError::NotAJwt);
        }
        if self.required() { Err(AuthError::Unknown) } else { Ok(Identity::Anyone) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-herald";

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    fn headers(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        h
    }

    fn files(secret: &[u8], token: &str) -> (tempfile::TempDir, AuthArgs) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), secret).unwrap();
        std::fs::write(dir.path().join("token"), format!("{token}\n")).unwrap();
        let args = AuthArgs {
            auth_token_file: Some(dir.path().join("token")),
            jwt_secret_file: Some(dir.path().join("secret")),
            jwt_issuer: Some("https://issuer.example".into()),
            jwt_audience: Some("herald".into()),
            ..AuthArgs::default()
        };
        (dir, args)
    }

    fn hs256(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET).unwrap())
            .unwrap()
    }

    fn claims(sub: &str) -> serde_json::Value {
        serde_json::json!({"sub": sub, "exp": now() + 60, "iss": "https://issuer.example", "aud": "herald"})
    }

    #[test]
    fn users_services_and_every_way_a_token_is_wrong() {
        let (_dir, args) = files(SECRET, "s3rvice-t0ken");
        let auth = Authenticator::from_args(&args, None).unwrap();
        assert!(auth.required());
        assert_eq!(auth.authenticate(&HeaderMap::new()), Err(AuthError::Missing));
        assert_eq!(auth.authenticate(&headers("s3rvice-t0ken")), Ok(Identity::Service));
        assert_eq!(
            auth.authenticate(&headers(&hs256(claims("7")))),
            Ok(Identity::User { id: UserId::from(7), send_any: false, read_any: false })
        );
        let mut scoped = claims("7");
        scoped["scope"] = format!("openid {SEND_ANY} {READ_ANY}").into();
        assert_eq!(
            auth.authenticate(&headers(&hs256(scoped))),
            Ok(Identity::User { id: UserId::from(7), send_any: true, read_any: true })
        );
        let mut expired = claims("7");
        expired["exp"] = (now() - 120).into();
        assert_eq!(auth.authenticate(&headers(&hs256(expired))), Err(AuthError::Expired));
        let mut within_leeway = claims("7");
        within_leeway["exp"] = (now() - 10).into();
        assert!(auth.authenticate(&headers(&hs256(within_leeway))).is_ok(), "30 s leeway");
        let mut early = claims("7");
        early["nbf"] = (now() + 600).into();
        assert_eq!(auth.authenticate(&headers(&hs256(early))), Err(AuthError::NotYetValid));
        let mut no_exp = claims("7");
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(auth.authenticate(&headers(&hs256(no_exp))), Err(AuthError::MissingClaim("exp".into())));
        let mut issuer = claims("7");
        issuer["iss"] = "https://evil.example".into();
        assert_eq!(auth.authenticate(&headers(&hs256(issuer))), Err(AuthError::WrongIssuer));
        let mut audience = claims("7");
        audience["aud"] = "other".into();
        assert_eq!(auth.authenticate(&headers(&hs256(audience))), Err(AuthError::WrongAudience));
        for sub in ["0", "-1", "alice", ""] {
            assert_eq!(auth.authenticate(&headers(&hs256(claims(sub)))), Err(AuthError::BadSubject), "{sub}");
        }
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims("7"),
            &EncodingKey::from_secret(b"another secret of thirty-two bytes!!").unwrap(),
        )
        .unwrap();
        assert_eq!(auth.authenticate(&headers(&forged)), Err(AuthError::BadSignature));
        // alg: none, unsigned.
        use base64::Engine as _;
        let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let none = format!("{}.{}.", b64(serde_json::json!({"alg": "none", "typ": "JWT"})), b64(claims("7")));
        assert!(auth.authenticate(&headers(&none)).is_err(), "alg none accepted");
        assert_eq!(auth.authenticate(&headers("not-a-jwt")), Err(AuthError::NotAJwt));
        let mut malformed = HeaderMap::new();
        malformed.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic dXNlcjpwYXNz"));
        assert_eq!(auth.authenticate(&malformed), Err(AuthError::Malformed));
    }

    #[test]
    fn what_each_identity_may_do() {
        let user = Identity::User { id: UserId::from(7), send_any: false, read_any: false };
        assert!(user.may_read(&UserId::from(7)) && !user.may_read(&UserId::from(8)));
        assert_eq!(user.sender(None), Ok(UserId::from(7)));
        assert_eq!(user.sender(Some(UserId::from(7))), Ok(UserId::from(7)));
        assert_eq!(user.sender(Some(UserId::from(8))), Err(SendAs::Forbidden));
        let any = Identity::User { id: UserId::from(7), send_any: true, read_any: true };
        assert!(any.may_read(&UserId::from(8)));
        assert_eq!(any.sender(Some(UserId::from(8))), Ok(UserId::from(8)));
        assert_eq!(Identity::Service.sender(Some(UserId::from(8))), Ok(UserId::from(8)));
        assert_eq!(Identity::Service.sender(None), Err(SendAs::Missing));
        assert_eq!(Identity::Peer.sender(Some(UserId::from(8))), Err(SendAs::Forbidden), "peers read, never send");
        assert!(Identity::Anyone.may_read(&UserId::from(1)) && Identity::Peer.may_read(&UserId::from(1)));
    }

    #[test]
    fn set_up_errors_name_the_file_and_never_the_secret() {
        let (dir, mut args) = files(b"short", "t");
        let err = Authenticator::from_args(&args, None).unwrap_err().to_string();
        assert!(err.contains("at least 32") && !err.contains("short"), "{err}");
        args.jwt_secret_file = None;
        args.jwt_public_key_file = Some(dir.path().join("secret"));
        let err = Authenticator::from_args(&args, None).unwrap_err().to_string();
        assert!(err.contains("not a PEM public key"), "{err}");
        let open = Authenticator::from_args(&AuthArgs::default(), None).unwrap();
        assert!(!open.required());
        assert_eq!(open.authenticate(&HeaderMap::new()), Ok(Identity::Anyone));
        assert!(!format!("{open:?}").contains("s3"));
    }

    #[test]
    fn the_public_key_decides_the_algorithm() {
        // An EC P-256 key (SPKI, PEM).
        let p256 = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWLtmq+oc3G8vCxoEOP3a2kBTPQSN\nnJYz2VjxmjlDYXB6PhTJGvJSyJtMd39JaM0Ya2s/2E0LVg5Q0e9nUgZ7gA==\n-----END PUBLIC KEY-----\n";
        assert_eq!(key_algorithm(p256, KeyUse::Verify), Ok(Algorithm::ES256));
        assert!(key_algorithm(p256, KeyUse::Sign).is_err(), "a public key cannot sign");
        let ed25519 = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
        assert_eq!(key_algorithm(ed25519, KeyUse::Verify), Ok(Algorithm::EdDSA));
        assert_eq!(key_algorithm("-----BEGIN RSA PUBLIC KEY-----\n...\n", KeyUse::Verify), Ok(Algorithm::RS256));
        assert_eq!(key_algorithm("-----BEGIN RSA PRIVATE KEY-----\n...\n", KeyUse::Sign), Ok(Algorithm::RS256));
        assert!(key_algorithm("garbage", KeyUse::Verify).is_err());
        let sec1 = key_algorithm("-----BEGIN EC PRIVATE KEY-----\nAA==\n", KeyUse::Sign).unwrap_err();
        assert!(sec1.contains("pkcs8"), "{sec1}");
    }

    #[test]
    fn a_remembered_token_still_expires_and_the_table_stays_bounded() {
        let cache = VerifiedTokens::default();
        let user = Identity::User { id: UserId::from(7), send_any: false, read_any: false };
        let now = 1_000_000;
        cache.insert([1; 32], VerifiedToken { identity: user.clone(), exp: now + 60, nbf: now - 5 }, now);
        assert_eq!(cache.get(&[1; 32], now), Some(user.clone()));
        assert_eq!(cache.get(&[2; 32], now), None, "another token is verified in full");
        assert_eq!(cache.get(&[1; 32], now + 60 + LEEWAY_SECS), Some(user.clone()), "within the leeway");
        assert_eq!(cache.get(&[1; 32], now + 61 + LEEWAY_SECS), None, "expired");
        cache.insert([3; 32], VerifiedToken { identity: user.clone(), exp: now + 600, nbf: now + 100 }, now);
        assert_eq!(cache.get(&[3; 32], now), None, "not yet valid");
        assert_eq!(cache.get(&[3; 32], now + 100 - LEEWAY_SECS), Some(user.clone()));
        // Full: the expired go first, then everything.
        for i in 0..VERIFIED_TOKENS as u32 {
            let mut digest = [0u8; 32];
            digest[..4].copy_from_slice(&i.to_be_bytes());
            digest[31] = 9;
            let exp = if i % 2 == 0 { now - 1000 } else { now + 600 };
            cache.insert(digest, VerifiedToken { identity: user.clone(), exp, nbf: 0 }, now);
        }
        assert!(cache.len() <= VERIFIED_TOKENS, "{}", cache.len());
        cache.insert([4; 32], VerifiedToken { identity: user, exp: now + 600, nbf: 0 }, now);
        assert!(cache.len() <= VERIFIED_TOKENS);
    }

    #[test]
    fn a_token_is_checked_in_full_once_and_a_tampered_copy_is_not_taken_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, SECRET).unwrap();
        let args = AuthArgs { jwt_secret_file: Some(path), ..AuthArgs::default() };
        let auth = Authenticator::from_args(&args, None).unwrap();
        let claims = serde_json::json!({"sub": "7", "exp": now() + 600});
        let token =
            jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET).unwrap()).unwrap();
        let user = Identity::User { id: UserId::from(7), send_any: false, read_any: false };
        assert_eq!(auth.authenticate(&headers(&token)), Ok(user.clone()));
        assert_eq!(auth.jwt.as_ref().unwrap().verified.len(), 1);
        assert_eq!(auth.authenticate(&headers(&token)), Ok(user));
        // The same claims under a changed signature: a different token, checked and refused.
        let (head, signature) = token.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let tampered = format!("{head}.{flipped}{}", &signature[1..]);
        assert_eq!(auth.authenticate(&headers(&tampered)), Err(AuthError::BadSignature));
        assert_eq!(auth.jwt.as_ref().unwrap().verified.len(), 1, "a refused token is not remembered");
    }
}
