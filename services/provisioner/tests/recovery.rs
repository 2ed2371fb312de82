//! Disaster-recovery drill: 200 tenants in mixed states (130 provisioned — some on claimed
//! standbys — of which 20 suspended and 20 deleted, and 70 failed), then every KV bucket of the
//! namespace and the projection's database are lost. The services refuse to work on what they no longer know; the recovery
//! (what `tenantctl recover` runs) and a rebuild bring it all back: a taken name is refused, an
//! idempotent retry gets its tenant back, each bench's counter equals the sites on it, a new
//! signup is placed and provisioned, and the read model equals the fold of the log.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{FleetOptions, PASSWORD, TestStack};
use eventstore::Body;
use futures::{StreamExt, TryStreamExt};
use proto::v1::{self as pb, signup_service_client::SignupServiceClient};
use tenancy::Status;

const SIGNUPS: usize = 130;
const FAILED: usize = 70;
const SUSPENDED: usize = 20;
const DELETED: usize = 20;

fn signup_request(i: usize) -> pb::SignupRequest {
    pb::SignupRequest {
        email: format!("owner{i}@dr{i:03}.example.com"),
        password: PASSWORD.to_owned(),
        full_name: "Grace Hopper".to_owned(),
        organisation: format!("Drill {i} Ltd"),
        subdomain: format!("dr{i:03}"),
        plan: "starter".to_owned(),
        region: String::new(),
        idempotency_key: format!("drill-key-{i}"),
        human_check_token: String::new(),
    }
}

/// Every KV bucket of the namespace, deleted (their streams).
async fn lose_every_bucket(stack: &TestStack) -> Vec<String> {
    let js = stack.store.jetstream();
    let prefix = format!("KV_{}", stack.store.bucket_name(""));
    let names: Vec<String> = js.stream_names().try_collect().await.unwrap();
    let mut lost = Vec::new();
    for name in names.into_iter().filter(|n| n.starts_with(&prefix)) {
        js.delete_stream(&name).await.unwrap();
        lost.push(name);
    }
    lost
}

