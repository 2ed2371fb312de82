#![allow(dead_code)] // shared by several test binaries and the bench; each uses a part
//! Provisioner test support on top of `testkit` (vault, frappe-sim benches): `TestStack`
//! (namespace, event store, vault, benches, fleet) with `start_provisioner()` in-process or
//! `spawn_provisioner_process()` as a child,
//! plus what a signup/operator would do: `request_tenant()`, `request()` (lifecycle), and
//! readers for the provisioning subject and frappe-sim's command log.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eventstore::{Body, EventContext, EventStore, NewEvent, RecordedEvent, StoreConfig};
use frappe::RunnerConfig;
use frappe::{ApiCredentials, FrappeClient, SiteName, SiteRouting, UserId};
use proto::v1 as pb;
use provisioner::fleet::FleetConfig;
use provisioner::secrets::API_CREDENTIALS;
use provisioner::site_rest::AUTOMATION_USER;
use provisioner::{Application, Config};
use secrecy::ExposeSecret;
use secrecy::SecretString;
use svc::Shutdown;
use vault_client::VaultClient;

#[allow(unused_imports)] // each test binary uses a part
pub use testkit::{SimBench, frappe_sim_bin, mariadb_has};

/// The token of `caller` in a test namespace.
pub fn token(namespace: &str, caller: &str) -> SecretString {
    testkit::caller_token(namespace, caller)
}

/// Settings of a test fleet.
#[derive(Clone)]
pub struct FleetOptions {
    /// Max concurrent operations per bench.
    pub ops: u32,
    /// Standby pool size.
    pub standby: u32,
    /// Region of every bench.
    pub region: String,
    /// Vault reference of the MariaDB root password (none: the test server's empty one).
    pub root_ref: Option<String>,
    /// Every bench command's time limit, seconds.
    pub command_limit_secs: u64,
    /// The apps the frappe-sim benches really have (the fleet always claims erpnext and hrms).
    pub sim_apps: &'static str,
    /// Laid over the vault's default ACL (TOML), e.g. to take a grant away.
    pub vault_acl: Option<&'static str>,
    /// A NATS server of the test's own (default: the shared one).
    pub nats_url: Option<String>,
    /// More `[standby]` keys (e.g. adaptive sizing, with `standby: 0`).
    pub standby_policy: &'static str,
    /// The vault's database pool (default: the small test pool).
    pub vault_pool: Option<u32>,
    /// Copies of the stream and buckets every part creates (3 on a cluster).
    pub replicas: usize,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            ops: 2,
            standby: 0,
            region: "eu".into(),
            root_ref: None,
            command_limit_secs: 15,
            sim_apps: "erpnext,hrms",
            vault_acl: None,
            nats_url: None,
            standby_policy: "",
            vault_pool: None,
            replicas: 1,
        }
    }
}

/// Everything a provisioner test needs.
pub struct TestStack {
    /// Namespace of streams, subjects and buckets.
    pub namespace: String,
    /// The event store (as signup/operator and as a reader).
    pub store: EventStore,
    /// The vault.
    pub vault: testkit::TestVault,
    /// The benches.
    pub benches: Vec<SimBench>,
    /// The fleet.
    pub fleet: FleetConfig,
    /// The fleet as TOML (for the provisioner binary).
    pub fleet_toml: String,
    /// The NATS server every part uses.
    pub nats_url: String,
    /// Copies of the stream and buckets.
    pub replicas: usize,
}

