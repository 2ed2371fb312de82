//! `tenantry dev`: vault, signup, provisioner, projection and identity in one process, on fixed local
//! ports, with frappe-sim as the bench unless `--fleet` names real benches and the Authentik fake
//! unless `--authentik-url` names a real Authentik. Development keys,
//! tokens and a throw-away CA are generated once and kept under the data directory (mode 0600),
//! so tenants and their vaulted secrets survive a restart; every gRPC port speaks TLS unless
//! `--no-tls`, and the vault requires client certificates (mTLS).

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, Executor, PgConnection};
use svc::devca::{DevCa, DevCaFiles};
use svc::{DatabaseArgs, NatsArgs, OperatorAuth, Shutdown, TelemetryArgs};

use crate::dev_secrets::DevSecrets;
use crate::sim::{AuthentikFake, SimBench};

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
    /// Public signup gateway (SignupService; gRPC and grpc-web).
    #[arg(long, env = "TENANTRY_SIGNUP_ADDR", default_value = "127.0.0.1:50051")]
    pub signup_addr: SocketAddr,
    /// The signup gateway's operator API (TenantAdmin).
    #[arg(
        long,
        env = "TENANTRY_SIGNUP_OPERATOR_ADDR",
        default_value = "127.0.0.1:50054"
    )]
    pub operator_addr: SocketAddr,
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
    /// Billing API.
    #[arg(
        long,
        env = "TENANTRY_BILLING_LISTEN",
        default_value = "127.0.0.1:50055"
    )]
    pub billing_addr: SocketAddr,
    /// The one admin port of the whole process: `/healthz`, `/readyz` (every service's
    /// dependencies and consumers) and `/metrics` (every service's metrics).
    #[arg(
        long = "admin-addr",
        env = "TENANTRY_ADMIN_ADDR",
        default_value = "127.0.0.1:9464"
    )]
    pub admin_addr: SocketAddr,
    /// The signup page (`web/`), with `/config.json` naming the gateway; port 0 picks one.
    #[arg(long, env = "TENANTRY_WEB_ADDR", default_value = "127.0.0.1:8080")]
    pub web_addr: SocketAddr,
    /// Origins a browser may call the signup gateway from (grpc-web), comma-separated; `*`
    /// allows any. Without it: the signup page's own port, a Vite dev server
    /// (`http://localhost:5173`, `http://127.0.0.1:5173`) and the gateway's own origin.
    #[arg(long, env = "TENANTRY_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Serve plaintext gRPC instead of TLS (e.g. for a browser that does not trust the dev CA).
    #[arg(long, env = "TENANTRY_DEV_NO_TLS")]
    pub no_tls: bool,
    /// The plan catalogue (prices, trials, limits, apps); without it a sample catalogue is
    /// written to the data directory (`plans.toml`) and used.
    #[arg(long, env = "TENANTRY_PLANS")]
    pub plans_file: Option<PathBuf>,
    /// A real Authentik (`https://auth.example`); without it the Authentik fake runs.
    #[arg(long, env = "TENANTRY_AUTHENTIK_URL")]
    pub authentik_url: Option<String>,
    /// File holding the real Authentik's API token (or set `TENANTRY_AUTHENTIK_TOKEN`).
    #[arg(long, env = "TENANTRY_AUTHENTIK_TOKEN_FILE")]
    pub authentik_token_file: Option<PathBuf>,
    /// Port of the Authentik fake.
    #[arg(long, env = "TENANTRY_DEV_AUTHENTIK_PORT", default_value_t = 9000)]
    pub authentik_port: u16,
    /// Ready sites kept in the standby pool per plan app set (frappe-sim fleet only).
    #[arg(long, env = "TENANTRY_DEV_STANDBY", default_value_t = 1)]
    pub standby: u32,
    /// Confirm owners' email addresses as production does; the codes go to a local SMTP sink
    /// whose messages are printed and kept under `<data dir>/mail/` (what `tenantry demo`
    /// reads them from).
    #[arg(
        long = "verify-email",
        env = "TENANTRY_DEV_VERIFY_EMAIL",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub verify_email: bool,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Where a browser front end runs in development: a Vite dev server.
