//! Partition log and producer state, through the public API.

mod common;

use common::{batch, cfg, headers, open, pbatch, pid, spans, store};
use rivulet_storage::batch::{set_base_offset, set_partition_leader_epoch, BatchBuilder};
use rivulet_storage::{AppendOutcome, Durability, LogConfig, StorageError, TimestampOffset};

fn appended(o: AppendOutcome) -> rivulet_storage::AppendInfo {
    match o {
        AppendOutcome::Appended(i) => i,
        AppendOutcome::Duplicate(i) => panic!("unexpected duplicate {i:?}"),
    }
}

mod append_and_read {
    use super::*;

    #[test]
    fn offsets_are_assigned_and_only_offset_and_epoch_are_patched() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(dir.path(), cfg());
        let a = batch(3, 10, 100);
        let b = batch(2, 10, 200);
        let c = batch(4, 10, 150);
        let i1 = appended(log.append_as_leader(&a, 5).unwrap());
        assert_eq!(
            (
                i1.base_offset,
                i1.last_offset,
                i1.records_count,
                i1.max_timestamp
            ),
            (0, 2, 3, 100)
        );
        let mut two = b.clone();
        two.extend_from_slice(&c);
        let i2 = appended(log.append_as_leader(&two, 6).unwrap());
        assert_eq!(
            (
                i2.base_offset,
                i2.last_offset,
                i2.records_count,
                i2.max_timestamp
            ),
            (3, 8, 6, 200)
        );
        assert_eq!(log.log_end_offset(), 9);

        let r = log.read(0, usize::MAX, i64::MAX).unwrap();
        assert_eq!((r.log_start_offset, r.log_end_offset), (0, 9));
        assert_eq!(spans(&r.records), vec![(0, 2), (3, 4), (5, 8)]);
        let hs = headers(&r.records);
        assert_eq!(
            hs.iter()
                .map(|h| h.partition_leader_epoch)
                .collect::<Vec<_>>(),
            vec![5, 6, 6]
        );
        // Everything but base offset and leader epoch is stored exactly as sent.
        let mut expected = Vec::new();
        for (orig, (base, epoch)) in [(&a, (0, 5)), (&b, (3, 6)), (&c, (5, 6))] {
            let mut x = orig.clone();
            set_base_offset(&mut x, base).unwrap();
            set_partition_leader_epoch(&mut x, epoch).unwrap();
            expected.extend_from_slice(&x);
        }
        assert_eq!(&r.records[..], &expected[..]);
        assert_eq!(log.size_bytes(), expected.len() as u64);
    }

    #[test]
    fn read_starts_with_the_batch_containing_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(dir.path(), cfg());
        for n in [3, 3, 3] {
            log.append_as_leader(&batch(n, 8, 1), 0).unwrap();
        }
        assert_eq!(
            spans(&log.read(4, usize::MAX, i64::MAX).unwrap().records),
            vec![(3, 5), (6, 8)]
        );
        assert_eq!(
            spans(&log.read(3, usize::MAX, i64::MAX).unwrap().records),
            vec![(3, 5), (6, 8)]
        );
        assert_eq!(
            spans(&log.read(8, usize::MAX, i64::MAX).unwrap().records),
            vec![(6, 8)]
        );
    }

    #[test]
    fn max_bytes_limits_but_one_whole_batch_always_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(dir.path(), cfg());
        let b = batch(2, 100, 1);
        let size = b.len();
        for _ in 0..4 {
            log.append_as_leader(&b, 0).unwrap();
        }
        assert_eq!(
            spans(&log.read(0, 0, i64::MAX).unwrap().records),
            vec![(0, 1)]
        );
        assert_eq!(
            spans(&log.read(0, size - 1, i64::MAX).unwrap().records),
            vec![(0, 1)]
        );
        assert_eq!(
            spans(&log.read(0, 2 * size, i64::MAX).unwrap().records).len(),
            2
        );
        assert_eq!(
            spans(&log.read(0, 3 * size - 1, i64::MAX).unwrap().records).len(),
            2
        );
        assert_eq!(
            spans(&log.read(2, 10 * size, i64::MAX).unwrap().records).len(),
            3
        );
    }

    #[test]
    fn reads_stop_at_max_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(dir.path(), cfg());
        for _ in 0..3 {
            log.append_as_leader(&batch(2, 8, 1), 0).unwrap();
        }
        assert_eq!(
            spans(&log.read(0, usize::MAX, 4).unwrap().records),
            vec![(0, 1), (2, 3)]
        );
        assert_eq!(
            spans(&log.read(0, usize::MAX, 3).unwrap().records),
            vec![(0, 1), (2, 3)]
        );
        assert!(log.read(4, usize::MAX, 4).unwrap().records.is_empty());
        assert!(log.read(0, usize::MAX, 0).unwrap().records.is_empty());
    }

    #[test]
    fn log_end_reads_empty_and_outside_is_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(dir.path(), cfg());
        let r = log.read(0, 100, i64::MAX).unwrap();
        assert!(r.records.is_empty());
        assert_eq!((r.log_start_offset, r.log_end_offset), (0, 0));
        log.append_as_leader(&batch(2, 8, 1), 0).unwrap();
        assert!(log.read(2, 100, i64::MAX).unwrap().records.is_empty());
        for bad in [3, -1, i64::MAX] {
            assert!(matches!(
                log.read(bad, 100, i64::MAX),
                Err(StorageError::OffsetOutOfRange {
                    log_start: 0,
                    log_end: 2,
                    ..
                })
            ));
        }
    }

    #[test]
    fn a_bad_batch_anywhere_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(dir.path(), cfg());
        let mut records = batch(2, 8, 1);
        let mut bad = batch(2, 8, 1);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        records.extend_from_slice(&bad);
        assert!(matches!(
            log.append_as_leader(&records, 0),
            Err(StorageError::CorruptBatch(_))
        ));
        let too_big = batch(1, 2 << 20, 1);
        assert!(matches!(
            log.append_as_leader(&too_big, 0),
            Err(StorageError::BatchTooLarge { .. })
        ));
        assert!(matches!(
            log.append_as_leader(&[], 0),
            Err(StorageError::CorruptBatch(_))
        ));
        let mut v1 = batch(1, 8, 1);
        v1[16] = 1;
        assert!(matches!(
            log.append_as_leader(&v1, 0),
            Err(StorageError::UnsupportedMagic(1))
        ));
        assert_eq!(log.log_end_offset(), 0);
        assert_eq!(log.size_bytes(), 0);
        assert!(log
            .read(0, usize::MAX, i64::MAX)
            .unwrap()
            .records
            .is_empty());
    }

    #[test]
    fn everything_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let (_s, log) = open(
                dir.path(),
                LogConfig {
                    segment_bytes_max: 500,
                    ..cfg()
                },
            );
            for i in 0..20 {
                log.append_as_leader(&batch(1 + i % 3, 50, 10 * i as i64), (i / 5) as i32)
                    .unwrap();
            }
            assert!(log.segment_count() > 3);
            (
                log.read(0, usize::MAX, i64::MAX).unwrap(),
                log.segment_count(),
                log.size_bytes(),
                log.latest_epoch(),
                log.last_epoch_end_offset(1),
            )
        };
        let (_s, log) = open(dir.path(), cfg());
        let after = (
            log.read(0, usize::MAX, i64::MAX).unwrap(),
            log.segment_count(),
            log.size_bytes(),
            log.latest_epoch(),
            log.last_epoch_end_offset(1),
        );
        assert_eq!(before, after);
    }

    #[test]
    fn every_batch_durability_and_sync_work() {
        let dir = tempfile::tempdir().unwrap();
        let (store, log) = open(
            dir.path(),
            LogConfig {
                durability: Durability::EveryBatch,
                ..cfg()
            },
        );
        log.append_as_leader(&batch(1, 8, 1), 0).unwrap();
        log.sync().unwrap();
        store.sync().unwrap();
        assert_eq!(log.log_end_offset(), 1);
    }

    #[test]
    fn concurrent_readers_see_whole_contiguous_batches_during_appends_and_retention() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(
            dir.path(),
            LogConfig {
                segment_bytes_max: 4096,
                retention_bytes: 8192,
                ..cfg()
            },
        );
        let writer = {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..300 {
                    log.append_as_leader(&batch(1 + i % 4, 64, i as i64), 0)
                        .unwrap();
                    if i % 40 == 39 {
                        // Segments disappear under the readers' feet.
                        assert!(log.apply_retention(0).unwrap() > 0);
                    }
                }
            })
        };
        // 300 batches of 1..=4 records: 75 * (1 + 2 + 3 + 4) records.
        const END: i64 = 750;
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut offset = 0;
                    // Bounded: a stuck writer fails the test instead of hanging it.
                    for _ in 0..10_000_000 {
                        if offset == END {
                            break;
                        }
                        let r = match log.read(offset, 1000, i64::MAX) {
                            Ok(r) => r,
                            Err(StorageError::OffsetOutOfRange { log_start, .. }) => {
                                assert!(log_start > offset);
                                offset = log_start;
                                continue;
                            }
                            Err(e) => panic!("{e}"),
                        };
                        let s = spans(&r.records);
                        if let Some(first) = s.first() {
                            assert!(first.0 <= offset && offset <= first.1, "{first:?} {offset}");
                        }
                        for w in s.windows(2) {
                            assert_eq!(w[0].1 + 1, w[1].0);
                        }
                        if let Some(last) = s.last() {
                            offset = last.1 + 1;
                        } else {
                            std::thread::yield_now();
                        }
                    }
                    offset
                })
            })
            .collect();
        writer.join().unwrap();
        assert_eq!(log.log_end_offset(), END);
        for r in readers {
            assert_eq!(r.join().unwrap(), END);
        }
    }
}

