//! The Tenantry provisioner: the process manager that turns TenantRequested into a working
//! Frappe site, and lifecycle requests into suspended, resumed or deleted sites.
//!
//! Two durable consumers (nats-server 2.9 has no multi-filter consumers), both on the shared
//! worker core ([`worker::Worker`]): `provisioner-signup` on `tenantry.signup.*` and
//! `provisioner-lifecycle` on `tenantry.lifecycle.*`. Every instance pulls one message per free
//! permit; a delivery first takes its tenant's lease (one instance works on a tenant at a time,
//! across both consumers), then runs the tenant's process to the end ([`driver::provision`]),
//! checking the lease before every side effect and append; a crash redelivers it and the process
//! resumes from the folded state. Each bench runs at most `max_concurrent_operations` commands
//! at once across every instance ([`slots`]).
//!
//! Entry points: [`Application::build`] + [`Application::run_until_stopped`], or [`run`].

pub mod context;
pub mod demand;
pub mod driver;
pub mod error;
pub mod fleet;
pub mod handoff;
pub mod known;
pub mod lifecycle;
pub mod metrics;
pub mod ownership;
pub mod placement;
pub mod pool_size;
pub mod process;
pub mod recovery;
pub mod secrets;
pub mod site_bench;
pub mod site_rest;
pub mod slots;
pub mod standby;
pub mod steps;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use eventstore::{EventContext, EventStore, StoreConfig};
use frappe::Bench;
use secrecy::SecretString;
use svc::{Readiness, Shutdown};
use tokio::sync::Semaphore;
use worker::{Handler, Leases, Outcome, Work, WorkError, Worker, WorkerConfig};

use crate::context::{CrashPoint, Ctx, Fence, ProcessSettings};
use crate::driver::Request;
use crate::error::StepError;
use crate::fleet::FleetConfig;
use crate::lifecycle::Settle;
use crate::slots::{SlotConfig, Slots};

