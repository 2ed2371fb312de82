//! A change commits exactly when its audit row does.

mod common;

use std::time::Duration;

use common::{audit_rows, outbox_len, secret};
use tonic::Code;

/// Makes the database refuse `allowed` audit rows of `operation` (as a full disk or a broken
/// audit table would).
async fn refuse_allowed_audit(pool: &sqlx::PgPool, operation: &str) {
    sqlx::query(&format!(
        "CREATE OR REPLACE FUNCTION vault.refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.outcome = 'allowed' AND NEW.operation = '{operation}' THEN
             RAISE EXCEPTION 'audit refused';
           END IF;
           RETURN NEW;
         END $$"
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("CREATE OR REPLACE TRIGGER refuse_audit BEFORE INSERT ON vault.audit_log FOR EACH ROW EXECUTE FUNCTION vault.refuse_audit()")
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_change_whose_audit_row_cannot_be_written_does_not_happen() {
    let vault = testkit::spawn_vault().await;
    let p = vault.client("provisioner");
    let signup = vault.client("signup");
    p.put("acme", "a", "api_credentials", &secret("v1"), "")
        .await
        .unwrap();
    let ot = signup
        .put_one_time(
            "acme",
            "owner_password",
            &secret("pw"),
            Duration::from_secs(60),
            "",
        )
        .await
        .unwrap();
    common::drained(&vault.pool).await;

    refuse_allowed_audit(&vault.pool, "put").await;
    let e = p
        .put("acme", "a", "api_credentials", &secret("v2"), "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::Internal), "{e}");
    assert_eq!(p.get_by_name("acme", "a", "").await.unwrap().version, 1);

    refuse_allowed_audit(&vault.pool, "take_one_time").await;
    assert!(p.take_one_time(&ot.reference, "").await.is_err());
    refuse_allowed_audit(&vault.pool, "revoke").await;
    assert!(p.revoke("vault://tenant/acme/a", "").await.is_err());
    refuse_allowed_audit(&vault.pool, "shred").await;
    assert!(
        vault
            .client("operator")
            .shred_tenant("acme", "")
            .await
            .is_err()
    );
    refuse_allowed_audit(&vault.pool, "put_one_time").await;
    assert!(
        signup
            .put_one_time(
                "acme",
                "owner_password",
                &secret("x"),
                Duration::from_secs(60),
                ""
            )
            .await
            .is_err()
    );
    // None of them happened: no event, the secret and the one-time secret are intact.
    assert_eq!(outbox_len(&vault.pool).await, 0);
    let one_time: i64 = sqlx::query_scalar("SELECT count(*) FROM vault.one_time_secrets")
        .fetch_one(&vault.pool)
        .await
        .unwrap();
    assert_eq!(one_time, 1);
    refuse_allowed_audit(&vault.pool, "none").await;
    assert_eq!(p.get_by_name("acme", "a", "").await.unwrap().version, 1);
    assert_eq!(
        common::text(&p.take_one_time(&ot.reference, "").await.unwrap()),
        "pw"
    );
    // Each failed attempt is still audited, as an error, by its own insert.
    let outcomes: Vec<String> = audit_rows(&vault.pool, "acme")
        .await
        .into_iter()
        .map(|(_, op, outcome)| format!("{op}:{outcome}"))
        .collect();
    assert_eq!(
        outcomes,
        [
            "put:allowed",
            "put_one_time:allowed",
            "put:error",
            "get:allowed",
            "take_one_time:error",
            "revoke:error",
            "shred:error",
            "put_one_time:error",
            "get:allowed",
            "take_one_time:allowed"
        ]
    );
}
