//! Tests that need the log's insides: on-disk damage and cache consistency. The behaviour
//! seen through the public API is tested in `storage/tests/`.

use super::*;
use crate::batch::{BatchBuilder, Compression, NO_TIMESTAMP};
use crate::{Store, StoreConfig};

fn id() -> PartitionId {
    PartitionId {
        topic_id: uuid::Uuid::from_u128(7),
        partition: 0,
    }
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes_max: 1 << 20,
        segment_age_max_ms: -1,
        retention_bytes: -1,
        retention_ms: -1,
        batch_bytes_max: 1 << 20,
        durability: Durability::Os,
        ..LogConfig::default()
    }
}

fn batch(records: usize, ts: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new(ts);
    for i in 0..records {
        b.push(ts, None, Some(format!("r{i}").as_bytes()));
    }
    b.build()
}

fn open(dir: &std::path::Path) -> (Store, PartitionLog) {
    let store = Store::open(dir, StoreConfig::default()).unwrap();
    let log = store.open_log(id(), cfg()).unwrap();
    (store, log)
}

#[test]
fn corrupt_index_entry_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_store, log) = open(dir.path());
        log.append_as_leader(&batch(2, 10), 0).unwrap();
        log.active_keyspace()
            .insert(key(INDEX_PREFIX, 2), b"garbage".as_slice())
            .unwrap();
        log.shared.db.persist(PersistMode::SyncData).unwrap();
    }
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let err = store.open_log(id(), cfg()).unwrap_err();
    assert!(matches!(err, StorageError::CorruptLog(_)), "{err}");
    assert!(err.is_fatal());
}

#[test]
fn recovery_cuts_the_log_at_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_store, log) = open(dir.path());
        log.append_as_leader(&batch(2, 10), 0).unwrap(); // 0..=1
        log.append_as_leader(&batch(3, 10), 0).unwrap(); // 2..=4
                                                         // A batch at 9 that nothing leads to (as if 5..9 were lost).
        let mut stray = batch(1, 10);
        crate::batch::set_base_offset(&mut stray, 9).unwrap();
        let (file, end) = active_file(&log);
        file.write_all_at(&[&stray], end).unwrap();
        let e = IndexEntry::of(&BatchHeader::parse(&stray).unwrap(), end);
        let ks = log.active_keyspace();
        ks.insert(key(INDEX_PREFIX, 9), e.encode().as_slice())
            .unwrap();
        // And a later segment after the gap.
        log.shared
            .db
            .keyspace(&segment_name(id(), 20), segment_options)
            .unwrap();
    }
    let (_store, log) = open(dir.path());
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.segment_count(), 1);
    let r = log.read(0, usize::MAX, i64::MAX).unwrap();
    assert_eq!(validate_all(&r.records), vec![(0, 1), (2, 4)]);
    // Appends continue at the cut.
    let info = log.append_as_leader(&batch(1, 10), 0).unwrap().info();
    assert_eq!(info.base_offset, 5);
}

/// The active segment's file and where its next batch goes.
fn active_file(log: &PartitionLog) -> (Arc<SegmentFile>, u64) {
    let segments = log.shared.segments.read();
    let active = segments.last().unwrap();
    (active.file.clone(), active.end_position())
}

fn file_len(log: &PartitionLog) -> u64 {
    active_file(log).0.len().unwrap()
}

#[test]
fn recovery_cuts_a_torn_tail_by_crc_and_keeps_every_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let whole_end;
    {
        let (_store, log) = open(dir.path());
        log.append_as_leader(&batch(2, 10), 0).unwrap(); // 0..=1
        log.append_as_leader(&batch(3, 10), 0).unwrap(); // 2..=4
        whole_end = file_len(&log);
        log.append_as_leader(&batch(4, 10), 0).unwrap(); // 5..=8, torn below
        let (file, end) = active_file(&log);
        // A torn write: the last batch's final bytes never reached the disk (garbage there),
        // and a partial header after it.
        file.write_all_at(&[&[0xee; 5], &[0u8; 30]], end - 5)
            .unwrap();
        log.shared.db.persist(PersistMode::SyncData).unwrap();
    }
    let (store, log) = open(dir.path());
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(
        file_len(&log),
        whole_end,
        "the torn bytes are cut off the file"
    );
    let r = log.read(0, usize::MAX, i64::MAX).unwrap();
    assert_eq!(validate_all(&r.records), vec![(0, 1), (2, 4)]);
    let info = log.append_as_leader(&batch(1, 10), 0).unwrap().info();
    assert_eq!(info.base_offset, 5);
    drop((store, log));
    let (_store, log) = open(dir.path());
    let r = log.read(0, usize::MAX, i64::MAX).unwrap();
    assert_eq!(validate_all(&r.records), vec![(0, 1), (2, 4), (5, 5)]);
}

