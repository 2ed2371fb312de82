//! The whole control plane as production runs it, for tests: every service its own process
//! (`tenantry vault`, `projection`, `signup`, `provisioner`, `identity`, `billing`) against real
//! NATS and PostgreSQL, frappe-sim as the bench and the Authentik double. Every gRPC port
//! speaks TLS, the vault asks for client certificates, tokens come from the environment and
//! files, the directory wants an operator, and each process has its own admin port.

#![allow(dead_code)] // each test file uses its part

pub mod units;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use secrecy::SecretString;
use tokio::process::{Child, Command};

const TENANTRY: &str = env!("CARGO_BIN_EXE_tenantry");

/// Every service process, in start order.
pub const SERVICES: [&str; 6] = [
    "vault",
    "projection",
    "signup",
    "provisioner",
    "identity",
    "billing",
];

/// The plan catalogue every process reads (`tenantry dev`'s sample).
const PLANS: &str = tenantry::dev::SAMPLE_PLANS;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn sha256_hex(token: &str) -> String {
    vault::acl::token_sha256(&SecretString::from(token.to_owned()))
}

/// What to start besides the defaults.
#[derive(Default)]
pub struct StackOptions {
    /// Where every process sends its spans (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub otlp_endpoint: Option<String>,
    /// `LOG_FORMAT` of every process (`json` for structured logs).
    pub log_format: Option<&'static str>,
    /// Start every service as its systemd unit in `deploy/systemd/` says ([`units`]).
    pub systemd: bool,
    /// Start every service as `deploy/compose/compose.yaml` says ([`units::compose_service`]).
    pub compose: bool,
}

/// A running stack. Every process is killed when it is dropped, however the test ends.
pub struct Stack {
    pub namespace: String,
    pub database_url: String,
    pub pool: sqlx::PgPool,
    pub work: tempfile::TempDir,
    pub bench: tenantry::sim::SimBench,
    pub authentik: authentik_fake::FakeAuthentik,
    /// Where the gateway mails verification codes.
    pub mail: smtp_sink::SmtpSink,
    pub ca: svc::devca::DevCaFiles,
    pub signup_port: u16,
    pub directory_port: u16,
    pub billing_port: u16,
    pub vault_port: u16,
    /// The signup gateway's operator port (TenantAdmin).
    pub operator_port: u16,
    /// An `admin` operator's token.
    pub admin_token: String,
    /// Each service's admin port, by service name.
    pub admin_ports: BTreeMap<&'static str, u16>,
    pub reader_token: String,
    children: Vec<Child>,
}

impl Stack {
    /// Starts every service; returns once they are spawned (not yet answering).
    pub async fn start(options: StackOptions) -> Stack {
        testkit::init_logging();
        let namespace = testkit::unique_namespace();
        let (database_url, pool) = testkit::fresh_database()
            .await
            .expect("PostgreSQL must be running (just up)");
        let work = tempfile::tempdir().expect("temp dir");
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
public_port = {port}
max_sites = 10
max_concurrent_operations = 2
apps = ["erpnext", "hrms"]
db_root_password_file = {root:?}
runner = {{ kind = "local", bench_dir = {dir:?}, bench_bin = {bin:?} }}
"#,
            base = bench.base_url,
            port = bench.port,
            dir = bench.dir.display().to_string(),
            bin = bench.bin.display().to_string(),
            root = bench.dir.join("db-root-password").display().to_string(),
        );
        let fleet_path = work.path().join("fleet.toml");
        std::fs::write(&fleet_path, fleet).unwrap();
        let plans_path = work.path().join("plans.toml");
        std::fs::write(&plans_path, PLANS).unwrap();

