//! Kafka client configuration shared by the services: the `--bootstrap-servers` and
//! `--kafka-property` flags, and the rules for properties Herald must own.

use herald_auth::secret_file::{self, Trim};
use rdkafka::ClientConfig;

/// The Kafka flags both services take.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated `host:port`.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", default_value = "127.0.0.1:9092")]
    pub bootstrap_servers: String,

    /// Topic that carries the notifications.
    #[arg(long, env = "HERALD_TOPIC", default_value = "notifications")]
    pub topic: String,

    #[command(flatten)]
    pub properties: KafkaProperties,
}

/// The repeatable `--kafka-property KEY=VALUE` flag.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KafkaProperties {
    /// Extra librdkafka property `KEY=VALUE` (TLS, SASL, timeouts, ...). Repeatable; the env
    /// var takes a comma-separated list.
    #[arg(
        long = "kafka-property",
        env = "HERALD_KAFKA_PROPERTIES",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        value_parser = parse_property
    )]
    pub values: Vec<(String, String)>,

    /// File holding the SASL password (e.g. the `password` key of a mounted Secret); it becomes
    /// `sasl.password`, so the password is never a flag, an env value or a log line. Read at start.
    #[arg(
        long = "kafka-sasl-password-file",
        env = "HERALD_KAFKA_SASL_PASSWORD_FILE",
        value_name = "PATH",
        value_parser = read_password_file
    )]
    pub sasl_password: Option<Password>,
}

/// A secret read from a file; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Reads a password file: one trailing line break is dropped (Secrets written by hand often end
/// with one); an empty password is an error.
fn read_password_file(path: &str) -> Result<Password, String> {
    secret_file::read_text(std::path::Path::new(path), "SASL password file", Trim::OneLineBreak)
        .map(Password)
        .map_err(|e| e.to_string())
}

/// Parses `KEY=VALUE` (surrounding spaces trimmed; the value may contain `=`).
fn parse_property(raw: &str) -> Result<(String, String), String> {
    let (key, value) = raw.split_once('=').ok_or_else(|| format!("`{raw}` is not KEY=VALUE"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("`{raw}` has an empty key"));
    }
    Ok((key.to_string(), value.trim().to_string()))
}

/// A Kafka property the user set that Herald must control itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("kafka property {key}={given} is not allowed: Herald requires {key}={required} ({why})")]
pub struct ReservedProperty {
    pub key: String,
    pub given: String,
    pub required: String,
    pub why: &'static str,
}

/// A property Herald sets and a user may not change, with the reason shown when they try.
pub struct Required {
    pub key: &'static str,
    pub value: &'static str,
    pub why: &'static str,
}

/// Builds a client configuration: Herald's defaults, then the user's properties, then the
/// properties Herald requires, then the SASL password from its file. A user property that
/// contradicts a required one (or sets `sasl.password` next to the file) is an error rather than
/// being silently overridden.
pub fn client_config(
    bootstrap_servers: &str,
    defaults: &[(&str, &str)],
    user: &KafkaProperties,
    required: &[Required],
) -> Result<ClientConfig, ReservedProperty> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap_servers);
    for (k, v) in defaults {
        config.set(*k, *v);
    }
    for (k, v) in &user.values {
        if let Some(r) = required.iter().find(|r| r.key == k)
            && r.value != v
        {
            return Err(ReservedProperty {
                key: k.clone(),
                given: v.clone(),
                required: r.value.to_string(),
                why: r.why,
            });
        }
        if k == "sasl.password" && user.sasl_password.is_some() {
            return Err(ReservedProperty {
                key: k.clone(),
                given: "<redacted>".into(),
                required: "<the content of --kafka-sasl-password-file>".into(),
                why: "the password comes from one place",
            });
        }
        config.set(k, v);
    }
    for r in required {
        config.set(r.key, r.value);
    }
    if let Some(Password(secret)) = &user.sasl_password {
        config.set("sasl.password", secret);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: &[Required] =
        &[Required { key: "enable.idempotence", value: "true", why: "a record must be written once" }];

    fn props(values: &[(&str, &str)]) -> KafkaProperties {
        KafkaProperties {
            values: values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            sasl_password: None,
        }
    }

    #[test]
    fn user_overrides_defaults_and_required_wins() {
        let user = props(&[("linger.ms", "7")]);
        let c = client_config("b:9092", &[("linger.ms", "1"), ("acks", "all")], &user, REQUIRED).unwrap();
        assert_eq!(c.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(c.get("linger.ms"), Some("7"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
    }

    #[test]
    fn contradicting_a_required_property_is_an_error() {
        let user = props(&[("enable.idempotence", "false")]);
        let err = client_config("b", &[], &user, REQUIRED).unwrap_err();
        assert!(err.to_string().contains("enable.idempotence=false is not allowed"), "{err}");
        let same = props(&[("enable.idempotence", "true")]);
        assert!(client_config("b", &[], &same, REQUIRED).is_ok());
    }

    #[test]
    fn the_password_comes_from_its_file_and_never_shows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "s3cret\n").unwrap();
        let password = read_password_file(path.to_str().unwrap()).unwrap();
        assert_eq!(format!("{password:?}"), "Password(<redacted>)");
        let mut user = props(&[("sasl.mechanism", "SCRAM-SHA-512")]);
        user.sasl_password = Some(password);
        let config = client_config("b", &[], &user, REQUIRED).unwrap();
        assert_eq!(config.get("sasl.password"), Some("s3cret"));
        assert!(!format!("{user:?}").contains("s3cret"));

        user.values.push(("sasl.password".into(), "other".into()));
        let err = client_config("b", &[], &user, REQUIRED).unwrap_err().to_string();
        assert!(err.contains("sasl.password") && !err.contains("other"), "{err}");

        std::fs::write(&path, "\n").unwrap();
        assert!(read_password_file(path.to_str().unwrap()).unwrap_err().contains("is empty"));
        assert!(read_password_file("/nonexistent/password").unwrap_err().contains("cannot read"));
    }

    #[test]
    fn parses_properties() {
        assert_eq!(parse_property("a.b = c=d").unwrap(), ("a.b".into(), "c=d".into()));
        assert!(parse_property("novalue").is_err());
        assert!(parse_property("=x").is_err());
    }
}
