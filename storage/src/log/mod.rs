//! The partition log: segment files of record batches, indexed in fjall keyspaces.
//!
//! ```text
//!            one writer (the replica actor)              many readers (fetch, list offsets)
//!   append_as_leader / append_as_follower /                read / offset_for_timestamp /
//!   truncate_to / apply_retention                          log_end_offset / epochs
//!                 │                                                   │
//!          writer: Mutex ── producer state                            │ (never takes the
//!                 │                                                   │  writer lock)
//!                 ├──▶ 1. batch bytes: one pwritev at the end of the segment file
//!                 ├──▶ 2. index entries (I keys): one fjall write batch ──▶ journal
//!                 └──▶ 3. publish: segments (RwLock), epochs (RwLock), LEO (atomic)
//!                                                                     ▲
//!   readers snapshot LEO first and never look past it ────────────────┘
//! ```
//!
//! Publication order makes every reader-visible state consistent: a batch is in its file and
//! its index entry committed before the log end offset moves past it, and a truncation lowers
//! the log end offset before it deletes anything. On disk, an index entry may be durable
//! before the bytes it points at (another log's fsync persists the shared journal); recovery
//! checks the active segment's entries against its file, so an entry never survives a crash
//! pointing past durable, CRC-valid bytes (see `recover_tail`).

mod cleaner;
mod compact;
mod epoch;
mod index;
mod producer;
mod region;
mod segment;
mod upgrade;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::{Mutex, RwLock};
use tracing::{debug, info, warn};

use crate::batch::control::TxnMarker;
use crate::batch::{
    records_bytes_max, timestamps_patched, validate, visit_records, BatchHeader, BatchOrigin,
    ClientRules, RecordInfo, TimestampType, ValidationRules, HEADER_LEN,
};
use crate::space::SpaceGuard;
use crate::{
    AbortedTransaction, AppendInfo, AppendOutcome, Durability, LogConfig, PartitionId, ReadResult,
    Result, StorageError, TimestampOffset,
};
pub use cleaner::CleanerState;
use compact::read_clean_markers;
pub use compact::{CleanOutcome, Cleaner, CleanerConfig, CleanerStats};
use epoch::EpochCache;
use index::{key, segment_name, IndexEntry, ABORTED_PREFIX, INDEX_PREFIX};
pub(crate) use index::{parse_segment_name, segment_prefix};
pub use producer::ActiveProducer;
use producer::{
    AbortedEntry, BatchMeta, PendingProducers, ProducerStates, SequenceCheck, TxnBatch, TxnPass,
    TxnUpdates,
};
pub use region::{copy_chunks, FileRegion, RecordChunk, RegionRead};
use segment::{file_name, SegmentFile};
pub(crate) use upgrade::upgrade_log_v1;

/// Options of every segment keyspace: it holds small index entries only (the batches are in
/// the segment file), so no key-value separation.
fn segment_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
}

/// One segment: its index keyspace, its file and a summary of what it holds.
#[derive(Clone)]
struct Segment {
    base_offset: i64,
    keyspace: Keyspace,
    file: Arc<SegmentFile>,
    /// Offset after its last batch (`base_offset` when empty).
    next_offset: i64,
    size_bytes: u64,
    /// Largest batch max timestamp; `i64::MIN` when empty.
    max_timestamp: i64,
    /// Max timestamp of its first batch: the segment's age for rolling (Kafka's rule).
    first_batch_timestamp: Option<i64>,
    /// When this handle created or found the segment (the leader's clock, ms): the age that
    /// rolling and time retention use when the batches carry no usable timestamp (negative,
    /// as some producers wrote before the leader recomputed timestamps). Kafka uses the
    /// segment file's mtime; a recovered or rescanned segment counts from the time it was
    /// opened, which can only delay its deletion, never hasten it.
    created_ms: i64,
    /// Which file holds it: `file_name(base_offset, generation)`; each cleaning writes the
    /// next generation.
    generation: u64,
    /// When the cleaner first cleaned it (the tombstone clock); `None`: dirty.
    cleaned_ms: Option<i64>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("base_offset", &self.base_offset)
            .field("next_offset", &self.next_offset)
            .field("size_bytes", &self.size_bytes)
            .field("max_timestamp", &self.max_timestamp)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Segment {
    fn empty(base_offset: i64, keyspace: Keyspace, file: Arc<SegmentFile>) -> Segment {
        Segment {
            base_offset,
            keyspace,
            file,
            next_offset: base_offset,
            size_bytes: 0,
            max_timestamp: i64::MIN,
            first_batch_timestamp: None,
            created_ms: now_ms(),
            generation: 0,
            cleaned_ms: None,
        }
    }

    /// The newest time the segment's data can be said to have: its largest record timestamp,
    /// or its creation time when it has none that is usable.
    fn newest_ms(&self) -> i64 {
        if self.max_timestamp >= 0 {
            self.max_timestamp
        } else {
            self.created_ms
        }
    }

    fn is_empty(&self) -> bool {
        self.first_batch_timestamp.is_none()
    }

    /// Where the next batch goes in the file: batches lie back to back from position 0.
    fn end_position(&self) -> u64 {
        self.size_bytes
    }

    fn add(&mut self, e: &IndexEntry) {
        debug_assert_eq!(e.position, self.size_bytes, "batches are back to back");
        self.next_offset = e.next_offset();
        self.size_bytes += u64::from(e.size_bytes);
        self.max_timestamp = self.max_timestamp.max(e.max_timestamp);
        self.first_batch_timestamp.get_or_insert(e.max_timestamp);
    }
}

/// How many times `read_regions` plans again after racing a truncation before it copies.
const REGION_PLAN_ATTEMPTS: usize = 3;

/// The batches a read returns, planned from the index.
struct ReadPlan {
    parts: Vec<PlannedPart>,
    bytes: usize,
    log_start: i64,
    log_end: i64,
}

/// Batches of one segment, back to back from `position`.
struct PlannedPart {
    file: Arc<SegmentFile>,
    position: u64,
    entries: Vec<IndexEntry>,
    /// The file's truncation count before the entries were read.
    truncations: u64,
}

/// The wall clock in ms since the epoch (0 if the clock is before 1970).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Attributes bit of a batch whose timestamps are the append time.
const LOG_APPEND_TIME_BIT: i16 = 1 << 3;

/// State only the writer touches.
#[derive(Debug, Default)]
struct WriterState {
    producers: ProducerStates,
}

struct LogShared {
    id: PartitionId,
    db: Database,
    /// The partition's directory of segment files.
    dir: PathBuf,
    space: Arc<SpaceGuard>,
    config: RwLock<LogConfig>,
    writer: Mutex<WriterState>,
    /// Sorted by base offset, never empty; the last one is the active segment.
    segments: RwLock<Vec<Segment>>,
    epochs: RwLock<EpochCache>,
    /// Transactions that hold the last stable offset back: first offset -> offset of the
    /// marker that closed it (`i64::MAX` while open). A closed one stays until the high
    /// watermark passes its marker (Kafka's unreplicated transactions); readers prune it.
    unstable: Mutex<BTreeMap<i64, i64>>,
    /// Offset of the last abort marker in the log (-1: none), so a read_committed fetch past
    /// it skips the aborted-index lookup.
    last_abort: AtomicI64,
    log_start: AtomicI64,
    log_end: AtomicI64,
    size_bytes: AtomicU64,
    closed: AtomicBool,
    /// Held (write) by the cleaner while it swaps a segment's index and file, and (read) by
    /// readers while they plan from the index, so a plan's entries and file agree.
    swap: RwLock<()>,
    /// The node's cleaner (budget and counters).
    cleaner: Arc<Cleaner>,
    /// A cleaner pass of this log is running (one at a time per log).
    cleaning: AtomicBool,
}

/// A partition's log. Cheap to clone (an `Arc` inside); `Send + Sync`.
///
/// One writer at a time is expected (the replica actor): appends, truncation and retention
/// serialise on an internal mutex. Reads, offset lookups and the epoch queries never take
/// that mutex and may run from any number of threads while an append is in progress.
///
/// Every method may block on disk I/O: call from a blocking thread in async code.
#[derive(Clone)]
pub struct PartitionLog {
    shared: Arc<LogShared>,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("id", &self.shared.id)
            .field("log_start_offset", &self.log_start_offset())
            .field("log_end_offset", &self.log_end_offset())
            .field("size_bytes", &self.size_bytes())
            .field("segments", &self.segment_count())
            .finish_non_exhaustive()
    }
}

/// A batch ready to be stored: its header as it will be stored, and where its bytes are in
/// the caller's buffer.
#[derive(Debug)]
struct Prepared {
    header: BatchHeader,
    range: std::ops::Range<usize>,
    /// A header to write instead of the caller's (timestamps patched, CRC recomputed).
    head: Option<[u8; HEADER_LEN]>,
    /// The batch is a transaction marker that aborts.
    abort_marker: bool,
}

/// What a scan of the index entries rebuilds.
#[derive(Debug)]
struct Scan {
    segments: Vec<Segment>,
    epochs: EpochCache,
    producers: ProducerStates,
    /// Aborted transactions whose marker is at or after the offset the scan was asked to
    /// collect from (recovery rebuilds their index entries for a recovered tail).
    aborted: Vec<AbortedEntry>,
    /// Offset of the last abort marker (-1: none).
    last_abort: i64,
    /// First inconsistency found: the segment it is in (later segments are invalid as a
    /// whole) and the offset from which that segment's entries are invalid.
    broken: Option<(usize, i64)>,
}

/// A segment's handles, before a scan summarises its index.
type SegmentHandles = (i64, Keyspace, Arc<SegmentFile>);

