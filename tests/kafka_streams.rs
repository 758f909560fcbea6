//! Kafka Streams 4.3.1, unchanged, against a three-node Rivulet cluster (issue 19 item 3, first
//! part): the word count of Kafka Streams' quickstart with `processing.guarantee=at_least_once`,
//! two instances of one application, its output compared with counts computed here.
//!
//! ```text
//!   rdkafka producer ─▶ <prefix>-text (4 partitions, RF=3)
//!        ─▶ WordCount instances a, b (tests/clients/streams; one group, protocol "stream")
//!             flatMap words ─▶ <app>-words-repartition (purged: DeleteRecords)
//!             ─▶ count() in store "counts" ─▶ <app>-counts-changelog (compacted)
//!        ─▶ <prefix>-counts (word → Long count) ─▶ latest count per word == oracle
//! ```
//!
//! Instance a starts alone; b joins while lines keep arriving, so the application rebalances
//! mid-stream and tasks move to b (Streams restores their stores from the changelogs). With no failure
//! the final counts equal the oracle exactly (at-least-once only over-counts after a crash).
//! The instances commit every 500 ms and purge repartition records every second
//! (tests/clients/streams WordCount) instead of every 30 s.
//!
//! ```text
//! cargo build -p rivulet-broker --bin rivulet
//! cargo test -p rivulet-broker --test kafka_streams -- --nocapture
//! ```

mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::cluster::Cluster;
use harness::kafka::{self, TestProducer};
use harness::streams::{StreamsInstance, WORD_COUNT};
use harness::{pseudo_random_bytes, try_wait_until, unique_name, wait_until};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 4;
const LINES: usize = 3000;
const WORDS_PER_LINE: usize = 6;

/// How long the output may take to reach the oracle's counts after the last line is sent.
const OUTPUT_TIMEOUT: Duration = Duration::from_secs(120);

/// The word vocabulary: few words, so every count grows large.
const VOCABULARY: [&str; 24] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray",
];