pub const DEV_CORS_ORIGINS: [&str; 2] = ["http://localhost:5173", "http://127.0.0.1:5173"];

/// The origins `tenantry dev` lets browsers call the signup gateway from: `given`
/// (`--cors-origins`) when any, else a Vite dev server's and `own` (the gateway's and the
/// signup page's origins, when known).
pub fn cors_origins(given: &[String], own: impl IntoIterator<Item = String>) -> Vec<String> {
    let given: Vec<String> = given
        .iter()
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    if !given.is_empty() {
        return given;
    }
    DEV_CORS_ORIGINS
        .iter()
        .map(|o| (*o).to_owned())
        .chain(own)
        .collect()
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
public_port = {port}
max_sites = 500
max_concurrent_operations = 4
apps = ["erpnext", "hrms"]
db_root_password_file = {root:?}
runner = {{ kind = "local", bench_dir = {dir:?}, bench_bin = {bin:?} }}

[standby]
size = {standby}
"#,
        base_url = bench.base_url,
        port = bench.port,
        dir = bench.dir.display().to_string(),
        bin = bench.bin.display().to_string(),
        root = bench.dir.join("db-root-password").display().to_string(),
    )
}

/// The sample plan catalogue `tenantry dev` starts with.
/// The plan catalogue `tenantry dev` writes when none is given (tests run with it too).
pub const SAMPLE_PLANS: &str = r#"# The plan catalogue every service reads. Raise `version` when you change a plan.
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

[plans.business]
name = "Business"
price_minor = 4900
currency = "EUR"
interval = "month"
trial_days = 14
max_users = 25
max_storage_mb = 10240
max_database_mb = 2048
apps = ["erpnext", "hrms"]

