//! The config APIs: DescribeConfigs, AlterConfigs and IncrementalAlterConfigs, on topic,
//! broker and group resources.
//!
//! ```text
//!   TOPIC  (2)  describe: overrides + defaults, with Kafka's types, docs and synonym chain
//!               alter / incremental alter: through the controller (Raft), validated there
//!   BROKER (4)  "" = cluster-wide dynamic defaults, "<node id>" = that broker
//!               describe "<this node>": every setting with a Kafka name; the log/topic
//!                 defaults are dynamic (synonyms: DYNAMIC_BROKER > DYNAMIC_DEFAULT_BROKER >
//!                 STATIC_BROKER > DEFAULT), the rest read-only (config file)
//!               describe "": only the dynamic defaults that are set (as Kafka answers)
//!               alter / incremental alter: dynamic keys through the controller (Raft);
//!                 read-only keys INVALID_REQUEST ("Cannot update these configs
//!                 dynamically"), unknown keys and bad values INVALID_CONFIG
//!   GROUP  (32) describe: consumer.session.timeout.ms / consumer.heartbeat.interval.ms,
//!                 the group's own value (DYNAMIC_GROUP_CONFIG) or the node's [groups] one
//!               alter / incremental alter: through the controller (Raft), within the
//!                 node's groups.consumer_min/max_* bounds (INVALID_CONFIG otherwise)
//! ```
//!
//! Dynamic configs live in the controller's metadata image (see
//! `rivulet_cluster::dynamic_config`): every node applies them to the topics without
//! overrides of its replicas and to its group coordinators as soon as it learns of them, and
//! they survive restarts and controller failover like the rest of the metadata.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::{
    AlterConfigsResourceResponse, AlterConfigsResponse,
};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
    DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response as iac;
use kafka_protocol::messages::{
    AlterConfigsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, ResponseKind,
};
use rivulet_cluster::dynamic_config::{
    self, dynamic_broker_key, DynamicConfigError, GroupConfigBounds, GROUP_HEARTBEAT_INTERVAL,
    GROUP_SESSION_TIMEOUT,
};
use rivulet_cluster::raft::ConfigScope;
use rivulet_cluster::topic_config::{
    coarse_time_synonym, topic_config_info, ConfigSynonym, ConfigType,
};
use rivulet_cluster::{ConfigSource, TopicDefaults};
use rivulet_storage::TopicMeta;

use super::{s, Reply};
use crate::server::errors::{self, code};
use crate::server::BrokerState;

/// Kafka's ConfigResource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;

/// DescribeConfigs config_source values (Kafka's `DescribeConfigsResponse.ConfigSource`).
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const SOURCE_DYNAMIC_GROUP: i8 = 8;

/// Kafka's wire code of a config source (CreateTopics v5+ reports them too).
pub(super) fn source_code(source: ConfigSource) -> i8 {
    match source {
        ConfigSource::Topic => SOURCE_TOPIC,
        ConfigSource::DynamicBroker => SOURCE_DYNAMIC_BROKER,
        ConfigSource::DynamicDefault => SOURCE_DYNAMIC_DEFAULT_BROKER,
        ConfigSource::Static => SOURCE_STATIC_BROKER,
        ConfigSource::Default => SOURCE_DEFAULT,
    }
}

fn synonym(s: ConfigSynonym) -> (String, String, i8) {
    (s.name, s.value, source_code(s.source))
}

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Kafka's wire code of a config type (DescribeConfigs v3+).
fn type_code(t: ConfigType) -> i8 {
    match t {
        ConfigType::Boolean => 1,
        ConfigType::String => 2,
        ConfigType::Int => 3,
        ConfigType::Short => 4,
        ConfigType::Long => 5,
        ConfigType::Double => 6,
        ConfigType::List => 7,
        ConfigType::Class => 8,
        ConfigType::Password => 9,
    }
}

