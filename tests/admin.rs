//! Admin APIs as Kafka's own tools and admin clients use them (issue 9, defect 10):
//! authorized operations, DescribeConfigs types / synonyms / broker and group resources,
//! IncrementalAlterConfigs, DeleteRecords, DescribeLogDirs and CreatePartitions with explicit
//! replica assignments. Driven by kafka-python's KafkaAdminClient (tests/clients/admin_tool.py)
//! and, where the field itself matters, by raw wire requests.

mod harness;

use std::time::Duration;

use harness::wire::{self, RawConn};
use harness::{python_client, unique_name, wait_until, Node};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    DescribeConfigsRequest, MetadataRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn admin_tool(node: &Node, command: &str, topic: &str) -> Value {
    let args = [
        command.to_string(),
        "--bootstrap".to_string(),
        node.bootstrap(),
        "--topic".to_string(),
        topic.to_string(),
    ];
    let (out, summary) = python_client("admin_tool.py", "kafka", &args, SCRIPT_TIMEOUT);
    out.assert_success();
    summary.unwrap_or_else(|| panic!("admin_tool.py printed no JSON summary:\n{out}"))
}

/// One pass over every admin call kafka-python makes, then a restart: DeleteRecords must be
/// durable.
#[test]
fn kafka_python_admin_client_round_trip() {
    let mut node = Node::start();
    let topic = unique_name("admin");
    let v = admin_tool(&node, "scenario", &topic);
    let show = serde_json::to_string_pretty(&v).unwrap_or_default();

    // kafka-python decodes authorized operations as a bitfield: i32::MIN (bit 31) used to
    // crash it ("31 is not a valid ACLOperation").
    for (what, err) in [
        ("describe_cluster", "describe_cluster_error"),
        ("describe_topics", "describe_topics_error"),
        ("describe_groups", "describe_groups_error"),
    ] {
        assert_eq!(v[err], Value::Null, "{what} failed:\n{show}");
    }
    let names = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        names("cluster_operations").contains(&"IDEMPOTENT_WRITE".to_string())
            && names("cluster_operations").contains(&"ALTER_CONFIGS".to_string()),
        "{show}"
    );
    assert_eq!(names("topic_operations").len(), 8, "{show}");
    assert!(
        names("group_operations").contains(&"DELETE".to_string()),
        "{show}"
    );

    // DeleteRecords: the low watermark moves inside the only segment; past the high
    // watermark is OFFSET_OUT_OF_RANGE; reads below the start are out of range.
    assert_eq!(v["delete_records_error"], Value::Null, "{show}");
    assert_eq!(v["low_watermark"], json!(4), "{show}");
    assert_eq!(
        v["delete_past_hw_error"],
        json!("OffsetOutOfRangeError"),
        "{show}"
    );
    assert_eq!(v["earliest"], json!(4), "{show}");
    assert_ne!(v["read_below_start_error"], Value::Null, "{show}");
    assert_eq!(v["read_from_start"], json!([4, 5, 6, 7, 8, 9]), "{show}");

    // DescribeConfigs: Kafka's types, synonyms, broker and group resources.
    let types = &v["topic_config_types"];
    assert_eq!(types["retention.ms"], json!("LONG"), "{show}");
    assert_eq!(types["cleanup.policy"], json!("LIST"), "{show}");
    assert_eq!(types["max.message.bytes"], json!("INT"), "{show}");
    assert_eq!(types["compression.type"], json!("STRING"), "{show}");
    // Kafka's chain of retention.ms is empty at the built-in value (log.retention.hours).
    assert_eq!(v["retention_synonyms"], json!([]), "{show}");
    let broker = &v["broker_configs"];
    assert_eq!(broker["log.retention.ms"][1], json!("LONG"), "{show}");
    assert_eq!(
        broker["auto.create.topics.enable"][1],
        json!("BOOLEAN"),
        "{show}"
    );
    // Built in, not set in a config file.
    assert_eq!(
        broker["num.partitions"][2],
        json!("DEFAULT_CONFIG"),
        "{show}"
    );
    assert_eq!(v["group_configs_error"], Value::Null, "{show}");
    assert_eq!(
        v["group_configs"]["consumer.session.timeout.ms"][1],
        json!("INT"),
        "{show}"
    );

    // IncrementalAlterConfigs on topics; clear refusals for brokers and groups.
    let ok = |key: &str| json!({ (format!("topic/{topic}")): "ok" }) == v[key];
    assert!(ok("set_retention"), "{show}");
    assert_eq!(
        v["after_set"],
        json!({"retention.ms": ["3600000", "DYNAMIC_TOPIC_CONFIG"], "segment.ms": ["600000", "DYNAMIC_TOPIC_CONFIG"]}),
        "{show}"
    );
    assert!(ok("delete_segment_ms"), "{show}");
    assert_eq!(
        v["after_delete"]["segment.ms"][1],
        json!("DEFAULT_CONFIG"),
        "{show}"
    );
    assert_eq!(
        v["after_delete"]["retention.ms"][0],
        json!("3600000"),
        "{show}"
    );
    assert_eq!(
        v["append_non_list"],
        json!({ (format!("topic/{topic}")): "InvalidConfigurationError" }),
        "{show}"
    );
    assert!(ok("validate_only"), "{show}");
    assert_eq!(
        v["retention_after_validate_only"],
        json!("3600000"),
        "{show}"
    );
    assert_eq!(
        v["alter_broker"],
        json!({"broker/1": "InvalidRequestError"}),
        "{show}"
    );
    assert!(
        v["alter_messages"]["broker/1"]
            .as_str()
            .is_some_and(|m| m.contains("Cannot update these configs dynamically")),
        "{show}"
    );
    // Group configs are dynamic (within the broker's bounds).
    assert_eq!(
        v["alter_group"],
        json!({"group/admin-tool-group": "ok"}),
        "{show}"
    );

    // DescribeLogDirs: the node's data dir, this partition's bytes, the volume's space.
    assert_eq!(v["describe_log_dirs_error"], Value::Null, "{show}");
    let dirs = v["log_dirs"].as_array().cloned().unwrap_or_default();
    assert_eq!(dirs.len(), 1, "{show}");
    assert!(dirs[0]["total_bytes"].as_i64().unwrap_or(0) > 0, "{show}");
    assert!(dirs[0]["usable_bytes"].as_i64().unwrap_or(0) > 0, "{show}");
    assert!(
        dirs[0]["partitions"][format!("{topic}/0")]
            .as_i64()
            .unwrap_or(0)
            > 0,
        "{show}"
    );

    // CreatePartitions honours explicit assignments and refuses bad ones.
    for key in [
        "grow_unknown_node",
        "grow_wrong_replication_factor",
        "grow_wrong_count",
    ] {
        assert_eq!(
            v[key],
            json!("InvalidReplicationAssignmentError"),
            "{key}:\n{show}"
        );
    }
    assert_eq!(v["grow_valid"], json!("ok"), "{show}");
    assert_eq!(v["partitions_after"], json!({"0": [1], "1": [1]}), "{show}");

    node.terminate();
    node.restart();
    let after = admin_tool(&node, "earliest", &topic);
    assert_eq!(
        after["earliest"],
        json!(4),
        "the log start offset set by DeleteRecords must survive a restart"
    );
}

