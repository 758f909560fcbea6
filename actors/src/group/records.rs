//! What the coordinators write to `__consumer_offsets`, and how a partition is read back.
//!
//! Every record is a key/value pair; the latest value of a key wins and a null value deletes
//! the key (a tombstone), so reading a partition from its start rebuilds the state:
//!
//! ```text
//! key   = [version 1][kind 1][u16 group len][group]                         kind 2: group state
//!       = [version 1][kind 1][u16 group len][group][u16 topic len][topic][i32 partition]
//!                                                                          kind 1: committed offset
//!       = [version 1][kind 1][u16 group len][group][u16 topic len][topic][i32 partition][i64 producer id]
//!                                                                          kind 3: offset committed in a
//!                                                                          transaction (TxnOffsetCommit)
//! value = JSON (CommittedOffset, or GroupSnapshot), or null (deleted)
//! ```
//!
//! A kind-3 record is pending: it becomes the group's committed offset only when a commit
//! marker of its producer id follows it in the same partition, and is dropped at an abort
//! marker (Kafka's group coordinator learns the outcome of a transaction the same way, from the
//! marker the transaction coordinator writes to the offsets partition).
//!
//! JSON keeps the records readable with any Kafka client (`kcat -C -t __consumer_offsets`), and
//! these values are small. Unknown key versions are skipped with a warning, so a newer node's
//! records do not stop an older one from loading.

use std::collections::{BTreeMap, HashMap};

use rivulet_storage::batch::BatchBuilder;
use rivulet_storage::PartitionLog;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::classic::ClassicGroup;
use super::consumer::ConsumerGroup;
use super::types::{CommittedOffset, GroupTopicPartition};
use crate::hosting::Entry;

const KEY_VERSION: u8 = 1;
const KIND_OFFSET: u8 = 1;
const KIND_GROUP: u8 = 2;
const KIND_TXN_OFFSET: u8 = 3;

/// The durable state of a group's membership (either protocol).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum GroupSnapshot {
    /// A classic group.
    Classic(ClassicGroup),
    /// A consumer-protocol group.
    Consumer(ConsumerGroup),
}

/// One key of `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    /// A committed offset.
    Offset {
        /// Group id.
        group: String,
        /// Partition.
        tp: GroupTopicPartition,
    },
    /// A group's membership state.
    Group {
        /// Group id.
        group: String,
    },
    /// An offset committed inside a transaction, pending until its marker.
    TxnOffset {
        /// Group id.
        group: String,
        /// Partition.
        tp: GroupTopicPartition,
        /// The transaction's producer id.
        producer_id: i64,
    },
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

fn get_str(buf: &[u8], at: &mut usize) -> Option<String> {
    let len = usize::from(u16::from_be_bytes(buf.get(*at..*at + 2)?.try_into().ok()?));
    *at += 2;
    let s = std::str::from_utf8(buf.get(*at..*at + len)?)
        .ok()?
        .to_owned();
    *at += len;
    Some(s)
}

impl RecordKey {
    /// Encodes the key.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(KEY_VERSION);
        match self {
            RecordKey::Offset { group, tp } => {
                out.push(KIND_OFFSET);
                put_str(&mut out, group);
                put_str(&mut out, &tp.topic);
                out.extend_from_slice(&tp.partition.to_be_bytes());
            }
            RecordKey::Group { group } => {
                out.push(KIND_GROUP);
                put_str(&mut out, group);
            }
            RecordKey::TxnOffset {
                group,
                tp,
                producer_id,
            } => {
                out.push(KIND_TXN_OFFSET);
                put_str(&mut out, group);
                put_str(&mut out, &tp.topic);
                out.extend_from_slice(&tp.partition.to_be_bytes());
                out.extend_from_slice(&producer_id.to_be_bytes());
            }
        }
        out
    }

    /// Decodes a key; `None` for a key this version does not know.
    pub fn decode(buf: &[u8]) -> Option<RecordKey> {
        if buf.first() != Some(&KEY_VERSION) {
            return None;
        }
        let mut at = 2;
        let group = get_str(buf, &mut at)?;
        match *buf.get(1)? {
            KIND_OFFSET => {
                let topic = get_str(buf, &mut at)?;
                let partition = i32::from_be_bytes(buf.get(at..at + 4)?.try_into().ok()?);
                Some(RecordKey::Offset {
                    group,
                    tp: GroupTopicPartition { topic, partition },
                })
            }
            KIND_GROUP => Some(RecordKey::Group { group }),
            KIND_TXN_OFFSET => {
                let topic = get_str(buf, &mut at)?;
                let partition = i32::from_be_bytes(buf.get(at..at + 4)?.try_into().ok()?);
                at += 4;
                let producer_id = i64::from_be_bytes(buf.get(at..at + 8)?.try_into().ok()?);
                Some(RecordKey::TxnOffset {
                    group,
                    tp: GroupTopicPartition { topic, partition },
                    producer_id,
                })
            }
            _ => None,
        }
    }

    /// The group the key belongs to.
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. }
            | RecordKey::Group { group }
            | RecordKey::TxnOffset { group, .. } => group,
        }
    }
}

