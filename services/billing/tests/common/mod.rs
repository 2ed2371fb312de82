#![allow(dead_code)] // shared by several test binaries; each uses a part
//! Billing test support: the stack around billing — a namespace, the vault, signup's operator
//! API (with `billing` as a service operator) and a provisioner on a frappe-sim bench, all on
//! one plan catalogue — and what a signup does.

use std::path::PathBuf;
use std::time::Duration;

use eventstore::{Body, EventContext, EventStore, NewEvent, RecordedEvent, StoreConfig};
use frappe::RunnerConfig;
use proto::v1 as pb;
use secrecy::SecretString;
use svc::Shutdown;
use testkit::SimBench;

/// A day, in seconds.
pub const DAY: i64 = 86_400;
/// 2026-01-31 00:00 UTC: a month end, so calendar months show.
pub const T0: i64 = 1_769_817_600;
/// Billing's token at signup's operator API.
pub const BILLING_TOKEN: &str = "billing-service-token-0123456789";
/// An admin operator of the Billing API.
pub const ACCOUNTANT: &str = "accountant-token-0123456789";
/// A reader of the Billing API.
pub const VIEWER: &str = "viewer-token-0123456789";

/// `message` with `authorization: Bearer <token>`.
pub fn as_operator<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// The provisioner's fleet file for `b` (billing's metering reads the same one).
pub fn fleet(b: &SimBench) -> String {
    let RunnerConfig::Local {
        bench_dir,
        bench_bin,
        ..
    } = b.runner()
    else {
        unreachable!()
    };
    format!(
        "[[benches]]\nname = \"bench-a\"\nregion = \"eu\"\nbase_url = \"{}\"\nbase_domain = \"bench-a.tenantry.localhost\"\nrouting = \"header\"\npublic_scheme = \"http\"\nmax_sites = 10\nmax_concurrent_operations = 2\napps = [\"erpnext\"]\ndb_root_password_file = \"{}/db-root-password\"\nrunner = {{ kind = \"local\", bench_dir = \"{}\", bench_bin = \"{}\" }}\n",
        b.base_url,
        bench_dir.display(),
        bench_dir.display(),
        bench_bin.display()
    )
}

/// Everything around billing.
pub struct Stack {
    /// Namespace of streams, subjects and buckets.
    pub namespace: String,
    /// NATS.
    pub nats_url: String,
    /// The event store.
    pub store: EventStore,
    /// The vault.
    pub vault: testkit::TestVault,
    /// Signup (its operator API is where billing asks for suspensions).
    pub signup: testkit::TestSignup,
    /// The bench.
    pub bench: SimBench,
    /// The plan catalogue every service runs.
    pub catalogue: plans::PlanCatalogue,
    /// Its file.
    pub plans_file: PathBuf,
    /// A temp dir for files (plans, clock).
    pub dir: tempfile::TempDir,
    /// Stops the in-process services.
    pub stop: Shutdown,
}

