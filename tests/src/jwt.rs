//! Tokens for the access-control tests: HS256 with a shared secret and ES256 with a key pair made
//! here (P-256, by `ring`), in the forms the services read (a secret file, a PEM public key).

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

/// Claims for user `sub` with `scope`, valid for ten minutes, for `audience`.
pub fn claims(sub: u64, scope: &str, audience: &str) -> serde_json::Value {
    serde_json::json!({"sub": sub.to_string(), "scope": scope, "exp": now() + 600, "iss": "https://id.example", "aud": audience})
}

/// Signs tokens one way.
pub enum Signer {
    Hs256(Vec<u8>),
    Es256 { pkcs8: Vec<u8>, public_pem: String },
}

impl Signer {
    /// An HS256 signer with a fresh 48-byte secret.
    pub fn hs256() -> Self {
        let secret: Vec<u8> = uuid::Uuid::new_v4()
            .as_bytes()
            .iter()
            .chain(uuid::Uuid::new_v4().as_bytes())
            .chain(b"-herald-secret")
            .copied()
            .collect();
        Signer::Hs256(secret)
    }

    /// An ES256 signer with a fresh P-256 key pair.
    pub fn es256() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("P-256 key").as_ref().to_vec();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).expect("P-256 key pair");
        // SubjectPublicKeyInfo for id-ecPublicKey on prime256v1, then the uncompressed point.
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
            0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        let body = base64::engine::general_purpose::STANDARD.encode(&spki);
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
        let public_pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"));
        Signer::Es256 { pkcs8, public_pem }
    }

    /// What the services are given to verify: (the env var, the file's content).
    pub fn verifier(&self) -> (&'static str, Vec<u8>) {
        match self {
            Signer::Hs256(secret) => ("HERALD_JWT_SECRET_FILE", secret.clone()),
            Signer::Es256 { public_pem, .. } => ("HERALD_JWT_PUBLIC_KEY_FILE", public_pem.clone().into_bytes()),
        }
    }

    /// A token carrying `claims`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        match self {
            Signer::Hs256(secret) => jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                claims,
                &EncodingKey::from_secret(secret).expect("HS256 key"),
            ),
            Signer::Es256 { pkcs8, .. } => {
                jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &EncodingKey::from_ec_der(pkcs8))
            }
        }
        .expect("signing a token")
    }
}
