//! `tenantry demo`: what a front end does — check a subdomain, sign up, watch the site being
//! made — then proves the owner can log in and prints what to try next.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use proto::v1::{
    CheckSubdomainRequest, GetTenantRequest, SignupRequest, VerifyEmailRequest, WatchSignupRequest,
    signup_service_client::SignupServiceClient, tenant_directory_client::TenantDirectoryClient,
};
use rand::Rng as _;
use secrecy::{ExposeSecret, SecretString};

/// Flags of `tenantry demo`. Where the stack is, which CA to trust and the operator token come
/// from the flags or environment, else from the `operator.env` that `tenantry dev` writes.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The public signup gateway.
    #[arg(long, env = "TENANTRY_SIGNUP_URL")]
    pub signup_url: Option<String>,
    /// The TenantDirectory (projection).
    #[arg(long, env = "TENANTRY_DIRECTORY_URL")]
    pub directory_url: Option<String>,
    /// CA of the stack's certificates (for `https://` URLs).
    #[arg(long = "tls-ca", env = "TENANTRY_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// The dev stack's data directory (its `operator.env` fills in what is not given).
    #[arg(long, env = "TENANTRY_DEV_DIR", default_value = ".tenantry/dev")]
    pub dev_dir: std::path::PathBuf,
    /// The bench's HTTP front end (frappe-sim under `tenantry dev`).
    #[arg(
        long,
        env = "TENANTRY_DEMO_FRAPPE_URL",
        default_value = "http://127.0.0.1:8000"
    )]
    pub frappe_url: String,
    /// Organisation to sign up (a random suffix keeps repeated demos apart).
    #[arg(long, default_value = "Demo Trading")]
    pub organisation: String,
    /// Plan to sign up for.
    #[arg(long, default_value = "business")]
    pub plan: String,
    /// How long to wait for the stack to answer, in seconds.
    #[arg(long, default_value_t = 60)]
    pub wait_secs: u64,
}

/// Connects, retrying while the stack is still starting.
async fn connect(
    tls: &svc::ClientTls,
    url: &str,
    deadline: Instant,
) -> anyhow::Result<tonic::transport::Channel> {
    let endpoint = tls.endpoint(url)?;
    loop {
        match endpoint.connect().await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, url, "not up yet");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => bail!("nothing answers at {url} ({e}); is `tenantry dev` running?"),
        }
    }
}

/// What the demo needs to reach the stack.
struct Target {
    signup_url: String,
    directory_url: String,
    tls: svc::ClientTls,
    token: SecretString,
}

/// Fills in from `operator.env` (waiting for `tenantry dev` to write it) what the flags and
/// environment do not give.
async fn target(args: &DemoArgs, deadline: Instant) -> anyhow::Result<Target> {
    let file = args.dev_dir.join(crate::dev_secrets::OPERATOR_FILE);
    let env = loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            break text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect::<std::collections::BTreeMap<_, _>>();
        }
        if std::env::var("TENANTRY_ADMIN_TOKEN").is_ok() || Instant::now() >= deadline {
            break Default::default();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let from_file = |key: &str| env.get(key).cloned();
    let signup_url = args
        .signup_url
        .clone()
        .or_else(|| from_file("TENANTRY_SIGNUP_URL"))
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let directory_url = args
        .directory_url
        .clone()
        .or_else(|| from_file("TENANTRY_DIRECTORY_URL"))
        .unwrap_or_else(|| "http://127.0.0.1:50052".into());
    let ca = args
        .tls_ca
        .clone()
        .or_else(|| from_file("TENANTRY_TLS_CA").map(Into::into));
    let tls = svc::ClientTlsArgs {
        ca,
        cert: None,
        key: None,
    }
    .load()?;
    let token = std::env::var("TENANTRY_ADMIN_TOKEN")
        .ok()
        .or_else(|| from_file("TENANTRY_ADMIN_TOKEN"))
        .map(SecretString::from)
        .with_context(|| {
            format!(
                "no operator token: set TENANTRY_ADMIN_TOKEN or start `tenantry dev` (it writes {})",
                file.display()
            )
        })?;
    Ok(Target {
        signup_url,
        directory_url,
        tls,
        token,
    })
}

