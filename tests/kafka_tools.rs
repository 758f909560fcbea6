//! Apache Kafka's own shell tools against Rivulet: every command of Kafka's quickstart (and the
//! operator commands next to it) as users type them, from the jars of Kafka 4.3.1
//! (`tools/apache-kafka`, harness::apache_kafka), checking each tool's output and exit code.
//!
//! ```text
//!   one node:     kafka-topics create/describe ─▶ console producer (stdin lines)
//!                 ─▶ console consumer --from-beginning --max-messages --group
//!                 ─▶ kafka-consumer-groups list/describe/reset-offsets ─▶ consume again
//!                 ─▶ kafka-configs alter/describe ─▶ kafka-get-offsets (latest, -5)
//!                 ─▶ kafka-delete-records ─▶ get-offsets earliest ─▶ kafka-log-dirs
//!                 ─▶ kafka-topics delete/list
//!   (kafka-transactions list/describe: tests/transactions.rs, with an open transaction)
//!   three nodes:  RF=3 topic created, described (replicas and ISR), produced to with
//!                 acks=all and read by a group; the leader of a partition holding records is
//!                 SIGKILLed and a new group still reads every record
//! ```
//!
//! Each tool is a JVM start-up (1-3 s), so the scenarios are few and each command checks
//! something. Run them with:
//!
//! ```text
//! cargo test -p rivulet-broker --test kafka_tools
//! ```

mod harness;

use std::collections::BTreeMap;

use harness::apache_kafka::kafka_tool;
use harness::cluster::{Cluster, ClusterOptions};
use harness::{unique_name, CmdOutput, Node};

/// How long a console consumer waits for its `--max-messages` before giving up (ms).
const CONSUMER_TIMEOUT_MS: &str = "30000";

/// The three records of the quickstart, one per line.
const EVENTS: [&str; 3] = [
    "This is my first event",
    "This is my second event",
    "This is my third event",
];

/// Runs a tool and panics with its whole output unless it exits 0.
fn ok(tool: &str, args: &[&str], stdin: Option<&str>) -> CmdOutput {
    let out = kafka_tool(tool, args, stdin);
    out.assert_success();
    out
}

/// `kafka-get-offsets` output (`topic:partition:offset` lines) as partition -> offset.
fn parse_offsets(out: &CmdOutput, topic: &str) -> BTreeMap<i32, i64> {
    out.stdout
        .lines()
        .map(|line| {
            let rest = line
                .strip_prefix(topic)
                .and_then(|r| r.strip_prefix(':'))
                .unwrap_or_else(|| panic!("unexpected kafka-get-offsets line {line:?}\n{out}"));
            let (p, o) = rest
                .split_once(':')
                .and_then(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)))
                .unwrap_or_else(|| panic!("unexpected kafka-get-offsets line {line:?}\n{out}"));
            (p, o)
        })
        .collect()
}

/// One row of `kafka-consumer-groups --describe`: (partition, current offset, log end, lag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GroupRow {
    partition: i32,
    current: i64,
    log_end: i64,
    lag: i64,
}

/// The rows of `kafka-consumer-groups --describe --group G` for `topic`.
fn parse_group(out: &CmdOutput, group: &str, topic: &str) -> Vec<GroupRow> {
    out.stdout
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 || f[0] != group || f[1] != topic {
                return None;
            }
            let num = |s: &str| {
                s.parse::<i64>()
                    .unwrap_or_else(|_| panic!("unexpected number {s:?} in {line:?}\n{out}"))
            };
            Some(GroupRow {
                partition: num(f[2]) as i32,
                current: num(f[3]),
                log_end: num(f[4]),
                lag: num(f[5]),
            })
        })
        .collect()
}

/// Consumes `n` records with the console consumer in `group` and returns them, sorted.
fn consume(
    bootstrap: &str,
    topic: &str,
    group: &str,
    from_beginning: bool,
    n: usize,
) -> Vec<String> {
    let max = n.to_string();
    let mut args = vec![
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--max-messages",
        &max,
        "--timeout-ms",
        CONSUMER_TIMEOUT_MS,
    ];
    if from_beginning {
        args.push("--from-beginning");
    }
    let out = ok("kafka-console-consumer", &args, None);
    assert!(
        out.stderr
            .contains(&format!("Processed a total of {n} messages")),
        "the console consumer must report {n} messages:\n{out}"
    );
    let mut got: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    got.sort();
    got
}

fn sorted_events() -> Vec<String> {
    let mut e: Vec<String> = EVENTS.iter().map(|s| s.to_string()).collect();
    e.sort();
    e
}

fn events_stdin() -> String {
    EVENTS.iter().map(|e| format!("{e}\n")).collect()
}

