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

pub mod coordinator;
pub mod core;
pub mod manager;
pub mod records;
#[cfg(test)]
mod sim;

use std::time::Duration;

pub use self::coordinator::{MarkerRequest, TxnEnvironment};
pub use self::core::{
    AddPartitionsRequest, EndTxnRequest, InitProducerIdRequest, Input, Output, Reply, RequestId,
    TxnConfig, TxnCoordinatorCore, TxnError, TxnMetadata, TxnPartition, TxnState, WriteId,
};
pub use self::manager::{TxnListing, Txns};

/// Name of the internal topic holding transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Largest producer epoch a transactional producer may use before its id is replaced (Kafka:
/// `Short.MaxValue - 1`, so that a fencing bump of an exhausted epoch still fits).
pub const PRODUCER_EPOCH_MAX: i16 = i16::MAX - 1;

/// Default transaction timeout bound (Kafka's `transaction.max.timeout.ms`).
pub const TRANSACTION_MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Transaction coordinator settings (the `[transactions]` table of the broker's
/// configuration).
#[derive(Debug, Clone)]
pub struct TxnCoordinatorConfig {
    /// The state machine's own settings (timeouts, expiry).
    pub core: TxnConfig,
    /// Partitions of `__transaction_state` (fixed once the topic exists). Kafka uses 50; we
    /// use 16 like `__consumer_offsets` here: every partition is a replica actor and a
    /// coordinator on some node, and a small cluster gains nothing from more.
    pub state_partitions: i32,
    /// Replication factor of `__transaction_state` (capped by the live nodes when created).
    pub state_replication_factor: i16,
    /// How long a state write may take before the request fails (retriably).
    pub write_timeout: Duration,
}

impl Default for TxnCoordinatorConfig {
    fn default() -> Self {
        Self {
            core: TxnConfig::default(),
            state_partitions: 16,
            state_replication_factor: 3,
            write_timeout: Duration::from_secs(5),
        }
    }
}
