//! The chaos workload and its checker.
//!
//! ```text
//!   Workload::start ──▶ producer thread (tokio, rdkafka FutureProducer, acks=all, idempotent)
//!        │                 sends v-000000, v-000001, … round-robin over the partitions at a
//!        │                 fixed rate; logs every ack (partition, offset, when) and every error
//!        ├──────────────▶ consumer thread (rdkafka, assign() every partition from offset 0)
//!        │                 logs every (partition, offset, value) it reads
//!        ├─ mark_fault() / mark_recovered(): timestamps for the unavailability measure
//!        └─ stop() ──▶ History ──┐
//!   read_back() (every partition, 0 → high watermark) ──▶ check(History, FinalLog) ──▶ Report
//! ```
//!
//! What [`check`] enforces (docs/semantics.md, design notes §5):
//! - **lost**: every acknowledged value is in the final log at its acknowledged (partition,
//!   offset), or in its partition when the client acknowledged it without an offset (-1001:
//!   librdkafka's "persisted, offset unknown"). Must be 0.
//! - **order**: offsets in the final log are strictly increasing per partition; one idempotent
//!   producer's acknowledged offsets grow with its send order per partition; the concurrent
//!   consumer saw increasing offsets per partition.
//! - **vanished reads**: every record the concurrent consumer read is in the final log, at the
//!   same offset with the same value (no read of a record that was later truncated).
//! - **foreign records**: nothing in the log that the workload did not send.
//! - **progress**: some record is acknowledged after recovery.
//!
//! Reported, not failed: **duplicates** (a value stored at more than one offset: allowed by the
//! contract only for a value that was never acknowledged twice, which one future per send makes
//! impossible; idempotence should make it 0) and **unavailable_ms**, the longest time any single
//! partition went without an acknowledgement after the first fault (from the fault to the first
//! ack, between acks, and from the last ack to the end of the run). Per partition because a fault
//! usually hits some partitions only: the acks of the healthy ones would hide the gap.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Semaphore;

/// How a workload runs.
#[derive(Debug, Clone)]
pub(crate) struct WorkloadOptions {
    pub(crate) partitions: i32,
    /// Records sent per second, spread round-robin over the partitions. Bounded so that the
    /// client does not starve the nodes of the (two) cores and make them miss heartbeats.
    pub(crate) rate_per_sec: u32,
    /// Records sent but not yet acknowledged or failed, at most.
    pub(crate) in_flight_max: usize,
    /// librdkafka's `message.timeout.ms`: how long a record is retried through a failover.
    pub(crate) message_timeout_ms: u32,
    /// Extra producer settings.
    pub(crate) producer_config: Vec<(String, String)>,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        WorkloadOptions {
            partitions: 6,
            rate_per_sec: 1_500,
            in_flight_max: 50_000,
            message_timeout_ms: 60_000,
            producer_config: Vec::new(),
        }
    }
}

/// An acknowledged record.
#[derive(Debug, Clone)]
pub(crate) struct Ack {
    pub(crate) seq: u64,
    pub(crate) value: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) at: Instant,
}

/// A record the producer gave up on (its outcome is unknown for timeouts).
#[derive(Debug, Clone)]
pub(crate) struct SendError {
    pub(crate) seq: u64,
    pub(crate) value: String,
    pub(crate) partition: i32,
    pub(crate) error: String,
    pub(crate) at: Instant,
}

/// A record the concurrent consumer read.
#[derive(Debug, Clone)]
pub(crate) struct Read {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) value: Option<String>,
}

/// Everything a workload observed.
#[derive(Debug, Clone)]
pub(crate) struct History {
    pub(crate) started: Instant,
    pub(crate) stopped: Instant,
    pub(crate) partitions: i32,
    pub(crate) sent: u64,
    pub(crate) acks: Vec<Ack>,
    pub(crate) errors: Vec<SendError>,
    pub(crate) reads: Vec<Read>,
    pub(crate) consumer_errors: Vec<String>,
    /// When the first fault was injected.
    pub(crate) fault_at: Option<Instant>,
    /// When the last recovery finished.
    pub(crate) recovered_at: Option<Instant>,
}

/// Every partition's records, offset and value, as read back at the end.
pub(crate) type FinalLog = BTreeMap<i32, Vec<(i64, Option<String>)>>;