mod segments {
    use super::*;

    #[test]
    fn segments_roll_by_size_and_reads_cross_them() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(1, 100, 1);
        let (_s, log) = open(
            dir.path(),
            LogConfig {
                segment_bytes_max: 2 * b.len() as u64,
                ..cfg()
            },
        );
        for _ in 0..7 {
            log.append_as_leader(&b, 0).unwrap();
        }
        assert_eq!(log.segment_count(), 4);
        let all = log.read(0, usize::MAX, i64::MAX).unwrap();
        assert_eq!(
            spans(&all.records),
            (0..7).map(|o| (o, o)).collect::<Vec<_>>()
        );
        // A batch bigger than a segment gets a segment of its own.
        log.set_config(LogConfig {
            segment_bytes_max: 10,
            ..cfg()
        });
        log.append_as_leader(&b, 0).unwrap();
        log.append_as_leader(&b, 0).unwrap();
        assert_eq!(log.segment_count(), 6);
    }

    #[test]
    fn segments_roll_by_record_time() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(
            dir.path(),
            LogConfig {
                segment_age_max_ms: 1000,
                ..cfg()
            },
        );
        log.append_as_leader(&batch(1, 8, 10_000), 0).unwrap();
        log.append_as_leader(&batch(1, 8, 11_000), 0).unwrap();
        assert_eq!(log.segment_count(), 1);
        log.append_as_leader(&batch(1, 8, 11_001), 0).unwrap();
        assert_eq!(log.segment_count(), 2);
    }

    #[test]
    fn retention_by_size_drops_whole_oldest_segments_but_never_the_active_one() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(2, 100, 1);
        let seg = 2 * b.len() as u64;
        let (_s, log) = open(
            dir.path(),
            LogConfig {
                segment_bytes_max: seg,
                ..cfg()
            },
        );
        for _ in 0..7 {
            log.append_as_leader(&b, 0).unwrap();
        }
        assert_eq!(log.segment_count(), 4);
        assert_eq!(log.apply_retention(0).unwrap(), 0, "no limit set");
        log.set_config(LogConfig {
            segment_bytes_max: seg,
            retention_bytes: 3 * b.len() as i64,
            ..cfg()
        });
        assert_eq!(log.apply_retention(0).unwrap(), 2);
        assert_eq!((log.segment_count(), log.log_start_offset()), (2, 8));
        assert_eq!(log.size_bytes(), 3 * b.len() as u64);
        assert!(matches!(
            log.read(7, 100, i64::MAX),
            Err(StorageError::OffsetOutOfRange { log_start: 8, .. })
        ));
        assert_eq!(
            spans(&log.read(8, usize::MAX, i64::MAX).unwrap().records)[0],
            (8, 9)
        );
        log.set_config(LogConfig {
            retention_bytes: 0,
            ..cfg()
        });
        assert_eq!(log.apply_retention(0).unwrap(), 1);
        assert_eq!(
            (
                log.segment_count(),
                log.log_start_offset(),
                log.log_end_offset()
            ),
            (1, 12, 14)
        );
        assert_eq!(
            log.apply_retention(0).unwrap(),
            0,
            "the active segment stays"
        );
    }

    #[test]
    fn retention_by_time_uses_the_newest_batch_of_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        let b = |ts| batch(1, 100, ts);
        let seg = 2 * b(0).len() as u64;
        let (_s, log) = open(
            dir.path(),
            LogConfig {
                segment_bytes_max: seg,
                retention_ms: 100,
                ..cfg()
            },
        );
        for ts in [1_000, 5_000, 2_000, 2_100, 9_000, 9_500] {
            log.append_as_leader(&b(ts), 0).unwrap();
        }
        assert_eq!(log.segment_count(), 3);
        // Segment 0 is kept alive by its 5_000 batch.
        assert_eq!(log.apply_retention(5_100).unwrap(), 0);
        assert_eq!(log.apply_retention(5_101).unwrap(), 2);
        assert_eq!(log.log_start_offset(), 4);
        assert_eq!(log.apply_retention(i64::MAX).unwrap(), 0);
    }

    #[test]
    fn log_start_after_retention_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(1, 100, 1);
        {
            let (_s, log) = open(
                dir.path(),
                LogConfig {
                    segment_bytes_max: b.len() as u64,
                    retention_bytes: 0,
                    ..cfg()
                },
            );
            for _ in 0..5 {
                log.append_as_leader(&b, 3).unwrap();
            }
            assert_eq!(log.apply_retention(0).unwrap(), 4);
            assert_eq!(log.last_epoch_end_offset(3), Some((3, 5)));
        }
        let (_s, log) = open(dir.path(), cfg());
        assert_eq!(
            (
                log.log_start_offset(),
                log.log_end_offset(),
                log.segment_count()
            ),
            (4, 5, 1)
        );
        assert_eq!(log.last_epoch_end_offset(3), Some((3, 5)));
    }
}

