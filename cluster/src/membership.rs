//! Membership: links between nodes over ractor_cluster, heartbeats, failure detection, and the
//! two transports built on the links (replication messages and controller RPCs).
//!
//! ```text
//!  NodeServer (ractor_cluster, cookie-authenticated TCP sessions)
//!    │  every node runs one PeerEndpoint actor, in process group `rivulet.peer.<id>`;
//!    │  process groups are synced over the sessions, so a node finds its peers' endpoints
//!    ▼
//!  PeerEndpoint ◀── Deliver(bytes): heartbeat | rkyv replication message ──▶ replica actor
//!               ◀── Call(bytes) -> bytes: controller RPC (Raft votes, appends, client writes)
//!
//!  link keeper (every 250 ms): dial peers with a higher id than ours (ours are dialled by
//!  lower ids) with backoff; send heartbeats; a peer silent for longer than the session
//!  timeout gets its session closed (ractor_cluster has no timeouts of its own), after which
//!  the dialling side reconnects.
//! ```
//! The direction rule (lower id dials higher) keeps one session per pair and lets a test put a
//! fault-injecting proxy on the path by giving the lower node the proxy's address as its seed.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::{NodeServer, NodeServerMessage, RactorClusterMessage};
use rivulet_actors::replication::{
    self, AppendResponse, AppendResult, BoxFuture, IsrChange, NodeId, ReplicaNetwork,
    ReplicationMessage,
};
use rivulet_actors::{PartitionReplicaMsg, ReplicaRegistry, TopicPartition};
use tracing::{debug, info, warn};

/// Settings of the node-to-node links.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// This node.
    pub node_id: NodeId,
    /// Address the cluster listener binds.
    pub listen: SocketAddr,
    /// Initial members and how to reach them (this node included).
    pub seeds: BTreeMap<NodeId, String>,
    /// Shared secret of the cluster; sessions with another cookie are refused.
    pub cookie: String,
    /// How often heartbeats go out.
    pub heartbeat_interval: Duration,
    /// A peer silent this long is considered gone and its session is closed.
    pub session_timeout: Duration,
    /// Mutual TLS on the node-to-node links (`None`: plain TCP, cookie only).
    pub tls: Option<TlsFiles>,
}

/// PEM files for mutual TLS between nodes: every node presents its certificate and accepts
/// only peers whose certificate is signed by `ca`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// This node's certificate chain.
    pub cert: std::path::PathBuf,
    /// This node's private key.
    pub key: std::path::PathBuf,
    /// The CA that signs every node's certificate.
    pub ca: std::path::PathBuf,
    /// Name checked against the peer's certificate when dialling; empty: the host of the
    /// peer's address.
    pub server_name: String,
}

struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
    server_name: String,
}

fn load_tls(files: &TlsFiles) -> Result<Tls, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("reading certificate {}: {e}", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("reading private key {}: {e}", files.key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&files.ca)
        .map_err(|e| format!("reading CA {}: {e}", files.ca.display()))?
    {
        let ca = ca.map_err(|e| format!("reading CA {}: {e}", files.ca.display()))?;
        roots
            .add(ca)
            .map_err(|e| format!("CA {}: {e}", files.ca.display()))?;
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("client verifier: {e}"))?;
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(|e| format!("certificate/key pair: {e}"))?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| format!("certificate/key pair: {e}"))?;
    Ok(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        server_name: files.server_name.clone(),
    })
}

/// Messages between node endpoints.
#[derive(RactorClusterMessage)]
pub enum PeerMsg {
    /// One-way: a heartbeat or a replication message.
    Deliver(Vec<u8>),
    /// Request/response: a controller RPC.
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

impl std::fmt::Debug for PeerMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerMsg::Deliver(b) => write!(f, "Deliver({} bytes)", b.len()),
            PeerMsg::Call(b, _) => write!(f, "Call({} bytes)", b.len()),
        }
    }
}

const TAG_HEARTBEAT: u8 = 0;
const TAG_REPLICATION: u8 = 1;

/// Handles controller RPCs arriving from peers.
pub trait RpcHandler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, request: Vec<u8>) -> BoxFuture<Vec<u8>>;
}

/// Asks the controller to change a partition's ISR.
pub trait IsrHandler: Send + Sync + 'static {
    /// Commits the change; resolves to the new partition epoch.
    fn change_isr(&self, change: IsrChange) -> BoxFuture<Result<i32, String>>;
}

fn group_of(node: NodeId) -> String {
    format!("rivulet.peer.{node}")
}

