//! The tenant lifecycle: a pure state machine over `proto::v1` events.
//!
//! [`apply`] folds facts (events already recorded, from every context) into a [`TenantState`];
//! [`decide`] turns a [`Command`] into new events, or refuses it with a [`DomainError`].
//! The status graph (DESIGN.md §2):
//!
//! ```text
//! None → Requested → Provisioning → Active ⇄ Suspended → Deleting → Deleted
//!            ╰──────────┴─→ Failed ─→ Provisioning (operator retry)
//!                          Failed, Active, Suspended → Deleting
//!                          Deleting → Deleting (delete requested again after a failed deletion)
//! ```

use std::fmt;

use proto::v1::event::Body;
use proto::v1::{self as pb, TenantStatus};

use crate::sso::{Sso, SsoStatus};
use crate::subscription::Subscription;
use crate::{Email, OrganisationName, PersonName, PlanId, Region, Subdomain, TenantId, VaultRef};

/// Where a tenant is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Status {
    /// No TenantRequested seen yet: the tenant does not exist.
    #[default]
    None,
    /// The signup was accepted; nothing has been built yet.
    Requested,
    /// The provisioner is building (or retrying) the site.
    Provisioning,
    /// The site is up and the tenant can use it.
    Active,
    /// The site is in maintenance mode; data is kept.
    Suspended,
    /// Deletion was requested; the site is being backed up and dropped.
    Deleting,
    /// The site is gone. Terminal.
    Deleted,
    /// Provisioning gave up; an operator may retry or delete.
    Failed,
}

impl Status {
    /// Every status, for exhaustive tests and UIs.
    pub const ALL: [Status; 8] = [
        Status::None,
        Status::Requested,
        Status::Provisioning,
        Status::Active,
        Status::Suspended,
        Status::Deleting,
        Status::Deleted,
        Status::Failed,
    ];

    /// The status name as people read it, e.g. `Provisioning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::None => "None",
            Status::Requested => "Requested",
            Status::Provisioning => "Provisioning",
            Status::Active => "Active",
            Status::Suspended => "Suspended",
            Status::Deleting => "Deleting",
            Status::Deleted => "Deleted",
            Status::Failed => "Failed",
        }
    }

    /// Whether the tenant exists (anything but [`Status::None`]).
    pub fn exists(self) -> bool {
        self != Status::None
    }
}

impl std::str::FromStr for Status {
    type Err = UnknownStatus;

    /// Parses [`Status::as_str`] back.
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// A status name that is none of [`Status::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tenant status {0:?}")]
pub struct UnknownStatus(pub String);

/// Stored as [`Status::as_str`]; a name this version does not know (written by a newer one)
/// reads as [`Status::None`] rather than making the stored state unreadable.
#[cfg(feature = "serde")]
impl serde::Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Status {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(name.parse().unwrap_or(Status::None))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Status> for TenantStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::None => TenantStatus::Unspecified,
            Status::Requested => TenantStatus::Requested,
            Status::Provisioning => TenantStatus::Provisioning,
            Status::Active => TenantStatus::Active,
            Status::Suspended => TenantStatus::Suspended,
            Status::Deleting => TenantStatus::Deleting,
            Status::Deleted => TenantStatus::Deleted,
            Status::Failed => TenantStatus::Failed,
        }
    }
}

impl From<TenantStatus> for Status {
    fn from(s: TenantStatus) -> Self {
        match s {
            TenantStatus::Unspecified => Status::None,
            TenantStatus::Requested => Status::Requested,
            TenantStatus::Provisioning => Status::Provisioning,
            TenantStatus::Active => Status::Active,
            TenantStatus::Suspended => Status::Suspended,
            TenantStatus::Deleting => Status::Deleting,
            TenantStatus::Deleted => Status::Deleted,
            TenantStatus::Failed => Status::Failed,
        }
    }
}

impl Status {
    /// From the wire value of a `TenantStatus` field; unknown values map to [`Status::None`].
    pub fn from_proto_i32(value: i32) -> Self {
        TenantStatus::try_from(value).map_or(Status::None, Status::from)
    }
}

