//! The config APIs: DescribeConfigs, AlterConfigs and IncrementalAlterConfigs, on topic,
//! broker and group resources.
//!
//! ```text
//!   TOPIC  (2)  describe: overrides + node defaults, with Kafka's types, docs and synonyms
//!               alter / incremental alter: through the controller (Raft), validated there
//!   BROKER (4)  describe: this node's effective settings that have Kafka names (read-only)
//!               alter: refused per resource ("Cannot update these configs dynamically")
//!   GROUP  (32) describe: the node's [groups] settings as KIP-848 group configs (read-only)
//!               alter: refused per resource (no per-group overrides yet)
//! ```
//!
//! Broker and group settings come from the node's config file only: there are no dynamic
//! (Raft-stored) broker or group configs yet, so both are described as read-only.

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
use rivulet_cluster::topic_config::{topic_config_info, ConfigType};
use rivulet_cluster::ConfigSource;
use rivulet_storage::TopicMeta;

use super::{s, Reply};
use crate::server::errors::{self, code};
use crate::server::BrokerState;

/// Kafka's ConfigResource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;

/// DescribeConfigs config_source values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

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
    value: String,
    source: i8,
    read_only: bool,
    config_type: ConfigType,
    doc: &'static str,
    /// `(name, value, source)`, most specific first (Kafka's order).
    synonyms: Vec<(String, String, i8)>,
}

fn topic_configs(state: &BrokerState, topic: &TopicMeta) -> Vec<Described> {
    let defaults: BTreeMap<String, String> = state
        .controller
        .config()
        .topic_defaults
        .describe(&BTreeMap::new())
        .into_iter()
        .map(|d| (d.name, d.value))
        .collect();
    state
        .controller
        .describe_configs(topic)
        .into_iter()
        .map(|e| {
            let (config_type, broker_name, doc) =
                topic_config_info(&e.name).unwrap_or((ConfigType::String, "", ""));
            let default = defaults.get(&e.name).cloned().unwrap_or_default();
            let source = match e.source {
                ConfigSource::Topic => SOURCE_TOPIC,
                ConfigSource::Default => SOURCE_DEFAULT,
            };
            let mut synonyms = Vec::with_capacity(2);
            if source == SOURCE_TOPIC {
                synonyms.push((e.name.clone(), e.value.clone(), SOURCE_TOPIC));
            }
            if !broker_name.is_empty() {
                synonyms.push((broker_name.to_string(), default, SOURCE_DEFAULT));
            }
            Described {
                name: e.name,
                value: e.value,
                source,
                read_only: e.read_only,
                config_type,
                doc,
                synonyms,
            }
        })
        .collect()
}

