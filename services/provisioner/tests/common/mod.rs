#![allow(dead_code)] // shared by several test binaries and the bench; each uses a part
//! Test support: `spawn_vault()` (the real vault on port 0), `SimBench::spawn()` (a frappe-sim
//! bench dir + its REST server on port 0), `TestStack` (namespace, event store, vault, benches,
//! fleet) with `start_provisioner()` in-process or `spawn_provisioner_process()` as a child,
//! plus what a signup/operator would do: `request_tenant()`, `request()` (lifecycle), and
//! readers for the provisioning subject and frappe-sim's command log.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eventstore::{Body, EventContext, EventStore, NewEvent, RecordedEvent, StoreConfig};
use frappe::RunnerConfig;
use proto::v1 as pb;
use provisioner::fleet::FleetConfig;
use provisioner::{Application, Config};
use secrecy::SecretString;
use svc::Shutdown;
use vault::{AclConfig, KeyRing, VaultClient};

/// The frappe-sim binary: `FRAPPE_SIM_BIN`, or next to this test's target dir (built on demand
/// with cargo when missing, e.g. `cargo test -p provisioner` on a fresh checkout).
pub fn frappe_sim_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FRAPPE_SIM_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/frappe-sim
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = profile_dir.join("frappe-sim");
    if !bin.exists() {
        static BUILD: std::sync::Once = std::sync::Once::new();
        BUILD.call_once(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut args = vec!["build", "-p", "frappe-sim"];
            if profile_dir.ends_with("release") {
                args.push("--release");
            }
            let st = Command::new(cargo)
                .args(args)
                .status()
                .expect("run cargo build -p frappe-sim");
            assert!(st.success(), "cargo build -p frappe-sim failed");
        });
    }
    assert!(bin.exists(), "frappe-sim not found at {}", bin.display());
    bin
}

/// A frappe-sim bench dir with its REST server. Dropping it stops the server and drops every
/// site database left behind.
pub struct SimBench {
    /// The bench dir.
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    server: Child,
}

impl SimBench {
    /// A bench with `apps` available, and `sim.toml` settings (e.g. `profile = "realistic"`).
    pub fn spawn(apps: &str, sim_toml: Option<&str>) -> Self {
        let sim = frappe_sim_bin();
        let dir = tempfile::tempdir().expect("tempdir");
        let st = Command::new(&sim)
            .args(["sim-init", "--apps", apps])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .status()
            .expect("frappe-sim sim-init");
        assert!(st.success());
        if let Some(t) = sim_toml {
            std::fs::write(dir.path().join("sim.toml"), t).unwrap();
        }
        let (server, base_url) = serve(dir.path(), "0");
        Self {
            dir,
            base_url,
            server,
        }
    }

