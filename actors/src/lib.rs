//! `rivulet-actors`: the supervised actors that own Rivulet's partitions.
//!
//! ```text
//! NodeSupervisor
//!  `- ReplicaManager                      (opens logs, spawns, restarts, registry writer)
//!      |- PartitionReplica{topic,0}       (sole writer of its PartitionLog)
//!      |- PartitionReplica{topic,1}
//!      `- ...
//!
//! broker ──Append──▶ PartitionReplica ──spawn_blocking──▶ storage::PartitionLog::append_as_leader
//!        ◀──reply──                   ──watch(high watermark)──▶ long-polling fetches
//! broker ──read (clone of the log, off the actor)──▶ storage::PartitionLog::read
//! ```
//!
//! Every writer (Kafka produce, group coordinators, the native client) appends through
//! [`write::append`]: one operation with an ack level, a timeout and typed errors, which also
//! owns the `acks=all` wait for the high watermark.
//!
//! The [`ReplicaRegistry`] is the broker's fast path to a partition: a shared map from
//! topic-partition to a [`ReplicaHandle`] (actor ref, a read handle on the log, and a watch on
//! the high watermark). Only the [`manager::ReplicaManager`] writes it.
//!
//! This crate knows nothing of the Kafka wire protocol and never decides *which* replicas should
//! exist: the controller (`rivulet-cluster`) tells the manager.

pub mod error;
pub mod group;
pub mod hosting;
pub mod manager;
pub mod node;
pub mod registry;
pub mod replica;
pub mod replication;
pub mod txn;
pub mod write;

pub use error::{ActorsError, Result};
pub use manager::{ReplicaManager, ReplicaManagerArgs, ReplicaManagerMsg, ReplicaSpec};
pub use node::{NodeSupervisor, NodeSupervisorArgs, NodeSupervisorMsg};
pub use registry::{ReplicaHandle, ReplicaRegistry, TopicPartition};
pub use replica::{
    AppendError, PartitionReplica, PartitionReplicaArgs, PartitionReplicaMsg, ReplicaRole,
    ReplicaStatus,
};
pub use replication::{IsrChange, NodeId, ReplicaNetwork, ReplicationMessage};
pub use write::{Acks, WriteError, WriteOptions, Written};
