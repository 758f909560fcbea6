//! `GET /metrics`: one scrape gathers the live state into [`Exposition`], which the
//! prometheus-client text encoder writes out.
//!
//! ```text
//!  scrape ─▶ gather(): image (controller) ─┐
//!                      local replicas ─────┤ gauges, computed now (nothing is updated on the
//!                      group coordinators ─┤ write path for them)
//!                      raft figures, fjall ┘
//!                      Metrics (atomics) ──── counters and histograms recorded by the server
//!        ─▶ Registry with one collector ─▶ OpenMetrics text
//! ```
//! Label values are built here, once per scrape, never on the request path.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use rivulet_actors::group::FetchOffsetsRequest;
use rivulet_actors::TopicPartition;
use tracing::debug;

use super::AdminContext;
use crate::metrics::{Metrics, LATENCY_BUCKETS_SECONDS};

/// Most groups a scrape reports on (each costs two coordinator calls).
const SCRAPE_GROUPS_MAX: usize = 1000;

/// How long a scrape waits for one coordinator's answer before leaving that group out.
const GROUP_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
}

/// One metric family with its samples.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: Kind,
    samples: Vec<(Labels, i64)>,
}

/// Everything one scrape writes out.
/// Transactional ids per state, for the coordinators this node hosts (absent while
/// transactions are off). Every state is reported, zeros included, so that a rule such as
/// "Ongoing stays above 0" or "PrepareCommit does not drain" has a series to watch.
async fn gather_txns(ctx: &AdminContext, x: &mut Exposition) {
    use rivulet_actors::txn::TxnState;
    let Some(txns) = &ctx.txns else { return };
    let listing = txns.list().await;
    let states = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ];
    let samples = states.iter().map(|s| {
        let n = listing
            .transactions
            .iter()
            .filter(|m| m.state == *s)
            .count();
        (
            vec![("state", s.name().to_string())],
            i64::try_from(n).unwrap_or(i64::MAX),
        )
    });
    x.gauge(
        "rivulet_transactions",
        "Transactional ids by state, in the transaction coordinators this node hosts",
    )
    .extend(samples);
    x.gauge(
        "rivulet_transaction_coordinators_loading",
        "1 while a transaction coordinator on this node is loading (the counts may be short)",
    )
    .push((Vec::new(), i64::from(listing.loading)));
}

#[derive(Debug, Default)]
pub(crate) struct Exposition {
    families: Vec<Family>,
    metrics: Option<Arc<Metrics>>,
}

impl Exposition {
    fn family(
        &mut self,
        name: &'static str,
        help: &'static str,
        unit: Option<Unit>,
        kind: Kind,
    ) -> &mut Vec<(Labels, i64)> {
        self.families.push(Family {
            name,
            help,
            unit,
            kind,
            samples: Vec::new(),
        });
        &mut self.families.last_mut().expect("just pushed").samples
    }

    fn gauge(&mut self, name: &'static str, help: &'static str) -> &mut Vec<(Labels, i64)> {
        self.family(name, help, None, Kind::Gauge)
    }

    /// The OpenMetrics text of this scrape.
    pub(crate) fn render(self) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let kind = match f.kind {
                Kind::Gauge => MetricType::Gauge,
                Kind::Counter => MetricType::Counter,
            };
            let mut family = encoder.encode_descriptor(f.name, f.help, f.unit.as_ref(), kind)?;
            match f.samples.as_slice() {
                // A single sample without labels: `name value`, not `name{} value`.
                [(labels, value)] if labels.is_empty() => encode_value(f.kind, *value, family)?,
                samples => {
                    for (labels, value) in samples {
                        encode_value(f.kind, *value, family.encode_family(labels)?)?;
                    }
                }
            }
        }
        if let Some(m) = &self.metrics {
            encode_requests(m, &mut encoder)?;
        }
        Ok(())
    }
}

