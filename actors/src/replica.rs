//! `PartitionReplica`: one actor per local partition replica, the sole writer of its log, in
//! the leader or the follower role.
//!
//! ```text
//!  leader:   Append ──▶ validate + assign offsets + write (blocking pool) ──▶ reply
//!                 └─▶ push to every follower (see `replication`) ──▶ responses move each
//!                     follower's matched offset ──▶ high watermark = min over the ISR
//!                     ──▶ watch ──▶ acks=all waiters and long-polling fetches wake up
//!            Tick ──▶ followers lagging longer than `replica_lag_max` leave the ISR, caught-up
//!                     ones rejoin (both through the controller, fenced by epochs)
//!  follower: Replication(Append) ──▶ check epoch ──▶ truncate / append as follower ──▶ answer
//!  both:     UpdateRole (from the controller's metadata) ──▶ become leader / follower
//!            Flush (flush.ms) ──▶ fsync    EnforceRetention ──▶ drop old segments
//! ```
//!
//! Messages are handled one at a time, so a partition's batches are written in arrival order.
//! A storage error that leaves the log in doubt fails the actor; its supervisor (the
//! [`crate::ReplicaManager`]) reopens the log from disk and starts a fresh actor.
//!
//! Safety rules kept here:
//! - the high watermark only counts matched offsets learned *after* a follower's log was
//!   reconciled with the leader's in the current epoch, over the committed ISR plus any
//!   member being added (never only the smaller, not yet committed ISR);
//! - a change of leader epoch is published on the status watch before the log is touched, so
//!   an `acks=all` waiter of a deposed leader fails instead of acknowledging a record that a
//!   truncation may replace.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rivulet_storage::batch::control::TxnMarker;
use rivulet_storage::{AppendOutcome, Durability, LogConfig, PartitionLog, StorageError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::registry::TopicPartition;
use crate::replication::{
    AppendOp, AppendRequest, AppendResponse, AppendResult, FollowerLogState, IsrChange, NodeId,
    ReplicaNetwork, ReplicationMessage, REPLICATION_CHUNK_BYTES,
};

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The batch or producer state was rejected; the replica keeps running.
    #[error(transparent)]
    Rejected(StorageError),
    /// This replica is not the leader (any more).
    #[error("replica {tp} is not the leader")]
    NotLeader {
        /// Which replica.
        tp: TopicPartition,
    },
    /// Too many DeleteRecords already wait for followers on this partition; retry later.
    #[error("replica {tp} has too many DeleteRecords waiting for followers")]
    TooManyWaiters {
        /// Which replica.
        tp: TopicPartition,
    },
    /// The log is in doubt; the replica is stopping and will be restarted from disk.
    #[error("replica {tp} failed and is restarting: {reason}")]
    ReplicaFailed {
        /// Which replica.
        tp: TopicPartition,
        /// The storage error.
        reason: String,
    },
}

/// What the controller says about a partition: who leads, in which epoch, who is in sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRole {
    /// The leader; `None` while the partition is offline.
    pub leader: Option<NodeId>,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// Version of the replica set / ISR, for fencing ISR changes.
    pub partition_epoch: i32,
    /// All replicas.
    pub replicas: Vec<NodeId>,
    /// The in-sync replicas.
    pub isr: Vec<NodeId>,
}

impl ReplicaRole {
    /// The role of the only replica of a single-node partition.
    pub fn sole_leader(node: NodeId, leader_epoch: i32) -> Self {
        Self {
            leader: Some(node),
            leader_epoch,
            partition_epoch: 0,
            replicas: vec![node],
            isr: vec![node],
        }
    }
}

/// What the broker needs to know about a replica's role, published on a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// True while this replica is the leader.
    pub is_leader: bool,
    /// The leader, as this replica knows it.
    pub leader: Option<NodeId>,
    /// The leader epoch this replica serves under.
    pub leader_epoch: i32,
    /// The committed in-sync replica set.
    pub isr: Vec<NodeId>,
    /// Every replica of the partition.
    pub replicas: Vec<NodeId>,
}