/// Errors that stop the service from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionerError {
    /// The fleet file or another setting is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// NATS is unreachable or refused a stream/consumer/bucket.
    #[error(transparent)]
    Store(#[from] eventstore::StoreError),
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Everything the provisioner needs. `Debug` never prints the vault token.
#[derive(Debug, Clone)]
pub struct Config {
    /// NATS server, namespace, credentials and TLS.
    pub nats: StoreConfig,
    /// Vault gRPC endpoint, e.g. `http://127.0.0.1:50053` (`https://` needs `vault_tls`).
    pub vault_endpoint: String,
    /// What the provisioner trusts (and presents) when calling the vault.
    pub vault_tls: svc::ClientTls,
    /// The provisioner's vault token.
    pub vault_token: SecretString,
    /// Benches, plans and the standby pool.
    pub fleet: FleetConfig,
    /// The plan catalogue every service reads; when given, the fleet's plans come from it and
    /// the provisioner refuses to start if the other services run a different one.
    pub plans: Option<plans::PlanCatalogue>,
    /// Admin HTTP address (`/healthz`, `/readyz`, `/metrics`); port 0 picks one.
    pub admin_addr: SocketAddr,
    /// The embedding process's admin port to report into instead of binding `admin_addr`
    /// (`tenantry dev`).
    pub shared_admin: Option<svc::AdminHandle>,
    /// Tenants handled at once by this instance.
    pub concurrency: usize,
    /// Ack wait of the consumers (kept alive with in-progress acks every third of it).
    pub ack_wait: Duration,
    /// Deliveries of one event before it becomes a dead letter.
    pub max_deliver: u64,
    /// A tenant lease's lifetime between heartbeats (sent every third of it): how soon another
    /// instance takes over a tenant whose instance died.
    pub lease_ttl: Duration,
    /// Longest one delivery may be worked on (the whole provisioning of a tenant) before it is
    /// abandoned to redelivery.
    pub deadline: Duration,
    /// Step attempts, back-off, verification timeout and the crash test hook.
    pub process: ProcessSettings,
    /// Bench slot leases.
    pub slots: SlotConfig,
    /// How often the standby pool is topped up.
    pub standby_refill_every: Duration,
    /// This instance's id (slot lease holder).
    pub instance_id: String,
    /// How long shutdown waits for in-flight tenants before abandoning them to redelivery.
    pub shutdown_grace: Duration,
}

impl Config {
    /// Defaults for everything but the essentials.
    pub fn new(
        nats_url: impl Into<String>,
        vault_endpoint: impl Into<String>,
        vault_token: SecretString,
        fleet: FleetConfig,
    ) -> Self {
        Self {
            nats: StoreConfig::new(nats_url),
            vault_endpoint: vault_endpoint.into(),
            vault_tls: svc::ClientTls::default(),
            vault_token,
            fleet,
            plans: None,
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            shared_admin: None,
            concurrency: 16,
            ack_wait: Duration::from_secs(60),
            max_deliver: 500,
            lease_ttl: Duration::from_secs(15),
            deadline: Duration::from_secs(60 * 60),
            process: ProcessSettings::default(),
            slots: SlotConfig::default(),
            standby_refill_every: Duration::from_secs(5),
            instance_id: format!("provisioner-{}", uuid::Uuid::now_v7().simple()),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Command-line flags (with env fallbacks) of the provisioner.
#[derive(Debug, Clone, clap::Args)]
pub struct ProvisionerArgs {
    /// NATS and namespace.
    #[command(flatten)]
    pub nats: svc::NatsArgs,
    /// Vault gRPC endpoint.
    #[arg(
        long = "vault-endpoint",
        env = "TENANTRY_VAULT_ENDPOINT",
        default_value = "http://127.0.0.1:50053"
    )]
    pub vault_endpoint: String,
    /// File holding the provisioner's vault token (or set `TENANTRY_PROVISIONER_VAULT_TOKEN`).
    #[arg(
        long = "vault-token-file",
        env = "TENANTRY_PROVISIONER_VAULT_TOKEN_FILE"
    )]
    pub vault_token_file: Option<PathBuf>,
    /// What the provisioner trusts (and presents) when calling the vault.
    #[command(flatten)]
    pub vault_tls: svc::ClientTlsArgs,
    /// Fleet file (TOML): benches, plans, standby pool.
    #[arg(long = "fleet", env = "TENANTRY_FLEET")]
    pub fleet: PathBuf,
    /// The plan catalogue file every service reads (apps and limits of each plan).
    #[arg(long = "plans-file", env = "TENANTRY_PLANS")]
    pub plans_file: Option<PathBuf>,
    /// Tenants handled at once by this instance.
    #[arg(long, env = "TENANTRY_PROVISIONER_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,
    /// Consumer ack wait, seconds.
    #[arg(long, env = "TENANTRY_PROVISIONER_ACK_WAIT", default_value_t = 60)]
    pub ack_wait_secs: u64,
    /// Attempts of a step on transient errors.
    #[arg(long, env = "TENANTRY_PROVISIONER_STEP_ATTEMPTS", default_value_t = 3)]
    pub step_attempts: u32,
    /// First retry back-off in milliseconds (doubles per attempt).
    #[arg(
        long,
        env = "TENANTRY_PROVISIONER_RETRY_BACKOFF_MS",
        default_value_t = 1000
    )]
    pub retry_backoff_ms: u64,
    /// How long a new API key may take to answer, in milliseconds.
    #[arg(
        long,
        env = "TENANTRY_PROVISIONER_VERIFY_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub verify_timeout_ms: u64,
    /// Bench slot lease between heartbeats, seconds (a slot whose command may still run on the
    /// bench host stays taken until that command's time limit has passed).
    #[arg(long, env = "TENANTRY_PROVISIONER_SLOT_LEASE", default_value_t = 30)]
    pub slot_lease_secs: u64,
    /// Tenant lease between heartbeats, seconds: how soon another instance takes over a
    /// tenant whose instance died.
    #[arg(long, env = "TENANTRY_PROVISIONER_LEASE", default_value_t = 15)]
    pub lease_secs: u64,
    /// Longest one delivery (a whole provisioning) may be worked on, seconds.
    #[arg(long, env = "TENANTRY_PROVISIONER_DEADLINE", default_value_t = 3600)]
    pub deadline_secs: u64,
    /// How long a deleted tenant's vault keys are kept before they are crypto-shredded, seconds
    /// (0: right after the site is deleted).
    #[arg(long, env = "TENANTRY_PROVISIONER_SHRED_AFTER", default_value_t = 0)]
    pub shred_after_secs: u64,
    /// Standby refill interval in milliseconds.
    #[arg(long, env = "TENANTRY_PROVISIONER_REFILL_MS", default_value_t = 5000)]
    pub standby_refill_ms: u64,
    /// Test hook: abort the process `before:` or `after:` appending an event type.
    #[arg(long, env = "TENANTRY_PROVISIONER_CRASH_AT", hide = true)]
    pub crash_at: Option<CrashPoint>,
    /// Admin listener.
    #[command(flatten)]
    pub admin: svc::AdminArgs,
}

