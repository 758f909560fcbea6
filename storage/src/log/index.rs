//! Keys, index entries and segment keyspace names: the byte formats of a partition log.

use super::producer::AbortedEntry;
use crate::batch::{increment_sequence, BatchHeader};
use crate::{PartitionId, Result, StorageError};

/// Key prefix of a batch's bytes in log format 1 (batches inside fjall); format 2 keeps them
/// in segment files and has no such keys.
pub(crate) const DATA_PREFIX: u8 = b'D';
/// Key prefix of a batch's index entry.
pub(crate) const INDEX_PREFIX: u8 = b'I';
/// Key prefix of an aborted transaction (the aborted-transactions index), keyed by its abort
/// marker's offset, in the segment keyspace that holds the marker: it goes with that segment
/// (retention, truncation, deletion), as Kafka's `.txnindex` goes with its segment. Nothing
/// but the transaction code reads or writes these keys; a rewrite of a segment (compaction)
/// keeps them as they are.
pub(crate) const ABORTED_PREFIX: u8 = b'A';
/// Bit of an index entry's stored attributes that marks an abort marker (a control batch's
/// commit/abort is in its record, not its header). Bit 14 is unused in Kafka's batch
/// attributes and is never stored in a batch: only in the index entry.
const ABORT_MARKER_BIT: i16 = 1 << 14;

/// `prefix + base offset (u64 BE)`: big-endian so keys sort by offset.
pub(crate) fn key(prefix: u8, base_offset: i64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    // Offsets are never negative, so the u64 cast preserves order.
    k[1..].copy_from_slice(&(base_offset as u64).to_be_bytes());
    k
}

/// Base offset from an index key.
pub(crate) fn offset_of_key(k: &[u8]) -> Result<i64> {
    match k {
        [INDEX_PREFIX | DATA_PREFIX, rest @ ..] if rest.len() == 8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(rest);
            i64::try_from(u64::from_be_bytes(a))
                .map_err(|_| StorageError::CorruptLog(format!("key offset out of range: {k:?}")))
        }
        _ => Err(StorageError::CorruptLog(format!("unexpected key {k:?}"))),
    }
}

/// Version 2 adds the batch's position in its segment file (format 1 had none: the batch
/// lay under its `D` key).
const ENTRY_VERSION: u8 = 2;
/// Size of an encoded [`IndexEntry`].
pub(crate) const ENTRY_LEN: usize = 53;

/// What recovery, reads and producer state need to know about a stored batch, without
/// reading the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
    pub(crate) records_count: i32,
    pub(crate) leader_epoch: i32,
    pub(crate) size_bytes: u32,
    pub(crate) attributes: i16,
    /// Where the batch starts in its segment file.
    pub(crate) position: u64,
    /// The batch is a transaction marker that aborts (only with the control bit).
    pub(crate) abort_marker: bool,
}

impl IndexEntry {
    /// The entry of a batch as stored (base offset and leader epoch already assigned).
    pub(crate) fn of(h: &BatchHeader, position: u64) -> IndexEntry {
        IndexEntry {
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
            max_timestamp: h.max_timestamp,
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
            records_count: h.records_count,
            leader_epoch: h.partition_leader_epoch,
            // Validation bounds batches by `batch_bytes_max: usize`; a batch length is an i32.
            size_bytes: u32::try_from(h.total_len()).unwrap_or(u32::MAX),
            attributes: h.attributes,
            position,
            abort_marker: false,
        }
    }

    /// The same entry, marked as an abort marker's.
    pub(crate) fn aborting(mut self, abort: bool) -> IndexEntry {
        self.abort_marker = abort && self.is_control();
        self
    }

    pub(crate) fn is_control(&self) -> bool {
        self.attributes & crate::batch::CONTROL_BIT != 0
    }

    pub(crate) fn is_transactional(&self) -> bool {
        self.attributes & crate::batch::TRANSACTIONAL_BIT != 0
    }

    /// Where the batch ends in its segment file.
    pub(crate) fn end_position(&self) -> u64 {
        self.position + u64::from(self.size_bytes)
    }

    pub(crate) fn next_offset(&self) -> i64 {
        self.last_offset + 1
    }

    pub(crate) fn last_sequence(&self) -> i32 {
        let delta = i32::try_from(self.last_offset - self.base_offset).unwrap_or(i32::MAX);
        increment_sequence(self.base_sequence, delta)
    }

