//! A full disk (issue 9, defect 3): a node on a small filesystem refuses appends with
//! KAFKA_STORAGE_ERROR as soon as free space falls below `storage.free_bytes_min`, keeps
//! serving reads, metadata and DeleteTopics, and accepts appends again by itself once space
//! is freed. No acknowledged record is lost, and fjall is never poisoned (which used to take
//! every partition and the Raft controller of the node down until a restart). On three nodes,
//! a follower whose disk fills leaves the ISR while its leader keeps serving, and catches up
//! when space returns.
//!
//! The data directory is a tmpfs mounted for the test (the tests run as root, here and on CI).
//! The tests print each step with its timing and the free space `df` reports.

mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::kafka::{self, TestProducer};
use harness::wire::{self, BatchSpec, RawConn};
use harness::{run, try_wait_until, unique_name, wait_until, Node, NodeOptions};
use kafka_protocol::messages::ProduceRequest;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

const MIB: u64 = 1 << 20;
/// Size of the tmpfs: fjall's journal alone may reach 64 MB before it rotates.
const FS_BYTES: u64 = 192 * MIB;
/// The floor under test; above the node's 8 MiB write buffer, as the README asks.
const FLOOR_BYTES: u64 = 32 * MIB;
const KAFKA_STORAGE_ERROR: i16 = 56;

/// A tmpfs mounted on a directory; unmounted (lazily, so a process still holding files in it
/// cannot keep it mounted) when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Tmpfs {
        let out = run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={bytes}"))
                .arg("tmpfs")
                .arg(dir),
            None,
            Duration::from_secs(10),
        );
        assert!(
            out.success(),
            "mounting a tmpfs needs root (tests and CI run as root):\n{out}"
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Best effort: a failure here must not hide the test's own failure.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Free bytes of the filesystem holding `dir`, as `df` reports them.
fn free_bytes(dir: &Path) -> u64 {
    let out = run(
        Command::new("df").args(["-B1", "--output=avail"]).arg(dir),
        None,
        Duration::from_secs(10),
    );
    assert!(out.success(), "df failed:\n{out}");
    out.stdout
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected df output:\n{out}"))
}

fn filler_batch(seq: u64) -> Vec<u8> {
    let mut spec = BatchSpec::new(&[]);
    spec.records = (0..3)
        .map(|i| {
            (
                Some(b"fill".to_vec()),
                Some(harness::pseudo_random_bytes(seq * 3 + i, 256 * 1024)),
            )
        })
        .collect();
    spec.encode()
}

/// One acks=all produce of `records` to partition 0 of `topic`: (error code, base offset,
/// error message, how long the answer took).
fn produce(
    conn: &mut RawConn,
    version: i16,
    topic: &str,
    records: Vec<u8>,
) -> (i16, i64, String, Duration) {
    let started = Instant::now();
    let req = wire::produce_request(topic, 0, -1, records);
    let resp = conn
        .request(&req, version)
        .unwrap_or_else(|e| panic!("Produce must be answered: {e}"));
    let p = resp
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .next()
        .unwrap_or_else(|| panic!("Produce response without a partition: {resp:?}"));
    let msg = p
        .error_message
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    (p.error_code, p.base_offset, msg, started.elapsed())
}

/// Every record of partition 0 of `topic` up to its high watermark: (offset, value length,
/// value if it is UTF-8).
fn read_all(bootstrap: &str, topic: &str) -> Vec<(i64, usize, Option<String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "rivulet-it-disk-full")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "error")
        .create()
        .expect("create consumer");
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("watermarks of {topic}: {e}"));
    let mut out = Vec::new();
    if high == 0 {
        return out;
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("add partition");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.last().is_none_or(|(o, _, _)| o + 1 < high) {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => panic!("consume {topic}: {e}"),
            Some(Ok(m)) => {
                let payload = m.payload().unwrap_or_default();
                out.push((
                    m.offset(),
                    payload.len(),
                    std::str::from_utf8(payload).ok().map(str::to_string),
                ));
            }
        }
    }
    out
}

