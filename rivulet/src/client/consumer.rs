//! The native consumer: assigned partitions, positions it moves itself, and polls that read
//! from each partition's leader (long polls: a poll with nothing to read waits on the high
//! watermark, it does not spin).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rivulet_actors::TopicPartition;
use rivulet_cluster::forward::{
    ForwardError, ForwardReply, ForwardRequest, Forwarder, OffsetSpec, READ_BYTES_MAX,
};
use rivulet_storage::batch::decode_batches;
use tokio::task::JoinSet;

use super::{ClientError, ClientResult};

/// Where a partition without a position starts, and where one whose position fell out of
/// the log (retention) goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoOffsetReset {
    /// The log start offset.
    #[default]
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
}

/// Settings of a [`Consumer`].
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Most bytes of batches one read of one partition returns (capped at 1 MiB; a single
    /// larger batch still comes whole).
    pub max_partition_bytes: u32,
    /// Where to start without a position.
    pub auto_offset_reset: AutoOffsetReset,
    /// How long one operation may take, retries after leader changes included (ms).
    pub request_timeout_ms: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            max_partition_bytes: READ_BYTES_MAX,
            auto_offset_reset: AutoOffsetReset::Earliest,
            request_timeout_ms: 30_000,
        }
    }
}

/// One record as a consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Timestamp (ms since the epoch).
    pub timestamp: i64,
    /// Key (`None`: null).
    pub key: Option<Vec<u8>>,
    /// Value (`None`: null, a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Reads assigned partitions from positions it keeps. Not shared between tasks: `poll`
/// takes `&mut self`.
#[derive(Debug)]
pub struct Consumer {
    fwd: Forwarder,
    config: ConsumerConfig,
    /// Assigned partitions and their positions (`None` until resolved).
    positions: BTreeMap<TopicPartition, Option<i64>>,
    /// Records read but not yet returned (a poll returns at most `max_poll_records`).
    buffered: VecDeque<ConsumerRecord>,
}

/// Most bytes one compressed batch may decompress to (64 × the 1 MiB default
/// `max.message.bytes`, the bound the leader's validation uses).
const DECOMPRESSED_BYTES_MAX: u64 = 64 << 20;

/// Most records one poll returns.
const MAX_POLL_RECORDS: usize = 10_000;

impl Consumer {
    pub(crate) fn new(fwd: Forwarder, config: ConsumerConfig) -> Consumer {
        Consumer {
            fwd,
            config,
            positions: BTreeMap::new(),
            buffered: VecDeque::new(),
        }
    }

