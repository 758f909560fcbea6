//! `GroupCoordinator`: the actor that runs one group on the leader of its `__consumer_offsets`
//! partition.
//!
//! It owns the group's membership (classic or consumer protocol) and its committed offsets.
//! Every change that must survive the loss of this node (an assignment handed out, a member
//! set that became empty, a consumer-protocol epoch, an offset commit) is appended to the
//! partition and waits for the partition's high watermark before anyone is answered: what a
//! client was told is on a majority of the offsets partition's in-sync replicas.
//!
//! Messages are handled one at a time; JoinGroup and SyncGroup answers that must wait for other
//! members are held inside the group state, not by blocking the actor.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{debug, info, warn};

use super::classic::{ClassicGroup, JoinReply, SyncReply, SyncStep};
use super::consumer::{ConsumerGroup, TopicCatalog};
use super::records::{
    encode_batch, end_transaction, GroupSnapshot, LoadedGroup, PendingOffsets, Write,
};
use super::types::*;
use super::GroupConfig;
use crate::registry::ReplicaHandle;
use crate::write::{self, Acks, WriteOptions};

/// Largest batch a coordinator appends (the topic's batch limit is 1 MiB).
const CHUNK_BYTES: usize = 256 * 1024;

/// How often the coordinator checks its timers.
const TICK: Duration = Duration::from_millis(100);
/// How often offsets retention is checked (more often when the retention itself is short).
const RETENTION_CHECK: Duration = Duration::from_secs(30);

fn retention_check(config: &GroupConfig) -> Duration {
    RETENTION_CHECK
        .min(config.offsets_retention / 4)
        .max(Duration::from_millis(100))
}

/// Per-partition outcomes of an offset request.
pub type PartitionOutcomes = Vec<(GroupTopicPartition, Option<GroupError>)>;
/// Answer of OffsetFetch.
pub type FetchedOffsets = Vec<(GroupTopicPartition, Option<CommittedOffset>)>;

/// Messages of [`GroupCoordinator`].
#[derive(Debug)]
pub enum GroupMsg {
    /// JoinGroup.
    Join(JoinRequest, JoinReply),
    /// SyncGroup.
    Sync(SyncRequest, SyncReply),
    /// Heartbeat.
    Heartbeat(HeartbeatRequest, RpcReplyPort<Result<(), GroupError>>),
    /// LeaveGroup.
    Leave(
        Vec<LeavingMember>,
        RpcReplyPort<Result<Vec<LeaveOutcome>, GroupError>>,
    ),
    /// OffsetCommit.
    Commit(
        CommitRequest,
        RpcReplyPort<Result<PartitionOutcomes, GroupError>>,
    ),
    /// TxnOffsetCommit: offsets pending until the transaction's marker.
    TxnCommit(
        TxnCommitRequest,
        RpcReplyPort<Result<PartitionOutcomes, GroupError>>,
    ),
    /// A transaction marker reached the group's offsets partition: its pending offsets of the
    /// producer become committed (commit) or are dropped (abort).
    TxnCompleted {
        /// The transaction's producer id.
        producer_id: i64,
        /// Commit or abort.
        commit: bool,
    },
    /// OffsetFetch.
    FetchOffsets(
        FetchOffsetsRequest,
        RpcReplyPort<Result<FetchedOffsets, GroupError>>,
    ),
    /// ListGroups entry.
    Listing(RpcReplyPort<GroupListing>),
    /// DescribeGroups.
    Describe(RpcReplyPort<GroupDescription>),
    /// DeleteGroups.
    Delete(RpcReplyPort<Result<(), GroupError>>),
    /// OffsetDelete.
    DeleteOffsets(
        Vec<GroupTopicPartition>,
        RpcReplyPort<Result<PartitionOutcomes, GroupError>>,
    ),
    /// Compaction: rewrite the live state; answers the offset of the first record written.
    Rewrite(RpcReplyPort<Result<Option<i64>, GroupError>>),
    /// ConsumerGroupHeartbeat.
    ConsumerHeartbeat(
        ConsumerHeartbeatRequest,
        RpcReplyPort<Result<ConsumerHeartbeatResponse, GroupError>>,
    ),
    /// Timers.
    Tick,
}

impl ractor::Message for GroupMsg {}

