//! Transactions (issue 14) with real clients against real `rivulet serve` processes.
//!
//! Commit/abort markers are not written yet, so these tests cover what is served so far: the
//! transaction coordinator found through FindCoordinator, InitProducerId with a transactional
//! id (epoch bumps, fencing), AddPartitionsToTxn and transactional produce.

mod harness;

use std::process::Command;
use std::time::Duration;

use harness::{kafka, unique_name, Node, NodeOptions};

fn node_with_transactions() -> Node {
    Node::start_with(NodeOptions {
        env: vec![("RIVULET_TRANSACTIONS__ENABLED".into(), "true".into())],
        ..NodeOptions::default()
    })
}

/// Zombie fencing: a second producer with the same transactional.id fences the first, whose
/// next transactional request fails with a fatal error; the second writes inside its
/// transaction, and a read_uncommitted reader sees only its record.
#[test]
fn a_new_incarnation_fences_the_old_and_produces_transactionally() {
    let mut node = node_with_transactions();
    let python = harness::require_python(&["confluent_kafka"]);
    let topic = unique_name("txn-fence");
    kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);
    let out = harness::run(
        Command::new(&python)
            .arg(harness::clients_dir().join("txn_fencing.py"))
            .args(["--bootstrap", &node.bootstrap(), "--topic", &topic])
            .args(["--id", &unique_name("tx")]),
        None,
        Duration::from_secs(120),
    );
    out.assert_success();
    let last = out.stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("no JSON result ({e}):\n{out}"));
    assert_eq!(
        v["init1"],
        serde_json::Value::Null,
        "first init_transactions: {v}"
    );
    assert_eq!(
        v["init2"],
        serde_json::Value::Null,
        "second init_transactions: {v}"
    );
    let zombie = v["zombie_error"].as_str().unwrap_or_default();
    assert!(
        zombie.to_lowercase().contains("fenced"),
        "the first producer must be fenced: {v}"
    );
    assert_eq!(
        v["zombie_fatal"], true,
        "fencing is fatal for the zombie: {v}"
    );
    assert_eq!(
        v["produced"], true,
        "the live producer's record was not delivered: {v}"
    );

    let records = kafka::consume_all(&node.bootstrap(), &topic, Duration::from_secs(20));
    let keys: Vec<String> = records
        .values()
        .flatten()
        .map(|r| r.key.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        ["live"],
        "only the live incarnation's record is in the log"
    );
    node.assert_alive("after the transactional producers");
}
