//! Why a billing step failed.

/// A failed billing step.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// NATS, the payment provider or the operator API did not answer: try again later.
    #[error("{0}")]
    Transient(String),
    /// Another attempt will fail the same way (a plan missing from the catalogue).
    #[error("{0}")]
    Permanent(String),
    /// The tenant's lease was lost: another instance bills it now.
    #[error("{0}")]
    LeaseLost(String),
}

impl From<worker::LeaseError> for BillingError {
    fn from(e: worker::LeaseError) -> Self {
        match e {
            worker::LeaseError::Lost(_) => Self::LeaseLost(e.to_string()),
            worker::LeaseError::Unavailable(_) => Self::Transient(e.to_string()),
        }
    }
}

impl From<eventstore::StoreError> for BillingError {
    fn from(e: eventstore::StoreError) -> Self {
        if e.is_transient() {
            Self::Transient(format!("event store: {e}"))
        } else {
            Self::Permanent(format!("event store: {e}"))
        }
    }
}
