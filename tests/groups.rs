//! Consumer groups driven by real clients: `tests/clients/group_member.py` processes
//! (confluent-kafka/librdkafka with both group protocols, and kafka-python) that are killed and
//! added while a producer keeps writing (issue 4, "Semantics to test with real clients").
//!
//! ```text
//!   test ──▶ Node / Cluster   [groups] from groups_toml(): 4 offsets partitions, 300 ms initial
//!    │                        rebalance delay, 1 s minimum session, KIP-848 sessions of 4 s
//!    ├──▶ Feeder    rdkafka producer thread: RATE records/s round-robin over every partition
//!    ├──▶ Group     group_member.py processes, each appending JSON events to <dir>/<name>.jsonl:
//!    │              assigned / revoked / lost / rec / committed / closing, "t" = CLOCK_MONOTONIC
//!    │              ◀── polled: ownership, consumption and commits are read back from the files
//!    └──▶ checks    balanced: the running members' latest assignments are disjoint and cover
//!                   every partition; consumed again: a killed member's partitions are read by
//!                   the survivors after the kill; processed: every offset 0..log end was written
//!                   by some member; exclusive: no partition was owned by two members during
//!                   overlapping intervals (assigned → revoked/lost/closing/kill); committed: after
//!                   every member commits and leaves (SIGTERM), the group's committed offsets
//!                   equal the log end offsets
//! ```
//!
//! Nothing sleeps hoping a condition holds: every wait polls the event files (or the cluster)
//! with a deadline. The one exception is [`Group::hold`], which watches for a bounded time that
//! something does *not* happen (a static member's restart must not rebalance the others).
//!
//! The single-node tests run in parallel (as many as the test threads; they share a lock); the
//! 3-node test holds the lock alone. The retention test waits for the coordinator's periodic
//! retention check (30 s) and is the longest. A failing test names the member event files and
//! stderr logs (kept, with the node dirs) and prints a per-member summary. Run one test with
//! its output:
//!
//! ```text
//! cargo test -p rivulet-broker --test groups static_member -- --nocapture
//! ```

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::protocol::{Message, Request, StrBytes};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use harness::cluster::{Cluster, ClusterOptions};
use harness::kafka::{self, DeliveryLog};
use harness::wire::{self, RawConn};
use harness::{
    clients_dir, require_python, run, try_wait_until, unique_name, wait_until, CmdOutput, Node,
    NodeOptions, RIVULET,
};

/// Partitions of `__consumer_offsets` in these tests (`[groups] offsets_partitions`).
const OFFSETS_PARTITIONS: i32 = 4;
/// Records per second the feeder writes, spread over every partition of the test's topics.
const RATE: u32 = 120;
/// Classic session timeout of the members (the nodes allow 1 s and up).
const SESSION_MS: u32 = 4_000;
/// How long a group gets to settle after members join, leave or die. Generous: the slowest
/// legitimate path is a session timeout (4 s) plus a rebalance on a loaded 2-core machine.
const SETTLE: Duration = Duration::from_secs(60);
/// How long members get to read everything once the feeder stops.
const DRAIN: Duration = Duration::from_secs(60);
/// How long a member gets to commit, leave and exit after SIGTERM.
const MEMBER_EXIT: Duration = Duration::from_secs(30);
/// How long the committed offsets get to reach the expected values.
const COMMIT_WAIT: Duration = Duration::from_secs(20);

/// The `[groups]` table every node gets: a small offsets topic and fast rebalances, so that
/// the default 3 s initial rebalance delay and 6 s minimum session do not dominate the tests.
fn groups_toml(offsets_replication: u32) -> String {
    format!(
        "[groups]\n\
         offsets_partitions = {OFFSETS_PARTITIONS}\n\
         offsets_replication_factor = {offsets_replication}\n\
         initial_rebalance_delay_ms = 300\n\
         min_session_timeout_ms = 1000\n\
         consumer_session_timeout_ms = 4000\n\
         consumer_heartbeat_interval_ms = 500\n"
    )
}

/// Single-node tests hold this shared (two run at once on the default two test threads); the
/// cluster test holds it exclusively.
static NODES: RwLock<()> = RwLock::new(());

fn light() -> RwLockReadGuard<'static, ()> {
    NODES.read().unwrap_or_else(|e| e.into_inner())
}

fn heavy() -> RwLockWriteGuard<'static, ()> {
    NODES.write().unwrap_or_else(|e| e.into_inner())
}

fn start_node() -> Node {
    Node::start_with(NodeOptions {
        config_toml: Some(groups_toml(1)),
        ..NodeOptions::default()
    })
}

// ---------------------------------------------------------------------------------------------
// Topic partitions and offsets

/// (topic, partition).
type Tp = (String, i32);

fn tps_of(topics: &[(String, i32)]) -> BTreeSet<Tp> {
    topics
        .iter()
        .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
        .collect()
}

fn fmt_tp(tp: &Tp) -> String {
    format!("{}/{}", tp.0, tp.1)
}

fn fmt_tps<'a>(tps: impl IntoIterator<Item = &'a Tp>) -> String {
    let v: Vec<String> = tps.into_iter().map(fmt_tp).collect();
    format!("[{}]", v.join(", "))
}

fn fmt_offsets(m: &BTreeMap<Tp, i64>) -> String {
    let v: Vec<String> = m
        .iter()
        .map(|(tp, o)| format!("{}={o}", fmt_tp(tp)))
        .collect();
    format!("{{{}}}", v.join(", "))
}

/// Java's `String.hashCode` (over UTF-16 code units) and Kafka's `abs(h) % n`, which picks a
/// group's `__consumer_offsets` partition. Written here independently of the broker's copy.
fn offsets_partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs: i32::MIN maps to 0.
    let h = if h == i32::MIN { 0 } else { h.abs() };
    h % partitions
}

fn checker(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // Never subscribes: OffsetFetch and ListOffsets only, nothing is joined or committed.
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .expect("create checker consumer")
}

/// The log end offset (high watermark) of every partition, retried while the cluster settles.
fn end_offsets(bootstrap: &str, topics: &[(String, i32)]) -> Result<BTreeMap<Tp, i64>, String> {
    let consumer = checker(bootstrap, "rivulet-groups-checker");
    let mut out = BTreeMap::new();
    for tp in tps_of(topics) {
        let mut last = String::new();
        let mut hw = None;
        let waited = try_wait_until(
            Duration::from_secs(30),
            &format!("the log end offset of {}", fmt_tp(&tp)),
            || match consumer.fetch_watermarks(&tp.0, tp.1, Duration::from_secs(5)) {
                Ok((_, high)) => {
                    hw = Some(high);
                    true
                }
                Err(e) => {
                    last = e.to_string();
                    false
                }
            },
        );
        match (waited, hw) {
            (Ok(()), Some(high)) => {
                out.insert(tp, high);
            }
            (r, _) => return Err(format!("{r:?}: {last}")),
        }
    }
    Ok(out)
}

/// The group's committed offsets (`None`: nothing committed), read with OffsetFetch.
fn committed_offsets(
    bootstrap: &str,
    group: &str,
    tps: &BTreeSet<Tp>,
) -> Result<BTreeMap<Tp, Option<i64>>, String> {
    let consumer = checker(bootstrap, group);
    let mut tpl = TopicPartitionList::new();
    for (t, p) in tps {
        tpl.add_partition(t, *p);
    }
    let res = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .map_err(|e| format!("OffsetFetch for group {group}: {e}"))?;
    let mut out = BTreeMap::new();
    for e in res.elements() {
        e.error()
            .map_err(|err| format!("OffsetFetch {}/{}: {err}", e.topic(), e.partition()))?;
        let offset = match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        out.insert((e.topic().to_string(), e.partition()), offset);
    }
    Ok(out)
}

/// Polls until the group's committed offsets are exactly `expected`.
fn wait_committed(
    bootstrap: &str,
    group: &str,
    expected: &BTreeMap<Tp, i64>,
    timeout: Duration,
) -> Result<(), String> {
    let tps: BTreeSet<Tp> = expected.keys().cloned().collect();
    let mut last = String::from("nothing read yet");
    try_wait_until(
        timeout,
        &format!("group {group} has committed {}", fmt_offsets(expected)),
        || match committed_offsets(bootstrap, group, &tps) {
            Ok(got) => {
                let same = expected
                    .iter()
                    .all(|(tp, o)| got.get(tp) == Some(&Some(*o)));
                let v: Vec<String> = got
                    .iter()
                    .map(|(tp, o)| match o {
                        Some(o) => format!("{}={o}", fmt_tp(tp)),
                        None => format!("{}=none", fmt_tp(tp)),
                    })
                    .collect();
                last = format!("committed {{{}}}", v.join(", "));
                same
            }
            Err(e) => {
                last = e;
                false
            }
        },
    )
    .map_err(|e| format!("{e}; last: {last}"))
}

// ---------------------------------------------------------------------------------------------
// Producing

/// What a [`Feeder`] did.
#[derive(Debug)]
struct FeedReport {
    sent: usize,
    acked: usize,
    failed: Vec<(usize, String)>,
    flush_error: Option<String>,
}

impl FeedReport {
    fn problem(&self) -> Option<String> {
        if self.acked == 0 {
            return Some(format!("the feeder got no record acknowledged: {self:?}"));
        }
        if !self.failed.is_empty() || self.flush_error.is_some() {
            return Some(format!(
                "the feeder's deliveries failed ({} of {} sent, flush: {:?}), e.g. {:?}",
                self.failed.len(),
                self.sent,
                self.flush_error,
                &self.failed[..self.failed.len().min(5)]
            ));
        }
        None
    }
}

fn producer(bootstrap: &str) -> (ThreadedProducer<DeliveryLog>, DeliveryLog) {
    let log = DeliveryLog::default();
    let producer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create_with_context(log.clone())
        .expect("create producer");
    (producer, log)
}

/// Queues one record to an explicit partition, waiting (bounded) while the queue is full.
fn send(producer: &ThreadedProducer<DeliveryLog>, tp: &Tp, seq: usize) -> Result<(), String> {
    let key = format!("k-{seq}");
    let value = format!("feed-{seq:08}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut record = BaseRecord::with_opaque_to(&tp.0, seq)
        .partition(tp.1)
        .key(key.as_str())
        .payload(value.as_str());
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                if Instant::now() < deadline =>
            {
                record = r;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(format!("queue record {seq} to {}: {e}", fmt_tp(tp))),
        }
    }
}

/// A producer thread writing `rate` records per second round-robin over every partition of its
/// topics (explicit partitions: every partition keeps receiving records), until stopped.
#[derive(Debug)]
struct Feeder {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<FeedReport>>,
}

