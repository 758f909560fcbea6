//! Chaos scenarios: a 3-node cluster (replication factor 3, `min.insync.replicas` 2, 6
//! partitions) under a continuous acks=all idempotent workload, one kind of fault per scenario,
//! then the checker in `harness::chaos` (design notes §5: an acknowledged record is never lost
//! while at most one replica fails; no read of a record that later vanishes; offsets unique and
//! increasing).
//!
//! ```text
//!   warm-up load ─▶ [ fault ─▶ hold (load) ─▶ recover ─▶ full ISR + progress ] × cycles
//!                ─▶ final load ─▶ stop ─▶ read back ─▶ check ─▶ one summary line
//! ```
//!
//! Run length: `RIVULET_CHAOS_SECONDS` is the load time of one scenario (default 18: 6 s per
//! phase). Each phase lasts a third of it (2 to 10 s); longer runs repeat the fault cycle, so a
//! soak injects many faults:
//!
//! ```text
//! RIVULET_CHAOS_SECONDS=300 cargo test --release -p rivulet-broker --test chaos -- --test-threads 1
//! ```
//!
//! Scenarios take a process-wide lock, so they run one at a time even without
//! `--test-threads 1` (the machines have 2 cores; two clusters at once would make nodes miss
//! heartbeats). Every scenario prints one summary line (`chaos scenario=… lost=0 …`); a failing
//! one also prints the command to rerun it and the paths of the node logs, and keeps the data
//! dirs.
//!
//! The proxy, the workload and the checker are also tested here without a cluster (the
//! `proxy_*`, `checker_*` and `single_node_*` tests).

mod harness;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use harness::chaos::{self, Ack, History, Read as ConsumedRead, Workload, WorkloadOptions};
use harness::cluster::{Cluster, ClusterOptions, SETTLE_TIMEOUT};
use harness::proxy::{FaultProxy, ProxyMode};
use harness::{kafka, unique_name, wait_until, Node};

const NODES: u32 = 3;
const PARTITIONS: i32 = 6;
/// The cluster's session timeout: a node silent this long is fenced.
const SESSION_TIMEOUT: Duration = Duration::from_secs(2);
/// Acknowledgements required after each recovery before the run goes on (liveness).
const ACKS_AFTER_RECOVERY: usize = 100;

/// One scenario at a time in this process.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    // A failed scenario poisons the lock; the next one can still run.
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Load time of a scenario and of one phase, from `RIVULET_CHAOS_SECONDS`.
#[derive(Debug, Clone, Copy)]
struct Timing {
    total: Duration,
    phase: Duration,
}

fn timing() -> Timing {
    let total_secs: u64 = match std::env::var("RIVULET_CHAOS_SECONDS") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("RIVULET_CHAOS_SECONDS={s:?} is not a number of seconds")),
        Err(_) => 18,
    };
    let total = Duration::from_secs(total_secs.max(3));
    let phase = (total / 3).clamp(Duration::from_secs(2), Duration::from_secs(10));
    Timing { total, phase }
}

/// A scenario in progress: the cluster, its topic and the workload.
struct Run {
    name: &'static str,
    timing: Timing,
    cluster: Cluster,
    topic: String,
    workload: Workload,
    started: Instant,
}

impl Run {
    /// Starts the cluster, creates the topic, starts the workload and runs the warm-up phase.
    fn start(name: &'static str) -> Run {
        Run::start_with(name, ClusterOptions::default())
    }

    /// As [`Run::start`], with node options (environment, flags).
    fn start_with(name: &'static str, options: ClusterOptions) -> Run {
        let timing = timing();
        eprintln!(
            "chaos scenario={name}: {NODES} nodes, {PARTITIONS} partitions, {:?} of load, \
             phases of {:?}",
            timing.total, timing.phase
        );
        let mut cluster = Cluster::start(NODES, options);
        let topic = unique_name(&format!("chaos-{name}"));
        cluster.create_replicated_topic(&topic, PARTITIONS);
        let workload = Workload::start(
            &cluster.bootstrap(),
            &topic,
            WorkloadOptions {
                partitions: PARTITIONS,
                ..WorkloadOptions::default()
            },
        );
        let started = Instant::now();
        if let Err(e) = workload.wait_for_acks_since(started, ACKS_AFTER_RECOVERY, SETTLE_TIMEOUT) {
            cluster.fail(&format!("the workload does not get going: {e}"));
        }
        let run = Run {
            name,
            timing,
            cluster,
            topic,
            workload,
            started,
        };
        run.load();
        run
    }

