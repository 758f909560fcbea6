//! Rivulet as a library: run a node of a Kafka-compatible distributed log inside your own Rust
//! program.
//!
//! An embedded node is a full cluster member, exactly what `rivulet serve` runs: it recovers its
//! storage, hosts partition replicas (leader or follower), takes part in the metadata
//! controller (as a voter if it is one of the seeds, otherwise as a learner), coordinates
//! consumer groups, and, unless you turn it off, serves Kafka clients on its own listener.
//!
//! ```text
//!   your program ── Node::builder(Config) ── start() ──▶ NodeHandle
//!                                                          │ node_id(), kafka_addr()
//!                                                          │ controller(), replicas(), groups()
//!                                                          └ shutdown().await
//! ```
//!
//! Start a single-node cluster on a free port, create a topic, and stop:
//!
//! ```no_run
//! use rivulet::{Config, NewTopic, Node};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = Config {
//!         data_dir: "./my-node".into(),
//!         listen: "127.0.0.1:0".into(), // the OS picks the port; it is advertised as bound
//!         ..Config::default()
//!     };
//!     let node = Node::builder(config).start().await?;
//!     println!("node {} serves Kafka on {:?}", node.node_id(), node.kafka_addr());
//!     node.controller()
//!         .create_topic(NewTopic {
//!             name: "orders".into(),
//!             partitions: Some(3),
//!             ..NewTopic::default()
//!         })
//!         .await?;
//!     node.shutdown().await?;
//!     Ok(())
//! }
//! ```
//!
//! To join a cluster, set [`ClusterSettings`]: `listen` (this node's cluster address) and
//! `seeds` (`ID@HOST:PORT` of the initial members, the same list every `rivulet serve` of the
//! cluster has). `examples/src/embedded_node.rs` in the repository joins a cluster of
//! `rivulet serve` processes this way and stops on Ctrl-C.
//!
//! What the library leaves to your program:
//! - **Logging**: the node emits [`tracing`](https://docs.rs/tracing) events; install a
//!   subscriber to see them (the `rivulet` binary uses `tracing_subscriber::fmt` with
//!   `RUST_LOG`).
//! - **The global allocator**: a node that serves untrusted Kafka clients should install
//!   [`GuardedAlloc`] (`#[global_allocator] static A: rivulet::GuardedAlloc =
//!   rivulet::GuardedAlloc;`). The Kafka decoder reserves memory from lengths on the wire, and
//!   with the system allocator an absurd length aborts the process.
//! - **The runtime**: [`NodeBuilder::start`] needs a multi-threaded tokio runtime.
//! - **One node per process**: the actor registry is global to a process.
//!
//! Configuration is the typed [`Config`] that `rivulet serve` builds from its TOML file,
//! environment and flags; build it in code, or parse it yourself with serde (unknown keys are
//! errors). The node validates it at start.
//!
//! The native client ([`client`]: [`Producer`], [`Consumer`], [`Admin`] on the handle through
//! [`NodeClient`]) produces, consumes and administers without the Kafka wire protocol; the
//! [`guide`] walks through it. Coming to this crate (see ARCHITECTURE.md, "Crate layout"):
//! the API for actors hosted by partitions.

pub mod client;

#[doc = include_str!("../../docs/client.md")]
pub mod guide {}

pub use client::{
    Acks, Admin, AutoOffsetReset, ClientError, ClientResult, Compression, Consumer, ConsumerConfig,
    ConsumerRecord, NodeClient, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};

pub use rivulet_actors::group::Groups;
pub use rivulet_actors::{ReplicaHandle, ReplicaRegistry, TopicPartition};
pub use rivulet_broker::alloc::GuardedAlloc;
pub use rivulet_broker::config::{
    AdminSettings, ClusterSettings, Config, GroupSettings, StorageSettings,
};
pub use rivulet_broker::node::{
    AdminListener, KafkaListener, Node, NodeBuilder, NodeError, NodeHandle, Result,
};
pub use rivulet_cluster::{
    BrokerInfo, Controller, ControllerError, NewTopic, PartitionInfo, TopicDefaults,
};
pub use rivulet_storage::TopicMeta;