fn encode_value(kind: Kind, value: i64, metric: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
    match kind {
        Kind::Gauge => ConstGauge::new(value).encode(metric),
        Kind::Counter => ConstCounter::new(u64::try_from(value).unwrap_or(0)).encode(metric),
    }
}

fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(api) => format!("{api:?}"),
        Err(_) => format!("Unknown{key}"),
    }
}

/// Request counters and latency histograms, straight from the atomics.
fn encode_requests(
    m: &Metrics,
    encoder: &mut DescriptorEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    let apis = m.api_snapshots();
    let mut requests = encoder.encode_descriptor(
        "rivulet_kafka_requests",
        "Kafka requests handled, by API",
        None,
        MetricType::Counter,
    )?;
    for a in &apis {
        let labels = [("api", api_name(a.api_key))];
        ConstCounter::new(a.requests).encode(requests.encode_family(&labels)?)?;
    }
    let mut errors = encoder.encode_descriptor(
        "rivulet_kafka_request_errors",
        "Error codes in Kafka responses (each partition, topic or group error counts once), by API and error",
        None,
        MetricType::Counter,
    )?;
    for (api, code, n) in m.error_counts() {
        let error = kafka_protocol::ResponseError::try_from_code(code)
            .map_or_else(|| "Unknown".to_string(), |e| format!("{e:?}"));
        let labels = [
            ("api", api_name(api)),
            ("error", error),
            ("error_code", code.to_string()),
        ];
        ConstCounter::new(n).encode(errors.encode_family(&labels)?)?;
    }
    let unit = Unit::Seconds;
    let mut durations = encoder.encode_descriptor(
        "rivulet_kafka_request_duration",
        "Time from a decoded request to its encoded response, by API (fetch includes its long poll)",
        Some(&unit),
        MetricType::Histogram,
    )?;
    for a in &apis {
        let labels = [("api", api_name(a.api_key))];
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_SECONDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(a.buckets.iter().copied())
            .collect();
        durations
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(a.duration_seconds_sum, a.requests, &buckets, None)?;
    }
    Ok(())
}

