/// Why an event could not be decoded from a stored message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "message at sequence {sequence} has no {header} header; it was not written by the Tenantry event store"
    )]
    MissingHeader { sequence: u64, header: &'static str },
    #[error("message at sequence {sequence} has an invalid {header} header")]
    InvalidHeader { sequence: u64, header: &'static str },
    #[error("message at sequence {sequence} is not a valid tenantry.v1.Event: {source}")]
    Payload {
        sequence: u64,
        source: prost::DecodeError,
    },
    #[error("message at sequence {sequence} has no event body (written by a newer schema?)")]
    EmptyBody { sequence: u64 },
    #[error("message at sequence {sequence} says type {header} but holds {body}")]
    TypeMismatch {
        sequence: u64,
        header: String,
        body: &'static str,
    },
}

/// Errors of the event store. Each variant says what a caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended first: reload the subject, decide again, append again.
    #[error("subject {subject} is at version {actual}, not {expected}: reload and decide again")]
    Conflict {
        subject: String,
        expected: u64,
        actual: u64,
    },
    /// NATS or JetStream is unreachable or timed out: safe to retry (appends are de-duplicated).
    #[error(
        "event store unavailable: {0}; check that NATS with JetStream is reachable, then retry"
    )]
    Unavailable(String),
    /// A stored message is not a Tenantry event.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The request itself is wrong (empty batch, bad subject, …).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The stream or consumer configuration conflicts with what exists.
    #[error("JetStream refused the configuration: {0}")]
    Config(String),
}

impl StoreError {
    pub(crate) fn unavailable(e: impl std::fmt::Display) -> Self {
        StoreError::Unavailable(e.to_string())
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}
