//! Cluster and topic administration APIs.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::{
    AlterConfigsResourceResponse, AlterConfigsResponse,
};
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, BrokerId, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteTopicsRequest, DescribeConfigsRequest, InitProducerIdRequest, MetadataRequest,
    ProducerId, ResponseKind, TopicName,
};
use rivulet_actors::group::OFFSETS_TOPIC;
use rivulet_cluster::{ConfigSource, NewTopic};
use rivulet_storage::TopicMeta;
use uuid::Uuid;

use super::{resolve_topic, s, Reply};
use crate::server::errors::{self, code};
use crate::server::{versions, BrokerState};

/// Kafka's resource type for topics in config APIs.
const RESOURCE_TOPIC: i8 = 2;
/// Kafka's resource type for brokers in config APIs.
const RESOURCE_BROKER: i8 = 4;
/// DescribeConfigs config_source: a topic-level override.
const SOURCE_TOPIC: i8 = 1;
/// DescribeConfigs config_source: a static broker setting.
const SOURCE_STATIC_BROKER: i8 = 4;
/// DescribeConfigs config_source: the default.
const SOURCE_DEFAULT: i8 = 5;

fn api_keys() -> Vec<ApiVersion> {
    versions::all()
        .into_iter()
        .map(|(k, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = k as i16;
            v.min_version = min;
            v.max_version = max;
            v
        })
        .collect()
}

/// ApiVersions.
pub fn api_versions() -> Reply {
    let mut r = ApiVersionsResponse::default();
    r.api_keys = api_keys();
    Reply::new(ResponseKind::ApiVersions(r))
}

/// The answer to an ApiVersions request in a version we do not serve (encoded as v0).
pub fn api_versions_unsupported() -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = code::UNSUPPORTED_VERSION;
    r.api_keys = api_keys();
    r
}

fn partitions_of(
    state: &BrokerState,
    topic: &TopicMeta,
    version: i16,
) -> Vec<MetadataResponsePartition> {
    state
        .controller
        .partitions(topic)
        .into_iter()
        .map(|p| {
            let mut mp = MetadataResponsePartition::default();
            mp.error_code = if p.leader < 0 {
                code::LEADER_NOT_AVAILABLE
            } else {
                code::NONE
            };
            mp.partition_index = p.partition;
            mp.leader_id = BrokerId(p.leader);
            if version >= 7 {
                mp.leader_epoch = p.leader_epoch;
            }
            mp.replica_nodes = p.replicas.into_iter().map(BrokerId).collect();
            mp.isr_nodes = p.isr.into_iter().map(BrokerId).collect();
            mp
        })
        .collect()
}

fn metadata_topic(state: &BrokerState, topic: &TopicMeta, version: i16) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(s(topic.name.clone())));
    if version >= 10 {
        t.topic_id = topic.id;
    }
    if version >= 1 {
        t.is_internal = is_internal(&topic.name);
    }
    t.partitions = partitions_of(state, topic, version);
    t.topic_authorized_operations = i32::MIN;
    t
}

/// Topics the node manages itself: clients may read them but not write, delete or create them.
pub(crate) fn is_internal(name: &str) -> bool {
    name == OFFSETS_TOPIC
}

/// Why clients may not change an internal topic.
fn internal_topic_refusal(name: &str, what: &str) -> String {
    format!(
        "{name} is an internal topic holding consumer group state and committed offsets; it cannot be {what}"
    )
}

fn metadata_error(
    name: Option<String>,
    id: Uuid,
    error_code: i16,
    version: i16,
) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = name.map(|n| TopicName(s(n)));
    if version >= 10 {
        t.topic_id = id;
    }
    t.error_code = error_code;
    t
}

/// Live brokers; this node is listed (a node serving the request is alive, and before it
/// registered with the controller clients still need its address) unless its controller lease
/// lapsed while other brokers are known: it is being fenced, and like a fenced KRaft broker it
/// leaves the list. librdkafka keeps asking the broker it used last for metadata, so without
/// this a producer of a partition this node led would not look elsewhere for the new leader
/// (librdkafka 2.10+ drops brokers a Metadata answer omits).
pub(crate) fn live_brokers(state: &BrokerState) -> Vec<rivulet_cluster::BrokerInfo> {
    let mut brokers = state.controller.brokers();
    let me = state.node_id();
    if !state.controller.lease_valid() && brokers.iter().any(|b| b.node_id != me) {
        brokers.retain(|b| b.node_id != me);
        return brokers;
    }
    if !brokers.iter().any(|b| b.node_id == state.node_id()) {
        brokers.push(rivulet_cluster::BrokerInfo {
            node_id: state.node_id(),
            host: state.advertised_host.clone(),
            port: state.advertised_port,
        });
    }
    brokers
}

