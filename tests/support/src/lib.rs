//! Test support shared by every crate's integration tests (and benches).
//!
//! Tests talk to real servers (NATS with JetStream, PostgreSQL, MariaDB for frappe-sim). Each
//! test isolates itself with its own namespace (stream, subjects and KV buckets carry it) and its
//! own database, so tests run in parallel and leave nothing behind that another test could see.
//!
//! - [`spawn_vault`], [`spawn_signup`], [`spawn_projection`]: the real services on port 0.
//! - [`SimBench`]: a frappe-sim bench directory with its REST server, and its command log.
//! - [`eventually`] / [`within`]: polling for eventually-visible state.

mod events;
mod nats;
mod services;
mod sim;
mod vault;

use std::future::Future;
use std::sync::Once;
use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection, PgPool};

pub use events::{tenant_events, wait_for_events};
pub use nats::{NatsCluster, NatsServer};
pub use services::{
    ADMIN_TOKEN, AdminAnswer, Bearer, DirectoryClient, READER_TOKEN, TestProjection, TestSignup,
    admin_get, projection_config, readyz, spawn_projection, spawn_signup, test_operators,
};
pub use sim::{SimBench, frappe_sim_bin, mariadb_has};
pub use vault::{
    CALLERS, TestVault, caller_token, key, ring, spawn_vault, spawn_vault_beside, spawn_vault_in,
    spawn_vault_on, spawn_vault_on_pooled, spawn_vault_pooled, spawn_vault_replicated,
    spawn_vault_tuned, spawn_vault_with, spawn_vault_with_acl,
};

/// NATS server the tests use: `NATS_URL` or the local default.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// PostgreSQL server URL (without database name handling): `DATABASE_URL` or the local default.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A namespace unique to this test, e.g. `t0193a6c2f1b87d3e`: prefixes stream names, subjects
/// and KV buckets so parallel tests never see each other's events.
pub fn unique_namespace() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    // The random tail of a v7 uuid keeps names short yet unique across parallel tests.
    format!("t{}", &id[id.len() - 16..])
}

/// An event store in `namespace`.
pub async fn event_store_in(namespace: &str) -> eventstore::EventStore {
    eventstore::EventStore::connect(
        &eventstore::StoreConfig::new(nats_url()).with_namespace(namespace.to_owned()),
    )
    .await
    .expect("NATS with JetStream is reachable")
}

/// An event store in a fresh namespace.
pub async fn event_store() -> eventstore::EventStore {
    init_logging();
    event_store_in(&unique_namespace()).await
}

/// A fresh, empty database on the test server. Returns its URL and a pool connected to it.
pub async fn fresh_database() -> anyhow::Result<(String, PgPool)> {
    let server = database_url();
    let name = unique_namespace();
    let mut admin = PgConnection::connect(&server).await?;
    admin
        .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await?;
    let url = replace_database(&server, &name);
    let pool = PgPool::connect(&url).await?;
    Ok((url, pool))
}

/// `postgres://u@h:p/old?x` with the database path replaced by `name`.
pub fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Turns on test logging when `TEST_LOG` is set (quiet otherwise, so test output stays readable).
pub fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
}

/// Polls `check` every 25 ms until it returns `Some`, for at most `limit`; `None` if it never did.
pub async fn within<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `check` until it returns `Some`, for at most a minute — a liveness bound, not a timing
/// assertion: it only fails a test that would otherwise hang.
pub async fn eventually<T, F, Fut>(check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(Duration::from_secs(60), check)
        .await
        .expect("condition not reached within a minute")
}

/// A throw-away CA with server (localhost, 127.0.0.1) and client certificates, in a temp
/// directory that lives as long as the returned guard.
pub fn tls_files() -> (tempfile::TempDir, svc::devca::DevCaFiles) {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = svc::devca::DevCa::generate()
        .expect("generate a CA")
        .write_to(dir.path())
        .expect("write the CA");
    (dir, files)
}

/// Server TLS flags for `files` (mTLS when `require_client_certs`).
pub fn server_tls(
    files: &svc::devca::DevCaFiles,
    require_client_certs: bool,
) -> svc::ServerTlsArgs {
    svc::ServerTlsArgs {
        cert: Some(files.server_cert.clone()),
        key: Some(files.server_key.clone()),
        client_ca: require_client_certs.then(|| files.ca.clone()),
    }
}

/// Client TLS trusting `files`' CA (presenting its client certificate when `with_identity`).
pub fn client_tls(files: &svc::devca::DevCaFiles, with_identity: bool) -> svc::ClientTls {
    svc::ClientTlsArgs {
        ca: Some(files.ca.clone()),
        cert: with_identity.then(|| files.client_cert.clone()),
        key: with_identity.then(|| files.client_key.clone()),
    }
    .load()
    .expect("client TLS files")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_database_in_urls() {
        assert_eq!(
            replace_database("postgres://p@h:5432/postgres", "x"),
            "postgres://p@h:5432/x"
        );
        assert_eq!(
            replace_database("postgres://p@h:5432", "x"),
            "postgres://p@h:5432/x"
        );
        assert_eq!(
            replace_database("postgres://p@h/db?sslmode=disable", "x"),
            "postgres://p@h/x?sslmode=disable"
        );
    }

    #[test]
    fn namespaces_are_unique() {
        assert_ne!(unique_namespace(), unique_namespace());
    }

    #[tokio::test]
    async fn within_gives_up_and_eventually_returns_the_value() {
        assert_eq!(
            within(Duration::from_millis(60), || async { None::<u8> }).await,
            None
        );
        let mut n = 0;
        let v = eventually(|| {
            n += 1;
            let done = n >= 3;
            async move { done.then_some(n) }
        })
        .await;
        assert_eq!(v, 3);
    }
}
