//! Admin APIs as Kafka's own tools and admin clients use them (issue 9, defect 10):
//! authorized operations, DescribeConfigs types / synonyms / broker and group resources,
//! IncrementalAlterConfigs, DeleteRecords, DescribeLogDirs and CreatePartitions with explicit
//! replica assignments. Driven by kafka-python's KafkaAdminClient (tests/clients/admin_tool.py)
//! and, where the field itself matters, by raw wire requests.

mod harness;

use std::time::Duration;

use harness::wire::RawConn;
use harness::{python_client, unique_name, Node};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{DescribeConfigsRequest, MetadataRequest, TopicName};
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
    assert_eq!(
        v["retention_synonyms"],
        json!(["log.retention.ms"]),
        "{show}"
    );
    let broker = &v["broker_configs"];
    assert_eq!(broker["log.retention.ms"][1], json!("LONG"), "{show}");
    assert_eq!(
        broker["auto.create.topics.enable"][1],
        json!("BOOLEAN"),
        "{show}"
    );
    assert_eq!(
        broker["num.partitions"][2],
        json!("STATIC_BROKER_CONFIG"),
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
    assert_eq!(
        v["alter_group"],
        json!({"group/admin-tool-group": "InvalidRequestError"}),
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
    // The override first, then the broker default it hides.
    let synonyms: Vec<(&str, i8)> = entry("retention.ms")
        .synonyms
        .iter()
        .map(|s| (s.name.as_str(), s.source))
        .collect();
    assert_eq!(synonyms, [("retention.ms", 1), ("log.retention.ms", 5)]);
}
