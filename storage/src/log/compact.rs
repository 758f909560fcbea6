//! Log compaction: the cleaner's I/O (Kafka's `cleanup.policy=compact`).
//!
//! ```text
//!  clean(high watermark, now)               (the replica's timer; one blocking thread)
//!    │ node budget: Cleaner::try_begin      (at most `threads` passes at once per node)
//!    ├─ plan (cleaner.rs): first dirty segment .. first uncleanable one
//!    ├─ key map: latest offset per key of the dirty segments (bounded: `key_map_bytes_max`)
//!    └─ for each segment from the oldest to the end of the plan:
//!         1. read its batches, keep what `retain` says, write `<base>.<gen+1>.log`,
//!            fdatasync it and its directory                      (I/O throttled)
//!         2. writer lock + swap lock: the segment is still the one read (else give up),
//!            one fjall batch (SyncData): old index entries out, new ones in, the
//!            generation `G`, the end offset `N`, the first-clean time `C`
//!         3. publish the new file in the segment list; unlink the old file
//! ```
//!
//! Crash safety: until step 2 commits, the keyspace names the old generation and the new
//! file is an orphan that `open` removes; after it, the old file is the orphan. Index and
//! generation change in one atomic batch, so a segment is never a mix. Readers plan a read
//! (index entries and the file handle together) under the swap lock's read side, and read
//! from the handle they took: an unlinked old file stays readable through it.
//!
//! What a cleaned segment holds: every batch with at least one kept record (offsets, base
//! sequence, producer id/epoch and last offset delta unchanged; compressed batches
//! recompressed with their codec), empty batches where a producer's last batch or a leader
//! epoch's first batch must survive, and nothing else. Transactional and control batches are
//! kept whole.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjall::PersistMode;
use tracing::{debug, info};

use super::cleaner::{
    batch_fate, plan, retain, BatchFate, BatchKind, CleanRules, CleanerState, KeptHeaders, KeyMap,
    SegmentFacts, Verdict,
};
use super::index::{key, IndexEntry, INDEX_PREFIX};
use super::segment::{file_name, sync_parent, SegmentFile};
use super::{remove_file, PartitionLog, Segment, RECOVERY_POINT_KEY};
use crate::batch::{raw_records, rebuilt_batch, records_bytes_max, BatchHeader};
use crate::{Result, StorageError};

/// Key of a segment's file generation (u64 BE): its file is `file_name(base, generation)`.
pub(crate) const GENERATION_KEY: &[u8] = b"G";
/// Key of a cleaned segment's end offset (i64 BE): its last batches may have been removed.
pub(crate) const END_OFFSET_KEY: &[u8] = b"N";
/// Key of the time (ms, i64 BE) a segment was first cleaned: the tombstone clock.
pub(crate) const CLEANED_AT_KEY: &[u8] = b"C";

/// Node-wide settings of the cleaner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerConfig {
    /// Passes that may run at once on the node (Kafka's `log.cleaner.threads`); 0 stops the
    /// cleaner.
    pub threads: usize,
    /// Bytes per second a pass reads and writes at most (Kafka's
    /// `log.cleaner.io.max.bytes.per.second`); 0 means no limit.
    pub io_bytes_per_sec_max: u64,
    /// Memory for the key map of one pass (Kafka's `log.cleaner.dedupe.buffer.size`, per
    /// thread): a pass covers as many dirty segments as fit, at least one.
    pub key_map_bytes_max: usize,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            threads: 1,
            io_bytes_per_sec_max: 0,
            key_map_bytes_max: 64 << 20,
        }
    }
}

/// The node's cleaner: its budget and what it has done (for /metrics).
#[derive(Debug)]
pub struct Cleaner {
    cfg: CleanerConfig,
    running: parking_lot::Mutex<usize>,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    segments_swapped: AtomicU64,
    passes: AtomicU64,
}

impl Cleaner {
    pub(crate) fn new(cfg: CleanerConfig) -> Cleaner {
        Cleaner {
            cfg,
            running: parking_lot::Mutex::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            segments_swapped: AtomicU64::new(0),
            passes: AtomicU64::new(0),
        }
    }

    /// Takes one of the node's cleaner slots, if one is free.
    fn try_begin(&self) -> Option<Slot<'_>> {
        let mut running = self.running.lock();
        (*running < self.cfg.threads).then(|| {
            *running += 1;
            Slot(self)
        })
    }

    /// What the cleaner did since the node started.
    pub fn stats(&self) -> CleanerStats {
        CleanerStats {
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            segments_swapped: self.segments_swapped.load(Ordering::Relaxed),
            passes: self.passes.load(Ordering::Relaxed),
        }
    }
}

