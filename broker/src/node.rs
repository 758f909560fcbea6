//! An embeddable node: everything `rivulet serve` runs, started from a typed [`Config`] by a
//! Rust program, with the Kafka listener optional.
//!
//! ```text
//!   NodeBuilder::new(Config) ─ start() ─▶ NodeHandle ── shutdown() (what SIGTERM does)
//!        │
//!        ├─ 1 storage: Store::open (recovery), on the blocking pool
//!        ├─ 2 Kafka listener bound (when enabled), so a busy port fails before anything runs
//!        ├─ 3 Membership (ractor_cluster NodeServer, peer links, heartbeats)   [with seeds]
//!        ├─ 4 NodeSupervisor ─▶ ReplicaManager ─▶ PartitionReplica{t,p} …
//!        ├─ 5 MetaRaft (metadata controller; voter if a seed, else learner)
//!        ├─ 6 Controller facade (reconciler: image ─▶ Ensure/Remove replicas)
//!        ├─ 7 Groups (GroupManager ─▶ GroupCoordinator{group} …), linked to the supervisor
//!        │    then the ForwardService (native-client operations forwarded by other nodes)
//!        ├─ 8 the admin HTTP endpoint (when enabled): up before the wait, so /ready can say
//!        │    what the node waits for
//!        ├─ 9 wait (bounded) for the replicas this node already knows to start
//!        └─ 10 the Kafka server task (when enabled); /ready turns true
//! ```
//!
//! [`NodeHandle::shutdown`] runs it backwards: stop accepting and close client connections,
//! stop the group coordinators (their last writes still reach running replicas), stop the
//! actor tree (each replica syncs its log), stop the controller and the peer links, sync the
//! store. Other nodes see this node's lease lapse and move its leaderships to in-sync replicas.
//!
//! **Optional listeners** each get a builder method ([`NodeBuilder::kafka_listener`],
//! [`NodeBuilder::admin_listener`]) and keep their task and shutdown sender in the handle.
//! The Kafka listener starts last (step 10) and is stopped first by [`NodeHandle::shutdown`];
//! the admin endpoint starts before the replica wait (step 8) and is stopped last, so
//! `/ready` answers 503 while the node starts and while it stops.
//!
//! What a library must not do, and this module does not: install a global allocator or a
//! tracing subscriber. The `rivulet` binary does both; an embedding program chooses its own
//! (see [`crate::alloc::GuardedAlloc`] for why a node that serves untrusted Kafka clients
//! wants the guarded allocator).
//!
//! One node per process: ractor's name registry and process groups are global to a process,
//! so a second node in the same process fails to start (its supervisor's name is taken).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorRef};
use rivulet_actors::group::Groups;
use rivulet_actors::manager::ReplicaSettings;
use rivulet_actors::{
    NodeSupervisor, NodeSupervisorArgs, NodeSupervisorMsg, ReplicaManagerArgs, ReplicaRegistry,
};
use rivulet_cluster::{
    Controller, ControllerConfig, Membership, MembershipConfig, MetaRaft, MetaRaftConfig, NoPeers,
    NodeRecord, RaftRpcHandler,
};
use rivulet_storage::{Store, StoreConfig};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::server::handlers::groups::ControllerCatalog;
use crate::server::{self, BrokerState};

/// Errors of starting and stopping a [`NodeHandle`].
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is invalid; the message names the key.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A start-up step failed; `step` says which and what to try.
    #[error("{step}")]
    Start {
        /// What failed, with a hint.
        step: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The actor tree stopped on its own (a replica manager or group manager failed); the
    /// node was shut down. The errors were logged before.
    #[error("the node stopped because its actor tree failed; see the errors logged before")]
    ActorTreeFailed,
    /// The last sync of the store at shutdown failed: writes acknowledged without fsync may
    /// not be on disk.
    #[error("final sync of the store failed")]
    FinalSync(#[source] BoxError),
}

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result of node operations.
pub type Result<T> = std::result::Result<T, NodeError>;

fn start_err(step: impl Into<String>) -> impl FnOnce(BoxError) -> NodeError {
    let step = step.into();
    move |source| NodeError::Start { step, source }
}

fn config_err(e: anyhow::Error) -> NodeError {
    NodeError::Config(format!("{e:#}"))
}

/// Whether a node serves the Kafka protocol on [`Config::listen`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KafkaListener {
    /// Bind [`Config::listen`] (port 0 picks a free port) and advertise [`Config::advertised`],
    /// or the bound address when that is empty.
    #[default]
    Enabled,
    /// No Kafka listener. The node still hosts replicas, leads partitions and coordinates
    /// groups, but Kafka clients cannot reach it: partitions it leads are served only to
    /// in-cluster callers (the native client, once it exists). Other nodes' Metadata lists it
    /// with port 0.
    Disabled,
}

