//! Every check of a pipeline the schema cannot make, once, at the edge: a [`ValidPipeline`]
//! goes inward and the builders need no further checks.

use std::collections::BTreeSet;

use herald_api::labels::Component;
use herald_api::{JwtSpec, KeyRef, NotificationPipeline, NotificationPipelineSpec, labels};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

use super::names;
use super::reason::Reason;

/// librdkafka properties that `tls` and `authentication` own; setting them in
/// `spec.kafka.properties` as well would make two sources of truth.
pub const SECURITY_PROPERTIES: &[&str] = &[
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.ca.pem",
    "ssl.certificate.location",
    "ssl.certificate.pem",
    "ssl.key.location",
    "ssl.key.pem",
    "ssl.key.password",
];

/// Which Strimzi clusters pipelines may use, by the cluster's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowedNamespaces {
    /// Any namespace (`*`).
    #[default]
    Any,
    /// Only these.
    Only(BTreeSet<String>),
}

impl AllowedNamespaces {
    /// Parses `--allowed-cluster-namespaces`: `*`, or a comma-separated list.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let names: BTreeSet<String> =
            raw.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).collect();
        if names.contains("*") {
            return if names.len() == 1 { Ok(Self::Any) } else { Err("`*` cannot be combined with names".into()) };
        }
        if names.is_empty() {
            return Err("give `*` or at least one namespace".into());
        }
        Ok(Self::Only(names))
    }

    fn allows(&self, namespace: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(names) => names.contains(namespace),
        }
    }
}

/// How topic (and consumer group) names must relate to the pipeline's namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TopicNamePolicy {
    /// Any name.
    #[default]
    Any,
    /// Topic and group names start with `<namespace>.` or `<namespace>-`.
    NamespacePrefix,
}

/// What the cluster's administrator allows pipelines to reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenancyPolicy {
    pub cluster_namespaces: AllowedNamespaces,
    pub topic_names: TopicNamePolicy,
}

/// Why a pipeline cannot be built; each is permanent until the spec (or the policy) changes.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("{0}")]
    InvalidName(String),
    #[error("the pipeline has no {0} yet")]
    MissingMetadata(&'static str),
    #[error(
        "spec.kafka.properties.{key}: values may not contain a comma (the services read the properties as a comma-separated list)"
    )]
    CommaInProperty { key: String },
    #[error("spec.kafka.properties.{key} is set by spec.kafka.tls and spec.kafka.authentication; remove it")]
    SecurityProperty { key: String },
    #[error(
        "Strimzi writes the KafkaUser Secrets and the cluster CA into namespace {cluster}, and a pod can only mount Secrets of its own namespace: create the pipeline in {cluster}, or copy the Secrets here and name them in spec.kafka.authentication.producerSecretName, consumerSecretName and spec.kafka.tls.caSecretRef"
    )]
    CredentialsInOtherNamespace { cluster: String },
    #[error("{0}")]
    PolicyViolation(String),
    #[error("{0}")]
    Auth(&'static str),
    #[error("spec.consumer.history {value:?}: {why} (examples: 30m, 12h, 7d)")]
    History { value: String, why: String },
}

impl SpecError {
    /// The `Ready` condition's reason for this error.
    pub fn reason(&self) -> Reason {
        match self {
            SpecError::PolicyViolation(_) => Reason::PolicyViolation,
            _ => Reason::InvalidSpec,
        }
    }
}

/// A pipeline that passed every check: what the builders and the apply steps work from.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidPipeline {
    /// The pipeline as the API server handed it over (spec, previous status, metadata).
    pub pipeline: NotificationPipeline,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// The owner reference every child carries.
    pub owner: OwnerReference,
    /// The Kafka topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// The Strimzi cluster's namespace (`clusterRef.namespace`, else the pipeline's).
    pub cluster_namespace: String,
    /// The KafkaTopic's name (`<namespace>.<name>`, in the cluster's namespace).
    pub kafka_topic: String,
    /// The Kafka users of the roles, with `spec.kafka.authentication`.
    pub users: Option<KafkaUsers>,
    /// The Secret holding the consumers' peer token.
    pub peer_token_secret: String,
    /// `spec.kafka.properties`, checked.
    pub kafka_properties: Vec<(String, String)>,
    /// Who may call the producer and the consumers.
    pub auth: Auth,
}

/// The Kafka user (and Secret) of each role: the Secret named in the spec, else the KafkaUser the
/// operator creates (`<pipeline>-<role>`), which `managed` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaUsers {
    pub producer: String,
    pub consumer: String,
    /// The roles whose KafkaUser the operator creates.
    pub managed: Vec<Component>,
}