/// The controller leader's id (-1 while there is none).
fn controller_id(state: &BrokerState) -> i32 {
    state.controller.controller_id()
}

/// Metadata: brokers, controller and topics (auto-creating unknown ones when allowed).
pub async fn metadata(state: &BrokerState, req: MetadataRequest, version: i16) -> Reply {
    let mut r = MetadataResponse::default();
    r.brokers = live_brokers(state)
        .into_iter()
        .map(|b| {
            let mut broker = MetadataResponseBroker::default();
            broker.node_id = BrokerId(b.node_id);
            broker.host = s(b.host);
            broker.port = b.port;
            broker
        })
        .collect();
    if version >= 2 {
        r.cluster_id = Some(s(state.cluster_id.clone()));
    }
    if version >= 1 {
        r.controller_id = BrokerId(controller_id(state));
    }
    r.cluster_authorized_operations = i32::MIN;
    // v0: an empty list means every topic; v1+: null means every topic.
    let requested = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t),
    };
    let allow_create = version < 4 || req.allow_auto_topic_creation;
    r.topics = match requested {
        None => state
            .controller
            .topics()
            .iter()
            .map(|t| metadata_topic(state, t, version))
            .collect(),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for t in list {
                let name = t.name.as_ref().map(|n| n.0.as_str().to_string());
                let found = match &name {
                    // Created by FindCoordinator with its own settings, never with defaults.
                    Some(n) if is_internal(n) => Ok(state.controller.topic(n)),
                    Some(n) if allow_create => state.controller.auto_create(n).await,
                    Some(n) => Ok(state.controller.topic(n)),
                    None => Ok(state.controller.topic_by_id(t.topic_id)),
                };
                out.push(match found {
                    Ok(Some(meta)) => metadata_topic(state, &meta, version),
                    Ok(None) if name.is_none() => {
                        metadata_error(None, t.topic_id, code::UNKNOWN_TOPIC_ID, version)
                    }
                    Ok(None) => {
                        metadata_error(name, Uuid::nil(), code::UNKNOWN_TOPIC_OR_PARTITION, version)
                    }
                    Err(e) => metadata_error(name, Uuid::nil(), errors::controller(&e).0, version),
                });
            }
            out
        }
    };
    Reply::new(ResponseKind::Metadata(r))
}

fn config_entries(state: &BrokerState, topic: &TopicMeta) -> Vec<(String, String, i8)> {
    state
        .controller
        .describe_configs(topic)
        .into_iter()
        .map(|e| {
            let src = match e.source {
                ConfigSource::Topic => SOURCE_TOPIC,
                ConfigSource::Default => SOURCE_DEFAULT,
            };
            (e.name, e.value, src)
        })
        .collect()
}

/// CreateTopics.
pub async fn create_topics(state: &BrokerState, req: CreateTopicsRequest, version: i16) -> Reply {
    let mut r = CreateTopicsResponse::default();
    for t in req.topics {
        let name = t.name.0.as_str().to_string();
        let mut res = CreatableTopicResult::default();
        res.name = t.name.clone();
        if is_internal(&name) {
            res.error_code = code::INVALID_REQUEST;
            res.error_message = Some(s(internal_topic_refusal(
                &name,
                "created by clients (the node creates it when the first consumer group appears)",
            )));
            r.topics.push(res);
            continue;
        }
        let mut new = NewTopic {
            name: name.clone(),
            partitions: (t.num_partitions > 0).then_some(t.num_partitions),
            replication_factor: (t.replication_factor > 0).then_some(t.replication_factor),
            configs: t
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect(),
            validate_only: req.validate_only,
            assignment: None,
        };
        if !t.assignments.is_empty() {
            if t.num_partitions != -1 || t.replication_factor != -1 {
                res.error_code = code::INVALID_REQUEST;
                res.error_message = Some(s(
                    "give either replica assignments or num_partitions/replication_factor, not both",
                ));
                r.topics.push(res);
                continue;
            }
            let mut assignment: Vec<(i32, Vec<i32>)> = t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect();
            assignment.sort_by_key(|(p, _)| *p);
            if assignment
                .iter()
                .enumerate()
                .any(|(i, (p, _))| *p != i as i32)
            {
                res.error_code =
                    kafka_protocol::error::ResponseError::InvalidReplicaAssignment.code();
                res.error_message = Some(s(
                    "replica assignments must cover partitions 0..n-1 exactly once",
                ));
                r.topics.push(res);
                continue;
            }
            new.assignment = Some(assignment.into_iter().map(|(_, r)| r).collect());
            new.partitions = Some(t.assignments.len() as i32);
            new.replication_factor = Some(
                t.assignments
                    .first()
                    .map(|a| a.broker_ids.len() as i16)
                    .unwrap_or(1),
            );
        }
        match state.controller.create_topic(new).await {
            Ok(meta) => {
                if version >= 7 {
                    res.topic_id = meta.id;
                }
                if version >= 5 {
                    res.num_partitions = meta.partitions;
                    res.replication_factor = meta.replication_factor;
                    res.configs = Some(
                        config_entries(state, &meta)
                            .into_iter()
                            .map(|(n, v, src)| {
                                let mut c = CreatableTopicConfigs::default();
                                c.name = s(n);
                                c.value = Some(s(v));
                                c.config_source = src;
                                c
                            })
                            .collect(),
                    );
                }
            }
            Err(e) => {
                let (code, msg) = errors::controller(&e);
                res.error_code = code;
                res.error_message = Some(s(msg));
            }
        }
        r.topics.push(res);
    }
    Reply::new(ResponseKind::CreateTopics(r))
}

