//! The Kafka protocol server.
//!
//! ```text
//!  listener (accept, connection limit)
//!     └─ connection task per client: read frame ─▶ decode ─▶ handlers::handle ─▶ encode ─▶ write
//!                                    (requests on one connection are answered in order,
//!                                     one at a time, as Kafka does)
//! ```
//! Fetch responses keep their record bytes in the segment files: `fetch_encode` writes the
//! framing around file regions and `outgoing` sends those with `sendfile(2)`.
//! Memory and connections are bounded by `limits` (node-wide budget for request and response
//! bytes, idle / read / write timeouts, connection counts per node and per address).
//! Bad input never takes the node down: an oversized, truncated or undecodable frame, an
//! unknown API key or an unsupported version closes that one connection (ApiVersions answers
//! UNSUPPORTED_VERSION instead, as clients expect); a bad record batch gets an error code.

pub mod connection;
pub mod errors;
pub mod fetch_encode;
pub mod handlers;
pub mod legacy;
pub mod limits;
pub mod outgoing;
pub mod versions;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rivulet_actors::group::Groups;
use rivulet_cluster::Controller;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

/// Settings and shared services every connection uses.
#[derive(Debug)]
pub struct BrokerState {
    /// Topic catalogue and replicas.
    pub controller: Controller,
    /// Host advertised in Metadata.
    pub advertised_host: String,
    /// Port advertised in Metadata.
    pub advertised_port: i32,
    /// Cluster id reported to clients.
    pub cluster_id: String,
    /// Largest request frame.
    pub request_bytes_max: usize,
    /// Produce bytes in flight across the node (backpressure).
    pub produce_inflight: Arc<Semaphore>,
    /// Permits in `produce_inflight` (one permit per KiB).
    pub produce_inflight_kib_max: u32,
    /// Upper bound on a fetch's wait.
    pub fetch_wait_max: Duration,
    /// This node's group coordinators (consumer groups and committed offsets).
    pub groups: Groups,
    /// This node's transaction coordinators; `None` unless `[transactions] enabled`.
    pub txns: Option<rivulet_actors::txn::Txns>,
    /// The data directory (DescribeLogDirs reports it and its filesystem's space).
    pub data_dir: std::path::PathBuf,
    /// Memory budget and connection timeouts.
    pub limits: limits::ServerLimits,
    /// Figures the admin endpoint exports (requests, bytes per topic, connections).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Config keys set by the operator rather than built in (`Config::static_keys`):
    /// DescribeConfigs' STATIC_BROKER_CONFIG versus DEFAULT_CONFIG.
    pub static_keys: std::collections::BTreeSet<String>,
}

impl BrokerState {
    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.controller.node_id()
    }
}

/// How long shutdown waits for requests in progress before it aborts their connections.
const CONNECTIONS_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Accepts connections until `shutdown` turns true, then waits (at most 5 s,
/// `CONNECTIONS_CLOSE_WAIT`) until every connection has closed. Connections close at their
/// next request boundary once `shutdown` turns true. Waiting for them matters: a connection
/// holds the broker state (controller, replica logs), so a node whose connections outlive the
/// listener would answer requests while its replicas stop, and would keep its store open after
/// an embedded node's shutdown returned.
pub async fn serve(
    listener: TcpListener,
    state: Arc<BrokerState>,
    connections: Arc<limits::ConnectionLimits>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut open = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            // Reap closed connections so the set stays as small as the open connections (a
            // panicked connection task ends only itself: its error is dropped here).
            Some(_) = open.join_next(), if !open.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                // Refused by closing at once: Kafka has no error response before a request.
                let slot = match connections.admit(peer.ip()) {
                    Ok(slot) => slot,
                    Err(refused @ limits::Refused::NodeFull(_)) => {
                        state.metrics.connections.refused_node_limit.fetch_add(1, Ordering::Relaxed);
                        // An operator may need to raise the limit or find who holds them all.
                        warn!(%peer, %refused, "refusing connection");
                        drop(stream);
                        continue;
                    }
                    Err(refused) => {
                        state.metrics.connections.refused_ip_limit.fetch_add(1, Ordering::Relaxed);
                        // One address over its share: that client's problem, not the node's.
                        debug!(%peer, %refused, "refusing connection");
                        drop(stream);
                        continue;
                    }
                };
                let state = state.clone();
                let shutdown = shutdown.clone();
                let gauge = state.metrics.connection_opened();
                open.spawn(async move {
                    connection::run(stream, peer, state, shutdown).await;
                    drop(slot);
                    drop(gauge);
                });
            }
        }
    }
    drop(listener);
    info!(
        connections = open.len(),
        "listener stopped accepting connections"
    );
    let drained = tokio::time::timeout(CONNECTIONS_CLOSE_WAIT, async {
        while open.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            connections = open.len(),
            "connections still busy {CONNECTIONS_CLOSE_WAIT:?} after shutdown began; closing them"
        );
        open.shutdown().await;
    }
}
