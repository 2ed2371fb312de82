//! `just bench` for the vault: the real service against PostgreSQL and NATS, 50 concurrent
//! clients (one connection each) doing `Put`, then `Get`, printing p50/p99 and throughput.
//!
//! `VAULT_BENCH_CLIENTS` (default 50) and `VAULT_BENCH_OPS` (per client and operation, default
//! 200) change the load.

use std::time::{Duration, Instant};

use secrecy::SecretSlice;
use vault_client::VaultClient;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn report(op: &str, mut latencies: Vec<Duration>, wall: Duration) {
    latencies.sort();
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1e3
    };
    println!(
        "vault {op:<4} n={:<6} p50={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms  throughput={:>8.0} ops/s",
        latencies.len(),
        pick(0.50),
        pick(0.99),
        pick(1.0),
        latencies.len() as f64 / wall.as_secs_f64()
    );
}

/// Runs `ops` calls of `f` on each client concurrently; returns every latency and the wall time.
async fn phase<F, Fut>(
    clients: &[VaultClient],
    ops: usize,
    f: F,
) -> anyhow::Result<(Vec<Duration>, Duration)>
where
    F: Fn(VaultClient, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        let (client, f) = (client.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(ops);
            for i in 0..ops {
                let t = Instant::now();
                f(client.clone(), c, i).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, start.elapsed()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n_clients = env_or("VAULT_BENCH_CLIENTS", 50);
    let ops = env_or("VAULT_BENCH_OPS", 200);
    // One database connection per client, as a production vault sized for this load would have.
    let vault =
        testkit::spawn_vault_pooled(testkit::ring("k1", &[("k1", 1)]), n_clients as u32).await;
    // Separate channels, so the 50 clients are 50 HTTP/2 connections, not one multiplexed one.
    let clients: Vec<VaultClient> = (0..n_clients)
        .map(|_| vault.client("provisioner"))
        .collect();
    println!(
        "vault bench: {n_clients} concurrent clients x {ops} ops each, 32-byte secrets, release build"
    );

    // Warm-up: connections, prepared statements, JetStream stream.
    phase(&clients, 2, |c, n, i| async move {
        c.put(
            &format!("warm-{n}"),
            &format!("s{i}"),
            "api_credentials",
            &SecretSlice::from(vec![7u8; 32]),
            "",
        )
        .await?;
        Ok(())
    })
    .await?;

    let (put, wall) = phase(&clients, ops, |c, n, i| async move {
        let value = SecretSlice::from(format!("secret-{n}-{i}-0123456789abcdef").into_bytes());
        c.put(
            &format!("bench-{n}"),
            &format!("s{i}"),
            "api_credentials",
            &value,
            "bench",
        )
        .await?;
        Ok(())
    })
    .await?;
    report("Put", put, wall);

    let (get, wall) = phase(&clients, ops, |c, n, i| async move {
        c.get_by_name(&format!("bench-{n}"), &format!("s{i}"), "bench")
            .await?;
        Ok(())
    })
    .await?;
    report("Get", get, wall);

    vault.stop().await;
    Ok(())
}
