//! Throughput across benches: does the control plane keep up as benches are added? Run with
//! `just bench` or `cargo bench -p provisioner --bench throughput`; needs NATS, PostgreSQL and
//! MariaDB.
//!
//! For 5, 10 and 20 frappe-sim benches (the `realistic` profile scaled by `THROUGHPUT_SCALE`,
//! default 0.2, so a run takes minutes, not hours; each bench with its own limit of 2
//! operations at once, and the profile's slowdown while another `new-site` runs), three
//! provisioner instances share the consumers while 50 signups per bench are requested (1,000 at
//! 20 benches), arriving at `THROUGHPUT_ARRIVALS` per second per bench (default 0.5, a little
//! above what a bench completes, so the benches stay saturated; 0 = all at once). Reported: tenants/s (first request → last TenantProvisioned),
//! time-to-active p50/p99, and the control plane's own time per signup — the wall time not spent
//! in bench commands, REST calls or waits for a bench slot, as each provisioner measures it
//! (`tenantry::overhead` log events, collected here). Every tenant must be provisioned exactly
//! once, with no failure.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{FleetOptions, TestStack};
use eventstore::{Body, EventContext};
use futures::StreamExt;
use tracing_subscriber::layer::SubscriberExt;

const PASSWORD: &str = "Bench-Password-1";
/// Operations at once per bench.
const OPS: u32 = 2;
const INSTANCES: usize = 3;

/// The parts of the control plane's time the provisioner names, in ms.
const PARTS: [&str; 4] = ["pickup_ms", "events_ms", "vault_ms", "placement_ms"];

/// One provisioning's measurement: overhead and its named parts, in ms.
#[derive(Clone, Default)]
struct Measured {
    overhead_ms: u64,
    parts: [u64; PARTS.len()],
}

/// `(tenant, measurement)` of every provisioning measured in this process.
#[derive(Clone, Default)]
struct Overheads(Arc<Mutex<Vec<(String, Measured)>>>);

impl Overheads {
    fn take(&self) -> HashMap<String, Measured> {
        std::mem::take(&mut *self.0.lock().expect("overheads"))
            .into_iter()
            .collect()
    }
}

#[derive(Default)]
struct Fields {
    tenant: Option<String>,
    overhead_ms: Option<u64>,
    parts: [u64; PARTS.len()],
}

