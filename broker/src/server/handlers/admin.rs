//! Cluster and topic administration APIs.

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
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, InitProducerIdRequest, MetadataRequest, ProducerId, ResponseKind,
    TopicName,
};
use rivulet_cluster::NewTopic;
use rivulet_storage::TopicMeta;
use uuid::Uuid;

use super::{resolve_topic, s, Reply};
use crate::server::errors::{self, code};
use crate::server::{versions, BrokerState};

/// Kafka's AclOperation codes (`org.apache.kafka.common.acl.AclOperation`).
mod acl_op {
    pub(super) const READ: u8 = 3;
    pub(super) const WRITE: u8 = 4;
    pub(super) const CREATE: u8 = 5;
    pub(super) const DELETE: u8 = 6;
    pub(super) const ALTER: u8 = 7;
    pub(super) const DESCRIBE: u8 = 8;
    pub(super) const CLUSTER_ACTION: u8 = 9;
    pub(super) const DESCRIBE_CONFIGS: u8 = 10;
    pub(super) const ALTER_CONFIGS: u8 = 11;
    pub(super) const IDEMPOTENT_WRITE: u8 = 12;
}

const fn op_bits(ops: &[u8]) -> i32 {
    let mut bits = 0i32;
    let mut i = 0;
    while i < ops.len() {
        bits |= 1 << ops[i];
        i += 1;
    }
    bits
}

// What a client asking for `include_*_authorized_operations` gets. Rivulet has no ACLs, so
// everyone may do everything: like Kafka without an authorizer, the answer is every operation
// that applies to the resource type (Kafka's `AclEntry.supportedOperations`). When not asked,
// the field keeps Kafka's "not provided" value, i32::MIN, which clients must not decode as a
// bitfield (kafka-python 2.x did, and failed on bit 31).
/// Operations on a topic.
pub(crate) const TOPIC_AUTHORIZED_OPERATIONS: i32 = op_bits(&[
    acl_op::READ,
    acl_op::WRITE,
    acl_op::CREATE,
    acl_op::DELETE,
    acl_op::ALTER,
    acl_op::DESCRIBE,
    acl_op::DESCRIBE_CONFIGS,
    acl_op::ALTER_CONFIGS,
]);
/// Operations on the cluster.
pub(crate) const CLUSTER_AUTHORIZED_OPERATIONS: i32 = op_bits(&[
    acl_op::CREATE,
    acl_op::ALTER,
    acl_op::DESCRIBE,
    acl_op::CLUSTER_ACTION,
    acl_op::DESCRIBE_CONFIGS,
    acl_op::ALTER_CONFIGS,
    acl_op::IDEMPOTENT_WRITE,
]);
/// Operations on a consumer group.
pub(crate) const GROUP_AUTHORIZED_OPERATIONS: i32 = op_bits(&[
    acl_op::READ,
    acl_op::DELETE,
    acl_op::DESCRIBE,
    acl_op::DESCRIBE_CONFIGS,
    acl_op::ALTER_CONFIGS,
]);
/// Kafka's value for authorized operations nobody asked for.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

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
    t.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    t
}

/// Topics the node manages itself: clients may read them but not write, delete or create them.
/// The list is the cluster's policy.
pub(crate) use rivulet_cluster::policy::is_internal;

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
    live_brokers_of(
        &state.controller,
        &state.advertised_host,
        state.advertised_port,
    )
}

/// [`live_brokers`] from the controller and this node's advertised address (the admin
/// endpoint's cluster view uses it too).
pub(crate) fn live_brokers_of(
    controller: &rivulet_cluster::Controller,
    advertised_host: &str,
    advertised_port: i32,
) -> Vec<rivulet_cluster::BrokerInfo> {
    let mut brokers = controller.brokers();
    let me = controller.node_id();
    if !controller.lease_valid() && brokers.iter().any(|b| b.node_id != me) {
        brokers.retain(|b| b.node_id != me);
        return brokers;
    }
    if !brokers.iter().any(|b| b.node_id == me) {
        brokers.push(rivulet_cluster::BrokerInfo {
            node_id: me,
            host: advertised_host.to_string(),
            port: advertised_port,
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
    r.cluster_authorized_operations = if req.include_cluster_authorized_operations {
        CLUSTER_AUTHORIZED_OPERATIONS
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    let include_topic_operations = req.include_topic_authorized_operations;
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
                // A topic id, when given, is the key and the name is ignored, as in Kafka: the
                // Java consumer asks for the topics of a KIP-848 assignment by id with the name
                // set to "" (not null).
                let name = t
                    .name
                    .as_ref()
                    .map(|n| n.0.as_str().to_string())
                    .filter(|_| t.topic_id.is_nil());
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
    if include_topic_operations {
        for t in r.topics.iter_mut().filter(|t| t.error_code == code::NONE) {
            t.topic_authorized_operations = TOPIC_AUTHORIZED_OPERATIONS;
        }
    }
    Reply::new(ResponseKind::Metadata(r))
}

fn config_entries(state: &BrokerState, topic: &TopicMeta) -> Vec<(String, String, i8)> {
    state
        .controller
        .describe_configs(topic)
        .into_iter()
        .map(|e| (e.name, e.value, super::configs::source_code(e.source)))
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
            // Only -1 means "the node's default" (as in Kafka); 0 or another negative count is
            // passed on so the controller refuses it with INVALID_PARTITIONS or
            // INVALID_REPLICATION_FACTOR instead of quietly creating a default topic.
            partitions: (t.num_partitions != -1).then_some(t.num_partitions),
            replication_factor: (t.replication_factor != -1).then_some(t.replication_factor),
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
            .create_partitions(
                t.name.0.as_str(),
                t.count,
                t.assignments.as_ref().map(|a| {
                    a.iter()
                        .map(|p| p.broker_ids.iter().map(|b| b.0).collect())
                        .collect()
                }),
                req.validate_only,
            )
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

/// InitProducerId for idempotent producers. Transactions are not supported yet.
pub async fn init_producer_id(state: &BrokerState, req: InitProducerIdRequest) -> Reply {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    if req.transactional_id.is_some() {
        r.error_code = code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        return Reply::new(ResponseKind::InitProducerId(r));
    }
    // Without a transactional id the request proves nothing about who owns the producer id and
    // epoch it carries (any batch shows them), so, as Kafka does, it always gets a fresh id at
    // epoch 0. Bumping the given epoch instead (KIP-360) would let any client fence another
    // producer, or claim the next id to be allocated. An idempotent producer that asks for a
    // bump after a sequence error simply starts over under the new id.
    if req.producer_id.0 >= 0 {
        tracing::debug!(
            producer_id = req.producer_id.0,
            producer_epoch = req.producer_epoch,
            "InitProducerId without a transactional id: handing out a new producer id"
        );
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
pub fn describe_cluster(state: &BrokerState, req: DescribeClusterRequest) -> Reply {
    let mut r = DescribeClusterResponse::default();
    r.cluster_id = s(state.cluster_id.clone());
    r.controller_id = BrokerId(controller_id(state));
    r.cluster_authorized_operations = if req.include_cluster_authorized_operations {
        CLUSTER_AUTHORIZED_OPERATIONS
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
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
