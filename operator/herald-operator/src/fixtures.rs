//! Fixtures for tests and benchmarks (feature `fixtures`): pipeline builders, the example
//! pipelines of `deploy/examples/`, every Kafka-security combination a pipeline can ask for, and
//! the repository root. One place, so that every test and the operator bench build pipelines the
//! same way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use herald_api::NotificationPipeline;
use serde::Deserialize;

/// The uid the API server would have given the fixtures' pipelines.
pub const UID: &str = "00000000-0000-0000-0000-000000000000";

/// The repository root: the first directory holding `Cargo.lock` above the crate being tested
/// (read at run time, so that a test binary built from another checkout finds this one).
pub fn repo_root() -> PathBuf {
    let start =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    start
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").exists())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// A pipeline `name` in `namespace` as the API server would hand it over (uid, generation 1).
pub fn pipeline(name: &str, namespace: &str, spec: serde_json::Value) -> NotificationPipeline {
    let mut p: NotificationPipeline = serde_json::from_value(serde_json::json!({
        "apiVersion": "herald.dev/v1alpha1",
        "kind": "NotificationPipeline",
        "metadata": {"name": name, "namespace": namespace, "uid": UID, "generation": 1},
        "spec": spec,
    }))
    .expect("a valid NotificationPipeline");
    p.metadata.generation = Some(1);
    p
}

/// `social` in `apps` with `spec`.
pub fn social(spec: serde_json::Value) -> NotificationPipeline {
    pipeline("social", "apps", spec)
}

/// Every NotificationPipeline in `deploy/examples/`, labelled by file name. A pipeline without a
/// namespace (applied with `kubectl apply -n`) gets `apps`; each gets [`UID`].
pub fn example_pipelines() -> Vec<(String, NotificationPipeline)> {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("deploy/examples"))
        .expect("deploy/examples")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut found = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("example file");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_json::Value::deserialize(doc).expect("example YAML");
            if value["kind"] == "NotificationPipeline" {
                let mut p: NotificationPipeline = serde_json::from_value(value).expect("example pipeline");
                p.metadata.namespace.get_or_insert_with(|| "apps".to_string());
                p.metadata.uid = Some(UID.to_string());
                p.metadata.generation = Some(1);
                let file = path.file_name().expect("file name").to_string_lossy().into_owned();
                found.push((file, p));
            }
        }
    }
    found
}

/// Every combination of Kafka TLS (none, the Strimzi cluster CA, an own CA), Kafka
/// authentication (none; SCRAM or a client certificate, each from a Strimzi KafkaUser or a named
/// Secret) and the producer's optional mounts (bearer token, users ConfigMap), that the CRD
/// accepts. Labelled by what they combine.
pub fn security_variants() -> Vec<(String, NotificationPipeline)> {
    let tls_options = [
        ("no TLS", None),
        ("TLS with the cluster CA", Some(serde_json::json!({}))),
        ("TLS with an own CA", Some(serde_json::json!({"caSecretRef": {"name": "corp-ca", "key": "root.pem"}}))),
    ];
    let auth_options = [
        ("no authentication", None),
        ("SCRAM from KafkaUsers", Some(serde_json::json!({"type": "scram-sha-512"}))),
        (
            "SCRAM from named Secrets",
            Some(
                serde_json::json!({"type": "scram-sha-512", "producerSecretName": "writer", "consumerSecretName": "reader"}),
            ),
        ),
        ("client certificates from KafkaUsers", Some(serde_json::json!({"type": "tls"}))),
        (
            "client certificates from named Secrets",
            Some(serde_json::json!({"type": "tls", "producerSecretName": "writer", "consumerSecretName": "reader"})),
        ),
    ];
    let mut variants = Vec::new();
    for (tls_label, tls) in &tls_options {
        for (auth_label, auth) in &auth_options {
            let client_certificate = auth.as_ref().is_some_and(|a| a["type"] == "tls");
            if client_certificate && tls.is_none() {
                continue; // refused by the CRD: a client certificate needs TLS
            }
            for producer_mounts in [false, true] {
                let mut kafka = serde_json::json!({
                    "bootstrapServers": "events-kafka-bootstrap:9093",
                    "clusterRef": {"name": "events"},
                });
                if let Some(tls) = tls {
                    kafka["tls"] = tls.clone();
                }
                if let Some(auth) = auth {
                    kafka["authentication"] = auth.clone();
                }
                let mut spec = serde_json::json!({"kafka": kafka});
                let mut label = format!("{tls_label}, {auth_label}");
                if producer_mounts {
                    spec["producer"] = serde_json::json!({
                        "authTokenSecretRef": {"name": "send-token", "key": "token"},
                        "usersConfigMapRef": {"name": "users", "key": "users.json"},
                    });
                    label.push_str(", producer token and users");
                }
                variants.push((label, social(spec)));
            }
        }
    }
    variants
}
