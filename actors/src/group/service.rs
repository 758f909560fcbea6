//! [`Groups`]: the broker's handle on the group coordinators of this node.
//!
//! Requests are routed by group id to the coordinator actor of the group on this node; reads of
//! groups that do not exist are answered here without starting an actor.

use std::sync::Arc;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef, RpcReplyPort};
use tracing::info;

use super::consumer::TopicCatalog;
use super::coordinator::{FetchedOffsets, GroupMsg, PartitionOutcomes};
use super::manager::{GroupManager, GroupManagerArgs, GroupManagerMsg, Lookup, Router};
use super::types::*;
use super::GroupConfig;
use crate::registry::ReplicaRegistry;
use crate::ActorsError;

/// Slack added to a request's own timeout when waiting for a coordinator's answer.
const SLACK: Duration = Duration::from_secs(5);

/// Cheap to clone. Every method routes to the group's coordinator actor on this node, or fails
/// with [`GroupError::NotCoordinator`] / [`GroupError::CoordinatorLoadInProgress`] when this
/// node does not (yet) coordinate the group.
#[derive(Debug, Clone)]
pub struct Groups {
    config: Arc<GroupConfig>,
    catalog: Arc<dyn TopicCatalog>,
    router: Router,
    manager: ActorRef<GroupManagerMsg>,
}

impl Groups {
    /// Starts this node's group manager and returns the handle. `registry` is the node's
    /// replica registry (the coordinators read and append to the `__consumer_offsets` replicas
    /// through it); `catalog` resolves topics for the server-side assignors and for
    /// OffsetCommit validation. With `supervisor` (the node supervisor's cell), the manager is
    /// linked to it, and a failed manager stops the node as a failed replica manager does.
    pub async fn start(
        config: GroupConfig,
        registry: ReplicaRegistry,
        catalog: Arc<dyn TopicCatalog>,
        supervisor: Option<ractor::ActorCell>,
    ) -> Result<Groups, ActorsError> {
        let config = Arc::new(config);
        let router = Router::default();
        let args = GroupManagerArgs {
            config: config.clone(),
            registry,
            catalog: catalog.clone(),
            router: router.clone(),
        };
        let spawned = match supervisor {
            Some(cell) => Actor::spawn_linked(None, GroupManager, args, cell).await,
            None => Actor::spawn(None, GroupManager, args).await,
        };
        let (manager, _) = spawned.map_err(|e| ActorsError::Spawn {
            name: "group manager".into(),
            reason: e.to_string(),
        })?;
        Ok(Groups {
            config,
            catalog,
            router,
            manager,
        })
    }

    /// Stops every coordinator on this node (held JoinGroup / SyncGroup answers get
    /// NOT_COORDINATOR).
    pub async fn shutdown(&self) {
        let _ = self
            .manager
            .stop_and_wait(
                Some("node shutting down".into()),
                Some(Duration::from_secs(5)),
            )
            .await;
        info!("group coordinators stopped");
    }

    /// Settings.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Partitions of `__consumer_offsets` (the topic's own count once it exists).
    pub fn offsets_partitions(&self) -> i32 {
        super::offsets_partitions(self.catalog.as_ref(), &self.config)
    }

    /// The `__consumer_offsets` partition that coordinates `group_id`.
    pub fn partition_for(&self, group_id: &str) -> i32 {
        super::partition_for(group_id, self.offsets_partitions())
    }

    /// True once this node coordinates the groups of `partition` (loading them or loaded).
    /// The controller can name this node the partition's leader a moment before that.
    pub fn coordinates_partition(&self, partition: i32) -> bool {
        self.router.is_routed(partition)
    }