fn node_name(node: NodeId) -> String {
    format!("rivulet-{node}")
}

/// The host this node names itself by in ractor_cluster's handshake. ractor_cluster takes a
/// peer whose `host:port` equals its own for a connection to itself and drops it, so this must
/// differ between nodes: it is the host of this node's own seed address (`node1` in
/// `1@node1:9093`), and only without one the listen IP. With the listen IP, nodes that all bind
/// `0.0.0.0:9093` (one per container or machine) would each refuse every other one.
fn session_host(config: &MembershipConfig) -> String {
    config
        .seeds
        .get(&config.node_id)
        .and_then(|a| a.rsplit_once(':').map(|(host, _)| host))
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| config.listen.ip().to_string())
}

/// What a node knows about its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// Peer id.
    pub node: NodeId,
    /// True while a session is up and heartbeats arrive.
    pub reachable: bool,
    /// Time since the last heartbeat, if any arrived.
    pub silent_for: Option<Duration>,
}

/// State shared by the endpoint actor, the link keeper and the transports.
pub struct Shared {
    config: MembershipConfig,
    registry: ReplicaRegistry,
    last_heard: Mutex<HashMap<NodeId, Instant>>,
    // Cleared at shutdown: the controller holds this membership, so handlers kept here
    // forever would be a reference cycle that keeps the store open after an embedded node
    // shut down.
    rpc: Mutex<Option<Arc<dyn RpcHandler>>>,
    isr: Mutex<Option<Arc<dyn IsrHandler>>>,
    /// Dial addresses of nodes that joined after the seeds (learned from the controller).
    extra_addrs: Mutex<BTreeMap<NodeId, String>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("node_id", &self.config.node_id)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn endpoint(&self, node: NodeId) -> Option<ActorRef<PeerMsg>> {
        ractor::pg::get_members(&group_of(node))
            .into_iter()
            .find(|c| node == self.config.node_id || !c.get_id().is_local())
            .map(ActorRef::<PeerMsg>::from)
    }

    fn deliver(&self, node: NodeId, bytes: Vec<u8>) -> bool {
        match self.endpoint(node) {
            Some(ep) => ep.cast(PeerMsg::Deliver(bytes)).is_ok(),
            None => false,
        }
    }

    /// Sends a replication message to `node`'s endpoint; false when it could not go out.
    fn send_replication(&self, node: NodeId, msg: &ReplicationMessage) -> bool {
        match replication::encode(msg) {
            Ok(body) => self.deliver(node, frame(TAG_REPLICATION, &body)),
            Err(e) => {
                warn!(peer = node, error = %e, "dropping a replication message");
                false
            }
        }
    }

    fn on_replication(&self, bytes: &[u8]) {
        let msg = match replication::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "dropping a malformed replication message from a peer");
                return;
            }
        };
        let (topic, partition) = msg.topic_partition();
        let tp = TopicPartition::new(topic, partition);
        match self.registry.get(&tp) {
            Some(h) => {
                let _ = h.actor.cast(PartitionReplicaMsg::Replication(msg));
            }
            None => {
                if let ReplicationMessage::Append(req) = msg {
                    let resp = ReplicationMessage::AppendResponse(AppendResponse {
                        topic: req.topic,
                        partition: req.partition,
                        follower: self.config.node_id,
                        leader_epoch: req.leader_epoch,
                        seq: req.seq,
                        log_start_offset: -1,
                        result: AppendResult::NotReplica,
                    });
                    self.send_replication(req.leader, &resp);
                }
            }
        }
    }
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 1);
    v.push(tag);
    v.extend_from_slice(body);
    v
}

/// The endpoint actor of a node.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PeerEndpoint;

impl Actor for PeerEndpoint {
    type Msg = PeerMsg;
    type State = Arc<Shared>;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        shared: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(group_of(shared.config.node_id), vec![myself.get_cell()]);
        Ok(shared)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        shared: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PeerMsg::Deliver(bytes) => match bytes.first() {
                Some(&TAG_HEARTBEAT) if bytes.len() == 9 => {
                    let mut id = [0u8; 8];
                    id.copy_from_slice(&bytes[1..9]);
                    shared
                        .last_heard
                        .lock()
                        .insert(u64::from_le_bytes(id), Instant::now());
                }
                Some(&TAG_REPLICATION) => shared.on_replication(&bytes[1..]),
                _ => warn!(len = bytes.len(), "dropping an unknown message from a peer"),
            },
            PeerMsg::Call(request, reply) => match shared.rpc.lock().clone() {
                Some(handler) => {
                    let fut = handler.handle(request);
                    tokio::spawn(async move {
                        let _ = reply.send(fut.await);
                    });
                }
                None => debug!("controller RPC before the controller started; dropped"),
            },
        }
        Ok(())
    }
}

