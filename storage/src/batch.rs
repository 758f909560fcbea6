//! Kafka record batch format v2: the header, its validation, and the in-place patches the
//! leader makes (base offset, partition leader epoch).
//!
//! ```text
//!  offset  field                   type   covered by the CRC
//!   0      baseOffset              i64    no   <- patched by the leader
//!   8      batchLength             i32    no      (bytes after this field: total = batchLength + 12)
//!  12      partitionLeaderEpoch    i32    no   <- patched by the leader
//!  16      magic                   i8     no      (must be 2)
//!  17      crc                     u32    no      (CRC-32C of bytes 21..end)
//!  21      attributes              i16    yes     (bits 0-2 compression, 3 timestamp type,
//!  23      lastOffsetDelta         i32    yes      4 transactional, 5 control)
//!  27      baseTimestamp           i64    yes
//!  35      maxTimestamp            i64    yes
//!  43      producerId              i64    yes
//!  51      producerEpoch           i16    yes
//!  53      baseSequence            i32    yes
//!  57      recordsCount            i32    yes
//!  61      records...                     yes
//! ```
//!
//! Because base offset and leader epoch lie outside the CRC'd region, assigning offsets needs
//! no CRC recomputation and the records are stored as the producer sent them. The one
//! exception is the max timestamp (and timestamp type): the leader sets it to what the records
//! say (or to the append time for `LogAppendTime` topics) and recomputes the CRC, as Kafka's
//! log validator does, because time-based retention and offset-by-timestamp trust it.
//!
//! Client batches are validated as Kafka's log validator does: header, CRC, codec (ids 5-7
//! are refused), no control batches, and every record walked (framing, offset deltas
//! `0..n`, count equal to the header's, timestamps in the topic's window). Compressed
//! batches are decompressed as a stream with a bound on the output
//! ([`records_bytes_max`]); nothing is allocated from a size or count in the batch.
//! Replicated batches were validated by the leader: only header, CRC and counts are checked.

mod compression;
pub mod control;
mod records;

use std::io::BufRead;
use std::ops::{ControlFlow, Range};

pub use compression::{compress, compress_snappy_raw, Compression};
pub use records::{decode_batches, DecodedBatch, Record, RecordHeader};

use crate::{Result, StorageError};

/// Size of the v2 batch header; records start here.
pub const HEADER_LEN: usize = 61;
/// Bytes before the part counted by `batchLength` (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// The only accepted magic.
pub const MAGIC_V2: i8 = 2;
/// `producerId` of a batch from a non-idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
/// `baseSequence` of a batch from a non-idempotent producer.
pub const NO_SEQUENCE: i32 = -1;

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORDS_COUNT_AT: usize = 57;

const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
pub(crate) const TRANSACTIONAL_BIT: i16 = 1 << 4;
pub(crate) const CONTROL_BIT: i16 = 1 << 5;

/// The decoded header of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (assigned by the leader).
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// Epoch of the leader that appended the batch (assigned by the leader).
    pub partition_leader_epoch: i32,
    /// Format version; 2.
    pub magic: i8,
    /// CRC-32C of the bytes from `attributes` to the end.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or [`NO_PRODUCER_ID`].
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or [`NO_SEQUENCE`].
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn corrupt(msg: impl Into<String>) -> StorageError {
    StorageError::CorruptBatch(msg.into())
}

impl BatchHeader {
    /// Decodes the header at the start of `buf`. Checks only that the header is there and
    /// that the magic is 2 (the magic sits at byte 16 in every message format, so an old
    /// format is reported as [`StorageError::UnsupportedMagic`], not as corruption).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader> {
        if buf.len() <= MAGIC_AT {
            return Err(corrupt(format!(
                "{} bytes cannot hold a record batch header",
                buf.len()
            )));
        }
        let magic = buf[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(StorageError::UnsupportedMagic(magic));
        }
        if buf.len() < HEADER_LEN {
            return Err(corrupt(format!(
                "{} bytes cannot hold a record batch header of {HEADER_LEN} bytes",
                buf.len()
            )));
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET_AT),
            batch_length: be_i32(buf, BATCH_LENGTH_AT),
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH_AT),
            magic,
            crc: u32::from_be_bytes([
                buf[CRC_AT],
                buf[CRC_AT + 1],
                buf[CRC_AT + 2],
                buf[CRC_AT + 3],
            ]),
            attributes: be_i16(buf, ATTRIBUTES_AT),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_AT),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_AT),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_AT),
            producer_id: be_i64(buf, PRODUCER_ID_AT),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH_AT),
            base_sequence: be_i32(buf, BASE_SEQUENCE_AT),
            records_count: be_i32(buf, RECORDS_COUNT_AT),
        })
    }

    /// Total size of the batch in bytes (`batchLength + 12`), or 0 for a negative length.
    pub fn total_len(&self) -> usize {
        usize::try_from(self.batch_length).map_or(0, |l| l + LOG_OVERHEAD)
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Offset after the last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// True for a batch from an idempotent (or transactional) producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the last record (sequences wrap from `i32::MAX` to 0).
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }

    /// Compression codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & 0x7) as u8
    }

    /// True when timestamps are the broker's append time rather than the producer's.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// True for a batch that is part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// True for a control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// `sequence + delta` in Kafka's sequence space, which wraps from `i32::MAX` to 0.
pub fn increment_sequence(sequence: i32, delta: i32) -> i32 {
    let wrapped = (i64::from(sequence) + i64::from(delta)).rem_euclid(i64::from(i32::MAX) + 1);
    // rem_euclid by 2^31 leaves a value in 0..2^31, which fits.
    i32::try_from(wrapped).unwrap_or(0)
}

/// CRC-32C of a batch's CRC'd region (`attributes` to the end).
///
/// `batch` must be at least [`HEADER_LEN`] bytes; a shorter slice yields the CRC of nothing.
pub fn compute_crc(batch: &[u8]) -> u32 {
    batch.get(ATTRIBUTES_AT..).map_or(0, crc32c::crc32c)
}

/// How record timestamps are set: Kafka's `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// The producer's timestamps, checked against the topic's window.
    #[default]
    CreateTime,
    /// The leader's clock at append; the producer's timestamps are ignored.
    LogAppendTime,
}

/// Timestamp of a record without one (Kafka's `RecordBatch.NO_TIMESTAMP`).
pub const NO_TIMESTAMP: i64 = -1;

/// What a leader checks on a producer's batch besides its structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientRules {
    /// The leader's clock (ms since the epoch), for the timestamp window.
    pub now_ms: i64,
    /// The topic's `message.timestamp.type`; the window applies to `CreateTime` only.
    pub timestamp_type: TimestampType,
    /// A record timestamp older than `now_ms` minus this is refused
    /// (`message.timestamp.before.max.ms`).
    pub timestamp_before_max_ms: i64,
    /// A record timestamp newer than `now_ms` plus this is refused
    /// (`message.timestamp.after.max.ms`).
    pub timestamp_after_max_ms: i64,
    /// Every record needs a key (`cleanup.policy` with `compact`): a keyless record is
    /// refused as [`StorageError::InvalidRecord`], as Kafka's log validator does.
    pub key_required: bool,
}

/// Who produced the batches being validated: stricter rules apply to client batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOrigin {
    /// From a producer, through the leader: a known codec, no control batch,
    /// `recordsCount >= 1`, `lastOffsetDelta == recordsCount - 1` (a producer's batch is
    /// dense), and every record walked (decompressed if need be) and its timestamp checked.
    Client(ClientRules),
    /// From the leader, through replication: offsets are already assigned and compaction may
    /// have removed records, so only `lastOffsetDelta >= 0`, `recordsCount >= 0` and
    /// `recordsCount <= lastOffsetDelta + 1` are required.
    Replication,
}

