//! Node configuration: built-in defaults, then a TOML file, then `RIVULET_*` environment
//! variables, then command-line flags. Unknown keys are errors, never ignored.
//!
//! ```toml
//! node_id = 1
//! data_dir = "./rivulet-data"
//! listen = "127.0.0.1:9092"
//! advertised = "127.0.0.1:9092"   # what clients are told to connect to; defaults to `listen`
//! auto_create_topics = true
//! num_partitions = 1
//!
//! [log]                # defaults for topic configs (Kafka's log.* settings)
//! retention_ms = 604800000
//! flush_ms = 9223372036854775807
//!
//! [storage]
//! cache_bytes = 268435456
//!
//! [groups]             # consumer group coordinators
//! offsets_partitions = 16
//!
//! [transactions]       # transaction coordinators (exactly-once; on by default)
//! enabled = false
//!
//! [admin]              # HTTP: /health, /ready, /metrics, /v1/... ("" or "off" disables)
//! listen = "127.0.0.1:9644"
//! ```
//! Nested keys come from the environment with `__`: `RIVULET_LOG__RETENTION_MS=3600000`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use rivulet_actors::group::GroupConfig;
use rivulet_actors::txn::{TxnConfig, TxnCoordinatorConfig};
use rivulet_cluster::TopicDefaults;
use serde::{Deserialize, Serialize};

/// The file read from the working directory when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "rivulet.toml";

/// Flags of `rivulet serve`; each overrides the file and the environment.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct ServeArgs {
    /// Configuration file (TOML). Default: ./rivulet.toml when it exists.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Stable id of this node in the cluster.
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<i32>,
    /// Where the node keeps its data.
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Address the Kafka listener binds.
    #[arg(long, value_name = "HOST:PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Address clients are told to connect to (defaults to --listen).
    #[arg(long, value_name = "HOST:PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised: Option<String>,
    /// Cluster settings.
    #[command(flatten)]
    #[serde(skip_serializing_if = "ClusterArgs::is_empty")]
    pub cluster: ClusterArgs,
    /// Admin endpoint settings.
    #[command(flatten)]
    #[serde(skip_serializing_if = "AdminArgs::is_empty")]
    pub admin: AdminArgs,
}

/// Admin endpoint flags of `rivulet serve` (the `[admin]` table of the config).
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct AdminArgs {
    /// Address of the admin HTTP endpoint (/health, /ready, /metrics, /v1/...); "off"
    /// disables it. Default: 127.0.0.1:9644.
    #[arg(long = "admin-listen", value_name = "HOST:PORT")]
    #[serde(rename = "listen", skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
}

impl AdminArgs {
    fn is_empty(&self) -> bool {
        self.admin_listen.is_none()
    }
}

/// Default address of the admin HTTP endpoint: loopback only, so a node does not expose its
/// metrics and cluster view beyond the host unless told to.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9644";

/// The `[admin]` table: the admin HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// `HOST:PORT` to serve on; empty or `off` disables the endpoint.
    pub listen: String,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_ADMIN_LISTEN.into(),
        }
    }
}

/// Cluster flags of `rivulet serve` (the `[cluster]` table of the config).
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct ClusterArgs {
    /// Address the node-to-node listener binds (needed with --seed).
    #[arg(long = "cluster-listen", value_name = "HOST:PORT")]
    #[serde(rename = "listen", skip_serializing_if = "Option::is_none")]
    pub cluster_listen: Option<String>,
    /// An initial member `ID@HOST:PORT` (its cluster address); repeat for each, this node
    /// included. Without any, the node is a single-node cluster.
    #[arg(long = "seed", value_name = "ID@HOST:PORT")]
    #[serde(rename = "seeds", skip_serializing_if = "Vec::is_empty")]
    pub seed: Vec<String>,
    /// Shared secret of the cluster's node-to-node links.
    #[arg(long = "cluster-cookie", value_name = "SECRET")]
    #[serde(rename = "cookie", skip_serializing_if = "Option::is_none")]
    pub cluster_cookie: Option<String>,
}

impl ClusterArgs {
    fn is_empty(&self) -> bool {
        self.cluster_listen.is_none() && self.seed.is_empty() && self.cluster_cookie.is_none()
    }
}

