//! The replicated metadata state machine: [`MetadataImage`] and the [`MetaCommand`]s that change
//! it. Pure (no I/O, no clock): every node applies the same commands in the same order and gets
//! the same image, so everything that decides (leader elections, ISR checks, fencing) lives
//! here and is unit-tested without Raft.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A node's stable id (also its Raft node id).
pub type NodeId = u64;

/// A node of the cluster as the controller knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Stable node id.
    pub id: NodeId,
    /// Host advertised to Kafka clients.
    pub kafka_host: String,
    /// Port advertised to Kafka clients.
    pub kafka_port: u16,
    /// Address of the node's cluster (ractor_cluster) endpoint.
    pub cluster_addr: String,
    /// Whether the node may be a Raft voter (a seed node).
    pub controller_eligible: bool,
    /// A fenced node's lease expired: it leads nothing and is kept out of new ISRs.
    pub fenced: bool,
}

/// One partition of a topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// The replica set; `replicas[0]` is the preferred leader.
    pub replicas: Vec<NodeId>,
    /// In-sync replicas (never empty once the partition has had a leader).
    pub isr: Vec<NodeId>,
    /// The current leader; `None` = offline.
    pub leader: Option<NodeId>,
    /// Bumped on every leader change.
    pub leader_epoch: i32,
    /// Bumped on every change of the partition (leader or ISR).
    pub partition_epoch: i32,
}

/// A topic and its partitions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// Topic name.
    pub name: String,
    /// Topic id.
    pub id: Uuid,
    /// Topic config overrides (Kafka config names).
    pub configs: BTreeMap<String, String>,
    /// Partitions, index = partition number.
    pub partitions: Vec<PartitionRecord>,
}

/// The whole cluster metadata, identical on every node after applying the same log prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// Known nodes by id.
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicRecord>,
    /// Next producer id to hand out.
    pub next_producer_id: i64,
    /// Raft log index of the last applied entry (0 before anything was applied).
    pub version: u64,
    /// Dynamic broker and group configs (Kafka's `kafka-configs --alter` on brokers and
    /// groups). Absent from images written before they existed, hence the default.
    #[serde(default)]
    pub dynamic_configs: DynamicConfigs,
}

/// Where a dynamic config applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigScope {
    /// Every broker (Kafka's `--entity-default`, resource name "").
    ClusterDefault,
    /// One broker (Kafka's `--entity-name <node id>`): wins over the cluster default.
    Broker(NodeId),
    /// One consumer group (KIP-848 group configs).
    Group(String),
}

/// Dynamic configs by scope, with Kafka's key names. Values are stored as validated by the
/// controller facade; the state machine only keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DynamicConfigs {
    /// Cluster-wide broker defaults.
    pub cluster: BTreeMap<String, String>,
    /// Per-broker values, by node id.
    pub brokers: BTreeMap<NodeId, BTreeMap<String, String>>,
    /// Per-group values, by group id.
    pub groups: BTreeMap<String, BTreeMap<String, String>>,
}

impl DynamicConfigs {
    /// The configs set at `scope` (empty when none are).
    pub fn get(&self, scope: &ConfigScope) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        match scope {
            ConfigScope::ClusterDefault => &self.cluster,
            ConfigScope::Broker(n) => self.brokers.get(n).unwrap_or(&EMPTY),
            ConfigScope::Group(g) => self.groups.get(g).unwrap_or(&EMPTY),
        }
    }

    /// Applies `changes` (a value sets, `None` deletes) at `scope`; with `replace_all` every
    /// key not named is deleted first (legacy AlterConfigs). An emptied scope is dropped so
    /// that deleting every key leaves no trace in the image.
    fn alter(
        &mut self,
        scope: &ConfigScope,
        changes: &BTreeMap<String, Option<String>>,
        replace_all: bool,
    ) {
        let map = match scope {
            ConfigScope::ClusterDefault => &mut self.cluster,
            ConfigScope::Broker(n) => self.brokers.entry(*n).or_default(),
            ConfigScope::Group(g) => self.groups.entry(g.clone()).or_default(),
        };
        if replace_all {
            map.clear();
        }
        for (k, v) in changes {
            match v {
                Some(v) => {
                    map.insert(k.clone(), v.clone());
                }
                None => {
                    map.remove(k);
                }
            }
        }
        match scope {
            ConfigScope::ClusterDefault => {}
            ConfigScope::Broker(n) => {
                if self.brokers.get(n).is_some_and(BTreeMap::is_empty) {
                    self.brokers.remove(n);
                }
            }
            ConfigScope::Group(g) => {
                if self.groups.get(g).is_some_and(BTreeMap::is_empty) {
                    self.groups.remove(g);
                }
            }
        }
    }
}