#[test]
fn full_disk_refuses_writes_serves_reads_and_deletes_and_recovers_without_restart() {
    let t0 = Instant::now();
    let step = |what: &str, dir: &Path| {
        println!(
            "[{:>6.2} s] {what} (df: {:.1} MiB free)",
            t0.elapsed().as_secs_f64(),
            free_bytes(dir) as f64 / MIB as f64
        );
    };
    let config = format!(
        "[storage]\ncache_bytes = {}\nwrite_buffer_bytes_max = {}\nfree_bytes_min = {FLOOR_BYTES}\n",
        16 * MIB,
        8 * MIB
    );
    let mut node = Node::start_with(NodeOptions {
        config_toml: Some(config),
        ..NodeOptions::default()
    });
    // The harness picks the data dir; put a small filesystem under it and start afresh.
    node.terminate();
    let data_dir = node.data_dir();
    std::fs::remove_dir_all(&data_dir).expect("empty the data dir");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let _fs = Tmpfs::mount(&data_dir, FS_BYTES);
    node.restart();
    step(
        &format!(
            "node up on a {} MiB tmpfs, free_bytes_min = {} MiB",
            FS_BYTES / MIB,
            FLOOR_BYTES / MIB
        ),
        &data_dir,
    );

    let bootstrap = node.bootstrap();
    let keep = unique_name("keep");
    let filler = unique_name("filler");
    kafka::create_topic(&bootstrap, &keep, 1, &[]);
    kafka::create_topic(&bootstrap, &filler, 1, &[]);
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let version = wire::negotiate::<ProduceRequest>(&mut conn, 9);

    // Acknowledged records of `keep`: (offset, value).
    let mut kept: Vec<(i64, String)> = Vec::new();
    let produce_keep = |conn: &mut RawConn, kept: &mut Vec<(i64, String)>, n: usize| {
        let value = format!("keep-{n}");
        let r = produce(
            conn,
            version,
            &keep,
            BatchSpec::new(&[("k", &value)]).encode(),
        );
        if r.0 == 0 {
            kept.push((r.1, value));
        }
        r
    };
    for n in 0..10 {
        let (code, _, msg, _) = produce_keep(&mut conn, &mut kept, n);
        assert_eq!(code, 0, "produce to {keep}: {msg}");
    }

    // Fill the disk until the node refuses.
    let mut filler_acked = 0i64;
    let refused = loop {
        assert!(
            filler_acked < (FS_BYTES / (700 * 1024)) as i64,
            "the node acknowledged more than the filesystem can hold without refusing"
        );
        let r = produce(
            &mut conn,
            version,
            &filler,
            filler_batch(filler_acked as u64),
        );
        if r.0 != 0 {
            break r;
        }
        assert_eq!(r.1, filler_acked * 3, "filler offsets");
        filler_acked += 1;
    };
    let (code, _, msg, took) = refused;
    step(
        &format!(
            "filler refused after {filler_acked} acked batches ({:.0} MiB): error {code} \"{msg}\" in {} ms",
            (filler_acked * 3 * 256 * 1024) as f64 / MIB as f64,
            took.as_millis()
        ),
        &data_dir,
    );
    assert_eq!(code, KAFKA_STORAGE_ERROR, "refusal code: {msg}");
    assert!(took < Duration::from_secs(2), "refusal took {took:?}");
    assert!(msg.contains("disk"), "the message names the cause: {msg}");
    let free = free_bytes(&data_dir);
    assert!(
        free > FLOOR_BYTES / 2,
        "the floor keeps headroom: {free} bytes free"
    );

    // Every partition of the node refuses, promptly, and nothing is poisoned.
    let (code, _, msg, took) = produce_keep(&mut conn, &mut kept, 100);
    step(
        &format!(
            "{keep} refused too: error {code} in {} ms",
            took.as_millis()
        ),
        &data_dir,
    );
    assert_eq!(code, KAFKA_STORAGE_ERROR, "{msg}");
    // librdkafka treats KAFKA_STORAGE_ERROR as retriable: this record waits in its producer,
    // retried, until the disk has room again (within message.timeout.ms).
    let mut rd = TestProducer::new(&bootstrap, &[("message.timeout.ms", "30000")]);
    rd.send(&keep, "k", "rdkafka-while-full");

    // Reads of everything acknowledged are served while full.
    let read_keep = read_all(&bootstrap, &keep);
    let got: Vec<(i64, String)> = read_keep
        .iter()
        .map(|(o, _, v)| (*o, v.clone().unwrap_or_default()))
        .collect();
    assert_eq!(got, kept, "{keep} read back while the disk is full");
    let read_filler = read_all(&bootstrap, &filler);
    assert_eq!(read_filler.len() as i64, filler_acked * 3, "filler records");
    assert!(
        read_filler
            .iter()
            .enumerate()
            .all(|(i, (o, len, _))| *o == i as i64 && *len == 256 * 1024),
        "filler records come back whole and in order"
    );
    step("every acknowledged record read back while full", &data_dir);
    assert_eq!(
        rd.log().acked_count(),
        0,
        "the rdkafka record was acknowledged while the disk is full"
    );

    // DeleteTopics works (the controller is alive) and gives the space back.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin client");
    let opts = AdminOptions::new()
        .request_timeout(Some(Timeout::After(Duration::from_secs(10))))
        .operation_timeout(Some(Timeout::After(Duration::from_secs(10))));
    let started = Instant::now();
    let results = futures::executor::block_on(admin.delete_topics(&[filler.as_str()], &opts))
        .unwrap_or_else(|e| panic!("DeleteTopics while full: {e}"));
    for r in results {
        r.unwrap_or_else(|(t, code)| panic!("DeleteTopics {t}: {code:?}"));
    }
    step(
        &format!(
            "DeleteTopics {filler} answered in {} ms",
            started.elapsed().as_millis()
        ),
        &data_dir,
    );
    let started = Instant::now();
    if let Err(e) = try_wait_until(
        Duration::from_secs(20),
        "deleting the filler topic frees its space",
        || free_bytes(&data_dir) > FLOOR_BYTES * 2,
    ) {
        let du = run(
            Command::new("sh")
                .arg("-c")
                .arg("du -ak . | sort -n | tail -25")
                .current_dir(&data_dir),
            None,
            Duration::from_secs(10),
        );
        panic!("{e}; what uses the disk:\n{}", du.stdout);
    }
    step(
        &format!(
            "space freed {} ms after the delete",
            started.elapsed().as_millis()
        ),
        &data_dir,
    );

    // Appends resume by themselves: no restart.
    let started = Instant::now();
    let mut n = 1000;
    wait_until(
        Duration::from_secs(10),
        "appends are accepted again",
        || {
            n += 1;
            produce_keep(&mut conn, &mut kept, n).0 == 0
        },
    );
    step(
        &format!(
            "appends accepted again {} ms after the space returned",
            started.elapsed().as_millis()
        ),
        &data_dir,
    );
    for n in 2000..2010 {
        let (code, _, msg, _) = produce_keep(&mut conn, &mut kept, n);
        assert_eq!(code, 0, "produce after recovery: {msg}");
    }
    rd.flush(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("rdkafka producer flush: {e}"));
    let acked = rd.log().acked();
    assert_eq!(acked.len(), 1, "failed: {:?}", rd.log().failed());
    kept.push((acked[0].offset, "rdkafka-while-full".to_string()));
    kept.sort();
    step(
        "the rdkafka producer's retried record was acknowledged after recovery",
        &data_dir,
    );
    // The controller still creates topics.
    let after = unique_name("after");
    kafka::create_topic(&bootstrap, &after, 1, &[]);
    let (code, _, msg, _) = produce(
        &mut conn,
        version,
        &after,
        BatchSpec::new(&[("a", "b")]).encode(),
    );
    assert_eq!(code, 0, "produce to a topic created after recovery: {msg}");

    // No acknowledged record was lost.
    let got: Vec<(i64, String)> = read_all(&bootstrap, &keep)
        .into_iter()
        .map(|(o, _, v)| (o, v.unwrap_or_default()))
        .collect();
    assert_eq!(got, kept, "{keep} after recovery");
    step(
        &format!(
            "{} acknowledged records of {keep} all read back",
            kept.len()
        ),
        &data_dir,
    );
    node.assert_alive("after the disk-full episode");
    let logs: String = node
        .log_paths()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    assert!(
        !logs.contains("Poisoned") && !logs.contains("keeps failing"),
        "fjall was poisoned or a replica crash-looped:\n{}",
        node.log_tail(40)
    );
}