/// One described config.
#[derive(Debug)]
struct Described {
    name: String,
    /// `None` for a key without a value (Kafka's null: `log.retention.ms` when only
    /// `log.retention.hours` carries the built-in value).
    value: Option<String>,
    source: i8,
    read_only: bool,
    config_type: ConfigType,
    doc: &'static str,
    /// `(name, value, source)`, most specific first (Kafka's order).
    synonyms: Vec<(String, String, i8)>,
}

fn topic_configs(state: &BrokerState, topic: &TopicMeta) -> Vec<Described> {
    let defaults = state.controller.topic_defaults();
    defaults
        .describe(&topic.configs)
        .into_iter()
        .map(|e| {
            let (config_type, _, doc) =
                topic_config_info(&e.name).unwrap_or((ConfigType::String, "", ""));
            let source = source_code(e.source);
            let mut synonyms = Vec::with_capacity(4);
            if source == SOURCE_TOPIC {
                synonyms.push((e.name.clone(), e.value.clone(), SOURCE_TOPIC));
            }
            synonyms.extend(defaults.synonyms(&e.name).into_iter().map(synonym));
            Described {
                name: e.name,
                value: Some(e.value),
                source,
                read_only: e.read_only,
                config_type,
                doc,
                synonyms,
            }
        })
        .collect()
}

/// A dynamic broker key's Kafka type and description (from its topic synonym).
fn dynamic_broker_info(broker_key: &str) -> (ConfigType, &'static str) {
    dynamic_broker_key(broker_key)
        .and_then(topic_config_info)
        .map_or((ConfigType::String, ""), |(t, _, doc)| (t, doc))
}

/// The dynamic broker configs as this node applies them: value and source from the first
/// link of each key's synonym chain. As in Kafka, a key describes only the links from its own
/// name on: `log.retention.ms` is null, source DEFAULT_CONFIG and without synonyms when only
/// the built-in `log.retention.hours` is there; those coarse keys are listed too, read-only.
fn dynamic_broker_configs(defaults: &TopicDefaults) -> Vec<Described> {
    let mut out = Vec::new();
    for broker_key in dynamic_config::dynamic_broker_keys() {
        let Some(topic_key) = dynamic_broker_key(broker_key) else {
            continue;
        };
        let chain: Vec<(String, String, i8)> = defaults
            .synonyms(topic_key)
            .into_iter()
            .map(synonym)
            .collect();
        let own = chain.first().filter(|(name, _, _)| name == broker_key);
        let (config_type, doc) = dynamic_broker_info(broker_key);
        out.push(Described {
            name: broker_key.to_string(),
            value: own.map(|(_, v, _)| v.clone()),
            source: own.map_or(SOURCE_DEFAULT, |(_, _, src)| *src),
            read_only: false,
            config_type,
            doc,
            synonyms: if own.is_some() {
                chain.clone()
            } else {
                Vec::new()
            },
        });
        if let Some(coarse) = coarse_time_synonym(topic_key) {
            let value = coarse.value.to_string();
            out.push(Described {
                name: coarse.broker_key.to_string(),
                synonyms: vec![(coarse.broker_key.to_string(), value.clone(), SOURCE_DEFAULT)],
                value: Some(value),
                source: SOURCE_DEFAULT,
                read_only: true,
                config_type: coarse.config_type,
                doc: "Rivulet sets times in milliseconds; this is Kafka's built-in default.",
            });
            out.extend(coarse.null_keys.iter().map(|k| Described {
                name: (*k).to_string(),
                value: None,
                source: SOURCE_DEFAULT,
                read_only: true,
                config_type: coarse.config_type,
                doc: "Rivulet sets times in milliseconds; never set.",
                synonyms: Vec::new(),
            }));
        }
    }
    out
}

/// The cluster-wide dynamic defaults that are set (Kafka describes only those for the
/// default broker resource "").
fn cluster_default_configs(state: &BrokerState) -> Vec<Described> {
    state
        .controller
        .dynamic_configs()
        .cluster
        .into_iter()
        .map(|(name, value)| {
            let (config_type, doc) = dynamic_broker_info(&name);
            Described {
                synonyms: vec![(name.clone(), value.clone(), SOURCE_DYNAMIC_DEFAULT_BROKER)],
                name,
                value: Some(value),
                source: SOURCE_DYNAMIC_DEFAULT_BROKER,
                read_only: false,
                config_type,
                doc,
            }
        })
        .collect()
}

