//! Leader/follower replication between replica actors of two in-process nodes, connected by a
//! loopback network that can cut a node off. The controller's ISR decisions are played by a
//! small table that fences stale leader epochs like the real one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use rivulet_actors::manager::ReplicaSettings;
use rivulet_actors::replication::{
    AppendResponse, AppendResult, BoxFuture, IsrChange, NodeId, ReplicaNetwork, ReplicationMessage,
};
use rivulet_actors::{
    NodeSupervisor, NodeSupervisorArgs, NodeSupervisorMsg, PartitionReplicaMsg, ReplicaHandle,
    ReplicaManagerArgs, ReplicaManagerMsg, ReplicaRegistry, ReplicaRole, ReplicaSpec,
    TopicPartition,
};
use rivulet_storage::{AppendOutcome, LogConfig, PartitionId, Store, StoreConfig};

mod common;

use common::batch;

/// Who leads in which epoch, as the controller knows it.
#[derive(Default)]
struct ControllerTable {
    epochs: HashMap<String, (NodeId, i32, i32)>,
    refused: Vec<IsrChange>,
    accepted: Vec<IsrChange>,
}

#[derive(Default)]
struct Fabric {
    registries: Mutex<HashMap<NodeId, ReplicaRegistry>>,
    cut: Mutex<HashSet<NodeId>>,
    controller: Mutex<ControllerTable>,
}

#[derive(Clone)]
struct LoopNet {
    me: NodeId,
    fabric: Arc<Fabric>,
}

impl std::fmt::Debug for LoopNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoopNet({})", self.me)
    }
}

impl ReplicaNetwork for LoopNet {
    fn local_node(&self) -> NodeId {
        self.me
    }

    fn send(&self, to: NodeId, msg: ReplicationMessage) -> bool {
        {
            let cut = self.fabric.cut.lock();
            if cut.contains(&self.me) || cut.contains(&to) {
                return false;
            }
        }
        // Through the wire encoding, as between real nodes.
        let bytes = rivulet_actors::replication::encode(&msg).expect("encode");
        let msg = rivulet_actors::replication::decode(&bytes).expect("round trip");
        let registry = self.fabric.registries.lock().get(&to).cloned();
        let (topic, partition) = msg.topic_partition();
        let tp = TopicPartition::new(topic, partition);
        match registry.and_then(|r| r.get(&tp)) {
            Some(h) => h.actor.cast(PartitionReplicaMsg::Replication(msg)).is_ok(),
            None => {
                if let ReplicationMessage::Append(req) = msg {
                    let resp = ReplicationMessage::AppendResponse(AppendResponse {
                        topic: req.topic.clone(),
                        partition: req.partition,
                        follower: to,
                        leader_epoch: req.leader_epoch,
                        seq: req.seq,
                        log_start_offset: -1,
                        result: AppendResult::NotReplica,
                    });
                    let back = LoopNet {
                        me: to,
                        fabric: self.fabric.clone(),
                    };
                    back.send(req.leader, resp);
                }
                true
            }
        }
    }

    fn change_isr(&self, change: IsrChange) -> BoxFuture<Result<i32, String>> {
        let fabric = self.fabric.clone();
        let cut = fabric.cut.lock().contains(&self.me);
        Box::pin(async move {
            let mut c = fabric.controller.lock();
            if cut {
                c.refused.push(change);
                return Err("controller unreachable".into());
            }
            let key = format!("{}-{}", change.topic, change.partition);
            let (leader, epoch, pe) = c.epochs.get(&key).copied().unwrap_or((0, -1, 0));
            if leader != change.leader || epoch != change.leader_epoch {
                c.refused.push(change);
                return Err("fenced leader epoch".into());
            }
            c.epochs.insert(key, (leader, epoch, pe + 1));
            c.accepted.push(change);
            Ok(pe + 1)
        })
    }
}

struct TestNode {
    _dir: tempfile::TempDir,
    _node: ActorRef<NodeSupervisorMsg>,
    manager: ActorRef<ReplicaManagerMsg>,
    registry: ReplicaRegistry,
}

async fn start_node(id: NodeId, fabric: &Arc<Fabric>) -> TestNode {
    start_node_with(id, fabric, StoreConfig::default()).await
}