/// Arguments of [`GroupCoordinator`].
#[derive(Debug)]
pub struct CoordinatorArgs {
    /// Group id.
    pub group_id: String,
    /// The `__consumer_offsets` partition.
    pub partition: i32,
    /// Leader epoch of that partition the state was loaded under.
    pub epoch: i32,
    /// The partition's local (leader) replica.
    pub replica: ReplicaHandle,
    /// Settings.
    pub config: Arc<GroupConfig>,
    /// Topics.
    pub catalog: Arc<dyn TopicCatalog>,
    /// What the log said about the group (empty for a new group).
    pub loaded: LoadedGroup,
}

/// The group's membership.
#[derive(Debug)]
enum Membership {
    /// Only offsets (simple commits) or nothing yet.
    None,
    Classic(ClassicGroup),
    Consumer(ConsumerGroup),
}

/// State of [`GroupCoordinator`].
#[derive(Debug)]
pub struct CoordinatorState {
    group_id: String,
    partition: i32,
    epoch: i32,
    replica: ReplicaHandle,
    config: Arc<GroupConfig>,
    catalog: Arc<dyn TopicCatalog>,
    membership: Membership,
    offsets: BTreeMap<GroupTopicPartition, CommittedOffset>,
    /// Offsets committed in open transactions (TxnOffsetCommit), by producer id.
    pending: PendingOffsets,
    next_retention_check: Instant,
}