/// This node's settings that have Kafka names, with Kafka's types: the dynamic log/topic
/// defaults, and the read-only rest from the config file.
fn broker_configs(state: &BrokerState) -> Vec<Described> {
    use ConfigType::*;
    let c = state.controller.config();
    let g = state.groups.config();
    let ms = |v: std::time::Duration| v.as_millis().to_string();
    // (Kafka key, Rivulet key, value, type, description)
    let entries: Vec<(&str, &str, std::string::String, ConfigType, &'static str)> = vec![
        (
            "auto.create.topics.enable",
            "auto_create_topics",
            c.auto_create_topics.to_string(),
            Boolean,
            "Create unknown topics on Metadata and Produce requests.",
        ),
        (
            "broker.id",
            "node_id",
            c.node_id.to_string(),
            Int,
            "This node's id.",
        ),
        (
            "default.replication.factor",
            "default_replication_factor",
            c.default_replication_factor.to_string(),
            Int,
            "Replication factor of topics created without one.",
        ),
        (
            "group.consumer.assignors",
            "groups.consumer_assignors",
            g.consumer_assignors.join(","),
            List,
            "Server-side assignors of consumer-protocol groups; the first is the default.",
        ),
        (
            "group.consumer.heartbeat.interval.ms",
            "groups.consumer_heartbeat_interval_ms",
            ms(g.consumer_heartbeat_interval),
            Int,
            "Heartbeat interval of consumer-protocol group members.",
        ),
        (
            "group.consumer.session.timeout.ms",
            "groups.consumer_session_timeout_ms",
            ms(g.consumer_session_timeout),
            Int,
            "Session timeout of consumer-protocol group members.",
        ),
        (
            "group.initial.rebalance.delay.ms",
            "groups.initial_rebalance_delay_ms",
            ms(g.initial_rebalance_delay),
            Int,
            "How long a new classic group waits for more members.",
        ),
        (
            "group.max.session.timeout.ms",
            "groups.max_session_timeout_ms",
            ms(g.max_session_timeout),
            Int,
            "Largest session timeout a classic member may ask for.",
        ),
        (
            "group.max.size",
            "groups.max_size",
            g.max_size.map_or(i32::MAX.to_string(), |m| m.to_string()),
            Int,
            "Most members in a group.",
        ),
        (
            "group.min.session.timeout.ms",
            "groups.min_session_timeout_ms",
            ms(g.min_session_timeout),
            Int,
            "Smallest session timeout a classic member may ask for.",
        ),
        (
            "node.id",
            "node_id",
            c.node_id.to_string(),
            Int,
            "This node's id.",
        ),
        (
            "num.partitions",
            "num_partitions",
            c.default_partitions.to_string(),
            Int,
            "Partitions of topics created without a count.",
        ),
        (
            "offset.metadata.max.bytes",
            "groups.offset_metadata_max_bytes",
            g.offset_metadata_max_bytes.to_string(),
            Int,
            "Largest metadata string of a committed offset.",
        ),
        (
            "offsets.retention.minutes",
            "groups.offsets_retention_ms",
            (g.offsets_retention.as_secs() / 60).to_string(),
            Int,
            "Offsets of a group empty this long are deleted.",
        ),
        (
            "offsets.topic.num.partitions",
            "groups.offsets_partitions",
            g.offsets_partitions.to_string(),
            Int,
            "Partitions of __consumer_offsets.",
        ),
        (
            "offsets.topic.replication.factor",
            "groups.offsets_replication_factor",
            g.offsets_replication_factor.to_string(),
            Short,
            "Replication factor of __consumer_offsets.",
        ),
    ];
    let mut out: Vec<Described> = entries
        .into_iter()
        .map(|(name, key, value, config_type, doc)| {
            // Kafka: STATIC_BROKER_CONFIG for what server.properties sets, else DEFAULT_CONFIG.
            let source = if state.static_keys.contains(key) {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            Described {
                synonyms: vec![(name.to_string(), value.clone(), source)],
                name: name.to_string(),
                value: Some(value),
                source,
                read_only: true,
                config_type,
                doc,
            }
        })
        .collect();
    out.extend(dynamic_broker_configs(&state.controller.topic_defaults()));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// KIP-848 group configs: the group's own value where it has one, else the node's
/// `[groups]` setting.
fn group_configs(state: &BrokerState, group_id: &str) -> Vec<Described> {
    let g = state.groups.config();
    let own = state
        .controller
        .dynamic_configs()
        .groups
        .remove(group_id)
        .unwrap_or_default();
    let ms = |v: std::time::Duration| v.as_millis().to_string();
    [
        (
            GROUP_HEARTBEAT_INTERVAL,
            "group.consumer.heartbeat.interval.ms",
            ms(g.consumer_heartbeat_interval),
            "Heartbeat interval given to the group's consumer-protocol members.",
        ),
        (
            GROUP_SESSION_TIMEOUT,
            "group.consumer.session.timeout.ms",
            ms(g.consumer_session_timeout),
            "Session timeout of the group's consumer-protocol members.",
        ),
    ]
    .into_iter()
    .map(|(name, broker_name, default, doc)| {
        let mut synonyms = Vec::with_capacity(2);
        let (value, source) = match own.get(name) {
            Some(v) => {
                synonyms.push((name.to_string(), v.clone(), SOURCE_DYNAMIC_GROUP));
                (v.clone(), SOURCE_DYNAMIC_GROUP)
            }
            None => (default.clone(), SOURCE_DEFAULT),
        };
        let value = Some(value);
        synonyms.push((broker_name.to_string(), default, SOURCE_DEFAULT));
        Described {
            synonyms,
            name: name.to_string(),
            value,
            source,
            read_only: false,
            config_type: ConfigType::Int,
            doc,
        }
    })
    .collect()
}

/// A broker-resource name describable here: this node's id (each node answers for its own
/// static settings, as Kafka's brokers do).
fn is_this_broker(state: &BrokerState, name: &str) -> bool {
    name == state.node_id().to_string()
}

/// DescribeConfigs for topics, this broker and groups.
pub fn describe_configs(state: &BrokerState, req: DescribeConfigsRequest, version: i16) -> Reply {
    let mut r = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let name = res.resource_name.as_str();
        let entries: Vec<Described> = match res.resource_type {
            RESOURCE_TOPIC => match state.controller.topic(name) {
                Some(meta) => topic_configs(state, &meta),
                None => {
                    out.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                    out.error_message = Some(s(format!("topic {name:?} does not exist")));
                    Vec::new()
                }
            },
            RESOURCE_BROKER if name.is_empty() => cluster_default_configs(state),
            RESOURCE_BROKER if is_this_broker(state, name) => broker_configs(state),
            RESOURCE_BROKER => {
                out.error_code = code::INVALID_REQUEST;
                out.error_message = Some(s(format!(
                    "broker {name:?} is not this node ({}); ask that broker",
                    state.node_id()
                )));
                Vec::new()
            }
            RESOURCE_GROUP if name.is_empty() => {
                out.error_code = code::INVALID_GROUP_ID;
                out.error_message = Some(s("the group id is empty"));
                Vec::new()
            }
            RESOURCE_GROUP => group_configs(state, name),
            other => {
                out.error_code = code::INVALID_REQUEST;
                out.error_message = Some(s(format!(
                    "config resource type {other} is not supported (topics 2, brokers 4, groups 32)"
                )));
                Vec::new()
            }
        };
        let wanted = |n: &str| {
            res.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == n))
        };
        out.configs = entries
            .into_iter()
            .filter(|e| wanted(&e.name))
            .map(|e| {
                let mut c = DescribeConfigsResourceResult::default();
                c.name = s(e.name);
                c.value = e.value.map(s);
                c.config_source = e.source;
                c.read_only = e.read_only;
                c.is_sensitive = e.config_type == ConfigType::Password;
                if req.include_synonyms {
                    c.synonyms = e
                        .synonyms
                        .into_iter()
                        .map(|(n, v, src)| {
                            let mut syn = DescribeConfigsSynonym::default();
                            syn.name = s(n);
                            syn.value = Some(s(v));
                            syn.source = src;
                            syn
                        })
                        .collect();
                }
                if version >= 3 {
                    c.config_type = type_code(e.config_type);
                    if req.include_documentation && !e.doc.is_empty() {
                        c.documentation = Some(s(e.doc));
                    }
                }
                c
            })
            .collect();
        r.results.push(out);
    }
    Reply::new(ResponseKind::DescribeConfigs(r))
}

