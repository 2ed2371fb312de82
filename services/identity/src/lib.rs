//! The Tenantry identity service: single sign-on through Authentik for every tenant.
//!
//! Two durable consumers on the shared worker core ([`worker::Worker`]; nats-server 2.9 has no
//! multi-filter consumers): `identity-provisioning` on `tenantry.provisioning.*`
//! (TenantProvisioned → configure, SiteSuspended → deactivate the tenant's users, SiteResumed →
//! reactivate, SiteDeleted → remove everything) and `identity-lifecycle` on
//! `tenantry.lifecycle.*` (an operator's retry of failed single sign-on). A delivery takes the
//! tenant's lease, folds the tenant's events, decides with [`tenancy::decide_identity`], does
//! the idempotent work ([`configure`], [`lifecycle`]) checking the lease before every call,
//! and records the result on `tenantry.identity.<tenant>`.
//!
//! Entry points: [`Application::build`] + [`Application::run_until_stopped`], or [`run`].

pub mod configure;
pub mod context;
pub mod error;
pub mod lifecycle;
pub mod names;
pub mod process;
pub mod secrets;
pub mod sites;
pub mod social_login;
pub mod tenant;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use authentik_client::{Authentik, AuthentikConfig, Directory, DirectoryNames};
use eventstore::{EventContext, EventStore, StoreConfig};
use secrecy::SecretString;
use svc::{Readiness, Shutdown};
use tokio::sync::Semaphore;
use worker::{Handler, Leases, Outcome, Work, WorkError, Worker, WorkerConfig};

use crate::context::Ctx;
use crate::process::Attempts;
use crate::sites::SiteApi;

