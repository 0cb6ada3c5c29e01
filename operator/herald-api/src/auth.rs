//! `spec.auth`: who may call the producer and the consumers (a service token, user JWTs).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::KeyRef;

/// Who may call the producer and the consumers. Every API request then needs
/// `Authorization: Bearer <token>`; `/healthz`, `/readyz` and `/metrics` (on its own port) stay
/// open.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("has(self.tokenSecretRef) || has(self.jwt)").message("spec.auth needs tokenSecretRef, jwt or both"))]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret key holding a static service token: it sends as any user and reads any user's
    /// notifications (for trusted backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<KeyRef>,
    /// User tokens: a JWT's `sub` is the user id; it reads only that user's notifications and
    /// sends only as that user, unless its `scope` holds `notifications:read:any` or
    /// `notifications:send:any`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,
}

/// How user JWTs are verified: `exp` is required, `nbf` honoured, with 30 s of leeway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("has(self.secretRef) != has(self.publicKeySecretRef)").message("spec.auth.jwt needs exactly one of secretRef (HS256/HS384/HS512) and publicKeySecretRef (RS256, ES256 or EdDSA)"))]
#[serde(rename_all = "camelCase")]
pub struct JwtSpec {
    /// Secret key holding the shared secret of HS256/HS384/HS512 tokens (at least 32 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<KeyRef>,
    /// Secret key holding the PEM public key of RS256, ES256 (P-256) or EdDSA (Ed25519) tokens;
    /// the algorithm follows the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_secret_ref: Option<KeyRef>,
    /// The `iss` every token must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub issuer: Option<String>,
    /// An `aud` every token must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub audience: Option<String>,
}
