//! The plan catalogue: the provisioner takes its plans' apps and site limits from it, refuses a
//! fleet file that disagrees with it, and refuses to start when signup runs a different one —
//! naming the plan and the field.

mod common;

use common::{FleetOptions, PASSWORD, TestStack, provisioned};
use provisioner::Application;

const CATALOGUE: &str = r#"
version = 1

[plans.starter]
name = "Starter"
price_minor = 1900
currency = "EUR"
interval = "month"
trial_days = 14
max_users = 5
max_storage_mb = 1024
max_database_mb = 512
apps = ["erpnext"]

[plans.pro]
name = "Pro"
price_minor = 9900
currency = "EUR"
interval = "month"
max_users = 50
max_storage_mb = 20480
max_database_mb = 4096
apps = ["erpnext", "hrms"]
"#;

fn catalogue(text: &str) -> plans::PlanCatalogue {
    plans::PlanCatalogue::parse(text).expect("catalogue")
}

fn refusal(result: Result<Application, provisioner::ProvisionerError>) -> String {
    match result {
        Ok(_) => panic!("the provisioner should have refused to start"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn sites_get_the_catalogues_limits() {
    let stack = TestStack::new(1, FleetOptions::default()).await;
    let mut config = stack.config();
    config.plans = Some(catalogue(CATALOGUE));
    let _prov = stack.start_provisioner(config).await;
    let tenant = stack.request_tenant("limits", "pro", PASSWORD).await;
    let events = stack.wait_for(&tenant, "TenantProvisioned", 60).await;
    let site = provisioned(&events).site;
    let site_config = stack.bench("bench-a").site_config(&site);
    assert_eq!(site_config["max_users"], 50);
    assert_eq!(site_config["max_database_mb"], 4096);
    assert_eq!(site_config["max_storage_mb"], 20480);
}

#[tokio::test]
async fn a_catalogue_that_signup_runs_differently_stops_the_provisioner() {
    let stack = TestStack::new(1, FleetOptions::default()).await;
    // Signup started first with its file.
    plans::agree(&stack.store, &catalogue(CATALOGUE), "signup")
        .await
        .expect("signup publishes");
    let mut config = stack.config();
    config.plans = Some(catalogue(
        &CATALOGUE.replace("price_minor = 9900", "price_minor = 12900"),
    ));
    let e = refusal(Application::build(config).await);
    assert!(
        e.contains("plan pro: price_minor is 12900 here but 9900 there"),
        "{e}"
    );
}

#[tokio::test]
async fn a_fleet_file_that_disagrees_with_the_catalogue_is_refused() {
    let stack = TestStack::new(1, FleetOptions::default()).await;
    // The test fleet's `pro` installs erpnext and hrms; this catalogue says erpnext only.
    let mut config = stack.config();
    config.plans = Some(catalogue(
        &CATALOGUE.replace("apps = [\"erpnext\", \"hrms\"]", "apps = [\"erpnext\"]"),
    ));
    let e = refusal(Application::build(config).await);
    assert!(
        e.contains("plan pro: apps is [\"erpnext\", \"hrms\"] in the fleet file but [\"erpnext\"] in the plan catalogue"),
        "{e}"
    );
}
