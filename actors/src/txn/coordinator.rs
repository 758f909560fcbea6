//! `TxnCoordinator`: the actor hosting the [`TxnCoordinatorCore`] of one `__transaction_state`
//! partition on its leader, for one leader epoch.
//!
//! ```text
//!  request ─▶ core.handle ─▶ Output::Write         ─▶ task: Append to the partition, wait for
//!                                                      its high watermark ─▶ WriteDone
//!                           Output::WriteMarkers   ─▶ task: TxnEnvironment::write_markers
//!                                                      ─▶ MarkersWritten / (after a pause) MarkersFailed
//!                           Output::AllocateProducerId ─▶ task: the controller's allocator
//!                           Output::Reply          ─▶ the request's reply port
//!  Tick (1 s) ─▶ core: timeouts, expiry, retries
//! ```
//!
//! The actor never waits on I/O itself: the work runs in tasks that report back as messages,
//! so requests of other ids are served meanwhile (the core keeps one change per id in flight).
//! State writes go through the committed-write path (`crate::write`, `acks=all`), fenced like
//! the group coordinators': a write fails with NOT_COORDINATOR as soon as the replica is no
//! longer leader in the epoch this coordinator loaded, or the node's controller lease lapses.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{debug, warn};

use super::core::*;
use super::records::encode_batch;
use super::TxnCoordinatorConfig;
use crate::registry::ReplicaHandle;
use crate::write::{self, Acks, WriteError, WriteOptions};

/// How often the coordinator checks its timers. Each check walks every id of the partition,
/// so it is not done as often as the group coordinators' 100 ms: a transaction is aborted at
/// most a second after its timeout (Kafka checks every 10 s).
const TICK: Duration = Duration::from_secs(1);
/// Pause before markers that could not be written are tried again.
const MARKER_RETRY: Duration = Duration::from_millis(500);

/// A boxed future, for the [`TxnEnvironment`] methods.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Markers for the partitions of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerRequest {
    /// Transactional id (for logs).
    pub transactional_id: String,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Epoch of the coordinator writing them.
    pub coordinator_epoch: i32,
    /// Commit or abort.
    pub commit: bool,
    /// Partitions.
    pub partitions: Vec<TxnPartition>,
}

/// What the coordinators need from the layers above them (implemented by the node).
pub trait TxnEnvironment: Send + Sync + std::fmt::Debug {
    /// A fresh producer id from the cluster-wide allocator.
    fn allocate_producer_id(&self) -> BoxFuture<Result<i64, String>>;
    /// Writes the markers (on each partition's leader, replicated) and returns the partitions
    /// now holding one; the others are tried again later. A partition that no longer exists
    /// counts as written.
    fn write_markers(&self, request: MarkerRequest) -> BoxFuture<Vec<TxnPartition>>;
    /// This node's controller lease (true while valid), if it has one.
    fn lease(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        None
    }
    /// `min.insync.replicas` of a topic (the state topic's, for state writes).
    fn min_insync_replicas(&self, _topic: &str) -> i64 {
        1
    }
}

/// Messages of [`TxnCoordinator`].
#[derive(Debug)]
pub enum TxnCoordinatorMsg {
    /// InitProducerId, AddPartitionsToTxn / AddOffsetsToTxn or EndTxn (one of the request
    /// inputs of the core; other inputs are ignored).
    Request(Input, RpcReplyPort<Reply>),
    /// The state of every id (DescribeTransactions / ListTransactions).
    Describe(RpcReplyPort<Vec<TxnMetadata>>),
    /// A completion reported by one of the coordinator's own tasks.
    Completed(Input),
    /// Check timers.
    Tick,
}

impl ractor::Message for TxnCoordinatorMsg {}

/// Arguments of [`TxnCoordinator`].
#[derive(Debug, Clone)]
pub struct TxnCoordinatorArgs {
    /// The `__transaction_state` partition.
    pub replica: ReplicaHandle,
    /// Its leader epoch when loaded: the coordinator epoch.
    pub epoch: i32,
    /// Settings.
    pub config: Arc<TxnCoordinatorConfig>,
    /// Producer ids, markers, lease.
    pub env: Arc<dyn TxnEnvironment>,
    /// The partition's records, in log order.
    pub records: Vec<(String, Option<TxnMetadata>)>,
}

/// State of [`TxnCoordinator`].
#[derive(Debug)]
pub struct TxnCoordinatorState {
    core: TxnCoordinatorCore,
    replica: ReplicaHandle,
    epoch: i32,
    config: Arc<TxnCoordinatorConfig>,
    env: Arc<dyn TxnEnvironment>,
    ports: HashMap<RequestId, RpcReplyPort<Reply>>,
    next_request: RequestId,
}