/// The coordinator actor of one group.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupCoordinator;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl CoordinatorState {
    /// The node's settings with this group's dynamic configs over them.
    fn effective_config(&self) -> Arc<GroupConfig> {
        let overrides = self.catalog.group_overrides(&self.group_id);
        if overrides.is_empty() {
            self.config.clone()
        } else {
            Arc::new(overrides.apply(&self.config))
        }
    }

    fn has_members(&self) -> bool {
        match &self.membership {
            Membership::None => false,
            Membership::Classic(g) => !g.is_empty(),
            Membership::Consumer(g) => !g.is_empty(),
        }
    }

    /// Nothing left worth a running actor.
    fn is_dead(&self) -> bool {
        !self.has_members()
            && self.offsets.is_empty()
            && self.pending.is_empty()
            && matches!(self.membership, Membership::None)
    }

    /// Appends `writes` to the partition (in batches of at most [`CHUNK_BYTES`], one after
    /// another) through the committed-write path and waits until the in-sync replicas have
    /// them. Returns the offset of the first record written.
    async fn write(&self, writes: &[Write]) -> Result<i64, GroupError> {
        let replica = &self.replica;
        if writes.is_empty() {
            return Ok(replica.log.log_end_offset());
        }
        let ts = now_ms();
        let mut parts = Vec::new();
        let mut chunk_start = 0;
        while chunk_start < writes.len() {
            let mut chunk_end = chunk_start;
            let mut bytes = 0;
            while chunk_end < writes.len() && (chunk_end == chunk_start || bytes < CHUNK_BYTES) {
                bytes += writes[chunk_end].encoded_len();
                chunk_end += 1;
            }
            parts.push(Bytes::from(encode_batch(
                &writes[chunk_start..chunk_end],
                ts,
            )));
            chunk_start = chunk_end;
        }
        let opts = WriteOptions {
            acks: Acks::All,
            timeout: self.config.write_timeout,
            min_insync_replicas: self.catalog.min_insync_replicas(&replica.tp.topic),
            // Bound to the epoch the state was loaded in: after a leader change another
            // coordinator (or none) owns the group.
            leader_epoch: Some(self.epoch),
            lease: self.catalog.lease(),
        };
        let written = write::append_all(replica, &parts, &opts).await?;
        Ok(written.base_offset)
    }

    fn group_write(&self) -> Option<Write> {
        let snapshot = match &self.membership {
            Membership::None => return None,
            Membership::Classic(g) => GroupSnapshot::Classic(g.snapshot()),
            Membership::Consumer(g) => GroupSnapshot::Consumer(g.clone()),
        };
        match Write::group(&self.group_id, &snapshot) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(group = %self.group_id, error = %e, "group state does not serialize");
                None
            }
        }
    }

    /// Persists the membership; failures are logged (the caller decides what else to do).
    async fn persist_group(&self) -> Result<(), GroupError> {
        let Some(w) = self.group_write() else {
            return Ok(());
        };
        let r = self.write(std::slice::from_ref(&w)).await.map(|_| ());
        if let Err(e) = &r {
            warn!(group = %self.group_id, error = %e, "could not persist the group state");
        }
        r
    }

    fn classic_mut(&mut self) -> Result<&mut ClassicGroup, GroupError> {
        let replace = match &self.membership {
            Membership::None => true,
            Membership::Consumer(g) if g.is_empty() => true,
            Membership::Consumer(_) => return Err(GroupError::InconsistentGroupProtocol),
            Membership::Classic(_) => false,
        };
        if replace {
            self.membership = Membership::Classic(ClassicGroup::new(self.group_id.clone()));
        }
        match &mut self.membership {
            Membership::Classic(g) => Ok(g),
            _ => unreachable!("set above"),
        }
    }

    fn consumer_mut(&mut self) -> Result<&mut ConsumerGroup, GroupError> {
        let replace = match &self.membership {
            Membership::None => true,
            Membership::Classic(g) if g.is_empty() => true,
            Membership::Classic(_) => return Err(GroupError::GroupIdTypeMismatch),
            Membership::Consumer(_) => false,
        };
        if replace {
            self.membership = Membership::Consumer(ConsumerGroup::new(self.group_id.clone()));
        }
        match &mut self.membership {
            Membership::Consumer(g) => Ok(g),
            _ => unreachable!("set above"),
        }
    }

    /// Kafka's `validateOffsetCommit`: a commit with a negative generation / member epoch comes
    /// from a client outside group management (`assign()`, the admin client). It is a *simple*
    /// commit and is accepted whenever the group has no members, whatever member id it carries
    /// (librdkafka's KIP-848 consumer sends its own member id even when it never joined).
    fn validate_commit(&self, req: &CommitRequest) -> Result<(), GroupError> {
        match &self.membership {
            Membership::None if req.generation_id < 0 => Ok(()),
            Membership::None => Err(GroupError::IllegalGeneration),
            Membership::Classic(g) => g.validate_commit(
                &req.member_id,
                req.generation_id,
                req.group_instance_id.as_deref(),
            ),
            Membership::Consumer(g) => g.validate_offset_commit(&req.member_id, req.generation_id),
        }
    }

    async fn commit(&mut self, req: CommitRequest) -> Result<PartitionOutcomes, GroupError> {
        self.validate_commit(&req)?;
        let (outcomes, accepted) = self.accept_offsets(req.offsets);
        let writes: Vec<Write> = accepted
            .iter()
            .map(|(tp, c)| Write::offset(&self.group_id, tp.clone(), c))
            .collect();
        self.write(&writes).await?;
        for (tp, c) in accepted {
            self.offsets.insert(tp, c);
        }
        Ok(outcomes)
    }

    /// TxnOffsetCommit: the offsets are written now and kept pending; they become the
    /// group's committed offsets when the transaction's commit marker reaches the partition
    /// ([`GroupMsg::TxnCompleted`], or the marker on a reload).
    async fn txn_commit(&mut self, req: TxnCommitRequest) -> Result<PartitionOutcomes, GroupError> {
        // Kafka checks the generation only when the client sends one (KIP-447); a producer
        // outside the group sends -1 and no member id.
        if req.generation_id >= 0 || !req.member_id.is_empty() {
            self.validate_commit(&CommitRequest {
                member_id: req.member_id.clone(),
                generation_id: req.generation_id,
                group_instance_id: req.group_instance_id.clone(),
                offsets: Vec::new(),
            })?;
        }
        let (outcomes, accepted) = self.accept_offsets(req.offsets);
        let writes: Vec<Write> = accepted
            .iter()
            .map(|(tp, c)| Write::txn_offset(&self.group_id, tp.clone(), req.producer_id, c))
            .collect();
        self.write(&writes).await?;
        let pending = self.pending.entry(req.producer_id).or_default();
        for (tp, c) in accepted {
            pending.insert(tp, c);
        }
        Ok(outcomes)
    }

    /// The offsets of a commit that may be stored (known partitions, metadata within bounds),
    /// and every partition's outcome.
    fn accept_offsets(
        &self,
        offsets: Vec<OffsetToCommit>,
    ) -> (
        PartitionOutcomes,
        Vec<(GroupTopicPartition, CommittedOffset)>,
    ) {
        let mut outcomes = Vec::with_capacity(offsets.len());
        let mut accepted = Vec::new();
        let ts = now_ms();
        for o in offsets {
            let known = self
                .catalog
                .topic(&o.tp.topic)
                .is_some_and(|t| o.tp.partition >= 0 && o.tp.partition < t.partitions);
            let meta = o.metadata.unwrap_or_default();
            let error = if !known {
                Some(GroupError::UnknownTopicOrPartition)
            } else if meta.len() > self.config.offset_metadata_max_bytes {
                Some(GroupError::OffsetMetadataTooLarge)
            } else {
                None
            };
            if error.is_none() {
                let c = CommittedOffset {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: meta,
                    commit_timestamp_ms: ts,
                };
                accepted.push((o.tp.clone(), c));
            }
            outcomes.push((o.tp, error));
        }
        (outcomes, accepted)
    }

    fn fetch_offsets(&self, req: FetchOffsetsRequest) -> Result<FetchedOffsets, GroupError> {
        // KIP-447: a read_committed consumer asks for stable offsets only; one a transaction
        // may still change is not given out (the client retries).
        if req.require_stable {
            let unstable =
                |tp: &GroupTopicPartition| self.pending.values().any(|p| p.contains_key(tp));
            let any = match &req.partitions {
                Some(parts) => parts.iter().any(unstable),
                None => !self.pending.is_empty(),
            };
            if any {
                return Err(GroupError::UnstableOffsetCommit);
            }
        }
        if let (Some((member, epoch)), Membership::Consumer(g)) = (&req.member, &self.membership) {
            if !(member.is_empty() && *epoch < 0) {
                g.validate_offset_request(member, *epoch)?;
            }
        }
        Ok(match req.partitions {
            None => self
                .offsets
                .iter()
                .map(|(tp, c)| (tp.clone(), Some(c.clone())))
                .collect(),
            Some(parts) => parts
                .into_iter()
                .map(|tp| {
                    let c = self.offsets.get(&tp).cloned();
                    (tp, c)
                })
                .collect(),
        })
    }

    fn subscribed_topics(&self) -> Vec<String> {
        match &self.membership {
            Membership::None => Vec::new(),
            Membership::Classic(g) => g.subscribed_topics().into_iter().collect(),
            Membership::Consumer(g) => g.subscribed_topics(self.catalog.as_ref()),
        }
    }

    async fn delete_offsets(
        &mut self,
        parts: Vec<GroupTopicPartition>,
    ) -> Result<PartitionOutcomes, GroupError> {
        if matches!(self.membership, Membership::None) && self.offsets.is_empty() {
            return Err(GroupError::GroupIdNotFound);
        }
        let subscribed = if self.has_members() {
            self.subscribed_topics()
        } else {
            Vec::new()
        };
        let mut outcomes = Vec::new();
        let mut writes = Vec::new();
        for tp in parts {
            if subscribed.contains(&tp.topic) {
                outcomes.push((tp, Some(GroupError::GroupSubscribedToTopic)));
                continue;
            }
            if self.offsets.contains_key(&tp) {
                writes.push(Write::delete_offset(&self.group_id, tp.clone()));
            }
            outcomes.push((tp, None));
        }
        self.write(&writes).await?;
        for w in &writes {
            if let super::records::RecordKey::Offset { tp, .. } = &w.key {
                self.offsets.remove(tp);
            }
        }
        Ok(outcomes)
    }

    /// Rewrites everything live about the group (its offsets and membership) so that all of
    /// its older records are superseded. Returns the offset of the first record written: no
    /// record of this group below it is needed any more. A group with nothing live writes
    /// nothing and returns `None`.
    async fn rewrite(&self) -> Result<Option<i64>, GroupError> {
        let mut writes: Vec<Write> = self
            .offsets
            .iter()
            .map(|(tp, c)| Write::offset(&self.group_id, tp.clone(), c))
            .collect();
        for (producer_id, offsets) in &self.pending {
            writes.extend(
                offsets
                    .iter()
                    .map(|(tp, c)| Write::txn_offset(&self.group_id, tp.clone(), *producer_id, c)),
            );
        }
        writes.extend(self.group_write());
        if writes.is_empty() {
            return Ok(None);
        }
        self.write(&writes).await.map(Some)
    }

    /// Deletes the group: its offsets and membership. Only an empty group.
    async fn delete(&mut self) -> Result<(), GroupError> {
        if self.has_members() {
            return Err(GroupError::NonEmptyGroup);
        }
        if self.is_dead() {
            return Err(GroupError::GroupIdNotFound);
        }
        let mut writes: Vec<Write> = self
            .offsets
            .keys()
            .map(|tp| Write::delete_offset(&self.group_id, tp.clone()))
            .collect();
        writes.push(Write::delete_group(&self.group_id));
        self.write(&writes).await?;
        self.offsets.clear();
        self.membership = Membership::None;
        info!(group = %self.group_id, "group deleted");
        Ok(())
    }

    /// Offsets of a group that has been empty for longer than the retention are deleted.
    async fn enforce_retention(&mut self) {
        if self.has_members() {
            return;
        }
        if self.offsets.is_empty() {
            // An empty group without offsets is of no further use: forget it.
            if !matches!(self.membership, Membership::None) {
                if let Err(e) = self.delete().await {
                    warn!(group = %self.group_id, error = %e, "could not remove the empty group");
                }
            }
            return;
        }
        let last_commit = self
            .offsets
            .values()
            .map(|c| c.commit_timestamp_ms)
            .max()
            .unwrap_or(0);
        let empty_since = match &self.membership {
            Membership::Classic(g) => g.empty_since_ms().unwrap_or(0),
            _ => 0,
        };
        let since = last_commit.max(empty_since);
        let retention = self.config.offsets_retention.as_millis() as i64;
        if now_ms() - since < retention {
            return;
        }
        info!(group = %self.group_id, offsets = self.offsets.len(),
            "group has been empty past offsets retention; deleting its offsets");
        if let Err(e) = self.delete().await {
            warn!(group = %self.group_id, error = %e, "could not expire the group's offsets");
        }
    }

    fn listing(&self) -> GroupListing {
        match &self.membership {
            Membership::Classic(g) => g.listing(),
            Membership::Consumer(g) => g.listing(),
            Membership::None => GroupListing {
                group_id: self.group_id.clone(),
                protocol_type: String::new(),
                state: if self.offsets.is_empty() {
                    "Dead"
                } else {
                    "Empty"
                }
                .into(),
                kind: GroupKind::Classic,
            },
        }
    }

    fn describe(&self) -> GroupDescription {
        match &self.membership {
            Membership::Classic(g) => g.describe(),
            Membership::Consumer(g) => g.describe(self.catalog.as_ref()),
            Membership::None => GroupDescription {
                group_id: self.group_id.clone(),
                state: if self.offsets.is_empty() {
                    "Dead"
                } else {
                    "Empty"
                }
                .into(),
                protocol_type: String::new(),
                protocol: String::new(),
                kind: GroupKind::Classic,
                generation: 0,
                members: Vec::new(),
            },
        }
    }
}