mod truncation {
    use super::*;

    fn three_batches() -> (
        tempfile::TempDir,
        rivulet_storage::Store,
        rivulet_storage::PartitionLog,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (s, log) = open(dir.path(), cfg());
        for (n, epoch) in [(3, 1), (3, 2), (3, 4)] {
            log.append_as_leader(&batch(n, 8, 1), epoch).unwrap();
        }
        (dir, s, log)
    }

    #[test]
    fn truncating_inside_a_batch_removes_the_whole_batch() {
        let (_d, _s, log) = three_batches();
        log.truncate_to(4).unwrap();
        assert_eq!(log.log_end_offset(), 3);
        assert_eq!(
            spans(&log.read(0, usize::MAX, i64::MAX).unwrap().records),
            vec![(0, 2)]
        );
        assert_eq!(log.latest_epoch(), Some(1));
        assert_eq!(log.last_epoch_end_offset(4), Some((1, 3)));
        let info = appended(log.append_as_leader(&batch(1, 8, 1), 5).unwrap());
        assert_eq!(info.base_offset, 3);
    }

    #[test]
    fn truncating_at_a_boundary_keeps_the_batch_before() {
        let (_d, _s, log) = three_batches();
        log.truncate_to(6).unwrap();
        assert_eq!(log.log_end_offset(), 6);
        assert_eq!(log.last_epoch_end_offset(2), Some((2, 6)));
        assert_eq!(log.last_epoch_end_offset(4), Some((2, 6)));
        log.truncate_to(100).unwrap();
        log.truncate_to(6).unwrap();
        assert_eq!(log.log_end_offset(), 6);
        log.truncate_to(0).unwrap();
        assert_eq!(
            (
                log.log_start_offset(),
                log.log_end_offset(),
                log.latest_epoch()
            ),
            (0, 0, None)
        );
        assert!(matches!(
            log.truncate_to(-1),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
    }

    #[test]
    fn truncation_drops_later_segments_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(2, 100, 1);
        {
            let (_s, log) = open(
                dir.path(),
                LogConfig {
                    segment_bytes_max: b.len() as u64,
                    ..cfg()
                },
            );
            for _ in 0..6 {
                log.append_as_leader(&b, 0).unwrap();
            }
            assert_eq!(log.segment_count(), 6);
            log.truncate_to(5).unwrap();
            assert_eq!(
                (log.segment_count(), log.log_end_offset(), log.size_bytes()),
                (3, 4, 2 * b.len() as u64)
            );
        }
        let (_s, log) = open(dir.path(), cfg());
        assert_eq!((log.segment_count(), log.log_end_offset()), (3, 4));
        assert_eq!(
            spans(&log.read(0, usize::MAX, i64::MAX).unwrap().records),
            vec![(0, 1), (2, 3)]
        );
        assert_eq!(
            appended(log.append_as_leader(&b, 0).unwrap()).base_offset,
            4
        );
    }

    #[test]
    fn an_empty_log_keeps_its_end_offset_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_s, log) = open(dir.path(), cfg());
            log.append_as_leader(&batch(2, 8, 1), 0).unwrap();
            log.truncate_fully_and_start_at(500).unwrap();
            assert_eq!(
                (
                    log.log_start_offset(),
                    log.log_end_offset(),
                    log.size_bytes()
                ),
                (500, 500, 0)
            );
        }
        let (_s, log) = open(dir.path(), cfg());
        assert_eq!(
            (
                log.log_start_offset(),
                log.log_end_offset(),
                log.segment_count()
            ),
            (500, 500, 1)
        );
        assert!(log.read(500, 100, i64::MAX).unwrap().records.is_empty());
        assert_eq!(
            appended(log.append_as_leader(&batch(1, 8, 1), 0).unwrap()).base_offset,
            500
        );
    }

    #[test]
    fn truncating_below_the_log_start_restarts_the_log_there() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(1, 100, 1);
        let (_s, log) = open(
            dir.path(),
            LogConfig {
                segment_bytes_max: b.len() as u64,
                retention_bytes: 0,
                ..cfg()
            },
        );
        for _ in 0..4 {
            log.append_as_leader(&b, 0).unwrap();
        }
        log.apply_retention(0).unwrap();
        assert_eq!(log.log_start_offset(), 3);
        log.truncate_to(1).unwrap();
        assert_eq!(
            (
                log.log_start_offset(),
                log.log_end_offset(),
                log.segment_count()
            ),
            (1, 1, 1)
        );
    }
}

