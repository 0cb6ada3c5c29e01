//! The producer's and the consumers' Deployments (pure): their containers, env, probes,
//! security contexts, volumes and rollout rules, from the validated pipeline, the images and what
//! the reconcile observed.

use std::collections::BTreeMap;

use herald_api::labels::{self, Component};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::credentials::{self, Security, secret_volume};
use super::validate::{Auth, ValidPipeline};

/// The producer's API port (`POST /send`, probes).
pub const PRODUCER_PORT: i32 = 8080;
/// The consumer's API port (`GET /notifications/{userID}`, forwarded reads, probes).
pub const CONSUMER_PORT: i32 = 8081;
/// The producer's `/metrics` port.
pub const PRODUCER_METRICS_PORT: i32 = 9090;
/// The consumer's `/metrics` port.
pub const CONSUMER_METRICS_PORT: i32 = 9091;
/// The name of the API container port.
pub const HTTP_PORT_NAME: &str = "http";
/// The name of the `/metrics` container port (what a PodMonitor scrapes).
pub const METRICS_PORT_NAME: &str = "metrics";
/// The key of the peer token in its Secret.
pub const PEER_TOKEN_KEY: &str = "token";
/// Annotation on the consumers' pod template: the uid of the peer-token Secret, so that the
/// consumers roll together onto a new token when the Secret is replaced (it is immutable).
pub const PEER_TOKEN_ANNOTATION: &str = "herald.dev/peer-token-secret-uid";
const AUTH_DIR: &str = "/etc/herald/auth";
const JWT_DIR: &str = "/etc/herald/jwt";
const PEER_DIR: &str = "/etc/herald/peer";
const USERS_DIR: &str = "/etc/herald/users";
const NON_ROOT_UID: i64 = 65532;
/// How long a consumer that leaves keeps answering for the partitions it hands off, at most
/// (`HERALD_HANDOFF_TIMEOUT`): until their new owners serve them.
pub const HANDOFF_TIMEOUT_SECONDS: i64 = 60;
/// A consumer's shutdown: leaving the group (a few seconds), answering for its partitions until
/// they are handed off (at most the handoff timeout, plus 5 s for the last views), then in-flight
/// requests (10 s) — with margin, so the kubelet never kills a consumer mid-handoff.
pub const CONSUMER_GRACE_SECONDS: i64 = HANDOFF_TIMEOUT_SECONDS + 30;
/// A producer's shutdown: in-flight sends and the Kafka client's flush.
const PRODUCER_GRACE_SECONDS: i64 = 30;

/// Images used when a pipeline names none (the operator's `--producer-image`/`--consumer-image`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    pub producer: String,
    pub consumer: String,
}

/// What the reconcile observed that the objects depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Consumer replicas (from [`super::scaling`]).
    pub consumers: i32,
    /// The uid of the pipeline's peer-token Secret.
    pub peer_token_uid: String,
    /// Every partition count the topic has had (`status.topic.partitionHistory`); passed to
    /// the producer and the consumers once the topic has grown.
    pub partition_history: Vec<i32>,
}

impl Observed {
    pub fn new(consumers: i32, peer_token_uid: impl Into<String>) -> Self {
        Self { consumers, peer_token_uid: peer_token_uid.into(), partition_history: Vec::new() }
    }
}

/// `HERALD_PARTITION_HISTORY` once the topic has grown (set only then, so that pods of a topic
/// that never grew are not restarted by an operator upgrade).
fn partition_history_env(observed: &Observed) -> Option<EnvVar> {
    (observed.partition_history.len() > 1).then(|| {
        let counts: Vec<String> = observed.partition_history.iter().map(i32::to_string).collect();
        env("HERALD_PARTITION_HISTORY", counts.join(","))
    })
}

pub(crate) fn meta(pipeline: &ValidPipeline, name: String, component: Component) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(pipeline.namespace.clone()),
        labels: Some(labels::labels(&pipeline.name, component)),
        owner_references: Some(vec![pipeline.owner.clone()]),
        ..ObjectMeta::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar { name: name.to_string(), value: Some(value.into()), ..EnvVar::default() }
}

fn probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(HTTP_PORT_NAME.to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    }
}

/// Runs under the `restricted` Pod Security Standard.
fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_string()]), ..Capabilities::default() }),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_string(), ..SeccompProfile::default() }),
        ..SecurityContext::default()
    }
}

fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NON_ROOT_UID),
        run_as_group: Some(NON_ROOT_UID),
        // The kubelet writes Secret and ConfigMap volume files as root:root unless fsGroup is
        // set; with it they belong to this group and are group-readable, so the non-root
        // process can read its password, certificates and tokens.
        fs_group: Some(NON_ROOT_UID),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_string(), ..SeccompProfile::default() }),
        ..PodSecurityContext::default()
    }
}

