//! One client connection: length-prefixed frames in, responses out, in request order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::handlers::{self, Reply};
use super::limits::{self, Reservation};
use super::outgoing::Outgoing;
use super::{legacy, versions, BrokerState};

/// Why a connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// Socket error or peer gone.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The frame is not a request we can read.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The frame is larger than `request_bytes_max`.
    #[error("request of {size} bytes exceeds request_bytes_max = {max}")]
    TooLarge {
        /// Announced size.
        size: i64,
        /// Limit.
        max: usize,
    },
    /// An API or version we do not serve. Apache Kafka closes the connection for these too
    /// (only ApiVersions gets an UNSUPPORTED_VERSION answer, KIP-511): a response could only be
    /// encoded in a version the client did not ask for.
    #[error("refused request: {}", describe_unsupported(*key, *version))]
    Unsupported {
        /// API key.
        key: i16,
        /// Version.
        version: i16,
    },
    /// No request began within `connections_max_idle_ms`.
    #[error("idle for {0:?} (connections_max_idle_ms)")]
    IdleTimeout(Duration),
    /// A frame was not completed within `request_read_timeout_ms` of its first byte.
    #[error("request not received within {0:?} of its first byte (request_read_timeout_ms)")]
    ReadTimeout(Duration),
    /// A response could not be encoded (a bug).
    #[error("could not encode response: {0}")]
    Encode(String),
}

/// Serves one connection until the peer closes it, it misbehaves, or the node shuts down.
///
/// One request at a time: the next frame is read only after the previous response is written
/// (or, for acks=0, dropped), so a client that stops reading holds at most one response, and
/// only for `response_write_timeout_ms`. See `limits` for the budget this loop works within.
pub async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<BrokerState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    // Small: most reads are 4-byte length prefixes and small requests; large bodies are read
    // straight into their own buffer. An idle connection costs little more than this.
    let mut rd = BufReader::with_capacity(16 * 1024, rd);
    debug!(%peer, "connection opened");
    loop {
        let frame = tokio::select! {
            _ = shutdown.changed() => break,
            f = read_frame(&mut rd, &state) => f,
        };
        let result = match frame {
            Ok(Some((frame, reservation))) => handle_frame(frame, reservation, &state, peer).await,
            Ok(None) => break,
            Err(e) => Err(e),
        };
        match result {
            Ok(Some((out, reservation))) => {
                let written = tokio::time::timeout(
                    state.limits.response_write_timeout,
                    out.write_to(&mut wr),
                )
                .await;
                drop(out);
                drop(reservation);
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "write failed; closing");
                        break;
                    }
                    Err(_) => {
                        debug!(%peer, timeout = ?state.limits.response_write_timeout,
                            "client did not read its response in time; closing");
                        break;
                    }
                }
            }
            Ok(None) => {}
            Err(ConnectionError::Io(e)) => {
                debug!(%peer, error = %e, "connection i/o ended");
                break;
            }
            Err(e @ (ConnectionError::Unsupported { .. } | ConnectionError::IdleTimeout(_))) => {
                // Expected traffic (an old client, an idle one); nothing for an operator to do.
                debug!(%peer, error = %e, "closing connection");
                break;
            }
            Err(e) => {
                warn!(%peer, error = %e, "closing connection");
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
    debug!(%peer, "connection closed");
}

