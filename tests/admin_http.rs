//! The admin HTTP endpoint (`--admin-listen`), against real nodes and real clients.
//!
//! ```text
//!  test ── librdkafka producer/consumer (group, commit) ──▶ rivulet serve
//!       ── GET /metrics, /ready, /v1/... (plain HTTP/1.1) ──▶ admin endpoint
//!       ── tests/clients/parse_metrics.py (prometheus_client's OpenMetrics and text parsers)
//! ```
//! Figures read from `/metrics` must equal what the clients saw: offsets, high watermark, lag
//! (high watermark minus the committed offset), record counts.

mod harness;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::cluster::{Cluster, ClusterOptions};
use harness::kafka::{self, TestProducer};
use harness::wire::{self, RawConn};
use harness::{python_client, run, unique_name, wait_until, Node, NodeOptions, RIVULET};
use kafka_protocol::messages::ProduceRequest;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);

/// `GET path` over a fresh connection: (status, body). `None` while nothing listens.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP head and body");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "responses have a length: {head}"
    );
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    Some((status, body.to_string()))
}

fn get_ok(addr: SocketAddr, path: &str) -> String {
    match get(addr, path) {
        Some((200, body)) => body,
        other => panic!("GET {path} on {addr}: {other:?}"),
    }
}

fn get_json(addr: SocketAddr, path: &str) -> Value {
    serde_json::from_str(&get_ok(addr, path)).expect("JSON body")
}

/// The samples of one scrape, parsed by prometheus_client (both parsers must accept it).
struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
    classic_families: Vec<String>,
}

impl Scrape {
    fn take(node: &Node) -> Scrape {
        let text = get_ok(node.admin_addr(), "/metrics");
        let file = node.scratch_dir().join("metrics.txt");
        std::fs::write(&file, &text).expect("write scrape");
        let (out, summary) = python_client(
            "parse_metrics.py",
            "prometheus_client",
            &[file.display().to_string()],
            TIMEOUT,
        );
        let summary = summary.unwrap_or_else(|| panic!("the parsers rejected /metrics:\n{out}"));
        let samples = summary["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .map(|s| {
                let labels = s["labels"]
                    .as_object()
                    .expect("labels")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().expect("label").to_string()))
                    .collect();
                let value = s["value"].as_f64().expect("value");
                (s["name"].as_str().expect("name").to_string(), labels, value)
            })
            .collect();
        let classic_families = summary["classic_families"]
            .as_array()
            .expect("families")
            .iter()
            .map(|f| f.as_str().expect("family").to_string())
            .collect();
        Scrape {
            samples,
            classic_families,
        }
    }

    fn all(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, l, v)| (l, *v))
            .collect()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.all(name, labels).as_slice() {
            [(_, v)] => *v,
            other => panic!("{name}{labels:?}: expected one sample, got {other:?}"),
        }
    }
}

