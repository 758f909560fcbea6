//! Raw Kafka wire access: length-prefixed frames over a blocking `TcpStream`, requests encoded
//! with the `kafka-protocol` crate, and hand-built v2 record batches (so a test can corrupt
//! exactly one field).
//!
//! Frame: `i32 length | request header | body`; every read and write has a socket timeout so
//! a silent server fails the test instead of hanging it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// The largest response frame a test accepts.
pub(crate) const MAX_FRAME_BYTES: usize = 64 << 20;

pub(crate) const API_KEY_PRODUCE: i16 = 0;
pub(crate) const API_KEY_API_VERSIONS: i16 = 18;

pub(crate) const ERROR_NONE: i16 = 0;
pub(crate) const ERROR_CORRUPT_MESSAGE: i16 = 2;
pub(crate) const ERROR_NOT_ENOUGH_REPLICAS: i16 = 19;
pub(crate) const ERROR_UNSUPPORTED_VERSION: i16 = 35;
pub(crate) const ERROR_INVALID_CONFIG: i16 = 40;
pub(crate) const ERROR_OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub(crate) const ERROR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
pub(crate) const ERROR_UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
pub(crate) const ERROR_INVALID_RECORD: i16 = 87;

fn proto_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// One client connection speaking raw Kafka frames.
#[derive(Debug)]
pub(crate) struct RawConn {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl RawConn {
    pub(crate) fn connect(addr: SocketAddr) -> io::Result<RawConn> {
        RawConn::connect_timeout(addr, Duration::from_secs(10))
    }

    pub(crate) fn connect_timeout(addr: SocketAddr, timeout: Duration) -> io::Result<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            next_correlation_id: 1,
        })
    }

    pub(crate) fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(timeout))
    }

    /// Writes bytes as they are: no framing.
    pub(crate) fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Writes `payload` with its i32 length prefix.
    pub(crate) fn send_frame(&mut self, payload: &[u8]) -> io::Result<()> {
        let len = i32::try_from(payload.len()).map_err(proto_err)?;
        let mut frame = Vec::with_capacity(payload.len() + 4);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(payload);
        self.write_raw(&frame)
    }

    /// Reads one length-prefixed frame (without the prefix).
    pub(crate) fn read_frame(&mut self) -> io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= MAX_FRAME_BYTES)
            .ok_or_else(|| proto_err(format!("response frame length {len} out of range")))?;
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf)?;
        Ok(buf)
    }

    pub(crate) fn next_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id += 1;
        id
    }

    /// Sends a request with an arbitrary key, version and pre-encoded body, using request
    /// header version `header_version` (1 = classic, 2 = flexible). Returns the correlation id.
    pub(crate) fn send_request_bytes(
        &mut self,
        api_key: i16,
        api_version: i16,
        header_version: i16,
        body: &[u8],
    ) -> io::Result<i32> {
        let correlation_id = self.next_correlation_id();
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api_key)
            .with_request_api_version(api_version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("rivulet-it-raw")))
            .encode(&mut buf, header_version)
            .map_err(proto_err)?;
        buf.put_slice(body);
        self.send_frame(&buf)?;
        Ok(correlation_id)
    }

    /// Reads a response frame, checks its correlation id (response header v0) and returns the
    /// body after it.
    pub(crate) fn read_response_v0(&mut self, correlation_id: i32) -> io::Result<Bytes> {
        let frame = self.read_frame()?;
        if frame.len() < 4 {
            return Err(proto_err(format!(
                "response frame of {} bytes",
                frame.len()
            )));
        }
        let got = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        if got != correlation_id {
            return Err(proto_err(format!(
                "correlation id {got} in response, expected {correlation_id}"
            )));
        }
        Ok(Bytes::from(frame).slice(4..))
    }

    /// Sends a typed request at `version` without reading its response (a client that never
    /// reads); returns its correlation id.
    pub(crate) fn send_request<R: Request>(&mut self, req: &R, version: i16) -> io::Result<i32> {
        let mut body = BytesMut::new();
        req.encode(&mut body, version).map_err(proto_err)?;
        self.send_request_bytes(R::KEY, version, R::header_version(version), &body)
    }

    /// Sends a typed request at `version` and decodes its typed response.
    pub(crate) fn request<R: Request>(&mut self, req: &R, version: i16) -> io::Result<R::Response> {
        let mut body = BytesMut::new();
        req.encode(&mut body, version).map_err(proto_err)?;
        let correlation_id =
            self.send_request_bytes(R::KEY, version, R::header_version(version), &body)?;
        let frame = self.read_frame()?;
        let mut buf = Bytes::from(frame);
        let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .map_err(proto_err)?;
        if header.correlation_id != correlation_id {
            return Err(proto_err(format!(
                "correlation id {} in response, expected {correlation_id}",
                header.correlation_id
            )));
        }
        R::Response::decode(&mut buf, version).map_err(proto_err)
    }

    /// Whether the server closes the connection (EOF or reset) within the read timeout,
    /// discarding anything it sends first.
    pub(crate) fn closed_by_peer(&mut self, timeout: Duration) -> bool {
        let _ = self.stream.set_read_timeout(Some(timeout));
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }

    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }
}

