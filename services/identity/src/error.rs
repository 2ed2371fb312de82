//! Why a step failed, sorted by what helps: waiting, an operator, or nothing (another instance
//! took the tenant over).

use authentik_client::AuthentikError;
use vault_client::ClientError;

/// A failed identity step.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Authentik, the vault, the site or NATS did not answer: try again after a back-off.
    #[error("{0}")]
    Transient(String),
    /// Another attempt will fail the same way until someone changes something (a setting, an
    /// object in Authentik); an operator's retry is then worth it.
    #[error("{0}")]
    Permanent(String),
    /// Something needed is gone for good (the owner's one-time password): no retry helps.
    #[error("{0}")]
    Gone(String),
    /// An object with our derived name exists but does not carry this tenant's id: it is not
    /// ours to adopt, change or delete.
    #[error("{0}")]
    NotOurs(String),
    /// The tenant's lease was lost: another instance works on it now.
    #[error("{0}")]
    LeaseLost(String),
}

impl StepError {
    /// Whether another attempt later may help without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

impl From<worker::LeaseError> for StepError {
    fn from(e: worker::LeaseError) -> Self {
        match e {
            worker::LeaseError::Lost(_) => Self::LeaseLost(e.to_string()),
            worker::LeaseError::Unavailable(_) => Self::Transient(e.to_string()),
        }
    }
}

impl From<eventstore::StoreError> for StepError {
    fn from(e: eventstore::StoreError) -> Self {
        if e.is_transient() {
            Self::Transient(format!("event store: {e}"))
        } else {
            Self::Permanent(format!("event store: {e}"))
        }
    }
}

/// Maps an Authentik error met while doing `what`.
pub fn authentik(what: &str, e: AuthentikError) -> StepError {
    match e {
        AuthentikError::Unavailable(_) => StepError::Transient(format!("{what}: {e}")),
        // A 403 is usually a token or role problem an operator fixes; retrying later is what
        // finishes the tenant once they have, so it is not dead-lettered at once.
        AuthentikError::Forbidden(_) => StepError::Transient(format!("{what}: {e}")),
        _ => StepError::Permanent(format!("{what}: {e}")),
    }
}

/// Maps a vault error met while doing `what`: an outage is retried, anything else is the
/// vault's answer.
pub fn vault(what: &str, e: ClientError) -> StepError {
    if e.is_outage() {
        StepError::Transient(format!("{what}: {e}"))
    } else {
        StepError::Permanent(format!("{what}: {e}"))
    }
}
