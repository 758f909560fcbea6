//! Differential conformance: the Java reference client runs the same scenarios against Apache
//! Kafka 4.3.1 (from its Maven Central jars, `tools/apache-kafka`) and against Rivulet, and what
//! it observes must be the same, step by step.
//!
//! ```text
//!   thread 1: kafka.sh start 1 (free ports, temp dir) ─▶ Main differential ─▶ kafka.jsonl ─┐
//!   thread 2: rivulet serve ──────────────────────────▶ Main differential ─▶ rivulet.jsonl ┤
//!             each then: raw-frame steps (legacy AlterConfigs, wrong partition) ───────────┤
//!   main: joins both (so Kafka is stopped whatever failed), then                          ▼
//!         compares step by step; a difference passes only when differential-allowed.json
//!         lists exactly that pair of observations (its reason is also in docs/compat.md)
//! ```
//!
//! The program (`tests/clients/java/.../Differential.java`) normalizes what legitimately
//! differs between two brokers (node ids, ports, cluster and topic ids, wall-clock times) and
//! keeps everything a client can rely on: error classes, offsets, timestamps, group states and
//! assignments, config values and their sources. An allowed difference that no longer occurs
//! fails the test too, so a fix is noticed and its entry removed.
//!
//! ```text
//! cargo test -p rivulet-broker --test differential
//! ```

mod harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::apache_kafka::{require_kafka_tools, tools_dir};
use harness::java::scenario_named;
use harness::wire::{self, RawConn};
use harness::{free_port, run, wait_until, CmdOutput, Node, NodeOptions};
use kafka_protocol::messages::alter_configs_request::{
    AlterConfigsResource, AlterableConfig as LegacyConfig,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    AlterConfigsRequest, BrokerId, DescribeConfigsRequest, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, GroupId, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

/// The program's run against one broker: a JVM, some 150 client calls, two group protocols.
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(240);

/// Topic and group names are the same on both brokers (each is fresh), so they compare.
const PREFIX: &str = "diff";

/// The two settings tools/apache-kafka/kafka.sh writes into Kafka's server.properties (so
/// both brokers report them as STATIC_BROKER_CONFIG), and group timings as in
/// tests/java_clients.rs, so the group steps take seconds.
const NODE_TOML: &str = "num_partitions = 1\n\
    default_replication_factor = 1\n\
    [groups]\n\
    offsets_partitions = 4\n\
    initial_rebalance_delay_ms = 0\n\
    min_session_timeout_ms = 1000\n\
    consumer_session_timeout_ms = 6000\n\
    consumer_heartbeat_interval_ms = 300\n";

/// The same group timings for Apache Kafka (its minimums must be lowered to allow them).
const KAFKA_PROPS: &str = "group.consumer.min.heartbeat.interval.ms=100 \
    group.consumer.heartbeat.interval.ms=300 \
    group.consumer.min.session.timeout.ms=1000 \
    group.consumer.session.timeout.ms=6000 \
    group.min.session.timeout.ms=1000";

/// A one-node Apache Kafka in a temp dir on free ports; stopped (SIGTERM, then SIGKILL) when
/// dropped, also when the test panics.
struct ApacheKafka {
    dir: tempfile::TempDir,
    port: u16,
    controller_port: u16,
}

impl ApacheKafka {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(tools_dir().join("kafka.sh"));
        cmd.args(args)
            .env("APACHE_KAFKA_DIR", self.dir.path())
            .env("APACHE_KAFKA_PORT", self.port.to_string())
            .env(
                "APACHE_KAFKA_CONTROLLER_PORT",
                self.controller_port.to_string(),
            )
            .env("APACHE_KAFKA_PROPS", KAFKA_PROPS)
            // The program's topics are small: half the default heap starts faster.
            .env("KAFKA_HEAP_OPTS", "-Xmx512M -Xms512M");
        cmd
    }

    fn start() -> Result<ApacheKafka, String> {
        require_kafka_tools();
        let kafka = ApacheKafka {
            dir: tempfile::Builder::new()
                .prefix("apache-kafka-")
                .tempdir()
                .map_err(|e| format!("temp dir: {e}"))?,
            port: free_port(),
            controller_port: free_port(),
        };
        let out = run(
            &mut kafka.command(&["start", "1"]),
            None,
            Duration::from_secs(150),
        );
        if !out.success() {
            let log = std::fs::read_to_string(kafka.dir.path().join("node1/server.log"))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            return Err(format!(
                "Apache Kafka did not start:\n{out}\nserver.log (last lines, newest first):\n{}",
                tail.join("\n")
            ));
        }
        Ok(kafka)
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for ApacheKafka {
    fn drop(&mut self) {
        let out = run(&mut self.command(&["stop"]), None, Duration::from_secs(60));
        if !out.success() {
            eprintln!("stopping Apache Kafka:\n{out}");
        }
    }
}

/// Runs the program against `bootstrap`; returns its observations in step order.
fn observe(bootstrap: &str, out_file: &Path) -> (Vec<(String, Value)>, CmdOutput) {
    let out = scenario_named(
        bootstrap,
        "differential",
        PREFIX,
        1,
        &[format!("-Drivulet.out={}", out_file.display())],
        PROGRAM_TIMEOUT,
    );
    let text = std::fs::read_to_string(out_file).unwrap_or_default();
    let steps = text
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("bad observation line {line:?}: {e}\n{out}"));
            let step = v["step"].as_str().unwrap_or_default().to_string();
            (step, v["obs"].clone())
        })
        .collect();
    (steps, out)
}