impl KafkaUsers {
    fn of(pipeline: &NotificationPipeline) -> Option<Self> {
        Some(Self {
            producer: names::user_name(pipeline, Component::Producer)?,
            consumer: names::user_name(pipeline, Component::Consumer)?,
            managed: names::managed_users(pipeline),
        })
    }

    /// The user of `role`.
    pub fn of_role(&self, role: Component) -> &str {
        match role {
            Component::Producer => &self.producer,
            Component::Consumer => &self.consumer,
        }
    }
}

/// A pipeline's API authentication, its deprecated alias resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Auth {
    /// The static service token (`spec.auth.tokenSecretRef`, or the deprecated
    /// `spec.producer.authTokenSecretRef`).
    pub token: Option<KeyRef>,
    /// User JWTs (exactly one of secret and public key).
    pub jwt: Option<JwtSpec>,
}

impl Auth {
    /// No authentication: anyone who reaches a pod sends and reads for everyone.
    pub fn is_open(&self) -> bool {
        self.token.is_none() && self.jwt.is_none()
    }
}

/// The pipeline's authentication, checked as the CRD's CEL rules check it (for API servers that
/// do not evaluate them).
fn auth(spec: &NotificationPipelineSpec) -> Result<Auth, SpecError> {
    let alias = spec.producer.auth_token_secret_ref.clone();
    let Some(auth) = &spec.auth else { return Ok(Auth { token: alias, jwt: None }) };
    if auth.token_secret_ref.is_some() && alias.is_some() {
        return Err(SpecError::Auth(
            "spec.producer.authTokenSecretRef is a deprecated alias of spec.auth.tokenSecretRef: set only spec.auth.tokenSecretRef",
        ));
    }
    if auth.token_secret_ref.is_none() && auth.jwt.is_none() {
        return Err(SpecError::Auth("spec.auth needs tokenSecretRef, jwt or both"));
    }
    if let Some(jwt) = &auth.jwt
        && jwt.secret_ref.is_some() == jwt.public_key_secret_ref.is_some()
    {
        return Err(SpecError::Auth(
            "spec.auth.jwt needs exactly one of secretRef (HS256/HS384/HS512) and publicKeySecretRef (RS256, ES256 or EdDSA)",
        ));
    }
    Ok(Auth { token: auth.token_secret_ref.clone().or(alias), jwt: auth.jwt.clone() })
}

