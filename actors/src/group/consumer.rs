//! The consumer group protocol of KIP-848 (ConsumerGroupHeartbeat): the coordinator computes
//! the assignment itself and moves partitions incrementally.
//!
//! # Model
//!
//! * **Group epoch**: bumped whenever membership, a member's subscription (topic names, regex,
//!   requested server assignor) or the metadata of the subscribed topics (topics appearing or
//!   disappearing, partition counts, re-created topics) changes.
//! * **Target assignment**: computed by the group's assignor (see [`super::assignor`]) whenever
//!   the group epoch is ahead of the *assignment epoch*; the assignment epoch then becomes the
//!   group epoch. The target is where every member should end up.
//! * **Current assignment** of a member: what it may consume now. It moves toward the member's
//!   target one heartbeat at a time, and no partition is ever in the current assignment (or the
//!   pending revocations) of two members at once:
//!   1. partitions of the current assignment missing from the target are revoked first: the
//!      member keeps its epoch, gets its assignment minus those, and they stay *pending
//!      revocation* (still owned) until a later heartbeat of the member reports owned partitions
//!      without them;
//!   2. once nothing is left to revoke, the member moves to the assignment epoch and gets its
//!      target, minus the partitions another member still owns (*unreleased*); those are added
//!      on a later heartbeat, once free.
//!
//! # Simplifications (relative to Kafka 4.x)
//!
//! * The group's assignor is the server assignor most members ask for (ties: the one listed
//!   first in [`GroupConfig::consumer_assignors`]), else the first configured one. Only
//!   `uniform` and `range` exist; a configured name this module does not implement is refused
//!   as [`GroupError::UnsupportedAssignor`] when requested, and never used as a default.
//! * The `range` assignor is Kafka's classic range (not sticky); `uniform` is sticky and
//!   balanced but not rack-aware.
//! * Regex subscriptions use RE2 syntax with whole-name matching, as Kafka's RE2/J (see
//!   [`TopicPattern`]), resolved synchronously against the catalog on every heartbeat and tick;
//!   internal topics (`__` prefix) never match a regex. An invalid one is
//!   [`GroupError::InvalidRegularExpression`].
//! * A revocation is acknowledged only by a heartbeat *after* the one that asked for it, whose
//!   `owned_partitions` no longer contain the revoked partitions (`None`, unchanged, means still
//!   owned). Kafka also accepts the owned list of the very heartbeat that computes the
//!   revocation; waiting one more heartbeat is stricter and cannot hand a partition out twice.
//!   Joins (epoch 0) are the exception: a joining member owns nothing but what it reports.
//! * A static member leaving with epoch -2 keeps its slot and its current assignment reserved
//!   (trimmed to its target whenever the target changes, since it consumes nothing) until its
//!   session timeout; a join with the same instance id and a new member id takes the slot over
//!   (its assignment and target) without bumping the group epoch unless the subscription
//!   differs. A join with the same instance id while the holder has not left with -2 fails with
//!   [`GroupError::UnreleasedInstanceId`] (unless it is the same member id: then it is a rejoin).
//! * A join (epoch 0) of a known member id is a fresh start of that member: its epoch resets
//!   and its current assignment is dropped (the client released everything before rejoining);
//!   it then gets its target again. The group epoch is bumped only if its subscription changed.
//!   (A static member that left with -2 and rejoins under the same member id gets its reserved
//!   assignment back instead.)
//! * A member silent for its rebalance timeout (its `max.poll.interval.ms`) plus two heartbeat
//!   intervals is removed even when the session timeout is longer (see [`session_timeout`]):
//!   librdkafka stops heartbeating when its application stops polling and leaves only once it
//!   polls again. Kafka waits for the session timeout.
//! * Expirations in one [`ConsumerGroup::tick`] (sessions, rebalance timeouts) and the metadata
//!   refresh bump the group epoch once, not once per member removed; likewise one heartbeat
//!   bumps it at most once. Rack ids are stored but not used by the assignors.
//! * Heartbeats of unknown members (expired, fenced, replaced) get
//!   [`GroupError::UnknownMemberId`]; a heartbeat of a static member that left with -2 gets
//!   [`GroupError::FencedMemberEpoch`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::assignor::{self, AssignorMember, AssignorTopic, TopicPartitions, SUPPORTED_ASSIGNORS};
use super::types::{
    ConsumerHeartbeatRequest, ConsumerHeartbeatResponse, ConsumerMemberDescription,
    GroupDescription, GroupError, GroupKind, GroupListing, GroupTopicPartition, MemberDescription,
};
use super::GroupConfig;

/// Member epoch of a join (or rejoin) request.
pub const JOIN_GROUP_MEMBER_EPOCH: i32 = 0;
/// Member epoch of a leave request.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// Member epoch of a static member leaving temporarily (its slot stays reserved).
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// A topic as the assignors see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// Topic id.
    pub id: Uuid,
    /// Partition count.
    pub partitions: i32,
    /// An internal topic (the cluster's policy says which): regex subscriptions skip it.
    pub internal: bool,
}

/// The cluster's topics, as the coordinator needs them (implemented by the broker over the
/// controller's metadata image).
pub trait TopicCatalog: Send + Sync + fmt::Debug {
    /// A topic by name.
    fn topic(&self, name: &str) -> Option<TopicInfo>;
    /// A topic by id.
    fn topic_by_id(&self, id: Uuid) -> Option<TopicInfo>;
    /// Every topic (for regex subscriptions). Internal topics included; callers filter.
    fn topics(&self) -> Vec<TopicInfo>;
    /// This node's controller lease (true while valid), if it has one: a coordinator waiting
    /// for its high watermark gives up as soon as it turns false, since the controller is
    /// about to move the partition. `None` (always valid) without a controller, as in tests.
    fn lease(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        None
    }
    /// The group's own settings (dynamic group configs); none by default.
    fn group_overrides(&self, _group_id: &str) -> super::GroupOverrides {
        super::GroupOverrides::default()
    }
    /// The `min.insync.replicas` a write to `topic` needs, as the cluster's policy decides it
    /// (`rivulet_cluster::policy`). The default, 1, is for catalogs without a controller
    /// (single-replica tests).
    fn min_insync_replicas(&self, _topic: &str) -> i64 {
        1
    }
}

/// A subscribed topic as of the last group epoch (the metadata whose change bumps the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TopicMeta {
    id: Uuid,
    partitions: i32,
    /// Absent from snapshots written before it existed; the next metadata refresh sets it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    internal: bool,
}

/// One member: what it asked for and where it stands. All of it is durable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Member {
    member_id: String,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout_ms: i32,
    /// Sorted, without duplicates.
    subscribed_topic_names: Vec<String>,
    /// `None` when the member does not subscribe by regex.
    subscribed_topic_regex: Option<String>,
    server_assignor: Option<String>,
    member_epoch: i32,
    previous_member_epoch: i32,
    /// The partitions the member may consume now.
    assigned: TopicPartitions,
    /// Partitions it was asked to revoke and has not yet reported released: still its own.
    pending_revocation: TopicPartitions,
    /// A static member that left with epoch -2: its slot waits for its instance to return.
    left_static: bool,
}

impl Member {
    fn same_subscription(&self, other: &Member) -> bool {
        self.subscribed_topic_names == other.subscribed_topic_names
            && self.subscribed_topic_regex == other.subscribed_topic_regex
            && self.server_assignor == other.server_assignor
    }

    /// The epoch as clients and admin tools see it.
    fn visible_epoch(&self) -> i32 {
        if self.left_static {
            LEAVE_GROUP_STATIC_MEMBER_EPOCH
        } else {
            self.member_epoch
        }
    }
}

/// A member's timers and what it was last told; not durable, rebuilt by `after_load`.
#[derive(Debug, Clone, Default)]
struct MemberRuntime {
    session_deadline: Option<Instant>,
    revocation_deadline: Option<Instant>,
    /// The assignment in the last response to the member.
    last_sent: Option<TopicPartitions>,
}

/// A consumer-protocol group: members, epochs, target and current assignments.
///
/// Serialized whole (serde) into `__consumer_offsets` after every change that must survive a
/// coordinator failover; timers are not serialized and restart on load.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumerGroup {
    group_id: String,
    group_epoch: i32,
    assignment_epoch: i32,
    /// The assignor that computed the current target.
    assignor: String,
    members: BTreeMap<String, Member>,
    /// Target assignment by member id.
    target: BTreeMap<String, TopicPartitions>,
    /// The subscribed topics (by name) as of the last group epoch.
    metadata: BTreeMap<String, TopicMeta>,
    #[serde(skip)]
    runtime: HashMap<String, MemberRuntime>,
    /// The members' subscription regexes, compiled (a cache kept by `refresh_metadata`).
    #[serde(skip)]
    compiled: HashMap<String, TopicPattern>,
}

impl Default for ConsumerGroup {
    fn default() -> Self {
        Self::new(String::new())
    }
}

impl ConsumerGroup {
    /// An empty group.
    pub fn new(group_id: String) -> Self {
        Self {
            group_id,
            group_epoch: 0,
            assignment_epoch: 0,
            assignor: String::new(),
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            metadata: BTreeMap::new(),
            runtime: HashMap::new(),
            compiled: HashMap::new(),
        }
    }

