//! Kafka client configuration shared by the services: the `--bootstrap-servers` and
//! `--kafka-property` flags, and the rules for properties Herald must own.

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
/// properties Herald requires. A user property that contradicts a required one is an error
/// rather than being silently overridden.
pub fn client_config(
    bootstrap_servers: &str,
    defaults: &[(&str, &str)],
    user: &[(String, String)],
    required: &[Required],
) -> Result<ClientConfig, ReservedProperty> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap_servers);
    for (k, v) in defaults {
        config.set(*k, *v);
    }
    for (k, v) in user {
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
        config.set(k, v);
    }
    for r in required {
        config.set(r.key, r.value);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: &[Required] =
        &[Required { key: "enable.idempotence", value: "true", why: "a record must be written once" }];

    #[test]
    fn user_overrides_defaults_and_required_wins() {
        let user = vec![("linger.ms".to_string(), "7".to_string())];
        let c = client_config("b:9092", &[("linger.ms", "1"), ("acks", "all")], &user, REQUIRED).unwrap();
        assert_eq!(c.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(c.get("linger.ms"), Some("7"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
    }

    #[test]
    fn contradicting_a_required_property_is_an_error() {
        let user = vec![("enable.idempotence".to_string(), "false".to_string())];
        let err = client_config("b", &[], &user, REQUIRED).unwrap_err();
        assert!(err.to_string().contains("enable.idempotence=false is not allowed"), "{err}");
        let same = vec![("enable.idempotence".to_string(), "true".to_string())];
        assert!(client_config("b", &[], &same, REQUIRED).is_ok());
    }

    #[test]
    fn parses_properties() {
        assert_eq!(parse_property("a.b = c=d").unwrap(), ("a.b".into(), "c=d".into()));
        assert!(parse_property("novalue").is_err());
        assert!(parse_property("=x").is_err());
    }
}
