//! Client operations on partitions from inside the cluster, without the Kafka wire protocol:
//! read, list offsets, append; and, addressed to a node rather than a partition, the
//! transaction markers of the partitions that node leads ([`ForwardRequest::WriteMarkers`],
//! sent by [`crate::txn`] through [`Forwarder::call_node`]). The native client (the `rivulet`
//! facade's `Producer`, `Consumer`) calls them through a [`Forwarder`], which runs them against
//! the local replica when this node leads the partition and forwards them to the leader's node
//! otherwise.
//!
//! ```text
//!  Forwarder::request(tp, op) ── leader? (local metadata image) ──┐
//!     │ leader is this node                                       │ leader is node N
//!     ▼                                                           ▼
//!  execute(registry, op)                    ForwardService on N (process group
//!     │ read / list offsets: the log clone    `rivulet.forward.<N>`, rkyv Call over the
//!     │   on the blocking pool, capped at     ractor_cluster link) ── execute(registry, op)
//!     │   the high watermark                                      │
//!     │ append: the replica actor                                 │
//!     ▼                                                           ▼
//!  Ok(reply) | Err(ForwardError)  ◀── NotLeader / LeaderNotAvailable / Unreachable:
//!                                     refresh the leader and retry (bounded, with backoff)
//! ```
//!
//! Messages stay far below ractor_cluster's frame limit (16 MiB, over which the whole link
//! closes): a read returns at most [`READ_BYTES_MAX`] (plus a single batch larger than
//! that, bounded by the topic's `max.message.bytes`), and an append carries at most
//! [`APPEND_BYTES_MAX`]. A forwarded call that gets no answer in time (a remote message that
//! fails to decode is dropped silently by ractor_cluster) is a `Timeout`. A call in flight
//! when the link to its node closes (the node died) fails at once instead: ractor_cluster
//! drops the pending reply port with the link, which is a retriable `Unreachable`, so the
//! retry goes to the next leader without waiting out a long poll. A node that only goes silent
//! (paused, cut off) keeps its link open, so a call in flight also watches the metadata image
//! and gives up (`LeadershipMoved`, retried) once another node is named leader
//! (tests/native_client.rs, a killed and a paused leader).

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use rivulet_actors::group::{
    ConsumerMemberDescription, GroupDescription, GroupError, GroupKind, GroupListing,
    GroupTopicPartition, Groups, MemberDescription,
};
use rivulet_actors::replication::NodeId;
use rivulet_actors::write::{self, WriteError, WriteOptions};
use rivulet_actors::TopicPartition;
use rivulet_storage::{Bytes, StorageError};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::Controller;

/// Most bytes of record batches a read returns (a single larger batch still comes whole).
pub const READ_BYTES_MAX: u32 = 1 << 20;
/// Longest wait of one read for records to arrive.
pub const READ_WAIT_MAX_MS: u32 = 30_000;
/// Most bytes of record batches one append carries.
pub const APPEND_BYTES_MAX: usize = 4 << 20;
/// Attempts of one request, across leader changes.
const ATTEMPTS_MAX: u32 = 20;
/// How often a forwarded call in flight checks whether its target still leads the partition
/// (a read of the local metadata image).
const LEADER_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Time a forwarded call may take beyond the operation's own timeout before it is given up.
const CALL_MARGIN: Duration = Duration::from_secs(5);

/// How many replicas must have an append before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Acks {
    /// Sent, not waited for (acks=0): the reply only says the leader was asked.
    None,
    /// The leader appended it (acks=1).
    Leader,
    /// Every in-sync replica has it: the high watermark passed it (acks=all).
    All,
}

/// Which offset [`ForwardRequest::ListOffset`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark (the offset the next committed record gets).
    Latest,
    /// The first record with a timestamp at or after this one (ms).
    Timestamp(i64),
}

