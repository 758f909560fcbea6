//! What the Kafka server records as it serves: request counts, errors and latencies per API,
//! bytes and records in and out per topic, connection counts.
//!
//! ```text
//!  server::serve ──accept/refuse/close──▶ Metrics.connections (atomics)
//!  connection::handle_frame ──api, elapsed, response──▶ Metrics.request (atomics per API key;
//!                                                       error codes behind a lock, errors only)
//!  handlers::produce / fetch ──topic, bytes, records──▶ Metrics.topic (per-topic atomics,
//!                                                       looked up lock-free through an ArcSwap)
//!                         ▲
//!  admin_http (GET /metrics) reads them at scrape time, with gauges computed from live state.
//! ```
//! Recording is cheap on purpose: a few relaxed atomic adds per request, no allocation, no
//! lock except the first time a topic is seen and when a response carries an error code. This
//! module knows nothing about HTTP or the exposition format; `admin_http` does the rest.

pub mod responses;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

/// Upper bounds (seconds) of the request latency histogram buckets; the last bucket is +Inf.
/// From a cached metadata answer (sub-millisecond) to a long-polling fetch (up to
/// `fetch_wait_max_ms`, 30 s by default).
pub const LATENCY_BUCKETS_SECONDS: [f64; 16] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];

/// The same bounds in nanoseconds, for the comparison on the request path.
const LATENCY_BUCKETS_NANOS: [u64; 16] = {
    let mut out = [0u64; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = (LATENCY_BUCKETS_SECONDS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

/// API keys below this get counters (Kafka's keys are below 100 today); others are not
/// counted (no request with such a key reaches a handler: they are refused as unsupported).
pub const API_KEYS_MAX: usize = 128;

/// Request figures of one Kafka API.
#[derive(Debug, Default)]
pub struct ApiFigures {
    requests: AtomicU64,
    /// Per-bucket (not cumulative) counts; the extra last slot is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS_SECONDS.len() + 1],
    duration_nanos: AtomicU64,
}

/// A copy of one API's figures, taken at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiSnapshot {
    /// The API key.
    pub api_key: i16,
    /// Requests answered (or, for acks=0 produce, handled).
    pub requests: u64,
    /// Per-bucket counts; index i counts durations in (bound[i-1], bound[i]]; the last is +Inf.
    pub buckets: Vec<u64>,
    /// Sum of the durations, seconds.
    pub duration_seconds_sum: f64,
}

/// Bytes and records through one topic.
#[derive(Debug, Default)]
pub struct TopicFigures {
    /// Record batch bytes appended by producers (as leader; replication is not counted).
    pub bytes_in: AtomicU64,
    /// Records appended by producers.
    pub records_in: AtomicU64,
    /// Record batch bytes returned to fetching consumers.
    pub bytes_out: AtomicU64,
    /// Records in the batches returned to fetching consumers.
    pub records_out: AtomicU64,
}

/// Client connections of the Kafka listener.
#[derive(Debug, Default)]
pub struct ConnectionFigures {
    /// Open now.
    pub open: AtomicI64,
    /// Accepted since start.
    pub accepted: AtomicU64,
    /// Refused because the node had `connections_max` open.
    pub refused_node_limit: AtomicU64,
    /// Refused because the address had `connections_per_ip_max` open.
    pub refused_ip_limit: AtomicU64,
}

/// Counts a connection as open until dropped.
#[derive(Debug)]
pub struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The node's recorded figures. One per node, shared by every connection.
#[derive(Debug)]
pub struct Metrics {
    apis: Box<[ApiFigures]>,
    /// (api key, error code) -> responses (or partitions in them) with that code. Touched only
    /// for non-zero codes, so the lock is off the path of successful requests.
    errors: Mutex<BTreeMap<(i16, i16), u64>>,
    /// Read on every produce and fetch without a lock; replaced (copy, insert, swap) under
    /// `topics_write` when a topic is seen for the first time.
    topics: ArcSwap<HashMap<Arc<str>, Arc<TopicFigures>>>,
    topics_write: Mutex<()>,
    /// Connection counts.
    pub connections: ConnectionFigures,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            apis: (0..API_KEYS_MAX).map(|_| ApiFigures::default()).collect(),
            errors: Mutex::new(BTreeMap::new()),
            topics: ArcSwap::from_pointee(HashMap::new()),
            topics_write: Mutex::new(()),
            connections: ConnectionFigures::default(),
        }
    }
}