/// Rebuilds the log's state from the index entries (never the batch data). An entry that
/// does not continue the offsets, does not sit right after the previous batch in the file,
/// or points past the end of the file, is where the log breaks.
///
/// Producer state, open transactions included, comes from the entries too: a marker's entry
/// says whether it aborts.
/// How [`PartitionLog::commit`] treats the batches it writes.
#[derive(Debug, Clone, Copy)]
struct CommitMode {
    /// Write the header's base offset and leader epoch over the caller's bytes (a leader's
    /// appends).
    patch: bool,
    /// The batches skip offsets (a follower's copy of a cleaned leader's): the segment is
    /// marked so.
    gaps: bool,
}

impl CommitMode {
    /// A leader's append: patched, no gaps.
    const LEADER: CommitMode = CommitMode {
        patch: true,
        gaps: false,
    };
}

fn scan(handles: Vec<SegmentHandles>, collect_aborted_from: i64) -> Result<Scan> {
    let mut out = Scan {
        segments: Vec::with_capacity(handles.len()),
        epochs: EpochCache::default(),
        producers: ProducerStates::default(),
        aborted: Vec::new(),
        last_abort: -1,
        broken: None,
    };
    for (base_offset, keyspace, file) in handles {
        if let Some(prev) = out.segments.last() {
            if base_offset != prev.next_offset {
                out.broken = Some((out.segments.len() - 1, prev.next_offset));
                break;
            }
        }
        let file_len = file.len()?;
        let markers = read_clean_markers(&keyspace)?;
        let mut seg = Segment::empty(base_offset, keyspace.clone(), file);
        seg.generation = markers.generation;
        seg.cleaned_ms = markers.cleaned_ms;
        for guard in keyspace.prefix([INDEX_PREFIX]) {
            let (k, v) = guard.into_inner()?;
            let e = IndexEntry::decode(&k, &v)?;
            // Offsets may jump where the segment says so (cleaned, or a follower's copy of a
            // cleaned segment); the bytes never: batches lie back to back in the file.
            let offset_ok = if markers.gaps {
                e.base_offset >= seg.next_offset
            } else {
                e.base_offset == seg.next_offset
            };
            if !offset_ok || e.position != seg.end_position() || e.end_position() > file_len {
                out.broken = Some((out.segments.len(), e.base_offset));
                break;
            }
            seg.add(&e);
            if !out.epochs.assign(e.leader_epoch, e.base_offset) {
                warn!(
                    offset = e.base_offset,
                    epoch = e.leader_epoch,
                    "leader epoch goes backwards"
                );
            }
            if e.abort_marker {
                out.last_abort = e.base_offset;
            }
            if e.producer_id >= 0 {
                let u = replay_producer(&mut out.producers, &e);
                out.aborted.extend(
                    u.aborted
                        .iter()
                        .filter(|a| a.last_offset >= collect_aborted_from),
                );
                out.producers.apply_txns(u);
            }
        }
        if out.broken.is_none() {
            if let Some(end) = markers.end_offset {
                // A cleaned segment whose last batches were removed still ends where it did.
                seg.next_offset = seg.next_offset.max(end);
            }
        }
        out.segments.push(seg);
        if out.broken.is_some() {
            break;
        }
    }
    Ok(out)
}

/// Records a stored batch of a producer (replication, recovery: the log is the truth) and
/// works out what it does to transactions; the caller applies the result.
fn replay_producer(producers: &mut ProducerStates, e: &IndexEntry) -> TxnUpdates {
    if !e.is_control() {
        producers.record(e.producer_id, e.producer_epoch, batch_meta(e));
    }
    let mut pass = TxnPass::new(producers);
    pass.batch(e.producer_id, e.producer_epoch, e.base_offset, txn_batch(e));
    pass.finish()
}

fn txn_batch(e: &IndexEntry) -> TxnBatch {
    if e.is_control() {
        TxnBatch::Marker {
            abort: e.abort_marker,
        }
    } else {
        TxnBatch::Data {
            transactional: e.is_transactional(),
        }
    }
}

/// Whether a stored control batch is an abort marker (`false` for anything else).
fn aborts(h: &BatchHeader, batch: &[u8]) -> Result<bool> {
    if !h.is_control() {
        return Ok(false);
    }
    Ok(TxnMarker::decode(batch)?.is_some_and(|m| !m.commit))
}

fn batch_meta(e: &IndexEntry) -> BatchMeta {
    BatchMeta {
        base_sequence: e.base_sequence,
        last_sequence: e.last_sequence(),
        base_offset: e.base_offset,
        last_offset: e.last_offset,
        max_timestamp: e.max_timestamp,
    }
}

fn info_of(first: &BatchHeader, last: &BatchHeader, prepared: &[Prepared]) -> AppendInfo {
    AppendInfo {
        base_offset: first.base_offset,
        last_offset: last.last_offset(),
        max_timestamp: prepared
            .iter()
            .map(|p| p.header.max_timestamp)
            .max()
            .unwrap_or(i64::MIN),
        records_count: prepared
            .iter()
            .map(|p| p.header.records_count)
            .fold(0i32, i32::saturating_add),
    }
}

impl PartitionLog {
    /// Opens (creating or recovering) the log of `id`. Called by `Store::open_log`.
    /// `known_segments`: the names of this log's segment keyspaces when the caller knows
    /// them (the store's snapshot at start-up); otherwise every keyspace name is scanned.
    pub(crate) fn open(
        db: Database,
        space: Arc<SpaceGuard>,
        cleaner: Arc<Cleaner>,
        id: PartitionId,
        dir: PathBuf,
        cfg: LogConfig,
        known_segments: Option<Vec<String>>,
    ) -> Result<PartitionLog> {
        let started = std::time::Instant::now();
        let mut bases = Vec::new();
        match known_segments {
            Some(names) => {
                for name in &names {
                    if let Some(base) = parse_segment_name(id, name) {
                        bases.push(base?);
                    }
                }
            }
            None => {
                for name in db.list_keyspace_names() {
                    if let Some(base) = parse_segment_name(id, &name) {
                        bases.push(base?);
                    }
                }
            }
        }
        bases.sort_unstable();
        std::fs::create_dir_all(&dir)?;
        let mut handles: Vec<SegmentHandles> = Vec::with_capacity(bases.len().max(1));
        let mut names = Vec::with_capacity(bases.len());
        for base in &bases {
            let keyspace = db.keyspace(&segment_name(id, *base), segment_options)?;
            // The generation the index names: a cleaner's swap changes both in one batch.
            let name = file_name(*base, read_clean_markers(&keyspace)?.generation);
            // A segment's file is created before its keyspace; one can be missing only if it
            // was lost, and then its index entries point past its end and recovery cuts there.
            let file = SegmentFile::open(&dir.join(&name), true)?;
            handles.push((*base, keyspace, Arc::new(file)));
            names.push(name);
        }
        // Files whose keyspace is gone (a crash while a segment was being created or dropped)
        // or whose generation the index does not name (a crash during a cleaner's swap) hold
        // nothing the log refers to.
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name();
            let known = names.iter().any(|n| name.to_str() == Some(n));
            if !known {
                warn!(partition = %id, file = ?name, "removing a segment file without an index");
                remove_file(&dir.join(&name))?;
            }
        }
        if handles.is_empty() {
            let file = SegmentFile::create(&dir.join(file_name(0, 0)))?;
            let keyspace = db.keyspace(&segment_name(id, 0), segment_options)?;
            handles.push((0, keyspace, Arc::new(file)));
        }
        let mut scanned = scan(handles.clone(), i64::MAX)?;
        if let Some((seg, from)) = scanned.broken {
            warn!(
                partition = %id, segment = seg, offset = from,
                "the log is not contiguous on disk: truncating it at the first gap"
            );
            for (_, ks, file) in handles.iter().skip(seg + 1).rev() {
                db.delete_keyspace(ks.clone())?;
                remove_file(file.path())?;
            }
            let keep = &scanned.segments[seg];
            keep.file.truncate(keep.end_position())?;
            remove_from(&db, &handles[seg].1, from)?;
            handles.truncate(seg + 1);
            scanned = scan(handles.clone(), i64::MAX)?;
        }
        if let Some(active) = scanned.segments.last() {
            if recover_tail(&db, id, active)? {
                // Markers whose index entries were rebuilt need their aborted-index entries
                // too (rewriting the active segment's existing ones changes nothing).
                let active_base = active.base_offset;
                let active_ks = active.keyspace.clone();
                scanned = scan(handles, active_base)?;
                let mut batch = db.batch().durability(Some(PersistMode::SyncData));
                for a in &scanned.aborted {
                    batch.insert(&active_ks, &a.key()[..], &a.encode()[..]);
                }
                batch.commit()?;
            }
        }
        let log = PartitionLog {
            shared: Arc::new(LogShared {
                id,
                db,
                dir,
                space,
                config: RwLock::new(cfg),
                writer: Mutex::new(WriterState::default()),
                segments: RwLock::new(Vec::new()),
                epochs: RwLock::new(EpochCache::default()),
                unstable: Mutex::new(BTreeMap::new()),
                last_abort: AtomicI64::new(-1),
                log_start: AtomicI64::new(0),
                log_end: AtomicI64::new(0),
                size_bytes: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                swap: RwLock::new(()),
                cleaner,
                cleaning: AtomicBool::new(false),
            }),
        };
        {
            let mut w = log.shared.writer.lock();
            log.install(&mut w, scanned);
        }
        info!(
            partition = %id,
            log_start_offset = log.log_start_offset(),
            log_end_offset = log.log_end_offset(),
            segments = log.segment_count(),
            size_bytes = log.size_bytes(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "partition log recovered"
        );
        Ok(log)
    }

