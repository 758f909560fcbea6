//! The `rivulet` command line as a user drives it against a running node: topic
//! create/list/describe/delete, produce from a file and from stdin, consume back.

mod harness;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use harness::{run, unique_name, CmdOutput, Node, RIVULET};

const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// `rivulet ARGS --bootstrap <node>`.
fn rivulet(bootstrap: &str, args: &[&str], stdin: Option<Vec<u8>>) -> CmdOutput {
    run(
        Command::new(RIVULET)
            .args(args)
            .arg("--bootstrap")
            .arg(bootstrap)
            .env_remove("RIVULET_BOOTSTRAP"),
        stdin,
        CLI_TIMEOUT,
    )
}

/// Parses `rivulet consume --print-offset --print-key` output:
/// `Partition:P<TAB>Offset:O<TAB>KEY<TAB>VALUE`.
fn parse_consumed(out: &CmdOutput) -> BTreeMap<i32, Vec<(i64, String, String)>> {
    let mut by_partition: BTreeMap<i32, Vec<(i64, String, String)>> = BTreeMap::new();
    for line in out.stdout.lines() {
        let fields: Vec<&str> = line.splitn(4, '\t').collect();
        let parsed = match fields.as_slice() {
            [p, o, k, v] => p
                .strip_prefix("Partition:")
                .and_then(|p| p.parse::<i32>().ok())
                .zip(
                    o.strip_prefix("Offset:")
                        .and_then(|o| o.parse::<i64>().ok()),
                )
                .map(|(p, o)| (p, o, k.to_string(), v.to_string())),
            _ => None,
        };
        let (p, o, k, v) =
            parsed.unwrap_or_else(|| panic!("unexpected `rivulet consume` line {line:?}\n{out}"));
        by_partition.entry(p).or_default().push((o, k, v));
    }
    by_partition
}

#[test]
fn topic_lifecycle_produce_from_file_and_consume_back() {
    let mut node = Node::start();
    let b = node.bootstrap();
    let topic = unique_name("cli");

    let out = rivulet(&b, &["topic", "create", &topic, "--partitions", "3"], None);
    out.assert_success();
    assert!(
        out.stdout.contains(&format!("Created topic `{topic}`")),
        "{out}"
    );

    let again = rivulet(&b, &["topic", "create", &topic, "--partitions", "3"], None);
    assert!(
        !again.success(),
        "creating an existing topic must fail:\n{again}"
    );
    assert!(again.stderr.contains("already exists"), "{again}");

    let list = rivulet(&b, &["topic", "list"], None);
    list.assert_success();
    let row = list
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(topic.as_str()))
        .unwrap_or_else(|| panic!("`topic list` does not show {topic}:\n{list}"));
    assert_eq!(
        row.split_whitespace().nth(1),
        Some("3"),
        "partition count in `topic list` row {row:?}"
    );

    let lines: Vec<(String, String)> = (0..300)
        .map(|i| (format!("user-{}", i % 11), format!("event number {i}")))
        .collect();
    let file = node.scratch_dir().join("records.txt");
    let text: String = lines.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    std::fs::write(&file, text).expect("write input file");
    let produced = rivulet(
        &b,
        &[
            "produce",
            &topic,
            "--file",
            file.to_str().expect("utf-8 path"),
            "--key-separator",
            ":",
        ],
        None,
    );
    produced.assert_success();
    assert!(produced.stdout.contains("Sent 300 records"), "{produced}");

    let describe = rivulet(&b, &["topic", "describe", &topic], None);
    describe.assert_success();
    assert!(
        describe.stdout.contains("Partitions:         3"),
        "`topic describe` should show 3 partitions:\n{describe}"
    );

    let consumed = rivulet(
        &b,
        &["consume", &topic, "--print-key", "--print-offset"],
        None,
    );
    consumed.assert_success();
    let by_partition = parse_consumed(&consumed);
    let total: usize = by_partition.values().map(Vec::len).sum();
    assert_eq!(total, lines.len(), "records consumed\n{consumed}");
    for (p, records) in &by_partition {
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        assert_eq!(
            offsets,
            (0..records.len() as i64).collect::<Vec<_>>(),
            "partition {p} offsets"
        );
    }
    let mut read_per_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (_, k, v) in by_partition.values().flatten() {
        read_per_key.entry(k).or_default().push(v);
    }
    let mut sent_per_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in &lines {
        sent_per_key.entry(k).or_default().push(v);
    }
    assert_eq!(
        read_per_key, sent_per_key,
        "per-key content or order differs"
    );

    // A window of one partition: --partition, --from OFFSET, --max-messages.
    let (p, records) = by_partition
        .iter()
        .find(|(_, r)| r.len() >= 5)
        .expect("a partition with at least 5 records");
    let window = rivulet(
        &b,
        &[
            "consume",
            &topic,
            "--partition",
            &p.to_string(),
            "--from",
            "2",
            "--max-messages",
            "3",
            "--print-key",
            "--print-offset",
        ],
        None,
    );
    window.assert_success();
    assert_eq!(
        parse_consumed(&window).remove(p).unwrap_or_default(),
        records[2..5].to_vec(),
        "consume --partition {p} --from 2 -n 3\n{window}"
    );

    let deleted = rivulet(&b, &["topic", "delete", &topic], None);
    deleted.assert_success();
    let list = rivulet(&b, &["topic", "list"], None);
    list.assert_success();
    assert!(
        !list
            .stdout
            .lines()
            .any(|l| l.split_whitespace().next() == Some(topic.as_str())),
        "deleted topic still listed:\n{list}"
    );
    let gone = rivulet(&b, &["topic", "describe", &topic], None);
    assert!(
        !gone.success(),
        "describing a deleted topic must fail:\n{gone}"
    );
    node.assert_alive("after the CLI session");
}