/// Messages of [`PartitionReplica`].
#[derive(Debug)]
pub enum PartitionReplicaMsg {
    /// Append one or more record batches as leader; replies with the offsets assigned.
    Append {
        /// Record batches (format v2) exactly as the producer sent them.
        records: Bytes,
        /// Where the outcome goes.
        reply: RpcReplyPort<Result<AppendOutcome, AppendError>>,
    },
    /// Append a transaction marker as leader (the transaction coordinator's trusted path:
    /// the log builds the control batch; clients can never send one through `Append`).
    /// Replies with the marker's offset.
    AppendMarker {
        /// Commit or abort of which producer's transaction.
        marker: TxnMarker,
        /// Where the outcome goes.
        reply: RpcReplyPort<Result<AppendOutcome, AppendError>>,
    },
    /// Leader only: drop the whole segments below `offset` (capped at the high watermark);
    /// followers follow through the log start offset carried by replication. Replies with
    /// the new log start offset.
    DeleteSegmentsBefore {
        /// Everything below it is no longer needed.
        offset: i64,
        /// The new log start offset, or why nothing was done.
        reply: RpcReplyPort<Result<i64, String>>,
    },
    /// Leader only (Kafka's DeleteRecords): makes `offset` the log start offset, or the high
    /// watermark for -1; an offset past the high watermark is refused with
    /// `OffsetOutOfRange`. Followers follow through the log start offset carried by
    /// replication. Replies (Kafka's DelayedDeleteRecords) once the low watermark — the
    /// smallest log start of the leader and of every alive follower whose log reaches the
    /// leader's start — has reached the offset, with that low watermark; at most
    /// `DELETE_WAITERS_MAX` wait (`TooManyWaiters` beyond), and `NotLeader` when leadership
    /// moves first. The caller bounds the wait with its call timeout.
    DeleteRecords {
        /// First offset to keep; -1 for the high watermark.
        offset: i64,
        /// The new log start offset, or why not.
        reply: RpcReplyPort<Result<i64, AppendError>>,
    },
    /// New topic configuration (retention, segment and flush settings).
    UpdateConfig(LogConfig),
    /// New leadership facts from the controller.
    UpdateRole(ReplicaRole),
    /// A message from the replica of this partition on another node.
    Replication(ReplicationMessage),
    /// Drop segments past retention (sent by a timer).
    EnforceRetention,
    /// fsync the log (sent by a timer when the topic sets `flush.ms`).
    Flush,
    /// Replication housekeeping (sent by a timer).
    Tick,
    /// Internal: a read for a follower finished.
    ChunkRead {
        /// For whom.
        follower: NodeId,
        /// The request it belongs to.
        seq: u64,
        /// Where the read started.
        base_offset: i64,
        /// What was read: whole batches from `base_offset`, as stored.
        result: Result<Vec<u8>, StorageError>,
    },
    /// Internal: the controller answered an ISR change.
    IsrChangeDone {
        /// The epoch it was asked under.
        leader_epoch: i32,
        /// The requested ISR.
        isr: Vec<NodeId>,
        /// The new partition epoch, or why not.
        result: Result<i32, String>,
    },
}

impl ractor::Message for PartitionReplicaMsg {}

/// Arguments to start a [`PartitionReplica`].
#[derive(Debug)]
pub struct PartitionReplicaArgs {
    /// Which partition.
    pub tp: TopicPartition,
    /// The opened (recovered) log.
    pub log: PartitionLog,
    /// Publishes the high watermark.
    pub high_watermark: watch::Sender<i64>,
    /// Publishes the role.
    pub status: watch::Sender<ReplicaStatus>,
    /// The role at start.
    pub role: ReplicaRole,
    /// This node.
    pub node_id: NodeId,
    /// The cluster (`None` on a single node: no peers).
    pub network: Option<Arc<dyn ReplicaNetwork>>,
    /// How often retention is checked.
    pub retention_check_interval: Duration,
    /// A follower not caught up for this long leaves the ISR.
    pub replica_lag_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The follower's log has not been reconciled with ours in this epoch.
    Probing,
    /// The follower's log is a prefix of ours; `next` is what it needs.
    Streaming,
}

#[derive(Debug)]
struct Inflight {
    seq: u64,
    sent: Instant,
    leader_end_at_send: i64,
}

#[derive(Debug)]
struct Follower {
    phase: Phase,
    next: i64,
    /// Log end offset known to match ours (only set while streaming).
    matched: Option<i64>,
    inflight: Option<Inflight>,
    last_caught_up: Instant,
    last_sent: Instant,
    hw_sent: i64,
    /// The leader's log start offset last delivered to it.
    start_sent: i64,
    /// Its log start and end offsets as it last reported them (Kafka's follower
    /// `logStartOffset` / `logEndOffset`), for the low watermark.
    reported_start: Option<i64>,
    reported_end: Option<i64>,
    retry_at: Option<Instant>,
    /// When the follower last answered a request successfully.
    last_ok: Option<Instant>,
    /// When a failed request was last logged at warn, and failures since (a follower that
    /// keeps failing, e.g. out of disk space, is retried every `RETRY_BACKOFF`).
    failures_logged_at: Option<Instant>,
    failures_unlogged: u64,
}

impl Follower {
    fn new(now: Instant) -> Self {
        Self {
            phase: Phase::Probing,
            next: 0,
            matched: None,
            inflight: None,
            last_caught_up: now,
            last_sent: now,
            hw_sent: -1,
            start_sent: -1,
            reported_start: None,
            reported_end: None,
            retry_at: None,
            last_ok: None,
            failures_logged_at: None,
            failures_unlogged: 0,
        }
    }

    /// Whether a failed request should be logged at warn now: the first one, then at most one
    /// per `FAILURE_LOG_INTERVAL`. Returns the failures not logged since the last warning.
    fn failure_to_log(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .failures_logged_at
            .is_none_or(|at| now.duration_since(at) >= FAILURE_LOG_INTERVAL);
        if due {
            self.failures_logged_at = Some(now);
            Some(std::mem::take(&mut self.failures_unlogged))
        } else {
            self.failures_unlogged += 1;
            None
        }
    }
}

/// State of a running [`PartitionReplica`].
#[derive(Debug)]
pub struct PartitionReplicaState {
    tp: TopicPartition,
    log: PartitionLog,
    high_watermark: watch::Sender<i64>,
    status: watch::Sender<ReplicaStatus>,
    role: ReplicaRole,
    me: NodeId,
    network: Option<Arc<dyn ReplicaNetwork>>,
    replica_lag_max: Duration,
    followers: HashMap<NodeId, Follower>,
    /// ISR sent to the controller and not answered yet.
    pending_isr: Option<Vec<NodeId>>,
    isr_retry_at: Option<Instant>,
    /// Log end offset when this replica became leader (a follower rejoins the ISR only once
    /// it has everything of the current epoch's start).
    epoch_start_offset: i64,
    seq: u64,
    /// DeleteRecords answers waiting for the low watermark to reach their offset.
    delete_waiters: Vec<(i64, RpcReplyPort<Result<i64, AppendError>>)>,
    retention_timer: JoinHandle<()>,
    flush_timer: Option<JoinHandle<()>>,
    tick_timer: Option<JoinHandle<()>>,
}

