//! In-place upgrade of a partition log from format 1 (record batches inside fjall, under `D`
//! keys, with 45-byte index entries) to format 2 (batches in segment files, 53-byte entries
//! with the file position).
//!
//! Each segment is converted on its own: its batches are copied into a new segment file, the
//! file is fsynced, then one durable fjall write batch replaces its index entries and drops
//! its `D` keys. A crash in between leaves the segment in format 1 (the file is written again
//! on the next start); a converted segment is recognised by its entries and skipped. The
//! store's format marker is written only after every log is converted.

use std::path::Path;

use fjall::{Database, KeyspaceCreateOptions, KvSeparationOptions, PersistMode};

use super::index::{key, parse_segment_name, IndexEntry, DATA_PREFIX, ENTRY_LEN, INDEX_PREFIX};
use super::segment::{file_name, SegmentFile};
use crate::{PartitionId, Result, StorageError};

/// The options format 1 created segment keyspaces with.
fn v1_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .with_kv_separation(Some(KvSeparationOptions::default()))
        .expect_point_read_hits(true)
}

/// Converts the segments `names` of log `id` into segment files under `dir`. Returns the
/// number of batch bytes moved.
pub(crate) fn upgrade_log_v1(
    db: &Database,
    id: PartitionId,
    names: &[String],
    dir: &Path,
) -> Result<u64> {
    std::fs::create_dir_all(dir)?;
    let mut moved = 0u64;
    for name in names {
        let Some(base) = parse_segment_name(id, name) else {
            continue;
        };
        let base = base?;
        let keyspace = db.keyspace(name, v1_options)?;
        let first = keyspace.prefix([INDEX_PREFIX]).next();
        if let Some(guard) = first {
            let (_, v) = guard.into_inner()?;
            if v.len() == ENTRY_LEN {
                // Converted before a crash interrupted the upgrade of a later segment.
                continue;
            }
        }
        let file = SegmentFile::create(&dir.join(file_name(base, 0)))?;
        let mut batch = db.batch().durability(Some(PersistMode::SyncData));
        let mut position = 0u64;
        for guard in keyspace.prefix([INDEX_PREFIX]) {
            let (k, v) = guard.into_inner()?;
            let mut e = IndexEntry::decode_v1(&k, &v)?;
            let data_key = key(DATA_PREFIX, e.base_offset);
            let data = keyspace.get(data_key)?.ok_or_else(|| {
                StorageError::CorruptLog(format!(
                    "format 1 segment {name}: no batch for the index entry at offset {}",
                    e.base_offset
                ))
            })?;
            if data.len() != e.size_bytes as usize {
                return Err(StorageError::CorruptLog(format!(
                    "format 1 segment {name}: batch at offset {} has {} bytes, index says {}",
                    e.base_offset,
                    data.len(),
                    e.size_bytes
                )));
            }
            file.write_all_at(&[&data], position)?;
            e.position = position;
            position = e.end_position();
            batch.insert(&keyspace, k, &e.encode()[..]);
            batch.remove(&keyspace, &data_key[..]);
        }
        file.sync()?;
        batch.commit()?;
        moved += position;
    }
    Ok(moved)
}
