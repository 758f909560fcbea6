//! Whole records in and out of v2 batches, for clients inside the process (the native
//! producer and consumer): encoding a batch of records with headers and an optional codec,
//! and decoding stored batches back into records, compressed ones included.
//!
//! Decoding allocates in proportion to the input (and, for compressed batches, to at most
//! `records_bytes_max` of output), never to a length or count a batch claims.

use std::io::Read;

use super::compression::{compress, decompressor, Compression};
use super::{
    compute_crc, corrupt, put_varlong, read_varint, BatchHeader, SliceSource, Source, CRC_AT,
    HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, NO_PRODUCER_ID, NO_SEQUENCE,
};
use crate::Result;

/// One record as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Absolute offset (base offset + offset delta); 0-based position before the leader
    /// assigned offsets.
    pub offset: i64,
    /// Timestamp (ms): the producer's, or the leader's for `LogAppendTime` topics.
    pub timestamp: i64,
    /// Key, `None` when null.
    pub key: Option<Vec<u8>>,
    /// Value, `None` when null (a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers in order; a header value may be null.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Who produced a batch, for idempotent producers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the batch's first record.
    pub base_sequence: i32,
}

/// Encodes `records` as one v2 batch (base offset 0; the leader assigns offsets). Each
/// record's `offset` field is ignored: offset deltas are the records' positions. The first
/// record's timestamp is the batch's base timestamp. An empty slice is a programming error.
pub fn encode_batch(
    records: &[Record],
    codec: Compression,
    producer: Option<ProducerStamp>,
) -> Vec<u8> {
    assert!(
        !records.is_empty(),
        "a record batch holds at least one record"
    );
    let base_timestamp = records[0].timestamp;
    let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
    let mut body = Vec::new();
    let mut rec = Vec::new();
    for (i, r) in records.iter().enumerate() {
        rec.clear();
        rec.push(0); // attributes
        put_varlong(&mut rec, r.timestamp - base_timestamp);
        put_varlong(&mut rec, i as i64);
        put_bytes(&mut rec, r.key.as_deref());
        put_bytes(&mut rec, r.value.as_deref());
        put_varlong(&mut rec, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_bytes(&mut rec, Some(k.as_bytes()));
            put_bytes(&mut rec, v.as_deref());
        }
        put_varlong(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let payload = match codec {
        Compression::None => body,
        _ => compress(codec, &body),
    };
    let count = records.len() as i32;
    let (producer_id, producer_epoch, base_sequence) = match producer {
        Some(p) => (p.producer_id, p.producer_epoch, p.base_sequence),
        None => (NO_PRODUCER_ID, -1, NO_SEQUENCE),
    };
    let total = HEADER_LEN + payload.len();
    let mut b = Vec::with_capacity(total);
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((total - LOG_OVERHEAD) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&0u32.to_be_bytes()); // CRC, below
    b.extend_from_slice(&i16::from(codec.id()).to_be_bytes());
    b.extend_from_slice(&(count - 1).to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&max_timestamp.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&base_sequence.to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(&payload);
    debug_assert_eq!(b.len(), total);
    let crc = compute_crc(&b);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

fn put_bytes(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        Some(bytes) => {
            put_varlong(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
        None => put_varlong(out, -1),
    }
}

/// Decodes the records of concatenated stored batches (as a fetch returns them), skipping
/// control batches and records below `from_offset`. A compressed batch may decompress to at
/// most `records_bytes_max` bytes. A batch cut off at the end of `buf` ends the decoding (a
/// read may return a partial last batch).
pub fn decode_batches(buf: &[u8], from_offset: i64, records_bytes_max: u64) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= HEADER_LEN {
        let h = BatchHeader::parse(rest)?;
        let total = h.total_len();
        if total > rest.len() {
            break;
        }
        let batch = &rest[..total];
        rest = &rest[total..];
        if h.is_control() || h.last_offset() < from_offset {
            continue;
        }
        let codec = Compression::from_id(h.compression()).ok_or_else(|| {
            corrupt(format!(
                "batch at offset {} has unknown codec {}",
                h.base_offset,
                h.compression()
            ))
        })?;
        let records = &batch[HEADER_LEN..];
        let plain;
        let body: &[u8] = match codec {
            Compression::None => records,
            _ => {
                let mut r = decompressor(codec, records, records_bytes_max)
                    .map_err(|e| corrupt(format!("batch at offset {}: {e}", h.base_offset)))?;
                let mut v = Vec::new();
                r.read_to_end(&mut v)
                    .map_err(|e| corrupt(format!("batch at offset {}: {e}", h.base_offset)))?;
                plain = v;
                &plain
            }
        };
        let mut src = SliceSource { buf: body, at: 0 };
        for _ in 0..h.records_count {
            let r = decode_one(&mut src, &h)
                .map_err(|e| corrupt(format!("batch at offset {}: {e}", h.base_offset)))?;
            if r.offset >= from_offset {
                out.push(r);
            }
        }
    }
    Ok(out)
}

fn take(
    src: &mut SliceSource<'_>,
    end: usize,
    what: &str,
) -> std::result::Result<Option<Vec<u8>>, String> {
    let len = read_varint(src)?;
    if len < 0 {
        return Ok(None);
    }
    let start = src.at;
    let stop = usize::try_from(len)
        .ok()
        .and_then(|l| start.checked_add(l))
        .filter(|s| *s <= end)
        .ok_or_else(|| format!("{what} of {len} bytes runs past its record"))?;
    src.at = stop;
    Ok(Some(src.buf[start..stop].to_vec()))
}

fn decode_one(src: &mut SliceSource<'_>, h: &BatchHeader) -> std::result::Result<Record, String> {
    let len = read_varint(src)?;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| src.at.checked_add(l))
        .filter(|e| *e <= src.buf.len())
        .ok_or_else(|| format!("record of {len} bytes runs past its batch"))?;
    src.byte()?; // attributes
    let ts_delta = read_varint(src)?;
    let offset_delta = read_varint(src)?;
    let key = take(src, end, "key")?;
    let value = take(src, end, "value")?;
    let count = read_varint(src)?;
    // A header takes at least two bytes: a larger count cannot fit.
    if count < 0 || count as usize > end.saturating_sub(src.pos() as usize) {
        return Err(format!("record claims {count} headers"));
    }
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let k = take(src, end, "header key")?.ok_or("null header key")?;
        let v = take(src, end, "header value")?;
        headers.push((String::from_utf8_lossy(&k).into_owned(), v));
    }
    src.at = end;
    let timestamp = if h.is_log_append_time() {
        h.max_timestamp
    } else {
        h.base_timestamp.saturating_add(ts_delta)
    };
    Ok(Record {
        offset: h.base_offset + offset_delta,
        timestamp,
        key,
        value,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::set_base_offset;

    fn rec(i: i64, key: Option<&str>) -> Record {
        Record {
            offset: 0,
            timestamp: 1_700_000_000_000 + i,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: Some(format!("value-{i}").into_bytes()),
            headers: vec![("h".into(), Some(b"v".to_vec())), ("null".into(), None)],
        }
    }

    #[test]
    fn batches_round_trip_with_every_codec() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let records: Vec<Record> = (0..5)
                .map(|i| rec(i, (i % 2 == 0).then_some("k")))
                .collect();
            let stamp = ProducerStamp {
                producer_id: 7,
                producer_epoch: 0,
                base_sequence: 3,
            };
            let mut batch = encode_batch(&records, codec, Some(stamp));
            set_base_offset(&mut batch, 100).unwrap();
            let h = BatchHeader::parse(&batch).unwrap();
            assert_eq!(compute_crc(&batch), h.crc, "{codec:?}");
            assert_eq!((h.producer_id, h.base_sequence, h.records_count), (7, 3, 5));
            let back = decode_batches(&batch, 102, 1 << 20).unwrap();
            let want: Vec<Record> = records[2..]
                .iter()
                .enumerate()
                .map(|(i, r)| Record {
                    offset: 102 + i as i64,
                    ..r.clone()
                })
                .collect();
            assert_eq!(back, want, "{codec:?}");
        }
    }

    #[test]
    fn a_cut_off_last_batch_ends_decoding() {
        let a = encode_batch(&[rec(0, None)], Compression::None, None);
        let mut b = encode_batch(&[rec(1, None)], Compression::None, None);
        set_base_offset(&mut b, 1).unwrap();
        let mut buf = a.clone();
        buf.extend_from_slice(&b[..b.len() - 3]);
        assert_eq!(decode_batches(&buf, 0, 1 << 20).unwrap().len(), 1);
    }
}
