//! A cluster of real `rivulet serve` processes on loopback, with a [`FaultProxy`] on every
//! node-to-node link so a test can partition the network.
//!
//! ```text
//!               Kafka clients (bootstrap = every node's --listen port, never proxied)
//!                  │              │              │
//!              ┌───▼───┐      ┌───▼───┐      ┌───▼───┐
//!              │node 1 │      │node 2 │      │node 3 │   rivulet serve --node-id N
//!              └───┬───┘      └─▲─┬───┘      └─▲─▲───┘     --cluster-listen 127.0.0.1:CPORT_N
//!                  │ dials      │ │ dials      │ │         --seed 1@… --seed 2@… --seed 3@…
//!                  ├─▶ proxy(1,2) ┘ └─▶ proxy(2,3)┘ │
//!                  └─────────────▶ proxy(1,3) ──────┘
//! ```
//!
//! The lower node id dials the higher one, using the address in its own `--seed` list, so node
//! `i` gets `--seed j@<proxy(i,j)>` for every `j > i` and the real address of every `j <= i`
//! (which it never dials). Every byte between two nodes therefore crosses exactly one proxy,
//! and [`Cluster::isolate`] blackholes every proxy touching a node while its Kafka port stays
//! reachable.
//!
//! Cluster state is read with Kafka Metadata requests (raw wire, one short-lived connection per
//! request) to every node that is running and not paused. Nodes can disagree while a failover is
//! in progress; [`Cluster::partition_state`] trusts the answer with the highest leader epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::{Message, Request};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::util::Timeout;

use super::proxy::{FaultProxy, ProxyMode};
use super::wire::{self, RawConn};
use super::{free_port, try_wait_until, Node, NodeOptions, START_TIMEOUT};

/// How long cluster-level conditions (membership, elections, ISR) get to settle.
pub(crate) const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Socket timeout of one Metadata request.
const METADATA_TIMEOUT: Duration = Duration::from_secs(3);

/// How to start a cluster.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterOptions {
    /// Written to every node's `rivulet.toml` when set.
    pub(crate) config_toml: Option<String>,
    /// Extra environment for every node.
    pub(crate) env: Vec<(String, String)>,
    /// Extra `rivulet serve` arguments for every node.
    pub(crate) extra_args: Vec<String>,
}

/// One partition as one node's Metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionState {
    pub(crate) partition: i32,
    pub(crate) error_code: i16,
    pub(crate) leader: i32,
    pub(crate) leader_epoch: i32,
    pub(crate) replicas: Vec<i32>,
    pub(crate) isr: Vec<i32>,
}

/// What one node's Metadata (all topics) says.
#[derive(Debug, Clone)]
pub(crate) struct MetadataView {
    /// The node that answered.
    pub(crate) from: u32,
    pub(crate) brokers: BTreeSet<i32>,
    pub(crate) controller: i32,
    pub(crate) topics: BTreeMap<String, Vec<PartitionState>>,
}

impl MetadataView {
    pub(crate) fn from_response(from: u32, r: MetadataResponse) -> MetadataView {
        let topics = r
            .topics
            .into_iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| {
                let name = t.name?.0.to_string();
                let mut partitions: Vec<PartitionState> = t
                    .partitions
                    .into_iter()
                    .map(|p| PartitionState {
                        partition: p.partition_index,
                        error_code: p.error_code,
                        leader: p.leader_id.0,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                        isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                Some((name, partitions))
            })
            .collect();
        MetadataView {
            from,
            brokers: r.brokers.iter().map(|b| b.node_id.0).collect(),
            controller: r.controller_id.0,
            topics,
        }
    }

    pub(crate) fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        self.topics
            .get(topic)?
            .iter()
            .find(|p| p.partition == partition)
    }
}

