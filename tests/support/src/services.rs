//! The signup gateway and the projection on 127.0.0.1:0, for tests that need them as a client
//! would see them, and [`readyz`] / [`admin_get`] for their admin ports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use projection::{ConsumerStats, Store};
use proto::v1 as pb;
use secrecy::SecretString;
use svc::{NatsArgs, OperatorAuth, Role, Shutdown};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    /// Admin HTTP address (`/healthz`, `/readyz`, `/metrics`).
    pub admin_addr: SocketAddr,
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

    /// What its `/readyz` answers (see [`readyz`]).
    pub async fn readyz(&self) -> (u16, String) {
        readyz(self.admin_addr).await
    }

    /// What its admin port answers to `GET path` (see [`admin_get`]).
    pub async fn admin_get(&self, path: &str) -> AdminAnswer {
        admin_get(self.admin_addr, path).await
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
/// adjusts the config (admin tokens, limits, CORS) before it is built. Its admin port is its own
/// (127.0.0.1:0 unless `tweak` says otherwise): a `tweak` that sets `shared_admin` panics here.
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
    let admin_addr = app
        .admin_addr()
        .expect("spawn_signup serves the gateway's own admin port (no shared_admin)");
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
        admin_addr,
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
    /// Admin HTTP address (`/healthz`, `/readyz`, `/metrics`); `None` when its config reports
    /// into an embedding process's port (`shared_admin`).
    pub admin_addr: Option<SocketAddr>,
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
    let admin_addr = app.admin_addr();
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
        admin_addr,
        stop: Some(stop),
        handle: Some(handle),
    }
}

/// How long [`admin_get`] waits for an answer.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What an admin port answered (see [`admin_get`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAnswer {
    /// HTTP status; 0 when there was no HTTP answer (connection refused, no answer within 5 s,
    /// not HTTP): `body` then says why.
    pub status: u16,
    /// The `content-type` header (empty when there was none).
    pub content_type: String,
    /// The body, as (lossy) UTF-8.
    pub body: String,
}

/// `GET http://<addr><path>` on a service's admin port (`/healthz`, `/readyz`, `/metrics`),
/// with a 5 s bound. Never fails: a port that does not answer gives status 0 and the reason
/// in the body, so tests can poll a service that is starting, stopping or gone.
///
/// A plain HTTP/1.0 request on a fresh connection (the admin port closes it after the answer),
/// so testkit needs no HTTP client.
pub async fn admin_get(addr: SocketAddr, path: &str) -> AdminAnswer {
    let failed = |why: String| AdminAnswer {
        status: 0,
        content_type: String::new(),
        body: why,
    };
    match tokio::time::timeout(ADMIN_TIMEOUT, http_get(addr, path)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => failed(format!("GET http://{addr}{path}: {e}")),
        Err(_) => failed(format!(
            "GET http://{addr}{path}: no answer within {ADMIN_TIMEOUT:?}"
        )),
    }
}

/// What `GET http://<addr>/readyz` answers: `(200, "ready\n")`, or
/// `(503, "not ready: <part> (<why>), …\n")` naming each part that is not ready (`nats`,
/// `vault`, `postgres`, …); `(0, <why>)` when the port does not answer (see [`admin_get`]).
pub async fn readyz(addr: SocketAddr) -> (u16, String) {
    let answer = admin_get(addr, "/readyz").await;
    (answer.status, answer.body)
}

async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<AdminAnswer> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("an answer without a header end"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| invalid("an answer without an HTTP status line"))?;
    let content_type = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default();
    Ok(AdminAnswer {
        status,
        content_type,
        body: body.to_owned(),
    })
}
