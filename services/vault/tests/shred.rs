//! Crypto-shredding: ordered against puts by the tenant lock, idempotent, and reported with a
//! machine-readable reason.

mod common;

use std::time::{Duration, Instant};

use common::{events, secret};
use proto::v1::event::Body;
use testkit::spawn_vault_pooled;
use tonic::Code;

#[tokio::test]
async fn a_thousand_puts_racing_shreds_leave_nothing_readable() {
    // A bigger pool than usual, so puts and shreds really run side by side in PostgreSQL.
    let vault = spawn_vault_pooled(testkit::ring("k1", &[("k1", 1)]), 20).await;
    // Time is not what this test is about: on a loaded 2-core machine 1,000 puts queue for 20
    // connections, so every call gets a budget no queue reaches, and each put's answer is the
    // vault's (stored, or refused as shredded), never the client's deadline.
    let patient = vault_client::RetryPolicy {
        attempt_timeout: Duration::from_secs(120),
        budget: Duration::from_secs(240),
        ..Default::default()
    };
    let p = vault.client("provisioner").with_retry(patient.clone());
    let op = vault.client("operator").with_retry(patient);
    let tenant = "racing";
    p.put(tenant, "before", "api_credentials", &secret("v"), "")
        .await
        .unwrap();
    let started = Instant::now();
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let p = p.clone();
        puts.spawn(async move {
            p.put(
                tenant,
                &format!("s{i}"),
                "api_credentials",
                &secret("v"),
                "",
            )
            .await
        });
    }
    // Several shreds land in the middle of the puts.
    let mut shreds = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let op = op.clone();
        shreds.spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            op.shred_tenant(tenant, "race").await
        });
    }
    let (mut stored, mut refused) = (0, 0);
    while let Some(r) = puts.join_next().await {
        match r.unwrap() {
            Ok(_) => stored += 1,
            Err(e) => {
                assert_eq!(e.code(), Some(Code::FailedPrecondition), "{e}");
                assert_eq!(
                    e.reason().as_deref(),
                    Some(vault_client::REASON_TENANT_SHREDDED)
                );
                refused += 1;
            }
        }
    }
    while let Some(r) = shreds.join_next().await {
        r.unwrap().unwrap();
    }
    eprintln!(
        "1000 puts racing 4 shreds: {stored} stored before the shred, {refused} refused, {:?}",
        started.elapsed()
    );
    assert_eq!(stored + refused, 1000);
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM vault.data_keys WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(&vault.pool)
        .await
        .unwrap();
    assert_eq!(keys, 0, "a data key survived the shred");
    for name in std::iter::once("before".to_owned()).chain((0..1000).map(|i| format!("s{i}"))) {
        let e = p.get_by_name(tenant, &name, "").await.unwrap_err();
        assert_eq!(
            e.reason().as_deref(),
            Some(vault_client::REASON_TENANT_SHREDDED),
            "{name}: {e}"
        );
    }
    // One shred did the work; the others found it shredded and recorded nothing.
    let shredded: Vec<_> = events(&vault, tenant)
        .await
        .into_iter()
        .filter(|e| matches!(e.body, Body::TenantKeysShredded(_)))
        .collect();
    assert_eq!(shredded.len(), 1);
    let Body::TenantKeysShredded(s) = &shredded[0].body else {
        unreachable!()
    };
    assert_eq!(s.secrets_shredded as usize, stored + 1);
}

#[tokio::test]
async fn shredding_again_answers_the_same_and_records_no_second_event() {
    let vault = testkit::spawn_vault().await;
    let p = vault.client("provisioner");
    let op = vault.client("operator");
    p.put("gone", "a", "api_credentials", &secret("v"), "")
        .await
        .unwrap();
    assert_eq!(op.shred_tenant("gone", "first").await.unwrap(), 1);
    assert_eq!(op.shred_tenant("gone", "again").await.unwrap(), 1);
    let types: Vec<_> = events(&vault, "gone")
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(types.len(), 2, "{types:?}");
    assert!(types[1].contains("TenantKeysShredded"), "{types:?}");
    // A shredded tenant stores nothing new, and says why in machine-readable form.
    for e in [
        p.put("gone", "b", "api_credentials", &secret("v"), "")
            .await
            .unwrap_err(),
        vault
            .client("signup")
            .put_one_time(
                "gone",
                "owner_password",
                &secret("v"),
                Duration::from_secs(60),
                "",
            )
            .await
            .unwrap_err(),
        p.get_by_name("gone", "a", "").await.unwrap_err(),
    ] {
        assert_eq!(e.code(), Some(Code::FailedPrecondition), "{e}");
        assert_eq!(
            e.reason().as_deref(),
            Some(vault_client::REASON_TENANT_SHREDDED),
            "{e}"
        );
    }
}