/// Waits (up to 5 minutes) until the provisioner's consumers have nothing pending or in flight.
async fn settle(stack: &TestStack) {
    let stream = stack
        .store
        .jetstream()
        .get_stream(stack.store.stream_name())
        .await
        .unwrap();
    let idle = testkit::within(Duration::from_secs(300), || {
        let stream = stream.clone();
        async move {
            for c in ["provisioner-signup", "provisioner-lifecycle"] {
                let i = stream.consumer_info(c).await.ok()?;
                if i.num_pending > 0 || i.num_ack_pending > 0 {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    assert!(idle.is_some(), "the provisioner did not finish its work");
}

async fn assert_has(stack: &TestStack, tenant: &str, ty: &str) {
    let events = stack.events(tenant).await;
    assert!(
        events.iter().any(|e| e.event_type == ty),
        "tenant {tenant} has no {ty}: {:?}",
        events.iter().map(|e| &e.event_type).collect::<Vec<_>>()
    );
}

/// `/readyz` of an admin address: (status, body).
async fn readyz(admin: std::net::SocketAddr) -> (u16, String) {
    let r = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// Each bench's counter in `BENCH_SITES`.
async fn counters(stack: &TestStack) -> BTreeMap<String, u32> {
    let kv = stack.store.key_value("BENCH_SITES", 1, "").await.unwrap();
    let mut out = BTreeMap::new();
    for b in ["bench-a", "bench-b"] {
        let n = kv
            .get(b)
            .await
            .unwrap()
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
            .unwrap_or(0);
        out.insert(b.to_owned(), n);
    }
    out
}

/// Sites that are really on each bench (tenants' and standbys').
fn sites_on_benches(stack: &TestStack) -> BTreeMap<String, u32> {
    ["bench-a", "bench-b"]
        .into_iter()
        .map(|b| (b.to_owned(), stack.bench(b).site_dirs().len() as u32))
        .collect()
}

#[tokio::test]
async fn every_bucket_and_the_read_model_come_back_from_the_log() {
    let stack = TestStack::new(
        2,
        FleetOptions {
            ops: 4,
            standby: 1,
            ..Default::default()
        },
    )
    .await;
    let started = std::time::Instant::now();
    let prov = stack.start_provisioner(stack.config()).await;
    let signup = testkit::spawn_signup(&stack.vault, |c| {
        c.rate_per_address = 100_000;
    })
    .await;
    let client = SignupServiceClient::connect(signup.endpoint())
        .await
        .unwrap();
    let projection =
        testkit::spawn_projection(testkit::projection_config(&stack.namespace).await).await;

    eprintln!("drill: signing up ({:?})", started.elapsed());
    // Signups through the gateway (with idempotency keys), and some that fail before placement.
    let accepted: Vec<String> = futures::stream::iter(0..SIGNUPS)
        .map(|i| {
            let mut client = client.clone();
            async move {
                client
                    .signup(signup_request(i))
                    .await
                    .expect("signup accepted")
                    .into_inner()
                    .tenant_id
            }
        })
        .buffered(16)
        .collect()
        .await;
    let mut failed = Vec::new();
    for i in 0..FAILED {
        failed.push(
            stack
                .request_tenant(&format!("fail{i:03}"), "no-such-plan", PASSWORD)
                .await,
        );
    }
    eprintln!("drill: waiting for provisioning ({:?})", started.elapsed());
    // Waiting on the consumers, not polling 200 subjects: the polls alone would slow the
    // provisioner down on a 2-core machine.
    settle(&stack).await;
    for t in &accepted {
        assert_has(&stack, t, "TenantProvisioned").await;
    }
    for t in &failed {
        assert_has(&stack, t, "ProvisioningFailed").await;
    }
    for t in &accepted[..SUSPENDED] {
        stack
            .request(Body::SuspensionRequested(pb::SuspensionRequested {
                tenant_id: t.clone(),
                reason: "drill".into(),
                requested_by: None,
            }))
            .await;
    }
    let deleted = &accepted[SUSPENDED..SUSPENDED + DELETED];
    for t in deleted {
        stack
            .request(Body::DeletionRequested(pb::DeletionRequested {
                tenant_id: t.clone(),
                reason: "drill".into(),
                requested_by: None,
            }))
            .await;
    }
    settle(&stack).await;
    for t in &accepted[..SUSPENDED] {
        assert_has(&stack, t, "SiteSuspended").await;
    }
    for t in deleted {
        assert_has(&stack, t, "SiteDeleted").await;
    }
    // Let the pool refill settle, then stop everything that writes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    prov.stop().await;
    signup.stop();
    projection.stop().await;
    let sites_before = sites_on_benches(&stack);
    assert_eq!(
        counters(&stack).await,
        sites_before,
        "counters before the loss"
    );
    let mut from_standby = 0;
    for t in &accepted {
        let events = stack.events(t).await;
        if events
            .iter()
            .any(|e| matches!(&e.body, Body::TenantProvisioned(p) if p.from_standby))
        {
            from_standby += 1;
        }
    }
    assert!(from_standby > 0, "some tenants came from the warm pool");

    eprintln!("drill: losing every bucket ({:?})", started.elapsed());
    // The disaster: every bucket, and the read model's database.
    let lost = lose_every_bucket(&stack).await;
    assert!(lost.len() >= 6, "{lost:?}");

    // A provisioner started now refuses to work, and says what to run.
    let blocked = stack.start_provisioner(stack.config()).await;
    let (status, body) = readyz(blocked.admin).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("derived state holds the log"), "{body}");
    let probe = stack
        .request_tenant("probe-before", "starter", PASSWORD)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        stack
            .events(&probe)
            .await
            .iter()
            .all(|e| !matches!(e.body, Body::PlacementChosen(_))),
        "nothing is placed while the counters are gone"
    );

    eprintln!("drill: recovering ({:?})", started.elapsed());
    // The recovery, as `tenantctl recover` runs it.
    let signup_report = signup::recovery::recover(&stack.store, false, |_, _| {})
        .await
        .unwrap();
    let prov_report = provisioner::recovery::recover(&stack.store, false, |_, _| {})
        .await
        .unwrap();
    let restored = |reports: &[eventstore::derived::BucketReport], name: &str| {
        reports
            .iter()
            .find(|b| b.bucket == name)
            .map(|b| (b.restored.len(), b.differing.len()))
            .unwrap()
    };
    // Every requested name (the probe's too), every idempotent answer.
    assert_eq!(
        restored(&signup_report.buckets, "SUBDOMAINS"),
        (SIGNUPS + FAILED + 1, 0)
    );
    assert_eq!(
        restored(&signup_report.buckets, "SIGNUP_IDEMPOTENCY"),
        (SIGNUPS, 0)
    );
    let live = SIGNUPS - DELETED;
    let (placements, differing) = restored(&prov_report.buckets, "PLACEMENTS");
    assert_eq!(differing, 0);
    assert!(placements >= live, "{prov_report:?}");
    assert_eq!(restored(&prov_report.buckets, "SITE_NAMES"), (live, 0));
    // Counters equal the sites really on each bench (tenants' and ready standbys').
    assert_eq!(counters(&stack).await, sites_before);
    let again = provisioner::recovery::recover(&stack.store, true, |_, _| {})
        .await
        .unwrap();
    assert!(
        again
            .buckets
            .iter()
            .all(|b| b.restored.is_empty() && b.differing.is_empty()),
        "a second run finds nothing to do: {again:?}"
    );

    // The provisioner opens by itself and works again: the probe is placed and provisioned.
    let ready = testkit::within(Duration::from_secs(30), || async {
        (readyz(blocked.admin).await.0 == 200).then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "the provisioner is ready again after the recovery: {:?}",
        readyz(blocked.admin).await
    );
    stack.wait_for(&probe, "TenantProvisioned", 120).await;

    eprintln!("drill: signup checks ({:?})", started.elapsed());
    // Signup: a taken name is refused; an idempotent retry gets its tenant back.
    let signup = testkit::spawn_signup(&stack.vault, |_| {}).await;
    let mut client = SignupServiceClient::connect(signup.endpoint())
        .await
        .unwrap();
    let mut taken = signup_request(5);
    taken.idempotency_key = String::new();
    taken.email = "mallory@example.com".into();
    let refused = client.signup(taken).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists, "{refused:?}");
    let retried = client.signup(signup_request(7)).await.unwrap().into_inner();
    assert_eq!(retried.tenant_id, accepted[7]);
    let deleted_name = signup_request(SUSPENDED);
    let refused = client
        .signup(pb::SignupRequest {
            idempotency_key: String::new(),
            ..deleted_name
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::AlreadyExists,
        "a deleted tenant keeps its name"
    );

    eprintln!("drill: rebuilding the read model ({:?})", started.elapsed());
    // The read model: an empty database is refused until rebuilt, then equals the fold.
    let projection =
        testkit::spawn_projection(testkit::projection_config(&stack.namespace).await).await;
    testkit::within(Duration::from_secs(20), || async {
        (!projection.readiness.is_ready()).then_some(())
    })
    .await
    .expect("the empty read model is not ready");
    projection::rebuild(
        &projection.store,
        &stack.store,
        &projection::RebuildOptions::default(),
        |_| {},
    )
    .await
    .unwrap();
    testkit::within(Duration::from_secs(20), || async {
        projection.readiness.is_ready().then_some(())
    })
    .await
    .expect("ready after the rebuild");
    let g = projection.store.active().await.unwrap();
    let rows = projection.store.all_tenants_in(&g).await.unwrap();
    let mut all = accepted.clone();
    all.extend(failed.iter().cloned());
    all.push(probe.clone());
    assert_eq!(rows.len(), all.len());
    for row in &rows {
        let events = stack.store.load_tenant(&row.tenant_id).await.unwrap();
        let envelopes: Vec<pb::Event> = events.iter().map(projection::apply::envelope).collect();
        let fold = tenancy::fold_events(&envelopes);
        assert_eq!(row.status, fold.status, "{}", row.tenant_id);
        assert_eq!(row.bench, fold.bench, "{}", row.tenant_id);
        assert_eq!(row.subdomain, fold.subdomain, "{}", row.tenant_id);
    }
    let status_of = |t: &str| rows.iter().find(|r| r.tenant_id == t).unwrap().status;
    assert_eq!(status_of(&accepted[0]), Status::Suspended);
    assert_eq!(status_of(&deleted[0]), Status::Deleted);
    assert_eq!(status_of(&failed[0]), Status::Failed);
    assert_eq!(status_of(&accepted[SIGNUPS - 1]), Status::Active);

    projection.stop().await;
    signup.stop();
    blocked.stop().await;
}
