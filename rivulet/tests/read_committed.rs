//! read_committed through a real Kafka client, with markers written by the transaction
//! coordinator's API (`rivulet_actors::write::write_marker_to`) on one in-process node: the
//! log side of transactions (issue 14) checked end to end without the coordinator's marker
//! fan-out. docs/semantics.md, "Transactions in the log".

mod common;

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use rivulet::{Config, NewTopic, Node, ReplicaRegistry, TopicPartition};
use rivulet_actors::write::{self, Acks, WriteOptions};
use rivulet_storage::batch::control::TxnMarker;
use rivulet_storage::batch::BatchBuilder;
use rivulet_storage::Bytes;

const TOPIC: &str = "txn-read-committed";
const TRANSACTIONAL: i16 = 1 << 4;

fn config(dir: &std::path::Path) -> Config {
    common::config(dir, "127.0.0.1:0")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// A transactional batch of `producer_id` with one record per key.
fn txn_batch(producer_id: i64, base_sequence: i32, keys: &[&str]) -> Bytes {
    let now = now_ms();
    let mut b =
        BatchBuilder::new(now)
            .attributes(TRANSACTIONAL)
            .producer(producer_id, 0, base_sequence);
    for k in keys {
        b.push(now, Some(k.as_bytes()), Some(b"v"));
    }
    Bytes::from(b.build())
}

fn marker(producer_id: i64, commit: bool) -> TxnMarker {
    TxnMarker {
        producer_id,
        producer_epoch: 0,
        coordinator_epoch: 0,
        commit,
    }
}

fn opts() -> WriteOptions {
    WriteOptions::new(Acks::All, Duration::from_secs(10))
}

/// Keys read from partition 0 by a consumer of `isolation` from offset 0: until `want` keys
/// came, or (with `want` = None) until nothing new came for 2 s. Also the high watermark the
/// consumer's ListOffsets saw (the LSO for read_committed).
fn read(bootstrap: &str, isolation: &str, want: Option<usize>) -> (Vec<String>, i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "unused")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let mut keys = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_new = Instant::now();
    while Instant::now() < deadline {
        match want {
            Some(n) if keys.len() >= n => break,
            None if last_new.elapsed() > Duration::from_secs(2) => break,
            _ => {}
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap_or_else(|e| panic!("{isolation} consumer: {e}"));
            keys.push(String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned());
            last_new = Instant::now();
        }
    }
    let (_, high) = consumer
        .fetch_watermarks(TOPIC, 0, Duration::from_secs(10))
        .expect("ListOffsets answered");
    (keys, high)
}

async fn wait_leader(replicas: &ReplicaRegistry, tp: &TopicPartition) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !replicas.get(tp).is_some_and(|h| h.is_leader()) {
        assert!(Instant::now() < deadline, "{tp} never got a leader here");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A committed, an aborted and an open transaction on one partition: a read_committed
/// librdkafka consumer reads only the committed records and stops at the last stable offset
/// (its ListOffsets answers the LSO); a read_uncommitted one reads every record up to the
/// high watermark; once the open transaction commits, read_committed reads it too. The
/// markers are written by `write_marker_to`, acks=all, as the coordinator writes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_consumers_see_committed_records_only_and_stop_at_the_lso() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::builder(config(dir.path()))
        .start()
        .await
        .expect("node starts");
    let bootstrap = node.kafka_addr().expect("Kafka listener").to_string();
    node.controller()
        .create_topic(NewTopic {
            name: TOPIC.into(),
            partitions: Some(1),
            ..NewTopic::default()
        })
        .await
        .expect("topic created");
    let tp = TopicPartition::new(TOPIC, 0);
    let replicas = node.replicas().clone();
    wait_leader(&replicas, &tp).await;

    // c1 c2 | commit 2 | a1 a2 | abort 5 | o1 at 6 (producer 2000's, still open).
    let w = write::append_to(&replicas, &tp, txn_batch(1000, 0, &["c1", "c2"]), &opts())
        .await
        .expect("c1 c2");
    assert_eq!(w.base_offset, 0);
    write::write_marker_to(&replicas, &tp, marker(1000, true), &opts())
        .await
        .expect("commit marker");
    write::append_to(&replicas, &tp, txn_batch(1000, 2, &["a1", "a2"]), &opts())
        .await
        .expect("a1 a2");
    let w = write::write_marker_to(&replicas, &tp, marker(1000, false), &opts())
        .await
        .expect("abort marker");
    assert_eq!(w.base_offset, 5);
    write::append_to(&replicas, &tp, txn_batch(2000, 0, &["o1"]), &opts())
        .await
        .expect("o1");
    let h = replicas.get(&tp).expect("replica");
    assert_eq!((h.high_watermark(), h.last_stable_offset()), (7, 6));

    let b = bootstrap.clone();
    let (ru, ru_high) = tokio::task::spawn_blocking(move || read(&b, "read_uncommitted", Some(5)))
        .await
        .expect("read_uncommitted");
    assert_eq!(ru, ["c1", "c2", "a1", "a2", "o1"]);
    assert_eq!(
        ru_high, 7,
        "read_uncommitted's latest offset is the high watermark"
    );
    let b = bootstrap.clone();
    let (rc, rc_high) = tokio::task::spawn_blocking(move || read(&b, "read_committed", None))
        .await
        .expect("read_committed");
    assert_eq!(
        rc,
        ["c1", "c2"],
        "aborted and open transactions are not read"
    );
    assert_eq!(rc_high, 6, "read_committed's latest offset is the LSO");

    write::write_marker_to(&replicas, &tp, marker(2000, true), &opts())
        .await
        .expect("commit of the open transaction");
    assert_eq!(h.last_stable_offset(), 8);
    let b = bootstrap.clone();
    let (rc, rc_high) = tokio::task::spawn_blocking(move || read(&b, "read_committed", Some(3)))
        .await
        .expect("read_committed after the commit");
    assert_eq!(rc, ["c1", "c2", "o1"]);
    assert_eq!(rc_high, 8);
    node.shutdown().await.expect("clean shutdown");
}
