//! Idempotent-producer state: per producer id, its epoch and the metadata of its last few
//! batches, so a retried batch is recognised as a duplicate and a gap or repeat in the
//! sequence numbers is refused; and its open transaction on this partition, if any (where it
//! started), so the log knows its last stable offset and which ranges an abort marker ends.
//! A plain struct: the log feeds it index entries.
//!
//! ```text
//!   transactional batch, no open txn ──▶ open at its base offset
//!   transactional batch, open txn    ──▶ (unchanged)
//!   marker (commit or abort)         ──▶ closed; an abort gives (pid, first, marker offset)
//!   marker, no open txn              ──▶ (written anyway, as Kafka does: an abort still gives
//!                                         (pid, marker offset, marker offset))
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::batch::increment_sequence;
use crate::{Result, StorageError};

/// Batches remembered per producer (Kafka's `max.in.flight.requests.per.connection` limit
/// for idempotence).
pub(crate) const BATCH_METADATA_MAX: usize = 5;

/// One appended batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMeta {
    pub(crate) base_sequence: i32,
    pub(crate) last_sequence: i32,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) max_timestamp: i64,
}

/// State of one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub(crate) epoch: i16,
    /// Its last data batches (empty after a marker of a newer epoch, or when it only wrote
    /// markers here).
    pub(crate) batches: VecDeque<BatchMeta>,
    /// First offset of its open transaction on this partition.
    pub(crate) txn_first_offset: Option<i64>,
    /// Last offset of anything it wrote here (data or marker).
    pub(crate) last_offset: i64,
}

impl ProducerEntry {
    fn last_sequence(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_sequence)
    }
}

/// One producer of a partition as DescribeProducers reports it: a snapshot from
/// [`crate::PartitionLog::active_producers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    /// The producer id.
    pub producer_id: i64,
    /// Its current epoch here.
    pub producer_epoch: i16,
    /// Last sequence number of its last data batch here; -1 if none is remembered (it only
    /// wrote markers here, or a marker of a newer epoch reset it).
    pub last_sequence: i32,
    /// Max timestamp of its last data batch here; -1 if none is remembered.
    pub last_timestamp: i64,
    /// First offset of its open transaction on this partition; -1 if none is open.
    pub current_txn_start_offset: i64,
}

/// Verdict on a client batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// Append it.
    Accept,
    /// Already in the log: answer with the original batch.
    Duplicate(BatchMeta),
}

/// All producers of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset -> producer id (first offsets are batch base offsets,
    /// so unique).
    open_txns: BTreeMap<i64, i64>,
}

/// An aborted transaction as the aborted-transactions index keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AbortedEntry {
    pub(crate) producer_id: i64,
    pub(crate) first_offset: i64,
    /// The abort marker's offset.
    pub(crate) last_offset: i64,
    /// The first offset of a transaction still open once this one closed (or the marker's
    /// offset + 1): no transaction that aborts later started below it, which lets a query
    /// stop (Kafka's `AbortedTxn.lastStableOffset`).
    pub(crate) last_stable_offset: i64,
}

impl ProducerStates {
    pub(crate) fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Open transactions as (first offset, producer id), oldest first.
    pub(crate) fn open_txns(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.open_txns.iter().map(|(f, p)| (*f, *p))
    }

    /// The epoch known for `producer_id`, if any.
    pub(crate) fn epoch_of(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// Every producer with state here, by producer id.
    pub(crate) fn active(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(pid, e)| {
                let last = e.batches.back();
                ActiveProducer {
                    producer_id: *pid,
                    producer_epoch: e.epoch,
                    last_sequence: last.map_or(-1, |b| b.last_sequence),
                    last_timestamp: last.map_or(-1, |b| b.max_timestamp),
                    current_txn_start_offset: e.txn_first_offset.unwrap_or(-1),
                }
            })
            .collect();
        out.sort_unstable_by_key(|p| p.producer_id);
        out
    }