#[test]
fn quickstart_commands_against_one_node() {
    let node = Node::start();
    let b = node.bootstrap();
    let b = b.as_str();
    let topic = unique_name("quickstart-events");
    let t = topic.as_str();
    let group = unique_name("quickstart-group");
    let g = group.as_str();

    // The quickstart's create command, exactly: the node's default partition count.
    let out = ok(
        "kafka-topics",
        &["--create", "--topic", t, "--bootstrap-server", b],
        None,
    );
    assert!(out.stdout.contains(&format!("Created topic {t}.")), "{out}");
    let out = ok(
        "kafka-topics",
        &["--describe", "--topic", t, "--bootstrap-server", b],
        None,
    );
    let partitions: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| {
            l.trim_start()
                .starts_with(&format!("Topic: {t}\tPartition:"))
        })
        .collect();
    assert!(!partitions.is_empty(), "describe lists partitions:\n{out}");
    assert!(
        out.stdout
            .contains(&format!("PartitionCount: {}", partitions.len())),
        "{out}"
    );
    for line in &partitions {
        assert!(
            line.contains("Leader: 1\tReplicas: 1\tIsr: 1"),
            "every partition is led by node 1 with ISR [1]: {line:?}\n{out}"
        );
    }

    // The quickstart's next steps: write events from stdin, read them back.
    ok(
        "kafka-console-producer",
        &["--topic", t, "--bootstrap-server", b],
        Some(&events_stdin()),
    );
    assert_eq!(consume(b, t, g, true, EVENTS.len()), sorted_events());

    // The consumer committed its position: the group is listed, with no lag.
    let out = ok(
        "kafka-consumer-groups",
        &["--bootstrap-server", b, "--list"],
        None,
    );
    assert!(out.stdout.lines().any(|l| l.trim() == g), "{out}");
    let describe = ["--bootstrap-server", b, "--describe", "--group", g];
    let out = ok("kafka-consumer-groups", &describe, None);
    let rows = parse_group(&out, g, t);
    assert_eq!(
        rows.len(),
        partitions.len(),
        "one row per partition:\n{out}"
    );
    assert_eq!(rows.iter().map(|r| r.current).sum::<i64>(), 3, "{out}");
    assert!(rows.iter().all(|r| r.lag == 0), "{out}");

    // Rewind the group and read everything again without --from-beginning.
    let out = ok(
        "kafka-consumer-groups",
        &[
            "--bootstrap-server",
            b,
            "--group",
            g,
            "--reset-offsets",
            "--to-earliest",
            "--topic",
            t,
            "--execute",
        ],
        None,
    );
    assert!(out.stdout.contains("NEW-OFFSET"), "{out}");
    let rows = parse_group(&ok("kafka-consumer-groups", &describe, None), g, t);
    assert!(rows.iter().all(|r| r.current == 0), "{rows:?}");
    assert_eq!(rows.iter().map(|r| r.lag).sum::<i64>(), 3, "{rows:?}");
    assert_eq!(consume(b, t, g, false, EVENTS.len()), sorted_events());

    // Topic configs: alter, then describe shows the override.
    let out = ok(
        "kafka-configs",
        &[
            "--bootstrap-server",
            b,
            "--entity-type",
            "topics",
            "--entity-name",
            t,
            "--alter",
            "--add-config",
            "retention.ms=86400000",
        ],
        None,
    );
    assert!(
        out.stdout
            .contains(&format!("Completed updating config for topic {t}.")),
        "{out}"
    );
    let out = ok(
        "kafka-configs",
        &[
            "--bootstrap-server",
            b,
            "--entity-type",
            "topics",
            "--entity-name",
            t,
            "--describe",
        ],
        None,
    );
    assert!(out.stdout.contains("retention.ms=86400000"), "{out}");

    // Offsets: latest per partition sums to the three records.
    let latest = parse_offsets(
        &ok(
            "kafka-get-offsets",
            &["--bootstrap-server", b, "--topic", t],
            None,
        ),
        t,
    );
    assert_eq!(latest.len(), partitions.len(), "{latest:?}");
    assert_eq!(latest.values().sum::<i64>(), 3, "{latest:?}");
    // `--time -5` (latest tiered, ListOffsets v9): no tiered storage, so no offset to print,
    // and no error (as Apache Kafka answers). Rivulet once refused v9 and the tool failed.
    let out = ok(
        "kafka-get-offsets",
        &["--bootstrap-server", b, "--topic", t, "--time", "-5"],
        None,
    );
    assert_eq!(out.stdout.trim(), "", "{out}");

    // Delete the first record of the partition that holds records.
    let (&p, _) = latest
        .iter()
        .find(|(_, &o)| o > 0)
        .expect("a partition with records");
    let json =
        format!(r#"{{"partitions":[{{"topic":"{t}","partition":{p},"offset":1}}],"version":1}}"#);
    let json_path = node.scratch_dir().join("delete-records.json");
    std::fs::write(&json_path, json).expect("write the offsets file");
    let json_path = json_path.to_string_lossy().into_owned();
    let out = ok(
        "kafka-delete-records",
        &["--bootstrap-server", b, "--offset-json-file", &json_path],
        None,
    );
    assert!(
        out.stdout
            .contains(&format!("partition: {t}-{p}\tlow_watermark: 1")),
        "{out}"
    );
    let earliest = parse_offsets(
        &ok(
            "kafka-get-offsets",
            &["--bootstrap-server", b, "--topic", t, "--time", "-2"],
            None,
        ),
        t,
    );
    assert_eq!(earliest.get(&p), Some(&1), "{earliest:?}");

    // Log dirs: a JSON document naming the partitions and their sizes.
    let out = ok(
        "kafka-log-dirs",
        &["--bootstrap-server", b, "--describe", "--topic-list", t],
        None,
    );
    let doc: serde_json::Value = out
        .stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("kafka-log-dirs prints a JSON document:\n{out}"));
    let listed: Vec<String> = doc["brokers"][0]["logDirs"][0]["partitions"]
        .as_array()
        .unwrap_or_else(|| panic!("partitions in {doc}"))
        .iter()
        .filter_map(|p| p["partition"].as_str().map(str::to_string))
        .collect();
    assert!(listed.contains(&format!("{t}-{p}")), "{doc}");

    // Clean-up: delete the topic; it is gone from the list.
    ok(
        "kafka-topics",
        &["--bootstrap-server", b, "--delete", "--topic", t],
        None,
    );
    let out = ok("kafka-topics", &["--bootstrap-server", b, "--list"], None);
    assert!(!out.stdout.lines().any(|l| l.trim() == t), "{out}");
}

