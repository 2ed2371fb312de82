//! Signup-to-verified time, cold vs from the standby pool, under frappe-sim's `realistic`
//! latency profile (the durations measured on a real bench). Run with `just bench` or
//! `cargo bench -p provisioner --bench provisioning`; needs NATS, PostgreSQL and MariaDB.
//!
//! "Signup-to-verified" = TenantRequested's time to ApiAccessVerified's (the tenant's site works
//! and its API key answers).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{FleetOptions, TestStack};
use eventstore::Body;

/// Tenants measured per mode (each cold one costs ≈ 20 s of simulated bench time).
const SAMPLES: usize = 2;

async fn signup_to_verified(stack: &TestStack, sub: &str) -> (Duration, bool) {
    let tenant = stack
        .request_tenant(sub, "starter", "Bench-Password-1")
        .await;
    let events = stack.wait_for(&tenant, "TenantProvisioned", 300).await;
    let requested = stack
        .store
        .load(
            &stack
                .store
                .subject(eventstore::EventContext::Signup, &tenant),
        )
        .await
        .expect("signup subject")[0]
        .occurred_at;
    let verified = events
        .iter()
        .find(|e| e.event_type == "ApiAccessVerified")
        .expect("ApiAccessVerified")
        .occurred_at;
    let from_standby = events
        .iter()
        .any(|e| matches!(&e.body, Body::TenantProvisioned(p) if p.from_standby));
    (
        (verified - requested).to_std().unwrap_or_default(),
        from_standby,
    )
}

fn summary(label: &str, samples: &[Duration]) {
    let secs: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
    let mean = secs.iter().sum::<f64>() / secs.len() as f64;
    let min = secs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = secs.iter().copied().fold(0.0, f64::max);
    println!(
        "{label:<28} mean {mean:6.2} s   min {min:6.2} s   max {max:6.2} s   (n = {})",
        secs.len()
    );
}

async fn cold() -> Vec<Duration> {
    let stack = TestStack::with_sim(
        1,
        FleetOptions::default(),
        Some("profile = \"realistic\"\n"),
    )
    .await;
    let prov = stack.start_provisioner(bench_config(&stack)).await;
    let mut out = Vec::new();
    for i in 0..SAMPLES {
        let (d, from_standby) = signup_to_verified(&stack, &format!("cold{i}")).await;
        assert!(!from_standby);
        out.push(d);
    }
    prov.stop().await;
    out
}

async fn warm() -> Vec<Duration> {
    let opts = FleetOptions {
        standby: SAMPLES as u32,
        ..Default::default()
    };
    let stack = TestStack::with_sim(1, opts, Some("profile = \"realistic\"\n")).await;
    let prov = stack.start_provisioner(bench_config(&stack)).await;
    // Let the pool fill (builds run in the background before anyone signs up).
    let pool = stack
        .store
        .key_value("STANDBY_POOL", 1, "bench")
        .await
        .expect("pool bucket");
    for _ in 0..6000 {
        let mut ready = 0;
        for i in 0..SAMPLES {
            if let Ok(Some(v)) = pool.get(format!("bench-a.erpnext.{i}")).await
                && String::from_utf8_lossy(&v).contains("\"ready\"")
            {
                ready += 1;
            }
        }
        if ready == SAMPLES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut out = Vec::new();
    for i in 0..SAMPLES {
        let (d, from_standby) = signup_to_verified(&stack, &format!("warm{i}")).await;
        assert!(from_standby, "the pool was not ready");
        out.push(d);
    }
    prov.stop().await;
    out
}

fn bench_config(stack: &TestStack) -> provisioner::Config {
    let mut c = stack.config();
    c.ack_wait = Duration::from_secs(60);
    c.process.verify_timeout = Duration::from_secs(10);
    // Refill only between measurements' worth of time: a refill build competing for the
    // bench's slots would slow the claim being measured.
    c.standby_refill_every = Duration::from_secs(3600);
    c
}

#[tokio::main]
async fn main() {
    // `cargo test --benches` runs this too: skip the minutes-long measurement there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("provisioning bench: run with `cargo bench` to measure");
        return;
    }
    println!("signup → API key verified, frappe-sim profile = realistic, plan starter (erpnext)");
    let cold = cold().await;
    summary("cold (new-site + apps)", &cold);
    let warm = warm().await;
    summary("from the standby pool", &warm);
}