/// This node's settings that have Kafka names, with Kafka's types (all read-only: there are
/// no dynamic broker configs).
fn broker_configs(state: &BrokerState) -> Vec<Described> {
    use ConfigType::*;
    let c = state.controller.config();
    let d = &c.topic_defaults;
    let g = state.groups.config();
    let ms = |v: std::time::Duration| v.as_millis().to_string();
    let entries: Vec<(&str, std::string::String, ConfigType, &'static str)> = vec![
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            Boolean,
            "Create unknown topics on Metadata and Produce requests.",
        ),
        ("broker.id", c.node_id.to_string(), Int, "This node's id."),
        (
            "default.replication.factor",
            c.default_replication_factor.to_string(),
            Int,
            "Replication factor of topics created without one.",
        ),
        (
            "group.consumer.assignors",
            g.consumer_assignors.join(","),
            List,
            "Server-side assignors of consumer-protocol groups; the first is the default.",
        ),
        (
            "group.consumer.heartbeat.interval.ms",
            ms(g.consumer_heartbeat_interval),
            Int,
            "Heartbeat interval of consumer-protocol group members.",
        ),
        (
            "group.consumer.session.timeout.ms",
            ms(g.consumer_session_timeout),
            Int,
            "Session timeout of consumer-protocol group members.",
        ),
        (
            "group.initial.rebalance.delay.ms",
            ms(g.initial_rebalance_delay),
            Int,
            "How long a new classic group waits for more members.",
        ),
        (
            "group.max.session.timeout.ms",
            ms(g.max_session_timeout),
            Int,
            "Largest session timeout a classic member may ask for.",
        ),
        (
            "group.max.size",
            g.max_size.map_or(i32::MAX.to_string(), |m| m.to_string()),
            Int,
            "Most members in a group.",
        ),
        (
            "group.min.session.timeout.ms",
            ms(g.min_session_timeout),
            Int,
            "Smallest session timeout a classic member may ask for.",
        ),
        (
            "log.flush.interval.messages",
            d.flush_messages.to_string(),
            Long,
            "Default flush.messages of topics.",
        ),
        (
            "log.flush.interval.ms",
            d.flush_ms.to_string(),
            Long,
            "Default flush.ms of topics.",
        ),
        (
            "log.retention.bytes",
            d.retention_bytes.to_string(),
            Long,
            "Default retention.bytes of topics.",
        ),
        (
            "log.retention.ms",
            d.retention_ms.to_string(),
            Long,
            "Default retention.ms of topics.",
        ),
        (
            "log.roll.ms",
            d.segment_ms.to_string(),
            Long,
            "Default segment.ms of topics.",
        ),
        (
            "log.segment.bytes",
            d.segment_bytes.to_string(),
            Int,
            "Default segment.bytes of topics.",
        ),
        (
            "message.max.bytes",
            d.max_message_bytes.to_string(),
            Int,
            "Default max.message.bytes of topics.",
        ),
        (
            "min.insync.replicas",
            d.min_insync_replicas.to_string(),
            Int,
            "Default min.insync.replicas of topics.",
        ),
        ("node.id", c.node_id.to_string(), Int, "This node's id."),
        (
            "num.partitions",
            c.default_partitions.to_string(),
            Int,
            "Partitions of topics created without a count.",
        ),
        (
            "offset.metadata.max.bytes",
            g.offset_metadata_max_bytes.to_string(),
            Int,
            "Largest metadata string of a committed offset.",
        ),
        (
            "offsets.retention.minutes",
            (g.offsets_retention.as_secs() / 60).to_string(),
            Int,
            "Offsets of a group empty this long are deleted.",
        ),
        (
            "offsets.topic.num.partitions",
            g.offsets_partitions.to_string(),
            Int,
            "Partitions of __consumer_offsets.",
        ),
        (
            "offsets.topic.replication.factor",
            g.offsets_replication_factor.to_string(),
            Short,
            "Replication factor of __consumer_offsets.",
        ),
    ];
    entries
        .into_iter()
        .map(|(name, value, config_type, doc)| Described {
            synonyms: vec![(name.to_string(), value.clone(), SOURCE_STATIC_BROKER)],
            name: name.to_string(),
            value,
            source: SOURCE_STATIC_BROKER,
            read_only: true,
            config_type,
            doc,
        })
        .collect()
}

/// KIP-848 group configs: every group gets the node's `[groups]` settings (no per-group
/// overrides yet, hence read-only).
fn group_configs(state: &BrokerState) -> Vec<Described> {
    let g = state.groups.config();
    let ms = |v: std::time::Duration| v.as_millis().to_string();
    [
        (
            "consumer.heartbeat.interval.ms",
            "group.consumer.heartbeat.interval.ms",
            ms(g.consumer_heartbeat_interval),
            "Heartbeat interval given to the group's consumer-protocol members.",
        ),
        (
            "consumer.session.timeout.ms",
            "group.consumer.session.timeout.ms",
            ms(g.consumer_session_timeout),
            "Session timeout of the group's consumer-protocol members.",
        ),
    ]
    .into_iter()
    .map(|(name, broker_name, value, doc)| Described {
        synonyms: vec![(broker_name.to_string(), value.clone(), SOURCE_DEFAULT)],
        name: name.to_string(),
        value,
        source: SOURCE_DEFAULT,
        read_only: true,
        config_type: ConfigType::Int,
        doc,
    })
    .collect()
}

