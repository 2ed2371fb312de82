//! Single sign-on: the fold of a tenant's identity facts ([`Sso`]) and what the identity
//! service does when something happens to the tenant ([`decide_identity`]).
//!
//! ```text
//!   None ─TenantProvisioned→ Pending ─IdentityConfigured→ Ready ⇄ Disabled
//!                              │  ↑ retry                   │        │
//!                              ↓  │                         ↓        ↓
//!                             Failed ───────────────────→ Removed ←──╯
//! ```

use proto::v1::event::Body;

/// Where a tenant's single sign-on stands.
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
    /// The tenant is suspended: its Authentik users are deactivated.
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
    /// Where it stands.
    pub status: SsoStatus,
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
                if self.status != SsoStatus::Removed {
                    self.status = if self.status == SsoStatus::Disabled {
                        SsoStatus::Disabled
                    } else {
                        SsoStatus::Ready
                    };
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
                if matches!(self.status, SsoStatus::None | SsoStatus::Pending) {
                    self.status = SsoStatus::Failed;
                }
                self.error = Some(format!("{}: {}", e.step, e.reason));
                self.retryable = e.retryable;
            }
            Body::IdentityDisabled(_) => {
                if self.status != SsoStatus::Removed {
                    self.status = SsoStatus::Disabled;
                }
            }
            Body::IdentityEnabled(_) => {
                if self.status == SsoStatus::Disabled {
                    self.status = if self.client_id.is_empty() {
                        SsoStatus::Pending
                    } else {
                        SsoStatus::Ready
                    };
                }
            }
            Body::IdentityRemoved(_) => {
                self.status = SsoStatus::Removed;
                self.error = None;
            }
            _ => return false,
        }
        true
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
    /// owner starts active (false when the tenant was suspended meanwhile).
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
/// subject, `suspended` whether the tenant is suspended now (its lifecycle facts).
///
/// Redelivery is harmless: a trigger whose result is already recorded decides `Nothing`, except
/// that configure, disable, enable and remove are idempotent themselves, so a crash between the
/// work and its event simply repeats the work.
pub fn decide_identity(sso: &Sso, trigger: IdentityTrigger, suspended: bool) -> IdentityAction {
    use IdentityAction as A;
    use IdentityTrigger as T;
    use SsoStatus as S;
    match (trigger, sso.status) {
        (_, S::Removed) => A::Nothing,
        (T::Deleted, _) => A::Remove,
        (T::Provisioned, S::None | S::Pending) | (T::Retry, S::None | S::Pending | S::Failed) => {
            A::Configure { active: !suspended }
        }
        // Suspended before setup finished: finish it, with the users inactive.
        (T::Provisioned | T::Retry, S::Disabled) if !sso.configured() => {
            A::Configure { active: false }
        }
        // Done, or gave up (only an operator's retry starts it again).
        (T::Provisioned | T::Retry, S::Ready | S::Disabled | S::Failed) => A::Nothing,
        (T::Suspended, S::Disabled) => A::Nothing,
        (T::Suspended, _) => A::Disable,
        (T::Resumed, S::Disabled) => A::Enable,
        (T::Resumed, _) => A::Nothing,
    }
}