        // Credentials exactly as production passes them: a key ring and caller token hashes
        // in env, operators (billing among them, as a service) in env.
        let signup_token = format!("signup-{namespace}");
        let provisioner_token = format!("provisioner-{namespace}");
        let identity_token = format!("identity-{namespace}");
        let reader_token = format!("reader-{namespace}");
        let billing_token = format!("billing-{namespace}");
        let admin_token = format!("admin-{namespace}");
        let operators = format!(
            "[operators.e2e-reader]\ntoken_sha256 = \"{}\"\nrole = \"reader\"\n\
             [operators.billing]\ntoken_sha256 = \"{}\"\nrole = \"admin\"\nservice = true\n\
             [operators.e2e-admin]\ntoken_sha256 = \"{}\"\nrole = \"admin\"\n",
            svc::auth::token_sha256(&reader_token),
            svc::auth::token_sha256(&billing_token),
            svc::auth::token_sha256(&admin_token),
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
        let mail = smtp_sink::SmtpSink::start().expect("SMTP sink");
        let provisioner_token_file = work.path().join("provisioner.token");
        std::fs::write(&provisioner_token_file, &provisioner_token).unwrap();
        let keyring = "active = \"k1\"\n[[keys]]\nid = \"k1\"\nkey = \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"\n".to_owned();
        let callers = format!(
            "[callers.signup]\ntoken_sha256 = \"{}\"\n[callers.provisioner]\ntoken_sha256 = \"{}\"\n[callers.identity]\ntoken_sha256 = \"{}\"\n",
            sha256_hex(&signup_token),
            sha256_hex(&provisioner_token),
            sha256_hex(&identity_token)
        );
        let unit_values = (options.systemd || options.compose).then(|| {
            (
                keyring.clone(),
                callers.clone(),
                operators.clone(),
                vec![
                    ("signup.vault-token", signup_token.clone()),
                    ("provisioner.vault-token", provisioner_token.clone()),
                    ("identity.vault-token", identity_token.clone()),
                    ("billing.operator-token", billing_token.clone()),
                    (
                        "authentik-token",
                        authentik_fake::FakeConfig::default().token,
                    ),
                ],
            )
        });
        let nats = testkit::nats_url();
        let (vault_port, directory_port, signup_port, operator_port, billing_port) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let vault_url = format!("https://localhost:{vault_port}");
        let admin_ports: BTreeMap<&'static str, u16> =
            SERVICES.into_iter().map(|s| (s, free_port())).collect();
        let common = |service: &'static str, extra: Vec<(&'static str, String)>| {
            let mut v = vec![
                ("NATS_URL", nats.clone()),
                ("TENANTRY_NAMESPACE", namespace.clone()),
                ("DATABASE_URL", database_url.clone()),
                ("TENANTRY_PLANS", path(&plans_path)),
                (
                    "TENANTRY_ADMIN_ADDR",
                    format!("127.0.0.1:{}", admin_ports[service]),
                ),
                ("RUST_LOG", "info".to_owned()),
                ("RUST_BACKTRACE", "0".to_owned()),
            ];
            if let Some(endpoint) = &options.otlp_endpoint {
                v.push(("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()));
                // Spans leave within a fifth of a second, not the default five.
                v.push(("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()));
            }
            if let Some(format) = options.log_format {
                v.push(("LOG_FORMAT", format.to_owned()));
            }
            v.extend(extra);
            (service, v)
        };
        let with = |a: Vec<(&'static str, String)>, b: &[(&'static str, String)]| {
            a.into_iter().chain(b.iter().cloned()).collect::<Vec<_>>()
        };
        let services = vec![
            common(
                "vault",
                with(
                    vec![
                        ("TENANTRY_VAULT_LISTEN", format!("127.0.0.1:{vault_port}")),
                        ("TENANTRY_VAULT_KEYRING", keyring),
                        ("TENANTRY_VAULT_CALLERS", callers),
                        ("TENANTRY_TLS_CLIENT_CA", path(&ca.ca)),
                    ],
                    &server_tls,
                ),
            ),
            common(
                "projection",
                with(
                    vec![
                        (
                            "TENANTRY_PROJECTION_LISTEN",
                            format!("127.0.0.1:{directory_port}"),
                        ),
                        ("TENANTRY_OPERATORS", operators.clone()),
                    ],
                    &server_tls,
                ),
            ),
            common(
                "signup",
                with(
                    with(
                        vec![
                            ("TENANTRY_SIGNUP_ADDR", format!("127.0.0.1:{signup_port}")),
                            ("TENANTRY_VAULT_ENDPOINT", vault_url.clone()),
                            ("TENANTRY_SIGNUP_VAULT_TOKEN", signup_token),
                            (
                                "TENANTRY_SIGNUP_OPERATOR_ADDR",
                                format!("127.0.0.1:{operator_port}"),
                            ),
                            ("TENANTRY_OPERATORS", operators.clone()),
                            // Email verification is on, as in production.
                            ("TENANTRY_SMTP_URL", mail.url()),
                        ],
                        &server_tls,
                    ),
                    &client_tls,
                ),
            ),
            common(
                "provisioner",
                with(
                    vec![
                        ("TENANTRY_VAULT_ENDPOINT", vault_url.clone()),
                        (
                            "TENANTRY_PROVISIONER_VAULT_TOKEN_FILE",
                            path(&provisioner_token_file),
                        ),
                        ("TENANTRY_FLEET", path(&fleet_path)),
                    ],
                    &client_tls,
                ),
            ),
            common(
                "identity",
                with(
                    vec![
                        ("TENANTRY_VAULT_ENDPOINT", vault_url.clone()),
                        ("TENANTRY_IDENTITY_VAULT_TOKEN", identity_token),
                        ("TENANTRY_AUTHENTIK_URL", authentik.base_url()),
                        (
                            "TENANTRY_AUTHENTIK_TOKEN",
                            authentik_fake::FakeConfig::default().token,
                        ),
                        ("TENANTRY_FLEET", path(&fleet_path)),
                    ],
                    &client_tls,
                ),
            ),
            common(
                "billing",
                with(
                    with(
                        vec![
                            (
                                "TENANTRY_BILLING_LISTEN",
                                format!("127.0.0.1:{billing_port}"),
                            ),
                            (
                                "TENANTRY_ADMIN_URL",
                                format!("https://localhost:{operator_port}"),
                            ),
                            ("TENANTRY_BILLING_TOKEN", billing_token),
                            ("TENANTRY_OPERATORS", operators),
                        ],
                        &server_tls,
                    ),
                    &client_tls,
                ),
            ),
        ];
        // What is the test's own, not the host's: its database (trust auth), NATS (one node,
        // no TLS or password) and namespace, and the Authentik double; `dropped` are settings
        // of the host's infrastructure that do not apply to the test's.
        let test_infra = |mut envs: Vec<(String, String)>, dropped: &[&str]| {
            envs.retain(|(k, _)| {
                !dropped.contains(&k.as_str())
                    && !["DATABASE_URL", "NATS_URL", "TENANTRY_AUTHENTIK_URL"].contains(&k.as_str())
            });
            envs.extend([
                ("DATABASE_URL".to_owned(), database_url.clone()),
                ("NATS_URL".to_owned(), nats.clone()),
                ("TENANTRY_NAMESPACE".to_owned(), namespace.clone()),
                ("TENANTRY_AUTHENTIK_URL".to_owned(), authentik.base_url()),
            ]);
            envs
        };
        let children = match unit_values {
            None => services
                .into_iter()
                .map(|(service, envs)| {
                    spawn(service, &[service.to_owned()], &envs, work.path(), false)
                })
                .collect(),
            Some((keyring, vault_acl, operators, tokens)) if options.compose => {
                let compose = units::compose_json();
                let read = |p: &Path| std::fs::read(p).unwrap();
                let token = |name: &str| {
                    tokens
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, t)| t.as_bytes().to_vec())
                        .unwrap()
                };
                // What each of the compose file's secrets holds in this test.
                let secret = |name: &str| -> Vec<u8> {
                    match name {
                        "tls-ca" => read(&ca.ca),
                        "tls-server-cert" => read(&ca.server_cert),
                        "tls-server-key" => read(&ca.server_key),
                        "tls-client-cert" => read(&ca.client_cert),
                        "tls-client-key" => read(&ca.client_key),
                        "pgpass" => b"127.0.0.1:5432:*:*:unused\n".to_vec(),
                        "vault-keyring" => keyring.as_bytes().to_vec(),
                        "vault-acl" => vault_acl.as_bytes().to_vec(),
                        "operators" => operators.as_bytes().to_vec(),
                        "signup-vault-token" => token("signup.vault-token"),
                        "provisioner-vault-token" => token("provisioner.vault-token"),
                        "identity-vault-token" => token("identity.vault-token"),
                        "billing-operator-token" => token("billing.operator-token"),
                        "authentik-token" => token("authentik-token"),
                        "smtp-url" => mail.url().into_bytes(),
                        "plans" => read(&plans_path),
                        "fleet" => read(&fleet_path),
                        // The test's NATS has no password.
                        "nats-password" => b"unused".to_vec(),
                        other => panic!("the test does not know compose secret {other}"),
                    }
                };
                let grpc: BTreeMap<&str, u16> = [
                    ("50051", signup_port),
                    ("50052", directory_port),
                    ("50053", vault_port),
                    ("50054", operator_port),
                    ("50055", billing_port),
                ]
                .into_iter()
                .collect();
                services
                    .iter()
                    .map(|(service, _)| {
                        let c = units::compose_service(&compose, service);
                        let run = work.path().join("run").join(service);
                        std::fs::create_dir_all(&run).unwrap();
                        for name in &c.secrets {
                            std::fs::write(run.join(name), secret(name)).unwrap();
                        }
                        let mut envs: Vec<(String, String)> = Vec::new();
                        for (k, v) in c.env {
                            // The containers' network (service names, 0.0.0.0, one port per
                            // container) becomes loopback with free ports; their secrets are
                            // this service's files only.
                            let mut v = v.replace("/run/secrets/", &format!("{}/", run.display()));
                            for (from, to) in &grpc {
                                v = v.replace(
                                    &format!("0.0.0.0:{from}"),
                                    &format!("127.0.0.1:{to}"),
                                );
                                for host in ["vault", "signup", "projection", "billing"] {
                                    v = v.replace(
                                        &format!("{host}:{from}"),
                                        &format!("localhost:{to}"),
                                    );
                                }
                            }
                            if k == "TENANTRY_ADMIN_ADDR" {
                                v = format!("127.0.0.1:{}", admin_ports[service]);
                            }
                            envs.push((k, v));
                        }
                        let envs = test_infra(
                            envs,
                            &[
                                "NATS_CA",
                                "NATS_USER",
                                "NATS_PASSWORD_FILE",
                                "TENANTRY_NATS_REPLICAS",
                            ],
                        );
                        let envs: Vec<(&str, String)> =
                            envs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                        spawn(service, &c.command, &envs, work.path(), true)
                    })
                    .collect()
            }
            Some((keyring, vault_acl, operators, tokens)) => {
                let etc = work.path().join("etc/tenantry");
                units::write_etc(
                    &etc,
                    &units::Etc {
                        keyring: &keyring,
                        vault_acl: &vault_acl,
                        operators: &operators,
                        tokens: &tokens,
                        smtp_url: &mail.url(),
                        ca: &ca,
                        fleet: &fleet_path,
                        plans: &plans_path,
                    },
                );
                let host = units::HostMap {
                    etc,
                    ports: [
                        (50051, signup_port),
                        (50052, directory_port),
                        (50053, vault_port),
                        (50054, operator_port),
                        (50055, billing_port),
                        (9461, admin_ports["vault"]),
                        (9462, admin_ports["projection"]),
                        (9463, admin_ports["signup"]),
                        (9464, admin_ports["provisioner"]),
                        (9465, admin_ports["identity"]),
                        (9466, admin_ports["billing"]),
                    ]
                    .into_iter()
                    .collect(),
                };
                services
                    .iter()
                    .map(|(service, _)| {
                        let (exec, envs) = units::command(
                            service,
                            &host,
                            &work.path().join("credentials").join(service),
                        );
                        let envs = test_infra(envs, &[]);
                        let envs: Vec<(&str, String)> =
                            envs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                        spawn(service, &exec[1..], &envs, work.path(), true)
                    })
                    .collect()
            }
        };
        Stack {
            namespace,
            database_url,
            pool,
            bench,
            authentik,
            mail,
            ca,
            signup_port,
            directory_port,
            billing_port,
            vault_port,
            operator_port,
            admin_token,
            admin_ports,
            reader_token,
            children,
            work,
        }
    }

