//! Log compaction (issue 11, item 5) with a real client (librdkafka through rdkafka): a
//! compacted topic with small segments, many updates to few keys and some tombstones. The
//! cleaner runs in the background (driven by the replica's retention timer); the tests poll
//! its /metrics counters and what a consumer reads, never sleep. See docs/semantics.md,
//! "Compaction".

mod harness;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use harness::cluster::{Cluster, ClusterOptions};
use harness::kafka::{self, Record, TestProducer};
use harness::{unique_name, wait_until, Node, NodeOptions};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(60);
/// Retention (and so the cleaner) checks every 100 ms.
const CONFIG: &str = "retention_check_interval_ms = 100\n";
/// Tombstones stay readable this long after their segment was first cleaned.
const TOMBSTONE_MS: &str = "1500";

/// Small segments and an eager cleaner, so a few hundred KiB make many cleanable segments.
fn topic_configs() -> Vec<(&'static str, &'static str)> {
    vec![
        ("cleanup.policy", "compact"),
        ("segment.bytes", "16384"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", TOMBSTONE_MS),
    ]
}

/// `GET /metrics` and the sum of the samples of `name` (0 when absent).
fn metric(addr: SocketAddr, name: &str) -> i64 {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    if write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return 0;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as i64
}

/// Bytes of the files under `dir`, recursively.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The latest acknowledged record of each key: key -> (offset, value).
fn latest(acked: &[Record]) -> BTreeMap<String, (i64, Option<String>)> {
    let mut sorted = acked.to_vec();
    sorted.sort_by_key(|r| r.offset);
    sorted
        .into_iter()
        .map(|r| (r.key.expect("keyed"), (r.offset, r.value)))
        .collect()
}

/// What a consumer reading from the beginning sees: key -> (offset, value), checking that
/// offsets increase and that no key is seen twice (a fully compacted log).
fn read_back(bootstrap: &str, topic: &str) -> (BTreeMap<String, (i64, Option<String>)>, usize) {
    let records = consume_partition_0(bootstrap, topic);
    let mut out = BTreeMap::new();
    let mut last = -1;
    for r in &records {
        assert!(
            r.offset > last,
            "offsets increase: {} after {last}",
            r.offset
        );
        last = r.offset;
        out.insert(
            r.key.clone().expect("every record has a key"),
            (r.offset, r.value.clone()),
        );
    }
    (out, records.len())
}

/// Reads partition 0 from the beginning up to the high watermark seen at the start. A
/// transport error (a broker killed for a failover is still in the bootstrap list) is
/// librdkafka reporting a retry, not a failure: the read goes on until the deadline.
fn consume_partition_0(bootstrap: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "rivulet-it-compaction")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "error")
        .create()
        .expect("create consumer");
    let deadline = Instant::now() + TIMEOUT;
    let high = loop {
        match consumer.fetch_watermarks(topic, 0, Duration::from_secs(5)) {
            Ok((_, high)) => break high,
            Err(e) => assert!(Instant::now() < deadline, "watermarks of {topic}: {e}"),
        }
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("add partition");
    consumer.assign(&tpl).expect("assign");
    let mut out: Vec<Record> = Vec::new();
    while out.last().map_or(0, |r| r.offset + 1) < high {
        assert!(
            Instant::now() < deadline,
            "read {} records of {topic} below {high} in {TIMEOUT:?}",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
            ))) => {}
            Some(Err(e)) => panic!("consume {topic}: {e}"),
            Some(Ok(m)) => out.push(Record {
                seq: 0,
                partition: 0,
                offset: m.offset(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                value: m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
            }),
        }
    }
    out
}

/// Writes `rounds` updates to each of `keys` keys (1 KiB values), then tombstones for the
/// first `deleted` keys.
fn write_updates(p: &mut TestProducer, topic: &str, keys: usize, rounds: usize, deleted: usize) {
    for round in 0..rounds {
        for k in 0..keys {
            let value = format!("{round:04}-{}", "x".repeat(1000));
            p.send(topic, &format!("key-{k}"), &value);
        }
    }
    for k in 0..deleted {
        p.send_opt(topic, Some(&format!("key-{k}")), None);
    }
    p.flush(TIMEOUT).expect("flush");
    assert!(p.log().failed().is_empty(), "{:?}", p.log().failed());
}