/// The highest version of `R` that both the server (per ApiVersions) and the kafka-protocol
/// crate support, capped at `cap`. Panics if there is none.
pub(crate) fn negotiate<R: Request>(conn: &mut RawConn, cap: i16) -> i16 {
    let (min, max) = supported_versions(conn, R::KEY)
        .expect("ApiVersions")
        .unwrap_or_else(|| panic!("server does not advertise API key {}", R::KEY));
    let version = max.min(R::VERSIONS.max).min(cap);
    assert!(
        version >= min.max(R::VERSIONS.min),
        "API key {}: server supports {min}..={max}, the test client {}..={} (cap {cap})",
        R::KEY,
        R::VERSIONS.min,
        R::VERSIONS.max
    );
    version
}

/// A Produce request with one batch (`records`) for one partition.
pub(crate) fn produce_request(
    topic: &str,
    partition: i32,
    acks: i16,
    records: Vec<u8>,
) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(records)))])])
}

/// Sends one acks=all Produce request carrying `records` to partition 0 of `topic` and returns
/// the partition's (error code, base offset). Panics if it is not answered.
pub(crate) fn produce(
    conn: &mut RawConn,
    version: i16,
    topic: &str,
    records: Vec<u8>,
) -> (i16, i64) {
    produce_acks(conn, version, topic, -1, records)
}

/// [`produce`] with the given `acks` (not 0: that request gets no response).
pub(crate) fn produce_acks(
    conn: &mut RawConn,
    version: i16,
    topic: &str,
    acks: i16,
    records: Vec<u8>,
) -> (i16, i64) {
    assert_ne!(acks, 0, "acks=0 produce requests are not answered");
    let req = produce_request(topic, 0, acks, records);
    let resp = conn
        .request(&req, version)
        .unwrap_or_else(|e| panic!("Produce v{version} must be answered: {e}"));
    let partition = resp
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .next()
        .unwrap_or_else(|| panic!("Produce response without a partition: {resp:?}"));
    (partition.error_code, partition.base_offset)
}

/// Connects and checks that an ApiVersions v0 request is answered with error code 0. Used to
/// decide that a node is ready.
pub(crate) fn probe(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let mut conn = RawConn::connect_timeout(addr, timeout).map_err(|e| format!("connect: {e}"))?;
    let resp = conn
        .request(&ApiVersionsRequest::default(), 0)
        .map_err(|e| format!("ApiVersions v0: {e}"))?;
    if resp.error_code != ERROR_NONE {
        return Err(format!(
            "ApiVersions v0 answered error code {}",
            resp.error_code
        ));
    }
    Ok(())
}

/// The `(min, max)` versions the server advertises for `api_key`, if any.
pub(crate) fn supported_versions(
    conn: &mut RawConn,
    api_key: i16,
) -> io::Result<Option<(i16, i16)>> {
    let resp = conn.request(&ApiVersionsRequest::default(), 0)?;
    Ok(resp
        .api_keys
        .iter()
        .find(|k| k.api_key == api_key)
        .map(|k| (k.min_version, k.max_version)))
}

