//! `tenantry dev` runs every service in one process behind one admin port: `/readyz` turns 200
//! once every service's dependencies and consumers are up, and `/metrics` holds every service's
//! families once each (the reference OpenMetrics parser refuses a family written twice).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{free_port, parse_openmetrics};

const TENANTRY: &str = env!("CARGO_BIN_EXE_tenantry");

#[tokio::test]
async fn tenantry_dev_serves_one_admin_port_for_every_service() {
    testkit::init_logging();
    let namespace = testkit::unique_namespace();
    let (database_url, _pool) = testkit::fresh_database()
        .await
        .expect("PostgreSQL must be running (just up)");
    let work = tempfile::tempdir().expect("temp dir");
    let admin = free_port();
    let addr = |port: u16| format!("127.0.0.1:{port}");
    let log = std::fs::File::create(work.path().join("dev.log")).unwrap();
    let mut cmd = tokio::process::Command::new(TENANTRY);
    cmd.arg("dev")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("TENANTRY_") || k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("NATS_URL", testkit::nats_url())
        .env("TENANTRY_NAMESPACE", &namespace)
        .env("DATABASE_URL", &database_url)
        .env("TENANTRY_DEV_DIR", work.path().join("data"))
        .env("TENANTRY_DEV_FRAPPE_PORT", free_port().to_string())
        .env("TENANTRY_DEV_AUTHENTIK_PORT", free_port().to_string())
        .env("TENANTRY_SIGNUP_ADDR", addr(free_port()))
        .env("TENANTRY_SIGNUP_OPERATOR_ADDR", addr(free_port()))
        .env("TENANTRY_DIRECTORY_ADDR", addr(free_port()))
        .env("TENANTRY_VAULT_ADDR", addr(free_port()))
        .env("TENANTRY_BILLING_LISTEN", addr(free_port()))
        .env("TENANTRY_ADMIN_ADDR", addr(admin))
        .env("TENANTRY_DEV_STANDBY", "0")
        .env("RUST_LOG", "info");
    let mut dev = cmd.spawn().expect("tenantry dev starts");
    let logs = || std::fs::read_to_string(work.path().join("dev.log")).unwrap_or_default();
    let get = |path: &'static str| async move {
        let r = reqwest::get(format!("http://127.0.0.1:{admin}{path}"))
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.unwrap_or_default()))
    };

    let mut last = None;
    for _ in 0..600 {
        last = get("/readyz").await;
        if matches!(&last, Some((200, _))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        matches!(&last, Some((200, _))),
        "tenantry dev never became ready; /readyz said {last:?}\n{}",
        logs()
    );
    // Every consumer of every service reports into the one registry (its gauges refresh every
    // few seconds).
    let consumers = [
        "provisioner-signup",
        "provisioner-lifecycle",
        "identity-provisioning",
        "identity-lifecycle",
        "billing-provisioning",
        "projection-tenants",
    ];
    let mut text = String::new();
    for _ in 0..100 {
        text = get("/metrics").await.map(|(_, t)| t).unwrap_or_default();
        if consumers
            .iter()
            .all(|c| text.contains(&format!("tenantry_consumer_pending{{consumer=\"{c}\"}}")))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let families = parse_openmetrics("tenantry dev", &text);
    for consumer in consumers {
        assert!(
            text.contains(&format!(
                "tenantry_consumer_pending{{consumer=\"{consumer}\"}}"
            )),
            "{consumer} missing from the shared /metrics:\n{text}"
        );
    }
    for family in [
        "tenantry_consumer_pending",
        "tenantry_dead_letters",
        "tenantry_projection_lag_events",
        "tenantry_provisioner_overhead_seconds",
    ] {
        assert!(families.contains(family), "{family} missing: {families:?}");
    }
    let (status, body) = get("/healthz").await.expect("healthz answers");
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    // SIGTERM, as an operator stops it: a graceful stop also ends the frappe-sim it started
    // (SIGKILL would orphan it).
    let pid = dev.id().expect("running").to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let stopped = tokio::time::timeout(Duration::from_secs(60), dev.wait()).await;
    assert!(
        matches!(stopped, Ok(Ok(status)) if status.success()),
        "tenantry dev did not stop cleanly on SIGTERM: {stopped:?}\n{}",
        logs()
    );
    let store = eventstore::EventStore::connect(
        &eventstore::StoreConfig::new(testkit::nats_url()).with_namespace(namespace),
    )
    .await
    .unwrap();
    store.destroy().await.unwrap();
}
