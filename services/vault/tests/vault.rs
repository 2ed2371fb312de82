//! Black-box tests of the vault against real PostgreSQL and NATS: what a client sees, plus what
//! an attacker with the database would (not) see.

use std::time::Duration;

mod common;

use base64::Engine as _;
use common::{all_cells, code, contains, events, secret, text};
use proto::v1::event::Body;
use secrecy::{ExposeSecret, SecretString};
use testkit::{ring, spawn_vault, spawn_vault_with};
use tonic::Code;
use vault_client::AuditQuery;

#[tokio::test]
async fn stored_secrets_appear_in_no_column_and_no_event() {
    let vault = spawn_vault().await;
    let provisioner = vault.client("provisioner");
    let signup = vault.client("signup");
    let plaintext = format!("api-secret-{}", uuid::Uuid::new_v4());
    let one_time = format!("owner-password-{}", uuid::Uuid::new_v4());

    let stored = provisioner
        .with_correlation_id("corr-1")
        .put(
            "acme",
            "api-credentials",
            "api_credentials",
            &secret(&plaintext),
            "provisioning",
        )
        .await
        .unwrap();
    assert_eq!(stored.reference, "vault://tenant/acme/api-credentials");
    assert_eq!(stored.version, 1);
    signup
        .put_one_time(
            "acme",
            "owner_password",
            &secret(&one_time),
            Duration::from_secs(600),
            "signup",
        )
        .await
        .unwrap();
    assert_eq!(
        text(&provisioner.get(&stored.reference, "verify").await.unwrap()),
        plaintext
    );

    let cells = all_cells(&vault.pool).await;
    assert!(
        cells.iter().any(|(c, _)| c == "secrets.ciphertext"),
        "ciphertext column scanned"
    );
    for p in [&plaintext, &one_time] {
        let forms = [
            p.as_bytes().to_vec(),
            hex::encode(p).into_bytes(),
            base64::engine::general_purpose::STANDARD
                .encode(p)
                .into_bytes(),
        ];
        for (column, value) in &cells {
            for form in &forms {
                assert!(!contains(value, form), "{column} contains the secret");
            }
        }
    }

    let events = events(&vault, "acme").await;
    assert_eq!(events.len(), 1, "one-time secrets are not events");
    let Body::CredentialStored(e) = &events[0].body else {
        panic!("expected CredentialStored, got {}", events[0].event_type)
    };
    assert_eq!(
        (e.name.as_str(), e.kind.as_str(), e.version),
        ("api-credentials", "api_credentials", 1)
    );
    assert_eq!(e.reference, stored.reference);
    assert_eq!(events[0].correlation_id.as_deref(), Some("corr-1"));
    assert!(!format!("{:?}", events[0].body).contains(&plaintext));
}

#[tokio::test]
async fn put_makes_a_new_version_and_revoke_removes_it() {
    let vault = spawn_vault().await;
    let p = vault.client("provisioner");
    p.put("acme", "admin", "site_admin_password", &secret("one"), "")
        .await
        .unwrap();
    let v2 = p
        .put("acme", "admin", "site_admin_password", &secret("two"), "")
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    let got = p.get_by_name("acme", "admin", "").await.unwrap();
    assert_eq!(
        (text(&got), got.version, got.kind.as_str()),
        ("two".into(), 2, "site_admin_password")
    );
    assert!(
        !format!("{got:?}").contains("two"),
        "Debug of a secret value hides it"
    );
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM vault.data_keys")
        .fetch_one(&vault.pool)
        .await
        .unwrap();
    assert_eq!(keys, 1, "the old version's data key is destroyed");

    p.revoke(&v2.reference, "rotating admin password")
        .await
        .unwrap();
    let (c, msg) = code(p.get(&v2.reference, "").await);
    assert_eq!(c, Code::NotFound);
    assert!(msg.contains("revoked"), "{msg}");
    p.revoke(&v2.reference, "again").await.unwrap();
    assert_eq!(
        p.put("acme", "admin", "site_admin_password", &secret("three"), "")
            .await
            .unwrap()
            .version,
        3
    );
    assert_eq!(text(&p.get(&v2.reference, "").await.unwrap()), "three");
    let (c, _) = code(p.get("vault://tenant/acme/nope", "").await);
    assert_eq!(c, Code::NotFound);

    let types: Vec<String> = events(&vault, "acme")
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "CredentialStored",
            "CredentialStored",
            "CredentialRevoked",
            "CredentialStored"
        ]
    );
}

