//! `ReplicaManager`: opens partition logs, spawns one [`PartitionReplica`] per local replica,
//! restarts crashed replicas from disk, and keeps the [`ReplicaRegistry`] current.
//!
//! ```text
//!  Ensure(spec) ─▶ open log (blocking pool) ─▶ spawn_linked(PartitionReplica) ─▶ registry.insert
//!  EnsureMany(specs) ─▶ open up to `open_concurrency()` logs at once ─▶ spawn each as it opens
//!  child failed ─▶ registry.remove ─▶ wait backoff ─▶ Restart ─▶ reopen log from disk ─▶ spawn
//!                  (more than `restarts_max` inside `restart_window`: an error is logged
//!                   and restarts slow down to one per `restart_backoff_max`, forever: the
//!                   cause, e.g. a full disk, may go away, and then the partition comes back)
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use rivulet_storage::{LogConfig, PartitionId, PartitionLog, Store};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::registry::{ReplicaHandle, ReplicaRegistry, TopicPartition};
use crate::replica::{
    PartitionReplica, PartitionReplicaArgs, PartitionReplicaMsg, ReplicaRole, ReplicaStatus,
};
use crate::replication::{NodeId, ReplicaNetwork};

/// What the controller wants a local replica to look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSpec {
    /// Which partition.
    pub tp: TopicPartition,
    /// Storage identity.
    pub id: PartitionId,
    /// Log configuration derived from the topic's configs.
    pub config: LogConfig,
    /// Leadership facts from the controller.
    pub role: ReplicaRole,
}

/// Restart policy and timers.
#[derive(Debug, Clone)]
pub struct ReplicaSettings {
    /// How often each replica checks retention.
    pub retention_check_interval: Duration,
    /// Wait before restarting a crashed replica.
    pub restart_backoff: Duration,
    /// Most restarts allowed inside `restart_window` before giving up on a replica.
    pub restarts_max: usize,
    /// The window for `restarts_max`.
    pub restart_window: Duration,
    /// Wait between restarts once `restarts_max` is used up.
    pub restart_backoff_max: Duration,
    /// A follower not caught up for this long leaves the ISR.
    pub replica_lag_max: Duration,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        Self {
            retention_check_interval: Duration::from_secs(30),
            restart_backoff: Duration::from_millis(100),
            restarts_max: 5,
            restart_window: Duration::from_secs(60),
            restart_backoff_max: Duration::from_secs(30),
            replica_lag_max: Duration::from_secs(5),
        }
    }
}

/// Messages of [`ReplicaManager`].
#[derive(Debug)]
pub enum ReplicaManagerMsg {
    /// Start the replica if it is not running; apply the config if it is.
    Ensure(ReplicaSpec, RpcReplyPort<Result<ReplicaHandle, String>>),
    /// [`ReplicaManagerMsg::Ensure`] for many replicas (a node starting with thousands of
    /// partitions): their logs are opened concurrently. Answers one result per spec (in
    /// completion order). Callers keep batches small (a few hundred) so the mailbox is not
    /// held for long.
    EnsureMany(
        Vec<ReplicaSpec>,
        RpcReplyPort<Vec<(TopicPartition, Result<(), String>)>>,
    ),
    /// Stop the replica, and delete its data when `delete_data`.
    Remove {
        /// Which partition.
        tp: TopicPartition,
        /// Also delete the log from disk.
        delete_data: bool,
        /// Done.
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// Internal: restart a crashed replica after its backoff.
    Restart(TopicPartition),
}

impl ractor::Message for ReplicaManagerMsg {}

/// Arguments of [`ReplicaManager`].
#[derive(Debug, Clone)]
pub struct ReplicaManagerArgs {
    /// The node's store.
    pub store: Store,
    /// Registry to publish replicas in.
    pub registry: ReplicaRegistry,
    /// Timers and restart policy.
    pub settings: ReplicaSettings,
    /// This node's id.
    pub node_id: NodeId,
    /// The cluster links (`None` on a single node).
    pub network: Option<Arc<dyn ReplicaNetwork>>,
}

#[derive(Debug)]
struct Entry {
    spec: ReplicaSpec,
    actor: Option<ActorRef<PartitionReplicaMsg>>,
    restarts: VecDeque<Instant>,
}

/// State of [`ReplicaManager`].
#[derive(Debug)]
pub struct ReplicaManagerState {
    args: ReplicaManagerArgs,
    replicas: HashMap<TopicPartition, Entry>,
    by_actor: HashMap<ActorId, TopicPartition>,
    stopping: HashSet<ActorId>,
}

/// The replica manager actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicaManager;

/// How many logs [`ReplicaManagerMsg::EnsureMany`] opens at once: recovery is mostly reading
/// index entries (CPU and page cache), so twice the cores keeps them busy without flooding
/// the blocking pool.
fn open_concurrency() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get() * 2)
}