/// A running membership: the node server, the endpoint and the link keeper.
#[derive(Clone)]
pub struct Membership {
    shared: Arc<Shared>,
    server: ActorRef<NodeServerMessage>,
    endpoint: ActorRef<PeerMsg>,
    keeper: Arc<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("node_id", &self.shared.config.node_id)
            .finish_non_exhaustive()
    }
}

/// Errors starting the links.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The node server or endpoint could not start.
    #[error("could not start the cluster listener on {addr}: {reason}. Is the port free? Change `cluster.listen` / --cluster-listen")]
    Start {
        /// The listen address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

impl Membership {
    /// Starts the node server on `config.listen`, the endpoint, and the link keeper.
    pub async fn start(
        config: MembershipConfig,
        registry: ReplicaRegistry,
    ) -> Result<Membership, MembershipError> {
        let addr = config.listen;
        let err = |reason: String| MembershipError::Start { addr, reason };
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(load_tls(files).map_err(|e| {
                err(format!(
                    "TLS setup failed: {e}; check cluster.tls_cert / tls_key / tls_ca"
                ))
            })?)),
            None => None,
        };
        let server = NodeServer::new(
            addr.port(),
            config.cookie.clone(),
            node_name(config.node_id),
            session_host(&config),
            tls.as_ref()
                .map(|t| ractor_cluster::IncomingEncryptionMode::Tls(t.acceptor.clone())),
            None,
        )
        .with_listen_addr(addr.ip());
        let (server, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|e| err(e.to_string()))?;
        let shared = Arc::new(Shared {
            config,
            registry,
            last_heard: Mutex::new(HashMap::new()),
            rpc: Mutex::new(None),
            isr: Mutex::new(None),
            extra_addrs: Mutex::new(BTreeMap::new()),
        });
        let (endpoint, _) = Actor::spawn(None, PeerEndpoint, shared.clone())
            .await
            .map_err(|e| err(e.to_string()))?;
        let keeper = tokio::spawn(link_keeper(shared.clone(), server.clone(), tls));
        info!(
            node_id = shared.config.node_id, %addr,
            seeds = ?shared.config.seeds, "cluster listener started"
        );
        Ok(Membership {
            shared,
            server,
            endpoint,
            keeper: Arc::new(keeper),
        })
    }

    /// Installs the controller's RPC handler (once).
    pub fn set_rpc_handler(&self, handler: Arc<dyn RpcHandler>) {
        self.shared.rpc.lock().get_or_insert(handler);
    }

    /// Installs the controller's ISR handler (once).
    pub fn set_isr_handler(&self, handler: Arc<dyn IsrHandler>) {
        self.shared.isr.lock().get_or_insert(handler);
    }

    /// Remembers how to reach a node that joined after the seeds.
    pub fn learn_address(&self, node: NodeId, addr: String) {
        if node != self.shared.config.node_id && !self.shared.config.seeds.contains_key(&node) {
            self.shared.extra_addrs.lock().insert(node, addr);
        }
    }

    /// The transport the controller uses.
    pub fn rpc_transport(&self) -> RpcTransport {
        RpcTransport {
            shared: self.shared.clone(),
        }
    }

    /// The network partition replicas use.
    pub fn replica_network(&self) -> Arc<dyn ReplicaNetwork> {
        Arc::new(ClusterNetwork {
            shared: self.shared.clone(),
        })
    }

    /// Peers and whether they are reachable.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let heard = self.shared.last_heard.lock().clone();
        let now = Instant::now();
        let mut ids: Vec<NodeId> = self.shared.config.seeds.keys().copied().collect();
        ids.extend(self.shared.extra_addrs.lock().keys().copied());
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .filter(|n| *n != self.shared.config.node_id)
            .map(|node| {
                let silent_for = heard.get(&node).map(|t| now.duration_since(*t));
                PeerStatus {
                    node,
                    reachable: self.shared.endpoint(node).is_some()
                        && silent_for.is_some_and(|s| s < self.shared.config.session_timeout),
                    silent_for,
                }
            })
            .collect()
    }

    /// Stops the links.
    pub async fn shutdown(&self) {
        self.shared.rpc.lock().take();
        self.shared.isr.lock().take();
        self.keeper.abort();
        self.endpoint.stop(None);
        self.server.stop(None);
    }
}

