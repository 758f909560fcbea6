//! The JSON endpoints under `/v1/`: the same facts the CLI shows, read from this node's
//! metadata image, local replicas and group coordinators instead of over the Kafka protocol.
//!
//! Offsets (log start, high watermark, lag) come from local replicas: a partition this node
//! does not host shows `null` there. Groups are those this node coordinates; asking another
//! node's group answers 404 with the coordinator's id.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rivulet_actors::group::{FetchOffsetsRequest, OFFSETS_TOPIC};
use rivulet_actors::TopicPartition;
use serde::Serialize;

use super::{error_response, AdminContext};
use crate::cli::cluster::{ClusterStatus, NodeStatus, PartitionStatus};
use crate::server::handlers::admin::{is_internal, live_brokers_of};

type Ctx = State<Arc<AdminContext>>;

/// `rivulet cluster status --json`, from this node's view.
pub(super) async fn cluster(State(ctx): Ctx) -> Json<ClusterStatus> {
    Json(cluster_status(&ctx))
}

fn address(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn cluster_status(ctx: &AdminContext) -> ClusterStatus {
    status_of(
        &ctx.controller,
        &ctx.cluster_id,
        &ctx.advertised_host,
        ctx.advertised_port,
    )
}

/// The cluster status from `c`'s metadata image (also the native `Admin`'s answer).
pub(crate) fn status_of(
    c: &rivulet_cluster::Controller,
    cluster_id: &str,
    advertised_host: &str,
    advertised_port: i32,
) -> ClusterStatus {
    let controller_id = c.controller_id();
    let live: BTreeMap<i32, String> = live_brokers_of(c, advertised_host, advertised_port)
        .into_iter()
        .map(|b| (b.node_id, address(&b.host, b.port)))
        .collect();
    let mut topics = 0;
    let mut partitions = 0;
    let mut under_replicated = Vec::new();
    let mut offline = Vec::new();
    let mut replica_ids = BTreeSet::new();
    // controller.topics() is sorted by name; partitions() by index.
    for t in c.topics() {
        topics += 1;
        for p in c.partitions(&t) {
            partitions += 1;
            replica_ids.extend(p.replicas.iter().copied());
            let status = PartitionStatus {
                topic: t.name.clone(),
                partition: p.partition,
                leader: p.leader,
                replicas: p.replicas,
                isr: p.isr,
            };
            status.classify(&mut offline, &mut under_replicated);
        }
    }
    let nodes = NodeStatus::of_cluster(
        live.into_iter().map(|(id, address)| (id, (address, None))),
        &replica_ids,
        controller_id,
    );
    ClusterStatus {
        queried: address(advertised_host, advertised_port),
        cluster_id: Some(cluster_id.to_string()),
        controller_id,
        nodes,
        topics,
        partitions,
        under_replicated,
        offline,
        topic_errors: Vec::new(),
    }
}

#[derive(Debug, Serialize)]
pub(super) struct TopicSummary {
    name: String,
    id: String,
    partitions: i32,
    replication_factor: i16,
    internal: bool,
}

/// `rivulet topic list`, with each topic's shape.
pub(super) async fn topics(State(ctx): Ctx) -> Json<Vec<TopicSummary>> {
    Json(
        ctx.controller
            .topics()
            .into_iter()
            .map(|t| TopicSummary {
                internal: is_internal(&t.name),
                id: t.id.to_string(),
                partitions: t.partitions,
                replication_factor: t.replication_factor,
                name: t.name,
            })
            .collect(),
    )
}

#[derive(Debug, Serialize)]
struct PartitionDetail {
    partition: i32,
    /// -1 while no leader serves.
    leader: i32,
    leader_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    /// From this node's replica; `null` when it hosts none.
    log_start_offset: Option<i64>,
    high_watermark: Option<i64>,
    log_end_offset: Option<i64>,
    /// `high_watermark - log_start_offset`: what a consumer can read.
    records: Option<i64>,
    /// `under-replicated`, `offline` or empty.
    status: &'static str,
}

#[derive(Debug, Serialize)]
struct ConfigView {
    name: String,
    value: String,
    source: String,
    read_only: bool,
}

#[derive(Debug, Serialize)]
struct TopicDetail {
    name: String,
    id: String,
    replication_factor: i16,
    internal: bool,
    partitions: Vec<PartitionDetail>,
    configs: Vec<ConfigView>,
}

/// `rivulet topic describe NAME`.
pub(super) async fn topic(State(ctx): Ctx, Path(name): Path<String>) -> Response {
    let Some(t) = ctx.controller.topic(&name) else {
        return error_response(
            StatusCode::NOT_FOUND,
            format!("topic {name:?} does not exist"),
        );
    };
    let partitions = ctx
        .controller
        .partitions(&t)
        .into_iter()
        .map(|p| {
            let local = ctx
                .controller
                .replica(&TopicPartition::new(t.name.as_str(), p.partition));
            let start = local.as_ref().map(|h| h.log.log_start_offset());
            let hw = local.as_ref().map(|h| *h.high_watermark.borrow());
            let status = if p.leader < 0 {
                "offline"
            } else if p.isr.len() < p.replicas.len() {
                "under-replicated"
            } else {
                ""
            };
            PartitionDetail {
                partition: p.partition,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                records: start.zip(hw).map(|(s, h)| (h - s).max(0)),
                log_start_offset: start,
                high_watermark: hw,
                log_end_offset: local.as_ref().map(|h| h.log.log_end_offset()),
                replicas: p.replicas,
                isr: p.isr,
                status,
            }
        })
        .collect();
    let configs = ctx
        .controller
        .describe_configs(&t)
        .into_iter()
        .map(|c| ConfigView {
            name: c.name,
            value: c.value,
            source: format!("{:?}", c.source),
            read_only: c.read_only,
        })
        .collect();
    Json(TopicDetail {
        internal: is_internal(&t.name),
        id: t.id.to_string(),
        replication_factor: t.replication_factor,
        name: t.name,
        partitions,
        configs,
    })
    .into_response()
}

#[derive(Debug, Serialize)]
pub(super) struct GroupSummary {
    group_id: String,
    protocol_type: String,
    state: String,
    kind: &'static str,
}

/// `rivulet group list`, for the groups this node coordinates.
pub(super) async fn groups(State(ctx): Ctx) -> Json<Vec<GroupSummary>> {
    Json(
        ctx.groups
            .list()
            .await
            .into_iter()
            .map(|g| GroupSummary {
                group_id: g.group_id,
                protocol_type: g.protocol_type,
                state: g.state,
                kind: g.kind.as_str(),
            })
            .collect(),
    )
}

#[derive(Debug, Serialize)]
struct MemberView {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    /// `[topic, partition]` pairs the member owns.
    partitions: Vec<(String, i32)>,
}

#[derive(Debug, Serialize)]
struct OffsetView {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    /// The high watermark, where this node hosts the partition.
    log_end: Option<i64>,
    lag: Option<i64>,
    /// Member id of the owner, if any member owns the partition.
    owner: Option<String>,
}

#[derive(Debug, Serialize)]
struct GroupDetail {
    group_id: String,
    coordinator: i32,
    state: String,
    protocol_type: String,
    protocol: String,
    kind: &'static str,
    generation: i32,
    members: Vec<MemberView>,
    offsets: Vec<OffsetView>,
}

/// `rivulet group describe ID`, when this node coordinates the group.
pub(super) async fn group(State(ctx): Ctx, Path(id): Path<String>) -> Response {
    let me = ctx.controller.node_id();
    let coordinator = ctx
        .controller
        .topic(OFFSETS_TOPIC)
        .and_then(|t| {
            let p = ctx.groups.partition_for(&id);
            ctx.controller
                .partitions(&t)
                .into_iter()
                .find(|x| x.partition == p)
        })
        .map_or(-1, |p| p.leader);
    if coordinator != me {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({
                "error": format!("group {id:?} is not coordinated by node {me}"),
                "coordinator": coordinator,
            })),
        )
            .into_response();
    }
    let d = match ctx.groups.describe(&id).await {
        Ok(d) => d,
        Err(e) => return error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let req = FetchOffsetsRequest {
        partitions: None,
        member: None,
        require_stable: false,
    };
    let committed = match ctx.groups.fetch_offsets(&id, req).await {
        Ok(o) => o,
        Err(e) => return error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    if d.state == "Dead" && committed.is_empty() {
        return error_response(
            StatusCode::NOT_FOUND,
            format!("group {id:?} does not exist"),
        );
    }
    // Every partition a member owns and every partition with a committed offset.
    let mut rows: BTreeMap<(String, i32), (Option<i64>, Option<String>)> = BTreeMap::new();
    for (tp, off) in committed {
        rows.entry((tp.topic, tp.partition)).or_default().0 = off.map(|o| o.offset);
    }
    let members = d
        .members
        .into_iter()
        .map(|m| {
            let partitions: Vec<(String, i32)> = m
                .assigned
                .iter()
                .map(|tp| (tp.topic.clone(), tp.partition))
                .collect();
            for key in &partitions {
                rows.entry(key.clone()).or_default().1 = Some(m.member_id.clone());
            }
            MemberView {
                member_id: m.member_id,
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                partitions,
            }
        })
        .collect();
    let offsets = rows
        .into_iter()
        .map(|((topic, partition), (committed, owner))| {
            let log_end = ctx
                .controller
                .replica(&TopicPartition::new(topic.as_str(), partition))
                .map(|h| *h.high_watermark.borrow());
            OffsetView {
                lag: committed.zip(log_end).map(|(c, e)| (e - c).max(0)),
                topic,
                partition,
                committed,
                log_end,
                owner,
            }
        })
        .collect();
    Json(GroupDetail {
        group_id: d.group_id,
        coordinator,
        state: d.state,
        protocol_type: d.protocol_type,
        protocol: d.protocol,
        kind: d.kind.as_str(),
        generation: d.generation,
        members,
        offsets,
    })
    .into_response()
}