    /// Publishes a scan's result as the log's state (writer lock held).
    fn install(&self, w: &mut WriterState, scanned: Scan) {
        let s = &self.shared;
        debug_assert!(!scanned.segments.is_empty());
        let end = scanned.segments.last().map_or(0, |g| g.next_offset);
        // A DeleteRecords start inside the first segment, if one was recorded there.
        let start =
            scanned.segments.first().map_or(0, |g| {
                read_start_marker(&g.keyspace)
                .unwrap_or_else(|e| {
                    warn!(partition = %s.id, error = %e, "unreadable log start marker: ignored");
                    None
                })
                .map_or(g.base_offset, |m| m.clamp(g.base_offset, end.max(g.base_offset)))
            });
        let size: u64 = scanned.segments.iter().map(|g| g.size_bytes).sum();
        *s.segments.write() = scanned.segments;
        *s.epochs.write() = scanned.epochs;
        w.producers = scanned.producers;
        s.last_abort.store(scanned.last_abort, Ordering::Release);
        // Transactions closed before are taken as replicated: a rebuilt state cannot tell.
        *s.unstable.lock() = w
            .producers
            .open_txns()
            .map(|(first, _)| (first, i64::MAX))
            .collect();
        s.size_bytes.store(size, Ordering::Release);
        s.log_start.store(start, Ordering::Release);
        s.log_end.store(end, Ordering::Release);
    }

    /// Marks this handle closed (a newer one takes over, or the log is deleted) and runs `f`
    /// while holding the writer lock, so no write of this handle overlaps `f`.
    pub(crate) fn close_and<R>(&self, f: impl FnOnce() -> R) -> R {
        let _writer = self.shared.writer.lock();
        self.shared.closed.store(true, Ordering::Release);
        f()
    }

    /// The keyspaces of the log's segments.
    pub(crate) fn keyspaces(&self) -> Vec<Keyspace> {
        let segments = self.shared.segments.read();
        segments.iter().map(|g| g.keyspace.clone()).collect()
    }

    /// Forgets the segment handles of a closed log so their keyspaces can be removed.
    pub(crate) fn forget_segments(&self) {
        self.shared.segments.write().clear();
    }

    pub(crate) fn downgrade(&self) -> WeakLog {
        WeakLog(Arc::downgrade(&self.shared))
    }

    fn ensure_open(&self) -> Result<()> {
        if self.shared.closed.load(Ordering::Acquire) {
            Err(StorageError::LogClosed(self.shared.id))
        } else {
            Ok(())
        }
    }

    /// The partition this log belongs to.
    pub fn id(&self) -> PartitionId {
        self.shared.id
    }

    /// The limits in force.
    pub fn config(&self) -> LogConfig {
        self.shared.config.read().clone()
    }

    /// Changes the limits for future appends and retention runs.
    pub fn set_config(&self, cfg: LogConfig) {
        *self.shared.config.write() = cfg;
    }

    /// Appends a producer's batches as the leader of `leader_epoch`.
    ///
    /// Validates every batch (nothing is written if one fails), applies the idempotent
    /// producer rules, assigns offsets from the log end offset by patching each batch's base
    /// offset and partition leader epoch (the rest of the bytes are stored as sent), rolls
    /// the segment if needed, writes all batches to the segment file in one write and then
    /// their index entries in one atomic fjall write batch. With [`Durability::EveryBatch`]
    /// the file is fdatasynced and the journal fsynced before returning.
    ///
    /// If any batch is a retry of a batch already in the log, nothing is written and the
    /// original batch's info comes back as [`AppendOutcome::Duplicate`].
    pub fn append_as_leader(&self, records: &[u8], leader_epoch: i32) -> Result<AppendOutcome> {
        self.append_as_leader_at(records, leader_epoch, now_ms())
    }