    pub(crate) fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[0] = ENTRY_VERSION;
        b[1..9].copy_from_slice(&self.last_offset.to_be_bytes());
        b[9..17].copy_from_slice(&self.max_timestamp.to_be_bytes());
        b[17..25].copy_from_slice(&self.producer_id.to_be_bytes());
        b[25..27].copy_from_slice(&self.producer_epoch.to_be_bytes());
        b[27..31].copy_from_slice(&self.base_sequence.to_be_bytes());
        b[31..35].copy_from_slice(&self.records_count.to_be_bytes());
        b[35..39].copy_from_slice(&self.leader_epoch.to_be_bytes());
        b[39..43].copy_from_slice(&self.size_bytes.to_be_bytes());
        let attributes = if self.abort_marker {
            self.attributes | ABORT_MARKER_BIT
        } else {
            self.attributes
        };
        b[43..45].copy_from_slice(&attributes.to_be_bytes());
        b[45..53].copy_from_slice(&self.position.to_be_bytes());
        b
    }

    /// Decodes an entry of log format 1 (45 bytes, version 1, no position: the batch lay
    /// under its `D` key), for the upgrade to format 2; the position comes back as 0.
    pub(crate) fn decode_v1(key: &[u8], value: &[u8]) -> Result<IndexEntry> {
        const V1_LEN: usize = 45;
        if value.len() != V1_LEN || value[0] != 1 {
            return Err(StorageError::CorruptLog(format!(
                "format 1 index entry of {} bytes, version {:?}",
                value.len(),
                value.first()
            )));
        }
        let mut v2 = [0u8; ENTRY_LEN];
        v2[..V1_LEN].copy_from_slice(value);
        v2[0] = ENTRY_VERSION;
        IndexEntry::decode(key, &v2)
    }

    /// Decodes the entry stored under `key`; a wrong version, size or impossible value is an
    /// error, never a panic.
    pub(crate) fn decode(key: &[u8], value: &[u8]) -> Result<IndexEntry> {
        let base_offset = offset_of_key(key)?;
        let bad = |what: &str| {
            StorageError::CorruptLog(format!("index entry at offset {base_offset}: {what}"))
        };
        if value.len() != ENTRY_LEN {
            return Err(bad(&format!("{} bytes, expected {ENTRY_LEN}", value.len())));
        }
        if value[0] != ENTRY_VERSION {
            return Err(bad(&format!("unknown version {}", value[0])));
        }
        let i16_at = |at: usize| i16::from_be_bytes([value[at], value[at + 1]]);
        let i32_at = |at: usize| {
            i32::from_be_bytes([value[at], value[at + 1], value[at + 2], value[at + 3]])
        };
        let i64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&value[at..at + 8]);
            i64::from_be_bytes(a)
        };
        let stored_attributes = i16_at(43);
        let e = IndexEntry {
            base_offset,
            last_offset: i64_at(1),
            max_timestamp: i64_at(9),
            producer_id: i64_at(17),
            producer_epoch: i16_at(25),
            base_sequence: i32_at(27),
            records_count: i32_at(31),
            leader_epoch: i32_at(35),
            size_bytes: u32::from_be_bytes([value[39], value[40], value[41], value[42]]),
            attributes: stored_attributes & !ABORT_MARKER_BIT,
            position: u64::from_be_bytes(value[45..53].try_into().unwrap_or([0xff; 8])),
            abort_marker: stored_attributes & ABORT_MARKER_BIT != 0
                && stored_attributes & crate::batch::CONTROL_BIT != 0,
        };
        if e.last_offset < e.base_offset || e.last_offset - e.base_offset > i64::from(i32::MAX) {
            return Err(bad(&format!("last offset {}", e.last_offset)));
        }
        if e.size_bytes < crate::batch::HEADER_LEN as u32 {
            return Err(bad(&format!("size {}", e.size_bytes)));
        }
        if e.position > i64::MAX as u64 {
            return Err(bad(&format!("position {}", e.position)));
        }
        Ok(e)
    }
}

impl AbortedEntry {
    const VERSION: u8 = 1;
    const LEN: usize = 25;

    /// Its key: `A` + marker offset.
    pub(crate) fn key(&self) -> [u8; 9] {
        key(ABORTED_PREFIX, self.last_offset)
    }

    pub(crate) fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = Self::VERSION;
        b[1..9].copy_from_slice(&self.producer_id.to_be_bytes());
        b[9..17].copy_from_slice(&self.first_offset.to_be_bytes());
        b[17..25].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    pub(crate) fn decode(k: &[u8], v: &[u8]) -> Result<AbortedEntry> {
        let bad = || StorageError::CorruptLog(format!("aborted-transaction entry {k:?}: {v:?}"));
        let last_offset = match k {
            [ABORTED_PREFIX, rest @ ..] if rest.len() == 8 => {
                i64::try_from(u64::from_be_bytes(rest.try_into().map_err(|_| bad())?))
                    .map_err(|_| bad())?
            }
            _ => return Err(bad()),
        };
        if v.len() != Self::LEN || v[0] != Self::VERSION {
            return Err(bad());
        }
        let i64_at = |at: usize| -> Result<i64> {
            Ok(i64::from_be_bytes(
                v[at..at + 8].try_into().map_err(|_| bad())?,
            ))
        };
        let e = AbortedEntry {
            producer_id: i64_at(1)?,
            first_offset: i64_at(9)?,
            last_offset,
            last_stable_offset: i64_at(17)?,
        };
        if e.first_offset > e.last_offset || e.first_offset < 0 {
            return Err(bad());
        }
        Ok(e)
    }
}

