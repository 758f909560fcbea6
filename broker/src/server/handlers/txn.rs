//! Transactions (issue 14): InitProducerId with a transactional id, AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn, DescribeTransactions and ListTransactions, served by the transaction coordinator of the id
//! (`rivulet_actors::txn`); the node's side of them (markers, producer ids) is
//! `rivulet_cluster::txn`. DescribeProducers is answered by partition leaders from their
//! log's producer state.
//!
//! Served only with `[transactions] enabled = true`; otherwise transactional requests get
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, which every client treats as fatal at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_offsets_to_txn_response::AddOffsetsToTxnResponse;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResponse, AddPartitionsToTxnResult,
    AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_producers_response::{
    DescribeProducersResponse, PartitionResponse as ProducersPartition, ProducerState,
    TopicResponse as ProducersTopic,
};
use kafka_protocol::messages::describe_transactions_response::{
    DescribeTransactionsResponse, TopicData, TransactionState as DescribedTxn,
};
use kafka_protocol::messages::end_txn_response::EndTxnResponse;
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::list_transactions_response::{
    ListTransactionsResponse, TransactionState as ListedTxn,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponse, TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, DescribeProducersRequest,
    DescribeTransactionsRequest, EndTxnRequest, InitProducerIdRequest, ListTransactionsRequest,
    ProducerId, ResponseKind, TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use rivulet_actors::group::{partition_for, GroupError, TxnCommitRequest, OFFSETS_TOPIC};
use rivulet_actors::txn::TRANSACTION_STATE_TOPIC;
use rivulet_actors::txn::{self, TxnError, TxnPartition, Txns};
use rivulet_cluster::txn::NodeTxnEnvironment;
use rivulet_cluster::Controller;
use rivulet_storage::TopicMeta;

use super::groups::CoordinatorAnswer;
use super::Reply;
use crate::server::errors::{self, code};
use crate::server::BrokerState;

/// Starts the coordinators when transactions are enabled.
pub async fn start(
    settings: &crate::config::TransactionSettings,
    controller: &Controller,
    groups: &rivulet_actors::group::Groups,
    registry: rivulet_actors::ReplicaRegistry,
    supervisor: ractor::ActorCell,
) -> Result<Option<Txns>, rivulet_actors::ActorsError> {
    if !settings.enabled {
        return Ok(None);
    }
    let catalog = Arc::new(super::groups::ControllerCatalog(controller.clone()));
    let config = settings.to_coordinator_config();
    let env = Arc::new(NodeTxnEnvironment::new(
        controller.clone(),
        groups.clone(),
        config.write_timeout,
    ));
    Txns::start(config, registry, catalog, env, Some(supervisor))
        .await
        .map(Some)
}

/// What a transactional request gets while transactions are off.
fn disabled() -> TxnError {
    // Mapped below to TRANSACTIONAL_ID_AUTHORIZATION_FAILED, not to a TxnError code.
    TxnError::InvalidTxnState
}

fn txns(state: &BrokerState) -> Result<&Txns, TxnError> {
    state.txns.as_ref().ok_or_else(disabled)
}

/// InitProducerId with a transactional id (v0-5). `v >= 3` may carry the producer's current id
/// and epoch (KIP-360).
pub async fn init_producer_id(
    state: &BrokerState,
    req: InitProducerIdRequest,
    transactional_id: String,
    v: i16,
) -> Reply {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    let Ok(txns) = txns(state) else {
        r.error_code = code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        return Reply::new(ResponseKind::InitProducerId(r));
    };
    let expected =
        (v >= 3 && req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    let ask = txn::InitProducerIdRequest {
        transactional_id,
        timeout_ms: i64::from(req.transaction_timeout_ms),
        expected,
    };
    match txns.init_producer_id(ask).await {
        Ok((pid, epoch)) => {
            r.producer_id = ProducerId(pid);
            r.producer_epoch = epoch;
        }
        // PRODUCER_FENCED exists for InitProducerId from v4 (KIP-588).
        Err(e) => r.error_code = errors::txn(e, v >= 4),
    }
    Reply::new(ResponseKind::InitProducerId(r))
}

/// AddPartitionsToTxn v0-4: v0-3 from producers (one transaction), v4 from brokers (several,
/// each possibly `verify_only`, KIP-890).
pub async fn add_partitions_to_txn(
    state: &BrokerState,
    req: AddPartitionsToTxnRequest,
    v: i16,
) -> Reply {
    let mut r = AddPartitionsToTxnResponse::default();
    let fenced_code = v >= 2;
    if v <= 3 {
        let parts: Vec<TxnPartition> = req
            .v3_and_below_topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| TxnPartition::new(t.name.0.to_string(), *p))
            })
            .collect();
        let ask = txn::AddPartitionsRequest {
            transactional_id: req.v3_and_below_transactional_id.0.to_string(),
            producer_id: req.v3_and_below_producer_id.0,
            producer_epoch: req.v3_and_below_producer_epoch,
            partitions: parts.clone(),
            verify_only: false,
        };
        let outcome = add(state, ask, fenced_code).await;
        r.results_by_topic_v3_and_below = topic_results(outcome);
        return Reply::new(ResponseKind::AddPartitionsToTxn(r));
    }
    for t in req.transactions {
        let ask = txn::AddPartitionsRequest {
            transactional_id: t.transactional_id.0.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            partitions: t
                .topics
                .iter()
                .flat_map(|tp| {
                    tp.partitions
                        .iter()
                        .map(|p| TxnPartition::new(tp.name.0.to_string(), *p))
                })
                .collect(),
            verify_only: t.verify_only,
        };
        let mut res = AddPartitionsToTxnResult::default();
        res.transactional_id = t.transactional_id.clone();
        res.topic_results = topic_results(add(state, ask, true).await);
        r.results_by_transaction.push(res);
    }
    Reply::new(ResponseKind::AddPartitionsToTxn(r))
}

