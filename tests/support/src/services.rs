//! The signup gateway and the projection on 127.0.0.1:0, for tests that need them as a client
//! would see them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use projection::{ConsumerStats, Store};
use proto::v1 as pb;
use secrecy::SecretString;
use svc::{NatsArgs, OperatorAuth, Role, Shutdown};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::TestVault;

/// The admin operator's token in every test stack (operator `test-admin`).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// The read-only operator's token in every test stack (operator `test-reader`).
pub const READER_TOKEN: &str = "test-reader-token-0123456789";

/// Operators `test-admin` ([`ADMIN_TOKEN`], admin) and `test-reader` ([`READER_TOKEN`], reader).
pub fn test_operators() -> OperatorAuth {
    OperatorAuth::from_tokens(&[
        ("test-admin", Role::Admin, &SecretString::from(ADMIN_TOKEN)),
        (
            "test-reader",
            Role::Reader,
            &SecretString::from(READER_TOKEN),
        ),
    ])
}

/// Sends `authorization: Bearer <token>` on every call.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::AsciiMetadataValue);

impl Bearer {
    /// For `token`.
    pub fn new(token: &str) -> Self {
        Self(
            format!("Bearer {token}")
                .parse()
                .expect("a printable token"),
        )
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A TenantDirectory client with a bearer token.
pub type DirectoryClient = pb::tenant_directory_client::TenantDirectoryClient<
    tonic::service::interceptor::InterceptedService<Channel, Bearer>,
>;

/// A running signup gateway. Dropping it stops it.
pub struct TestSignup {
    /// Public gRPC address (SignupService, health, reflection, grpc-web).
    pub addr: SocketAddr,
    /// Operator gRPC address (TenantAdmin).
    pub operator_addr: SocketAddr,
    stop: Shutdown,
}

impl TestSignup {
    /// `http://<addr>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://<operator_addr>`.
    pub fn operator_endpoint(&self) -> String {
        format!("http://{}", self.operator_addr)
    }

    /// Stops it.
    pub fn stop(&self) {
        self.stop.trigger();
    }
}

impl Drop for TestSignup {
    fn drop(&mut self) {
        self.stop.trigger();
    }
}

/// The signup gateway in `vault`'s namespace, calling `vault` as its `signup` caller; `tweak`
/// adjusts the config (admin tokens, limits, CORS) before it is built.
pub async fn spawn_signup(
    vault: &TestVault,
    tweak: impl FnOnce(&mut signup::Config),
) -> TestSignup {
    let mut config = signup::Config::new(
        NatsArgs::local(vault.nats_url.clone(), vault.namespace.clone()),
        vault.endpoint(),
        vault.token("signup"),
    );
    config.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.operator_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    // Most tests run no identity service: the signup ends with the site (tests that run one
    // turn this on).
    config.sso = false;
    tweak(&mut config);
    let app = signup::Application::build(config)
        .await
        .expect("signup builds");
    let addr = app.local_addr();
    let operator_addr = app.operator_addr();
    let stop = Shutdown::new();
    let wait = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = app
            .run_until_stopped(async move { wait.wait().await })
            .await
        {
            eprintln!("signup stopped with an error: {e}");
        }
    });
    TestSignup {
        addr,
        operator_addr,
        stop,
    }
}

/// A running projection. Dropping it stops it.
pub struct TestProjection {
    /// gRPC address.
    pub addr: SocketAddr,
    /// The read-model store.
    pub store: Store,
    /// Consumer counters.
    pub stats: Arc<ConsumerStats>,
    /// Database URL.
    pub database_url: String,
    /// What its `/readyz` would answer.
    pub readiness: svc::Readiness,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), projection::Error>>>,
}

impl TestProjection {
    /// `http://<addr>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `TenantDirectory` client authenticated as the reader operator ([`READER_TOKEN`]).
    pub async fn client(&self) -> DirectoryClient {
        let channel = Channel::from_shared(self.endpoint())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to projection");
        pb::tenant_directory_client::TenantDirectoryClient::with_interceptor(
            channel,
            Bearer::new(READER_TOKEN),
        )
    }

    /// Stops it and waits.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("projection task").expect("projection run");
        }
    }

    /// Waits until the active generation has applied `sequence`.
    pub async fn caught_up(&self, sequence: u64) {
        self.store
            .wait_for(sequence, Duration::from_secs(120))
            .await
            .expect("projection catches up");
    }
}

impl Drop for TestProjection {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A projection config for `namespace` on a fresh database (port 0, small pool, 1 s ack wait),
/// accepting the [`test_operators`].
pub async fn projection_config(namespace: &str) -> projection::Config {
    let (url, _pool) = crate::fresh_database().await.expect("fresh database");
    let mut c = projection::Config::new(url, crate::nats_url());
    c.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    c.nats.namespace = namespace.to_owned();
    c.operator_auth = Some(test_operators());
    c.database_max_connections = 5;
    c.ack_wait_ms = 1_000;
    c
}

/// The projection on port 0 with `config`.
pub async fn spawn_projection(config: projection::Config) -> TestProjection {
    let database_url = config.database.database_url.clone();
    let app = projection::Application::build(config)
        .await
        .expect("projection builds");
    let addr = app.local_addr();
    let store = app.store().clone();
    let stats = app.stats();
    let readiness = app.readiness();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestProjection {
        addr,
        store,
        stats,
        database_url,
        readiness,
        stop: Some(stop),
        handle: Some(handle),
    }
}
