//! The Go clients people pick today against one `rivulet serve` node: franz-go (with kadm and
//! KIP-848 groups), IBM/sarama (Version = its newest, idempotent producer) and
//! segmentio/kafka-go. The programs in tests/clients/go do the checking; each scenario is one
//! test so a failure names the client and the feature.
//!
//! Every produce-consume scenario sends keyed records with headers and explicit timestamps with
//! each codec (none, gzip, snappy, lz4, zstd) and reads them back at their acknowledged offsets
//! (docs/semantics.md: an acknowledged record is read back at its offset, unchanged). Every
//! group scenario has a second member join, the partitions split, commits survive the move and
//! new records are read once.

mod harness;

use harness::cluster::{Cluster, ClusterOptions};
use harness::go::go_client;
use harness::{unique_name, CmdOutput, Node, NodeOptions};

/// A new group's first rebalance starts at once (Kafka's test setups set
/// `group.initial.rebalance.delay.ms=0` too): the scenarios start their members one by one and
/// wait for each assignment, so the 3 s default would only add waiting.
const CONFIG: &str = "[groups]\ninitial_rebalance_delay_ms = 0\n";

fn assert_ok(out: &CmdOutput, client: &str, scenario: &str) {
    assert!(
        out.success() && out.stdout.contains(&format!("OK {client} {scenario}")),
        "{client} {scenario} failed:\n{out}"
    );
}

fn scenario(client: &str, scenario: &str) {
    let mut node = Node::start_with(NodeOptions {
        config_toml: Some(CONFIG.to_string()),
        ..NodeOptions::default()
    });
    let prefix = unique_name(&format!("go-{client}-{scenario}"));
    let out = go_client(&node.bootstrap(), client, scenario, &prefix);
    node.assert_alive(&format!("after {client} {scenario}"));
    assert_ok(&out, client, scenario);
}

/// Each client against three nodes: topics with replication factor 3 (acks=all waits for the
/// followers; sarama's idempotent producer talks to three leaders), records read back from
/// every leader, and groups (franz-go: both protocols) with their coordinator on whichever node
/// the group id hashes to. One cluster for all three keeps the start-up cost to one.
#[test]
fn go_clients_on_a_three_node_cluster() {
    let mut cluster = Cluster::start(
        3,
        ClusterOptions {
            config_toml: Some(CONFIG.to_string()),
            ..ClusterOptions::default()
        },
    );
    for client in ["franz", "sarama", "kafkago"] {
        let prefix = unique_name(&format!("go-{client}-cluster"));
        let out = go_client(&cluster.bootstrap(), client, "cluster", &prefix);
        assert_eq!(
            cluster.live_ids(),
            cluster.ids(),
            "a node died during {client}'s cluster scenario:\n{out}"
        );
        assert_ok(&out, client, "cluster");
    }
}

#[test]
fn franz_go_produces_and_consumes_every_codec() {
    scenario("franz", "produce-consume");
}

#[test]
fn franz_go_classic_group_rebalances_and_keeps_commits() {
    scenario("franz", "group");
}

#[test]
fn franz_go_kip848_group_rebalances_and_keeps_commits() {
    scenario("franz", "group-848");
}

#[test]
fn franz_go_kadm_admin_calls() {
    scenario("franz", "admin");
}

#[test]
fn sarama_produces_idempotently_and_consumes_every_codec() {
    scenario("sarama", "produce-consume");
}

#[test]
fn sarama_group_rebalances_and_keeps_commits() {
    scenario("sarama", "group");
}

#[test]
fn sarama_cluster_admin_calls() {
    scenario("sarama", "admin");
}

#[test]
fn kafka_go_produces_and_consumes_every_codec() {
    scenario("kafkago", "produce-consume");
}

#[test]
fn kafka_go_group_rebalances_and_keeps_commits() {
    scenario("kafkago", "group");
}

#[test]
fn kafka_go_client_admin_calls() {
    scenario("kafkago", "admin");
}