/// The `[cluster]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Node-to-node listener; empty for a single-node cluster.
    pub listen: String,
    /// Initial members as `ID@HOST:PORT`, this node included. Empty: single node.
    pub seeds: Vec<String>,
    /// Shared secret of the node-to-node links.
    pub cookie: String,
    /// How often nodes heartbeat each other and the controller.
    pub heartbeat_interval_ms: u64,
    /// A node silent this long is fenced and its leaderships move.
    pub session_timeout_ms: u64,
    /// A follower not caught up for this long leaves the ISR.
    pub replica_lag_max_ms: u64,
    /// PEM certificate (chain) of this node for TLS between nodes; with `tls_key` and
    /// `tls_ca` set, node-to-node links use mutual TLS.
    pub tls_cert: String,
    /// PEM private key of this node.
    pub tls_key: String,
    /// PEM CA certificate that signs every node's certificate.
    pub tls_ca: String,
    /// Name checked against peers' certificates; empty: the host of the peer's address.
    pub tls_server_name: String,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            listen: String::new(),
            seeds: Vec::new(),
            cookie: "rivulet".into(),
            heartbeat_interval_ms: 250,
            session_timeout_ms: 2000,
            replica_lag_max_ms: 5000,
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_ca: String::new(),
            tls_server_name: String::new(),
        }
    }
}

impl ClusterSettings {
    /// The TLS files, when TLS between nodes is configured.
    pub fn tls(&self) -> anyhow::Result<Option<rivulet_cluster::membership::TlsFiles>> {
        let set = [&self.tls_cert, &self.tls_key, &self.tls_ca]
            .iter()
            .filter(|s| !s.is_empty())
            .count();
        match set {
            0 => Ok(None),
            3 => Ok(Some(rivulet_cluster::membership::TlsFiles {
                cert: self.tls_cert.clone().into(),
                key: self.tls_key.clone().into(),
                ca: self.tls_ca.clone().into(),
                server_name: self.tls_server_name.clone(),
            })),
            _ => bail!(
                "cluster TLS needs all of cluster.tls_cert, cluster.tls_key and cluster.tls_ca"
            ),
        }
    }

    /// The seeds as node id -> address.
    pub fn seed_map(&self) -> anyhow::Result<std::collections::BTreeMap<u64, String>> {
        let mut map = std::collections::BTreeMap::new();
        for s in &self.seeds {
            let (id, addr) = s.split_once('@').with_context(|| {
                format!("seed {s:?} is not ID@HOST:PORT (for example 1@10.0.0.1:9093)")
            })?;
            let id: u64 = id
                .parse()
                .with_context(|| format!("seed {s:?}: {id:?} is not a node id"))?;
            if !addr.contains(':') {
                bail!("seed {s:?}: {addr:?} is not HOST:PORT");
            }
            if map.insert(id, addr.to_string()).is_some() {
                bail!("seed id {id} is listed twice");
            }
        }
        Ok(map)
    }
}

/// Storage engine settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Block cache shared by all partitions.
    pub cache_bytes: u64,
    /// Memory for unflushed writes before they are written out to tables.
    pub write_buffer_bytes_max: u64,
    /// Journal size that forces a flush of old memtables.
    pub journal_bytes_max: u64,
    /// Produce and replication are refused (KAFKA_STORAGE_ERROR) while the data directory's
    /// filesystem has fewer free bytes than this; they resume above it plus 10%. Keep it
    /// above `write_buffer_bytes_max` (fjall must flush its memtables) plus room for the
    /// metadata log. 0 disables the check (a full disk then stops writes until a restart).
    pub free_bytes_min: u64,
    /// Log cleaner passes that may run at once (compacted topics, one partition each;
    /// Kafka's `log.cleaner.threads`). 0 stops compaction.
    pub cleaner_threads: usize,
    /// Bytes per second a cleaner pass reads and writes at most; 0 = no limit (Kafka's
    /// `log.cleaner.io.max.bytes.per.second`).
    pub cleaner_io_bytes_per_sec_max: u64,
    /// Memory for one pass's key map (Kafka's `log.cleaner.dedupe.buffer.size`).
    pub cleaner_key_map_bytes_max: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            cache_bytes: 256 << 20,
            write_buffer_bytes_max: 256 << 20,
            journal_bytes_max: 1 << 30,
            // The default write buffer (256 MiB) plus 64 MiB for metadata and compactions.
            free_bytes_min: 320 << 20,
            cleaner_threads: 1,
            cleaner_io_bytes_per_sec_max: 0,
            cleaner_key_map_bytes_max: 64 << 20,
        }
    }
}

/// Server assignors the group coordinator implements (KIP-848 `group.remote.assignor`).
pub const SERVER_ASSIGNORS: &[&str] = &["uniform", "range"];

