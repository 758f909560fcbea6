//! Conformance suite: random sequences of appends (leader and follower, with idempotent
//! producers), reads, truncations, retention runs and reopens, checked against a simple
//! in-memory model of a Kafka partition log.
//!
//! The model keeps every batch with its bytes and a list of segments; everything else
//! (producer windows, the epoch cache, read results) is *derived* from those on demand, so it
//! is obviously right rather than a second copy of the implementation's bookkeeping.
//!
//! A failure prints the minimal op sequence; `PROPTEST_CASES=1000` runs a longer search.

mod common;

use common::{cfg, pid, spans};
use proptest::prelude::*;
use proptest::sample::Index;
use rivulet_storage::batch::{set_base_offset, set_partition_leader_epoch, BatchBuilder};
use rivulet_storage::{
    AppendInfo, AppendOutcome, Durability, LogConfig, PartitionLog, StorageError, Store,
    StoreConfig,
};

const SEGMENT_BYTES_MAX: u64 = 700;
const SEGMENT_AGE_MAX_MS: i64 = 5_000;
const WINDOW: usize = 5;

fn log_cfg() -> LogConfig {
    LogConfig {
        segment_bytes_max: SEGMENT_BYTES_MAX,
        segment_age_max_ms: SEGMENT_AGE_MAX_MS,
        durability: Durability::Os,
        ..cfg()
    }
}

#[derive(Debug, Clone)]
struct BatchSpec {
    records: usize,
    value_len: usize,
    ts: i64,
    producer: Option<(i64, SeqKind)>,
}

#[derive(Debug, Clone, Copy)]
enum SeqKind {
    /// The next sequence (0 for an unknown producer).
    Next,
    /// A retry of one of the producer's remembered batches.
    Retry(Index),
    /// Skips one sequence number.
    Gap,
}

#[derive(Debug, Clone)]
enum Op {
    Leader {
        batches: Vec<BatchSpec>,
        bump_epoch: bool,
    },
    Follower {
        batches: Vec<BatchSpec>,
        bump_epoch: bool,
    },
    Read {
        offset: Index,
        max_bytes: usize,
        max_offset: Index,
    },
    /// A read whose `max_bytes` is exactly the size of `batches` batches, plus `delta`.
    ReadEdge {
        offset: Index,
        batches: usize,
        delta: i64,
    },
    Truncate {
        offset: Index,
    },
    Retention {
        bytes: Option<i64>,
        ms: Option<i64>,
        now: i64,
    },
    OffsetForTime {
        ts: i64,
    },
    Epoch {
        epoch: i32,
    },
    Reopen,
}

