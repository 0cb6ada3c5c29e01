//! The topic step, by `spec.topic.management`: a Strimzi KafkaTopic in the cluster's namespace
//! (applied only when it differs, never over one that is not this pipeline's), a topic the
//! operator creates with the Kafka Admin API (an existing one only with `adoptExisting`), or an
//! external topic that must exist.

use herald_api::{TopicManagement, labels::FIELD_MANAGER};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};

use super::access::KafkaAccess;
use super::apply::Conflict;
use super::{Context, Error, lock};
use crate::build::reason::Reason;
use crate::build::status::{self, TopicState};
use crate::build::strimzi;
use crate::build::validate::ValidPipeline;
use crate::kafka::admin::{Ensured, Topics, WantedTopic};

fn topic_state(pipeline: &ValidPipeline, partitions: i32, ready: bool, reason: Reason, message: String) -> TopicState {
    TopicState { name: pipeline.topic.clone(), partitions, ready, reason, message, created: false }
}

/// Whether the pipeline was already using `topic` (its last status said so): an existing Admin
/// topic it created, or adopted, before.
fn used_before(pipeline: &ValidPipeline) -> bool {
    let Some(previous) = &pipeline.pipeline.status else { return false };
    previous.topic.as_ref().is_some_and(|t| t.name == pipeline.topic)
        && previous.conditions.iter().any(|c| c.type_ == status::TOPIC_READY && c.status == "True")
}

pub async fn state<T: Topics>(
    pipeline: &ValidPipeline,
    ctx: &Context<T>,
    access: &KafkaAccess,
) -> Result<Result<TopicState, Conflict>, Error> {
    let spec = &pipeline.spec().topic;
    Ok(Ok(match spec.management {
        TopicManagement::Strimzi => {
            let served = ctx.strimzi.served(&ctx.client).await.map_err(Error::Discovery)?;
            let Some(ar) = served.topic else {
                return Ok(Ok(topic_state(
                    pipeline,
                    spec.partitions,
                    false,
                    Reason::StrimziNotInstalled,
                    "the kafka.strimzi.io KafkaTopic API is not served by this cluster; install Strimzi or use topic.management Admin or External".into(),
                )));
            };
            let Some(desired) = strimzi::kafka_topic(pipeline, &ar) else {
                return Ok(Ok(topic_state(
                    pipeline,
                    spec.partitions,
                    false,
                    Reason::NoClusterRef,
                    "topic.management Strimzi needs spec.kafka.clusterRef".into(),
                )));
            };
            let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &pipeline.cluster_namespace, &ar);
            let name = desired.metadata.name.clone().unwrap_or_default();
            let existing = api.get_opt(&name).await.map_err(|source| Error::Read {
                kind: strimzi::KIND,
                name: name.clone(),
                source,
            })?;
            let current = match existing {
                Some(existing)
                    if !strimzi::kafka_topic_is_ours(&existing.metadata, &pipeline.namespace, &pipeline.name) =>
                {
                    return Ok(Err(Conflict {
                        kind: strimzi::KIND.into(),
                        namespace: pipeline.cluster_namespace.clone(),
                        name,
                        why: "not labelled as this pipeline's".into(),
                    }));
                }
                Some(existing)
                    if existing.data["spec"] == desired.data["spec"]
                        && desired.labels().iter().all(|(k, v)| existing.labels().get(k) == Some(v)) =>
                {
                    existing
                }
                _ => api
                    .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&desired))
                    .await
                    .map_err(|source| Error::Apply { kind: strimzi::KIND, name, source })?,
            };
            let (ready, reason, message) = strimzi::readiness(&current);
            topic_state(pipeline, spec.partitions, ready, reason, message)
        }
        TopicManagement::Admin => {
            let wanted = WantedTopic {
                name: pipeline.topic.clone(),
                partitions: spec.partitions,
                replicas: spec.replicas,
                config: spec.config.clone(),
            };
            let created_key = (pipeline.uid.clone(), pipeline.topic.clone());
            match async { ctx.topics.ensure(access.spec()?, &wanted).await }.await {
                Ok(Ensured::Created { partitions }) => {
                    lock(&ctx.created_topics).insert(created_key);
                    let mut s = topic_state(
                        pipeline,
                        partitions,
                        true,
                        Reason::TopicCreated,
                        format!("created with {partitions} partitions"),
                    );
                    s.created = true;
                    s
                }
                Ok(Ensured::Exists { partitions }) => {
                    let created = lock(&ctx.created_topics).contains(&created_key)
                        || pipeline.pipeline.status.as_ref().and_then(|s| s.topic.as_ref()).is_some_and(|t| t.created);
                    if !(created || used_before(pipeline) || spec.adopt_existing) {
                        return Ok(Err(Conflict {
                            kind: "Kafka topic".into(),
                            namespace: pipeline.spec().kafka.bootstrap_servers.clone(),
                            name: pipeline.topic.clone(),
                            why: "it was not created for this pipeline; set spec.topic.adoptExisting: true to use it"
                                .into(),
                        }));
                    }
                    let mut s = topic_state(
                        pipeline,
                        partitions,
                        true,
                        Reason::TopicExists,
                        format!("{partitions} partitions"),
                    );
                    s.created = created;
                    s
                }
                Err(e) => topic_state(
                    pipeline,
                    spec.partitions,
                    false,
                    if e.is_transient() { Reason::KafkaUnreachable } else { Reason::TopicRejected },
                    e.to_string(),
                ),
            }
        }
        TopicManagement::External => match async { ctx.topics.partitions(access.spec()?, &pipeline.topic).await }.await
        {
            Ok(Some(partitions)) => {
                topic_state(pipeline, partitions, true, Reason::TopicExists, format!("{partitions} partitions"))
            }
            Ok(None) => topic_state(
                pipeline,
                spec.partitions,
                false,
                Reason::TopicNotFound,
                format!("topic {} does not exist in Kafka; create it or use topic.management Admin", pipeline.topic),
            ),
            Err(e) => topic_state(pipeline, spec.partitions, false, Reason::KafkaUnreachable, e.to_string()),
        },
    }))
}
