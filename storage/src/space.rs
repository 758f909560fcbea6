//! [`SpaceGuard`]: refuses log appends while the store's filesystem is nearly full.
//!
//! fjall poisons its whole `Database` when a journal write or a background flush fails
//! (`fjall::Error::Poisoned`), and a poisoned database refuses every later write until the
//! process reopens it. One full disk would then stop every partition of the node *and* the
//! Raft controller, whose log lives in the same database, and deletes (which write to fjall's
//! meta keyspace) could not free space either. So the store never lets appends take the
//! filesystem below a floor:
//!
//! ```text
//!  append (leader or follower) ──▶ SpaceGuard::reserve(bytes)
//!        free estimate = statvfs (at most every REFRESH) − bytes reserved since
//!        estimate − bytes < floor ──▶ StorageError::DiskFull (nothing written, replica lives)
//!        refusing until estimate ≥ floor + floor/10 (hysteresis, so writes do not flap)
//!  Raft log, metadata, keyspace deletes: not guarded; the floor is their headroom, and
//!  the headroom fjall needs to flush the memtables it already holds (`write_buffer_bytes_max`)
//! ```
//!
//! If fjall gets poisoned anyway (a floor of 0, or another process filled the disk), the
//! guard remembers it, logs once that the node must be restarted, and every later append
//! fails fast with [`StorageError::Poisoned`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{error, info, warn};

use crate::{Result, StorageError};

/// How stale the free-space figure may get. `statvfs` costs about a microsecond, but appends
/// are far more frequent than the disk fills; in between, appended bytes are subtracted from
/// the figure so a burst cannot overshoot the floor.
const REFRESH: Duration = Duration::from_millis(100);

/// Makes fjall give back the disk space of deleted keyspaces (see [`SpaceGuard::deleted`]).
pub(crate) type Reclaim = Box<dyn Fn() + Send + Sync>;

/// The node's free-space check, shared by every log of a [`crate::Store`].
pub(crate) struct SpaceGuard {
    dir: PathBuf,
    floor_bytes: u64,
    state: Mutex<SpaceState>,
    poisoned: AtomicBool,
    reclaim: OnceLock<Reclaim>,
}

impl std::fmt::Debug for SpaceGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceGuard")
            .field("dir", &self.dir)
            .field("floor_bytes", &self.floor_bytes)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct SpaceState {
    /// When `free_bytes` was last measured; `None` before the first measurement.
    checked_at: Option<Instant>,
    /// Free bytes measured then, minus the bytes reserved since.
    free_bytes: u64,
    /// True while appends are refused (until the hysteresis mark is reached).
    refusing: bool,
}

impl SpaceGuard {
    pub(crate) fn new(dir: PathBuf, floor_bytes: u64) -> SpaceGuard {
        SpaceGuard {
            dir,
            floor_bytes,
            state: Mutex::new(SpaceState {
                checked_at: None,
                free_bytes: u64::MAX,
                refusing: false,
            }),
            poisoned: AtomicBool::new(false),
            reclaim: OnceLock::new(),
        }
    }

    /// Sets what [`SpaceGuard::deleted`] runs (once, when the store is built).
    pub(crate) fn set_reclaim(&self, reclaim: Reclaim) {
        let _ = self.reclaim.set(reclaim);
    }

    /// Keyspaces were deleted (a log, or segments by retention). Their files go only when
    /// fjall drops its last handle of them, and fjall's sealed journals hold handles until
    /// every keyspace written in them has flushed its memtable: on a quiet node, that can be
    /// never. So while appends are refused, reclaim (flush every memtable) right away, and
    /// measure again at the next append.
    pub(crate) fn deleted(&self) {
        if !self.state.lock().refusing {
            return;
        }
        if let Some(reclaim) = self.reclaim.get() {
            reclaim();
        }
        self.state.lock().checked_at = None;
    }

    /// Free bytes the filesystem gives unprivileged writers (what `df` calls available).
    fn measure(&self) -> Option<u64> {
        match rustix::fs::statvfs(&self.dir) {
            Ok(s) => Some(s.f_bavail.saturating_mul(s.f_frsize)),
            Err(e) => {
                // Not knowing is no reason to stop writing: fjall's own errors still apply.
                warn!(dir = %self.dir.display(), error = %e, "statvfs failed; free space unknown");
                None
            }
        }
    }