#[test]
fn recovery_indexes_whole_batches_whose_index_entry_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_store, log) = open(dir.path());
        log.append_as_leader(&batch(2, 10), 3).unwrap(); // 0..=1
        log.append_as_leader(&batch(3, 20), 4).unwrap(); // 2..=4
                                                         // The bytes reached the file, the index entry did not reach the journal.
        log.active_keyspace().remove(key(INDEX_PREFIX, 2)).unwrap();
        log.shared.db.persist(PersistMode::SyncData).unwrap();
    }
    let (_store, log) = open(dir.path());
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.epoch_entries(), vec![(3, 0), (4, 2)]);
    let r = log.read(2, usize::MAX, i64::MAX).unwrap();
    assert_eq!(validate_all(&r.records), vec![(2, 4)]);
}

#[test]
fn recovery_drops_index_entries_past_the_durable_end_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let first_end;
    {
        let (_store, log) = open(dir.path());
        log.append_as_leader(&batch(2, 10), 0).unwrap(); // 0..=1
        first_end = file_len(&log);
        log.append_as_leader(&batch(3, 10), 0).unwrap(); // 2..=4
                                                         // A power loss kept the journal (another log fsynced it) but not the file's tail.
        active_file(&log).0.truncate(first_end + 20).unwrap();
        log.shared.db.persist(PersistMode::SyncData).unwrap();
    }
    let (_store, log) = open(dir.path());
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(file_len(&log), first_end);
    let r = log.read(0, usize::MAX, i64::MAX).unwrap();
    assert_eq!(validate_all(&r.records), vec![(0, 1)]);
}

#[test]
fn sync_records_a_recovery_point_and_truncation_forgets_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_store, log) = open(dir.path());
        log.append_as_leader(&batch(2, 10), 0).unwrap();
        log.sync().unwrap();
        let seg = log.shared.segments.read().last().cloned().unwrap();
        assert_eq!(
            read_recovery_point(&seg.keyspace).unwrap(),
            Some((2, seg.end_position()))
        );
        log.append_as_leader(&batch(3, 10), 0).unwrap();
        // Truncation forgets the recovery point: what follows it is not durable yet.
        log.truncate_to(1).unwrap();
        let seg = log.shared.segments.read().last().cloned().unwrap();
        assert_eq!(read_recovery_point(&seg.keyspace).unwrap(), None);
        assert_eq!(file_len(&log), 0);
    }
    let (_store, log) = open(dir.path());
    assert_eq!(log.log_end_offset(), 0);
}

/// A format-1 segment as the previous version wrote it: `D` keys with the batch bytes and
/// 45-byte version-1 index entries, in a key-value separated keyspace.
fn write_v1_segment(store: &Store, base: i64, batches: &[Vec<u8>]) {
    let db = store.database();
    let ks = db
        .keyspace(&segment_name(id(), base), || {
            KeyspaceCreateOptions::default()
                .with_kv_separation(Some(fjall::KvSeparationOptions::default()))
        })
        .unwrap();
    for b in batches {
        let h = BatchHeader::parse(b).unwrap();
        let v2 = IndexEntry::of(&h, 0).encode();
        let mut v1 = v2[..45].to_vec();
        v1[0] = 1;
        ks.insert(key(INDEX_PREFIX, h.base_offset), v1).unwrap();
        ks.insert(key(b'D', h.base_offset), b.as_slice()).unwrap();
    }
}