/// The `[transactions]` table: transaction coordinators (Kafka's `transaction.*` and
/// `transactional.id.*` settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransactionSettings {
    /// Serve transactional producers (FindCoordinator for transactions, InitProducerId with a
    /// transactional id, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn, the
    /// transaction admin APIs). On by default; off, transactional producers fail at once with
    /// TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
    pub enabled: bool,
    /// Partitions of `__transaction_state` (fixed once the topic exists).
    pub state_partitions: i32,
    /// Replication factor of `__transaction_state` (capped by the nodes at creation).
    pub state_replication_factor: i16,
    /// Largest transaction timeout a producer may ask for (`transaction.max.timeout.ms`).
    pub max_timeout_ms: i64,
    /// A transactional id idle this long is forgotten (`transactional.id.expiration.ms`).
    pub id_expiration_ms: i64,
    /// Longest a write to `__transaction_state` may take before the request fails; also bounds
    /// each transaction marker append (a marker not written in time is retried).
    pub write_timeout_ms: u64,
}

impl Default for TransactionSettings {
    fn default() -> Self {
        let d = TxnCoordinatorConfig::default();
        Self {
            enabled: true,
            state_partitions: d.state_partitions,
            state_replication_factor: d.state_replication_factor,
            max_timeout_ms: d.core.max_timeout_ms,
            id_expiration_ms: d.core.id_expiration_ms,
            write_timeout_ms: u64::try_from(d.write_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl TransactionSettings {
    /// Checks the table; each message names the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=10_000).contains(&self.state_partitions) {
            bail!(
                "transactions.state_partitions must be between 1 and 10000 (got {})",
                self.state_partitions
            );
        }
        if self.state_replication_factor < 1 {
            bail!("transactions.state_replication_factor must be >= 1");
        }
        if self.max_timeout_ms < 1 || self.id_expiration_ms < 1 || self.write_timeout_ms < 1 {
            bail!("transactions.max_timeout_ms, id_expiration_ms and write_timeout_ms must be > 0");
        }
        Ok(())
    }

    /// The coordinators' settings.
    pub fn to_coordinator_config(&self) -> TxnCoordinatorConfig {
        TxnCoordinatorConfig {
            core: TxnConfig {
                max_timeout_ms: self.max_timeout_ms,
                id_expiration_ms: self.id_expiration_ms,
            },
            state_partitions: self.state_partitions,
            state_replication_factor: self.state_replication_factor,
            write_timeout: Duration::from_millis(self.write_timeout_ms),
        }
    }
}

/// The `[groups]` table: consumer group coordinators (Kafka's `group.*` and `offsets.*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupSettings {
    /// Partitions of `__consumer_offsets` (fixed once the topic exists).
    pub offsets_partitions: i32,
    /// Replication factor of `__consumer_offsets` (capped by the live nodes at creation).
    pub offsets_replication_factor: i16,
    /// A new classic group waits this long for more members before its first rebalance.
    pub initial_rebalance_delay_ms: u64,
    /// Smallest session timeout a classic member may ask for.
    pub min_session_timeout_ms: u64,
    /// Largest session timeout a classic member may ask for.
    pub max_session_timeout_ms: u64,
    /// Most members in one group; unset: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<usize>,
    /// Committed offsets of a group that has been empty this long are deleted.
    pub offsets_retention_ms: u64,
    /// Consumer protocol (KIP-848): session timeout of members.
    pub consumer_session_timeout_ms: u64,
    /// Consumer protocol: heartbeat interval given to members.
    pub consumer_heartbeat_interval_ms: u64,
    /// Consumer protocol: server assignors offered; the first is the default.
    pub consumer_assignors: Vec<String>,
    /// Consumer protocol: bounds of a group's own `consumer.session.timeout.ms` (Kafka's
    /// `group.consumer.min/max.session.timeout.ms`).
    pub consumer_min_session_timeout_ms: u64,
    /// See `consumer_min_session_timeout_ms`.
    pub consumer_max_session_timeout_ms: u64,
    /// Consumer protocol: bounds of a group's own `consumer.heartbeat.interval.ms` (Kafka's
    /// `group.consumer.min/max.heartbeat.interval.ms`).
    pub consumer_min_heartbeat_interval_ms: u64,
    /// See `consumer_min_heartbeat_interval_ms`.
    pub consumer_max_heartbeat_interval_ms: u64,
    /// Longest a write to `__consumer_offsets` may take before the request fails.
    pub write_timeout_ms: u64,
    /// Largest metadata string of a committed offset (Kafka's `offset.metadata.max.bytes`).
    pub offset_metadata_max_bytes: usize,
    /// Records appended to an offsets partition before it is compacted.
    pub offsets_compact_records: i64,
    /// `segment.bytes` of `__consumer_offsets` when it is created.
    pub offsets_segment_bytes: u64,
}

impl Default for GroupSettings {
    fn default() -> Self {
        let d = GroupConfig::default();
        let ms = |x: Duration| u64::try_from(x.as_millis()).unwrap_or(u64::MAX);
        Self {
            offsets_partitions: d.offsets_partitions,
            offsets_replication_factor: d.offsets_replication_factor,
            initial_rebalance_delay_ms: ms(d.initial_rebalance_delay),
            min_session_timeout_ms: ms(d.min_session_timeout),
            max_session_timeout_ms: ms(d.max_session_timeout),
            max_size: d.max_size,
            offsets_retention_ms: ms(d.offsets_retention),
            consumer_session_timeout_ms: ms(d.consumer_session_timeout),
            consumer_heartbeat_interval_ms: ms(d.consumer_heartbeat_interval),
            consumer_assignors: d.consumer_assignors,
            consumer_min_session_timeout_ms: ms(d.consumer_min_session_timeout),
            consumer_max_session_timeout_ms: ms(d.consumer_max_session_timeout),
            consumer_min_heartbeat_interval_ms: ms(d.consumer_min_heartbeat_interval),
            consumer_max_heartbeat_interval_ms: ms(d.consumer_max_heartbeat_interval),
            write_timeout_ms: ms(d.write_timeout),
            offset_metadata_max_bytes: d.offset_metadata_max_bytes,
            offsets_compact_records: d.offsets_compact_records,
            offsets_segment_bytes: d.offsets_segment_bytes,
        }
    }
}

impl GroupSettings {
    /// Checks the table; each message names the key and what to do.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=10_000).contains(&self.offsets_partitions) {
            bail!(
                "groups.offsets_partitions must be between 1 and 10000 (got {})",
                self.offsets_partitions
            );
        }
        if self.offsets_replication_factor < 1 {
            bail!(
                "groups.offsets_replication_factor must be >= 1 (got {})",
                self.offsets_replication_factor
            );
        }
        if self.min_session_timeout_ms == 0 {
            bail!("groups.min_session_timeout_ms must be > 0");
        }
        if self.min_session_timeout_ms > self.max_session_timeout_ms {
            bail!(
                "groups.min_session_timeout_ms ({}) must not exceed groups.max_session_timeout_ms ({})",
                self.min_session_timeout_ms,
                self.max_session_timeout_ms
            );
        }
        if self.max_size == Some(0) {
            bail!("groups.max_size must be >= 1 (leave it out for no limit)");
        }
        if self.offsets_retention_ms == 0 {
            bail!("groups.offsets_retention_ms must be > 0");
        }
        if self.consumer_heartbeat_interval_ms == 0 {
            bail!("groups.consumer_heartbeat_interval_ms must be > 0");
        }
        if self.consumer_heartbeat_interval_ms >= self.consumer_session_timeout_ms {
            bail!(
                "groups.consumer_heartbeat_interval_ms ({}) must be below groups.consumer_session_timeout_ms ({})",
                self.consumer_heartbeat_interval_ms,
                self.consumer_session_timeout_ms
            );
        }
        if self.consumer_min_session_timeout_ms > self.consumer_max_session_timeout_ms
            || self.consumer_min_heartbeat_interval_ms > self.consumer_max_heartbeat_interval_ms
        {
            bail!("groups.consumer_min_*_ms must not exceed the matching groups.consumer_max_*_ms");
        }
        if self.consumer_assignors.is_empty() {
            bail!(
                "groups.consumer_assignors must name at least one assignor among {}",
                SERVER_ASSIGNORS.join(", ")
            );
        }
        for a in &self.consumer_assignors {
            if !SERVER_ASSIGNORS.contains(&a.as_str()) {
                bail!(
                    "groups.consumer_assignors: unknown assignor {a:?}; available: {}",
                    SERVER_ASSIGNORS.join(", ")
                );
            }
        }
        if self.offsets_segment_bytes < 1024 {
            bail!("groups.offsets_segment_bytes must be at least 1024");
        }
        if self.offsets_compact_records < 100 {
            bail!("groups.offsets_compact_records must be at least 100");
        }
        if self.write_timeout_ms == 0 {
            bail!("groups.write_timeout_ms must be > 0");
        }
        Ok(())
    }

    /// The coordinator's settings.
    pub fn to_group_config(&self) -> GroupConfig {
        GroupConfig {
            offsets_partitions: self.offsets_partitions,
            offsets_replication_factor: self.offsets_replication_factor,
            initial_rebalance_delay: Duration::from_millis(self.initial_rebalance_delay_ms),
            min_session_timeout: Duration::from_millis(self.min_session_timeout_ms),
            max_session_timeout: Duration::from_millis(self.max_session_timeout_ms),
            max_size: self.max_size,
            offsets_retention: Duration::from_millis(self.offsets_retention_ms),
            consumer_session_timeout: Duration::from_millis(self.consumer_session_timeout_ms),
            consumer_heartbeat_interval: Duration::from_millis(self.consumer_heartbeat_interval_ms),
            consumer_assignors: self.consumer_assignors.clone(),
            consumer_min_session_timeout: Duration::from_millis(
                self.consumer_min_session_timeout_ms,
            ),
            consumer_max_session_timeout: Duration::from_millis(
                self.consumer_max_session_timeout_ms,
            ),
            consumer_min_heartbeat_interval: Duration::from_millis(
                self.consumer_min_heartbeat_interval_ms,
            ),
            consumer_max_heartbeat_interval: Duration::from_millis(
                self.consumer_max_heartbeat_interval_ms,
            ),
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            offset_metadata_max_bytes: self.offset_metadata_max_bytes,
            offsets_compact_records: self.offsets_compact_records,
            offsets_segment_bytes: self.offsets_segment_bytes,
        }
    }
}

