//! The proof a step carries that this instance may still act on its key: the lease the worker
//! took for the delivery (or a scheduler took itself), checked right before every side effect
//! and every append.

use std::sync::Arc;
use std::time::Duration;

use crate::lease::{Lease, LeaseError};

/// A delivery's (or a scheduled job's) lease, or none (work that needs no exclusion).
#[derive(Clone, Default)]
pub struct Fence(Option<Arc<Lease>>);

impl Fence {
    /// Fenced by `lease`.
    pub fn of(lease: Option<Arc<Lease>>) -> Self {
        Self(lease)
    }

    /// Errors with [`LeaseError::Lost`] unless the lease is still ours.
    pub async fn check(&self) -> Result<(), LeaseError> {
        match &self.0 {
            Some(l) => l.check().await,
            None => Ok(()),
        }
    }

    /// Checks the lease, then marks it busy for `limit`: a call that cannot be repeated
    /// harmlessly, or that may still land after this instance lost its lease, may be in flight
    /// that long, so nobody takes the key over before then.
    pub async fn busy_for(&self, limit: Duration) -> Result<(), LeaseError> {
        self.check().await?;
        match &self.0 {
            Some(l) => l.busy_for(limit).await,
            None => Ok(()),
        }
    }

    /// The call marked with [`Fence::busy_for`] has returned.
    pub async fn not_busy(&self) -> Result<(), LeaseError> {
        match &self.0 {
            Some(l) => l.not_busy().await,
            None => Ok(()),
        }
    }
}
