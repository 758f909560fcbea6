//! Fetch: read below the high watermark (`read_uncommitted`) or the last stable offset
//! (`read_committed`, with the aborted transactions of the range returned); wait (long poll)
//! until `min_bytes` are available or `max_wait_ms` passes, woken by the replicas'
//! high-watermark watches rather than by polling (the last stable offset moves only when a
//! marker is appended, which moves the high watermark too).
//!
//! The reads return file regions (`PartitionLog::read_regions`), not bytes: the response is
//! encoded around them by `fetch_encode` and sent with `sendfile`, so record bytes are never
//! copied in user space.

use std::time::Duration;

use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchResponse, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, ProducerId, ResponseKind, TopicName};
use rivulet_actors::{ReplicaHandle, TopicPartition};
use rivulet_storage::{RegionRead, StorageError};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::{resolve_topic, s, Reply};
use crate::server::errors::{self, code};
use crate::server::BrokerState;

/// Largest response a single fetch builds, whatever the client allows.
pub const RESPONSE_BYTES_MAX: usize = 64 << 20;
/// FETCH_SESSION_ID_NOT_FOUND: we keep no fetch sessions, so clients fall back to full fetches.
const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
/// Fetch `isolation_level` of a `read_committed` consumer (v4+).
pub(crate) const READ_COMMITTED: i8 = 1;

struct Wanted {
    topic_index: usize,
    partition: i32,
    fetch_offset: i64,
    partition_max_bytes: usize,
    replica: Option<ReplicaHandle>,
    error_code: i16,
}

#[derive(Clone)]
struct Got {
    error_code: i16,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    records: RegionRead,
    aborted: Vec<rivulet_storage::AbortedTransaction>,
}

/// One partition's read: from where, how much, through which replica, and its high watermark
/// and last stable offset when the read was planned.
struct Planned {
    offset: i64,
    partition_max: usize,
    replica: Option<ReplicaHandle>,
    hw: i64,
    lso: i64,
}

/// What one partition's read gave: the records (file regions), the log start offset, and the
/// aborted transactions overlapping the records (`read_committed` only).
struct Read {
    records: RegionRead,
    log_start_offset: i64,
    aborted: Vec<rivulet_storage::AbortedTransaction>,
}

fn read_all(
    wanted: &[Planned],
    response_max: usize,
    read_committed: bool,
) -> Vec<Result<Read, StorageError>> {
    let mut budget = response_max;
    let mut out = Vec::with_capacity(wanted.len());
    let empty = |log_start_offset| Read {
        records: RegionRead::default(),
        log_start_offset,
        aborted: Vec::new(),
    };
    for w in wanted {
        let Some(replica) = &w.replica else {
            out.push(Ok(empty(-1)));
            continue;
        };
        // Kafka's rule: only the response's first batch may exceed the limits (so a consumer
        // always progresses); once anything is in the response, `max_bytes` is strict.
        let limit = w.partition_max.min(budget);
        let first = budget == response_max;
        if limit == 0 && !first {
            out.push(Ok(empty(replica.log.log_start_offset())));
            continue;
        }
        let upto = if read_committed { w.lso } else { w.hw };
        match replica.log.read_regions(w.offset, limit, upto) {
            Ok(r) if !first && r.bytes > limit as u64 => {
                // The log returned one oversized batch; it must wait for a later fetch.
                out.push(Ok(empty(r.log_start_offset)));
            }
            Ok(r) => {
                budget = budget.saturating_sub(usize::try_from(r.bytes).unwrap_or(usize::MAX));
                let aborted = match r.next_offset {
                    Some(end) if read_committed => {
                        match replica.log.aborted_transactions(w.offset, end) {
                            Ok(a) => a,
                            Err(e) => {
                                out.push(Err(e));
                                continue;
                            }
                        }
                    }
                    _ => Vec::new(),
                };
                out.push(Ok(Read {
                    log_start_offset: r.log_start_offset,
                    records: r,
                    aborted,
                }));
            }
            Err(e) => out.push(Err(e)),
        }
    }
    out
}

