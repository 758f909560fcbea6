//! The native client: produce, consume and administer from the program that embeds a node,
//! without the Kafka wire protocol in between.
//!
//! ```text
//!  NodeHandle ── producer(cfg) ─▶ Producer ── batches per partition (linger, size) ──┐
//!             ── consumer(cfg) ─▶ Consumer ── reads from positions, long polls ──────┤
//!             ── admin() ───────▶ Admin ── Controller (topics, configs), Groups      │
//!                                                                                    ▼
//!                     cluster::forward::Forwarder: the leader's replica on this node,
//!                     or the leader node's ForwardService over the cluster link (rkyv);
//!                     not-leader and unreachable are retried after a metadata refresh
//! ```
//!
//! Records are encoded and decoded by the shared codec in `rivulet_storage::batch`, so
//! what the native producer writes is what any Kafka client reads, and the other way round.
//! Keys are partitioned as librdkafka's default partitioner does (`consistent_random`:
//! CRC-32 of the key), so a keyed record lands in the partition a librdkafka-based
//! producer would choose.
//!
//! See `docs/client.md` (the [`guide`](crate::guide) module) for examples.

mod admin;
mod consumer;
mod producer;

pub use admin::{Admin, TopicDescription};
pub use consumer::{AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord};
pub use producer::{partition_for_key, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
pub use rivulet_cluster::forward::{Acks, ForwardError};
pub use rivulet_storage::batch::Compression;

use std::time::Duration;

use rivulet_broker::node::NodeHandle;
use rivulet_cluster::forward::Forwarder;
use rivulet_cluster::ControllerError;

/// Errors of the native client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A partition operation failed (typed: unknown topic or partition, not enough
    /// replicas, timeout, offset out of range, refused records, ...). Not-leader and
    /// unreachable-leader errors were retried before this was returned.
    #[error(transparent)]
    Partition(#[from] ForwardError),
    /// A metadata operation failed (topic exists, invalid config, no controller, ...).
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// A metadata operation failed (a copy of a controller error shared by several
    /// records of one batch).
    #[error("metadata operation failed: {0}")]
    Metadata(String),
    /// A group operation failed.
    #[error("group operation failed: {0}")]
    Group(String),
    /// The call was invalid (for example a partition the consumer is not assigned).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The producer was closed.
    #[error("the producer is closed")]
    Closed,
}

/// Result of native-client calls.
pub type ClientResult<T> = std::result::Result<T, ClientError>;

/// The native client on a running node: `use rivulet::NodeClient;` then
/// `node.producer(...)`, `node.consumer(...)`, `node.admin()`.
pub trait NodeClient {
    /// A producer that sends through this node. Call it inside the tokio runtime: it spawns
    /// the task that sends batches.
    fn producer(&self, config: ProducerConfig) -> Producer;
    /// A consumer that reads through this node.
    fn consumer(&self, config: ConsumerConfig) -> Consumer;
    /// Topic, config, group and cluster administration through this node.
    fn admin(&self) -> Admin;
}

fn forwarder(node: &NodeHandle, request_timeout: Duration) -> Forwarder {
    Forwarder::new(node.node_id(), node.controller().clone(), request_timeout)
}

impl NodeClient for NodeHandle {
    fn producer(&self, config: ProducerConfig) -> Producer {
        Producer::new(
            forwarder(self, Duration::from_millis(config.request_timeout_ms)),
            config,
        )
    }

    fn consumer(&self, config: ConsumerConfig) -> Consumer {
        Consumer::new(
            forwarder(self, Duration::from_millis(config.request_timeout_ms)),
            config,
        )
    }

    fn admin(&self) -> Admin {
        Admin::new(self)
    }
}
