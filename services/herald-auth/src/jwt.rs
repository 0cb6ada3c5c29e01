//! JWT bearer tokens: the key and algorithm from the key file, the checks, and the bounded
//! memory of tokens already verified.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};

use crate::args::AuthArgs;
use crate::error::AuthSetupError;
use crate::identity::{AuthError, Identity, MAX_NAME_CLAIM_BYTES};
use crate::secret_file::{self, Trim};
use crate::{LEEWAY_SECS, MIN_SECRET_BYTES, READ_ANY, SEND_ANY};
use herald_model::UserId;

#[derive(serde::Deserialize)]
struct Claims {
    sub: Option<serde_json::Value>,
    #[serde(default)]
    scope: Option<String>,
    /// The user's display name: any JSON value, so that an unusable one is ignored rather than
    /// failing the token.
    #[serde(default)]
    name: Option<serde_json::Value>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
}

pub(crate) struct Jwt {
    key: DecodingKey,
    pub(crate) validation: Validation,
    pub(crate) verified: VerifiedTokens,
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
pub(crate) struct VerifiedTokens {
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
    pub(crate) fn len(&self) -> usize {
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

    pub(crate) fn from_args(args: &AuthArgs) -> Result<Option<Self>, AuthSetupError> {
        if let Some(path) = &args.jwt_secret_file {
            let shown = path.display().to_string();
            let secret = &secret_file::read(path, "JWT secret", Trim::OneLineBreak)?;
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
            let pem = secret_file::read_text(path, "JWT public key", Trim::Nothing)?;
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

    pub(crate) fn verify(&self, token: &str) -> Result<Identity, AuthError> {
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
        let name = match &data.claims.name {
            Some(serde_json::Value::String(n)) if !n.trim().is_empty() && n.len() <= MAX_NAME_CLAIM_BYTES => {
                Some(n.as_str().into())
            }
            _ => None,
        };
        Ok((Identity::User { id, send_any: has(SEND_ANY), read_any: has(READ_ANY), name }, data.claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let user = Identity::User { id: UserId::from(7), send_any: false, read_any: false, name: None };
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
}
