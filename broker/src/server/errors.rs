//! The one place where Rivulet errors become Kafka error codes.

use kafka_protocol::error::ResponseError as E;
use rivulet_actors::group::GroupError;
use rivulet_actors::txn::TxnError;
use rivulet_actors::{AppendError, WriteError};
use rivulet_cluster::ControllerError;
use rivulet_storage::StorageError;

/// Error code and message for a controller failure.
pub fn controller(e: &ControllerError) -> (i16, String) {
    let code = match e {
        ControllerError::TopicExists(_) => E::TopicAlreadyExists,
        ControllerError::UnknownTopic(_) => E::UnknownTopicOrPartition,
        ControllerError::InvalidTopicName { .. } => E::InvalidTopicException,
        ControllerError::InvalidPartitions(_) => E::InvalidPartitions,
        ControllerError::InvalidReplicationFactor(_) => E::InvalidReplicationFactor,
        ControllerError::InvalidConfig(_) => E::InvalidConfig,
        ControllerError::Storage(_) => E::KafkaStorageError,
        ControllerError::Replica(_) => E::UnknownServerError,
        ControllerError::Unavailable(_) => E::RequestTimedOut,
        ControllerError::InvalidReplicaAssignment(_) => E::InvalidReplicaAssignment,
    };
    (code.code(), e.to_string())
}

/// Error code for a storage failure seen by a reader or writer.
pub fn storage(e: &StorageError) -> i16 {
    match e {
        StorageError::CorruptBatch(_) => E::CorruptMessage,
        StorageError::UnsupportedMagic(_) => E::UnsupportedForMessageFormat,
        StorageError::UnsupportedCompression(_) => E::UnsupportedCompressionType,
        StorageError::InvalidRecord(_) => E::InvalidRecord,
        StorageError::InvalidTimestamp(_) => E::InvalidTimestamp,
        StorageError::BatchTooLarge { .. } => E::MessageTooLarge,
        StorageError::InvalidProducerEpoch { .. } => E::InvalidProducerEpoch,
        StorageError::OutOfOrderSequence { .. } => E::OutOfOrderSequenceNumber,
        StorageError::OffsetOutOfRange { .. } => E::OffsetOutOfRange,
        StorageError::FencedLeaderEpoch { .. } => E::FencedLeaderEpoch,
        // The handle was replaced by a restarted replica: clients refresh and retry.
        StorageError::LogClosed(_) => E::NotLeaderOrFollower,
        _ => E::KafkaStorageError,
    }
    .code()
}

/// Error code for a refused append.
pub fn append(e: &AppendError) -> i16 {
    match e {
        AppendError::Rejected(s) => storage(s),
        // The replica is restarting: clients refresh metadata and retry.
        AppendError::ReplicaFailed { .. } | AppendError::NotLeader { .. } => {
            E::NotLeaderOrFollower.code()
        }
        // Only DeleteRecords waits; as when its wait runs out, the client retries.
        AppendError::TooManyWaiters { .. } => E::RequestTimedOut.code(),
    }
}

/// Error code for a committed write that was not acknowledged (produce, and any other writer
/// that answers a Kafka client).
pub fn write(e: &WriteError) -> i16 {
    match e {
        WriteError::Rejected(s) => storage(s),
        // Retriable: the client refreshes metadata and finds the (new) leader.
        WriteError::UnknownReplica { .. }
        | WriteError::NotLeader { .. }
        | WriteError::LeadershipMoved { .. }
        | WriteError::LeaseLapsed { .. }
        | WriteError::ReplicaFailed { .. }
        | WriteError::ReplicaStopped { .. } => E::NotLeaderOrFollower.code(),
        WriteError::NotEnoughReplicas { .. } => E::NotEnoughReplicas.code(),
        WriteError::NotEnoughReplicasAfterAppend { .. } => E::NotEnoughReplicasAfterAppend.code(),
        WriteError::TimedOut { .. } => E::RequestTimedOut.code(),
    }
}

