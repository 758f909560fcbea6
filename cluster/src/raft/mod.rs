//! The Raft metadata controller: cluster metadata ([`MetadataImage`]) as a replicated state
//! machine on an openraft group.
//!
//! Every node runs a [`MetaRaft`]. The seed nodes (`MetaRaftConfig::voters`) are the voters;
//! nodes that join later become learners, so every node holds the full image locally
//! (KRaft-style) and reads it from [`MetaRaft::image`]. Changes go through [`MetaRaft::propose`],
//! which writes locally on the leader and forwards to the leader elsewhere.
//!
//! ```text
//!  propose ──▶ leader? ── yes ──▶ raft.client_write ──▶ log (fjall, synced) ──▶ apply ──▶ image watch
//!                 └─ no ──▶ ClientWrite over RaftTransport ──▶ leader's handle_rpc ──┘
//! ```
//!
//! Liveness: every node heartbeats the controller leader; the leader fences nodes whose lease
//! ran out ([`MetaCommand::FenceNode`] moves their partition leaderships to in-sync replicas) and
//! unfences them when they heartbeat again. The leader also moves leadership back to preferred
//! replicas.
//!
//! Bootstrap: a pristine seed node initializes the group with `voters` as membership. openraft
//! documents, and its source confirms (`Engine::initialize` writes the same membership entry at
//! the fixed log id `(term 0, node 0, index 0)` on every node, refused once a node has any log or
//! vote), that several nodes initializing with the *same* membership is safe. To avoid a split
//! vote at start-up the smallest seed initializes at once and the others only after
//! `2 × election_timeout_max` if nobody has contacted them by then.

mod lease;
mod network;
pub mod state;
mod store;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Raft, ServerState};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use network::{RaftTransport, TransportError, TransportFuture};
pub use state::{
    place_replicas, ConfigScope, DynamicConfigs, MetaCommand, MetaErrorCode, MetaResponse,
    MetadataImage, NodeId, NodeRecord, PartitionRecord, PlacementError, TopicRecord,
};

use lease::{LeaderLeases, NodeLease};
use network::{call, ControllerReply, ControllerRpc, Network};
use store::{LogStore, RaftDb, StateMachineStore};

openraft::declare_raft_types!(
    /// openraft type configuration of the metadata controller.
    pub TypeConfig:
        D = MetaCommand,
        R = MetaResponse,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// How long [`MetaRaft::propose`] keeps trying (leader changes, forwarding) before giving up.
pub const PROPOSE_DEADLINE: Duration = Duration::from_secs(10);
/// How often the leader checks leases.
const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Pause between retries of a failed forward or a join.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// openraft's backoff after `Unreachable`.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(200);

/// Configuration of a node's controller.
#[derive(Clone, Debug)]
pub struct MetaRaftConfig {
    /// This node's id.
    pub node_id: NodeId,
    /// The seed nodes (id → cluster address), identical on every seed node and including it.
    /// A node not listed here joins as a learner through these nodes. `{self}` alone is a
    /// single-node cluster.
    pub voters: BTreeMap<NodeId, String>,
    /// This node as it registers itself.
    pub self_record: NodeRecord,
    /// How often this node heartbeats the controller leader (default 250 ms).
    pub heartbeat_interval: Duration,
    /// A node not heard from for this long is fenced (default 2000 ms).
    pub session_timeout: Duration,
    /// Raft election timeout, lower bound (default 500 ms).
    pub election_timeout_min: Duration,
    /// Raft election timeout, upper bound (default 1000 ms).
    pub election_timeout_max: Duration,
    /// How often the leader moves leadership back to preferred replicas (default 3 s).
    pub preferred_leader_interval: Duration,
}

impl MetaRaftConfig {
    /// A config with the default timings.
    pub fn new(self_record: NodeRecord, voters: BTreeMap<NodeId, String>) -> MetaRaftConfig {
        MetaRaftConfig {
            node_id: self_record.id,
            voters,
            self_record,
            heartbeat_interval: Duration::from_millis(250),
            session_timeout: Duration::from_millis(2000),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
            preferred_leader_interval: Duration::from_secs(3),
        }
    }

    /// A single-node cluster: this node is the only voter.
    pub fn single_node(self_record: NodeRecord) -> MetaRaftConfig {
        let voters = BTreeMap::from([(self_record.id, self_record.cluster_addr.clone())]);
        MetaRaftConfig::new(self_record, voters)
    }

    fn is_single_node(&self) -> bool {
        self.voters.len() == 1 && self.voters.contains_key(&self.node_id)
    }

    /// openraft's heartbeat: a fifth of the minimum election timeout (100 ms by default).
    fn raft_heartbeat(&self) -> Duration {
        (self.election_timeout_min / 5).max(Duration::from_millis(10))
    }
}

/// Why [`MetaRaft::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RaftStartError {
    /// The config is inconsistent.
    #[error("invalid controller config: {0}")]
    Config(String),
    /// Opening or reading the controller's keyspaces failed.
    #[error("controller storage: {0}")]
    Storage(String),
    /// openraft refused to start.
    #[error("raft: {0}")]
    Raft(String),
}