impl Feeder {
    fn start(bootstrap: &str, topics: &[(String, i32)], rate: u32) -> Feeder {
        let stop = Arc::new(AtomicBool::new(false));
        let tps: Vec<Tp> = tps_of(topics).into_iter().collect();
        let bootstrap = bootstrap.to_string();
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let (producer, log) = producer(&bootstrap);
            let started = Instant::now();
            let mut seq = 0usize;
            let mut errors = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as usize;
                while seq < due && !flag.load(Ordering::SeqCst) {
                    if let Err(e) = send(&producer, &tps[seq % tps.len()], seq) {
                        errors.push((seq, e));
                    }
                    seq += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let flush_error = producer
                .flush(Duration::from_secs(60))
                .err()
                .map(|e| e.to_string());
            let mut failed = log.failed();
            failed.extend(errors);
            FeedReport {
                sent: seq,
                acked: log.acked_count(),
                failed,
                flush_error,
            }
        });
        Feeder {
            stop,
            handle: Some(handle),
        }
    }

    fn stop(mut self) -> FeedReport {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .expect("feeder running")
            .join()
            .expect("feeder thread panicked")
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Writes `n` records to every partition of `topics` and waits for them all.
fn produce_each(bootstrap: &str, topics: &[(String, i32)], n: usize) -> Result<(), String> {
    let (producer, log) = producer(bootstrap);
    let tps = tps_of(topics);
    let mut seq = 0;
    for _ in 0..n {
        for tp in &tps {
            send(&producer, tp, seq)?;
            seq += 1;
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("flush: {e}"))?;
    let failed = log.failed();
    if !failed.is_empty() || log.acked_count() != seq {
        return Err(format!(
            "{} of {seq} records acknowledged; failures: {:?}",
            log.acked_count(),
            &failed[..failed.len().min(5)]
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Clocks and coordinators

/// `script` runs in Python with `sys.argv[1:] = args`; its stdout is parsed as one float.
fn python_float(python: &str, script: &str, args: &[String]) -> f64 {
    let out = run(
        Command::new(python).arg("-c").arg(script).args(args),
        None,
        Duration::from_secs(30),
    );
    out.assert_success();
    out.stdout
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("expected a number from python ({e}):\n{out}"))
}

/// `time.monotonic()` now, on the clock of the members' `"t"` (CLOCK_MONOTONIC; read through
/// Python because the workspace denies `unsafe`, and std does not expose the raw clock). The
/// value is taken after this call starts, so it is later than anything done before the call.
fn mono_now(python: &str) -> f64 {
    python_float(python, "import time; print(repr(time.monotonic()))", &[])
}

/// FindCoordinator(group) asked of the node at `addr`: the coordinator's node id.
fn find_coordinator(addr: SocketAddr, group: &str) -> Result<i32, String> {
    let mut conn = RawConn::connect_timeout(addr, Duration::from_secs(3))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (min, max) = wire::supported_versions(&mut conn, FindCoordinatorRequest::KEY)
        .map_err(|e| format!("ApiVersions: {e}"))?
        .ok_or("FindCoordinator is not advertised")?;
    let version = max.min(FindCoordinatorRequest::VERSIONS.max).min(4);
    if version < min {
        return Err(format!("FindCoordinator versions {min}..={max} advertised"));
    }
    let mut req = FindCoordinatorRequest::default();
    req.key_type = 0;
    if version >= 4 {
        req.coordinator_keys = vec![StrBytes::from_string(group.to_string())];
    } else {
        req.key = StrBytes::from_string(group.to_string());
    }
    let resp = conn
        .request(&req, version)
        .map_err(|e| format!("FindCoordinator v{version}: {e}"))?;
    let (error, node) = if version >= 4 {
        let c = resp
            .coordinators
            .first()
            .ok_or("FindCoordinator answered no coordinator")?;
        (c.error_code, c.node_id.0)
    } else {
        (resp.error_code, resp.node_id.0)
    };
    if error != 0 {
        return Err(format!("FindCoordinator error code {error}"));
    }
    Ok(node)
}

/// Polls until every live node names the same live coordinator for `group`, which `accept`
/// accepts and which leads the group's `__consumer_offsets` partition (when Metadata lists that
/// topic), and returns it.
fn wait_for_coordinator(cluster: &mut Cluster, group: &str, accept: impl Fn(u32) -> bool) -> u32 {
    let partition = offsets_partition_for(group, OFFSETS_PARTITIONS);
    let mut last = String::new();
    let mut found = None;
    let waited = try_wait_until(
        harness::cluster::SETTLE_TIMEOUT,
        &format!("every live node names the same live coordinator for group {group}"),
        || {
            let live = cluster.live_ids();
            let answers: BTreeMap<u32, Result<i32, String>> = live
                .iter()
                .map(|&id| (id, find_coordinator(cluster.node(id).addr(), group)))
                .collect();
            let leader = cluster
                .partition_state("__consumer_offsets", partition)
                .map(|s| s.leader);
            last = format!(
                "FindCoordinator answers {answers:?}; leader of __consumer_offsets/{partition}: \
                 {leader:?}"
            );
            let named: BTreeSet<i32> = answers.values().filter_map(|r| r.clone().ok()).collect();
            if answers.values().any(Result::is_err) || named.len() != 1 {
                return false;
            }
            let c = *named.iter().next().expect("one coordinator");
            if leader.is_some_and(|l| l != c) {
                return false;
            }
            found = u32::try_from(c)
                .ok()
                .filter(|c| live.contains(c) && accept(*c));
            found.is_some()
        },
    );
    match (waited, found) {
        (Ok(()), Some(c)) => c,
        (r, _) => cluster.fail(&format!("{r:?}; last: {last}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Member processes and their event files

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientLib {
    Confluent,
    KafkaPython,
}

/// How to run one `group_member.py`.
#[derive(Debug, Clone)]
struct MemberSpec {
    client: ClientLib,
    /// `classic` or `consumer` (KIP-848).
    protocol: &'static str,
    assignor: Option<&'static str>,
    instance_id: Option<String>,
    session_timeout_ms: Option<u32>,
    /// `auto` or `sync-every-N`.
    commit: String,
    offset_reset: &'static str,
}

impl MemberSpec {
    /// Classic protocol with a client-side assignor and the tests' session timeout.
    fn classic(client: ClientLib, assignor: &'static str) -> MemberSpec {
        MemberSpec {
            client,
            protocol: "classic",
            assignor: Some(assignor),
            instance_id: None,
            session_timeout_ms: Some(SESSION_MS),
            commit: "sync-every-10".to_string(),
            offset_reset: "earliest",
        }
    }

    /// KIP-848 (`group.protocol=consumer`, librdkafka): assignor, session and heartbeat are the
    /// broker's.
    fn consumer_protocol() -> MemberSpec {
        MemberSpec {
            client: ClientLib::Confluent,
            protocol: "consumer",
            assignor: None,
            instance_id: None,
            session_timeout_ms: None,
            commit: "sync-every-10".to_string(),
            offset_reset: "earliest",
        }
    }

    fn commit(mut self, commit: &str) -> MemberSpec {
        self.commit = commit.to_string();
        self
    }

    fn instance(mut self, id: &str) -> MemberSpec {
        self.instance_id = Some(id.to_string());
        self
    }

    fn session(mut self, ms: u32) -> MemberSpec {
        self.session_timeout_ms = Some(ms);
        self
    }

    fn offset_reset(mut self, reset: &'static str) -> MemberSpec {
        self.offset_reset = reset;
        self
    }

    fn describe(&self) -> String {
        let client = match self.client {
            ClientLib::Confluent => "confluent-kafka",
            ClientLib::KafkaPython => "kafka-python",
        };
        let mut s = format!("{client} {}", self.protocol);
        if let Some(a) = self.assignor {
            s.push_str(&format!(" {a}"));
        }
        if let Some(i) = &self.instance_id {
            s.push_str(&format!(" instance={i}"));
        }
        s.push_str(&format!(" commit={}", self.commit));
        s
    }
}

/// One line of a member's event file.
#[derive(Debug, Clone)]
enum Ev {
    Started,
    /// assigned / revoked / lost / owned: `owned` is everything owned after the event.
    Ownership {
        kind: String,
        parts: BTreeSet<Tp>,
        owned: BTreeSet<Tp>,
        member_id: Option<String>,
    },
    /// `n` consecutive offsets from `o`.
    Rec {
        tp: Tp,
        o: i64,
        n: i64,
    },
    Committed(Vec<(Tp, i64)>),
    CommitFailed(String),
    Error(String),
    Closing,
    Closed,
    Other(String),
}

#[derive(Debug, Clone)]
struct Event {
    t: f64,
    ev: Ev,
}

fn parse_tps(v: &Value) -> BTreeSet<Tp> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| Some((x.get(0)?.as_str()?.to_string(), x.get(1)?.as_i64()? as i32)))
                .collect()
        })
        .unwrap_or_default()
}

fn parse_event(line: &str) -> Result<Event, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line:?}"))?;
    let t = v["t"]
        .as_f64()
        .ok_or_else(|| format!("no \"t\": {line:?}"))?;
    let kind = v["ev"].as_str().unwrap_or("").to_string();
    let ev = match kind.as_str() {
        "started" => Ev::Started,
        "assigned" | "revoked" | "lost" | "owned" => Ev::Ownership {
            parts: parse_tps(&v["parts"]),
            owned: parse_tps(&v["owned"]),
            member_id: v["member"].as_str().map(str::to_string),
            kind,
        },
        "rec" => Ev::Rec {
            tp: (
                v["topic"].as_str().unwrap_or("").to_string(),
                v["p"].as_i64().unwrap_or(-1) as i32,
            ),
            o: v["o"].as_i64().unwrap_or(-1),
            n: v["n"].as_i64().unwrap_or(0),
        },
        "committed" => Ev::Committed(
            v["offsets"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| {
                            Some((
                                (x.get(0)?.as_str()?.to_string(), x.get(1)?.as_i64()? as i32),
                                x.get(2)?.as_i64()?,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        ),
        "commit_failed" => Ev::CommitFailed(v.to_string()),
        "error" => Ev::Error(v["err"].as_str().unwrap_or("").to_string()),
        "closing" => Ev::Closing,
        "closed" => Ev::Closed,
        _ => Ev::Other(line.to_string()),
    };
    Ok(Event { t, ev })
}

/// Incremental reader of one event file: complete lines only (a SIGKILLed member can leave
/// half a line).
#[derive(Debug)]
struct EventLog {
    path: PathBuf,
    read: u64,
    partial: Vec<u8>,
    events: Vec<Event>,
    bad_lines: Vec<String>,
}

impl EventLog {
    fn new(path: PathBuf) -> EventLog {
        EventLog {
            path,
            read: 0,
            partial: Vec::new(),
            events: Vec::new(),
            bad_lines: Vec::new(),
        }
    }

    fn refresh(&mut self) {
        let Ok(mut f) = File::open(&self.path) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.read)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            return;
        }
        self.read += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        while let Some(pos) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            match parse_event(line) {
                Ok(e) => self.events.push(e),
                Err(e) => {
                    if self.bad_lines.len() < 10 {
                        self.bad_lines.push(e);
                    }
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Fate {
    Running,
    /// SIGKILLed at this `time.monotonic()`.
    Killed(f64),
    /// Exited 0 after SIGTERM.
    Stopped,
}

#[derive(Debug)]
struct Member {
    name: String,
    spec: MemberSpec,
    client_id: String,
    out: PathBuf,
    stderr: PathBuf,
    child: Option<Child>,
    fate: Fate,
    log: EventLog,
}

impl Member {
    fn events(&self) -> &[Event] {
        &self.log.events
    }

    /// The member's latest assignment: empty once it is closing or no longer running.
    fn owned(&self) -> BTreeSet<Tp> {
        if self.fate == Fate::Running {
            self.last_owned()
        } else {
            BTreeSet::new()
        }
    }

    /// What the member last said it owned (for a killed member: when it was killed).
    fn last_owned(&self) -> BTreeSet<Tp> {
        let mut owned = BTreeSet::new();
        for e in self.events() {
            match &e.ev {
                Ev::Ownership { owned: o, .. } => owned = o.clone(),
                Ev::Closing => owned.clear(),
                _ => {}
            }
        }
        owned
    }

    fn member_id(&self) -> Option<String> {
        self.events().iter().rev().find_map(|e| match &e.ev {
            Ev::Ownership {
                member_id: Some(m), ..
            } if !m.is_empty() => Some(m.clone()),
            _ => None,
        })
    }

    /// Intervals `[from, to)` during which the member owned each partition: from an assignment
    /// to the revocation/loss that removed it, its `closing` line, or its SIGKILL.
    fn ownership_intervals(&self) -> Vec<(Tp, f64, f64)> {
        let mut open: BTreeMap<Tp, f64> = BTreeMap::new();
        let mut out = Vec::new();
        let mut last_t = 0.0f64;
        for e in self.events() {
            last_t = last_t.max(e.t);
            match &e.ev {
                Ev::Ownership { owned, .. } => {
                    let gone: Vec<Tp> = open
                        .keys()
                        .filter(|tp| !owned.contains(*tp))
                        .cloned()
                        .collect();
                    for tp in gone {
                        let from = open.remove(&tp).expect("open interval");
                        out.push((tp, from, e.t));
                    }
                    for tp in owned {
                        open.entry(tp.clone()).or_insert(e.t);
                    }
                }
                Ev::Closing => {
                    for (tp, from) in std::mem::take(&mut open) {
                        out.push((tp, from, e.t));
                    }
                }
                _ => {}
            }
        }
        let end = match self.fate {
            Fate::Running => f64::INFINITY,
            Fate::Killed(at) => at,
            // Stopped without a closing line (it always writes one): its last line.
            Fate::Stopped => last_t,
        };
        for (tp, from) in open {
            out.push((tp, from, end));
        }
        out
    }

    fn recs(&self) -> impl Iterator<Item = (&Tp, i64, i64, f64)> + '_ {
        self.events().iter().filter_map(|e| match &e.ev {
            Ev::Rec { tp, o, n } => Some((tp, *o, *n, e.t)),
            _ => None,
        })
    }

    /// The first offset the member consumed from each partition.
    fn first_recs(&self) -> BTreeMap<Tp, i64> {
        let mut first = BTreeMap::new();
        for (tp, o, _, _) in self.recs() {
            first.entry(tp.clone()).or_insert(o);
        }
        first
    }

    fn stderr_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn summary(&self) -> String {
        let mut recs: BTreeMap<Tp, (i64, i64, i64)> = BTreeMap::new();
        for (tp, o, n, _) in self.recs() {
            let e = recs.entry(tp.clone()).or_insert((o, o + n - 1, 0));
            e.0 = e.0.min(o);
            e.1 = e.1.max(o + n - 1);
            e.2 += n;
        }
        let recs: Vec<String> = recs
            .iter()
            .map(|(tp, (lo, hi, n))| format!("{}: {n} records in {lo}..={hi}", fmt_tp(tp)))
            .collect();
        let mut committed: BTreeMap<Tp, i64> = BTreeMap::new();
        let (mut assigned, mut revoked, mut lost) = (0, 0, 0);
        let (mut errors, mut commit_failures, mut other) = (Vec::new(), Vec::new(), Vec::new());
        for e in self.events() {
            match &e.ev {
                Ev::Committed(offsets) => {
                    for (tp, o) in offsets {
                        committed.insert(tp.clone(), *o);
                    }
                }
                Ev::Ownership { kind, .. } if kind == "assigned" => assigned += 1,
                Ev::Ownership { kind, .. } if kind == "revoked" => revoked += 1,
                Ev::Ownership { kind, .. } if kind == "lost" => lost += 1,
                Ev::CommitFailed(line) => commit_failures.push(line.clone()),
                Ev::Error(err) if errors.len() < 3 => errors.push(err.clone()),
                Ev::Other(line) => other.push(line.clone()),
                _ => {}
            }
        }
        format!(
            "member {} ({}, client.id {}): {:?}; owns {}; {assigned} assigned / {revoked} \
             revoked / {lost} lost events; consumed {{{}}}; last commits {}; {} failed commits \
             {:?}; errors {errors:?}; {} unknown lines {:?}; unparsable lines {:?}\n    \
             events: {}\n    stderr: {}",
            self.name,
            self.spec.describe(),
            self.client_id,
            self.fate,
            fmt_tps(&self.owned()),
            recs.join(", "),
            fmt_offsets(&committed),
            commit_failures.len(),
            &commit_failures[..commit_failures.len().min(2)],
            other.len(),
            &other[..other.len().min(2)],
            self.log.bad_lines,
            self.out.display(),
            self.stderr.display()
        )
    }
}

/// One consumer group and its member processes, for one test.
#[derive(Debug)]
struct Group {
    id: String,
    bootstrap: String,
    /// What every member subscribes to.
    topics: Vec<(String, i32)>,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    members: Vec<Member>,
    /// Temp dirs of the nodes (their logs), for failure messages.
    node_dirs: Vec<PathBuf>,
    python: String,
}

impl Group {
    fn new(
        label: &str,
        bootstrap: &str,
        topics: &[(String, i32)],
        node_dirs: Vec<PathBuf>,
    ) -> Group {
        Group::named(
            unique_name(&format!("group-{label}")),
            bootstrap,
            topics,
            node_dirs,
        )
    }

    fn named(
        id: String,
        bootstrap: &str,
        topics: &[(String, i32)],
        node_dirs: Vec<PathBuf>,
    ) -> Group {
        let python = require_python(&["confluent_kafka", "kafka"]);
        let dir = tempfile::Builder::new()
            .prefix("rivulet-groups-")
            .tempdir()
            .expect("create member dir");
        let dir_path = dir.path().to_path_buf();
        Group {
            id,
            bootstrap: bootstrap.to_string(),
            topics: topics.to_vec(),
            dir: Some(dir),
            dir_path,
            members: Vec::new(),
            node_dirs,
            python,
        }
    }

    fn all_tps(&self) -> BTreeSet<Tp> {
        tps_of(&self.topics)
    }

    /// Starts a member process; returns its index.
    fn start(&mut self, name: &str, spec: MemberSpec) -> usize {
        assert!(
            self.members.iter().all(|m| m.name != name),
            "member name {name} used twice"
        );
        let out = self.dir_path.join(format!("{name}.jsonl"));
        let stderr = self.dir_path.join(format!("{name}.stderr.log"));
        let client_id = format!("{}-{name}", self.id);
        let log_file = File::create(&stderr).expect("create member log");
        let topics: Vec<&str> = self.topics.iter().map(|(t, _)| t.as_str()).collect();
        let mut cmd = Command::new(&self.python);
        cmd.arg(clients_dir().join("group_member.py"))
            .args(["--bootstrap", &self.bootstrap])
            .args(["--topic", &topics.join(",")])
            .args(["--group", &self.id])
            .args([
                "--client",
                match spec.client {
                    ClientLib::Confluent => "confluent",
                    ClientLib::KafkaPython => "kafka-python",
                },
            ])
            .args(["--protocol", spec.protocol])
            .args(["--commit", &spec.commit])
            .args(["--offset-reset", spec.offset_reset])
            .args(["--client-id", &client_id])
            .arg("--out")
            .arg(&out);
        if let Some(a) = spec.assignor {
            cmd.args(["--assignor", a]);
        }
        if let Some(i) = &spec.instance_id {
            cmd.args(["--instance-id", i]);
        }
        if let Some(ms) = spec.session_timeout_ms {
            cmd.args(["--session-timeout-ms", &ms.to_string()]);
        }
        let child = cmd
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log file"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn group_member.py: {e}"));
        eprintln!(
            "groups {}: started member {name} ({}), events in {}",
            self.id,
            spec.describe(),
            out.display()
        );
        self.members.push(Member {
            name: name.to_string(),
            spec,
            client_id,
            log: EventLog::new(out.clone()),
            out,
            stderr,
            child: Some(child),
            fate: Fate::Running,
        });
        self.members.len() - 1
    }

    fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].fate == Fate::Running)
            .collect()
    }

    fn owned(&self, i: usize) -> BTreeSet<Tp> {
        self.members[i].owned()
    }

    /// The running member that owns the most partitions.
    fn busiest(&self) -> usize {
        self.running()
            .into_iter()
            .max_by_key(|&i| (self.owned(i).len(), std::cmp::Reverse(i)))
            .expect("a running member")
    }

    /// SIGKILL (no LeaveGroup, no commit); returns the `time.monotonic()` just before the kill.
    fn kill9(&mut self, i: usize) -> f64 {
        self.refresh();
        let python = self.python.clone();
        let m = &mut self.members[i];
        let mut child = m.child.take().expect("member is running");
        let t = python_float(
            &python,
            "import os, sys, time\nt = time.monotonic()\nos.kill(int(sys.argv[1]), 9)\nprint(repr(t))",
            &[child.id().to_string()],
        );
        let _ = child.wait();
        m.fate = Fate::Killed(t);
        eprintln!(
            "groups {}: SIGKILLed member {} (owned {})",
            self.id,
            m.name,
            fmt_tps(&m.last_owned())
        );
        t
    }

    /// SIGTERM: the member stops polling, commits what it wrote, closes (LeaveGroup unless it
    /// is static) and exits 0, within [`MEMBER_EXIT`].
    fn terminate(&mut self, i: usize) {
        let pid = self.members[i]
            .child
            .as_ref()
            .expect("member is running")
            .id();
        let sent = run(
            Command::new("kill").arg("-TERM").arg(pid.to_string()),
            None,
            Duration::from_secs(10),
        );
        if !sent.success() {
            self.fail(&format!("kill -TERM {pid} failed:\n{sent}"));
        }
        let mut status = None;
        let child = self.members[i].child.as_mut().expect("member is running");
        let exited = try_wait_until(MEMBER_EXIT, "the member exits after SIGTERM", || {
            status = child.try_wait().expect("try_wait on member");
            status.is_some()
        });
        if exited.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.members[i].child = None;
        self.members[i].fate = Fate::Stopped;
        self.refresh();
        let name = self.members[i].name.clone();
        match status {
            Some(s) if s.success() => {}
            Some(s) => self.fail(&format!("member {name} exited with {s} after SIGTERM")),
            None => self.fail(&format!(
                "member {name} did not exit within {MEMBER_EXIT:?} of SIGTERM (SIGKILLed it)"
            )),
        }
        if !self.members[i]
            .events()
            .iter()
            .any(|e| matches!(e.ev, Ev::Closed))
        {
            self.fail(&format!("member {name} exited without its \"closed\" line"));
        }
    }

    /// SIGTERMs every running member, one after the other.
    fn stop_all(&mut self) {
        for i in self.running() {
            self.terminate(i);
        }
    }

    /// Reads new event lines; fails if a member that should be running has exited.
    fn refresh(&mut self) {
        let mut died = None;
        for m in &mut self.members {
            m.log.refresh();
            if let Some(child) = m.child.as_mut() {
                if let Some(status) = child.try_wait().expect("try_wait on member") {
                    died = Some((m.name.clone(), status));
                }
            }
        }
        if let Some((name, status)) = died {
            for m in &mut self.members {
                if m.name == name {
                    m.child = None;
                    m.fate = Fate::Stopped;
                }
            }
            self.fail(&format!("member {name} exited unexpectedly with {status}"));
        }
    }

    /// Polls `condition` (after reading new events) until it holds; returns how long that took.
    fn wait(
        &mut self,
        timeout: Duration,
        what: &str,
        mut condition: impl FnMut(&Group) -> Result<(), String>,
    ) -> Duration {
        let start = Instant::now();
        let mut last;
        loop {
            self.refresh();
            match condition(self) {
                Ok(()) => return start.elapsed(),
                Err(e) => last = e,
            }
            if start.elapsed() >= timeout {
                self.fail(&format!(
                    "timed out after {timeout:?} waiting until {what}; last: {last}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Checks `condition` for `duration` (a property that must keep holding); fails the
    /// moment it does not.
    fn hold(
        &mut self,
        duration: Duration,
        what: &str,
        mut condition: impl FnMut(&Group) -> Result<(), String>,
    ) {
        let start = Instant::now();
        while start.elapsed() < duration {
            self.refresh();
            if let Err(e) = condition(self) {
                self.fail(&format!(
                    "after {:?} of the {duration:?} during which {what}: {e}",
                    start.elapsed()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every running member owns at least `min_each` partitions, no partition is owned twice,
    /// and every partition of the topics is owned.
    fn balanced(&self, min_each: usize) -> Result<(), String> {
        let running = self.running();
        if running.is_empty() {
            return Err("no member is running".to_string());
        }
        let all = self.all_tps();
        let mut owner: BTreeMap<Tp, &str> = BTreeMap::new();
        let mut view = Vec::new();
        for &i in &running {
            let m = &self.members[i];
            let owned = m.owned();
            view.push(format!("{} owns {}", m.name, fmt_tps(&owned)));
            if owned.len() < min_each {
                return Err(format!(
                    "{} owns {} (wanted at least {min_each}); {}",
                    m.name,
                    fmt_tps(&owned),
                    view.join("; ")
                ));
            }
            for tp in &owned {
                if !all.contains(tp) {
                    return Err(format!(
                        "{} owns {}, which is not subscribed",
                        m.name,
                        fmt_tp(tp)
                    ));
                }
                if let Some(other) = owner.insert(tp.clone(), &m.name) {
                    return Err(format!(
                        "{other} and {} both own {}; {}",
                        m.name,
                        fmt_tp(tp),
                        view.join("; ")
                    ));
                }
            }
        }
        let missing: Vec<&Tp> = all.iter().filter(|tp| !owner.contains_key(*tp)).collect();
        if !missing.is_empty() {
            return Err(format!(
                "nobody owns {}; {}",
                fmt_tps(missing),
                view.join("; ")
            ));
        }
        Ok(())
    }

    /// Member `i` owns something and has consumed records.
    fn has_records(&self, i: usize) -> Result<(), String> {
        let m = &self.members[i];
        if m.owned().is_empty() {
            return Err(format!("{} owns no partition yet", m.name));
        }
        if m.recs().next().is_none() {
            return Err(format!(
                "{} owns {} but has consumed nothing",
                m.name,
                fmt_tps(&m.owned())
            ));
        }
        Ok(())
    }

    /// Every running member owns partitions and has consumed records: a steady state.
    fn all_consuming(&self) -> Result<(), String> {
        for i in self.running() {
            self.has_records(i)?;
        }
        Ok(())
    }

    /// Each of `tps` was consumed by one of `by` after `after` (a `time.monotonic()`).
    fn consumed_after(&self, tps: &BTreeSet<Tp>, by: &[usize], after: f64) -> Result<(), String> {
        let mut done = BTreeSet::new();
        for &i in by {
            for (tp, _, _, t) in self.members[i].recs() {
                if t > after && tps.contains(tp) {
                    done.insert(tp.clone());
                }
            }
        }
        let missing: Vec<&Tp> = tps.iter().filter(|tp| !done.contains(*tp)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("not consumed since then: {}", fmt_tps(missing)))
        }
    }

    /// Each of `tps` appears in a successful commit (of any member) after `after`.
    fn committed_after(&self, tps: &BTreeSet<Tp>, after: f64) -> Result<(), String> {
        let mut done = BTreeSet::new();
        for m in &self.members {
            for e in m.events() {
                if let Ev::Committed(offsets) = &e.ev {
                    if e.t > after {
                        done.extend(offsets.iter().map(|(tp, _)| tp.clone()));
                    }
                }
            }
        }
        let missing: Vec<&Tp> = tps.iter().filter(|tp| !done.contains(*tp)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("no commit since then for {}", fmt_tps(missing)))
        }
    }

    /// Every offset in `from[tp]..ends[tp]` (0 when `from` lacks the partition) was consumed by
    /// some member of `members` (every member when `None`).
    fn covered(
        &self,
        members: Option<&[usize]>,
        from: &BTreeMap<Tp, i64>,
        ends: &BTreeMap<Tp, i64>,
    ) -> Result<(), String> {
        let all: Vec<usize> = (0..self.members.len()).collect();
        let members = members.unwrap_or(&all);
        let mut ranges: BTreeMap<&Tp, Vec<(i64, i64)>> = BTreeMap::new();
        for &i in members {
            for (tp, o, n, _) in self.members[i].recs() {
                ranges.entry(tp).or_default().push((o, o + n));
            }
        }
        let mut gaps = Vec::new();
        for (tp, &end) in ends {
            let start = from.get(tp).copied().unwrap_or(0);
            let mut next = start;
            let mut rs = ranges.get(tp).cloned().unwrap_or_default();
            rs.sort_unstable();
            for (lo, hi) in rs {
                if lo > next && next < end {
                    gaps.push(format!("{} {next}..{}", fmt_tp(tp), lo.min(end)));
                }
                next = next.max(hi);
            }
            if next < end {
                gaps.push(format!("{} {next}..{end}", fmt_tp(tp)));
            }
        }
        if gaps.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "offsets never consumed (of {} .. log end {}): {}",
                fmt_offsets(from),
                fmt_offsets(ends),
                gaps.join(", ")
            ))
        }
    }

    /// Partitions owned by two members at overlapping times (ownership intervals from the
    /// members' own callbacks; each revocation is logged before the member acknowledges it, and
    /// each assignment after the coordinator hands it out, so a correct coordinator never
    /// produces an overlap).
    fn overlaps(&self) -> Vec<String> {
        let mut by_tp: BTreeMap<Tp, Vec<(&str, f64, f64)>> = BTreeMap::new();
        for m in &self.members {
            for (tp, from, to) in m.ownership_intervals() {
                by_tp.entry(tp).or_default().push((&m.name, from, to));
            }
        }
        let mut out = Vec::new();
        for (tp, intervals) in &by_tp {
            for (i, a) in intervals.iter().enumerate() {
                for b in &intervals[i + 1..] {
                    if a.0 != b.0 && a.1 < b.2 && b.1 < a.2 {
                        out.push(format!(
                            "{} owned by {} during [{:.3}, {:.3}) and by {} during [{:.3}, {:.3})",
                            fmt_tp(tp),
                            a.0,
                            a.1,
                            a.2,
                            b.0,
                            b.1,
                            b.2
                        ));
                    }
                }
            }
        }
        out
    }

    fn check_no_overlaps(&self) {
        let overlaps = self.overlaps();
        if !overlaps.is_empty() {
            self.fail(&format!(
                "a partition was owned by two members at once:\n  {}",
                overlaps.join("\n  ")
            ));
        }
    }

    /// SIGTERMs every member and checks that the group's committed offsets are the log ends.
    fn stop_all_and_check_committed(&mut self, ends: &BTreeMap<Tp, i64>) {
        self.stop_all();
        if let Err(e) = wait_committed(&self.bootstrap, &self.id, ends, COMMIT_WAIT) {
            self.fail(&format!(
                "after every member committed and left, the committed offsets are not the log \
                 end offsets: {e}"
            ));
        }
    }

    fn summary(&self) -> String {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("  {}", m.summary()))
            .collect();
        format!(
            "group {} on {} (topics {:?}), member files in {}:\n{}",
            self.id,
            self.bootstrap,
            self.topics,
            self.dir_path.display(),
            members.join("\n")
        )
    }

    /// Panics with `msg`, the member summaries, the paths of every member and node log, and
    /// the last lines of each member's stderr. The files are kept.
    fn fail(&self, msg: &str) -> ! {
        let tails: Vec<String> = self
            .members
            .iter()
            .map(|m| {
                format!(
                    "----- {} (last 15 lines) -----\n{}",
                    m.stderr.display(),
                    m.stderr_tail(15)
                )
            })
            .collect();
        let nodes: Vec<String> = self
            .node_dirs
            .iter()
            .map(|d| format!("  {}/node*.log", d.display()))
            .collect();
        panic!(
            "{msg}\n{}\nnode logs (kept):\n{}\n{}",
            self.summary(),
            nodes.join("\n"),
            tails.join("\n")
        );
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                eprintln!(
                    "kept the member files of group {} for inspection: {}",
                    self.id,
                    dir.keep().display()
                );
            }
        }
    }
}

/// Stops the feeder, checks its deliveries and returns the log end offsets of `g`'s topics.
fn stop_feeder(g: &Group, feeder: Feeder) -> BTreeMap<Tp, i64> {
    let report = feeder.stop();
    if let Some(problem) = report.problem() {
        g.fail(&problem);
    }
    eprintln!(
        "groups {}: feeder sent {} records, {} acknowledged",
        g.id, report.sent, report.acked
    );
    end_offsets(&g.bootstrap, &g.topics).unwrap_or_else(|e| g.fail(&e))
}

/// The end of every membership test: everything produced was processed by someone, no
/// partition had two owners at once, and after every member commits and leaves the committed
/// offsets are the log end offsets.
fn drain_and_check(g: &mut Group, ends: &BTreeMap<Tp, i64>) {
    let took = g.wait(
        DRAIN,
        "every produced record was processed by some member",
        |g| g.covered(None, &BTreeMap::new(), ends),
    );
    eprintln!(
        "groups {}: every record up to {} processed ({took:?} after the feeder stopped)",
        g.id,
        fmt_offsets(ends)
    );
    g.check_no_overlaps();
    g.stop_all_and_check_committed(ends);
}

// ---------------------------------------------------------------------------------------------
// Scenarios

#[derive(Debug, Clone, Copy)]
enum Step {
    /// SIGKILL the member owning the most partitions; its partitions must be consumed again by
    /// the others (after the session timeout) and the survivors must cover every partition.
    Kill,
    /// Start one more member; it must receive partitions and records.
    Add,
}

/// One node, a 6-partition topic fed throughout, `initial` members of `spec`, then `steps`;
/// then the common end checks ([`drain_and_check`]).
fn membership_scenario(label: &str, spec: MemberSpec, initial: usize, steps: &[Step]) {
    let _lock = light();
    let mut node = start_node();
    let topic = unique_name(&format!("grp-{label}"));
    kafka::create_topic(&node.bootstrap(), &topic, 6, &[]);
    let mut g = Group::new(
        label,
        &node.bootstrap(),
        &[(topic, 6)],
        vec![node.scratch_dir().to_path_buf()],
    );
    let feeder = Feeder::start(&g.bootstrap, &g.topics, RATE);
    for i in 1..=initial {
        g.start(&format!("m{i}"), spec.clone());
    }
    let took = g.wait(
        SETTLE,
        &format!("{initial} members split the 6 partitions (disjoint, complete) and consume"),
        |g| {
            g.balanced(1)?;
            g.all_consuming()
        },
    );
    eprintln!("groups {}: {initial} members balanced after {took:?}", g.id);
    let mut next = initial + 1;
    for step in steps {
        match step {
            Step::Kill => {
                let victim = g.busiest();
                let owned = g.owned(victim);
                let name = g.members[victim].name.clone();
                let t = g.kill9(victim);
                let survivors = g.running();
                let took = g.wait(
                    SETTLE,
                    &format!(
                        "the partitions {} of SIGKILLed {name} are consumed again by the others",
                        fmt_tps(&owned)
                    ),
                    |g| {
                        g.consumed_after(&owned, &survivors, t)?;
                        g.balanced(1)
                    },
                );
                eprintln!(
                    "groups {}: {name} SIGKILLed; its partitions consumed again after {took:?}",
                    g.id
                );
            }
            Step::Add => {
                let name = format!("m{next}");
                next += 1;
                let i = g.start(&name, spec.clone());
                let took = g.wait(
                    SETTLE,
                    &format!("the new member {name} receives partitions and records"),
                    |g| {
                        g.has_records(i)?;
                        g.balanced(1)
                    },
                );
                eprintln!("groups {}: {name} added; consuming after {took:?}", g.id);
            }
        }
    }
    let ends = stop_feeder(&g, feeder);
    drain_and_check(&mut g, &ends);
    node.assert_alive("after the group scenario");
}

/// Classic protocol, librdkafka, range assignor, auto commit (offsets stored after
/// processing): 3 members; one SIGKILLed; one added.
#[test]
fn classic_confluent_members_killed_and_added_process_every_record() {
    membership_scenario(
        "classic-confluent",
        MemberSpec::classic(ClientLib::Confluent, "range").commit("auto"),
        3,
        &[Step::Kill, Step::Add],
    );
}

/// Classic protocol, kafka-python, roundrobin assignor, synchronous commits: 3 members; one
/// SIGKILLed; one added.
#[test]
fn classic_kafka_python_members_killed_and_added_process_every_record() {
    membership_scenario(
        "classic-kafka-python",
        MemberSpec::classic(ClientLib::KafkaPython, "roundrobin"),
        3,
        &[Step::Kill, Step::Add],
    );
}

/// KIP-848 (`group.protocol=consumer`, server-side uniform assignor): 2 members, a third
/// added, then one SIGKILLed; no partition ever has two owners at once.
#[test]
fn consumer_protocol_members_added_and_killed_process_every_record() {
    membership_scenario(
        "kip848",
        MemberSpec::consumer_protocol(),
        2,
        &[Step::Add, Step::Kill],
    );
}

/// Classic cooperative-sticky (incremental rebalancing, librdkafka): adding a third member
/// revokes only the partitions that move; the existing members keep consuming the rest.
#[test]
fn cooperative_sticky_rebalance_revokes_only_what_moves() {
    let _lock = light();
    let mut node = start_node();
    let topic = unique_name("grp-coop");
    kafka::create_topic(&node.bootstrap(), &topic, 6, &[]);
    let mut g = Group::new(
        "coop",
        &node.bootstrap(),
        &[(topic, 6)],
        vec![node.scratch_dir().to_path_buf()],
    );
    let spec = MemberSpec::classic(ClientLib::Confluent, "cooperative-sticky");
    let feeder = Feeder::start(&g.bootstrap, &g.topics, RATE);
    let a = g.start("c1", spec.clone());
    let b = g.start("c2", spec.clone());
    g.wait(
        SETTLE,
        "2 cooperative members split the 6 partitions and consume",
        |g| {
            g.balanced(1)?;
            g.all_consuming()
        },
    );
    let before: Vec<(usize, BTreeSet<Tp>, usize)> = [a, b]
        .iter()
        .map(|&i| (i, g.owned(i), g.members[i].events().len()))
        .collect();
    let c = g.start("c3", spec);
    g.wait(
        SETTLE,
        "the third member receives partitions and records",
        |g| {
            g.has_records(c)?;
            g.balanced(1)
        },
    );
    for (i, owned_before, seen) in &before {
        let m = &g.members[*i];
        let mut revoked = BTreeSet::new();
        for e in &m.events()[*seen..] {
            if let Ev::Ownership {
                kind, parts, owned, ..
            } = &e.ev
            {
                if kind == "revoked" || kind == "lost" {
                    revoked.extend(parts.iter().cloned());
                }
                if owned.is_empty() {
                    g.fail(&format!(
                        "cooperative-sticky: {} was left with no partition at t={:.3} ({kind} \
                         {}) while a member joined; it owned {} before",
                        m.name,
                        e.t,
                        fmt_tps(parts),
                        fmt_tps(owned_before)
                    ));
                }
            }
        }
        if revoked.len() >= owned_before.len() {
            g.fail(&format!(
                "cooperative-sticky: {} had {} revoked, everything it owned ({}) before the new \
                 member joined",
                m.name,
                fmt_tps(&revoked),
                fmt_tps(owned_before)
            ));
        }
        eprintln!(
            "groups {}: {} owned {}, gave up {} to the new member",
            g.id,
            m.name,
            fmt_tps(owned_before),
            fmt_tps(&revoked)
        );
    }
    let ends = stop_feeder(&g, feeder);
    drain_and_check(&mut g, &ends);
    node.assert_alive("after the cooperative scenario");
}

/// Four groups on one topic (one also on a second topic), each with another client or
/// protocol, each receive every record: classic confluent (2 members, roundrobin, two
/// topics), kafka-python, KIP-848, and a late group with `auto.offset.reset=latest` that reads
/// only what is produced after it joins.
#[test]
fn several_groups_on_one_topic_each_receive_every_record() {
    let _lock = light();
    let mut node = start_node();
    let b = node.bootstrap();
    let shared = unique_name("grp-shared");
    let extra = unique_name("grp-extra");
    kafka::create_topic(&b, &shared, 4, &[]);
    kafka::create_topic(&b, &extra, 2, &[]);
    let both = vec![(shared.clone(), 4), (extra.clone(), 2)];
    let one = vec![(shared.clone(), 4)];
    let node_dirs = vec![node.scratch_dir().to_path_buf()];
    // Records that exist before any group: every earliest group must read them too.
    produce_each(&b, &both, 20).unwrap_or_else(|e| panic!("produce before the groups: {e}"));

    let mut ga = Group::new("multi-a", &b, &both, node_dirs.clone());
    let mut gb = Group::new("multi-b", &b, &one, node_dirs.clone());
    let mut gc = Group::new("multi-c", &b, &one, node_dirs.clone());
    let mut gd = Group::new("multi-d", &b, &one, node_dirs);
    let feeder = Feeder::start(&b, &both, RATE);
    ga.start(
        "a1",
        MemberSpec::classic(ClientLib::Confluent, "roundrobin").commit("auto"),
    );
    ga.start(
        "a2",
        MemberSpec::classic(ClientLib::Confluent, "roundrobin").commit("auto"),
    );
    gb.start("b1", MemberSpec::classic(ClientLib::KafkaPython, "range"));
    gc.start("c1", MemberSpec::consumer_protocol());
    for g in [&mut ga, &mut gb, &mut gc] {
        g.wait(
            SETTLE,
            "the group's members own every partition and consume",
            |g| {
                g.balanced(1)?;
                g.all_consuming()
            },
        );
    }
    let tps_one = tps_of(&one);
    let before_d = end_offsets(&b, &one).unwrap_or_else(|e| gd.fail(&e));
    let d = gd.start(
        "d1",
        MemberSpec::classic(ClientLib::Confluent, "range").offset_reset("latest"),
    );
    gd.wait(
        SETTLE,
        "the latest-reset group consumes new records from every partition",
        |g| {
            g.balanced(1)?;
            g.consumed_after(&tps_one, &[d], 0.0)
        },
    );
    let report = feeder.stop();
    if let Some(problem) = report.problem() {
        ga.fail(&problem);
    }
    let ends_both = end_offsets(&b, &both).unwrap_or_else(|e| ga.fail(&e));
    let ends_one: BTreeMap<Tp, i64> = ends_both
        .iter()
        .filter(|(tp, _)| tp.0 == shared)
        .map(|(tp, o)| (tp.clone(), *o))
        .collect();

    // The latest-reset group started at (or after) the log end it saw when it joined: never at
    // an older record, and from there it read everything.
    let first_d = gd.members[d].first_recs();
    for (tp, &hw) in &before_d {
        if first_d.get(tp).is_some_and(|&o| o < hw) {
            gd.fail(&format!(
                "auto.offset.reset=latest: the new group's first record of {} is offset {}, \
                 before the log end {hw} when it joined",
                fmt_tp(tp),
                first_d[tp]
            ));
        }
    }
    let from_d = first_d.clone();
    gd.wait(
        DRAIN,
        "the latest-reset group read on to the log end",
        |g| g.covered(None, &from_d, &ends_one),
    );
    gd.check_no_overlaps();
    gd.stop_all_and_check_committed(&ends_one);

    drain_and_check(&mut ga, &ends_both);
    drain_and_check(&mut gb, &ends_one);
    drain_and_check(&mut gc, &ends_one);
    node.assert_alive("after the several-groups scenario");
}

/// Static membership (`group.instance.id`, classic, librdkafka): a static member stopped with
/// SIGTERM (librdkafka sends no LeaveGroup for static members) and restarted within its
/// session timeout gets its own partitions back, and the other member is not rebalanced, not
/// then and not when the old session would have expired.
#[test]
fn static_member_restarted_within_its_session_timeout_keeps_its_partitions() {
    const STATIC_SESSION_MS: u32 = 6_000;
    let _lock = light();
    let mut node = start_node();
    let topic = unique_name("grp-static");
    kafka::create_topic(&node.bootstrap(), &topic, 4, &[]);
    let mut g = Group::new(
        "static",
        &node.bootstrap(),
        &[(topic, 4)],
        vec![node.scratch_dir().to_path_buf()],
    );
    let spec = |id: &str| {
        MemberSpec::classic(ClientLib::Confluent, "range")
            .session(STATIC_SESSION_MS)
            .instance(id)
    };
    let feeder = Feeder::start(&g.bootstrap, &g.topics, RATE);
    let s1 = g.start("s1", spec("static-1"));
    let s2 = g.start("s2", spec("static-2"));
    g.wait(SETTLE, "the 2 static members split the 4 partitions", |g| {
        g.balanced(1)?;
        g.has_records(s1)?;
        g.has_records(s2)
    });
    let owned1 = g.owned(s1);
    let owned2 = g.owned(s2);
    let s2_seen = g.members[s2].events().len();
    let restarted_at = Instant::now();
    g.terminate(s1);
    let s1b = g.start("s1-restarted", spec("static-1"));
    let took = g.wait(
        SETTLE,
        &format!(
            "the restarted static member owns its partitions {} again and consumes",
            fmt_tps(&owned1)
        ),
        |g| {
            let now = g.owned(s1b);
            if now != owned1 {
                return Err(format!("it owns {}", fmt_tps(&now)));
            }
            g.has_records(s1b)?;
            g.balanced(1)
        },
    );
    eprintln!(
        "groups {}: static member back with {} after {took:?}",
        g.id,
        fmt_tps(&owned1)
    );
    let untouched = |g: &Group| -> Result<(), String> {
        let m = &g.members[s2];
        if let Some(e) = m.events()[s2_seen..]
            .iter()
            .find(|e| matches!(e.ev, Ev::Ownership { .. }))
        {
            return Err(format!(
                "the other static member s2 was rebalanced at t={:.3}: {:?}",
                e.t, e.ev
            ));
        }
        if g.owned(s2) != owned2 {
            return Err(format!(
                "s2 owns {} instead of {}",
                fmt_tps(&g.owned(s2)),
                fmt_tps(&owned2)
            ));
        }
        Ok(())
    };
    // Past the moment the old incarnation's session would have expired, nothing may move.
    let watch = Duration::from_millis(u64::from(STATIC_SESSION_MS) + 2_000)
        .saturating_sub(restarted_at.elapsed());
    g.hold(
        watch,
        "s2 must keep its partitions (no rebalance for a returning static member)",
        untouched,
    );
    let ends = stop_feeder(&g, feeder);
    drain_and_check(&mut g, &ends);
    node.assert_alive("after the static membership scenario");
}

/// A group id (from `label`) whose `__consumer_offsets` partition is `partition`, so that it
/// shares its coordinator with another group.
fn group_id_on_partition(label: &str, partition: i32) -> String {
    loop {
        let id = unique_name(&format!("group-{label}"));
        if offsets_partition_for(&id, OFFSETS_PARTITIONS) == partition {
            return id;
        }
    }
}

/// 3 nodes, a replication factor 3 topic and `__consumer_offsets`; two groups with the same
/// coordinator: classic (3 librdkafka members) and KIP-848 (2 members). Both keep consuming and
/// committing while the coordinator's node is SIGKILLed; after every node is restarted, the
/// committed offsets are intact and a new member of each group resumes exactly at them.
#[test]
fn groups_survive_coordinator_kill_and_full_cluster_restart() {
    let _lock = heavy();
    let mut cluster = Cluster::start(
        3,
        ClusterOptions {
            // Compact the offsets partitions often, so that failover also reloads from
            // compacted logs and followers drop segments below the leader's log start.
            config_toml: Some(
                groups_toml(3) + "offsets_compact_records = 200\noffsets_segment_bytes = 4096\n",
            ),
            ..ClusterOptions::default()
        },
    );
    // With a node down, `__consumer_offsets` is not created with fewer replicas for good:
    // FindCoordinator answers COORDINATOR_NOT_AVAILABLE (15) until every node is back.
    cluster.kill9(3);
    let addr1 = cluster.node(1).addr();
    // Raw Metadata only: a librdkafka consumer with a group id would look the coordinator up
    // at once, while node 3 still counts as alive.
    wait_until(
        Duration::from_secs(30),
        "node 1 to stop listing the killed node 3",
        || cluster.metadata(1).is_ok_and(|m| m.brokers.len() == 2),
    );
    let probe = unique_name("group-probe");
    let refused = find_coordinator(addr1, &probe);
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("code 15")),
        "FindCoordinator with 2 of 3 nodes alive must wait for the third: {refused:?}"
    );
    assert!(
        cluster.partition_state("__consumer_offsets", 0).is_none(),
        "__consumer_offsets must not be created while a node is down"
    );
    cluster.restart(3);

    let topic = unique_name("grp-cluster");
    cluster.create_topic(&topic, 6, 3, 2);
    let bootstrap = cluster.bootstrap();
    let node_dirs: Vec<PathBuf> = cluster
        .ids()
        .iter()
        .map(|&id| cluster.node(id).scratch_dir().to_path_buf())
        .collect();
    let topics = [(topic.clone(), 6)];
    let mut classic = Group::new("cluster-classic", &bootstrap, &topics, node_dirs.clone());
    let partition = offsets_partition_for(&classic.id, OFFSETS_PARTITIONS);
    let mut kip848 = Group::named(
        group_id_on_partition("cluster-kip848", partition),
        &bootstrap,
        &topics,
        node_dirs,
    );
    // Classic sessions longer than a node failover (2 s fencing, then elections and the new
    // coordinator loading the groups): the members should ride through it. KIP-848 sessions are
    // the broker's (4 s).
    let classic_spec = MemberSpec::classic(ClientLib::Confluent, "range")
        .session(10_000)
        .commit("sync-every-20");
    let kip848_spec = MemberSpec::consumer_protocol().commit("sync-every-20");
    let feeder = Feeder::start(&bootstrap, &topics, RATE);
    for i in 1..=3 {
        classic.start(&format!("m{i}"), classic_spec.clone());
    }
    for i in 1..=2 {
        kip848.start(&format!("k{i}"), kip848_spec.clone());
    }
    for g in [&mut classic, &mut kip848] {
        g.wait(
            SETTLE,
            "the members split the 6 partitions and consume",
            |g| {
                g.balanced(1)?;
                g.all_consuming()
            },
        );
    }

    let coordinator = wait_for_coordinator(&mut cluster, &classic.id, |_| true);
    let other = wait_for_coordinator(&mut cluster, &kip848.id, |_| true);
    if other != coordinator {
        cluster.fail(&format!(
            "groups {} and {} hash to __consumer_offsets partition {partition} but have \
             coordinators {coordinator} and {other}",
            classic.id, kip848.id
        ));
    }
    eprintln!(
        "groups {} and {}: coordinator is node {coordinator} (__consumer_offsets partition \
         {partition})",
        classic.id, kip848.id
    );
    cluster.kill9(coordinator);
    let killed = Instant::now();
    let killed_at = mono_now(&classic.python);
    let all = classic.all_tps();
    for g in [&mut classic, &mut kip848] {
        let running = g.running();
        g.wait(
            SETTLE,
            &format!(
                "every partition is consumed and committed again after coordinator node \
                 {coordinator} was killed"
            ),
            |g| {
                g.consumed_after(&all, &running, killed_at)?;
                g.committed_after(&all, killed_at)
            },
        );
        eprintln!(
            "groups {}: consuming and committing again {:?} after node {coordinator} was killed",
            g.id,
            killed.elapsed()
        );
    }
    for g in [&classic, &kip848] {
        let new = wait_for_coordinator(&mut cluster, &g.id, |c| c != coordinator);
        eprintln!("groups {}: new coordinator {new}", g.id);
    }
    let ends = stop_feeder(&classic, feeder);
    for g in [&mut classic, &mut kip848] {
        g.wait(
            DRAIN,
            "every produced record was processed by some member",
            |g| g.covered(None, &BTreeMap::new(), &ends),
        );
        // A coordinator failover may expire a member's session while it still fetches (neither
        // protocol can prevent that zombie): overlaps here are reported, not failed.
        for o in g.overlaps() {
            eprintln!(
                "groups {}: overlap across the failover (reported): {o}",
                g.id
            );
        }
        g.stop_all_and_check_committed(&ends);
    }

    cluster.kill9_all_and_restart();
    cluster.wait_for_full_isr(&topic, 6);
    for g in [&classic, &kip848] {
        if let Err(e) = wait_committed(&bootstrap, &g.id, &ends, harness::cluster::SETTLE_TIMEOUT) {
            g.fail(&format!(
                "after every node was restarted the committed offsets are not what the group \
                 committed: {e}"
            ));
        }
    }
    produce_each(&bootstrap, &topics, 10).unwrap_or_else(|e| classic.fail(&e));
    let ends2 = end_offsets(&bootstrap, &topics).unwrap_or_else(|e| classic.fail(&e));
    for (g, spec) in [(&mut classic, classic_spec), (&mut kip848, kip848_spec)] {
        let r = g.start("resumer", spec);
        g.wait(
            SETTLE,
            "the new member reads from the committed offsets to the new log end",
            |g| {
                g.balanced(1)?;
                g.covered(Some(&[r]), &ends, &ends2)
            },
        );
        let first = g.members[r].first_recs();
        let wrong: Vec<String> = ends
            .iter()
            .filter(|(tp, o)| first.get(*tp) != Some(*o))
            .map(|(tp, o)| {
                format!(
                    "{}: committed {o}, first consumed {:?}",
                    fmt_tp(tp),
                    first.get(tp)
                )
            })
            .collect();
        if !wrong.is_empty() {
            g.fail(&format!(
                "the rejoining member did not resume at the committed offsets: {}",
                wrong.join("; ")
            ));
        }
        g.stop_all_and_check_committed(&ends2);
    }
}

// ---------------------------------------------------------------------------------------------
// The `rivulet group` command line

const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// `rivulet group ARGS --bootstrap <node>`.
fn group_cli(bootstrap: &str, args: &[&str]) -> CmdOutput {
    run(
        Command::new(RIVULET)
            .arg("group")
            .args(args)
            .arg("--bootstrap")
            .arg(bootstrap)
            .env_remove("RIVULET_BOOTSTRAP"),
        None,
        CLI_TIMEOUT,
    )
}

/// One partition row of `rivulet group describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DescribeRow {
    committed: Option<i64>,
    log_end: i64,
    lag: Option<i64>,
}

/// Parses the partition table of `rivulet group describe`: a header line naming (in any order,
/// case-insensitively) TOPIC, PARTITION, a committed column (COMMITTED or CURRENT-OFFSET), a
/// log end column (containing END) and LAG, then one whitespace-separated row per partition,
/// `-` for an empty value (the layout of `kafka-consumer-groups --describe`).
fn parse_describe(out: &CmdOutput, topic: &str) -> Result<BTreeMap<i32, DescribeRow>, String> {
    let lines: Vec<&str> = out.stdout.lines().collect();
    let header_at = lines
        .iter()
        .position(|l| {
            let u = l.to_uppercase();
            u.contains("PARTITION") && u.contains("LAG")
        })
        .ok_or("no header line with PARTITION and LAG")?;
    let header: Vec<String> = lines[header_at]
        .split_whitespace()
        .map(str::to_uppercase)
        .collect();
    let col = |what: &str, f: &dyn Fn(&str) -> bool| {
        header
            .iter()
            .position(|h| f(h.as_str()))
            .ok_or(format!("the header {header:?} has no {what} column"))
    };
    let topic_col = col("TOPIC", &|h| h == "TOPIC")?;
    let part_col = col("PARTITION", &|h| h == "PARTITION")?;
    let committed_col = col("committed offset", &|h| {
        h.contains("COMMITTED") || h.contains("CURRENT")
    })?;
    let end_col = col("log end offset", &|h| h.contains("END"))?;
    let lag_col = col("LAG", &|h| h == "LAG")?;
    let needed = [topic_col, part_col, committed_col, end_col, lag_col]
        .into_iter()
        .max()
        .expect("columns");
    let num = |s: &str| -> Result<Option<i64>, String> {
        if s == "-" {
            Ok(None)
        } else {
            s.parse().map(Some).map_err(|e| format!("{s:?}: {e}"))
        }
    };
    let mut rows = BTreeMap::new();
    for line in &lines[header_at + 1..] {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.len() <= needed || tokens[topic_col] != topic {
            continue;
        }
        let partition: i32 = tokens[part_col]
            .parse()
            .map_err(|e| format!("partition in {line:?}: {e}"))?;
        let row = DescribeRow {
            committed: num(tokens[committed_col])
                .map_err(|e| format!("committed in {line:?}: {e}"))?,
            log_end: num(tokens[end_col])
                .map_err(|e| format!("log end in {line:?}: {e}"))?
                .ok_or(format!("no log end offset in {line:?}"))?,
            lag: num(tokens[lag_col]).map_err(|e| format!("lag in {line:?}: {e}"))?,
        };
        rows.insert(partition, row);
    }
    Ok(rows)
}

/// Runs `describe` and checks every partition's committed offset, log end and lag.
fn expect_describe(g: &Group, topic: &str, partitions: i32, committed: i64, end: i64) -> CmdOutput {
    let out = group_cli(&g.bootstrap, &["describe", &g.id]);
    if !out.success() {
        g.fail(&format!("`rivulet group describe` failed:\n{out}"));
    }
    let rows = parse_describe(&out, topic)
        .unwrap_or_else(|e| g.fail(&format!("cannot read `rivulet group describe`: {e}\n{out}")));
    for p in 0..partitions {
        let want = DescribeRow {
            committed: Some(committed),
            log_end: end,
            lag: Some(end - committed),
        };
        if rows.get(&p) != Some(&want) {
            g.fail(&format!(
                "`rivulet group describe`: partition {p} should show committed {committed}, log \
                 end {end}, lag {}; parsed {:?}\n{out}",
                end - committed,
                rows.get(&p)
            ));
        }
    }
    out
}

/// Polls until the group's committed offsets of every partition are `offset`.
fn expect_committed(g: &Group, offset: i64, context: &str) {
    let expected: BTreeMap<Tp, i64> = g.all_tps().into_iter().map(|tp| (tp, offset)).collect();
    if let Err(e) = wait_committed(&g.bootstrap, &g.id, &expected, COMMIT_WAIT) {
        g.fail(&format!("{context}: {e}"));
    }
}

fn lists_group(out: &CmdOutput, group: &str) -> bool {
    out.stdout
        .lines()
        .any(|l| l.split_whitespace().any(|w| w == group))
}

/// `rivulet group list|describe|reset-offsets|delete` against a group of real consumers.
#[test]
fn cli_lists_describes_resets_and_deletes_a_group() {
    let _lock = light();
    let mut node = start_node();
    let b = node.bootstrap();
    let topic = unique_name("grp-cli");
    kafka::create_topic(&b, &topic, 3, &[]);
    let topics = vec![(topic.clone(), 3)];
    produce_each(&b, &topics, 10).unwrap_or_else(|e| panic!("produce: {e}"));
    let mut g = Group::new("cli", &b, &topics, vec![node.scratch_dir().to_path_buf()]);
    let spec = MemberSpec::classic(ClientLib::Confluent, "range").commit("sync-every-5");
    let m = g.start("m1", spec.clone());
    let ten: BTreeMap<Tp, i64> = g.all_tps().into_iter().map(|tp| (tp, 10)).collect();
    g.wait(SETTLE, "the member consumed the 30 records", |g| {
        g.covered(None, &BTreeMap::new(), &ten)
    });
    expect_committed(&g, 10, "the member's commits");

    let list = group_cli(&b, &["list"]);
    if !list.success() || !lists_group(&list, &g.id) {
        g.fail(&format!(
            "`rivulet group list` does not show {}:\n{list}",
            g.id
        ));
    }
    // Active member: committed 10, log end 10, lag 0, and the member (its client id or member
    // id, which librdkafka derives from the client id) and host.
    let described = expect_describe(&g, &topic, 3, 10, 10);
    let member_id = g.members[m].member_id().unwrap_or_default();
    let client_id = g.members[m].client_id.clone();
    if !described.stdout.contains(&client_id)
        && (member_id.is_empty() || !described.stdout.contains(&member_id))
    {
        g.fail(&format!(
            "`rivulet group describe` shows neither the member's client id {client_id} nor its \
             member id {member_id:?}:\n{described}"
        ));
    }
    if !described.stdout.contains("127.0.0.1") {
        g.fail(&format!(
            "`rivulet group describe` does not show the member's host 127.0.0.1:\n{described}"
        ));
    }

    // Kafka refuses to reset or delete a group that has members.
    let refused = group_cli(
        &b,
        &[
            "reset-offsets",
            &g.id,
            "--topic",
            &topic,
            "--to-earliest",
            "--execute",
        ],
    );
    if refused.success() {
        g.fail(&format!(
            "reset-offsets must refuse a group with an active member:\n{refused}"
        ));
    }
    let refused = group_cli(&b, &["delete", &g.id]);
    if refused.success() {
        g.fail(&format!(
            "delete must refuse a group with an active member:\n{refused}"
        ));
    }
    expect_committed(&g, 10, "after the refused reset and delete");

    g.terminate(m);
    // Without --execute: a dry run.
    let dry = group_cli(
        &b,
        &["reset-offsets", &g.id, "--topic", &topic, "--to-earliest"],
    );
    if !dry.success() {
        g.fail(&format!("reset-offsets dry run failed:\n{dry}"));
    }
    expect_committed(
        &g,
        10,
        "a reset-offsets without --execute must change nothing",
    );

    let reset = |g: &Group, how: &[&str], expect: i64| {
        let mut args = vec!["reset-offsets", g.id.as_str(), "--topic", topic.as_str()];
        args.extend_from_slice(how);
        args.push("--execute");
        let out = group_cli(&g.bootstrap, &args);
        if !out.success() {
            g.fail(&format!(
                "`rivulet group {}` failed:\n{out}",
                args.join(" ")
            ));
        }
        expect_committed(g, expect, &format!("after reset-offsets {how:?}"));
    };
    reset(&g, &["--to-earliest"], 0);
    expect_describe(&g, &topic, 3, 0, 10);
    reset(&g, &["--to-offset", "4"], 4);
    reset(&g, &["--shift-by", "3"], 7);
    // Kafka clamps a shift to the partition's offsets.
    reset(&g, &["--shift-by", "-100"], 0);
    reset(&g, &["--to-latest"], 10);
    reset(&g, &["--to-offset", "4"], 4);
    expect_describe(&g, &topic, 3, 4, 10);

    // A consumer of the group resumes where the reset put it.
    let m2 = g.start("m2", spec);
    let four: BTreeMap<Tp, i64> = g.all_tps().into_iter().map(|tp| (tp, 4)).collect();
    g.wait(SETTLE, "the member re-reads from the reset offsets", |g| {
        g.covered(Some(&[m2]), &four, &ten)
    });
    let first = g.members[m2].first_recs();
    if first.values().any(|&o| o != 4) {
        g.fail(&format!(
            "after reset-offsets --to-offset 4 the member started at {}",
            fmt_offsets(&first)
        ));
    }
    g.stop_all_and_check_committed(&ten);

    let deleted = group_cli(&b, &["delete", &g.id]);
    if !deleted.success() {
        g.fail(&format!(
            "`rivulet group delete` of an empty group failed:\n{deleted}"
        ));
    }
    let list = group_cli(&b, &["list"]);
    if !list.success() || lists_group(&list, &g.id) {
        g.fail(&format!(
            "`rivulet group list` still shows the deleted group {}:\n{list}",
            g.id
        ));
    }
    let left = committed_offsets(&b, &g.id, &g.all_tps()).unwrap_or_else(|e| g.fail(&e));
    if left.values().any(Option::is_some) {
        g.fail(&format!(
            "the deleted group still has committed offsets: {left:?}"
        ));
    }
    node.assert_alive("after the group CLI");
}

/// The committed offsets of a group that stays empty longer than `offsets_retention_ms` are
/// deleted (its members then start over from `auto.offset.reset`); a group with a live member
/// keeps its offsets however old its last commit. The coordinator checks retention
/// periodically (every 30 s today), so this test takes about that long.
#[test]
fn offsets_of_an_empty_group_expire_after_the_retention() {
    let _lock = light();
    let mut node = Node::start_with(NodeOptions {
        config_toml: Some(groups_toml(1) + "offsets_retention_ms = 2000\n"),
        ..NodeOptions::default()
    });
    let b = node.bootstrap();
    let topic = unique_name("grp-retention");
    kafka::create_topic(&b, &topic, 2, &[]);
    let topics = vec![(topic, 2)];
    produce_each(&b, &topics, 5).unwrap_or_else(|e| panic!("produce: {e}"));
    let dirs = vec![node.scratch_dir().to_path_buf()];
    let mut empty = Group::new("retention-empty", &b, &topics, dirs.clone());
    let mut live = Group::new("retention-live", &b, &topics, dirs);
    let spec = MemberSpec::classic(ClientLib::Confluent, "range").commit("sync-every-1");
    let e = empty.start("e1", spec.clone());
    live.start("l1", spec.clone());
    let five: BTreeMap<Tp, i64> = empty.all_tps().into_iter().map(|tp| (tp, 5)).collect();
    for g in [&mut empty, &mut live] {
        g.wait(SETTLE, "the member consumed the 10 records", |g| {
            g.covered(None, &BTreeMap::new(), &five)
        });
        expect_committed(g, 5, "the member's commits");
    }
    empty.terminate(e);

    let tps = empty.all_tps();
    let mut last = String::new();
    let expired = try_wait_until(
        Duration::from_secs(120),
        "the empty group's committed offsets expire",
        || match committed_offsets(&b, &empty.id, &tps) {
            Ok(c) => {
                last = format!("{c:?}");
                c.values().all(Option::is_none)
            }
            Err(e) => {
                last = e;
                false
            }
        },
    );
    if let Err(e) = expired {
        empty.fail(&format!(
            "{e} (offsets_retention_ms = 2000); last committed offsets: {last}"
        ));
    }
    live.refresh();
    if let Err(e) = wait_committed(&b, &live.id, &five, COMMIT_WAIT) {
        live.fail(&format!(
            "a group with a live member lost its committed offsets to retention: {e}"
        ));
    }
    // With its offsets gone, the empty group's next member starts from auto.offset.reset.
    let again = empty.start("e2", spec);
    empty.wait(
        SETTLE,
        "the returning member consumes from the beginning",
        |g| g.covered(Some(&[again]), &BTreeMap::new(), &five),
    );
    let first = empty.members[again].first_recs();
    if first.values().any(|&o| o != 0) {
        empty.fail(&format!(
            "after its offsets expired the group resumed at {} instead of 0 \
             (auto.offset.reset=earliest)",
            fmt_offsets(&first)
        ));
    }
    empty.stop_all_and_check_committed(&five);
    live.stop_all_and_check_committed(&five);
    node.assert_alive("after the retention scenario");
}

/// A standalone consumer (`assign()`, no membership) commits offsets with metadata strings to
/// a group and reads them back; metadata over `offset_metadata_max_bytes` (4096) is refused
/// with OFFSET_METADATA_TOO_LARGE and changes nothing.
#[test]
fn committed_offsets_keep_their_metadata() {
    use rdkafka::consumer::CommitMode;
    let _lock = light();
    let mut node = start_node();
    let b = node.bootstrap();
    let topic = unique_name("grp-metadata");
    kafka::create_topic(&b, &topic, 2, &[]);
    produce_each(&b, &[(topic.clone(), 2)], 10).unwrap_or_else(|e| panic!("produce: {e}"));
    let group = unique_name("group-metadata");
    let consumer = checker(&b, &group);
    let commit = |offsets: &[(i32, i64, String)]| {
        let mut tpl = TopicPartitionList::new();
        for (p, o, meta) in offsets {
            let mut e = tpl.add_partition(&topic, *p);
            e.set_offset(Offset::Offset(*o)).expect("set offset");
            e.set_metadata(meta.clone());
        }
        consumer.commit(&tpl, CommitMode::Sync)
    };
    let read = || {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic, 0);
        tpl.add_partition(&topic, 1);
        let res = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("OffsetFetch: {e}"));
        res.elements()
            .iter()
            .map(|e| (e.partition(), e.offset(), e.metadata().to_string()))
            .collect::<Vec<_>>()
    };
    commit(&[
        (0, 3, "checkpoint-0 {\"batch\": 17}".to_string()),
        (1, 7, String::new()),
    ])
    .unwrap_or_else(|e| panic!("commit with metadata: {e}"));
    let expected = vec![
        (
            0,
            Offset::Offset(3),
            "checkpoint-0 {\"batch\": 17}".to_string(),
        ),
        (1, Offset::Offset(7), String::new()),
    ];
    assert_eq!(read(), expected, "committed offsets and metadata read back");

    let refused = commit(&[(0, 9, "x".repeat(5000))]);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("OFFSET_METADATA_TOO_LARGE")
                || e.to_string().to_lowercase().contains("too large")),
        "a 5000-byte metadata string must be refused with OFFSET_METADATA_TOO_LARGE, got \
         {refused:?}"
    );
    assert_eq!(read(), expected, "a refused commit must change nothing");
    node.assert_alive("after the metadata commits");
}

