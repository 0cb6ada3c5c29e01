//! Apply the children in the order [`Children::in_order`] declares, and adopt nothing: an object
//! of a child's name that this pipeline does not control is left untouched and reported as a
//! [`Conflict`], found by a check of the same list before anything is applied.

use std::fmt::Debug;

use herald_api::labels::{Component, FIELD_MANAGER};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Context, Error};
use crate::build::desired::{Child, ChildKind, Children};
use crate::build::validate::ValidPipeline;
use crate::build::{rollout, strimzi};
use crate::kafka::admin::Topics;

/// Who controls an object that has (or would have) a child's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// This pipeline.
    Ours,
    /// A pipeline of the same name and namespace that was deleted (a different uid): its
    /// children are this pipeline's, not yet collected.
    Predecessor,
    /// Anyone or anything else (or nothing): how.
    Foreign(String),
}

/// Who controls the object with metadata `meta`, from this pipeline's point of view.
pub fn owner_of(meta: &ObjectMeta, pipeline: &ValidPipeline) -> Owner {
    let controller = meta.owner_references.iter().flatten().find(|r| r.controller == Some(true));
    match controller {
        Some(r) if r.uid == pipeline.uid => Owner::Ours,
        Some(r)
            if r.kind == "NotificationPipeline"
                && r.api_version.starts_with("herald.dev/")
                && r.name == pipeline.name =>
        {
            Owner::Predecessor
        }
        Some(r) => Owner::Foreign(format!("controlled by {} {}", r.kind, r.name)),
        None => Owner::Foreign("not controlled by any object".into()),
    }
}

/// An object that has a child's name but is not this pipeline's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub why: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}/{} exists and is not this pipeline's ({}); it is left as it is. Rename or delete it, then annotate the pipeline with {} to retry",
            self.kind,
            self.namespace,
            self.name,
            self.why,
            super::RECONCILE_REQUEST
        )
    }
}

/// What the apply step applied.
pub struct Applied {
    pub producer: Deployment,
    pub consumer: Option<Deployment>,
    /// The producer's new pod template waits for the consumers' rollout ([`rollout`]).
    pub producer_held: bool,
}

/// What a namespaced child kind needs for the generic steps.
pub trait ChildResource:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + k8s_openapi::Resource
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
{
}

impl<K> ChildResource for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
{
}

/// Whether the `K` object `name` is free for this pipeline: absent, or controlled by it (or its
/// predecessor). The controller's index of watched children answers for objects it knows this
/// pipeline controls; otherwise the object's metadata is read.
async fn check<K: ChildResource, T>(
    pipeline: &ValidPipeline,
    ctx: &Context<T>,
    name: &str,
) -> Result<Option<Conflict>, Error> {
    let kind = K::KIND;
    let known = ctx.children.as_ref().and_then(|index| index.controller(kind, &pipeline.namespace, name));
    if known.is_some_and(|uid| uid == pipeline.uid) {
        return Ok(None);
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &pipeline.namespace);
    let meta =
        api.get_metadata_opt(name).await.map_err(|source| Error::Read { kind, name: name.to_string(), source })?;
    Ok(match meta.map(|m| owner_of(&m.metadata, pipeline)) {
        Some(Owner::Foreign(why)) => {
            Some(Conflict { kind: kind.into(), namespace: pipeline.namespace.clone(), name: name.to_string(), why })
        }
        _ => None,
    })
}

/// The `K` object `name` as the API server has it now, if any.
async fn current<K: ChildResource, T>(
    pipeline: &ValidPipeline,
    ctx: &Context<T>,
    name: &str,
) -> Result<Option<K>, Error> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &pipeline.namespace);
    api.get_opt(name).await.map_err(|source| Error::Read { kind: K::KIND, name: name.to_string(), source })
}

/// Applies `obj` (server-side, forced: the pipeline solely owns its children, checked by
/// [`check_all`]).
async fn child<K: ChildResource, T>(pipeline: &ValidPipeline, ctx: &Context<T>, obj: &K) -> Result<K, Error> {
    let name = obj.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &pipeline.namespace);
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(obj))
        .await
        .map_err(|source| Error::Apply { kind: K::KIND, name, source })
}

/// Deletes the `K` child `name` if this pipeline (or its predecessor) controls it; anything else
/// of that name is left alone.
async fn remove<K: ChildResource, T>(pipeline: &ValidPipeline, ctx: &Context<T>, name: &str) -> Result<(), Error> {
    let kind = K::KIND;
    // The watch has seen no such object: nothing to ask the API server in a steady state. A new
    // spec (the first reconcile of its generation) is checked against the API server all the
    // same, so that an object the watch has not reported (yet) is not left behind.
    let new_spec =
        pipeline.pipeline.status.as_ref().and_then(|s| s.observed_generation) != pipeline.pipeline.metadata.generation;
    if !new_spec
        && ctx.children.as_ref().is_some_and(|index| index.controller(kind, &pipeline.namespace, name).is_none())
    {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &pipeline.namespace);
    let read = |source| Error::Read { kind, name: name.to_string(), source };
    let Some(meta) = api.get_metadata_opt(name).await.map_err(read)? else { return Ok(()) };
    if let Owner::Foreign(_) = owner_of(&meta.metadata, pipeline) {
        return Ok(());
    }
    // Only the object that was checked: not one created in its place since.
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: meta.metadata.uid.clone(), resource_version: None }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(source) => Err(Error::Delete { kind, name: name.to_string(), source }),
    }
}