/// Why [`MetaRaft::propose`] failed. The command may or may not have been applied when the
/// error is `Timeout` (the leader may have committed it before the reply was lost).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// No controller leader was known for the whole deadline (no quorum?).
    #[error("no controller leader within {0:?}")]
    NoLeader(Duration),
    /// Leaders were known but the write did not complete within the deadline.
    #[error("the proposal did not complete within {deadline:?}: {last_error}")]
    Timeout {
        /// The deadline.
        deadline: Duration,
        /// The last failure seen.
        last_error: String,
    },
    /// The controller was shut down.
    #[error("the controller is shut down")]
    Shutdown,
    /// openraft failed fatally on this node.
    #[error("raft failure: {0}")]
    Raft(String),
}

struct Inner {
    cfg: MetaRaftConfig,
    raft: Raft<TypeConfig>,
    transport: Arc<dyn RaftTransport>,
    image_rx: watch::Receiver<Arc<MetadataImage>>,
    leader_leases: Mutex<LeaderLeases>,
    node_lease: Mutex<NodeLease>,
    /// Whether `node_lease` is valid now; flips to false the moment the lease runs out.
    lease_tx: watch::Sender<bool>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A copy of a node's Raft figures (openraft's metrics), taken when asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftFigures {
    /// Current term.
    pub term: u64,
    /// True while this node is the Raft leader (the active controller).
    pub is_leader: bool,
    /// False on a learner (a node that joined after the seeds).
    pub is_voter: bool,
    /// Index of the last entry in this node's Raft log.
    pub last_log_index: u64,
    /// Index of the last entry applied to the metadata image here. Only committed entries
    /// are applied, so this is the commit index as this node knows it.
    pub applied_index: u64,
}

/// A node's handle on the metadata controller. Cheap to clone.
#[derive(Clone)]
pub struct MetaRaft {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MetaRaft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaRaft")
            .field("node_id", &self.inner.cfg.node_id)
            .field("leader", &self.controller_leader())
            .finish_non_exhaustive()
    }
}

