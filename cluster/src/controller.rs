//! The single-node controller: topic catalogue and local replica placement.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use ractor::ActorRef;
use rivulet_actors::{ReplicaHandle, ReplicaManagerMsg, ReplicaSpec, TopicPartition};
use rivulet_storage::{PartitionId, StorageError, Store, TopicMeta};
use tracing::info;
use uuid::Uuid;

use crate::topic_config::{ConfigEntry, TopicDefaults};

/// Longest topic name Kafka accepts.
const TOPIC_NAME_MAX: usize = 249;
/// Most partitions one topic may have on this node (bounds memory and open keyspaces).
const PARTITIONS_MAX: i32 = 10_000;
const ACTOR_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Node-level settings the controller needs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This node's id.
    pub node_id: i32,
    /// Partitions of a topic created without a count (and of auto-created topics).
    pub default_partitions: i32,
    /// Replication factor used when a request leaves it unset.
    pub default_replication_factor: i16,
    /// Create unknown topics on Metadata/Produce requests.
    pub auto_create_topics: bool,
    /// Defaults for topic configs.
    pub topic_defaults: TopicDefaults,
}

/// Why a controller operation failed. The broker maps each to a Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The topic exists already.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// No such topic.
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    /// Illegal name.
    #[error("invalid topic name {name:?}: {why}")]
    InvalidTopicName {
        /// The name.
        name: String,
        /// What rule it breaks.
        why: String,
    },
    /// Bad partition count.
    #[error("{0}")]
    InvalidPartitions(String),
    /// Bad replication factor.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// Bad topic config.
    #[error("{0}")]
    InvalidConfig(String),
    /// Storage failed.
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    /// The replica actors could not be reached or failed.
    #[error("replica manager: {0}")]
    Replica(String),
}

/// A topic to create.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partition count, or `None` for the default.
    pub partitions: Option<i32>,
    /// Replication factor, or `None` for the default.
    pub replication_factor: Option<i16>,
    /// Topic config overrides.
    pub configs: BTreeMap<String, String>,
    /// Only check the request.
    pub validate_only: bool,
}

/// Where a partition lives (the view Metadata answers from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader node id, or -1 while offline.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
}

#[derive(Debug, Default)]
struct Catalogue {
    by_name: HashMap<String, TopicMeta>,
    by_id: HashMap<Uuid, String>,
}

/// The controller. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: ControllerConfig,
    store: Store,
    manager: ActorRef<ReplicaManagerMsg>,
    registry: rivulet_actors::ReplicaRegistry,
    catalogue: RwLock<Catalogue>,
    /// Serialises catalogue changes (create, delete, grow) so they never interleave.
    changes: tokio::sync::Mutex<()>,
}

