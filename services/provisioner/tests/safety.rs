//! Never destroy what isn't ours, and fail loudly: lost subdomain claims, permanent error
//! classes, a failing Finish, a site check that times out, and a stream that goes away.

mod common;

use std::time::Duration;

use common::{FleetOptions, PASSWORD, TestStack, assert_site_works, mariadb_has, provisioned};
use eventstore::Body;
use proto::v1::{self as pb, ProvisioningStep, signup_service_client::SignupServiceClient};
use provisioner::process::db_name_for;

/// The ProvisioningFailed among `events`.
fn failure(events: &[eventstore::RecordedEvent]) -> pb::ProvisioningFailed {
    events
        .iter()
        .find_map(|e| match &e.body {
            Body::ProvisioningFailed(f) => Some(f.clone()),
            _ => None,
        })
        .expect("ProvisioningFailed")
}

fn signup_request(subdomain: &str, email: &str) -> pb::SignupRequest {
    pb::SignupRequest {
        email: email.to_owned(),
        password: PASSWORD.to_owned(),
        full_name: "Grace Hopper".to_owned(),
        organisation: "Acme Widgets".to_owned(),
        subdomain: subdomain.to_owned(),
        plan: "starter".to_owned(),
        region: String::new(),
        idempotency_key: String::new(),
        human_check_token: String::new(),
    }
}

async fn purge(stack: &TestStack, bucket: &str, key: &str) {
    let kv = stack.store.key_value(bucket, 1, "").await.unwrap();
    kv.purge(key).await.unwrap();
}

#[tokio::test]
async fn lost_subdomain_claims_cannot_touch_an_active_tenants_site() {
    let stack = TestStack::new(1, FleetOptions::default()).await;
    let prov = stack.start_provisioner(stack.config()).await;
    let signup = testkit::spawn_signup(&stack.vault, |_| {}).await;
    let mut client = SignupServiceClient::connect(signup.endpoint())
        .await
        .unwrap();

    let first = client
        .signup(signup_request("acme", "grace@acme.example.com"))
        .await
        .unwrap()
        .into_inner();
    let events = stack
        .wait_for(&first.tenant_id, "TenantProvisioned", 60)
        .await;
    let site = provisioned(&events).site;
    let bench = stack.bench("bench-a");

    // Signup's claim is lost (a NATS store restored from an older backup): a second signup for
    // the same subdomain is accepted. The provisioner's own subdomain record stops it before
    // anything is placed.
    purge(&stack, "SUBDOMAINS", "acme").await;
    let second = client
        .signup(signup_request("acme", "mallory@example.com"))
        .await
        .expect("accepted: signup's claim is gone")
        .into_inner();
    let failed = failure(
        &stack
            .wait_for(&second.tenant_id, "ProvisioningFailed", 60)
            .await,
    );
    assert!(
        failed.reason.contains(&first.tenant_id) && failed.reason.contains("already belongs"),
        "{}",
        failed.reason
    );
    assert_eq!(failed.step, ProvisioningStep::Place as i32);

    // Both records lost: the second tenant is placed on the bench that has the site, and the
    // site's owner marker stops it there.
    purge(&stack, "SUBDOMAINS", "acme").await;
    purge(&stack, "SITE_NAMES", "acme").await;
    let third = client
        .signup(signup_request("acme", "eve@example.com"))
        .await
        .expect("accepted again")
        .into_inner();
    let events = stack
        .wait_for(&third.tenant_id, "ProvisioningFailed", 60)
        .await;
    let failed = failure(&events);
    assert!(
        failed
            .reason
            .contains(&format!("belongs to tenant {}", first.tenant_id)),
        "{}",
        failed.reason
    );
    assert_eq!(failed.step, ProvisioningStep::CreateSite as i32);
    assert!(
        !events.iter().any(|e| e.event_type == "SiteCreated"),
        "the site was never taken as the third tenant's"
    );
    assert_eq!(bench.started("new-site", &site), 1, "no second new-site");
    assert_eq!(bench.started("drop-site", &site), 0, "nothing dropped");

    // The first tenant's site, database and owner are untouched.
    assert!(mariadb_has(&db_name_for(&first.tenant_id)).await);
    assert_eq!(
        bench.site_config(&site)["tenantry_tenant_id"],
        first.tenant_id
    );
    assert_site_works(
        &stack,
        &bench.base_url,
        &first.tenant_id,
        &site,
        "grace@acme.example.com",
    )
    .await;
    prov.stop().await;
}

#[tokio::test]
async fn wrong_database_root_credentials_fail_at_once_and_leave_nothing() {
    let stack = TestStack::new(
        1,
        FleetOptions {
            root_ref: Some("vault://tenant/fleet/bench-a-db-root".into()),
            ..Default::default()
        },
    )
    .await;
    stack
        .vault_client("provisioner")
        .put_string(
            "fleet",
            "bench-a-db-root",
            "db_root_password",
            &"not-the-root-password".to_owned().into(),
            "test",
        )
        .await
        .unwrap();
    let prov = stack.start_provisioner(stack.config()).await;
    let tenant = stack.request_tenant("denied", "starter", PASSWORD).await;
    let events = stack.wait_for(&tenant, "ProvisioningFailed", 60).await;
    let failed = failure(&events);
    assert_eq!(failed.step, ProvisioningStep::CreateSite as i32);
    assert!(failed.reason.contains("root password"), "{}", failed.reason);
    assert!(failed.retryable);
    // Access denied is permanent: one attempt, not three.
    let attempts = events
        .iter()
        .filter(|e| e.event_type == "ProvisioningStepFailed")
        .count();
    assert_eq!(attempts, 1);
    assert!(stack.bench("bench-a").site_dirs().is_empty());
    prov.stop().await;
}