async fn sessions(
    server: &ActorRef<NodeServerMessage>,
) -> Option<HashMap<u64, ractor_cluster::node::NodeServerSessionInformation>> {
    ractor::call_t!(server, NodeServerMessage::GetSessions, 2000).ok()
}

/// Dials, heartbeats and drops silent peers, forever.
async fn link_keeper(
    shared: Arc<Shared>,
    server: ActorRef<NodeServerMessage>,
    tls: Option<Arc<Tls>>,
) {
    let me = shared.config.node_id;
    let joining = !shared.config.seeds.contains_key(&me);
    let mut backoff: HashMap<NodeId, (Instant, Duration)> = HashMap::new();
    let mut dialing: HashMap<NodeId, tokio::task::JoinHandle<()>> = HashMap::new();
    // Sessions first seen unauthenticated, by session actor id.
    let mut unready_since: HashMap<ractor::ActorId, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(shared.config.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let heartbeat = frame(TAG_HEARTBEAT, &me.to_le_bytes());
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let mut targets: BTreeMap<NodeId, String> = shared
            .config
            .seeds
            .iter()
            .filter(|(id, _)| **id > me || (joining && **id != me))
            .map(|(id, a)| (*id, a.clone()))
            .collect();
        for (id, a) in shared.extra_addrs.lock().iter() {
            if *id > me {
                targets.insert(*id, a.clone());
            }
        }
        // Heartbeats to every peer we have an endpoint for.
        let mut peers: Vec<NodeId> = shared.config.seeds.keys().copied().collect();
        peers.extend(shared.extra_addrs.lock().keys().copied());
        peers.retain(|p| *p != me);
        for p in &peers {
            shared.deliver(*p, heartbeat.clone());
        }
        let Some(sessions) = sessions(&server).await else {
            continue;
        };
        // Silent peers: close their sessions so the dialling side starts over.
        let heard = shared.last_heard.lock().clone();
        for info in sessions.values() {
            let id = info.actor.get_id();
            match &info.peer_name {
                Some(name) => {
                    unready_since.remove(&id);
                    let peer = name
                        .name
                        .strip_prefix("rivulet-")
                        .and_then(|n| n.parse::<NodeId>().ok());
                    let Some(peer) = peer else { continue };
                    let silent = heard
                        .get(&peer)
                        .map(|t| now.duration_since(*t))
                        .unwrap_or_default();
                    if silent > shared.config.session_timeout {
                        warn!(
                            peer,
                            silent_ms = silent.as_millis() as u64,
                            "peer silent for longer than the session timeout; closing its link"
                        );
                        shared.last_heard.lock().insert(peer, now);
                        info.actor.stop(Some("peer silent".into()));
                    }
                }
                None => {
                    let since = *unready_since.entry(id).or_insert(now);
                    if now.duration_since(since) > shared.config.session_timeout * 2 {
                        warn!(peer_addr = %info.peer_addr, "link never authenticated; closing it");
                        unready_since.remove(&id);
                        info.actor.stop(Some("handshake timed out".into()));
                    }
                }
            }
        }
        // Dial peers that have no live endpoint.
        dialing.retain(|_, h| !h.is_finished());
        for (id, addr) in targets {
            if shared.endpoint(id).is_some() || dialing.contains_key(&id) {
                continue;
            }
            let (due, delay) = backoff
                .get(&id)
                .copied()
                .unwrap_or((now, Duration::from_millis(100)));
            if due > now {
                continue;
            }
            backoff.insert(id, (now + delay, (delay * 2).min(Duration::from_secs(2))));
            // A fresh link: the peer gets a full session timeout before it counts as silent.
            shared.last_heard.lock().insert(id, now);
            let server = server.clone();
            let tls = tls.clone();
            dialing.insert(
                id,
                tokio::spawn(async move {
                    let r = tokio::time::timeout(Duration::from_secs(2), async {
                        match &tls {
                            None => ractor_cluster::client_connect(&server, addr.as_str()).await,
                            Some(t) => {
                                let host = if t.server_name.is_empty() {
                                    addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h)
                                } else {
                                    t.server_name.as_str()
                                };
                                let host = host.trim_start_matches('[').trim_end_matches(']');
                                let name = match rustls::pki_types::ServerName::try_from(
                                    host.to_string(),
                                ) {
                                    Ok(n) => n,
                                    Err(e) => {
                                        warn!(peer = id, %addr, error = %e, "not a valid TLS server name");
                                        return Ok(());
                                    }
                                };
                                ractor_cluster::client_connect_enc(
                                    &server,
                                    addr.as_str(),
                                    t.connector.clone(),
                                    name,
                                )
                                .await
                            }
                        }
                    })
                    .await;
                    match r {
                        Ok(Ok(())) => debug!(peer = id, %addr, "dialled peer"),
                        Ok(Err(e)) => debug!(peer = id, %addr, error = %e, "dialling peer failed"),
                        Err(_) => debug!(peer = id, %addr, "dialling peer timed out"),
                    }
                }),
            );
        }
        for id in shared.config.seeds.keys() {
            if shared.endpoint(*id).is_some() {
                backoff.remove(id);
            }
        }
    }
}

