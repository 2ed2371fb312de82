//! The projection's one error type, mapped to a gRPC status in exactly one place.

/// Everything the projection can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed request input; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// No such tenant (or no history for it).
    #[error("{0}")]
    NotFound(String),
    /// The read model has not applied the requested stream sequence within the wait bound.
    #[error(
        "projection is behind: it has applied stream sequence {applied}, the request needs {wanted}; retry shortly"
    )]
    Behind {
        /// The active generation's checkpoint.
        applied: u64,
        /// The `min_sequence` asked for.
        wanted: u64,
    },
    /// The read model lost events its consumer had acknowledged: it answers nothing until a
    /// rebuild (see [`crate::behind`]).
    #[error("{0}")]
    LostEvents(String),
    /// Another rebuild holds the rebuild lock.
    #[error("another rebuild of the tenant projection is running; wait for it to finish")]
    RebuildRunning,
    /// The event store failed.
    #[error(transparent)]
    Events(#[from] eventstore::StoreError),
    /// PostgreSQL failed.
    #[error("projection database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrating the control schema failed.
    #[error("cannot migrate the projection schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        use tonic::Status;
        match e {
            Error::InvalidArgument(m) => Status::invalid_argument(m),
            Error::NotFound(m) => Status::not_found(m),
            e @ Error::Behind { .. } => Status::unavailable(e.to_string()),
            e @ (Error::RebuildRunning | Error::LostEvents(_)) => {
                Status::failed_precondition(e.to_string())
            }
            Error::Events(e) if e.is_transient() => Status::unavailable(e.to_string()),
            other => {
                // The full cause is logged once, here at the edge; the caller gets the gist.
                tracing::error!(error = ?other, "request failed");
                match other {
                    Error::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => {
                        Status::unavailable("the projection database is unreachable; retry shortly")
                    }
                    _ => Status::internal(format!("projection failed: {other}")),
                }
            }
        }
    }
}