/// Authorized operations are Kafka's "omitted" value (i32::MIN) unless asked for, and the
/// bitfield of every operation on the resource type when asked (no ACLs: all allowed).
#[test]
fn metadata_authorized_operations_only_when_asked() {
    let node = Node::start();
    let topic = unique_name("ops");
    harness::kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    for (asked, topic_ops) in [(false, i32::MIN), (true, 3576)] {
        let mut t = MetadataRequestTopic::default();
        t.name = Some(TopicName(StrBytes::from_string(topic.clone())));
        let mut req = MetadataRequest::default();
        req.topics = Some(vec![t]);
        req.include_topic_authorized_operations = asked;
        req.include_cluster_authorized_operations = asked;
        let r = conn.request(&req, 10).expect("metadata v10");
        assert_eq!(r.topics.len(), 1);
        assert_eq!(
            r.topics[0].topic_authorized_operations, topic_ops,
            "asked={asked}"
        );
        let cluster_ops = if asked { 8096 } else { i32::MIN };
        assert_eq!(
            r.cluster_authorized_operations, cluster_ops,
            "asked={asked}"
        );
    }
}

/// Metadata v12 by topic id: the id is the key even when the name is the empty string, which
/// is what the Java client sends for the topics of a KIP-848 assignment and for
/// `describeTopics(TopicCollection.ofTopicIds(..))` (issue 18; java_clients covers the client).
#[test]
fn metadata_by_topic_id_ignores_an_empty_name() {
    let node = Node::start();
    let topic = unique_name("by-id");
    harness::kafka::create_topic(&node.bootstrap(), &topic, 2, &[]);
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let by_name = |name: &str| {
        let mut t = MetadataRequestTopic::default();
        t.name = Some(TopicName(StrBytes::from_string(name.to_string())));
        t
    };
    let mut req = MetadataRequest::default();
    req.topics = Some(vec![by_name(&topic)]);
    let id = conn.request(&req, 12).expect("metadata v12").topics[0].topic_id;
    assert!(!id.is_nil(), "Metadata v12 names the topic id");

    let mut t = by_name("");
    t.topic_id = id;
    req.topics = Some(vec![t]);
    let r = conn.request(&req, 12).expect("metadata v12 by id");
    assert_eq!(r.topics.len(), 1);
    let found = &r.topics[0];
    assert_eq!(
        found.error_code, 0,
        "lookup by id with name \"\": {found:?}"
    );
    assert_eq!(found.topic_id, id);
    assert_eq!(
        found.name.as_ref().map(|n| n.0.as_str()),
        Some(topic.as_str())
    );
    assert_eq!(found.partitions.len(), 2);
}