/// Whether a node serves the admin HTTP endpoint (`/health`, `/ready`, `/metrics`, `/v1/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminListener {
    /// Bind [`Config::admin`]'s `listen` address, unless it says `off` (default
    /// `127.0.0.1:9644`; port 0 picks a free port, see [`NodeHandle::admin_addr`]).
    #[default]
    FromConfig,
    /// No admin endpoint, whatever the configuration says.
    Disabled,
}

/// The entry point: `Node::builder(config).start().await`.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// A builder for a node with this configuration.
    pub fn builder(config: Config) -> NodeBuilder {
        NodeBuilder::new(config)
    }
}

/// Configures and starts a node (see the module docs for what starts, in which order).
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    config: Config,
    kafka: KafkaListener,
    admin: AdminListener,
}

impl NodeBuilder {
    /// A builder for a node with this configuration (validated by [`NodeBuilder::start`]).
    pub fn new(config: Config) -> NodeBuilder {
        NodeBuilder {
            config,
            kafka: KafkaListener::default(),
            admin: AdminListener::default(),
        }
    }

    /// Whether to serve the Kafka protocol (default: [`KafkaListener::Enabled`]).
    pub fn kafka_listener(mut self, listener: KafkaListener) -> NodeBuilder {
        self.kafka = listener;
        self
    }

    /// Whether to serve the admin HTTP endpoint (default: [`AdminListener::FromConfig`]).
    pub fn admin_listener(mut self, listener: AdminListener) -> NodeBuilder {
        self.admin = listener;
        self
    }