/// A change to the metadata, proposed through Raft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Insert or update a node; it ends up unfenced (then as [`MetaCommand::UnfenceNode`]).
    RegisterNode(NodeRecord),
    /// The node's lease expired: move its leaderships to other in-sync replicas, shrink ISRs.
    FenceNode {
        /// The node.
        node: NodeId,
    },
    /// The node is alive again: offline partitions whose ISR holds it get it as leader.
    UnfenceNode {
        /// The node.
        node: NodeId,
    },
    /// Create a topic with an explicit replica assignment (one replica list per partition).
    CreateTopic {
        /// Topic name.
        name: String,
        /// Topic id.
        id: Uuid,
        /// Config overrides.
        configs: BTreeMap<String, String>,
        /// Replicas per partition.
        assignment: Vec<Vec<NodeId>>,
    },
    /// Delete a topic.
    DeleteTopic {
        /// Topic name.
        name: String,
    },
    /// Append partitions to a topic.
    CreatePartitions {
        /// Topic name.
        name: String,
        /// Replicas of each new partition.
        assignment: Vec<Vec<NodeId>>,
    },
    /// Replace the topic's config map.
    AlterConfigs {
        /// Topic name.
        name: String,
        /// The new config map.
        configs: BTreeMap<String, String>,
    },
    /// A partition leader changes its ISR (fenced by leader and partition epochs).
    AlterIsr {
        /// Topic name.
        topic: String,
        /// Partition number.
        partition: i32,
        /// The requesting leader.
        leader: NodeId,
        /// Its leader epoch.
        leader_epoch: i32,
        /// The partition epoch it last saw.
        partition_epoch: i32,
        /// The proposed ISR.
        isr: Vec<NodeId>,
    },
    /// Move leadership back to `replicas[0]` if it is unfenced and in the ISR.
    ElectPreferredLeader {
        /// Topic name.
        topic: String,
        /// Partition number.
        partition: i32,
    },
    /// Reserve a block of producer ids.
    AllocateProducerIds {
        /// Block size (> 0).
        count: i64,
    },
    /// Set or delete dynamic broker / group configs (added after the others: entries are
    /// JSON in the Raft log, and existing logs must still decode).
    AlterDynamicConfigs {
        /// Where they apply.
        scope: ConfigScope,
        /// Kafka key to new value; `None` deletes the key.
        changes: BTreeMap<String, Option<String>>,
        /// Delete every key of the scope not in `changes` first (legacy AlterConfigs).
        replace_all: bool,
    },
}

/// Why a command was rejected by the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaErrorCode {
    /// CreateTopic on an existing name.
    TopicAlreadyExists,
    /// The topic does not exist.
    UnknownTopic,
    /// The partition does not exist.
    UnknownPartition,
    /// The node is not registered.
    UnknownNode,
    /// AlterIsr with a stale leader epoch.
    FencedLeaderEpoch,
    /// AlterIsr with a stale partition epoch.
    InvalidUpdateVersion,
    /// AlterIsr from a node that is not the leader.
    NotLeader,
    /// AlterIsr with an ISR that lacks the leader, has duplicates, non-replicas or newly added
    /// fenced nodes.
    InvalidIsr,
    /// A replica assignment that is empty, has duplicates or unknown nodes.
    InvalidReplicaAssignment,
    /// Anything else malformed.
    InvalidRequest,
}

impl fmt::Display for MetaErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The result of applying a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    /// Applied (possibly a no-op).
    Ok,
    /// The first id of the allocated block.
    ProducerIds {
        /// First id of the block.
        start: i64,
    },
    /// AlterIsr succeeded; the new partition epoch.
    PartitionEpoch(i32),
    /// The command was rejected; the image is unchanged.
    Rejected {
        /// Machine-readable reason.
        code: MetaErrorCode,
        /// Human-readable reason.
        message: String,
    },
}

fn reject(code: MetaErrorCode, message: impl Into<String>) -> MetaResponse {
    MetaResponse::Rejected {
        code,
        message: message.into(),
    }
}

impl MetadataImage {
    /// Whether `node` is known and unfenced.
    pub fn is_live(&self, node: NodeId) -> bool {
        self.nodes.get(&node).is_some_and(|n| !n.fenced)
    }