/// Error code and message for a group coordinator failure. Every [`GroupError`] has its Kafka
/// code here, and nowhere else.
pub fn group(e: &GroupError) -> (i16, String) {
    let code = match e {
        GroupError::NotCoordinator => E::NotCoordinator,
        GroupError::CoordinatorLoadInProgress => E::CoordinatorLoadInProgress,
        GroupError::CoordinatorNotAvailable(_) => E::CoordinatorNotAvailable,
        GroupError::UnknownMemberId => E::UnknownMemberId,
        GroupError::IllegalGeneration => E::IllegalGeneration,
        GroupError::RebalanceInProgress => E::RebalanceInProgress,
        GroupError::MemberIdRequired(_) => E::MemberIdRequired,
        GroupError::InconsistentGroupProtocol => E::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout { .. } => E::InvalidSessionTimeout,
        GroupError::GroupMaxSizeReached => E::GroupMaxSizeReached,
        GroupError::FencedInstanceId => E::FencedInstanceId,
        GroupError::GroupIdNotFound => E::GroupIdNotFound,
        GroupError::NonEmptyGroup => E::NonEmptyGroup,
        GroupError::GroupSubscribedToTopic => E::GroupSubscribedToTopic,
        GroupError::InvalidGroupId => E::InvalidGroupId,
        GroupError::OffsetMetadataTooLarge => E::OffsetMetadataTooLarge,
        GroupError::UnknownTopicOrPartition => E::UnknownTopicOrPartition,
        GroupError::FencedMemberEpoch => E::FencedMemberEpoch,
        GroupError::StaleMemberEpoch => E::StaleMemberEpoch,
        GroupError::UnreleasedInstanceId => E::UnreleasedInstanceId,
        GroupError::UnsupportedAssignor(_) => E::UnsupportedAssignor,
        // Kafka has no dedicated code: a classic join to a consumer-protocol group (and the
        // reverse) gets INCONSISTENT_GROUP_PROTOCOL. ConsumerGroupHeartbeat and
        // ConsumerGroupDescribe answer GROUP_ID_NOT_FOUND instead, as Kafka does (their
        // handlers override this).
        GroupError::GroupIdTypeMismatch => E::InconsistentGroupProtocol,
        GroupError::InvalidRequest(_) => E::InvalidRequest,
        GroupError::InvalidRegularExpression(_) => E::InvalidRegularExpression,
        // Kafka's coordinator turns a write to the offsets topic that timed out into
        // COORDINATOR_NOT_AVAILABLE: clients look the coordinator up again and retry, which they
        // do not all do for REQUEST_TIMED_OUT.
        GroupError::RequestTimedOut(_) => E::CoordinatorNotAvailable,
        GroupError::UnstableOffsetCommit => E::UnstableOffsetCommit,
    };
    (code.code(), e.to_string())
}

/// Error code for a transaction coordinator failure. `fenced_code` is false for request
/// versions older than KIP-588's, which get INVALID_PRODUCER_EPOCH instead of PRODUCER_FENCED.
pub fn txn(e: TxnError, fenced_code: bool) -> i16 {
    let code = match e {
        TxnError::NotCoordinator => E::NotCoordinator,
        TxnError::CoordinatorLoadInProgress => E::CoordinatorLoadInProgress,
        TxnError::CoordinatorNotAvailable => E::CoordinatorNotAvailable,
        TxnError::ConcurrentTransactions => E::ConcurrentTransactions,
        TxnError::InvalidProducerIdMapping => E::InvalidProducerIdMapping,
        TxnError::ProducerFenced if fenced_code => E::ProducerFenced,
        TxnError::ProducerFenced => E::InvalidProducerEpoch,
        TxnError::InvalidTxnState => E::InvalidTxnState,
        TxnError::InvalidTransactionTimeout => E::InvalidTransactionTimeout,
    };
    code.code()
}

