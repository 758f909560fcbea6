//! Rivulet's storage: the on-disk partition log, on [fjall].
//!
//! One fjall [`fjall::Database`] per node (under the directory given to [`Store::open`]) holds
//! every partition log of the node; other crates keep their own keyspaces in it through
//! [`Store::database`] (the controller's Raft log and state machine). Topics and producer ids
//! are cluster facts and live in the controller's state machine, not here. The crate is
//! synchronous: fjall
//! calls block on disk I/O, so callers in async code run them on blocking threads.
//!
//! # On-disk layout (log format 2)
//!
//! A partition log is a list of **segments**. Each segment is **one file** holding the record
//! batches back to back, exactly as stored by the leader (base offset and partition leader
//! epoch patched in place: both lie outside the CRC), and **one fjall keyspace** holding a
//! small index entry per batch. Each batch's bytes are written once, to the file; fjall keeps
//! what it is good at (small ordered keys): the index, producer and epoch facts carried in
//! the entries. Retention drops a whole segment: `Database::delete_keyspace` (fjall
//! has no range delete) and an unlink, and never rewrites data.
//!
//! ```text
//!  <dir>/                                          the fjall database (journal, tables)
//!  ├─ keyspace "_meta"                             the log format marker
//!  │    "log_format"          -> 2                 (older directories may also hold
//!  │                                                "topic/*" and "producer_id_block"
//!  │                                                keys: nothing reads them any more)
//!  ├─ keyspace "log.<topic uuid, 32 hex>.<partition>.<base offset, 20 digits>"   segment 0
//!  │    'I' + base offset (u64 BE) -> 53-byte index entry (below)
//!  │    'R'                        -> recovery point: offset, file position (u64 BE each)
//!  │    'S'                        -> logical log start (DeleteRecords), u64 BE
//!  │    'G' 'N' 'C'                -> cleaned segments: file generation, end offset,
//!  │                                  first-clean time (ms), i64 BE each
//!  │    'X'                        -> offsets may jump (a follower's copy of a cleaned one)
//!  ├─ keyspace "log.<same partition>.00000000000000004096"                      segment 1
//!  └─ segments/<topic uuid>.<partition>/
//!       00000000000000000000.log   batches of segment 0, back to back from position 0
//!       00000000000000004096.log   batches of segment 1
//!       00000000000000008192.3.log generation 3 of a segment the cleaner rewrote 3 times
//!
//!  index entry (big-endian, fixed size, version byte first):
//!  ┌───┬───────────┬────────┬───────────┬───────┬────────┬───────┬──────┬────┬─────┬────────┐
//!  │ver│last offset│ max ts │producer id│p.epoch│base seq│records│leader│size│attrs│position│
//!  │u8 │ i64       │ i64    │ i64       │ i16   │ i32    │ i32   │epoch │u32 │ i16 │ u64    │
//!  └───┴───────────┴────────┴───────────┴───────┴────────┴───────┴──────┴────┴─────┴────────┘
//! ```
//!
//! An append writes the batches with one positioned vectored write at the end of the active
//! file, then commits their index entries in one fjall write batch: an entry is never written
//! before its bytes. The segment's base offset lives in the keyspace and file names, so an
//! empty segment still tells the log end offset after a restart. A store written by format 1
//! (batches inside fjall) is refused by [`Store::open`] with what to do.
//!
//! # Recovery
//!
//! [`Store::open_log`] lists the partition's segment keyspaces and scans their index entries
//! (never the batch data) to rebuild: segment sizes and timestamps, the log end offset, the
//! leader-epoch cache and the idempotent-producer state. An entry that points past the end of
//! its file ends the log there. Then the active segment, the only one not fsynced whole (a
//! segment is fsynced before the next is created), is checked against its file from its
//! recovery point: every indexed batch after it is read back and its CRC checked; the first
//! bad one ends the log; whole batches after the last entry (their entry did not reach the
//! journal) are indexed again; a torn tail is cut off the file. After a clean stop the
//! recovery point is the end, and nothing is read.
//!
//! # Compaction
//!
//! `PartitionLog::clean` (log compaction, `cleanup.policy=compact`) writes a closed
//! segment's kept batches to the next generation's file, fsyncs it, then replaces the
//! segment's index entries and its `G`/`N`/`C` keys in one fjall batch, and unlinks the old
//! file; `open` removes any file generation the index does not name, so a crash leaves the
//! old or the new segment. Offsets never change: a cleaned segment's batches lie back to back
//! in its file with gaps between their offsets. Module docs: `log::compact`, `log::cleaner`.
//!
//! # Durability and cost
//!
//! Each byte of a batch is written once, to its segment file, through the page cache: a
//! killed process loses nothing acknowledged. fjall's one journal per database, shared by
//! every log, carries only the index entries (53 bytes per batch plus keys). With
//! [`Durability::EveryBatch`] an append fdatasyncs the file, then commits its entries with a
//! journal fsync; [`PartitionLog::sync`] fdatasyncs the active file, records the recovery
//! point and fsyncs the journal; [`Store::sync`] does that for every open log. Before a
//! segment rolls its file and the journal are fsynced, so a power loss cannot leave a hole in
//! front of a newer segment.
//!
//! Reads look up index entries, then fill one buffer of the exact size with one positioned
//! read per segment (batches of a segment are contiguous): one copy, from the page cache.
//! Recovery and [`PartitionLog::truncate_to`] scan every index entry of the log (53 bytes
//! per batch); truncation cuts the file first, durably, then removes the entries.
//!
//! # Threads
//!
//! [`Store`] and [`PartitionLog`] are `Clone + Send + Sync`. A log has one
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
//!   compaction (`log::cleaner` decides, `log::compact` rewrites and swaps), recovery; `log::segment` is the segment file (positioned writes and reads, the CRC
//!   check recovery uses); its producer-state and leader-epoch caches are plain structs
//!   with their own unit tests.
//! - `store` ([`Store`]): the database, opening and deleting logs.
//! - `space`: the free-space floor ([`StoreConfig::free_bytes_min`]) that keeps fjall from
//!   running out of disk, which would poison the whole database until a restart. Segment
//!   files count against the same floor (appends reserve their bytes before writing).
//!
//! # What this crate must not know
//!
//! No tokio, no ractor, no Kafka wire protocol beyond the record batch format (no request
//! framing, no error codes: `broker` maps [`StorageError`] to Kafka codes), no cluster facts
//! (leadership and epochs are handed in as arguments).

