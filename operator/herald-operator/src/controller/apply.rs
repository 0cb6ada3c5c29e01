//! Apply the children in a stated order — the KafkaUsers first (Strimzi writes the Secrets the
//! pods mount), the producer, the Services and the budget, then the consumers once the topic is
//! ready — and adopt nothing: an object of a child's name that this pipeline does not control is
//! left untouched and reported as a [`Conflict`].

use std::fmt::Debug;

use herald_api::labels::FIELD_MANAGER;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
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

/// How the apply step ended.
pub enum Outcome {
    Applied(Box<Applied>),
    Conflict(Conflict),
    /// KafkaUsers are needed but the cluster does not serve their API.
    NoKafkaUserApi,
}

/// Applies `obj` (server-side, forced: the pipeline solely owns its children) unless an object of
/// its name exists that this pipeline does not control. The controller's index of watched
/// children answers for objects it knows this pipeline controls; otherwise the object is read.
async fn child<K, T>(
    pipeline: &ValidPipeline,
    ctx: &Context<T>,
    kind: &'static str,
    obj: &K,
) -> Result<Result<K, Conflict>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &pipeline.namespace);
    let known = ctx.children.as_ref().and_then(|index| index.controller(kind, &pipeline.namespace, &name));
    let owner = match known {
        Some(uid) if uid == pipeline.uid => Some(Owner::Ours),
        _ => api
            .get_metadata_opt(&name)
            .await
            .map_err(|source| Error::Read { kind, name: name.clone(), source })?
            .map(|meta| owner_of(&meta.metadata, pipeline)),
    };
    if let Some(Owner::Foreign(why)) = owner {
        return Ok(Err(Conflict { kind: kind.into(), namespace: pipeline.namespace.clone(), name, why }));
    }
    let applied = api
        .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(obj))
        .await
        .map_err(|source| Error::Apply { kind, name, source })?;
    Ok(Ok(applied))
}

/// The KafkaUsers of `pipeline`, each only if it is absent or this pipeline's.
async fn kafka_users<T>(
    pipeline: &ValidPipeline,
    ctx: &Context<T>,
    ar: &kube::api::ApiResource,
) -> Result<Result<(), Conflict>, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &pipeline.namespace, ar);
    for user in strimzi::kafka_users(pipeline, ar) {
        let name = user.name_any();
        let existing =
            api.get_opt(&name).await.map_err(|source| Error::Read { kind: "KafkaUser", name: name.clone(), source })?;
        if let Some(existing) = existing
            && let Owner::Foreign(why) = owner_of(&existing.metadata, pipeline)
        {
            return Ok(Err(Conflict { kind: "KafkaUser".into(), namespace: pipeline.namespace.clone(), name, why }));
        }
        api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&user))
            .await
            .map_err(|source| Error::Apply { kind: "KafkaUser", name, source })?;
    }
    Ok(Ok(()))
}

/// Applies every child in order; the consumers only when the topic is ready.
pub async fn all<T: Topics>(
    pipeline: &ValidPipeline,
    ctx: &Context<T>,
    children: &Children,
    topic_ready: bool,
) -> Result<Outcome, Error> {
    macro_rules! or_conflict {
        ($e:expr) => {
            match $e? {
                Ok(applied) => applied,
                Err(conflict) => return Ok(Outcome::Conflict(conflict)),
            }
        };
    }
    if !crate::names::managed_users(&pipeline.pipeline).is_empty() {
        let served = ctx.strimzi.served(&ctx.client).await.map_err(Error::Discovery)?;
        let Some(ar) = served.user else { return Ok(Outcome::NoKafkaUserApi) };
        or_conflict!(kafka_users(pipeline, ctx, &ar).await);
    }
    let producer: Deployment = or_conflict!(child(pipeline, ctx, "Deployment", &children.producer_deployment).await);
    for service in [&children.producer_service, &children.consumer_service, &children.consumer_headless_service] {
        let _: Service = or_conflict!(child(pipeline, ctx, "Service", service).await);
    }
    let _: PodDisruptionBudget =
        or_conflict!(child(pipeline, ctx, "PodDisruptionBudget", &children.consumer_pdb).await);
    let consumer = if topic_ready {
        Some(or_conflict!(child(pipeline, ctx, "Deployment", &children.consumer_deployment).await))
    } else {
        None
    };
    Ok(Outcome::Applied(Box::new(Applied { producer, consumer })))
}
