//! Transaction markers: the control batch a transaction coordinator writes to every partition
//! of a transaction when it ends (Kafka's `EndTransactionMarker`).
//!
//! ```text
//! batch:  attributes = transactional | control, producer id and epoch of the transaction,
//!         baseSequence -1, one record
//! record: key   = [version i16 = 0][type i16: 0 abort, 1 commit]
//!         value = [version i16 = 0][coordinator epoch i32]
//! ```
//!
//! A marker ends the producer's open transaction on that partition: readers with
//! `read_committed` drop the records of an aborted one. The coordinator epoch lets a partition
//! refuse markers of a deposed coordinator.

use super::{
    decode_batches, BatchBuilder, BatchHeader, CONTROL_BIT, NO_SEQUENCE, TRANSACTIONAL_BIT,
};
use crate::error::{Result, StorageError};

const MARKER_VERSION: i16 = 0;
const TYPE_ABORT: i16 = 0;
const TYPE_COMMIT: i16 = 1;

/// One transaction marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    /// Producer id of the transaction.
    pub producer_id: i64,
    /// Producer epoch (after a fencing bump, the bumped one).
    pub producer_epoch: i16,
    /// Epoch of the coordinator that wrote it.
    pub coordinator_epoch: i32,
    /// Commit (true) or abort.
    pub commit: bool,
}

impl TxnMarker {
    /// The marker as a control batch (offsets and leader epoch are the leader's to assign).
    pub fn encode(&self, timestamp_ms: i64) -> Vec<u8> {
        let mut key = Vec::with_capacity(4);
        key.extend_from_slice(&MARKER_VERSION.to_be_bytes());
        let kind = if self.commit { TYPE_COMMIT } else { TYPE_ABORT };
        key.extend_from_slice(&kind.to_be_bytes());
        let mut value = Vec::with_capacity(6);
        value.extend_from_slice(&MARKER_VERSION.to_be_bytes());
        value.extend_from_slice(&self.coordinator_epoch.to_be_bytes());
        BatchBuilder::new(timestamp_ms)
            .attributes(TRANSACTIONAL_BIT | CONTROL_BIT)
            .producer(self.producer_id, self.producer_epoch, NO_SEQUENCE)
            .record(timestamp_ms, Some(&key), Some(&value))
            .build()
    }

    /// Reads the marker of a control batch (`batch` is the whole batch); `None` for a batch
    /// that is not a transaction marker (not a control batch, or another control type).
    pub fn decode(batch: &[u8]) -> Result<Option<TxnMarker>> {
        let h = BatchHeader::parse(batch)?;
        if !h.is_control() || !h.is_transactional() {
            return Ok(None);
        }
        let total = h.total_len();
        let Some(batch) = batch.get(..total) else {
            return Err(StorageError::CorruptBatch(format!(
                "control batch at offset {} is cut off",
                h.base_offset
            )));
        };
        // A marker batch is never compressed; the bound only caps a lying header.
        let rec = decode_batches(batch, total as u64)?
            .into_iter()
            .next()
            .and_then(|b| b.records.into_iter().next())
            .ok_or_else(|| {
                StorageError::CorruptBatch(format!(
                    "control batch at offset {} has no record",
                    h.base_offset
                ))
            })?;
        let i16_at =
            |b: &[u8], at: usize| b.get(at..at + 2).map(|s| i16::from_be_bytes([s[0], s[1]]));
        let key = rec.key.unwrap_or_default();
        let kind = match (i16_at(&key, 0), i16_at(&key, 2)) {
            (Some(MARKER_VERSION), Some(k)) => k,
            // Another control record type (or version): not a transaction marker.
            _ => return Ok(None),
        };
        let commit = match kind {
            TYPE_ABORT => false,
            TYPE_COMMIT => true,
            _ => return Ok(None),
        };
        let value = rec.value.unwrap_or_default();
        let coordinator_epoch = value
            .get(2..6)
            .map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
            .ok_or_else(|| {
                StorageError::CorruptBatch(format!(
                    "transaction marker at offset {} has no coordinator epoch",
                    h.base_offset
                ))
            })?;
        Ok(Some(TxnMarker {
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            coordinator_epoch,
            commit,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{compute_crc, decode_records};

    #[test]
    fn markers_round_trip_with_kafkas_layout() {
        for commit in [true, false] {
            let m = TxnMarker {
                producer_id: 4242,
                producer_epoch: 7,
                coordinator_epoch: 3,
                commit,
            };
            let b = m.encode(1_000);
            let h = BatchHeader::parse(&b).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (4242, 7, -1)
            );
            assert_eq!(h.records_count, 1);
            assert_eq!(h.crc, compute_crc(&b));
            assert_eq!(TxnMarker::decode(&b).unwrap(), Some(m));
            // Readers of data records skip it.
            assert!(decode_records(&b).unwrap().is_empty());
        }
        // A data batch is no marker.
        let data = BatchBuilder::new(1)
            .record(1, Some(b"k"), Some(b"v"))
            .build();
        assert_eq!(TxnMarker::decode(&data).unwrap(), None);
        // Kafka's bytes for key (v0, COMMIT) and value (v0, epoch 3).
        let b = TxnMarker {
            producer_id: 1,
            producer_epoch: 0,
            coordinator_epoch: 3,
            commit: true,
        }
        .encode(0);
        // The record ends with: key length (zigzag 4), key, value length (zigzag 6), value,
        // header count 0.
        let tail = &b[b.len() - 13..];
        assert_eq!(
            &tail[..5],
            &[8, 0, 0, 0, 1],
            "key: length 4, version 0, type 1"
        );
        assert_eq!(
            &tail[5..12],
            &[12, 0, 0, 0, 0, 0, 3],
            "value: length 6, version 0, epoch 3"
        );
        assert_eq!(tail[12], 0, "no headers");
    }
}