impl ValidPipeline {
    pub fn spec(&self) -> &NotificationPipelineSpec {
        &self.pipeline.spec
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The Kafka user of `role` (`None` without `spec.kafka.authentication`).
    pub fn user(&self, role: Component) -> Option<&str> {
        self.users.as_ref().map(|u| u.of_role(role))
    }

    /// The roles whose KafkaUser the operator creates (none without authentication).
    pub fn managed_users(&self) -> &[Component] {
        self.users.as_ref().map_or(&[], |u| u.managed.as_slice())
    }
}

/// Checks `pipeline` against what the schema cannot express and against `policy`.
/// What is wrong with a `spec.consumer.history` value (the CRD's pattern, checked again for API
/// servers that skip it): a whole number from 1 to 99999 and a unit.
fn history_problem(value: &str) -> Option<String> {
    let digits = value.trim_end_matches(['s', 'm', 'h', 'd']);
    let unit = &value[digits.len()..];
    let number_ok = !digits.is_empty()
        && digits.len() <= 5
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    match (number_ok, unit.len() == 1) {
        (true, true) => None,
        (false, _) => Some("the number must be a whole number from 1 to 99999".into()),
        (true, false) => Some("the unit must be s, m, h or d".into()),
    }
}

pub fn validate(pipeline: &NotificationPipeline, policy: &TenancyPolicy) -> Result<ValidPipeline, SpecError> {
    let name = pipeline.metadata.name.clone().ok_or(SpecError::MissingMetadata("name"))?;
    if let Some(problem) = labels::pipeline_name_problem(&name) {
        return Err(SpecError::InvalidName(problem));
    }
    let namespace = pipeline.metadata.namespace.clone().ok_or(SpecError::MissingMetadata("namespace"))?;
    let uid = pipeline.metadata.uid.clone().ok_or(SpecError::MissingMetadata("uid"))?;
    let owner = pipeline.controller_owner_ref(&()).ok_or(SpecError::MissingMetadata("uid"))?;
    let kafka = &pipeline.spec.kafka;
    if let Some((key, _)) = kafka.properties.iter().find(|(_, v)| v.contains(',')) {
        return Err(SpecError::CommaInProperty { key: key.clone() });
    }
    let secured = kafka.tls.is_some() || kafka.authentication.is_some();
    if secured && let Some(key) = kafka.properties.keys().find(|k| SECURITY_PROPERTIES.contains(&k.as_str())) {
        return Err(SpecError::SecurityProperty { key: key.clone() });
    }
    let cluster_namespace = names::cluster_namespace(pipeline);
    let strimzi_ca = kafka.tls.as_ref().is_some_and(|t| t.ca_secret_ref.is_none()) && kafka.cluster_ref.is_some();
    let users = KafkaUsers::of(pipeline);
    let strimzi_written = users.as_ref().is_some_and(|u| !u.managed.is_empty()) || strimzi_ca;
    if strimzi_written && cluster_namespace != namespace {
        return Err(SpecError::CredentialsInOtherNamespace { cluster: cluster_namespace });
    }
    let auth = auth(&pipeline.spec)?;
    if let Some(value) = &pipeline.spec.consumer.history
        && let Some(why) = history_problem(value)
    {
        return Err(SpecError::History { value: value.clone(), why });
    }
    let topic = names::topic_name(pipeline);
    let group = names::group_id(pipeline);
    if kafka.cluster_ref.is_some() && !policy.cluster_namespaces.allows(&cluster_namespace) {
        return Err(SpecError::PolicyViolation(format!(
            "spec.kafka.clusterRef: Kafka clusters in namespace {cluster_namespace} are not allowed for pipelines (the operator allows: {})",
            match &policy.cluster_namespaces {
                AllowedNamespaces::Any => "any".to_string(),
                AllowedNamespaces::Only(names) => names.iter().cloned().collect::<Vec<_>>().join(", "),
            }
        )));
    }
    if policy.topic_names == TopicNamePolicy::NamespacePrefix {
        let prefixed = |n: &str| n.strip_prefix(namespace.as_str()).is_some_and(|r| r.starts_with(['.', '-']));
        if !prefixed(&topic) {
            return Err(SpecError::PolicyViolation(format!(
                "topic {topic}: topic names must start with {namespace}. or {namespace}- (the operator's topic name policy); set spec.topic.name, e.g. {namespace}.{name}"
            )));
        }
        if !prefixed(&group) {
            return Err(SpecError::PolicyViolation(format!(
                "consumer group {group}: group ids must start with {namespace}. or {namespace}- (the operator's topic name policy); set spec.consumer.groupId, e.g. {namespace}.{name}"
            )));
        }
    }
    Ok(ValidPipeline {
        peer_token_secret: names::peer_token_secret(&name),
        kafka_properties: kafka.properties.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        pipeline: pipeline.clone(),
        name,
        namespace,
        uid,
        owner,
        topic,
        group,
        cluster_namespace,
        kafka_topic: names::kafka_topic_name(pipeline),
        users,
        auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk(namespace: &str, spec: serde_json::Value) -> NotificationPipeline {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "NotificationPipeline",
            "metadata": {"name": "social", "namespace": namespace, "uid": "u-1"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn allowed_namespaces_parse() {
        assert_eq!(AllowedNamespaces::parse("*").unwrap(), AllowedNamespaces::Any);
        assert_eq!(
            AllowedNamespaces::parse("kafka, shared-kafka").unwrap(),
            AllowedNamespaces::Only(["kafka".to_string(), "shared-kafka".to_string()].into())
        );
        assert!(AllowedNamespaces::parse("*,kafka").is_err());
        assert!(AllowedNamespaces::parse(" , ").is_err());
    }

    #[test]
    fn a_history_window_is_a_number_and_a_unit() {
        let with = |h: &str| {
            mk("apps", serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "consumer": {"history": h}}))
        };
        for good in ["30m", "12h", "7d", "1s", "99999d"] {
            assert!(validate(&with(good), &TenancyPolicy::default()).is_ok(), "{good}");
        }
        for (bad, says) in [
            ("7", "unit"),
            ("5ms", "unit"),
            ("7dd", "unit"),
            ("0d", "number"),
            ("100000d", "number"),
            ("1.5h", "number"),
            ("-3h", "number"),
            ("h", "number"),
        ] {
            let err = validate(&with(bad), &TenancyPolicy::default()).unwrap_err();
            assert_eq!(err.reason().as_str(), "InvalidSpec");
            assert!(
                err.to_string().starts_with("spec.consumer.history") && err.to_string().contains(says),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_policy_refuses_clusters_and_names_outside_it() {
        let policy = TenancyPolicy {
            cluster_namespaces: AllowedNamespaces::parse("kafka").unwrap(),
            topic_names: TopicNamePolicy::NamespacePrefix,
        };
        let elsewhere = mk(
            "apps",
            serde_json::json!({"kafka": {"bootstrapServers": "k:9092",
            "clusterRef": {"name": "c", "namespace": "team-b"}}, "topic": {"name": "apps.social"},
            "consumer": {"groupId": "apps-social"}}),
        );
        let err = validate(&elsewhere, &policy).unwrap_err();
        assert_eq!(err.reason().as_str(), "PolicyViolation");
        assert!(err.to_string().contains("namespace team-b are not allowed"), "{err}");

        let unprefixed = mk(
            "apps",
            serde_json::json!({"kafka": {"bootstrapServers": "k:9092",
            "clusterRef": {"name": "c", "namespace": "kafka"}}, "topic": {"name": "payments"}}),
        );
        let err = validate(&unprefixed, &policy).unwrap_err();
        assert!(err.to_string().contains("topic payments: topic names must start with apps."), "{err}");
        let group = mk(
            "apps",
            serde_json::json!({"kafka": {"bootstrapServers": "k:9092",
            "clusterRef": {"name": "c", "namespace": "kafka"}}, "topic": {"name": "apps.social"}}),
        );
        let err = validate(&group, &policy).unwrap_err();
        assert!(err.to_string().contains("consumer group social-consumers"), "{err}");
        // "appsx.social" is not prefixed by "apps".
        let sneaky = mk(
            "apps",
            serde_json::json!({"kafka": {"bootstrapServers": "k:9092"},
            "topic": {"name": "appsx.social"}, "consumer": {"groupId": "apps.g"}}),
        );
        assert!(validate(&sneaky, &policy).is_err());

        let fine = mk(
            "apps",
            serde_json::json!({"kafka": {"bootstrapServers": "k:9092",
            "clusterRef": {"name": "c", "namespace": "kafka"}}, "topic": {"name": "apps.social"},
            "consumer": {"groupId": "apps-social"}}),
        );
        let valid = validate(&fine, &policy).unwrap();
        assert_eq!((valid.topic.as_str(), valid.group.as_str()), ("apps.social", "apps-social"));
        assert!(validate(&unprefixed, &TenancyPolicy::default()).is_ok(), "the default policy allows anything");
    }

    #[test]
    fn auth_resolves_the_deprecated_alias_and_refuses_what_the_cel_rules_refuse() {
        let kafka = serde_json::json!({"bootstrapServers": "k:9092"});
        let token = serde_json::json!({"name": "api", "key": "token"});
        let check = |spec: serde_json::Value| validate(&mk("apps", spec), &TenancyPolicy::default());
        let open = check(serde_json::json!({"kafka": kafka})).unwrap();
        assert!(open.auth.is_open());
        let alias = check(serde_json::json!({"kafka": kafka, "producer": {"authTokenSecretRef": token}})).unwrap();
        assert_eq!(alias.auth.token.as_ref().map(|k| k.name.as_str()), Some("api"));
        let both = check(serde_json::json!({"kafka": kafka, "producer": {"authTokenSecretRef": token},
            "auth": {"tokenSecretRef": token}}))
        .unwrap_err();
        assert!(both.to_string().contains("deprecated alias"), "{both}");
        let alias_and_jwt = check(serde_json::json!({"kafka": kafka, "producer": {"authTokenSecretRef": token},
            "auth": {"jwt": {"secretRef": {"name": "jwt", "key": "secret"}}}}))
        .unwrap();
        assert!(alias_and_jwt.auth.token.is_some() && alias_and_jwt.auth.jwt.is_some());
        let empty = check(serde_json::json!({"kafka": kafka, "auth": {}})).unwrap_err();
        assert_eq!(empty.to_string(), "spec.auth needs tokenSecretRef, jwt or both");
        for jwt in [
            serde_json::json!({}),
            serde_json::json!({"secretRef": {"name": "a", "key": "b"}, "publicKeySecretRef": {"name": "a", "key": "c"}}),
        ] {
            let err = check(serde_json::json!({"kafka": kafka, "auth": {"jwt": jwt}})).unwrap_err();
            assert!(err.to_string().starts_with("spec.auth.jwt needs exactly one"), "{err}");
            assert_eq!(err.reason().as_str(), "InvalidSpec");
        }
    }
}
