//! The native producer: records are collected per partition for up to `linger_ms` (or until
//! a batch reaches `batch_bytes_max`), then each partition's records go to its leader as one
//! record batch, encoded by the shared codec in `rivulet_storage::batch`.
//!
//! ```text
//!  send() ─ partition (explicit, or CRC-32 of the key as librdkafka) ─▶ pending[tp] ─┐
//!    ▲ resolved with the record's offset                                             │
//!    │                       flusher task: wait linger (or a full batch), take all   │
//!    └───────────── per partition, one batch in flight: append(acks, timeout) ◀──────┘
//! ```
//!
//! **Idempotence** (on by default): the producer gets a producer id from the controller
//! (the path the Kafka InitProducerId handler takes), and numbers each partition's records
//! from 0. A batch is retried with its own sequence numbers, so the leader stores it once.
//! When the outcome of a batch stays unknown (a timeout), the producer takes a fresh
//! producer id, so a later batch can never be taken for a duplicate of it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rand::Rng;
use rivulet_actors::TopicPartition;
use rivulet_cluster::forward::{
    Acks, ForwardError, ForwardReply, ForwardRequest, Forwarder, APPEND_BYTES_MAX,
};
use rivulet_storage::batch::{BatchBuilder, Compression};
use tokio::sync::{oneshot, Notify};
use tracing::debug;

use super::{ClientError, ClientResult};

/// Settings of a [`Producer`].
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Acknowledgement level of every batch.
    pub acks: Acks,
    /// How long records wait for more records of their partition before they go (ms).
    pub linger_ms: u64,
    /// A partition's batch goes as soon as its records take this many bytes (at most
    /// 4 MiB, what one cluster message may carry).
    pub batch_bytes_max: usize,
    /// Producer id and sequence numbers, so a retried batch is stored once.
    pub idempotent: bool,
    /// Codec of the batches.
    pub compression: Compression,
    /// How long one batch may take, retries after leader changes included, and how long
    /// an `acks=All` append waits for the in-sync replicas (ms).
    pub request_timeout_ms: u64,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            acks: Acks::All,
            linger_ms: 5,
            batch_bytes_max: 1 << 20,
            idempotent: true,
            compression: Compression::None,
            request_timeout_ms: 30_000,
        }
    }
}

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    /// Topic name.
    pub topic: String,
    /// The partition; `None`: by key (CRC-32 as librdkafka), random without a key.
    pub partition: Option<i32>,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Timestamp (ms since the epoch); `None`: now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a key and a value for `topic`.
    pub fn new(
        topic: impl Into<String>,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Self {
        ProducerRecord {
            topic: topic.into(),
            key: Some(key.into()),
            value: Some(value.into()),
            ..ProducerRecord::default()
        }
    }

    /// The same record, for an explicit partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// The same record with one more header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((key.into(), Some(value.into())));
        self
    }
}

/// Where a record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Partition index.
    pub partition: i32,
    /// Offset (-1 with `Acks::None`).
    pub offset: i64,
    /// The timestamp the record was sent with.
    pub timestamp: i64,
}

/// The partition librdkafka's default partitioner (`consistent_random`) picks for a
/// non-empty key: CRC-32 (IEEE, as zlib) of the key modulo the partition count. Empty and
/// null keys go to a random partition.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    debug_assert!(partitions > 0);
    (crc32fast::hash(key) % partitions.max(1) as u32) as i32
}

type Waiter = oneshot::Sender<ClientResult<RecordMetadata>>;

/// A record waiting for its batch.
#[derive(Debug)]
struct Record {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Producer id, epoch and first sequence number of a batch.
#[derive(Debug, Clone, Copy)]
struct ProducerStamp {
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

/// One record batch of `records` with the shared codec (`storage::batch`).
fn encode_batch(records: &[Record], codec: Compression, stamp: Option<ProducerStamp>) -> Vec<u8> {
    let base = records.first().map_or(0, |r| r.timestamp);
    let mut b = BatchBuilder::new(base).compression(codec);
    if let Some(s) = stamp {
        b = b.producer(s.producer_id, s.producer_epoch, s.base_sequence);
    }
    for r in records {
        let headers: Vec<(&[u8], Option<&[u8]>)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_deref()))
            .collect();
        b.push_record(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers);
    }
    b.build()
}

