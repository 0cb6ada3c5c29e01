//! The finalizer and what it guards. A pipeline's children go with it through owner references;
//! only a Strimzi KafkaTopic with `deletionPolicy: Delete` (in the cluster's namespace, out of
//! reach of owner references) needs the operator at deletion, so only such a pipeline carries the
//! finalizer. A cleanup that keeps failing is retried with backoff for at most the cleanup timeout;
//! then the finalizer is released with a Warning Event naming what was left behind, so that a
//! pipeline (and its namespace) never stays Terminating.

use herald_api::{DeletionPolicy, NotificationPipeline, TopicManagement};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::{Context, Error, events, lock};
use crate::build::names::{self, FINALIZER};
use crate::build::strimzi;
use crate::build::validate::ValidPipeline;
use crate::kafka::admin::Topics;

/// Whether deleting `p` needs the operator: a Strimzi KafkaTopic to delete with it.
fn needs_finalizer(p: &NotificationPipeline) -> bool {
    p.spec.topic.management == TopicManagement::Strimzi
        && p.spec.topic.deletion_policy == DeletionPolicy::Delete
        && p.spec.kafka.cluster_ref.is_some()
}

fn finalizer_index(p: &NotificationPipeline) -> Option<usize> {
    p.finalizers().iter().position(|f| f == FINALIZER)
}

/// Adds the finalizer when the pipeline needs it and removes it when it does not (any more).
pub async fn keep_finalizer_only_when_needed<T>(pipeline: &ValidPipeline, ctx: &Context<T>) -> Result<(), Error> {
    let p = &pipeline.pipeline;
    match (needs_finalizer(p), finalizer_index(p)) {
        (true, None) => {
            let patch = if p.finalizers().is_empty() {
                serde_json::json!([{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
            } else {
                serde_json::json!([{"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}])
            };
            json_patch(p, ctx, patch).await
        }
        (false, Some(i)) => remove_finalizer(p, ctx, i).await,
        _ => Ok(()),
    }
}

async fn remove_finalizer<T>(p: &NotificationPipeline, ctx: &Context<T>, index: usize) -> Result<(), Error> {
    let path = format!("/metadata/finalizers/{index}");
    json_patch(
        p,
        ctx,
        serde_json::json!([{"op": "test", "path": path, "value": FINALIZER}, {"op": "remove", "path": path}]),
    )
    .await
}

async fn json_patch<T>(p: &NotificationPipeline, ctx: &Context<T>, patch: serde_json::Value) -> Result<(), Error> {
    let api: Api<NotificationPipeline> = Api::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default());
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| Error::Finalizer(kube::Error::SerdeError(e)))?;
    api.patch(&p.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch)).await.map_err(Error::Finalizer)?;
    Ok(())
}

/// Deletes the pipeline's KafkaTopic if it is there and this pipeline's.
async fn delete_kafka_topic<T>(p: &NotificationPipeline, ctx: &Context<T>) -> Result<(), Error> {
    let served = ctx.strimzi.served(&ctx.client).await.map_err(Error::Discovery)?;
    let Some(ar) = served.topic else { return Ok(()) };
    let name = names::kafka_topic_name(p);
    let namespace = names::cluster_namespace(p);
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &namespace, &ar);
    let Some(existing) =
        api.get_opt(&name).await.map_err(|source| Error::DeleteTopic { name: name.clone(), source })?
    else {
        return Ok(());
    };
    // The same rule the topic step applies: a KafkaTopic labelled for a pipeline of this name in
    // another namespace is not this pipeline's.
    if !strimzi::kafka_topic_is_ours(&existing.metadata, &p.namespace().unwrap_or_default(), &p.name_any()) {
        tracing::warn!(namespace, kafka_topic = name, "KafkaTopic is not this pipeline's; not deleting it");
        return Ok(());
    }
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {
            tracing::info!(namespace, kafka_topic = name, pipeline = p.name_any(), "KafkaTopic deleted");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(source) => Err(Error::DeleteTopic { name, source }),
    }
}

/// A pipeline being deleted: forget it, delete its KafkaTopic when it asked for that, release
/// the finalizer.
pub async fn on_delete<T: Topics>(p: &NotificationPipeline, ctx: &Context<T>) -> Result<Action, Error> {
    ctx.forget(&p.namespace().unwrap_or_default(), &p.name_any());
    let Some(index) = finalizer_index(p) else { return Ok(Action::await_change()) };
    if needs_finalizer(p)
        && let Err(error) = delete_kafka_topic(p, ctx).await
    {
        let deleting_since = p.metadata.deletion_timestamp.as_ref().map(|t| t.0).unwrap_or_else(|| (ctx.clock)());
        let elapsed = (ctx.clock)().duration_since(deleting_since);
        let timeout = k8s_openapi::jiff::SignedDuration::try_from(ctx.settings.cleanup_timeout).unwrap_or_default();
        if elapsed < timeout {
            return Err(error);
        }
        let note = format!(
            "KafkaTopic {}/{} was left behind: cleanup kept failing for {:?} ({error}); the finalizer is released so that the pipeline can go",
            names::cluster_namespace(p),
            names::kafka_topic_name(p),
            ctx.settings.cleanup_timeout
        );
        tracing::warn!(namespace = p.namespace().unwrap_or_default(), pipeline = p.name_any(), %error, "cleanup abandoned");
        events::publish(p, ctx, EventType::Warning, "CleanupAbandoned", "Delete", note).await;
    }
    remove_finalizer(p, ctx, index).await?;
    Ok(Action::await_change())
}

impl<T> Context<T> {
    /// Forgets everything the operator keeps about a pipeline that is going away: its lag
    /// registration, metric series, scaling history, backoff and warnings.
    pub fn forget(&self, namespace: &str, name: &str) {
        let key = format!("{namespace}/{name}");
        self.prober.unregister(&key);
        self.metrics.forget(namespace, name);
        lock(&self.scaling).remove(&key);
        lock(&self.warned).remove(&key);
        self.backoff.succeeded(&key);
    }
}