/// What the check before applying found.
pub enum Check {
    /// Every child is absent or this pipeline's.
    Clear,
    /// An object of a child's name is someone else's: nothing is applied.
    Conflict(Conflict),
    /// KafkaUsers are needed but the cluster does not serve their API.
    NoKafkaUserApi,
}

fn name_of<K: Resource>(obj: &K) -> String {
    obj.meta().name.clone().unwrap_or_default()
}

/// Checks, before anything is applied, that every child about to be applied is absent or this
/// pipeline's: on a conflict the pipeline is refused with nothing half-applied.
pub async fn check_all<T: Topics>(
    pipeline: &ValidPipeline,
    ctx: &Context<T>,
    children: &Children,
    topic_ready: bool,
) -> Result<Check, Error> {
    for step in children.in_order(pipeline, topic_ready) {
        let conflict = match step {
            Child::KafkaUsers => {
                let served = ctx.strimzi.served(&ctx.client).await.map_err(Error::Discovery)?;
                let Some(ar) = served.user else { return Ok(Check::NoKafkaUserApi) };
                kafka_user_conflict(pipeline, ctx, &ar).await?
            }
            Child::NetworkPolicy(policy) => check::<NetworkPolicy, T>(pipeline, ctx, &name_of(policy)).await?,
            Child::Deployment(_, deployment) => check::<Deployment, T>(pipeline, ctx, &name_of(deployment)).await?,
            Child::Service(service) => check::<Service, T>(pipeline, ctx, &name_of(service)).await?,
            Child::PodDisruptionBudget(pdb) => check::<PodDisruptionBudget, T>(pipeline, ctx, &name_of(pdb)).await?,
            // Removed only if this pipeline's: nothing to check.
            Child::Absent { .. } => None,
        };
        if let Some(conflict) = conflict {
            return Ok(Check::Conflict(conflict));
        }
    }
    Ok(Check::Clear)
}

/// The first KafkaUser of this pipeline's whose name someone else's object has.
async fn kafka_user_conflict<T>(
    pipeline: &ValidPipeline,
    ctx: &Context<T>,
    ar: &kube::api::ApiResource,
) -> Result<Option<Conflict>, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &pipeline.namespace, ar);
    for user in strimzi::kafka_users(pipeline, ar) {
        let name = user.name_any();
        let existing = api.get_metadata_opt(&name).await.map_err(|source| Error::Read {
            kind: strimzi::USER_KIND,
            name: name.clone(),
            source,
        })?;
        if let Some(existing) = existing
            && let Owner::Foreign(why) = owner_of(&existing.metadata, pipeline)
        {
            return Ok(Some(Conflict {
                kind: strimzi::USER_KIND.into(),
                namespace: pipeline.namespace.clone(),
                name,
                why,
            }));
        }
    }
    Ok(None)
}

/// Applies every child in order (after [`check_all`]); the consumers only when the topic is
/// ready. A child the spec no longer has (the NetworkPolicies, switched off) is deleted when
/// this pipeline made it.
pub async fn all<T: Topics>(
    pipeline: &ValidPipeline,
    ctx: &Context<T>,
    children: &Children,
    topic_ready: bool,
) -> Result<Applied, Error> {
    let (mut producer, mut consumer, mut producer_held) = (None, None, false);
    for step in children.in_order(pipeline, topic_ready) {
        match step {
            Child::KafkaUsers => {
                let Some(ar) = ctx.strimzi.served(&ctx.client).await.map_err(Error::Discovery)?.user else {
                    continue;
                };
                let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &pipeline.namespace, &ar);
                for user in strimzi::kafka_users(pipeline, &ar) {
                    let name = user.name_any();
                    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&user))
                        .await
                        .map_err(|source| Error::Apply { kind: strimzi::USER_KIND, name, source })?;
                }
            }
            Child::NetworkPolicy(policy) => {
                child(pipeline, ctx, policy).await?;
            }
            Child::Deployment(Component::Consumer, deployment) => {
                consumer = Some(child(pipeline, ctx, deployment).await?);
            }
            Child::Deployment(Component::Producer, deployment) => {
                // Consumers still rolling out (applied just before): a producer whose pods would
                // change keeps its current ones until they are done.
                let existing = if consumer.as_ref().is_some_and(|c| !rollout::rollout_complete(c)) {
                    current::<Deployment, T>(pipeline, ctx, &name_of(deployment)).await?
                } else {
                    None
                };
                if rollout::hold_producer(consumer.as_ref(), existing.as_ref(), deployment) {
                    tracing::info!(
                        pipeline = %pipeline.key(),
                        "the producer's new pods wait until the consumers' rollout is complete"
                    );
                    producer_held = true;
                    producer = existing;
                } else {
                    producer = Some(child(pipeline, ctx, deployment).await?);
                }
            }
            Child::Service(service) => {
                child(pipeline, ctx, service).await?;
            }
            Child::PodDisruptionBudget(pdb) => {
                child(pipeline, ctx, pdb).await?;
            }
            Child::Absent { kind, name } => match kind {
                ChildKind::NetworkPolicy => remove::<NetworkPolicy, T>(pipeline, ctx, &name).await?,
                ChildKind::Deployment => remove::<Deployment, T>(pipeline, ctx, &name).await?,
                ChildKind::Service => remove::<Service, T>(pipeline, ctx, &name).await?,
                ChildKind::PodDisruptionBudget => remove::<PodDisruptionBudget, T>(pipeline, ctx, &name).await?,
            },
        }
    }
    // The list always holds the producer.
    let producer = producer.unwrap_or_else(|| children.producer_deployment.clone());
    Ok(Applied { producer, consumer, producer_held })
}