/// Topic names Kafka accepts: `[a-zA-Z0-9._-]{1,249}`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let bad = |why: &str| {
        Err(ControllerError::InvalidTopicName {
            name: name.to_string(),
            why: why.to_string(),
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if name.len() > TOPIC_NAME_MAX {
        return bad("it is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Controller {
    /// Loads the catalogue and starts a replica for every partition of every known topic.
    pub async fn start(
        cfg: ControllerConfig,
        store: Store,
        manager: ActorRef<ReplicaManagerMsg>,
        registry: rivulet_actors::ReplicaRegistry,
    ) -> Result<Self, ControllerError> {
        let meta = store.clone();
        let topics = tokio::task::spawn_blocking(move || meta.metadata().list_topics())
            .await
            .map_err(|e| ControllerError::Replica(e.to_string()))??;
        let mut catalogue = Catalogue::default();
        for t in &topics {
            catalogue.by_id.insert(t.id, t.name.clone());
            catalogue.by_name.insert(t.name.clone(), t.clone());
        }
        let controller = Controller {
            inner: Arc::new(Inner {
                cfg,
                store,
                manager,
                registry,
                catalogue: RwLock::new(catalogue),
                changes: tokio::sync::Mutex::new(()),
            }),
        };
        for t in &topics {
            for p in 0..t.partitions {
                controller.ensure_replica(t, p).await?;
            }
        }
        info!(
            topics = topics.len(),
            "controller recovered topic catalogue"
        );
        Ok(controller)
    }

    /// Node-level settings.
    pub fn config(&self) -> &ControllerConfig {
        &self.inner.cfg
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.inner.cfg.node_id
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.inner.catalogue.read().by_name.get(name).cloned()
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<TopicMeta> {
        let cat = self.inner.catalogue.read();
        cat.by_id.get(&id).and_then(|n| cat.by_name.get(n)).cloned()
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<TopicMeta> {
        let mut v: Vec<_> = self
            .inner
            .catalogue
            .read()
            .by_name
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The local replica serving a partition, if running.
    pub fn replica(&self, tp: &TopicPartition) -> Option<ReplicaHandle> {
        self.inner.registry.get(tp)
    }

    /// Where each partition of `topic` lives.
    pub fn partitions(&self, topic: &TopicMeta) -> Vec<PartitionInfo> {
        let me = self.node_id();
        (0..topic.partitions)
            .map(|p| {
                let tp = TopicPartition::new(topic.name.as_str(), p);
                let online = self.inner.registry.get(&tp);
                PartitionInfo {
                    partition: p,
                    leader: if online.is_some() { me } else { -1 },
                    leader_epoch: online.map(|h| h.leader_epoch).unwrap_or(0),
                    replicas: vec![me],
                    isr: vec![me],
                }
            })
            .collect()
    }

    /// Effective configuration of a topic.
    pub fn describe_configs(&self, topic: &TopicMeta) -> Vec<ConfigEntry> {
        self.inner.cfg.topic_defaults.describe(&topic.configs)
    }

    /// Effective `min.insync.replicas` of a topic.
    pub fn min_insync_replicas(&self, topic: &TopicMeta) -> i64 {
        self.inner
            .cfg
            .topic_defaults
            .min_insync_replicas(&topic.configs)
    }

    /// Allocates a fresh idempotent-producer id.
    pub async fn allocate_producer_id(&self) -> Result<i64, ControllerError> {
        let store = self.inner.store.clone();
        Ok(
            tokio::task::spawn_blocking(move || store.metadata().allocate_producer_id())
                .await
                .map_err(|e| ControllerError::Replica(e.to_string()))??,
        )
    }

    async fn ensure_replica(
        &self,
        topic: &TopicMeta,
        partition: i32,
    ) -> Result<(), ControllerError> {
        let spec = ReplicaSpec {
            tp: TopicPartition::new(topic.name.as_str(), partition),
            id: PartitionId {
                topic_id: topic.id,
                partition,
            },
            config: self.inner.cfg.topic_defaults.log_config(&topic.configs),
            leader_epoch: 0,
        };
        ractor::call_t!(
            self.inner.manager,
            ReplicaManagerMsg::Ensure,
            ACTOR_CALL_TIMEOUT.as_millis() as u64,
            spec
        )
        .map_err(|e| ControllerError::Replica(e.to_string()))?
        .map_err(ControllerError::Replica)?;
        Ok(())
    }

    fn check_new_topic(&self, req: &NewTopic) -> Result<(i32, i16), ControllerError> {
        validate_topic_name(&req.name)?;
        if self.topic(&req.name).is_some() {
            return Err(ControllerError::TopicExists(req.name.clone()));
        }
        let partitions = req.partitions.unwrap_or(self.inner.cfg.default_partitions);
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(ControllerError::InvalidPartitions(format!(
                "partition count {partitions} is out of range 1..={PARTITIONS_MAX}"
            )));
        }
        let rf = req
            .replication_factor
            .unwrap_or(self.inner.cfg.default_replication_factor);
        if rf < 1 {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "replication factor {rf} must be at least 1"
            )));
        }
        if rf > 1 {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "replication factor {rf} is larger than the 1 node in this cluster"
            )));
        }
        self.inner
            .cfg
            .topic_defaults
            .validate(&req.configs)
            .map_err(ControllerError::InvalidConfig)?;
        Ok((partitions, rf))
    }

    /// Creates a topic and starts its replicas.
    pub async fn create_topic(&self, req: NewTopic) -> Result<TopicMeta, ControllerError> {
        let _guard = self.inner.changes.lock().await;
        let (partitions, replication_factor) = self.check_new_topic(&req)?;
        let meta = TopicMeta {
            name: req.name.clone(),
            id: Uuid::new_v4(),
            partitions,
            replication_factor,
            configs: req.configs.clone(),
            created_ms: now_ms(),
        };
        if req.validate_only {
            return Ok(meta);
        }
        let store = self.inner.store.clone();
        let m = meta.clone();
        tokio::task::spawn_blocking(move || store.metadata().create_topic(&m))
            .await
            .map_err(|e| ControllerError::Replica(e.to_string()))??;
        {
            let mut cat = self.inner.catalogue.write();
            cat.by_id.insert(meta.id, meta.name.clone());
            cat.by_name.insert(meta.name.clone(), meta.clone());
        }
        for p in 0..partitions {
            self.ensure_replica(&meta, p).await?;
        }
        info!(topic = %meta.name, partitions, "topic created");
        Ok(meta)
    }

    /// Creates `name` with defaults if auto-creation is on and it does not exist yet.
    pub async fn auto_create(&self, name: &str) -> Result<Option<TopicMeta>, ControllerError> {
        if let Some(t) = self.topic(name) {
            return Ok(Some(t));
        }
        if !self.inner.cfg.auto_create_topics {
            return Ok(None);
        }
        match self
            .create_topic(NewTopic {
                name: name.to_string(),
                ..Default::default()
            })
            .await
        {
            Ok(t) => Ok(Some(t)),
            Err(ControllerError::TopicExists(_)) => Ok(self.topic(name)),
            Err(e) => Err(e),
        }
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<TopicMeta, ControllerError> {
        let _guard = self.inner.changes.lock().await;
        let meta = self
            .topic(name)
            .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
        {
            let mut cat = self.inner.catalogue.write();
            cat.by_name.remove(name);
            cat.by_id.remove(&meta.id);
        }
        for p in 0..meta.partitions {
            let tp = TopicPartition::new(name, p);
            ractor::call_t!(
                self.inner.manager,
                |reply| ReplicaManagerMsg::Remove {
                    tp,
                    delete_data: true,
                    reply
                },
                ACTOR_CALL_TIMEOUT.as_millis() as u64
            )
            .map_err(|e| ControllerError::Replica(e.to_string()))?
            .map_err(ControllerError::Replica)?;
        }
        let store = self.inner.store.clone();
        let n = name.to_string();
        tokio::task::spawn_blocking(move || store.metadata().delete_topic(&n))
            .await
            .map_err(|e| ControllerError::Replica(e.to_string()))??;
        info!(topic = %name, "topic deleted");
        Ok(meta)
    }

    /// Grows a topic to `count` partitions.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        let _guard = self.inner.changes.lock().await;
        let mut meta = self
            .topic(name)
            .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
        if count <= meta.partitions {
            return Err(ControllerError::InvalidPartitions(format!(
                "topic {name:?} has {} partitions; the new count {count} must be larger",
                meta.partitions
            )));
        }
        if count > PARTITIONS_MAX {
            return Err(ControllerError::InvalidPartitions(format!(
                "partition count {count} is above the limit of {PARTITIONS_MAX}"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let old = meta.partitions;
        meta.partitions = count;
        let store = self.inner.store.clone();
        let m = meta.clone();
        tokio::task::spawn_blocking(move || store.metadata().put_topic(&m))
            .await
            .map_err(|e| ControllerError::Replica(e.to_string()))??;
        self.inner
            .catalogue
            .write()
            .by_name
            .insert(name.to_string(), meta.clone());
        for p in old..count {
            self.ensure_replica(&meta, p).await?;
        }
        info!(topic = %name, from = old, to = count, "partitions added");
        Ok(())
    }

    /// Replaces a topic's config overrides (AlterConfigs) and applies them to its replicas.
    pub async fn alter_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        let _guard = self.inner.changes.lock().await;
        let mut meta = self
            .topic(name)
            .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
        self.inner
            .cfg
            .topic_defaults
            .validate(&configs)
            .map_err(ControllerError::InvalidConfig)?;
        if validate_only {
            return Ok(());
        }
        meta.configs = configs;
        let store = self.inner.store.clone();
        let m = meta.clone();
        tokio::task::spawn_blocking(move || store.metadata().put_topic(&m))
            .await
            .map_err(|e| ControllerError::Replica(e.to_string()))??;
        self.inner
            .catalogue
            .write()
            .by_name
            .insert(name.to_string(), meta.clone());
        for p in 0..meta.partitions {
            self.ensure_replica(&meta, p).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["a", "orders", "a.b_c-D9", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "has space",
            "slash/no",
            "ü",
            &"x".repeat(250),
        ] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }
}