/// Shorthands for codes used directly by handlers.
pub mod code {
    use super::E;
    /// No error.
    pub const NONE: i16 = 0;
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = E::UnknownTopicOrPartition.code();
    /// UNKNOWN_TOPIC_ID.
    pub const UNKNOWN_TOPIC_ID: i16 = E::UnknownTopicId.code();
    /// NOT_LEADER_OR_FOLLOWER.
    pub const NOT_LEADER_OR_FOLLOWER: i16 = E::NotLeaderOrFollower.code();
    /// LEADER_NOT_AVAILABLE.
    pub const LEADER_NOT_AVAILABLE: i16 = E::LeaderNotAvailable.code();
    /// INVALID_REQUIRED_ACKS.
    pub const INVALID_REQUIRED_ACKS: i16 = E::InvalidRequiredAcks.code();
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND.
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = E::NotEnoughReplicasAfterAppend.code();
    /// REQUEST_TIMED_OUT.
    pub const REQUEST_TIMED_OUT: i16 = E::RequestTimedOut.code();
    /// NOT_ENOUGH_REPLICAS.
    pub const NOT_ENOUGH_REPLICAS: i16 = E::NotEnoughReplicas.code();
    /// CORRUPT_MESSAGE.
    pub const CORRUPT_MESSAGE: i16 = E::CorruptMessage.code();
    /// MESSAGE_TOO_LARGE.
    pub const MESSAGE_TOO_LARGE: i16 = E::MessageTooLarge.code();
    /// INVALID_REGULAR_EXPRESSION.
    pub const INVALID_REGULAR_EXPRESSION: i16 = E::InvalidRegularExpression.code();
    /// INVALID_REQUEST.
    pub const INVALID_REQUEST: i16 = E::InvalidRequest.code();
    /// UNSUPPORTED_VERSION.
    pub const UNSUPPORTED_VERSION: i16 = E::UnsupportedVersion.code();
    /// UNSUPPORTED_FOR_MESSAGE_FORMAT.
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = E::UnsupportedForMessageFormat.code();
    /// UNKNOWN_SERVER_ERROR.
    pub const UNKNOWN_SERVER_ERROR: i16 = E::UnknownServerError.code();
    /// KAFKA_STORAGE_ERROR.
    pub const KAFKA_STORAGE_ERROR: i16 = E::KafkaStorageError.code();
    /// FENCED_LEADER_EPOCH.
    pub const FENCED_LEADER_EPOCH: i16 = E::FencedLeaderEpoch.code();
    /// UNKNOWN_LEADER_EPOCH.
    pub const UNKNOWN_LEADER_EPOCH: i16 = E::UnknownLeaderEpoch.code();
    /// TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 =
        E::TransactionalIdAuthorizationFailed.code();
    /// INVALID_CONFIG.
    pub const INVALID_CONFIG: i16 = E::InvalidConfig.code();
    /// INVALID_TOPIC_EXCEPTION.
    pub const INVALID_TOPIC: i16 = E::InvalidTopicException.code();
    /// OFFSET_OUT_OF_RANGE.
    pub const OFFSET_OUT_OF_RANGE: i16 = E::OffsetOutOfRange.code();
    /// INVALID_PRODUCER_EPOCH.
    pub const INVALID_PRODUCER_EPOCH: i16 = E::InvalidProducerEpoch.code();
    /// OFFSET_METADATA_TOO_LARGE (12).
    pub const OFFSET_METADATA_TOO_LARGE: i16 = E::OffsetMetadataTooLarge.code();
    /// COORDINATOR_LOAD_IN_PROGRESS (14).
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = E::CoordinatorLoadInProgress.code();
    /// COORDINATOR_NOT_AVAILABLE (15).
    pub const COORDINATOR_NOT_AVAILABLE: i16 = E::CoordinatorNotAvailable.code();
    /// NOT_COORDINATOR (16).
    pub const NOT_COORDINATOR: i16 = E::NotCoordinator.code();
    /// ILLEGAL_GENERATION (22).
    pub const ILLEGAL_GENERATION: i16 = E::IllegalGeneration.code();
    /// INCONSISTENT_GROUP_PROTOCOL (23).
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = E::InconsistentGroupProtocol.code();
    /// INVALID_GROUP_ID (24).
    pub const INVALID_GROUP_ID: i16 = E::InvalidGroupId.code();
    /// UNKNOWN_MEMBER_ID (25).
    pub const UNKNOWN_MEMBER_ID: i16 = E::UnknownMemberId.code();
    /// INVALID_SESSION_TIMEOUT (26).
    pub const INVALID_SESSION_TIMEOUT: i16 = E::InvalidSessionTimeout.code();
    /// REBALANCE_IN_PROGRESS (27).
    pub const REBALANCE_IN_PROGRESS: i16 = E::RebalanceInProgress.code();
    /// TOPIC_AUTHORIZATION_FAILED (29).
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = E::TopicAuthorizationFailed.code();
    /// NON_EMPTY_GROUP (68).
    pub const NON_EMPTY_GROUP: i16 = E::NonEmptyGroup.code();
    /// GROUP_ID_NOT_FOUND (69).
    pub const GROUP_ID_NOT_FOUND: i16 = E::GroupIdNotFound.code();
    /// MEMBER_ID_REQUIRED (79).
    pub const MEMBER_ID_REQUIRED: i16 = E::MemberIdRequired.code();
    /// GROUP_MAX_SIZE_REACHED (81).
    pub const GROUP_MAX_SIZE_REACHED: i16 = E::GroupMaxSizeReached.code();
    /// FENCED_INSTANCE_ID (82).
    pub const FENCED_INSTANCE_ID: i16 = E::FencedInstanceId.code();
    /// GROUP_SUBSCRIBED_TO_TOPIC (86).
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = E::GroupSubscribedToTopic.code();
    /// FENCED_MEMBER_EPOCH (110).
    pub const FENCED_MEMBER_EPOCH: i16 = E::FencedMemberEpoch.code();
    /// UNRELEASED_INSTANCE_ID (111).
    pub const UNRELEASED_INSTANCE_ID: i16 = E::UnreleasedInstanceId.code();
    /// UNSUPPORTED_ASSIGNOR (112).
    pub const UNSUPPORTED_ASSIGNOR: i16 = E::UnsupportedAssignor.code();
    /// STALE_MEMBER_EPOCH (113).
    pub const STALE_MEMBER_EPOCH: i16 = E::StaleMemberEpoch.code();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_error_codes_are_kafkas() {
        let cases = [
            (StorageError::CorruptBatch("x".into()), 2),
            (StorageError::UnsupportedMagic(1), 43),
            (StorageError::UnsupportedCompression(5), 76),
            (StorageError::InvalidRecord("x".into()), 87),
            (StorageError::InvalidTimestamp("x".into()), 32),
        ];
        for (e, want) in cases {
            assert_eq!(storage(&e), want, "{e:?}");
        }
    }

