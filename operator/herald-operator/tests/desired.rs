//! The desired objects of a few pipelines: defaults, fixed and capped replicas, topic naming,
//! API authentication and the peer token, the users ConfigMap, the NetworkPolicies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_api::NotificationPipeline;
use std::collections::BTreeMap;

use herald_operator::build::desired::{Children, Defaults, Observed, children};
use herald_operator::build::validate::{SpecError, TenancyPolicy, ValidPipeline, validate};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::api::networking::v1::NetworkPolicy;

fn operator_defaults() -> Defaults {
    herald_operator::fixtures::settings().defaults
}

const PEER_UID: &str = "peer-secret-uid-1";

fn mk(spec: serde_json::Value) -> NotificationPipeline {
    herald_operator::fixtures::social(spec)
}

fn minimal() -> NotificationPipeline {
    mk(serde_json::json!({"kafka": {"bootstrapServers": "kafka:9092"}}))
}

fn env_map(container: &Container) -> BTreeMap<String, String> {
    container.env.iter().flatten().filter_map(|e| Some((e.name.clone(), e.value.clone()?))).collect()
}

fn container(d: &Deployment) -> &Container {
    &d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
}

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().unwrap().replicas.unwrap()
}

fn valid(p: &NotificationPipeline) -> ValidPipeline {
    validate(p, &TenancyPolicy::default()).unwrap()
}

fn build(p: &NotificationPipeline, consumers: i32) -> Children {
    children(&valid(p), &operator_defaults(), &Observed::new(consumers, PEER_UID))
}

/// `name -> (containerPort, protocol)`.
fn ports(c: &Container) -> BTreeMap<String, i32> {
    c.ports.iter().flatten().map(|p| (p.name.clone().unwrap(), p.container_port)).collect()
}