    /// Base offset of each producer's last batch: the batch whose header the cleaner keeps
    /// (producer state is rebuilt from it).
    pub(crate) fn last_batch_offsets(&self) -> impl Iterator<Item = i64> + '_ {
        self.producers
            .values()
            .filter_map(|p| p.batches.back().map(|b| b.base_offset))
    }

    /// The leader's rules for a client batch (`producer_id >= 0`).
    pub(crate) fn check(
        entry: Option<&ProducerEntry>,
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        last_sequence: i32,
    ) -> Result<SequenceCheck> {
        let Some(entry) = entry else {
            // Unknown producer (new, or its batches were removed by retention): any sequence.
            return Ok(SequenceCheck::Accept);
        };
        if epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch {
                producer_id,
                epoch,
                current: entry.epoch,
            });
        }
        if epoch > entry.epoch {
            if base_sequence != 0 {
                return Err(StorageError::OutOfOrderSequence {
                    producer_id,
                    expected: 0,
                    got: base_sequence,
                });
            }
            return Ok(SequenceCheck::Accept);
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.base_sequence == base_sequence && b.last_sequence == last_sequence)
        {
            return Ok(SequenceCheck::Duplicate(*dup));
        }
        let expected = entry
            .last_sequence()
            .map_or(base_sequence, |s| increment_sequence(s, 1));
        if base_sequence != expected {
            return Err(StorageError::OutOfOrderSequence {
                producer_id,
                expected,
                got: base_sequence,
            });
        }
        Ok(SequenceCheck::Accept)
    }

    /// Records an appended batch (after `check` on the leader; unconditionally for
    /// replication and recovery, where the log is the truth). A new epoch starts afresh.
    pub(crate) fn record(&mut self, producer_id: i64, epoch: i16, meta: BatchMeta) {
        Self::record_into(
            self.producers
                .entry(producer_id)
                .or_insert_with(|| ProducerEntry::new(epoch)),
            epoch,
            meta,
        );
    }

    fn record_into(entry: &mut ProducerEntry, epoch: i16, meta: BatchMeta) {
        if entry.epoch != epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.last_offset = entry.last_offset.max(meta.last_offset);
        entry.batches.push_back(meta);
        while entry.batches.len() > BATCH_METADATA_MAX {
            entry.batches.pop_front();
        }
    }

    /// Forgets batches below the new log start offset, and producers left with nothing at or
    /// after it: about the state a recovery from the remaining segments builds. An open
    /// transaction that started below it starts at it now.
    pub(crate) fn remove_before(&mut self, log_start_offset: i64) {
        self.producers.retain(|_, e| {
            e.batches.retain(|b| b.base_offset >= log_start_offset);
            e.last_offset >= log_start_offset || e.txn_first_offset.is_some()
        });
        let moved: Vec<(i64, i64)> = self
            .open_txns
            .range(..log_start_offset)
            .map(|(f, p)| (*f, *p))
            .collect();
        for (first, pid) in moved {
            self.open_txns.remove(&first);
            self.open_txns.insert(log_start_offset, pid);
            if let Some(e) = self.producers.get_mut(&pid) {
                e.txn_first_offset = Some(log_start_offset);
            }
        }
    }

    /// Applies a [`TxnPass`]'s result (after its batches were committed).
    pub(crate) fn apply_txns(&mut self, u: TxnUpdates) {
        for (pid, epoch, offset) in u.markers {
            let e = self
                .producers
                .entry(pid)
                .or_insert_with(|| ProducerEntry::new(epoch));
            if epoch > e.epoch {
                // A marker of a bumped epoch (a timed-out transaction aborted by the
                // coordinator): the producer's next batches start a new sequence.
                e.epoch = epoch;
                e.batches.clear();
            }
            e.last_offset = e.last_offset.max(offset);
        }
        for (pid, first) in u.txn_first {
            let e = self
                .producers
                .entry(pid)
                .or_insert_with(|| ProducerEntry::new(u.epochs.get(&pid).copied().unwrap_or(0)));
            if let Some(old) = e.txn_first_offset.take() {
                self.open_txns.remove(&old);
            }
            if let Some(f) = first {
                e.last_offset = e.last_offset.max(f);
                self.open_txns.insert(f, pid);
            }
            e.txn_first_offset = first;
        }
    }
}