/// The partition replica actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct PartitionReplica;

/// How often replication housekeeping runs.
const TICK: Duration = Duration::from_millis(100);
/// An unanswered request is given up after this long (the message or the link was lost).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// A follower with nothing to receive still hears from the leader this often (high watermark).
const FOLLOWER_KEEPALIVE: Duration = Duration::from_millis(500);
/// Wait before retrying a follower that could not be reached or refused.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// At most one warning per follower this often about its failed requests.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(30);
/// Most DeleteRecords answers one partition holds while followers catch up its log start.
const DELETE_WAITERS_MAX: usize = 64;

fn flush_timer(myself: &ActorRef<PartitionReplicaMsg>, cfg: &LogConfig) -> Option<JoinHandle<()>> {
    match cfg.durability {
        Durability::IntervalMs(ms) => {
            Some(myself.send_interval(Duration::from_millis(ms.max(1)), || {
                PartitionReplicaMsg::Flush
            }))
        }
        Durability::EveryBatch | Durability::Os => None,
    }
}

async fn blocking<T, F>(f: F) -> Result<T, ActorProcessingErr>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ActorProcessingErr::from(format!("storage task failed: {e}")))
}

impl PartitionReplicaState {
    fn is_leader(&self) -> bool {
        self.role.leader == Some(self.me)
    }

    fn log_state(&self) -> FollowerLogState {
        FollowerLogState {
            log_end_offset: self.log.log_end_offset(),
            log_start_offset: self.log.log_start_offset(),
            latest_epoch: self.log.latest_epoch(),
        }
    }

