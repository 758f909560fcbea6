//! `rivulet-cluster`: cluster metadata and who serves what.
//!
//! Today this is the single-node controller: it owns the topic catalogue (persisted in the
//! storage crate's metadata store), validates topic configurations, and tells the local
//! [`rivulet_actors::ReplicaManager`] which replicas to run. The Raft controller (openraft),
//! membership and placement across nodes replace its internals, not its callers: the broker asks
//! [`Controller`] for topics and changes, never the store directly.
//!
//! ```text
//!  broker ──create/delete/describe──▶ Controller ──persist──▶ storage::MetadataStore
//!                                         │
//!                                         └──Ensure/Remove──▶ actors::ReplicaManager
//! ```

pub mod controller;
pub mod dynamic_config;
pub mod forward;
pub mod membership;
pub mod raft;
pub mod topic_config;

pub use controller::{
    BrokerInfo, Controller, ControllerConfig, ControllerError, NewTopic, PartitionInfo,
    RaftRpcHandler,
};
pub use membership::{Membership, MembershipConfig, NoPeers};
pub use raft::{MetaRaft, MetaRaftConfig, NodeRecord};
pub use topic_config::{ConfigEntry, ConfigSource, TopicDefaults};
