//! Node loss: on a 3-node JetStream cluster (real nats-server processes on loopback, as
//! `deploy/nats/` configures them) with the stream and every bucket at three replicas, 50
//! clients sign up at once while the node leading the event stream is killed and, a few seconds
//! later, restarted. Every client gets its tenant (having seen only retryable errors), every
//! accepted tenant is provisioned, and the log holds each tenant's request and each of its
//! provisioning facts exactly once — nothing lost, nothing twice.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use common::{FleetOptions, PASSWORD, TestStack, signup_retrying};
use eventstore::{EventStore, StoreConfig};
use proto::v1 as pb;
use testkit::NatsCluster;

const CLIENTS: usize = 50;

/// The stream's leader (`n1`…`n3`), once it has one.
async fn stream_leader(store: &EventStore) -> String {
    testkit::within(Duration::from_secs(60), || async {
        let mut stream = store
            .jetstream()
            .get_stream(store.stream_name())
            .await
            .ok()?;
        stream.info().await.ok()?.cluster.clone()?.leader
    })
    .await
    .expect("the stream has a leader")
}

#[tokio::test]
async fn signups_survive_losing_the_stream_leader_with_nothing_lost_or_twice() {
    let mut cluster = NatsCluster::start(3).await;
    // The JetStream meta leader is elected shortly after the nodes meet.
    testkit::within(Duration::from_secs(60), || async {
        let config = StoreConfig::new(cluster.urls())
            .with_namespace(testkit::unique_namespace())
            .with_replicas(3);
        let store = EventStore::connect(&config).await.ok()?;
        store.destroy().await.ok()
    })
    .await
    .expect("the cluster forms within a minute");
    let stack = TestStack::new(
        2,
        FleetOptions {
            ops: 4,
            nats_url: Some(cluster.urls()),
            replicas: 3,
            ..Default::default()
        },
    )
    .await;
    let prov = stack.start_provisioner(stack.config()).await;
    let signup = testkit::spawn_signup(&stack.vault, |c| {
        c.rate_per_address = 0;
        c.rate_per_email = 0;
        c.nats.replicas = 3;
    })
    .await;
    let leader = stream_leader(&stack.store).await;
    let mut stream = stack
        .store
        .jetstream()
        .get_stream(stack.store.stream_name())
        .await
        .unwrap();
    assert_eq!(stream.info().await.unwrap().config.num_replicas, 3);

    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let endpoint = signup.endpoint();
            tokio::spawn(async move {
                // Spread over two seconds, so signups are in flight when the node dies.
                tokio::time::sleep(Duration::from_millis(40 * i as u64)).await;
                let request = pb::SignupRequest {
                    email: format!("owner{i}@nodeloss.example.com"),
                    password: PASSWORD.to_owned(),
                    full_name: "Olive Owner".to_owned(),
                    organisation: format!("Node loss {i}"),
                    subdomain: format!("nodeloss-{i:02}"),
                    plan: "starter".to_owned(),
                    region: String::new(),
                    idempotency_key: format!("nodeloss-key-{i}"),
                    human_check_token: String::new(),
                };
                signup_retrying(endpoint, request, Duration::from_secs(120)).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let i = NatsCluster::index_of(&leader).expect("leader is n1..n3");
    cluster.node(i).kill();
    let killed_at = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.node(i).restart().await;
    let back_at = started.elapsed();

    let mut tenants = Vec::new();
    let mut retried = 0;
    for c in clients {
        let o = c
            .await
            .expect("every client gets its tenant, seeing only retryable errors");
        retried += o.failures.len();
        tenants.push(o.tenant_id);
    }
    let answered_at = started.elapsed();
    let unique: HashSet<&String> = tenants.iter().collect();
    assert_eq!(unique.len(), CLIENTS, "one tenant per client");

    // Every accepted tenant is provisioned.
    for t in &tenants {
        stack.wait_for(t, "TenantProvisioned", 180).await;
    }
    let provisioned_at = started.elapsed();
    println!(
        "node loss: {leader} killed at {killed_at:?}, back at {back_at:?}; {CLIENTS} answered by \
         {answered_at:?} after {retried} retried attempts; all provisioned by {provisioned_at:?}"
    );

    // Nothing lost, nothing twice: one request per tenant, each fact of its provisioning once,
    // and no event id twice in the whole log.
    let mut replay = stack
        .store
        .replay(&stack.store.all_filter(), 1)
        .await
        .unwrap();
    let mut all = Vec::new();
    while let Some(e) = replay.next().await {
        all.push(e.unwrap());
    }
    let mut ids = HashSet::new();
    for e in &all {
        assert!(ids.insert(e.event_id), "event {} twice: {e:?}", e.event_id);
    }
    for t in &tenants {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for e in all.iter().filter(|e| &e.tenant_id == t) {
            *counts.entry(e.event_type.as_str()).or_default() += 1;
        }
        for ty in ["TenantRequested", "PlacementChosen", "TenantProvisioned"] {
            assert_eq!(counts.get(ty), Some(&1), "{t}: {ty} in {counts:?}");
        }
        assert_eq!(counts.get("ProvisioningFailed"), None, "{t}: {counts:?}");
    }
    prov.stop().await;
    signup.stop();
}