#[test]
fn produce_from_stdin_keyless() {
    let mut node = Node::start();
    let b = node.bootstrap();
    let topic = unique_name("stdin");
    rivulet(&b, &["topic", "create", &topic], None).assert_success();

    let input: String = (0..50).map(|i| format!("line {i}\n")).collect();
    let produced = rivulet(&b, &["produce", &topic], Some(input.into_bytes()));
    produced.assert_success();
    assert!(produced.stdout.contains("Sent 50 records"), "{produced}");

    let consumed = rivulet(&b, &["consume", &topic], None);
    consumed.assert_success();
    let expected: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
    assert_eq!(
        consumed.stdout.lines().collect::<Vec<_>>(),
        expected,
        "one partition: lines come back in order\n{consumed}"
    );
    node.assert_alive("after produce from stdin");
}

#[test]
fn client_commands_fail_fast_without_a_broker() {
    // Nobody listens on this port: the command must fail with a message, not hang.
    let nowhere = format!("127.0.0.1:{}", harness::free_port());
    let out = rivulet(&nowhere, &["topic", "list"], None);
    assert!(
        out.status.is_some(),
        "`topic list` hung without a broker:\n{out}"
    );
    assert!(
        !out.success(),
        "`topic list` without a broker must fail:\n{out}"
    );
    assert!(
        out.stderr.contains("error:"),
        "expected an `error:` message:\n{out}"
    );
}

#[test]
fn cluster_status_of_a_single_node() {
    let mut node = Node::start();
    let b = node.bootstrap();
    let topic = unique_name("status");
    rivulet(&b, &["topic", "create", &topic, "--partitions", "2"], None).assert_success();

    let out = rivulet(&b, &["cluster", "status"], None);
    out.assert_success();
    let node_row = out
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1"))
        .unwrap_or_else(|| panic!("`cluster status` does not list node 1:\n{out}"));
    assert!(
        node_row.contains(&b) && node_row.contains("live"),
        "node 1's row should show its address {b} and that it is live: {node_row:?}\n{out}"
    );
    assert!(
        out.stdout.contains("Under-replicated partitions: 0"),
        "{out}"
    );
    assert!(out.stdout.contains("Offline partitions: 0"), "{out}");

    let json = rivulet(&b, &["cluster", "status", "--json"], None);
    json.assert_success();
    let v: serde_json::Value = serde_json::from_str(&json.stdout)
        .unwrap_or_else(|e| panic!("`cluster status --json` is not JSON ({e}):\n{json}"));
    assert_eq!(v["nodes"][0]["id"], 1, "{json}");
    assert_eq!(v["nodes"][0]["address"], b.as_str(), "{json}");
    assert_eq!(
        v["under_replicated"].as_array().map(Vec::len),
        Some(0),
        "{json}"
    );
    assert_eq!(v["offline"].as_array().map(Vec::len), Some(0), "{json}");
    assert!(v["partitions"].as_u64().unwrap_or(0) >= 2, "{json}");
    node.assert_alive("after cluster status");
}

