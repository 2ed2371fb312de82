//! The Tenantry signup gateway: the public gRPC API (`SignupService`: `Signup`, `WatchSignup`,
//! `CheckSubdomain`) with gRPC health, reflection and grpc-web (HTTP/1.1, CORS) on the public
//! port, and the operator API (`TenantAdmin`) on a port of its own: no grpc-web, no CORS, every
//! call authenticated as a named operator.
//!
//! Entry points: [`Application::build`] then [`App::run_until_stopped`], or [`run`].

#![warn(missing_docs)]

pub mod admin;
pub mod claims;
pub mod claims_recovery;
pub mod disposable;
pub mod error;
pub mod grpc;
pub mod handoff;
pub mod human_check;
pub mod idempotency;
pub mod mail;
pub mod metrics;
pub mod ratelimit;
pub mod recovery;
pub mod streams;
pub mod validate;
pub mod verify;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use eventstore::EventStore;
use http::{HeaderName, HeaderValue, Method};
use proto::v1::signup_service_server::SignupServiceServer;
use proto::v1::tenant_admin_server::TenantAdminServer;
use secrecy::SecretString;
use svc::{
    AdminArgs, ClientTlsArgs, GrpcServerArgs, NatsArgs, OperatorArgs, OperatorAuth, Role, Shutdown,
};
use tenancy::{PlanId, Region};
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use error::{ServiceError, SignupError};

use crate::admin::AdminApi;
use crate::claims::Claims;
use crate::grpc::{Gateway, Limits, SignupApi, SignupSettings};
use crate::idempotency::Idempotency;
use crate::ratelimit::RateLimiter;
use crate::streams::StreamSlots;
use crate::validate::Catalog;

