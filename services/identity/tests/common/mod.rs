#![allow(dead_code)] // shared by several test binaries; each uses a part
//! Identity test support: a namespace, the vault, one frappe-sim bench, a provisioner (so
//! tenants really get a site and an API key), the Authentik fake, and identity instances
//! in-process or as child processes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use authentik_client::AuthentikConfig;
use authentik_fake::{FakeAuthentik, FakeConfig, Snapshot};
use eventstore::{Body, EventContext, EventStore, NewEvent, RecordedEvent, StoreConfig};
use frappe::{FrappeClient, RunnerConfig, SiteName, SiteRouting};
use identity::sites::SiteApi;
use proto::v1 as pb;
use secrecy::{ExposeSecret, SecretString};
use svc::Shutdown;
use testkit::SimBench;

/// The owner password every test tenant signs up with.
pub const PASSWORD: &str = "Correct-Horse-42-Battery";
/// The bench's fleet name.
pub const BENCH: &str = "bench-a";

/// Everything an identity test needs.
pub struct Stack {
    /// Namespace of streams, subjects and buckets.
    pub namespace: String,
    /// The event store (as signup/operator and as a reader).
    pub store: EventStore,
    /// The vault.
    pub vault: testkit::TestVault,
    /// The bench.
    pub bench: SimBench,
    /// The fleet file (for provisioner and identity).
    pub fleet_file: PathBuf,
    _dir: tempfile::TempDir,
    /// The Authentik double.
    pub authentik: FakeAuthentik,
    /// The NATS server every part uses.
    pub nats_url: String,
    provisioner: Option<(Shutdown, tokio::task::JoinHandle<()>)>,
}

fn fleet_toml(b: &SimBench) -> String {
    let RunnerConfig::Local {
        bench_dir,
        bench_bin,
        ..
    } = b.runner()
    else {
        unreachable!()
    };
    format!(
        r#"
[[benches]]
name = "{BENCH}"
region = "eu"
base_url = "{url}"
base_domain = "{BENCH}.tenantry.localhost"
routing = "header"
public_scheme = "http"
max_sites = 100
max_concurrent_operations = 4
apps = ["erpnext", "hrms"]
db_root_password_file = "{dir}/db-root-password"
runner = {{ kind = "local", bench_dir = "{dir}", bench_bin = "{bin}" }}
timeouts = {{ new_site = 30, install_app = 30, backup = 30, default = 30, kill_grace = 2 }}

[plans.starter]
apps = ["erpnext"]

[standby]
size = 0
plans = []
"#,
        url = b.base_url,
        dir = bench_dir.display(),
        bin = bench_bin.display(),
    )
}

impl Stack {
    /// A stack with a running provisioner; identity is started by the test.
    pub async fn new() -> Self {
        testkit::init_logging();
        let namespace = testkit::unique_namespace();
        let nats_url = testkit::nats_url();
        let store = EventStore::connect(
            &StoreConfig::new(nats_url.clone()).with_namespace(namespace.clone()),
        )
        .await
        .expect("event store");
        let vault = testkit::spawn_vault_on(&nats_url, &namespace).await;
        let bench = SimBench::spawn("erpnext,hrms", None);
        let dir = tempfile::tempdir().expect("tempdir");
        let fleet_file = dir.path().join("fleet.toml");
        std::fs::write(&fleet_file, fleet_toml(&bench)).expect("fleet file");
        let authentik = FakeAuthentik::start(FakeConfig::default())
            .await
            .expect("fake authentik");
        let mut stack = Self {
            namespace,
            store,
            vault,
            bench,
            fleet_file,
            _dir: dir,
            authentik,
            nats_url,
            provisioner: None,
        };
        stack.start_provisioner().await;
        stack
    }

    async fn start_provisioner(&mut self) {
        let fleet = provisioner::fleet::FleetConfig::load(&self.fleet_file).expect("fleet");
        let mut c = provisioner::Config::new(
            self.nats_url.clone(),
            self.vault.endpoint(),
            testkit::caller_token(&self.namespace, "provisioner"),
            fleet,
        );
        c.nats.namespace = self.namespace.clone();
        c.ack_wait = Duration::from_secs(5);
        c.process.retry_backoff = Duration::from_millis(20);
        c.lease_ttl = Duration::from_secs(2);
        c.standby_refill_every = Duration::from_secs(3600);
        c.shutdown_grace = Duration::from_secs(5);
        let app = provisioner::Application::build(c)
            .await
            .expect("provisioner builds");
        let shutdown = Shutdown::new();
        let s = shutdown.clone();
        let handle = tokio::spawn(async move {
            let _ = app.run_until_stopped(s).await;
        });
        self.provisioner = Some((shutdown, handle));
    }