    /// The group's coordinator; started when `create` and the group has none.
    async fn route(
        &self,
        group_id: &str,
        create: bool,
    ) -> Result<Option<ActorRef<GroupMsg>>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        match self.router.lookup(self.partition_for(group_id), group_id)? {
            Lookup::Running(a) => Ok(Some(a)),
            Lookup::Absent if !create => Ok(None),
            Lookup::Absent => {
                let answer = self
                    .manager
                    .call(
                        |reply| GroupManagerMsg::GetOrCreate(group_id.to_owned(), reply),
                        Some(SLACK),
                    )
                    .await;
                match answer {
                    Ok(CallResult::Success(r)) => r.map(Some),
                    _ => Err(GroupError::CoordinatorNotAvailable(
                        "the group manager did not answer".into(),
                    )),
                }
            }
        }
    }

    async fn ask<T: Send + 'static>(
        actor: &ActorRef<GroupMsg>,
        msg: impl FnOnce(RpcReplyPort<T>) -> GroupMsg,
        timeout: Duration,
    ) -> Result<T, GroupError> {
        match actor.call(msg, Some(timeout)).await {
            Ok(CallResult::Success(v)) => Ok(v),
            Ok(CallResult::Timeout) => Err(GroupError::RequestTimedOut(format!(
                "the group coordinator did not answer within {} ms",
                timeout.as_millis()
            ))),
            // The coordinator stopped (the group was deleted, or this node lost the partition).
            Ok(CallResult::SenderError) | Err(_) => Err(GroupError::NotCoordinator),
        }
    }

    fn timeout(&self) -> Duration {
        self.config.write_timeout + SLACK
    }

    /// JoinGroup. Completes when the rebalance completes (up to the rebalance timeout).
    pub async fn join(&self, group_id: &str, req: JoinRequest) -> Result<JoinResponse, GroupError> {
        let Some(actor) = self.route(group_id, true).await? else {
            return Err(GroupError::NotCoordinator);
        };
        let wait = req.rebalance_timeout + self.config.initial_rebalance_delay + self.timeout();
        Self::ask(&actor, |r| GroupMsg::Join(req, r), wait).await?
    }

    /// SyncGroup. A follower's answer waits for the leader's SyncGroup.
    pub async fn sync(&self, group_id: &str, req: SyncRequest) -> Result<SyncResponse, GroupError> {
        let Some(actor) = self.route(group_id, false).await? else {
            return Err(GroupError::UnknownMemberId);
        };
        // The leader may take up to the session timeout to send the assignment.
        let wait = self
            .config
            .max_session_timeout
            .min(Duration::from_secs(300))
            + self.timeout();
        Self::ask(&actor, |r| GroupMsg::Sync(req, r), wait).await?
    }

    /// Heartbeat.
    pub async fn heartbeat(&self, group_id: &str, req: HeartbeatRequest) -> Result<(), GroupError> {
        let Some(actor) = self.route(group_id, false).await? else {
            return Err(GroupError::UnknownMemberId);
        };
        Self::ask(&actor, |r| GroupMsg::Heartbeat(req, r), self.timeout()).await?
    }

    /// LeaveGroup: the per-member outcomes, or an error for the whole request.
    pub async fn leave(
        &self,
        group_id: &str,
        members: Vec<LeavingMember>,
    ) -> Result<Vec<LeaveOutcome>, GroupError> {
        let Some(actor) = self.route(group_id, false).await? else {
            return Err(GroupError::UnknownMemberId);
        };
        Self::ask(&actor, |r| GroupMsg::Leave(members, r), self.timeout()).await?
    }

    /// OffsetCommit: per-partition outcomes, or an error for the whole request.
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        req: CommitRequest,
    ) -> Result<PartitionOutcomes, GroupError> {
        let Some(actor) = self.route(group_id, true).await? else {
            return Err(GroupError::NotCoordinator);
        };
        Self::ask(&actor, |r| GroupMsg::Commit(req, r), self.timeout()).await?
    }

    /// TxnOffsetCommit: per-partition outcomes, or an error for the whole request. The
    /// offsets become visible when the transaction's commit marker reaches the group's
    /// offsets partition ([`Groups::transaction_ended`]).
    pub async fn txn_commit_offsets(
        &self,
        group_id: &str,
        req: TxnCommitRequest,
    ) -> Result<PartitionOutcomes, GroupError> {
        let Some(actor) = self.route(group_id, true).await? else {
            return Err(GroupError::NotCoordinator);
        };
        Self::ask(&actor, |r| GroupMsg::TxnCommit(req, r), self.timeout()).await?
    }

    /// A transaction marker of `producer_id` was written to `partition` of
    /// `__consumer_offsets` on this node (its leader): the groups there commit or drop the
    /// offsets the transaction committed. A node that does not host the partition ignores it
    /// (its next host replays the marker from the log).
    pub fn transaction_ended(&self, partition: i32, producer_id: i64, commit: bool) {
        let _ = self.manager.cast(GroupManagerMsg::TxnEnded {
            partition,
            producer_id,
            commit,
        });
    }

    /// OffsetFetch for one group. A partition without a committed offset is absent from the
    /// answer when `partitions` is `None`, and present with `None` when asked for by name.
    pub async fn fetch_offsets(
        &self,
        group_id: &str,
        req: FetchOffsetsRequest,
    ) -> Result<FetchedOffsets, GroupError> {
        let Some(actor) = self.route(group_id, false).await? else {
            return Ok(req
                .partitions
                .unwrap_or_default()
                .into_iter()
                .map(|tp| (tp, None))
                .collect());
        };
        Self::ask(&actor, |r| GroupMsg::FetchOffsets(req, r), self.timeout()).await?
    }

    /// ListGroups: the groups this node coordinates.
    pub async fn list(&self) -> Vec<GroupListing> {
        let mut out = Vec::new();
        for actor in self.router.all() {
            if let Ok(l) = Self::ask(&actor, GroupMsg::Listing, SLACK).await {
                if l.state != "Dead" {
                    out.push(l);
                }
            }
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// DescribeGroups for one group. A group that does not exist is described as `Dead` with no
    /// members (as Kafka does), not an error.
    pub async fn describe(&self, group_id: &str) -> Result<GroupDescription, GroupError> {
        let dead = || GroupDescription {
            group_id: group_id.to_owned(),
            state: "Dead".into(),
            protocol_type: String::new(),
            protocol: String::new(),
            kind: GroupKind::Classic,
            generation: -1,
            members: Vec::new(),
        };
        let Some(actor) = self.route(group_id, false).await? else {
            return Ok(dead());
        };
        match Self::ask(&actor, GroupMsg::Describe, self.timeout()).await {
            Err(GroupError::NotCoordinator) => Ok(dead()),
            r => r,
        }
    }

    /// DeleteGroups for one group: only an empty group can be deleted.
    pub async fn delete(&self, group_id: &str) -> Result<(), GroupError> {
        let Some(actor) = self.route(group_id, false).await? else {
            return Err(GroupError::GroupIdNotFound);
        };
        Self::ask(&actor, GroupMsg::Delete, self.timeout()).await?
    }

    /// OffsetDelete: per-partition outcomes (GROUP_SUBSCRIBED_TO_TOPIC for a topic the group
    /// consumes), or an error for the whole request.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<GroupTopicPartition>,
    ) -> Result<PartitionOutcomes, GroupError> {
        let Some(actor) = self.route(group_id, false).await? else {
            return Err(GroupError::GroupIdNotFound);
        };
        Self::ask(
            &actor,
            |r| GroupMsg::DeleteOffsets(partitions, r),
            self.timeout(),
        )
        .await?
    }

    /// ConsumerGroupHeartbeat (KIP-848).
    pub async fn consumer_heartbeat(
        &self,
        group_id: &str,
        req: ConsumerHeartbeatRequest,
    ) -> Result<ConsumerHeartbeatResponse, GroupError> {
        let create = req.member_epoch == 0;
        let Some(actor) = self.route(group_id, create).await? else {
            return Err(GroupError::UnknownMemberId);
        };
        Self::ask(
            &actor,
            |r| GroupMsg::ConsumerHeartbeat(req, r),
            self.timeout(),
        )
        .await?
    }
}
