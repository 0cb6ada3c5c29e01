//! Kafka security of a pipeline's pods (pure): TLS with a CA, and per-role credentials in
//! Strimzi's KafkaUser Secret layout, turned into librdkafka properties, a password file and
//! read-only Secret volumes.

use herald_api::AuthenticationType;
use herald_api::labels::Component;
use k8s_openapi::api::core::v1::{EnvVar, KeyToPath, SecretVolumeSource, Volume, VolumeMount};

use super::validate::ValidPipeline;

const CA_DIR: &str = "/etc/herald/kafka-ca";
const USER_DIR: &str = "/etc/herald/kafka-user";

/// What one role's pods need to reach a secured Kafka.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Security {
    pub properties: Vec<(String, String)>,
    pub env: Vec<EnvVar>,
    pub volumes: Vec<Volume>,
    pub mounts: Vec<VolumeMount>,
}

/// The Secret and key holding the CA the brokers' certificates chain to.
fn ca_secret(pipeline: &ValidPipeline) -> Option<(String, String)> {
    let kafka = &pipeline.spec().kafka;
    let tls = kafka.tls.as_ref()?;
    match (&tls.ca_secret_ref, &kafka.cluster_ref) {
        (Some(r), _) => Some((r.name.clone(), r.key.clone())),
        (None, Some(cluster)) => Some((format!("{}-cluster-ca-cert", cluster.name), "ca.crt".to_string())),
        // Rejected by the CRD's CEL rule; treated as "no CA" if it slips through.
        (None, None) => None,
    }
}

