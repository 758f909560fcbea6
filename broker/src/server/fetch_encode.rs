//! The Fetch response written around record bytes that stay in their segment files.
//!
//! kafka-protocol encodes a `FetchResponse` into one buffer, records included. Here every
//! field is still encoded by kafka-protocol, one level at a time with the level below left
//! empty, and only the list and records lengths are written by hand:
//!
//! ```text
//!  FetchResponse { responses: [] }   encoded ─▶ head | empty-array marker | tail
//!   └ FetchableTopicResponse { partitions: [] } ─▶ name/id | empty-array marker | tail
//!      └ PartitionData { records: None }        ─▶ fields | null marker | tagged fields
//!  out: head, n topics, (name, n partitions, (fields, records length, FILE REGIONS, tagged)*, tail)*, tail
//! ```
//! The marker is checked at the computed place, so a field this module does not know about
//! cannot go unnoticed; the unit tests compare the bytes with kafka-protocol's own encoding for
//! every Fetch version served. Tagged fields (diverging epoch, current leader, node endpoints)
//! and aborted transactions are kafka-protocol's to encode, as before.

use anyhow::{bail, Context};
use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::fetch_response::FetchResponse;
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::Encodable;
use rivulet_storage::RecordChunk;

use super::outgoing::Outgoing;

/// Encodes a framed Fetch response (size prefix, header, body). `files[i]` holds the records
/// of the i-th partition in response order (topics in order, their partitions in order): when
/// `Some`, the chunks are that partition's records (its `records` field must be empty); when
/// `None`, the partition's own `records` field is encoded as it is.
pub fn encode_fetch(
    correlation_id: i32,
    header_version: i16,
    version: i16,
    mut resp: FetchResponse,
    files: Vec<Option<Vec<RecordChunk>>>,
) -> anyhow::Result<Outgoing> {
    let compact = version >= 12;
    let mut w = Framer::default();
    w.buf.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header.encode(&mut w.buf, header_version)?;

    let topics = std::mem::take(&mut resp.responses);
    let mut shell = BytesMut::with_capacity(64);
    resp.encode(&mut shell, version)?;
    let head = 4 + if version >= 7 { 2 + 4 } else { 0 };
    let (before, after) = split_at_marker(&shell, head, &array_marker(0, compact), "response")?;
    w.buf.put_slice(before);
    put_array_len(&mut w.buf, topics.len(), compact)?;

    let mut files = files.into_iter();
    let mut topic_shell = BytesMut::with_capacity(64);
    let mut partition_shell = BytesMut::with_capacity(128);
    for mut topic in topics {
        let partitions = std::mem::take(&mut topic.partitions);
        topic_shell.clear();
        topic.encode(&mut topic_shell, version)?;
        let name_len = if version >= 13 {
            16
        } else if compact {
            varint_len(topic.topic.len() + 1) + topic.topic.len()
        } else {
            2 + topic.topic.len()
        };
        let (before, tail) =
            split_at_marker(&topic_shell, name_len, &array_marker(0, compact), "topic")?;
        w.buf.put_slice(before);
        put_array_len(&mut w.buf, partitions.len(), compact)?;
        for mut p in partitions {
            let chunks = files.next().context("fewer record lists than partitions")?;
            let Some(chunks) = chunks else {
                p.encode(&mut w.buf, version)?;
                continue;
            };
            // (`PartitionData::default()` holds empty records.)
            if p.records.take().is_some_and(|r| !r.is_empty()) {
                bail!(
                    "partition {} has both in-memory and file records",
                    p.partition_index
                );
            }
            partition_shell.clear();
            p.encode(&mut partition_shell, version)?;
            let mut fields = 4 + 2 + 8 + 8 + if version >= 5 { 8 } else { 0 };
            fields += match &p.aborted_transactions {
                None => {
                    if compact {
                        1
                    } else {
                        4
                    }
                }
                Some(list) => {
                    let mut n = if compact {
                        varint_len(list.len() + 1)
                    } else {
                        4
                    };
                    for a in list {
                        n += a.compute_size(version)?;
                    }
                    n
                }
            };
            if version >= 11 {
                fields += 4;
            }
            let null: &[u8] = if compact { &[0] } else { &[0xff; 4] };
            let (before, tail) = split_at_marker(&partition_shell, fields, null, "partition")?;
            w.buf.put_slice(before);
            let len: u64 = chunks.iter().map(RecordChunk::len).sum();
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l < i32::MAX as usize)
                .context("records of a partition exceed 2 GiB")?;
            if compact {
                put_varint(&mut w.buf, len + 1)?;
            } else {
                w.buf.put_i32(len as i32);
            }
            for c in chunks {
                w.push(c);
            }
            w.buf.put_slice(tail);
        }
        w.buf.put_slice(tail);
    }
    if files.next().is_some() {
        bail!("more record lists than partitions");
    }
    w.buf.put_slice(after);
    w.finish()
}

