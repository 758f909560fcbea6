//! Kafka's "consumer" embedded protocol: the `ConsumerProtocolSubscription` and
//! `ConsumerProtocolAssignment` bytes that classic group members exchange through JoinGroup and
//! SyncGroup, and that DescribeGroups reports. The coordinators read them (which topics a
//! group consumes, what each member holds); the broker's handlers and CLI, and native clients,
//! read and write them here too: this is the one codec.
//!
//! ```text
//! subscription: version: i16
//!               topics: [string (i16 length)]                        (i32 counts)
//!               user_data: nullable bytes (i32 length, -1 = null)
//!               v1+: owned_partitions: [topic, [i32]]; v2+: generation_id: i32; v3+: rack_id
//! assignment:   version: i16
//!               assigned_partitions: [topic: string (i16 length), partitions: [i32]]
//!               user_data: nullable bytes (i32 length, -1 = null)
//! ```
//! Every version so far (0..=3) starts with these fields; newer versions may only append
//! fields, so the decoders read what they need and ignore the rest, as Kafka's own clients do.
//! The layout is Kafka's, but it is group-membership data that never touches the log, so it
//! lives with the group coordinators rather than in `broker`'s wire layer.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::types::GroupTopicPartition;

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
        let topic = string(&mut buf, "topic name")?;
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
        put_string(&mut out, topic);
        out.put_i32(ps.len() as i32);
        for p in ps {
            out.put_i32(p);
        }
    }
    put_bytes(&mut out, user_data);
    out.freeze()
}

/// A decoded subscription: the topics a member asks for and its assignor's user data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    /// Subscribed topic names, as encoded.
    pub topics: Vec<String>,
    /// Opaque assignor data; `None` when null or absent.
    pub user_data: Option<Bytes>,
}

fn string(buf: &mut &[u8], what: &str) -> Result<String, DecodeError> {
    need(buf, 2, what)?;
    let len = buf.get_i16();
    if len < 0 {
        return Err(DecodeError(format!("null {what}")));
    }
    let len = len as usize;
    need(buf, len, what)?;
    let s = std::str::from_utf8(&buf[..len])
        .map_err(|_| DecodeError(format!("{what} is not UTF-8")))?
        .to_string();
    buf.advance(len);
    Ok(s)
}

/// Decodes `ConsumerProtocolSubscription` bytes. The topics must be well formed; user data
/// that is missing or cut short is read as null (only the assignor that wrote it uses it).
pub fn decode_subscription(bytes: &[u8]) -> Result<Subscription, DecodeError> {
    let mut buf = bytes;
    need(buf, 2, "version")?;
    let version = buf.get_i16();
    if version < 0 {
        return Err(DecodeError(format!("negative version {version}")));
    }
    let n = count(&mut buf, "topic")?;
    let mut topics = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        topics.push(string(&mut buf, "topic name")?);
    }
    let user_data = if buf.remaining() >= 4 {
        let len = buf.get_i32();
        usize::try_from(len)
            .ok()
            .filter(|l| buf.remaining() >= *l)
            .map(|l| Bytes::copy_from_slice(&buf[..l]))
    } else {
        None
    };
    Ok(Subscription { topics, user_data })
}

/// Encodes a subscription (version 0, readable by every client).
pub fn encode_subscription<'a>(
    topics: impl IntoIterator<Item = &'a str>,
    user_data: Option<&[u8]>,
) -> Bytes {
    let topics: Vec<&str> = topics.into_iter().collect();
    let mut out = BytesMut::new();
    out.put_i16(0);
    out.put_i32(topics.len() as i32);
    for topic in topics {
        put_string(&mut out, topic);
    }
    put_bytes(&mut out, user_data);
    out.freeze()
}

fn put_string(out: &mut BytesMut, s: &str) {
    // Topic names are at most 249 bytes; the cap only keeps a bad one from wrapping.
    let name = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    out.put_i16(name.len() as i16);
    out.put_slice(name);
}

fn put_bytes(out: &mut BytesMut, d: Option<&[u8]>) {
    match d {
        Some(d) => {
            out.put_i32(d.len() as i32);
            out.put_slice(d);
        }
        None => out.put_i32(-1),
    }
}

impl Assignment {
    /// The assigned partitions, one entry per partition.
    pub fn topic_partitions(&self) -> Vec<GroupTopicPartition> {
        self.partitions
            .iter()
            .flat_map(|(topic, ps)| {
                ps.iter().map(|p| GroupTopicPartition {
                    topic: topic.clone(),
                    partition: *p,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_round_trips_and_tolerates_short_user_data() {
        let bytes = encode_subscription(["orders", "payments"], Some(b"u"));
        let s = decode_subscription(&bytes).expect("decode");
        assert_eq!(s.topics, vec!["orders", "payments"]);
        assert_eq!(s.user_data.as_deref(), Some(&b"u"[..]));
        // Version 1+ fields after the user data are ignored; user data cut short is null.
        let mut longer = BytesMut::from(&bytes[..]);
        longer.put_i32(0);
        assert_eq!(decode_subscription(&longer).expect("v1").topics.len(), 2);
        let cut = &bytes[..bytes.len() - 1];
        let s = decode_subscription(cut).expect("cut user data");
        assert_eq!((s.topics.len(), s.user_data), (2, None));
        for bad in [
            &[0u8][..],
            &[0, 0, 0, 0, 0, 1, 0, 5, b'a'][..],
            &[0xff, 0xff, 0, 0, 0, 0][..],
        ] {
            assert!(decode_subscription(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn assignment_flattens_to_topic_partitions() {
        let a = decode_assignment(&encode_assignment([("b", 1), ("a", 0)], None)).expect("decode");
        let tps: Vec<(String, i32)> = a
            .topic_partitions()
            .into_iter()
            .map(|tp| (tp.topic, tp.partition))
            .collect();
        assert_eq!(tps, vec![("a".into(), 0), ("b".into(), 1)]);
    }
}
