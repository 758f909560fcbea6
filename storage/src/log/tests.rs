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
    std::fs::write(orphan_dir.join(file_name(0, 0)), b"old").unwrap();
    let stray = segments
        .join(format!("{}.0", id().topic_id.simple()))
        .join(file_name(4096, 0));
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
// ---- Compaction ------------------------------------------------------------------------

mod compaction {
    use super::*;
    use crate::batch::decode_batches;
    use crate::log::compact::{CrashAt, CRASH_AT};
    use crate::CleanupPolicy;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const NOW: i64 = 1_700_000_000_000;

    fn compact_cfg() -> LogConfig {
        LogConfig {
            segment_bytes_max: 2048,
            cleanup_policy: CleanupPolicy::COMPACT,
            dirty_ratio_min_permille: 0,
            tombstone_retention_ms: 1_000,
            ..cfg()
        }
    }

    fn open_compacted(dir: &std::path::Path) -> (Store, PartitionLog) {
        let store = Store::open(dir, StoreConfig::default()).unwrap();
        let log = store.open_log(id(), compact_cfg()).unwrap();
        (store, log)
    }

    /// One record per batch: `(key, value)`, `None` a tombstone.
    fn put(log: &PartitionLog, key: &str, value: Option<&str>, codec: Compression) -> i64 {
        let b = BatchBuilder::new(NOW)
            .compression(codec)
            .record(NOW, Some(key.as_bytes()), value.map(str::as_bytes))
            .build();
        let epoch = log.latest_epoch().unwrap_or(0);
        log.append_as_leader_at(&b, epoch, NOW)
            .unwrap()
            .info()
            .base_offset
    }

    /// `n` updates round-robin over `keys` keys `k0..`, the i-th with value `v<i>`.
    fn updates(log: &PartitionLog, n: usize, keys: usize) {
        for i in 0..n {
            put(
                log,
                &format!("k{}", i % keys),
                Some(&format!("v{i}")),
                Compression::None,
            );
        }
    }

    /// Every record in the log: offset -> (key, value).
    fn contents(log: &PartitionLog) -> BTreeMap<i64, (String, Option<String>)> {
        let r = log
            .read(log.log_start_offset(), usize::MAX, i64::MAX)
            .unwrap();
        let mut out = BTreeMap::new();
        let mut last = -1;
        for b in decode_batches(&r.records, 1 << 26).unwrap() {
            assert!(b.header.base_offset > last, "batches in offset order");
            last = b.header.last_offset();
            for rec in b.records {
                let k = String::from_utf8(rec.key.unwrap().to_vec()).unwrap();
                let v = rec.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
                assert!(out.insert(rec.offset, (k, v)).is_none());
            }
        }
        out
    }

    /// The latest record of each key in `history` (offset -> (key, value)).
    fn latest(
        history: &BTreeMap<i64, (String, Option<String>)>,
    ) -> BTreeMap<String, (i64, Option<String>)> {
        let mut m = BTreeMap::new();
        for (o, (k, v)) in history {
            m.insert(k.clone(), (*o, v.clone()));
        }
        m
    }