/// The transaction coordinator of one `__transaction_state` partition.
#[derive(Debug, Clone, Copy, Default)]
pub struct TxnCoordinator;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl TxnCoordinatorState {
    fn perform(&mut self, myself: &ActorRef<TxnCoordinatorMsg>, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Reply(id, reply) => {
                    if let Some(port) = self.ports.remove(&id) {
                        let _ = port.send(reply);
                    }
                }
                Output::AllocateProducerId { transactional_id } => {
                    let env = self.env.clone();
                    let me = myself.clone();
                    tokio::spawn(async move {
                        let producer_id = env.allocate_producer_id().await.map_err(|e| {
                            warn!(%transactional_id, error = %e, "producer id allocation failed");
                            TxnError::CoordinatorNotAvailable
                        });
                        let _ = me.cast(TxnCoordinatorMsg::Completed(Input::ProducerIdAllocated {
                            transactional_id,
                            producer_id,
                        }));
                    });
                }
                Output::Write {
                    write_id,
                    transactional_id,
                    record,
                } => {
                    let writer = StateWriter {
                        replica: self.replica.clone(),
                        options: WriteOptions {
                            acks: Acks::All,
                            timeout: self.config.write_timeout,
                            min_insync_replicas: self
                                .env
                                .min_insync_replicas(&self.replica.tp.topic),
                            leader_epoch: Some(self.epoch),
                            lease: self.env.lease(),
                        },
                    };
                    let me = myself.clone();
                    tokio::spawn(async move {
                        let result = writer.write(&transactional_id, record.as_ref()).await;
                        let _ = me.cast(TxnCoordinatorMsg::Completed(Input::WriteDone {
                            write_id,
                            result,
                        }));
                    });
                }
                Output::WriteMarkers {
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    commit,
                    partitions,
                } => {
                    let env = self.env.clone();
                    let me = myself.clone();
                    let request = MarkerRequest {
                        transactional_id: transactional_id.clone(),
                        producer_id,
                        producer_epoch,
                        coordinator_epoch,
                        commit,
                        partitions: partitions.clone(),
                    };
                    tokio::spawn(async move {
                        let written = env.write_markers(request).await;
                        let failed: Vec<TxnPartition> = partitions
                            .into_iter()
                            .filter(|p| !written.contains(p))
                            .collect();
                        if !written.is_empty() {
                            let _ = me.cast(TxnCoordinatorMsg::Completed(Input::MarkersWritten {
                                transactional_id: transactional_id.clone(),
                                producer_id,
                                producer_epoch,
                                partitions: written,
                            }));
                        }
                        if !failed.is_empty() {
                            debug!(%transactional_id, failed = failed.len(), "markers not written yet; retrying");
                            tokio::time::sleep(MARKER_RETRY).await;
                            let _ = me.cast(TxnCoordinatorMsg::Completed(Input::MarkersFailed {
                                transactional_id,
                                producer_id,
                                producer_epoch,
                                partitions: failed,
                            }));
                        }
                    });
                }
            }
        }
    }
}

/// Appends one record to the state partition through the committed-write path (`acks=all`,
/// bound to the coordinator's epoch and the node's lease).
struct StateWriter {
    replica: ReplicaHandle,
    options: WriteOptions,
}

impl StateWriter {
    async fn write(&self, id: &str, record: Option<&TxnMetadata>) -> Result<(), TxnError> {
        let batch = encode_batch(id, record, now_ms()).map_err(|e| {
            warn!(transactional_id = %id, error = %e, "transaction state does not serialize");
            TxnError::CoordinatorNotAvailable
        })?;
        match write::append(&self.replica, Bytes::from(batch), &self.options).await {
            Ok(_) => Ok(()),
            Err(e) => {
                warn!(transactional_id = %id, partition = %self.replica.tp, error = %e,
                    "transaction state write failed");
                Err(match e {
                    WriteError::UnknownReplica { .. }
                    | WriteError::NotLeader { .. }
                    | WriteError::LeadershipMoved { .. }
                    | WriteError::LeaseLapsed { .. } => TxnError::NotCoordinator,
                    // A write that timed out may still commit: the core keeps its old state,
                    // and a reload after a failover reads whichever came last (see `core`).
                    _ => TxnError::CoordinatorNotAvailable,
                })
            }
        }
    }
}

impl Actor for TxnCoordinator {
    type Msg = TxnCoordinatorMsg;
    type State = TxnCoordinatorState;
    type Arguments = TxnCoordinatorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (core, out) =
            TxnCoordinatorCore::load(args.config.core.clone(), args.epoch, args.records);
        let mut state = TxnCoordinatorState {
            core,
            replica: args.replica,
            epoch: args.epoch,
            config: args.config,
            env: args.env,
            ports: HashMap::new(),
            next_request: 1,
        };
        state.perform(&myself, out);
        myself.send_interval(TICK, || TxnCoordinatorMsg::Tick);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let input = match msg {
            TxnCoordinatorMsg::Request(input, port) => {
                let id = state.next_request;
                state.next_request += 1;
                let input = match input {
                    Input::InitProducerId(_, r) => Input::InitProducerId(id, r),
                    Input::AddPartitions(_, r) => Input::AddPartitions(id, r),
                    Input::EndTxn(_, r) => Input::EndTxn(id, r),
                    _ => return Ok(()),
                };
                state.ports.insert(id, port);
                input
            }
            TxnCoordinatorMsg::Describe(port) => {
                let _ = port.send(state.core.transactions().cloned().collect());
                return Ok(());
            }
            TxnCoordinatorMsg::Completed(input) => input,
            TxnCoordinatorMsg::Tick => Input::Tick,
        };
        let out = state.core.handle(now_ms(), input);
        state.perform(&myself, out);
        Ok(())
    }
}
