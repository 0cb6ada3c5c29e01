//! The topic as a Strimzi `KafkaTopic`: which API version the cluster serves, the object (pure)
//! and its readiness.

use herald_api::NotificationPipeline;
use herald_api::labels::MANAGED_BY;
use kube::api::{ApiResource, DynamicObject};
use kube::core::ObjectMeta;

use crate::desired::topic_name;

pub const GROUP: &str = "kafka.strimzi.io";
pub const KIND: &str = "KafkaTopic";
/// Label linking a pipeline's KafkaTopic back to it (it lives in another namespace, so no owner
/// reference can).
pub const PIPELINE_LABEL: &str = "herald.dev/pipeline";

/// The KafkaTopic API the cluster serves, `v1` when present, else `v1beta2`; `None` when
/// Strimzi is not installed.
pub async fn kafka_topic_api(client: &kube::Client) -> Result<Option<ApiResource>, kube::Error> {
    let group = match kube::discovery::group(client, GROUP).await {
        Ok(group) => group,
        Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(None),
        Err(kube::Error::Discovery(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    for version in ["v1", "v1beta2"] {
        if let Some((ar, _)) = group.versioned_resources(version).into_iter().find(|(ar, _)| ar.kind == KIND) {
            return Ok(Some(ar));
        }
    }
    Ok(None)
}

/// The namespace of the Strimzi cluster: `clusterRef.namespace`, else the pipeline's.
pub fn cluster_namespace(pipeline: &NotificationPipeline) -> String {
    pipeline
        .spec
        .kafka
        .cluster_ref
        .as_ref()
        .and_then(|c| c.namespace.clone())
        .or_else(|| pipeline.metadata.namespace.clone())
        .unwrap_or_default()
}

/// `<pipeline namespace>.<pipeline name>`: unique across namespaces (namespaces have no dots).
pub fn kafka_topic_name(pipeline: &NotificationPipeline) -> String {
    format!(
        "{}.{}",
        pipeline.metadata.namespace.as_deref().unwrap_or_default(),
        pipeline.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The KafkaTopic of `pipeline`, or `None` without a `clusterRef`.
pub fn kafka_topic(pipeline: &NotificationPipeline, ar: &ApiResource) -> Option<DynamicObject> {
    let cluster = pipeline.spec.kafka.cluster_ref.as_ref()?;
    let topic = &pipeline.spec.topic;
    let mut obj = DynamicObject::new(&kafka_topic_name(pipeline), ar).within(&cluster_namespace(pipeline));
    obj.metadata = ObjectMeta {
        labels: Some(
            [
                ("strimzi.io/cluster".to_string(), cluster.name.clone()),
                ("app.kubernetes.io/managed-by".to_string(), MANAGED_BY.to_string()),
                (PIPELINE_LABEL.to_string(), pipeline.metadata.name.clone().unwrap_or_default()),
            ]
            .into(),
        ),
        ..obj.metadata
    };
    obj.data = serde_json::json!({
        "spec": {
            "topicName": topic_name(pipeline),
            "partitions": topic.partitions,
            "replicas": topic.replicas,
            "config": topic.config,
        }
    });
    Some(obj)
}

/// Whether Strimzi reports the KafkaTopic ready at its current generation, with why not.
pub fn readiness(obj: &DynamicObject) -> (bool, String, String) {
    let status = &obj.data["status"];
    let generation = obj.metadata.generation.unwrap_or(0);
    let observed = status["observedGeneration"].as_i64().unwrap_or(-1);
    let ready = status["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "Ready")).cloned();
    match ready {
        _ if observed < generation => {
            (false, "TopicPending".into(), "Strimzi has not reconciled the current KafkaTopic yet".into())
        }
        Some(c) if c["status"] == "True" => (true, "TopicReady".into(), "Strimzi reports the KafkaTopic ready".into()),
        Some(c) => (
            false,
            c["reason"].as_str().unwrap_or("TopicNotReady").to_string(),
            c["message"].as_str().unwrap_or("Strimzi reports the KafkaTopic not ready").to_string(),
        ),
        None => (false, "TopicPending".into(), "Strimzi has not reported on the KafkaTopic yet".into()),
    }
}
