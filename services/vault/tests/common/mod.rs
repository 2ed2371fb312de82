//! Helpers shared by the vault's integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::time::Duration;

use eventstore::{EventStore, StoreConfig};
use proto::EventContext;
use secrecy::{ExposeSecret, SecretSlice};
use sqlx::Row;
use testkit::TestVault;
use tonic::Code;
use vault_client::{ClientError, SecretValue};

pub fn secret(s: &str) -> SecretSlice<u8> {
    SecretSlice::from(s.as_bytes().to_vec())
}

pub fn text(v: &SecretValue) -> String {
    String::from_utf8(v.value.expose_secret().to_vec()).unwrap()
}

pub fn code(r: Result<impl Sized, ClientError>) -> (Code, String) {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(ClientError::Status { status, .. }) => (status.code(), status.message().to_owned()),
        Err(e) => panic!("unexpected client error {e}"),
    }
}

/// The vault events of `tenant` in `namespace`, as stored now.
pub async fn stream_events(namespace: &str, tenant: &str) -> Vec<eventstore::RecordedEvent> {
    let store =
        EventStore::connect(&StoreConfig::new(testkit::nats_url()).with_namespace(namespace))
            .await
            .unwrap();
    store
        .load(&store.subject(EventContext::Vault, tenant))
        .await
        .unwrap()
}

/// Rows still in the vault's outbox.
pub async fn outbox_len(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM vault.outbox")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits (up to 15 s) until the outbox is empty: every committed event has been relayed.
pub async fn drained(pool: &sqlx::PgPool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while outbox_len(pool).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox was not relayed within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The vault events of `tenant` once everything committed so far has been relayed.
pub async fn events(vault: &TestVault, tenant: &str) -> Vec<eventstore::RecordedEvent> {
    drained(&vault.pool).await;
    stream_events(&vault.namespace, tenant).await
}

/// The audit rows (caller, operation, tenant, outcome) written for `tenant`, oldest first.
pub async fn audit_rows(pool: &sqlx::PgPool, tenant: &str) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT caller, operation, outcome FROM vault.audit_log WHERE tenant_id = $1 ORDER BY id",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Every value of every column of every table in schema `vault`, as raw bytes (bytea) or text.
pub async fn all_cells(pool: &sqlx::PgPool) -> Vec<(String, Vec<u8>)> {
    let columns = sqlx::query(
        "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = 'vault'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(
        columns.len() > 20,
        "expected the vault tables, found {} columns",
        columns.len()
    );
    let mut cells = Vec::new();
    for c in columns {
        let (table, column, ty): (String, String, String) = (c.get(0), c.get(1), c.get(2));
        let values: Vec<Option<Vec<u8>>> = if ty == "bytea" {
            sqlx::query_scalar(&format!(r#"SELECT "{column}" FROM vault."{table}""#))
                .fetch_all(pool)
                .await
                .unwrap()
        } else {
            sqlx::query_scalar(&format!(
                r#"SELECT convert_to("{column}"::text, 'UTF8') FROM vault."{table}""#
            ))
            .fetch_all(pool)
            .await
            .unwrap()
        };
        cells.extend(
            values
                .into_iter()
                .flatten()
                .map(|v| (format!("{table}.{column}"), v)),
        );
    }
    cells
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
