//! One tenant as billing sees it: the fold of all its events (its status, plan and
//! subscription) and the version of its billing subject.

use eventstore::{EventContext, EventStore, RecordedEvent};
use tenancy::TenantState;

use crate::error::BillingError;

/// A tenant's billing view.
#[derive(Debug, Clone)]
pub struct Account {
    /// Tenant id.
    pub id: String,
    /// Every event folded (status, plan, subscription).
    pub state: TenantState,
    /// Version of `tenantry.billing.<tenant>` (expected version of the next append).
    pub version: u64,
}

impl Account {
    /// Loads the tenant's events.
    pub async fn load(store: &EventStore, tenant: &str) -> Result<Self, BillingError> {
        let events = store.load_tenant(tenant).await?;
        Ok(Self::from_events(store, tenant, &events))
    }

    fn from_events(store: &EventStore, tenant: &str, events: &[RecordedEvent]) -> Self {
        let subject = store.subject(EventContext::Billing, tenant);
        Self {
            id: tenant.to_owned(),
            state: tenancy::fold(events.iter().map(|e| &e.body)),
            version: events
                .iter()
                .filter(|e| e.subject == subject)
                .map(|e| e.sequence)
                .max()
                .unwrap_or(0),
        }
    }
}
