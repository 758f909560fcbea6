//! What the hosts of an internal topic share (the group manager on `__consumer_offsets`, the
//! transaction manager on `__transaction_state`): being *told* which of the topic's
//! partitions this node leads, and at which epoch, and reading a newly led partition once
//! its log is committed.
//!
//! ```text
//!  ReplicaRegistry::changes() ───────┐   (a replica of the node started, restarted, stopped)
//!  ReplicaHandle::status, for each   ├─▶ leadership task: which partitions of `topic` are led
//!   local replica of `topic` ────────┘   here, by which replica actor, at which epoch? diff
//!                                        with what it told last ─▶ tell(Leadership)
//!  host: led ─▶ unload what it hosted under the old leadership ─▶ read_committed ─▶ serve
//!        not led ─▶ unload
//! ```
//!
//! Nothing polls: the task sleeps until the registry or one of the topic's replica statuses
//! changes. A host hears `led: Some(..)` when a partition becomes led here, or is led at a
//! new epoch, or by a new replica actor (a restarted one, whose handle the old one's
//! coordinators must not keep using), and `led: None` when the partition is not led here any
//! more (lost, or its replica stopped or was removed).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorId;
use rivulet_storage::batch::control::TxnMarker;
use rivulet_storage::batch::{decode_records, BatchHeader, HEADER_LEN};
use rivulet_storage::PartitionLog;
use tokio::task::JoinHandle;

use crate::registry::{ReplicaHandle, ReplicaRegistry};
use crate::write::{wait_committed, CommitWait, WriteError};

/// How long a host waits before it loads a partition again after a failed load (the
/// leadership is unchanged, or it would have been told).
pub const LOAD_RETRY: Duration = Duration::from_millis(100);

/// A partition of the watched topic is led here, by `replica`, in `epoch`.
#[derive(Debug, Clone)]
pub struct Led {
    /// The local replica, leader in `epoch` when this was told.
    pub replica: ReplicaHandle,
    /// The leader epoch that anything hosted on the partition serves under.
    pub epoch: i32,
}

/// A change of leadership of one partition of the watched topic.
#[derive(Debug, Clone)]
pub struct Leadership {
    /// The partition.
    pub partition: i32,
    /// `Some` when led here (newly, or at a new epoch, or by a new replica actor); `None`
    /// when not led here any more.
    pub led: Option<Led>,
}

/// What a host was last told is led here, and what to do about a change.
#[derive(Debug, Default)]
pub struct LedPartitions {
    led: HashMap<i32, Led>,
}

impl LedPartitions {
    /// Records a change. The host unloads the partition first (whatever ran under the old
    /// leadership must not write in an epoch that is over), then loads what this returns.
    pub fn apply(&mut self, change: Leadership) -> Option<Led> {
        match change.led {
            Some(led) => {
                self.led.insert(change.partition, led.clone());
                Some(led)
            }
            None => {
                self.led.remove(&change.partition);
                None
            }
        }
    }

    /// The leadership of `partition` as last told.
    pub fn get(&self, partition: i32) -> Option<Led> {
        self.led.get(&partition).cloned()
    }

    /// The leadership of `partition` if it is still the one of `epoch` (a failed load of it
    /// is retried only then).
    pub fn still(&self, partition: i32, epoch: i32) -> Option<Led> {
        self.get(partition).filter(|l| l.epoch == epoch)
    }
}

/// Why a host unloads a partition on `change`, for its log.
pub fn unload_reason(change: &Leadership) -> &'static str {
    if change.led.is_some() {
        "led at a new epoch"
    } else {
        "not led here any more"
    }
}

/// The task behind [`watch_leadership`]; dropping it stops the task.
#[derive(Debug)]
pub struct LeadershipWatch {
    task: JoinHandle<()>,
}

impl Drop for LeadershipWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Tells `tell` every leadership change of the local replicas of `topic`, starting with the
/// partitions led here now. Stops when `tell` returns false (its owner is gone) or when the
/// returned [`LeadershipWatch`] is dropped. Needs a tokio runtime.
pub fn watch_leadership(
    topic: &str,
    registry: ReplicaRegistry,
    mut tell: impl FnMut(Leadership) -> bool + Send + 'static,
) -> LeadershipWatch {
    let topic: Arc<str> = topic.into();
    let task = tokio::spawn(async move {
        let mut changes = registry.changes();
        // What the owner was told is led: partition -> (replica actor, epoch).
        let mut told: HashMap<i32, (ActorId, i32)> = HashMap::new();
        loop {
            // Marked seen before the registry is read: a change after this wakes the wait.
            changes.borrow_and_update();
            let mut statuses = Vec::new();
            let mut led_now: BTreeMap<i32, Led> = BTreeMap::new();
            for replica in registry.replicas_of(&topic) {
                let mut status = replica.status.clone();
                // The actor stopped: it leads nothing, whatever it said last. Its entry leaves
                // the registry soon, and that wakes the wait again.
                if status.has_changed().is_err() {
                    continue;
                }
                let (is_leader, epoch) = {
                    let st = status.borrow_and_update();
                    (st.is_leader, st.leader_epoch)
                };
                if is_leader {
                    led_now.insert(replica.tp.partition, Led { replica, epoch });
                }
                statuses.push(status);
            }
            let lost: Vec<i32> = told
                .keys()
                .filter(|p| !led_now.contains_key(p))
                .copied()
                .collect();
            for partition in lost {
                told.remove(&partition);
                if !tell(Leadership {
                    partition,
                    led: None,
                }) {
                    return;
                }
            }
            for (partition, led) in led_now {
                let now = (led.replica.actor.get_id(), led.epoch);
                if told.get(&partition) == Some(&now) {
                    continue;
                }
                told.insert(partition, now);
                if !tell(Leadership {
                    partition,
                    led: Some(led),
                }) {
                    return;
                }
            }
            // Sleep until the registry or one of the statuses changes (a closed status
            // channel ends its wait too: the next pass drops that replica).
            let mut waits: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = statuses
                .into_iter()
                .map(|mut s| -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
                    Box::pin(async move {
                        let _ = s.changed().await;
                    })
                })
                .collect();
            waits.push(Box::pin(async {
                // The registry holds the sender, and this task holds the registry.
                let _ = changes.changed().await;
            }));
            futures::future::select_all(waits).await;
        }
    });
    LeadershipWatch { task }
}