/// Per-partition codes of one AddPartitionsToTxn transaction.
async fn add(
    state: &BrokerState,
    ask: txn::AddPartitionsRequest,
    fenced_code: bool,
) -> Vec<(TxnPartition, i16)> {
    let parts = ask.partitions.clone();
    let all = |c: i16| parts.iter().map(|p| (p.clone(), c)).collect::<Vec<_>>();
    let Ok(txns) = txns(state) else {
        return all(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    };
    // Adding a partition that does not exist would leave a transaction no marker can finish.
    if !ask.verify_only {
        let unknown = parts.iter().any(|p| {
            state
                .controller
                .topic(&p.topic)
                .is_none_or(|t| p.partition < 0 || p.partition >= t.partitions)
        });
        if unknown {
            return parts
                .iter()
                .map(|p| {
                    let known = state
                        .controller
                        .topic(&p.topic)
                        .is_some_and(|t| p.partition >= 0 && p.partition < t.partitions);
                    let c = if known {
                        // Kafka's code for the partitions that were fine in a failed request.
                        ResponseError::OperationNotAttempted.code()
                    } else {
                        code::UNKNOWN_TOPIC_OR_PARTITION
                    };
                    (p.clone(), c)
                })
                .collect();
        }
    }
    match txns.add_partitions(ask).await {
        Ok(v) => v
            .into_iter()
            .map(|(p, e)| (p, e.map_or(code::NONE, |e| errors::txn(e, fenced_code))))
            .collect(),
        Err(e) => all(errors::txn(e, fenced_code)),
    }
}

fn topic_results(outcome: Vec<(TxnPartition, i16)>) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for (p, c) in outcome {
        let mut pr = AddPartitionsToTxnPartitionResult::default();
        pr.partition_index = p.partition;
        pr.partition_error_code = c;
        match topics.iter_mut().find(|t| t.name.0.as_str() == p.topic) {
            Some(t) => t.results_by_partition.push(pr),
            None => {
                let mut t = AddPartitionsToTxnTopicResult::default();
                t.name = TopicName(StrBytes::from_string(p.topic));
                t.results_by_partition.push(pr);
                topics.push(t);
            }
        }
    }
    topics
}

