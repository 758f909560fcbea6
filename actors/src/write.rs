//! The committed-write path: append record batches to a partition leader with an ack level and
//! a timeout, and (for [`Acks::All`]) wait until every in-sync replica has them.
//!
//! Every writer of a partition log goes through here: the Kafka produce handler, the group
//! coordinators (`__consumer_offsets`), the transaction coordinators' markers
//! ([`write_marker`]: the log builds the control batch, the only way one gets in), and the
//! writers to come (native client). The rules of an acknowledged write therefore live in one
//! place:
//!
//! ```text
//!  caller ──append(records, WriteOptions)──▶ check: leader? (epoch?) lease valid?
//!                                            check: acks=all and ISR < min ISR ─▶ NotEnoughReplicas
//!         PartitionReplica ◀──Append (actor call, timeout)── (one call per batch set)
//!                                            acks=none/leader: answer now
//!                                            acks=all: wait on the replica's watches until
//!                                              high watermark >= end of the write   ─▶ Ok
//!                                              leader epoch changes                 ─▶ LeadershipMoved
//!                                              replica stops                        ─▶ ReplicaStopped
//!                                              controller lease lapses              ─▶ LeaseLapsed
//!                                              deadline                             ─▶ TimedOut
//!                                            then ISR < min ISR ─▶ NotEnoughReplicasAfterAppend
//! ```
//!
//! The operation is told everything it needs (minimum ISR, the expected leader epoch, the
//! node's controller lease as a watch); it never asks the controller. Kafka error codes for
//! [`WriteError`] are chosen in the broker (`errors::write`), group error codes in
//! [`crate::group::GroupError`]'s `From<WriteError>`.

use std::time::Duration;

use bytes::Bytes;
use ractor::rpc::CallResult;
use ractor::RpcReplyPort;
use rivulet_storage::batch::control::TxnMarker;
use rivulet_storage::TimestampType;
use rivulet_storage::{AppendOutcome, StorageError};
use tokio::sync::watch;

use crate::registry::{ReplicaHandle, ReplicaRegistry, TopicPartition};
use crate::replica::{AppendError, PartitionReplicaMsg};

/// How many replicas must hold a write before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// The caller does not wait for an answer (Kafka's `acks=0`). The append itself still
    /// runs to completion; the result only tells the caller what happened.
    None,
    /// The leader has appended the batches to its log (`acks=1`).
    Leader,
    /// Every in-sync replica has the batches, and there were at least the minimum number of
    /// them (`acks=all`, `-1`).
    All,
}

/// How one committed write is done.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// The ack level.
    pub acks: Acks,
    /// Longest the whole operation (append and replication wait) may take.
    pub timeout: Duration,
    /// `min.insync.replicas` of the topic (decided by the caller's policy): with
    /// [`Acks::All`], fewer in-sync replicas refuse the write before it is appended, and a
    /// write whose ISR shrank below it while it replicated is reported as not acknowledged.
    pub min_insync_replicas: i64,
    /// The leader epoch the caller acts under (a group coordinator is bound to the epoch it
    /// loaded its state in); `None` accepts whatever epoch the leader serves now.
    pub leader_epoch: Option<i32>,
    /// This node's controller lease (true while valid). A lapse fails the write at once: the
    /// controller is about to move the leadership. `None` where there is no controller.
    pub lease: Option<watch::Receiver<bool>>,
}

impl WriteOptions {
    /// Options for `acks` within `timeout`, with a minimum ISR of 1, any epoch and no lease.
    pub fn new(acks: Acks, timeout: Duration) -> Self {
        Self {
            acks,
            timeout,
            min_insync_replicas: 1,
            leader_epoch: None,
            lease: None,
        }
    }
}

/// What an acknowledged write tells its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Offset of the first record written.
    pub base_offset: i64,
    /// Offset of the last record written.
    pub last_offset: i64,
    /// The append time stamped on the batches when the topic uses `LogAppendTime`; `None`
    /// for `CreateTime` topics (the producer's timestamps were kept).
    pub log_append_time_ms: Option<i64>,
    /// The log start offset after the write.
    pub log_start_offset: i64,
    /// Records written by this call (0 for a duplicate).
    pub records: u64,
    /// True when an idempotent producer retried batches that were already in the log: nothing
    /// new was written and the offsets are those of the original write.
    pub duplicate: bool,
}

