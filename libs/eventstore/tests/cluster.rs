//! The event store on a 3-node JetStream cluster (real nats-server processes on loopback, as
//! `deploy/nats/` configures them): the stream and the KV buckets get three replicas, and
//! appends go on while the stream's leader is killed — nothing lost, nothing twice.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eventstore::{Body, EventContext, EventStore, NewEvent, StoreConfig, StoreError};
use proto::v1 as pb;
use testkit::NatsCluster;

const SUBJECTS: usize = 10;
const PER_SUBJECT: usize = 12;

fn event(tenant: &str, n: usize) -> NewEvent {
    NewEvent::new(Body::PlanChangeRequested(pb::PlanChangeRequested {
        tenant_id: tenant.to_owned(),
        to_plan: format!("plan-{n}"),
        ..Default::default()
    }))
}

/// Connects once the cluster has elected its JetStream meta leader.
async fn connect(config: &StoreConfig) -> EventStore {
    testkit::within(Duration::from_secs(60), || async {
        EventStore::connect(config).await.ok()
    })
    .await
    .expect("the cluster forms and the R3 stream is created within a minute")
}

/// Appends `e` at `version`, retrying what a leader change makes transient. A retry of an
/// append that did land is answered from the duplicate window with its first sequence.
async fn append_through_failover(
    store: &EventStore,
    subject: &str,
    version: u64,
    e: NewEvent,
    retries: &AtomicUsize,
) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match store.append(subject, version, vec![e.clone()]).await {
            Ok(seqs) => return seqs[0],
            Err(err @ StoreError::Unavailable(_)) => {
                retries.fetch_add(1, Ordering::Relaxed);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no leader for a minute: {err}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("only retryable errors during a failover, got {err}"),
        }
    }
}

#[tokio::test]
async fn a_replicated_stream_keeps_every_event_once_when_its_leader_dies() {
    let mut cluster = NatsCluster::start(3).await;
    let config = StoreConfig::new(cluster.urls())
        .with_namespace(testkit::unique_namespace())
        .with_replicas(3);
    let store = connect(&config).await;
    // A fresh R3 stream elects its leader shortly after it is created.
    let (replicas, leader) = testkit::within(Duration::from_secs(30), || async {
        let mut stream = store
            .jetstream()
            .get_stream(store.stream_name())
            .await
            .ok()?;
        let info = stream.info().await.ok()?;
        let leader = info.cluster.as_ref()?.leader.clone()?;
        Some((info.config.num_replicas, leader))
    })
    .await
    .expect("the stream has a leader");
    assert_eq!(replicas, 3);
    // KV buckets are replicated the same way.
    let kv_replicas = testkit::within(Duration::from_secs(30), || async {
        let kv = store
            .key_value("CLUSTER_CHECK", 1, "replication check")
            .await
            .ok()?;
        kv.put("k", "v".into()).await.ok()?;
        let mut kv_stream = store
            .jetstream()
            .get_stream(format!("KV_{}", store.bucket_name("CLUSTER_CHECK")))
            .await
            .ok()?;
        Some(kv_stream.info().await.ok()?.config.num_replicas)
    })
    .await
    .expect("a replicated bucket is created and written");
    assert_eq!(kv_replicas, 3);

    let tenants: Vec<String> = (0..SUBJECTS)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let retries = AtomicUsize::new(0);
    let writers = tenants.iter().map(|t| {
        let store = store.clone();
        let retries = &retries;
        let subject = store.subject(EventContext::Billing, t);
        let tenant = t.clone();
        async move {
            let mut version = 0;
            for n in 0..PER_SUBJECT {
                version =
                    append_through_failover(&store, &subject, version, event(&tenant, n), retries)
                        .await;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    });
    let killer = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let i = NatsCluster::index_of(&leader).expect("leader is n1..n3");
        cluster.node(i).kill();
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.node(i).restart().await;
    };
    tokio::join!(futures::future::join_all(writers), killer);

    // The kill did land in the middle of the writes: some appends had to wait for a new leader.
    assert!(retries.load(Ordering::Relaxed) > 0, "the failover was seen");

    let mut seen = HashSet::new();
    let mut per_tenant: HashMap<String, Vec<String>> = HashMap::new();
    for t in &tenants {
        // Reads, too, may meet a cluster still settling after the restart: retried like the
        // appends (a read changes nothing).
        let subject = store.subject(EventContext::Billing, t);
        let events = testkit::within(Duration::from_secs(60), || async {
            store.load(&subject).await.ok()
        })
        .await
        .expect("the tenant's events can be read within a minute of the failover");
        for e in &events {
            assert!(seen.insert(e.event_id), "event {} stored twice", e.event_id);
            if let Body::PlanChangeRequested(p) = &e.body {
                per_tenant
                    .entry(t.clone())
                    .or_default()
                    .push(p.to_plan.clone());
            }
        }
    }
    assert_eq!(seen.len(), SUBJECTS * PER_SUBJECT, "every event stored");
    let wanted: Vec<String> = (0..PER_SUBJECT).map(|n| format!("plan-{n}")).collect();
    for t in &tenants {
        assert_eq!(per_tenant[t], wanted, "each subject in the order appended");
    }
}