impl Metrics {
    /// A fresh set of figures.
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Records one handled request of `api_key` that took `elapsed`.
    pub fn request(&self, api_key: i16, elapsed: Duration) {
        let Some(api) = usize::try_from(api_key).ok().and_then(|k| self.apis.get(k)) else {
            return;
        };
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_NANOS.partition_point(|&b| b < nanos);
        api.requests.fetch_add(1, Ordering::Relaxed);
        api.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        api.duration_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Records the error codes a response of `api_key` carries (zeros are ignored).
    pub fn errors(&self, api_key: i16, codes: impl IntoIterator<Item = i16>) {
        let mut codes = codes.into_iter().filter(|&c| c != 0).peekable();
        if codes.peek().is_none() {
            return;
        }
        let mut errors = self.errors.lock();
        for c in codes {
            *errors.entry((api_key, c)).or_insert(0) += 1;
        }
    }

    /// Counts a produced append to `topic`.
    pub fn produced(&self, topic: &str, bytes: usize, records: u64) {
        self.with_topic(topic, |t| {
            t.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
            t.records_in.fetch_add(records, Ordering::Relaxed);
        });
    }

    /// Counts record batches returned to a consumer from `topic`.
    pub fn fetched(&self, topic: &str, batches: &[u8]) {
        self.fetched_counts(topic, batches.len() as u64, count_records(batches));
    }

    /// Counts `bytes` of record batches holding `records` records sent to consumers of
    /// `topic` (records sent from files, which the broker never holds in memory).
    pub fn fetched_counts(&self, topic: &str, bytes: u64, records: u64) {
        if bytes == 0 {
            return;
        }
        self.with_topic(topic, |t| {
            t.bytes_out.fetch_add(bytes, Ordering::Relaxed);
            t.records_out.fetch_add(records, Ordering::Relaxed);
        });
    }

    /// Counts an accepted connection; it stays open until the guard drops.
    pub fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.connections.accepted.fetch_add(1, Ordering::Relaxed);
        self.connections.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }

    /// Runs `f` on the figures of `topic`, created on first use. The common case is one
    /// atomic load of the map and a hash lookup by `&str`: no lock, no allocation.
    fn with_topic(&self, topic: &str, f: impl FnOnce(&TopicFigures)) {
        if let Some(t) = self.topics.load().get(topic) {
            return f(t);
        }
        f(&self.insert_topic(topic));
    }

    #[cold]
    fn insert_topic(&self, topic: &str) -> Arc<TopicFigures> {
        let _w = self.topics_write.lock();
        let current = self.topics.load_full();
        if let Some(t) = current.get(topic) {
            return t.clone();
        }
        let mut next = HashMap::clone(&current);
        let t = Arc::new(TopicFigures::default());
        next.insert(Arc::from(topic), t.clone());
        self.topics.store(Arc::new(next));
        t
    }

    /// Forgets topics for which `keep` is false (deleted ones), so the set stays bounded by
    /// the topics that exist.
    pub fn retain_topics(&self, keep: impl Fn(&str) -> bool) {
        let _w = self.topics_write.lock();
        let current = self.topics.load_full();
        if current.keys().all(|k| keep(k)) {
            return;
        }
        let next: HashMap<_, _> = current
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.topics.store(Arc::new(next));
    }

    /// Every API with at least one request.
    pub fn api_snapshots(&self) -> Vec<ApiSnapshot> {
        self.apis
            .iter()
            .enumerate()
            .filter(|(_, a)| a.requests.load(Ordering::Relaxed) > 0)
            .map(|(key, a)| ApiSnapshot {
                api_key: key as i16,
                requests: a.requests.load(Ordering::Relaxed),
                buckets: a
                    .buckets
                    .iter()
                    .map(|b| b.load(Ordering::Relaxed))
                    .collect(),
                duration_seconds_sum: a.duration_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            })
            .collect()
    }

    /// (api key, error code, count), sorted.
    pub fn error_counts(&self) -> Vec<(i16, i16, u64)> {
        self.errors
            .lock()
            .iter()
            .map(|(&(api, code), &n)| (api, code, n))
            .collect()
    }