/// Errors that stop the service from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A setting is wrong or Authentik lacks something (the message names it).
    #[error("configuration: {0}")]
    Config(String),
    /// NATS is unreachable or refused a stream/consumer/bucket.
    #[error(transparent)]
    Store(#[from] eventstore::StoreError),
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Everything the identity service needs. `Debug` never prints a token.
#[derive(Debug, Clone)]
pub struct Config {
    /// NATS server, namespace, credentials and TLS.
    pub nats: StoreConfig,
    /// Vault gRPC endpoint.
    pub vault_endpoint: String,
    /// What the service trusts (and presents) when calling the vault.
    pub vault_tls: svc::ClientTls,
    /// The identity service's vault token.
    pub vault_token: SecretString,
    /// Authentik's API URL and token.
    pub authentik: AuthentikConfig,
    /// Which flows, mappings and signing key providers use.
    pub directory: DirectoryNames,
    /// Authentik as browsers reach it, for the sites' Social Login Keys (defaults to the API
    /// URL).
    pub public_auth_url: Option<String>,
    /// How to reach each bench's sites.
    pub sites: SiteApi,
    /// Admin HTTP address; port 0 picks one.
    pub admin_addr: SocketAddr,
    /// The embedding process's admin port to report into instead (`tenantry dev`).
    pub shared_admin: Option<svc::AdminHandle>,
    /// Tenants handled at once by this instance.
    pub concurrency: usize,
    /// Ack wait of the consumers (kept alive with in-progress acks).
    pub ack_wait: Duration,
    /// Deliveries of one trigger before setup gives up with IdentityConfigurationFailed.
    pub max_attempts: u64,
    /// First back-off after a failed attempt; doubles up to `retry_max`.
    pub retry_initial: Duration,
    /// Longest back-off.
    pub retry_max: Duration,
    /// A tenant lease's lifetime between heartbeats.
    pub lease_ttl: Duration,
    /// This instance's id (lease holder).
    pub instance_id: String,
    /// How long shutdown waits for in-flight tenants.
    pub shutdown_grace: Duration,
    /// Test hook: abort at `at:<point>`, `before:<Event>` or `after:<Event>`.
    pub crash_at: Option<String>,
}

impl Config {
    /// Defaults for everything but the essentials.
    pub fn new(
        nats_url: impl Into<String>,
        vault_endpoint: impl Into<String>,
        vault_token: SecretString,
        authentik: AuthentikConfig,
        sites: SiteApi,
    ) -> Self {
        Self {
            nats: StoreConfig::new(nats_url),
            vault_endpoint: vault_endpoint.into(),
            vault_tls: svc::ClientTls::default(),
            vault_token,
            authentik,
            directory: DirectoryNames::default(),
            public_auth_url: None,
            sites,
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            shared_admin: None,
            concurrency: 16,
            ack_wait: Duration::from_secs(60),
            max_attempts: 8,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            lease_ttl: Duration::from_secs(15),
            instance_id: format!("identity-{}", uuid::Uuid::now_v7().simple()),
            shutdown_grace: Duration::from_secs(30),
            crash_at: None,
        }
    }
}

/// Command-line flags (with env fallbacks) of the identity service.
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityArgs {
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
    /// File holding the identity service's vault token (or set `TENANTRY_IDENTITY_VAULT_TOKEN`).
    #[arg(long = "vault-token-file", env = "TENANTRY_IDENTITY_VAULT_TOKEN_FILE")]
    pub vault_token_file: Option<PathBuf>,
    /// What the service trusts (and presents) when calling the vault.
    #[command(flatten)]
    pub vault_tls: svc::ClientTlsArgs,
    /// Authentik's URL, e.g. `https://auth.example` (the API is under `/api/v3/`).
    #[arg(long = "authentik-url", env = "TENANTRY_AUTHENTIK_URL")]
    pub authentik_url: String,
    /// File holding the Authentik API token (or set `TENANTRY_AUTHENTIK_TOKEN`).
    #[arg(long = "authentik-token-file", env = "TENANTRY_AUTHENTIK_TOKEN_FILE")]
    pub authentik_token_file: Option<PathBuf>,
    /// PEM CA bundle to trust for Authentik's TLS certificate (besides the system roots).
    #[arg(long = "authentik-ca", env = "TENANTRY_AUTHENTIK_CA")]
    pub authentik_ca: Option<PathBuf>,
    /// Authentik as browsers reach it, written into each site's Social Login Key (default:
    /// `--authentik-url`).
    #[arg(long = "authentik-public-url", env = "TENANTRY_AUTHENTIK_PUBLIC_URL")]
    pub authentik_public_url: Option<String>,
    /// Longest one Authentik call may take, in milliseconds.
    #[arg(
        long = "authentik-timeout-ms",
        env = "TENANTRY_AUTHENTIK_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub authentik_timeout_ms: u64,
    /// Authorization flow slug of the tenants' providers.
    #[arg(
        long = "authentik-authorization-flow",
        env = "TENANTRY_AUTHENTIK_AUTHORIZATION_FLOW",
        default_value = "default-provider-authorization-implicit-consent"
    )]
    pub authorization_flow: String,
    /// Invalidation flow slug of the tenants' providers.
    #[arg(
        long = "authentik-invalidation-flow",
        env = "TENANTRY_AUTHENTIK_INVALIDATION_FLOW",
        default_value = "default-provider-invalidation-flow"
    )]
    pub invalidation_flow: String,
    /// Certificate key pair that signs tokens (RS256), or `none` (HS256 with the client secret).
    #[arg(
        long = "authentik-signing-key",
        env = "TENANTRY_AUTHENTIK_SIGNING_KEY",
        default_value = "authentik Self-signed Certificate"
    )]
    pub signing_key: String,
    /// Fleet file: the identity service reads its benches' `base_url` and `routing` to reach
    /// the sites.
    #[arg(long = "fleet", env = "TENANTRY_FLEET")]
    pub fleet: PathBuf,
    /// Tenants handled at once by this instance.
    #[arg(long, env = "TENANTRY_IDENTITY_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,
    /// Consumer ack wait, seconds.
    #[arg(long, env = "TENANTRY_IDENTITY_ACK_WAIT", default_value_t = 60)]
    pub ack_wait_secs: u64,
    /// Attempts of a tenant's setup before IdentityConfigurationFailed.
    #[arg(long, env = "TENANTRY_IDENTITY_ATTEMPTS", default_value_t = 8)]
    pub attempts: u64,
    /// First retry back-off in milliseconds (doubles per attempt, up to a minute).
    #[arg(
        long,
        env = "TENANTRY_IDENTITY_RETRY_BACKOFF_MS",
        default_value_t = 1000
    )]
    pub retry_backoff_ms: u64,
    /// Tenant lease between heartbeats, seconds.
    #[arg(long, env = "TENANTRY_IDENTITY_LEASE", default_value_t = 15)]
    pub lease_secs: u64,
    /// Test hook: abort at `at:<point>`, `before:<Event>` or `after:<Event>`.
    #[arg(long, env = "TENANTRY_IDENTITY_CRASH_AT", hide = true)]
    pub crash_at: Option<String>,
    /// Admin listener.
    #[command(flatten)]
    pub admin: svc::AdminArgs,
}