/// Produces 10 records, consumes them in a group and commits offset 4, then checks every
/// figure on /metrics and the JSON endpoints against what the clients saw.
#[test]
fn metrics_and_json_match_what_clients_see() {
    let node = Node::start_with(NodeOptions {
        // No wait before the first rebalance: the consumer joins at once.
        config_toml: Some("[groups]\ninitial_rebalance_delay_ms = 0\n".into()),
        ..Default::default()
    });
    let admin = node.admin_addr();
    let b = node.bootstrap();
    assert!(get_ok(admin, "/health").contains("\"up\""));
    wait_until(TIMEOUT, "the node is ready", || {
        get(admin, "/ready").is_some_and(|(s, _)| s == 200)
    });
    let segments_before = Scrape::take(&node).value("rivulet_storage_segments_disk_bytes", &[]);

    let topic = unique_name("admin-http");
    let group = unique_name("admin-http-group");
    kafka::create_topic(&b, &topic, 1, &[]);
    let mut producer = TestProducer::new(&b, &[]);
    for i in 0..10 {
        producer.send(&topic, &format!("k{i}"), "value");
    }
    producer.flush(TIMEOUT).expect("flush");
    assert_eq!(
        producer.log().acked_count(),
        10,
        "{:?}",
        producer.log().failed()
    );

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut seen = 0;
    let deadline = Instant::now() + TIMEOUT;
    while seen < 10 {
        assert!(
            Instant::now() < deadline,
            "consumed only {seen} of 10 records"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            m.expect("consume");
            seen += 1;
        }
    }
    let (low, high) = consumer
        .fetch_watermarks(&topic, 0, TIMEOUT)
        .expect("watermarks");
    assert_eq!((low, high), (0, 10));
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset(&topic, 0, Offset::Offset(4))
        .expect("offset");
    consumer.commit(&commit, CommitMode::Sync).expect("commit");

    // One refused produce: a partition the topic does not have. (Counted against the figure
    // before it: a client may have met the same code while the topic was being created.)
    let errors_before = Scrape::take(&node)
        .all(
            "rivulet_kafka_request_errors_total",
            &[("api", "Produce"), ("error_code", "3")],
        )
        .first()
        .map_or(0.0, |(_, v)| *v);
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let v = wire::negotiate::<ProduceRequest>(&mut conn, 9);
    let bad = wire::produce_request(&topic, 7, -1, vec![0; 70]);
    conn.request(&bad, v).expect("produce answered");

    let m = Scrape::take(&node);
    let tp = [("topic", topic.as_str()), ("partition", "0")];
    assert_eq!(
        m.value("rivulet_partition_high_watermark", &tp),
        high as f64
    );
    assert_eq!(
        m.value("rivulet_partition_log_end_offset", &tp),
        high as f64
    );
    assert_eq!(
        m.value("rivulet_partition_log_start_offset", &tp),
        low as f64
    );
    assert_eq!(m.value("rivulet_partition_isr_size", &tp), 1.0);
    assert_eq!(m.value("rivulet_partition_under_replicated", &tp), 0.0);
    assert_eq!(m.value("rivulet_partition_offline", &tp), 0.0);
    let gtp = [
        ("group", group.as_str()),
        ("topic", topic.as_str()),
        ("partition", "0"),
    ];
    assert_eq!(m.value("rivulet_group_committed_offset", &gtp), 4.0);
    assert_eq!(
        m.value("rivulet_group_lag_records", &gtp),
        (high - 4) as f64
    );
    assert_eq!(m.value("rivulet_group_members", &[("group", &group)]), 1.0);
    let t = [("topic", topic.as_str())];
    assert_eq!(m.value("rivulet_topic_produced_records_total", &t), 10.0);
    assert!(m.value("rivulet_topic_produced_bytes_total", &t) > 0.0);
    assert!(m.value("rivulet_topic_fetched_records_total", &t) >= 10.0);
    for api in ["Produce", "Fetch", "OffsetCommit", "JoinGroup", "Metadata"] {
        assert!(
            m.value("rivulet_kafka_requests_total", &[("api", api)]) >= 1.0,
            "{api}"
        );
    }
    let unknown_partition = [("api", "Produce"), ("error_code", "3")];
    assert_eq!(
        m.value("rivulet_kafka_request_errors_total", &unknown_partition),
        errors_before + 1.0
    );
    // Histogram buckets are cumulative and end with +Inf = count (the OpenMetrics parser
    // checks this too; here it is checked on the values).
    let mut buckets: Vec<(f64, f64)> = m
        .all(
            "rivulet_kafka_request_duration_seconds_bucket",
            &[("api", "Fetch")],
        )
        .into_iter()
        .map(|(l, v)| (l["le"].parse::<f64>().expect("le"), v))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() > 10, "{buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(buckets.last().map(|b| b.0), Some(f64::INFINITY));
    assert_eq!(
        buckets.last().map(|b| b.1),
        Some(m.value(
            "rivulet_kafka_request_duration_seconds_count",
            &[("api", "Fetch")]
        ))
    );
    assert!(m
        .classic_families
        .iter()
        .any(|f| f == "rivulet_kafka_request_duration_seconds"));
    assert_eq!(m.value("rivulet_controller_active", &[]), 1.0);
    assert!(m.value("rivulet_controller_raft_term", &[]) >= 1.0);
    assert!(m.value("rivulet_controller_raft_commit_index", &[]) >= 1.0);
    assert_eq!(m.value("rivulet_node_ready", &[]), 1.0);
    assert!(m.value("rivulet_storage_disk_bytes", &[]) > 0.0);
    // The produced batches are in the segment files, not in fjall.
    let log_size = m.value("rivulet_partition_log_size_bytes", &tp);
    assert!(log_size > 0.0);
    assert!(
        m.value("rivulet_storage_segments_disk_bytes", &[]) >= segments_before + log_size,
        "segment files grew by less than the partition's log"
    );
    assert!(m.value("rivulet_connections_accepted_total", &[]) >= 2.0);
    assert!(m.value("rivulet_connections_open", &[]) >= 1.0);

    // JSON: the cluster view equals the CLI's, and topic/group views carry the same figures.
    let cli = run(
        Command::new(RIVULET)
            .args(["cluster", "status", "--json", "--bootstrap", &b])
            .env_remove("RIVULET_BOOTSTRAP"),
        None,
        TIMEOUT,
    );
    assert!(cli.success(), "{cli}");
    let cli: Value = serde_json::from_str(cli.stdout.trim()).expect("CLI JSON");
    assert_eq!(get_json(admin, "/v1/cluster"), cli);
    let t = get_json(admin, &format!("/v1/topics/{topic}"));
    assert_eq!(t["partitions"][0]["high_watermark"], high);
    assert_eq!(t["partitions"][0]["log_start_offset"], low);
    assert_eq!(t["partitions"][0]["leader"], 1);
    assert!(get_json(admin, "/v1/topics")
        .as_array()
        .expect("topics")
        .iter()
        .any(|x| x["name"] == topic.as_str()));
    let g = get_json(admin, &format!("/v1/groups/{group}"));
    assert_eq!(g["state"], "Stable", "{g}");
    assert_eq!(g["members"].as_array().map(Vec::len), Some(1), "{g}");
    assert_eq!(g["offsets"][0]["committed"], 4, "{g}");
    assert_eq!(g["offsets"][0]["lag"], high - 4, "{g}");
    assert!(get_json(admin, "/v1/groups")
        .as_array()
        .expect("groups")
        .iter()
        .any(|x| x["group_id"] == group.as_str()));
    assert_eq!(
        get(admin, "/v1/topics/no-such-topic").map(|r| r.0),
        Some(404)
    );
    assert_eq!(get(admin, "/nope").map(|r| r.0), Some(404));
    drop(consumer);
}

