//! Kafka transactions: the transaction coordinator.
//!
//! A transactional producer talks to the coordinator of its `transactional.id`: the leader of
//! the `__transaction_state` partition the id hashes to (the group coordinators' placement,
//! see [`crate::group`]). The coordinator keeps one [`TxnMetadata`] per id, and every change
//! to it is appended to that partition before anyone is told about it.
//!
//! ```text
//!  client ── InitProducerId / AddPartitionsToTxn / EndTxn ──▶ shell (actor, to come)
//!                                                               │ Input
//!                                                               ▼
//!                                                     TxnCoordinatorCore (sans-IO, this module)
//!                                                               │ Output
//!            ┌──────────────────────────┬───────────────────────┼──────────────────────┐
//!            ▼                          ▼                       ▼                      ▼
//!   Write(TxnMetadata) to      WriteMarkers(commit|abort)  AllocateProducerId        Reply
//!   __transaction_state,       to every partition of the   (controller)
//!   then Input::WriteDone      transaction, then
//!                              Input::MarkersWritten
//! ```
//!
//! States of one transactional id (Kafka's, KIP-98):
//!
//! ```text
//!   Empty ──AddPartitions──▶ Ongoing ──EndTxn(commit)──▶ PrepareCommit ──markers──▶ CompleteCommit
//!     ▲                        │  └──EndTxn(abort), timeout,──▶ PrepareAbort ──markers──▶ CompleteAbort
//!     │                        │     InitProducerId (fence)                                   │
//!     └──────── InitProducerId (epoch bump) from Empty / Complete* ◀────────────────────────────┘
//!   Empty / Complete* idle for transactional_id_expiration ──▶ Dead (tombstone)
//! ```
//!
//! The decision (commit or abort) is made once, when `Prepare*` is durable; markers and the
//! `Complete*` record follow and are retried until they land, also by a new coordinator after
//! failover (it replays the partition and finishes every `Prepare*` it finds).

pub mod core;
#[cfg(test)]
mod sim;

use std::time::Duration;

pub use self::core::{
    AddPartitionsRequest, EndTxnRequest, InitProducerIdRequest, Input, Output, Reply, RequestId,
    TxnConfig, TxnCoordinatorCore, TxnError, TxnMetadata, TxnPartition, TxnState, WriteId,
};

/// Name of the internal topic holding transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Largest producer epoch a transactional producer may use before its id is replaced (Kafka:
/// `Short.MaxValue - 1`, so that a fencing bump of an exhausted epoch still fits).
pub const PRODUCER_EPOCH_MAX: i16 = i16::MAX - 1;

/// Default transaction timeout bound (Kafka's `transaction.max.timeout.ms`).
pub const TRANSACTION_MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);
