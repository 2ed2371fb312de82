//! `tenantry dev`: vault, signup, provisioner and projection in one process, on fixed local
//! ports, with frappe-sim as the bench unless `--fleet` names real benches. Development keys and
//! tokens are generated once and kept under the data directory (mode 0600), so tenants and their
//! vaulted secrets survive a restart.

use std::collections::BTreeMap;
use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, Executor, PgConnection};
use svc::{DatabaseArgs, NatsArgs, Shutdown, TelemetryArgs};

use crate::sim::SimBench;

/// Flags of `tenantry dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where development keys, tokens and the frappe-sim bench live.
    #[arg(long, env = "TENANTRY_DEV_DIR", default_value = ".tenantry/dev")]
    pub data_dir: PathBuf,
    /// A fleet file naming real benches; without it frappe-sim is the bench.
    #[arg(long, env = "TENANTRY_FLEET")]
    pub fleet: Option<PathBuf>,
    /// Port of frappe-sim's REST server.
    #[arg(long, env = "TENANTRY_DEV_FRAPPE_PORT", default_value_t = 8000)]
    pub frappe_port: u16,
    /// Public signup gateway (SignupService, TenantAdmin; gRPC and grpc-web).
    #[arg(long, env = "TENANTRY_SIGNUP_ADDR", default_value = "127.0.0.1:50051")]
    pub signup_addr: SocketAddr,
    /// TenantDirectory (projection).
    #[arg(
        long,
        env = "TENANTRY_DIRECTORY_ADDR",
        default_value = "127.0.0.1:50052"
    )]
    pub directory_addr: SocketAddr,
    /// Vault.
    #[arg(long, env = "TENANTRY_VAULT_ADDR", default_value = "127.0.0.1:50053")]
    pub vault_addr: SocketAddr,
    /// Ready sites kept in the standby pool per plan app set (frappe-sim fleet only).
    #[arg(long, env = "TENANTRY_DEV_STANDBY", default_value_t = 1)]
    pub standby: u32,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Tokens and the key-encryption key of a dev stack.
struct DevSecrets {
    values: BTreeMap<String, String>,
}

impl DevSecrets {
    const FILE: &'static str = "secrets.env";

    /// Loads `<dir>/secrets.env`, creating any value that is missing.
    fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(Self::FILE);
        let mut values = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                if let Some((k, v)) = line.split_once('=') {
                    values.insert(k.trim().to_owned(), v.trim().to_owned());
                }
            }
        }
        let mut changed = false;
        for key in [
            "TENANTRY_ADMIN_TOKEN",
            "TENANTRY_VAULT_TOKEN",
            "SIGNUP_VAULT_TOKEN",
            "PROVISIONER_VAULT_TOKEN",
        ] {
            if !values.contains_key(key) {
                values.insert(
                    key.to_owned(),
                    vault::acl::generate_token().expose_secret().to_owned(),
                );
                changed = true;
            }
        }
        if !values.contains_key("VAULT_KEK") {
            values.insert(
                "VAULT_KEK".to_owned(),
                vault::crypto::generate_kek_base64()
                    .expose_secret()
                    .to_owned(),
            );
            changed = true;
        }
        if changed {
            let text: String = values.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            write_private(&path, &text)?;
        }
        Ok(Self { values })
    }

    fn get(&self, key: &str) -> SecretString {
        SecretString::from(self.values.get(key).cloned().unwrap_or_default())
    }
}

/// Writes a file only its owner can read (it holds tokens and key material).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Creates the database named in `url` when it does not exist yet.
async fn ensure_database(url: &str) -> anyhow::Result<()> {
    if PgConnection::connect(url).await.is_ok() {
        return Ok(());
    }
    let (server, name) = match url.rsplit_once('/') {
        Some((server, db)) => (server, db.split('?').next().unwrap_or(db)),
        None => bail!(
            "DATABASE_URL {} names no database",
            svc::args::redact_url(url)
        ),
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        bail!("database name {name:?} must be letters, digits and _");
    }
    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .with_context(|| {
            format!(
                "PostgreSQL is not reachable at {}; run `just up`",
                svc::args::redact_url(server)
            )
        })?;
    admin
        .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await?;
    tracing::info!(database = name, "created database");
    Ok(())
}

/// The fleet TOML for one frappe-sim bench.
fn sim_fleet(bench: &SimBench, standby: u32) -> String {
    format!(
        r#"[[benches]]
name = "dev-bench-1"
region = "eu"
base_url = {base_url:?}
base_domain = "erp.localhost"
routing = "header"
public_scheme = "http"
max_sites = 500
max_concurrent_operations = 4
apps = ["erpnext", "hrms"]
runner = {{ kind = "local", bench_dir = {dir:?}, bench_bin = {bin:?} }}

[plans.starter]
apps = ["erpnext"]
limits = {{ max_users = 5, max_storage_mb = 1024 }}

[plans.business]
apps = ["erpnext", "hrms"]
limits = {{ max_users = 25, max_storage_mb = 10240 }}

[plans.enterprise]
apps = ["erpnext", "hrms"]
limits = {{ max_users = 500, max_storage_mb = 102400 }}

[standby]
size = {standby}
"#,
        base_url = bench.base_url,
        dir = bench.dir.display().to_string(),
        bin = bench.bin.display().to_string(),
    )
}

