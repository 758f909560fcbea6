//! Request handlers: one function per Kafka API, grouped by concern.
//!
//! - [`admin`]: ApiVersions, Metadata, CreateTopics, DeleteTopics, CreatePartitions,
//!   InitProducerId, DescribeCluster.
//! - [`configs`]: DescribeConfigs, AlterConfigs, IncrementalAlterConfigs (topics, brokers,
//!   groups).
//! - [`logs`]: DeleteRecords, DescribeLogDirs.
//! - [`produce`]: the Produce API.
//! - [`fetch`]: the Fetch API (long poll).
//! - [`offsets`]: ListOffsets, OffsetForLeaderEpoch.
//! - [`groups`]: FindCoordinator and the consumer group APIs (classic and KIP-848), which call
//!   the group coordinators through [`rivulet_actors::group::Groups`].

pub mod admin;
pub mod configs;
pub mod fetch;
pub mod groups;
pub mod logs;
pub mod offsets;
pub mod produce;
pub mod topic_partitions;
pub mod txn;

use std::net::SocketAddr;

use bytes::BytesMut;
use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use rivulet_storage::{RecordChunk, TopicMeta};
use uuid::Uuid;

use super::BrokerState;

/// A response ready to encode, with a guess of its encoded size (to size the buffer once).
#[derive(Debug)]
pub struct Reply {
    kind: ResponseKind,
    bytes_hint: usize,
    /// A Fetch response's records left in their segment files, one entry per partition in
    /// response order (see `fetch_encode`); empty for every other response.
    files: Vec<Option<Vec<RecordChunk>>>,
}

impl Reply {
    /// A response with no particular size.
    pub fn new(kind: ResponseKind) -> Self {
        Self {
            kind,
            bytes_hint: 256,
            files: Vec::new(),
        }
    }

    /// A response carrying about `bytes_hint` bytes of records.
    pub fn with_hint(kind: ResponseKind, bytes_hint: usize) -> Self {
        Self {
            kind,
            bytes_hint,
            files: Vec::new(),
        }
    }

    /// A Fetch response whose partitions' records are `files` (in response order; a
    /// partition's `records` field must be empty where its entry is `Some`), sent from the
    /// files. `bytes_hint` is the size of the framing alone.
    pub fn with_files(
        kind: ResponseKind,
        bytes_hint: usize,
        files: Vec<Option<Vec<RecordChunk>>>,
    ) -> Self {
        Self {
            kind,
            bytes_hint,
            files,
        }
    }

    /// The response and its file records, to encode with `fetch_encode`.
    pub fn into_parts(self) -> (ResponseKind, Vec<Option<Vec<RecordChunk>>>) {
        (self.kind, self.files)
    }

    /// Whether records are left in files (the response must be encoded by `fetch_encode`).
    pub fn has_files(&self) -> bool {
        !self.files.is_empty()
    }

    /// The response.
    pub fn kind(&self) -> &ResponseKind {
        &self.kind
    }

    /// Expected encoded size.
    pub fn size_hint(&self, _version: i16) -> usize {
        self.bytes_hint
    }

    /// Encodes the body.
    pub fn encode(&self, out: &mut BytesMut, version: i16) -> anyhow::Result<()> {
        self.kind.encode(out, version)
    }
}