impl IdentityArgs {
    /// Reads the token files and the fleet file and builds the config.
    pub fn into_config(self) -> Result<Config, IdentityError> {
        let config_error = |e: &dyn std::fmt::Display| IdentityError::Config(e.to_string());
        let vault_token = svc::secret::load(
            "the identity service's vault token",
            "TENANTRY_IDENTITY_VAULT_TOKEN",
            self.vault_token_file.as_deref(),
        )
        .map_err(|e| config_error(&e))?
        .ok_or_else(|| {
            IdentityError::Config(
                "the vault token is missing: set TENANTRY_IDENTITY_VAULT_TOKEN or --vault-token-file".into(),
            )
        })?;
        let authentik_token = svc::secret::load(
            "the Authentik API token",
            "TENANTRY_AUTHENTIK_TOKEN",
            self.authentik_token_file.as_deref(),
        )
        .map_err(|e| config_error(&e))?
        .ok_or_else(|| {
            IdentityError::Config(
                "the Authentik token is missing: set TENANTRY_AUTHENTIK_TOKEN or --authentik-token-file".into(),
            )
        })?;
        let sites = SiteApi::load(&self.fleet).map_err(|e| config_error(&e))?;
        let mut authentik = AuthentikConfig::new(self.authentik_url, authentik_token);
        authentik.timeout = Duration::from_millis(self.authentik_timeout_ms.max(100));
        if let Some(ca) = &self.authentik_ca {
            authentik.ca_pem = Some(std::fs::read(ca).map_err(|e| {
                IdentityError::Config(format!("cannot read --authentik-ca {}: {e}", ca.display()))
            })?);
        }
        let mut c = Config::new(
            self.nats.nats_url.clone(),
            self.vault_endpoint,
            vault_token,
            authentik,
            sites,
        );
        c.nats = self.nats.store_config().map_err(|e| config_error(&e))?;
        c.vault_tls = self.vault_tls.load().map_err(|e| config_error(&e))?;
        c.public_auth_url = self.authentik_public_url;
        c.directory = DirectoryNames {
            authorization_flow: self.authorization_flow,
            invalidation_flow: self.invalidation_flow,
            signing_key: (self.signing_key != "none").then_some(self.signing_key),
            ..DirectoryNames::default()
        };
        c.admin_addr = self.admin.admin_addr;
        c.concurrency = self.concurrency.max(1);
        c.ack_wait = Duration::from_secs(self.ack_wait_secs.max(3));
        c.max_attempts = self.attempts.max(1);
        c.retry_initial = Duration::from_millis(self.retry_backoff_ms);
        c.lease_ttl = Duration::from_secs(self.lease_secs.max(1));
        c.crash_at = self.crash_at;
        Ok(c)
    }
}

/// A built identity service: admin port bound, NATS connected, Authentik looked up.
pub struct Application {
    ctx: Ctx,
    config: Config,
    leases: Leases,
    admin: svc::Admin,
    readiness: Readiness,
}