#[test]
fn a_store_of_format_1_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let at = |records, base, epoch| {
        let mut b = batch(records, 10);
        crate::batch::set_base_offset(&mut b, base).unwrap();
        crate::batch::set_partition_leader_epoch(&mut b, epoch).unwrap();
        b
    };
    let (b0, b1, b2) = (at(2, 0, 1), at(3, 2, 1), at(1, 5, 2));
    {
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        write_v1_segment(&store, 0, &[b0.clone(), b1.clone()]);
        write_v1_segment(&store, 5, std::slice::from_ref(&b2));
        // No format marker: what the previous version left.
        let meta = store
            .database()
            .keyspace("_meta", KeyspaceCreateOptions::default)
            .unwrap();
        meta.remove(b"log_format").unwrap();
        store.sync().unwrap();
    }
    for _ in 0..2 {
        // The second open finds format 2 and changes nothing.
        let (_store, log) = open(dir.path());
        assert_eq!(log.segment_count(), 2);
        assert_eq!(log.log_end_offset(), 6);
        assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 5)]);
        let r = log.read(0, usize::MAX, i64::MAX).unwrap();
        assert_eq!(
            r.records.as_ref(),
            [b0.clone(), b1.clone(), b2.clone()].concat()
        );
        assert!(log.active_keyspace().get(key(b'D', 5)).unwrap().is_none());
    }
    let (_store, log) = open(dir.path());
    assert_eq!(
        log.append_as_leader(&batch(1, 10), 2)
            .unwrap()
            .info()
            .base_offset,
        6
    );
}

#[test]
fn a_store_of_an_unknown_format_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, log) = open(dir.path());
        log.append_as_leader(&batch(2, 10), 0).unwrap();
        let meta = store
            .database()
            .keyspace("_meta", KeyspaceCreateOptions::default)
            .unwrap();
        meta.insert(b"log_format", [3u8]).unwrap();
        store.sync().unwrap();
    }
    let err = Store::open(dir.path(), StoreConfig::default()).unwrap_err();
    assert!(matches!(err, StorageError::IncompatibleFormat(_)), "{err}");
    assert!(err.to_string().contains("version that wrote it"), "{err}");
}

#[test]
fn segment_files_nothing_refers_to_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_store, log) = open(dir.path());
        log.append_as_leader(&batch(2, 10), 0).unwrap();
    }
    let segments = dir.path().join("segments");
    // A deleted log whose directory outlived its keyspaces, and a segment file whose
    // keyspace was never created.
    let orphan_dir = segments.join(format!("{}.3", uuid::Uuid::from_u128(99).simple()));
    std::fs::create_dir_all(&orphan_dir).unwrap();
    std::fs::write(orphan_dir.join(file_name(0)), b"old").unwrap();
    let stray = segments
        .join(format!("{}.0", id().topic_id.simple()))
        .join(file_name(4096));
    std::fs::write(&stray, b"torn").unwrap();
    let (_store, log) = open(dir.path());
    assert!(!orphan_dir.exists());
    assert!(!stray.exists());
    assert_eq!(log.log_end_offset(), 2);
}

fn validate_all(records: &[u8]) -> Vec<(i64, i64)> {
    validate(
        records,
        &ValidationRules {
            batch_bytes_max: usize::MAX,
            origin: BatchOrigin::Replication,
        },
    )
    .unwrap()
    .iter()
    .map(|b| (b.header.base_offset, b.header.last_offset()))
    .collect()
}

#[test]
fn caches_after_truncation_equal_a_rebuild_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (epochs, producers) = {
        let (_store, log) = open(dir.path());
        log.set_config(LogConfig {
            segment_bytes_max: 300,
            ..cfg()
        });
        for i in 0..12i32 {
            let b = BatchBuilder::new(100 + i64::from(i))
                .producer(i64::from(i % 3), 0, i / 3)
                .record(100, None, Some(b"0123456789"))
                .build();
            log.append_as_leader(&b, i / 4).unwrap();
        }
        assert!(log.segment_count() > 2);
        log.truncate_to(7).unwrap();
        assert_eq!(log.log_end_offset(), 7);
        assert_eq!(log.epoch_entries(), vec![(0, 0), (1, 4)]);
        let producers = log.shared.writer.lock().producers.clone();
        (log.epoch_entries(), producers)
    };
    let (_store, log) = open(dir.path());
    assert_eq!(log.epoch_entries(), epochs);
    assert_eq!(log.shared.writer.lock().producers, producers);
    assert_eq!(log.producer_count(), 3);
}