/// DescribeConfigs v4 on the wire: Kafka's type codes and, when asked, documentation.
#[test]
fn describe_configs_reports_types_and_documentation() {
    let node = Node::start();
    let topic = unique_name("types");
    harness::kafka::create_topic(&node.bootstrap(), &topic, 1, &[("retention.ms", "60000")]);
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let mut res = DescribeConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = StrBytes::from_string(topic.clone());
    // Null asks for every key (an empty list asks for none).
    res.configuration_keys = None;
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    req.include_documentation = true;
    req.include_synonyms = true;
    let r = conn.request(&req, 4).expect("describe configs v4");
    let configs = &r.results[0].configs;
    let entry = |name: &str| {
        configs
            .iter()
            .find(|c| c.name.as_str() == name)
            .unwrap_or_else(|| panic!("{name} missing from {configs:?}"))
    };
    // Kafka's ConfigType codes: INT 3, LONG 5, LIST 7 (0, UNKNOWN, was reported before).
    assert_eq!(entry("retention.ms").config_type, 5);
    assert_eq!(entry("segment.bytes").config_type, 3);
    assert_eq!(entry("cleanup.policy").config_type, 7);
    assert!(configs.iter().all(|c| c.config_type != 0), "{configs:?}");
    assert!(
        configs.iter().all(|c| c.documentation.is_some()),
        "{configs:?}"
    );
    // The override first, then the broker chain it hides; as in Kafka, the built-in
    // retention is on log.retention.hours, which a chain of log.retention.ms leaves out.
    let synonyms = |key: &str| -> Vec<(&str, i8)> {
        entry(key)
            .synonyms
            .iter()
            .map(|s| (s.name.as_str(), s.source))
            .collect()
    };
    assert_eq!(synonyms("retention.ms"), [("retention.ms", 1)]);
    assert_eq!(synonyms("segment.bytes"), [("log.segment.bytes", 5)]);
}

/// Broker DescribeConfigs with Kafka 4.3.1's sources and time synonyms (as its
/// `kafka-configs --describe --all` shows them): a read-only setting is STATIC_BROKER_CONFIG
/// when the config file sets it, even to the built-in value, and DEFAULT_CONFIG when it is
/// built in (it was STATIC_BROKER_CONFIG for both); the built-in retention and roll times are
/// on the hour keys, and the millisecond keys are null until set (they had the value and no
/// hour keys).
#[test]
fn broker_config_sources_and_time_synonyms_as_kafka() {
    const STATIC: i8 = 4;
    let node = Node::start_with(harness::NodeOptions {
        config_toml: Some("num_partitions = 1\n".to_string()),
        ..harness::NodeOptions::default()
    });
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let mut res = DescribeConfigsResource::default();
    res.resource_type = 4;
    res.resource_name = StrBytes::from_string("1".to_string());
    res.configuration_keys = None;
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    let r = conn.request(&req, 4).expect("describe configs v4");
    assert_eq!(r.results[0].error_code, 0, "{:?}", r.results[0]);
    let got = |name: &str| {
        let c = r.results[0]
            .configs
            .iter()
            .find(|c| c.name.as_str() == name)
            .unwrap_or_else(|| panic!("{name} missing from {:?}", r.results[0].configs));
        (
            c.value.as_ref().map(|v| v.to_string()),
            c.config_source,
            c.read_only,
        )
    };
    let some = |v: &str| Some(v.to_string());
    assert_eq!(got("num.partitions"), (some("1"), STATIC, true));
    assert_eq!(
        got("auto.create.topics.enable"),
        (some("true"), DEFAULT, true)
    );
    assert_eq!(
        got("offsets.retention.minutes"),
        (some("10080"), DEFAULT, true)
    );
    assert_eq!(got("log.retention.ms"), (None, DEFAULT, false));
    assert_eq!(got("log.retention.minutes"), (None, DEFAULT, true));
    assert_eq!(got("log.retention.hours"), (some("168"), DEFAULT, true));
    assert_eq!(got("log.roll.ms"), (None, DEFAULT, false));
    assert_eq!(got("log.roll.hours"), (some("168"), DEFAULT, true));
    assert_eq!(got("log.flush.interval.ms"), (None, DEFAULT, false));
    assert_eq!(
        got("log.flush.scheduler.interval.ms"),
        (some("9223372036854775807"), DEFAULT, true)
    );
    assert_eq!(
        got("log.segment.bytes"),
        (some("1073741824"), DEFAULT, false)
    );
}

