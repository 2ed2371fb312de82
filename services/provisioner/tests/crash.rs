//! Kill-and-restart: the provisioner binary is killed (it aborts itself through its crash hook,
//! which is a `kill -9` at an exact point) right before and right after each step's event is
//! recorded, and inside steps between a side effect and its event (after new-site, after the
//! owner marker, after the owner user, after generating the API keys), then restarted; every
//! tenant must end provisioned exactly once, with one new-site per site.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{FleetOptions, TestStack, spawn_provisioner_process};
use eventstore::Body;

const POINTS: [&str; 8] = [
    "PlacementChosen",
    "SiteCreated",
    "AppsInstalled",
    "SiteConfigured",
    "OwnerUserCreated",
    "ApiCredentialsIssued",
    "ApiAccessVerified",
    "TenantProvisioned",
];

#[tokio::test]
async fn killed_at_every_step_boundary_each_tenant_is_provisioned_exactly_once() {
    let stack = TestStack::new(1, FleetOptions::default()).await;
    let fleet_file = stack.benches[0].path().join("fleet.toml");
    std::fs::write(&fleet_file, &stack.fleet_toml).unwrap();
    let mut tenants = Vec::new();
    let mut hooks: Vec<String> = POINTS
        .iter()
        .flat_map(|p| [format!("before:{p}"), format!("after:{p}")])
        .collect();
    hooks.extend(["new-site", "marker", "owner", "keys"].map(|p| format!("at:{p}")));
    for (i, hook) in hooks.iter().enumerate() {
        {
            let sub = format!("crash{i:02}");
            let tenant = stack
                .request_tenant(&sub, "starter", "Pw-For-Crash-Tests-1")
                .await;
            tenants.push((tenant, sub));
            let mut child = spawn_provisioner_process(
                &stack,
                &fleet_file,
                &[("TENANTRY_PROVISIONER_CRASH_AT", hook.as_str())],
            );
            // The hook fires on the first matching append, from this tenant or one redelivered
            // from an earlier round; either way the process dies at a step boundary.
            let mut status = None;
            for _ in 0..2400 {
                status = child.try_wait().unwrap();
                if status.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let Some(status) = status else {
                let _ = child.kill();
                panic!("{hook}: the provisioner never reached its crash point");
            };
            assert!(
                !status.success(),
                "{hook}: the provisioner should have aborted"
            );
        }
    }
    // A clean instance finishes everything.
    let mut child = spawn_provisioner_process(&stack, &fleet_file, &[]);
    let bench = &stack.benches[0];
    for (tenant, sub) in &tenants {
        let events = stack.wait_for(tenant, "TenantProvisioned", 120).await;
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &events {
            *counts.entry(e.event_type.as_str()).or_default() += 1;
        }
        for p in POINTS {
            assert_eq!(
                counts.get(p),
                Some(&1),
                "tenant {tenant}: {p} in {counts:?}"
            );
        }
        let Some(Body::TenantProvisioned(p)) = events.last().map(|e| &e.body) else {
            panic!("last event is not TenantProvisioned");
        };
        // One site, created once; one owner; one key pair (the vaulted one works).
        assert_eq!(bench.started("new-site", &p.site), 1, "{tenant}");
        let creds = stack
            .vault_client("provisioner")
            .get_by_name(tenant, "api-credentials", "test")
            .await
            .expect("one key pair in the vault");
        let json: serde_json::Value = serde_json::from_str(secrecy::ExposeSecret::expose_secret(
            &creds.to_secret_string().unwrap(),
        ))
        .unwrap();
        let client = frappe::FrappeClient::new(
            &bench.base_url,
            frappe::SiteName::parse(&p.site).unwrap(),
            frappe::SiteRouting::Header,
        )
        .unwrap();
        let who = client
            .with_token(&frappe::ApiCredentials {
                api_key: json["api_key"].as_str().unwrap().to_owned(),
                api_secret: json["api_secret"].as_str().unwrap().to_owned().into(),
            })
            .get_logged_user()
            .await
            .expect("the vaulted key works");
        assert_eq!(who, provisioner::site_rest::AUTOMATION_USER);
        client
            .login(
                &frappe::UserId::parse(&format!("owner@{sub}.example.com")).unwrap(),
                &secrecy::SecretString::from("Pw-For-Crash-Tests-1".to_owned()),
            )
            .await
            .expect("the owner logs in");
    }
    assert_eq!(bench.site_dirs().len(), tenants.len());
    let _ = child.kill();
    let _ = child.wait();
}