    /// Starts the node and returns once it serves: storage recovered, the actor tree and the
    /// controller running, the replicas it already knows started (bounded by
    /// `replicas_start_wait_ms`), and the listeners accepting. Must run inside a
    /// multi-threaded tokio runtime.
    pub async fn start(self) -> Result<NodeHandle> {
        let cfg = self.config;
        cfg.validate().map_err(config_err)?;
        let seeds = cfg.cluster.seed_map().map_err(config_err)?;
        let node_id = u64::try_from(cfg.node_id)
            .map_err(|_| NodeError::Config("node_id must be >= 0".into()))?;
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| NodeError::Start {
            step: format!(
                "could not create the data directory {}; pick another with --data-dir",
                cfg.data_dir.display()
            ),
            source: e.into(),
        })?;
        // Every node of a cluster must report the same cluster id (clients refuse to mix
        // clusters): derive it from the seed ids, which every node is given identically.
        let cluster_id = if seeds.is_empty() {
            local_cluster_id(&cfg.data_dir)?
        } else {
            let ids: Vec<String> = seeds.keys().map(|id| id.to_string()).collect();
            let name = format!("rivulet-cluster:{}", ids.join(","));
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes())
                .simple()
                .to_string()
        };

        // 1. Storage.
        let dir = cfg.data_dir.clone();
        let store_cfg = StoreConfig {
            cache_bytes: cfg.storage.cache_bytes,
            write_buffer_bytes_max: cfg.storage.write_buffer_bytes_max,
            journal_bytes_max: cfg.storage.journal_bytes_max,
            free_bytes_min: cfg.storage.free_bytes_min,
            cleaner: rivulet_storage::CleanerConfig {
                threads: cfg.storage.cleaner_threads,
                io_bytes_per_sec_max: cfg.storage.cleaner_io_bytes_per_sec_max,
                key_map_bytes_max: usize::try_from(cfg.storage.cleaner_key_map_bytes_max)
                    .unwrap_or(usize::MAX),
            },
        };
        if cfg.storage.free_bytes_min < cfg.storage.write_buffer_bytes_max {
            warn!(
                free_bytes_min = cfg.storage.free_bytes_min,
                write_buffer_bytes_max = cfg.storage.write_buffer_bytes_max,
                "storage.free_bytes_min is below storage.write_buffer_bytes_max: on a full disk, \
                 flushing memtables may fail, and writes then stop until the node is restarted"
            );
        }
        info!(data_dir = %dir.display(), "opening storage (recovering if needed)");
        let open_hint = format!(
            "could not open the store in {}; is another rivulet using it? (use --data-dir for a separate node)",
            cfg.data_dir.display()
        );
        let store = tokio::task::spawn_blocking(move || Store::open(&dir, store_cfg))
            .await
            .map_err(|e| start_err(open_hint.clone())(e.into()))?
            .map_err(|e| start_err(open_hint)(e.into()))?;

        // 2. Bind before starting replicas, so a busy port fails fast.
        let kafka_listener = match self.kafka {
            KafkaListener::Enabled => {
                let listen = cfg.listen_addr().map_err(config_err)?;
                let listener = TcpListener::bind(listen).await.map_err(|e| {
                    start_err(format!(
                        "could not listen on {listen}; is the port in use? choose another with --listen HOST:PORT"
                    ))(e.into())
                })?;
                let bound = listener
                    .local_addr()
                    .map_err(|e| start_err(format!("no local address for {listen}"))(e.into()))?;
                Some((listener, bound))
            }
            KafkaListener::Disabled => None,
        };
        let (advertised_host, advertised_port) = match &kafka_listener {
            // With `listen` on port 0 and nothing advertised, advertise the port the OS chose.
            Some((_, bound)) if cfg.advertised.is_empty() => {
                (bound.ip().to_string(), i32::from(bound.port()))
            }
            Some(_) => cfg.advertised_host_port().map_err(config_err)?,
            None => {
                let (host, _) = cfg.advertised_host_port().map_err(config_err)?;
                (host, 0)
            }
        };

        // 3. Membership.
        let registry = ReplicaRegistry::default();
        let settings = ReplicaSettings {
            retention_check_interval: Duration::from_millis(
                cfg.retention_check_interval_ms.max(100),
            ),
            replica_lag_max: Duration::from_millis(cfg.cluster.replica_lag_max_ms.max(100)),
            ..ReplicaSettings::default()
        };
        let membership = if seeds.is_empty() {
            None
        } else {
            let listen = cfg.cluster_listen_addr().map_err(config_err)?;
            let tls = cfg.cluster.tls().map_err(config_err)?;
            Some(
                Membership::start(
                    MembershipConfig {
                        node_id,
                        listen,
                        seeds: seeds.clone(),
                        cookie: cfg.cluster.cookie.clone(),
                        heartbeat_interval: Duration::from_millis(
                            cfg.cluster.heartbeat_interval_ms,
                        ),
                        session_timeout: Duration::from_millis(cfg.cluster.session_timeout_ms),
                        tls,
                    },
                    registry.clone(),
                )
                .await
                .map_err(|e| start_err("could not start cluster membership")(e.into()))?,
            )
        };

        // 4. The actor tree.
        let (supervisor, supervisor_handle) = Actor::spawn(
            Some("node-supervisor".into()),
            NodeSupervisor,
            NodeSupervisorArgs {
                replica_manager: ReplicaManagerArgs {
                    store: store.clone(),
                    registry: registry.clone(),
                    settings,
                    node_id,
                    network: membership.as_ref().map(|m| m.replica_network()),
                },
            },
        )
        .await
        .map_err(|e| {
            start_err(
                "could not start the node supervisor (is another node running in this process?)",
            )(e.to_string().into())
        })?;
        let manager = ractor::call!(supervisor, NodeSupervisorMsg::GetReplicaManager)
            .map_err(|e| start_err("node supervisor did not answer")(e.to_string().into()))?;

        // 5. The metadata controller.
        let self_record = NodeRecord {
            id: node_id,
            kafka_host: advertised_host.clone(),
            kafka_port: u16::try_from(advertised_port).unwrap_or(0),
            cluster_addr: seeds
                .get(&node_id)
                .cloned()
                .unwrap_or_else(|| cfg.cluster.listen.clone()),
            controller_eligible: seeds.contains_key(&node_id),
            fenced: false,
        };
        let raft_cfg = if seeds.is_empty() {
            MetaRaftConfig::single_node(self_record)
        } else {
            let mut c = MetaRaftConfig::new(self_record, seeds.clone());
            c.heartbeat_interval = Duration::from_millis(cfg.cluster.heartbeat_interval_ms);
            c.session_timeout = Duration::from_millis(cfg.cluster.session_timeout_ms);
            c
        };
        info!(
            node_id,
            seeds = seeds.len(),
            "starting the metadata controller"
        );
        let raft = match &membership {
            Some(m) => {
                let raft = MetaRaft::start(raft_cfg, &store, Arc::new(m.rpc_transport()))
                    .await
                    .map_err(|e| start_err("could not start the metadata controller")(e.into()))?;
                m.set_rpc_handler(Arc::new(RaftRpcHandler(raft.clone())));
                raft
            }
            None => MetaRaft::start(raft_cfg, &store, Arc::new(NoPeers))
                .await
                .map_err(|e| start_err("could not start the metadata controller")(e.into()))?,
        };

        // 6. The controller facade.
        let controller = Controller::start(
            ControllerConfig {
                node_id: cfg.node_id,
                default_partitions: cfg.num_partitions,
                default_replication_factor: cfg.default_replication_factor,
                auto_create_topics: cfg.auto_create_topics,
                topic_defaults: cfg.log.clone(),
            },
            raft.clone(),
            manager,
            registry.clone(),
            membership.clone(),
        )
        .await
        .map_err(|e| start_err("could not start the controller")(e.into()))?;

        // 7. Group coordinators.
        let groups = Groups::start(
            cfg.groups.to_group_config(),
            registry.clone(),
            Arc::new(ControllerCatalog(controller.clone())),
            Some(supervisor.get_cell()),
        )
        .await
        .map_err(|e| start_err("could not start the group coordinators")(e.into()))?;
        // Native clients on other nodes forward reads and appends here (cluster::forward).
        let (forward, _) = Actor::spawn(
            None,
            rivulet_cluster::forward::ForwardService,
            rivulet_cluster::forward::ForwardServiceArgs {
                node_id,
                controller: controller.clone(),
                groups: groups.clone(),
            },
        )
        .await
        .map_err(|e| start_err("could not start the forward service")(e.into()))?;

        // 7b. Transaction coordinators (only with `[transactions] enabled`).
        let txns = crate::server::handlers::txn::start(
            &cfg.transactions,
            &controller,
            &groups,
            registry.clone(),
            supervisor.get_cell(),
        )
        .await
        .map_err(|e| start_err("could not start the transaction coordinators")(e.into()))?;

        // 8. The admin endpoint (crate::admin_http), bound before the replica wait so /ready
        // can say what the node waits for; `serving` turns true once the Kafka listener accepts.
        let metrics = crate::metrics::Metrics::new();
        let (serving, serving_rx) = watch::channel(false);
        let admin_addr = match self.admin {
            AdminListener::FromConfig => cfg.admin_listen_addr().map_err(config_err)?,
            AdminListener::Disabled => None,
        };
        let admin = match admin_addr {
            None => None,
            Some(addr) => {
                let listener = crate::admin_http::bind(addr)
                    .await
                    .map_err(|e| start_err("could not start the admin endpoint")(e.into()))?;
                let bound = listener.local_addr().map_err(|e| {
                    start_err(format!("no local address for admin endpoint {addr}"))(e.into())
                })?;
                let ctx = crate::admin_http::AdminContext {
                    controller: controller.clone(),
                    groups: groups.clone(),
                    txns: txns.clone(),
                    store: store.clone(),
                    metrics: metrics.clone(),
                    cluster_id: cluster_id.clone(),
                    advertised_host: advertised_host.clone(),
                    advertised_port,
                    serving: serving_rx,
                };
                let (shutdown_tx, shutdown_rx) = watch::channel(false);
                let task = tokio::spawn(async move {
                    if let Err(e) = crate::admin_http::serve(listener, ctx, shutdown_rx).await {
                        error!(error = %e, "the admin endpoint stopped");
                    }
                });
                Some(AdminServer {
                    addr: bound,
                    shutdown_tx,
                    task,
                })
            }
        };

        // 9. Start the replicas of what this node already knows before clients come in. After
        // the wait, Metadata names this node leader only of partitions whose replica already
        // serves (the rest answer LEADER_NOT_AVAILABLE until they do).
        let start_wait = Duration::from_millis(cfg.replicas_start_wait_ms);
        let waited = Instant::now();
        // A single node elects itself within milliseconds: wait for that too, so no client sees
        // a Metadata without a controller (kafka-go's CreateTopics fails on one). A cluster node
        // does not wait: its quorum may need nodes that start after it.
        if seeds.is_empty() && !controller.wait_controller_known(start_wait).await {
            warn!(
                "no controller leader after {} ms; serving anyway",
                cfg.replicas_start_wait_ms
            );
        }
        if controller.wait_replicas_started(start_wait).await {
            info!(
                replicas = controller.local_replicas(),
                elapsed_ms = waited.elapsed().as_millis() as u64,
                "local replicas started"
            );
        } else {
            warn!(
                replicas = controller.local_replicas(),
                "local replicas are still starting after {} ms; serving those that are ready \
                 (the others answer LEADER_NOT_AVAILABLE)",
                cfg.replicas_start_wait_ms
            );
        }

        // 10. The Kafka listener.
        let kafka = kafka_listener.map(|(listener, bound)| {
            let inflight_kib = u32::try_from(cfg.produce_inflight_bytes_max / 1024)
                .unwrap_or(u32::MAX)
                .max(1);
            let state = Arc::new(BrokerState {
                controller: controller.clone(),
                advertised_host: advertised_host.clone(),
                advertised_port,
                cluster_id: cluster_id.clone(),
                request_bytes_max: cfg.request_bytes_max,
                produce_inflight: Arc::new(Semaphore::new(inflight_kib as usize)),
                produce_inflight_kib_max: inflight_kib,
                fetch_wait_max: Duration::from_millis(cfg.fetch_wait_max_ms),
                groups: groups.clone(),
                txns: txns.clone(),
                data_dir: cfg.data_dir.clone(),
                limits: server::limits::ServerLimits {
                    budget: server::limits::MemoryBudget::new(cfg.inflight_bytes_max),
                    idle_timeout: Duration::from_millis(cfg.connections_max_idle_ms),
                    read_timeout: Duration::from_millis(cfg.request_read_timeout_ms),
                    response_write_timeout: Duration::from_millis(cfg.response_write_timeout_ms),
                },
                metrics,
                static_keys: cfg.static_keys(),
            });
            let (shutdown_tx, shutdown_rx) = watch::channel(false);
            let task = tokio::spawn(server::serve(
                listener,
                state,
                server::limits::ConnectionLimits::new(
                    cfg.connections_max,
                    cfg.connections_per_ip_max,
                ),
                shutdown_rx,
            ));
            info!(
                node_id = cfg.node_id,
                listen = %bound,
                advertised = %format!("{advertised_host}:{advertised_port}"),
                data_dir = %cfg.data_dir.display(),
                "rivulet is serving the Kafka protocol"
            );
            KafkaServer {
                addr: bound,
                shutdown_tx,
                task,
            }
        });
        let _ = serving.send(kafka.is_some());
        if kafka.is_none() {
            info!(
                node_id = cfg.node_id,
                data_dir = %cfg.data_dir.display(),
                "rivulet node started without a Kafka listener"
            );
        }

        Ok(NodeHandle {
            node_id,
            cluster_id,
            store,
            registry,
            controller,
            groups,
            txns,
            raft,
            membership,
            forward,
            supervisor,
            supervisor_handle: Some(supervisor_handle),
            failed: false,
            kafka,
            admin,
            serving,
        })
    }
}

