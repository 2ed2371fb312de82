//! Rebuild rate of the tenant projection: appends a realistic mix of 100,000 events over about
//! 10,000 tenants (override with `BENCH_EVENTS`), then rebuilds the read model from sequence 1
//! into a fresh generation, as `tenantctl replay --projection tenants` does, at a few batch
//! sizes. Needs NATS and PostgreSQL (`just up`). Run: `cargo bench -p projection --bench rebuild`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use eventstore::Body;
use projection::{RebuildOptions, Store};

const GROUPS: usize = 32;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let target: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let events = common::event_store().await;
    let mut rng = common::rng(42);

    // Lifecycles of up to 20 events (about 10 on average) until the target is reached.
    let mut histories: Vec<Vec<Body>> = Vec::new();
    let mut total = 0;
    while total < target {
        let mut h = common::lifecycle(&mut rng, histories.len(), 20);
        h.truncate(target - total);
        total += h.len();
        histories.push(h);
    }
    let tenants = histories.len();

    // Appending concurrently in groups of tenants (each group interleaves its tenants).
    let started = Instant::now();
    let mut groups: Vec<Vec<Vec<Body>>> = (0..GROUPS).map(|_| Vec::new()).collect();
    for (i, h) in histories.into_iter().enumerate() {
        groups[i % GROUPS].push(h);
    }
    let mut tasks = Vec::new();
    for (i, group) in groups.into_iter().enumerate() {
        let events = events.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = common::rng(1000 + i as u64);
            common::append_interleaved(&events, &mut rng, group).await
        }));
    }
    for t in tasks {
        t.await?;
    }
    let append_secs = started.elapsed().as_secs_f64();
    println!(
        "appended {total} events for {tenants} tenants in {append_secs:.1} s ({:.0} events/s)",
        total as f64 / append_secs
    );

    let (url, _pool) = testkit::fresh_database().await?;
    let store = Store::connect(&url, "projection", 8).await?;
    println!("| batch size | events | tenants | seconds | events/s |");
    println!("|---:|---:|---:|---:|---:|");
    for batch_size in [250, 1000, 2000] {
        let options = RebuildOptions {
            batch_size,
            ..RebuildOptions::default()
        };
        let report = projection::rebuild(&store, &events, &options, |_| {}).await?;
        println!(
            "| {batch_size} | {} | {} | {:.2} | {:.0} |",
            report.events,
            report.tenants,
            report.elapsed.as_secs_f64(),
            report.rate()
        );
    }
    events.destroy().await?;
    Ok(())
}