/// A lifecycle change that was requested but whose outcome has not been recorded yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Pending {
    /// SuspensionRequested seen, SiteSuspended not yet (the tenant is still Active).
    Suspension,
    /// ResumeRequested seen, SiteResumed not yet (the tenant is still Suspended).
    Resume,
}

/// A tenant's current state: the fold of its events.
///
/// Fields hold the recorded facts as plain strings, not re-validated newtypes: facts were
/// validated when written, and rules that tighten later (a newly reserved name) must not make
/// old history unreadable.
///
/// With the `serde` feature it serializes with these field names (read models store it as
/// JSON): they are a storage contract — rename nothing, only add fields.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct TenantState {
    /// Lifecycle status.
    pub status: Status,
    /// The tenant's id, from TenantRequested; events for other ids are ignored.
    pub tenant_id: String,
    /// Requested subdomain.
    pub subdomain: String,
    /// Current plan: the requested one, then the latest PlanChangeRequested/PlanChanged.
    pub plan: String,
    /// Organisation name.
    pub organisation: String,
    /// Owner's email.
    pub owner_email: String,
    /// Owner's full name.
    pub owner_name: String,
    /// Region the tenant asked for (or was placed in).
    pub region: String,
    /// Fully qualified site host, once placed.
    pub site: String,
    /// Bench hosting the site, once placed.
    pub bench: String,
    /// The site URL, once provisioned.
    pub url: String,
    /// The latest failure reason; cleared when provisioning succeeds.
    pub last_error: Option<String>,
    /// Whether the latest ProvisioningFailed said an operator retry may help.
    pub retryable: bool,
    /// How many operator retries of provisioning have been requested.
    pub retry_count: u32,
    /// How long the new API key took to answer (ApiAccessVerified), in milliseconds.
    pub activation_ms: Option<u64>,
    /// Wall time from request to provisioned (TenantProvisioned), in milliseconds.
    pub provisioned_ms: Option<u64>,
    /// Whether the site came from the warm standby pool.
    pub from_standby: bool,
    /// A requested suspension or resume that has not completed.
    pub pending: Option<Pending>,
    /// What the latest suspend or resume request asked for (`true` = suspended): a site event
    /// of a request that was countermanded after the provisioner began it leaves the latest
    /// request pending, since the provisioner carries that one out next.
    pub wants_suspended: Option<bool>,
    /// Single sign-on through Authentik (the identity service's facts).
    pub sso: Sso,
    /// The billing subscription (the billing service's facts).
    pub subscription: Subscription,
    /// How many events changed this state (ignored ones do not count).
    pub version: u64,
    /// When TenantRequested happened, if folded with [`apply_event`].
    #[cfg_attr(feature = "serde", serde(with = "timestamp_json"))]
    pub requested_at: Option<prost_types::Timestamp>,
    /// When the latest counted event happened, if folded with [`apply_event`].
    #[cfg_attr(feature = "serde", serde(with = "timestamp_json"))]
    pub updated_at: Option<prost_types::Timestamp>,
}

/// `prost_types::Timestamp` (which has no serde) as `{"seconds": …, "nanos": …}`, so nothing is
/// rounded.
#[cfg(feature = "serde")]
mod timestamp_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Stored {
        seconds: i64,
        nanos: i32,
    }

    pub fn serialize<S: Serializer>(
        t: &Option<prost_types::Timestamp>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        t.as_ref()
            .map(|t| Stored {
                seconds: t.seconds,
                nanos: t.nanos,
            })
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<prost_types::Timestamp>, D::Error> {
        Ok(
            Option::<Stored>::deserialize(d)?.map(|t| prost_types::Timestamp {
                seconds: t.seconds,
                nanos: t.nanos,
            }),
        )
    }
}

/// Folds one event into the state. Total: never panics, and an event that is not legal in the
/// current state (or belongs to another tenant, or is a standby-pool event) leaves the state
/// unchanged — `apply` records facts, [`decide`] is what guards transitions.
pub fn apply(state: TenantState, event: &Body) -> TenantState {
    let mut next = state.clone();
    if apply_in_place(&mut next, event) {
        next.version = next.version.saturating_add(1);
        next
    } else {
        state
    }
}