/// Opens (recovers) a replica's log on the blocking pool.
async fn open_log(store: Store, spec: &ReplicaSpec) -> Result<PartitionLog, String> {
    let (id, cfg) = (spec.id, spec.config.clone());
    tokio::task::spawn_blocking(move || store.open_log(id, cfg))
        .await
        .map_err(|e| format!("opening the log of {} panicked: {e}", spec.tp))?
        .map_err(|e| format!("opening the log of {} failed: {e}", spec.tp))
}

async fn start_replica(
    myself: &ActorRef<ReplicaManagerMsg>,
    state: &mut ReplicaManagerState,
    spec: &ReplicaSpec,
) -> Result<ReplicaHandle, String> {
    let log = open_log(state.args.store.clone(), spec).await?;
    spawn_replica(myself, state, spec, log).await
}

/// Spawns the replica actor of `spec` on an opened log and registers it.
async fn spawn_replica(
    myself: &ActorRef<ReplicaManagerMsg>,
    state: &mut ReplicaManagerState,
    spec: &ReplicaSpec,
    log: PartitionLog,
) -> Result<ReplicaHandle, String> {
    // A leader's high watermark starts at zero after a restart and catches up as soon as
    // the in-sync followers answer (a sole replica's is its log end at once).
    let (hw_tx, hw_rx) = watch::channel(0);
    let (status_tx, status_rx) = watch::channel(ReplicaStatus {
        is_leader: false,
        leader: spec.role.leader,
        leader_epoch: spec.role.leader_epoch,
        isr: spec.role.isr.clone(),
        replicas: spec.role.replicas.clone(),
    });
    let args = PartitionReplicaArgs {
        tp: spec.tp.clone(),
        log: log.clone(),
        high_watermark: hw_tx,
        status: status_tx,
        role: spec.role.clone(),
        node_id: state.args.node_id,
        network: state.args.network.clone(),
        retention_check_interval: state.args.settings.retention_check_interval,
        replica_lag_max: state.args.settings.replica_lag_max,
    };
    let (actor, _) = Actor::spawn_linked(None, PartitionReplica, args, myself.get_cell())
        .await
        .map_err(|e| format!("spawning the replica of {} failed: {e}", spec.tp))?;
    let handle = ReplicaHandle {
        tp: spec.tp.clone(),
        id: spec.id,
        actor: actor.clone(),
        log,
        high_watermark: hw_rx,
        status: status_rx,
    };
    state.by_actor.insert(actor.get_id(), spec.tp.clone());
    state.args.registry.insert(handle.clone());
    let entry = state
        .replicas
        .entry(spec.tp.clone())
        .or_insert_with(|| Entry {
            spec: spec.clone(),
            actor: None,
            restarts: VecDeque::new(),
        });
    entry.spec = spec.clone();
    entry.actor = Some(actor);
    Ok(handle)
}

impl ReplicaManager {
    /// Applies `spec` to its running replica; `None` if it is not running (start it).
    fn update_running(
        state: &mut ReplicaManagerState,
        spec: &ReplicaSpec,
    ) -> Option<ReplicaHandle> {
        let entry = state.replicas.get_mut(&spec.tp)?;
        let actor = entry.actor.clone()?;
        if entry.spec.config != spec.config {
            let _ = actor.cast(PartitionReplicaMsg::UpdateConfig(spec.config.clone()));
            entry.spec.config = spec.config.clone();
        }
        if entry.spec.role != spec.role {
            let _ = actor.cast(PartitionReplicaMsg::UpdateRole(spec.role.clone()));
            entry.spec.role = spec.role.clone();
        }
        state.args.registry.get(&spec.tp)
    }

