//! Consumer groups: one supervised [`GroupCoordinator`](coordinator) actor per active group.
//!
//! ```text
//!  GroupManager (one per node)
//!   |  every 100 ms: which `__consumer_offsets` partitions does this node lead, at what epoch?
//!   |    gained p ─▶ read p's log (blocking pool) ─▶ wait until its high watermark covers what
//!   |               was read ─▶ spawn a GroupCoordinator per group found ─▶ route requests
//!   |    lost p   ─▶ stop p's coordinators (their requests now get NOT_COORDINATOR)
//!   `- GroupCoordinator{group}
//!        classic protocol (JoinGroup/SyncGroup/Heartbeat/LeaveGroup, client-side assignors)
//!        or consumer protocol (ConsumerGroupHeartbeat, server-side assignors)
//!        every state change and offset commit ─▶ Append to p ─▶ wait for p's high watermark
//!        ─▶ answer (so a committed offset survives the loss of the coordinator's node)
//! ```
//!
//! The group id picks the partition the way Kafka does (`abs(java hashCode) % partitions`), so
//! every node agrees on a group's coordinator: the leader of that partition.

pub mod assignor;
pub mod classic;
pub mod consumer;
pub mod consumer_protocol;
pub mod coordinator;
pub mod manager;
pub mod records;
pub mod service;
pub mod types;

use std::time::Duration;

pub use consumer::{TopicCatalog, TopicInfo};
pub use service::Groups;
pub use types::*;

/// Name of the internal topic holding group state and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Group coordinator settings (the `[groups]` table of the broker's configuration).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Partitions of `__consumer_offsets` (fixed once the topic exists).
    pub offsets_partitions: i32,
    /// Replication factor of `__consumer_offsets` (capped by the live nodes when created).
    pub offsets_replication_factor: i16,
    /// A new classic group waits this long for more members before its first rebalance.
    pub initial_rebalance_delay: Duration,
    /// Smallest session timeout a classic member may ask for.
    pub min_session_timeout: Duration,
    /// Largest session timeout a classic member may ask for.
    pub max_session_timeout: Duration,
    /// Most members in a group (`None`: no limit).
    pub max_size: Option<usize>,
    /// Offsets of a group that has been empty this long are deleted.
    pub offsets_retention: Duration,
    /// Consumer protocol: session timeout of members.
    pub consumer_session_timeout: Duration,
    /// Consumer protocol: heartbeat interval given to members.
    pub consumer_heartbeat_interval: Duration,
    /// Consumer protocol: server assignors offered; the first is the default.
    pub consumer_assignors: Vec<String>,
    /// Smallest `consumer.session.timeout.ms` a group config may set.
    pub consumer_min_session_timeout: Duration,
    /// Largest `consumer.session.timeout.ms` a group config may set.
    pub consumer_max_session_timeout: Duration,
    /// Smallest `consumer.heartbeat.interval.ms` a group config may set.
    pub consumer_min_heartbeat_interval: Duration,
    /// Largest `consumer.heartbeat.interval.ms` a group config may set.
    pub consumer_max_heartbeat_interval: Duration,
    /// How long a write to `__consumer_offsets` may take before the request fails.
    pub write_timeout: Duration,
    /// Largest metadata string of a committed offset.
    pub offset_metadata_max_bytes: usize,
    /// After this many records were appended to an offsets partition since its last
    /// compaction, its coordinators rewrite their live state and the segments below it are
    /// dropped (`__consumer_offsets` is not compacted by key as Kafka's is).
    pub offsets_compact_records: i64,
    /// `segment.bytes` of `__consumer_offsets` when it is created: compaction drops whole
    /// segments, so smaller segments free space sooner.
    pub offsets_segment_bytes: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            offsets_partitions: 16,
            offsets_replication_factor: 3,
            initial_rebalance_delay: Duration::from_millis(3000),
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(30 * 60),
            max_size: None,
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            consumer_session_timeout: Duration::from_secs(45),
            consumer_heartbeat_interval: Duration::from_secs(5),
            consumer_assignors: vec!["uniform".into(), "range".into()],
            // Kafka's group.consumer.{min,max}.{session.timeout,heartbeat.interval}.ms.
            consumer_min_session_timeout: Duration::from_secs(45),
            consumer_max_session_timeout: Duration::from_secs(60),
            consumer_min_heartbeat_interval: Duration::from_secs(5),
            consumer_max_heartbeat_interval: Duration::from_secs(15),
            write_timeout: Duration::from_secs(5),
            offset_metadata_max_bytes: 4096,
            offsets_compact_records: 100_000,
            offsets_segment_bytes: 8 << 20,
        }
    }
}

/// A group's own KIP-848 settings (dynamic group configs), over the node's [`GroupConfig`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupOverrides {
    /// `consumer.session.timeout.ms`, if the group sets it.
    pub session_timeout: Option<Duration>,
    /// `consumer.heartbeat.interval.ms`, if the group sets it.
    pub heartbeat_interval: Option<Duration>,
}

impl GroupOverrides {
    /// Whether the group sets nothing of its own.
    pub fn is_empty(&self) -> bool {
        self.session_timeout.is_none() && self.heartbeat_interval.is_none()
    }

    /// `config` with the group's own settings in place of the node's.
    pub fn apply(&self, config: &GroupConfig) -> GroupConfig {
        GroupConfig {
            consumer_session_timeout: self
                .session_timeout
                .unwrap_or(config.consumer_session_timeout),
            consumer_heartbeat_interval: self
                .heartbeat_interval
                .unwrap_or(config.consumer_heartbeat_interval),
            ..config.clone()
        }
    }
}

/// Partitions of `__consumer_offsets`: the topic's real count once it exists (a changed
/// `offsets_partitions` setting must not re-hash existing groups), else the configured one.
pub fn offsets_partitions(catalog: &dyn TopicCatalog, config: &GroupConfig) -> i32 {
    catalog
        .topic(OFFSETS_TOPIC)
        .map_or(config.offsets_partitions, |t| t.partitions)
}

/// The `__consumer_offsets` partition of `group_id`: Kafka's `abs(hashCode) % partitions`, with
/// Java's `String.hashCode` over UTF-16 code units.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group_id.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs maps i32::MIN to 0.
    let h = if h == i32::MIN { 0 } else { h.abs() };
    h % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_overrides_replace_only_what_they_set() {
        let node = GroupConfig::default();
        assert!(GroupOverrides::default().is_empty());
        let o = GroupOverrides {
            session_timeout: Some(Duration::from_secs(50)),
            heartbeat_interval: None,
        };
        let c = o.apply(&node);
        assert_eq!(c.consumer_session_timeout, Duration::from_secs(50));
        assert_eq!(
            c.consumer_heartbeat_interval,
            node.consumer_heartbeat_interval
        );
        assert_eq!(c.max_session_timeout, node.max_session_timeout);
    }

    #[test]
    fn partition_matches_java_hash_code() {
        // "hello".hashCode() == 99162322 in Java.
        assert_eq!(partition_for("hello", 50), 99162322 % 50);
        assert_eq!(partition_for("", 50), 0);
        // "polygenelubricants".hashCode() == i32::MIN, which Kafka's abs maps to 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // "my-group".hashCode() == -1906497762 in Java.
        assert_eq!(partition_for("my-group", 50), 1906497762 % 50);
    }
}