/// Like [`apply`] for a whole envelope, also recording when things happened from
/// `occurred_at` (the writer's clock, not ours). An envelope without a body is ignored.
pub fn apply_event(state: TenantState, event: &pb::Event) -> TenantState {
    let Some(body) = &event.body else {
        return state;
    };
    let before = state.version;
    let mut next = apply(state, body);
    if next.version != before {
        if matches!(body, Body::TenantRequested(_)) {
            next.requested_at = event.occurred_at;
        }
        next.updated_at = event.occurred_at;
    }
    next
}

/// Folds a tenant's events (in stream order) from nothing.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a Body>) -> TenantState {
    events.into_iter().fold(TenantState::default(), apply)
}

/// Folds a tenant's envelopes (in stream order) from nothing, with timestamps.
pub fn fold_events<'a>(events: impl IntoIterator<Item = &'a pb::Event>) -> TenantState {
    events.into_iter().fold(TenantState::default(), apply_event)
}

/// Sets `field` to `value` unless the event left it empty (proto3 has no "absent").
fn set_if(field: &mut String, value: &str) {
    if !value.is_empty() {
        value.clone_into(field);
    }
}

/// Applies `event` to `s`; returns whether the event counts (was legal here).
fn apply_in_place(s: &mut TenantState, event: &Body) -> bool {
    use Status as S;
    match event {
        Body::TenantRequested(e) => {
            if s.status.exists() {
                return false;
            }
            *s = TenantState {
                status: S::Requested,
                tenant_id: e.tenant_id.clone(),
                subdomain: e.subdomain.clone(),
                plan: e.plan.clone(),
                organisation: e.organisation.clone(),
                owner_email: e.owner_email.clone(),
                owner_name: e.owner_name.clone(),
                region: e.region.clone(),
                version: s.version,
                ..TenantState::default()
            };
            return true;
        }
        // Standby sites are not tenants until claimed (StandbySiteClaimed).
        Body::StandbySiteCreated(_) => return false,
        _ => {}
    }
    if !s.status.exists() || event.tenant_id() != s.tenant_id {
        return false;
    }
    let building = matches!(s.status, S::Requested | S::Provisioning);
    match event {
        Body::TenantRequested(_) | Body::StandbySiteCreated(_) => false,

        // Progress of a new site: moves Requested → Provisioning, legal only while building.
        Body::PlacementChosen(e) if building => {
            s.status = S::Provisioning;
            set_if(&mut s.bench, &e.bench);
            set_if(&mut s.site, &e.site);
            set_if(&mut s.region, &e.region);
            true
        }
        Body::SiteCreated(e) if building => {
            s.status = S::Provisioning;
            set_if(&mut s.bench, &e.bench);
            set_if(&mut s.site, &e.site);
            true
        }
        Body::StandbySiteClaimed(e) if building => {
            s.status = S::Provisioning;
            set_if(&mut s.bench, &e.bench);
            set_if(&mut s.site, &e.site);
            s.from_standby = true;
            true
        }
        Body::AppsInstalled(pb::AppsInstalled { site, .. })
        | Body::SiteConfigured(pb::SiteConfigured { site, .. })
        | Body::OwnerUserCreated(pb::OwnerUserCreated { site, .. })
        | Body::ApiCredentialsIssued(pb::ApiCredentialsIssued { site, .. })
            if building =>
        {
            s.status = S::Provisioning;
            set_if(&mut s.site, site);
            true
        }
        Body::ApiAccessVerified(e) if building => {
            s.status = S::Provisioning;
            set_if(&mut s.site, &e.site);
            s.activation_ms = Some(e.activation_ms);
            true
        }
        Body::TenantProvisioned(e) if s.status == S::Provisioning => {
            s.status = S::Active;
            set_if(&mut s.site, &e.site);
            set_if(&mut s.bench, &e.bench);
            set_if(&mut s.url, &e.url);
            s.provisioned_ms = Some(e.total_ms);
            s.from_standby |= e.from_standby;
            s.last_error = None;
            s.retryable = false;
            s.sso.site_provisioned();
            true
        }

        // Failures. While building they belong to provisioning; on a live tenant they are a
        // failed suspend/resume/delete: the status stays, the error is kept and the pending
        // request is cleared so the operator can ask again.
        Body::ProvisioningStepFailed(e) => match s.status {
            S::Requested | S::Provisioning => {
                s.status = S::Provisioning;
                s.last_error = Some(e.reason.clone());
                true
            }
            S::Active | S::Suspended | S::Deleting => {
                s.last_error = Some(e.reason.clone());
                true
            }
            _ => false,
        },
        Body::ProvisioningFailed(e) => match s.status {
            S::Requested | S::Provisioning => {
                s.status = S::Failed;
                s.last_error = Some(e.reason.clone());
                s.retryable = e.retryable;
                true
            }
            S::Active | S::Suspended | S::Deleting => {
                s.last_error = Some(e.reason.clone());
                s.pending = None;
                true
            }
            _ => false,
        },
        Body::SiteRolledBack(_) => matches!(s.status, S::Provisioning | S::Failed),
        Body::ProvisioningRetryRequested(_) if s.status == S::Failed => {
            s.status = S::Provisioning;
            s.retry_count = s.retry_count.saturating_add(1);
            true
        }
        // On a live tenant a retry is for single sign-on whose setup gave up.
        Body::ProvisioningRetryRequested(_)
            if matches!(s.status, S::Active | S::Suspended) && s.sso.setup == SsoStatus::Failed =>
        {
            s.sso.retry();
            s.retry_count = s.retry_count.saturating_add(1);
            true
        }

        // Suspend / resume: the request is a pending intent; the site event is the change.
        // A request that countermands the pending opposite one cancels it: the provisioner acts
        // on the latest request only, so the site keeps (or comes back to) the state asked last.
        Body::ResumeRequested(_)
            if s.status == S::Active && s.pending == Some(Pending::Suspension) =>
        {
            s.pending = None;
            s.wants_suspended = Some(false);
            true
        }
        Body::SuspensionRequested(_)
            if s.status == S::Suspended && s.pending == Some(Pending::Resume) =>
        {
            s.pending = None;
            s.wants_suspended = Some(true);
            true
        }
        Body::SuspensionRequested(_) if s.status == S::Active => {
            s.pending = Some(Pending::Suspension);
            s.wants_suspended = Some(true);
            true
        }
        Body::SiteSuspended(_) if s.status == S::Active => {
            s.status = S::Suspended;
            // A resume that came while this suspension was under way is carried out next.
            s.pending = (s.wants_suspended == Some(false)).then_some(Pending::Resume);
            true
        }
        Body::ResumeRequested(_) if s.status == S::Suspended => {
            s.pending = Some(Pending::Resume);
            s.wants_suspended = Some(false);
            true
        }
        Body::SiteResumed(_) if s.status == S::Suspended => {
            s.status = S::Active;
            s.pending = (s.wants_suspended == Some(true)).then_some(Pending::Suspension);
            true
        }

        // Deletion: the request itself moves to Deleting, so nothing else can start.
        // A repeated request while Deleting is recorded (it re-triggers a stuck deletion).
        Body::DeletionRequested(_)
            if matches!(s.status, S::Active | S::Suspended | S::Failed | S::Deleting) =>
        {
            s.status = S::Deleting;
            s.pending = None;
            true
        }
        Body::SiteDeleted(_) if s.status == S::Deleting => {
            s.status = S::Deleted;
            true
        }

        // Plan: the request (operator) and the billing fact both set it.
        Body::PlanChangeRequested(pb::PlanChangeRequested { to_plan, .. })
        | Body::PlanChanged(pb::PlanChanged { to_plan, .. })
            if s.status != S::Deleted && !to_plan.is_empty() =>
        {
            to_plan.clone_into(&mut s.plan);
            s.subscription.apply(event);
            true
        }

        // Single sign-on: its own small state next to the status, never changing it.
        Body::IdentityConfigured(_)
        | Body::IdentityStepFailed(_)
        | Body::IdentityConfigurationFailed(_)
        | Body::IdentityDisabled(_)
        | Body::IdentityEnabled(_)
        | Body::IdentityRemoved(_) => s.sso.apply(event),

        // Facts that change no status: recorded (counted) while the tenant exists.
        Body::SiteBackedUp(_)
        | Body::SiteLimitsApplied(_)
        | Body::CredentialStored(_)
        | Body::CredentialRotated(_)
        | Body::CredentialRevoked(_)
        | Body::TenantKeysShredded(_) => true,

        // Billing: the subscription's own state next to the status.
        Body::SubscriptionStarted(_)
        | Body::TrialEnded(_)
        | Body::UsageRecorded(_)
        | Body::InvoiceIssued(_)
        | Body::InvoicePaid(_)
        | Body::PaymentFailed(_)
        | Body::SubscriptionSuspended(_)
        | Body::SubscriptionReactivated(_)
        | Body::UsageLimitExceeded(_)
        | Body::UsageWithinLimits(_)
        | Body::SubscriptionCancelled(_) => {
            s.subscription.apply(event);
            true
        }

        // Everything else is a transition that is not legal from here.
        _ => false,
    }
}

