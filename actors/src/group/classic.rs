//! The classic group protocol: JoinGroup / SyncGroup / Heartbeat / LeaveGroup, with the
//! assignment computed by the group's leader (a client) and handed out by the coordinator.
//!
//! ```text
//!            join (new member / changed metadata / leader rejoin / leave / session expiry)
//!   Empty ─────────────────────────▶ PreparingRebalance ──all members rejoined, or the
//!     ▲                                  ▲      │         rebalance timeout passed──┐
//!     │ last member gone                 │      ▼                                  │
//!     └──────────── Stable ◀── leader's SyncGroup (persisted) ── CompletingRebalance ◀┘
//! ```
//!
//! Pure state: no I/O. The coordinator actor persists the group when [`SyncStep::Persist`]
//! asks for it and answers the held SyncGroups afterwards, so an assignment a member received
//! is always on the replicated log first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ractor::RpcReplyPort;
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use super::consumer_protocol::{decode_assignment, decode_subscription};
use super::types::*;
use super::GroupConfig;

/// Where a held JoinGroup answer goes.
pub type JoinReply = RpcReplyPort<Result<JoinResponse, GroupError>>;
/// Where a held SyncGroup answer goes.
pub type SyncReply = RpcReplyPort<Result<SyncResponse, GroupError>>;

/// Classic group states, as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClassicState {
    /// No members (offsets may remain).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Assigned and running.
    Stable,
}

impl ClassicState {
    /// Kafka's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
        }
    }
}

/// One member of a classic group.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClassicMember {
    member_id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<MemberProtocol>,
    assignment: Vec<u8>,
    #[serde(skip)]
    deadline: Option<Instant>,
    #[serde(skip)]
    awaiting_join: Option<JoinReply>,
    #[serde(skip)]
    awaiting_sync: Option<SyncReply>,
}

impl Clone for ClassicMember {
    /// Clones the durable part (held answers are not cloned).
    fn clone(&self) -> Self {
        Self {
            member_id: self.member_id.clone(),
            instance_id: self.instance_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            session_timeout: self.session_timeout,
            rebalance_timeout: self.rebalance_timeout,
            protocols: self.protocols.clone(),
            assignment: self.assignment.clone(),
            deadline: self.deadline,
            awaiting_join: None,
            awaiting_sync: None,
        }
    }
}

impl ClassicMember {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| Bytes::from(p.metadata.clone()))
            .unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }
}

/// A classic group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassicGroup {
    group_id: String,
    state: ClassicState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, ClassicMember>,
    /// `group.instance.id` → member id.
    static_members: BTreeMap<String, String>,
    /// Wall-clock ms when the group last became empty (offset retention counts from it).
    empty_since_ms: Option<i64>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, waiting for the member's second join.
    #[serde(skip)]
    pending_members: HashMap<String, Instant>,
    /// When the current rebalance gives up on members that have not rejoined.
    #[serde(skip)]
    rebalance_deadline: Option<Instant>,
    /// A first rebalance of an empty group waits until then for more members.
    #[serde(skip)]
    initial_delay_until: Option<Instant>,
    #[serde(skip)]
    rebalance_started: Option<Instant>,
}

