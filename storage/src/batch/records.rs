//! Whole records: decoding every field of the records in stored or fetched batches (compressed
//! ones too), and the record type the encoder ([`super::BatchBuilder`]) takes.
//!
//! ```text
//!  bytes (one or more v2 batches) ──▶ header + CRC check ──▶ codec: slice, or a bounded
//!                                                          decompressing stream
//!                                     ──▶ record walker ──▶ DecodedBatch { header facts,
//!                                                                        records: [Record] }
//! ```
//!
//! Everything that reads records below the broker (the group coordinators reading
//! `__consumer_offsets`, native consumers, tools) decodes here; everything that writes its own
//! batches builds them with [`super::BatchBuilder`]. Nothing is allocated from a size or
//! count taken from the batch: a field grows as its bytes arrive, and decompressed output is
//! capped at `records_bytes_max` per batch.

use bytes::Bytes;

use super::{
    compression, corrupt, io_why, read_varint, BatchHeader, Compression, SliceSource, Source,
    TimestampType, HEADER_LEN,
};
use crate::{Result, StorageError};

/// One record header (Kafka's `Header`: a string key and a nullable value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    /// Header key (UTF-8 as Kafka requires; kept as bytes, not checked).
    pub key: Bytes,
    /// Header value; `None` when null.
    pub value: Option<Bytes>,
}

/// One record with every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset (base offset + offset delta).
    pub offset: i64,
    /// Timestamp (ms): the record's own, or the batch's max timestamp in a `LogAppendTime`
    /// batch (where Kafka clients report the append time for every record).
    pub timestamp_ms: i64,
    /// Key; `None` when null.
    pub key: Option<Bytes>,
    /// Value; `None` when null (a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<RecordHeader>,
}

/// One decoded batch: the header facts a consumer needs, and its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    /// The batch header as stored.
    pub header: BatchHeader,
    /// How the timestamps were set.
    pub timestamp_type: TimestampType,
    /// Records, in offset order (for a control batch, the control records).
    pub records: Vec<Record>,
}

impl DecodedBatch {
    /// True for a batch of transaction markers (commit/abort), not data.
    pub fn is_control(&self) -> bool {
        self.header.is_control()
    }

    /// True for a batch written inside a transaction.
    pub fn is_transactional(&self) -> bool {
        self.header.is_transactional()
    }
}

/// Decodes every batch in `buf` (one or more concatenated v2 batches, as a log read or a
/// fetch response carries them). Each batch's CRC is checked and compressed batches are
/// decompressed with at most `records_bytes_max` bytes of output each. A batch cut off at the
/// end of `buf` ends the decoding (a fetch may end with a partial batch); any other defect is
/// [`StorageError::CorruptBatch`] (or the unsupported magic / codec error).
pub fn decode_batches(mut buf: &[u8], records_bytes_max: u64) -> Result<Vec<DecodedBatch>> {
    let mut out = Vec::new();
    while buf.len() >= HEADER_LEN {
        let h = BatchHeader::parse(buf)?;
        let total = h.total_len();
        if total > buf.len() {
            break;
        }
        let batch = &buf[..total];
        buf = &buf[total..];
        out.push(decode_batch(&h, batch, records_bytes_max)?);
    }
    Ok(out)
}

fn decode_batch(h: &BatchHeader, batch: &[u8], records_bytes_max: u64) -> Result<DecodedBatch> {
    let crc = super::compute_crc(batch);
    if crc != h.crc {
        return Err(corrupt(format!(
            "batch at offset {}: CRC {:#010x} does not match the header's {:#010x}",
            h.base_offset, crc, h.crc
        )));
    }
    let codec = Compression::from_id(h.compression())
        .ok_or(StorageError::UnsupportedCompression(h.compression()))?;
    let timestamp_type = if h.is_log_append_time() {
        TimestampType::LogAppendTime
    } else {
        TimestampType::CreateTime
    };
    let section = batch.get(HEADER_LEN..).unwrap_or_default();
    let count = usize::try_from(h.records_count).unwrap_or(0);
    let mut records = Vec::with_capacity(count.min(1024));
    let mut read = |src: &mut dyn Source| -> std::result::Result<(), String> {
        for i in 0..count {
            let mut r = read_record(src).map_err(|e| format!("record {i}: {e}"))?;
            r.offset += h.base_offset;
            r.timestamp_ms = match timestamp_type {
                TimestampType::LogAppendTime => h.max_timestamp,
                TimestampType::CreateTime => h.base_timestamp.saturating_add(r.timestamp_ms),
            };
            records.push(r);
        }
        Ok(())
    };
    let result = match codec {
        Compression::None => read(&mut SliceSource {
            buf: section,
            at: 0,
        }),
        _ => compression::decompressor(codec, section, records_bytes_max)
            .map_err(io_why)
            .and_then(|r| read(&mut super::StreamSource { r, pos: 0 })),
    };
    result.map_err(|why| corrupt(format!("batch at offset {}: {why}", h.base_offset)))?;
    Ok(DecodedBatch {
        header: *h,
        timestamp_type,
        records,
    })
}

