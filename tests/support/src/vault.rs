//! `spawn_vault()`: the real vault on 127.0.0.1:0 against a fresh PostgreSQL database, with one
//! token per caller of the default ACL and a typed client per caller.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use secrecy::SecretString;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vault::crypto::KEY_LEN;
use vault::{AclConfig, Config, KeyRing, VaultError};
use vault_client::VaultClient;
use zeroize::Zeroizing;

/// The callers of the default ACL; each gets a token.
pub const CALLERS: [&str; 6] = [
    "signup",
    "provisioner",
    "identity",
    "billing",
    "operator",
    "projection",
];

/// A test key: 32 copies of `b`.
pub fn key(b: u8) -> Zeroizing<[u8; KEY_LEN]> {
    Zeroizing::new([b; KEY_LEN])
}

/// A key ring with `active` among `keys` (id, byte).
pub fn ring(active: &str, keys: &[(&str, u8)]) -> KeyRing {
    KeyRing::new(
        active,
        keys.iter().map(|(id, b)| ((*id).to_owned(), key(*b))),
    )
    .expect("valid test key ring")
}

/// The token of `caller` in a test namespace: derived from the namespace, so a restarted vault
/// (or a service in a child process) can be given the same one.
pub fn caller_token(namespace: &str, caller: &str) -> SecretString {
    SecretString::from(format!("test-token-{namespace}-{caller}"))
}

/// A running vault. Dropping it stops it.
pub struct TestVault {
    /// gRPC address.
    pub addr: SocketAddr,
    /// PostgreSQL URL of its database.
    pub database_url: String,
    /// Pool on its database (tables are in schema `vault`).
    pub pool: PgPool,
    /// Event-store namespace.
    pub namespace: String,
    /// The NATS server it publishes to.
    pub nats_url: String,
    /// Token per caller.
    pub tokens: BTreeMap<String, SecretString>,
    /// The registry the vault's metrics are in.
    pub metrics: svc::Metrics,
    /// Admin HTTP address (`/healthz`, `/readyz`, `/metrics`); `None` when a `tune` made it
    /// report into an embedding process's port (`shared_admin`).
    pub admin_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), VaultError>>>,
}

impl TestVault {
    /// `http://<addr>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token of `caller`.
    pub fn token(&self, caller: &str) -> SecretString {
        self.tokens
            .get(caller)
            .unwrap_or_else(|| panic!("no caller {caller}"))
            .clone()
    }

    /// What its `/readyz` answers (see [`crate::services::readyz`]); panics when it has no admin
    /// port of its own.
    pub async fn readyz(&self) -> (u16, String) {
        crate::services::readyz(self.own_admin_addr()).await
    }

    /// What its admin port answers to `GET path` (see [`crate::services::admin_get`]); panics
    /// when it has no admin port of its own.
    pub async fn admin_get(&self, path: &str) -> crate::services::AdminAnswer {
        crate::services::admin_get(self.own_admin_addr(), path).await
    }

    fn own_admin_addr(&self) -> SocketAddr {
        self.admin_addr
            .expect("the vault serves its own admin port (no shared_admin)")
    }

    /// A typed client authenticated as `caller`.
    pub fn client(&self, caller: &str) -> VaultClient {
        VaultClient::connect(self.endpoint(), &self.token(caller)).expect("valid endpoint")
    }

    /// Stops the vault and waits for it.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle
                .await
                .expect("vault task panicked")
                .expect("vault failed");
        }
    }

    /// Stops this vault and starts another on the same database and namespace with `keyring`
    /// (what an operator does to add or remove a key-encryption key).
    pub async fn restart_with(mut self, keyring: KeyRing) -> TestVault {
        self.shutdown().await;
        start_with_acl(
            self.database_url.clone(),
            self.pool.clone(),
            (self.nats_url.clone(), self.namespace.clone()),
            keyring,
            TEST_POOL,
            AclConfig::default_policy(),
        )
        .await
    }
}