/// Who asks for a lifecycle change; recorded in the event for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor {
    /// `operator`, `billing`, `system`, …
    pub kind: String,
    /// Operator name, service name, …
    pub id: String,
    /// The person a service acted for, if any.
    pub on_behalf_of: Option<String>,
}

impl Actor {
    /// A person using the operator API or `tenantctl`.
    pub fn operator(name: impl Into<String>) -> Self {
        Self {
            kind: "operator".into(),
            id: name.into(),
            on_behalf_of: None,
        }
    }

    /// A service acting on its own (e.g. `billing` suspending for non-payment).
    pub fn service(kind: &str, id: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            id: id.into(),
            on_behalf_of: None,
        }
    }

    /// The same service, acting for `person` (named by the service, which authenticated them).
    pub fn for_person(mut self, person: impl Into<String>) -> Self {
        self.on_behalf_of = Some(person.into());
        self
    }
}

impl From<Actor> for pb::Actor {
    fn from(a: Actor) -> Self {
        pb::Actor {
            kind: a.kind,
            id: a.id,
            on_behalf_of: a.on_behalf_of.unwrap_or_default(),
        }
    }
}

/// Everything a caller can ask of a tenant. Inputs are already-validated types, so `decide`
/// only has to judge the transition.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Sign a new tenant up (becomes TenantRequested).
    RequestTenant {
        /// A fresh id for the tenant.
        tenant_id: TenantId,
        /// The claimed subdomain.
        subdomain: Subdomain,
        /// Organisation name.
        organisation: OrganisationName,
        /// Owner's email.
        owner_email: Email,
        /// Owner's name.
        owner_name: PersonName,
        /// Chosen plan.
        plan: PlanId,
        /// Region to place the tenant in.
        region: Region,
        /// Vault reference to the owner's one-time password secret (never the password).
        password_ref: VaultRef,
        /// Vault reference to the second copy, for the identity service (none when SSO is off).
        sso_password_ref: Option<VaultRef>,
        /// The client's idempotency key, if it sent one.
        idempotency_key: Option<String>,
    },
    /// Put an Active tenant's site into maintenance mode.
    Suspend {
        /// Why, for the audit trail.
        reason: String,
        /// Who asks.
        actor: Actor,
    },
    /// Bring a Suspended tenant back.
    Resume {
        /// Why, for the audit trail.
        reason: String,
        /// Who asks.
        actor: Actor,
    },
    /// Back up and drop the tenant's site.
    Delete {
        /// Why, for the audit trail.
        reason: String,
        /// Who asks.
        actor: Actor,
    },
    /// Start provisioning again after it Failed.
    RetryProvisioning {
        /// Why, for the audit trail.
        reason: String,
        /// Who asks.
        actor: Actor,
    },
    /// Move the tenant to another plan.
    ChangePlan {
        /// The new plan.
        plan: PlanId,
        /// Who asks.
        actor: Actor,
    },
}