/// What [`validate`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationRules {
    /// Largest accepted batch in bytes (header included).
    pub batch_bytes_max: usize,
    /// Where the batches come from.
    pub origin: BatchOrigin,
}

/// One batch that passed [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidBatch {
    /// Its header.
    pub header: BatchHeader,
    /// Where it lies in the validated buffer.
    pub range: Range<usize>,
    /// Largest record timestamp, from the records themselves for client batches (the header's
    /// `maxTimestamp` may be wrong: some producers write -1), from the header for replicated
    /// ones.
    pub records_max_timestamp: i64,
}

/// Decompressed records allowed per byte of `max.message.bytes`. Bounds the work a batch
/// can cause (a 1 MiB gzip batch of zeros would inflate to 1 GiB); honest batches compress
/// text and JSON 3-20 times. Batches beyond it are refused as CORRUPT_MESSAGE, where Kafka
/// would accept them: a documented limit.
pub const DECOMPRESSION_RATIO_MAX: u64 = 64;

/// Bound on the decompressed records of one batch for a `batch_bytes_max` limit (at least
/// 1 MiB, so tiny limits still allow ordinary batches).
pub fn records_bytes_max(batch_bytes_max: usize) -> u64 {
    (batch_bytes_max as u64)
        .saturating_mul(DECOMPRESSION_RATIO_MAX)
        .max(1 << 20)
}

/// Splits `buf` into record batches and validates each: enough bytes, a sane `batchLength`
/// that stays inside the buffer, magic 2, the CRC-32C, the record counts and the size limit;
/// for client batches also the codec, the control flag, every record and its timestamp.
///
/// Returns every batch or the first failure; `buf` must hold at least one batch and nothing
/// after the last one.
pub fn validate(buf: &[u8], rules: &ValidationRules) -> Result<Vec<ValidBatch>> {
    if buf.is_empty() {
        return Err(corrupt("no record batch"));
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < buf.len() {
        let rest = &buf[at..];
        let header = BatchHeader::parse(rest)?;
        let min_length = (HEADER_LEN - LOG_OVERHEAD) as i32;
        if header.batch_length < min_length {
            return Err(corrupt(format!(
                "batchLength {} is below the minimum of {min_length}",
                header.batch_length
            )));
        }
        let total = header.total_len();
        if total > rules.batch_bytes_max {
            return Err(StorageError::BatchTooLarge {
                size: total,
                max: rules.batch_bytes_max,
            });
        }
        if total > rest.len() {
            return Err(corrupt(format!(
                "batch of {total} bytes at byte {at} is cut off: {} bytes left",
                rest.len()
            )));
        }
        let batch = &rest[..total];
        let crc = compute_crc(batch);
        if crc != header.crc {
            return Err(corrupt(format!(
                "CRC mismatch at byte {at}: header says {:#010x}, data gives {crc:#010x}",
                header.crc
            )));
        }
        check_counts(&header, rules.origin)?;
        let records_max_timestamp = match rules.origin {
            BatchOrigin::Client(client) => {
                check_client_batch(&header, batch, rules.batch_bytes_max, &client, at)?
            }
            BatchOrigin::Replication => header.max_timestamp,
        };
        out.push(ValidBatch {
            header,
            range: at..at + total,
            records_max_timestamp,
        });
        at += total;
    }
    Ok(out)
}

/// Codec, control flag, records and timestamps of a client batch; returns the largest record
/// timestamp.
fn check_client_batch(
    h: &BatchHeader,
    batch: &[u8],
    batch_bytes_max: usize,
    rules: &ClientRules,
    at: usize,
) -> Result<i64> {
    let codec = Compression::from_id(h.compression())
        .ok_or(StorageError::UnsupportedCompression(h.compression()))?;
    if h.is_control() {
        // Kafka's LogValidator: InvalidRecordException (INVALID_RECORD).
        return Err(StorageError::InvalidRecord(format!(
            "batch at byte {at}: clients may not write control batches"
        )));
    }
    let check_window = rules.timestamp_type == TimestampType::CreateTime;
    let oldest = rules
        .now_ms
        .saturating_sub(rules.timestamp_before_max_ms.max(0));
    let newest = rules
        .now_ms
        .saturating_add(rules.timestamp_after_max_ms.max(0));
    let mut out_of_window = None;
    let mut keyless = None;
    let mut max_timestamp = i64::MIN;
    let count = walk_batch(h, batch, codec, records_bytes_max(batch_bytes_max), |r| {
        max_timestamp = max_timestamp.max(r.timestamp);
        if rules.key_required && !r.has_key {
            keyless = Some(r);
            return ControlFlow::Break(());
        }
        if check_window && r.timestamp != NO_TIMESTAMP && !(oldest..=newest).contains(&r.timestamp)
        {
            out_of_window = Some(r);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })
    .map_err(|why| corrupt(format!("batch at byte {at}: {why}")))?;
    if let Some(r) = keyless {
        // Kafka: "Compacted topic cannot accept message without key" (INVALID_RECORD).
        return Err(StorageError::InvalidRecord(format!(
            "record {} of the batch at byte {at} has no key: a compacted topic \
             (cleanup.policy=compact) keeps the latest record per key, so every record needs one",
            r.offset_delta
        )));
    }
    if let Some(r) = out_of_window {
        return Err(StorageError::InvalidTimestamp(format!(
            "record {} of the batch at byte {at} has timestamp {} ms, outside [{oldest}, {newest}] \
             (message.timestamp.before.max.ms / after.max.ms around the leader's clock {})",
            r.offset_delta, r.timestamp, rules.now_ms
        )));
    }
    if count != i64::from(h.records_count) {
        return Err(corrupt(format!(
            "batch at byte {at}: header says {} records, the batch holds {count}",
            h.records_count
        )));
    }
    Ok(max_timestamp)
}

/// A record as the walker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    /// Its offset delta (checked to be its index in the batch).
    pub offset_delta: i64,
    /// Its absolute timestamp (`baseTimestamp + timestampDelta`).
    pub timestamp: i64,
    /// False for a record with a null key.
    pub has_key: bool,
}

/// Byte source of the record walker: a slice (uncompressed batches, the hot path) or a
/// decompressing stream. Counting `pos` lets the walker check each record's framing.
trait Source {
    fn at_end(&mut self) -> std::result::Result<bool, String>;
    fn byte(&mut self) -> std::result::Result<u8, String>;
    fn skip(&mut self, n: u64) -> std::result::Result<(), String>;
    fn pos(&self) -> u64;
    /// The next `n` bytes. The caller has checked `n` against the record's length; a stream
    /// still grows the buffer only as bytes arrive, since that length is the batch's word.
    fn take(&mut self, n: u64) -> std::result::Result<Vec<u8>, String>;
}

struct SliceSource<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Source for SliceSource<'_> {
    fn at_end(&mut self) -> std::result::Result<bool, String> {
        Ok(self.at >= self.buf.len())
    }
    fn byte(&mut self) -> std::result::Result<u8, String> {
        let b = *self
            .buf
            .get(self.at)
            .ok_or_else(|| format!("records cut off at byte {}", self.at))?;
        self.at += 1;
        Ok(b)
    }
    fn skip(&mut self, n: u64) -> std::result::Result<(), String> {
        match usize::try_from(n).ok().and_then(|n| self.at.checked_add(n)) {
            Some(next) if next <= self.buf.len() => {
                self.at = next;
                Ok(())
            }
            _ => Err(format!("{n} bytes run past the records")),
        }
    }
    fn pos(&self) -> u64 {
        self.at as u64
    }
    fn take(&mut self, n: u64) -> std::result::Result<Vec<u8>, String> {
        let start = self.at;
        self.skip(n)?;
        Ok(self.buf[start..self.at].to_vec())
    }
}