/// One operation on a partition.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ForwardRequest {
    /// Whole stored batches from the one holding `offset`, below the high watermark.
    Read {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// First offset wanted.
        offset: i64,
        /// Most bytes (capped at [`READ_BYTES_MAX`]; the first batch comes whole).
        max_bytes: u32,
        /// With nothing to read at `offset`, how long to wait for records (ms; capped at
        /// [`READ_WAIT_MAX_MS`]): a long poll on the high watermark, never a spin.
        max_wait_ms: u32,
    },
    /// An offset of the partition.
    ListOffset {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// Which offset.
        spec: OffsetSpec,
    },
    /// Append record batches (format v2, as a producer builds them).
    Append {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The batches.
        records: Vec<u8>,
        /// Acknowledgement level.
        acks: Acks,
        /// How long an `acks=All` append may wait for the followers (ms).
        timeout_ms: u32,
    },
    /// Write one transaction's marker (commit or abort) to the partitions this node leads
    /// (the transaction coordinator's fan-out, [`crate::txn`]); answered with the partitions
    /// that now hold it (replicated, `acks=all`) or no longer exist.
    WriteMarkers {
        /// The marker.
        marker: MarkerSpec,
        /// Partitions, as (topic, partition).
        partitions: Vec<(String, i32)>,
        /// How long each append may wait for the followers (ms).
        timeout_ms: u32,
    },
}

/// A transaction marker on the cluster link (storage's `TxnMarker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MarkerSpec {
    /// Producer id of the transaction.
    pub producer_id: i64,
    /// Its producer epoch.
    pub producer_epoch: i16,
    /// Epoch of the coordinator writing it.
    pub coordinator_epoch: i32,
    /// Commit (true) or abort.
    pub commit: bool,
}

impl ForwardRequest {
    /// The one partition of the request; `None` for one addressed to a node.
    fn topic_partition(&self) -> Option<(&str, i32)> {
        match self {
            ForwardRequest::Read {
                topic, partition, ..
            }
            | ForwardRequest::ListOffset {
                topic, partition, ..
            }
            | ForwardRequest::Append {
                topic, partition, ..
            } => Some((topic, *partition)),
            ForwardRequest::WriteMarkers { .. } => None,
        }
    }

    fn deadline_ms(&self) -> u64 {
        match self {
            ForwardRequest::Append { timeout_ms, .. }
            | ForwardRequest::WriteMarkers { timeout_ms, .. } => u64::from(*timeout_ms),
            ForwardRequest::Read { max_wait_ms, .. } => {
                u64::from((*max_wait_ms).min(READ_WAIT_MAX_MS))
            }
            ForwardRequest::ListOffset { .. } => 0,
        }
    }
}

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ReadReply {
    /// Whole batches; the first may start before the offset asked for.
    pub records: Vec<u8>,
    /// The high watermark when read.
    pub high_watermark: i64,
    /// The log start offset when read.
    pub log_start_offset: i64,
}

/// An offset found by [`ForwardRequest::ListOffset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct OffsetReply {
    /// The offset; -1 when no record has a timestamp that late.
    pub offset: i64,
    /// The record's timestamp for a timestamp lookup, else -1.
    pub timestamp: i64,
}

/// Where an append went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AppendReply {
    /// Offset of the first record (-1 for acks=None).
    pub base_offset: i64,
    /// Offset after the last record (-1 for acks=None).
    pub next_offset: i64,
    /// The leader's log start offset (-1 for acks=None).
    pub log_start_offset: i64,
}

/// The answer to a [`ForwardRequest`].
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ForwardReply {
    /// To a read.
    Read(ReadReply),
    /// To an offset lookup.
    Offset(OffsetReply),
    /// To an append.
    Appended(AppendReply),
    /// To [`ForwardRequest::WriteMarkers`]: the partitions done.
    MarkersWritten(Vec<(String, i32)>),
}

