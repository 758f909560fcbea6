//! [`MetadataStore`]: topics (as JSON) and producer-id allocation, in the `_meta` keyspace.
//! Every write is fsynced before it returns: metadata changes are rare and must survive.

use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::Mutex;

use crate::{Result, StorageError, TopicMeta};

const KEYSPACE: &str = "_meta";
const TOPIC_PREFIX: &[u8] = b"topic/";
const PRODUCER_ID_BLOCK_KEY: &[u8] = b"producer_id_block";
/// Producer ids reserved per disk write; a restart skips the rest of the block.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// Topics and producer ids of a node. Cheap to clone; `Send + Sync`; calls block on disk.
#[derive(Clone)]
pub struct MetadataStore {
    inner: Arc<MetaInner>,
}

struct MetaInner {
    db: Database,
    keyspace: Keyspace,
    /// Serialises writes (so create is check-and-insert) and holds the producer-id block.
    writer: Mutex<ProducerIdBlock>,
}

#[derive(Debug)]
struct ProducerIdBlock {
    next: i64,
    end: i64,
}

impl std::fmt::Debug for MetadataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataStore").finish_non_exhaustive()
    }
}

fn topic_key(name: &str) -> Vec<u8> {
    let mut k = TOPIC_PREFIX.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

impl MetadataStore {
    pub(crate) fn open(db: Database) -> Result<MetadataStore> {
        let keyspace = db.keyspace(KEYSPACE, KeyspaceCreateOptions::default)?;
        let end = match keyspace.get(PRODUCER_ID_BLOCK_KEY)? {
            Some(v) => {
                let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| {
                    StorageError::CorruptLog(format!("producer id block of {} bytes", v.len()))
                })?;
                i64::from_be_bytes(bytes)
            }
            None => 0,
        };
        Ok(MetadataStore {
            inner: Arc::new(MetaInner {
                db,
                keyspace,
                writer: Mutex::new(ProducerIdBlock { next: end, end }),
            }),
        })
    }

    fn write(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let mut batch = self
            .inner
            .db
            .batch()
            .durability(Some(PersistMode::SyncData));
        match value {
            Some(v) => batch.insert(&self.inner.keyspace, key, v),
            None => batch.remove(&self.inner.keyspace, key),
        }
        batch.commit()?;
        Ok(())
    }

    /// Stores a new topic; [`StorageError::TopicExists`] if the name is taken.
    pub fn create_topic(&self, meta: &TopicMeta) -> Result<()> {
        let _writer = self.inner.writer.lock();
        if self.inner.keyspace.contains_key(topic_key(&meta.name))? {
            return Err(StorageError::TopicExists(meta.name.clone()));
        }
        self.write(&topic_key(&meta.name), Some(&serde_json::to_vec(meta)?))
    }

    /// Stores a topic, replacing any with the same name.
    pub fn put_topic(&self, meta: &TopicMeta) -> Result<()> {
        let _writer = self.inner.writer.lock();
        self.write(&topic_key(&meta.name), Some(&serde_json::to_vec(meta)?))
    }

    /// The topic called `name`.
    pub fn get_topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        match self.inner.keyspace.get(topic_key(name))? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Every topic, by name.
    pub fn list_topics(&self) -> Result<Vec<TopicMeta>> {
        let mut out = Vec::new();
        for guard in self.inner.keyspace.prefix(TOPIC_PREFIX) {
            let (_, v) = guard.into_inner()?;
            out.push(serde_json::from_slice(&v)?);
        }
        Ok(out)
    }

    /// Removes a topic's metadata and returns it (its logs are deleted separately, with
    /// `Store::delete_log`).
    pub fn delete_topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        let _writer = self.inner.writer.lock();
        let Some(meta) = self.get_topic(name)? else {
            return Ok(None);
        };
        self.write(&topic_key(name), None)?;
        Ok(Some(meta))
    }

    /// A producer id never handed out before by this store, increasing, also across
    /// restarts. Ids are reserved on disk a block of [`PRODUCER_ID_BLOCK_SIZE`] at a time,
    /// so most calls do no I/O.
    pub fn allocate_producer_id(&self) -> Result<i64> {
        let mut block = self.inner.writer.lock();
        if block.next >= block.end {
            let end = block
                .next
                .checked_add(PRODUCER_ID_BLOCK_SIZE)
                .ok_or_else(|| StorageError::CorruptLog("producer id space exhausted".into()))?;
            self.write(PRODUCER_ID_BLOCK_KEY, Some(&end.to_be_bytes()))?;
            block.end = end;
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }
}