// ---------------------------------------------------------------------------------------------
// Dynamic broker and group configs (kafka-configs --alter --entity-type brokers / groups)
// ---------------------------------------------------------------------------------------------

/// Kafka's DescribeConfigs sources.
const DYNAMIC_BROKER: i8 = 2;
const DYNAMIC_DEFAULT_BROKER: i8 = 3;
const DEFAULT: i8 = 5;
const DYNAMIC_GROUP: i8 = 8;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;
const MESSAGE_TOO_LARGE: i16 = 10;

/// IncrementalAlterConfigs of one resource: (error code, message).
fn incremental_alter(
    conn: &mut RawConn,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> (i16, String) {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::IncrementalAlterConfigsRequest;
    let mut res = AlterConfigsResource::default();
    res.resource_type = resource_type;
    res.resource_name = StrBytes::from_string(name.to_string());
    res.configs = ops
        .iter()
        .map(|(k, op, v)| {
            let mut c = AlterableConfig::default();
            c.name = StrBytes::from_string(k.to_string());
            c.config_operation = *op;
            c.value = v.map(|v| StrBytes::from_string(v.to_string()));
            c
        })
        .collect();
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![res];
    req.validate_only = validate_only;
    let r = conn
        .request(&req, 1)
        .expect("IncrementalAlterConfigs v1 must be answered");
    let out = &r.responses[0];
    (
        out.error_code,
        out.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

/// Legacy AlterConfigs (replaces the resource's whole set): the error code.
fn legacy_alter(
    conn: &mut RawConn,
    resource_type: i8,
    name: &str,
    configs: &[(&str, &str)],
) -> i16 {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::AlterConfigsRequest;
    let mut res = AlterConfigsResource::default();
    res.resource_type = resource_type;
    res.resource_name = StrBytes::from_string(name.to_string());
    res.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = AlterableConfig::default();
            c.name = StrBytes::from_string(k.to_string());
            c.value = Some(StrBytes::from_string(v.to_string()));
            c
        })
        .collect();
    let mut req = AlterConfigsRequest::default();
    req.resources = vec![res];
    let r = conn
        .request(&req, 1)
        .expect("AlterConfigs v1 must be answered");
    r.responses[0].error_code
}

/// One described config: value, source and synonyms as (name, value, source).
type DescribedConfig = (String, i8, Vec<(String, String, i8)>);

/// DescribeConfigs v4 with synonyms: every config of the resource by name.
fn describe(
    conn: &mut RawConn,
    resource_type: i8,
    name: &str,
) -> std::collections::BTreeMap<String, DescribedConfig> {
    let mut res = DescribeConfigsResource::default();
    res.resource_type = resource_type;
    res.resource_name = StrBytes::from_string(name.to_string());
    res.configuration_keys = None;
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    req.include_synonyms = true;
    let r = conn
        .request(&req, 4)
        .expect("DescribeConfigs v4 must be answered");
    assert_eq!(
        r.results[0].error_code, 0,
        "describe {name:?}: {:?}",
        r.results[0]
    );
    r.results[0]
        .configs
        .iter()
        .map(|c| {
            let synonyms = c
                .synonyms
                .iter()
                .map(|s| {
                    (
                        s.name.to_string(),
                        s.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                        s.source,
                    )
                })
                .collect();
            let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
            (c.name.to_string(), (value, c.config_source, synonyms))
        })
        .collect()
}

/// A batch of `bytes` value bytes (plus ~70 bytes of framing).
fn batch_of(bytes: usize) -> Vec<u8> {
    let value = "x".repeat(bytes);
    wire::BatchSpec::new(&[("k", value.as_str())]).encode()
}

/// ConsumerGroupHeartbeat v1 join of `group`: (error code, heartbeat interval it gives),
/// once the group's coordinator is loaded (the first group lookup creates
/// `__consumer_offsets`; until its partitions are loaded the answer is a coordinator error).
fn consumer_join(conn: &mut RawConn, group: &str, topic: &str) -> (i16, i32) {
    const COORDINATOR_ERRORS: [i16; 3] = [14, 15, 16];
    let mut out = (0, 0);
    wait_until(
        Duration::from_secs(30),
        "the group coordinator answers",
        || {
            out = consumer_join_once(conn, group, topic);
            !COORDINATOR_ERRORS.contains(&out.0)
        },
    );
    out
}

fn consumer_join_once(conn: &mut RawConn, group: &str, topic: &str) -> (i16, i32) {
    use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, GroupId};
    let mut req = ConsumerGroupHeartbeatRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    req.member_id = StrBytes::from_string(format!("{group}-member"));
    req.member_epoch = 0;
    req.rebalance_timeout_ms = 30_000;
    req.subscribed_topic_names = Some(vec![TopicName(StrBytes::from_string(topic.to_string()))]);
    req.topic_partitions = Some(Vec::new());
    let r = conn
        .request(&req, 1)
        .expect("ConsumerGroupHeartbeat v1 must be answered");
    (r.error_code, r.heartbeat_interval_ms)
}