/// CreateTopics v5 of one single-partition topic on `replicas` (the first leads), with
/// `min.insync.replicas`.
fn create_on(conn: &mut RawConn, topic: &str, replicas: &[u32], min_insync: &str) {
    use kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
    };
    use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut a = CreatableReplicaAssignment::default();
    a.partition_index = 0;
    a.broker_ids = replicas.iter().map(|r| BrokerId(*r as i32)).collect();
    let mut c = CreatableTopicConfig::default();
    c.name = StrBytes::from_static_str("min.insync.replicas");
    c.value = Some(StrBytes::from_string(min_insync.to_string()));
    let mut t = CreatableTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.num_partitions = -1;
    t.replication_factor = -1;
    t.assignments = vec![a];
    t.configs = vec![c];
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 30_000;
    let r = conn
        .request(&req, 5)
        .expect("CreateTopics v5 must be answered");
    assert_eq!(
        r.topics[0].error_code, 0,
        "create {topic}: {:?}",
        r.topics[0]
    );
}

/// One produce of `records` to partition 0 of `topic` with `acks`: (error code, base offset).
fn produce_acks(
    conn: &mut RawConn,
    version: i16,
    topic: &str,
    acks: i16,
    records: Vec<u8>,
) -> (i16, i64) {
    wire::produce_acks(conn, version, topic, acks, records)
}