/// Runs the dev stack until SIGINT/SIGTERM.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let _guard = svc::telemetry::init("tenantry-dev", &args.telemetry)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    let secrets = DevSecrets::load_or_create(&data_dir)?;
    let database_url = args.database.database_url.clone();
    ensure_database(&database_url).await?;
    let shutdown = Shutdown::from_signals();

    // The bench: real ones from a fleet file, or frappe-sim.
    let (fleet, _sim) = match &args.fleet {
        Some(path) => (provisioner::fleet::FleetConfig::load(path)?, None),
        None => {
            let bench =
                SimBench::start(&data_dir.join("bench"), args.frappe_port, "erpnext,hrms").await?;
            let toml = sim_fleet(&bench, args.standby);
            std::fs::write(data_dir.join("fleet.toml"), &toml)?;
            (provisioner::fleet::FleetConfig::parse(&toml)?, Some(bench))
        }
    };

    // Vault first: the others need it.
    let kek = secrets.get("VAULT_KEK");
    let keyring = vault::crypto::KeyRing::parse(&format!(
        "active = \"dev\"\n[[keys]]\nid = \"dev\"\nkey = \"{}\"\n",
        kek.expose_secret()
    ))?;
    let acl = vault::acl::AclConfig::default_policy()
        .with_token("signup", &secrets.get("SIGNUP_VAULT_TOKEN"))
        .with_token("provisioner", &secrets.get("PROVISIONER_VAULT_TOKEN"))
        .with_token("operator", &secrets.get("TENANTRY_VAULT_TOKEN"));
    let mut vault_config = vault::Config::new(
        SecretString::from(database_url.clone()),
        &args.nats.nats_url,
        keyring,
        acl,
    );
    vault_config.listen_addr = args.vault_addr;
    vault_config.namespace = args.nats.namespace.clone();
    let vault_app = vault::Application::build(vault_config)
        .await
        .context("vault did not start")?;
    let vault_url = format!("http://{}", vault_app.local_addr());

    let mut projection_config = projection::Config::new(database_url.clone(), &args.nats.nats_url);
    projection_config.listen_addr = args.directory_addr;
    projection_config.nats.namespace = args.nats.namespace.clone();
    let projection_app = projection::Application::build(projection_config)
        .await
        .context("projection did not start")?;

    let mut signup_config = signup::Config::new(
        args.nats.clone(),
        &vault_url,
        secrets.get("SIGNUP_VAULT_TOKEN"),
    );
    signup_config.listen_addr = args.signup_addr;
    signup_config.admin_tokens = vec![secrets.get("TENANTRY_ADMIN_TOKEN")];
    let signup_app = signup::Application::build(signup_config)
        .await
        .context("signup did not start")?;

    let mut provisioner_config = provisioner::Config::new(
        &args.nats.nats_url,
        &vault_url,
        secrets.get("PROVISIONER_VAULT_TOKEN"),
        fleet,
    );
    provisioner_config.namespace = args.nats.namespace.clone();
    let provisioner_app = provisioner::Application::build(provisioner_config)
        .await
        .context("provisioner did not start")?;

    println!(
        "tenantry dev is running\n  signup (gRPC + grpc-web)  http://{}\n  directory                 http://{}\n  vault                     {vault_url}\n  operator tokens           {}\n",
        signup_app.local_addr(),
        projection_app.local_addr(),
        data_dir.join(DevSecrets::FILE).display(),
    );

    // Any service failing stops the others: a half-running dev stack only confuses.
    let stop_all = |r: anyhow::Result<()>, s: &Shutdown| {
        if r.is_err() {
            s.trigger();
        }
        r
    };
    let (a, b, c, d) = tokio::join!(
        async {
            stop_all(
                vault_app
                    .run_until_stopped(shutdown.clone().into_future())
                    .await
                    .context("vault"),
                &shutdown,
            )
        },
        async {
            stop_all(
                projection_app
                    .run_until_stopped(shutdown.clone().into_future())
                    .await
                    .context("projection"),
                &shutdown,
            )
        },
        async {
            stop_all(
                signup_app
                    .run_until_stopped(shutdown.clone().into_future())
                    .await
                    .context("signup"),
                &shutdown,
            )
        },
        async {
            stop_all(
                provisioner_app
                    .run_until_stopped(shutdown.clone())
                    .await
                    .context("provisioner"),
                &shutdown,
            )
        },
    );
    a.and(b).and(c).and(d)
}
