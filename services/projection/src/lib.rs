//! The tenant projection: a PostgreSQL read model of every tenant (`tenants`) and of every
//! event, human-readable (`tenant_history`), fed by a durable JetStream consumer over
//! `tenantry.>`, served by the gRPC `TenantDirectory` API, and rebuildable from the log into a
//! fresh generation that is swapped in when it has caught up (blue/green), without stopping
//! queries.
//!
//! Entry points: [`Application::build`] + [`Application::run_until_stopped`], or [`run`].
//! `tenantctl replay` asks a running projection to rebuild through `ProjectionAdmin.Rebuild`.

#![warn(missing_docs)]

pub mod admin;
pub mod apply;
pub mod behind;
pub mod consumer;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod rebuild;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eventstore::EventStore;
use proto::v1::projection_admin_server::ProjectionAdminServer;
use proto::v1::tenant_directory_server::TenantDirectoryServer;
use svc::{
    DatabaseArgs, GrpcServerArgs, NatsArgs, OperatorArgs, OperatorAuth, Readiness, Role, Shutdown,
};
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

pub use consumer::{ConsumerStats, DEFAULT_DURABLE};
pub use error::Error;
pub use rebuild::{Phase, RebuildOptions, RebuildProgress, RebuildReport, rebuild};
pub use store::{Generation, Store};

/// The projection's configuration: flags with env fallbacks, local defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// gRPC listen address of `TenantDirectory` (port 0 picks a free port).
    #[arg(
        long = "listen",
        env = "TENANTRY_PROJECTION_LISTEN",
        default_value = "127.0.0.1:50052"
    )]
    pub listen_addr: SocketAddr,
    /// PostgreSQL.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// NATS and the event-store namespace.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Base schema: control tables here, generations in `<schema>_g<N>`.
    #[arg(
        long = "database-schema",
        env = "TENANTRY_PROJECTION_DB_SCHEMA",
        default_value = "projection"
    )]
    pub database_schema: String,
    /// PostgreSQL pool size.
    #[arg(
        long = "database-max-connections",
        env = "TENANTRY_PROJECTION_DB_MAX_CONNECTIONS",
        default_value_t = 10
    )]
    pub database_max_connections: u32,
    /// Durable consumer name.
    #[arg(long, env = "TENANTRY_PROJECTION_DURABLE", default_value = DEFAULT_DURABLE)]
    pub durable: String,
    /// Redelivery delay of an unacknowledged event, in milliseconds.
    #[arg(
        long,
        env = "TENANTRY_PROJECTION_ACK_WAIT_MS",
        default_value_t = 30_000
    )]
    pub ack_wait_ms: u64,
    /// How long a read with `min_sequence` waits for the projection, in milliseconds.
    #[arg(
        long,
        env = "TENANTRY_PROJECTION_READ_WAIT_MS",
        default_value_t = 5_000
    )]
    pub read_wait_ms: u64,
    /// Serve queries without consuming events (e.g. a read-only replica of the API).
    #[arg(long, env = "TENANTRY_PROJECTION_NO_CONSUMER")]
    pub no_consumer: bool,
    /// TLS, limits and timeout of the listener.
    #[command(flatten)]
    pub grpc: GrpcServerArgs,
    /// The admin port (`/healthz`, `/readyz`, `/metrics`).
    #[command(flatten)]
    pub admin: svc::AdminArgs,
    /// The embedding process's admin port to report into instead (`tenantry dev`).
    #[arg(skip)]
    pub shared_admin: Option<svc::AdminHandle>,
    /// Named operators: readers may query `TenantDirectory`, admins may also rebuild.
    #[command(flatten)]
    pub operators: OperatorArgs,
    /// Operators given directly by an embedding program (tests, `tenantry dev`); when set, the
    /// operators file and `TENANTRY_OPERATORS` are not read.
    #[arg(skip)]
    pub operator_auth: Option<OperatorAuth>,
}