    /// [`PartitionLog::append_as_leader`] with the leader's clock given (`now_ms`: the append
    /// time, and the centre of the accepted timestamp window).
    ///
    /// Each batch's max timestamp becomes the largest record timestamp (or `now_ms` on a
    /// `LogAppendTime` topic); where the header said otherwise it is patched and the CRC
    /// recomputed, so the index, retention, offset lookups and fetchers agree.
    pub fn append_as_leader_at(
        &self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome> {
        let s = &self.shared;
        let mut w = s.writer.lock();
        self.ensure_open()?;
        let cfg = self.config();
        let batches = validate(
            records,
            &ValidationRules {
                batch_bytes_max: cfg.batch_bytes_max,
                // Clients may not write control batches: markers come in by `append_marker`.
                origin: BatchOrigin::Client(ClientRules {
                    now_ms,
                    timestamp_type: cfg.timestamp_type,
                    timestamp_before_max_ms: cfg.timestamp_before_max_ms,
                    timestamp_after_max_ms: cfg.timestamp_after_max_ms,
                    key_required: cfg.cleanup_policy.compact,
                }),
            },
        )?;
        self.check_leader_epoch(leader_epoch)?;
        let mut next = s.log_end.load(Ordering::Acquire);
        let mut pending = PendingProducers::new(&w.producers, next);
        let mut prepared = Vec::with_capacity(batches.len());
        for vb in batches {
            let mut h = vb.header;
            h.base_offset = next;
            h.partition_leader_epoch = leader_epoch;
            let max_timestamp = match cfg.timestamp_type {
                TimestampType::CreateTime => vb.records_max_timestamp,
                TimestampType::LogAppendTime => now_ms,
            };
            let log_append_time = cfg.timestamp_type == TimestampType::LogAppendTime;
            let head =
                if h.max_timestamp != max_timestamp || h.is_log_append_time() != log_append_time {
                    let head = timestamps_patched(
                        &records[vb.range.clone()],
                        cfg.timestamp_type,
                        max_timestamp,
                    )?;
                    h = BatchHeader {
                        base_offset: h.base_offset,
                        partition_leader_epoch: h.partition_leader_epoch,
                        ..BatchHeader::parse(&head)?
                    };
                    Some(head)
                } else {
                    None
                };
            if h.has_producer_id() {
                if h.base_sequence < 0 {
                    return Err(StorageError::CorruptBatch(format!(
                        "producer id {} without a base sequence",
                        h.producer_id
                    )));
                }
                let last_sequence = h.last_sequence();
                match pending.check(
                    h.producer_id,
                    h.producer_epoch,
                    h.base_sequence,
                    last_sequence,
                )? {
                    SequenceCheck::Duplicate(m) => {
                        debug!(partition = %s.id, producer_id = h.producer_id, offset = m.base_offset, "duplicate batch");
                        return Ok(AppendOutcome::Duplicate(AppendInfo {
                            base_offset: m.base_offset,
                            last_offset: m.last_offset,
                            max_timestamp: m.max_timestamp,
                            records_count: i32::try_from(m.last_offset - m.base_offset + 1)
                                .unwrap_or(i32::MAX),
                        }));
                    }
                    SequenceCheck::Accept => pending.record(
                        h.producer_id,
                        h.producer_epoch,
                        BatchMeta {
                            base_sequence: h.base_sequence,
                            last_sequence,
                            base_offset: h.base_offset,
                            last_offset: h.last_offset(),
                            max_timestamp: h.max_timestamp,
                        },
                    ),
                }
            }
            next = h.next_offset();
            prepared.push(Prepared {
                header: h,
                range: vb.range,
                head,
                abort_marker: false,
            });
        }
        let updates = pending.into_updates();
        let mut txns = TxnPass::new(&w.producers);
        for p in prepared.iter().filter(|p| p.header.has_producer_id()) {
            let h = &p.header;
            let transactional = h.is_transactional();
            txns.batch(
                h.producer_id,
                h.producer_epoch,
                h.base_offset,
                TxnBatch::Data { transactional },
            );
        }
        let txns = txns.finish();
        let info = self.commit(
            records,
            &prepared,
            &cfg,
            CommitMode::LEADER,
            now_ms,
            &txns.aborted,
        )?;
        w.producers.apply(updates);
        self.apply_txns(&mut w, txns);
        Ok(AppendOutcome::Appended(info))
    }

    /// Refuses a leader append in an epoch older than the log's latest.
    fn check_leader_epoch(&self, leader_epoch: i32) -> Result<()> {
        match self.shared.epochs.read().latest() {
            Some(latest) if leader_epoch < latest => Err(StorageError::FencedLeaderEpoch {
                epoch: leader_epoch,
                latest,
            }),
            _ => Ok(()),
        }
    }

    /// Applies a request's transaction changes (writer lock held, batches committed).
    fn apply_txns(&self, w: &mut WriterState, u: TxnUpdates) {
        if u.opened.is_empty() && u.completed.is_empty() && u.aborted.is_empty() {
            w.producers.apply_txns(u);
            return;
        }
        if let Some(a) = u.aborted.last() {
            self.shared
                .last_abort
                .fetch_max(a.last_offset, Ordering::AcqRel);
        }
        {
            let mut unstable = self.shared.unstable.lock();
            for first in &u.opened {
                unstable.insert(*first, i64::MAX);
            }
            for (first, marker) in &u.completed {
                unstable.insert(*first, *marker);
            }
        }
        w.producers.apply_txns(u);
    }

    /// Appends a transaction marker (commit or abort control batch, built here with
    /// [`TxnMarker::encode`]) as the leader of `leader_epoch`: the trusted path for the
    /// transaction coordinator, which client batches cannot take (they may not be control
    /// batches). The marker ends the producer's open transaction on this partition; an abort
    /// is recorded in the aborted-transactions index, in the same atomic index write as the
    /// marker's entry.
    ///
    /// A marker for a producer with no open transaction here is written all the same (Kafka
    /// does: harmless), unless its producer epoch is older than the one this partition knows
    /// for the producer: [`StorageError::InvalidProducerEpoch`] (fencing). A marker of a newer
    /// epoch makes that epoch the producer's (its next batches start at sequence 0).
    pub fn append_marker(&self, marker: &TxnMarker, leader_epoch: i32) -> Result<AppendInfo> {
        self.append_marker_at(marker, leader_epoch, now_ms())
    }

    /// [`PartitionLog::append_marker`] with the leader's clock given (the marker's timestamp).
    pub fn append_marker_at(
        &self,
        marker: &TxnMarker,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        let s = &self.shared;
        let mut w = s.writer.lock();
        self.ensure_open()?;
        let cfg = self.config();
        self.check_leader_epoch(leader_epoch)?;
        if let Some(current) = w.producers.epoch_of(marker.producer_id) {
            if marker.producer_epoch < current {
                return Err(StorageError::InvalidProducerEpoch {
                    producer_id: marker.producer_id,
                    epoch: marker.producer_epoch,
                    current,
                });
            }
        }
        let bytes = marker.encode(now_ms);
        let next = s.log_end.load(Ordering::Acquire);
        let header = BatchHeader {
            base_offset: next,
            partition_leader_epoch: leader_epoch,
            ..BatchHeader::parse(&bytes)?
        };
        let abort = !marker.commit;
        let prepared = [Prepared {
            header,
            range: 0..bytes.len(),
            head: None,
            abort_marker: abort,
        }];
        let mut txns = TxnPass::new(&w.producers);
        txns.batch(
            marker.producer_id,
            marker.producer_epoch,
            next,
            TxnBatch::Marker { abort },
        );
        let txns = txns.finish();
        let info = self.commit(
            &bytes,
            &prepared,
            &cfg,
            CommitMode::LEADER,
            now_ms,
            &txns.aborted,
        )?;
        self.apply_txns(&mut w, txns);
        debug!(partition = %s.id, producer_id = marker.producer_id, offset = next,
            commit = marker.commit, "transaction marker appended");
        Ok(info)
    }

    /// Appends batches replicated from the leader: offsets and epochs are already assigned.
    /// The first batch must start at the log end offset and the batches must be contiguous.
    /// Producer state is updated without checks (the leader's log is the truth).
    pub fn append_as_follower(&self, records: &[u8]) -> Result<AppendInfo> {
        let s = &self.shared;
        let mut w = s.writer.lock();
        self.ensure_open()?;
        let cfg = self.config();
        // No size limit: the leader checked it when the client produced, and this node's
        // limit may differ (a per-broker dynamic `message.max.bytes`) or have been lowered
        // since; refusing the leader's batches would stall replication for good. The buffer
        // is already in memory and every batch must lie inside it.
        let batches = validate(
            records,
            &ValidationRules {
                batch_bytes_max: usize::MAX,
                origin: BatchOrigin::Replication,
            },
        )?;
        let mut next = s.log_end.load(Ordering::Acquire);
        let mut prepared = Vec::with_capacity(batches.len());
        let mut gaps = false;
        for vb in batches {
            // A compacted leader's cleaned segments have gaps between batches (offsets never
            // move): there, offsets must increase, not be contiguous. Elsewhere a gap is a
            // replication defect and refused.
            let gap = vb.header.base_offset > next;
            gaps |= gap;
            if vb.header.base_offset < next || (gap && !cfg.cleanup_policy.compact) {
                return Err(StorageError::UnexpectedBaseOffset {
                    expected: next,
                    got: vb.header.base_offset,
                });
            }
            next = vb.header.next_offset();
            let abort_marker = aborts(&vb.header, &records[vb.range.clone()])?;
            prepared.push(Prepared {
                header: vb.header,
                range: vb.range,
                head: None,
                abort_marker,
            });
        }
        // The leader's transaction changes, worked out the same way (markers included), so
        // leader and followers agree after a failover.
        let mut txns = TxnPass::new(&w.producers);
        for p in prepared.iter().filter(|p| p.header.has_producer_id()) {
            let e = IndexEntry::of(&p.header, 0).aborting(p.abort_marker);
            txns.batch(
                e.producer_id,
                e.producer_epoch,
                e.base_offset,
                txn_batch(&e),
            );
        }
        let txns = txns.finish();
        let info = self.commit(
            records,
            &prepared,
            &cfg,
            CommitMode { patch: false, gaps },
            now_ms(),
            &txns.aborted,
        )?;
        for p in &prepared {
            // Producer state needs no position.
            let e = IndexEntry::of(&p.header, 0);
            if e.producer_id >= 0 && !e.is_control() {
                w.producers
                    .record(e.producer_id, e.producer_epoch, batch_meta(&e));
            }
        }
        self.apply_txns(&mut w, txns);
        Ok(info)
    }

    /// Rolls if needed, writes the prepared batches to the segment file and their index
    /// entries in one fjall write batch, then publishes them.
    fn commit(
        &self,
        records: &[u8],
        prepared: &[Prepared],
        cfg: &LogConfig,
        mode: CommitMode,
        now_ms: i64,
        aborted: &[AbortedEntry],
    ) -> Result<AppendInfo> {
        let CommitMode { patch, gaps } = mode;
        let s = &self.shared;
        let (Some(first), Some(last)) = (prepared.first(), prepared.last()) else {
            return Err(StorageError::CorruptBatch("no record batch".into()));
        };
        let info = info_of(&first.header, &last.header, prepared);
        let bytes: u64 = prepared.iter().map(|p| p.range.len() as u64).sum();
        // Refused before anything is written, so fjall never meets a full disk here.
        s.space.reserve(bytes)?;
        self.maybe_roll(cfg, bytes, info.max_timestamp, now_ms)?;
        let (keyspace, file, start_position) = s
            .segments
            .read()
            .last()
            .map(|g| (g.keyspace.clone(), g.file.clone(), g.end_position()))
            .ok_or_else(|| StorageError::CorruptLog("log without segments".into()))?;

        // 1. The bytes, once, at the end of the segment file: the caller's buffer as it is,
        // with the leader's few patched header bytes written from beside it.
        let heads: Vec<[u8; HEADER_LEN]> = if patch {
            prepared
                .iter()
                .map(|p| {
                    let src = &records[p.range.clone()];
                    // baseOffset and partitionLeaderEpoch lie outside the CRC'd region; the
                    // rest of the header as validation left it (timestamps maybe patched).
                    let mut head = p.head.unwrap_or_else(|| {
                        let mut h = [0u8; HEADER_LEN];
                        h.copy_from_slice(&src[..HEADER_LEN]);
                        h
                    });
                    head[..8].copy_from_slice(&p.header.base_offset.to_be_bytes());
                    head[12..16].copy_from_slice(&p.header.partition_leader_epoch.to_be_bytes());
                    head
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut parts: Vec<&[u8]> = Vec::with_capacity(prepared.len() * 2);
        for (i, p) in prepared.iter().enumerate() {
            let src = &records[p.range.clone()];
            match heads.get(i) {
                Some(head) => {
                    parts.push(&head[..]);
                    parts.push(&src[HEADER_LEN..]);
                }
                None => parts.push(src),
            }
        }
        file.write_all_at(&parts, start_position)?;
        if cfg.durability == Durability::EveryBatch {
            file.sync()?;
        }

        // 2. Their index entries, after the bytes: an entry never points at bytes that are
        // not in the file (and with EveryBatch, not durable).
        let mut batch = s.db.batch();
        if cfg.durability == Durability::EveryBatch {
            batch = batch.durability(Some(PersistMode::SyncData));
        }
        if gaps {
            batch.insert(&keyspace, compact::GAPS_KEY, &[1u8][..]);
        }
        let mut entries = Vec::with_capacity(prepared.len());
        let mut position = start_position;
        for p in prepared {
            let e = IndexEntry::of(&p.header, position).aborting(p.abort_marker);
            position = e.end_position();
            batch.insert(
                &keyspace,
                &key(INDEX_PREFIX, e.base_offset)[..],
                &e.encode()[..],
            );
            entries.push(e);
        }
        // In the same atomic write: an abort marker is never in the index without its
        // aborted-transaction entry, nor the other way round.
        for a in aborted {
            batch.insert(&keyspace, &a.key()[..], &a.encode()[..]);
        }
        batch
            .commit()
            .map_err(StorageError::from)
            .inspect_err(|e| s.space.observe(e))?;

        {
            let mut segments = s.segments.write();
            if let Some(active) = segments.last_mut() {
                for e in &entries {
                    active.add(e);
                }
            }
        }
        {
            let mut epochs = s.epochs.write();
            for e in &entries {
                if !epochs.assign(e.leader_epoch, e.base_offset) {
                    warn!(partition = %s.id, offset = e.base_offset, epoch = e.leader_epoch,
                        "batch carries a leader epoch older than the log's latest");
                }
            }
        }
        s.size_bytes.fetch_add(bytes, Ordering::AcqRel);
        s.log_end.store(info.last_offset + 1, Ordering::Release);
        Ok(info)
    }

    fn maybe_roll(
        &self,
        cfg: &LogConfig,
        incoming_bytes: u64,
        incoming_max_ts: i64,
        now_ms: i64,
    ) -> Result<()> {
        let s = &self.shared;
        let reason = {
            let segments = s.segments.read();
            let Some(active) = segments.last() else {
                return Err(StorageError::CorruptLog("log without segments".into()));
            };
            if active.is_empty() {
                None
            } else if active.size_bytes.saturating_add(incoming_bytes) > cfg.segment_bytes_max {
                Some("size")
            } else if cfg.segment_age_max_ms >= 0
                && active.first_batch_timestamp.is_some_and(|t| {
                    // Kafka's rule, with its fallback to the segment's creation time when a
                    // timestamp is unusable (-1 would make every segment look ancient).
                    let age = if t >= 0 && incoming_max_ts >= 0 {
                        incoming_max_ts.saturating_sub(t)
                    } else {
                        now_ms.saturating_sub(active.created_ms)
                    };
                    age > cfg.segment_age_max_ms
                })
            {
                Some("age")
            } else {
                None
            }
        };
        if let Some(reason) = reason {
            let base = s.log_end.load(Ordering::Acquire);
            // The old segment's tail (file, then index) must be durable before a newer
            // segment exists: a power loss must not leave a gap in front of the new segment,
            // and recovery verifies the active segment only.
            if cfg.durability != Durability::EveryBatch {
                let active = s.segments.read().last().map(|g| g.file.clone());
                if let Some(file) = active {
                    file.sync()?;
                }
                s.db.persist(PersistMode::SyncData)?;
            }
            let segment = self.create_segment(base)?;
            s.segments.write().push(segment);
            debug!(partition = %s.id, base_offset = base, reason, "segment rolled");
        }
        Ok(())
    }

    fn create_segment(&self, base_offset: i64) -> Result<Segment> {
        let s = &self.shared;
        let name = segment_name(s.id, base_offset);
        if s.db.keyspace_exists(&name) {
            return Err(StorageError::CorruptLog(format!(
                "segment {name} exists already"
            )));
        }
        // The file before the keyspace: recovery finds a segment by its keyspace and expects
        // its file (a file without a keyspace is cut empty when the segment is created again).
        let file = SegmentFile::create(&s.dir.join(file_name(base_offset, 0)))?;
        let keyspace = s.db.keyspace(&name, segment_options)?;
        Ok(Segment::empty(base_offset, keyspace, Arc::new(file)))
    }

    /// Whole batches from the one that contains `offset`, concatenated.
    ///
    /// Only batches whose base offset is below `max_offset` (the high watermark, exclusive)
    /// are returned; batches are added while the total stays within `max_bytes`, but the
    /// first available batch is always returned whole even if larger (so consumers make
    /// progress). The first batch may start before `offset`: clients skip the records they
    /// did not ask for. `offset == log end offset` gives no records; an offset outside
    /// `[log start, log end]` is [`StorageError::OffsetOutOfRange`].
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64) -> Result<ReadResult> {
        let plan = self.plan_read(offset, max_bytes, max_offset)?;
        // One buffer of the exact size and one positioned read per segment: the only copy of
        // the bytes is the kernel's, from the page cache into that buffer.
        let mut out = BytesMut::zeroed(plan.bytes);
        let mut at = 0usize;
        'read: for p in &plan.parts {
            let len: usize = p.entries.iter().map(|e| e.size_bytes as usize).sum();
            if !p.file.read_exact_at(&mut out[at..at + len], p.position)? {
                // Truncated since we looked at the log end offset: keep what is whole.
                break 'read;
            }
            for e in &p.entries {
                // A follower's truncation and new appends may have replaced the bytes between
                // our index lookup and the read: keep only batches that are still the ones
                // indexed (their base offset and length match).
                let size = e.size_bytes as usize;
                let ok = BatchHeader::parse(&out[at..at + size])
                    .is_ok_and(|h| h.base_offset == e.base_offset && h.total_len() == size);
                if !ok {
                    break 'read;
                }
                at += size;
            }
        }
        out.truncate(at);
        Ok(ReadResult {
            records: out.freeze(),
            log_start_offset: plan.log_start,
            log_end_offset: plan.log_end,
        })
    }

    /// The batches [`PartitionLog::read`] would return (same arguments, same rules), as
    /// regions of segment files rather than bytes: nothing is read, so the caller can send
    /// them with `sendfile(2)` from the page cache (see [`FileRegion`] for why a held region
    /// stays valid). One region per segment touched.
    ///
    /// A read that raced a truncation of one of its files is planned again; after
    /// `REGION_PLAN_ATTEMPTS` such races it falls back to copying (one
    /// [`RecordChunk::Bytes`]).
    pub fn read_regions(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<RegionRead> {
        for _ in 0..REGION_PLAN_ATTEMPTS {
            let plan = self.plan_read(offset, max_bytes, max_offset)?;
            // A file cut (truncation) while we read its index entries may have made them
            // stale; the count was taken before the entries were read.
            if plan
                .parts
                .iter()
                .any(|p| p.file.truncations() != p.truncations)
            {
                continue;
            }
            let mut out = RegionRead {
                chunks: Vec::with_capacity(plan.parts.len()),
                bytes: plan.bytes as u64,
                records_count: 0,
                next_offset: plan
                    .parts
                    .last()
                    .and_then(|p| p.entries.last())
                    .map(IndexEntry::next_offset),
                log_start_offset: plan.log_start,
                log_end_offset: plan.log_end,
            };
            for p in plan.parts {
                let len: u64 = p.entries.iter().map(|e| u64::from(e.size_bytes)).sum();
                let records: u64 = p
                    .entries
                    .iter()
                    .map(|e| u64::try_from(e.records_count).unwrap_or(0))
                    .sum();
                out.records_count += records;
                // Start reading what is not in the page cache yet, so the sender's
                // `sendfile` (on an async thread) rarely waits for the disk.
                let _ = rustix::fs::fadvise(
                    &*p.file,
                    p.position,
                    std::num::NonZeroU64::new(len),
                    rustix::fs::Advice::WillNeed,
                );
                out.chunks.push(RecordChunk::File(FileRegion::new(
                    p.file,
                    p.position,
                    len,
                    records,
                    p.truncations,
                )));
            }
            return Ok(out);
        }
        let r = self.read(offset, max_bytes, max_offset)?;
        let mut records_count = 0u64;
        let mut next_offset = None;
        let mut rest: &[u8] = &r.records;
        while let Ok(h) = BatchHeader::parse(rest) {
            records_count += u64::try_from(h.records_count).unwrap_or(0);
            next_offset = Some(h.next_offset());
            rest = rest.get(h.total_len()..).unwrap_or_default();
        }
        Ok(RegionRead {
            bytes: r.records.len() as u64,
            records_count,
            next_offset,
            chunks: if r.records.is_empty() {
                Vec::new()
            } else {
                vec![RecordChunk::Bytes(r.records)]
            },
            log_start_offset: r.log_start_offset,
            log_end_offset: r.log_end_offset,
        })
    }

    /// Which batches a read returns, from the index alone (the rules are `read`'s).
    fn plan_read(&self, offset: i64, max_bytes: usize, max_offset: i64) -> Result<ReadPlan> {
        self.ensure_open()?;
        let s = &self.shared;
        let log_start = s.log_start.load(Ordering::Acquire);
        let log_end = s.log_end.load(Ordering::Acquire);
        let out_of_range = |log_start| StorageError::OffsetOutOfRange {
            offset,
            log_start,
            log_end,
        };
        if offset < log_start || offset > log_end {
            return Err(out_of_range(log_start));
        }
        let limit = max_offset.min(log_end);
        // Batches of a segment lie back to back in its file: one part per segment.
        let mut parts: Vec<PlannedPart> = Vec::new();
        let mut total = 0usize;
        // A cleaner's swap replaces a segment's entries and file together: the plan sees
        // both before or both after (the old file stays readable through its handle).
        let swap = s.swap.read();
        if offset < limit {
            let Some(mut seg) = self.segment_at(offset) else {
                return Err(out_of_range(s.log_start.load(Ordering::Acquire)));
            };
            let mut from = match floor_entry(&seg.keyspace, seg.base_offset, offset)? {
                Some(e) if e.last_offset >= offset => e.base_offset,
                _ => offset,
            };
            'segments: loop {
                // Before the entries: a cut after this count makes them suspect.
                let truncations = seg.file.truncations();
                let mut entries: Vec<IndexEntry> = Vec::new();
                let mut full = false;
                for guard in seg
                    .keyspace
                    .range(key(INDEX_PREFIX, from)..=key(INDEX_PREFIX, i64::MAX))
                {
                    let (k, v) = guard.into_inner()?;
                    let e = IndexEntry::decode(&k, &v)?;
                    let size = e.size_bytes as usize;
                    if e.base_offset >= limit || (total > 0 && total + size > max_bytes) {
                        full = true;
                        break;
                    }
                    total += size;
                    entries.push(e);
                }
                if let Some(first) = entries.first() {
                    parts.push(PlannedPart {
                        file: seg.file.clone(),
                        position: first.position,
                        entries,
                        truncations,
                    });
                }
                if full {
                    break 'segments;
                }
                match self.segment_after(seg.base_offset) {
                    Some(next) if next.base_offset < limit => {
                        from = next.base_offset;
                        seg = next;
                    }
                    _ => break,
                }
            }
        }
        drop(swap);
        Ok(ReadPlan {
            parts,
            bytes: total,
            log_start,
            log_end,
        })
    }

    /// The segment that holds `offset` (the last one starting at or before it).
    fn segment_at(&self, offset: i64) -> Option<Segment> {
        let segments = self.shared.segments.read();
        let i = segments.partition_point(|g| g.base_offset <= offset);
        segments.get(i.checked_sub(1)?).cloned()
    }

    fn segment_after(&self, base_offset: i64) -> Option<Segment> {
        let segments = self.shared.segments.read();
        let i = segments.partition_point(|g| g.base_offset <= base_offset);
        segments.get(i).cloned()
    }

    /// First offset of the log.
    pub fn log_start_offset(&self) -> i64 {
        self.shared.log_start.load(Ordering::Acquire)
    }

    /// The offset the next appended record gets.
    pub fn log_end_offset(&self) -> i64 {
        self.shared.log_end.load(Ordering::Acquire)
    }

    /// The last stable offset for a high watermark: the first offset of the oldest
    /// transaction that is open, or closed by a marker the high watermark has not passed yet
    /// (Kafka's first unstable offset), capped at `high_watermark`. `read_committed` readers
    /// stop here. Forgets closed transactions whose marker is below `high_watermark` (call it
    /// with the replica's current high watermark, which only grows while it leads).
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        let mut unstable = self.shared.unstable.lock();
        // Bounded: each closed transaction is pruned once.
        while let Some((first, end)) = unstable.first_key_value().map(|(f, e)| (*f, *e)) {
            if end >= high_watermark {
                return first.min(high_watermark);
            }
            unstable.remove(&first);
        }
        high_watermark
    }

    /// The producers this partition keeps state for (idempotence and open transactions),
    /// sorted by producer id: a snapshot for DescribeProducers. Bounded by the producer state
    /// itself, which retention prunes; takes the writer lock for the copy only.
    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        self.shared.writer.lock().producers.active()
    }