/// The fleet TOML for `benches`.
pub fn fleet_toml(
    benches: &[(&str, &SimBench)],
    opts: &FleetOptions,
    extra_benches: &str,
) -> String {
    let mut text = String::new();
    if benches.is_empty() && extra_benches.is_empty() {
        // A stack whose caller brings its own fleet (a real bench, a benchmark's): a placeholder
        // bench no region asks for.
        text.push_str(
            r#"
[[benches]]
name = "unused"
region = "unused"
base_url = "http://127.0.0.1:9"
base_domain = "unused.tenantry.localhost"
max_sites = 1
max_concurrent_operations = 1
apps = ["erpnext", "hrms"]
db_root_password_ref = "vault://tenant/fleet/unused"
runner = { kind = "local", bench_dir = "/nonexistent" }
"#,
        );
    }
    for (name, b) in benches {
        let RunnerConfig::Local {
            bench_dir,
            bench_bin,
            ..
        } = b.runner()
        else {
            unreachable!()
        };
        text.push_str(&format!(
            r#"
[[benches]]
name = "{name}"
region = "{region}"
base_url = "{url}"
base_domain = "{name}.tenantry.localhost"
routing = "header"
public_scheme = "http"
max_sites = 100
max_concurrent_operations = {ops}
apps = ["erpnext", "hrms"]
{root_ref}
runner = {{ kind = "local", bench_dir = "{dir}", bench_bin = "{bin}" }}
# Short limits: a slot whose holder was killed stays busy this long after its last heartbeat.
timeouts = {{ new_site = {limit}, install_app = {limit}, backup = {limit}, default = {limit}, kill_grace = 2 }}
"#,
            limit = opts.command_limit_secs,
            region = opts.region,
            // The sim bench's own root password (written by `frappe-sim sim-init`) unless the
            // test names a vaulted one.
            root_ref = opts.root_ref.as_deref().map_or_else(
                || {
                    format!(
                        "db_root_password_file = \"{}\"",
                        bench_dir.join("db-root-password").display()
                    )
                },
                |r| format!("db_root_password_ref = \"{r}\"")
            ),
            url = b.base_url,
            ops = opts.ops,
            dir = bench_dir.display(),
            bin = bench_bin.display(),
        ));
    }
    text.push_str(extra_benches);
    text.push_str(&format!(
        r#"
[plans.starter]
apps = ["erpnext"]
limits = {{ max_users = 5, max_storage_mb = 1024 }}

[plans.pro]
apps = ["erpnext", "hrms"]
limits = {{ max_users = 50 }}

[standby]
size = {standby}
plans = ["starter"]
{policy}
"#,
        standby = opts.standby,
        policy = opts.standby_policy,
    ));
    text
}

impl TestStack {
    /// `n` frappe-sim benches, a vault, and the fleet over them.
    pub async fn new(n: usize, opts: FleetOptions) -> Self {
        Self::with_sim(n, opts, None).await
    }

    /// Like [`TestStack::new`] with `sim.toml` on every bench.
    pub async fn with_sim(n: usize, opts: FleetOptions, sim_toml: Option<&str>) -> Self {
        testkit::init_logging();
        let namespace = testkit::unique_namespace();
        let nats_url = opts.nats_url.clone().unwrap_or_else(testkit::nats_url);
        let store = EventStore::connect(
            &StoreConfig::new(nats_url.clone())
                .with_namespace(namespace.clone())
                .with_replicas(opts.replicas),
        )
        .await
        .expect("event store");
        let vault = match opts.vault_acl {
            Some(acl) => testkit::spawn_vault_with_acl(&namespace, acl).await,
            None if opts.replicas > 1 => {
                testkit::spawn_vault_replicated(&nats_url, &namespace, opts.replicas).await
            }
            None => match opts.vault_pool {
                Some(n) => testkit::spawn_vault_on_pooled(&nats_url, &namespace, n).await,
                None => testkit::spawn_vault_on(&nats_url, &namespace).await,
            },
        };
        let benches: Vec<SimBench> = (0..n)
            .map(|_| SimBench::spawn(opts.sim_apps, sim_toml))
            .collect();
        let names: Vec<String> = (0..n)
            .map(|i| format!("bench-{}", (b'a' + i as u8) as char))
            .collect();
        let pairs: Vec<(&str, &SimBench)> = names
            .iter()
            .map(String::as_str)
            .zip(benches.iter())
            .collect();
        let fleet_toml = fleet_toml(&pairs, &opts, "");
        let fleet = FleetConfig::parse(&fleet_toml).expect("test fleet");
        Self {
            namespace,
            store,
            vault,
            benches,
            fleet,
            fleet_toml,
            nats_url,
            replicas: opts.replicas,
        }
    }