/// The cluster id of a single-node cluster, kept in `cluster.id` in the data directory.
fn local_cluster_id(dir: &Path) -> Result<String> {
    let path = dir.join("cluster.id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim().to_string();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    std::fs::write(&path, &id)
        .map_err(|e| start_err(format!("could not write {}", path.display()))(e.into()))?;
    Ok(id)
}

/// The running Kafka server of a node.
#[derive(Debug)]
struct KafkaServer {
    addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The running admin endpoint of a node.
#[derive(Debug)]
struct AdminServer {
    addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A running node. Drop it only after [`NodeHandle::shutdown`]: dropping it leaves the
/// actors and tasks running until the tokio runtime stops, without the final sync.
#[derive(Debug)]
pub struct NodeHandle {
    node_id: u64,
    cluster_id: String,
    store: Store,
    registry: ReplicaRegistry,
    controller: Controller,
    groups: Groups,
    txns: Option<rivulet_actors::txn::Txns>,
    raft: MetaRaft,
    membership: Option<Membership>,
    forward: ActorRef<rivulet_cluster::forward::ForwardServiceMsg>,
    supervisor: ActorRef<NodeSupervisorMsg>,
    /// `None` once [`NodeHandle::failed`] saw the actor tree stop.
    supervisor_handle: Option<JoinHandle<()>>,
    failed: bool,
    kafka: Option<KafkaServer>,
    admin: Option<AdminServer>,
    /// What `/ready` reports as "the Kafka listener accepts".
    serving: watch::Sender<bool>,
}

impl NodeHandle {
    /// This node's id in the cluster.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The cluster id Kafka clients are told.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The address the Kafka listener is bound to (with the real port when `listen` asked for
    /// port 0), or `None` without a Kafka listener.
    pub fn kafka_addr(&self) -> Option<SocketAddr> {
        self.kafka.as_ref().map(|k| k.addr)
    }

    /// The address the admin HTTP endpoint is bound to, or `None` without one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr)
    }

    /// The local replicas: topic-partition → replica handle (actor, log reader, high
    /// watermark and status watches). A `ReplicaHandle` keeps its log, and so the store, open:
    /// drop the ones you hold before [`NodeHandle::shutdown`] if the same process will open
    /// the data directory again.
    pub fn replicas(&self) -> &ReplicaRegistry {
        &self.registry
    }

    /// The controller facade: topics, partitions, leaders and brokers from the local metadata
    /// image, and topic changes proposed to the Raft controller.
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// This node's group coordinators (routing by group id).
    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    /// The store every partition of this node writes to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Resolves when the actor tree stops on its own (a failed replica manager or group
    /// manager). The node then serves nothing useful: call [`NodeHandle::shutdown`], which
    /// returns [`NodeError::ActorTreeFailed`]. Cancel-safe (for `tokio::select!`); pending
    /// forever once it has resolved.
    pub async fn failed(&mut self) {
        match self.supervisor_handle.as_mut() {
            Some(handle) => {
                let _ = handle.await;
                self.supervisor_handle = None;
                self.failed = true;
                error!("the actor tree stopped unexpectedly");
            }
            None => std::future::pending().await,
        }
    }

    /// Stops the node gracefully, as `rivulet serve` does on SIGTERM (order in the module
    /// docs): client connections finish their request in progress (at most 5 s) and close,
    /// and once it returns, the data directory can be opened again by a new node in this
    /// process (unless the caller still holds replica handles). Returns an error if the actor
    /// tree had failed or the final sync failed.
    pub async fn shutdown(mut self) -> Result<()> {
        info!(node_id = self.node_id, "shutting down");
        let _ = self.serving.send(false);
        if let Some(kafka) = self.kafka.take() {
            let _ = kafka.shutdown_tx.send(true);
            let _ = kafka.task.await;
        }
        // Coordinators first: their last writes go to replicas that are still running.
        if let Some(t) = &self.txns {
            t.shutdown().await;
        }
        self.groups.shutdown().await;
        self.forward.stop(Some("shutdown".into()));
        if let Some(handle) = self.supervisor_handle.take() {
            if handle.is_finished() {
                // It stopped on its own and nobody awaited `failed()`.
                error!("the actor tree had stopped unexpectedly");
                self.failed = true;
            }
            self.supervisor.stop(Some("shutdown".into()));
            let _ = handle.await;
        }
        self.raft.shutdown().await;
        if let Some(m) = &self.membership {
            m.shutdown().await;
        }
        if let Some(admin) = self.admin.take() {
            let _ = admin.shutdown_tx.send(true);
            let _ = admin.task.await;
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.sync())
            .await
            .map_err(|e| NodeError::FinalSync(e.into()))?
            .map_err(|e| NodeError::FinalSync(e.into()))?;
        info!("shutdown complete");
        if self.failed {
            return Err(NodeError::ActorTreeFailed);
        }
        Ok(())
    }
}
