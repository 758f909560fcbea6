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
use harness::{unique_name, CmdOutput, Node};

fn assert_ok(out: &CmdOutput, client: &str, scenario: &str) {
    assert!(
        out.success() && out.stdout.contains(&format!("OK {client} {scenario}")),
        "{client} {scenario} failed:\n{out}"
    );
}

fn scenario(client: &str, scenario: &str) {
    let mut node = Node::start();
    let prefix = unique_name(&format!("go-{client}-{scenario}"));
    let out = go_client(&node.bootstrap(), client, scenario, &prefix);
    node.assert_alive(&format!("after {client} {scenario}"));
    assert_ok(&out, client, scenario);
}

/// franz-go against three nodes: topics with replication factor 3 (acks=all waits for the
/// followers), records read back from every leader, and both kinds of group with their
/// coordinator on whichever node the group id hashes to.
#[test]
fn franz_go_on_a_three_node_cluster() {
    let mut cluster = Cluster::start(3, ClusterOptions::default());
    let prefix = unique_name("go-franz-cluster");
    let out = go_client(&cluster.bootstrap(), "franz", "cluster", &prefix);
    assert_eq!(
        cluster.live_ids(),
        cluster.ids(),
        "a node died during the scenario:\n{out}"
    );
    assert_ok(&out, "franz", "cluster");
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