pub mod batch;
mod error;
mod log;
mod space;
mod store;

use std::collections::BTreeMap;

pub use bytes::Bytes;

pub use batch::TimestampType;
pub use error::{Result, StorageError};
pub use log::{
    copy_chunks, ActiveProducer, CleanOutcome, Cleaner, CleanerConfig, CleanerState, CleanerStats,
    FileRegion, PartitionLog, RecordChunk, RegionRead,
};
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
    /// fdatasync the segment file, then fsync the journal, before every append returns.
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
    /// `cleanup.policy`: whether old segments are deleted by retention, compacted, or both.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long a tombstone (null value) stays readable after the
    /// segment holding it was first cleaned.
    pub tombstone_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`, in thousandths: the cleaner runs when the dirty part of
    /// the cleanable log is at least this share of it.
    pub dirty_ratio_min_permille: u32,
    /// `min.compaction.lag.ms`: a segment holding a record newer than this is not cleaned.
    pub compaction_lag_min_ms: i64,
    /// `max.compaction.lag.ms`: a dirty record older than this makes the log cleanable
    /// whatever its dirty ratio.
    pub compaction_lag_max_ms: i64,
}

/// Kafka's `cleanup.policy`: `delete`, `compact` or `compact,delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Retention (`retention.ms`, `retention.bytes`) drops old segments.
    pub delete: bool,
    /// The cleaner keeps only the latest record of each key.
    pub compact: bool,
}

impl CleanupPolicy {
    /// `delete` only (Kafka's default).
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };
    /// `compact` only.
    pub const COMPACT: CleanupPolicy = CleanupPolicy {
        delete: false,
        compact: true,
    };

    /// Parses Kafka's list value (`delete`, `compact`, `compact,delete`, in any order and
    /// spacing); `None` for anything else, including an empty list.
    pub fn parse(value: &str) -> Option<CleanupPolicy> {
        let mut p = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for word in value.split(',').map(str::trim) {
            match word {
                "delete" => p.delete = true,
                "compact" => p.compact = true,
                _ => return None,
            }
        }
        (p.delete || p.compact).then_some(p)
    }
}

impl Default for CleanupPolicy {
    fn default() -> Self {
        CleanupPolicy::DELETE
    }
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
            cleanup_policy: CleanupPolicy::DELETE,
            tombstone_retention_ms: 24 * 3600 * 1000,
            dirty_ratio_min_permille: 500,
            compaction_lag_min_ms: 0,
            compaction_lag_max_ms: i64::MAX,
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
    /// The log cleaner's node-wide budget (compacted topics).
    pub cleaner: CleanerConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            cache_bytes: 64 * 1024 * 1024,
            write_buffer_bytes_max: 256 * 1024 * 1024,
            journal_bytes_max: 512 * 1024 * 1024,
            free_bytes_min: 320 * 1024 * 1024,
            cleaner: CleanerConfig::default(),
        }
    }
}

/// An aborted transaction, as a `read_committed` fetch reports it: the consumer drops the
/// records of `producer_id` from `first_offset` up to the abort marker at `last_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    /// The transaction's producer id.
    pub producer_id: i64,
    /// Offset of its first batch on this partition.
    pub first_offset: i64,
    /// Offset of its abort marker.
    pub last_offset: i64,
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

/// A topic as the controller's state machine describes it.
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