    /// Replaces the assignment. Partitions kept keep their positions; new ones start per
    /// [`ConsumerConfig::auto_offset_reset`] unless you seek.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        let old = std::mem::take(&mut self.positions);
        for tp in partitions {
            let pos = old.get(&tp).copied().flatten();
            self.positions.insert(tp, pos);
        }
        self.buffered.retain(|r| {
            old.contains_key(&TopicPartition::new(r.topic.clone(), r.partition))
                && self
                    .positions
                    .contains_key(&TopicPartition::new(r.topic.clone(), r.partition))
        });
    }

    /// Assigns every partition of `topic` (as the metadata knows it now).
    pub fn assign_topic(&mut self, topic: &str) -> ClientResult<()> {
        let meta = self.fwd.controller().topic(topic).ok_or_else(|| {
            ClientError::Partition(ForwardError::UnknownTopicOrPartition {
                topic: topic.to_string(),
                partition: -1,
            })
        })?;
        let mut all: Vec<TopicPartition> = self.positions.keys().cloned().collect();
        all.extend((0..meta.partitions).map(|p| TopicPartition::new(topic, p)));
        self.assign(all);
        Ok(())
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    /// The offset of the next record `poll` returns from `tp`, once known.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.positions.get(tp).copied().flatten()
    }

    fn check_assigned(&self, tp: &TopicPartition) -> ClientResult<()> {
        if self.positions.contains_key(tp) {
            Ok(())
        } else {
            Err(ClientError::InvalidArgument(format!(
                "{tp} is not assigned to this consumer"
            )))
        }
    }

    fn set_position(&mut self, tp: &TopicPartition, offset: i64) {
        self.positions.insert(tp.clone(), Some(offset));
        self.buffered
            .retain(|r| !(r.partition == tp.partition && r.topic == tp.topic));
    }

    /// The next poll reads `tp` from `offset`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> ClientResult<()> {
        self.check_assigned(tp)?;
        self.set_position(tp, offset);
        Ok(())
    }

    async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> ClientResult<(i64, i64)> {
        let reply = self
            .fwd
            .request(ForwardRequest::ListOffset {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                spec,
            })
            .await?;
        match reply {
            ForwardReply::Offset(o) => Ok((o.offset, o.timestamp)),
            other => Err(unexpected(&other)),
        }
    }

    /// Moves to the log start offset; returns it.
    pub async fn seek_to_beginning(&mut self, tp: &TopicPartition) -> ClientResult<i64> {
        self.check_assigned(tp)?;
        let (offset, _) = self.list_offset(tp, OffsetSpec::Earliest).await?;
        self.set_position(tp, offset);
        Ok(offset)
    }

    /// Moves to the high watermark (only records produced later are read); returns it.
    pub async fn seek_to_end(&mut self, tp: &TopicPartition) -> ClientResult<i64> {
        self.check_assigned(tp)?;
        let (offset, _) = self.list_offset(tp, OffsetSpec::Latest).await?;
        self.set_position(tp, offset);
        Ok(offset)
    }

    /// Moves to the first record with a timestamp at or after `timestamp_ms`, or to the end
    /// when there is none; returns the new position.
    pub async fn seek_to_timestamp(
        &mut self,
        tp: &TopicPartition,
        timestamp_ms: i64,
    ) -> ClientResult<i64> {
        self.check_assigned(tp)?;
        let (mut offset, _) = self
            .list_offset(tp, OffsetSpec::Timestamp(timestamp_ms))
            .await?;
        if offset < 0 {
            offset = self.list_offset(tp, OffsetSpec::Latest).await?.0;
        }
        self.set_position(tp, offset);
        Ok(offset)
    }

    async fn resolve_positions(&mut self) -> ClientResult<()> {
        let spec = match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => OffsetSpec::Earliest,
            AutoOffsetReset::Latest => OffsetSpec::Latest,
        };
        let unset: Vec<TopicPartition> = self
            .positions
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in unset {
            let (offset, _) = self.list_offset(&tp, spec).await?;
            self.positions.insert(tp, Some(offset));
        }
        Ok(())
    }

    /// Records from the assigned partitions, in offset order within each partition. Waits up
    /// to `timeout` when none are there yet; an empty vector means none arrived in time.
    pub async fn poll(&mut self, timeout: Duration) -> ClientResult<Vec<ConsumerRecord>> {
        if self.buffered.is_empty() {
            self.fill(timeout).await?;
        }
        let n = self.buffered.len().min(MAX_POLL_RECORDS);
        Ok(self.buffered.drain(..n).collect())
    }

    async fn fill(&mut self, timeout: Duration) -> ClientResult<()> {
        if self.positions.is_empty() {
            return Err(ClientError::InvalidArgument(
                "poll without an assignment: call assign first".into(),
            ));
        }
        self.resolve_positions().await?;
        let max_wait_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let mut reads = JoinSet::new();
        for (tp, pos) in &self.positions {
            let Some(offset) = *pos else { continue };
            let fwd = self.fwd.clone();
            let tp = tp.clone();
            let request = ForwardRequest::Read {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                offset,
                max_bytes: self.config.max_partition_bytes,
                max_wait_ms,
            };
            reads.spawn(async move { (tp, offset, fwd.request(request).await) });
        }
        // The first answer with records (or the last answer) ends the poll; reads that are
        // still waiting are dropped (their partitions keep their positions).
        let mut got_any = false;
        while let Some(joined) = if got_any {
            reads.try_join_next()
        } else {
            reads.join_next().await
        } {
            let Ok((tp, offset, result)) = joined else {
                continue;
            };
            match result {
                Ok(ForwardReply::Read(r)) => {
                    let records: Vec<_> = decode_batches(&r.records, DECOMPRESSED_BYTES_MAX)
                        .map_err(|e| ClientError::Partition(ForwardError::Storage(e.to_string())))?
                        .into_iter()
                        .filter(|b| !b.is_control())
                        .flat_map(|b| b.records)
                        // A read starts at the batch holding `offset`.
                        .filter(|rec| rec.offset >= offset)
                        .collect();
                    if let Some(last) = records.last() {
                        got_any = true;
                        self.positions.insert(tp.clone(), Some(last.offset + 1));
                        self.buffered.extend(records.into_iter().map(|rec| {
                            ConsumerRecord {
                                topic: tp.topic.clone(),
                                partition: tp.partition,
                                offset: rec.offset,
                                timestamp: rec.timestamp_ms,
                                key: rec.key.map(|k| k.to_vec()),
                                value: rec.value.map(|v| v.to_vec()),
                                headers: rec
                                    .headers
                                    .into_iter()
                                    .map(|h| {
                                        (
                                            String::from_utf8_lossy(&h.key).into_owned(),
                                            h.value.map(|v| v.to_vec()),
                                        )
                                    })
                                    .collect(),
                            }
                        }));
                    }
                }
                Ok(other) => return Err(unexpected(&other)),
                Err(ForwardError::OffsetOutOfRange { .. }) => {
                    // Retention passed the position (or a seek went past the end): start over
                    // as configured, as Kafka consumers do with auto.offset.reset.
                    self.positions.insert(tp, None);
                }
                Err(e) => return Err(e.into()),
            }
        }
        reads.abort_all();
        Ok(())
    }
}

fn unexpected(reply: &ForwardReply) -> ClientError {
    ClientError::Partition(ForwardError::Storage(format!(
        "unexpected answer: {reply:?}"
    )))
}