    /// A vault client as `caller`.
    pub fn vault_client(&self, caller: &str) -> VaultClient {
        self.vault.client(caller)
    }

    /// A provisioner config for this stack (fast retries for tests).
    pub fn config(&self) -> Config {
        let mut c = Config::new(
            self.nats_url.clone(),
            self.vault.endpoint(),
            token(&self.namespace, "provisioner"),
            self.fleet.clone(),
        );
        c.nats.namespace = self.namespace.clone();
        c.nats = c.nats.with_replicas(self.replicas);
        c.ack_wait = Duration::from_secs(5);
        c.process.retry_backoff = Duration::from_millis(20);
        c.process.verify_timeout = Duration::from_millis(500);
        c.slots.poll = Duration::from_millis(20);
        c.slots.lease = Duration::from_secs(2);
        c.lease_ttl = Duration::from_secs(2);
        c.standby_refill_every = Duration::from_millis(100);
        c.shutdown_grace = Duration::from_secs(5);
        c
    }

    /// Starts a provisioner in this process.
    pub async fn start_provisioner(&self, config: Config) -> RunningProvisioner {
        let app = Application::build(config)
            .await
            .expect("provisioner builds");
        let admin = app.admin_addr();
        let shutdown = Shutdown::new();
        let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        RunningProvisioner {
            admin,
            shutdown,
            handle: Some(handle),
        }
    }

    /// The bench by fleet name.
    pub fn bench(&self, name: &str) -> &SimBench {
        let i = (name.as_bytes()[name.len() - 1] - b'a') as usize;
        &self.benches[i]
    }

