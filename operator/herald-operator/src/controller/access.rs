//! How the operator reaches a pipeline's Kafka: the spec's servers and properties, plus the
//! consumers' credentials when the cluster requires them (read from their Secrets by name, kept
//! in memory), or why it cannot yet.

use std::collections::BTreeMap;

use herald_api::KafkaSpec;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use super::{Context, Error};
use crate::build::credentials;
use crate::build::validate::ValidPipeline;
use crate::kafka::error::TopicError;

pub enum KafkaAccess {
    Ready(KafkaSpec),
    Unavailable(String),
}

impl KafkaAccess {
    pub fn spec(&self) -> Result<&KafkaSpec, TopicError> {
        match self {
            KafkaAccess::Ready(kafka) => Ok(kafka),
            KafkaAccess::Unavailable(why) => Err(TopicError::Credentials(why.clone())),
        }
    }
}

/// Reads the Secrets the operator's own Kafka clients need (none without `tls` and
/// `authentication`).
pub async fn kafka_access<T>(pipeline: &ValidPipeline, ctx: &Context<T>) -> Result<KafkaAccess, Error> {
    let wanted = credentials::operator_secrets(pipeline);
    if wanted.is_empty() {
        return Ok(KafkaAccess::Ready(pipeline.spec().kafka.clone()));
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &pipeline.namespace);
    let mut secrets = BTreeMap::new();
    for name in wanted {
        let secret = api.get_opt(&name).await.map_err(|source| Error::ReadSecret { name: name.clone(), source })?;
        let data = secret.map(|s| s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect());
        secrets.insert(name, data);
    }
    Ok(match credentials::operator_properties(pipeline, &secrets) {
        Ok(properties) => {
            let mut kafka = pipeline.spec().kafka.clone();
            kafka.properties.extend(properties);
            KafkaAccess::Ready(kafka)
        }
        Err(why) => KafkaAccess::Unavailable(why),
    })
}
