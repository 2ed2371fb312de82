//! The vault's gRPC listener with TLS and mTLS (certificates from a throw-away dev CA).

mod common;

use std::time::Duration;

use common::secret;
use testkit::{TestVault, client_tls, server_tls, spawn_vault_tuned, tls_files};
use vault_client::{RetryPolicy, VaultClient};

fn quick() -> RetryPolicy {
    RetryPolicy {
        attempts: 1,
        attempt_timeout: Duration::from_secs(3),
        budget: Duration::from_secs(5),
        ..Default::default()
    }
}

fn tls_client(vault: &TestVault, tls: &svc::ClientTls) -> VaultClient {
    let endpoint = tls
        .endpoint(&format!("https://localhost:{}", vault.addr.port()))
        .unwrap();
    VaultClient::from_endpoint(endpoint, &vault.token("provisioner"))
        .unwrap()
        .with_retry(quick())
}

async fn put(c: &VaultClient) -> Result<(), vault_client::ClientError> {
    c.put("acme", "api", "api_credentials", &secret("v"), "")
        .await
        .map(drop)
}

#[tokio::test]
async fn with_tls_a_plaintext_client_gets_no_answer_and_a_tls_client_does() {
    let (_dir, files) = tls_files();
    let vault = spawn_vault_tuned(|c| c.grpc.tls = server_tls(&files, false)).await;
    let plain = vault.client("provisioner").with_retry(quick());
    let e = put(&plain).await.unwrap_err();
    assert!(e.code().is_some(), "{e}");
    assert_ne!(e.code(), Some(tonic::Code::Ok));
    put(&tls_client(&vault, &client_tls(&files, false)))
        .await
        .unwrap();
    // The refused plaintext call never reached the service: only the TLS put is audited.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM vault.audit_log")
        .fetch_one(&vault.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn with_mtls_only_a_client_with_a_certificate_gets_an_answer() {
    let (_dir, files) = tls_files();
    let vault = spawn_vault_tuned(|c| c.grpc.tls = server_tls(&files, true)).await;
    let anonymous = tls_client(&vault, &client_tls(&files, false));
    assert!(put(&anonymous).await.is_err());
    put(&tls_client(&vault, &client_tls(&files, true)))
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM vault.audit_log")
        .fetch_one(&vault.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}