#[test]
fn defaults() {
    let c = build(&minimal(), 6);
    assert_eq!(c.producer_deployment.metadata.name.as_deref(), Some("social-producer"));
    assert_eq!(c.consumer_deployment.metadata.name.as_deref(), Some("social-consumer"));
    assert_eq!(c.consumer_headless_service.metadata.name.as_deref(), Some("social-consumer-headless"));
    assert_eq!(replicas(&c.producer_deployment), 1);
    assert_eq!(replicas(&c.consumer_deployment), 6);

    let producer = container(&c.producer_deployment);
    assert_eq!(producer.image.as_deref(), Some("herald/producer:1"));
    assert_eq!(producer.command.as_deref(), Some(&["herald-producer".to_string()][..]));
    let env = env_map(producer);
    assert_eq!(env["KAFKA_BOOTSTRAP_SERVERS"], "kafka:9092");
    assert_eq!(env["HERALD_TOPIC"], "social");
    assert_eq!(env["HERALD_LISTEN"], "0.0.0.0:8080");
    assert_eq!(env["HERALD_METRICS_LISTEN"], "0.0.0.0:9090");
    assert_eq!(ports(producer), BTreeMap::from([("http".into(), 8080), ("metrics".into(), 9090)]));
    for variable in
        ["HERALD_AUTH_TOKEN_FILE", "HERALD_JWT_SECRET_FILE", "HERALD_JWT_PUBLIC_KEY_FILE", "HERALD_USERS_FILE"]
    {
        assert!(!env.contains_key(variable), "{variable}");
    }
    assert!(!env.contains_key("HERALD_PEER_TOKEN_FILE"), "the producer has no peers");

    let consumer = container(&c.consumer_deployment);
    assert_eq!(consumer.image.as_deref(), Some("herald/consumer:1"));
    assert_eq!(consumer.command.as_deref(), Some(&["herald-consumer".to_string()][..]));
    let env = env_map(consumer);
    assert_eq!(env["HERALD_GROUP_ID"], "social-consumers");
    assert_eq!(env["HERALD_LISTEN"], "0.0.0.0:8081");
    assert_eq!(env["HERALD_METRICS_LISTEN"], "0.0.0.0:9091");
    assert_eq!(ports(consumer), BTreeMap::from([("http".into(), 8081), ("metrics".into(), 9091)]));
    // Every consumer proves itself to the others with the pipeline's peer token, and the pods
    // roll together when the token's Secret is replaced.
    assert_eq!(env["HERALD_PEER_TOKEN_FILE"], "/etc/herald/peer/token");
    assert_eq!(
        volumes(&c.consumer_deployment)["peer-token"],
        ("social-peer-token".to_string(), vec!["token->token".to_string()])
    );
    assert_eq!(mounts(consumer)["peer-token"], "/etc/herald/peer");
    let template = c.consumer_deployment.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
    assert_eq!(template.annotations.as_ref().unwrap()["herald.dev/peer-token-secret-uid"], PEER_UID);
    assert_eq!(env["HERALD_MAX_PER_USER"], "100");
    assert!(!env.contains_key("HERALD_HISTORY"), "no window unless the spec sets one");
    // Reads for any user: peers through the headless Service, each advertising its pod IP
    // (defined before the variable that expands it).
    let names: Vec<&str> = consumer.env.iter().flatten().map(|e| e.name.as_str()).collect();
    let pod_ip = names.iter().position(|n| *n == "POD_IP").unwrap();
    assert!(pod_ip < names.iter().position(|n| *n == "HERALD_ADVERTISE_URL").unwrap());
    let from = consumer.env.as_ref().unwrap()[pod_ip].value_from.as_ref().unwrap();
    assert_eq!(from.field_ref.as_ref().unwrap().field_path, "status.podIP");
    assert_eq!(env["HERALD_ADVERTISE_URL"], "http://$(POD_IP):8081");
    assert_eq!(env["HERALD_PEERS"], "social-consumer-headless.apps.svc:8081");
    // Probes stay on the API port (the metrics port may be closed to the kubelet's peers).
    for c in [producer, consumer] {
        for probe in [&c.readiness_probe, &c.liveness_probe] {
            let port = &probe.as_ref().unwrap().http_get.as_ref().unwrap().port;
            assert_eq!(port, &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into()));
        }
    }
    assert_eq!(consumer.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/readyz"));
    assert_eq!(consumer.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/healthz"));

    // Labels, selectors and ownership.
    let labels = c.consumer_deployment.metadata.labels.as_ref().unwrap();
    for (k, v) in [
        ("app.kubernetes.io/name", "herald"),
        ("app.kubernetes.io/instance", "social"),
        ("app.kubernetes.io/component", "consumer"),
        ("app.kubernetes.io/managed-by", "herald-operator"),
        ("app.kubernetes.io/part-of", "herald"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "{k}");
    }
    let selector = c.consumer_service.spec.as_ref().unwrap().selector.as_ref().unwrap();
    assert_eq!(selector.get("app.kubernetes.io/component").map(String::as_str), Some("consumer"));
    assert!(!selector.contains_key("app.kubernetes.io/managed-by"), "selectors stay minimal and stable");
    for meta in [
        &c.producer_deployment.metadata,
        &c.producer_service.metadata,
        &c.consumer_deployment.metadata,
        &c.consumer_service.metadata,
        &c.consumer_headless_service.metadata,
        &c.consumer_pdb.metadata,
    ] {
        assert_eq!(meta.namespace.as_deref(), Some("apps"));
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("NotificationPipeline", "social", herald_operator::fixtures::UID)
        );
        assert_eq!(owner.controller, Some(true));
    }
    let headless = c.consumer_headless_service.spec.as_ref().unwrap();
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    assert_eq!(c.producer_service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port, 8080);
    assert_eq!(c.consumer_service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port, 8081);
}

