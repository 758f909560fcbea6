//! `TxnManager` and [`Txns`]: which `__transaction_state` partitions this node coordinates,
//! and the broker's handle on their coordinators.
//!
//! ```text
//!  Leadership (told by crate::hosting, no polling)
//!     led (new, new epoch or new replica) ─▶ stop the old epoch's coordinator ─▶ route
//!                  "loading" ─▶ read the log (blocking pool) ─▶ wait for the high watermark
//!                  to cover it ─▶ spawn_linked a TxnCoordinator (it finishes every decided
//!                  transaction it finds) ─▶ route "ready"   (a failed load is retried)
//!     not led ─▶ stop its coordinator ─▶ route removed (NOT_COORDINATOR)
//!  coordinator failed ─▶ the partition is reloaded from the log
//! ```
//!
//! The same placement and fencing as the group coordinators (`group::manager`): the leader of
//! the partition an id hashes to coordinates it, a coordinator serves only the leader epoch it
//! loaded, and failover is partition leader failover.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tracing::{error, info, warn};

use super::coordinator::{TxnCoordinator, TxnCoordinatorArgs, TxnCoordinatorMsg, TxnEnvironment};
use super::core::*;
use super::records::load;
use super::{TxnCoordinatorConfig, TRANSACTION_STATE_TOPIC};
use crate::group::{partition_for, TopicCatalog};
use crate::hosting::{
    read_committed, unload_reason, watch_leadership, Leadership, LeadershipWatch, Led,
    LedPartitions, LOAD_RETRY,
};
use crate::registry::{ReplicaHandle, ReplicaRegistry};
use crate::ActorsError;

/// Slack added to the write timeout when waiting for a coordinator's answer.
const SLACK: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Route {
    ready: bool,
    coordinator: Option<ActorRef<TxnCoordinatorMsg>>,
}

#[derive(Debug, Clone, Default)]
struct Router {
    inner: Arc<RwLock<HashMap<i32, Route>>>,
}

impl Router {
    fn lookup(&self, partition: i32) -> Result<ActorRef<TxnCoordinatorMsg>, TxnError> {
        match self.inner.read().get(&partition) {
            None => Err(TxnError::NotCoordinator),
            Some(Route {
                ready: true,
                coordinator: Some(a),
            }) => Ok(a.clone()),
            Some(_) => Err(TxnError::CoordinatorLoadInProgress),
        }
    }
}

/// Messages of `TxnManager`.
#[derive(Debug)]
pub enum TxnManagerMsg {
    /// A change of leadership of a transaction state partition.
    Leadership(Leadership),
    /// Load `partition` again if it is still led in `epoch` and not loaded (after a failed
    /// load).
    Retry {
        /// Partition.
        partition: i32,
        /// Epoch the failed load was for.
        epoch: i32,
    },
    /// A partition finished loading.
    Loaded {
        /// Partition.
        partition: i32,
        /// Epoch it was loaded under.
        epoch: i32,
        /// What was read.
        result: Result<Vec<(String, Option<TxnMetadata>)>, String>,
    },
}

impl ractor::Message for TxnManagerMsg {}

/// Arguments of `TxnManager` (built by [`Txns::start`]).
#[derive(Debug, Clone)]
pub struct TxnManagerArgs {
    config: Arc<TxnCoordinatorConfig>,
    registry: ReplicaRegistry,
    env: Arc<dyn TxnEnvironment>,
    router: Router,
}

#[derive(Debug)]
struct Shard {
    epoch: i32,
    replica: ReplicaHandle,
    coordinator: Option<ActorRef<TxnCoordinatorMsg>>,
}

/// State of `TxnManager`.
#[derive(Debug)]
pub struct TxnManagerState {
    args: TxnManagerArgs,
    shards: HashMap<i32, Shard>,
    /// The state partitions led here, as last told.
    led: LedPartitions,
    /// Tells this manager about leadership changes; stops with it.
    _leadership: LeadershipWatch,
}

