//! Kill-and-restart: the billing binary aborts itself (its crash hook, a `kill -9` at an exact
//! instruction) at every step of a tenant's life — before and after each fact, after a charge
//! is answered but not recorded, after a suspension or resume is asked for but not recorded —
//! and the next process carries on. Every fact is recorded once, no suspension is missed or
//! asked for twice, no charge attempt and no usage measurement is recorded twice.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{ACCOUNTANT, BILLING_TOKEN, DAY, Stack, T0, count};
use eventstore::{Body, EventContext};
use proto::v1 as pb;

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
"#;

struct Billing(Child);

impl Drop for Billing {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Env {
    namespace: String,
    nats_url: String,
    plans: PathBuf,
    clock: PathBuf,
    admin_url: String,
    listen: String,
    fleet: PathBuf,
    vault_url: String,
    vault_token: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(env: &Env, crash: Option<&str>) -> Billing {
    let operators = format!(
        "[operators.accountant]\ntoken_sha256 = \"{}\"\nrole = \"admin\"\n",
        svc::auth::token_sha256(ACCOUNTANT)
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_billing"));
    cmd.env("NATS_URL", &env.nats_url)
        .env("TENANTRY_NAMESPACE", &env.namespace)
        .env("TENANTRY_PLANS", &env.plans)
        .env("TENANTRY_ADMIN_URL", &env.admin_url)
        .env("TENANTRY_BILLING_TOKEN", BILLING_TOKEN)
        .env("TENANTRY_BILLING_TICK_SECS", "1")
        .env("TENANTRY_BILLING_LEASE", "1")
        .env("TENANTRY_BILLING_ACK_WAIT", "3")
        .env("TENANTRY_BILLING_LISTEN", &env.listen)
        .env("TENANTRY_BILLING_CLOCK_FILE", &env.clock)
        .env("TENANTRY_OPERATORS", operators)
        .env("TENANTRY_ADMIN_ADDR", "127.0.0.1:0")
        .env("TENANTRY_FLEET", &env.fleet)
        .env("TENANTRY_VAULT_ENDPOINT", &env.vault_url)
        .env("TENANTRY_BILLING_VAULT_TOKEN", &env.vault_token)
        .env_remove("TENANTRY_BILLING_CRASH_AT")
        .stdin(Stdio::null())
        .stdout(if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stderr(if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    if let Some(point) = crash {
        cmd.env("TENANTRY_BILLING_CRASH_AT", point);
    }
    Billing(cmd.spawn().expect("spawn billing"))
}

async fn died(mut b: Billing, point: &str) {
    for _ in 0..1200 {
        if let Some(status) = b.0.try_wait().unwrap() {
            assert!(!status.success(), "{point}: billing should have aborted");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{point}: billing never reached its crash point");
}

fn set_clock(path: &Path, now: i64) {
    std::fs::write(path, now.to_string()).unwrap();
}

#[tokio::test]
async fn killed_at_every_step_billing_records_each_fact_once() {
    let stack = Stack::start(PLANS).await;
    let clock = stack.dir.path().join("clock");
    set_clock(&clock, T0);
    let fleet = stack.dir.path().join("fleet.toml");
    std::fs::write(&fleet, common::fleet(&stack.bench)).unwrap();
    let env = Env {
        fleet,
        vault_url: stack.vault.endpoint(),
        vault_token: secrecy::ExposeSecret::expose_secret(&testkit::caller_token(
            &stack.namespace,
            "billing",
        ))
        .to_owned(),
        namespace: stack.namespace.clone(),
        nats_url: stack.nats_url.clone(),
        plans: stack.plans_file.clone(),
        clock: clock.clone(),
        admin_url: stack.signup.operator_endpoint(),
        listen: format!("127.0.0.1:{}", free_port()),
    };

    let tenant = stack.request_tenant("crashpay", "starter").await;
    stack
        .wait_for(EventContext::Provisioning, &tenant, "TenantProvisioned", 1)
        .await;

    // (clock moved to, crash point): each process dies at its point, the next carries on.
    let steps: [(i64, &str); 14] = [
        (T0, "before:SubscriptionStarted"),
        (T0, "after:SubscriptionStarted"),
        (T0, "before:UsageRecorded"),
        (T0, "after:UsageRecorded"),
        (T0 + 15 * DAY, "before:TrialEnded"),
        (T0 + 15 * DAY, "before:InvoiceIssued"),
        (T0 + 15 * DAY, "after:InvoiceIssued"),
        (T0 + 15 * DAY, "at:charge"),
        (T0 + 15 * DAY, "before:PaymentFailed"),
        (T0 + 15 * DAY, "after:PaymentFailed"),
        (T0 + 23 * DAY, "at:asked"),
        (T0 + 23 * DAY, "after:SubscriptionSuspended"),
        (T0 + 23 * DAY, "before:InvoicePaid"),
        (T0 + 23 * DAY, "after:InvoicePaid"),
    ];
    for (now, point) in steps {
        set_clock(&clock, now);
        let process = spawn(&env, Some(point));
        if point.ends_with(":InvoicePaid") {
            // The charge that pays: an accountant records a bank transfer; the call dies with
            // the process.
            let api = format!("http://{}", env.listen);
            let _ = testkit::within(Duration::from_secs(20), || async {
                let mut c = pb::billing_client::BillingClient::connect(api.clone())
                    .await
                    .ok()?;
                let mut r = tonic::Request::new(pb::RecordPaymentRequest {
                    tenant_id: tenant.clone(),
                    invoice_id: tenancy::invoice_number(&tenant, 0),
                    reference: "bank transfer".into(),
                });
                r.metadata_mut().insert(
                    "authorization",
                    format!("Bearer {ACCOUNTANT}").parse().unwrap(),
                );
                match c.record_payment(r).await {
                    Err(s)
                        if s.code() == tonic::Code::Unavailable
                            && s.message().contains("working on") =>
                    {
                        None
                    }
                    _ => Some(()),
                }
            })
            .await;
        }
        died(process, point).await;
    }

    // A clean process: the payment recorded through it this time, then everything settles.
    let _clean = spawn(&env, None);
    let api = format!("http://{}", env.listen);
    let paid = testkit::within(Duration::from_secs(30), || async {
        let mut c = pb::billing_client::BillingClient::connect(api.clone())
            .await
            .ok()?;
        let mut r = tonic::Request::new(pb::RecordPaymentRequest {
            tenant_id: tenant.clone(),
            invoice_id: tenancy::invoice_number(&tenant, 0),
            reference: "bank transfer".into(),
        });
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {ACCOUNTANT}").parse().unwrap(),
        );
        c.record_payment(r).await.ok()
    })
    .await;
    assert!(paid.is_some(), "the payment is recorded");
    stack
        .wait_for(EventContext::Billing, &tenant, "SubscriptionReactivated", 1)
        .await;
    stack
        .wait_for(EventContext::Provisioning, &tenant, "SiteResumed", 1)
        .await;

    let billing = stack.events(EventContext::Billing, &tenant).await;
    for ty in [
        "SubscriptionStarted",
        "TrialEnded",
        "InvoiceIssued",
        "InvoicePaid",
        "SubscriptionSuspended",
        "SubscriptionReactivated",
    ] {
        assert_eq!(
            count(&billing, ty),
            1,
            "{ty} once: {:?}",
            billing.iter().map(|e| &e.event_type).collect::<Vec<_>>()
        );
    }
    let attempts: Vec<u32> = billing
        .iter()
        .filter_map(|e| match &e.body {
            Body::PaymentFailed(p) => Some(p.attempt),
            _ => None,
        })
        .collect();
    let mut distinct = attempts.clone();
    distinct.dedup();
    assert_eq!(distinct, attempts, "a charge attempt recorded twice");
    assert!(!attempts.is_empty());
    // Metered once per day of the clock, never twice for one moment.
    let measured: Vec<i64> = billing
        .iter()
        .filter_map(|e| match &e.body {
            Body::UsageRecorded(u) => u.measured_at.as_ref().map(|t| t.seconds),
            _ => None,
        })
        .collect();
    let mut distinct = measured.clone();
    distinct.dedup();
    assert_eq!(distinct, measured, "a measurement recorded twice");
    assert!(measured.contains(&T0), "{measured:?}");
    // Replaying the billing stream from the start rebuilds exactly the invoices the API
    // serves: one, with its deterministic number, paid.
    let replayed: Vec<_> = stack
        .store
        .replay(&stack.store.context_filter(EventContext::Billing), 1)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.tenant_id == tenant)
        .collect();
    let rebuilt = billing::invoices::invoices(
        replayed
            .iter()
            .map(|e| (&e.body, e.occurred_at.timestamp())),
    );
    let mut c = pb::billing_client::BillingClient::connect(api.clone())
        .await
        .unwrap();
    let mut r = tonic::Request::new(pb::ListInvoicesRequest {
        tenant_id: tenant.clone(),
    });
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {ACCOUNTANT}").parse().unwrap(),
    );
    let served = c.list_invoices(r).await.unwrap().into_inner().invoices;
    assert_eq!(rebuilt, served);
    assert_eq!(served.len(), 1);
    assert_eq!(served[0].number, tenancy::invoice_number(&tenant, 0));
    assert_eq!(served[0].status, "paid");
    let lifecycle = stack.events(EventContext::Lifecycle, &tenant).await;
    assert_eq!(count(&lifecycle, "SuspensionRequested"), 1, "asked once");
    assert_eq!(count(&lifecycle, "ResumeRequested"), 1, "asked once");
}
