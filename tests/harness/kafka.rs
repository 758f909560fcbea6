//! In-process Kafka clients (rdkafka/librdkafka, blocking style) and the acknowledged-history
//! checker shared by the Rust tests.
//!
//! The checker's promise is docs/semantics.md's: a record acknowledged with acks=all is read
//! back at its acknowledged (partition, offset), partitions preserve send order, nothing is
//! read twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// One record, as acknowledged by a producer or as read by a consumer. `seq` is the send
/// order (0 for consumed records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) seq: usize,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) key: Option<String>,
    pub(crate) value: Option<String>,
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("create admin client")
}

/// Creates a topic and waits until metadata shows all its partitions.
pub(crate) fn create_topic(bootstrap: &str, name: &str, partitions: i32, config: &[(&str, &str)]) {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in config {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new()
        .request_timeout(Some(Timeout::After(Duration::from_secs(30))))
        .operation_timeout(Some(Timeout::After(Duration::from_secs(30))));
    let results = futures::executor::block_on(admin(bootstrap).create_topics([&topic], &opts))
        .unwrap_or_else(|e| panic!("CreateTopics {name}: {e}"));
    for r in results {
        if let Err((topic, code)) = r {
            panic!("CreateTopics {topic}: {code:?}");
        }
    }
    wait_for_partitions(bootstrap, name, partitions as usize);
}

/// Polls metadata until `topic` shows `partitions` partitions, each with a leader.
pub(crate) fn wait_for_partitions(bootstrap: &str, topic: &str, partitions: usize) {
    let consumer = consumer(bootstrap);
    let mut last = String::from("no metadata yet");
    let waited = super::try_wait_until(
        Duration::from_secs(30),
        &format!("metadata shows {topic} with {partitions} partitions"),
        || match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(md) => {
                let summary: Vec<_> = md
                    .topics()
                    .iter()
                    .map(|t| (t.name().to_string(), t.error(), t.partitions().len()))
                    .collect();
                last = format!("{summary:?}");
                md.topics().iter().any(|t| {
                    t.name() == topic
                        && t.error().is_none()
                        && t.partitions().len() == partitions
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                })
            }
            Err(e) => {
                last = e.to_string();
                false
            }
        },
    );
    if let Err(e) = waited {
        panic!("{e}; last metadata: {last}");
    }
}

/// Records what librdkafka reports for every delivery.
#[derive(Debug, Default, Clone)]
pub(crate) struct DeliveryLog {
    acked: Arc<Mutex<Vec<Record>>>,
    failed: Arc<Mutex<Vec<(usize, String)>>>,
}

impl DeliveryLog {
    pub(crate) fn acked(&self) -> Vec<Record> {
        self.acked.lock().expect("lock").clone()
    }

    pub(crate) fn acked_count(&self) -> usize {
        self.acked.lock().expect("lock").len()
    }

    pub(crate) fn failed(&self) -> Vec<(usize, String)> {
        self.failed.lock().expect("lock").clone()
    }
}

impl ClientContext for DeliveryLog {}

impl ProducerContext for DeliveryLog {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        match result {
            Ok(msg) => self.acked.lock().expect("lock").push(Record {
                seq,
                partition: msg.partition(),
                offset: msg.offset(),
                key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                value: msg
                    .payload()
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
            }),
            Err((e, _)) => self.failed.lock().expect("lock").push((seq, e.to_string())),
        }
    }
}

/// A producer with acks=all (and idempotence unless disabled) that logs every delivery.
pub(crate) struct TestProducer {
    producer: ThreadedProducer<DeliveryLog>,
    log: DeliveryLog,
    next_seq: usize,
}

impl std::fmt::Debug for TestProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestProducer")
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

impl TestProducer {
    pub(crate) fn new(bootstrap: &str, extra: &[(&str, &str)]) -> TestProducer {
        let log = DeliveryLog::default();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        for (k, v) in extra {
            config.set(*k, *v);
        }
        let producer = config
            .create_with_context(log.clone())
            .expect("create producer");
        TestProducer {
            producer,
            log,
            next_seq: 0,
        }
    }