#[test]
fn pods_run_under_the_restricted_pod_security_standard() {
    let c = build(&minimal(), 6);
    for d in [&c.producer_deployment, &c.consumer_deployment] {
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        let sc = container(d).security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert!(sc.privileged.is_none() && sc.capabilities.as_ref().unwrap().add.is_none());
    }
}

#[test]
fn the_consumer_deployment_runs_the_decided_count() {
    // How many is the scaling rule's decision (see `scaling`); the builder applies it as given.
    for n in [0, 1, 6, 12] {
        assert_eq!(replicas(&build(&minimal(), n).consumer_deployment), n);
    }
    assert_eq!(replicas(&build(&minimal(), 3).producer_deployment), 1, "the producer follows its own spec");
}

#[test]
fn consumers_roll_one_at_a_time_and_get_the_time_to_hand_partitions_off() {
    use herald_operator::build::desired::{CONSUMER_GRACE_SECONDS, HANDOFF_TIMEOUT_SECONDS};
    let c = build(&minimal(), 3);
    let spec = c.consumer_deployment.spec.as_ref().unwrap();
    let strategy = spec.strategy.as_ref().unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = strategy.rolling_update.as_ref().unwrap();
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    assert_eq!(
        (rolling.max_surge.clone(), rolling.max_unavailable.clone()),
        (Some(IntOrString::Int(1)), Some(IntOrString::Int(0)))
    );
    // The kubelet waits for the whole handoff (and the HTTP drain after it) before a SIGKILL.
    let grace = spec.template.spec.as_ref().unwrap().termination_grace_period_seconds.unwrap();
    assert_eq!(grace, CONSUMER_GRACE_SECONDS);
    assert!(grace >= HANDOFF_TIMEOUT_SECONDS + 5 + 10 + 10, "grace {grace}s");
    let env = env_map(container(&c.consumer_deployment));
    assert_eq!(env["HERALD_HANDOFF_TIMEOUT"], format!("{HANDOFF_TIMEOUT_SECONDS}s"));
    assert!(!env.contains_key("HERALD_STANDBY"), "no standbys unless the spec asks");
    // The producer keeps Kubernetes' default rollout and its own grace period.
    let producer = c.producer_deployment.spec.as_ref().unwrap();
    assert!(producer.strategy.is_none());
    assert_eq!(producer.template.spec.as_ref().unwrap().termination_grace_period_seconds, Some(30));

    let with = mk(serde_json::json!({"kafka": {"bootstrapServers": "kafka:9092"}, "consumer": {"standbyReplicas": 1}}));
    assert_eq!(env_map(container(&build(&with, 3).consumer_deployment))["HERALD_STANDBY"], "true");
}

#[test]
fn topic_group_images_and_properties_from_the_spec() {
    let p = mk(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092", "properties": {"security.protocol": "SSL", "socket.timeout.ms": "30000"}},
        "topic": {"name": "social-events", "management": "Admin", "partitions": 3},
        "producer": {"image": "custom/producer:2", "replicas": 2},
        "consumer": {"image": "custom/consumer:2", "groupId": "readers", "maxNotificationsPerUser": 7, "history": "7d"},
    }));
    let c = build(&p, 3);
    let producer = env_map(container(&c.producer_deployment));
    assert_eq!(producer["HERALD_TOPIC"], "social-events");
    assert_eq!(producer["HERALD_KAFKA_PROPERTIES"], "security.protocol=SSL,socket.timeout.ms=30000");
    assert_eq!(container(&c.producer_deployment).image.as_deref(), Some("custom/producer:2"));
    assert_eq!(replicas(&c.producer_deployment), 2);
    let consumer = env_map(container(&c.consumer_deployment));
    assert_eq!(consumer["HERALD_GROUP_ID"], "readers");
    assert_eq!(consumer["HERALD_MAX_PER_USER"], "7");
    assert_eq!(consumer["HERALD_HISTORY"], "7d");
    assert_eq!(consumer["HERALD_TOPIC"], "social-events");
    assert_eq!(container(&c.consumer_deployment).image.as_deref(), Some("custom/consumer:2"));
}

