//! One connection to one broker: TCP, optionally TLS (rustls) and SASL (SCRAM or PLAIN), the
//! API versions the broker speaks, and framed request/response exchanges.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use herald_api::KafkaSpec;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::scram::{Hash, Scram};
use crate::kafka::error::ProbeError;

/// SASL credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum Sasl {
    Plain { user: String, password: String },
    Scram { hash: Hash, user: String, password: String },
}

/// How to reach a cluster, from a pipeline's servers and properties (the librdkafka names).
#[derive(Clone)]
pub struct Settings {
    pub bootstrap: Vec<String>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<Sasl>,
    pub timeout: Duration,
}

fn tls_config(
    properties: &std::collections::BTreeMap<String, String>,
) -> Result<Arc<rustls::ClientConfig>, ProbeError> {
    let bad = |why: String| ProbeError::Unsupported(why);
    let ca = properties
        .get("ssl.ca.pem")
        .ok_or_else(|| bad("TLS without ssl.ca.pem (the operator trusts only the CA it is given)".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        let cert = cert.map_err(|e| bad(format!("ssl.ca.pem: {e}")))?;
        roots.add(cert).map_err(|e| bad(format!("ssl.ca.pem: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("ssl.ca.pem holds no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let config = match (properties.get("ssl.certificate.pem"), properties.get("ssl.key.pem")) {
        (Some(cert), Some(key)) => {
            let chain: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(cert.as_bytes()).collect();
            let chain = chain.map_err(|e| bad(format!("ssl.certificate.pem: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| bad(format!("ssl.key.pem: {e}")))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| bad(format!("client certificate: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(bad("a client certificate without its key, or a key without its certificate".into())),
    };
    Ok(Arc::new(config))
}

impl Settings {
    /// The settings for `kafka`'s servers and properties (credentials included, in memory).
    pub fn from_kafka(kafka: &KafkaSpec, timeout: Duration) -> Result<Self, ProbeError> {
        let p = &kafka.properties;
        let protocol = p.get("security.protocol").map_or("plaintext".to_string(), |v| v.to_ascii_lowercase());
        let (tls, sasl) = match protocol.as_str() {
            "plaintext" => (false, false),
            "ssl" => (true, false),
            "sasl_plaintext" => (false, true),
            "sasl_ssl" => (true, true),
            other => return Err(ProbeError::Unsupported(format!("security.protocol={other}"))),
        };
        let sasl = if sasl {
            let mechanism =
                p.get("sasl.mechanism").or_else(|| p.get("sasl.mechanisms")).map_or("GSSAPI", String::as_str);
            let user = p.get("sasl.username").cloned().unwrap_or_default();
            let password = p.get("sasl.password").cloned().unwrap_or_default();
            Some(match mechanism.to_ascii_uppercase().as_str() {
                "PLAIN" => Sasl::Plain { user, password },
                "SCRAM-SHA-256" => Sasl::Scram { hash: Hash::Sha256, user, password },
                "SCRAM-SHA-512" => Sasl::Scram { hash: Hash::Sha512, user, password },
                other => return Err(ProbeError::Unsupported(format!("sasl.mechanism={other}"))),
            })
        } else {
            None
        };
        Ok(Self {
            bootstrap: kafka
                .bootstrap_servers
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            tls: if tls { Some(tls_config(p)?) } else { None },
            sasl,
            timeout,
        })
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An open, authenticated connection.
pub struct Connection {
    pub addr: String,
    stream: Box<dyn Stream>,
    correlation: i32,
    versions: HashMap<i16, (i16, i16)>,
    timeout: Duration,
}

const CLIENT_ID: &str = "herald-operator";

impl Connection {
    /// Connects to `addr` (`host:port`), negotiates versions and authenticates.
    pub async fn open(addr: &str, settings: &Settings) -> Result<Self, ProbeError> {
        let connect_error = |why: String| ProbeError::Connect { addr: addr.to_string(), why };
        let tcp = tokio::time::timeout(settings.timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| ProbeError::Timeout { addr: addr.to_string(), timeout: settings.timeout })?
            .map_err(|e| connect_error(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match &settings.tls {
            None => Box::new(tcp),
            Some(config) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_matches(['[', ']']).to_string();
                let name = ServerName::try_from(host).map_err(|e| connect_error(format!("server name: {e}")))?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls = tokio::time::timeout(settings.timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| ProbeError::Timeout { addr: addr.to_string(), timeout: settings.timeout })?
                    .map_err(|e| connect_error(format!("TLS: {e}")))?;
                Box::new(tls)
            }
        };
        let mut conn = Self {
            addr: addr.to_string(),
            stream,
            correlation: 0,
            versions: HashMap::new(),
            timeout: settings.timeout,
        };
        let versions: ApiVersionsResponse = conn.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default()).await?;
        if versions.error_code != 0 {
            return Err(ProbeError::Broker(format!("{addr} answered ApiVersions with error {}", versions.error_code)));
        }
        conn.versions = versions.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        if let Some(sasl) = &settings.sasl {
            conn.authenticate(sasl).await?;
        }
        Ok(conn)
    }

    /// The highest version of `api` both sides speak, within `ours`.
    pub fn version(&self, api: ApiKey, ours: (i16, i16)) -> Result<i16, ProbeError> {
        let (min, max) =
            self.versions.get(&(api as i16)).copied().ok_or(ProbeError::Version { addr: self.addr.clone(), api })?;
        let version = max.min(ours.1);
        if version < min.max(ours.0) {
            return Err(ProbeError::Version { addr: self.addr.clone(), api });
        }
        Ok(version)
    }

    async fn authenticate(&mut self, sasl: &Sasl) -> Result<(), ProbeError> {
        let addr = self.addr.clone();
        let auth = |why: String| ProbeError::Auth { addr: addr.clone(), why };
        let mechanism = match sasl {
            Sasl::Plain { .. } => "PLAIN",
            Sasl::Scram { hash, .. } => hash.mechanism(),
        };
        let version = self.version(ApiKey::SaslHandshake, (1, 1))?;
        let handshake: SaslHandshakeResponse = self
            .call(
                ApiKey::SaslHandshake,
                version,
                &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism)),
            )
            .await?;
        if handshake.error_code != 0 {
            return Err(auth(format!(
                "the broker does not accept {mechanism} (it offers {:?})",
                handshake.mechanisms.iter().map(|m| m.to_string()).collect::<Vec<_>>()
            )));
        }
        match sasl {
            Sasl::Plain { user, password } => {
                let token = format!("\0{user}\0{password}");
                self.sasl_round(token.into_bytes()).await?;
            }
            Sasl::Scram { hash, user, password } => {
                let mut scram = Scram::new(*hash, user, password).map_err(|e| auth(e.to_string()))?;
                let server_first = self.sasl_round(scram.client_first()).await?;
                let client_final = scram.client_final(&server_first).map_err(|e| auth(e.to_string()))?;
                let server_final = self.sasl_round(client_final).await?;
                scram.verify(&server_final).map_err(|e| auth(e.to_string()))?;
            }
        }
        Ok(())
    }

    async fn sasl_round(&mut self, bytes: Vec<u8>) -> Result<Vec<u8>, ProbeError> {
        let version = self.version(ApiKey::SaslAuthenticate, (0, 1))?;
        let answer: SaslAuthenticateResponse = self
            .call(
                ApiKey::SaslAuthenticate,
                version,
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
            )
            .await?;
        if answer.error_code != 0 {
            return Err(ProbeError::Auth {
                addr: self.addr.clone(),
                why: answer
                    .error_message
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| format!("error {}", answer.error_code)),
            });
        }
        Ok(answer.auth_bytes.to_vec())
    }

    /// Sends `request` as `api` at `version` and reads its response, within the timeout.
    pub async fn call<Req, Resp>(&mut self, api: ApiKey, version: i16, request: &Req) -> Result<Resp, ProbeError>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        let timeout = self.timeout;
        let addr = self.addr.clone();
        tokio::time::timeout(timeout, self.exchange::<Req, Resp>(api, version, request))
            .await
            .map_err(|_| ProbeError::Timeout { addr, timeout })?
    }

    async fn exchange<Req, Resp>(&mut self, api: ApiKey, version: i16, request: &Req) -> Result<Resp, ProbeError>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        let io = |why: String| ProbeError::Io { addr: self.addr.clone(), why };
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut body = BytesMut::new();
        header.encode(&mut body, Req::header_version(version)).map_err(|e| io(format!("encoding: {e}")))?;
        request.encode(&mut body, version).map_err(|e| io(format!("encoding {api:?}: {e}")))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await.map_err(|e| io(e.to_string()))?;
        self.stream.flush().await.map_err(|e| io(e.to_string()))?;
        let size = self.stream.read_i32().await.map_err(|e| io(e.to_string()))?;
        if !(0..=64 * 1024 * 1024).contains(&size) {
            return Err(io(format!("a response of {size} bytes")));
        }
        let mut response = vec![0u8; size as usize];
        self.stream.read_exact(&mut response).await.map_err(|e| io(e.to_string()))?;
        let mut buf = Bytes::from(response);
        let header = ResponseHeader::decode(&mut buf, Resp::header_version(version))
            .map_err(|e| io(format!("decoding: {e}")))?;
        if header.correlation_id != self.correlation {
            return Err(io(format!(
                "answer to request {} while waiting for {}",
                header.correlation_id, self.correlation
            )));
        }
        let decoded = Resp::decode(&mut buf, version).map_err(|e| io(format!("decoding {api:?} v{version}: {e}")))?;
        let _ = buf.remaining();
        Ok(decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(properties: serde_json::Value) -> KafkaSpec {
        serde_json::from_value(serde_json::json!({"bootstrapServers": "a:9092, b:9093", "properties": properties}))
            .unwrap()
    }

    #[test]
    fn settings_from_librdkafka_properties() {
        let s = Settings::from_kafka(&kafka(serde_json::json!({})), Duration::from_secs(1)).unwrap();
        assert_eq!(s.bootstrap, ["a:9092", "b:9093"]);
        assert!(s.tls.is_none() && s.sasl.is_none());
        let s = Settings::from_kafka(
            &kafka(serde_json::json!({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "u", "sasl.password": "p"})),
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(matches!(s.sasl, Some(Sasl::Scram { hash: Hash::Sha512, .. })));
        for (props, what) in [
            (
                serde_json::json!({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "GSSAPI"}),
                "sasl.mechanism=GSSAPI",
            ),
            (serde_json::json!({"security.protocol": "SSL"}), "without ssl.ca.pem"),
            (serde_json::json!({"security.protocol": "SSL", "ssl.ca.pem": "not a pem"}), "no certificate"),
            (serde_json::json!({"security.protocol": "weird"}), "security.protocol=weird"),
        ] {
            let err = Settings::from_kafka(&kafka(props), Duration::from_secs(1)).err().expect("unsupported");
            assert!(err.to_string().contains(what), "{err}");
        }
    }
}