    /// Queues one record (waiting, bounded, while librdkafka's queue is full); returns its seq.
    pub(crate) fn send(&mut self, topic: &str, key: &str, value: &str) -> usize {
        self.send_opt(topic, Some(key), Some(value))
    }

    /// [`TestProducer::send`] with a null key or a null value (a tombstone) where `None`.
    pub(crate) fn send_opt(
        &mut self,
        topic: &str,
        key: Option<&str>,
        value: Option<&str>,
    ) -> usize {
        let seq = self.next_seq;
        self.next_seq += 1;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut record: BaseRecord<'_, str, str, usize> = BaseRecord::with_opaque_to(topic, seq);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return seq,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    record = r;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("queue record seq={seq}: {e}"),
            }
        }
    }

    /// Waits (bounded) until every queued record is acknowledged or failed.
    pub(crate) fn flush(&self, timeout: Duration) -> Result<(), String> {
        self.producer.flush(timeout).map_err(|e| e.to_string())
    }

    pub(crate) fn log(&self) -> &DeliveryLog {
        &self.log
    }

    pub(crate) fn sent(&self) -> usize {
        self.next_seq
    }
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // librdkafka wants a group id to assign partitions; nothing is committed.
        .set("group.id", "rivulet-it-checker")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        // Up to the high watermark, as before the broker knew isolation levels (librdkafka's
        // default is read_committed, which stops at the last stable offset).
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("create consumer")
}

/// Reads every partition of `topic` from offset 0 up to the high watermark seen at the start.
pub(crate) fn consume_all(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> BTreeMap<i32, Vec<Record>> {
    let consumer = consumer(bootstrap);
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata for {topic}: {e}"));
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .unwrap_or_else(|| panic!("topic {topic} not in metadata"))
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    assert!(!partitions.is_empty(), "topic {topic} has no partitions");
    let mut high = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        let (lo, hi) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"));
        assert_eq!(lo, 0, "log start offset of {topic}/{p}");
        high.insert(p, hi);
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("add partition");
    }
    let mut out: BTreeMap<i32, Vec<Record>> = partitions.iter().map(|&p| (p, Vec::new())).collect();
    let mut pending: Vec<i32> = partitions.iter().copied().filter(|p| high[p] > 0).collect();
    if pending.is_empty() {
        return out;
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "consuming {topic} timed out after {timeout:?}; high watermarks {high:?}, read so far {:?}",
            out.iter().map(|(p, r)| (*p, r.len())).collect::<Vec<_>>()
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => panic!("consume {topic}: {e}"),
            Some(Ok(msg)) => {
                let p = msg.partition();
                out.get_mut(&p).expect("assigned partition").push(Record {
                    seq: 0,
                    partition: p,
                    offset: msg.offset(),
                    key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: msg
                        .payload()
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                });
                if msg.offset() + 1 >= high[&p] {
                    pending.retain(|&q| q != p);
                }
            }
        }
    }
    out
}

/// Compares acknowledged records with what was read back. Returns the problems found (at most
/// 50); empty means the history checks out. With `exact`, records read that were never
/// acknowledged are problems too.
pub(crate) fn verify(
    acked: &[Record],
    consumed: &BTreeMap<i32, Vec<Record>>,
    exact: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut note = |msg: String| {
        if problems.len() < 50 {
            problems.push(msg);
        }
    };
    let mut by_position = HashMap::new();
    let mut seen_values: HashMap<&str, (i32, i64)> = HashMap::new();
    for (p, records) in consumed {
        let mut last = -1;
        for r in records {
            if r.offset <= last {
                note(format!(
                    "partition {p}: offset {} read after {last}",
                    r.offset
                ));
            }
            last = r.offset;
            by_position.insert((*p, r.offset), r);
            if let Some(v) = r.value.as_deref() {
                if let Some(first) = seen_values.insert(v, (*p, r.offset)) {
                    note(format!(
                        "duplicate value {v:?} at {p}:{}, first at {first:?}",
                        r.offset
                    ));
                }
            }
        }
    }
    for a in acked {
        match by_position.get(&(a.partition, a.offset)) {
            None => note(format!(
                "acknowledged seq={} missing at {}:{}",
                a.seq, a.partition, a.offset
            )),
            Some(r) if (&r.key, &r.value) != (&a.key, &a.value) => note(format!(
                "acknowledged seq={} at {}:{}: expected {:?}={:?}, read {:?}={:?}",
                a.seq, a.partition, a.offset, a.key, a.value, r.key, r.value
            )),
            Some(_) => {}
        }
    }
    let mut in_send_order: Vec<&Record> = acked.iter().collect();
    in_send_order.sort_by_key(|r| r.seq);
    let mut last_by_partition: HashMap<i32, &Record> = HashMap::new();
    for r in in_send_order {
        if let Some(prev) = last_by_partition.insert(r.partition, r) {
            if r.offset <= prev.offset {
                note(format!(
                    "partition {}: seq={} at offset {} but earlier seq={} at offset {}",
                    r.partition, r.seq, r.offset, prev.seq, prev.offset
                ));
            }
        }
    }
    if exact {
        let acked_values: std::collections::HashSet<&str> =
            acked.iter().filter_map(|a| a.value.as_deref()).collect();
        let extra = seen_values
            .keys()
            .filter(|v| !acked_values.contains(*v))
            .count();
        if extra > 0 {
            note(format!("{extra} records read that were never acknowledged"));
        }
    }
    problems
}