/// The value of send number `seq`.
pub(crate) fn value_of(seq: u64) -> String {
    format!("v-{seq:06}")
}

#[derive(Debug, Default)]
struct Shared {
    acks: Mutex<Vec<Ack>>,
    errors: Mutex<Vec<SendError>>,
    reads: Mutex<Vec<Read>>,
    consumer_errors: Mutex<Vec<String>>,
    fault_at: Mutex<Option<Instant>>,
    recovered_at: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking workload thread must not hide the history from the checker.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running producer and consumer. Stop it with [`Workload::stop`].
#[derive(Debug)]
pub(crate) struct Workload {
    started: Instant,
    partitions: i32,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    producer: Option<JoinHandle<u64>>,
    consumer: Option<JoinHandle<()>>,
}

impl Workload {
    /// Starts producing to and consuming from `topic` (which must exist with
    /// `options.partitions` partitions).
    pub(crate) fn start(bootstrap: &str, topic: &str, options: WorkloadOptions) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let producer = {
            let (bootstrap, topic, stop, shared) = (
                bootstrap.to_string(),
                topic.to_string(),
                stop.clone(),
                shared.clone(),
            );
            let options = options.clone();
            std::thread::Builder::new()
                .name("chaos-producer".into())
                .spawn(move || produce(&bootstrap, &topic, &options, &stop, &shared))
                .expect("spawn producer thread")
        };
        let consumer = {
            let (bootstrap, topic, stop, shared) = (
                bootstrap.to_string(),
                topic.to_string(),
                stop.clone(),
                shared.clone(),
            );
            let partitions = options.partitions;
            std::thread::Builder::new()
                .name("chaos-consumer".into())
                .spawn(move || consume(&bootstrap, &topic, partitions, &stop, &shared))
                .expect("spawn consumer thread")
        };
        Workload {
            started: Instant::now(),
            partitions: options.partitions,
            stop,
            shared,
            producer: Some(producer),
            consumer: Some(consumer),
        }
    }

    pub(crate) fn acked(&self) -> usize {
        lock(&self.shared.acks).len()
    }

    /// Acknowledgements that arrived after `since`.
    pub(crate) fn acked_since(&self, since: Instant) -> usize {
        lock(&self.shared.acks)
            .iter()
            .filter(|a| a.at >= since)
            .count()
    }

    pub(crate) fn errors(&self) -> usize {
        lock(&self.shared.errors).len()
    }

    /// Records the first fault's time (later calls keep the first).
    pub(crate) fn mark_fault(&self) {
        lock(&self.shared.fault_at).get_or_insert_with(Instant::now);
    }

    /// Records the time recovery finished (later calls move it).
    pub(crate) fn mark_recovered(&self) {
        *lock(&self.shared.recovered_at) = Some(Instant::now());
    }

    /// Polls until `n` records have been acknowledged since `since`; `Err` says how many were.
    pub(crate) fn wait_for_acks_since(
        &self,
        since: Instant,
        n: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        super::try_wait_until(timeout, &format!("{n} records are acknowledged"), || {
            self.acked_since(since) >= n
        })
        .map_err(|e| {
            format!(
                "{e}: {} acknowledged since then, {} send errors so far{}",
                self.acked_since(since),
                self.errors(),
                self.last_error()
                    .map(|e| format!(", last: {e}"))
                    .unwrap_or_default()
            )
        })
    }

    fn last_error(&self) -> Option<String> {
        lock(&self.shared.errors).last().map(|e| e.error.clone())
    }