    /// What signup does: the owner's password as a one-time vault secret, then TenantRequested.
    pub async fn request_tenant(&self, subdomain: &str, plan: &str, password: &str) -> String {
        let tenant = uuid::Uuid::now_v7().to_string();
        let one_time = self
            .vault_client("signup")
            .put_one_time_string(
                &tenant,
                "owner_password",
                &SecretString::from(password.to_owned()),
                Duration::from_secs(3600),
                "signup",
            )
            .await
            .expect("put one-time password");
        let body = Body::TenantRequested(pb::TenantRequested {
            tenant_id: tenant.clone(),
            subdomain: subdomain.to_owned(),
            organisation: format!("{subdomain} Ltd"),
            owner_email: format!("owner@{subdomain}.example.com"),
            owner_name: "Olive Owner".into(),
            plan: plan.to_owned(),
            region: "eu".into(),
            password_ref: one_time.reference,
            idempotency_key: String::new(),
            sso_password_ref: String::new(),
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

    /// The tenant's provisioning events.
    pub async fn events(&self, tenant: &str) -> Vec<RecordedEvent> {
        self.store
            .load(&self.store.subject(EventContext::Provisioning, tenant))
            .await
            .expect("load")
    }

    /// The types of the tenant's provisioning events, in order.
    pub async fn types(&self, tenant: &str) -> Vec<String> {
        self.events(tenant)
            .await
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    /// Waits (up to `secs`) until the tenant's provisioning subject holds an event of `ty`
    /// (counting `n` of them); panics with the history otherwise.
    pub async fn wait_for_n(
        &self,
        tenant: &str,
        ty: &str,
        n: usize,
        secs: u64,
    ) -> Vec<RecordedEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let events = self.events(tenant).await;
            if events.iter().filter(|e| e.event_type == ty).count() >= n {
                return events;
            }
            if tokio::time::Instant::now() > deadline {
                let history: Vec<String> = events
                    .iter()
                    .map(|e| format!("{}: {}", e.event_type, tenancy_summary(&e.body)))
                    .collect();
                panic!(
                    "tenant {tenant}: no {ty} (x{n}) within {secs} s; history:\n{}",
                    history.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until both provisioner consumers have nothing pending or unacknowledged.
    pub async fn wait_idle(&self) {
        let stream = self
            .store
            .jetstream()
            .get_stream(self.store.stream_name())
            .await
            .expect("stream");
        for _ in 0..600 {
            let mut idle = true;
            for c in ["provisioner-signup", "provisioner-lifecycle"] {
                match stream.consumer_info(c).await {
                    Ok(i) if i.num_pending == 0 && i.num_ack_pending == 0 => {}
                    _ => idle = false,
                }
            }
            if idle {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the provisioner's consumers did not become idle");
    }

    /// Every entry of the standby pool (JSON: id, bench, site, db_name, state, …).
    pub async fn pool_entries(&self) -> Vec<serde_json::Value> {
        use futures::TryStreamExt;
        let kv = self
            .store
            .key_value("STANDBY_POOL", 1, "test")
            .await
            .unwrap();
        let keys: Vec<String> = match kv.keys().await {
            Ok(k) => k.try_collect().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let mut out = Vec::new();
        for k in keys {
            if let Ok(Some(v)) = kv.get(&k).await
                && let Ok(entry) = serde_json::from_slice(&v)
            {
                out.push(entry);
            }
        }
        out
    }

    /// [`TestStack::wait_for_n`] with n = 1.
    pub async fn wait_for(&self, tenant: &str, ty: &str, secs: u64) -> Vec<RecordedEvent> {
        self.wait_for_n(tenant, ty, 1, secs).await
    }
}

fn tenancy_summary(body: &Body) -> String {
    match body {
        Body::ProvisioningStepFailed(e) => {
            format!("step {} attempt {}: {}", e.step, e.attempt, e.reason)
        }
        Body::ProvisioningFailed(e) => format!("step {}: {}", e.step, e.reason),
        other => other.type_name().to_owned(),
    }
}

/// A provisioner running in this process.
pub struct RunningProvisioner {
    /// Its admin HTTP address (`/healthz`, `/readyz`, `/metrics`).
    pub admin: std::net::SocketAddr,
    shutdown: Shutdown,
    handle: Option<tokio::task::JoinHandle<Result<(), provisioner::ProvisionerError>>>,
}

impl RunningProvisioner {
    /// Graceful stop.
    pub async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(h) = self.handle.take() {
            h.await.expect("provisioner task").expect("provisioner run");
        }
    }
}

impl Drop for RunningProvisioner {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// A child `provisioner` process (the crate's own binary) for this stack, with extra env.
pub fn spawn_provisioner_process(
    stack: &TestStack,
    fleet_file: &Path,
    env: &[(&str, &str)],
) -> ProvisionerProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_provisioner"));
    cmd.env("NATS_URL", &stack.nats_url)
        .env("TENANTRY_NAMESPACE", &stack.namespace)
        .env("TENANTRY_VAULT_ENDPOINT", stack.vault.endpoint())
        .env(
            "TENANTRY_PROVISIONER_VAULT_TOKEN",
            format!("test-token-{}-provisioner", stack.namespace),
        )
        .env("TENANTRY_FLEET", fleet_file)
        .env("TENANTRY_PROVISIONER_ACK_WAIT", "3")
        // A killed holder's tenants and bench slots come back once their leases lapse.
        .env("TENANTRY_PROVISIONER_SLOT_LEASE", "2")
        .env("TENANTRY_PROVISIONER_LEASE", "2")
        .env("TENANTRY_PROVISIONER_RETRY_BACKOFF_MS", "20")
        .env("TENANTRY_PROVISIONER_VERIFY_TIMEOUT_MS", "2000")
        .env("TENANTRY_ADMIN_ADDR", "127.0.0.1:0")
        .env_remove("TENANTRY_PROVISIONER_CRASH_AT")
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
    ProvisionerProcess(cmd.spawn().expect("spawn provisioner"))
}

/// A `provisioner` child process, killed when dropped (a failing test must not leave
/// instances running that other tests would compete with).
pub struct ProvisionerProcess(pub Child);

impl std::ops::Deref for ProvisionerProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ProvisionerProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ProvisionerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The owner password every test tenant signs up with.
pub const PASSWORD: &str = "Correct-Horse-42-Battery";

/// The TenantProvisioned among `events`.
pub fn provisioned(events: &[eventstore::RecordedEvent]) -> pb::TenantProvisioned {
    events
        .iter()
        .find_map(|e| match &e.body {
            Body::TenantProvisioned(p) => Some(p.clone()),
            _ => None,
        })
        .expect("TenantProvisioned")
}

/// A REST client of `site` (routed by header).
pub fn client(base_url: &str, site: &str) -> FrappeClient {
    FrappeClient::new(
        base_url,
        SiteName::parse(site).unwrap(),
        SiteRouting::Header,
    )
    .unwrap()
}

/// The tenant's API key pair, read from the vault as the provisioner.
pub async fn vaulted_credentials(stack: &TestStack, tenant: &str) -> ApiCredentials {
    let v = stack
        .vault_client("provisioner")
        .get_by_name(tenant, API_CREDENTIALS, "test")
        .await
        .expect("api credentials in the vault");
    let json: serde_json::Value =
        serde_json::from_str(v.to_secret_string().unwrap().expose_secret()).unwrap();
    ApiCredentials {
        api_key: json["api_key"].as_str().unwrap().to_owned(),
        api_secret: json["api_secret"].as_str().unwrap().to_owned().into(),
    }
}

/// What the owner and an automation client see on a provisioned tenant's site.
pub async fn assert_site_works(
    stack: &TestStack,
    base_url: &str,
    tenant: &str,
    site: &str,
    owner: &str,
) {
    let c = client(base_url, site);
    let owner_id = UserId::parse(owner).unwrap();
    c.login(&owner_id, &SecretString::from(PASSWORD.to_owned()))
        .await
        .expect("the owner logs in with their password");
    let creds = vaulted_credentials(stack, tenant).await;
    let who = c
        .with_token(&creds)
        .get_logged_user()
        .await
        .expect("the key answers");
    assert_eq!(who, AUTOMATION_USER);
}

/// What one signup client saw: its tenant, when it got it, and the codes of its failed attempts.
pub struct Outcome {
    /// The tenant it was answered.
    pub tenant_id: String,
    /// When.
    pub answered_at: std::time::Instant,
    /// The codes of the attempts that failed (UNAVAILABLE for a failed connect).
    pub failures: Vec<tonic::Code>,
    /// The longest a failed attempt took.
    pub slowest_failure: Duration,
}

/// Sends `request` (which carries an idempotency key) until it is answered, as a client that
/// retries what the gateway says is retryable would; any other error fails the test, and so
/// does no answer within `give_up`.
#[allow(dead_code)] // each test binary uses a part
pub async fn signup_retrying(
    endpoint: String,
    request: proto::v1::SignupRequest,
    give_up: Duration,
) -> Outcome {
    use proto::v1::signup_service_client::SignupServiceClient;
    use tonic::Code;
    let mut failures = Vec::new();
    let mut slowest_failure = Duration::ZERO;
    let giving_up = std::time::Instant::now() + give_up;
    loop {
        let attempt = std::time::Instant::now();
        let answer = async {
            let mut c = SignupServiceClient::connect(endpoint.clone()).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(c.signup(request.clone()).await)
        }
        .await;
        match answer {
            Ok(Ok(r)) => {
                return Outcome {
                    tenant_id: r.into_inner().tenant_id,
                    answered_at: std::time::Instant::now(),
                    failures,
                    slowest_failure,
                };
            }
            Ok(Err(status)) => {
                assert!(
                    matches!(status.code(), Code::Unavailable | Code::Aborted),
                    "{}: {status:?}",
                    request.subdomain
                );
                failures.push(status.code());
            }
            Err(_) => failures.push(Code::Unavailable),
        }
        slowest_failure = slowest_failure.max(attempt.elapsed());
        assert!(
            std::time::Instant::now() < giving_up,
            "{} never got an answer",
            request.subdomain
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
