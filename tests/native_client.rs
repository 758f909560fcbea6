//! The native Rust client (the `rivulet` facade's `Producer` and `Consumer`) on a node embedded
//! in this test process, which joins a 3-node cluster of `rivulet serve` processes: its
//! records are read back by librdkafka in the partitions librdkafka would have chosen for
//! their keys, and it reads what librdkafka produced. Partitions led by the other nodes are
//! reached by forwarding over the cluster link. The embedded node's admin lists and describes
//! groups coordinated on other nodes. A remote leader is then killed (or, in the second test,
//! paused), and calls forwarded to it at that moment go to the next leader promptly.

mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::cluster::{wait_cluster, Cluster, ClusterOptions};
use harness::kafka::{assert_history, consume_all, key_for, value_for, Record, TestProducer};
use harness::{free_port, unique_name};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::ClientConfig;
use rivulet::client::partition_for_key;
use rivulet::{
    Acks, ClusterSettings, Config, ConsumerConfig, NewTopic, Node, NodeClient, ProducerConfig,
    ProducerRecord, TopicPartition,
};
use rivulet_actors::group::OFFSETS_TOPIC;

const EMBEDDED_ID: i32 = 4;

fn embedded_config(dir: &std::path::Path, cluster: &Cluster) -> Config {
    Config {
        node_id: EMBEDDED_ID,
        data_dir: dir.join("data"),
        listen: "127.0.0.1:0".into(),
        admin: rivulet::AdminSettings {
            listen: String::new(),
        },
        cluster: ClusterSettings {
            listen: format!("127.0.0.1:{}", free_port()),
            seeds: cluster
                .ids()
                .into_iter()
                .map(|id| format!("{id}@{}", cluster.cluster_addr(id)))
                .collect(),
            ..ClusterSettings::default()
        },
        storage: rivulet::StorageSettings {
            cache_bytes: 8 << 20,
            write_buffer_bytes_max: 8 << 20,
            journal_bytes_max: 64 << 20,
            free_bytes_min: 16 << 20,
            ..rivulet::StorageSettings::default()
        },
        // Groups join at once: the test waits for their assignment.
        groups: rivulet::GroupSettings {
            initial_rebalance_delay_ms: 0,
            ..rivulet::GroupSettings::default()
        },
        ..Config::default()
    }
}

/// How step 3 takes the remote leader away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaderFault {
    /// SIGKILL: the cluster link closes at once.
    Kill9,
    /// SIGSTOP: the link stays open and the node is silent until the membership gives up on
    /// it; only the metadata moving tells a call in flight to go elsewhere.
    Pause,
}

#[test]
fn native_client_in_a_cluster_of_rivulet_serve_matches_librdkafka() {
    scenario(LeaderFault::Kill9);
}

#[test]
fn native_client_fails_over_from_a_paused_leader() {
    scenario(LeaderFault::Pause);
}

