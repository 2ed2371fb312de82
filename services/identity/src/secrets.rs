//! The identity service's secrets in the vault: the owner's password (its own one-time copy,
//! moved into a named secret the moment it is needed, revoked once Authentik has it), the
//! OAuth2 client secret, and (read only) the site's API key.

use frappe::ApiCredentials;
use secrecy::{ExposeSecret, SecretString};

use crate::context::Ctx;
use crate::error::{StepError, vault};

/// Vault name of the OAuth2 client secret (kind `oauth_client_secret`).
pub const CLIENT_SECRET: &str = "oauth-client-secret";
/// Kind of the client secret.
pub const CLIENT_SECRET_KIND: &str = "oauth_client_secret";
/// Vault name of the owner's Authentik password between taking its one-time copy and
/// IdentityConfigured (kind `sso_owner_password`): a crash after the move can still set it.
pub const PASSWORD_PENDING: &str = "sso-owner-password-pending";
/// Vault name of the site's API key pair (the provisioner's).
pub const API_CREDENTIALS: &str = "api-credentials";

/// `vault://tenant/<id>/<name>`.
pub fn vault_ref(id: &str, name: &str) -> String {
    format!("vault://tenant/{id}/{name}")
}

impl Ctx {
    /// The owner's chosen password: the pending copy, or the one-time copy moved into it now
    /// (one vault transaction, so no crash between "taken" and "kept" can lose it).
    pub async fn owner_password(
        &self,
        tenant: &str,
        one_time_ref: &str,
    ) -> Result<SecretString, StepError> {
        if let Some(pw) = self.pending_password(tenant).await? {
            return Ok(pw);
        }
        if one_time_ref.is_empty() {
            return Err(StepError::Gone(
                "the signup carries no password copy for Authentik (signup ran without single sign-on); send the owner an Authentik recovery link instead".into(),
            ));
        }
        match self
            .vault
            .move_one_time(one_time_ref, PASSWORD_PENDING, "owner's Authentik password")
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                return Err(StepError::Gone(
                    "the owner's one-time password copy for Authentik was already used or has expired; send the owner an Authentik recovery link".into(),
                ));
            }
            Err(e) => return Err(vault("keeping the owner's Authentik password", e)),
        }
        self.pending_password(tenant).await?.ok_or_else(|| {
            StepError::Transient("the owner's password was moved but cannot be read yet".into())
        })
    }

    async fn pending_password(&self, tenant: &str) -> Result<Option<SecretString>, StepError> {
        match self
            .vault
            .get_by_name(tenant, PASSWORD_PENDING, "owner's Authentik password")
            .await
        {
            Ok(v) => v
                .to_secret_string()
                .map(Some)
                .map_err(|e| StepError::Permanent(format!("owner password: {e}"))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(vault("reading the owner's Authentik password", e)),
        }
    }

    /// Drops the pending password once Authentik has it (or the tenant is gone).
    pub async fn forget_password(&self, tenant: &str) -> Result<(), StepError> {
        self.revoke(
            tenant,
            PASSWORD_PENDING,
            "owner's Authentik password is set",
        )
        .await
    }

    /// Stores the client secret unless the vault already holds this value.
    pub async fn store_client_secret(
        &self,
        tenant: &str,
        secret: &SecretString,
    ) -> Result<String, StepError> {
        match self
            .vault
            .get_by_name(tenant, CLIENT_SECRET, "is the client secret stored")
            .await
        {
            Ok(v) => {
                let held = v
                    .to_secret_string()
                    .map_err(|e| StepError::Permanent(format!("client secret: {e}")))?;
                if held.expose_secret() == secret.expose_secret() {
                    return Ok(vault_ref(tenant, CLIENT_SECRET));
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(vault("reading the client secret", e)),
        }
        self.vault
            .put_string(
                tenant,
                CLIENT_SECRET,
                CLIENT_SECRET_KIND,
                secret,
                "OAuth2 client secret of the tenant's Authentik provider",
            )
            .await
            .map(|s| s.reference)
            .map_err(|e| vault("storing the client secret", e))
    }

    /// The site's API key pair; `None` when it is gone (the tenant's keys were shredded).
    pub async fn site_credentials(
        &self,
        tenant: &str,
    ) -> Result<Option<ApiCredentials>, StepError> {
        let value = match self
            .vault
            .get_by_name(tenant, API_CREDENTIALS, "write the site's Social Login Key")
            .await
        {
            Ok(v) => v,
            Err(e) if e.is_gone() => return Ok(None),
            Err(e) => return Err(vault("reading the site's API key", e)),
        };
        let text = value
            .to_secret_string()
            .map_err(|e| StepError::Permanent(format!("api credentials: {e}")))?;
        ApiCredentials::from_stored_json(text.expose_secret())
            .map(Some)
            .map_err(StepError::Permanent)
    }

    /// Revokes `name` of `tenant`; a missing or shredded secret is fine.
    pub async fn revoke(&self, tenant: &str, name: &str, reason: &str) -> Result<(), StepError> {
        match self.vault.revoke(&vault_ref(tenant, name), reason).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_gone() => Ok(()),
            Err(e) => Err(vault("revoking a secret", e)),
        }
    }
}