#[test]
fn quickstart_on_three_nodes_with_rf3_survives_a_leader_kill() {
    let mut cluster = Cluster::start(3, ClusterOptions::default());
    let bootstrap = cluster.bootstrap();
    let b = bootstrap.as_str();
    let topic = unique_name("replicated-events");
    let t = topic.as_str();

    let out = ok(
        "kafka-topics",
        &[
            "--create",
            "--topic",
            t,
            "--partitions",
            "3",
            "--replication-factor",
            "3",
            "--config",
            "min.insync.replicas=2",
            "--bootstrap-server",
            b,
        ],
        None,
    );
    assert!(out.stdout.contains(&format!("Created topic {t}.")), "{out}");
    cluster.wait_for_full_isr(t, 3);
    let out = ok(
        "kafka-topics",
        &["--describe", "--topic", t, "--bootstrap-server", b],
        None,
    );
    assert!(
        out.stdout
            .contains("PartitionCount: 3\tReplicationFactor: 3"),
        "{out}"
    );
    let rows: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("\tPartition: "))
        .collect();
    assert_eq!(rows.len(), 3, "{out}");
    for row in rows {
        let field = |name: &str| -> Vec<u32> {
            let mut ids: Vec<u32> = row
                .split('\t')
                .find_map(|f| f.trim().strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {row:?}"))
                .split(',')
                .map(|id| id.trim().parse().expect("a node id"))
                .collect();
            ids.sort_unstable();
            ids
        };
        assert_eq!(field("Replicas: "), vec![1, 2, 3], "{row:?}");
        assert_eq!(field("Isr: "), vec![1, 2, 3], "{row:?}");
    }

    // acks=all is the console producer's default (--request-required-acks -1).
    ok(
        "kafka-console-producer",
        &["--topic", t, "--bootstrap-server", b],
        Some(&events_stdin()),
    );
    let total = parse_offsets(
        &ok(
            "kafka-get-offsets",
            &["--bootstrap-server", b, "--topic", t],
            None,
        ),
        t,
    );
    assert_eq!(total.values().sum::<i64>(), 3, "{total:?}");

    // A first group reads everything while all nodes run. This also creates the replicated
    // __consumer_offsets topic: like Kafka, Rivulet will not create it with fewer live nodes
    // than its replication factor (3), so the first group must come before the kill.
    let first = unique_name("before-failover");
    assert_eq!(consume(b, t, &first, true, EVENTS.len()), sorted_events());

    // Kill the leader of a partition holding records; a new group still reads all of them.
    let (&p, _) = total
        .iter()
        .find(|(_, &o)| o > 0)
        .expect("a partition with records");
    let leader = cluster.leader_of(t, p);
    cluster.kill9(leader);
    cluster.wait_for_leader(t, p, |l| l != leader);
    let group = unique_name("after-failover");
    assert_eq!(consume(b, t, &group, true, EVENTS.len()), sorted_events());
    let out = ok(
        "kafka-consumer-groups",
        &["--bootstrap-server", b, "--describe", "--group", &group],
        None,
    );
    let rows = parse_group(&out, &group, t);
    // The console consumer stops after its last message: a partition it never fetched from
    // (one without records) may have no committed offset, and then no row. Every partition
    // with records must have one, at its end.
    for (&p, &end) in total.iter().filter(|(_, &end)| end > 0) {
        let row = rows.iter().find(|r| r.partition == p);
        assert!(
            row.is_some_and(|r| r.current == end && r.log_end == end),
            "partition {p} (log end {end}) not committed at its end:\n{out}"
        );
    }
    assert_eq!(rows.iter().map(|r| r.current).sum::<i64>(), 3, "{out}");
    assert!(rows.iter().all(|r| r.current == r.log_end), "{out}");
}