async fn start_node_with(id: NodeId, fabric: &Arc<Fabric>, store_cfg: StoreConfig) -> TestNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), store_cfg).expect("store");
    let registry = ReplicaRegistry::default();
    fabric.registries.lock().insert(id, registry.clone());
    let settings = ReplicaSettings {
        replica_lag_max: Duration::from_millis(300),
        ..ReplicaSettings::default()
    };
    let (node, _) = Actor::spawn(
        None,
        NodeSupervisor,
        NodeSupervisorArgs {
            replica_manager: ReplicaManagerArgs {
                store,
                registry: registry.clone(),
                settings,
                node_id: id,
                network: Some(Arc::new(LoopNet {
                    me: id,
                    fabric: fabric.clone(),
                })),
            },
        },
    )
    .await
    .expect("node starts");
    let manager = ractor::call!(node, NodeSupervisorMsg::GetReplicaManager).expect("manager");
    TestNode {
        _dir: dir,
        _node: node,
        manager,
        registry,
    }
}

fn role(leader: NodeId, epoch: i32, replicas: &[NodeId], isr: &[NodeId]) -> ReplicaRole {
    ReplicaRole {
        leader: Some(leader),
        leader_epoch: epoch,
        partition_epoch: 0,
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
    }
}

async fn ensure(node: &TestNode, id: PartitionId, role: ReplicaRole) -> ReplicaHandle {
    ensure_with(node, id, role, LogConfig::default()).await
}

async fn ensure_with(
    node: &TestNode,
    id: PartitionId,
    role: ReplicaRole,
    config: LogConfig,
) -> ReplicaHandle {
    let spec = ReplicaSpec {
        tp: TopicPartition::new("t", 0),
        id,
        config,
        role,
    };
    ractor::call_t!(node.manager, ReplicaManagerMsg::Ensure, 10_000, spec)
        .expect("manager answers")
        .expect("replica starts")
}

