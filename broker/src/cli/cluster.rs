//! `rivulet cluster status`: what the cluster looks like from one of its nodes.
//!
//! Unlike the other client subcommands this one speaks the Kafka protocol itself (through the
//! `kafka-protocol` crate) instead of going through librdkafka, because librdkafka does not
//! expose DescribeCluster's controller id. One TCP connection to the first reachable bootstrap
//! address carries, in order: ApiVersions v0 (which versions the node serves), DescribeCluster
//! (v1 if offered, else v0: live brokers and the controller) and Metadata (the newest of v1..=12
//! offered, all topics: per partition leader, replicas and ISR).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::Subcommand;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, DescribeClusterRequest,
    DescribeClusterResponse, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::common::{render_table, write_stdout, ClientArgs, CONNECT_TIMEOUT};

/// How long one request may wait for its response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response frame accepted (a Metadata response of a very large cluster fits).
const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Newest Metadata version this command asks for.
const METADATA_VERSION_MAX: i16 = 12;
/// Newest DescribeCluster version this command asks for.
const DESCRIBE_CLUSTER_VERSION_MAX: i16 = 1;

/// `rivulet cluster ...`
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// The cluster subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the live nodes, the controller, and partitions that are under-replicated or offline.
    Status {
        /// Print one JSON object instead of tables.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a cluster subcommand.
pub(crate) async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Status { json } => {
            let status = fetch_status(&args.client.bootstrap).await?;
            if json {
                let text = serde_json::to_string_pretty(&status)
                    .context("could not serialize the status")?;
                write_stdout(&format!("{text}\n"));
            } else {
                write_stdout(&status.render());
            }
            Ok(())
        }
    }
}

/// What `cluster status` reports (also its `--json` form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// The address that answered.
    pub queried: String,
    pub cluster_id: Option<String>,
    /// -1 when no controller is known.
    pub controller_id: i32,
    /// Live nodes, by id, then nodes that partitions name as replicas but that are not live.
    pub nodes: Vec<NodeStatus>,
    pub topics: usize,
    pub partitions: usize,
    /// Partitions whose ISR is smaller than their replica set.
    pub under_replicated: Vec<PartitionStatus>,
    /// Partitions without a leader.
    pub offline: Vec<PartitionStatus>,
    /// Topics the node reported with an error code instead of partitions.
    pub topic_errors: Vec<TopicError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub id: i32,
    /// `HOST:PORT` as advertised; empty for a node that is not live.
    pub address: String,
    pub rack: Option<String>,
    pub controller: bool,
    /// Reported as a live broker (false: only named as a replica by some partition).
    pub live: bool,
}

