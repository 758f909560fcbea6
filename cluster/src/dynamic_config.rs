//! Dynamic broker and group configs: which Kafka keys may change at run time, and the checks a
//! change passes before the controller stores it.
//!
//! ```text
//!   kafka-configs --alter --entity-type brokers --entity-default  ─▶ ConfigScope::ClusterDefault
//!   kafka-configs --alter --entity-type brokers --entity-name 2   ─▶ ConfigScope::Broker(2)
//!   kafka-configs --alter --entity-type groups  --entity-name G   ─▶ ConfigScope::Group("G")
//!        │ validated here, then proposed as MetaCommand::AlterDynamicConfigs (Raft)
//!        ▼
//!   MetadataImage::dynamic_configs ─▶ every node: topic defaults of its replicas
//!                                     (TopicDefaults::dynamic), group coordinators
//! ```
//!
//! The dynamic broker keys are the broker-level synonyms of the topic configs Rivulet
//! supports (Kafka marks them all cluster-wide dynamic): a topic without an override follows
//! them at once, on every replica, without a restart.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub use rivulet_actors::group::GroupOverrides;

use crate::raft::ConfigScope;
use crate::topic_config::{topic_config_info, DynamicLayers, TopicDefaults, KNOWN_KEYS};

/// KIP-848 group config: session timeout of the group's consumer-protocol members.
pub const GROUP_SESSION_TIMEOUT: &str = "consumer.session.timeout.ms";
/// KIP-848 group config: heartbeat interval given to the group's members.
pub const GROUP_HEARTBEAT_INTERVAL: &str = "consumer.heartbeat.interval.ms";

/// Broker settings Rivulet has that only its config file sets (Kafka's static, read-only
/// broker configs), plus the usual static Kafka keys people try to change.
const READ_ONLY_BROKER_KEYS: &[&str] = &[
    "advertised.listeners",
    "auto.create.topics.enable",
    "broker.id",
    "controller.quorum.voters",
    "default.replication.factor",
    "group.consumer.assignors",
    "group.consumer.heartbeat.interval.ms",
    "group.consumer.session.timeout.ms",
    "group.initial.rebalance.delay.ms",
    "group.max.session.timeout.ms",
    "group.max.size",
    "group.min.session.timeout.ms",
    "listeners",
    "log.dir",
    "log.dirs",
    "node.id",
    "num.partitions",
    "offset.metadata.max.bytes",
    "offsets.retention.minutes",
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
    "process.roles",
];

/// The topic key a dynamic broker key stands in for, e.g. `log.retention.ms` ->
/// `retention.ms`; `None` when the broker key cannot be changed dynamically.
pub fn dynamic_broker_key(broker_key: &str) -> Option<&'static str> {
    KNOWN_KEYS.iter().copied().find(|topic_key| {
        // Deprecated and removed in Kafka 4.0; Rivulet honours it on topics only.
        *topic_key != "message.timestamp.difference.max.ms"
            && topic_config_info(topic_key).is_some_and(|(_, b, _)| b == broker_key)
    })
}

/// Every dynamic broker key, sorted.
pub fn dynamic_broker_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = KNOWN_KEYS
        .iter()
        .filter_map(|k| topic_config_info(k).map(|(_, b, _)| b))
        .filter(|b| dynamic_broker_key(b).is_some())
        .collect();
    keys.sort_unstable();
    keys
}

/// Why a dynamic config change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DynamicConfigError {
    /// Keys that exist but only the config file sets (Kafka answers INVALID_REQUEST).
    ReadOnly(Vec<String>),
    /// An unknown key or a bad value (INVALID_CONFIG).
    Invalid(String),
    /// The controller quorum could not commit the change (retriable).
    Unavailable(String),
}

impl fmt::Display for DynamicConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Kafka's words, which tools and people search for.
            DynamicConfigError::ReadOnly(keys) => write!(
                f,
                "Cannot update these configs dynamically: {{{}}}; they are read-only (set in \
                 the node's config file, applied on restart)",
                keys.join(", ")
            ),
            DynamicConfigError::Invalid(m) => f.write_str(m),
            DynamicConfigError::Unavailable(m) => f.write_str(m),
        }
    }
}

/// Checks a change of dynamic broker configs (`None` deletes a key).
pub fn validate_broker(
    defaults: &TopicDefaults,
    changes: &BTreeMap<String, Option<String>>,
) -> Result<(), DynamicConfigError> {
    let read_only: Vec<String> = changes
        .keys()
        .filter(|k| READ_ONLY_BROKER_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    if !read_only.is_empty() {
        return Err(DynamicConfigError::ReadOnly(read_only));
    }
    for (key, value) in changes {
        let Some(topic_key) = dynamic_broker_key(key) else {
            return Err(DynamicConfigError::Invalid(format!(
                "unknown or unsupported dynamic broker config {key:?}; dynamic: {}",
                dynamic_broker_keys().join(", ")
            )));
        };
        if let Some(value) = value {
            let one = BTreeMap::from([(topic_key.to_string(), value.clone())]);
            defaults
                .validate(&one)
                .map_err(|e| DynamicConfigError::Invalid(format!("{key}: {e}")))?;
        }
    }
    Ok(())
}

/// The broker's bounds for KIP-848 group configs (Kafka's `group.consumer.min/max.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfigBounds {
    /// Smallest `consumer.session.timeout.ms` a group may set.
    pub session_timeout_min: Duration,
    /// Largest `consumer.session.timeout.ms` a group may set.
    pub session_timeout_max: Duration,
    /// Smallest `consumer.heartbeat.interval.ms` a group may set.
    pub heartbeat_interval_min: Duration,
    /// Largest `consumer.heartbeat.interval.ms` a group may set.
    pub heartbeat_interval_max: Duration,
}