/// Panics with the problems (and counts) unless [`verify`] finds none.
pub(crate) fn assert_history(acked: &[Record], consumed: &BTreeMap<i32, Vec<Record>>, exact: bool) {
    let problems = verify(acked, consumed, exact);
    let read: usize = consumed.values().map(Vec::len).sum();
    assert!(
        problems.is_empty(),
        "history check failed: {} acknowledged, {read} read back:\n  {}",
        acked.len(),
        problems.join("\n  ")
    );
}

/// A unique value for send-order `seq` (values double as duplicate detectors).
pub(crate) fn value_for(seq: usize) -> String {
    format!("v-{seq:08}-rivulet")
}

pub(crate) fn key_for(seq: usize) -> String {
    format!("key-{:04}", seq % 257)
}

/// Polls DescribeGroups until `group` is Stable with `members` members of `protocol_type` and
/// `protocol` (a JVM application's group: Connect's "connect"/"sessioned", Streams'
/// "consumer"/"stream"); returns what was seen. Panics with the last description otherwise.
pub(crate) fn wait_for_stable_group(
    bootstrap: &str,
    group: &str,
    protocol_type: &str,
    protocol: &str,
    members: usize,
    timeout: Duration,
) -> String {
    let consumer = consumer(bootstrap);
    let mut described = String::from("not listed yet");
    let waited = super::try_wait_until(
        timeout,
        &format!("{group} is Stable with {members} members of {protocol_type}/{protocol}"),
        || {
            let Ok(list) = consumer.fetch_group_list(Some(group), Duration::from_secs(5)) else {
                return false;
            };
            list.groups().iter().any(|g| {
                described = format!(
                    "{} {} {} {} members",
                    g.state(),
                    g.protocol_type(),
                    g.protocol(),
                    g.members().len()
                );
                g.name() == group
                    && g.state() == "Stable"
                    && g.protocol_type() == protocol_type
                    && g.protocol() == protocol
                    && g.members().len() == members
            })
        },
    );
    if let Err(e) = waited {
        panic!("{e}; last seen: {described}");
    }
    described
}

/// A topic's configs as the cluster describes them (DescribeConfigs: key → value).
pub(crate) fn topic_configs(bootstrap: &str, topic: &str) -> BTreeMap<String, String> {
    let opts = AdminOptions::new().request_timeout(Some(Timeout::After(Duration::from_secs(30))));
    let results = futures::executor::block_on(
        admin(bootstrap).describe_configs([&ResourceSpecifier::Topic(topic)], &opts),
    )
    .unwrap_or_else(|e| panic!("DescribeConfigs {topic}: {e}"));
    let resource = results
        .into_iter()
        .next()
        .expect("one resource")
        .unwrap_or_else(|e| panic!("DescribeConfigs {topic}: {e:?}"));
    resource
        .entries
        .into_iter()
        .filter_map(|e| Some((e.name, e.value?)))
        .collect()
}
