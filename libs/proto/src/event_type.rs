//! Event type names, contexts and tenant ids, derived from the `Event.body` oneof.

use crate::v1::event::Body;

/// The bounded context an event belongs to; each has one subject per tenant
/// (`tenantry.<context>.<tenant_id>`) and exactly one writer service. `Pool` is the exception:
/// its subjects are per standby site (`tenantry.pool.<standby id>`), which is not a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventContext {
    Signup,
    Lifecycle,
    Provisioning,
    Pool,
    Vault,
    Identity,
    Billing,
}

impl EventContext {
    /// Every context, in catalogue order.
    pub const ALL: [EventContext; 7] = [
        EventContext::Signup,
        EventContext::Lifecycle,
        EventContext::Provisioning,
        EventContext::Pool,
        EventContext::Vault,
        EventContext::Identity,
        EventContext::Billing,
    ];

    /// The subject token, e.g. `provisioning`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventContext::Signup => "signup",
            EventContext::Lifecycle => "lifecycle",
            EventContext::Provisioning => "provisioning",
            EventContext::Pool => "pool",
            EventContext::Vault => "vault",
            EventContext::Identity => "identity",
            EventContext::Billing => "billing",
        }
    }

    /// Parses a subject token.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for EventContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! catalogue {
    ($( $variant:ident => $ctx:ident, $id:ident );* $(;)?) => {
        impl Body {
            /// The event's type name as carried in the `Tenantry-Event-Type` header.
            pub fn type_name(&self) -> &'static str {
                match self { $( Body::$variant(_) => stringify!($variant), )* }
            }

            /// The context whose subject this event is written to.
            pub fn context(&self) -> EventContext {
                match self { $( Body::$variant(_) => EventContext::$ctx, )* }
            }

            /// The tenant (or, for standby sites, the standby) the event is about.
            pub fn tenant_id(&self) -> &str {
                match self { $( Body::$variant(e) => &e.$id, )* }
            }

            /// Every event type name in the catalogue.
            pub const TYPE_NAMES: &'static [&'static str] = &[ $( stringify!($variant), )* ];
        }
    };
}

catalogue! {
    TenantRequested => Signup, tenant_id;
    SuspensionRequested => Lifecycle, tenant_id;
    ResumeRequested => Lifecycle, tenant_id;
    DeletionRequested => Lifecycle, tenant_id;
    PlanChangeRequested => Lifecycle, tenant_id;
    ProvisioningRetryRequested => Lifecycle, tenant_id;
    PlacementChosen => Provisioning, tenant_id;
    SiteCreated => Provisioning, tenant_id;
    AppsInstalled => Provisioning, tenant_id;
    SiteConfigured => Provisioning, tenant_id;
    OwnerUserCreated => Provisioning, tenant_id;
    ApiCredentialsIssued => Provisioning, tenant_id;
    ApiAccessVerified => Provisioning, tenant_id;
    TenantProvisioned => Provisioning, tenant_id;
    ProvisioningStepFailed => Provisioning, tenant_id;
    ProvisioningFailed => Provisioning, tenant_id;
    SiteRolledBack => Provisioning, tenant_id;
    SiteSuspended => Provisioning, tenant_id;
    SiteResumed => Provisioning, tenant_id;
    SiteBackedUp => Provisioning, tenant_id;
    SiteDeleted => Provisioning, tenant_id;
    StandbySiteCreated => Pool, standby_id;
    StandbySiteClaimed => Provisioning, tenant_id;
    SiteLimitsApplied => Provisioning, tenant_id;
    CredentialStored => Vault, tenant_id;
    CredentialRotated => Vault, tenant_id;
    CredentialRevoked => Vault, tenant_id;
    TenantKeysShredded => Vault, tenant_id;
    IdentityConfigured => Identity, tenant_id;
    IdentityConfigurationFailed => Identity, tenant_id;
    IdentityDisabled => Identity, tenant_id;
    IdentityEnabled => Identity, tenant_id;
    IdentityRemoved => Identity, tenant_id;
    IdentityStepFailed => Identity, tenant_id;
    SubscriptionStarted => Billing, tenant_id;
    TrialEnded => Billing, tenant_id;
    PlanChanged => Billing, tenant_id;
    UsageRecorded => Billing, tenant_id;
    InvoiceIssued => Billing, tenant_id;
    InvoicePaid => Billing, tenant_id;
    PaymentFailed => Billing, tenant_id;
    SubscriptionCancelled => Billing, tenant_id;
    SubscriptionSuspended => Billing, tenant_id;
    SubscriptionReactivated => Billing, tenant_id;
    UsageLimitExceeded => Billing, tenant_id;
    UsageWithinLimits => Billing, tenant_id;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{SiteCreated, TenantRequested};

    #[test]
    fn body_knows_its_type_context_and_tenant() {
        let b = Body::SiteCreated(SiteCreated {
            tenant_id: "t1".into(),
            ..Default::default()
        });
        assert_eq!(b.type_name(), "SiteCreated");
        assert_eq!(b.context(), EventContext::Provisioning);
        assert_eq!(b.tenant_id(), "t1");
        let b = Body::TenantRequested(TenantRequested {
            tenant_id: "t2".into(),
            ..Default::default()
        });
        assert_eq!(b.context().as_str(), "signup");
        let b = Body::StandbySiteCreated(crate::v1::StandbySiteCreated {
            standby_id: "standby-0123456789ab".into(),
            ..Default::default()
        });
        assert_eq!(
            (b.context().as_str(), b.tenant_id()),
            ("pool", "standby-0123456789ab"),
            "a standby is not a tenant: its own subjects"
        );
    }

    #[test]
    fn context_tokens_round_trip() {
        for c in EventContext::ALL {
            assert_eq!(EventContext::parse(c.as_str()), Some(c));
        }
        assert_eq!(EventContext::parse("nope"), None);
    }
}