#[test]
fn the_deprecated_producer_token_and_the_users_config_map_are_mounted_read_only() {
    let p = mk(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092"},
        "producer": {
            "authTokenSecretRef": {"name": "send-token", "key": "token"},
            "usersConfigMapRef": {"name": "directory", "key": "people.json"},
        },
    }));
    let c = build(&p, 6);
    let producer = container(&c.producer_deployment);
    let env = env_map(producer);
    assert_eq!(env["HERALD_AUTH_TOKEN_FILE"], "/etc/herald/auth/token");
    assert_eq!(env["HERALD_USERS_FILE"], "/etc/herald/users/users.json");
    let mounts = producer.volume_mounts.as_ref().unwrap();
    assert!(mounts.iter().all(|m| m.read_only == Some(true)));
    let pod_volumes =
        c.producer_deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap().volumes.as_ref().unwrap();
    let secret = pod_volumes.iter().find_map(|v| v.secret.as_ref()).unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("send-token"));
    assert_eq!(secret.items.as_ref().unwrap()[0].key, "token");
    assert_eq!(secret.items.as_ref().unwrap()[0].path, "token");
    let cm = pod_volumes.iter().find_map(|v| v.config_map.as_ref()).unwrap();
    assert_eq!(cm.name, "directory");
    assert_eq!(cm.items.as_ref().unwrap()[0].key, "people.json");
    assert_eq!(cm.items.as_ref().unwrap()[0].path, "users.json");
    // The alias protects the consumers too now; the directory is the producer's alone.
    let consumer = env_map(container(&c.consumer_deployment));
    assert_eq!(consumer["HERALD_AUTH_TOKEN_FILE"], "/etc/herald/auth/token");
    assert!(!consumer.contains_key("HERALD_USERS_FILE"));
    assert_eq!(volumes(&c.consumer_deployment)["auth-token"], ("send-token".to_string(), vec!["token->token".into()]));
}

#[test]
fn spec_auth_reaches_both_roles_as_files_and_values() {
    let p = mk(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092"},
        "auth": {
            "tokenSecretRef": {"name": "backend", "key": "service-token"},
            "jwt": {"secretRef": {"name": "idp", "key": "hs256"}, "issuer": "https://id.example", "audience": "herald"},
        },
    }));
    let c = build(&p, 2);
    for d in [&c.producer_deployment, &c.consumer_deployment] {
        let env = env_map(container(d));
        assert_eq!(env["HERALD_AUTH_TOKEN_FILE"], "/etc/herald/auth/token");
        assert_eq!(env["HERALD_JWT_SECRET_FILE"], "/etc/herald/jwt/secret");
        assert_eq!(env["HERALD_JWT_ISSUER"], "https://id.example");
        assert_eq!(env["HERALD_JWT_AUDIENCE"], "herald");
        assert!(!env.contains_key("HERALD_JWT_PUBLIC_KEY_FILE"));
        let v = volumes(d);
        assert_eq!(v["auth-token"], ("backend".to_string(), vec!["service-token->token".to_string()]));
        assert_eq!(v["jwt-key"], ("idp".to_string(), vec!["hs256->secret".to_string()]));
        let m = mounts(container(d));
        assert_eq!((m["auth-token"].as_str(), m["jwt-key"].as_str()), ("/etc/herald/auth", "/etc/herald/jwt"));
        assert!(container(d).volume_mounts.iter().flatten().all(|m| m.read_only == Some(true)));
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        for v in pod.volumes.iter().flatten().filter_map(|v| v.secret.as_ref()) {
            assert_eq!(v.default_mode, Some(0o440), "{:?}", v.secret_name);
        }
    }

    let public = mk(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092"},
        "auth": {"jwt": {"publicKeySecretRef": {"name": "idp", "key": "es256.pem"}}},
    }));
    let c = build(&public, 2);
    for d in [&c.producer_deployment, &c.consumer_deployment] {
        let env = env_map(container(d));
        assert_eq!(env["HERALD_JWT_PUBLIC_KEY_FILE"], "/etc/herald/jwt/public-key.pem");
        for absent in ["HERALD_AUTH_TOKEN_FILE", "HERALD_JWT_SECRET_FILE", "HERALD_JWT_ISSUER", "HERALD_JWT_AUDIENCE"] {
            assert!(!env.contains_key(absent), "{absent}");
        }
        assert_eq!(volumes(d)["jwt-key"], ("idp".to_string(), vec!["es256.pem->public-key.pem".to_string()]));
    }
}