struct Workload {
    component: Component,
    image: String,
    port: i32,
    metrics_port: i32,
    annotations: Option<BTreeMap<String, String>>,
    env: Vec<EnvVar>,
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
    resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    replicas: i32,
    /// `None`: Kubernetes' default rolling update (25 % surge, 25 % unavailable).
    strategy: Option<DeploymentStrategy>,
    grace_seconds: i64,
}

fn deployment(pipeline: &ValidPipeline, w: Workload) -> Deployment {
    let name = pipeline.name.as_str();
    let container = Container {
        name: w.component.as_str().to_string(),
        image: Some(w.image),
        // One image carries every Herald binary; a custom image must have this one on its PATH.
        command: Some(vec![format!("herald-{}", w.component.as_str())]),
        ports: Some(vec![
            ContainerPort {
                name: Some(HTTP_PORT_NAME.to_string()),
                container_port: w.port,
                protocol: Some("TCP".to_string()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some(METRICS_PORT_NAME.to_string()),
                container_port: w.metrics_port,
                protocol: Some("TCP".to_string()),
                ..ContainerPort::default()
            },
        ]),
        env: Some(w.env),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        resources: w.resources,
        security_context: Some(restricted_container()),
        volume_mounts: (!w.mounts.is_empty()).then_some(w.mounts),
        ..Container::default()
    };
    let selector = labels::selector(name, w.component);
    super::rollout::with_digest(Deployment {
        metadata: meta(pipeline, labels::child_name(name, w.component), w.component),
        spec: Some(DeploymentSpec {
            replicas: Some(w.replicas),
            strategy: w.strategy,
            selector: LabelSelector { match_labels: Some(selector), ..LabelSelector::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels::labels(name, w.component)),
                    annotations: w.annotations,
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    security_context: Some(restricted_pod()),
                    automount_service_account_token: Some(false),
                    termination_grace_period_seconds: Some(w.grace_seconds),
                    volumes: (!w.volumes.is_empty()).then_some(w.volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    })
}

/// The env every pod gets, with `security` (its role's Kafka credentials) added to the
/// properties and env.
fn common_env(pipeline: &ValidPipeline, port: i32, metrics_port: i32, security: &Security) -> Vec<EnvVar> {
    let mut env_vars = vec![
        env("KAFKA_BOOTSTRAP_SERVERS", pipeline.spec().kafka.bootstrap_servers.clone()),
        env("HERALD_TOPIC", pipeline.topic.clone()),
        env("HERALD_LISTEN", format!("0.0.0.0:{port}")),
        env("HERALD_METRICS_LISTEN", format!("0.0.0.0:{metrics_port}")),
        env("HERALD_LOG_FORMAT", "json"),
    ];
    let properties: Vec<String> =
        pipeline.kafka_properties.iter().chain(&security.properties).map(|(k, v)| format!("{k}={v}")).collect();
    if !properties.is_empty() {
        env_vars.push(env("HERALD_KAFKA_PROPERTIES", properties.join(",")));
    }
    env_vars.extend(security.env.iter().cloned());
    env_vars
}

/// The API authentication both roles share: the service token and the JWT key as read-only
/// files, issuer and audience as values.
fn api_auth(auth: &Auth, security: &mut Security) {
    let mut mount = |volume: &str, secret: &herald_api::KeyRef, file: &str, dir: &str, variable: &str| {
        let item = KeyToPath { key: secret.key.clone(), path: file.to_string(), mode: None };
        let (v, m) = secret_volume(volume, &secret.name, vec![item], dir);
        security.volumes.push(v);
        security.mounts.push(m);
        security.env.push(env(variable, format!("{dir}/{file}")));
    };
    if let Some(token) = &auth.token {
        mount("auth-token", token, "token", AUTH_DIR, "HERALD_AUTH_TOKEN_FILE");
    }
    let Some(jwt) = &auth.jwt else { return };
    if let Some(secret) = &jwt.secret_ref {
        mount("jwt-key", secret, "secret", JWT_DIR, "HERALD_JWT_SECRET_FILE");
    }
    if let Some(key) = &jwt.public_key_secret_ref {
        mount("jwt-key", key, "public-key.pem", JWT_DIR, "HERALD_JWT_PUBLIC_KEY_FILE");
    }
    if let Some(issuer) = &jwt.issuer {
        security.env.push(env("HERALD_JWT_ISSUER", issuer.clone()));
    }
    if let Some(audience) = &jwt.audience {
        security.env.push(env("HERALD_JWT_AUDIENCE", audience.clone()));
    }
}

pub(crate) fn producer_deployment(pipeline: &ValidPipeline, images: &Images, observed: &Observed) -> Deployment {
    let spec = &pipeline.spec().producer;
    let mut security = credentials::security(pipeline, Component::Producer);
    api_auth(&pipeline.auth, &mut security);
    let mut env_vars = common_env(pipeline, PRODUCER_PORT, PRODUCER_METRICS_PORT, &security);
    // Read markers go to every partition a user mapped to.
    env_vars.extend(partition_history_env(observed));
    let mut volumes = security.volumes;
    let mut mounts = security.mounts;
    if let Some(config_map) = &spec.users_config_map_ref {
        env_vars.push(env("HERALD_USERS_FILE", format!("{USERS_DIR}/users.json")));
        volumes.push(Volume {
            name: "users".to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.name.clone(),
                items: Some(vec![KeyToPath {
                    key: config_map.key.clone(),
                    path: "users.json".to_string(),
                    mode: None,
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "users".to_string(),
            mount_path: USERS_DIR.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    deployment(
        pipeline,
        Workload {
            component: Component::Producer,
            image: spec.image.clone().unwrap_or_else(|| images.producer.clone()),
            port: PRODUCER_PORT,
            metrics_port: PRODUCER_METRICS_PORT,
            annotations: None,
            env: env_vars,
            volumes,
            mounts,
            resources: spec.resources.clone(),
            replicas: spec.replicas,
            strategy: None,
            grace_seconds: PRODUCER_GRACE_SECONDS,
        },
    )
}

pub(crate) fn consumer_deployment(pipeline: &ValidPipeline, images: &Images, observed: &Observed) -> Deployment {
    let spec = &pipeline.spec().consumer;
    let mut security = credentials::security(pipeline, Component::Consumer);
    api_auth(&pipeline.auth, &mut security);
    // Forwarded reads and /internal/claims carry the pipeline's peer token.
    let peer = herald_api::KeyRef { name: pipeline.peer_token_secret.clone(), key: PEER_TOKEN_KEY.to_string() };
    let (v, m) = secret_volume(
        "peer-token",
        &peer.name,
        vec![KeyToPath { key: peer.key.clone(), path: "token".into(), mode: None }],
        PEER_DIR,
    );
    security.volumes.push(v);
    security.mounts.push(m);
    security.env.push(env("HERALD_PEER_TOKEN_FILE", format!("{PEER_DIR}/token")));
    let mut env_vars = common_env(pipeline, CONSUMER_PORT, CONSUMER_METRICS_PORT, &security);
    env_vars.push(env("HERALD_GROUP_ID", pipeline.group.clone()));
    env_vars.push(env("HERALD_MAX_PER_USER", spec.max_notifications_per_user.to_string()));
    if let Some(history) = &spec.history {
        env_vars.push(env("HERALD_HISTORY", history.clone()));
    }
    // Coupled with the pod's grace period, which outlasts it.
    env_vars.push(env("HERALD_HANDOFF_TIMEOUT", format!("{HANDOFF_TIMEOUT_SECONDS}s")));
    if spec.standby_replicas > 0 {
        env_vars.push(env("HERALD_STANDBY", "true"));
    }
    env_vars.extend(partition_history_env(observed));
    // Any consumer answers for any user: it finds the others through the headless Service
    // (which lists pods before they are ready) and tells them its pod IP.
    env_vars.push(EnvVar {
        name: "POD_IP".to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: "status.podIP".to_string(), ..Default::default() }),
            ..Default::default()
        }),
        ..EnvVar::default()
    });
    env_vars.push(env("HERALD_ADVERTISE_URL", format!("http://$(POD_IP):{CONSUMER_PORT}")));
    env_vars.push(env(
        "HERALD_PEERS",
        format!(
            "{}-headless.{}.svc:{CONSUMER_PORT}",
            labels::child_name(&pipeline.name, Component::Consumer),
            pipeline.namespace
        ),
    ));
    deployment(
        pipeline,
        Workload {
            component: Component::Consumer,
            image: spec.image.clone().unwrap_or_else(|| images.consumer.clone()),
            port: CONSUMER_PORT,
            metrics_port: CONSUMER_METRICS_PORT,
            annotations: Some(BTreeMap::from([(PEER_TOKEN_ANNOTATION.to_string(), observed.peer_token_uid.clone())])),
            env: env_vars,
            volumes: security.volumes,
            mounts: security.mounts,
            resources: spec.resources.clone(),
            replicas: observed.consumers,
            strategy: Some(one_consumer_at_a_time()),
            grace_seconds: CONSUMER_GRACE_SECONDS,
        },
    )
}

/// A rollout replaces one consumer at a time, the new one first: it joins the group and is
/// ready (every partition answerable) before an old one leaves and hands its partitions off, so
/// the group never runs short and no read waits for a restore. The PodDisruptionBudget applies
/// the same rule to evictions.
fn one_consumer_at_a_time() -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".to_string()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(1)),
            max_unavailable: Some(IntOrString::Int(0)),
        }),
    }
}