    /// Handles one ConsumerGroupHeartbeat. Returns the answer and whether the group's durable
    /// state changed (the coordinator then persists the group before answering).
    pub fn heartbeat(
        &mut self,
        now: Instant,
        req: ConsumerHeartbeatRequest,
        catalog: &dyn TopicCatalog,
        cfg: &GroupConfig,
    ) -> Result<(ConsumerHeartbeatResponse, bool), GroupError> {
        validate_request(&req, cfg)?;
        if req.member_epoch == LEAVE_GROUP_MEMBER_EPOCH
            || req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH
        {
            return self.leave(now, &req, catalog, cfg);
        }

        let joining = req.member_epoch == JOIN_GROUP_MEMBER_EPOCH;
        let owned = req.owned_partitions.as_deref().map(to_partitions);
        let (member_id, before, behind, mut bump) = if joining {
            let (member_id, bump) = self.join(now, &req, cfg)?;
            (member_id, None, false, bump)
        } else {
            let member = self
                .members
                .get(&req.member_id)
                .ok_or(GroupError::UnknownMemberId)?;
            if let Some(instance) = &req.instance_id {
                if member.instance_id.as_ref() != Some(instance) {
                    return Err(GroupError::FencedInstanceId);
                }
            }
            if member.left_static || req.member_epoch > member.member_epoch {
                return Err(GroupError::FencedMemberEpoch);
            }
            // Kafka tolerates a lost response: the previous epoch with owned partitions that
            // are all still assigned.
            let behind = req.member_epoch < member.member_epoch;
            if behind
                && (req.member_epoch != member.previous_member_epoch
                    || !owned
                        .as_ref()
                        .is_some_and(|o| is_subset(o, &member.assigned)))
            {
                return Err(GroupError::FencedMemberEpoch);
            }
            let before = member.clone();
            let Some(member) = self.members.get_mut(&req.member_id) else {
                return Err(GroupError::UnknownMemberId);
            };
            if req.rebalance_timeout_ms >= 0 {
                member.rebalance_timeout_ms = req.rebalance_timeout_ms;
            }
            if let Some(names) = &req.subscribed_topic_names {
                member.subscribed_topic_names = sorted_names(names);
            }
            if let Some(regex) = &req.subscribed_topic_regex {
                member.subscribed_topic_regex = non_empty(regex);
            }
            if let Some(assignor) = &req.server_assignor {
                member.server_assignor = non_empty(assignor);
            }
            if req.rack_id.is_some() {
                member.rack_id.clone_from(&req.rack_id);
            }
            member.client_id.clone_from(&req.client_id);
            member.client_host.clone_from(&req.client_host);
            let bump = !member.same_subscription(&before);
            (req.member_id.clone(), Some(before), behind, bump)
        };

        // One bump for whatever changed: membership, subscription, topic metadata.
        bump |= self.refresh_metadata(catalog);
        if bump {
            self.group_epoch += 1;
        }
        let target_changed = self.maybe_compute_target(cfg);
        self.reconcile(&member_id, now, owned.as_ref(), joining);

        let member = &self.members[&member_id];
        let runtime = self.runtime.entry(member_id.clone()).or_default();
        runtime.session_deadline = Some(now + session_timeout(member, cfg));
        let full_request = req.rebalance_timeout_ms != -1
            && req.subscribed_topic_names.is_some()
            && req.owned_partitions.is_some();
        let assignment = if joining
            || full_request
            || behind
            || runtime.last_sent.as_ref() != Some(&member.assigned)
        {
            runtime.last_sent = Some(member.assigned.clone());
            Some(from_partitions(&member.assigned))
        } else {
            None
        };
        let changed = joining || bump || target_changed || before.as_ref() != Some(member);
        let response = ConsumerHeartbeatResponse {
            member_id,
            member_epoch: member.member_epoch,
            heartbeat_interval_ms: heartbeat_interval_ms(cfg),
            assignment,
        };
        Ok((response, changed))
    }

    /// Adds (or resets) the member of a join request; returns its id and whether the group
    /// epoch must be bumped (a new member, or a subscription that changed).
    fn join(
        &mut self,
        now: Instant,
        req: &ConsumerHeartbeatRequest,
        cfg: &GroupConfig,
    ) -> Result<(String, bool), GroupError> {
        let regex = req.subscribed_topic_regex.as_deref().and_then(non_empty);
        if req.subscribed_topic_names.is_none() && regex.is_none() {
            return Err(GroupError::InvalidRequest(
                "subscribed_topic_names or subscribed_topic_regex is required when joining".into(),
            ));
        }
        if req.rebalance_timeout_ms < 0 {
            return Err(GroupError::InvalidRequest(
                "rebalance_timeout_ms is required when joining".into(),
            ));
        }
        let member_id = if req.member_id.is_empty() {
            Uuid::new_v4().to_string()
        } else {
            req.member_id.clone()
        };
        // A static member whose slot this join takes over.
        let mut replaced: Option<String> = None;
        if let Some(instance) = &req.instance_id {
            if let Some(holder) = self.static_member(instance) {
                if holder.member_id != member_id {
                    if !holder.left_static {
                        return Err(GroupError::UnreleasedInstanceId);
                    }
                    replaced = Some(holder.member_id.clone());
                }
            }
        }
        let known = self.members.contains_key(&member_id);
        if !known && replaced.is_none() {
            if let Some(max) = cfg.max_size {
                if self.members.len() >= max {
                    return Err(GroupError::GroupMaxSizeReached);
                }
            }
        }

        let mut member = Member {
            member_id: member_id.clone(),
            instance_id: req.instance_id.clone(),
            rack_id: req.rack_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            subscribed_topic_names: req
                .subscribed_topic_names
                .as_deref()
                .map(sorted_names)
                .unwrap_or_default(),
            subscribed_topic_regex: regex,
            server_assignor: req.server_assignor.as_deref().and_then(non_empty),
            member_epoch: 0,
            previous_member_epoch: -1,
            assigned: TopicPartitions::new(),
            pending_revocation: TopicPartitions::new(),
            left_static: false,
        };
        let previous = if let Some(old_id) = replaced {
            let Some(old) = self.members.remove(&old_id) else {
                return Err(GroupError::UnknownMemberId);
            };
            self.runtime.remove(&old_id);
            if let Some(target) = self.target.remove(&old_id) {
                self.target.insert(member_id.clone(), target);
            }
            member.assigned.clone_from(&old.assigned);
            Some(old)
        } else {
            let old = self.members.get(&member_id).cloned();
            // A static member returning under its own member id takes its reserved slot back.
            if let Some(old) = old.as_ref().filter(|o| o.left_static) {
                member.assigned.clone_from(&old.assigned);
            }
            old
        };
        let bump = previous
            .as_ref()
            .is_none_or(|old| !old.same_subscription(&member));
        let session = session_timeout(&member, cfg);
        self.members.insert(member_id.clone(), member);
        self.runtime.insert(
            member_id.clone(),
            MemberRuntime {
                session_deadline: Some(now + session),
                ..MemberRuntime::default()
            },
        );
        Ok((member_id, bump))
    }