#[test]
fn caches_after_retention_equal_a_rebuild_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (epochs, producers, start) = {
        let (_store, log) = open(dir.path());
        log.set_config(LogConfig {
            segment_bytes_max: 200,
            retention_bytes: 300,
            ..cfg()
        });
        for i in 0..12i32 {
            let b = BatchBuilder::new(100)
                .producer(i64::from(i % 4), 0, i / 4)
                .record(100, None, Some(b"0123456789"))
                .build();
            log.append_as_leader(&b, i / 3).unwrap();
        }
        assert!(log.apply_retention(0).unwrap() > 0);
        let producers = log.shared.writer.lock().producers.clone();
        (log.epoch_entries(), producers, log.log_start_offset())
    };
    let (_store, log) = open(dir.path());
    assert!(start > 0);
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(log.epoch_entries(), epochs);
    assert_eq!(log.shared.writer.lock().producers, producers);
}

#[test]
fn delete_segments_before_drops_only_whole_segments_below_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let start = {
        let (_store, log) = open(dir.path());
        log.set_config(LogConfig {
            segment_bytes_max: 200,
            ..cfg()
        });
        for i in 0..12i32 {
            log.append_as_leader(&batch(1, 100), i / 3).unwrap();
        }
        let segments = log.segment_count();
        assert!(segments > 3, "small segments roll: {segments}");
        // Nothing lies wholly below offset 0.
        assert_eq!(log.delete_segments_before(0).unwrap(), 0);
        let dropped = log.delete_segments_before(7).unwrap();
        assert!(dropped > 0);
        let start = log.log_start_offset();
        assert!(start > 0 && start <= 7, "log start {start}");
        // Everything at or after 7 is still readable.
        let read = log.read(7, 1 << 20, i64::MAX).unwrap();
        assert_eq!(validate_all(&read.records).first().map(|b| b.0), Some(7));
        // The active segment stays, even when asked to drop everything.
        log.delete_segments_before(i64::MAX).unwrap();
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.log_end_offset(), 12);
        log.log_start_offset()
    };
    let (_store, log) = open(dir.path());
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(log.log_end_offset(), 12);
}

#[test]
fn advance_log_start_is_logical_inside_a_segment_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_store, log) = open(dir.path());
        log.set_config(LogConfig {
            segment_bytes_max: 200,
            ..cfg()
        });
        for _ in 0..4 {
            log.append_as_leader(&batch(5, 100), 0).unwrap();
        }
        let segments = log.segment_count();
        // Mid-batch and mid-segment: the start is exactly the offset asked for.
        assert_eq!(log.advance_log_start(7).unwrap(), 7);
        assert_eq!(log.log_start_offset(), 7);
        assert!(log.segment_count() <= segments);
        assert!(matches!(
            log.read(6, 1 << 20, i64::MAX),
            Err(StorageError::OffsetOutOfRange { log_start: 7, .. })
        ));
        // The batch holding 7 comes back whole (clients skip what they did not ask for).
        let read = log.read(7, 1 << 20, i64::MAX).unwrap();
        assert_eq!(read.log_start_offset, 7);
        assert_eq!(validate_all(&read.records).first().map(|b| b.0), Some(5));
        // Lower offsets change nothing; past the log end is out of range.
        assert_eq!(log.advance_log_start(3).unwrap(), 7);
        assert!(log.advance_log_start(21).is_err());
        assert_eq!(log.advance_log_start(12).unwrap(), 12);
    }
    let (_store, log) = open(dir.path());
    assert_eq!(log.log_start_offset(), 12);
    assert_eq!(log.log_end_offset(), 20);
    // Emptying the log at the start segment's base forgets the marker.
    log.truncate_fully_and_start_at(log.log_start_offset())
        .unwrap();
    assert_eq!(log.log_start_offset(), 12);
    assert_eq!(log.log_end_offset(), 12);
}

const NOW_MS: i64 = 1_700_000_000_000;