mod follower_and_epochs {
    use super::*;

    /// A follower copies the leader's log whatever its own `max.message.bytes`: the limit is
    /// checked when a client produces, and it may differ between nodes (a per-broker dynamic
    /// default) or have been lowered after larger batches were written (Kafka's followers do
    /// not apply it either). Refusing stalled replication for good.
    #[test]
    fn follower_appends_ignore_the_batch_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(
            dir.path(),
            LogConfig {
                batch_bytes_max: 100,
                ..cfg()
            },
        );
        let big = BatchBuilder::new(7)
            .offsets(0, 1)
            .record(7, None, Some(&[b'x'; 3000]))
            .build();
        assert!(big.len() > 3000);
        let info = log.append_as_follower(&big).unwrap();
        assert_eq!((info.base_offset, info.last_offset), (0, 0));
        // A client batch over the limit is still refused.
        assert!(matches!(
            log.append_as_leader(&batch(1, 3000, 7), 1),
            Err(StorageError::BatchTooLarge { .. })
        ));
    }

    #[test]
    fn follower_appends_must_continue_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(dir.path(), cfg());
        let at = |base, epoch, n| {
            BatchBuilder::new(7)
                .offsets(base, epoch)
                .record(7, None, Some(b"x"))
                .build()
                .repeat(n)
        };
        assert_eq!(log.append_as_follower(&at(0, 2, 1)).unwrap().last_offset, 0);
        assert!(matches!(
            log.append_as_follower(&at(5, 2, 1)),
            Err(StorageError::UnexpectedBaseOffset {
                expected: 1,
                got: 5
            })
        ));
        // On a compacted topic the leader's cleaned segments have gaps: they are taken.
        log.set_config(LogConfig {
            cleanup_policy: rivulet_storage::CleanupPolicy::COMPACT,
            ..cfg()
        });
        let keyed = |base| {
            BatchBuilder::new(7)
                .offsets(base, 2)
                .record(7, Some(b"k"), Some(b"x"))
                .build()
        };
        assert!(
            log.append_as_follower(&keyed(0)).is_err(),
            "never backwards"
        );
        assert_eq!(log.append_as_follower(&keyed(3)).unwrap().last_offset, 3);
        assert!(matches!(
            log.append_as_follower(&keyed(4)),
            Ok(info) if info.base_offset == 4
        ));
        log.truncate_to(1).unwrap();
        log.set_config(cfg());
        // Two batches both claiming offset 1: the second is not contiguous.
        assert!(matches!(
            log.append_as_follower(&at(1, 2, 2)),
            Err(StorageError::UnexpectedBaseOffset {
                expected: 2,
                got: 1
            })
        ));
        let mut two = at(1, 3, 1);
        two.extend_from_slice(&at(2, 5, 1));
        let info = log.append_as_follower(&two).unwrap();
        assert_eq!(
            (info.base_offset, info.last_offset, info.records_count),
            (1, 2, 2)
        );
        assert_eq!(log.latest_epoch(), Some(5));
        assert_eq!(log.last_epoch_end_offset(2), Some((2, 1)));
        assert_eq!(log.last_epoch_end_offset(4), Some((3, 2)));
        assert_eq!(log.last_epoch_end_offset(9), Some((5, 3)));
        assert_eq!(log.last_epoch_end_offset(1), None);
        // Stored as received.
        assert_eq!(
            &log.read(1, usize::MAX, i64::MAX).unwrap().records[..],
            &two[..]
        );
    }

    #[test]
    fn a_deposed_leader_is_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(dir.path(), cfg());
        log.append_as_leader(&batch(1, 8, 1), 4).unwrap();
        assert!(matches!(
            log.append_as_leader(&batch(1, 8, 1), 3),
            Err(StorageError::FencedLeaderEpoch {
                epoch: 3,
                latest: 4
            })
        ));
        log.append_as_leader(&batch(1, 8, 1), 4).unwrap();
        log.append_as_leader(&batch(1, 8, 1), 6).unwrap();
        assert_eq!(log.last_epoch_end_offset(5), Some((4, 2)));
        assert_eq!(log.last_epoch_end_offset(6), Some((6, 3)));
    }

    #[test]
    fn offset_for_timestamp_finds_the_first_batch_reaching_the_time() {
        let dir = tempfile::tempdir().unwrap();
        let b = |ts| batch(2, 100, ts);
        let (_s, log) = open(
            dir.path(),
            LogConfig {
                segment_bytes_max: 2 * b(0).len() as u64,
                ..cfg()
            },
        );
        for ts in [100, 300, 200, 500, 400] {
            log.append_as_leader(&b(ts), 0).unwrap();
        }
        let at = |ts| log.offset_for_timestamp(ts, i64::MAX).unwrap();
        assert_eq!(
            at(0),
            Some(TimestampOffset {
                offset: 0,
                timestamp: 100
            })
        );
        assert_eq!(
            at(150),
            Some(TimestampOffset {
                offset: 2,
                timestamp: 300
            })
        );
        assert_eq!(
            at(300),
            Some(TimestampOffset {
                offset: 2,
                timestamp: 300
            })
        );
        assert_eq!(
            at(301),
            Some(TimestampOffset {
                offset: 6,
                timestamp: 500
            })
        );
        assert_eq!(at(501), None);
    }
}

mod idempotence {
    use super::*;