struct Slot<'a>(&'a Cleaner);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.running.lock() -= 1;
    }
}

/// Counters of the node's cleaner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanerStats {
    /// Bytes of segments read by passes (the bytes cleaned).
    pub bytes_read: u64,
    /// Bytes written into cleaned segments.
    pub bytes_written: u64,
    /// Segments replaced by their cleaned copy.
    pub segments_swapped: u64,
    /// Passes run.
    pub passes: u64,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanOutcome {
    /// Segments replaced by a cleaned copy.
    pub segments_cleaned: usize,
    /// Bytes of the segments before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Offset of the first record never cleaned, after the pass.
    pub first_dirty_offset: i64,
}

/// Where a test makes the swap fail, as a crash there would (nothing after it happens).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashAt {
    /// The new file is written and synced; the index still names the old one.
    BeforeIndexCommit,
    /// The index names the new file; the old file is still there.
    BeforeOldFileRemoval,
}

#[cfg(test)]
thread_local! {
    pub(crate) static CRASH_AT: std::cell::Cell<Option<CrashAt>> = const { std::cell::Cell::new(None) };
}

fn crash_point(_at: &'static str) -> Result<()> {
    #[cfg(test)]
    {
        let hit = CRASH_AT.with(|c| match c.get() {
            Some(CrashAt::BeforeIndexCommit) if _at == "index" => true,
            Some(CrashAt::BeforeOldFileRemoval) if _at == "unlink" => true,
            _ => false,
        });
        if hit {
            return Err(StorageError::Io(std::io::Error::other(format!(
                "injected crash before {_at}"
            ))));
        }
    }
    Ok(())
}

/// Sleeps as needed to keep a pass under its byte rate.
struct Throttle {
    bytes_per_sec: u64,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    fn account(&mut self, bytes: u64) {
        self.bytes += bytes;
        if self.bytes_per_sec == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_sec as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            // The rate limit itself: a pass runs on a blocking thread of its own.
            std::thread::sleep(wait.min(Duration::from_secs(10)));
        }
    }
}

/// Runs `f` when dropped.
struct Guard<F: FnMut()>(F);

impl<F: FnMut()> Drop for Guard<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

fn scopeguard<F: FnMut()>(f: F) -> Guard<F> {
    Guard(f)
}

fn be_i64(v: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

/// Key present in a segment that holds offset gaps without having been cleaned: a
/// follower's copy of a cleaned leader segment. Written in the same batch as the entries.
pub(crate) const GAPS_KEY: &[u8] = b"X";

/// What a segment's keyspace records besides its index entries, for the cleaner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CleanMarkers {
    pub(crate) generation: u64,
    pub(crate) end_offset: Option<i64>,
    pub(crate) cleaned_ms: Option<i64>,
    /// Offsets may jump between its batches (cleaned, or replicated from a cleaned leader).
    pub(crate) gaps: bool,
}

pub(crate) fn read_clean_markers(keyspace: &fjall::Keyspace) -> Result<CleanMarkers> {
    let generation = keyspace
        .get(GENERATION_KEY)?
        .and_then(|v| be_i64(&v))
        .map_or(0, |g| g as u64);
    let end_offset = keyspace.get(END_OFFSET_KEY)?.and_then(|v| be_i64(&v));
    let cleaned_ms = keyspace.get(CLEANED_AT_KEY)?.and_then(|v| be_i64(&v));
    let gaps = cleaned_ms.is_some() || keyspace.get(GAPS_KEY)?.is_some();
    Ok(CleanMarkers {
        generation,
        end_offset,
        cleaned_ms,
        gaps,
    })
}

impl PartitionLog {
    /// Where the log stands for the cleaner (for /metrics); zeros when it is not compacted.
    pub fn cleaner_state(&self, high_watermark: i64, now_ms: i64) -> CleanerState {
        let cfg = self.config();
        if !cfg.cleanup_policy.compact {
            return CleanerState::default();
        }
        let facts = facts_of(&self.shared.segments.read());
        plan(&facts, high_watermark, &clean_rules(&cfg), now_ms).0
    }

