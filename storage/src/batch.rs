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
//! no CRC recomputation and the records are stored exactly as the producer sent them.
//!
//! Validation checks the header only: it does not decompress or decode the records (the CRC
//! already guards them against corruption in transit).

use std::ops::Range;

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
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

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

/// Who produced the batches being validated: stricter rules apply to client batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOrigin {
    /// From a producer, through the leader: `recordsCount >= 1` and
    /// `lastOffsetDelta == recordsCount - 1` (a producer's batch is dense).
    Client,
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
}

/// Splits `buf` into record batches and validates each: enough bytes, a sane `batchLength`
/// that stays inside the buffer, magic 2, the CRC-32C, the record counts and the size limit.
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
        if header.compression() == 0 && rules.origin == BatchOrigin::Client {
            check_records(&header, &batch[HEADER_LEN..])
                .map_err(|why| corrupt(format!("batch at byte {at}: {why}")))?;
        }
        out.push(ValidBatch {
            header,
            range: at..at + total,
        });
        at += total;
    }
    Ok(out)
}

/// Reads a zigzag varint (at most 10 bytes) from `buf` at `*at`.
fn read_varint(buf: &[u8], at: &mut usize) -> std::result::Result<i64, String> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let Some(&b) = buf.get(*at) else {
            return Err(format!("varint cut off at byte {}", *at));
        };
        *at += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err("varint longer than 10 bytes".into())
}

/// Takes `len` bytes (-1 means null) starting at `*at`, staying inside `end`.
fn skip_bytes(len: i64, at: &mut usize, end: usize, what: &str) -> std::result::Result<(), String> {
    if len == -1 {
        return Ok(());
    }
    let len = usize::try_from(len).map_err(|_| format!("{what} length {len} is negative"))?;
    match at.checked_add(len) {
        Some(next) if next <= end => {
            *at = next;
            Ok(())
        }
        _ => Err(format!("{what} of {len} bytes runs past its record")),
    }
}

/// Walks the records of an uncompressed batch: each record's framing, key, value and headers
/// must lie inside the record, the records must fill the batch exactly, and their number must
/// match the header. Catches batches whose CRC was computed over malformed contents.
fn check_records(h: &BatchHeader, records: &[u8]) -> std::result::Result<(), String> {
    let mut at = 0usize;
    let mut count = 0i64;
    while at < records.len() {
        let len = read_varint(records, &mut at)?;
        let len = usize::try_from(len).map_err(|_| format!("record {count} has length {len}"))?;
        let end = at
            .checked_add(len)
            .filter(|e| *e <= records.len())
            .ok_or_else(|| format!("record {count} of {len} bytes runs past the batch"))?;
        at += 1; // attributes
        if at > end {
            return Err(format!("record {count} is empty"));
        }
        read_varint(records, &mut at)?; // timestamp delta
        let offset_delta = read_varint(records, &mut at)?;
        if offset_delta != count {
            return Err(format!("record {count} has offset delta {offset_delta}"));
        }
        let key_len = read_varint(records, &mut at)?;
        skip_bytes(key_len, &mut at, end, "key")?;
        let value_len = read_varint(records, &mut at)?;
        skip_bytes(value_len, &mut at, end, "value")?;
        let headers = read_varint(records, &mut at)?;
        if headers < 0 {
            return Err(format!("record {count} has {headers} headers"));
        }
        for _ in 0..headers {
            let k = read_varint(records, &mut at)?;
            if k < 0 {
                return Err(format!("record {count} has a null header key"));
            }
            skip_bytes(k, &mut at, end, "header key")?;
            let v = read_varint(records, &mut at)?;
            skip_bytes(v, &mut at, end, "header value")?;
        }
        if at != end {
            return Err(format!(
                "record {count}: its fields end at byte {at}, its length says {end}"
            ));
        }
        count += 1;
    }
    if count != i64::from(h.records_count) {
        return Err(format!(
            "header says {} records, the batch holds {count}",
            h.records_count
        ));
    }
    Ok(())
}

