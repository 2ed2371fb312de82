//! End to end, as a front end sees it: every service runs as its own process (`tenantry vault`,
//! `tenantry projection`, `tenantry signup`, `tenantry provisioner`) against real NATS and
//! PostgreSQL, with frappe-sim as the bench. Signup → WatchSignup to the end → GetTenant shows
//! the tenant Active with its site and plan → the owner logs in to the site over REST.
//! Configured as production is: every gRPC port speaks TLS, the vault asks for client
//! certificates, tokens come from the environment and files, the directory wants an operator.

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use proto::v1::{
    GetTenantRequest, SignupRequest, TenantStatus, WatchSignupRequest,
    signup_service_client::SignupServiceClient, tenant_directory_client::TenantDirectoryClient,
};
use secrecy::SecretString;
use tokio::process::{Child, Command};

const TENANTRY: &str = env!("CARGO_BIN_EXE_tenantry");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn sha256_hex(token: &str) -> String {
    vault::acl::token_sha256(&SecretString::from(token.to_owned()))
}

/// One service process; killed when the test ends, however it ends.
fn spawn(service: &str, envs: &[(&str, String)], log_dir: &Path) -> Child {
    let log = std::fs::File::create(log_dir.join(format!("{service}.log"))).expect("log file");
    let mut cmd = Command::new(TENANTRY);
    cmd.arg(service)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true);
    // A clean environment for the variables the services read, so the caller's shell cannot leak in.
    for (k, _) in std::env::vars() {
        if k.starts_with("TENANTRY_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start tenantry {service}: {e}"))
}

/// The last lines of every service log, for a failure message.
fn logs_tail(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            out.push_str(&format!("\n--- {} ---\n{tail}\n", path.display()));
        }
    }
    out
}