/// Steps the Java 4.x client cannot take: the legacy AlterConfigs (removed from its Admin
/// API, still served by Kafka 4.x) and a produce to a partition the topic does not have (the
/// client refuses it before sending). Resource type 2 is a topic.
fn wire_steps(addr: std::net::SocketAddr) -> Vec<(String, Value)> {
    let mut conn = RawConn::connect(addr).expect("connect for the raw-frame steps");
    let topic = format!("{PREFIX}-configs");
    let mut steps = Vec::new();
    let describe = |conn: &mut RawConn| -> Value {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.clone()))
                .with_configuration_keys(Some(
                    ["retention.ms", "max.message.bytes", "cleanup.policy"]
                        .iter()
                        .map(|k| StrBytes::from_static_str(k))
                        .collect(),
                )),
        ]);
        let resp = conn.request(&req, 4).expect("DescribeConfigs v4");
        let mut m = BTreeMap::new();
        for r in &resp.results {
            for c in &r.configs {
                m.insert(
                    c.name.to_string(),
                    json!([c.value.as_ref().map(|v| v.to_string()), c.config_source]),
                );
            }
        }
        json!(m)
    };
    let legacy = |conn: &mut RawConn, configs: &[(&str, &str)], validate_only: bool| -> Value {
        let req = AlterConfigsRequest::default()
            .with_validate_only(validate_only)
            .with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.clone()))
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            LegacyConfig::default()
                                .with_name(StrBytes::from_string(k.to_string()))
                                .with_value(Some(StrBytes::from_string(v.to_string())))
                        })
                        .collect(),
                )]);
        let resp = conn.request(&req, 2).expect("AlterConfigs v2");
        json!(resp
            .responses
            .iter()
            .map(|r| json!(r.error_code))
            .collect::<Vec<_>>())
    };
    for (name, configs, validate_only) in [
        (
            "legacy alterConfigs validateOnly",
            &[("retention.ms", "123")][..],
            true,
        ),
        (
            "legacy alterConfigs set retention.ms only (others return to defaults)",
            &[("retention.ms", "7000")][..],
            false,
        ),
        (
            "legacy alterConfigs bad value",
            &[("retention.ms", "zz")][..],
            false,
        ),
        (
            "legacy alterConfigs unknown key",
            &[("no.such.config", "1")][..],
            false,
        ),
    ] {
        let before = describe(&mut conn);
        let result = legacy(&mut conn, configs, validate_only);
        // Apache Kafka applies a committed change on the broker a moment after answering: wait
        // (bounded) for a successful change to show before describing it.
        let mut after = describe(&mut conn);
        let deadline = Instant::now() + Duration::from_secs(2);
        while result == json!([0]) && after == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            after = describe(&mut conn);
        }
        steps.push((format!("wire: {name}"), json!([result, after])));
    }
    // Produce v9 (a version both brokers serve; flexible, still addressed by topic name).
    let req = wire::produce_request(
        &format!("{PREFIX}-fetch"),
        7,
        -1,
        wire::BatchSpec::new(&[("k", "v")]).encode(),
    );
    let resp = conn.request(&req, 9).expect("Produce v9");
    let codes: Vec<Value> = resp
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .map(|p| json!([p.index, p.error_code, p.base_offset]))
        .collect();
    steps.push((
        "wire: produce to partition 7 of a one-partition topic".to_string(),
        json!(codes),
    ));
    steps
}