    /// Writes `sim.toml` (failure injection etc.) and restarts the REST server on the same port,
    /// since `serve` reads its settings once; CLI commands read the file every time.
    pub fn set_sim_toml(&mut self, text: &str) {
        std::fs::write(self.path().join("sim.toml"), text).unwrap();
        // Counters of earlier injections must not carry over.
        let _ = std::fs::remove_file(self.path().join("sim-state.json"));
        let _ = self.server.kill();
        let _ = self.server.wait();
        let port = self.base_url.rsplit(':').next().unwrap().to_owned();
        // The old listener may linger for a moment after the kill: try the port a few times.
        for _ in 0..50 {
            let (server, url) = serve(self.path(), &port);
            if !url.is_empty() {
                self.server = server;
                assert_eq!(url, self.base_url);
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("frappe-sim serve could not get port {port} back");
    }

    /// The bench directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A `local` runner for it.
    pub fn runner(&self) -> RunnerConfig {
        RunnerConfig::Local {
            bench_dir: self.path().to_path_buf(),
            bench_bin: frappe_sim_bin(),
            env: BTreeMap::new(),
        }
    }

    /// Site directories under `sites/`.
    pub fn site_dirs(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.path().join("sites"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "assets")
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// The site's `site_config.json`.
    pub fn site_config(&self, site: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(
            self.path()
                .join("sites")
                .join(site)
                .join("site_config.json"),
        )
        .unwrap_or_else(|_| "{}".into());
        serde_json::from_str(&text).unwrap()
    }

    /// Parsed lines of `sim-commands.log`.
    pub fn command_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path().join("sim-commands.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The most commands that ever ran at once, from the log's start/end lines.
    pub fn max_concurrency(&self) -> usize {
        let mut edges: Vec<(chrono::DateTime<chrono::FixedOffset>, i32)> = Vec::new();
        for l in self.command_log() {
            if l["phase"] != "end" {
                continue;
            }
            let t = |k: &str| chrono::DateTime::parse_from_rfc3339(l[k].as_str().unwrap()).unwrap();
            edges.push((t("start"), 1));
            edges.push((t("end"), -1));
        }
        // Ends sort before starts at the same instant: touching intervals do not overlap.
        edges.sort();
        let (mut now, mut max) = (0i32, 0i32);
        for (_, d) in edges {
            now += d;
            max = max.max(now);
        }
        max as usize
    }

    /// Commands of one kind started for one site (a command whose parent was killed may die
    /// before it logs its end).
    pub fn started(&self, command: &str, site: &str) -> usize {
        self.command_log()
            .iter()
            .filter(|l| l["phase"] == "start" && l["command"] == command && l["site"] == site)
            .count()
    }

    /// Commands of one kind (e.g. `new-site`) that finished, for one site.
    pub fn commands(&self, command: &str, site: &str) -> usize {
        self.command_log()
            .iter()
            .filter(|l| l["phase"] == "end" && l["command"] == command && l["site"] == site)
            .count()
    }
}

/// Starts `frappe-sim serve` in `dir` on `port`; the URL is empty if it did not start.
fn serve(dir: &Path, port: &str) -> (Child, String) {
    let mut server = Command::new(frappe_sim_bin())
        .args(["serve", "--port", port])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("frappe-sim serve");
    let mut line = String::new();
    let _ = BufReader::new(server.stdout.take().unwrap()).read_line(&mut line);
    let url = line
        .trim()
        .strip_prefix("Listening on ")
        .unwrap_or_default()
        .to_owned();
    (server, url)
}

impl Drop for SimBench {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new(frappe_sim_bin())
            .args(["sim-purge", "--db-root-password="])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A running vault.
pub struct TestVault {
    /// gRPC address.
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestVault {
    /// `http://<addr>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TestVault {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}

/// The token of `caller` in a test namespace.
pub fn token(namespace: &str, caller: &str) -> SecretString {
    SecretString::from(format!("test-token-{namespace}-{caller}"))
}

/// The real vault on 127.0.0.1:0 with a fresh database, the default ACL and a token per caller.
pub async fn spawn_vault(namespace: &str) -> TestVault {
    let (database_url, _pool) = testkit::fresh_database().await.expect("fresh database");
    let mut acl = AclConfig::default_policy();
    for caller in ["signup", "provisioner", "operator"] {
        acl = acl.with_token(caller, &token(namespace, caller));
    }
    let keyring = KeyRing::new(
        "k1",
        [("k1".to_owned(), zeroize::Zeroizing::new([7u8; 32]))],
    )
    .expect("key ring");
    let mut config = vault::Config::new(
        SecretString::from(database_url),
        testkit::nats_url(),
        keyring,
        acl,
    );
    config.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.namespace = namespace.to_owned();
    config.database_max_connections = 5;
    let app = vault::Application::build(config)
        .await
        .expect("vault builds");
    let addr = app.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    TestVault {
        addr,
        shutdown: Some(tx),
    }
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
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            ops: 2,
            standby: 0,
            region: "eu".into(),
            root_ref: None,
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
    pub vault: TestVault,
    /// The benches.
    pub benches: Vec<SimBench>,
    /// The fleet.
    pub fleet: FleetConfig,
    /// The fleet as TOML (for the provisioner binary).
    pub fleet_toml: String,
}

/// The fleet TOML for `benches`.
pub fn fleet_toml(
    benches: &[(&str, &SimBench)],
    opts: &FleetOptions,
    extra_benches: &str,
) -> String {
    let mut text = String::new();
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
"#,
            region = opts.region,
            root_ref = opts
                .root_ref
                .as_deref()
                .map_or(String::new(), |r| format!("db_root_password_ref = \"{r}\"")),
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
"#,
        standby = opts.standby
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
        let store = EventStore::connect(
            &StoreConfig::new(testkit::nats_url()).with_namespace(namespace.clone()),
        )
        .await
        .expect("event store");
        let vault = spawn_vault(&namespace).await;
        let benches: Vec<SimBench> = (0..n)
            .map(|_| SimBench::spawn("erpnext,hrms", sim_toml))
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
        }
    }

    /// A vault client as `caller`.
    pub fn vault_client(&self, caller: &str) -> VaultClient {
        VaultClient::connect(self.vault.endpoint(), &token(&self.namespace, caller)).unwrap()
    }

    /// A provisioner config for this stack (fast retries for tests).
    pub fn config(&self) -> Config {
        let mut c = Config::new(
            testkit::nats_url(),
            self.vault.endpoint(),
            token(&self.namespace, "provisioner"),
            self.fleet.clone(),
        );
        c.namespace = self.namespace.clone();
        c.ack_wait = Duration::from_secs(5);
        c.process.retry_backoff = Duration::from_millis(20);
        c.process.verify_timeout = Duration::from_millis(500);
        c.slots.poll = Duration::from_millis(20);
        c.standby_refill_every = Duration::from_millis(100);
        c.shutdown_grace = Duration::from_secs(5);
        c
    }

    /// Starts a provisioner in this process.
    pub async fn start_provisioner(&self, config: Config) -> RunningProvisioner {
        let app = Application::build(config)
            .await
            .expect("provisioner builds");
        let shutdown = Shutdown::new();
        let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        RunningProvisioner {
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

/// Whether MariaDB (root, empty password, 127.0.0.1:3306) has database `db`.
pub async fn mariadb_has(db: &str) -> bool {
    use sqlx::Connection;
    let url = std::env::var("MARIADB_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    let mut conn = sqlx::MySqlConnection::connect(&url)
        .await
        .expect("connect to MariaDB");
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?")
            .bind(db)
            .fetch_all(&mut conn)
            .await
            .expect("query MariaDB");
    !rows.is_empty()
}

/// A child `provisioner` process (the crate's own binary) for this stack, with extra env.
pub fn spawn_provisioner_process(
    stack: &TestStack,
    fleet_file: &Path,
    env: &[(&str, &str)],
) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_provisioner"));
    cmd.env("NATS_URL", testkit::nats_url())
        .env("TENANTRY_NAMESPACE", &stack.namespace)
        .env("TENANTRY_VAULT_ENDPOINT", stack.vault.endpoint())
        .env(
            "TENANTRY_VAULT_TOKEN",
            format!("test-token-{}-provisioner", stack.namespace),
        )
        .env("TENANTRY_FLEET", fleet_file)
        .env("TENANTRY_PROVISIONER_ACK_WAIT", "3")
        // A killed holder's bench slots come back once their lease expires.
        .env("TENANTRY_PROVISIONER_SLOT_LEASE", "3")
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
    cmd.spawn().expect("spawn provisioner")
}