/// Where an alter of a non-topic resource applies, or Kafka's error.
fn dynamic_scope(resource_type: i8, name: &str) -> Result<ConfigScope, (i16, String)> {
    match resource_type {
        RESOURCE_BROKER if name.is_empty() => Ok(ConfigScope::ClusterDefault),
        RESOURCE_BROKER => name.parse::<u64>().map(ConfigScope::Broker).map_err(|_| {
            (
                code::INVALID_REQUEST,
                format!("broker resource name {name:?} is not a node id (or \"\" for the cluster-wide default)"),
            )
        }),
        RESOURCE_GROUP if name.is_empty() => {
            Err((code::INVALID_GROUP_ID, "the group id is empty".to_string()))
        }
        RESOURCE_GROUP => Ok(ConfigScope::Group(name.to_string())),
        other => Err((
            code::INVALID_REQUEST,
            format!(
                "config resource type {other} is not supported (topics 2, brokers 4, groups 32)"
            ),
        )),
    }
}

fn dynamic_error(e: &DynamicConfigError) -> (i16, String) {
    let c = match e {
        DynamicConfigError::ReadOnly(_) => code::INVALID_REQUEST,
        DynamicConfigError::Invalid(_) => code::INVALID_CONFIG,
        DynamicConfigError::Unavailable(_) => code::REQUEST_TIMED_OUT,
    };
    (c, e.to_string())
}