impl NodeStatus {
    /// The live nodes (id → address and rack), then the nodes only named as replicas, which
    /// are down.
    pub fn of_cluster(
        live: impl IntoIterator<Item = (i32, (String, Option<String>))>,
        replica_ids: &BTreeSet<i32>,
        controller_id: i32,
    ) -> Vec<NodeStatus> {
        let mut nodes: Vec<NodeStatus> = live
            .into_iter()
            .map(|(id, (address, rack))| NodeStatus {
                id,
                address,
                rack,
                controller: id == controller_id,
                live: true,
            })
            .collect();
        for &id in replica_ids {
            if id >= 0 && !nodes.iter().any(|n| n.id == id) {
                nodes.push(NodeStatus {
                    id,
                    address: String::new(),
                    rack: None,
                    controller: id == controller_id,
                    live: false,
                });
            }
        }
        nodes
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl PartitionStatus {
    /// Files the partition under offline (no leader) and/or under-replicated (ISR smaller
    /// than the replica set).
    pub fn classify(
        self,
        offline: &mut Vec<PartitionStatus>,
        under_replicated: &mut Vec<PartitionStatus>,
    ) {
        if self.leader < 0 {
            offline.push(self.clone());
        }
        if self.isr.len() < self.replicas.len() {
            under_replicated.push(self);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicError {
    pub topic: String,
    pub(crate) error_code: i16,
}

impl ClusterStatus {
    /// Builds the status from the two responses. `described` is DescribeCluster's answer, when
    /// the node offered it and answered without error; otherwise Metadata's broker list counts.
    pub(crate) fn from_responses(
        queried: String,
        described: Option<&DescribeClusterResponse>,
        metadata: &MetadataResponse,
    ) -> Self {
        let (cluster_id, controller_id, live) = match described {
            Some(d) => (
                Some(d.cluster_id.as_str().to_string()),
                d.controller_id.0,
                d.brokers
                    .iter()
                    .filter(|b| !b.is_fenced)
                    .map(|b| {
                        (
                            b.broker_id.0,
                            (address(&b.host, b.port), b.rack.as_ref().map(str_of)),
                        )
                    })
                    .collect::<BTreeMap<_, _>>(),
            ),
            None => (
                metadata.cluster_id.as_ref().map(str_of),
                metadata.controller_id.0,
                metadata
                    .brokers
                    .iter()
                    .map(|b| {
                        (
                            b.node_id.0,
                            (address(&b.host, b.port), b.rack.as_ref().map(str_of)),
                        )
                    })
                    .collect(),
            ),
        };

        let mut topics = 0;
        let mut partitions = 0;
        let mut under_replicated = Vec::new();
        let mut offline = Vec::new();
        let mut topic_errors = Vec::new();
        let mut replica_ids = BTreeSet::new();
        let mut sorted: Vec<_> = metadata.topics.iter().collect();
        sorted.sort_by(|a, b| {
            a.name
                .as_ref()
                .map(|n| n.0.as_str())
                .cmp(&b.name.as_ref().map(|n| n.0.as_str()))
        });
        for topic in sorted {
            let name = topic
                .name
                .as_ref()
                .map(|n| n.0.as_str().to_string())
                .unwrap_or_else(|| topic.topic_id.to_string());
            if topic.error_code != 0 {
                topic_errors.push(TopicError {
                    topic: name,
                    error_code: topic.error_code,
                });
                continue;
            }
            topics += 1;
            let mut parts: Vec<_> = topic.partitions.iter().collect();
            parts.sort_by_key(|p| p.partition_index);
            for p in parts {
                partitions += 1;
                let replicas: Vec<i32> = p.replica_nodes.iter().map(|r| r.0).collect();
                let isr: Vec<i32> = p.isr_nodes.iter().map(|r| r.0).collect();
                replica_ids.extend(replicas.iter().copied());
                let status = PartitionStatus {
                    topic: name.clone(),
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    replicas,
                    isr,
                };
                status.classify(&mut offline, &mut under_replicated);
            }
        }

        let nodes = NodeStatus::of_cluster(live, &replica_ids, controller_id);

        ClusterStatus {
            queried,
            cluster_id,
            controller_id,
            nodes,
            topics,
            partitions,
            under_replicated,
            offline,
            topic_errors,
        }
    }

    /// The human-readable report.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let live = self.nodes.iter().filter(|n| n.live).count();
        out.push_str(&format!(
            "Cluster:     {} (asked {})\n",
            self.cluster_id.as_deref().unwrap_or("(unknown id)"),
            self.queried
        ));
        out.push_str(&format!(
            "Controller:  {}\n",
            if self.controller_id >= 0 {
                self.controller_id.to_string()
            } else {
                "none (no controller elected)".to_string()
            }
        ));
        out.push_str(&format!("Nodes:       {live} live\n\n"));
        let rows: Vec<Vec<String>> = self
            .nodes
            .iter()
            .map(|n| {
                vec![
                    n.id.to_string(),
                    if n.live {
                        n.address.clone()
                    } else {
                        "-".to_string()
                    },
                    if n.live { "live" } else { "NOT LIVE" }.to_string(),
                    if n.controller { "controller" } else { "" }.to_string(),
                ]
            })
            .collect();
        out.push_str(&render_table(&["NODE", "ADDRESS", "STATE", "ROLE"], &rows));
        out.push('\n');
        out.push_str(&format!(
            "Topics: {}, partitions: {}\n",
            self.topics, self.partitions
        ));
        out.push_str(&format!(
            "Under-replicated partitions: {}\n",
            self.under_replicated.len()
        ));
        out.push_str(&format!("Offline partitions: {}\n", self.offline.len()));
        for (title, list) in [
            ("Under-replicated", &self.under_replicated),
            ("Offline", &self.offline),
        ] {
            if list.is_empty() {
                continue;
            }
            out.push_str(&format!("\n{title}:\n"));
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|p| {
                    vec![
                        p.topic.clone(),
                        p.partition.to_string(),
                        p.leader.to_string(),
                        ids(&p.replicas),
                        ids(&p.isr),
                    ]
                })
                .collect();
            out.push_str(&render_table(
                &["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR"],
                &rows,
            ));
        }
        if !self.topic_errors.is_empty() {
            out.push_str("\nTopics reported with an error:\n");
            let rows: Vec<Vec<String>> = self
                .topic_errors
                .iter()
                .map(|t| vec![t.topic.clone(), error_name(t.error_code)])
                .collect();
            out.push_str(&render_table(&["TOPIC", "ERROR"], &rows));
        }
        out
    }
}

fn str_of(s: &StrBytes) -> String {
    s.as_str().to_string()
}

fn address(host: &StrBytes, port: i32) -> String {
    let host = host.as_str();
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn ids(list: &[i32]) -> String {
    list.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(err) => format!("{err} ({code})"),
        None => "no error".to_string(),
    }
}

/// Asks the bootstrap addresses in order and returns the first answer.
async fn fetch_status(bootstrap: &str) -> anyhow::Result<ClusterStatus> {
    let addrs: Vec<String> = bootstrap
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(with_default_port)
        .collect();
    if addrs.is_empty() {
        bail!("--bootstrap is empty: give HOST:PORT of a running node");
    }
    let mut unreachable = Vec::new();
    let mut refused = Vec::new();
    for addr in &addrs {
        let mut conn = match KafkaConnection::connect(addr).await {
            Ok(conn) => conn,
            Err(err) => {
                unreachable.push(format!("{addr}: {err:#}"));
                continue;
            }
        };
        match status_from(&mut conn, addr).await {
            Ok(status) => return Ok(status),
            Err(err) => refused.push(format!("{addr}: {err:#}")),
        }
    }
    if refused.is_empty() {
        bail!(
            "could not reach any node at {bootstrap} ({}). Is the cluster running? \
             `scripts/local-cluster.sh start` or `docker-compose -p rivulet -f \
             deploy/docker-compose.yml up -d` start a 3-node one on 127.0.0.1:19092-19094 \
             (see deploy/README.md), `rivulet serve` a single node on 127.0.0.1:9092; \
             otherwise pass --bootstrap HOST:PORT of a running node",
            unreachable.join("; ")
        );
    }
    unreachable.extend(refused);
    bail!(
        "no node at {bootstrap} answered the cluster status requests ({}); check that \
         --bootstrap names Kafka listeners of Rivulet (or Kafka) nodes",
        unreachable.join("; ")
    )
}

/// A connection to the first bootstrap address that accepts one, and that address (for
/// `rivulet config`, whose requests any node answers).
pub(crate) async fn connect_first(bootstrap: &str) -> anyhow::Result<(KafkaConnection, String)> {
    let mut unreachable = Vec::new();
    for addr in bootstrap
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(with_default_port)
    {
        match KafkaConnection::connect(&addr).await {
            Ok(conn) => return Ok((conn, addr)),
            Err(err) => unreachable.push(format!("{addr}: {err:#}")),
        }
    }
    bail!(
        "could not reach any node at {bootstrap:?} ({}); pass --bootstrap HOST:PORT of a \
         running node",
        unreachable.join("; ")
    )
}

/// `HOST` alone means `HOST:9092`, as for librdkafka.
fn with_default_port(addr: &str) -> String {
    if addr.contains(':') {
        addr.to_string()
    } else {
        format!("{addr}:9092")
    }
}

async fn status_from(conn: &mut KafkaConnection, addr: &str) -> anyhow::Result<ClusterStatus> {
    let versions = conn.api_versions().await?;
    let pick = |key: ApiKey, min: i16, max: i16| -> Option<i16> {
        versions
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .and_then(|k| {
                let v = k.max_version.min(max);
                (v >= min.max(k.min_version)).then_some(v)
            })
    };

    let described = match pick(ApiKey::DescribeCluster, 0, DESCRIBE_CLUSTER_VERSION_MAX) {
        Some(version) => {
            let response: DescribeClusterResponse = conn
                .send(&DescribeClusterRequest::default(), version)
                .await
                .context("DescribeCluster failed")?;
            if response.error_code == 0 {
                Some(response)
            } else {
                tracing::warn!(
                    error = %error_name(response.error_code),
                    "DescribeCluster answered with an error; using Metadata's broker list"
                );
                None
            }
        }
        None => None,
    };

    let Some(version) = pick(ApiKey::Metadata, 1, METADATA_VERSION_MAX) else {
        bail!("the node at {addr} does not serve Metadata v1 or newer; is it a Kafka broker?");
    };
    let mut request = MetadataRequest::default();
    request.topics = None; // every topic
    request.allow_auto_topic_creation = false;
    let metadata: MetadataResponse = conn
        .send(&request, version)
        .await
        .context("Metadata failed")?;
    Ok(ClusterStatus::from_responses(
        addr.to_string(),
        described.as_ref(),
        &metadata,
    ))
}

/// One Kafka protocol connection: 4-byte big-endian length, request header, body; responses
/// come back in request order.
#[derive(Debug)]
pub(crate) struct KafkaConnection {
    stream: TcpStream,
    correlation_id: i32,
}

impl KafkaConnection {
    pub(crate) async fn connect(addr: &str) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("no answer within {}s", CONNECT_TIMEOUT.as_secs()))?
            .map_err(|e| anyhow!("{e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(KafkaConnection {
            stream,
            correlation_id: 0,
        })
    }

    /// ApiVersions v0: every broker answers it, whatever it supports.
    async fn api_versions(&mut self) -> anyhow::Result<ApiVersionsResponse> {
        let response: ApiVersionsResponse = self
            .send(&ApiVersionsRequest::default(), 0)
            .await
            .context("ApiVersions failed")?;
        if response.error_code != 0 {
            bail!(
                "ApiVersions answered with {}",
                error_name(response.error_code)
            );
        }
        Ok(response)
    }

    /// Sends `request` as `version` and decodes its response.
    pub(crate) async fn send<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> anyhow::Result<R::Response> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown API key {}", R::KEY))?;
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;

        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(StrBytes::from_static_str("rivulet-cli"));

        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header
            .encode(&mut frame, key.request_header_version(version))
            .map_err(|e| anyhow!("could not encode the {key:?} v{version} header: {e}"))?;
        request
            .encode(&mut frame, version)
            .map_err(|e| anyhow!("could not encode {key:?} v{version}: {e}"))?;
        let len = i32::try_from(frame.len() - 4).context("request too large")?;
        frame[..4].copy_from_slice(&len.to_be_bytes());

        let mut body = tokio::time::timeout(REQUEST_TIMEOUT, async {
            self.stream.write_all(&frame).await?;
            let len = self.stream.read_i32().await?;
            if len < 0 || len as usize > RESPONSE_BYTES_MAX {
                let hint = if &len.to_be_bytes() == b"HTTP" {
                    " (the peer speaks HTTP, not Kafka)"
                } else {
                    " (is this a Kafka listener?)"
                };
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("response frame of {len} bytes{hint}"),
                ));
            }
            let mut body = vec![0u8; len as usize];
            self.stream.read_exact(&mut body).await?;
            Ok(Bytes::from(body))
        })
        .await
        .map_err(|_| anyhow!("no response within {}s", REQUEST_TIMEOUT.as_secs()))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                anyhow!("the node closed the connection (it may not serve {key:?} v{version})")
            }
            _ => anyhow!("{e}"),
        })?;

        let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .map_err(|e| anyhow!("malformed {key:?} response header: {e}"))?;
        if header.correlation_id != correlation_id {
            bail!(
                "response correlation id {} does not match request {correlation_id}",
                header.correlation_id
            );
        }
        let response = R::Response::decode(&mut body, version)
            .map_err(|e| anyhow!("malformed {key:?} v{version} response: {e}"))?;
        if body.has_remaining() {
            tracing::debug!(
                left = body.remaining(),
                "{key:?} response has trailing bytes"
            );
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};

    fn partition(
        index: i32,
        leader: i32,
        replicas: &[i32],
        isr: &[i32],
    ) -> MetadataResponsePartition {
        let mut p = MetadataResponsePartition::default();
        p.partition_index = index;
        p.leader_id = BrokerId(leader);
        p.replica_nodes = replicas.iter().copied().map(BrokerId).collect();
        p.isr_nodes = isr.iter().copied().map(BrokerId).collect();
        p
    }

    fn topic(name: &str, partitions: Vec<MetadataResponsePartition>) -> MetadataResponseTopic {
        let mut t = MetadataResponseTopic::default();
        t.name = Some(TopicName(StrBytes::from_string(name.to_string())));
        t.partitions = partitions;
        t
    }

    fn three_nodes_one_down() -> (DescribeClusterResponse, MetadataResponse) {
        let mut d = DescribeClusterResponse::default();
        d.cluster_id = StrBytes::from_static_str("c1");
        d.controller_id = BrokerId(2);
        for id in [1, 2] {
            let mut b = DescribeClusterBroker::default();
            b.broker_id = BrokerId(id);
            b.host = StrBytes::from_static_str("127.0.0.1");
            b.port = 19091 + id;
            d.brokers.push(b);
        }
        let mut m = MetadataResponse::default();
        m.controller_id = BrokerId(2);
        m.topics = vec![
            topic(
                "orders",
                vec![
                    partition(1, 2, &[2, 3, 1], &[2, 1]),
                    partition(0, 1, &[1, 2, 3], &[1, 2, 3]),
                ],
            ),
            topic("lonely", vec![partition(0, -1, &[3], &[])]),
        ];
        let mut failed = MetadataResponseTopic::default();
        failed.name = Some(TopicName(StrBytes::from_static_str("broken")));
        failed.error_code = 5;
        m.topics.push(failed);
        (d, m)
    }

    #[test]
    fn counts_under_replicated_and_offline_partitions() {
        let (d, m) = three_nodes_one_down();
        let s = ClusterStatus::from_responses("h:1".into(), Some(&d), &m);
        assert_eq!(s.controller_id, 2);
        assert_eq!(s.cluster_id.as_deref(), Some("c1"));
        assert_eq!((s.topics, s.partitions), (2, 3));
        let ur: Vec<_> = s
            .under_replicated
            .iter()
            .map(|p| (p.topic.as_str(), p.partition))
            .collect();
        assert_eq!(ur, [("lonely", 0), ("orders", 1)]);
        assert_eq!(s.offline.len(), 1);
        assert_eq!(s.offline[0].topic, "lonely");
        assert_eq!(s.topic_errors.len(), 1);
        let nodes: Vec<_> = s
            .nodes
            .iter()
            .map(|n| (n.id, n.live, n.controller))
            .collect();
        assert_eq!(
            nodes,
            [(1, true, false), (2, true, true), (3, false, false)]
        );
        assert_eq!(s.nodes[0].address, "127.0.0.1:19092");

        let text = s.render();
        assert!(text.contains("Controller:  2"), "{text}");
        assert!(text.contains("Under-replicated partitions: 2"), "{text}");
        assert!(text.contains("Offline partitions: 1"), "{text}");
        assert!(text.contains("NOT LIVE"), "{text}");
    }

    #[test]
    fn falls_back_to_metadata_brokers() {
        let (_, mut m) = three_nodes_one_down();
        let mut b = MetadataResponseBroker::default();
        b.node_id = BrokerId(7);
        b.host = StrBytes::from_static_str("::1");
        b.port = 9092;
        m.brokers = vec![b];
        m.controller_id = BrokerId(-1);
        let s = ClusterStatus::from_responses("h:1".into(), None, &m);
        assert_eq!(s.nodes[0].id, 7);
        assert_eq!(s.nodes[0].address, "[::1]:9092");
        assert!(s.render().contains("none (no controller elected)"));
    }

    #[test]
    fn bootstrap_without_port_means_9092() {
        assert_eq!(with_default_port("node1"), "node1:9092");
        assert_eq!(with_default_port("node1:19092"), "node1:19092");
        assert_eq!(with_default_port("[::1]:9092"), "[::1]:9092");
    }

    #[test]
    fn json_shape() {
        let (d, m) = three_nodes_one_down();
        let s = ClusterStatus::from_responses("h:1".into(), Some(&d), &m);
        let v: serde_json::Value = serde_json::to_value(&s).expect("json");
        assert_eq!(v["controller_id"], 2);
        assert_eq!(v["nodes"][1]["controller"], true);
        assert_eq!(v["under_replicated"].as_array().map(Vec::len), Some(2));
    }
}
