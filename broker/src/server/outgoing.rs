//! A response on its way to the socket: framing in memory, record bytes in segment files.
//!
//! ```text
//!   Outgoing [ Bytes(size, header, topics, partition fields, records length)
//!            , File(segment 3, pos 4096, 1 MiB)          ── sendfile(2): page cache ─▶ socket
//!            , Bytes(tagged fields, next partition's fields, records length)
//!            , File(segment 4, pos 0, 200 KiB)
//!            , Bytes(..) ]
//! ```
//! Plain TCP sends file parts with `sendfile` (no user-space copy). A stream that cannot take
//! `sendfile` (TLS: the bytes must be encrypted in user space; or a file system without it)
//! writes them through one bounded buffer instead ([`Outgoing::write_copying`]): one copy.
//! Only the framing is held in memory, so a response costs a few dozen bytes per partition
//! beside the open files it borrows.

use std::io;

use bytes::Bytes;
use rivulet_storage::{FileRegion, RecordChunk};
use tokio::io::Interest;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest copy buffer of the copying path.
const COPY_CHUNK_BYTES: usize = 256 * 1024;

/// Linux sends at most this many bytes per `sendfile` call.
const SENDFILE_BYTES_MAX: u64 = 0x7fff_f000;

/// An encoded response frame (size prefix included), in the order its parts go out.
#[derive(Debug, Default)]
pub struct Outgoing {
    parts: Vec<RecordChunk>,
}

impl From<Bytes> for Outgoing {
    fn from(b: Bytes) -> Self {
        Outgoing {
            parts: vec![RecordChunk::Bytes(b)],
        }
    }
}

impl From<bytes::BytesMut> for Outgoing {
    fn from(b: bytes::BytesMut) -> Self {
        Outgoing::from(b.freeze())
    }
}

impl Outgoing {
    /// A frame from its parts, in order.
    pub fn from_parts(parts: Vec<RecordChunk>) -> Self {
        Outgoing { parts }
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[RecordChunk] {
        &self.parts
    }

    /// Bytes on the wire.
    pub fn len(&self) -> u64 {
        self.parts.iter().map(RecordChunk::len).sum()
    }

    /// Whether nothing goes out.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held in memory (what the node's memory budget must cover).
    pub fn memory_bytes(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                RecordChunk::Bytes(b) => b.len(),
                RecordChunk::File(_) => 0,
            })
            .sum()
    }

    /// The whole frame in one buffer (blocking reads of the file parts; tests and tools).
    pub fn to_bytes(&self) -> rivulet_storage::Result<Bytes> {
        rivulet_storage::copy_chunks(&self.parts)
    }

    /// Writes the frame to a TCP socket: memory parts with `write_all`, file parts with
    /// `sendfile` from the page cache.
    pub async fn write_to<W>(&self, wr: &mut W) -> io::Result<()>
    where
        W: AsyncWrite + AsRef<TcpStream> + Unpin,
    {
        for part in &self.parts {
            match part {
                RecordChunk::Bytes(b) => wr.write_all(b).await?,
                RecordChunk::File(r) => send_region(wr, r).await?,
            }
        }
        Ok(())
    }

    /// Writes the frame to any stream, file parts through one bounded buffer (one copy): for
    /// streams `sendfile` cannot write to, such as TLS.
    pub async fn write_copying<W: AsyncWrite + Unpin>(&self, wr: &mut W) -> io::Result<()> {
        for part in &self.parts {
            match part {
                RecordChunk::Bytes(b) => wr.write_all(b).await?,
                RecordChunk::File(r) => copy_region(wr, r, 0).await?,
            }
        }
        Ok(())
    }
}