    /// The partition `topic`/`partition`, if it exists.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionRecord> {
        let t = self.topics.get(topic)?;
        t.partitions.get(usize::try_from(partition).ok()?)
    }

    /// Applies `cmd` as the entry at raft log index `index` and returns its response. A rejected
    /// command leaves the image unchanged apart from `version`.
    pub fn apply(&mut self, index: u64, cmd: &MetaCommand) -> MetaResponse {
        self.version = index;
        match cmd {
            MetaCommand::RegisterNode(record) => {
                let mut record = record.clone();
                record.fenced = false;
                let id = record.id;
                self.nodes.insert(id, record);
                self.unfence(id);
                MetaResponse::Ok
            }
            MetaCommand::FenceNode { node } => self.fence(*node),
            MetaCommand::UnfenceNode { node } => {
                if !self.nodes.contains_key(node) {
                    return reject(
                        MetaErrorCode::UnknownNode,
                        format!("node {node} is unknown"),
                    );
                }
                self.unfence(*node);
                MetaResponse::Ok
            }
            MetaCommand::CreateTopic {
                name,
                id,
                configs,
                assignment,
            } => {
                if self.topics.contains_key(name) {
                    return reject(
                        MetaErrorCode::TopicAlreadyExists,
                        format!("topic {name} already exists"),
                    );
                }
                if assignment.is_empty() {
                    return reject(
                        MetaErrorCode::InvalidReplicaAssignment,
                        "a topic needs at least one partition",
                    );
                }
                let partitions = match self.new_partitions(assignment) {
                    Ok(p) => p,
                    Err(e) => return e,
                };
                self.topics.insert(
                    name.clone(),
                    TopicRecord {
                        name: name.clone(),
                        id: *id,
                        configs: configs.clone(),
                        partitions,
                    },
                );
                MetaResponse::Ok
            }
            MetaCommand::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => MetaResponse::Ok,
                None => reject(
                    MetaErrorCode::UnknownTopic,
                    format!("topic {name} is unknown"),
                ),
            },
            MetaCommand::CreatePartitions { name, assignment } => {
                if !self.topics.contains_key(name) {
                    return reject(
                        MetaErrorCode::UnknownTopic,
                        format!("topic {name} is unknown"),
                    );
                }
                let partitions = match self.new_partitions(assignment) {
                    Ok(p) => p,
                    Err(e) => return e,
                };
                if let Some(t) = self.topics.get_mut(name) {
                    t.partitions.extend(partitions);
                }
                MetaResponse::Ok
            }
            MetaCommand::AlterConfigs { name, configs } => match self.topics.get_mut(name) {
                Some(t) => {
                    t.configs = configs.clone();
                    MetaResponse::Ok
                }
                None => reject(
                    MetaErrorCode::UnknownTopic,
                    format!("topic {name} is unknown"),
                ),
            },
            MetaCommand::AlterIsr {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => self.alter_isr(
                topic,
                *partition,
                *leader,
                *leader_epoch,
                *partition_epoch,
                isr,
            ),
            MetaCommand::ElectPreferredLeader { topic, partition } => {
                let nodes = &self.nodes;
                let live = |n: NodeId| nodes.get(&n).is_some_and(|r| !r.fenced);
                let Some(p) = self
                    .topics
                    .get_mut(topic)
                    .and_then(|t| t.partitions.get_mut(usize::try_from(*partition).ok()?))
                else {
                    return reject(
                        MetaErrorCode::UnknownPartition,
                        format!("partition {topic}-{partition} is unknown"),
                    );
                };
                if let Some(&preferred) = p.replicas.first() {
                    if live(preferred) && p.isr.contains(&preferred) && p.leader != Some(preferred)
                    {
                        p.leader = Some(preferred);
                        p.leader_epoch += 1;
                        p.partition_epoch += 1;
                    }
                }
                MetaResponse::Ok
            }
            MetaCommand::AllocateProducerIds { count } => {
                if *count <= 0 {
                    return reject(
                        MetaErrorCode::InvalidRequest,
                        format!("producer id block size {count} must be positive"),
                    );
                }
                let start = self.next_producer_id;
                self.next_producer_id = start.saturating_add(*count);
                MetaResponse::ProducerIds { start }
            }
            MetaCommand::AlterDynamicConfigs {
                scope,
                changes,
                replace_all,
            } => {
                if matches!(scope, ConfigScope::Group(g) if g.is_empty()) {
                    return reject(MetaErrorCode::InvalidRequest, "the group id is empty");
                }
                self.dynamic_configs.alter(scope, changes, *replace_all);
                MetaResponse::Ok
            }
        }
    }

    /// Validates an assignment and builds fresh partitions for it.
    fn new_partitions(
        &self,
        assignment: &[Vec<NodeId>],
    ) -> Result<Vec<PartitionRecord>, MetaResponse> {
        let mut out = Vec::with_capacity(assignment.len());
        for (i, replicas) in assignment.iter().enumerate() {
            if replicas.is_empty() {
                return Err(reject(
                    MetaErrorCode::InvalidReplicaAssignment,
                    format!("partition {i} has no replicas"),
                ));
            }
            for (j, r) in replicas.iter().enumerate() {
                if replicas[..j].contains(r) {
                    return Err(reject(
                        MetaErrorCode::InvalidReplicaAssignment,
                        format!("partition {i} lists node {r} twice"),
                    ));
                }
                if !self.nodes.contains_key(r) {
                    return Err(reject(
                        MetaErrorCode::InvalidReplicaAssignment,
                        format!("partition {i}: node {r} is unknown"),
                    ));
                }
            }
            let live: Vec<NodeId> = replicas
                .iter()
                .copied()
                .filter(|&r| self.is_live(r))
                .collect();
            // Every replica of a new partition is empty, hence in sync. With no live replica the
            // partition starts offline with the full ISR so the first replica to come back leads.
            let isr = if live.is_empty() {
                replicas.clone()
            } else {
                live.clone()
            };
            out.push(PartitionRecord {
                replicas: replicas.clone(),
                isr,
                leader: live.first().copied(),
                leader_epoch: 0,
                partition_epoch: 0,
            });
        }
        Ok(out)
    }

    fn fence(&mut self, node: NodeId) -> MetaResponse {
        match self.nodes.get_mut(&node) {
            Some(n) => n.fenced = true,
            None => {
                return reject(
                    MetaErrorCode::UnknownNode,
                    format!("node {node} is unknown"),
                )
            }
        }
        let nodes = &self.nodes;
        let live = |n: NodeId| nodes.get(&n).is_some_and(|r| !r.fenced);
        for topic in self.topics.values_mut() {
            for p in &mut topic.partitions {
                let mut changed = false;
                let mut leader_changed = false;
                if p.leader == Some(node) {
                    p.leader = p
                        .replicas
                        .iter()
                        .copied()
                        .find(|&r| r != node && p.isr.contains(&r) && live(r));
                    leader_changed = true;
                }
                if p.isr.len() > 1 && p.isr.contains(&node) {
                    p.isr.retain(|&r| r != node);
                    changed = true;
                }
                if leader_changed {
                    p.leader_epoch += 1;
                }
                if changed || leader_changed {
                    p.partition_epoch += 1;
                }
            }
        }
        MetaResponse::Ok
    }

    fn unfence(&mut self, node: NodeId) {
        if let Some(n) = self.nodes.get_mut(&node) {
            n.fenced = false;
        }
        for topic in self.topics.values_mut() {
            for p in &mut topic.partitions {
                if p.leader.is_none() && p.isr.contains(&node) {
                    p.leader = Some(node);
                    p.leader_epoch += 1;
                    p.partition_epoch += 1;
                }
            }
        }
    }

    fn alter_isr(
        &mut self,
        topic: &str,
        partition: i32,
        leader: NodeId,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[NodeId],
    ) -> MetaResponse {
        let nodes = &self.nodes;
        let Some(p) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(usize::try_from(partition).ok()?))
        else {
            return reject(
                MetaErrorCode::UnknownPartition,
                format!("partition {topic}-{partition} is unknown"),
            );
        };
        if leader_epoch != p.leader_epoch {
            return reject(
                MetaErrorCode::FencedLeaderEpoch,
                format!(
                    "leader epoch {leader_epoch} of {topic}-{partition} is not the current {}",
                    p.leader_epoch
                ),
            );
        }
        if p.leader != Some(leader) {
            return reject(
                MetaErrorCode::NotLeader,
                format!(
                    "node {leader} is not the leader of {topic}-{partition} (leader {:?})",
                    p.leader
                ),
            );
        }
        if partition_epoch != p.partition_epoch {
            return reject(
                MetaErrorCode::InvalidUpdateVersion,
                format!(
                    "partition epoch {partition_epoch} of {topic}-{partition} is not the current {}",
                    p.partition_epoch
                ),
            );
        }
        if !isr.contains(&leader) {
            return reject(MetaErrorCode::InvalidIsr, "the ISR must contain the leader");
        }
        for (j, r) in isr.iter().enumerate() {
            if isr[..j].contains(r) {
                return reject(
                    MetaErrorCode::InvalidIsr,
                    format!("node {r} is listed twice"),
                );
            }
            if !p.replicas.contains(r) {
                return reject(
                    MetaErrorCode::InvalidIsr,
                    format!("node {r} is not a replica of {topic}-{partition}"),
                );
            }
            let fenced = nodes.get(r).is_none_or(|n| n.fenced);
            if fenced && !p.isr.contains(r) {
                return reject(
                    MetaErrorCode::InvalidIsr,
                    format!("node {r} is fenced and cannot join the ISR"),
                );
            }
        }
        p.isr = isr.to_vec();
        p.partition_epoch += 1;
        MetaResponse::PartitionEpoch(p.partition_epoch)
    }
}

