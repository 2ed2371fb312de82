#![allow(dead_code)] // shared by the test binary and the bench; each uses a different part
//! `spawn_vault()`: the real vault on 127.0.0.1:0 against a fresh PostgreSQL database and an
//! isolated NATS namespace, with one token per default caller and a typed client per caller.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use secrecy::SecretString;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vault::crypto::KEY_LEN;
use vault::{AclConfig, Config, KeyRing, VaultClient, VaultError};
use zeroize::Zeroizing;

/// The callers of the default ACL; each gets a token.
pub const CALLERS: [&str; 5] = [
    "signup",
    "provisioner",
    "identity",
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

/// A running vault.
pub struct TestVault {
    /// gRPC address.
    pub addr: SocketAddr,
    /// PostgreSQL URL of its database.
    pub database_url: String,
    /// Pool on its database (tables are in schema `vault`).
    pub pool: PgPool,
    /// Event-store namespace.
    pub namespace: String,
    /// Token per caller.
    pub tokens: BTreeMap<String, SecretString>,
    /// The registry the vault's metrics are in.
    pub metrics: svc::Metrics,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), VaultError>>>,
}

impl TestVault {
    /// `http://<addr>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A typed client authenticated as `caller`.
    pub fn client(&self, caller: &str) -> VaultClient {
        let token = self
            .tokens
            .get(caller)
            .unwrap_or_else(|| panic!("no caller {caller}"));
        VaultClient::connect(self.endpoint(), token).expect("valid endpoint")
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
        start(
            self.database_url.clone(),
            self.pool.clone(),
            self.namespace.clone(),
            keyring,
            TEST_POOL,
        )
        .await
    }
}

/// A vault with a one-key ring (`k1`).
pub async fn spawn_vault() -> TestVault {
    spawn_vault_with(ring("k1", &[("k1", 1)])).await
}

/// Pool size of test vaults: small, since many tests run in parallel on one PostgreSQL server.
const TEST_POOL: u32 = 5;

/// A vault with the given key ring, on a fresh database and namespace.
pub async fn spawn_vault_with(keyring: KeyRing) -> TestVault {
    spawn_vault_pooled(keyring, TEST_POOL).await
}

/// A vault with the given key ring and database pool size, on a fresh database and namespace.
pub async fn spawn_vault_pooled(keyring: KeyRing, max_connections: u32) -> TestVault {
    testkit::init_logging();
    let (database_url, pool) = testkit::fresh_database().await.expect("fresh database");
    start(
        database_url,
        pool,
        testkit::unique_namespace(),
        keyring,
        max_connections,
    )
    .await
}

/// Tokens are derived from the namespace so a restarted vault accepts the same clients.
fn token(namespace: &str, caller: &str) -> SecretString {
    SecretString::from(format!("test-token-{namespace}-{caller}"))
}

async fn start(
    database_url: String,
    pool: PgPool,
    namespace: String,
    keyring: KeyRing,
    max_connections: u32,
) -> TestVault {
    let mut acl = AclConfig::default_policy();
    let mut tokens = BTreeMap::new();
    for caller in CALLERS {
        let t = token(&namespace, caller);
        acl = acl.with_token(caller, &t);
        tokens.insert(caller.to_owned(), t);
    }
    let mut config = Config::new(
        SecretString::from(database_url.clone()),
        testkit::nats_url(),
        keyring,
        acl,
    );
    config.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.namespace = namespace.clone();
    config.database_max_connections = max_connections;
    let app = vault::Application::build(config)
        .await
        .expect("vault builds");
    let metrics = svc::Metrics::new();
    app.register_metrics(&metrics);
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestVault {
        addr,
        database_url,
        pool,
        namespace,
        tokens,
        metrics,
        stop: Some(stop),
        handle: Some(handle),
    }
}