async fn append(h: &ReplicaHandle, value: &[u8]) -> i64 {
    let records = batch(value);
    let res = h
        .actor
        .call(
            |reply| PartitionReplicaMsg::Append { records, reply },
            Some(Duration::from_secs(10)),
        )
        .await
        .expect("replica reachable");
    match res {
        CallResult::Success(Ok(AppendOutcome::Appended(info))) => info.base_offset,
        other => panic!("append failed: {other:?}"),
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The record values of a log, in offset order.
fn values(h: &ReplicaHandle) -> Vec<Vec<u8>> {
    let end = h.log.log_end_offset();
    let read = h
        .log
        .read(h.log.log_start_offset(), usize::MAX, end)
        .expect("read");
    let mut out = Vec::new();
    let mut b = &read.records[..];
    while b.len() >= 12 {
        let len = i32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
        let whole = &b[..12 + len];
        // Single-record batches built by `batch` with short values: after the 61-byte batch
        // header come the record length, attributes, timestamp and offset deltas and the key
        // length (one byte each), then the value length (zigzag) and the value.
        let value_len = (whole[66] / 2) as usize;
        out.push(whole[67..67 + value_len].to_vec());
        b = &b[12 + len..];
    }
    out
}

/// Nodes 1 and 2 sharing one partition: node 1 leads it in epoch 1, both are in the ISR.
async fn two_nodes(fabric: &Arc<Fabric>) -> (TestNode, TestNode, PartitionId, ReplicaRole) {
    let (n1, n2) = (start_node(1, fabric).await, start_node(2, fabric).await);
    fabric
        .controller
        .lock()
        .epochs
        .insert("t-0".into(), (1, 1, 0));
    (n1, n2, pid(), role(1, 1, &[1, 2], &[1, 2]))
}

fn pid() -> PartitionId {
    PartitionId {
        topic_id: uuid::Uuid::new_v4(),
        partition: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_copies_the_leader_and_the_high_watermark_follows() {
    let fabric = Arc::new(Fabric::default());
    let (n1, n2, id, r) = two_nodes(&fabric).await;
    let leader = ensure(&n1, id, r.clone()).await;
    let follower = ensure(&n2, id, r).await;
    for i in 0..200 {
        assert_eq!(append(&leader, format!("v{i}").as_bytes()).await, i);
    }
    wait_for("follower to have every record", || {
        follower.log.log_end_offset() == 200
    })
    .await;
    wait_for("high watermark to reach 200", || {
        *leader.high_watermark.borrow() == 200
    })
    .await;
    assert_eq!(values(&leader), values(&follower));
    assert_eq!(values(&follower)[7], b"v7".to_vec());
    assert!(follower.log.latest_epoch() == Some(1));
    drop(n1.registry);
    drop(n2.registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_follower_leaves_the_isr_and_the_high_watermark_moves_on() {
    let fabric = Arc::new(Fabric::default());
    let (n1, n2, id, r) = two_nodes(&fabric).await;
    let leader = ensure(&n1, id, r.clone()).await;
    let follower = ensure(&n2, id, r).await;
    append(&leader, b"a").await;
    wait_for("hw 1", || *leader.high_watermark.borrow() == 1).await;
    fabric.cut.lock().insert(2);
    append(&leader, b"b").await;
    // The follower cannot confirm: the high watermark waits until the ISR shrinks.
    wait_for("ISR to shrink to the leader", || {
        leader.status.borrow().isr == vec![1]
    })
    .await;
    wait_for("hw 2 after the shrink", || {
        *leader.high_watermark.borrow() == 2
    })
    .await;
    fabric.cut.lock().clear();
    wait_for("follower to catch up and rejoin the ISR", || {
        follower.log.log_end_offset() == 2 && leader.status.borrow().isr.len() == 2
    })
    .await;
    let accepted = fabric.controller.lock().accepted.clone();
    assert_eq!(accepted[0].isr, vec![1]);
    assert_eq!(accepted[1].isr, vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_divergent_tail_is_truncated_and_a_deposed_leader_never_commits() {
    let fabric = Arc::new(Fabric::default());
    let (n1, n2, id, r1) = two_nodes(&fabric).await;
    let old = ensure(&n1, id, r1.clone()).await;
    let new = ensure(&n2, id, r1).await;
    for i in 0..10 {
        append(&old, format!("a{i}").as_bytes()).await;
    }
    wait_for("hw 10 with both replicas in sync", || {
        *old.high_watermark.borrow() == 10
            && new.log.log_end_offset() == 10
            && old.status.borrow().isr.len() == 2
    })
    .await;

    // Node 1 is cut off; the controller makes node 2 leader in epoch 2. Node 1 does not hear
    // of it and keeps appending in epoch 1: those records are not committed.
    fabric.cut.lock().insert(1);
    fabric
        .controller
        .lock()
        .epochs
        .insert("t-0".into(), (2, 2, 1));
    ensure(&n2, id, role(2, 2, &[1, 2], &[2])).await;
    wait_for("node 2 leads", || new.is_leader()).await;
    for i in 0..5 {
        append(&old, format!("stale{i}").as_bytes()).await;
    }
    for i in 0..3 {
        append(&new, format!("b{i}").as_bytes()).await;
    }
    wait_for("the old leader to try to shrink its ISR", || {
        !fabric.controller.lock().refused.is_empty() || old.status.borrow().isr.len() == 1
    })
    .await;
    let isr = old.status.borrow().isr.clone();
    assert_eq!(
        isr,
        vec![1, 2],
        "the controller refused the stale shrink; accepted: {:?}",
        fabric.controller.lock().accepted
    );
    assert_eq!(
        *old.high_watermark.borrow(),
        10,
        "a deposed leader committed records"
    );

    // The link heals and node 1 learns its new role: its divergent tail goes away.
    fabric.cut.lock().clear();
    ensure(&n1, id, role(2, 2, &[1, 2], &[2])).await;
    wait_for("node 1 to match node 2", || {
        old.log.log_end_offset() == 13 && values(&old) == values(&new)
    })
    .await;
    let v = values(&old);
    assert_eq!(v[9], b"a9".to_vec());
    assert_eq!(v[10], b"b0".to_vec());
    assert!(v.iter().all(|x| !x.starts_with(b"stale")));
    wait_for("node 1 back in the ISR", || {
        new.status.borrow().isr.len() == 2
    })
    .await;
}

/// DeleteRecords: the leader's log start moves to an offset inside a segment (capped by the
/// high watermark), the follower's follows exactly, and the answer waits until it has
/// (Kafka's low watermark).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_follow_delete_records_inside_a_segment() {
    let fabric = Arc::new(Fabric::default());
    let (n1, n2, id, r) = two_nodes(&fabric).await;
    let leader = ensure_with(&n1, id, r.clone(), LogConfig::default()).await;
    let follower = ensure_with(&n2, id, r, LogConfig::default()).await;
    for i in 0..10 {
        append(&leader, format!("v{i}").as_bytes()).await;
    }
    wait_for("high watermark to reach 10", || {
        *leader.high_watermark.borrow() == 10 && follower.log.log_end_offset() == 10
    })
    .await;
    let delete = |h: &ReplicaHandle, offset: i64| {
        let actor = h.actor.clone();
        async move {
            ractor::call_t!(
                actor,
                |reply| PartitionReplicaMsg::DeleteRecords { offset, reply },
                10_000
            )
            .expect("replica answers")
        }
    };
    // The follower cannot confirm its log start: the leader's moves, the answer waits.
    fabric.cut.lock().insert(2);
    let unconfirmed = leader
        .actor
        .call(
            |reply| PartitionReplicaMsg::DeleteRecords { offset: 7, reply },
            Some(Duration::from_millis(700)),
        )
        .await
        .expect("replica reachable");
    assert!(
        matches!(unconfirmed, CallResult::Timeout),
        "answered while the follower was cut off: {unconfirmed:?}"
    );
    assert_eq!(leader.log.log_start_offset(), 7);
    assert_eq!(follower.log.log_start_offset(), 0);
    let pending = tokio::spawn(delete(&leader, 7));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished(), "still waiting for the follower");
    fabric.cut.lock().clear();
    assert_eq!(
        pending.await.expect("task").expect("deleted"),
        7,
        "the low watermark once the follower took the new start"
    );
    assert_eq!(follower.log.log_start_offset(), 7);
    assert_eq!(delete(&leader, 7).await.expect("deleted"), 7);
    assert_eq!(leader.log.log_start_offset(), 7);
    assert_eq!(
        leader.log.segment_count(),
        1,
        "one segment: the start is logical"
    );
    let past_hw = delete(&leader, 11).await;
    assert!(
        matches!(
            past_hw,
            Err(rivulet_actors::AppendError::Rejected(
                rivulet_storage::StorageError::OffsetOutOfRange { .. }
            ))
        ),
        "{past_hw:?}"
    );
    assert!(matches!(
        delete(&follower, 8).await,
        Err(rivulet_actors::AppendError::NotLeader { .. })
    ));
    append(&leader, b"after").await;
    wait_for("the follower to take the leader's log start", || {
        follower.log.log_start_offset() == 7 && follower.log.log_end_offset() == 11
    })
    .await;
    // -1 means the high watermark.
    wait_for("high watermark to reach 11", || {
        *leader.high_watermark.borrow() == 11
    })
    .await;
    assert_eq!(delete(&leader, -1).await.expect("deleted"), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_drop_segments_below_the_leaders_log_start() {
    let fabric = Arc::new(Fabric::default());
    let (n1, n2, id, r) = two_nodes(&fabric).await;
    let small = LogConfig {
        segment_bytes_max: 300,
        ..LogConfig::default()
    };
    let leader = ensure_with(&n1, id, r.clone(), small.clone()).await;
    let follower = ensure_with(&n2, id, r, small).await;
    // One batch per replication round, so the follower's segments roll like the leader's
    // (a follower appends whatever one request carries into its active segment).
    for i in 0..60 {
        append(&leader, format!("v{i}").as_bytes()).await;
        wait_for("the follower to catch up", || {
            follower.log.log_end_offset() == i + 1
        })
        .await;
    }
    assert!(
        follower.log.segment_count() > 3,
        "small segments roll on the follower too"
    );
    wait_for("high watermark to reach 60", || {
        *leader.high_watermark.borrow() == 60 && follower.log.log_end_offset() == 60
    })
    .await;
    let start = ractor::call_t!(
        leader.actor,
        |reply| PartitionReplicaMsg::DeleteSegmentsBefore { offset: 40, reply },
        10_000
    )
    .expect("leader answers")
    .expect("segments dropped");
    assert!(start > 0 && start <= 40, "leader log start {start}");
    assert_eq!(leader.log.log_start_offset(), start);
    // The next replication round carries the leader's log start to the follower.
    append(&leader, b"after").await;
    wait_for("the follower to drop its old segments", || {
        let s = follower.log.log_start_offset();
        s > 0 && s <= start && follower.log.log_end_offset() == 61
    })
    .await;
    // What the follower kept is intact and equal to the leader's from there on.
    let from = follower.log.log_start_offset().max(start);
    let read = |h: &ReplicaHandle| h.log.read(from, usize::MAX, 61).expect("read").records;
    assert_eq!(read(&leader), read(&follower));
    // A follower never drops what the leader still has: asking a follower is refused.
    let refused = ractor::call_t!(
        follower.actor,
        |reply| PartitionReplicaMsg::DeleteSegmentsBefore { offset: 61, reply },
        10_000
    )
    .expect("follower answers");
    assert!(refused.is_err());
}

/// A follower whose disk is below its free-space floor refuses replicated batches without
/// writing or crashing (docs/semantics.md, "Full disk"): it leaves the ISR, and the leader's
/// high watermark moves on without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_out_of_disk_space_refuses_stays_up_and_leaves_the_isr() {
    let fabric = Arc::new(Fabric::default());
    let n1 = start_node(1, &fabric).await;
    let full = StoreConfig {
        free_bytes_min: u64::MAX,
        ..StoreConfig::default()
    };
    let n2 = start_node_with(2, &fabric, full).await;
    let id = pid();
    let r = role(1, 1, &[1, 2], &[1, 2]);
    fabric
        .controller
        .lock()
        .epochs
        .insert("t-0".into(), (1, 1, 0));
    let leader = ensure(&n1, id, r.clone()).await;
    let follower = ensure(&n2, id, r).await;
    append(&leader, b"a").await;
    append(&leader, b"b").await;
    wait_for("ISR to shrink to the leader", || {
        leader.status.borrow().isr == vec![1]
    })
    .await;
    wait_for("hw 2 after the shrink", || {
        *leader.high_watermark.borrow() == 2
    })
    .await;
    assert_eq!(
        follower.log.log_end_offset(),
        0,
        "the follower wrote nothing"
    );
    let same = n2
        .registry
        .get(&TopicPartition::new("t", 0))
        .is_some_and(|h| h.actor.get_id() == follower.actor.get_id());
    assert!(same, "the follower replica was not restarted");
}

/// The committed-write operation (`rivulet_actors::write`) on a real leader and follower: an
/// `acks=all` write returns once the whole ISR has it, and every way it can fail comes back as
/// its own typed error (the broker turns them into Kafka codes in one place).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_write_waits_for_the_isr_and_types_each_failure() {
    use rivulet_actors::write::{self, Acks, WriteError, WriteOptions, WriteStage};
    let fabric = Arc::new(Fabric::default());
    let (n1, n2, id, r) = two_nodes(&fabric).await;
    let leader = ensure(&n1, id, r.clone()).await;
    let follower = ensure(&n2, id, r).await;
    let all = |min_isr: i64, timeout_ms: u64| WriteOptions {
        min_insync_replicas: min_isr,
        ..WriteOptions::new(Acks::All, Duration::from_millis(timeout_ms))
    };

    append(&leader, b"a").await;
    wait_for("the follower in sync", || {
        follower.log.log_end_offset() == 1 && leader.status.borrow().isr.len() == 2
    })
    .await;
    let w = write::append(&leader, batch(b"a2"), &all(2, 10_000))
        .await
        .expect("acks=all with both replicas in sync");
    assert_eq!((w.base_offset, w.last_offset, w.records), (1, 1, 1));
    assert!(
        *leader.high_watermark.borrow() >= 2,
        "acknowledged below the HW"
    );
    assert_eq!(
        follower.log.log_end_offset(),
        2,
        "acknowledged before the follower had it"
    );
    assert_eq!(
        w.log_append_time_ms, None,
        "a CreateTime topic has no append time"
    );

    // Refused before the append: wrong epoch, lapsed lease.
    let stale = WriteOptions {
        leader_epoch: Some(7),
        ..all(1, 10_000)
    };
    let e = write::append(&leader, batch(b"x"), &stale)
        .await
        .unwrap_err();
    assert!(matches!(e, WriteError::NotLeader { .. }), "{e:?}");
    let (_lease_tx, lapsed) = tokio::sync::watch::channel(false);
    let no_lease = WriteOptions {
        lease: Some(lapsed),
        ..all(1, 10_000)
    };
    let e = write::append(&leader, batch(b"x"), &no_lease)
        .await
        .unwrap_err();
    assert!(matches!(e, WriteError::NotLeader { .. }), "{e:?}");
    assert_eq!(
        leader.log.log_end_offset(),
        2,
        "a refused write wrote nothing"
    );

    // The follower is cut off. Within the replica lag the ISR still holds it: the wait
    // times out (written, not acknowledged).
    fabric.cut.lock().insert(2);
    let e = write::append(&leader, batch(b"b"), &all(2, 50))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            WriteError::TimedOut {
                stage: WriteStage::Replication,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.written() && e.is_retriable());
    // A longer wait sees the ISR shrink to the leader: the HW passes the batch, but with
    // fewer in-sync replicas than the minimum.
    let e = write::append(&leader, batch(b"c"), &all(2, 10_000))
        .await
        .unwrap_err();
    assert!(
        matches!(e, WriteError::NotEnoughReplicasAfterAppend { isr: 1, .. }),
        "{e:?}"
    );
    // Now refused before the append; acks=1 still works.
    let end = leader.log.log_end_offset();
    let e = write::append(&leader, batch(b"d"), &all(2, 10_000))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            WriteError::NotEnoughReplicas {
                min_insync_replicas: 2,
                isr: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.written());
    assert_eq!(
        leader.log.log_end_offset(),
        end,
        "NotEnoughReplicas wrote nothing"
    );
    let one = WriteOptions::new(Acks::Leader, Duration::from_secs(10));
    let w = write::append(&leader, batch(b"e"), &one)
        .await
        .expect("acks=1");
    assert_eq!(w.base_offset, end);
}

/// A transaction marker goes through the committed-write path: written by the leader (the
/// only way a control batch gets in), acknowledged once the ISR has it, and the follower
/// derives the same open transactions, last stable offset and aborted index from it, so a
/// failover keeps them. A marker of a fenced producer epoch is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_markers_replicate_and_followers_agree_on_the_lso() {
    use rivulet_actors::write::{self, Acks, WriteError, WriteOptions};
    use rivulet_storage::batch::control::TxnMarker;
    use rivulet_storage::batch::BatchBuilder;
    use rivulet_storage::{AbortedTransaction, StorageError};
    let txn_batch = |producer_id: i64, seq: i32| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        bytes::Bytes::from(
            BatchBuilder::new(now)
                .attributes(1 << 4)
                .producer(producer_id, 0, seq)
                .record(now, None, Some(b"t"))
                .build(),
        )
    };
    let marker = |producer_id: i64, producer_epoch: i16, commit: bool| TxnMarker {
        producer_id,
        producer_epoch,
        coordinator_epoch: 0,
        commit,
    };
    let fabric = Arc::new(Fabric::default());
    let (n1, n2, id, r) = two_nodes(&fabric).await;
    let leader = ensure(&n1, id, r.clone()).await;
    let follower = ensure(&n2, id, r).await;
    let all = WriteOptions {
        min_insync_replicas: 2,
        ..WriteOptions::new(Acks::All, Duration::from_secs(10))
    };
    append(&leader, b"plain").await; // 0
    wait_for("the follower in sync", || {
        follower.log.log_end_offset() == 1 && leader.status.borrow().isr.len() == 2
    })
    .await;
    write::append(&leader, txn_batch(7, 0), &all)
        .await
        .expect("txn 7"); // 1
    write::append(&leader, txn_batch(8, 0), &all)
        .await
        .expect("txn 8"); // 2
    assert_eq!(leader.high_watermark(), 3);
    assert_eq!(
        leader.last_stable_offset(),
        1,
        "producer 7's transaction is open"
    );

    let w = write::write_marker_to(&n1.registry, &leader.tp, marker(7, 0, false), &all)
        .await
        .expect("abort marker acknowledged by the ISR");
    assert_eq!((w.base_offset, w.last_offset, w.records), (3, 3, 1));
    assert!(leader.high_watermark() >= 4, "acknowledged below the HW");
    assert_eq!(
        follower.log.log_end_offset(),
        4,
        "acknowledged before the follower had it"
    );
    assert_eq!(leader.last_stable_offset(), 2, "producer 8's is still open");
    let aborted = vec![AbortedTransaction {
        producer_id: 7,
        first_offset: 1,
        last_offset: 3,
    }];
    for h in [&leader, &follower] {
        assert_eq!(
            h.log.aborted_transactions(0, 4).unwrap(),
            aborted,
            "{}",
            h.tp
        );
        assert_eq!(h.log.last_stable_offset(4), 2, "{}", h.tp);
    }

    // A stale producer epoch is fenced; nothing is written.
    let e = write::write_marker(&leader, marker(8, -1, true), &all)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            WriteError::Rejected(StorageError::InvalidProducerEpoch { .. })
        ),
        "{e:?}"
    );
    assert!(!e.written());
    // Only the leader writes markers.
    let e = write::write_marker(&follower, marker(8, 0, true), &all)
        .await
        .unwrap_err();
    assert!(matches!(e, WriteError::NotLeader { .. }), "{e:?}");
    let w = write::write_marker(&leader, marker(8, 0, true), &all)
        .await
        .expect("commit marker");
    assert_eq!(w.base_offset, 4);
    wait_for("the follower's high watermark past the commit", || {
        *follower.high_watermark.borrow() == 5
    })
    .await;
    assert_eq!(leader.last_stable_offset(), 5);
    assert_eq!(follower.last_stable_offset(), 5, "the follower agrees");
}
