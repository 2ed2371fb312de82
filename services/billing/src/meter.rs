//! Measuring what a tenant uses, for UsageRecorded: enabled users over the site's REST API (with
//! the provisioner's key pair, read from the vault), database and file sizes on the bench host
//! (through the fleet file's runner) — what a plan's `max_users`, `max_database_mb` and
//! `max_storage_mb` limit.
//!
//! Read-only: nothing here changes a site. A measurement that fails is retried later and never
//! holds up the rest of billing (see [`crate::process::Ctx::settle`]).

use std::time::Duration;

use frappe::usage::mebibytes;
use frappe::{AUTOMATION_USER, ApiCredentials, SiteAccess, SiteName};
use secrecy::{ExposeSecret, SecretString};
use tenancy::{TenantState, Usage};
use vault_client::VaultClient;

/// How often a failed measurement is tried again.
pub const RETRY_AFTER: i64 = 300;

/// Vault name of the site's API key pair (the provisioner's).
const API_CREDENTIALS: &str = "api-credentials";

/// Where and how often usage is measured.
#[derive(Debug, Clone)]
pub struct MeterConfig {
    /// The fleet file's benches: REST front ends and runners.
    pub sites: SiteAccess,
    /// Vault gRPC endpoint.
    pub vault_endpoint: String,
    /// What billing trusts (and presents) when calling the vault.
    pub vault_tls: svc::ClientTls,
    /// Billing's vault token (grant: get `api_credentials`).
    pub vault_token: SecretString,
    /// Between two measurements of a tenant.
    pub every: Duration,
}

/// A connected meter.
pub struct Meter {
    sites: SiteAccess,
    vault: VaultClient,
    http: reqwest::Client,
}

impl Meter {
    /// Builds the vault and HTTP clients (connections are made on first use).
    pub fn new(config: &MeterConfig) -> Result<Self, String> {
        let endpoint = config
            .vault_tls
            .endpoint(&config.vault_endpoint)
            .map_err(|e| e.to_string())?;
        let vault =
            VaultClient::from_endpoint(endpoint, &config.vault_token).map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            sites: config.sites.clone(),
            vault,
            http,
        })
    }

    /// Measures `tenant`'s site now. The error says what to fix; it is logged, not recorded.
    pub async fn measure(
        &self,
        tenant: &str,
        state: &TenantState,
        now: i64,
    ) -> Result<Usage, String> {
        let site =
            SiteName::parse(&state.site).map_err(|e| format!("site name {:?}: {e}", state.site))?;
        let bench = self.sites.bench(&state.bench)?;
        let footprint = bench
            .site_footprint(&site)
            .await
            .map_err(|e| format!("measuring {site} on bench {}: {e}", state.bench))?;
        let creds = self.credentials(tenant).await?;
        let users = self
            .sites
            .client(&self.http, &state.bench, &state.site)?
            .with_token(&creds)
            .count_enabled_users(&[AUTOMATION_USER])
            .await
            .map_err(|e| format!("counting the users of {site}: {e}"))?;
        Ok(Usage {
            users,
            database_mb: mebibytes(footprint.database_bytes),
            storage_mb: mebibytes(footprint.files_bytes),
            measured_at: now,
        })
    }

    async fn credentials(&self, tenant: &str) -> Result<ApiCredentials, String> {
        let value = self
            .vault
            .get_by_name(tenant, API_CREDENTIALS, "metering the site's users")
            .await
            .map_err(|e| format!("reading the site's API key from the vault: {e}"))?;
        let text = value
            .to_secret_string()
            .map_err(|e| format!("api credentials: {e}"))?;
        ApiCredentials::from_stored_json(text.expose_secret())
    }
}
