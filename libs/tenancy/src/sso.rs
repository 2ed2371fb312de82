//! Single sign-on: the fold of a tenant's identity facts ([`Sso`]) and what the identity
//! service does when something happens to the tenant ([`decide_identity`]).
//!
//! Two things are tracked apart, because they change for different reasons: how far *setup*
//! got (`None → Pending → Ready`, or `Failed` until an operator retries) and whether the
//! tenant's users are *disabled* (they follow the tenant's suspension). Deletion ends both.
//! A suspension or resume is a sync towards the tenant's state *now*, not a replay of the
//! trigger, so a late or redelivered SiteSuspended never locks out a resumed tenant.

use proto::v1::event::Body;

/// Where a tenant's single sign-on stands, as people read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum SsoStatus {
    /// Nothing yet (the site is not provisioned).
    #[default]
    None,
    /// The site is ready; the identity service is configuring Authentik (or retrying).
    Pending,
    /// Group, owner, provider, application, binding and the site's Social Login Key exist.
    Ready,
    /// Setup gave up; `tenantctl retry` tries again.
    Failed,
    /// Set up, and the tenant is suspended: its Authentik users are deactivated.
    Disabled,
    /// The tenant was deleted: its Authentik objects are gone.
    Removed,
}

impl SsoStatus {
    /// Lower-case name, as read models store it (empty for `None`).
    pub fn as_str(self) -> &'static str {
        match self {
            SsoStatus::None => "",
            SsoStatus::Pending => "pending",
            SsoStatus::Ready => "ready",
            SsoStatus::Failed => "failed",
            SsoStatus::Disabled => "disabled",
            SsoStatus::Removed => "removed",
        }
    }
}

/// A tenant's single sign-on facts, folded from its identity events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct Sso {
    /// Where it stands (derived from `setup`, `users_disabled` and `removed`).
    pub status: SsoStatus,
    /// How far setup got: `None`, `Pending`, `Ready` or `Failed`.
    pub setup: SsoStatus,
    /// The tenant's Authentik users are deactivated (it is suspended).
    pub users_disabled: bool,
    /// Everything was removed (the tenant was deleted).
    pub removed: bool,
    /// Application slug, once configured.
    pub application_slug: String,
    /// OAuth2 client id, once configured.
    pub client_id: String,
    /// The site login page that offers "Login with Authentik".
    pub login_url: String,
    /// OpenID issuer.
    pub issuer: String,
    /// The latest failure (a step failure while pending, or the final one).
    pub error: Option<String>,
    /// Whether the final failure may be retried.
    pub retryable: bool,
    /// Failed attempts since the last success or retry.
    pub failed_attempts: u32,
}

impl Sso {
    /// Folds one event; returns whether it counted (identity events always do).
    pub fn apply(&mut self, body: &Body) -> bool {
        match body {
            Body::IdentityConfigured(e) => {
                // A late "configured" after a removal does not bring SSO back.
                if !self.removed {
                    self.setup = SsoStatus::Ready;
                    self.users_disabled = e.users_inactive;
                }
                e.application_slug.clone_into(&mut self.application_slug);
                e.client_id.clone_into(&mut self.client_id);
                e.login_url.clone_into(&mut self.login_url);
                e.issuer.clone_into(&mut self.issuer);
                self.error = None;
                self.retryable = false;
                self.failed_attempts = 0;
            }
            Body::IdentityStepFailed(e) => {
                self.error = Some(format!("{}: {}", e.step, e.reason));
                self.failed_attempts = self.failed_attempts.saturating_add(1);
            }
            Body::IdentityConfigurationFailed(e) => {
                if self.setup != SsoStatus::Ready {
                    self.setup = SsoStatus::Failed;
                }
                self.error = Some(format!("{}: {}", e.step, e.reason));
                self.retryable = e.retryable;
            }
            Body::IdentityDisabled(_) => self.users_disabled = true,
            Body::IdentityEnabled(_) => self.users_disabled = false,
            Body::IdentityRemoved(_) => {
                self.removed = true;
                self.error = None;
            }
            _ => return false,
        }
        self.derive_status();
        true
    }

    /// The site was provisioned: setup is due.
    pub(crate) fn site_provisioned(&mut self) {
        if self.setup == SsoStatus::None {
            self.setup = SsoStatus::Pending;
        }
        self.derive_status();
    }

    /// An operator asked to retry a failed setup.
    pub(crate) fn retry(&mut self) {
        self.setup = SsoStatus::Pending;
        self.error = None;
        self.failed_attempts = 0;
        self.derive_status();
    }

    fn derive_status(&mut self) {
        self.status = if self.removed {
            SsoStatus::Removed
        } else if self.users_disabled && self.setup == SsoStatus::Ready {
            SsoStatus::Disabled
        } else {
            self.setup
        };
    }

    /// Whether IdentityConfigured was ever recorded.
    pub fn configured(&self) -> bool {
        !self.client_id.is_empty()
    }
}

/// What happened to the tenant that the identity service reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityTrigger {
    /// TenantProvisioned: the site exists and answers its API key.
    Provisioned,
    /// An operator asked to retry (ProvisioningRetryRequested on a live tenant).
    Retry,
    /// SiteSuspended.
    Suspended,
    /// SiteResumed.
    Resumed,
    /// SiteDeleted.
    Deleted,
}

/// What the identity service does about a trigger, given its facts so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityAction {
    /// Create or adopt every object, then record IdentityConfigured. `active` says whether the
    /// users start active (false while the tenant is suspended).
    Configure {
        /// Users start active.
        active: bool,
    },
    /// Deactivate the tenant's users, record IdentityDisabled.
    Disable,
    /// Reactivate them, record IdentityEnabled.
    Enable,
    /// Delete every object of the tenant, record IdentityRemoved.
    Remove,
    /// Already done, or no longer wanted (a removed tenant): acknowledge.
    Nothing,
}

/// Decides the identity service's action. Pure: `sso` is the fold of the tenant's identity
/// facts, `suspended` whether the tenant is suspended *now* (its lifecycle facts).
///
/// Every action is idempotent, so a crash between the work and its event simply repeats it.
pub fn decide_identity(sso: &Sso, trigger: IdentityTrigger, suspended: bool) -> IdentityAction {
    use IdentityAction as A;
    use IdentityTrigger as T;
    use SsoStatus as S;
    if sso.removed {
        return A::Nothing;
    }
    match trigger {
        T::Deleted => A::Remove,
        T::Provisioned => match sso.setup {
            S::None | S::Pending => A::Configure { active: !suspended },
            // Done, or gave up (only an operator's retry starts it again).
            _ => A::Nothing,
        },
        T::Retry => match sso.setup {
            S::Ready => A::Nothing,
            _ => A::Configure { active: !suspended },
        },
        // A sync towards the tenant's state now, whichever event woke us.
        T::Suspended | T::Resumed => match (sso.users_disabled, suspended) {
            (false, true) => A::Disable,
            (true, false) => A::Enable,
            _ => A::Nothing,
        },
    }
}
