//! What every step needs ([`Ctx`]: the event store, the fleet and its benches, the vault,
//! placement, bench slots, metrics, HTTP), the process settings, and the crash test hook.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use eventstore::EventStore;
use frappe::{Bench, DbRoot, FrappeClient, SiteName};
use secrecy::SecretString;
use vault_client::VaultClient;

use crate::error::{StepError, vault_error};
use crate::fleet::{BenchConfig, FleetConfig};
use crate::metrics::Metrics;
use crate::placement::Placer;
use crate::slots::Slots;

/// A test hook: abort the process right before or after an event type is appended, to prove
/// that a kill at any step boundary loses and duplicates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashPoint {
    /// `true`: after the work, before the append; `false`: right after the append.
    pub before: bool,
    /// The event type name, e.g. `SiteCreated`.
    pub event_type: String,
}

impl std::str::FromStr for CrashPoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (when, ty) = s
            .split_once(':')
            .ok_or_else(|| "expected before:<EventType> or after:<EventType>".to_owned())?;
        let before = match when {
            "before" => true,
            "after" => false,
            _ => return Err("expected before:… or after:…".into()),
        };
        Ok(Self {
            before,
            event_type: ty.to_owned(),
        })
    }
}

/// Timings and limits of the process.
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    /// Attempts of a step before it gives up on transient errors.
    pub step_attempts: u32,
    /// Back-off before the second attempt; doubles each attempt.
    pub retry_backoff: Duration,
    /// How long the new key may take to answer before verification fails.
    pub verify_timeout: Duration,
    /// Test hook.
    pub crash: Option<CrashPoint>,
}

impl Default for ProcessSettings {
    fn default() -> Self {
        Self {
            step_attempts: 3,
            retry_backoff: Duration::from_secs(1),
            verify_timeout: Duration::from_secs(10),
            crash: None,
        }
    }
}

/// Everything steps need. Cheap to clone.
#[derive(Clone)]
pub struct Ctx {
    /// The event store.
    pub store: EventStore,
    /// The fleet.
    pub fleet: Arc<FleetConfig>,
    /// Bench handles by name.
    pub benches: Arc<BTreeMap<String, Bench>>,
    /// The vault, as the `provisioner` caller.
    pub vault: VaultClient,
    /// Placement.
    pub placer: Placer,
    /// Bench operation slots.
    pub slots: Slots,
    /// Metrics.
    pub metrics: Metrics,
    /// Shared HTTP pool for REST calls.
    pub http: reqwest::Client,
    /// Timings.
    pub settings: ProcessSettings,
}

impl Ctx {
    /// The bench config and handle.
    pub fn bench(&self, name: &str) -> Result<(&BenchConfig, &Bench), StepError> {
        match (self.fleet.bench(name), self.benches.get(name)) {
            (Some(c), Some(b)) => Ok((c, b)),
            _ => Err(StepError::Permanent(format!(
                "bench {name} is no longer in the fleet config; put it back or delete the tenant"
            ))),
        }
    }

    /// MariaDB root credentials of a bench, from the vault.
    pub async fn db_root(&self, bench: &BenchConfig) -> Result<DbRoot, StepError> {
        let Some(reference) = &bench.db_root_password_ref else {
            return Ok(DbRoot {
                username: bench.db_root_username.clone(),
                password: SecretString::from(String::new()),
            });
        };
        let secret = self
            .vault
            .get(reference, "bench database root access")
            .await
            .map_err(|e| {
                vault_error(&format!("reading {reference} for bench {}", bench.name), e)
            })?;
        let password = secret
            .to_secret_string()
            .map_err(|e| StepError::Permanent(format!("db root password: {e}")))?;
        Ok(DbRoot {
            username: bench.db_root_username.clone(),
            password,
        })
    }

    /// A REST client for `site` on `bench`.
    pub fn client(&self, bench: &BenchConfig, site: &SiteName) -> Result<FrappeClient, StepError> {
        FrappeClient::with_http(
            self.http.clone(),
            &bench.base_url,
            site.clone(),
            bench.routing.into(),
        )
        .map_err(|e| StepError::Permanent(format!("REST client for {site}: {e}")))
    }
}