/// Sets a broker or group scope's dynamic configs to `after` (only the keys that change are
/// sent, so concurrent alters of other keys are kept). Group configs are checked here
/// against the coordinator's bounds; broker configs by the controller.
async fn alter_dynamic(
    state: &BrokerState,
    scope: ConfigScope,
    after: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    if matches!(scope, ConfigScope::Group(_)) {
        let g = state.groups.config();
        let bounds = GroupConfigBounds {
            session_timeout_min: g.consumer_min_session_timeout,
            session_timeout_max: g.consumer_max_session_timeout,
            heartbeat_interval_min: g.consumer_min_heartbeat_interval,
            heartbeat_interval_max: g.consumer_max_heartbeat_interval,
        };
        dynamic_config::validate_group(
            &after,
            &bounds,
            g.consumer_session_timeout,
            g.consumer_heartbeat_interval,
        )
        .map_err(|e| dynamic_error(&e))?;
    }
    let dynamic = state.controller.dynamic_configs();
    let current = dynamic.get(&scope);
    let mut changes: BTreeMap<String, Option<String>> = current
        .keys()
        .filter(|k| !after.contains_key(*k))
        .map(|k| (k.clone(), None))
        .collect();
    for (k, v) in &after {
        if current.get(k) != Some(v) {
            changes.insert(k.clone(), Some(v.clone()));
        }
    }
    if changes.is_empty() {
        return Ok(());
    }
    state
        .controller
        .alter_dynamic_configs(scope, changes, false, validate_only)
        .await
        .map_err(|e| dynamic_error(&e))
}

