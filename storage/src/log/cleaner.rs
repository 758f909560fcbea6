//! The log cleaner's decisions (sans-IO): which segments a pass cleans, the key map, and
//! what happens to each record and batch. The I/O (reading segments, writing the cleaned
//! file, the swap) is in `compact.rs`; everything here is plain data in, verdicts out.
//!
//! ```text
//!   segments:  [ clean ... clean | dirty ... dirty | uncleanable ... | active ]
//!               0            first_dirty         end                  last
//!               └── rewritten ────────────────────┘
//!                              └─ key map built ──┘
//! ```
//!
//! Kafka's rules: the active segment is never cleaned; neither is anything at or above the
//! high watermark or holding a record newer than `min.compaction.lag.ms`. A pass runs when
//! the dirty share of the cleanable bytes reaches `min.cleanable.dirty.ratio`, or when the
//! oldest dirty record is older than `max.compaction.lag.ms`. The key map holds the latest
//! offset of every key in the dirty part; every record of the rewritten range whose key maps
//! to a larger offset is removed. Offsets never change.

use std::collections::{HashMap, HashSet};

/// What the planner needs to know of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentFacts {
    pub(crate) base_offset: i64,
    /// Offset after the segment (the next segment's base offset).
    pub(crate) next_offset: i64,
    pub(crate) size_bytes: u64,
    /// Its newest record's timestamp (or its creation time when it has none usable).
    pub(crate) newest_ms: i64,
    /// Its oldest batch's timestamp (or its creation time): the age of its oldest record.
    pub(crate) oldest_ms: i64,
    /// When it was first cleaned; `None` for a dirty segment.
    pub(crate) cleaned_ms: Option<i64>,
}

/// The topic settings the planner applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanRules {
    pub(crate) dirty_ratio_min_permille: u32,
    pub(crate) compaction_lag_min_ms: i64,
    pub(crate) compaction_lag_max_ms: i64,
}

/// Where a log stands for the cleaner: also what /metrics reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanerState {
    /// Offset of the first record never cleaned (the cleaner point).
    pub first_dirty_offset: i64,
    /// Bytes in dirty segments that may be cleaned now.
    pub dirty_bytes: u64,
    /// Bytes in the cleanable range (cleaned plus dirty).
    pub cleanable_bytes: u64,
}

impl CleanerState {
    /// Dirty share of the cleanable bytes, in thousandths (0 when there is nothing).
    pub fn dirty_ratio_permille(&self) -> u32 {
        if self.cleanable_bytes == 0 {
            return 0;
        }
        u32::try_from(self.dirty_bytes.saturating_mul(1000) / self.cleanable_bytes).unwrap_or(1000)
    }
}

/// A pass to run: rewrite segments `[0, end)` with the keys of `[first_dirty, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanPlan {
    pub(crate) first_dirty: usize,
    pub(crate) end: usize,
    pub(crate) why: &'static str,
}

/// Decides whether a pass is due. `segments` are the log's, oldest first, the last being the
/// active one; `high_watermark` bounds what may be cleaned (records above it may still be
/// truncated, and a key's older value must not go before its newer one is committed).
pub(crate) fn plan(
    segments: &[SegmentFacts],
    high_watermark: i64,
    rules: &CleanRules,
    now_ms: i64,
) -> (CleanerState, Option<CleanPlan>) {
    let closed = segments.len().saturating_sub(1);
    let first_dirty = segments[..closed]
        .iter()
        .position(|g| g.cleaned_ms.is_none())
        .unwrap_or(closed);
    let lag_horizon = now_ms.saturating_sub(rules.compaction_lag_min_ms.max(0));
    let end = (first_dirty..closed)
        .find(|&i| {
            let g = &segments[i];
            g.next_offset > high_watermark || g.newest_ms > lag_horizon
        })
        .unwrap_or(closed);
    let dirty_bytes: u64 = segments[first_dirty..end]
        .iter()
        .map(|g| g.size_bytes)
        .sum();
    let clean_bytes: u64 = segments[..first_dirty].iter().map(|g| g.size_bytes).sum();
    let state = CleanerState {
        first_dirty_offset: segments
            .get(first_dirty)
            .map_or(high_watermark, |g| g.base_offset),
        dirty_bytes,
        cleanable_bytes: dirty_bytes + clean_bytes,
    };
    if end == first_dirty {
        return (state, None);
    }
    let overdue = rules.compaction_lag_max_ms >= 0
        && segments[first_dirty].oldest_ms < now_ms.saturating_sub(rules.compaction_lag_max_ms);
    let why = if dirty_bytes == 0 {
        // Empty dirty segments: nothing to read, but the cleaner point moves past them.
        Some("empty segments")
    } else if state.dirty_ratio_permille() >= rules.dirty_ratio_min_permille {
        Some("min.cleanable.dirty.ratio")
    } else if overdue {
        Some("max.compaction.lag.ms")
    } else {
        None
    };
    (
        state,
        why.map(|why| CleanPlan {
            first_dirty,
            end,
            why,
        }),
    )
}