impl Actor for GroupCoordinator {
    type Msg = GroupMsg;
    type State = CoordinatorState;
    type Arguments = CoordinatorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let now = Instant::now();
        let membership = match args.loaded.snapshot {
            None => Membership::None,
            Some(GroupSnapshot::Classic(mut g)) => {
                g.after_load(now);
                Membership::Classic(g)
            }
            Some(GroupSnapshot::Consumer(mut g)) => {
                let cfg = args
                    .catalog
                    .group_overrides(&args.group_id)
                    .apply(&args.config);
                g.after_load(now, &cfg);
                Membership::Consumer(g)
            }
        };
        let check_every = retention_check(&args.config);
        Ok(CoordinatorState {
            group_id: args.group_id,
            partition: args.partition,
            epoch: args.epoch,
            replica: args.replica,
            config: args.config,
            catalog: args.catalog,
            membership,
            offsets: args.loaded.offsets,
            pending: args.loaded.pending,
            next_retention_check: now + check_every,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        debug!(group = %state.group_id, partition = state.partition, epoch = state.epoch,
            "group coordinator started");
        myself.send_interval(TICK, || GroupMsg::Tick);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Membership::Classic(g) = &mut state.membership {
            g.fail_all(GroupError::NotCoordinator);
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        // The group's dynamic configs are read per message, so a change reaches its members
        // at their next heartbeat (the new interval) and the session deadline it sets.
        let cfg = state.effective_config();
        match msg {
            GroupMsg::Join(req, reply) => match state.classic_mut() {
                Ok(g) => {
                    if g.join(now, &cfg, req, reply) {
                        let _ = state.persist_group().await;
                    }
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            GroupMsg::Sync(req, reply) => match &mut state.membership {
                Membership::Classic(g) => {
                    if g.sync(now, req, reply) == SyncStep::Persist {
                        let written = state.persist_group().await;
                        if let Membership::Classic(g) = &mut state.membership {
                            g.finish_sync(Instant::now(), &cfg, written);
                        }
                    }
                }
                _ => {
                    let _ = reply.send(Err(GroupError::UnknownMemberId));
                }
            },
            GroupMsg::Heartbeat(req, reply) => {
                let r = match &mut state.membership {
                    Membership::Classic(g) => g.heartbeat(now, &req),
                    _ => Err(GroupError::UnknownMemberId),
                };
                let _ = reply.send(r);
            }
            GroupMsg::Leave(members, reply) => match &mut state.membership {
                Membership::Classic(g) => {
                    let (out, persist) = g.leave(now, &cfg, members);
                    if persist {
                        let _ = state.persist_group().await;
                    }
                    let _ = reply.send(Ok(out));
                }
                _ => {
                    let _ = reply.send(Err(GroupError::UnknownMemberId));
                }
            },
            GroupMsg::Commit(req, reply) => {
                let r = state.commit(req).await;
                let _ = reply.send(r);
            }
            GroupMsg::TxnCommit(req, reply) => {
                let r = state.txn_commit(req).await;
                let _ = reply.send(r);
            }
            GroupMsg::TxnCompleted {
                producer_id,
                commit,
            } => {
                if end_transaction(&mut state.offsets, &mut state.pending, producer_id, commit) {
                    debug!(group = %state.group_id, producer_id, commit, "transactional offsets ended");
                }
            }
            GroupMsg::FetchOffsets(req, reply) => {
                let _ = reply.send(state.fetch_offsets(req));
            }
            GroupMsg::Listing(reply) => {
                let _ = reply.send(state.listing());
            }
            GroupMsg::Describe(reply) => {
                let _ = reply.send(state.describe());
            }
            GroupMsg::Delete(reply) => {
                let r = state.delete().await;
                let _ = reply.send(r);
            }
            GroupMsg::DeleteOffsets(parts, reply) => {
                let r = state.delete_offsets(parts).await;
                let _ = reply.send(r);
            }
            GroupMsg::Rewrite(reply) => {
                let r = state.rewrite().await;
                let _ = reply.send(r);
            }
            GroupMsg::ConsumerHeartbeat(req, reply) => {
                let catalog = state.catalog.clone();
                let r = state
                    .consumer_mut()
                    .and_then(|g| g.heartbeat(now, req, catalog.as_ref(), &cfg));
                match r {
                    Ok((resp, changed)) => {
                        if changed {
                            if let Err(e) = state.persist_group().await {
                                let _ = reply.send(Err(e));
                                return Ok(());
                            }
                        }
                        let _ = reply.send(Ok(resp));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            GroupMsg::Tick => {
                let catalog = state.catalog.clone();
                let changed = match &mut state.membership {
                    Membership::Classic(g) => g.tick(now, &cfg),
                    Membership::Consumer(g) => g.tick(now, catalog.as_ref(), &cfg),
                    Membership::None => false,
                };
                if changed {
                    let _ = state.persist_group().await;
                }
                if now >= state.next_retention_check {
                    state.next_retention_check = now + retention_check(&cfg);
                    state.enforce_retention().await;
                }
                if state.is_dead() {
                    debug!(group = %state.group_id, "group has no members and no offsets; stopping");
                    myself.stop(Some("group is gone".into()));
                }
            }
        }
        // A deleted group's actor ends; the manager forgets it.
        if state.is_dead() {
            myself.stop(Some("group is gone".into()));
        }
        Ok(())
    }
}
