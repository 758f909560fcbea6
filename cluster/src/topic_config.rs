//! Kafka topic configuration keys: validation, defaults, and the storage `LogConfig` they make.
//!
//! A topic key without an override takes its broker-level synonym, most specific first, as
//! Kafka's synonym chain does:
//!
//! ```text
//!   topic override (retention.ms)
//!    > per-broker dynamic config   (log.retention.ms, kafka-configs --entity-name <node>)
//!    > cluster-wide dynamic default (log.retention.ms, kafka-configs --entity-default)
//!    > the node's config file      ([log] retention_ms)
//!    > built-in default
//! ```
//!
//! The two dynamic layers live in the controller's metadata image; [`TopicDefaults::dynamic`]
//! holds this node's view of them, so every value computed from a `TopicDefaults` (log
//! configs of replicas, min ISR, DescribeConfigs) follows them.

use std::collections::BTreeMap;

use rivulet_storage::{CleanupPolicy, Durability, LogConfig, TimestampType};
use serde::Deserialize;

/// Node-wide defaults for topic configurations (Kafka's `log.*` broker settings).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicDefaults {
    /// `retention.ms`: delete segments older than this; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete old segments while the partition is larger; -1 = no limit.
    pub retention_bytes: i64,
    /// `segment.bytes`: roll a new segment past this size.
    pub segment_bytes: i64,
    /// `segment.ms`: roll a new segment after this age.
    pub segment_ms: i64,
    /// `flush.messages`: 1 fsyncs every batch before acknowledging.
    pub flush_messages: i64,
    /// `flush.ms`: fsync at this interval; `i64::MAX` leaves flushing to the OS.
    pub flush_ms: i64,
    /// `max.message.bytes`: largest record batch accepted.
    pub max_message_bytes: i64,
    /// `min.insync.replicas`: acks=all needs this many in-sync replicas.
    pub min_insync_replicas: i64,
    /// Dynamic broker configs layered over the values above (never read from the config
    /// file: they come from the controller).
    #[serde(skip)]
    pub dynamic: DynamicLayers,
}

/// Dynamic broker configs that stand in for topic defaults, with Kafka's broker key names
/// (`log.retention.ms`, not `retention.ms`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicLayers {
    /// Cluster-wide dynamic defaults.
    pub cluster: BTreeMap<String, String>,
    /// This node's own dynamic configs (win over the cluster-wide ones).
    pub broker: BTreeMap<String, String>,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        Self {
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            max_message_bytes: 1_048_588,
            min_insync_replicas: 1,
            dynamic: DynamicLayers::default(),
        }
    }
}

/// Where a config value comes from (Kafka's DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    Topic,
    /// A dynamic config of this broker.
    DynamicBroker,
    /// A cluster-wide dynamic default.
    DynamicDefault,
    /// The node's config file.
    Static,
    /// The built-in default.
    Default,
}

/// One link of a config's synonym chain: a broker-level key, its value, where it is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    /// Kafka broker key, e.g. `log.retention.ms`.
    pub name: String,
    /// Value as text.
    pub value: String,
    /// Which layer sets it.
    pub source: ConfigSource,
}

/// One described config entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Kafka key, e.g. `retention.ms`.
    pub name: String,
    /// Value as text.
    pub value: String,
    /// Where it comes from.
    pub source: ConfigSource,
    /// Cannot be changed.
    pub read_only: bool,
}

/// A time key whose built-in default Kafka keeps on a coarser broker key: Kafka's millisecond
/// broker key (`log.retention.ms`) has no default (it describes as null) and, for example,
/// `log.retention.hours=168` stands in for it. Rivulet's built-in values are the same, so it
/// reports them the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoarseTimeSynonym {
    /// The broker key that carries the built-in value.
    pub broker_key: &'static str,
    /// Its value, in its own unit.
    pub value: &'static str,
    /// Milliseconds per unit of `value`.
    pub unit_ms: i64,
    /// Kafka's type of that key.
    pub config_type: ConfigType,
    /// Keys of units between the two that are null unless set (`log.retention.minutes`).
    pub null_keys: &'static [&'static str],
}

