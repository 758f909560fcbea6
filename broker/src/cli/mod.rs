//! The command line. `serve` starts a node; every other subcommand is a Kafka client that talks
//! to a broker through librdkafka exactly as any other client would.
//!
//! - [`topic`]: `rivulet topic create|list|describe|delete`
//! - [`produce`]: `rivulet produce TOPIC` (lines of stdin or a file become records)
//! - [`consume`]: `rivulet consume TOPIC` (records become lines of stdout)
//! - [`bench`]: `rivulet bench produce|consume`, the load generator
//! - [`cluster`]: `rivulet cluster status` (nodes, controller, under-replicated and offline
//!   partitions; speaks the Kafka protocol directly rather than through librdkafka)
//! - [`group`]: `rivulet group list|describe|delete|reset-offsets` (consumer groups: members,
//!   committed offsets, lag)
//! - [`txn`]: `rivulet txn list|describe` (transactions held by the coordinators; speaks the
//!   Kafka protocol directly)
//! - [`config`]: `rivulet config describe|set|delete` (topic, broker, cluster-wide default and
//!   group configs, as `kafka-configs` shows and changes them)
//!
//! Client subcommands take `--bootstrap HOST:PORT` (default `127.0.0.1:9092`, or
//! `RIVULET_BOOTSTRAP`), log to stderr through `tracing` (`RUST_LOG`, default `warn`), print
//! `error: ...` with a hint and exit non-zero on failure.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod bench;
pub mod cluster;
pub mod common;
pub mod config;
pub mod consume;
pub mod group;
pub mod produce;
pub mod topic;
pub mod txn;

/// Rivulet: a distributed, replicated log that speaks the Kafka protocol.
#[derive(Debug, Parser)]
#[command(name = "rivulet", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a Rivulet node (defaults: 127.0.0.1:9092, data in ./rivulet-data).
    Serve(crate::config::ServeArgs),
    /// Create, list, describe and delete topics.
    Topic(topic::TopicArgs),
    /// Send records to a topic, one per line of stdin or of --file.
    Produce(produce::ProduceArgs),
    /// Print a topic's records, one per line.
    Consume(consume::ConsumeArgs),
    /// Load generator: measure producer or consumer throughput and latency.
    Bench(bench::BenchArgs),
    /// Cluster health: live nodes, controller, under-replicated and offline partitions.
    Cluster(cluster::ClusterArgs),
    /// List, describe (members, committed offsets, lag), delete consumer groups and reset
    /// their offsets.
    Group(group::GroupArgs),
    /// Show and change configs: dynamic broker defaults (cluster-wide or one node), group
    /// and topic configs.
    Config(config::ConfigArgs),
    /// List and describe transactions (transactional ids, their state and partitions).
    Txn(txn::TxnArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => crate::serve::main(args),
        client_command => run_client(client_command),
    }
}

/// Runs a client subcommand: stderr logging, a small Tokio runtime, and errors printed as
/// `error: ...` with a non-zero exit code.
fn run_client(command: Command) -> ExitCode {
    init_client_logging();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Serve(_) => unreachable!("serve is dispatched in main"),
            Command::Topic(args) => topic::run(args).await,
            Command::Produce(args) => produce::run(args).await,
            Command::Consume(args) => consume::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Cluster(args) => cluster::run(args).await,
            Command::Group(args) => group::run(args).await,
            Command::Config(args) => config::run(args).await,
            Command::Txn(args) => txn::run(args).await,
        }
    });
    // Dropping the runtime would wait for the Ctrl-C watcher task; do not.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A plain stderr subscriber honoring `RUST_LOG` (default `warn`).