/// Gathers the live state of the node for one scrape.
pub(crate) async fn gather(ctx: &AdminContext) -> Exposition {
    let mut x = Exposition {
        metrics: Some(ctx.metrics.clone()),
        ..Default::default()
    };
    let image = ctx.controller.image();
    let raft = ctx.controller.raft().figures();

    // Partitions: offsets of the replicas this node hosts; replication state of those it leads
    // (the leader's view is the authoritative one); offline flags from the active controller
    // only, so that a sum over nodes counts each partition once.
    let mut local = Vec::new();
    let mut offline = Vec::new();
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            let partition = i as i32;
            if raft.is_leader {
                let leader_live = p
                    .leader
                    .and_then(|l| image.nodes.get(&l))
                    .is_some_and(|n| !n.fenced);
                offline.push((t.name.clone(), partition, i64::from(!leader_live)));
            }
            if let Some(h) = ctx
                .controller
                .replica(&TopicPartition::new(t.name.as_str(), partition))
            {
                local.push((t.name.clone(), partition, h));
            }
        }
    }
    let labels = |t: &str, p: i32| -> Labels {
        vec![("topic", t.to_string()), ("partition", p.to_string())]
    };
    let rows: Vec<_> = local
        .iter()
        .map(|(t, p, h)| {
            let st = h.status.borrow().clone();
            (labels(t, *p), h, st)
        })
        .collect();
    let s = x.gauge(
        "rivulet_partition_log_start_offset",
        "First offset in the local replica's log",
    );
    s.extend(
        rows.iter()
            .map(|(l, h, _)| (l.clone(), h.log.log_start_offset())),
    );
    let s = x.gauge(
        "rivulet_partition_log_end_offset",
        "Offset the next record appended to the local replica gets",
    );
    s.extend(
        rows.iter()
            .map(|(l, h, _)| (l.clone(), h.log.log_end_offset())),
    );
    let s = x.gauge(
        "rivulet_partition_high_watermark",
        "High watermark of the local replica (consumers read below it)",
    );
    s.extend(
        rows.iter()
            .map(|(l, h, _)| (l.clone(), *h.high_watermark.borrow())),
    );
    let s = x.family(
        "rivulet_partition_log_size",
        "Record batch bytes in the local replica's log",
        Some(Unit::Bytes),
        Kind::Gauge,
    );
    s.extend(rows.iter().map(|(l, h, _)| {
        (
            l.clone(),
            i64::try_from(h.log.size_bytes()).unwrap_or(i64::MAX),
        )
    }));
    // Compacted logs: where the cleaner stands (in-memory segment summaries, no I/O).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let cleaned: Vec<_> = rows
        .iter()
        .filter(|(_, h, _)| h.log.config().cleanup_policy.compact)
        .map(|(l, h, _)| (l, h.log.cleaner_state(*h.high_watermark.borrow(), now_ms)))
        .collect();
    x.gauge(
        "rivulet_partition_cleaner_dirty_permille",
        "Compacted logs: dirty share of the cleanable bytes, in thousandths (the cleaner runs at min.cleanable.dirty.ratio)",
    )
    .extend(
        cleaned
            .iter()
            .map(|(l, c)| ((*l).clone(), i64::from(c.dirty_ratio_permille()))),
    );
    x.gauge(
        "rivulet_partition_cleaner_first_dirty_offset",
        "Compacted logs: first offset the cleaner has not cleaned yet (the cleaner point)",
    )
    .extend(
        cleaned
            .iter()
            .map(|(l, c)| ((*l).clone(), c.first_dirty_offset)),
    );
    let s = x.gauge(
        "rivulet_partition_leader",
        "1 if this node's replica is the partition's leader, else 0",
    );
    s.extend(
        rows.iter()
            .map(|(l, _, st)| (l.clone(), i64::from(st.is_leader))),
    );
    let led: Vec<_> = rows.iter().filter(|(_, _, st)| st.is_leader).collect();
    let s = x.gauge(
        "rivulet_partition_isr_size",
        "In-sync replicas of a partition this node leads",
    );
    s.extend(
        led.iter()
            .map(|(l, _, st)| (l.clone(), st.isr.len() as i64)),
    );
    let s = x.gauge(
        "rivulet_partition_replicas",
        "Replicas assigned to a partition this node leads",
    );
    s.extend(
        led.iter()
            .map(|(l, _, st)| (l.clone(), st.replicas.len() as i64)),
    );
    let s = x.gauge(
        "rivulet_partition_under_replicated",
        "1 if a partition this node leads has fewer in-sync replicas than replicas",
    );
    s.extend(
        led.iter()
            .map(|(l, _, st)| (l.clone(), i64::from(st.isr.len() < st.replicas.len()))),
    );
    let s = x.gauge(
        "rivulet_partition_offline",
        "1 if the partition has no live leader (reported by the active controller only)",
    );
    s.extend(offline.iter().map(|(t, p, v)| (labels(t, *p), *v)));

    // Bytes and records per topic; deleted topics are forgotten here.
    ctx.metrics.retain_topics(|t| image.topics.contains_key(t));
    let topics = ctx.metrics.topic_figures();
    let load = |a: &std::sync::atomic::AtomicU64| {
        i64::try_from(a.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(i64::MAX)
    };
    let tl = |t: &str| -> Labels { vec![("topic", t.to_string())] };
    let s = x.family(
        "rivulet_topic_produced",
        "Record batch bytes appended by producers to partitions this node leads",
        Some(Unit::Bytes),
        Kind::Counter,
    );
    s.extend(topics.iter().map(|(t, f)| (tl(t), load(&f.bytes_in))));
    let s = x.family(
        "rivulet_topic_produced_records",
        "Records appended by producers to partitions this node leads",
        None,
        Kind::Counter,
    );
    s.extend(topics.iter().map(|(t, f)| (tl(t), load(&f.records_in))));
    let s = x.family(
        "rivulet_topic_fetched",
        "Record batch bytes returned to consumers",
        Some(Unit::Bytes),
        Kind::Counter,
    );
    s.extend(topics.iter().map(|(t, f)| (tl(t), load(&f.bytes_out))));
    let s = x.family(
        "rivulet_topic_fetched_records",
        "Records in the batches returned to consumers",
        None,
        Kind::Counter,
    );
    s.extend(topics.iter().map(|(t, f)| (tl(t), load(&f.records_out))));

    gather_groups(ctx, &mut x).await;
    gather_txns(ctx, &mut x).await;

    // Controller.
    let s = x.gauge(
        "rivulet_controller_active",
        "1 if this node is the Raft leader of the metadata controller",
    );
    s.push((Vec::new(), i64::from(raft.is_leader)));
    let s = x.gauge(
        "rivulet_controller_leader_id",
        "Node id of the controller leader as this node knows it, -1 if none",
    );
    s.push((Vec::new(), i64::from(ctx.controller.controller_id())));
    let s = x.gauge(
        "rivulet_controller_raft_term",
        "Current Raft term of the metadata controller",
    );
    s.push((Vec::new(), i64::try_from(raft.term).unwrap_or(i64::MAX)));
    let s = x.gauge(
        "rivulet_controller_raft_commit_index",
        "Index of the last Raft entry applied here (only committed entries are applied)",
    );
    s.push((
        Vec::new(),
        i64::try_from(raft.applied_index).unwrap_or(i64::MAX),
    ));
    let s = x.gauge(
        "rivulet_controller_raft_last_log_index",
        "Index of the last entry in this node's Raft log",
    );
    s.push((
        Vec::new(),
        i64::try_from(raft.last_log_index).unwrap_or(i64::MAX),
    ));
    let s = x.gauge(
        "rivulet_controller_voter",
        "1 if this node votes in the controller's Raft group (0: learner)",
    );
    s.push((Vec::new(), i64::from(raft.is_voter)));
    let s = x.gauge(
        "rivulet_node_lease_valid",
        "1 while this node's lease with the controller is valid",
    );
    s.push((Vec::new(), i64::from(ctx.controller.lease_valid())));
    let fenced = image.nodes.values().filter(|n| n.fenced).count() as i64;
    let s = x.gauge(
        "rivulet_cluster_nodes",
        "Nodes in the metadata image, by state",
    );
    s.push((
        vec![("state", "live".into())],
        image.nodes.len() as i64 - fenced,
    ));
    s.push((vec![("state", "fenced".into())], fenced));
    let s = x.gauge("rivulet_node_ready", "1 when GET /ready would answer 200");
    s.push((
        Vec::new(),
        i64::from(super::readiness(ctx).await.is_empty()),
    ));

    gather_storage(ctx, &mut x).await;

    // Connections.
    let c = &ctx.metrics.connections;
    let s = x.gauge(
        "rivulet_connections_open",
        "Kafka client connections open now",
    );
    s.push((
        Vec::new(),
        c.open.load(std::sync::atomic::Ordering::Relaxed),
    ));
    let s = x.family(
        "rivulet_connections_accepted",
        "Kafka client connections accepted",
        None,
        Kind::Counter,
    );
    s.push((Vec::new(), load(&c.accepted)));
    let s = x.family("rivulet_connections_refused", "Kafka client connections refused by connections_max (node_limit) or connections_per_ip_max (ip_limit)", None, Kind::Counter);
    s.push((
        vec![("reason", "node_limit".into())],
        load(&c.refused_node_limit),
    ));
    s.push((
        vec![("reason", "ip_limit".into())],
        load(&c.refused_ip_limit),
    ));
    x
}