/// Why an operation failed. `is_retriable` ones are retried by the [`Forwarder`] itself
/// until its attempts run out.
#[derive(
    Debug, Clone, PartialEq, Eq, thiserror::Error, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub enum ForwardError {
    /// The topic or partition does not exist.
    #[error("unknown topic or partition {topic}-{partition}")]
    UnknownTopicOrPartition {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// The node asked does not lead the partition (any more). Retriable.
    #[error("node {node} does not lead {topic}-{partition}")]
    NotLeader {
        /// The node asked.
        node: u64,
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// No leader is known now (an election is under way). Retriable.
    #[error("{topic}-{partition} has no leader now")]
    LeaderNotAvailable {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// The leader appended the records (perhaps) but lost its leadership or its controller
    /// lease before they were committed, or its replica restarted. Retriable: an
    /// idempotent producer's retry is stored once.
    #[error("leadership moved: {0}")]
    LeadershipMoved(String),
    /// The leader's node is not connected. Retriable.
    #[error("node {0} is not reachable")]
    Unreachable(u64),
    /// Fewer in-sync replicas than `min.insync.replicas`; nothing was appended.
    #[error("not enough in-sync replicas: {0}")]
    NotEnoughReplicas(String),
    /// Appended by the leader, but the in-sync replicas did not all get it in time; the
    /// records may or may not become committed.
    #[error("not enough in-sync replicas after the append: {0}")]
    NotEnoughReplicasAfterAppend(String),
    /// No answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The offset is outside the log.
    #[error("offset {offset} is outside the log [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// Offset asked for.
        offset: i64,
        /// Log start offset.
        log_start: i64,
        /// Log end offset.
        log_end: i64,
    },
    /// The records were refused (corrupt, too large, producer fenced or out of sequence).
    #[error("records refused: {0}")]
    Rejected(String),
    /// The request is larger than a cluster message may be.
    #[error("request of {bytes} bytes is over the {max} bytes one call may carry")]
    TooLarge {
        /// Its size.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// The replica failed (storage).
    #[error("replica failed: {0}")]
    Storage(String),
}

impl ForwardError {
    /// True for errors a retry after a metadata refresh may cure.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            ForwardError::NotLeader { .. }
                | ForwardError::LeaderNotAvailable { .. }
                | ForwardError::LeadershipMoved(_)
                | ForwardError::Unreachable(_)
        )
    }
}

/// Result of forwarded operations.
pub type ForwardResult<T> = std::result::Result<T, ForwardError>;

#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
enum Answer {
    Ok(ForwardReply),
    Err(ForwardError),
}

fn encode<T>(value: &T) -> Vec<u8>
where
    T: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<
            rkyv::util::AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rkyv::rancor::Error,
        >,
    >,
{
    // Our own types always serialize: nothing in them can fail.
    rkyv::to_bytes::<rkyv::rancor::Error>(value)
        .map(|b| b.into_vec())
        .unwrap_or_default()
}

fn decode_request(bytes: &[u8]) -> Result<ForwardRequest, String> {
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<ForwardRequest, rkyv::rancor::Error>(&aligned)
        .map_err(|e| format!("malformed forwarded request: {e}"))
}

fn decode_answer(bytes: &[u8]) -> Result<Answer, String> {
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<Answer, rkyv::rancor::Error>(&aligned)
        .map_err(|e| format!("malformed forwarded answer: {e}"))
}

fn decode<T>(bytes: &[u8]) -> Result<T, String>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rkyv::rancor::Error>(&aligned)
        .map_err(|e| format!("malformed group message: {e}"))
}

fn group_of(node: NodeId) -> String {
    format!("rivulet.forward.{node}")
}