    /// Stops sending, waits (bounded by the message timeout) for every record in flight to be
    /// acknowledged or failed, stops the consumer and returns what was observed.
    pub(crate) fn stop(mut self) -> History {
        self.stop.store(true, Ordering::SeqCst);
        let sent = self
            .producer
            .take()
            .expect("producer thread")
            .join()
            .unwrap_or_else(|_| panic!("the chaos producer thread panicked"));
        let stopped = Instant::now();
        self.consumer
            .take()
            .expect("consumer thread")
            .join()
            .unwrap_or_else(|_| panic!("the chaos consumer thread panicked"));
        let shared = &self.shared;
        History {
            started: self.started,
            stopped,
            partitions: self.partitions,
            sent,
            acks: std::mem::take(&mut *lock(&shared.acks)),
            errors: std::mem::take(&mut *lock(&shared.errors)),
            reads: std::mem::take(&mut *lock(&shared.reads)),
            consumer_errors: std::mem::take(&mut *lock(&shared.consumer_errors)),
            fault_at: *lock(&shared.fault_at),
            recovered_at: *lock(&shared.recovered_at),
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        // Without stop(): a failing test. Let the threads wind down on their own.
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The producer thread: sends at the configured rate until `stop`, then waits for what is in
/// flight. Returns how many records it sent.
fn produce(
    bootstrap: &str,
    topic: &str,
    options: &WorkloadOptions,
    stop: &AtomicBool,
    shared: &Arc<Shared>,
) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("producer runtime");
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", options.message_timeout_ms.to_string())
        // Fail over quickly: notice a dead connection and refresh metadata often.
        .set("request.timeout.ms", "5000")
        .set("socket.timeout.ms", "5000")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("reconnect.backoff.max.ms", "500")
        .set("retry.backoff.max.ms", "500");
    for (k, v) in &options.producer_config {
        config.set(k, v);
    }
    let producer: FutureProducer = config.create().expect("create chaos producer");
    let in_flight = Arc::new(Semaphore::new(options.in_flight_max));
    let rate = f64::from(options.rate_per_sec.max(1));
    runtime.block_on(async {
        let start = Instant::now();
        let mut seq: u64 = 0;
        while !stop.load(Ordering::SeqCst) {
            // Pace: send number `seq` is due at start + seq / rate.
            let due = start + Duration::from_secs_f64(seq as f64 / rate);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep((due - now).min(Duration::from_millis(50))).await;
                continue;
            }
            let permit = tokio::select! {
                p = in_flight.clone().acquire_owned() => p.expect("semaphore"),
                () = tokio::time::sleep(Duration::from_millis(50)) => continue,
            };
            let value = value_of(seq);
            let partition = (seq % options.partitions as u64) as i32;
            let mut record = FutureRecord::to(topic)
                .partition(partition)
                .key(&value)
                .payload(&value);
            let delivery = loop {
                match producer.send_result(record) {
                    Ok(d) => break Some(d),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err((e, _)) => {
                        lock(&shared.errors).push(SendError {
                            seq,
                            value: value.clone(),
                            partition,
                            error: format!("enqueue: {e}"),
                            at: Instant::now(),
                        });
                        break None;
                    }
                }
            };
            if let Some(delivery) = delivery {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let outcome = delivery.await;
                    let at = Instant::now();
                    match outcome {
                        Ok(Ok(d)) => lock(&shared.acks).push(Ack {
                            seq,
                            value,
                            partition: d.partition,
                            offset: d.offset,
                            at,
                        }),
                        Ok(Err((e, _))) => lock(&shared.errors).push(SendError {
                            seq,
                            value,
                            partition,
                            error: e.to_string(),
                            at,
                        }),
                        Err(_) => lock(&shared.errors).push(SendError {
                            seq,
                            value,
                            partition,
                            error: "delivery future cancelled".into(),
                            at,
                        }),
                    }
                    drop(permit);
                });
            }
            seq += 1;
        }
        // Every record in flight ends within message.timeout.ms: wait for all permits.
        let drain =
            Duration::from_millis(u64::from(options.message_timeout_ms)) + Duration::from_secs(10);
        let all = u32::try_from(options.in_flight_max).expect("in_flight_max fits u32");
        if tokio::time::timeout(drain, in_flight.acquire_many(all))
            .await
            .is_err()
        {
            lock(&shared.errors).push(SendError {
                seq: u64::MAX,
                value: String::new(),
                partition: -1,
                error: format!("records still in flight {drain:?} after the workload stopped"),
                at: Instant::now(),
            });
        }
        seq
    })
}

fn assign_all(consumer: &BaseConsumer, topic: &str, partitions: i32, from: Offset) {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, from)
            .expect("add partition");
    }
    consumer.assign(&tpl).expect("assign");
}

fn checker_consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // assign() only, nothing committed (consumer groups do not exist yet); librdkafka
        // still wants a group id to assign partitions.
        .set("group.id", "rivulet-chaos-checker")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A position out of range would mean the log shrank under the reader: report it
        // instead of silently jumping.
        .set("auto.offset.reset", "error")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("reconnect.backoff.max.ms", "500")
        .create()
        .expect("create chaos consumer")
}