impl Command {
    /// Which kind of command this is.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::RequestTenant { .. } => CommandKind::RequestTenant,
            Command::Suspend { .. } => CommandKind::Suspend,
            Command::Resume { .. } => CommandKind::Resume,
            Command::Delete { .. } => CommandKind::Delete,
            Command::RetryProvisioning { .. } => CommandKind::RetryProvisioning,
            Command::ChangePlan { .. } => CommandKind::ChangePlan,
        }
    }
}

/// The kinds of [`Command`], without their data: for errors, tables and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommandKind {
    /// [`Command::RequestTenant`].
    RequestTenant,
    /// [`Command::Suspend`].
    Suspend,
    /// [`Command::Resume`].
    Resume,
    /// [`Command::Delete`].
    Delete,
    /// [`Command::RetryProvisioning`].
    RetryProvisioning,
    /// [`Command::ChangePlan`].
    ChangePlan,
}

impl CommandKind {
    /// Every kind, for exhaustive tests.
    pub const ALL: [CommandKind; 6] = [
        CommandKind::RequestTenant,
        CommandKind::Suspend,
        CommandKind::Resume,
        CommandKind::Delete,
        CommandKind::RetryProvisioning,
        CommandKind::ChangePlan,
    ];

    /// The verb as people read it, e.g. `retry provisioning`.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::RequestTenant => "request tenant",
            CommandKind::Suspend => "suspend",
            CommandKind::Resume => "resume",
            CommandKind::Delete => "delete",
            CommandKind::RetryProvisioning => "retry provisioning",
            CommandKind::ChangePlan => "change plan",
        }
    }

    /// The statuses this command is accepted in.
    pub fn allowed_from(self) -> &'static [Status] {
        use Status as S;
        match self {
            CommandKind::RequestTenant => &[S::None],
            CommandKind::Suspend => &[S::Active],
            CommandKind::Resume => &[S::Suspended],
            // Deleting too: a deletion that failed half-way can be requested again.
            CommandKind::Delete => &[S::Active, S::Suspended, S::Failed, S::Deleting],
            CommandKind::RetryProvisioning => &[S::Failed],
            CommandKind::ChangePlan => &[S::Active, S::Suspended],
        }
    }
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why [`decide`] refused a command. Messages say what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The command is not allowed in the tenant's current status.
    #[error("tenant is {from}; {}", hint(*.from, *.command))]
    InvalidTransition {
        /// The tenant's status.
        from: Status,
        /// What was asked.
        command: CommandKind,
    },
    /// The tenant does not exist (no TenantRequested).
    #[error("tenant not found; check the tenant id")]
    NotFound,
    /// RequestTenant for a tenant that already exists.
    #[error("tenant already exists (it is {status}); sign up with a new tenant id")]
    AlreadyExists {
        /// Its current status.
        status: Status,
    },
    /// ChangePlan to the plan the tenant is already on.
    #[error("tenant is already on plan {plan}; choose a different plan")]
    SamePlan {
        /// The current plan.
        plan: String,
    },
    /// The same change was requested and has not completed yet.
    #[error("{command} was already requested and is in progress; wait for it to finish")]
    AlreadyInProgress {
        /// What was asked again.
        command: CommandKind,
    },
}