/// A read-only Secret volume (files `0440`, group-readable through the pod's `fsGroup`) and its
/// mount at `dir`.
pub fn secret_volume(name: &str, secret: &str, items: Vec<KeyToPath>, dir: &str) -> (Volume, VolumeMount) {
    (
        Volume {
            name: name.to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.to_string()),
                items: Some(items),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        VolumeMount {
            name: name.to_string(),
            mount_path: dir.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    )
}

fn item(key: &str) -> KeyToPath {
    KeyToPath { key: key.to_string(), path: key.to_string(), mode: None }
}

/// The security of `role`'s pods; empty without `tls` and `authentication`.
pub fn security(pipeline: &ValidPipeline, role: Component) -> Security {
    let kafka = &pipeline.spec().kafka;
    let mut s = Security::default();
    let mut properties = Vec::new();
    let mut set = |k: &str, v: String| properties.push((k.to_string(), v));
    let tls = kafka.tls.is_some();
    let auth = kafka.authentication.as_ref().map(|a| a.kind);
    let protocol = match (tls, auth) {
        (false, None) => return Security::default(),
        (true, None | Some(AuthenticationType::Tls)) => "SSL",
        (true, Some(AuthenticationType::ScramSha512)) => "SASL_SSL",
        // A client certificate without TLS is rejected by the CRD's CEL rule.
        (false, Some(AuthenticationType::ScramSha512 | AuthenticationType::Tls)) => "SASL_PLAINTEXT",
    };
    set("security.protocol", protocol.to_string());
    if let Some((secret, key)) = ca_secret(pipeline) {
        set("ssl.ca.location", format!("{CA_DIR}/ca.crt"));
        let (v, m) =
            secret_volume("kafka-ca", &secret, vec![KeyToPath { key, path: "ca.crt".into(), mode: None }], CA_DIR);
        s.volumes.push(v);
        s.mounts.push(m);
    }
    if let (Some(kind), Some(user)) = (auth, pipeline.user(role)) {
        let items = match kind {
            AuthenticationType::ScramSha512 => {
                set("sasl.mechanism", "SCRAM-SHA-512".to_string());
                set("sasl.username", user.to_string());
                s.env.push(EnvVar {
                    name: "HERALD_KAFKA_SASL_PASSWORD_FILE".to_string(),
                    value: Some(format!("{USER_DIR}/password")),
                    ..EnvVar::default()
                });
                vec![item("password")]
            }
            AuthenticationType::Tls => {
                set("ssl.certificate.location", format!("{USER_DIR}/user.crt"));
                set("ssl.key.location", format!("{USER_DIR}/user.key"));
                vec![item("user.crt"), item("user.key")]
            }
        };
        let (v, m) = secret_volume("kafka-user", user, items, USER_DIR);
        s.volumes.push(v);
        s.mounts.push(m);
    }
    s.properties = properties;
    s
}

/// The Secrets the operator reads to reach Kafka as the consumers do (its lag probe and `Admin`
/// topic creation): the CA and the consumers' credentials. Which keys it needs is
/// [`operator_properties`]'s business.
pub fn operator_secrets(pipeline: &ValidPipeline) -> Vec<String> {
    let ca = ca_secret(pipeline).map(|(secret, _)| secret);
    let consumers = pipeline.user(Component::Consumer).map(str::to_string);
    ca.into_iter().chain(consumers).collect()
}

/// The operator's own client properties for `pipeline`, from the data of the Secrets
/// [`operator_secrets`] names (`None`: the Secret does not exist). Kept in memory: the CA, the
/// certificate and the key as PEM properties, the password as `sasl.password`. `Err` says what is
/// missing.
pub fn operator_properties(
    pipeline: &ValidPipeline,
    secrets: &std::collections::BTreeMap<String, Option<std::collections::BTreeMap<String, Vec<u8>>>>,
) -> Result<Vec<(String, String)>, String> {
    let read = |secret: &str, key: &str| -> Result<String, String> {
        let data = secrets
            .get(secret)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("Secret {secret} does not exist (yet)"))?;
        let bytes = data.get(key).ok_or_else(|| format!("Secret {secret} has no key {key}"))?;
        String::from_utf8(bytes.clone()).map_err(|_| format!("Secret {secret} key {key} is not text"))
    };
    let pods = security(pipeline, Component::Consumer);
    let mut properties: Vec<(String, String)> =
        pods.properties.into_iter().filter(|(k, _)| k == "security.protocol" || k.starts_with("sasl.")).collect();
    if let Some((secret, key)) = ca_secret(pipeline) {
        properties.push(("ssl.ca.pem".into(), read(&secret, &key)?));
    }
    if let (Some(auth), Some(user)) = (&pipeline.spec().kafka.authentication, pipeline.user(Component::Consumer)) {
        match auth.kind {
            AuthenticationType::ScramSha512 => properties.push(("sasl.password".into(), read(user, "password")?)),
            AuthenticationType::Tls => {
                properties.push(("ssl.certificate.pem".into(), read(user, "user.crt")?));
                properties.push(("ssl.key.pem".into(), read(user, "user.key")?));
            }
        }
    }
    Ok(properties)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pipeline(kafka: serde_json::Value) -> ValidPipeline {
        let p = serde_json::from_value(serde_json::json!({
            "apiVersion": "herald.dev/v1alpha1",
            "kind": "NotificationPipeline",
            "metadata": {"name": "social", "namespace": "apps", "uid": "u-1"},
            "spec": {"kafka": kafka},
        }))
        .unwrap();
        crate::build::validate::validate(&p, &Default::default()).unwrap()
    }

    type Secrets = BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>;

    fn secret(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Vec<u8>>> {
        Some(pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect())
    }

    #[test]
    fn the_operator_reaches_kafka_as_the_consumers_do_from_memory() {
        let p = pipeline(serde_json::json!({"bootstrapServers": "k:9093", "clusterRef": {"name": "events"},
            "tls": {}, "authentication": {"type": "scram-sha-512"}}));
        assert_eq!(operator_secrets(&p), ["events-cluster-ca-cert", "social-consumer"]);
        let mut secrets: Secrets = BTreeMap::new();
        secrets.insert("events-cluster-ca-cert".into(), secret(&[("ca.crt", "-----BEGIN CERTIFICATE-----")]));
        secrets.insert("social-consumer".into(), None);
        assert_eq!(operator_properties(&p, &secrets).unwrap_err(), "Secret social-consumer does not exist (yet)");
        secrets.insert("social-consumer".into(), secret(&[("sasl.jaas.config", "x")]));
        assert_eq!(operator_properties(&p, &secrets).unwrap_err(), "Secret social-consumer has no key password");
        secrets.insert("social-consumer".into(), secret(&[("password", "s3cret")]));
        let props: BTreeMap<_, _> = operator_properties(&p, &secrets).unwrap().into_iter().collect();
        assert_eq!(props["security.protocol"], "SASL_SSL");
        assert_eq!(props["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!(props["sasl.username"], "social-consumer");
        assert_eq!(props["sasl.password"], "s3cret");
        assert_eq!(props["ssl.ca.pem"], "-----BEGIN CERTIFICATE-----");
        // Nothing points at the pods' mount paths.
        assert!(!props.contains_key("ssl.ca.location"));
    }

    #[test]
    fn a_client_certificate_is_passed_as_pem() {
        let p = pipeline(serde_json::json!({"bootstrapServers": "k:9093",
            "tls": {"caSecretRef": {"name": "corp-ca", "key": "root.pem"}},
            "authentication": {"type": "tls", "producerSecretName": "w", "consumerSecretName": "r"}}));
        let mut secrets: Secrets = BTreeMap::new();
        secrets.insert("corp-ca".into(), secret(&[("root.pem", "CA")]));
        secrets.insert("r".into(), secret(&[("user.crt", "CERT"), ("user.key", "KEY")]));
        let props: BTreeMap<_, _> = operator_properties(&p, &secrets).unwrap().into_iter().collect();
        assert_eq!(props["security.protocol"], "SSL");
        assert_eq!(props["ssl.ca.pem"], "CA");
        assert_eq!(props["ssl.certificate.pem"], "CERT");
        assert_eq!(props["ssl.key.pem"], "KEY");
        assert!(!props.contains_key("ssl.certificate.location"));
        assert!(operator_secrets(&pipeline(serde_json::json!({"bootstrapServers": "k:9092"}))).is_empty());
    }
}
