//! Deciding who a request comes from, from its `Authorization` header.

use http::{HeaderMap, header};

use crate::args::AuthArgs;
use crate::error::AuthSetupError;
use crate::identity::{AuthError, Identity};
use crate::jwt::Jwt;
use crate::token::{BearerToken, PeerToken};

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
            peer: peer.and_then(|p| BearerToken::new(p.text())),
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
    use crate::identity::SendAs;
    use crate::{READ_ANY, SEND_ANY};
    use herald_model::UserId;
    use http::HeaderValue;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

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
    fn a_string_sub_is_a_user_and_a_short_name_claim_is_kept() {
        let (_dir, args) = files(SECRET, "s3rvice-t0ken");
        let auth = Authenticator::from_args(&args, None).unwrap();
        let alice = UserId::parse("alice@example.com").unwrap();
        let mut named = claims("alice@example.com");
        named["name"] = "Alice".into();
        let identity = auth.authenticate(&headers(&hs256(named))).unwrap();
        assert_eq!(
            identity,
            Identity::User { id: alice.clone(), send_any: false, read_any: false, name: Some("Alice".into()) }
        );
        assert_eq!(identity.name_of(&alice), Some("Alice"));
        assert_eq!(identity.name_of(&UserId::from(7)), None, "a token names its own user only");
        assert_eq!(Identity::Service.name_of(&alice), None);
        for ignored in [serde_json::json!("x".repeat(257)), serde_json::json!(7), serde_json::json!("  ")] {
            let mut odd = claims("alice@example.com");
            odd["name"] = ignored.clone();
            let identity = auth.authenticate(&headers(&hs256(odd))).unwrap();
            assert_eq!(identity.name_of(&alice), None, "{ignored}");
        }
        for bad in ["02", "0", "..", "a b", ""] {
            assert_eq!(auth.authenticate(&headers(&hs256(claims(bad)))), Err(AuthError::BadSubject), "{bad:?}");
        }
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
            Ok(Identity::User { id: UserId::from(7), send_any: false, read_any: false, name: None })
        );
        let mut scoped = claims("7");
        scoped["scope"] = format!("openid {SEND_ANY} {READ_ANY}").into();
        assert_eq!(
            auth.authenticate(&headers(&hs256(scoped))),
            Ok(Identity::User { id: UserId::from(7), send_any: true, read_any: true, name: None })
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
        for sub in ["0", "-1", "02", ".."] {
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
        let user = Identity::User { id: UserId::from(7), send_any: false, read_any: false, name: None };
        assert!(user.may_read(&UserId::from(7)) && !user.may_read(&UserId::from(8)));
        assert_eq!(user.sender(None), Ok(UserId::from(7)));
        assert_eq!(user.sender(Some(UserId::from(7))), Ok(UserId::from(7)));
        assert_eq!(user.sender(Some(UserId::from(8))), Err(SendAs::Forbidden));
        let any = Identity::User { id: UserId::from(7), send_any: true, read_any: true, name: None };
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
    fn a_token_is_checked_in_full_once_and_a_tampered_copy_is_not_taken_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, SECRET).unwrap();
        let args = AuthArgs { jwt_secret_file: Some(path), ..AuthArgs::default() };
        let auth = Authenticator::from_args(&args, None).unwrap();
        let claims = serde_json::json!({"sub": "7", "exp": now() + 600});
        let token =
            jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET).unwrap()).unwrap();
        let user = Identity::User { id: UserId::from(7), send_any: false, read_any: false, name: None };
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
