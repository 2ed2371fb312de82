//! The Tenantry provisioner: the process manager that turns TenantRequested into a working
//! Frappe site, and lifecycle requests into suspended, resumed or deleted sites.
//!
//! Two durable consumers (nats-server 2.9 has no multi-filter consumers): `provisioner-signup`
//! on `tenantry.signup.*` and `provisioner-lifecycle` on `tenantry.lifecycle.*`. A delivery runs
//! its tenant's process to the end ([`driver::provision`]), appending each step's event to
//! `tenantry.provisioning.<tenant>`, then is acknowledged; a crash redelivers it and the process
//! resumes from the folded state. One tenant's deliveries run one at a time (a per-tenant lock);
//! different tenants run concurrently up to `concurrency`; each bench runs at most
//! `max_concurrent_operations` commands at once across every instance ([`slots`]).
//!
//! Entry points: [`Application::build`] + [`Application::run_until_stopped`], or [`run`].

pub mod context;
pub mod driver;
pub mod error;
pub mod fleet;
pub mod lifecycle;
pub mod metrics;
pub mod placement;
pub mod process;
pub mod secrets;
pub mod site;
pub mod slots;
pub mod standby;
pub mod steps;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use eventstore::{Delivery, EventContext, EventStore, StoreConfig, SubscribeOptions};
use frappe::Bench;
use secrecy::SecretString;
use svc::{AdminServer, Readiness, Shutdown};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::context::{CrashPoint, Ctx, ProcessSettings};
use crate::driver::Request;
use crate::error::StepError;
use crate::fleet::FleetConfig;
use crate::lifecycle::Settle;
use crate::placement::Placer;
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
    /// NATS server.
    pub nats_url: String,
    /// Event-store namespace ("" in production).
    pub namespace: String,
    /// Vault gRPC endpoint, e.g. `http://127.0.0.1:50053`.
    pub vault_endpoint: String,
    /// The provisioner's vault token.
    pub vault_token: SecretString,
    /// Benches, plans and the standby pool.
    pub fleet: FleetConfig,
    /// Admin HTTP address (`/healthz`, `/readyz`, `/metrics`); port 0 picks one.
    pub admin_addr: SocketAddr,
    /// Tenants handled at once by this instance.
    pub concurrency: usize,
    /// Ack wait of the consumers (kept alive with in-progress acks every third of it).
    pub ack_wait: Duration,
    /// Deliveries of one event before it becomes a dead letter.
    pub max_deliver: u64,
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
            nats_url: nats_url.into(),
            namespace: String::new(),
            vault_endpoint: vault_endpoint.into(),
            vault_token,
            fleet,
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            concurrency: 16,
            ack_wait: Duration::from_secs(60),
            max_deliver: 20,
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
    /// The provisioner's vault token.
    #[arg(
        long = "vault-token",
        env = "TENANTRY_VAULT_TOKEN",
        hide_env_values = true
    )]
    pub vault_token: String,
    /// Fleet file (TOML): benches, plans, standby pool.
    #[arg(long = "fleet", env = "TENANTRY_FLEET")]
    pub fleet: PathBuf,
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
    /// Bench slot lease, seconds.
    #[arg(long, env = "TENANTRY_PROVISIONER_SLOT_LEASE", default_value_t = 60)]
    pub slot_lease_secs: u64,
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
        if self.vault_token.is_empty() {
            return Err(ProvisionerError::Config(
                "the vault token is empty; set TENANTRY_VAULT_TOKEN".into(),
            ));
        }
        let mut c = Config::new(
            self.nats.nats_url,
            self.vault_endpoint,
            self.vault_token.into(),
            fleet,
        );
        c.namespace = self.nats.namespace;
        c.admin_addr = self.admin.admin_addr;
        c.concurrency = self.concurrency.max(1);
        c.ack_wait = Duration::from_secs(self.ack_wait_secs.max(3));
        c.process.step_attempts = self.step_attempts.max(1);
        c.process.retry_backoff = Duration::from_millis(self.retry_backoff_ms);
        c.process.verify_timeout = Duration::from_millis(self.verify_timeout_ms);
        c.process.crash = self.crash_at;
        c.slots.lease = Duration::from_secs(self.slot_lease_secs.max(3));
        c.standby_refill_every = Duration::from_millis(self.standby_refill_ms.max(10));
        Ok(c)
    }
}

