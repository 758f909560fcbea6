//! Leader-epoch cache: for each leader epoch present in the log, the offset of its first
//! batch. Answers Kafka's OffsetForLeaderEpoch ("where does my epoch end in your log?"),
//! which replication uses to find where a follower's log diverges. Rebuilt from the index
//! entries on recovery and truncation, so it needs no file of its own.

use std::collections::BTreeMap;

/// Epoch -> start offset, epochs and offsets both increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EpochCache {
    starts: BTreeMap<i32, i64>,
}

impl EpochCache {
    /// Notes that a batch of `epoch` starts at `offset`. Returns false (and changes nothing)
    /// for an epoch older than the latest: epochs in a log never go backwards.
    pub(crate) fn assign(&mut self, epoch: i32, offset: i64) -> bool {
        match self.latest() {
            Some(latest) if epoch < latest => false,
            Some(latest) if epoch == latest => true,
            _ => {
                debug_assert!(self.starts.values().all(|s| *s <= offset));
                self.starts.insert(epoch, offset);
                true
            }
        }
    }

    pub(crate) fn latest(&self) -> Option<i32> {
        self.starts.keys().next_back().copied()
    }

    /// The largest epoch at or below `requested` and where it ends: the start of the next
    /// epoch, or `log_end_offset` for the latest.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let (&epoch, _) = self.starts.range(..=requested).next_back()?;
        let end = self
            .starts
            .range(epoch.saturating_add(1)..)
            .next()
            .map_or(log_end_offset, |(_, start)| *start);
        Some((epoch, end))
    }

    /// After retention moved the log start: epochs that ended before it go; the epoch in
    /// force at it now starts there.
    pub(crate) fn truncate_from_start(&mut self, log_start_offset: i64) {
        let mut in_force = None;
        while let Some((&epoch, &start)) = self.starts.iter().next() {
            if start > log_start_offset {
                break;
            }
            self.starts.remove(&epoch);
            in_force = Some(epoch);
        }
        if let Some(epoch) = in_force {
            self.starts.insert(epoch, log_start_offset);
        }
    }

    /// The start offset of every epoch: the first batch of each, whose header the cleaner
    /// keeps (the cache is rebuilt from batch headers).
    pub(crate) fn start_offsets(&self) -> impl Iterator<Item = i64> + '_ {
        self.starts.values().copied()
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> Vec<(i32, i64)> {
        self.starts.iter().map(|(e, s)| (*e, *s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        let mut c = EpochCache::default();
        for (e, s) in entries {
            assert!(c.assign(*e, *s));
        }
        c
    }

    #[test]
    fn end_offsets_table() {
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        let leo = 40;
        let cases = [
            (0, None),
            (1, Some((1, 10))),
            (2, Some((1, 10))),
            (3, Some((3, 25))),
            (4, Some((4, 40))),
            (9, Some((4, 40))),
        ];
        for (requested, want) in cases {
            assert_eq!(c.end_offset_for(requested, leo), want, "epoch {requested}");
        }
        assert_eq!(EpochCache::default().end_offset_for(5, 0), None);
        assert_eq!(c.latest(), Some(4));
    }

    #[test]
    fn assign_ignores_repeats_and_older_epochs() {
        let mut c = cache(&[(2, 0)]);
        assert!(c.assign(2, 5));
        assert!(!c.assign(1, 7));
        assert!(c.assign(3, 9));
        assert_eq!(c.entries(), vec![(2, 0), (3, 9)]);
    }

    #[test]
    fn truncate_from_start_keeps_the_epoch_in_force() {
        let mut c = cache(&[(1, 0), (3, 10), (4, 25)]);
        c.truncate_from_start(12);
        assert_eq!(c.entries(), vec![(3, 12), (4, 25)]);
        c.truncate_from_start(25);
        assert_eq!(c.entries(), vec![(4, 25)]);
        c.truncate_from_start(3);
        assert_eq!(c.entries(), vec![(4, 25)]);
    }
}