impl MetaRaft {
    /// Opens the controller's state in `store`, starts the Raft node and its background tasks
    /// (bootstrap or join, self-registration, heartbeats, lease checks, preferred leaders).
    pub async fn start(
        cfg: MetaRaftConfig,
        store: &rivulet_storage::Store,
        transport: Arc<dyn RaftTransport>,
    ) -> Result<MetaRaft, RaftStartError> {
        let id = cfg.node_id;
        if cfg.self_record.id != id {
            return Err(RaftStartError::Config(format!(
                "self_record.id {} differs from node_id {id}",
                cfg.self_record.id
            )));
        }
        if cfg.voters.is_empty() {
            return Err(RaftStartError::Config("no voters (seed nodes)".into()));
        }
        let db = store.database().clone();
        let (raft_db, pristine) = tokio::task::spawn_blocking(move || {
            let raft_db = RaftDb::open(db)?;
            let pristine = raft_db.is_pristine()?;
            Ok::<_, fjall::Error>((raft_db, pristine))
        })
        .await
        .map_err(|e| RaftStartError::Storage(e.to_string()))?
        .map_err(|e| RaftStartError::Storage(e.to_string()))?;
        let log_store = LogStore::new(raft_db.clone());
        let (sm, image_rx) =
            StateMachineStore::open(raft_db).map_err(|e| RaftStartError::Storage(e.to_string()))?;

        let raft_config = openraft::Config {
            cluster_name: "rivulet-controller".into(),
            heartbeat_interval: cfg.raft_heartbeat().as_millis() as u64,
            election_timeout_min: cfg.election_timeout_min.as_millis() as u64,
            election_timeout_max: cfg.election_timeout_max.as_millis() as u64,
            install_snapshot_timeout: 2000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| RaftStartError::Config(e.to_string()))?;
        let network = Network {
            transport: transport.clone(),
            backoff: UNREACHABLE_BACKOFF,
        };
        let raft = Raft::new(id, Arc::new(raft_config), network, log_store, sm)
            .await
            .map_err(|e| RaftStartError::Raft(e.to_string()))?;

        let (shutdown_tx, _) = watch::channel(false);
        let (lease_tx, _) = watch::channel(cfg.is_single_node());
        let meta = MetaRaft {
            inner: Arc::new(Inner {
                cfg: cfg.clone(),
                raft,
                transport,
                image_rx,
                leader_leases: Mutex::new(LeaderLeases::default()),
                node_lease: Mutex::new(NodeLease::default()),
                lease_tx,
                shutdown_tx,
                tasks: Mutex::new(Vec::new()),
            }),
        };
        info!(node = id, pristine, voters = ?cfg.voters.keys().collect::<Vec<_>>(), "controller starting");

        let is_voter = cfg.voters.contains_key(&id);
        if is_voter && pristine {
            let first = cfg.voters.keys().next().copied() == Some(id);
            if first {
                meta.initialize().await;
            } else {
                let delay = cfg.election_timeout_max * 2;
                meta.spawn(move |m, mut stop| async move {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return,
                    }
                    m.initialize().await;
                });
            }
        }
        meta.spawn(|m, stop| async move { m.membership_task(stop).await });
        meta.spawn_periodic(cfg.heartbeat_interval, |m| async move {
            m.heartbeat_once().await
        });
        if !cfg.is_single_node() {
            meta.spawn_lease_expiry();
        }
        meta.spawn_periodic(
            LEASE_CHECK_INTERVAL,
            |m| async move { m.leader_duties().await },
        );
        Ok(meta)
    }

    /// The latest metadata image; updated after every applied batch of log entries.
    pub fn image(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.inner.image_rx.clone()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.cfg.node_id
    }

    /// The current controller leader, as this node knows it.
    pub fn controller_leader(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// Waits (at most `timeout`) until this node knows a controller leader; false on timeout.
    pub async fn wait_controller_leader(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.raft.metrics();
        tokio::time::timeout(timeout, rx.wait_for(|m| m.current_leader.is_some()))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Figures of this node's Raft state, for the admin endpoint's metrics.
    pub fn figures(&self) -> RaftFigures {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        RaftFigures {
            term: m.current_term,
            is_leader: m.state == ServerState::Leader,
            is_voter: !matches!(m.state, ServerState::Learner),
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
        }
    }

    fn is_leader(&self) -> bool {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.inner.cfg.node_id)
    }

    /// Whether this node holds a valid lease: a heartbeat reply from the controller leader
    /// arrived within `session_timeout` and did not say the node is fenced (on the leader:
    /// a quorum acknowledged it within `session_timeout`). Always true in single-node mode.
    pub fn lease_valid(&self) -> bool {
        if self.inner.cfg.is_single_node() {
            return true;
        }
        self.inner
            .node_lease
            .lock()
            .valid(Instant::now(), self.inner.cfg.session_timeout)
    }

    /// Watches [`MetaRaft::lease_valid`]: it turns false as soon as the lease runs out or the
    /// controller says this node is fenced, so a leader can fail its waiting `acks=all`
    /// writes at once instead of holding them until they time out.
    pub fn lease_watch(&self) -> watch::Receiver<bool> {
        self.inner.lease_tx.subscribe()
    }

    /// Publishes the lease's validity now; returns when it runs out if it is valid.
    fn publish_lease(&self) -> Option<Instant> {
        if self.inner.cfg.is_single_node() {
            return None;
        }
        let expires = self
            .inner
            .node_lease
            .lock()
            .expires_at(self.inner.cfg.session_timeout);
        let valid = expires.is_some_and(|e| Instant::now() < e);
        self.inner.lease_tx.send_if_modified(|v| {
            let changed = *v != valid;
            *v = valid;
            changed
        });
        expires.filter(|_| valid)
    }

    /// Wakes up when the lease is due to run out and publishes the lapse unless a heartbeat
    /// renewed it meanwhile (renewals publish `true` themselves). Holds only a weak reference.
    fn spawn_lease_expiry(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let mut stop = self.inner.shutdown_tx.subscribe();
        let mut lease = self.inner.lease_tx.subscribe();
        let handle = tokio::spawn(async move {
            loop {
                let expires = {
                    let Some(inner) = weak.upgrade() else { return };
                    MetaRaft { inner }.publish_lease()
                };
                match expires {
                    Some(at) => tokio::select! {
                        _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                        _ = stop.changed() => return,
                    },
                    None => {
                        // A renewal between the publish above and here has set `true`.
                        if *lease.borrow_and_update() {
                            continue;
                        }
                        tokio::select! {
                            r = lease.changed() => if r.is_err() { return },
                            _ = stop.changed() => return,
                        }
                    }
                }
            }
        });
        self.inner.tasks.lock().push(handle);
    }

    /// Applies `cmd` through Raft and returns the state machine's response: locally on the
    /// leader, forwarded to the leader otherwise. Retries through leader changes for up to
    /// [`PROPOSE_DEADLINE`]. A retried command may be applied twice if a reply was lost (the
    /// commands are designed so that is harmless or rejected, e.g. `TopicAlreadyExists`).
    pub async fn propose(&self, cmd: MetaCommand) -> Result<MetaResponse, ProposeError> {
        let start = Instant::now();
        let deadline = start + PROPOSE_DEADLINE;
        let me = self.inner.cfg.node_id;
        let mut hint: Option<NodeId> = None;
        let mut last_error: Option<String> = None;
        loop {
            if *self.inner.shutdown_tx.borrow() {
                return Err(ProposeError::Shutdown);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(match last_error {
                    Some(e) => ProposeError::Timeout {
                        deadline: PROPOSE_DEADLINE,
                        last_error: e,
                    },
                    None => ProposeError::NoLeader(PROPOSE_DEADLINE),
                });
            }
            let remaining = deadline - now;
            let Some(leader) = hint.take().or_else(|| self.controller_leader()) else {
                self.wait_metrics_change(remaining.min(Duration::from_millis(100)))
                    .await;
                continue;
            };
            if leader == me {
                match tokio::time::timeout(remaining, self.inner.raft.client_write(cmd.clone()))
                    .await
                {
                    Ok(Ok(resp)) => return Ok(resp.data),
                    Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                        last_error = Some(format!("node {me} lost the leadership"));
                        hint = f.leader_id.filter(|&l| l != me);
                        match hint {
                            Some(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                            None => self.wait_metrics_change(Duration::from_millis(100)).await,
                        }
                    }
                    Ok(Err(RaftError::APIError(e))) => {
                        return Err(ProposeError::Raft(e.to_string()))
                    }
                    Ok(Err(RaftError::Fatal(e))) => {
                        return Err(if *self.inner.shutdown_tx.borrow() {
                            ProposeError::Shutdown
                        } else {
                            ProposeError::Raft(e.to_string())
                        })
                    }
                    Err(_) => last_error = Some("local write timed out".into()),
                }
                continue;
            }
            let timeout = remaining.min(Duration::from_secs(5));
            let rpc = ControllerRpc::ClientWrite(cmd.clone());
            match call(&*self.inner.transport, leader, &rpc, timeout).await {
                Ok(ControllerReply::Written(resp)) => return Ok(resp),
                Ok(ControllerReply::NotLeader { leader: l }) => {
                    last_error = Some(format!("node {leader} is not the leader"));
                    hint = l.filter(|&l| l != leader);
                    match hint {
                        // Follow the hint, but never spin if two nodes point at each other.
                        Some(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        None => self.wait_metrics_change(Duration::from_millis(100)).await,
                    }
                }
                Ok(ControllerReply::Error(e)) => {
                    last_error = Some(format!("node {leader}: {e}"));
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Ok(other) => {
                    last_error = Some(format!("unexpected reply from node {leader}: {other:?}"));
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => {
                    debug!(node = me, leader, error = %e, "forwarding a proposal failed");
                    last_error = Some(e.to_string());
                    self.wait_metrics_change(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Serves one RPC from another node (the transport delivers requests here) and returns the
    /// encoded reply.
    pub async fn handle_rpc(&self, request: Vec<u8>) -> Vec<u8> {
        let reply = match serde_json::from_slice::<ControllerRpc>(&request) {
            Ok(rpc) => self.serve(rpc).await,
            Err(e) => ControllerReply::Error(format!("undecodable controller request: {e}")),
        };
        serde_json::to_vec(&reply).unwrap_or_else(|e| {
            serde_json::to_vec(&ControllerReply::Error(format!("unencodable reply: {e}")))
                .unwrap_or_default()
        })
    }

    async fn serve(&self, rpc: ControllerRpc) -> ControllerReply {
        let raft = &self.inner.raft;
        match rpc {
            ControllerRpc::Vote(r) => ControllerReply::Vote(raft.vote(r).await),
            ControllerRpc::AppendEntries(r) => {
                ControllerReply::AppendEntries(raft.append_entries(r).await)
            }
            ControllerRpc::InstallSnapshot(r) => {
                ControllerReply::InstallSnapshot(raft.install_snapshot(r).await)
            }
            ControllerRpc::ClientWrite(cmd) => match raft.client_write(cmd).await {
                Ok(resp) => ControllerReply::Written(resp.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    ControllerReply::NotLeader {
                        leader: f.leader_id,
                    }
                }
                Err(e) => ControllerReply::Error(e.to_string()),
            },
            ControllerRpc::Heartbeat { node } => {
                if !self.is_leader() {
                    return ControllerReply::NotLeader {
                        leader: self.controller_leader(),
                    };
                }
                self.inner.leader_leases.lock().heard(node, Instant::now());
                let fenced = self
                    .inner
                    .image_rx
                    .borrow()
                    .nodes
                    .get(&node)
                    .is_some_and(|n| n.fenced);
                ControllerReply::HeartbeatAck { fenced }
            }
            ControllerRpc::Join(record) => {
                if !self.is_leader() {
                    return ControllerReply::NotLeader {
                        leader: self.controller_leader(),
                    };
                }
                match self.admit(record).await {
                    Ok(()) => ControllerReply::Joined,
                    Err(e) => ControllerReply::Error(e),
                }
            }
        }
    }

    /// Leader side of a join: add the node as a learner (unless it is a member already) and
    /// register it.
    async fn admit(&self, record: NodeRecord) -> Result<(), String> {
        let known = self
            .inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .any(|(id, _)| *id == record.id);
        if !known {
            info!(node = record.id, addr = %record.cluster_addr, "adding a learner");
            self.inner
                .raft
                .add_learner(record.id, BasicNode::new(&record.cluster_addr), false)
                .await
                .map_err(|e| e.to_string())?;
        }
        let want = NodeRecord {
            fenced: false,
            ..record.clone()
        };
        let registered = self.inner.image_rx.borrow().nodes.get(&record.id) == Some(&want);
        if !registered {
            match self
                .inner
                .raft
                .client_write(MetaCommand::RegisterNode(record))
                .await
            {
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }

    /// Stops the background tasks and the Raft node. Idempotent.
    pub async fn shutdown(&self) {
        if self.inner.shutdown_tx.send_replace(true) {
            return;
        }
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.inner.tasks.lock());
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        if let Err(e) = self.inner.raft.shutdown().await {
            warn!(node = self.inner.cfg.node_id, error = %e, "raft shutdown");
        }
        info!(node = self.inner.cfg.node_id, "controller stopped");
    }

    async fn initialize(&self) {
        let members: BTreeMap<NodeId, BasicNode> = self
            .inner
            .cfg
            .voters
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect();
        match self.inner.raft.initialize(members).await {
            Ok(()) => info!(
                node = self.inner.cfg.node_id,
                "controller group initialized"
            ),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                debug!(node = self.inner.cfg.node_id, "already initialized")
            }
            Err(e) => warn!(node = self.inner.cfg.node_id, error = %e, "initialize failed"),
        }
    }

    async fn wait_metrics_change(&self, max: Duration) {
        let mut rx = self.inner.raft.metrics();
        let _ = tokio::time::timeout(max, rx.changed()).await;
    }

    /// Spawns a one-off background task `f(handle, shutdown receiver)`; it is aborted by
    /// [`MetaRaft::shutdown`]. (It holds a strong handle until it finishes.)
    fn spawn<F, Fut>(&self, f: F)
    where
        F: FnOnce(MetaRaft, watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let stop = self.inner.shutdown_tx.subscribe();
        let handle = tokio::spawn(f(self.clone(), stop));
        self.inner.tasks.lock().push(handle);
    }

    /// Runs `f` every `period` until shutdown. The task holds only a weak reference between
    /// runs, so dropping every handle without `shutdown` ends it too.
    fn spawn_periodic<F, Fut>(&self, period: Duration, f: F)
    where
        F: Fn(MetaRaft) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let mut stop = self.inner.shutdown_tx.subscribe();
        let handle = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let Some(inner) = weak.upgrade() else { return };
                f(MetaRaft { inner }).await;
            }
        });
        self.inner.tasks.lock().push(handle);
    }

    /// Joins (if not a seed) and registers this node, retrying until done or shut down.
    async fn membership_task(self, mut stop: watch::Receiver<bool>) {
        let me = self.inner.cfg.node_id;
        let record = NodeRecord {
            fenced: false,
            ..self.inner.cfg.self_record.clone()
        };
        if !self.inner.cfg.voters.contains_key(&me) {
            let seeds: Vec<NodeId> = self.inner.cfg.voters.keys().copied().collect();
            let mut i = 0usize;
            let mut target = seeds[0];
            loop {
                let rpc = ControllerRpc::Join(record.clone());
                match call(&*self.inner.transport, target, &rpc, Duration::from_secs(5)).await {
                    Ok(ControllerReply::Joined) => {
                        info!(
                            node = me,
                            via = target,
                            "joined the controller group as a learner"
                        );
                        break;
                    }
                    Ok(ControllerReply::NotLeader { leader: Some(l) }) if l != target => {
                        target = l;
                        tokio::select! {
                            _ = tokio::time::sleep(RETRY_PAUSE) => {}
                            _ = stop.changed() => return,
                        }
                        continue;
                    }
                    Ok(other) => debug!(node = me, target, reply = ?other, "join not accepted yet"),
                    Err(e) => debug!(node = me, target, error = %e, "join failed"),
                }
                i += 1;
                target = seeds[i % seeds.len()];
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_PAUSE * 4) => {}
                    _ = stop.changed() => return,
                }
            }
        }
        loop {
            let registered = self
                .inner
                .image_rx
                .borrow()
                .nodes
                .get(&me)
                .is_some_and(|n| *n == record);
            if registered {
                return;
            }
            let proposal = self.propose(MetaCommand::RegisterNode(record.clone()));
            tokio::select! {
                r = proposal => match r {
                    Ok(_) => return,
                    Err(ProposeError::Shutdown) => return,
                    Err(e) => warn!(node = me, error = %e, "registering this node failed; retrying"),
                },
                _ = stop.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY_PAUSE) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Renews this node's lease with the controller leader.
    async fn heartbeat_once(&self) {
        let me = self.inner.cfg.node_id;
        let Some(leader) = self.controller_leader() else {
            return;
        };
        let now = Instant::now();
        if leader == me {
            // The lease runs from when a quorum last acknowledged this leader, not from now:
            // otherwise an isolated controller leader would stretch its lease by up to a
            // whole session timeout past the moment it lost its quorum.
            let quorum_acked_at = {
                let m = self.inner.raft.metrics();
                let m = m.borrow();
                if m.state == ServerState::Leader {
                    m.millis_since_quorum_ack
                        .and_then(|ms| now.checked_sub(Duration::from_millis(ms)))
                } else {
                    None
                }
            };
            if let Some(acked_at) = quorum_acked_at {
                let fenced = self
                    .inner
                    .image_rx
                    .borrow()
                    .nodes
                    .get(&me)
                    .is_some_and(|n| n.fenced);
                self.inner.node_lease.lock().ack(acked_at, fenced);
                self.publish_lease();
            }
            return;
        }
        let timeout = self.inner.cfg.session_timeout / 2;
        match call(
            &*self.inner.transport,
            leader,
            &ControllerRpc::Heartbeat { node: me },
            timeout,
        )
        .await
        {
            Ok(ControllerReply::HeartbeatAck { fenced }) => {
                self.inner.node_lease.lock().ack(now, fenced);
                self.publish_lease();
                self.inner.leader_leases.lock().observe_leader(leader);
            }
            Ok(other) => debug!(node = me, leader, reply = ?other, "heartbeat not accepted"),
            Err(e) => debug!(node = me, leader, error = %e, "heartbeat failed"),
        }
    }

    /// On the leader: fence expired nodes, unfence returning ones, elect preferred leaders.
    async fn leader_duties(&self) {
        let me = self.inner.cfg.node_id;
        let (leading, term) = {
            let m = self.inner.raft.metrics();
            let m = m.borrow();
            (
                m.state == ServerState::Leader && m.current_leader == Some(me),
                m.current_term,
            )
        };
        let now = Instant::now();
        if !leading {
            self.inner.leader_leases.lock().not_leading();
            return;
        }
        let image = self.inner.image_rx.borrow().clone();
        let mut commands = Vec::new();
        {
            let mut leases = self.inner.leader_leases.lock();
            leases.leading(term, now);
            leases.heard(me, now);
            for node in image.nodes.values() {
                let alive = leases.alive(node.id, node.fenced, now, self.inner.cfg.session_timeout);
                if !node.fenced && !alive {
                    info!(node = node.id, "lease expired: fencing");
                    commands.push(MetaCommand::FenceNode { node: node.id });
                } else if node.fenced && alive {
                    info!(node = node.id, "node is back: unfencing");
                    commands.push(MetaCommand::UnfenceNode { node: node.id });
                }
            }
        }
        if self.preferred_leader_due(now) {
            for topic in image.topics.values() {
                for (i, p) in topic.partitions.iter().enumerate() {
                    let Some(&preferred) = p.replicas.first() else {
                        continue;
                    };
                    if p.leader != Some(preferred)
                        && p.isr.contains(&preferred)
                        && image.is_live(preferred)
                    {
                        commands.push(MetaCommand::ElectPreferredLeader {
                            topic: topic.name.clone(),
                            partition: i as i32,
                        });
                    }
                }
            }
        }
        for cmd in commands {
            // Only ever written locally: a decision taken on this leader's leases must not be
            // forwarded to a successor that has its own view.
            match tokio::time::timeout(Duration::from_secs(2), self.inner.raft.client_write(cmd))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    debug!(node = me, error = %e, "leader duty write failed");
                    return;
                }
                Err(_) => {
                    debug!(node = me, "leader duty write timed out");
                    return;
                }
            }
        }
    }

    fn preferred_leader_due(&self, now: Instant) -> bool {
        let mut leases = self.inner.leader_leases.lock();
        leases.preferred_due(now, self.inner.cfg.preferred_leader_interval)
    }
}