/// Dispatches a decoded request. `None` means no response is due (Produce with acks=0).
pub async fn handle(
    state: &BrokerState,
    header: &RequestHeader,
    request: RequestKind,
    peer: SocketAddr,
) -> Option<Reply> {
    let v = header.request_api_version;
    let client = || groups::ClientInfo::new(header.client_id.as_ref(), peer);
    let reply = match request {
        RequestKind::ApiVersions(_) => admin::api_versions(),
        RequestKind::Metadata(r) => admin::metadata(state, r, v).await,
        RequestKind::DescribeTopicPartitions(r) => {
            topic_partitions::describe_topic_partitions(state, r)
        }
        RequestKind::CreateTopics(r) => admin::create_topics(state, r, v).await,
        RequestKind::DeleteTopics(r) => admin::delete_topics(state, r, v).await,
        RequestKind::CreatePartitions(r) => admin::create_partitions(state, r).await,
        RequestKind::DescribeConfigs(r) => configs::describe_configs(state, r, v),
        RequestKind::AlterConfigs(r) => configs::alter_configs(state, r).await,
        RequestKind::IncrementalAlterConfigs(r) => {
            configs::incremental_alter_configs(state, r).await
        }
        RequestKind::DeleteRecords(r) => logs::delete_records(state, r).await,
        RequestKind::DescribeLogDirs(r) => logs::describe_log_dirs(state, r, v),
        RequestKind::InitProducerId(r) => match txn::transactional_id(&r.transactional_id) {
            Some(id) => txn::init_producer_id(state, r, id, v).await,
            None => admin::init_producer_id(state, r).await,
        },
        RequestKind::AddPartitionsToTxn(r) => txn::add_partitions_to_txn(state, r, v).await,
        RequestKind::AddOffsetsToTxn(r) => txn::add_offsets_to_txn(state, r, v).await,
        RequestKind::EndTxn(r) => txn::end_txn(state, r, v).await,
        RequestKind::TxnOffsetCommit(r) => txn::txn_offset_commit(state, r, v).await,
        RequestKind::DescribeTransactions(r) => txn::describe_transactions(state, r).await,
        RequestKind::DescribeProducers(r) => txn::describe_producers(state, r),
        RequestKind::ListTransactions(r) => txn::list_transactions(state, r, v).await,
        RequestKind::DescribeCluster(r) => admin::describe_cluster(state, r),
        RequestKind::Produce(r) => return produce::produce(state, r, v).await,
        RequestKind::Fetch(r) => fetch::fetch(state, r, v).await,
        RequestKind::ListOffsets(r) => offsets::list_offsets(state, r, v).await,
        RequestKind::OffsetForLeaderEpoch(r) => offsets::offset_for_leader_epoch(state, r),
        RequestKind::FindCoordinator(r) => groups::find_coordinator(state, r, v).await,
        RequestKind::JoinGroup(r) => groups::join_group(state, r, v, &client()).await,
        RequestKind::SyncGroup(r) => groups::sync_group(state, r, v).await,
        RequestKind::Heartbeat(r) => groups::heartbeat(state, r, v).await,
        RequestKind::LeaveGroup(r) => groups::leave_group(state, r, v).await,
        RequestKind::OffsetCommit(r) => groups::offset_commit(state, r, v).await,
        RequestKind::OffsetFetch(r) => groups::offset_fetch(state, r, v).await,
        RequestKind::OffsetDelete(r) => groups::offset_delete(state, r).await,
        RequestKind::ListGroups(r) => groups::list_groups(state, r, v).await,
        RequestKind::DescribeGroups(r) => groups::describe_groups(state, r, v).await,
        RequestKind::DeleteGroups(r) => groups::delete_groups(state, r).await,
        RequestKind::ConsumerGroupHeartbeat(r) => {
            groups::consumer_group_heartbeat(state, r, v, &client()).await
        }
        RequestKind::ConsumerGroupDescribe(r) => groups::consumer_group_describe(state, r, v).await,
        other => {
            // versions::supported() gates every key that reaches here; keep the match total.
            tracing::error!(request = ?std::mem::discriminant(&other), "request reached no handler");
            return None;
        }
    };
    Some(reply)
}

/// A topic named in a request, by name or (newer versions) by id.
pub(crate) fn resolve_topic(state: &BrokerState, name: &str, id: Uuid) -> Option<TopicMeta> {
    if !name.is_empty() {
        state.controller.topic(name)
    } else if !id.is_nil() {
        state.controller.topic_by_id(id)
    } else {
        None
    }
}

/// A `StrBytes` from any string.
pub(crate) fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}