#[tokio::test]
async fn an_app_missing_on_the_bench_fails_at_once() {
    let stack = TestStack::new(
        1,
        FleetOptions {
            // The fleet says the bench has hrms; it does not.
            sim_apps: "erpnext",
            ..Default::default()
        },
    )
    .await;
    let prov = stack.start_provisioner(stack.config()).await;
    let tenant = stack.request_tenant("noapp", "pro", PASSWORD).await;
    let events = stack.wait_for(&tenant, "ProvisioningFailed", 60).await;
    let failed = failure(&events);
    assert_eq!(failed.step, ProvisioningStep::InstallApps as i32);
    assert!(failed.reason.contains("hrms"), "{}", failed.reason);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type == "ProvisioningStepFailed")
            .count(),
        1
    );
    assert!(!mariadb_has(&db_name_for(&tenant)).await, "rolled back");
    prov.stop().await;
}

/// The provisioner may read the owner's pending password but not revoke it: Finish fails.
const NO_REVOKE: &str = r#"
[callers.provisioner]
allow = [
  { kind = "site_admin_password", ops = ["put", "get", "revoke"] },
  { kind = "api_credentials", ops = ["put", "get", "revoke"] },
  { kind = "db_root_password", ops = ["put", "get", "revoke"] },
  { kind = "owner_password", ops = ["take_one_time", "move_one_time", "get"] },
]
"#;

#[tokio::test]
async fn a_failing_finish_is_reported_as_finish_and_rolled_back() {
    let stack = TestStack::new(
        1,
        FleetOptions {
            vault_acl: Some(NO_REVOKE),
            ..Default::default()
        },
    )
    .await;
    let prov = stack.start_provisioner(stack.config()).await;
    let tenant = stack
        .request_tenant("unfinished", "starter", PASSWORD)
        .await;
    let events = stack.wait_for(&tenant, "ProvisioningFailed", 60).await;
    let step_failures: Vec<i32> = events
        .iter()
        .filter_map(|e| match &e.body {
            Body::ProvisioningStepFailed(f) => Some(f.step),
            _ => None,
        })
        .collect();
    assert_eq!(step_failures, [ProvisioningStep::Finish as i32]);
    assert_eq!(failure(&events).step, ProvisioningStep::Finish as i32);
    assert!(events.iter().any(|e| e.event_type == "ApiAccessVerified"));
    assert!(!events.iter().any(|e| e.event_type == "TenantProvisioned"));
    assert!(stack.bench("bench-a").site_dirs().is_empty(), "rolled back");
    prov.stop().await;
}

#[tokio::test]
async fn a_site_check_that_times_out_removes_nothing() {
    let mut stack = TestStack::new(
        1,
        FleetOptions {
            command_limit_secs: 2,
            ..Default::default()
        },
    )
    .await;
    let prov = stack.start_provisioner(stack.config()).await;
    let tenant = stack.request_tenant("sturdy", "starter", PASSWORD).await;
    let site = provisioned(&stack.wait_for(&tenant, "TenantProvisioned", 60).await).site;

    // Every `execute` (how bench reads a site's apps) hangs past its time limit while the
    // tenant is deleted.
    stack.benches[0].set_sim_toml("stall = \"execute:10s\"\n");
    stack
        .request(Body::DeletionRequested(pb::DeletionRequested {
            tenant_id: tenant.clone(),
            reason: "test".into(),
            ..Default::default()
        }))
        .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let bench = stack.bench("bench-a");
    assert!(
        bench.site_dirs().contains(&site),
        "nothing removed on a guess"
    );
    assert!(mariadb_has(&db_name_for(&tenant)).await);
    assert!(
        !stack
            .types(&tenant)
            .await
            .contains(&"SiteDeleted".to_owned())
    );
    assert_eq!(bench.started("drop-site", &site), 0);

    // Once the bench answers again, the deletion goes through.
    stack.benches[0].set_sim_toml("");
    stack.wait_for(&tenant, "SiteDeleted", 120).await;
    assert!(!stack.bench("bench-a").site_dirs().contains(&site));
    assert!(!mariadb_has(&db_name_for(&tenant)).await);
    prov.stop().await;
}

async fn readyz(admin: std::net::SocketAddr) -> (u16, String) {
    let r = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn readiness_drops_while_the_event_stream_is_gone_and_work_resumes_after() {
    let stack = TestStack::new(1, FleetOptions::default()).await;
    let prov = stack.start_provisioner(stack.config()).await;
    testkit::eventually(|| async { (readyz(prov.admin).await.0 == 200).then_some(()) }).await;

    stack
        .store
        .jetstream()
        .delete_stream(stack.store.stream_name())
        .await
        .unwrap();
    let body = testkit::eventually(|| async {
        let (status, body) = readyz(prov.admin).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(body.contains("provisioner-"), "{body}");

    stack.store.ensure_stream().await.unwrap();
    testkit::eventually(|| async { (readyz(prov.admin).await.0 == 200).then_some(()) }).await;
    let tenant = stack.request_tenant("phoenix", "starter", PASSWORD).await;
    stack.wait_for(&tenant, "TenantProvisioned", 60).await;
    prov.stop().await;
}
