//! The node's side of the transaction coordinators ([`rivulet_actors::txn`]): producer ids
//! from the controller, the node's lease, and the commit/abort markers a coordinator writes to
//! every partition of a transaction when it ends.
//!
//! ```text
//!  TxnCoordinator ── WriteMarkers(txn, partitions) ──▶ NodeTxnEnvironment::write_markers
//!     │ group the partitions by their leader (the local metadata image)
//!     ├─ led here ─────────▶ write_markers_here ─▶ actors::write::write_marker (acks=all,
//!     │                        bounded timeout) per partition, at once
//!     └─ led by node N ────▶ ForwardRequest::WriteMarkers over the cluster link ─▶ N's
//!                              ForwardService ─▶ write_markers_here on N
//!  ◀── the partitions that hold the marker now (or no longer exist); the coordinator tries
//!      the others again after a pause, and completes the transaction once all are done
//! ```
//!
//! A marker that reaches a partition of `__consumer_offsets` also ends the transaction's
//! pending offsets in the group coordinators of that partition (TxnOffsetCommit): the node
//! that writes it leads the partition, so it hosts those coordinators. A coordinator that
//! loads the partition later replays the marker from the log instead.
//!
//! The coordinators know nothing of this layer: they are handed a [`TxnEnvironment`].

use std::collections::BTreeMap;
use std::time::Duration;

use rivulet_actors::group::{Groups, OFFSETS_TOPIC};
use rivulet_actors::txn::coordinator::BoxFuture;
use rivulet_actors::txn::{MarkerRequest, TxnEnvironment, TxnPartition};
use rivulet_actors::write::{self, Acks, WriteOptions};
use rivulet_actors::TopicPartition;
use rivulet_storage::batch::control::TxnMarker;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::forward::{ForwardReply, ForwardRequest, Forwarder, MarkerSpec};
use crate::Controller;

/// The node's [`TxnEnvironment`].
#[derive(Debug)]
pub struct NodeTxnEnvironment {
    controller: Controller,
    groups: Groups,
    forwarder: Forwarder,
    /// How long one marker append may wait for the in-sync replicas.
    marker_timeout: Duration,
}

impl NodeTxnEnvironment {
    /// The environment of node `controller.node_id()`. `marker_timeout` bounds each marker
    /// append (and, plus a margin, each call to a peer).
    pub fn new(controller: Controller, groups: Groups, marker_timeout: Duration) -> Self {
        let node = u64::try_from(controller.node_id()).unwrap_or_default();
        let forwarder = Forwarder::new(node, controller.clone(), marker_timeout);
        NodeTxnEnvironment {
            controller,
            groups,
            forwarder,
            marker_timeout,
        }
    }
}

