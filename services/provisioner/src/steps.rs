//! The I/O of each provisioning step, and the loop that drives a tenant through them.
//!
//! Every step first looks at reality (does the site exist? which apps are installed? does the
//! user exist? is the key in the vault?) and only does what is missing, then returns the events
//! that record it. [`provision`] folds the tenant's provisioning subject, asks
//! [`process::decide`] for the next step, runs it and appends its events with the expected
//! version and a deterministic id — so a redelivery, a crash or a second instance never does
//! anything twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventstore::{EventContext, EventStore, NewEvent, RecordedEvent, StoreError};
use frappe::{
    ApiCredentials, AppName, Bench, BenchError, ConfigKey, DbName, DbRoot, DropSite, FrappeClient,
    NewSite, RestError, SiteName, UserEmail, UserId,
};
use proto::v1::{self as pb, event::Body};
use rand::distributions::{Alphanumeric, DistString};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::time::Instant;
use tonic::Code;
use vault::VaultClient;
use vault::client::ClientError;

use crate::fleet::{BenchConfig, FleetConfig};
use crate::metrics::Metrics;
use crate::placement::{PlacementRecord, Placer, PlacerError};
use crate::process::{self, GaveUp, Next, ProvisioningState, Step};
use crate::slots::Slots;

/// The automation user that owns each site's API key (site-independent, so a standby's user
/// survives the rename to the tenant's host).
pub const AUTOMATION_USER: &str = "automation@tenantry.internal";
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

/// Why a step did not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StepError {
    /// Worth another attempt after a back-off (timeouts, unclassified command failures, 5xx).
    #[error("{0}")]
    Transient(String),
    /// Another attempt will not help: roll back and report.
    #[error("{0}")]
    Permanent(String),
    /// Our own infrastructure (NATS, KV) failed: stop and let the message be redelivered; the
    /// step's attempt is not counted against the tenant.
    #[error("infrastructure unavailable: {0}")]
    Infra(String),
}

impl StepError {
    fn infra(e: impl std::fmt::Display) -> Self {
        StepError::Infra(e.to_string())
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        StepError::infra(e)
    }
}

impl From<PlacerError> for StepError {
    fn from(e: PlacerError) -> Self {
        match e {
            PlacerError::NoFit(e) => StepError::Permanent(e.to_string()),
            PlacerError::Unavailable(m) => StepError::Infra(m),
        }
    }
}

/// Classifies a bench error (messages are already scrubbed of secrets).
pub fn bench_error(context: &str, e: BenchError) -> StepError {
    let msg = format!("{context}: {e}");
    match e {
        BenchError::AccessDenied => StepError::Permanent(format!(
            "{msg}; check the MariaDB root password the fleet's db_root_password_ref points to"
        )),
        BenchError::AppNotFound(_) => StepError::Permanent(format!(
            "{msg}; install the app on the bench or fix the plan's apps"
        )),
        BenchError::InvalidInput(_) | BenchError::SiteExists(_) | BenchError::UserExists(_) => {
            StepError::Permanent(msg)
        }
        // Timeouts, unclassified command failures, missing sites/users mid-process (a bench
        // restored from backup, a racing redelivery): worth another attempt.
        _ => StepError::Transient(msg),
    }
}

/// Classifies a REST error (never holds a traceback or secret).
pub fn rest_error(context: &str, e: RestError) -> StepError {
    let msg = format!("{context}: {e}");
    if e.is_transient() || matches!(e, RestError::DeadlineExceeded { .. }) {
        StepError::Transient(msg)
    } else {
        StepError::Permanent(msg)
    }
}

/// Classifies a vault error.
pub fn vault_error(context: &str, e: ClientError) -> StepError {
    let msg = format!("{context}: {e}");
    match e.code() {
        Some(Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted) | None => {
            StepError::Transient(msg)
        }
        _ => StepError::Permanent(msg),
    }
}

fn is_not_found(e: &ClientError) -> bool {
    e.code() == Some(Code::NotFound)
}

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