/// A built provisioner: admin port bound, NATS connected, buckets open.
pub struct Application {
    ctx: Ctx,
    config: Config,
    admin: AdminServer,
    readiness: Readiness,
}

/// Per-tenant locks: one delivery of a tenant at a time in this instance. Weak values, so a
/// tenant's lock disappears when nobody holds it.
#[derive(Default, Clone)]
struct TenantLocks(Arc<Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>>);

impl TenantLocks {
    fn get(&self, tenant: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = map.get(tenant).and_then(Weak::upgrade) {
            return lock;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(tenant.to_owned(), Arc::downgrade(&lock));
        lock
    }
}

impl Application {
    /// Binds the admin listener, connects to NATS, opens the KV buckets and the vault client.
    pub async fn build(config: Config) -> Result<Self, ProvisionerError> {
        config
            .fleet
            .validate()
            .map_err(|e| ProvisionerError::Config(e.to_string()))?;
        let registry = svc::Metrics::new();
        let readiness = Readiness::default();
        let admin = AdminServer::bind(config.admin_addr, readiness.clone(), registry.clone())
            .await
            .map_err(|e| {
                ProvisionerError::Config(format!("cannot listen on {}: {e}", config.admin_addr))
            })?;
        let store = EventStore::connect(
            &StoreConfig::new(config.nats_url.clone()).with_namespace(config.namespace.clone()),
        )
        .await?;
        let metrics = metrics::Metrics::register(&registry);
        let vault =
            vault_client::VaultClient::connect(config.vault_endpoint.clone(), &config.vault_token)
                .map_err(|e| ProvisionerError::Config(e.to_string()))?;
        let placer = Placer::open(&store)
            .await
            .map_err(|e| ProvisionerError::Config(e.to_string()))?;
        let slots = Slots::open(
            &store,
            &config.instance_id,
            config.slots.clone(),
            metrics.clone(),
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
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ProvisionerError::Config(e.to_string()))?;
        let ctx = Ctx {
            store,
            fleet: Arc::new(config.fleet.clone()),
            benches: Arc::new(benches),
            vault,
            placer,
            slots,
            metrics,
            http,
            settings: config.process.clone(),
        };
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

    /// Consumes until `shutdown`, then lets in-flight tenants finish (up to the grace period).
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> Result<(), ProvisionerError> {
        let Self {
            ctx,
            config,
            admin,
            readiness,
        } = self;
        let options = SubscribeOptions {
            ack_wait: config.ack_wait,
            max_deliver: config.max_deliver,
            backoff: Vec::new(),
            max_ack_pending: (config.concurrency * 4) as i64,
            ..SubscribeOptions::default()
        };
        let signup = ctx
            .store
            .subscribe(
                "provisioner-signup",
                &ctx.store.context_filter(EventContext::Signup),
                options.clone(),
            )
            .await?;
        let lifecycle = ctx
            .store
            .subscribe(
                "provisioner-lifecycle",
                &ctx.store.context_filter(EventContext::Lifecycle),
                options,
            )
            .await?;
        let admin_task = tokio::spawn(admin.serve(shutdown.clone()));
        // Bounds the tenants in flight in this instance (each holds bench slots, HTTP
        // connections and a delivery); shared by both consumers.
        let permits = Arc::new(Semaphore::new(config.concurrency));
        let locks = TenantLocks::default();
        let refill = tokio::spawn(standby::refill_loop(
            ctx.clone(),
            config.instance_id.clone(),
            config.standby_refill_every,
            shutdown.clone(),
        ));
        readiness.set(true);
        tracing::info!(instance = %config.instance_id, benches = ctx.fleet.benches.len(), "provisioner consuming");
        let consumers = [
            tokio::spawn(consume(
                ctx.clone(),
                signup,
                Kind::Signup,
                permits.clone(),
                locks.clone(),
                config.ack_wait,
                config.shutdown_grace,
                shutdown.clone(),
            )),
            tokio::spawn(consume(
                ctx.clone(),
                lifecycle,
                Kind::Lifecycle,
                permits,
                locks,
                config.ack_wait,
                config.shutdown_grace,
                shutdown.clone(),
            )),
        ];
        for c in consumers {
            let _ = c.await;
        }
        let _ = refill.await;
        match admin_task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("admin server").into()),
            Err(e) => Err(anyhow::Error::new(e).context("admin task").into()),
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

#[derive(Clone, Copy, Debug)]
enum Kind {
    Signup,
    Lifecycle,
}

#[allow(clippy::too_many_arguments)] // private plumbing of one consumer loop
async fn consume(
    ctx: Ctx,
    mut sub: eventstore::Subscription,
    kind: Kind,
    permits: Arc<Semaphore>,
    locks: TenantLocks,
    ack_wait: Duration,
    grace: Duration,
    shutdown: Shutdown,
) {
    let mut tasks = JoinSet::new();
    loop {
        // A permit before pulling, so a busy instance leaves messages to other instances.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.wait() => break,
        };
        let next = tokio::select! {
            d = sub.next() => d,
            _ = shutdown.wait() => break,
        };
        while tasks.try_join_next().is_some() {}
        let delivery = match next {
            None => break,
            Some(Err(e)) => {
                tracing::warn!(error = %e, ?kind, "bad delivery");
                continue;
            }
            Some(Ok(d)) => d,
        };
        let ctx = ctx.clone();
        let locks = locks.clone();
        tasks.spawn(async move {
            let _permit = permit;
            handle(&ctx, kind, delivery, &locks, ack_wait).await;
        });
    }
    // Shutdown: in-flight tenants get the grace period; whatever is left is abandoned and its
    // message redelivered after ack_wait (every step resumes from the recorded state).
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            ?kind,
            "shutdown grace passed; abandoning in-flight tenants to redelivery"
        );
        tasks.abort_all();
    }
}

