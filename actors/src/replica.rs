//! `PartitionReplica`: one actor per local partition replica, the sole writer of its log.
//!
//! ```text
//!   Append ──▶ validate + assign offsets + write (blocking pool) ──▶ reply
//!                                   │
//!                                   └─▶ high watermark watch ──▶ waiting fetches wake up
//!   Flush (timer, flush.ms) ──▶ fsync          EnforceRetention (timer) ──▶ drop old segments
//! ```
//!
//! Appends are handled one at a time, so a partition's batches are written in arrival order.
//! A storage error that leaves the log in doubt fails the actor; its supervisor (the
//! [`crate::ReplicaManager`]) reopens the log from disk and starts a fresh actor.
//! With one node the replica is always the leader and its in-sync set is itself, so the high
//! watermark is the log end offset; replication replaces that rule without touching callers.

use std::time::Duration;

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rivulet_storage::{AppendOutcome, Durability, LogConfig, PartitionLog, StorageError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::registry::TopicPartition;

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The batch or producer state was rejected; the replica keeps running.
    #[error(transparent)]
    Rejected(StorageError),
    /// The log is in doubt; the replica is stopping and will be restarted from disk.
    #[error("replica {tp} failed and is restarting: {reason}")]
    ReplicaFailed {
        /// Which replica.
        tp: TopicPartition,
        /// The storage error.
        reason: String,
    },
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
    /// New topic configuration (retention, segment and flush settings).
    UpdateConfig(LogConfig),
    /// Drop segments past retention (sent by a timer).
    EnforceRetention,
    /// fsync the log (sent by a timer when the topic sets `flush.ms`).
    Flush,
}

/// Arguments to start a [`PartitionReplica`].
#[derive(Debug)]
pub struct PartitionReplicaArgs {
    /// Which partition.
    pub tp: TopicPartition,
    /// The opened (recovered) log.
    pub log: PartitionLog,
    /// Publishes the high watermark.
    pub high_watermark: watch::Sender<i64>,
    /// Leader epoch stamped into appended batches.
    pub leader_epoch: i32,
    /// How often retention is checked.
    pub retention_check_interval: Duration,
}

/// State of a running [`PartitionReplica`].
#[derive(Debug)]
pub struct PartitionReplicaState {
    tp: TopicPartition,
    log: PartitionLog,
    high_watermark: watch::Sender<i64>,
    leader_epoch: i32,
    retention_timer: JoinHandle<()>,
    flush_timer: Option<JoinHandle<()>>,
}

/// The partition replica actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct PartitionReplica;

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
        args.high_watermark.send_replace(args.log.log_end_offset());
        debug!(tp = %args.tp, log_end_offset = args.log.log_end_offset(), "replica started");
        Ok(PartitionReplicaState {
            tp: args.tp,
            log: args.log,
            high_watermark: args.high_watermark,
            leader_epoch: args.leader_epoch,
            retention_timer,
            flush_timer,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PartitionReplicaMsg::Append { records, reply } => {
                let log = state.log.clone();
                let epoch = state.leader_epoch;
                let outcome = blocking(move || log.append_as_leader(&records, epoch)).await?;
                match outcome {
                    Ok(outcome) => {
                        if let AppendOutcome::Appended(_) = outcome {
                            state
                                .high_watermark
                                .send_replace(state.log.log_end_offset());
                        }
                        let _ = reply.send(Ok(outcome));
                    }
                    Err(e) if e.is_fatal() => {
                        let reason = e.to_string();
                        let _ = reply.send(Err(AppendError::ReplicaFailed {
                            tp: state.tp.clone(),
                            reason: reason.clone(),
                        }));
                        return Err(ActorProcessingErr::from(format!(
                            "append to {} failed, log in doubt: {reason}",
                            state.tp
                        )));
                    }
                    Err(e) => {
                        debug!(tp = %state.tp, error = %e, "append rejected");
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
            }
            PartitionReplicaMsg::Flush => {
                let log = state.log.clone();
                blocking(move || log.sync()).await??;
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
        if let Some(t) = state.flush_timer.take() {
            t.abort();
        }
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