/// The broker-resource name must be this node (or "" for the cluster-wide default): each
/// node answers for its own settings, as Kafka's brokers do.
fn is_this_broker(state: &BrokerState, name: &str) -> bool {
    name.is_empty() || name == state.node_id().to_string()
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
            RESOURCE_GROUP => group_configs(state),
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
                c.value = Some(s(e.value));
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

/// Why broker or group configs cannot be changed, or `None` for topics (Kafka's code and
/// message where it has one).
fn refuse_non_topic(resource_type: i8, names: &[String]) -> Option<(i16, String)> {
    match resource_type {
        RESOURCE_TOPIC => None,
        // Kafka's answer for configs that are not dynamically updatable.
        RESOURCE_BROKER => Some((
            code::INVALID_REQUEST,
            format!(
                "Cannot update these configs dynamically: {{{}}}; Rivulet's broker settings come \
                 from its config file (restart the node to change them)",
                names.join(", ")
            ),
        )),
        RESOURCE_GROUP => Some((
            code::INVALID_REQUEST,
            format!(
                "group configs cannot be changed per group yet ({}): every group uses the \
                 node's [groups] settings",
                names.join(", ")
            ),
        )),
        other => Some((
            code::INVALID_REQUEST,
            format!(
                "config resource type {other} is not supported (topics 2, brokers 4, groups 32)"
            ),
        )),
    }
}

/// AlterConfigs (replaces a topic's overrides with the given set, as Kafka does).
pub async fn alter_configs(state: &BrokerState, req: AlterConfigsRequest) -> Reply {
    let mut r = AlterConfigsResponse::default();
    for res in req.resources {
        let mut out = AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let names: Vec<String> = res.configs.iter().map(|c| c.name.to_string()).collect();
        if let Some((c, msg)) = refuse_non_topic(res.resource_type, &names) {
            out.error_code = c;
            out.error_message = Some(s(msg));
        } else {
            let configs: BTreeMap<String, String> = res
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            if let Err(e) = state
                .controller
                .alter_configs(res.resource_name.as_str(), configs, req.validate_only)
                .await
            {
                let (c, msg) = errors::controller(&e);
                out.error_code = c;
                out.error_message = Some(s(msg));
            }
        }
        r.responses.push(out);
    }
    Reply::new(ResponseKind::AlterConfigs(r))
}

/// A topic's overrides after IncrementalAlterConfigs' operations, or Kafka's error.
fn apply_incremental(
    defaults: &rivulet_cluster::TopicDefaults,
    current: &BTreeMap<String, String>,
    res: &AlterConfigsResource,
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
                let is_list = topic_config_info(&key)
                    .is_some_and(|(t, ..)| t == ConfigType::List);
                if !is_list {
                    let verb = if c.config_operation == OP_APPEND {
                        "append"
                    } else {
                        "subtract"
                    };
                    return Err((
                        code::INVALID_CONFIG,
                        format!("Config value {verb} is not allowed for config key: {key}"),
                    ));
                }
                let effective = next.get(&key).cloned().unwrap_or_else(|| {
                    defaults
                        .describe(&BTreeMap::new())
                        .into_iter()
                        .find(|d| d.name == key)
                        .map(|d| d.value)
                        .unwrap_or_default()
                });
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

/// IncrementalAlterConfigs: SET / DELETE / APPEND / SUBTRACT on a topic's overrides,
/// validated like AlterConfigs (and applied through the controller the same way).
pub async fn incremental_alter_configs(
    state: &BrokerState,
    req: IncrementalAlterConfigsRequest,
) -> Reply {
    let mut r = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let mut out = iac::AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let names: Vec<String> = res.configs.iter().map(|c| c.name.to_string()).collect();
        let result = match refuse_non_topic(res.resource_type, &names) {
            Some(refusal) => Err(refusal),
            None => match state.controller.topic(res.resource_name.as_str()) {
                None => Err((
                    code::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("topic {:?} does not exist", res.resource_name.as_str()),
                )),
                Some(meta) => {
                    match apply_incremental(
                        &state.controller.config().topic_defaults,
                        &meta.configs,
                        &res,
                    ) {
                        Err(e) => Err(e),
                        Ok(configs) => state
                            .controller
                            .alter_configs(&meta.name, configs, req.validate_only)
                            .await
                            .map_err(|e| errors::controller(&e)),
                    }
                }
            },
        };
        if let Err((c, msg)) = result {
            tracing::debug!(resource = %res.resource_name.as_str(), code = c, %msg, "IncrementalAlterConfigs refused");
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
        let get = |ops: &[(&str, i8, Option<&str>)]| apply_incremental(&d, &cur, &res(ops));
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