    #[test]
    fn a_retried_batch_is_a_duplicate_with_the_original_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(dir.path(), cfg());
        let first = appended(log.append_as_leader(&pbatch(9, 0, 0, 3), 0).unwrap());
        log.append_as_leader(&batch(1, 8, 1), 0).unwrap();
        let second = appended(log.append_as_leader(&pbatch(9, 0, 3, 2), 0).unwrap());
        assert_eq!(
            log.append_as_leader(&pbatch(9, 0, 0, 3), 0).unwrap(),
            AppendOutcome::Duplicate(first)
        );
        assert_eq!(
            log.append_as_leader(&pbatch(9, 0, 3, 2), 0).unwrap(),
            AppendOutcome::Duplicate(second)
        );
        assert_eq!(log.log_end_offset(), 6);
    }

    #[test]
    fn gaps_and_old_epochs_are_refused_and_new_epochs_restart_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(dir.path(), cfg());
        log.append_as_leader(&pbatch(9, 1, 40, 2), 0).unwrap(); // unknown producer: any start
        assert!(matches!(
            log.append_as_leader(&pbatch(9, 1, 43, 1), 0),
            Err(StorageError::OutOfOrderSequence {
                producer_id: 9,
                expected: 42,
                got: 43
            })
        ));
        assert!(matches!(
            log.append_as_leader(&pbatch(9, 0, 42, 1), 0),
            Err(StorageError::InvalidProducerEpoch {
                producer_id: 9,
                epoch: 0,
                current: 1
            })
        ));
        assert!(matches!(
            log.append_as_leader(&pbatch(9, 2, 5, 1), 0),
            Err(StorageError::OutOfOrderSequence {
                expected: 0,
                got: 5,
                ..
            })
        ));
        log.append_as_leader(&pbatch(9, 2, 0, 1), 0).unwrap();
        assert!(matches!(
            log.append_as_leader(&pbatch(9, 1, 42, 1), 0),
            Err(StorageError::InvalidProducerEpoch { current: 2, .. })
        ));
        assert_eq!(log.log_end_offset(), 3);
    }

    #[test]
    fn one_request_with_consecutive_batches_of_one_producer() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(dir.path(), cfg());
        let mut req = pbatch(1, 0, 0, 2);
        req.extend_from_slice(&pbatch(1, 0, 2, 2));
        appended(log.append_as_leader(&req, 0).unwrap());
        let mut bad = pbatch(1, 0, 4, 1);
        bad.extend_from_slice(&pbatch(1, 0, 6, 1));
        assert!(matches!(
            log.append_as_leader(&bad, 0),
            Err(StorageError::OutOfOrderSequence { .. })
        ));
        assert_eq!(
            log.log_end_offset(),
            4,
            "nothing of a refused request is written"
        );
    }

    #[test]
    fn producer_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let (_s, log) = open(dir.path(), cfg());
            let first = appended(log.append_as_leader(&pbatch(9, 3, 0, 2), 0).unwrap());
            log.append_as_leader(&pbatch(9, 3, 2, 2), 0).unwrap();
            first
        };
        let (_s, log) = open(dir.path(), cfg());
        assert_eq!(
            log.append_as_leader(&pbatch(9, 3, 0, 2), 0).unwrap(),
            AppendOutcome::Duplicate(first)
        );
        assert!(matches!(
            log.append_as_leader(&pbatch(9, 3, 5, 1), 0),
            Err(StorageError::OutOfOrderSequence { expected: 4, .. })
        ));
        assert!(matches!(
            log.append_as_leader(&pbatch(9, 2, 4, 1), 0),
            Err(StorageError::InvalidProducerEpoch { .. })
        ));
        appended(log.append_as_leader(&pbatch(9, 3, 4, 1), 0).unwrap());
    }

    #[test]
    fn a_follower_learns_producer_state_for_when_it_leads() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(dir.path(), cfg());
        let mut b = pbatch(4, 0, 0, 2);
        set_base_offset(&mut b, 0).unwrap();
        log.append_as_follower(&b).unwrap();
        assert!(
            matches!(log.append_as_leader(&pbatch(4, 0, 0, 2), 1).unwrap(), AppendOutcome::Duplicate(i) if i.base_offset == 0)
        );
        appended(log.append_as_leader(&pbatch(4, 0, 2, 1), 1).unwrap());
    }
}

mod store_lifecycle {
    use super::*;

    #[test]
    fn reopening_a_log_closes_the_old_handle() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let old = s.open_log(pid(1), cfg()).unwrap();
        old.append_as_leader(&batch(1, 8, 1), 0).unwrap();
        let new = s.open_log(pid(1), cfg()).unwrap();
        assert!(old.is_closed() && !new.is_closed());
        assert!(matches!(
            old.append_as_leader(&batch(1, 8, 1), 0),
            Err(StorageError::LogClosed(_))
        ));
        assert!(matches!(
            old.read(0, 10, 10),
            Err(StorageError::LogClosed(_))
        ));
        assert_eq!(new.log_end_offset(), 1);
        assert_eq!(
            appended(new.append_as_leader(&batch(1, 8, 1), 0).unwrap()).base_offset,
            1
        );
    }

    #[test]
    fn deleted_logs_come_back_empty_and_other_logs_are_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let small = LogConfig {
            segment_bytes_max: 100,
            ..cfg()
        };
        let a = s.open_log(pid(1), small.clone()).unwrap();
        let b = s.open_log(pid(10), small.clone()).unwrap();
        for _ in 0..3 {
            a.append_as_leader(&batch(1, 80, 1), 0).unwrap();
            b.append_as_leader(&batch(1, 80, 1), 0).unwrap();
        }
        assert_eq!(s.log_ids(), vec![pid(1), pid(10)]);
        // The files hold the batches back to back, across several segments each.
        assert!(a.segment_count() > 1);
        assert_eq!(
            s.segments_disk_bytes().unwrap(),
            a.size_bytes() + b.size_bytes()
        );
        s.delete_log(pid(1)).unwrap();
        assert!(a.is_closed());
        drop(a);
        assert_eq!(s.log_ids(), vec![pid(10)]);
        assert_eq!(s.segments_disk_bytes().unwrap(), b.size_bytes());
        let a = s.open_log(pid(1), small.clone()).unwrap();
        assert_eq!(
            (a.log_start_offset(), a.log_end_offset(), a.segment_count()),
            (0, 0, 1)
        );
        assert_eq!(b.log_end_offset(), 3);
        assert_eq!(
            spans(&b.read(0, usize::MAX, i64::MAX).unwrap().records).len(),
            3
        );
        // A log that was never opened in this process can be deleted too.
        drop((a, b));
        drop(s);
        let s = store(dir.path());
        s.delete_log(pid(10)).unwrap();
        assert_eq!(s.log_ids(), vec![pid(1)]);
        assert_eq!(s.open_log(pid(10), small).unwrap().log_end_offset(), 0);
    }
}