/// Sends one Metadata request (all topics) to `addr`.
pub(crate) fn fetch_metadata(addr: SocketAddr) -> Result<MetadataResponse, String> {
    let mut conn =
        RawConn::connect_timeout(addr, METADATA_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    // Not `wire::negotiate`: it panics on I/O errors, and a node can die between two polls.
    let (min, max) = wire::supported_versions(&mut conn, MetadataRequest::KEY)
        .map_err(|e| format!("ApiVersions: {e}"))?
        .ok_or("Metadata is not advertised")?;
    // v1 is the first with a null topic list (all topics).
    let version = max.min(MetadataRequest::VERSIONS.max).min(12);
    if version < min.max(1) {
        return Err(format!("Metadata versions {min}..={max} advertised"));
    }
    let mut req = MetadataRequest::default();
    req.topics = None;
    req.allow_auto_topic_creation = false;
    conn.request(&req, version)
        .map_err(|e| format!("Metadata v{version}: {e}"))
}

/// A running cluster. Dropping it kills every node (keeping their dirs if the test panicked)
/// and stops the proxies.
#[derive(Debug)]
pub(crate) struct Cluster {
    // Proxies first: they are dropped before the nodes, so no half-dead link outlives a test.
    proxies: BTreeMap<(u32, u32), FaultProxy>,
    nodes: BTreeMap<u32, Node>,
    cluster_addrs: BTreeMap<u32, SocketAddr>,
    paused: BTreeSet<u32>,
    /// Nodes that joined from outside the harness (a node embedded in the test process): they
    /// may lead partitions, and the harness cannot see whether they run, so they count as live.
    embedded: BTreeSet<u32>,
}

impl Cluster {
    /// Starts nodes `1..=n` and waits until every node's Metadata lists all `n` brokers.
    pub(crate) fn start(n: u32, options: ClusterOptions) -> Cluster {
        assert!(n >= 1, "a cluster needs a node");
        let ids: Vec<u32> = (1..=n).collect();
        let cluster_addrs: BTreeMap<u32, SocketAddr> = ids
            .iter()
            .map(|&id| (id, SocketAddr::from(([127, 0, 0, 1], free_port()))))
            .collect();
        let mut proxies = BTreeMap::new();
        for &i in &ids {
            for &j in ids.iter().filter(|&&j| j > i) {
                let proxy = FaultProxy::start(cluster_addrs[&j])
                    .unwrap_or_else(|e| panic!("start the proxy for link {i}->{j}: {e}"));
                proxies.insert((i, j), proxy);
            }
        }
        let mut nodes = BTreeMap::new();
        for &i in &ids {
            let mut args = vec![
                "--cluster-listen".to_string(),
                cluster_addrs[&i].to_string(),
            ];
            for &j in &ids {
                let addr = if j > i {
                    proxies[&(i, j)].addr()
                } else {
                    cluster_addrs[&j]
                };
                args.push("--seed".to_string());
                args.push(format!("{j}@{addr}"));
            }
            args.extend(options.extra_args.iter().cloned());
            let node = Node::launch(NodeOptions {
                node_id: i,
                config_toml: options.config_toml.clone(),
                env: options.env.clone(),
                extra_args: args,
            });
            nodes.insert(i, node);
        }
        let mut cluster = Cluster {
            proxies,
            nodes,
            cluster_addrs,
            paused: BTreeSet::new(),
            embedded: BTreeSet::new(),
        };
        for node in cluster.nodes.values_mut() {
            node.wait_started();
        }
        cluster.wait_for_membership();
        cluster
    }

    /// Nodes `1..=n` with group timings for JVM applications (Kafka Connect, Kafka Streams):
    /// a short initial rebalance delay and session timeouts down to 1 s, as in
    /// tests/java_clients.rs, so their groups form quickly.
    pub(crate) fn start_for_jvm_apps(n: u32) -> Cluster {
        Cluster::start(
            n,
            ClusterOptions {
                config_toml: Some(
                    "[groups]\n\
                     offsets_partitions = 4\n\
                     initial_rebalance_delay_ms = 300\n\
                     min_session_timeout_ms = 1000\n"
                        .to_string(),
                ),
                ..ClusterOptions::default()
            },
        )
    }

    pub(crate) fn ids(&self) -> Vec<u32> {
        self.nodes.keys().copied().collect()
    }

    pub(crate) fn node(&self, id: u32) -> &Node {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    pub(crate) fn node_mut(&mut self, id: u32) -> &mut Node {
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// Every node's Kafka address, comma-separated (for `bootstrap.servers`).
    pub(crate) fn bootstrap(&self) -> String {
        self.nodes
            .values()
            .map(Node::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `id`'s `--cluster-listen` address.
    pub(crate) fn cluster_addr(&self, id: u32) -> SocketAddr {
        self.cluster_addrs[&id]
    }

    /// The proxy on the link between `a` and `b` (either order).
    pub(crate) fn proxy(&self, a: u32, b: u32) -> &FaultProxy {
        let key = (a.min(b), a.max(b));
        self.proxies
            .get(&key)
            .unwrap_or_else(|| panic!("no link {a}-{b}"))
    }

    /// Records that node `id` runs outside the harness (embedded in the test process), so
    /// waits such as [`Cluster::wait_for_full_isr`] accept it as a partition leader.
    pub(crate) fn add_embedded_node(&mut self, id: u32) {
        assert!(
            !self.nodes.contains_key(&id),
            "node {id} is a harness process, not an embedded node"
        );
        self.embedded.insert(id);
    }

    /// Nodes that may lead a partition: the live harness processes and the embedded nodes.
    fn live_leader_ids(&mut self) -> Vec<u32> {
        let mut live = self.live_ids();
        live.extend(self.embedded.iter().copied());
        live
    }

    /// Nodes whose process is running and not paused: the ones that can answer.
    pub(crate) fn live_ids(&mut self) -> Vec<u32> {
        let mut live = Vec::new();
        for (id, node) in &mut self.nodes {
            if !self.paused.contains(id) && node.is_running() {
                live.push(*id);
            }
        }
        live
    }

    /// Node `id`'s view of the cluster.
    pub(crate) fn metadata(&self, id: u32) -> Result<MetadataView, String> {
        fetch_metadata(self.node(id).addr())
            .map(|r| MetadataView::from_response(id, r))
            .map_err(|e| format!("node {id}: {e}"))
    }

    /// The views of every live node that answered, and the errors of those that did not.
    pub(crate) fn live_views(&mut self) -> (Vec<MetadataView>, Vec<String>) {
        let mut views = Vec::new();
        let mut errors = Vec::new();
        for id in self.live_ids() {
            match self.metadata(id) {
                Ok(v) => views.push(v),
                Err(e) => errors.push(e),
            }
        }
        (views, errors)
    }

    /// Polls until every live node answers Metadata listing exactly the live nodes as brokers.
    /// (A node that is running but cut off may still list itself only; use this when the
    /// network is whole.)
    pub(crate) fn wait_for_membership(&mut self) {
        let mut last = String::new();
        let result = try_wait_until(
            SETTLE_TIMEOUT,
            "every live node lists every live node",
            || {
                let live: BTreeSet<i32> = self.live_ids().iter().map(|&id| id as i32).collect();
                let (views, errors) = self.live_views();
                last = format!(
                    "live {live:?}; views {:?}; errors {errors:?}",
                    views
                        .iter()
                        .map(|v| (v.from, v.brokers.clone(), v.controller))
                        .collect::<Vec<_>>()
                );
                errors.is_empty()
                    && views.len() == live.len()
                    && views.iter().all(|v| v.brokers == live)
            },
        );
        if let Err(e) = result {
            self.fail(&format!("{e}; last: {last}"));
        }
    }

    /// The freshest state of a partition across live nodes (highest leader epoch), if any node
    /// knows the partition.
    pub(crate) fn partition_state(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Option<PartitionState> {
        let (views, _) = self.live_views();
        views
            .iter()
            .filter_map(|v| v.partition(topic, partition).cloned())
            .max_by_key(|p| p.leader_epoch)
    }

    /// The current leader of a partition: polls until the freshest view names a live leader.
    pub(crate) fn leader_of(&mut self, topic: &str, partition: i32) -> u32 {
        self.wait_for_leader(topic, partition, |_| true)
    }

    /// Polls until the freshest view of the partition names a live leader for which `accept`
    /// holds, and returns it.
    pub(crate) fn wait_for_leader(
        &mut self,
        topic: &str,
        partition: i32,
        mut accept: impl FnMut(u32) -> bool,
    ) -> u32 {
        let mut found = None;
        let mut last = None;
        let result = try_wait_until(
            SETTLE_TIMEOUT,
            &format!("{topic}/{partition} has an acceptable live leader"),
            || {
                let live = self.live_leader_ids();
                last = self.partition_state(topic, partition);
                found = last
                    .as_ref()
                    .and_then(|p| u32::try_from(p.leader).ok())
                    .filter(|l| live.contains(l) && accept(*l));
                found.is_some()
            },
        );
        match (result, found) {
            (Ok(()), Some(leader)) => leader,
            (r, _) => self.fail(&format!("{r:?}; last partition state: {last:?}")),
        }
    }

    /// Polls until a majority of the live nodes name the same live controller, and returns it.
    pub(crate) fn controller(&mut self) -> u32 {
        self.wait_for_controller(|_| true)
    }

    /// Like [`Cluster::controller`], for a controller that `accept` accepts.
    pub(crate) fn wait_for_controller(&mut self, mut accept: impl FnMut(u32) -> bool) -> u32 {
        let mut found = None;
        let mut last = Vec::new();
        let majority = self.nodes.len() / 2 + 1;
        let result = try_wait_until(SETTLE_TIMEOUT, "a majority agrees on a controller", || {
            let live = self.live_ids();
            let (views, _) = self.live_views();
            last = views.iter().map(|v| (v.from, v.controller)).collect();
            let mut votes: BTreeMap<i32, usize> = BTreeMap::new();
            for v in &views {
                *votes.entry(v.controller).or_default() += 1;
            }
            found = votes
                .into_iter()
                .filter(|&(_, n)| n >= majority)
                .filter_map(|(c, _)| u32::try_from(c).ok())
                .find(|c| live.contains(c) && accept(*c));
            found.is_some()
        });
        match (result, found) {
            (Ok(()), Some(c)) => c,
            (r, _) => self.fail(&format!("{r:?}; (node, controller) seen: {last:?}")),
        }
    }

    /// Polls until every partition of `topic` (`partitions` of them) has a live leader and an
    /// ISR equal to its replica set, in the freshest view.
    pub(crate) fn wait_for_full_isr(&mut self, topic: &str, partitions: i32) {
        let mut last = Vec::new();
        let result = try_wait_until(
            SETTLE_TIMEOUT,
            &format!("every partition of {topic} has its full ISR"),
            || {
                let live = self.live_leader_ids();
                last = (0..partitions)
                    .map(|p| self.partition_state(topic, p))
                    .collect();
                last.iter().all(|s| {
                    s.as_ref().is_some_and(|s| {
                        let mut isr = s.isr.clone();
                        let mut replicas = s.replicas.clone();
                        isr.sort_unstable();
                        replicas.sort_unstable();
                        u32::try_from(s.leader).is_ok_and(|l| live.contains(&l))
                            && !replicas.is_empty()
                            && isr == replicas
                    })
                })
            },
        );
        if let Err(e) = result {
            self.fail(&format!("{e}; last: {last:?}"));
        }
    }

    /// Creates a topic with the given replication factor and `min.insync.replicas` through the
    /// Kafka admin API and waits until every partition has its full ISR.
    pub(crate) fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication: i32,
        min_insync: i32,
    ) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("create admin client");
        let min_insync = min_insync.to_string();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication))
            .set("min.insync.replicas", &min_insync);
        let opts = AdminOptions::new()
            .request_timeout(Some(Timeout::After(Duration::from_secs(30))))
            .operation_timeout(Some(Timeout::After(Duration::from_secs(30))));
        let results = futures::executor::block_on(admin.create_topics([&topic], &opts))
            .unwrap_or_else(|e| self.fail(&format!("CreateTopics {name}: {e}")));
        for r in results {
            if let Err((topic, code)) = r {
                self.fail(&format!("CreateTopics {topic}: {code:?}"));
            }
        }
        self.wait_for_full_isr(name, partitions);
    }

    /// The standard chaos topic: replication factor 3 (or the cluster size if smaller),
    /// `min.insync.replicas` 2 (or 1 on a single node).
    pub(crate) fn create_replicated_topic(&mut self, name: &str, partitions: i32) {
        let n = self.nodes.len() as i32;
        self.create_topic(name, partitions, n.min(3), n.min(2));
    }

    /// SIGKILL node `id`.
    pub(crate) fn kill9(&mut self, id: u32) {
        self.paused.remove(&id);
        self.node_mut(id).kill9();
    }

    /// Starts a killed node again on the same data dir and ports, waits until it answers and
    /// every live node lists it.
    pub(crate) fn restart(&mut self, id: u32) {
        self.restart_many(&[id]);
    }

    /// Starts several killed nodes at once (they may need each other to answer), then waits as
    /// [`Cluster::restart`] does.
    pub(crate) fn restart_many(&mut self, ids: &[u32]) {
        for &id in ids {
            self.node_mut(id).respawn();
        }
        for &id in ids {
            if let Err(e) = self.node_mut(id).wait_ready(START_TIMEOUT) {
                self.fail(&format!("node {id} did not come back after restart: {e}"));
            }
        }
        self.wait_for_membership();
    }

    /// Starts a killed node again without waiting for it (a node cut off from the others
    /// cannot join; see [`Cluster::restart`] for the waiting form).
    pub(crate) fn respawn(&mut self, id: u32) {
        self.node_mut(id).respawn();
    }

    /// SIGKILL every node, then start them all again.
    pub(crate) fn kill9_all_and_restart(&mut self) {
        let ids = self.ids();
        for &id in &ids {
            if self.node_mut(id).is_running() {
                self.kill9(id);
            }
        }
        self.restart_many(&ids);
    }

    /// SIGSTOP node `id`: it keeps its sockets but answers nothing.
    pub(crate) fn pause(&mut self, id: u32) {
        self.node_mut(id).pause();
        self.paused.insert(id);
    }

    /// SIGCONT after [`Cluster::pause`].
    pub(crate) fn resume(&mut self, id: u32) {
        self.node_mut(id).resume();
        self.paused.remove(&id);
    }

    /// Sets the mode of the link between `a` and `b`.
    pub(crate) fn set_link(&self, a: u32, b: u32, mode: ProxyMode) {
        self.proxy(a, b).set_mode(mode);
    }

    /// Blackholes every link touching node `id` (a silent partition); its Kafka port stays
    /// reachable by clients.
    pub(crate) fn isolate(&self, id: u32) {
        for (&(a, b), proxy) in &self.proxies {
            if a == id || b == id {
                proxy.set_mode(ProxyMode::Blackhole);
            }
        }
    }

    /// Blackholes every link between `side` and the other nodes.
    pub(crate) fn partition(&self, side: &[u32]) {
        for (&(a, b), proxy) in &self.proxies {
            if side.contains(&a) != side.contains(&b) {
                proxy.set_mode(ProxyMode::Blackhole);
            }
        }
    }

    /// Every link back to `Pass`.
    pub(crate) fn heal(&self) {
        for proxy in self.proxies.values() {
            proxy.set_mode(ProxyMode::Pass);
        }
    }

    /// Every log file of every node (all incarnations).
    pub(crate) fn log_paths(&self) -> Vec<PathBuf> {
        self.nodes.values().flat_map(Node::log_paths).collect()
    }

    /// Panics with `msg` and where the node logs are. The nodes keep their temp dirs (they
    /// see the panic when dropped).
    pub(crate) fn fail(&self, msg: &str) -> ! {
        let logs: Vec<String> = self
            .log_paths()
            .iter()
            .map(|p| format!("  {}", p.display()))
            .collect();
        panic!("{msg}\nnode logs:\n{}", logs.join("\n"));
    }
}

/// Waits (bounded) until `condition`, failing the cluster test with `what` otherwise.
pub(crate) fn wait_cluster(cluster: &Cluster, what: &str, condition: impl FnMut() -> bool) {
    if let Err(e) = try_wait_until(SETTLE_TIMEOUT, what, condition) {
        cluster.fail(&e);
    }
}