async fn connect(tls: &svc::ClientTls, url: &str, logs: &Path) -> tonic::transport::Channel {
    for _ in 0..300 {
        if let Ok(c) = tls.endpoint(url).unwrap().connect().await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing answered at {url} within 30 s{}", logs_tail(logs));
}

#[tokio::test]
async fn a_signup_becomes_an_active_tenant_whose_owner_can_log_in() {
    testkit::init_logging();
    let namespace = testkit::unique_namespace();
    let (database_url, _pool) = testkit::fresh_database()
        .await
        .expect("PostgreSQL must be running (just up)");
    let work = tempfile::tempdir().expect("temp dir");
    let logs = work.path();

    // The bench: frappe-sim, as `tenantry dev` would run it.
    let bench = tenantry::sim::SimBench::start(&work.path().join("bench"), 0, "erpnext,hrms")
        .await
        .expect("frappe-sim");
    let fleet = format!(
        r#"[[benches]]
name = "e2e-bench"
region = "eu"
base_url = {base:?}
base_domain = "erp.localhost"
routing = "header"
public_scheme = "http"
max_sites = 10
max_concurrent_operations = 2
apps = ["erpnext", "hrms"]
db_root_password_file = {root:?}
runner = {{ kind = "local", bench_dir = {dir:?}, bench_bin = {bin:?} }}

[plans.business]
apps = ["erpnext", "hrms"]
limits = {{ max_users = 25 }}
"#,
        base = bench.base_url,
        dir = bench.dir.display().to_string(),
        bin = bench.bin.display().to_string(),
        root = bench.dir.join("db-root-password").display().to_string(),
    );
    let fleet_path = work.path().join("fleet.toml");
    std::fs::write(&fleet_path, fleet).unwrap();

    // Credentials exactly as production passes them: a key ring and caller token hashes in env.
    let signup_token = format!("signup-{namespace}");
    let provisioner_token = format!("provisioner-{namespace}");
    let reader_token = format!("reader-{namespace}");
    let operators = format!(
        "[operators.e2e-reader]\ntoken_sha256 = \"{}\"\nrole = \"reader\"\n",
        svc::auth::token_sha256(&reader_token)
    );
    // A throw-away CA, as `tenantry dev` makes one; certificates name `localhost`.
    let ca = svc::devca::DevCa::load_or_create(&work.path().join("tls")).expect("dev CA");
    let path = |p: &Path| p.display().to_string();
    let server_tls = vec![
        ("TENANTRY_TLS_CERT", path(&ca.server_cert)),
        ("TENANTRY_TLS_KEY", path(&ca.server_key)),
    ];
    let client_tls = vec![
        ("TENANTRY_TLS_CA", path(&ca.ca)),
        ("TENANTRY_TLS_CLIENT_CERT", path(&ca.client_cert)),
        ("TENANTRY_TLS_CLIENT_KEY", path(&ca.client_key)),
    ];
    // Authentik: the double, held to its OpenAPI schema, as `tenantry dev` runs it.
    let authentik = authentik_fake::FakeAuthentik::start(authentik_fake::FakeConfig::default())
        .await
        .expect("authentik fake");
    let identity_token = format!("identity-{namespace}");
    let provisioner_token_file = work.path().join("provisioner.token");
    std::fs::write(&provisioner_token_file, &provisioner_token).unwrap();
    let keyring = "active = \"k1\"\n[[keys]]\nid = \"k1\"\nkey = \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"\n".to_owned();
    let callers = format!(
        "[callers.signup]\ntoken_sha256 = \"{}\"\n[callers.provisioner]\ntoken_sha256 = \"{}\"\n[callers.identity]\ntoken_sha256 = \"{}\"\n",
        sha256_hex(&signup_token),
        sha256_hex(&provisioner_token),
        sha256_hex(&identity_token)
    );
    let nats = testkit::nats_url();
    let (vault_port, directory_port, signup_port) = (free_port(), free_port(), free_port());
    let vault_url = format!("https://localhost:{vault_port}");
    let common = |extra: Vec<(&'static str, String)>| {
        let mut v = vec![
            ("NATS_URL", nats.clone()),
            ("TENANTRY_NAMESPACE", namespace.clone()),
            ("DATABASE_URL", database_url.clone()),
            ("RUST_LOG", "info".to_owned()),
            ("RUST_BACKTRACE", "0".to_owned()),
        ];
        v.extend(extra);
        v
    };

    let _vault = spawn(
        "vault",
        &common(
            vec![
                ("TENANTRY_VAULT_LISTEN", format!("127.0.0.1:{vault_port}")),
                ("TENANTRY_VAULT_KEYRING", keyring),
                ("TENANTRY_VAULT_CALLERS", callers),
                ("TENANTRY_TLS_CLIENT_CA", path(&ca.ca)),
            ]
            .into_iter()
            .chain(server_tls.clone())
            .collect(),
        ),
        logs,
    );
    let _projection = spawn(
        "projection",
        &common(
            vec![
                (
                    "TENANTRY_PROJECTION_LISTEN",
                    format!("127.0.0.1:{directory_port}"),
                ),
                ("TENANTRY_OPERATORS", operators.clone()),
            ]
            .into_iter()
            .chain(server_tls.clone())
            .collect(),
        ),
        logs,
    );
    let _signup = spawn(
        "signup",
        &common(
            vec![
                ("TENANTRY_SIGNUP_ADDR", format!("127.0.0.1:{signup_port}")),
                ("TENANTRY_VAULT_ENDPOINT", vault_url.clone()),
                ("TENANTRY_SIGNUP_VAULT_TOKEN", signup_token),
                (
                    "TENANTRY_SIGNUP_OPERATOR_ADDR",
                    format!("127.0.0.1:{}", free_port()),
                ),
                ("TENANTRY_OPERATORS", operators),
            ]
            .into_iter()
            .chain(server_tls.clone())
            .chain(client_tls.clone())
            .collect(),
        ),
        logs,
    );
    let _provisioner = spawn(
        "provisioner",
        &common(
            vec![
                ("TENANTRY_VAULT_ENDPOINT", vault_url.clone()),
                (
                    "TENANTRY_PROVISIONER_VAULT_TOKEN_FILE",
                    path(&provisioner_token_file),
                ),
                ("TENANTRY_FLEET", fleet_path.display().to_string()),
            ]
            .into_iter()
            .chain(client_tls.clone())
            .collect(),
        ),
        logs,
    );
    let _identity = spawn(
        "identity",
        &common(
            vec![
                ("TENANTRY_VAULT_ENDPOINT", vault_url.clone()),
                ("TENANTRY_IDENTITY_VAULT_TOKEN", identity_token),
                ("TENANTRY_AUTHENTIK_URL", authentik.base_url()),
                (
                    "TENANTRY_AUTHENTIK_TOKEN",
                    authentik_fake::FakeConfig::default().token,
                ),
                ("TENANTRY_FLEET", fleet_path.display().to_string()),
            ]
            .into_iter()
            .chain(client_tls)
            .collect(),
        ),
        logs,
    );

    // What a front end does.
    let tls = svc::ClientTls::with_ca(std::fs::read(&ca.ca).unwrap());
    let mut signup = SignupServiceClient::new(
        connect(&tls, &format!("https://localhost:{signup_port}"), logs).await,
    );
    // Plaintext is not answered where TLS is configured.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{signup_port}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let refused = SignupServiceClient::new(channel)
            .check_subdomain(proto::v1::CheckSubdomainRequest {
                subdomain: "plain".into(),
                organisation: String::new(),
            })
            .await;
        assert!(refused.is_err(), "a plaintext call was answered");
    }
    let directory_channel =
        connect(&tls, &format!("https://localhost:{directory_port}"), logs).await;
    let anonymous = TenantDirectoryClient::new(directory_channel.clone())
        .get_tenant(GetTenantRequest {
            tenant_id: "01890a5d-ac96-774b-bcce-b302099a8057".into(),
            min_sequence: 0,
        })
        .await
        .expect_err("the directory refuses a call without a token");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    let mut directory = TenantDirectoryClient::with_interceptor(
        directory_channel,
        testkit::Bearer::new(&reader_token),
    );
    let password = "Tq7#mV2!pLx9@wRz-e2e";
    let mut accepted = None;
    // The gateway answers UNAVAILABLE until the vault is up; a front end retries that.
    for _ in 0..100 {
        let request = SignupRequest {
            email: "grace@example.com".into(),
            password: password.into(),
            full_name: "Grace Hopper".into(),
            organisation: "Cobol Works".into(),
            subdomain: "cobol-works".into(),
            plan: "business".into(),
            region: String::new(),
            idempotency_key: format!("e2e-{namespace}"),
        };
        match signup.signup(request).await {
            Ok(r) => {
                accepted = Some(r.into_inner());
                break;
            }
            Err(s) if s.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(s) => panic!("signup refused: {s:?}"),
        }
    }
    let accepted = accepted.expect("signup accepted once the stack is up");
    let tenant_id = accepted.tenant_id.clone();

    let mut progress = signup
        .watch_signup(WatchSignupRequest {
            tenant_id: tenant_id.clone(),
        })
        .await
        .expect("WatchSignup")
        .into_inner();
    let mut updates = Vec::new();
    let watched = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(p) = progress.message().await.expect("progress stream") {
            updates.push(p);
        }
    })
    .await;
    assert!(
        watched.is_ok(),
        "WatchSignup did not end; logs under {}",
        logs.display()
    );
    let last = updates.last().expect("at least one progress update");
    assert!(
        last.done && !last.failed,
        "provisioning ended with {last:?}"
    );
    assert_eq!(last.percent, 100);
    assert_eq!(
        last.step, "sso_ready",
        "the signup ends with single sign-on ready"
    );
    assert!(
        updates.iter().any(|u| u.step == "site_ready"),
        "the site being ready is a step before it"
    );
    let percents: Vec<u32> = updates.iter().map(|u| u.percent).collect();
    assert!(
        percents.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes backwards: {percents:?}"
    );

    let tenant = directory
        .get_tenant(GetTenantRequest {
            tenant_id: tenant_id.clone(),
            min_sequence: last.sequence,
        })
        .await
        .expect("GetTenant")
        .into_inner();
    assert_eq!(tenant.status, TenantStatus::Active as i32);
    assert_eq!(tenant.plan, "business");
    assert_eq!(tenant.site, "cobol-works.erp.localhost");
    assert_eq!(tenant.bench, "e2e-bench");
    assert_eq!(tenant.owner_email, "grace@example.com");
    assert_eq!(tenant.sso_status, "ready");
    assert_eq!(
        tenant.sso_login_url,
        format!("{}/login", tenant.url.trim_end_matches('/'))
    );
    // The owner signs in through Authentik with the same password.
    assert!(authentik.can_sign_in("tenant-cobol-works", "grace@example.com", password));

    // The OAuth2 client secret and the password are nowhere but where they belong: not in any
    // service's log, and not in any table of the database the services share (the vault holds
    // the secret encrypted).
    let snapshot = authentik.snapshot();
    let secret = snapshot.providers[0]["client_secret"]
        .as_str()
        .expect("client secret")
        .to_owned();
    for entry in std::fs::read_dir(logs).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        assert!(
            !text.contains(&secret),
            "{} holds the client secret",
            entry.path().display()
        );
        assert!(
            !text.contains(password),
            "{} holds the password",
            entry.path().display()
        );
    }
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(&_pool)
    .await
    .unwrap();
    assert!(
        tables.len() >= 3,
        "the services made their tables: {tables:?}"
    );
    for (schema, table) in &tables {
        let rows: Vec<(String,)> =
            sqlx::query_as(&format!(r#"SELECT t::text FROM "{schema}"."{table}" t"#))
                .fetch_all(&_pool)
                .await
                .unwrap();
        for (row,) in rows {
            assert!(
                !row.contains(&secret),
                "{schema}.{table} holds the client secret"
            );
            assert!(
                !row.contains(password),
                "{schema}.{table} holds the password"
            );
        }
    }

    // The owner logs in to their new site with the password they chose.
    let site = frappe::SiteName::parse(&tenant.site).unwrap();
    let client =
        frappe::FrappeClient::new(&bench.base_url, site, frappe::SiteRouting::Header).unwrap();
    let owner = frappe::UserId::parse("grace@example.com").unwrap();
    client
        .login(&owner, &SecretString::from(password.to_owned()))
        .await
        .expect("owner logs in");
    let wrong = client
        .login(&owner, &SecretString::from("not the password".to_owned()))
        .await;
    assert!(wrong.is_err(), "a wrong password is refused");

    // Leave nothing behind in NATS.
    let store = eventstore::EventStore::connect(
        &eventstore::StoreConfig::new(testkit::nats_url()).with_namespace(namespace.clone()),
    )
    .await
    .unwrap();
    store.destroy().await.unwrap();
}
