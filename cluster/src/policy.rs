//! Cluster-wide policies that more than one layer applies, each decided here once.
//!
//! - **Internal topics**: topics the node itself writes (group state and offsets; soon
//!   transaction state). Clients may read and describe them but not produce to them, delete
//!   them, change their partitions or delete records from them, and regex subscriptions skip
//!   them. The broker asks [`is_internal`]; the group coordinators are told through their
//!   catalog (`TopicInfo::internal`).
//! - **Minimum in-sync replicas**: which `min.insync.replicas` an `acks=all` write to a topic
//!   needs ([`min_insync_replicas`]). The check itself (refuse before the append, report a
//!   shrunk ISR after it) is part of the committed-write operation
//!   (`rivulet_actors::write`), which every writer uses and which is told the number.

use rivulet_actors::group::OFFSETS_TOPIC;
use rivulet_storage::TopicMeta;

use crate::topic_config::TopicDefaults;

/// Every internal topic. Adding one is adding its name here.
pub const INTERNAL_TOPICS: &[&str] = &[OFFSETS_TOPIC];

/// True for a topic only the node itself writes.
pub fn is_internal(topic: &str) -> bool {
    INTERNAL_TOPICS.contains(&topic)
}

/// The topic config key whose effective value is the minimum ISR.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// The `min.insync.replicas` an `acks=all` write to `topic` needs: the topic's own setting,
/// else the node's default (dynamic per-broker, then cluster-wide, then the `[log]` file,
/// then 1, as `defaults` resolves it). A topic with 3 or more replicas that does not set it
/// itself needs at least 2, so that an acknowledged write survives the loss of any one
/// replica (docs/semantics.md, "Acknowledgements") even on a node left at the default.
pub fn min_insync_replicas(defaults: &TopicDefaults, topic: &TopicMeta) -> i64 {
    let configured = defaults.min_insync_replicas(&topic.configs);
    if topic.replication_factor >= 3 && !topic.configs.contains_key(MIN_INSYNC_REPLICAS) {
        configured.max(2)
    } else {
        configured
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn topic(rf: i16, min_isr: Option<&str>) -> TopicMeta {
        let mut configs = BTreeMap::new();
        if let Some(v) = min_isr {
            configs.insert(MIN_INSYNC_REPLICAS.to_string(), v.to_string());
        }
        TopicMeta {
            name: "t".into(),
            id: uuid::Uuid::nil(),
            partitions: 1,
            replication_factor: rf,
            configs,
            created_ms: 0,
        }
    }

    #[test]
    fn min_insync_replicas_rule() {
        let d = TopicDefaults::default();
        // (replication factor, topic override) -> effective minimum
        let cases = [
            (1, None, 1),
            (2, None, 1),
            (3, None, 2),
            (5, None, 2),
            (3, Some("1"), 1),
            (3, Some("3"), 3),
            (1, Some("2"), 2),
        ];
        for (rf, over, want) in cases {
            assert_eq!(
                min_insync_replicas(&d, &topic(rf, over)),
                want,
                "rf {rf}, override {over:?}"
            );
        }
    }

    #[test]
    fn internal_topics() {
        assert!(is_internal("__consumer_offsets"));
        assert!(!is_internal("__my_topic"));
        assert!(!is_internal("orders"));
    }
}