/// The coarse synonym of a topic time key, if Kafka has one.
pub fn coarse_time_synonym(topic_key: &str) -> Option<CoarseTimeSynonym> {
    const HOUR_MS: i64 = 3_600_000;
    let (broker_key, value, unit_ms, config_type, null_keys): (
        _,
        _,
        _,
        _,
        &'static [&'static str],
    ) = match topic_key {
        "retention.ms" => (
            "log.retention.hours",
            "168",
            HOUR_MS,
            ConfigType::Int,
            &["log.retention.minutes"],
        ),
        "segment.ms" => ("log.roll.hours", "168", HOUR_MS, ConfigType::Int, &[]),
        "flush.ms" => (
            "log.flush.scheduler.interval.ms",
            "9223372036854775807",
            1,
            ConfigType::Long,
            &[],
        ),
        _ => return None,
    };
    Some(CoarseTimeSynonym {
        broker_key,
        value,
        unit_ms,
        config_type,
        null_keys,
    })
}

/// Parses a `cleanup.policy` value (`delete`, `compact`, or both, comma-separated, in any
/// order), as Kafka's `ValidList` does: an empty list or an unknown word is an error.
/// (The policy type is storage's: [`LogConfig::cleanup_policy`] carries it to the log.)
pub fn cleanup_policy(value: &str) -> Result<CleanupPolicy, String> {
    CleanupPolicy::parse(value).ok_or_else(|| {
        format!(
            "cleanup.policy={value:?} is not a policy list; use \"delete\", \"compact\" or \"compact,delete\""
        )
    })
}

/// Kafka topic-config keys Rivulet accepts, in the order DescribeConfigs lists them.
pub const KNOWN_KEYS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "flush.messages",
    "flush.ms",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.difference.max.ms",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
];

impl TopicDefaults {
    /// These static defaults with `dynamic` layered over them.
    pub fn with_dynamic(&self, dynamic: DynamicLayers) -> TopicDefaults {
        TopicDefaults {
            dynamic,
            ..self.clone()
        }
    }

    /// The broker-level chain a topic key falls back to, most specific first (Kafka's
    /// synonym order): per-broker dynamic, cluster dynamic, config file (where it differs
    /// from the built-in value), built-in. Empty for keys without a broker synonym, and for
    /// keys at a built-in value that Kafka keeps on a coarser key ([`coarse_time_synonym`]).
    pub fn synonyms(&self, key: &str) -> Vec<ConfigSynonym> {
        let Some(broker_key) = topic_config_info(key).map(|(_, b, _)| b) else {
            return Vec::new();
        };
        let syn = |value: &String, source| ConfigSynonym {
            name: broker_key.to_string(),
            value: value.clone(),
            source,
        };
        let mut out = Vec::with_capacity(4);
        if let Some(v) = self.dynamic.broker.get(broker_key) {
            out.push(syn(v, ConfigSource::DynamicBroker));
        }
        if let Some(v) = self.dynamic.cluster.get(broker_key) {
            out.push(syn(v, ConfigSource::DynamicDefault));
        }
        let builtin = TopicDefaults::default().static_value(key);
        let configured = self.static_value(key);
        if configured != builtin {
            out.push(syn(&configured, ConfigSource::Static));
        }
        match coarse_time_synonym(key) {
            // Kafka lists a key's chain from its own name on: the coarse key that carries the
            // built-in value shows only behind a link of the millisecond key.
            Some(coarse) if !out.is_empty() => out.push(ConfigSynonym {
                name: coarse.broker_key.to_string(),
                value: coarse.value.to_string(),
                source: ConfigSource::Default,
            }),
            Some(_) => {}
            None => out.push(syn(&builtin, ConfigSource::Default)),
        }
        out
    }

