//! What the identity service knows about a tenant when a delivery arrives: the fold of all its
//! events (signup, provisioning, lifecycle, identity), plus the facts it needs from them.

use std::collections::BTreeMap;

use eventstore::{Body, EventContext, EventStore, RecordedEvent};
use proto::v1 as pb;
use tenancy::{Status, TenantState};

use crate::error::StepError;

/// One tenant, as of its latest events.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Tenant id.
    pub id: String,
    /// The fold of every event of the tenant.
    pub state: TenantState,
    /// The signup request (owner, subdomain, the password copy for Authentik).
    pub requested: Option<pb::TenantRequested>,
    /// The provisioning result (site, bench, URL).
    pub provisioned: Option<pb::TenantProvisioned>,
    /// Version of the tenant's identity subject (the expected version of our next append).
    pub identity_version: u64,
    /// Recorded step failures, by the id of the event that caused them: the attempts made on
    /// a trigger so far (deliveries handed back unworked do not count).
    pub failures_by_cause: BTreeMap<String, u32>,
}

impl Tenant {
    /// Loads every event of `tenant`.
    pub async fn load(store: &EventStore, tenant: &str) -> Result<Self, StepError> {
        let events = store.load_tenant(tenant).await?;
        Ok(Self::from_events(store, tenant, &events))
    }

    /// Folds loaded events (in stream order).
    pub fn from_events(store: &EventStore, tenant: &str, events: &[RecordedEvent]) -> Self {
        let identity_subject = store.subject(EventContext::Identity, tenant);
        let mut requested = None;
        let mut provisioned = None;
        let mut identity_version = 0;
        let mut failures_by_cause: BTreeMap<String, u32> = BTreeMap::new();
        for e in events {
            if let (Body::IdentityStepFailed(_), Some(cause)) = (&e.body, &e.causation_id) {
                *failures_by_cause.entry(cause.clone()).or_default() += 1;
            }
            match &e.body {
                Body::TenantRequested(r) if requested.is_none() => requested = Some(r.clone()),
                Body::TenantProvisioned(p) => provisioned = Some(p.clone()),
                _ => {}
            }
            if e.subject == identity_subject {
                identity_version = e.sequence;
            }
        }
        Self {
            id: tenant.to_owned(),
            state: tenancy::fold(events.iter().map(|e| &e.body)),
            requested,
            provisioned,
            identity_version,
            failures_by_cause,
        }
    }

    /// Attempts already recorded as failed for the trigger `cause`.
    pub fn failures_for(&self, cause: &uuid::Uuid) -> u32 {
        self.failures_by_cause
            .get(&cause.to_string())
            .copied()
            .unwrap_or(0)
    }

    /// Whether the tenant is suspended now (its users must stay inactive).
    pub fn suspended(&self) -> bool {
        self.state.status == Status::Suspended
    }
}