/// The program's five slowest steps (it prints `step: NAME (N ms)`), to see where a run goes.
fn slowest(out: &CmdOutput) -> String {
    let mut steps: Vec<(u64, &str)> = out
        .stdout
        .lines()
        .filter_map(|l| {
            let (name, ms) = l.strip_prefix("step: ")?.rsplit_once(" (")?;
            Some((ms.strip_suffix(" ms)")?.parse().ok()?, name))
        })
        .collect();
    steps.sort_unstable_by(|a, b| b.cmp(a));
    steps
        .iter()
        .take(5)
        .map(|(ms, name)| format!("{name:?} {ms} ms"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, serde::Deserialize)]
struct Allowed {
    step: String,
    kafka: Value,
    rivulet: Value,
    reason: String,
}

fn allowed_file() -> PathBuf {
    harness::java::project_dir().join("differential-allowed.json")
}

fn load_allowed() -> Vec<Allowed> {
    let path = allowed_file();
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    #[derive(serde::Deserialize)]
    struct File {
        differences: Vec<Allowed>,
    }
    let file: File =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    let compat =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/compat.md"))
            .expect("read docs/compat.md");
    for a in &file.differences {
        assert!(
            !a.reason.trim().is_empty(),
            "differential-allowed.json: step {:?} has no reason",
            a.step
        );
        assert!(
            compat.contains(&format!("`{}`", a.step)),
            "docs/compat.md must list the allowed difference `{}` (with its reason: {})",
            a.step,
            a.reason
        );
    }
    file.differences
}

#[test]
fn java_client_observes_the_same_on_apache_kafka_and_rivulet() {
    let allowed = load_allowed();
    harness::java::program();
    let started = Instant::now();
    let scratch = tempfile::tempdir().expect("temp dir");
    // Both runs at once: each is mostly waiting (rebalances, timeouts), and Kafka's JVM start
    // overlaps Rivulet's run. Each thread owns its broker (Kafka's guard stops it on drop);
    // both are joined before anything here can fail, so no broker outlives the test.
    let kafka_out_file = scratch.path().join("kafka.jsonl");
    let kafka = std::thread::spawn(
        move || -> Result<(Vec<(String, Value)>, CmdOutput), String> {
            let kafka = ApacheKafka::start()?;
            let (mut steps, out) = observe(&kafka.bootstrap(), &kafka_out_file);
            let addr = kafka
                .bootstrap()
                .parse()
                .map_err(|e| format!("Kafka's bootstrap address: {e}"))?;
            steps.extend(wire_steps(addr));
            eprintln!("Apache Kafka done after {:.1?}", started.elapsed());
            Ok((steps, out))
        },
    );
    let rivulet_out_file = scratch.path().join("rivulet.jsonl");
    let rivulet = std::thread::spawn(move || {
        let mut node = Node::start_with(NodeOptions {
            config_toml: Some(NODE_TOML.to_string()),
            ..NodeOptions::default()
        });
        let (mut steps, out) = observe(&node.bootstrap(), &rivulet_out_file);
        steps.extend(wire_steps(node.addr()));
        node.assert_alive("after the differential run");
        eprintln!("Rivulet done after {:.1?}", started.elapsed());
        (steps, out)
    });
    let kafka = kafka.join();
    let rivulet = rivulet.join();
    let (apache, kafka_out) = match kafka {
        Ok(Ok(run)) => run,
        Ok(Err(e)) => panic!("{e}"),
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let (rivulet, rivulet_out) = rivulet.unwrap_or_else(|panic| std::panic::resume_unwind(panic));

    eprintln!("slowest steps on Apache Kafka: {}", slowest(&kafka_out));
    eprintln!("slowest steps on Rivulet: {}", slowest(&rivulet_out));
    let a: BTreeMap<&str, &Value> = apache.iter().map(|(s, v)| (s.as_str(), v)).collect();
    let r: BTreeMap<&str, &Value> = rivulet.iter().map(|(s, v)| (s.as_str(), v)).collect();
    let missing = Value::String("<step not reached>".to_string());
    let mut differences = Vec::new();
    let mut allowed_seen = vec![false; allowed.len()];
    // Every step either run reached, in Kafka's order, then any only Rivulet reached.
    let mut steps: Vec<&str> = apache.iter().map(|(s, _)| s.as_str()).collect();
    steps.extend(
        rivulet
            .iter()
            .map(|(s, _)| s.as_str())
            .filter(|s| !a.contains_key(s)),
    );
    for step in steps {
        let k = a.get(step).copied().unwrap_or(&missing);
        let v = r.get(step).copied().unwrap_or(&missing);
        if k == v {
            continue;
        }
        match allowed
            .iter()
            .position(|x| x.step == step && &x.kafka == k && &x.rivulet == v)
        {
            Some(i) => {
                allowed_seen[i] = true;
                eprintln!("allowed difference at {step:?}: {}", allowed[i].reason);
            }
            None => differences.push(format!(
                "step {step:?}\n  Apache Kafka: {k}\n  Rivulet:      {v}"
            )),
        }
    }
    let stale: Vec<String> = allowed
        .iter()
        .zip(&allowed_seen)
        .filter(|(_, seen)| !**seen)
        .map(|(x, _)| {
            format!(
                "step {:?} (Kafka {}, Rivulet {})",
                x.step, x.kafka, x.rivulet
            )
        })
        .collect();
    eprintln!(
        "{} steps compared in {:.1?}",
        apache.len().max(rivulet.len()),
        started.elapsed()
    );
    assert!(
        apache.len() > 100 && rivulet.len() > 100,
        "a run stopped early (Kafka {} steps, Rivulet {}).\nKafka's run:\n{kafka_out}\nRivulet's run:\n{rivulet_out}",
        apache.len(),
        rivulet.len()
    );
    assert!(
        differences.is_empty() && stale.is_empty(),
        "{} difference(s) between Apache Kafka and Rivulet not in {}:\n\n{}\n\n\
         allowed differences that no longer occur (remove them): {stale:#?}\n\n\
         Rivulet's run:\n{rivulet_out}",
        differences.len(),
        allowed_file().display(),
        differences.join("\n\n")
    );
}

/// Sharp regression test for a difference the differential run found: a ListOffsets by a
/// timestamp later than every record answers offset, timestamp *and leader epoch* -1, as Kafka
/// does (Rivulet sent the current leader epoch, so the Java client reported one).
#[test]
fn list_offsets_past_the_last_timestamp_has_no_leader_epoch() {
    let node = Node::start();
    let topic = harness::unique_name("diff-epoch");
    harness::kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let req = wire::produce_request(&topic, 0, -1, wire::BatchSpec::new(&[("k", "v")]).encode());
    let produced = conn.request(&req, 9).expect("Produce v9");
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    let list = |conn: &mut RawConn, timestamp: i64| {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.clone())))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(timestamp)])]);
        let resp = conn.request(&req, 8).expect("ListOffsets v8");
        let p = &resp.topics[0].partitions[0];
        (p.error_code, p.offset, p.timestamp, p.leader_epoch)
    };
    // BatchSpec's records carry 1_700_000_000_000.
    assert_eq!(
        list(&mut conn, 1_700_000_000_000),
        (0, 0, 1_700_000_000_000, 0),
        "a match carries the leader epoch"
    );
    assert_eq!(
        list(&mut conn, 1_700_000_000_001),
        (0, -1, -1, -1),
        "no record at or after the timestamp: everything -1"
    );
}