[plans.enterprise]
name = "Enterprise"
price_minor = 49000
currency = "EUR"
interval = "year"
max_users = 500
max_storage_mb = 102400
max_database_mb = 20480
apps = ["erpnext", "hrms"]
"#;

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
    // One admin port for the process; every service reports into it.
    let admin = svc::AdminHandle::default();
    let admin_server = svc::AdminServer::bind(
        args.admin_addr,
        admin.readiness.clone(),
        admin.metrics.clone(),
    )
    .await
    .with_context(|| format!("cannot listen on {} (--admin-addr)", args.admin_addr))?;
    let admin_addr = admin_server.local_addr()?;

    // The plan catalogue every service reads.
    let plans_path = match &args.plans_file {
        Some(p) => p.clone(),
        None => {
            let p = data_dir.join("plans.toml");
            if !p.exists() {
                std::fs::write(&p, SAMPLE_PLANS)?;
            }
            p
        }
    };
    let catalogue = plans::PlanCatalogue::load(&plans_path)?;

    // The bench: real ones from a fleet file, or frappe-sim.
    let (fleet, fleet_path, _sim) = match &args.fleet {
        Some(path) => (
            provisioner::fleet::FleetConfig::load(path)?,
            path.clone(),
            None,
        ),
        None => {
            let bench =
                SimBench::start(&data_dir.join("bench"), args.frappe_port, "erpnext,hrms").await?;
            let toml = sim_fleet(&bench, args.standby);
            let path = data_dir.join("fleet.toml");
            std::fs::write(&path, &toml)?;
            (
                provisioner::fleet::FleetConfig::parse(&toml)?,
                path,
                Some(bench),
            )
        }
    };

    // Authentik: a real one, or the fake.
    let (authentik_url, authentik_token, _fake) = match &args.authentik_url {
        Some(url) => {
            let token = svc::secret::load(
                "the Authentik API token",
                "TENANTRY_AUTHENTIK_TOKEN",
                args.authentik_token_file.as_deref(),
            )?
            .context("a real Authentik needs its API token: set TENANTRY_AUTHENTIK_TOKEN or --authentik-token-file")?;
            (url.clone(), token, None)
        }
        None => {
            let fake = AuthentikFake::start(args.authentik_port, &secrets.authentik_token).await?;
            (
                fake.base_url.clone(),
                secrets.authentik_token.clone(),
                Some(fake),
            )
        }
    };

    // A throw-away CA: every gRPC port serves TLS, the vault also wants client certificates.
    let tls = if args.no_tls {
        None
    } else {
        Some(DevCa::load_or_create(&data_dir.join("tls")).context("cannot create the dev CA")?)
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Certificates name `localhost`; URLs use it so clients check the name they dial.
    let url = |addr: SocketAddr| format!("{scheme}://localhost:{}", addr.port());
    let server_tls = |files: &DevCaFiles, mtls: bool| svc::ServerTlsArgs {
        cert: Some(files.server_cert.clone()),
        key: Some(files.server_key.clone()),
        client_ca: mtls.then(|| files.ca.clone()),
    };
    let client_tls = |files: &DevCaFiles| svc::ClientTlsArgs {
        ca: Some(files.ca.clone()),
        cert: Some(files.client_cert.clone()),
        key: Some(files.client_key.clone()),
    };

    // Vault first: the others need it.
    let keyring = vault::crypto::KeyRing::parse(&format!(
        "active = \"dev\"\n[[keys]]\nid = \"dev\"\nkey = \"{}\"\n",
        secrets.kek.expose_secret()
    ))?;
    let acl = vault::acl::AclConfig::default_policy()
        .with_token("signup", &secrets.signup_vault_token)
        .with_token("provisioner", &secrets.provisioner_vault_token)
        .with_token("identity", &secrets.identity_vault_token)
        .with_token("billing", &secrets.billing_vault_token)
        .with_token("operator", &secrets.operator_vault_token);
    let mut vault_config = vault::Config::new(
        SecretString::from(database_url.clone()),
        &args.nats.nats_url,
        keyring,
        acl,
    );
    vault_config.listen_addr = args.vault_addr;
    vault_config.shared_admin = Some(admin.clone());
    vault_config.namespace = args.nats.namespace.clone();
    vault_config.nats_replicas = usize::from(args.nats.replicas);
    if let Some(files) = &tls {
        vault_config.grpc.tls = server_tls(files, true);
    }
    let vault_app = vault::Application::build(vault_config)
        .await
        .context("vault did not start")?;
    let vault_url = url(vault_app.local_addr());

    // The person operating the stack, and billing, which asks for suspensions as a service.
    let operators = OperatorAuth::from_toml(&format!(
        "[operators.dev-operator]\ntoken_sha256 = \"{}\"\nrole = \"admin\"\n[operators.billing]\ntoken_sha256 = \"{}\"\nrole = \"admin\"\nservice = true\n",
        svc::auth::token_sha256(secrets.admin_token.expose_secret()),
        svc::auth::token_sha256(secrets.billing_token.expose_secret()),
    ))?;
    let mut projection_config = projection::Config::new(database_url.clone(), &args.nats.nats_url);
    projection_config.listen_addr = args.directory_addr;
    projection_config.shared_admin = Some(admin.clone());
    projection_config.nats = args.nats.clone();
    projection_config.operator_auth = Some(operators.clone());
    if let Some(files) = &tls {
        projection_config.grpc.tls = server_tls(files, false);
    }
    let projection_app = projection::Application::build(projection_config)
        .await
        .context("projection did not start")?;

    let mut signup_config = signup::Config::new(
        args.nats.clone(),
        &vault_url,
        secrets.signup_vault_token.clone(),
    );
    signup_config.listen_addr = args.signup_addr;
    signup_config.shared_admin = Some(admin.clone());
    signup_config.operator_addr = args.operator_addr;
    signup_config.operator_auth = Some(operators.clone());
    signup_config.plans_file = Some(plans_path.clone());
    // Kept alive for the whole run: dropping it stops the sink.
    let _mail = if args.verify_email {
        let sink = smtp_sink::SmtpSink::start().context("cannot start the dev SMTP sink")?;
        signup_config.verify_email = true;
        signup_config.smtp_url = Some(SecretString::from(sink.url()));
        keep_mail(&sink, data_dir.join("mail"))?;
        Some(sink)
    } else {
        None
    };
    // The page is bound first, so its origin (even on a picked port) is allowed.
    let sites_domain = fleet
        .benches
        .first()
        .map_or_else(|| "erp.localhost".to_owned(), |b| b.base_domain.clone());
    // The page's gateway URL must be known before the gateway binds: with port 0 it is not,
    // and the page is told `localhost:0` (pick a port to use the page).
    let page_config = crate::web::PageConfig {
        gateway: url(args.signup_addr),
        domain: sites_domain,
    };
    let (web_addr, page) = crate::web::bind(args.web_addr, page_config, shutdown.clone())
        .await
        .with_context(|| format!("cannot serve the signup page on {}", args.web_addr))?;
    // Its own origin is known up front unless the port is picked at bind time.
    let cors = cors_origins(
        &args.cors_origins,
        (args.signup_addr.port() != 0)
            .then(|| url(args.signup_addr))
            .into_iter()
            .chain([
                format!("http://localhost:{}", web_addr.port()),
                format!("http://127.0.0.1:{}", web_addr.port()),
            ]),
    );
    signup_config.cors_origins = cors.clone();
    if let Some(files) = &tls {
        signup_config.grpc.tls = server_tls(files, false);
        signup_config.client_tls = client_tls(files);
    }
    let signup_app = signup::Application::build(signup_config)
        .await
        .context("signup did not start")?;

    let mut provisioner_config = provisioner::Config::new(
        &args.nats.nats_url,
        &vault_url,
        secrets.provisioner_vault_token.clone(),
        fleet,
    );
    provisioner_config.nats = args.nats.store_config()?;
    provisioner_config.plans = Some(catalogue);
    provisioner_config.shared_admin = Some(admin.clone());
    if let Some(files) = &tls {
        provisioner_config.vault_tls = client_tls(files).load()?;
    }
    let provisioner_app = provisioner::Application::build(provisioner_config)
        .await
        .context("provisioner did not start")?;

    let mut identity_config = identity::Config::new(
        &args.nats.nats_url,
        &vault_url,
        secrets.identity_vault_token.clone(),
        authentik_client::AuthentikConfig::new(&authentik_url, authentik_token),
        identity::sites::SiteApi::load(&fleet_path)?,
    );
    identity_config.nats = args.nats.store_config()?;
    identity_config.shared_admin = Some(admin.clone());
    if let Some(files) = &tls {
        identity_config.vault_tls = client_tls(files).load()?;
    }
    let identity_app = identity::Application::build(identity_config)
        .await
        .context("identity did not start")?;

    let mut billing_config = billing::Config::new(
        &args.nats.nats_url,
        plans::PlanCatalogue::load(&plans_path)?,
        url(signup_app.operator_addr()),
        secrets.billing_token.clone(),
    );
    billing_config.nats = args.nats.store_config()?;
    billing_config.listen_addr = args.billing_addr;
    billing_config.shared_admin = Some(admin.clone());
    billing_config.operators = operators;
    let billing_vault_tls = match &tls {
        Some(files) => client_tls(files).load()?,
        None => svc::ClientTls::default(),
    };
    if let Some(files) = &tls {
        billing_config.grpc.tls = server_tls(files, false);
        billing_config.admin_tls = client_tls(files).load()?;
    }
    billing_config.dunning.usage_grace = 7 * 86_400;
    billing_config.metering = Some(billing::meter::MeterConfig {
        sites: frappe::SiteAccess::load(&fleet_path)?,
        vault_endpoint: vault_url.clone(),
        vault_tls: billing_vault_tls,
        vault_token: secrets.billing_vault_token.clone(),
        every: std::time::Duration::from_secs(3_600),
    });
    let billing_app = billing::Application::build(
        billing_config,
        std::sync::Arc::new(billing::clock::SystemClock),
        billing::payment::ManualProvider,
    )
    .await
    .context("billing did not start")?;

    let mut env = vec![
        ("TENANTRY_SIGNUP_URL", url(signup_app.local_addr())),
        ("TENANTRY_ADMIN_URL", url(signup_app.operator_addr())),
        ("TENANTRY_DIRECTORY_URL", url(projection_app.local_addr())),
        ("TENANTRY_BILLING_URL", url(billing_app.local_addr())),
        ("TENANTRY_VAULT_URL", vault_url.clone()),
        ("NATS_URL", args.nats.nats_url.clone()),
    ];
    if let Some(files) = &tls {
        env.push(("TENANTRY_TLS_CA", files.ca.display().to_string()));
        env.push((
            "TENANTRY_TLS_CLIENT_CERT",
            files.client_cert.display().to_string(),
        ));
        env.push((
            "TENANTRY_TLS_CLIENT_KEY",
            files.client_key.display().to_string(),
        ));
    }
    let operator_env = secrets.write_operator_env(&env)?;
    println!(
        "tenantry dev is running\n  signup page               http://localhost:{}\n  signup (gRPC + grpc-web)  {}\n  operator API              {}\n  directory                 {}\n  billing                   {}\n  vault                     {vault_url}\n  admin (health, metrics)   http://{admin_addr}\n  Authentik                 {authentik_url}{}\n  browsers (CORS) from      {}\n  for tenantctl             set -a; . {}; set +a\n",
        web_addr.port(),
        url(signup_app.local_addr()),
        url(signup_app.operator_addr()),
        url(projection_app.local_addr()),
        url(billing_app.local_addr()),
        if args.authentik_url.is_none() {
            " (fake)"
        } else {
            ""
        },
        cors.join(", "),
        operator_env.display(),
    );

    // The process is up; each service's own part says whether it is.
    admin.readiness.set(true);
    let admin_task = tokio::spawn(admin_server.serve(shutdown.clone()));
    let page_task = tokio::spawn(page);
    // Any service failing stops the others: a half-running dev stack only confuses.
    let stop_all = |r: anyhow::Result<()>, s: &Shutdown| {
        if r.is_err() {
            s.trigger();
        }
        r
    };
    let (a, b, c, d, e, f) = tokio::join!(
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
        async {
            stop_all(
                identity_app
                    .run_until_stopped(shutdown.clone())
                    .await
                    .context("identity"),
                &shutdown,
            )
        },
        async {
            stop_all(
                billing_app
                    .run_until_stopped(shutdown.clone())
                    .await
                    .map_err(anyhow::Error::new)
                    .context("billing"),
                &shutdown,
            )
        },
    );
    shutdown.trigger();
    let _ = admin_task.await;
    let _ = page_task.await;
    a.and(b).and(c).and(d).and(e).and(f)
}