/// Fetch.
pub async fn fetch(state: &BrokerState, req: FetchRequest, version: i16) -> Reply {
    let mut r = FetchResponse::default();
    if req.session_id != 0 {
        r.error_code = FETCH_SESSION_ID_NOT_FOUND;
        return Reply::new(ResponseKind::Fetch(r));
    }
    let max_wait = Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0))
        .min(state.fetch_wait_max);
    let read_committed = version >= 4 && req.isolation_level == READ_COMMITTED;
    let deadline = Instant::now() + max_wait;
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    let response_max = usize::try_from(req.max_bytes)
        .unwrap_or(0)
        .clamp(1, RESPONSE_BYTES_MAX);

    let mut topics: Vec<(String, Uuid)> = Vec::with_capacity(req.topics.len());
    let mut wanted: Vec<Wanted> = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let meta = resolve_topic(
            state,
            t.topic.0.as_str(),
            if version >= 13 {
                t.topic_id
            } else {
                Uuid::nil()
            },
        );
        topics.push((
            meta.as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_else(|| t.topic.0.to_string()),
            t.topic_id,
        ));
        for p in &t.partitions {
            let (replica, error_code) = match &meta {
                None if version >= 13 && t.topic.0.is_empty() => (None, code::UNKNOWN_TOPIC_ID),
                None => (None, code::UNKNOWN_TOPIC_OR_PARTITION),
                Some(m) if p.partition < 0 || p.partition >= m.partitions => {
                    (None, code::UNKNOWN_TOPIC_OR_PARTITION)
                }
                Some(m) => match state
                    .controller
                    .replica(&TopicPartition::new(m.name.as_str(), p.partition))
                {
                    None => (None, code::NOT_LEADER_OR_FOLLOWER),
                    Some(h) if !h.is_leader() => (None, code::NOT_LEADER_OR_FOLLOWER),
                    Some(h)
                        if p.current_leader_epoch >= 0
                            && p.current_leader_epoch < h.leader_epoch() =>
                    {
                        (None, code::FENCED_LEADER_EPOCH)
                    }
                    Some(h) if p.current_leader_epoch > h.leader_epoch() => {
                        (None, code::UNKNOWN_LEADER_EPOCH)
                    }
                    Some(h) => (Some(h), code::NONE),
                },
            };
            wanted.push(Wanted {
                topic_index: ti,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
                replica,
                error_code,
            });
        }
    }

    let mut watches: Vec<watch::Receiver<i64>> = wanted
        .iter()
        .filter_map(|w| w.replica.as_ref().map(|h| h.high_watermark.clone()))
        .collect();
    let got = loop {
        for rx in &mut watches {
            rx.borrow_and_update();
        }
        let plan: Vec<Planned> = wanted
            .iter()
            .map(|w| {
                let (hw, lso) = w.replica.as_ref().map_or((-1, -1), |h| {
                    let hw = h.high_watermark();
                    (hw, h.log.last_stable_offset(hw))
                });
                Planned {
                    offset: w.fetch_offset,
                    partition_max: w.partition_max_bytes,
                    replica: w.replica.clone(),
                    hw,
                    lso,
                }
            })
            .collect();
        let stable: Vec<(i64, i64)> = plan.iter().map(|p| (p.hw, p.lso)).collect();
        let results =
            tokio::task::spawn_blocking(move || read_all(&plan, response_max, read_committed))
                .await;
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "fetch read task failed");
                r.error_code = code::UNKNOWN_SERVER_ERROR;
                return Reply::new(ResponseKind::Fetch(r));
            }
        };
        let mut total = 0usize;
        let mut any_error = false;
        let got: Vec<Got> = results
            .into_iter()
            .zip(&wanted)
            .zip(stable)
            .map(|((res, w), (hw, lso))| match (w.error_code, res) {
                (code::NONE, Ok(read)) => {
                    total += usize::try_from(read.records.bytes).unwrap_or(usize::MAX);
                    Got {
                        error_code: code::NONE,
                        high_watermark: hw,
                        last_stable_offset: lso,
                        log_start_offset: read.log_start_offset,
                        records: read.records,
                        aborted: read.aborted,
                    }
                }
                (code::NONE, Err(e)) => {
                    any_error = true;
                    let (start, end) = match &e {
                        StorageError::OffsetOutOfRange { log_start, .. } => (
                            *log_start,
                            w.replica
                                .as_ref()
                                .map(|h| *h.high_watermark.borrow())
                                .unwrap_or(-1),
                        ),
                        _ => (-1, -1),
                    };
                    Got {
                        error_code: errors::storage(&e),
                        high_watermark: end,
                        last_stable_offset: if end < 0 { -1 } else { lso },
                        log_start_offset: start,
                        records: RegionRead::default(),
                        aborted: Vec::new(),
                    }
                }
                (ec, _) => {
                    any_error = true;
                    Got {
                        error_code: ec,
                        high_watermark: -1,
                        last_stable_offset: -1,
                        log_start_offset: -1,
                        records: RegionRead::default(),
                        aborted: Vec::new(),
                    }
                }
            })
            .collect();
        let now = Instant::now();
        if total >= min_bytes.max(1) || any_error || now >= deadline || watches.is_empty() {
            break got;
        }
        // Wait for any partition's high watermark to move, or the deadline.
        let changes = watches.iter_mut().map(|rx| Box::pin(rx.changed()));
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            (res, _, _) = select_all(changes) => {
                if res.is_err() {
                    // A replica stopped (restart): answer now; the client will retry.
                    tokio::time::sleep(Duration::from_millis(10).min(deadline.saturating_duration_since(Instant::now()))).await;
                }
            }
        }
    };

    let mut bytes_hint = 256;
    let mut by_topic: Vec<FetchableTopicResponse> = topics
        .iter()
        .map(|(name, id)| {
            let mut t = FetchableTopicResponse::default();
            if version >= 13 {
                t.topic_id = *id;
            } else {
                t.topic = TopicName(s(name.clone()));
            }
            t
        })
        .collect();
    let mut files = Vec::with_capacity(wanted.len());
    for (w, g) in wanted.iter().zip(got) {
        let mut p = PartitionData::default();
        p.partition_index = w.partition;
        p.error_code = g.error_code;
        p.high_watermark = g.high_watermark;
        p.last_stable_offset = g.last_stable_offset;
        if version >= 5 {
            p.log_start_offset = g.log_start_offset;
        }
        p.preferred_read_replica = BrokerId(-1);
        p.aborted_transactions = Some(
            g.aborted
                .iter()
                .map(|a| {
                    let mut t = AbortedTransaction::default();
                    t.producer_id = ProducerId(a.producer_id);
                    t.first_offset = a.first_offset;
                    t
                })
                .collect(),
        );
        bytes_hint += 64;
        if let Some((name, _)) = topics.get(w.topic_index) {
            state
                .metrics
                .fetched_counts(name, g.records.bytes, g.records.records_count);
        }
        // The records stay in their files (`p.records` stays empty); `fetch_encode` writes
        // the framing around them, in this order.
        if let Some(t) = by_topic.get_mut(w.topic_index) {
            t.partitions.push(p);
            files.push((w.topic_index, g.records.chunks));
        }
    }
    r.responses = by_topic;
    // Response order: topics in order, each topic's partitions in the order pushed above.
    files.sort_by_key(|(topic_index, _)| *topic_index);
    let files = files.into_iter().map(|(_, c)| Some(c)).collect();
    Reply::with_files(ResponseKind::Fetch(r), bytes_hint, files)
}