#[derive(Debug, Default)]
struct Pending {
    records: Vec<Record>,
    waiters: Vec<Waiter>,
    bytes: usize,
}

#[derive(Debug)]
struct State {
    pending: HashMap<TopicPartition, Pending>,
    /// Next sequence number per partition (idempotent producers).
    sequences: HashMap<TopicPartition, i32>,
    /// Producer id and epoch once allocated.
    producer: Option<(i64, i16)>,
    /// A round of batches is in flight.
    busy: bool,
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    fwd: Forwarder,
    config: ProducerConfig,
    state: Mutex<State>,
    /// Wakes the flusher: a first record arrived, a batch is full, or close.
    wake: Notify,
    /// Set when a batch is full: flush without waiting for the linger.
    full: std::sync::atomic::AtomicBool,
    /// Counts finished rounds, for `flush`.
    rounds: tokio::sync::watch::Sender<u64>,
}

/// Sends records to partition leaders in batches. Cheap to clone; clones share batches.
/// [`Producer::close`] sends what is pending and waits for it; dropping the last clone sends
/// what is pending in the background and stops the flusher.
#[derive(Debug, Clone)]
pub struct Producer {
    shared: Arc<Shared>,
    _last: Arc<CloseOnDrop>,
}

/// Stops the flusher once the last clone of a producer is gone (it would otherwise wait
/// forever, keeping the node's controller, and so its store, alive).
#[derive(Debug)]
struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.state.lock().closed = true;
        self.0.wake.notify_one();
    }
}

impl Producer {
    pub(crate) fn new(fwd: Forwarder, mut config: ProducerConfig) -> Producer {
        config.batch_bytes_max = config.batch_bytes_max.clamp(1, APPEND_BYTES_MAX / 2);
        let shared = Arc::new(Shared {
            fwd,
            config,
            state: Mutex::new(State {
                pending: HashMap::new(),
                sequences: HashMap::new(),
                producer: None,
                busy: false,
                closed: false,
            }),
            wake: Notify::new(),
            full: std::sync::atomic::AtomicBool::new(false),
            rounds: tokio::sync::watch::channel(0).0,
        });
        tokio::spawn(flusher(shared.clone()));
        Producer {
            _last: Arc::new(CloseOnDrop(shared.clone())),
            shared,
        }
    }

