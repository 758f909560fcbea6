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
//! ```
//! Nested keys come from the environment with `__`: `RIVULET_LOG__RETENTION_MS=3600000`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
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
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            cache_bytes: 256 << 20,
            write_buffer_bytes_max: 256 << 20,
            journal_bytes_max: 1 << 30,
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
    /// Longest a fetch may wait, whatever the client asks.
    pub fetch_wait_max_ms: u64,
    /// How often retention runs.
    pub retention_check_interval_ms: u64,
    /// Defaults for topic configs.
    pub log: TopicDefaults,
    /// Storage engine settings.
    pub storage: StorageSettings,
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
            fetch_wait_max_ms: 30_000,
            retention_check_interval_ms: 30_000,
            log: TopicDefaults::default(),
            storage: StorageSettings::default(),
        }
    }
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
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match &args.config {
            Some(path) => {
                if !path.exists() {
                    bail!(
                        "config file {} does not exist; pass an existing file to --config or drop the flag",
                        path.display()
                    );
                }
                fig = fig.merge(Toml::file(path));
            }
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                fig = fig.merge(Toml::file(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        let fig = fig.merge(env).merge(Serialized::defaults(args));
        let cfg: Config = fig.extract().map_err(|e| {
            anyhow::anyhow!(
                "invalid configuration: {e}. See the Configuration section of README.md"
            )
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
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
        self.log
            .validate(&Default::default())
            .map_err(|e| anyhow::anyhow!("invalid [log] defaults: {e}"))?;
        Ok(())
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
    fn bad_listen_is_an_error() {
        let args = ServeArgs {
            listen: Some("nonsense".into()),
            ..Default::default()
        };
        assert!(Config::load_from(&args, env_none()).is_err());
    }
}
