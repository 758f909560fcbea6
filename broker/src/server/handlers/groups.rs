//! Consumer group APIs: FindCoordinator, the classic protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup), offsets (OffsetCommit, OffsetFetch, OffsetDelete), administration (ListGroups,
//! DescribeGroups, DeleteGroups) and the consumer protocol of KIP-848 (ConsumerGroupHeartbeat,
//! ConsumerGroupDescribe).
//!
//! Each handler translates the wire request into the coordinator's types, calls [`Groups`]
//! (which routes to the group's coordinator actor on this node, or answers NOT_COORDINATOR) and
//! builds the response for the request's version. The response builders are pure functions so
//! the tests can encode them in every version served.
//!
//! FindCoordinator answers with the leader of the `__consumer_offsets` partition a group hashes
//! to, creating the topic (through the controller) the first time a group is looked up.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use bytes::Bytes;
use kafka_protocol::messages::consumer_group_describe_response::{
    self as cgd, ConsumerGroupDescribeResponse,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    self as cgh, ConsumerGroupHeartbeatResponse,
};
use kafka_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};
use kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponse, OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kafka_protocol::messages::{
    BrokerId, ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, DeleteGroupsRequest,
    DescribeGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest, OffsetDeleteRequest,
    OffsetFetchRequest, ResponseKind, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rivulet_actors::group::{
    self as grp, CommitRequest, CommittedOffset, ConsumerHeartbeatRequest,
    ConsumerHeartbeatResponse, FetchOffsetsRequest, GroupDescription, GroupError, GroupKind,
    GroupListing, GroupTopicPartition, JoinRequest, JoinResponse, LeaveOutcome, LeavingMember,
    MemberProtocol, OffsetToCommit, SyncRequest, SyncResponse, TopicCatalog, TopicInfo,
    OFFSETS_TOPIC,
};
use rivulet_cluster::{Controller, ControllerError, NewTopic};
use rivulet_storage::TopicMeta;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::{s, Reply};
use crate::consumer_protocol;
use crate::server::errors::{self, code};
use crate::server::BrokerState;

/// FindCoordinator key type of consumer groups.
const KEY_TYPE_GROUP: i8 = 0;
/// FindCoordinator key type of transactional ids.
const KEY_TYPE_TRANSACTION: i8 = 1;
/// ConsumerGroupDescribe v1 member type of a consumer-protocol member.
const MEMBER_TYPE_CONSUMER: i8 = 1;

/// Who sent a request: the header's client id and the peer's address, as DescribeGroups shows
/// them (Kafka spells the host `/ADDRESS`).
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// `client.id`.
    pub client_id: String,
    /// `/IP`.
    pub client_host: String,
}