/// Latest offset of each key seen in the dirty part, with a bound on the memory it takes.
#[derive(Debug, Default)]
pub(crate) struct KeyMap {
    latest: HashMap<Vec<u8>, i64>,
    bytes: usize,
}

/// Bookkeeping bytes counted per entry beside the key itself.
const ENTRY_OVERHEAD_BYTES: usize = 48;

impl KeyMap {
    /// Notes `key` at `offset` (offsets come in increasing order).
    pub(crate) fn insert(&mut self, key: &[u8], offset: i64) {
        match self.latest.get_mut(key) {
            Some(o) => *o = (*o).max(offset),
            None => {
                self.bytes += key.len() + ENTRY_OVERHEAD_BYTES;
                self.latest.insert(key.to_vec(), offset);
            }
        }
    }

    /// The latest offset of `key` in the dirty part.
    pub(crate) fn get(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(key).copied()
    }

    /// Memory the map takes, roughly.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn len(&self) -> usize {
        self.latest.len()
    }
}

/// What kind of batch a record is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchKind {
    pub(crate) transactional: bool,
    pub(crate) control: bool,
}

/// The fate of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Keep,
    /// A record of the same key with a larger offset is in the dirty part.
    Superseded,
    /// A tombstone whose segment was cleaned more than `delete.retention.ms` ago.
    TombstoneExpired,
}

/// Kafka's retain rule. Control batches and transactional records are kept whole (removing
/// aborted records needs the transaction index, which comes later); a keyless record (which
/// produce refuses on a compacted topic, but a topic may have been switched to compaction) is
/// kept, as it cannot be superseded.
pub(crate) fn retain(
    kind: BatchKind,
    offset: i64,
    key: Option<&[u8]>,
    value_is_null: bool,
    map: &KeyMap,
    tombstones_expired: bool,
) -> Verdict {
    if kind.control || kind.transactional {
        return Verdict::Keep;
    }
    let Some(key) = key else {
        return Verdict::Keep;
    };
    if map.get(key).is_some_and(|latest| latest > offset) {
        return Verdict::Superseded;
    }
    if value_is_null && tombstones_expired {
        return Verdict::TombstoneExpired;
    }
    Verdict::Keep
}

/// What the cleaned segment holds of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchFate {
    /// Every record kept: the bytes are copied as they are.
    Unchanged,
    /// Some records kept: a new batch with those records.
    Rewritten,
    /// No record kept but the batch must stay (empty): it is its producer's last batch
    /// (producer state is rebuilt from batch headers) or the first batch of its leader epoch
    /// (the epoch cache is rebuilt from them).
    Emptied,
    /// No record kept: the batch goes.
    Dropped,
}

pub(crate) fn batch_fate(kept: usize, total: usize, header_needed: bool) -> BatchFate {
    if kept == total && (total > 0 || header_needed) {
        BatchFate::Unchanged
    } else if kept > 0 {
        BatchFate::Rewritten
    } else if header_needed {
        BatchFate::Emptied
    } else {
        BatchFate::Dropped
    }
}

/// Batches whose header must survive cleaning: each producer's last batch and each leader
/// epoch's first batch (by base offset).
#[derive(Debug, Default, Clone)]
pub(crate) struct KeptHeaders {
    pub(crate) base_offsets: HashSet<i64>,
}

