//! The Java reference client (`org.apache.kafka:kafka-clients` 4.3.1, the protocol's reference
//! implementation) against one `rivulet serve` node.
//!
//! The scenarios live in `tests/clients/java` (one Java program, a subcommand each; it checks
//! what the client sees and says what differed). Each test here starts its own node and runs
//! one scenario, so a failure names the feature. The program is built once per test process
//! (harness/java.rs). docs/compat.md cites these tests.

mod harness;

use std::time::Duration;

use harness::cluster::{Cluster, ClusterOptions};
use harness::java::{assert_scenario_ok, scenario, scenario_at, scenario_named};
use harness::{unique_name, wait_until, Node, NodeOptions};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// One scenario's run: a JVM start plus a few seconds of client work; generous for a loaded
/// 2-core machine. The program bounds every call it makes by 30 s itself.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

/// Fast group timings, as in tests/groups.rs: the default 3 s initial rebalance delay would
/// dominate the group scenarios.
const GROUPS_TOML: &str = "[groups]\n\
    offsets_partitions = 4\n\
    initial_rebalance_delay_ms = 300\n\
    min_session_timeout_ms = 1000\n\
    consumer_session_timeout_ms = 6000\n\
    consumer_heartbeat_interval_ms = 300\n";

fn run_scenario(name: &str) {
    // Build (or find) the program before the node starts, so the node's clock-driven work does
    // not run while Maven does.
    harness::java::program();
    let mut node = Node::start_with(NodeOptions {
        config_toml: Some(GROUPS_TOML.to_string()),
        ..NodeOptions::default()
    });
    let out = scenario(&node, name, SCENARIO_TIMEOUT);
    node.assert_alive(&format!("after the Java scenario {name}"));
    assert_scenario_ok(name, &out);
    eprintln!("{}", out.stdout);
}

/// Every codec (none, gzip, snappy, lz4, zstd) with the idempotent acks=all producer, and
/// acks=1 and acks=0; keys (murmur2 partitioning), headers, CreateTime timestamps; all read back.
#[test]
fn java_producer_codecs_acks_headers_timestamps() {
    run_scenario("producer");
}

/// group.protocol=classic: two members, a rebalance seen by the listener, commits, a leave.
#[test]
fn java_classic_group_rebalances_and_commits() {
    run_scenario("group-classic");
}

/// group.protocol=classic with static members and the cooperative-sticky assignor: only the
/// moving partitions are revoked; a closed static member keeps its partitions until its session
/// times out; an explicit leave (KIP-1092) empties the group.
#[test]
fn java_classic_static_members_cooperative_sticky() {
    run_scenario("group-classic-static-coop");
}

/// group.protocol=consumer (KIP-848, ConsumerGroupHeartbeat): the same checks.
#[test]
fn java_consumer_protocol_group_rebalances_and_commits() {
    run_scenario("group-consumer");
}

/// assign() + commit without a subscription, seek, seekToBeginning, offsetsForTimes (classic).
#[test]
fn java_assign_commit_seek_offsets_for_times_classic() {
    run_scenario("assign-classic");
}

/// The same with group.protocol=consumer.
#[test]
fn java_assign_commit_seek_offsets_for_times_consumer_protocol() {
    run_scenario("assign-consumer");
}

/// subscribe(Pattern) with the classic protocol, including a topic created later.
#[test]
fn java_pattern_subscribe_classic() {
    run_scenario("pattern-classic");
}

/// subscribe(Pattern) with group.protocol=consumer.
#[test]
fn java_pattern_subscribe_consumer_protocol() {
    run_scenario("pattern-consumer");
}

/// AdminClient: topics, configs, partitions, records, offsets, groups, cluster and log dirs.
#[test]
fn java_admin_client() {
    run_scenario("admin");
}

/// A three-node cluster, topics with three replicas: the producer scenario (leaders spread over
/// the nodes, acks=all waits for the followers) and both group protocols (the group coordinator
/// is on whichever node owns the group's offsets partition).
#[test]
fn java_producer_and_groups_on_a_three_node_cluster() {
    harness::java::program();
    let mut cluster = Cluster::start(
        3,
        ClusterOptions {
            config_toml: Some(GROUPS_TOML.to_string()),
            ..ClusterOptions::default()
        },
    );
    for name in ["producer", "group-classic", "group-consumer"] {
        let out = scenario_at(&cluster.bootstrap(), name, 3, SCENARIO_TIMEOUT);
        assert_scenario_ok(name, &out);
        eprintln!("{}", out.stdout);
    }
    assert_eq!(cluster.live_ids().len(), 3, "every node still running");
}