/// What a TenantRequested asked for.
#[derive(Debug, Clone)]
pub struct Request {
    /// Tenant id.
    pub tenant_id: String,
    /// The request event itself (correlation and causation of what follows).
    pub cause: RecordedEvent,
    /// The request.
    pub body: pb::TenantRequested,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
}

impl Request {
    /// From a TenantRequested event; `None` for any other event.
    pub fn from_event(event: &RecordedEvent) -> Option<Self> {
        match &event.body {
            Body::TenantRequested(r) => Some(Self {
                tenant_id: r.tenant_id.clone(),
                cause: event.clone(),
                body: r.clone(),
                requested_at: event.occurred_at,
            }),
            _ => None,
        }
    }
}

/// How a provisioning run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// TenantProvisioned is recorded (now or before).
    Provisioned,
    /// ProvisioningFailed is recorded; an operator retry may start again.
    Failed,
}

/// A random password of 32 letters and digits.
pub fn random_password() -> SecretString {
    Alphanumeric
        .sample_string(&mut rand::thread_rng(), 32)
        .into()
}

/// `vault://tenant/<id>/<name>`.
pub fn vault_ref(id: &str, name: &str) -> String {
    format!("vault://tenant/{id}/{name}")
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

    /// The site's Administrator password from the vault, creating (and storing) one first if
    /// there is none yet — stored *before* new-site runs, so a crash never loses it.
    pub async fn ensure_admin_password(&self, id: &str) -> Result<SecretString, StepError> {
        match self
            .vault
            .get_by_name(id, ADMIN_PASSWORD, "site administrator password")
            .await
        {
            Ok(v) => v
                .to_secret_string()
                .map_err(|e| StepError::Permanent(format!("admin password: {e}"))),
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
                Ok(pw)
            }
            Err(e) => Err(vault_error("reading the admin password", e)),
        }
    }

    /// An Administrator session on `site`.
    pub async fn admin_session(
        &self,
        id: &str,
        bench: &BenchConfig,
        site: &SiteName,
    ) -> Result<FrappeClient, StepError> {
        let pw = self
            .vault
            .get_by_name(id, ADMIN_PASSWORD, "site administrator login")
            .await
            .map_err(|e| vault_error("reading the admin password", e))?
            .to_secret_string()
            .map_err(|e| StepError::Permanent(format!("admin password: {e}")))?;
        let client = self.client(bench, site)?;
        let session = client
            .login(&UserId::Administrator, &pw)
            .await
            .map_err(|e| rest_error("Administrator login", e))?;
        Ok(client.with_session(&session))
    }

    /// The API key pair stored for `id`, if any.
    pub async fn stored_credentials(&self, id: &str) -> Result<Option<ApiCredentials>, StepError> {
        match self
            .vault
            .get_by_name(id, API_CREDENTIALS, "site API access")
            .await
        {
            Ok(v) => {
                let text = v
                    .to_secret_string()
                    .map_err(|e| StepError::Permanent(format!("api credentials: {e}")))?;
                let parsed: Value = serde_json::from_str(text.expose_secret()).map_err(|_| {
                    StepError::Permanent("stored api credentials are not JSON".into())
                })?;
                let field = |k: &str| parsed.get(k).and_then(Value::as_str).map(str::to_owned);
                match (field("api_key"), field("api_secret")) {
                    (Some(api_key), Some(secret)) => Ok(Some(ApiCredentials {
                        api_key,
                        api_secret: secret.into(),
                    })),
                    _ => Err(StepError::Permanent(
                        "stored api credentials lack api_key/api_secret".into(),
                    )),
                }
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(vault_error("reading api credentials", e)),
        }
    }

    /// Makes the automation user (System Manager) if missing, generates its key pair once and
    /// stores it in the vault under `id`. Returns the vault reference.
    pub async fn issue_credentials(
        &self,
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
        ensure_user(&admin, &user, "Tenantry", "Automation", None).await?;
        // generate_keys rotates the secret on every call: it runs only when the vault holds no
        // pair, and the pair is stored right after, so at most one secret is ever live.
        let creds = admin
            .generate_keys(&UserId::Email(user))
            .await
            .map_err(|e| rest_error("generating the automation user's API keys", e))?;
        let value: SecretString = json!({
            "api_key": creds.api_key,
            "api_secret": creds.api_secret.expose_secret(),
            "user": AUTOMATION_USER,
        })
        .to_string()
        .into();
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
        let took = client
            .wait_until_api_key_active(&creds, Instant::now() + self.settings.verify_timeout)
            .await
            .map_err(|e| rest_error("verifying the API key", e))?;
        let user = client
            .with_token(&creds)
            .get_logged_user()
            .await
            .map_err(|e| rest_error("verifying the API key", e))?;
        if user != AUTOMATION_USER {
            return Err(StepError::Permanent(format!(
                "the API key answers as {user:?}, not {AUTOMATION_USER}: wrong site or proxy routing"
            )));
        }
        Ok(took)
    }

    /// The owner's chosen password: the pending copy if an earlier attempt took it, else the
    /// one-time secret, taken now (right before the insert that uses it) and kept as the
    /// pending copy until the owner exists.
    pub async fn owner_password(
        &self,
        tenant: &str,
        password_ref: &str,
    ) -> Result<SecretString, StepError> {
        let reason = "owner's initial password";
        if let Some(pw) = self.pending_owner_password(tenant).await? {
            return Ok(pw);
        }
        let pw = match self.vault.take_one_time(password_ref, reason).await {
            Ok(v) => v
                .to_secret_string()
                .map_err(|e| StepError::Permanent(format!("owner password: {e}")))?,
            Err(e) if is_not_found(&e) => {
                return Err(StepError::Permanent(format!(
                    "{OWNER_PASSWORD_GONE} was already used or has expired; the owner must sign up again (or an operator must create the user and send a password reset)"
                )));
            }
            Err(e) => return Err(vault_error("taking the owner's password", e)),
        };
        // The provisioner's ACL has no put for kind owner_password; site_admin_password is the
        // closest kind it may write (see the README).
        self.vault
            .put_string(
                tenant,
                OWNER_PASSWORD_PENDING,
                "site_admin_password",
                &pw,
                reason,
            )
            .await
            .map_err(|e| vault_error("keeping the owner's password until the user exists", e))?;
        Ok(pw)
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
            Ok(v) => v
                .to_secret_string()
                .map(Some)
                .map_err(|e| StepError::Permanent(format!("owner password: {e}"))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(vault_error("reading the owner's password", e)),
        }
    }

    /// Drops the pending owner password once the tenant is provisioned (or deleted).
    pub async fn forget_owner_password(&self, tenant: &str) -> Result<(), StepError> {
        match self
            .vault
            .revoke(
                &vault_ref(tenant, OWNER_PASSWORD_PENDING),
                "owner user exists",
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(vault_error("dropping the pending owner password", e)),
        }
    }

    /// Revokes a site's vaulted credentials under `id` (missing ones are fine).
    pub async fn revoke_credentials(&self, id: &str) -> Result<(), StepError> {
        for name in [ADMIN_PASSWORD, API_CREDENTIALS] {
            match self
                .vault
                .revoke(&vault_ref(id, name), "site removed")
                .await
            {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(vault_error("revoking site credentials", e)),
            }
        }
        Ok(())
    }

    /// Drops `site` to the archive if it is complete, or removes its directory if half-made.
    /// Returns the method used (`dropped` / `directory_removed`) and the archive path.
    pub async fn remove_site(
        &self,
        bench_cfg: &BenchConfig,
        bench: &Bench,
        site: &SiteName,
        no_backup: bool,
    ) -> Result<(String, String), StepError> {
        match bench.site_exists(site).await {
            Ok(true) => {
                let root = self.db_root(bench_cfg).await?;
                let dropped = bench
                    .drop_site(&DropSite {
                        site: site.clone(),
                        db_root: root,
                        no_backup,
                        force: true,
                    })
                    .await
                    .or_else(|e| match e {
                        // Dropped between our check and the command (a concurrent redelivery).
                        BenchError::SiteNotFound(_) => Ok(frappe::SiteDropped {
                            backup: None,
                            archived_under: None,
                        }),
                        e => Err(bench_error("drop-site", e)),
                    })?;
                Ok((
                    "dropped".to_owned(),
                    dropped.archived_under.unwrap_or_default(),
                ))
            }
            // Missing, or a leftover directory that does not answer: never drop-site a leftover
            // (its config may name another database); remove the directory.
            Ok(false) | Err(_) => {
                bench
                    .remove_leftover_site_dir(site)
                    .await
                    .map_err(|e| bench_error("removing the site directory", e))?;
                Ok(("directory_removed".to_owned(), String::new()))
            }
        }
    }

    /// Creates a site from scratch (no apps), for a tenant or a standby. Leaves nothing behind
    /// when new-site fails.
    pub async fn new_site(
        &self,
        id: &str,
        bench_cfg: &BenchConfig,
        bench: &Bench,
        site: &SiteName,
        db_name: &DbName,
    ) -> Result<(), StepError> {
        let admin_password = self.ensure_admin_password(id).await?;
        let force = match bench.site_exists(site).await {
            Ok(true) => return Ok(()),
            Ok(false) => false,
            // A half-made site from an earlier attempt of ours: its database (if any) has our
            // derived name, so --force may replace it.
            Err(_) => {
                bench
                    .remove_leftover_site_dir(site)
                    .await
                    .map_err(|e| bench_error("removing a half-made site", e))?;
                true
            }
        };
        let root = self.db_root(bench_cfg).await?;
        let mut req = NewSite {
            site: site.clone(),
            admin_password,
            db_root: root,
            db_name: Some(db_name.clone()),
            install_apps: vec![],
            no_mariadb_socket: false,
            force,
        };
        let mut result = bench.new_site(&req).await;
        if let Err(BenchError::DatabaseExists(_)) = &result {
            // Our own earlier attempt made the database (the name is derived from our id).
            let _ = bench.remove_leftover_site_dir(site).await;
            req.force = true;
            result = bench.new_site(&req).await;
        }
        if let Err(e) = result {
            // bench leaves sites/<site>/ behind on failure: remove it so the next attempt (or the
            // rollback) starts clean.
            if let Err(rm) = bench.remove_leftover_site_dir(site).await {
                tracing::warn!(error = %rm, %site, "could not remove a failed site's directory");
            }
            return Err(bench_error("new-site", e));
        }
        Ok(())
    }

    /// Installs the missing apps one by one.
    pub async fn install_apps(
        &self,
        bench: &Bench,
        site: &SiteName,
        apps: &[AppName],
    ) -> Result<(), StepError> {
        let installed = bench
            .list_apps(site)
            .await
            .map_err(|e| bench_error("listing installed apps", e))?;
        for app in apps {
            if installed.contains(app) {
                continue;
            }
            bench
                .install_app(site, app)
                .await
                .map_err(|e| bench_error(&format!("install-app {app}"), e))?;
        }
        Ok(())
    }
}