/// Dynamic broker configs: a cluster-wide default reaches an existing topic without an
/// override at once (a produce over the new message.max.bytes is refused), a per-broker value
/// wins over it, DescribeConfigs shows Kafka's sources and synonym chain, read-only and
/// unknown keys are refused with Kafka's codes, legacy AlterConfigs replaces the set, a group
/// config changes what the KIP-848 coordinator gives that group's members, and all of it
/// survives a restart.
#[test]
fn dynamic_broker_and_group_configs() {
    const SET: i8 = 0;
    const DELETE: i8 = 1;
    const BROKER: i8 = 4;
    const GROUP: i8 = 32;
    let mut node = Node::start();
    let topic = unique_name("dyn");
    harness::kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let pv = wire::negotiate::<ProduceRequest>(&mut conn, 12);
    let produce = |conn: &mut RawConn| wire::produce(conn, pv, &topic, batch_of(3000)).0;
    assert_eq!(
        produce(&mut conn),
        0,
        "a 3 KB batch fits the built-in 1 MB limit"
    );

    // Cluster-wide dynamic default: the topic follows it without a restart.
    let (c, m) = incremental_alter(
        &mut conn,
        BROKER,
        "",
        &[
            ("message.max.bytes", SET, Some("2048")),
            ("log.retention.ms", SET, Some("86400000")),
        ],
        false,
    );
    assert_eq!(c, 0, "{m}");
    assert_eq!(produce(&mut conn), MESSAGE_TOO_LARGE);
    let t = describe(&mut conn, 2, &topic);
    assert_eq!(
        t["max.message.bytes"],
        (
            "2048".to_string(),
            DYNAMIC_DEFAULT_BROKER,
            vec![
                (
                    "message.max.bytes".into(),
                    "2048".into(),
                    DYNAMIC_DEFAULT_BROKER
                ),
                ("message.max.bytes".into(), "1048588".into(), DEFAULT),
            ]
        )
    );
    assert_eq!(t["retention.ms"].0, "86400000");
    let d = describe(&mut conn, BROKER, "");
    assert_eq!(
        d.keys().cloned().collect::<Vec<_>>(),
        ["log.retention.ms", "message.max.bytes"],
        "the default resource lists only the dynamic defaults that are set"
    );
    assert_eq!(d["message.max.bytes"].1, DYNAMIC_DEFAULT_BROKER);

    // Per-broker value wins over the cluster default.
    let (c, m) = incremental_alter(
        &mut conn,
        BROKER,
        "1",
        &[("message.max.bytes", SET, Some("100000"))],
        false,
    );
    assert_eq!(c, 0, "{m}");
    assert_eq!(produce(&mut conn), 0, "the per-broker 100 KB limit applies");
    let sources = |d: &DescribedConfig| d.2.iter().map(|s| s.2).collect::<Vec<_>>();
    let t = describe(&mut conn, 2, &topic);
    assert_eq!(
        (t["max.message.bytes"].0.as_str(), t["max.message.bytes"].1),
        ("100000", DYNAMIC_BROKER)
    );
    assert_eq!(
        sources(&t["max.message.bytes"]),
        [DYNAMIC_BROKER, DYNAMIC_DEFAULT_BROKER, DEFAULT]
    );
    let b = describe(&mut conn, BROKER, "1");
    assert_eq!(b["message.max.bytes"].0, "100000");
    assert_eq!(b["message.max.bytes"].1, DYNAMIC_BROKER);
    assert_eq!(b["log.retention.ms"].1, DYNAMIC_DEFAULT_BROKER);

    // Refusals: read-only (Kafka's INVALID_REQUEST and words), unknown keys and bad values
    // (INVALID_CONFIG); validate_only changes nothing.
    let (c, m) = incremental_alter(
        &mut conn,
        BROKER,
        "1",
        &[("broker.id", SET, Some("5"))],
        false,
    );
    assert_eq!(c, INVALID_REQUEST, "{m}");
    assert!(m.contains("Cannot update these configs dynamically"), "{m}");
    let (c, m) = incremental_alter(
        &mut conn,
        BROKER,
        "",
        &[("no.such.config", SET, Some("1"))],
        false,
    );
    assert_eq!(c, INVALID_CONFIG, "{m}");
    assert!(m.contains("no.such.config"), "{m}");
    let (c, m) = incremental_alter(
        &mut conn,
        BROKER,
        "",
        &[("log.retention.ms", SET, Some("soon"))],
        false,
    );
    assert_eq!(c, INVALID_CONFIG, "{m}");
    let (c, m) = incremental_alter(
        &mut conn,
        BROKER,
        "",
        &[("log.retention.ms", SET, Some("1000"))],
        true,
    );
    assert_eq!(c, 0, "{m}");
    assert_eq!(
        describe(&mut conn, BROKER, "")["log.retention.ms"].0,
        "86400000"
    );

    // Legacy AlterConfigs replaces the default resource's whole set.
    assert_eq!(
        legacy_alter(&mut conn, BROKER, "", &[("log.retention.ms", "90000000")]),
        0
    );
    let d = describe(&mut conn, BROKER, "");
    assert_eq!(d.keys().cloned().collect::<Vec<_>>(), ["log.retention.ms"]);

    // Group config: bounded by the broker's group.consumer.min/max.*, applied by the
    // coordinator to that group's members.
    let group = unique_name("dyn-group");
    let (c, m) = incremental_alter(
        &mut conn,
        GROUP,
        &group,
        &[("consumer.session.timeout.ms", SET, Some("1000"))],
        false,
    );
    assert_eq!(
        c, INVALID_CONFIG,
        "below group.consumer.min.session.timeout.ms: {m}"
    );
    let (c, m) = incremental_alter(
        &mut conn,
        GROUP,
        &group,
        &[
            ("consumer.heartbeat.interval.ms", SET, Some("7000")),
            ("consumer.session.timeout.ms", SET, Some("50000")),
        ],
        false,
    );
    assert_eq!(c, 0, "{m}");
    let g = describe(&mut conn, GROUP, &group);
    assert_eq!(
        g["consumer.heartbeat.interval.ms"],
        (
            "7000".to_string(),
            DYNAMIC_GROUP,
            vec![
                (
                    "consumer.heartbeat.interval.ms".into(),
                    "7000".into(),
                    DYNAMIC_GROUP
                ),
                (
                    "group.consumer.heartbeat.interval.ms".into(),
                    "5000".into(),
                    DEFAULT
                ),
            ]
        )
    );
    assert_eq!(consumer_join(&mut conn, &group, &topic), (0, 7000));
    let other = unique_name("plain-group");
    assert_eq!(
        consumer_join(&mut conn, &other, &topic),
        (0, 5000),
        "other groups keep the node's"
    );

    // Everything is in the controller's metadata: a restart keeps it.
    drop(conn);
    node.terminate();
    node.restart();
    let mut conn = RawConn::connect(node.addr()).expect("connect after restart");
    let t = describe(&mut conn, 2, &topic);
    assert_eq!(
        (t["max.message.bytes"].0.as_str(), t["max.message.bytes"].1),
        ("100000", DYNAMIC_BROKER)
    );
    assert_eq!(
        (t["retention.ms"].0.as_str(), t["retention.ms"].1),
        ("90000000", DYNAMIC_DEFAULT_BROKER)
    );
    assert_eq!(
        describe(&mut conn, GROUP, &group)["consumer.heartbeat.interval.ms"].0,
        "7000"
    );

    // Deleting the per-broker value restores the built-in limit.
    let (c, m) = incremental_alter(
        &mut conn,
        BROKER,
        "1",
        &[("message.max.bytes", DELETE, None)],
        false,
    );
    assert_eq!(c, 0, "{m}");
    let t = describe(&mut conn, 2, &topic);
    assert_eq!(
        (t["max.message.bytes"].0.as_str(), t["max.message.bytes"].1),
        ("1048588", DEFAULT)
    );
    let pv = wire::negotiate::<ProduceRequest>(&mut conn, 12);
    assert_eq!(wire::produce(&mut conn, pv, &topic, batch_of(3000)).0, 0);
}

