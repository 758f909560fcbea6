//! The replica manager restarts a crashed partition replica from disk while the node keeps
//! serving its other partitions (docs/semantics.md, "Supervision").

use std::time::{Duration, Instant};

use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use rivulet_actors::hosting::{watch_leadership, Leadership};
use rivulet_actors::manager::ReplicaSettings;
use rivulet_actors::{
    NodeSupervisor, NodeSupervisorArgs, NodeSupervisorMsg, PartitionReplicaMsg, ReplicaHandle,
    ReplicaManagerArgs, ReplicaManagerMsg, ReplicaRegistry, ReplicaRole, ReplicaSpec,
    TopicPartition,
};
use rivulet_storage::{AppendOutcome, LogConfig, PartitionId, Store, StoreConfig};

mod common;

use common::batch;

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

fn spec(name: &str, partition: i32) -> ReplicaSpec {
    ReplicaSpec {
        tp: TopicPartition::new(name, partition),
        id: PartitionId {
            topic_id: uuid::Uuid::new_v4(),
            partition,
        },
        config: LogConfig::default(),
        role: ReplicaRole::sole_leader(1, 0),
    }
}

async fn ensure(manager: &ActorRef<ReplicaManagerMsg>, spec: ReplicaSpec) -> ReplicaHandle {
    ractor::call_t!(manager, ReplicaManagerMsg::Ensure, 10_000, spec)
        .expect("manager answers")
        .expect("replica starts")
}