    #[test]
    fn write_error_codes_are_kafkas() {
        use rivulet_actors::write::WriteStage;
        use rivulet_actors::TopicPartition;
        let tp = || TopicPartition::new("t", 0);
        let cases = [
            (WriteError::UnknownReplica { tp: tp() }, 6),
            (WriteError::NotLeader { tp: tp() }, 6),
            (WriteError::LeadershipMoved { tp: tp() }, 6),
            (WriteError::LeaseLapsed { tp: tp() }, 6),
            (
                WriteError::ReplicaFailed {
                    tp: tp(),
                    reason: "x".into(),
                },
                6,
            ),
            (WriteError::ReplicaStopped { tp: tp() }, 6),
            (
                WriteError::NotEnoughReplicas {
                    tp: tp(),
                    min_insync_replicas: 2,
                    isr: 1,
                },
                19,
            ),
            (
                WriteError::NotEnoughReplicasAfterAppend {
                    tp: tp(),
                    min_insync_replicas: 2,
                    isr: 1,
                },
                20,
            ),
            (
                WriteError::TimedOut {
                    tp: tp(),
                    stage: WriteStage::Append,
                    timeout_ms: 5,
                },
                7,
            ),
            (
                WriteError::TimedOut {
                    tp: tp(),
                    stage: WriteStage::Replication,
                    timeout_ms: 5,
                },
                7,
            ),
            (
                WriteError::Rejected(StorageError::CorruptBatch("x".into())),
                2,
            ),
            (
                WriteError::Rejected(StorageError::BatchTooLarge { size: 2, max: 1 }),
                10,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(write(&e), want, "{e:?}");
        }
    }

    #[test]
    fn group_error_codes_are_kafkas() {
        let cases: &[(GroupError, i16)] = &[
            (GroupError::OffsetMetadataTooLarge, 12),
            (GroupError::CoordinatorLoadInProgress, 14),
            (GroupError::CoordinatorNotAvailable("x".into()), 15),
            (GroupError::NotCoordinator, 16),
            (GroupError::IllegalGeneration, 22),
            (GroupError::InconsistentGroupProtocol, 23),
            (GroupError::GroupIdTypeMismatch, 23),
            (GroupError::InvalidGroupId, 24),
            (GroupError::UnknownMemberId, 25),
            (
                GroupError::InvalidSessionTimeout {
                    min_ms: 1,
                    max_ms: 2,
                },
                26,
            ),
            (GroupError::RebalanceInProgress, 27),
            (GroupError::UnknownTopicOrPartition, 3),
            (GroupError::InvalidRequest("x".into()), 42),
            (GroupError::NonEmptyGroup, 68),
            (GroupError::GroupIdNotFound, 69),
            (GroupError::MemberIdRequired("m".into()), 79),
            (GroupError::GroupMaxSizeReached, 81),
            (GroupError::FencedInstanceId, 82),
            (GroupError::GroupSubscribedToTopic, 86),
            (GroupError::FencedMemberEpoch, 110),
            (GroupError::UnreleasedInstanceId, 111),
            (GroupError::UnsupportedAssignor("x".into()), 112),
            (GroupError::StaleMemberEpoch, 113),
            (GroupError::RequestTimedOut("x".into()), 15),
        ];
        for (e, want) in cases {
            assert_eq!(group(e).0, *want, "{e:?}");
        }
        assert_eq!(code::NOT_COORDINATOR, 16);
        assert_eq!(code::MEMBER_ID_REQUIRED, 79);
        assert_eq!(code::STALE_MEMBER_EPOCH, 113);
    }
}
