//! `herald-token mint` (the README's way to get a test token) makes tokens the services accept:
//! the real binary signs, herald-kit's authenticator (what the producer and consumers run)
//! verifies — with an HMAC secret, an ES256 key and an Ed25519 key, scopes, issuer and audience.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use herald_auth::{AuthArgs, Authenticator, Identity};
use herald_tests::process::bin;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// (private key PEM, public key PEM) of a fresh P-256 pair.
fn p256() -> (String, String) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let mut spki = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    spki.extend_from_slice(pair.public_key().as_ref());
    (pem("PRIVATE KEY", pkcs8.as_ref()), pem("PUBLIC KEY", &spki))
}

/// (private key PEM, public key PEM) of a fresh Ed25519 pair.
fn ed25519() -> (String, String) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let mut spki = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    spki.extend_from_slice(pair.public_key().as_ref());
    (pem("PRIVATE KEY", pkcs8.as_ref()), pem("PUBLIC KEY", &spki))
}

/// Runs `herald-token mint` with `args`: (exit success, stdout, stderr).
fn mint(key_file: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("herald-token"))
        .arg("mint")
        .arg("--key-file")
        .arg(key_file)
        .args(args)
        .env_clear()
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap().trim().to_string(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn verify(auth: &AuthArgs, token: &str) -> Result<Identity, String> {
    let authenticator = Authenticator::from_args(auth, None).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    authenticator.authenticate(&headers).map_err(|e| e.to_string())
}

#[test]
fn minted_tokens_are_accepted_by_the_services_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, content: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    // An HMAC secret with the trailing newline `echo` leaves: both sides ignore it.
    let secret = write("secret", b"0123456789abcdef0123456789abcdef-herald\n");
    let (es_private, es_public) = p256();
    let (ed_private, ed_public) = ed25519();
    let cases = [
        ("HS256", secret.clone(), AuthArgs { jwt_secret_file: Some(secret.clone()), ..AuthArgs::default() }),
        (
            "ES256",
            write("es.key", es_private.as_bytes()),
            AuthArgs { jwt_public_key_file: Some(write("es.pub", es_public.as_bytes())), ..AuthArgs::default() },
        ),
        (
            "EdDSA",
            write("ed.key", ed_private.as_bytes()),
            AuthArgs { jwt_public_key_file: Some(write("ed.pub", ed_public.as_bytes())), ..AuthArgs::default() },
        ),
    ];
    for (algorithm, key, mut auth) in cases {
        let (ok, token, err) = mint(&key, &["--sub", "2"]);
        assert!(ok, "{algorithm}: {err}");
        let header: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], algorithm);
        assert_eq!(
            verify(&auth, &token),
            Ok(Identity::User { id: 2.into(), send_any: false, read_any: false, name: None })
        );

        auth.jwt_issuer = Some("https://id.example".into());
        auth.jwt_audience = Some("herald".into());
        let (ok, token, err) = mint(
            &key,
            &["--sub", "7", "--scope", "read-any,send-any", "--issuer", "https://id.example", "--audience", "herald"],
        );
        assert!(ok, "{algorithm}: {err}");
        assert_eq!(
            verify(&auth, &token),
            Ok(Identity::User { id: 7.into(), send_any: true, read_any: true, name: None })
        );
        // A string sub and a name claim.
        let (ok, token, err) = mint(
            &key,
            &[
                "--sub",
                "alice@example.com",
                "--name",
                "Alice",
                "--issuer",
                "https://id.example",
                "--audience",
                "herald",
            ],
        );
        assert!(ok, "{algorithm}: {err}");
        let alice = herald_model::UserId::parse("alice@example.com").unwrap();
        assert_eq!(
            verify(&auth, &token),
            Ok(Identity::User { id: alice, send_any: false, read_any: false, name: Some("Alice".into()) })
        );
        let (ok, _, err) = mint(&key, &["--sub", "02"]);
        assert!(!ok && err.contains("must be 1-128 characters"), "{algorithm}: {err}");
        let (_, wrong_audience, _) = mint(&key, &["--sub", "7", "--issuer", "https://id.example", "--audience", "x"]);
        assert!(verify(&auth, &wrong_audience).unwrap_err().contains("audience"), "{algorithm}");
        // The key never reaches the output.
        assert!(!token.contains("0123456789abcdef") && !token.contains("PRIVATE"));
    }
}

#[test]
fn bad_keys_are_refused_with_the_file_named_and_the_key_kept_out_of_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "s3cret").unwrap();
    let (ok, out, err) = mint(&short, &["--sub", "1"]);
    assert!(!ok && out.is_empty());
    assert!(err.contains(&short.display().to_string()) && err.contains("at least 32"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    let (_, public) = p256();
    let public_key = dir.path().join("public.pem");
    std::fs::write(&public_key, public).unwrap();
    let (ok, _, err) = mint(&public_key, &["--sub", "1"]);
    assert!(!ok && err.contains("not a PEM private key"), "{err}");
    let (ok, _, err) = mint(&dir.path().join("missing"), &["--sub", "1"]);
    assert!(!ok && err.contains("reading the key file"), "{err}");
}
