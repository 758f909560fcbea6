//! [`Store`]: the node's fjall database and the partition logs in it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fjall::{Database, PersistMode};
use parking_lot::Mutex;
use tracing::{info, warn};

use crate::log::{parse_segment_name, segment_prefix, WeakLog};
use crate::space::SpaceGuard;
use crate::{LogConfig, PartitionId, PartitionLog, Result, StorageError, StoreConfig};

const MIB: u64 = 1024 * 1024;
/// fjall refuses a smaller journal limit.
const JOURNAL_BYTES_MIN: u64 = 64 * MIB;
/// fjall refuses a smaller write buffer limit.
const WRITE_BUFFER_BYTES_MIN: u64 = MIB;
/// Directory of the segment files, inside the store's directory (fjall reads only its own
/// `keyspaces/` and `journals/` there).
const SEGMENTS_DIR: &str = "segments";
/// Where the store records the format of its partition logs (in fjall's `_meta` keyspace).
const FORMAT_KEY: &[u8] = b"log_format";
/// Log format 2: batches in segment files, index entries in fjall. Format 1 (no marker) kept
/// the batches inside fjall.
const LOG_FORMAT: u8 = 2;

/// The node's storage. Cheap to clone (an `Arc` inside); `Send + Sync`.
///
/// Opening takes fjall's lock file: one `Store` per directory per process.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    db: Database,
    dir: PathBuf,
    /// Refuses appends below the free-space floor; shared by every log.
    space: Arc<SpaceGuard>,
    /// The log cleaner's node-wide budget and counters; shared by every log.
    cleaner: Arc<crate::log::Cleaner>,
    /// The live handle of each opened log, so a reopen or delete can close it first. The
    /// per-partition mutex serialises open/delete of one partition without blocking others.
    open_logs: Mutex<HashMap<PartitionId, Arc<Mutex<WeakLog>>>>,
    /// Segment keyspace names found at open, by partition, for each log's first open. Without
    /// it every open lists and parses every keyspace of the node: quadratic in partitions, and
    /// what bounded start-up with thousands of them. Valid until the first open or delete of
    /// that log (nothing else creates or drops its segments), which take their entry out.
    recovered_segments: Mutex<HashMap<PartitionId, Vec<String>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating or recovering) the store in `dir`. Replays fjall's journal: what was
    /// handed to the OS before a crash is back.
    pub fn open(dir: &Path, cfg: StoreConfig) -> Result<Store> {
        std::fs::create_dir_all(dir)?;
        let mut builder = Database::builder(dir)
            .cache_size(cfg.cache_bytes)
            .max_journaling_size(cfg.journal_bytes_max.max(JOURNAL_BYTES_MIN));
        if cfg.write_buffer_bytes_max > 0 {
            // Marked deprecated ("todo") in fjall 3 but it is the only global memtable limit.
            #[allow(deprecated)]
            {
                builder = builder.max_write_buffer_size(Some(
                    cfg.write_buffer_bytes_max.max(WRITE_BUFFER_BYTES_MIN),
                ));
            }
        }
        let db = builder.open()?;
        let mut recovered_segments: HashMap<PartitionId, Vec<String>> = HashMap::new();
        for name in db.list_keyspace_names() {
            if let Some(id) = parse_log_id(&name) {
                recovered_segments
                    .entry(id)
                    .or_default()
                    .push(name.to_string());
            }
        }
        check_log_format(&db, dir, &recovered_segments)?;
        remove_orphan_log_dirs(dir, &recovered_segments)?;
        info!(
            dir = %dir.display(),
            keyspaces = db.keyspace_count(),
            logs = recovered_segments.len(),
            "store opened"
        );
        let store = Store {
            inner: Arc::new(StoreInner {
                db,
                dir: dir.to_path_buf(),
                space: Arc::new(SpaceGuard::new(dir.to_path_buf(), cfg.free_bytes_min)),
                cleaner: Arc::new(crate::log::Cleaner::new(cfg.cleaner)),
                open_logs: Mutex::new(HashMap::new()),
                recovered_segments: Mutex::new(recovered_segments),
            }),
        };
        let weak = Arc::downgrade(&store.inner);
        store.inner.space.set_reclaim(Box::new(move || {
            if let Some(inner) = weak.upgrade() {
                Store { inner }.flush_memtables();
            }
        }));
        Ok(store)
    }

    /// Seals every memtable that holds data, so fjall's workers flush them, evict the sealed
    /// journals, and with them drop the last handles of deleted keyspaces, whose files then
    /// go. Costs one small table per keyspace written since its last flush.
    fn flush_memtables(&self) {
        let db = &self.inner.db;
        // Keyspaces that are never deleted are opened by name. Segment keyspaces are taken
        // from the open logs instead: opening a deleted segment by name would create it again.
        let mut keyspaces: Vec<fjall::Keyspace> = db
            .list_keyspace_names()
            .iter()
            .filter(|n| !n.starts_with("log."))
            .filter_map(|n| db.keyspace(n, fjall::KeyspaceCreateOptions::default).ok())
            .collect();
        let slots: Vec<Arc<Mutex<WeakLog>>> =
            self.inner.open_logs.lock().values().cloned().collect();
        for slot in slots {
            // A busy slot is being opened or deleted; never wait for it (lock order).
            if let Some(log) = slot.try_lock().and_then(|s| s.upgrade()) {
                keyspaces.extend(log.keyspaces());
            }
        }
        let mut sealed = 0usize;
        for ks in &keyspaces {
            match ks.rotate_memtable() {
                Ok(true) => sealed += 1,
                Ok(false) => {}
                Err(e) => warn!(keyspace = ?ks.name(), error = %e, "could not seal a memtable"),
            }
        }
        info!(
            keyspaces = keyspaces.len(),
            sealed, "disk nearly full: flushing memtables so deleted data frees its space"
        );
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The node's fjall database, for components that keep their own keyspaces in it (the
    /// Raft controller's log and state machine). Callers own the keyspace names they open
    /// (they must not start with `log.` or be `_meta`) and should keep fjall writes (which
    /// may fsync) off tokio worker threads.
    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    fn slot(&self, id: PartitionId) -> Arc<Mutex<WeakLog>> {
        self.inner.open_logs.lock().entry(id).or_default().clone()
    }

    /// Opens the log of `id`, creating it empty (at offset 0) or recovering it from disk.
    ///
    /// A handle from an earlier `open_log` of the same partition that is still alive is
    /// closed first (its writes and reads then fail with
    /// [`crate::StorageError::LogClosed`]): there is only ever one writer per log.
    ///
    /// Cost: lists the database's keyspaces and scans the index entries of the log (not the
    /// batch data).
    pub fn open_log(&self, id: PartitionId, cfg: LogConfig) -> Result<PartitionLog> {
        let slot = self.slot(id);
        let mut slot = slot.lock();
        let known = self.inner.recovered_segments.lock().remove(&id);
        let open = || {
            PartitionLog::open(
                self.inner.db.clone(),
                self.inner.space.clone(),
                self.inner.cleaner.clone(),
                id,
                self.log_dir(id),
                cfg,
                known,
            )
        };
        let log = match slot.upgrade() {
            Some(previous) => previous.close_and(open)?,
            None => open()?,
        };
        *slot = log.downgrade();
        Ok(log)
    }

    /// Deletes every segment of `id`. A live handle of the log is closed first. Opening the
    /// log again afterwards gives an empty log starting at 0.
    pub fn delete_log(&self, id: PartitionId) -> Result<()> {
        let slot = self.slot(id);
        let mut slot = slot.lock();
        self.inner.recovered_segments.lock().remove(&id);
        let delete = || -> Result<usize> {
            let names: Vec<String> = self
                .inner
                .db
                .list_keyspace_names()
                .iter()
                .filter(|n| parse_segment_name(id, n).is_some())
                .map(|n| n.to_string())
                .collect();
            for name in &names {
                let keyspace = self
                    .inner
                    .db
                    .keyspace(name, fjall::KeyspaceCreateOptions::default)?;
                self.inner.db.delete_keyspace(keyspace)?;
            }
            // The files after the keyspaces: a crash in between leaves files nothing refers
            // to, which the next open of the log removes.
            match std::fs::remove_dir_all(self.log_dir(id)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            Ok(names.len())
        };
        let deleted = match slot.upgrade() {
            Some(previous) => previous.close_and(|| {
                previous.forget_segments();
                delete()
            }),
            None => delete(),
        }
        .inspect_err(|e| self.inner.space.observe(e))?;
        *slot = WeakLog::default();
        drop(slot);
        self.inner.open_logs.lock().remove(&id);
        info!(partition = %id, segments = deleted, "log deleted");
        self.inner.space.deleted();
        Ok(())
    }

    /// What the log cleaner did since the store was opened (for /metrics).
    pub fn cleaner_stats(&self) -> crate::CleanerStats {
        self.inner.cleaner.stats()
    }

    /// Bytes the segment files of every log in the store take (their lengths), whether the
    /// log is open or not. Read from the files rather than summed from the open logs so that
    /// it shows what the disk holds (a deleted topic's files until they are removed, logs no
    /// replica has opened yet). One directory listing and one `stat` per file: blocks on disk.
    pub fn segments_disk_bytes(&self) -> Result<u64> {
        let root = self.inner.dir.join(SEGMENTS_DIR);
        let logs = match std::fs::read_dir(&root) {
            Ok(logs) => logs,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut total = 0u64;
        for log in logs {
            let files = match std::fs::read_dir(log?.path()) {
                Ok(files) => files,
                // Deleted (delete_log, retention) between the two listings.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            for file in files {
                let len = match file.and_then(|f| f.metadata()) {
                    Ok(m) if m.is_file() => m.len(),
                    Ok(_) => 0,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                    Err(e) => return Err(e.into()),
                };
                total = total.saturating_add(len);
            }
        }
        Ok(total)
    }

    /// The partitions that have a log in this store (for finding logs of deleted topics).
    pub fn log_ids(&self) -> Vec<PartitionId> {
        let mut ids: Vec<PartitionId> = self
            .inner
            .db
            .list_keyspace_names()
            .iter()
            .filter_map(|n| parse_log_id(n))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// fsyncs the open logs' segment files and the journal: everything written so far
    /// survives a power loss.
    pub fn sync(&self) -> Result<()> {
        let slots: Vec<Arc<Mutex<WeakLog>>> =
            self.inner.open_logs.lock().values().cloned().collect();
        for slot in slots {
            let log = slot.lock().upgrade();
            if let Some(log) = log {
                log.sync()?;
            }
        }
        self.inner.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    /// The directory of the segment files of `id`.
    fn log_dir(&self, id: PartitionId) -> PathBuf {
        log_dir(&self.inner.dir, id)
    }
}

/// Removes segment directories of partitions that have no segment keyspace: what a crash in
/// the middle of `delete_log` leaves (keyspaces go first). No log is open yet.
fn remove_orphan_log_dirs(
    store_dir: &Path,
    logs: &HashMap<PartitionId, Vec<String>>,
) -> Result<()> {
    let root = store_dir.join(SEGMENTS_DIR);
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let known: std::collections::HashSet<std::ffi::OsString> =
        logs.keys().map(|id| log_dir_name(*id).into()).collect();
    for entry in entries {
        let entry = entry?;
        if !known.contains(&entry.file_name()) {
            warn!(dir = %entry.path().display(), "removing segment files of a deleted log");
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

fn log_dir_name(id: PartitionId) -> String {
    format!("{}.{}", id.topic_id.simple(), id.partition)
}

fn log_dir(store_dir: &Path, id: PartitionId) -> PathBuf {
    store_dir.join(SEGMENTS_DIR).join(log_dir_name(id))
}

/// Marks a new store with the current log format, upgrades a store of format 1 (batches
/// inside fjall) in place, and refuses a format it does not know. Data is never silently
/// ignored.
fn check_log_format(
    db: &Database,
    dir: &Path,
    logs: &HashMap<PartitionId, Vec<String>>,
) -> Result<()> {
    let meta = db.keyspace("_meta", fjall::KeyspaceCreateOptions::default)?;
    match meta.get(FORMAT_KEY)? {
        Some(v) if v.as_ref() == [LOG_FORMAT] => return Ok(()),
        Some(v) => {
            return Err(StorageError::IncompatibleFormat(format!(
                "{} holds partition logs in format {:?}; this version reads formats 1 and \
                 {LOG_FORMAT}: run the (newer) Rivulet version that wrote it",
                dir.display(),
                v.as_ref()
            )))
        }
        None if logs.is_empty() => {}
        None => {
            let started = std::time::Instant::now();
            info!(
                dir = %dir.display(), logs = logs.len(),
                "upgrading partition logs from format 1 (batches in fjall) to format 2 \
                 (segment files): each batch is copied once"
            );
            let mut bytes = 0u64;
            for (id, names) in logs {
                bytes += crate::log::upgrade_log_v1(db, *id, names, &log_dir(dir, *id))?;
            }
            info!(
                logs = logs.len(),
                bytes,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "partition logs upgraded to format 2"
            );
        }
    }
    meta.insert(FORMAT_KEY, [LOG_FORMAT])?;
    db.persist(PersistMode::SyncData)?;
    Ok(())
}

/// `log.<uuid>.<partition>.<base>` -> the partition, if the name is one of ours.
fn parse_log_id(name: &str) -> Option<PartitionId> {
    let mut parts = name.strip_prefix("log.")?.split('.');
    let topic_id = uuid::Uuid::try_parse(parts.next()?).ok()?;
    let partition = parts.next()?.parse().ok()?;
    let id = PartitionId {
        topic_id,
        partition,
    };
    (name.starts_with(&segment_prefix(id)) && parts.next().is_some() && parts.next().is_none())
        .then_some(id)
}