impl ClientInfo {
    /// From the request header's client id and the connection's peer.
    pub fn new(client_id: Option<&StrBytes>, peer: SocketAddr) -> Self {
        Self {
            client_id: client_id.map(|c| c.to_string()).unwrap_or_default(),
            client_host: format!("/{}", peer.ip()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TopicCatalog over the controller
// ---------------------------------------------------------------------------------------------

/// The cluster's topics as the group coordinators see them: the controller's metadata image.
#[derive(Debug, Clone)]
pub struct ControllerCatalog(pub Controller);

fn topic_info(t: TopicMeta) -> TopicInfo {
    TopicInfo {
        internal: rivulet_cluster::policy::is_internal(&t.name),
        name: t.name,
        id: t.id,
        partitions: t.partitions,
    }
}

impl TopicCatalog for ControllerCatalog {
    fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.0.topic(name).map(topic_info)
    }

    fn topic_by_id(&self, id: Uuid) -> Option<TopicInfo> {
        self.0.topic_by_id(id).map(topic_info)
    }

    fn topics(&self) -> Vec<TopicInfo> {
        self.0.topics().into_iter().map(topic_info).collect()
    }

    fn lease(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        Some(self.0.lease_watch())
    }

    fn group_overrides(&self, group_id: &str) -> rivulet_actors::group::GroupOverrides {
        self.0.group_overrides(group_id)
    }

    fn min_insync_replicas(&self, topic: &str) -> i64 {
        self.0
            .topic(topic)
            .map_or(1, |t| self.0.min_insync_replicas(&t))
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn opt_s(v: Option<StrBytes>) -> Option<String> {
    v.map(|x| x.to_string())
}

fn ms(v: i32) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(v).unwrap_or(0))
}

/// Empty group ids are refused with INVALID_GROUP_ID before reaching the coordinator.
fn check_group_id(group: &str) -> Result<(), GroupError> {
    if group.is_empty() {
        Err(GroupError::InvalidGroupId)
    } else {
        Ok(())
    }
}

fn log_refusal(api: &str, group: &str, e: &GroupError) {
    debug!(api, group, error = %e, "group request refused");
}

// ---------------------------------------------------------------------------------------------
// FindCoordinator
// ---------------------------------------------------------------------------------------------

/// Where a key's coordinator is, or why it cannot be named now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CoordinatorAnswer {
    pub(crate) node_id: i32,
    pub(crate) host: String,
    pub(crate) port: i32,
    pub(crate) error_code: i16,
    pub(crate) error_message: Option<String>,
}

impl CoordinatorAnswer {
    fn error(error_code: i16, msg: impl Into<String>) -> Self {
        Self {
            node_id: -1,
            host: String::new(),
            port: -1,
            error_code,
            error_message: Some(msg.into()),
        }
    }
}

/// The `__consumer_offsets` topic, created on first use. Creation is idempotent: a concurrent
/// creator's TOPIC_ALREADY_EXISTS counts as success. While it is being created the answer is
/// COORDINATOR_NOT_AVAILABLE, which clients retry.
async fn offsets_topic(state: &BrokerState) -> Result<TopicMeta, CoordinatorAnswer> {
    if let Some(t) = state.controller.topic(OFFSETS_TOPIC) {
        return Ok(t);
    }
    let cfg = state.groups.config();
    let live = super::admin::live_brokers(state).len().max(1);
    // Every node that ever registered counts: a cluster whose nodes are still starting (or
    // one of whose nodes is down) must not get a less replicated offsets topic for good, as
    // Kafka refuses too. A single node (or a smaller cluster) caps the factor.
    let registered = state.controller.image().nodes.len().max(1);
    let rf = cfg
        .offsets_replication_factor
        .min(i16::try_from(registered).unwrap_or(i16::MAX))
        .max(1);
    if live < rf as usize {
        return Err(CoordinatorAnswer::error(
            code::COORDINATOR_NOT_AVAILABLE,
            format!(
                "{OFFSETS_TOPIC} needs {rf} live nodes to be created but {live} are alive; \
                 start the missing nodes, or lower [groups] offsets_replication_factor"
            ),
        ));
    }
    let configs = BTreeMap::from([
        // Latest offset and state per key: compaction keeps the partitions bounded (as
        // Kafka's); retention must never delete offsets.
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("retention.ms".to_string(), "-1".to_string()),
        ("retention.bytes".to_string(), "-1".to_string()),
        // Small segments, so that both the log cleaner and the coordinators' rewrite (live
        // state written again, then the segments below it dropped) free space soon.
        (
            "segment.bytes".to_string(),
            cfg.offsets_segment_bytes.to_string(),
        ),
    ]);
    Err(CoordinatorAnswer::error(
        code::COORDINATOR_NOT_AVAILABLE,
        create_coordinator_topic(
            state,
            OFFSETS_TOPIC,
            cfg.offsets_partitions,
            rf,
            configs,
            "consumer groups",
        )
        .await,
    ))
}

/// Creates an internal topic that hosts coordinators (`__consumer_offsets`,
/// `__transaction_state`) and returns the COORDINATOR_NOT_AVAILABLE message for the client:
/// whatever happens, the client retries once the topic's partitions are led and loaded.
pub(super) async fn create_coordinator_topic(
    state: &BrokerState,
    name: &str,
    partitions: i32,
    rf: i16,
    configs: BTreeMap<String, String>,
    purpose: &str,
) -> String {
    let created = state
        .controller
        .create_topic(NewTopic {
            name: name.to_string(),
            partitions: Some(partitions),
            replication_factor: Some(rf),
            configs,
            validate_only: false,
            assignment: None,
        })
        .await;
    match created {
        Ok(_) => {
            info!(
                partitions,
                replication_factor = rf,
                "created the {name} topic for {purpose}"
            );
            format!("the {name} topic was just created; retry in a moment")
        }
        Err(ControllerError::TopicExists(_)) => {
            format!("the {name} topic is being created; retry in a moment")
        }
        Err(e) => {
            warn!(error = %e, "could not create the {name} topic");
            format!("could not create the {name} topic ({e}); retry later")
        }
    }
}

/// The coordinator of `group`: the live leader of its `__consumer_offsets` partition.
fn group_coordinator(
    state: &BrokerState,
    partitions: &[rivulet_cluster::PartitionInfo],
    brokers: &[rivulet_cluster::BrokerInfo],
    group: &str,
) -> CoordinatorAnswer {
    if group.is_empty() {
        return CoordinatorAnswer::error(code::INVALID_GROUP_ID, "the group id is empty");
    }
    let p = state.groups.partition_for(group);
    let Some(info) = partitions.iter().find(|i| i.partition == p) else {
        return CoordinatorAnswer::error(
            code::COORDINATOR_NOT_AVAILABLE,
            format!("partition {p} of {OFFSETS_TOPIC} is not placed yet; retry"),
        );
    };
    if info.leader < 0 {
        return CoordinatorAnswer::error(
            code::COORDINATOR_NOT_AVAILABLE,
            format!("partition {p} of {OFFSETS_TOPIC} has no leader right now; retry"),
        );
    }
    // Between the controller naming this node the leader and the node opening the partition,
    // its group requests would get NOT_COORDINATOR; a client that was just told this node is
    // the coordinator must not hear that (kafka-go's Client does not retry it). Kafka answers
    // COORDINATOR_LOAD_IN_PROGRESS from there on, which it then gets while the groups load.
    if info.leader == state.node_id() && !state.groups.coordinates_partition(p) {
        return CoordinatorAnswer::error(
            code::COORDINATOR_NOT_AVAILABLE,
            format!("partition {p} of {OFFSETS_TOPIC} is still opening on this node; retry"),
        );
    }
    match brokers.iter().find(|b| b.node_id == info.leader) {
        Some(b) => CoordinatorAnswer {
            node_id: b.node_id,
            host: b.host.clone(),
            port: b.port,
            error_code: code::NONE,
            error_message: None,
        },
        None => CoordinatorAnswer::error(
            code::COORDINATOR_NOT_AVAILABLE,
            format!(
                "node {} leads partition {p} of {OFFSETS_TOPIC} but is not live; retry",
                info.leader
            ),
        ),
    }
}

/// The answer for a transaction coordinator while `[transactions] enabled = false`. It must not
/// be retriable, or transactional producers retry until their timeout (aiokafka forever).
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED is what librdkafka, kafka-python and aiokafka all
/// treat as fatal at once, and librdkafka shows this message with it (INVALID_REQUEST, for
/// one, makes librdkafka retry until its timeout).
fn transactions_unsupported() -> CoordinatorAnswer {
    CoordinatorAnswer::error(
        code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        "transactions are not supported on this cluster ([transactions] enabled = false): \
         producers with a transactional.id cannot be used (idempotent producers can)",
    )
}

/// FindCoordinator v0-6 (v4+ looks up several keys at once).
pub async fn find_coordinator(state: &BrokerState, req: FindCoordinatorRequest, v: i16) -> Reply {
    let keys: Vec<String> = if v >= 4 {
        req.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![req.key.to_string()]
    };
    let key_type = if v >= 1 { req.key_type } else { KEY_TYPE_GROUP };
    let answers: Vec<CoordinatorAnswer> = match key_type {
        KEY_TYPE_GROUP => {
            let located = offsets_topic(state).await;
            let brokers = super::admin::live_brokers(state);
            let parts = match &located {
                Ok(topic) => state.controller.partitions(topic),
                Err(_) => Vec::new(),
            };
            keys.iter()
                .map(|k| match &located {
                    _ if k.is_empty() => {
                        CoordinatorAnswer::error(code::INVALID_GROUP_ID, "the group id is empty")
                    }
                    Ok(_) => group_coordinator(state, &parts, &brokers, k),
                    Err(e) => e.clone(),
                })
                .collect()
        }
        KEY_TYPE_TRANSACTION => match &state.txns {
            Some(txns) => super::txn::find_coordinators(state, txns, &keys).await,
            None => keys.iter().map(|_| transactions_unsupported()).collect(),
        },
        other => keys
            .iter()
            .map(|_| {
                CoordinatorAnswer::error(
                    code::INVALID_REQUEST,
                    format!("coordinator key type {other} is not supported (0 = consumer group)"),
                )
            })
            .collect(),
    };
    Reply::new(ResponseKind::FindCoordinator(find_coordinator_response(
        v, &keys, answers,
    )))
}

pub(crate) fn find_coordinator_response(
    v: i16,
    keys: &[String],
    answers: Vec<CoordinatorAnswer>,
) -> FindCoordinatorResponse {
    let mut r = FindCoordinatorResponse::default();
    if v >= 4 {
        r.coordinators = keys
            .iter()
            .zip(answers)
            .map(|(k, a)| {
                let mut c = Coordinator::default();
                c.key = s(k.clone());
                c.node_id = BrokerId(a.node_id);
                c.host = s(a.host);
                c.port = a.port;
                c.error_code = a.error_code;
                c.error_message = a.error_message.map(s);
                c
            })
            .collect();
    } else if let Some(a) = answers.into_iter().next() {
        r.error_code = a.error_code;
        if v >= 1 {
            r.error_message = a.error_message.map(s);
        }
        r.node_id = BrokerId(a.node_id);
        r.host = s(a.host);
        r.port = a.port;
    }
    r
}

// ---------------------------------------------------------------------------------------------
// JoinGroup / SyncGroup / Heartbeat / LeaveGroup
// ---------------------------------------------------------------------------------------------

/// JoinGroup v0-9.
pub async fn join_group(
    state: &BrokerState,
    req: JoinGroupRequest,
    v: i16,
    client: &ClientInfo,
) -> Reply {
    let group = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    let join = JoinRequest {
        member_id: member_id.clone(),
        group_instance_id: if v >= 5 {
            opt_s(req.group_instance_id)
        } else {
            None
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| MemberProtocol {
                name: p.name.to_string(),
                metadata: p.metadata.to_vec(),
            })
            .collect(),
        session_timeout: ms(req.session_timeout_ms),
        // v0 has no rebalance timeout: the session timeout serves as both.
        rebalance_timeout: if v >= 1 {
            ms(req.rebalance_timeout_ms)
        } else {
            ms(req.session_timeout_ms)
        },
        client_id: client.client_id.clone(),
        client_host: client.client_host.clone(),
        require_known_member_id: v >= 4,
        reason: if v >= 8 { opt_s(req.reason) } else { None },
    };
    let result = match check_group_id(&group) {
        Ok(()) => state.groups.join(&group, join).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        log_refusal("JoinGroup", &group, e);
    }
    Reply::new(ResponseKind::JoinGroup(join_group_response(
        v, &member_id, result,
    )))
}

pub(crate) fn join_group_response(
    v: i16,
    request_member_id: &str,
    result: Result<JoinResponse, GroupError>,
) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    match result {
        Ok(j) => {
            r.generation_id = j.generation_id;
            if v >= 7 {
                r.protocol_type = Some(s(j.protocol_type));
            }
            r.protocol_name = Some(s(j.protocol_name));
            r.leader = s(j.leader);
            if v >= 9 {
                r.skip_assignment = j.skip_assignment;
            }
            r.member_id = s(j.member_id);
            r.members = j
                .members
                .into_iter()
                .map(|m| {
                    let mut jm = JoinGroupResponseMember::default();
                    jm.member_id = s(m.member_id);
                    if v >= 5 {
                        jm.group_instance_id = m.group_instance_id.map(s);
                    }
                    jm.metadata = m.metadata;
                    jm
                })
                .collect();
        }
        Err(e) => {
            r.error_code = errors::group(&e).0;
            r.generation_id = -1;
            // Before v7 the protocol name is not nullable.
            r.protocol_name = if v >= 7 { None } else { Some(s("")) };
            r.member_id = match e {
                GroupError::MemberIdRequired(id) => s(id),
                _ => s(request_member_id.to_string()),
            };
        }
    }
    r
}

/// SyncGroup v0-5.
pub async fn sync_group(state: &BrokerState, req: SyncGroupRequest, v: i16) -> Reply {
    let group = req.group_id.0.to_string();
    let sync = SyncRequest {
        member_id: req.member_id.to_string(),
        generation_id: req.generation_id,
        group_instance_id: if v >= 3 {
            opt_s(req.group_instance_id)
        } else {
            None
        },
        protocol_type: if v >= 5 {
            opt_s(req.protocol_type)
        } else {
            None
        },
        protocol_name: if v >= 5 {
            opt_s(req.protocol_name)
        } else {
            None
        },
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let result = match check_group_id(&group) {
        Ok(()) => state.groups.sync(&group, sync).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        log_refusal("SyncGroup", &group, e);
    }
    Reply::new(ResponseKind::SyncGroup(sync_group_response(v, result)))
}

pub(crate) fn sync_group_response(
    v: i16,
    result: Result<SyncResponse, GroupError>,
) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default();
    match result {
        Ok(a) => {
            if v >= 5 {
                r.protocol_type = Some(s(a.protocol_type));
                r.protocol_name = Some(s(a.protocol_name));
            }
            r.assignment = a.assignment;
        }
        Err(e) => {
            r.error_code = errors::group(&e).0;
            r.assignment = Bytes::new();
        }
    }
    r
}

/// Heartbeat v0-4.
pub async fn heartbeat(state: &BrokerState, req: HeartbeatRequest, v: i16) -> Reply {
    let group = req.group_id.0.to_string();
    let hb = grp::HeartbeatRequest {
        member_id: req.member_id.to_string(),
        generation_id: req.generation_id,
        group_instance_id: if v >= 3 {
            opt_s(req.group_instance_id)
        } else {
            None
        },
    };
    let result = match check_group_id(&group) {
        Ok(()) => state.groups.heartbeat(&group, hb).await,
        Err(e) => Err(e),
    };
    let mut r = HeartbeatResponse::default();
    if let Err(e) = result {
        log_refusal("Heartbeat", &group, &e);
        r.error_code = errors::group(&e).0;
    }
    Reply::new(ResponseKind::Heartbeat(r))
}

/// LeaveGroup v0-5: one member before v3, a batch with per-member errors from v3.
pub async fn leave_group(state: &BrokerState, req: LeaveGroupRequest, v: i16) -> Reply {
    let group = req.group_id.0.to_string();
    let members: Vec<LeavingMember> = if v >= 3 {
        req.members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: opt_s(m.group_instance_id.clone()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    if v >= 5 {
        for m in &req.members {
            if let Some(reason) = &m.reason {
                debug!(group, member = %m.member_id, %reason, "member leaving");
            }
        }
    }
    let result = match check_group_id(&group) {
        Ok(()) => state.groups.leave(&group, members).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        log_refusal("LeaveGroup", &group, e);
    }
    Reply::new(ResponseKind::LeaveGroup(leave_group_response(v, result)))
}

pub(crate) fn leave_group_response(
    v: i16,
    result: Result<Vec<LeaveOutcome>, GroupError>,
) -> LeaveGroupResponse {
    let mut r = LeaveGroupResponse::default();
    match result {
        Err(e) => r.error_code = errors::group(&e).0,
        Ok(outcomes) if v >= 3 => {
            r.members = outcomes
                .into_iter()
                .map(|o| {
                    let mut m = MemberResponse::default();
                    m.member_id = s(o.member_id);
                    m.group_instance_id = o.group_instance_id.map(s);
                    m.error_code = o.error.as_ref().map_or(code::NONE, |e| errors::group(e).0);
                    m
                })
                .collect();
        }
        Ok(outcomes) => {
            // v0-2 name one member: its outcome is the request's.
            r.error_code = outcomes
                .first()
                .and_then(|o| o.error.as_ref())
                .map_or(code::NONE, |e| errors::group(e).0);
        }
    }
    r
}

// ---------------------------------------------------------------------------------------------
// Offsets
// ---------------------------------------------------------------------------------------------

type PartitionOutcomes = Vec<(GroupTopicPartition, Option<GroupError>)>;

/// Per-partition error codes in the request's topic/partition order. A whole-request error
/// applies to every partition.
pub(crate) fn partition_codes(
    asked: &[(String, Vec<i32>)],
    result: &Result<PartitionOutcomes, GroupError>,
) -> Vec<(String, Vec<(i32, i16)>)> {
    let by_tp: HashMap<(&str, i32), i16> = match result {
        Ok(list) => list
            .iter()
            .map(|(tp, e)| {
                (
                    (tp.topic.as_str(), tp.partition),
                    e.as_ref().map_or(code::NONE, |e| errors::group(e).0),
                )
            })
            .collect(),
        Err(_) => HashMap::new(),
    };
    let whole = result.as_ref().err().map(|e| errors::group(e).0);
    asked
        .iter()
        .map(|(topic, parts)| {
            let codes = parts
                .iter()
                .map(|p| {
                    let c = whole.unwrap_or_else(|| {
                        by_tp
                            .get(&(topic.as_str(), *p))
                            .copied()
                            .unwrap_or(code::UNKNOWN_SERVER_ERROR)
                    });
                    (*p, c)
                })
                .collect();
            (topic.clone(), codes)
        })
        .collect()
}

/// OffsetCommit v2-9 (v9: `generation_id_or_member_epoch` carries a consumer-protocol member's
/// epoch; the coordinator knows which the group uses).
pub async fn offset_commit(state: &BrokerState, req: OffsetCommitRequest, v: i16) -> Reply {
    let group = req.group_id.0.to_string();
    let (asked, offsets) = offsets_to_commit(req.topics.iter().map(|t| {
        let parts = t.partitions.iter().map(|p| {
            let epoch = if v >= 6 { p.committed_leader_epoch } else { -1 };
            let meta = p.committed_metadata.as_ref().map(|m| m.to_string());
            (p.partition_index, p.committed_offset, epoch, meta)
        });
        (t.name.0.to_string(), parts.collect())
    }));
    let commit = CommitRequest {
        member_id: req.member_id.to_string(),
        generation_id: req.generation_id_or_member_epoch,
        group_instance_id: if v >= 7 {
            opt_s(req.group_instance_id)
        } else {
            None
        },
        offsets,
    };
    let result = match check_group_id(&group) {
        Ok(()) => state.groups.commit_offsets(&group, commit).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        log_refusal("OffsetCommit", &group, e);
    }
    Reply::new(ResponseKind::OffsetCommit(offset_commit_response(
        &asked, &result,
    )))
}

/// One topic of an offset commit: its name and (partition, offset, leader epoch, metadata).
pub(crate) type CommitTopic = (String, Vec<(i32, i64, i32, Option<String>)>);

/// The partitions asked for (for the answer, in the request's order) and the offsets to
/// commit, from the topics of an OffsetCommit or TxnOffsetCommit request.
pub(crate) fn offsets_to_commit(
    topics: impl Iterator<Item = CommitTopic>,
) -> (Vec<(String, Vec<i32>)>, Vec<OffsetToCommit>) {
    let mut asked = Vec::new();
    let mut offsets = Vec::new();
    for (topic, parts) in topics {
        asked.push((topic.clone(), parts.iter().map(|p| p.0).collect()));
        offsets.extend(
            parts.into_iter().map(
                |(partition, offset, leader_epoch, metadata)| OffsetToCommit {
                    tp: GroupTopicPartition {
                        topic: topic.clone(),
                        partition,
                    },
                    offset,
                    leader_epoch,
                    metadata,
                },
            ),
        );
    }
    (asked, offsets)
}

pub(crate) fn offset_commit_response(
    asked: &[(String, Vec<i32>)],
    result: &Result<PartitionOutcomes, GroupError>,
) -> OffsetCommitResponse {
    let mut r = OffsetCommitResponse::default();
    r.topics = partition_codes(asked, result)
        .into_iter()
        .map(|(topic, parts)| {
            let mut t = OffsetCommitResponseTopic::default();
            t.name = TopicName(s(topic));
            t.partitions = parts
                .into_iter()
                .map(|(p, c)| {
                    let mut pr = OffsetCommitResponsePartition::default();
                    pr.partition_index = p;
                    pr.error_code = c;
                    pr
                })
                .collect();
            t
        })
        .collect();
    r
}

/// Committed offsets of one group, grouped by topic: in the request's order when partitions
/// were named (a partition without a committed offset gets `None`), else by topic name.
type FetchedTopics = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

fn group_fetched(
    asked: Option<&[GroupTopicPartition]>,
    list: Vec<(GroupTopicPartition, Option<CommittedOffset>)>,
) -> FetchedTopics {
    let mut out: FetchedTopics = Vec::new();
    let mut push = |topic: &str, p: i32, o: Option<CommittedOffset>| match out.last_mut() {
        Some((t, parts)) if t == topic => parts.push((p, o)),
        _ => out.push((topic.to_string(), vec![(p, o)])),
    };
    match asked {
        Some(asked) => {
            let mut found: HashMap<GroupTopicPartition, Option<CommittedOffset>> =
                list.into_iter().collect();
            for tp in asked {
                let o = found.remove(tp).flatten();
                push(&tp.topic, tp.partition, o);
            }
        }
        None => {
            let mut sorted = list;
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            for (tp, o) in sorted {
                push(&tp.topic, tp.partition, o);
            }
        }
    }
    out
}

async fn fetch_one(
    state: &BrokerState,
    group: &str,
    partitions: Option<Vec<GroupTopicPartition>>,
    member: Option<(String, i32)>,
    require_stable: bool,
) -> Result<FetchedTopics, GroupError> {
    check_group_id(group)?;
    let list = state
        .groups
        .fetch_offsets(
            group,
            FetchOffsetsRequest {
                partitions: partitions.clone(),
                member,
                require_stable,
            },
        )
        .await
        .inspect_err(|e| log_refusal("OffsetFetch", group, e))?;
    Ok(group_fetched(partitions.as_deref(), list))
}

fn asked_partitions<'a>(
    topics: impl Iterator<Item = (&'a TopicName, &'a Vec<i32>)>,
) -> Vec<GroupTopicPartition> {
    topics
        .flat_map(|(name, parts)| {
            parts.iter().map(move |p| GroupTopicPartition {
                topic: name.0.to_string(),
                partition: *p,
            })
        })
        .collect()
}

/// OffsetFetch v1-9: one group before v8, a batch of groups from v8; v9 carries the member and
/// epoch of consumer-protocol members.
pub async fn offset_fetch(state: &BrokerState, req: OffsetFetchRequest, v: i16) -> Reply {
    let mut r = OffsetFetchResponse::default();
    if v >= 8 {
        for g in &req.groups {
            let group = g.group_id.0.to_string();
            let partitions = g
                .topics
                .as_ref()
                .map(|ts| asked_partitions(ts.iter().map(|t| (&t.name, &t.partition_indexes))));
            let member = if v >= 9 {
                g.member_id
                    .as_ref()
                    .filter(|m| !m.is_empty())
                    .map(|m| (m.to_string(), g.member_epoch))
            } else {
                None
            };
            let result = fetch_one(state, &group, partitions, member, req.require_stable).await;
            r.groups
                .push(offset_fetch_group(g.group_id.clone(), result));
        }
    } else {
        let group = req.group_id.0.to_string();
        let partitions = req
            .topics
            .as_ref()
            .map(|ts| asked_partitions(ts.iter().map(|t| (&t.name, &t.partition_indexes))));
        let stable = v >= 7 && req.require_stable;
        let result = fetch_one(state, &group, partitions.clone(), None, stable).await;
        offset_fetch_single(&mut r, v, partitions.as_deref(), result);
    }
    Reply::new(ResponseKind::OffsetFetch(r))
}

fn committed_fields(o: Option<CommittedOffset>) -> (i64, i32, String) {
    match o {
        Some(c) => (c.offset, c.leader_epoch, c.metadata),
        None => (-1, -1, String::new()),
    }
}

/// The v1-7 answer for one group.
pub(crate) fn offset_fetch_single(
    r: &mut OffsetFetchResponse,
    v: i16,
    asked: Option<&[GroupTopicPartition]>,
    result: Result<FetchedTopics, GroupError>,
) {
    let (topics, error) = match result {
        Ok(t) => (t, None),
        // v2+ reports a group-level error once, with no partitions; v1 has no such field and
        // repeats it on every partition asked for.
        Err(e) if v < 2 => (group_fetched(asked, Vec::new()), Some(errors::group(&e).0)),
        // Kafka reports an unstable offset on the partitions (clients retry those).
        Err(GroupError::UnstableOffsetCommit) if asked.is_some() => (
            group_fetched(asked, Vec::new()),
            Some(errors::group(&GroupError::UnstableOffsetCommit).0),
        ),
        Err(e) => {
            r.error_code = errors::group(&e).0;
            return;
        }
    };
    r.topics = topics
        .into_iter()
        .map(|(name, parts)| {
            let mut t = OffsetFetchResponseTopic::default();
            t.name = TopicName(s(name));
            t.partitions = parts
                .into_iter()
                .map(|(p, o)| {
                    let (offset, epoch, metadata) = committed_fields(o);
                    let mut pr = OffsetFetchResponsePartition::default();
                    pr.partition_index = p;
                    pr.committed_offset = offset;
                    if v >= 5 {
                        pr.committed_leader_epoch = epoch;
                    }
                    pr.metadata = Some(s(metadata));
                    pr.error_code = error.unwrap_or(code::NONE);
                    pr
                })
                .collect();
            t
        })
        .collect();
}

/// The v8+ answer for one group of the batch.
pub(crate) fn offset_fetch_group(
    group_id: GroupId,
    result: Result<FetchedTopics, GroupError>,
) -> OffsetFetchResponseGroup {
    let mut g = OffsetFetchResponseGroup::default();
    g.group_id = group_id;
    match result {
        Err(e) => g.error_code = errors::group(&e).0,
        Ok(topics) => {
            g.topics = topics
                .into_iter()
                .map(|(name, parts)| {
                    let mut t = OffsetFetchResponseTopics::default();
                    t.name = TopicName(s(name));
                    t.partitions = parts
                        .into_iter()
                        .map(|(p, o)| {
                            let (offset, epoch, metadata) = committed_fields(o);
                            let mut pr = OffsetFetchResponsePartitions::default();
                            pr.partition_index = p;
                            pr.committed_offset = offset;
                            pr.committed_leader_epoch = epoch;
                            pr.metadata = Some(s(metadata));
                            pr
                        })
                        .collect();
                    t
                })
                .collect();
        }
    }
    g
}

/// OffsetDelete v0: drops committed offsets of partitions the group no longer consumes.
pub async fn offset_delete(state: &BrokerState, req: OffsetDeleteRequest) -> Reply {
    let group = req.group_id.0.to_string();
    let asked: Vec<(String, Vec<i32>)> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.0.to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let partitions: Vec<GroupTopicPartition> = asked
        .iter()
        .flat_map(|(t, ps)| {
            ps.iter().map(move |p| GroupTopicPartition {
                topic: t.clone(),
                partition: *p,
            })
        })
        .collect();
    let result = match check_group_id(&group) {
        Ok(()) => state.groups.delete_offsets(&group, partitions).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        log_refusal("OffsetDelete", &group, e);
    }
    Reply::new(ResponseKind::OffsetDelete(offset_delete_response(
        &asked, &result,
    )))
}

pub(crate) fn offset_delete_response(
    asked: &[(String, Vec<i32>)],
    result: &Result<PartitionOutcomes, GroupError>,
) -> OffsetDeleteResponse {
    let mut r = OffsetDeleteResponse::default();
    if let Err(e) = result {
        r.error_code = errors::group(e).0;
        return r;
    }
    r.topics = partition_codes(asked, result)
        .into_iter()
        .map(|(topic, parts)| {
            let mut t = OffsetDeleteResponseTopic::default();
            t.name = TopicName(s(topic));
            t.partitions = parts
                .into_iter()
                .map(|(p, c)| {
                    let mut pr = OffsetDeleteResponsePartition::default();
                    pr.partition_index = p;
                    pr.error_code = c;
                    pr
                })
                .collect();
            t
        })
        .collect();
    r
}

// ---------------------------------------------------------------------------------------------
// ListGroups / DescribeGroups / DeleteGroups
// ---------------------------------------------------------------------------------------------

/// ListGroups v0-5: the groups this node coordinates (v4 filters by state, v5 by type).
pub async fn list_groups(state: &BrokerState, req: ListGroupsRequest, v: i16) -> Reply {
    let groups = state.groups.list().await;
    Reply::new(ResponseKind::ListGroups(list_groups_response(
        v, &req, groups,
    )))
}

pub(crate) fn list_groups_response(
    v: i16,
    req: &ListGroupsRequest,
    groups: Vec<GroupListing>,
) -> ListGroupsResponse {
    let states: Vec<String> = if v >= 4 {
        req.states_filter
            .iter()
            .map(|x| x.to_ascii_lowercase())
            .collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if v >= 5 {
        req.types_filter
            .iter()
            .map(|x| x.to_ascii_lowercase())
            .collect()
    } else {
        Vec::new()
    };
    let mut r = ListGroupsResponse::default();
    r.groups = groups
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.to_ascii_lowercase()))
        .filter(|g| types.is_empty() || types.iter().any(|t| t == g.kind.as_str()))
        .map(|g| {
            let mut l = ListedGroup::default();
            l.group_id = GroupId(s(g.group_id));
            l.protocol_type = s(g.protocol_type);
            if v >= 4 {
                l.group_state = s(g.state);
            }
            if v >= 5 {
                l.group_type = s(g.kind.as_str());
            }
            l
        })
        .collect();
    r
}

/// DescribeGroups v0-6. Consumer-protocol groups are described too: their members' assignments
/// are encoded in the classic consumer protocol, as Kafka does. From v6 (KIP-1043) a group that
/// does not exist is GROUP_ID_NOT_FOUND, not a `Dead` description: the Java admin client turns
/// that into `GroupIdNotFoundException`, as against Apache Kafka (tests/differential.rs).
pub async fn describe_groups(state: &BrokerState, req: DescribeGroupsRequest, v: i16) -> Reply {
    let mut r = DescribeGroupsResponse::default();
    let include_operations = req.include_authorized_operations;
    for g in req.groups {
        let group = g.0.to_string();
        let result = match check_group_id(&group) {
            Ok(()) => state.groups.describe(&group).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            log_refusal("DescribeGroups", &group, e);
        }
        let mut d = described_group(v, g, result);
        if include_operations && d.error_code == 0 {
            d.authorized_operations = super::admin::GROUP_AUTHORIZED_OPERATIONS;
        }
        r.groups.push(d);
    }
    Reply::new(ResponseKind::DescribeGroups(r))
}

pub(crate) fn described_group(
    v: i16,
    group_id: GroupId,
    result: Result<GroupDescription, GroupError>,
) -> DescribedGroup {
    let mut d = DescribedGroup::default();
    d.group_id = group_id;
    match result {
        Err(e) => {
            let (code, message) = errors::group(&e);
            d.error_code = code;
            if v >= 6 {
                d.error_message = Some(s(message));
            }
        }
        Ok(desc) if v >= 6 && desc.state == "Dead" => {
            d.error_code = code::GROUP_ID_NOT_FOUND;
            d.error_message = Some(s(format!("Group {} not found.", d.group_id.as_str())));
        }
        Ok(desc) => {
            d.group_state = s(desc.state);
            d.protocol_type = s(desc.protocol_type);
            d.protocol_data = s(desc.protocol);
            d.members = desc
                .members
                .into_iter()
                .map(|m| {
                    let mut dm = DescribedGroupMember::default();
                    dm.member_id = s(m.member_id);
                    if v >= 4 {
                        dm.group_instance_id = m.group_instance_id.map(s);
                    }
                    dm.client_id = s(m.client_id);
                    dm.client_host = s(m.client_host);
                    dm.member_metadata = m.metadata;
                    dm.member_assignment =
                        if m.assignment.is_empty() && desc.kind == GroupKind::Consumer {
                            consumer_protocol::encode_assignment(
                                m.assigned
                                    .iter()
                                    .map(|tp| (tp.topic.as_str(), tp.partition)),
                                None,
                            )
                        } else {
                            m.assignment
                        };
                    dm
                })
                .collect();
        }
    }
    d
}

/// DeleteGroups v0-2: only empty groups can be deleted.
pub async fn delete_groups(state: &BrokerState, req: DeleteGroupsRequest) -> Reply {
    let mut r = DeleteGroupsResponse::default();
    for g in req.groups_names {
        let group = g.0.to_string();
        let result = match check_group_id(&group) {
            Ok(()) => state.groups.delete(&group).await,
            Err(e) => Err(e),
        };
        let mut res = DeletableGroupResult::default();
        res.group_id = g;
        if let Err(e) = result {
            log_refusal("DeleteGroups", &group, &e);
            res.error_code = errors::group(&e).0;
        } else {
            info!(group, "group deleted");
        }
        r.results.push(res);
    }
    Reply::new(ResponseKind::DeleteGroups(r))
}

// ---------------------------------------------------------------------------------------------
// KIP-848: ConsumerGroupHeartbeat / ConsumerGroupDescribe
// ---------------------------------------------------------------------------------------------

/// ConsumerGroupHeartbeat and ConsumerGroupDescribe name a group of the other protocol
/// GROUP_ID_NOT_FOUND, as Kafka does.
fn consumer_api_error(e: &GroupError, group: &str) -> (i16, String) {
    match e {
        GroupError::GroupIdTypeMismatch => (
            code::GROUP_ID_NOT_FOUND,
            format!(
                "group {group:?} is a classic group with members; it cannot be used with \
                 group.protocol=consumer until its members leave"
            ),
        ),
        other => errors::group(other),
    }
}

/// ConsumerGroupHeartbeat v0-1.
pub async fn consumer_group_heartbeat(
    state: &BrokerState,
    req: ConsumerGroupHeartbeatRequest,
    v: i16,
    client: &ClientInfo,
) -> Reply {
    let group = req.group_id.0.to_string();
    let hb = ConsumerHeartbeatRequest {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: opt_s(req.instance_id),
        rack_id: opt_s(req.rack_id),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|n| n.0.to_string()).collect()),
        subscribed_topic_regex: if v >= 1 {
            opt_s(req.subscribed_topic_regex)
        } else {
            None
        },
        server_assignor: opt_s(req.server_assignor),
        owned_partitions: req.topic_partitions.map(|tps| {
            tps.into_iter()
                .map(|tp| (tp.topic_id, tp.partitions))
                .collect()
        }),
        client_id: client.client_id.clone(),
        client_host: client.client_host.clone(),
    };
    let result = match check_group_id(&group) {
        Ok(()) => state.groups.consumer_heartbeat(&group, hb).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        log_refusal("ConsumerGroupHeartbeat", &group, e);
    }
    Reply::new(ResponseKind::ConsumerGroupHeartbeat(
        consumer_group_heartbeat_response(&group, result),
    ))
}

