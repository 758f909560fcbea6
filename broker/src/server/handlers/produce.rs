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
use rivulet_actors::write::{self, Acks, WriteError, WriteOptions};
use rivulet_actors::TopicPartition;
use rivulet_storage::TopicMeta;
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
    let acks = match acks {
        0 => Acks::None,
        1 => Acks::Leader,
        _ => Acks::All,
    };
    let opts = WriteOptions {
        acks,
        timeout,
        min_insync_replicas: state.controller.min_insync_replicas(topic),
        leader_epoch: None,
        lease: Some(state.controller.lease_watch()),
    };
    let batch_bytes = records.len();
    let result = match state.controller.replica(&tp) {
        Some(replica) => write::append(&replica, records, &opts).await,
        None => Err(WriteError::UnknownReplica { tp: tp.clone() }),
    };
    match result {
        Ok(w) => {
            if w.duplicate {
                debug!(%tp, base_offset = w.base_offset, "duplicate batch from idempotent producer");
            } else {
                state.metrics.produced(&tp.topic, batch_bytes, w.records);
            }
            PartitionResult {
                error_code: code::NONE,
                error_message: None,
                base_offset: w.base_offset,
                log_start_offset: w.log_start_offset,
                log_append_time_ms: w.log_append_time_ms.unwrap_or(-1),
            }
        }
        Err(e) => PartitionResult::error(errors::write(&e), e.to_string()),
    }
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
            "transactions are not supported on this cluster ([transactions] enabled = false); use an idempotent (non-transactional) producer",
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
