//! Tenantry's tenant domain, pure: no I/O and no clock reads (callers pass time in).
//!
//! - Validated value types ([`TenantId`], [`Subdomain`], [`Email`], [`PersonName`],
//!   [`OrganisationName`], [`PlanId`], [`Region`], [`VaultRef`]) and the [`Password`] policy:
//!   raw strings stop at the gRPC boundary ("parse, don't validate").
//! - Subdomain suggestions for a signup form ([`suggest_subdomain`], [`suggest_alternatives`]).
//! - The tenant lifecycle as a state machine over `proto::v1` events: [`apply`] folds facts,
//!   [`decide`] guards commands.
//! - Single sign-on ([`Sso`]): the identity service's facts folded, and [`decide_identity`],
//!   what the identity service does on a trigger.
//! - Billing ([`Subscription`]): the fold of a tenant's billing facts and [`due`], what billing
//!   must do at a given moment (time passed in).
//! - Presentation helpers used by read models and `WatchSignup`: [`progress`] and [`summarize`].

#![warn(missing_docs)]

mod error;
mod ids;
mod lifecycle;
#[cfg(test)]
mod lifecycle_tests;
mod names;
mod password;
mod progress;
mod sso;
#[cfg(test)]
mod sso_tests;
mod subscription;
#[cfg(test)]
mod subscription_tests;
#[cfg(test)]
mod subscription_usage_tests;
mod suggest;
mod summary;

pub use error::ValidationError;
pub use ids::TenantId;
pub use lifecycle::{
    Actor, Command, CommandKind, DomainError, Pending, Status, TenantState, UnknownStatus, apply,
    apply_event, decide, fold, fold_events,
};
pub use names::{
    Email, OrganisationName, PersonName, PlanId, RESERVED_SUBDOMAINS, Region, Subdomain, VaultRef,
};
pub use password::{Password, PasswordContext};
pub use progress::{
    FAILED_REASON, Progress, RETRY_REASON, SSO_FAILED_REASON, progress, progress_with_sso,
};
pub use sso::{IdentityAction, IdentityTrigger, Sso, SsoStatus, decide_identity};
pub use subscription::{
    Due, Dunning, Interval, Limits, OpenInvoice, OverLimit, Subscription, SubscriptionStatus,
    SuspendCause, Usage, due, invoice_number, next_charge_at, next_due_at, next_meter_at,
};
pub use suggest::{suggest_alternatives, suggest_subdomain};
pub use summary::summarize;
