//! The Tenantry billing service: a subscription per tenant, trials, an invoice per period,
//! charges through a payment provider, dunning (grace, then suspension as billing; resume when
//! paid), all recorded on `tenantry.billing.<tenant>` for outside billing systems to follow.
//!
//! Two drivers, both on per-tenant leases (one instance bills a tenant at a time):
//! - the `billing-provisioning` durable consumer (worker core) on `tenantry.provisioning.*`:
//!   TenantProvisioned starts the subscription, SiteDeleted cancels it;
//! - a scheduler: the KV bucket `BILLING_DUE` holds each live tenant's next due moment (derived
//!   from its facts — a cache, rebuilt from the log when missing); every tick the tenants whose
//!   moment has come are settled ([`process::Ctx::settle`]).
//!
//! Time comes from a [`clock::Clock`], so tests move through a year in seconds.

pub mod account;
pub mod clock;
pub mod error;
pub mod grpc;
pub mod invoices;
pub mod meter;
pub mod payment;
pub mod process;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

use async_nats::jetstream::kv;
use eventstore::{Body, EventContext, EventStore, StoreConfig};
use futures::StreamExt as _;
use secrecy::SecretString;
use svc::{Readiness, Shutdown};
use tenancy::Dunning;
use tokio::sync::Semaphore;
use worker::{Acquire, Handler, Leases, Outcome, Work, WorkError, Worker, WorkerConfig};

use crate::clock::{Clock, SystemClock};
use crate::error::BillingError;
use crate::payment::{ManualProvider, PaymentProvider};
use crate::process::{Admin, Ctx, Fence};