/// Sharp regression test for a difference the differential run found: DescribeGroups v6
/// answers GROUP_ID_NOT_FOUND for a group that does not exist (KIP-1043; the Java admin client
/// throws `GroupIdNotFoundException`); v5 still describes it as `Dead`.
#[test]
fn describe_groups_v6_unknown_group_is_group_id_not_found() {
    let node = Node::start();
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let req = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_static_str("no-such-group"))]);
    // A fresh node creates its offsets topic on the first FindCoordinator; until it leads the
    // group's partition, DescribeGroups answers NOT_COORDINATOR (16) or
    // COORDINATOR_LOAD_IN_PROGRESS (14), which clients retry.
    let find = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![StrBytes::from_static_str("no-such-group")]);
    let mut v6 = DescribeGroupsResponse::default();
    wait_until(
        Duration::from_secs(30),
        "the group coordinator answers",
        || {
            conn.request(&find, 4).expect("FindCoordinator v4");
            v6 = conn.request(&req, 6).expect("DescribeGroups v6");
            ![14, 15, 16].contains(&v6.groups[0].error_code)
        },
    );
    assert_eq!(v6.groups[0].error_code, 69, "GROUP_ID_NOT_FOUND: {v6:?}");
    assert!(v6.groups[0].error_message.is_some(), "{v6:?}");
    let v5 = conn.request(&req, 5).expect("DescribeGroups v5");
    assert_eq!(
        (v5.groups[0].error_code, v5.groups[0].group_state.as_str()),
        (0, "Dead"),
        "{v5:?}"
    );
}