impl tracing::field::Visit for Fields {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if field.name() == "overhead_ms" {
            self.overhead_ms = Some(value);
        } else if let Some(i) = PARTS.iter().position(|p| *p == field.name()) {
            self.parts[i] = value;
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "tenant" {
            self.tenant = Some(format!("{value:?}"));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Overheads {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() != "tenantry::overhead" {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        if let (Some(t), Some(overhead_ms)) = (f.tenant, f.overhead_ms) {
            let m = Measured {
                overhead_ms,
                parts: f.parts,
            };
            self.0.lock().expect("overheads").push((t, m));
        }
    }
}

/// One run's figures.
struct Run {
    benches: usize,
    signups: usize,
    seconds: f64,
    active: Vec<Duration>,
    overhead: Vec<Duration>,
    /// Per part: its p50 over every signup, and its mean over the slowest 1 % by overhead.
    parts: Vec<(Duration, Duration)>,
    failed: usize,
    max_concurrency: usize,
}

fn pct(xs: &[Duration], p: f64) -> Duration {
    let mut v = xs.to_vec();
    v.sort();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len().max(1)) - 1;
    v.get(i).copied().unwrap_or_default()
}

async fn run(
    benches: usize,
    per_bench: usize,
    scale: f64,
    arrivals: f64,
    overheads: &Overheads,
) -> Run {
    let sim = format!("profile = \"realistic\"\nscale = {scale}\n");
    let stack = TestStack::with_sim(
        benches,
        FleetOptions {
            ops: OPS,
            command_limit_secs: 300,
            // The vault's default pool (`database_max_connections` = 20), not the test suite's 5.
            vault_pool: Some(20),
            ..Default::default()
        },
        Some(&sim),
    )
    .await;
    // Production timings, except a concurrency that lets every instance hold its share of the
    // burst (waiting for a bench slot, not in the stream).
    let mut config = stack.config();
    config.concurrency = 1024;
    config.ack_wait = Duration::from_secs(60);
    config.process = provisioner::context::ProcessSettings::default();
    config.slots = provisioner::slots::SlotConfig::default();
    config.lease_ttl = Duration::from_secs(15);
    let mut provs = Vec::new();
    for _ in 0..INSTANCES {
        provs.push(stack.start_provisioner(config.clone()).await);
    }
    overheads.take();
    let n = benches * per_bench;
    let started = Utc::now();
    let t0 = tokio::time::Instant::now();
    // Signups arrive at `arrivals` per second per bench (0: all at once).
    let gap = if arrivals > 0.0 {
        Duration::from_secs_f64(1.0 / (arrivals * benches as f64))
    } else {
        Duration::ZERO
    };
    let stack_ref = &stack;
    let requested: HashMap<String, DateTime<Utc>> = futures::stream::iter(0..n)
        .map(|i| async move {
            tokio::time::sleep_until(t0 + gap * u32::try_from(i).unwrap_or(u32::MAX)).await;
            let t = stack_ref
                .request_tenant(&format!("t{i:04}"), "starter", PASSWORD)
                .await;
            (t, Utc::now())
        })
        .buffer_unordered(256)
        .collect()
        .await;

    let (mut done, mut failed) = (HashMap::new(), 0usize);
    let mut from = 1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
    let filter = stack.store.context_filter(EventContext::Provisioning);
    while done.len() + failed < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} provisioned after an hour",
            done.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let events: Vec<_> = stack
            .store
            .replay(&filter, from)
            .await
            .expect("replay")
            .collect()
            .await
            .expect("replay");
        for e in events {
            from = from.max(e.sequence + 1);
            match &e.body {
                Body::TenantProvisioned(_) => {
                    assert!(
                        done.insert(e.tenant_id.clone(), e.occurred_at).is_none(),
                        "provisioned twice"
                    );
                }
                Body::ProvisioningFailed(f) => {
                    eprintln!("tenant {} failed: {}", e.tenant_id, f.reason);
                    failed += 1;
                }
                _ => {}
            }
        }
    }
    let last = done.values().max().copied().unwrap_or(started);
    let active: Vec<Duration> = done
        .iter()
        .filter_map(|(t, at)| (*at - requested[t]).to_std().ok())
        .collect();
    // Give the instances a moment to log the last provisionings.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut measured: Vec<Measured> = overheads
        .take()
        .into_iter()
        .filter(|(t, _)| requested.contains_key(t))
        .map(|(_, m)| m)
        .collect();
    measured.sort_by_key(|m| m.overhead_ms);
    let overhead: Vec<Duration> = measured
        .iter()
        .map(|m| Duration::from_millis(m.overhead_ms))
        .collect();
    let slowest = &measured[measured.len() - measured.len().div_ceil(100)..];
    let parts = (0..PARTS.len())
        .map(|i| {
            let all: Vec<Duration> = measured
                .iter()
                .map(|m| Duration::from_millis(m.parts[i]))
                .collect();
            let tail =
                slowest.iter().map(|m| m.parts[i]).sum::<u64>() / slowest.len().max(1) as u64;
            (pct(&all, 0.5), Duration::from_millis(tail))
        })
        .collect();
    let max_concurrency = stack
        .benches
        .iter()
        .map(testkit::SimBench::max_concurrency)
        .max()
        .unwrap_or(0);
    for p in provs {
        p.stop().await;
    }
    Run {
        benches,
        signups: n,
        seconds: (last - started).to_std().unwrap_or_default().as_secs_f64(),
        active,
        overhead,
        parts,
        failed,
        max_concurrency,
    }
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("throughput bench: run with `cargo bench` to measure");
        return;
    }
    let overheads = Overheads::default();
    let filter = tracing_subscriber::EnvFilter::try_from_env("TEST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    use tracing_subscriber::Layer as _;
    let collect = overheads.clone().with_filter(
        tracing_subscriber::filter::Targets::new()
            .with_target("tenantry::overhead", tracing::Level::INFO),
    );
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(collect).with(fmt))
        .expect("subscriber");

    let env = |k: &str| std::env::var(k).ok();
    let scale: f64 = env("THROUGHPUT_SCALE")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.2);
    let per_bench: usize = env("THROUGHPUT_PER_BENCH")
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    // Slightly above what a bench of this profile completes (≈ 0.44/s): the benches stay
    // saturated and a queue builds, as under a real rush, without one burst of every signup.
    let arrivals: f64 = env("THROUGHPUT_ARRIVALS")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.5);
    let sizes: Vec<usize> = env("THROUGHPUT_BENCHES")
        .unwrap_or_else(|| "5,10,20".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();

    let mut runs = Vec::new();
    for &b in &sizes {
        eprintln!("throughput: {b} benches, {} signups …", b * per_bench);
        runs.push(run(b, per_bench, scale, arrivals, &overheads).await);
    }

    let arriving = if arrivals > 0.0 {
        format!("arriving at {arrivals}/s per bench")
    } else {
        "all at once".to_owned()
    };
    println!(
        "\nthroughput: {per_bench} signups per bench {arriving}, {INSTANCES} provisioner instances, \
         {OPS} operations per bench, frappe-sim realistic × {scale}"
    );
    println!(
        "| benches | signups | tenants/s | per bench | active p50 | active p99 | overhead p50 | overhead p99 | measured | failed | most at once on a bench |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let ms = |d: Duration| format!("{} ms", d.as_millis());
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let base = runs
        .first()
        .map(|r| r.signups as f64 / r.seconds / r.benches as f64);
    for r in &runs {
        let rate = r.signups as f64 / r.seconds;
        println!(
            "| {} | {} | {:.2} | {:.3} | {} | {} | {} | {} | {} | {} | {} |",
            r.benches,
            r.signups,
            rate,
            rate / r.benches as f64,
            secs(pct(&r.active, 0.5)),
            secs(pct(&r.active, 0.99)),
            ms(pct(&r.overhead, 0.5)),
            ms(pct(&r.overhead, 0.99)),
            r.overhead.len(),
            r.failed,
            r.max_concurrency,
        );
    }
    println!(
        "\nwhere the control plane's time goes (p50 over every signup / mean over the slowest 1 %):"
    );
    println!(
        "| benches | overhead p50 / p99 | {} |",
        PARTS.map(|p| p.trim_end_matches("_ms")).join(" | ")
    );
    println!("|---|---|{}", "---|".repeat(PARTS.len()));
    for r in &runs {
        let cells: Vec<String> = r
            .parts
            .iter()
            .map(|(p50, tail)| format!("{} / {}", ms(*p50), ms(*tail)))
            .collect();
        println!(
            "| {} | {} / {} | {} |",
            r.benches,
            ms(pct(&r.overhead, 0.5)),
            ms(pct(&r.overhead, 0.99)),
            cells.join(" | ")
        );
    }
    if let (Some(base), Some(top)) = (base, runs.last()) {
        let per = top.signups as f64 / top.seconds / top.benches as f64;
        let worst_p50 = runs
            .iter()
            .map(|r| pct(&r.overhead, 0.5))
            .max()
            .unwrap_or_default();
        let worst_p99 = runs
            .iter()
            .map(|r| pct(&r.overhead, 0.99))
            .max()
            .unwrap_or_default();
        let failures: usize = runs.iter().map(|r| r.failed).sum();
        println!(
            "scaling {}→{} benches: {:.0} % of linear (per-bench rate {:.3} → {:.3}/s); overhead p50 {} (target ≤ 50 ms: {}), p99 {} (target ≤ 250 ms: {}); failures {failures}",
            runs[0].benches,
            top.benches,
            100.0 * per / base,
            base,
            per,
            ms(worst_p50),
            if worst_p50 <= Duration::from_millis(50) {
                "met"
            } else {
                "MISSED"
            },
            ms(worst_p99),
            if worst_p99 <= Duration::from_millis(250) {
                "met"
            } else {
                "MISSED"
            },
        );
    }
}
