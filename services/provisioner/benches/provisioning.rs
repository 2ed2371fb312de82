//! Signup to a usable site — from the standby pool, cold, and the hand-rolled flow it replaces —
//! side by side in one run on one bench. Run with `just bench` or
//! `cargo bench -p provisioner --bench provisioning`; needs NATS, PostgreSQL and MariaDB.
//!
//! The bench is frappe-sim with its `realistic` profile (the latencies measured on a real bench,
//! tests/fixtures/frappe/README.md), or a real bench when `FRAPPE_BENCH_DIR` and `FRAPPE_URL`
//! are set (`FRAPPE_BENCH_BIN`, `FRAPPE_DB_ROOT_USER`, `FRAPPE_DB_ROOT_PASSWORD` as for the
//! provisioner's real-bench test pass): the same code prints the same table.
//!
//! "Ready" = TenantRequested → both OwnerUserCreated (the owner can log in) and
//! ApiAccessVerified (the automation key answers); each owner's login is then checked.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "flows/seeds.rs"]
mod seeds;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{FleetOptions, TestStack};
use eventstore::{Body, EventContext, RecordedEvent};
use frappe::{DbRoot, FrappeClient, SiteName, SiteRouting, UserEmail, UserId};
use secrecy::SecretString;
use testkit::SimBench;

/// Signups measured from the pool (the pool is this big).
const POOLED: usize = 5;
/// Signups measured cold (each costs a new-site).
const COLD: usize = 3;
/// Runs of the hand-rolled flow.
const SEEDS: usize = 2;
const PASSWORD: &str = "Bench-Password-1";

/// Where the measurement runs.
struct Target {
    label: String,
    fleet_toml: String,
    base_url: String,
    runner: frappe::RunnerConfig,
    root: DbRoot,
    /// Kept alive for the run (frappe-sim).
    sim: Option<SimBench>,
}

fn fleet(url: &str, runner: &str, root_ref: &str, root_user: &str) -> String {
    format!(
        r#"
[[benches]]
name = "bench-a"
region = "eu"
base_url = "{url}"
base_domain = "bench-a.tenantry.localhost"
routing = "header"
public_scheme = "http"
max_sites = 1000
max_concurrent_operations = 2
apps = []
db_root_username = "{root_user}"
{root_ref}
runner = {runner}

[plans.basic]
apps = []

[standby]
size = {POOLED}
plans = ["basic"]
"#
    )
}

