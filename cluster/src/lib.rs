//! `rivulet-cluster`: cluster metadata and who serves what.
//!
//! ```text
//!  broker ──topics, configs, leaders──▶ Controller (facade: reads the local image,
//!                                         │          writes by proposal)
//!                                         ├──▶ MetaRaft (openraft; every node applies the log)
//!                                         └──▶ reconciler ──Ensure/Remove──▶ actors::ReplicaManager
//!  Membership: one ractor_cluster session per node pair, heartbeats, Deliver / Call transports
//!  policy: internal topics, min.insync.replicas (asked by the broker, told to the actors)
//! ```
//!
//! The broker asks [`Controller`] for topics and changes, never the store directly. Lower
//! layers are told what they need (replica roles, configs, the minimum ISR of a write); they
//! never call up into this crate.

pub mod controller;
pub mod dynamic_config;
pub mod forward;
pub mod membership;
pub mod policy;
pub mod raft;
pub mod topic_config;
pub mod txn;

pub use controller::{
    BrokerInfo, Controller, ControllerConfig, ControllerError, NewTopic, PartitionInfo,
    RaftRpcHandler,
};
pub use membership::{Membership, MembershipConfig, NoPeers};
pub use raft::{MetaRaft, MetaRaftConfig, NodeRecord};
pub use topic_config::{ConfigEntry, ConfigSource, TopicDefaults};
