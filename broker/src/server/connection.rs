//! One client connection: length-prefixed frames in, responses out, in request order.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::handlers::{self, Reply};
use super::{versions, BrokerState};

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
    /// An API or version we do not serve.
    #[error("unsupported API {key} version {version}")]
    Unsupported {
        /// API key.
        key: i16,
        /// Version.
        version: i16,
    },
    /// A response could not be encoded (a bug).
    #[error("could not encode response: {0}")]
    Encode(String),
}

/// Serves one connection until the peer closes it, it misbehaves, or the node shuts down.
pub async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<BrokerState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    debug!(%peer, "connection opened");
    loop {
        let frame = tokio::select! {
            _ = shutdown.changed() => break,
            f = read_frame(&mut rd, state.request_bytes_max) => f,
        };
        let result = match frame {
            Ok(Some(frame)) => handle_frame(frame, &state, peer).await,
            Ok(None) => break,
            Err(e) => Err(e),
        };
        match result {
            Ok(Some(out)) => {
                if let Err(e) = write_response(&mut wr, out).await {
                    debug!(%peer, error = %e, "write failed; closing");
                    break;
                }
            }
            Ok(None) => {}
            Err(ConnectionError::Io(e)) => {
                debug!(%peer, error = %e, "connection i/o ended");
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

async fn read_frame<R: AsyncReadExt + Unpin>(
    rd: &mut R,
    max: usize,
) -> Result<Option<Bytes>, ConnectionError> {
    let len = match rd.read_i32().await {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
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
    let mut buf = BytesMut::zeroed(len as usize);
    rd.read_exact(&mut buf).await?;
    Ok(Some(buf.freeze()))
}

async fn write_response<W: AsyncWriteExt + Unpin>(
    wr: &mut W,
    out: BytesMut,
) -> std::io::Result<()> {
    wr.write_all(&out).await?;
    wr.flush().await
}

/// Decodes, handles and encodes one request from `peer`. `Ok(None)`: no response is due
/// (acks=0).
pub async fn handle_frame(
    mut frame: Bytes,
    state: &BrokerState,
    peer: SocketAddr,
) -> Result<Option<BytesMut>, ConnectionError> {
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
                &Reply::new(ResponseKind::ApiVersions(resp)),
            )
            .map(Some);
        }
        return Err(ConnectionError::Unsupported {
            key: key_raw,
            version,
        });
    }
    let header = decode_request_header_from_buffer(&mut frame)
        .map_err(|e| ConnectionError::Malformed(format!("header of {key:?} v{version}: {e}")))?;
    let request = RequestKind::decode(key, &mut frame, version)
        .map_err(|e| ConnectionError::Malformed(format!("{key:?} v{version}: {e}")))?;
    match handlers::handle(state, &header, request, peer).await {
        Some(reply) => {
            let header_version = key.response_header_version(version);
            encode(correlation_id, header_version, version, &reply).map(Some)
        }
        None => Ok(None),
    }
}

fn encode(
    correlation_id: i32,
    header_version: i16,
    version: i16,
    reply: &Reply,
) -> Result<BytesMut, ConnectionError> {
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
    Ok(out)
}