async fn target(stack: &TestStack) -> Target {
    let root_user = std::env::var("FRAPPE_DB_ROOT_USER").unwrap_or_else(|_| "root".into());
    let root_pw = std::env::var("FRAPPE_DB_ROOT_PASSWORD").unwrap_or_default();
    let root = DbRoot {
        username: root_user.clone(),
        password: SecretString::from(root_pw.clone()),
    };
    let real = std::env::var("FRAPPE_BENCH_DIR").is_ok() && std::env::var("FRAPPE_URL").is_ok();
    assert!(
        !real || !root_pw.is_empty(),
        "set FRAPPE_DB_ROOT_PASSWORD: new-site aborts without a root password"
    );
    let root_ref = if root_pw.is_empty() {
        String::new()
    } else {
        stack
            .vault_client("provisioner")
            .put_string(
                "fleet",
                "bench-db-root",
                "db_root_password",
                &root.password,
                "bench",
            )
            .await
            .expect("vault the root password");
        "db_root_password_ref = \"vault://tenant/fleet/bench-db-root\"".to_owned()
    };
    if let (Ok(dir), Ok(url)) = (
        std::env::var("FRAPPE_BENCH_DIR"),
        std::env::var("FRAPPE_URL"),
    ) {
        let bin = std::env::var("FRAPPE_BENCH_BIN").unwrap_or_else(|_| "bench".into());
        let runner = format!(r#"{{ kind = "local", bench_dir = "{dir}", bench_bin = "{bin}" }}"#);
        return Target {
            label: format!("real bench at {dir} ({url})"),
            fleet_toml: fleet(&url, &runner, &root_ref, &root_user),
            base_url: url,
            runner: frappe::RunnerConfig::Local {
                bench_dir: dir.into(),
                bench_bin: bin.into(),
                env: Default::default(),
                user: None,
            },
            root,
            sim: None,
        };
    }
    let sim = SimBench::spawn("erpnext", Some("profile = \"realistic\"\n"));
    let runner = sim.runner();
    let frappe::RunnerConfig::Local {
        bench_dir,
        bench_bin,
        ..
    } = &runner
    else {
        unreachable!("frappe-sim runs locally")
    };
    let runner_toml = format!(
        r#"{{ kind = "local", bench_dir = "{}", bench_bin = "{}" }}"#,
        bench_dir.display(),
        bench_bin.display()
    );
    // The sim bench's own root password file (written by `frappe-sim sim-init`).
    let file = bench_dir.join("db-root-password");
    let password = std::fs::read_to_string(&file).expect("the sim's root password file");
    let root_file = format!("db_root_password_file = \"{}\"", file.display());
    Target {
        label: "frappe-sim, profile = realistic".into(),
        fleet_toml: fleet(&sim.base_url, &runner_toml, &root_file, "root"),
        base_url: sim.base_url.clone(),
        runner,
        root: DbRoot {
            username: "root".into(),
            password: SecretString::from(password.trim_end().to_owned()),
        },
        sim: Some(sim),
    }
}

/// One measured signup.
struct Signup {
    ready: Duration,
    /// TenantRequested → PlacementChosen, → the site (created or claimed), → ready.
    phases: [Duration; 3],
    /// The `new-site` command's own time (cold only).
    new_site: Option<Duration>,
    from_standby: bool,
}

fn at(events: &[RecordedEvent], ty: &str) -> Option<DateTime<Utc>> {
    events
        .iter()
        .find(|e| e.event_type == ty)
        .map(|e| e.occurred_at)
}

/// How long `new-site` of `site` ran, from frappe-sim's command log (or, on a real bench, the
/// CreateSite step's time, which also holds the owner marker's write: an upper bound).
fn new_site_time(target: &Target, site: &str, events: &[RecordedEvent]) -> Option<Duration> {
    if let Some(sim) = &target.sim {
        let parse = |v: &serde_json::Value| {
            v.as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        };
        return sim.command_log().iter().find_map(|e| {
            (e["phase"] == "end" && e["command"] == "new-site" && e["site"] == site)
                .then(|| (parse(&e["end"])? - parse(&e["start"])?).to_std().ok())
                .flatten()
        });
    }
    events.iter().find_map(|e| match &e.body {
        Body::SiteCreated(c) => Some(Duration::from_millis(c.duration_ms)),
        _ => None,
    })
}

async fn signup(stack: &TestStack, target: &Target, sub: &str) -> Signup {
    let tenant = stack.request_tenant(sub, "basic", PASSWORD).await;
    let events = stack.wait_for(&tenant, "TenantProvisioned", 900).await;
    let requested = stack
        .store
        .load(&stack.store.subject(EventContext::Signup, &tenant))
        .await
        .expect("signup subject")[0]
        .occurred_at;
    let ready = [
        at(&events, "OwnerUserCreated"),
        at(&events, "ApiAccessVerified"),
    ]
    .into_iter()
    .map(|t| t.expect("owner and key events"))
    .max()
    .expect("two times");
    let (site, from_standby) = events
        .iter()
        .find_map(|e| match &e.body {
            Body::TenantProvisioned(p) => Some((p.site.clone(), p.from_standby)),
            _ => None,
        })
        .expect("TenantProvisioned");
    // The owner really can log in (outside the measured time).
    let client = FrappeClient::new(
        &target.base_url,
        SiteName::parse(&site).expect("site"),
        SiteRouting::Header,
    )
    .expect("client");
    let owner = UserEmail::parse(&format!("owner@{sub}.example.com")).expect("owner");
    client
        .login(
            &UserId::Email(owner),
            &SecretString::from(PASSWORD.to_owned()),
        )
        .await
        .expect("the owner logs in");
    let site_at = at(&events, "StandbySiteClaimed")
        .or_else(|| at(&events, "SiteCreated"))
        .expect("site event");
    let placed_at = at(&events, "PlacementChosen").expect("PlacementChosen");
    let span = |a: DateTime<Utc>, b: DateTime<Utc>| (b - a).to_std().unwrap_or_default();
    Signup {
        ready: span(requested, ready),
        phases: [
            span(requested, placed_at),
            span(placed_at, site_at),
            span(site_at, ready),
        ],
        new_site: if from_standby {
            None
        } else {
            new_site_time(target, &site, &events)
        },
        from_standby,
    }
}

async fn wait_for_pool(stack: &TestStack) {
    let pool = stack
        .store
        .key_value("STANDBY_POOL", 1, "bench")
        .await
        .expect("pool bucket");
    for _ in 0..9000 {
        let mut ready = 0;
        for i in 0..POOLED {
            if let Ok(Some(v)) = pool.get(format!("bench-a.frappe.{i}")).await
                && String::from_utf8_lossy(&v).contains("\"ready\"")
            {
                ready += 1;
            }
        }
        if ready == POOLED {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the standby pool did not fill within 15 minutes");
}

fn p50(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs.get(xs.len() / 2).copied().unwrap_or_default()
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn row(flow: &str, totals: Vec<Duration>, new_sites: Vec<Duration>) -> (Duration, Duration) {
    let n = totals.len();
    let (min, max) = (
        totals.iter().min().copied().unwrap_or_default(),
        totals.iter().max().copied().unwrap_or_default(),
    );
    let after: Vec<Duration> = totals
        .iter()
        .zip(&new_sites)
        .map(|(t, s)| t.saturating_sub(*s))
        .collect();
    let (total, site) = (p50(totals), p50(new_sites.clone()));
    let after_p50 = if new_sites.is_empty() {
        total
    } else {
        p50(after)
    };
    let site_cell = if new_sites.is_empty() {
        "—".to_owned()
    } else {
        secs(site)
    };
    println!(
        "| {flow:<26} | {n:>2} | {:>9} | {site_cell:>9} | {:>9} | {} – {} |",
        secs(total),
        secs(after_p50),
        secs(min),
        secs(max)
    );
    (total, after_p50)
}

#[tokio::main]
async fn main() {
    // `cargo test --benches` runs this too: skip the minutes-long measurement there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("provisioning bench: run with `cargo bench` to measure");
        return;
    }
    let stack = TestStack::new(0, FleetOptions::default()).await;
    let target = target(&stack).await;
    let mut config = stack.config();
    config.fleet = provisioner::fleet::FleetConfig::parse(&target.fleet_toml).expect("fleet");
    config.ack_wait = Duration::from_secs(120);
    config.process.verify_timeout = Duration::from_secs(10);
    // The pool fills once before the measurement; no refill runs beside the signups measured.
    config.standby_refill_every = Duration::from_secs(24 * 3600);
    let prov = stack.start_provisioner(config).await;
    wait_for_pool(&stack).await;

    let (mut pooled, mut pooled_phases) = (Vec::new(), Vec::new());
    for i in 0..POOLED {
        let s = signup(&stack, &target, &format!("pool{i}")).await;
        assert!(s.from_standby, "the pool was not ready");
        pooled.push(s.ready);
        pooled_phases.push(s.phases);
    }
    let (mut cold, mut cold_sites, mut cold_phases) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..COLD {
        let s = signup(&stack, &target, &format!("cold{i}")).await;
        assert!(!s.from_standby, "a cold signup took a standby");
        cold.push(s.ready);
        cold_sites.push(s.new_site.expect("new-site time"));
        cold_phases.push(s.phases);
    }
    prov.stop().await;

    let bench = frappe::Bench::new(target.runner.clone());
    let (mut seeds_total, mut seeds_sites) = (Vec::new(), Vec::new());
    for i in 0..SEEDS {
        let site = SiteName::parse(&format!(
            "seeds{i}-{}.bench-a.tenantry.localhost",
            &uuid::Uuid::now_v7().simple().to_string()[24..]
        ))
        .expect("site");
        let run = seeds::run(&bench, &target.base_url, &site, &target.root).await;
        seeds_total.push(run.total);
        seeds_sites.push(run.new_site);
    }

    println!(
        "\nsignup → owner can log in and API key verified; {}",
        target.label
    );
    println!(
        "| flow                       |  n | p50 total | p50 new-site | p50 after new-site | min – max |"
    );
    println!(
        "|----------------------------|----|-----------|--------------|--------------------|-----------|"
    );
    let (seeds_p50, _) = row("seeds' script (replayed)", seeds_total, seeds_sites);
    let (cold_p50, cold_after) = row("tenantry cold", cold, cold_sites);
    let (pooled_p50, _) = row("tenantry pooled", pooled, Vec::new());
    let phase = |runs: &[[Duration; 3]], i: usize| secs(p50(runs.iter().map(|p| p[i]).collect()));
    println!(
        "\nwhere the time goes (p50): pooled: request → placed {}, → claimed {}, → ready {}; \
         cold: request → placed {}, → site made {}, → ready {}",
        phase(&pooled_phases, 0),
        phase(&pooled_phases, 1),
        phase(&pooled_phases, 2),
        phase(&cold_phases, 0),
        phase(&cold_phases, 1),
        phase(&cold_phases, 2),
    );
    println!(
        "pooled p50 {} (target ≤ 1 s: {}); cold after new-site p50 {} (target ≤ 1.5 s: {}); \
         seeds' script ÷ pooled = {:.1}×, seeds' script ÷ cold = {:.2}×",
        secs(pooled_p50),
        if pooled_p50 <= Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        },
        secs(cold_after),
        if cold_after <= Duration::from_millis(1500) {
            "met"
        } else {
            "MISSED"
        },
        seeds_p50.as_secs_f64() / pooled_p50.as_secs_f64().max(1e-9),
        seeds_p50.as_secs_f64() / cold_p50.as_secs_f64().max(1e-9),
    );
}