fn rules(policy: &NetworkPolicy) -> Vec<(serde_json::Value, Vec<String>)> {
    let spec = policy.spec.as_ref().unwrap();
    spec.ingress
        .iter()
        .flatten()
        .map(|r| {
            let ports = r.ports.iter().flatten().map(|p| serde_json::to_value(&p.port).unwrap().to_string()).collect();
            (serde_json::to_value(&r.from).unwrap(), ports)
        })
        .collect()
}

#[test]
fn network_policies_open_the_api_to_the_namespace_and_the_named_peers_and_metrics_to_the_scrapers() {
    let p = mk(serde_json::json!({
        "kafka": {"bootstrapServers": "k:9092"},
        "networkPolicy": {
            "readers": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}},
                         "podSelector": {"matchLabels": {"app": "api-gateway"}}}],
            "senders": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
        },
    }));
    let mut defaults = operator_defaults();
    defaults.metrics_namespaces =
        herald_operator::build::selector::parse("kubernetes.io/metadata.name=monitoring").unwrap();
    let c = children(&valid(&p), &defaults, &Observed::new(2, PEER_UID));
    let monitoring =
        serde_json::json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]);
    let same_namespace = serde_json::json!({"podSelector": {}});

    let consumer = c.consumer_network_policy.as_ref().unwrap();
    assert_eq!(consumer.metadata.name.as_deref(), Some("social-consumer"));
    assert_eq!(consumer.metadata.owner_references.as_ref().unwrap()[0].uid, herald_operator::fixtures::UID);
    let spec = consumer.spec.as_ref().unwrap();
    assert_eq!(
        serde_json::to_value(&spec.pod_selector).unwrap(),
        serde_json::json!({"matchLabels": {"app.kubernetes.io/instance": "social", "app.kubernetes.io/name": "herald",
            "app.kubernetes.io/component": "consumer"}})
    );
    assert_eq!(spec.policy_types.as_deref(), Some(&["Ingress".to_string()][..]), "egress (Kafka) is not restricted");
    assert_eq!(
        rules(consumer),
        vec![
            (
                serde_json::json!([same_namespace, {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}},
                    "podSelector": {"matchLabels": {"app": "api-gateway"}}}]),
                vec!["\"http\"".to_string()]
            ),
            (monitoring.clone(), vec!["\"metrics\"".to_string()]),
        ]
    );

    let producer = c.producer_network_policy.as_ref().unwrap();
    assert_eq!(producer.metadata.name.as_deref(), Some("social-producer"));
    let selector = producer.spec.as_ref().unwrap().pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
    assert_eq!(selector["app.kubernetes.io/component"], "producer");
    assert_eq!(
        rules(producer),
        vec![
            (
                serde_json::json!([same_namespace, {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]),
                vec!["\"http\"".to_string()]
            ),
            (monitoring, vec!["\"metrics\"".to_string()]),
        ]
    );
    // The named ports are the pods' own.
    assert!(ports(container(&c.consumer_deployment)).contains_key("metrics"));

    // The default: metrics from any namespace; the API from the pipeline's namespace only.
    let c = build(&minimal(), 1);
    assert_eq!(
        rules(c.consumer_network_policy.as_ref().unwrap()),
        vec![
            (serde_json::json!([same_namespace]), vec!["\"http\"".to_string()]),
            (serde_json::json!([{"namespaceSelector": {}}]), vec!["\"metrics\"".to_string()]),
        ]
    );

    let off = mk(serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}, "networkPolicy": {"enabled": false}}));
    let c = build(&off, 1);
    assert!(c.producer_network_policy.is_none() && c.consumer_network_policy.is_none());
}

