//! Helpers shared by the storage integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;

use rivulet_storage::batch::{validate, BatchBuilder, BatchHeader, BatchOrigin, ValidationRules};
use rivulet_storage::{Durability, LogConfig, PartitionId, PartitionLog, Store, StoreConfig};

pub fn pid(partition: i32) -> PartitionId {
    PartitionId {
        topic_id: uuid::Uuid::from_u128(0x5eed),
        partition,
    }
}

/// Limits that never roll or delete anything unless a test sets them.
pub fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes_max: 1 << 30,
        segment_age_max_ms: -1,
        retention_bytes: -1,
        retention_ms: -1,
        batch_bytes_max: 1 << 20,
        durability: Durability::Os,
        ..LogConfig::default()
    }
}

pub fn store(dir: &Path) -> Store {
    Store::open(dir, StoreConfig::default()).expect("open store")
}

pub fn open(dir: &Path, cfg: LogConfig) -> (Store, PartitionLog) {
    let store = store(dir);
    let log = store.open_log(pid(0), cfg).expect("open log");
    (store, log)
}

/// A batch of `records` records with values of `value_len` bytes, all at `ts`.
pub fn batch(records: usize, value_len: usize, ts: i64) -> Vec<u8> {
    let value = vec![b'v'; value_len];
    let mut b = BatchBuilder::new(ts);
    for i in 0..records {
        b.push(ts, Some(format!("k{i}").as_bytes()), Some(&value));
    }
    b.build()
}

/// A one-record batch of an idempotent producer.
pub fn pbatch(producer_id: i64, epoch: i16, seq: i32, records: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(1_000).producer(producer_id, epoch, seq);
    for _ in 0..records {
        b.push(1_000, None, Some(b"x"));
    }
    b.build()
}

/// Headers of concatenated batches, as a follower would validate them.
pub fn headers(records: &[u8]) -> Vec<BatchHeader> {
    if records.is_empty() {
        return Vec::new();
    }
    validate(
        records,
        &ValidationRules {
            batch_bytes_max: usize::MAX,
            origin: BatchOrigin::Replication,
        },
    )
    .expect("stored batches validate")
    .into_iter()
    .map(|b| b.header)
    .collect()
}

/// `(base, last)` of each batch.
pub fn spans(records: &[u8]) -> Vec<(i64, i64)> {
    headers(records)
        .iter()
        .map(|h| (h.base_offset, h.last_offset()))
        .collect()
}