/// A write the coordinator makes: a key and its new value (`None` deletes it).
#[derive(Debug, Clone)]
pub struct Write {
    /// Key.
    pub key: RecordKey,
    /// Encoded value, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

impl Write {
    /// A committed offset.
    pub fn offset(group: &str, tp: GroupTopicPartition, offset: &CommittedOffset) -> Write {
        Write {
            key: RecordKey::Offset {
                group: group.to_owned(),
                tp,
            },
            value: Some(serde_json::to_vec(offset).expect("offsets serialize")),
        }
    }

    /// An offset committed inside the transaction of `producer_id` (pending until its marker).
    pub fn txn_offset(
        group: &str,
        tp: GroupTopicPartition,
        producer_id: i64,
        offset: &CommittedOffset,
    ) -> Write {
        Write {
            key: RecordKey::TxnOffset {
                group: group.to_owned(),
                tp,
                producer_id,
            },
            value: Some(serde_json::to_vec(offset).expect("offsets serialize")),
        }
    }

    /// About how many bytes the write takes in a batch.
    pub fn encoded_len(&self) -> usize {
        24 + self.key.encode().len() + self.value.as_ref().map_or(0, Vec::len)
    }

    /// Deletes a committed offset.
    pub fn delete_offset(group: &str, tp: GroupTopicPartition) -> Write {
        Write {
            key: RecordKey::Offset {
                group: group.to_owned(),
                tp,
            },
            value: None,
        }
    }

    /// A group's membership state.
    pub fn group(group: &str, snapshot: &GroupSnapshot) -> Result<Write, serde_json::Error> {
        Ok(Write {
            key: RecordKey::Group {
                group: group.to_owned(),
            },
            value: Some(serde_json::to_vec(snapshot)?),
        })
    }

