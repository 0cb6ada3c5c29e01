//! Apply the children in a stated order — the KafkaUsers first (Strimzi writes the Secrets the
//! pods mount), the NetworkPolicies (so that no pod runs unprotected), the producer, the Services
//! and the budget, then the consumers once the topic is ready — and adopt nothing: an object of a child's name that this pipeline does not control is
//! left untouched and reported as a [`Conflict`].

use std::fmt::Debug;

use herald_api::labels::{self, Component, FIELD_MANAGER};
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
use crate::desired::Children;
use crate::strimzi;
use crate::topic::Topics;
use crate::validate::ValidPipeline;

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
}

/// Whether the `kind` object `name` is free for this pipeline: absent, or controlled by it (or
/// its predecessor). The controller's index of watched children answers for objects it knows this
/// pipeline controls; otherwise the object's metadata is read.
async fn check<K, T>(
    pipeline: &ValidPipeline,
    ctx: &Context<T>,
    kind: &'static str,
    name: &str,
) -> Result<Option<Conflict>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
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

/// Applies `obj` (server-side, forced: the pipeline solely owns its children, checked by
/// [`check_all`]).
async fn child<K, T>(pipeline: &ValidPipeline, ctx: &Context<T>, kind: &'static str, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &pipeline.namespace);
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(obj))
        .await
        .map_err(|source| Error::Apply { kind, name, source })
}

/// Deletes the `kind` child `name` if this pipeline (or its predecessor) controls it; anything
/// else of that name is left alone.
async fn remove<K, T>(pipeline: &ValidPipeline, ctx: &Context<T>, kind: &'static str, name: &str) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
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
    macro_rules! clear {
        ($e:expr) => {
            if let Some(conflict) = $e? {
                return Ok(Check::Conflict(conflict));
            }
        };
    }
    if !crate::names::managed_users(&pipeline.pipeline).is_empty() {
        let served = ctx.strimzi.served(&ctx.client).await.map_err(Error::Discovery)?;
        let Some(ar) = served.user else { return Ok(Check::NoKafkaUserApi) };
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &pipeline.namespace, &ar);
        for user in strimzi::kafka_users(pipeline, &ar) {
            let name = user.name_any();
            let existing = api.get_metadata_opt(&name).await.map_err(|source| Error::Read {
                kind: "KafkaUser",
                name: name.clone(),
                source,
            })?;
            if let Some(existing) = existing
                && let Owner::Foreign(why) = owner_of(&existing.metadata, pipeline)
            {
                let conflict = Conflict { kind: "KafkaUser".into(), namespace: pipeline.namespace.clone(), name, why };
                return Ok(Check::Conflict(conflict));
            }
        }
    }
    for policy in [&children.producer_network_policy, &children.consumer_network_policy].into_iter().flatten() {
        clear!(check::<NetworkPolicy, T>(pipeline, ctx, "NetworkPolicy", &name_of(policy)).await);
    }
    clear!(check::<Deployment, T>(pipeline, ctx, "Deployment", &name_of(&children.producer_deployment)).await);
    for service in [&children.producer_service, &children.consumer_service, &children.consumer_headless_service] {
        clear!(check::<Service, T>(pipeline, ctx, "Service", &name_of(service)).await);
    }
    clear!(
        check::<PodDisruptionBudget, T>(pipeline, ctx, "PodDisruptionBudget", &name_of(&children.consumer_pdb)).await
    );
    if topic_ready {
        clear!(check::<Deployment, T>(pipeline, ctx, "Deployment", &name_of(&children.consumer_deployment)).await);
    }
    Ok(Check::Clear)
}

/// Applies every child in order (after [`check_all`]); the consumers only when the topic is
/// ready. With the NetworkPolicies off, deletes the ones this pipeline made.
pub async fn all<T: Topics>(
    pipeline: &ValidPipeline,
    ctx: &Context<T>,
    children: &Children,
    topic_ready: bool,
) -> Result<Applied, Error> {
    if !crate::names::managed_users(&pipeline.pipeline).is_empty()
        && let Some(ar) = ctx.strimzi.served(&ctx.client).await.map_err(Error::Discovery)?.user
    {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &pipeline.namespace, &ar);
        for user in strimzi::kafka_users(pipeline, &ar) {
            let name = user.name_any();
            api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&user))
                .await
                .map_err(|source| Error::Apply { kind: "KafkaUser", name, source })?;
        }
    }
    for (component, policy) in [
        (Component::Producer, &children.producer_network_policy),
        (Component::Consumer, &children.consumer_network_policy),
    ] {
        match policy {
            Some(policy) => {
                let _: NetworkPolicy = child(pipeline, ctx, "NetworkPolicy", policy).await?;
            }
            None => {
                let name = labels::child_name(&pipeline.name, component);
                remove::<NetworkPolicy, T>(pipeline, ctx, "NetworkPolicy", &name).await?;
            }
        }
    }
    let producer: Deployment = child(pipeline, ctx, "Deployment", &children.producer_deployment).await?;
    for service in [&children.producer_service, &children.consumer_service, &children.consumer_headless_service] {
        let _: Service = child(pipeline, ctx, "Service", service).await?;
    }
    let _: PodDisruptionBudget = child(pipeline, ctx, "PodDisruptionBudget", &children.consumer_pdb).await?;
    let consumer =
        if topic_ready { Some(child(pipeline, ctx, "Deployment", &children.consumer_deployment).await?) } else { None };
    Ok(Applied { producer, consumer })
}