    /// Lets the workload run for one phase.
    fn load(&self) {
        std::thread::sleep(self.timing.phase);
    }

    /// Marks the moment a fault is injected (the first one starts the unavailability clock).
    fn fault(&self, what: &str) {
        eprintln!(
            "chaos scenario={} t={:.1}s: {what}",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
        self.workload.mark_fault();
    }

    /// Waits until every partition is fully replicated again and the workload makes progress.
    fn recovered(&mut self) {
        self.cluster.wait_for_full_isr(&self.topic, PARTITIONS);
        let since = Instant::now();
        self.workload.mark_recovered();
        if let Err(e) =
            self.workload
                .wait_for_acks_since(since, ACKS_AFTER_RECOVERY, SETTLE_TIMEOUT)
        {
            self.cluster
                .fail(&format!("no progress after recovery: {e}"));
        }
        eprintln!(
            "chaos scenario={} t={:.1}s: recovered ({} acknowledged so far)",
            self.name,
            self.started.elapsed().as_secs_f64(),
            self.workload.acked()
        );
    }

    /// Runs `cycle` (fault, hold, recover) once, then again while the run is shorter than its
    /// total load time minus the final phase.
    fn cycles(&mut self, mut cycle: impl FnMut(&mut Run)) {
        loop {
            cycle(self);
            if self.started.elapsed() + 2 * self.timing.phase >= self.timing.total {
                return;
            }
            self.load();
        }
    }

    /// The leader of partition 0, the one the scenarios aim at.
    fn leader(&mut self) -> u32 {
        let topic = self.topic.clone();
        self.cluster.leader_of(&topic, 0)
    }

    /// Polls until partition 0 has a live leader other than `old`.
    fn wait_for_new_leader(&mut self, old: u32) -> u32 {
        let topic = self.topic.clone();
        let new = self.cluster.wait_for_leader(&topic, 0, |l| l != old);
        eprintln!(
            "chaos scenario={} t={:.1}s: partition 0 leader moved {old} -> {new}",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
        new
    }

    /// The final load phase, then stop, read back and check.
    fn finish(self) {
        self.load();
        let history = self.workload.stop();
        let log = match chaos::read_back(
            &self.cluster.bootstrap(),
            &self.topic,
            PARTITIONS,
            SETTLE_TIMEOUT,
        ) {
            Ok(log) => log,
            Err(e) => self.cluster.fail(&format!(
                "{}\nrerun: {}",
                e,
                chaos::rerun_command(self.name)
            )),
        };
        let report = chaos::check(&history, &log);
        chaos::finish(self.name, &report, &self.cluster.log_paths());
    }
}

/// SIGKILL the leader of partition 0 mid-stream; another replica takes over; restart it later.
#[test]
fn kill_leader() {
    let _serial = serial();
    let mut run = Run::start("kill_leader");
    run.cycles(|run| {
        let leader = run.leader();
        run.fault(&format!("SIGKILL node {leader}, leader of partition 0"));
        run.cluster.kill9(leader);
        run.wait_for_new_leader(leader);
        run.load();
        run.cluster.restart(leader);
        run.recovered();
    });
    run.finish();
}

/// SIGKILL a follower of partition 0; the leader shrinks the ISR and goes on (2 >= min ISR).
#[test]
fn kill_follower() {
    let _serial = serial();
    let mut run = Run::start("kill_follower");
    run.cycles(|run| {
        let leader = run.leader();
        let topic = run.topic.clone();
        let state = run
            .cluster
            .partition_state(&topic, 0)
            .expect("partition 0 has a state");
        let follower = state
            .replicas
            .iter()
            .filter_map(|&r| u32::try_from(r).ok())
            .find(|&r| r != leader)
            .unwrap_or_else(|| run.cluster.fail(&format!("no follower in {state:?}")));
        run.fault(&format!("SIGKILL node {follower}, follower of partition 0"));
        run.cluster.kill9(follower);
        run.load();
        run.cluster.restart(follower);
        run.recovered();
    });
    run.finish();
}

/// Runs `openssl` with `args`; panics with its output when it cannot run.
fn openssl(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("openssl is needed for the TLS test (apt-get install openssl): {e}")
        })
}