/// Members, committed offsets and lag of the groups this node coordinates. Lag needs the
/// high watermark, known here for partitions with a local replica; others have no lag sample.
async fn gather_groups(ctx: &AdminContext, x: &mut Exposition) {
    let mut members = Vec::new();
    let mut committed = Vec::new();
    let mut lag = Vec::new();
    let listings = ctx.groups.list().await;
    for g in listings.iter().take(SCRAPE_GROUPS_MAX) {
        let id = g.group_id.clone();
        if let Ok(Ok(d)) =
            tokio::time::timeout(GROUP_ANSWER_TIMEOUT, ctx.groups.describe(&id)).await
        {
            members.push((vec![("group", id.clone())], d.members.len() as i64));
        }
        let req = FetchOffsetsRequest {
            partitions: None,
            member: None,
            require_stable: false,
        };
        let Ok(Ok(offsets)) =
            tokio::time::timeout(GROUP_ANSWER_TIMEOUT, ctx.groups.fetch_offsets(&id, req)).await
        else {
            continue;
        };
        for (tp, off) in offsets {
            let Some(off) = off else { continue };
            let labels: Labels = vec![
                ("group", id.clone()),
                ("topic", tp.topic.clone()),
                ("partition", tp.partition.to_string()),
            ];
            if let Some(h) = ctx
                .controller
                .replica(&TopicPartition::new(tp.topic.as_str(), tp.partition))
            {
                let hw = *h.high_watermark.borrow();
                lag.push((labels.clone(), (hw - off.offset).max(0)));
            }
            committed.push((labels, off.offset));
        }
    }
    x.gauge(
        "rivulet_group_members",
        "Members of a consumer group this node coordinates",
    )
    .extend(members);
    x.gauge(
        "rivulet_group_committed_offset",
        "Committed offset of a group (next offset to consume), for groups this node coordinates",
    )
    .extend(committed);
    x.family("rivulet_group_lag", "High watermark minus committed offset (0 if the commit is ahead), where this node hosts the partition", Some(Unit::Other("records".into())), Kind::Gauge).extend(lag);
}