/// Runs the demo; exit code 0 when the tenant is provisioned and its owner can log in.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    let target = target(&args, deadline).await?;
    let mut signup =
        SignupServiceClient::new(connect(&target.tls, &target.signup_url, deadline).await?);
    let mut bearer: tonic::metadata::AsciiMetadataValue =
        format!("Bearer {}", target.token.expose_secret())
            .parse()
            .context("the operator token is not printable ASCII")?;
    bearer.set_sensitive(true);
    let mut directory = TenantDirectoryClient::with_interceptor(
        connect(&target.tls, &target.directory_url, deadline).await?,
        move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", bearer.clone());
            Ok(r)
        },
    );

    let suffix: u16 = rand::rng().random();
    let organisation = format!("{} {suffix:04x}", args.organisation);
    let check = signup
        .check_subdomain(CheckSubdomainRequest {
            subdomain: String::new(),
            organisation: organisation.clone(),
        })
        .await
        .context("CheckSubdomain")?
        .into_inner();
    let subdomain = check.suggestion;
    let email = format!("owner-{suffix:04x}@example.com");
    // A fresh random password for the demo owner; shown once below so the person can log in.
    let password: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(20)
        .map(char::from)
        .collect();

    println!(
        "Signing up {organisation:?} as {email} on plan {} (subdomain {subdomain})",
        args.plan
    );
    let started = Instant::now();
    let response = signup
        .signup(SignupRequest {
            email: email.clone(),
            password: password.clone(),
            full_name: "Ada Lovelace".into(),
            organisation: organisation.clone(),
            subdomain: subdomain.clone(),
            plan: args.plan.clone(),
            region: String::new(),
            idempotency_key: format!("demo-{suffix:04x}"),
            human_check_token: String::new(),
        })
        .await
        .context("Signup")?
        .into_inner();
    let response = if response.verification_required {
        println!(
            "  a verification code went to {}; reading it from the dev mail sink",
            response.verification_sent_to
        );
        let code = mailed_code(
            &args.dev_dir.join("mail"),
            &email,
            Instant::now() + Duration::from_secs(30),
        )
        .await?;
        let verified = signup
            .verify_email(VerifyEmailRequest {
                verification_id: response.verification_id.clone(),
                code: code.clone(),
            })
            .await
            .context("VerifyEmail")?
            .into_inner();
        println!("  email confirmed with code {code}");
        verified
    } else {
        response
    };
    let tenant_id = response.tenant_id.clone();
    println!(
        "  tenant {tenant_id} accepted in {} ms",
        started.elapsed().as_millis()
    );

    let mut progress = signup
        .watch_signup(WatchSignupRequest {
            tenant_id: tenant_id.clone(),
        })
        .await
        .context("WatchSignup")?
        .into_inner();
    let mut last_sequence = 0;
    let mut outcome = None;
    while let Some(p) = progress.message().await.context("WatchSignup stream")? {
        last_sequence = last_sequence.max(p.sequence);
        let bar: String = (0..20)
            .map(|i| if i * 5 < p.percent { '#' } else { '.' })
            .collect();
        println!(
            "  [{bar}] {:>3}%  {:<5.1}s  {}",
            p.percent,
            started.elapsed().as_secs_f64(),
            p.label
        );
        if p.failed {
            outcome = Some(Err(p.reason));
        } else if p.done {
            outcome = Some(Ok(p.url));
        }
    }
    match outcome {
        Some(Ok(_)) => {}
        Some(Err(reason)) => {
            println!(
                "\nProvisioning failed: {reason}\nTry: tenantctl tenants history {tenant_id}; tenantctl retry {tenant_id}"
            );
            return Ok(ExitCode::FAILURE);
        }
        None => bail!("the progress stream ended before the tenant was provisioned or failed"),
    }

    let tenant = directory
        .get_tenant(GetTenantRequest {
            tenant_id: tenant_id.clone(),
            min_sequence: last_sequence,
        })
        .await
        .context("GetTenant")?
        .into_inner();

    // The owner logs in to their site with the password they chose, as a person would.
    let site = frappe::SiteName::parse(&tenant.site)
        .context("the directory returned an invalid site name")?;
    let client = frappe::FrappeClient::new(&args.frappe_url, site, frappe::SiteRouting::Header)?;
    let user = frappe::UserId::parse(&email)?;
    let login = client
        .login(&user, &SecretString::from(password.clone()))
        .await;

    println!(
        "\nReady in {:.1} s: {} (status {:?}, plan {}, bench {})",
        started.elapsed().as_secs_f64(),
        tenant.url,
        proto::v1::TenantStatus::try_from(tenant.status).unwrap_or_default(),
        tenant.plan,
        tenant.bench,
    );
    match &login {
        Ok(_) => println!("Owner login: OK"),
        Err(e) => println!("Owner login FAILED: {e}"),
    }
    match tenant.sso_status.as_str() {
        "ready" => println!(
            "Single sign-on: ready — {} offers \"Login with Authentik\" (application tenant-{})",
            tenant.sso_login_url, tenant.subdomain
        ),
        "" => {}
        other => println!(
            "Single sign-on: {other}{}",
            if tenant.sso_error.is_empty() {
                String::new()
            } else {
                format!(" ({})", tenant.sso_error)
            }
        ),
    }
    println!(
        r#"
Log in yourself (frappe-sim routes by the X-Frappe-Site-Name header):
  curl -s -X POST {frappe} -H 'X-Frappe-Site-Name: {site}' \
       -H 'Content-Type: application/json' -d '{{"usr":"{email}","pwd":"{password}"}}'

Operate it (the operator's tokens, URLs and CA for the dev stack are in .tenantry/dev/operator.env):
  set -a; . .tenantry/dev/operator.env; set +a
  target/debug/tenantctl tenants list
  target/debug/tenantctl tenants show {tenant_id}
  target/debug/tenantctl tenants history {tenant_id}
  target/debug/tenantctl suspend {tenant_id} --reason "demo"
  target/debug/tenantctl resume {tenant_id}
  target/debug/tenantctl events tail --tenant {tenant_id} --from-seq 1
  target/debug/tenantctl vault audit --tenant {tenant_id}
Stop the stack: just demo-stop"#,
        frappe = format_args!("{}/api/method/login", args.frappe_url),
        site = tenant.site,
    );
    Ok(if login.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The six-digit code in the newest mail to `email` that `tenantry dev` kept in `dir`.
async fn mailed_code(
    dir: &std::path::Path,
    email: &str,
    deadline: Instant,
) -> anyhow::Result<String> {
    let to = format!("To: {email}");
    loop {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for file in files.iter().rev() {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if text.lines().any(|l| l == to)
                && let Some(code) = text
                    .split_whitespace()
                    .find(|w| w.len() == 6 && w.bytes().all(|b| b.is_ascii_digit()))
            {
                return Ok(code.to_owned());
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "no verification mail to {email} in {} (is this `tenantry dev` with --verify-email?)",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
