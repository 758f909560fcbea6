//! openraft storage (v2) on the node's fjall database.
//!
//! Two keyspaces of their own:
//! - `raft_log`: log entries, key = big-endian index, value = JSON `Entry`.
//! - `raft_meta`: `vote`, `committed`, `purged`, `sm` (the state machine: image, last applied
//!   log id, last membership) and `snapshot` (the current snapshot, meta + data).
//!
//! Everything Raft safety depends on (vote, appended entries, truncation, purge) is written with
//! `PersistMode::SyncData` before it is acknowledged. The state machine is small and is persisted
//! (also synced) after every applied batch, so a restart resumes from the last applied entry.
//! fjall calls that write run on tokio's blocking pool; reads of the tiny metadata are inline.

use std::fmt;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, LogState, RaftLogReader, RaftSnapshotBuilder,
    Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::state::{MetaResponse, MetadataImage, NodeId};
use super::TypeConfig;

const LOG_KEYSPACE: &str = "raft_log";
const META_KEYSPACE: &str = "raft_meta";
const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const PURGED_KEY: &[u8] = b"purged";
const SM_KEY: &[u8] = b"sm";
const SNAPSHOT_KEY: &[u8] = b"snapshot";

type SErr = StorageError<NodeId>;

/// The two keyspaces and their database.
pub(crate) struct RaftDb {
    db: Database,
    log: Keyspace,
    meta: Keyspace,
}

impl fmt::Debug for RaftDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaftDb").finish_non_exhaustive()
    }
}

impl RaftDb {
    /// Opens (creating) the controller's keyspaces. Blocks.
    pub(crate) fn open(db: Database) -> Result<Arc<RaftDb>, fjall::Error> {
        let log = db.keyspace(LOG_KEYSPACE, KeyspaceCreateOptions::default)?;
        let meta = db.keyspace(META_KEYSPACE, KeyspaceCreateOptions::default)?;
        Ok(Arc::new(RaftDb { db, log, meta }))
    }

    fn get_json<T: for<'de> Deserialize<'de>>(&self, key: &[u8]) -> Result<Option<T>, AnyError> {
        match self.meta.get(key).map_err(|e| AnyError::new(&e))? {
            Some(v) => Ok(Some(
                serde_json::from_slice(&v).map_err(|e| AnyError::new(&e))?,
            )),
            None => Ok(None),
        }
    }

    /// Whether the Raft log holds anything (entries or a vote): a pristine node is neither.
    pub(crate) fn is_pristine(&self) -> Result<bool, fjall::Error> {
        Ok(self.log.first_key_value().is_none()
            && !self.meta.contains_key(VOTE_KEY)?
            && !self.meta.contains_key(PURGED_KEY)?)
    }
}

fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, AnyError> {
    serde_json::to_vec(v).map_err(|e| AnyError::new(&e))
}

/// Runs a blocking fjall job on the blocking pool.
async fn blocking<T, F>(f: F) -> Result<T, AnyError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, AnyError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AnyError::new(&e))?
}

/// A synced batch of meta writes and log removals/insertions.
enum Op {
    Meta(&'static [u8], Option<Vec<u8>>),
    Log([u8; 8], Option<Vec<u8>>),
}

fn commit(db: &RaftDb, ops: Vec<Op>, durability: Option<PersistMode>) -> Result<(), AnyError> {
    let mut batch = db.db.batch().durability(durability);
    for op in ops {
        match op {
            Op::Meta(k, Some(v)) => batch.insert(&db.meta, k, v),
            Op::Meta(k, None) => batch.remove(&db.meta, k),
            Op::Log(k, Some(v)) => batch.insert(&db.log, k, v),
            Op::Log(k, None) => batch.remove(&db.log, k),
        }
    }
    batch.commit().map_err(|e| AnyError::new(&e))
}

async fn write(
    db: &Arc<RaftDb>,
    ops: Vec<Op>,
    durability: Option<PersistMode>,
) -> Result<(), AnyError> {
    let db = db.clone();
    blocking(move || commit(&db, ops, durability)).await
}

/// The Raft log (and vote, committed index, purge point).
#[derive(Clone, Debug)]
pub(crate) struct LogStore {
    db: Arc<RaftDb>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<RaftDb>) -> LogStore {
        LogStore { db }
    }

