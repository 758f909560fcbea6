//! The one place where Rivulet errors become Kafka error codes.

use kafka_protocol::error::ResponseError as E;
use rivulet_actors::AppendError;
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
        StorageError::BatchTooLarge { .. } => E::MessageTooLarge,
        StorageError::InvalidProducerEpoch { .. } => E::InvalidProducerEpoch,
        StorageError::OutOfOrderSequence { .. } => E::OutOfOrderSequenceNumber,
        StorageError::OffsetOutOfRange { .. } => E::OffsetOutOfRange,
        StorageError::TopicExists(_) => E::TopicAlreadyExists,
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
    }
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
    /// INVALID_REQUEST.
    pub const INVALID_REQUEST: i16 = E::InvalidRequest.code();
    /// UNSUPPORTED_VERSION.
    pub const UNSUPPORTED_VERSION: i16 = E::UnsupportedVersion.code();
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
}
