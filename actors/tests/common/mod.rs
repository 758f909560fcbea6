//! Helpers shared by the actor tests.

use bytes::{BufMut, Bytes, BytesMut};

fn varint(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

/// A valid record batch (format v2) holding one record with `value`.
pub(crate) fn batch(value: &[u8]) -> Bytes {
    let mut rec = BytesMut::new();
    rec.put_i8(0); // attributes
    varint(&mut rec, 0); // timestamp delta
    varint(&mut rec, 0); // offset delta
    varint(&mut rec, -1); // null key
    varint(&mut rec, value.len() as i64);
    rec.put_slice(value);
    varint(&mut rec, 0); // no headers
    let mut records = BytesMut::new();
    varint(&mut records, rec.len() as i64);
    records.put_slice(&rec);

    let mut body = BytesMut::new(); // from attributes on: the CRC-32C covers this
    body.put_i16(0);
    body.put_i32(0); // last offset delta
    body.put_i64(1_700_000_000_000);
    body.put_i64(1_700_000_000_000);
    body.put_i64(-1); // producer id
    body.put_i16(-1);
    body.put_i32(-1);
    body.put_i32(1); // records
    body.put_slice(&records);

    let mut b = BytesMut::new();
    b.put_i64(0);
    b.put_i32((4 + 1 + 4 + body.len()) as i32);
    b.put_i32(0);
    b.put_i8(2);
    b.put_u32(crc32c::crc32c(&body));
    b.put_slice(&body);
    b.freeze()
}
