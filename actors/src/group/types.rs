//! The group coordinator's request, response and error types.
//!
//! They mirror the Kafka group APIs closely but are not wire types: the broker translates
//! between them and the Kafka protocol, so this crate stays free of protocol versions.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a group request failed. The broker maps each to its Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// This node does not coordinate the group (any more): find the coordinator again.
    #[error("this node is not the group's coordinator")]
    NotCoordinator,
    /// The coordinator is still reading the group's state from the offsets topic.
    #[error("the coordinator is loading the group's state")]
    CoordinatorLoadInProgress,
    /// The offsets topic has no leader, or cannot take writes right now.
    #[error("the group coordinator is not available: {0}")]
    CoordinatorNotAvailable(String),
    /// The member is not (or no longer) in the group.
    #[error("unknown member id")]
    UnknownMemberId,
    /// The generation (classic) is not the group's current one.
    #[error("illegal generation")]
    IllegalGeneration,
    /// The group is rebalancing: rejoin.
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    /// First join of a member: rejoin with this member id.
    #[error("member id required")]
    MemberIdRequired(String),
    /// The member's protocols share nothing with the group's, or the protocol type differs.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// The session timeout is outside the broker's bounds.
    #[error("session timeout outside [{min_ms}, {max_ms}] ms")]
    InvalidSessionTimeout {
        /// Lower bound.
        min_ms: u64,
        /// Upper bound.
        max_ms: u64,
    },
    /// The group already has `max_size` members.
    #[error("the group is full")]
    GroupMaxSizeReached,
    /// Another member now uses this `group.instance.id`.
    #[error("fenced instance id")]
    FencedInstanceId,
    /// The group does not exist.
    #[error("group not found")]
    GroupIdNotFound,
    /// The group still has members.
    #[error("the group is not empty")]
    NonEmptyGroup,
    /// An offset of a topic the group consumes cannot be deleted.
    #[error("the group is subscribed to the topic")]
    GroupSubscribedToTopic,
    /// Empty or otherwise unusable group id.
    #[error("invalid group id")]
    InvalidGroupId,
    /// The commit's metadata string is longer than allowed.
    #[error("offset metadata too large")]
    OffsetMetadataTooLarge,
    /// The topic or partition does not exist.
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// Consumer protocol: the member's epoch is behind; it must rejoin with epoch 0.
    #[error("fenced member epoch")]
    FencedMemberEpoch,
    /// Consumer protocol: a commit or fetch carried an epoch that is not the member's current.
    #[error("stale member epoch")]
    StaleMemberEpoch,
    /// Consumer protocol: the instance id is still held by a member that has not left.
    #[error("unreleased instance id")]
    UnreleasedInstanceId,
    /// Consumer protocol: no server assignor of that name.
    #[error("unsupported assignor {0:?}")]
    UnsupportedAssignor(String),
    /// The group exists with the other protocol (classic vs consumer).
    #[error("the group uses another protocol")]
    GroupIdTypeMismatch,
    /// A malformed request.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Consumer protocol: the subscription regex does not compile (RE2 syntax).
    #[error("{0}")]
    InvalidRegularExpression(String),
    /// The write to the offsets topic did not complete in time.
    #[error("request timed out: {0}")]
    RequestTimedOut(String),
    /// A stable offset was asked for, and a transaction not yet ended holds a commit for the
    /// partition: retry once it ends (KIP-447).
    #[error("an open transaction holds an offset commit for the partition; retry")]
    UnstableOffsetCommit,
}

/// A write to `__consumer_offsets` that was not acknowledged, as the group APIs report it
/// (Kafka's coordinator does the same translation: clients look the coordinator up again).
impl From<crate::write::WriteError> for GroupError {
    fn from(e: crate::write::WriteError) -> Self {
        use crate::write::WriteError as W;
        match e {
            W::UnknownReplica { .. }
            | W::NotLeader { .. }
            | W::LeadershipMoved { .. }
            | W::LeaseLapsed { .. } => GroupError::NotCoordinator,
            W::TimedOut { .. } => GroupError::RequestTimedOut(e.to_string()),
            W::NotEnoughReplicas { .. }
            | W::NotEnoughReplicasAfterAppend { .. }
            | W::Rejected(_)
            | W::ReplicaFailed { .. }
            | W::ReplicaStopped { .. } => GroupError::CoordinatorNotAvailable(e.to_string()),
        }
    }
}

