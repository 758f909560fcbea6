//! `rivulet bench produce`: producer throughput and latency.
//!
//! A `ThreadedProducer` sends `--records` random values of `--record-bytes` each. Every record
//! carries its enqueue time (nanoseconds since the run's origin) as its delivery opaque, so
//! latency is enqueue → delivery report, recorded in an HDR histogram by librdkafka's
//! delivery-report thread. With `--rate` the sender is paced by a token bucket
//! ([`super::pacer`]), so latency is measured at that offered load.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::bail;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rand::{distributions::Alphanumeric, Rng};
use rdkafka::{
    client::ClientContext,
    config::RDKafkaLogLevel,
    error::{KafkaError, RDKafkaErrorCode},
    message::DeliveryResult,
    producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer},
};

use super::{
    ensure_topic,
    pacer::Pacer,
    parse_count, progress_line,
    report::{latency_histogram, BenchReport, Latency},
};
use crate::cli::common::{
    client_creation_error, parse_key_value, run_blocking, stop_on_ctrl_c, unreachable_error, Acks,
    CliContext, ClientArgs, Compression, CONNECT_TIMEOUT,
};

/// The delivery opaque of warm-up records, which are not measured.
const WARMUP: usize = usize::MAX;

/// How long librdkafka retries a record before failing it.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(120);

/// `rivulet bench produce`
#[derive(Debug, Clone, clap::Args)]
pub struct BenchProduceArgs {
    /// Topic to write to.
    #[arg(long)]
    pub topic: String,
    /// Number of records to send (`1_000_000`, `1m` and `500k` are accepted).
    #[arg(long, default_value = "1000000", value_parser = parse_count)]
    pub records: u64,
    /// Size of each record's value in bytes (records have no key).
    #[arg(long, default_value = "1024", value_parser = parse_count)]
    pub record_bytes: u64,
    /// How many replicas must acknowledge each record.
    #[arg(long, value_enum, default_value_t = Acks::All)]
    pub acks: Acks,
    /// Target records per second (0 = as fast as possible).
    #[arg(long, default_value = "0", value_parser = parse_count)]
    pub rate: u64,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: Option<i32>,
    /// Also append the JSON result line to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Use the idempotent producer (default: true with --acks all, false otherwise).
    #[arg(long, value_name = "true|false")]
    pub idempotence: Option<bool>,
    /// Compression codec for record batches.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// librdkafka `linger.ms`: how long a batch may wait for more records.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// librdkafka `batch.size`: the largest batch in bytes.
    #[arg(long, default_value = "1000000", value_parser = parse_count)]
    pub batch_bytes: u64,
    /// Extra librdkafka producer setting, e.g. `-X socket.nagle.disable=true` (repeatable).
    #[arg(long = "producer-config", short = 'X', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub producer_config: Vec<(String, String)>,
    /// Seconds between progress lines on stderr.
    #[arg(long, default_value_t = 2.0)]
    pub report_every: f64,
}

/// What the delivery-report thread accumulates.
#[derive(Debug)]
struct Stats {
    hist: Histogram<u64>,
    warmup_acked: u64,
    warmup_error: Option<String>,
    /// When the last measured delivery report arrived, since `origin`.
    last_delivery: Duration,
    acked: u64,
    failed: u64,
    first_error: Option<String>,
    window_acked: u64,
    window_latency_sum_us: u64,
    window_latency_max_us: u64,
}

#[derive(Debug)]
struct BenchContext {
    cli: CliContext,
    origin: Instant,
    stats: Mutex<Stats>,
}

impl ClientContext for BenchContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.cli.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.cli.error(error, reason);
    }
}

impl ProducerContext for BenchContext {
    /// Enqueue time, in nanoseconds since `origin`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        let now_ns = self.origin.elapsed().as_nanos() as u64;
        let latency_us = (now_ns.saturating_sub(sent_ns as u64) / 1_000).max(1);
        let mut stats = self.stats.lock();
        if sent_ns == WARMUP {
            match result {
                Ok(_) => stats.warmup_acked += 1,
                Err((err, _)) => stats.warmup_error = Some(err.to_string()),
            }
            return;
        }
        stats.last_delivery = Duration::from_nanos(now_ns);
        match result {
            Ok(_) => {
                stats.hist.saturating_record(latency_us);
                stats.acked += 1;
                stats.window_acked += 1;
                stats.window_latency_sum_us += latency_us;
                stats.window_latency_max_us = stats.window_latency_max_us.max(latency_us);
            }
            Err((err, _)) => {
                stats.failed += 1;
                if stats.first_error.is_none() {
                    stats.first_error = Some(match err.rdkafka_error_code() {
                        Some(RDKafkaErrorCode::MessageTimedOut) => {
                            format!("no acknowledgement within {}s", MESSAGE_TIMEOUT.as_secs())
                        }
                        Some(code) => code.to_string(),
                        None => err.to_string(),
                    });
                }
            }
        }
    }
}