/// A client over `connections_per_ip_max` is refused, and the refusal is counted by reason.
#[test]
fn refused_connections_are_counted() {
    let node = Node::start_with(NodeOptions {
        config_toml: Some("connections_per_ip_max = 1\n".into()),
        ..Default::default()
    });
    let _first = RawConn::connect(node.addr()).expect("connect");
    let _second = RawConn::connect(node.addr()).expect("the kernel accepts the handshake");
    let refused = "rivulet_connections_refused_total{reason=\"ip_limit\"} ";
    wait_until(TIMEOUT, "the refusal is counted", || {
        get(node.admin_addr(), "/metrics").is_some_and(|(_, body)| {
            body.lines()
                .filter_map(|l| l.strip_prefix(refused))
                .any(|v| v.parse::<u64>().is_ok_and(|n| n >= 1))
        })
    });
}

fn under_replicated_line(topic: &str, value: u8) -> String {
    format!("rivulet_partition_under_replicated{{topic=\"{topic}\",partition=\"0\"}} {value}\n")
}

/// A follower dies: its leader reports the partition under-replicated. It restarts cut off
/// from the cluster: its Kafka port answers, but /ready stays 503 with the reason, until the
/// links heal; then it is ready and the partition is fully replicated again.
#[test]
fn ready_only_when_a_restarted_node_serves_and_under_replication_is_reported() {
    let mut cluster = Cluster::start(
        3,
        ClusterOptions {
            config_toml: Some(
                "replicas_start_wait_ms = 1000\n[cluster]\nreplica_lag_max_ms = 500\n".into(),
            ),
            ..Default::default()
        },
    );
    let topic = unique_name("admin-ready");
    cluster.create_replicated_topic(&topic, 1);
    cluster.wait_for_full_isr(&topic, 1);
    for id in cluster.ids() {
        let admin = cluster.node(id).admin_addr();
        wait_until(TIMEOUT, "every node is ready", || {
            get(admin, "/ready").is_some_and(|(s, _)| s == 200)
        });
    }
    let leader = cluster.leader_of(&topic, 0);
    let controller = cluster.controller();
    let victim = cluster
        .ids()
        .into_iter()
        .find(|&id| id != leader && id != controller)
        .expect("a node that is neither leader nor controller");
    let leader_admin = cluster.node(leader).admin_addr();
    cluster.kill9(victim);
    wait_until(
        TIMEOUT,
        "the leader reports the partition under-replicated",
        || {
            get(leader_admin, "/metrics")
                .is_some_and(|(_, b)| b.contains(&under_replicated_line(&topic, 1)))
        },
    );
    let m = Scrape::take(cluster.node(leader));
    let tp = [("topic", topic.as_str()), ("partition", "0")];
    assert_eq!(m.value("rivulet_partition_isr_size", &tp), 2.0);
    assert_eq!(m.value("rivulet_partition_replicas", &tp), 3.0);
    let status = get_json(leader_admin, "/v1/cluster");
    assert!(
        status["under_replicated"]
            .as_array()
            .expect("under_replicated")
            .iter()
            .any(|p| p["topic"] == topic.as_str() && p["isr"].as_array().map(Vec::len) == Some(2)),
        "{status}"
    );

    // Restart the victim with its node-to-node links cut.
    cluster.isolate(victim);
    cluster.respawn(victim);
    let admin = cluster.node(victim).admin_addr();
    wait_until(
        TIMEOUT,
        "the restarted node's admin endpoint answers",
        || get(admin, "/health").is_some(),
    );
    cluster
        .node_mut(victim)
        .wait_ready(TIMEOUT)
        .expect("the Kafka listener answers");
    let (code, body) = get(admin, "/ready").expect("ready answered");
    assert_eq!(code, 503, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["ready"], false);
    assert!(
        body["reasons"].to_string().contains("lease"),
        "the reason names the lease: {body}"
    );

    cluster.heal();
    wait_until(TIMEOUT, "the restarted node is ready", || {
        get(admin, "/ready").is_some_and(|(s, _)| s == 200)
    });
    let leader = cluster.leader_of(&topic, 0);
    let leader_admin = cluster.node(leader).admin_addr();
    wait_until(TIMEOUT, "the partition is fully replicated again", || {
        get(leader_admin, "/metrics")
            .is_some_and(|(_, b)| b.contains(&under_replicated_line(&topic, 0)))
    });
}
