//! Bench slots across instances: a slot freed by one instance is taken by another's waiter as
//! soon as it is released (woken by the change, not by polling), and a queue of waiters drains
//! one at a time without ever exceeding the bench's limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eventstore::{EventStore, StoreConfig};
use provisioner::fleet::FleetConfig;
use provisioner::metrics::Metrics;
use provisioner::slots::{SlotConfig, Slots};

const FLEET: &str = r#"
[[benches]]
name = "bench-a"
region = "eu"
base_url = "http://127.0.0.1:9"
base_domain = "bench-a.tenantry.localhost"
max_sites = 10
max_concurrent_operations = 1
apps = []
db_root_password_ref = "vault://tenant/fleet/bench-a"
runner = { kind = "local", bench_dir = "/nonexistent" }
"#;

async fn slots(store: &EventStore, instance: &str) -> Slots {
    // A fallback poll far longer than the test may take: only a wake-up can hand a slot over.
    let config = SlotConfig {
        lease: Duration::from_secs(30),
        poll: Duration::from_secs(600),
    };
    Slots::open(store, instance, config, Metrics::default())
        .await
        .expect("slots")
}

#[tokio::test]
async fn a_released_slot_wakes_a_waiter_on_another_instance_and_the_queue_drains_in_turn() {
    let store = EventStore::connect(
        &StoreConfig::new(testkit::nats_url()).with_namespace(testkit::unique_namespace()),
    )
    .await
    .expect("store");
    let fleet = FleetConfig::parse(FLEET).expect("fleet");
    let bench = fleet.benches[0].clone();
    let (a, b) = (slots(&store, "a").await, slots(&store, "b").await);

    let held = a
        .acquire(&bench, Duration::from_secs(1))
        .await
        .expect("a's slot");
    let waiting = {
        let (b, bench) = (b.clone(), bench.clone());
        tokio::spawn(async move { b.acquire(&bench, Duration::from_secs(1)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the bench allows one operation");
    held.release().await;
    let got = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("woken by the release, not by the 10-minute poll")
        .expect("task")
        .expect("b's slot");
    got.release().await;

    // Twelve waiters over both instances: each gets the slot in turn, never two at once.
    let (now, most, done) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (bench, now, most, done) = (bench.clone(), now.clone(), most.clone(), done.clone());
            tokio::spawn(async move {
                let slot = s
                    .acquire(&bench, Duration::from_secs(1))
                    .await
                    .expect("slot");
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                slot.release().await;
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(tasks))
        .await
        .expect("every waiter was served without waiting for a poll");
    assert_eq!(done.load(Ordering::SeqCst), 12);
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "never two operations at once"
    );
    store.destroy().await.ok();
}