    /// A topic key's default on this node: the first link of its synonym chain.
    fn default_value(&self, key: &str) -> String {
        match topic_config_info(key).map(|(_, b, _)| b) {
            Some(b) if KNOWN_KEYS.contains(&key) => self
                .dynamic
                .broker
                .get(b)
                .or_else(|| self.dynamic.cluster.get(b))
                .cloned()
                .unwrap_or_else(|| self.static_value(key)),
            _ => self.static_value(key),
        }
    }

    /// A topic key's default from the config file (or built in), ignoring dynamic configs.
    fn static_value(&self, key: &str) -> String {
        match key {
            "cleanup.policy" => "delete".into(),
            "compression.type" => "producer".into(),
            // Kafka's defaults: tombstones kept a day, clean at half dirty, no lags.
            "delete.retention.ms" => "86400000".into(),
            "min.cleanable.dirty.ratio" => "0.5".into(),
            "min.compaction.lag.ms" => "0".into(),
            "max.compaction.lag.ms" => i64::MAX.to_string(),
            "flush.messages" => self.flush_messages.to_string(),
            "flush.ms" => self.flush_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => "CreateTime".into(),
            // Kafka 4.0's defaults (KIP-937, KIP-1030): any past, at most an hour ahead.
            "message.timestamp.before.max.ms" => i64::MAX.to_string(),
            "message.timestamp.after.max.ms" => "3600000".into(),
            // Deprecated by KIP-937 (removed in Kafka 4.0), still honoured: it stands in for
            // before/after where those are not set.
            "message.timestamp.difference.max.ms" => i64::MAX.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            _ => String::new(),
        }
    }