    /// Epoch -1 (leave) or -2 (static member leaving temporarily).
    fn leave(
        &mut self,
        now: Instant,
        req: &ConsumerHeartbeatRequest,
        catalog: &dyn TopicCatalog,
        cfg: &GroupConfig,
    ) -> Result<(ConsumerHeartbeatResponse, bool), GroupError> {
        let member_id = if !req.member_id.is_empty() {
            req.member_id.clone()
        } else if let Some(instance) = &req.instance_id {
            self.static_member(instance)
                .map(|m| m.member_id.clone())
                .ok_or(GroupError::UnknownMemberId)?
        } else {
            return Err(GroupError::InvalidRequest("member id required".into()));
        };
        let member = self
            .members
            .get_mut(&member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        if let Some(instance) = &req.instance_id {
            if member.instance_id.as_ref() != Some(instance) {
                return Err(GroupError::FencedInstanceId);
            }
        }
        let response = ConsumerHeartbeatResponse {
            member_id: member_id.clone(),
            member_epoch: req.member_epoch,
            heartbeat_interval_ms: heartbeat_interval_ms(cfg),
            assignment: None,
        };
        if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH && member.instance_id.is_some() {
            if member.left_static {
                return Ok((response, false));
            }
            // The instance released everything it consumed; its current assignment stays
            // reserved for its return, what it was revoking is free now.
            member.left_static = true;
            member.pending_revocation.clear();
            self.runtime.insert(
                member_id,
                MemberRuntime {
                    session_deadline: Some(now + cfg.consumer_session_timeout),
                    ..MemberRuntime::default()
                },
            );
            return Ok((response, true));
        }
        self.remove_member(&member_id);
        self.refresh_metadata(catalog);
        self.group_epoch += 1;
        self.maybe_compute_target(cfg);
        Ok((response, true))
    }

    /// Periodic work: expire members whose session ended, fence members that did not revoke
    /// within their rebalance timeout, and recompute the target assignment when a subscribed
    /// topic's partition count changed. Returns whether the durable state changed.
    pub fn tick(&mut self, now: Instant, catalog: &dyn TopicCatalog, cfg: &GroupConfig) -> bool {
        let epochs_before = (self.group_epoch, self.assignment_epoch);
        let mut expired = Vec::new();
        for (id, member) in &self.members {
            let runtime = self.runtime.entry(id.clone()).or_default();
            let session = *runtime
                .session_deadline
                .get_or_insert(now + session_timeout(member, cfg));
            let revocation = if member.pending_revocation.is_empty() {
                runtime.revocation_deadline = None;
                None
            } else {
                Some(
                    *runtime
                        .revocation_deadline
                        .get_or_insert(now + rebalance_timeout(member)),
                )
            };
            if now >= session || revocation.is_some_and(|deadline| now >= deadline) {
                expired.push(id.clone());
            }
        }
        for id in &expired {
            self.remove_member(id);
        }
        if self.refresh_metadata(catalog) || !expired.is_empty() {
            self.group_epoch += 1;
        }
        self.maybe_compute_target(cfg);
        epochs_before != (self.group_epoch, self.assignment_epoch)
    }

    /// Checks an OffsetCommit (Kafka's `ConsumerGroup.validateOffsetCommit`). A negative epoch
    /// is a simple commit (`assign()`, the admin client): accepted while the group has no
    /// members, whatever member id it carries. Otherwise the member must exist and carry its
    /// current epoch.
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), GroupError> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        self.check_member_epoch(member_id, member_epoch)
    }

    /// Checks an OffsetFetch from a member (`member_epoch` from the request).
    pub fn validate_offset_request(
        &self,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), GroupError> {
        if member_id.is_empty() && member_epoch < 0 {
            return Ok(());
        }
        self.check_member_epoch(member_id, member_epoch)
    }

    /// The member exists and `member_epoch` is the epoch it was last told.
    fn check_member_epoch(&self, member_id: &str, member_epoch: i32) -> Result<(), GroupError> {
        let member = self
            .members
            .get(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        if member_epoch != member.visible_epoch() {
            return Err(GroupError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// True when the group has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Topics some member subscribes to (resolved regexes included).
    pub fn subscribed_topics(&self, catalog: &dyn TopicCatalog) -> Vec<String> {
        let mut topics: BTreeSet<String> = self
            .members
            .values()
            .flat_map(|m| m.subscribed_topic_names.iter().cloned())
            .collect();
        let patterns = self.patterns();
        if !patterns.is_empty() {
            for topic in catalog.topics() {
                if !topic.internal && patterns.iter().any(|p| p.matches(&topic.name)) {
                    topics.insert(topic.name);
                }
            }
        }
        topics.into_iter().collect()
    }

    /// Partitions each member owns now (for describe / lag): its current assignment plus the
    /// partitions it was asked to revoke but has not released yet. Sorted by member id.
    pub fn owned(&self, catalog: &dyn TopicCatalog) -> Vec<(String, Vec<GroupTopicPartition>)> {
        self.members
            .values()
            .map(|m| {
                let mut owned = m.assigned.clone();
                add_all(&mut owned, &m.pending_revocation);
                (m.member_id.clone(), self.named(&owned, catalog))
            })
            .collect()
    }

    /// Removes every member (DeleteGroups needs an empty group; this is for the admin path
    /// that fences a whole group). Returns whether anything changed.
    pub fn remove_all_members(&mut self) -> bool {
        if self.members.is_empty() {
            return false;
        }
        self.members.clear();
        self.target.clear();
        self.runtime.clear();
        self.metadata.clear();
        self.group_epoch += 1;
        self.assignment_epoch = self.group_epoch;
        true
    }

    /// Called after the group was read back from the log: restart every member's session timer.
    pub fn after_load(&mut self, now: Instant, cfg: &GroupConfig) {
        self.runtime = self
            .members
            .values()
            .map(|m| {
                let runtime = MemberRuntime {
                    session_deadline: Some(now + session_timeout(m, cfg)),
                    revocation_deadline: (!m.pending_revocation.is_empty())
                        .then(|| now + rebalance_timeout(m)),
                    last_sent: None,
                };
                (m.member_id.clone(), runtime)
            })
            .collect();
    }

    /// ListGroups entry.
    pub fn listing(&self) -> GroupListing {
        GroupListing {
            group_id: self.group_id.clone(),
            protocol_type: "consumer".into(),
            state: self.state().into(),
            kind: GroupKind::Consumer,
        }
    }

    /// DescribeGroups / ConsumerGroupDescribe.
    pub fn describe(&self, catalog: &dyn TopicCatalog) -> GroupDescription {
        let members = self
            .members
            .values()
            .map(|m| {
                let mut owned = m.assigned.clone();
                add_all(&mut owned, &m.pending_revocation);
                MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: Bytes::new(),
                    assignment: Bytes::new(),
                    assigned: self.named(&owned, catalog),
                    member_epoch: m.visible_epoch(),
                    consumer: Some(ConsumerMemberDescription {
                        subscribed_topic_names: m.subscribed_topic_names.clone(),
                        subscribed_topic_regex: m.subscribed_topic_regex.clone(),
                        rack_id: m.rack_id.clone(),
                        target: self
                            .target
                            .get(&m.member_id)
                            .map(|t| self.named(t, catalog))
                            .unwrap_or_default(),
                    }),
                }
            })
            .collect();
        GroupDescription {
            group_id: self.group_id.clone(),
            state: self.state().into(),
            protocol_type: "consumer".into(),
            protocol: self.assignor.clone(),
            kind: GroupKind::Consumer,
            generation: self.group_epoch,
            members,
        }
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// The group epoch.
    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    /// The epoch of the current target assignment.
    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    /// The assignor that computed the current target (empty before the first).
    pub fn assignor(&self) -> &str {
        &self.assignor
    }

    /// Number of members (static members that left temporarily included).
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// A member's epoch (-2 for a static member that left temporarily), if it is a member.
    pub fn member_epoch(&self, member_id: &str) -> Option<i32> {
        self.members.get(member_id).map(Member::visible_epoch)
    }

    /// The state as Kafka spells it: `Empty`, `Assigning`, `Reconciling` or `Stable`.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            !m.left_static
                && (m.member_epoch != self.assignment_epoch
                    || !m.pending_revocation.is_empty()
                    || Some(&m.assigned) != self.target.get(&m.member_id).or(Some(&EMPTY)))
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The target assignment of every member (ConsumerGroupDescribe), sorted by member id.
    pub fn target_assignment(
        &self,
        catalog: &dyn TopicCatalog,
    ) -> Vec<(String, Vec<GroupTopicPartition>)> {
        self.members
            .keys()
            .map(|id| {
                let target = self.target.get(id).unwrap_or(&EMPTY);
                (id.clone(), self.named(target, catalog))
            })
            .collect()
    }

    // ---- internals ----

    /// The member holding a static instance id.
    fn static_member(&self, instance_id: &str) -> Option<&Member> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
    }

    /// Removes a member (its partitions are free at once); the caller bumps the group epoch.
    fn remove_member(&mut self, member_id: &str) {
        self.members.remove(member_id);
        self.target.remove(member_id);
        self.runtime.remove(member_id);
    }

    /// The members' regexes (validated on the way in; an invalid one matches nothing).
    fn patterns(&self) -> Vec<TopicPattern> {
        let regexes: BTreeSet<&str> = self
            .members
            .values()
            .filter_map(|m| m.subscribed_topic_regex.as_deref())
            .collect();
        regexes
            .into_iter()
            .filter_map(|r| self.pattern(r))
            .collect()
    }

    /// One regex, from the cache when `refresh_metadata` compiled it already.
    fn pattern(&self, regex: &str) -> Option<TopicPattern> {
        match self.compiled.get(regex) {
            Some(p) => Some(p.clone()),
            None => TopicPattern::parse(regex).ok(),
        }
    }

    /// Keeps `compiled` to the members' regexes, so that heartbeats and ticks do not compile
    /// them again.
    fn compile_patterns(&mut self) {
        let wanted: BTreeSet<String> = self
            .members
            .values()
            .filter_map(|m| m.subscribed_topic_regex.clone())
            .collect();
        self.compiled.retain(|r, _| wanted.contains(r));
        for r in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.compiled.entry(r) {
                if let Ok(p) = TopicPattern::parse(slot.key()) {
                    slot.insert(p);
                }
            }
        }
    }

    /// Resolves the subscribed topics against the catalog; true when that changed them.
    fn refresh_metadata(&mut self, catalog: &dyn TopicCatalog) -> bool {
        self.compile_patterns();
        let mut metadata = BTreeMap::new();
        let patterns = self.patterns();
        if !patterns.is_empty() {
            for topic in catalog.topics() {
                if !topic.internal && patterns.iter().any(|p| p.matches(&topic.name)) {
                    metadata.insert(
                        topic.name,
                        TopicMeta {
                            id: topic.id,
                            partitions: topic.partitions,
                            internal: topic.internal,
                        },
                    );
                }
            }
        }
        let names: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|m| m.subscribed_topic_names.iter())
            .collect();
        for name in names {
            if let Some(topic) = catalog.topic(name) {
                metadata.insert(
                    topic.name,
                    TopicMeta {
                        id: topic.id,
                        partitions: topic.partitions,
                        internal: topic.internal,
                    },
                );
            }
        }
        if metadata == self.metadata {
            return false;
        }
        self.metadata = metadata;
        true
    }

    /// Ids of the (existing) topics a member subscribes to, as of the group's metadata.
    fn member_topic_ids(&self, member: &Member) -> BTreeSet<Uuid> {
        let mut ids: BTreeSet<Uuid> = member
            .subscribed_topic_names
            .iter()
            .filter_map(|n| self.metadata.get(n).map(|t| t.id))
            .collect();
        if let Some(pattern) = member
            .subscribed_topic_regex
            .as_deref()
            .and_then(|r| self.pattern(r))
        {
            for (name, topic) in &self.metadata {
                if !topic.internal && pattern.matches(name) {
                    ids.insert(topic.id);
                }
            }
        }
        ids
    }

    /// The server assignor most members ask for (ties: configuration order), else the first
    /// configured one this module implements, else `uniform`.
    fn preferred_assignor(&self, cfg: &GroupConfig) -> String {
        let usable = |name: &str| {
            SUPPORTED_ASSIGNORS.contains(&name) && cfg.consumer_assignors.iter().any(|a| a == name)
        };
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(name) = m.server_assignor.as_deref().filter(|n| usable(n)) {
                *votes.entry(name).or_default() += 1;
            }
        }
        let rank = |name: &str| {
            cfg.consumer_assignors
                .iter()
                .position(|a| a == name)
                .unwrap_or(usize::MAX)
        };
        if let Some((name, _)) = votes
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(rank(b.0).cmp(&rank(a.0))))
        {
            return name.to_owned();
        }
        cfg.consumer_assignors
            .iter()
            .find(|a| SUPPORTED_ASSIGNORS.contains(&a.as_str()))
            .cloned()
            .unwrap_or_else(|| "uniform".into())
    }

    /// Recomputes the target when the group epoch is ahead of it. True when it did.
    fn maybe_compute_target(&mut self, cfg: &GroupConfig) -> bool {
        if self.group_epoch <= self.assignment_epoch {
            return false;
        }
        let name = self.preferred_assignor(cfg);
        let topics: BTreeMap<Uuid, AssignorTopic> = self
            .metadata
            .iter()
            .map(|(name, t)| {
                let topic = AssignorTopic {
                    id: t.id,
                    name: name.clone(),
                    partitions: t.partitions,
                };
                (t.id, topic)
            })
            .collect();
        let members: Vec<AssignorMember> = self
            .members
            .values()
            .map(|m| AssignorMember {
                member_id: m.member_id.clone(),
                topics: self.member_topic_ids(m),
                current: self.target.get(&m.member_id).cloned().unwrap_or_default(),
            })
            .collect();
        self.target = assignor::assign(&name, &members, &topics)
            .unwrap_or_else(|| assignor::uniform(&members, &topics));
        self.assignor = name;
        self.assignment_epoch = self.group_epoch;
        // A static member away (epoch -2) consumes nothing: what it no longer targets is free.
        for m in self.members.values_mut().filter(|m| m.left_static) {
            let target = self.target.get(&m.member_id).unwrap_or(&EMPTY);
            m.assigned = intersection(&m.assigned, target);
        }
        true
    }

    /// Moves a member's current assignment one step toward its target.
    ///
    /// `owned` is what the member's request reported (`None`: unchanged). `joining`: the
    /// request was a join, so `owned` (or nothing) is all the member holds.
    fn reconcile(
        &mut self,
        member_id: &str,
        now: Instant,
        owned: Option<&TopicPartitions>,
        joining: bool,
    ) {
        let target_epoch = self.assignment_epoch;
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        // Partitions other members still own.
        let mut taken: HashSet<(Uuid, i32)> = HashSet::new();
        for m in self.members.values().filter(|m| m.member_id != member_id) {
            for set in [&m.assigned, &m.pending_revocation] {
                for (topic, parts) in set {
                    taken.extend(parts.iter().map(|&p| (*topic, p)));
                }
            }
        }
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        let runtime = self.runtime.entry(member_id.to_owned()).or_default();
        if !member.pending_revocation.is_empty() {
            let released = owned.is_some_and(|o| !intersects(o, &member.pending_revocation));
            if !released {
                return;
            }
            member.pending_revocation.clear();
            runtime.revocation_deadline = None;
        }
        let keep = intersection(&member.assigned, &target);
        let revoke = difference(&member.assigned, &target);
        let already_released = joining && !owned.is_some_and(|o| intersects(o, &revoke));
        if !revoke.is_empty() && !already_released {
            member.assigned = keep;
            member.pending_revocation = revoke;
            runtime.revocation_deadline = Some(now + rebalance_timeout(member));
            return;
        }
        let mut assigned = keep;
        for (topic, parts) in &target {
            for &p in parts {
                if !taken.contains(&(*topic, p)) {
                    assigned.entry(*topic).or_default().insert(p);
                }
            }
        }
        member.assigned = assigned;
        if member.member_epoch != target_epoch {
            member.previous_member_epoch = member.member_epoch;
            member.member_epoch = target_epoch;
        }
    }

    /// Partitions by topic name, sorted; topics neither the catalog nor the group's metadata
    /// knows are left out.
    fn named(
        &self,
        parts: &TopicPartitions,
        catalog: &dyn TopicCatalog,
    ) -> Vec<GroupTopicPartition> {
        let mut out = Vec::new();
        for (id, ps) in parts {
            let name = catalog.topic_by_id(*id).map(|t| t.name).or_else(|| {
                self.metadata
                    .iter()
                    .find(|(_, t)| t.id == *id)
                    .map(|(n, _)| n.clone())
            });
            if let Some(name) = name {
                out.extend(ps.iter().map(|&partition| GroupTopicPartition {
                    topic: name.clone(),
                    partition,
                }));
            }
        }
        out.sort();
        out
    }
}