struct StreamSource<R> {
    r: R,
    pos: u64,
}

fn io_why(e: std::io::Error) -> String {
    format!("decompression failed: {e}")
}

impl<R: BufRead> Source for StreamSource<R> {
    fn at_end(&mut self) -> std::result::Result<bool, String> {
        Ok(self.r.fill_buf().map_err(io_why)?.is_empty())
    }
    fn byte(&mut self) -> std::result::Result<u8, String> {
        let b = *self
            .r
            .fill_buf()
            .map_err(io_why)?
            .first()
            .ok_or_else(|| format!("decompressed records cut off at byte {}", self.pos))?;
        self.r.consume(1);
        self.pos += 1;
        Ok(b)
    }
    fn skip(&mut self, mut n: u64) -> std::result::Result<(), String> {
        while n > 0 {
            let avail = self.r.fill_buf().map_err(io_why)?.len();
            if avail == 0 {
                return Err(format!("decompressed records cut off at byte {}", self.pos));
            }
            let k = usize::try_from(n).map_or(avail, |n| n.min(avail));
            self.r.consume(k);
            self.pos += k as u64;
            n -= k as u64;
        }
        Ok(())
    }
    fn pos(&self) -> u64 {
        self.pos
    }
    fn take(&mut self, mut n: u64) -> std::result::Result<Vec<u8>, String> {
        let mut out = Vec::new();
        while n > 0 {
            let avail = self.r.fill_buf().map_err(io_why)?;
            if avail.is_empty() {
                return Err(format!("decompressed records cut off at byte {}", self.pos));
            }
            let k = usize::try_from(n).map_or(avail.len(), |n| n.min(avail.len()));
            out.extend_from_slice(&avail[..k]);
            self.r.consume(k);
            self.pos += k as u64;
            n -= k as u64;
        }
        Ok(out)
    }
}

/// Reads a zigzag varint (at most 10 bytes).
fn read_varint<S: Source + ?Sized>(src: &mut S) -> std::result::Result<i64, String> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let b = src.byte()?;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err("varint longer than 10 bytes".into())
}

/// Skips a field of `len` bytes (-1 means null) that must end by `end`.
fn skip_field(
    src: &mut impl Source,
    len: i64,
    end: u64,
    what: &str,
) -> std::result::Result<(), String> {
    if len == -1 {
        return Ok(());
    }
    let len = u64::try_from(len).map_err(|_| format!("{what} length {len} is negative"))?;
    if len > end.saturating_sub(src.pos()) {
        return Err(format!("{what} of {len} bytes runs past its record"));
    }
    src.skip(len)
}

/// Walks records until the source ends (or `visit` breaks): each record's framing, key,
/// value and headers must lie inside the record and its offset delta must be its index.
/// Returns how many records were walked. Memory use is constant.
fn walk<S: Source>(
    src: &mut S,
    base_timestamp: i64,
    mut visit: impl FnMut(RecordInfo) -> ControlFlow<()>,
) -> std::result::Result<i64, String> {
    let mut count = 0i64;
    while !src.at_end()? {
        let len = read_varint(src)?;
        let len = u64::try_from(len)
            .ok()
            .filter(|l| *l > 0)
            .ok_or_else(|| format!("record {count} has length {len}"))?;
        let end = src.pos().saturating_add(len);
        src.byte()?; // attributes
        let timestamp_delta = read_varint(src)?;
        let offset_delta = read_varint(src)?;
        if offset_delta != count {
            return Err(format!("record {count} has offset delta {offset_delta}"));
        }
        let key_len = read_varint(src)?;
        skip_field(src, key_len, end, "key")?;
        let value_len = read_varint(src)?;
        skip_field(src, value_len, end, "value")?;
        let headers = read_varint(src)?;
        // Each header takes at least two bytes: a larger count cannot fit in the record.
        if headers < 0 || headers as u64 > end.saturating_sub(src.pos()) {
            return Err(format!("record {count} has {headers} headers"));
        }
        for _ in 0..headers {
            let k = read_varint(src)?;
            if k < 0 {
                return Err(format!("record {count} has a null header key"));
            }
            skip_field(src, k, end, "header key")?;
            let v = read_varint(src)?;
            skip_field(src, v, end, "header value")?;
        }
        if src.pos() != end {
            return Err(format!(
                "record {count}: its fields end at byte {}, its length says {end}",
                src.pos()
            ));
        }
        count += 1;
        let info = RecordInfo {
            offset_delta,
            timestamp: base_timestamp.saturating_add(timestamp_delta),
            has_key: key_len >= 0,
        };
        if visit(info).is_break() {
            break;
        }
    }
    Ok(count)
}

/// Walks the records of one whole batch (`batch` starts at its header), decompressing with
/// at most `records_bytes_max` bytes of output. See [`walk`].
fn walk_batch(
    h: &BatchHeader,
    batch: &[u8],
    codec: Compression,
    records_bytes_max: u64,
    visit: impl FnMut(RecordInfo) -> ControlFlow<()>,
) -> std::result::Result<i64, String> {
    let records = batch.get(HEADER_LEN..).unwrap_or_default();
    match codec {
        Compression::None => walk(
            &mut SliceSource {
                buf: records,
                at: 0,
            },
            h.base_timestamp,
            visit,
        ),
        _ => {
            let r = compression::decompressor(codec, records, records_bytes_max).map_err(io_why)?;
            walk(&mut StreamSource { r, pos: 0 }, h.base_timestamp, visit)
        }
    }
}

/// Visits the records of one stored batch (`batch` is the whole batch; compressed batches are
/// decompressed with at most `records_bytes_max` bytes of output) until `visit` breaks.
/// Returns the number of records visited. For lookups by timestamp.
pub fn visit_records(
    batch: &[u8],
    records_bytes_max: u64,
    visit: impl FnMut(RecordInfo) -> ControlFlow<()>,
) -> Result<i64> {
    let h = BatchHeader::parse(batch)?;
    let codec = Compression::from_id(h.compression())
        .ok_or(StorageError::UnsupportedCompression(h.compression()))?;
    walk_batch(&h, batch, codec, records_bytes_max, visit)
        .map_err(|why| corrupt(format!("batch at offset {}: {why}", h.base_offset)))
}

fn check_counts(h: &BatchHeader, origin: BatchOrigin) -> Result<()> {
    if h.last_offset_delta < 0 || h.records_count < 0 {
        return Err(corrupt(format!(
            "negative counts: lastOffsetDelta {} recordsCount {}",
            h.last_offset_delta, h.records_count
        )));
    }
    match origin {
        BatchOrigin::Client(_) => {
            if h.records_count < 1 || h.last_offset_delta != h.records_count - 1 {
                return Err(corrupt(format!(
                    "recordsCount {} does not match lastOffsetDelta {}",
                    h.records_count, h.last_offset_delta
                )));
            }
        }
        BatchOrigin::Replication => {
            if i64::from(h.records_count) > i64::from(h.last_offset_delta) + 1 {
                return Err(corrupt(format!(
                    "recordsCount {} exceeds lastOffsetDelta {} + 1",
                    h.records_count, h.last_offset_delta
                )));
            }
            if h.base_offset < 0 {
                return Err(corrupt(format!("negative base offset {}", h.base_offset)));
            }
        }
    }
    Ok(())
}