/// Prints every mail the dev sink receives and keeps it as `<dir>/<n>.txt`, for a person
/// reading the log and for `tenantry demo`, which takes the verification code from there.
fn keep_mail(sink: &smtp_sink::SmtpSink, dir: std::path::PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut received = sink.subscribe();
    tokio::spawn(async move {
        let mut n: u64 = 0;
        while let Ok(message) = received.recv().await {
            n += 1;
            let text = message.to_string();
            println!("--- mail {n} (dev SMTP sink) ---\n{text}\n---");
            let file = dir.join(format!("{}-{n}.txt", stamp_ms()));
            if let Err(e) = std::fs::write(&file, &text) {
                tracing::warn!(error = %e, file = %file.display(), "cannot keep a dev mail");
            }
        }
    });
    Ok(())
}

/// Milliseconds since the epoch: file names that sort by arrival.
fn stamp_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_are_the_given_ones_else_vite_and_the_gateway() {
        let own = Some("https://localhost:50051".to_owned());
        assert_eq!(
            cors_origins(&[], own.clone()),
            [
                "http://localhost:5173",
                "http://127.0.0.1:5173",
                "https://localhost:50051"
            ]
        );
        assert_eq!(cors_origins(&[" ".into()], None), DEV_CORS_ORIGINS);
        assert_eq!(
            cors_origins(&[" https://app.example ".into(), String::new()], own),
            ["https://app.example"]
        );
    }
}
