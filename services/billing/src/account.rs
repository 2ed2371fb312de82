//! One tenant as billing sees it: the fold of all its events (its status, plan and
//! subscription) and the version of its billing subject.

use eventstore::{Body, EventContext, EventStore, RecordedEvent};
use tenancy::TenantState;

use crate::error::BillingError;

/// `Actor.kind` of a lifecycle request made by a service operator (signup's operator API
/// records billing's as `{kind: "service", id: <its operator name>}`).
const SERVICE_KIND: &str = "service";

/// A tenant's billing view.
#[derive(Debug, Clone)]
pub struct Account {
    /// Tenant id.
    pub id: String,
    /// Every event folded (status, plan, subscription).
    pub state: TenantState,
    /// Version of `tenantry.billing.<tenant>` (expected version of the next append).
    pub version: u64,
    /// Who asked for the tenant's current suspension (the latest SuspensionRequested not
    /// followed by a ResumeRequested).
    pub suspended_by: Option<proto::v1::Actor>,
}

impl Account {
    /// Whether the current suspension is billing's own (`billing` is its operator name at
    /// signup's operator API), not a person's nor another service's: billing lifts only its own.
    /// No suspension on record is billing's to clear (a resume then changes nothing).
    pub fn suspended_by_billing(&self, billing: &str) -> bool {
        self.suspended_by
            .as_ref()
            .is_none_or(|a| a.kind == SERVICE_KIND && a.id == billing && a.on_behalf_of.is_empty())
    }
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
            suspended_by: suspended_by(events.iter().map(|e| &e.body)),
        }
    }
}

/// Who asked for the current suspension: the latest SuspensionRequested not followed by a
/// ResumeRequested.
fn suspended_by<'a>(bodies: impl Iterator<Item = &'a Body>) -> Option<proto::v1::Actor> {
    bodies.fold(None, |by, body| match body {
        Body::SuspensionRequested(s) => s.requested_by.clone().or(by),
        Body::ResumeRequested(_) => None,
        _ => by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1 as pb;

    fn suspend(kind: &str, id: &str) -> Body {
        Body::SuspensionRequested(pb::SuspensionRequested {
            requested_by: Some(pb::Actor {
                kind: kind.into(),
                id: id.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn account(bodies: &[Body]) -> Account {
        Account {
            id: "t".into(),
            state: tenancy::TenantState::default(),
            version: 0,
            suspended_by: suspended_by(bodies.iter()),
        }
    }

    #[test]
    fn billing_lifts_only_a_suspension_a_service_asked_for() {
        let resume = Body::ResumeRequested(pb::ResumeRequested::default());
        assert!(account(&[]).suspended_by_billing("billing"));
        assert!(account(&[suspend("service", "billing")]).suspended_by_billing("billing"));
        assert!(
            !account(&[suspend("service", "reaper")]).suspended_by_billing("billing"),
            "another service's suspension is not billing's"
        );
        let by_alice = account(&[
            suspend("service", "billing"),
            resume.clone(),
            suspend("operator", "alice"),
        ]);
        assert!(!by_alice.suspended_by_billing("billing"));
        assert_eq!(by_alice.suspended_by.unwrap().id, "alice");
        // An operator who suspended first keeps the tenant, whatever billing asked later (its
        // request was refused: no second SuspensionRequested).
        assert!(!account(&[suspend("operator", "alice")]).suspended_by_billing("billing"));
        assert!(account(&[suspend("operator", "alice"), resume]).suspended_by_billing("billing"));
    }
}