fn check_counts(h: &BatchHeader, origin: BatchOrigin) -> Result<()> {
    if h.last_offset_delta < 0 || h.records_count < 0 {
        return Err(corrupt(format!(
            "negative counts: lastOffsetDelta {} recordsCount {}",
            h.last_offset_delta, h.records_count
        )));
    }
    match origin {
        BatchOrigin::Client => {
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
/// are inside the CRC'd region). Not used by the log itself.
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) -> Result<()> {
    let h = header_mut(batch)?;
    let attributes = be_i16(h, ATTRIBUTES_AT) | TIMESTAMP_TYPE_BIT;
    h[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    h[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// One record of an uncompressed batch, as [`decode_records`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    /// Absolute offset (base offset + offset delta).
    pub offset: i64,
    /// Timestamp (ms).
    pub timestamp: i64,
    /// Key, `None` when null.
    pub key: Option<Vec<u8>>,
    /// Value, `None` when null (a tombstone).
    pub value: Option<Vec<u8>>,
}

/// Decodes the records of one or more concatenated uncompressed v2 batches (headers skipped).
/// Control batches are skipped; a compressed batch is an error. For internal topics whose
/// batches the broker writes itself (`__consumer_offsets`).
pub fn decode_records(mut buf: &[u8]) -> Result<Vec<DecodedRecord>> {
    let mut out = Vec::new();
    while buf.len() >= HEADER_LEN {
        let h = BatchHeader::parse(buf)?;
        let total = h.total_len();
        if total > buf.len() {
            return Err(corrupt(format!(
                "batch at offset {} of {total} bytes is cut off at {} bytes",
                h.base_offset,
                buf.len()
            )));
        }
        let batch = &buf[..total];
        buf = &buf[total..];
        if h.is_control() {
            continue;
        }
        if h.compression() != 0 {
            return Err(corrupt(format!(
                "batch at offset {} is compressed; only uncompressed batches decode here",
                h.base_offset
            )));
        }
        let mut at = HEADER_LEN;
        for _ in 0..h.records_count {
            let rec = (|| -> std::result::Result<DecodedRecord, String> {
                let len = read_varint(batch, &mut at)?;
                let end = at
                    .checked_add(usize::try_from(len).map_err(|_| "negative record length")?)
                    .filter(|e| *e <= total)
                    .ok_or("record runs past its batch")?;
                at += 1; // attributes
                let ts_delta = read_varint(batch, &mut at)?;
                let offset_delta = read_varint(batch, &mut at)?;
                let mut field = |what: &str| -> std::result::Result<Option<Vec<u8>>, String> {
                    let l = read_varint(batch, &mut at)?;
                    let start = at;
                    skip_bytes(l, &mut at, end, what)?;
                    Ok((l >= 0).then(|| batch[start..at].to_vec()))
                };
                let key = field("key")?;
                let value = field("value")?;
                at = end; // headers are not needed here
                Ok(DecodedRecord {
                    offset: h.base_offset + offset_delta,
                    timestamp: h.base_timestamp + ts_delta,
                    key,
                    value,
                })
            })()
            .map_err(|e| corrupt(format!("batch at offset {}: {e}", h.base_offset)))?;
            out.push(rec);
        }
    }
    Ok(out)
}

/// Builds uncompressed v2 batches of simple records (key, value, no headers): for tests,
/// benchmarks and tools. Producers normally build batches themselves.
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
        }
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

    /// Appends a record (by reference, for loops).
    pub fn push(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value: Option<&[u8]>) {
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
        put_varlong(&mut body, 0); // headers
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
        let total = HEADER_LEN + self.records.len();
        let mut b = Vec::with_capacity(total);
        b.extend_from_slice(&self.base_offset.to_be_bytes());
        b.extend_from_slice(&((total - LOG_OVERHEAD) as i32).to_be_bytes());
        b.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        b.push(MAGIC_V2 as u8);
        b.extend_from_slice(&0u32.to_be_bytes()); // CRC, below
        b.extend_from_slice(&0i16.to_be_bytes()); // attributes: no compression, create time
        b.extend_from_slice(&(self.records_count - 1).max(0).to_be_bytes());
        b.extend_from_slice(&self.base_timestamp.to_be_bytes());
        b.extend_from_slice(&self.max_timestamp.to_be_bytes());
        b.extend_from_slice(&self.producer_id.to_be_bytes());
        b.extend_from_slice(&self.producer_epoch.to_be_bytes());
        b.extend_from_slice(&self.base_sequence.to_be_bytes());
        b.extend_from_slice(&self.records_count.to_be_bytes());
        b.extend_from_slice(&self.records);
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

    fn client_rules() -> ValidationRules {
        ValidationRules {
            batch_bytes_max: 1 << 20,
            origin: BatchOrigin::Client,
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
        assert_eq!(recs[1].timestamp, 1_005);
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
