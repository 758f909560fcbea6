//! The crate's one error type and `Result` alias.

use crate::PartitionId;

/// The crate `Result`.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Everything that can go wrong in storage.
///
/// Errors are either about the *input* (a corrupt batch, a fenced producer, an offset out of
/// range: the caller answers its client with an error code and carries on) or about the *log*
/// (I/O, fjall, corrupt data on disk: [`StorageError::is_fatal`] is true, the log may be in
/// doubt, the replica must stop and let its supervisor reopen it from disk).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A record batch failed validation (too short, bad length, bad CRC, bad counts).
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    /// The batch names a compression codec Kafka does not define (ids 5-7).
    #[error("unknown compression codec {0} (known: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd)")]
    UnsupportedCompression(u8),
    /// A well-formed batch a client may not write (a control batch).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A record timestamp outside the topic's `message.timestamp.before/after.max.ms` window.
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// The batch is not record batch format v2.
    #[error("unsupported record batch magic {0}: only format v2 is accepted")]
    UnsupportedMagic(i8),
    /// One batch is larger than [`crate::LogConfig::batch_bytes_max`].
    #[error("record batch of {size} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge {
        /// Size of the offending batch in bytes.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// An idempotent producer wrote with an epoch older than the one the log knows (fenced).
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        /// The producer id.
        producer_id: i64,
        /// Epoch carried by the batch.
        epoch: i16,
        /// Epoch the log knows.
        current: i16,
    },
    /// An idempotent producer skipped or repeated a sequence number.
    #[error("producer {producer_id} sent sequence {got}, expected {expected}")]
    OutOfOrderSequence {
        /// The producer id.
        producer_id: i64,
        /// The next sequence the log expects.
        expected: i32,
        /// The base sequence of the batch.
        got: i32,
    },
    /// A read or truncation asked for an offset the log does not hold.
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: i64,
        /// First offset of the log.
        log_start: i64,
        /// Log end offset (next offset to be written).
        log_end: i64,
    },
    /// Disk I/O failed.
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// fjall failed (I/O underneath).
    #[error("fjall failed: {0}")]
    Fjall(#[source] fjall::Error),
    /// The append would take the store's filesystem below its free-space floor
    /// (`free_bytes_min`); nothing was written. Appends resume by themselves once space is
    /// freed (deleted topics, retention).
    #[error(
        "disk nearly full: {free_bytes} bytes free, the floor is {floor_bytes} bytes; \
         appends are refused until space is freed"
    )]
    DiskFull {
        /// Free bytes on the filesystem (as last measured, minus pending appends).
        free_bytes: u64,
        /// The configured floor.
        floor_bytes: u64,
    },
    /// fjall refuses every write since one failed (out of disk, I/O error): the database
    /// must be reopened, which means restarting the node. Reads still work. Not fatal for a
    /// replica: reopening its log cannot help, so it stays up and refuses appends.
    #[error("the storage engine refuses writes since a write failed (disk full or I/O error); restart the node after freeing space")]
    Poisoned,
    /// A leader append carried a leader epoch older than the latest epoch in the log: the
    /// caller is a deposed leader.
    #[error("leader epoch {epoch} is older than the latest epoch {latest} in the log")]
    FencedLeaderEpoch {
        /// Epoch passed to `append_as_leader`.
        epoch: i32,
        /// Latest epoch in the log.
        latest: i32,
    },
    /// A follower append did not start at the log end offset, or its batches are not
    /// contiguous.
    #[error("follower batch starts at offset {got}, expected {expected}")]
    UnexpectedBaseOffset {
        /// The offset the batch had to start at.
        expected: i64,
        /// The offset it started at.
        got: i64,
    },
    /// This handle was superseded by a later `Store::open_log` of the same partition, or the
    /// log was deleted: reopen it.
    #[error("the log of {0} was closed (reopened or deleted elsewhere)")]
    LogClosed(PartitionId),
    /// The store's directory holds data in a format this version does not read (the message
    /// says what to do). Returned by [`crate::Store::open`]; nothing was changed.
    #[error("incompatible data directory: {0}")]
    IncompatibleFormat(String),
    /// Data read back from disk is not what this crate wrote (a corrupt index entry, a
    /// missing batch, an unparsable keyspace name).
    #[error("corrupt log data: {0}")]
    CorruptLog(String),
}

impl From<fjall::Error> for StorageError {
    fn from(e: fjall::Error) -> Self {
        match e {
            fjall::Error::Poisoned => StorageError::Poisoned,
            e => StorageError::Fjall(e),
        }
    }
}

impl StorageError {
    /// True when the log may be in doubt and the replica must stop (supervisor restarts it).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            StorageError::Io(_) | StorageError::Fjall(_) | StorageError::CorruptLog(_)
        )
    }
}
