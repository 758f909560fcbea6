//! Real Kafka clients against one `rivulet serve` node: kcat, confluent-kafka and kafka-python
//! (Python scripts in tests/clients), and rdkafka in-process.
//!
//! Each test checks the acknowledged history (docs/semantics.md): every record acknowledged
//! with acks=all is read back at its offset, in send order within a partition, exactly once.

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::kafka::{self, TestProducer};
use harness::{kcat, python_client, unique_name, Node};

#[test]
fn kcat_produces_consumes_and_lists_metadata() {
    let mut node = Node::start();
    let topic = unique_name("kcat");
    kafka::create_topic(&node.bootstrap(), &topic, 3, &[]);

    let lines: Vec<(String, String)> = (0..600)
        .map(|i| (format!("key-{}", i % 23), format!("value-{i:04}")))
        .collect();
    let input: String = lines.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    kcat(
        &node,
        &["-P", "-t", &topic, "-K:", "-X", "acks=all"],
        Some(input.into_bytes()),
        Duration::from_secs(60),
    )
    .assert_success();

    let out = kcat(
        &node,
        &[
            "-C",
            "-t",
            &topic,
            "-e",
            "-o",
            "beginning",
            "-f",
            "%k:%s:%p:%o\\n",
        ],
        None,
        Duration::from_secs(60),
    );
    out.assert_success();
    let mut by_partition: BTreeMap<u32, Vec<(i64, String, String)>> = BTreeMap::new();
    for line in out.stdout.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        assert_eq!(fields.len(), 4, "unexpected kcat line {line:?}\n{out}");
        by_partition
            .entry(fields[2].parse().expect("partition"))
            .or_default()
            .push((
                fields[3].parse().expect("offset"),
                fields[0].to_string(),
                fields[1].to_string(),
            ));
    }
    let read: usize = by_partition.values().map(Vec::len).sum();
    assert_eq!(read, lines.len(), "records read back\n{out}");
    for (p, records) in &by_partition {
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        let expected: Vec<i64> = (0..records.len() as i64).collect();
        assert_eq!(
            offsets, expected,
            "partition {p} offsets are not 0..n in order"
        );
    }
    // Same key, same partition: each key's values must come back in the order they were sent.
    let mut read_per_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for records in by_partition.values() {
        for (_, k, v) in records {
            read_per_key.entry(k).or_default().push(v);
        }
    }
    let mut sent_per_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in &lines {
        sent_per_key.entry(k).or_default().push(v);
    }
    assert_eq!(
        read_per_key, sent_per_key,
        "per-key order or content differs"
    );

    let meta = kcat(&node, &["-L"], None, Duration::from_secs(30));
    meta.assert_success();
    assert!(
        meta.stdout
            .contains(&format!("topic \"{topic}\" with 3 partitions")),
        "kcat -L does not show the topic:\n{meta}"
    );
    let one = kcat(&node, &["-L", "-t", &topic], None, Duration::from_secs(30));
    one.assert_success();
    for p in 0..3 {
        assert!(
            one.stdout.contains(&format!("partition {p}, leader 1")),
            "kcat -L -t does not show partition {p} led by node 1:\n{one}"
        );
    }
    node.assert_alive("after kcat");
}

fn assert_python_summary(
    out: &harness::CmdOutput,
    summary: Option<serde_json::Value>,
    records: u64,
) {
    let summary = summary.unwrap_or_else(|| panic!("no JSON summary from the script\n{out}"));
    assert!(
        out.success() && summary["ok"] == true,
        "client script reported problems: {}\n{out}",
        summary["problems"]
    );
    assert_eq!(summary["acked"], records, "acknowledged\n{out}");
    assert_eq!(summary["consumed"], records, "read back\n{out}");
    eprintln!("summary: {summary}");
}

#[test]
fn confluent_kafka_30k_keyed_records_across_partitions() {
    let mut node = Node::start();
    let records = 30_000u64;
    let args = [
        "--bootstrap".to_string(),
        node.bootstrap(),
        "--topic".to_string(),
        unique_name("confluent"),
        "--partitions".to_string(),
        "6".to_string(),
        "--records".to_string(),
        records.to_string(),
        "--timeout".to_string(),
        "240".to_string(),
    ];
    let (out, summary) = python_client(
        "confluent_produce_consume.py",
        "confluent_kafka",
        &args,
        Duration::from_secs(600),
    );
    node.assert_alive("after the confluent-kafka run");
    assert_python_summary(&out, summary, records);
}

/// The leader decompresses and walks every compressed batch (issue 9): what librdkafka
/// sends with each codec (snappy as librdkafka frames it, zstd from the wheel's librdkafka)
/// must be accepted and read back.
#[test]
fn confluent_kafka_compressed_batches_of_every_codec() {
    let mut node = Node::start();
    let records = 2_000u64;
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let args = [
            "--bootstrap".to_string(),
            node.bootstrap(),
            "--topic".to_string(),
            unique_name(&format!("compressed-{codec}")),
            "--partitions".to_string(),
            "2".to_string(),
            "--records".to_string(),
            records.to_string(),
            "--compression".to_string(),
            codec.to_string(),
            "--timeout".to_string(),
            "60".to_string(),
        ];
        let (out, summary) = python_client(
            "confluent_produce_consume.py",
            "confluent_kafka",
            &args,
            Duration::from_secs(120),
        );
        node.assert_alive(&format!("after confluent-kafka with {codec}"));
        assert_python_summary(&out, summary, records);
    }
}