/// One embedded node per process at a time: ractor's name registry is global to a process.
static ONE_EMBEDDED_NODE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn scenario(fault: LeaderFault) {
    // A test that panicked while holding it poisons it; the next one may still run.
    let _one = ONE_EMBEDDED_NODE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut cluster = Cluster::start(
        3,
        ClusterOptions {
            config_toml: Some("[groups]\ninitial_rebalance_delay_ms = 0\n".into()),
            ..ClusterOptions::default()
        },
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // The producer spawns its batch flusher on the current runtime.
    let _runtime = rt.enter();
    let dir = tempfile::tempdir().expect("temp dir");
    let node = rt
        .block_on(Node::builder(embedded_config(dir.path(), &cluster)).start())
        .unwrap_or_else(|e| cluster.fail(&format!("embedded node failed to start: {e}")));
    wait_cluster(&cluster, "every node to list the embedded node", || {
        cluster.ids().iter().all(|&id| {
            cluster
                .metadata(id)
                .is_ok_and(|m| m.brokers.contains(&EMBEDDED_ID))
        })
    });

    let topic = unique_name("native");
    let admin = node.admin();
    rt.block_on(admin.create_topic(NewTopic {
        name: topic.clone(),
        partitions: Some(4),
        replication_factor: Some(3),
        ..NewTopic::default()
    }))
    .unwrap_or_else(|e| cluster.fail(&format!("create {topic}: {e}")));
    // Node 4 leads partitions too; the harness cannot see it run, so it is told.
    cluster.add_embedded_node(EMBEDDED_ID as u32);
    cluster.wait_for_full_isr(&topic, 4);
    let leaders: Vec<i32> = admin
        .describe_topic(&topic)
        .unwrap_or_else(|e| cluster.fail(&format!("describe {topic}: {e}")))
        .partitions
        .iter()
        .map(|p| p.leader)
        .collect();
    assert!(
        leaders.iter().any(|&l| l != EMBEDDED_ID),
        "some partition must be led by another node to exercise forwarding: {leaders:?}"
    );

    // 1. The native producer (acks=all, idempotent); librdkafka reads it back.
    let producer = node.producer(ProducerConfig {
        acks: Acks::All,
        ..ProducerConfig::default()
    });
    let native: Vec<Record> = rt.block_on(send_native(&producer, &topic, 0..200));
    for r in &native {
        let key = r.key.as_deref().unwrap_or_default();
        assert_eq!(r.partition, partition_for_key(key.as_bytes(), 4), "{key}");
    }
    let read = consume_all(&cluster.bootstrap(), &topic, Duration::from_secs(60));
    assert_history(&native, &read, true);

    // 2. librdkafka produces the same keys; they land in the same partitions, and the
    // native consumer reads both producers' records, from every leader.
    let mut kafka = TestProducer::new(&cluster.bootstrap(), &[]);
    for seq in 200..300 {
        kafka.send(&topic, &key_for(seq), &value_for(seq));
    }
    kafka
        .flush(Duration::from_secs(60))
        .unwrap_or_else(|e| cluster.fail(&e));
    assert!(
        kafka.log().failed().is_empty(),
        "{:?}",
        kafka.log().failed()
    );
    let mut by_rdkafka = kafka.log().acked();
    for r in &mut by_rdkafka {
        r.seq += 200;
        let key = r.key.as_deref().unwrap_or_default();
        assert_eq!(r.partition, partition_for_key(key.as_bytes(), 4), "{key}");
    }
    let mut all = native;
    all.extend(by_rdkafka);

    let consumed = rt.block_on(read_all(&node, &topic, all.len()));
    assert_history(&all, &consumed, true);

    // 2b. Groups across the cluster: a group librdkafka runs, coordinated by another node,
    // is listed and described by node 4's admin (asked of the peers' ForwardService).
    let first = unique_name("native-group");
    let mut members = vec![join_group(&cluster, &first, &topic)];
    let coordinator = |group: &str| {
        let offsets = admin
            .describe_topic(OFFSETS_TOPIC)
            .unwrap_or_else(|e| panic!("describe {OFFSETS_TOPIC}: {e}"));
        let p = node.groups().partition_for(group);
        offsets
            .partitions
            .iter()
            .find(|i| i.partition == p)
            .map_or(-1, |i| i.leader)
    };
    let remote_group = if coordinator(&first) != EMBEDDED_ID {
        first.clone()
    } else {
        // One of the next names hashes to a partition another node leads.
        let other = (0..64)
            .map(|_| unique_name("native-group"))
            .find(|g| coordinator(g) != EMBEDDED_ID)
            .expect("a group coordinated by another node");
        members.push(join_group(&cluster, &other, &topic));
        other
    };
    let local: Vec<String> = rt
        .block_on(node.groups().list())
        .into_iter()
        .map(|g| g.group_id)
        .collect();
    assert!(
        !local.contains(&remote_group),
        "node 4 coordinates {remote_group} itself: {local:?}"
    );
    let listed = rt.block_on(admin.list_groups());
    for group in [&first, &remote_group] {
        let entry = listed
            .iter()
            .find(|g| &g.group_id == group)
            .unwrap_or_else(|| panic!("{group} is not listed: {listed:?}"));
        assert_eq!(
            (entry.state.as_str(), entry.protocol_type.as_str()),
            ("Stable", "consumer"),
            "{entry:?}"
        );
    }
    let described = rt
        .block_on(admin.describe_group(&remote_group))
        .unwrap_or_else(|e| cluster.fail(&format!("describe {remote_group}: {e}")));
    assert_eq!(described.state, "Stable", "{described:?}");
    assert_eq!(described.members.len(), 1, "{described:?}");
    let mut owned: Vec<i32> = described.members[0]
        .assigned
        .iter()
        .filter(|tp| tp.topic == topic)
        .map(|tp| tp.partition)
        .collect();
    owned.sort_unstable();
    assert_eq!(owned, vec![0, 1, 2, 3], "{described:?}");
    drop(members);

    // 3. The leader of a partition on another node dies (or goes silent): the producer's
    // not-leader and unreachable answers are retried inside (after the metadata moves the
    // leadership), and the idempotent producer's records are stored once. A long-polling read
    // forwarded to the victim at that moment fails over promptly instead of waiting out its
    // 30 s: a killed node's link closes, which drops the pending call's reply port (a
    // retriable `Unreachable`); for a paused one the call gives up when the metadata names
    // another leader (a retriable `LeadershipMoved`).
    let victim = leaders
        .iter()
        .copied()
        .find(|&l| l != EMBEDDED_ID)
        .expect("a remote leader") as u32;
    let moved: Vec<i32> = (0..4)
        .filter(|&p| leaders[p as usize] == victim as i32)
        .collect();
    let long_poll = Duration::from_secs(30);
    let mut waiting = node.consumer(ConsumerConfig::default());
    let moved_tps: Vec<TopicPartition> = moved
        .iter()
        .map(|&p| TopicPartition::new(topic.as_str(), p))
        .collect();
    waiting.assign(moved_tps.clone());
    for tp in &moved_tps {
        rt.block_on(waiting.seek_to_end(tp))
            .unwrap_or_else(|e| cluster.fail(&format!("seek {tp:?} to its end: {e}")));
    }
    // The read is on its way to the victim before the kill: spawning sends it within
    // microseconds, while killing a process and the link noticing take milliseconds.
    let in_flight = rt.spawn(async move {
        let result = waiting.poll(long_poll).await;
        (result.map(|r| r.len()), Instant::now())
    });
    let killed_at = Instant::now();
    match fault {
        LeaderFault::Kill9 => cluster.kill9(victim),
        LeaderFault::Pause => cluster.pause(victim),
    }
    let more: Vec<Record> = rt.block_on(send_native(&producer, &topic, 300..400));
    let (polled, returned_at) = rt.block_on(in_flight).expect("poll task");
    let took = returned_at.saturating_duration_since(killed_at);
    // Failing over takes the session timeout (2 s) and an election; waiting out the call
    // would take the full 30 s long poll plus the call's margin.
    assert!(
        took < Duration::from_secs(15),
        "a read forwarded to the leader ({fault:?}) returned only after {took:?} ({polled:?})"
    );
    assert!(
        polled.as_ref().map_or(true, |&n| n > 0),
        "the forwarded read returned nothing although records arrived: {polled:?}"
    );
    assert!(
        more.iter().any(|r| moved.contains(&r.partition)),
        "no record went to the partitions node {victim} led ({moved:?})"
    );
    all.extend(more);
    let consumed = rt.block_on(read_all(&node, &topic, all.len()));
    assert_history(&all, &consumed, true);

    rt.block_on(async {
        producer.close().await;
        node.shutdown().await
    })
    .unwrap_or_else(|e| panic!("embedded node shutdown: {e}"));
    drop(cluster);
}

/// A librdkafka consumer in `group`, subscribed to `topic`, once the group gave it its
/// partitions (the group is then Stable).
fn join_group(cluster: &Cluster, group: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|e| cluster.fail(&format!("consumer for {group}: {e}")));
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|e| cluster.fail(&format!("subscribe {group}: {e}")));
    wait_cluster(cluster, &format!("{group} assigns the partitions"), || {
        // Polling drives the join; no records are expected to matter here.
        let _ = consumer.poll(Duration::from_millis(100));
        consumer.assignment().is_ok_and(|a| a.count() > 0)
    });
    consumer
}

