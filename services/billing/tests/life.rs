//! A tenant's whole billing life under a clock the test moves, with two billing instances at
//! once, real NATS, PostgreSQL (vault), signup's operator API and a provisioner on frappe-sim:
//! trial → invoice → declined → past due → suspended (the site in maintenance mode) → paid →
//! resumed → deleted → cancelled; every invoice issued and every payment recorded once.

mod common;

use billing::clock::ManualClock;
use billing::payment::{Script, ScriptedProvider};
use clap::Parser as _;
use common::{ACCOUNTANT, DAY, Stack, T0, VIEWER, as_operator, count};
use eventstore::{Body, EventContext, NewEvent};
use proto::v1 as pb;
use secrecy::SecretString;

const PLANS: &str = r#"
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

[plans.growth]
name = "Growth"
price_minor = 4900
currency = "EUR"
interval = "month"
max_users = 20
max_storage_mb = 4096
max_database_mb = 2048
apps = ["erpnext"]
"#;

#[tokio::test]
async fn a_tenants_billing_life_with_two_instances() {
    let stack = Stack::start(PLANS).await;
    let (store, namespace, nats_url) = (&stack.store, &stack.namespace, &stack.nats_url);
    let bench = &stack.bench;

    // Two billing instances sharing one clock and one payment provider.
    let clock = ManualClock::at(T0);
    let provider = ScriptedProvider::default();
    provider.always(Script::Decline);
    let mut api = None;
    for _ in 0..2 {
        let url = stack
            .spawn_billing(stack.billing_config(), &clock, provider.clone())
            .await;
        api.get_or_insert(url);
    }

    // Signup, as the gateway records it.
    let tenant = stack.request_tenant("payer", "starter").await;

    // Provisioned → the subscription starts in its trial.
    let billing = stack
        .wait_for(EventContext::Billing, &tenant, "SubscriptionStarted", 1)
        .await;
    let Body::SubscriptionStarted(started) = &billing[0].body else {
        panic!("first billing fact: {:?}", billing[0].event_type)
    };
    assert_eq!(
        (started.plan.as_str(), started.price_minor),
        ("starter", 1900)
    );
    assert_eq!(
        started.trial_ends_at.as_ref().unwrap().seconds,
        T0 + 14 * DAY
    );

    // The trial ends: an invoice, a declined charge, past due.
    clock.advance(15 * DAY);
    let billing = stack
        .wait_for(EventContext::Billing, &tenant, "PaymentFailed", 1)
        .await;
    assert_eq!(count(&billing, "TrialEnded"), 1);
    assert_eq!(count(&billing, "InvoiceIssued"), 1);

    // Unpaid past the grace period: billing asks for the suspension, as billing.
    clock.advance(8 * DAY);
    stack
        .wait_for(EventContext::Billing, &tenant, "SubscriptionSuspended", 1)
        .await;
    stack
        .wait_for(EventContext::Provisioning, &tenant, "SiteSuspended", 1)
        .await;

    // A billing team's Python subscriber (examples/python-subscriber) follows the same tenant
    // from the log with classes generated from the proto.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/python-subscriber/subscriber.py"
    );
    let python = tokio::process::Command::new("python3")
        .args([
            script,
            "--nats-url",
            nats_url,
            "--namespace",
            namespace,
            "--tenant",
            &tenant,
            "--expect",
            "TenantProvisioned,SubscriptionStarted,InvoiceIssued,SiteSuspended",
            "--timeout",
            "60",
        ])
        .output()
        .await
        .expect(
            "python3 runs (install examples/python-subscriber/requirements.txt: `just test` does)",
        );
    let stdout = String::from_utf8_lossy(&python.stdout);
    assert!(
        python.status.success(),
        "the Python subscriber failed: {}\n{stdout}",
        String::from_utf8_lossy(&python.stderr)
    );
    let provisioned_line = stdout
        .lines()
        .find(|l| l.contains("  TenantProvisioned  "))
        .expect("TenantProvisioned decoded");
    assert!(
        provisioned_line.contains("\"plan\": \"starter\"")
            && provisioned_line.contains("\"owner_email\": \"owner@payer.example.com\"")
            && provisioned_line.contains("\"organisation\": \"Payer Ltd\""),
        "{provisioned_line}"
    );
    assert!(
        stdout.contains("  SubscriptionStarted  ") && stdout.contains("\"price_minor\": \"1900\""),
        "{stdout}"
    );
    let lifecycle = store
        .load(&store.subject(EventContext::Lifecycle, &tenant))
        .await
        .unwrap();
    let by = lifecycle
        .iter()
        .find_map(|e| match &e.body {
            Body::SuspensionRequested(s) => s.requested_by.clone(),
            _ => None,
        })
        .expect("SuspensionRequested");
    assert_eq!((by.kind.as_str(), by.id.as_str()), ("service", "billing"));

    // What the Billing API shows now.
    let mut client = pb::billing_client::BillingClient::connect(api.clone().unwrap())
        .await
        .unwrap();
    let plans = client
        .list_plans(as_operator(VIEWER, pb::ListPlansRequest {}))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = plans.plans.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["growth", "starter"]);
    let sub = client
        .get_subscription(as_operator(
            VIEWER,
            pb::GetSubscriptionRequest {
                tenant_id: tenant.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((sub.status.as_str(), sub.open_minor), ("suspended", 1900));
    let invoices = client
        .list_invoices(as_operator(
            VIEWER,
            pb::ListInvoicesRequest {
                tenant_id: tenant.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .invoices;
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0].status, "open");
    // Declined when the trial ended, and once more when the clock jumped 8 days: missed daily
    // retries do not catch up back to back.
    assert_eq!(
        invoices[0].failed_attempts, 2,
        "one retry after the jump: {:?}",
        invoices[0]
    );
    let number = invoices[0].invoice_id.clone();

    // The customer pays by bank transfer; an accountant records it (a reader may not).
    let pay = |token: &str| {
        as_operator(
            token,
            pb::RecordPaymentRequest {
                tenant_id: tenant.clone(),
                invoice_id: number.clone(),
                reference: "bank transfer 2026-02-24".into(),
            },
        )
    };
    let refused = client.record_payment(pay(VIEWER)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    // UNAVAILABLE while an instance works on the tenant (the payment's own consequences among
    // it) says "try again in a few seconds": a client does.
    let record = || {
        let mut client = client.clone();
        let pay = &pay;
        async move {
            for _ in 0..40 {
                match client.record_payment(pay(ACCOUNTANT)).await {
                    Err(s) if s.code() == tonic::Code::Unavailable => {
                        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    }
                    other => return other.unwrap().into_inner(),
                }
            }
            panic!("billing stayed busy with the tenant for 10 s")
        }
    };
    let paid = record().await;
    assert!(!paid.already_paid);
    let again = record().await;
    assert!(again.already_paid, "recording it twice changes nothing");

    // The operator's view through tenantctl: the invoice paid, the plan catalogue.
    let tenantctl = |args: &[&str]| {
        let mut argv = vec!["tenantctl", "--billing-url", api.as_deref().unwrap()];
        argv.extend_from_slice(args);
        let mut cli = tenantctl::Cli::try_parse_from(argv).expect("valid command line");
        cli.global.admin_token = Some(SecretString::from(VIEWER));
        cli
    };
    let mut out = Vec::new();
    tenantctl::run(tenantctl(&["billing", "invoices", &tenant]), &mut out)
        .await
        .expect("tenantctl billing invoices");
    let table = String::from_utf8(out).unwrap();
    assert!(
        table.contains(&number) && table.contains("19.00 EUR") && table.contains("paid"),
        "{table}"
    );
    let mut out = Vec::new();
    tenantctl::run(tenantctl(&["billing", "plans", "--json"]), &mut out)
        .await
        .expect("tenantctl billing plans");
    let plans: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(plans["plans"][1]["id"], "starter");
    assert_eq!(plans["plans"][1]["price_minor"], 1900);
    let mut out = Vec::new();
    let refused = tenantctl::run(
        tenantctl(&["billing", "pay", &tenant, &number, "--reference", "again"]),
        &mut out,
    )
    .await
    .unwrap_err();
    assert_eq!(
        refused.kind,
        tenantctl::error::ErrorKind::Unauthorized,
        "a reader may not record payments"
    );

    // Paid: reactivated and resumed.
    stack
        .wait_for(EventContext::Billing, &tenant, "SubscriptionReactivated", 1)
        .await;
    stack
        .wait_for(EventContext::Provisioning, &tenant, "SiteResumed", 1)
        .await;

    // A plan change: billing asks for it, the provisioner pushes the limits into the site, and
    // billing charges the new price from the next period.
    let mut admin_client = client.clone();
    let change = |token: &str, plan: &str| {
        as_operator(
            token,
            pb::BillingChangePlanRequest {
                tenant_id: tenant.clone(),
                plan: plan.into(),
            },
        )
    };
    let unknown = admin_client
        .change_plan(change(ACCOUNTANT, "platinum"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
    let changed = admin_client
        .change_plan(change(ACCOUNTANT, "growth"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (changed.from_plan.as_str(), changed.to_plan.as_str()),
        ("starter", "growth")
    );
    let provisioning = stack
        .wait_for(EventContext::Provisioning, &tenant, "SiteLimitsApplied", 1)
        .await;
    let site = common::site_of(&provisioning);
    assert_eq!(bench.site_config(&site)["max_users"], 20);
    let billing = stack
        .wait_for(EventContext::Billing, &tenant, "PlanChanged", 1)
        .await;
    let price = billing
        .iter()
        .find_map(|e| match &e.body {
            Body::PlanChanged(p) => Some(p.price_minor),
            _ => None,
        })
        .unwrap();
    assert_eq!(price, 4900);
    // The audit names both: billing, acting for the accountant who called it.
    let by = stack
        .events(EventContext::Lifecycle, &tenant)
        .await
        .iter()
        .find_map(|e| match &e.body {
            Body::PlanChangeRequested(p) => p.requested_by.clone(),
            _ => None,
        })
        .expect("PlanChangeRequested");
    assert_eq!(
        (by.kind.as_str(), by.id.as_str(), by.on_behalf_of.as_str()),
        ("service", "billing", "accountant")
    );
    // Metering found 12 users: a downgrade to Starter (5 users) is refused, naming the limit.
    store
        .append_latest(
            &store.subject(EventContext::Billing, &tenant),
            vec![NewEvent::new(Body::UsageRecorded(pb::UsageRecorded {
                tenant_id: tenant.clone(),
                users: 12,
                database_mb: 300,
                storage_mb: 200,
                measured_at: None,
            }))],
        )
        .await
        .unwrap();
    let refused = admin_client
        .change_plan(change(ACCOUNTANT, "starter"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("max_users is 5, but the tenant uses 12"),
        "{}",
        refused.message()
    );

    // Deleted: cancelled.
    store
        .append_latest(
            &store.subject(EventContext::Lifecycle, &tenant),
            vec![NewEvent::new(Body::DeletionRequested(
                pb::DeletionRequested {
                    tenant_id: tenant.clone(),
                    reason: "closing".into(),
                    requested_by: Some(pb::Actor {
                        kind: "operator".into(),
                        id: "test".into(),
                        ..Default::default()
                    }),
                },
            ))],
        )
        .await
        .unwrap();
    let billing = stack
        .wait_for(EventContext::Billing, &tenant, "SubscriptionCancelled", 1)
        .await;

    // Once each, with two instances billing.
    assert_eq!(count(&billing, "SubscriptionStarted"), 1);
    assert_eq!(count(&billing, "InvoiceIssued"), 1);
    assert_eq!(count(&billing, "InvoicePaid"), 1);
    assert_eq!(count(&billing, "SubscriptionSuspended"), 1);
    assert_eq!(count(&billing, "SubscriptionReactivated"), 1);
    let mut keys: Vec<String> = provider
        .charges()
        .iter()
        .map(|c| c.idempotency_key.clone())
        .collect();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "a charge key was charged twice");
    // The whole state, folded: cancelled, everything paid.
    let mut sub = tenancy::Subscription::default();
    for e in &billing {
        sub.apply(&e.body);
    }
    assert_eq!(sub.status, tenancy::SubscriptionStatus::Cancelled);
    assert_eq!((sub.invoiced_minor, sub.paid_minor), (1900, 1900));
}