/// Sends `region` with `sendfile(2)`, waiting for the socket to drain as needed. Falls back to
/// copying if the file cannot be sent from (`EINVAL`/`ENOSYS`/`EOPNOTSUPP`: a file system or
/// socket without `sendfile`).
async fn send_region<W>(wr: &mut W, region: &FileRegion) -> io::Result<()>
where
    W: AsyncWrite + AsRef<TcpStream> + Unpin,
{
    let end = region.position() + region.len();
    let mut position = region.position();
    while position < end {
        // A file cut since the read could put other bytes at these positions: refuse (the
        // connection closes; the client fetches again) rather than send them.
        if !region.is_intact() {
            return Err(io::Error::other(region.cut_error()));
        }
        let count = usize::try_from((end - position).min(SENDFILE_BYTES_MAX)).unwrap_or(1 << 30);
        let stream: &TcpStream = (*wr).as_ref();
        let sent = stream.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(stream, region, Some(&mut position), count)
                .map_err(io::Error::from)
        });
        match sent {
            Ok(0) => {
                // The file ends before the region does: it was cut under us.
                return Err(io::Error::other(region.cut_error()));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    rustix::io::Errno::from_io_error(&e),
                    Some(
                        rustix::io::Errno::INVAL
                            | rustix::io::Errno::NOSYS
                            | rustix::io::Errno::OPNOTSUPP
                    )
                ) =>
            {
                tracing::debug!(file = %region.path().display(), error = %e,
                    "sendfile refused; copying the region instead");
                return copy_region(wr, region, position - region.position()).await;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `region` from `from` bytes into it through a buffer of at most `COPY_CHUNK_BYTES`,
/// reading on a blocking thread (the file may not be in the page cache).
async fn copy_region<W: AsyncWrite + Unpin>(
    wr: &mut W,
    region: &FileRegion,
    mut from: u64,
) -> io::Result<()> {
    while from < region.len() {
        let n = usize::try_from(region.len() - from)
            .unwrap_or(usize::MAX)
            .min(COPY_CHUNK_BYTES);
        let r = region.clone();
        let buf = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; n];
            r.read_at(&mut buf, from).map(|()| buf)
        })
        .await
        .map_err(io::Error::other)?
        .map_err(io::Error::other)?;
        wr.write_all(&buf).await?;
        from += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rivulet_storage::batch::BatchBuilder;
    use rivulet_storage::{Durability, LogConfig, PartitionId, PartitionLog, Store, StoreConfig};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    fn log(dir: &std::path::Path, batches: usize, value_bytes: usize) -> (Store, PartitionLog) {
        let store = Store::open(dir, StoreConfig::default()).unwrap();
        let cfg = LogConfig {
            segment_bytes_max: 64 * 1024,
            durability: Durability::Os,
            ..LogConfig::default()
        };
        let id = PartitionId {
            topic_id: uuid::Uuid::from_u128(3),
            partition: 0,
        };
        let log = store.open_log(id, cfg).unwrap();
        for i in 0..batches {
            let mut b = BatchBuilder::new(1);
            b.push(1, None, Some(vec![i as u8; value_bytes].as_slice()));
            log.append_as_leader(&b.build(), 0).unwrap();
        }
        (store, log)
    }

    /// A connected pair of TCP sockets on loopback.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (a.unwrap(), b.unwrap().0)
    }

    /// Framing around every region of a read: what the receiver must get, byte for byte.
    fn frame(log: &PartitionLog) -> Outgoing {
        let read = log.read_regions(0, 64 << 20, i64::MAX).unwrap();
        assert!(read.chunks.len() > 3, "several segments");
        let mut parts = vec![RecordChunk::Bytes(Bytes::from_static(b"head"))];
        for c in read.chunks {
            parts.push(c);
            parts.push(RecordChunk::Bytes(Bytes::from_static(b"|")));
        }
        Outgoing::from_parts(parts)
    }

    #[tokio::test]
    async fn sendfile_and_copying_writes_deliver_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        // ~4 MB: more than a loopback socket buffer, so sendfile must wait for the reader.
        let (_store, log) = log(dir.path(), 400, 10_000);
        let out = frame(&log);
        let expected = out.to_bytes().unwrap();
        for copying in [false, true] {
            let (a, mut b) = pair().await;
            let (_rd, mut wr) = a.into_split();
            let n = expected.len();
            let reader = tokio::spawn(async move {
                let mut got = vec![0u8; n];
                b.read_exact(&mut got).await.unwrap();
                got
            });
            if copying {
                out.write_copying(&mut wr).await.unwrap();
            } else {
                out.write_to(&mut wr).await.unwrap();
            }
            let got = reader.await.unwrap();
            assert!(got == expected[..], "copying = {copying}");
        }
    }

    #[tokio::test]
    async fn a_region_cut_before_it_is_sent_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, log) = log(dir.path(), 40, 10_000);
        // The active segment's region: the one a follower's truncation cuts.
        let last = frame(&log).parts().iter().rev().nth(1).cloned().unwrap();
        assert!(matches!(last, RecordChunk::File(_)));
        let out = Outgoing::from_parts(vec![last]);
        log.truncate_to(log.log_end_offset() - 1).unwrap();
        let (a, _b) = pair().await;
        let (_rd, mut wr) = a.into_split();
        let e = out.write_to(&mut wr).await.unwrap_err();
        assert!(e.to_string().contains("was truncated"), "{e}");
    }
}
