//! A Rust program embedding a node (`examples/src/embedded_node.rs`, through the `rivulet`
//! facade) joins a 3-node cluster of `rivulet serve` processes as a full member: it holds
//! replicas, leads a partition, serves Kafka clients on its own listener, and stops gracefully
//! on Ctrl-C (its leadership moves, nothing acknowledged is lost, it exits 0).

mod harness;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use harness::cluster::{
    fetch_metadata, wait_cluster, Cluster, ClusterOptions, MetadataView, SETTLE_TIMEOUT,
};
use harness::kafka::{assert_history, consume_all, key_for, value_for, TestProducer};
use harness::{free_port, run, try_wait_until, unique_name, wire, START_TIMEOUT, STOP_TIMEOUT};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// The example's binary name (examples/Cargo.toml).
const EXAMPLE: &str = "embedded-node";

/// Builds the example with the cargo that runs this test, into the same target directory and
/// profile as the `rivulet` binary under test, and returns its path. A test target cannot
/// depend on another package's binary, so without this the test could run a stale example.
///
/// The build must resolve features as `cargo test --workspace` (CI) does, or it would rebuild
/// half the dependency graph: so `--workspace`, and this very test target, which turns on the
/// dev-dependencies' features. On CI the example is then already built and this is a no-op.
fn build_example() -> PathBuf {
    let rivulet = Path::new(harness::RIVULET);
    let profile_dir = rivulet
        .parent()
        .expect("the rivulet binary is in a profile dir");
    let target_dir = profile_dir
        .parent()
        .expect("the profile dir is in a target dir");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--workspace",
            "--bin",
            EXAMPLE,
            "--test",
            "embedded",
        ])
        .arg("--target-dir")
        .arg(target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    run(&mut cmd, None, Duration::from_secs(1800)).assert_success();
    let exe = profile_dir.join(EXAMPLE);
    assert!(
        exe.exists(),
        "cargo built {EXAMPLE} but {} is missing",
        exe.display()
    );
    exe
}

/// The example program running as a cluster member.
struct EmbeddedNode {
    node_id: u32,
    kafka: SocketAddr,
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
}