pub(crate) fn consumer_group_heartbeat_response(
    group: &str,
    result: Result<ConsumerHeartbeatResponse, GroupError>,
) -> ConsumerGroupHeartbeatResponse {
    let mut r = ConsumerGroupHeartbeatResponse::default();
    match result {
        Ok(hb) => {
            r.member_id = Some(s(hb.member_id));
            r.member_epoch = hb.member_epoch;
            r.heartbeat_interval_ms = hb.heartbeat_interval_ms;
            r.assignment = hb.assignment.map(|a| {
                let mut out = cgh::Assignment::default();
                out.topic_partitions = a
                    .into_iter()
                    .map(|(id, partitions)| {
                        let mut tp = cgh::TopicPartitions::default();
                        tp.topic_id = id;
                        tp.partitions = partitions;
                        tp
                    })
                    .collect();
                out
            });
        }
        Err(e) => {
            let (c, msg) = consumer_api_error(&e, group);
            r.error_code = c;
            r.error_message = Some(s(msg));
        }
    }
    r
}

/// ConsumerGroupDescribe v0-1 (consumer-protocol groups only; a classic group is
/// GROUP_ID_NOT_FOUND, as Kafka answers).
pub async fn consumer_group_describe(
    state: &BrokerState,
    req: ConsumerGroupDescribeRequest,
    v: i16,
) -> Reply {
    let mut r = ConsumerGroupDescribeResponse::default();
    let include_operations = req.include_authorized_operations;
    for g in req.group_ids {
        let group = g.0.to_string();
        let result = match check_group_id(&group) {
            Ok(()) => state.groups.describe(&group).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            log_refusal("ConsumerGroupDescribe", &group, e);
        }
        let ids = |topic: &str| state.controller.topic(topic).map(|t| t.id);
        let mut d = consumer_described_group(v, g, result, &ids);
        if include_operations && d.error_code == 0 {
            d.authorized_operations = super::admin::GROUP_AUTHORIZED_OPERATIONS;
        }
        r.groups.push(d);
    }
    Reply::new(ResponseKind::ConsumerGroupDescribe(r))
}