    #[test]
    fn cleaning_keeps_the_latest_record_of_every_key_at_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, log) = open_compacted(dir.path());
        updates(&log, 200, 7);
        let before = contents(&log);
        let size_before = log.size_bytes();
        let segments = log.segment_count();
        assert!(segments > 3, "small segments: {segments}");
        let hw = log.log_end_offset();
        let out = log.clean(hw, NOW).unwrap();
        assert_eq!(out.segments_cleaned, segments - 1, "every closed segment");
        let after = contents(&log);
        let active_base = log.shared.segments.read().last().unwrap().base_offset;
        assert_eq!(out.first_dirty_offset, active_base);
        for (k, (o, v)) in latest(&before) {
            assert_eq!(after.get(&o), Some(&(k.clone(), v)), "latest of {k} at {o}");
        }
        // Below the cleaner point, a key appears once (its latest there: later values in the
        // active segment supersede it only in a later pass, as in Kafka).
        let cleaned_part: BTreeMap<_, _> = before
            .clone()
            .into_iter()
            .filter(|(o, _)| *o < active_base)
            .collect();
        for (o, rec) in &after {
            assert_eq!(before.get(o), Some(rec), "a kept record is unchanged");
            if *o < active_base {
                assert_eq!(
                    latest(&cleaned_part)[&rec.0].0,
                    *o,
                    "one record per key below the cleaner point"
                );
            }
        }
        assert!(
            log.size_bytes() < size_before / 2,
            "{} -> {}",
            size_before,
            log.size_bytes()
        );
        assert_eq!(
            log.shared.cleaner.stats().segments_swapped,
            (segments - 1) as u64
        );
        // The same after a restart, and appends go on at the same offset.
        drop(log);
        drop(_store);
        let (_store, log) = open_compacted(dir.path());
        assert_eq!(contents(&log), after);
        assert_eq!(log.log_end_offset(), hw);
        assert_eq!(put(&log, "k0", Some("new"), Compression::None), hw);
        // No stale generation is left on disk.
        let files = std::fs::read_dir(&log.shared.dir).unwrap().count();
        assert_eq!(files, log.segment_count());
    }

    #[test]
    fn compressed_batches_are_rewritten_with_their_codec() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, log) = open_compacted(dir.path());
        for i in 0..40 {
            let b = BatchBuilder::new(NOW)
                .compression(Compression::Lz4)
                .record(NOW, Some(format!("a{}", i % 3).as_bytes()), Some(b"x"))
                .record(NOW, Some(format!("b{i}").as_bytes()), Some(b"y"))
                .build();
            log.append_as_leader_at(&b, 0, NOW).unwrap();
        }
        let before = contents(&log);
        log.clean(log.log_end_offset(), NOW).unwrap();
        let r = log.read(0, usize::MAX, i64::MAX).unwrap();
        for b in decode_batches(&r.records, 1 << 26).unwrap() {
            assert_eq!(b.header.compression(), Compression::Lz4.id(), "codec kept");
        }
        let after = contents(&log);
        for (k, (o, v)) in latest(&before) {
            assert_eq!(after.get(&o), Some(&(k, v)));
        }
        assert!(after.len() < before.len());
    }

    #[test]
    fn tombstones_stay_for_delete_retention_ms_after_their_segment_was_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, log) = open_compacted(dir.path());
        for i in 0..60 {
            put(&log, &format!("k{}", i % 3), Some("v"), Compression::None);
        }
        let gone = put(&log, "k0", None, Compression::None);
        for i in 0..60 {
            put(
                &log,
                &format!("k{}", 1 + i % 2),
                Some("w"),
                Compression::None,
            );
        }
        let hw = log.log_end_offset();
        log.clean(hw, NOW).unwrap();
        let after = contents(&log);
        assert_eq!(
            after.get(&gone),
            Some(&("k0".into(), None)),
            "tombstone kept at first"
        );
        assert!(!after.values().any(|(k, v)| k == "k0" && v.is_some()));
        // Within delete.retention.ms (1 s here) it stays; after it, the next pass drops it.
        log.set_config(LogConfig {
            dirty_ratio_min_permille: 0,
            ..compact_cfg()
        });
        put(&log, "k9", Some("roll"), Compression::None);
        log.clean(hw, NOW + 999).unwrap();
        assert!(contents(&log).contains_key(&gone));
        // A pass runs only with something dirty: roll one more segment.
        for i in 0..40 {
            put(
                &log,
                &format!("k{}", 1 + i % 2),
                Some("z"),
                Compression::None,
            );
        }
        log.clean(log.log_end_offset(), NOW + 1_000).unwrap();
        let after = contents(&log);
        assert!(
            !after.contains_key(&gone),
            "tombstone removed after delete.retention.ms"
        );
        assert!(!after.values().any(|(k, _)| k == "k0"));
    }

    #[test]
    fn nothing_at_or_above_the_high_watermark_or_in_the_active_segment_is_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, log) = open_compacted(dir.path());
        for i in 0..100 {
            put(&log, "same", Some(&format!("v{i}")), Compression::None);
        }
        let before = contents(&log);
        let second = log.shared.segments.read()[1].clone();
        // The high watermark inside the second segment: only the first may be cleaned.
        let out = log.clean(second.base_offset + 1, NOW).unwrap();
        assert_eq!(out.segments_cleaned, 1);
        assert_eq!(out.first_dirty_offset, second.base_offset);
        let after = contents(&log);
        for (o, rec) in &before {
            if *o >= second.base_offset {
                assert_eq!(
                    after.get(o),
                    Some(rec),
                    "offset {o} is above the cleaned range"
                );
            }
        }
        assert!(after.len() < before.len());
        assert!(after.contains_key(&99));
    }

    #[test]
    fn a_compacted_topic_refuses_keyless_records_and_keeps_no_time_retention() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, log) = open_compacted(dir.path());
        let keyless = batch(1, NOW);
        let err = log.append_as_leader_at(&keyless, 0, NOW).unwrap_err();
        assert!(matches!(err, StorageError::InvalidRecord(_)), "{err}");
        for i in 0..50 {
            put(&log, &format!("k{i}"), Some("v"), Compression::None);
        }
        log.set_config(LogConfig {
            retention_ms: 0,
            ..compact_cfg()
        });
        assert_eq!(
            log.apply_retention(NOW + 1_000_000).unwrap(),
            0,
            "compact only: no deletion"
        );
        log.set_config(LogConfig {
            retention_ms: 0,
            cleanup_policy: CleanupPolicy {
                delete: true,
                compact: true,
            },
            ..compact_cfg()
        });
        assert!(
            log.apply_retention(NOW + 1_000_000).unwrap() > 0,
            "compact,delete: both"
        );
    }

    #[test]
    fn min_compaction_lag_and_dirty_ratio_hold_the_cleaner_back() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, log) = open_compacted(dir.path());
        updates(&log, 100, 1);
        let hw = log.log_end_offset();
        log.set_config(LogConfig {
            compaction_lag_min_ms: 10_000,
            ..compact_cfg()
        });
        assert_eq!(
            log.clean(hw, NOW + 5_000).unwrap().segments_cleaned,
            0,
            "records too young"
        );
        assert!(log.clean(hw, NOW + 10_001).unwrap().segments_cleaned > 0);
        for i in 0..100 {
            put(&log, "k", Some(&format!("w{i}")), Compression::None);
        }
        log.set_config(compact_cfg());
        // All dirty again, but the clean part is tiny: a ratio of 1.0 is never reached... unless
        // everything is dirty, so check a ratio above the state's.
        let state = log.cleaner_state(log.log_end_offset(), NOW);
        assert!(state.dirty_ratio_permille() > 0 && state.dirty_ratio_permille() < 1000);
        log.set_config(LogConfig {
            dirty_ratio_min_permille: state.dirty_ratio_permille() + 1,
            ..compact_cfg()
        });
        assert_eq!(
            log.clean(log.log_end_offset(), NOW)
                .unwrap()
                .segments_cleaned,
            0
        );
        log.set_config(LogConfig {
            dirty_ratio_min_permille: state.dirty_ratio_permille() + 1,
            compaction_lag_max_ms: 1_000,
            ..compact_cfg()
        });
        assert!(
            log.clean(log.log_end_offset(), NOW + 2_000)
                .unwrap()
                .segments_cleaned
                > 0,
            "max.compaction.lag.ms"
        );
    }

    #[test]
    fn producer_state_and_leader_epochs_survive_cleaning_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (store, log) = open_compacted(dir.path());
        let mut last = Vec::new();
        for i in 0..60i32 {
            let epoch = if i < 30 { 1 } else { 2 };
            last = BatchBuilder::new(NOW)
                .producer(42, 0, i)
                .record(NOW, Some(b"k"), Some(format!("v{i}").as_bytes()))
                .build();
            log.append_as_leader_at(&last, epoch, NOW).unwrap();
        }
        // A later plain write of the same key supersedes every batch of the producer: its last
        // batch must stay (empty) for its sequence numbers, and the first batch of each epoch.
        put(&log, "k", Some("final"), Compression::None);
        for _ in 0..40 {
            put(&log, "other", Some("x"), Compression::None);
        }
        let epochs_before = log.epoch_entries();
        log.clean(log.log_end_offset(), NOW).unwrap();
        let check = |log: &PartitionLog| {
            assert_eq!(log.epoch_entries(), epochs_before, "epoch starts kept");
            // A retry of the producer's last batch is still a duplicate.
            let again = log.append_as_leader_at(&last, 2, NOW).unwrap();
            assert!(matches!(again, AppendOutcome::Duplicate(_)), "{again:?}");
        };
        check(&log);
        drop(log);
        drop(store);
        let (_store, log) = open_compacted(dir.path());
        check(&log);
    }

    #[test]
    fn a_reader_holding_the_old_file_keeps_reading_it_after_the_swap() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, log) = open_compacted(dir.path());
        updates(&log, 100, 1);
        let first = log.shared.segments.read()[0].clone();
        let old_path = first.file.path().to_path_buf();
        let mut whole = vec![0u8; first.size_bytes as usize];
        log.clean(log.log_end_offset(), NOW).unwrap();
        assert!(!old_path.exists(), "old generation unlinked");
        assert!(
            first.file.read_exact_at(&mut whole, 0).unwrap(),
            "still readable by handle"
        );
        assert_eq!(validate_all(&whole).first().map(|b| b.0), Some(0));
    }

    #[test]
    fn a_follower_takes_a_cleaned_leaders_batches_with_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, leader) = open_compacted(dir.path());
        updates(&leader, 100, 4);
        leader.clean(leader.log_end_offset(), NOW).unwrap();
        let fdir = tempfile::tempdir().unwrap();
        let fstore = Store::open(fdir.path(), StoreConfig::default()).unwrap();
        let follower = fstore.open_log(id(), compact_cfg()).unwrap();
        let r = leader.read(0, usize::MAX, i64::MAX).unwrap();
        follower.append_as_follower(&r.records).unwrap();
        assert_eq!(follower.log_end_offset(), leader.log_end_offset());
        assert_eq!(contents(&follower), contents(&leader));
        drop(follower);
        drop(fstore);
        let fstore = Store::open(fdir.path(), StoreConfig::default()).unwrap();
        let follower = fstore.open_log(id(), compact_cfg()).unwrap();
        assert_eq!(
            contents(&follower),
            contents(&leader),
            "gaps survive a restart"
        );
        // Truncation into a gap ends the log there.
        let c = contents(&follower);
        let last = *c.keys().last().unwrap();
        let gap = (1..last).rev().find(|o| !c.contains_key(o)).unwrap();
        follower.truncate_to(gap).unwrap();
        assert_eq!(follower.log_end_offset(), gap);
        let kept: BTreeMap<_, _> = c.into_iter().filter(|(o, _)| *o < gap).collect();
        assert_eq!(contents(&follower), kept);
    }

    /// A crash at each step of the swap leaves the old or the new segment, never a mix, and
    /// every latest value readable; the next pass finishes the job.
    #[test]
    fn a_crash_at_any_step_of_the_swap_loses_nothing() {
        for at in [CrashAt::BeforeIndexCommit, CrashAt::BeforeOldFileRemoval] {
            let dir = tempfile::tempdir().unwrap();
            let (before, hw) = {
                let (_store, log) = open_compacted(dir.path());
                updates(&log, 150, 5);
                let before = contents(&log);
                CRASH_AT.with(|c| c.set(Some(at)));
                let r = log.clean(log.log_end_offset(), NOW);
                CRASH_AT.with(|c| c.set(None));
                assert!(r.is_err(), "{at:?}: injected crash");
                (before, log.log_end_offset())
            };
            let (_store, log) = open_compacted(dir.path());
            let after = contents(&log);
            assert_eq!(log.log_end_offset(), hw, "{at:?}");
            for (k, (o, v)) in latest(&before) {
                assert_eq!(after.get(&o), Some(&(k, v)), "{at:?}: latest value kept");
            }
            for (o, rec) in &after {
                assert_eq!(before.get(o), Some(rec), "{at:?}: nothing invented");
            }
            let files = std::fs::read_dir(&log.shared.dir).unwrap().count();
            assert_eq!(
                files,
                log.segment_count(),
                "{at:?}: orphan generation removed"
            );
            log.clean(hw, NOW).unwrap();
            let cleaned = contents(&log);
            assert_eq!(latest(&cleaned), latest(&before), "{at:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// After any history of updates and deletes, cleaned at any high watermark: every
        /// key's latest record below the watermark is readable at its original offset with
        /// its value, nothing at or above the first dirty offset changed, offsets strictly
        /// increase, and a reopen reads the same.
        #[test]
        fn compaction_keeps_every_latest_record(
            ops in proptest::collection::vec((0u8..6, proptest::option::weighted(0.85, 0u16..1000)), 1..300),
            hw_at in 0.0f64..=1.0,
            codec in prop_oneof![Just(Compression::None), Just(Compression::Zstd), Just(Compression::Gzip)],
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (store, log) = open_compacted(dir.path());
            for (k, v) in &ops {
                put(&log, &format!("key-{k}"), v.map(|v| format!("{v}")).as_deref(), codec);
            }
            let before = contents(&log);
            let hw = (log.log_end_offset() as f64 * hw_at) as i64;
            let out = log.clean(hw, NOW).unwrap();
            let after = contents(&log);
            // Latest values (per key, over the whole log) are all there.
            for (k, (o, v)) in latest(&before) {
                prop_assert_eq!(after.get(&o), Some(&(k, v)));
            }
            // Kept records are unchanged; everything at or above the first dirty offset stays.
            for (o, rec) in &after {
                prop_assert_eq!(before.get(o), Some(rec));
            }
            for (o, rec) in &before {
                if *o >= out.first_dirty_offset {
                    prop_assert_eq!(after.get(o), Some(rec), "offset {} above the cleaner point", o);
                }
            }
            let offsets: Vec<i64> = after.keys().copied().collect();
            prop_assert!(offsets.windows(2).all(|w| w[0] < w[1]));
            prop_assert_eq!(log.log_end_offset(), before.keys().last().map_or(0, |o| o + 1));
            drop(log);
            drop(store);
            let (_store, log) = open_compacted(dir.path());
            prop_assert_eq!(contents(&log), after);
        }
    }
}
