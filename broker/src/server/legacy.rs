//! Answers for old clients whose requests the protocol crate cannot decode.
//!
//! Produce v0-v2 (clients from before Kafka 0.11, or sarama set to such a version) carry magic
//! v0/v1 message sets, which Rivulet never stores. Kafka 4.0 closes the connection; the client
//! then sees EOF and retries forever. Their layout is small and fixed, so this module reads
//! just enough of one to answer every partition with UNSUPPORTED_FOR_MESSAGE_FORMAT, which
//! clients report as a clear, non-retriable error. Nothing else is decoded here.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::errors::code;

/// The versions this module answers.
pub const PRODUCE_VERSIONS: std::ops::RangeInclusive<i16> = 0..=2;

fn string(buf: &mut Bytes) -> Option<Bytes> {
    if buf.remaining() < 2 {
        return None;
    }
    let n = usize::try_from(buf.get_i16()).ok()?;
    (buf.remaining() >= n).then(|| buf.split_to(n))
}

fn count(buf: &mut Bytes) -> Option<usize> {
    if buf.remaining() < 4 {
        return None;
    }
    // Every element takes at least one byte: a larger count is malformed (and must not size
    // an allocation).
    let n = usize::try_from(buf.get_i32()).ok()?;
    (n <= buf.remaining()).then_some(n)
}

/// Topic names with their partition indexes.
type Partitions = Vec<(Bytes, Vec<i32>)>;

/// The topics and partitions of a Produce v0-v2 body (after the request header), with acks;
/// `None` if it is malformed.
fn read_produce(mut body: Bytes) -> Option<(i16, Partitions)> {
    if body.remaining() < 6 {
        return None;
    }
    let acks = body.get_i16();
    let _timeout_ms = body.get_i32();
    let mut topics = Vec::new();
    for _ in 0..count(&mut body)? {
        let name = string(&mut body)?;
        let mut partitions = Vec::new();
        for _ in 0..count(&mut body)? {
            if body.remaining() < 8 {
                return None;
            }
            partitions.push(body.get_i32());
            let set_len = usize::try_from(body.get_i32()).ok()?;
            if body.remaining() < set_len {
                return None;
            }
            body.advance(set_len);
        }
        topics.push((name, partitions));
    }
    Some((acks, topics))
}

/// The response body (without header) refusing every partition of a Produce v0-v2 `body`:
/// `Ok(None)` for acks=0 (no response is due), `Err(())` if the body is malformed.
#[allow(clippy::result_unit_err)]
pub fn refuse_produce(version: i16, body: Bytes) -> Result<Option<BytesMut>, ()> {
    let (acks, topics) = read_produce(body).ok_or(())?;
    if acks == 0 {
        return Ok(None);
    }
    let mut out = BytesMut::new();
    out.put_i32(i32::try_from(topics.len()).map_err(|_| ())?);
    for (name, partitions) in topics {
        out.put_i16(i16::try_from(name.len()).map_err(|_| ())?);
        out.put_slice(&name);
        out.put_i32(i32::try_from(partitions.len()).map_err(|_| ())?);
        for p in partitions {
            out.put_i32(p);
            out.put_i16(code::UNSUPPORTED_FOR_MESSAGE_FORMAT);
            out.put_i64(-1); // base offset
            if version >= 2 {
                out.put_i64(-1); // log append time
            }
        }
    }
    if version >= 1 {
        out.put_i32(0); // throttle time
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(acks: i16) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(acks);
        b.put_i32(1000);
        b.put_i32(1);
        b.put_i16(1);
        b.put_slice(b"t");
        b.put_i32(1);
        b.put_i32(3);
        b.put_i32(2);
        b.put_slice(&[0, 1]);
        b.freeze()
    }

    #[test]
    fn every_partition_is_refused_with_unsupported_for_message_format() {
        let out = refuse_produce(2, body(1)).unwrap().unwrap();
        let mut expected = BytesMut::new();
        expected.put_i32(1);
        expected.put_i16(1);
        expected.put_slice(b"t");
        expected.put_i32(1);
        expected.put_i32(3);
        expected.put_i16(code::UNSUPPORTED_FOR_MESSAGE_FORMAT);
        expected.put_i64(-1);
        expected.put_i64(-1);
        expected.put_i32(0);
        assert_eq!(out, expected);
        assert_eq!(refuse_produce(0, body(0)).unwrap(), None, "acks=0");
        let truncated = body(1).slice(..12);
        assert!(refuse_produce(1, truncated).is_err());
        let mut huge = BytesMut::from(&body(1)[..6]);
        huge.put_i32(i32::MAX);
        assert!(refuse_produce(1, huge.freeze()).is_err());
    }
}