/// Reads a newly led partition with `read` (on the blocking pool), then waits, with no
/// deadline, until the high watermark covers what was read (a new leader's tail may not be
/// committed yet) while the replica stays leader in `led.epoch`. `end` is one past the last
/// offset `read` saw.
pub async fn read_committed<T: Send + 'static>(
    led: &Led,
    read: fn(&PartitionLog) -> rivulet_storage::Result<T>,
    end: fn(&T) -> i64,
) -> Result<T, String> {
    let log = led.replica.log.clone();
    let loaded = tokio::task::spawn_blocking(move || read(&log))
        .await
        .map_err(|e| format!("load task failed: {e}"))?
        .map_err(|e| format!("reading {}: {e}", led.replica.tp))?;
    let wait = CommitWait {
        leader_epoch: led.epoch,
        end: end(&loaded),
        min_insync_replicas: None,
        lease: None,
        timeout: None,
    };
    match wait_committed(&led.replica, wait, Duration::ZERO).await {
        Ok(()) => Ok(loaded),
        Err(WriteError::LeadershipMoved { .. }) => Err("leadership moved while loading".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// One entry of a hosted partition, in log order (see [`replay_entries`]).
#[derive(Debug)]
pub enum Entry<'a> {
    /// A record the host wrote: key and value.
    Record(Option<&'a [u8]>, Option<&'a [u8]>),
    /// A transaction marker (the group coordinators learn a transaction's outcome from the
    /// marker on their offsets partition, as Kafka's do).
    Marker(TxnMarker),
}

/// Reads a hosted partition from its start to its end, handing each record's key and value to
/// `apply` in log order (blocking: run it on the blocking pool). Returns the log end offset the
/// read reached: the state is only safe to serve once the high watermark covers it.
pub fn replay(
    log: &PartitionLog,
    mut apply: impl FnMut(Option<&[u8]>, Option<&[u8]>),
) -> rivulet_storage::Result<i64> {
    replay_entries(log, |e| {
        if let Entry::Record(k, v) = e {
            apply(k, v);
        }
    })
}

/// [`replay`], with the transaction markers too.
pub fn replay_entries(
    log: &PartitionLog,
    mut apply: impl FnMut(Entry<'_>),
) -> rivulet_storage::Result<i64> {
    let mut at = log.log_start_offset();
    let end = log.log_end_offset();
    while at < end {
        let read = log.read(at, 4 << 20, end)?;
        if read.records.is_empty() {
            break;
        }
        // Move by batches, not records: a compacted log holds empty batches (a producer's
        // last, an epoch's first) and offset gaps.
        let mut next = at;
        let mut rest: &[u8] = &read.records;
        while rest.len() >= HEADER_LEN {
            let h = BatchHeader::parse(rest)?;
            let total = h.total_len().min(rest.len());
            let batch = &rest[..total];
            rest = &rest[total..];
            next = next.max(h.next_offset());
            if h.is_control() {
                if let Some(m) = TxnMarker::decode(batch)? {
                    apply(Entry::Marker(m));
                }
                continue;
            }
            for r in decode_records(batch)? {
                apply(Entry::Record(r.key.as_deref(), r.value.as_deref()));
            }
        }
        // Always move forward.
        at = next.max(at + 1);
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use rivulet_storage::batch::BatchBuilder;
    use rivulet_storage::{CleanupPolicy, LogConfig, PartitionId, Store, StoreConfig};

    /// A compacted hosting log (gaps, empty batches kept for producer state) replays to the
    /// same latest value per key as before cleaning.
    #[test]
    fn replay_reads_a_compacted_log_to_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let cfg = LogConfig {
            segment_bytes_max: 1024,
            cleanup_policy: CleanupPolicy::COMPACT,
            dirty_ratio_min_permille: 0,
            ..LogConfig::default()
        };
        let id = PartitionId {
            topic_id: uuid::Uuid::from_u128(9),
            partition: 0,
        };
        let log = store.open_log(id, cfg).unwrap();
        let now = 1_700_000_000_000;
        for i in 0..120i32 {
            // Idempotent batches whose records all get superseded: empty batches stay.
            let b = BatchBuilder::new(now)
                .producer(5, 0, i)
                .record(
                    now,
                    Some(format!("k{}", i % 3).as_bytes()),
                    Some(format!("v{i}").as_bytes()),
                )
                .build();
            log.append_as_leader_at(&b, 0, now).unwrap();
        }
        let replayed = |log| {
            let mut latest = std::collections::BTreeMap::new();
            let end = super::replay(log, |k, v| {
                latest.insert(k.unwrap().to_vec(), v.map(<[u8]>::to_vec));
            })
            .unwrap();
            (latest, end)
        };
        let before = replayed(&log);
        assert!(
            log.clean(log.log_end_offset(), now)
                .unwrap()
                .segments_cleaned
                > 0
        );
        assert_eq!(replayed(&log), before);
        assert_eq!(before.0.len(), 3);
    }
}