/// Runs `request` against this node's replica of its partition. The node must lead it.
pub async fn execute(
    node: NodeId,
    controller: &Controller,
    request: ForwardRequest,
) -> ForwardResult<ForwardReply> {
    let Some((topic, partition)) = request.topic_partition() else {
        return Err(ForwardError::Rejected(
            "a request addressed to a node is served by its ForwardService".into(),
        ));
    };
    let tp = TopicPartition::new(topic, partition);
    let not_leader = || ForwardError::NotLeader {
        node,
        topic: topic.to_string(),
        partition,
    };
    let handle = controller.replica(&tp).ok_or_else(not_leader)?;
    if !handle.is_leader() {
        return Err(not_leader());
    }
    match request {
        ForwardRequest::Read {
            offset,
            max_bytes,
            max_wait_ms,
            ..
        } => {
            let mut watch = handle.high_watermark.clone();
            let mut hw = *watch.borrow_and_update();
            // Nothing committed at `offset` yet (the log may hold uncommitted records past
            // the high watermark): wait for the high watermark to pass it.
            // An offset past the log end is out of range at once, not after the wait.
            if hw <= offset && offset <= handle.log.log_end_offset() && max_wait_ms > 0 {
                let wait = Duration::from_millis(u64::from(max_wait_ms.min(READ_WAIT_MAX_MS)));
                // Ends early when the replica stops (the watch closes) or leadership moves:
                // the next read then finds out which.
                let mut status = handle.status.clone();
                let _ = tokio::time::timeout(wait, async {
                    tokio::select! {
                        _ = watch.wait_for(|h| *h > offset) => {}
                        _ = status.wait_for(|s| !s.is_leader) => {}
                    }
                })
                .await;
                hw = *watch.borrow();
            }
            let log = handle.log.clone();
            let max = max_bytes.min(READ_BYTES_MAX) as usize;
            let read = tokio::task::spawn_blocking(move || log.read(offset, max, hw))
                .await
                .map_err(|e| ForwardError::Storage(e.to_string()))?;
            match read {
                Ok(r) => Ok(ForwardReply::Read(ReadReply {
                    records: r.records.to_vec(),
                    high_watermark: hw,
                    log_start_offset: r.log_start_offset,
                })),
                Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start,
                    log_end,
                }) => Err(ForwardError::OffsetOutOfRange {
                    offset,
                    log_start,
                    log_end,
                }),
                Err(e) => Err(ForwardError::Storage(e.to_string())),
            }
        }
        ForwardRequest::ListOffset { spec, .. } => {
            let hw = *handle.high_watermark.borrow();
            let (offset, timestamp) = match spec {
                OffsetSpec::Earliest => (handle.log.log_start_offset(), -1),
                OffsetSpec::Latest => (hw, -1),
                OffsetSpec::Timestamp(ts) => {
                    let log = handle.log.clone();
                    let found =
                        tokio::task::spawn_blocking(move || log.offset_for_timestamp(ts, hw))
                            .await
                            .map_err(|e| ForwardError::Storage(e.to_string()))?
                            .map_err(|e| ForwardError::Storage(e.to_string()))?;
                    found.map_or((-1, -1), |f| (f.offset, f.timestamp))
                }
            };
            Ok(ForwardReply::Offset(OffsetReply { offset, timestamp }))
        }
        ForwardRequest::WriteMarkers { .. } => Err(ForwardError::Rejected(
            "markers are written by crate::txn::write_markers_here".into(),
        )),
        ForwardRequest::Append {
            records,
            acks,
            timeout_ms,
            ..
        } => {
            let meta = controller.topic(&tp.topic).ok_or_else(|| {
                ForwardError::UnknownTopicOrPartition {
                    topic: tp.topic.to_string(),
                    partition,
                }
            })?;
            // The same policy and fencing the Kafka produce handler applies.
            let opts = WriteOptions {
                acks: match acks {
                    Acks::None => write::Acks::None,
                    Acks::Leader => write::Acks::Leader,
                    Acks::All => write::Acks::All,
                },
                timeout: Duration::from_millis(u64::from(timeout_ms)),
                min_insync_replicas: controller.min_insync_replicas(&meta),
                leader_epoch: None,
                lease: Some(controller.lease_watch()),
            };
            match write::append(&handle, Bytes::from(records), &opts).await {
                Ok(w) => Ok(ForwardReply::Appended(AppendReply {
                    base_offset: w.base_offset,
                    next_offset: w.last_offset + 1,
                    log_start_offset: w.log_start_offset,
                })),
                Err(e) => Err(write_error(node, e)),
            }
        }
    }
}

fn write_error(node: NodeId, e: WriteError) -> ForwardError {
    let not_leader = |tp: TopicPartition| ForwardError::NotLeader {
        node,
        topic: tp.topic.to_string(),
        partition: tp.partition,
    };
    match e {
        WriteError::UnknownReplica { tp } | WriteError::NotLeader { tp } => not_leader(tp),
        WriteError::Rejected(
            StorageError::LogClosed(_) | StorageError::FencedLeaderEpoch { .. },
        ) => ForwardError::LeadershipMoved(e.to_string()),
        WriteError::LeadershipMoved { .. }
        | WriteError::LeaseLapsed { .. }
        | WriteError::ReplicaStopped { .. } => ForwardError::LeadershipMoved(e.to_string()),
        WriteError::NotEnoughReplicas { .. } => ForwardError::NotEnoughReplicas(e.to_string()),
        WriteError::NotEnoughReplicasAfterAppend { .. } => {
            ForwardError::NotEnoughReplicasAfterAppend(e.to_string())
        }
        WriteError::TimedOut { .. } => ForwardError::Timeout(e.to_string()),
        WriteError::Rejected(_) => ForwardError::Rejected(e.to_string()),
        WriteError::ReplicaFailed { .. } => ForwardError::Storage(e.to_string()),
    }
}

/// Messages of the [`ForwardService`].
#[derive(RactorClusterMessage)]
pub enum ForwardServiceMsg {
    /// An rkyv [`ForwardRequest`] in, an rkyv answer out.
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// An rkyv group question in (the groups this node coordinates), an rkyv answer out.
    #[rpc]
    Groups(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

impl std::fmt::Debug for ForwardServiceMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardServiceMsg::Call(b, _) => write!(f, "Call({} bytes)", b.len()),
            ForwardServiceMsg::Groups(b, _) => write!(f, "Groups({} bytes)", b.len()),
        }
    }
}