/// AddOffsetsToTxn v0-3: adds the group's `__consumer_offsets` partition to the transaction.
pub async fn add_offsets_to_txn(state: &BrokerState, req: AddOffsetsToTxnRequest, v: i16) -> Reply {
    let mut r = AddOffsetsToTxnResponse::default();
    let group = req.group_id.0.to_string();
    let ask = txn::AddPartitionsRequest {
        transactional_id: req.transactional_id.0.to_string(),
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        partitions: vec![TxnPartition::new(
            OFFSETS_TOPIC,
            partition_for(&group, state.groups.offsets_partitions()),
        )],
        verify_only: false,
    };
    r.error_code = match txns(state) {
        Err(_) => code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        Ok(_) if group.is_empty() => code::INVALID_GROUP_ID,
        Ok(t) => match t.add_partitions(ask).await {
            Ok(_) => code::NONE,
            Err(e) => errors::txn(e, v >= 2),
        },
    };
    Reply::new(ResponseKind::AddOffsetsToTxn(r))
}

/// EndTxn v0-4.
pub async fn end_txn(state: &BrokerState, req: EndTxnRequest, v: i16) -> Reply {
    let mut r = EndTxnResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    let ask = txn::EndTxnRequest {
        transactional_id: req.transactional_id.0.to_string(),
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        commit: req.committed,
    };
    r.error_code = match txns(state) {
        Err(_) => code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        Ok(t) => match t.end_txn(ask).await {
            Ok(()) => code::NONE,
            Err(e) => errors::txn(e, v >= 2),
        },
    };
    Reply::new(ResponseKind::EndTxn(r))
}

/// TxnOffsetCommit v0-4: group offsets committed inside a transaction, pending in the group
/// coordinator until the transaction's marker reaches the group's `__consumer_offsets`
/// partition (AddOffsetsToTxn put that partition in the transaction).
pub async fn txn_offset_commit(state: &BrokerState, req: TxnOffsetCommitRequest, v: i16) -> Reply {
    let group = req.group_id.0.to_string();
    let (asked, offsets) = super::groups::offsets_to_commit(req.topics.iter().map(|t| {
        let parts = t.partitions.iter().map(|p| {
            let epoch = if v >= 2 { p.committed_leader_epoch } else { -1 };
            let meta = p.committed_metadata.as_ref().map(|m| m.to_string());
            (p.partition_index, p.committed_offset, epoch, meta)
        });
        (t.name.0.to_string(), parts.collect())
    }));
    let ask = TxnCommitRequest {
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        member_id: if v >= 3 {
            req.member_id.to_string()
        } else {
            String::new()
        },
        generation_id: if v >= 3 { req.generation_id } else { -1 },
        group_instance_id: if v >= 3 {
            req.group_instance_id.as_ref().map(|s| s.to_string())
        } else {
            None
        },
        offsets,
    };
    let result = match txns(state) {
        Err(_) => None,
        Ok(_) if group.is_empty() => Some(Err(GroupError::InvalidGroupId)),
        Ok(_) => Some(state.groups.txn_commit_offsets(&group, ask).await),
    };
    let codes = match &result {
        None => asked
            .iter()
            .map(|(t, ps)| {
                let c = code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
                (t.clone(), ps.iter().map(|p| (*p, c)).collect())
            })
            .collect(),
        Some(r) => super::groups::partition_codes(&asked, r),
    };
    let mut r = TxnOffsetCommitResponse::default();
    r.topics = codes
        .into_iter()
        .map(|(topic, parts)| {
            let mut t = TxnOffsetCommitResponseTopic::default();
            t.name = TopicName(StrBytes::from_string(topic));
            t.partitions = parts
                .into_iter()
                .map(|(p, c)| {
                    let mut pr = TxnOffsetCommitResponsePartition::default();
                    pr.partition_index = p;
                    pr.error_code = c;
                    pr
                })
                .collect();
            t
        })
        .collect();
    Reply::new(ResponseKind::TxnOffsetCommit(r))
}