static EMPTY: TopicPartitions = TopicPartitions::new();

/// Request checks that do not depend on the group.
fn validate_request(req: &ConsumerHeartbeatRequest, cfg: &GroupConfig) -> Result<(), GroupError> {
    if req.member_epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        return Err(GroupError::InvalidRequest(format!(
            "invalid member epoch {}",
            req.member_epoch
        )));
    }
    if req.member_epoch > 0 && req.member_id.is_empty() {
        return Err(GroupError::InvalidRequest("member id required".into()));
    }
    if req.instance_id.as_deref() == Some("") {
        return Err(GroupError::InvalidRequest("empty instance id".into()));
    }
    if req.member_epoch < 0 {
        return Ok(());
    }
    if req.rebalance_timeout_ms < -1 {
        return Err(GroupError::InvalidRequest(format!(
            "invalid rebalance timeout {}",
            req.rebalance_timeout_ms
        )));
    }
    if let Some(name) = req.server_assignor.as_deref().and_then(non_empty) {
        if !SUPPORTED_ASSIGNORS.contains(&name.as_str()) || !cfg.consumer_assignors.contains(&name)
        {
            return Err(GroupError::UnsupportedAssignor(name));
        }
    }
    if let Some(regex) = req
        .subscribed_topic_regex
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        TopicPattern::parse(regex).map_err(GroupError::InvalidRegularExpression)?;
    }
    Ok(())
}

fn heartbeat_interval_ms(cfg: &GroupConfig) -> i32 {
    i32::try_from(cfg.consumer_heartbeat_interval.as_millis()).unwrap_or(i32::MAX)
}

fn rebalance_timeout(member: &Member) -> Duration {
    Duration::from_millis(u64::try_from(member.rebalance_timeout_ms).unwrap_or(0))
}

/// How long a member may stay silent before it is removed.
///
/// Kafka uses the group's session timeout alone. Rivulet also bounds it by the member's
/// rebalance timeout (clients send their `max.poll.interval.ms`) plus two heartbeat intervals:
/// librdkafka (2.15 and later) stops heartbeating once its application has not polled for
/// `max.poll.interval.ms` and sends its leave (epoch -1) only when the application polls
/// again, so a stalled consumer would otherwise keep its partitions for the whole session
/// timeout (45 s by default). A healthy member heartbeats every interval whether or not its
/// application polls; one silent that long has died, or has given its partitions up itself.
/// A static member that left with epoch -2 keeps the session timeout: its slot is reserved.
fn session_timeout(member: &Member, cfg: &GroupConfig) -> Duration {
    if member.left_static {
        return cfg.consumer_session_timeout;
    }
    let heartbeat = cfg.consumer_heartbeat_interval;
    let stalled = rebalance_timeout(member).max(heartbeat) + heartbeat * 2;
    cfg.consumer_session_timeout.min(stalled)
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn sorted_names(names: &[String]) -> Vec<String> {
    let set: BTreeSet<&String> = names.iter().collect();
    set.into_iter().cloned().collect()
}

fn to_partitions(list: &[(Uuid, Vec<i32>)]) -> TopicPartitions {
    let mut out = TopicPartitions::new();
    for (topic, parts) in list {
        if !parts.is_empty() {
            out.entry(*topic).or_default().extend(parts.iter().copied());
        }
    }
    out
}

fn from_partitions(parts: &TopicPartitions) -> Vec<(Uuid, Vec<i32>)> {
    parts
        .iter()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(topic, ps)| (*topic, ps.iter().copied().collect()))
        .collect()
}

fn is_subset(a: &TopicPartitions, b: &TopicPartitions) -> bool {
    a.iter().all(|(topic, parts)| match b.get(topic) {
        Some(other) => parts.is_subset(other),
        None => parts.is_empty(),
    })
}

fn intersects(a: &TopicPartitions, b: &TopicPartitions) -> bool {
    a.iter()
        .any(|(topic, parts)| b.get(topic).is_some_and(|other| !parts.is_disjoint(other)))
}

fn intersection(a: &TopicPartitions, b: &TopicPartitions) -> TopicPartitions {
    let mut out = TopicPartitions::new();
    for (topic, parts) in a {
        if let Some(other) = b.get(topic) {
            let common: BTreeSet<i32> = parts.intersection(other).copied().collect();
            if !common.is_empty() {
                out.insert(*topic, common);
            }
        }
    }
    out
}

fn difference(a: &TopicPartitions, b: &TopicPartitions) -> TopicPartitions {
    let mut out = TopicPartitions::new();
    for (topic, parts) in a {
        let rest: BTreeSet<i32> = match b.get(topic) {
            Some(other) => parts.difference(other).copied().collect(),
            None => parts.clone(),
        };
        if !rest.is_empty() {
            out.insert(*topic, rest);
        }
    }
    out
}

fn add_all(into: &mut TopicPartitions, from: &TopicPartitions) {
    for (topic, parts) in from {
        into.entry(*topic)
            .or_default()
            .extend(parts.iter().copied());
    }
}

/// The largest compiled form of one subscription regex. A pattern comes from the network, so
/// its compiled program is bounded; one that needs more is refused as invalid.
const PATTERN_COMPILED_BYTES_MAX: usize = 1 << 20;
/// The longest subscription regex accepted (Kafka topic names are at most 249 characters; real
/// patterns are short).
const PATTERN_CHARS_MAX: usize = 4096;

/// A topic-name pattern of a regex subscription (`subscribed_topic_regex`).
///
/// Kafka compiles these with RE2/J and matches with `matches()`: the whole name must match.
/// The `regex` crate implements the same RE2 syntax (character classes, `\d`, `{n}`,
/// alternation, groups, non-greedy quantifiers; no backreferences or lookaround, as in RE2/J)
/// in linear time. The pattern is compiled anchored at both ends for the whole-name match.
#[derive(Debug, Clone)]
pub struct TopicPattern {
    source: String,
    regex: regex::Regex,
}

impl PartialEq for TopicPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for TopicPattern {}

impl TopicPattern {
    /// Compiles a pattern; the error says why it is not a valid regular expression.
    pub fn parse(pattern: &str) -> Result<TopicPattern, String> {
        if pattern.is_empty() {
            return Err("the regular expression is empty".into());
        }
        if pattern.chars().count() > PATTERN_CHARS_MAX {
            return Err(format!(
                "the regular expression is longer than {PATTERN_CHARS_MAX} characters"
            ));
        }
        let regex = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(PATTERN_COMPILED_BYTES_MAX)
            .dfa_size_limit(PATTERN_COMPILED_BYTES_MAX)
            .build()
            .map_err(|e| format!("invalid regular expression {pattern:?}: {e}"))?;
        Ok(TopicPattern {
            source: pattern.to_string(),
            regex,
        })
    }

    /// Whether the whole of `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    // ---- fixtures ----

    #[derive(Debug, Default)]
    struct FakeCatalog {
        topics: Mutex<Vec<TopicInfo>>,
    }

    impl FakeCatalog {
        fn with(topics: &[(&str, i32)]) -> Self {
            let catalog = FakeCatalog::default();
            for (name, partitions) in topics {
                catalog.create(name, *partitions);
            }
            catalog
        }

        fn create(&self, name: &str, partitions: i32) -> Uuid {
            let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes());
            self.topics.lock().unwrap().push(TopicInfo {
                name: name.into(),
                id,
                partitions,
                // The broker's catalog asks the cluster's policy; this stands in for it.
                internal: name == crate::group::OFFSETS_TOPIC,
            });
            id
        }

        fn set_partitions(&self, name: &str, partitions: i32) {
            let mut topics = self.topics.lock().unwrap();
            topics
                .iter_mut()
                .find(|t| t.name == name)
                .unwrap()
                .partitions = partitions;
        }

        fn delete(&self, name: &str) {
            self.topics.lock().unwrap().retain(|t| t.name != name);
        }