/// Framing bytes with record chunks to insert at given places.
#[derive(Default)]
struct Framer {
    buf: BytesMut,
    /// (position in `buf`, chunk to insert there), in order.
    inserts: Vec<(usize, RecordChunk)>,
}

impl Framer {
    fn push(&mut self, chunk: RecordChunk) {
        if !chunk.is_empty() {
            self.inserts.push((self.buf.len(), chunk));
        }
    }

    /// Patches the size prefix and cuts the framing at the insert points (no copy).
    fn finish(mut self) -> anyhow::Result<Outgoing> {
        let inserted: u64 = self.inserts.iter().map(|(_, c)| c.len()).sum();
        let size = (self.buf.len() as u64 - 4) + inserted;
        let size = i32::try_from(size).context("response larger than 2 GiB")?;
        self.buf[..4].copy_from_slice(&size.to_be_bytes());
        let framing = self.buf.freeze();
        let mut parts = Vec::with_capacity(self.inserts.len() * 2 + 1);
        let mut at = 0;
        for (pos, chunk) in self.inserts {
            if pos > at {
                parts.push(RecordChunk::Bytes(framing.slice(at..pos)));
            }
            parts.push(chunk);
            at = pos;
        }
        if at < framing.len() {
            parts.push(RecordChunk::Bytes(framing.slice(at..)));
        }
        Ok(Outgoing::from_parts(parts))
    }
}

/// `(encoded[..at], encoded[at + marker.len()..])`, after checking that `marker` lies at `at`.
fn split_at_marker<'a>(
    encoded: &'a [u8],
    at: usize,
    marker: &[u8],
    what: &str,
) -> anyhow::Result<(&'a [u8], &'a [u8])> {
    match encoded.get(at..at + marker.len()) {
        Some(m) if m == marker => Ok((&encoded[..at], &encoded[at + marker.len()..])),
        _ => bail!(
            "fetch {what} framing: expected {marker:?} at byte {at} of {} (a field this \
             encoder does not know about?)",
            encoded.len()
        ),
    }
}

/// An array's length as encoded: INT32 before v12, UNSIGNED_VARINT (n + 1) from v12.
fn array_marker(n: usize, compact: bool) -> Vec<u8> {
    let mut b = BytesMut::new();
    // A 0-length array always encodes.
    let _ = put_array_len(&mut b, n, compact);
    b.to_vec()
}

fn put_array_len(buf: &mut BytesMut, n: usize, compact: bool) -> anyhow::Result<()> {
    if compact {
        put_varint(buf, n + 1)
    } else {
        buf.put_i32(i32::try_from(n).context("array too long")?);
        Ok(())
    }
}

fn put_varint(buf: &mut BytesMut, n: usize) -> anyhow::Result<()> {
    let mut v = u32::try_from(n).context("length exceeds u32")?;
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
    Ok(())
}

