//! Produce: validate, append through each partition's replica actor, acknowledge.
//!
//! Partitions of one request are appended concurrently (each by its own actor). Bytes in flight
//! across the node are bounded by a semaphore: when the disk falls behind, new produce requests
//! wait here instead of piling up in mailboxes.

use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ResponseKind};
use ractor::rpc::CallResult;
use rivulet_actors::{PartitionReplicaMsg, TopicPartition};
use rivulet_storage::{AppendOutcome, TopicMeta};
use tracing::debug;

use super::{s, Reply};
use crate::server::errors::{self, code};
use crate::server::BrokerState;

const APPEND_TIMEOUT_MIN: Duration = Duration::from_secs(1);
const APPEND_TIMEOUT_MAX: Duration = Duration::from_secs(120);

struct PartitionResult {
    error_code: i16,
    error_message: Option<String>,
    base_offset: i64,
    log_start_offset: i64,
    /// The append time on `LogAppendTime` topics, -1 otherwise (Kafka's answer).
    log_append_time_ms: i64,
}

impl PartitionResult {
    fn error(error_code: i16, msg: impl Into<String>) -> Self {
        Self {
            error_code,
            error_message: Some(msg.into()),
            base_offset: -1,
            log_start_offset: -1,
            log_append_time_ms: -1,
        }
    }
}

async fn append_one(
    state: &BrokerState,
    topic: Option<&TopicMeta>,
    tp: TopicPartition,
    records: Option<Bytes>,
    acks: i16,
    timeout: Duration,
) -> PartitionResult {
    if super::admin::is_internal(&tp.topic) {
        return PartitionResult::error(
            code::INVALID_TOPIC,
            format!(
                "{} is an internal topic: only the group coordinators write to it",
                tp.topic
            ),
        );
    }
    let Some(topic) = topic else {
        return PartitionResult::error(
            code::UNKNOWN_TOPIC_OR_PARTITION,
            format!("topic {:?} does not exist", tp.topic),
        );
    };
    if tp.partition < 0 || tp.partition >= topic.partitions {
        return PartitionResult::error(
            code::UNKNOWN_TOPIC_OR_PARTITION,
            format!("topic {:?} has no partition {}", tp.topic, tp.partition),
        );
    }
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return PartitionResult::error(
            code::CORRUPT_MESSAGE,
            "the request carries no record batch",
        );
    };
    let Some(replica) = state.controller.replica(&tp) else {
        return PartitionResult::error(
            code::NOT_LEADER_OR_FOLLOWER,
            format!("{tp} is not led by this node (or is restarting); refresh metadata and retry"),
        );
    };
    let (is_leader, epoch, isr_size) = {
        let st = replica.status.borrow();
        (st.is_leader, st.leader_epoch, st.isr.len() as i64)
    };
    if !is_leader || !state.controller.lease_valid() {
        return PartitionResult::error(
            code::NOT_LEADER_OR_FOLLOWER,
            format!("this node is not the leader of {tp}; refresh metadata and retry"),
        );
    }
    let min_isr = state.controller.min_insync_replicas(topic);
    if acks == -1 && min_isr > isr_size {
        return PartitionResult::error(
            code::NOT_ENOUGH_REPLICAS,
            format!("min.insync.replicas={min_isr} but {tp} has {isr_size} in-sync replica(s)"),
        );
    }
    // Subscribed before the append, so a lapse during it is not missed.
    let lease = state.controller.lease_watch();
    let batch_bytes = records.len();
    let started = tokio::time::Instant::now();
    let call = replica
        .actor
        .call(
            |reply| PartitionReplicaMsg::Append { records, reply },
            Some(timeout),
        )
        .await;
    match call {
        Ok(CallResult::Success(Ok(outcome))) => {
            let info = match outcome {
                AppendOutcome::Appended(i) => {
                    let records = u64::try_from(i.last_offset - i.base_offset + 1).unwrap_or(0);
                    state.metrics.produced(&tp.topic, batch_bytes, records);
                    i
                }
                AppendOutcome::Duplicate(i) => {
                    debug!(%tp, base_offset = i.base_offset, "duplicate batch from idempotent producer");
                    i
                }
            };
            if acks == -1 {
                let remaining = timeout.saturating_sub(started.elapsed());
                if let Err(e) = wait_committed(
                    &replica,
                    lease,
                    epoch,
                    info.last_offset + 1,
                    min_isr,
                    remaining,
                )
                .await
                {
                    return e;
                }
            }
            // The log stamped LogAppendTime batches with the append time as max timestamp.
            let log_append_time = topic
                .configs
                .get("message.timestamp.type")
                .is_some_and(|t| t == "LogAppendTime");
            PartitionResult {
                error_code: code::NONE,
                error_message: None,
                base_offset: info.base_offset,
                log_start_offset: replica.log.log_start_offset(),
                log_append_time_ms: if log_append_time {
                    info.max_timestamp
                } else {
                    -1
                },
            }
        }
        Ok(CallResult::Success(Err(e))) => {
            PartitionResult::error(errors::append(&e), e.to_string())
        }
        Ok(CallResult::Timeout) => PartitionResult::error(
            kafka_protocol::error::ResponseError::RequestTimedOut.code(),
            format!(
                "append to {tp} did not finish within {} ms",
                timeout.as_millis()
            ),
        ),
        Ok(CallResult::SenderError) | Err(_) => PartitionResult::error(
            code::NOT_LEADER_OR_FOLLOWER,
            format!("{tp} replica stopped while appending; retry"),
        ),
    }
}