    /// (topic, figures), sorted by topic.
    pub fn topic_figures(&self) -> Vec<(Arc<str>, Arc<TopicFigures>)> {
        let mut out: Vec<_> = self
            .topics
            .load()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Records in a run of Kafka record batches (v2: the count sits at byte 57 of each batch; a
/// batch's size is 12 + its length field at byte 8). A truncated tail is not counted.
pub fn count_records(mut batches: &[u8]) -> u64 {
    const LENGTH_AT: usize = 8;
    const COUNT_AT: usize = 57;
    let mut records = 0u64;
    while batches.len() >= COUNT_AT + 4 {
        let len = i32::from_be_bytes([
            batches[LENGTH_AT],
            batches[LENGTH_AT + 1],
            batches[LENGTH_AT + 2],
            batches[LENGTH_AT + 3],
        ]);
        let Some(size) = usize::try_from(len).ok().and_then(|l| l.checked_add(12)) else {
            break;
        };
        if size > batches.len() {
            break;
        }
        let count = i32::from_be_bytes([
            batches[COUNT_AT],
            batches[COUNT_AT + 1],
            batches[COUNT_AT + 2],
            batches[COUNT_AT + 3],
        ]);
        records += u64::try_from(count).unwrap_or(0);
        batches = &batches[size..];
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: i32, body: usize) -> Vec<u8> {
        let mut b = vec![0u8; 61 + body];
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[57..61].copy_from_slice(&records.to_be_bytes());
        b
    }

    #[test]
    fn latencies_land_in_their_bucket() {
        let m = Metrics::default();
        m.request(0, Duration::from_micros(50)); // <= 0.1 ms
        m.request(0, Duration::from_micros(100)); // exactly on a bound: that bucket (le)
        m.request(0, Duration::from_millis(3)); // (2.5 ms, 5 ms]
        m.request(0, Duration::from_secs(60)); // +Inf
        m.request(-1, Duration::from_secs(1)); // not an API: ignored
        m.request(500, Duration::from_secs(1));
        let s = m.api_snapshots();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].requests, 4);
        assert_eq!(s[0].buckets[0], 2);
        assert_eq!(s[0].buckets[4], 1);
        assert_eq!(*s[0].buckets.last().unwrap(), 1);
        assert_eq!(s[0].buckets.iter().sum::<u64>(), 4);
        assert!((s[0].duration_seconds_sum - 60.00315).abs() < 1e-6);
    }

    #[test]
    fn errors_are_counted_by_api_and_code() {
        let m = Metrics::default();
        m.errors(0, [0, 0]);
        m.errors(0, [6, 0, 6]);
        m.errors(1, [3]);
        assert_eq!(m.error_counts(), vec![(0, 6, 2), (1, 3, 1)]);
    }

    #[test]
    fn topics_are_created_once_and_pruned() {
        let m = Metrics::default();
        m.produced("a", 100, 3);
        m.produced("a", 50, 2);
        let mut two = batch(2, 10);
        two.extend(batch(5, 0));
        m.fetched("b", &two);
        let t = m.topic_figures();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].1.bytes_in.load(Ordering::Relaxed), 150);
        assert_eq!(t[0].1.records_in.load(Ordering::Relaxed), 5);
        assert_eq!(t[1].1.records_out.load(Ordering::Relaxed), 7);
        assert_eq!(t[1].1.bytes_out.load(Ordering::Relaxed), two.len() as u64);
        m.retain_topics(|t| t != "a");
        assert_eq!(m.topic_figures().len(), 1);
    }

    #[test]
    fn record_counts_stop_at_a_truncated_batch() {
        let mut b = batch(4, 3);
        let whole = b.len();
        b.extend(batch(9, 0));
        assert_eq!(count_records(&b), 13);
        assert_eq!(count_records(&b[..whole + 20]), 4);
        assert_eq!(count_records(&[]), 0);
        let mut bad = batch(1, 0);
        bad[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(count_records(&bad), 0);
    }

    #[test]
    fn connections_open_until_the_guard_drops() {
        let m = Metrics::new();
        let a = m.connection_opened();
        let _b = m.connection_opened();
        drop(a);
        assert_eq!(m.connections.open.load(Ordering::Relaxed), 1);
        assert_eq!(m.connections.accepted.load(Ordering::Relaxed), 2);
    }
}