/// The whole node configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Stable node id.
    pub node_id: i32,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Kafka listener address.
    pub listen: String,
    /// Advertised Kafka address; empty means `listen`.
    pub advertised: String,
    /// Create unknown topics on Metadata and Produce.
    pub auto_create_topics: bool,
    /// Partitions of topics created without a count.
    pub num_partitions: i32,
    /// Replication factor of topics created without one.
    pub default_replication_factor: i16,
    /// Largest request frame accepted; larger ones close the connection.
    pub request_bytes_max: usize,
    /// Produce payload bytes in flight across the node before new produce requests wait.
    pub produce_inflight_bytes_max: usize,
    /// Concurrent client connections.
    pub connections_max: usize,
    /// Concurrent client connections from one IP address (Kafka's `max.connections.per.ip`).
    pub connections_per_ip_max: usize,
    /// Close a connection that sends no request for this long (`connections.max.idle.ms`).
    pub connections_max_idle_ms: u64,
    /// Request and response bytes held by all connections together before new requests wait
    /// (like Kafka's `queued.max.request.bytes`, but fetch responses count too).
    pub inflight_bytes_max: usize,
    /// Close a connection whose request is not complete this long after its first byte.
    pub request_read_timeout_ms: u64,
    /// Close a connection whose client does not take its response within this time.
    pub response_write_timeout_ms: u64,
    /// Longest a fetch may wait, whatever the client asks.
    pub fetch_wait_max_ms: u64,
    /// How often retention runs.
    pub retention_check_interval_ms: u64,
    /// Longest the Kafka listener waits at start-up for the replicas this node already knows
    /// to open; partitions still opening after it answer LEADER_NOT_AVAILABLE.
    pub replicas_start_wait_ms: u64,
    /// Defaults for topic configs.
    pub log: TopicDefaults,
    /// Storage engine settings.
    pub storage: StorageSettings,
    /// Cluster membership.
    pub cluster: ClusterSettings,
    /// Consumer group coordinators.
    pub groups: GroupSettings,
    /// Transaction coordinators.
    pub transactions: TransactionSettings,
    /// Admin HTTP endpoint.
    pub admin: AdminSettings,
    /// Dotted keys (`groups.max_size`) that the config file, the environment or a flag set,
    /// even to the built-in value: DescribeConfigs reports a setting as STATIC_BROKER_CONFIG
    /// when it is set here or differs from the built-in value, else as DEFAULT_CONFIG, as
    /// Kafka does for keys in or absent from its server.properties. Not a setting itself.
    #[serde(skip)]
    pub set_keys: std::collections::BTreeSet<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: 1,
            data_dir: PathBuf::from("./rivulet-data"),
            listen: "127.0.0.1:9092".into(),
            advertised: String::new(),
            auto_create_topics: true,
            num_partitions: 1,
            default_replication_factor: 1,
            request_bytes_max: 100 << 20,
            produce_inflight_bytes_max: 256 << 20,
            connections_max: 10_000,
            connections_per_ip_max: 1_000,
            connections_max_idle_ms: 600_000,
            inflight_bytes_max: 512 << 20,
            request_read_timeout_ms: 30_000,
            response_write_timeout_ms: 30_000,
            fetch_wait_max_ms: 30_000,
            retention_check_interval_ms: 30_000,
            replicas_start_wait_ms: 30_000,
            log: TopicDefaults::default(),
            storage: StorageSettings::default(),
            cluster: ClusterSettings::default(),
            groups: GroupSettings::default(),
            transactions: TransactionSettings::default(),
            admin: AdminSettings::default(),
            set_keys: Default::default(),
        }
    }
}