/// What the coordinator must do after a SyncGroup.
#[derive(Debug, PartialEq, Eq)]
pub enum SyncStep {
    /// Nothing: the answer was sent or is held.
    Done,
    /// The leader's assignment was applied: persist the group, then call
    /// [`ClassicGroup::finish_sync`].
    Persist,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl ClassicGroup {
    /// A new, empty group.
    pub fn new(group_id: String) -> Self {
        Self {
            group_id,
            state: ClassicState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            empty_since_ms: Some(now_ms()),
            pending_members: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            rebalance_started: None,
        }
    }

    /// State.
    pub fn state(&self) -> ClassicState {
        self.state
    }

    /// Current generation.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// True without members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// When the group last became empty (wall clock ms), if it is empty.
    pub fn empty_since_ms(&self) -> Option<i64> {
        if self.members.is_empty() {
            self.empty_since_ms
        } else {
            None
        }
    }

    /// After reading the group back from the log: every member gets a fresh session.
    pub fn after_load(&mut self, now: Instant) {
        for m in self.members.values_mut() {
            m.deadline = Some(now + m.session_timeout);
        }
        if self.members.is_empty() {
            self.state = ClassicState::Empty;
        }
    }

    /// A durable copy without held answers.
    pub fn snapshot(&self) -> ClassicGroup {
        self.clone()
    }

    /// Answers every held request with `err` (the coordinator is going away).
    pub fn fail_all(&mut self, err: GroupError) {
        for m in self.members.values_mut() {
            if let Some(r) = m.awaiting_join.take() {
                let _ = r.send(Err(err.clone()));
            }
            if let Some(r) = m.awaiting_sync.take() {
                let _ = r.send(Err(err.clone()));
            }
        }
    }

    fn new_member_id(client_id: &str) -> String {
        let prefix = if client_id.is_empty() {
            "member"
        } else {
            client_id
        };
        format!("{prefix}-{}", uuid::Uuid::new_v4())
    }

    /// The members' common protocols, in the joining member's order.
    fn compatible(&self, req: &JoinRequest) -> bool {
        if req.protocols.is_empty() || req.protocol_type.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(req.protocol_type.as_str()) {
            return false;
        }
        req.protocols
            .iter()
            .any(|p| self.members.values().all(|m| m.supports(&p.name)))
    }

    /// JoinGroup. The answer is sent on `reply`, now or when the rebalance completes.
    /// Returns true when the group's durable state changed and should be persisted.
    pub fn join(
        &mut self,
        now: Instant,
        cfg: &GroupConfig,
        req: JoinRequest,
        reply: JoinReply,
    ) -> bool {
        if req.session_timeout < cfg.min_session_timeout
            || req.session_timeout > cfg.max_session_timeout
        {
            let _ = reply.send(Err(GroupError::InvalidSessionTimeout {
                min_ms: cfg.min_session_timeout.as_millis() as u64,
                max_ms: cfg.max_session_timeout.as_millis() as u64,
            }));
            return false;
        }
        let known = !req.member_id.is_empty() && self.members.contains_key(&req.member_id);
        if !known && !self.compatible(&req) {
            let _ = reply.send(Err(GroupError::InconsistentGroupProtocol));
            return false;
        }
        if let Some(instance) = req.group_instance_id.clone() {
            return self.join_static(now, cfg, instance, req, reply);
        }
        if req.member_id.is_empty() {
            if cfg.max_size.is_some_and(|max| self.members.len() >= max) {
                let _ = reply.send(Err(GroupError::GroupMaxSizeReached));
                return false;
            }
            let id = Self::new_member_id(&req.client_id);
            if req.require_known_member_id {
                self.pending_members
                    .insert(id.clone(), now + req.session_timeout);
                let _ = reply.send(Err(GroupError::MemberIdRequired(id)));
                return false;
            }
            self.add_member(now, cfg, id, req, reply);
            return false;
        }
        if self.pending_members.remove(&req.member_id).is_some() {
            if cfg.max_size.is_some_and(|max| self.members.len() >= max) {
                let _ = reply.send(Err(GroupError::GroupMaxSizeReached));
                return false;
            }
            let id = req.member_id.clone();
            self.add_member(now, cfg, id, req, reply);
            return false;
        }
        if !known {
            let _ = reply.send(Err(GroupError::UnknownMemberId));
            return false;
        }
        self.rejoin(now, cfg, req, reply);
        false
    }

    fn join_static(
        &mut self,
        now: Instant,
        cfg: &GroupConfig,
        instance: String,
        req: JoinRequest,
        reply: JoinReply,
    ) -> bool {
        match self.static_members.get(&instance).cloned() {
            None => {
                if !req.member_id.is_empty() && !self.members.contains_key(&req.member_id) {
                    let _ = reply.send(Err(GroupError::UnknownMemberId));
                    return false;
                }
                if req.member_id.is_empty()
                    && cfg.max_size.is_some_and(|max| self.members.len() >= max)
                {
                    let _ = reply.send(Err(GroupError::GroupMaxSizeReached));
                    return false;
                }
                let id = if req.member_id.is_empty() {
                    Self::new_member_id(&req.client_id)
                } else {
                    req.member_id.clone()
                };
                self.static_members.insert(instance, id.clone());
                if self.members.contains_key(&id) {
                    self.rejoin(now, cfg, req, reply);
                } else {
                    self.add_member(now, cfg, id, req, reply);
                }
                false
            }
            Some(old_id) if req.member_id.is_empty() || req.member_id != old_id => {
                if !req.member_id.is_empty() {
                    // A member id this instance no longer owns: an old incarnation.
                    let _ = reply.send(Err(GroupError::FencedInstanceId));
                    return false;
                }
                // A restarted static member: it takes over its old slot under a new id.
                let new_id = Self::new_member_id(&req.client_id);
                let Some(mut m) = self.members.remove(&old_id) else {
                    self.static_members.remove(&instance);
                    return self.join_static(now, cfg, instance, req, reply);
                };
                if let Some(r) = m.awaiting_join.take() {
                    let _ = r.send(Err(GroupError::FencedInstanceId));
                }
                if let Some(r) = m.awaiting_sync.take() {
                    let _ = r.send(Err(GroupError::FencedInstanceId));
                }
                info!(group = %self.group_id, %instance, old = %old_id, new = %new_id,
                    "static member rejoined; it keeps its assignment");
                let same_metadata = m.protocols == req.protocols;
                m.member_id = new_id.clone();
                m.client_id = req.client_id.clone();
                m.client_host = req.client_host.clone();
                m.session_timeout = req.session_timeout;
                m.rebalance_timeout = req.rebalance_timeout;
                m.deadline = Some(now + req.session_timeout);
                m.protocols = req.protocols.clone();
                if self.leader.as_deref() == Some(old_id.as_str()) {
                    self.leader = Some(new_id.clone());
                }
                self.members.insert(new_id.clone(), m);
                self.static_members.insert(instance, new_id.clone());
                match self.state {
                    ClassicState::Stable if same_metadata => {
                        let is_leader = self.leader.as_deref() == Some(new_id.as_str());
                        let _ = reply.send(Ok(self.join_response(&new_id, is_leader, true)));
                        true
                    }
                    _ => {
                        if let Some(m) = self.members.get_mut(&new_id) {
                            m.awaiting_join = Some(reply);
                        }
                        self.prepare_rebalance(now, cfg, "static member rejoined");
                        self.maybe_complete_join(now, cfg);
                        false
                    }
                }
            }
            Some(_) => {
                self.rejoin(now, cfg, req, reply);
                false
            }
        }
    }

    fn add_member(
        &mut self,
        now: Instant,
        cfg: &GroupConfig,
        id: String,
        req: JoinRequest,
        reply: JoinReply,
    ) {
        debug!(group = %self.group_id, member = %id, "member joins");
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let member = ClassicMember {
            member_id: id.clone(),
            instance_id: req.group_instance_id.clone(),
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout: req.session_timeout,
            rebalance_timeout: req.rebalance_timeout,
            protocols: req.protocols,
            assignment: Vec::new(),
            deadline: Some(now + req.session_timeout),
            awaiting_join: Some(reply),
            awaiting_sync: None,
        };
        self.members.insert(id, member);
        self.prepare_rebalance(now, cfg, "member joined");
        if let Some(until) = self.initial_delay_until {
            // Each newcomer during the first rebalance extends the wait a little, up to the
            // rebalance timeout.
            let cap = self.rebalance_deadline.unwrap_or(until);
            self.initial_delay_until =
                Some((now + cfg.initial_rebalance_delay).min(cap).max(until));
        }
        self.maybe_complete_join(now, cfg);
    }

    fn rejoin(&mut self, now: Instant, cfg: &GroupConfig, req: JoinRequest, reply: JoinReply) {
        let id = req.member_id.clone();
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        let state = self.state;
        let generation_ok;
        {
            let Some(m) = self.members.get_mut(&id) else {
                let _ = reply.send(Err(GroupError::UnknownMemberId));
                return;
            };
            let same = m.protocols == req.protocols;
            m.deadline = Some(now + req.session_timeout);
            m.session_timeout = req.session_timeout;
            m.rebalance_timeout = req.rebalance_timeout;
            m.client_host = req.client_host.clone();
            m.protocols = req.protocols;
            generation_ok = same;
            if let Some(old) = m.awaiting_join.take() {
                let _ = old.send(Err(GroupError::RebalanceInProgress));
            }
            match state {
                ClassicState::PreparingRebalance => {
                    m.awaiting_join = Some(reply);
                }
                ClassicState::CompletingRebalance | ClassicState::Stable
                    if same && !(is_leader && state == ClassicState::Stable) =>
                {
                    // Nothing changed: the member lost our answer; send the current one.
                    let resp = self.join_response(&id, is_leader, false);
                    let _ = reply.send(Ok(resp));
                    return;
                }
                _ => {
                    m.awaiting_join = Some(reply);
                }
            }
        }
        if state != ClassicState::PreparingRebalance {
            let why = if generation_ok {
                "leader rejoined"
            } else {
                "member metadata changed"
            };
            self.prepare_rebalance(now, cfg, why);
        }
        self.maybe_complete_join(now, cfg);
    }

    /// The JoinGroup answer for `member` in the current generation.
    fn join_response(&self, member: &str, is_leader: bool, skip_assignment: bool) -> JoinResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if is_leader {
            self.members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: protocol,
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member.to_owned(),
            skip_assignment,
            members,
        }
    }