/// Which step of a write ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStage {
    /// The leader's own append.
    Append,
    /// The wait for the in-sync replicas.
    Replication,
}

/// Why a write was not acknowledged. [`WriteError::is_retriable`] separates what a client
/// should retry (after refreshing metadata) from what it should not.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No replica of the partition runs on this node (not hosted, or restarting).
    #[error("{tp} is not led by this node (or is restarting); refresh metadata and retry")]
    UnknownReplica {
        /// Which partition.
        tp: TopicPartition,
    },
    /// The local replica is not the leader, leads in another epoch than the caller expects,
    /// or this node's lease has lapsed. Nothing was written.
    #[error("this node is not the leader of {tp}; refresh metadata and retry")]
    NotLeader {
        /// Which partition.
        tp: TopicPartition,
    },
    /// The batches were appended, but the leader epoch changed (or the replica stopped)
    /// before they were replicated: they may be truncated by the new leader.
    #[error("leadership of {tp} moved before the batch was replicated; retry")]
    LeadershipMoved {
        /// Which partition.
        tp: TopicPartition,
    },
    /// The batches were appended, but this node's controller lease lapsed before they were
    /// replicated: the controller is about to move the leadership.
    #[error("this node lost its controller lease while {tp} waited for its in-sync replicas; refresh metadata and retry")]
    LeaseLapsed {
        /// Which partition.
        tp: TopicPartition,
    },
    /// `acks=all` with fewer in-sync replicas than the minimum: nothing was written.
    #[error("min.insync.replicas={min_insync_replicas} but {tp} has {isr} in-sync replica(s)")]
    NotEnoughReplicas {
        /// Which partition.
        tp: TopicPartition,
        /// The minimum.
        min_insync_replicas: i64,
        /// In-sync replicas at the time.
        isr: usize,
    },
    /// The batches were replicated to the whole ISR, but the ISR had shrunk below the minimum
    /// meanwhile: written, not acknowledged.
    #[error("{tp} was written but its ISR shrank to {isr} below min.insync.replicas={min_insync_replicas}")]
    NotEnoughReplicasAfterAppend {
        /// Which partition.
        tp: TopicPartition,
        /// The minimum.
        min_insync_replicas: i64,
        /// In-sync replicas at the time.
        isr: usize,
    },
    /// The deadline passed.
    #[error("{}", timeout_message(tp, *stage, *timeout_ms))]
    TimedOut {
        /// Which partition.
        tp: TopicPartition,
        /// Which step was still running.
        stage: WriteStage,
        /// The timeout given.
        timeout_ms: u64,
    },
    /// The log refused the batches (corrupt, too large, out-of-order sequence, disk full...).
    /// Nothing was written; the replica keeps running.
    #[error(transparent)]
    Rejected(StorageError),
    /// The log is in doubt: the replica is stopping and will be restarted from disk.
    #[error("replica {tp} failed and is restarting: {reason}")]
    ReplicaFailed {
        /// Which partition.
        tp: TopicPartition,
        /// The storage error.
        reason: String,
    },
    /// The replica actor stopped while the write was in flight.
    #[error("{tp} replica stopped while appending; retry")]
    ReplicaStopped {
        /// Which partition.
        tp: TopicPartition,
    },
}

fn timeout_message(tp: &TopicPartition, stage: WriteStage, timeout_ms: u64) -> String {
    match stage {
        WriteStage::Append => format!("append to {tp} did not finish within {timeout_ms} ms"),
        WriteStage::Replication => {
            format!("{tp}: the in-sync replicas did not confirm the batch within {timeout_ms} ms")
        }
    }
}

impl WriteError {
    /// True when the same write may succeed if retried (possibly on another node after a
    /// metadata refresh). A retry after an error raised once the batches were appended
    /// ([`WriteError::written`]) may duplicate them unless the producer is idempotent.
    pub fn is_retriable(&self) -> bool {
        match self {
            // The same batch fails the same validation again; these pass on their own.
            WriteError::Rejected(e) => matches!(
                e,
                StorageError::LogClosed(_)
                    | StorageError::FencedLeaderEpoch { .. }
                    | StorageError::DiskFull { .. }
            ),
            _ => true,
        }
    }

