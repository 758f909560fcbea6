//! `rivulet produce TOPIC`: sends one record per line of stdin (or of `--file`), optionally split
//! into key and value at the first `--key-separator`, and waits for every delivery report.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, IsTerminal},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use rdkafka::{
    client::ClientContext,
    config::RDKafkaLogLevel,
    error::{KafkaError, RDKafkaErrorCode},
    message::DeliveryResult,
    producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer},
};

use super::common::{
    check_partition, client_creation_error, existing_topic, fetch_metadata, human_bytes,
    metadata_client, outln, run_blocking, validate_topic_name, Acks, CliContext, ClientArgs,
    Compression,
};

/// How many delivery errors are printed one by one before we only count them.
const MAX_ERRORS_SHOWN: u64 = 10;

/// How long librdkafka keeps retrying a record before reporting it as failed.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// `rivulet produce`
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Topic to write to.
    pub topic: String,
    /// Read records from this file instead of stdin (one record per line).
    #[arg(long, short = 'f', value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Split each line at the first occurrence of SEP: the text before is the key.
    #[arg(long, short = 'k', value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Write every record to this partition (default: by key hash, or spread when keyless).
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// How many replicas must acknowledge each record.
    #[arg(long, value_enum, default_value_t = Acks::All)]
    pub acks: Acks,
    /// Compression codec for record batches.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
}

/// Splits `line` at the first `sep` into `(key, value)`; `None` if `sep` does not occur.
pub(crate) fn split_key<'a>(line: &'a [u8], sep: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    if sep.is_empty() || line.len() < sep.len() {
        return None;
    }
    let at = line.windows(sep.len()).position(|w| w == sep)?;
    Some((&line[..at], &line[at + sep.len()..]))
}

/// Removes the line terminator (`\n` or `\r\n`) that `read_until` leaves in place.
pub(crate) fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Counts deliveries and prints the first few failures as they arrive.
#[derive(Debug)]
struct ProduceContext {
    cli: CliContext,
    /// Lines read so far.
    lines: AtomicU64,
    /// Records handed to librdkafka, and their key + value bytes.
    sent: AtomicU64,
    sent_bytes: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    progress: Mutex<Option<ProgressBar>>,
}

impl ProduceContext {
    fn report_failure(&self, what: String) {
        let n = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= MAX_ERRORS_SHOWN {
            let line = if n == MAX_ERRORS_SHOWN {
                format!("error: {what} (further failures are only counted)")
            } else {
                format!("error: {what}")
            };
            match &*self.progress.lock() {
                Some(bar) => bar.suspend(|| eprintln!("{line}")),
                None => eprintln!("{line}"),
            }
        }
    }
}

impl ClientContext for ProduceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.cli.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.cli.error(error, reason);
    }
}

impl ProducerContext for ProduceContext {
    /// The line number the record came from.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, line: usize) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((err, _)) => {
                self.report_failure(format!(
                    "record from line {line} was not delivered: {}",
                    describe_error(err)
                ));
            }
        }
    }
}

fn describe_error(err: &KafkaError) -> String {
    match err.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut) => format!(
            "no acknowledgement within {}s (is the broker still running?)",
            MESSAGE_TIMEOUT.as_secs()
        ),
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => {
            "the record is larger than the broker accepts".to_string()
        }
        Some(code) => code.to_string(),
        None => err.to_string(),
    }
}

/// Runs `rivulet produce`.
pub(crate) async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    validate_topic_name(&args.topic)?;
    if args.key_separator.as_deref() == Some("") {
        bail!("--key-separator must not be empty");
    }
    let args = Arc::new(args);
    let setup_args = Arc::clone(&args);
    let (producer, reader, file_len) = run_blocking(move || setup(&setup_args)).await?;
    let ctx = Arc::clone(producer.context());

    let bar = file_len.map(|len| {
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40.cyan/blue} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .expect("valid template"),
        );
        bar
    });
    *ctx.progress.lock() = bar.clone();
    if args.file.is_none() && io::stdin().is_terminal() {
        eprintln!("Type one record per line; Ctrl-D to finish.");
    }

    // The reader may sit in a blocking read of the terminal, so Ctrl-C is handled here rather
    // than in the reading loop: stop reading, then wait for what was already sent.
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut reading = tokio::task::spawn_blocking({
        let (args, producer, stop, bar) = (
            Arc::clone(&args),
            producer.clone(),
            Arc::clone(&stop),
            bar.clone(),
        );
        move || send_lines(&args, &producer, reader, bar.as_ref(), &stop)
    });
    let interrupted = tokio::select! {
        joined = &mut reading => {
            joined.context("the reading thread panicked")??;
            false
        }
        _ = tokio::signal::ctrl_c() => {
            stop.store(true, Ordering::SeqCst);
            // A second Ctrl-C gives up on waiting for acknowledgements.
            tokio::spawn(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("interrupted twice: exiting without waiting");
                    std::process::exit(130);
                }
            });
            true
        }
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    *ctx.progress.lock() = None;
    run_blocking(move || finish(&args, &producer, started, interrupted)).await
}

type Input = (
    ThreadedProducer<ProduceContext>,
    Box<dyn BufRead + Send>,
    Option<u64>,
);

