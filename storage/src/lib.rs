//! Rivulet's storage: the on-disk partition log and the metadata store, on [fjall].
//!
//! One fjall [`fjall::Database`] per node (under the directory given to [`Store::open`]) holds
//! every partition log of the node and the node's metadata. The crate is synchronous: fjall
//! calls block on disk I/O, so callers in async code run them on blocking threads.
//!
//! # On-disk layout
//!
//! A partition log is a list of **segments**; each segment is **one fjall keyspace**, so
//! retention drops a whole segment with `Database::delete_keyspace` (fjall has no range
//! delete) and never rewrites data.
//!
//! ```text
//!  Database (one per node, <dir>/)
//!  ├─ keyspace "_meta"                             topics and producer-id reservations
//!  │    "topic/<name>"        -> TopicMeta as JSON
//!  │    "producer_id_block"   -> u64 BE: end of the reserved producer-id block
//!  ├─ keyspace "log.<topic uuid, 32 hex>.<partition>.<base offset, 20 digits>"   segment 0
//!  │    'D' + base offset (u64 BE) -> record batch bytes, exactly as stored by the leader
//!  │    'I' + base offset (u64 BE) -> 45-byte index entry (below)
//!  ├─ keyspace "log.<same partition>.00000000000000004096"                      segment 1
//!  │    ...
//!  └─ keyspace "log.<other partition>..."
//!
//!  index entry (big-endian, fixed size, version byte first):
//!  ┌───┬────────────┬───────────┬───────────┬──────┬────────┬───────┬───────┬──────┬─────┐
//!  │ver│last offset │ max ts    │producer id│p.epoch│base seq│records│ leader│ size │attrs│
//!  │u8 │ i64        │ i64       │ i64       │ i16  │ i32    │ i32   │ epoch │ u32  │ i16 │
//!  └───┴────────────┴───────────┴───────────┴──────┴────────┴───────┴───────┴──────┴─────┘
//! ```
//!
//! A batch's data (`D`) and index entry (`I`) are written in one atomic fjall write batch.
//! The segment's base offset lives in the keyspace name, so an empty segment still tells the
//! log end offset after a restart. Batch values are large, so segment keyspaces use fjall's
//! key-value separation (values live in blob files, the LSM tree holds the small keys and
//! index entries).
//!
//! # Recovery
//!
//! [`Store::open_log`] lists the partition's segment keyspaces and scans their index entries
//! only (never the batch data) to rebuild: segment sizes and timestamps, the log end offset,
//! the leader-epoch cache and the idempotent-producer state.
//!
//! # Durability and cost
//!
//! fjall has **one journal per database**, shared by every log of the node. An append is
//! written to the journal (handed to the OS: a killed process loses nothing acknowledged)
//! and to a memtable; fjall's background workers later flush memtables into blob files. So
//! each byte is written twice (journal, then blob file): on a disk doing ~380 MB/s that caps
//! appends near half of it. [`Durability::EveryBatch`] fsyncs the journal per append; a
//! [`PartitionLog::sync`] or [`Store::sync`] fsyncs it for every log at once (group commit
//! for free). Before a segment rolls the journal is fsynced, so a power loss cannot leave a
//! hole in front of a newer segment.
//!
//! Reads look up index entries and fetch batch values by key: cheap, no data is scanned.
//! Recovery and [`PartitionLog::truncate_to`] scan every index entry of the log (45 bytes
//! per batch), not the batch data.
//!
//! # Threads
//!
//! [`Store`], [`PartitionLog`] and [`MetadataStore`] are `Clone + Send + Sync`. A log has one
//! writer at a time (appends, truncation, retention serialise on a mutex); reads and the
//! offset and epoch getters never wait for that mutex. Every call may block on disk.
//!
//! # Module map
//!
//! - [`batch`]: the record batch v2 format and the one record codec below `broker` — header
//!   parsing, validation (size, magic, CRC-32C, codec, every record walked, timestamps),
//!   patching of base offset, leader epoch and max timestamp, decoding of whole records
//!   (headers, compressed batches: [`batch::decode_batches`]) and encoding
//!   ([`batch::BatchBuilder`]).
//! - `log` ([`PartitionLog`]): append (leader and follower), read, truncate, retention,
//!   recovery; its producer-state and leader-epoch caches are plain structs with their own
//!   unit tests.
//! - `metadata` ([`MetadataStore`]): topics and producer-id allocation.
//! - `store` ([`Store`]): the database, opening and deleting logs.
//! - `space`: the free-space floor ([`StoreConfig::free_bytes_min`]) that keeps fjall from
//!   running out of disk, which would poison the whole database until a restart.
//!
//! # What this crate must not know
//!
//! No tokio, no ractor, no Kafka wire protocol beyond the record batch format (no request
//! framing, no error codes: `broker` maps [`StorageError`] to Kafka codes), no cluster facts
//! (leadership and epochs are handed in as arguments).

pub mod batch;
mod error;
mod log;
mod metadata;
mod space;
mod store;

use std::collections::BTreeMap;

pub use bytes::Bytes;

pub use batch::TimestampType;
pub use error::{Result, StorageError};
pub use log::PartitionLog;
pub use metadata::{MetadataStore, PRODUCER_ID_BLOCK_SIZE};
pub use store::Store;