/// The high watermark of a partition, `None` while it cannot be read (no topic or leader yet).
fn high_watermark(bootstrap: &str, topic: &str, partition: i32) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .ok()?;
    consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(2))
        .ok()
        .map(|(_, high)| high)
}

/// The Java idempotent acks=all producer keeps writing while the leader of one of its partitions
/// is SIGKILLed: every send is acknowledged (the client finds the new leader and retries) and
/// every acknowledged record is read back once, at its offset (docs/semantics.md).
#[test]
fn java_idempotent_producer_through_a_leader_kill() {
    harness::java::program();
    let mut cluster = Cluster::start(
        3,
        ClusterOptions {
            config_toml: Some(GROUPS_TOML.to_string()),
            ..ClusterOptions::default()
        },
    );
    let bootstrap = cluster.bootstrap();
    let prefix = unique_name("java-failover");
    let topic = format!("{prefix}-failover");
    let run = {
        let (bootstrap, prefix) = (bootstrap.clone(), prefix.clone());
        std::thread::spawn(move || {
            scenario_named(
                &bootstrap,
                "produce-through-failover",
                &prefix,
                3,
                &[],
                SCENARIO_TIMEOUT,
            )
        })
    };
    // Kill the leader once the producer is well under way (the scenario writes for 8 s).
    wait_until(
        Duration::from_secs(60),
        "the Java producer has written 300 records to partition 0",
        || high_watermark(&bootstrap, &topic, 0).is_some_and(|hw| hw >= 300),
    );
    let leader = cluster.leader_of(&topic, 0);
    cluster.kill9(leader);
    let new_leader = cluster.wait_for_leader(&topic, 0, |l| l != leader);
    eprintln!("killed node {leader}, the leader of {topic}/0; node {new_leader} took over");
    let out = run.join().expect("the scenario thread");
    assert_scenario_ok("produce-through-failover", &out);
    eprintln!("{}", out.stdout);
}

/// A KIP-848 Java consumer reads and commits while a producer writes; the group's coordinator
/// node is SIGKILLed once the consumer has committed. The consumer finds the new coordinator,
/// reads every acknowledged record and commits the end of every partition.
#[test]
fn java_consumer_group_through_a_coordinator_kill() {
    harness::java::program();
    let mut cluster = Cluster::start(
        3,
        ClusterOptions {
            config_toml: Some(GROUPS_TOML.to_string()),
            ..ClusterOptions::default()
        },
    );
    let bootstrap = cluster.bootstrap();
    let prefix = unique_name("java-group-failover");
    // The scenario writes the coordinator's node id here after its first commit.
    let signal = cluster.node(1).scratch_dir().join("java-coordinator");
    let run = {
        let (bootstrap, prefix) = (bootstrap.clone(), prefix.clone());
        let jvm_args = vec![format!("-Drivulet.signal={}", signal.display())];
        std::thread::spawn(move || {
            scenario_named(
                &bootstrap,
                "group-through-coordinator-kill",
                &prefix,
                3,
                &jvm_args,
                SCENARIO_TIMEOUT,
            )
        })
    };
    let mut coordinator = None;
    let waited = harness::try_wait_until(
        Duration::from_secs(90),
        "the Java consumer has committed and named its coordinator",
        || {
            coordinator = std::fs::read_to_string(&signal)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            coordinator.is_some() || run.is_finished()
        },
    );
    let Some(coordinator) = coordinator else {
        let out = run.join().expect("the scenario thread");
        panic!("{waited:?}; the scenario ended without naming its coordinator:\n{out}");
    };
    cluster.kill9(coordinator);
    eprintln!("killed node {coordinator}, the group's coordinator");
    let out = run.join().expect("the scenario thread");
    assert_scenario_ok("group-through-coordinator-kill", &out);
    eprintln!("{}", out.stdout);
}