/// Reads one record; `offset` and `timestamp_ms` come back as the deltas.
fn read_record(src: &mut dyn Source) -> std::result::Result<Record, String> {
    let len = read_varint(src)?;
    let len = u64::try_from(len)
        .ok()
        .filter(|l| *l > 0)
        .ok_or_else(|| format!("length {len}"))?;
    let end = src.pos().saturating_add(len);
    src.byte()?; // attributes: unused in v2
    let timestamp_delta = read_varint(src)?;
    let offset_delta = read_varint(src)?;
    let key = read_field(src, end, "key")?;
    let value = read_field(src, end, "value")?;
    let n = read_varint(src)?;
    // Each header takes at least two bytes: a larger count cannot fit in the record.
    if n < 0 || n as u64 > end.saturating_sub(src.pos()) {
        return Err(format!("{n} headers"));
    }
    let mut headers = Vec::new();
    for _ in 0..n {
        let key = read_field(src, end, "header key")?.ok_or("a null header key")?;
        let value = read_field(src, end, "header value")?;
        headers.push(RecordHeader { key, value });
    }
    if src.pos() != end {
        return Err(format!(
            "its fields end at byte {}, its length says {end}",
            src.pos()
        ));
    }
    Ok(Record {
        offset: offset_delta,
        timestamp_ms: timestamp_delta,
        key,
        value,
        headers,
    })
}

/// A length-prefixed field (-1 = null) that must end by `end`.
fn read_field(
    src: &mut dyn Source,
    end: u64,
    what: &str,
) -> std::result::Result<Option<Bytes>, String> {
    let len = read_varint(src)?;
    if len == -1 {
        return Ok(None);
    }
    let len = u64::try_from(len).map_err(|_| format!("{what} length {len} is negative"))?;
    if len > end.saturating_sub(src.pos()) {
        return Err(format!("{what} of {len} bytes runs past its record"));
    }
    Ok(Some(Bytes::from(src.take(len)?)))
}

#[cfg(test)]
mod tests {
    use super::super::{BatchBuilder, Compression};
    use super::*;

    const T: i64 = 1_700_000_000_000;

    fn sample(codec: Compression) -> Vec<u8> {
        let mut b = BatchBuilder::new(T)
            .compression(codec)
            .producer(7, 1, 10)
            .offsets(100, 3);
        b.push_record(
            T,
            Some(b"k1"),
            Some(b"v1"),
            &[(b"h".as_slice(), Some(b"x".as_slice())), (b"n", None)],
        );
        b.push(T + 5, None, None);
        b.push(T + 2, Some(b""), Some(&[0u8; 3000]));
        b.build()
    }

