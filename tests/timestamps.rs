//! Record timestamps as the leader stores them, and offsets by timestamp (issue 9, defects 1
//! and 2): a batch's max timestamp is recomputed from its records, retention does not delete
//! data whose producer wrote -1 there, and ListOffsets answers at record granularity, with
//! the max-timestamp spec (-3) served.

mod harness;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness::wire::{self, RawConn, ERROR_NONE};
use harness::{kafka, unique_name, wait_until, Node, NodeOptions};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use rivulet_storage::batch::{BatchBuilder, Compression};

/// ListOffsets timestamps with a meaning (KIP-734 for -3).
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One ListOffsets query for partition 0: (error code, offset, timestamp).
fn list_offset(conn: &mut RawConn, version: i16, topic: &str, timestamp: i64) -> (i16, i64, i64) {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_current_leader_epoch(-1)
                .with_timestamp(timestamp)])]);
    let resp = conn
        .request(&req, version)
        .unwrap_or_else(|e| panic!("ListOffsets v{version} must be answered: {e}"));
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

/// Reads partition 0 of `topic` from `from` up to `until` (exclusive) with librdkafka.
fn read_offsets(node: &Node, topic: &str, from: i64, until: i64) -> Vec<(i64, Option<i64>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", node.bootstrap())
        .set("group.id", "rivulet-it-timestamps")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "error")
        .create()
        .expect("create consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(from))
        .expect("partition offset");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while out.last().map_or(from, |(o, _)| o + 1) < until {
        assert!(
            std::time::Instant::now() < deadline,
            "read {} of {} records of {topic} from offset {from}",
            out.len(),
            until - from
        );
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => out.push((m.offset(), m.timestamp().to_millis())),
            Some(Err(e)) => panic!("consuming {topic} from {from}: {e}"),
            None => {}
        }
    }
    out
}

/// The scenario: a producer writes -1 as each batch's max timestamp (sarama did) on a
/// topic with `retention.ms=1h` and small segments. Two batches a day old come first, each
/// filling a segment: retention must drop exactly those (which also shows it ran) and keep
/// every record of the -1 batches, whose records are minutes old.
#[test]
fn max_timestamp_minus_one_does_not_make_retention_delete_data() {
    let mut node = Node::start_with(NodeOptions {
        config_toml: Some("retention_check_interval_ms = 100\n".into()),
        ..NodeOptions::default()
    });
    let topic = unique_name("ts-minus-one");
    kafka::create_topic(
        &node.bootstrap(),
        &topic,
        1,
        &[("retention.ms", "3600000"), ("segment.bytes", "1024")],
    );
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let version = wire::negotiate::<ProduceRequest>(&mut conn, 12);
    let now = now_ms();

    let day_old = now - 24 * 3600 * 1000;
    let big = vec![b'o'; 1000];
    for i in 0..2i64 {
        let b = BatchBuilder::new(day_old + i)
            .record(day_old + i, Some(b"old"), Some(&big))
            .build();
        let (code, offset) = wire::produce(&mut conn, version, &topic, b);
        assert_eq!((code, offset), (ERROR_NONE, i), "day-old batch {i}");
    }
    let mut acked = 0i64;
    for i in 0..12i64 {
        let ts = now - 60_000 + i * 10;
        let b = BatchBuilder::new(ts)
            .record(ts, Some(b"k"), Some(&[b'v'; 200]))
            .record(ts + 5, Some(b"k"), Some(&[b'v'; 200]))
            .declared_max_timestamp(-1)
            .build();
        let (code, offset) = wire::produce(&mut conn, version, &topic, b);
        assert_eq!(code, ERROR_NONE, "batch {i} with max timestamp -1");
        assert_eq!(offset, 2 + acked);
        acked += 2;
    }
    let end = 2 + acked;

    let list_version = wire::negotiate::<ListOffsetsRequest>(&mut conn, 8);
    wait_until(
        Duration::from_secs(20),
        "retention drops the day-old segments",
        || list_offset(&mut conn, list_version, &topic, EARLIEST).1 >= 2,
    );
    // One retention pass drops every expired segment from the oldest on: had the -1 batches
    // looked expired, they would have gone in the same pass.
    assert_eq!(
        list_offset(&mut conn, list_version, &topic, EARLIEST),
        (ERROR_NONE, 2, -1),
        "only the day-old segments may be deleted"
    );
    let read = read_offsets(&node, &topic, 2, end);
    assert_eq!(
        read.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        (2..end).collect::<Vec<_>>(),
        "every acknowledged record of the -1 batches is readable"
    );
    // Fetchers see the recomputed max timestamp; records keep their own timestamps.
    assert_eq!(read[1].1, Some(now - 60_000 + 5));
    // Offset by timestamp finds the record, not -1.
    assert_eq!(
        list_offset(&mut conn, list_version, &topic, now - 60_000 + 12),
        (ERROR_NONE, 5, now - 60_000 + 15)
    );
    node.assert_alive("after retention");
}