fn header_mut(batch: &mut [u8]) -> Result<&mut [u8]> {
    let len = batch.len();
    batch
        .get_mut(..HEADER_LEN)
        .ok_or_else(|| corrupt(format!("{len} bytes cannot hold a record batch header")))
}

/// Sets the batch's base offset. Outside the CRC'd region: the CRC stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<()> {
    header_mut(batch)?[BASE_OFFSET_AT..BASE_OFFSET_AT + 8]
        .copy_from_slice(&base_offset.to_be_bytes());
    Ok(())
}

/// Sets the batch's partition leader epoch. Outside the CRC'd region: the CRC stays valid.
pub fn set_partition_leader_epoch(batch: &mut [u8], leader_epoch: i32) -> Result<()> {
    header_mut(batch)?[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
    Ok(())
}

/// For topics with `message.timestamp.type=LogAppendTime`: marks the batch's timestamps as
/// append time, sets its max timestamp to `timestamp_ms` and recomputes the CRC (these fields
/// are inside the CRC'd region).
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) -> Result<()> {
    let head = timestamps_patched(batch, TimestampType::LogAppendTime, timestamp_ms)?;
    batch[..HEADER_LEN].copy_from_slice(&head);
    Ok(())
}

/// The header of `batch` with its timestamp type and max timestamp set and its CRC
/// recomputed, leaving `batch` alone: the leader writes this header in front of the
/// client's records (one CRC-32C pass over the batch, no copy of it).
pub fn timestamps_patched(
    batch: &[u8],
    timestamp_type: TimestampType,
    max_timestamp: i64,
) -> Result<[u8; HEADER_LEN]> {
    let mut head = [0u8; HEADER_LEN];
    head.copy_from_slice(batch.get(..HEADER_LEN).ok_or_else(|| {
        corrupt(format!(
            "{} bytes cannot hold a record batch header",
            batch.len()
        ))
    })?);
    let attributes = match timestamp_type {
        TimestampType::CreateTime => be_i16(&head, ATTRIBUTES_AT) & !TIMESTAMP_TYPE_BIT,
        TimestampType::LogAppendTime => be_i16(&head, ATTRIBUTES_AT) | TIMESTAMP_TYPE_BIT,
    };
    head[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    head[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[ATTRIBUTES_AT..]), &batch[HEADER_LEN..]);
    head[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(head)
}

/// Decodes the records of one or more concatenated v2 batches that must all be whole (a log
/// read), skipping control batches. For internal topics whose batches the node writes itself
/// (`__consumer_offsets`); [`decode_batches`] has the batch facts and takes a partial tail.
pub fn decode_records(buf: &[u8]) -> Result<Vec<Record>> {
    let mut rest = buf;
    while rest.len() >= HEADER_LEN {
        let h = BatchHeader::parse(rest)?;
        let total = h.total_len();
        if total > rest.len() {
            return Err(corrupt(format!(
                "batch at offset {} of {total} bytes is cut off at {} bytes",
                h.base_offset,
                rest.len()
            )));
        }
        rest = &rest[total..];
    }
    // The node's own batches are uncompressed and at most a few MiB; the bound only keeps a
    // damaged one from decompressing without end.
    let batches = decode_batches(buf, 64 << 20)?;
    Ok(batches
        .into_iter()
        .filter(|b| !b.is_control())
        .flat_map(|b| b.records)
        .collect())
}

/// One record of a batch, located in the batch's (decompressed) records section: what the
/// log cleaner needs to decide on it and to copy it unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// The record's bytes, length prefix included, in [`RawRecords::bytes`].
    pub range: Range<usize>,
    /// Its offset delta.
    pub offset_delta: i64,
    /// Its key's bytes in [`RawRecords::bytes`]; `None` for a null key.
    pub key: Option<Range<usize>>,
    /// True for a null value (a tombstone).
    pub value_is_null: bool,
}

/// The records section of one batch, decompressed, with each record located in it.
#[derive(Debug, Clone, Default)]
pub struct RawRecords {
    /// The uncompressed records section.
    pub bytes: Vec<u8>,
    /// Its records in order.
    pub records: Vec<RawRecord>,
}

impl RawRecords {
    /// The key bytes of `r`, if it has a key.
    pub fn key(&self, r: &RawRecord) -> Option<&[u8]> {
        r.key.clone().and_then(|k| self.bytes.get(k))
    }
}

/// Decompresses (with at most `records_bytes_max` bytes of output) and walks the records of
/// one whole stored batch, locating each record and its key. Offset deltas need only
/// increase (a cleaned batch has gaps).
pub fn raw_records(batch: &[u8], records_bytes_max: u64) -> Result<RawRecords> {
    use std::io::Read;
    let h = BatchHeader::parse(batch)?;
    let why = |w: String| corrupt(format!("batch at offset {}: {w}", h.base_offset));
    let codec = Compression::from_id(h.compression())
        .ok_or(StorageError::UnsupportedCompression(h.compression()))?;
    let section = batch.get(HEADER_LEN..h.total_len()).ok_or_else(|| {
        why(format!(
            "{} bytes hold less than its length {}",
            batch.len(),
            h.total_len()
        ))
    })?;
    let bytes = match codec {
        Compression::None => section.to_vec(),
        _ => {
            let mut out = Vec::new();
            compression::decompressor(codec, section, records_bytes_max)
                .and_then(|mut r| r.read_to_end(&mut out))
                .map_err(|e| why(io_why(e)))?;
            out
        }
    };
    let mut records = Vec::with_capacity(
        usize::try_from(h.records_count.max(0))
            .unwrap_or(0)
            .min(1 << 16),
    );
    let mut src = SliceSource { buf: &bytes, at: 0 };
    let mut last_delta = -1i64;
    while src.at < bytes.len() {
        let start = src.at;
        let len = read_varint(&mut src).map_err(&why)?;
        let len = u64::try_from(len)
            .ok()
            .filter(|l| *l > 0)
            .ok_or_else(|| why(format!("record at byte {start} has length {len}")))?;
        let end = src.pos().saturating_add(len);
        if end > bytes.len() as u64 {
            return Err(why(format!("record at byte {start} runs past the records")));
        }
        src.byte().map_err(&why)?; // attributes
        read_varint(&mut src).map_err(&why)?; // timestamp delta
        let offset_delta = read_varint(&mut src).map_err(&why)?;
        if offset_delta <= last_delta || offset_delta > i64::from(h.last_offset_delta) {
            return Err(why(format!(
                "record at byte {start} has offset delta {offset_delta}"
            )));
        }
        last_delta = offset_delta;
        let key_len = read_varint(&mut src).map_err(&why)?;
        let key_at = src.at;
        skip_field(&mut src, key_len, end, "key").map_err(&why)?;
        let key = (key_len >= 0).then_some(key_at..src.at);
        let value_len = read_varint(&mut src).map_err(&why)?;
        let end = usize::try_from(end).map_err(|_| why("record too long".into()))?;
        src.at = end;
        records.push(RawRecord {
            range: start..end,
            offset_delta,
            key,
            value_is_null: value_len < 0,
        });
    }
    Ok(RawRecords { bytes, records })
}