    /// One cleaner pass, if the topic is compacted, a pass is due and the node's cleaner has
    /// a free slot: see the module docs. Nothing at or above `high_watermark` is touched.
    /// Blocks on disk I/O (and on the throttle) for as long as the pass takes.
    pub fn clean(&self, high_watermark: i64, now_ms: i64) -> Result<CleanOutcome> {
        let cfg = self.config();
        let s = &self.shared;
        let mut out = CleanOutcome {
            first_dirty_offset: self.log_start_offset(),
            ..CleanOutcome::default()
        };
        if !cfg.cleanup_policy.compact {
            return Ok(out);
        }
        let Some(_slot) = s.cleaner.try_begin() else {
            debug!(partition = %s.id, "cleaner busy with other partitions: pass skipped");
            return Ok(out);
        };
        if s.cleaning.swap(true, Ordering::AcqRel) {
            return Ok(out);
        }
        let _cleaning = scopeguard(|| s.cleaning.store(false, Ordering::Release));
        self.ensure_open()?;
        // One snapshot of the segment list: the plan's indices refer to it.
        let segments: Vec<Segment> = s.segments.read().clone();
        let facts = facts_of(&segments);
        let (state, Some(mut p)) = plan(&facts, high_watermark, &clean_rules(&cfg), now_ms) else {
            out.first_dirty_offset = plan(&facts, high_watermark, &clean_rules(&cfg), now_ms)
                .0
                .first_dirty_offset;
            return Ok(out);
        };
        let started = Instant::now();
        s.cleaner.passes.fetch_add(1, Ordering::Relaxed);
        let mut throttle = Throttle {
            bytes_per_sec: s.cleaner.cfg.io_bytes_per_sec_max,
            started,
            bytes: 0,
        };
        let bound = records_bytes_max(cfg.batch_bytes_max);
        // The key map of the dirty segments, as many as fit in its memory budget.
        let mut map = KeyMap::default();
        for (i, seg) in segments.iter().enumerate().take(p.end).skip(p.first_dirty) {
            if i > p.first_dirty && map.bytes() >= s.cleaner.cfg.key_map_bytes_max {
                p.end = i;
                break;
            }
            for_each_batch(seg, &mut throttle, |h, batch| {
                if h.is_control() || h.is_transactional() {
                    return Ok(());
                }
                let raw = raw_records(batch, bound)?;
                for r in &raw.records {
                    if let Some(k) = raw.key(r) {
                        map.insert(k, h.base_offset + r.offset_delta);
                    }
                }
                Ok(())
            })?;
        }
        let kept_headers = self.kept_headers();
        let end_offset = segments[p.end - 1].next_offset;
        for seg in &segments[..p.end] {
            let tombstones_expired = seg
                .cleaned_ms
                .is_some_and(|t| t.saturating_add(cfg.tombstone_retention_ms) <= now_ms);
            let cleaned_ms = seg.cleaned_ms.unwrap_or(now_ms);
            match self.clean_segment(
                seg,
                &map,
                &kept_headers,
                tombstones_expired,
                cleaned_ms,
                bound,
                &mut throttle,
            )? {
                Some((before, after)) => {
                    out.segments_cleaned += 1;
                    out.bytes_before += before;
                    out.bytes_after += after;
                }
                // Truncated or dropped under the pass: the next pass starts again.
                None => return Ok(out),
            }
        }
        out.first_dirty_offset = end_offset;
        debug!(
            partition = %s.id, why = p.why, dirty_ratio_permille = state.dirty_ratio_permille(),
            keys = map.len(), segments = out.segments_cleaned, bytes_before = out.bytes_before,
            bytes_after = out.bytes_after, first_dirty_offset = end_offset,
            took_ms = started.elapsed().as_millis() as u64, "cleaner pass done"
        );
        Ok(out)
    }

    /// Base offsets of the batches whose header must survive: each producer's last batch and
    /// each leader epoch's first batch.
    fn kept_headers(&self) -> KeptHeaders {
        let s = &self.shared;
        let mut kept = KeptHeaders::default();
        {
            let w = s.writer.lock();
            kept.base_offsets.extend(w.producers.last_batch_offsets());
        }
        kept.base_offsets.extend(s.epochs.read().start_offsets());
        kept
    }