/// Default public gRPC listen address.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:50051";
/// Default operator (TenantAdmin) listen address.
pub const DEFAULT_OPERATOR_ADDR: &str = "127.0.0.1:50054";
/// Default vault endpoint.
pub const DEFAULT_VAULT_ENDPOINT: &str = "http://127.0.0.1:50053";
/// Largest request message accepted, in bytes: a signup is well under 2 KiB.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Everything the signup gateway needs. Every flag has an env fallback; secrets come only from
/// the environment or files, and `Debug` redacts them.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "signup", about = "Tenantry signup gateway")]
pub struct Config {
    /// Public gRPC (and grpc-web) listen address; port 0 picks a free port.
    #[arg(long = "listen-addr", env = "TENANTRY_SIGNUP_ADDR", default_value = DEFAULT_LISTEN_ADDR)]
    pub listen_addr: SocketAddr,
    /// Operator API (TenantAdmin) listen address: keep it off the public network.
    #[arg(long = "operator-addr", env = "TENANTRY_SIGNUP_OPERATOR_ADDR", default_value = DEFAULT_OPERATOR_ADDR)]
    pub operator_addr: SocketAddr,
    /// TLS, limits and timeout of both listeners.
    #[command(flatten)]
    pub grpc: GrpcServerArgs,
    /// The admin port (`/healthz`, `/readyz`, `/metrics`).
    #[command(flatten)]
    pub admin: AdminArgs,
    /// The embedding process's admin port to report into instead (`tenantry dev`).
    #[arg(skip)]
    pub shared_admin: Option<svc::AdminHandle>,
    /// NATS server, namespace, credentials and TLS.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// The vault's gRPC endpoint (`https://` with `--tls-ca`).
    #[arg(long = "vault-endpoint", env = "TENANTRY_VAULT_ENDPOINT", default_value = DEFAULT_VAULT_ENDPOINT)]
    pub vault_endpoint: String,
    /// What this service trusts (and presents) when calling the vault.
    #[command(flatten)]
    pub client_tls: ClientTlsArgs,
    /// File holding the `signup` caller's vault token (or set `TENANTRY_SIGNUP_VAULT_TOKEN`).
    #[arg(long = "vault-token-file", env = "TENANTRY_SIGNUP_VAULT_TOKEN_FILE")]
    pub vault_token_file: Option<PathBuf>,
    /// The vault token, when given directly by an embedding program (never a flag).
    #[arg(skip)]
    pub vault_token: Option<SecretString>,
    /// Named operators allowed on the TenantAdmin API.
    #[command(flatten)]
    pub operators: OperatorArgs,
    /// Operators given directly by an embedding program (tests, `tenantry dev`); when set, the
    /// operators file and `TENANTRY_OPERATORS` are not read.
    #[arg(skip)]
    pub operator_auth: Option<OperatorAuth>,
    /// Plan ids a signup may choose.
    #[arg(
        long = "plans",
        env = "TENANTRY_PLANS",
        value_delimiter = ',',
        default_value = "starter,business,enterprise"
    )]
    pub plans: Vec<String>,
    /// The plan catalogue file every service reads; when given, the offered plans are its plans
    /// (and `--plans` is ignored), and signup refuses to start if the other services run a
    /// different one.
    #[arg(long = "plans-file", env = "TENANTRY_PLANS")]
    pub plans_file: Option<std::path::PathBuf>,
    /// Regions a signup may choose; the first is the default.
    #[arg(
        long = "regions",
        env = "TENANTRY_REGIONS",
        value_delimiter = ',',
        default_value = "eu"
    )]
    pub regions: Vec<String>,
    /// Signup attempts per client address per window (0 = unlimited).
    #[arg(
        long = "rate-per-address",
        env = "TENANTRY_SIGNUP_RATE_PER_ADDRESS",
        default_value_t = 20
    )]
    pub rate_per_address: u32,
    /// New signups per email address per window (0 = unlimited).
    #[arg(
        long = "rate-per-email",
        env = "TENANTRY_SIGNUP_RATE_PER_EMAIL",
        default_value_t = 5
    )]
    pub rate_per_email: u32,
    /// Rate-limit window, in seconds.
    #[arg(
        long = "rate-window-secs",
        env = "TENANTRY_SIGNUP_RATE_WINDOW_SECS",
        default_value_t = 60
    )]
    pub rate_window_secs: u64,
    /// `CheckSubdomain` calls per client address per window (0 = unlimited).
    #[arg(
        long = "check-rate-per-address",
        env = "TENANTRY_SIGNUP_CHECK_RATE_PER_ADDRESS",
        default_value_t = 60
    )]
    pub check_rate_per_address: u32,
    /// Open `WatchSignup` streams per client address (0 = unlimited).
    #[arg(
        long = "watch-per-address",
        env = "TENANTRY_SIGNUP_WATCH_PER_ADDRESS",
        default_value_t = 8
    )]
    pub watch_per_address: usize,
    /// Open `WatchSignup` streams in total (0 = unlimited).
    #[arg(
        long = "watch-total",
        env = "TENANTRY_SIGNUP_WATCH_TOTAL",
        default_value_t = 2000
    )]
    pub watch_total: usize,
    /// Use the first `x-forwarded-for` address as the client's (only behind a trusted proxy).
    #[arg(long = "trust-forwarded-for", env = "TENANTRY_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
    /// Origins allowed to call from a browser (grpc-web), comma-separated; `*` allows any.
    #[arg(
        long = "cors-origins",
        env = "TENANTRY_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Lifetime of the owner's one-time password secret in the vault, in seconds.
    #[arg(
        long = "password-ttl-secs",
        env = "TENANTRY_SIGNUP_PASSWORD_TTL_SECS",
        default_value_t = 3600
    )]
    pub password_ttl_secs: u64,
    /// Store a second one-time copy of the owner's password for the identity service, which
    /// sets it as the owner's Authentik password (`false` when no identity service runs).
    #[arg(
        long = "sso",
        env = "TENANTRY_SIGNUP_SSO",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub sso: bool,
    /// How long a request waits for a concurrent one with the same idempotency key, in ms.
    #[arg(
        long = "idempotency-wait-ms",
        env = "TENANTRY_SIGNUP_IDEMPOTENCY_WAIT_MS",
        default_value_t = 10_000
    )]
    pub idempotency_wait_ms: u64,
    /// After how long a pending idempotency record is taken over, in seconds (longer than a
    /// signup may take: see `--signup-deadline-ms`).
    #[arg(
        long = "idempotency-stale-secs",
        env = "TENANTRY_SIGNUP_IDEMPOTENCY_STALE_SECS",
        default_value_t = 15
    )]
    pub idempotency_stale_secs: u64,
    /// How long an idempotency key's answer is kept, in seconds.
    #[arg(
        long = "idempotency-keep-secs",
        env = "TENANTRY_SIGNUP_IDEMPOTENCY_KEEP_SECS",
        default_value_t = 86_400
    )]
    pub idempotency_keep_secs: u64,
    /// How long a deleted tenant's subdomain stays its own after SiteDeleted, in days; then
    /// another signup may take it.
    #[arg(
        long = "subdomain-grace-days",
        env = "TENANTRY_SUBDOMAIN_GRACE_DAYS",
        default_value_t = 90
    )]
    pub subdomain_grace_days: u32,
    /// Longest a Signup call works before it answers UNAVAILABLE (retry with the same key).
    #[arg(
        long = "signup-deadline-ms",
        env = "TENANTRY_SIGNUP_DEADLINE_MS",
        default_value_t = 10_000
    )]
    pub signup_deadline_ms: u64,
    /// Confirm the owner's email before anything is built: Signup mails a code, VerifyEmail
    /// takes it back. Needs an SMTP server (`TENANTRY_SMTP_URL`).
    #[arg(
        long = "verify-email",
        env = "TENANTRY_SIGNUP_VERIFY_EMAIL",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub verify_email: bool,
    /// File holding the SMTP server URL (or set `TENANTRY_SMTP_URL`): `smtp://host:25`,
    /// `smtp://host:587?tls=required`, `smtps://user:password@host`.
    #[arg(long = "smtp-url-file", env = "TENANTRY_SMTP_URL_FILE")]
    pub smtp_url_file: Option<PathBuf>,
    /// The SMTP URL, when given directly by an embedding program (never a flag: it may hold a
    /// password).
    #[arg(skip)]
    pub smtp_url: Option<SecretString>,
    /// Who the verification mail comes from.
    #[arg(
        long = "mail-from",
        env = "TENANTRY_MAIL_FROM",
        default_value = "Tenantry <no-reply@tenantry.localhost>"
    )]
    pub mail_from: String,
    /// How long a verification code works, in seconds.
    #[arg(
        long = "verification-ttl-secs",
        env = "TENANTRY_SIGNUP_VERIFICATION_TTL_SECS",
        default_value_t = 900
    )]
    pub verification_ttl_secs: u64,
    /// Successful signups per email address per hour (0 = unlimited), besides the per-window
    /// budget of attempts: attempts that fail (an outage) do not count.
    #[arg(
        long = "rate-per-email-hour",
        env = "TENANTRY_SIGNUP_RATE_PER_EMAIL_HOUR",
        default_value_t = 10
    )]
    pub rate_per_email_hour: u32,
    /// The human check's server-side verification ("siteverify") URL, e.g.
    /// `https://challenges.cloudflare.com/turnstile/v0/siteverify` (Cloudflare Turnstile) or
    /// `https://api.hcaptcha.com/siteverify` (hCaptcha). When set, every `Signup` needs a
    /// passed `human_check_token`; no check when absent.
    #[arg(long = "human-check-url", env = "TENANTRY_HUMAN_CHECK_URL")]
    pub human_check_url: Option<String>,
    /// File holding the human check's secret key (or set `TENANTRY_HUMAN_CHECK_SECRET`);
    /// required with `--human-check-url`.
    #[arg(
        long = "human-check-secret-file",
        env = "TENANTRY_HUMAN_CHECK_SECRET_FILE"
    )]
    pub human_check_secret_file: Option<PathBuf>,
    /// The human check's secret key, when given directly by an embedding program (never a
    /// flag).
    #[arg(skip)]
    pub human_check_secret: Option<SecretString>,
}

