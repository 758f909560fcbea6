//! Pieces shared by every client subcommand: the `--bootstrap` flag, the librdkafka client
//! context that keeps librdkafka's chatter out of the user's terminal, and the errors that tell
//! the user what to do next.

use std::{
    io::{self, Write},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _};
use parking_lot::Mutex;
use rdkafka::{
    client::ClientContext,
    config::{ClientConfig, RDKafkaLogLevel},
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    error::{KafkaError, RDKafkaErrorCode},
    metadata::{Metadata, MetadataTopic},
    types::RDKafkaRespErr,
};

/// How long a client command waits for the first answer from a broker.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to find a broker. Shared by every client subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Broker to connect to (HOST:PORT; several may be given separated by commas).
    #[arg(
        long,
        global = true,
        env = "RIVULET_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT"
    )]
    pub bootstrap: String,
}

impl ClientArgs {
    /// A librdkafka configuration pointing at the bootstrap broker(s).
    pub(crate) fn config(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", client_id)
            // Our context forwards librdkafka's log lines to `tracing`; let it see everything
            // and let the tracing filter decide.
            .set_log_level(RDKafkaLogLevel::Debug);
        config
    }
}

/// Kafka's `acks` setting, as the user spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Acks {
    /// Wait for every in-sync replica (`acks=-1`).
    #[value(name = "all", alias = "-1")]
    All,
    /// Wait for the partition leader only.
    #[value(name = "1")]
    Leader,
    /// Do not wait for any acknowledgement.
    #[value(name = "0")]
    None,
}

impl Acks {
    /// The value of librdkafka's `acks` property.
    pub(crate) fn as_config(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "1",
            Acks::None => "0",
        }
    }
}

/// Producer-side compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The value of librdkafka's `compression.type` property.
    pub(crate) fn as_config(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Parses `key=value` (used by `--config` and `-X`).
pub(crate) fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

/// Turns a failure to create a librdkafka client into an actionable message.
pub(crate) fn client_creation_error(err: KafkaError) -> anyhow::Error {
    match &err {
        KafkaError::ClientConfig(_, desc, key, value) => {
            if key == "compression.codec" || key == "compression.type" {
                anyhow!(
                    "compression `{value}` is not available in this build of librdkafka \
                     ({desc}); use none, gzip, snappy or lz4"
                )
            } else {
                anyhow!("invalid client setting {key}={value}: {desc}")
            }
        }
        _ => anyhow!("could not create the Kafka client: {err}"),
    }
}

/// A librdkafka client context that routes librdkafka's logs to `tracing` at low levels (so a
/// down broker does not flood the terminal) and remembers the last error it reported, so that
/// our own error messages can quote it.
#[derive(Debug, Default)]
pub struct CliContext {
    last_error: Mutex<Option<String>>,
}

impl CliContext {
    /// The last error librdkafka reported, if any.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }
}

impl ClientContext for CliContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(target: "librdkafka", "{fac} {log_message}")
            }
            RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => {
                tracing::info!(target: "librdkafka", "{fac} {log_message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::debug!(target: "librdkafka", "{fac} {log_message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::trace!(target: "librdkafka", "{fac} {log_message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::Fatal)) {
            tracing::error!(target: "librdkafka", "fatal client error: {reason}");
        } else {
            tracing::debug!(target: "librdkafka", "{error}: {reason}");
        }
        // "1/1 brokers are down" says less than the connection error that preceded it.
        let all_down = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        );
        let mut last = self.last_error.lock();
        if !all_down || last.is_none() {
            *last = Some(reason.to_string());
        }
    }
}

impl ConsumerContext for CliContext {}

/// "could not reach a broker at …" with the last librdkafka error, if any.
pub(crate) fn unreachable_error(
    bootstrap: &str,
    ctx: &CliContext,
    err: &KafkaError,
) -> anyhow::Error {
    let detail = ctx.last_error().unwrap_or_else(|| err.to_string());
    anyhow!(
        "could not reach a broker at {bootstrap} within {}s: is `rivulet serve` running? \
         (client said: {detail})",
        CONNECT_TIMEOUT.as_secs()
    )
}

/// A consumer-type handle without a group, for metadata and watermarks: unlike a producer-type
/// handle it never asks the broker to auto-create the topic it looks up.
pub(crate) fn metadata_client(client: &ClientArgs) -> anyhow::Result<BaseConsumer<CliContext>> {
    client
        .config("rivulet-cli")
        .set("allow.auto.create.topics", "false")
        .create_with_context(CliContext::default())
        .map_err(client_creation_error)
}

/// Fetches cluster metadata (all topics, or one), turning a failure into "is the broker running?".
pub(crate) fn fetch_metadata(
    consumer: &BaseConsumer<CliContext>,
    bootstrap: &str,
    topic: Option<&str>,
) -> anyhow::Result<Metadata> {
    consumer
        .fetch_metadata(topic, CONNECT_TIMEOUT)
        .map_err(|err| {
            serve_events(consumer);
            unreachable_error(bootstrap, consumer.context(), &err)
        })
}