/// A group's own KIP-848 settings from its stored configs (validated when set; anything
/// unreadable is ignored).
pub fn group_overrides(configs: &BTreeMap<String, String>) -> GroupOverrides {
    let ms = |k: &str| {
        configs
            .get(k)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis)
    };
    GroupOverrides {
        session_timeout: ms(GROUP_SESSION_TIMEOUT),
        heartbeat_interval: ms(GROUP_HEARTBEAT_INTERVAL),
    }
}

/// Checks a group's configs after a change: known keys, integers within `bounds`, and the
/// heartbeat interval below the session timeout (each side the group's value or the node's
/// default), as Kafka's `GroupConfig` validation does.
pub fn validate_group(
    after: &BTreeMap<String, String>,
    bounds: &GroupConfigBounds,
    default_session_timeout: Duration,
    default_heartbeat_interval: Duration,
) -> Result<(), DynamicConfigError> {
    let invalid = |m: String| Err(DynamicConfigError::Invalid(m));
    for (key, value) in after {
        let (min, max) = match key.as_str() {
            GROUP_SESSION_TIMEOUT => (bounds.session_timeout_min, bounds.session_timeout_max),
            GROUP_HEARTBEAT_INTERVAL => {
                (bounds.heartbeat_interval_min, bounds.heartbeat_interval_max)
            }
            other => {
                return invalid(format!(
                    "unknown group config {other:?}; supported: {GROUP_HEARTBEAT_INTERVAL}, \
                     {GROUP_SESSION_TIMEOUT}"
                ))
            }
        };
        let Ok(v) = value.trim().parse::<u64>() else {
            return invalid(format!("{key}={value:?} is not a non-negative integer"));
        };
        let v = Duration::from_millis(v);
        if v < min || v > max {
            return invalid(format!(
                "{key}={} must be between {} and {} (the broker's \
                 group.consumer.min/max.{} settings)",
                v.as_millis(),
                min.as_millis(),
                max.as_millis(),
                key.trim_start_matches("consumer."),
            ));
        }
    }
    let o = group_overrides(after);
    let session = o.session_timeout.unwrap_or(default_session_timeout);
    let heartbeat = o.heartbeat_interval.unwrap_or(default_heartbeat_interval);
    if heartbeat >= session {
        return invalid(format!(
            "{GROUP_HEARTBEAT_INTERVAL} ({}) must be less than {GROUP_SESSION_TIMEOUT} ({})",
            heartbeat.as_millis(),
            session.as_millis()
        ));
    }
    Ok(())
}

/// The configs at `scope` after `changes` (what the state machine will store).
pub fn after_change(
    current: &BTreeMap<String, String>,
    changes: &BTreeMap<String, Option<String>>,
    replace_all: bool,
) -> BTreeMap<String, String> {
    let mut next = if replace_all {
        BTreeMap::new()
    } else {
        current.clone()
    };
    for (k, v) in changes {
        match v {
            Some(v) => {
                next.insert(k.clone(), v.clone());
            }
            None => {
                next.remove(k);
            }
        }
    }
    next
}