/// Arguments of the [`ForwardService`].
#[derive(Debug, Clone)]
pub struct ForwardServiceArgs {
    /// This node.
    pub node_id: NodeId,
    /// Its controller facade (replicas, topic policies, the lease).
    pub controller: Controller,
    /// Its group coordinators (peers' admin clients ask which groups it coordinates).
    pub groups: Groups,
}

/// The per-node actor that runs operations forwarded by other nodes' clients. It joins the
/// process group `rivulet.forward.<node id>`, which ractor_cluster syncs to every peer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardService;

impl Actor for ForwardService {
    type Msg = ForwardServiceMsg;
    type State = Arc<ForwardServiceArgs>;
    type Arguments = ForwardServiceArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(group_of(args.node_id), vec![myself.get_cell()]);
        Ok(Arc::new(args))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (bytes, reply) = match msg {
            ForwardServiceMsg::Call(bytes, reply) => (bytes, reply),
            ForwardServiceMsg::Groups(bytes, reply) => {
                let query = match decode::<GroupQuery>(&bytes) {
                    Ok(q) => q,
                    Err(e) => {
                        warn!(error = %e, "dropping a malformed group query");
                        return Ok(());
                    }
                };
                let groups = state.groups.clone();
                // Describing waits for a coordinator actor: not in this actor.
                tokio::spawn(async move {
                    let answer = match query {
                        GroupQuery::List => GroupAnswer::List(groups.list().await),
                        GroupQuery::Describe(id) => match groups.describe(&id).await {
                            Ok(d) => GroupAnswer::Describe(d.into()),
                            Err(GroupError::NotCoordinator) => GroupAnswer::NotCoordinator,
                            Err(e) => GroupAnswer::Err(e.to_string()),
                        },
                    };
                    let _ = reply.send(encode(&answer));
                });
                return Ok(());
            }
        };
        let request = match decode_request(&bytes) {
            Ok(r) => r,
            Err(e) => {
                // No answer: the caller times out, as with any message the link drops.
                warn!(error = %e, "dropping a malformed forwarded request");
                return Ok(());
            }
        };
        let state = state.clone();
        // Appends wait for followers: the actor must not wait with them.
        tokio::spawn(async move {
            let result = match request {
                ForwardRequest::WriteMarkers {
                    marker,
                    partitions,
                    timeout_ms,
                } => Ok(ForwardReply::MarkersWritten(
                    crate::txn::write_markers_here(
                        &state.controller,
                        &state.groups,
                        marker,
                        partitions,
                        Duration::from_millis(u64::from(timeout_ms)),
                    )
                    .await,
                )),
                request => execute(state.node_id, &state.controller, request).await,
            };
            let answer = match result {
                Ok(r) => Answer::Ok(r),
                Err(e) => Answer::Err(e),
            };
            let _ = reply.send(encode(&answer));
        });
        Ok(())
    }
}

/// Routes operations to the partition's leader: this node's replica, or the leader node's
/// [`ForwardService`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Forwarder {
    node_id: NodeId,
    controller: Controller,
    /// How long one request may take, retries included.
    request_timeout: Duration,
}

impl Forwarder {
    /// A forwarder for the node `node_id`.
    pub fn new(node_id: NodeId, controller: Controller, request_timeout: Duration) -> Forwarder {
        Forwarder {
            node_id,
            controller,
            request_timeout,
        }
    }

    /// The controller facade this forwarder reads leaders from.
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// The leader of a partition now, or the error to retry on.
    fn leader_of(&self, topic: &str, partition: i32) -> ForwardResult<NodeId> {
        let unknown = || ForwardError::UnknownTopicOrPartition {
            topic: topic.to_string(),
            partition,
        };
        let meta = self.controller.topic(topic).ok_or_else(unknown)?;
        if partition < 0 || partition >= meta.partitions {
            return Err(unknown());
        }
        let info = self
            .controller
            .partitions(&meta)
            .into_iter()
            .find(|p| p.partition == partition)
            .ok_or_else(unknown)?;
        u64::try_from(info.leader).map_err(|_| ForwardError::LeaderNotAvailable {
            topic: topic.to_string(),
            partition,
        })
    }