    /// The aborted transactions a `read_committed` fetch of `[fetch_offset, upper_offset)`
    /// must be told about: those whose range overlaps it (their abort marker at or after
    /// `fetch_offset`, their first offset below `upper_offset`), in marker order. Reads the
    /// aborted-transactions index from the segment holding `fetch_offset` on, and stops at
    /// the first entry recorded when no transaction below `upper_offset` was open any more.
    pub fn aborted_transactions(
        &self,
        fetch_offset: i64,
        upper_offset: i64,
    ) -> Result<Vec<AbortedTransaction>> {
        self.ensure_open()?;
        let mut out = Vec::new();
        if fetch_offset >= upper_offset {
            return Ok(out);
        }
        let from = fetch_offset.max(self.log_start_offset());
        if from > self.shared.last_abort.load(Ordering::Acquire) {
            // No abort marker at or after `from`, so no entry either.
            return Ok(out);
        }
        let segments: Vec<Segment> = {
            let segments = self.shared.segments.read();
            let i = segments
                .partition_point(|g| g.base_offset <= from)
                .saturating_sub(1);
            segments[i..].to_vec()
        };
        for seg in segments {
            for guard in seg
                .keyspace
                .range(key(ABORTED_PREFIX, from)..=key(ABORTED_PREFIX, i64::MAX))
            {
                let (k, v) = guard.into_inner()?;
                let a = AbortedEntry::decode(&k, &v)?;
                if a.first_offset < upper_offset {
                    out.push(AbortedTransaction {
                        producer_id: a.producer_id,
                        first_offset: a.first_offset,
                        last_offset: a.last_offset,
                    });
                }
                if a.last_stable_offset >= upper_offset {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// The first record whose timestamp is at or after `timestamp_ms`, at or after the log start
    /// offset and below `max_offset` (exclusive: the high watermark): its offset and timestamp;
    /// `None` if there is none. Records below the log start (removed by DeleteRecords but still
    /// in their segment) are never the answer: a consumer could not fetch them (Kafka searches
    /// from the log start offset too).
    ///
    /// Kafka's answer: the index finds the first batch whose max timestamp reaches the time,
    /// then that batch is read (decompressed, bounded) and its records walked. In a
    /// `LogAppendTime` batch every record has the batch's timestamp. A stored batch that cannot
    /// be walked (written before validation walked records) is answered at batch granularity.
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
        max_offset: i64,
    ) -> Result<Option<TimestampOffset>> {
        self.ensure_open()?;
        let _swap = self.shared.swap.read();
        let start = self.log_start_offset();
        let limit = self.log_end_offset().min(max_offset);
        let candidates: Vec<Segment> = self
            .shared
            .segments
            .read()
            .iter()
            .filter(|g| g.max_timestamp >= timestamp_ms && g.base_offset < limit)
            .cloned()
            .collect();
        for seg in candidates {
            for guard in seg.keyspace.prefix([INDEX_PREFIX]) {
                let (k, v) = guard.into_inner()?;
                let e = IndexEntry::decode(&k, &v)?;
                if e.base_offset >= limit {
                    return Ok(None);
                }
                if e.max_timestamp < timestamp_ms || e.last_offset < start {
                    continue;
                }
                if let Some(found) =
                    self.record_in_batch(&seg.file, &e, start, |r| r.timestamp >= timestamp_ms)?
                {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp below `max_offset` (exclusive), the first one if
    /// several share it (ListOffsets -3, KIP-734); `None` for an empty range.
    ///
    /// Segments are visited newest first and skipped when their max timestamp cannot beat
    /// the best so far, so with ordered timestamps only the last segment's index is read.
    pub fn max_timestamp_offset(&self, max_offset: i64) -> Result<Option<TimestampOffset>> {
        self.ensure_open()?;
        let _swap = self.shared.swap.read();
        let start = self.log_start_offset();
        let limit = self.log_end_offset().min(max_offset);
        let segments: Vec<Segment> = self
            .shared
            .segments
            .read()
            .iter()
            .filter(|g| g.base_offset < limit && !g.is_empty())
            .cloned()
            .collect();
        let mut best: Option<(IndexEntry, Arc<SegmentFile>)> = None;
        for seg in segments.into_iter().rev() {
            let seg_max = seg.max_timestamp;
            if best
                .as_ref()
                .is_some_and(|(b, _)| seg_max < b.max_timestamp)
            {
                continue;
            }
            let mut in_segment: Option<IndexEntry> = None;
            for guard in seg.keyspace.prefix([INDEX_PREFIX]) {
                let (k, v) = guard.into_inner()?;
                let e = IndexEntry::decode(&k, &v)?;
                if e.base_offset >= limit {
                    break;
                }
                // Batches wholly removed by DeleteRecords are not candidates.
                if e.last_offset < start {
                    continue;
                }
                if in_segment.is_none_or(|b| e.max_timestamp > b.max_timestamp) {
                    in_segment = Some(e);
                }
            }
            if let Some(e) = in_segment {
                // Ties go to the earlier segment: it is visited later, so `>=`.
                if best
                    .as_ref()
                    .is_none_or(|(b, _)| e.max_timestamp >= b.max_timestamp)
                {
                    best = Some((e, seg.file.clone()));
                }
            }
        }
        let Some((e, file)) = best else {
            return Ok(None);
        };
        let max = e.max_timestamp;
        Ok(self
            .record_in_batch(&file, &e, start, |r| r.timestamp >= max)?
            .or(Some(TimestampOffset {
                offset: e.base_offset.max(start),
                timestamp: max,
            })))
    }

    /// The first record of the batch of `e` at or after offset `from` for which `hit` holds.
    /// `LogAppendTime` batches and batches that cannot be walked answer with the batch (its
    /// first offset at or after `from`, its max timestamp) if its max timestamp is a hit.
    /// The caller makes sure the batch reaches `from` (`e.last_offset >= from`).
    fn record_in_batch(
        &self,
        file: &SegmentFile,
        e: &IndexEntry,
        from: i64,
        mut hit: impl FnMut(&RecordInfo) -> bool,
    ) -> Result<Option<TimestampOffset>> {
        debug_assert!(
            e.last_offset >= from,
            "batch ends before the lookup's start"
        );
        let whole_batch = TimestampOffset {
            offset: e.base_offset.max(from),
            timestamp: e.max_timestamp,
        };
        let batch_hit = hit(&RecordInfo {
            offset_delta: 0,
            timestamp: e.max_timestamp,
            has_key: true,
        });
        if e.attributes & LOG_APPEND_TIME_BIT != 0 {
            return Ok(batch_hit.then_some(whole_batch));
        }
        let mut data = vec![0u8; e.size_bytes as usize];
        if !file.read_exact_at(&mut data, e.position)?
            || !BatchHeader::parse(&data).is_ok_and(|h| h.base_offset == e.base_offset)
        {
            // Truncated since the index was read.
            return Ok(None);
        }
        let bound = records_bytes_max(self.shared.config.read().batch_bytes_max);
        let mut found = None;
        let walked = visit_records(&data, bound, |r| {
            let offset = e.base_offset.saturating_add(r.offset_delta);
            if offset >= from && hit(&r) {
                found = Some(TimestampOffset {
                    offset,
                    timestamp: r.timestamp,
                });
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        match walked {
            Ok(_) => Ok(found),
            Err(err) => {
                warn!(partition = %self.shared.id, offset = e.base_offset, %err,
                    "stored batch cannot be walked: answering the lookup with the whole batch");
                Ok(batch_hit.then_some(whole_batch))
            }
        }
    }

    /// For OffsetForLeaderEpoch: the largest epoch at or below `leader_epoch` and its end
    /// offset (the start offset of the next higher epoch, or the log end offset for the
    /// latest). `None` if the log has no epoch at or below it.
    pub fn last_epoch_end_offset(&self, leader_epoch: i32) -> Option<(i32, i64)> {
        let epochs = self.shared.epochs.read();
        epochs.end_offset_for(leader_epoch, self.log_end_offset())
    }

    /// The leader epoch of the last batch in the log; `None` for an empty log.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.shared.epochs.read().latest()
    }

    /// Removes every batch at or after `offset`, and the batch containing `offset` if it
    /// falls inside one (truncation happens at batch boundaries: the log end offset becomes
    /// that batch's base offset). Later segments that become empty are dropped; epoch cache
    /// and producer state are rebuilt from the remaining index entries. Durable on return.
    ///
    /// `offset >= log end offset` changes nothing. An offset below the log start empties the
    /// log and restarts it at `offset` (Kafka's `truncateFullyAndStartAt`).
    ///
    /// Cost: the index entries of the whole log are rescanned (truncation is rare: a
    /// follower after a leader change).
    pub fn truncate_to(&self, offset: i64) -> Result<()> {
        let s = &self.shared;
        let mut w = s.writer.lock();
        self.ensure_open()?;
        let log_start = self.log_start_offset();
        let log_end = self.log_end_offset();
        if offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            });
        }
        if offset >= log_end {
            return Ok(());
        }
        if offset < log_start {
            return self.reset_locked(&mut w, offset);
        }
        let Some(seg) = self.segment_at(offset) else {
            return Err(StorageError::CorruptLog(format!(
                "no segment holds offset {offset} of {}",
                s.id
            )));
        };
        let new_end = match floor_entry(&seg.keyspace, seg.base_offset, offset)? {
            Some(e) if e.last_offset >= offset => e.base_offset,
            _ => offset,
        };
        // Readers stop at the new end before anything disappears.
        s.log_end.store(new_end, Ordering::Release);
        let doomed: Vec<Segment> = {
            let mut segments = s.segments.write();
            let keep = segments.partition_point(|g| g.base_offset <= new_end);
            segments.split_off(keep.max(1))
        };
        for g in doomed.iter().rev() {
            s.db.delete_keyspace(g.keyspace.clone())?;
            remove_file(g.file.path())?;
        }
        let seg = self
            .segment_at(new_end)
            .ok_or_else(|| StorageError::CorruptLog("log without segments".into()))?;
        let seg_base = seg.base_offset;
        // The file first, durably: an index entry must never outlive its bytes, and bytes
        // past the last entry would be indexed again by recovery.
        if let Some(first_cut) = seg
            .keyspace
            .range(key(INDEX_PREFIX, new_end)..=key(INDEX_PREFIX, i64::MAX))
            .next()
        {
            let (k, v) = first_cut.into_inner()?;
            seg.file.truncate(IndexEntry::decode(&k, &v)?.position)?;
        }
        remove_from(&s.db, &seg.keyspace, new_end)?;
        // The cut may fall in a gap (a cleaned segment, or a follower's copy of one): the
        // segment ends at the cut.
        seg.keyspace
            .insert(compact::END_OFFSET_KEY, new_end.to_be_bytes())?;
        let scanned = scan(self.handles(), i64::MAX)?;
        if scanned.broken.is_some() {
            return Err(StorageError::CorruptLog(format!(
                "{} is not contiguous after truncation to {new_end}",
                s.id
            )));
        }
        self.install(&mut w, scanned);
        debug_assert_eq!(self.log_end_offset(), new_end);
        warn!(partition = %s.id, offset, log_end_offset = new_end, segment = seg_base, "log truncated");
        Ok(())
    }

    /// Empties the log and restarts it at `offset`, which may lie before the log start (a
    /// follower told to truncate below it) or after the log end (a follower that must start
    /// at the leader's log start). Durable on return.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<()> {
        let mut w = self.shared.writer.lock();
        self.ensure_open()?;
        if offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset(),
                log_end: self.log_end_offset(),
            });
        }
        self.reset_locked(&mut w, offset)
    }

    fn reset_locked(&self, w: &mut WriterState, offset: i64) -> Result<()> {
        let s = &self.shared;
        s.log_end.store(
            offset.min(s.log_end.load(Ordering::Acquire)),
            Ordering::Release,
        );
        let old: Vec<Segment> = std::mem::take(&mut *s.segments.write());
        // The new (empty) segment exists before the old ones go, so a crash in between
        // leaves either the old log or a log that recovery cuts at the new segment.
        let (reuse, others): (Vec<Segment>, Vec<Segment>) =
            old.into_iter().partition(|g| g.base_offset == offset);
        let segment = match reuse.into_iter().next() {
            Some(g) => {
                g.file.truncate(0)?;
                remove_from(&s.db, &g.keyspace, offset)?;
                g.keyspace.remove(START_MARKER_KEY)?;
                Segment::empty(offset, g.keyspace, g.file)
            }
            None => self.create_segment(offset)?,
        };
        for g in others.iter().rev() {
            s.db.delete_keyspace(g.keyspace.clone())?;
            remove_file(g.file.path())?;
        }
        s.db.persist(PersistMode::SyncData)?;
        self.install(
            w,
            Scan {
                segments: vec![segment],
                epochs: EpochCache::default(),
                producers: ProducerStates::default(),
                aborted: Vec::new(),
                last_abort: -1,
                broken: None,
            },
        );
        warn!(partition = %s.id, offset, "log emptied and restarted");
        Ok(())
    }

    /// Drops the oldest whole segments (never the active one) while the log is larger than
    /// `retention_bytes` (if >= 0) or the oldest segment's newest batch is older than
    /// `now_ms - retention_ms` (if >= 0). A segment whose largest timestamp is negative (no
    /// usable timestamp) ages from its creation instead (see `Segment::created_ms`). Returns
    /// the number of segments dropped; the log start offset moves to the first remaining
    /// segment.
    ///
    /// Unlike Kafka, which stops dropping once one more segment would take the log *below*
    /// `retention.bytes`, this stops once the log is *at or below* it: `retention_bytes` is a
    /// ceiling the log returns under, as far as whole segments allow.
    ///
    /// Cost: one `delete_keyspace` per dropped segment (fast: files go when the last reader
    /// lets go of the segment), no data is rewritten.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize> {
        let cfg = self.config();
        if !cfg.cleanup_policy.delete {
            // `cleanup.policy=compact`: the cleaner bounds the log, not time or size.
            return Ok(0);
        }
        self.drop_oldest_segments(|oldest, _, total| {
            let by_size = u64::try_from(cfg.retention_bytes).is_ok_and(|max| total > max);
            // A segment without a usable timestamp ages from its creation, not from 1970.
            let by_time = cfg.retention_ms >= 0
                && oldest.newest_ms() < now_ms.saturating_sub(cfg.retention_ms);
            (by_size || by_time).then_some(if by_size {
                "retention.bytes"
            } else {
                "retention.ms"
            })
        })
    }

    /// Drops every whole segment whose records all lie below `offset` (Kafka's DeleteRecords,
    /// at segment granularity): the log start offset becomes the base offset of the first
    /// segment kept. The active segment is never dropped. For logs whose owner knows that
    /// everything below `offset` is superseded (`__consumer_offsets` after its coordinators
    /// rewrote their live state). Returns the number of segments dropped.
    pub fn delete_segments_before(&self, offset: i64) -> Result<usize> {
        self.drop_oldest_segments(|_, next_base, _| {
            (next_base <= offset).then_some("delete records")
        })
    }

    /// Kafka's DeleteRecords: makes `offset` the log start offset, so records below it can no
    /// longer be read. Whole segments below it are dropped; inside the (new) first segment the
    /// start is a logical one, kept durably in a marker key of that segment's keyspace (it goes
    /// with the segment, and a later drop of that segment moves the start past it anyway).
    /// Offsets at or below the log start change nothing; offsets past the log end offset are
    /// [`StorageError::OffsetOutOfRange`] (the caller caps at the high watermark). Durable on
    /// return; returns the new log start offset.
    pub fn advance_log_start(&self, offset: i64) -> Result<i64> {
        let log_end = self.log_end_offset();
        if offset > log_end || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset(),
                log_end,
            });
        }
        self.delete_segments_before(offset)?;
        let s = &self.shared;
        let _w = s.writer.lock();
        self.ensure_open()?;
        let start = self.log_start_offset();
        if offset <= start {
            return Ok(start);
        }
        let first = s
            .segments
            .read()
            .first()
            .map(|g| g.keyspace.clone())
            .ok_or_else(|| StorageError::CorruptLog(format!("{} has no segments", s.id)))?;
        first.insert(START_MARKER_KEY, offset.to_be_bytes())?;
        // Aborted transactions that end below the new start can no longer be fetched.
        let below: Vec<_> = first
            .range(key(ABORTED_PREFIX, 0)..key(ABORTED_PREFIX, offset))
            .map(|g| g.key().map(|k| k.to_vec()))
            .collect::<std::result::Result<_, _>>()?;
        for k in below {
            first.remove(k)?;
        }
        s.db.persist(PersistMode::SyncData)?;
        s.log_start.store(offset, Ordering::Release);
        info!(partition = %s.id, log_start_offset = offset, "log start advanced (delete records)");
        Ok(offset)
    }

    /// Drops the oldest segment while `drop(oldest, base offset of the next segment, log
    /// bytes)` names a reason, keeping at least one segment.
    fn drop_oldest_segments(
        &self,
        mut drop_why: impl FnMut(&Segment, i64, u64) -> Option<&'static str>,
    ) -> Result<usize> {
        let s = &self.shared;
        let mut w = s.writer.lock();
        self.ensure_open()?;
        let mut dropped = 0usize;
        loop {
            let (oldest, next_base) = {
                let segments = s.segments.read();
                if segments.len() < 2 {
                    break;
                }
                (segments[0].clone(), segments[1].base_offset)
            };
            let total = s.size_bytes.load(Ordering::Acquire);
            let Some(why) = drop_why(&oldest, next_base, total) else {
                break;
            };
            s.db.delete_keyspace(oldest.keyspace.clone())?;
            // Readers still holding the segment keep reading the unlinked file.
            remove_file(oldest.file.path())?;
            let new_start = {
                let mut segments = s.segments.write();
                segments.remove(0);
                segments
                    .first()
                    .map_or(oldest.next_offset, |g| g.base_offset)
            };
            s.size_bytes.fetch_sub(oldest.size_bytes, Ordering::AcqRel);
            s.log_start.store(new_start, Ordering::Release);
            dropped += 1;
            info!(
                partition = %s.id, base_offset = oldest.base_offset, size_bytes = oldest.size_bytes,
                log_start_offset = new_start, reason = why, "segment deleted"
            );
        }
        if dropped > 0 {
            let start = self.log_start_offset();
            let mut epochs = s.epochs.write();
            if start >= self.log_end_offset() {
                // No batch left to carry an epoch: what a recovery would rebuild.
                *epochs = EpochCache::default();
            } else {
                epochs.truncate_from_start(start);
            }
            drop(epochs);
            w.producers.remove_before(start);
            {
                // Open transactions may have moved up to the new start.
                let mut unstable = s.unstable.lock();
                unstable.retain(|_, end| *end != i64::MAX && *end >= start);
                unstable.extend(w.producers.open_txns().map(|(f, _)| (f, i64::MAX)));
            }
            drop(w);
            s.space.deleted();
        }
        Ok(dropped)
    }

    /// Bytes of record batches in the log.
    pub fn size_bytes(&self) -> u64 {
        self.shared.size_bytes.load(Ordering::Acquire)
    }

    /// Number of segments (at least 1).
    pub fn segment_count(&self) -> usize {
        self.shared.segments.read().len()
    }

    /// Makes everything appended so far durable: fdatasyncs the active segment file (older
    /// ones were synced when the next was created), records how far it is synced (so
    /// recovery verifies only what came after), then fsyncs the journal (the whole node's:
    /// one journal is shared by every log).
    pub fn sync(&self) -> Result<()> {
        let s = &self.shared;
        {
            // The writer lock keeps the recovery point from naming bytes a concurrent
            // truncation removed.
            let _w = s.writer.lock();
            if !s.closed.load(Ordering::Acquire) {
                let active = s.segments.read().last().cloned();
                if let Some(seg) = active {
                    seg.file.sync()?;
                    seg.keyspace.insert(
                        RECOVERY_POINT_KEY,
                        recovery_point_value(seg.next_offset, seg.end_position()),
                    )?;
                }
            }
        }
        s.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    /// The handles of every segment, oldest first, for a rescan.
    fn handles(&self) -> Vec<SegmentHandles> {
        self.shared
            .segments
            .read()
            .iter()
            .map(|g| (g.base_offset, g.keyspace.clone(), g.file.clone()))
            .collect()
    }

    /// True once a newer `open_log` of the same partition or a `delete_log` superseded this
    /// handle; every call but the offset getters then fails with
    /// [`StorageError::LogClosed`].
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    #[cfg(test)]
    fn producer_count(&self) -> usize {
        self.shared.writer.lock().producers.len()
    }

    #[cfg(test)]
    fn epoch_entries(&self) -> Vec<(i32, i64)> {
        self.shared.epochs.read().entries()
    }

    #[cfg(test)]
    fn active_keyspace(&self) -> Keyspace {
        self.shared
            .segments
            .read()
            .last()
            .map(|g| g.keyspace.clone())
            .unwrap()
    }
}

