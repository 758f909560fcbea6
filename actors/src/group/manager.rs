//! `GroupManager`: loads and unloads the `__consumer_offsets` partitions this node leads and
//! supervises one [`GroupCoordinator`] per group in them.
//!
//! ```text
//!  Leadership (told by crate::hosting, no polling)
//!     led (new, new epoch or new replica) ─▶ stop the old epoch's coordinators ─▶ route
//!                  "loading" ─▶ read the log (blocking pool) ─▶ wait for the high watermark
//!                  to cover it ─▶ Loaded ─▶ spawn_linked a coordinator per group ─▶ route
//!                  "ready"            (a failed load is retried after LOAD_RETRY)
//!     not led ─▶ stop its coordinators ─▶ route removed (NOT_COORDINATOR)
//!  coordinator failed ─▶ its in-memory state is gone: the partition is reloaded from the log
//!  CompactCheck (every COMPACT_CHECK) ─▶ compact partitions grown by offsets_compact_records
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::{error, info, warn};

use super::consumer::TopicCatalog;
use super::coordinator::{CoordinatorArgs, GroupCoordinator, GroupMsg};
use super::records::{end_transaction, load, LoadedGroup, LoadedPartition};
use super::types::GroupError;
use super::{partition_for, GroupConfig, OFFSETS_TOPIC};
use crate::hosting::{
    read_committed, unload_reason, watch_leadership, Leadership, LeadershipWatch, Led,
    LedPartitions, LOAD_RETRY,
};
use crate::registry::{ReplicaHandle, ReplicaRegistry};

/// How often the sizes of the loaded partitions are checked for compaction (a comparison
/// of two offsets per partition: the log's growth has no event of its own).
const COMPACT_CHECK: Duration = Duration::from_millis(100);

/// How requests find a group's coordinator: per offsets partition, whether it is loaded and
/// the coordinators of its groups. Written by the manager, read by [`super::Groups`].
#[derive(Debug, Clone, Default)]
pub struct Router {
    inner: Arc<RwLock<HashMap<i32, Route>>>,
}

#[derive(Debug, Clone, Default)]
struct Route {
    ready: bool,
    groups: HashMap<String, ActorRef<GroupMsg>>,
}

/// Where a request for a group goes.
#[derive(Debug)]
pub enum Lookup {
    /// The group's running coordinator.
    Running(ActorRef<GroupMsg>),
    /// This node coordinates the group's partition, but the group has no coordinator (it does
    /// not exist yet).
    Absent,
}

impl Router {
    /// Finds the coordinator of `group` in `partition`.
    pub fn lookup(&self, partition: i32, group: &str) -> Result<Lookup, GroupError> {
        let routes = self.inner.read();
        let Some(route) = routes.get(&partition) else {
            return Err(GroupError::NotCoordinator);
        };
        if !route.ready {
            return Err(GroupError::CoordinatorLoadInProgress);
        }
        Ok(match route.groups.get(group) {
            Some(a) => Lookup::Running(a.clone()),
            None => Lookup::Absent,
        })
    }

    /// Every running coordinator.
    pub fn all(&self) -> Vec<ActorRef<GroupMsg>> {
        self.inner
            .read()
            .values()
            .flat_map(|r| r.groups.values().cloned())
            .collect()
    }

    /// True while `partition` is being loaded here.
    pub fn is_loading(&self, partition: i32) -> bool {
        self.inner.read().get(&partition).is_some_and(|r| !r.ready)
    }

    /// True once this node has taken `partition` on (loading or loaded); until then its group
    /// requests are answered NOT_COORDINATOR.
    pub fn is_routed(&self, partition: i32) -> bool {
        self.inner.read().contains_key(&partition)
    }
}

/// Messages of [`GroupManager`].
#[derive(Debug)]
pub enum GroupManagerMsg {
    /// A change of leadership of an offsets partition.
    Leadership(Leadership),
    /// Load `partition` again if it is still led in `epoch` and not loaded (after a failed
    /// load).
    Retry {
        /// Partition.
        partition: i32,
        /// Epoch the failed load was for.
        epoch: i32,
    },
    /// Compact the loaded partitions that grew enough.
    CompactCheck,
    /// A partition finished loading.
    Loaded {
        /// Partition.
        partition: i32,
        /// Epoch it was loaded under.
        epoch: i32,
        /// What was read.
        result: Result<LoadedPartition, String>,
    },
    /// A transaction marker was written to `partition` on this node: the coordinators of its
    /// groups end the transaction's pending offsets.
    TxnEnded {
        /// Partition of `__consumer_offsets`.
        partition: i32,
        /// The transaction's producer id.
        producer_id: i64,
        /// Commit or abort.
        commit: bool,
    },
    /// The coordinator of a group, started if the group has none.
    GetOrCreate(String, RpcReplyPort<Result<ActorRef<GroupMsg>, GroupError>>),
}