    /// Runs `request` on the partition's leader, retrying retriable errors (after the
    /// metadata catches up, with backoff) until `request_timeout`.
    pub async fn request(&self, request: ForwardRequest) -> ForwardResult<ForwardReply> {
        if let ForwardRequest::Append { records, .. } = &request {
            if records.len() > APPEND_BYTES_MAX {
                return Err(ForwardError::TooLarge {
                    bytes: records.len() as u64,
                    max: APPEND_BYTES_MAX as u64,
                });
            }
        }
        let deadline = Instant::now() + self.request_timeout;
        let mut backoff = Duration::from_millis(20);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.attempt(&request).await;
            match result {
                Err(e) if e.is_retriable() && attempt < ATTEMPTS_MAX => {
                    if Instant::now() + backoff >= deadline {
                        return Err(ForwardError::Timeout(format!(
                            "{e} (after {attempt} attempts)"
                        )));
                    }
                    debug!(error = %e, attempt, "retrying a client request");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// Resolves once the metadata no longer names `leader` as the partition's leader (or no
    /// longer knows the partition); never while it does.
    async fn leadership_leaves(&self, topic: &str, partition: i32, leader: NodeId) {
        let mut tick = tokio::time::interval(LEADER_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !matches!(self.leader_of(topic, partition), Ok(l) if l == leader) {
                return;
            }
        }
    }

    async fn attempt(&self, request: &ForwardRequest) -> ForwardResult<ForwardReply> {
        let Some((topic, partition)) = request.topic_partition() else {
            return Err(ForwardError::Rejected(
                "a request addressed to a node goes through Forwarder::call_node".into(),
            ));
        };
        let leader = self.leader_of(topic, partition)?;
        if leader == self.node_id {
            return execute(self.node_id, &self.controller, request.clone()).await;
        }
        let (service, timeout, bytes) = Self::prepare_call(leader, request)?;
        let call = async {
            ractor::call_t!(
                service,
                ForwardServiceMsg::Call,
                timeout.as_millis() as u64,
                bytes
            )
        };
        // A leader that dies closes its link, which fails the call at once; one that only
        // goes silent (paused, cut off) keeps it open until the call times out. Racing the
        // call against the metadata lets the retry go to the next leader as soon as the
        // controller names one. (An append abandoned this way may still have been stored: the
        // idempotent producer's sequence numbers keep its retry from storing it twice.)
        let reply = tokio::select! {
            reply = call => reply,
            () = self.leadership_leaves(topic, partition, leader) => {
                debug!(leader, topic, partition, "leadership moved while a call was in flight");
                return Err(ForwardError::LeadershipMoved(format!(
                    "{topic}/{partition} is no longer led by node {leader}"
                )));
            }
        };
        Self::answer(leader, timeout, reply)
    }

    /// The peer's service, the call's timeout and the encoded request.
    fn prepare_call(
        node: NodeId,
        request: &ForwardRequest,
    ) -> ForwardResult<(ActorRef<ForwardServiceMsg>, Duration, Vec<u8>)> {
        let service = ractor::pg::get_members(&group_of(node))
            .into_iter()
            .find(|c| !c.get_id().is_local())
            .map(ActorRef::<ForwardServiceMsg>::from)
            .ok_or(ForwardError::Unreachable(node))?;
        let timeout = Duration::from_millis(request.deadline_ms()) + CALL_MARGIN;
        Ok((service, timeout, encode(request)))
    }

    fn answer<E>(
        node: NodeId,
        timeout: Duration,
        reply: Result<Vec<u8>, ractor::RactorErr<E>>,
    ) -> ForwardResult<ForwardReply> {
        match reply {
            Ok(reply) => match decode_answer(&reply) {
                Ok(Answer::Ok(r)) => Ok(r),
                Ok(Answer::Err(e)) => Err(e),
                Err(e) => Err(ForwardError::Storage(e)),
            },
            Err(ractor::RactorErr::Timeout) => Err(ForwardError::Timeout(format!(
                "node {node} did not answer within {timeout:?}"
            ))),
            Err(_) => Err(ForwardError::Unreachable(node)),
        }
    }

    /// Sends a request addressed to a node (not to a partition's leader) to that peer's
    /// [`ForwardService`], once: no retry (the caller decides), bounded by the request's own
    /// deadline plus a margin. A peer that dies meanwhile closes its link, which fails the
    /// call at once.
    pub async fn call_node(
        &self,
        node: NodeId,
        request: &ForwardRequest,
    ) -> ForwardResult<ForwardReply> {
        let (service, timeout, bytes) = Self::prepare_call(node, request)?;
        let reply = ractor::call_t!(
            service,
            ForwardServiceMsg::Call,
            timeout.as_millis() as u64,
            bytes
        );
        Self::answer(node, timeout, reply)
    }
}

/// A question about the groups a node coordinates.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
enum GroupQuery {
    List,
    Describe(String),
}

#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
enum GroupAnswer {
    List(Vec<GroupListing>),
    Describe(GroupDescriptionWire),
    /// The peer does not coordinate the group.
    NotCoordinator,
    Err(String),
}

/// [`GroupDescription`] on the cluster link: the member byte fields travel as `Vec<u8>`.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct GroupDescriptionWire {
    group_id: String,
    state: String,
    protocol_type: String,
    protocol: String,
    kind: GroupKind,
    generation: i32,
    members: Vec<MemberWire>,
}

#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct MemberWire {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    metadata: Vec<u8>,
    assignment: Vec<u8>,
    assigned: Vec<GroupTopicPartition>,
    member_epoch: i32,
    consumer: Option<ConsumerMemberDescription>,
}

impl From<GroupDescription> for GroupDescriptionWire {
    fn from(d: GroupDescription) -> Self {
        GroupDescriptionWire {
            group_id: d.group_id,
            state: d.state,
            protocol_type: d.protocol_type,
            protocol: d.protocol,
            kind: d.kind,
            generation: d.generation,
            members: d
                .members
                .into_iter()
                .map(|m| MemberWire {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    metadata: m.metadata.to_vec(),
                    assignment: m.assignment.to_vec(),
                    assigned: m.assigned,
                    member_epoch: m.member_epoch,
                    consumer: m.consumer,
                })
                .collect(),
        }
    }
}

impl From<GroupDescriptionWire> for GroupDescription {
    fn from(d: GroupDescriptionWire) -> Self {
        GroupDescription {
            group_id: d.group_id,
            state: d.state,
            protocol_type: d.protocol_type,
            protocol: d.protocol,
            kind: d.kind,
            generation: d.generation,
            members: d
                .members
                .into_iter()
                .map(|m| MemberDescription {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    metadata: Bytes::from(m.metadata),
                    assignment: Bytes::from(m.assignment),
                    assigned: m.assigned,
                    member_epoch: m.member_epoch,
                    consumer: m.consumer,
                })
                .collect(),
        }
    }
}

/// Every peer's [`ForwardService`], by the process groups ractor_cluster syncs.
fn peer_services(node_id: NodeId) -> Vec<(String, ActorRef<ForwardServiceMsg>)> {
    let own = group_of(node_id);
    ractor::pg::which_groups()
        .into_iter()
        .filter(|g| g.starts_with("rivulet.forward.") && *g != own)
        .filter_map(|g| {
            let service = ractor::pg::get_members(&g)
                .into_iter()
                .find(|c| !c.get_id().is_local())?;
            Some((g, ActorRef::from(service)))
        })
        .collect()
}

/// Asks every peer `query` at once; a peer that does not answer within `timeout` (or whose
/// answer does not decode) is left out with a warning.
async fn ask_peers(node_id: NodeId, query: GroupQuery, timeout: Duration) -> Vec<GroupAnswer> {
    let bytes = encode(&query);
    let mut asks = tokio::task::JoinSet::new();
    for (peer, service) in peer_services(node_id) {
        let bytes = bytes.clone();
        asks.spawn(async move {
            let reply = ractor::call_t!(
                service,
                ForwardServiceMsg::Groups,
                timeout.as_millis() as u64,
                bytes
            );
            match reply.map_err(|e| e.to_string()).and_then(|b| decode(&b)) {
                Ok(answer) => Some(answer),
                Err(e) => {
                    warn!(%peer, error = %e, "a peer did not answer a group query");
                    None
                }
            }
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = asks.join_next().await {
        if let Ok(Some(a)) = joined {
            answers.push(a);
        }
    }
    answers
}

/// The groups coordinated anywhere in the cluster (Kafka's admin client asks every broker
/// the same way): this node's, and each peer's. A peer that does not answer within `timeout`
/// is left out; its groups show up again once it (or their next coordinator) answers.
pub async fn list_groups_in_cluster(
    node_id: NodeId,
    groups: &Groups,
    timeout: Duration,
) -> Vec<GroupListing> {
    let mut all = groups.list().await;
    for answer in ask_peers(node_id, GroupQuery::List, timeout).await {
        if let GroupAnswer::List(l) = answer {
            all.extend(l);
        }
    }
    all.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    // A coordinator that just moved may be listed by both nodes for a moment.
    all.dedup_by(|a, b| a.group_id == b.group_id);
    all
}

/// A group, described by the node that coordinates it: this one or a peer. A group no node
/// coordinates is `Dead` with no members, as Kafka describes it.
pub async fn describe_group_in_cluster(
    node_id: NodeId,
    groups: &Groups,
    group_id: &str,
    timeout: Duration,
) -> Result<GroupDescription, GroupError> {
    match groups.describe(group_id).await {
        Err(GroupError::NotCoordinator) => {}
        // This node coordinates the group: its answer holds, dead or alive.
        other => return other,
    }
    let query = GroupQuery::Describe(group_id.to_owned());
    let mut error = None;
    for answer in ask_peers(node_id, query, timeout).await {
        match answer {
            GroupAnswer::Describe(d) => return Ok(d.into()),
            GroupAnswer::Err(e) => error = Some(e),
            GroupAnswer::NotCoordinator | GroupAnswer::List(_) => {}
        }
    }
    match error {
        // The coordinator is there but cannot answer yet (loading): say so rather than
        // describe the group as dead.
        Some(e) => Err(GroupError::CoordinatorNotAvailable(e)),
        None => Ok(GroupDescription {
            group_id: group_id.to_owned(),
            state: "Dead".into(),
            protocol_type: String::new(),
            protocol: String::new(),
            kind: GroupKind::Classic,
            generation: -1,
            members: Vec::new(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_round_trip_through_rkyv() {
        let req = ForwardRequest::Append {
            topic: "orders".into(),
            partition: 2,
            records: vec![1, 2, 3],
            acks: Acks::All,
            timeout_ms: 500,
        };
        assert_eq!(decode_request(&encode(&req)).unwrap(), req);
        let markers = ForwardRequest::WriteMarkers {
            marker: MarkerSpec {
                producer_id: 7,
                producer_epoch: 3,
                coordinator_epoch: 2,
                commit: true,
            },
            partitions: vec![("orders".into(), 0), ("__consumer_offsets".into(), 12)],
            timeout_ms: 5_000,
        };
        assert_eq!(decode_request(&encode(&markers)).unwrap(), markers);
        assert_eq!(markers.topic_partition(), None, "addressed to a node");
        assert_eq!(markers.deadline_ms(), 5_000);
        let answers = [
            Answer::Ok(ForwardReply::Offset(OffsetReply {
                offset: 5,
                timestamp: 7,
            })),
            Answer::Err(ForwardError::NotLeader {
                node: 3,
                topic: "orders".into(),
                partition: 2,
            }),
        ];
        for a in answers {
            let back = decode_answer(&encode(&a)).unwrap();
            assert_eq!(format!("{back:?}"), format!("{a:?}"));
        }
        assert!(decode_request(&[1, 2, 3]).is_err());
    }

    #[test]
    fn a_group_description_survives_the_link() {
        let tp = |p| GroupTopicPartition {
            topic: "orders".into(),
            partition: p,
        };
        let described = GroupDescription {
            group_id: "billing".into(),
            state: "Stable".into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            kind: GroupKind::Consumer,
            generation: 4,
            members: vec![MemberDescription {
                member_id: "m-1".into(),
                group_instance_id: Some("static-1".into()),
                client_id: "app".into(),
                client_host: "/127.0.0.1".into(),
                metadata: Bytes::from_static(b"meta"),
                assignment: Bytes::from_static(b"assign"),
                assigned: vec![tp(0), tp(1)],
                member_epoch: 4,
                consumer: Some(ConsumerMemberDescription {
                    subscribed_topic_names: vec!["orders".into()],
                    subscribed_topic_regex: None,
                    rack_id: Some("r1".into()),
                    target: vec![tp(0), tp(1), tp(2)],
                }),
            }],
        };
        let answer = GroupAnswer::Describe(described.clone().into());
        let Ok(GroupAnswer::Describe(back)) = decode::<GroupAnswer>(&encode(&answer)) else {
            panic!("the description did not come back as one");
        };
        assert_eq!(GroupDescription::from(back), described);
        assert!(decode::<GroupQuery>(&[1, 2, 3]).is_err());
    }
}
