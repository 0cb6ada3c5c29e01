//! The order of a rollout across the two Deployments (pure): when the producer's pods and the
//! consumers' pods both change (an upgrade), the consumers roll first and the producer's new pod
//! template is applied only once the consumers' rollout is complete. A newer producer may write
//! record kinds or fields older consumers skip (the record contract's version rule); rolling the
//! consumers first keeps that window to nothing.
//!
//! Whether the producer's pods would change is told by a digest of the pod template the operator
//! last applied, kept in an annotation on the Deployment (the API server fills defaults into the
//! template, so comparing templates themselves would always differ).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;

/// Annotation on each Deployment: the digest of the pod template the operator applied.
pub const TEMPLATE_DIGEST_ANNOTATION: &str = "herald.dev/pod-template-digest";

/// The digest of `deployment`'s pod template as the operator builds it: SHA-256 of its JSON,
/// the first 16 bytes in hex.
pub fn template_digest(deployment: &Deployment) -> String {
    let template = deployment.spec.as_ref().map(|s| &s.template);
    let bytes = serde_json::to_vec(&template).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    digest.as_ref().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// `deployment` with its template's digest in [`TEMPLATE_DIGEST_ANNOTATION`].
pub fn with_digest(mut deployment: Deployment) -> Deployment {
    let digest = template_digest(&deployment);
    deployment
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(TEMPLATE_DIGEST_ANNOTATION.to_string(), digest);
    deployment
}

/// Whether the Deployment's rollout is complete, as `kubectl rollout status` tells it: the
/// controller saw the current generation, every replica runs the current template and is
/// available, and no old replica is left.
pub fn rollout_complete(deployment: &Deployment) -> bool {
    let wanted = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = deployment.status.as_ref() else { return wanted == 0 };
    let updated = status.updated_replicas.unwrap_or(0);
    status.observed_generation >= deployment.metadata.generation
        && updated >= wanted
        && status.replicas.unwrap_or(0) <= updated
        && status.available_replicas.unwrap_or(0) >= updated
}

/// Whether applying `desired` would change the pods of `existing` (a Deployment the operator
/// applied before this annotation existed counts as changing).
pub fn template_changes(existing: &Deployment, desired: &Deployment) -> bool {
    let digest = |d: &Deployment| d.metadata.annotations.as_ref()?.get(TEMPLATE_DIGEST_ANNOTATION).cloned();
    digest(existing) != digest(desired)
}

/// Whether the producer's new template waits: the consumers (as just applied) are still rolling
/// out and the producer exists and would change. A new producer is never held.
pub fn hold_producer(
    consumers: Option<&Deployment>,
    existing_producer: Option<&Deployment>,
    desired: &Deployment,
) -> bool {
    let consumers_rolling = consumers.is_some_and(|c| !rollout_complete(c));
    consumers_rolling && existing_producer.is_some_and(|p| template_changes(p, desired))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(image: &str, generation: i64, status: serde_json::Value) -> Deployment {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "d", "generation": generation},
            "spec": {"replicas": 3, "selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}},
            "status": status,
        }))
        .unwrap();
        with_digest(d)
    }

    fn done(generation: i64) -> serde_json::Value {
        serde_json::json!({"observedGeneration": generation, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3})
    }

    #[test]
    fn a_rollout_is_complete_when_every_replica_is_updated_and_available_and_no_old_one_is_left() {
        assert!(rollout_complete(&deployment("a", 2, done(2))));
        assert!(!rollout_complete(&deployment("a", 3, done(2))), "generation not observed yet");
        let surging =
            serde_json::json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3});
        assert!(!rollout_complete(&deployment("a", 2, surging)), "an old replica left");
        let starting =
            serde_json::json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2});
        assert!(!rollout_complete(&deployment("a", 2, starting)), "an updated replica not available");
        let mut fresh = deployment("a", 1, serde_json::Value::Null);
        fresh.status = None;
        assert!(!rollout_complete(&fresh), "no status yet");
    }

    #[test]
    fn the_digest_follows_the_pod_template_only() {
        let a = deployment("a", 1, done(1));
        let mut scaled = a.clone();
        scaled.spec.as_mut().unwrap().replicas = Some(9);
        assert_eq!(template_digest(&a), template_digest(&scaled));
        assert_ne!(template_digest(&a), template_digest(&deployment("b", 1, done(1))));
        assert_eq!(template_digest(&a).len(), 32);
    }

    #[test]
    fn the_producer_waits_only_for_rolling_consumers_and_only_when_it_changes() {
        let (old, new) = (deployment("p1", 1, done(1)), deployment("p2", 1, done(1)));
        let rolling = deployment("c2", 2, done(1));
        let rolled = deployment("c2", 2, done(2));
        assert!(hold_producer(Some(&rolling), Some(&old), &new));
        assert!(!hold_producer(Some(&rolled), Some(&old), &new), "consumers done");
        assert!(!hold_producer(Some(&rolling), Some(&new), &new), "producer unchanged");
        assert!(!hold_producer(Some(&rolling), None, &new), "a new producer");
        assert!(!hold_producer(None, Some(&old), &new), "no consumers (topic not ready)");
        let mut unannotated = old.clone();
        unannotated.metadata.annotations = None;
        assert!(hold_producer(Some(&rolling), Some(&unannotated), &new), "applied before the digest existed");
    }
}
