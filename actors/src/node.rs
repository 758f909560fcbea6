//! `NodeSupervisor`: the root of a node's actor tree.
//!
//! It starts the [`ReplicaManager`] and escalates if it dies: a node whose replica manager
//! failed stops, so that the process exits and its own supervisor (systemd, Kubernetes, a
//! shell loop) restarts it from disk, rather than serving with no partitions.

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tracing::error;

use crate::manager::{ReplicaManager, ReplicaManagerArgs, ReplicaManagerMsg};

/// Messages of [`NodeSupervisor`].
#[derive(Debug)]
pub enum NodeSupervisorMsg {
    /// Returns the replica manager.
    GetReplicaManager(ractor::RpcReplyPort<ActorRef<ReplicaManagerMsg>>),
}

impl ractor::Message for NodeSupervisorMsg {}

/// Arguments of [`NodeSupervisor`].
#[derive(Debug, Clone)]
pub struct NodeSupervisorArgs {
    /// The replica manager's arguments.
    pub replica_manager: ReplicaManagerArgs,
}

/// State of [`NodeSupervisor`].
#[derive(Debug)]
pub struct NodeSupervisorState {
    replica_manager: ActorRef<ReplicaManagerMsg>,
}

/// The node supervisor actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeSupervisor;

impl Actor for NodeSupervisor {
    type Msg = NodeSupervisorMsg;
    type State = NodeSupervisorState;
    type Arguments = NodeSupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (replica_manager, _) = Actor::spawn_linked(
            None,
            ReplicaManager,
            args.replica_manager,
            myself.get_cell(),
        )
        .await?;
        Ok(NodeSupervisorState { replica_manager })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeSupervisorMsg::GetReplicaManager(reply) => {
                let _ = reply.send(state.replica_manager.clone());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err)
                if cell.get_id() == state.replica_manager.get_id() =>
            {
                error!(error = %err, "replica manager failed; stopping the node");
                myself.stop(Some(format!("replica manager failed: {err}")));
            }
            SupervisionEvent::ActorTerminated(cell, _, reason)
                if cell.get_id() == state.replica_manager.get_id() =>
            {
                myself.stop(reason);
            }
            // The other linked child is the group manager (`group::Groups::start`): without it
            // no group can be coordinated here, so the node stops and is restarted whole.
            SupervisionEvent::ActorFailed(cell, err) => {
                error!(actor = ?cell.get_id(), error = %err, "a node service failed; stopping the node");
                myself.stop(Some(format!("node service failed: {err}")));
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _ = state
            .replica_manager
            .stop_and_wait(Some("node shutting down".into()), None)
            .await;
        Ok(())
    }
}
