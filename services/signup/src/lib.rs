//! The Tenantry signup gateway: the public gRPC API (`SignupService`: `Signup`, `WatchSignup`,
//! `CheckSubdomain`) and the operator API (`TenantAdmin`), with gRPC health, reflection and
//! grpc-web (HTTP/1.1, CORS) on one port.
//!
//! Entry points: [`Application::build`] then [`App::run_until_stopped`], or [`run`].

#![warn(missing_docs)]

pub mod admin;
pub mod claims;
pub mod error;
pub mod grpc;
pub mod idempotency;
pub mod ratelimit;
pub mod validate;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eventstore::{EventStore, StoreConfig};
use http::{HeaderName, HeaderValue, Method};
use proto::v1::signup_service_server::SignupServiceServer;
use proto::v1::tenant_admin_server::TenantAdminServer;
use secrecy::SecretString;
use svc::{NatsArgs, Shutdown};
use tenancy::{PlanId, Region};
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use error::{ServiceError, SignupError};

use crate::admin::AdminApi;
use crate::claims::Claims;
use crate::grpc::{Gateway, SignupApi, SignupSettings};
use crate::idempotency::Idempotency;
use crate::ratelimit::RateLimiter;
use crate::validate::Catalog;
use svc::TokenAuth;

/// Default gRPC listen address.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:50051";
/// Default vault endpoint.
pub const DEFAULT_VAULT_ENDPOINT: &str = "http://127.0.0.1:50053";
/// Largest request message accepted, in bytes: a signup is well under 2 KiB.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

fn secret(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(s.to_owned()))
}

/// Everything the signup gateway needs. Every flag has an env fallback; `Debug` redacts tokens.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "signup", about = "Tenantry signup gateway")]
pub struct Config {
    /// gRPC (and grpc-web) listen address; port 0 picks a free port.
    #[arg(long = "listen-addr", env = "TENANTRY_SIGNUP_ADDR", default_value = DEFAULT_LISTEN_ADDR)]
    pub listen_addr: SocketAddr,
    /// NATS server and namespace.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// The vault's gRPC endpoint.
    #[arg(long = "vault-endpoint", env = "TENANTRY_VAULT_ENDPOINT", default_value = DEFAULT_VAULT_ENDPOINT)]
    pub vault_endpoint: String,
    /// Bearer token of the `signup` caller at the vault.
    #[arg(long = "vault-token", env = "TENANTRY_SIGNUP_VAULT_TOKEN", value_parser = secret, hide_env_values = true)]
    pub vault_token: Option<SecretString>,
    /// Bearer tokens accepted by the TenantAdmin API (comma-separated); none disables it.
    #[arg(long = "admin-token", env = "TENANTRY_ADMIN_TOKEN", value_parser = secret, value_delimiter = ',', hide_env_values = true)]
    pub admin_tokens: Vec<SecretString>,
    /// Plan ids a signup may choose.
    #[arg(
        long = "plans",
        env = "TENANTRY_PLANS",
        value_delimiter = ',',
        default_value = "starter,business,enterprise"
    )]
    pub plans: Vec<String>,
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
    /// Longest a Signup call works before it answers UNAVAILABLE (retry with the same key).
    #[arg(
        long = "signup-deadline-ms",
        env = "TENANTRY_SIGNUP_DEADLINE_MS",
        default_value_t = 10_000
    )]
    pub signup_deadline_ms: u64,
}

impl Config {
    /// The defaults, with the essentials given (for tests and `tenantry dev`).
    pub fn new(
        nats: NatsArgs,
        vault_endpoint: impl Into<String>,
        vault_token: SecretString,
    ) -> Self {
        Self {
            listen_addr: DEFAULT_LISTEN_ADDR
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 50051))),
            nats,
            vault_endpoint: vault_endpoint.into(),
            vault_token: Some(vault_token),
            admin_tokens: Vec::new(),
            plans: vec!["starter".into(), "business".into(), "enterprise".into()],
            regions: vec!["eu".into()],
            rate_per_address: 20,
            rate_per_email: 5,
            rate_window_secs: 60,
            trust_forwarded_for: false,
            cors_origins: Vec::new(),
            password_ttl_secs: 3600,
            idempotency_wait_ms: 10_000,
            idempotency_stale_secs: 15,
            idempotency_keep_secs: 86_400,
            signup_deadline_ms: 10_000,
        }
    }

    fn catalog(&self) -> Result<Catalog, ServiceError> {
        let plans = self
            .plans
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
                header("authorization"),
                header(admin::OPERATOR_HEADER),
            ])
            .expose_headers([
                header("grpc-status"),
                header("grpc-message"),
                header("grpc-status-details-bin"),
            ])
            .max_age(Duration::from_secs(24 * 3600)))
    }
}