/// A follower's disk fills (three nodes, the follower's data dir on a small tmpfs): the leader
/// keeps acks=1 working, acks=all with min.insync.replicas=3 gets NOT_ENOUGH_REPLICAS once the
/// follower leaves the ISR, and when space returns the follower catches up and rejoins by
/// itself; no acknowledged record is lost, even when that follower then becomes leader.
#[test]
fn full_disk_on_a_follower_leaves_the_leader_serving_and_loses_nothing() {
    use harness::cluster::{Cluster, ClusterOptions};
    const NOT_ENOUGH_REPLICAS: i16 = 19;
    let t0 = Instant::now();
    let config = format!(
        "[storage]\ncache_bytes = {}\nwrite_buffer_bytes_max = {}\nfree_bytes_min = {FLOOR_BYTES}\n",
        16 * MIB,
        8 * MIB
    );
    let mut cluster = Cluster::start(
        3,
        ClusterOptions {
            config_toml: Some(config),
            ..ClusterOptions::default()
        },
    );
    let controller = cluster.controller();
    // The follower to fill: not the controller (its Raft log is not what is under test).
    let full = if controller == 3 { 2 } else { 3 };
    let others: Vec<u32> = cluster.ids().into_iter().filter(|&i| i != full).collect();
    let (leader, third) = (others[0], others[1]);
    // Move its data onto a small filesystem, keeping what it has (it is a Raft voter).
    cluster.kill9(full);
    let data_dir = cluster.node(full).data_dir();
    let backup = data_dir.with_extension("bak");
    std::fs::rename(&data_dir, &backup).expect("move the data dir aside");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let _fs = Tmpfs::mount(&data_dir, FS_BYTES);
    let copied = run(
        Command::new("cp")
            .arg("-a")
            .arg(backup.join("."))
            .arg(&data_dir),
        None,
        Duration::from_secs(30),
    );
    assert!(copied.success(), "copy the data back:\n{copied}");
    cluster.restart(full);
    println!(
        "[{:>6.2} s] node {full} on a {} MiB tmpfs; leader {leader}",
        t0.elapsed().as_secs_f64(),
        FS_BYTES / MIB
    );

    let keep = unique_name("keep");
    let filler = unique_name("filler");
    let mut conn = RawConn::connect(cluster.node(leader).addr()).expect("connect");
    // `full` second: it takes over when the leader goes, so its copy is what is read then.
    create_on(&mut conn, &keep, &[leader, full, third], "3");
    create_on(&mut conn, &filler, &[leader, third, full], "1");
    cluster.wait_for_full_isr(&keep, 1);
    cluster.wait_for_full_isr(&filler, 1);
    let version = wire::negotiate::<ProduceRequest>(&mut conn, 9);

    // Acknowledged (offset, value), and values whose produce failed: those may or may not be
    // in the log (NOT_ENOUGH_REPLICAS_AFTER_APPEND means written, not acknowledged).
    let mut kept: Vec<(i64, String)> = Vec::new();
    let mut unacked: Vec<String> = Vec::new();
    let mut send_keep = |conn: &mut RawConn, acks: i16, n: usize| {
        let value = format!("keep-{n}");
        let r = produce_acks(
            conn,
            version,
            &keep,
            acks,
            BatchSpec::new(&[("k", &value)]).encode(),
        );
        if r.0 == 0 {
            kept.push((r.1, value));
        } else {
            unacked.push(value);
        }
        r.0
    };
    for n in 0..10 {
        assert_eq!(
            send_keep(&mut conn, -1, n),
            0,
            "acks=all with every replica in sync"
        );
    }

    // Fill the follower through replication (acks=1: the leader does not wait for it) until
    // it stops taking the leader's batches at its floor and is out of the filler's ISR.
    let mut batches = 0u64;
    let filler_out = |cluster: &mut Cluster| {
        cluster
            .partition_state(&filler, 0)
            .is_some_and(|p| !p.isr.contains(&(full as i32)))
    };
    // Out of the ISR and near its floor: a follower may also fall out of the ISR by lagging
    // behind this fast acks=1 producer while it still has room.
    loop {
        if batches.is_multiple_of(8)
            && free_bytes(&data_dir) < FLOOR_BYTES + FLOOR_BYTES / 4
            && filler_out(&mut cluster)
        {
            break;
        }
        assert!(
            batches < FS_BYTES / (700 * 1024) * 4,
            "node {full} never left the ISR of {filler}: {} MiB free",
            free_bytes(&data_dir) / MIB
        );
        let (code, _) = produce_acks(&mut conn, version, &filler, 1, filler_batch(batches));
        assert_eq!(code, 0, "acks=1 filler produce {batches}");
        batches += 1;
    }
    let free = free_bytes(&data_dir);
    assert!(
        free > FLOOR_BYTES / 2,
        "the floor keeps headroom on node {full}: {free} bytes free"
    );
    println!(
        "[{:>6.2} s] node {full} out of the filler's ISR after {batches} filler batches ({} MiB free)",
        t0.elapsed().as_secs_f64(),
        free_bytes(&data_dir) / MIB
    );

    // acks=1 keeps working; acks=all needs the follower until it leaves the ISR, then is
    // refused with NOT_ENOUGH_REPLICAS (min.insync.replicas=3).
    assert_eq!(
        send_keep(&mut conn, 1, 100),
        0,
        "acks=1 while a follower is full"
    );
    let started = Instant::now();
    let first = send_keep(&mut conn, -1, 101);
    println!(
        "[{:>6.2} s] first acks=all while full: error {first} after {} ms",
        t0.elapsed().as_secs_f64(),
        started.elapsed().as_millis()
    );
    let mut n = 200;
    wait_until(
        Duration::from_secs(30),
        "acks=all is refused with NOT_ENOUGH_REPLICAS",
        || {
            n += 1;
            send_keep(&mut conn, -1, n) == NOT_ENOUGH_REPLICAS
        },
    );
    let isr = cluster.partition_state(&keep, 0).map(|p| p.isr);
    assert!(
        isr.as_ref().is_some_and(|i| !i.contains(&(full as i32))),
        "node {full} left the ISR of {keep}: {isr:?}"
    );
    for n in 300..310 {
        assert_eq!(
            send_keep(&mut conn, 1, n),
            0,
            "acks=1 while the follower is out"
        );
    }
    println!(
        "[{:>6.2} s] acks=1 served, acks=all refused",
        t0.elapsed().as_secs_f64()
    );

    // Space returns: the follower catches up and rejoins without a restart.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .create()
        .expect("admin client");
    let opts = AdminOptions::new()
        .request_timeout(Some(Timeout::After(Duration::from_secs(30))))
        .operation_timeout(Some(Timeout::After(Duration::from_secs(30))));
    let results = futures::executor::block_on(admin.delete_topics(&[filler.as_str()], &opts))
        .unwrap_or_else(|e| panic!("DeleteTopics: {e}"));
    for r in results {
        r.unwrap_or_else(|(t, code)| panic!("DeleteTopics {t}: {code:?}"));
    }
    cluster.wait_for_full_isr(&keep, 1);
    println!(
        "[{:>6.2} s] node {full} back in the ISR ({} MiB free)",
        t0.elapsed().as_secs_f64(),
        free_bytes(&data_dir) / MIB
    );
    assert_eq!(send_keep(&mut conn, -1, 400), 0, "acks=all after recovery");
    drop(conn);

    // Nothing acknowledged is lost, from the leader and from the follower that was full:
    // every acknowledged record at its offset, anything else only from a refused produce.
    let check = |bootstrap: &str, from: &str| -> Vec<(i64, String)> {
        let read: Vec<(i64, String)> = read_all(bootstrap, &keep)
            .into_iter()
            .map(|(o, _, v)| (o, v.unwrap_or_default()))
            .collect();
        let missing: Vec<&(i64, String)> = kept.iter().filter(|k| !read.contains(k)).collect();
        assert!(
            missing.is_empty(),
            "{keep} from {from} lost acknowledged {missing:?}"
        );
        let extra: Vec<&(i64, String)> = read
            .iter()
            .filter(|r| !kept.contains(r) && !unacked.contains(&r.1))
            .collect();
        assert!(
            extra.is_empty(),
            "{keep} from {from} has records nobody sent: {extra:?}"
        );
        read
    };
    let from_leader = check(&cluster.bootstrap(), "the leader");
    cluster.kill9(leader);
    let successor = cluster.wait_for_leader(&keep, 0, |l| l != leader);
    assert_eq!(successor, full, "the follower that was full takes over");
    let from_full = check(
        &cluster.node(full).bootstrap(),
        "the follower that was full",
    );
    assert_eq!(from_full, from_leader, "the same log on both");

    println!(
        "[{:>6.2} s] {} acknowledged records read back from node {full} as leader",
        t0.elapsed().as_secs_f64(),
        kept.len()
    );
}