    /// Deletes a group's membership state.
    pub fn delete_group(group: &str) -> Write {
        Write {
            key: RecordKey::Group {
                group: group.to_owned(),
            },
            value: None,
        }
    }
}

/// Encodes writes as one uncompressed record batch (one append, so they land together).
pub fn encode_batch(writes: &[Write], now_ms: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new(now_ms);
    for w in writes {
        b.push(now_ms, Some(&w.key.encode()), w.value.as_deref());
    }
    b.build()
}

/// What a partition of `__consumer_offsets` says about one group.
#[derive(Debug, Default)]
pub struct LoadedGroup {
    /// Committed offsets.
    pub offsets: BTreeMap<GroupTopicPartition, CommittedOffset>,
    /// Membership state, if any was written and not deleted.
    pub snapshot: Option<GroupSnapshot>,
    /// Offsets committed in transactions not yet ended, by producer id.
    pub pending: PendingOffsets,
}

/// Offsets committed inside open transactions: producer id -> partition -> offset.
pub type PendingOffsets = BTreeMap<i64, BTreeMap<GroupTopicPartition, CommittedOffset>>;

/// Ends the transaction of `producer_id` in `offsets` / `pending`: a commit makes its offsets
/// the committed ones, an abort drops them. Returns whether the group had any.
pub fn end_transaction(
    offsets: &mut BTreeMap<GroupTopicPartition, CommittedOffset>,
    pending: &mut PendingOffsets,
    producer_id: i64,
    commit: bool,
) -> bool {
    let Some(done) = pending.remove(&producer_id) else {
        return false;
    };
    if commit {
        offsets.extend(done);
    }
    true
}

/// Everything read back from one partition.
#[derive(Debug, Default)]
pub struct LoadedPartition {
    /// Groups by id.
    pub groups: HashMap<String, LoadedGroup>,
    /// The log end offset the read reached: the state is only safe to serve once the high
    /// watermark covers it.
    pub end_offset: i64,
    /// Records applied.
    pub records: u64,
}

/// Reads a partition from its start to its end (blocking: run it on the blocking pool).
pub fn load(log: &PartitionLog) -> rivulet_storage::Result<LoadedPartition> {
    let mut out = LoadedPartition::default();
    out.end_offset = crate::hosting::replay_entries(log, |entry| {
        out.records += 1;
        match entry {
            Entry::Record(key, value) => apply(&mut out.groups, key, value),
            Entry::Marker(m) => {
                for g in out.groups.values_mut() {
                    end_transaction(&mut g.offsets, &mut g.pending, m.producer_id, m.commit);
                }
            }
        }
    })?;
    // Groups left with nothing are gone.
    out.groups
        .retain(|_, g| g.snapshot.is_some() || !g.offsets.is_empty() || !g.pending.is_empty());
    Ok(out)
}

/// Applies one record to the loaded state.
fn apply(groups: &mut HashMap<String, LoadedGroup>, key: Option<&[u8]>, value: Option<&[u8]>) {
    let Some(key) = key.and_then(RecordKey::decode) else {
        warn!("skipping a __consumer_offsets record with an unknown key");
        return;
    };
    match key {
        RecordKey::Offset { group, tp } => match value {
            Some(v) => match serde_json::from_slice::<CommittedOffset>(v) {
                Ok(o) => {
                    groups.entry(group).or_default().offsets.insert(tp, o);
                }
                Err(e) => warn!(%group, error = %e, "skipping an unreadable committed offset"),
            },
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&tp);
                }
            }
        },
        RecordKey::TxnOffset {
            group,
            tp,
            producer_id,
        } => match value.map(serde_json::from_slice::<CommittedOffset>) {
            Some(Ok(o)) => {
                let g = groups.entry(group).or_default();
                g.pending.entry(producer_id).or_default().insert(tp, o);
            }
            Some(Err(e)) => {
                warn!(%group, error = %e, "skipping an unreadable transactional offset");
            }
            None => {}
        },
        RecordKey::Group { group } => match value {
            Some(v) => match serde_json::from_slice::<GroupSnapshot>(v) {
                Ok(s) => groups.entry(group).or_default().snapshot = Some(s),
                Err(e) => warn!(%group, error = %e, "skipping an unreadable group state"),
            },
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    g.snapshot = None;
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> GroupTopicPartition {
        GroupTopicPartition {
            topic: t.into(),
            partition: p,
        }
    }

    #[test]
    fn keys_round_trip() {
        for k in [
            RecordKey::Group { group: "g".into() },
            RecordKey::Offset {
                group: "grüppe".into(),
                tp: tp("orders", 7),
            },
        ] {
            assert_eq!(RecordKey::decode(&k.encode()), Some(k));
        }
        assert_eq!(RecordKey::decode(&[9, 1, 0, 0]), None);
        assert_eq!(RecordKey::decode(&[1, 1, 0, 5, b'a']), None);
    }

    #[test]
    fn latest_value_wins_and_tombstones_delete() {
        let o = |offset| CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 1,
        };
        let writes = [
            Write::offset("a", tp("t", 0), &o(5)),
            Write::offset("a", tp("t", 1), &o(6)),
            Write::offset("a", tp("t", 0), &o(9)),
            Write::delete_offset("a", tp("t", 1)),
            Write::offset("b", tp("t", 0), &o(1)),
            Write::delete_offset("b", tp("t", 0)),
        ];
        let batch = encode_batch(&writes, 1_000);
        let mut groups = HashMap::new();
        for r in rivulet_storage::batch::decode_records(&batch).unwrap() {
            apply(&mut groups, r.key.as_deref(), r.value.as_deref());
        }
        let a = &groups["a"];
        assert_eq!(a.offsets.len(), 1);
        assert_eq!(a.offsets[&tp("t", 0)].offset, 9);
        assert!(groups["b"].offsets.is_empty());
    }

    #[test]
    fn transactional_offsets_wait_for_their_marker() {
        let o = |offset| CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 1,
        };
        let k = RecordKey::TxnOffset {
            group: "g".into(),
            tp: tp("t", 3),
            producer_id: 42,
        };
        assert_eq!(RecordKey::decode(&k.encode()), Some(k));
        let writes = [
            Write::offset("g", tp("t", 0), &o(1)),
            Write::txn_offset("g", tp("t", 0), 7, &o(10)),
            Write::txn_offset("g", tp("t", 1), 7, &o(11)),
            Write::txn_offset("g", tp("t", 0), 8, &o(20)),
        ];
        let batch = encode_batch(&writes, 1_000);
        let mut groups = HashMap::new();
        for r in rivulet_storage::batch::decode_records(&batch).unwrap() {
            apply(&mut groups, r.key.as_deref(), r.value.as_deref());
        }
        let g = groups.get_mut("g").unwrap();
        assert_eq!(
            g.offsets[&tp("t", 0)].offset,
            1,
            "pending offsets are not visible"
        );
        assert_eq!(g.pending.len(), 2);
        // (producer id, commit, offset of t-0 after it, t-1 after it, open transactions left)
        let table = [
            (8, false, Some(1), None, 1),
            (9, true, Some(1), None, 1),
            (7, true, Some(10), Some(11), 0),
            (7, true, Some(10), Some(11), 0),
        ];
        for (i, (pid, commit, t0, t1, left)) in table.into_iter().enumerate() {
            end_transaction(&mut g.offsets, &mut g.pending, pid, commit);
            let at = |p| g.offsets.get(&tp("t", p)).map(|c| c.offset);
            assert_eq!((at(0), at(1), g.pending.len()), (t0, t1, left), "row {i}");
        }
    }
}