/// Errors that stop the service.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// NATS refused or is unreachable.
    #[error(transparent)]
    Store(#[from] eventstore::StoreError),
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Everything billing needs. `Debug` never prints the token.
#[derive(Debug, Clone)]
pub struct Config {
    /// NATS.
    pub nats: StoreConfig,
    /// The plan catalogue (prices, trials).
    pub catalogue: plans::PlanCatalogue,
    /// The signup gateway's operator API (TenantAdmin), where billing asks for suspensions.
    pub admin_endpoint: String,
    /// TLS towards it.
    pub admin_tls: svc::ClientTls,
    /// Billing's operator token there (an operator entry with `service = true`).
    pub admin_token: SecretString,
    /// The name of that operator entry (billing lifts only suspensions recorded under it).
    pub admin_name: String,
    /// Dunning: payment terms, grace, retry interval.
    pub dunning: Dunning,
    /// How often due tenants are looked for.
    pub tick: Duration,
    /// Ack wait of the consumer.
    pub ack_wait: Duration,
    /// Tenant lease between heartbeats.
    pub lease_ttl: Duration,
    /// Admin HTTP address.
    pub admin_addr: SocketAddr,
    /// The embedding process's admin port to report into instead (`tenantry dev`).
    pub shared_admin: Option<svc::AdminHandle>,
    /// The `Billing` gRPC API's address; port 0 picks one.
    pub listen_addr: SocketAddr,
    /// TLS and limits of the gRPC API.
    pub grpc: svc::GrpcServerArgs,
    /// Who may call it (readers read, admins record payments).
    pub operators: svc::OperatorAuth,
    /// This instance's id.
    pub instance_id: String,
    /// Test hook (see [`process::Ctx::crash`]).
    pub crash_at: Option<String>,
    /// Usage metering; `None` turns it off.
    pub metering: Option<meter::MeterConfig>,
}

impl Config {
    /// Defaults for everything but the essentials.
    pub fn new(
        nats_url: impl Into<String>,
        catalogue: plans::PlanCatalogue,
        admin_endpoint: impl Into<String>,
        admin_token: SecretString,
    ) -> Self {
        Self {
            nats: StoreConfig::new(nats_url),
            catalogue,
            admin_endpoint: admin_endpoint.into(),
            admin_tls: svc::ClientTls::default(),
            admin_token,
            admin_name: "billing".into(),
            dunning: Dunning::default(),
            tick: Duration::from_secs(5),
            ack_wait: Duration::from_secs(60),
            lease_ttl: Duration::from_secs(15),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            shared_admin: None,
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            grpc: svc::GrpcServerArgs::default(),
            operators: svc::OperatorAuth::default(),
            instance_id: format!("billing-{}", uuid::Uuid::now_v7().simple()),
            crash_at: None,
            metering: None,
        }
    }
}

/// Flags (with env fallbacks) of `tenantry billing`.
#[derive(Debug, Clone, clap::Args)]
pub struct BillingArgs {
    /// NATS and namespace.
    #[command(flatten)]
    pub nats: svc::NatsArgs,
    /// The plan catalogue file every service reads.
    #[arg(long = "plans-file", env = "TENANTRY_PLANS")]
    pub plans_file: PathBuf,
    /// The signup gateway's operator API.
    #[arg(
        long = "admin-endpoint",
        env = "TENANTRY_ADMIN_URL",
        default_value = "http://127.0.0.1:50054"
    )]
    pub admin_endpoint: String,
    /// File holding billing's operator token (or set `TENANTRY_BILLING_TOKEN`).
    #[arg(long = "admin-token-file", env = "TENANTRY_BILLING_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The name of billing's entry in signup's operators file: billing lifts only suspensions
    /// recorded under it.
    #[arg(
        long = "operator-name",
        env = "TENANTRY_BILLING_OPERATOR_NAME",
        default_value = "billing"
    )]
    pub operator_name: String,
    /// What billing trusts (and presents) when calling the operator API and the vault (one
    /// internal CA).
    #[command(flatten)]
    pub admin_tls: svc::ClientTlsArgs,
    /// Days from an invoice to its due date.
    #[arg(long, env = "TENANTRY_BILLING_PAYMENT_TERMS_DAYS", default_value_t = 0)]
    pub payment_terms_days: i64,
    /// Days from the first failed charge to suspension.
    #[arg(long, env = "TENANTRY_BILLING_GRACE_DAYS", default_value_t = 7)]
    pub grace_days: i64,
    /// Hours between charge attempts in the grace period.
    #[arg(long, env = "TENANTRY_BILLING_RETRY_HOURS", default_value_t = 24)]
    pub retry_hours: i64,
    /// Fleet file (the provisioner's): its benches' REST front ends and runners, to measure
    /// each tenant's users, database and files. Without it, usage is not metered.
    #[arg(long = "fleet", env = "TENANTRY_FLEET")]
    pub fleet: Option<PathBuf>,
    /// Vault gRPC endpoint (metering reads each site's API key).
    #[arg(
        long = "vault-endpoint",
        env = "TENANTRY_VAULT_ENDPOINT",
        default_value = "http://127.0.0.1:50053"
    )]
    pub vault_endpoint: String,
    /// File holding billing's vault token (or set `TENANTRY_BILLING_VAULT_TOKEN`); needed with
    /// `--fleet`.
    #[arg(long = "vault-token-file", env = "TENANTRY_BILLING_VAULT_TOKEN_FILE")]
    pub vault_token_file: Option<PathBuf>,
    /// Hours between two measurements of a tenant's usage.
    #[arg(long, env = "TENANTRY_BILLING_METER_HOURS", default_value_t = 24)]
    pub meter_hours: u64,
    /// Days from a usage warning (over a plan limit) to suspension, if still over.
    #[arg(long, env = "TENANTRY_BILLING_USAGE_GRACE_DAYS", default_value_t = 7)]
    pub usage_grace_days: i64,
    /// How often due tenants are looked for, seconds.
    #[arg(long, env = "TENANTRY_BILLING_TICK_SECS", default_value_t = 5)]
    pub tick_secs: u64,
    /// Tenant lease between heartbeats, seconds: how soon another instance takes over.
    #[arg(long, env = "TENANTRY_BILLING_LEASE", default_value_t = 15)]
    pub lease_secs: u64,
    /// Consumer ack wait, seconds.
    #[arg(long, env = "TENANTRY_BILLING_ACK_WAIT", default_value_t = 60)]
    pub ack_wait_secs: u64,
    /// Address of the `Billing` gRPC API.
    #[arg(
        long = "listen",
        env = "TENANTRY_BILLING_LISTEN",
        default_value = "127.0.0.1:50055"
    )]
    pub listen: SocketAddr,
    /// TLS and limits of the gRPC API.
    #[command(flatten)]
    pub grpc: svc::GrpcServerArgs,
    /// Operators allowed to call it.
    #[command(flatten)]
    pub operators: svc::OperatorArgs,
    /// Test hook: abort at `at:charge`, `at:asked`, `before:<Event>` or `after:<Event>`.
    #[arg(long, env = "TENANTRY_BILLING_CRASH_AT", hide = true)]
    pub crash_at: Option<String>,
    /// Test hook: read the time from this file (Unix seconds) instead of the system clock.
    #[arg(long, env = "TENANTRY_BILLING_CLOCK_FILE", hide = true)]
    pub clock_file: Option<PathBuf>,
    /// Admin listener.
    #[command(flatten)]
    pub admin: svc::AdminArgs,
}