/// `__consumer_offsets` does not grow without bound: after `offsets_compact_records` records
/// the coordinators rewrite their live state and the segments below it are dropped; the
/// committed offsets read the same before and after a restart (which reloads from the
/// compacted log).
#[test]
fn offsets_partition_is_compacted_and_survives_a_restart() {
    use rdkafka::consumer::CommitMode;
    let _lock = light();
    let mut node = Node::start_with(NodeOptions {
        config_toml: Some(format!(
            "{}offsets_compact_records = 300\noffsets_segment_bytes = 4096\n",
            groups_toml(1)
        )),
        ..NodeOptions::default()
    });
    let b = node.bootstrap();
    let topic = unique_name("grp-compact");
    kafka::create_topic(&b, &topic, 2, &[]);
    let group = unique_name("group-compact");
    let consumer = checker(&b, &group);
    let commits = 1500i64;
    for i in 1..=commits {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, (i % 2) as i32, Offset::Offset(i))
            .expect("set offset");
        consumer
            .commit(&tpl, CommitMode::Sync)
            .unwrap_or_else(|e| panic!("commit {i}: {e}"));
    }
    let expected: BTreeMap<Tp, Option<i64>> = [
        ((topic.clone(), 0), Some(commits)),
        ((topic.clone(), 1), Some(commits - 1)),
    ]
    .into();
    let tps: BTreeSet<Tp> = expected.keys().cloned().collect();
    let read = |b: &str| committed_offsets(b, &group, &tps).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read(&b), expected, "committed offsets before the restart");
    // The group's offsets partition lost its oldest segments.
    let p = offsets_partition_for(&group, OFFSETS_PARTITIONS);
    let (low, high) = consumer
        .fetch_watermarks("__consumer_offsets", p, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("watermarks of __consumer_offsets/{p}: {e}"));
    assert!(high >= commits, "every commit is a record: end {high}");
    assert!(
        low > 0 && high - low < commits / 2,
        "__consumer_offsets/{p} was not compacted: log start {low}, end {high} (see {:?})",
        node.log_paths()
    );
    drop(consumer);
    node.kill9();
    node.restart();
    let b = node.bootstrap();
    let mut last = BTreeMap::new();
    let waited = try_wait_until(Duration::from_secs(30), "offsets after the restart", || {
        match committed_offsets(&b, &group, &tps) {
            Ok(m) => {
                last = m;
                last == expected
            }
            Err(_) => false,
        }
    });
    assert!(
        waited.is_ok(),
        "committed offsets after a restart from the compacted log: {last:?}, expected {expected:?} (logs {:?})",
        node.log_paths()
    );
    node.assert_alive("after compaction and restart");
}