/// Runs `rivulet bench produce`.
pub(crate) async fn run(client: ClientArgs, args: BenchProduceArgs) -> anyhow::Result<()> {
    if args.records == 0 {
        bail!("--records must be at least 1");
    }
    if args.report_every <= 0.0 || !args.report_every.is_finite() {
        bail!("--report-every must be a positive number of seconds");
    }
    let idempotence = args.idempotence.unwrap_or(args.acks == Acks::All);
    if idempotence && args.acks != Acks::All {
        bail!("--idempotence true requires --acks all");
    }
    let partitions = ensure_topic(&client, &args.topic, args.partitions).await?;
    let stop = stop_on_ctrl_c();
    run_blocking(move || produce(&client, &args, idempotence, partitions, &stop)).await
}

/// How many distinct random values the producer cycles through: about 4 MB of them (at most
/// 1,024), so that compression cannot simply match each value against the previous one.
pub(crate) fn payload_pool_size(record_bytes: usize) -> usize {
    (4_000_000 / record_bytes.max(1)).clamp(1, 1024)
}

fn random_payloads(record_bytes: usize) -> Vec<Vec<u8>> {
    let mut rng = rand::thread_rng();
    (0..payload_pool_size(record_bytes))
        .map(|_| {
            (&mut rng)
                .sample_iter(&Alphanumeric)
                .take(record_bytes)
                .collect()
        })
        .collect()
}

/// Sends one unmeasured record to every partition and waits for them, so that connecting,
/// learning leaders and acquiring an idempotent producer id (librdkafka retries that on a
/// 500 ms timer) happen before the clock starts.
fn warm_up(
    producer: &ThreadedProducer<BenchContext>,
    ctx: &BenchContext,
    client: &ClientArgs,
    topic: &str,
    partitions: usize,
    payload: &[u8],
) -> anyhow::Result<()> {
    for partition in 0..partitions as i32 {
        let record = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, WARMUP)
            .payload(payload)
            .partition(partition);
        if let Err((err, _)) = producer.send(record) {
            if err.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge) {
                bail!(
                    "records of {} bytes exceed librdkafka's message.max.bytes: pass e.g. \
                     -X message.max.bytes={} (the broker's max.message.bytes applies too)",
                    payload.len(),
                    payload.len() + 1024
                );
            }
            bail!("could not enqueue a warm-up record: {err}");
        }
    }
    let flushed = producer.flush(Duration::from_secs(30));
    let stats = ctx.stats.lock();
    if let Some(err) = &stats.warmup_error {
        bail!(
            "the broker at {} did not accept a warm-up record: {err}",
            client.bootstrap
        );
    }
    if flushed.is_err() || stats.warmup_acked < partitions as u64 {
        bail!(
            "warm-up records were not acknowledged within 30s; is the broker at {} healthy? (client said: {})",
            client.bootstrap,
            ctx.cli.last_error().unwrap_or_else(|| "nothing".into())
        );
    }
    Ok(())
}

