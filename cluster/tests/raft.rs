//! The Raft metadata controller, several nodes in one process over an in-process transport
//! that can cut nodes off.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rivulet_cluster::raft::{
    place_replicas, MetaCommand, MetaRaft, MetaRaftConfig, MetaResponse, MetadataImage, NodeId,
    NodeRecord, RaftTransport, TransportError,
};
use rivulet_storage::{Store, StoreConfig};
use uuid::Uuid;

/// Routes calls to the target's `handle_rpc`; a cut node neither sends nor receives.
#[derive(Default)]
struct Net {
    nodes: Mutex<HashMap<NodeId, MetaRaft>>,
    cut: Mutex<HashSet<NodeId>>,
}

impl Net {
    fn severed(&self, a: NodeId, b: NodeId) -> bool {
        let cut = self.cut.lock();
        cut.contains(&a) || cut.contains(&b)
    }
    fn set_cut(&self, node: NodeId, cut: bool) {
        if cut {
            self.cut.lock().insert(node);
        } else {
            self.cut.lock().remove(&node);
        }
    }
}

struct Link {
    from: NodeId,
    net: Arc<Net>,
}

impl RaftTransport for Link {
    fn call(
        &self,
        target: NodeId,
        request: Vec<u8>,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, TransportError>> + Send + '_>> {
        Box::pin(async move {
            let unreachable = || TransportError::Unreachable {
                node: target,
                reason: "cut off".into(),
            };
            if self.net.severed(self.from, target) {
                return Err(unreachable());
            }
            let Some(node) = self.net.nodes.lock().get(&target).cloned() else {
                return Err(TransportError::Unreachable {
                    node: target,
                    reason: "not running".into(),
                });
            };
            let reply = tokio::time::timeout(timeout, node.handle_rpc(request))
                .await
                .map_err(|_| TransportError::Timeout {
                    node: target,
                    timeout,
                })?;
            if self.net.severed(self.from, target) {
                return Err(unreachable());
            }
            Ok(reply)
        })
    }
}

fn record(id: NodeId) -> NodeRecord {
    NodeRecord {
        id,
        kafka_host: "127.0.0.1".into(),
        kafka_port: 9090 + id as u16,
        cluster_addr: format!("127.0.0.1:{}", 7070 + id),
        controller_eligible: true,
        fenced: false,
    }
}

fn fast_config(id: NodeId, voters: &[NodeId]) -> MetaRaftConfig {
    let voters: BTreeMap<NodeId, String> = voters
        .iter()
        .map(|&v| (v, record(v).cluster_addr))
        .collect();
    let mut cfg = MetaRaftConfig::new(record(id), voters);
    cfg.heartbeat_interval = Duration::from_millis(100);
    cfg.session_timeout = Duration::from_millis(1500);
    cfg.preferred_leader_interval = Duration::from_millis(500);
    cfg
}

/// Opens a store, retrying while a previous instance in this process still holds the lock.
async fn open_store(dir: &Path) -> Store {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(dir, StoreConfig::default()) {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("store not reopenable yet: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot reopen the store: {e}"),
        }
    }
}

async fn start(net: &Arc<Net>, cfg: MetaRaftConfig, store: &Store) -> MetaRaft {
    let id = cfg.node_id;
    let link = Arc::new(Link {
        from: id,
        net: net.clone(),
    });
    let raft = MetaRaft::start(cfg, store, link).await.expect("start");
    net.nodes.lock().insert(id, raft.clone());
    raft
}

/// Waits until `pred` holds for the node's image.
async fn wait_image(
    raft: &MetaRaft,
    within: Duration,
    what: &str,
    pred: impl Fn(&MetadataImage) -> bool,
) -> Arc<MetadataImage> {
    let mut rx = raft.image();
    let got = tokio::time::timeout(within, rx.wait_for(|img| pred(img))).await;
    match got {
        Ok(Ok(img)) => img.clone(),
        _ => panic!(
            "node {}: timed out after {within:?} waiting for {what}; image: {:#?}",
            raft.node_id(),
            raft.image().borrow()
        ),
    }
}

/// Polls a condition that has no notification (leadership, leases).
async fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The leader all of `nodes` agree on.
async fn agreed_leader(nodes: &[&MetaRaft], within: Duration) -> NodeId {
    let mut leader = None;
    wait_until(within, "an agreed controller leader", || {
        let seen: HashSet<Option<NodeId>> = nodes.iter().map(|n| n.controller_leader()).collect();
        leader = seen.iter().next().copied().flatten();
        seen.len() == 1 && leader.is_some()
    })
    .await;
    leader.unwrap()
}