/// Every leaf of the dictionaries, by dotted path.
fn flat_keys(
    dicts: impl IntoIterator<Item = figment::value::Dict>,
) -> std::collections::BTreeMap<String, figment::value::Value> {
    fn walk(
        prefix: &str,
        dict: figment::value::Dict,
        out: &mut std::collections::BTreeMap<String, figment::value::Value>,
    ) {
        for (k, v) in dict {
            let path = if prefix.is_empty() {
                k
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                figment::value::Value::Dict(_, d) => walk(&path, d, out),
                v => {
                    out.insert(path, v);
                }
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for d in dicts {
        walk("", d, &mut out);
    }
    out
}

/// Environment variables with the `RIVULET_` prefix that are not node settings (the client
/// commands read them).
const CLIENT_ONLY_ENV: &[&str] = &["bootstrap"];

impl Config {
    /// Builds the configuration from every layer.
    pub fn load(args: &ServeArgs) -> anyhow::Result<Config> {
        Self::load_from(
            args,
            Env::prefixed("RIVULET_")
                .split("__")
                .ignore(CLIENT_ONLY_ENV),
        )
    }

    fn load_from(args: &ServeArgs, env: Env) -> anyhow::Result<Config> {
        // The layers over the built-in defaults, kept apart so that the keys they set are known.
        let mut layers = Figment::new();
        match &args.config {
            Some(path) => {
                if !path.exists() {
                    bail!(
                        "config file {} does not exist; pass an existing file to --config or drop the flag",
                        path.display()
                    );
                }
                layers = layers.merge(Toml::file(path));
            }
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                layers = layers.merge(Toml::file(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        let layers = layers.merge(env).merge(Serialized::defaults(args));
        // A layer that does not parse fails the extract below, with its own message.
        let set_keys = figment::Provider::data(&layers)
            .map(|profiles| flat_keys(profiles.into_values()).into_keys().collect())
            .unwrap_or_default();
        let fig = Figment::from(Serialized::defaults(Config::default())).merge(layers);
        let mut cfg: Config = fig.extract().map_err(|e| {
            anyhow::anyhow!(
                "invalid configuration: {e}. See the Configuration section of README.md"
            )
        })?;
        cfg.validate()?;
        cfg.set_keys = set_keys;
        Ok(cfg)
    }

    /// Dotted keys set explicitly (`set_keys`) or to a value other than the built-in one (a
    /// config built in code by an embedding program has no `set_keys`).
    pub fn static_keys(&self) -> std::collections::BTreeSet<String> {
        let values = |c: &Config| {
            figment::Provider::data(&Serialized::defaults(c))
                .map(|profiles| flat_keys(profiles.into_values()))
                .unwrap_or_default()
        };
        let builtin = values(&Config::default());
        let mut keys = self.set_keys.clone();
        keys.extend(
            values(self)
                .into_iter()
                .filter(|(k, v)| builtin.get(k) != Some(v))
                .map(|(k, _)| k),
        );
        keys
    }

    /// Checks every setting; each message names the key. [`Config::load`] calls it, and so
    /// does an embedded node's start (`node::NodeBuilder::start`) for a config built in code.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.listen_addr()?;
        self.advertised_host_port()?;
        if self.node_id < 0 {
            bail!("node_id must be >= 0 (got {})", self.node_id);
        }
        if self.num_partitions < 1 {
            bail!("num_partitions must be >= 1 (got {})", self.num_partitions);
        }
        if self.request_bytes_max < 1024 {
            bail!("request_bytes_max must be at least 1024");
        }
        if self.produce_inflight_bytes_max < self.request_bytes_max {
            bail!("produce_inflight_bytes_max must be at least request_bytes_max");
        }
        if self.inflight_bytes_max < self.request_bytes_max {
            bail!("inflight_bytes_max must be at least request_bytes_max");
        }
        if self.connections_max == 0 || self.connections_per_ip_max == 0 {
            bail!("connections_max and connections_per_ip_max must be at least 1");
        }
        if self.connections_max_idle_ms == 0
            || self.request_read_timeout_ms == 0
            || self.response_write_timeout_ms == 0
        {
            bail!("connections_max_idle_ms, request_read_timeout_ms and response_write_timeout_ms must be at least 1");
        }
        let seeds = self.cluster.seed_map()?;
        self.cluster.tls()?;
        if !seeds.is_empty() {
            self.cluster_listen_addr()?;
        }
        if self.cluster.session_timeout_ms < 2 * self.cluster.heartbeat_interval_ms {
            bail!(
                "cluster.session_timeout_ms must be at least twice cluster.heartbeat_interval_ms"
            );
        }
        self.log
            .validate(&Default::default())
            .map_err(|e| anyhow::anyhow!("invalid [log] defaults: {e}"))?;
        self.groups.validate()?;
        self.transactions.validate()?;
        self.admin_listen_addr()?;
        Ok(())
    }

    /// The node-to-node listener address.
    pub fn cluster_listen_addr(&self) -> anyhow::Result<SocketAddr> {
        if self.cluster.listen.is_empty() {
            bail!("a node with seeds needs cluster.listen / --cluster-listen HOST:PORT");
        }
        self.cluster.listen.parse().with_context(|| {
            format!(
                "cluster.listen = {:?} is not HOST:PORT with an IP host",
                self.cluster.listen
            )
        })
    }

    /// The admin endpoint's address, `None` when disabled.
    pub fn admin_listen_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        let listen = self.admin.listen.trim();
        if listen.is_empty() || listen.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        listen.parse().map(Some).with_context(|| {
            format!(
                "admin.listen = {:?} is not HOST:PORT with an IP host (or \"off\")",
                self.admin.listen
            )
        })
    }

    /// The socket address to bind.
    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen.parse().with_context(|| {
            format!(
                "listen = {:?} is not HOST:PORT with an IP host",
                self.listen
            )
        })
    }

    /// The host and port clients are told to use.
    pub fn advertised_host_port(&self) -> anyhow::Result<(String, i32)> {
        let adv = if self.advertised.is_empty() {
            &self.listen
        } else {
            &self.advertised
        };
        let (host, port) = adv
            .rsplit_once(':')
            .with_context(|| format!("advertised address {adv:?} is not HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .with_context(|| format!("bad port in {adv:?}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            bail!("advertised address {adv:?} has no host");
        }
        Ok((host.to_string(), i32::from(port)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_none() -> Env {
        Env::prefixed("RIVULET_TEST_NEVER_SET_")
    }

    #[test]
    fn defaults_are_valid() {
        let cfg = Config::load_from(&ServeArgs::default(), env_none()).expect("defaults load");
        assert_eq!(cfg.listen, "127.0.0.1:9092");
        assert_eq!(
            cfg.advertised_host_port().expect("adv"),
            ("127.0.0.1".into(), 9092)
        );
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("r.toml");
        std::fs::write(
            &file,
            "node_id = 7\nlisten = \"127.0.0.1:1000\"\n[log]\nretention_ms = 5\n",
        )
        .expect("write");
        let args = ServeArgs {
            config: Some(file),
            listen: Some("127.0.0.1:2000".into()),
            ..Default::default()
        };
        let cfg = Config::load_from(&args, env_none()).expect("load");
        assert_eq!(cfg.node_id, 7);
        assert_eq!(cfg.listen, "127.0.0.1:2000");
        assert_eq!(cfg.log.retention_ms, 5);
    }

    #[test]
    fn static_keys_are_those_set_or_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("r.toml");
        // Set to the built-in value: still set by the operator (Kafka's STATIC_BROKER_CONFIG).
        std::fs::write(&file, "num_partitions = 1\n[groups]\nmax_size = 5\n").expect("write");
        let args = ServeArgs {
            config: Some(file),
            node_id: Some(3),
            ..Default::default()
        };
        let keys = Config::load_from(&args, env_none())
            .expect("load")
            .static_keys();
        for key in ["num_partitions", "groups.max_size", "node_id"] {
            assert!(keys.contains(key), "{key} in {keys:?}");
        }
        assert!(!keys.contains("auto_create_topics"), "{keys:?}");
        // A config built in code has no record of what was set: what differs counts.
        let code = Config {
            default_replication_factor: 3,
            ..Config::default()
        };
        assert_eq!(
            code.static_keys().into_iter().collect::<Vec<_>>(),
            ["default_replication_factor"]
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("r.toml");
        std::fs::write(&file, "node_idd = 7\n").expect("write");
        let args = ServeArgs {
            config: Some(file),
            ..Default::default()
        };
        let err = Config::load_from(&args, env_none()).expect_err("must fail");
        assert!(err.to_string().contains("node_idd"), "{err}");
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let args = ServeArgs {
            config: Some("/no/such/rivulet.toml".into()),
            ..Default::default()
        };
        assert!(Config::load_from(&args, env_none()).is_err());
    }

    #[test]
    fn cluster_flags_nest_under_the_cluster_table() {
        let args = ServeArgs {
            cluster: ClusterArgs {
                cluster_listen: Some("127.0.0.1:9300".into()),
                seed: vec!["1@127.0.0.1:9300".into(), "2@127.0.0.1:9301".into()],
                cluster_cookie: None,
            },
            ..Default::default()
        };
        let cfg = Config::load_from(&args, env_none()).expect("load");
        assert_eq!(cfg.cluster.listen, "127.0.0.1:9300");
        let seeds = cfg.cluster.seed_map().expect("seeds");
        assert_eq!(seeds.get(&2).map(String::as_str), Some("127.0.0.1:9301"));
        let bad = ServeArgs {
            cluster: ClusterArgs {
                seed: vec!["x@nowhere".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(Config::load_from(&bad, env_none()).is_err());
    }

    #[test]
    fn groups_table_defaults_file_and_env() {
        let cfg = Config::load_from(&ServeArgs::default(), env_none()).expect("defaults");
        let g = cfg.groups.to_group_config();
        assert_eq!(g.offsets_partitions, 16);
        assert_eq!(g.offsets_replication_factor, 3);
        assert_eq!(g.initial_rebalance_delay, Duration::from_secs(3));
        assert_eq!(g.min_session_timeout, Duration::from_secs(6));
        assert_eq!(g.max_session_timeout, Duration::from_secs(1800));
        assert_eq!(g.max_size, None);
        assert_eq!(g.offsets_retention, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(g.consumer_session_timeout, Duration::from_secs(45));
        assert_eq!(g.consumer_heartbeat_interval, Duration::from_secs(5));
        assert_eq!(g.consumer_assignors, vec!["uniform", "range"]);

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("r.toml");
        std::fs::write(
            &file,
            "[groups]\noffsets_partitions = 4\nmax_size = 10\nconsumer_assignors = [\"range\"]\n",
        )
        .expect("write");
        let args = ServeArgs {
            config: Some(file),
            ..Default::default()
        };
        let cfg = Config::load_from(&args, env_none()).expect("load");
        assert_eq!(cfg.groups.offsets_partitions, 4);
        assert_eq!(cfg.groups.max_size, Some(10));
        assert_eq!(cfg.groups.consumer_assignors, vec!["range"]);

        // Environment: RIVULET_GROUPS__* (with a private prefix so tests do not race).
        std::env::set_var(
            "RIVULET_TEST_GROUPS_A_GROUPS__MIN_SESSION_TIMEOUT_MS",
            "1000",
        );
        std::env::set_var(
            "RIVULET_TEST_GROUPS_A_GROUPS__OFFSETS_REPLICATION_FACTOR",
            "1",
        );
        let cfg = Config::load_from(
            &ServeArgs::default(),
            Env::prefixed("RIVULET_TEST_GROUPS_A_").split("__"),
        )
        .expect("env");
        assert_eq!(cfg.groups.min_session_timeout_ms, 1000);
        assert_eq!(cfg.groups.offsets_replication_factor, 1);
    }

    #[test]
    fn groups_table_is_validated() {
        let bad = [
            "offsets_partitions = 0",
            "offsets_replication_factor = 0",
            "min_session_timeout_ms = 10000\nmax_session_timeout_ms = 9000",
            "max_size = 0",
            "consumer_heartbeat_interval_ms = 50000",
            "consumer_assignors = []",
            "consumer_assignors = [\"sticky\"]",
            "no_such_key = 1",
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        for (i, body) in bad.iter().enumerate() {
            let file = dir.path().join(format!("g{i}.toml"));
            std::fs::write(&file, format!("[groups]\n{body}\n")).expect("write");
            let args = ServeArgs {
                config: Some(file),
                ..Default::default()
            };
            let err = Config::load_from(&args, env_none()).expect_err(body);
            let msg = format!("{err:#}");
            assert!(
                msg.contains("groups") || msg.contains("no_such_key"),
                "{body}: {msg}"
            );
        }
    }

    #[test]
    fn admin_endpoint_is_on_by_default_and_can_be_moved_or_disabled() {
        let cfg = Config::load_from(&ServeArgs::default(), env_none()).expect("defaults");
        assert_eq!(
            cfg.admin_listen_addr().expect("addr"),
            Some("127.0.0.1:9644".parse().expect("addr"))
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("r.toml");
        std::fs::write(&file, "[admin]\nlisten = \"off\"\n").expect("write");
        let from_file = ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        };
        let cfg = Config::load_from(&from_file, env_none()).expect("load");
        assert_eq!(cfg.admin_listen_addr().expect("off"), None);
        let flag = ServeArgs {
            config: Some(file),
            admin: AdminArgs {
                admin_listen: Some("127.0.0.1:19644".into()),
            },
            ..Default::default()
        };
        let cfg = Config::load_from(&flag, env_none()).expect("load");
        assert_eq!(
            cfg.admin_listen_addr().expect("addr").map(|a| a.port()),
            Some(19644)
        );
        let bad = ServeArgs {
            admin: AdminArgs {
                admin_listen: Some("localhost".into()),
            },
            ..Default::default()
        };
        let err = Config::load_from(&bad, env_none()).expect_err("bad address");
        assert!(format!("{err:#}").contains("admin.listen"), "{err:#}");
    }

    #[test]
    fn bad_listen_is_an_error() {
        let args = ServeArgs {
            listen: Some("nonsense".into()),
            ..Default::default()
        };
        assert!(Config::load_from(&args, env_none()).is_err());
    }
}
