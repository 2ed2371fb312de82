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

/// A test hook: abort the process at a chosen instruction, to prove that a kill anywhere loses
/// and duplicates nothing: right before or after an event type is appended, or at a named point
/// inside a step, between its side effect and its event (`new-site`, `marker`, `rename`,
/// `owner`, `keys`, `rollback`, `backup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the work, before the append of this event type.
    Before(String),
    /// Right after the append of this event type.
    After(String),
    /// At a named point inside a step.
    At(String),
}

impl std::str::FromStr for CrashPoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (when, what) = s
            .split_once(':')
            .ok_or_else(|| "expected before:<Event>, after:<Event> or at:<point>".to_owned())?;
        let what = what.to_owned();
        match when {
            "before" => Ok(Self::Before(what)),
            "after" => Ok(Self::After(what)),
            "at" => Ok(Self::At(what)),
            _ => Err("expected before:…, after:… or at:…".into()),
        }
    }
}

/// The proof that this instance may act on a tenant (or standby): the worker core's fence.
pub use worker::Fence;

/// The longest one REST call to a site may take (the HTTP client's timeout).
pub const REST_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// How long a deleted tenant's vault keys are kept before they are crypto-shredded (zero:
    /// at once; the site's backup is site data, not vault data, so nothing needs them).
    pub shred_after: Duration,
    /// How long a standby build waits for the background jobs its own inserts enqueued before
    /// it gives up (a bench without workers never drains).
    pub jobs_drain: Duration,
}

impl Default for ProcessSettings {
    fn default() -> Self {
        Self {
            step_attempts: 3,
            retry_backoff: Duration::from_secs(1),
            verify_timeout: Duration::from_secs(10),
            crash: None,
            shred_after: Duration::ZERO,
            jobs_drain: Duration::from_secs(120),
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
    /// The warm pool's bucket (`STANDBY_POOL`).
    pub pool: async_nats::jetstream::kv::Store,
    /// Bench operation slots.
    pub slots: Slots,
    /// Per-tenant (and per-standby-build) leases, shared with the consumers.
    pub leases: worker::Leases,
    /// Metrics.
    pub metrics: Metrics,
    /// Shared HTTP pool for REST calls.
    pub http: reqwest::Client,
    /// Timings.
    pub settings: ProcessSettings,
    /// Closed while derived state (placements, names, counters, pool) is behind the log
    /// ([`crate::recovery`]).
    pub derived: svc::Gate,
}

impl Ctx {
    /// The crash hook: aborts the process if it is set to `at:<point>`.
    pub fn crash_at(&self, point: &str) {
        if let Some(CrashPoint::At(p)) = &self.settings.crash
            && p == point
        {
            tracing::error!(point, "crash hook: aborting inside a step");
            std::process::abort();
        }
    }

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
            let file = bench.db_root_password_file.as_deref().ok_or_else(|| {
                StepError::Permanent(format!(
                    "bench {} has no database root password configured",
                    bench.name
                ))
            })?;
            return Ok(DbRoot {
                username: bench.db_root_username.clone(),
                password: read_root_password_file(file)
                    .map_err(|e| StepError::Infra(format!("bench {}: {e}", bench.name)))?,
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

/// Reads a root password file (one line; the trailing newline is not part of it). Empty is an
/// error: new-site prompts for an empty password and aborts.
pub fn read_root_password_file(path: &std::path::Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read db_root_password_file {}: {e}", path.display()))?;
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(format!(
            "db_root_password_file {} is empty; new-site cannot run without a root password",
            path.display()
        ));
    }
    Ok(SecretString::from(password.to_owned()))
}