impl Application {
    /// Binds the admin listener, connects to NATS and the vault, and looks up the flows,
    /// mappings and signing key in Authentik (a missing one stops start-up, named).
    pub async fn build(config: Config) -> Result<Self, IdentityError> {
        let admin = svc::Admin::open(config.admin_addr, config.shared_admin.clone(), "identity")
            .await
            .map_err(|e| {
                IdentityError::Config(format!("cannot listen on {}: {e}", config.admin_addr))
            })?;
        let readiness = admin.readiness().clone();
        let store = EventStore::connect(&config.nats).await?;
        let vault = config
            .vault_tls
            .endpoint(&config.vault_endpoint)
            .map_err(|e| IdentityError::Config(e.to_string()))
            .and_then(|endpoint| {
                vault_client::VaultClient::from_endpoint(endpoint, &config.vault_token)
                    .map_err(|e| IdentityError::Config(e.to_string()))
            })?;
        let authentik =
            Authentik::new(&config.authentik).map_err(|e| IdentityError::Config(e.to_string()))?;
        let directory = Directory::load(&authentik, &config.directory)
            .await
            .map_err(|e| {
                IdentityError::Config(format!("Authentik at {}: {e}", config.authentik.base_url))
            })?;
        tracing::info!(version = %directory.version, "Authentik looked up");
        let leases = Leases::open(
            &store,
            "IDENTITY_LEASES",
            &config.instance_id,
            config.lease_ttl,
        )
        .await?;
        let http = reqwest::Client::builder()
            .timeout(SITE_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| IdentityError::Config(e.to_string()))?;
        let ctx = Ctx {
            store,
            public_auth_url: config
                .public_auth_url
                .clone()
                .unwrap_or_else(|| config.authentik.base_url.clone()),
            authentik,
            directory: Arc::new(directory),
            vault,
            sites: Arc::new(config.sites.clone()),
            http,
            // The longer of the Authentik and site clients' timeouts, plus a margin.
            write_limit: config.authentik.timeout.max(SITE_TIMEOUT) + Duration::from_secs(2),
            crash: config.crash_at.clone(),
        };
        Ok(Self {
            ctx,
            config,
            leases,
            admin,
            readiness,
        })
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(self.config.admin_addr)
    }

    /// Consumes until `shutdown`, then lets in-flight tenants finish (up to the grace period).
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> Result<(), IdentityError> {
        let Self {
            ctx,
            config,
            leases,
            mut admin,
            readiness,
        } = self;
        let admin_task = admin.serve(shutdown.clone());
        let consumer_metrics = svc::consumers::ConsumerMetrics::new(admin.metrics());
        let nats_probe = admin.probe_nats(&ctx.store, shutdown.clone());
        let permits = Arc::new(Semaphore::new(config.concurrency));
        let handler = Arc::new(Tenants {
            ctx: ctx.clone(),
            attempts: Attempts {
                max: config.max_attempts,
            },
        });
        tracing::info!(instance = %config.instance_id, "identity consuming");
        let workers = [
            ("identity-provisioning", EventContext::Provisioning),
            ("identity-lifecycle", EventContext::Lifecycle),
        ]
        .map(|(durable, context)| {
            let mut wc = WorkerConfig::new(durable, ctx.store.context_filter(context));
            wc.subscribe.ack_wait = config.ack_wait;
            wc.retry_initial = config.retry_initial;
            wc.retry_max = config.retry_max;
            wc.shutdown_grace = config.shutdown_grace;
            let worker = Worker::new(
                wc,
                ctx.store.clone(),
                Arc::clone(&handler),
                Some(leases.clone()),
                Arc::clone(&permits),
            )
            .with_metrics(consumer_metrics.clone());
            tokio::spawn(worker.run(readiness.part(durable), shutdown.clone()))
        });
        // The consumers' parts say whether they are subscribed; the service itself is up.
        readiness.set(true);
        let mut failed = None;
        for w in workers {
            match w.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed = Some(IdentityError::from(e)),
                Err(e) => failed = Some(anyhow::Error::new(e).context("consumer task").into()),
            }
        }
        shutdown.trigger();
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

/// The longest one REST call to a tenant's site may take.
const SITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds and runs the identity service until `shutdown`.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), IdentityError> {
    Application::build(config)
        .await?
        .run_until_stopped(shutdown)
        .await
}

/// The reaction to both consumers' events, keyed by tenant so one instance at a time works on
/// a tenant's Authentik objects.
struct Tenants {
    ctx: Ctx,
    attempts: Attempts,
}

impl Handler for Tenants {
    fn lease_key(&self, event: &eventstore::RecordedEvent) -> Option<String> {
        // Only triggers need the tenant; everything else is acknowledged without a lease.
        process::trigger(&event.body).map(|_| event.tenant_id.clone())
    }

    async fn handle(&self, work: Work) -> Result<Outcome, WorkError> {
        process::handle(&self.ctx, &self.attempts, &work).await
    }
}
