//! `rivulet consume TOPIC`: reads records with a manually assigned consumer (no consumer group)
//! and prints one value per line. Without `--follow` it stops at the high watermarks taken when
//! it started; with `--follow` it runs until Ctrl-C.

use std::{
    collections::BTreeMap,
    io::{self, BufWriter, Write},
    str::FromStr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::{KafkaError, RDKafkaErrorCode},
    Message, Offset, TopicPartitionList,
};

use super::common::{
    check_partition, client_creation_error, existing_topic, fetch_metadata, run_blocking,
    stop_on_ctrl_c, validate_topic_name, CliContext, ClientArgs, CONNECT_TIMEOUT,
};

/// Without `--follow`, give up when nothing arrives for this long while records are expected.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where to start reading each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The first retained record (the low watermark).
    Beginning,
    /// The next record to be written (the high watermark): only new records.
    End,
    /// An absolute offset, the same in every assigned partition.
    Offset(i64),
}

impl FromStr for StartFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "beginning" | "earliest" | "start" => Ok(StartFrom::Beginning),
            "end" | "latest" => Ok(StartFrom::End),
            other => match other.parse::<i64>() {
                Ok(offset) if offset >= 0 => Ok(StartFrom::Offset(offset)),
                _ => Err(format!(
                    "expected `beginning`, `end` or an offset (a number >= 0), got `{s}`"
                )),
            },
        }
    }
}

impl StartFrom {
    /// The offset to start at in a partition whose offsets span `[low, high)`, or an error
    /// if an absolute offset lies beyond the end.
    pub(crate) fn resolve(self, low: i64, high: i64) -> Result<i64, String> {
        match self {
            StartFrom::Beginning => Ok(low),
            StartFrom::End => Ok(high),
            StartFrom::Offset(offset) if offset > high => Err(format!(
                "offset {offset} is beyond the end (the next offset to be written is {high})"
            )),
            StartFrom::Offset(offset) => Ok(offset.max(low)),
        }
    }
}

/// `rivulet consume`
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Topic to read.
    pub topic: String,
    /// Where to start: `beginning`, `end`, or an offset.
    #[arg(long, default_value = "beginning", value_name = "beginning|end|OFFSET")]
    pub from: StartFrom,
    /// Read only this partition (default: all partitions).
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// Keep waiting for new records until Ctrl-C instead of stopping at the end.
    #[arg(long, short = 'F')]
    pub follow: bool,
    /// Stop after this many records.
    #[arg(long, short = 'n', value_name = "N")]
    pub max_messages: Option<u64>,
    /// Print each record's key before its value (tab-separated; `null` for no key).
    #[arg(long)]
    pub print_key: bool,
    /// Print `Partition:P<TAB>Offset:O<TAB>` before each record.
    #[arg(long)]
    pub print_offset: bool,
}

/// One assigned partition's progress.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartitionProgress {
    /// The next offset we expect to read.
    pub(crate) next: i64,
    /// The high watermark when we started (the stop point without `--follow`).
    pub(crate) end: i64,
}

impl PartitionProgress {
    pub(crate) fn done(&self) -> bool {
        self.next >= self.end
    }
}

/// Formats one record as a line (without the newline).
pub(crate) fn format_record(
    out: &mut Vec<u8>,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    print_key: bool,
    print_offset: bool,
) {
    if print_offset {
        out.extend_from_slice(format!("Partition:{partition}\tOffset:{offset}\t").as_bytes());
    }
    if print_key {
        out.extend_from_slice(key.unwrap_or(b"null"));
        out.push(b'\t');
    }
    out.extend_from_slice(value.unwrap_or(b"null"));
}

/// Runs `rivulet consume`.
pub(crate) async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    validate_topic_name(&args.topic)?;
    let stop = stop_on_ctrl_c();
    run_blocking(move || consume(args, &stop)).await
}