impl ProducerEntry {
    fn new(epoch: i16) -> Self {
        Self {
            epoch,
            batches: VecDeque::new(),
            txn_first_offset: None,
            last_offset: -1,
        }
    }
}

/// What one stored batch means for transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnBatch {
    /// A data batch; `transactional` when attribute bit 4 is set.
    Data {
        /// Part of a transaction.
        transactional: bool,
    },
    /// A transaction marker.
    Marker {
        /// An abort (else a commit).
        abort: bool,
    },
}

/// The transaction changes of a request's batches, worked out against the state before the
/// batches are committed (the aborted-index entries go into the same write as the batches'
/// index entries), applied with [`ProducerStates::apply_txns`] after.
#[derive(Debug)]
pub(crate) struct TxnPass<'a> {
    base: &'a ProducerStates,
    u: TxnUpdates,
}

/// See [`TxnPass`].
#[derive(Debug, Default)]
pub(crate) struct TxnUpdates {
    /// New first offset of each touched producer's open transaction.
    txn_first: HashMap<i64, Option<i64>>,
    /// Epochs of producers the pass met (for entries it creates).
    epochs: HashMap<i64, i16>,
    /// Markers: producer id, epoch, offset.
    markers: Vec<(i64, i16, i64)>,
    /// Aborts, in offset order.
    pub(crate) aborted: Vec<AbortedEntry>,
    /// Transactions closed: (first offset, marker offset).
    pub(crate) completed: Vec<(i64, i64)>,
    /// Transactions opened: first offsets.
    pub(crate) opened: Vec<i64>,
}

impl<'a> TxnPass<'a> {
    pub(crate) fn new(base: &'a ProducerStates) -> Self {
        Self {
            base,
            u: TxnUpdates::default(),
        }
    }

    fn current(&self, pid: i64) -> Option<i64> {
        match self.u.txn_first.get(&pid) {
            Some(f) => *f,
            None => self.base.get(pid).and_then(|e| e.txn_first_offset),
        }
    }

    /// Notes one batch (base offset `offset`) of producer `pid` at epoch `epoch`, in log
    /// order.
    pub(crate) fn batch(&mut self, pid: i64, epoch: i16, offset: i64, kind: TxnBatch) {
        self.u.epochs.insert(pid, epoch);
        match kind {
            TxnBatch::Data {
                transactional: false,
            } => {}
            TxnBatch::Data {
                transactional: true,
            } => {
                if self.current(pid).is_none() {
                    self.u.txn_first.insert(pid, Some(offset));
                    self.u.opened.push(offset);
                }
            }
            TxnBatch::Marker { abort } => {
                let first = self.current(pid);
                self.u.txn_first.insert(pid, None);
                self.u.markers.push((pid, epoch, offset));
                if let Some(f) = first {
                    self.u.completed.push((f, offset));
                }
                if abort {
                    let last_stable_offset = self.first_open().unwrap_or(offset + 1);
                    self.u.aborted.push(AbortedEntry {
                        producer_id: pid,
                        first_offset: first.unwrap_or(offset),
                        last_offset: offset,
                        last_stable_offset,
                    });
                }
            }
        }
    }

    /// First offset of the oldest transaction open at this point of the pass.
    fn first_open(&self) -> Option<i64> {
        let from_base = self
            .base
            .open_txns
            .iter()
            .find(|(_, pid)| !self.u.txn_first.contains_key(pid))
            .map(|(f, _)| *f);
        let from_pass = self.u.txn_first.values().flatten().min().copied();
        match (from_base, from_pass) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn finish(self) -> TxnUpdates {
        self.u
    }
}

/// Checks a request's batches one after another against the state plus the request's own
/// earlier batches, without touching the state until the append is committed.
#[derive(Debug)]
pub(crate) struct PendingProducers<'a> {
    base: &'a ProducerStates,
    /// First offset of the request: batches from here on are not in the log yet.
    first_offset: i64,
    touched: HashMap<i64, ProducerEntry>,
}

