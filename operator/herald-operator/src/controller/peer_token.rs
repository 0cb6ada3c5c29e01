//! The pipeline's peer token: a random secret its consumers prove to each other that they are
//! peers with (forwarded reads, `/internal/claims`). One immutable Secret per pipeline, created
//! once, owned by the pipeline; the operator never reads it back (only its metadata), never
//! logs it, and cannot change it (it may create Secrets and read them, nothing more).

use std::collections::BTreeMap;

use herald_api::labels::{self, Component, FIELD_MANAGER};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use ring::rand::{SecureRandom, SystemRandom};

use super::apply::{Conflict, Owner, owner_of};
use super::{Context, Error};
use crate::build::desired::PEER_TOKEN_KEY;
use crate::build::validate::ValidPipeline;

/// Random bytes in a token (hex-encoded in the Secret: 64 characters).
pub const TOKEN_BYTES: usize = 32;

/// Where the peer token stands.
pub enum PeerToken {
    /// The Secret exists and is this pipeline's: its uid.
    Ready(String),
    /// There is no such Secret yet: [`create`] it.
    Absent,
    /// A Secret of that name is someone else's.
    Conflict(Conflict),
    /// The Secret belongs to a deleted pipeline of the same name, and is being collected.
    Pending(String),
}

/// A fresh token: [`TOKEN_BYTES`] from the system's CSPRNG, hex-encoded.
fn generate() -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0u8; TOKEN_BYTES];
    SystemRandom::new().fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The Secret as it is created (immutable: a new token means a new Secret, with a new uid).
fn secret(pipeline: &ValidPipeline, token: String) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(pipeline.peer_token_secret.clone()),
            namespace: Some(pipeline.namespace.clone()),
            labels: Some(labels::labels(&pipeline.name, Component::Consumer)),
            owner_references: Some(vec![pipeline.owner.clone()]),
            ..ObjectMeta::default()
        },
        immutable: Some(true),
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(PEER_TOKEN_KEY.to_string(), ByteString(token.into_bytes()))])),
        ..Secret::default()
    }
}

/// Whether the peer-token Secret exists and is this pipeline's (its metadata only is read).
pub async fn check<T>(pipeline: &ValidPipeline, ctx: &Context<T>) -> Result<PeerToken, Error> {
    let name = pipeline.peer_token_secret.clone();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &pipeline.namespace);
    let existing =
        api.get_metadata_opt(&name).await.map_err(|source| Error::ReadSecret { name: name.clone(), source })?;
    let Some(existing) = existing else { return Ok(PeerToken::Absent) };
    let uid = existing.metadata.uid.clone().unwrap_or_default();
    Ok(match owner_of(&existing.metadata, pipeline) {
        Owner::Ours => PeerToken::Ready(uid),
        Owner::Predecessor => PeerToken::Pending(format!(
            "Secret {}/{name} holds the peer token of a deleted pipeline of the same name; waiting for Kubernetes to collect it before creating this pipeline's",
            pipeline.namespace
        )),
        Owner::Foreign(why) => {
            PeerToken::Conflict(Conflict { kind: "Secret".into(), namespace: pipeline.namespace.clone(), name, why })
        }
    })
}

/// Creates the peer-token Secret with a fresh token: its uid.
pub async fn create<T>(pipeline: &ValidPipeline, ctx: &Context<T>) -> Result<String, Error> {
    let name = pipeline.peer_token_secret.clone();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &pipeline.namespace);
    let params = PostParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PostParams::default() };
    // A Secret that appeared since the read (another replica, a user) fails with 409, a
    // transient error: the next attempt reads it.
    let created = api
        .create(&params, &secret(pipeline, generate().map_err(|_| Error::Random)?))
        .await
        .map_err(|source| Error::CreateSecret { name: name.clone(), source })?;
    tracing::info!(namespace = pipeline.namespace, pipeline = pipeline.name, secret = name, "peer token created");
    Ok(created.metadata.uid.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hex() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_eq!(a.len(), 2 * TOKEN_BYTES);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