/// The test's own Java `String.hashCode` partitioner (used to find the coordinator).
#[test]
fn offsets_partition_matches_java_hash_code() {
    // Values from Java: "hello".hashCode() == 99162322,
    // "polygenelubricants".hashCode() == Integer.MIN_VALUE (Kafka's Utils.abs makes it 0),
    // "zzzzzzzzz".hashCode() == 918831994, "group-cluster-1-0".hashCode() == -2026047245.
    assert_eq!(offsets_partition_for("hello", 50), 99_162_322 % 50);
    assert_eq!(offsets_partition_for("polygenelubricants", 50), 0);
    assert_eq!(offsets_partition_for("zzzzzzzzz", 50), 918_831_994 % 50);
    assert_eq!(
        offsets_partition_for("group-cluster-1-0", 50),
        2_026_047_245 % 50
    );
    assert_eq!(offsets_partition_for("", 4), 0);
}

/// The event file parser and the checks built on it, without processes.
#[test]
fn event_checks_find_gaps_and_double_owners() {
    let path = std::env::temp_dir().join(unique_name("groups-events"));
    let lines = [
        r#"{"ev":"started","t":1.0}"#,
        r#"{"ev":"assigned","t":2.0,"parts":[["t",0],["t",1]],"owned":[["t",0],["t",1]],"member":"a-1"}"#,
        r#"{"ev":"rec","t":2.5,"topic":"t","p":0,"o":0,"n":5}"#,
        r#"{"ev":"rec","t":2.6,"topic":"t","p":1,"o":0,"n":3}"#,
        r#"{"ev":"revoked","t":3.0,"parts":[["t",1]],"owned":[["t",0]]}"#,
        r#"{"ev":"committed","t":3.1,"offsets":[["t",0,5]],"src":"sync"}"#,
        r#"{"ev":"rec","t":3.5,"topic":"t","p":0,"o":7,"n":2}"#,
        r#"{"ev":"closing","t":4.0}"#,
        r#"{"ev":"rec","t":4.5,"topic":"t","p":0,"#,
    ];
    std::fs::write(&path, lines.join("\n")).expect("write events");
    let mut log = EventLog::new(path.clone());
    log.refresh();
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        log.events.len(),
        8,
        "the half line is not parsed: {:?}",
        log.bad_lines
    );
    assert!(log.bad_lines.is_empty(), "{:?}", log.bad_lines);
    let member = |name: &str, events: Vec<Event>, fate: Fate| Member {
        name: name.to_string(),
        spec: MemberSpec::consumer_protocol(),
        client_id: name.to_string(),
        out: PathBuf::from(format!("{name}.jsonl")),
        stderr: PathBuf::from(format!("{name}.stderr.log")),
        child: None,
        fate,
        log: EventLog {
            events,
            ..EventLog::new(PathBuf::new())
        },
    };
    let a = member("a", log.events.clone(), Fate::Stopped);
    let t1: Tp = ("t".to_string(), 1);
    let t0: Tp = ("t".to_string(), 0);
    let intervals = a.ownership_intervals();
    assert!(intervals.contains(&(t1.clone(), 2.0, 3.0)), "{intervals:?}");
    assert!(intervals.contains(&(t0.clone(), 2.0, 4.0)), "{intervals:?}");
    assert_eq!(a.member_id().as_deref(), Some("a-1"));
    // b takes partition 1 at 2.9 (before a revoked it at 3.0): an overlap.
    let b_events = vec![
        Event {
            t: 2.9,
            ev: Ev::Ownership {
                kind: "assigned".to_string(),
                parts: [t1.clone()].into(),
                owned: [t1.clone()].into(),
                member_id: None,
            },
        },
        Event {
            t: 3.2,
            ev: Ev::Rec {
                tp: t1.clone(),
                o: 3,
                n: 2,
            },
        },
    ];
    let g = Group {
        id: "g".to_string(),
        bootstrap: String::new(),
        topics: vec![("t".to_string(), 2)],
        dir: None,
        dir_path: PathBuf::new(),
        members: vec![a, member("b", b_events, Fate::Killed(3.3))],
        node_dirs: Vec::new(),
        python: String::new(),
    };
    let overlaps = g.overlaps();
    assert_eq!(overlaps.len(), 1, "{overlaps:?}");
    assert!(overlaps[0].contains("t/1"), "{overlaps:?}");
    let ends: BTreeMap<Tp, i64> = [(t0.clone(), 9), (t1.clone(), 5)].into();
    let gaps = g.covered(None, &BTreeMap::new(), &ends).unwrap_err();
    assert!(gaps.contains("t/0 5..7"), "{gaps}");
    assert!(!gaps.contains("t/1 "), "{gaps}");
    assert!(g.consumed_after(&[t1.clone()].into(), &[1], 3.0).is_ok());
    assert!(g.consumed_after(&[t0.clone()].into(), &[1], 3.0).is_err());
    assert!(g.committed_after(&[t0].into(), 3.0).is_ok());
    assert!(g.committed_after(&[t1].into(), 3.0).is_err());
    assert_eq!(
        g.members[0]
            .first_recs()
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![0, 0]
    );
}