    fn prepare_rebalance(&mut self, now: Instant, cfg: &GroupConfig, why: &str) {
        if self.state == ClassicState::PreparingRebalance {
            return;
        }
        // Held SyncGroups of the generation being abandoned must rejoin.
        for m in self.members.values_mut() {
            if let Some(r) = m.awaiting_sync.take() {
                let _ = r.send(Err(GroupError::RebalanceInProgress));
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(30));
        self.initial_delay_until = (self.state == ClassicState::Empty
            && !cfg.initial_rebalance_delay.is_zero())
        .then(|| now + cfg.initial_rebalance_delay.min(timeout));
        info!(group = %self.group_id, generation = self.generation, reason = why,
            "preparing to rebalance");
        self.state = ClassicState::PreparingRebalance;
        self.rebalance_deadline = Some(now + timeout);
        self.rebalance_started = Some(now);
    }

    /// Completes the join phase when every member rejoined (and the initial delay passed), or
    /// when the rebalance timeout passed (members that did not rejoin are removed).
    fn maybe_complete_join(&mut self, now: Instant, _cfg: &GroupConfig) -> bool {
        if self.state != ClassicState::PreparingRebalance {
            return false;
        }
        let all_joined = self.members.values().all(|m| m.awaiting_join.is_some())
            && self.pending_members.is_empty();
        let delayed = self.initial_delay_until.is_some_and(|t| now < t);
        let timed_out = self.rebalance_deadline.is_some_and(|t| now >= t);
        if !(timed_out || (all_joined && !delayed)) {
            return false;
        }
        // Members that did not rejoin in time are out.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            info!(group = %self.group_id, member = %id, "member did not rejoin in time; removed");
            self.remove_member(&id);
        }
        self.pending_members.clear();
        self.initial_delay_until = None;
        self.rebalance_deadline = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = ClassicState::Empty;
            self.protocol = None;
            self.leader = None;
            self.empty_since_ms = Some(now_ms());
            info!(group = %self.group_id, generation = self.generation, "group is empty");
            return true;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = ClassicState::CompletingRebalance;
        let took = self.rebalance_started.map(|s| now.duration_since(s));
        info!(group = %self.group_id, generation = self.generation,
            protocol = ?self.protocol, members = self.members.len(), ?took,
            "rebalance: every member joined; waiting for the leader's assignment");
        let leader = self.leader.clone().unwrap_or_default();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let resp = self.join_response(&id, id == leader, false);
            if let Some(m) = self.members.get_mut(&id) {
                m.deadline = Some(now + m.session_timeout);
                if let Some(r) = m.awaiting_join.take() {
                    let _ = r.send(Ok(resp));
                }
            }
        }
        false
    }

    /// Every member votes for its most preferred protocol that all members support.
    fn select_protocol(&self) -> Option<String> {
        let mut candidates: Option<BTreeSet<String>> = None;
        for m in self.members.values() {
            let names: BTreeSet<String> = m.protocols.iter().map(|p| p.name.clone()).collect();
            candidates = Some(match candidates {
                None => names,
                Some(c) => c.intersection(&names).cloned().collect(),
            });
        }
        let candidates = candidates?;
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(p) = m.protocols.iter().find(|p| candidates.contains(&p.name)) {
                *votes.entry(p.name.as_str()).or_default() += 1;
            }
        }
        // Most votes; ties go to the first member's preference order.
        let first = self.members.values().next()?;
        let best = votes.values().copied().max()?;
        first
            .protocols
            .iter()
            .find(|p| votes.get(p.name.as_str()) == Some(&best))
            .map(|p| p.name.clone())
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.remove(id) {
            if let Some(r) = m.awaiting_join.take() {
                let _ = r.send(Err(GroupError::UnknownMemberId));
            }
            if let Some(r) = m.awaiting_sync.take() {
                let _ = r.send(Err(GroupError::UnknownMemberId));
            }
            if let Some(i) = &m.instance_id {
                if self.static_members.get(i).map(String::as_str) == Some(id) {
                    self.static_members.remove(i);
                }
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<&ClassicMember, GroupError> {
        if let Some(i) = instance_id {
            match self.static_members.get(i) {
                Some(id) if id != member_id => return Err(GroupError::FencedInstanceId),
                _ => {}
            }
        }
        self.members
            .get(member_id)
            .ok_or(GroupError::UnknownMemberId)
    }

    /// SyncGroup.
    pub fn sync(&mut self, now: Instant, req: SyncRequest, reply: SyncReply) -> SyncStep {
        let check = self
            .check_member(&req.member_id, req.group_instance_id.as_deref())
            .map(|_| ());
        if let Err(e) = check {
            let _ = reply.send(Err(e));
            return SyncStep::Done;
        }
        if req.generation_id != self.generation {
            let _ = reply.send(Err(GroupError::IllegalGeneration));
            return SyncStep::Done;
        }
        let type_ok = req
            .protocol_type
            .as_ref()
            .is_none_or(|t| Some(t) == self.protocol_type.as_ref());
        let name_ok = req
            .protocol_name
            .as_ref()
            .is_none_or(|n| Some(n) == self.protocol.as_ref());
        if !type_ok || !name_ok {
            let _ = reply.send(Err(GroupError::InconsistentGroupProtocol));
            return SyncStep::Done;
        }
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        match self.state {
            ClassicState::Empty | ClassicState::PreparingRebalance => {
                let _ = reply.send(Err(GroupError::RebalanceInProgress));
                SyncStep::Done
            }
            ClassicState::Stable => {
                if let Some(m) = self.members.get_mut(&req.member_id) {
                    m.deadline = Some(now + m.session_timeout);
                    let _ = reply.send(Ok(SyncResponse {
                        protocol_type: self.protocol_type.clone().unwrap_or_default(),
                        protocol_name: self.protocol.clone().unwrap_or_default(),
                        assignment: Bytes::from(m.assignment.clone()),
                    }));
                }
                SyncStep::Done
            }
            ClassicState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(&req.member_id) {
                    m.deadline = Some(now + m.session_timeout);
                    if let Some(old) = m.awaiting_sync.replace(reply) {
                        let _ = old.send(Err(GroupError::RebalanceInProgress));
                    }
                }
                if !is_leader {
                    return SyncStep::Done;
                }
                let mut given: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                for m in self.members.values_mut() {
                    m.assignment = given
                        .remove(&m.member_id)
                        .map(|b| b.to_vec())
                        .unwrap_or_default();
                }
                self.state = ClassicState::Stable;
                SyncStep::Persist
            }
        }
    }

    /// After [`SyncStep::Persist`]: answer the held SyncGroups (or fail them and rebalance
    /// when the write failed).
    pub fn finish_sync(
        &mut self,
        now: Instant,
        cfg: &GroupConfig,
        written: Result<(), GroupError>,
    ) {
        match written {
            Ok(()) => {
                let took = self.rebalance_started.take().map(|s| now.duration_since(s));
                info!(group = %self.group_id, generation = self.generation, ?took, "group is stable");
                let (pt, pn) = (
                    self.protocol_type.clone().unwrap_or_default(),
                    self.protocol.clone().unwrap_or_default(),
                );
                for m in self.members.values_mut() {
                    if let Some(r) = m.awaiting_sync.take() {
                        let _ = r.send(Ok(SyncResponse {
                            protocol_type: pt.clone(),
                            protocol_name: pn.clone(),
                            assignment: Bytes::from(m.assignment.clone()),
                        }));
                    }
                }
            }
            Err(e) => {
                for m in self.members.values_mut() {
                    m.assignment.clear();
                    if let Some(r) = m.awaiting_sync.take() {
                        let _ = r.send(Err(e.clone()));
                    }
                }
                self.state = ClassicState::CompletingRebalance;
                self.prepare_rebalance(now, cfg, "the assignment could not be persisted");
            }
        }
    }

    /// Heartbeat.
    pub fn heartbeat(&mut self, now: Instant, req: &HeartbeatRequest) -> Result<(), GroupError> {
        self.check_member(&req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if let Some(m) = self.members.get_mut(&req.member_id) {
            m.deadline = Some(now + m.session_timeout);
        }
        match self.state {
            ClassicState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            ClassicState::Empty => Err(GroupError::UnknownMemberId),
            ClassicState::CompletingRebalance | ClassicState::Stable => Ok(()),
        }
    }

    /// LeaveGroup. Returns the outcomes and whether the durable state changed.
    pub fn leave(
        &mut self,
        now: Instant,
        cfg: &GroupConfig,
        leaving: Vec<LeavingMember>,
    ) -> (Vec<LeaveOutcome>, bool) {
        let mut outcomes = Vec::with_capacity(leaving.len());
        let mut removed = false;
        for l in leaving {
            let id = match (&l.group_instance_id, l.member_id.is_empty()) {
                (Some(i), _) => match self.static_members.get(i) {
                    Some(id) if l.member_id.is_empty() || *id == l.member_id => Some(id.clone()),
                    Some(_) => {
                        outcomes.push(LeaveOutcome {
                            member_id: l.member_id,
                            group_instance_id: l.group_instance_id,
                            error: Some(GroupError::FencedInstanceId),
                        });
                        continue;
                    }
                    None => None,
                },
                (None, false) => self
                    .members
                    .contains_key(&l.member_id)
                    .then(|| l.member_id.clone()),
                (None, true) => None,
            };
            let Some(id) = id else {
                // A member that only got an id (MEMBER_ID_REQUIRED) may leave too.
                let error = (self.pending_members.remove(&l.member_id).is_none())
                    .then_some(GroupError::UnknownMemberId);
                outcomes.push(LeaveOutcome {
                    member_id: l.member_id,
                    group_instance_id: l.group_instance_id,
                    error,
                });
                continue;
            };
            info!(group = %self.group_id, member = %id, "member left");
            self.remove_member(&id);
            removed = true;
            outcomes.push(LeaveOutcome {
                member_id: id,
                group_instance_id: l.group_instance_id,
                error: None,
            });
        }
        let persist = removed && self.after_removal(now, cfg, "member left");
        (outcomes, persist)
    }

    /// After members were removed: rebalance, or become empty. Returns true when the group
    /// became empty (persist it).
    fn after_removal(&mut self, now: Instant, cfg: &GroupConfig, why: &str) -> bool {
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.become_empty(now);
                    return true;
                }
                self.prepare_rebalance(now, cfg, why);
                false
            }
            ClassicState::PreparingRebalance => self.maybe_complete_join(now, cfg),
            ClassicState::Empty => false,
        }
    }

    fn become_empty(&mut self, _now: Instant) {
        self.state = ClassicState::Empty;
        self.generation += 1;
        self.protocol = None;
        self.leader = None;
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
        self.empty_since_ms = Some(now_ms());
        info!(group = %self.group_id, generation = self.generation, "group is empty");
    }

    /// Timers: member sessions, pending member ids, the rebalance deadline, the initial delay.
    /// Returns true when the durable state changed (persist the group).
    pub fn tick(&mut self, now: Instant, cfg: &GroupConfig) -> bool {
        self.pending_members.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.deadline.is_some_and(|d| d <= now))
            .map(|m| m.member_id.clone())
            .collect();
        let mut persist = false;
        if !expired.is_empty() {
            for id in &expired {
                info!(group = %self.group_id, member = %id, "member session expired; removed");
                self.remove_member(id);
            }
            persist |= self.after_removal(now, cfg, "member session expired");
        }
        if self.state == ClassicState::PreparingRebalance {
            persist |= self.maybe_complete_join(now, cfg);
        }
        persist
    }

    /// Checks an OffsetCommit from a member (or a simple commit with generation -1).
    pub fn validate_commit(
        &self,
        member_id: &str,
        generation: i32,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        // Kafka's classic `validateOffsetCommit`: an empty group takes a simple commit
        // (negative generation) whatever member id it carries; a non-empty one only from its
        // members.
        if generation < 0 && self.members.is_empty() {
            return Ok(());
        }
        if generation < 0 && member_id.is_empty() && instance_id.is_none() {
            return Err(GroupError::UnknownMemberId);
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if self.state == ClassicState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Topics the members subscribe to (decoded from the consumer protocol's subscription).
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if self.protocol_type.as_deref() != Some("consumer") {
            return out;
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        for m in self.members.values() {
            let meta = m
                .protocols
                .iter()
                .find(|p| p.name == protocol)
                .or_else(|| m.protocols.first());
            if let Some(s) = meta.and_then(|p| decode_subscription(&p.metadata).ok()) {
                out.extend(s.topics);
            }
        }
        out
    }

    /// ListGroups entry.
    pub fn listing(&self) -> GroupListing {
        GroupListing {
            group_id: self.group_id.clone(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            state: self.state.as_str().to_owned(),
            kind: GroupKind::Classic,
        }
    }

    /// DescribeGroups.
    pub fn describe(&self) -> GroupDescription {
        let protocol = self.protocol.clone().unwrap_or_default();
        let consumer = self.protocol_type.as_deref() == Some("consumer");
        GroupDescription {
            group_id: self.group_id.clone(),
            state: self.state.as_str().to_owned(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            kind: GroupKind::Classic,
            generation: self.generation,
            members: self
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata_for(&protocol),
                    assignment: Bytes::from(m.assignment.clone()),
                    assigned: if consumer {
                        decode_assignment(&m.assignment)
                            .map(|a| a.topic_partitions())
                            .unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                    member_epoch: self.generation,
                    consumer: None,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn cfg() -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay: Duration::ZERO,
            min_session_timeout: Duration::from_millis(100),
            ..GroupConfig::default()
        }
    }

    fn join_req(member: &str, instance: Option<&str>) -> JoinRequest {
        JoinRequest {
            member_id: member.into(),
            group_instance_id: instance.map(Into::into),
            protocol_type: "consumer".into(),
            protocols: vec![MemberProtocol {
                name: "range".into(),
                metadata: subscription(&["t"]),
            }],
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(20),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            require_known_member_id: true,
            reason: None,
        }
    }

    fn subscription(topics: &[&str]) -> Vec<u8> {
        crate::group::consumer_protocol::encode_subscription(topics.iter().copied(), None).to_vec()
    }

    type JoinRx = oneshot::Receiver<Result<JoinResponse, GroupError>>;
    type SyncRx = oneshot::Receiver<Result<SyncResponse, GroupError>>;

    fn join(g: &mut ClassicGroup, now: Instant, req: JoinRequest) -> JoinRx {
        let (tx, rx) = oneshot::channel();
        g.join(now, &cfg(), req, tx.into());
        rx
    }

    fn sync(g: &mut ClassicGroup, now: Instant, req: SyncRequest) -> (SyncStep, SyncRx) {
        let (tx, rx) = oneshot::channel();
        let step = g.sync(now, req, tx.into());
        (step, rx)
    }

    fn sync_req(member: &str, generation: i32, assignments: Vec<(String, Bytes)>) -> SyncRequest {
        SyncRequest {
            member_id: member.into(),
            generation_id: generation,
            group_instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments,
        }
    }

    /// Joins a dynamic member through MEMBER_ID_REQUIRED; returns its id and the held join.
    fn join_new(g: &mut ClassicGroup, now: Instant) -> (String, JoinRx) {
        let mut rx = join(g, now, join_req("", None));
        let Ok(Err(GroupError::MemberIdRequired(id))) = rx.try_recv() else {
            panic!("expected MEMBER_ID_REQUIRED");
        };
        let rx = join(g, now, join_req(&id, None));
        (id, rx)
    }

    /// A Kafka Connect worker's JoinGroup: protocol type "connect", and the protocols its
    /// `connect.protocol` setting offers, newest first (Connect's `ConnectProtocolCompatibility`).
    fn connect_join(member: &str, offered: &[&str]) -> JoinRequest {
        JoinRequest {
            protocol_type: "connect".into(),
            protocols: offered
                .iter()
                .map(|name| MemberProtocol {
                    name: (*name).into(),
                    // Connect's metadata (worker URL, config offset, current assignment) is
                    // opaque to the coordinator.
                    metadata: format!("{member}-{name}").into_bytes(),
                })
                .collect(),
            ..join_req(member, None)
        }
    }

    /// Connect workers (tests/kafka_connect.rs runs real ones) agree on the newest protocol
    /// they all offer, so one worker on an older `connect.protocol` downgrades the group:
    /// `sessioned` (KIP-507) > `compatible` (incremental cooperative, KIP-415) > `default`
    /// (eager). The leader gets every member's metadata for that protocol, and the assignments
    /// it sends come back to the members byte for byte.
    #[test]
    fn connect_workers_agree_on_the_newest_common_protocol() {
        const SESSIONED: &[&str] = &["sessioned", "compatible", "default"];
        const COMPATIBLE: &[&str] = &["compatible", "default"];
        const EAGER: &[&str] = &["default"];
        let cases: &[(&[&str], &[&str], &str)] = &[
            (SESSIONED, SESSIONED, "sessioned"),
            (SESSIONED, COMPATIBLE, "compatible"),
            (COMPATIBLE, SESSIONED, "compatible"),
            (SESSIONED, EAGER, "default"),
        ];
        for &(first, second, chosen) in cases {
            let now = Instant::now();
            let mut g = ClassicGroup::new("connect-cluster".into());
            let mut ra = join(&mut g, now, connect_join("", first));
            let Ok(Err(GroupError::MemberIdRequired(a))) = ra.try_recv() else {
                panic!("expected MEMBER_ID_REQUIRED");
            };
            let mut ra = join(&mut g, now, connect_join(&a, first));
            ra.try_recv().unwrap().unwrap();
            let mut rb = join(&mut g, now, connect_join("", second));
            let Ok(Err(GroupError::MemberIdRequired(b))) = rb.try_recv() else {
                panic!("expected MEMBER_ID_REQUIRED");
            };
            let mut rb = join(&mut g, now, connect_join(&b, second));
            let mut ra = join(&mut g, now, connect_join(&a, first));
            let ja = ra.try_recv().unwrap().unwrap();
            let jb = rb.try_recv().unwrap().unwrap();
            assert_eq!(
                (ja.protocol_type.as_str(), ja.protocol_name.as_str()),
                ("connect", chosen),
                "{first:?} + {second:?}"
            );
            assert_eq!(jb.protocol_name, chosen);
            assert_eq!(ja.leader, a);
            let mut metadata: Vec<(String, Bytes)> = ja
                .members
                .iter()
                .map(|m| (m.member_id.clone(), m.metadata.clone()))
                .collect();
            metadata.sort();
            let mut expected = vec![
                (a.clone(), Bytes::from(format!("{a}-{chosen}"))),
                (b.clone(), Bytes::from(format!("{b}-{chosen}"))),
            ];
            expected.sort();
            assert_eq!(metadata, expected, "the leader sees {chosen}'s metadata");

            let connect_sync = |member: &str, assignments| SyncRequest {
                protocol_type: Some("connect".into()),
                protocol_name: Some(chosen.into()),
                ..sync_req(member, ja.generation_id, assignments)
            };
            let (_, mut sb) = sync(&mut g, now, connect_sync(&b, vec![]));
            let assignments = vec![
                (a.clone(), Bytes::from_static(b"\x00\x01connectors-a")),
                (b.clone(), Bytes::from_static(b"\x00\x01tasks-b")),
            ];
            let (step, mut sa) = sync(&mut g, now, connect_sync(&a, assignments));
            assert_eq!(step, SyncStep::Persist);
            g.finish_sync(now, &cfg(), Ok(()));
            assert_eq!(
                sa.try_recv().unwrap().unwrap().assignment,
                Bytes::from_static(b"\x00\x01connectors-a")
            );
            assert_eq!(
                sb.try_recv().unwrap().unwrap().assignment,
                Bytes::from_static(b"\x00\x01tasks-b")
            );
            let d = g.describe();
            assert_eq!(
                (d.protocol_type.as_str(), d.state.as_str()),
                ("connect", "Stable")
            );
            assert!(
                d.members.iter().all(|m| m.assigned.is_empty()),
                "a Connect assignment is not decoded as a consumer's"
            );

            // A consumer cannot join a Connect group.
            let mut rc = join(&mut g, now, join_req("", None));
            assert!(matches!(
                rc.try_recv(),
                Ok(Err(GroupError::InconsistentGroupProtocol))
            ));
        }
    }

    #[test]
    fn two_members_join_sync_and_get_their_assignments() {
        let now = Instant::now();
        let mut g = ClassicGroup::new("g".into());
        let (a, mut ra) = join_new(&mut g, now);
        // Alone and with no initial delay, the first member completes the rebalance at once.
        let ja = ra.try_recv().unwrap().unwrap();
        assert_eq!(ja.generation_id, 1);
        assert_eq!(ja.leader, a);
        assert_eq!(ja.members.len(), 1);
        let (step, mut sa) = sync(
            &mut g,
            now,
            sync_req(&a, 1, vec![(a.clone(), Bytes::from_static(b"A"))]),
        );
        assert_eq!(step, SyncStep::Persist);
        g.finish_sync(now, &cfg(), Ok(()));
        assert_eq!(
            sa.try_recv().unwrap().unwrap().assignment,
            Bytes::from_static(b"A")
        );
        assert_eq!(g.state(), ClassicState::Stable);

        // A second member triggers a rebalance; the first learns it from its heartbeat.
        let (b, mut rb) = join_new(&mut g, now);
        assert!(rb.try_recv().is_err(), "held until the leader rejoins");
        let hb = HeartbeatRequest {
            member_id: a.clone(),
            generation_id: 1,
            group_instance_id: None,
        };
        assert_eq!(g.heartbeat(now, &hb), Err(GroupError::RebalanceInProgress));
        let mut ra = join(&mut g, now, join_req(&a, None));
        let ja = ra.try_recv().unwrap().unwrap();
        let jb = rb.try_recv().unwrap().unwrap();
        assert_eq!(ja.generation_id, 2);
        assert_eq!(jb.generation_id, 2);
        assert_eq!(ja.members.len(), 2, "the leader sees every member");
        assert!(jb.members.is_empty());
        // The follower's sync waits for the leader's.
        let (step, mut sb) = sync(&mut g, now, sync_req(&b, 2, vec![]));
        assert_eq!(step, SyncStep::Done);
        assert!(sb.try_recv().is_err());
        let (step, mut sa) = sync(
            &mut g,
            now,
            sync_req(
                &a,
                2,
                vec![
                    (a.clone(), Bytes::from_static(b"A")),
                    (b.clone(), Bytes::from_static(b"B")),
                ],
            ),
        );
        assert_eq!(step, SyncStep::Persist);
        g.finish_sync(now, &cfg(), Ok(()));
        assert_eq!(
            sa.try_recv().unwrap().unwrap().assignment,
            Bytes::from_static(b"A")
        );
        assert_eq!(
            sb.try_recv().unwrap().unwrap().assignment,
            Bytes::from_static(b"B")
        );
        assert_eq!(g.validate_commit(&b, 2, None), Ok(()));
        assert_eq!(
            g.validate_commit(&b, 1, None),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(
            g.validate_commit("", -1, None),
            Err(GroupError::UnknownMemberId)
        );
        assert_eq!(
            g.validate_commit("not-a-member", -1, None),
            Err(GroupError::UnknownMemberId)
        );
    }

    #[test]
    fn expired_member_is_removed_and_the_rest_rebalance() {
        let now = Instant::now();
        let mut g = ClassicGroup::new("g".into());
        let (a, mut ra) = join_new(&mut g, now);
        let _ = ra.try_recv().unwrap().unwrap();
        let (b, mut rb) = join_new(&mut g, now);
        let mut ra = join(&mut g, now, join_req(&a, None));
        let _ = (
            ra.try_recv().unwrap().unwrap(),
            rb.try_recv().unwrap().unwrap(),
        );
        let (_, _sb) = sync(&mut g, now, sync_req(&b, 2, vec![]));
        let (_, _sa) = sync(&mut g, now, sync_req(&a, 2, vec![]));
        g.finish_sync(now, &cfg(), Ok(()));
        // a keeps heartbeating, b goes silent.
        let later = now + Duration::from_secs(6);
        let hb = HeartbeatRequest {
            member_id: a.clone(),
            generation_id: 2,
            group_instance_id: None,
        };
        g.heartbeat(later, &hb).unwrap();
        assert!(!g.tick(later, &cfg()));
        assert_eq!(g.state(), ClassicState::Stable);
        let expiry = now + Duration::from_secs(11);
        g.tick(expiry, &cfg());
        assert_eq!(g.state(), ClassicState::PreparingRebalance);
        assert_eq!(
            g.heartbeat(expiry, &hb),
            Err(GroupError::RebalanceInProgress)
        );
        let mut ra = join(&mut g, expiry, join_req(&a, None));
        let ja = ra.try_recv().unwrap().unwrap();
        assert_eq!(ja.generation_id, 3);
        assert_eq!(ja.members.len(), 1);
        // The last member leaves: the group is empty and must be persisted.
        let (out, persist) = g.leave(
            expiry,
            &cfg(),
            vec![LeavingMember {
                member_id: a.clone(),
                group_instance_id: None,
            }],
        );
        assert_eq!(out[0].error, None);
        assert!(persist);
        assert_eq!(g.state(), ClassicState::Empty);
        assert_eq!(g.validate_commit("", -1, None), Ok(()));
        // An `assign()` consumer's simple commit carries its member id: still accepted.
        assert_eq!(g.validate_commit("not-a-member", -1, None), Ok(()));
        assert_eq!(
            g.validate_commit("not-a-member", 1, None),
            Err(GroupError::UnknownMemberId)
        );
    }

    #[test]
    fn rebalance_timeout_drops_members_that_do_not_rejoin() {
        let now = Instant::now();
        let mut g = ClassicGroup::new("g".into());
        let (a, mut ra) = join_new(&mut g, now);
        let _ = ra.try_recv().unwrap().unwrap();
        let (_, _sa) = sync(&mut g, now, sync_req(&a, 1, vec![]));
        g.finish_sync(now, &cfg(), Ok(()));
        let (_b, mut rb) = join_new(&mut g, now);
        // a never rejoins (but keeps its session alive by heartbeating).
        let t = now + Duration::from_secs(21);
        g.tick(t, &cfg());
        let jb = rb.try_recv().unwrap().unwrap();
        assert_eq!(jb.members.len(), 1, "a was dropped");
        assert_eq!(g.members.len(), 1);
    }

    #[test]
    fn static_member_restart_keeps_its_assignment_without_rebalance() {
        let now = Instant::now();
        let mut g = ClassicGroup::new("g".into());
        let mut r = join(&mut g, now, join_req("", Some("i1")));
        let j = r.try_recv().unwrap().unwrap();
        let a = j.member_id.clone();
        let (_, _s) = sync(
            &mut g,
            now,
            sync_req(&a, 1, vec![(a.clone(), Bytes::from_static(b"X"))]),
        );
        g.finish_sync(now, &cfg(), Ok(()));
        // The process restarts: same instance id, no member id.
        let mut r = join(&mut g, now, join_req("", Some("i1")));
        let j2 = r.try_recv().unwrap().unwrap();
        assert_ne!(j2.member_id, a);
        assert_eq!(j2.generation_id, 1, "no rebalance");
        assert!(j2.skip_assignment);
        assert_eq!(g.state(), ClassicState::Stable);
        let mut req = sync_req(&j2.member_id, 1, vec![]);
        req.group_instance_id = Some("i1".into());
        let (_, mut s) = sync(&mut g, now, req);
        assert_eq!(
            s.try_recv().unwrap().unwrap().assignment,
            Bytes::from_static(b"X")
        );
        // The old incarnation is fenced.
        let hb = HeartbeatRequest {
            member_id: a,
            generation_id: 1,
            group_instance_id: Some("i1".into()),
        };
        assert_eq!(g.heartbeat(now, &hb), Err(GroupError::FencedInstanceId));
    }

    #[test]
    fn incompatible_protocols_are_refused() {
        let now = Instant::now();
        let mut g = ClassicGroup::new("g".into());
        let (_a, _ra) = join_new(&mut g, now);
        let mut req = join_req("", None);
        req.protocols[0].name = "roundrobin".into();
        let mut r = join(&mut g, now, req);
        assert_eq!(
            r.try_recv().unwrap(),
            Err(GroupError::InconsistentGroupProtocol)
        );
    }

    #[test]
    fn snapshot_round_trips_and_restarts_sessions() {
        let now = Instant::now();
        let mut g = ClassicGroup::new("g".into());
        let (a, mut ra) = join_new(&mut g, now);
        let _ = ra.try_recv().unwrap().unwrap();
        let (_, _sa) = sync(
            &mut g,
            now,
            sync_req(&a, 1, vec![(a.clone(), Bytes::from(assignment_bytes()))]),
        );
        g.finish_sync(now, &cfg(), Ok(()));
        let json = serde_json::to_vec(&g.snapshot()).unwrap();
        let mut back: ClassicGroup = serde_json::from_slice(&json).unwrap();
        let later = now + Duration::from_secs(100);
        back.after_load(later);
        assert!(!back.tick(later, &cfg()), "sessions restarted on load");
        assert_eq!(back.state(), ClassicState::Stable);
        let d = back.describe();
        assert_eq!(d.members[0].assigned.len(), 2);
        assert_eq!(
            back.subscribed_topics().into_iter().collect::<Vec<_>>(),
            vec!["t".to_string()]
        );
    }

    fn assignment_bytes() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
        b.push(b't');
        b.extend_from_slice(&2i32.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&3i32.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b
    }
}
