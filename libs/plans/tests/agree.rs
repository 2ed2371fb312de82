//! Services agree on one catalogue through real NATS: the first publishes, identical files
//! agree, a different file of the same version or an older one is refused naming what differs,
//! a newer one replaces it.

use plans::{AgreeError, PlanCatalogue, agree};

const SAMPLE: &str = r#"
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
"#;

#[tokio::test]
async fn services_run_one_catalogue() {
    let store = testkit::event_store().await;
    let v1 = PlanCatalogue::parse(SAMPLE).unwrap();
    agree(&store, &v1, "signup").await.expect("first publishes");
    agree(&store, &v1, "provisioner")
        .await
        .expect("same file agrees");

    let other = PlanCatalogue::parse(&SAMPLE.replace("max_users = 5", "max_users = 8")).unwrap();
    let e = agree(&store, &other, "billing").await.unwrap_err();
    assert!(matches!(e, AgreeError::Disagree { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("plan starter: max_users is 8 here but 5 there"),
        "{e}"
    );

    let v2 = PlanCatalogue::parse(
        &SAMPLE
            .replace("version = 1", "version = 2")
            .replace("price_minor = 1900", "price_minor = 2100"),
    )
    .unwrap();
    agree(&store, &v2, "provisioner")
        .await
        .expect("a newer version is published");
    let e = agree(&store, &v1, "signup").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("version 1, but version 2 is published (by provisioner)"),
        "{e}"
    );
    agree(&store, &v2, "signup")
        .await
        .expect("the new file agrees");
}
