//! Fault injection around the provisioner's vault calls: the vault's PostgreSQL connections are
//! killed again and again while tenants are provisioned (so between any two statements of a
//! move, a get or a put, and between a commit and its answer). Every owner ends able to log in
//! with the password they chose — at once, or after an operator retry of a tenant that failed as
//! retryable — and no failure ever says the one-time password was already used. (Killing the
//! vault process between commit and publish is the vault's own outbox test.)

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{FleetOptions, PASSWORD, TestStack, assert_site_works, provisioned};
use eventstore::Body;
use proto::v1 as pb;

const TENANTS: usize = 6;

/// Kills every connection to `database` but the caller's own, every `every`, until `stop`.
fn connection_killer(
    server_url: String,
    database: String,
    every: Duration,
    stop: Arc<AtomicBool>,
    kills: Arc<AtomicU32>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pool = sqlx::PgPool::connect(&server_url).await.expect("postgres");
        while !stop.load(Ordering::Relaxed) {
            let killed: Vec<(bool,)> = sqlx::query_as(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&database)
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
            kills.fetch_add(
                u32::try_from(killed.len()).unwrap_or(u32::MAX),
                Ordering::Relaxed,
            );
            tokio::time::sleep(every).await;
        }
    })
}

/// What each failure of a tenant said, for assertions and messages.
fn failures(events: &[eventstore::RecordedEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            Body::ProvisioningStepFailed(f) => Some(f.reason.clone()),
            Body::ProvisioningFailed(f) => Some(f.reason.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn killed_vault_connections_never_lose_an_owner_password() {
    let stack = TestStack::new(1, FleetOptions::default()).await;
    let prov = stack.start_provisioner(stack.config()).await;
    let database = stack
        .vault
        .database_url
        .rsplit('/')
        .next()
        .and_then(|d| d.split('?').next())
        .expect("a database in the URL")
        .to_owned();

    let mut tenants = Vec::new();
    for i in 0..TENANTS {
        tenants.push((
            stack
                .request_tenant(&format!("vfault{i}"), "starter", PASSWORD)
                .await,
            format!("owner@vfault{i}.example.com"),
        ));
    }
    // Started after the requests, so the signup side of the test is not what is faulted.
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU32::new(0));
    let killer = connection_killer(
        testkit::database_url(),
        database,
        Duration::from_millis(150),
        Arc::clone(&stop),
        Arc::clone(&kills),
    );

    // Each tenant ends provisioned or failed; which one is up to the faults.
    let started = Instant::now();
    let mut ended: Vec<Vec<eventstore::RecordedEvent>> = Vec::new();
    for (tenant, _) in &tenants {
        loop {
            let events = stack.events(tenant).await;
            let over = events.iter().any(|e| {
                e.event_type == "TenantProvisioned" || e.event_type == "ProvisioningFailed"
            });
            if over {
                ended.push(events);
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "tenant {tenant} neither provisioned nor failed: {:?}",
                events.iter().map(|e| &e.event_type).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    killer.await.expect("killer");
    assert!(
        kills.load(Ordering::Relaxed) > 0,
        "the test killed no vault connection"
    );

    let mut retried = 0;
    for ((tenant, owner), events) in tenants.iter().zip(&ended) {
        let said = failures(events);
        assert!(
            !said.iter().any(|r| r.contains("already")),
            "tenant {tenant}: a password was lost: {said:?}"
        );
        let events = match events.iter().find_map(|e| match &e.body {
            Body::ProvisioningFailed(f) => Some(f.clone()),
            _ => None,
        }) {
            None => events.clone(),
            Some(failed) => {
                assert!(
                    failed.retryable,
                    "tenant {tenant} failed for good: {said:?}"
                );
                retried += 1;
                stack
                    .request(Body::ProvisioningRetryRequested(
                        pb::ProvisioningRetryRequested {
                            tenant_id: tenant.clone(),
                            reason: "vault database back".into(),
                            requested_by: None,
                            attempt: 1,
                        },
                    ))
                    .await;
                stack.wait_for(tenant, "TenantProvisioned", 90).await
            }
        };
        let p = provisioned(&events);
        assert_site_works(&stack, &stack.benches[0].base_url, tenant, &p.site, owner).await;
    }
    eprintln!(
        "vault faults: {} connections killed; {TENANTS} owners log in, {retried} after a retry",
        kills.load(Ordering::Relaxed)
    );
    prov.stop().await;
}