impl ractor::Message for GroupManagerMsg {}

/// Arguments of [`GroupManager`].
#[derive(Debug, Clone)]
pub struct GroupManagerArgs {
    /// Settings.
    pub config: Arc<GroupConfig>,
    /// Local replicas.
    pub registry: ReplicaRegistry,
    /// Topics.
    pub catalog: Arc<dyn TopicCatalog>,
    /// The routing table this manager keeps current.
    pub router: Router,
}

#[derive(Debug)]
struct Shard {
    epoch: i32,
    ready: bool,
    replica: ReplicaHandle,
    groups: HashMap<String, ActorRef<GroupMsg>>,
    /// Log end offset after the last compaction (or the load).
    compacted_at: i64,
    /// Markers told while the partition loads (the read may have missed them): applied to
    /// what was loaded. Bounded by [`ENDED_WHILE_LOADING_MAX`].
    ended_while_loading: Vec<(i64, bool)>,
}

/// Most markers remembered while a partition loads; past it the load is started again (it
/// then reads them from the log).
const ENDED_WHILE_LOADING_MAX: usize = 10_000;

/// State of [`GroupManager`].
#[derive(Debug)]
pub struct GroupManagerState {
    args: GroupManagerArgs,
    shards: HashMap<i32, Shard>,
    by_actor: HashMap<ActorId, (i32, String)>,
    /// The offsets partitions led here, as last told.
    led: LedPartitions,
    /// Tells this manager about leadership changes; stops with it.
    _leadership: LeadershipWatch,
}

/// The per-node supervisor of group coordinators.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupManager;

impl GroupManagerState {
    fn publish(&self, partition: i32) {
        let mut routes = self.args.router.inner.write();
        match self.shards.get(&partition) {
            Some(s) => {
                routes.insert(
                    partition,
                    Route {
                        ready: s.ready,
                        groups: s.groups.clone(),
                    },
                );
            }
            None => {
                routes.remove(&partition);
            }
        }
    }

    fn unload(&mut self, partition: i32, why: &str) {
        if let Some(shard) = self.shards.remove(&partition) {
            info!(
                partition,
                epoch = shard.epoch,
                groups = shard.groups.len(),
                reason = why,
                "unloading group coordinators"
            );
            for (_, a) in shard.groups {
                self.by_actor.remove(&a.get_id());
                a.stop(Some(format!("offsets partition {partition}: {why}")));
            }
        }
        self.publish(partition);
    }

    fn start_load(&mut self, myself: &ActorRef<GroupManagerMsg>, led: Led) {
        let replica = led.replica.clone();
        let partition = replica.tp.partition;
        let epoch = led.epoch;
        info!(
            partition,
            epoch, "this node leads an offsets partition; loading its groups"
        );
        self.shards.insert(
            partition,
            Shard {
                epoch,
                ready: false,
                replica: replica.clone(),
                groups: HashMap::new(),
                // A partition loaded with a long history is compacted soon after.
                compacted_at: replica.log.log_start_offset(),
                ended_while_loading: Vec::new(),
            },
        );
        self.publish(partition);
        let myself = myself.clone();
        tokio::spawn(async move {
            let result = load_partition(led).await;
            let _ = myself.cast(GroupManagerMsg::Loaded {
                partition,
                epoch,
                result,
            });
        });
    }