/// Controller RPCs over the links.
#[derive(Debug, Clone)]
pub struct RpcTransport {
    shared: Arc<Shared>,
}

/// Why an RPC failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    /// No link to the node right now.
    #[error("node {0} is not connected")]
    Unreachable(NodeId),
    /// No answer in time.
    #[error("node {0} did not answer in time")]
    Timeout(NodeId),
}

impl RpcTransport {
    /// Sends `request` to `target`'s controller and waits for the answer.
    pub async fn call(
        &self,
        target: NodeId,
        request: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        let ep = self
            .shared
            .endpoint(target)
            .ok_or(RpcError::Unreachable(target))?;
        let ms = timeout.as_millis() as u64;
        match ractor::call_t!(ep, PeerMsg::Call, ms, request) {
            Ok(reply) => Ok(reply),
            Err(ractor::RactorErr::Timeout) => Err(RpcError::Timeout(target)),
            Err(_) => Err(RpcError::Unreachable(target)),
        }
    }
}

#[derive(Debug)]
struct ClusterNetwork {
    shared: Arc<Shared>,
}

impl ReplicaNetwork for ClusterNetwork {
    fn local_node(&self) -> NodeId {
        self.shared.config.node_id
    }

    fn send(&self, to: NodeId, msg: ReplicationMessage) -> bool {
        self.shared.send_replication(to, &msg)
    }

    fn change_isr(&self, change: IsrChange) -> BoxFuture<Result<i32, String>> {
        let handler = self.shared.isr.lock().clone();
        match handler {
            Some(h) => h.change_isr(change),
            None => Box::pin(async { Err("the controller is not running yet".to_string()) }),
        }
    }
}

impl crate::raft::RaftTransport for RpcTransport {
    fn call(
        &self,
        target: NodeId,
        request: Vec<u8>,
        timeout: Duration,
    ) -> crate::raft::TransportFuture<'_> {
        Box::pin(async move {
            RpcTransport::call(self, target, request, timeout)
                .await
                .map_err(|e| match e {
                    RpcError::Unreachable(node) => crate::raft::TransportError::Unreachable {
                        node,
                        reason: "no link".into(),
                    },
                    RpcError::Timeout(node) => {
                        crate::raft::TransportError::Timeout { node, timeout }
                    }
                })
        })
    }
}

/// The transport of a single-node cluster: there is nobody to call.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPeers;

impl crate::raft::RaftTransport for NoPeers {
    fn call(
        &self,
        target: NodeId,
        _request: Vec<u8>,
        _timeout: Duration,
    ) -> crate::raft::TransportFuture<'_> {
        Box::pin(async move {
            Err(crate::raft::TransportError::Unreachable {
                node: target,
                reason: "single-node cluster".into(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(node_id: NodeId, listen: &str, seeds: &[(NodeId, &str)]) -> MembershipConfig {
        MembershipConfig {
            node_id,
            listen: listen.parse().unwrap(),
            seeds: seeds.iter().map(|(id, a)| (*id, a.to_string())).collect(),
            cookie: String::new(),
            heartbeat_interval: Duration::from_millis(250),
            session_timeout: Duration::from_millis(2000),
            tls: None,
        }
    }

    #[test]
    fn session_host_is_the_own_seed_host_so_nodes_on_one_port_differ() {
        let seeds = [(1, "node1:9093"), (2, "node2:9093"), (3, "[::1]:9095")];
        assert_eq!(session_host(&config(1, "0.0.0.0:9093", &seeds)), "node1");
        assert_eq!(session_host(&config(2, "0.0.0.0:9093", &seeds)), "node2");
        assert_eq!(session_host(&config(3, "[::]:9095", &seeds)), "[::1]");
        // Not among the seeds: the listen IP.
        assert_eq!(
            session_host(&config(4, "10.0.0.4:9093", &seeds)),
            "10.0.0.4"
        );
    }
}