/// DeleteTopics.
pub async fn delete_topics(state: &BrokerState, req: DeleteTopicsRequest, version: i16) -> Reply {
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut r = DeleteTopicsResponse::default();
    for (name, id) in targets {
        let mut res = DeletableTopicResult::default();
        if version >= 6 {
            res.topic_id = id;
        }
        let meta = resolve_topic(state, name.as_deref().unwrap_or(""), id);
        res.name = name
            .clone()
            .or_else(|| meta.as_ref().map(|m| m.name.clone()))
            .map(|n| TopicName(s(n)));
        match meta {
            None => {
                res.error_code = if name.is_some() {
                    code::UNKNOWN_TOPIC_OR_PARTITION
                } else {
                    code::UNKNOWN_TOPIC_ID
                };
            }
            Some(meta) if is_internal(&meta.name) => {
                if version >= 6 {
                    res.topic_id = meta.id;
                }
                res.error_code = code::INVALID_REQUEST;
                if version >= 5 {
                    res.error_message = Some(s(internal_topic_refusal(&meta.name, "deleted")));
                }
            }
            Some(meta) => {
                if version >= 6 {
                    res.topic_id = meta.id;
                }
                if let Err(e) = state.controller.delete_topic(&meta.name).await {
                    let (code, msg) = errors::controller(&e);
                    res.error_code = code;
                    if version >= 5 {
                        res.error_message = Some(s(msg));
                    }
                }
            }
        }
        r.responses.push(res);
    }
    Reply::new(ResponseKind::DeleteTopics(r))
}

/// CreatePartitions.
pub async fn create_partitions(state: &BrokerState, req: CreatePartitionsRequest) -> Reply {
    let mut r = CreatePartitionsResponse::default();
    for t in req.topics {
        let mut res = CreatePartitionsTopicResult::default();
        res.name = t.name.clone();
        if is_internal(t.name.0.as_str()) {
            // Groups hash onto its partitions: a new count would move every group's state.
            res.error_code = code::INVALID_REQUEST;
            res.error_message = Some(s(internal_topic_refusal(
                t.name.0.as_str(),
                "given more partitions",
            )));
        } else if let Err(e) = state
            .controller
            .create_partitions(t.name.0.as_str(), t.count, req.validate_only)
            .await
        {
            let (code, msg) = errors::controller(&e);
            res.error_code = code;
            res.error_message = Some(s(msg));
        }
        r.results.push(res);
    }
    Reply::new(ResponseKind::CreatePartitions(r))
}

fn broker_configs(state: &BrokerState) -> Vec<(String, String)> {
    let d = &state.controller.config().topic_defaults;
    let c = state.controller.config();
    vec![
        (
            "auto.create.topics.enable".into(),
            c.auto_create_topics.to_string(),
        ),
        ("broker.id".into(), c.node_id.to_string()),
        (
            "default.replication.factor".into(),
            c.default_replication_factor.to_string(),
        ),
        (
            "log.flush.interval.messages".into(),
            d.flush_messages.to_string(),
        ),
        ("log.flush.interval.ms".into(), d.flush_ms.to_string()),
        ("log.retention.bytes".into(), d.retention_bytes.to_string()),
        ("log.retention.ms".into(), d.retention_ms.to_string()),
        ("log.roll.ms".into(), d.segment_ms.to_string()),
        ("log.segment.bytes".into(), d.segment_bytes.to_string()),
        ("message.max.bytes".into(), d.max_message_bytes.to_string()),
        (
            "min.insync.replicas".into(),
            d.min_insync_replicas.to_string(),
        ),
        ("node.id".into(), c.node_id.to_string()),
        ("num.partitions".into(), c.default_partitions.to_string()),
    ]
}