impl EmbeddedNode {
    fn launch(exe: &Path, node_id: u32, cluster: &Cluster) -> EmbeddedNode {
        let dir = tempfile::Builder::new()
            .prefix("rivulet-embedded-")
            .tempdir()
            .expect("temp dir");
        let kafka = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let cluster_listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = Command::new(exe);
        cmd.arg("--node-id")
            .arg(node_id.to_string())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen")
            .arg(kafka.to_string())
            .arg("--cluster-listen")
            .arg(cluster_listen.to_string())
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{}", harness::free_port()));
        for id in cluster.ids() {
            cmd.arg("--seed")
                .arg(format!("{id}@{}", cluster.cluster_addr(id)));
        }
        let log = |name: &str| File::create(dir.path().join(name)).expect("log file");
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log("stdout.log"))
            .stderr(log("stderr.log"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
        EmbeddedNode {
            node_id,
            kafka,
            dir: Some(dir),
            child: Some(child),
        }
    }

    fn bootstrap(&self) -> String {
        self.kafka.to_string()
    }

    fn log(&self, name: &str) -> String {
        let dir = self.dir.as_ref().expect("temp dir");
        std::fs::read_to_string(dir.path().join(name)).unwrap_or_default()
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().expect("try_wait")?;
        self.child = None;
        Some(status)
    }

    /// Polls until the node answers ApiVersions on its Kafka listener.
    fn wait_ready(&mut self) {
        let mut last = String::new();
        let result = try_wait_until(START_TIMEOUT, "the embedded node answers Kafka", || {
            if let Some(status) = self.exit_status() {
                panic!("the embedded node exited with {status}:\n{}", self.logs());
            }
            match wire::probe(self.kafka, Duration::from_secs(2)) {
                Ok(()) => true,
                Err(e) => {
                    last = e;
                    false
                }
            }
        });
        if let Err(e) = result {
            panic!("{e}; last: {last}\n{}", self.logs());
        }
    }

    /// Ctrl-C (SIGINT), then waits (bounded) for the process to exit.
    fn interrupt(&mut self) -> ExitStatus {
        let pid = self.child.as_ref().expect("running").id();
        run(
            Command::new("kill").arg("-INT").arg(pid.to_string()),
            None,
            Duration::from_secs(10),
        )
        .assert_success();
        let mut status = None;
        if let Err(e) = try_wait_until(STOP_TIMEOUT, "the embedded node exits after Ctrl-C", || {
            status = self.exit_status();
            status.is_some()
        }) {
            panic!("{e}\n{}", self.logs());
        }
        status.expect("exit status")
    }

    fn logs(&self) -> String {
        format!(
            "----- embedded node {} stdout -----\n{}\n----- stderr (tail) -----\n{}",
            self.node_id,
            self.log("stdout.log"),
            tail(&self.log("stderr.log"), 60)
        )
    }
}

impl Drop for EmbeddedNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
            if let Some(dir) = self.dir.take() {
                eprintln!("kept the embedded node's dir: {}", dir.keep().display());
            }
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Produces `count` keyed acks=all records through `bootstrap`, starting at `first_seq`, and
/// returns what was acknowledged (every record must be).
fn produce(
    bootstrap: &str,
    topic: &str,
    first_seq: usize,
    count: usize,
) -> Vec<harness::kafka::Record> {
    let mut producer = TestProducer::new(bootstrap, &[]);
    for seq in first_seq..first_seq + count {
        producer.send(topic, &key_for(seq), &value_for(seq));
    }
    producer
        .flush(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("flush through {bootstrap}: {e}"));
    let failed = producer.log().failed();
    assert!(
        failed.is_empty(),
        "deliveries failed through {bootstrap}: {failed:?}"
    );
    let mut acked = producer.log().acked();
    assert_eq!(acked.len(), count, "acknowledged through {bootstrap}");
    // The producer numbers its records from 0; make them unique across producers.
    for r in &mut acked {
        r.seq += first_seq;
    }
    acked
}

#[test]
fn an_embedded_node_joins_serves_and_leaves_gracefully() {
    let exe = build_example();
    let mut cluster = Cluster::start(3, ClusterOptions::default());
    let mut node4 = EmbeddedNode::launch(&exe, 4, &cluster);
    node4.wait_ready();
    wait_cluster(&cluster, "every node to list the embedded node 4", || {
        cluster.ids().iter().all(|&id| {
            cluster
                .metadata(id)
                .is_ok_and(|m| m.brokers.len() == 4 && m.brokers.contains(&4))
        })
    });
    assert!(
        node4
            .log("stdout.log")
            .contains("embedded node 4 joined cluster"),
        "{}",
        node4.logs()
    );

    // RF=3 over four nodes: node 4 is the preferred leader of partition 0 and a follower of
    // two more partitions.
    let topic = unique_name("embedded");
    let all = format!("{},{}", cluster.bootstrap(), node4.bootstrap());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &all)
        .create()
        .expect("admin client");
    let assignment: &[&[i32]] = &[&[4, 1, 2], &[1, 2, 4], &[2, 3, 4], &[3, 1, 2]];
    let new_topic = NewTopic::new(&topic, 4, TopicReplication::Variable(assignment))
        .set("min.insync.replicas", "2");
    let created =
        futures::executor::block_on(admin.create_topics([&new_topic], &AdminOptions::new()))
            .expect("CreateTopics answered");
    assert!(
        created.iter().all(Result::is_ok),
        "CreateTopics: {created:?}"
    );
    // Every node, the embedded one included, reports node 4 leading partition 0 and every
    // replica in sync (so node 4 also follows partitions 1 and 2).
    wait_cluster(
        &cluster,
        "node 4 to lead partition 0 with every replica in sync",
        || {
            let mut views: Vec<Option<MetadataView>> = cluster
                .ids()
                .iter()
                .map(|&id| cluster.metadata(id).ok())
                .collect();
            views.push(
                fetch_metadata(node4.kafka)
                    .ok()
                    .map(|r| MetadataView::from_response(4, r)),
            );
            views.iter().all(|v| {
                v.as_ref().is_some_and(|v| {
                    (0..4).all(|p| {
                        v.partition(&topic, p).is_some_and(|s| {
                            let mut isr = s.isr.clone();
                            isr.sort_unstable();
                            let mut replicas = s.replicas.clone();
                            replicas.sort_unstable();
                            isr == replicas && (p != 0 || s.leader == 4)
                        })
                    })
                })
            })
        },
    );

    // Produce through the embedded node's listener and through node 1; read it all back.
    let mut acked = produce(&node4.bootstrap(), &topic, 0, 400);
    acked.extend(produce(&cluster.node(1).bootstrap(), &topic, 400, 400));
    let on_p0 = acked.iter().filter(|r| r.partition == 0).count();
    assert!(
        on_p0 > 0,
        "no record landed on the embedded node's partition"
    );
    assert_history(
        &acked,
        &consume_all(&node4.bootstrap(), &topic, SETTLE_TIMEOUT),
        true,
    );

    // Ctrl-C: the program shuts the node down and exits 0; the leadership moves.
    let status = node4.interrupt();
    assert!(
        status.success(),
        "embedded node exit status {status}\n{}",
        node4.logs()
    );
    // The example reports what its handle saw at Ctrl-C: partition 0 at least (the other
    // leaderships are `__consumer_offsets` partitions placed on it).
    let stdout = node4.log("stdout.log");
    let leading: usize = stdout
        .lines()
        .find_map(|l| l.split_once(", leading ").map(|(_, n)| n.trim()))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `leading N` line\n{}", node4.logs()));
    assert!(leading >= 1, "{}", node4.logs());
    assert!(stdout.contains("embedded node stopped"), "{}", node4.logs());
    let leader = cluster.wait_for_leader(&topic, 0, |l| l != 4);
    assert!([1, 2].contains(&leader), "partition 0 moved to {leader}");
    // Nothing acknowledged was lost, and the partition takes acks=all writes again.
    acked.extend(produce(&cluster.bootstrap(), &topic, 800, 200));
    assert_history(
        &acked,
        &consume_all(&cluster.bootstrap(), &topic, SETTLE_TIMEOUT),
        true,
    );
}