    /// An identity config for this stack (fast retries).
    pub fn identity_config(&self) -> identity::Config {
        let sites = SiteApi::load(&self.fleet_file).expect("fleet");
        let mut authentik = AuthentikConfig::new(
            self.authentik.base_url(),
            SecretString::from(FakeConfig::default().token),
        );
        authentik.timeout = Duration::from_secs(5);
        let mut c = identity::Config::new(
            self.nats_url.clone(),
            self.vault.endpoint(),
            testkit::caller_token(&self.namespace, "identity"),
            authentik,
            sites,
        );
        c.nats.namespace = self.namespace.clone();
        c.public_auth_url = Some("http://auth.localhost".into());
        c.ack_wait = Duration::from_secs(5);
        c.retry_initial = Duration::from_millis(50);
        c.retry_max = Duration::from_millis(400);
        c.max_attempts = 4;
        c.lease_ttl = Duration::from_secs(2);
        c.shutdown_grace = Duration::from_secs(5);
        c
    }

    /// Starts an identity instance in this process.
    pub async fn start_identity(&self, config: identity::Config) -> RunningIdentity {
        let app = identity::Application::build(config)
            .await
            .expect("identity builds");
        let shutdown = Shutdown::new();
        let s = shutdown.clone();
        let handle = tokio::spawn(async move {
            app.run_until_stopped(s).await.expect("identity runs");
        });
        RunningIdentity {
            shutdown,
            handle: Some(handle),
        }
    }

    /// A child `identity` process (the crate's binary) for this stack, with extra env.
    pub fn spawn_identity_process(&self, env: &[(&str, &str)]) -> IdentityProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_identity"));
        cmd.env("NATS_URL", &self.nats_url)
            .env("TENANTRY_NAMESPACE", &self.namespace)
            .env("TENANTRY_VAULT_ENDPOINT", self.vault.endpoint())
            .env(
                "TENANTRY_IDENTITY_VAULT_TOKEN",
                testkit::caller_token(&self.namespace, "identity").expose_secret(),
            )
            .env("TENANTRY_AUTHENTIK_URL", self.authentik.base_url())
            .env("TENANTRY_AUTHENTIK_TOKEN", FakeConfig::default().token)
            .env("TENANTRY_AUTHENTIK_PUBLIC_URL", "http://auth.localhost")
            .env("TENANTRY_FLEET", &self.fleet_file)
            .env("TENANTRY_IDENTITY_ACK_WAIT", "3")
            .env("TENANTRY_IDENTITY_LEASE", "1")
            .env("TENANTRY_IDENTITY_RETRY_BACKOFF_MS", "50")
            .env("TENANTRY_ADMIN_ADDR", "127.0.0.1:0")
            .env_remove("TENANTRY_IDENTITY_CRASH_AT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        for (k, v) in env {
            cmd.env(k, v);
        }
        IdentityProcess(cmd.spawn().expect("spawn identity"))
    }

    /// What signup does: both one-time copies of the password, then TenantRequested.
    pub async fn request_tenant(&self, subdomain: &str) -> String {
        let tenant = uuid::Uuid::now_v7().to_string();
        let signup = self.vault.client("signup");
        let put = |kind: &'static str| {
            let signup = signup.clone();
            let tenant = tenant.clone();
            async move {
                signup
                    .put_one_time_string(
                        &tenant,
                        kind,
                        &SecretString::from(PASSWORD.to_owned()),
                        Duration::from_secs(3600),
                        "signup",
                    )
                    .await
                    .expect("put one-time password")
                    .reference
            }
        };
        let password_ref = put("owner_password").await;
        let sso_password_ref = put("sso_owner_password").await;
        let body = Body::TenantRequested(pb::TenantRequested {
            tenant_id: tenant.clone(),
            subdomain: subdomain.to_owned(),
            organisation: format!("{subdomain} Ltd"),
            owner_email: owner_email(subdomain),
            owner_name: "Olive Owner".into(),
            plan: "starter".into(),
            region: "eu".into(),
            password_ref,
            idempotency_key: String::new(),
            sso_password_ref,
        });
        let subject = self.store.subject(EventContext::Signup, &tenant);
        self.store
            .append(&subject, 0, vec![NewEvent::new(body)])
            .await
            .expect("append TenantRequested");
        tenant
    }

    /// What the operator API does: a lifecycle event on the tenant's lifecycle subject.
    pub async fn request(&self, body: Body) {
        let subject = self
            .store
            .subject(EventContext::Lifecycle, body.tenant_id());
        self.store
            .append_latest(&subject, vec![NewEvent::new(body)])
            .await
            .expect("append lifecycle event");
    }

    /// The tenant's events on one context.
    pub async fn events(&self, context: EventContext, tenant: &str) -> Vec<RecordedEvent> {
        self.store
            .load(&self.store.subject(context, tenant))
            .await
            .expect("load")
    }

    /// Waits (up to `secs`) until the tenant's `context` subject holds an event of type `ty`
    /// (`n` of them); returns that subject's events.
    pub async fn wait_for(
        &self,
        context: EventContext,
        tenant: &str,
        ty: &str,
        n: usize,
        secs: u64,
    ) -> Vec<RecordedEvent> {
        testkit::wait_for_events(
            &self.store,
            context,
            tenant,
            ty,
            n,
            Duration::from_secs(secs),
        )
        .await
    }

    /// The tenant's TenantProvisioned (waits for it).
    pub async fn provisioned(&self, tenant: &str) -> pb::TenantProvisioned {
        let events = self
            .wait_for(
                EventContext::Provisioning,
                tenant,
                "TenantProvisioned",
                1,
                60,
            )
            .await;
        events
            .iter()
            .find_map(|e| match &e.body {
                Body::TenantProvisioned(p) => Some(p.clone()),
                _ => None,
            })
            .expect("TenantProvisioned")
    }

    /// A REST client of `site` on the bench.
    pub fn site(&self, site: &str) -> FrappeClient {
        FrappeClient::new(
            &self.bench.base_url,
            SiteName::parse(site).expect("site name"),
            SiteRouting::Header,
        )
        .expect("client")
    }

    /// Everything in the fake that carries `tenant`'s id or derived names.
    pub fn objects_of(&self, tenant: &str, subdomain: &str) -> Objects {
        let snap = self.authentik.snapshot();
        Objects::of(&snap, tenant, subdomain)
    }
}