/// Why [`place_replicas`] could not place a topic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Replication factor or partition count of zero.
    #[error("invalid placement request: {0}")]
    Invalid(String),
    /// Fewer unfenced nodes than the replication factor.
    #[error("replication factor {required} exceeds the {available} available node(s)")]
    NotEnoughNodes {
        /// Unfenced nodes.
        available: usize,
        /// The replication factor asked for.
        required: usize,
    },
}

/// Kafka-style round-robin replica placement over the unfenced nodes (sorted by id).
///
/// Partition `p` gets as first replica (preferred leader) node `(start + p) % n`, and followers
/// at shifts that rotate every `n` partitions, so leaders and followers spread evenly. `start`
/// is the node that is already the preferred leader of the fewest partitions in `image`, so
/// successive single-partition topics do not all lead on the same node.
pub fn place_replicas(
    image: &MetadataImage,
    partitions: usize,
    replication_factor: usize,
) -> Result<Vec<Vec<NodeId>>, PlacementError> {
    if partitions == 0 {
        return Err(PlacementError::Invalid("zero partitions".into()));
    }
    if replication_factor == 0 {
        return Err(PlacementError::Invalid("replication factor 0".into()));
    }
    let nodes: Vec<NodeId> = image
        .nodes
        .values()
        .filter(|n| !n.fenced)
        .map(|n| n.id)
        .collect();
    let n = nodes.len();
    if n < replication_factor {
        return Err(PlacementError::NotEnoughNodes {
            available: n,
            required: replication_factor,
        });
    }
    let mut leads = vec![0usize; n];
    let mut existing = 0usize;
    for t in image.topics.values() {
        for p in &t.partitions {
            existing += 1;
            if let Some(i) = p
                .replicas
                .first()
                .and_then(|first| nodes.iter().position(|x| x == first))
            {
                leads[i] += 1;
            }
        }
    }
    let start = (0..n).min_by_key(|&i| (leads[i], i)).unwrap_or(0);
    let mut shift = if n > 1 { existing % (n - 1) } else { 0 };
    let mut out = Vec::with_capacity(partitions);
    for p in 0..partitions {
        if p > 0 && p % n == 0 {
            shift += 1;
        }
        let first = (start + p) % n;
        let mut replicas = vec![nodes[first]];
        for j in 0..replication_factor - 1 {
            let s = 1 + (shift + j) % (n - 1);
            replicas.push(nodes[(first + s) % n]);
        }
        out.push(replicas);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: NodeId) -> NodeRecord {
        NodeRecord {
            id,
            kafka_host: "127.0.0.1".into(),
            kafka_port: 9000 + id as u16,
            cluster_addr: format!("127.0.0.1:{}", 7000 + id),
            controller_eligible: true,
            fenced: false,
        }
    }

    fn image_with(nodes: &[NodeId]) -> (MetadataImage, u64) {
        let mut img = MetadataImage::default();
        let mut idx = 0;
        for &n in nodes {
            idx += 1;
            assert_eq!(
                img.apply(idx, &MetaCommand::RegisterNode(node(n))),
                MetaResponse::Ok
            );
        }
        (img, idx)
    }

    fn create(img: &mut MetadataImage, idx: &mut u64, name: &str, a: Vec<Vec<NodeId>>) {
        *idx += 1;
        let r = img.apply(
            *idx,
            &MetaCommand::CreateTopic {
                name: name.into(),
                id: Uuid::new_v4(),
                configs: BTreeMap::new(),
                assignment: a,
            },
        );
        assert_eq!(r, MetaResponse::Ok);
    }

    fn rejected(r: MetaResponse) -> MetaErrorCode {
        match r {
            MetaResponse::Rejected { code, .. } => code,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn create_topic_sets_leader_isr_and_rejects_duplicates() {
        let (mut img, mut idx) = image_with(&[1, 2, 3]);
        create(&mut img, &mut idx, "t", vec![vec![2, 3, 1], vec![3, 1, 2]]);
        let p = img.partition("t", 0).unwrap();
        assert_eq!(p.leader, Some(2));
        assert_eq!(p.isr, vec![2, 3, 1]);
        assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
        assert_eq!(img.version, idx);
        let again = img.apply(
            idx + 1,
            &MetaCommand::CreateTopic {
                name: "t".into(),
                id: Uuid::new_v4(),
                configs: BTreeMap::new(),
                assignment: vec![vec![1]],
            },
        );
        assert_eq!(rejected(again), MetaErrorCode::TopicAlreadyExists);
        let bad = img.apply(
            idx + 2,
            &MetaCommand::CreateTopic {
                name: "u".into(),
                id: Uuid::new_v4(),
                configs: BTreeMap::new(),
                assignment: vec![vec![1, 1]],
            },
        );
        assert_eq!(rejected(bad), MetaErrorCode::InvalidReplicaAssignment);
        let unknown = img.apply(
            idx + 3,
            &MetaCommand::CreateTopic {
                name: "u".into(),
                id: Uuid::new_v4(),
                configs: BTreeMap::new(),
                assignment: vec![vec![9]],
            },
        );
        assert_eq!(rejected(unknown), MetaErrorCode::InvalidReplicaAssignment);
        assert!(!img.topics.contains_key("u"));
    }

    #[test]
    fn create_topic_skips_fenced_replicas() {
        let (mut img, mut idx) = image_with(&[1, 2, 3]);
        idx += 1;
        img.apply(idx, &MetaCommand::FenceNode { node: 1 });
        create(&mut img, &mut idx, "t", vec![vec![1, 2, 3]]);
        let p = img.partition("t", 0).unwrap();
        assert_eq!(p.leader, Some(2));
        assert_eq!(p.isr, vec![2, 3]);
    }

    #[test]
    fn fencing_moves_leadership_only_to_isr_members() {
        let (mut img, mut idx) = image_with(&[1, 2, 3]);
        create(&mut img, &mut idx, "t", vec![vec![1, 2, 3]]);
        // Shrink the ISR to {1, 3}: node 2 is not in sync and must never be elected.
        idx += 1;
        let r = img.apply(
            idx,
            &MetaCommand::AlterIsr {
                topic: "t".into(),
                partition: 0,
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
                isr: vec![1, 3],
            },
        );
        assert_eq!(r, MetaResponse::PartitionEpoch(1));
        idx += 1;
        assert_eq!(
            img.apply(idx, &MetaCommand::FenceNode { node: 1 }),
            MetaResponse::Ok
        );
        let p = img.partition("t", 0).unwrap();
        assert_eq!(
            p.leader,
            Some(3),
            "the leader must come from the ISR, not node 2"
        );
        assert_eq!(p.isr, vec![3]);
        assert_eq!(p.leader_epoch, 1);
        assert_eq!(p.partition_epoch, 2);
        assert!(img.nodes[&1].fenced);

        // Fencing the last ISR member: offline, but it stays in the ISR.
        idx += 1;
        img.apply(idx, &MetaCommand::FenceNode { node: 3 });
        let p = img.partition("t", 0).unwrap();
        assert_eq!(p.leader, None);
        assert_eq!(p.isr, vec![3]);
        assert_eq!((p.leader_epoch, p.partition_epoch), (2, 3));

        // Node 2 (not in the ISR) coming back does not make it leader.
        idx += 1;
        img.apply(idx, &MetaCommand::UnfenceNode { node: 2 });
        assert_eq!(img.partition("t", 0).unwrap().leader, None);

        // Node 3 (the last ISR member) coming back leads again.
        idx += 1;
        img.apply(idx, &MetaCommand::UnfenceNode { node: 3 });
        let p = img.partition("t", 0).unwrap();
        assert_eq!(p.leader, Some(3));
        assert_eq!((p.leader_epoch, p.partition_epoch), (3, 4));
        assert!(!img.nodes[&3].fenced);
    }

    #[test]
    fn fencing_a_follower_only_shrinks_isr() {
        let (mut img, mut idx) = image_with(&[1, 2, 3]);
        create(&mut img, &mut idx, "t", vec![vec![1, 2, 3]]);
        idx += 1;
        img.apply(idx, &MetaCommand::FenceNode { node: 2 });
        let p = img.partition("t", 0).unwrap();
        assert_eq!(p.leader, Some(1));
        assert_eq!(p.isr, vec![1, 3]);
        assert_eq!((p.leader_epoch, p.partition_epoch), (0, 1));
        // Re-registering unfences.
        idx += 1;
        img.apply(idx, &MetaCommand::RegisterNode(node(2)));
        assert!(!img.nodes[&2].fenced);
        assert_eq!(
            rejected(img.apply(idx + 1, &MetaCommand::FenceNode { node: 42 })),
            MetaErrorCode::UnknownNode
        );
    }

    #[test]
    fn alter_isr_is_fenced_by_epochs_and_leader() {
        let (mut img, mut idx) = image_with(&[1, 2, 3]);
        create(&mut img, &mut idx, "t", vec![vec![1, 2, 3]]);
        let alter = |leader, le, pe, isr: Vec<NodeId>| MetaCommand::AlterIsr {
            topic: "t".into(),
            partition: 0,
            leader,
            leader_epoch: le,
            partition_epoch: pe,
            isr,
        };
        assert_eq!(
            rejected(img.apply(10, &alter(1, 1, 0, vec![1]))),
            MetaErrorCode::FencedLeaderEpoch
        );
        assert_eq!(
            rejected(img.apply(11, &alter(2, 0, 0, vec![2]))),
            MetaErrorCode::NotLeader
        );
        assert_eq!(
            rejected(img.apply(12, &alter(1, 0, 5, vec![1]))),
            MetaErrorCode::InvalidUpdateVersion
        );
        assert_eq!(
            rejected(img.apply(13, &alter(1, 0, 0, vec![2, 3]))),
            MetaErrorCode::InvalidIsr
        );
        assert_eq!(
            rejected(img.apply(14, &alter(1, 0, 0, vec![1, 4]))),
            MetaErrorCode::InvalidIsr
        );
        assert_eq!(
            rejected(img.apply(15, &alter(1, 0, 0, vec![1, 1]))),
            MetaErrorCode::InvalidIsr
        );
        let unchanged = img.partition("t", 0).unwrap().clone();
        assert_eq!(unchanged.partition_epoch, 0);
        assert_eq!(
            img.apply(16, &alter(1, 0, 0, vec![1, 2])),
            MetaResponse::PartitionEpoch(1)
        );
        // The same request again is stale now.
        assert_eq!(
            rejected(img.apply(17, &alter(1, 0, 0, vec![1]))),
            MetaErrorCode::InvalidUpdateVersion
        );
        // A fenced node cannot be added back.
        img.apply(18, &MetaCommand::FenceNode { node: 3 });
        let pe = img.partition("t", 0).unwrap().partition_epoch;
        assert_eq!(
            rejected(img.apply(19, &alter(1, 0, pe, vec![1, 2, 3]))),
            MetaErrorCode::InvalidIsr
        );
        assert_eq!(
            img.apply(20, &alter(1, 0, pe, vec![1])),
            MetaResponse::PartitionEpoch(pe + 1)
        );
        assert_eq!(img.partition("t", 0).unwrap().isr, vec![1]);
        assert_eq!(
            rejected(img.apply(
                21,
                &MetaCommand::AlterIsr {
                    topic: "t".into(),
                    partition: 7,
                    leader: 1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    isr: vec![1],
                }
            )),
            MetaErrorCode::UnknownPartition
        );
    }

    #[test]
    fn preferred_leader_election() {
        let (mut img, mut idx) = image_with(&[1, 2]);
        create(&mut img, &mut idx, "t", vec![vec![1, 2]]);
        img.apply(10, &MetaCommand::FenceNode { node: 1 });
        assert_eq!(img.partition("t", 0).unwrap().leader, Some(2));
        // Back, but not in the ISR yet: no election.
        img.apply(11, &MetaCommand::UnfenceNode { node: 1 });
        img.apply(
            12,
            &MetaCommand::ElectPreferredLeader {
                topic: "t".into(),
                partition: 0,
            },
        );
        assert_eq!(img.partition("t", 0).unwrap().leader, Some(2));
        let p = img.partition("t", 0).unwrap().clone();
        img.apply(
            13,
            &MetaCommand::AlterIsr {
                topic: "t".into(),
                partition: 0,
                leader: 2,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                isr: vec![2, 1],
            },
        );
        img.apply(
            14,
            &MetaCommand::ElectPreferredLeader {
                topic: "t".into(),
                partition: 0,
            },
        );
        let q = img.partition("t", 0).unwrap();
        assert_eq!(q.leader, Some(1));
        assert_eq!(q.leader_epoch, p.leader_epoch + 1);
        assert_eq!(q.partition_epoch, p.partition_epoch + 2);
    }

    #[test]
    fn topics_configs_partitions_and_producer_ids() {
        let (mut img, mut idx) = image_with(&[1]);
        create(&mut img, &mut idx, "t", vec![vec![1]]);
        let cfg: BTreeMap<String, String> = [("retention.ms".to_string(), "10".to_string())].into();
        assert_eq!(
            img.apply(
                5,
                &MetaCommand::AlterConfigs {
                    name: "t".into(),
                    configs: cfg.clone()
                }
            ),
            MetaResponse::Ok
        );
        assert_eq!(img.topics["t"].configs, cfg);
        assert_eq!(
            img.apply(
                6,
                &MetaCommand::CreatePartitions {
                    name: "t".into(),
                    assignment: vec![vec![1], vec![1]]
                }
            ),
            MetaResponse::Ok
        );
        assert_eq!(img.topics["t"].partitions.len(), 3);
        assert_eq!(
            rejected(img.apply(
                7,
                &MetaCommand::CreatePartitions {
                    name: "x".into(),
                    assignment: vec![vec![1]]
                }
            )),
            MetaErrorCode::UnknownTopic
        );
        assert_eq!(
            img.apply(8, &MetaCommand::AllocateProducerIds { count: 1000 }),
            MetaResponse::ProducerIds { start: 0 }
        );
        assert_eq!(
            img.apply(9, &MetaCommand::AllocateProducerIds { count: 10 }),
            MetaResponse::ProducerIds { start: 1000 }
        );
        assert_eq!(
            rejected(img.apply(10, &MetaCommand::AllocateProducerIds { count: 0 })),
            MetaErrorCode::InvalidRequest
        );
        assert_eq!(
            img.apply(11, &MetaCommand::DeleteTopic { name: "t".into() }),
            MetaResponse::Ok
        );
        assert_eq!(
            rejected(img.apply(12, &MetaCommand::DeleteTopic { name: "t".into() })),
            MetaErrorCode::UnknownTopic
        );
        assert_eq!(img.version, 12);
    }

    #[test]
    fn placement_spreads_leaders_and_followers() {
        let (mut img, mut idx) = image_with(&[1, 2, 3]);
        let a = place_replicas(&img, 6, 2).unwrap();
        let mut leaders = BTreeMap::<NodeId, usize>::new();
        let mut replicas = BTreeMap::<NodeId, usize>::new();
        for r in &a {
            assert_eq!(r.len(), 2);
            assert_ne!(r[0], r[1]);
            *leaders.entry(r[0]).or_default() += 1;
            for n in r {
                *replicas.entry(*n).or_default() += 1;
            }
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
        assert_eq!(
            replicas.values().copied().collect::<Vec<_>>(),
            vec![4, 4, 4]
        );

        // Successive single-partition topics lead on different nodes.
        let mut firsts = Vec::new();
        for t in 0..3 {
            let a = place_replicas(&img, 1, 3).unwrap();
            firsts.push(a[0][0]);
            create(&mut img, &mut idx, &format!("t{t}"), a);
        }
        firsts.sort_unstable();
        assert_eq!(firsts, vec![1, 2, 3]);

        // Fenced nodes are not used; too few nodes is an error.
        idx += 1;
        img.apply(idx, &MetaCommand::FenceNode { node: 2 });
        let a = place_replicas(&img, 4, 2).unwrap();
        assert!(a.iter().flatten().all(|&n| n != 2));
        assert_eq!(
            place_replicas(&img, 1, 3),
            Err(PlacementError::NotEnoughNodes {
                available: 2,
                required: 3
            })
        );
        assert!(place_replicas(&img, 0, 1).is_err());
        let single = image_with(&[7]).0;
        assert_eq!(
            place_replicas(&single, 2, 1).unwrap(),
            vec![vec![7], vec![7]]
        );
    }

    #[test]
    fn dynamic_configs_set_delete_replace_and_roundtrip() {
        let (mut img, mut idx) = image_with(&[1, 2]);
        let mut alter = |img: &mut MetadataImage,
                         scope: ConfigScope,
                         pairs: &[(&str, Option<&str>)],
                         replace_all: bool| {
            idx += 1;
            img.apply(
                idx,
                &MetaCommand::AlterDynamicConfigs {
                    scope,
                    changes: pairs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.map(String::from)))
                        .collect(),
                    replace_all,
                },
            )
        };
        let m = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let cluster = ConfigScope::ClusterDefault;
        let b2 = ConfigScope::Broker(2);
        let g = ConfigScope::Group("g".into());
        assert_eq!(
            alter(
                &mut img,
                cluster.clone(),
                &[
                    ("log.retention.ms", Some("1")),
                    ("message.max.bytes", Some("2048"))
                ],
                false
            ),
            MetaResponse::Ok
        );
        assert_eq!(
            alter(
                &mut img,
                b2.clone(),
                &[("log.retention.ms", Some("2"))],
                false
            ),
            MetaResponse::Ok
        );
        assert_eq!(
            alter(
                &mut img,
                g.clone(),
                &[("consumer.session.timeout.ms", Some("50000"))],
                false
            ),
            MetaResponse::Ok
        );
        assert_eq!(
            img.dynamic_configs.get(&cluster),
            &m(&[("log.retention.ms", "1"), ("message.max.bytes", "2048")])
        );
        assert_eq!(
            img.dynamic_configs.get(&b2),
            &m(&[("log.retention.ms", "2")])
        );
        assert!(img.dynamic_configs.get(&ConfigScope::Broker(1)).is_empty());
        // Delete one key; replace_all drops the keys not named.
        alter(
            &mut img,
            cluster.clone(),
            &[("log.retention.ms", None)],
            false,
        );
        assert_eq!(
            img.dynamic_configs.get(&cluster),
            &m(&[("message.max.bytes", "2048")])
        );
        alter(
            &mut img,
            cluster.clone(),
            &[("log.roll.ms", Some("9"))],
            true,
        );
        assert_eq!(
            img.dynamic_configs.get(&cluster),
            &m(&[("log.roll.ms", "9")])
        );
        // An emptied broker or group scope leaves nothing behind.
        alter(&mut img, b2.clone(), &[("log.retention.ms", None)], false);
        assert!(!img.dynamic_configs.brokers.contains_key(&2));
        assert_eq!(
            rejected(alter(
                &mut img,
                ConfigScope::Group(String::new()),
                &[("x", Some("1"))],
                false
            )),
            MetaErrorCode::InvalidRequest
        );
        // Snapshots carry them; an image written before they existed still decodes.
        let bytes = serde_json::to_vec(&img).unwrap();
        let back: MetadataImage = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, img);
        let mut old = serde_json::to_value(&img).unwrap();
        old.as_object_mut().unwrap().remove("dynamic_configs");
        let back: MetadataImage = serde_json::from_value(old).unwrap();
        assert_eq!(back.dynamic_configs, DynamicConfigs::default());
        assert_eq!(back.topics, img.topics);
    }

    #[test]
    fn image_roundtrips_through_json() {
        let (mut img, mut idx) = image_with(&[1, 2]);
        create(&mut img, &mut idx, "t", vec![vec![1, 2]]);
        let bytes = serde_json::to_vec(&img).unwrap();
        let back: MetadataImage = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, img);
    }
}
