//! Usage metering against a frappe-sim site (real MariaDB schema, real files, REST users):
//! measured on a schedule → over the plan's users → a warning → still over when the grace ends →
//! suspended as billing (maintenance mode) → a bigger plan → within limits → reactivated.

mod common;

use std::time::Duration;

use billing::clock::ManualClock;
use billing::meter::MeterConfig;
use billing::payment::ScriptedProvider;
use clap::Parser as _;
use common::{ACCOUNTANT, DAY, Stack, T0, as_operator, count};
use eventstore::{Body, EventContext, RecordedEvent};
use frappe::{ApiCredentials, FrappeClient, NewUser, PersonName, SiteName, SiteRouting, UserEmail};
use proto::v1 as pb;
use secrecy::{ExposeSecret, SecretString};

const PLANS: &str = r#"
version = 1

[plans.solo]
name = "Solo"
price_minor = 900
currency = "EUR"
interval = "month"
max_users = 2
max_storage_mb = 100
max_database_mb = 512
apps = ["erpnext"]

[plans.team]
name = "Team"
price_minor = 2900
currency = "EUR"
interval = "month"
max_users = 10
max_storage_mb = 1000
max_database_mb = 2048
apps = ["erpnext"]
"#;

fn usages(events: &[RecordedEvent]) -> Vec<pb::UsageRecorded> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            Body::UsageRecorded(u) => Some(u.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn usage_over_a_limit_warns_then_suspends_and_a_bigger_plan_reactivates() {
    let stack = Stack::start(PLANS).await;
    let clock = ManualClock::at(T0);
    let mut bc = stack.billing_config();
    bc.dunning.usage_grace = 3 * DAY;
    bc.metering = Some(MeterConfig {
        sites: frappe::SiteAccess::parse(&common::fleet(&stack.bench)).unwrap(),
        vault_endpoint: stack.vault.endpoint(),
        vault_tls: svc::ClientTls::default(),
        vault_token: testkit::caller_token(&stack.namespace, "billing"),
        every: Duration::from_secs(DAY as u64),
    });
    let api = stack
        .spawn_billing(bc, &clock, ScriptedProvider::default())
        .await;

    let tenant = stack.request_tenant("meter", "solo").await;
    let provisioning = stack
        .wait_for(EventContext::Provisioning, &tenant, "TenantProvisioned", 1)
        .await;
    let site = common::site_of(&provisioning);

    // Measured at once: the owner only (Administrator and Tenantry's automation user are not
    // the tenant's), the site's real schema size, no files yet (two empty directories: du's
    // 8 KiB, rounded up to a whole MB).
    let billing = stack
        .wait_for(EventContext::Billing, &tenant, "UsageRecorded", 1)
        .await;
    let first = &usages(&billing)[0];
    assert_eq!(first.users, 1, "{first:?}");
    assert!(first.database_mb >= 1, "{first:?}");
    assert!(first.storage_mb <= 1, "{first:?}");
    let Body::SubscriptionStarted(started) = &billing[0].body else {
        panic!("{:?}", billing[0].event_type)
    };
    assert_eq!(started.limits.unwrap().max_users, 2);

    // The tenant adds two colleagues and uploads 3 MB.
    let stored = stack
        .vault
        .client("provisioner")
        .get_by_name(&tenant, "api-credentials", "test")
        .await
        .unwrap()
        .to_secret_string()
        .unwrap();
    let creds = ApiCredentials::from_stored_json(stored.expose_secret()).unwrap();
    let rest = FrappeClient::new(
        &stack.bench.base_url,
        SiteName::parse(&site).unwrap(),
        SiteRouting::Header,
    )
    .unwrap()
    .with_token(&creds);
    for who in ["ann", "bob"] {
        rest.create_user(&NewUser {
            email: UserEmail::parse(&format!("{who}@meter.example.com")).unwrap(),
            first_name: PersonName::parse(who).unwrap(),
            last_name: None,
            roles: vec!["Accounts User".into()],
        })
        .await
        .unwrap();
    }
    let files = stack
        .bench
        .path()
        .join("sites")
        .join(&site)
        .join("public/files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("scan.pdf"), vec![7u8; 3 * 1024 * 1024]).unwrap();

    // The next day's measurement: 3 users of 2 → a warning with three days of grace.
    clock.advance(DAY);
    let billing = stack
        .wait_for(EventContext::Billing, &tenant, "UsageLimitExceeded", 1)
        .await;
    let latest = usages(&billing).last().cloned().unwrap();
    assert_eq!(latest.users, 3);
    assert!(latest.storage_mb >= 3, "{latest:?}");
    let warning = billing
        .iter()
        .find_map(|e| match &e.body {
            Body::UsageLimitExceeded(w) => Some(w.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (warning.limit.as_str(), warning.used, warning.allowed),
        ("users", 3, 2)
    );
    assert_eq!(warning.grace_ends_at.unwrap().seconds, T0 + 4 * DAY);
    assert_eq!(count(&billing, "SubscriptionSuspended"), 0);

    // Still over when the grace ends: suspended as billing, the site in maintenance mode.
    clock.advance(3 * DAY);
    let billing = stack
        .wait_for(EventContext::Billing, &tenant, "SubscriptionSuspended", 1)
        .await;
    let suspended = billing
        .iter()
        .find_map(|e| match &e.body {
            Body::SubscriptionSuspended(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(suspended.limit, "users");
    stack
        .wait_for(EventContext::Provisioning, &tenant, "SiteSuspended", 1)
        .await;
    assert_eq!(stack.bench.site_config(&site)["maintenance_mode"], 1);

    // What an operator sees.
    let mut out = Vec::new();
    let mut cli = tenantctl::Cli::try_parse_from([
        "tenantctl",
        "--billing-url",
        &api,
        "billing",
        "show",
        &tenant,
    ])
    .unwrap();
    cli.global.admin_token = Some(SecretString::from(ACCOUNTANT));
    tenantctl::run(cli, &mut out).await.unwrap();
    let shown = String::from_utf8(out).unwrap();
    assert!(
        shown.contains("3 users (of 2)") && shown.contains("suspended"),
        "{shown}"
    );

    // A bigger plan: within limits, reactivated, the site resumed.
    let mut client = pb::billing_client::BillingClient::connect(api.clone())
        .await
        .unwrap();
    client
        .change_plan(as_operator(
            ACCOUNTANT,
            pb::BillingChangePlanRequest {
                tenant_id: tenant.clone(),
                plan: "team".into(),
            },
        ))
        .await
        .unwrap();
    stack
        .wait_for(EventContext::Billing, &tenant, "SubscriptionReactivated", 1)
        .await;
    stack
        .wait_for(EventContext::Provisioning, &tenant, "SiteResumed", 1)
        .await;
    // Resumed: measured again (not while suspended), within the new plan.
    clock.advance(DAY);
    let before = usages(&stack.events(EventContext::Billing, &tenant).await).len();
    let billing = stack
        .wait_for(EventContext::Billing, &tenant, "UsageRecorded", before + 1)
        .await;
    assert_eq!(count(&billing, "UsageLimitExceeded"), 1, "one warning");
    assert_eq!(count(&billing, "UsageWithinLimits"), 1);
    assert_eq!(count(&billing, "SubscriptionSuspended"), 1);
    assert_eq!(count(&billing, "SubscriptionReactivated"), 1);
    let kinds: Vec<&str> = billing.iter().map(|e| e.event_type.as_str()).collect();
    let pos = |k: &str| kinds.iter().position(|x| *x == k).unwrap();
    assert!(
        pos("UsageLimitExceeded") < pos("SubscriptionSuspended")
            && pos("SubscriptionSuspended") < pos("PlanChanged")
            && pos("PlanChanged") < pos("UsageWithinLimits")
            && pos("UsageWithinLimits") < pos("SubscriptionReactivated"),
        "{kinds:?}"
    );
    // No measurement between the suspension and the reactivation.
    let suspended_at = pos("SubscriptionSuspended");
    let reactivated_at = pos("SubscriptionReactivated");
    assert!(
        !kinds[suspended_at..reactivated_at].contains(&"UsageRecorded"),
        "{kinds:?}"
    );
}