impl BillingArgs {
    /// Reads the files and builds the config.
    pub fn into_config(self) -> Result<Config, StartError> {
        let bad = |e: &dyn std::fmt::Display| StartError::Config(e.to_string());
        let catalogue = plans::PlanCatalogue::load(&self.plans_file).map_err(|e| bad(&e))?;
        let token = required_secret(
            "billing's operator token",
            "TENANTRY_BILLING_TOKEN",
            self.admin_token_file.as_deref(),
            "--admin-token-file",
        )?;
        let mut c = Config::new(
            self.nats.nats_url.clone(),
            catalogue,
            self.admin_endpoint,
            token,
        );
        c.nats = self.nats.store_config().map_err(|e| bad(&e))?;
        c.admin_tls = self.admin_tls.load().map_err(|e| bad(&e))?;
        if !svc::auth::valid_name(&self.operator_name) {
            return Err(StartError::Config(format!(
                "--operator-name {:?}: an operator name is 1-64 of a-z A-Z 0-9 . _ @ -",
                self.operator_name
            )));
        }
        c.admin_name = self.operator_name;
        c.dunning = Dunning {
            payment_terms: self.payment_terms_days.max(0) * 86_400,
            grace: self.grace_days.max(0) * 86_400,
            retry_every: self.retry_hours.max(1) * 3_600,
            meter_every: 0,
            usage_grace: self.usage_grace_days.max(0) * 86_400,
        };
        if let Some(fleet) = &self.fleet {
            let sites = frappe::SiteAccess::load(fleet).map_err(|e| bad(&e))?;
            // Metering (--fleet) reads each site's API key from the vault.
            let vault_token = required_secret(
                "billing's vault token",
                "TENANTRY_BILLING_VAULT_TOKEN",
                self.vault_token_file.as_deref(),
                "--vault-token-file",
            )?;
            c.metering = Some(meter::MeterConfig {
                sites,
                vault_endpoint: self.vault_endpoint.clone(),
                vault_tls: self.admin_tls.load().map_err(|e| bad(&e))?,
                vault_token,
                every: Duration::from_secs(self.meter_hours.max(1) * 3_600),
            });
        }
        c.tick = Duration::from_secs(self.tick_secs.max(1));
        c.lease_ttl = Duration::from_secs(self.lease_secs.max(1));
        c.ack_wait = Duration::from_secs(self.ack_wait_secs.max(3));
        c.admin_addr = self.admin.admin_addr;
        c.listen_addr = self.listen;
        c.grpc = self.grpc;
        c.operators = self.operators.load().map_err(|e| bad(&e))?;
        c.crash_at = self.crash_at;
        Ok(c)
    }
}

/// A secret from its file or environment variable; missing is a start-up error naming both.
fn required_secret(
    what: &str,
    env: &str,
    file: Option<&std::path::Path>,
    flag: &str,
) -> Result<SecretString, StartError> {
    svc::secret::load(what, env, file)
        .map_err(|e| StartError::Config(e.to_string()))?
        .ok_or_else(|| StartError::Config(format!("{what} is missing: set {env} or {flag}")))
}

