//! DescribeTopicPartitions (API 75, KIP-966): the Java admin client's `describeTopics` asks
//! with it when the broker serves it, and falls back to Metadata otherwise.
//!
//! ```text
//!   requested names (or every topic), sorted by name
//!     -> skip those before the cursor's topic; in it, start at the cursor's partition
//!     -> fill up to min(response_partition_limit, PARTITIONS_MAX) partitions
//!     -> next_cursor: the first partition that did not fit, or null when all did
//! ```
//!
//! Rivulet has no eligible leader replicas (KIP-966's ELR: it elects leaders from the ISR
//! only), so `eligible_leader_replicas` and `last_known_elr` are always empty lists, as Kafka
//! reports them when ELR is not in use.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, ResponseKind, TopicName,
};
use uuid::Uuid;

use super::admin::{is_internal, partitions_of, TOPIC_AUTHORIZED_OPERATIONS};
use super::{s, Reply};
use crate::server::errors::code;
use crate::server::BrokerState;

/// Most partitions in one response whatever the client asks (Kafka's
/// `max.request.partition.size.limit` default), so one answer stays bounded.
const PARTITIONS_MAX: usize = 2000;

/// DescribeTopicPartitions v0.
pub fn describe_topic_partitions(
    state: &BrokerState,
    req: DescribeTopicPartitionsRequest,
) -> Reply {
    let mut names: Vec<String> = if req.topics.is_empty() {
        state
            .controller
            .topics()
            .into_iter()
            .map(|t| t.name)
            .collect()
    } else {
        req.topics.iter().map(|t| t.name.to_string()).collect()
    };
    names.sort_unstable();
    names.dedup();
    // A limit below 1 would make a client page forever without progress.
    let limit = usize::try_from(req.response_partition_limit)
        .unwrap_or(0)
        .clamp(1, PARTITIONS_MAX);
    let (cursor_topic, cursor_partition) = match &req.cursor {
        Some(c) => (Some(c.topic_name.to_string()), c.partition_index.max(0)),
        None => (None, 0),
    };
    let mut r = DescribeTopicPartitionsResponse::default();
    if let Some(c) = cursor_topic
        .as_ref()
        .filter(|c| !req.topics.is_empty() && !names.contains(c))
    {
        // Kafka refuses the request: the cursor must name one of the listed topics.
        r.topics = names
            .into_iter()
            .map(|n| {
                let mut t = DescribeTopicPartitionsResponseTopic::default();
                t.name = Some(TopicName(s(n)));
                t.error_code = code::INVALID_REQUEST;
                t
            })
            .collect();
        tracing::debug!(cursor = %c, "DescribeTopicPartitions cursor names an unlisted topic");
        return Reply::new(ResponseKind::DescribeTopicPartitions(r));
    }
    let mut remaining = limit;
    let mut pending = names
        .into_iter()
        .filter(|n| cursor_topic.as_ref().is_none_or(|c| n >= c))
        .peekable();
    while let Some(name) = pending.next() {
        let mut t = DescribeTopicPartitionsResponseTopic::default();
        t.name = Some(TopicName(s(name.clone())));
        let Some(meta) = state.controller.topic(&name) else {
            t.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
            t.topic_id = Uuid::nil();
            r.topics.push(t);
            continue;
        };
        let first = if cursor_topic.as_deref() == Some(name.as_str()) {
            cursor_partition
        } else {
            0
        };
        t.topic_id = meta.id;
        t.is_internal = is_internal(&name);
        t.topic_authorized_operations = TOPIC_AUTHORIZED_OPERATIONS;
        let all = partitions_of(state, &meta, 7);
        let mut rest = all.into_iter().filter(|p| p.partition_index >= first);
        for p in rest.by_ref().take(remaining) {
            let mut dp = DescribeTopicPartitionsResponsePartition::default();
            dp.error_code = p.error_code;
            dp.partition_index = p.partition_index;
            dp.leader_id = p.leader_id;
            dp.leader_epoch = p.leader_epoch;
            dp.replica_nodes = p.replica_nodes;
            dp.isr_nodes = p.isr_nodes;
            dp.eligible_leader_replicas = Some(Vec::new());
            dp.last_known_elr = Some(Vec::new());
            dp.offline_replicas = p.offline_replicas;
            t.partitions.push(dp);
        }
        remaining -= t.partitions.len();
        let cut = rest.next().map(|p| p.partition_index);
        r.topics.push(t);
        if let Some(next) = cut {
            r.next_cursor = Some(cursor(&name, next));
            break;
        }
        if remaining == 0 {
            if let Some(next) = pending.peek() {
                r.next_cursor = Some(cursor(next, 0));
            }
            break;
        }
    }
    Reply::new(ResponseKind::DescribeTopicPartitions(r))
}

fn cursor(topic: &str, partition: i32) -> Cursor {
    let mut c = Cursor::default();
    c.topic_name = TopicName(s(topic.to_string()));
    c.partition_index = partition;
    c
}
