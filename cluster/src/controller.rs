//! The controller facade the broker talks to.
//!
//! Reads come from this node's copy of the replicated metadata image (every node applies the
//! controller's Raft log); changes are proposed to the Raft group ([`MetaRaft`]) and answered
//! once this node's image shows them and its local replicas follow. A reconciler task turns
//! every new image into `Ensure` / `Remove` messages for the local replica manager, with each
//! partition's role (leader, epoch, ISR).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use rivulet_actors::replication::BoxFuture;
use rivulet_actors::{
    IsrChange, ReplicaHandle, ReplicaManagerMsg, ReplicaRole, ReplicaSpec, TopicPartition,
};
use rivulet_storage::{PartitionId, StorageError, TopicMeta};
use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;

use crate::dynamic_config::{self, DynamicConfigError, GroupOverrides};
use crate::membership::{IsrHandler, Membership, RpcHandler};
use crate::raft::state::{place_replicas, PlacementError};
use crate::raft::{
    ConfigScope, DynamicConfigs, MetaCommand, MetaErrorCode, MetaRaft, MetaResponse, MetadataImage,
    ProposeError,
};
use crate::topic_config::{ConfigEntry, TopicDefaults};

/// Longest topic name Kafka accepts.
const TOPIC_NAME_MAX: usize = 249;
/// Most partitions one topic may have on this node (bounds memory and open keyspaces).
const PARTITIONS_MAX: i32 = 10_000;
const ACTOR_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Replicas per `EnsureMany`: large enough to open logs in parallel at start-up, small enough
/// that the replica manager's mailbox (restarts, removals) is not held for long.
const ENSURE_BATCH: usize = 256;
/// How long topic creation waits for enough live nodes to place replicas on.
const PLACEMENT_WAIT: Duration = Duration::from_secs(5);

/// Node-level settings the controller needs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This node's id.
    pub node_id: i32,
    /// Partitions of a topic created without a count (and of auto-created topics).
    pub default_partitions: i32,
    /// Replication factor used when a request leaves it unset.
    pub default_replication_factor: i16,
    /// Create unknown topics on Metadata/Produce requests.
    pub auto_create_topics: bool,
    /// Defaults for topic configs.
    pub topic_defaults: TopicDefaults,
}

/// Why a controller operation failed. The broker maps each to a Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The topic exists already.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// No such topic.
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    /// Illegal name.
    #[error("invalid topic name {name:?}: {why}")]
    InvalidTopicName {
        /// The name.
        name: String,
        /// What rule it breaks.
        why: String,
    },
    /// Bad partition count.
    #[error("{0}")]
    InvalidPartitions(String),
    /// Bad replication factor.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// Bad topic config.
    #[error("{0}")]
    InvalidConfig(String),
    /// Storage failed.
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    /// The replica actors could not be reached or failed.
    #[error("replica manager: {0}")]
    Replica(String),
    /// The controller quorum could not commit the change (no leader, lost links).
    #[error("the cluster controller is unavailable: {0}")]
    Unavailable(String),
    /// A replica assignment names unknown nodes or repeats one.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
}

/// A topic to create.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partition count, or `None` for the default.
    pub partitions: Option<i32>,
    /// Replication factor, or `None` for the default.
    pub replication_factor: Option<i16>,
    /// Topic config overrides.
    pub configs: BTreeMap<String, String>,
    /// Only check the request.
    pub validate_only: bool,
    /// Explicit replica assignment (one node list per partition), instead of placement.
    pub assignment: Option<Vec<Vec<i32>>>,
}

/// Where a partition lives (the view Metadata answers from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader node id, or -1 while offline.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
}

/// A broker as Metadata and DescribeCluster show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
}

/// The controller facade. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: ControllerConfig,
    raft: MetaRaft,
    manager: ActorRef<ReplicaManagerMsg>,
    registry: rivulet_actors::ReplicaRegistry,
    membership: Option<Membership>,
    image: watch::Receiver<Arc<MetadataImage>>,
    /// Version of the image whose replicas this node has started (or stopped).
    reconciled: watch::Receiver<u64>,
    reconciler: tokio::task::JoinHandle<()>,
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// [`Controller::topic_defaults`] for the image version it was computed from: produce
    /// asks for min ISR on every request, and the layers only change with the image.
    topic_defaults: parking_lot::Mutex<(u64, Arc<TopicDefaults>)>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reconciler.abort();
    }
}