    /// Takes `bytes` of the free space for an append, or refuses with
    /// [`StorageError::DiskFull`] (or [`StorageError::Poisoned`] once fjall is poisoned).
    pub(crate) fn reserve(&self, bytes: u64) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(StorageError::Poisoned);
        }
        if self.floor_bytes == 0 {
            return Ok(());
        }
        let mut st = self.state.lock();
        let now = Instant::now();
        if st
            .checked_at
            .is_none_or(|t| now.duration_since(t) >= REFRESH)
        {
            if let Some(free) = self.measure() {
                st.free_bytes = free;
            }
            st.checked_at = Some(now);
        }
        let free_after = st.free_bytes.saturating_sub(bytes);
        let resume_bytes = self.floor_bytes.saturating_add(self.floor_bytes / 10);
        let refuse = if st.refusing {
            free_after < resume_bytes
        } else {
            free_after < self.floor_bytes
        };
        if refuse {
            if !st.refusing {
                st.refusing = true;
                error!(
                    dir = %self.dir.display(), free_bytes = st.free_bytes,
                    floor_bytes = self.floor_bytes, resume_bytes,
                    "disk nearly full: refusing appends (KAFKA_STORAGE_ERROR) until space is freed; \
                     reads and deletes are still served"
                );
            }
            return Err(StorageError::DiskFull {
                free_bytes: st.free_bytes,
                floor_bytes: self.floor_bytes,
            });
        }
        if st.refusing {
            st.refusing = false;
            info!(
                dir = %self.dir.display(), free_bytes = st.free_bytes,
                "free disk space is back above the floor: accepting appends again"
            );
        }
        st.free_bytes = free_after;
        Ok(())
    }

    /// Notes the error of a fjall *write* (a write batch, a keyspace deletion): fjall poisons
    /// the database on any I/O error of a journal write, so both that error and `Poisoned`
    /// are remembered (logged once), and later appends fail fast with
    /// [`StorageError::Poisoned`] instead of each replica crashing to find out.
    pub(crate) fn observe(&self, e: &StorageError) {
        let poisons = matches!(
            e,
            StorageError::Poisoned | StorageError::Fjall(fjall::Error::Io(_))
        );
        if poisons && !self.poisoned.swap(true, Ordering::AcqRel) {
            error!(
                dir = %self.dir.display(),
                "the storage engine refuses all writes after a failed write (disk full or I/O \
                 error): free disk space, then restart the node; reads are still served"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free(dir: &std::path::Path) -> u64 {
        rustix::fs::statvfs(dir)
            .map(|s| s.f_bavail * s.f_frsize)
            .unwrap()
    }

    #[test]
    fn refuses_below_the_floor_and_resumes_when_space_returns() {
        let dir = tempfile::tempdir().unwrap();
        let free = free(dir.path());
        // Floors far from the free space, so other writers on this disk do not matter.
        let guard = SpaceGuard::new(dir.path().to_path_buf(), free / 2);
        guard.reserve(free / 4).unwrap();
        // The reservation counts until the next measurement.
        let err = guard.reserve(free / 2).unwrap_err();
        assert!(matches!(err, StorageError::DiskFull { .. }), "{err}");
        assert!(!err.is_fatal());
        // A fresh measurement shows the space back (nothing was written).
        guard.state.lock().checked_at = None;
        guard.reserve(0).unwrap();
        assert!(SpaceGuard::new(dir.path().to_path_buf(), 0)
            .reserve(u64::MAX)
            .is_ok());
    }

    #[test]
    fn once_refusing_waits_for_ten_percent_above_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let free = free(dir.path());
        let guard = SpaceGuard::new(dir.path().to_path_buf(), free / 100 * 95);
        guard.reserve(0).unwrap();
        guard.state.lock().refusing = true;
        guard.state.lock().checked_at = None;
        // Above the floor but below floor + 10%.
        assert!(matches!(
            guard.reserve(0),
            Err(StorageError::DiskFull { .. })
        ));
    }

    #[test]
    fn a_poisoned_store_fails_fast() {
        let dir = tempfile::tempdir().unwrap();
        let guard = SpaceGuard::new(dir.path().to_path_buf(), 0);
        guard.reserve(1).unwrap();
        guard.observe(&StorageError::Poisoned);
        assert!(matches!(guard.reserve(1), Err(StorageError::Poisoned)));
    }
}