/// A CA and one node certificate (valid for 127.0.0.1 and localhost) signed by it.
fn make_certificates(dir: &std::path::Path) {
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=rivulet-test-ca",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "node.key",
            "-out",
            "node.csr",
            "-subj",
            "/CN=rivulet-node",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "node.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "node.pem",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ],
    ];
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("write san.cnf");
    for args in steps {
        let out = openssl(dir, args);
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Node links over mutual TLS: the cluster port refuses a peer without a certificate signed
/// by the cluster's CA, and the cluster replicates and fails over as in `kill_leader`.
#[test]
fn kill_leader_over_tls() {
    let _serial = serial();
    let certs = tempfile::tempdir().expect("tempdir");
    make_certificates(certs.path());
    let file = |n: &str| certs.path().join(n).display().to_string();
    let env = vec![
        ("RIVULET_CLUSTER__TLS_CERT".to_string(), file("node.pem")),
        ("RIVULET_CLUSTER__TLS_KEY".to_string(), file("node.key")),
        ("RIVULET_CLUSTER__TLS_CA".to_string(), file("ca.pem")),
    ];
    let mut run = Run::start_with(
        "kill_leader_over_tls",
        ClusterOptions {
            env,
            ..ClusterOptions::default()
        },
    );
    // The cluster port speaks TLS and wants a client certificate from our CA.
    let addr = run.cluster.cluster_addr(1).to_string();
    let with_cert = openssl(
        certs.path(),
        &[
            "s_client",
            "-connect",
            &addr,
            "-CAfile",
            "ca.pem",
            "-cert",
            "node.pem",
            "-key",
            "node.key",
            "-verify_return_error",
            "-brief",
        ],
    );
    let text = String::from_utf8_lossy(&with_cert.stderr).to_string()
        + &String::from_utf8_lossy(&with_cert.stdout);
    assert!(
        text.contains("Verification: OK") || text.contains("Verify return code: 0"),
        "TLS handshake with a CA-signed client certificate failed: {text}"
    );
    let without_cert = openssl(
        certs.path(),
        // TLS 1.2: the server checks the client certificate before the handshake completes.
        &[
            "s_client", "-connect", &addr, "-CAfile", "ca.pem", "-tls1_2", "-brief",
        ],
    );
    assert!(
        !without_cert.status.success(),
        "a peer without a client certificate was accepted: {}",
        String::from_utf8_lossy(&without_cert.stderr)
    );
    run.cycles(|run| {
        let leader = run.leader();
        run.fault(&format!("SIGKILL node {leader}, leader of partition 0"));
        run.cluster.kill9(leader);
        run.wait_for_new_leader(leader);
        run.load();
        run.cluster.restart(leader);
        run.recovered();
    });
    run.finish();
}

/// SIGKILL a follower of partition 0 and delete its whole data directory (partition logs and
/// its copy of the controller's Raft log) before restarting it: it must catch up from scratch
/// from the leaders while they keep acknowledging, and rejoin every ISR.
#[test]
fn wipe_follower() {
    let _serial = serial();
    let mut run = Run::start("wipe_follower");
    run.cycles(|run| {
        let leader = run.leader();
        let topic = run.topic.clone();
        let state = run
            .cluster
            .partition_state(&topic, 0)
            .expect("partition 0 has a state");
        let follower = state
            .replicas
            .iter()
            .filter_map(|&r| u32::try_from(r).ok())
            .find(|&r| r != leader)
            .unwrap_or_else(|| run.cluster.fail(&format!("no follower in {state:?}")));
        run.fault(&format!(
            "SIGKILL node {follower}, follower of partition 0, and wipe its data directory"
        ));
        run.cluster.kill9(follower);
        let dir = run.cluster.node(follower).data_dir();
        std::fs::remove_dir_all(&dir)
            .unwrap_or_else(|e| panic!("could not wipe {}: {e}", dir.display()));
        run.load();
        run.cluster.restart(follower);
        run.recovered();
    });
    run.finish();
}

/// A fourth node that is not among the seeds joins the running cluster through them, shows up
/// in every node's Metadata, and can lead a partition created with an explicit replica
/// assignment (CreateTopics with assignments); an acks=all workload on it checks out.
#[test]
fn a_new_node_joins_through_the_seeds() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;

    let _serial = serial();
    let cluster = Cluster::start(3, ClusterOptions::default());
    let mut args = vec![
        "--cluster-listen".to_string(),
        SocketAddr::from(([127, 0, 0, 1], harness::free_port())).to_string(),
    ];
    for id in 1..=3 {
        args.push("--seed".to_string());
        args.push(format!("{id}@{}", cluster.cluster_addr(id)));
    }
    let newcomer = Node::start_with(harness::NodeOptions {
        node_id: 4,
        extra_args: args,
        ..harness::NodeOptions::default()
    });
    harness::cluster::wait_cluster(&cluster, "every node to list node 4", || {
        (1..=3).all(|id| {
            cluster
                .metadata(id)
                .is_ok_and(|m| m.brokers.contains(&4) && m.brokers.len() == 4)
        })
    });
    let bootstrap = format!("{},{}", cluster.bootstrap(), newcomer.bootstrap());
    let topic = unique_name("joined");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin client");
    let assignment: &[&[i32]] = &[&[4, 1, 2]];
    let new_topic = NewTopic::new(&topic, 1, TopicReplication::Variable(assignment));
    let created =
        futures::executor::block_on(admin.create_topics([&new_topic], &AdminOptions::new()))
            .expect("CreateTopics answered");
    assert!(
        created.iter().all(Result::is_ok),
        "CreateTopics: {created:?}"
    );
    // Node 4 is not one of the harness's nodes, so poll the metadata directly.
    harness::cluster::wait_cluster(&cluster, "node 4 to lead the new partition", || {
        (1..=3).all(|id| {
            cluster.metadata(id).is_ok_and(|m| {
                m.partition(&topic, 0)
                    .is_some_and(|p| p.leader == 4 && p.replicas == vec![4, 1, 2])
            })
        })
    });

    let workload = Workload::start(
        &bootstrap,
        &topic,
        WorkloadOptions {
            partitions: 1,
            ..WorkloadOptions::default()
        },
    );
    if let Err(e) = workload.wait_for_acks_since(Instant::now(), 500, SETTLE_TIMEOUT) {
        cluster.fail(&format!(
            "no acknowledgements on the new node's partition: {e}"
        ));
    }
    let history = workload.stop();
    let log = chaos::read_back(&bootstrap, &topic, 1, SETTLE_TIMEOUT)
        .unwrap_or_else(|e| cluster.fail(&e));
    let report = chaos::check(&history, &log);
    let mut logs = cluster.log_paths();
    logs.extend(newcomer.log_paths());
    chaos::finish("a_new_node_joins_through_the_seeds", &report, &logs);
}

