//! A Rust program that embeds a Rivulet node and joins a cluster of `rivulet serve` processes
//! as a full member: it gets partition replicas, can lead them, coordinates consumer groups and
//! serves Kafka clients on its own listener. Ctrl-C (or SIGTERM) shuts it down gracefully: its
//! leaderships move to in-sync replicas on the other nodes.
//!
//! ```text
//! scripts/local-cluster.sh start      # nodes 1-3; cluster ports 19192-19194 (see the script)
//! cargo run -p rivulet-examples --bin embedded-node -- --node-id 4 \
//!     --data-dir ./node4 --listen 127.0.0.1:19095 --cluster-listen 127.0.0.1:19195 \
//!     --seed 1@127.0.0.1:19192 --seed 2@127.0.0.1:19193 --seed 3@127.0.0.1:19194
//! kcat -b 127.0.0.1:19095 -L          # four brokers
//! ```
//!
//! `--seed` lists the cluster's initial members (the same list the `rivulet serve` nodes have);
//! a node that is not among them joins through them.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use rivulet::{AdminSettings, ClusterSettings, Config, KafkaListener, Node};

/// The embedded node decodes Kafka requests from clients it does not control; the guarded
/// allocator keeps an absurd length on the wire from aborting the whole program.
#[global_allocator]
static GLOBAL: rivulet::GuardedAlloc = rivulet::GuardedAlloc;

/// Command line of the embedded node.
#[derive(Debug, Parser)]
#[command(about = "Embed a Rivulet node that joins a cluster")]
struct Args {
    /// Stable id of this node (not used by another node of the cluster).
    #[arg(long)]
    node_id: i32,
    /// Where the node keeps its data.
    #[arg(long)]
    data_dir: PathBuf,
    /// This node's node-to-node address, which the other nodes dial.
    #[arg(long, value_name = "HOST:PORT")]
    cluster_listen: String,
    /// An initial member `ID@HOST:PORT` of the cluster; repeat for each.
    #[arg(long = "seed", value_name = "ID@HOST:PORT", required = true)]
    seeds: Vec<String>,
    /// Shared secret of the cluster's node-to-node links.
    #[arg(long, default_value = "rivulet")]
    cluster_cookie: String,
    /// Address the Kafka listener binds.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9092")]
    listen: String,
    /// Address Kafka clients are told to connect to (defaults to --listen).
    #[arg(long, value_name = "HOST:PORT")]
    advertised: Option<String>,
    /// Address of the admin HTTP endpoint (/health, /ready, /metrics); "off" disables it.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9644")]
    admin_listen: String,
    /// Serve no Kafka clients (the node still hosts and leads replicas).
    #[arg(long)]
    no_kafka: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The library emits tracing events; the program decides where they go.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "info,fjall=warn,lsm_tree=warn,openraft=warn,ractor_cluster=warn".into()
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = Config {
        node_id: args.node_id,
        data_dir: args.data_dir,
        listen: args.listen,
        advertised: args.advertised.unwrap_or_default(),
        cluster: ClusterSettings {
            listen: args.cluster_listen,
            seeds: args.seeds,
            cookie: args.cluster_cookie,
            ..ClusterSettings::default()
        },
        admin: AdminSettings {
            listen: args.admin_listen,
        },
        ..Config::default()
    };
    let kafka = if args.no_kafka {
        KafkaListener::Disabled
    } else {
        KafkaListener::Enabled
    };
    let mut node = Node::builder(config)
        .kafka_listener(kafka)
        .start()
        .await
        .context("could not start the embedded node")?;
    match node.kafka_addr() {
        Some(addr) => println!(
            "embedded node {} joined cluster {}; Kafka on {addr}",
            node.node_id(),
            node.cluster_id()
        ),
        None => println!(
            "embedded node {} joined cluster {}; no Kafka listener",
            node.node_id(),
            node.cluster_id()
        ),
    }

    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("could not listen for Ctrl-C")?,
        _ = sigterm() => {}
        _ = node.failed() => {}
    }
    let replicas = node.replicas().partitions();
    let leading = replicas
        .iter()
        .filter_map(|tp| node.replicas().get(tp))
        .filter(|h| h.is_leader())
        .count();
    println!(
        "shutting down: {} local replicas, leading {leading}",
        replicas.len()
    );
    node.shutdown().await.context("shutdown")?;
    println!("embedded node stopped");
    Ok(())
}

/// Resolves on SIGTERM (never elsewhere), so a service manager's stop is graceful too.
async fn sigterm() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        term.recv().await;
        return;
    }
    std::future::pending::<()>().await
}