/// A built billing service.
pub struct Application<P> {
    listener: tokio::net::TcpListener,
    ctx: Arc<Ctx<P>>,
    due: kv::Store,
    leases: Leases,
    config: Config,
    admin: svc::Admin,
    readiness: Readiness,
}

impl<P: PaymentProvider> Application<P> {
    /// Connects, checks the plan catalogue against the other services', opens the buckets.
    pub async fn build(
        config: Config,
        clock: Arc<dyn Clock>,
        provider: P,
    ) -> Result<Self, StartError> {
        let listener = tokio::net::TcpListener::bind(config.listen_addr)
            .await
            .map_err(|e| {
                StartError::Config(format!("cannot listen on {}: {e}", config.listen_addr))
            })?;
        let admin = svc::Admin::open(config.admin_addr, config.shared_admin.clone(), "billing")
            .await
            .map_err(|e| {
                StartError::Config(format!("cannot listen on {}: {e}", config.admin_addr))
            })?;
        let readiness = admin.readiness().clone();
        let store = EventStore::connect(&config.nats).await?;
        plans::agree(&store, &config.catalogue, "billing")
            .await
            .map_err(|e| StartError::Config(e.to_string()))?;
        let endpoint = config
            .admin_tls
            .endpoint(&config.admin_endpoint)
            .map_err(|e| StartError::Config(e.to_string()))?;
        let client =
            proto::v1::tenant_admin_client::TenantAdminClient::new(endpoint.connect_lazy());
        let due = store
            .key_value(
                "BILLING_DUE",
                1,
                "Tenantry billing: each tenant's next due moment",
            )
            .await?;
        let leases = Leases::open(
            &store,
            "BILLING_LEASES",
            &config.instance_id,
            config.lease_ttl,
        )
        .await?;
        let meter = match &config.metering {
            Some(m) => Some(meter::Meter::new(m).map_err(StartError::Config)?),
            None => None,
        };
        let mut dunning = config.dunning;
        dunning.meter_every = config
            .metering
            .as_ref()
            .map_or(0, |m| i64::try_from(m.every.as_secs()).unwrap_or(i64::MAX));
        let ctx = Arc::new(Ctx {
            meter,
            store,
            catalogue: Arc::new(config.catalogue.clone()),
            clock,
            provider: Arc::new(provider),
            admin: Admin {
                client,
                token: config.admin_token.clone(),
                name: config.admin_name.clone(),
            },
            dunning,
            crash: config.crash_at.clone(),
        });
        Ok(Self {
            listener,
            ctx,
            due,
            leases,
            config,
            admin,
            readiness,
        })
    }