    #[test]
    fn every_field_round_trips_in_every_codec() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut bytes = sample(codec);
            bytes.extend(
                BatchBuilder::new(T)
                    .offsets(103, 3)
                    .record(T, None, Some(b"z"))
                    .build(),
            );
            let batches = decode_batches(&bytes, 1 << 20).expect("decode");
            assert_eq!(batches.len(), 2, "{codec:?}");
            let b = &batches[0];
            assert_eq!(
                (
                    b.header.producer_id,
                    b.header.producer_epoch,
                    b.header.base_sequence
                ),
                (7, 1, 10)
            );
            assert!(!b.is_control() && !b.is_transactional());
            let r = &b.records;
            assert_eq!(r.len(), 3, "{codec:?}");
            assert_eq!((r[0].offset, r[1].offset, r[2].offset), (100, 101, 102));
            assert_eq!(r[0].key.as_deref(), Some(&b"k1"[..]));
            assert_eq!(r[0].value.as_deref(), Some(&b"v1"[..]));
            assert_eq!(
                r[0].headers,
                vec![
                    RecordHeader {
                        key: Bytes::from_static(b"h"),
                        value: Some(Bytes::from_static(b"x"))
                    },
                    RecordHeader {
                        key: Bytes::from_static(b"n"),
                        value: None
                    }
                ]
            );
            assert_eq!((r[1].key.clone(), r[1].value.clone()), (None, None));
            assert_eq!(r[1].timestamp_ms, T + 5);
            assert_eq!(r[2].key.as_deref(), Some(&b""[..]));
            assert_eq!(r[2].value.as_ref().map(Bytes::len), Some(3000));
            assert_eq!(batches[1].records[0].offset, 103);
        }
    }

    #[test]
    fn partial_tail_ends_and_defects_are_errors() {
        let whole = sample(Compression::None);
        let mut two = whole.clone();
        two.extend_from_slice(&whole[..whole.len() - 1]);
        assert_eq!(
            decode_batches(&two, 1 << 20).expect("partial tail").len(),
            1
        );
        // A flipped byte in the records fails the CRC.
        let mut bad = whole.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            decode_batches(&bad, 1 << 20),
            Err(StorageError::CorruptBatch(_))
        ));
        // More decompressed output than allowed.
        let zipped = sample(Compression::Gzip);
        assert!(decode_batches(&zipped, 100).is_err());
        // A batch claiming more records than it holds.
        let lying = BatchBuilder::new(T)
            .record(T, None, Some(b"a"))
            .declared_count(2)
            .build();
        assert!(decode_batches(&lying, 1 << 20).is_err());
    }

    #[test]
    fn log_append_time_batches_report_the_append_time() {
        let mut b = BatchBuilder::new(T).record(T, None, Some(b"a")).build();
        super::super::set_log_append_time(&mut b, T + 999).expect("patch");
        let d = decode_batches(&b, 1 << 20).expect("decode");
        assert_eq!(d[0].timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(d[0].records[0].timestamp_ms, T + 999);
    }

    type Field = Option<Vec<u8>>;
    type Header = (Vec<u8>, Field);

    fn field() -> impl proptest::strategy::Strategy<Value = Field> {
        proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..40))
    }

    proptest::proptest! {
        /// Whatever the builder encodes (any keys, values, headers, timestamps, codec), the
        /// decoder gives back, and every record validates as a client batch would.
        #[test]
        fn any_records_round_trip(
            codec in 0usize..5,
            records in proptest::collection::vec(
                (
                    -1_000i64..1_000,
                    field(),
                    field(),
                    proptest::collection::vec(
                        (proptest::collection::vec(proptest::num::u8::ANY, 0..8), field()),
                        0..3,
                    ),
                ),
                1..20,
            ),
        ) {
            let codecs = [
                Compression::None,
                Compression::Gzip,
                Compression::Snappy,
                Compression::Lz4,
                Compression::Zstd,
            ];
            let mut b = BatchBuilder::new(T).compression(codecs[codec]).offsets(50, 1);
            for (d, k, v, hs) in &records {
                let hs: Vec<(&[u8], Option<&[u8]>)> =
                    hs.iter().map(|(hk, hv)| (hk.as_slice(), hv.as_deref())).collect();
                b.push_record(T + d, k.as_deref(), v.as_deref(), &hs);
            }
            let decoded = decode_batches(&b.build(), 1 << 20).expect("decode");
            proptest::prop_assert_eq!(decoded.len(), 1);
            let got = &decoded[0].records;
            proptest::prop_assert_eq!(got.len(), records.len());
            for (i, (r, (d, k, v, hs))) in got.iter().zip(&records).enumerate() {
                proptest::prop_assert_eq!(r.offset, 50 + i as i64);
                proptest::prop_assert_eq!(r.timestamp_ms, T + d);
                proptest::prop_assert_eq!(r.key.as_deref(), k.as_deref());
                proptest::prop_assert_eq!(r.value.as_deref(), v.as_deref());
                let want: Vec<Header> = hs.clone();
                let have: Vec<Header> = r
                    .headers
                    .iter()
                    .map(|h| (h.key.to_vec(), h.value.as_ref().map(|v| v.to_vec())))
                    .collect();
                proptest::prop_assert_eq!(have, want);
            }
        }
    }
}
