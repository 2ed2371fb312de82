//! The site secrets the provisioner keeps in the vault: the Administrator password, the
//! automation user's API key pair, and the owner's password until the owner exists.

use frappe::ApiCredentials;
use rand::distr::{Alphanumeric, SampleString};
use secrecy::{ExposeSecret, SecretString};

use crate::context::Ctx;
use crate::error::{StepError, is_gone, is_not_found, vault_error};
use crate::known;

/// Vault name of the site's Administrator password.
pub const ADMIN_PASSWORD: &str = "site-admin-password";
/// Vault name of the automation user's key pair.
pub const API_CREDENTIALS: &str = "api-credentials";
/// Vault name of the owner's password between taking the one-time secret and TenantProvisioned:
/// a failed or interrupted insert, or a rolled-back round, can then create the owner again
/// without the (gone) one-time secret.
pub const OWNER_PASSWORD_PENDING: &str = "owner-password-pending";
/// Reasons starting with this make ProvisioningFailed non-retryable.
pub const OWNER_PASSWORD_GONE: &str = "the owner's one-time password secret";

/// A random password of 32 letters and digits.
pub fn random_password() -> SecretString {
    Alphanumeric.sample_string(&mut rand::rng(), 32).into()
}

/// `vault://tenant/<id>/<name>`.
pub fn vault_ref(id: &str, name: &str) -> String {
    format!("vault://tenant/{id}/{name}")
}

impl Ctx {
    /// The site's Administrator password from the vault, creating (and storing) one first if
    /// there is none yet — stored *before* new-site runs, so a crash never loses it.
    pub async fn ensure_admin_password(&self, id: &str) -> Result<SecretString, StepError> {
        if let Some(pw) = known::recall(id, ADMIN_PASSWORD) {
            return Ok(pw);
        }
        match self
            .vault
            .get_by_name(id, ADMIN_PASSWORD, "site administrator password")
            .await
        {
            Ok(v) => {
                let pw = v
                    .to_secret_string()
                    .map_err(|e| StepError::Permanent(format!("admin password: {e}")))?;
                known::remember(id, ADMIN_PASSWORD, &pw);
                Ok(pw)
            }
            Err(e) if is_not_found(&e) => {
                let pw = random_password();
                self.vault
                    .put_string(
                        id,
                        ADMIN_PASSWORD,
                        "site_admin_password",
                        &pw,
                        "new site administrator password",
                    )
                    .await
                    .map_err(|e| vault_error("storing the admin password", e))?;
                known::remember(id, ADMIN_PASSWORD, &pw);
                Ok(pw)
            }
            Err(e) => Err(vault_error("reading the admin password", e)),
        }
    }

    /// The API key pair stored for `id`, if any.
    pub async fn stored_credentials(&self, id: &str) -> Result<Option<ApiCredentials>, StepError> {
        let parse = |text: &SecretString| {
            ApiCredentials::from_stored_json(text.expose_secret())
                .map(Some)
                .map_err(StepError::Permanent)
        };
        if let Some(text) = known::recall(id, API_CREDENTIALS) {
            return parse(&text);
        }
        match self
            .vault
            .get_by_name(id, API_CREDENTIALS, "site API access")
            .await
        {
            Ok(v) => {
                let text = v
                    .to_secret_string()
                    .map_err(|e| StepError::Permanent(format!("api credentials: {e}")))?;
                known::remember(id, API_CREDENTIALS, &text);
                ApiCredentials::from_stored_json(text.expose_secret())
                    .map(Some)
                    .map_err(StepError::Permanent)
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(vault_error("reading api credentials", e)),
        }
    }

    /// The owner's chosen password: the pending copy, made now (right before the insert that
    /// uses it) by moving the one-time secret into it in one vault transaction — so no crash or
    /// failure between "taken" and "kept" can lose it — and kept until the owner exists.
    pub async fn owner_password(
        &self,
        tenant: &str,
        password_ref: &str,
    ) -> Result<SecretString, StepError> {
        let reason = "owner's initial password";
        if let Some(pw) = known::recall(tenant, OWNER_PASSWORD_PENDING) {
            return Ok(pw);
        }
        // The move first: it answers the same when an earlier attempt made it, so the common
        // path is one move and one read.
        match self
            .vault
            .move_one_time(password_ref, OWNER_PASSWORD_PENDING, reason)
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                if let Some(pw) = self.pending_owner_password(tenant).await? {
                    return Ok(pw);
                }
                return Err(StepError::Permanent(format!(
                    "{OWNER_PASSWORD_GONE} was already used or has expired; the owner must sign up again (or an operator must create the user and send a password reset)"
                )));
            }
            Err(e) => {
                return Err(vault_error(
                    "keeping the owner's password until the user exists",
                    e,
                ));
            }
        }
        self.pending_owner_password(tenant).await?.ok_or_else(|| {
            StepError::Transient("the owner's password was moved but cannot be read yet".into())
        })
    }

    /// The owner's password kept by an earlier attempt, if any.
    pub async fn pending_owner_password(
        &self,
        tenant: &str,
    ) -> Result<Option<SecretString>, StepError> {
        match self
            .vault
            .get_by_name(tenant, OWNER_PASSWORD_PENDING, "owner's initial password")
            .await
        {
            Ok(v) => {
                let pw = v
                    .to_secret_string()
                    .map_err(|e| StepError::Permanent(format!("owner password: {e}")))?;
                known::remember(tenant, OWNER_PASSWORD_PENDING, &pw);
                Ok(Some(pw))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(vault_error("reading the owner's password", e)),
        }
    }

    /// Drops the pending owner password once the tenant is provisioned (or deleted).
    pub async fn forget_owner_password(&self, tenant: &str) -> Result<(), StepError> {
        known::forget(tenant, OWNER_PASSWORD_PENDING);
        match self
            .vault
            .revoke(
                &vault_ref(tenant, OWNER_PASSWORD_PENDING),
                "owner user exists",
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_gone(&e) => Ok(()),
            Err(e) => Err(vault_error("dropping the pending owner password", e)),
        }
    }

    /// Revokes a site's vaulted credentials under `id` (missing ones are fine).
    pub async fn revoke_credentials(&self, id: &str) -> Result<(), StepError> {
        let revoke = |name: &'static str| async move {
            known::forget(id, name);
            match self
                .vault
                .revoke(&vault_ref(id, name), "site removed")
                .await
            {
                Ok(()) => Ok(()),
                Err(e) if is_gone(&e) => Ok(()),
                Err(e) => Err(vault_error("revoking site credentials", e)),
            }
        };
        tokio::try_join!(revoke(ADMIN_PASSWORD), revoke(API_CREDENTIALS)).map(drop)
    }

    /// Crypto-shreds a deleted tenant: the vault destroys every data key it holds for it, so no
    /// secret of the tenant can be read again (the vault records TenantKeysShredded). Safe to
    /// repeat.
    pub async fn shred_keys(&self, tenant: &str) -> Result<u32, StepError> {
        self.vault
            .shred_tenant(tenant, "tenant deleted")
            .await
            .map_err(|e| vault_error("shredding the tenant's keys", e))
    }
}