/// Opens the input, creates the producer and checks the topic (and partition) exist.
fn setup(args: &ProduceArgs) -> anyhow::Result<Input> {
    // Open the input first: a typo in --file should not wait for the broker.
    let (reader, file_len): (Box<dyn BufRead + Send>, Option<u64>) = match &args.file {
        Some(path) => {
            let file = File::open(path)
                .with_context(|| format!("could not open --file {}", path.display()))?;
            let len = file.metadata().map(|m| m.len()).ok();
            (Box::new(BufReader::with_capacity(1 << 20, file)), len)
        }
        None => (Box::new(BufReader::new(io::stdin())), None),
    };

    let metadata = fetch_metadata(
        &metadata_client(&args.client)?,
        &args.client.bootstrap,
        Some(&args.topic),
    )?;
    let topic = existing_topic(&metadata, &args.topic)?;
    if let Some(partition) = args.partition {
        check_partition(topic, partition)?;
    }

    let context = ProduceContext {
        cli: CliContext::default(),
        lines: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        sent_bytes: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        progress: Mutex::new(None),
    };
    let producer: ThreadedProducer<ProduceContext> = args
        .client
        .config("rivulet-cli")
        .set("acks", args.acks.as_config())
        .set("compression.type", args.compression.as_config())
        .set("linger.ms", "5")
        .set(
            "message.timeout.ms",
            MESSAGE_TIMEOUT.as_millis().to_string(),
        )
        .create_with_context(context)
        .map_err(client_creation_error)?;
    Ok((producer, reader, file_len))
}

/// Reads lines and sends them until the end of the input or `stop`.
fn send_lines(
    args: &ProduceArgs,
    producer: &ThreadedProducer<ProduceContext>,
    mut reader: Box<dyn BufRead + Send>,
    bar: Option<&ProgressBar>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let ctx = producer.context();
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let mut buf = Vec::with_capacity(4096);
    let mut line_no = 0usize;
    while !stop.load(Ordering::Relaxed) {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .context("could not read the input")?;
        if n == 0 || stop.load(Ordering::Relaxed) {
            break;
        }
        line_no += 1;
        ctx.lines.fetch_add(1, Ordering::Relaxed);
        if let Some(bar) = bar {
            bar.inc(n as u64);
        }
        let line = trim_line_end(&buf);
        let (key, value) = match separator {
            Some(sep) => match split_key(line, sep) {
                Some((key, value)) => (Some(key), value),
                None => {
                    ctx.report_failure(format!(
                        "line {line_no} has no key separator `{}`; it was skipped",
                        args.key_separator.as_deref().unwrap_or_default()
                    ));
                    continue;
                }
            },
            None => (None, line),
        };
        let mut record =
            BaseRecord::<[u8], [u8], usize>::with_opaque_to(&args.topic, line_no).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = args.partition {
            record = record.partition(partition);
        }
        loop {
            match producer.send(record) {
                Ok(()) => {
                    ctx.sent.fetch_add(1, Ordering::Relaxed);
                    let bytes = (value.len() + key.map_or(0, <[u8]>::len)) as u64;
                    ctx.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // librdkafka's queue is full: give it a moment to drain.
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((err, _)) => {
                    ctx.report_failure(format!(
                        "line {line_no} could not be sent: {}",
                        describe_error(&err)
                    ));
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Waits for every delivery report, prints the summary and decides the exit status.
fn finish(
    args: &ProduceArgs,
    producer: &ThreadedProducer<ProduceContext>,
    started: Instant,
    interrupted: bool,
) -> anyhow::Result<()> {
    let ctx = producer.context();
    if interrupted {
        eprintln!("Interrupted: waiting for the records already sent to be acknowledged (Ctrl-C again to give up)...");
    }
    let flushed = producer.flush(MESSAGE_TIMEOUT + Duration::from_secs(10));
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let lines = ctx.lines.load(Ordering::Relaxed);
    let sent = ctx.sent.load(Ordering::Relaxed);
    let sent_bytes = ctx.sent_bytes.load(Ordering::Relaxed);
    let delivered = ctx.delivered.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    outln!(
        "Sent {delivered} record{} ({}) to `{}` in {elapsed:.2}s: {:.0} records/s, {:.2} MB/s (MB = 1,000,000 bytes).",
        if delivered == 1 { "" } else { "s" },
        human_bytes(sent_bytes),
        args.topic,
        delivered as f64 / elapsed,
        sent_bytes as f64 / 1e6 / elapsed,
    );
    if let Err(err) = flushed {
        let unacked = sent.saturating_sub(delivered + failed);
        bail!(
            "{unacked} record(s) were still unacknowledged when giving up ({err}); is the broker at {} still running?",
            args.client.bootstrap
        );
    }
    if failed > 0 {
        bail!("{failed} of {lines} record(s) were not delivered (see the errors above)");
    }
    if interrupted {
        bail!("interrupted before the end of the input");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_splitting() {
        assert_eq!(split_key(b"k:v", b":"), Some((&b"k"[..], &b"v"[..])));
        assert_eq!(split_key(b"k:v:w", b":"), Some((&b"k"[..], &b"v:w"[..])));
        assert_eq!(split_key(b":v", b":"), Some((&b""[..], &b"v"[..])));
        assert_eq!(split_key(b"k:", b":"), Some((&b"k"[..], &b""[..])));
        assert_eq!(split_key(b"novalue", b":"), None);
        assert_eq!(
            split_key(b"a::b::c", b"::"),
            Some((&b"a"[..], &b"b::c"[..]))
        );
        assert_eq!(split_key(b"a\tb", b"\t"), Some((&b"a"[..], &b"b"[..])));
        assert_eq!(split_key(b"", b":"), None);
        assert_eq!(split_key(b"abc", b""), None);
    }

    #[test]
    fn line_ends_are_trimmed() {
        assert_eq!(trim_line_end(b"abc\n"), b"abc");
        assert_eq!(trim_line_end(b"abc\r\n"), b"abc");
        assert_eq!(trim_line_end(b"abc"), b"abc");
        assert_eq!(trim_line_end(b"\n"), b"");
        assert_eq!(trim_line_end(b"a\rb\n"), b"a\rb");
    }
}