/// Lets the consumer handle its queued log and error events (so its context learns why a
/// request failed). Records that arrive meanwhile are dropped: only call this when failing.
pub(crate) fn serve_events(consumer: &BaseConsumer<CliContext>) {
    let until = Instant::now() + Duration::from_millis(100);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let _ = consumer.poll(left);
    }
}

/// The metadata of one topic, or an error saying how to create it.
pub(crate) fn existing_topic<'m>(
    metadata: &'m Metadata,
    topic: &str,
) -> anyhow::Result<&'m MetadataTopic> {
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        bail!("topic `{topic}` does not exist: create it with `rivulet topic create {topic}`");
    };
    match found.error() {
        None => {}
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {
            bail!("topic `{topic}` does not exist: create it with `rivulet topic create {topic}`")
        }
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION) => {
            bail!("`{topic}` is not a valid topic name: {}", TOPIC_NAME_RULES)
        }
        Some(other) => {
            // Leader elections and the like are transient: carry on if partitions are known.
            if found.partitions().is_empty() {
                bail!(
                    "the broker could not describe topic `{topic}`: {}; try again in a moment",
                    RDKafkaErrorCode::from(other)
                );
            }
            tracing::warn!("topic `{topic}`: {}", RDKafkaErrorCode::from(other));
        }
    }
    if found.partitions().is_empty() {
        bail!("topic `{topic}` has no partitions yet; try again in a moment");
    }
    Ok(found)
}

/// Checks a `--partition` value against the topic's partition count.
pub(crate) fn check_partition(topic: &MetadataTopic, partition: i32) -> anyhow::Result<()> {
    let count = topic.partitions().len() as i32;
    if partition < 0 || partition >= count {
        bail!(
            "topic `{}` has {count} partition(s), numbered 0 to {}: --partition {partition} does not exist",
            topic.name(),
            count - 1
        );
    }
    Ok(())
}

/// Kafka's topic naming rules, for error messages.
pub(crate) const TOPIC_NAME_RULES: &str =
    "use 1 to 249 characters among letters, digits, '.', '_' and '-' (and not `.` or `..`)";

/// Checks a topic name against Kafka's rules before bothering the broker.
pub(crate) fn validate_topic_name(name: &str) -> anyhow::Result<()> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > 249 || !valid_chars || name == "." || name == ".." {
        bail!("`{name}` is not a valid topic name: {TOPIC_NAME_RULES}");
    }
    Ok(())
}

/// Sets a flag when the user presses Ctrl-C; a second Ctrl-C exits at once.
/// Must be called from inside the Tokio runtime.
pub(crate) fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted twice: exiting without waiting");
                std::process::exit(130);
            }
        }
    });
    stop
}

/// Runs blocking client code on Tokio's blocking pool (so Ctrl-C keeps being noticed) and
/// returns its result.
pub(crate) async fn run_blocking<T, F>(f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> anyhow::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .context("the worker thread panicked")?
}

/// Writes to stdout. A closed stdout (the reader of a pipe such as `| head` has seen enough) is
/// not an error: the output is dropped silently.
pub(crate) fn write_stdout(text: &str) {
    let mut out = io::stdout().lock();
    if let Err(err) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if err.kind() != io::ErrorKind::BrokenPipe {
            tracing::warn!("could not write to stdout: {err}");
        }
    }
}

/// `println!` through [`write_stdout`], so that `rivulet ... | head` does not panic.
macro_rules! outln {
    () => {
        $crate::cli::common::write_stdout("\n")
    };
    ($($arg:tt)*) => {
        $crate::cli::common::write_stdout(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// Formats a byte count with decimal units (MB = 1,000,000 bytes).
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Renders rows as left-aligned columns under a header, two spaces apart.
pub(crate) fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: &mut dyn Iterator<Item = &str>| {
        let mut line = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < widths.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_row(&mut headers.iter().copied());
    for row in rows {
        push_row(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_parsing() {
        assert_eq!(
            parse_key_value("retention.ms=1000").unwrap(),
            ("retention.ms".to_string(), "1000".to_string())
        );
        assert_eq!(
            parse_key_value("a=b=c").unwrap(),
            ("a".to_string(), "b=c".to_string())
        );
        assert_eq!(
            parse_key_value("a=").unwrap(),
            ("a".to_string(), String::new())
        );
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders").is_ok());
        assert!(validate_topic_name("a.b_c-D9").is_ok());
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name(".").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("with space").is_err());
        assert!(validate_topic_name("slash/no").is_err());
    }

    #[test]
    fn bytes_are_decimal() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_000), "1.0 kB");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(2_000_000_000), "2.0 GB");
    }

    #[test]
    fn table_alignment() {
        let table = render_table(
            &["NAME", "N"],
            &[
                vec!["a".into(), "1".into()],
                vec!["longer".into(), "22".into()],
            ],
        );
        assert_eq!(table, "NAME    N\na       1\nlonger  22\n");
    }
}
