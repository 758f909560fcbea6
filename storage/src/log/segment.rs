//! Segment files: the record batches of one segment, back to back, exactly as stored.
//!
//! A segment file is append-only on the hot path: the writer appends at its end with one
//! positioned, vectored write per append (the patched headers and the caller's bytes, no
//! copy), and readers read it with positioned reads, so no file cursor is shared. Only
//! truncation (followers) and recovery cut it shorter.
//!
//! The file knows nothing of offsets: the segment's index entries in fjall say which batch
//! lies where. Recovery ([`SegmentFile::scan_from`]) checks the bytes against those entries
//! and reads the batches the index has not seen yet.

use std::fs::{File, OpenOptions};
use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::batch::{compute_crc, BatchHeader, HEADER_LEN};
use crate::{Result, StorageError};

/// File name of generation `generation` of the segment starting at `base_offset`, in its
/// partition's directory: `<base>.log` as written, `<base>.<generation>.log` once cleaned.
pub(crate) fn file_name(base_offset: i64, generation: u64) -> String {
    if generation == 0 {
        format!("{base_offset:020}.log")
    } else {
        format!("{base_offset:020}.{generation}.log")
    }
}

/// One open segment file. Shared (behind an `Arc`) by the log and by readers that cloned the
/// segment list; a deleted file stays readable through the handles still open on it.
///
/// Bytes once written at a position change only through [`SegmentFile::truncate`] (a
/// follower's truncation, recovery), which counts itself in `truncations` before it cuts: a
/// reader that saw the same count before and after planning, and again before sending, knows
/// the bytes it was told about are still the ones at those positions. Replacing the file by
/// rename (compaction) does not touch this handle: it keeps reading the old, open inode.
pub(crate) struct SegmentFile {
    file: File,
    path: PathBuf,
    truncations: AtomicU64,
}

impl std::fmt::Debug for SegmentFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SegmentFile {
    /// Opens the file at `path`, creating it (empty) if `create` and it is missing.
    pub(crate) fn open(path: &Path, create: bool) -> Result<SegmentFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    StorageError::CorruptLog(format!(
                        "segment file {} is missing while its index has entries",
                        path.display()
                    ))
                } else {
                    StorageError::Io(e)
                }
            })?;
        Ok(SegmentFile {
            file,
            path: path.to_path_buf(),
            truncations: AtomicU64::new(0),
        })
    }

    /// Creates the file at `path` empty (a leftover of a crash before its index existed is
    /// cut to nothing), and makes the directory entry durable.
    pub(crate) fn create(path: &Path) -> Result<SegmentFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        sync_parent(path)?;
        Ok(SegmentFile {
            file,
            path: path.to_path_buf(),
            truncations: AtomicU64::new(0),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the file.
    pub(crate) fn len(&self) -> Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Writes `parts` one after the other at `position`, retrying short writes: one system
    /// call for a whole append in the common case.
    pub(crate) fn write_all_at(&self, parts: &[&[u8]], mut position: u64) -> Result<()> {
        let mut slices: Vec<IoSlice<'_>> = parts
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| IoSlice::new(p))
            .collect();
        let mut bufs: &mut [IoSlice<'_>] = &mut slices;
        while !bufs.is_empty() {
            // The kernel takes at most IOV_MAX (1024) slices per call.
            let n = bufs.len().min(1024);
            let written = match rustix::io::pwritev(&self.file, &bufs[..n], position) {
                Ok(0) => {
                    return Err(StorageError::Io(std::io::Error::new(
                        std::io::ErrorKind::WriteZero,
                        format!("segment file {} accepts no more bytes", self.path.display()),
                    )))
                }
                Ok(w) => w,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(StorageError::Io(e.into())),
            };
            position += written as u64;
            IoSlice::advance_slices(&mut bufs, written);
        }
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes at `position`; `Ok(false)` if the file ends before
    /// (truncated under a reader).
    pub(crate) fn read_exact_at(&self, buf: &mut [u8], position: u64) -> Result<bool> {
        match self.file.read_exact_at(buf, position) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(StorageError::Io(e)),
        }
    }

    /// How many times the file was cut short through this handle (see the type's docs).
    pub(crate) fn truncations(&self) -> u64 {
        self.truncations.load(Ordering::Acquire)
    }

    /// Cuts the file to `len` bytes and makes that durable.
    pub(crate) fn truncate(&self, len: u64) -> Result<()> {
        // Counted before the cut, so a reader that sees the old count afterwards read the
        // old bytes.
        self.truncations.fetch_add(1, Ordering::AcqRel);
        self.file.set_len(len)?;
        self.file.sync_data()?;
        Ok(())
    }

    /// fdatasync.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file.sync_data()?;
        Ok(())
    }

    /// Reads the batch that should start at `position` and expects `base_offset` there:
    /// its header, if the whole batch is in the file, carries that base offset (any, if
    /// `None`) and its CRC matches. `Ok(None)` for anything else: a torn or foreign tail.
    pub(crate) fn batch_at(
        &self,
        position: u64,
        base_offset: Option<i64>,
        file_len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<Option<BatchHeader>> {
        if position.saturating_add(HEADER_LEN as u64) > file_len {
            return Ok(None);
        }
        let mut head = [0u8; HEADER_LEN];
        if !self.read_exact_at(&mut head, position)? {
            return Ok(None);
        }
        let Ok(h) = BatchHeader::parse(&head) else {
            return Ok(None);
        };
        let total = h.total_len() as u64;
        if total < HEADER_LEN as u64
            || position.saturating_add(total) > file_len
            || base_offset.is_some_and(|b| b != h.base_offset)
            || h.last_offset_delta < 0
        {
            return Ok(None);
        }
        buf.clear();
        buf.resize(h.total_len(), 0);
        if !self.read_exact_at(buf, position)? {
            return Ok(None);
        }
        Ok((compute_crc(buf) == h.crc).then_some(h))
    }
}

impl AsFd for SegmentFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// fsyncs the directory holding `path`, so a newly created file's name survives a power loss.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