/// Topic names Kafka accepts: `[a-zA-Z0-9._-]{1,249}`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let bad = |why: &str| {
        Err(ControllerError::InvalidTopicName {
            name: name.to_string(),
            why: why.to_string(),
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if name.len() > TOPIC_NAME_MAX {
        return bad("it is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

fn to_i32(ids: &[u64]) -> Vec<i32> {
    ids.iter().map(|n| *n as i32).collect()
}

fn topic_meta(t: &crate::raft::TopicRecord) -> TopicMeta {
    TopicMeta {
        name: t.name.clone(),
        id: t.id,
        partitions: t.partitions.len() as i32,
        replication_factor: t.partitions.first().map_or(0, |p| p.replicas.len() as i16),
        configs: t.configs.clone(),
        created_ms: 0,
    }
}

fn unavailable(e: ProposeError) -> ControllerError {
    ControllerError::Unavailable(format!("{e}; retry once the controller quorum is back"))
}

/// Keeps the local replicas in line with the metadata image, forever.
async fn reconcile_loop(
    node_id: u64,
    defaults: TopicDefaults,
    manager: ActorRef<ReplicaManagerMsg>,
    membership: Option<Membership>,
    mut image: watch::Receiver<Arc<MetadataImage>>,
    reconciled: watch::Sender<u64>,
) {
    let mut applied: HashMap<TopicPartition, ReplicaSpec> = HashMap::new();
    loop {
        let img = image.borrow_and_update().clone();
        if let Some(m) = &membership {
            for n in img.nodes.values() {
                m.learn_address(n.id, n.cluster_addr.clone());
            }
        }
        // Dynamic broker configs change the defaults of topics without overrides: a changed
        // default changes those replicas' specs below, and the manager applies the new config.
        let defaults =
            defaults.with_dynamic(dynamic_config::layers_for(&img.dynamic_configs, node_id));
        let mut desired: HashMap<TopicPartition, ReplicaSpec> = HashMap::new();
        for t in img.topics.values() {
            let config = defaults.log_config(&t.configs);
            for (p, rec) in t.partitions.iter().enumerate() {
                if !rec.replicas.contains(&node_id) {
                    continue;
                }
                let tp = TopicPartition::new(t.name.as_str(), p as i32);
                desired.insert(
                    tp.clone(),
                    ReplicaSpec {
                        tp,
                        id: PartitionId {
                            topic_id: t.id,
                            partition: p as i32,
                        },
                        config: config.clone(),
                        role: ReplicaRole {
                            leader: rec.leader,
                            leader_epoch: rec.leader_epoch,
                            partition_epoch: rec.partition_epoch,
                            replicas: rec.replicas.clone(),
                            isr: rec.isr.clone(),
                        },
                    },
                );
            }
        }
        let mut failed = false;
        let gone: Vec<TopicPartition> = applied
            .keys()
            .filter(|tp| {
                desired
                    .get(*tp)
                    .is_none_or(|d| Some(d.id) != applied.get(*tp).map(|a| a.id))
            })
            .cloned()
            .collect();
        for tp in gone {
            let r = ractor::call_t!(
                manager,
                |reply| ReplicaManagerMsg::Remove {
                    tp: tp.clone(),
                    delete_data: true,
                    reply
                },
                ACTOR_CALL_TIMEOUT.as_millis() as u64
            );
            match r {
                Ok(Ok(())) => {
                    applied.remove(&tp);
                }
                other => {
                    warn!(%tp, result = ?other.map(|_| ()), "could not remove a replica; retrying");
                    failed = true;
                }
            }
        }
        let mut changed: Vec<ReplicaSpec> = desired
            .into_values()
            .filter(|spec| applied.get(&spec.tp) != Some(spec))
            .collect();
        // Partitions this node leads first: clients wait for those.
        changed.sort_by_key(|spec| spec.role.leader != Some(node_id));
        for batch in changed.chunks(ENSURE_BATCH) {
            let r = ractor::call_t!(
                manager,
                ReplicaManagerMsg::EnsureMany,
                ACTOR_CALL_TIMEOUT.as_millis() as u64,
                batch.to_vec()
            );
            let results = match r {
                Ok(results) => results,
                Err(e) => {
                    warn!(error = %e, replicas = batch.len(), "replica manager unavailable; retrying");
                    failed = true;
                    continue;
                }
            };
            let mut specs: HashMap<&TopicPartition, &ReplicaSpec> =
                batch.iter().map(|spec| (&spec.tp, spec)).collect();
            for (tp, result) in results {
                let Some(spec) = specs.remove(&tp) else {
                    continue;
                };
                match result {
                    Ok(()) => {
                        applied.insert(tp, spec.clone());
                    }
                    Err(e) => {
                        warn!(%tp, error = %e, "could not start a replica; retrying");
                        failed = true;
                    }
                }
            }
            // A replica the manager gave no answer for is retried too.
            failed |= !specs.is_empty();
        }
        if !failed {
            reconciled.send_replace(img.version);
        }
        let wait = image.changed();
        if failed {
            let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
        } else if wait.await.is_err() {
            return;
        }
    }
}

impl Controller {
    /// Starts the facade on a running Raft controller: the reconciler starts this node's
    /// replicas from the current image at once.
    pub async fn start(
        cfg: ControllerConfig,
        raft: MetaRaft,
        manager: ActorRef<ReplicaManagerMsg>,
        registry: rivulet_actors::ReplicaRegistry,
        membership: Option<Membership>,
    ) -> Result<Self, ControllerError> {
        let image = raft.image();
        let (rec_tx, rec_rx) = watch::channel(0);
        let reconciler = tokio::spawn(reconcile_loop(
            cfg.node_id as u64,
            cfg.topic_defaults.clone(),
            manager.clone(),
            membership.clone(),
            image.clone(),
            rec_tx,
        ));
        let controller = Controller {
            inner: Arc::new(Inner {
                cfg,
                raft,
                manager,
                registry,
                membership,
                image,
                reconciled: rec_rx,
                reconciler,
                producer_ids: tokio::sync::Mutex::new((0, 0)),
                topic_defaults: parking_lot::Mutex::new((u64::MAX, Arc::default())),
            }),
        };
        if let Some(m) = &controller.inner.membership {
            m.set_isr_handler(Arc::new(controller.clone()));
        }
        let topics = controller.image().topics.len();
        info!(topics, "controller facade started");
        Ok(controller)
    }

    /// Node-level settings.
    pub fn config(&self) -> &ControllerConfig {
        &self.inner.cfg
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.inner.cfg.node_id
    }

    /// The current metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.inner.image.borrow().clone()
    }

    /// The Raft controller.
    pub fn raft(&self) -> &MetaRaft {
        &self.inner.raft
    }

    /// The node-to-node links (`None` on a single node).
    pub fn membership(&self) -> Option<&Membership> {
        self.inner.membership.as_ref()
    }

    /// The controller leader's node id, or -1 while there is none.
    pub fn controller_id(&self) -> i32 {
        self.inner.raft.controller_leader().map_or(-1, |n| n as i32)
    }

    /// Waits (at most `timeout`) until this node knows a controller leader; false on timeout.
    pub async fn wait_controller_known(&self, timeout: Duration) -> bool {
        self.inner.raft.wait_controller_leader(timeout).await
    }

    /// True while this node's lease with the controller is valid (a node that cannot reach
    /// the controller must stop acting as leader).
    pub fn lease_valid(&self) -> bool {
        self.inner.raft.lease_valid()
    }

    /// Watches [`Controller::lease_valid`]; it turns false the moment the lease lapses, so
    /// `acks=all` waiters can fail at once with a retriable error.
    pub fn lease_watch(&self) -> watch::Receiver<bool> {
        self.inner.raft.lease_watch()
    }

    /// Live (unfenced) brokers, sorted by id.
    pub fn brokers(&self) -> Vec<BrokerInfo> {
        self.image()
            .nodes
            .values()
            .filter(|n| !n.fenced)
            .map(|n| BrokerInfo {
                node_id: n.id as i32,
                host: n.kafka_host.clone(),
                port: n.kafka_port as i32,
            })
            .collect()
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.image().topics.get(name).map(topic_meta)
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<TopicMeta> {
        self.image()
            .topics
            .values()
            .find(|t| t.id == id)
            .map(topic_meta)
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<TopicMeta> {
        self.image().topics.values().map(topic_meta).collect()
    }

    /// How many local replicas are running.
    pub fn local_replicas(&self) -> usize {
        self.inner.registry.len()
    }

    /// The local replica serving a partition, if running.
    pub fn replica(&self, tp: &TopicPartition) -> Option<ReplicaHandle> {
        self.inner.registry.get(tp)
    }

    /// Where each partition of `topic` lives.
    ///
    /// This node names itself leader only of partitions it can serve as leader now: its lease
    /// is valid and its replica runs as leader in the image's epoch. Otherwise the leader is
    /// -1 (clients see LEADER_NOT_AVAILABLE and ask again, possibly another node) rather than
    /// a leadership that produce would refuse with NOT_LEADER_OR_FOLLOWER: a node cut off
    /// from the controller, or still opening its replicas after a restart.
    pub fn partitions(&self, topic: &TopicMeta) -> Vec<PartitionInfo> {
        let img = self.image();
        let Some(t) = img.topics.get(&topic.name) else {
            return Vec::new();
        };
        let me = self.inner.cfg.node_id;
        let lease_valid = self.lease_valid();
        let name: Arc<str> = Arc::from(t.name.as_str());
        let serving = |p: i32, epoch: i32| {
            lease_valid
                && self
                    .inner
                    .registry
                    .leads(&TopicPartition::new(name.clone(), p), epoch)
        };
        t.partitions
            .iter()
            .enumerate()
            .map(|(p, rec)| PartitionInfo {
                partition: p as i32,
                leader: match rec.leader.map(|l| l as i32) {
                    Some(l) if l == me && !serving(p as i32, rec.leader_epoch) => -1,
                    l => l.unwrap_or(-1),
                },
                leader_epoch: rec.leader_epoch,
                replicas: to_i32(&rec.replicas),
                isr: to_i32(&rec.isr),
            })
            .collect()
    }

    /// Effective configuration of a topic.
    pub fn describe_configs(&self, topic: &TopicMeta) -> Vec<ConfigEntry> {
        self.topic_defaults().describe(&topic.configs)
    }

    /// This node's topic defaults as they stand now: the config file's `[log]` values with
    /// the cluster-wide and this node's dynamic broker configs layered over them.
    pub fn topic_defaults(&self) -> Arc<TopicDefaults> {
        let img = self.image();
        let mut cached = self.inner.topic_defaults.lock();
        if cached.0 != img.version {
            let d = self
                .inner
                .cfg
                .topic_defaults
                .with_dynamic(dynamic_config::layers_for(
                    &img.dynamic_configs,
                    self.inner.cfg.node_id as u64,
                ));
            *cached = (img.version, Arc::new(d));
        }
        cached.1.clone()
    }

    /// The dynamic broker and group configs of the cluster.
    pub fn dynamic_configs(&self) -> DynamicConfigs {
        self.image().dynamic_configs.clone()
    }

    /// A group's dynamic KIP-848 settings (none set: every field `None`).
    pub fn group_overrides(&self, group_id: &str) -> GroupOverrides {
        let img = self.image();
        dynamic_config::group_overrides(
            img.dynamic_configs
                .get(&ConfigScope::Group(group_id.to_string())),
        )
    }

    /// Sets (`Some`) or deletes (`None`) dynamic configs at `scope`, through Raft; with
    /// `replace_all` every other key of the scope is deleted (legacy AlterConfigs). Broker
    /// scopes are validated here; group configs are validated by the caller, which knows the
    /// group coordinator's bounds. Returns once this node's replicas follow the change.
    pub async fn alter_dynamic_configs(
        &self,
        scope: ConfigScope,
        changes: BTreeMap<String, Option<String>>,
        replace_all: bool,
        validate_only: bool,
    ) -> Result<(), DynamicConfigError> {
        let img = self.image();
        match &scope {
            ConfigScope::ClusterDefault => {}
            ConfigScope::Broker(n) if img.nodes.contains_key(n) => {}
            ConfigScope::Broker(n) => {
                return Err(DynamicConfigError::Invalid(format!(
                    "broker {n} is not a node of this cluster"
                )))
            }
            ConfigScope::Group(g) if g.is_empty() => {
                return Err(DynamicConfigError::Invalid("the group id is empty".into()))
            }
            ConfigScope::Group(_) => {}
        }
        if !matches!(scope, ConfigScope::Group(_)) {
            dynamic_config::validate_broker(&self.inner.cfg.topic_defaults, &changes)?;
        }
        if validate_only {
            return Ok(());
        }
        let expected =
            dynamic_config::after_change(img.dynamic_configs.get(&scope), &changes, replace_all);
        match self
            .propose(MetaCommand::AlterDynamicConfigs {
                scope: scope.clone(),
                changes,
                replace_all,
            })
            .await
        {
            Ok(_) => {}
            Err(e) => return Err(DynamicConfigError::Unavailable(e.to_string())),
        }
        self.wait_reconciled(|i| i.dynamic_configs.get(&scope) == &expected)
            .await;
        info!(?scope, configs = ?expected, "dynamic configs changed");
        Ok(())
    }

    /// Effective `min.insync.replicas` of a topic under this node's defaults as they stand
    /// now ([`crate::policy::min_insync_replicas`] has the rule).
    pub fn min_insync_replicas(&self, topic: &TopicMeta) -> i64 {
        crate::policy::min_insync_replicas(&self.topic_defaults(), topic)
    }

    /// Allocates a fresh idempotent-producer id (blocks of 1000 from the controller).
    pub async fn allocate_producer_id(&self) -> Result<i64, ControllerError> {
        const BLOCK: i64 = 1000;
        let mut ids = self.inner.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            match self
                .inner
                .raft
                .propose(MetaCommand::AllocateProducerIds { count: BLOCK })
                .await
                .map_err(unavailable)?
            {
                MetaResponse::ProducerIds { start } => *ids = (start, start + BLOCK),
                other => {
                    return Err(ControllerError::Unavailable(format!(
                        "unexpected answer to a producer id allocation: {other:?}"
                    )))
                }
            }
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Waits (up to `timeout`) until the local replicas reflect the metadata this node has now,
    /// so a node that restarts does not answer NOT_LEADER_OR_FOLLOWER for partitions it is
    /// about to lead. Returns false on timeout.
    pub async fn wait_replicas_started(&self, timeout: Duration) -> bool {
        let version = self.inner.image.borrow().version;
        let mut rec = self.inner.reconciled.clone();
        let started = tokio::time::timeout(timeout, rec.wait_for(|v| *v >= version))
            .await
            .is_ok_and(|r| r.is_ok());
        started
    }

    /// Waits until this node's image and replicas reflect a change applied at `version` or
    /// later (bounded: a slow node answers anyway; clients retry on metadata errors).
    async fn wait_reconciled(&self, done: impl Fn(&MetadataImage) -> bool) {
        let mut image = self.inner.image.clone();
        let deadline = Duration::from_secs(10);
        let version = match tokio::time::timeout(deadline, image.wait_for(|i| done(i))).await {
            Ok(Ok(img)) => img.version,
            _ => return,
        };
        let mut rec = self.inner.reconciled.clone();
        let _ = tokio::time::timeout(deadline, rec.wait_for(|v| *v >= version)).await;
    }

    async fn propose(&self, cmd: MetaCommand) -> Result<MetaResponse, ControllerError> {
        match self.inner.raft.propose(cmd).await.map_err(unavailable)? {
            MetaResponse::Rejected { code, message } => Err(match code {
                MetaErrorCode::TopicAlreadyExists => ControllerError::TopicExists(message),
                MetaErrorCode::UnknownTopic => ControllerError::UnknownTopic(message),
                MetaErrorCode::InvalidReplicaAssignment | MetaErrorCode::UnknownNode => {
                    ControllerError::InvalidReplicaAssignment(message)
                }
                _ => ControllerError::Unavailable(format!("{code}: {message}")),
            }),
            ok => Ok(ok),
        }
    }

    fn check_new_topic(&self, req: &NewTopic) -> Result<(i32, i16), ControllerError> {
        validate_topic_name(&req.name)?;
        if self.topic(&req.name).is_some() {
            return Err(ControllerError::TopicExists(req.name.clone()));
        }
        if let Some(a) = &req.assignment {
            let rf = a.first().map_or(0, |r| r.len()) as i16;
            if a.is_empty() || a.iter().any(|r| r.len() as i16 != rf || r.is_empty()) {
                return Err(ControllerError::InvalidReplicaAssignment(
                    "every partition of an assignment needs the same, non-zero number of replicas"
                        .into(),
                ));
            }
            return Ok((a.len() as i32, rf));
        }
        let partitions = req.partitions.unwrap_or(self.inner.cfg.default_partitions);
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(ControllerError::InvalidPartitions(format!(
                "partition count {partitions} is out of range 1..={PARTITIONS_MAX}"
            )));
        }
        let rf = req
            .replication_factor
            .unwrap_or(self.inner.cfg.default_replication_factor);
        if rf < 1 {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "replication factor {rf} must be at least 1"
            )));
        }
        self.inner
            .cfg
            .topic_defaults
            .validate(&req.configs)
            .map_err(ControllerError::InvalidConfig)?;
        Ok((partitions, rf))
    }

    /// Places replicas over the live nodes. Right after start-up nodes may not have registered
    /// yet, so a shortage of nodes is waited out for a few seconds before it is an error.
    async fn place(&self, partitions: i32, rf: i16) -> Result<Vec<Vec<u64>>, ControllerError> {
        let deadline = tokio::time::Instant::now() + PLACEMENT_WAIT;
        let mut image = self.inner.image.clone();
        loop {
            let img = image.borrow_and_update().clone();
            match place_replicas(&img, partitions as usize, rf as usize) {
                Ok(a) => return Ok(a),
                Err(PlacementError::Invalid(m)) => {
                    return Err(ControllerError::InvalidPartitions(m))
                }
                Err(e @ PlacementError::NotEnoughNodes { .. }) => {
                    let live = img.nodes.values().filter(|n| !n.fenced).count();
                    let known_enough = img.nodes.len() >= rf as usize && live >= rf as usize;
                    if known_enough
                        || tokio::time::timeout_at(deadline, image.changed())
                            .await
                            .map_or(true, |r| r.is_err())
                    {
                        return Err(ControllerError::InvalidReplicationFactor(e.to_string()));
                    }
                }
            }
        }
    }

    /// Checks an explicit replica assignment: every node known, none repeated in a partition.
    fn check_assignment(&self, a: &[Vec<i32>]) -> Result<Vec<Vec<u64>>, ControllerError> {
        let img = self.image();
        for r in a {
            let mut seen = r.clone();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() != r.len()
                || r.iter()
                    .any(|n| *n < 0 || !img.nodes.contains_key(&(*n as u64)))
            {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "replica assignment {r:?} repeats a node or names an unknown one"
                )));
            }
        }
        Ok(a.iter()
            .map(|r| r.iter().map(|n| *n as u64).collect())
            .collect())
    }

    /// Creates a topic; returns once this node's replicas of it are running.
    pub async fn create_topic(&self, req: NewTopic) -> Result<TopicMeta, ControllerError> {
        let (partitions, replication_factor) = self.check_new_topic(&req)?;
        let assignment: Vec<Vec<u64>> = match &req.assignment {
            Some(a) => self.check_assignment(a)?,
            None => self.place(partitions, replication_factor).await?,
        };
        let meta = TopicMeta {
            name: req.name.clone(),
            id: Uuid::new_v4(),
            partitions,
            replication_factor,
            configs: req.configs.clone(),
            created_ms: 0,
        };
        if req.validate_only {
            return Ok(meta);
        }
        self.propose(MetaCommand::CreateTopic {
            name: meta.name.clone(),
            id: meta.id,
            configs: meta.configs.clone(),
            assignment,
        })
        .await?;
        let id = meta.id;
        self.wait_reconciled(|i| i.topics.get(&req.name).is_some_and(|t| t.id == id))
            .await;
        info!(topic = %meta.name, partitions, replication_factor, "topic created");
        Ok(meta)
    }

    /// Creates `name` with defaults if auto-creation is on and it does not exist yet.
    pub async fn auto_create(&self, name: &str) -> Result<Option<TopicMeta>, ControllerError> {
        if let Some(t) = self.topic(name) {
            return Ok(Some(t));
        }
        if !self.inner.cfg.auto_create_topics {
            return Ok(None);
        }
        let rf = self
            .inner
            .cfg
            .default_replication_factor
            .min(self.brokers().len().max(1) as i16);
        match self
            .create_topic(NewTopic {
                name: name.to_string(),
                replication_factor: Some(rf),
                ..Default::default()
            })
            .await
        {
            Ok(t) => Ok(Some(t)),
            Err(ControllerError::TopicExists(_)) => Ok(self.topic(name)),
            Err(e) => Err(e),
        }
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<TopicMeta, ControllerError> {
        let meta = self
            .topic(name)
            .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
        self.propose(MetaCommand::DeleteTopic {
            name: name.to_string(),
        })
        .await?;
        self.wait_reconciled(|i| i.topics.get(name).is_none_or(|t| t.id != meta.id))
            .await;
        info!(topic = %name, "topic deleted");
        Ok(meta)
    }

    /// Grows a topic to `count` partitions, placing the new ones itself or on the nodes of
    /// `assignment` (one replica list per new partition, each as long as the topic's
    /// replication factor).
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignment: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        let meta = self
            .topic(name)
            .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
        if count <= meta.partitions {
            return Err(ControllerError::InvalidPartitions(format!(
                "topic {name:?} has {} partitions; the new count {count} must be larger",
                meta.partitions
            )));
        }
        if count > PARTITIONS_MAX {
            return Err(ControllerError::InvalidPartitions(format!(
                "partition count {count} is above the limit of {PARTITIONS_MAX}"
            )));
        }
        let added = count - meta.partitions;
        let assignment = match assignment {
            Some(a) => {
                // Kafka's messages, so that tools show what they show against Kafka.
                if a.len() as i32 != added {
                    return Err(ControllerError::InvalidReplicaAssignment(format!(
                        "Increasing the number of partitions by {added} but {} assignments provided.",
                        a.len()
                    )));
                }
                let rf = meta.replication_factor.max(1) as usize;
                if let Some(bad) = a.iter().find(|r| r.len() != rf) {
                    return Err(ControllerError::InvalidReplicaAssignment(format!(
                        "Inconsistent replication factor: the topic has {rf} replicas per partition, the assignment {bad:?} has {}.",
                        bad.len()
                    )));
                }
                self.check_assignment(&a)?
            }
            None => self.place(added, meta.replication_factor.max(1)).await?,
        };
        if validate_only {
            return Ok(());
        }
        self.propose(MetaCommand::CreatePartitions {
            name: name.to_string(),
            assignment,
        })
        .await?;
        self.wait_reconciled(|i| {
            i.topics
                .get(name)
                .is_some_and(|t| t.partitions.len() as i32 >= count)
        })
        .await;
        info!(topic = %name, from = meta.partitions, to = count, "partitions added");
        Ok(())
    }

    /// Replaces a topic's config overrides (AlterConfigs) and applies them to its replicas.
    pub async fn alter_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        self.topic(name)
            .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
        self.inner
            .cfg
            .topic_defaults
            .validate(&configs)
            .map_err(ControllerError::InvalidConfig)?;
        if validate_only {
            return Ok(());
        }
        self.propose(MetaCommand::AlterConfigs {
            name: name.to_string(),
            configs: configs.clone(),
        })
        .await?;
        self.wait_reconciled(|i| i.topics.get(name).is_none_or(|t| t.configs == configs))
            .await;
        Ok(())
    }

    /// The replica manager (for diagnostics and tests).
    pub fn replica_manager(&self) -> &ActorRef<ReplicaManagerMsg> {
        &self.inner.manager
    }
}

impl IsrHandler for Controller {
    fn change_isr(&self, change: IsrChange) -> BoxFuture<Result<i32, String>> {
        let raft = self.inner.raft.clone();
        Box::pin(async move {
            let cmd = MetaCommand::AlterIsr {
                topic: change.topic,
                partition: change.partition,
                leader: change.leader,
                leader_epoch: change.leader_epoch,
                partition_epoch: change.partition_epoch,
                isr: change.isr,
            };
            match raft.propose(cmd).await {
                Ok(MetaResponse::PartitionEpoch(e)) => Ok(e),
                Ok(MetaResponse::Rejected { code, message }) => Err(format!("{code}: {message}")),
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// Serves controller RPCs from peers with the local Raft node.
#[derive(Debug, Clone)]
pub struct RaftRpcHandler(pub MetaRaft);

impl RpcHandler for RaftRpcHandler {
    fn handle(&self, request: Vec<u8>) -> BoxFuture<Vec<u8>> {
        let raft = self.0.clone();
        Box::pin(async move { raft.handle_rpc(request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["a", "orders", "a.b_c-D9", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "has space",
            "slash/no",
            "ü",
            &"x".repeat(250),
        ] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }
}