/// A copy of the stored batch `original` (its header) holding only `records` (whole
/// records, concatenated, uncompressed, `count` of them), compressed again with the batch's
/// codec; base offset, last offset delta, timestamps, producer id, epoch and base sequence
/// are kept (Kafka's cleaner does the same), the length, count and CRC are recomputed. With
/// no record left the batch is an empty, uncompressed one (Kafka keeps such a batch to retain
/// its producer's state).
pub fn rebuilt_batch(original: &[u8], records: &[u8], count: i32) -> Result<Vec<u8>> {
    let h = BatchHeader::parse(original)?;
    let codec = Compression::from_id(h.compression())
        .ok_or(StorageError::UnsupportedCompression(h.compression()))?;
    let (attributes, section) = if count == 0 {
        (h.attributes & !0x7, Vec::new())
    } else {
        let section = match codec {
            Compression::None => records.to_vec(),
            _ => {
                let c = compress(codec, records);
                if c.is_empty() {
                    return Err(corrupt(format!(
                        "batch at offset {}: recompressing {} bytes with {codec:?} failed",
                        h.base_offset,
                        records.len()
                    )));
                }
                c
            }
        };
        (h.attributes, section)
    };
    let mut out = Vec::with_capacity(HEADER_LEN + section.len());
    out.extend_from_slice(&original[..HEADER_LEN]);
    out.extend_from_slice(&section);
    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD)
        .map_err(|_| corrupt(format!("rebuilt batch of {} bytes", out.len())))?;
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    out[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
    let crc = compute_crc(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// Builds v2 batches (optionally compressed) of records with keys, values and headers: the one
/// encoder below `broker`, for the node's own writes (`__consumer_offsets`), native
/// producers, tools, benchmarks and tests. Kafka clients' batches are stored as sent.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    base_offset: i64,
    partition_leader_epoch: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records_count: i32,
    records: Vec<u8>,
    compression: Compression,
    /// Test overrides: written as given, with a valid CRC.
    attributes: Option<i16>,
    declared_max_timestamp: Option<i64>,
    declared_count: Option<i32>,
    payload: Option<Vec<u8>>,
}

impl BatchBuilder {
    /// An empty batch whose first record has timestamp `base_timestamp` (ms), from a
    /// non-idempotent producer.
    pub fn new(base_timestamp: i64) -> Self {
        Self {
            base_offset: 0,
            partition_leader_epoch: -1,
            base_timestamp,
            max_timestamp: base_timestamp,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: -1,
            base_sequence: NO_SEQUENCE,
            records_count: 0,
            records: Vec::new(),
            compression: Compression::None,
            attributes: None,
            declared_max_timestamp: None,
            declared_count: None,
            payload: None,
        }
    }

    /// Compresses the records with `codec` (snappy with xerial framing).
    pub fn compression(mut self, codec: Compression) -> Self {
        self.compression = codec;
        self
    }

    /// Writes `attributes` as given instead of the codec's (for unknown codecs, control or
    /// timestamp-type bits).
    pub fn attributes(mut self, attributes: i16) -> Self {
        self.attributes = Some(attributes);
        self
    }

    /// Writes `max_timestamp` in the header instead of the records' largest timestamp (as
    /// some producers do, e.g. -1).
    pub fn declared_max_timestamp(mut self, max_timestamp: i64) -> Self {
        self.declared_max_timestamp = Some(max_timestamp);
        self
    }

    /// Claims `count` records (`recordsCount` and `lastOffsetDelta = count - 1`) whatever
    /// the records are.
    pub fn declared_count(mut self, count: i32) -> Self {
        self.declared_count = Some(count);
        self
    }

    /// Uses `payload` as the (possibly compressed) records section instead of the records.
    pub fn payload(mut self, payload: Vec<u8>) -> Self {
        self.payload = Some(payload);
        self
    }

    /// Marks the batch as sent by an idempotent producer.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Sets base offset and leader epoch, as a leader would (for follower appends).
    pub fn offsets(mut self, base_offset: i64, partition_leader_epoch: i32) -> Self {
        self.base_offset = base_offset;
        self.partition_leader_epoch = partition_leader_epoch;
        self
    }

    /// Appends a record.
    pub fn record(mut self, timestamp_ms: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Self {
        self.push(timestamp_ms, key, value);
        self
    }

    /// Appends a record without headers (by reference, for loops).
    pub fn push(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value: Option<&[u8]>) {
        self.push_record(timestamp_ms, key, value, &[]);
    }

    /// Appends a record with headers (`(key, value)` pairs, a `None` value is null).
    pub fn push_record(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) {
        let mut body =
            Vec::with_capacity(16 + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len));
        body.push(0); // attributes
        put_varlong(&mut body, timestamp_ms - self.base_timestamp);
        put_varlong(&mut body, i64::from(self.records_count));
        for field in [key, value] {
            match field {
                Some(bytes) => {
                    put_varlong(&mut body, bytes.len() as i64);
                    body.extend_from_slice(bytes);
                }
                None => put_varlong(&mut body, -1),
            }
        }
        put_varlong(&mut body, headers.len() as i64);
        for (k, v) in headers {
            put_varlong(&mut body, k.len() as i64);
            body.extend_from_slice(k);
            match v {
                Some(v) => {
                    put_varlong(&mut body, v.len() as i64);
                    body.extend_from_slice(v);
                }
                None => put_varlong(&mut body, -1),
            }
        }
        put_varlong(&mut self.records, body.len() as i64);
        self.records.extend_from_slice(&body);
        self.records_count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
    }

    /// Number of records so far.
    pub fn len(&self) -> usize {
        self.records_count as usize
    }

    /// True before the first record.
    pub fn is_empty(&self) -> bool {
        self.records_count == 0
    }

    /// Encodes the batch with its CRC. A batch without records gets `lastOffsetDelta` 0 (it
    /// fails client validation, as it should).
    pub fn build(&self) -> Vec<u8> {
        let payload = match &self.payload {
            Some(p) => p.clone(),
            None => compress(self.compression, &self.records),
        };
        let count = self.declared_count.unwrap_or(self.records_count);
        let attributes = self.attributes.unwrap_or(i16::from(self.compression.id()));
        let total = HEADER_LEN + payload.len();
        let mut b = Vec::with_capacity(total);
        b.extend_from_slice(&self.base_offset.to_be_bytes());
        b.extend_from_slice(&((total - LOG_OVERHEAD) as i32).to_be_bytes());
        b.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        b.push(MAGIC_V2 as u8);
        b.extend_from_slice(&0u32.to_be_bytes()); // CRC, below
        b.extend_from_slice(&attributes.to_be_bytes());
        b.extend_from_slice(&(count - 1).max(0).to_be_bytes());
        b.extend_from_slice(&self.base_timestamp.to_be_bytes());
        b.extend_from_slice(
            &self
                .declared_max_timestamp
                .unwrap_or(self.max_timestamp)
                .to_be_bytes(),
        );
        b.extend_from_slice(&self.producer_id.to_be_bytes());
        b.extend_from_slice(&self.producer_epoch.to_be_bytes());
        b.extend_from_slice(&self.base_sequence.to_be_bytes());
        b.extend_from_slice(&count.to_be_bytes());
        b.extend_from_slice(&payload);
        debug_assert_eq!(b.len(), total);
        let crc = compute_crc(&b);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_700_000_000_000;

    fn client() -> ClientRules {
        ClientRules {
            now_ms: NOW_MS,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            key_required: false,
        }
    }

    fn client_rules() -> ValidationRules {
        ValidationRules {
            batch_bytes_max: 1 << 20,
            origin: BatchOrigin::Client(client()),
        }
    }

    /// Records like a producer's: 1 KiB-ish values, increasing timestamps.
    fn records(n: usize, base_ts: i64) -> BatchBuilder {
        let mut b = BatchBuilder::new(base_ts);
        for i in 0..n {
            b.push(
                base_ts + i as i64,
                Some(format!("key-{i}").as_bytes()),
                Some(format!("value-{i}-{}", "x".repeat(i % 50)).as_bytes()),
            );
        }
        b
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn compressed_batches_are_walked_and_their_max_timestamp_computed() {
        for codec in CODECS {
            let b = records(20, NOW_MS - 1_000)
                .compression(codec)
                .declared_max_timestamp(-1)
                .build();
            let v = validate(&b, &client_rules()).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(v[0].header.max_timestamp, -1);
            assert_eq!(v[0].records_max_timestamp, NOW_MS - 1_000 + 19, "{codec:?}");
        }
        // librdkafka's snappy: one raw block, no xerial framing.
        let plain = records(5, NOW_MS).build();
        let raw = compress_snappy_raw(&plain[HEADER_LEN..]);
        let b = records(5, NOW_MS).attributes(2).payload(raw).build();
        assert!(validate(&b, &client_rules()).is_ok());
    }

    /// Each poison batch (valid CRC) and the error it must get.
    #[test]
    fn poison_batches_are_refused() {
        let plain = records(3, NOW_MS).build();
        let body = plain[HEADER_LEN..].to_vec();
        let gzip = |bytes: &[u8]| compress(Compression::Gzip, bytes);
        let mut bad_delta = records(2, NOW_MS).build();
        // The second record's offset delta (after length, attributes and timestamp delta).
        let second = HEADER_LEN + 1 + bad_delta[HEADER_LEN] as usize / 2;
        bad_delta[second + 3] = 2 * 5; // zigzag 5
        let bad_delta_body = bad_delta[HEADER_LEN..].to_vec();
        let zeros = vec![0u8; 2 << 20];
        type Check = fn(&StorageError) -> bool;
        let corrupt_: Check = |e| matches!(e, StorageError::CorruptBatch(_));
        let cases: Vec<(&str, Vec<u8>, Check)> = vec![
            ("codec 5", records(1, NOW_MS).attributes(5).build(), |e| {
                matches!(e, StorageError::UnsupportedCompression(5))
            }),
            ("codec 7", records(1, NOW_MS).attributes(7).build(), |e| {
                matches!(e, StorageError::UnsupportedCompression(7))
            }),
            (
                "control batch",
                records(1, NOW_MS).attributes(1 << 5).build(),
                |e| matches!(e, StorageError::InvalidRecord(_)),
            ),
            (
                "garbage gzip",
                records(1, NOW_MS)
                    .attributes(1)
                    .payload(vec![0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5])
                    .build(),
                corrupt_,
            ),
            (
                "garbage zstd",
                records(1, NOW_MS)
                    .attributes(4)
                    .payload(b"not zstd at all".to_vec())
                    .build(),
                corrupt_,
            ),
            (
                "garbage lz4",
                records(1, NOW_MS)
                    .attributes(3)
                    .payload(b"not lz4 at all".to_vec())
                    .build(),
                corrupt_,
            ),
            (
                "garbage snappy",
                records(1, NOW_MS)
                    .attributes(2)
                    .payload(vec![0xff; 40])
                    .build(),
                corrupt_,
            ),
            (
                "gzip claiming 1,000,000 records",
                records(3, NOW_MS)
                    .compression(Compression::Gzip)
                    .declared_count(1_000_000)
                    .build(),
                corrupt_,
            ),
            (
                "gzip claiming 2 records, holding 3",
                records(3, NOW_MS)
                    .compression(Compression::Gzip)
                    .declared_count(2)
                    .build(),
                corrupt_,
            ),
            (
                "gzip of a truncated record",
                records(3, NOW_MS)
                    .attributes(1)
                    .payload(gzip(&body[..body.len() - 1]))
                    .build(),
                corrupt_,
            ),
            (
                "gzip with trailing bytes after the records",
                records(3, NOW_MS)
                    .attributes(1)
                    .payload(gzip(&[&body[..], &[0u8]].concat()))
                    .build(),
                corrupt_,
            ),
            (
                "gzip with an offset delta out of order",
                records(2, NOW_MS)
                    .attributes(1)
                    .payload(gzip(&bad_delta_body))
                    .build(),
                corrupt_,
            ),
            (
                "uncompressed offset delta out of order",
                records(2, NOW_MS).payload(bad_delta_body.clone()).build(),
                corrupt_,
            ),
            (
                "gzip bomb past the decompression bound",
                records(1, NOW_MS)
                    .attributes(1)
                    .payload(gzip(&zeros))
                    .build(),
                corrupt_,
            ),
            (
                "timestamp 2 hours ahead",
                records(1, NOW_MS + 7_200_000).build(),
                |e| matches!(e, StorageError::InvalidTimestamp(_)),
            ),
        ];
        let rules = ValidationRules {
            // 32 KiB * 64 = 2 MiB of output allowed: the 2 MiB + 1 bomb is past it.
            batch_bytes_max: 32 << 10,
            ..client_rules()
        };
        for (what, batch, check) in cases {
            match validate(&batch, &rules) {
                Err(e) if check(&e) => {}
                other => panic!("{what}: got {other:?}"),
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever bytes a client puts in the records section under any codec, validation
        /// answers (usually an error) without panicking or allocating from them.
        #[test]
        fn arbitrary_payloads_never_panic(
            codec in 0u8..8,
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            let b = records(1, NOW_MS).attributes(i16::from(codec)).payload(payload).build();
            let _ = validate(&b, &client_rules());
        }

        /// Batches of any codec holding any records validate, and their max timestamp is
        /// the records' largest whatever the header claims.
        #[test]
        fn any_records_round_trip_every_codec(
            codec in 0usize..5,
            deltas in proptest::collection::vec(-1_000i64..1_000, 1..40),
        ) {
            let mut b = BatchBuilder::new(NOW_MS).compression(CODECS[codec]);
            for (i, d) in deltas.iter().enumerate() {
                b.push(NOW_MS + d, Some(b"k"), Some(format!("v{i}").as_bytes()));
            }
            let v = validate(&b.declared_max_timestamp(-1).build(), &client_rules());
            let max = deltas.iter().max().map(|d| NOW_MS + d);
            proptest::prop_assert_eq!(v.ok().map(|v| v[0].records_max_timestamp), max);
        }
    }

    #[test]
    fn timestamp_window_follows_the_rules() {
        let at = |ts: i64, rules: ClientRules| {
            validate(
                &records(1, ts).build(),
                &ValidationRules {
                    batch_bytes_max: 1 << 20,
                    origin: BatchOrigin::Client(rules),
                },
            )
            .map(|v| v[0].records_max_timestamp)
        };
        let window = ClientRules {
            timestamp_before_max_ms: 1_000,
            timestamp_after_max_ms: 10,
            ..client()
        };
        assert!(at(NOW_MS - 1_000, window).is_ok());
        assert!(matches!(
            at(NOW_MS - 1_001, window),
            Err(StorageError::InvalidTimestamp(_))
        ));
        assert!(at(NOW_MS + 10, window).is_ok());
        assert!(matches!(
            at(NOW_MS + 11, window),
            Err(StorageError::InvalidTimestamp(_))
        ));
        // A record without a timestamp (-1) is not checked, as in Kafka.
        assert_eq!(at(NO_TIMESTAMP, window).unwrap(), NO_TIMESTAMP);
        // LogAppendTime topics ignore the producer's timestamps.
        let append_time = ClientRules {
            timestamp_type: TimestampType::LogAppendTime,
            ..window
        };
        assert!(at(NOW_MS + 1_000_000, append_time).is_ok());
    }

    #[test]
    fn compacted_topics_refuse_keyless_records() {
        let rules = |key_required| ValidationRules {
            batch_bytes_max: 1 << 20,
            origin: BatchOrigin::Client(ClientRules {
                key_required,
                ..client()
            }),
        };
        let keyed = BatchBuilder::new(NOW_MS)
            .record(NOW_MS, Some(b"k"), Some(b"v"))
            .record(NOW_MS, Some(b"k"), None)
            .build();
        let keyless = BatchBuilder::new(NOW_MS)
            .record(NOW_MS, Some(b"k"), Some(b"v"))
            .record(NOW_MS, None, Some(b"v"))
            .build();
        assert!(validate(&keyed, &rules(true)).is_ok());
        assert!(validate(&keyless, &rules(false)).is_ok());
        assert!(matches!(
            validate(&keyless, &rules(true)),
            Err(StorageError::InvalidRecord(_))
        ));
        let zipped = BatchBuilder::new(NOW_MS)
            .compression(Compression::Zstd)
            .record(NOW_MS, None, Some(b"v"))
            .build();
        assert!(matches!(
            validate(&zipped, &rules(true)),
            Err(StorageError::InvalidRecord(_))
        ));
    }

    #[test]
    fn raw_records_locate_keys_and_a_rebuilt_batch_round_trips() {
        for codec in Compression::ALL {
            let b = BatchBuilder::new(NOW_MS)
                .compression(codec)
                .producer(7, 1, 40)
                .offsets(100, 3)
                .record(NOW_MS, Some(b"a"), Some(b"1"))
                .record(NOW_MS + 1, Some(b"bb"), None)
                .record(NOW_MS + 2, None, Some(b"3"))
                .build();
            let raw = raw_records(&b, 1 << 20).unwrap();
            assert_eq!(raw.records.len(), 3, "{codec:?}");
            let keys: Vec<_> = raw
                .records
                .iter()
                .map(|r| raw.key(r).map(<[u8]>::to_vec))
                .collect();
            assert_eq!(keys, vec![Some(b"a".to_vec()), Some(b"bb".to_vec()), None]);
            let nulls: Vec<_> = raw.records.iter().map(|r| r.value_is_null).collect();
            assert_eq!(nulls, vec![false, true, false]);
            // Keep the second record only: offsets and producer fields stay.
            let kept = raw.bytes[raw.records[1].range.clone()].to_vec();
            let nb = rebuilt_batch(&b, &kept, 1).unwrap();
            let h = BatchHeader::parse(&nb).unwrap();
            let old = BatchHeader::parse(&b).unwrap();
            assert_eq!(h.compression(), old.compression());
            assert_eq!(
                (h.base_offset, h.last_offset_delta, h.records_count),
                (100, 2, 1)
            );
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (7, 1, 40)
            );
            assert_eq!(h.partition_leader_epoch, 3);
            assert_eq!(compute_crc(&nb), h.crc);
            assert!(validate(
                &nb,
                &ValidationRules {
                    batch_bytes_max: 1 << 20,
                    origin: BatchOrigin::Replication
                }
            )
            .is_ok());
            let decoded = decode_batches(&nb, 1 << 20).unwrap();
            assert_eq!(decoded[0].records.len(), 1);
            assert_eq!(decoded[0].records[0].offset, 101);
            assert_eq!(decoded[0].records[0].key.as_deref(), Some(&b"bb"[..]));
            assert_eq!(decoded[0].records[0].value, None);
            // Nothing kept: an empty, uncompressed batch with the same offsets.
            let empty = rebuilt_batch(&b, &[], 0).unwrap();
            let eh = BatchHeader::parse(&empty).unwrap();
            assert_eq!(
                (eh.records_count, eh.last_offset_delta, eh.compression()),
                (0, 2, 0)
            );
            assert_eq!(empty.len(), HEADER_LEN);
            assert!(validate(
                &empty,
                &ValidationRules {
                    batch_bytes_max: 1 << 20,
                    origin: BatchOrigin::Replication
                }
            )
            .is_ok());
        }
    }

    #[test]
    fn timestamps_patched_keeps_a_valid_crc() {
        let b = records(4, NOW_MS).declared_max_timestamp(-1).build();
        let head = timestamps_patched(&b, TimestampType::CreateTime, NOW_MS + 3).unwrap();
        let patched = [&head[..], &b[HEADER_LEN..]].concat();
        let h = BatchHeader::parse(&patched).unwrap();
        assert_eq!(h.max_timestamp, NOW_MS + 3);
        assert!(!h.is_log_append_time());
        assert!(validate(&patched, &client_rules()).is_ok());
    }

    #[test]
    fn visit_records_finds_records_in_compressed_batches() {
        for codec in CODECS {
            let b = records(10, NOW_MS).compression(codec).build();
            let mut seen = Vec::new();
            let n = visit_records(&b, 1 << 20, |r| {
                seen.push(r.timestamp);
                if r.timestamp >= NOW_MS + 4 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
            assert_eq!(n, 5, "{codec:?}");
            assert_eq!(seen, (0..5).map(|i| NOW_MS + i).collect::<Vec<_>>());
        }
    }

    fn sample(records: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new(1_000);
        for i in 0..records {
            b.push(
                1_000 + i as i64,
                Some(b"key"),
                Some(format!("value-{i}").as_bytes()),
            );
        }
        b.build()
    }

    fn get_varlong(buf: &[u8], at: &mut usize) -> i64 {
        let mut z = 0u64;
        let mut shift = 0;
        loop {
            let byte = buf[*at];
            *at += 1;
            z |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        ((z >> 1) as i64) ^ -((z & 1) as i64)
    }

    /// (timestamp, offset delta, key, value)
    type SimpleRecord = (i64, i64, Option<Vec<u8>>, Option<Vec<u8>>);

    /// Decodes simple records (test oracle for the builder's encoding).
    fn decode(batch: &[u8]) -> Vec<SimpleRecord> {
        let h = BatchHeader::parse(batch).unwrap();
        let mut at = HEADER_LEN;
        let mut out = Vec::new();
        for _ in 0..h.records_count {
            let len = get_varlong(batch, &mut at) as usize;
            let end = at + len;
            assert_eq!(batch[at], 0, "record attributes");
            at += 1;
            let ts_delta = get_varlong(batch, &mut at);
            let offset_delta = get_varlong(batch, &mut at);
            let mut fields = Vec::new();
            for _ in 0..2 {
                let l = get_varlong(batch, &mut at);
                if l < 0 {
                    fields.push(None);
                } else {
                    fields.push(Some(batch[at..at + l as usize].to_vec()));
                    at += l as usize;
                }
            }
            assert_eq!(get_varlong(batch, &mut at), 0, "headers");
            assert_eq!(at, end);
            let value = fields.pop().unwrap();
            let key = fields.pop().unwrap();
            out.push((h.base_timestamp + ts_delta, offset_delta, key, value));
        }
        assert_eq!(at, batch.len());
        out
    }

    #[test]
    fn builder_output_parses_and_validates() {
        let b = BatchBuilder::new(500)
            .producer(7, 3, 41)
            .record(500, Some(b"k"), Some(b"v1"))
            .record(900, None, Some(b"v2"))
            .record(700, Some(b"k3"), None)
            .build();
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.magic, 2);
        assert_eq!(h.total_len(), b.len());
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.base_timestamp, 500);
        assert_eq!(h.max_timestamp, 900);
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (7, 3, 41)
        );
        assert_eq!(h.last_sequence(), 43);
        assert_eq!(h.crc, crc32c::crc32c(&b[21..]));
        let v = validate(&b, &client_rules()).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].range, 0..b.len());
        assert_eq!(
            decode(&b),
            vec![
                (500, 0, Some(b"k".to_vec()), Some(b"v1".to_vec())),
                (900, 1, None, Some(b"v2".to_vec())),
                (700, 2, Some(b"k3".to_vec()), None),
            ]
        );
    }

    #[test]
    fn decode_records_reads_what_the_builder_wrote() {
        let mut two = BatchBuilder::new(1_000)
            .offsets(10, 3)
            .record(1_000, Some(b"k"), None)
            .record(1_005, None, Some(b"v"))
            .build();
        two.extend_from_slice(&sample(3));
        let recs = decode_records(&two).unwrap();
        assert_eq!(recs.len(), 5);
        assert_eq!(recs[0].offset, 10);
        assert_eq!(recs[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(recs[0].value, None);
        assert_eq!(recs[1].offset, 11);
        assert_eq!(recs[1].timestamp_ms, 1_005);
        assert_eq!(recs[4].value.as_deref(), Some(&b"value-2"[..]));
        assert!(decode_records(&two[..two.len() - 3]).is_err());
    }

    #[test]
    fn crc_matches_known_castagnoli_vector() {
        // RFC 3720 test vector: 32 bytes of zeros -> 0x8a9136aa.
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
    }

    #[test]
    fn concatenated_batches_are_split() {
        let (a, b) = (sample(3), sample(5));
        let mut buf = a.clone();
        buf.extend_from_slice(&b);
        let v = validate(&buf, &client_rules()).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].range, 0..a.len());
        assert_eq!(v[1].range, a.len()..a.len() + b.len());
        assert_eq!(v[1].header.records_count, 5);
    }

    #[test]
    fn bad_crc_is_rejected() {
        let mut b = sample(2);
        let last = b.len() - 1;
        b[last] ^= 0x01;
        assert!(
            matches!(validate(&b, &client_rules()), Err(StorageError::CorruptBatch(m)) if m.contains("CRC"))
        );
        // A flipped bit inside the CRC'd header part is caught too.
        let mut b = sample(2);
        b[MAX_TIMESTAMP_AT] ^= 0x40;
        assert!(matches!(
            validate(&b, &client_rules()),
            Err(StorageError::CorruptBatch(_))
        ));
    }

    #[test]
    fn bad_magic_is_rejected() {
        for magic in [0i8, 1, 3, -1] {
            let mut b = sample(1);
            b[MAGIC_AT] = magic as u8;
            assert!(
                matches!(validate(&b, &client_rules()), Err(StorageError::UnsupportedMagic(m)) if m == magic)
            );
        }
    }

    #[test]
    fn truncated_buffers_are_rejected() {
        let b = sample(4);
        for cut in [0, 1, 11, 16, 17, 40, 60, 61, b.len() - 1] {
            let r = validate(&b[..cut], &client_rules());
            assert!(
                matches!(r, Err(StorageError::CorruptBatch(_))),
                "cut at {cut}: {r:?}"
            );
        }
        // A good batch followed by a fragment of another.
        let mut buf = b.clone();
        buf.extend_from_slice(&b[..30]);
        assert!(matches!(
            validate(&buf, &client_rules()),
            Err(StorageError::CorruptBatch(_))
        ));
    }

    #[test]
    fn bad_lengths_are_rejected() {
        let mut huge = sample(1);
        huge[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            validate(&huge, &client_rules()),
            Err(StorageError::BatchTooLarge { max, .. }) if max == 1 << 20
        ));
        let mut past_end = sample(1);
        let len = past_end.len() as i32;
        past_end[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&len.to_be_bytes());
        assert!(matches!(
            validate(&past_end, &client_rules()),
            Err(StorageError::CorruptBatch(_))
        ));
        for bad in [-1i32, 0, 48, i32::MIN] {
            let mut b = sample(1);
            b[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&bad.to_be_bytes());
            assert!(
                matches!(
                    validate(&b, &client_rules()),
                    Err(StorageError::CorruptBatch(_))
                ),
                "batchLength {bad}"
            );
        }
    }

    #[test]
    fn size_limit_applies_per_batch() {
        let b = sample(10);
        let rules = ValidationRules {
            batch_bytes_max: b.len() - 1,
            ..client_rules()
        };
        assert!(matches!(
            validate(&b, &rules),
            Err(StorageError::BatchTooLarge { size, max }) if size == b.len() && max == b.len() - 1
        ));
        let rules = ValidationRules {
            batch_bytes_max: b.len(),
            ..client_rules()
        };
        assert!(validate(&b, &rules).is_ok());
    }

    #[test]
    fn record_counts_are_checked() {
        let empty = BatchBuilder::new(0).build();
        assert!(matches!(
            validate(&empty, &client_rules()),
            Err(StorageError::CorruptBatch(_))
        ));

        // lastOffsetDelta != recordsCount - 1 (with a fixed-up CRC, so only the count is wrong).
        let mut b = sample(3);
        b[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&5i32.to_be_bytes());
        let crc = compute_crc(&b);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate(&b, &client_rules()),
            Err(StorageError::CorruptBatch(_))
        ));
        // ... which replication accepts (compaction leaves holes).
        let replication = ValidationRules {
            origin: BatchOrigin::Replication,
            ..client_rules()
        };
        assert!(validate(&b, &replication).is_ok());

        let mut b = sample(3);
        b[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&4i32.to_be_bytes());
        let crc = compute_crc(&b);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate(&b, &replication),
            Err(StorageError::CorruptBatch(_))
        ));
    }

    #[test]
    fn empty_input_is_rejected() {
        assert!(matches!(
            validate(&[], &client_rules()),
            Err(StorageError::CorruptBatch(_))
        ));
    }

    #[test]
    fn patching_offset_and_epoch_keeps_the_crc_valid() {
        let mut b = sample(3);
        set_base_offset(&mut b, 1_234_567).unwrap();
        set_partition_leader_epoch(&mut b, 42).unwrap();
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (1_234_567, 42));
        assert_eq!((h.last_offset(), h.next_offset()), (1_234_569, 1_234_570));
        assert!(validate(&b, &client_rules()).is_ok());
        assert!(set_base_offset(&mut [0u8; 10], 1).is_err());
        assert!(set_partition_leader_epoch(&mut [0u8; 60], 1).is_err());
    }

    #[test]
    fn log_append_time_recomputes_the_crc() {
        let mut b = sample(2);
        set_log_append_time(&mut b, 99_999).unwrap();
        let h = BatchHeader::parse(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99_999);
        assert!(validate(&b, &client_rules()).is_ok());
    }

    #[test]
    fn attribute_flags() {
        let mut h = BatchHeader::parse(&sample(1)).unwrap();
        assert_eq!(h.compression(), 0);
        assert!(!h.is_transactional() && !h.is_control() && !h.has_producer_id());
        h.attributes = 0b11_0011;
        assert_eq!(h.compression(), 3);
        assert!(h.is_transactional() && h.is_control());
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(0, 0), 0);
    }
}
