//! What the transaction coordinators write to `__transaction_state`, and how a partition is
//! read back.
//!
//! ```text
//! key   = [version 1][u16 id len][transactional id]
//! value = JSON TxnMetadata, or null (the id expired)
//! ```
//!
//! The latest record of an id wins, as in `__consumer_offsets` (see `group::records`): JSON
//! keeps the records readable with any Kafka client, and a key of an unknown version is
//! skipped with a warning so a newer node's records do not stop an older one from loading.

use rivulet_storage::batch::BatchBuilder;
use rivulet_storage::PartitionLog;
use tracing::warn;

use super::core::TxnMetadata;

const KEY_VERSION: u8 = 1;

/// Encodes the key of `transactional_id` (ids longer than 64 KiB are cut: Kafka's own limit
/// on a string in the protocol is 32 KiB).
pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let len = u16::try_from(transactional_id.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(3 + usize::from(len));
    out.push(KEY_VERSION);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&transactional_id.as_bytes()[..usize::from(len)]);
    out
}

/// Decodes a key; `None` for a key this version does not know.
pub fn decode_key(buf: &[u8]) -> Option<String> {
    if buf.first() != Some(&KEY_VERSION) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes(buf.get(1..3)?.try_into().ok()?));
    let id = std::str::from_utf8(buf.get(3..3 + len)?).ok()?.to_owned();
    (buf.len() == 3 + len).then_some(id)
}

/// One record as one uncompressed batch.
pub fn encode_batch(
    transactional_id: &str,
    record: Option<&TxnMetadata>,
    now_ms: i64,
) -> Result<Vec<u8>, serde_json::Error> {
    let value = record.map(serde_json::to_vec).transpose()?;
    let mut b = BatchBuilder::new(now_ms);
    b.push(
        now_ms,
        Some(&encode_key(transactional_id)),
        value.as_deref(),
    );
    Ok(b.build())
}

/// Everything read back from one partition, in log order (the core applies "latest wins").
#[derive(Debug, Default)]
pub struct LoadedTxnPartition {
    /// (transactional id, value) in log order; `None` values are tombstones.
    pub records: Vec<(String, Option<TxnMetadata>)>,
    /// The log end offset the read reached: the state is only safe to serve once the high
    /// watermark covers it.
    pub end_offset: i64,
}

/// Reads a partition from its start to its end (blocking: run it on the blocking pool).
pub fn load(log: &PartitionLog) -> rivulet_storage::Result<LoadedTxnPartition> {
    let mut out = LoadedTxnPartition::default();
    out.end_offset = crate::hosting::replay(log, |key, value| {
        if let Some(rec) = decode(key, value) {
            out.records.push(rec);
        }
    })?;
    Ok(out)
}

fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<(String, Option<TxnMetadata>)> {
    let Some(id) = key.and_then(decode_key) else {
        warn!("skipping a __transaction_state record with an unknown key");
        return None;
    };
    match value {
        None => Some((id, None)),
        Some(v) => match serde_json::from_slice::<TxnMetadata>(v) {
            Ok(m) => Some((id, Some(m))),
            Err(e) => {
                warn!(transactional_id = %id, error = %e, "skipping an unreadable transaction state");
                None
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::txn::core::{TxnPartition, TxnState};

    #[test]
    fn records_round_trip_and_unknown_keys_are_skipped() {
        assert_eq!(decode_key(&encode_key("tx-ü")), Some("tx-ü".into()));
        assert_eq!(decode_key(&[2, 0, 1, b'a']), None);
        assert_eq!(decode_key(&[1, 0, 5, b'a']), None);
        let m = TxnMetadata {
            transactional_id: "tx".into(),
            producer_id: 7,
            prev_producer_id: -1,
            producer_epoch: 3,
            last_producer_epoch: 2,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: BTreeSet::from([TxnPartition::new("t", 1)]),
            start_ms: 5,
            last_update_ms: 6,
        };
        let batch = encode_batch("tx", Some(&m), 1_000).unwrap();
        let tomb = encode_batch("tx", None, 1_000).unwrap();
        let mut got = Vec::new();
        for b in [batch, tomb] {
            for r in rivulet_storage::batch::decode_records(&b).unwrap() {
                got.push(decode(r.key.as_deref(), r.value.as_deref()).unwrap());
            }
        }
        assert_eq!(got, [("tx".into(), Some(m)), ("tx".into(), None)]);
        assert!(decode(Some(&[9]), Some(b"{}")).is_none());
    }
}