/// The consumer thread: reads every partition from offset 0 until `stop`.
fn consume(bootstrap: &str, topic: &str, partitions: i32, stop: &AtomicBool, shared: &Shared) {
    let consumer = checker_consumer(bootstrap);
    assign_all(&consumer, topic, partitions, Offset::Beginning);
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(msg)) => lock(&shared.reads).push(Read {
                partition: msg.partition(),
                offset: msg.offset(),
                value: msg
                    .payload()
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
            }),
            Some(Err(e)) => {
                let mut errors = lock(&shared.consumer_errors);
                if errors.len() < 10_000 {
                    errors.push(e.to_string());
                }
            }
        }
    }
}

/// Reads every partition from offset 0 to its high watermark (taken first, retried while the
/// cluster settles). Errors while reading are retried until `timeout`.
pub(crate) fn read_back(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<FinalLog, String> {
    let deadline = Instant::now() + timeout;
    let consumer = checker_consumer(bootstrap);
    let mut high = BTreeMap::new();
    for p in 0..partitions {
        let hw = loop {
            match consumer.fetch_watermarks(topic, p, Duration::from_secs(5)) {
                Ok((_, hw)) => break hw,
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("watermarks of {topic}/{p}: {e}"));
                }
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        high.insert(p, hw);
    }
    let mut log: FinalLog = (0..partitions).map(|p| (p, Vec::new())).collect();
    let mut pending: Vec<i32> = high
        .iter()
        .filter(|(_, &hw)| hw > 0)
        .map(|(&p, _)| p)
        .collect();
    if pending.is_empty() {
        return Ok(log);
    }
    assign_all(&consumer, topic, partitions, Offset::Beginning);
    let mut errors = Vec::new();
    while !pending.is_empty() {
        if Instant::now() >= deadline {
            return Err(format!(
                "read-back of {topic} timed out; high watermarks {high:?}, read {:?}, errors {:?}",
                log.iter().map(|(p, r)| (*p, r.len())).collect::<Vec<_>>(),
                &errors[errors.len().saturating_sub(5)..]
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => errors.push(e.to_string()),
            Some(Ok(msg)) => {
                let p = msg.partition();
                if msg.offset() >= high[&p] {
                    continue;
                }
                log.get_mut(&p).expect("assigned partition").push((
                    msg.offset(),
                    msg.payload()
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                ));
                if msg.offset() + 1 >= high[&p] {
                    pending.retain(|&q| q != p);
                }
            }
        }
    }
    Ok(log)
}

/// What [`check`] found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Report {
    pub(crate) sent: u64,
    pub(crate) acknowledged: usize,
    pub(crate) send_errors: usize,
    pub(crate) reads: usize,
    pub(crate) final_records: usize,
    /// Acknowledged values missing from, or different at, their acknowledged position.
    pub(crate) lost: usize,
    /// Values stored at more than one offset.
    pub(crate) duplicates: usize,
    /// Records the concurrent consumer read that are absent or different in the final log.
    pub(crate) vanished_reads: usize,
    /// Offset-order violations (final log, acknowledgements, concurrent reads).
    pub(crate) order_violations: usize,
    /// Records the workload never sent.
    pub(crate) foreign_records: usize,
    /// Values acknowledged at two different positions.
    pub(crate) double_acks: usize,
    /// Acknowledgements after the last recovery (`None`: no recovery was marked).
    pub(crate) acked_after_recovery: Option<usize>,
    /// The longest time one partition went without an ack after the first fault, and which.
    pub(crate) unavailable: Option<(Duration, i32)>,
    /// Failed sends whose value is in the log anyway (outcome-unknown errors; informational).
    pub(crate) failed_but_stored: usize,
    /// Up to 50 problem descriptions.
    pub(crate) problems: Vec<String>,
    /// A few distinct send errors, for the summary.
    pub(crate) sample_errors: Vec<String>,
}

impl Report {
    /// Whether a guarantee was broken.
    pub(crate) fn failed(&self) -> bool {
        self.lost > 0
            || self.vanished_reads > 0
            || self.order_violations > 0
            || self.foreign_records > 0
            || self.double_acks > 0
            || self.acked_after_recovery == Some(0)
            || self.acknowledged == 0
    }

    pub(crate) fn unavailable_ms(&self) -> Option<u128> {
        self.unavailable.map(|(d, _)| d.as_millis())
    }

    /// The one-line summary.
    pub(crate) fn summary(&self, scenario: &str) -> String {
        let unavailable = match self.unavailable {
            Some((d, p)) => format!("{} (partition {p})", d.as_millis()),
            None => "n/a".to_string(),
        };
        format!(
            "chaos scenario={scenario} result={} acknowledged={} lost={} duplicates={} \
             unavailable_ms={unavailable} sent={} send_errors={} vanished_reads={} \
             order_violations={} foreign={} reads={} final_records={} acked_after_recovery={}",
            if self.failed() { "FAIL" } else { "ok" },
            self.acknowledged,
            self.lost,
            self.duplicates,
            self.sent,
            self.send_errors,
            self.vanished_reads,
            self.order_violations,
            self.foreign_records,
            self.reads,
            self.final_records,
            self.acked_after_recovery
                .map_or("n/a".to_string(), |n| n.to_string()),
        )
    }
}

/// Compares what the workload saw with the final log.
pub(crate) fn check(history: &History, log: &FinalLog) -> Report {
    let mut r = Report {
        sent: history.sent,
        acknowledged: history.acks.len(),
        send_errors: history.errors.len(),
        reads: history.reads.len(),
        final_records: log.values().map(Vec::len).sum(),
        ..Report::default()
    };
    let mut problems = Vec::new();
    let mut note = |msg: String| {
        if problems.len() < 50 {
            problems.push(msg);
        }
    };

    // The final log: positions, order, duplicates, foreign values.
    let mut at: HashMap<(i32, i64), Option<&str>> = HashMap::new();
    let mut stored: HashMap<&str, Vec<(i32, i64)>> = HashMap::new();
    for (&p, records) in log {
        let mut last = -1;
        for (offset, value) in records {
            if *offset <= last {
                r.order_violations += 1;
                note(format!("final log {p}: offset {offset} after {last}"));
            }
            last = *offset;
            at.insert((p, *offset), value.as_deref());
            match value.as_deref() {
                Some(v) if is_workload_value(v, history.sent) => {
                    stored.entry(v).or_default().push((p, *offset))
                }
                other => {
                    r.foreign_records += 1;
                    note(format!(
                        "final log {p}:{offset} holds {other:?}, which was never sent"
                    ));
                }
            }
        }
    }
    for (v, positions) in &stored {
        if positions.len() > 1 {
            r.duplicates += 1;
            if r.duplicates <= 5 {
                // Informational: shows up in the problem list only if something else failed.
                note(format!(
                    "duplicate (allowed, reported): {v} stored at {positions:?}"
                ));
            }
        }
    }

    // Acknowledged records: present at their position, acknowledged once, in send order.
    let mut acked_at: HashMap<&str, (i32, i64)> = HashMap::new();
    for a in &history.acks {
        if let Some(prev) = acked_at.insert(&a.value, (a.partition, a.offset)) {
            if prev != (a.partition, a.offset) {
                r.double_acks += 1;
                note(format!(
                    "{} acknowledged at {prev:?} and at {}:{}",
                    a.value, a.partition, a.offset
                ));
            }
        }
        if a.offset < 0 {
            // librdkafka acknowledges a batch whose retry the broker answered with a sequence
            // error showing it was already persisted (OUT_OF_ORDER_SEQUENCE_NUMBER below the
            // next expected sequence) without an offset: -1001. The promise is then only that
            // the value is in its partition.
            if !stored
                .get(a.value.as_str())
                .is_some_and(|at| at.iter().any(|&(p, _)| p == a.partition))
            {
                r.lost += 1;
                note(format!(
                    "LOST: {} acknowledged in partition {} without an offset, not in the final log",
                    a.value, a.partition
                ));
            }
            continue;
        }
        match at.get(&(a.partition, a.offset)) {
            Some(Some(v)) if *v == a.value => {}
            found => {
                r.lost += 1;
                note(format!(
                    "LOST: {} acknowledged at {}:{} but the final log has {}",
                    a.value,
                    a.partition,
                    a.offset,
                    match found {
                        None => "no record there".to_string(),
                        Some(v) => format!("{v:?}"),
                    }
                ));
            }
        }
    }
    let mut by_seq: Vec<&Ack> = history.acks.iter().collect();
    by_seq.sort_by_key(|a| a.seq);
    let mut last_ack: HashMap<i32, &Ack> = HashMap::new();
    for a in by_seq.into_iter().filter(|a| a.offset >= 0) {
        if let Some(prev) = last_ack.insert(a.partition, a) {
            if a.offset <= prev.offset {
                r.order_violations += 1;
                note(format!(
                    "send order broken in partition {}: {} at offset {} but the earlier {} at {}",
                    a.partition, a.value, a.offset, prev.value, prev.offset
                ));
            }
        }
    }

    // Concurrent reads: each still in the final log, and in offset order per partition.
    let mut last_read: HashMap<i32, i64> = HashMap::new();
    for rd in &history.reads {
        match at.get(&(rd.partition, rd.offset)) {
            Some(v) if v.map(str::to_string) == rd.value => {}
            found => {
                r.vanished_reads += 1;
                note(format!(
                    "VANISHED READ: the consumer read {:?} at {}:{}, the final log has {}",
                    rd.value,
                    rd.partition,
                    rd.offset,
                    match found {
                        None => "no record there".to_string(),
                        Some(v) => format!("{v:?}"),
                    }
                ));
            }
        }
        if let Some(prev) = last_read.insert(rd.partition, rd.offset) {
            if rd.offset <= prev {
                r.order_violations += 1;
                note(format!(
                    "the consumer read {}:{} after {}:{prev}",
                    rd.partition, rd.offset, rd.partition
                ));
            }
        }
    }

    r.failed_but_stored = history
        .errors
        .iter()
        .filter(|e| stored.contains_key(e.value.as_str()))
        .count();
    let mut seen = HashSet::new();
    r.sample_errors = history
        .errors
        .iter()
        .filter(|e| seen.insert(e.error.clone()))
        .take(5)
        .map(|e| format!("{} (partition {}): {}", e.value, e.partition, e.error))
        .collect();

    r.acked_after_recovery = history
        .recovered_at
        .map(|t| history.acks.iter().filter(|a| a.at >= t).count());
    r.unavailable = history.fault_at.map(|fault| longest_gap(history, fault));
    r.problems = problems;
    r
}

/// `v-<digits>` with a number the workload sent.
fn is_workload_value(v: &str, sent: u64) -> bool {
    v.strip_prefix("v-")
        .and_then(|n| n.parse::<u64>().ok())
        .is_some_and(|n| n < sent && value_of(n) == v)
}

/// The longest stretch after `fault` during which some partition got no acknowledgement.
fn longest_gap(history: &History, fault: Instant) -> (Duration, i32) {
    let mut times: BTreeMap<i32, Vec<Instant>> =
        (0..history.partitions).map(|p| (p, Vec::new())).collect();
    for a in &history.acks {
        if a.at >= fault {
            times.entry(a.partition).or_default().push(a.at);
        }
    }
    let mut worst = (Duration::ZERO, 0);
    for (p, mut ts) in times {
        ts.sort_unstable();
        let mut prev = fault;
        for t in ts.into_iter().chain(std::iter::once(history.stopped)) {
            let gap = t.saturating_duration_since(prev);
            if gap > worst.0 {
                worst = (gap, p);
            }
            prev = t;
        }
    }
    worst
}

/// Prints the summary line; on failure prints the problems, how to rerun and where the logs
/// are, then panics (so the nodes keep their data dirs).
pub(crate) fn finish(scenario: &str, report: &Report, logs: &[PathBuf]) {
    eprintln!("{}", report.summary(scenario));
    if !report.sample_errors.is_empty() {
        eprintln!("  send errors (first distinct): {:?}", report.sample_errors);
    }
    if report.failed() {
        let logs: Vec<String> = logs.iter().map(|p| format!("  {}", p.display())).collect();
        panic!(
            "{}\nproblems:\n  {}\nrerun: {}\nnode logs (data dirs are kept):\n{}",
            report.summary(scenario),
            report.problems.join("\n  "),
            rerun_command(scenario),
            logs.join("\n")
        );
    }
}

/// The command that runs `scenario` alone, with the same run length.
pub(crate) fn rerun_command(scenario: &str) -> String {
    let env = std::env::var("RIVULET_CHAOS_SECONDS")
        .map(|s| format!("RIVULET_CHAOS_SECONDS={s} "))
        .unwrap_or_default();
    format!("{env}cargo test -p rivulet-broker --test chaos {scenario} -- --nocapture")
}
