//! `Signup` accept latency at 100 concurrent clients, against real NATS, PostgreSQL and vault.
//!
//! `cargo bench -p signup --bench signup` (or `just bench`). Env: `SIGNUP_BENCH_CLIENTS`
//! (default 100), `SIGNUP_BENCH_PER_CLIENT` (signups per client, default 20).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use proto::v1::SignupRequest;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not support.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let clients = env_or("SIGNUP_BENCH_CLIENTS", 100);
    let per_client = env_or("SIGNUP_BENCH_PER_CLIENT", 20);
    let stack = common::spawn_stack_pooled(
        |c| {
            c.rate_per_address = 0;
            c.rate_per_email = 0;
        },
        20,
    )
    .await;
    let client = stack.client().await;
    let run = common::tag();

    // Warm-up: connections, KV buckets, the vault's pool.
    let mut warm = client.clone();
    for i in 0..5 {
        warm.signup(request(&run, "warm", i))
            .await
            .expect("warm-up signup");
    }

    let started = Instant::now();
    let tasks = (0..clients).map(|c| {
        let mut client = client.clone();
        let run = run.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let req = request(&run, &format!("c{c}"), i);
                let t0 = Instant::now();
                client.signup(req).await.expect("signup accepted");
                latencies.push(t0.elapsed());
            }
            latencies
        })
    });
    let mut latencies: Vec<Duration> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .flat_map(|r| r.expect("client task"))
        .collect();
    let elapsed = started.elapsed();
    latencies.sort();
    let total = latencies.len();
    println!(
        "signup accept latency, {clients} concurrent clients, {total} signups: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; throughput {:.0} signups/s",
        percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        percentile(&latencies, 99.0).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        total as f64 / elapsed.as_secs_f64(),
    );
    stack.stop();
}

fn request(run: &str, client: &str, i: usize) -> SignupRequest {
    let t = format!("{run}-{client}-{i}");
    SignupRequest {
        email: format!("bench.{t}@example.com"),
        subdomain: format!("b-{t}"),
        ..common::request(&t)
    }
}