#[test]
fn pipelines_that_cannot_be_built_say_why() {
    let p =
        mk(serde_json::json!({"kafka": {"bootstrapServers": "k:9092", "properties": {"ssl.cipher.suites": "A,B"}}}));
    assert_eq!(
        validate(&p, &TenancyPolicy::default()).unwrap_err(),
        SpecError::CommaInProperty { key: "ssl.cipher.suites".into() }
    );
    let mut no_uid = minimal();
    no_uid.metadata.uid = None;
    assert_eq!(validate(&no_uid, &TenancyPolicy::default()).unwrap_err(), SpecError::MissingMetadata("uid"));
}

fn volumes(d: &Deployment) -> BTreeMap<String, (String, Vec<String>)> {
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    pod.volumes
        .iter()
        .flatten()
        .filter_map(|v| {
            let s = v.secret.as_ref()?;
            let keys = s.items.iter().flatten().map(|i| format!("{}->{}", i.key, i.path)).collect();
            Some((v.name.clone(), (s.secret_name.clone()?, keys)))
        })
        .collect()
}

fn mounts(c: &Container) -> BTreeMap<String, String> {
    c.volume_mounts.iter().flatten().map(|m| (m.name.clone(), m.mount_path.clone())).collect()
}

#[test]
fn scram_over_tls_with_strimzi_users_and_the_cluster_ca() {
    let p = mk(serde_json::json!({"kafka": {
        "bootstrapServers": "events-kafka-bootstrap.apps:9093",
        "clusterRef": {"name": "events"},
        "tls": {},
        "authentication": {"type": "scram-sha-512"},
        "properties": {"linger.ms": "5"},
    }}));
    let c = build(&p, 3);
    for (d, user) in [(&c.producer_deployment, "social-producer"), (&c.consumer_deployment, "social-consumer")] {
        let env = env_map(container(d));
        assert_eq!(
            env["HERALD_KAFKA_PROPERTIES"],
            format!(
                "linger.ms=5,security.protocol=SASL_SSL,ssl.ca.location=/etc/herald/kafka-ca/ca.crt,\
                 sasl.mechanism=SCRAM-SHA-512,sasl.username={user}"
            )
        );
        assert_eq!(env["HERALD_KAFKA_SASL_PASSWORD_FILE"], "/etc/herald/kafka-user/password");
        let v = volumes(d);
        assert_eq!(v["kafka-ca"], ("events-cluster-ca-cert".to_string(), vec!["ca.crt->ca.crt".to_string()]));
        assert_eq!(v["kafka-user"], (user.to_string(), vec!["password->password".to_string()]));
        let m = mounts(container(d));
        assert_eq!(m["kafka-ca"], "/etc/herald/kafka-ca");
        assert_eq!(m["kafka-user"], "/etc/herald/kafka-user");
        assert!(container(d).volume_mounts.iter().flatten().all(|m| m.read_only == Some(true)));
        // The password itself is never in the pod spec.
        assert!(!serde_json::to_string(d).unwrap().contains("sasl.password"));
    }
}