/// AlterConfigs: replaces the resource's configs with the given set, as Kafka does (a
/// topic's overrides, a broker scope's or a group's dynamic configs).
pub async fn alter_configs(state: &BrokerState, req: AlterConfigsRequest) -> Reply {
    let mut r = AlterConfigsResponse::default();
    for res in req.resources {
        let mut out = AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let configs: BTreeMap<String, String> = res
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let name = res.resource_name.as_str();
        let result = if res.resource_type == RESOURCE_TOPIC {
            state
                .controller
                .alter_configs(name, configs, req.validate_only)
                .await
                .map_err(|e| errors::controller(&e))
        } else {
            match dynamic_scope(res.resource_type, name) {
                Ok(scope) => alter_dynamic(state, scope, configs, req.validate_only).await,
                Err(e) => Err(e),
            }
        };
        if let Err((c, msg)) = result {
            tracing::debug!(resource = %name, code = c, %msg, "AlterConfigs refused");
            out.error_code = c;
            out.error_message = Some(s(msg));
        }
        r.responses.push(out);
    }
    Reply::new(ResponseKind::AlterConfigs(r))
}

/// A resource's configs after IncrementalAlterConfigs' operations, or Kafka's error.
/// `list_base(key)` is `Some(effective value)` for keys of list type (the only ones APPEND
/// and SUBTRACT apply to), `None` for the rest.
fn apply_incremental(
    current: &BTreeMap<String, String>,
    res: &AlterConfigsResource,
    list_base: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, (i16, String)> {
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = res.configs.iter().find(|c| !seen.insert(c.name.as_str())) {
        return Err((
            code::INVALID_REQUEST,
            format!("Error due to duplicate config keys: {}", dup.name.as_str()),
        ));
    }
    let mut next = current.clone();
    for c in &res.configs {
        let key = c.name.to_string();
        let value = c.value.as_ref().map(|v| v.to_string());
        match c.config_operation {
            OP_SET => match value {
                Some(v) => {
                    next.insert(key, v);
                }
                None => {
                    return Err((
                        code::INVALID_REQUEST,
                        format!("Null value not supported for : {key}"),
                    ))
                }
            },
            OP_DELETE => {
                next.remove(&key);
            }
            OP_APPEND | OP_SUBTRACT => {
                let Some(base) = list_base(&key) else {
                    let verb = if c.config_operation == OP_APPEND {
                        "append"
                    } else {
                        "subtract"
                    };
                    return Err((
                        code::INVALID_CONFIG,
                        format!("Config value {verb} is not allowed for config key: {key}"),
                    ));
                };
                let effective = next.get(&key).cloned().unwrap_or(base);
                let mut items: Vec<String> = effective
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect();
                let given = value
                    .unwrap_or_default()
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect::<Vec<_>>();
                if c.config_operation == OP_APPEND {
                    for v in given {
                        if !items.contains(&v) {
                            items.push(v);
                        }
                    }
                } else {
                    items.retain(|v| !given.contains(v));
                }
                next.insert(key, items.join(","));
            }
            other => {
                return Err((
                    code::INVALID_REQUEST,
                    format!("unknown config operation {other} for {key} (0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT)"),
                ))
            }
        }
    }
    Ok(next)
}

/// The effective value of a list-typed topic key (the base of APPEND / SUBTRACT).
fn topic_list_base(defaults: &TopicDefaults, topic_key: &str) -> Option<String> {
    let is_list = topic_config_info(topic_key).is_some_and(|(t, ..)| t == ConfigType::List);
    if !is_list {
        return None;
    }
    defaults
        .describe(&BTreeMap::new())
        .into_iter()
        .find(|d| d.name == topic_key)
        .map(|d| d.value)
}

/// IncrementalAlterConfigs: SET / DELETE / APPEND / SUBTRACT on a topic's overrides or a
/// broker scope's / group's dynamic configs, validated like AlterConfigs (and applied
/// through the controller the same way).
pub async fn incremental_alter_configs(
    state: &BrokerState,
    req: IncrementalAlterConfigsRequest,
) -> Reply {
    let mut r = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let mut out = iac::AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let name = res.resource_name.as_str();
        let defaults = state.controller.topic_defaults();
        let result = if res.resource_type == RESOURCE_TOPIC {
            match state.controller.topic(name) {
                None => Err((
                    code::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("topic {name:?} does not exist"),
                )),
                Some(meta) => {
                    match apply_incremental(&meta.configs, &res, |k| topic_list_base(&defaults, k))
                    {
                        Err(e) => Err(e),
                        Ok(configs) => state
                            .controller
                            .alter_configs(&meta.name, configs, req.validate_only)
                            .await
                            .map_err(|e| errors::controller(&e)),
                    }
                }
            }
        } else {
            match dynamic_scope(res.resource_type, name) {
                Err(e) => Err(e),
                Ok(scope) => {
                    let current = state.controller.dynamic_configs().get(&scope).clone();
                    let list_base = |k: &str| match scope {
                        ConfigScope::Group(_) => None,
                        _ => dynamic_broker_key(k).and_then(|t| topic_list_base(&defaults, t)),
                    };
                    match apply_incremental(&current, &res, list_base) {
                        Err(e) => Err(e),
                        Ok(after) => alter_dynamic(state, scope, after, req.validate_only).await,
                    }
                }
            }
        };
        if let Err((c, msg)) = result {
            tracing::debug!(resource = %name, code = c, %msg, "IncrementalAlterConfigs refused");
            out.error_code = c;
            out.error_message = Some(s(msg));
        }
        r.responses.push(out);
    }
    Reply::new(ResponseKind::IncrementalAlterConfigs(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;

    fn res(ops: &[(&str, i8, Option<&str>)]) -> AlterConfigsResource {
        let mut r = AlterConfigsResource::default();
        r.resource_type = RESOURCE_TOPIC;
        r.configs = ops
            .iter()
            .map(|(n, op, v)| {
                let mut c = AlterableConfig::default();
                c.name = s(*n);
                c.config_operation = *op;
                c.value = v.map(s);
                c
            })
            .collect();
        r
    }

    #[test]
    fn incremental_operations_table() {
        let d = rivulet_cluster::TopicDefaults::default();
        let cur: BTreeMap<String, String> = [("retention.ms".to_string(), "1000".to_string())]
            .into_iter()
            .collect();
        let get = |ops: &[(&str, i8, Option<&str>)]| {
            apply_incremental(&cur, &res(ops), |k| topic_list_base(&d, k))
        };
        let ok = get(&[
            ("segment.ms", OP_SET, Some("5")),
            ("retention.ms", OP_DELETE, None),
        ])
        .unwrap();
        assert_eq!(ok.get("segment.ms").map(String::as_str), Some("5"));
        assert!(!ok.contains_key("retention.ms"));
        // Lists start from the effective value (the default when not overridden).
        let appended = get(&[("cleanup.policy", OP_APPEND, Some("compact"))]).unwrap();
        assert_eq!(
            appended.get("cleanup.policy").map(String::as_str),
            Some("delete,compact")
        );
        let subtracted = get(&[("cleanup.policy", OP_SUBTRACT, Some("delete"))]).unwrap();
        assert_eq!(
            subtracted.get("cleanup.policy").map(String::as_str),
            Some("")
        );
        assert_eq!(
            get(&[("retention.ms", OP_APPEND, Some("1"))])
                .unwrap_err()
                .0,
            code::INVALID_CONFIG
        );
        assert_eq!(
            get(&[
                ("retention.ms", OP_SET, Some("1")),
                ("retention.ms", OP_DELETE, None)
            ])
            .unwrap_err()
            .0,
            code::INVALID_REQUEST
        );
        assert_eq!(
            get(&[("retention.ms", OP_SET, None)]).unwrap_err().0,
            code::INVALID_REQUEST
        );
        assert_eq!(
            get(&[("retention.ms", 9, Some("1"))]).unwrap_err().0,
            code::INVALID_REQUEST
        );
    }

    #[test]
    fn authorized_operation_bitfields_match_kafka() {
        // Values a Kafka broker without an authorizer answers.
        assert_eq!(super::super::admin::TOPIC_AUTHORIZED_OPERATIONS, 3576);
        assert_eq!(super::super::admin::CLUSTER_AUTHORIZED_OPERATIONS, 8096);
        assert_eq!(super::super::admin::GROUP_AUTHORIZED_OPERATIONS, 3400);
    }
}