/// A weak handle, for the store's table of open logs.
#[derive(Clone, Default)]
pub(crate) struct WeakLog(std::sync::Weak<LogShared>);

impl std::fmt::Debug for WeakLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WeakLog")
            .field(&self.0.strong_count())
            .finish()
    }
}

impl WeakLog {
    pub(crate) fn upgrade(&self) -> Option<PartitionLog> {
        self.0.upgrade().map(|shared| PartitionLog { shared })
    }
}

/// The index entry with the greatest base offset in `[seg_base, offset]`.
fn floor_entry(keyspace: &Keyspace, seg_base: i64, offset: i64) -> Result<Option<IndexEntry>> {
    match keyspace
        .range(key(INDEX_PREFIX, seg_base)..=key(INDEX_PREFIX, offset))
        .next_back()
    {
        Some(guard) => {
            let (k, v) = guard.into_inner()?;
            Ok(Some(IndexEntry::decode(&k, &v)?))
        }
        None => Ok(None),
    }
}

/// Key of the logical log start inside a segment (DeleteRecords); sorts apart from the
/// 9-byte `D`/`I` keys, which scans never mistake it for.
const START_MARKER_KEY: &[u8] = b"S";

/// The logical log start recorded in a segment, if any.
fn read_start_marker(keyspace: &Keyspace) -> Result<Option<i64>> {
    match keyspace.get(START_MARKER_KEY)? {
        None => Ok(None),
        Some(v) => {
            let bytes: [u8; 8] = v[..].try_into().map_err(|_| {
                StorageError::CorruptLog(format!("log start marker of {} bytes", v.len()))
            })?;
            Ok(Some(i64::from_be_bytes(bytes)))
        }
    }
}