/// The entry point: [`Application::build`].
pub struct Application;

impl Application {
    /// Binds the listener first (a port conflict fails fast), then checks the configuration
    /// and connects to NATS (creating the stream and KV buckets when missing).
    pub async fn build(config: Config) -> Result<App, ServiceError> {
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| ServiceError::Bind {
                addr: config.listen_addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ServiceError::Bind {
            addr: config.listen_addr,
            source,
        })?;
        let catalog = config.catalog()?;
        let cors = config.cors()?;
        let token = config.vault_token.clone().ok_or_else(|| {
            ServiceError::Config(
                "the vault token is missing: set --vault-token or TENANTRY_SIGNUP_VAULT_TOKEN"
                    .into(),
            )
        })?;
        let vault = vault_client::VaultClient::connect(config.vault_endpoint.clone(), &token)
            .map_err(|e| ServiceError::Config(e.to_string()))?;
        let store = EventStore::connect(
            &StoreConfig::new(config.nats.nats_url.clone())
                .with_namespace(config.nats.namespace.clone()),
        )
        .await?;
        let claims = Claims::open(&store).await?;
        let idempotency = Idempotency::open(
            &store,
            Duration::from_millis(config.idempotency_wait_ms),
            Duration::from_secs(config.idempotency_stale_secs),
            Duration::from_secs(config.idempotency_keep_secs.max(60)),
        )
        .await?;
        let window = Duration::from_secs(config.rate_window_secs.max(1));
        let stop = Shutdown::new();
        let gateway = Gateway::new(
            store.clone(),
            claims,
            idempotency,
            vault,
            RateLimiter::new(config.rate_per_address, window),
            RateLimiter::new(config.rate_per_email, window),
            SignupSettings {
                catalog: catalog.clone(),
                password_ttl: Duration::from_secs(config.password_ttl_secs),
                trust_forwarded_for: config.trust_forwarded_for,
                deadline: Duration::from_millis(config.signup_deadline_ms.max(100)),
            },
            stop.clone(),
        );
        if config.admin_tokens.is_empty() {
            tracing::warn!("no admin token configured: the TenantAdmin API refuses every call");
        }
        tracing::info!(%local_addr, "signup gateway built");
        Ok(App {
            listener,
            local_addr,
            signup: SignupApi::new(Arc::new(gateway)),
            admin: AdminApi::new(store, catalog),
            auth: TokenAuth::new(&config.admin_tokens),
            cors,
            stop,
        })
    }
}

/// A built gateway: listener bound, NATS connected; serve it with [`App::run_until_stopped`].
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    signup: SignupApi,
    admin: AdminApi,
    auth: TokenAuth,
    cors: CorsLayer,
    /// Internal stop signal: ends the server and every open `WatchSignup` stream (which
    /// would otherwise hold a graceful shutdown open forever).
    stop: Shutdown,
}

impl App {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then ends open streams, finishes in-flight calls and
    /// returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServiceError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<SignupServiceServer<SignupApi>>().await;
        health.set_serving::<TenantAdminServer<AdminApi>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| ServiceError::Config(format!("cannot build gRPC reflection: {e}")))?;

        let stop = self.stop.clone();
        let relay = tokio::spawn(async move {
            shutdown.await;
            stop.trigger();
        });
        let auth = self.auth.clone();
        let signup =
            SignupServiceServer::new(self.signup).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let admin = InterceptedService::new(
            TenantAdminServer::new(self.admin).max_decoding_message_size(MAX_MESSAGE_BYTES),
            move |r| auth.check(r),
        );
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        let stop = self.stop.clone();
        let served = tonic::transport::Server::builder()
            .accept_http1(true)
            .layer(self.cors)
            .layer(tonic_web::GrpcWebLayer::new())
            .add_service(health_service)
            .add_service(reflection)
            .add_service(signup)
            .add_service(admin)
            .serve_with_incoming_shutdown(incoming, async move { stop.wait().await })
            .await;
        relay.abort();
        served.map_err(ServiceError::from)
    }
}

/// Builds and runs the gateway until `shutdown` is triggered.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), ServiceError> {
    Application::build(config)
        .await?
        .run_until_stopped(async move { shutdown.wait().await })
        .await
}