/// `LINES` lines of words, some upper-case and with punctuation (the application lower-cases
/// and splits on non-word characters), from a fixed seed.
fn text_lines(seed: u64) -> Vec<String> {
    let bytes = pseudo_random_bytes(seed, LINES * WORDS_PER_LINE * 2);
    bytes
        .chunks(WORDS_PER_LINE * 2)
        .map(|chunk| {
            chunk
                .chunks(2)
                .map(|pair| {
                    let word = VOCABULARY[pair[0] as usize % VOCABULARY.len()];
                    match pair[1] % 5 {
                        0 => word.to_uppercase(),
                        1 => format!("{word},"),
                        _ => word.to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The oracle: what the word count must end with, computed here independently.
fn oracle(lines: &[String]) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for line in lines {
        for word in line
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .filter(|w| !w.is_empty())
        {
            *counts.entry(word.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Reads `topic` (word → 8-byte big-endian count) from the beginning to its high watermarks:
/// the latest count of each word, and how many records were read.
fn latest_counts(bootstrap: &str, topic: &str) -> Result<(BTreeMap<String, i64>, usize), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "rivulet-it-checker")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    let mut high = BTreeMap::new();
    for p in 0..PARTITIONS {
        let (_, hi) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(5))
            .map_err(|e| format!("watermarks of {topic}/{p}: {e}"))?;
        if hi > 0 {
            high.insert(p, hi);
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| e.to_string())?;
        }
    }
    let mut counts = BTreeMap::new();
    let mut records = 0;
    if high.is_empty() {
        return Ok((counts, 0));
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !high.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("reading {topic} took over 30 s; left: {high:?}"));
        }
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg.map_err(|e| format!("consume {topic}: {e}"))?;
        let word = String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned();
        let value = msg.payload().unwrap_or_default();
        let count = i64::from_be_bytes(
            value
                .try_into()
                .map_err(|_| format!("a count of {} bytes for {word:?}", value.len()))?,
        );
        counts.insert(word, count);
        records += 1;
        if high
            .get(&msg.partition())
            .is_some_and(|&hi| msg.offset() + 1 >= hi)
        {
            high.remove(&msg.partition());
        }
    }
    Ok((counts, records))
}

fn send_lines(producer: &mut TestProducer, topic: &str, lines: &[String], from: usize) {
    for (i, line) in lines.iter().enumerate() {
        producer.send(topic, &format!("line-{}", from + i), line);
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("the lines are acknowledged");
    assert!(
        producer.log().failed().is_empty(),
        "failed sends: {:?}",
        producer.log().failed()
    );
}

#[test]
fn streams_word_count_at_least_once_with_two_instances_matches_the_oracle() {
    harness::streams::program();
    let started = Instant::now();
    let mut cluster = Cluster::start_for_jvm_apps(3);
    let bootstrap = cluster.bootstrap();
    let prefix = unique_name("streams");
    let (input, output) = (format!("{prefix}-text"), format!("{prefix}-counts"));
    cluster.create_replicated_topic(&input, PARTITIONS);
    cluster.create_replicated_topic(&output, PARTITIONS);
    let app = format!("{prefix}-wordcount");
    let seed = 0x5eed_0019;
    let lines = text_lines(seed);
    let expected = oracle(&lines);
    eprintln!(
        "seed {seed:#x}: {LINES} lines, {} words, {} distinct",
        expected.values().sum::<i64>(),
        expected.len()
    );
    let mut producer = TestProducer::new(&bootstrap, &[]);
    let third = LINES / 3;
    send_lines(&mut producer, &input, &lines[..third], 0);

    let args = [
        bootstrap.clone(),
        app.clone(),
        input.clone(),
        output.clone(),
        "{state}".to_string(),
    ];
    let mut a = StreamsInstance::start("a", WORD_COUNT, "at_least_once", &args);
    a.wait_running(1);
    eprintln!("instance a runs after {:.1?}", started.elapsed());
    send_lines(&mut producer, &input, &lines[third..2 * third], third);
    let mut b = StreamsInstance::start("b", WORD_COUNT, "at_least_once", &args);
    // b joins while a is counting; the last third arrives during or after the rebalance.
    b.wait_running(1);
    send_lines(&mut producer, &input, &lines[2 * third..], 2 * third);
    eprintln!(
        "instance b runs after {:.1?}; every line sent",
        started.elapsed()
    );

    // The group: two members of the consumer protocol with Streams' own assignor.
    let described =
        kafka::wait_for_stable_group(&bootstrap, &app, "consumer", "stream", 2, OUTPUT_TIMEOUT);
    eprintln!("group {app}: {described}");

    let mut last = Ok((BTreeMap::new(), 0));
    let waited = try_wait_until(
        OUTPUT_TIMEOUT,
        "the latest counts equal the oracle's",
        || {
            last = latest_counts(&bootstrap, &output);
            last.as_ref().is_ok_and(|(counts, _)| *counts == expected)
        },
    );
    if let Err(e) = waited {
        let diff: Vec<String> = match &last {
            Ok((counts, _)) => expected
                .iter()
                .filter(|(w, n)| counts.get(*w) != Some(n))
                .map(|(w, n)| format!("{w}: expected {n}, got {:?}", counts.get(w)))
                .collect(),
            Err(e) => vec![e.clone()],
        };
        panic!("{e}; differences: {diff:?}");
    }
    let (_, records) = last.expect("counts read");
    eprintln!(
        "output equals the oracle after {:.1?} ({records} count updates for {} words)",
        started.elapsed(),
        expected.len()
    );

    // The internal topics Streams created: a repartition topic it purges, a compacted changelog.
    let repartition = format!("{app}-words-repartition");
    let changelog = format!("{app}-counts-changelog");
    for (topic, policy) in [(&repartition, "delete"), (&changelog, "compact")] {
        let configs = kafka::topic_configs(&bootstrap, topic);
        assert_eq!(
            configs.get("cleanup.policy").map(String::as_str),
            Some(policy),
            "{topic}: {configs:?}"
        );
    }
    let view = cluster.metadata(1).expect("metadata");
    for topic in [&repartition, &changelog] {
        let parts = view
            .topics
            .get(topic.as_str())
            .unwrap_or_else(|| panic!("{topic} exists"));
        assert_eq!(parts.len(), PARTITIONS as usize, "{topic}'s partitions");
        assert!(
            parts.iter().all(|p| p.replicas.len() == 3),
            "{topic} has three replicas per partition: {parts:?}"
        );
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("consumer for watermarks");
    wait_until(
        OUTPUT_TIMEOUT,
        "Streams purged consumed records of the repartition topic (DeleteRecords)",
        || {
            (0..PARTITIONS).any(|p| {
                consumer
                    .fetch_watermarks(&repartition, p, Duration::from_secs(5))
                    .is_ok_and(|(low, _)| low > 0)
            })
        },
    );

    for instance in [&mut a, &mut b] {
        let complaints = instance.complaints(30);
        eprintln!(
            "{}: RUNNING {} times, {} distinct WARN/ERROR lines{}",
            instance.name(),
            instance.times_running(),
            complaints.len(),
            complaints
                .iter()
                .map(|l| format!("\n  {l}"))
                .collect::<String>()
        );
        instance.stop();
    }
    let live = cluster.live_ids();
    assert_eq!(live.len(), 3, "every Rivulet node still runs: {live:?}");
    eprintln!(
        "KAFKA_STREAMS_RESULT lines={LINES} words={} updates={records} elapsed_s={:.1}",
        expected.values().sum::<i64>(),
        started.elapsed().as_secs_f64()
    );
}
