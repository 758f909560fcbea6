//! `rivulet-broker`: the only crate that knows the Kafka wire format.
//!
//! ```text
//!   clients ──TCP──▶ server::listener ──▶ server::connection (one task per client)
//!                                              │ decode (kafka-protocol)
//!                                              ▼
//!                                        server::handlers ──▶ actors::ReplicaManager / PartitionReplica
//!                                              │                          │
//!                                              ▼                          ▼
//!                                        encode response            storage::PartitionLog (fjall)
//! ```
//!
//! - [`config`]: figment layering (defaults, `rivulet.toml`, `RIVULET_*`, flags).
//! - [`node`]: the embeddable node: `NodeBuilder` starts storage, the actor tree, membership,
//!   the controller, the group coordinators and (optionally) the Kafka listener; `NodeHandle`
//!   shuts them down. The `rivulet` facade crate re-exports it.
//! - [`serve`]: `rivulet serve`, a thin wrapper: configuration, tracing, a [`node`], signals.
//! - [`server`]: the Kafka protocol listener and request handlers.
//! - [`consumer_protocol`]: the consumer protocol's assignment bytes (DescribeGroups, the CLI).
//! - [`metrics`]: what the Kafka server records (requests, bytes per topic, connections).
//! - [`admin_http`]: the admin HTTP endpoint (/health, /ready, /metrics, /v1/...).
//! - [`cli`]: the user-facing command line (`topic`, `produce`, `consume`, `bench`), which talks
//!   to a broker through librdkafka exactly as any other client would.

pub mod admin_http;
pub mod alloc;
pub mod cli;
pub mod config;
pub mod consumer_protocol;
pub mod metrics;
pub mod node;
pub mod serve;
pub mod server;

/// The `rivulet` binary installs the guarded allocator (see [`alloc`]); so do this crate's unit
/// tests. Integration tests choose their own (`tests/decode_fuzz.rs` wraps it to count).
#[cfg(test)]
#[global_allocator]
static GLOBAL: alloc::GuardedAlloc = alloc::GuardedAlloc;