    /// Rewrites one segment and swaps it in. `Ok(None)` if the segment changed under the
    /// pass (truncated, dropped): the copy is thrown away. Returns the sizes before and after.
    #[allow(clippy::too_many_arguments)]
    fn clean_segment(
        &self,
        seg: &Segment,
        map: &KeyMap,
        kept_headers: &KeptHeaders,
        tombstones_expired: bool,
        cleaned_ms: i64,
        bound: u64,
        throttle: &mut Throttle,
    ) -> Result<Option<(u64, u64)>> {
        let s = &self.shared;
        let generation = seg.generation + 1;
        let path = s.dir.join(file_name(seg.base_offset, generation));
        let file = SegmentFile::create(&path)?;
        let mut entries: Vec<IndexEntry> = Vec::new();
        let mut position = 0u64;
        let mut pending: Vec<u8> = Vec::new();
        let mut written = 0u64;
        let result = for_each_batch(seg, throttle, |h, batch| {
            let kind = BatchKind {
                transactional: h.is_transactional(),
                control: h.is_control(),
            };
            let new_batch: Option<std::borrow::Cow<'_, [u8]>> =
                if kind.control || kind.transactional {
                    Some(batch.into())
                } else {
                    let raw = raw_records(batch, bound)?;
                    let mut kept = Vec::with_capacity(raw.bytes.len());
                    let mut count = 0usize;
                    for r in &raw.records {
                        let offset = h.base_offset + r.offset_delta;
                        if retain(
                            kind,
                            offset,
                            raw.key(r),
                            r.value_is_null,
                            map,
                            tombstones_expired,
                        ) == Verdict::Keep
                        {
                            kept.extend_from_slice(&raw.bytes[r.range.clone()]);
                            count += 1;
                        }
                    }
                    match batch_fate(
                        count,
                        raw.records.len(),
                        kept_headers.contains(h.base_offset),
                    ) {
                        BatchFate::Unchanged => Some(batch.into()),
                        BatchFate::Dropped => None,
                        BatchFate::Rewritten | BatchFate::Emptied => Some(
                            rebuilt_batch(batch, &kept, i32::try_from(count).unwrap_or(i32::MAX))?
                                .into(),
                        ),
                    }
                };
            if let Some(b) = new_batch {
                let nh = BatchHeader::parse(&b)?;
                // Kept control batches keep their index-only abort flag, which recovery reads
                // to rebuild producer state without the batch bytes.
                let abort = nh.is_control()
                    && crate::batch::control::TxnMarker::decode(&b)?.is_some_and(|m| !m.commit);
                entries.push(IndexEntry::of(&nh, position).aborting(abort));
                position += b.len() as u64;
                pending.extend_from_slice(&b);
                if pending.len() >= 1 << 20 {
                    file.write_all_at(&[&pending], position - pending.len() as u64)?;
                    written += pending.len() as u64;
                    pending.clear();
                }
            }
            Ok(())
        });
        let finish = result.and_then(|()| {
            if !pending.is_empty() {
                file.write_all_at(&[&pending], position - pending.len() as u64)?;
                written += pending.len() as u64;
            }
            throttle.account(written);
            file.sync()?;
            sync_parent(&path)
        });
        if let Err(e) = finish {
            let _ = remove_file(&path);
            return Err(e);
        }
        s.cleaner
            .bytes_read
            .fetch_add(seg.size_bytes, Ordering::Relaxed);
        s.cleaner
            .bytes_written
            .fetch_add(position, Ordering::Relaxed);

        // The swap.
        let _w = s.writer.lock();
        let unchanged = !s.closed.load(Ordering::Acquire)
            && s.segments.read().iter().any(|g| {
                g.base_offset == seg.base_offset
                    && Arc::ptr_eq(&g.file, &seg.file)
                    && g.next_offset == seg.next_offset
                    && g.size_bytes == seg.size_bytes
            });
        if !unchanged {
            debug!(partition = %s.id, segment = seg.base_offset, "segment changed during cleaning: copy dropped");
            remove_file(&path)?;
            return Ok(None);
        }
        crash_point("index")?;
        let new_file = Arc::new(file);
        {
            let _swap = s.swap.write();
            let mut batch = s.db.batch().durability(Some(PersistMode::SyncData));
            for guard in seg.keyspace.prefix([INDEX_PREFIX]) {
                let k = guard.key()?;
                batch.remove(&seg.keyspace, &k[..]);
            }
            for e in &entries {
                batch.insert(
                    &seg.keyspace,
                    &key(INDEX_PREFIX, e.base_offset)[..],
                    &e.encode()[..],
                );
            }
            batch.remove(&seg.keyspace, RECOVERY_POINT_KEY);
            batch.insert(
                &seg.keyspace,
                GENERATION_KEY,
                &(generation as i64).to_be_bytes()[..],
            );
            batch.insert(
                &seg.keyspace,
                END_OFFSET_KEY,
                &seg.next_offset.to_be_bytes()[..],
            );
            batch.insert(&seg.keyspace, CLEANED_AT_KEY, &cleaned_ms.to_be_bytes()[..]);
            batch.commit()?;
            let mut segments = s.segments.write();
            let Some(g) = segments
                .iter_mut()
                .find(|g| g.base_offset == seg.base_offset)
            else {
                return Err(StorageError::CorruptLog(format!(
                    "segment {} of {} vanished under the writer lock",
                    seg.base_offset, s.id
                )));
            };
            let mut fresh = Segment::empty(seg.base_offset, seg.keyspace.clone(), new_file);
            fresh.created_ms = g.created_ms;
            for e in &entries {
                fresh.add(e);
            }
            fresh.next_offset = seg.next_offset;
            fresh.generation = generation;
            fresh.cleaned_ms = Some(cleaned_ms);
            *g = fresh;
        }
        s.size_bytes.fetch_sub(seg.size_bytes, Ordering::AcqRel);
        s.size_bytes.fetch_add(position, Ordering::AcqRel);
        crash_point("unlink")?;
        // Readers holding the old file keep reading it through their handle.
        remove_file(seg.file.path())?;
        s.cleaner.segments_swapped.fetch_add(1, Ordering::Relaxed);
        s.space.deleted();
        info!(
            partition = %s.id, segment = seg.base_offset, bytes_before = seg.size_bytes,
            bytes_after = position, batches = entries.len(), "segment cleaned"
        );
        Ok(Some((seg.size_bytes, position)))
    }
}