    /// True when the batches may be in the log even though the write failed.
    pub fn written(&self) -> bool {
        matches!(
            self,
            WriteError::LeadershipMoved { .. }
                | WriteError::LeaseLapsed { .. }
                | WriteError::NotEnoughReplicasAfterAppend { .. }
                | WriteError::TimedOut { .. }
                | WriteError::ReplicaStopped { .. }
        )
    }

    fn from_append(tp: &TopicPartition, e: AppendError) -> Self {
        match e {
            AppendError::Rejected(s) => WriteError::Rejected(s),
            AppendError::NotLeader { tp } => WriteError::NotLeader { tp },
            AppendError::ReplicaFailed { tp, reason } => WriteError::ReplicaFailed { tp, reason },
            // Only DeleteRecords queues waiters; an append never answers this. Should it, the
            // replica is too busy to take the write now, which a retry may fix.
            AppendError::TooManyWaiters { .. } => WriteError::ReplicaStopped { tp: tp.clone() },
        }
    }
}

/// Appends `records` (one or more record batches, format v2) through the local replica of
/// `tp` in `registry`; see [`append`].
pub async fn append_to(
    registry: &ReplicaRegistry,
    tp: &TopicPartition,
    records: Bytes,
    opts: &WriteOptions,
) -> Result<Written, WriteError> {
    append(&local(registry, tp)?, records, opts).await
}

/// The local replica of `tp`, or [`WriteError::UnknownReplica`].
fn local(registry: &ReplicaRegistry, tp: &TopicPartition) -> Result<ReplicaHandle, WriteError> {
    registry
        .get(tp)
        .ok_or_else(|| WriteError::UnknownReplica { tp: tp.clone() })
}

/// Appends `records` (one or more record batches, format v2) to the partition `replica` leads
/// and waits as `opts.acks` asks. See the module docs for the steps and their errors.
pub async fn append(
    replica: &ReplicaHandle,
    records: Bytes,
    opts: &WriteOptions,
) -> Result<Written, WriteError> {
    append_all(replica, std::slice::from_ref(&records), opts).await
}

/// Writes a transaction marker (commit or abort of `marker.producer_id`'s transaction)
/// through the local replica of `tp` in `registry`; see [`write_marker`].
pub async fn write_marker_to(
    registry: &ReplicaRegistry,
    tp: &TopicPartition,
    marker: TxnMarker,
    opts: &WriteOptions,
) -> Result<Written, WriteError> {
    write_marker(&local(registry, tp)?, marker, opts).await
}

/// Writes a transaction marker to the partition `replica` leads, through the same steps as
/// [`append`] (leader and epoch check, lease, min ISR, and for [`Acks::All`] the wait for the
/// high watermark; the coordinator writes markers with `acks=all`). The log builds the control
/// batch ([`TxnMarker::encode`]) and ends the producer's open transaction; a marker whose
/// producer epoch is older than the partition knows is
/// `Rejected(StorageError::InvalidProducerEpoch)`. A marker for a producer with no open
/// transaction here is written all the same (as Kafka does).
pub async fn write_marker(
    replica: &ReplicaHandle,
    marker: TxnMarker,
    opts: &WriteOptions,
) -> Result<Written, WriteError> {
    committed_write(replica, opts, 1, |_, reply| {
        PartitionReplicaMsg::AppendMarker { marker, reply }
    })
    .await
}

/// Like [`append`], for a write split into several appends (each its own actor call, so no
/// single message grows without bound). They are acknowledged together: with [`Acks::All`]
/// the wait covers the end of the last one. Returns the first base offset and the last
/// offset. An empty `parts` writes nothing and answers the log end offset.
pub async fn append_all(
    replica: &ReplicaHandle,
    parts: &[Bytes],
    opts: &WriteOptions,
) -> Result<Written, WriteError> {
    committed_write(replica, opts, parts.len(), |i, reply| {
        PartitionReplicaMsg::Append {
            records: parts[i].clone(),
            reply,
        }
    })
    .await
}