    async fn spawn_group(
        &mut self,
        myself: &ActorRef<GroupManagerMsg>,
        partition: i32,
        group: String,
        loaded: LoadedGroup,
    ) -> Result<ActorRef<GroupMsg>, GroupError> {
        let Some(shard) = self.shards.get(&partition) else {
            return Err(GroupError::NotCoordinator);
        };
        let args = CoordinatorArgs {
            group_id: group.clone(),
            partition,
            epoch: shard.epoch,
            replica: shard.replica.clone(),
            config: self.args.config.clone(),
            catalog: self.args.catalog.clone(),
            loaded,
        };
        let (actor, _) = Actor::spawn_linked(None, GroupCoordinator, args, myself.get_cell())
            .await
            .map_err(|e| {
                GroupError::CoordinatorNotAvailable(format!("could not start coordinator: {e}"))
            })?;
        self.by_actor
            .insert(actor.get_id(), (partition, group.clone()));
        if let Some(shard) = self.shards.get_mut(&partition) {
            shard.groups.insert(group, actor.clone());
        }
        Ok(actor)
    }

    /// Compacts a partition: every coordinator rewrites its live state, so every record below
    /// the smallest offset they wrote at is superseded, and the whole segments below it are
    /// dropped (followers follow the leader's log start). Runs inside the manager's handler,
    /// so no coordinator is created meanwhile (a new group's first record could otherwise land
    /// below that offset).
    async fn compact(&mut self, partition: i32) {
        let Some(shard) = self.shards.get_mut(&partition) else {
            return;
        };
        let started = std::time::Instant::now();
        let end_before = shard.replica.log.log_end_offset();
        shard.compacted_at = end_before;
        let groups: Vec<(String, ActorRef<GroupMsg>)> = shard
            .groups
            .iter()
            .map(|(g, a)| (g.clone(), a.clone()))
            .collect();
        let replica = shard.replica.clone();
        let timeout = self.args.config.write_timeout + Duration::from_secs(5);
        let mut keep_from = end_before;
        for (group, actor) in &groups {
            match actor.call(GroupMsg::Rewrite, Some(timeout)).await {
                Ok(ractor::rpc::CallResult::Success(Ok(Some(at)))) => {
                    keep_from = keep_from.min(at);
                }
                Ok(ractor::rpc::CallResult::Success(Ok(None))) => {}
                other => {
                    warn!(partition, %group, answer = ?other.map(|r| format!("{r:?}")),
                        "a coordinator could not rewrite its state; compaction skipped");
                    return;
                }
            }
        }
        let answer = replica
            .actor
            .call(
                |reply| crate::replica::PartitionReplicaMsg::DeleteSegmentsBefore {
                    offset: keep_from,
                    reply,
                },
                Some(timeout),
            )
            .await;
        match answer {
            Ok(ractor::rpc::CallResult::Success(Ok(start))) => {
                let end = replica.log.log_end_offset();
                if let Some(s) = self.shards.get_mut(&partition) {
                    s.compacted_at = end;
                }
                info!(partition, groups = groups.len(), log_start_offset = start,
                    log_end_offset = end, took = ?started.elapsed(), "offsets partition compacted");
            }
            other => warn!(partition, answer = ?other.map(|r| format!("{r:?}")),
                "dropping superseded segments failed"),
        }
    }

    fn forget(&mut self, id: &ActorId) -> Option<i32> {
        let (partition, group) = self.by_actor.remove(id)?;
        if let Some(shard) = self.shards.get_mut(&partition) {
            if shard.groups.get(&group).is_some_and(|a| a.get_id() == *id) {
                shard.groups.remove(&group);
            }
        }
        self.publish(partition);
        Some(partition)
    }
}

/// Reads a newly led partition once it is committed.
async fn load_partition(led: Led) -> Result<LoadedPartition, String> {
    let started = std::time::Instant::now();
    let loaded = read_committed(&led, load, |l| l.end_offset).await?;
    info!(partition = led.replica.tp.partition, epoch = led.epoch, groups = loaded.groups.len(),
        records = loaded.records, took = ?started.elapsed(), "offsets partition loaded");
    Ok(loaded)
}