async fn handle(
    ctx: &Ctx,
    kind: Kind,
    delivery: Delivery,
    locks: &TenantLocks,
    ack_wait: Duration,
) {
    let delivery = Arc::new(delivery);
    let tenant = delivery.event.tenant_id.clone();
    // Keeps the message alive while the tenant's steps run (new-site can take minutes).
    let ticker = {
        let d = delivery.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ack_wait / 3).await;
                if let Err(e) = d.in_progress().await {
                    tracing::debug!(error = %e, "in-progress ack failed");
                }
            }
        })
    };
    let lock = locks.get(&tenant);
    let result = {
        let _guard = lock.lock().await;
        match kind {
            Kind::Signup => match Request::from_event(&delivery.event) {
                Some(req) => driver::provision(ctx, &req).await.map(|_| Settle::Ack),
                None => Ok(Settle::Ack),
            },
            Kind::Lifecycle => lifecycle::handle(ctx, &delivery.event).await,
        }
    };
    ticker.abort();
    let settled = match result {
        Ok(Settle::Ack) => delivery.ack().await,
        Ok(Settle::Later(delay)) => delivery.nak(Some(delay)).await,
        Err(e) => {
            let delay = match e {
                StepError::Infra(_) => Duration::from_secs(1),
                _ => Duration::from_secs(2),
            };
            tracing::warn!(tenant, error = %e, event = %delivery.event.event_type, "handling failed; will be redelivered");
            delivery.fail(&e.to_string(), delay).await
        }
    };
    if let Err(e) = settled {
        tracing::warn!(tenant, error = %e, "could not settle a delivery; it will be redelivered");
    }
}
