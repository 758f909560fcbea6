//! What leader and follower replicas say to each other, and the network they say it over.
//!
//! The leader pushes; the follower answers every request with where its log stands:
//!
//! ```text
//!  leader                                              follower
//!    │── Append{Probe} ───────────────────────────────────▶│
//!    │◀─────────────── Ok{log_end, latest_epoch, log_start} │
//!    │   (leader looks the follower's latest epoch up in its own epoch cache:
//!    │    same epoch and end ≥ follower's end → stream from there;
//!    │    otherwise → Truncate to the divergence point, probe again)
//!    │── Append{Truncate{to,epoch}} / Append{Reset{start}} ─────▶│
//!    │── Append{Records{base_offset, batches}} ───────────▶│  base must equal follower's end
//!    │◀────────────────────────────────── Ok{log_end, ..}   │  (else Mismatch: probe again)
//! ```
//! Every request carries the leader's epoch: a follower refuses a request from an epoch older
//! than the one it knows (`StaleEpoch`), which is how a deposed leader is cut off. Messages
//! are rkyv-encoded by the network (see `rivulet-cluster`'s membership) and stay far below the
//! cluster link's frame limit (`Records` carries at most [`REPLICATION_CHUNK_BYTES`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A node's stable id (the Kafka broker id).
pub type NodeId = u64;

/// Most bytes of record batches in one `Records` request (a batch larger than this still
/// travels whole, alone).
pub const REPLICATION_CHUNK_BYTES: usize = 1 << 20;

/// One replication message between two replicas of a partition.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ReplicationMessage {
    /// Leader to follower.
    Append(AppendRequest),
    /// Follower to leader.
    AppendResponse(AppendResponse),
}

impl ReplicationMessage {
    /// The partition the message is about.
    pub fn topic_partition(&self) -> (&str, i32) {
        match self {
            ReplicationMessage::Append(r) => (&r.topic, r.partition),
            ReplicationMessage::AppendResponse(r) => (&r.topic, r.partition),
        }
    }
}

/// Leader to follower.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AppendRequest {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The sending leader.
    pub leader: NodeId,
    /// The leader's epoch.
    pub leader_epoch: i32,
    /// Matches the response to the request.
    pub seq: u64,
    /// The leader's high watermark.
    pub high_watermark: i64,
    /// The leader's log start offset: a follower drops its whole segments below it, as the
    /// leader did (retention, or records its owner declared superseded).
    pub log_start_offset: i64,
    /// What to do.
    pub op: AppendOp,
}

/// The operation of an [`AppendRequest`].
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum AppendOp {
    /// Report the log's state.
    Probe,
    /// Remove a divergent tail, then report: the follower truncates to the smaller of `to`
    /// and the end of `epoch` in its own log (the leader's largest epoch at or below the
    /// follower's latest), so records of epochs the leader never had are removed too.
    Truncate {
        /// First offset to remove at the latest.
        to: i64,
        /// The leader's epoch whose end bounds the follower's log.
        epoch: i32,
    },
    /// Empty the log and restart it at `start` (the leader no longer has what the follower
    /// lacks), then report.
    Reset {
        /// New log start and end offset.
        start: i64,
    },
    /// Append these batches, which start at the follower's log end offset. Empty batches
    /// only carry the high watermark.
    Records {
        /// Base offset of the first batch.
        base_offset: i64,
        /// Whole record batches as the leader stored them.
        batches: Vec<u8>,
    },
}

/// Follower to leader.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AppendResponse {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The answering follower.
    pub follower: NodeId,
    /// The epoch of the request being answered.
    pub leader_epoch: i32,
    /// The request's sequence number.
    pub seq: u64,
    /// The follower's log start offset after handling the request, on every answer (-1 when
    /// it does not run the replica): the leader's DeleteRecords waits for it (low watermark).
    pub log_start_offset: i64,
    /// The outcome.
    pub result: AppendResult,
}

/// Where the follower's log stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FollowerLogState {
    /// Log end offset.
    pub log_end_offset: i64,
    /// Log start offset.
    pub log_start_offset: i64,
    /// Epoch of the last batch, `None` for an empty log.
    pub latest_epoch: Option<i32>,
}

/// Outcome of an [`AppendRequest`].
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum AppendResult {
    /// Done; the log now stands here.
    Ok(FollowerLogState),
    /// `Records` did not start at the follower's log end: the leader must reconcile again.
    Mismatch(FollowerLogState),
    /// The follower knows a newer leader epoch: the sender is no longer the leader.
    StaleEpoch {
        /// The epoch the follower knows.
        current_epoch: i32,
    },
    /// The follower does not run this replica (yet: its metadata may lag).
    NotReplica,
    /// The follower could not do it (storage error); the leader retries later.
    Failed(String),
}

/// An ISR change proposed by a partition leader to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The proposing leader.
    pub leader: NodeId,
    /// Its leader epoch.
    pub leader_epoch: i32,
    /// The partition epoch the change is based on.
    pub partition_epoch: i32,
    /// The new in-sync replica set (contains the leader).
    pub isr: Vec<NodeId>,
}

/// A boxed future, as returned by [`ReplicaNetwork`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The cluster, as a partition replica sees it: peers to send replication messages to and a
/// controller to ask for ISR changes. Implemented by `rivulet-cluster`.
pub trait ReplicaNetwork: Send + Sync + fmt::Debug + 'static {
    /// This node's id.
    fn local_node(&self) -> NodeId;
    /// Sends a message to the replica of the same partition on `to`. Fire and forget: false
    /// when there is no connection to `to` right now (the sender retries on its own timers).
    fn send(&self, to: NodeId, msg: ReplicationMessage) -> bool;
    /// Asks the controller to commit an ISR change; resolves to the new partition epoch.
    fn change_isr(&self, change: IsrChange) -> BoxFuture<Result<i32, String>>;
}

/// Encodes a message for the wire.
pub fn encode(msg: &ReplicationMessage) -> Result<Vec<u8>, String> {
    rkyv::to_bytes::<rkyv::rancor::Error>(msg)
        .map(|bytes| bytes.into_vec())
        .map_err(|e| format!("could not encode a replication message: {e}"))
}

/// Decodes (and validates) a message from the wire.
pub fn decode(bytes: &[u8]) -> Result<ReplicationMessage, String> {
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<ReplicationMessage, rkyv::rancor::Error>(&aligned)
        .map_err(|e| format!("malformed replication message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_rkyv() {
        let msgs = vec![
            ReplicationMessage::Append(AppendRequest {
                topic: "orders".into(),
                partition: 3,
                leader: 2,
                leader_epoch: 7,
                seq: 42,
                high_watermark: 100,
                log_start_offset: 10,
                op: AppendOp::Records {
                    base_offset: 100,
                    batches: vec![1, 2, 3, 4, 5],
                },
            }),
            ReplicationMessage::AppendResponse(AppendResponse {
                topic: "orders".into(),
                partition: 3,
                follower: 1,
                leader_epoch: 7,
                seq: 42,
                log_start_offset: 0,
                result: AppendResult::Mismatch(FollowerLogState {
                    log_end_offset: 90,
                    log_start_offset: 0,
                    latest_epoch: Some(6),
                }),
            }),
        ];
        for m in msgs {
            let bytes = encode(&m).unwrap();
            assert_eq!(decode(&bytes).unwrap(), m);
            assert!(decode(&bytes[..bytes.len() / 2]).is_err());
        }
    }
}