impl Stack {
    /// Vault, signup and a provisioner on one catalogue (`plans`, TOML).
    pub async fn start(plans: &str) -> Self {
        testkit::init_logging();
        let namespace = testkit::unique_namespace();
        let nats_url = testkit::nats_url();
        let store = EventStore::connect(
            &StoreConfig::new(nats_url.clone()).with_namespace(namespace.clone()),
        )
        .await
        .unwrap();
        let vault = testkit::spawn_vault_on(&nats_url, &namespace).await;
        let catalogue = plans::PlanCatalogue::parse(plans).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let plans_file = dir.path().join("plans.toml");
        std::fs::write(&plans_file, plans).unwrap();
        let operators = format!(
            "[operators.billing]\ntoken_sha256 = \"{}\"\nrole = \"admin\"\nservice = true\n",
            svc::auth::token_sha256(BILLING_TOKEN)
        );
        let signup = testkit::spawn_signup(&vault, |c| {
            c.operator_auth = Some(svc::OperatorAuth::from_toml(&operators).unwrap());
            c.plans_file = Some(plans_file.clone());
        })
        .await;
        let bench = SimBench::spawn("erpnext", None);
        let mut pc = provisioner::Config::new(
            nats_url.clone(),
            vault.endpoint(),
            testkit::caller_token(&namespace, "provisioner"),
            provisioner::fleet::FleetConfig::parse(&fleet(&bench)).unwrap(),
        );
        pc.nats.namespace = namespace.clone();
        pc.plans = Some(catalogue.clone());
        pc.lease_ttl = Duration::from_secs(2);
        pc.standby_refill_every = Duration::from_secs(3600);
        let prov = provisioner::Application::build(pc).await.unwrap();
        let stop = Shutdown::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = prov.run_until_stopped(s).await;
        });
        Self {
            namespace,
            nats_url,
            store,
            vault,
            signup,
            bench,
            catalogue,
            plans_file,
            dir,
            stop,
        }
    }

    /// What signup does: the owner's password as a one-time secret, then TenantRequested.
    pub async fn request_tenant(&self, subdomain: &str, plan: &str) -> String {
        let tenant = uuid::Uuid::now_v7().to_string();
        let password_ref = self
            .vault
            .client("signup")
            .put_one_time_string(
                &tenant,
                "owner_password",
                &SecretString::from("Correct-Horse-42-Battery"),
                Duration::from_secs(3600),
                "signup",
            )
            .await
            .unwrap()
            .reference;
        self.store
            .append(
                &self.store.subject(EventContext::Signup, &tenant),
                0,
                vec![NewEvent::new(Body::TenantRequested(pb::TenantRequested {
                    tenant_id: tenant.clone(),
                    subdomain: subdomain.into(),
                    organisation: format!("{} Ltd", capitalised(subdomain)),
                    owner_email: format!("owner@{subdomain}.example.com"),
                    owner_name: "Olive Owner".into(),
                    plan: plan.into(),
                    region: "eu".into(),
                    password_ref,
                    ..Default::default()
                }))],
            )
            .await
            .unwrap();
        tenant
    }

    /// The tenant's events on one context.
    pub async fn events(&self, context: EventContext, tenant: &str) -> Vec<RecordedEvent> {
        testkit::tenant_events(&self.store, context, tenant).await
    }

    /// Waits (up to 90 s) for `n` events of type `ty` on the tenant's `context` subject.
    pub async fn wait_for(
        &self,
        context: EventContext,
        tenant: &str,
        ty: &str,
        n: usize,
    ) -> Vec<RecordedEvent> {
        testkit::wait_for_events(&self.store, context, tenant, ty, n, Duration::from_secs(90)).await
    }
}

impl Stack {
    /// A billing instance's config for this stack: fast ticks and leases, an accountant
    /// (admin) and a viewer (reader) at its API.
    pub fn billing_config(&self) -> billing::Config {
        let mut bc = billing::Config::new(
            self.nats_url.clone(),
            self.catalogue.clone(),
            self.signup.operator_endpoint(),
            SecretString::from(BILLING_TOKEN),
        );
        bc.nats.namespace = self.namespace.clone();
        bc.tick = Duration::from_millis(100);
        bc.lease_ttl = Duration::from_secs(2);
        bc.operators = svc::OperatorAuth::from_tokens(&[
            (
                "accountant",
                svc::Role::Admin,
                &SecretString::from(ACCOUNTANT),
            ),
            ("viewer", svc::Role::Reader, &SecretString::from(VIEWER)),
        ]);
        bc
    }
}

impl Stack {
    /// Builds and runs a billing instance (stopped with the stack); returns its API's URL.
    pub async fn spawn_billing<P: billing::payment::PaymentProvider>(
        &self,
        config: billing::Config,
        clock: &billing::clock::ManualClock,
        provider: P,
    ) -> String {
        let app = billing::Application::build(config, std::sync::Arc::new(clock.clone()), provider)
            .await
            .unwrap();
        let api = format!("http://{}", app.local_addr());
        let s = self.stop.clone();
        tokio::spawn(async move {
            let _ = app.run_until_stopped(s).await;
        });
        api
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.trigger();
        self.signup.stop();
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// The site a tenant was provisioned on.
pub fn site_of(provisioning: &[RecordedEvent]) -> String {
    provisioning
        .iter()
        .find_map(|e| match &e.body {
            Body::TenantProvisioned(p) => Some(p.site.clone()),
            _ => None,
        })
        .expect("TenantProvisioned")
}

/// How many of `events` are of type `ty`.
pub fn count(events: &[RecordedEvent], ty: &str) -> usize {
    events.iter().filter(|e| e.event_type == ty).count()
}