/// The steps of every committed write: `parts` leader appends, the message of the `i`-th
/// built by `message(i, reply)`, acknowledged together.
async fn committed_write<F>(
    replica: &ReplicaHandle,
    opts: &WriteOptions,
    parts: usize,
    mut message: F,
) -> Result<Written, WriteError>
where
    F: FnMut(usize, RpcReplyPort<Result<AppendOutcome, AppendError>>) -> PartitionReplicaMsg,
{
    let tp = &replica.tp;
    let started = tokio::time::Instant::now();
    let deadline = started + opts.timeout;
    // Subscribed before the append, so a lapse during it is not missed.
    let mut lease = opts.lease.clone();
    let epoch = {
        let st = replica.status.borrow();
        let lease_valid = lease.as_mut().is_none_or(|l| *l.borrow_and_update());
        if !st.is_leader || !lease_valid || opts.leader_epoch.is_some_and(|e| e != st.leader_epoch)
        {
            return Err(WriteError::NotLeader { tp: tp.clone() });
        }
        if opts.acks == Acks::All && (st.isr.len() as i64) < opts.min_insync_replicas {
            return Err(WriteError::NotEnoughReplicas {
                tp: tp.clone(),
                min_insync_replicas: opts.min_insync_replicas,
                isr: st.isr.len(),
            });
        }
        st.leader_epoch
    };
    if parts == 0 {
        let end = replica.log.log_end_offset();
        return Ok(Written {
            base_offset: end,
            last_offset: end - 1,
            log_append_time_ms: None,
            log_start_offset: replica.log.log_start_offset(),
            records: 0,
            duplicate: false,
        });
    }
    let mut first: Option<i64> = None;
    let mut last_offset = 0;
    let mut max_timestamp = i64::MIN;
    let mut records = 0u64;
    let mut duplicate = true;
    for i in 0..parts {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let call = replica
            .actor
            .call(
                |reply| message(i, reply),
                Some(remaining.max(Duration::from_millis(1))),
            )
            .await;
        let outcome = match call {
            Ok(CallResult::Success(Ok(outcome))) => outcome,
            Ok(CallResult::Success(Err(e))) => return Err(WriteError::from_append(tp, e)),
            Ok(CallResult::Timeout) => {
                return Err(WriteError::TimedOut {
                    tp: tp.clone(),
                    stage: WriteStage::Append,
                    timeout_ms: millis(opts.timeout),
                })
            }
            Ok(CallResult::SenderError) | Err(_) => {
                return Err(WriteError::ReplicaStopped { tp: tp.clone() })
            }
        };
        let info = match outcome {
            AppendOutcome::Appended(i) => {
                duplicate = false;
                records += u64::try_from(i.last_offset - i.base_offset + 1).unwrap_or(0);
                i
            }
            AppendOutcome::Duplicate(i) => i,
        };
        first.get_or_insert(info.base_offset);
        last_offset = info.last_offset;
        max_timestamp = max_timestamp.max(info.max_timestamp);
    }
    if opts.acks == Acks::All {
        let wait = CommitWait {
            leader_epoch: epoch,
            end: last_offset + 1,
            min_insync_replicas: Some(opts.min_insync_replicas),
            lease,
            timeout: Some(opts.timeout.saturating_sub(started.elapsed())),
        };
        wait_committed(replica, wait, opts.timeout).await?;
    }
    // The log stamped LogAppendTime batches with the append time as their max timestamp.
    let log_append_time = replica.log.config().timestamp_type == TimestampType::LogAppendTime;
    Ok(Written {
        base_offset: first.unwrap_or(last_offset),
        last_offset,
        log_append_time_ms: log_append_time.then_some(max_timestamp),
        log_start_offset: replica.log.log_start_offset(),
        records,
        duplicate,
    })
}

/// What [`wait_committed`] waits for.
#[derive(Debug)]
pub struct CommitWait {
    /// The leader epoch the records were written (or read) in; a change fails the wait,
    /// because after a leader change the offsets may be truncated and reused.
    pub leader_epoch: i32,
    /// The high watermark must reach this offset (one past the last record to cover).
    pub end: i64,
    /// With `Some`, an ISR below this when the high watermark arrives fails with
    /// [`WriteError::NotEnoughReplicasAfterAppend`].
    pub min_insync_replicas: Option<i64>,
    /// The controller lease; its lapse fails the wait with [`WriteError::LeaseLapsed`].
    pub lease: Option<watch::Receiver<bool>>,
    /// Longest wait; `None` waits as long as the leadership holds.
    pub timeout: Option<Duration>,
}