/// A replica of `topic`/0 that is not `leader`.
fn follower_of(cluster: &mut harness::cluster::Cluster, topic: &str, leader: u32) -> u32 {
    let state = cluster
        .partition_state(topic, 0)
        .unwrap_or_else(|| panic!("no node knows {topic}/0"));
    state
        .replicas
        .iter()
        .filter_map(|r| u32::try_from(*r).ok())
        .find(|r| *r != leader)
        .unwrap_or_else(|| panic!("{topic}/0 has no follower: {state:?}"))
}

/// Bytes of `topic`/0 in the log dir of the node `conn` talks to (DescribeLogDirs v4).
fn partition_size(conn: &mut RawConn, topic: &str) -> i64 {
    use kafka_protocol::messages::DescribeLogDirsRequest;
    let mut req = DescribeLogDirsRequest::default();
    // Null asks for every topic (an empty list for none).
    req.topics = None;
    let r = conn
        .request(&req, 4)
        .expect("DescribeLogDirs v4 must be answered");
    r.results
        .iter()
        .flat_map(|d| d.topics.iter())
        .filter(|t| t.name.as_str() == topic)
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == 0)
        .map_or(0, |p| p.partition_size)
}

/// On three nodes: a follower whose per-broker limit is lower still replicates the leader's
/// batches; a cluster-wide default set through one node reaches the leader on another
/// node, survives the loss of the controller leader (the new one keeps it and commits further
/// changes) and is in the image of the old controller when it comes back.
#[test]
fn dynamic_default_reaches_every_node_and_outlives_the_controller() {
    use harness::cluster::{Cluster, ClusterOptions};
    const SET: i8 = 0;
    const BROKER: i8 = 4;
    let mut cluster = Cluster::start(3, ClusterOptions::default());
    let topic = unique_name("dyn3");
    cluster.create_topic(&topic, 1, 3, 1);
    let controller = cluster.controller();
    let leader = cluster.leader_of(&topic, 0);
    let via = cluster
        .ids()
        .into_iter()
        .find(|&id| id != controller && id != leader)
        .unwrap_or(if leader == 1 { 2 } else { 1 });
    let mut conn = RawConn::connect(cluster.node(via).addr()).expect("connect");

    // A follower with a smaller per-broker limit still copies the leader's larger batches
    // (the limit is the leader's, for clients; a follower refusing them stalled replication).
    let follower_name = follower_of(&mut cluster, &topic, leader).to_string();
    let follower: u32 = follower_name.parse().unwrap_or(0);
    let (c, m) = incremental_alter(
        &mut conn,
        BROKER,
        &follower_name,
        &[("message.max.bytes", SET, Some("2048"))],
        false,
    );
    assert_eq!(c, 0, "{m}");
    let mut to_leader = RawConn::connect(cluster.node(leader).addr()).expect("connect");
    let pv = wire::negotiate::<ProduceRequest>(&mut to_leader, 12);
    assert_eq!(
        wire::produce(&mut to_leader, pv, &topic, batch_of(3000)).0,
        0
    );
    drop(to_leader);
    let mut on_follower = RawConn::connect(cluster.node(follower).addr()).expect("connect");
    let mut size = 0;
    harness::try_wait_until(
        Duration::from_secs(30),
        "the follower copies the batch",
        || {
            size = partition_size(&mut on_follower, &topic);
            size >= 3000
        },
    )
    .unwrap_or_else(|e| {
        let sizes: Vec<(u32, i64)> = cluster
            .ids()
            .into_iter()
            .map(|id| {
                let size = RawConn::connect(cluster.node(id).addr())
                    .map_or(-1, |mut c| partition_size(&mut c, &topic));
                (id, size)
            })
            .collect();
        panic!("{e}: node {follower} holds {size} bytes of {topic}/0; (node, bytes): {sizes:?}, leader {leader}")
    });
    drop(on_follower);
    let (c, m) = incremental_alter(
        &mut conn,
        BROKER,
        &follower_name,
        &[("message.max.bytes", 1, None)],
        false,
    );
    assert_eq!(c, 0, "{m}");

    let (c, m) = incremental_alter(
        &mut conn,
        BROKER,
        "",
        &[("message.max.bytes", SET, Some("2048"))],
        false,
    );
    assert_eq!(c, 0, "{m}");
    drop(conn);

    // The leader's replica refuses what its new limit does not allow.
    let produce_to_leader = |cluster: &mut Cluster| {
        let leader = cluster.leader_of(&topic, 0);
        let Ok(mut conn) = RawConn::connect(cluster.node(leader).addr()) else {
            return -1;
        };
        let pv = wire::negotiate::<ProduceRequest>(&mut conn, 12);
        wire::produce(&mut conn, pv, &topic, batch_of(3000)).0
    };
    wait_until(
        Duration::from_secs(30),
        "the leader applies the default",
        || produce_to_leader(&mut cluster) == MESSAGE_TOO_LARGE,
    );

    // Without the controller leader: the new one has the value and commits a change.
    cluster.kill9(controller);
    let successor = cluster.wait_for_controller(|c| c != controller);
    let mut conn = RawConn::connect(cluster.node(successor).addr()).expect("connect");
    assert_eq!(
        describe(&mut conn, BROKER, "")["message.max.bytes"].0,
        "2048"
    );
    let (c, m) = incremental_alter(
        &mut conn,
        BROKER,
        "",
        &[("log.retention.ms", SET, Some("86400000"))],
        false,
    );
    assert_eq!(c, 0, "{m}");
    drop(conn);
    wait_until(
        Duration::from_secs(30),
        "a surviving leader applies the default",
        || produce_to_leader(&mut cluster) == MESSAGE_TOO_LARGE,
    );

    // The old controller comes back with both values in its image.
    cluster.restart(controller);
    let mut conn = RawConn::connect(cluster.node(controller).addr()).expect("connect");
    let mut seen = None;
    wait_until(
        Duration::from_secs(30),
        "the restarted node has the defaults",
        || {
            let t = describe(&mut conn, 2, &topic);
            seen = Some((t["max.message.bytes"].clone(), t["retention.ms"].clone()));
            t["max.message.bytes"].1 == DYNAMIC_DEFAULT_BROKER && t["retention.ms"].0 == "86400000"
        },
    );
    assert_eq!(seen.map(|s| s.0 .0), Some("2048".to_string()));
}