        fn id(&self, name: &str) -> Uuid {
            self.topic(name).unwrap().id
        }
    }

    impl TopicCatalog for FakeCatalog {
        fn topic(&self, name: &str) -> Option<TopicInfo> {
            self.topics
                .lock()
                .unwrap()
                .iter()
                .find(|t| t.name == name)
                .cloned()
        }
        fn topic_by_id(&self, id: Uuid) -> Option<TopicInfo> {
            self.topics
                .lock()
                .unwrap()
                .iter()
                .find(|t| t.id == id)
                .cloned()
        }
        fn topics(&self) -> Vec<TopicInfo> {
            self.topics.lock().unwrap().clone()
        }
    }

    fn cfg() -> GroupConfig {
        GroupConfig::default()
    }

    fn join_req(member_id: &str, topics: &[&str]) -> ConsumerHeartbeatRequest {
        ConsumerHeartbeatRequest {
            member_id: member_id.into(),
            member_epoch: 0,
            instance_id: None,
            rack_id: None,
            // The clients' default max.poll.interval.ms.
            rebalance_timeout_ms: 300_000,
            subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
            subscribed_topic_regex: None,
            server_assignor: None,
            owned_partitions: Some(vec![]),
            client_id: format!("client-{member_id}"),
            client_host: "/127.0.0.1".into(),
        }
    }

    fn hb_req(
        member_id: &str,
        epoch: i32,
        owned: Option<Vec<(Uuid, Vec<i32>)>>,
    ) -> ConsumerHeartbeatRequest {
        ConsumerHeartbeatRequest {
            member_id: member_id.into(),
            member_epoch: epoch,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: -1,
            subscribed_topic_names: None,
            subscribed_topic_regex: None,
            server_assignor: None,
            owned_partitions: owned,
            client_id: format!("client-{member_id}"),
            client_host: "/127.0.0.1".into(),
        }
    }

    /// Partitions of one topic in a response assignment.
    fn tps(id: Uuid, parts: &[i32]) -> Vec<(Uuid, Vec<i32>)> {
        if parts.is_empty() {
            vec![]
        } else {
            vec![(id, parts.to_vec())]
        }
    }

    /// No partition is owned (assigned or pending revocation) by two members.
    fn assert_no_overlap(group: &ConsumerGroup) {
        let mut seen: BTreeMap<(Uuid, i32), &str> = BTreeMap::new();
        for m in group.members.values() {
            for set in [&m.assigned, &m.pending_revocation] {
                for (topic, parts) in set {
                    for &p in parts {
                        if let Some(other) = seen.insert((*topic, p), &m.member_id) {
                            panic!("{topic}/{p} owned by {other} and {}", m.member_id);
                        }
                    }
                }
            }
            assert!(
                !intersects(&m.assigned, &m.pending_revocation),
                "{} has a partition both assigned and pending revocation",
                m.member_id
            );
        }
    }

    /// A well-behaved client: consumes what the last assignment said and reports it. A slow
    /// one keeps consuming the partitions it was told to revoke (`revoking`) until `finish`.
    #[derive(Debug, Clone)]
    struct Client {
        id: String,
        epoch: i32,
        owned: TopicPartitions,
        revoking: TopicPartitions,
    }

    /// A group with a catalog, a clock and well-behaved clients; checks the no-overlap
    /// invariants (server side and client side) after every step.
    struct Sim {
        group: ConsumerGroup,
        catalog: FakeCatalog,
        cfg: GroupConfig,
        now: Instant,
        clients: BTreeMap<String, Client>,
        /// Clients revoke asynchronously.
        slow: bool,
    }

    impl Sim {
        fn new(topics: &[(&str, i32)]) -> Self {
            Sim {
                group: ConsumerGroup::new("g".into()),
                catalog: FakeCatalog::with(topics),
                cfg: cfg(),
                now: Instant::now(),
                clients: BTreeMap::new(),
                slow: false,
            }
        }

        fn check(&self) {
            assert_no_overlap(&self.group);
            let mut seen = BTreeSet::new();
            for c in self.clients.values() {
                let mut consuming = c.owned.clone();
                add_all(&mut consuming, &c.revoking);
                for (topic, parts) in &consuming {
                    for &p in parts {
                        assert!(seen.insert((*topic, p)), "clients overlap on {topic}/{p}");
                    }
                }
            }
        }

        fn send(
            &mut self,
            req: ConsumerHeartbeatRequest,
        ) -> Result<(ConsumerHeartbeatResponse, bool), GroupError> {
            let out = self
                .group
                .heartbeat(self.now, req, &self.catalog, &self.cfg);
            self.check();
            out
        }

        fn apply(&mut self, resp: &ConsumerHeartbeatResponse) {
            let client = self
                .clients
                .entry(resp.member_id.clone())
                .or_insert(Client {
                    id: resp.member_id.clone(),
                    epoch: 0,
                    owned: TopicPartitions::new(),
                    revoking: TopicPartitions::new(),
                });
            client.epoch = resp.member_epoch;
            if let Some(assignment) = &resp.assignment {
                let new = to_partitions(assignment);
                let dropped = difference(&client.owned, &new);
                add_all(&mut client.revoking, &dropped);
                client.revoking = difference(&client.revoking, &new);
                client.owned = new;
                if !self.slow {
                    client.revoking.clear();
                }
            }
            self.check();
        }

        /// A slow client's revocation completes.
        fn finish(&mut self, id: &str) {
            self.clients.get_mut(id).unwrap().revoking.clear();
        }

        fn join(&mut self, id: &str, topics: &[&str]) -> ConsumerHeartbeatResponse {
            let (resp, changed) = self.send(join_req(id, topics)).unwrap();
            assert!(changed);
            assert!(
                resp.assignment.is_some(),
                "a join always gets its assignment"
            );
            self.apply(&resp);
            resp
        }

        /// A heartbeat of a client reporting what it owns.
        fn beat(&mut self, id: &str) -> (ConsumerHeartbeatResponse, bool) {
            let c = self.clients[id].clone();
            let mut owned = c.owned.clone();
            add_all(&mut owned, &c.revoking);
            let (resp, changed) = self
                .send(hb_req(&c.id, c.epoch, Some(from_partitions(&owned))))
                .unwrap();
            self.apply(&resp);
            (resp, changed)
        }

        /// Heartbeats every client round-robin until nothing changes.
        fn converge(&mut self) {
            for _ in 0..20 {
                let ids: Vec<String> = self.clients.keys().cloned().collect();
                let mut changed = false;
                for id in ids {
                    let (resp, c) = self.beat(&id);
                    changed |= c || resp.assignment.is_some();
                    self.finish(&id);
                }
                if !changed {
                    return;
                }
            }
            panic!("the group did not converge");
        }

        fn owned_count(&self, id: &str) -> usize {
            self.clients[id].owned.values().map(BTreeSet::len).sum()
        }

        fn tick(&mut self) -> bool {
            let changed = self.group.tick(self.now, &self.catalog, &self.cfg);
            self.check();
            changed
        }
    }

    // ---- joining and reconciliation ----

    #[test]
    fn single_member_gets_all_partitions() {
        let mut sim = Sim::new(&[("t", 4), ("other", 3)]);
        let t = sim.catalog.id("t");
        let resp = sim.join("a", &["t"]);
        assert_eq!(resp.member_id, "a");
        assert_eq!(resp.member_epoch, 1);
        assert_eq!(resp.heartbeat_interval_ms, 5000);
        assert_eq!(resp.assignment, Some(tps(t, &[0, 1, 2, 3])));
        assert_eq!(sim.group.group_epoch(), 1);
        assert_eq!(sim.group.assignment_epoch(), 1);
        assert_eq!(sim.group.state(), "Stable");
        assert_eq!(sim.group.assignor(), "uniform");
        // A plain heartbeat changes nothing.
        let (resp, changed) = sim.beat("a");
        assert!(!changed);
        assert_eq!(resp.assignment, None);
        assert_eq!(resp.member_epoch, 1);
        // An unchanged heartbeat without owned partitions changes nothing either.
        let (resp, changed) = sim.send(hb_req("a", 1, None)).unwrap();
        assert!(!changed);
        assert_eq!(resp.assignment, None);
    }

    #[test]
    fn v0_join_gets_a_generated_member_id() {
        let mut sim = Sim::new(&[("t", 2)]);
        let (resp, changed) = sim.send(join_req("", &["t"])).unwrap();
        assert!(changed);
        assert!(
            Uuid::parse_str(&resp.member_id).is_ok(),
            "{}",
            resp.member_id
        );
        assert_eq!(sim.group.member_epoch(&resp.member_id), Some(1));
        // Two v0 joins get two members.
        let (resp2, _) = sim.send(join_req("", &["t"])).unwrap();
        assert_ne!(resp.member_id, resp2.member_id);
        assert_eq!(sim.group.member_count(), 2);
    }

    #[test]
    fn second_member_waits_for_revocation_without_overlap() {
        let mut sim = Sim::new(&[("t", 4)]);
        let t = sim.catalog.id("t");
        sim.join("a", &["t"]);

        // b joins: the target gives it half, but a still owns them: b gets nothing yet.
        let resp = sim.join("b", &["t"]);
        assert_eq!(resp.member_epoch, 2);
        assert_eq!(resp.assignment, Some(vec![]));
        assert_eq!(sim.group.group_epoch(), 2);
        assert_eq!(sim.group.state(), "Reconciling");
        // b heartbeats again: still nothing.
        let (resp, changed) = sim.beat("b");
        assert_eq!(resp.assignment, None);
        assert!(!changed);
        assert_eq!(sim.owned_count("b"), 0);

        // a is asked to revoke 2 and 3, keeping its epoch.
        let (resp, changed) = sim.send(hb_req("a", 1, None)).unwrap();
        assert!(changed);
        assert_eq!(resp.member_epoch, 1);
        assert_eq!(resp.assignment, Some(tps(t, &[0, 1])));
        // The heartbeat carrying the old owned list does not release them.
        let (resp, changed) = sim
            .send(hb_req("a", 1, Some(tps(t, &[0, 1, 2, 3]))))
            .unwrap();
        assert!(!changed);
        assert_eq!(resp.member_epoch, 1);
        // Neither does one that says nothing.
        sim.send(hb_req("a", 1, None)).unwrap();
        let (resp, _) = sim.beat("b");
        assert_eq!(
            resp.assignment, None,
            "b must not get partitions a still owns"
        );
        sim.apply(&ConsumerHeartbeatResponse {
            member_id: "a".into(),
            member_epoch: 1,
            heartbeat_interval_ms: 5000,
            assignment: Some(tps(t, &[0, 1])),
        });

        // a reports it dropped them: it moves to epoch 2; its assignment did not change.
        let (resp, changed) = sim.beat("a");
        assert!(changed);
        assert_eq!(resp.member_epoch, 2);
        assert_eq!(resp.assignment, None);

        // Now b gets them.
        let (resp, changed) = sim.beat("b");
        assert!(changed);
        assert_eq!(resp.member_epoch, 2);
        assert_eq!(resp.assignment, Some(tps(t, &[2, 3])));
        assert_eq!(sim.group.state(), "Stable");
        let owned = sim.group.owned(&sim.catalog);
        assert_eq!(owned.len(), 2);
        assert_eq!(owned[1].0, "b");
        assert_eq!(
            owned[1].1,
            vec![
                GroupTopicPartition {
                    topic: "t".into(),
                    partition: 2
                },
                GroupTopicPartition {
                    topic: "t".into(),
                    partition: 3
                }
            ]
        );
    }

    #[test]
    fn many_members_converge_balanced_and_never_overlap() {
        let mut sim = Sim::new(&[("t1", 7), ("t2", 5)]);
        for (i, id) in ["m1", "m2", "m3", "m4"].iter().enumerate() {
            sim.join(id, &["t1", "t2"]);
            if i % 2 == 1 {
                sim.converge();
            }
        }
        sim.converge();
        assert_eq!(sim.group.state(), "Stable");
        let loads: Vec<usize> = ["m1", "m2", "m3", "m4"]
            .iter()
            .map(|id| sim.owned_count(id))
            .collect();
        assert_eq!(loads.iter().sum::<usize>(), 12);
        assert!(loads.iter().all(|&l| l == 3), "{loads:?}");
        let epoch = sim.group.assignment_epoch();
        for c in sim.clients.values() {
            assert_eq!(c.epoch, epoch);
        }
    }

    #[test]
    fn leave_moves_partitions_to_the_others() {
        let mut sim = Sim::new(&[("t", 4)]);
        let t = sim.catalog.id("t");
        sim.join("a", &["t"]);
        sim.join("b", &["t"]);
        sim.converge();
        let epoch = sim.group.group_epoch();
        let (resp, changed) = sim.send(hb_req("b", 2, None).with_epoch(-1)).unwrap();
        assert!(changed);
        assert_eq!(resp.member_epoch, -1);
        assert_eq!(resp.assignment, None);
        sim.clients.remove("b");
        assert_eq!(sim.group.group_epoch(), epoch + 1);
        assert_eq!(sim.group.member_count(), 1);
        let (resp, _) = sim.beat("a");
        assert_eq!(resp.member_epoch, epoch + 1);
        assert_eq!(resp.assignment, Some(tps(t, &[0, 1, 2, 3])));
        // Leaving twice: unknown.
        assert_eq!(
            sim.send(hb_req("b", 0, None).with_epoch(-1)).unwrap_err(),
            GroupError::UnknownMemberId
        );
        // The last member leaves: empty.
        sim.send(hb_req("a", 0, None).with_epoch(-1)).unwrap();
        assert!(sim.group.is_empty());
        assert_eq!(sim.group.state(), "Empty");
    }

    #[test]
    fn session_expiry_removes_member_in_tick() {
        let mut sim = Sim::new(&[("t", 4)]);
        let t = sim.catalog.id("t");
        sim.join("a", &["t"]);
        sim.join("b", &["t"]);
        sim.converge();
        let start = sim.now;
        let epoch = sim.group.group_epoch();
        // a keeps heartbeating; b goes silent.
        sim.now = start + Duration::from_secs(30);
        sim.beat("a");
        assert!(!sim.tick());
        sim.now = start + Duration::from_secs(44);
        assert!(!sim.tick());
        assert_eq!(sim.group.member_count(), 2);
        sim.now = start + Duration::from_secs(46);
        assert!(sim.tick(), "b's session ended");
        assert_eq!(sim.group.member_count(), 1);
        assert!(sim.group.member_epoch("b").is_none());
        assert_eq!(sim.group.group_epoch(), epoch + 1);
        sim.clients.remove("b");
        let (resp, _) = sim.beat("a");
        assert_eq!(resp.assignment, Some(tps(t, &[0, 1, 2, 3])));
        // b comes back with its old epoch: unknown.
        assert_eq!(
            sim.send(hb_req("b", epoch, None)).unwrap_err(),
            GroupError::UnknownMemberId
        );
        // Nothing more to do.
        assert!(!sim.tick());
        // a expires too.
        sim.now += Duration::from_secs(46);
        assert!(sim.tick());
        assert!(sim.group.is_empty());
    }

    #[test]
    fn member_silent_past_its_max_poll_interval_is_removed_before_its_session_ends() {
        let mut sim = Sim::new(&[("t", 4)]);
        let t = sim.catalog.id("t");
        // a polls with max.poll.interval.ms = 3 s: silent for max(3 s, one heartbeat interval)
        // plus two intervals (5 s each by default) means it stalled or died.
        let mut req = join_req("a", &["t"]);
        req.rebalance_timeout_ms = 3_000;
        let (resp, _) = sim.send(req).unwrap();
        sim.apply(&resp);
        // b uses the clients' default (300 s): the session timeout (45 s) is the bound.
        let mut req = join_req("b", &["t"]);
        req.rebalance_timeout_ms = 300_000;
        let (resp, _) = sim.send(req).unwrap();
        sim.apply(&resp);
        sim.converge();
        let start = sim.now;
        sim.now = start + Duration::from_secs(14);
        assert!(!sim.tick(), "a is within 15 s of its last heartbeat");
        sim.now = start + Duration::from_secs(16);
        assert!(sim.tick(), "a stalled past its max.poll.interval");
        assert!(sim.group.member_epoch("a").is_none());
        sim.clients.remove("a");
        let (resp, _) = sim.beat("b");
        assert_eq!(resp.assignment, Some(tps(t, &[0, 1, 2, 3])));
        // b's own silence is bounded by the session timeout only.
        let last = sim.now;
        sim.now = last + Duration::from_secs(44);
        assert!(!sim.tick());
        sim.now = last + Duration::from_secs(46);
        assert!(sim.tick());
        assert!(sim.group.is_empty());
    }

    #[test]
    fn member_that_does_not_revoke_is_fenced_after_rebalance_timeout() {
        let mut sim = Sim::new(&[("t", 4)]);
        let t = sim.catalog.id("t");
        let mut req = join_req("a", &["t"]);
        req.rebalance_timeout_ms = 10_000;
        let (resp, _) = sim.send(req).unwrap();
        sim.apply(&resp);
        sim.join("b", &["t"]);
        let start = sim.now;
        // a is asked to revoke, and keeps heartbeating without ever releasing.
        let (resp, _) = sim.send(hb_req("a", 1, None)).unwrap();
        assert_eq!(resp.assignment, Some(tps(t, &[0, 1])));
        sim.now = start + Duration::from_secs(5);
        sim.send(hb_req("a", 1, Some(tps(t, &[0, 1, 2, 3]))))
            .unwrap();
        sim.beat("b");
        assert!(!sim.tick());
        sim.now = start + Duration::from_secs(9);
        sim.send(hb_req("a", 1, None)).unwrap();
        assert!(!sim.tick());
        assert_eq!(sim.group.member_count(), 2);
        sim.now = start + Duration::from_secs(11);
        assert!(sim.tick(), "a is fenced");
        assert!(sim.group.member_epoch("a").is_none());
        assert_eq!(
            sim.send(hb_req("a", 1, None)).unwrap_err(),
            GroupError::UnknownMemberId
        );
        sim.clients.remove("a");
        let (resp, _) = sim.beat("b");
        assert_eq!(resp.assignment, Some(tps(t, &[0, 1, 2, 3])));
    }

    #[test]
    fn epochs_are_checked() {
        let mut sim = Sim::new(&[("t", 4)]);
        let t = sim.catalog.id("t");
        sim.join("a", &["t"]);
        assert_eq!(
            sim.send(hb_req("a", 2, None)).unwrap_err(),
            GroupError::FencedMemberEpoch
        );
        assert_eq!(
            sim.send(hb_req("nobody", 1, None)).unwrap_err(),
            GroupError::UnknownMemberId
        );
        assert!(matches!(
            sim.send(hb_req("", 1, None)).unwrap_err(),
            GroupError::InvalidRequest(_)
        ));
        assert!(matches!(
            sim.send(hb_req("a", -3, None)).unwrap_err(),
            GroupError::InvalidRequest(_)
        ));
        // Move a to epoch 3 (b joins and leaves).
        sim.join("b", &["t"]);
        sim.converge();
        sim.send(hb_req("b", 2, None).with_epoch(-1)).unwrap();
        sim.clients.remove("b");
        let (resp, _) = sim.beat("a");
        assert_eq!(resp.member_epoch, 3);
        assert_eq!(resp.assignment, Some(tps(t, &[0, 1, 2, 3])));
        // The response was lost: a retries with epoch 2 and what it owned then.
        let (resp, changed) = sim.send(hb_req("a", 2, Some(tps(t, &[0, 1])))).unwrap();
        assert!(!changed);
        assert_eq!(resp.member_epoch, 3);
        assert_eq!(resp.assignment, Some(tps(t, &[0, 1, 2, 3])), "resent");
        // The previous epoch without owned partitions, or with partitions it does not have,
        // or an older epoch: fenced.
        assert_eq!(
            sim.send(hb_req("a", 2, None)).unwrap_err(),
            GroupError::FencedMemberEpoch
        );
        let other = Uuid::from_u128(7);
        assert_eq!(
            sim.send(hb_req("a", 2, Some(tps(other, &[0]))))
                .unwrap_err(),
            GroupError::FencedMemberEpoch
        );
        assert_eq!(
            sim.send(hb_req("a", 1, Some(vec![]))).unwrap_err(),
            GroupError::FencedMemberEpoch
        );
        // An error changes nothing.
        assert_eq!(sim.group.member_epoch("a"), Some(3));
    }

    #[test]
    fn join_validation() {
        let mut sim = Sim::new(&[("t", 4)]);
        let mut req = join_req("a", &[]);
        req.subscribed_topic_names = None;
        assert!(matches!(
            sim.send(req).unwrap_err(),
            GroupError::InvalidRequest(_)
        ));
        let mut req = join_req("a", &["t"]);
        req.rebalance_timeout_ms = -1;
        assert!(matches!(
            sim.send(req).unwrap_err(),
            GroupError::InvalidRequest(_)
        ));
        let mut req = join_req("a", &["t"]);
        req.server_assignor = Some("sticky".into());
        assert_eq!(
            sim.send(req).unwrap_err(),
            GroupError::UnsupportedAssignor("sticky".into())
        );
        // Implemented but not offered by the configuration.
        sim.cfg.consumer_assignors = vec!["uniform".into()];
        let mut req = join_req("a", &["t"]);
        req.server_assignor = Some("range".into());
        assert_eq!(
            sim.send(req).unwrap_err(),
            GroupError::UnsupportedAssignor("range".into())
        );
        let mut req = join_req("a", &[]);
        req.subscribed_topic_names = None;
        req.subscribed_topic_regex = Some("[a-z".into());
        assert!(matches!(
            sim.send(req).unwrap_err(),
            GroupError::InvalidRegularExpression(_)
        ));
        assert!(sim.group.is_empty(), "failed joins add nobody");
        // An empty subscription is allowed.
        let (resp, _) = sim.send(join_req("a", &[])).unwrap();
        assert_eq!(resp.assignment, Some(vec![]));
        // Group size limit.
        sim.cfg.max_size = Some(2);
        sim.send(join_req("b", &["t"])).unwrap();
        assert_eq!(
            sim.send(join_req("c", &["t"])).unwrap_err(),
            GroupError::GroupMaxSizeReached
        );
        // A rejoin of a known member is not a new member.
        sim.send(join_req("b", &["t"])).unwrap();
        assert_eq!(sim.group.member_count(), 2);
    }

    #[test]
    fn rejoin_of_known_member_starts_fresh() {
        let mut sim = Sim::new(&[("t", 4)]);
        let t = sim.catalog.id("t");
        sim.join("a", &["t"]);
        sim.join("b", &["t"]);
        sim.converge();
        let epoch = sim.group.group_epoch();
        // a was fenced client-side and rejoins with epoch 0 and the same id.
        let resp = sim.join("a", &["t"]);
        assert_eq!(resp.member_id, "a");
        assert_eq!(resp.member_epoch, epoch);
        assert_eq!(resp.assignment, Some(tps(t, &[0, 1])));
        assert_eq!(sim.group.group_epoch(), epoch, "same subscription: no bump");
        assert_eq!(sim.group.member_count(), 2);
        // A rejoin with another subscription bumps the epoch.
        sim.catalog.create("u", 2);
        sim.join("a", &["t", "u"]);
        assert_eq!(sim.group.group_epoch(), epoch + 1);
        sim.converge();
        assert_eq!(sim.owned_count("a") + sim.owned_count("b"), 6);
        assert_eq!(sim.owned_count("a"), 3);
    }

    #[test]
    fn subscription_change_reassigns() {
        let mut sim = Sim::new(&[("t", 2), ("u", 2)]);
        let (t, u) = (sim.catalog.id("t"), sim.catalog.id("u"));
        sim.join("a", &["t"]);
        let epoch = sim.group.group_epoch();
        let mut req = hb_req("a", 1, None);
        req.subscribed_topic_names = Some(vec!["u".into()]);
        let (resp, changed) = sim.send(req).unwrap();
        assert!(changed);
        assert_eq!(sim.group.group_epoch(), epoch + 1);
        // First t is revoked...
        assert_eq!(resp.assignment, Some(vec![]));
        assert_eq!(resp.member_epoch, 1);
        // ...which the member owns until it reports it released.
        let owned = sim.group.owned(&sim.catalog);
        assert_eq!(owned[0].1.len(), 2);
        assert!(owned[0].1.iter().all(|tp| tp.topic == "t"));
        assert_eq!(sim.group.target_assignment(&sim.catalog)[0].1.len(), 2);
        assert!(sim.group.target_assignment(&sim.catalog)[0].1[0].topic == "u");
        assert!(!sim.group.target.get("a").unwrap().contains_key(&t));
        sim.apply(&resp);
        // ...then u is assigned.
        let (resp, _) = sim.beat("a");
        assert_eq!(resp.member_epoch, epoch + 1);
        assert_eq!(resp.assignment, Some(tps(u, &[0, 1])));
        sim.apply(&resp);
        assert_eq!(
            sim.group.subscribed_topics(&sim.catalog),
            vec!["u".to_string()]
        );
        // Same subscription again (reordered, duplicated): no bump.
        let mut req = hb_req("a", epoch + 1, None);
        req.subscribed_topic_names = Some(vec!["u".into(), "u".into()]);
        let (_, changed) = sim.send(req).unwrap();
        assert!(!changed);
    }

    #[test]
    fn partition_count_increase_triggers_reassignment() {
        let mut sim = Sim::new(&[("t", 2)]);
        let t = sim.catalog.id("t");
        sim.join("a", &["t"]);
        sim.join("b", &["t"]);
        sim.converge();
        let epoch = sim.group.group_epoch();
        assert!(!sim.tick());
        sim.catalog.set_partitions("t", 6);
        assert!(sim.tick(), "metadata change bumps the epoch");
        assert_eq!(sim.group.group_epoch(), epoch + 1);
        assert_eq!(sim.group.assignment_epoch(), epoch + 1);
        assert!(!sim.tick());
        sim.converge();
        assert_eq!(sim.owned_count("a"), 3);
        assert_eq!(sim.owned_count("b"), 3);
        // Stickiness: each kept its original partition.
        assert!(sim.clients["a"].owned[&t].contains(&0));
        assert!(sim.clients["b"].owned[&t].contains(&1));
        // The change is also noticed by a heartbeat (no tick needed).
        sim.catalog.set_partitions("t", 8);
        let (_, changed) = sim.beat("a");
        assert!(changed);
        assert_eq!(sim.group.group_epoch(), epoch + 2);
        sim.converge();
        assert_eq!(sim.owned_count("a") + sim.owned_count("b"), 8);
    }

    #[test]
    fn deleted_topic_is_revoked() {
        let mut sim = Sim::new(&[("t", 2), ("u", 2)]);
        let t = sim.catalog.id("t");
        sim.join("a", &["t", "u"]);
        sim.catalog.delete("u");
        assert!(sim.tick());
        let (resp, _) = sim.beat("a");
        assert_eq!(resp.assignment, Some(tps(t, &[0, 1])));
        sim.converge();
        assert_eq!(sim.group.state(), "Stable");
        assert_eq!(sim.owned_count("a"), 2);
    }

    #[test]
    fn regex_subscription_follows_new_topics_and_skips_internal_ones() {
        let mut sim = Sim::new(&[
            ("orders-eu", 1),
            ("payments", 1),
            ("__consumer_offsets", 50),
        ]);
        let mut req = join_req("a", &[]);
        req.subscribed_topic_names = None;
        req.subscribed_topic_regex = Some("orders-.*|__.*".into());
        let (resp, _) = sim.send(req).unwrap();
        let eu = sim.catalog.id("orders-eu");
        assert_eq!(resp.assignment, Some(tps(eu, &[0])));
        sim.apply(&resp);
        let epoch = sim.group.group_epoch();
        let us = sim.catalog.create("orders-us", 2);
        assert!(sim.tick());
        assert_eq!(sim.group.group_epoch(), epoch + 1);
        let (resp, _) = sim.beat("a");
        let mut expected = vec![(eu, vec![0]), (us, vec![0, 1])];
        expected.sort();
        assert_eq!(resp.assignment, Some(expected));
        assert_eq!(
            sim.group.subscribed_topics(&sim.catalog),
            vec!["orders-eu".to_string(), "orders-us".to_string()]
        );
        // A topic that does not match changes nothing.
        sim.catalog.create("audit", 3);
        assert!(!sim.tick());
    }

    #[test]
    fn range_assignor_when_requested() {
        let mut sim = Sim::new(&[("t", 5), ("u", 3)]);
        let (t, u) = (sim.catalog.id("t"), sim.catalog.id("u"));
        for id in ["m2", "m1"] {
            let mut req = join_req(id, &["t", "u"]);
            req.server_assignor = Some("range".into());
            let (resp, _) = sim.send(req).unwrap();
            sim.apply(&resp);
        }
        sim.converge();
        assert_eq!(sim.group.assignor(), "range");
        assert_eq!(sim.group.describe(&sim.catalog).protocol, "range");
        let a: Vec<i32> = sim.clients["m1"].owned[&t].iter().copied().collect();
        let b: Vec<i32> = sim.clients["m2"].owned[&t].iter().copied().collect();
        assert_eq!(a, vec![0, 1, 2]);
        assert_eq!(b, vec![3, 4]);
        let a: Vec<i32> = sim.clients["m1"].owned[&u].iter().copied().collect();
        let b: Vec<i32> = sim.clients["m2"].owned[&u].iter().copied().collect();
        assert_eq!(a, vec![0, 1]);
        assert_eq!(b, vec![2]);
        assert_eq!(sim.group.state(), "Stable");
        // ConsumerGroupDescribe reports each member's subscription and target (franz-go's
        // kadm found them empty).
        let described = sim.group.describe(&sim.catalog);
        let m1 = described
            .members
            .iter()
            .find(|m| m.member_id == "m1")
            .expect("m1 described");
        let c = m1.consumer.as_ref().expect("consumer-protocol details");
        assert_eq!(c.subscribed_topic_names, ["t", "u"]);
        assert_eq!(c.target, m1.assigned, "a stable member owns its target");
        assert_eq!(c.target.len(), 5);
    }

    #[test]
    fn default_assignor_is_the_first_configured() {
        let mut sim = Sim::new(&[("t", 4)]);
        sim.cfg.consumer_assignors = vec!["range".into(), "uniform".into()];
        sim.join("a", &["t"]);
        assert_eq!(sim.group.assignor(), "range");
        // Most members asking for uniform wins.
        let mut req = join_req("b", &["t"]);
        req.server_assignor = Some("uniform".into());
        sim.send(req).unwrap();
        assert_eq!(sim.group.assignor(), "uniform");
    }

    // ---- static membership ----

    fn static_join(id: &str, instance: &str) -> ConsumerHeartbeatRequest {
        let mut req = join_req(id, &["t"]);
        req.instance_id = Some(instance.into());
        req
    }

    #[test]
    fn static_member_leaves_temporarily_and_is_replaced() {
        let mut sim = Sim::new(&[("t", 4)]);
        let t = sim.catalog.id("t");
        let (resp, _) = sim.send(static_join("a1", "inst-a")).unwrap();
        sim.apply(&resp);
        sim.join("b", &["t"]);
        sim.converge();
        let a_parts = sim.clients["a1"].owned.clone();
        assert_eq!(a_parts[&t].len(), 2);
        let epoch = sim.group.group_epoch();

        // Another member with the same instance id while a1 is active.
        assert_eq!(
            sim.send(static_join("a2", "inst-a")).unwrap_err(),
            GroupError::UnreleasedInstanceId
        );
        // The wrong instance id for a member: fenced.
        let mut req = hb_req("a1", epoch, None);
        req.instance_id = Some("inst-x".into());
        assert_eq!(sim.send(req).unwrap_err(), GroupError::FencedInstanceId);

        // a1 leaves temporarily: its slot and partitions stay reserved.
        let mut req = hb_req("a1", epoch, None).with_epoch(-2);
        req.instance_id = Some("inst-a".into());
        let (resp, changed) = sim.send(req).unwrap();
        assert!(changed);
        assert_eq!(resp.member_epoch, -2);
        sim.clients.remove("a1");
        assert_eq!(sim.group.group_epoch(), epoch, "no rebalance");
        assert_eq!(sim.group.member_epoch("a1"), Some(-2));
        let (resp, _) = sim.beat("b");
        assert_eq!(resp.assignment, None, "b does not get a1's partitions");
        // A heartbeat of the departed instance is fenced.
        assert_eq!(
            sim.send(hb_req("a1", epoch, None)).unwrap_err(),
            GroupError::FencedMemberEpoch
        );

        // The instance comes back under a new member id: it takes the slot over.
        let (resp, changed) = sim.send(static_join("a2", "inst-a")).unwrap();
        assert!(changed);
        assert_eq!(resp.member_id, "a2");
        assert_eq!(resp.member_epoch, epoch);
        assert_eq!(resp.assignment, Some(from_partitions(&a_parts)));
        assert_eq!(sim.group.group_epoch(), epoch);
        assert!(sim.group.member_epoch("a1").is_none());
        assert_eq!(sim.group.member_count(), 2);
        sim.apply(&resp);
        sim.converge();
        assert_eq!(sim.group.state(), "Stable");
    }

    #[test]
    fn departed_static_member_expires_after_session_timeout() {
        let mut sim = Sim::new(&[("t", 2)]);
        let t = sim.catalog.id("t");
        let (resp, _) = sim.send(static_join("a1", "inst-a")).unwrap();
        sim.apply(&resp);
        sim.join("b", &["t"]);
        sim.converge();
        let mut req = hb_req("a1", 2, None).with_epoch(-2);
        req.instance_id = Some("inst-a".into());
        sim.send(req).unwrap();
        sim.clients.remove("a1");
        let start = sim.now;
        sim.now = start + Duration::from_secs(30);
        sim.beat("b");
        assert!(!sim.tick());
        sim.now = start + Duration::from_secs(46);
        assert!(sim.tick());
        assert!(sim.group.member_epoch("a1").is_none());
        let (resp, _) = sim.beat("b");
        assert_eq!(resp.assignment, Some(tps(t, &[0, 1])));
        // The instance joins again later: a new static member.
        let (resp, _) = sim.send(static_join("a3", "inst-a")).unwrap();
        assert_eq!(resp.assignment, Some(vec![]));
    }

    #[test]
    fn static_member_leaving_with_minus_one_is_removed() {
        let mut sim = Sim::new(&[("t", 2)]);
        let (resp, _) = sim.send(static_join("a1", "inst-a")).unwrap();
        let mut req = hb_req("", resp.member_epoch, None).with_epoch(-1);
        req.instance_id = Some("inst-a".into());
        let (resp, changed) = sim.send(req).unwrap();
        assert!(changed);
        assert_eq!(resp.member_id, "a1");
        assert!(sim.group.is_empty());
    }

    // ---- offsets, listing, describe ----

    #[test]
    fn offset_requests_are_validated() {
        let mut sim = Sim::new(&[("t", 2)]);
        sim.join("a", &["t"]);
        assert_eq!(sim.group.validate_offset_request("a", 1), Ok(()));
        assert_eq!(
            sim.group.validate_offset_request("a", 0),
            Err(GroupError::StaleMemberEpoch)
        );
        assert_eq!(
            sim.group.validate_offset_request("a", 2),
            Err(GroupError::StaleMemberEpoch)
        );
        assert_eq!(
            sim.group.validate_offset_request("x", 1),
            Err(GroupError::UnknownMemberId)
        );
        assert_eq!(sim.group.validate_offset_request("", -1), Ok(()));
        assert_eq!(
            sim.group.validate_offset_request("", 1),
            Err(GroupError::UnknownMemberId)
        );
        // Commits: a simple commit (negative epoch) needs an empty group, whatever member id it
        // carries (an `assign()` consumer sends its own).
        assert_eq!(sim.group.validate_offset_commit("a", 1), Ok(()));
        assert_eq!(
            sim.group.validate_offset_commit("", -1),
            Err(GroupError::UnknownMemberId)
        );
        assert_eq!(
            sim.group.validate_offset_commit("outsider", -1),
            Err(GroupError::UnknownMemberId)
        );
        let empty = ConsumerGroup::new("g".into());
        assert_eq!(empty.validate_offset_commit("outsider", -1), Ok(()));
        assert_eq!(empty.validate_offset_commit("", -1), Ok(()));
        assert_eq!(
            empty.validate_offset_commit("outsider", 3),
            Err(GroupError::UnknownMemberId)
        );
    }

    #[test]
    fn listing_and_describe() {
        let mut sim = Sim::new(&[("t", 2)]);
        assert_eq!(sim.group.listing().state, "Empty");
        sim.join("b", &["t"]);
        sim.join("a", &["t"]);
        let listing = sim.group.listing();
        assert_eq!(listing.group_id, "g");
        assert_eq!(listing.protocol_type, "consumer");
        assert_eq!(listing.kind, GroupKind::Consumer);
        assert_eq!(listing.state, "Reconciling");
        sim.converge();
        assert_eq!(sim.group.listing().state, "Stable");
        let d = sim.group.describe(&sim.catalog);
        assert_eq!(d.group_id, "g");
        assert_eq!(d.state, "Stable");
        assert_eq!(d.protocol_type, "consumer");
        assert_eq!(d.protocol, "uniform");
        assert_eq!(d.kind, GroupKind::Consumer);
        assert_eq!(d.generation, 2);
        assert_eq!(d.members.len(), 2);
        assert_eq!(d.members[0].member_id, "a");
        assert_eq!(d.members[0].client_id, "client-a");
        assert_eq!(d.members[0].client_host, "/127.0.0.1");
        assert_eq!(d.members[0].member_epoch, 2);
        assert!(d.members[0].metadata.is_empty());
        let all: BTreeSet<GroupTopicPartition> = d
            .members
            .iter()
            .flat_map(|m| {
                assert_eq!(m.assigned.len(), 1);
                m.assigned.clone()
            })
            .collect();
        assert_eq!(all.len(), 2);
        let target = sim.group.target_assignment(&sim.catalog);
        assert_eq!(target.len(), 2);
        assert_eq!(target[0].1, d.members[0].assigned);
    }

    #[test]
    fn remove_all_members_empties_the_group() {
        let mut sim = Sim::new(&[("t", 2)]);
        assert!(!sim.group.remove_all_members());
        sim.join("a", &["t"]);
        let epoch = sim.group.group_epoch();
        assert!(sim.group.remove_all_members());
        assert!(sim.group.is_empty());
        assert_eq!(sim.group.state(), "Empty");
        assert!(sim.group.group_epoch() > epoch);
        assert_eq!(
            sim.send(hb_req("a", epoch, None)).unwrap_err(),
            GroupError::UnknownMemberId
        );
        assert!(!sim.tick());
    }

    // ---- persistence ----

    #[test]
    fn serde_round_trip_mid_revocation_and_after_load() {
        let mut sim = Sim::new(&[("t", 4)]);
        let t = sim.catalog.id("t");
        sim.join("a", &["t"]);
        sim.join("b", &["t"]);
        // a is asked to revoke; the coordinator fails over before it answers.
        let (resp, _) = sim.send(hb_req("a", 1, None)).unwrap();
        sim.apply(&resp);
        let json = serde_json::to_string(&sim.group).unwrap();
        let mut loaded: ConsumerGroup = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&loaded).unwrap(), json);
        assert_eq!(loaded.group_epoch(), 2);
        assert_eq!(loaded.members, sim.group.members);
        assert_eq!(loaded.target, sim.group.target);
        assert!(loaded.runtime.is_empty(), "timers are not persisted");

        let loaded_at = sim.now + Duration::from_secs(40);
        loaded.after_load(loaded_at, &sim.cfg);
        sim.group = loaded;
        sim.now = loaded_at;
        sim.check();
        // Timers restarted at load: nobody expires 44 s after the old heartbeats.
        sim.now = loaded_at + Duration::from_secs(20);
        assert!(!sim.tick());
        // The protocol continues: a releases, b then gets its partitions; the first answer
        // after the failover carries the assignment again.
        let (resp, _) = sim.beat("a");
        assert_eq!(resp.member_epoch, 2);
        assert_eq!(resp.assignment, Some(tps(t, &[0, 1])));
        let (resp, _) = sim.beat("b");
        assert_eq!(resp.assignment, Some(tps(t, &[2, 3])));
        assert_eq!(sim.group.state(), "Stable");
        // Sessions run from the load.
        sim.now = loaded_at + Duration::from_secs(46);
        sim.beat("a");
        sim.beat("b");
        assert!(!sim.tick());
    }

    #[test]
    fn rebalance_timeout_restarts_after_load() {
        let mut sim = Sim::new(&[("t", 2)]);
        let mut req = join_req("a", &["t"]);
        req.rebalance_timeout_ms = 10_000;
        let (resp, _) = sim.send(req).unwrap();
        sim.apply(&resp);
        sim.join("b", &["t"]);
        sim.send(hb_req("a", 1, None)).unwrap(); // revocation asked
        let mut loaded: ConsumerGroup =
            serde_json::from_str(&serde_json::to_string(&sim.group).unwrap()).unwrap();
        let at = sim.now + Duration::from_secs(8);
        loaded.after_load(at, &sim.cfg);
        assert!(!loaded.tick(at + Duration::from_secs(9), &sim.catalog, &sim.cfg));
        assert!(loaded.tick(at + Duration::from_secs(11), &sim.catalog, &sim.cfg));
        assert!(loaded.member_epoch("a").is_none());
    }

    // ---- a long randomized run ----

    /// A small deterministic generator (no dev-dependency needed).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    #[test]
    fn random_churn_never_overlaps_and_converges() {
        for seed in 1..=16u64 {
            let mut rng = Lcg(seed);
            let mut sim = Sim::new(&[("t1", 6), ("t2", 3), ("t3", 1)]);
            sim.slow = seed % 4 != 0;
            let topic_sets: [&[&str]; 3] = [&["t1", "t2", "t3"], &["t1"], &["t2", "t3"]];
            let mut next_id = 0;
            for _ in 0..300 {
                match rng.next(10) {
                    0 if sim.clients.len() < 6 => {
                        next_id += 1;
                        let id = format!("m{next_id}");
                        sim.join(&id, topic_sets[rng.next(3) as usize]);
                    }
                    1 if !sim.clients.is_empty() => {
                        let ids: Vec<String> = sim.clients.keys().cloned().collect();
                        let id = ids[rng.next(ids.len() as u64) as usize].clone();
                        let epoch = sim.clients[&id].epoch;
                        sim.send(hb_req(&id, epoch, None).with_epoch(-1)).unwrap();
                        sim.clients.remove(&id);
                    }
                    2 => {
                        let partitions = 1 + rng.next(8) as i32;
                        sim.catalog.set_partitions("t1", partitions);
                        // Clients drop partitions that no longer exist.
                        let t1 = sim.catalog.id("t1");
                        for c in sim.clients.values_mut() {
                            for set in [&mut c.owned, &mut c.revoking] {
                                if let Some(ps) = set.get_mut(&t1) {
                                    ps.retain(|&p| p < partitions);
                                }
                            }
                        }
                        sim.tick();
                    }
                    4 | 5 if !sim.clients.is_empty() => {
                        let ids: Vec<String> = sim.clients.keys().cloned().collect();
                        let id = ids[rng.next(ids.len() as u64) as usize].clone();
                        sim.finish(&id);
                    }
                    3 if !sim.clients.is_empty() => {
                        // A lazy heartbeat that reports nothing.
                        let ids: Vec<String> = sim.clients.keys().cloned().collect();
                        let id = ids[rng.next(ids.len() as u64) as usize].clone();
                        let epoch = sim.clients[&id].epoch;
                        let (resp, _) = sim.send(hb_req(&id, epoch, None)).unwrap();
                        sim.apply(&resp);
                    }
                    _ if !sim.clients.is_empty() => {
                        let ids: Vec<String> = sim.clients.keys().cloned().collect();
                        let id = ids[rng.next(ids.len() as u64) as usize].clone();
                        sim.beat(&id);
                    }
                    _ => {}
                }
            }
            sim.converge();
            if sim.clients.is_empty() {
                continue;
            }
            assert_eq!(sim.group.state(), "Stable", "seed {seed}");
            // Everything subscribed is consumed by someone.
            let subscribed = sim.group.subscribed_topics(&sim.catalog);
            let expected: usize = subscribed
                .iter()
                .map(|t| sim.catalog.topic(t).unwrap().partitions as usize)
                .sum();
            let total: usize = sim.clients.keys().map(|id| sim.owned_count(id)).sum();
            assert_eq!(total, expected, "seed {seed}");
        }
    }

    // ---- subscription regexes ----

    #[test]
    fn topic_pattern_matches_whole_names_with_re2_syntax() {
        let p = |s: &str| TopicPattern::parse(s).unwrap();
        let table: &[(&str, &str, bool)] = &[
            ("orders", "orders", true),
            ("orders", "orders2", false),
            ("orders", "order", false),
            ("orders.*", "orders-eu", true),
            ("orders.*", "my-orders", false),
            (".*", "", true),
            ("a|b.*|c", "b-1", true),
            ("a|b.*|c", "cc", false),
            ("^(orders|payments)$", "payments", true),
            ("events-.+", "events-", false),
            ("logs\\.app", "logs.app", true),
            ("logs\\.app", "logsXapp", false),
            ("colou?r", "colour", true),
            // What the hand-written subset refused (issue 9): classes, \d, counted repetition.
            ("[a-z]+", "orders", true),
            ("[a-z]+", "orders-1", false),
            ("t\\d", "t7", true),
            ("t\\d", "tx", false),
            ("t\\d{2}", "t42", true),
            ("t\\d{2}", "t4", false),
            ("t\\d{2}", "t423", false),
            ("topic_[0-9]{1,3}_(eu|us)", "topic_12_eu", true),
            (
                "rdkafkatest_rnd[0-9a-f]+_.*",
                "rdkafkatest_rnd4f2a_0033",
                true,
            ),
            ("\\w+-dlq", "orders-dlq", true),
            ("(?i)ORDERS", "orders", true),
        ];
        for (pattern, name, want) in table {
            assert_eq!(p(pattern).matches(name), *want, "{pattern:?} on {name:?}");
        }
    }

    #[test]
    fn topic_pattern_refuses_invalid_regexes() {
        let too_long = "a".repeat(PATTERN_CHARS_MAX + 1);
        let too_big = "(\\w{1000}){1000}";
        for bad in [
            "", "*", "[a-z", "(a|b", "a{2,1}", "(?<=a)b", "\\1", too_big, &too_long,
        ] {
            assert!(
                TopicPattern::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    impl ConsumerHeartbeatRequest {
        fn with_epoch(mut self, epoch: i32) -> Self {
            self.member_epoch = epoch;
            self
        }
    }
}