#[test]
fn describe_parser_reads_a_kafka_style_table() {
    let out = CmdOutput {
        command: "rivulet group describe g".to_string(),
        status: None,
        stdout: "\nGROUP  TOPIC  PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG  CONSUMER-ID  HOST  CLIENT-ID\n\
                 g      t      0          10              12              2    c-1          /127.0.0.1  c\n\
                 g      t      1          -               5               -    -            -     -\n\
                 g      u      0          1               1               0    -            -     -\n"
            .to_string(),
        stderr: String::new(),
        elapsed: Duration::ZERO,
    };
    let rows = parse_describe(&out, "t").expect("parse");
    assert_eq!(
        rows.get(&0),
        Some(&DescribeRow {
            committed: Some(10),
            log_end: 12,
            lag: Some(2)
        })
    );
    assert_eq!(
        rows.get(&1),
        Some(&DescribeRow {
            committed: None,
            log_end: 5,
            lag: None
        })
    );
    assert_eq!(rows.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// KIP-848 edge cases (issue 9, defect 9)

/// Runs `tests/clients/group_tool.py` with `args`; its last stdout line, as JSON.
fn group_tool(args: &[&str], timeout: Duration) -> Value {
    let python = require_python(&["confluent_kafka"]);
    let out = run(
        Command::new(&python)
            .arg(clients_dir().join("group_tool.py"))
            .args(args),
        None,
        timeout,
    );
    out.assert_success();
    let last = out.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("group_tool.py printed no JSON result ({e}):\n{out}"))
}

/// A consumer that uses `assign()` commits with generation -1 (a *simple* commit). librdkafka's
/// KIP-848 consumer also sends its own member id, which must not turn the commit into
/// ILLEGAL_GENERATION: Kafka accepts a simple commit whenever the group has no members, with
/// either protocol (six of librdkafka's own group tests failed on this).
#[test]
fn assign_consumers_commit_with_either_group_protocol() {
    let _lock = light();
    let mut node = start_node();
    let b = node.bootstrap();
    let topic = unique_name("grp-assign");
    kafka::create_topic(&b, &topic, 1, &[]);
    produce_each(&b, &[(topic.clone(), 1)], 10).unwrap_or_else(|e| panic!("produce: {e}"));
    for protocol in ["consumer", "classic"] {
        let group = unique_name("group-assign");
        let out = group_tool(
            &[
                "assign-commit",
                "--bootstrap",
                &b,
                "--group",
                &group,
                "--topic",
                &topic,
                "--offset",
                "7",
                "--protocol",
                protocol,
            ],
            Duration::from_secs(60),
        );
        assert_eq!(
            out["error"],
            Value::Null,
            "group.protocol={protocol}: the commit of an assign() consumer must be accepted: {out}"
        );
        assert_eq!(
            out["committed"], 7,
            "group.protocol={protocol}: committed offset read back: {out}"
        );
    }
    node.assert_alive("after the standalone commits");
}

/// ConsumerGroupHeartbeat v1 (the first with regexes) joining `group` with `regex`; (error
/// code, error message).
fn join_with_regex(addr: SocketAddr, group: &str, regex: &str) -> (i16, String) {
    use kafka_protocol::messages::ConsumerGroupHeartbeatRequest;
    let mut conn = RawConn::connect(addr).expect("connect");
    let mut req = ConsumerGroupHeartbeatRequest::default();
    req.group_id = kafka_protocol::messages::GroupId(StrBytes::from_string(group.to_string()));
    // v1 members choose their own id (KIP-1082).
    req.member_id = StrBytes::from_string(format!("{group}-member"));
    req.member_epoch = 0;
    req.rebalance_timeout_ms = 30_000;
    req.subscribed_topic_regex = Some(StrBytes::from_string(regex.to_string()));
    req.topic_partitions = Some(Vec::new());
    let resp = conn
        .request(&req, 1)
        .unwrap_or_else(|e| panic!("ConsumerGroupHeartbeat v1 must be answered: {e}"));
    (
        resp.error_code,
        resp.error_message
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

/// Regex subscriptions (group.protocol=consumer) use RE2 syntax with whole-name matching, as
/// Kafka's RE2/J does: character classes, `\d` and counted repetition used to be refused with
/// INVALID_REQUEST, which librdkafka treats as fatal. An invalid regex gets
/// INVALID_REGULAR_EXPRESSION (128).
#[test]
fn regex_subscriptions_take_re2_syntax() {
    let _lock = light();
    let mut node = start_node();
    let b = node.bootstrap();
    let base = unique_name("rx");
    let wanted = format!("{base}-orders-07");
    kafka::create_topic(&b, &wanted, 2, &[]);
    kafka::create_topic(&b, &format!("{base}-orders-7"), 1, &[]);
    kafka::create_topic(&b, &format!("{base}-Orders-07"), 1, &[]);
    let out = group_tool(
        &[
            "regex-assignment",
            "--bootstrap",
            &b,
            "--group",
            &unique_name("group-rx"),
            "--topic",
            &format!("{base}-[a-z]+-\\d{{2}}"),
            "--protocol",
            "consumer",
            "--timeout",
            "30",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(
        out["assigned"],
        serde_json::json!([wanted]),
        "the regex must match exactly {wanted}: {out}"
    );
    assert_eq!(out["fatal"], false, "no fatal error: {out}");

    let group = unique_name("group-rx-bad");
    wait_until(
        Duration::from_secs(30),
        "the group coordinator is available",
        || find_coordinator(node.addr(), &group).is_ok(),
    );
    let (code, message) = join_with_regex(node.addr(), &group, "orders-[a-z");
    assert_eq!(
        code, 128,
        "an invalid regex gets INVALID_REGULAR_EXPRESSION ({message})"
    );
    assert!(
        message.contains("orders-[a-z"),
        "the message names the regex: {message:?}"
    );
    let (code, message) = join_with_regex(node.addr(), &group, "orders-\\d{2}");
    assert_eq!(code, 0, "a valid regex joins ({message})");
    node.assert_alive("after the regex subscriptions");
}

/// A member whose application stops polling: librdkafka stops heartbeating once
/// `max.poll.interval.ms` passes and sends its leave only when the application polls again.
/// The coordinator bounds its silence by that interval (the member's rebalance timeout) plus
/// two heartbeat intervals, so the other member gets the partitions well before the session
/// timeout (45 s here, Kafka's default) ends.
#[test]
fn stalled_consumer_protocol_member_loses_its_partitions_after_max_poll_interval() {
    let _lock = light();
    let mut node = Node::start_with(NodeOptions {
        config_toml: Some(groups_toml(1).replace(
            "consumer_session_timeout_ms = 4000",
            "consumer_session_timeout_ms = 45000",
        )),
        ..NodeOptions::default()
    });
    let b = node.bootstrap();
    let topic = unique_name("grp-stalled");
    kafka::create_topic(&b, &topic, 4, &[]);
    let out = group_tool(
        &[
            "stalled-member",
            "--bootstrap",
            &b,
            "--group",
            &unique_name("group-stalled"),
            "--topic",
            &topic,
            "--max-poll-interval-ms",
            "3000",
            "--timeout",
            "40",
        ],
        Duration::from_secs(90),
    );
    let took = out["stalled_s"].as_f64().unwrap_or_else(|| {
        panic!("the polling member never got the stalled member's partitions in 40 s: {out}")
    });
    // 3 s until librdkafka gives up, then 3 s + 2 × 0.5 s of silence, then a heartbeat of B.
    assert!(
        took < 20.0,
        "the polling member got every partition {took:.1} s after the other stopped polling \
         (want < 20 s; the session timeout is 45 s): {out}"
    );
    node.assert_alive("after the stalled member");
}