/// Transactions on the log: markers, producer state, the last stable offset and the
/// aborted-transactions index (issue 14; docs/semantics.md, "Transactions").
mod transactions {
    use super::*;
    use proptest::prelude::*;
    use rivulet_storage::batch::control::TxnMarker;
    use rivulet_storage::{AbortedTransaction, ActiveProducer};

    const TRANSACTIONAL: i16 = 1 << 4;

    /// A transactional batch of `records` records.
    fn tbatch(producer_id: i64, epoch: i16, seq: i32, records: usize) -> Vec<u8> {
        let mut b =
            BatchBuilder::new(1_000)
                .attributes(TRANSACTIONAL)
                .producer(producer_id, epoch, seq);
        for _ in 0..records {
            b.push(1_000, None, Some(b"t"));
        }
        b.build()
    }

    fn marker(producer_id: i64, epoch: i16, commit: bool) -> TxnMarker {
        TxnMarker {
            producer_id,
            producer_epoch: epoch,
            coordinator_epoch: 0,
            commit,
        }
    }

    fn aborted(producer_id: i64, first_offset: i64, last_offset: i64) -> AbortedTransaction {
        AbortedTransaction {
            producer_id,
            first_offset,
            last_offset,
        }
    }

    #[test]
    fn commit_and_abort_move_the_last_stable_offset_and_fill_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(dir.path(), cfg());
        log.append_as_leader(&batch(2, 4, 1_000), 0).unwrap(); // 0..=1 plain
        log.append_as_leader(&tbatch(1, 0, 0, 2), 0).unwrap(); // 2..=3 txn of 1
        log.append_as_leader(&tbatch(2, 0, 0, 1), 0).unwrap(); // 4 txn of 2
        log.append_as_leader(&tbatch(1, 0, 2, 1), 0).unwrap(); // 5 txn of 1 again
        let end = log.log_end_offset();
        assert_eq!(end, 6);
        assert_eq!(
            log.last_stable_offset(end),
            2,
            "producer 1's transaction is open"
        );
        assert_eq!(log.last_stable_offset(1), 1, "capped at the high watermark");
        let c = log.append_marker(&marker(1, 0, true), 0).unwrap();
        assert_eq!((c.base_offset, c.last_offset), (6, 6));
        // Not stable until the high watermark passes the marker.
        assert_eq!(log.last_stable_offset(6), 2);
        assert_eq!(log.last_stable_offset(7), 4, "producer 2's is still open");
        let a = log.append_marker(&marker(2, 0, false), 0).unwrap();
        assert_eq!(a.base_offset, 7);
        assert_eq!(log.last_stable_offset(8), 8);
        assert_eq!(
            log.aborted_transactions(0, 8).unwrap(),
            vec![aborted(2, 4, 7)]
        );
        assert_eq!(
            log.aborted_transactions(5, 8).unwrap(),
            vec![aborted(2, 4, 7)]
        );
        assert!(
            log.aborted_transactions(0, 4).unwrap().is_empty(),
            "starts at 4"
        );
        assert!(
            log.aborted_transactions(8, 9).unwrap().is_empty(),
            "ended at 7"
        );
        // The markers are control batches in the log, with the leader's offsets.
        let r = log.read(6, usize::MAX, i64::MAX).unwrap();
        let hs = headers(&r.records);
        assert!(hs.iter().all(|h| h.is_control() && h.is_transactional()));
        assert_eq!(spans(&r.records), vec![(6, 6), (7, 7)]);
    }

    #[test]
    fn markers_are_fenced_by_producer_epoch_and_written_without_a_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(dir.path(), cfg());
        log.append_as_leader(&tbatch(1, 3, 0, 1), 0).unwrap(); // 0
        let err = log.append_marker(&marker(1, 2, false), 0).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::InvalidProducerEpoch {
                    epoch: 2,
                    current: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(log.log_end_offset(), 1, "nothing written");
        // No open transaction for producer 9: written anyway (an abort records its own
        // offset, as Kafka does).
        log.append_marker(&marker(9, 0, false), 0).unwrap(); // 1
        assert_eq!(
            log.aborted_transactions(0, 2).unwrap(),
            vec![aborted(9, 1, 1)]
        );
        // A marker of a bumped epoch (a timeout abort) fences the producer's old epoch.
        log.append_marker(&marker(1, 4, false), 0).unwrap(); // 2
        assert_eq!(log.last_stable_offset(3), 3);
        let err = log.append_as_leader(&tbatch(1, 3, 1, 1), 0).unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidProducerEpoch { .. }),
            "{err}"
        );
        // The new epoch starts at sequence 0.
        log.append_as_leader(&tbatch(1, 4, 0, 1), 0).unwrap(); // 3
        assert_eq!(log.last_stable_offset(4), 3);
        // A stale leader epoch is refused like any leader append.
        let err = log.append_marker(&marker(1, 4, true), 0);
        assert!(err.is_ok());
        log.append_as_leader(&batch(1, 1, 1_000), 5).unwrap();
        assert!(matches!(
            log.append_marker(&marker(1, 4, true), 4),
            Err(StorageError::FencedLeaderEpoch { .. })
        ));
        // Clients can never send a control batch themselves.
        let forged = marker(1, 4, true).encode(1_000);
        assert!(matches!(
            log.append_as_leader(&forged, 5),
            Err(StorageError::InvalidRecord(_))
        ));
    }

    #[test]
    fn active_producers_show_open_transactions_and_nothing_for_closed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let producer = |producer_id, producer_epoch, last_sequence, start| ActiveProducer {
            producer_id,
            producer_epoch,
            last_sequence,
            last_timestamp: 1_000,
            current_txn_start_offset: start,
        };
        let expected = vec![
            producer(1, 0, 2, 0), // open since 0
            producer(2, 3, 0, -1),
            producer(5, 0, 1, -1), // idempotent, never transactional
        ];
        {
            let (_s, log) = open(dir.path(), cfg());
            assert!(log.active_producers().is_empty());
            log.append_as_leader(&tbatch(1, 0, 0, 2), 0).unwrap(); // 0..=1
            log.append_as_leader(&tbatch(2, 3, 0, 1), 0).unwrap(); // 2
            log.append_as_leader(&tbatch(1, 0, 2, 1), 0).unwrap(); // 3, same transaction
            assert_eq!(
                log.active_producers()[1],
                producer(2, 3, 0, 2),
                "open until its marker"
            );
            log.append_marker(&marker(2, 3, true), 0).unwrap(); // 4
            log.append_as_leader(&pbatch(5, 0, 0, 2), 0).unwrap(); // 5..=6
            assert_eq!(log.active_producers(), expected);
            log.sync().unwrap();
        }
        let (_s, log) = open(dir.path(), cfg());
        assert_eq!(log.active_producers(), expected, "rebuilt at open");
        log.append_marker(&marker(1, 0, false), 0).unwrap();
        assert_eq!(
            log.active_producers()[0].current_txn_start_offset,
            -1,
            "aborted"
        );
    }

    #[test]
    fn open_transactions_and_the_index_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_s, log) = open(dir.path(), cfg());
            log.append_as_leader(&tbatch(1, 0, 0, 2), 0).unwrap(); // 0..=1
            log.append_as_leader(&tbatch(2, 0, 0, 1), 0).unwrap(); // 2
            log.append_marker(&marker(2, 0, false), 0).unwrap(); // 3
            log.append_as_leader(&tbatch(3, 0, 0, 1), 0).unwrap(); // 4
            log.append_marker(&marker(3, 0, true), 0).unwrap(); // 5
            log.sync().unwrap();
        }
        let (_s, log) = open(dir.path(), cfg());
        assert_eq!(log.log_end_offset(), 6);
        assert_eq!(
            log.last_stable_offset(6),
            0,
            "producer 1's transaction is still open"
        );
        assert_eq!(
            log.aborted_transactions(0, 6).unwrap(),
            vec![aborted(2, 2, 3)]
        );
        // Its epoch is still known, so a stale marker is still fenced.
        assert!(log.append_marker(&marker(2, -1, true), 0).is_err());
        log.append_marker(&marker(1, 0, false), 0).unwrap(); // 6
        assert_eq!(log.last_stable_offset(7), 7);
        assert_eq!(
            log.aborted_transactions(0, 7).unwrap(),
            vec![aborted(2, 2, 3), aborted(1, 0, 6)]
        );
    }

    #[test]
    fn followers_derive_the_same_state_from_replicated_markers() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let leader = store.open_log(pid(0), cfg()).unwrap();
        let follower = store.open_log(pid(1), cfg()).unwrap();
        leader.append_as_leader(&tbatch(1, 0, 0, 2), 0).unwrap(); // 0..=1
        leader.append_as_leader(&tbatch(2, 0, 0, 1), 0).unwrap(); // 2
        leader.append_marker(&marker(1, 0, false), 0).unwrap(); // 3
        leader.append_as_leader(&batch(1, 1, 1_000), 0).unwrap(); // 4
        let bytes = leader.read(0, usize::MAX, i64::MAX).unwrap().records;
        follower.append_as_follower(&bytes).unwrap();
        for log in [&leader, &follower] {
            assert_eq!(log.last_stable_offset(5), 2);
            assert_eq!(
                log.aborted_transactions(0, 5).unwrap(),
                vec![aborted(1, 0, 3)]
            );
        }
        // After a failover the follower ends producer 2's transaction itself.
        follower.append_marker(&marker(2, 0, true), 1).unwrap(); // 5
        assert_eq!(follower.last_stable_offset(6), 6);
        assert!(follower.append_marker(&marker(1, -1, true), 1).is_err());
    }

    #[test]
    fn truncation_reopens_and_drops_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(dir.path(), cfg());
        log.append_as_leader(&batch(1, 1, 1_000), 0).unwrap(); // 0
        log.append_as_leader(&tbatch(1, 0, 0, 1), 0).unwrap(); // 1
        log.append_marker(&marker(1, 0, false), 0).unwrap(); // 2
        log.append_as_leader(&tbatch(2, 0, 0, 1), 0).unwrap(); // 3
        assert_eq!(
            log.aborted_transactions(0, 4).unwrap(),
            vec![aborted(1, 1, 2)]
        );
        // Cutting the marker reopens producer 1's transaction and drops its abort.
        log.truncate_to(2).unwrap();
        assert_eq!(log.last_stable_offset(2), 1);
        assert!(log.aborted_transactions(0, 2).unwrap().is_empty());
        // Cutting its first batch drops it.
        log.truncate_to(1).unwrap();
        assert_eq!(log.last_stable_offset(1), 1);
        assert_eq!(log.last_stable_offset(5), 5, "nothing open");
        // The producer starts again as a new transaction.
        log.append_as_leader(&tbatch(1, 0, 0, 1), 1).unwrap(); // 1
        assert_eq!(log.last_stable_offset(2), 1);
        // And after a reset the log knows no transaction at all.
        log.truncate_fully_and_start_at(10).unwrap();
        assert_eq!(log.last_stable_offset(10), 10);
    }

    #[test]
    fn retention_and_log_start_moves_drop_entries_wholly_below() {
        let dir = tempfile::tempdir().unwrap();
        let small = LogConfig {
            segment_bytes_max: 1,
            ..cfg()
        };
        let (_s, log) = open(dir.path(), small);
        log.append_as_leader(&tbatch(1, 0, 0, 1), 0).unwrap(); // 0
        log.append_marker(&marker(1, 0, false), 0).unwrap(); // 1
        log.append_as_leader(&tbatch(2, 0, 0, 1), 0).unwrap(); // 2
        log.append_as_leader(&tbatch(3, 0, 0, 1), 0).unwrap(); // 3
        log.append_marker(&marker(2, 0, false), 0).unwrap(); // 4
        log.append_as_leader(&batch(1, 1, 1_000), 0).unwrap(); // 5
        log.append_marker(&marker(3, 0, false), 0).unwrap(); // 6
        log.append_as_leader(&batch(1, 1, 1_000), 0).unwrap(); // 7
        assert_eq!(log.segment_count(), 8, "one batch per segment");
        assert_eq!(log.aborted_transactions(0, 8).unwrap().len(), 3);
        log.delete_segments_before(3).unwrap();
        assert_eq!(log.log_start_offset(), 3);
        // Producer 1's ended at 1 (gone); producer 2's straddles the start and stays.
        assert_eq!(
            log.aborted_transactions(0, 8).unwrap(),
            vec![aborted(2, 2, 4), aborted(3, 3, 6)]
        );
        log.advance_log_start(6).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            log.aborted_transactions(0, 8).unwrap(),
            vec![aborted(3, 3, 6)]
        );
    }

    #[test]
    fn the_index_query_stops_once_nothing_below_the_bound_was_open() {
        let dir = tempfile::tempdir().unwrap();
        let (_s, log) = open(dir.path(), cfg());
        log.append_as_leader(&tbatch(1, 0, 0, 1), 0).unwrap(); // 0
        log.append_as_leader(&tbatch(2, 0, 0, 1), 0).unwrap(); // 1
        log.append_marker(&marker(2, 0, false), 0).unwrap(); // 2
        for _ in 0..3 {
            log.append_as_leader(&batch(1, 1, 1_000), 0).unwrap(); // 3, 4, 5
        }
        log.append_marker(&marker(1, 0, false), 0).unwrap(); // 6: long, started at 0
        log.append_as_leader(&tbatch(3, 0, 0, 1), 0).unwrap(); // 7
        log.append_marker(&marker(3, 0, false), 0).unwrap(); // 8
                                                             // A fetch of [3, 5) overlaps producer 1's (0..=6) but not 2's (ended at 2) nor 3's.
        assert_eq!(
            log.aborted_transactions(3, 5).unwrap(),
            vec![aborted(1, 0, 6)]
        );
        assert_eq!(
            log.aborted_transactions(0, 9).unwrap(),
            vec![aborted(2, 1, 2), aborted(1, 0, 6), aborted(3, 7, 8)]
        );
    }

    /// One step of the property test.
    #[derive(Debug, Clone)]
    enum Op {
        Data { producer: i64, transactional: bool },
        Marker { producer: i64, commit: bool },
        Truncate { back: i64 },
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0i64..3, any::<bool>()).prop_map(|(producer, transactional)| Op::Data { producer, transactional }),
            3 => (0i64..3, any::<bool>()).prop_map(|(producer, commit)| Op::Marker { producer, commit }),
            1 => (1i64..4).prop_map(|back| Op::Truncate { back }),
            1 => Just(Op::Reopen),
        ]
    }

    /// What the log should say, replayed from its batches: (offset, producer, kind) where
    /// kind is None for data (Some(transactional)), or a marker.
    #[derive(Debug, Clone, Copy)]
    enum Entry {
        Data { producer: i64, transactional: bool },
        Marker { producer: i64, commit: bool },
    }

    fn expected(history: &[(i64, Entry)]) -> (Option<i64>, Vec<AbortedTransaction>) {
        let mut open: std::collections::HashMap<i64, i64> = Default::default();
        let mut aborts = Vec::new();
        for (offset, e) in history {
            match *e {
                Entry::Data {
                    producer,
                    transactional: true,
                } => {
                    open.entry(producer).or_insert(*offset);
                }
                Entry::Data { .. } => {}
                Entry::Marker { producer, commit } => {
                    let first = open.remove(&producer).unwrap_or(*offset);
                    if !commit {
                        aborts.push(aborted(producer, first, *offset));
                    }
                }
            }
        }
        (open.values().min().copied(), aborts)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(32),
            max_shrink_iters: 1_000,
            ..ProptestConfig::default()
        })]

        /// Any sequence of transactional and plain batches, markers, truncations and restarts:
        /// the last stable offset and the aborted index equal a replay of the log's batches.
        #[test]
        fn lso_and_index_match_a_replay_of_the_log(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let mut handle = open(dir.path(), cfg());
            let mut history: Vec<(i64, Entry)> = Vec::new();
            // Sequences per producer (epoch 0 throughout), taken from the log's own history.
            let next_seq = |history: &[(i64, Entry)], p: i64| {
                history.iter().filter(|(_, e)| matches!(e, Entry::Data { producer, .. } if *producer == p)).count() as i32
            };
            for op in ops {
                let log = &handle.1;
                match op {
                    Op::Data { producer, transactional } => {
                        let seq = next_seq(&history, producer);
                        let b = if transactional {
                            tbatch(producer, 0, seq, 1)
                        } else {
                            pbatch(producer, 0, seq, 1)
                        };
                        let i = appended(log.append_as_leader(&b, 0).unwrap());
                        history.push((i.base_offset, Entry::Data { producer, transactional }));
                    }
                    Op::Marker { producer, commit } => {
                        let i = log.append_marker(&marker(producer, 0, commit), 0).unwrap();
                        history.push((i.base_offset, Entry::Marker { producer, commit }));
                    }
                    Op::Truncate { back } => {
                        let to = (log.log_end_offset() - back).max(0);
                        log.truncate_to(to).unwrap();
                        history.retain(|(o, _)| *o < to);
                    }
                    Op::Reopen => {
                        log.sync().unwrap();
                        drop(handle);
                        handle = open(dir.path(), cfg());
                    }
                }
                let log = &handle.1;
                let end = log.log_end_offset();
                let (first_open, aborts) = expected(&history);
                prop_assert_eq!(log.last_stable_offset(end), first_open.unwrap_or(end));
                prop_assert_eq!(log.aborted_transactions(0, end.max(1)).unwrap(), aborts);
            }
        }
    }
}
