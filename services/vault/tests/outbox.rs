//! The outbox: a change's events commit with it and are relayed to JetStream at least once,
//! stored once (deterministic ids), in order per secret, by any instance, after any crash.

mod common;

use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use common::{drained, events, outbox_len, secret, stream_events};
use proto::v1::event::Body;
use secrecy::SecretString;
use testkit::{spawn_vault_beside, spawn_vault_tuned};
use tokio::process::{Child, Command};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real `vault` binary on `database_url` and `namespace`, listening on `port`.
async fn vault_process(database_url: &str, namespace: &str, port: u16, crash: bool) -> Child {
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let callers = format!(
        "[callers.provisioner]\ntoken_sha256 = \"{}\"\n",
        vault::acl::token_sha256(&SecretString::from("crash-token"))
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vault"));
    cmd.env("DATABASE_URL", database_url)
        .env("NATS_URL", testkit::nats_url())
        .env("TENANTRY_NAMESPACE", namespace)
        .env(
            "TENANTRY_VAULT_KEYRING",
            format!(r#"{{"active":"k1","keys":[{{"id":"k1","key":"{key}"}}]}}"#),
        )
        .env("TENANTRY_VAULT_CALLERS", callers)
        .env("TENANTRY_VAULT_LISTEN", format!("127.0.0.1:{port}"))
        .env("TENANTRY_ADMIN_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("TENANTRY_VAULT_OUTBOX_POLL_MS", "100")
        .env_remove("TENANTRY_VAULT_CRASH_AT")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if crash {
        cmd.env("TENANTRY_VAULT_CRASH_AT", "after-commit");
    }
    let child = cmd.spawn().expect("vault binary starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "vault did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

#[tokio::test]
async fn an_event_committed_before_a_crash_is_published_exactly_once_after_restart() {
    testkit::init_logging();
    let (database_url, pool) = testkit::fresh_database().await.unwrap();
    let namespace = testkit::unique_namespace();
    let port = free_port();
    let mut crashing = vault_process(&database_url, &namespace, port, true).await;
    let client = vault_client::VaultClient::connect(
        format!("http://127.0.0.1:{port}"),
        &SecretString::from("crash-token"),
    )
    .unwrap()
    .with_retry(vault_client::RetryPolicy {
        attempts: 1,
        ..Default::default()
    });
    // The process dies between the commit and the publish: the caller sees no answer.
    let put = client
        .put("acme", "api", "api_credentials", &secret("v"), "")
        .await;
    assert!(put.is_err(), "the crash point did not fire");
    let status = crashing.wait().await.unwrap();
    assert!(!status.success(), "{status:?}");
    // Committed: the secret, its audit row and its event are all there; nothing published.
    assert_eq!(outbox_len(&pool).await, 1);
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM vault.audit_log WHERE operation = 'put' AND outcome = 'allowed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);
    assert!(stream_events(&namespace, "acme").await.is_empty());
    let event_id: uuid::Uuid = sqlx::query_scalar("SELECT event_id FROM vault.outbox")
        .fetch_one(&pool)
        .await
        .unwrap();

    let _restarted = vault_process(&database_url, &namespace, port, false).await;
    drained(&pool).await;
    let published = stream_events(&namespace, "acme").await;
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].event_id, event_id);
    let Body::CredentialStored(e) = &published[0].body else {
        panic!("expected CredentialStored")
    };
    assert_eq!((e.name.as_str(), e.version), ("api", 1));
    // The secret is readable: the commit was real.
    let got = client.get_by_name("acme", "api", "").await.unwrap();
    assert_eq!(got.version, 1);

    // A relay that dies after the publish but before deleting the row publishes it again:
    // the deterministic id makes JetStream keep one.
    sqlx::query(
        "INSERT INTO vault.outbox (event_id, tenant_id, event, correlation_id)
         SELECT $1, 'acme', event, '' FROM (SELECT $2::bytea AS event) e",
    )
    .bind(event_id)
    .bind(prost::Message::encode_to_vec(&proto::v1::Event {
        occurred_at: None,
        body: Some(published[0].body.clone()),
    }))
    .execute(&pool)
    .await
    .unwrap();
    drained(&pool).await;
    assert_eq!(stream_events(&namespace, "acme").await.len(), 1);
}

#[tokio::test]
async fn a_relay_started_later_publishes_the_backlog_once_and_in_order() {
    // No relay: what an event-store outage looks like to a caller — every change succeeds.
    let quiet = spawn_vault_tuned(|c| c.outbox_relay = false).await;
    let p = quiet.client("provisioner");
    for tenant in ["t1", "t2"] {
        p.put(tenant, "a", "api_credentials", &secret("1"), "")
            .await
            .unwrap();
        p.put(tenant, "a", "api_credentials", &secret("2"), "")
            .await
            .unwrap();
        p.revoke(&format!("vault://tenant/{tenant}/a"), "")
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(outbox_len(&quiet.pool).await, 6);
    assert!(stream_events(&quiet.namespace, "t1").await.is_empty());

    let relaying = spawn_vault_beside(&quiet, |_| {}).await;
    for tenant in ["t1", "t2"] {
        let seen: Vec<String> = events(&relaying, tenant)
            .await
            .into_iter()
            .map(|e| match e.body {
                Body::CredentialStored(s) => format!("stored v{}", s.version),
                Body::CredentialRevoked(_) => "revoked".into(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(seen, ["stored v1", "stored v2", "revoked"], "{tenant}");
    }
}

#[tokio::test]
async fn two_relaying_instances_publish_every_event_once_in_version_order() {
    let a = testkit::spawn_vault().await;
    let b = spawn_vault_beside(&a, |_| {}).await;
    let clients = [a.client("provisioner"), b.client("provisioner")];
    let mut puts = tokio::task::JoinSet::new();
    for t in 0..5 {
        for i in 0..20 {
            let c = clients[i % 2].clone();
            puts.spawn(async move {
                c.put(&format!("t{t}"), "s", "api_credentials", &secret("v"), "")
                    .await
                    .unwrap()
            });
        }
    }
    while let Some(r) = puts.join_next().await {
        r.unwrap();
    }
    for t in 0..5 {
        let versions: Vec<u32> = events(&a, &format!("t{t}"))
            .await
            .into_iter()
            .map(|e| match e.body {
                Body::CredentialStored(s) => s.version,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(versions, (1..=20).collect::<Vec<u32>>(), "t{t}");
    }
}