/// Sends keyed records `seqs` through the native producer; every one must be acknowledged.
async fn send_native(
    producer: &rivulet::Producer,
    topic: &str,
    seqs: std::ops::Range<usize>,
) -> Vec<Record> {
    let mut waiting = Vec::new();
    for seq in seqs {
        let rx = producer
            .enqueue(ProducerRecord::new(topic, key_for(seq), value_for(seq)))
            .expect("queued");
        waiting.push((seq, rx));
    }
    let mut acked = Vec::new();
    for (seq, rx) in waiting {
        let md = rx
            .await
            .expect("producer running")
            .unwrap_or_else(|e| panic!("native send {seq}: {e}"));
        acked.push(Record {
            seq,
            partition: md.partition,
            offset: md.offset,
            key: Some(key_for(seq)),
            value: Some(value_for(seq)),
        });
    }
    acked
}

/// Reads `count` records of `topic`'s 4 partitions from the start with a native consumer.
async fn read_all(
    node: &rivulet::NodeHandle,
    topic: &str,
    count: usize,
) -> BTreeMap<i32, Vec<Record>> {
    let mut consumer = node.consumer(ConsumerConfig::default());
    consumer.assign_topic(topic).expect("topic known");
    let mut out: BTreeMap<i32, Vec<Record>> = (0..4).map(|p| (p, Vec::new())).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.values().map(Vec::len).sum::<usize>() < count {
        assert!(
            Instant::now() < deadline,
            "native consumer timed out: {out:?}"
        );
        for r in consumer
            .poll(Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("native poll: {e}"))
        {
            out.entry(r.partition).or_default().push(Record {
                seq: 0,
                partition: r.partition,
                offset: r.offset,
                key: r.key.map(|k| String::from_utf8_lossy(&k).into_owned()),
                value: r.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
            });
        }
    }
    out
}
