//! With the plan catalogue file, signup offers exactly its plans, and refuses to start when the
//! other services run a different catalogue, naming the plan and the field.

mod common;

use common::{expect_code, request, spawn_stack_with, tag, violated_fields};
use tonic::Code;

const CATALOGUE: &str = r#"
version = 1

[plans.solo]
name = "Solo"
price_minor = 900
currency = "EUR"
interval = "month"
max_users = 1
max_storage_mb = 512
max_database_mb = 256
apps = ["erpnext"]
"#;

#[tokio::test]
async fn signup_offers_the_catalogues_plans() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plans.toml");
    std::fs::write(&file, CATALOGUE).unwrap();
    let stack = spawn_stack_with(|c| c.plans_file = Some(file.clone())).await;
    let mut client = stack.client().await;
    let mut solo = request(&tag());
    solo.plan = "solo".into();
    client
        .signup(solo)
        .await
        .expect("a catalogue plan is accepted");
    let starter = request(&tag());
    let refused = expect_code(client.signup(starter).await, Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["plan"]);
    assert!(
        refused.message().contains("choose one of solo"),
        "{}",
        refused.message()
    );
    stack.stop();
}

#[tokio::test]
async fn a_catalogue_other_services_run_differently_stops_signup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plans.toml");
    std::fs::write(&file, CATALOGUE.replace("max_users = 1", "max_users = 3")).unwrap();
    let vault = testkit::spawn_vault().await;
    let store = testkit::event_store_in(&vault.namespace).await;
    // The provisioner started first with its file.
    plans::agree(
        &store,
        &plans::PlanCatalogue::parse(CATALOGUE).unwrap(),
        "provisioner",
    )
    .await
    .unwrap();
    let mut config = signup::Config::new(
        svc::NatsArgs::local(vault.nats_url.clone(), vault.namespace.clone()),
        vault.endpoint(),
        vault.token("signup"),
    );
    config.listen_addr = "127.0.0.1:0".parse().unwrap();
    config.operator_addr = "127.0.0.1:0".parse().unwrap();
    config.plans_file = Some(file);
    let e = match signup::Application::build(config).await {
        Ok(_) => panic!("signup should refuse to start"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("plan solo: max_users is 3 here but 1 there"),
        "{e}"
    );
}