/// The owner's email of a test subdomain.
pub fn owner_email(subdomain: &str) -> String {
    format!("owner@{subdomain}.example.com")
}

/// A tenant's objects in a snapshot of the fake.
#[derive(Debug)]
pub struct Objects {
    /// Groups named `tenant-<sub>`.
    pub groups: Vec<serde_json::Value>,
    /// Users carrying the tenant id.
    pub users: Vec<serde_json::Value>,
    /// Providers whose name carries the tenant id.
    pub providers: Vec<serde_json::Value>,
    /// Applications with slug `tenant-<sub>`.
    pub applications: Vec<serde_json::Value>,
    /// Bindings on those applications.
    pub bindings: Vec<serde_json::Value>,
}

impl Objects {
    fn of(snap: &Snapshot, tenant: &str, subdomain: &str) -> Self {
        let slug = format!("tenant-{subdomain}");
        let applications: Vec<_> = snap
            .applications
            .iter()
            .filter(|a| a["slug"] == slug.as_str())
            .cloned()
            .collect();
        let targets: Vec<&str> = applications
            .iter()
            .filter_map(|a| a["pbm_uuid"].as_str())
            .collect();
        Self {
            groups: snap
                .groups
                .iter()
                .filter(|g| g["name"] == slug.as_str())
                .cloned()
                .collect(),
            users: snap
                .users
                .iter()
                .filter(|u| u["attributes"]["tenant_id"] == tenant)
                .cloned()
                .collect(),
            providers: snap
                .providers
                .iter()
                .filter(|p| p["name"].as_str().is_some_and(|n| n.contains(tenant)))
                .cloned()
                .collect(),
            bindings: snap
                .bindings
                .iter()
                .filter(|b| b["target"].as_str().is_some_and(|t| targets.contains(&t)))
                .cloned()
                .collect(),
            applications,
        }
    }

    /// (groups, users, providers, applications, bindings) counts.
    pub fn counts(&self) -> [usize; 5] {
        [
            self.groups.len(),
            self.users.len(),
            self.providers.len(),
            self.applications.len(),
            self.bindings.len(),
        ]
    }
}

/// An identity instance in this process.
pub struct RunningIdentity {
    shutdown: Shutdown,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl RunningIdentity {
    /// Stops it and waits.
    pub async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

impl Drop for RunningIdentity {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// An `identity` child process, killed when dropped.
pub struct IdentityProcess(pub Child);

impl Drop for IdentityProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some((s, _)) = &self.provisioner {
            s.trigger();
        }
    }
}