impl<'a> PendingProducers<'a> {
    pub(crate) fn new(base: &'a ProducerStates, first_offset: i64) -> Self {
        Self {
            base,
            first_offset,
            touched: HashMap::new(),
        }
    }

    /// Checks a client batch; does not record it. A batch repeated inside one request is out
    /// of order (there is no original in the log to point the producer to).
    pub(crate) fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        last_sequence: i32,
    ) -> Result<SequenceCheck> {
        let entry = self
            .touched
            .get(&producer_id)
            .or_else(|| self.base.get(producer_id));
        match ProducerStates::check(entry, producer_id, epoch, base_sequence, last_sequence)? {
            SequenceCheck::Duplicate(m) if m.base_offset >= self.first_offset => {
                Err(StorageError::OutOfOrderSequence {
                    producer_id,
                    expected: entry
                        .and_then(ProducerEntry::last_sequence)
                        .map_or(0, |s| increment_sequence(s, 1)),
                    got: base_sequence,
                })
            }
            verdict => Ok(verdict),
        }
    }

    /// Notes a batch the request will append.
    pub(crate) fn record(&mut self, producer_id: i64, epoch: i16, meta: BatchMeta) {
        let base = self.base;
        let entry = self.touched.entry(producer_id).or_insert_with(|| {
            base.get(producer_id)
                .cloned()
                .unwrap_or_else(|| ProducerEntry::new(epoch))
        });
        ProducerStates::record_into(entry, epoch, meta);
    }

    /// The updated entries, to apply after the commit.
    pub(crate) fn into_updates(self) -> HashMap<i64, ProducerEntry> {
        self.touched
    }
}