#[tokio::test]
async fn swapped_ciphertexts_fail_the_integrity_check() {
    let vault = spawn_vault().await;
    let p = vault.client("provisioner");
    p.put("acme", "a", "api_credentials", &secret("secret-a"), "")
        .await
        .unwrap();
    p.put("acme", "b", "api_credentials", &secret("secret-b"), "")
        .await
        .unwrap();
    p.put("acme", "c", "api_credentials", &secret("secret-c"), "")
        .await
        .unwrap();
    p.put("acme", "d", "api_credentials", &secret("secret-d"), "")
        .await
        .unwrap();

    // Ciphertext (and nonce) only.
    sqlx::query(
        "UPDATE vault.secrets s SET nonce = o.nonce, ciphertext = o.ciphertext
         FROM vault.secrets o WHERE s.tenant_id = 'acme' AND o.tenant_id = 'acme'
           AND ((s.name = 'a' AND o.name = 'b') OR (s.name = 'b' AND o.name = 'a'))",
    )
    .execute(&vault.pool)
    .await
    .unwrap();
    // The whole envelope (data key, nonce, ciphertext): only the associated data can tell.
    let mut tx = vault.pool.begin().await.unwrap();
    let (kc, kd): (uuid::Uuid, uuid::Uuid) = sqlx::query_as(
        "SELECT (SELECT data_key_id FROM vault.secrets WHERE name = 'c'), (SELECT data_key_id FROM vault.secrets WHERE name = 'd')",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    sqlx::query("UPDATE vault.secrets SET data_key_id = NULL WHERE name IN ('c', 'd')")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE vault.secrets s SET data_key_id = CASE s.name WHEN 'c' THEN $2 ELSE $1 END, nonce = o.nonce, ciphertext = o.ciphertext
         FROM vault.secrets o WHERE (s.name = 'c' AND o.name = 'd') OR (s.name = 'd' AND o.name = 'c')",
    )
    .bind(kc)
    .bind(kd)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    for name in ["a", "b", "c", "d"] {
        let (c, msg) = code(p.get_by_name("acme", name, "").await);
        assert_eq!(c, Code::DataLoss, "{name}: {msg}");
        assert!(
            msg.contains(&format!("secret acme/{name} failed its integrity check")),
            "{msg}"
        );
        assert!(
            !msg.contains("secret-"),
            "the error never carries a value: {msg}"
        );
    }
}

#[tokio::test]
async fn rotation_rewraps_every_key_so_the_old_key_can_be_removed() {
    let vault = spawn_vault_with(ring("k1", &[("k1", 1)])).await;
    let p = vault.client("provisioner");
    for (tenant, name) in [("acme", "api"), ("acme", "admin"), ("globex", "api")] {
        p.put(
            tenant,
            name,
            "api_credentials",
            &secret(&format!("{tenant}-{name}")),
            "",
        )
        .await
        .unwrap();
    }
    let one_time = vault
        .client("signup")
        .put_one_time(
            "acme",
            "owner_password",
            &secret("owner"),
            Duration::from_secs(600),
            "",
        )
        .await
        .unwrap();

    // Removing k1 before rotating strands every secret, with an error that says what to do.
    let vault = vault.restart_with(ring("k2", &[("k2", 2)])).await;
    let (c, msg) = code(
        vault
            .client("provisioner")
            .get_by_name("acme", "api", "")
            .await,
    );
    assert_eq!(c, Code::FailedPrecondition);
    assert!(msg.contains("`k1`") && msg.contains("Rotate"), "{msg}");

    let vault = vault
        .restart_with(ring("k2", &[("k1", 1), ("k2", 2)]))
        .await;
    let p = vault.client("provisioner");
    assert_eq!(
        text(&p.get_by_name("acme", "api", "").await.unwrap()),
        "acme-api",
        "k1 keys still read"
    );
    p.put(
        "globex",
        "admin",
        "api_credentials",
        &secret("globex-admin"),
        "",
    )
    .await
    .unwrap();
    let operator = vault.client("operator");
    let rotated = operator.rotate().await.unwrap();
    assert_eq!(
        (rotated.rewrapped, rotated.active_kek_id.as_str()),
        (4, "k2"),
        "3 secrets + 1 one-time secret"
    );
    assert_eq!(
        operator.rotate().await.unwrap().rewrapped,
        0,
        "rotation is idempotent"
    );
    let keks: Vec<String> = sqlx::query_scalar("SELECT DISTINCT kek_id FROM vault.data_keys")
        .fetch_all(&vault.pool)
        .await
        .unwrap();
    assert_eq!(keks, ["k2"]);

    let vault = vault.restart_with(ring("k2", &[("k2", 2)])).await;
    let p = vault.client("provisioner");
    for (tenant, name) in [
        ("acme", "api"),
        ("acme", "admin"),
        ("globex", "api"),
        ("globex", "admin"),
    ] {
        assert_eq!(
            text(&p.get_by_name(tenant, name, "").await.unwrap()),
            format!("{tenant}-{name}")
        );
    }
    assert_eq!(
        text(&p.take_one_time(&one_time.reference, "").await.unwrap()),
        "owner"
    );

    let rotated: Vec<_> = events(&vault, "acme")
        .await
        .into_iter()
        .filter_map(|e| match e.body {
            Body::CredentialRotated(r) => Some((r.name, r.kek_id)),
            _ => None,
        })
        .collect();
    assert_eq!(rotated.len(), 2);
    assert!(rotated.iter().all(|(_, kek)| kek == "k2"));
}