#[test]
fn mutual_tls_with_named_secrets_and_a_named_ca() {
    let p = mk(serde_json::json!({"kafka": {
        "bootstrapServers": "kafka.example:9093",
        "tls": {"caSecretRef": {"name": "corp-ca", "key": "root.pem"}},
        "authentication": {"type": "tls", "producerSecretName": "notify-writer", "consumerSecretName": "notify-reader"},
    }}));
    let c = build(&p, 2);
    let env = env_map(container(&c.consumer_deployment));
    assert_eq!(
        env["HERALD_KAFKA_PROPERTIES"],
        "security.protocol=SSL,ssl.ca.location=/etc/herald/kafka-ca/ca.crt,\
         ssl.certificate.location=/etc/herald/kafka-user/user.crt,ssl.key.location=/etc/herald/kafka-user/user.key"
    );
    assert!(!env.contains_key("HERALD_KAFKA_SASL_PASSWORD_FILE"));
    let v = volumes(&c.consumer_deployment);
    assert_eq!(v["kafka-ca"], ("corp-ca".to_string(), vec!["root.pem->ca.crt".to_string()]));
    assert_eq!(
        v["kafka-user"],
        ("notify-reader".to_string(), vec!["user.crt->user.crt".to_string(), "user.key->user.key".to_string()])
    );
    assert_eq!(volumes(&c.producer_deployment)["kafka-user"].0, "notify-writer");
}

#[test]
fn kafka_security_that_cannot_work_says_why() {
    // Strimzi writes the users' Secrets into the cluster's namespace, which pods elsewhere cannot mount.
    let elsewhere = mk(serde_json::json!({"kafka": {
        "bootstrapServers": "k:9092",
        "clusterRef": {"name": "events", "namespace": "kafka"},
        "authentication": {"type": "scram-sha-512"},
    }}));
    let err = validate(&elsewhere, &TenancyPolicy::default()).unwrap_err();
    assert_eq!(err, SpecError::CredentialsInOtherNamespace { cluster: "kafka".into() });
    assert!(err.to_string().contains("copy the Secrets here"), "{err}");
    // With named Secrets and CA in the pipeline's namespace, the cluster may live anywhere.
    let named = mk(serde_json::json!({"kafka": {
        "bootstrapServers": "k:9093",
        "clusterRef": {"name": "events", "namespace": "kafka"},
        "tls": {"caSecretRef": {"name": "events-ca", "key": "ca.crt"}},
        "authentication": {"type": "scram-sha-512", "producerSecretName": "w", "consumerSecretName": "r"},
    }}));
    assert!(validate(&named, &TenancyPolicy::default()).is_ok());
    // The security properties have one source.
    let twice = mk(serde_json::json!({"kafka": {
        "bootstrapServers": "k:9093",
        "clusterRef": {"name": "events"},
        "tls": {},
        "properties": {"security.protocol": "PLAINTEXT"},
    }}));
    assert_eq!(
        validate(&twice, &TenancyPolicy::default()).unwrap_err(),
        SpecError::SecurityProperty { key: "security.protocol".into() }
    );
}

/// Kubernetes' name rules (apimachinery validation): a DNS-1035 label (Services), a DNS-1123
/// subdomain (most other objects), and label values.
fn dns1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() <= 63
        && b.first().is_some_and(u8::is_ascii_lowercase)
        && b.last().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            b.first().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && b.last().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn label_value_ok(s: &str) -> bool {
    let b = s.as_bytes();
    s.is_empty()
        || (s.len() <= 63
            && b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.last().is_some_and(u8::is_ascii_alphanumeric)
            && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')))
}

/// Every label map of an object as JSON (metadata, selectors, pod templates).
fn label_maps(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                if matches!(k.as_str(), "labels" | "matchLabels" | "selector")
                    && let Some(labels) = child.as_object()
                {
                    for (lk, lv) in labels {
                        if let Some(lv) = lv.as_str() {
                            out.push((lk.clone(), lv.to_string()));
                        }
                    }
                }
                label_maps(child, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| label_maps(i, out)),
        _ => {}
    }
}

