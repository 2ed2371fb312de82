//! Idempotent take: a retried take (same request id, same caller) within the replay window
//! answers the same value; any other take answers NOT_FOUND.

mod common;

use std::time::Duration;

use common::{audit_rows, code, secret, text};
use testkit::{spawn_vault, spawn_vault_tuned};
use tonic::Code;

#[tokio::test]
async fn a_retried_take_gets_the_same_value_and_any_other_take_gets_not_found() {
    let vault = spawn_vault().await;
    let signup = vault.client("signup");
    let p = vault.client("provisioner");
    let ot = signup
        .put_one_time(
            "acme",
            "owner_password",
            &secret("hunter2"),
            Duration::from_secs(60),
            "",
        )
        .await
        .unwrap();
    let first = p
        .take_one_time_as(&ot.reference, "req-1", "")
        .await
        .unwrap();
    assert_eq!(text(&first), "hunter2");
    // The answer was lost; the retry carries the same request id.
    let again = p
        .take_one_time_as(&ot.reference, "req-1", "")
        .await
        .unwrap();
    assert_eq!(text(&again), "hunter2");
    // Another request, or no request id, is a second take.
    let (c, msg) = code(p.take_one_time_as(&ot.reference, "req-2", "").await);
    assert_eq!(c, Code::NotFound, "{msg}");
    assert!(msg.contains("already taken"), "{msg}");
    let (c, _) = code(p.take_one_time(&ot.reference, "").await);
    assert_eq!(c, Code::NotFound);
    let outcomes: Vec<_> = audit_rows(&vault.pool, "acme")
        .await
        .into_iter()
        .map(|(_, op, outcome)| format!("{op}:{outcome}"))
        .collect();
    assert_eq!(
        outcomes,
        [
            "put_one_time:allowed",
            "take_one_time:allowed",
            "take_one_time:allowed",
            "take_one_time:not_found",
            "take_one_time:not_found"
        ]
    );
    // A move of a taken secret finds nothing.
    let (c, _) = code(p.move_one_time(&ot.reference, "owner", "").await);
    assert_eq!(c, Code::NotFound);
}

#[tokio::test]
async fn a_replay_is_for_the_same_caller_only() {
    let acl = format!(
        "[callers.second]\ntoken_sha256 = \"{}\"\nallow = [{{ kind = \"owner_password\", ops = [\"take_one_time\"] }}]\n",
        vault::acl::token_sha256(&secrecy::SecretString::from("second-token"))
    );
    let vault = testkit::spawn_vault_with_acl(&testkit::unique_namespace(), &acl).await;
    let second = vault_client::VaultClient::connect(
        vault.endpoint(),
        &secrecy::SecretString::from("second-token"),
    )
    .unwrap();
    let ot = vault
        .client("signup")
        .put_one_time(
            "acme",
            "owner_password",
            &secret("pw"),
            Duration::from_secs(60),
            "",
        )
        .await
        .unwrap();
    vault
        .client("provisioner")
        .take_one_time_as(&ot.reference, "shared-id", "")
        .await
        .unwrap();
    let (c, _) = code(
        second
            .take_one_time_as(&ot.reference, "shared-id", "")
            .await,
    );
    assert_eq!(c, Code::NotFound);
}

#[tokio::test]
async fn the_kept_value_goes_after_the_replay_window() {
    let vault = spawn_vault_tuned(|c| {
        c.take_replay_window = Duration::from_secs(1);
        c.purge_interval = Duration::from_millis(200);
    })
    .await;
    let p = vault.client("provisioner");
    let ot = vault
        .client("signup")
        .put_one_time(
            "acme",
            "owner_password",
            &secret("pw"),
            Duration::from_secs(60),
            "",
        )
        .await
        .unwrap();
    p.take_one_time_as(&ot.reference, "r", "").await.unwrap();
    let kept = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT (SELECT count(*) FROM vault.taken_one_time) + (SELECT count(*) FROM vault.data_keys)",
        )
        .fetch_one(&vault.pool)
        .await
        .unwrap()
    };
    assert_eq!(
        kept().await,
        2,
        "sealed value and its key kept for the window"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (c, _) = code(p.take_one_time_as(&ot.reference, "r", "").await);
    assert_eq!(c, Code::NotFound, "no replay after the window");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while kept().await > 0 {
        assert!(std::time::Instant::now() < deadline, "not purged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_take_without_request_id_keeps_nothing() {
    let vault = spawn_vault().await;
    let ot = vault
        .client("signup")
        .put_one_time(
            "acme",
            "owner_password",
            &secret("pw"),
            Duration::from_secs(60),
            "",
        )
        .await
        .unwrap();
    let p = vault.client("provisioner");
    p.take_one_time_as(&ot.reference, "", "").await.unwrap();
    let rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM vault.taken_one_time) + (SELECT count(*) FROM vault.data_keys)",
    )
    .fetch_one(&vault.pool)
    .await
    .unwrap();
    assert_eq!(rows, 0);
    let (c, _) = code(p.take_one_time_as(&ot.reference, "", "").await);
    assert_eq!(c, Code::NotFound);
}

#[tokio::test]
async fn the_client_retries_a_take_whose_answer_was_lost_under_the_same_request_id() {
    let vault = spawn_vault().await;
    let ot = vault
        .client("signup")
        .put_one_time(
            "acme",
            "owner_password",
            &secret("lost-answer"),
            Duration::from_secs(60),
            "",
        )
        .await
        .unwrap();
    // A proxy whose first connection delivers requests to the vault but loses every answer,
    // and is cut once the vault has taken the secret; later connections pass through.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let upstream = vault.addr;
    let (cut_tx, cut_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut cut_rx = Some(cut_rx);
        loop {
            let (client, _) = proxy.accept().await.unwrap();
            let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            if let Some(cut) = cut_rx.take() {
                tokio::spawn(async move {
                    let forward = tokio::io::copy(&mut cr, &mut sw);
                    let mut sink = tokio::io::sink();
                    let lose = tokio::io::copy(&mut sr, &mut sink);
                    tokio::select! {
                        _ = forward => {}
                        _ = lose => {}
                        _ = cut => {}
                    }
                    // Dropping every half closes both connections.
                    drop(cw);
                });
            } else {
                tokio::spawn(async move {
                    let _ = tokio::join!(
                        tokio::io::copy(&mut cr, &mut sw),
                        tokio::io::copy(&mut sr, &mut cw)
                    );
                });
            }
        }
    });
    let client = vault_client::VaultClient::connect(
        format!("http://{proxy_addr}"),
        &vault.token("provisioner"),
    )
    .unwrap()
    .with_retry(vault_client::RetryPolicy {
        attempt_timeout: Duration::from_secs(3),
        initial_backoff: Duration::from_millis(50),
        ..Default::default()
    });
    let take = tokio::spawn(async move { client.take_one_time(&ot.reference, "").await });
    let pool = vault.pool.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let taken: i64 = sqlx::query_scalar("SELECT count(*) FROM vault.taken_one_time")
            .fetch_one(&pool)
            .await
            .unwrap();
        if taken == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the take never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = cut_tx.send(());
    let value = take
        .await
        .unwrap()
        .expect("the retry answers the same value");
    assert_eq!(text(&value), "lost-answer");
    let outcomes: Vec<_> = audit_rows(&vault.pool, "acme")
        .await
        .into_iter()
        .map(|(_, op, outcome)| format!("{op}:{outcome}"))
        .collect();
    assert_eq!(
        outcomes,
        [
            "put_one_time:allowed",
            "take_one_time:allowed",
            "take_one_time:allowed"
        ]
    );
}