fn all_registered(img: &MetadataImage, ids: &[NodeId]) -> bool {
    ids.iter()
        .all(|id| img.nodes.get(id).is_some_and(|n| !n.fenced))
}

fn create_topic(name: &str, assignment: Vec<Vec<NodeId>>) -> MetaCommand {
    MetaCommand::CreateTopic {
        name: name.into(),
        id: Uuid::new_v4(),
        configs: BTreeMap::new(),
        assignment,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_is_leader_at_once_and_writes_fast() {
    let dir = tempfile::tempdir().unwrap();
    let net = Arc::new(Net::default());
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let t0 = Instant::now();
    let cfg = MetaRaftConfig::single_node(record(1));
    let raft = start(&net, cfg, &store).await;
    wait_image(&raft, Duration::from_secs(5), "self registration", |i| {
        all_registered(i, &[1])
    })
    .await;
    let ready = t0.elapsed();
    assert_eq!(raft.controller_leader(), Some(1));
    assert!(raft.lease_valid());
    assert!(
        ready < Duration::from_secs(2),
        "single node took {ready:?} to be ready"
    );

    let assignment = place_replicas(&raft.image().borrow(), 2, 1).unwrap();
    let t1 = Instant::now();
    let r = raft.propose(create_topic("t", assignment)).await.unwrap();
    let took = t1.elapsed();
    assert_eq!(r, MetaResponse::Ok);
    assert!(
        took < Duration::from_millis(500),
        "a topic create took {took:?}"
    );
    let img = raft.image().borrow().clone();
    assert_eq!(img.topics["t"].partitions.len(), 2);
    assert_eq!(img.topics["t"].partitions[0].leader, Some(1));
    assert_eq!(
        raft.propose(MetaCommand::AllocateProducerIds { count: 1000 })
            .await
            .unwrap(),
        MetaResponse::ProducerIds { start: 0 }
    );
    eprintln!("single node: ready in {ready:?}, topic create in {took:?}");

    // Restart: the image is back before anything is replayed, and it leads again.
    raft.shutdown().await;
    net.nodes.lock().clear();
    drop(raft);
    drop(store);
    let store = open_store(dir.path()).await;
    let raft = start(&net, MetaRaftConfig::single_node(record(1)), &store).await;
    assert_eq!(raft.image().borrow().topics, img.topics);
    assert_eq!(
        raft.propose(MetaCommand::AllocateProducerIds { count: 10 })
            .await
            .unwrap(),
        MetaResponse::ProducerIds { start: 1000 }
    );
    raft.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_forward_fence_unfence_rebalance_and_restart() {
    let ids = [1, 2, 3];
    let dirs: Vec<_> = ids.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let net = Arc::new(Net::default());
    let mut stores = Vec::new();
    let mut nodes = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let store = Store::open(dirs[i].path(), StoreConfig::default()).unwrap();
        nodes.push(start(&net, fast_config(id, &ids), &store).await);
        stores.push(store);
    }
    let leader = agreed_leader(&nodes.iter().collect::<Vec<_>>(), Duration::from_secs(10)).await;
    for n in &nodes {
        wait_image(n, Duration::from_secs(10), "all nodes registered", |i| {
            all_registered(i, &ids)
        })
        .await;
    }

    // A proposal on a follower is forwarded to the leader.
    let follower = nodes.iter().find(|n| n.node_id() != leader).unwrap();
    let assignment = place_replicas(&follower.image().borrow(), 3, 3).unwrap();
    let firsts: HashSet<NodeId> = assignment.iter().map(|r| r[0]).collect();
    assert_eq!(
        firsts.len(),
        3,
        "each node is preferred leader of one partition"
    );
    let r = follower
        .propose(create_topic("t", assignment))
        .await
        .unwrap();
    assert_eq!(r, MetaResponse::Ok);
    let dup = follower
        .propose(create_topic("t", vec![vec![1]]))
        .await
        .unwrap();
    assert!(matches!(dup, MetaResponse::Rejected { .. }), "{dup:?}");
    for n in &nodes {
        wait_image(n, Duration::from_secs(5), "topic t", |i| {
            i.topics.contains_key("t")
        })
        .await;
    }
    wait_until(Duration::from_secs(5), "leases on every node", || {
        nodes.iter().all(|n| n.lease_valid())
    })
    .await;

    // Cut off a follower: it is fenced, loses its lease, and its partition moves to an ISR member.
    let victim = *ids.iter().find(|&&id| id != leader).unwrap();
    let vi = ids.iter().position(|&id| id == victim).unwrap();
    let li = ids.iter().position(|&id| id == leader).unwrap();
    let cut_at = Instant::now();
    net.set_cut(victim, true);
    let fenced = wait_image(&nodes[li], Duration::from_secs(10), "victim fenced", |i| {
        i.nodes[&victim].fenced
    })
    .await;
    eprintln!("node {victim} fenced {:?} after the cut", cut_at.elapsed());
    for p in &fenced.topics["t"].partitions {
        assert_ne!(p.leader, Some(victim));
        let l = p.leader.expect("every partition keeps a leader");
        assert!(p.isr.contains(&l));
        assert!(!p.isr.contains(&victim), "{p:?}");
    }
    let moved = fenced.topics["t"]
        .partitions
        .iter()
        .find(|p| p.replicas[0] == victim)
        .unwrap();
    assert!(moved.leader_epoch >= 1);
    wait_until(
        Duration::from_secs(5),
        "the victim's lease to expire",
        || !nodes[vi].lease_valid(),
    )
    .await;
    // The rest of the cluster still writes.
    let r = nodes[li]
        .propose(MetaCommand::AllocateProducerIds { count: 1000 })
        .await
        .unwrap();
    assert!(matches!(r, MetaResponse::ProducerIds { .. }), "{r:?}");

    // Heal: it is unfenced, its lease returns, and once it is back in the ISR it is the preferred
    // leader again.
    net.set_cut(victim, false);
    for n in &nodes {
        wait_image(n, Duration::from_secs(10), "victim unfenced", |i| {
            !i.nodes[&victim].fenced
        })
        .await;
    }
    wait_until(
        Duration::from_secs(5),
        "the victim's lease to return",
        || nodes[vi].lease_valid(),
    )
    .await;
    let (pi, p) = {
        let img = nodes[li].image().borrow().clone();
        let (pi, p) = img.topics["t"]
            .partitions
            .iter()
            .enumerate()
            .find(|(_, p)| p.replicas[0] == victim)
            .map(|(i, p)| (i, p.clone()))
            .unwrap();
        (pi, p)
    };
    let mut isr = p.isr.clone();
    isr.push(victim);
    let r = nodes[vi]
        .propose(MetaCommand::AlterIsr {
            topic: "t".into(),
            partition: pi as i32,
            leader: p.leader.unwrap(),
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr,
        })
        .await
        .unwrap();
    assert_eq!(r, MetaResponse::PartitionEpoch(p.partition_epoch + 1));
    wait_image(
        &nodes[vi],
        Duration::from_secs(10),
        "preferred leader back",
        |i| i.topics["t"].partitions[pi].leader == Some(victim),
    )
    .await;

    // Restart the victim from its store: the image survives, and it catches up and writes.
    let before = nodes[vi].image().borrow().clone();
    nodes[vi].shutdown().await;
    net.nodes.lock().remove(&victim);
    let old = nodes.remove(vi);
    drop(old);
    drop(stores.remove(vi));
    let store = open_store(dirs[vi].path()).await;
    let restarted = start(&net, fast_config(victim, &ids), &store).await;
    let after_start = restarted.image().borrow().clone();
    assert_eq!(after_start.topics, before.topics);
    assert_eq!(
        after_start.nodes.keys().collect::<Vec<_>>(),
        vec![&1, &2, &3]
    );
    assert!(after_start.version >= before.version);
    let r = restarted
        .propose(create_topic("u", vec![vec![victim]]))
        .await
        .unwrap();
    assert_eq!(r, MetaResponse::Ok);
    nodes.insert(vi, restarted);
    for n in &nodes {
        wait_image(n, Duration::from_secs(5), "topic u", |i| {
            i.topics.contains_key("u")
        })
        .await;
    }
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_leader_loss_fails_over_within_five_seconds() {
    let ids = [1, 2, 3];
    let dirs: Vec<_> = ids.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let net = Arc::new(Net::default());
    let mut stores = Vec::new();
    let mut nodes = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let store = Store::open(dirs[i].path(), StoreConfig::default()).unwrap();
        // Default timings: this is the failover target as configured in production.
        let voters = ids.iter().map(|&v| (v, record(v).cluster_addr)).collect();
        nodes.push(start(&net, MetaRaftConfig::new(record(id), voters), &store).await);
        stores.push(store);
    }
    let leader = agreed_leader(&nodes.iter().collect::<Vec<_>>(), Duration::from_secs(10)).await;
    for n in &nodes {
        wait_image(n, Duration::from_secs(10), "all registered", |i| {
            all_registered(i, &ids)
        })
        .await;
    }
    let li = ids.iter().position(|&id| id == leader).unwrap();
    let survivor = &nodes[(li + 1) % 3];

    let t0 = Instant::now();
    net.set_cut(leader, true);
    let r = survivor
        .propose(MetaCommand::AllocateProducerIds { count: 1 })
        .await
        .unwrap();
    let took = t0.elapsed();
    assert!(matches!(r, MetaResponse::ProducerIds { .. }));
    eprintln!("leader {leader} cut; first write after {took:?}");
    assert!(took < Duration::from_secs(5), "failover took {took:?}");
    let new_leader = survivor.controller_leader().unwrap();
    assert_ne!(new_leader, leader);
    // The old leader gets fenced by the new one.
    wait_image(survivor, Duration::from_secs(5), "old leader fenced", |i| {
        i.nodes[&leader].fenced
    })
    .await;

    // Healed, the old leader follows and catches up.
    net.set_cut(leader, false);
    wait_image(
        &nodes[li],
        Duration::from_secs(10),
        "old leader caught up and unfenced",
        |i| i.next_producer_id >= 1 && !i.nodes[&leader].fenced,
    )
    .await;
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_outside_the_seeds_joins_as_learner() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let net = Arc::new(Net::default());
    let s1 = Store::open(dirs[0].path(), StoreConfig::default()).unwrap();
    let seed = start(&net, MetaRaftConfig::single_node(record(1)), &s1).await;
    wait_image(&seed, Duration::from_secs(5), "seed registered", |i| {
        all_registered(i, &[1])
    })
    .await;
    assert_eq!(
        seed.propose(create_topic("t", vec![vec![1]]))
            .await
            .unwrap(),
        MetaResponse::Ok
    );

    let s2 = Store::open(dirs[1].path(), StoreConfig::default()).unwrap();
    let mut cfg = fast_config(2, &[1]);
    cfg.self_record.controller_eligible = false;
    let joiner = start(&net, cfg, &s2).await;
    let img = wait_image(
        &joiner,
        Duration::from_secs(10),
        "joined and registered",
        |i| all_registered(i, &[1, 2]) && i.topics.contains_key("t"),
    )
    .await;
    assert!(!img.nodes[&2].controller_eligible);
    assert_eq!(joiner.controller_leader(), Some(1));
    // The joiner's proposals are forwarded to the seed.
    let r = joiner
        .propose(create_topic("u", vec![vec![2, 1]]))
        .await
        .unwrap();
    assert_eq!(r, MetaResponse::Ok);
    wait_image(&seed, Duration::from_secs(5), "topic u on the seed", |i| {
        i.topics
            .get("u")
            .is_some_and(|t| t.partitions[0].leader == Some(2))
    })
    .await;
    wait_until(Duration::from_secs(5), "the joiner's lease", || {
        joiner.lease_valid()
    })
    .await;
    joiner.shutdown().await;
    seed.shutdown().await;
}

/// The smallest seed is down at bootstrap: the others initialize the group themselves after a
/// delay; when it starts late (pristine, it initializes too, with the same membership) it
/// follows the existing leader and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_forms_without_the_first_seed_and_it_catches_up_later() {
    let ids = [1, 2, 3];
    let dirs: Vec<_> = ids.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let net = Arc::new(Net::default());
    let s2 = Store::open(dirs[1].path(), StoreConfig::default()).unwrap();
    let s3 = Store::open(dirs[2].path(), StoreConfig::default()).unwrap();
    let n2 = start(&net, fast_config(2, &ids), &s2).await;
    let n3 = start(&net, fast_config(3, &ids), &s3).await;
    let leader = agreed_leader(&[&n2, &n3], Duration::from_secs(10)).await;
    assert_ne!(leader, 1);
    // An explicit assignment names registered nodes only: wait until both have registered
    // (under load, the leader is agreed on before node 2's registration is applied).
    wait_image(
        &n3,
        Duration::from_secs(10),
        "nodes 2 and 3 registered",
        |i| all_registered(i, &[2, 3]),
    )
    .await;
    let r = n3
        .propose(create_topic("t", vec![vec![2, 3]]))
        .await
        .unwrap();
    assert_eq!(r, MetaResponse::Ok);

    let s1 = Store::open(dirs[0].path(), StoreConfig::default()).unwrap();
    let n1 = start(&net, fast_config(1, &ids), &s1).await;
    let img = wait_image(&n1, Duration::from_secs(10), "late seed caught up", |i| {
        i.topics.contains_key("t") && all_registered(i, &ids)
    })
    .await;
    assert_eq!(img.topics["t"].partitions[0].leader, Some(2));
    assert_eq!(
        agreed_leader(&[&n1, &n2, &n3], Duration::from_secs(10)).await,
        leader
    );
    for n in [&n1, &n2, &n3] {
        n.shutdown().await;
    }
}