impl ProvisionerArgs {
    /// Reads the fleet file and builds the config.
    pub fn into_config(self) -> Result<Config, ProvisionerError> {
        let fleet =
            FleetConfig::load(&self.fleet).map_err(|e| ProvisionerError::Config(e.to_string()))?;
        let config_error = |e: &dyn std::fmt::Display| ProvisionerError::Config(e.to_string());
        let vault_token = svc::secret::load(
            "the provisioner's vault token",
            "TENANTRY_PROVISIONER_VAULT_TOKEN",
            self.vault_token_file.as_deref(),
        )
        .map_err(|e| config_error(&e))?
        .ok_or_else(|| {
            ProvisionerError::Config(
                "the vault token is missing: set TENANTRY_PROVISIONER_VAULT_TOKEN or --vault-token-file"
                    .into(),
            )
        })?;
        let mut c = Config::new(
            self.nats.nats_url.clone(),
            self.vault_endpoint,
            vault_token,
            fleet,
        );
        c.nats = self.nats.store_config().map_err(|e| config_error(&e))?;
        c.vault_tls = self.vault_tls.load().map_err(|e| config_error(&e))?;
        c.plans = self
            .plans_file
            .as_deref()
            .map(plans::PlanCatalogue::load)
            .transpose()
            .map_err(|e| config_error(&e))?;
        c.admin_addr = self.admin.admin_addr;
        c.concurrency = self.concurrency.max(1);
        c.ack_wait = Duration::from_secs(self.ack_wait_secs.max(3));
        c.process.step_attempts = self.step_attempts.max(1);
        c.process.retry_backoff = Duration::from_millis(self.retry_backoff_ms);
        c.process.verify_timeout = Duration::from_millis(self.verify_timeout_ms);
        c.process.crash = self.crash_at;
        c.process.shred_after = Duration::from_secs(self.shred_after_secs);
        c.slots.lease = Duration::from_secs(self.slot_lease_secs.max(1));
        c.lease_ttl = Duration::from_secs(self.lease_secs.max(1));
        c.deadline = Duration::from_secs(self.deadline_secs.max(10));
        c.standby_refill_every = Duration::from_millis(self.standby_refill_ms.max(10));
        Ok(c)
    }
}

/// A built provisioner: admin port bound, NATS connected, buckets open.
pub struct Application {
    ctx: Ctx,
    config: Config,
    admin: svc::Admin,
    readiness: Readiness,
}