    /// Starts the replicas of `specs` that are not running, opening their logs concurrently
    /// (bounded) and spawning each replica as soon as its log is open.
    async fn ensure_many(
        myself: &ActorRef<ReplicaManagerMsg>,
        state: &mut ReplicaManagerState,
        specs: Vec<ReplicaSpec>,
    ) -> Vec<(TopicPartition, Result<(), String>)> {
        let mut results = Vec::with_capacity(specs.len());
        let permits = Arc::new(Semaphore::new(open_concurrency()));
        let mut opening = JoinSet::new();
        for spec in specs {
            if Self::update_running(state, &spec).is_some() {
                results.push((spec.tp, Ok(())));
                continue;
            }
            let (store, permits) = (state.args.store.clone(), permits.clone());
            opening.spawn(async move {
                // The semaphore is never closed, so this only waits.
                let _permit = permits.acquire_owned().await;
                let log = open_log(store, &spec).await;
                (spec, log)
            });
        }
        while let Some(joined) = opening.join_next().await {
            // A task only fails by panicking outside `open_log` (which maps its own panics):
            // its partition gets no result and the caller retries it.
            let Ok((spec, log)) = joined else { continue };
            let result = match log {
                Ok(log) => spawn_replica(myself, state, &spec, log).await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = &result {
                error!(tp = %spec.tp, error = %e, "could not start replica");
            }
            results.push((spec.tp, result));
        }
        results
    }

    fn on_child_exit(
        myself: &ActorRef<ReplicaManagerMsg>,
        state: &mut ReplicaManagerState,
        id: ActorId,
        why: String,
    ) {
        if state.stopping.remove(&id) {
            state.by_actor.remove(&id);
            return;
        }
        let Some(tp) = state.by_actor.remove(&id) else {
            return;
        };
        let Some(entry) = state.replicas.get_mut(&tp) else {
            return;
        };
        if entry.actor.as_ref().map(|a| a.get_id()) != Some(id) {
            return;
        }
        entry.actor = None;
        state.args.registry.remove(&tp);
        let now = Instant::now();
        let window = state.args.settings.restart_window;
        while entry
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            entry.restarts.pop_front();
        }
        let backoff = if entry.restarts.len() >= state.args.settings.restarts_max {
            // Never give up for good (the disk may be freed), but stay bounded in rate.
            let backoff = state.args.settings.restart_backoff_max;
            error!(
                %tp, reason = %why, restarts = entry.restarts.len(), retry_in_ms = backoff.as_millis() as u64,
                "replica keeps failing; it is offline until a restart succeeds. Check the disk and the logs"
            );
            backoff
        } else {
            entry.restarts.push_back(now);
            warn!(%tp, reason = %why, "replica failed; restarting it from disk");
            state.args.settings.restart_backoff
        };
        let tp2 = tp.clone();
        myself.send_after(backoff, move || ReplicaManagerMsg::Restart(tp2));
    }
}

impl Actor for ReplicaManager {
    type Msg = ReplicaManagerMsg;
    type State = ReplicaManagerState;
    type Arguments = ReplicaManagerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(ReplicaManagerState {
            args,
            replicas: HashMap::new(),
            by_actor: HashMap::new(),
            stopping: HashSet::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ReplicaManagerMsg::Ensure(spec, reply) => {
                let result = match Self::update_running(state, &spec) {
                    Some(handle) => Ok(handle),
                    None => start_replica(&myself, state, &spec).await,
                };
                if let Err(e) = &result {
                    error!(tp = %spec.tp, error = %e, "could not start replica");
                }
                let _ = reply.send(result);
            }
            ReplicaManagerMsg::EnsureMany(specs, reply) => {
                let results = Self::ensure_many(&myself, state, specs).await;
                let _ = reply.send(results);
            }
            ReplicaManagerMsg::Remove {
                tp,
                delete_data,
                reply,
            } => {
                state.args.registry.remove(&tp);
                let entry = state.replicas.remove(&tp);
                if let Some(actor) = entry.as_ref().and_then(|e| e.actor.clone()) {
                    state.stopping.insert(actor.get_id());
                    if let Err(e) = actor
                        .stop_and_wait(Some("removed".into()), Some(Duration::from_secs(30)))
                        .await
                    {
                        warn!(%tp, error = %e, "replica did not stop cleanly");
                    }
                }
                let mut result = Ok(());
                if let (true, Some(entry)) = (delete_data, entry) {
                    let store = state.args.store.clone();
                    let id = entry.spec.id;
                    result = tokio::task::spawn_blocking(move || store.delete_log(id))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()));
                }
                info!(%tp, delete_data, "replica removed");
                let _ = reply.send(result);
            }
            ReplicaManagerMsg::Restart(tp) => {
                let spec = match state.replicas.get(&tp) {
                    Some(e) if e.actor.is_none() => e.spec.clone(),
                    _ => return Ok(()),
                };
                match start_replica(&myself, state, &spec).await {
                    Ok(h) => {
                        info!(%tp, log_end_offset = h.log.log_end_offset(), "replica restarted")
                    }
                    Err(e) => {
                        error!(%tp, error = %e, "replica restart failed; retrying");
                        myself.send_after(state.args.settings.restart_backoff * 10, move || {
                            ReplicaManagerMsg::Restart(tp)
                        });
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                Self::on_child_exit(&myself, state, cell.get_id(), err.to_string());
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let why = reason.unwrap_or_else(|| "stopped".into());
                Self::on_child_exit(&myself, state, cell.get_id(), why);
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        for (tp, entry) in state.replicas.drain() {
            state.args.registry.remove(&tp);
            if let Some(actor) = entry.actor {
                state.stopping.insert(actor.get_id());
                let _ = actor
                    .stop_and_wait(
                        Some("node shutting down".into()),
                        Some(Duration::from_secs(30)),
                    )
                    .await;
            }
        }
        Ok(())
    }
}
