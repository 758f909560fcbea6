//! `rivulet serve`: start a node, serve until SIGTERM/Ctrl-C, then shut down cleanly.
//!
//! Start-up order: configuration ─▶ storage (recovery) ─▶ actor tree ─▶ controller (starts a
//! replica per partition) ─▶ group coordinators ─▶ Kafka listener. Shutdown runs it backwards:
//! stop accepting, close connections, stop the group coordinators, stop the actors (each
//! replica syncs its log), sync the store.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ractor::Actor;
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
use tracing::{error, info, warn};

use crate::config::{Config, ServeArgs};
use crate::server::handlers::groups::ControllerCatalog;
use crate::server::{self, BrokerState};

/// Entry point of `rivulet serve`.
pub fn main(args: ServeArgs) -> ExitCode {
    init_tracing();
    crate::alloc::tune_system_allocator();
    let cfg = match Config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,fjall=warn,lsm_tree=warn,openraft=warn,ractor_cluster=warn",
        )
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn cluster_id(dir: &std::path::Path) -> anyhow::Result<String> {
    let path = dir.join("cluster.id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim().to_string();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    std::fs::write(&path, &id).with_context(|| format!("could not write {}", path.display()))?;
    Ok(id)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs a node until a signal arrives or the actor tree fails.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let listen = cfg.listen_addr()?;
    let (advertised_host, advertised_port) = cfg.advertised_host_port()?;
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| {
        format!(
            "could not create the data directory {}; pick another with --data-dir",
            cfg.data_dir.display()
        )
    })?;
    let seed_ids: Vec<String> = cfg
        .cluster
        .seed_map()?
        .keys()
        .map(|id| id.to_string())
        .collect();
    // Every node of a cluster must report the same cluster id (clients refuse to mix
    // clusters): derive it from the seed ids, which every node is given identically.
    let cluster_id = if seed_ids.is_empty() {
        cluster_id(&cfg.data_dir)?
    } else {
        let name = format!("rivulet-cluster:{}", seed_ids.join(","));
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes())
            .simple()
            .to_string()
    };

    let dir = cfg.data_dir.clone();
    let store_cfg = StoreConfig {
        cache_bytes: cfg.storage.cache_bytes,
        write_buffer_bytes_max: cfg.storage.write_buffer_bytes_max,
        journal_bytes_max: cfg.storage.journal_bytes_max,
        free_bytes_min: cfg.storage.free_bytes_min,
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
    let store = tokio::task::spawn_blocking(move || Store::open(&dir, store_cfg))
        .await?
        .with_context(|| {
            format!(
                "could not open the store in {}; is another rivulet using it? (use --data-dir for a separate node)",
                cfg.data_dir.display()
            )
        })?;

    // Bind before starting replicas, so a busy port fails fast.
    let listener = TcpListener::bind(listen).await.with_context(|| {
        format!("could not listen on {listen}; is the port in use? choose another with --listen HOST:PORT")
    })?;

    let registry = ReplicaRegistry::default();
    let settings = ReplicaSettings {
        retention_check_interval: Duration::from_millis(cfg.retention_check_interval_ms.max(100)),
        replica_lag_max: Duration::from_millis(cfg.cluster.replica_lag_max_ms.max(100)),
        ..ReplicaSettings::default()
    };
    let node_id = u64::try_from(cfg.node_id).context("node_id must be >= 0")?;
    let seeds = cfg.cluster.seed_map()?;
    let membership = if seeds.is_empty() {
        None
    } else {
        let listen = cfg.cluster_listen_addr()?;
        Some(
            Membership::start(
                MembershipConfig {
                    node_id,
                    listen,
                    seeds: seeds.clone(),
                    cookie: cfg.cluster.cookie.clone(),
                    heartbeat_interval: Duration::from_millis(cfg.cluster.heartbeat_interval_ms),
                    session_timeout: Duration::from_millis(cfg.cluster.session_timeout_ms),
                    tls: cfg.cluster.tls()?,
                },
                registry.clone(),
            )
            .await?,
        )
    };
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
    .context("could not start the node supervisor")?;
    let manager = ractor::call!(supervisor, NodeSupervisorMsg::GetReplicaManager)
        .map_err(|e| anyhow::anyhow!("node supervisor did not answer: {e}"))?;

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
                .context("could not start the metadata controller")?;
            m.set_rpc_handler(Arc::new(RaftRpcHandler(raft.clone())));
            raft
        }
        None => MetaRaft::start(raft_cfg, &store, Arc::new(NoPeers))
            .await
            .context("could not start the metadata controller")?,
    };

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
    .context("could not start the controller")?;

    let groups = Groups::start(
        cfg.groups.to_group_config(),
        registry,
        Arc::new(ControllerCatalog(controller.clone())),
        Some(supervisor.get_cell()),
    )
    .await
    .context("could not start the group coordinators")?;

    // Admin endpoint (crate::admin_http): up before the replicas start, so /ready can say
    // what the node waits for; `serving` turns true once the Kafka listener accepts.
    let metrics = crate::metrics::Metrics::new();
    let (serving, admin_stop, admin_task) = {
        let (serving_tx, serving_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = match cfg.admin_listen_addr()? {
            None => None,
            Some(addr) => {
                let listener = crate::admin_http::bind(addr).await?;
                let ctx = crate::admin_http::AdminContext {
                    controller: controller.clone(),
                    groups: groups.clone(),
                    store: store.clone(),
                    metrics: metrics.clone(),
                    cluster_id: cluster_id.clone(),
                    advertised_host: advertised_host.clone(),
                    advertised_port,
                    serving: serving_rx,
                };
                Some(tokio::spawn(crate::admin_http::serve(
                    listener, ctx, stop_rx,
                )))
            }
        };
        (serving_tx, stop_tx, task)
    };

    let inflight_kib = u32::try_from(cfg.produce_inflight_bytes_max / 1024)
        .unwrap_or(u32::MAX)
        .max(1);
    let state = Arc::new(BrokerState {
        controller,
        advertised_host: advertised_host.clone(),
        advertised_port,
        cluster_id,
        request_bytes_max: cfg.request_bytes_max,
        produce_inflight: Arc::new(Semaphore::new(inflight_kib as usize)),
        produce_inflight_kib_max: inflight_kib,
        fetch_wait_max: Duration::from_millis(cfg.fetch_wait_max_ms),
        groups: groups.clone(),
        data_dir: cfg.data_dir.clone(),
        limits: server::limits::ServerLimits {
            budget: server::limits::MemoryBudget::new(cfg.inflight_bytes_max),
            idle_timeout: Duration::from_millis(cfg.connections_max_idle_ms),
            read_timeout: Duration::from_millis(cfg.request_read_timeout_ms),
            response_write_timeout: Duration::from_millis(cfg.response_write_timeout_ms),
        },
        metrics,
    });
    // Start the replicas of what this node already knows before clients come in. After the
    // wait, Metadata names this node leader only of partitions whose replica already serves
    // (the rest answer LEADER_NOT_AVAILABLE until they do).
    let start_wait = Duration::from_millis(cfg.replicas_start_wait_ms);
    let waited = std::time::Instant::now();
    if state.controller.wait_replicas_started(start_wait).await {
        info!(
            replicas = state.controller.local_replicas(),
            elapsed_ms = waited.elapsed().as_millis() as u64,
            "local replicas started"
        );
    } else {
        warn!(
            replicas = state.controller.local_replicas(),
            "local replicas are still starting after {} ms; serving those that are ready \
             (the others answer LEADER_NOT_AVAILABLE)",
            cfg.replicas_start_wait_ms
        );
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let listener_task = tokio::spawn(server::serve(
        listener,
        state,
        server::limits::ConnectionLimits::new(cfg.connections_max, cfg.connections_per_ip_max),
        shutdown_rx,
    ));
    let _ = serving.send(true);
    info!(
        node_id = cfg.node_id,
        %listen,
        advertised = %format!("{advertised_host}:{advertised_port}"),
        data_dir = %cfg.data_dir.display(),
        "rivulet is serving the Kafka protocol"
    );

    let mut supervisor_handle = supervisor_handle;
    let failed = tokio::select! {
        _ = wait_for_signal() => { info!("signal received; shutting down"); false }
        _ = &mut supervisor_handle => { error!("the actor tree stopped unexpectedly; shutting down"); true }
    };
    let _ = shutdown_tx.send(true);
    let _ = serving.send(false);
    let _ = listener_task.await;
    // Coordinators first: their last writes go to replicas that are still running.
    groups.shutdown().await;
    if !failed {
        supervisor.stop(Some("shutdown".into()));
        let _ = supervisor_handle.await;
    }
    raft.shutdown().await;
    if let Some(m) = &membership {
        m.shutdown().await;
    }
    let _ = admin_stop.send(true);
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.sync())
        .await?
        .context("final sync of the store failed")?;
    info!("shutdown complete");
    if failed {
        anyhow::bail!("the node stopped because its actor tree failed; see the errors above");
    }
    Ok(())
}