impl Application {
    /// Binds the admin listener, connects to NATS, opens the KV buckets and the vault client.
    pub async fn build(mut config: Config) -> Result<Self, ProvisionerError> {
        if let Some(catalogue) = &config.plans {
            config
                .fleet
                .adopt_catalogue(catalogue)
                .map_err(|e| ProvisionerError::Config(e.to_string()))?;
        }
        config
            .fleet
            .validate()
            .map_err(|e| ProvisionerError::Config(e.to_string()))?;
        // new-site prompts for an empty root password and aborts: a bench without one cannot
        // make a site, which is a configuration error now, not a failed signup later.
        for b in &config.fleet.benches {
            match (&b.db_root_password_ref, &b.db_root_password_file) {
                (Some(_), _) => {}
                (None, Some(file)) => {
                    context::read_root_password_file(file)
                        .map_err(|e| ProvisionerError::Config(format!("bench {}: {e}", b.name)))?;
                }
                (None, None) => {
                    return Err(ProvisionerError::Config(format!(
                        "bench {}: neither db_root_password_ref nor db_root_password_file is set; new-site needs the MariaDB root (or an admin user's) password",
                        b.name
                    )));
                }
            }
        }
        let admin = svc::Admin::open(
            config.admin_addr,
            config.shared_admin.clone(),
            "provisioner",
        )
        .await
        .map_err(|e| {
            ProvisionerError::Config(format!("cannot listen on {}: {e}", config.admin_addr))
        })?;
        let registry = admin.metrics().clone();
        let readiness = admin.readiness().clone();
        let store = EventStore::connect(&config.nats).await?;
        if let Some(catalogue) = &config.plans {
            plans::agree(&store, catalogue, "provisioner")
                .await
                .map_err(|e| ProvisionerError::Config(e.to_string()))?;
        }
        let metrics = metrics::Metrics::register(&registry);
        let vault = config
            .vault_tls
            .endpoint(&config.vault_endpoint)
            .map_err(|e| ProvisionerError::Config(e.to_string()))
            .and_then(|endpoint| {
                vault_client::VaultClient::from_endpoint(endpoint, &config.vault_token)
                    .map_err(|e| ProvisionerError::Config(e.to_string()))
            })?;
        // Opened once: placement, the pool and the start-up check share the handles.
        let buckets = recovery::Buckets::open(&store).await?;
        let slots = Slots::open(
            &store,
            &config.instance_id,
            config.slots.clone(),
            metrics.clone(),
        )
        .await?;
        let leases = Leases::open(
            &store,
            "PROVISIONER_LEASES",
            &config.instance_id,
            config.lease_ttl,
        )
        .await?;
        let benches: BTreeMap<String, Bench> = config
            .fleet
            .benches
            .iter()
            .map(|b| {
                (
                    b.name.clone(),
                    Bench::new(b.runner.clone()).with_timeouts(b.timeouts.clone()),
                )
            })
            .collect();
        let http = reqwest::Client::builder()
            .timeout(context::REST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ProvisionerError::Config(e.to_string()))?;
        let ctx = Ctx {
            store,
            fleet: Arc::new(config.fleet.clone()),
            benches: Arc::new(benches),
            vault,
            placer: buckets.placer(),
            pool: buckets.pool(),
            slots,
            leases,
            metrics,
            http,
            settings: config.process.clone(),
            derived: svc::Gate::default(),
        };
        recovery::guard(
            &ctx.store,
            &buckets,
            &ctx.derived,
            readiness.part("derived state holds the log"),
        )
        .await?;
        Ok(Self {
            ctx,
            config,
            admin,
            readiness,
        })
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(self.config.admin_addr)
    }

    /// The registry the provisioner reports into (tests read it without scraping).
    pub fn metrics(&self) -> &svc::Metrics {
        self.admin.metrics()
    }

