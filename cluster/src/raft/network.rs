//! The controller's RPCs over a [`RaftTransport`] (implemented by the membership layer over
//! ractor_cluster; an in-process one in the tests).
//!
//! Every RPC is a JSON [`ControllerRpc`] answered by a JSON [`ControllerReply`]. Transport
//! failures map to openraft's `Unreachable` (the node is down: openraft backs off) or
//! `NetworkError` (anything else: openraft retries).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use serde::{Deserialize, Serialize};

use super::state::{MetaCommand, MetaResponse, NodeId, NodeRecord};
use super::TypeConfig;

/// Why a transport call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The target is not connected / refused / gone.
    #[error("node {node} is unreachable: {reason}")]
    Unreachable {
        /// The target.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// No reply within the timeout.
    #[error("no reply from node {node} within {timeout:?}")]
    Timeout {
        /// The target.
        node: NodeId,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// Anything else (encoding, a closed session, ...).
    #[error("transport error: {0}")]
    Other(String),
}

/// A request/response channel to other nodes, keyed by stable node id.
///
/// `call` sends `request` to `target`'s [`super::MetaRaft::handle_rpc`] and returns its reply. It
/// must give up after `timeout`.
pub trait RaftTransport: Send + Sync + 'static {
    /// One request/response exchange with `target`.
    fn call(&self, target: NodeId, request: Vec<u8>, timeout: Duration) -> TransportFuture<'_>;
}

/// What [`RaftTransport::call`] returns.
pub type TransportFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<u8>, TransportError>> + Send + 'a>>;

/// The request envelope.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ControllerRpc {
    Vote(VoteRequest<NodeId>),
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Propose a command (sent to the leader).
    ClientWrite(MetaCommand),
    /// Lease renewal (sent to the leader).
    Heartbeat {
        node: NodeId,
    },
    /// A new node asks to become a learner (sent to seeds, forwarded to the leader).
    Join(NodeRecord),
}

/// The reply envelope.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ControllerReply {
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Written(MetaResponse),
    /// Heartbeat accepted; `fenced` is the node's flag in the leader's image.
    HeartbeatAck {
        fenced: bool,
    },
    Joined,
    /// This node is not the controller leader; `leader` is its best guess.
    NotLeader {
        leader: Option<NodeId>,
    },
    /// The request failed on the receiver.
    Error(String),
}

/// A failed exchange, before it is fitted into openraft's error types.
#[derive(Debug)]
pub(crate) enum CallError {
    Unreachable(TransportError),
    Network(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "{e}"),
            CallError::Network(e) => write!(f, "{e}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

/// Sends `rpc` to `target` and decodes the reply, bounded by `timeout` whatever the transport
/// does.
pub(crate) async fn call(
    transport: &dyn RaftTransport,
    target: NodeId,
    rpc: &ControllerRpc,
    timeout: Duration,
) -> Result<ControllerReply, CallError> {
    let bytes = serde_json::to_vec(rpc).map_err(|e| CallError::Network(e.to_string()))?;
    let reply = match tokio::time::timeout(timeout, transport.call(target, bytes, timeout)).await {
        Err(_) => {
            return Err(CallError::Network(
                TransportError::Timeout {
                    node: target,
                    timeout,
                }
                .to_string(),
            ))
        }
        Ok(Err(e @ TransportError::Unreachable { .. })) => return Err(CallError::Unreachable(e)),
        Ok(Err(e)) => return Err(CallError::Network(e.to_string())),
        Ok(Ok(reply)) => reply,
    };
    serde_json::from_slice(&reply)
        .map_err(|e| CallError::Network(format!("undecodable reply from node {target}: {e}")))
}

fn to_rpc_error<E: std::error::Error>(e: CallError) -> RPCError<NodeId, BasicNode, E> {
    match e {
        CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
        CallError::Network(m) => RPCError::Network(NetworkError::new(&Msg(m))),
    }
}

fn unexpected<E: std::error::Error>(
    target: NodeId,
    reply: &ControllerReply,
) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&Msg(format!(
        "unexpected reply from node {target}: {reply:?}"
    ))))
}

/// Hands out [`PeerClient`]s.
#[derive(Clone)]
pub(crate) struct Network {
    pub(crate) transport: Arc<dyn RaftTransport>,
    pub(crate) backoff: Duration,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").finish_non_exhaustive()
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            net: self.clone(),
        }
    }
}

/// openraft's connection to one peer.
#[derive(Debug)]
pub(crate) struct PeerClient {
    target: NodeId,
    net: Network,
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let req = ControllerRpc::AppendEntries(rpc);
        let reply = call(&*self.net.transport, self.target, &req, option.hard_ttl())
            .await
            .map_err(to_rpc_error)?;
        match reply {
            ControllerReply::AppendEntries(Ok(r)) => Ok(r),
            ControllerReply::AppendEntries(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(unexpected(self.target, &other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let req = ControllerRpc::InstallSnapshot(rpc);
        let reply = call(&*self.net.transport, self.target, &req, option.hard_ttl())
            .await
            .map_err(to_rpc_error)?;
        match reply {
            ControllerReply::InstallSnapshot(Ok(r)) => Ok(r),
            ControllerReply::InstallSnapshot(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(unexpected(self.target, &other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let req = ControllerRpc::Vote(rpc);
        let reply = call(&*self.net.transport, self.target, &req, option.hard_ttl())
            .await
            .map_err(to_rpc_error)?;
        match reply {
            ControllerReply::Vote(Ok(r)) => Ok(r),
            ControllerReply::Vote(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(unexpected(self.target, &other)),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.net.backoff))
    }
}