/// Starts the actor tree on `store`: the node supervisor, its replica manager and registry.
async fn start_node(
    store: Store,
    settings: ReplicaSettings,
) -> (
    ActorRef<NodeSupervisorMsg>,
    ActorRef<ReplicaManagerMsg>,
    ReplicaRegistry,
) {
    let registry = ReplicaRegistry::default();
    let (node, _) = Actor::spawn(
        None,
        NodeSupervisor,
        NodeSupervisorArgs {
            replica_manager: ReplicaManagerArgs {
                store,
                registry: registry.clone(),
                settings,
                node_id: 1,
                network: None,
            },
        },
    )
    .await
    .expect("node starts");
    let manager = ractor::call!(node, NodeSupervisorMsg::GetReplicaManager).expect("manager");
    (node, manager, registry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_replica_restarts_from_disk_while_others_keep_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("store opens");
    let settings = ReplicaSettings {
        restart_backoff: Duration::from_millis(20),
        ..Default::default()
    };
    let (node, manager, registry) = start_node(store, settings).await;

    let a = ensure(&manager, spec("orders", 0)).await;
    let b = ensure(&manager, spec("orders", 1)).await;
    assert_eq!(append(&a, b"first").await, 0);
    assert_eq!(append(&a, b"second").await, 1);
    assert_eq!(append(&b, b"other").await, 0);

    let crashed_id = a.actor.get_id();
    a.actor.kill();

    // The other partition is served throughout.
    assert_eq!(append(&b, b"other-2").await, 1);

    let deadline = Instant::now() + Duration::from_secs(10);
    let restarted = loop {
        if let Some(h) = registry.get(&a.tp) {
            if h.actor.get_id() != crashed_id {
                break h;
            }
        }
        assert!(
            Instant::now() < deadline,
            "replica was not restarted within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Recovered from disk: the log continues where it was.
    assert_eq!(restarted.log.log_end_offset(), 2);
    assert_eq!(*restarted.high_watermark.borrow(), 2);
    assert_eq!(append(&restarted, b"third").await, 2);
    let read = restarted.log.read(0, 1 << 20, 3).expect("read");
    assert!(read.records.windows(5).any(|w| w == b"first"));
    assert!(read.records.windows(5).any(|w| w == b"third"));
    assert_eq!(
        registry.get(&b.tp).map(|h| h.actor.get_id()),
        Some(b.actor.get_id())
    );

    node.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_replica_is_not_restarted_and_its_data_is_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("store opens");
    let (node, manager, registry) = start_node(store, ReplicaSettings::default()).await;
    let s = spec("gone", 0);
    let h = ensure(&manager, s.clone()).await;
    assert_eq!(append(&h, b"x").await, 0);
    let tp = s.tp.clone();
    ractor::call_t!(
        manager,
        |reply| ReplicaManagerMsg::Remove {
            tp,
            delete_data: true,
            reply
        },
        10_000
    )
    .expect("manager answers")
    .expect("removed");
    assert!(registry.get(&s.tp).is_none());
    // Starting it again gives an empty log: the data went with the replica.
    let again = ensure(&manager, s).await;
    assert_eq!(again.log.log_end_offset(), 0);
    node.stop(None);
}

/// Waits until the registry holds a replica of `tp` other than `old`.
async fn restarted(
    registry: &ReplicaRegistry,
    tp: &TopicPartition,
    old: ractor::ActorId,
) -> ReplicaHandle {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(h) = registry.get(tp) {
            if h.actor.get_id() != old {
                return h;
            }
        }
        assert!(
            Instant::now() < deadline,
            "replica was not restarted within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A replica that used up its restart budget is still restarted, at the slower pace: the
/// cause (a full disk, say) may go away, and the partition must not stay offline for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_past_its_restart_budget_is_retried_slowly_not_abandoned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("store opens");
    let settings = ReplicaSettings {
        restart_backoff: Duration::from_millis(20),
        restarts_max: 1,
        restart_backoff_max: Duration::from_millis(300),
        ..Default::default()
    };
    let (node, manager, registry) = start_node(store, settings).await;
    let a = ensure(&manager, spec("orders", 0)).await;
    assert_eq!(append(&a, b"first").await, 0);

    a.actor.kill();
    let second = restarted(&registry, &a.tp, a.actor.get_id()).await;
    // The budget is used up now; this failure used to leave the partition offline.
    let killed_at = Instant::now();
    second.actor.kill();
    let third = restarted(&registry, &a.tp, second.actor.get_id()).await;
    assert!(
        killed_at.elapsed() >= Duration::from_millis(250),
        "restarted after {:?}, before the slow backoff",
        killed_at.elapsed()
    );
    assert_eq!(append(&third, b"second").await, 1);
    node.stop(None);
}

/// The next leadership change told to a host, or a failure after 10 s.
async fn told(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Leadership>,
) -> (i32, Option<(ractor::ActorId, i32)>) {
    let l = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a leadership change within 10 s")
        .expect("watch running");
    (
        l.partition,
        l.led.map(|led| (led.replica.actor.get_id(), led.epoch)),
    )
}

/// A host of an internal topic is told (not polling) when a partition becomes led here, is
/// led at a new epoch, is led by a restarted replica actor, and is no longer led.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_are_told_every_leadership_change_of_their_topic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreConfig::default()).expect("store opens");
    let settings = ReplicaSettings {
        restart_backoff: Duration::from_millis(20),
        ..Default::default()
    };
    let (node, manager, registry) = start_node(store, settings).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _watch = watch_leadership("__hosted", registry.clone(), move |l| tx.send(l).is_ok());

    // Another topic's replica is none of this host's business.
    ensure(&manager, spec("other", 0)).await;
    let s = spec("__hosted", 3);
    let h = ensure(&manager, s.clone()).await;
    assert_eq!(told(&mut rx).await, (3, Some((h.actor.get_id(), 0))));

    let bumped = ReplicaSpec {
        role: ReplicaRole::sole_leader(1, 1),
        ..s.clone()
    };
    let h = ensure(&manager, bumped).await;
    assert_eq!(told(&mut rx).await, (3, Some((h.actor.get_id(), 1))));

    // A restarted actor is a new leadership even at the same epoch: the old handle is dead.
    let crashed = h.actor.get_id();
    h.actor.kill();
    let h = restarted(&registry, &s.tp, crashed).await;
    let mut change = told(&mut rx).await;
    if change.1.is_none() {
        change = told(&mut rx).await; // it was seen stopped before it was seen restarted
    }
    assert_eq!(change, (3, Some((h.actor.get_id(), 1))));

    let tp = s.tp.clone();
    ractor::call_t!(
        manager,
        |reply| ReplicaManagerMsg::Remove {
            tp,
            delete_data: true,
            reply
        },
        10_000
    )
    .expect("manager answers")
    .expect("removed");
    assert_eq!(told(&mut rx).await, (3, None));
    assert!(rx.try_recv().is_err(), "nothing else was told");
    node.stop(None);
}
