//! The Tenantry credential vault.
//!
//! Tenant credentials (API key/secret, site admin password, database root credentials, the
//! owner's password in flight) are stored envelope-encrypted in PostgreSQL: a fresh AES-256-GCM
//! data key per secret, wrapped by a key-encryption key from a key ring, with associated data that
//! binds each ciphertext to (tenant, name, version). Callers authenticate with per-service bearer
//! tokens; an ACL says which service may do what to which kind of secret; every call is audited.
//! Secret changes are announced as events on `tenantry.vault.<tenant>` (names and versions only),
//! through an outbox written in the change's transaction and relayed by [`relay`].
//!
//! Entry points: [`Application::build`] + [`Application::run_until_stopped`], or [`run`].

pub mod acl;
pub mod cli;
pub mod crypto;
pub mod error;
pub mod grpc;
pub mod names;
pub mod relay;
pub mod service;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eventstore::{EventStore, NatsAuth, NatsTls, StoreConfig};
use proto::v1::vault_server::VaultServer;
use secrecy::SecretString;
use tokio::net::TcpListener;

pub use acl::{AclConfig, Grant, Op};
pub use crypto::KeyRing;
pub use error::VaultError;

use crate::acl::Acl;
use crate::grpc::VaultService;
use crate::service::{Limits, VaultCore};
use crate::store::Store;

/// Everything the vault needs to run. `Debug` prints no secret (the URL and keys are redacted).
#[derive(Debug, Clone)]
pub struct Config {
    /// gRPC listen address; port 0 picks a free port.
    pub listen_addr: SocketAddr,
    /// PostgreSQL URL (it may hold a password, hence secret).
    pub database_url: SecretString,
    /// Schema that holds the vault's tables and migration history.
    pub database_schema: String,
    /// Connection pool size.
    pub database_max_connections: u32,
    /// NATS server for the event store.
    pub nats_url: String,
    /// Event-store namespace ("" in production; tests isolate themselves with one).
    pub namespace: String,
    /// Copies of the event stream and buckets it creates (`--nats-replicas`).
    pub nats_replicas: usize,
    /// NATS credentials (user/password, token, nkey or `.creds` file).
    pub nats_auth: NatsAuth,
    /// NATS TLS (CA, client certificate).
    pub nats_tls: NatsTls,
    /// TLS (and mTLS when a client CA is set), concurrency limits and request timeout of the
    /// gRPC listener.
    pub grpc: svc::GrpcServerArgs,
    /// The admin port (`/healthz`, `/readyz`, `/metrics`); port 0 picks a free port.
    pub admin_addr: SocketAddr,
    /// The embedding process's admin port to report into instead (`tenantry dev`).
    pub shared_admin: Option<svc::AdminHandle>,
    /// The key-encryption keys.
    pub keyring: KeyRing,
    /// Callers, their token hashes and grants.
    pub acl: AclConfig,
    /// TTL of a one-time secret whose request says 0.
    pub default_one_time_ttl: Duration,
    /// Longest TTL a one-time secret may ask for.
    pub max_one_time_ttl: Duration,
    /// How often expired one-time secrets are purged.
    pub purge_interval: Duration,
    /// Data keys re-wrapped per batch by Rotate.
    pub rotate_batch_size: u32,
    /// Largest secret value accepted, in bytes.
    pub max_value_bytes: usize,
    /// How long a one-time secret taken with a request id stays replayable for that request.
    pub take_replay_window: Duration,
    /// How often the outbox relay polls when nothing woke it.
    pub outbox_poll_interval: Duration,
    /// Whether this instance runs an outbox relay (every instance should; tests turn it off to
    /// leave a backlog).
    pub outbox_relay: bool,
}

impl Config {
    /// A config with defaults for everything but the essentials.
    pub fn new(
        database_url: SecretString,
        nats_url: impl Into<String>,
        keyring: KeyRing,
        acl: AclConfig,
    ) -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50053)),
            database_url,
            database_schema: "vault".into(),
            database_max_connections: 20,
            nats_url: nats_url.into(),
            namespace: String::new(),
            nats_replicas: 1,
            nats_auth: NatsAuth::None,
            nats_tls: NatsTls::default(),
            grpc: svc::GrpcServerArgs::default(),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            shared_admin: None,
            keyring,
            acl,
            default_one_time_ttl: Duration::from_secs(24 * 3600),
            max_one_time_ttl: Duration::from_secs(7 * 24 * 3600),
            purge_interval: Duration::from_secs(60),
            rotate_batch_size: 500,
            max_value_bytes: 64 * 1024,
            take_replay_window: Duration::from_secs(300),
            outbox_poll_interval: Duration::from_secs(1),
            outbox_relay: true,
        }
    }
}

/// A built vault: listener bound, database migrated, event store connected.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    server: tonic::transport::Server,
    grpc: svc::GrpcServerArgs,
    core: Arc<VaultCore>,
    purge_interval: Duration,
    relay: Option<relay::RelaySettings>,
    calls: grpc::CallCounter,
    denials: grpc::CallCounter,
    admin: svc::Admin,
}

