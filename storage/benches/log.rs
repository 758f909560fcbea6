//! Partition log micro-benchmarks: leader appends of 1 KiB records in 16 KiB and 1 MiB
//! batches, and sequential reads.
//!
//! `cargo bench -p rivulet-storage --bench log` (about half a minute). The log lives in a
//! temporary directory on the default filesystem; durability is `Os` (no fsync) unless the
//! benchmark's name says `fsync`. Retention keeps the disk use bounded while appending, and
//! its cost is included, as in a real broker.
//!
//! `clean`: one log cleaner pass over 64 MiB of updates (256-byte values, 16 records a
//! batch, about 250,000 records) spread over 100,000 keys in 8 MiB segments, every closed
//! segment dirty; the time of the pass only (the log is written fresh before each).
//! Throughput is the bytes written; each pass prints the bytes it read and kept.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rivulet_storage::batch::BatchBuilder;
use rivulet_storage::{Durability, LogConfig, PartitionId, PartitionLog, Store, StoreConfig};

const RECORD_BYTES: usize = 1024;
const SEGMENT_BYTES_MAX: u64 = 64 << 20;
const RETENTION_BYTES: i64 = 256 << 20;

fn batch_of(records: usize) -> Vec<u8> {
    let value = vec![0xab_u8; RECORD_BYTES - 16];
    let mut b = BatchBuilder::new(1_700_000_000_000);
    for i in 0..records {
        b.push(
            1_700_000_000_000,
            Some(format!("key-{i:08}").as_bytes()),
            Some(&value),
        );
    }
    b.build()
}

fn log_cfg(durability: Durability) -> LogConfig {
    LogConfig {
        segment_bytes_max: SEGMENT_BYTES_MAX,
        segment_age_max_ms: -1,
        retention_bytes: RETENTION_BYTES,
        retention_ms: -1,
        batch_bytes_max: 2 << 20,
        durability,
        ..LogConfig::default()
    }
}

fn open(dir: &std::path::Path, durability: Durability) -> (Store, PartitionLog) {
    let store = Store::open(dir, StoreConfig::default()).expect("open store");
    let id = PartitionId {
        topic_id: uuid::Uuid::from_u128(1),
        partition: 0,
    };
    let log = store.open_log(id, log_cfg(durability)).expect("open log");
    (store, log)
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    for (name, records, durability) in [
        ("16KiB", 16, Durability::Os),
        ("1MiB", 1024, Durability::Os),
        ("16KiB_fsync", 16, Durability::EveryBatch),
    ] {
        let batch = batch_of(records);
        let dir = tempfile::tempdir().expect("tempdir");
        let (_store, log) = open(dir.path(), durability);
        let mut since_retention = 0u64;
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                log.append_as_leader(&batch, 0).expect("append");
                since_retention += batch.len() as u64;
                if since_retention >= SEGMENT_BYTES_MAX {
                    log.apply_retention(0).expect("retention");
                    since_retention = 0;
                }
            })
        });
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    const READ_BYTES_MAX: usize = 1 << 20;
    let batch = batch_of(16);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, log) = open(dir.path(), Durability::Os);
    while log.size_bytes() < 128 << 20 {
        log.append_as_leader(&batch, 0).expect("append");
    }
    let end = log.log_end_offset();
    let per_read = (READ_BYTES_MAX / batch.len() * batch.len()) as u64;
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Bytes(per_read));
    let mut offset = 0;
    group.bench_function("sequential_1MiB", |b| {
        b.iter(|| {
            if offset >= end {
                offset = 0;
            }
            let r = log.read(offset, READ_BYTES_MAX, end).expect("read");
            let batches = r.records.len() / batch.len();
            assert!(batches > 0);
            offset += (batches * 16) as i64;
            r
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

const CLEAN_KEYS: usize = 100_000;
const CLEAN_BYTES: usize = 64 << 20;
const CLEAN_VALUE_BYTES: usize = 256;

fn clean(c: &mut Criterion) {
    let mut group = c.benchmark_group("clean");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(CLEAN_BYTES as u64));
    let value = vec![0xcd_u8; CLEAN_VALUE_BYTES];
    group.bench_function("64MiB_100k_keys", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("temp dir");
                let store = Store::open(dir.path(), StoreConfig::default()).expect("open store");
                let id = PartitionId {
                    topic_id: uuid::Uuid::from_u128(2),
                    partition: 0,
                };
                let cfg = LogConfig {
                    segment_bytes_max: 8 << 20,
                    retention_bytes: -1,
                    cleanup_policy: rivulet_storage::CleanupPolicy::COMPACT,
                    dirty_ratio_min_permille: 0,
                    ..log_cfg(Durability::Os)
                };
                let log = store.open_log(id, cfg).expect("open log");
                let mut key = 0usize;
                let mut written = 0usize;
                while written < CLEAN_BYTES {
                    let mut b = BatchBuilder::new(1_700_000_000_000);
                    for _ in 0..16 {
                        b.push(
                            1_700_000_000_000,
                            Some(format!("key-{:08}", key % CLEAN_KEYS).as_bytes()),
                            Some(&value),
                        );
                        // A stride coprime with the key count: updates spread over all keys.
                        key += 7919;
                    }
                    let b = b.build();
                    written += b.len();
                    log.append_as_leader_at(&b, 0, 1_700_000_000_000)
                        .expect("append");
                }
                let started = std::time::Instant::now();
                let out = log
                    .clean(log.log_end_offset(), 1_700_000_000_000)
                    .expect("clean");
                let took = started.elapsed();
                total += took;
                assert!(out.segments_cleaned > 0, "a pass ran");
                // Criterion's throughput counts the 64 MiB written; the pass reads the closed
                // segments only, so this line gives the exact figure.
                eprintln!(
                    "clean pass: {} segments, {} -> {} bytes in {:?} ({:.0} MB/s read)",
                    out.segments_cleaned,
                    out.bytes_before,
                    out.bytes_after,
                    took,
                    out.bytes_before as f64 / took.as_secs_f64() / 1e6
                );
            }
            total
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = append, read, clean
}
criterion_main!(benches);