impl KeptHeaders {
    pub(crate) fn contains(&self, base_offset: i64) -> bool {
        self.base_offsets.contains(&base_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, next: i64, size: u64, newest_ms: i64, cleaned: Option<i64>) -> SegmentFacts {
        SegmentFacts {
            base_offset: base,
            next_offset: next,
            size_bytes: size,
            newest_ms,
            oldest_ms: newest_ms - 10,
            cleaned_ms: cleaned,
        }
    }

    const RULES: CleanRules = CleanRules {
        dirty_ratio_min_permille: 500,
        compaction_lag_min_ms: 0,
        compaction_lag_max_ms: i64::MAX,
    };

    #[test]
    fn plan_table() {
        let now = 10_000;
        let active = seg(300, 310, 50, now, None);
        type Case = (
            &'static str,
            Vec<SegmentFacts>,
            i64,
            CleanRules,
            Option<(usize, usize, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            (
                "only the active segment: nothing",
                vec![active],
                310,
                RULES,
                None,
            ),
            (
                "one dirty closed segment: all dirty",
                vec![seg(0, 300, 100, 100, None), active],
                310,
                RULES,
                Some((0, 1, "min.cleanable.dirty.ratio")),
            ),
            (
                "dirty share below the ratio: wait",
                vec![
                    seg(0, 100, 300, 100, Some(1)),
                    seg(100, 300, 100, 200, None),
                    active,
                ],
                310,
                RULES,
                None,
            ),
            (
                "dirty share at the ratio: clean everything below the active segment",
                vec![
                    seg(0, 100, 100, 100, Some(1)),
                    seg(100, 300, 100, 200, None),
                    active,
                ],
                310,
                RULES,
                Some((1, 2, "min.cleanable.dirty.ratio")),
            ),
            (
                "the high watermark inside a closed segment stops the pass before it",
                vec![
                    seg(0, 100, 100, 100, None),
                    seg(100, 300, 100, 200, None),
                    active,
                ],
                250,
                RULES,
                Some((0, 1, "min.cleanable.dirty.ratio")),
            ),
            (
                "min.compaction.lag.ms keeps recent segments dirty",
                vec![
                    seg(0, 100, 100, 100, None),
                    seg(100, 300, 100, 9_500, None),
                    active,
                ],
                310,
                CleanRules {
                    compaction_lag_min_ms: 1_000,
                    ..RULES
                },
                Some((0, 1, "min.cleanable.dirty.ratio")),
            ),
            (
                "min.compaction.lag.ms covering every segment: nothing",
                vec![seg(0, 100, 100, 9_500, None), active],
                310,
                CleanRules {
                    compaction_lag_min_ms: 1_000,
                    ..RULES
                },
                None,
            ),
            (
                "max.compaction.lag.ms forces a pass below the ratio",
                vec![
                    seg(0, 100, 900, 100, Some(1)),
                    seg(100, 300, 100, 200, None),
                    active,
                ],
                310,
                CleanRules {
                    compaction_lag_max_ms: 5_000,
                    ..RULES
                },
                Some((1, 2, "max.compaction.lag.ms")),
            ),
            (
                "max.compaction.lag.ms not reached: wait",
                vec![
                    seg(0, 100, 900, 100, Some(1)),
                    seg(100, 300, 100, 9_990, None),
                    active,
                ],
                310,
                CleanRules {
                    compaction_lag_max_ms: 5_000,
                    ..RULES
                },
                None,
            ),
            (
                "everything cleaned: nothing",
                vec![seg(0, 100, 100, 100, Some(1)), active],
                310,
                RULES,
                None,
            ),
            (
                "empty dirty segments move the cleaner point",
                vec![
                    seg(0, 100, 900, 100, Some(1)),
                    seg(100, 100, 0, 9_990, None),
                    active,
                ],
                310,
                CleanRules {
                    compaction_lag_min_ms: 0,
                    ..RULES
                },
                Some((1, 2, "empty segments")),
            ),
            (
                "ratio 0 cleans whenever something is dirty",
                vec![
                    seg(0, 100, 900, 100, Some(1)),
                    seg(100, 300, 1, 200, None),
                    active,
                ],
                310,
                CleanRules {
                    dirty_ratio_min_permille: 0,
                    ..RULES
                },
                Some((1, 2, "min.cleanable.dirty.ratio")),
            ),
        ];
        for (name, segments, hw, rules, want) in cases {
            let (_, got) = plan(&segments, hw, &rules, now);
            assert_eq!(got.map(|p| (p.first_dirty, p.end, p.why)), want, "{name}");
        }
    }

    #[test]
    fn cleaner_state_reports_the_dirty_ratio() {
        let segments = vec![
            seg(0, 100, 300, 100, Some(1)),
            seg(100, 200, 100, 100, None),
            seg(200, 210, 50, 100, None),
        ];
        let (state, _) = plan(&segments, 210, &RULES, 1_000);
        assert_eq!(state.first_dirty_offset, 100);
        assert_eq!(state.dirty_bytes, 100);
        assert_eq!(state.cleanable_bytes, 400);
        assert_eq!(state.dirty_ratio_permille(), 250);
        assert_eq!(CleanerState::default().dirty_ratio_permille(), 0);
    }

    #[test]
    fn retain_table() {
        let mut map = KeyMap::default();
        map.insert(b"a", 10);
        map.insert(b"b", 5);
        map.insert(b"a", 12);
        assert_eq!(map.len(), 2);
        assert!(map.bytes() >= 2 + 2 * ENTRY_OVERHEAD_BYTES);
        let plain = BatchKind {
            transactional: false,
            control: false,
        };
        let txn = BatchKind {
            transactional: true,
            control: false,
        };
        let control = BatchKind {
            transactional: true,
            control: true,
        };
        type Case = (
            &'static str,
            BatchKind,
            i64,
            Option<&'static [u8]>,
            bool,
            bool,
            Verdict,
        );
        let cases: [Case; 10] = [
            (
                "older value of a mapped key goes",
                plain,
                3,
                Some(b"a"),
                false,
                false,
                Verdict::Superseded,
            ),
            (
                "the latest value stays",
                plain,
                12,
                Some(b"a"),
                false,
                false,
                Verdict::Keep,
            ),
            (
                "a key not in the dirty part stays",
                plain,
                3,
                Some(b"z"),
                false,
                false,
                Verdict::Keep,
            ),
            (
                "an older tombstone is superseded too",
                plain,
                4,
                Some(b"b"),
                true,
                false,
                Verdict::Superseded,
            ),
            (
                "the latest tombstone stays while young",
                plain,
                5,
                Some(b"b"),
                true,
                false,
                Verdict::Keep,
            ),
            (
                "the latest tombstone goes once expired",
                plain,
                5,
                Some(b"b"),
                true,
                true,
                Verdict::TombstoneExpired,
            ),
            (
                "a value (not a tombstone) never expires",
                plain,
                12,
                Some(b"a"),
                false,
                true,
                Verdict::Keep,
            ),
            (
                "transactional records are kept",
                txn,
                3,
                Some(b"a"),
                false,
                true,
                Verdict::Keep,
            ),
            (
                "control batches are kept",
                control,
                3,
                Some(b"a"),
                true,
                true,
                Verdict::Keep,
            ),
            (
                "keyless records are kept",
                plain,
                3,
                None,
                false,
                true,
                Verdict::Keep,
            ),
        ];
        for (name, kind, offset, key, tombstone, expired, want) in cases {
            assert_eq!(
                retain(kind, offset, key, tombstone, &map, expired),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn batch_fate_table() {
        let cases = [
            (3, 3, false, BatchFate::Unchanged),
            (0, 0, true, BatchFate::Unchanged),
            (0, 0, false, BatchFate::Dropped),
            (1, 3, false, BatchFate::Rewritten),
            (1, 3, true, BatchFate::Rewritten),
            (0, 3, true, BatchFate::Emptied),
            (0, 3, false, BatchFate::Dropped),
        ];
        for (kept, total, needed, want) in cases {
            assert_eq!(
                batch_fate(kept, total, needed),
                want,
                "{kept}/{total} {needed}"
            );
        }
    }
}
