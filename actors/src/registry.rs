//! The shared map from topic-partition to the replica that serves it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::RwLock;
use ractor::ActorRef;
use rivulet_storage::{PartitionId, PartitionLog};
use tokio::sync::watch;

use crate::replica::{PartitionReplicaMsg, ReplicaStatus};

/// A topic name and partition index.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// Builds a topic-partition.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Debug for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Everything the broker needs to serve one local replica.
#[derive(Clone, Debug)]
pub struct ReplicaHandle {
    /// Which partition.
    pub tp: TopicPartition,
    /// Storage identity of the partition.
    pub id: PartitionId,
    /// The replica actor: the only writer of the log.
    pub actor: ActorRef<PartitionReplicaMsg>,
    /// A read handle on the log (reads run concurrently with appends).
    pub log: PartitionLog,
    /// The high watermark: consumers read below it; it changes after every commit.
    pub high_watermark: watch::Receiver<i64>,
    /// The replica's role (leader or follower, epoch, ISR).
    pub status: watch::Receiver<ReplicaStatus>,
}

impl ReplicaHandle {
    /// The leader epoch this replica serves under now.
    pub fn leader_epoch(&self) -> i32 {
        self.status.borrow().leader_epoch
    }

    /// True while this replica is the partition's leader.
    pub fn is_leader(&self) -> bool {
        self.status.borrow().is_leader
    }

    /// The high watermark now.
    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// The last stable offset now: the first offset of the oldest transaction not yet
    /// decided and replicated, capped at the high watermark (`read_committed` readers stop
    /// here; see [`PartitionLog::last_stable_offset`]).
    pub fn last_stable_offset(&self) -> i64 {
        self.log.last_stable_offset(self.high_watermark())
    }
}

/// Shared, cheap-to-clone registry of local replicas. Written only by the replica manager.
#[derive(Clone, Debug)]
pub struct ReplicaRegistry {
    inner: Arc<RwLock<HashMap<TopicPartition, ReplicaHandle>>>,
    /// Bumped on every insert and remove, so watchers ([`crate::hosting`]) are told rather
    /// than poll.
    changes: Arc<watch::Sender<()>>,
}

impl Default for ReplicaRegistry {
    fn default() -> Self {
        ReplicaRegistry {
            inner: Arc::default(),
            changes: Arc::new(watch::channel(()).0),
        }
    }
}

impl ReplicaRegistry {
    /// A receiver that sees a change whenever a replica is registered or removed (a
    /// replica's role changes arrive on its own [`ReplicaHandle::status`]).
    pub fn changes(&self) -> watch::Receiver<()> {
        self.changes.subscribe()
    }

    /// The registered replicas of `topic`.
    pub fn replicas_of(&self, topic: &str) -> Vec<ReplicaHandle> {
        self.inner
            .read()
            .values()
            .filter(|h| &*h.tp.topic == topic)
            .cloned()
            .collect()
    }

    /// The replica for `tp`, if this node hosts a running one.
    pub fn get(&self, tp: &TopicPartition) -> Option<ReplicaHandle> {
        self.inner.read().get(tp).cloned()
    }

    /// True if this node runs `tp`'s replica as leader in `leader_epoch` (what Metadata may
    /// advertise). Does not clone the handle: Metadata asks this for every partition.
    pub fn leads(&self, tp: &TopicPartition, leader_epoch: i32) -> bool {
        self.inner.read().get(tp).is_some_and(|h| {
            let st = h.status.borrow();
            st.is_leader && st.leader_epoch == leader_epoch
        })
    }

    /// Number of registered replicas.
    pub fn len(&self) -> usize {
        self.inner.read().len()
    }

    /// True when no replica is registered.
    pub fn is_empty(&self) -> bool {
        self.inner.read().is_empty()
    }

    /// All registered topic-partitions.
    pub fn partitions(&self) -> Vec<TopicPartition> {
        self.inner.read().keys().cloned().collect()
    }

    pub(crate) fn insert(&self, handle: ReplicaHandle) {
        self.inner.write().insert(handle.tp.clone(), handle);
        // After the lock is released: a woken watcher reads the map at once.
        self.changes.send_replace(());
    }

    pub(crate) fn remove(&self, tp: &TopicPartition) -> Option<ReplicaHandle> {
        let removed = self.inner.write().remove(tp);
        if removed.is_some() {
            self.changes.send_replace(());
        }
        removed
    }
}
