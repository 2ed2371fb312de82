//! What the vault client does with a hung vault, bad input and the vault's reasons.

mod common;

use std::time::{Duration, Instant};

use common::{audit_rows, code, secret};
use secrecy::SecretString;
use tonic::Code;
use vault_client::{RetryPolicy, VaultClient};

#[tokio::test]
async fn a_hung_vault_yields_an_error_within_the_budget() {
    // Accepts connections and never answers (a wedged process, a black-holing proxy).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            held.push(s);
        }
    });
    let client = VaultClient::connect(format!("http://{addr}"), &SecretString::from("t"))
        .unwrap()
        .with_retry(RetryPolicy {
            attempts: 10,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
            attempt_timeout: Duration::from_millis(300),
            budget: Duration::from_secs(1),
        });
    let started = Instant::now();
    let e = client.get("vault://tenant/acme/a", "").await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.code(), Some(Code::DeadlineExceeded), "{e}");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "gave up early: {took:?}"
    );
    hold.abort();
}

#[tokio::test]
async fn bad_tenant_ids_and_names_are_invalid_arguments_naming_the_field_and_not_retried() {
    let vault = testkit::spawn_vault().await;
    let p = vault.client("provisioner").with_retry(RetryPolicy {
        attempts: 5,
        ..Default::default()
    });
    for bad in ["a.b", "a*", "a>", "a b", "tab\tx", "Acme.x"] {
        let (c, msg) = code(
            p.put(bad, "name", "api_credentials", &secret("v"), "")
                .await,
        );
        assert_eq!(c, Code::InvalidArgument, "{bad}: {msg}");
        assert!(msg.contains("tenant_id"), "{bad}: {msg}");
        let (c, msg) = code(
            p.put("acme", bad, "api_credentials", &secret("v"), "")
                .await,
        );
        assert_eq!(c, Code::InvalidArgument, "{bad}: {msg}");
        assert!(msg.contains("name"), "{bad}: {msg}");
        let (c, msg) = code(vault.client("operator").shred_tenant(bad, "").await);
        assert_eq!(c, Code::InvalidArgument, "{bad}: {msg}");
    }
    // One audit row per call: none was retried.
    let refused: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM vault.audit_log WHERE outcome = 'error' AND detail LIKE '%may contain only%'",
    )
    .fetch_one(&vault.pool)
    .await
    .unwrap();
    assert_eq!(refused, 18);
    // A valid id is stored and its event published to the tenant's subject.
    p.put("acme_01-x", "n-1_a", "api_credentials", &secret("v"), "")
        .await
        .unwrap();
    assert_eq!(common::events(&vault, "acme_01-x").await.len(), 1);
    assert_eq!(audit_rows(&vault.pool, "acme_01-x").await.len(), 1);
}