/// Waits until the high watermark of `replica` reaches `wait.end` (every in-sync replica has
/// the records) while the replica stays leader in `wait.leader_epoch`. A lapse of the lease
/// fails the wait too, so the client looks for the new leader now rather than after its
/// request timeout. `reported_timeout` is the timeout named in a [`WriteError::TimedOut`]
/// (the caller's whole budget, of which `wait.timeout` is what remains).
pub async fn wait_committed(
    replica: &ReplicaHandle,
    wait: CommitWait,
    reported_timeout: Duration,
) -> Result<(), WriteError> {
    let tp = &replica.tp;
    let mut hw = replica.high_watermark.clone();
    let mut status = replica.status.clone();
    // Without a lease, a sender that lives as long as this wait: it never changes.
    let (_always, always_valid) = watch::channel(true);
    let mut lease = wait.lease.unwrap_or(always_valid);
    let deadline = wait.timeout.map(|t| tokio::time::Instant::now() + t);
    loop {
        if !*lease.borrow_and_update() {
            return Err(WriteError::LeaseLapsed { tp: tp.clone() });
        }
        {
            let st = status.borrow_and_update();
            if !st.is_leader || st.leader_epoch != wait.leader_epoch {
                return Err(WriteError::LeadershipMoved { tp: tp.clone() });
            }
            if *hw.borrow_and_update() >= wait.end {
                if let Some(min) = wait.min_insync_replicas {
                    if (st.isr.len() as i64) < min {
                        return Err(WriteError::NotEnoughReplicasAfterAppend {
                            tp: tp.clone(),
                            min_insync_replicas: min,
                            isr: st.isr.len(),
                        });
                    }
                }
                return Ok(());
            }
        }
        let timed_out = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = hw.changed() => if r.is_err() { break },
            r = status.changed() => if r.is_err() { break },
            r = lease.changed() => if r.is_err() { break },
            () = timed_out => {
                return Err(WriteError::TimedOut {
                    tp: tp.clone(),
                    stage: WriteStage::Replication,
                    timeout_ms: millis(reported_timeout),
                });
            }
        }
    }
    Err(WriteError::ReplicaStopped { tp: tp.clone() })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_and_written_by_error() {
        let tp = || TopicPartition::new("t", 0);
        let timed_out = |stage| WriteError::TimedOut {
            tp: tp(),
            stage,
            timeout_ms: 1,
        };
        // (error, retriable, may be in the log)
        let cases = [
            (WriteError::UnknownReplica { tp: tp() }, true, false),
            (WriteError::NotLeader { tp: tp() }, true, false),
            (
                WriteError::NotEnoughReplicas {
                    tp: tp(),
                    min_insync_replicas: 2,
                    isr: 1,
                },
                true,
                false,
            ),
            (timed_out(WriteStage::Append), true, true),
            (timed_out(WriteStage::Replication), true, true),
            (WriteError::LeadershipMoved { tp: tp() }, true, true),
            (WriteError::LeaseLapsed { tp: tp() }, true, true),
            (
                WriteError::NotEnoughReplicasAfterAppend {
                    tp: tp(),
                    min_insync_replicas: 2,
                    isr: 1,
                },
                true,
                true,
            ),
            (WriteError::ReplicaStopped { tp: tp() }, true, true),
            (
                WriteError::Rejected(StorageError::CorruptBatch("x".into())),
                false,
                false,
            ),
            (
                WriteError::Rejected(StorageError::DiskFull {
                    free_bytes: 0,
                    floor_bytes: 1,
                }),
                true,
                false,
            ),
        ];
        for (e, retriable, written) in cases {
            assert_eq!(e.is_retriable(), retriable, "{e:?}");
            assert_eq!(e.written(), written, "{e:?}");
        }
        // The messages clients see are the ones the produce handler always gave.
        assert_eq!(
            timed_out(WriteStage::Append).to_string(),
            "append to t-0 did not finish within 1 ms"
        );
    }
}