#[tokio::test]
async fn unauthenticated_and_unauthorised_calls_are_refused_and_audited() {
    let vault = spawn_vault().await;
    vault
        .client("provisioner")
        .put("acme", "api", "api_credentials", &secret("s"), "")
        .await
        .unwrap();
    vault
        .client("identity")
        .put("acme", "oauth", "oauth_client_secret", &secret("o"), "")
        .await
        .unwrap();

    // No token at all, through the raw generated client.
    let mut raw = proto::v1::vault_client::VaultClient::connect(vault.endpoint())
        .await
        .unwrap();
    let status = raw
        .get(proto::v1::GetSecretRequest {
            reference: "vault://tenant/acme/api".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let forged =
        vault_client::VaultClient::connect(vault.endpoint(), &SecretString::from("forged"))
            .unwrap();
    assert_eq!(
        code(forged.get("vault://tenant/acme/api", "").await).0,
        Code::Unauthenticated
    );

    let (c, msg) = code(
        vault
            .client("projection")
            .get("vault://tenant/acme/api", "curious")
            .await,
    );
    assert_eq!(c, Code::PermissionDenied);
    assert!(msg.contains("projection"), "{msg}");
    assert_eq!(
        code(
            vault
                .client("provisioner")
                .get("vault://tenant/acme/oauth", "")
                .await
        )
        .0,
        Code::PermissionDenied
    );
    assert_eq!(
        code(vault.client("provisioner").rotate().await).0,
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            vault
                .client("projection")
                .audit(&AuditQuery::default())
                .await
        )
        .0,
        Code::PermissionDenied
    );

    // A caller that may not take a one-time secret cannot destroy it either.
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
    assert_eq!(
        code(
            vault
                .client("signup")
                .take_one_time(&ot.reference, "")
                .await
        )
        .0,
        Code::PermissionDenied
    );
    assert_eq!(
        text(
            &vault
                .client("provisioner")
                .take_one_time(&ot.reference, "")
                .await
                .unwrap()
        ),
        "pw"
    );

    let operator = vault.client("operator");
    let all = operator
        .audit(&AuditQuery {
            tenant_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let unauth: Vec<_> = all
        .iter()
        .filter(|e| e.outcome == "unauthenticated")
        .collect();
    assert_eq!(unauth.len(), 2, "{all:#?}");
    assert!(
        unauth
            .iter()
            .all(|e| e.caller == "anonymous" && e.operation == "get" && e.secret_name == "api")
    );
    let denied = operator
        .audit(&AuditQuery {
            caller: "projection".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(denied.len(), 2, "{denied:#?}");
    assert!(denied.iter().all(|e| e.outcome == "denied"));
    let get = denied.iter().find(|e| e.operation == "get").unwrap();
    assert_eq!(
        (get.tenant_id.as_str(), get.secret_name.as_str()),
        ("acme", "api")
    );
    assert!(
        get.reason.starts_with("curious") && get.reason.contains("may not get"),
        "{}",
        get.reason
    );
    assert!(all.iter().any(|e| e.outcome == "allowed"
        && e.operation == "take_one_time"
        && e.caller == "provisioner"));

    let newest = all.iter().map(|e| e.at.unwrap().seconds).max().unwrap();
    let since = chrono::DateTime::from_timestamp(newest + 3600, 0).unwrap();
    assert!(
        operator
            .audit(&AuditQuery {
                since: Some(since),
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty()
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM vault.audit_log")
        .fetch_one(&vault.pool)
        .await
        .unwrap();
    assert!(rows >= 12, "every call is a row: {rows}");
    let rendered = vault.metrics.render();
    assert!(
        rendered
            .contains(r#"tenantry_vault_calls_total{operation="get",outcome="unauthenticated"} 2"#),
        "{rendered}"
    );
    let tamper = sqlx::query("DELETE FROM vault.audit_log")
        .execute(&vault.pool)
        .await;
    assert!(tamper.is_err(), "the audit log is append-only");
}

#[tokio::test]
async fn a_one_time_secret_moves_into_a_named_secret_atomically_and_a_retry_answers_the_same() {
    let vault = spawn_vault().await;
    let signup = vault.client("signup");
    let provisioner = vault.client("provisioner");
    let ot = signup
        .put_one_time_string(
            "acme",
            "owner_password",
            &SecretString::from("violet tractor"),
            Duration::from_secs(600),
            "signup",
        )
        .await
        .unwrap();
    // A caller without the right can neither move nor destroy it.
    let (c, _) = code(
        vault
            .client("identity")
            .move_one_time(&ot.reference, "owner-password-pending", "steal")
            .await,
    );
    assert_eq!(c, Code::PermissionDenied);

    let moved = provisioner
        .move_one_time(&ot.reference, "owner-password-pending", "create owner")
        .await
        .unwrap();
    assert_eq!(
        moved.reference,
        "vault://tenant/acme/owner-password-pending"
    );
    assert_eq!(moved.version, 1);
    let kept = provisioner
        .get(&moved.reference, "create owner")
        .await
        .unwrap();
    assert_eq!(
        kept.to_secret_string().unwrap().expose_secret(),
        "violet tractor"
    );
    assert_eq!(kept.kind, "owner_password");
    // The first answer was lost: the retry answers the same and stores nothing twice.
    let again = provisioner
        .move_one_time(&ot.reference, "owner-password-pending", "retry")
        .await
        .unwrap();
    assert_eq!(again, moved);
    // The one-time secret is gone; only the named one holds the value.
    let (c, _) = code(provisioner.take_one_time(&ot.reference, "again").await);
    assert_eq!(c, Code::NotFound);
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vault.one_time_secrets")
        .fetch_one(&vault.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    let events = testkit::event_store_in(&vault.namespace)
        .await
        .load(&format!("{}.tenantry.vault.acme", vault.namespace))
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "one CredentialStored for one move");
    // Once revoked (the owner exists), a late retry finds nothing to move.
    provisioner
        .revoke(&moved.reference, "owner exists")
        .await
        .unwrap();
    let (c, _) = code(
        provisioner
            .move_one_time(&ot.reference, "owner-password-pending", "late")
            .await,
    );
    assert_eq!(c, Code::NotFound);
}

#[tokio::test]
async fn one_time_secrets_are_returned_once_and_expire() {
    let vault = spawn_vault().await;
    let signup = vault.client("signup");
    let provisioner = vault.client("provisioner");
    let ot = signup
        .put_one_time_string(
            "acme",
            "owner_password",
            &SecretString::from("hunter2"),
            Duration::from_secs(600),
            "signup",
        )
        .await
        .unwrap();
    assert!(
        ot.reference.starts_with("vault://tenant/acme/one-time/"),
        "{}",
        ot.reference
    );
    assert!(ot.expires_at.is_some());
    let taken = provisioner
        .take_one_time(&ot.reference, "create owner")
        .await
        .unwrap();
    assert_eq!(taken.to_secret_string().unwrap().expose_secret(), "hunter2");
    assert_eq!(taken.kind, "owner_password");
    let (c, msg) = code(provisioner.take_one_time(&ot.reference, "again").await);
    assert_eq!(c, Code::NotFound);
    assert!(msg.contains("already taken"), "{msg}");

    let short = signup
        .put_one_time(
            "acme",
            "owner_password",
            &secret("brief"),
            Duration::from_secs(1),
            "",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        code(provisioner.take_one_time(&short.reference, "").await).0,
        Code::NotFound
    );

    let (c, msg) = code(
        signup
            .put_one_time(
                "acme",
                "owner_password",
                &secret("x"),
                Duration::from_secs(30 * 86_400),
                "",
            )
            .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(msg.contains("ttl_seconds"), "{msg}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM vault.one_time_secrets")
        .fetch_one(&vault.pool)
        .await
        .unwrap();
    assert!(left <= 1, "taken secrets are deleted");
}

#[tokio::test]
async fn shredding_a_tenant_destroys_its_keys_and_nothing_else() {
    let vault = spawn_vault().await;
    let p = vault.client("provisioner");
    p.put("doomed", "api", "api_credentials", &secret("d1"), "")
        .await
        .unwrap();
    p.put("doomed", "admin", "site_admin_password", &secret("d2"), "")
        .await
        .unwrap();
    p.put("kept", "api", "api_credentials", &secret("k1"), "")
        .await
        .unwrap();
    let ot = vault
        .client("signup")
        .put_one_time(
            "doomed",
            "owner_password",
            &secret("pw"),
            Duration::from_secs(600),
            "",
        )
        .await
        .unwrap();

    let operator = vault
        .client("operator")
        .with_correlation_id("delete-doomed");
    assert_eq!(
        operator
            .shred_tenant("doomed", "tenant deleted")
            .await
            .unwrap(),
        2
    );
    for name in ["api", "admin"] {
        let (c, msg) = code(p.get_by_name("doomed", name, "").await);
        assert_eq!(c, Code::FailedPrecondition);
        assert!(msg.contains("shredded"), "{msg}");
    }
    assert_eq!(
        code(p.take_one_time(&ot.reference, "").await).0,
        Code::NotFound
    );
    assert_eq!(
        code(
            p.put("doomed", "api", "api_credentials", &secret("again"), "")
                .await
        )
        .0,
        Code::FailedPrecondition
    );
    assert_eq!(text(&p.get_by_name("kept", "api", "").await.unwrap()), "k1");
    let keys: i64 =
        sqlx::query_scalar("SELECT count(*) FROM vault.data_keys WHERE tenant_id = 'doomed'")
            .fetch_one(&vault.pool)
            .await
            .unwrap();
    assert_eq!(keys, 0);

    let last = events(&vault, "doomed").await.pop().unwrap();
    let Body::TenantKeysShredded(e) = last.body else {
        panic!("expected TenantKeysShredded, got {}", last.event_type)
    };
    assert_eq!((e.tenant_id.as_str(), e.secrets_shredded), ("doomed", 2));
    assert_eq!(last.correlation_id.as_deref(), Some("delete-doomed"));
}

#[tokio::test]
async fn malformed_input_is_rejected_with_a_field_message() {
    let vault = spawn_vault().await;
    let p = vault.client("provisioner");
    let (c, msg) = code(
        p.put("Acme Corp", "api", "api_credentials", &secret("x"), "")
            .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(msg.contains("tenant_id"), "{msg}");
    let (c, msg) = code(
        p.put("acme", "api", "api_credentials", &secret(""), "")
            .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(msg.contains("value"), "{msg}");
    let (c, msg) = code(p.get("https://example.com/secret", "").await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(msg.contains("vault://tenant/"), "{msg}");
    assert_eq!(
        code(
            p.take_one_time("vault://tenant/acme/one-time/not-a-uuid", "")
                .await
        )
        .0,
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn client_retries_while_the_vault_is_unavailable() {
    // Reserve a port, start the client against it before the vault listens, then bring the vault up there.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let token = SecretString::from("late-token");
    let client = vault_client::VaultClient::connect(format!("http://{addr}"), &token)
        .unwrap()
        .with_retry(vault_client::RetryPolicy {
            attempts: 50,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            ..Default::default()
        });
    let call = tokio::spawn(async move {
        client
            .put_one_time(
                "acme",
                "owner_password",
                &secret("pw"),
                Duration::from_secs(60),
                "",
            )
            .await
    });
    let (database_url, _pool) = testkit::fresh_database().await.unwrap();
    let acl = vault::AclConfig::default_policy().with_token("signup", &token);
    let mut config = vault::Config::new(
        SecretString::from(database_url),
        testkit::nats_url(),
        ring("k1", &[("k1", 1)]),
        acl,
    );
    config.listen_addr = addr;
    config.namespace = testkit::unique_namespace();
    let app = vault::Application::build(config).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let ot = call.await.unwrap().unwrap();
    assert!(ot.reference.starts_with("vault://tenant/acme/one-time/"));
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