/// The scenario on one node: after the cleaner ran, a consumer from the beginning sees
/// exactly the latest value of each key at the offset it was written at, the tombstones go
/// after `delete.retention.ms`, and the data directory shrank.
#[test]
fn a_compacted_topic_keeps_the_latest_value_per_key() {
    let node = Node::start_with(NodeOptions {
        config_toml: Some(CONFIG.into()),
        ..NodeOptions::default()
    });
    let topic = unique_name("compacted");
    kafka::create_topic(&node.bootstrap(), &topic, 1, &topic_configs());

    // A record without a key is refused (Kafka: INVALID_RECORD).
    let mut keyless = TestProducer::new(
        &node.bootstrap(),
        &[("enable.idempotence", "false"), ("retries", "0")],
    );
    keyless.send_opt(&topic, None, Some("no key"));
    let _ = keyless.flush(TIMEOUT);
    let failed = keyless.log().failed();
    assert_eq!(failed.len(), 1, "the keyless record is refused: {failed:?}");
    assert!(
        failed[0].1.contains("InvalidRecord") || failed[0].1.contains("Invalid record"),
        "refused as INVALID_RECORD: {failed:?}"
    );

    let mut p = TestProducer::new(&node.bootstrap(), &[]);
    write_updates(&mut p, &topic, 20, 40, 5);
    let produced_bytes = 20 * 40 * 1024u64;
    let acked = p.log().acked();
    assert_eq!(acked.len(), 20 * 40 + 5);
    // More updates to the live keys, so the tombstones' segment is closed and cleanable.
    for round in 0..20 {
        for k in 5..20 {
            p.send(&topic, &format!("key-{k}"), &format!("late-{round}"));
        }
    }
    p.flush(TIMEOUT).expect("flush");
    let acked = p.log().acked();
    let expected = latest(&acked);

    let admin = node.admin_addr();
    wait_until(TIMEOUT, "the cleaner swapped segments", || {
        metric(admin, "rivulet_log_cleaner_segments_swapped_total") > 0
    });
    assert!(metric(admin, "rivulet_log_cleaner_read_bytes_total") > 0);
    let segments = node.data_dir().join("segments");
    wait_until(TIMEOUT, "the data directory shrank", || {
        dir_bytes(&segments) < produced_bytes / 4
    });

    // Tombstones first stay (delete.retention.ms after their segment was cleaned), then go;
    // the cleaner needs something dirty for a new pass: keep writing updates meanwhile.
    let mut round = 0;
    let mut last_seen = (BTreeMap::new(), 0);
    wait_until(
        TIMEOUT,
        "tombstones removed after delete.retention.ms",
        || {
            round += 1;
            for k in 5..20 {
                p.send(&topic, &format!("key-{k}"), &format!("later-{round}"));
            }
            let _ = p.flush(TIMEOUT);
            last_seen = read_back(&node.bootstrap(), &topic);
            (0..5).all(|k| !last_seen.0.contains_key(&format!("key-{k}")))
        },
    );
    // Keys updated after `expected` was taken have newer values; every other key's latest
    // record is the one produced, at its original offset.
    let acked = p.log().acked();
    let now_expected: BTreeMap<_, _> = latest(&acked)
        .into_iter()
        .filter(|(_, (_, v))| v.is_some())
        .collect();
    let (seen, count) = read_back(&node.bootstrap(), &topic);
    for (k, (o, v)) in &now_expected {
        assert_eq!(seen.get(k), Some(&(*o, v.clone())), "latest record of {k}");
    }
    assert_eq!(
        seen.len(),
        now_expected.len(),
        "no other key: {:?}",
        seen.keys().collect::<Vec<_>>()
    );
    // Older values of a key may remain only in segments not yet cleaned (the active one).
    assert!(
        count < acked.len() / 4,
        "{count} records read of {} written",
        acked.len()
    );
    assert!(expected.len() == 20);
}

/// Three nodes, RF=3: each replica cleans its own log (followers too) and after the leader
/// is killed the new leader serves the latest values.
#[test]
fn followers_compact_independently_and_a_failover_serves_the_latest_values() {
    let mut cluster = Cluster::start(
        3,
        ClusterOptions {
            config_toml: Some(CONFIG.into()),
            ..ClusterOptions::default()
        },
    );
    let topic = unique_name("compacted3");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .create()
        .expect("admin client");
    let mut new_topic =
        NewTopic::new(&topic, 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    for (k, v) in topic_configs() {
        new_topic = new_topic.set(k, v);
    }
    let opts = AdminOptions::new().request_timeout(Some(Timeout::After(TIMEOUT)));
    let results = futures::executor::block_on(admin.create_topics([&new_topic], &opts))
        .expect("CreateTopics answered");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    cluster.wait_for_full_isr(&topic, 1);

    let mut p = TestProducer::new(&cluster.bootstrap(), &[]);
    write_updates(&mut p, &topic, 10, 30, 0);
    for k in 0..10 {
        p.send(&topic, &format!("key-{k}"), &format!("final-{k}"));
    }
    // Filler on another key rolls the segment holding the final values.
    for i in 0..40 {
        p.send(&topic, "filler", &format!("{i}-{}", "y".repeat(1000)));
    }
    p.flush(TIMEOUT).expect("flush");
    let expected = latest(&p.log().acked());

    for id in cluster.ids() {
        let addr = cluster.node(id).admin_addr();
        wait_until(TIMEOUT, &format!("node {id} cleaned its replica"), || {
            metric(addr, "rivulet_log_cleaner_segments_swapped_total") > 0
        });
    }
    let leader = cluster.leader_of(&topic, 0);
    cluster.kill9(leader);
    let new_leader = cluster.wait_for_leader(&topic, 0, |l| l != leader);
    assert_ne!(new_leader, leader);
    let (seen, count) = read_back(&cluster.bootstrap(), &topic);
    for (k, v) in &expected {
        assert_eq!(seen.get(k), Some(v), "latest record of {k} after failover");
    }
    assert!(count < p.log().acked().len() / 2, "{count} records read");
}