/// The per-node supervisor of transaction coordinators.
#[derive(Debug, Clone, Copy, Default)]
pub struct TxnManager;

fn state_partitions(catalog: &dyn TopicCatalog, config: &TxnCoordinatorConfig) -> i32 {
    catalog
        .topic(TRANSACTION_STATE_TOPIC)
        .map_or(config.state_partitions, |t| t.partitions)
}

impl TxnManagerState {
    fn publish(&self, partition: i32) {
        let mut routes = self.args.router.inner.write();
        match self.shards.get(&partition) {
            Some(s) => {
                routes.insert(
                    partition,
                    Route {
                        ready: s.coordinator.is_some(),
                        coordinator: s.coordinator.clone(),
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
                reason = why,
                "unloading a transaction coordinator"
            );
            if let Some(a) = shard.coordinator {
                a.stop(Some(format!(
                    "transaction state partition {partition}: {why}"
                )));
            }
        }
        self.publish(partition);
    }

    fn start_load(&mut self, myself: &ActorRef<TxnManagerMsg>, led: Led) {
        let replica = led.replica.clone();
        let partition = replica.tp.partition;
        let epoch = led.epoch;
        info!(
            partition,
            epoch, "this node leads a transaction state partition; loading it"
        );
        self.shards.insert(
            partition,
            Shard {
                epoch,
                replica,
                coordinator: None,
            },
        );
        self.publish(partition);
        let myself = myself.clone();
        tokio::spawn(async move {
            let result = read_committed(&led, load, |l| l.end_offset)
                .await
                .map(|l| l.records);
            let _ = myself.cast(TxnManagerMsg::Loaded {
                partition,
                epoch,
                result,
            });
        });
    }
}

impl Actor for TxnManager {
    type Msg = TxnManagerMsg;
    type State = TxnManagerState;
    type Arguments = TxnManagerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let me = myself.clone();
        let leadership =
            watch_leadership(TRANSACTION_STATE_TOPIC, args.registry.clone(), move |l| {
                me.cast(TxnManagerMsg::Leadership(l)).is_ok()
            });
        Ok(TxnManagerState {
            args,
            shards: HashMap::new(),
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
            TxnManagerMsg::Leadership(change) => {
                let partition = change.partition;
                state.unload(partition, unload_reason(&change));
                if let Some(led) = state.led.apply(change) {
                    state.start_load(&myself, led);
                }
            }
            TxnManagerMsg::Retry { partition, epoch } => {
                if !state.shards.contains_key(&partition) {
                    if let Some(led) = state.led.still(partition, epoch) {
                        state.start_load(&myself, led);
                    }
                }
            }
            TxnManagerMsg::Loaded {
                partition,
                epoch,
                result,
            } => {
                let Some(shard) = state.shards.get(&partition) else {
                    return Ok(());
                };
                if shard.epoch != epoch || shard.coordinator.is_some() {
                    return Ok(());
                }
                match result {
                    Ok(records) => {
                        let ids = records.len();
                        let args = TxnCoordinatorArgs {
                            replica: shard.replica.clone(),
                            epoch,
                            config: state.args.config.clone(),
                            env: state.args.env.clone(),
                            records,
                        };
                        match Actor::spawn_linked(None, TxnCoordinator, args, myself.get_cell())
                            .await
                        {
                            Ok((a, _)) => {
                                info!(
                                    partition,
                                    epoch,
                                    records = ids,
                                    "transaction coordinator ready"
                                );
                                if let Some(s) = state.shards.get_mut(&partition) {
                                    s.coordinator = Some(a);
                                }
                                state.publish(partition);
                            }
                            Err(e) => {
                                error!(partition, error = %e, "could not start a transaction coordinator");
                                state.unload(partition, "coordinator did not start");
                            }
                        }
                    }
                    Err(e) => {
                        warn!(partition, epoch, error = %e, "loading a transaction state partition failed; retrying");
                        state.unload(partition, "load failed");
                        myself.send_after(LOAD_RETRY, move || TxnManagerMsg::Retry {
                            partition,
                            epoch,
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
        let (id, failed) = match &evt {
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell.get_id(), None),
            SupervisionEvent::ActorFailed(cell, err) => (cell.get_id(), Some(err.to_string())),
            _ => return Ok(()),
        };
        let found = state
            .shards
            .iter()
            .find(|(_, s)| s.coordinator.as_ref().is_some_and(|a| a.get_id() == id))
            .map(|(p, _)| *p);
        if let Some(p) = found {
            if let Some(err) = failed {
                error!(partition = p, error = %err,
                    "a transaction coordinator failed; reloading its partition from the log");
            }
            // A coordinator stops on its own only when it failed or gave up: its in-memory
            // state is gone, so the partition is read again (unload first: the shard still
            // names the stopped coordinator).
            if let Some(s) = state.shards.get_mut(&p) {
                s.coordinator = None;
            }
            state.unload(p, "its coordinator stopped");
            if let Some(led) = state.led.get(p) {
                state.start_load(&myself, led);
            }
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

/// The broker's handle on this node's transaction coordinators. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Txns {
    config: Arc<TxnCoordinatorConfig>,
    catalog: Arc<dyn TopicCatalog>,
    router: Router,
    manager: ActorRef<TxnManagerMsg>,
}

impl Txns {
    /// Starts this node's transaction manager. With `supervisor`, the manager is linked to it
    /// (a failed manager stops the node, as a failed group manager does).
    pub async fn start(
        config: TxnCoordinatorConfig,
        registry: ReplicaRegistry,
        catalog: Arc<dyn TopicCatalog>,
        env: Arc<dyn TxnEnvironment>,
        supervisor: Option<ractor::ActorCell>,
    ) -> Result<Txns, ActorsError> {
        let config = Arc::new(config);
        let router = Router::default();
        let args = TxnManagerArgs {
            config: config.clone(),
            registry,
            env,
            router: router.clone(),
        };
        let spawned = match supervisor {
            Some(cell) => Actor::spawn_linked(None, TxnManager, args, cell).await,
            None => Actor::spawn(None, TxnManager, args).await,
        };
        let (manager, _) = spawned.map_err(|e| ActorsError::Spawn {
            name: "transaction manager".into(),
            reason: e.to_string(),
        })?;
        Ok(Txns {
            config,
            catalog,
            router,
            manager,
        })
    }

    /// Stops every coordinator on this node.
    pub async fn shutdown(&self) {
        let _ = self
            .manager
            .stop_and_wait(
                Some("node shutting down".into()),
                Some(Duration::from_secs(5)),
            )
            .await;
        info!("transaction coordinators stopped");
    }

    /// Settings.
    pub fn config(&self) -> &TxnCoordinatorConfig {
        &self.config
    }

    /// Partitions of `__transaction_state` (the topic's own count once it exists).
    pub fn state_partitions(&self) -> i32 {
        state_partitions(self.catalog.as_ref(), &self.config)
    }

    /// The `__transaction_state` partition that coordinates `transactional_id` (Kafka's
    /// `abs(hashCode) % partitions`, as for groups).
    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        partition_for(transactional_id, self.state_partitions())
    }

    /// True once this node coordinates `partition` (loading or loaded).
    pub fn coordinates_partition(&self, partition: i32) -> bool {
        self.router.inner.read().contains_key(&partition)
    }

    async fn ask(&self, transactional_id: &str, input: Input) -> Result<Reply, TxnError> {
        let coordinator = self.router.lookup(self.partition_for(transactional_id))?;
        let timeout = self.config.write_timeout + SLACK;
        match coordinator
            .call(
                |port| TxnCoordinatorMsg::Request(input, port),
                Some(timeout),
            )
            .await
        {
            Ok(CallResult::Success(r)) => Ok(r),
            Ok(CallResult::Timeout) => Err(TxnError::CoordinatorNotAvailable),
            // The coordinator stopped (leadership moved) while the request waited.
            Ok(CallResult::SenderError) | Err(_) => Err(TxnError::NotCoordinator),
        }
    }

    /// InitProducerId with a transactional id.
    pub async fn init_producer_id(
        &self,
        req: InitProducerIdRequest,
    ) -> Result<(i64, i16), TxnError> {
        let id = req.transactional_id.clone();
        match self.ask(&id, Input::InitProducerId(0, req)).await? {
            Reply::InitProducerId(r) => r,
            _ => Err(TxnError::CoordinatorNotAvailable),
        }
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn (one outcome for all partitions), or, with
    /// `verify_only`, the per-partition verification of KIP-890.
    pub async fn add_partitions(
        &self,
        req: AddPartitionsRequest,
    ) -> Result<Vec<(TxnPartition, Option<TxnError>)>, TxnError> {
        let id = req.transactional_id.clone();
        let parts = req.partitions.clone();
        match self.ask(&id, Input::AddPartitions(0, req)).await? {
            Reply::AddPartitions(Ok(())) => Ok(parts.into_iter().map(|p| (p, None)).collect()),
            Reply::AddPartitions(Err(e)) => Err(e),
            Reply::Verify(v) => Ok(v),
            _ => Err(TxnError::CoordinatorNotAvailable),
        }
    }

    /// The state of every transactional id this node coordinates (ListTransactions: each
    /// broker answers for its own coordinators and clients ask every broker). `loading` is set
    /// when a partition this node leads has not finished loading, so the list may be missing
    /// ids (Kafka answers COORDINATOR_LOAD_IN_PROGRESS then).
    pub async fn list(&self) -> TxnListing {
        let routes: Vec<Option<ActorRef<TxnCoordinatorMsg>>> = self
            .router
            .inner
            .read()
            .values()
            .map(|r| r.coordinator.clone().filter(|_| r.ready))
            .collect();
        let mut listing = TxnListing::default();
        for route in routes {
            let Some(coordinator) = route else {
                listing.loading = true;
                continue;
            };
            match describe_all(&coordinator, self.config.write_timeout + SLACK).await {
                Ok(all) => listing.transactions.extend(all),
                // Stopped or unresponsive: its partition is moving, the same as loading.
                Err(_) => listing.loading = true,
            }
        }
        listing
    }

    /// The state of one transactional id (DescribeTransactions): `Ok(None)` if the id's
    /// coordinator (this node) does not know it.
    pub async fn describe(&self, transactional_id: &str) -> Result<Option<TxnMetadata>, TxnError> {
        let coordinator = self.router.lookup(self.partition_for(transactional_id))?;
        let all = describe_all(&coordinator, self.config.write_timeout + SLACK).await?;
        Ok(all
            .into_iter()
            .find(|m| m.transactional_id == transactional_id))
    }

    /// EndTxn.
    pub async fn end_txn(&self, req: EndTxnRequest) -> Result<(), TxnError> {
        let id = req.transactional_id.clone();
        match self.ask(&id, Input::EndTxn(0, req)).await? {
            Reply::EndTxn(r) => r,
            _ => Err(TxnError::CoordinatorNotAvailable),
        }
    }
}

/// What [`Txns::list`] found.
#[derive(Debug, Clone, Default)]
pub struct TxnListing {
    /// Every id of every loaded coordinator on this node.
    pub transactions: Vec<TxnMetadata>,
    /// A coordinator on this node was loading or did not answer.
    pub loading: bool,
}

async fn describe_all(
    coordinator: &ActorRef<TxnCoordinatorMsg>,
    timeout: Duration,
) -> Result<Vec<TxnMetadata>, TxnError> {
    match coordinator
        .call(TxnCoordinatorMsg::Describe, Some(timeout))
        .await
    {
        Ok(CallResult::Success(all)) => Ok(all),
        Ok(CallResult::Timeout) => Err(TxnError::CoordinatorNotAvailable),
        Ok(CallResult::SenderError) | Err(_) => Err(TxnError::NotCoordinator),
    }
}