    /// The `Billing` API's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.config.listen_addr)
    }

    /// Consumes and ticks until `shutdown`.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> Result<(), StartError> {
        let Self {
            listener,
            ctx,
            due,
            leases,
            config,
            mut admin,
            readiness,
        } = self;
        let admin_task = admin.serve(shutdown.clone());
        let nats_probe = admin.probe_nats(&ctx.store, shutdown.clone());
        let api = tonic::service::interceptor::InterceptedService::new(
            proto::v1::billing_server::BillingServer::new(grpc::BillingService::new(
                Arc::clone(&ctx),
                due.clone(),
                leases.clone(),
            )),
            config.operators.interceptor(svc::Role::Reader),
        );
        // Health, reflection of what this port serves only, and INVALID_ARGUMENT or
        // RESOURCE_EXHAUSTED (not INTERNAL) for a request that does not decode.
        let (health, health_service) = svc::grpc::health_reporter();
        health
            .set_serving::<proto::v1::billing_server::BillingServer<grpc::BillingService<P>>>()
            .await;
        let reflection =
            svc::grpc::reflection(&[proto::FILE_DESCRIPTOR_SET], &["tenantry.v1.Billing"])
                .map_err(|e| StartError::Config(e.to_string()))?;
        let request_errors = svc::grpc::RequestErrorsLayer::new(&[proto::FILE_DESCRIPTOR_SET]);
        let server = config
            .grpc
            .builder("billing")
            .map_err(|e| StartError::Config(e.to_string()))?
            .layer(svc::observe::ObserveLayer::new("billing", admin.metrics()))
            .layer(config.grpc.limit())
            .layer(request_errors)
            .add_service(health_service)
            .add_service(reflection.v1)
            .add_service(reflection.v1alpha)
            .add_service(api);
        let stop_serving = shutdown.clone();
        let served = tokio::spawn(async move {
            server
                .serve_with_incoming_shutdown(svc::grpc::incoming(listener), async move {
                    stop_serving.wait().await
                })
                .await
        });
        let handler = Arc::new(Subscriptions {
            ctx: Arc::clone(&ctx),
            due: due.clone(),
        });
        let mut wc = WorkerConfig::new(
            "billing-provisioning",
            ctx.store.context_filter(EventContext::Provisioning),
        );
        wc.subscribe.ack_wait = config.ack_wait;
        wc.retry_initial = Duration::from_millis(200);
        let worker = Worker::new(
            wc,
            ctx.store.clone(),
            handler,
            Some(leases.clone()),
            Arc::new(Semaphore::new(16)),
        )
        .with_metrics(svc::consumers::ConsumerMetrics::new(admin.metrics()));
        let consumer =
            tokio::spawn(worker.run(readiness.part("billing-provisioning"), shutdown.clone()));
        let scheduler = tokio::spawn(schedule(
            Arc::clone(&ctx),
            due,
            leases,
            config.tick,
            shutdown.clone(),
        ));
        readiness.set(true);
        let consumed = consumer.await;
        shutdown.trigger();
        let _ = scheduler.await;
        let _ = nats_probe.await;
        let _ = admin_task.await;
        if let Ok(Err(e)) = served.await {
            return Err(anyhow::Error::new(e).context("billing gRPC server").into());
        }
        match consumed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(anyhow::Error::new(e).context("consumer task").into()),
        }
    }
}

/// Builds and runs billing with manual payments and the system clock (or `clock_file`'s).
pub async fn run(
    config: Config,
    clock_file: Option<PathBuf>,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let clock: Arc<dyn Clock> = match clock_file {
        Some(path) => Arc::new(clock::FileClock(path)),
        None => Arc::new(SystemClock),
    };
    Application::build(config, clock, ManualProvider)
        .await?
        .run_until_stopped(shutdown)
        .await
}

/// Records when `tenant` is next due (or forgets it).
pub(crate) async fn index(due: &kv::Store, tenant: &str, next: Option<i64>) -> Result<(), String> {
    let result = match next {
        Some(at) => due
            .put(tenant, at.to_string().into_bytes().into())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        None => due.delete(tenant).await.map_err(|e| e.to_string()),
    };
    if let Err(e) = &result {
        tracing::warn!(tenant, error = %e, "cannot update the due index");
    }
    result
}

/// Rebuilds missing index entries from the log: every live subscription gets its next due
/// moment (an entry lost with the bucket, or never written before a crash, comes back).
async fn reconcile<P: PaymentProvider>(ctx: &Ctx<P>, due: &kv::Store) {
    let filter = ctx.store.context_filter(EventContext::Billing);
    let events = match ctx.store.replay(&filter, 1).await {
        Ok(r) => match r.collect().await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the billing log to rebuild the due index");
                return;
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the billing log to rebuild the due index");
            return;
        }
    };
    let mut subs: std::collections::BTreeMap<String, tenancy::Subscription> =
        std::collections::BTreeMap::new();
    for e in &events {
        subs.entry(e.tenant_id.clone()).or_default().apply(&e.body);
    }
    let mut restored = 0;
    for (tenant, sub) in subs {
        if !sub.live() {
            continue;
        }
        if matches!(due.get(&tenant).await, Ok(Some(_))) {
            continue;
        }
        // Due now: the scheduler settles it and writes the real moment.
        if index(due, &tenant, Some(i64::MIN)).await.is_ok() {
            restored += 1;
        }
    }
    if restored > 0 {
        tracing::info!(restored, "due index entries rebuilt from the log");
    }
}

struct Subscriptions<P> {
    ctx: Arc<Ctx<P>>,
    due: kv::Store,
}