/// Reads one frame: waits up to `connections_max_idle_ms` for its first byte, then reads the
/// rest within `request_read_timeout_ms`, growing the buffer (and its reservation from the
/// node's budget) only as bytes arrive.
async fn read_frame<R: AsyncBufReadExt + Unpin>(
    rd: &mut R,
    state: &BrokerState,
) -> Result<Option<(Bytes, Reservation)>, ConnectionError> {
    let limits = &state.limits;
    match tokio::time::timeout(limits.idle_timeout, rd.fill_buf()).await {
        Err(_) => return Err(ConnectionError::IdleTimeout(limits.idle_timeout)),
        Ok(Ok([])) => return Ok(None),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e.into()),
    }
    let deadline = tokio::time::Instant::now() + limits.read_timeout;
    let timed_out = || ConnectionError::ReadTimeout(limits.read_timeout);
    let len = tokio::time::timeout_at(deadline, rd.read_i32())
        .await
        .map_err(|_| timed_out())??;
    let max = state.request_bytes_max;
    if len < 0 || len as usize > max {
        return Err(ConnectionError::TooLarge {
            size: i64::from(len),
            max,
        });
    }
    // api key, api version, correlation id
    if len < 8 {
        return Err(ConnectionError::Malformed(format!(
            "frame of {len} bytes is too short"
        )));
    }
    let len = len as usize;
    let budget = &limits.budget;
    let first = len.min(FRAME_CHUNK_BYTES);
    let mut reservation = tokio::time::timeout_at(deadline, budget.acquire(first))
        .await
        .map_err(|_| timed_out())?;
    let mut buf: Vec<u8> = Vec::with_capacity(first);
    while buf.len() < len {
        if buf.len() == buf.capacity() {
            // Double as bytes arrive, never past the announced length, and reserve each
            // growth before allocating it: a client pays for what it sent, not what it promised.
            let more = buf.len().min(len - buf.len());
            tokio::time::timeout_at(deadline, budget.grow(&mut reservation, more))
                .await
                .map_err(|_| timed_out())?;
            buf.reserve_exact(more);
        }
        let room = (buf.capacity() - buf.len()) as u64;
        let n = tokio::time::timeout_at(deadline, (&mut *rd).take(room).read_buf(&mut buf))
            .await
            .map_err(|_| timed_out())??;
        if n == 0 {
            return Err(ConnectionError::Io(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
    }
    Ok(Some((Bytes::from(buf), reservation)))
}

/// The first read buffer of a frame (and its first reservation); it doubles from here as the
/// body arrives.
const FRAME_CHUNK_BYTES: usize = 64 * 1024;

/// Decodes, handles and encodes one request from `peer`. `Ok(None)`: no response is due
/// (acks=0). The returned reservation covers the response until it is written.
pub async fn handle_frame(
    frame: Bytes,
    mut reservation: Reservation,
    state: &BrokerState,
    peer: SocketAddr,
) -> Result<Option<(Outgoing, Reservation)>, ConnectionError> {
    let mut peek = &frame[..8];
    let key_raw = peek.get_i16();
    let version = peek.get_i16();
    let correlation_id = peek.get_i32();
    let key = ApiKey::try_from(key_raw).map_err(|_| ConnectionError::Unsupported {
        key: key_raw,
        version,
    })?;
    let supported = versions::supported(key);
    let in_range = supported.is_some_and(|(min, max)| (min..=max).contains(&version));
    if !in_range {
        if key == ApiKey::ApiVersions {
            // Clients probe with their newest ApiVersions; answer in v0 with the versions we
            // serve so they can retry with one of them.
            let resp = handlers::admin::api_versions_unsupported();
            return encode(
                correlation_id,
                0,
                0,
                Reply::new(ResponseKind::ApiVersions(resp)),
            )
            .map(|out| Some((out, reservation)));
        }
        if key == ApiKey::Produce && legacy::PRODUCE_VERSIONS.contains(&version) {
            // A pre-0.11 producer: refuse its message format with an error it can report,
            // rather than the EOF Kafka 4.0 leaves it with (issue 9, defect 12).
            let mut rest = frame.clone();
            if decode_request_header_from_buffer(&mut rest).is_ok() {
                if let Ok(body) = legacy::refuse_produce(version, rest) {
                    debug!(%peer, version, "Produce v0-v2 (message format v0/v1) refused");
                    let Some(body) = body else { return Ok(None) };
                    return Ok(Some((
                        frame_response(correlation_id, &body).into(),
                        reservation,
                    )));
                }
            }
        }
        return Err(ConnectionError::Unsupported {
            key: key_raw,
            version,
        });
    }
    let started = std::time::Instant::now();
    let (header, mut request) = decode_request(frame)?;
    // A fetch's response is reserved before the handler reads the log, so connections that
    // never read their responses cannot pile up more than the budget between them. It takes
    // what is free rather than wait (see `limits`); a smaller `max_bytes` is within Kafka's
    // rules, since a fetch may always return less.
    let estimate = limits::response_estimate_bytes(&request, handlers::fetch::RESPONSE_BYTES_MAX);
    if let (RequestKind::Fetch(fetch), true) = (&mut request, estimate > 0) {
        let granted = state.limits.budget.grant_up_to(&mut reservation, estimate);
        if granted < estimate {
            debug!(%peer, estimate, granted, "fetch response limited by inflight_bytes_max");
            fetch.max_bytes = i32::try_from(granted).unwrap_or(i32::MAX).max(1);
        }
    }
    let replied = handlers::handle(state, &header, request, peer).await;
    if let Some(reply) = &replied {
        crate::metrics::responses::error_codes(reply.kind(), |c| {
            if c != 0 {
                state.metrics.errors(key_raw, [c]);
            }
        });
    }
    match replied {
        Some(reply) => {
            let header_version = key.response_header_version(version);
            let out = encode(correlation_id, header_version, version, reply);
            state.metrics.request(key_raw, started.elapsed());
            let out = out?;
            // Records sent from segment files are not in memory: only the framing counts.
            let beyond = out.memory_bytes().saturating_sub(reservation.bytes());
            if beyond > 0 && !state.limits.budget.try_grow(&mut reservation, beyond) {
                // Only a fetch's first batch may exceed its estimate (Kafka's progress rule);
                // the memory exists already, so waiting would only hold it longer.
                debug!(%peer, bytes = out.len(), "response exceeds the free request budget");
            }
            Ok(Some((out, reservation)))
        }
        None => {
            state.metrics.request(key_raw, started.elapsed());
            Ok(None)
        }
    }
}

/// What an operator needs to tell why a client was refused: the API, the version it sent and
/// the versions served (an old client sends versions below Kafka 4.0's floors, KIP-896).
fn describe_unsupported(key: i16, version: i16) -> String {
    match ApiKey::try_from(key) {
        Err(_) => format!("unknown API key {key} (version {version})"),
        Ok(api) => match versions::supported(api) {
            None => format!("{api:?} (key {key}) version {version}: API not served"),
            Some((min, max)) => {
                format!("{api:?} (key {key}) version {version}: versions {min}..={max} are served")
            }
        },
    }
}

/// Decodes a request frame (without its length prefix) of an API and version we serve. Every
/// length inside is bounded by the frame (the vendored decoder checks them, vendor/README.md),
/// so this allocates at most a small multiple of the frame's size whatever the bytes say.
pub fn decode_request(mut frame: Bytes) -> Result<(RequestHeader, RequestKind), ConnectionError> {
    if frame.len() < 8 {
        return Err(ConnectionError::Malformed(format!(
            "frame of {} bytes is too short",
            frame.len()
        )));
    }
    let mut peek = &frame[..4];
    let key_raw = peek.get_i16();
    let version = peek.get_i16();
    let unsupported = ConnectionError::Unsupported {
        key: key_raw,
        version,
    };
    let key = ApiKey::try_from(key_raw).map_err(|_| unsupported)?;
    if !versions::supported(key).is_some_and(|(min, max)| (min..=max).contains(&version)) {
        return Err(ConnectionError::Unsupported {
            key: key_raw,
            version,
        });
    }
    let header = decode_request_header_from_buffer(&mut frame)
        .map_err(|e| ConnectionError::Malformed(format!("header of {key:?} v{version}: {e}")))?;
    let request = RequestKind::decode(key, &mut frame, version)
        .map_err(|e| ConnectionError::Malformed(format!("{key:?} v{version}: {e}")))?;
    Ok((header, request))
}

/// A response frame from an already encoded body, with response header v0.
fn frame_response(correlation_id: i32, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(body.len() + 8);
    out.put_i32(i32::try_from(body.len() + 4).unwrap_or(i32::MAX));
    out.put_i32(correlation_id);
    out.put_slice(body);
    out
}

fn encode(
    correlation_id: i32,
    header_version: i16,
    version: i16,
    reply: Reply,
) -> Result<Outgoing, ConnectionError> {
    if reply.has_files() {
        let (kind, files) = reply.into_parts();
        let ResponseKind::Fetch(resp) = kind else {
            return Err(ConnectionError::Encode(
                "records in files for a response other than Fetch".into(),
            ));
        };
        return super::fetch_encode::encode_fetch(
            correlation_id,
            header_version,
            version,
            resp,
            files,
        )
        .map_err(|e| ConnectionError::Encode(format!("{e:#}")));
    }
    let mut out = BytesMut::with_capacity(reply.size_hint(version) + 64);
    out.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header
        .encode(&mut out, header_version)
        .map_err(|e| ConnectionError::Encode(e.to_string()))?;
    reply
        .encode(&mut out, version)
        .map_err(|e| ConnectionError::Encode(e.to_string()))?;
    let len = i32::try_from(out.len() - 4)
        .map_err(|_| ConnectionError::Encode("response larger than 2 GiB".into()))?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(key: i16, version: i16) -> Bytes {
        let mut f = BytesMut::new();
        f.put_i16(key);
        f.put_i16(version);
        f.put_i32(7);
        f.put_i16(-1);
        f.put_slice(&[0; 16]);
        f.freeze()
    }

    #[test]
    fn refusals_name_the_api_and_the_served_versions() {
        // Produce v2 is what a pre-0.11 client sends; below Kafka 4.0's floor (KIP-896).
        let e = decode_request(frame(0, 2)).unwrap_err();
        assert!(matches!(
            e,
            ConnectionError::Unsupported { key: 0, version: 2 }
        ));
        let text = e.to_string();
        assert!(
            text.contains("Produce (key 0) version 2: versions 3..="),
            "{text}"
        );
        let e = decode_request(frame(9_999, 0)).unwrap_err();
        assert!(e.to_string().contains("unknown API key 9999"), "{e}");
        let e = decode_request(frame(ApiKey::WriteTxnMarkers as i16, 1)).unwrap_err();
        assert!(e.to_string().contains("API not served"), "{e}");
    }
}