    /// Checks topic overrides; the error says which key is wrong and why.
    pub fn validate(&self, configs: &BTreeMap<String, String>) -> Result<(), String> {
        for (key, value) in configs {
            let int = |min: i64| -> Result<i64, String> {
                let v: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("{key}={value:?} is not an integer"))?;
                if v < min {
                    return Err(format!("{key}={v} must be >= {min}"));
                }
                Ok(v)
            };
            match key.as_str() {
                "cleanup.policy" => {
                    cleanup_policy(value)?;
                }
                "min.cleanable.dirty.ratio" => {
                    let ok = value
                        .trim()
                        .parse::<f64>()
                        .is_ok_and(|r| (0.0..=1.0).contains(&r));
                    if !ok {
                        return Err(format!(
                            "min.cleanable.dirty.ratio={value:?} must be a number from 0 to 1"
                        ));
                    }
                }
                "delete.retention.ms" | "min.compaction.lag.ms" => {
                    int(0)?;
                }
                "max.compaction.lag.ms" => {
                    int(1)?;
                }
                "compression.type" if value == "producer" => {}
                "compression.type" => {
                    return Err(format!(
                        "compression.type={value:?} is not supported: batches are stored as the producer compressed them (\"producer\")"
                    ))
                }
                "message.timestamp.type" if value == "CreateTime" || value == "LogAppendTime" => {}
                "message.timestamp.type" => {
                    return Err(format!(
                        "message.timestamp.type={value:?}: must be \"CreateTime\" or \"LogAppendTime\""
                    ))
                }
                "message.timestamp.before.max.ms"
                | "message.timestamp.after.max.ms"
                | "message.timestamp.difference.max.ms" => {
                    int(0)?;
                }
                "retention.ms" | "retention.bytes" => {
                    int(-1)?;
                }
                "segment.bytes" => {
                    int(1024)?;
                }
                "segment.ms" | "flush.ms" => {
                    int(1)?;
                }
                "flush.messages" | "min.insync.replicas" => {
                    int(1)?;
                }
                "max.message.bytes" => {
                    int(64)?;
                }
                other => {
                    return Err(format!(
                        "unknown topic config {other:?}; supported: {}",
                        KNOWN_KEYS.join(", ")
                    ))
                }
            }
        }
        Ok(())
    }

    fn effective(&self, configs: &BTreeMap<String, String>, key: &str) -> String {
        configs
            .get(key)
            .cloned()
            .unwrap_or_else(|| self.default_value(key))
    }

    fn effective_i64(&self, configs: &BTreeMap<String, String>, key: &str) -> i64 {
        let fallback = self.default_value(key).parse().unwrap_or(i64::MAX);
        configs
            .get(key)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(fallback)
    }

    /// The effective `min.insync.replicas`.
    pub fn min_insync_replicas(&self, configs: &BTreeMap<String, String>) -> i64 {
        self.effective_i64(configs, "min.insync.replicas")
    }

    /// The storage configuration for a topic with these overrides.
    pub fn log_config(&self, configs: &BTreeMap<String, String>) -> LogConfig {
        let flush_messages = self.effective_i64(configs, "flush.messages");
        let flush_ms = self.effective_i64(configs, "flush.ms");
        // flush.messages > 1 has no exact equivalent (we cannot count messages between fsyncs
        // cheaply across restarts); any finite value below i64::MAX is honoured as "every batch",
        // which is stronger than asked.
        let durability = if flush_messages < i64::MAX {
            Durability::EveryBatch
        } else if flush_ms < i64::MAX {
            Durability::IntervalMs(u64::try_from(flush_ms).unwrap_or(1))
        } else {
            Durability::Os
        };
        // A compacted topic without `delete` in its policy is not subject to retention (Kafka:
        // only the cleaner removes its records; `PartitionLog::apply_retention` checks too).
        let deletes =
            cleanup_policy(&self.effective(configs, "cleanup.policy")).map_or(true, |p| p.delete);
        let (retention_bytes, retention_ms) = if deletes {
            (
                self.effective_i64(configs, "retention.bytes"),
                self.effective_i64(configs, "retention.ms"),
            )
        } else {
            (-1, -1)
        };
        LogConfig {
            segment_bytes_max: u64::try_from(self.effective_i64(configs, "segment.bytes"))
                .unwrap_or(1 << 30),
            segment_age_max_ms: self.effective_i64(configs, "segment.ms"),
            retention_bytes,
            retention_ms,
            batch_bytes_max: usize::try_from(self.effective_i64(configs, "max.message.bytes"))
                .unwrap_or(1_048_588),
            durability,
            timestamp_type: if self.effective(configs, "message.timestamp.type") == "LogAppendTime"
            {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            timestamp_before_max_ms: self.timestamp_window_ms(configs, "before"),
            timestamp_after_max_ms: self.timestamp_window_ms(configs, "after"),
            cleanup_policy: cleanup_policy(&self.effective(configs, "cleanup.policy"))
                .unwrap_or_default(),
            tombstone_retention_ms: self.effective_i64(configs, "delete.retention.ms"),
            dirty_ratio_min_permille: {
                let ratio: f64 = self
                    .effective(configs, "min.cleanable.dirty.ratio")
                    .trim()
                    .parse()
                    .unwrap_or(0.5);
                // In [0, 1] after validation: the cast cannot overflow.
                (ratio.clamp(0.0, 1.0) * 1000.0).round() as u32
            },
            compaction_lag_min_ms: self.effective_i64(configs, "min.compaction.lag.ms"),
            compaction_lag_max_ms: self.effective_i64(configs, "max.compaction.lag.ms"),
        }
    }

    /// `message.timestamp.{side}.max.ms`, or the legacy `difference.max.ms` where only that
    /// one is set (Kafka 3.6-3.9's rule).
    fn timestamp_window_ms(&self, configs: &BTreeMap<String, String>, side: &str) -> i64 {
        let key = format!("message.timestamp.{side}.max.ms");
        let set = |k: &str| configs.get(k).and_then(|v| v.trim().parse::<i64>().ok());
        set(&key)
            .or_else(|| set("message.timestamp.difference.max.ms"))
            .unwrap_or_else(|| self.effective_i64(configs, &key))
    }

    /// Every known key with its effective value and source.
    pub fn describe(&self, configs: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
        KNOWN_KEYS
            .iter()
            .map(|key| ConfigEntry {
                name: (*key).to_string(),
                value: self.effective(configs, key),
                source: if configs.contains_key(*key) {
                    ConfigSource::Topic
                } else {
                    self.synonyms(key)
                        .first()
                        .map_or(ConfigSource::Default, |s| s.source)
                },
                read_only: false,
            })
            .collect()
    }
}