impl Config {
    /// Defaults for everything but where PostgreSQL and NATS are.
    pub fn new(database_url: impl Into<String>, nats_url: impl Into<String>) -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50052)),
            database: DatabaseArgs {
                database_url: database_url.into(),
            },
            nats: NatsArgs::local(nats_url, ""),
            database_schema: "projection".to_owned(),
            database_max_connections: 10,
            durable: DEFAULT_DURABLE.to_owned(),
            ack_wait_ms: 30_000,
            read_wait_ms: 5_000,
            no_consumer: false,
            grpc: GrpcServerArgs::default(),
            admin: svc::AdminArgs {
                admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            },
            shared_admin: None,
            operators: OperatorArgs::default(),
            operator_auth: None,
        }
    }
}

/// A built projection: listener bound, database migrated, event store connected.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    store: Store,
    events: EventStore,
    config: Config,
    operators: OperatorAuth,
    stats: Arc<ConsumerStats>,
    readiness: Readiness,
    gate: behind::Gate,
    admin: svc::Admin,
}

impl Application {
    /// Binds the listener first (a port conflict fails fast), then connects to PostgreSQL
    /// (migrating) and NATS.
    pub async fn build(config: Config) -> Result<Self, Error> {
        let listener = TcpListener::bind(config.listen_addr).await.map_err(|e| {
            anyhow::Error::new(e).context(format!("cannot listen on {}", config.listen_addr))
        })?;
        let local_addr = listener.local_addr().map_err(anyhow::Error::new)?;
        let admin_addr = config.admin.admin_addr;
        let admin = svc::Admin::open(admin_addr, config.shared_admin.clone(), "projection")
            .await
            .map_err(|e| anyhow::Error::new(e).context(format!("cannot listen on {admin_addr}")))?;
        // Checked now so a bad certificate stops the start, not the first call.
        config
            .grpc
            .builder("projection")
            .map_err(anyhow::Error::new)?;
        let operators = match config.operator_auth.clone() {
            Some(o) => o,
            None => config.operators.load().map_err(anyhow::Error::new)?,
        };
        let store_config = config.nats.store_config().map_err(anyhow::Error::new)?;
        let store = Store::connect(
            &config.database.database_url,
            &config.database_schema,
            config.database_max_connections,
        )
        .await?;
        let events = EventStore::connect(&store_config).await?;
        tracing::info!(%local_addr, schema = %config.database_schema, tls = config.grpc.tls.enabled(), "projection built");
        Ok(Self {
            listener,
            local_addr,
            store,
            events,
            config,
            operators,
            stats: Arc::default(),
            readiness: admin.readiness().clone(),
            gate: behind::Gate::default(),
            admin,
        })
    }

    /// The bound gRPC address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The read-model store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The consumer's counters.
    pub fn stats(&self) -> Arc<ConsumerStats> {
        Arc::clone(&self.stats)
    }

    /// Ready once the consumer has subscribed (or at once without a consumer).
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// The registry the projection reports into.
    pub fn metrics(&self) -> &svc::Metrics {
        self.admin.metrics()
    }