impl ProducerStates {
    /// Applies [`PendingProducers::into_updates`] (before the transaction updates of the
    /// same request: the entries carry the transaction state of before it).
    pub(crate) fn apply(&mut self, updates: HashMap<i64, ProducerEntry>) {
        self.producers.extend(updates);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(base_sequence: i32, last_sequence: i32, base_offset: i64) -> BatchMeta {
        BatchMeta {
            base_sequence,
            last_sequence,
            base_offset,
            last_offset: base_offset + i64::from(last_sequence - base_sequence),
            max_timestamp: 0,
        }
    }

    fn state_with(epoch: i16, batches: &[(i32, i32)]) -> ProducerStates {
        let mut s = ProducerStates::default();
        let mut offset = 0;
        for (b, l) in batches {
            s.record(1, epoch, meta(*b, *l, offset));
            offset += i64::from(l - b) + 1;
        }
        s
    }

    #[derive(Debug, PartialEq)]
    enum Want {
        Accept,
        Dup(i32),
        Fenced(i16),
        OutOfOrder(i32),
    }

    #[test]
    fn leader_rules_table() {
        let state = state_with(3, &[(0, 4), (5, 9), (10, 10)]);
        let cases: &[(&str, i16, i32, i32, Want)] = &[
            ("next in sequence", 3, 11, 15, Want::Accept),
            ("retry of the last batch", 3, 10, 10, Want::Dup(10)),
            ("retry of an earlier cached batch", 3, 0, 4, Want::Dup(0)),
            ("gap", 3, 12, 12, Want::OutOfOrder(11)),
            (
                "repeat that is no cached batch",
                3,
                5,
                6,
                Want::OutOfOrder(11),
            ),
            ("older epoch", 2, 11, 11, Want::Fenced(3)),
            ("newer epoch from 0", 4, 0, 3, Want::Accept),
            ("newer epoch not from 0", 4, 11, 11, Want::OutOfOrder(0)),
        ];
        for (name, epoch, base, last, want) in cases {
            let got = match ProducerStates::check(state.get(1), 1, *epoch, *base, *last) {
                Ok(SequenceCheck::Accept) => Want::Accept,
                Ok(SequenceCheck::Duplicate(m)) => Want::Dup(m.base_sequence),
                Err(StorageError::InvalidProducerEpoch { current, .. }) => Want::Fenced(current),
                Err(StorageError::OutOfOrderSequence { expected, got, .. }) => {
                    assert_eq!(got, *base, "{name}");
                    Want::OutOfOrder(expected)
                }
                Err(e) => panic!("{name}: {e}"),
            };
            assert_eq!(got, *want, "{name}");
        }
        // Unknown producers may start anywhere.
        assert_eq!(
            ProducerStates::check(state.get(2), 2, 0, 77, 80).unwrap(),
            SequenceCheck::Accept
        );
    }

    #[test]
    fn sequence_wraps_after_i32_max() {
        let state = state_with(0, &[(i32::MAX - 2, i32::MAX)]);
        assert_eq!(
            ProducerStates::check(state.get(1), 1, 0, 0, 4).unwrap(),
            SequenceCheck::Accept
        );
        assert!(ProducerStates::check(state.get(1), 1, 0, i32::MAX, 3).is_err());
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let batches: Vec<_> = (0..7).map(|i| (i, i)).collect();
        let state = state_with(0, &batches);
        let e = state.get(1).unwrap();
        assert_eq!(e.batches.len(), BATCH_METADATA_MAX);
        assert_eq!(e.batches.front().unwrap().base_sequence, 2);
        // A batch that fell out of the window is no longer a known duplicate.
        assert!(ProducerStates::check(state.get(1), 1, 0, 1, 1).is_err());
        assert!(matches!(
            ProducerStates::check(state.get(1), 1, 0, 2, 2),
            Ok(SequenceCheck::Duplicate(_))
        ));
    }

    #[test]
    fn new_epoch_resets_the_window() {
        let mut state = state_with(0, &[(0, 4)]);
        state.record(1, 1, meta(0, 0, 5));
        let e = state.get(1).unwrap();
        assert_eq!((e.epoch, e.batches.len()), (1, 1));
    }

    #[test]
    fn pending_sees_earlier_batches_of_the_same_request() {
        let state = state_with(0, &[(0, 0)]);
        let mut p = PendingProducers::new(&state, 1);
        assert_eq!(p.check(1, 0, 1, 1).unwrap(), SequenceCheck::Accept);
        p.record(1, 0, meta(1, 1, 1));
        assert_eq!(p.check(1, 0, 2, 3).unwrap(), SequenceCheck::Accept);
        // A repeat inside the request has no original in the log.
        assert!(matches!(
            p.check(1, 0, 1, 1),
            Err(StorageError::OutOfOrderSequence {
                expected: 2,
                got: 1,
                ..
            })
        ));
        // A repeat of a batch in the log is a duplicate.
        assert!(matches!(
            p.check(1, 0, 0, 0),
            Ok(SequenceCheck::Duplicate(_))
        ));
        p.record(1, 0, meta(2, 3, 2));
        // Nothing is applied until the commit.
        assert_eq!(state.get(1).unwrap().batches.len(), 1);
        let updates = p.into_updates();
        let mut state = state;
        state.apply(updates);
        assert_eq!(state.get(1).unwrap().batches.len(), 3);
    }

    #[test]
    fn retention_forgets_old_batches_and_producers() {
        let mut s = ProducerStates::default();
        s.record(1, 0, meta(0, 0, 0));
        s.record(1, 0, meta(1, 1, 10));
        s.record(2, 0, meta(0, 0, 5));
        s.remove_before(6);
        assert_eq!(s.len(), 1);
        assert_eq!(s.get(1).unwrap().batches.len(), 1);
    }
}