impl Drop for TestVault {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Pool size of test vaults: small, since many tests run in parallel on one PostgreSQL server.
const TEST_POOL: u32 = 5;

/// A vault with a one-key ring (`k1`) in a fresh namespace.
pub async fn spawn_vault() -> TestVault {
    spawn_vault_with(ring("k1", &[("k1", 1)])).await
}

/// A vault with a one-key ring in `namespace` (a stack of services sharing one event store).
pub async fn spawn_vault_in(namespace: &str) -> TestVault {
    spawn_vault_on(&crate::nats_url(), namespace).await
}

/// [`spawn_vault_in`] on the NATS server at `nats_url` (a test's own server).
pub async fn spawn_vault_on(nats_url: &str, namespace: &str) -> TestVault {
    spawn_vault_on_pooled(nats_url, namespace, TEST_POOL).await
}

/// Like [`spawn_vault_on`] with `max_connections` database connections (a benchmark gives the
/// vault its production pool).
pub async fn spawn_vault_on_pooled(
    nats_url: &str,
    namespace: &str,
    max_connections: u32,
) -> TestVault {
    crate::init_logging();
    let (database_url, pool) = crate::fresh_database().await.expect("fresh database");
    start_with_acl(
        database_url,
        pool,
        (nats_url.to_owned(), namespace.to_owned()),
        ring("k1", &[("k1", 1)]),
        max_connections,
        AclConfig::default_policy(),
    )
    .await
}

/// [`spawn_vault_on`] creating its stream and buckets with `replicas` copies (a cluster test).
pub async fn spawn_vault_replicated(nats_url: &str, namespace: &str, replicas: usize) -> TestVault {
    crate::init_logging();
    let (database_url, pool) = crate::fresh_database().await.expect("fresh database");
    start_tuned(
        database_url,
        pool,
        (nats_url.to_owned(), namespace.to_owned()),
        ring("k1", &[("k1", 1)]),
        TEST_POOL,
        AclConfig::default_policy(),
        |c| c.nats_replicas = replicas,
    )
    .await
}

/// A vault in `namespace` whose ACL is the default policy with `acl_toml` laid over it (e.g.
/// a caller with fewer grants), tokens as usual.
pub async fn spawn_vault_with_acl(namespace: &str, acl_toml: &str) -> TestVault {
    crate::init_logging();
    let (database_url, pool) = crate::fresh_database().await.expect("fresh database");
    let acl = AclConfig::parse_toml(acl_toml).expect("valid test ACL");
    start_with_acl(
        database_url,
        pool,
        (crate::nats_url(), namespace.to_owned()),
        ring("k1", &[("k1", 1)]),
        TEST_POOL,
        acl,
    )
    .await
}

/// A vault with the given key ring, on a fresh database and namespace.
pub async fn spawn_vault_with(keyring: KeyRing) -> TestVault {
    spawn_vault_pooled(keyring, TEST_POOL).await
}

/// A vault with the given key ring and database pool size, on a fresh database and namespace.
pub async fn spawn_vault_pooled(keyring: KeyRing, max_connections: u32) -> TestVault {
    crate::init_logging();
    let (database_url, pool) = crate::fresh_database().await.expect("fresh database");
    start(
        database_url,
        pool,
        crate::unique_namespace(),
        keyring,
        max_connections,
    )
    .await
}

async fn start(
    database_url: String,
    pool: PgPool,
    namespace: String,
    keyring: KeyRing,
    max_connections: u32,
) -> TestVault {
    start_with_acl(
        database_url,
        pool,
        (crate::nats_url(), namespace),
        keyring,
        max_connections,
        AclConfig::default_policy(),
    )
    .await
}

async fn start_with_acl(
    database_url: String,
    pool: PgPool,
    (nats_url, namespace): (String, String),
    keyring: KeyRing,
    max_connections: u32,
    acl: AclConfig,
) -> TestVault {
    start_tuned(
        database_url,
        pool,
        (nats_url, namespace),
        keyring,
        max_connections,
        acl,
        |_| {},
    )
    .await
}

/// A vault on a fresh database and namespace, its config adjusted by `tune` (e.g. TLS, the
/// replay window, no outbox relay).
pub async fn spawn_vault_tuned(tune: impl FnOnce(&mut Config)) -> TestVault {
    crate::init_logging();
    let (database_url, pool) = crate::fresh_database().await.expect("fresh database");
    start_tuned(
        database_url,
        pool,
        (crate::nats_url(), crate::unique_namespace()),
        ring("k1", &[("k1", 1)]),
        TEST_POOL,
        AclConfig::default_policy(),
        tune,
    )
    .await
}

/// Another vault instance on `other`'s database and namespace (same tokens), tuned by `tune`.
pub async fn spawn_vault_beside(other: &TestVault, tune: impl FnOnce(&mut Config)) -> TestVault {
    start_tuned(
        other.database_url.clone(),
        other.pool.clone(),
        (other.nats_url.clone(), other.namespace.clone()),
        ring("k1", &[("k1", 1)]),
        TEST_POOL,
        AclConfig::default_policy(),
        tune,
    )
    .await
}

async fn start_tuned(
    database_url: String,
    pool: PgPool,
    (nats_url, namespace): (String, String),
    keyring: KeyRing,
    max_connections: u32,
    mut acl: AclConfig,
    tune: impl FnOnce(&mut Config),
) -> TestVault {
    let mut tokens = BTreeMap::new();
    for caller in CALLERS {
        let t = caller_token(&namespace, caller);
        acl = acl.with_token(caller, &t);
        tokens.insert(caller.to_owned(), t);
    }
    let mut config = Config::new(
        SecretString::from(database_url.clone()),
        nats_url.clone(),
        keyring,
        acl,
    );
    config.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.namespace = namespace.clone();
    config.database_max_connections = max_connections;
    // Tests look at events right after a change; a short poll keeps a second instance's relay
    // (which no commit of its own wakes) quick too.
    config.outbox_poll_interval = std::time::Duration::from_millis(50);
    tune(&mut config);
    let app = vault::Application::build(config)
        .await
        .expect("vault builds");
    let metrics = app.metrics().clone();
    let addr = app.local_addr();
    let admin_addr = app.admin_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestVault {
        addr,
        database_url,
        pool,
        namespace,
        nats_url,
        tokens,
        metrics,
        admin_addr,
        stop: Some(stop),
        handle: Some(handle),
    }
}