/// What to do instead of an invalid command (the part after "tenant is X; ").
fn hint(from: Status, command: CommandKind) -> String {
    use CommandKind as C;
    use Status as S;
    let text = match (command, from) {
        (_, S::Deleted) => "a deleted tenant cannot be changed",
        (_, S::Deleting) => {
            "it is being deleted and cannot be changed (only delete may be requested again)"
        }
        (C::RequestTenant, _) => "it already exists",
        (C::Suspend, S::Requested | S::Provisioning) => "suspend is possible once it is Active",
        (C::Suspend, S::Suspended) => "it is already suspended",
        (C::Suspend | C::ChangePlan, S::Failed) => "retry provisioning or delete it instead",
        (C::Resume, S::Active) => "it is not suspended, so there is nothing to resume",
        (C::Resume, S::Failed) => "retry provisioning instead",
        (C::Delete, S::Requested | S::Provisioning) => {
            "delete is possible once provisioning has finished or failed"
        }
        (C::RetryProvisioning, S::Requested | S::Provisioning) => {
            "provisioning is under way; retry is possible if it fails"
        }
        (C::RetryProvisioning, S::Active | S::Suspended) => {
            "it is already provisioned; retry applies only to Failed tenants or failed single sign-on"
        }
        (C::ChangePlan, S::Requested | S::Provisioning) => {
            "the plan can be changed once it is Active"
        }
        _ => "",
    };
    if !text.is_empty() {
        return text.to_owned();
    }
    let allowed: Vec<&str> = command.allowed_from().iter().map(|s| s.as_str()).collect();
    format!(
        "{command} is possible only when it is {}",
        allowed.join(" or ")
    )
}