    /// Each service process's resident memory (KiB, from `/proc/<pid>/status`), in start
    /// order: vault, projection, signup, provisioner, identity, billing.
    pub fn rss_kib(&self) -> Vec<(&'static str, u64)> {
        SERVICES
            .iter()
            .zip(&self.children)
            .filter_map(|(name, child)| {
                let status =
                    std::fs::read_to_string(format!("/proc/{}/status", child.id()?)).ok()?;
                let kib = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()?;
                Some((*name, kib))
            })
            .collect()
    }

    /// Where the processes write their logs (`<service>.log`).
    pub fn logs(&self) -> &Path {
        self.work.path()
    }

    /// The last lines of every service log, for a failure message.
    pub fn logs_tail(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.logs())
            .into_iter()
            .flatten()
            .flatten()
        {
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

    /// What a client trusts: the dev CA.
    pub fn client_tls(&self) -> svc::ClientTls {
        svc::ClientTls::with_ca(std::fs::read(&self.ca.ca).unwrap())
    }

    /// A channel to a TLS port of the stack, once it answers.
    pub async fn connect(&self, port: u16) -> tonic::transport::Channel {
        let url = format!("https://localhost:{port}");
        let tls = self.client_tls();
        for _ in 0..300 {
            if let Ok(c) = tls.endpoint(&url).unwrap().connect().await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("nothing answered at {url} within 30 s{}", self.logs_tail());
    }

    /// `GET http://127.0.0.1:<admin port of service><path>`: status, content type and body.
    pub async fn admin_get(&self, service: &str, path: &str) -> (u16, String, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.admin_ports[service]);
        match reqwest::get(&url).await {
            Ok(r) => {
                let status = r.status().as_u16();
                let content_type = r
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                (status, content_type, r.text().await.unwrap_or_default())
            }
            Err(e) => (0, String::new(), e.to_string()),
        }
    }

    /// What a front end does after `Signup` answers `verification_required`: the owner reads
    /// the code from their mail (the sink) and the page sends it back.
    pub async fn verify(
        &self,
        client: &mut proto::v1::signup_service_client::SignupServiceClient<
            tonic::transport::Channel,
        >,
        accepted: &proto::v1::SignupResponse,
        email: &str,
    ) -> proto::v1::SignupResponse {
        assert!(accepted.verification_required, "{accepted:?}");
        let mails = self
            .mail
            .wait_for(
                |m| m.iter().any(|m| m.is_to(email)),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|| panic!("no verification mail to {email}{}", self.logs_tail()));
        let mail = mails.iter().rev().find(|m| m.is_to(email)).unwrap();
        let code = mail
            .body
            .split_whitespace()
            .find(|w| w.len() == 6 && w.bytes().all(|b| b.is_ascii_digit()))
            .expect("a six-digit code in the mail")
            .to_owned();
        client
            .verify_email(proto::v1::VerifyEmailRequest {
                verification_id: accepted.verification_id.clone(),
                code,
            })
            .await
            .unwrap_or_else(|s| panic!("VerifyEmail refused: {s:?}{}", self.logs_tail()))
            .into_inner()
    }

    /// Watches `tenant`'s signup to its last update (within 120 s).
    pub async fn watch_to_end(
        &self,
        client: &mut proto::v1::signup_service_client::SignupServiceClient<
            tonic::transport::Channel,
        >,
        tenant: &str,
    ) -> Vec<proto::v1::SignupProgress> {
        let mut progress = client
            .watch_signup(proto::v1::WatchSignupRequest {
                tenant_id: tenant.to_owned(),
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
            watched.is_ok() && !updates.is_empty(),
            "WatchSignup did not end{}",
            self.logs_tail()
        );
        updates
    }

    /// Deletes the stream and buckets of this stack's namespace.
    pub async fn clean_up(&self) {
        let store = eventstore::EventStore::connect(
            &eventstore::StoreConfig::new(testkit::nats_url())
                .with_namespace(self.namespace.clone()),
        )
        .await
        .unwrap();
        store.destroy().await.unwrap();
    }
}

/// One service process; killed when the test ends, however it ends.
fn spawn(
    service: &str,
    args: &[String],
    envs: &[(&str, String)],
    log_dir: &Path,
    clean: bool,
) -> Child {
    let log = std::fs::File::create(log_dir.join(format!("{service}.log"))).expect("log file");
    let mut cmd = Command::new(TENANTRY);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true);
    if clean {
        // As systemd starts it: nothing but what the unit says (and a PATH).
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
    } else {
        // A clean environment for the variables the services read, so the caller's shell
        // cannot leak in.
        for (k, _) in std::env::vars() {
            if k.starts_with("TENANTRY_") || k.starts_with("OTEL_") || k == "LOG_FORMAT" {
                cmd.env_remove(k);
            }
        }
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start tenantry {service}: {e}"))
}

/// A path inside the stack's work directory.
pub fn in_work(stack: &Stack, name: &str) -> PathBuf {
    stack.work.path().join(name)
}

/// The metric family names in `text`, as the reference OpenMetrics parser reads them (it
/// refuses anything Prometheus would not take).
pub fn parse_openmetrics(service: &str, text: &str) -> BTreeSet<String> {
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        for f in text_string_to_metric_families(sys.stdin.read()):\n    print(f.name)\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (`just python-deps` installs prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{service}'s /metrics does not parse as OpenMetrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