#[test]
fn kafka_python_10k_keyed_records_across_partitions() {
    let mut node = Node::start();
    let records = 10_000u64;
    let args = [
        "--bootstrap".to_string(),
        node.bootstrap(),
        "--topic".to_string(),
        unique_name("kafkapython"),
        "--partitions".to_string(),
        "4".to_string(),
        "--records".to_string(),
        records.to_string(),
        "--timeout".to_string(),
        "240".to_string(),
    ];
    let (out, summary) = python_client(
        "kafka_python_produce_consume.py",
        "kafka",
        &args,
        Duration::from_secs(600),
    );
    node.assert_alive("after the kafka-python run");
    assert_python_summary(&out, summary, records);
}

#[test]
fn rdkafka_idempotent_producer_round_trip() {
    let mut node = Node::start();
    let topic = unique_name("rdkafka");
    kafka::create_topic(&node.bootstrap(), &topic, 4, &[]);

    let mut producer = TestProducer::new(&node.bootstrap(), &[]);
    for seq in 0..5_000 {
        producer.send(&topic, &kafka::key_for(seq), &kafka::value_for(seq));
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("flush within 60 s");
    assert!(
        producer.log().failed().is_empty(),
        "deliveries failed: {:?}",
        &producer.log().failed()[..producer.log().failed().len().min(5)]
    );
    let acked = producer.log().acked();
    assert_eq!(acked.len(), 5_000);

    let consumed = kafka::consume_all(&node.bootstrap(), &topic, Duration::from_secs(60));
    kafka::assert_history(&acked, &consumed, true);
    node.assert_alive("after the rdkafka round trip");
}

/// Fetch responses are written around regions of segment files and sent with `sendfile`: a
/// real client reads partitions of many small segments (each response spans several
/// partitions and several segment files per partition) and gets every record, in order.
#[test]
fn rdkafka_reads_many_segments_of_many_partitions_sent_from_the_files() {
    let mut node = Node::start();
    let topic = unique_name("segments");
    kafka::create_topic(&node.bootstrap(), &topic, 4, &[("segment.bytes", "4096")]);

    let mut producer = TestProducer::new(&node.bootstrap(), &[("batch.num.messages", "50")]);
    for seq in 0..8_000 {
        producer.send(&topic, &kafka::key_for(seq), &kafka::value_for(seq));
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("flush within 60 s");
    let acked = producer.log().acked();
    assert_eq!(
        acked.len(),
        8_000,
        "failed: {:?}",
        producer.log().failed().first()
    );

    // Every partition spans several segment files.
    let segments = node.data_dir().join("segments");
    let files: Vec<usize> = std::fs::read_dir(&segments)
        .expect("segments directory")
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .collect();
    assert!(
        files.iter().filter(|n| **n >= 5).count() >= 4,
        "segment files per partition directory: {files:?}"
    );

    let consumed = kafka::consume_all(&node.bootstrap(), &topic, Duration::from_secs(60));
    kafka::assert_history(&acked, &consumed, true);
    node.assert_alive("after reading many segments");
}

#[test]
fn topic_configs_are_accepted_and_max_message_bytes_is_enforced() {
    let mut node = Node::start();
    let topic = unique_name("configs");
    kafka::create_topic(
        &node.bootstrap(),
        &topic,
        1,
        &[
            ("retention.ms", "604800000"),
            ("retention.bytes", "1073741824"),
            ("segment.bytes", "1048576"),
            ("segment.ms", "3600000"),
            ("flush.messages", "1"),
            ("flush.ms", "1000"),
            ("max.message.bytes", "2048"),
        ],
    );

    // Not idempotent: a rejected batch would make an idempotent producer bump its epoch, which
    // is not what this test is about. Flush between the two so they travel in separate batches.
    let mut producer = TestProducer::new(
        &node.bootstrap(),
        &[
            ("message.timeout.ms", "10000"),
            ("enable.idempotence", "false"),
        ],
    );
    producer.send(&topic, "small", "fits");
    producer.flush(Duration::from_secs(30)).expect("flush");
    producer.send(&topic, "big", &"x".repeat(8 * 1024));
    producer.flush(Duration::from_secs(30)).expect("flush");
    let acked = producer.log().acked();
    let failed = producer.log().failed();
    assert_eq!(
        acked.iter().map(|r| r.key.as_deref()).collect::<Vec<_>>(),
        vec![Some("small")],
        "only the small record should be accepted; failures: {failed:?}"
    );
    assert_eq!(failed.len(), 1, "the 8 KiB record must be rejected");
    assert!(
        failed[0].1.contains("MessageSizeTooLarge") || failed[0].1.contains("too large"),
        "expected MESSAGE_TOO_LARGE for the 8 KiB record, got {failed:?}"
    );
    let consumed = kafka::consume_all(&node.bootstrap(), &topic, Duration::from_secs(30));
    kafka::assert_history(&acked, &consumed, true);
    node.assert_alive("after topic config checks");
}