fn put_varint(buf: &mut Vec<u8>, value: i64) {
    // Zig-zag, then unsigned LEB128, as in the Kafka record format.
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        if v < 0x80 {
            buf.push(v as u8);
            return;
        }
        buf.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
}

/// A record's key and value; `None` is Kafka's null.
pub(crate) type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A magic-v2 record batch, uncompressed, non-transactional, without producer id, built field
/// by field so tests can corrupt any part of it.
#[derive(Debug, Clone)]
pub(crate) struct BatchSpec {
    pub(crate) records: Vec<KeyValue>,
    pub(crate) base_timestamp_ms: i64,
    /// Overrides the record count written in the header (to make it disagree with the data).
    pub(crate) declared_count: Option<i32>,
    /// Idempotent producer fields; -1 means "no producer id".
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
}

impl BatchSpec {
    pub(crate) fn new(records: &[(&str, &str)]) -> BatchSpec {
        BatchSpec {
            records: records
                .iter()
                .map(|(k, v)| (Some(k.as_bytes().to_vec()), Some(v.as_bytes().to_vec())))
                .collect(),
            base_timestamp_ms: 1_700_000_000_000,
            declared_count: None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }

    /// The same records as an idempotent producer's batch.
    pub(crate) fn idempotent(
        mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> BatchSpec {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Encodes the batch with a correct CRC-32C (over attributes..end) unless the caller
    /// corrupts it afterwards.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut records = Vec::new();
        for (i, (key, value)) in self.records.iter().enumerate() {
            let mut rec = Vec::new();
            rec.push(0u8); // attributes
            put_varint(&mut rec, 0); // timestamp delta
            put_varint(&mut rec, i as i64); // offset delta
            for field in [key, value] {
                match field {
                    Some(bytes) => {
                        put_varint(&mut rec, bytes.len() as i64);
                        rec.extend_from_slice(bytes);
                    }
                    None => put_varint(&mut rec, -1),
                }
            }
            put_varint(&mut rec, 0); // headers
            put_varint(&mut records, rec.len() as i64);
            records.extend_from_slice(&rec);
        }
        let count = self.records.len() as i32;
        // Everything the CRC covers: attributes to the end.
        let mut tail = Vec::new();
        tail.extend_from_slice(&0i16.to_be_bytes()); // attributes
        tail.extend_from_slice(&(count - 1).max(0).to_be_bytes()); // last offset delta
        tail.extend_from_slice(&self.base_timestamp_ms.to_be_bytes());
        tail.extend_from_slice(&self.base_timestamp_ms.to_be_bytes()); // max timestamp
        tail.extend_from_slice(&self.producer_id.to_be_bytes());
        tail.extend_from_slice(&self.producer_epoch.to_be_bytes());
        tail.extend_from_slice(&self.base_sequence.to_be_bytes());
        tail.extend_from_slice(&self.declared_count.unwrap_or(count).to_be_bytes());
        tail.extend_from_slice(&records);
        let crc = crc32c::crc32c(&tail);

        let mut batch = Vec::new();
        batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
        let batch_length = 4 + 1 + 4 + tail.len(); // leader epoch + magic + crc + tail
        batch.extend_from_slice(&(batch_length as i32).to_be_bytes());
        batch.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        batch.push(2); // magic
        batch.extend_from_slice(&crc.to_be_bytes());
        batch.extend_from_slice(&tail);
        batch
    }
}

/// Offsets of fixed fields inside an encoded v2 batch.
pub(crate) mod batch_layout {
    pub(crate) const BATCH_LENGTH: usize = 8;
    pub(crate) const MAGIC: usize = 16;
    pub(crate) const CRC: usize = 17;
    pub(crate) const ATTRIBUTES: usize = 21;
    pub(crate) const RECORDS_COUNT: usize = 57;
    pub(crate) const FIRST_RECORD: usize = 61;
}