fn consume(args: ConsumeArgs, stop: &AtomicBool) -> anyhow::Result<()> {
    // librdkafka only allows `assign` on a consumer that has a group.id. No offsets are ever
    // committed (auto-commit is off and we never commit), so the group is never used.
    let consumer: BaseConsumer<CliContext> = args
        .client
        .config("rivulet-cli")
        .set("group.id", "rivulet-cli-consume")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false")
        .create_with_context(CliContext::default())
        .map_err(client_creation_error)?;
    let metadata = fetch_metadata(&consumer, &args.client.bootstrap, Some(&args.topic))?;
    let topic = existing_topic(&metadata, &args.topic)?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) => {
            check_partition(topic, p)?;
            vec![p]
        }
        None => {
            let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            ids
        }
    };

    let mut progress = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(&args.topic, p, CONNECT_TIMEOUT)
            .map_err(|e| {
                anyhow!(
                    "could not read the offsets of partition {p} of `{}`: {e}; is the broker at {} healthy?",
                    args.topic,
                    args.client.bootstrap
                )
            })?;
        let start = args
            .from
            .resolve(low, high)
            .map_err(|e| anyhow!("partition {p} of `{}`: {e}", args.topic))?;
        let state = PartitionProgress {
            next: start,
            end: high,
        };
        if args.follow || !state.done() {
            assignment.add_partition_offset(&args.topic, p, Offset::Offset(start))?;
        }
        progress.insert(p, state);
    }

    let mut remaining: usize = progress.values().filter(|s| !s.done()).count();
    if !args.follow && remaining == 0 {
        eprintln!(
            "Nothing to read: `{}` has no records past the start position.",
            args.topic
        );
        return Ok(());
    }
    consumer.assign(&assignment)?;

    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut line = Vec::with_capacity(1024);
    let mut count = 0u64;
    let mut last_progress = Instant::now();
    let limit = args.max_messages.unwrap_or(u64::MAX);
    let mut write_failed = false;

    while count < limit && (args.follow || remaining > 0) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(msg)) => {
                last_progress = Instant::now();
                let (partition, offset) = (msg.partition(), msg.offset());
                if let Some(state) = progress.get_mut(&partition) {
                    if args.follow {
                        state.next = offset + 1;
                    } else if state.done() || offset >= state.end {
                        // Past the high watermark we started with: not ours to print.
                        if !state.done() {
                            state.next = state.end;
                            remaining -= 1;
                        }
                        continue;
                    } else {
                        state.next = offset + 1;
                        if state.done() {
                            remaining -= 1;
                        }
                    }
                }
                line.clear();
                format_record(
                    &mut line,
                    partition,
                    offset,
                    msg.key(),
                    msg.payload(),
                    args.print_key,
                    args.print_offset,
                );
                line.push(b'\n');
                if out.write_all(&line).is_err() {
                    write_failed = true;
                    break;
                }
                count += 1;
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                last_progress = Instant::now();
                // The partition end as of now is at or past the end we started with.
                if let Some(state) = progress.get_mut(&partition) {
                    if !args.follow && !state.done() {
                        state.next = state.end;
                        remaining -= 1;
                    }
                }
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
                if out.flush().is_err() {
                    write_failed = true;
                    break;
                }
                if !args.follow && last_progress.elapsed() > STALL_TIMEOUT {
                    let waiting: Vec<String> = progress
                        .iter()
                        .filter(|(_, s)| !s.done())
                        .map(|(p, s)| format!("partition {p} at {} of {}", s.next, s.end))
                        .collect();
                    bail!(
                        "no records arrived for {}s although more were expected ({}); is the broker at {} healthy? (client said: {})",
                        STALL_TIMEOUT.as_secs(),
                        waiting.join(", "),
                        args.client.bootstrap,
                        consumer.context().last_error().unwrap_or_else(|| "nothing".into())
                    );
                }
            }
        }
    }
    // A closed pipe (e.g. `| head`) is a normal way to stop reading.
    if !write_failed {
        let _ = out.flush();
    }
    drop(out);
    if write_failed {
        return Ok(());
    }
    eprintln!(
        "Consumed {count} record{} from `{}`.",
        if count == 1 { "" } else { "s" },
        args.topic
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_parsing() {
        assert_eq!("beginning".parse(), Ok(StartFrom::Beginning));
        assert_eq!("earliest".parse(), Ok(StartFrom::Beginning));
        assert_eq!("END".parse(), Ok(StartFrom::End));
        assert_eq!("latest".parse(), Ok(StartFrom::End));
        assert_eq!("0".parse(), Ok(StartFrom::Offset(0)));
        assert_eq!("12345".parse(), Ok(StartFrom::Offset(12345)));
        assert!("-1".parse::<StartFrom>().is_err());
        assert!("soon".parse::<StartFrom>().is_err());
        assert!("".parse::<StartFrom>().is_err());
    }

    #[test]
    fn from_resolution() {
        assert_eq!(StartFrom::Beginning.resolve(5, 10), Ok(5));
        assert_eq!(StartFrom::End.resolve(5, 10), Ok(10));
        assert_eq!(StartFrom::Offset(7).resolve(5, 10), Ok(7));
        // Before the first retained record: start at the first one.
        assert_eq!(StartFrom::Offset(2).resolve(5, 10), Ok(5));
        // Exactly the end is allowed (nothing to read yet).
        assert_eq!(StartFrom::Offset(10).resolve(5, 10), Ok(10));
        assert!(StartFrom::Offset(11).resolve(5, 10).is_err());
        // Empty partition.
        assert_eq!(StartFrom::Beginning.resolve(0, 0), Ok(0));
    }

    #[test]
    fn progress_is_done_at_the_end() {
        assert!(PartitionProgress { next: 0, end: 0 }.done());
        assert!(!PartitionProgress { next: 3, end: 4 }.done());
        assert!(PartitionProgress { next: 4, end: 4 }.done());
    }

    #[test]
    fn record_lines() {
        let mut out = Vec::new();
        format_record(&mut out, 0, 1, Some(b"k"), Some(b"v"), false, false);
        assert_eq!(out, b"v");
        out.clear();
        format_record(&mut out, 0, 1, Some(b"k"), Some(b"v"), true, false);
        assert_eq!(out, b"k\tv");
        out.clear();
        format_record(&mut out, 2, 42, None, Some(b"v"), true, true);
        assert_eq!(out, b"Partition:2\tOffset:42\tnull\tv");
        out.clear();
        format_record(&mut out, 2, 42, None, None, false, false);
        assert_eq!(out, b"null");
    }
}