/// Prefix of every segment keyspace of a partition.
pub(crate) fn segment_prefix(id: PartitionId) -> String {
    format!("log.{}.{}.", id.topic_id.simple(), id.partition)
}

/// Keyspace name of the segment of `id` starting at `base_offset`.
pub(crate) fn segment_name(id: PartitionId, base_offset: i64) -> String {
    format!("{}{:020}", segment_prefix(id), base_offset)
}

/// Base offset of a segment keyspace of `id` from its name; `None` for other keyspaces.
pub(crate) fn parse_segment_name(id: PartitionId, name: &str) -> Option<Result<i64>> {
    let rest = name.strip_prefix(&segment_prefix(id))?;
    Some(
        rest.parse::<i64>()
            .ok()
            .filter(|o| *o >= 0 && rest.len() == 20)
            .ok_or_else(|| StorageError::CorruptLog(format!("bad segment keyspace name {name}"))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> IndexEntry {
        IndexEntry {
            base_offset: 100,
            last_offset: 104,
            max_timestamp: 1_700_000_000_000,
            producer_id: 9,
            producer_epoch: 2,
            base_sequence: i32::MAX - 1,
            records_count: 5,
            leader_epoch: 7,
            size_bytes: 4096,
            attributes: 3,
            position: 1 << 33,
            abort_marker: false,
        }
    }

    #[test]
    fn entry_round_trips() {
        let e = entry();
        let bytes = e.encode();
        assert_eq!(
            IndexEntry::decode(&key(INDEX_PREFIX, 100), &bytes).unwrap(),
            e
        );
        assert_eq!(e.last_sequence(), 2);
    }

    #[test]
    fn abort_markers_and_aborted_entries_round_trip() {
        let mut e = entry();
        e.attributes = crate::batch::CONTROL_BIT | crate::batch::TRANSACTIONAL_BIT;
        let marked = e.aborting(true);
        let back = IndexEntry::decode(&key(INDEX_PREFIX, 100), &marked.encode()).unwrap();
        assert!(back.abort_marker);
        assert_eq!(
            back.attributes, e.attributes,
            "the bit never shows as an attribute"
        );
        // Only control batches can be abort markers.
        assert!(!entry().aborting(true).abort_marker);
        let a = AbortedEntry {
            producer_id: 7,
            first_offset: 3,
            last_offset: 9,
            last_stable_offset: 10,
        };
        assert_eq!(AbortedEntry::decode(&a.key(), &a.encode()).unwrap(), a);
        assert!(AbortedEntry::decode(&key(INDEX_PREFIX, 9), &a.encode()).is_err());
        assert!(AbortedEntry::decode(&a.key(), &a.encode()[..24]).is_err());
    }

    #[test]
    fn corrupt_entries_are_errors() {
        let k = key(INDEX_PREFIX, 100);
        let good = entry().encode();
        assert!(IndexEntry::decode(&k, &good[..52]).is_err());
        let mut v = good;
        v[0] = 9;
        assert!(IndexEntry::decode(&k, &v).is_err());
        let mut bad_last = entry();
        bad_last.last_offset = 99;
        assert!(IndexEntry::decode(&k, &bad_last.encode()).is_err());
        let mut small = entry();
        small.size_bytes = 3;
        assert!(IndexEntry::decode(&k, &small.encode()).is_err());
        assert!(IndexEntry::decode(b"I12", &good).is_err());
        assert!(IndexEntry::decode(&[b'I', 0xff, 0, 0, 0, 0, 0, 0, 0], &good).is_err());
        assert!(IndexEntry::decode(&key(DATA_PREFIX, 100), &good).is_ok());
    }

    #[test]
    fn keys_sort_by_offset() {
        let mut ks: Vec<_> = [5i64, 1 << 40, 0, 255, 256]
            .iter()
            .map(|o| key(DATA_PREFIX, *o))
            .collect();
        ks.sort();
        let offsets: Vec<_> = ks.iter().map(|k| offset_of_key(k).unwrap()).collect();
        assert_eq!(offsets, vec![0, 5, 255, 256, 1 << 40]);
    }

    #[test]
    fn segment_names_round_trip() {
        let id = PartitionId {
            topic_id: uuid::Uuid::from_u128(0xabc),
            partition: 12,
        };
        let other = PartitionId { partition: 1, ..id };
        let name = segment_name(id, 4096);
        assert!(name.len() < 100);
        assert_eq!(parse_segment_name(id, &name).unwrap().unwrap(), 4096);
        assert!(parse_segment_name(other, &name).is_none());
        assert!(parse_segment_name(id, "_meta").is_none());
        assert!(parse_segment_name(id, &format!("{}x", segment_prefix(id)))
            .unwrap()
            .is_err());
    }
}