/// Identity of a partition on disk: the topic's uuid (not its name, so a deleted and
/// recreated topic never sees old data) and the partition index.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct PartitionId {
    /// The topic's id.
    pub topic_id: uuid::Uuid,
    /// Partition index.
    pub partition: i32,
}

impl std::fmt::Display for PartitionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic_id, self.partition)
    }
}

/// When an append is made durable (fsynced).
///
/// Every append is handed to the operating system before it returns, so a killed *process*
/// loses nothing acknowledged whatever the setting; the setting is about power loss and
/// kernel crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the journal before every append returns.
    EveryBatch,
    /// The owner calls [`PartitionLog::sync`] every so many milliseconds.
    IntervalMs(u64),
    /// Leave it to the operating system (Kafka's default; replication provides durability).
    Os,
}

/// Per-partition limits; changeable at run time with [`PartitionLog::set_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment before the active one would grow past this many bytes.
    pub segment_bytes_max: u64,
    /// Roll when an incoming batch's max timestamp is more than this many milliseconds after
    /// the max timestamp of the active segment's first batch (Kafka's `segment.ms` rule, which
    /// uses record timestamps rather than a clock). Negative: never.
    pub segment_age_max_ms: i64,
    /// Drop oldest segments while the log is larger than this. Negative: no size limit.
    pub retention_bytes: i64,
    /// Drop oldest segments whose newest record is older than this. Negative: keep forever.
    pub retention_ms: i64,
    /// Largest accepted record batch, in bytes (header included).
    pub batch_bytes_max: usize,
    /// When appends are fsynced.
    pub durability: Durability,
    /// `message.timestamp.type`: keep the producer's timestamps or use the append time.
    pub timestamp_type: batch::TimestampType,
    /// `message.timestamp.before.max.ms`: how far before the leader's clock a record's
    /// timestamp may be (`CreateTime` only).
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far after the leader's clock a record's
    /// timestamp may be (`CreateTime` only).
    pub timestamp_after_max_ms: i64,
}

impl Default for LogConfig {
    /// Kafka's topic defaults: 1 GiB / 7 day segments, 7 days retention, no size limit,
    /// 1 MiB batches, fsync left to the OS, `CreateTime` timestamps from any past up to one
    /// hour ahead of the leader's clock (Kafka 4.0).
    fn default() -> Self {
        Self {
            segment_bytes_max: 1 << 30,
            segment_age_max_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            retention_ms: 7 * 24 * 3600 * 1000,
            batch_bytes_max: 1024 * 1024 + 12,
            durability: Durability::Os,
            timestamp_type: batch::TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
        }
    }
}

/// Node-wide storage settings, given to [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// fjall block cache size in bytes.
    pub cache_bytes: u64,
    /// Memory for all memtables together before fjall flushes. 0 leaves fjall's default
    /// (no global limit); otherwise at least 1 MiB (raised if lower).
    pub write_buffer_bytes_max: u64,
    /// Journal size before fjall flushes memtables to reclaim it; at least 64 MiB (raised if
    /// lower, fjall's minimum).
    pub journal_bytes_max: u64,
    /// Appends are refused ([`StorageError::DiskFull`]) while the filesystem of the store has
    /// fewer free bytes than this, and accepted again above it plus 10%. It is the headroom
    /// that keeps fjall from running out of disk (which poisons the whole database until a
    /// restart): fjall must be able to flush its memtables (up to `write_buffer_bytes_max`),
    /// and the Raft log, topic metadata and deletes keep writing. 0 turns the check off.
    pub free_bytes_min: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            cache_bytes: 64 * 1024 * 1024,
            write_buffer_bytes_max: 256 * 1024 * 1024,
            journal_bytes_max: 512 * 1024 * 1024,
            free_bytes_min: 320 * 1024 * 1024,
        }
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record of the first batch.
    pub base_offset: i64,
    /// Offset of the last record of the last batch.
    pub last_offset: i64,
    /// Largest max timestamp of the batches.
    pub max_timestamp: i64,
    /// Number of records appended.
    pub records_count: i32,
}

/// Result of a leader append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The batches were written.
    Appended(AppendInfo),
    /// An idempotent producer retried a batch that is already in the log: nothing was
    /// written; the info is that of the original batch.
    Duplicate(AppendInfo),
}

impl AppendOutcome {
    /// The info, whether appended now or before.
    pub fn info(&self) -> AppendInfo {
        match self {
            AppendOutcome::Appended(i) | AppendOutcome::Duplicate(i) => *i,
        }
    }
}

/// Result of [`PartitionLog::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole record batches, concatenated; empty at the end of the log.
    pub records: Bytes,
    /// First offset of the log at the time of the read.
    pub log_start_offset: i64,
    /// Log end offset at the time of the read.
    pub log_end_offset: i64,
}

/// Answer of [`PartitionLog::offset_for_timestamp`] and
/// [`PartitionLog::max_timestamp_offset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// Offset of the record found.
    pub offset: i64,
    /// Its timestamp.
    pub timestamp: i64,
}

/// A topic as the metadata store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// Topic id; partition logs are keyed by it.
    pub id: uuid::Uuid,
    /// Number of partitions.
    pub partitions: i32,
    /// Replication factor.
    pub replication_factor: i16,
    /// Topic configs (Kafka names).
    pub configs: BTreeMap<String, String>,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
}