/// DescribeTopicPartitions (KIP-966), which the Java admin client's describeTopics prefers to
/// Metadata: topics by name in name order, at most response_partition_limit partitions per
/// answer with a cursor to the next one, an unknown topic as UNKNOWN_TOPIC_OR_PARTITION, a
/// cursor outside the list as INVALID_REQUEST, and empty eligible-leader lists (Rivulet elects from the ISR only). It was not served.
#[test]
fn describe_topic_partitions_pages_with_a_cursor() {
    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
    use kafka_protocol::messages::DescribeTopicPartitionsRequest;
    let node = Node::start();
    let a = unique_name("dtp-a");
    let b = format!("{a}-b");
    let missing = format!("{a}-missing");
    harness::kafka::create_topic(&node.bootstrap(), &a, 3, &[]);
    harness::kafka::create_topic(&node.bootstrap(), &b, 2, &[]);
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let mut page = |cursor: Option<(&str, i32)>| {
        let mut req = DescribeTopicPartitionsRequest::default();
        // Out of order on purpose: the answer is in name order.
        req.topics = [&missing, &b, &a]
            .iter()
            .map(|n| {
                let mut t = TopicRequest::default();
                t.name = TopicName(StrBytes::from_string(n.to_string()));
                t
            })
            .collect();
        req.response_partition_limit = 2;
        req.cursor = cursor.map(|(t, p)| {
            let mut c = Cursor::default();
            c.topic_name = TopicName(StrBytes::from_string(t.to_string()));
            c.partition_index = p;
            c
        });
        let r = conn
            .request(&req, 0)
            .expect("DescribeTopicPartitions v0 must be answered");
        for t in &r.topics {
            for p in &t.partitions {
                assert_eq!(p.eligible_leader_replicas, Some(Vec::new()), "{t:?}");
                assert_eq!(p.last_known_elr, Some(Vec::new()), "{t:?}");
                assert_eq!(p.leader_id.0, 1, "{t:?}");
            }
        }
        let topics: Vec<(String, i16, Vec<i32>)> = r
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                    t.error_code,
                    t.partitions.iter().map(|p| p.partition_index).collect(),
                )
            })
            .collect();
        let next = r
            .next_cursor
            .map(|c| (c.topic_name.to_string(), c.partition_index));
        (topics, next)
    };
    assert_eq!(
        page(None),
        (vec![(a.clone(), 0, vec![0, 1])], Some((a.clone(), 2)))
    );
    assert_eq!(
        page(Some((&a, 2))),
        (
            vec![(a.clone(), 0, vec![2]), (b.clone(), 0, vec![0])],
            Some((b.clone(), 1))
        )
    );
    assert_eq!(
        page(Some((&b, 1))),
        (
            vec![(b.clone(), 0, vec![1]), (missing.clone(), 3, vec![])],
            None
        )
    );
    // A cursor on a topic the request does not list is INVALID_REQUEST (42), as in Kafka.
    let (topics, next) = page(Some(("not-listed", 0)));
    assert!(
        topics.iter().all(|t| t.1 == 42) && topics.len() == 3,
        "{topics:?}"
    );
    assert_eq!(next, None);
}