/// Lookups by time answer the first record at or after the time inside a batch, through
/// librdkafka's `offsets_for_times` and the raw ListOffsets; -3 answers the first record with
/// the largest timestamp. The batch is compressed, so the leader decompresses to answer.
#[test]
fn offsets_for_times_are_record_granular_and_max_timestamp_is_served() {
    let node = Node::start();
    let topic = unique_name("ts-lookup");
    kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let version = wire::negotiate::<ProduceRequest>(&mut conn, 12);
    let t0 = now_ms() - 10_000;
    // Offsets 0..=4 with timestamps t0, t0+30, t0+20, t0+30, t0+10.
    let deltas = [0, 30, 20, 30, 10];
    let mut b = BatchBuilder::new(t0).compression(Compression::Gzip);
    for (i, d) in deltas.iter().enumerate() {
        b.push(t0 + d, Some(b"k"), Some(format!("v{i}").as_bytes()));
    }
    assert_eq!(
        wire::produce(&mut conn, version, &topic, b.build()),
        (ERROR_NONE, 0)
    );

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", node.bootstrap())
        .set("group.id", "rivulet-it-timestamps")
        .create()
        .expect("create consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(t0 + 15))
        .expect("partition timestamp");
    let found = consumer
        .offsets_for_times(tpl, Duration::from_secs(10))
        .expect("offsets_for_times");
    let elem = found
        .find_partition(&topic, 0)
        .expect("partition in answer");
    assert_eq!(
        elem.offset(),
        Offset::Offset(1),
        "offsets_for_times(t0+15): the first record at or after it is offset 1 (t0+30)"
    );

    let list_version = wire::negotiate::<ListOffsetsRequest>(&mut conn, 8);
    assert!(
        list_version >= 7,
        "ListOffsets v7 (max timestamp) is served"
    );
    let at = |conn: &mut RawConn, ts| list_offset(conn, list_version, &topic, ts);
    assert_eq!(at(&mut conn, t0), (ERROR_NONE, 0, t0));
    assert_eq!(at(&mut conn, t0 + 1), (ERROR_NONE, 1, t0 + 30));
    assert_eq!(at(&mut conn, t0 + 31), (ERROR_NONE, -1, -1));
    assert_eq!(
        at(&mut conn, MAX_TIMESTAMP),
        (ERROR_NONE, 1, t0 + 30),
        "-3: the first record with the largest timestamp"
    );
}

/// INVALID_TIMESTAMP.
const ERROR_INVALID_TIMESTAMP: i16 = 32;

/// `message.timestamp.before/after.max.ms` refuse records outside the window with
/// INVALID_TIMESTAMP (the after-window defaults to an hour, as in Kafka 4.0), and
/// `message.timestamp.type=LogAppendTime` stamps batches with the append time, which the
/// Produce response and ListOffsets report.
#[test]
fn timestamp_topic_configs_are_enforced() {
    let node = Node::start();
    let windowed = unique_name("ts-window");
    kafka::create_topic(
        &node.bootstrap(),
        &windowed,
        1,
        &[("message.timestamp.before.max.ms", "60000")],
    );
    let append_time = unique_name("ts-append");
    kafka::create_topic(
        &node.bootstrap(),
        &append_time,
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let version = wire::negotiate::<ProduceRequest>(&mut conn, 12);
    let one = |ts: i64| {
        BatchBuilder::new(ts)
            .record(ts, Some(b"k"), Some(b"v"))
            .build()
    };
    let now = now_ms();
    for (what, ts, want) in [
        (
            "two minutes old (before.max.ms=60000)",
            now - 120_000,
            ERROR_INVALID_TIMESTAMP,
        ),
        (
            "two hours ahead (after.max.ms default)",
            now + 7_200_000,
            ERROR_INVALID_TIMESTAMP,
        ),
        ("now", now, ERROR_NONE),
    ] {
        let (code, _) = wire::produce(&mut conn, version, &windowed, one(ts));
        assert_eq!(code, want, "{what}");
    }

    let before = now_ms();
    let resp = conn
        .request(
            &wire::produce_request(&append_time, 0, -1, one(1_000)),
            version,
        )
        .expect("produce answered");
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(
        p.error_code, ERROR_NONE,
        "LogAppendTime ignores the producer's time"
    );
    assert!(
        p.log_append_time_ms >= before && p.log_append_time_ms <= now_ms(),
        "log_append_time_ms {} is the append time",
        p.log_append_time_ms
    );
    let list_version = wire::negotiate::<ListOffsetsRequest>(&mut conn, 8);
    assert_eq!(
        list_offset(&mut conn, list_version, &append_time, MAX_TIMESTAMP),
        (ERROR_NONE, 0, p.log_append_time_ms)
    );
}
