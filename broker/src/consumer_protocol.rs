//! Kafka's "consumer" embedded protocol: the `ConsumerProtocolAssignment` bytes that classic
//! group members exchange through SyncGroup and that DescribeGroups reports.
//!
//! ```text
//! version: i16
//! assigned_partitions: [topic: string (i16 length), partitions: [i32]]   (i32 counts)
//! user_data: nullable bytes (i32 length, -1 = null)
//! ```
//! Every version so far (0..=3) has this layout; newer versions may only append fields, so the
//! decoder reads what it knows and ignores the rest, as Kafka's own clients do.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A decoded assignment: partitions per topic (in the order they were encoded) and user data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    /// `(topic, partitions)` pairs.
    pub partitions: Vec<(String, Vec<i32>)>,
    /// Opaque assignor data (sticky assignors keep their generation here).
    pub user_data: Option<Bytes>,
}

/// Why assignment bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a consumer protocol assignment: {0}")]
pub struct DecodeError(String);

fn need(buf: &[u8], n: usize, what: &str) -> Result<(), DecodeError> {
    if buf.remaining() < n {
        return Err(DecodeError(format!(
            "truncated {what} ({} bytes left, {n} needed)",
            buf.remaining()
        )));
    }
    Ok(())
}

fn count(buf: &mut &[u8], what: &str) -> Result<usize, DecodeError> {
    need(buf, 4, what)?;
    let n = buf.get_i32();
    if n < 0 {
        // A null array: only legal for nullable fields, none of which we read as arrays.
        return Err(DecodeError(format!("negative {what} count {n}")));
    }
    Ok(n as usize)
}

/// Decodes `ConsumerProtocolAssignment` bytes. Empty input is an empty assignment (some
/// clients send nothing to a member without partitions).
pub fn decode_assignment(bytes: &[u8]) -> Result<Assignment, DecodeError> {
    if bytes.is_empty() {
        return Ok(Assignment::default());
    }
    let mut buf = bytes;
    need(buf, 2, "version")?;
    let version = buf.get_i16();
    if version < 0 {
        return Err(DecodeError(format!("negative version {version}")));
    }
    let topics = count(&mut buf, "topic")?;
    let mut partitions = Vec::with_capacity(topics.min(1024));
    for _ in 0..topics {
        need(buf, 2, "topic name length")?;
        let len = buf.get_i16();
        if len < 0 {
            return Err(DecodeError("null topic name".into()));
        }
        let len = len as usize;
        need(buf, len, "topic name")?;
        let topic = std::str::from_utf8(&buf[..len])
            .map_err(|_| DecodeError("topic name is not UTF-8".into()))?
            .to_string();
        buf.advance(len);
        let n = count(&mut buf, "partition")?;
        need(buf, n.saturating_mul(4), "partitions")?;
        let mut ps = Vec::with_capacity(n);
        for _ in 0..n {
            ps.push(buf.get_i32());
        }
        partitions.push((topic, ps));
    }
    // user_data: absent in truncated encodings some clients produce; treat as null.
    let user_data = if buf.remaining() >= 4 {
        let len = buf.get_i32();
        if len < 0 {
            None
        } else {
            let len = len as usize;
            need(buf, len, "user data")?;
            Some(Bytes::copy_from_slice(&buf[..len]))
        }
    } else {
        None
    };
    Ok(Assignment {
        partitions,
        user_data,
    })
}