/// SIGKILL the controller; the others elect a new one; leaderships on the dead node move.
#[test]
fn kill_controller() {
    let _serial = serial();
    let mut run = Run::start("kill_controller");
    run.cycles(|run| {
        let controller = run.cluster.controller();
        run.fault(&format!("SIGKILL node {controller}, the controller"));
        run.cluster.kill9(controller);
        let new = run.cluster.wait_for_controller(|c| c != controller);
        eprintln!("chaos scenario=kill_controller: controller moved {controller} -> {new}");
        run.load();
        run.cluster.restart(controller);
        run.recovered();
    });
    run.finish();
}

/// SIGSTOP the leader of partition 0 for longer than the session timeout: it is fenced and its
/// leaderships move; after SIGCONT it must not accept or serve anything stale.
#[test]
fn pause_leader() {
    let _serial = serial();
    let mut run = Run::start("pause_leader");
    run.cycles(|run| {
        let leader = run.leader();
        run.fault(&format!("SIGSTOP node {leader}, leader of partition 0"));
        let paused_at = Instant::now();
        run.cluster.pause(leader);
        run.wait_for_new_leader(leader);
        let hold = run.timing.phase.max(3 * SESSION_TIMEOUT);
        std::thread::sleep(hold.saturating_sub(paused_at.elapsed()));
        run.cluster.resume(leader);
        run.cluster.wait_for_membership();
        run.recovered();
    });
    run.finish();
}

/// Blackhole every node-to-node link of the leader of partition 0 (clients still reach it):
/// the majority side elects a new leader; the old one must not acknowledge anything it cannot
/// replicate. Then heal.
#[test]
fn isolate_leader() {
    let _serial = serial();
    let mut run = Run::start("isolate_leader");
    run.cycles(|run| {
        let leader = run.leader();
        run.fault(&format!("isolate node {leader}, leader of partition 0"));
        run.cluster.isolate(leader);
        run.wait_for_new_leader(leader);
        run.load();
        run.cluster.heal();
        run.cluster.wait_for_membership();
        run.recovered();
    });
    run.finish();
}

/// When each record was sent and when its acknowledgement arrived (librdkafka's delivery
/// reports), by send order.
#[derive(Debug, Clone, Default)]
struct AckClock {
    sent: Arc<Mutex<Vec<Instant>>>,
    acked: Arc<Mutex<Vec<(usize, Instant)>>>,
}

impl rdkafka::ClientContext for AckClock {}

impl rdkafka::producer::ProducerContext for AckClock {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, seq: usize) {
        if result.is_ok() {
            let mut acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
            acked.push((seq, Instant::now()));
        }
    }
}