fn produce(
    client: &ClientArgs,
    args: &BenchProduceArgs,
    idempotence: bool,
    partitions: usize,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let context = BenchContext {
        cli: CliContext::default(),
        origin: Instant::now(),
        stats: Mutex::new(Stats {
            hist: latency_histogram(),
            warmup_acked: 0,
            warmup_error: None,
            last_delivery: Duration::ZERO,
            acked: 0,
            failed: 0,
            first_error: None,
            window_acked: 0,
            window_latency_sum_us: 0,
            window_latency_max_us: 0,
        }),
    };
    let mut config = client.config("rivulet-bench");
    config
        .set("acks", args.acks.as_config())
        .set("enable.idempotence", idempotence.to_string())
        .set("compression.type", args.compression.as_config())
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", args.batch_bytes.to_string())
        .set("batch.num.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .set(
            "message.timeout.ms",
            MESSAGE_TIMEOUT.as_millis().to_string(),
        );
    for (key, value) in &args.producer_config {
        config.set(key, value);
    }
    let producer: ThreadedProducer<BenchContext> = config
        .create_with_context(context)
        .map_err(client_creation_error)?;
    let ctx = Arc::clone(producer.context());
    // Connect (and learn the partition leaders) before the clock starts.
    producer
        .client()
        .fetch_metadata(Some(&args.topic), CONNECT_TIMEOUT)
        .map_err(|err| unreachable_error(&client.bootstrap, &ctx.cli, &err))?;

    let payloads = random_payloads(args.record_bytes as usize);
    warm_up(
        &producer,
        &ctx,
        client,
        &args.topic,
        partitions,
        &payloads[0],
    )?;
    let rate_text = if args.rate == 0 {
        "unlimited rate".to_string()
    } else {
        format!("{} records/s", args.rate)
    };
    eprintln!(
        "Producing {} records of {} bytes to `{}` ({} partition{}, acks={}, idempotence {}, {}, {rate_text}; after {partitions} unmeasured warm-up record(s))",
        args.records,
        args.record_bytes,
        args.topic,
        partitions,
        if partitions == 1 { "" } else { "s" },
        args.acks.as_config(),
        if idempotence { "on" } else { "off" },
        match args.compression {
            Compression::None => "no compression".to_string(),
            other => format!("{} compression", other.as_config()),
        },
    );

    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let start = ctx.origin.elapsed();
    let reporter = {
        let ctx = Arc::clone(&ctx);
        let done = Arc::clone(&done);
        let record_bytes = args.record_bytes;
        let every = Duration::from_secs_f64(args.report_every);
        thread::spawn(move || {
            let mut last = Instant::now();
            while !done.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(50));
                if last.elapsed() < every {
                    continue;
                }
                let window = last.elapsed();
                last = Instant::now();
                let (total, n, sum, max) = {
                    let mut s = ctx.stats.lock();
                    let out = (
                        s.acked,
                        s.window_acked,
                        s.window_latency_sum_us,
                        s.window_latency_max_us,
                    );
                    s.window_acked = 0;
                    s.window_latency_sum_us = 0;
                    s.window_latency_max_us = 0;
                    out
                };
                let latency =
                    (n > 0).then(|| (sum as f64 / n as f64 / 1000.0, max as f64 / 1000.0));
                eprintln!(
                    "{}",
                    progress_line(
                        ctx.origin.elapsed() - start,
                        total,
                        n,
                        n * record_bytes,
                        window,
                        latency
                    )
                );
            }
        })
    };

    let mut pacer = (args.rate > 0).then(|| Pacer::new(args.rate as f64));
    let mut interrupted = false;
    let mut send_error = None;
    'records: for i in 0..args.records {
        let payload = &payloads[i as usize % payloads.len()];
        if let Some(pacer) = pacer.as_mut() {
            loop {
                let now = ctx.origin.elapsed() - start;
                if pacer.try_take(now) {
                    break;
                }
                thread::sleep(pacer.wait(now));
            }
        }
        loop {
            if stop.load(Ordering::Relaxed) {
                interrupted = true;
                break 'records;
            }
            let sent_ns = ctx.origin.elapsed().as_nanos() as usize;
            let record = BaseRecord::<(), [u8], usize>::with_opaque_to(&args.topic, sent_ns)
                .payload(&payload[..]);
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    thread::sleep(Duration::from_micros(200));
                }
                Err((err, _)) => {
                    send_error = Some(err);
                    break 'records;
                }
            }
        }
        sent.fetch_add(1, Ordering::Relaxed);
    }
    let send_phase = ctx.origin.elapsed() - start;
    if interrupted {
        eprintln!("Interrupted: waiting for the records already sent to be acknowledged...");
    }
    let flushed = producer.flush(MESSAGE_TIMEOUT + Duration::from_secs(30));
    done.store(true, Ordering::Relaxed);
    let _ = reporter.join();

    let sent = sent.load(Ordering::Relaxed);
    let (elapsed, acked, failed, first_error, latency) = {
        let s = ctx.stats.lock();
        (
            // The clock stops at the last delivery report, not when `flush` returns: rdkafka's
            // flush notices completion only on a 100 ms polling tick.
            s.last_delivery.saturating_sub(start),
            s.acked,
            s.failed,
            s.first_error.clone(),
            Latency::from_micros(&s.hist),
        )
    };
    if let Some(err) = send_error {
        bail!("could not enqueue a record after {sent}: {err}");
    }
    if let Err(err) = flushed {
        bail!(
            "{} record(s) were still unacknowledged after waiting {}s ({err}); is the broker at {} still running? (client said: {})",
            sent.saturating_sub(acked + failed),
            (MESSAGE_TIMEOUT + Duration::from_secs(30)).as_secs(),
            client.bootstrap,
            ctx.cli.last_error().unwrap_or_else(|| "nothing".into())
        );
    }
    let report = BenchReport::new(
        "produce",
        &args.topic,
        acked,
        args.record_bytes,
        acked * args.record_bytes,
        elapsed.as_secs_f64(),
        Some(args.acks.as_config()),
        Some(args.rate),
        latency,
    );
    eprintln!("{}", report.human());
    if args.rate > 0 {
        let achieved = sent as f64 / send_phase.as_secs_f64().max(1e-9);
        eprintln!(
            "offered load: {achieved:.0} records/s (target {})",
            args.rate
        );
        if achieved < args.rate as f64 * 0.98 {
            eprintln!(
                "warning: the producer could not keep up with --rate {} (the broker or this machine is saturated); the latencies above are for {achieved:.0} records/s",
                args.rate
            );
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {sent} records failed (first error: {}); no JSON line was written",
            first_error.unwrap_or_default()
        );
    }
    if interrupted {
        bail!(
            "interrupted after {sent} of {} records; no JSON line was written",
            args.records
        );
    }
    report.emit(args.json.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_pool() {
        assert_eq!(payload_pool_size(0), 1024);
        assert_eq!(payload_pool_size(100), 1024);
        assert_eq!(payload_pool_size(1024), 1024);
        assert_eq!(payload_pool_size(100_000), 40);
        assert_eq!(payload_pool_size(10_000_000), 1);
        let pool = random_payloads(64);
        assert_eq!(pool.len(), 1024);
        assert!(pool
            .iter()
            .all(|p| p.len() == 64 && p.iter().all(u8::is_ascii_alphanumeric)));
        assert_ne!(pool[0], pool[1]);
    }
}