/// Key of a segment's recovery point: the offset and file position up to which its file was
/// fdatasynced (both u64 BE). Written only after that fdatasync, so it never claims bytes
/// that are not durable; recovery verifies the batches after it only.
const RECOVERY_POINT_KEY: &[u8] = b"R";

fn read_recovery_point(keyspace: &Keyspace) -> Result<Option<(i64, u64)>> {
    Ok(keyspace.get(RECOVERY_POINT_KEY)?.and_then(|v| {
        let offset = i64::from_be_bytes(v.get(..8)?.try_into().ok()?);
        let position = u64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
        Some((offset, position))
    }))
}

fn recovery_point_value(offset: i64, position: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&offset.to_be_bytes());
    v[8..].copy_from_slice(&position.to_be_bytes());
    v
}

/// Brings the active segment's index and file into agreement after an unclean stop (Kafka's
/// log recovery, for the one segment that was not fsynced whole when the next was created):
///
/// 1. every indexed batch after the recovery point is read back: it must be whole, carry its
///    indexed base offset and size, and pass its CRC; the first that fails is where the log
///    ends (its index entry and all later ones go);
/// 2. complete, CRC-valid batches in the file after the last indexed one (their bytes reached
///    the file, their index entry did not reach the journal) get their entries rebuilt;
/// 3. anything after that (a torn write) is cut off the file.
///
/// Returns whether anything changed (the caller rescans the index).
fn recover_tail(db: &Database, id: PartitionId, seg: &Segment) -> Result<bool> {
    let file_len = seg.file.len()?;
    let verify_from = match read_recovery_point(&seg.keyspace)? {
        Some((offset, _)) if offset >= seg.base_offset && offset <= seg.next_offset => offset,
        _ => seg.base_offset,
    };
    let mut buf = Vec::new();
    let mut cut: Option<IndexEntry> = None;
    let mut verified = 0u64;
    for guard in seg
        .keyspace
        .range(key(INDEX_PREFIX, verify_from)..=key(INDEX_PREFIX, i64::MAX))
    {
        let (k, v) = guard.into_inner()?;
        let e = IndexEntry::decode(&k, &v)?;
        let ok = seg
            .file
            .batch_at(e.position, Some(e.base_offset), file_len, &mut buf)?
            .is_some_and(|h| h.total_len() == e.size_bytes as usize);
        if !ok {
            cut = Some(e);
            break;
        }
        verified += 1;
    }
    let (mut position, mut next) = match &cut {
        Some(e) => (e.position, e.base_offset),
        None => (seg.end_position(), seg.next_offset),
    };
    let mut rebuilt = Vec::new();
    if cut.is_none() {
        while let Some(h) = seg
            .file
            .batch_at(position, Some(next), file_len, &mut buf)?
        {
            let abort = aborts(&h, &buf)?;
            rebuilt.push(IndexEntry::of(&h, position).aborting(abort));
            position += h.total_len() as u64;
            next = h.next_offset();
        }
    }
    if cut.is_none() && rebuilt.is_empty() && position == file_len {
        debug!(partition = %id, segment = seg.base_offset, verified, "segment tail verified");
        return Ok(false);
    }
    warn!(
        partition = %id, segment = seg.base_offset, verified,
        cut_at_offset = cut.as_ref().map(|e| e.base_offset),
        rebuilt_index_entries = rebuilt.len(),
        file_bytes = file_len, kept_bytes = position,
        "recovered the active segment after an unclean stop"
    );
    if let Some(e) = cut {
        // The file first: an index entry must never outlive the bytes it points at.
        seg.file.truncate(e.position)?;
        remove_from(db, &seg.keyspace, e.base_offset)?;
    } else {
        seg.file.truncate(position)?;
        let mut batch = db.batch().durability(Some(PersistMode::SyncData));
        for e in &rebuilt {
            batch.insert(
                &seg.keyspace,
                &key(INDEX_PREFIX, e.base_offset)[..],
                &e.encode()[..],
            );
        }
        batch.commit()?;
    }
    Ok(true)
}