    /// Consumes until `shutdown`, then lets in-flight tenants finish (up to the grace period).
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> Result<(), ProvisionerError> {
        let Self {
            ctx,
            config,
            mut admin,
            readiness,
        } = self;
        let admin_task = admin.serve(shutdown.clone());
        let consumer_metrics = svc::consumers::ConsumerMetrics::new(admin.metrics());
        let nats_probe = admin.probe_nats(&ctx.store, shutdown.clone());
        // Bounds the tenants in flight in this instance (each holds bench slots, HTTP
        // connections and a delivery); shared by both consumers.
        let permits = Arc::new(Semaphore::new(config.concurrency));
        let refill = tokio::spawn(standby::refill_loop(
            ctx.clone(),
            config.standby_refill_every,
            shutdown.clone(),
        ));
        let links = tokio::spawn(handoff::serve(ctx.clone(), shutdown.clone()));
        readiness.set(true);
        tracing::info!(instance = %config.instance_id, benches = ctx.fleet.benches.len(), "provisioner consuming");
        let handler = Arc::new(Tenants { ctx: ctx.clone() });
        let workers = [
            ("provisioner-signup", EventContext::Signup),
            ("provisioner-lifecycle", EventContext::Lifecycle),
        ]
        .map(|(durable, context)| {
            let mut wc = WorkerConfig::new(durable, ctx.store.context_filter(context));
            wc.subscribe.ack_wait = config.ack_wait;
            wc.subscribe.max_deliver = config.max_deliver;
            wc.deadline = config.deadline;
            wc.retry_initial = Duration::from_secs(1);
            wc.shutdown_grace = config.shutdown_grace;
            let worker = Worker::new(
                wc,
                ctx.store.clone(),
                Arc::clone(&handler),
                Some(ctx.leases.clone()),
                Arc::clone(&permits),
            )
            .with_metrics(consumer_metrics.clone());
            tokio::spawn(worker.run(readiness.part(durable), shutdown.clone()))
        });
        let mut failed = None;
        for w in workers {
            match w.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed = Some(ProvisionerError::from(e)),
                Err(e) => failed = Some(anyhow::Error::new(e).context("consumer task").into()),
            }
        }
        // A consumer that cannot run (a configuration JetStream refuses) stops the service.
        shutdown.trigger();
        let _ = refill.await;
        match links.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "login links were not served"),
            Err(e) => tracing::warn!(error = %e, "login-link task"),
        }
        let _ = nats_probe.await;
        let served = match admin_task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("admin server").into()),
            Err(e) => Err(anyhow::Error::new(e).context("admin task").into()),
        };
        match failed {
            Some(e) => Err(e),
            None => served,
        }
    }
}

/// Builds and runs the provisioner until `shutdown`.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), ProvisionerError> {
    Application::build(config)
        .await?
        .run_until_stopped(shutdown)
        .await
}

/// The provisioner's reaction to its two consumers' events: signups start a tenant's process,
/// lifecycle events change a live one. Keyed by tenant, so one instance at a time works on it.
struct Tenants {
    ctx: Ctx,
}

impl Handler for Tenants {
    fn lease_key(&self, event: &eventstore::RecordedEvent) -> Option<String> {
        Some(event.tenant_id.clone())
    }

    async fn handle(&self, work: Work) -> Result<Outcome, WorkError> {
        // Placements, names and counters are missing or being rebuilt: working now could put
        // a site on a full bench or under a live tenant's name.
        if let Some(why) = self.ctx.derived.reason() {
            tracing::debug!(tenant = %work.event.tenant_id, %why, "derived state behind the log; coming back later");
            return Ok(Outcome::Later(BUSY_RETRY));
        }
        let fence = Fence::of(work.lease.clone());
        let result = match &work.event.body {
            eventstore::Body::TenantRequested(_) => match Request::from_event(&work.event) {
                Some(req) => driver::provision(&self.ctx, &fence, &req)
                    .await
                    .map(|_| Settle::Ack),
                None => Ok(Settle::Ack),
            },
            _ => lifecycle::handle(&self.ctx, &fence, &work.event).await,
        };
        match result {
            Ok(Settle::Ack) => Ok(Outcome::Done),
            Ok(Settle::Later(delay)) => Ok(Outcome::Later(delay)),
            // Another command holds the site's lock on the bench host: not an attempt.
            Err(StepError::Busy(why)) => {
                tracing::info!(tenant = %work.event.tenant_id, %why, "site busy; coming back later");
                Ok(Outcome::Later(BUSY_RETRY))
            }
            Err(StepError::LeaseLost(why)) => Err(WorkError::Lease(worker::LeaseError::Lost(why))),
            Err(e @ (StepError::Infra(_) | StepError::Transient(_))) => {
                Err(WorkError::Transient(e.to_string()))
            }
            Err(e @ (StepError::Permanent(_) | StepError::NotOurs(_))) => {
                Err(WorkError::Permanent(e.to_string()))
            }
        }
    }
}

/// When a delivery whose site was locked on the bench host comes back.
const BUSY_RETRY: Duration = Duration::from_secs(5);