impl Actor for GroupManager {
    type Msg = GroupManagerMsg;
    type State = GroupManagerState;
    type Arguments = GroupManagerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let me = myself.clone();
        let leadership = watch_leadership(OFFSETS_TOPIC, args.registry.clone(), move |l| {
            me.cast(GroupManagerMsg::Leadership(l)).is_ok()
        });
        myself.send_interval(COMPACT_CHECK, || GroupManagerMsg::CompactCheck);
        Ok(GroupManagerState {
            args,
            shards: HashMap::new(),
            by_actor: HashMap::new(),
            led: LedPartitions::default(),
            _leadership: leadership,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GroupManagerMsg::Leadership(change) => {
                let partition = change.partition;
                state.unload(partition, unload_reason(&change));
                if let Some(led) = state.led.apply(change) {
                    state.start_load(&myself, led);
                }
            }
            GroupManagerMsg::Retry { partition, epoch } => {
                if !state.shards.contains_key(&partition) {
                    if let Some(led) = state.led.still(partition, epoch) {
                        state.start_load(&myself, led);
                    }
                }
            }
            GroupManagerMsg::CompactCheck => {
                let threshold = state.args.config.offsets_compact_records;
                let due: Vec<i32> = state
                    .shards
                    .iter()
                    .filter(|(_, s)| {
                        s.ready && s.replica.log.log_end_offset() - s.compacted_at >= threshold
                    })
                    .map(|(p, _)| *p)
                    .collect();
                for p in due {
                    state.compact(p).await;
                }
            }
            GroupManagerMsg::Loaded {
                partition,
                epoch,
                result,
            } => {
                let current = state.shards.get(&partition).map(|s| (s.epoch, s.ready));
                if current != Some((epoch, false)) {
                    return Ok(());
                }
                match result {
                    Ok(mut loaded) => {
                        let ended = state
                            .shards
                            .get_mut(&partition)
                            .map(|s| std::mem::take(&mut s.ended_while_loading))
                            .unwrap_or_default();
                        for (producer_id, commit) in ended {
                            for g in loaded.groups.values_mut() {
                                end_transaction(
                                    &mut g.offsets,
                                    &mut g.pending,
                                    producer_id,
                                    commit,
                                );
                            }
                        }
                        for (group, g) in loaded.groups {
                            if let Err(e) = state
                                .spawn_group(&myself, partition, group.clone(), g)
                                .await
                            {
                                error!(partition, %group, error = %e, "could not start a group coordinator");
                            }
                        }
                        if let Some(s) = state.shards.get_mut(&partition) {
                            s.ready = true;
                        }
                        state.publish(partition);
                    }
                    Err(e) => {
                        warn!(partition, epoch, error = %e, "loading an offsets partition failed; retrying");
                        state.unload(partition, "load failed");
                        myself.send_after(LOAD_RETRY, move || GroupManagerMsg::Retry {
                            partition,
                            epoch,
                        });
                    }
                }
            }
            GroupManagerMsg::TxnEnded {
                partition,
                producer_id,
                commit,
            } => {
                let Some(shard) = state.shards.get_mut(&partition) else {
                    // Not loaded here: whoever loads it reads the marker from the log.
                    return Ok(());
                };
                if shard.ready {
                    for g in shard.groups.values() {
                        let _ = g.cast(GroupMsg::TxnCompleted {
                            producer_id,
                            commit,
                        });
                    }
                } else if shard.ended_while_loading.len() < ENDED_WHILE_LOADING_MAX {
                    shard.ended_while_loading.push((producer_id, commit));
                } else {
                    warn!(partition, "too many markers while loading; loading again");
                    state.unload(partition, "too many markers while loading");
                    if let Some(led) = state.led.get(partition) {
                        state.start_load(&myself, led);
                    }
                }
            }
            GroupManagerMsg::GetOrCreate(group, reply) => {
                let partitions =
                    super::offsets_partitions(state.args.catalog.as_ref(), &state.args.config);
                let partition = partition_for(&group, partitions);
                let r = match state.shards.get(&partition) {
                    None => Err(GroupError::NotCoordinator),
                    Some(s) if !s.ready => Err(GroupError::CoordinatorLoadInProgress),
                    Some(s) => match s.groups.get(&group) {
                        Some(a) => Ok(a.clone()),
                        None => {
                            let r = state
                                .spawn_group(&myself, partition, group, LoadedGroup::default())
                                .await;
                            state.publish(partition);
                            r
                        }
                    },
                };
                let _ = reply.send(r);
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
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.forget(&cell.get_id());
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(partition) = state.forget(&cell.get_id()) {
                    error!(partition, error = %err,
                        "a group coordinator failed; reloading its partition from the log");
                    state.unload(partition, "a coordinator failed");
                    if let Some(led) = state.led.get(partition) {
                        state.start_load(&myself, led);
                    }
                }
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
        let parts: Vec<i32> = state.shards.keys().copied().collect();
        for p in parts {
            state.unload(p, "node shutting down");
        }
        Ok(())
    }
}