// ---------------------------------------------------------------------------------------------
// DescribeProducers
// ---------------------------------------------------------------------------------------------

/// DescribeProducers v0 (`kafka-transactions.sh describe-producers` and `find-hanging`): the
/// producers each requested partition's leader keeps state for, with the start offset of
/// their open transaction there. Served whether or not transactions are enabled (idempotent
/// producers have state too). The coordinator epoch is not kept with the producer state
/// (markers are not replayed for it), so it is always -1, Kafka's "unknown".
pub fn describe_producers(state: &BrokerState, req: DescribeProducersRequest) -> Reply {
    let mut r = DescribeProducersResponse::default();
    for t in req.topics {
        let mut tr = ProducersTopic::default();
        tr.name = t.name.clone();
        for partition in t.partition_indexes {
            let mut pr = ProducersPartition::default();
            pr.partition_index = partition;
            match super::offsets::replica(state, t.name.0.as_str(), partition) {
                Err(ec) => pr.error_code = ec,
                Ok(h) if !h.is_leader() => pr.error_code = code::NOT_LEADER_OR_FOLLOWER,
                Ok(h) => {
                    pr.active_producers = h
                        .log
                        .active_producers()
                        .into_iter()
                        .map(|p| {
                            let mut s = ProducerState::default();
                            s.producer_id = ProducerId(p.producer_id);
                            s.producer_epoch = i32::from(p.producer_epoch);
                            s.last_sequence = p.last_sequence;
                            s.last_timestamp = p.last_timestamp;
                            s.coordinator_epoch = -1;
                            s.current_txn_start_offset = p.current_txn_start_offset;
                            s
                        })
                        .collect();
                }
            }
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    Reply::new(ResponseKind::DescribeProducers(r))
}

// ---------------------------------------------------------------------------------------------
// DescribeTransactions / ListTransactions
// ---------------------------------------------------------------------------------------------

/// DescribeTransactions v0: each id is described by its coordinator; other brokers answer
/// NOT_COORDINATOR (clients find the coordinator first, as for EndTxn).
pub async fn describe_transactions(state: &BrokerState, req: DescribeTransactionsRequest) -> Reply {
    let mut r = DescribeTransactionsResponse::default();
    for id in req.transactional_ids {
        let mut t = DescribedTxn::default();
        t.transactional_id = id.clone();
        t.producer_id = ProducerId(-1);
        t.producer_epoch = -1;
        t.transaction_start_time_ms = -1;
        let name = id.0.to_string();
        let found = match txns(state) {
            Err(_) => Err(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
            Ok(txns) => txns.describe(&name).await.map_err(|e| errors::txn(e, true)),
        };
        match found {
            // A Dead id is being removed: Kafka reports it as not found too.
            Ok(None) => t.error_code = ResponseError::TransactionalIdNotFound.code(),
            Ok(Some(m)) if m.state == txn::TxnState::Dead => {
                t.error_code = ResponseError::TransactionalIdNotFound.code();
            }
            Ok(Some(m)) => {
                t.transaction_state = StrBytes::from_static_str(m.state.name());
                t.transaction_timeout_ms = i32::try_from(m.timeout_ms).unwrap_or(i32::MAX);
                t.transaction_start_time_ms = m.start_ms;
                t.producer_id = ProducerId(m.producer_id);
                t.producer_epoch = m.producer_epoch;
                let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                for p in m.partitions {
                    topics.entry(p.topic).or_default().push(p.partition);
                }
                t.topics = topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        let mut d = TopicData::default();
                        d.topic = TopicName(StrBytes::from_string(topic));
                        d.partitions = partitions;
                        d
                    })
                    .collect();
            }
            Err(c) => t.error_code = c,
        }
        r.transaction_states.push(t);
    }
    Reply::new(ResponseKind::DescribeTransactions(r))
}

/// The filters of a ListTransactions request, checked against one id.
#[derive(Debug)]
struct ListFilter {
    /// Empty: every state. A Kafka state we never enter is kept out of here but is not
    /// "unknown" either.
    states: Vec<txn::TxnState>,
    states_given: bool,
    producer_ids: Vec<i64>,
    /// v1 (KIP-994): only transactions open longer than this; negative: no filter.
    duration_ms: i64,
    /// v2 (KIP-1152): only ids the whole of which this matches.
    pattern: Option<regex::Regex>,
}

impl ListFilter {
    fn matches(&self, m: &txn::TxnMetadata, now_ms: i64) -> bool {
        // Dead ids are being removed; Kafka never lists them.
        if m.state == txn::TxnState::Dead {
            return false;
        }
        if self.states_given && !self.states.contains(&m.state) {
            return false;
        }
        if !self.producer_ids.is_empty() && !self.producer_ids.contains(&m.producer_id) {
            return false;
        }
        // An id with no open transaction has no start time (-1): it has not been running for
        // any duration, so a duration filter leaves it out.
        if self.duration_ms >= 0 && (m.start_ms < 0 || now_ms - m.start_ms <= self.duration_ms) {
            return false;
        }
        self.pattern
            .as_ref()
            .is_none_or(|p| p.is_match(&m.transactional_id))
    }
}

/// ListTransactions v0-2: the ids of this broker's own coordinators (clients ask every broker
/// and merge). v2's transactional-id pattern (KIP-1152) must match the whole id, as Java's
/// `Matcher.matches`; it is compiled with the `regex` crate (RE2 syntax: no look-around or
/// back-references, which Java's regexes have), and one that does not compile is
/// INVALID_REGULAR_EXPRESSION.
pub async fn list_transactions(state: &BrokerState, req: ListTransactionsRequest, v: i16) -> Reply {
    let mut r = ListTransactionsResponse::default();
    let mut filter = ListFilter {
        states: Vec::new(),
        states_given: !req.state_filters.is_empty(),
        producer_ids: req.producer_id_filters.iter().map(|p| p.0).collect(),
        duration_ms: if v >= 1 { req.duration_filter } else { -1 },
        pattern: None,
    };
    if let Some(p) = req
        .transactional_id_pattern
        .as_ref()
        .filter(|p| v >= 2 && !p.is_empty())
    {
        match regex::RegexBuilder::new(&format!("^(?:{})$", p.as_str()))
            .size_limit(1 << 20)
            .build()
        {
            Ok(re) => filter.pattern = Some(re),
            Err(_) => {
                r.error_code = code::INVALID_REGULAR_EXPRESSION;
                return Reply::new(ResponseKind::ListTransactions(r));
            }
        }
    }
    for name in &req.state_filters {
        match txn::TxnState::from_name(name.as_str()) {
            Some(s) => filter.states.push(s),
            None if name.as_str() == "PrepareEpochFence" => {}
            None => r.unknown_state_filters.push(name.clone()),
        }
    }
    let Some(txns) = state.txns.as_ref() else {
        // Transactions are off: this broker coordinates none, which is an empty list.
        return Reply::new(ResponseKind::ListTransactions(r));
    };
    let listing = txns.list().await;
    if listing.loading {
        // Kafka's answer while a coordinator loads: the list could be missing ids.
        r.error_code = code::COORDINATOR_LOAD_IN_PROGRESS;
        return Reply::new(ResponseKind::ListTransactions(r));
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut found: Vec<txn::TxnMetadata> = listing
        .transactions
        .into_iter()
        .filter(|m| filter.matches(m, now_ms))
        .collect();
    found.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
    r.transaction_states = found
        .into_iter()
        .map(|m| {
            let mut t = ListedTxn::default();
            t.transactional_id = TransactionalId(StrBytes::from_string(m.transactional_id));
            t.producer_id = ProducerId(m.producer_id);
            t.transaction_state = StrBytes::from_static_str(m.state.name());
            t
        })
        .collect();
    Reply::new(ResponseKind::ListTransactions(r))
}

/// The transactional id of an InitProducerId request, if it names one.
pub fn transactional_id(id: &Option<TransactionalId>) -> Option<String> {
    id.as_ref()
        .map(|t| t.0.to_string())
        .filter(|t| !t.is_empty())
}

// ---------------------------------------------------------------------------------------------
// FindCoordinator (key type 1)
// ---------------------------------------------------------------------------------------------

fn unavailable(msg: String) -> CoordinatorAnswer {
    CoordinatorAnswer {
        node_id: -1,
        host: String::new(),
        port: -1,
        error_code: code::COORDINATOR_NOT_AVAILABLE,
        error_message: Some(msg),
    }
}

/// The `__transaction_state` topic, created on first use like `__consumer_offsets` (see
/// `groups::offsets_topic`): idempotent, COORDINATOR_NOT_AVAILABLE while it is being created.
async fn state_topic(state: &BrokerState, txns: &Txns) -> Result<TopicMeta, CoordinatorAnswer> {
    if let Some(t) = state.controller.topic(TRANSACTION_STATE_TOPIC) {
        return Ok(t);
    }
    let cfg = txns.config();
    let live = super::admin::live_brokers(state).len().max(1);
    let registered = state.controller.image().nodes.len().max(1);
    let rf = cfg
        .state_replication_factor
        .min(i16::try_from(registered).unwrap_or(i16::MAX))
        .max(1);
    if live < rf as usize {
        return Err(unavailable(format!(
            "{TRANSACTION_STATE_TOPIC} needs {rf} live nodes to be created but {live} are alive; \
             start the missing nodes, or lower [transactions] state_replication_factor"
        )));
    }
    let configs = BTreeMap::from([
        // Latest state per transactional id: compaction keeps the partition bounded (as
        // Kafka's), retention must never delete it.
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("retention.ms".to_string(), "-1".to_string()),
        ("retention.bytes".to_string(), "-1".to_string()),
        // Kafka's transaction.state.log.min.isr (2): a decision is on two replicas before a
        // client hears of it.
        ("min.insync.replicas".to_string(), rf.min(2).to_string()),
    ]);
    Err(unavailable(
        super::groups::create_coordinator_topic(
            state,
            TRANSACTION_STATE_TOPIC,
            cfg.state_partitions,
            rf,
            configs,
            "transactions",
        )
        .await,
    ))
}

/// FindCoordinator answers for transactional ids: the live leader of each id's
/// `__transaction_state` partition.
pub(crate) async fn find_coordinators(
    state: &BrokerState,
    txns: &Txns,
    keys: &[String],
) -> Vec<CoordinatorAnswer> {
    let topic = match state_topic(state, txns).await {
        Ok(t) => t,
        Err(e) => return keys.iter().map(|_| e.clone()).collect(),
    };
    let partitions = state.controller.partitions(&topic);
    let brokers = super::admin::live_brokers(state);
    keys.iter()
        .map(|id| {
            if id.is_empty() {
                return CoordinatorAnswer {
                    error_code: code::INVALID_REQUEST,
                    error_message: Some("the transactional id is empty".into()),
                    ..unavailable(String::new())
                };
            }
            let p = txns.partition_for(id);
            let Some(info) = partitions.iter().find(|i| i.partition == p) else {
                return unavailable(format!(
                    "partition {p} of {TRANSACTION_STATE_TOPIC} is not placed yet; retry"
                ));
            };
            if info.leader < 0 {
                return unavailable(format!(
                    "partition {p} of {TRANSACTION_STATE_TOPIC} has no leader right now; retry"
                ));
            }
            // As for groups: never name this node before it has taken the partition on.
            if info.leader == state.node_id() && !txns.coordinates_partition(p) {
                return unavailable(format!(
                    "partition {p} of {TRANSACTION_STATE_TOPIC} is still opening on this node; retry"
                ));
            }
            match brokers.iter().find(|b| b.node_id == info.leader) {
                Some(b) => CoordinatorAnswer {
                    node_id: b.node_id,
                    host: b.host.clone(),
                    port: b.port,
                    error_code: code::NONE,
                    error_message: None,
                },
                None => unavailable(format!(
                    "node {} leads partition {p} of {TRANSACTION_STATE_TOPIC} but is not live; retry",
                    info.leader
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use txn::TxnState::*;

    fn meta(state: txn::TxnState, producer_id: i64, start_ms: i64) -> txn::TxnMetadata {
        txn::TxnMetadata {
            transactional_id: "t".into(),
            producer_id,
            prev_producer_id: -1,
            producer_epoch: 0,
            last_producer_epoch: -1,
            timeout_ms: 60_000,
            state,
            partitions: BTreeSet::new(),
            start_ms,
            last_update_ms: start_ms,
        }
    }

    fn filter(states: &[txn::TxnState], producer_ids: &[i64], duration_ms: i64) -> ListFilter {
        ListFilter {
            states: states.to_vec(),
            states_given: !states.is_empty(),
            producer_ids: producer_ids.to_vec(),
            duration_ms,
            pattern: None,
        }
    }

    #[test]
    fn list_filters_match_as_kafka_does() {
        let now = 10_000;
        // (filter, id, listed?)
        let table = [
            (filter(&[], &[], -1), meta(Empty, 1, -1), true),
            (filter(&[], &[], -1), meta(Dead, 1, -1), false),
            (filter(&[Ongoing], &[], -1), meta(Ongoing, 1, 5_000), true),
            (filter(&[Ongoing], &[], -1), meta(Empty, 1, -1), false),
            (filter(&[Dead], &[], -1), meta(Dead, 1, -1), false),
            (filter(&[], &[2], -1), meta(Empty, 1, -1), false),
            (filter(&[], &[1, 2], -1), meta(Empty, 1, -1), true),
            (filter(&[], &[], 4_999), meta(Ongoing, 1, 5_000), true),
            (filter(&[], &[], 5_000), meta(Ongoing, 1, 5_000), false),
            (filter(&[], &[], 0), meta(Empty, 1, -1), false),
            (filter(&[Ongoing], &[1], 0), meta(Ongoing, 1, 5_000), true),
            (filter(&[Ongoing], &[2], 0), meta(Ongoing, 1, 5_000), false),
        ];
        for (i, (f, m, want)) in table.iter().enumerate() {
            assert_eq!(f.matches(m, now), *want, "row {i}: {f:?} {m:?}");
        }
        // KIP-1152: the pattern matches the whole id ("t" here).
        for (pattern, want) in [
            ("t", true),
            ("t.*", true),
            ("x|t", true),
            ("", false),
            ("tt", false),
        ] {
            let mut f = filter(&[], &[], -1);
            f.pattern = Some(regex::Regex::new(&format!("^(?:{pattern})$")).unwrap());
            assert_eq!(
                f.matches(&meta(Empty, 1, -1), now),
                want,
                "pattern {pattern:?}"
            );
        }
    }

    #[test]
    fn state_names_round_trip() {
        for s in [
            Empty,
            Ongoing,
            PrepareCommit,
            PrepareAbort,
            CompleteCommit,
            CompleteAbort,
            Dead,
        ] {
            assert_eq!(txn::TxnState::from_name(s.name()), Some(s));
        }
        assert_eq!(txn::TxnState::from_name("ongoing"), None, "names are exact");
    }
}