impl Config {
    /// The defaults, with the essentials given (for tests and `tenantry dev`).
    pub fn new(
        nats: NatsArgs,
        vault_endpoint: impl Into<String>,
        vault_token: SecretString,
    ) -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            operator_addr: SocketAddr::from(([127, 0, 0, 1], 50054)),
            grpc: GrpcServerArgs::default(),
            admin: AdminArgs {
                admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            },
            shared_admin: None,
            nats,
            vault_endpoint: vault_endpoint.into(),
            client_tls: ClientTlsArgs::default(),
            vault_token_file: None,
            vault_token: Some(vault_token),
            operators: OperatorArgs::default(),
            operator_auth: None,
            plans: vec!["starter".into(), "business".into(), "enterprise".into()],
            regions: vec!["eu".into()],
            plans_file: None,
            rate_per_address: 20,
            rate_per_email: 5,
            rate_window_secs: 60,
            check_rate_per_address: 60,
            watch_per_address: 8,
            watch_total: 2000,
            trust_forwarded_for: false,
            cors_origins: Vec::new(),
            password_ttl_secs: 3600,
            sso: true,
            idempotency_wait_ms: 10_000,
            idempotency_stale_secs: 15,
            idempotency_keep_secs: 86_400,
            subdomain_grace_days: 90,
            signup_deadline_ms: 10_000,
            // Tests and `tenantry dev` turn it on with a sink to read the codes from.
            verify_email: false,
            smtp_url_file: None,
            smtp_url: None,
            mail_from: "Tenantry <no-reply@tenantry.localhost>".to_owned(),
            verification_ttl_secs: 900,
            rate_per_email_hour: 10,
            // No human check unless a URL and its secret are given.
            human_check_url: None,
            human_check_secret_file: None,
            human_check_secret: None,
        }
    }

    fn catalog(&self, file: Option<&plans::PlanCatalogue>) -> Result<Catalog, ServiceError> {
        let names: Vec<String> = match file {
            Some(c) => c.plans.keys().cloned().collect(),
            None => self.plans.clone(),
        };
        let plans = names
            .iter()
            .map(|p| PlanId::parse(p).map_err(|e| ServiceError::Config(format!("plan {p:?} {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let regions = self
            .regions
            .iter()
            .map(|r| {
                Region::parse(r).map_err(|e| ServiceError::Config(format!("region {r:?} {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if plans.is_empty() || regions.is_empty() {
            return Err(ServiceError::Config(
                "at least one plan and one region must be configured".into(),
            ));
        }
        Ok(Catalog { plans, regions })
    }

    /// The configured human check: none without a URL; a URL without a secret stops the start.
    fn human_check(&self) -> Result<Option<human_check::HumanCheck>, ServiceError> {
        let Some(url) = self
            .human_check_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
        else {
            if self.human_check_secret.is_some() || self.human_check_secret_file.is_some() {
                tracing::warn!(
                    "a human-check secret is set but no --human-check-url: no human check"
                );
            }
            return Ok(None);
        };
        let secret = match self.human_check_secret.clone() {
            Some(s) => s,
            None => svc::secret::load(
                "the human-check secret",
                "TENANTRY_HUMAN_CHECK_SECRET",
                self.human_check_secret_file.as_deref(),
            )
            .map_err(|e| ServiceError::Config(e.to_string()))?
            .ok_or_else(|| {
                ServiceError::Config(
                    "--human-check-url needs the provider's secret key: set TENANTRY_HUMAN_CHECK_SECRET or --human-check-secret-file"
                        .into(),
                )
            })?,
        };
        let check =
            human_check::HumanCheck::new(url.trim(), secret).map_err(ServiceError::Config)?;
        tracing::info!(url = check.url(), "human check on");
        Ok(Some(check))
    }

    fn cors(&self) -> Result<CorsLayer, ServiceError> {
        let origin = if self.cors_origins.iter().any(|o| o.trim() == "*") {
            AllowOrigin::any()
        } else {
            let list = self
                .cors_origins
                .iter()
                .filter(|o| !o.trim().is_empty())
                .map(|o| {
                    HeaderValue::from_str(o.trim()).map_err(|_| {
                        ServiceError::Config(format!(
                            "CORS origin {o:?} is not a valid header value"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            AllowOrigin::list(list)
        };
        let header = HeaderName::from_static;
        Ok(CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([Method::POST, Method::OPTIONS])
            .allow_headers([
                header("content-type"),
                header("x-grpc-web"),
                header("x-user-agent"),
                header("grpc-timeout"),
            ])
            .expose_headers([
                header("grpc-status"),
                header("grpc-message"),
                header("grpc-status-details-bin"),
            ])
            .max_age(Duration::from_secs(24 * 3600)))
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServiceError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServiceError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServiceError::Bind { addr, source })?;
    Ok((listener, local))
}

/// The entry point: [`Application::build`].
pub struct Application;

impl Application {
    /// Binds both listeners first (a port conflict fails fast), then checks the configuration
    /// and connects to NATS (creating the stream and KV buckets when missing).
    pub async fn build(config: Config) -> Result<App, ServiceError> {
        let (listener, local_addr) = bind(config.listen_addr).await?;
        let (operator_listener, operator_addr) = bind(config.operator_addr).await?;
        let admin_addr = config.admin.admin_addr;
        let admin = svc::Admin::open(admin_addr, config.shared_admin.clone(), "signup")
            .await
            .map_err(|source| ServiceError::Bind {
                addr: admin_addr,
                source,
            })?;
        let plan_file = config
            .plans_file
            .as_deref()
            .map(plans::PlanCatalogue::load)
            .transpose()
            .map_err(|e| ServiceError::Config(e.to_string()))?;
        let catalog = config.catalog(plan_file.as_ref())?;
        let cors = config.cors()?;
        let human_check = config.human_check()?;
        let config_error = |e: &dyn std::fmt::Display| ServiceError::Config(e.to_string());
        // Checked now so a bad certificate stops the start, not the first call.
        config
            .grpc
            .builder("signup")
            .map_err(|e| config_error(&e))?;
        let token = match config.vault_token.clone() {
            Some(t) => t,
            None => svc::secret::load(
                "the signup's vault token",
                "TENANTRY_SIGNUP_VAULT_TOKEN",
                config.vault_token_file.as_deref(),
            )
            .map_err(|e| config_error(&e))?
            .ok_or_else(|| {
                ServiceError::Config(
                    "the vault token is missing: set TENANTRY_SIGNUP_VAULT_TOKEN or --vault-token-file"
                        .into(),
                )
            })?,
        };
        let client_tls = config.client_tls.load().map_err(|e| config_error(&e))?;
        let vault_endpoint = client_tls
            .endpoint(&config.vault_endpoint)
            .map_err(|e| config_error(&e))?;
        let vault = vault_client::VaultClient::from_endpoint(vault_endpoint, &token)
            .map_err(|e| config_error(&e))?;
        let vault_probe = vault.clone();
        let operators = match config.operator_auth.clone() {
            Some(o) => o,
            None => config.operators.load().map_err(|e| config_error(&e))?,
        };
        let store_config = config.nats.store_config().map_err(|e| config_error(&e))?;
        let store = EventStore::connect(&store_config).await?;
        if let Some(c) = &plan_file {
            plans::agree(&store, c, "signup")
                .await
                .map_err(|e| ServiceError::Config(e.to_string()))?;
        }
        let claims = Claims::open_guarded(&store)
            .await?
            .with_grace(Duration::from_secs(
                u64::from(config.subdomain_grace_days) * 86_400,
            ));
        let idempotency = Idempotency::open(
            &store,
            Duration::from_millis(config.idempotency_wait_ms),
            Duration::from_secs(config.idempotency_stale_secs),
            Duration::from_secs(config.idempotency_keep_secs.max(60)),
        )
        .await?;
        // Loaded now, not by the first signup (121k domains: a few milliseconds of work).
        tracing::info!(
            disposable_domains = disposable::listed(),
            "disposable-address list loaded"
        );
        let verification = if config.verify_email {
            let url = match config.smtp_url.clone() {
                Some(u) => u,
                None => svc::secret::load(
                    "the SMTP server URL",
                    "TENANTRY_SMTP_URL",
                    config.smtp_url_file.as_deref(),
                )
                .map_err(|e| config_error(&e))?
                .ok_or_else(|| {
                    ServiceError::Config(
                        "email verification needs an SMTP server: set TENANTRY_SMTP_URL (or --smtp-url-file), or --verify-email=false"
                            .into(),
                    )
                })?,
            };
            let mailer =
                mail::Mailer::new(&url, &config.mail_from).map_err(|e| config_error(&e))?;
            let codes = verify::Verifications::open(
                &store,
                Duration::from_secs(config.verification_ttl_secs.max(1)),
            )
            .await?;
            tracing::info!("email verification on");
            Some(grpc::Verification { codes, mailer })
        } else {
            None
        };
        let window = Duration::from_secs(config.rate_window_secs.max(1));
        let metrics = metrics::SignupMetrics::register(admin.metrics());
        let stop = Shutdown::new();
        let handoffs = handoff::Handoffs::open(&store, vault.clone()).await?;
        let admin_claims = claims.clone();
        let gateway = Gateway::new(
            store.clone(),
            claims,
            idempotency,
            vault,
            Limits {
                per_address: RateLimiter::new(config.rate_per_address, window),
                per_email: RateLimiter::new(config.rate_per_email, window),
                per_email_hour: ratelimit::SuccessBudget::new(
                    config.rate_per_email_hour,
                    Duration::from_secs(3600),
                ),
                checks: RateLimiter::new(config.check_rate_per_address, window),
                streams: StreamSlots::new(config.watch_per_address, config.watch_total),
            },
            SignupSettings {
                catalog: catalog.clone(),
                password_ttl: Duration::from_secs(config.password_ttl_secs),
                sso: config.sso,
                trust_forwarded_for: config.trust_forwarded_for,
                deadline: Duration::from_millis(config.signup_deadline_ms.max(100)),
                metrics: metrics.clone(),
                plan_views: match &plan_file {
                    Some(c) => c.views(),
                    None => proto::v1::ListPlansResponse {
                        version: 0,
                        plans: catalog
                            .plans
                            .iter()
                            .map(|p| proto::v1::PlanView {
                                id: p.to_string(),
                                name: p.to_string(),
                                ..Default::default()
                            })
                            .collect(),
                    },
                },
            },
            verification,
            human_check,
            handoffs,
            stop.clone(),
        );
        if operators.is_empty() {
            tracing::warn!("no operator configured: the TenantAdmin API refuses every call");
        }
        tracing::info!(%local_addr, %operator_addr, tls = config.grpc.tls.enabled(), "signup gateway built");
        Ok(App {
            admin_port: admin,
            probe_store: store.clone(),
            vault: vault_probe,
            listener,
            local_addr,
            operator_listener,
            operator_addr,
            grpc: config.grpc,
            signup: SignupApi::new(Arc::new(gateway), metrics),
            admin: AdminApi::new(store, catalog).with_claims(admin_claims),
            operators,
            cors,
            stop,
        })
    }
}

/// A built gateway: listeners bound, NATS connected; serve it with [`App::run_until_stopped`].
pub struct App {
    admin_port: svc::Admin,
    probe_store: EventStore,
    vault: vault_client::VaultClient,
    listener: TcpListener,
    local_addr: SocketAddr,
    operator_listener: TcpListener,
    operator_addr: SocketAddr,
    grpc: GrpcServerArgs,
    signup: SignupApi,
    admin: AdminApi,
    operators: OperatorAuth,
    cors: CorsLayer,
    /// Internal stop signal: ends the servers and every open `WatchSignup` stream (which
    /// would otherwise hold a graceful shutdown open forever).
    stop: Shutdown,
}

impl App {
    /// The bound public address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound operator (TenantAdmin) address.
    pub fn operator_addr(&self) -> SocketAddr {
        self.operator_addr
    }

    /// The bound admin address (`None` when it reports into the embedding process's port).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_port.local_addr()
    }

    /// Serves until `shutdown` completes, then ends open streams, finishes in-flight calls and
    /// returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServiceError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<SignupServiceServer<SignupApi>>().await;
        // Each port advertises only what it serves (v1 and v1alpha reflection), and answers a
        // request it cannot decode INVALID_ARGUMENT or RESOURCE_EXHAUSTED, not INTERNAL.
        let reflection = |service: &str| {
            svc::grpc::reflection(&[proto::FILE_DESCRIPTOR_SET], &[service])
                .map_err(|e| ServiceError::Config(e.to_string()))
        };
        let public_reflection = reflection("tenantry.v1.SignupService")?;
        let operator_reflection = reflection("tenantry.v1.TenantAdmin")?;
        let request_errors = svc::grpc::RequestErrorsLayer::new(&[proto::FILE_DESCRIPTOR_SET]);
        let config_error = |e: svc::TlsError| ServiceError::Config(e.to_string());

        let stop = self.stop.clone();
        let relay = tokio::spawn(async move {
            shutdown.await;
            stop.trigger();
        });
        let mut admin_port = self.admin_port;
        let admin_task = admin_port.serve(self.stop.clone());
        let readiness = admin_port.readiness().clone();
        let probes = [
            admin_port.probe_nats(&self.probe_store, self.stop.clone()),
            admin_port.probe("vault", svc::admin::PROBE_EVERY * 5, self.stop.clone(), {
                let vault = self.vault.clone();
                move || {
                    let vault = vault.clone();
                    async move { vault.health().await }
                }
            }),
        ];
        let observe = svc::observe::ObserveLayer::new("signup", admin_port.metrics());
        let signup =
            SignupServiceServer::new(self.signup).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let public = self
            .grpc
            .builder("signup")
            .map_err(config_error)?
            .accept_http1(true)
            .layer(self.grpc.limit())
            .layer(self.cors)
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(observe.clone())
            .layer(request_errors.clone())
            .add_service(health_service)
            .add_service(public_reflection.v1)
            .add_service(public_reflection.v1alpha)
            .add_service(signup)
            .serve_with_incoming_shutdown(
                svc::grpc::incoming(self.listener),
                self.stop.clone().into_future(),
            );

        let (operator_health, operator_health_service) = tonic_health::server::health_reporter();
        operator_health
            .set_serving::<TenantAdminServer<AdminApi>>()
            .await;
        let admin = InterceptedService::new(
            TenantAdminServer::new(self.admin).max_decoding_message_size(MAX_MESSAGE_BYTES),
            self.operators.interceptor(Role::Admin),
        );
        let operator = self
            .grpc
            .builder("signup operator API")
            .map_err(config_error)?
            .layer(observe)
            .layer(self.grpc.limit())
            .layer(request_errors)
            .add_service(operator_health_service)
            .add_service(operator_reflection.v1)
            .add_service(operator_reflection.v1alpha)
            .add_service(admin)
            .serve_with_incoming_shutdown(
                svc::grpc::incoming(self.operator_listener),
                self.stop.clone().into_future(),
            );
        readiness.set(true);
        let (public, operator) = tokio::join!(public, operator);
        // A server that ended on its own (an error) ends the rest too.
        self.stop.trigger();
        relay.abort();
        for p in probes {
            p.abort();
        }
        let _ = admin_task.await;
        public.map_err(ServiceError::from)?;
        operator.map_err(ServiceError::from)
    }
}

/// Builds and runs the gateway until `shutdown` is triggered.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), ServiceError> {
    Application::build(config)
        .await?
        .run_until_stopped(async move { shutdown.wait().await })
        .await
}
