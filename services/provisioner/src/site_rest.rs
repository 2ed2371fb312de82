//! What the provisioner does inside a site over REST: log in as Administrator, make users,
//! issue and verify the automation user's API key pair.

use std::time::Duration;

use frappe::{ApiCredentials, FrappeClient, RestError, SiteName, UserEmail, UserId};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::context::{Ctx, Fence, REST_TIMEOUT};
use crate::error::{StepError, rest_error, vault_error};
use crate::fleet::BenchConfig;
use crate::known;
use crate::secrets::{ADMIN_PASSWORD, API_CREDENTIALS, vault_ref};

/// The automation user that owns each site's API key (site-independent, so a standby's user
/// survives the rename to the tenant's host).
pub use frappe::AUTOMATION_USER;

impl Ctx {
    /// An Administrator session on `site`.
    pub async fn admin_session(
        &self,
        id: &str,
        bench: &BenchConfig,
        site: &SiteName,
    ) -> Result<FrappeClient, StepError> {
        let pw = match known::recall(id, ADMIN_PASSWORD) {
            Some(pw) => pw,
            None => {
                let pw = self
                    .vault
                    .get_by_name(id, ADMIN_PASSWORD, "site administrator login")
                    .await
                    .map_err(|e| vault_error("reading the admin password", e))?
                    .to_secret_string()
                    .map_err(|e| StepError::Permanent(format!("admin password: {e}")))?;
                known::remember(id, ADMIN_PASSWORD, &pw);
                pw
            }
        };
        let client = self.client(bench, site)?;
        let session = client
            .login(&UserId::Administrator, &pw)
            .await
            .map_err(|e| rest_error("Administrator login", e))?;
        Ok(client.with_session(&session))
    }

    /// Makes the automation user (System Manager) with a fresh key pair in the same insert, and
    /// stores the pair in the vault under `id`; returns the vault reference. A user that exists
    /// already (an attempt that died before storing its pair) gets its key rotated once with
    /// `generate_keys` instead.
    pub async fn issue_credentials(
        &self,
        fence: &Fence,
        id: &str,
        bench: &BenchConfig,
        site: &SiteName,
    ) -> Result<String, StepError> {
        if self.stored_credentials(id).await?.is_some() {
            return Ok(vault_ref(id, API_CREDENTIALS));
        }
        let admin = self.admin_session(id, bench, site).await?;
        let user =
            UserEmail::parse(AUTOMATION_USER).map_err(|e| StepError::Permanent(e.to_string()))?;
        // The pair is made here and set in the insert, as generate_keys itself sets the fields
        // and saves: one REST call instead of two. Only the pair of an insert that created the
        // user is stored; an insert that lands after this instance lost its lease finds the
        // user there (409) and changes nothing.
        let pair = ApiCredentials {
            api_key: random_hex(15),
            api_secret: random_hex(15).into(),
        };
        fence.check().await?;
        let created = insert_user(
            &admin,
            &user,
            "Tenantry",
            "Automation",
            &[
                ("api_key", pair.api_key.as_str()),
                ("api_secret", pair.api_secret.expose_secret()),
            ],
        )
        .await?;
        let creds = if created {
            self.crash_at("keys");
            pair
        } else {
            // generate_keys rotates the secret on every call: it runs only when the vault holds
            // no pair, and the pair is stored right after, so at most one secret is ever live.
            // The lease stays busy while the call may be in flight, so no other instance
            // generates a pair this call's late arrival would invalidate.
            fence.busy_for(REST_TIMEOUT).await?;
            let creds = admin
                .generate_keys(&UserId::Email(user))
                .await
                .map_err(|e| rest_error("generating the automation user's API keys", e))?;
            self.crash_at("keys");
            fence.not_busy().await?;
            creds
        };
        let value: SecretString = json!({
            "api_key": creds.api_key,
            "api_secret": creds.api_secret.expose_secret(),
            "user": AUTOMATION_USER,
        })
        .to_string()
        .into();
        fence.check().await?;
        let stored = self
            .vault
            .put_string(
                id,
                API_CREDENTIALS,
                "api_credentials",
                &value,
                "site API key pair",
            )
            .await
            .map_err(|e| vault_error("storing the API key pair", e))?;
        known::remember(id, API_CREDENTIALS, &value);
        Ok(stored.reference)
    }

    /// Waits for the stored key to answer `get_logged_user` as the automation user; returns how
    /// long it took.
    pub async fn verify_credentials(
        &self,
        id: &str,
        bench: &BenchConfig,
        site: &SiteName,
    ) -> Result<Duration, StepError> {
        let creds = self
            .stored_credentials(id)
            .await?
            .ok_or_else(|| StepError::Permanent("no API key pair in the vault to verify".into()))?;
        let client = self.client(bench, site)?;
        let (took, user) = client
            .api_key_user(&creds, Instant::now() + self.settings.verify_timeout)
            .await
            .map_err(|e| rest_error("verifying the API key", e))?;
        if user != AUTOMATION_USER {
            return Err(StepError::Permanent(format!(
                "the API key answers as {user:?}, not {AUTOMATION_USER}: wrong site or proxy routing"
            )));
        }
        Ok(took)
    }
}

/// `n` random lowercase hex digits (Frappe's `generate_hash(length=n)` form).
fn random_hex(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap_or('0'))
        .collect()
}

/// Inserts `email` as a System Manager with `secret_fields` (its password, or its API key pair)
/// in the same insert, so the user never exists without them; `false` when the user exists
/// already.
pub async fn insert_user(
    admin: &FrappeClient,
    email: &UserEmail,
    first: &str,
    last: &str,
    secret_fields: &[(&str, &str)],
) -> Result<bool, StepError> {
    let mut doc = json!({
        "email": email.as_str(),
        "first_name": first,
        "last_name": if last.is_empty() { Value::Null } else { json!(last) },
        "send_welcome_email": 0,
        "user_type": "System User",
        "roles": [{"role": "System Manager"}],
    });
    for (field, value) in secret_fields {
        doc[*field] = json!(value);
    }
    match admin.insert_doc("User", &doc).await {
        Ok(_) => Ok(true),
        Err(RestError::Conflict(_)) => Ok(false),
        Err(e) => Err(rest_error(&format!("creating user {email}"), e)),
    }
}