/// A topic and partition, by name.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct GroupTopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

/// One protocol a classic member supports (its name and the assignor metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberProtocol {
    /// Protocol (assignor) name, e.g. `range`, `roundrobin`, `cooperative-sticky`.
    pub name: String,
    /// Opaque metadata (the subscription) the leader's assignor reads.
    pub metadata: Vec<u8>,
}

/// Classic JoinGroup.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Empty on the first join.
    pub member_id: String,
    /// Static membership (`group.instance.id`).
    pub group_instance_id: Option<String>,
    /// Normally `consumer`.
    pub protocol_type: String,
    /// The member's protocols in preference order.
    pub protocols: Vec<MemberProtocol>,
    /// Session timeout.
    pub session_timeout: Duration,
    /// How long the group waits for members to rejoin (v1+; equal to the session timeout before).
    pub rebalance_timeout: Duration,
    /// Client id from the request header.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// v4+: an unknown member must first get a member id (MEMBER_ID_REQUIRED).
    pub require_known_member_id: bool,
    /// Why the member joins (v8+), for the logs.
    pub reason: Option<String>,
}

/// One member as the leader sees it in a JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// The member's metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// Classic JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    /// New generation.
    pub generation_id: i32,
    /// Protocol type of the group.
    pub protocol_type: String,
    /// Chosen protocol.
    pub protocol_name: String,
    /// Leader's member id.
    pub leader: String,
    /// The member's id.
    pub member_id: String,
    /// True for a static leader that rejoined without a rebalance: it must not reassign.
    pub skip_assignment: bool,
    /// Every member with its metadata (only for the leader; empty for the others).
    pub members: Vec<JoinedMember>,
}

/// Classic SyncGroup.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// Member id.
    pub member_id: String,
    /// Generation from the join.
    pub generation_id: i32,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// v5+: must match the group's.
    pub protocol_type: Option<String>,
    /// v5+: must match the group's.
    pub protocol_name: Option<String>,
    /// From the leader: every member's assignment. Empty from the others.
    pub assignments: Vec<(String, Bytes)>,
}

/// Classic SyncGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    /// Protocol type.
    pub protocol_type: String,
    /// Protocol name.
    pub protocol_name: String,
    /// This member's assignment.
    pub assignment: Bytes,
}

/// Classic Heartbeat.
#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    /// Member id.
    pub member_id: String,
    /// Generation.
    pub generation_id: i32,
    /// Static instance id.
    pub group_instance_id: Option<String>,
}

/// One member leaving (LeaveGroup v3+ names several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeavingMember {
    /// Member id (may be empty for a static member named by instance id).
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
}

/// The per-member outcome of a LeaveGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveOutcome {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Why this member could not leave.
    pub error: Option<GroupError>,
}

/// One offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetToCommit {
    /// Which partition.
    pub tp: GroupTopicPartition,
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: Option<String>,
}

/// OffsetCommit (classic generation or consumer-protocol member epoch; -1 for a simple commit).
#[derive(Debug, Clone)]
pub struct CommitRequest {
    /// Member id, empty for a commit from outside the group (admin, `assign()` consumers).
    pub member_id: String,
    /// Classic generation or consumer member epoch; -1 for a simple commit.
    pub generation_id: i32,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// The offsets.
    pub offsets: Vec<OffsetToCommit>,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: String,
    /// When it was committed (ms since the epoch).
    pub commit_timestamp_ms: i64,
}

/// OffsetFetch for one group.
#[derive(Debug, Clone)]
pub struct FetchOffsetsRequest {
    /// Partitions, or `None` for all the group has.
    pub partitions: Option<Vec<GroupTopicPartition>>,
    /// Consumer protocol (v9+): the member and epoch, checked when given.
    pub member: Option<(String, i32)>,
    /// Refuse offsets an open transaction may still change (OffsetFetch v7+
    /// `require_stable`, sent by read_committed consumers).
    pub require_stable: bool,
}