/// Creates `email` as a System Manager unless it exists; `password` (if any) is set in the same
/// insert, so a user never exists without it.
async fn ensure_user(
    admin: &FrappeClient,
    email: &UserEmail,
    first: &str,
    last: &str,
    password: Option<&SecretString>,
) -> Result<bool, StepError> {
    match admin.get_doc("User", email.as_str()).await {
        Ok(_) => return Ok(false),
        Err(RestError::NotFound(_)) => {}
        Err(e) => return Err(rest_error("looking up a user", e)),
    }
    let mut doc = json!({
        "email": email.as_str(),
        "first_name": first,
        "last_name": if last.is_empty() { Value::Null } else { json!(last) },
        "send_welcome_email": 0,
        "user_type": "System User",
        "roles": [{"role": "System Manager"}],
    });
    if let Some(pw) = password {
        doc["new_password"] = json!(pw.expose_secret());
    }
    match admin.insert_doc("User", &doc).await {
        Ok(_) => Ok(true),
        Err(RestError::Conflict(_)) => Ok(false),
        Err(e) => Err(rest_error("creating a user", e)),
    }
}

fn parse_site(site: &str) -> Result<SiteName, StepError> {
    SiteName::parse(site).map_err(|e| StepError::Permanent(e.to_string()))
}