impl AckClock {
    /// The first acknowledgement, at or after `at`, of a record sent at or after `at`.
    fn first_ack_of_sent_since(&self, at: Instant) -> Option<Instant> {
        let sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        let acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        acked
            .iter()
            .filter(|(seq, _)| sent.get(*seq).is_some_and(|s| *s >= at))
            .map(|(_, t)| *t)
            .min()
    }
}

/// Issue 9, defect 6: a partition leader cut off from its peers while acks=all writes wait
/// on it. When its lease lapses (`session_timeout_ms`, 2 s) it must fail the waiting writes
/// with the retriable NOT_LEADER_OR_FOLLOWER and stop naming itself leader in Metadata, so a
/// librdkafka producer with default settings finds the new leader within seconds instead of
/// waiting out its 30 s request timeout (docs/semantics.md, "Failover").
#[test]
fn isolated_leader_fails_waiting_writes_when_its_lease_lapses() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseRecord, ThreadedProducer};

    /// The target is 5 s; the bound leaves room for a loaded 2-core CI machine.
    const UNAVAILABLE_MAX: Duration = Duration::from_secs(8);
    let _serial = serial();
    let mut cluster = Cluster::start(NODES, ClusterOptions::default());
    let topic = unique_name("lease-lapse");
    cluster.create_replicated_topic(&topic, 1);
    let leader = cluster.leader_of(&topic, 0);

    let clock = AckClock::default();
    // librdkafka's defaults (acks=all, 30 s request timeout, no idempotence).
    let producer: ThreadedProducer<AckClock> = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .create_with_context(clock.clone())
        .expect("create producer");
    let send = |n: usize| {
        let seq = {
            let mut sent = clock.sent.lock().unwrap_or_else(|e| e.into_inner());
            sent.push(Instant::now());
            sent.len() - 1
        };
        let value = format!("record {n}");
        let record = BaseRecord::<(), _, usize>::with_opaque_to(&topic, seq)
            .partition(0)
            .payload(&value);
        if let Err((e, _)) = producer.send(record) {
            panic!("queue record {seq}: {e}");
        }
    };
    let warm = Instant::now();
    let mut n = 0;
    wait_until(SETTLE_TIMEOUT, "the producer gets acknowledgements", || {
        send(n);
        n += 1;
        std::thread::sleep(Duration::from_millis(20));
        clock.first_ack_of_sent_since(warm).is_some()
    });

    // Records keep going out every 20 ms, so writes are waiting on the leader at the cut.
    let cut = Instant::now();
    cluster.isolate(leader);
    let mut first_ack = None;
    let mut disowned = None;
    let mut last_view = None;
    while first_ack.is_none() || disowned.is_none() {
        if cut.elapsed() > SETTLE_TIMEOUT {
            cluster.fail(&format!(
                "after {:?}: first acknowledgement of a record sent after the cut: {first_ack:?}; \
                 isolated node {leader} stopped naming itself leader: {disowned:?}; its last \
                 view of the partition: {last_view:?}",
                cut.elapsed()
            ));
        }
        send(n);
        n += 1;
        if first_ack.is_none() {
            first_ack = clock.first_ack_of_sent_since(cut);
        }
        if disowned.is_none() {
            if let Ok(view) = cluster.metadata(leader) {
                last_view = view.partition(&topic, 0).cloned();
                if last_view
                    .as_ref()
                    .is_some_and(|p| p.leader != leader as i32)
                {
                    disowned = Some(cut.elapsed());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let unavailable = first_ack.map(|t| t.duration_since(cut)).unwrap_or_default();
    let disowned = disowned.unwrap_or_default();
    eprintln!(
        "isolated leader {leader}: first acks=all acknowledgement {} ms after the cut; the \
         isolated node stopped naming itself leader after {} ms",
        unavailable.as_millis(),
        disowned.as_millis()
    );
    assert!(
        unavailable < UNAVAILABLE_MAX,
        "partition 0 was unavailable for {unavailable:?} after its leader was isolated"
    );
    // Its lease lapses within the session timeout of the last heartbeat reply.
    assert!(
        disowned < SESSION_TIMEOUT + Duration::from_secs(2),
        "the isolated node named itself leader for {disowned:?} after the cut"
    );
    // ... and it keeps not naming itself while it stays cut off.
    let view = cluster
        .metadata(leader)
        .unwrap_or_else(|e| cluster.fail(&format!("Metadata from node {leader}: {e}")));
    let state = view.partition(&topic, 0).cloned();
    assert!(
        state
            .as_ref()
            .is_some_and(|p| p.leader != leader as i32 && p.error_code != 0),
        "the isolated node names itself leader again: {state:?}"
    );
    cluster.heal();
}

/// SIGKILL every node at once, start them all again: everything acknowledged is still there.
#[test]
fn restart_all() {
    let _serial = serial();
    let mut run = Run::start("restart_all");
    run.cycles(|run| {
        run.fault("SIGKILL every node, then restart them all");
        run.cluster.kill9_all_and_restart();
        run.recovered();
    });
    run.finish();
}

// ---------------------------------------------------------------------------------------------
// The harness itself, without a cluster.
// ---------------------------------------------------------------------------------------------

/// The workload and checker against one node (RF 1): SIGKILL mid-stream and restart. acks=all
/// on one node is durable in the page cache, which SIGKILL keeps, so nothing acknowledged may
/// be lost (docs/semantics.md, "Acknowledgements").
#[test]
fn single_node_workload_survives_kill9_and_restart() {
    const NAME: &str = "single_node_workload_survives_kill9_and_restart";
    let _serial = serial();
    let timing = timing();
    let mut node = Node::start();
    let topic = unique_name("chaos-single");
    kafka::create_topic(&node.bootstrap(), &topic, PARTITIONS, &[]);
    let workload = Workload::start(
        &node.bootstrap(),
        &topic,
        WorkloadOptions {
            partitions: PARTITIONS,
            ..WorkloadOptions::default()
        },
    );
    let started = Instant::now();
    workload
        .wait_for_acks_since(started, ACKS_AFTER_RECOVERY, SETTLE_TIMEOUT)
        .unwrap_or_else(|e| panic!("the workload does not get going: {e}"));
    std::thread::sleep(timing.phase);
    workload.mark_fault();
    node.kill9();
    // Long enough for the client to notice and for in-flight requests to fail over to retries.
    std::thread::sleep(Duration::from_millis(500));
    node.restart();
    let restarted = Instant::now();
    workload.mark_recovered();
    workload
        .wait_for_acks_since(restarted, ACKS_AFTER_RECOVERY, SETTLE_TIMEOUT)
        .unwrap_or_else(|e| panic!("no progress after the restart: {e}"));
    std::thread::sleep(timing.phase);
    let history = workload.stop();
    let log = chaos::read_back(&node.bootstrap(), &topic, PARTITIONS, SETTLE_TIMEOUT)
        .unwrap_or_else(|e| panic!("read back: {e}"));
    let report = chaos::check(&history, &log);
    chaos::finish(NAME, &report, &node.log_paths());
    assert!(
        report.acknowledged > 2 * ACKS_AFTER_RECOVERY,
        "the run acknowledged too little to mean anything: {}",
        report.summary(NAME)
    );
    assert!(
        report.reads > 0,
        "the concurrent consumer read nothing: {}",
        report.summary(NAME)
    );
    assert!(
        report.unavailable_ms().is_some_and(|ms| ms >= 500),
        "the kill and the 500 ms pause must show as unavailability: {}",
        report.summary(NAME)
    );
}

fn ack(seq: u64, partition: i32, offset: i64, at: Instant) -> Ack {
    Ack {
        seq,
        value: chaos::value_of(seq),
        partition,
        offset,
        at,
    }
}

fn read(partition: i32, offset: i64, seq: u64) -> ConsumedRead {
    ConsumedRead {
        partition,
        offset,
        value: Some(chaos::value_of(seq)),
    }
}

/// A clean synthetic history: 2 partitions, seqs 0..6 alternating, all acknowledged.
fn clean_history(t0: Instant) -> (History, chaos::FinalLog) {
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let acks = (0..6)
        .map(|seq| ack(seq, (seq % 2) as i32, (seq / 2) as i64, ms(100 * seq)))
        .collect();
    let reads = vec![read(0, 0, 0), read(0, 1, 2), read(1, 0, 1)];
    let log: chaos::FinalLog = BTreeMap::from([
        (
            0,
            vec![
                (0, Some(chaos::value_of(0))),
                (1, Some(chaos::value_of(2))),
                (2, Some(chaos::value_of(4))),
            ],
        ),
        (
            1,
            vec![
                (0, Some(chaos::value_of(1))),
                (1, Some(chaos::value_of(3))),
                (2, Some(chaos::value_of(5))),
            ],
        ),
    ]);
    let history = History {
        started: t0,
        stopped: ms(1_000),
        partitions: 2,
        sent: 7,
        acks,
        errors: Vec::new(),
        reads,
        consumer_errors: Vec::new(),
        fault_at: Some(ms(150)),
        recovered_at: Some(ms(300)),
    };
    (history, log)
}

/// The checker accepts a clean history and catches each kind of violation on its own.
#[test]
fn checker_catches_lost_vanished_reordered_foreign_and_duplicate_records() {
    let t0 = Instant::now();
    let (history, log) = clean_history(t0);
    let clean = chaos::check(&history, &log);
    assert!(
        !clean.failed(),
        "clean history flagged: {:?}",
        clean.problems
    );
    assert_eq!(
        (clean.lost, clean.duplicates, clean.acked_after_recovery),
        (0, 0, Some(3))
    );
    // The fault at 150 ms, the stop at 1000 ms; partition 0's last ack at 400 ms: the worst
    // gap is 600 ms, partition 0 from its last ack to the stop.
    assert_eq!(clean.unavailable, Some((Duration::from_millis(600), 0)));

    // An acknowledged record missing from the log.
    let mut lost_log = log.clone();
    lost_log.get_mut(&1).expect("partition 1").truncate(2);
    let r = chaos::check(&history, &lost_log);
    assert_eq!(r.lost, 1, "{:?}", r.problems);
    assert!(r.failed());

    // An acknowledged offset holding another value (an overwrite after failover).
    let mut overwritten = log.clone();
    overwritten.get_mut(&0).expect("partition 0")[2].1 = Some(chaos::value_of(6));
    let r = chaos::check(&history, &overwritten);
    assert_eq!(r.lost, 1, "{:?}", r.problems);

    // A record the consumer read that is gone from the final log (truncated after being read).
    let mut h = history.clone();
    h.reads.push(read(1, 3, 6));
    let r = chaos::check(&h, &log);
    assert_eq!((r.vanished_reads, r.lost), (1, 0), "{:?}", r.problems);
    assert!(r.failed());

    // The consumer seeing offsets go backwards.
    let mut h = history.clone();
    h.reads.push(read(0, 0, 0));
    let r = chaos::check(&h, &log);
    assert_eq!(r.order_violations, 1, "{:?}", r.problems);
    assert!(r.failed());

    // One producer's records acknowledged out of send order in a partition.
    let mut h = history.clone();
    h.acks[0].offset = 1;
    h.acks[2].offset = 0;
    let mut swapped = log.clone();
    swapped.get_mut(&0).expect("partition 0")[0].1 = Some(chaos::value_of(2));
    swapped.get_mut(&0).expect("partition 0")[1].1 = Some(chaos::value_of(0));
    h.reads.clear();
    let r = chaos::check(&h, &swapped);
    assert_eq!((r.lost, r.order_violations), (0, 1), "{:?}", r.problems);

    // A value stored twice (an unacknowledged retry): reported, not a failure.
    let mut dup = log.clone();
    dup.get_mut(&0)
        .expect("partition 0")
        .push((3, Some(chaos::value_of(6))));
    dup.get_mut(&1)
        .expect("partition 1")
        .push((3, Some(chaos::value_of(6))));
    let r = chaos::check(&history, &dup);
    assert_eq!(r.duplicates, 1, "{:?}", r.problems);
    assert!(!r.failed(), "{:?}", r.problems);

    // A record nobody sent.
    let mut foreign = log.clone();
    foreign
        .get_mut(&1)
        .expect("partition 1")
        .push((3, Some("v-999999".to_string())));
    let r = chaos::check(&history, &foreign);
    assert_eq!(r.foreign_records, 1, "{:?}", r.problems);
    assert!(r.failed());

    // No progress after recovery.
    let mut h = history.clone();
    h.recovered_at = Some(t0 + Duration::from_millis(900));
    let r = chaos::check(&h, &log);
    assert_eq!(r.acked_after_recovery, Some(0));
    assert!(r.failed());
}

// ---------------------------------------------------------------------------------------------
// The fault proxy.
// ---------------------------------------------------------------------------------------------

/// A blocking echo server on a free port; counts the connections it accepted.
struct Echo {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

fn echo_server() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = conn.shutdown(Shutdown::Write);
                            return;
                        }
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Echo { addr, accepted }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to proxy");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    s
}

/// Writes `msg` and reads it back.
fn echo_once(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg)?;
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// Whether nothing arrives on `s` within `wait`.
fn silent_for(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).expect("read timeout");
    let mut buf = [0u8; 64];
    let silent = matches!(
        s.read(&mut buf),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
    );
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    silent
}

/// Whether the peer closed or reset `s` (EOF or an error other than a timeout).
fn closed_by_peer(s: &mut TcpStream) -> bool {
    let _ = s.write_all(b"x");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

#[test]
fn proxy_passes_bytes_both_ways_and_passes_half_close_on() {
    let echo = echo_server();
    let proxy = FaultProxy::start(echo.addr).expect("start proxy");
    assert_eq!(proxy.mode(), ProxyMode::Pass);
    assert_eq!(proxy.target(), echo.addr);
    let mut a = connect(proxy.addr());
    let mut b = connect(proxy.addr());
    assert_eq!(echo_once(&mut a, b"hello").expect("echo a"), b"hello");
    assert_eq!(echo_once(&mut b, b"world").expect("echo b"), b"world");
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(echo_once(&mut a, &big).expect("echo 1 MB"), big);
    // Our FIN reaches the server, whose FIN comes back as EOF.
    a.shutdown(Shutdown::Write).expect("shutdown");
    let mut rest = Vec::new();
    a.read_to_end(&mut rest).expect("EOF after half close");
    assert!(rest.is_empty());
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(proxy.connections_accepted(), 2);
    assert!(proxy.bytes_forwarded() >= 2 * (10 + big.len() as u64));
}

#[test]
fn proxy_blackhole_is_silent_and_delivers_held_bytes_in_order_after_healing() {
    let echo = echo_server();
    let proxy = FaultProxy::start(echo.addr).expect("start proxy");
    let mut open = connect(proxy.addr());
    assert_eq!(echo_once(&mut open, b"before").expect("echo"), b"before");

    proxy.set_mode(ProxyMode::Blackhole);
    open.write_all(b"during-1").expect("write during blackhole");
    assert!(
        silent_for(&mut open, Duration::from_millis(300)),
        "a blackholed connection must not forward"
    );
    // New connections are accepted, but the target never sees them.
    let mut late = connect(proxy.addr());
    late.write_all(b"late")
        .expect("write on a connection opened during blackhole");
    assert!(silent_for(&mut late, Duration::from_millis(300)));
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(proxy.upstream_connections(), 1);
    open.write_all(b"during-2").expect("write during blackhole");

    // Healing delivers what was held, in order, as TCP would after a real partition.
    proxy.set_mode(ProxyMode::Pass);
    let mut buf = [0u8; 16];
    open.read_exact(&mut buf).expect("held bytes after healing");
    assert_eq!(&buf, b"during-1during-2");
    let mut buf = [0u8; 4];
    late.read_exact(&mut buf)
        .expect("late connection after healing");
    assert_eq!(&buf, b"late");
    wait_until(
        Duration::from_secs(5),
        "the late connection reaches the target",
        || echo.accepted.load(Ordering::SeqCst) == 2,
    );
    assert_eq!(echo_once(&mut open, b"after").expect("echo"), b"after");
}

#[test]
fn proxy_reset_kills_open_connections_and_refuses_new_ones() {
    let echo = echo_server();
    let proxy = FaultProxy::start(echo.addr).expect("start proxy");
    let mut open = connect(proxy.addr());
    assert_eq!(echo_once(&mut open, b"ping").expect("echo"), b"ping");

    proxy.set_mode(ProxyMode::Reset);
    assert!(
        closed_by_peer(&mut open),
        "an open connection must be reset"
    );
    // On loopback the proxy's reset can arrive before `connect` returns: both outcomes mean
    // the new connection was refused.
    match TcpStream::connect_timeout(&proxy.addr(), Duration::from_secs(5)) {
        Ok(mut fresh) => {
            fresh
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("read timeout");
            assert!(closed_by_peer(&mut fresh), "a new connection must be reset");
        }
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::ConnectionReset,
            "a new connection must be reset, not fail with {e}"
        ),
    }

    proxy.set_mode(ProxyMode::Pass);
    let mut again = connect(proxy.addr());
    assert_eq!(
        echo_once(&mut again, b"pong").expect("echo after reset"),
        b"pong"
    );

    // A one-off reset of the open connections leaves the link passing new ones.
    proxy.reset_open_connections();
    assert!(closed_by_peer(&mut again));
    assert_eq!(proxy.mode(), ProxyMode::Pass);
    let mut after = connect(proxy.addr());
    assert_eq!(echo_once(&mut after, b"pang").expect("echo"), b"pang");
}

#[test]
fn proxy_to_a_dead_target_closes_the_client() {
    // A port nobody listens on (bound, read, released).
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let proxy = FaultProxy::start(dead).expect("start proxy");
    let mut s = connect(proxy.addr());
    assert!(closed_by_peer(&mut s));
    assert_eq!(proxy.upstream_connections(), 0);
}