/// The dynamic layers that apply to node `node`'s topic defaults.
pub fn layers_for(dynamic: &crate::raft::DynamicConfigs, node: u64) -> DynamicLayers {
    DynamicLayers {
        cluster: dynamic.cluster.clone(),
        broker: dynamic.get(&ConfigScope::Broker(node)).clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(String::from)))
            .collect()
    }

    #[test]
    fn broker_keys_table() {
        let d = TopicDefaults::default();
        let check = |pairs: &[(&str, Option<&str>)]| validate_broker(&d, &changes(pairs));
        assert_eq!(check(&[("log.retention.ms", Some("1000"))]), Ok(()));
        assert_eq!(check(&[("message.max.bytes", Some("2048"))]), Ok(()));
        assert_eq!(check(&[("log.cleanup.policy", Some("delete"))]), Ok(()));
        assert_eq!(check(&[("log.retention.ms", None)]), Ok(()));
        assert_eq!(check(&[("min.insync.replicas", Some("2"))]), Ok(()));
        assert!(matches!(
            check(&[("log.retention.ms", Some("soon"))]),
            Err(DynamicConfigError::Invalid(m)) if m.starts_with("log.retention.ms")
        ));
        assert!(matches!(
            check(&[("log.segment.bytes", Some("10"))]),
            Err(DynamicConfigError::Invalid(_))
        ));
        assert!(matches!(
            check(&[("no.such.config", Some("1"))]),
            Err(DynamicConfigError::Invalid(m)) if m.contains("no.such.config")
        ));
        // The topic name of a key is not its broker name.
        assert!(matches!(
            check(&[("retention.ms", Some("1"))]),
            Err(DynamicConfigError::Invalid(_))
        ));
        assert_eq!(
            check(&[
                ("broker.id", Some("3")),
                ("listeners", Some("x")),
                ("log.retention.ms", Some("1"))
            ]),
            Err(DynamicConfigError::ReadOnly(vec![
                "broker.id".into(),
                "listeners".into()
            ]))
        );
        assert_eq!(dynamic_broker_key("log.roll.ms"), Some("segment.ms"));
        assert_eq!(
            dynamic_broker_key("log.message.timestamp.difference.max.ms"),
            None
        );
        assert!(dynamic_broker_keys().contains(&"compression.type"));
    }

    #[test]
    fn group_keys_table() {
        let bounds = GroupConfigBounds {
            session_timeout_min: Duration::from_secs(45),
            session_timeout_max: Duration::from_secs(60),
            heartbeat_interval_min: Duration::from_secs(5),
            heartbeat_interval_max: Duration::from_secs(15),
        };
        let check = |pairs: &[(&str, &str)]| {
            let after: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            validate_group(
                &after,
                &bounds,
                Duration::from_secs(45),
                Duration::from_secs(5),
            )
            .is_ok()
        };
        assert!(check(&[]));
        assert!(check(&[(GROUP_SESSION_TIMEOUT, "50000")]));
        assert!(check(&[(GROUP_HEARTBEAT_INTERVAL, "15000")]));
        assert!(!check(&[(GROUP_SESSION_TIMEOUT, "1000")]));
        assert!(!check(&[(GROUP_SESSION_TIMEOUT, "600000")]));
        assert!(!check(&[(GROUP_HEARTBEAT_INTERVAL, "-5")]));
        assert!(!check(&[(GROUP_HEARTBEAT_INTERVAL, "ten")]));
        assert!(!check(&[("consumer.max.poll.interval.ms", "1")]));
        // Heartbeat must stay below the session timeout.
        let tight = GroupConfigBounds {
            heartbeat_interval_max: Duration::from_secs(100),
            ..bounds
        };
        let after = BTreeMap::from([(GROUP_HEARTBEAT_INTERVAL.to_string(), "50000".to_string())]);
        assert!(validate_group(
            &after,
            &tight,
            Duration::from_secs(45),
            Duration::from_secs(5)
        )
        .is_err());
        let o = group_overrides(&BTreeMap::from([(
            GROUP_SESSION_TIMEOUT.to_string(),
            "50000".to_string(),
        )]));
        assert_eq!(o.session_timeout, Some(Duration::from_secs(50)));
        assert_eq!(o.heartbeat_interval, None);
    }

    #[test]
    fn dynamic_layers_win_in_kafka_order() {
        use crate::topic_config::ConfigSource;
        let statics = TopicDefaults {
            retention_ms: 5000,
            ..TopicDefaults::default()
        };
        let none = BTreeMap::new();
        // File over built-in.
        let c = statics.log_config(&none);
        assert_eq!(c.retention_ms, 5000);
        // Cluster default over the file.
        let mut layers = DynamicLayers::default();
        layers
            .cluster
            .insert("log.retention.ms".into(), "6000".into());
        layers
            .cluster
            .insert("message.max.bytes".into(), "2048".into());
        let d = statics.with_dynamic(layers.clone());
        assert_eq!(d.log_config(&none).retention_ms, 6000);
        assert_eq!(d.log_config(&none).batch_bytes_max, 2048);
        // Per-broker over the cluster default; a topic override over everything.
        layers
            .broker
            .insert("log.retention.ms".into(), "7000".into());
        let d = statics.with_dynamic(layers);
        assert_eq!(d.log_config(&none).retention_ms, 7000);
        let topic = BTreeMap::from([("retention.ms".to_string(), "8000".to_string())]);
        assert_eq!(d.log_config(&topic).retention_ms, 8000);
        let sources: Vec<(String, ConfigSource)> = d
            .synonyms("retention.ms")
            .into_iter()
            .map(|s| (s.value, s.source))
            .collect();
        assert_eq!(
            sources,
            vec![
                ("7000".to_string(), ConfigSource::DynamicBroker),
                ("6000".to_string(), ConfigSource::DynamicDefault),
                ("5000".to_string(), ConfigSource::Static),
                // The built-in default is listed on Kafka's coarse key, log.retention.hours.
                ("168".to_string(), ConfigSource::Default),
            ]
        );
        let entry = d
            .describe(&none)
            .into_iter()
            .find(|e| e.name == "retention.ms")
            .map(|e| (e.value, e.source));
        assert_eq!(
            entry,
            Some(("7000".to_string(), ConfigSource::DynamicBroker))
        );
        let entry = d
            .describe(&none)
            .into_iter()
            .find(|e| e.name == "segment.ms")
            .map(|e| e.source);
        assert_eq!(entry, Some(ConfigSource::Default));
    }
}
