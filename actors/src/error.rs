//! Errors of the actor layer.

/// Crate result type.
pub type Result<T, E = ActorsError> = std::result::Result<T, E>;

/// What can go wrong when talking to the actor tree.
#[derive(Debug, thiserror::Error)]
pub enum ActorsError {
    /// The storage layer failed.
    #[error(transparent)]
    Storage(#[from] rivulet_storage::StorageError),
    /// An actor could not be spawned.
    #[error("could not spawn actor {name}: {reason}")]
    Spawn {
        /// Actor name.
        name: String,
        /// Why.
        reason: String,
    },
    /// An actor did not answer (stopped, restarting, or timed out).
    #[error("actor {0} is unavailable (stopped or restarting); retry")]
    Unavailable(String),
    /// A blocking storage task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(String),
}
