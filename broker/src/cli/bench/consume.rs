//! `rivulet bench consume`: consumer throughput, reading from the beginning of every partition
//! with a manually assigned consumer (no group) and large fetches.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::{KafkaError, RDKafkaErrorCode},
    Offset, TopicPartitionList,
};

use super::{parse_count, progress_line, report::BenchReport};
use crate::cli::common::{
    client_creation_error, existing_topic, fetch_metadata, parse_key_value, run_blocking,
    stop_on_ctrl_c, validate_topic_name, CliContext, ClientArgs, CONNECT_TIMEOUT,
};

/// `rivulet bench consume`
#[derive(Debug, Clone, clap::Args)]
pub struct BenchConsumeArgs {
    /// Topic to read.
    #[arg(long)]
    pub topic: String,
    /// Number of records to read (default: every record present when the bench starts).
    #[arg(long, value_parser = parse_count)]
    pub records: Option<u64>,
    /// Also append the JSON result line to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// librdkafka `fetch.max.bytes` and `max.partition.fetch.bytes`.
    #[arg(long, default_value = "52428800", value_parser = parse_count)]
    pub fetch_bytes: u64,
    /// Extra librdkafka consumer setting, e.g. `-X fetch.wait.max.ms=50` (repeatable).
    #[arg(long = "consumer-config", short = 'X', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub consumer_config: Vec<(String, String)>,
    /// Give up when no record arrives for this many seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
    /// Seconds between progress lines on stderr.
    #[arg(long, default_value_t = 2.0)]
    pub report_every: f64,
}

/// Runs `rivulet bench consume`.
pub(crate) async fn run(client: ClientArgs, args: BenchConsumeArgs) -> anyhow::Result<()> {
    validate_topic_name(&args.topic)?;
    if args.report_every <= 0.0 || !args.report_every.is_finite() {
        bail!("--report-every must be a positive number of seconds");
    }
    let stop = stop_on_ctrl_c();
    run_blocking(move || consume(&client, &args, &stop)).await
}

fn consume(client: &ClientArgs, args: &BenchConsumeArgs, stop: &AtomicBool) -> anyhow::Result<()> {
    let mut config = client.config("rivulet-bench");
    config
        // Required by librdkafka for `assign`; nothing is ever committed.
        .set("group.id", "rivulet-bench-consume")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false")
        .set("fetch.max.bytes", args.fetch_bytes.to_string())
        .set("max.partition.fetch.bytes", args.fetch_bytes.to_string())
        // librdkafka drops a connection whose response exceeds this; Kafka lets a fetch response
        // exceed fetch.max.bytes by a batch, so leave generous room.
        .set(
            "receive.message.max.bytes",
            (args.fetch_bytes.saturating_mul(2) + 1_000_000)
                .min(i32::MAX as u64)
                .to_string(),
        )
        .set("queued.max.messages.kbytes", "262144")
        .set("fetch.wait.max.ms", "100")
        .set("check.crcs", "false");
    for (key, value) in &args.consumer_config {
        config.set(key, value);
    }
    let consumer: BaseConsumer<CliContext> = config
        .create_with_context(CliContext::default())
        .map_err(client_creation_error)?;
    let metadata = fetch_metadata(&consumer, &client.bootstrap, Some(&args.topic))?;
    let topic = existing_topic(&metadata, &args.topic)?;
    let mut assignment = TopicPartitionList::new();
    let mut available = 0u64;
    let partitions = topic.partitions().len();
    for p in topic.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(&args.topic, p.id(), CONNECT_TIMEOUT)
            .map_err(|e| anyhow!("could not read the offsets of partition {}: {e}", p.id()))?;
        available += (high - low).max(0) as u64;
        assignment.add_partition_offset(&args.topic, p.id(), Offset::Beginning)?;
    }
    let wanted = args.records.unwrap_or(available);
    if wanted == 0 {
        bail!(
            "topic `{}` has no records to read: fill it first, e.g. `rivulet bench produce --topic {}`",
            args.topic,
            args.topic
        );
    }
    if wanted > available {
        eprintln!(
            "note: `{}` holds {available} records now; waiting for {wanted} (gives up after {}s without records)",
            args.topic, args.timeout_secs
        );
    }
    eprintln!(
        "Consuming {wanted} records from `{}` ({partitions} partition{}, fetches of up to {} bytes)",
        args.topic,
        if partitions == 1 { "" } else { "s" },
        args.fetch_bytes
    );

    let start = Instant::now();
    consumer.assign(&assignment)?;
    let every = Duration::from_secs_f64(args.report_every);
    let idle_limit = Duration::from_secs(args.timeout_secs);
    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut first_record = None;
    let mut last_record = start;
    let mut last_report = start;
    let (mut window_count, mut window_bytes) = (0u64, 0u64);
    let mut interrupted = false;
    while count < wanted {
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(msg)) => {
                let size = (msg.payload_len() + msg.key_len()) as u64;
                count += 1;
                bytes += size;
                window_count += 1;
                window_bytes += size;
                last_record = Instant::now();
                first_record.get_or_insert(last_record);
            }
            Some(Err(err)) => match err.rdkafka_error_code() {
                Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                    bail!(
                        "topic `{}` disappeared while reading it (deleted?)",
                        args.topic
                    )
                }
                _ if matches!(err, KafkaError::MessageConsumptionFatal(_)) => {
                    bail!("the consumer hit a fatal error: {err}")
                }
                _ => tracing::warn!(
                    "while consuming: {err} ({})",
                    consumer.context().last_error().unwrap_or_default()
                ),
            },
            None => {
                if last_record.elapsed() > idle_limit {
                    bail!(
                        "no records for {}s after reading {count} of {wanted}; is the broker at {} healthy? (client said: {})",
                        args.timeout_secs,
                        client.bootstrap,
                        consumer.context().last_error().unwrap_or_else(|| "nothing".into())
                    );
                }
            }
        }
        let since = last_report.elapsed();
        if since >= every {
            eprintln!(
                "{}",
                progress_line(
                    start.elapsed(),
                    count,
                    window_count,
                    window_bytes,
                    since,
                    None
                )
            );
            last_report = Instant::now();
            window_count = 0;
            window_bytes = 0;
        }
    }
    let seconds = last_record.duration_since(start).as_secs_f64();
    if interrupted {
        bail!("interrupted after {count} of {wanted} records; no JSON line was written");
    }
    let report = BenchReport::new(
        "consume",
        &args.topic,
        count,
        bytes.checked_div(count).unwrap_or(0),
        bytes,
        seconds,
        None,
        None,
        None,
    );
    eprintln!("{}", report.human());
    if let Some(first) = first_record {
        eprintln!(
            "time to first record: {:.1} ms (included above)",
            first.duration_since(start).as_secs_f64() * 1000.0
        );
    }
    report.emit(args.json.as_deref())
}
