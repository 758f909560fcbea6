//! `rivulet bench produce|consume`: a load generator in the manner of Kafka's
//! `kafka-producer-perf-test` and `kafka-consumer-perf-test`, driving a broker through
//! librdkafka like any other client.
//!
//! - `bench produce` sends fixed-size random records as fast as allowed (or paced by a token
//!   bucket at `--rate`), timestamps each at enqueue, and measures latency to its delivery
//!   report in an HDR histogram.
//! - `bench consume` reads records from the beginning of every partition with a manually
//!   assigned consumer and large fetches.
//!
//! Both print periodic progress to stderr, a human summary to stderr, and one JSON line to
//! stdout (and appended to `--json PATH`). MB means 1,000,000 bytes throughout.

use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    error::RDKafkaErrorCode,
    metadata::Metadata,
    types::RDKafkaRespErr,
};

use super::common::{
    client_creation_error, fetch_metadata, metadata_client, validate_topic_name, CliContext,
    ClientArgs,
};

pub mod consume;
mod pacer;
pub mod produce;
mod report;

/// `rivulet bench ...`
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The bench subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Measure producer throughput and latency (like kafka-producer-perf-test).
    Produce(produce::BenchProduceArgs),
    /// Measure consumer throughput from the beginning of a topic (like kafka-consumer-perf-test).
    Consume(consume::BenchConsumeArgs),
}

/// Runs a bench subcommand.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Produce(produce_args) => produce::run(args.client, produce_args).await,
        BenchCommand::Consume(consume_args) => consume::run(args.client, consume_args).await,
    }
}

/// Parses a count, allowing `_` or `,` as digit separators (`1_000_000`) and k/m suffixes.
pub(crate) fn parse_count(s: &str) -> Result<u64, String> {
    let cleaned: String = s
        .trim()
        .chars()
        .filter(|c| *c != '_' && *c != ',')
        .collect();
    let lower = cleaned.to_ascii_lowercase();
    let (digits, multiplier) = if let Some(d) = lower.strip_suffix('k') {
        (d, 1_000)
    } else if let Some(d) = lower.strip_suffix('m') {
        (d, 1_000_000)
    } else {
        (lower.as_str(), 1)
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("expected a whole number such as 5000, 1_000_000 or 1m, got `{s}`"))
}

fn topic_in(metadata: &Metadata, topic: &str) -> Option<usize> {
    let found = metadata.topics().iter().find(|t| t.name() == topic)?;
    match found.error() {
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => None,
        _ if found.partitions().is_empty() => None,
        _ => Some(found.partitions().len()),
    }
}

/// Makes sure `topic` exists, creating it with `partitions` partitions if it does not and a
/// count was given. Returns the partition count.
pub(crate) async fn ensure_topic(
    client: &ClientArgs,
    topic: &str,
    partitions: Option<i32>,
) -> anyhow::Result<usize> {
    validate_topic_name(topic)?;
    let consumer = metadata_client(client)?;
    let metadata = fetch_metadata(&consumer, &client.bootstrap, Some(topic))?;
    if let Some(count) = topic_in(&metadata, topic) {
        if let Some(wanted) = partitions {
            if wanted as usize != count {
                eprintln!(
                    "note: topic `{topic}` already exists with {count} partition(s); --partitions {wanted} is ignored"
                );
            }
        }
        return Ok(count);
    }
    let Some(wanted) = partitions else {
        bail!(
            "topic `{topic}` does not exist: pass --partitions N to create it, or run `rivulet topic create {topic}`"
        );
    };
    let admin: AdminClient<CliContext> = client
        .config("rivulet-bench")
        .create_with_context(CliContext::default())
        .map_err(client_creation_error)?;
    let new_topic = NewTopic::new(topic, wanted, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics([&new_topic], &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => bail!("could not create topic `{topic}`: {code}"),
        }
    }
    eprintln!("Created topic `{topic}` with {wanted} partition(s).");

    // Wait until every partition has a leader, so the first records do not pay for that.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let metadata = fetch_metadata(&consumer, &client.bootstrap, Some(topic))?;
        let ready = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .is_some_and(|t| {
                t.partitions().len() == wanted as usize
                    && t.partitions()
                        .iter()
                        .all(|p| p.leader() >= 0 && p.error().is_none())
            });
        if ready {
            return Ok(wanted as usize);
        }
        if std::time::Instant::now() > deadline {
            bail!("topic `{topic}` was created but its partitions have no leader after 15s; check the broker's log");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Prints a progress line for a window of a bench run.
pub(crate) fn progress_line(
    elapsed: Duration,
    total: u64,
    window_records: u64,
    window_bytes: u64,
    window: Duration,
    latency: Option<(f64, f64)>,
) -> String {
    let secs = window.as_secs_f64().max(1e-9);
    let mut line = format!(
        "{:>7.1}s {:>12} records {:>10.0} records/s {:>9.2} MB/s",
        elapsed.as_secs_f64(),
        total,
        window_records as f64 / secs,
        window_bytes as f64 / 1e6 / secs,
    );
    if let Some((avg, max)) = latency {
        line.push_str(&format!("  latency avg {avg:.1} ms, max {max:.1} ms"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(parse_count("5000"), Ok(5000));
        assert_eq!(parse_count("1_000_000"), Ok(1_000_000));
        assert_eq!(parse_count("1,000"), Ok(1_000));
        assert_eq!(parse_count("10k"), Ok(10_000));
        assert_eq!(parse_count("2M"), Ok(2_000_000));
        assert_eq!(parse_count("0"), Ok(0));
        assert!(parse_count("-1").is_err());
        assert!(parse_count("1.5").is_err());
        assert!(parse_count("lots").is_err());
        assert!(parse_count("").is_err());
    }

    #[test]
    fn progress_lines() {
        let line = progress_line(
            Duration::from_secs(4),
            20_000,
            10_000,
            10_240_000,
            Duration::from_secs(2),
            Some((1.24, 7.5)),
        );
        assert!(line.contains("5000 records/s"), "{line}");
        assert!(line.contains("5.12 MB/s"), "{line}");
        assert!(line.contains("latency avg 1.2 ms, max 7.5 ms"), "{line}");
    }
}