    /// The bound admin address (`None` when it reports into the embedding process's port).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.local_addr()
    }

    /// Consumes and serves until `shutdown` completes, then finishes in-flight work.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        // One cloneable signal for the server and the consumer, fired by the caller's future.
        let stop = Shutdown::new();
        let trigger = stop.clone();
        let watcher = tokio::spawn(async move {
            shutdown.await;
            trigger.trigger();
        });
        let mut admin_port = self.admin;
        let admin_task = admin_port.serve(stop.clone());
        let registry = admin_port.metrics().clone();
        let mut background = vec![
            admin_port.probe_nats(&self.events, stop.clone()),
            admin_port.probe("postgres", svc::admin::PROBE_EVERY, stop.clone(), {
                let store = self.store.clone();
                move || {
                    let store = store.clone();
                    async move { store.ping().await }
                }
            }),
            metrics::ProjectionMetrics::register(&registry, &self.stats).watch(
                self.store.clone(),
                self.events.clone(),
                Duration::from_secs(5),
                stop.clone(),
            ),
        ];
        if !self.config.no_consumer {
            background.push(svc::consumers::ConsumerMetrics::new(&registry).watch(
                self.events.clone(),
                &self.config.durable,
                Duration::from_secs(5),
                stop.clone(),
            ));
        }

        // Before the first query is answered and the first event applied: is the database
        // missing events the durable consumer already acknowledged? NATS unreachable now: the
        // consumer checks once it has subscribed.
        let checked = if self.config.no_consumer {
            true
        } else {
            match behind::check_and_mark(
                &self.store,
                &self.events,
                &self.config.durable,
                &self.gate,
            )
            .await
            {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot compare the read model with the log yet");
                    false
                }
            }
        };
        // Every instance (with a consumer or not) follows the database's mark.
        behind::watch(
            self.store.clone(),
            self.gate.clone(),
            &self.readiness,
            Duration::from_secs(2),
            stop.clone(),
        )
        .await;
        let consumer = if self.config.no_consumer {
            self.readiness.set(true);
            None
        } else {
            Some(tokio::spawn(consumer::run(
                consumer::Consumer {
                    store: self.store.clone(),
                    events: self.events.clone(),
                    durable: self.config.durable.clone(),
                    ack_wait: Duration::from_millis(self.config.ack_wait_ms.max(1)),
                    stats: Arc::clone(&self.stats),
                    readiness: self.readiness.clone(),
                    gate: self.gate.clone(),
                    metrics: svc::consumers::ConsumerMetrics::new(&registry),
                },
                checked,
                stop.clone(),
            )))
        };

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<TenantDirectoryServer<grpc::DirectoryService>>()
            .await;
        // Reflection of what this port serves only, and INVALID_ARGUMENT or RESOURCE_EXHAUSTED
        // (not INTERNAL) for a request that does not decode.
        let reflection = svc::grpc::reflection(
            &[proto::FILE_DESCRIPTOR_SET],
            &["tenantry.v1.TenantDirectory", "tenantry.v1.ProjectionAdmin"],
        )
        .map_err(|e| anyhow::Error::new(e).context("building gRPC reflection"))?;
        let request_errors = svc::grpc::RequestErrorsLayer::new(&[proto::FILE_DESCRIPTOR_SET]);
        let changes = grpc::spawn_change_listener(self.store.clone(), stop.clone());
        let service = grpc::DirectoryService::new(
            self.store.clone(),
            Duration::from_millis(self.config.read_wait_ms),
            changes,
            self.gate.clone(),
            stop.clone(),
        );
        if self.operators.is_empty() {
            tracing::warn!(
                "no operator configured: TenantDirectory and ProjectionAdmin refuse every call"
            );
        }
        let admin = ProjectionAdminServer::with_interceptor(
            admin::AdminService::new(self.store.clone(), self.events.clone()),
            self.operators.interceptor(Role::Admin),
        );
        // Every owner's email, name and organisation is behind an operator token.
        let directory = InterceptedService::new(
            TenantDirectoryServer::new(service),
            self.operators.interceptor(Role::Reader),
        );
        let stop_serving = stop.clone();
        let served = self
            .config
            .grpc
            .builder("projection")
            .map_err(anyhow::Error::new)?
            .layer(svc::observe::ObserveLayer::new("projection", &registry))
            .layer(self.config.grpc.limit())
            .layer(request_errors)
            .add_service(health_service)
            .add_service(reflection.v1)
            .add_service(reflection.v1alpha)
            .add_service(directory)
            .add_service(admin)
            .serve_with_incoming_shutdown(svc::grpc::incoming(self.listener), async move {
                stop_serving.wait().await;
            })
            .await;
        // The server also stops if it fails; make sure the consumer does too.
        stop.trigger();
        watcher.abort();
        // Their reads are not bounded by the shutdown (a PostgreSQL that is gone would hold
        // it for the pool's timeout); what they measure no longer matters.
        for task in background {
            task.abort();
        }
        let _ = admin_task.await;
        let consumed = match consumer {
            Some(handle) => handle
                .await
                .map_err(|e| anyhow::Error::new(e).context("projection consumer panicked"))?,
            None => Ok(()),
        };
        served.map_err(|e| anyhow::Error::new(e).context("gRPC server failed"))?;
        consumed
    }
}

/// Builds and runs the projection until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    Application::build(config)
        .await?
        .run_until_stopped(shutdown)
        .await
}
