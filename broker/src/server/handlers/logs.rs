//! Log administration: DeleteRecords (move a partition's log start offset) and
//! DescribeLogDirs (the node's data directory, partition sizes, disk space).
//!
//! ```text
//!   DeleteRecords ──▶ leader's PartitionReplica (the log's only writer)
//!                       ├─ offset > high watermark ──▶ OFFSET_OUT_OF_RANGE
//!                       └─ advance_log_start: whole segments dropped, the rest is a
//!                          durable logical start; the answer waits until the low
//!                          watermark (min log start of the leader and of the alive,
//!                          caught-up followers, as they report it) reaches the offset
//!                          ──▶ low_watermark, or REQUEST_TIMED_OUT after timeout_ms
//!                     followers follow the log start carried by replication
//! ```

use std::path::Path;
use std::time::Duration;

use futures::future::join_all;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, DescribeLogDirsRequest, DescribeLogDirsResponse,
    ResponseKind, TopicName,
};
use ractor::rpc::CallResult;
use rivulet_actors::{PartitionReplicaMsg, TopicPartition};
use tracing::{debug, info};

use super::admin::is_internal;
use super::{s, Reply};
use crate::server::errors::{self, code};
use crate::server::BrokerState;

/// Longest a DeleteRecords waits for one partition's leader, whatever the client asks.
const DELETE_RECORDS_TIMEOUT_MAX: Duration = Duration::from_secs(60);

/// DeleteRecords: every partition's leader moves its log start offset to the given offset
/// (-1: the high watermark) and answers the new low watermark.
pub async fn delete_records(state: &BrokerState, req: DeleteRecordsRequest) -> Reply {
    let timeout = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0))
        .clamp(Duration::from_millis(1), DELETE_RECORDS_TIMEOUT_MAX);
    // Every partition is deleted concurrently, so one request waits at most `timeout` in all
    // (each partition's leader may hold its answer until the followers have caught up).
    let topics = join_all(req.topics.iter().map(|t| async move {
        let name = t.name.0.to_string();
        let meta = state.controller.topic(&name);
        let results = join_all(t.partitions.iter().map(|p| {
            let (name, meta) = (&name, &meta);
            async move {
                match meta {
                    None => Err(code::UNKNOWN_TOPIC_OR_PARTITION),
                    Some(m) if !(0..m.partitions).contains(&p.partition_index) => {
                        Err(code::UNKNOWN_TOPIC_OR_PARTITION)
                    }
                    // Kafka refuses it too: the node owns what __consumer_offsets holds.
                    Some(m) if is_internal(&m.name) => Err(code::INVALID_TOPIC),
                    Some(_) => {
                        delete_partition(state, name, p.partition_index, p.offset, timeout).await
                    }
                }
            }
        }))
        .await;
        let mut out = DeleteRecordsTopicResult::default();
        out.name = t.name.clone();
        for (p, result) in t.partitions.iter().zip(results) {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.low_watermark = -1;
            match result {
                Ok(low) => pr.low_watermark = low,
                Err(c) => pr.error_code = c,
            }
            out.partitions.push(pr);
        }
        out
    }))
    .await;
    let mut r = DeleteRecordsResponse::default();
    r.topics = topics;
    Reply::new(ResponseKind::DeleteRecords(r))
}

async fn delete_partition(
    state: &BrokerState,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Result<i64, i16> {
    let tp = TopicPartition::new(topic, partition);
    let replica = state
        .controller
        .replica(&tp)
        .filter(|r| r.is_leader())
        .ok_or(code::NOT_LEADER_OR_FOLLOWER)?;
    let call = replica
        .actor
        .call(
            |reply| PartitionReplicaMsg::DeleteRecords { offset, reply },
            Some(timeout),
        )
        .await;
    match call {
        Ok(CallResult::Success(Ok(low))) => {
            info!(%tp, offset, log_start_offset = low, "records deleted");
            Ok(low)
        }
        Ok(CallResult::Success(Err(e))) => {
            debug!(%tp, offset, error = %e, "DeleteRecords refused");
            Err(errors::append(&e))
        }
        Ok(CallResult::Timeout) => Err(code::REQUEST_TIMED_OUT),
        Ok(CallResult::SenderError) | Err(_) => Err(code::NOT_LEADER_OR_FOLLOWER),
    }
}

/// Total and available bytes of the filesystem holding `dir` (Kafka's -1 when unknown).
fn volume_bytes(dir: &Path) -> (i64, i64) {
    match rustix::fs::statvfs(dir) {
        Ok(v) => {
            let frsize = v.f_frsize;
            let total = v.f_blocks.saturating_mul(frsize);
            let usable = v.f_bavail.saturating_mul(frsize);
            (
                i64::try_from(total).unwrap_or(i64::MAX),
                i64::try_from(usable).unwrap_or(i64::MAX),
            )
        }
        Err(e) => {
            debug!(dir = %dir.display(), error = %e, "statvfs failed");
            (-1, -1)
        }
    }
}

/// DescribeLogDirs: one log dir (the node's data directory) with the size of every local
/// replica asked for (all when `topics` is null).
pub fn describe_log_dirs(state: &BrokerState, req: DescribeLogDirsRequest, version: i16) -> Reply {
    let wanted: Vec<(String, Vec<i32>)> = match req.topics {
        Some(list) => list
            .into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect(),
        None => state
            .controller
            .topics()
            .into_iter()
            .map(|t| (t.name, (0..t.partitions).collect()))
            .collect(),
    };
    let mut dir = DescribeLogDirsResult::default();
    let path = std::fs::canonicalize(&state.data_dir).unwrap_or_else(|_| state.data_dir.clone());
    dir.log_dir = s(path.display().to_string());
    if version >= 4 {
        (dir.total_bytes, dir.usable_bytes) = volume_bytes(&path);
    }
    for (topic, partitions) in wanted {
        let mut t = DescribeLogDirsTopic::default();
        t.name = TopicName(s(topic.clone()));
        for p in partitions {
            // Only replicas this node hosts are in its log dir (Kafka leaves others out).
            let Some(replica) = state
                .controller
                .replica(&TopicPartition::new(topic.as_str(), p))
            else {
                continue;
            };
            let mut dp = DescribeLogDirsPartition::default();
            dp.partition_index = p;
            dp.partition_size = i64::try_from(replica.log.size_bytes()).unwrap_or(i64::MAX);
            let hw = *replica.high_watermark.borrow();
            dp.offset_lag = (hw - replica.log.log_end_offset()).max(0);
            t.partitions.push(dp);
        }
        if !t.partitions.is_empty() {
            dir.topics.push(t);
        }
    }
    let mut r = DescribeLogDirsResponse::default();
    r.results.push(dir);
    Reply::new(ResponseKind::DescribeLogDirs(r))
}