#[test]
fn cluster_status_without_a_node_says_what_to_do() {
    let nowhere = format!("127.0.0.1:{}", harness::free_port());
    let out = rivulet(&nowhere, &["cluster", "status"], None);
    assert!(out.status.is_some(), "`cluster status` hung:\n{out}");
    assert!(!out.success(), "must fail without a node:\n{out}");
    assert!(
        out.stderr.contains("could not reach any node") && out.stderr.contains("--bootstrap"),
        "expected an actionable error:\n{out}"
    );
}

#[test]
fn group_commands_fail_fast_without_a_broker() {
    // Nobody listens on this port: each group command must fail with a message, not hang.
    let nowhere = format!("127.0.0.1:{}", harness::free_port());
    for args in [
        &["group", "list"][..],
        &["group", "describe", "g"][..],
        &["group", "reset-offsets", "g", "--topic", "t", "--to-latest"][..],
    ] {
        let out = rivulet(&nowhere, args, None);
        assert!(
            out.status.is_some(),
            "`{args:?}` hung without a broker:\n{out}"
        );
        assert!(
            !out.success(),
            "`{args:?}` without a broker must fail:\n{out}"
        );
        assert!(
            out.stderr.contains("error:") && out.stderr.contains("rivulet serve"),
            "expected an actionable error from {args:?}:\n{out}"
        );
    }
}

/// `rivulet config`: a cluster-wide dynamic default is set, shown on the default resource
/// and in a topic's synonyms, deleted again; a read-only broker key is refused with Kafka's
/// words and a non-zero exit.
#[test]
fn config_set_describe_delete_dynamic_defaults() {
    let mut node = Node::start();
    let b = node.bootstrap();
    let topic = unique_name("cfg");
    rivulet(&b, &["topic", "create", &topic], None).assert_success();

    rivulet(
        &b,
        &[
            "config",
            "set",
            "--cluster-default",
            "log.retention.ms=86400000",
        ],
        None,
    )
    .assert_success();
    let out = rivulet(&b, &["config", "describe", "--cluster-default"], None);
    out.assert_success();
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("log.retention.ms"))
        .unwrap_or_else(|| panic!("the default is not listed:\n{out}"));
    assert!(
        row.contains("86400000") && row.contains("DYNAMIC_DEFAULT_BROKER_CONFIG"),
        "{row:?}\n{out}"
    );
    let out = rivulet(
        &b,
        &["config", "describe", "--topic", &topic, "--all"],
        None,
    );
    out.assert_success();
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("retention.ms"))
        .unwrap_or_else(|| panic!("retention.ms is not listed:\n{out}"));
    assert!(
        row.contains("86400000")
            && row.contains("DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=86400000"),
        "{row:?}\n{out}"
    );

    let out = rivulet(&b, &["config", "set", "--broker", "1", "broker.id=2"], None);
    assert!(!out.success(), "a read-only key must be refused:\n{out}");
    assert!(
        out.stderr
            .contains("Cannot update these configs dynamically"),
        "{out}"
    );

    rivulet(
        &b,
        &["config", "delete", "--cluster-default", "log.retention.ms"],
        None,
    )
    .assert_success();
    let out = rivulet(&b, &["config", "describe", "--cluster-default"], None);
    out.assert_success();
    assert!(out.stdout.contains("No configs are set"), "{out}");
    node.assert_alive("after rivulet config");
}
