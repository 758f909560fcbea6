//! ListOffsets and OffsetForLeaderEpoch.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{ListOffsetsRequest, OffsetForLeaderEpochRequest, ResponseKind};
use rivulet_actors::{ReplicaHandle, TopicPartition};

use super::Reply;
use crate::server::errors::{self, code};
use crate::server::BrokerState;

/// ListOffsets timestamp asking for the earliest offset.
const EARLIEST: i64 = -2;
/// ListOffsets timestamp asking for the latest offset.
const LATEST: i64 = -1;
/// ListOffsets (v7+) timestamp asking for the record with the largest timestamp (KIP-734).
const MAX_TIMESTAMP: i64 = -3;
/// ListOffsets (v8+) timestamp asking for the earliest offset on local disk (KIP-405): with
/// no tiered storage, the earliest offset.
const EARLIEST_LOCAL: i64 = -4;
/// ListOffsets (v9+) timestamp asking for the latest offset in tiered storage (KIP-1005). With
/// no tiered storage there is none: offset and timestamp -1, as Kafka answers for a topic
/// without remote storage (`kafka-get-offsets --time -5` then prints nothing and succeeds).
const LATEST_TIERED: i64 = -5;

/// The local replica of a partition: UNKNOWN_TOPIC_OR_PARTITION for a topic or partition
/// that does not exist, NOT_LEADER_OR_FOLLOWER if this node hosts no replica of it.
pub(super) fn replica(
    state: &BrokerState,
    topic: &str,
    partition: i32,
) -> Result<ReplicaHandle, i16> {
    let meta = state
        .controller
        .topic(topic)
        .ok_or(code::UNKNOWN_TOPIC_OR_PARTITION)?;
    if partition < 0 || partition >= meta.partitions {
        return Err(code::UNKNOWN_TOPIC_OR_PARTITION);
    }
    state
        .controller
        .replica(&TopicPartition::new(topic, partition))
        .ok_or(code::NOT_LEADER_OR_FOLLOWER)
}

fn epoch_check(h: &ReplicaHandle, current_leader_epoch: i32) -> Result<(), i16> {
    if current_leader_epoch >= 0 && current_leader_epoch < h.leader_epoch() {
        return Err(code::FENCED_LEADER_EPOCH);
    }
    if current_leader_epoch > h.leader_epoch() {
        return Err(code::UNKNOWN_LEADER_EPOCH);
    }
    Ok(())
}

/// ListOffsets: earliest, latest (high watermark; the last stable offset for
/// `read_committed`), max timestamp, or the first record at or after a timestamp (record
/// granularity, like Kafka). Only records below the high watermark (`read_committed`: the last
/// stable offset) are considered.
pub async fn list_offsets(state: &BrokerState, req: ListOffsetsRequest, version: i16) -> Reply {
    let read_committed = version >= 2 && req.isolation_level == super::fetch::READ_COMMITTED;
    let mut r = ListOffsetsResponse::default();
    for t in req.topics {
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            pr.leader_epoch = -1;
            let found = replica(state, t.name.0.as_str(), p.partition_index)
                .and_then(|h| epoch_check(&h, p.current_leader_epoch).map(|_| h));
            match found {
                Err(ec) => pr.error_code = ec,
                Ok(h) => {
                    if version >= 4 {
                        pr.leader_epoch = h.leader_epoch();
                    }
                    // The end of what this isolation level may read.
                    let readable = if read_committed {
                        h.last_stable_offset()
                    } else {
                        h.high_watermark()
                    };
                    match p.timestamp {
                        EARLIEST | EARLIEST_LOCAL => pr.offset = h.log.log_start_offset(),
                        LATEST => pr.offset = readable,
                        LATEST_TIERED => pr.leader_epoch = -1,
                        ts if ts >= 0 || ts == MAX_TIMESTAMP => {
                            let log = h.log.clone();
                            let hw = readable;
                            let lookup = move || {
                                if ts == MAX_TIMESTAMP {
                                    log.max_timestamp_offset(hw)
                                } else {
                                    log.offset_for_timestamp(ts, hw)
                                }
                            };
                            match tokio::task::spawn_blocking(lookup).await {
                                Ok(Ok(Some(found))) if found.offset < hw => {
                                    pr.offset = found.offset;
                                    pr.timestamp = found.timestamp;
                                }
                                // No record at or after the timestamp: Kafka answers offset,
                                // timestamp and leader epoch all -1 (the Java client then
                                // reports no epoch at all).
                                Ok(Ok(_)) => pr.leader_epoch = -1,
                                Ok(Err(e)) => pr.error_code = errors::storage(&e),
                                Err(_) => pr.error_code = code::UNKNOWN_SERVER_ERROR,
                            }
                        }
                        _ => pr.error_code = code::INVALID_REQUEST,
                    }
                }
            }
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    Reply::new(ResponseKind::ListOffsets(r))
}

/// OffsetForLeaderEpoch: where a leader epoch ends in the log (consumers validate positions).
pub fn offset_for_leader_epoch(state: &BrokerState, req: OffsetForLeaderEpochRequest) -> Reply {
    let mut r = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = t.topic.clone();
        for p in t.partitions {
            let mut e = EpochEndOffset::default();
            e.partition = p.partition;
            e.leader_epoch = -1;
            e.end_offset = -1;
            match replica(state, t.topic.0.as_str(), p.partition)
                .and_then(|h| epoch_check(&h, p.current_leader_epoch).map(|_| h))
            {
                Err(ec) => e.error_code = ec,
                Ok(h) => match h.log.last_epoch_end_offset(p.leader_epoch) {
                    Some((epoch, end)) => {
                        e.leader_epoch = epoch;
                        e.end_offset = end.min(*h.high_watermark.borrow());
                    }
                    // No batch written in or before that epoch: the log end is the answer.
                    None if p.leader_epoch >= h.leader_epoch() => {
                        e.leader_epoch = h.leader_epoch();
                        e.end_offset = *h.high_watermark.borrow();
                    }
                    None => {}
                },
            }
            tr.partitions.push(e);
        }
        r.topics.push(tr);
    }
    Reply::new(ResponseKind::OffsetForLeaderEpoch(r))
}