    /// Keys of the entries in `range` (blocking).
    fn keys_in(&self, from: Bound<u64>, to: Bound<u64>) -> Result<Vec<[u8; 8]>, AnyError> {
        let range = (
            from.map(|i| log_key(i).to_vec()),
            to.map(|i| log_key(i).to_vec()),
        );
        let mut keys = Vec::new();
        for guard in self.db.log.range::<Vec<u8>, _>(range) {
            let (k, _) = guard.into_inner().map_err(|e| AnyError::new(&e))?;
            let k: [u8; 8] = k
                .as_ref()
                .try_into()
                .map_err(|_| AnyError::error("raft log key of unexpected length"))?;
            keys.push(k);
        }
        Ok(keys)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        let from = range.start_bound().cloned().map(|i| log_key(i).to_vec());
        let to = range.end_bound().cloned().map(|i| log_key(i).to_vec());
        let mut out = Vec::new();
        for guard in self.db.log.range::<Vec<u8>, _>((from, to)) {
            let (_, v) = guard
                .into_inner()
                .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
            let entry: Entry<TypeConfig> = serde_json::from_slice(&v)
                .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let purged: Option<LogId<NodeId>> = self
            .db
            .get_json(PURGED_KEY)
            .map_err(StorageIOError::read_logs)?;
        let last = match self.db.log.last_key_value() {
            Some(guard) => {
                let (_, v) = guard
                    .into_inner()
                    .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
                let entry: Entry<TypeConfig> = serde_json::from_slice(&v)
                    .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
                Some(entry.log_id)
            }
            None => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SErr> {
        let v = json(vote).map_err(StorageIOError::write_vote)?;
        write(
            &self.db,
            vec![Op::Meta(VOTE_KEY, Some(v))],
            Some(PersistMode::SyncData),
        )
        .await
        .map_err(|e| StorageIOError::write_vote(e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SErr> {
        Ok(self
            .db
            .get_json(VOTE_KEY)
            .map_err(StorageIOError::read_vote)?)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SErr> {
        let v = json(&committed).map_err(StorageIOError::write)?;
        // Not synced: losing it only means re-applying from the state machine's last applied.
        write(&self.db, vec![Op::Meta(COMMITTED_KEY, Some(v))], None)
            .await
            .map_err(|e| StorageIOError::write(e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SErr> {
        let c: Option<Option<LogId<NodeId>>> = self
            .db
            .get_json(COMMITTED_KEY)
            .map_err(StorageIOError::read)?;
        Ok(c.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut ops = Vec::new();
        for entry in entries {
            let v = json(&entry).map_err(StorageIOError::write_logs)?;
            ops.push(Op::Log(log_key(entry.log_id.index), Some(v)));
        }
        match write(&self.db, ops, Some(PersistMode::SyncData)).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let keys = self
            .keys_in(Bound::Included(log_id.index), Bound::Unbounded)
            .map_err(StorageIOError::write_logs)?;
        let ops = keys.into_iter().map(|k| Op::Log(k, None)).collect();
        write(&self.db, ops, Some(PersistMode::SyncData))
            .await
            .map_err(|e| StorageIOError::write_logs(e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let keys = self
            .keys_in(Bound::Unbounded, Bound::Included(log_id.index))
            .map_err(StorageIOError::write_logs)?;
        let mut ops: Vec<Op> = keys.into_iter().map(|k| Op::Log(k, None)).collect();
        let v = json(&Some(log_id)).map_err(StorageIOError::write_logs)?;
        ops.push(Op::Meta(PURGED_KEY, Some(v)));
        write(&self.db, ops, Some(PersistMode::SyncData))
            .await
            .map_err(|e| StorageIOError::write_logs(e).into())
    }
}

/// What the state machine persists (and what a snapshot holds).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SmState {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    image: MetadataImage,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// The metadata state machine. Publishes the image on a watch after every applied batch.
#[derive(Debug)]
pub(crate) struct StateMachineStore {
    db: Arc<RaftDb>,
    state: SmState,
    image_tx: watch::Sender<Arc<MetadataImage>>,
    snapshots_built: u64,
}

impl StateMachineStore {
    /// Loads the persisted state machine (blocking read of one key).
    pub(crate) fn open(
        db: Arc<RaftDb>,
    ) -> Result<(StateMachineStore, watch::Receiver<Arc<MetadataImage>>), AnyError> {
        let state: SmState = db.get_json(SM_KEY)?.unwrap_or_default();
        let (image_tx, image_rx) = watch::channel(Arc::new(state.image.clone()));
        Ok((
            StateMachineStore {
                db,
                state,
                image_tx,
                snapshots_built: 0,
            },
            image_rx,
        ))
    }

    async fn persist(&self, extra: Option<Op>) -> Result<(), AnyError> {
        let mut ops = vec![Op::Meta(SM_KEY, Some(json(&self.state)?))];
        ops.extend(extra);
        write(&self.db, ops, Some(PersistMode::SyncData)).await
    }

    fn publish(&self) {
        self.image_tx
            .send_replace(Arc::new(self.state.image.clone()));
    }
}

/// Builds a snapshot from a copy of the state taken when the builder was made.
#[derive(Debug)]
pub(crate) struct SnapshotBuilder {
    db: Arc<RaftDb>,
    state: SmState,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let data = json(&self.state).map_err(StorageIOError::read_state_machine)?;
        let id = match &self.state.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.seq),
            None => format!("none-{}", self.seq),
        };
        let meta = SnapshotMeta {
            last_log_id: self.state.last_applied,
            last_membership: self.state.last_membership.clone(),
            snapshot_id: id,
        };
        let stored = json(&StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        })
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        write(
            &self.db,
            vec![Op::Meta(SNAPSHOT_KEY, Some(stored))],
            Some(PersistMode::SyncData),
        )
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), SErr> {
        Ok((self.state.last_applied, self.state.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MetaResponse>, SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            self.state.last_applied = Some(entry.log_id);
            let resp = match entry.payload {
                EntryPayload::Blank => {
                    self.state.image.version = index;
                    MetaResponse::Ok
                }
                EntryPayload::Normal(cmd) => self.state.image.apply(index, &cmd),
                EntryPayload::Membership(m) => {
                    self.state.image.version = index;
                    self.state.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    MetaResponse::Ok
                }
            };
            out.push(resp);
        }
        self.persist(None)
            .await
            .map_err(StorageIOError::write_state_machine)?;
        self.publish();
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots_built += 1;
        SnapshotBuilder {
            db: self.db.clone(),
            state: self.state.clone(),
            seq: self.snapshots_built,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SErr> {
        let data = snapshot.into_inner();
        let mut state: SmState = serde_json::from_slice(&data).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        state.last_applied = meta.last_log_id;
        state.last_membership = meta.last_membership.clone();
        state.image.version = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        self.state = state;
        let stored = json(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        self.persist(Some(Op::Meta(SNAPSHOT_KEY, Some(stored))))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        let stored: Option<StoredSnapshot> = self
            .db
            .get_json(SNAPSHOT_KEY)
            .map_err(|e| StorageIOError::read_snapshot(None, e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{CommittedLeaderId, Membership};
    use rivulet_storage::{Store, StoreConfig};
    use tempfile::TempDir;

    use super::*;
    use crate::raft::state::{MetaCommand, NodeRecord};

    /// `Store` first: it must close before its directory is removed.
    type Guard = (Store, TempDir);

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, Guard> for Builder {
        async fn build(&self) -> Result<(Guard, LogStore, StateMachineStore), SErr> {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
            let db = RaftDb::open(store.database().clone()).unwrap();
            let (sm, _) = StateMachineStore::open(db.clone()).unwrap();
            Ok(((store, dir), LogStore::new(db), sm))
        }
    }

    /// openraft's own conformance suite for log and state machine storage.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }

    fn open(
        dir: &std::path::Path,
    ) -> (
        Store,
        LogStore,
        StateMachineStore,
        watch::Receiver<Arc<MetadataImage>>,
    ) {
        let store = Store::open(dir, StoreConfig::default()).unwrap();
        let db = RaftDb::open(store.database().clone()).unwrap();
        let (sm, rx) = StateMachineStore::open(db.clone()).unwrap();
        (store, LogStore::new(db), sm, rx)
    }

    fn entry(term: u64, index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload,
        }
    }

    fn register(id: NodeId) -> EntryPayload<TypeConfig> {
        EntryPayload::Normal(MetaCommand::RegisterNode(NodeRecord {
            id,
            kafka_host: "h".into(),
            kafka_port: 1,
            cluster_addr: format!("a{id}"),
            controller_eligible: true,
            fenced: false,
        }))
    }

    #[tokio::test]
    async fn log_vote_and_state_machine_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let membership = Membership::new(
            vec![[1u64].into()],
            BTreeMap::from([(1u64, BasicNode::new("a1"))]),
        );
        {
            let (_store, mut log, mut sm, rx) = open(dir.path());
            assert!(log.db.is_pristine().unwrap());
            log.save_vote(&Vote::new(3, 1)).await.unwrap();
            let entries = vec![
                entry(1, 0, EntryPayload::Membership(membership.clone())),
                entry(1, 1, register(1)),
                entry(1, 2, register(2)),
                entry(1, 3, EntryPayload::Blank),
            ];
            log.blocking_append(entries.clone()).await.unwrap();
            log.save_committed(Some(entries[2].log_id)).await.unwrap();
            let out = sm.apply(entries[..3].to_vec()).await.unwrap();
            assert_eq!(out, vec![MetaResponse::Ok; 3]);
            assert_eq!(rx.borrow().nodes.len(), 2);
            assert_eq!(rx.borrow().version, 2);
            // Truncate the uncommitted tail, purge the head.
            log.truncate(entries[3].log_id).await.unwrap();
            log.purge(entries[0].log_id).await.unwrap();
        }
        let (_store, mut log, mut sm, rx) = open(dir.path());
        assert!(!log.db.is_pristine().unwrap());
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(0));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(2));
        assert_eq!(
            log.read_committed().await.unwrap().map(|l| l.index),
            Some(2)
        );
        let got = log.try_get_log_entries(0..10).await.unwrap();
        assert_eq!(
            got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let (applied, m) = sm.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(2));
        assert_eq!(m.membership(), &membership);
        assert_eq!(rx.borrow().nodes.len(), 2);
        assert_eq!(rx.borrow().version, 2);
    }

    #[tokio::test]
    async fn snapshot_moves_the_image_to_another_node() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_s1, _log1, mut sm1, rx1) = open(d1.path());
        let (_s2, _log2, mut sm2, rx2) = open(d2.path());
        sm1.apply(vec![entry(1, 1, register(1)), entry(1, 2, register(7))])
            .await
            .unwrap();
        let snap = sm1
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(2));
        let current = sm1.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snap.meta);

        let mut data = sm2.begin_receiving_snapshot().await.unwrap();
        data.get_mut().extend_from_slice(snap.snapshot.get_ref());
        sm2.install_snapshot(&snap.meta, data).await.unwrap();
        assert_eq!(*rx2.borrow(), *rx1.borrow());
        let (applied, _) = sm2.applied_state().await.unwrap();
        assert_eq!(applied, snap.meta.last_log_id);
        assert_eq!(
            sm2.get_current_snapshot().await.unwrap().unwrap().meta,
            snap.meta
        );
    }
}