fn placement_of(state: &ProvisioningState) -> Result<&process::Placement, StepError> {
    state
        .placement
        .as_ref()
        .ok_or_else(|| StepError::Permanent("no placement recorded".into()))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs one step; returns the events recording it.
pub async fn run_step(
    ctx: &Ctx,
    req: &Request,
    state: &ProvisioningState,
    step: Step,
) -> Result<Vec<Body>, StepError> {
    let tenant = req.tenant_id.as_str();
    let started = Instant::now();
    let plan = ctx.fleet.plan(&req.body.plan).ok_or_else(|| {
        StepError::Permanent(format!(
            "plan {:?} is not in the fleet's plan catalogue; add [plans.{}]",
            req.body.plan, req.body.plan
        ))
    })?;
    let apps = plan.app_names();
    if step == Step::Place {
        let rec = match ctx.placer.get(tenant).await? {
            Some(rec) => rec,
            None => match crate::standby::claim(ctx, tenant, &req.body.region, &apps).await? {
                Some(rec) => rec,
                None => {
                    ctx.placer
                        .place(&ctx.fleet, tenant, &req.body.region, &apps)
                        .await?
                }
            },
        };
        let (bench, _) = ctx.bench(&rec.bench)?;
        let site = bench
            .site_name(&req.body.subdomain)
            .map_err(|e| StepError::Permanent(format!("site name: {e}")))?;
        let db_name = rec
            .standby
            .as_ref()
            .map_or_else(|| process::db_name_for(tenant), |s| s.db_name.clone());
        return Ok(vec![Body::PlacementChosen(pb::PlacementChosen {
            tenant_id: tenant.to_owned(),
            bench: rec.bench.clone(),
            region: bench.region.clone(),
            site: site.to_string(),
            db_name,
        })]);
    }
    let placement = placement_of(state)?;
    let (bench_cfg, bench) = ctx.bench(&placement.bench)?;
    let site = parse_site(&placement.site)?;
    let limit = bench_cfg.max_concurrent_operations;
    match step {
        Step::Place => unreachable_step(),
        Step::CreateSite => {
            let rec = ctx.placer.get(tenant).await?;
            if let Some(PlacementRecord {
                standby: Some(standby),
                ..
            }) = rec
            {
                let slot = ctx.slots.acquire(&bench_cfg.name, limit).await;
                let r =
                    crate::standby::take_over(ctx, tenant, bench_cfg, bench, &standby, &site).await;
                slot.release().await;
                r?;
                return Ok(vec![Body::StandbySiteClaimed(pb::StandbySiteClaimed {
                    tenant_id: tenant.to_owned(),
                    standby_id: standby.id.clone(),
                    bench: bench_cfg.name.clone(),
                    standby_site: standby.site.clone(),
                    site: site.to_string(),
                })]);
            }
            let db_name = DbName::parse(&placement.db_name)
                .map_err(|e| StepError::Permanent(e.to_string()))?;
            let slot = ctx.slots.acquire(&bench_cfg.name, limit).await;
            let r = ctx
                .new_site(tenant, bench_cfg, bench, &site, &db_name)
                .await;
            slot.release().await;
            r?;
            Ok(vec![Body::SiteCreated(pb::SiteCreated {
                tenant_id: tenant.to_owned(),
                bench: bench_cfg.name.clone(),
                site: site.to_string(),
                db_name: db_name.to_string(),
                admin_password_ref: vault_ref(tenant, ADMIN_PASSWORD),
                duration_ms: ms(started.elapsed()),
            })])
        }
        Step::InstallApps => {
            let slot = ctx.slots.acquire(&bench_cfg.name, limit).await;
            let r = ctx.install_apps(bench, &site, &apps).await;
            slot.release().await;
            r?;
            Ok(vec![Body::AppsInstalled(pb::AppsInstalled {
                tenant_id: tenant.to_owned(),
                site: site.to_string(),
                apps: apps.iter().map(ToString::to_string).collect(),
                duration_ms: ms(started.elapsed()),
            })])
        }
        Step::Configure => {
            let mut values: Vec<(ConfigKey, Value)> = plan.limit_values();
            let key =
                |k: &str| ConfigKey::parse(k).map_err(|e| StepError::Permanent(e.to_string()));
            values.push((key("tenantry_tenant_id")?, json!(tenant)));
            values.push((key("tenantry_plan")?, json!(req.body.plan)));
            values.push((
                key("host_name")?,
                json!(bench_cfg.public_url(site.as_str())),
            ));
            let slot = ctx.slots.acquire(&bench_cfg.name, limit).await;
            let mut r = Ok(());
            for (k, v) in &values {
                // set-config is idempotent: re-writing a key after a crash changes nothing.
                r = bench
                    .set_config(&site, k, v)
                    .await
                    .map_err(|e| bench_error(&format!("set-config {k}"), e));
                if r.is_err() {
                    break;
                }
            }
            slot.release().await;
            r?;
            Ok(vec![Body::SiteConfigured(pb::SiteConfigured {
                tenant_id: tenant.to_owned(),
                site: site.to_string(),
                keys: values.iter().map(|(k, _)| k.to_string()).collect(),
                duration_ms: ms(started.elapsed()),
            })])
        }
        Step::CreateOwner => {
            let email = UserEmail::parse(&req.body.owner_email).map_err(|e| {
                StepError::Permanent(format!("owner email: {e}; the signup must be repeated"))
            })?;
            let admin = ctx.admin_session(tenant, bench_cfg, &site).await?;
            let exists = match admin.get_doc("User", email.as_str()).await {
                Ok(_) => true,
                Err(RestError::NotFound(_)) => false,
                Err(e) => return Err(rest_error("looking up the owner", e)),
            };
            if !exists {
                let pw = ctx.owner_password(tenant, &req.body.password_ref).await?;
                let name = req.body.owner_name.trim();
                let (first, last) = name.split_once(' ').unwrap_or((name, ""));
                let first = if first.is_empty() {
                    email.as_str()
                } else {
                    first
                };
                ensure_user(&admin, &email, first, last.trim(), Some(&pw)).await?;
            } else if let Some(pw) = ctx.pending_owner_password(tenant).await? {
                // The user exists but this step was not recorded: an interrupted earlier attempt.
                // Setting the password again is harmless and heals a server that stored the
                // user without it.
                admin
                    .set_user_password(&UserId::Email(email.clone()), &pw)
                    .await
                    .map_err(|e| rest_error("setting the owner's password", e))?;
            }
            Ok(vec![Body::OwnerUserCreated(pb::OwnerUserCreated {
                tenant_id: tenant.to_owned(),
                site: site.to_string(),
                email: email.to_string(),
                roles: vec!["System Manager".to_owned()],
                duration_ms: ms(started.elapsed()),
            })])
        }
        Step::IssueApiCredentials => {
            let reference = ctx.issue_credentials(tenant, bench_cfg, &site).await?;
            Ok(vec![Body::ApiCredentialsIssued(pb::ApiCredentialsIssued {
                tenant_id: tenant.to_owned(),
                site: site.to_string(),
                user: AUTOMATION_USER.to_owned(),
                credentials_ref: reference,
                duration_ms: ms(started.elapsed()),
            })])
        }
        Step::VerifyApiAccess => {
            let took = ctx.verify_credentials(tenant, bench_cfg, &site).await?;
            Ok(vec![Body::ApiAccessVerified(pb::ApiAccessVerified {
                tenant_id: tenant.to_owned(),
                site: site.to_string(),
                user: AUTOMATION_USER.to_owned(),
                activation_ms: ms(took),
            })])
        }
        Step::Finish => {
            // Kept until now: a later step's rollback drops the site and its owner, and the
            // operator's retry must be able to create the owner again.
            ctx.forget_owner_password(tenant).await?;
            let total = Utc::now() - req.requested_at;
            Ok(vec![Body::TenantProvisioned(pb::TenantProvisioned {
                tenant_id: tenant.to_owned(),
                site: site.to_string(),
                bench: bench_cfg.name.clone(),
                url: bench_cfg.public_url(site.as_str()),
                total_ms: u64::try_from(total.num_milliseconds()).unwrap_or(0),
                from_standby: state.from_standby,
            })])
        }
    }
}

fn unreachable_step() -> Result<Vec<Body>, StepError> {
    Err(StepError::Permanent("placement handled above".into()))
}

/// Undoes what the round made (site, credentials, placement); returns SiteRolledBack (when a
/// site was placed) followed by ProvisioningFailed.
pub async fn roll_back(
    ctx: &Ctx,
    req: &Request,
    state: &ProvisioningState,
    gave_up: &GaveUp,
) -> Result<Vec<Body>, StepError> {
    let tenant = req.tenant_id.as_str();
    let mut events = Vec::new();
    if let (Some(p), false) = (&state.placement, state.rolled_back) {
        let (bench_cfg, bench) = ctx.bench(&p.bench)?;
        let site = parse_site(&p.site)?;
        let standby = ctx.placer.get(tenant).await?.and_then(|r| r.standby);
        let slot = ctx
            .slots
            .acquire(&bench_cfg.name, bench_cfg.max_concurrent_operations)
            .await;
        let mut r = ctx.remove_site(bench_cfg, bench, &site, true).await;
        if let (Ok(_), Some(s)) = (&r, &standby) {
            // A claim that failed before the rename leaves the standby under its old name.
            let old = parse_site(&s.site)?;
            if let Err(e) = ctx.remove_site(bench_cfg, bench, &old, true).await {
                r = Err(e);
            }
        }
        slot.release().await;
        let (method, _) = match r {
            Ok(m) => m,
            // Rolling back is retried by redelivery; a bench that cannot drop now may later.
            Err(e) => return Err(StepError::Infra(format!("rollback: {e}"))),
        };
        ctx.revoke_credentials(tenant)
            .await
            .map_err(|e| StepError::Infra(e.to_string()))?;
        if let Some(s) = &standby {
            ctx.revoke_credentials(&s.id)
                .await
                .map_err(|e| StepError::Infra(e.to_string()))?;
            crate::standby::forget(ctx, &s.pool_key).await;
        }
        ctx.placer.release(tenant).await?;
        events.push(Body::SiteRolledBack(pb::SiteRolledBack {
            tenant_id: tenant.to_owned(),
            bench: bench_cfg.name.clone(),
            site: site.to_string(),
            method,
        }));
    } else if state.placement.is_none() {
        // Placement may have been counted without PlacementChosen being recorded.
        ctx.placer.release(tenant).await?;
    }
    events.push(Body::ProvisioningFailed(pb::ProvisioningFailed {
        tenant_id: tenant.to_owned(),
        step: gave_up.proto_step,
        reason: gave_up.reason.clone(),
        retryable: !gave_up.reason.starts_with(OWNER_PASSWORD_GONE),
    }));
    Ok(events)
}

/// Appends `bodies` to `subject` at `version` with deterministic ids, honouring the crash hook.
pub async fn append(
    ctx: &Ctx,
    subject: &str,
    version: u64,
    cause: &RecordedEvent,
    bodies: Vec<(uuid::Uuid, Body)>,
) -> Result<(), StepError> {
    let crash = ctx.settings.crash.as_ref();
    let hit = |c: &CrashPoint| bodies.iter().any(|(_, b)| b.type_name() == c.event_type);
    if let Some(c) = crash
        && c.before
        && hit(c)
    {
        tracing::error!(event = %c.event_type, "crash hook: aborting before append");
        std::process::abort();
    }
    let events: Vec<NewEvent> = bodies
        .iter()
        .map(|(id, b)| NewEvent::new(b.clone()).with_id(*id).following(cause))
        .collect();
    ctx.store.append(subject, version, events).await?;
    if let Some(c) = crash
        && !c.before
        && hit(c)
    {
        tracing::error!(event = %c.event_type, "crash hook: aborting after append");
        std::process::abort();
    }
    Ok(())
}

/// Operator retries recorded for the tenant (ProvisioningRetryRequested on its lifecycle subject).
pub async fn retries_requested(ctx: &Ctx, tenant: &str) -> Result<u32, StepError> {
    let events = ctx
        .store
        .load(&ctx.store.subject(EventContext::Lifecycle, tenant))
        .await?;
    Ok(events
        .iter()
        .filter(|e| matches!(e.body, Body::ProvisioningRetryRequested(_)))
        .count() as u32)
}

/// Loads the tenant's provisioning subject: (version, fold).
pub async fn load_state(ctx: &Ctx, tenant: &str) -> Result<(u64, ProvisioningState), StepError> {
    let events = ctx
        .store
        .load(&ctx.store.subject(EventContext::Provisioning, tenant))
        .await?;
    let version = events.last().map_or(0, |e| e.sequence);
    Ok((version, process::fold(events.iter().map(|e| &e.body))))
}

/// Drives one tenant until it is provisioned or its round has failed.
pub async fn provision(ctx: &Ctx, req: &Request) -> Result<Outcome, StepError> {
    let tenant = req.tenant_id.as_str();
    let subject = ctx.store.subject(EventContext::Provisioning, tenant);
    // Step loop: every pass reloads the subject, so what is decided always follows what is
    // recorded (ours, or another instance's after a conflict).
    loop {
        let (version, state) = load_state(ctx, tenant).await?;
        let retries = if state.failed.is_some() {
            retries_requested(ctx, tenant).await?
        } else {
            0
        };
        let round = state.failures;
        let next = process::decide(&state, retries);
        tracing::debug!(tenant, ?next, round, "next provisioning step");
        match next {
            Next::Done => return Ok(Outcome::Provisioned),
            Next::AwaitRetry => return Ok(Outcome::Failed),
            Next::RollBack(gave_up) => {
                let events = roll_back(ctx, req, &state, &gave_up).await?;
                let bodies = events
                    .into_iter()
                    .map(|b| (process::event_id(tenant, round, b.type_name(), 0), b))
                    .collect();
                append(ctx, &subject, version, &req.cause, bodies).await?;
                tracing::warn!(tenant, step = gave_up.step.as_str(), reason = %gave_up.reason, "provisioning failed and was rolled back");
            }
            Next::Run(step) => {
                let attempt = state.attempt(step);
                let started = Instant::now();
                let result = run_step(ctx, req, &state, step).await;
                match result {
                    Ok(events) => {
                        ctx.metrics
                            .step_done(step.as_str(), started.elapsed().as_secs_f64());
                        let bodies = events
                            .into_iter()
                            .map(|b| (process::event_id(tenant, round, b.type_name(), 0), b))
                            .collect();
                        append(ctx, &subject, version, &req.cause, bodies).await?;
                    }
                    Err(StepError::Infra(m)) => return Err(StepError::Infra(m)),
                    Err(e) => {
                        ctx.metrics.step_failed(step.as_str());
                        let transient = matches!(e, StepError::Transient(_));
                        let will_retry = transient && attempt < ctx.settings.step_attempts;
                        let delay = ctx.settings.retry_backoff * 2u32.saturating_pow(attempt - 1);
                        let proto_step = if step == Step::CreateSite
                            && ctx
                                .placer
                                .get(tenant)
                                .await?
                                .is_some_and(|r| r.standby.is_some())
                        {
                            pb::ProvisioningStep::ClaimStandby
                        } else {
                            step.proto()
                        };
                        let reason = e.to_string();
                        tracing::warn!(tenant, step = step.as_str(), attempt, will_retry, %reason, "provisioning step failed");
                        let body = Body::ProvisioningStepFailed(pb::ProvisioningStepFailed {
                            tenant_id: tenant.to_owned(),
                            step: proto_step as i32,
                            attempt,
                            reason,
                            will_retry,
                            retry_in_ms: if will_retry { ms(delay) } else { 0 },
                        });
                        let id = process::event_id(
                            tenant,
                            round,
                            &format!("ProvisioningStepFailed:{}", step.as_str()),
                            u64::from(attempt),
                        );
                        append(ctx, &subject, version, &req.cause, vec![(id, body)]).await?;
                        if will_retry {
                            // Back-off before the next attempt; the delivery is kept alive by
                            // the in-progress ticker meanwhile.
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
            }
        }
    }
}
