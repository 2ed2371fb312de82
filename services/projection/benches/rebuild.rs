//! Rebuild rate of the tenant projection: appends a realistic mix of 1,000,000 events over
//! about 100,000 tenants (override with `BENCH_EVENTS`), reads them all back without a database
//! (what the log alone allows), then rebuilds the read model from sequence 1 into a fresh
//! generation, as `tenantctl replay --projection tenants` does. Needs NATS and PostgreSQL
//! (`just up`). Run: `cargo bench -p projection --bench rebuild`.
//!
//! Appending a million events takes about a minute: with `BENCH_NAMESPACE=name` the stream of
//! that namespace is kept and reused by the next run (topped up to `BENCH_EVENTS` if short).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use eventstore::{Body, EventStore};
use projection::{RebuildOptions, Store};

const GROUPS: usize = 32;

/// Appends lifecycles of up to 20 events (about 10 on average) until the stream holds `target`.
async fn fill(events: &EventStore, target: usize) -> anyhow::Result<()> {
    let have = usize::try_from(events.last_sequence().await?)?;
    if have >= target {
        println!("reusing {have} events already in the stream");
        return Ok(());
    }
    let mut rng = common::rng(42 + have as u64);
    let mut histories: Vec<Vec<Body>> = Vec::new();
    let mut total = have;
    while total < target {
        let mut h = common::lifecycle(&mut rng, have + histories.len(), 20);
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
    let secs = started.elapsed().as_secs_f64();
    println!(
        "appended {} events for {tenants} tenants in {secs:.1} s ({:.0} events/s)",
        total - have,
        (total - have) as f64 / secs
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let target: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let kept = std::env::var("BENCH_NAMESPACE").ok();
    let events = match &kept {
        Some(ns) => testkit::event_store_in(ns).await,
        None => common::event_store().await,
    };
    fill(&events, target).await?;

    // The log alone: read and decode every event, write nothing.
    let started = Instant::now();
    let mut replay = events.replay(&events.all_filter(), 1).await?;
    let mut read = 0u64;
    while let Some(e) = replay.next().await {
        e?;
        read += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replay alone (read + decode, no database): {read} events in {secs:.2} s ({:.0} events/s)",
        read as f64 / secs
    );

    let (url, _pool) = testkit::fresh_database().await?;
    let store = Store::connect(&url, "projection", 8).await?;
    println!("| events per transaction | events | tenants | seconds | events/s |");
    println!("|---:|---:|---:|---:|---:|");
    for chunk_events in [u64::MAX, 250_000] {
        let options = RebuildOptions {
            chunk_events,
            ..RebuildOptions::default()
        };
        let report = projection::rebuild(&store, &events, &options, |_| {}).await?;
        let chunk = match chunk_events {
            u64::MAX => "all (default)".to_owned(),
            n => n.to_string(),
        };
        println!(
            "| {chunk} | {} | {} | {:.2} | {:.0} |",
            report.events,
            report.tenants,
            report.elapsed.as_secs_f64(),
            report.rate()
        );
    }
    if kept.is_none() {
        events.destroy().await?;
    }
    Ok(())
}
