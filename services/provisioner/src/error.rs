//! Why a step did not complete, and how errors of the bench, REST and the vault are classified:
//! transient (another attempt may help), permanent (roll back and report), or our own
//! infrastructure (stop; the delivery comes back).

use eventstore::StoreError;
use frappe::{BenchError, RestError};
use vault_client::ClientError;

use crate::placement::PlacerError;

/// Why a step did not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StepError {
    /// Worth another attempt after a back-off (timeouts, unclassified command failures, 5xx).
    #[error("{0}")]
    Transient(String),
    /// Another attempt will not help: roll back and report.
    #[error("{0}")]
    Permanent(String),
    /// Our own infrastructure (NATS, KV) failed: stop and let the message be redelivered; the
    /// step's attempt is not counted against the tenant.
    #[error("infrastructure unavailable: {0}")]
    Infra(String),
    /// Another command holds the site's lock on the bench host (one an instance that died
    /// started, still running under its time limit): come back later; not an attempt.
    #[error("{0}")]
    Busy(String),
    /// This instance no longer holds the tenant's lease: another one has it and carries on.
    #[error("{0}")]
    LeaseLost(String),
    /// The site by this name is not ours: it belongs to another tenant, a standby, or nobody
    /// Tenantry knows. Nothing was touched; the round fails and says whose it is.
    #[error("{0}")]
    NotOurs(String),
}

impl StepError {
    /// An infrastructure error from anything printable.
    pub fn infra(e: impl std::fmt::Display) -> Self {
        StepError::Infra(e.to_string())
    }
}

impl From<worker::LeaseError> for StepError {
    fn from(e: worker::LeaseError) -> Self {
        match e {
            worker::LeaseError::Lost(_) => StepError::LeaseLost(e.to_string()),
            worker::LeaseError::Unavailable(_) => StepError::infra(e),
        }
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        StepError::infra(e)
    }
}

impl From<PlacerError> for StepError {
    fn from(e: PlacerError) -> Self {
        match e {
            PlacerError::NoFit(e) => StepError::Permanent(e.to_string()),
            PlacerError::Unavailable(m) => StepError::Infra(m),
            e @ PlacerError::Taken { .. } => StepError::NotOurs(e.to_string()),
        }
    }
}

/// Classifies a bench error (messages are already scrubbed of secrets).
pub fn bench_error(context: &str, e: BenchError) -> StepError {
    let msg = format!("{context}: {e}");
    match e {
        BenchError::AccessDenied => StepError::Permanent(format!(
            "{msg}; check the MariaDB root password the fleet's db_root_password_ref points to"
        )),
        BenchError::RootPasswordMissing => StepError::Permanent(msg),
        BenchError::AppNotFound(_) => StepError::Permanent(format!(
            "{msg}; install the app on the bench or fix the plan's apps"
        )),
        BenchError::Busy { .. } => StepError::Busy(msg),
        // The bench could not be reached at all (ssh or docker down, binary missing): our
        // side, not the tenant's — not an attempt of the step.
        BenchError::Spawn { .. } => StepError::Infra(msg),
        BenchError::InvalidInput(_) | BenchError::SiteExists(_) | BenchError::UserExists(_) => {
            StepError::Permanent(msg)
        }
        // Timeouts, unclassified command failures, missing sites/users mid-process (a bench
        // restored from backup, a racing redelivery): worth another attempt.
        _ => StepError::Transient(msg),
    }
}

/// Classifies a REST error (never holds a traceback or secret).
pub fn rest_error(context: &str, e: RestError) -> StepError {
    let msg = format!("{context}: {e}");
    if e.is_transient() || matches!(e, RestError::DeadlineExceeded { .. }) {
        StepError::Transient(msg)
    } else {
        StepError::Permanent(msg)
    }
}

/// Classifies a vault error. A vault that does not answer is our infrastructure: the delivery
/// comes back, and no step attempt is spent (a blip must not roll a tenant back).
pub fn vault_error(context: &str, e: ClientError) -> StepError {
    let msg = format!("{context}: {e}");
    if e.is_outage() {
        StepError::Infra(msg)
    } else {
        StepError::Permanent(msg)
    }
}

/// Whether the vault answered NOT_FOUND.
pub fn is_not_found(e: &ClientError) -> bool {
    e.is_not_found()
}

/// Whether the secret is gone: never there, revoked, or its tenant crypto-shredded (a retried
/// deletion finds the keys already destroyed).
pub fn is_gone(e: &ClientError) -> bool {
    e.is_gone()
}