impl<P: PaymentProvider> Handler for Subscriptions<P> {
    fn lease_key(&self, event: &eventstore::RecordedEvent) -> Option<String> {
        matches!(
            event.body,
            Body::TenantProvisioned(_)
                | Body::SiteDeleted(_)
                | Body::SiteLimitsApplied(_)
                | Body::SiteResumed(_)
        )
        .then(|| event.tenant_id.clone())
    }

    async fn handle(&self, work: Work) -> Result<Outcome, WorkError> {
        let fence = Fence::of(work.lease.clone());
        let tenant = work.event.tenant_id.clone();
        let result = match &work.event.body {
            Body::TenantProvisioned(_) => {
                // The subscription's start: the last step of a signup's trace.
                let span = tracing::info_span!(
                    "step",
                    otel.name = "billing start subscription",
                    tenant = %tenant,
                );
                async {
                    match self.ctx.start(&fence, &tenant).await {
                        Ok(()) => self.ctx.settle(&fence, &tenant).await,
                        Err(e) => Err(e),
                    }
                }
                .instrument(span)
                .await
            }
            Body::SiteDeleted(_) => self.ctx.cancel(&fence, &tenant).await.map(|()| None),
            // Running again: measurable again (usage is not metered while suspended).
            Body::SiteResumed(_) => self.ctx.settle(&fence, &tenant).await,
            Body::SiteLimitsApplied(e) => {
                match self.ctx.plan_applied(&fence, &tenant, &e.plan).await {
                    Ok(()) => self.ctx.settle(&fence, &tenant).await,
                    Err(e) => Err(e),
                }
            }
            _ => return Ok(Outcome::Done),
        };
        match result {
            Ok(next) => match index(&self.due, &tenant, next).await {
                Ok(()) => Ok(Outcome::Done),
                // Without its index entry the tenant would never be settled again.
                Err(e) => Err(WorkError::Transient(format!("due index: {e}"))),
            },
            Err(BillingError::LeaseLost(why)) => {
                Err(WorkError::Lease(worker::LeaseError::Lost(why)))
            }
            Err(BillingError::Transient(why)) => Err(WorkError::Transient(why)),
            Err(BillingError::Permanent(why)) => Err(WorkError::Permanent(why)),
        }
    }
}

/// Tenants settled at once by one instance's scheduler: a slow measurement or provider call
/// holds up only its own tenant.
const SETTLE_CONCURRENCY: usize = 8;

/// Every tick: settle the tenants whose due moment has come, each under its lease, up to
/// [`SETTLE_CONCURRENCY`] at once (the rest wait for the next tick).
async fn schedule<P: PaymentProvider>(
    ctx: Arc<Ctx<P>>,
    due: kv::Store,
    leases: Leases,
    tick: Duration,
    shutdown: Shutdown,
) {
    reconcile(&ctx, &due).await;
    let permits = Arc::new(Semaphore::new(SETTLE_CONCURRENCY));
    while !shutdown.is_triggered() {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(tick) => {}
        }
        let now = ctx.clock.now();
        let keys: Vec<String> = match due.keys().await {
            Ok(k) => k.filter_map(|k| async move { k.ok() }).collect().await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list due tenants");
                continue;
            }
        };
        for tenant in keys {
            let at = match due.get(&tenant).await {
                Ok(Some(v)) => std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .unwrap_or(i64::MIN),
                _ => continue,
            };
            if at > now {
                continue;
            }
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                break;
            };
            // Held by this instance too while its settle runs: never two at once.
            let lease = match leases.try_acquire(&tenant).await {
                Ok(Acquire::Acquired(l)) => Arc::new(l),
                Ok(Acquire::Held { .. }) => continue,
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "cannot take the tenant's lease");
                    continue;
                }
            };
            let (ctx, due) = (Arc::clone(&ctx), due.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let fence = Fence::of(Some(Arc::clone(&lease)));
                match ctx.settle(&fence, &tenant).await {
                    Ok(next) => {
                        let _ = index(&due, &tenant, next).await;
                    }
                    Err(e) => {
                        tracing::warn!(tenant, error = %e, "billing step failed; retrying next tick")
                    }
                }
                drop(fence);
                if let Ok(l) = Arc::try_unwrap(lease) {
                    let _ = l.release().await;
                }
            });
        }
    }
}