/// The value type of a config as Kafka's `ConfigDef` declares it (DescribeConfigs v3+ reports
/// it; tools use it to parse and validate values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    /// `true` / `false`.
    Boolean,
    /// Free text or an enumerated word.
    String,
    /// 32-bit integer.
    Int,
    /// 16-bit integer.
    Short,
    /// 64-bit integer.
    Long,
    /// Floating point.
    Double,
    /// Comma-separated list (the only type IncrementalAlterConfigs may APPEND to / SUBTRACT from).
    List,
    /// A Java class name.
    Class,
    /// A secret (never shown).
    Password,
}

/// Kafka's type and a one-line description of a topic config key, and the broker-level
/// setting it falls back to (its synonym); `None` for keys Kafka does not define. Covers
/// Kafka's topic keys beyond [`KNOWN_KEYS`] so that the type of any key a newer Rivulet
/// accepts is already right.
pub fn topic_config_info(key: &str) -> Option<(ConfigType, &'static str, &'static str)> {
    use ConfigType::*;
    Some(match key {
        "cleanup.policy" => (
            List,
            "log.cleanup.policy",
            "How old segments are discarded: delete (retention) or compact.",
        ),
        "compression.type" => (
            String,
            "compression.type",
            "Compression of stored batches; producer keeps what the producer sent.",
        ),
        "flush.messages" => (
            Long,
            "log.flush.interval.messages",
            "fsync after this many messages (any finite value fsyncs every batch).",
        ),
        "flush.ms" => (
            Long,
            "log.flush.interval.ms",
            "fsync at least this often, in milliseconds.",
        ),
        "max.message.bytes" => (
            Int,
            "message.max.bytes",
            "Largest record batch the topic accepts, in bytes.",
        ),
        "message.timestamp.type" => (
            String,
            "log.message.timestamp.type",
            "CreateTime (the producer's) or LogAppendTime (the broker's).",
        ),
        "message.timestamp.before.max.ms" => (
            Long,
            "log.message.timestamp.before.max.ms",
            "How far before the broker's time a record timestamp may be.",
        ),
        "message.timestamp.after.max.ms" => (
            Long,
            "log.message.timestamp.after.max.ms",
            "How far after the broker's time a record timestamp may be.",
        ),
        "message.timestamp.difference.max.ms" => (
            Long,
            "log.message.timestamp.difference.max.ms",
            "Deprecated: largest difference between record and broker time.",
        ),
        "min.insync.replicas" => (
            Int,
            "min.insync.replicas",
            "acks=all writes need this many in-sync replicas.",
        ),
        "retention.bytes" => (
            Long,
            "log.retention.bytes",
            "Delete old segments while a partition is larger than this; -1 = no limit.",
        ),
        "retention.ms" => (
            Long,
            "log.retention.ms",
            "Delete segments older than this, in milliseconds; -1 = keep forever.",
        ),
        "segment.bytes" => (
            Int,
            "log.segment.bytes",
            "Roll a new segment past this size, in bytes.",
        ),
        "segment.ms" => (
            Long,
            "log.roll.ms",
            "Roll a new segment after this age, in milliseconds.",
        ),
        "segment.index.bytes" => (
            Int,
            "log.index.size.max.bytes",
            "Size of a segment's offset index.",
        ),
        "segment.jitter.ms" => (
            Long,
            "log.roll.jitter.ms",
            "Random jitter subtracted from segment.ms.",
        ),
        "index.interval.bytes" => (
            Int,
            "log.index.interval.bytes",
            "Bytes between offset index entries.",
        ),
        "delete.retention.ms" => (
            Long,
            "log.cleaner.delete.retention.ms",
            "How long compaction keeps tombstones.",
        ),
        "file.delete.delay.ms" => (
            Long,
            "log.segment.delete.delay.ms",
            "Delay before a deleted segment's files go.",
        ),
        "min.cleanable.dirty.ratio" => (
            Double,
            "log.cleaner.min.cleanable.ratio",
            "Dirty ratio above which compaction runs.",
        ),
        "min.compaction.lag.ms" => (
            Long,
            "log.cleaner.min.compaction.lag.ms",
            "Records stay uncompacted at least this long.",
        ),
        "max.compaction.lag.ms" => (
            Long,
            "log.cleaner.max.compaction.lag.ms",
            "Records are compacted at most this late.",
        ),
        "preallocate" => (Boolean, "log.preallocate", "Preallocate segment files."),
        "unclean.leader.election.enable" => (
            Boolean,
            "unclean.leader.election.enable",
            "Allow out-of-sync replicas to become leader.",
        ),
        "message.downconversion.enable" => (
            Boolean,
            "log.message.downconversion.enable",
            "Down-convert batches for old consumers.",
        ),
        "local.retention.ms" => (
            Long,
            "log.local.retention.ms",
            "Tiered storage: local retention time.",
        ),
        "local.retention.bytes" => (
            Long,
            "log.local.retention.bytes",
            "Tiered storage: local retention size.",
        ),
        "remote.storage.enable" => (
            Boolean,
            "remote.log.storage.system.enable",
            "Tiered storage for this topic.",
        ),
        "follower.replication.throttled.replicas" => (
            List,
            "follower.replication.throttled.replicas",
            "Replicas throttled on followers.",
        ),
        "leader.replication.throttled.replicas" => (
            List,
            "leader.replication.throttled.replicas",
            "Replicas throttled on leaders.",
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn validation_table() {
        let d = TopicDefaults::default();
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[], true),
            (&[("retention.ms", "-1")], true),
            (&[("retention.ms", "-2")], false),
            (&[("retention.ms", "ten")], false),
            (&[("segment.bytes", "100")], false),
            (&[("segment.bytes", "1048576")], true),
            (&[("cleanup.policy", "compact")], true),
            (&[("cleanup.policy", "compact,delete")], true),
            (&[("cleanup.policy", "delete, compact")], true),
            (&[("cleanup.policy", "")], false),
            (&[("cleanup.policy", "shred")], false),
            (&[("min.cleanable.dirty.ratio", "0.1")], true),
            (&[("min.cleanable.dirty.ratio", "1.5")], false),
            (&[("delete.retention.ms", "0")], true),
            (&[("delete.retention.ms", "-1")], false),
            (&[("max.compaction.lag.ms", "0")], false),
            (&[("min.compaction.lag.ms", "100")], true),
            (&[("cleanup.policy", "compact,")], false),
            (&[("flush.messages", "1")], true),
            (&[("no.such.key", "1")], false),
            (&[("compression.type", "producer")], true),
            (&[("compression.type", "zstd")], false),
            (&[("message.timestamp.type", "LogAppendTime")], true),
            (&[("message.timestamp.type", "AppendTime")], false),
            (&[("message.timestamp.after.max.ms", "0")], true),
            (&[("message.timestamp.before.max.ms", "-1")], false),
            (&[("message.timestamp.difference.max.ms", "1000")], true),
        ];
        for (pairs, ok) in cases {
            assert_eq!(d.validate(&cfg(pairs)).is_ok(), *ok, "{pairs:?}");
        }
    }

    #[test]
    fn coarse_time_synonyms_carry_the_built_in_values() {
        let d = TopicDefaults::default();
        for key in ["retention.ms", "segment.ms", "flush.ms"] {
            let coarse = coarse_time_synonym(key).expect(key);
            let units: i64 = coarse.value.parse().expect("units");
            let ms = units.saturating_mul(coarse.unit_ms);
            assert_eq!(d.static_value(key), ms.to_string(), "{key}");
            // At the built-in value Kafka's chain is empty; once the millisecond key is set
            // the coarse key follows it.
            assert_eq!(d.synonyms(key), Vec::new(), "{key}");
            let set = TopicDefaults {
                retention_ms: 1,
                segment_ms: 1,
                flush_ms: 1,
                ..TopicDefaults::default()
            };
            let chain = set.synonyms(key);
            let names: Vec<(&str, ConfigSource)> =
                chain.iter().map(|l| (l.name.as_str(), l.source)).collect();
            let own = topic_config_info(key).expect(key).1;
            assert_eq!(
                names,
                [
                    (own, ConfigSource::Static),
                    (coarse.broker_key, ConfigSource::Default)
                ],
                "{key}"
            );
        }
    }

    #[test]
    fn only_a_policy_with_delete_is_subject_to_retention() {
        let d = TopicDefaults {
            retention_ms: 60_000,
            retention_bytes: 1 << 20,
            ..TopicDefaults::default()
        };
        // (overrides, (retention.ms, retention.bytes) of the log)
        type Case = (&'static [(&'static str, &'static str)], (i64, i64));
        let cases: &[Case] = &[
            (&[], (60_000, 1 << 20)),
            (&[("cleanup.policy", "delete")], (60_000, 1 << 20)),
            (&[("cleanup.policy", "compact")], (-1, -1)),
            (
                &[("cleanup.policy", "compact"), ("retention.ms", "5")],
                (-1, -1),
            ),
            (&[("cleanup.policy", "compact,delete")], (60_000, 1 << 20)),
            (
                &[("cleanup.policy", "delete,compact"), ("retention.ms", "5")],
                (5, 1 << 20),
            ),
        ];
        for (pairs, (ms, bytes)) in cases {
            let c = d.log_config(&cfg(pairs));
            assert_eq!(
                (c.retention_ms, c.retention_bytes),
                (*ms, *bytes),
                "{pairs:?}"
            );
        }
        assert_eq!(
            cleanup_policy("compact, delete"),
            Ok(CleanupPolicy {
                delete: true,
                compact: true
            })
        );
    }

    #[test]
    fn durability_follows_flush_settings() {
        let d = TopicDefaults::default();
        assert_eq!(d.log_config(&cfg(&[])).durability, Durability::Os);
        assert_eq!(
            d.log_config(&cfg(&[("flush.messages", "1")])).durability,
            Durability::EveryBatch
        );
        assert_eq!(
            d.log_config(&cfg(&[("flush.ms", "250")])).durability,
            Durability::IntervalMs(250)
        );
    }

    #[test]
    fn timestamp_configs_reach_the_log() {
        let d = TopicDefaults::default();
        let c = d.log_config(&cfg(&[]));
        assert_eq!(c.timestamp_type, TimestampType::CreateTime);
        assert_eq!(
            (c.timestamp_before_max_ms, c.timestamp_after_max_ms),
            (i64::MAX, 3_600_000)
        );
        let c = d.log_config(&cfg(&[
            ("message.timestamp.type", "LogAppendTime"),
            ("message.timestamp.difference.max.ms", "5000"),
            ("message.timestamp.after.max.ms", "10"),
        ]));
        assert_eq!(c.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(
            (c.timestamp_before_max_ms, c.timestamp_after_max_ms),
            (5000, 10)
        );
    }

    #[test]
    fn describe_marks_overrides() {
        let d = TopicDefaults::default();
        let entries = d.describe(&cfg(&[("retention.ms", "1000")]));
        assert_eq!(entries.len(), KNOWN_KEYS.len());
        let r = entries
            .iter()
            .find(|e| e.name == "retention.ms")
            .map(|e| (e.value.clone(), e.source));
        assert_eq!(r, Some(("1000".to_string(), ConfigSource::Topic)));
        let s = entries
            .iter()
            .find(|e| e.name == "segment.bytes")
            .map(|e| e.source);
        assert_eq!(s, Some(ConfigSource::Default));
    }
}
