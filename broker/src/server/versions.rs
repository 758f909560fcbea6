//! The API versions this broker serves (the intersection of what the kafka-protocol crate can
//! decode and what our handlers implement correctly).

use kafka_protocol::messages::ApiKey;

/// Supported `(min, max)` versions of an API, or `None` if the broker does not serve it.
pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    let ours = match key {
        ApiKey::Produce => (3, 13),
        ApiKey::Fetch => (4, 17),
        // v7 adds the max-timestamp query (-3), v8 earliest-local (-4), v9 latest-tiered (-5,
        // always "none": no tiered storage), v10 a timeout for remote-storage lookups (unused:
        // every lookup is local). Kafka 4.3's tools send v9+ for `--time -5`.
        ApiKey::ListOffsets => (1, 10),
        ApiKey::Metadata => (0, 12),
        // KIP-966; no eligible leader replicas (empty lists), see handlers::topic_partitions.
        ApiKey::DescribeTopicPartitions => (0, 0),
        ApiKey::ApiVersions => (0, 4),
        ApiKey::CreateTopics => (2, 7),
        ApiKey::DeleteTopics => (1, 6),
        ApiKey::CreatePartitions => (0, 3),
        ApiKey::DescribeConfigs => (1, 4),
        ApiKey::AlterConfigs => (0, 2),
        ApiKey::InitProducerId => (0, 5),
        ApiKey::OffsetForLeaderEpoch => (2, 4),
        ApiKey::DescribeCluster => (0, 1),
        ApiKey::IncrementalAlterConfigs => (0, 1),
        ApiKey::DeleteRecords => (0, 2),
        ApiKey::DescribeLogDirs => (1, 4),
        // Consumer groups (handlers::groups).
        ApiKey::FindCoordinator => (0, 6),
        ApiKey::JoinGroup => (0, 9),
        ApiKey::SyncGroup => (0, 5),
        ApiKey::Heartbeat => (0, 4),
        ApiKey::LeaveGroup => (0, 5),
        // v10 names topics by id only.
        ApiKey::OffsetCommit => (2, 9),
        ApiKey::OffsetFetch => (1, 9),
        ApiKey::ListGroups => (0, 5),
        // v6: an unknown group is GROUP_ID_NOT_FOUND (below v6 it is described as `Dead`).
        ApiKey::DescribeGroups => (0, 6),
        ApiKey::DeleteGroups => (0, 2),
        ApiKey::OffsetDelete => (0, 0),
        ApiKey::ConsumerGroupHeartbeat => (0, 1),
        ApiKey::ConsumerGroupDescribe => (0, 1),
        // Transactions (handlers::txn; answered TRANSACTIONAL_ID_AUTHORIZATION_FAILED unless
        // `[transactions] enabled`). AddPartitionsToTxn v4 is the brokers' KIP-890 verification;
        // v5 / EndTxn v5 / AddOffsetsToTxn v4 (KIP-890 part 2, an epoch bump per transaction)
        // are not served.
        ApiKey::AddPartitionsToTxn => (0, 4),
        ApiKey::AddOffsetsToTxn => (0, 3),
        ApiKey::EndTxn => (0, 4),
        // Offsets pending in the group coordinator until the transaction's marker.
        ApiKey::TxnOffsetCommit => (0, 4),
        ApiKey::DescribeTransactions => (0, 0),
        // Any partition leader, from its log's producer state (handlers::txn).
        ApiKey::DescribeProducers => (0, 0),
        // v2: a transactional-id pattern (KIP-1152).
        ApiKey::ListTransactions => (0, 2),
        _ => return None,
    };
    let crate_range = key.valid_versions();
    let (min, max) = (ours.0.max(crate_range.min), ours.1.min(crate_range.max));
    (min <= max).then_some((min, max))
}

/// Every served API with its versions, for ApiVersions.
pub fn all() -> Vec<(ApiKey, i16, i16)> {
    ApiKey::iter()
        .filter_map(|k| supported(k).map(|(min, max)| (k, min, max)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_apis_are_served() {
        for k in [
            ApiKey::Produce,
            ApiKey::Fetch,
            ApiKey::Metadata,
            ApiKey::ApiVersions,
        ] {
            assert!(supported(k).is_some(), "{k:?}");
        }
        assert_eq!(supported(ApiKey::JoinGroup), Some((0, 9)));
        assert_eq!(supported(ApiKey::OffsetCommit), Some((2, 9)));
        assert_eq!(supported(ApiKey::OffsetFetch), Some((1, 9)));
        assert_eq!(supported(ApiKey::FindCoordinator), Some((0, 6)));
        assert_eq!(supported(ApiKey::ConsumerGroupHeartbeat), Some((0, 1)));
        assert_eq!(supported(ApiKey::TxnOffsetCommit), Some((0, 4)));
        assert!(supported(ApiKey::ShareGroupHeartbeat).is_none());
        assert!(all().len() >= 26);
    }
}