    /// Sends one record; resolves once it is acknowledged at the configured level (after the
    /// linger). Many concurrent sends share batches.
    pub async fn send(&self, record: ProducerRecord) -> ClientResult<RecordMetadata> {
        let rx = self.enqueue(record)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Queues one record and returns at once; the receiver gets the outcome. For sending
    /// many records without awaiting each.
    pub fn enqueue(
        &self,
        record: ProducerRecord,
    ) -> ClientResult<oneshot::Receiver<ClientResult<RecordMetadata>>> {
        let shared = &self.shared;
        // The partition count from the metadata image (an `Arc`: no copy of the topic's
        // configs per record).
        let partitions = shared
            .fwd
            .controller()
            .image()
            .topics
            .get(&record.topic)
            .map(|t| t.partitions.len() as i32)
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                ClientError::Partition(ForwardError::UnknownTopicOrPartition {
                    topic: record.topic.clone(),
                    partition: record.partition.unwrap_or(-1),
                })
            })?;
        let partition = match (record.partition, record.key.as_deref()) {
            (Some(p), _) => {
                if p < 0 || p >= partitions {
                    return Err(ClientError::Partition(
                        ForwardError::UnknownTopicOrPartition {
                            topic: record.topic,
                            partition: p,
                        },
                    ));
                }
                p
            }
            (None, Some(key)) if !key.is_empty() => partition_for_key(key, partitions),
            (None, _) => rand::thread_rng().gen_range(0..partitions),
        };
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let size = 32
            + record.key.as_ref().map_or(0, Vec::len)
            + record.value.as_ref().map_or(0, Vec::len)
            + record
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + 8)
                .sum::<usize>();
        if size > APPEND_BYTES_MAX / 2 {
            return Err(ClientError::Partition(ForwardError::TooLarge {
                bytes: size as u64,
                max: (APPEND_BYTES_MAX / 2) as u64,
            }));
        }
        let (tx, rx) = oneshot::channel();
        let tp = TopicPartition::new(record.topic.as_str(), partition);
        let (first, full) = {
            let mut st = shared.state.lock();
            if st.closed {
                return Err(ClientError::Closed);
            }
            let first = st.pending.is_empty();
            let p = st.pending.entry(tp).or_default();
            p.records.push(Record {
                timestamp,
                key: record.key,
                value: record.value,
                headers: record.headers,
            });
            p.waiters.push(tx);
            p.bytes += size;
            (first, p.bytes >= shared.config.batch_bytes_max)
        };
        if full {
            shared
                .full
                .store(true, std::sync::atomic::Ordering::Release);
        }
        if first || full {
            shared.wake.notify_one();
        }
        Ok(rx)
    }

    /// Sends everything queued so far and waits for it.
    pub async fn flush(&self) {
        let mut rounds = self.shared.rounds.subscribe();
        loop {
            {
                let st = self.shared.state.lock();
                if st.pending.is_empty() && !st.busy {
                    return;
                }
            }
            rounds.borrow_and_update();
            // No linger for what is queued now.
            self.shared
                .full
                .store(true, std::sync::atomic::Ordering::Release);
            self.shared.wake.notify_one();
            if rounds.changed().await.is_err() {
                return;
            }
        }
    }

    /// Sends what is queued, then stops the flusher; later sends fail with `Closed`.
    pub async fn close(self) {
        self.flush().await;
        self.shared.state.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn flusher(shared: Arc<Shared>) {
    let linger = Duration::from_millis(shared.config.linger_ms);
    loop {
        let (empty, closed) = {
            let st = shared.state.lock();
            (st.pending.is_empty(), st.closed)
        };
        if closed && empty {
            return;
        }
        if empty {
            shared.wake.notified().await;
            continue;
        }
        if !shared.full.swap(false, std::sync::atomic::Ordering::AcqRel) && !linger.is_zero() {
            // Either the linger passes or a batch fills up first.
            let _ = tokio::time::timeout(linger, shared.wake.notified()).await;
            shared
                .full
                .store(false, std::sync::atomic::Ordering::Release);
        }
        let batches: Vec<(TopicPartition, Pending)> = {
            let mut st = shared.state.lock();
            st.busy = true;
            st.pending.drain().collect()
        };
        let mut sends = tokio::task::JoinSet::new();
        for (tp, pending) in batches {
            let shared = shared.clone();
            sends.spawn(async move { send_batch(&shared, tp, pending).await });
        }
        // One batch in flight per partition: the next round waits for this one, which keeps
        // each partition's records in send order.
        while sends.join_next().await.is_some() {}
        shared.state.lock().busy = false;
        shared.rounds.send_modify(|r| *r += 1);
    }
}

async fn producer_stamp(
    shared: &Shared,
    tp: &TopicPartition,
    count: i32,
) -> ClientResult<Option<ProducerStamp>> {
    if !shared.config.idempotent {
        return Ok(None);
    }
    let known = shared.state.lock().producer;
    let (producer_id, producer_epoch) = match known {
        Some(p) => p,
        None => {
            let id = shared.fwd.controller().allocate_producer_id().await?;
            let mut st = shared.state.lock();
            *st.producer.get_or_insert((id, 0))
        }
    };
    let mut st = shared.state.lock();
    let seq = st.sequences.entry(tp.clone()).or_insert(0);
    let base_sequence = *seq;
    *seq = rivulet_storage::batch::increment_sequence(*seq, count);
    Ok(Some(ProducerStamp {
        producer_id,
        producer_epoch,
        base_sequence,
    }))
}

async fn send_batch(shared: &Shared, tp: TopicPartition, pending: Pending) {
    let Pending {
        records,
        mut waiters,
        ..
    } = pending;
    let count = records.len() as i32;
    if shared.config.acks == Acks::None {
        // acks=none: the sender does not wait; the batch still goes in this round.
        for (w, r) in waiters.drain(..).zip(&records) {
            let _ = w.send(Ok(RecordMetadata {
                partition: tp.partition,
                offset: -1,
                timestamp: r.timestamp,
            }));
        }
    }
    let result = async {
        let stamp = producer_stamp(shared, &tp, count).await?;
        let batch = encode_batch(&records, shared.config.compression, stamp);
        let reply = shared
            .fwd
            .request(ForwardRequest::Append {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                records: batch,
                acks: shared.config.acks,
                timeout_ms: u32::try_from(shared.config.request_timeout_ms).unwrap_or(u32::MAX),
            })
            .await;
        match reply {
            Ok(ForwardReply::Appended(a)) => Ok(a.base_offset),
            Ok(other) => Err(ClientError::Partition(ForwardError::Storage(format!(
                "unexpected answer: {other:?}"
            )))),
            Err(e) => {
                if shared.config.idempotent && may_have_appended(&e) {
                    // The batch may be in the log: a fresh producer id keeps a later batch
                    // with the same sequence numbers from being taken for it.
                    debug!(%tp, error = %e, "batch outcome unknown; new producer id next");
                    let mut st = shared.state.lock();
                    st.producer = None;
                    st.sequences.clear();
                } else if shared.config.idempotent {
                    // Not appended: the numbers are free again for the next batch.
                    let mut st = shared.state.lock();
                    if let Some(seq) = st.sequences.get_mut(&tp) {
                        *seq = rivulet_storage::batch::increment_sequence(*seq, -count);
                    }
                }
                Err(e.into())
            }
        }
    }
    .await;
    for (i, (w, r)) in waiters.into_iter().zip(&records).enumerate() {
        let out = match &result {
            Ok(base) => Ok(RecordMetadata {
                partition: tp.partition,
                offset: if *base < 0 { -1 } else { base + i as i64 },
                timestamp: r.timestamp,
            }),
            Err(e) => Err(clone_error(e)),
        };
        let _ = w.send(out);
    }
}

fn may_have_appended(e: &ForwardError) -> bool {
    matches!(
        e,
        ForwardError::Timeout(_)
            | ForwardError::NotEnoughReplicasAfterAppend(_)
            | ForwardError::Storage(_)
            | ForwardError::LeadershipMoved(_)
            | ForwardError::NotLeader { .. }
            | ForwardError::Unreachable(_)
    )
}

fn clone_error(e: &ClientError) -> ClientError {
    match e {
        ClientError::Partition(f) => ClientError::Partition(f.clone()),
        ClientError::Controller(c) => ClientError::Metadata(c.to_string()),
        ClientError::Metadata(c) => ClientError::Metadata(c.to_string()),
        ClientError::Group(s) => ClientError::Group(s.clone()),
        ClientError::InvalidArgument(s) => ClientError::InvalidArgument(s.clone()),
        ClientError::Closed => ClientError::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_as_zlib_crc32() {
        // crc32("123456789") = 0xCBF43926, the IEEE check value librdkafka's rd_crc32 gives.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            partition_for_key(b"123456789", 7),
            (0xCBF4_3926u32 % 7) as i32
        );
    }
}