/// What fjall tells about the node's one database, and the size of the segment files.
async fn gather_storage(ctx: &AdminContext, x: &mut Exposition) {
    let store = ctx.store.clone();
    // disk_space() and segments_disk_bytes() list files: off the async workers.
    let figures = tokio::task::spawn_blocking(move || {
        let db = store.database();
        let segments = store
            .segments_disk_bytes()
            .inspect_err(|e| debug!(error = %e, "segment files not measured"))
            .ok();
        [
            db.disk_space().ok(),
            db.journal_disk_space().ok(),
            Some(db.journal_count() as u64),
            Some(db.write_buffer_size()),
            Some(db.outstanding_flushes() as u64),
            Some(db.active_compactions() as u64),
            Some(db.compactions_completed() as u64),
            Some(db.cache_size()),
            Some(db.keyspace_count() as u64),
            segments,
        ]
    })
    .await
    .unwrap_or([None; 10]);
    let cleaner = ctx.store.cleaner_stats();
    let v = |i: usize| figures[i].map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let mut put = |name, help, unit: Option<Unit>, kind, value: Option<i64>| {
        let s = x.family(name, help, unit, kind);
        if let Some(value) = value {
            s.push((Vec::new(), value));
        }
    };
    put(
        "rivulet_storage_disk",
        "Bytes the node's fjall database takes on disk (tables, blobs, journals; record batches are in the segment files: rivulet_storage_segments_disk_bytes)",
        Some(Unit::Bytes),
        Kind::Gauge,
        v(0),
    );
    put(
        "rivulet_storage_journal_disk",
        "Bytes of fjall journals on disk",
        Some(Unit::Bytes),
        Kind::Gauge,
        v(1),
    );
    put(
        "rivulet_storage_journals",
        "fjall journal files (more than one: memtables wait for a flush)",
        None,
        Kind::Gauge,
        v(2),
    );
    put("rivulet_storage_write_buffer", "Bytes written but not yet flushed to tables (the flush backlog, bounded by storage.write_buffer_bytes_max)", Some(Unit::Bytes), Kind::Gauge, v(3));
    put(
        "rivulet_storage_flushes_pending",
        "Memtable flushes queued",
        None,
        Kind::Gauge,
        v(4),
    );
    put(
        "rivulet_storage_compactions_running",
        "Compactions running now",
        None,
        Kind::Gauge,
        v(5),
    );
    put(
        "rivulet_storage_compactions_completed",
        "Compactions completed since start",
        None,
        Kind::Counter,
        v(6),
    );
    put(
        "rivulet_storage_cache",
        "Bytes in the block cache",
        Some(Unit::Bytes),
        Kind::Gauge,
        v(7),
    );
    put(
        "rivulet_storage_keyspaces",
        "fjall keyspaces (one per log segment, plus metadata)",
        None,
        Kind::Gauge,
        v(8),
    );
    put(
        "rivulet_storage_segments_disk",
        "Bytes the node's log segment files take (record batches of every local log)",
        Some(Unit::Bytes),
        Kind::Gauge,
        v(9),
    );
    let n = |v: u64| Some(i64::try_from(v).unwrap_or(i64::MAX));
    put(
        "rivulet_log_cleaner_read",
        "Bytes of segments the log cleaner read and rewrote (the bytes cleaned) since start",
        Some(Unit::Bytes),
        Kind::Counter,
        n(cleaner.bytes_read),
    );
    put(
        "rivulet_log_cleaner_written",
        "Bytes the log cleaner wrote into cleaned segments since start",
        Some(Unit::Bytes),
        Kind::Counter,
        n(cleaner.bytes_written),
    );
    put(
        "rivulet_log_cleaner_segments_swapped",
        "Segments the log cleaner replaced by their cleaned copy since start",
        None,
        Kind::Counter,
        n(cleaner.segments_swapped),
    );
    put(
        "rivulet_log_cleaner_passes",
        "Log cleaner passes run since start",
        None,
        Kind::Counter,
        n(cleaner.passes),
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn exposition_is_openmetrics_with_units_and_cumulative_buckets() {
        let m = Metrics::new();
        m.request(0, Duration::from_micros(50));
        m.request(0, Duration::from_millis(3));
        m.errors(0, [6]);
        let mut x = Exposition {
            metrics: Some(m),
            ..Default::default()
        };
        x.gauge("rivulet_partition_high_watermark", "hw")
            .push((vec![("topic", "t".into()), ("partition", "0".into())], 42));
        x.family(
            "rivulet_topic_produced",
            "in",
            Some(Unit::Bytes),
            Kind::Counter,
        )
        .push((vec![("topic", "t".into())], 7));
        let text = x.render().expect("render");
        assert!(
            text.contains("rivulet_partition_high_watermark{topic=\"t\",partition=\"0\"} 42\n"),
            "{text}"
        );
        assert!(
            text.contains("rivulet_topic_produced_bytes_total{topic=\"t\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("rivulet_kafka_requests_total{api=\"Produce\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("rivulet_kafka_request_errors_total{api=\"Produce\",error=\"NotLeaderOrFollower\",error_code=\"6\"} 1\n"), "{text}");
        assert!(
            text.contains(
                "rivulet_kafka_request_duration_seconds_bucket{le=\"0.0001\",api=\"Produce\"} 1\n"
            ) || text.contains(
                "rivulet_kafka_request_duration_seconds_bucket{api=\"Produce\",le=\"0.0001\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("le=\"+Inf\"")
                && text
                    .contains("rivulet_kafka_request_duration_seconds_count{api=\"Produce\"} 2\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        let mut x = Exposition::default();
        x.gauge("rivulet_controller_active", "active")
            .push((Vec::new(), 1));
        let text = x.render().expect("render");
        assert!(text.contains("\nrivulet_controller_active 1\n"), "{text}");
    }
}