pub(crate) fn consumer_described_group(
    v: i16,
    group_id: GroupId,
    result: Result<GroupDescription, GroupError>,
    topic_id: &dyn Fn(&str) -> Option<Uuid>,
) -> cgd::DescribedGroup {
    let group = group_id.0.to_string();
    let mut d = cgd::DescribedGroup::default();
    d.group_id = group_id;
    let desc = match result {
        Ok(desc) if desc.state == "Dead" => {
            d.error_code = code::GROUP_ID_NOT_FOUND;
            d.error_message = Some(s(format!("group {group:?} does not exist")));
            return d;
        }
        Ok(desc) if desc.kind != GroupKind::Consumer => {
            d.error_code = code::GROUP_ID_NOT_FOUND;
            d.error_message = Some(s(format!(
                "group {group:?} is not a consumer-protocol group (it uses the classic \
                 protocol; describe it with DescribeGroups)"
            )));
            return d;
        }
        Ok(desc) => desc,
        Err(e) => {
            let (c, msg) = consumer_api_error(&e, &group);
            d.error_code = c;
            d.error_message = Some(s(msg));
            return d;
        }
    };
    d.group_state = s(desc.state);
    d.group_epoch = desc.generation;
    d.assignment_epoch = desc.generation;
    d.assignor_name = s(desc.protocol);
    let to_assignment = |parts: &[GroupTopicPartition]| {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in parts {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        let mut assignment = cgd::Assignment::default();
        assignment.topic_partitions = by_topic
            .into_iter()
            .map(|(topic, mut partitions)| {
                partitions.sort_unstable();
                let mut tp = cgd::TopicPartitions::default();
                tp.topic_id = topic_id(topic).unwrap_or_else(Uuid::nil);
                tp.topic_name = TopicName(s(topic.to_owned()));
                tp.partitions = partitions;
                tp
            })
            .collect();
        assignment
    };
    d.members = desc
        .members
        .into_iter()
        .map(|m| {
            let assignment = to_assignment(&m.assigned);
            let mut member = cgd::Member::default();
            member.member_id = s(m.member_id);
            member.instance_id = m.group_instance_id.map(s);
            member.member_epoch = m.member_epoch;
            member.client_id = s(m.client_id);
            member.client_host = s(m.client_host);
            // Kafka's tools (kafka-consumer-groups --describe --members --verbose) and
            // franz-go's kadm show what each member subscribed to and its target assignment.
            if let Some(c) = m.consumer {
                member.subscribed_topic_names = c
                    .subscribed_topic_names
                    .into_iter()
                    .map(|n| TopicName(s(n)))
                    .collect();
                member.subscribed_topic_regex = c.subscribed_topic_regex.map(s);
                member.rack_id = c.rack_id.map(s);
                member.target_assignment = to_assignment(&c.target);
            } else {
                member.target_assignment = assignment.clone();
            }
            member.assignment = assignment;
            if v >= 1 {
                member.member_type = MEMBER_TYPE_CONSUMER;
            }
            member
        })
        .collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;
    use rivulet_actors::group::{ConsumerMemberDescription, JoinedMember, MemberDescription};

    fn encodes<T: Encodable>(msg: &T, versions: std::ops::RangeInclusive<i16>, what: &str) {
        for v in versions {
            let mut buf = BytesMut::new();
            msg.encode(&mut buf, v)
                .unwrap_or_else(|e| panic!("{what} v{v} does not encode: {e}"));
        }
    }

    fn tp(topic: &str, partition: i32) -> GroupTopicPartition {
        GroupTopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    #[test]
    fn find_coordinator_every_version() {
        let keys = vec!["g1".to_string(), "g2".to_string()];
        let ok = CoordinatorAnswer {
            node_id: 2,
            host: "h".into(),
            port: 9092,
            error_code: 0,
            error_message: None,
        };
        let err = CoordinatorAnswer::error(code::COORDINATOR_NOT_AVAILABLE, "wait");
        for v in 0..=6 {
            let r = find_coordinator_response(v, &keys, vec![ok.clone(), err.clone()]);
            encodes(&r, v..=v, "FindCoordinator");
            if v >= 4 {
                assert_eq!(r.coordinators.len(), 2);
                assert_eq!(r.coordinators[1].error_code, 15);
            } else {
                assert_eq!(r.node_id.0, 2);
            }
            let r = find_coordinator_response(v, &keys[..1], vec![err.clone()]);
            encodes(&r, v..=v, "FindCoordinator error");
        }
    }

    #[test]
    fn join_group_every_version() {
        let ok = JoinResponse {
            generation_id: 3,
            protocol_type: "consumer".into(),
            protocol_name: "range".into(),
            leader: "m1".into(),
            member_id: "m1".into(),
            skip_assignment: true,
            members: vec![JoinedMember {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                metadata: Bytes::from_static(b"meta"),
            }],
        };
        for v in 0..=9 {
            let r = join_group_response(v, "", Ok(ok.clone()));
            encodes(&r, v..=v, "JoinGroup");
            assert_eq!(r.generation_id, 3);
            let r = join_group_response(v, "", Err(GroupError::MemberIdRequired("new-id".into())));
            encodes(&r, v..=v, "JoinGroup member id required");
            assert_eq!(r.error_code, 79);
            assert_eq!(r.member_id.as_str(), "new-id");
            let r = join_group_response(v, "old", Err(GroupError::UnknownMemberId));
            encodes(&r, v..=v, "JoinGroup error");
            assert_eq!(r.member_id.as_str(), "old");
        }
    }

    #[test]
    fn sync_heartbeat_leave_every_version() {
        let ok = SyncResponse {
            protocol_type: "consumer".into(),
            protocol_name: "range".into(),
            assignment: Bytes::from_static(b"a"),
        };
        for v in 0..=5 {
            encodes(&sync_group_response(v, Ok(ok.clone())), v..=v, "SyncGroup");
            encodes(
                &sync_group_response(v, Err(GroupError::RebalanceInProgress)),
                v..=v,
                "SyncGroup error",
            );
        }
        let outcomes = vec![
            LeaveOutcome {
                member_id: "m1".into(),
                group_instance_id: None,
                error: None,
            },
            LeaveOutcome {
                member_id: "m2".into(),
                group_instance_id: Some("i2".into()),
                error: Some(GroupError::UnknownMemberId),
            },
        ];
        for v in 0..=5 {
            let r = leave_group_response(v, Ok(outcomes.clone()));
            encodes(&r, v..=v, "LeaveGroup");
            if v >= 3 {
                assert_eq!(r.members.len(), 2);
                assert_eq!(r.members[1].error_code, 25);
                assert_eq!(r.error_code, 0);
            } else {
                assert_eq!(r.error_code, 0, "first member left fine");
            }
            let r = leave_group_response(v, Err(GroupError::NotCoordinator));
            assert_eq!(r.error_code, 16);
            encodes(&r, v..=v, "LeaveGroup error");
        }
        let r = leave_group_response(1, Ok(outcomes[1..].to_vec()));
        assert_eq!(r.error_code, 25);
    }

    #[test]
    fn offset_commit_every_version() {
        let asked = vec![("a".to_string(), vec![0, 1]), ("b".to_string(), vec![0])];
        let ok: Result<PartitionOutcomes, GroupError> = Ok(vec![
            (tp("a", 0), None),
            (tp("a", 1), Some(GroupError::OffsetMetadataTooLarge)),
            (tp("b", 0), None),
        ]);
        let r = offset_commit_response(&asked, &ok);
        assert_eq!(r.topics[0].partitions[1].error_code, 12);
        assert_eq!(r.topics[1].partitions[0].error_code, 0);
        encodes(&r, 2..=9, "OffsetCommit");
        let r = offset_commit_response(&asked, &Err(GroupError::IllegalGeneration));
        assert!(r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .all(|p| p.error_code == 22));
        encodes(&r, 2..=9, "OffsetCommit error");
    }

    fn committed(offset: i64) -> Option<CommittedOffset> {
        Some(CommittedOffset {
            offset,
            leader_epoch: 4,
            metadata: "m".into(),
            commit_timestamp_ms: 0,
        })
    }

    #[test]
    fn offset_fetch_every_version() {
        let asked = vec![tp("a", 0), tp("a", 1), tp("b", 2)];
        // The coordinator leaves out a partition it knows nothing of: it comes back as -1.
        let list = vec![(tp("b", 2), committed(7)), (tp("a", 0), committed(5))];
        let grouped = group_fetched(Some(&asked), list.clone());
        assert_eq!(grouped.len(), 2);
        assert_eq!(grouped[0].1[1], (1, None));
        for v in 1..=7 {
            let mut r = OffsetFetchResponse::default();
            offset_fetch_single(&mut r, v, Some(&asked), Ok(grouped.clone()));
            assert_eq!(r.topics[0].partitions[0].committed_offset, 5);
            assert_eq!(r.topics[0].partitions[1].committed_offset, -1);
            assert_eq!(r.topics[0].partitions[1].error_code, 0);
            encodes(&r, v..=v, "OffsetFetch");
            let mut r = OffsetFetchResponse::default();
            offset_fetch_single(&mut r, v, Some(&asked), Err(GroupError::NotCoordinator));
            if v >= 2 {
                assert_eq!(r.error_code, 16);
                assert!(r.topics.is_empty());
            } else {
                assert_eq!(r.topics[0].partitions[0].error_code, 16);
            }
            encodes(&r, v..=v, "OffsetFetch error");
        }
        let all = group_fetched(None, list);
        assert_eq!(all[0].0, "a");
        let g = offset_fetch_group(GroupId(s("g")), Ok(all));
        let bad = offset_fetch_group(GroupId(s("h")), Err(GroupError::StaleMemberEpoch));
        assert_eq!(bad.error_code, 113);
        let mut r = OffsetFetchResponse::default();
        r.groups = vec![g, bad];
        encodes(&r, 8..=9, "OffsetFetch batch");
    }

    #[test]
    fn offset_delete_v0() {
        let asked = vec![("a".to_string(), vec![0])];
        let r = offset_delete_response(
            &asked,
            &Ok(vec![(tp("a", 0), Some(GroupError::GroupSubscribedToTopic))]),
        );
        assert_eq!(r.topics[0].partitions[0].error_code, 86);
        encodes(&r, 0..=0, "OffsetDelete");
        let r = offset_delete_response(&asked, &Err(GroupError::GroupIdNotFound));
        assert_eq!(r.error_code, 69);
        encodes(&r, 0..=0, "OffsetDelete error");
    }

    fn listing(id: &str, state: &str, kind: GroupKind) -> GroupListing {
        GroupListing {
            group_id: id.into(),
            protocol_type: "consumer".into(),
            state: state.into(),
            kind,
        }
    }

    #[test]
    fn list_groups_filters() {
        let groups = vec![
            listing("a", "Stable", GroupKind::Classic),
            listing("b", "Empty", GroupKind::Consumer),
        ];
        let mut req = ListGroupsRequest::default();
        for v in 0..=5 {
            let r = list_groups_response(v, &req, groups.clone());
            assert_eq!(r.groups.len(), 2);
            encodes(&r, v..=v, "ListGroups");
        }
        req.states_filter = vec![s("stable")];
        assert_eq!(
            list_groups_response(3, &req, groups.clone()).groups.len(),
            2
        );
        let r = list_groups_response(4, &req, groups.clone());
        assert_eq!(r.groups.len(), 1);
        assert_eq!(r.groups[0].group_id.0.as_str(), "a");
        req.states_filter.clear();
        req.types_filter = vec![s("Consumer")];
        let r = list_groups_response(5, &req, groups);
        assert_eq!(r.groups.len(), 1);
        assert_eq!(r.groups[0].group_type.as_str(), "consumer");
    }

    fn description(kind: GroupKind) -> GroupDescription {
        GroupDescription {
            group_id: "g".into(),
            state: "Stable".into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            kind,
            generation: 5,
            members: vec![MemberDescription {
                member_id: "m1".into(),
                group_instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                metadata: Bytes::new(),
                assignment: Bytes::new(),
                assigned: vec![tp("t", 1), tp("t", 0)],
                member_epoch: 5,
                consumer: (kind == GroupKind::Consumer).then(|| ConsumerMemberDescription {
                    subscribed_topic_names: vec!["t".into(), "u".into()],
                    subscribed_topic_regex: Some("t.*".into()),
                    rack_id: Some("r1".into()),
                    // Still moving: partition 1 is being revoked, 2 comes next.
                    target: vec![tp("t", 0), tp("t", 2)],
                }),
            }],
        }
    }

    #[test]
    fn describe_groups_every_version() {
        for v in 0..=6 {
            let d = described_group(v, GroupId(s("g")), Ok(description(GroupKind::Consumer)));
            // Consumer-protocol members get a classic assignment encoding.
            let a = consumer_protocol::decode_assignment(&d.members[0].member_assignment)
                .expect("assignment");
            assert_eq!(a.partitions, vec![("t".to_string(), vec![0, 1])]);
            let mut r = DescribeGroupsResponse::default();
            r.groups = vec![
                d,
                described_group(v, GroupId(s("x")), Err(GroupError::NotCoordinator)),
            ];
            encodes(&r, v..=v, "DescribeGroups");
        }
        let d = described_group(5, GroupId(s("g")), Ok(description(GroupKind::Classic)));
        assert!(d.members[0].member_assignment.is_empty());
        // An unknown group: `Dead` up to v5, GROUP_ID_NOT_FOUND from v6 (Kafka 4.x).
        let mut dead = description(GroupKind::Classic);
        dead.state = "Dead".into();
        dead.members.clear();
        let d5 = described_group(5, GroupId(s("x")), Ok(dead.clone()));
        assert_eq!((d5.error_code, d5.group_state.as_str()), (0, "Dead"));
        let d6 = described_group(6, GroupId(s("x")), Ok(dead));
        assert_eq!(d6.error_code, code::GROUP_ID_NOT_FOUND);
        assert_eq!(d6.error_message.as_deref(), Some("Group x not found."));
        let mut r = DeleteGroupsResponse::default();
        let mut res = DeletableGroupResult::default();
        res.error_code = code::NON_EMPTY_GROUP;
        r.results.push(res);
        encodes(&r, 0..=2, "DeleteGroups");
    }

    #[test]
    fn consumer_group_heartbeat_every_version() {
        let ok = ConsumerHeartbeatResponse {
            member_id: "m".into(),
            member_epoch: 3,
            heartbeat_interval_ms: 5000,
            assignment: Some(vec![(Uuid::new_v4(), vec![0, 1])]),
        };
        let r = consumer_group_heartbeat_response("g", Ok(ok));
        assert_eq!(
            r.assignment.as_ref().map(|a| a.topic_partitions.len()),
            Some(1)
        );
        encodes(&r, 0..=1, "ConsumerGroupHeartbeat");
        let r = consumer_group_heartbeat_response("g", Err(GroupError::GroupIdTypeMismatch));
        assert_eq!(r.error_code, 69);
        encodes(&r, 0..=1, "ConsumerGroupHeartbeat error");
        let r = consumer_group_heartbeat_response("g", Err(GroupError::FencedMemberEpoch));
        assert_eq!(r.error_code, 110);
    }

    #[test]
    fn consumer_group_describe_every_version() {
        let id = Uuid::new_v4();
        let ids = move |t: &str| (t == "t").then_some(id);
        for v in 0..=1 {
            let d = consumer_described_group(
                v,
                GroupId(s("g")),
                Ok(description(GroupKind::Consumer)),
                &ids,
            );
            assert_eq!(d.error_code, 0);
            let m = &d.members[0];
            let tps = &m.assignment.topic_partitions;
            assert_eq!(tps[0].topic_id, id);
            assert_eq!(tps[0].partitions, vec![0, 1]);
            // Found by franz-go's kadm: members' subscriptions and targets were left empty.
            let names: Vec<&str> = m
                .subscribed_topic_names
                .iter()
                .map(|n| n.0.as_str())
                .collect();
            assert_eq!(names, ["t", "u"]);
            assert_eq!(m.subscribed_topic_regex.as_deref(), Some("t.*"));
            assert_eq!(m.rack_id.as_deref(), Some("r1"));
            let target = &m.target_assignment.topic_partitions;
            assert_eq!(target[0].topic_id, id);
            assert_eq!(target[0].partitions, vec![0, 2]);
            let classic = consumer_described_group(
                v,
                GroupId(s("c")),
                Ok(description(GroupKind::Classic)),
                &ids,
            );
            assert_eq!(classic.error_code, 69);
            let mut r = ConsumerGroupDescribeResponse::default();
            r.groups = vec![d, classic];
            encodes(&r, v..=v, "ConsumerGroupDescribe");
        }
    }
}