/// Deletes the index entries of a segment whose base offset is `>= from`, and its recovery
/// point (it may lie past `from`, and the batches written after `from` next are not durable
/// yet), durably. The caller cuts the file first.
fn remove_from(db: &Database, keyspace: &Keyspace, from: i64) -> Result<()> {
    let mut offsets = Vec::new();
    for guard in keyspace.range(key(INDEX_PREFIX, from)..=key(INDEX_PREFIX, i64::MAX)) {
        let k = guard.key()?;
        offsets.push(index::offset_of_key(&k)?);
    }
    // Aborted transactions whose marker goes with the cut.
    let mut aborted = Vec::new();
    for guard in keyspace.range(key(ABORTED_PREFIX, from)..=key(ABORTED_PREFIX, i64::MAX)) {
        aborted.push(guard.key()?.to_vec());
    }
    let mut batch = db.batch().durability(Some(PersistMode::SyncData));
    batch.remove(keyspace, RECOVERY_POINT_KEY);
    // A cleaned segment's end marker may lie past `from`.
    batch.remove(keyspace, compact::END_OFFSET_KEY);
    for o in offsets {
        // Readers already stop below `from` (the log end offset moved first).
        batch.remove(keyspace, &key(INDEX_PREFIX, o)[..]);
    }
    for k in aborted {
        batch.remove(keyspace, k);
    }
    batch.commit()?;
    Ok(())
}

/// Removes a segment file; one already gone is fine (a crash between keyspace and file).
fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