fn batch_spec() -> impl Strategy<Value = BatchSpec> {
    (
        1usize..6,
        0usize..150,
        0i64..20_000,
        prop::option::weighted(
            0.5,
            (
                0i64..3,
                prop_oneof![
                    6 => Just(SeqKind::Next),
                    2 => any::<Index>().prop_map(SeqKind::Retry),
                    1 => Just(SeqKind::Gap),
                ],
            ),
        ),
    )
        .prop_map(|(records, value_len, ts, producer)| BatchSpec {
            records,
            value_len,
            ts,
            producer,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (prop::collection::vec(batch_spec(), 1..3), prop::bool::weighted(0.2))
            .prop_map(|(batches, bump_epoch)| Op::Leader { batches, bump_epoch }),
        2 => (prop::collection::vec(batch_spec(), 1..3), prop::bool::weighted(0.2))
            .prop_map(|(batches, bump_epoch)| Op::Follower { batches, bump_epoch }),
        5 => (any::<Index>(), 0usize..1500, any::<Index>())
            .prop_map(|(offset, max_bytes, max_offset)| Op::Read { offset, max_bytes, max_offset }),
        2 => (any::<Index>(), 1usize..4, -1i64..=1)
            .prop_map(|(offset, batches, delta)| Op::ReadEdge { offset, batches, delta }),
        2 => any::<Index>().prop_map(|offset| Op::Truncate { offset }),
        1 => (
            prop::option::of(0i64..3000),
            prop::option::of(0i64..10_000),
            0i64..30_000
        )
            .prop_map(|(bytes, ms, now)| Op::Retention { bytes, ms, now }),
        1 => (0i64..21_000).prop_map(|ts| Op::OffsetForTime { ts }),
        1 => (-1i32..6).prop_map(|epoch| Op::Epoch { epoch }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug)]
enum Expect {
    Append,
    Duplicate(AppendInfo),
    OutOfOrder,
}

#[derive(Debug, Clone)]
struct MBatch {
    base: i64,
    last: i64,
    bytes: Vec<u8>,
    max_ts: i64,
    epoch: i32,
    /// (producer id, base sequence, last sequence)
    producer: Option<(i64, i32, i32)>,
}

#[derive(Debug, Clone)]
struct MSegment {
    base: i64,
    batches: Vec<MBatch>,
}

impl MSegment {
    fn size(&self) -> u64 {
        self.batches.iter().map(|b| b.bytes.len() as u64).sum()
    }
    fn max_ts(&self) -> i64 {
        self.batches
            .iter()
            .map(|b| b.max_ts)
            .max()
            .unwrap_or(i64::MIN)
    }
}

#[derive(Debug)]
struct Model {
    segments: Vec<MSegment>,
    /// Log end offset; only differs from the last batch's end for an emptied log.
    leo: i64,
    epoch: i32,
}

impl Model {
    fn new() -> Model {
        Model {
            segments: vec![MSegment {
                base: 0,
                batches: Vec::new(),
            }],
            leo: 0,
            epoch: 0,
        }
    }

    fn batches(&self) -> impl Iterator<Item = &MBatch> {
        self.segments.iter().flat_map(|s| s.batches.iter())
    }

    fn start(&self) -> i64 {
        self.segments[0].base
    }

    fn size(&self) -> u64 {
        self.segments.iter().map(MSegment::size).sum()
    }

    /// The remembered batches of a producer: its last five in the log.
    fn window(&self, producer_id: i64) -> Vec<(i32, i32, i64, i64, i64)> {
        let all: Vec<_> = self
            .batches()
            .filter_map(|b| match b.producer {
                Some((p, s, l)) if p == producer_id => Some((s, l, b.base, b.last, b.max_ts)),
                _ => None,
            })
            .collect();
        all[all.len().saturating_sub(WINDOW)..].to_vec()
    }

    /// (epoch, start offset) for each epoch in the log.
    fn epochs(&self) -> Vec<(i32, i64)> {
        let mut out: Vec<(i32, i64)> = Vec::new();
        for b in self.batches() {
            if out.last().is_none_or(|(e, _)| b.epoch > *e) {
                out.push((b.epoch, b.base));
            }
        }
        out
    }

    fn epoch_end(&self, requested: i32) -> Option<(i32, i64)> {
        let epochs = self.epochs();
        let i = epochs.iter().rposition(|(e, _)| *e <= requested)?;
        Some((epochs[i].0, epochs.get(i + 1).map_or(self.leo, |(_, s)| *s)))
    }

    /// Pushes a request's batches, rolling once before the request like the log does.
    fn push_request(&mut self, batches: Vec<MBatch>) {
        let incoming: u64 = batches.iter().map(|b| b.bytes.len() as u64).sum();
        let max_ts = batches.iter().map(|b| b.max_ts).max().unwrap_or(i64::MIN);
        let active = self.segments.last().expect("segments");
        let roll = !active.batches.is_empty()
            && (active.size() + incoming > SEGMENT_BYTES_MAX
                || max_ts - active.batches[0].max_ts > SEGMENT_AGE_MAX_MS);
        if roll {
            self.segments.push(MSegment {
                base: self.leo,
                batches: Vec::new(),
            });
        }
        for b in batches {
            self.leo = b.last + 1;
            self.segments.last_mut().expect("segments").batches.push(b);
        }
    }

    fn read(&self, offset: i64, max_bytes: usize, max_offset: i64) -> Result<Vec<u8>, ()> {
        if offset < self.start() || offset > self.leo {
            return Err(());
        }
        let limit = max_offset.min(self.leo);
        let mut out = Vec::new();
        if offset >= limit {
            return Ok(out);
        }
        for b in self.batches().filter(|b| b.last >= offset) {
            if b.base >= limit || (!out.is_empty() && out.len() + b.bytes.len() > max_bytes) {
                break;
            }
            out.extend_from_slice(&b.bytes);
        }
        Ok(out)
    }

    fn truncate(&mut self, offset: i64) {
        if offset >= self.leo {
            return;
        }
        if offset < self.start() {
            self.segments = vec![MSegment {
                base: offset,
                batches: Vec::new(),
            }];
            self.leo = offset;
            return;
        }
        let new_end = self
            .batches()
            .find(|b| b.base <= offset && offset <= b.last)
            .map_or(offset, |b| b.base);
        let keep = self
            .segments
            .iter()
            .take_while(|s| s.base <= new_end)
            .count()
            .max(1);
        self.segments.truncate(keep);
        self.segments
            .last_mut()
            .expect("segments")
            .batches
            .retain(|b| b.base < new_end);
        self.leo = new_end;
    }

    fn retention(&mut self, bytes: Option<i64>, ms: Option<i64>, now: i64) -> usize {
        let mut dropped = 0;
        while self.segments.len() > 1 {
            let by_size = bytes.is_some_and(|max| self.size() > max as u64);
            let by_time = ms.is_some_and(|ms| self.segments[0].max_ts() < now - ms);
            if !(by_size || by_time) {
                break;
            }
            self.segments.remove(0);
            dropped += 1;
        }
        dropped
    }

    fn offset_for_time(&self, ts: i64) -> Option<(i64, i64)> {
        self.batches()
            .find(|b| b.max_ts >= ts)
            .map(|b| (b.base, b.max_ts))
    }
}

/// Fields drop in order: the log and store before their directory.
struct Harness {
    log: Option<PartitionLog>,
    store: Option<Store>,
    dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut h = Harness {
            log: None,
            store: None,
            dir,
        };
        h.open();
        h
    }

    fn open(&mut self) {
        self.log = None;
        self.store = None;
        let store = Store::open(self.dir.path(), StoreConfig::default()).expect("open store");
        self.log = Some(store.open_log(pid(0), log_cfg()).expect("open log"));
        self.store = Some(store);
    }

    fn log(&self) -> &PartitionLog {
        self.log.as_ref().expect("open")
    }
}

fn build(spec: &BatchSpec, seq: Option<(i64, i32)>) -> Vec<u8> {
    let mut b = BatchBuilder::new(spec.ts);
    if let Some((producer_id, base_sequence)) = seq {
        b = b.producer(producer_id, 0, base_sequence);
    }
    let value = vec![b'x'; spec.value_len];
    for i in 0..spec.records {
        b.push(spec.ts - i as i64, None, Some(&value));
    }
    b.build()
}

fn pick<T: Copy>(i: Index, items: &[T]) -> Option<T> {
    (!items.is_empty()).then(|| *i.get(items))
}

/// Offsets worth probing: around the log's edges and inside it.
fn offset_in(model: &Model, i: Index) -> i64 {
    let lo = (model.start() - 2).max(0);
    lo + i.index((model.leo + 2 - lo) as usize) as i64
}

fn check_state(model: &Model, log: &PartitionLog) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_start_offset(), model.start());
    prop_assert_eq!(log.log_end_offset(), model.leo);
    prop_assert_eq!(log.size_bytes(), model.size());
    prop_assert_eq!(log.segment_count(), model.segments.len());
    prop_assert_eq!(log.latest_epoch(), model.epochs().last().map(|(e, _)| *e));
    let all = log
        .read(model.start(), usize::MAX, i64::MAX)
        .expect("read all");
    let expected = model
        .read(model.start(), usize::MAX, i64::MAX)
        .expect("model");
    prop_assert_eq!(spans(&all.records), spans(&expected));
    prop_assert!(all.records[..] == expected[..], "stored bytes differ");
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness::new();
    let mut model = Model::new();
    for op in ops {
        match op {
            Op::Leader {
                batches,
                bump_epoch,
            } => {
                if bump_epoch {
                    model.epoch += 1;
                }
                // Decide each batch's sequence and the expected verdict from the model.
                let mut bytes = Vec::new();
                let mut stored: Vec<MBatch> = Vec::new();
                let mut next = model.leo;
                let mut expect = Expect::Append;
                for spec in &batches {
                    let seq = spec.producer.map(|(p, kind)| {
                        // Remembered batches: the log's, then this request's own earlier ones.
                        let mut window: Vec<(i32, i32, Option<AppendInfo>)> = model
                            .window(p)
                            .into_iter()
                            .map(|(s, l, base, last, ts)| {
                                (
                                    s,
                                    l,
                                    Some(AppendInfo {
                                        base_offset: base,
                                        last_offset: last,
                                        max_timestamp: ts,
                                        records_count: (last - base + 1) as i32,
                                    }),
                                )
                            })
                            .collect();
                        for b in &stored {
                            if let Some((pp, s, l)) = b.producer {
                                if pp == p {
                                    window.push((s, l, None));
                                }
                            }
                        }
                        let window = &window[window.len().saturating_sub(WINDOW)..];
                        let last = window.last().map(|w| w.1);
                        let next_seq = last.map_or(0, |l| l + 1);
                        let base = match kind {
                            SeqKind::Next => next_seq,
                            SeqKind::Gap => next_seq + 1,
                            SeqKind::Retry(i) => pick(i, window).map_or(next_seq, |w| w.0),
                        };
                        let last_seq = base + spec.records as i32 - 1;
                        if matches!(expect, Expect::Append) && last.is_some() {
                            match window.iter().find(|w| w.0 == base && w.1 == last_seq) {
                                Some((_, _, Some(info))) => expect = Expect::Duplicate(*info),
                                // A repeat of a batch of the same request.
                                Some((_, _, None)) => expect = Expect::OutOfOrder,
                                None if base != next_seq => expect = Expect::OutOfOrder,
                                None => {}
                            }
                        }
                        (p, base)
                    });
                    let mut b = build(spec, seq);
                    bytes.extend_from_slice(&b);
                    set_base_offset(&mut b, next).expect("patch");
                    set_partition_leader_epoch(&mut b, model.epoch).expect("patch");
                    let last = next + spec.records as i64 - 1;
                    stored.push(MBatch {
                        base: next,
                        last,
                        max_ts: spec.ts,
                        epoch: model.epoch,
                        producer: seq.map(|(p, s)| (p, s, s + spec.records as i32 - 1)),
                        bytes: b,
                    });
                    next = last + 1;
                }
                let got = h.log().append_as_leader(&bytes, model.epoch);
                match expect {
                    Expect::Append => {
                        let info = match got {
                            Ok(AppendOutcome::Appended(i)) => i,
                            other => {
                                return Err(TestCaseError::fail(format!(
                                    "expected an append, got {other:?}"
                                )))
                            }
                        };
                        prop_assert_eq!(info.base_offset, model.leo);
                        prop_assert_eq!(info.last_offset, next - 1);
                        prop_assert_eq!(
                            Some(info.max_timestamp),
                            stored.iter().map(|b| b.max_ts).max()
                        );
                        prop_assert_eq!(
                            info.records_count as usize,
                            batches.iter().map(|b| b.records).sum::<usize>()
                        );
                        model.push_request(stored);
                    }
                    Expect::Duplicate(dup) => {
                        prop_assert_eq!(got.expect("duplicate"), AppendOutcome::Duplicate(dup));
                    }
                    Expect::OutOfOrder => prop_assert!(
                        matches!(got, Err(StorageError::OutOfOrderSequence { .. })),
                        "expected out of order, got {:?}",
                        got
                    ),
                }
            }
            Op::Follower {
                batches,
                bump_epoch,
            } => {
                if bump_epoch {
                    model.epoch += 1;
                }
                let mut bytes = Vec::new();
                let mut stored = Vec::new();
                let mut next = model.leo;
                for spec in &batches {
                    // The leader's log decides; sequences need not satisfy any rule here.
                    let seq = spec.producer.map(|(p, _)| (p + 10, 7));
                    let mut b = build(spec, seq);
                    set_base_offset(&mut b, next).expect("patch");
                    set_partition_leader_epoch(&mut b, model.epoch).expect("patch");
                    bytes.extend_from_slice(&b);
                    let last = next + spec.records as i64 - 1;
                    stored.push(MBatch {
                        base: next,
                        last,
                        max_ts: spec.ts,
                        epoch: model.epoch,
                        producer: seq.map(|(p, s)| (p, s, s + spec.records as i32 - 1)),
                        bytes: b,
                    });
                    next = last + 1;
                }
                let info = h.log().append_as_follower(&bytes).expect("follower append");
                prop_assert_eq!((info.base_offset, info.last_offset), (model.leo, next - 1));
                model.push_request(stored);
            }
            Op::Read {
                offset,
                max_bytes,
                max_offset,
            } => {
                let offset = offset_in(&model, offset);
                let max_offset = offset_in(&model, max_offset);
                let got = h.log().read(offset, max_bytes, max_offset);
                match model.read(offset, max_bytes, max_offset) {
                    Ok(expected) => {
                        let got = got.expect("read");
                        prop_assert_eq!(
                            spans(&got.records),
                            spans(&expected),
                            "read({}, {}, {})",
                            offset,
                            max_bytes,
                            max_offset
                        );
                        prop_assert!(got.records[..] == expected[..]);
                        prop_assert_eq!(
                            (got.log_start_offset, got.log_end_offset),
                            (model.start(), model.leo)
                        );
                    }
                    Err(()) => prop_assert!(
                        matches!(got, Err(StorageError::OffsetOutOfRange { .. })),
                        "read({}) expected out of range, got {:?}",
                        offset,
                        got
                    ),
                }
            }
            Op::ReadEdge {
                offset,
                batches,
                delta,
            } => {
                let offset = offset_in(&model, offset);
                let exact: i64 = model
                    .batches()
                    .filter(|b| b.last >= offset)
                    .take(batches)
                    .map(|b| b.bytes.len() as i64)
                    .sum();
                let max_bytes = (exact + delta).max(0) as usize;
                let got = h.log().read(offset, max_bytes, i64::MAX);
                match model.read(offset, max_bytes, i64::MAX) {
                    Ok(expected) => prop_assert!(got.expect("read").records[..] == expected[..]),
                    Err(()) => prop_assert!(
                        matches!(got, Err(StorageError::OffsetOutOfRange { .. })),
                        "expected out of range, got {:?}",
                        got
                    ),
                }
            }
            Op::Truncate { offset } => {
                let offset = offset_in(&model, offset);
                h.log().truncate_to(offset).expect("truncate");
                model.truncate(offset);
                check_state(&model, h.log())?;
            }
            Op::Retention { bytes, ms, now } => {
                h.log().set_config(LogConfig {
                    retention_bytes: bytes.unwrap_or(-1),
                    retention_ms: ms.unwrap_or(-1),
                    ..log_cfg()
                });
                let dropped = h.log().apply_retention(now).expect("retention");
                h.log().set_config(log_cfg());
                prop_assert_eq!(dropped, model.retention(bytes, ms, now));
            }
            Op::OffsetForTime { ts } => {
                let got = h
                    .log()
                    .offset_for_timestamp(ts, i64::MAX)
                    .expect("offset for time");
                prop_assert_eq!(
                    got.map(|t| (t.offset, t.timestamp)),
                    model.offset_for_time(ts)
                );
            }
            Op::Epoch { epoch } => {
                prop_assert_eq!(h.log().last_epoch_end_offset(epoch), model.epoch_end(epoch));
            }
            Op::Reopen => {
                h.open();
                check_state(&model, h.log())?;
            }
        }
        check_state(&model, h.log())?;
    }
    h.open();
    check_state(&model, h.log())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48),
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}
