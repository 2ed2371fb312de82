//! `tenantry demo`: what a front end does — check a subdomain, sign up, watch the site being
//! made — then proves the owner can log in and prints what to try next.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use proto::v1::{
    CheckSubdomainRequest, GetTenantRequest, SignupRequest, WatchSignupRequest,
    signup_service_client::SignupServiceClient, tenant_directory_client::TenantDirectoryClient,
};
use rand::Rng as _;
use secrecy::SecretString;

/// Flags of `tenantry demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The public signup gateway.
    #[arg(
        long,
        env = "TENANTRY_SIGNUP_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub signup_url: String,
    /// The TenantDirectory (projection).
    #[arg(
        long,
        env = "TENANTRY_DIRECTORY_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub directory_url: String,
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
async fn connect(url: &str, deadline: Instant) -> anyhow::Result<tonic::transport::Channel> {
    loop {
        match tonic::transport::Endpoint::from_shared(url.to_owned())?
            .connect()
            .await
        {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, url, "not up yet");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => bail!("nothing answers at {url} ({e}); is `tenantry dev` running?"),
        }
    }
}

/// Runs the demo; exit code 0 when the tenant is provisioned and its owner can log in.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    let mut signup = SignupServiceClient::new(connect(&args.signup_url, deadline).await?);
    let mut directory = TenantDirectoryClient::new(connect(&args.directory_url, deadline).await?);

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
        })
        .await
        .context("Signup")?
        .into_inner();
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
    println!(
        r#"
Log in yourself (frappe-sim routes by the X-Frappe-Site-Name header):
  curl -s -X POST {frappe} -H 'X-Frappe-Site-Name: {site}' \
       -H 'Content-Type: application/json' -d '{{"usr":"{email}","pwd":"{password}"}}'

Operate it (tokens for the dev stack are in .tenantry/dev/secrets.env):
  set -a; . .tenantry/dev/secrets.env; set +a
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
