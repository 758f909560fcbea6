//! Reads that hand out file regions instead of bytes, for `sendfile(2)`.
//!
//! ```text
//!   PartitionLog::read_regions(offset, max_bytes, max_offset)
//!        │ plan from the index (as `read`), no record byte is read
//!        ▼
//!   RegionRead { chunks: [File(seg 0, pos, len), File(seg 1, 0, len), ..] }
//!        │ each FileRegion holds an Arc of its open segment file
//!        ▼
//!   broker: sendfile(socket, region, pos, len) ── page cache to socket, no user-space copy
//! ```
//!
//! A region stays valid while it is held, whatever happens to the log meanwhile:
//! - retention, DeleteRecords or a truncation that drops the segment, and compaction replacing
//!   the file by rename, only unlink the path: the region's open file still reads the old
//!   inode;
//! - a truncation that cuts the file itself (a follower's `truncate_to`, a reset reusing the
//!   segment) is counted by the file before it cuts; [`FileRegion::is_intact`] tells whether the
//!   bytes are still the ones indexed. On a leader serving below its high watermark no such cut
//!   happens (only followers truncate, and never below the high watermark without an unclean
//!   election); a sender checks before each send and gives up on a cut region.
//!
//! Regions never reach past what the read was allowed to see (`max_offset`: the high watermark,
//! or a last-stable-offset cut), since they are planned exactly like [`PartitionLog::read`].
//!
//! [`PartitionLog::read`]: crate::PartitionLog::read

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::segment::SegmentFile;
use crate::{Result, StorageError};

/// Whole record batches lying back to back in one segment file, from `position` for `len`
/// bytes. Holds the file open: the bytes stay readable after the segment is deleted or its
/// file replaced by rename.
#[derive(Clone)]
pub struct FileRegion {
    file: Arc<SegmentFile>,
    position: u64,
    len: u64,
    records_count: u64,
    /// The file's truncation count when the region was planned.
    truncations: u64,
}

impl std::fmt::Debug for FileRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRegion")
            .field("file", &self.file.path())
            .field("position", &self.position)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl FileRegion {
    pub(crate) fn new(
        file: Arc<SegmentFile>,
        position: u64,
        len: u64,
        records_count: u64,
        truncations: u64,
    ) -> FileRegion {
        FileRegion {
            file,
            position,
            len,
            records_count,
            truncations,
        }
    }

    /// The segment file's path when the region was planned (the file may since have been
    /// deleted or replaced; the region reads the file it opened).
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Where the region starts in its file.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Bytes in the region.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the region holds no bytes (never, for a region a read returned).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Records in the region's batches (as their headers count them).
    pub fn records_count(&self) -> u64 {
        self.records_count
    }

    /// False once the file was cut short since the region was planned: its bytes may no longer
    /// be the batches it was planned for, and it must not be sent.
    pub fn is_intact(&self) -> bool {
        self.file.truncations() == self.truncations
    }

    /// The error to report for a region that is no longer intact.
    pub fn cut_error(&self) -> StorageError {
        StorageError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "segment file {} was truncated after a read planned {} bytes at {}; read again",
                self.file.path().display(),
                self.len,
                self.position
            ),
        ))
    }

    /// Copies `buf.len()` bytes from `from` bytes into the region (the copying path, for
    /// sockets that cannot take `sendfile`, such as TLS).
    pub fn read_at(&self, buf: &mut [u8], from: u64) -> Result<()> {
        let end = from.saturating_add(buf.len() as u64);
        if end > self.len {
            return Err(StorageError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{end} bytes asked of a region of {} bytes", self.len),
            )));
        }
        if !self.is_intact() || !self.file.read_exact_at(buf, self.position + from)? {
            return Err(self.cut_error());
        }
        // A cut during the read may have handed us the new bytes.
        if !self.is_intact() {
            return Err(self.cut_error());
        }
        Ok(())
    }
}

impl AsFd for FileRegion {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// A piece of a read's record bytes.
#[derive(Debug, Clone)]
pub enum RecordChunk {
    /// Batches in a segment file, to be sent from it.
    File(FileRegion),
    /// Batches already in memory (a read that raced a truncation and fell back to copying).
    Bytes(Bytes),
}

impl RecordChunk {
    /// Bytes in the chunk.
    pub fn len(&self) -> u64 {
        match self {
            RecordChunk::File(r) => r.len(),
            RecordChunk::Bytes(b) => b.len() as u64,
        }
    }

    /// Whether the chunk holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Result of [`PartitionLog::read_regions`](crate::PartitionLog::read_regions): the same
/// batches [`PartitionLog::read`](crate::PartitionLog::read) would return, as chunks in
/// offset order (one region per segment touched).
#[derive(Debug, Clone, Default)]
pub struct RegionRead {
    /// Whole record batches, in offset order; empty at the end of the log.
    pub chunks: Vec<RecordChunk>,
    /// Total bytes of `chunks`.
    pub bytes: u64,
    /// Records in the batches (as their headers count them).
    pub records_count: u64,
    /// The offset after the last batch (`None` when no batch was read): where the next read
    /// continues, without parsing the bytes.
    pub next_offset: Option<i64>,
    /// First offset of the log at the time of the read.
    pub log_start_offset: i64,
    /// Log end offset at the time of the read.
    pub log_end_offset: i64,
}

impl RegionRead {
    /// The record bytes, copied into one buffer (blocking file reads).
    pub fn to_bytes(&self) -> Result<Bytes> {
        copy_chunks(&self.chunks)
    }

    /// The record bytes in a `Vec` of the exact size: one positioned read per region, the
    /// only copy (for messages that must own their bytes, such as replication's).
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        copy_chunks_to_vec(&self.chunks)
    }
}

/// Concatenates `chunks` into one buffer, reading file regions with positioned reads.
pub fn copy_chunks(chunks: &[RecordChunk]) -> Result<Bytes> {
    if let [RecordChunk::Bytes(b)] = chunks {
        return Ok(b.clone());
    }
    copy_chunks_to_vec(chunks).map(Bytes::from)
}

fn copy_chunks_to_vec(chunks: &[RecordChunk]) -> Result<Vec<u8>> {
    let total: u64 = chunks.iter().map(RecordChunk::len).sum();
    let total = usize::try_from(total).map_err(|_| {
        StorageError::Io(std::io::Error::other(
            "records larger than memory can address",
        ))
    })?;
    let mut out = vec![0u8; total];
    let mut at = 0usize;
    for c in chunks {
        let n = c.len() as usize;
        match c {
            RecordChunk::File(r) => r.read_at(&mut out[at..at + n], 0)?,
            RecordChunk::Bytes(b) => out[at..at + n].copy_from_slice(b),
        }
        at += n;
    }
    Ok(out)
}
