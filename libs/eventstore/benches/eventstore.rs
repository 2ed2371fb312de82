//! `just bench`: append throughput (awaited one by one, and pipelined) and replay rate,
//! against the real NATS server. Prints figures; asserts nothing about speed.

use std::time::{Duration, Instant};

use eventstore::{Body, EventContext, EventStore, NewEvent, StoreConfig};
use futures::{StreamExt, stream};
use proto::v1::SiteCreated;

const SEQUENTIAL: usize = 2_000;
const PIPELINED: usize = 20_000;
const REPLAY: usize = 100_000;
/// Appends in flight at once in the pipelined runs.
const IN_FLIGHT: usize = 256;

fn event(tenant: &str) -> NewEvent {
    NewEvent::new(Body::SiteCreated(SiteCreated {
        tenant_id: tenant.to_owned(),
        site: format!("{tenant}.erp.example.com"),
        bench: "bench-1".into(),
        db_name: "_0123456789abcdef".into(),
        admin_password_ref: format!("vault://tenant/{tenant}/site-admin-password"),
        duration_ms: 18_000,
    }))
}

fn rate(n: usize, d: Duration) -> String {
    format!(
        "{:>9.0} events/s  ({n} events in {:.2} s)",
        n as f64 / d.as_secs_f64(),
        d.as_secs_f64()
    )
}

/// Appends `n` events over `n / 10` subjects, `IN_FLIGHT` at a time, each with its expected version.
async fn append_pipelined(store: &EventStore, n: usize, tag: &str) -> Duration {
    let start = Instant::now();
    let subjects = (n / 10).max(1);
    // Each subject is written by one task in order; tasks run concurrently.
    stream::iter(0..subjects)
        .map(|s| {
            let store = store.clone();
            let tenant = format!("{tag}-{s}");
            async move {
                let subject = store.subject(EventContext::Provisioning, &tenant);
                let mut version = 0;
                for _ in 0..n / subjects {
                    version = store
                        .append(&subject, version, vec![event(&tenant)])
                        .await
                        .expect("append")[0];
                }
            }
        })
        .buffer_unordered(IN_FLIGHT / 10)
        .collect::<Vec<_>>()
        .await;
    start.elapsed()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let config = StoreConfig::new(url).with_namespace(format!("bench{}", std::process::id()));
    let store = EventStore::connect(&config).await?;
    println!("eventstore benchmarks (nats-server, file storage, 1 replica)");

    // Awaited one by one: each append waits for its ack before the next.
    let subject = store.subject(EventContext::Provisioning, "sequential");
    let start = Instant::now();
    let mut version = 0;
    for _ in 0..SEQUENTIAL {
        version = store
            .append(&subject, version, vec![event("sequential")])
            .await?[0];
    }
    println!(
        "append, awaited one by one : {}",
        rate(SEQUENTIAL, start.elapsed())
    );

    let d = append_pipelined(&store, PIPELINED, "pipelined").await;
    println!(
        "append, pipelined ({IN_FLIGHT:>3} in flight) : {}",
        rate(PIPELINED, d)
    );

    // Fill to REPLAY events, then read them all back in order.
    let have = store.last_sequence().await? as usize;
    if have < REPLAY {
        append_pipelined(&store, REPLAY - have, "fill").await;
    }
    let total = store.last_sequence().await? as usize;
    let start = Instant::now();
    let mut replay = store.replay(&store.all_filter(), 1).await?;
    let mut n = 0usize;
    while let Some(e) = replay.next().await {
        e?;
        n += 1;
    }
    let d = start.elapsed();
    assert_eq!(n, total, "replay must yield every event");
    println!("replay from sequence 1       : {}", rate(n, d));

    store.destroy().await?;
    Ok(())
}
