//! The client side of SASL SCRAM (RFC 5802, RFC 7677) for SCRAM-SHA-256 and SCRAM-SHA-512, as
//! Kafka uses it: the messages are exchanged by the caller (SaslAuthenticate); the primitives
//! (PBKDF2, HMAC, SHA-2, the random nonce) come from `ring`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac, pbkdf2};
use subtle::ConstantTimeEq;

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    /// The SASL mechanism name.
    pub fn mechanism(self) -> &'static str {
        match self {
            Hash::Sha256 => "SCRAM-SHA-256",
            Hash::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Hash::Sha256 => hmac::HMAC_SHA256,
            Hash::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Hash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Hash::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha512 => &digest::SHA512,
        }
    }

    fn len(self) -> usize {
        self.digest().output_len()
    }
}

/// Why the exchange failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("the server's SCRAM message is malformed: {0}")]
    Malformed(&'static str),
    #[error("the server's nonce does not extend ours")]
    Nonce,
    #[error("the server refused the credentials: {0}")]
    Refused(String),
    #[error("the server's signature is wrong: it does not know the password")]
    ServerSignature,
    #[error("no randomness for the nonce")]
    Random,
}

/// A SCRAM exchange in progress.
pub struct Scram {
    hash: Hash,
    password: String,
    client_first_bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

fn sasl_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

fn hmac_sign(hash: Hash, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hash.hmac(), key), data).as_ref().to_vec()
}

impl Scram {
    /// Starts an exchange with a fresh random nonce.
    pub fn new(hash: Hash, user: &str, password: &str) -> Result<Self, ScramError> {
        let mut raw = [0u8; 24];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw).map_err(|_| ScramError::Random)?;
        Ok(Self::with_nonce(hash, user, password, &B64.encode(raw)))
    }

    fn with_nonce(hash: Hash, user: &str, password: &str, nonce: &str) -> Self {
        Self {
            hash,
            password: password.to_string(),
            client_first_bare: format!("n={},r={nonce}", sasl_name(user)),
            nonce: nonce.to_string(),
            server_signature: None,
        }
    }

    /// The client-first message.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The client-final message, from the server-first message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let server_first = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if let Some(e) = server_first.strip_prefix("e=") {
            return Err(ScramError::Refused(e.to_string()));
        }
        let field =
            |name: &str| server_first.split(',').find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')));
        let nonce = field("r").ok_or(ScramError::Malformed("no nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err(ScramError::Nonce);
        }
        let salt = B64
            .decode(field("s").ok_or(ScramError::Malformed("no salt"))?)
            .map_err(|_| ScramError::Malformed("salt"))?;
        let iterations: u32 = field("i")
            .and_then(|i| i.parse().ok())
            .filter(|i| *i > 0)
            .ok_or(ScramError::Malformed("iteration count"))?;
        let mut salted = vec![0u8; self.hash.len()];
        pbkdf2::derive(
            self.hash.pbkdf2(),
            std::num::NonZeroU32::new(iterations).ok_or(ScramError::Malformed("iteration count"))?,
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sign(self.hash, &salted, b"Client Key");
        let stored_key = digest::digest(self.hash.digest(), &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac_sign(self.hash, stored_key.as_ref(), auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        let server_key = hmac_sign(self.hash, &salted, b"Server Key");
        self.server_signature = Some(hmac_sign(self.hash, &server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: the server proves it knows the password too.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let server_final = std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if let Some(e) = server_final.strip_prefix("e=") {
            return Err(ScramError::Refused(e.to_string()));
        }
        let given = server_final
            .split(',')
            .find_map(|kv| kv.strip_prefix("v="))
            .and_then(|v| B64.decode(v).ok())
            .ok_or(ScramError::Malformed("no server signature"))?;
        let expected = self.server_signature.as_ref().ok_or(ScramError::Malformed("out of order"))?;
        if bool::from(given.ct_eq(expected)) { Ok(()) } else { Err(ScramError::ServerSignature) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677, section 3: user "user", password "pencil".
    #[test]
    fn the_rfc_7677_exchange() {
        let mut scram = Scram::with_nonce(Hash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(scram.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = scram.client_final(server_first).unwrap();
        assert_eq!(
            String::from_utf8(client_final).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(scram.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="), Ok(()));
        assert_eq!(scram.verify(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), Err(ScramError::ServerSignature));
    }

    #[test]
    fn a_server_that_does_not_extend_our_nonce_or_refuses_is_an_error() {
        let mut scram = Scram::with_nonce(Hash::Sha512, "u", "p", "abc");
        assert_eq!(scram.client_final(b"r=xyz123,s=AAAA,i=4096"), Err(ScramError::Nonce));
        assert_eq!(scram.client_final(b"e=invalid-proof"), Err(ScramError::Refused("invalid-proof".into())));
        assert!(matches!(scram.client_final(b"r=abcdef,s=AAAA"), Err(ScramError::Malformed(_))));
        assert_eq!(sasl_name("a=b,c"), "a=3Db=2Cc");
        assert_ne!(
            Scram::new(Hash::Sha512, "u", "p").unwrap().nonce,
            Scram::new(Hash::Sha512, "u", "p").unwrap().nonce
        );
    }
}