/// Issue 9, defect 1: batches whose header says max timestamp -1 (as some producers write)
/// must not make retention delete their segments at once.
#[test]
fn batches_with_max_timestamp_minus_one_survive_retention() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, log) = open(dir.path());
    log.set_config(LogConfig {
        segment_bytes_max: 300,
        retention_ms: 3_600_000,
        ..cfg()
    });
    for i in 0..12i64 {
        let b = BatchBuilder::new(NOW_MS + i)
            .record(NOW_MS + i, None, Some(b"0123456789"))
            .record(NOW_MS + i + 1, None, Some(b"0123456789"))
            .declared_max_timestamp(-1)
            .build();
        log.append_as_leader_at(&b, 0, NOW_MS + i).unwrap();
    }
    assert!(log.segment_count() > 3);
    // The stored header carries the records' max timestamp, with a valid CRC.
    let read = log.read(0, 1 << 20, i64::MAX).unwrap();
    let batches = crate::batch::validate(
        &read.records,
        &ValidationRules {
            batch_bytes_max: 1 << 20,
            origin: BatchOrigin::Replication,
        },
    )
    .unwrap();
    assert_eq!(batches[0].header.max_timestamp, NOW_MS + 1);
    assert_eq!(log.apply_retention(NOW_MS + 60_000).unwrap(), 0);
    assert_eq!(log.log_start_offset(), 0);
    // An hour after the newest record, the old segments go.
    assert!(log.apply_retention(NOW_MS + 3_600_000 + 100).unwrap() > 0);
}

/// Data already stored with a negative max timestamp (before the leader recomputed it) ages
/// from the segment's creation, not from 1970.
#[test]
fn segments_without_usable_timestamps_age_from_their_creation() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, log) = open(dir.path());
    log.set_config(LogConfig {
        segment_bytes_max: 200,
        retention_ms: 3_600_000,
        ..cfg()
    });
    for _ in 0..8 {
        // Records without timestamps: the computed max is -1 too.
        log.append_as_leader(&batch(1, NO_TIMESTAMP), 0).unwrap();
    }
    assert!(log.segment_count() > 2);
    let created = log.shared.segments.read()[0].created_ms;
    assert_eq!(log.apply_retention(created + 1_000).unwrap(), 0);
    assert!(log.apply_retention(created + 3_600_000 + 1_000).unwrap() > 0);
}

#[test]
fn log_append_time_topics_stamp_the_append_time() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, log) = open(dir.path());
    log.set_config(LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..cfg()
    });
    let info = log
        .append_as_leader_at(&batch(3, 5), 0, NOW_MS)
        .unwrap()
        .info();
    assert_eq!(info.max_timestamp, NOW_MS);
    let read = log.read(0, 1 << 20, i64::MAX).unwrap();
    let h = BatchHeader::parse(&read.records).unwrap();
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, NOW_MS);
    assert_eq!(
        log.offset_for_timestamp(NOW_MS, i64::MAX).unwrap(),
        Some(TimestampOffset {
            offset: 0,
            timestamp: NOW_MS
        })
    );
}

/// Issue 18 (found by the Java client's admin scenario): after DeleteRecords, a lookup by time
/// never answers an offset below the log start, even inside a batch that straddles it; Kafka
/// searches from the log start offset too.
#[test]
fn lookups_by_time_skip_records_below_the_log_start() {
    for codec in [Compression::None, Compression::Zstd] {
        let dir = tempfile::tempdir().unwrap();
        let (_store, log) = open(dir.path());
        // Offsets 0..=2 (one batch) with timestamps 100, 200, 300; offset 3 alone with 900;
        // offset 4 alone with 400.
        let b1 = BatchBuilder::new(100)
            .record(100, None, Some(b"a"))
            .record(200, None, Some(b"b"))
            .record(300, None, Some(b"c"))
            .compression(codec)
            .build();
        log.append_as_leader(&b1, 0).unwrap();
        log.append_as_leader(&batch(1, 900), 0).unwrap();
        log.append_as_leader(&batch(1, 400), 0).unwrap();
        let at = |ts| {
            log.offset_for_timestamp(ts, i64::MAX)
                .unwrap()
                .map(|t| (t.offset, t.timestamp))
        };
        assert_eq!(at(0), Some((0, 100)), "{codec:?}");
        // Inside the first batch: offset 2 becomes the first readable record.
        assert_eq!(log.advance_log_start(2).unwrap(), 2);
        assert_eq!(at(0), Some((2, 300)), "{codec:?}: straddling batch");
        assert_eq!(at(250), Some((2, 300)), "{codec:?}");
        // Past the first batch: its records are never an answer.
        assert_eq!(log.advance_log_start(4).unwrap(), 4);
        assert_eq!(
            at(0),
            Some((4, 400)),
            "{codec:?}: batch wholly below the start"
        );
        let max = log.max_timestamp_offset(i64::MAX).unwrap();
        assert_eq!(
            max.map(|t| (t.offset, t.timestamp)),
            Some((4, 400)),
            "{codec:?}: the max-timestamp record (offset 3) was deleted"
        );
    }
}