/// Encodes an assignment (version 0, readable by every client), grouping partitions by topic.
pub fn encode_assignment<'a>(
    partitions: impl IntoIterator<Item = (&'a str, i32)>,
    user_data: Option<&[u8]>,
) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, p) in partitions {
        by_topic.entry(topic).or_default().push(p);
    }
    let mut out = BytesMut::new();
    out.put_i16(0);
    out.put_i32(by_topic.len() as i32);
    for (topic, mut ps) in by_topic {
        ps.sort_unstable();
        ps.dedup();
        let name = topic.as_bytes();
        out.put_i16(name.len().min(i16::MAX as usize) as i16);
        out.put_slice(&name[..name.len().min(i16::MAX as usize)]);
        out.put_i32(ps.len() as i32);
        for p in ps {
            out.put_i32(p);
        }
    }
    match user_data {
        Some(d) => {
            out.put_i32(d.len() as i32);
            out.put_slice(d);
        }
        None => out.put_i32(-1),
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_protocol_assignment::{
        ConsumerProtocolAssignment, TopicPartition,
    };
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn kafka_encoded(version: i16, user_data: Option<&'static [u8]>) -> Bytes {
        let mut a = ConsumerProtocolAssignment::default();
        let mut t1 = TopicPartition::default();
        t1.topic = TopicName(StrBytes::from_static_str("orders"));
        t1.partitions = vec![0, 2];
        let mut t2 = TopicPartition::default();
        t2.topic = TopicName(StrBytes::from_static_str("payments"));
        t2.partitions = vec![1];
        a.assigned_partitions = vec![t1, t2];
        a.user_data = user_data.map(Bytes::from_static);
        let mut out = BytesMut::new();
        out.put_i16(version);
        a.encode(&mut out, version).expect("encode");
        out.freeze()
    }

    #[test]
    fn decodes_what_kafka_encodes_in_every_version() {
        for version in 0..=3 {
            for user_data in [None, Some(&b"sticky"[..])] {
                let bytes = kafka_encoded(version, user_data);
                let a = decode_assignment(&bytes).expect("decode");
                assert_eq!(
                    a.partitions,
                    vec![
                        ("orders".to_string(), vec![0, 2]),
                        ("payments".to_string(), vec![1])
                    ],
                    "v{version}"
                );
                assert_eq!(a.user_data.as_deref(), user_data, "v{version}");
            }
        }
    }

    #[test]
    fn round_trips_and_groups_by_topic() {
        let bytes = encode_assignment([("b", 1), ("a", 3), ("b", 0), ("a", 3)], Some(b"x"));
        let a = decode_assignment(&bytes).expect("decode");
        assert_eq!(
            a.partitions,
            vec![("a".to_string(), vec![3]), ("b".to_string(), vec![0, 1])]
        );
        assert_eq!(a.user_data.as_deref(), Some(&b"x"[..]));
        // Same bytes as Kafka's own encoder.
        let mut k = ConsumerProtocolAssignment::default();
        for (t, ps) in &a.partitions {
            let mut tp = TopicPartition::default();
            tp.topic = TopicName(StrBytes::from_string(t.clone()));
            tp.partitions = ps.clone();
            k.assigned_partitions.push(tp);
        }
        k.user_data = Some(Bytes::from_static(b"x"));
        let mut out = BytesMut::new();
        out.put_i16(0);
        k.encode(&mut out, 0).expect("encode");
        assert_eq!(bytes, out.freeze());
    }

    #[test]
    fn empty_and_future_versions() {
        assert_eq!(
            decode_assignment(&[]).expect("empty"),
            Assignment::default()
        );
        // A future version with an extra trailing field still decodes.
        let mut bytes = BytesMut::from(&kafka_encoded(3, None)[..]);
        bytes[1] = 9;
        bytes.put_i32(42);
        let a = decode_assignment(&bytes).expect("future version");
        assert_eq!(a.partitions.len(), 2);
        // Without user data at all (truncated encoders).
        let a = decode_assignment(&[0, 0, 0, 0, 0, 0]).expect("no user data");
        assert!(a.partitions.is_empty() && a.user_data.is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[0u8][..],
            &[0, 0, 0, 0, 0, 1][..],
            &[0, 0, 0, 0, 0, 1, 0, 5, b'a'][..],
            &[0, 0, 0xff, 0xff, 0xff, 0xff][..],
            &[0xff, 0xff, 0, 0, 0, 0][..],
            &[0, 0, 0, 0, 0, 1, 0, 1, b'a', 0x7f, 0xff, 0xff, 0xff][..],
        ] {
            assert!(decode_assignment(bad).is_err(), "{bad:?}");
        }
    }
}