/// TxnOffsetCommit: offsets committed inside a transaction.
#[derive(Debug, Clone)]
pub struct TxnCommitRequest {
    /// The transaction's producer id.
    pub producer_id: i64,
    /// Its producer epoch.
    pub producer_epoch: i16,
    /// Member id (v3+, KIP-447), empty otherwise.
    pub member_id: String,
    /// Classic generation (v3+), -1 otherwise.
    pub generation_id: i32,
    /// Static instance id (v3+).
    pub group_instance_id: Option<String>,
    /// The offsets.
    pub offsets: Vec<OffsetToCommit>,
}

/// ConsumerGroupHeartbeat (KIP-848).
#[derive(Debug, Clone)]
pub struct ConsumerHeartbeatRequest {
    /// Member id (client-generated from v1; empty on a v0 first join).
    pub member_id: String,
    /// 0 joins, -1 leaves, -2 leaves temporarily (static member), else the current epoch.
    pub member_epoch: i32,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Rack.
    pub rack_id: Option<String>,
    /// -1 if unchanged.
    pub rebalance_timeout_ms: i32,
    /// `None` if unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// `None` if unchanged.
    pub subscribed_topic_regex: Option<String>,
    /// `None` if unchanged.
    pub server_assignor: Option<String>,
    /// Partitions the member owns now; `None` if unchanged.
    pub owned_partitions: Option<Vec<(Uuid, Vec<i32>)>>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
}

/// ConsumerGroupHeartbeat answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerHeartbeatResponse {
    /// The member id.
    pub member_id: String,
    /// The member's epoch now.
    pub member_epoch: i32,
    /// How often to heartbeat.
    pub heartbeat_interval_ms: i32,
    /// The member's full assignment, when it changed (or on join); `None` if unchanged.
    pub assignment: Option<Vec<(Uuid, Vec<i32>)>>,
}

/// Which protocol a group speaks.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub enum GroupKind {
    /// JoinGroup / SyncGroup with client-side assignment.
    Classic,
    /// ConsumerGroupHeartbeat with server-side assignment (KIP-848).
    Consumer,
}

impl GroupKind {
    /// The name ListGroups v5 reports.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::Classic => "classic",
            GroupKind::Consumer => "consumer",
        }
    }
}

/// A group in ListGroups.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type (`consumer`, or empty for a group with only offsets).
    pub protocol_type: String,
    /// State name as Kafka spells it (`Stable`, `Empty`, ...).
    pub state: String,
    /// Protocol family.
    pub kind: GroupKind,
}

/// A member in DescribeGroups / `rivulet group describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Classic: the member's metadata for the chosen protocol. Empty for consumer groups.
    pub metadata: Bytes,
    /// Classic: the member's assignment bytes. Empty for consumer groups.
    pub assignment: Bytes,
    /// Partitions the member owns, when the coordinator knows them: consumer groups always,
    /// classic groups when the assignment decodes as Kafka's consumer protocol.
    pub assigned: Vec<GroupTopicPartition>,
    /// Consumer protocol: the member's epoch (the generation for classic members).
    pub member_epoch: i32,
    /// Consumer protocol only (`None` for classic members): what the member subscribed to
    /// and the coordinator's target for it, which ConsumerGroupDescribe reports.
    pub consumer: Option<ConsumerMemberDescription>,
}

/// The KIP-848 part of a member's description.
#[derive(
    Debug, Clone, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct ConsumerMemberDescription {
    /// Topic names the member subscribed to, sorted.
    pub subscribed_topic_names: Vec<String>,
    /// The member's subscription regex, if it subscribed by pattern.
    pub subscribed_topic_regex: Option<String>,
    /// The member's rack.
    pub rack_id: Option<String>,
    /// The partitions the coordinator's current target gives the member; it differs from
    /// `assigned` while the member is still revoking or has not yet been given partitions.
    pub target: Vec<GroupTopicPartition>,
}

/// A group in DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State name as Kafka spells it.
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen protocol (classic) or server assignor (consumer).
    pub protocol: String,
    /// Protocol family.
    pub kind: GroupKind,
    /// Generation (classic) or group epoch (consumer).
    pub generation: i32,
    /// Members.
    pub members: Vec<MemberDescription>,
}