/// Issue 9, defect 2: lookups by time answer the record, not the batch.
#[test]
fn offset_for_timestamp_and_max_timestamp_are_record_granular() {
    for codec in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let dir = tempfile::tempdir().unwrap();
        let (_store, log) = open(dir.path());
        // Offsets 0..=3 with timestamps 100, 300, 200, 400; then 4..=5 with 400, 50.
        let b1 = BatchBuilder::new(100)
            .record(100, None, Some(b"a"))
            .record(300, None, Some(b"b"))
            .record(200, None, Some(b"c"))
            .record(400, None, Some(b"d"))
            .compression(codec)
            .build();
        let b2 = BatchBuilder::new(400)
            .record(400, None, Some(b"e"))
            .record(50, None, Some(b"f"))
            .compression(codec)
            .build();
        log.append_as_leader(&b1, 0).unwrap();
        log.append_as_leader(&b2, 0).unwrap();
        let at = |ts| {
            log.offset_for_timestamp(ts, i64::MAX)
                .unwrap()
                .map(|t| (t.offset, t.timestamp))
        };
        assert_eq!(at(0), Some((0, 100)), "{codec:?}");
        assert_eq!(at(150), Some((1, 300)), "{codec:?}");
        assert_eq!(at(301), Some((3, 400)), "{codec:?}");
        assert_eq!(at(401), None, "{codec:?}");
        let max = |limit| {
            log.max_timestamp_offset(limit)
                .unwrap()
                .map(|t| (t.offset, t.timestamp))
        };
        // The first record with the largest timestamp.
        assert_eq!(max(i64::MAX), Some((3, 400)), "{codec:?}");
        // Only batches below the limit (the high watermark) count.
        assert_eq!(
            log.offset_for_timestamp(301, 4).unwrap().map(|t| t.offset),
            Some(3)
        );
        assert_eq!(max(0), None);
    }
}

/// A log of 12 batches of 1-3 records in small segments (several batches each).
fn small_segments(dir: &std::path::Path) -> (Store, PartitionLog) {
    let (store, log) = open(dir);
    log.set_config(LogConfig {
        segment_bytes_max: 200,
        ..cfg()
    });
    for i in 0..12i32 {
        log.append_as_leader(&batch(1 + (i as usize % 3), 100), 0)
            .unwrap();
    }
    assert!(log.segment_count() > 3, "small segments roll");
    (store, log)
}

fn region_paths(read: &RegionRead) -> Vec<PathBuf> {
    read.chunks
        .iter()
        .map(|c| match c {
            RecordChunk::File(r) => r.path().to_path_buf(),
            RecordChunk::Bytes(_) => panic!("a region read without races copies nothing"),
        })
        .collect()
}