/// Waits until the high watermark reaches `end` (every in-sync replica has the batch) while
/// the replica stays leader in `epoch`. A change of epoch fails the wait: after a leader
/// change the offsets may be truncated and reused, so only the new leader can acknowledge.
/// A lapse of this node's lease fails the wait too: the controller is about to move the
/// leadership (it fences a node whose lease ran out), so the client should look for the new
/// leader now rather than after its request timeout.
async fn wait_committed(
    replica: &rivulet_actors::ReplicaHandle,
    mut lease: tokio::sync::watch::Receiver<bool>,
    epoch: i32,
    end: i64,
    min_isr: i64,
    timeout: Duration,
) -> Result<(), PartitionResult> {
    let tp = &replica.tp;
    let mut hw = replica.high_watermark.clone();
    let mut status = replica.status.clone();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if !*lease.borrow_and_update() {
            return Err(PartitionResult::error(
                code::NOT_LEADER_OR_FOLLOWER,
                format!("this node lost its controller lease while {tp} waited for its in-sync replicas; refresh metadata and retry"),
            ));
        }
        {
            let st = status.borrow_and_update();
            if !st.is_leader || st.leader_epoch != epoch {
                return Err(PartitionResult::error(
                    code::NOT_LEADER_OR_FOLLOWER,
                    format!("leadership of {tp} moved before the batch was replicated; retry"),
                ));
            }
            if *hw.borrow_and_update() >= end {
                if (st.isr.len() as i64) < min_isr {
                    return Err(PartitionResult::error(
                        code::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                        format!(
                            "{tp} was written but its ISR shrank to {} below min.insync.replicas={min_isr}",
                            st.isr.len()
                        ),
                    ));
                }
                return Ok(());
            }
        }
        tokio::select! {
            r = hw.changed() => if r.is_err() { break },
            r = status.changed() => if r.is_err() { break },
            r = lease.changed() => if r.is_err() { break },
            _ = tokio::time::sleep_until(deadline) => {
                return Err(PartitionResult::error(
                    code::REQUEST_TIMED_OUT,
                    format!("{tp}: the in-sync replicas did not confirm the batch within {} ms", timeout.as_millis()),
                ));
            }
        }
    }
    Err(PartitionResult::error(
        code::NOT_LEADER_OR_FOLLOWER,
        format!("the replica of {tp} stopped; retry"),
    ))
}

/// Produce.
pub async fn produce(state: &BrokerState, req: ProduceRequest, version: i16) -> Option<Reply> {
    let acks = req.acks;
    let timeout = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0))
        .clamp(APPEND_TIMEOUT_MIN, APPEND_TIMEOUT_MAX);
    let refuse_all: Option<(i16, &str)> = if req.transactional_id.is_some() && state.txns.is_none()
    {
        Some((
            code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            "transactions are not supported yet; use an idempotent (non-transactional) producer",
        ))
    } else if !matches!(acks, -1..=1) {
        Some((code::INVALID_REQUIRED_ACKS, "acks must be -1 (all), 0 or 1"))
    } else {
        None
    };

    let total_bytes: usize = req
        .topic_data
        .iter()
        .flat_map(|t| t.partition_data.iter())
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .sum();
    let kib = u32::try_from(total_bytes / 1024)
        .unwrap_or(u32::MAX)
        .clamp(1, state.produce_inflight_kib_max);
    let _permit = match refuse_all {
        None => state.produce_inflight.acquire_many(kib).await.ok(),
        Some(_) => None,
    };

    let mut topics = Vec::with_capacity(req.topic_data.len());
    for t in &req.topic_data {
        let name = t.name.0.as_str();
        let meta = if !name.is_empty() {
            match state.controller.topic(name) {
                Some(m) => Some(m),
                None if refuse_all.is_none() && !super::admin::is_internal(name) => {
                    state.controller.auto_create(name).await.ok().flatten()
                }
                None => None,
            }
        } else {
            state.controller.topic_by_id(t.topic_id)
        };
        topics.push(meta);
    }

    let mut futures = Vec::new();
    for (t, meta) in req.topic_data.iter().zip(&topics) {
        let name = meta
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_else(|| t.name.0.to_string());
        for p in &t.partition_data {
            let tp = TopicPartition::new(name.as_str(), p.index);
            let records = p.records.clone();
            let meta = meta.as_ref();
            futures.push(async move {
                match refuse_all {
                    Some((code, msg)) => PartitionResult::error(code, msg),
                    None => append_one(state, meta, tp, records, acks, timeout).await,
                }
            });
        }
    }
    let mut results = join_all(futures).await.into_iter();
    if acks == 0 {
        return None;
    }

    let mut r = ProduceResponse::default();
    for t in &req.topic_data {
        let mut tr = TopicProduceResponse::default();
        tr.name = t.name.clone();
        tr.topic_id = t.topic_id;
        for p in &t.partition_data {
            let res = results.next().unwrap_or_else(|| {
                PartitionResult::error(code::UNKNOWN_SERVER_ERROR, "internal: missing result")
            });
            let mut pr = PartitionProduceResponse::default();
            pr.index = p.index;
            pr.error_code = res.error_code;
            pr.base_offset = res.base_offset;
            pr.log_append_time_ms = res.log_append_time_ms;
            if version >= 5 {
                pr.log_start_offset = res.log_start_offset;
            }
            if version >= 8 {
                pr.error_message = res.error_message.map(s);
            }
            tr.partition_responses.push(pr);
        }
        r.responses.push(tr);
    }
    Some(Reply::new(ResponseKind::Produce(r)))
}