fn facts_of(segments: &[Segment]) -> Vec<SegmentFacts> {
    segments
        .iter()
        .map(|g| SegmentFacts {
            base_offset: g.base_offset,
            next_offset: g.next_offset,
            size_bytes: g.size_bytes,
            newest_ms: g.newest_ms(),
            oldest_ms: g
                .first_batch_timestamp
                .filter(|t| *t >= 0)
                .unwrap_or(g.created_ms),
            cleaned_ms: g.cleaned_ms,
        })
        .collect()
}

fn clean_rules(cfg: &crate::LogConfig) -> CleanRules {
    CleanRules {
        dirty_ratio_min_permille: cfg.dirty_ratio_min_permille,
        compaction_lag_min_ms: cfg.compaction_lag_min_ms,
        compaction_lag_max_ms: cfg.compaction_lag_max_ms,
    }
}

/// Reads a closed segment's batches in index order (bounded chunks of about 1 MiB plus one
/// batch) and hands each whole batch to `f`. A closed segment is never appended to; a
/// truncation under the read shows as a batch that is not the one indexed: an error, and
/// the pass gives up.
fn for_each_batch(
    seg: &Segment,
    throttle: &mut Throttle,
    mut f: impl FnMut(&BatchHeader, &[u8]) -> Result<()>,
) -> Result<()> {
    const CHUNK_BYTES: u64 = 1 << 20;
    let mut chunk: Vec<IndexEntry> = Vec::new();
    let mut buf = Vec::new();
    let mut flush = |chunk: &mut Vec<IndexEntry>, buf: &mut Vec<u8>| -> Result<()> {
        let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
            return Ok(());
        };
        let len = (last.end_position() - first.position) as usize;
        buf.clear();
        buf.resize(len, 0);
        if !seg.file.read_exact_at(buf, first.position)? {
            return Err(StorageError::CorruptLog(format!(
                "segment {} shrank while it was being cleaned",
                seg.base_offset
            )));
        }
        throttle.account(len as u64);
        let mut at = 0usize;
        for e in chunk.iter() {
            let size = e.size_bytes as usize;
            let batch = &buf[at..at + size];
            let h = BatchHeader::parse(batch)?;
            if h.base_offset != e.base_offset || h.total_len() != size {
                return Err(StorageError::CorruptLog(format!(
                    "batch at offset {} of segment {} is not the one indexed",
                    e.base_offset, seg.base_offset
                )));
            }
            f(&h, batch)?;
            at += size;
        }
        chunk.clear();
        Ok(())
    };
    let mut chunk_bytes = 0u64;
    for guard in seg.keyspace.prefix([INDEX_PREFIX]) {
        let (k, v) = guard.into_inner()?;
        let e = IndexEntry::decode(&k, &v)?;
        if e.base_offset >= seg.next_offset {
            break;
        }
        chunk_bytes += u64::from(e.size_bytes);
        chunk.push(e);
        if chunk_bytes >= CHUNK_BYTES {
            flush(&mut chunk, &mut buf)?;
            chunk_bytes = 0;
        }
    }
    flush(&mut chunk, &mut buf)
}