#[test]
fn the_longest_valid_name_builds_children_kubernetes_accepts() {
    use herald_operator::build::strimzi::{GROUP, KIND, USER_KIND, kafka_topic, kafka_users};
    use kube::api::{ApiResource, GroupVersionKind};
    let name = format!("a{}9", "b".repeat(herald_api::labels::MAX_PIPELINE_NAME - 2));
    let namespace = "n".repeat(63);
    let p = herald_operator::fixtures::pipeline(
        &name,
        &namespace,
        serde_json::json!({"kafka": {"bootstrapServers": "k:9093", "clusterRef": {"name": "c".repeat(63)},
            "tls": {}, "authentication": {"type": "scram-sha-512"}}}),
    );
    assert!(herald_api::labels::pipeline_name_problem(&name).is_none());
    let c = build(&p, 3);
    let services = [&c.producer_service, &c.consumer_service, &c.consumer_headless_service];
    for s in services {
        let n = s.metadata.name.as_deref().unwrap();
        assert!(dns1035_label(n), "Service name {n:?} is not a DNS-1035 label");
    }
    assert_eq!(c.consumer_headless_service.metadata.name.as_ref().unwrap().len(), 63, "the longest child fits exactly");
    let api = |kind: &str| ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, "v1beta2", kind));
    let mut objects: Vec<serde_json::Value> = vec![
        serde_json::to_value(&c.producer_deployment).unwrap(),
        serde_json::to_value(&c.consumer_deployment).unwrap(),
        serde_json::to_value(&c.consumer_pdb).unwrap(),
        serde_json::to_value(c.producer_network_policy.as_ref().unwrap()).unwrap(),
        serde_json::to_value(c.consumer_network_policy.as_ref().unwrap()).unwrap(),
    ];
    objects.extend(services.iter().map(|s| serde_json::to_value(s).unwrap()));
    objects.extend(kafka_topic(&valid(&p), &api(KIND)).map(|t| serde_json::to_value(t).unwrap()));
    objects.extend(kafka_users(&valid(&p), &api(USER_KIND)).into_iter().map(|u| serde_json::to_value(u).unwrap()));
    assert_eq!(objects.len(), 11);
    let peer_token = herald_operator::build::names::peer_token_secret(&name);
    assert!(dns1123_subdomain(&peer_token), "{peer_token}");
    for o in &objects {
        let n = o["metadata"]["name"].as_str().unwrap();
        assert!(dns1123_subdomain(n), "{} name {n:?} is not a DNS-1123 subdomain", o["kind"]);
        let mut labels = Vec::new();
        label_maps(o, &mut labels);
        assert!(!labels.is_empty());
        for (k, v) in labels {
            assert!(label_value_ok(&v), "{} {n}: label {k}={v:?} is not a valid label value", o["kind"]);
        }
    }
}

#[test]
fn names_whose_children_kubernetes_would_refuse_are_refused() {
    for bad in ["a".repeat(46), "social.v2".into(), "1social".into()] {
        let p = herald_operator::fixtures::pipeline(
            &bad,
            "apps",
            serde_json::json!({"kafka": {"bootstrapServers": "k:9092"}}),
        );
        match validate(&p, &TenancyPolicy::default()) {
            Err(SpecError::InvalidName(message)) => assert!(message.contains("metadata.name"), "{message}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn a_grown_topics_partition_history_goes_to_the_producer_and_the_consumers() {
    let mut observed = Observed::new(3, PEER_UID);
    observed.partition_history = vec![3];
    let c = children(&valid(&minimal()), &operator_defaults(), &observed);
    for d in [&c.producer_deployment, &c.consumer_deployment] {
        assert!(!env_map(container(d)).contains_key("HERALD_PARTITION_HISTORY"), "one count: nothing to merge");
    }
    observed.partition_history = vec![3, 6, 12];
    let c = children(&valid(&minimal()), &operator_defaults(), &observed);
    for d in [&c.producer_deployment, &c.consumer_deployment] {
        assert_eq!(env_map(container(d))["HERALD_PARTITION_HISTORY"], "3,6,12");
    }
}
