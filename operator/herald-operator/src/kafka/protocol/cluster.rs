//! The lag of many consumer groups on one cluster, in few requests: one Metadata request for all
//! topics, ListOffsets batched per partition leader (latest, then earliest), OffsetFetch per group
//! coordinator (every group in one request where the broker speaks OffsetFetch v8, else one per
//! group). Connections are kept, one per broker.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::find_coordinator_response::FindCoordinatorResponse;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::ListOffsetsResponse;
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::metadata_response::MetadataResponse;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponse;
use kafka_protocol::messages::{ApiKey, BrokerId, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::conn::{Connection, Settings};
use crate::kafka::error::ProbeError;
use crate::kafka::lag::{LagReport, LagTarget, partition_lag};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// The committed offsets one group is asked for.
struct GroupQuery {
    group: String,
    topic: String,
    partitions: Vec<i32>,
}

type Committed = Result<HashMap<i32, Option<i64>>, ProbeError>;

/// A topic as the cluster's metadata has it: each partition's leader.
struct TopicLayout {
    leaders: Vec<(i32, i32)>,
}

/// One cluster: its settings, a connection per broker, the coordinator of each group.
pub struct Cluster {
    settings: Settings,
    connections: tokio::sync::Mutex<HashMap<String, Connection>>,
    coordinators: std::sync::Mutex<HashMap<String, String>>,
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

impl Cluster {
    pub fn new(settings: Settings) -> Self {
        Self { settings, connections: Default::default(), coordinators: Default::default() }
    }

    /// Runs `f` on the connection to `addr` (opened when missing); a connection that failed is
    /// dropped, so the next call opens a new one.
    async fn with<T>(
        &self,
        addr: &str,
        f: impl AsyncFnOnce(&mut Connection) -> Result<T, ProbeError>,
    ) -> Result<T, ProbeError> {
        let mut connections = self.connections.lock().await;
        if !connections.contains_key(addr) {
            let conn = Connection::open(addr, &self.settings).await?;
            connections.insert(addr.to_string(), conn);
        }
        let conn = connections.get_mut(addr).ok_or_else(|| ProbeError::Broker(format!("no connection to {addr}")))?;
        let result = f(conn).await;
        if matches!(result, Err(ProbeError::Io { .. } | ProbeError::Timeout { .. })) {
            connections.remove(addr);
        }
        result
    }

    /// Metadata for `topics` from the first bootstrap server (or known broker) that answers.
    async fn metadata(
        &self,
        topics: &BTreeSet<&str>,
    ) -> Result<(HashMap<i32, String>, HashMap<String, Option<TopicLayout>>), ProbeError> {
        let known: Vec<String> = self.connections.lock().await.keys().cloned().collect();
        let mut last = ProbeError::Broker("no bootstrap servers".into());
        for addr in known.iter().chain(&self.settings.bootstrap) {
            let request = MetadataRequest::default()
                .with_topics(Some(
                    topics.iter().map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t)))).collect(),
                ))
                .with_allow_auto_topic_creation(false);
            let answer = self
                .with(addr, async |conn: &mut Connection| {
                    let version = conn.version(ApiKey::Metadata, (1, 9))?;
                    conn.call::<_, MetadataResponse>(ApiKey::Metadata, version, &request).await
                })
                .await;
            match answer {
                Ok(meta) => {
                    let brokers =
                        meta.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port))).collect();
                    let mut layouts = HashMap::new();
                    for t in &meta.topics {
                        let Some(name) = &t.name else { continue };
                        let layout = match t.error_code {
                            0 => Some(TopicLayout {
                                leaders: t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect(),
                            }),
                            UNKNOWN_TOPIC_OR_PARTITION => None,
                            code => {
                                return Err(ProbeError::Broker(format!("metadata of topic {}: error {code}", name.0)));
                            }
                        };
                        layouts.insert(name.0.to_string(), layout);
                    }
                    return Ok((brokers, layouts));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The offsets at `timestamp` (-1 latest, -2 earliest) of every partition, asking each leader
    /// once for all of its partitions.
    async fn offsets(
        &self,
        brokers: &HashMap<i32, String>,
        partitions: &[(String, i32, i32)],
        timestamp: i64,
    ) -> Result<HashMap<(String, i32), i64>, ProbeError> {
        let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
        for (topic, partition, leader) in partitions {
            by_leader.entry(*leader).or_default().entry(topic.clone()).or_default().push(*partition);
        }
        let mut offsets = HashMap::new();
        for (leader, topics) in by_leader {
            let addr = brokers
                .get(&leader)
                .ok_or_else(|| ProbeError::Broker(format!("partition leader {leader} is not among the brokers")))?;
            let request =
                ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_isolation_level(0).with_topics(
                    topics
                        .iter()
                        .map(|(t, ps)| {
                            ListOffsetsTopic::default().with_name(topic_name(t)).with_partitions(
                                ps.iter()
                                    .map(|p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(*p)
                                            .with_current_leader_epoch(-1)
                                            .with_timestamp(timestamp)
                                    })
                                    .collect(),
                            )
                        })
                        .collect(),
                );
            let answer: ListOffsetsResponse = self
                .with(addr, async |conn: &mut Connection| {
                    let version = conn.version(ApiKey::ListOffsets, (1, 7))?;
                    conn.call(ApiKey::ListOffsets, version, &request).await
                })
                .await?;
            for t in answer.topics {
                for p in t.partitions {
                    if p.error_code != 0 {
                        return Err(ProbeError::Broker(format!(
                            "offsets of {}/{}: error {}",
                            t.name.0, p.partition_index, p.error_code
                        )));
                    }
                    offsets.insert((t.name.0.to_string(), p.partition_index), p.offset);
                }
            }
        }
        Ok(offsets)
    }

    async fn coordinator(&self, group: &str) -> Result<String, ProbeError> {
        if let Some(addr) = self.coordinators.lock().unwrap_or_else(|p| p.into_inner()).get(group) {
            return Ok(addr.clone());
        }
        let bootstrap = self.settings.bootstrap.first().cloned().unwrap_or_default();
        let known: Vec<String> = self.connections.lock().await.keys().cloned().collect();
        let addr = known.first().cloned().unwrap_or(bootstrap);
        let request =
            FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string())).with_key_type(0);
        let answer: FindCoordinatorResponse = self
            .with(&addr, async |conn: &mut Connection| {
                let version = conn.version(ApiKey::FindCoordinator, (0, 3))?;
                conn.call(ApiKey::FindCoordinator, version, &request).await
            })
            .await?;
        if answer.error_code != 0 {
            return Err(ProbeError::Broker(format!(
                "finding the coordinator of group {group}: error {}",
                answer.error_code
            )));
        }
        let coordinator = format!("{}:{}", answer.host, answer.port);
        self.coordinators.lock().unwrap_or_else(|p| p.into_inner()).insert(group.to_string(), coordinator.clone());
        Ok(coordinator)
    }

    /// The committed offsets of each group on its topic's partitions (`None`: nothing committed).
    async fn committed(&self, wanted: &[GroupQuery]) -> HashMap<String, Committed> {
        let mut results = HashMap::new();
        let mut by_coordinator: BTreeMap<String, Vec<&GroupQuery>> = BTreeMap::new();
        for w in wanted {
            match self.coordinator(&w.group).await {
                Ok(addr) => by_coordinator.entry(addr).or_default().push(w),
                Err(e) => {
                    results.insert(w.group.clone(), Err(e));
                }
            }
        }
        for (addr, groups) in by_coordinator {
            let answer = self
                .with(&addr, async |conn: &mut Connection| {
                    let version = conn.version(ApiKey::OffsetFetch, (1, 8))?;
                    let mut found = Vec::new();
                    if version >= 8 {
                        let request = OffsetFetchRequest::default().with_groups(
                            groups
                                .iter()
                                .map(|q| {
                                    OffsetFetchRequestGroup::default()
                                        .with_group_id(GroupId(StrBytes::from_string(q.group.clone())))
                                        .with_topics(Some(vec![
                                            OffsetFetchRequestTopics::default()
                                                .with_name(topic_name(&q.topic))
                                                .with_partition_indexes(q.partitions.clone()),
                                        ]))
                                })
                                .collect(),
                        );
                        let answer: OffsetFetchResponse = conn.call(ApiKey::OffsetFetch, version, &request).await?;
                        for g in answer.groups {
                            let offsets: Vec<(i32, i64, i16)> = g
                                .topics
                                .iter()
                                .flat_map(|t| {
                                    t.partitions.iter().map(|p| (p.partition_index, p.committed_offset, p.error_code))
                                })
                                .collect();
                            found.push((g.group_id.0.to_string(), g.error_code, offsets));
                        }
                    } else {
                        for q in &groups {
                            let request = OffsetFetchRequest::default()
                                .with_group_id(GroupId(StrBytes::from_string(q.group.clone())))
                                .with_topics(Some(vec![
                                    OffsetFetchRequestTopic::default()
                                        .with_name(topic_name(&q.topic))
                                        .with_partition_indexes(q.partitions.clone()),
                                ]));
                            let answer: OffsetFetchResponse = conn.call(ApiKey::OffsetFetch, version, &request).await?;
                            let offsets: Vec<(i32, i64, i16)> = answer
                                .topics
                                .iter()
                                .flat_map(|t| {
                                    t.partitions.iter().map(|p| (p.partition_index, p.committed_offset, p.error_code))
                                })
                                .collect();
                            found.push((q.group.clone(), answer.error_code, offsets));
                        }
                    }
                    Ok(found)
                })
                .await;
            match answer {
                Ok(found) => {
                    for (group, error, offsets) in found {
                        let result = if error != 0 {
                            // The coordinator moved or is loading: look for it again next time.
                            self.coordinators.lock().unwrap_or_else(|p| p.into_inner()).remove(&group);
                            Err(ProbeError::Broker(format!("committed offsets of group {group}: error {error}")))
                        } else if let Some((p, _, code)) = offsets.iter().find(|(_, _, code)| *code != 0) {
                            Err(ProbeError::Broker(format!(
                                "committed offset of group {group} partition {p}: error {code}"
                            )))
                        } else {
                            Ok(offsets.into_iter().map(|(p, o, _)| (p, (o >= 0).then_some(o))).collect())
                        };
                        results.insert(group, result);
                    }
                }
                Err(e) => {
                    for q in groups {
                        self.coordinators.lock().unwrap_or_else(|p| p.into_inner()).remove(&q.group);
                        results.insert(q.group.clone(), Err(e.clone()));
                    }
                }
            }
        }
        results
    }

    /// The lag of every target (`Ok(None)`: its topic does not exist).
    pub async fn lag(&self, targets: &[LagTarget]) -> Vec<Result<Option<LagReport>, ProbeError>> {
        let topics: BTreeSet<&str> = targets.iter().map(|t| t.topic.as_str()).collect();
        let (brokers, layouts) = match self.metadata(&topics).await {
            Ok(m) => m,
            Err(e) => return targets.iter().map(|_| Err(e.clone())).collect(),
        };
        let partitions: Vec<(String, i32, i32)> = layouts
            .iter()
            .filter_map(|(t, l)| l.as_ref().map(|l| (t, l)))
            .flat_map(|(t, l)| l.leaders.iter().map(move |(p, leader)| (t.clone(), *p, *leader)))
            .collect();
        let ends = self.offsets(&brokers, &partitions, -1).await;
        let starts = self.offsets(&brokers, &partitions, -2).await;
        let (ends, starts) = match (ends, starts) {
            (Ok(e), Ok(s)) => (e, s),
            (Err(e), _) | (_, Err(e)) => return targets.iter().map(|_| Err(e.clone())).collect(),
        };
        let wanted: Vec<GroupQuery> = targets
            .iter()
            .filter_map(|t| {
                let layout = layouts.get(&t.topic)?.as_ref()?;
                Some(GroupQuery {
                    group: t.group.clone(),
                    topic: t.topic.clone(),
                    partitions: layout.leaders.iter().map(|(p, _)| *p).collect(),
                })
            })
            .collect();
        let committed = self.committed(&wanted).await;
        targets
            .iter()
            .map(|t| {
                let Some(Some(layout)) = layouts.get(&t.topic) else { return Ok(None) };
                let group = committed
                    .get(&t.group)
                    .cloned()
                    .unwrap_or_else(|| Err(ProbeError::Broker(format!("no answer for group {}", t.group))))?;
                let mut per_partition: Vec<(i32, i64)> = layout
                    .leaders
                    .iter()
                    .map(|(p, _)| {
                        let key = (t.topic.clone(), *p);
                        let end = ends.get(&key).copied().unwrap_or(0);
                        let start = starts.get(&key).copied().unwrap_or(0);
                        (*p, partition_lag(start, end, group.get(p).copied().flatten()))
                    })
                    .collect();
                per_partition.sort_unstable();
                Ok(Some(LagReport { partitions: per_partition.len() as i32, per_partition }))
            })
            .collect()
    }
}