fn init_client_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn topic_create_flags() {
        let cli = parse(&[
            "rivulet",
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=1000",
            "--config",
            "cleanup.policy=delete",
            "--bootstrap",
            "127.0.0.1:19092",
        ]);
        let Command::Topic(args) = cli.command else {
            panic!("not topic")
        };
        assert_eq!(args.client.bootstrap, "127.0.0.1:19092");
        let topic::TopicCommand::Create(create) = args.command else {
            panic!("not create")
        };
        assert_eq!(create.name, "orders");
        assert_eq!(create.partitions, 3);
        assert_eq!(create.configs.len(), 2);
        assert!(
            Cli::try_parse_from(["rivulet", "topic", "create", "x", "--partitions", "0"]).is_err()
        );
    }

    #[test]
    fn bootstrap_before_or_after_subcommand() {
        let cli = parse(&["rivulet", "topic", "--bootstrap", "h:1", "list"]);
        let Command::Topic(args) = cli.command else {
            panic!("not topic")
        };
        assert_eq!(args.client.bootstrap, "h:1");
        let cli = parse(&[
            "rivulet",
            "bench",
            "produce",
            "--topic",
            "t",
            "--bootstrap",
            "h:2",
        ]);
        let Command::Bench(args) = cli.command else {
            panic!("not bench")
        };
        assert_eq!(args.client.bootstrap, "h:2");
    }

    #[test]
    fn cluster_status_flags() {
        let cli = parse(&[
            "rivulet",
            "cluster",
            "status",
            "--json",
            "--bootstrap",
            "h:3",
        ]);
        let Command::Cluster(args) = cli.command else {
            panic!("not cluster")
        };
        assert_eq!(args.client.bootstrap, "h:3");
        let cluster::ClusterCommand::Status { json } = args.command;
        assert!(json);
        let cli = parse(&["rivulet", "cluster", "--bootstrap", "h:4", "status"]);
        let Command::Cluster(args) = cli.command else {
            panic!("not cluster")
        };
        assert_eq!(args.client.bootstrap, "h:4");
        let cluster::ClusterCommand::Status { json } = args.command;
        assert!(!json);
    }

    #[test]
    fn group_flags() {
        let cli = parse(&["rivulet", "group", "--bootstrap", "h:5", "list"]);
        let Command::Group(args) = cli.command else {
            panic!("not group")
        };
        assert_eq!(args.client.bootstrap, "h:5");
        assert!(matches!(args.command, group::GroupCommand::List));
        let cli = parse(&[
            "rivulet",
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--shift-by",
            "-5",
            "--partition",
            "2",
        ]);
        let Command::Group(args) = cli.command else {
            panic!("not group")
        };
        let group::GroupCommand::ResetOffsets(r) = args.command else {
            panic!("not reset-offsets")
        };
        assert_eq!((r.group.as_str(), r.topic.as_str()), ("g", "t"));
        assert_eq!(r.shift_by, Some(-5));
        assert_eq!(r.partition, Some(2));
        assert!(!r.execute);
        // Exactly one target is required.
        for bad in [
            &["rivulet", "group", "reset-offsets", "g", "--topic", "t"][..],
            &[
                "rivulet",
                "group",
                "reset-offsets",
                "g",
                "--topic",
                "t",
                "--to-earliest",
                "--to-latest",
            ][..],
            &["rivulet", "group", "reset-offsets", "g", "--to-latest"][..],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let cli = parse(&[
            "rivulet",
            "group",
            "reset-offsets",
            "g",
            "-t",
            "t",
            "--to-offset",
            "42",
            "--execute",
        ]);
        let Command::Group(args) = cli.command else {
            panic!("not group")
        };
        let group::GroupCommand::ResetOffsets(r) = args.command else {
            panic!("not reset-offsets")
        };
        assert_eq!(r.to_offset, Some(42));
        assert!(r.execute);
    }

    #[test]
    fn consume_flags() {
        let cli = parse(&[
            "rivulet",
            "consume",
            "t",
            "--from",
            "42",
            "--partition",
            "1",
            "--follow",
            "--print-key",
        ]);
        let Command::Consume(args) = cli.command else {
            panic!("not consume")
        };
        assert_eq!(args.from, consume::StartFrom::Offset(42));
        assert_eq!(args.partition, Some(1));
        assert!(args.follow && args.print_key && !args.print_offset);
        assert!(Cli::try_parse_from(["rivulet", "consume", "t", "--from", "yesterday"]).is_err());
    }

    #[test]
    fn produce_flags() {
        let cli = parse(&[
            "rivulet",
            "produce",
            "t",
            "--acks",
            "0",
            "--compression",
            "lz4",
            "--key-separator",
            ":",
        ]);
        let Command::Produce(args) = cli.command else {
            panic!("not produce")
        };
        assert_eq!(args.acks, common::Acks::None);
        assert_eq!(args.compression, common::Compression::Lz4);
        assert_eq!(args.key_separator.as_deref(), Some(":"));
        let cli = parse(&["rivulet", "produce", "t"]);
        let Command::Produce(args) = cli.command else {
            panic!("not produce")
        };
        assert_eq!(args.acks, common::Acks::All);
    }

    #[test]
    fn bench_defaults() {
        let cli = parse(&["rivulet", "bench", "produce", "--topic", "t"]);
        let Command::Bench(args) = cli.command else {
            panic!("not bench")
        };
        let bench::BenchCommand::Produce(p) = args.command else {
            panic!("not produce")
        };
        assert_eq!(p.records, 1_000_000);
        assert_eq!(p.record_bytes, 1024);
        assert_eq!(p.rate, 0);
        assert_eq!(p.acks, common::Acks::All);
        assert_eq!(p.idempotence, None);
        let cli = parse(&[
            "rivulet",
            "bench",
            "produce",
            "--topic",
            "t",
            "--rate",
            "5_000",
            "--acks",
            "1",
            "--idempotence",
            "false",
        ]);
        let Command::Bench(args) = cli.command else {
            panic!("not bench")
        };
        let bench::BenchCommand::Produce(p) = args.command else {
            panic!("not produce")
        };
        assert_eq!(p.rate, 5_000);
        assert_eq!(p.acks, common::Acks::Leader);
        assert_eq!(p.idempotence, Some(false));
    }
}