/// Decides what a command means for the tenant in `state`: the events to append, or why not.
/// Pure; appending the events and retrying on a concurrency conflict is the caller's job.
pub fn decide(state: &TenantState, command: Command) -> Result<Vec<Body>, DomainError> {
    let kind = command.kind();
    match (kind, state.status) {
        (CommandKind::RequestTenant, status) if status.exists() => {
            return Err(DomainError::AlreadyExists { status });
        }
        (CommandKind::RequestTenant, _) => {}
        (_, Status::None) => return Err(DomainError::NotFound),
        _ => {}
    }
    let sso_retry = kind == CommandKind::RetryProvisioning
        && matches!(state.status, Status::Active | Status::Suspended)
        && state.sso.setup == SsoStatus::Failed;
    // "Suspend" then at once "resume" (or the reverse) is the operator changing their mind,
    // not an error: the second countermands the first while it is still pending.
    let countermand = matches!(
        (kind, state.status, state.pending),
        (
            CommandKind::Resume,
            Status::Active,
            Some(Pending::Suspension)
        ) | (
            CommandKind::Suspend,
            Status::Suspended,
            Some(Pending::Resume)
        )
    );
    if !kind.allowed_from().contains(&state.status) && !sso_retry && !countermand {
        return Err(DomainError::InvalidTransition {
            from: state.status,
            command: kind,
        });
    }
    let tenant_id = state.tenant_id.clone();
    let event = match command {
        Command::RequestTenant {
            tenant_id,
            subdomain,
            organisation,
            owner_email,
            owner_name,
            plan,
            region,
            password_ref,
            sso_password_ref,
            idempotency_key,
        } => Body::TenantRequested(pb::TenantRequested {
            tenant_id: tenant_id.to_string(),
            subdomain: subdomain.into_string(),
            organisation: organisation.into_string(),
            owner_email: owner_email.into_string(),
            owner_name: owner_name.into_string(),
            plan: plan.into_string(),
            region: region.into_string(),
            password_ref: password_ref.into_string(),
            idempotency_key: idempotency_key.unwrap_or_default(),
            sso_password_ref: sso_password_ref
                .map(VaultRef::into_string)
                .unwrap_or_default(),
        }),
        Command::Suspend { reason, actor } => {
            if state.pending == Some(Pending::Suspension) {
                return Err(DomainError::AlreadyInProgress { command: kind });
            }
            Body::SuspensionRequested(pb::SuspensionRequested {
                tenant_id,
                reason,
                requested_by: Some(actor.into()),
            })
        }
        Command::Resume { reason, actor } => {
            if state.pending == Some(Pending::Resume) {
                return Err(DomainError::AlreadyInProgress { command: kind });
            }
            Body::ResumeRequested(pb::ResumeRequested {
                tenant_id,
                reason,
                requested_by: Some(actor.into()),
            })
        }
        Command::Delete { reason, actor } => Body::DeletionRequested(pb::DeletionRequested {
            tenant_id,
            reason,
            requested_by: Some(actor.into()),
        }),
        Command::RetryProvisioning { reason, actor } => {
            Body::ProvisioningRetryRequested(pb::ProvisioningRetryRequested {
                tenant_id,
                reason,
                requested_by: Some(actor.into()),
                attempt: state.retry_count.saturating_add(1),
            })
        }
        Command::ChangePlan { plan, actor } => {
            if plan.as_str() == state.plan {
                return Err(DomainError::SamePlan {
                    plan: state.plan.clone(),
                });
            }
            Body::PlanChangeRequested(pb::PlanChangeRequested {
                tenant_id,
                from_plan: state.plan.clone(),
                to_plan: plan.into_string(),
                requested_by: Some(actor.into()),
            })
        }
    };
    Ok(vec![event])
}