#[test]
fn regions_hold_exactly_the_batches_a_copying_read_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, log) = small_segments(dir.path());
    let end = log.log_end_offset();
    // (offset, max_bytes, max_offset): whole log, inside a batch, a byte limit, a high
    // watermark / last-stable-offset cut, at the cut, at the end.
    let cases = [
        (0, 1 << 20, i64::MAX),
        (1, 1 << 20, i64::MAX),
        (0, 150, i64::MAX),
        (0, 1, i64::MAX),
        (3, 1 << 20, 9),
        (9, 1 << 20, 9),
        (end, 1 << 20, i64::MAX),
    ];
    for (offset, max_bytes, max_offset) in cases {
        let copied = log.read(offset, max_bytes, max_offset).unwrap();
        let regions = log.read_regions(offset, max_bytes, max_offset).unwrap();
        let case = format!("read({offset}, {max_bytes}, {max_offset})");
        assert_eq!(regions.to_bytes().unwrap(), copied.records, "{case}");
        assert_eq!(regions.bytes, copied.records.len() as u64, "{case}");
        assert_eq!(
            regions.chunks.iter().map(RecordChunk::len).sum::<u64>(),
            regions.bytes
        );
        assert_eq!(regions.log_start_offset, copied.log_start_offset);
        assert_eq!(regions.log_end_offset, copied.log_end_offset);
        let batches = if copied.records.is_empty() {
            Vec::new()
        } else {
            validate_all(&copied.records)
        };
        let records: i64 = batches.iter().map(|(b, l)| l - b + 1).sum();
        assert_eq!(regions.records_count, records as u64, "{case}");
        assert_eq!(
            regions.next_offset,
            batches.last().map(|b| b.1 + 1),
            "{case}"
        );
        assert!(batches.iter().all(|(b, _)| *b < max_offset), "{case}");
        // One region per segment touched, each from a different file.
        let mut paths = region_paths(&regions);
        let n = paths.len();
        paths.dedup();
        assert_eq!(paths.len(), n, "{case}");
    }
    let whole = log.read_regions(0, 1 << 20, i64::MAX).unwrap();
    assert_eq!(
        whole.chunks.len(),
        log.segment_count(),
        "every segment, one region each"
    );
}

#[test]
fn a_region_outlives_the_deletion_and_replacement_of_its_segment_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, log) = small_segments(dir.path());
    let held = log.read_regions(0, 1 << 20, i64::MAX).unwrap();
    let before = held.to_bytes().unwrap();
    let paths = region_paths(&held);
    // Retention's way: the oldest segments go, their files are unlinked.
    let dropped = log.delete_segments_before(log.log_end_offset()).unwrap();
    assert!(dropped >= 2);
    assert!(!paths[0].exists(), "{} is deleted", paths[0].display());
    // Compaction's way: a file replaced by rename (the new file holds other bytes).
    let replaced = paths.last().unwrap();
    let tmp = replaced.with_extension("cleaned");
    std::fs::write(&tmp, vec![0xAB; 300]).unwrap();
    std::fs::rename(&tmp, replaced).unwrap();
    // The held regions still read the old bytes, and still count as intact.
    assert_eq!(held.to_bytes().unwrap(), before);
    for c in &held.chunks {
        let RecordChunk::File(r) = c else {
            unreachable!()
        };
        assert!(r.is_intact());
        let mut bytes = vec![0u8; r.len() as usize];
        r.read_at(&mut bytes, 0).unwrap();
        assert!(!validate_all(&bytes).is_empty());
    }
}

#[test]
fn a_region_whose_file_was_cut_is_refused_and_a_new_read_sees_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, log) = small_segments(dir.path());
    let end = log.log_end_offset();
    let held = log.read_regions(0, 1 << 20, i64::MAX).unwrap();
    let Some(RecordChunk::File(last)) = held.chunks.last() else {
        panic!("regions expected")
    };
    // A follower's truncation into the last batch cuts the active segment's file.
    log.truncate_to(end - 1).unwrap();
    let new_end = log.log_end_offset();
    assert!(new_end < end);
    assert!(!last.is_intact());
    let mut buf = vec![0u8; 1];
    assert!(last.read_at(&mut buf, 0).is_err());
    // Untouched segments' regions stay good.
    let RecordChunk::File(first) = &held.chunks[0] else {
        unreachable!()
    };
    assert!(first.is_intact());
    let after = log.read_regions(0, 1 << 20, i64::MAX).unwrap();
    assert_eq!(
        after.to_bytes().unwrap(),
        log.read(0, 1 << 20, i64::MAX).unwrap().records
    );
    let batches = validate_all(&after.to_bytes().unwrap());
    assert_eq!(batches.last().map(|b| b.1), Some(new_end - 1));
}