impl Application {
    /// Binds the listener first (so a port conflict fails fast), then connects to PostgreSQL (running
    /// migrations) and NATS.
    pub async fn build(config: Config) -> Result<Self, VaultError> {
        let listener = TcpListener::bind(config.listen_addr).await.map_err(|e| {
            anyhow::Error::new(e).context(format!("cannot listen on {}", config.listen_addr))
        })?;
        let local_addr = listener.local_addr().map_err(anyhow::Error::new)?;
        let admin = svc::Admin::open(config.admin_addr, config.shared_admin.clone(), "vault")
            .await
            .map_err(|e| {
                anyhow::Error::new(e).context(format!("cannot listen on {}", config.admin_addr))
            })?;
        let acl = Acl::from_config(&config.acl)
            .map_err(|e| VaultError::InvalidArgument(e.to_string()))?;
        let store = Store::connect(
            &config.database_url,
            &config.database_schema,
            config.database_max_connections,
        )
        .await?;
        // Loaded now so a bad certificate fails the start, not the first connection.
        let server = config
            .grpc
            .builder("vault")
            .map_err(|e| anyhow::Error::new(e).context("vault gRPC listener"))?;
        let events = EventStore::connect(
            &StoreConfig::new(config.nats_url.clone())
                .with_namespace(config.namespace.clone())
                .with_replicas(config.nats_replicas)
                .with_security(config.nats_auth.clone(), config.nats_tls.clone()),
        )
        .await
        .map_err(|e| VaultError::Events(e.to_string()))?;
        let limits = Limits {
            default_one_time_ttl: config.default_one_time_ttl,
            max_one_time_ttl: config.max_one_time_ttl,
            max_value_bytes: config.max_value_bytes,
            rotate_batch_size: config.rotate_batch_size.max(1),
            take_replay_window: config.take_replay_window,
        };
        tracing::info!(%local_addr, active_kek = config.keyring.active_id(), "vault built");
        let core = Arc::new(VaultCore::new(store, config.keyring, acl, events, limits));
        Ok(Self {
            listener,
            local_addr,
            server,
            grpc: config.grpc.clone(),
            core,
            purge_interval: config.purge_interval,
            relay: config.outbox_relay.then(|| relay::RelaySettings {
                poll_interval: config.outbox_poll_interval,
                ..relay::RelaySettings::default()
            }),
            calls: grpc::CallCounter::default(),
            denials: grpc::CallCounter::default(),
            admin,
        }
        .with_metrics())
    }

    fn with_metrics(self) -> Self {
        let metrics = self.admin.metrics();
        metrics.register(
            "vault_calls",
            "Vault calls by operation and outcome (allowed, denied, unauthenticated, not_found, error)",
            self.calls.clone(),
        );
        metrics.register(
            "vault_denials",
            "Vault calls refused by the ACL or for a bad token, by caller and operation",
            self.denials.clone(),
        );
        self
    }

    /// The registry the vault reports into (rendered at its admin port's `/metrics`).
    pub fn metrics(&self) -> &svc::Metrics {
        self.admin.metrics()
    }

    /// The bound admin address (`None` when it reports into the embedding process's port).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.local_addr()
    }

    /// The bound gRPC address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then finishes in-flight calls and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), VaultError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<VaultServer<VaultService>>().await;
        // Reflection of what this port serves only, and INVALID_ARGUMENT or RESOURCE_EXHAUSTED
        // (not INTERNAL) for a request that does not decode.
        let reflection =
            svc::grpc::reflection(&[proto::FILE_DESCRIPTOR_SET], &["tenantry.v1.Vault"])
                .map_err(|e| anyhow::Error::new(e).context("building gRPC reflection"))?;
        let request_errors = svc::grpc::RequestErrorsLayer::new(&[proto::FILE_DESCRIPTOR_SET]);

        // Tells the purge loop to stop when the server does; a watch because the loop only needs
        // the latest state, not every message.
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let core = Arc::clone(&self.core);
        let interval = self.purge_interval;
        let purger = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = tick.tick() => match core.purge_expired().await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(purged = n, "purged expired one-time secrets"),
                        Err(e) => tracing::warn!(error = %e, "cannot purge expired one-time secrets"),
                    },
                    _ = stop_rx.changed() => break,
                }
            }
        });

        let relay = self.relay.clone().map(|settings| {
            tokio::spawn(relay::run(
                Arc::clone(&self.core),
                settings,
                stop_tx.subscribe(),
            ))
        });

        let mut admin = self.admin;
        // One signal for the server, the admin port and the probes, fired by the caller's
        // future: readiness drops as soon as shutdown begins, while calls drain.
        let stop = svc::Shutdown::new();
        let relay_stop = stop.clone();
        let relay_signal = tokio::spawn(async move {
            shutdown.await;
            relay_stop.trigger();
        });
        let admin_task = admin.serve(stop.clone());
        let readiness = admin.readiness().clone();
        let probes = [
            admin.probe_nats(&self.core.events, stop.clone()),
            admin.probe("postgres", svc::admin::PROBE_EVERY, stop.clone(), {
                let core = Arc::clone(&self.core);
                move || {
                    let core = Arc::clone(&core);
                    async move { core.store.ping().await }
                }
            }),
        ];
        readiness.set(true);
        let observe = svc::observe::ObserveLayer::new("vault", admin.metrics());
        let server = self.server;
        let served = server
            .layer(observe)
            .layer(self.grpc.limit())
            .layer(request_errors)
            .add_service(health_service)
            .add_service(reflection.v1)
            .add_service(reflection.v1alpha)
            .add_service(VaultServer::new(VaultService::new(
                Arc::clone(&self.core),
                self.calls.clone(),
                self.denials.clone(),
            )))
            .serve_with_incoming_shutdown(
                svc::grpc::incoming(self.listener),
                stop.clone().into_future(),
            )
            .await;
        let _ = stop_tx.send(true);
        stop.trigger();
        relay_signal.abort();
        for p in probes {
            p.abort();
        }
        let _ = admin_task.await;
        let _ = purger.await;
        if let Some(relay) = relay {
            let _ = relay.await;
        }
        served.map_err(|e| {
            VaultError::Unexpected(anyhow::Error::new(e).context("gRPC server failed"))
        })
    }
}

/// Builds and runs the vault until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), VaultError> {
    Application::build(config)
        .await?
        .run_until_stopped(shutdown)
        .await
}