fn varint_len(n: usize) -> usize {
    let mut len = 1;
    let mut v = n >> 7;
    while v > 0 {
        len += 1;
        v >>= 7;
    }
    len
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint,
        PartitionData,
    };
    use kafka_protocol::messages::{ApiKey, BrokerId, ProducerId, TopicName};
    use rivulet_storage::batch::BatchBuilder;
    use rivulet_storage::{
        Durability, LogConfig, PartitionId, PartitionLog, RegionRead, Store, StoreConfig,
    };

    use super::*;
    use crate::server::handlers::s;

    /// Two partitions' logs of one-record batches in small segments (several per read).
    fn logs(dir: &std::path::Path) -> (Store, Vec<PartitionLog>) {
        let store = Store::open(dir, StoreConfig::default()).unwrap();
        let cfg = LogConfig {
            segment_bytes_max: 300,
            durability: Durability::Os,
            ..LogConfig::default()
        };
        let logs = (0..2)
            .map(|partition| {
                let id = PartitionId {
                    topic_id: uuid::Uuid::from_u128(9),
                    partition,
                };
                let log = store.open_log(id, cfg.clone()).unwrap();
                for i in 0..10 {
                    let mut b = BatchBuilder::new(1_000 + i);
                    b.push(
                        1_000 + i,
                        Some(b"k".as_slice()),
                        Some(format!("p{partition} v{i}").as_bytes()),
                    );
                    log.append_as_leader(&b.build(), 0).unwrap();
                }
                assert!(log.segment_count() >= 3, "reads cross segments");
                log
            })
            .collect();
        (store, logs)
    }

    /// A response as a handler builds it: every case of partition the encoder must frame.
    fn response(version: i16, reads: &[RegionRead]) -> FetchResponse {
        let mut r = FetchResponse::default();
        r.throttle_time_ms = 3;
        if version >= 7 {
            r.session_id = 0;
            r.error_code = 0;
        }
        let partition = |index: i32, error_code: i16| {
            let mut p = PartitionData::default();
            p.partition_index = index;
            p.error_code = error_code;
            p.high_watermark = if error_code == 0 { 10 } else { -1 };
            p.last_stable_offset = p.high_watermark;
            if version >= 5 {
                p.log_start_offset = 0;
            }
            p.preferred_read_replica = BrokerId(-1);
            p.aborted_transactions = Some(Vec::new());
            p
        };
        let mut topics = Vec::new();
        for (ti, name) in ["orders", "a-much-longer-topic-name-of-some-length"]
            .iter()
            .enumerate()
        {
            let mut t = FetchableTopicResponse::default();
            if version >= 13 {
                t.topic_id = uuid::Uuid::from_u128(100 + ti as u128);
            } else {
                t.topic = TopicName(s(*name));
            }
            for (i, _) in reads.iter().enumerate() {
                t.partitions.push(partition(i as i32, 0));
            }
            // An error (no records), and an aborted transaction list.
            t.partitions.push(partition(7, 6));
            let mut p = partition(8, 0);
            let mut a = AbortedTransaction::default();
            a.producer_id = ProducerId(42);
            a.first_offset = 3;
            p.aborted_transactions = Some(vec![a]);
            t.partitions.push(p);
            let mut p = partition(9, 0);
            p.aborted_transactions = None;
            t.partitions.push(p);
            if version >= 12 {
                // Tagged fields, encoded by kafka-protocol around the records.
                let mut p = partition(10, 0);
                let mut d = EpochEndOffset::default();
                d.epoch = 4;
                d.end_offset = 17;
                p.diverging_epoch = d;
                let mut l = LeaderIdAndEpoch::default();
                l.leader_id = BrokerId(2);
                l.leader_epoch = 5;
                p.current_leader = l;
                t.partitions.push(p);
            }
            topics.push(t);
        }
        // A topic with many partitions (two-byte varint lengths from v12).
        let mut many = FetchableTopicResponse::default();
        many.topic = TopicName(s("many"));
        many.topic_id = uuid::Uuid::from_u128(7);
        if version < 13 {
            many.topic_id = uuid::Uuid::nil();
        } else {
            many.topic = TopicName::default();
        }
        for i in 0..200 {
            many.partitions.push(partition(i, 0));
        }
        topics.push(many);
        r.responses = topics;
        if version >= 16 {
            let mut n = NodeEndpoint::default();
            n.node_id = BrokerId(1);
            n.host = s("127.0.0.1");
            n.port = 9092;
            r.node_endpoints = vec![n];
        }
        r
    }

    /// The records each partition of `response` carries: the reads for the first partitions
    /// of the two named topics, empty for the rest.
    fn records_of(resp: &FetchResponse, reads: &[RegionRead]) -> Vec<RegionRead> {
        let mut out = Vec::new();
        for (ti, t) in resp.responses.iter().enumerate() {
            for (pi, p) in t.partitions.iter().enumerate() {
                let read = match reads.get(pi) {
                    Some(r) if ti < 2 && p.error_code == 0 => r.clone(),
                    _ => RegionRead::default(),
                };
                out.push(read);
            }
        }
        out
    }

    /// kafka-protocol's encoding of the same frame, records in memory.
    fn reference(version: i16, resp: &FetchResponse, records: &[RegionRead]) -> Vec<u8> {
        let mut resp = resp.clone();
        let mut it = records.iter();
        for t in &mut resp.responses {
            for p in &mut t.partitions {
                p.records = Some(it.next().unwrap().to_bytes().unwrap());
            }
        }
        let header_version = ApiKey::Fetch.response_header_version(version);
        let mut out = BytesMut::new();
        out.put_i32(0);
        let mut h = ResponseHeader::default();
        h.correlation_id = 77;
        h.encode(&mut out, header_version).unwrap();
        resp.encode(&mut out, version).unwrap();
        let len = (out.len() - 4) as i32;
        out[..4].copy_from_slice(&len.to_be_bytes());
        out.to_vec()
    }

    #[test]
    fn file_framed_fetch_responses_equal_kafka_protocols_encoding_in_every_version() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, logs) = logs(dir.path());
        // Partition 0 from its start (every segment), partition 1 from inside its log with a
        // high-watermark cut (some segments).
        let reads = vec![
            logs[0].read_regions(0, 1 << 20, i64::MAX).unwrap(),
            logs[1].read_regions(3, 1 << 20, 8).unwrap(),
        ];
        assert!(
            reads.iter().all(|r| r.chunks.len() >= 2),
            "regions from several segments"
        );
        let (min, max) = crate::server::versions::supported(ApiKey::Fetch).unwrap();
        for version in min..=max {
            let resp = response(version, &reads);
            let records = records_of(&resp, &reads);
            let expected = reference(version, &resp, &records);
            let files = records.iter().map(|r| Some(r.chunks.clone())).collect();
            let header_version = ApiKey::Fetch.response_header_version(version);
            let out = encode_fetch(77, header_version, version, resp, files).unwrap();
            let got = out.to_bytes().unwrap();
            assert_eq!(got.len(), expected.len(), "length, v{version}");
            assert!(got[..] == expected[..], "bytes differ in v{version}");
            assert_eq!(out.len(), expected.len() as u64);
            let region_bytes: u64 = reads.iter().map(|r| r.bytes).sum::<u64>() * 2;
            let files = out
                .parts()
                .iter()
                .filter(|p| matches!(p, RecordChunk::File(_)))
                .count();
            assert_eq!(
                files,
                reads.iter().map(|r| r.chunks.len()).sum::<usize>() * 2
            );
            // Only the framing is in memory.
            assert_eq!(
                out.memory_bytes() as u64 + region_bytes,
                out.len(),
                "v{version}"
            );
        }
    }

    #[test]
    fn responses_without_records_and_with_in_memory_records_match_too() {
        let (min, max) = crate::server::versions::supported(ApiKey::Fetch).unwrap();
        for version in min..=max {
            // The session error every full-fetch client may get: no topics at all.
            let mut r = FetchResponse::default();
            if version >= 7 {
                r.error_code = 70;
            }
            let expected = reference(version, &r, &[]);
            let out = encode_fetch(
                77,
                ApiKey::Fetch.response_header_version(version),
                version,
                r,
                vec![],
            )
            .unwrap();
            assert_eq!(out.to_bytes().unwrap().to_vec(), expected, "v{version}");
            // A partition whose records are in memory (`None` entry) is left to kafka-protocol.
            let mut r = response(version, &[]);
            let mut records = records_of(&r, &[]);
            let mut b = BatchBuilder::new(5);
            b.push(5, None, Some(b"in memory".as_slice()));
            let bytes = bytes::Bytes::from(b.build());
            r.responses[0].partitions[0].records = Some(bytes.clone());
            records[0] = RegionRead {
                chunks: vec![RecordChunk::Bytes(bytes)],
                ..RegionRead::default()
            };
            let expected = reference(version, &r, &records);
            let mut files: Vec<_> = records.iter().map(|r| Some(r.chunks.clone())).collect();
            files[0] = None;
            let out = encode_fetch(
                77,
                ApiKey::Fetch.response_header_version(version),
                version,
                r,
                files,
            )
            .unwrap();
            assert_eq!(out.to_bytes().unwrap().to_vec(), expected, "v{version}");
        }
    }

    #[test]
    fn mismatched_record_lists_are_refused() {
        let version = 17;
        let r = response(version, &[]);
        let n: usize = r.responses.iter().map(|t| t.partitions.len()).sum();
        let short = vec![Some(Vec::new()); n - 1];
        assert!(encode_fetch(1, 1, version, r.clone(), short).is_err());
        let long = vec![Some(Vec::new()); n + 1];
        assert!(encode_fetch(1, 1, version, r.clone(), long).is_err());
        let mut both = r;
        both.responses[0].partitions[0].records = Some(bytes::Bytes::from_static(b"x"));
        assert!(encode_fetch(1, 1, version, both, vec![Some(Vec::new()); n]).is_err());
    }
}