impl TxnEnvironment for NodeTxnEnvironment {
    fn allocate_producer_id(&self) -> BoxFuture<Result<i64, String>> {
        let controller = self.controller.clone();
        Box::pin(async move {
            controller
                .allocate_producer_id()
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn write_markers(&self, request: MarkerRequest) -> BoxFuture<Vec<TxnPartition>> {
        let controller = self.controller.clone();
        let groups = self.groups.clone();
        let forwarder = self.forwarder.clone();
        let timeout = self.marker_timeout;
        Box::pin(async move { fan_out(&controller, &groups, &forwarder, timeout, request).await })
    }

    fn lease(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        Some(self.controller.lease_watch())
    }

    fn min_insync_replicas(&self, topic: &str) -> i64 {
        self.controller
            .topic(topic)
            .map_or(1, |t| self.controller.min_insync_replicas(&t))
    }
}

/// Where a partition's marker goes now.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// The partition no longer exists: nothing to write, it counts as written.
    Gone,
    /// No leader now: try again later.
    NoLeader,
    /// The leader's node.
    Node(i32),
}

fn target(controller: &Controller, p: &TxnPartition) -> Target {
    let Some(meta) = controller.topic(&p.topic) else {
        return Target::Gone;
    };
    if p.partition < 0 || p.partition >= meta.partitions {
        return Target::Gone;
    }
    match controller
        .partitions(&meta)
        .into_iter()
        .find(|i| i.partition == p.partition)
    {
        Some(i) if i.leader >= 0 => Target::Node(i.leader),
        _ => Target::NoLeader,
    }
}

/// Writes the marker of `request` to its partitions, one call per leader node, all at once.
async fn fan_out(
    controller: &Controller,
    groups: &Groups,
    forwarder: &Forwarder,
    timeout: Duration,
    request: MarkerRequest,
) -> Vec<TxnPartition> {
    let marker = MarkerSpec {
        producer_id: request.producer_id,
        producer_epoch: request.producer_epoch,
        coordinator_epoch: request.coordinator_epoch,
        commit: request.commit,
    };
    let mut by_target: BTreeMap<Target, Vec<(String, i32)>> = BTreeMap::new();
    for p in &request.partitions {
        by_target
            .entry(target(controller, p))
            .or_default()
            .push((p.topic.clone(), p.partition));
    }
    let mut written: Vec<(String, i32)> = by_target.remove(&Target::Gone).unwrap_or_default();
    if let Some(waiting) = by_target.remove(&Target::NoLeader) {
        debug!(transactional_id = %request.transactional_id, partitions = waiting.len(),
            "no leader for some partitions of the transaction; their markers wait");
    }
    let own = controller.node_id();
    // One task per leader node: bounded by the nodes of the cluster.
    let mut calls = JoinSet::new();
    for (target, partitions) in by_target {
        let Target::Node(node) = target else { continue };
        let controller = controller.clone();
        let groups = groups.clone();
        let forwarder = forwarder.clone();
        calls.spawn(async move {
            if node == own {
                return write_markers_here(&controller, &groups, marker, partitions, timeout)
                    .await;
            }
            let ask = ForwardRequest::WriteMarkers {
                marker,
                partitions,
                timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
            };
            let peer = u64::try_from(node).unwrap_or_default();
            match forwarder.call_node(peer, &ask).await {
                Ok(ForwardReply::MarkersWritten(done)) => done,
                Ok(other) => {
                    warn!(node, answer = ?other, "a peer answered a marker request with something else");
                    Vec::new()
                }
                Err(e) => {
                    debug!(node, error = %e, "markers not written on a peer; retried later");
                    Vec::new()
                }
            }
        });
    }
    while let Some(done) = calls.join_next().await {
        if let Ok(done) = done {
            written.extend(done);
        }
    }
    request
        .partitions
        .into_iter()
        .filter(|p| {
            written
                .iter()
                .any(|(t, i)| *t == p.topic && *i == p.partition)
        })
        .collect()
}

/// Writes `marker` to each of `partitions` this node leads (`acks=all`, each bounded by
/// `timeout`), all at once; returns those that hold it now or no longer exist. A marker on a
/// `__consumer_offsets` partition also ends the transaction's offsets in its groups.
pub async fn write_markers_here(
    controller: &Controller,
    groups: &Groups,
    marker: MarkerSpec,
    partitions: Vec<(String, i32)>,
    timeout: Duration,
) -> Vec<(String, i32)> {
    let stored = TxnMarker {
        producer_id: marker.producer_id,
        producer_epoch: marker.producer_epoch,
        coordinator_epoch: marker.coordinator_epoch,
        commit: marker.commit,
    };
    // One append per partition of one transaction: bounded by the transaction's partitions.
    let mut appends = JoinSet::new();
    for (topic, partition) in partitions {
        let controller = controller.clone();
        appends.spawn(async move {
            let done = write_one(&controller, &topic, partition, stored, timeout).await;
            (topic, partition, done)
        });
    }
    let mut written = Vec::new();
    while let Some(joined) = appends.join_next().await {
        let Ok((topic, partition, done)) = joined else {
            continue;
        };
        if !done {
            continue;
        }
        if topic == OFFSETS_TOPIC {
            groups.transaction_ended(partition, marker.producer_id, marker.commit);
        }
        written.push((topic, partition));
    }
    written
}

/// One marker append on this node; true once the partition holds it (or no longer exists).
async fn write_one(
    controller: &Controller,
    topic: &str,
    partition: i32,
    marker: TxnMarker,
    timeout: Duration,
) -> bool {
    let Some(meta) = controller.topic(topic) else {
        return true;
    };
    if partition < 0 || partition >= meta.partitions {
        return true;
    }
    let tp = TopicPartition::new(topic, partition);
    let Some(replica) = controller.replica(&tp) else {
        debug!(%tp, "no local replica for a marker; retried later");
        return false;
    };
    let opts = WriteOptions {
        acks: Acks::All,
        timeout,
        min_insync_replicas: controller.min_insync_replicas(&meta),
        leader_epoch: None,
        lease: Some(controller.lease_watch()),
    };
    match write::write_marker(&replica, marker, &opts).await {
        Ok(_) => true,
        Err(e) => {
            debug!(%tp, error = %e, producer_id = marker.producer_id,
                "marker not written; retried later");
            false
        }
    }
}