/// DescribeConfigs for topics and this broker.
pub fn describe_configs(state: &BrokerState, req: DescribeConfigsRequest) -> Reply {
    let mut r = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let wanted = |name: &str| {
            res.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
        };
        let entries: Vec<(String, String, i8, bool)> = match res.resource_type {
            RESOURCE_TOPIC => match state.controller.topic(res.resource_name.as_str()) {
                Some(meta) => config_entries(state, &meta)
                    .into_iter()
                    .map(|(n, v, src)| (n, v, src, false))
                    .collect(),
                None => {
                    out.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                    out.error_message = Some(s(format!(
                        "topic {:?} does not exist",
                        res.resource_name.as_str()
                    )));
                    Vec::new()
                }
            },
            RESOURCE_BROKER => {
                let id_ok = res.resource_name.is_empty()
                    || res.resource_name.as_str() == state.node_id().to_string();
                if id_ok {
                    broker_configs(state)
                        .into_iter()
                        .map(|(n, v)| (n, v, SOURCE_STATIC_BROKER, true))
                        .collect()
                } else {
                    out.error_code = code::INVALID_REQUEST;
                    out.error_message = Some(s(format!(
                        "broker {:?} is not this node ({})",
                        res.resource_name.as_str(),
                        state.node_id()
                    )));
                    Vec::new()
                }
            }
            other => {
                out.error_code = code::INVALID_REQUEST;
                out.error_message = Some(s(format!("resource type {other} is not supported")));
                Vec::new()
            }
        };
        out.configs = entries
            .into_iter()
            .filter(|(n, ..)| wanted(n))
            .map(|(n, v, src, read_only)| {
                let mut c = DescribeConfigsResourceResult::default();
                c.name = s(n);
                c.value = Some(s(v));
                c.config_source = src;
                c.read_only = read_only;
                c
            })
            .collect();
        r.results.push(out);
    }
    Reply::new(ResponseKind::DescribeConfigs(r))
}

/// AlterConfigs (replaces a topic's overrides with the given set, as Kafka does).
pub async fn alter_configs(state: &BrokerState, req: AlterConfigsRequest) -> Reply {
    let mut r = AlterConfigsResponse::default();
    for res in req.resources {
        let mut out = AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        if res.resource_type != RESOURCE_TOPIC {
            out.error_code = code::INVALID_REQUEST;
            out.error_message = Some(s(
                "only topic configs can be altered; broker settings come from the config file",
            ));
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
                let (code, msg) = errors::controller(&e);
                out.error_code = code;
                out.error_message = Some(s(msg));
            }
        }
        r.responses.push(out);
    }
    Reply::new(ResponseKind::AlterConfigs(r))
}

/// InitProducerId for idempotent producers. Transactions are not supported yet.
pub async fn init_producer_id(state: &BrokerState, req: InitProducerIdRequest) -> Reply {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    if req.transactional_id.is_some() {
        r.error_code = code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        return Reply::new(ResponseKind::InitProducerId(r));
    }
    // KIP-360: a producer that knows its id asks for an epoch bump after a fatal sequence error.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        r.producer_id = req.producer_id;
        r.producer_epoch = req.producer_epoch + 1;
        return Reply::new(ResponseKind::InitProducerId(r));
    }
    match state.controller.allocate_producer_id().await {
        Ok(id) => {
            r.producer_id = ProducerId(id);
            r.producer_epoch = 0;
        }
        Err(e) => {
            tracing::error!(error = %e, "could not allocate a producer id");
            r.error_code = code::KAFKA_STORAGE_ERROR;
        }
    }
    Reply::new(ResponseKind::InitProducerId(r))
}

/// DescribeCluster.
pub fn describe_cluster(state: &BrokerState) -> Reply {
    let mut r = DescribeClusterResponse::default();
    r.cluster_id = s(state.cluster_id.clone());
    r.controller_id = BrokerId(controller_id(state));
    r.cluster_authorized_operations = i32::MIN;
    r.brokers = live_brokers(state)
        .into_iter()
        .map(|info| {
            let mut b = DescribeClusterBroker::default();
            b.broker_id = BrokerId(info.node_id);
            b.host = s(info.host);
            b.port = info.port;
            b
        })
        .collect();
    Reply::new(ResponseKind::DescribeCluster(r))
}