    fn publish_status(&self) {
        let status = ReplicaStatus {
            is_leader: self.is_leader(),
            leader: self.role.leader,
            leader_epoch: self.role.leader_epoch,
            isr: self.role.isr.clone(),
            replicas: self.role.replicas.clone(),
        };
        self.status.send_if_modified(|s| {
            if *s == status {
                false
            } else {
                *s = status;
                true
            }
        });
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Members whose progress bounds the high watermark: the committed ISR plus any member
    /// being added.
    fn hw_members(&self) -> BTreeSet<NodeId> {
        let mut set: BTreeSet<NodeId> = self.role.isr.iter().copied().collect();
        if let Some(p) = &self.pending_isr {
            set.extend(p.iter().copied());
        }
        set.insert(self.me);
        set
    }

    fn recompute_high_watermark(&self) {
        if !self.is_leader() {
            return;
        }
        let current = *self.high_watermark.borrow();
        let mut hw = self.log.log_end_offset();
        for m in self.hw_members() {
            if m == self.me {
                continue;
            }
            let matched = self.followers.get(&m).and_then(|f| f.matched);
            hw = hw.min(matched.unwrap_or(current));
        }
        if hw > current {
            self.high_watermark.send_replace(hw);
        }
    }

    /// Kafka's `lowWatermarkIfLeader`: the smallest log start offset among the leader and
    /// every follower that is alive (in the ISR, being added, or answering lately) and
    /// whose log end has reached the leader's log start.
    fn low_watermark(&self) -> i64 {
        let start = self.log.log_start_offset();
        let members = self.hw_members();
        let now = Instant::now();
        let mut low = start;
        for (id, f) in &self.followers {
            let alive = members.contains(id)
                || f.last_ok
                    .is_some_and(|t| now.duration_since(t) < 2 * FOLLOWER_KEEPALIVE);
            if !alive || f.reported_end.is_none_or(|end| end < start) {
                continue;
            }
            low = low.min(f.reported_start.unwrap_or(-1));
        }
        low
    }

    /// Answers the DeleteRecords whose offset the low watermark has reached.
    fn release_delete_waiters(&mut self) {
        if self.delete_waiters.is_empty() || !self.is_leader() {
            return;
        }
        let low = self.low_watermark();
        let (done, waiting) = std::mem::take(&mut self.delete_waiters)
            .into_iter()
            .partition(|(offset, _)| *offset <= low);
        self.delete_waiters = waiting;
        for (_, reply) in done {
            let _ = reply.send(Ok(low));
        }
    }

    /// Answers every waiting DeleteRecords with NOT_LEADER (leadership moved or the replica
    /// stops).
    fn fail_delete_waiters(&mut self) {
        for (_, reply) in self.delete_waiters.drain(..) {
            let _ = reply.send(Err(AppendError::NotLeader {
                tp: self.tp.clone(),
            }));
        }
    }

    fn become_leader(&mut self, myself: &ActorRef<PartitionReplicaMsg>) {
        let now = Instant::now();
        self.followers = self
            .role
            .replicas
            .iter()
            .copied()
            .filter(|r| *r != self.me)
            .map(|r| (r, Follower::new(now)))
            .collect();
        self.pending_isr = None;
        self.isr_retry_at = None;
        self.epoch_start_offset = self.log.log_end_offset();
        info!(
            tp = %self.tp, leader_epoch = self.role.leader_epoch,
            log_end_offset = self.epoch_start_offset, isr = ?self.role.isr,
            "became leader"
        );
        self.publish_status();
        self.recompute_high_watermark();
        let ids: Vec<NodeId> = self.followers.keys().copied().collect();
        for f in ids {
            self.pump(myself, f);
        }
    }

    fn become_follower(&mut self) {
        self.fail_delete_waiters();
        self.followers.clear();
        self.pending_isr = None;
        debug!(
            tp = %self.tp, leader = ?self.role.leader, leader_epoch = self.role.leader_epoch,
            "following"
        );
        self.publish_status();
    }

    fn send(&mut self, to: NodeId, op: AppendOp, leader_end: i64) -> bool {
        let Some(net) = self.network.clone() else {
            return false;
        };
        let seq = self.next_seq();
        let hw = *self.high_watermark.borrow();
        let start = self.log.log_start_offset();
        let req = AppendRequest {
            topic: self.tp.topic.to_string(),
            partition: self.tp.partition,
            leader: self.me,
            leader_epoch: self.role.leader_epoch,
            seq,
            high_watermark: hw,
            log_start_offset: start,
            op,
        };
        let now = Instant::now();
        let ok = net.send(to, ReplicationMessage::Append(req));
        if let Some(f) = self.followers.get_mut(&to) {
            f.last_sent = now;
            if ok {
                f.hw_sent = hw;
                f.start_sent = start;
                f.inflight = Some(Inflight {
                    seq,
                    sent: now,
                    leader_end_at_send: leader_end,
                });
            } else {
                f.inflight = None;
                f.retry_at = Some(now + RETRY_BACKOFF);
            }
        }
        ok
    }

    /// Sends the follower what it needs next, unless a request is already out.
    fn pump(&mut self, myself: &ActorRef<PartitionReplicaMsg>, id: NodeId) {
        if !self.is_leader() {
            return;
        }
        let now = Instant::now();
        let leader_end = self.log.log_end_offset();
        let hw = *self.high_watermark.borrow();
        let start = self.log.log_start_offset();
        let Some(f) = self.followers.get_mut(&id) else {
            return;
        };
        if f.inflight.is_some() || f.retry_at.is_some_and(|t| t > now) {
            return;
        }
        f.retry_at = None;
        match f.phase {
            Phase::Probing => {
                self.send(id, AppendOp::Probe, leader_end);
            }
            Phase::Streaming if f.next < leader_end => {
                self.seq += 1;
                let seq = self.seq;
                f.inflight = Some(Inflight {
                    seq,
                    sent: now,
                    leader_end_at_send: leader_end,
                });
                let (log, next, me) = (self.log.clone(), f.next, myself.clone());
                tokio::task::spawn_blocking(move || {
                    // Straight from the segment files into the message's own buffer: one
                    // copy (the rkyv encoding of the message makes the next).
                    let result = log
                        .read_regions(next, REPLICATION_CHUNK_BYTES, i64::MAX)
                        .and_then(|r| r.to_vec());
                    let _ = me.cast(PartitionReplicaMsg::ChunkRead {
                        follower: id,
                        seq,
                        base_offset: next,
                        result,
                    });
                });
            }
            Phase::Streaming => {
                if f.hw_sent < hw
                    || f.start_sent < start
                    || now.duration_since(f.last_sent) >= FOLLOWER_KEEPALIVE
                {
                    let base_offset = f.next;
                    self.send(
                        id,
                        AppendOp::Records {
                            base_offset,
                            batches: Vec::new(),
                        },
                        leader_end,
                    );
                }
            }
        }
    }

    fn pump_all(&mut self, myself: &ActorRef<PartitionReplicaMsg>) {
        let ids: Vec<NodeId> = self.followers.keys().copied().collect();
        for id in ids {
            self.pump(myself, id);
        }
    }

    /// Where a probed follower's log stands against ours (`log`, the leader's).
    fn reconcile(log: &PartitionLog, st: &FollowerLogState) -> AppendOp {
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        if let Some(fe) = st.latest_epoch {
            match log.last_epoch_end_offset(fe) {
                None => return AppendOp::Reset { start },
                Some((e, e_end)) if e != fe || e_end < st.log_end_offset => {
                    return AppendOp::Truncate {
                        to: e_end.min(st.log_end_offset),
                        epoch: e,
                    };
                }
                Some(_) => {}
            }
        }
        if st.log_end_offset > end {
            let epoch = log.latest_epoch().unwrap_or(0);
            return AppendOp::Truncate { to: end, epoch };
        }
        if st.log_end_offset < start {
            return AppendOp::Reset { start };
        }
        AppendOp::Records {
            base_offset: st.log_end_offset,
            batches: Vec::new(),
        }
    }

    fn on_response(&mut self, myself: &ActorRef<PartitionReplicaMsg>, resp: AppendResponse) {
        if !self.is_leader() || resp.leader_epoch != self.role.leader_epoch {
            return;
        }
        let id = resp.follower;
        let now = Instant::now();
        let Some(f) = self.followers.get_mut(&id) else {
            return;
        };
        let Some(inflight) = f.inflight.take_if(|i| i.seq == resp.seq) else {
            return;
        };
        match &resp.result {
            AppendResult::Ok(st) | AppendResult::Mismatch(st) => {
                f.reported_end = Some(st.log_end_offset);
            }
            AppendResult::NotReplica => f.reported_end = None,
            AppendResult::StaleEpoch { .. } | AppendResult::Failed(_) => {}
        }
        f.reported_start = (resp.log_start_offset >= 0).then_some(resp.log_start_offset);
        match resp.result {
            AppendResult::Ok(st) if f.phase == Phase::Streaming => {
                f.last_ok = Some(now);
                f.matched = Some(st.log_end_offset);
                f.next = st.log_end_offset;
                if st.log_end_offset >= inflight.leader_end_at_send {
                    f.last_caught_up = inflight.sent;
                }
                self.recompute_high_watermark();
                self.maybe_change_isr(myself);
                self.pump(myself, id);
            }
            AppendResult::Ok(st) | AppendResult::Mismatch(st) => {
                f.phase = Phase::Probing;
                f.matched = None;
                match Self::reconcile(&self.log, &st) {
                    AppendOp::Records { base_offset, .. } => {
                        f.last_ok = Some(now);
                        f.phase = Phase::Streaming;
                        f.next = base_offset;
                        f.matched = Some(base_offset);
                        if base_offset >= inflight.leader_end_at_send {
                            f.last_caught_up = inflight.sent;
                        }
                        debug!(tp = %self.tp, follower = id, from = base_offset, "follower reconciled");
                        self.recompute_high_watermark();
                        self.maybe_change_isr(myself);
                        self.pump(myself, id);
                    }
                    op => {
                        debug!(tp = %self.tp, follower = id, ?op, state = ?st, "follower diverges");
                        let end = self.log.log_end_offset();
                        self.send(id, op, end);
                    }
                }
            }
            AppendResult::StaleEpoch { current_epoch } => {
                info!(
                    tp = %self.tp, follower = id, current_epoch,
                    "a follower knows a newer leader epoch; waiting for the controller"
                );
                f.phase = Phase::Probing;
                f.matched = None;
                f.retry_at = Some(now + REQUEST_TIMEOUT);
            }
            AppendResult::NotReplica | AppendResult::Failed(_) => {
                if let AppendResult::Failed(e) = &resp.result {
                    match f.failure_to_log(now) {
                        Some(since) => warn!(
                            tp = %self.tp, follower = id, error = %e,
                            failures_since_last_warning = since,
                            "follower failed a request"
                        ),
                        None => {
                            debug!(tp = %self.tp, follower = id, error = %e, "follower failed a request")
                        }
                    }
                }
                f.phase = Phase::Probing;
                f.matched = None;
                f.retry_at = Some(now + RETRY_BACKOFF);
            }
        }
    }

    fn maybe_change_isr(&mut self, myself: &ActorRef<PartitionReplicaMsg>) {
        let Some(net) = self.network.clone() else {
            return;
        };
        let now = Instant::now();
        if !self.is_leader()
            || self.pending_isr.is_some()
            || self.isr_retry_at.is_some_and(|t| t > now)
        {
            return;
        }
        let hw = *self.high_watermark.borrow();
        let leader_end = self.log.log_end_offset();
        let mut isr = self.role.isr.clone();
        let lagging: Vec<NodeId> = isr
            .iter()
            .copied()
            .filter(|m| *m != self.me)
            .filter(|m| {
                // A follower holding everything the leader has is in sync however long ago
                // it last had to catch up (an idle partition sends nothing).
                self.followers.get(m).is_none_or(|f| {
                    f.matched.is_none_or(|m| m < leader_end)
                        && now.duration_since(f.last_caught_up) > self.replica_lag_max
                })
            })
            .collect();
        if !lagging.is_empty() {
            isr.retain(|m| !lagging.contains(m));
            info!(tp = %self.tp, ?lagging, isr = ?isr, "shrinking the ISR");
        } else {
            let joining: Vec<NodeId> = self
                .role
                .replicas
                .iter()
                .copied()
                .filter(|r| !isr.contains(r))
                .filter(|r| {
                    // Caught up, and answering: a dead follower whose old offset happens to
                    // match an idle partition's end must not be proposed again and again.
                    self.followers.get(r).is_some_and(|f| {
                        f.phase == Phase::Streaming
                            && f.last_ok
                                .is_some_and(|t| now.duration_since(t) < 2 * FOLLOWER_KEEPALIVE)
                            && f.matched
                                .is_some_and(|m| m >= hw && m >= self.epoch_start_offset)
                    })
                })
                .collect();
            if joining.is_empty() {
                return;
            }
            isr.extend(joining.iter().copied());
            info!(tp = %self.tp, ?joining, isr = ?isr, "expanding the ISR");
        }
        if !isr.contains(&self.me) {
            isr.insert(0, self.me);
        }
        self.pending_isr = Some(isr.clone());
        let change = IsrChange {
            topic: self.tp.topic.to_string(),
            partition: self.tp.partition,
            leader: self.me,
            leader_epoch: self.role.leader_epoch,
            partition_epoch: self.role.partition_epoch,
            isr: isr.clone(),
        };
        let leader_epoch = self.role.leader_epoch;
        let me = myself.clone();
        let fut = net.change_isr(change);
        tokio::spawn(async move {
            let result = fut.await;
            let _ = me.cast(PartitionReplicaMsg::IsrChangeDone {
                leader_epoch,
                isr,
                result,
            });
        });
    }

    fn update_role(&mut self, myself: &ActorRef<PartitionReplicaMsg>, role: ReplicaRole) {
        if role.leader_epoch < self.role.leader_epoch {
            return;
        }
        let leadership_changed =
            role.leader_epoch != self.role.leader_epoch || role.leader != self.role.leader;
        let replicas_changed = role.replicas != self.role.replicas;
        let was_leader = self.is_leader();
        self.role = role;
        if leadership_changed || (replicas_changed && self.is_leader()) {
            if self.is_leader() {
                self.become_leader(myself);
            } else {
                self.become_follower();
            }
        } else {
            if was_leader && self.pending_isr.as_ref() == Some(&self.role.isr) {
                self.pending_isr = None;
            }
            self.publish_status();
            self.recompute_high_watermark();
        }
    }

    /// Follower side of an append request.
    async fn on_append(&mut self, req: AppendRequest) -> Result<AppendResult, ActorProcessingErr> {
        if req.leader_epoch < self.role.leader_epoch
            || (req.leader_epoch == self.role.leader_epoch && self.is_leader())
        {
            return Ok(AppendResult::StaleEpoch {
                current_epoch: self.role.leader_epoch,
            });
        }
        if req.leader_epoch > self.role.leader_epoch || self.role.leader != Some(req.leader) {
            // A newer leader than our metadata knows: epochs come only from the controller,
            // so it is the rightful one.
            self.role.leader = Some(req.leader);
            self.role.leader_epoch = req.leader_epoch;
            self.become_follower();
        }
        let log = self.log.clone();
        let outcome = match req.op {
            AppendOp::Probe => Ok(()),
            AppendOp::Truncate { to, epoch } => {
                blocking(move || {
                    let own = log
                        .last_epoch_end_offset(epoch)
                        .map(|(_, end)| end)
                        .unwrap_or_else(|| log.log_start_offset());
                    log.truncate_to(to.min(own))
                })
                .await?
            }
            AppendOp::Reset { start } => {
                blocking(move || log.truncate_fully_and_start_at(start)).await?
            }
            AppendOp::Records {
                base_offset,
                batches,
            } => {
                if base_offset != self.log.log_end_offset() {
                    return Ok(AppendResult::Mismatch(self.log_state()));
                }
                if batches.is_empty() {
                    Ok(())
                } else {
                    match blocking(move || log.append_as_follower(&batches)).await? {
                        Ok(_) => Ok(()),
                        // Out of disk: answer Failed (not acked, the leader retries and
                        // the ISR shrinks if it lasts); nothing was written.
                        Err(e @ (StorageError::DiskFull { .. } | StorageError::Poisoned)) => Err(e),
                        Err(e) if e.is_fatal() => Err(e),
                        Err(e) => {
                            warn!(tp = %self.tp, error = %e, "replicated batches refused");
                            return Ok(AppendResult::Mismatch(self.log_state()));
                        }
                    }
                }
            }
        };
        if outcome.is_ok() && req.log_start_offset > self.log.log_start_offset() {
            let log = self.log.clone();
            // Exactly the leader's start (DeleteRecords moves it inside a segment), as far as
            // this log reaches.
            let start = req.log_start_offset.min(self.log.log_end_offset());
            if let Err(e) = blocking(move || log.advance_log_start(start)).await? {
                warn!(tp = %self.tp, error = %e, "could not follow the leader's log start");
            }
        }
        match outcome {
            Ok(()) => {
                let hw = req.high_watermark.min(self.log.log_end_offset());
                self.high_watermark.send_if_modified(|h| {
                    let changed = *h != hw;
                    *h = hw;
                    changed
                });
                Ok(AppendResult::Ok(self.log_state()))
            }
            Err(e) if e.is_fatal() => Err(ActorProcessingErr::from(format!(
                "replicating into {} failed, log in doubt: {e}",
                self.tp
            ))),
            Err(e) => Ok(AppendResult::Failed(e.to_string())),
        }
    }

    /// A leader's append (client batches or a transaction marker): refused on a follower;
    /// `op` runs on the blocking pool with the log and the leader epoch; a fatal storage
    /// error stops the actor (its supervisor reopens the log).
    async fn leader_append<F>(
        &mut self,
        myself: &ActorRef<PartitionReplicaMsg>,
        reply: RpcReplyPort<Result<AppendOutcome, AppendError>>,
        op: F,
    ) -> Result<(), ActorProcessingErr>
    where
        F: FnOnce(&PartitionLog, i32) -> Result<AppendOutcome, StorageError> + Send + 'static,
    {
        if !self.is_leader() {
            let _ = reply.send(Err(AppendError::NotLeader {
                tp: self.tp.clone(),
            }));
            return Ok(());
        }
        let log = self.log.clone();
        let epoch = self.role.leader_epoch;
        match blocking(move || op(&log, epoch)).await? {
            Ok(outcome) => {
                let _ = reply.send(Ok(outcome));
                if let AppendOutcome::Appended(_) = outcome {
                    self.recompute_high_watermark();
                    self.pump_all(myself);
                }
            }
            Err(e) if e.is_fatal() => {
                let reason = e.to_string();
                let _ = reply.send(Err(AppendError::ReplicaFailed {
                    tp: self.tp.clone(),
                    reason: reason.clone(),
                }));
                return Err(ActorProcessingErr::from(format!(
                    "append to {} failed, log in doubt: {reason}",
                    self.tp
                )));
            }
            Err(e) => {
                debug!(tp = %self.tp, error = %e, "append rejected");
                let _ = reply.send(Err(AppendError::Rejected(e)));
            }
        }
        Ok(())
    }

    fn tick(&mut self, myself: &ActorRef<PartitionReplicaMsg>) {
        if !self.is_leader() {
            return;
        }
        let now = Instant::now();
        for f in self.followers.values_mut() {
            if f.inflight
                .as_ref()
                .is_some_and(|i| now.duration_since(i.sent) > REQUEST_TIMEOUT)
            {
                f.inflight = None;
                f.phase = Phase::Probing;
                f.matched = None;
            }
        }
        self.pump_all(myself);
        self.maybe_change_isr(myself);
    }
}

impl Actor for PartitionReplica {
    type Msg = PartitionReplicaMsg;
    type State = PartitionReplicaState;
    type Arguments = PartitionReplicaArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let cfg = args.log.config();
        let retention_timer = myself.send_interval(args.retention_check_interval, || {
            PartitionReplicaMsg::EnforceRetention
        });
        let flush_timer = flush_timer(&myself, &cfg);
        let tick_timer = args
            .network
            .as_ref()
            .map(|_| myself.send_interval(TICK, || PartitionReplicaMsg::Tick));
        debug!(tp = %args.tp, log_end_offset = args.log.log_end_offset(), "replica started");
        let mut state = PartitionReplicaState {
            tp: args.tp,
            log: args.log,
            high_watermark: args.high_watermark,
            status: args.status,
            role: args.role,
            me: args.node_id,
            network: args.network,
            replica_lag_max: args.replica_lag_max,
            followers: HashMap::new(),
            pending_isr: None,
            isr_retry_at: None,
            epoch_start_offset: 0,
            seq: 0,
            delete_waiters: Vec::new(),
            retention_timer,
            flush_timer,
            tick_timer,
        };
        if state.is_leader() {
            state.become_leader(&myself);
        } else {
            state.become_follower();
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PartitionReplicaMsg::Append { records, reply } => {
                state
                    .leader_append(&myself, reply, move |log, epoch| {
                        log.append_as_leader(&records, epoch)
                    })
                    .await?;
            }
            PartitionReplicaMsg::AppendMarker { marker, reply } => {
                state
                    .leader_append(&myself, reply, move |log, epoch| {
                        log.append_marker(&marker, epoch)
                            .map(AppendOutcome::Appended)
                    })
                    .await?;
            }
            PartitionReplicaMsg::Replication(ReplicationMessage::Append(req)) => {
                let (leader, seq, epoch) = (req.leader, req.seq, req.leader_epoch);
                let result = state.on_append(req).await?;
                if let Some(net) = &state.network {
                    net.send(
                        leader,
                        ReplicationMessage::AppendResponse(AppendResponse {
                            topic: state.tp.topic.to_string(),
                            partition: state.tp.partition,
                            follower: state.me,
                            leader_epoch: epoch,
                            seq,
                            log_start_offset: state.log.log_start_offset(),
                            result,
                        }),
                    );
                }
            }
            PartitionReplicaMsg::Replication(ReplicationMessage::AppendResponse(resp)) => {
                state.on_response(&myself, resp);
                state.release_delete_waiters();
            }
            PartitionReplicaMsg::ChunkRead {
                follower,
                seq,
                base_offset,
                result,
            } => {
                let live = state.is_leader()
                    && state
                        .followers
                        .get(&follower)
                        .and_then(|f| f.inflight.as_ref())
                        .is_some_and(|i| i.seq == seq);
                if !live {
                    return Ok(());
                }
                let end = state.log.log_end_offset();
                match result {
                    Ok(batches) => {
                        state.send(
                            follower,
                            AppendOp::Records {
                                base_offset,
                                batches,
                            },
                            end,
                        );
                    }
                    Err(e) => {
                        debug!(tp = %state.tp, follower, error = %e, "read for follower failed; probing it again");
                        if let Some(f) = state.followers.get_mut(&follower) {
                            f.inflight = None;
                            f.phase = Phase::Probing;
                            f.matched = None;
                        }
                        state.pump(&myself, follower);
                    }
                }
            }
            PartitionReplicaMsg::IsrChangeDone {
                leader_epoch,
                isr,
                result,
            } => {
                if state.pending_isr.as_ref() != Some(&isr)
                    || leader_epoch != state.role.leader_epoch
                {
                    return Ok(());
                }
                state.pending_isr = None;
                match result {
                    Ok(partition_epoch) if state.is_leader() => {
                        info!(tp = %state.tp, ?isr, partition_epoch, "ISR changed");
                        state.role.isr = isr;
                        state.role.partition_epoch = partition_epoch;
                        state.publish_status();
                        state.recompute_high_watermark();
                        state.release_delete_waiters();
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(tp = %state.tp, error = %e, "ISR change refused; retrying later");
                        state.isr_retry_at = Some(Instant::now() + Duration::from_millis(500));
                    }
                }
            }
            PartitionReplicaMsg::Tick => {
                state.tick(&myself);
                state.release_delete_waiters();
            }
            PartitionReplicaMsg::UpdateRole(role) => {
                state.update_role(&myself, role);
                state.release_delete_waiters();
            }
            PartitionReplicaMsg::DeleteSegmentsBefore { offset, reply } => {
                if !state.is_leader() {
                    let _ = reply.send(Err(format!("{} is not the leader", state.tp)));
                    return Ok(());
                }
                let log = state.log.clone();
                let upto = offset.min(*state.high_watermark.borrow());
                let r = blocking(move || {
                    log.delete_segments_before(upto)
                        .map(|_| log.log_start_offset())
                })
                .await?;
                let _ = reply.send(r.map_err(|e| e.to_string()));
            }
            PartitionReplicaMsg::DeleteRecords { offset, reply } => {
                if !state.is_leader() {
                    let _ = reply.send(Err(AppendError::NotLeader {
                        tp: state.tp.clone(),
                    }));
                    return Ok(());
                }
                let hw = *state.high_watermark.borrow();
                let target = if offset == -1 { hw } else { offset };
                if !(0..=hw).contains(&target) {
                    let _ =
                        reply.send(Err(AppendError::Rejected(StorageError::OffsetOutOfRange {
                            offset,
                            log_start: state.log.log_start_offset(),
                            log_end: hw,
                        })));
                    return Ok(());
                }
                let log = state.log.clone();
                match blocking(move || log.advance_log_start(target)).await? {
                    Ok(_) => {
                        // Kafka's DelayedDeleteRecords: answer once every alive, caught-up
                        // replica's log start has reached the offset (the low watermark).
                        let target = target.min(state.log.log_start_offset());
                        let low = state.low_watermark();
                        if low >= target {
                            let _ = reply.send(Ok(low));
                        } else {
                            state.delete_waiters.retain(|(_, r)| !r.is_closed());
                            if state.delete_waiters.len() >= DELETE_WAITERS_MAX {
                                let _ = reply.send(Err(AppendError::TooManyWaiters {
                                    tp: state.tp.clone(),
                                }));
                            } else {
                                state.delete_waiters.push((target, reply));
                            }
                        }
                        // Followers hear of the new start now, not at the next keepalive.
                        state.pump_all(&myself);
                    }
                    Err(e) if e.is_fatal() => {
                        let _ = reply.send(Err(AppendError::ReplicaFailed {
                            tp: state.tp.clone(),
                            reason: e.to_string(),
                        }));
                        return Err(e.into());
                    }
                    Err(e) => {
                        let _ = reply.send(Err(AppendError::Rejected(e)));
                    }
                }
            }
            PartitionReplicaMsg::UpdateConfig(cfg) => {
                if let Some(t) = state.flush_timer.take() {
                    t.abort();
                }
                state.flush_timer = flush_timer(&myself, &cfg);
                state.log.set_config(cfg);
            }
            PartitionReplicaMsg::EnforceRetention => {
                let log = state.log.clone();
                let now_ms = now_ms();
                let dropped = blocking(move || log.apply_retention(now_ms)).await?;
                match dropped {
                    Ok(0) => {}
                    Ok(n) => info!(
                        tp = %state.tp,
                        segments = n,
                        log_start_offset = state.log.log_start_offset(),
                        "retention dropped segments"
                    ),
                    Err(e) if e.is_fatal() => return Err(e.into()),
                    Err(e) => warn!(tp = %state.tp, error = %e, "retention failed"),
                }
                if state.log.config().cleanup_policy.compact {
                    // Compaction runs beside the actor, not in it: appends and fetches go on
                    // during a pass (it takes the log's writer lock only to swap a segment).
                    // The node's cleaner budget bounds how many passes run at once; each
                    // replica (followers too) cleans its own log below its high watermark.
                    let log = state.log.clone();
                    let high_watermark = *state.high_watermark.borrow();
                    let tp = state.tp.clone();
                    tokio::task::spawn_blocking(move || match log.clean(high_watermark, now_ms) {
                        Ok(o) if o.segments_cleaned > 0 => debug!(
                            %tp, segments = o.segments_cleaned, bytes_before = o.bytes_before,
                            bytes_after = o.bytes_after, first_dirty_offset = o.first_dirty_offset,
                            "log cleaned"
                        ),
                        Ok(_) => {}
                        Err(e) if e.is_fatal() => error!(
                            %tp, error = %e,
                            "the log cleaner failed on this partition; its log is unchanged \
                             (restart the node to recover the log, then check the disk)"
                        ),
                        Err(e) => {
                            warn!(%tp, error = %e, "log cleaner pass failed; retried at the next check")
                        }
                    });
                }
            }
            PartitionReplicaMsg::Flush => {
                let log = state.log.clone();
                match blocking(move || log.sync()).await? {
                    Ok(()) => {}
                    Err(e) if e.is_fatal() => return Err(e.into()),
                    // A poisoned store: restarting the replica cannot help (the store logs it).
                    Err(e) => debug!(tp = %state.tp, error = %e, "flush failed"),
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.retention_timer.abort();
        for t in [state.flush_timer.take(), state.tick_timer.take()]
            .into_iter()
            .flatten()
        {
            t.abort();
        }
        state.fail_delete_waiters();
        // Waiters of this replica must not act on a high watermark nobody maintains.
        state.status.send_modify(|s| s.is_leader = false);
        let log = state.log.clone();
        if let Err(e) = blocking(move || log.sync()).await? {
            warn!(tp = %state.tp, error = %e, "final sync of the log failed");
        }
        debug!(tp = %state.tp, "replica stopped");
        Ok(())
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_follower_is_warned_about_once_per_interval() {
        let t0 = Instant::now();
        let mut f = Follower::new(t0);
        assert_eq!(f.failure_to_log(t0), Some(0), "the first failure is logged");
        for i in 1..150u64 {
            // Retried every RETRY_BACKOFF: 149 more failures within the next 30 s.
            assert_eq!(f.failure_to_log(t0 + RETRY_BACKOFF * i as u32), None);
        }
        assert_eq!(
            f.failure_to_log(t0 + FAILURE_LOG_INTERVAL + RETRY_BACKOFF),
            Some(149),
            "the next warning counts the failures it summarises"
        );
    }
}
