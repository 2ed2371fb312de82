//! The worker core against real NATS/JetStream: several instances on one durable, leases that
//! fence a dead holder out, settle policy, and re-subscription after the stream is recreated.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use eventstore::{Body, EventContext, EventStore, NewEvent, RecordedEvent};
use proto::v1 as pb;
use svc::{Readiness, Shutdown};
use tokio::sync::Semaphore;
use worker::lease::Record;
use worker::{Acquire, Handler, Leases, Outcome, Work, WorkError, Worker, WorkerConfig};

fn requested(tenant: &str, subdomain: &str) -> NewEvent {
    NewEvent::new(Body::TenantRequested(pb::TenantRequested {
        tenant_id: tenant.to_owned(),
        subdomain: subdomain.to_owned(),
        ..Default::default()
    }))
}

async fn append(store: &EventStore, tenant: &str, subdomain: &str) {
    let subject = store.subject(EventContext::Signup, tenant);
    let version = store.version(&subject).await.unwrap();
    store
        .append(&subject, version, vec![requested(tenant, subdomain)])
        .await
        .unwrap();
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test]
async fn a_lease_is_exclusive_and_a_dead_holder_is_fenced_out() {
    let store = testkit::event_store().await;
    let a = Leases::open(&store, "LEASES", "instance-a", Duration::from_secs(3))
        .await
        .unwrap();
    let b = Leases::open(&store, "LEASES", "instance-b", Duration::from_secs(3))
        .await
        .unwrap();

    let Acquire::Acquired(la) = a.try_acquire("tenant-1").await.unwrap() else {
        panic!("a free lease is taken");
    };
    match b.try_acquire("tenant-1").await.unwrap() {
        Acquire::Held { holder, free_in } => {
            assert_eq!(holder, "instance-a");
            // The ttl, plus the third of it a taker waits past the expiry.
            assert!(free_in <= Duration::from_secs(4), "{free_in:?}");
        }
        Acquire::Acquired(_) => panic!("two holders of one lease"),
    }
    la.check().await.unwrap();
    let token = la.token().await;

    // Another instance takes the key over behind A's back (A's lease expired while it hung).
    let kv = store.key_value("LEASES", 1, "").await.unwrap();
    let (_, revision) = a.peek("tenant-1").await.unwrap().unwrap();
    let takeover = Record {
        holder: "instance-c".into(),
        nonce: "n".into(),
        expires_ms: now_ms() + 60_000,
        busy_until_ms: 0,
    };
    kv.update(
        "tenant-1",
        Bytes::from(serde_json::to_vec(&takeover).unwrap()),
        revision,
    )
    .await
    .unwrap();
    // A's fencing check fails before its next side effect, it cannot mark itself busy, and
    // its release leaves the new holder's record alone.
    assert!(la.check().await.is_err());
    assert!(la.busy_for(Duration::from_secs(5)).await.is_err());
    la.release().await.unwrap();
    let (now, _) = a.peek("tenant-1").await.unwrap().unwrap();
    assert_eq!(now.holder, "instance-c");
    assert_ne!(revision, token + 1000);
}

#[tokio::test]
async fn a_lease_is_not_taken_over_while_its_command_may_still_run() {
    let store = testkit::event_store().await;
    let b = Leases::open(&store, "LEASES", "instance-b", Duration::from_secs(2))
        .await
        .unwrap();
    // A dead holder's record: expired, but its last command may run for another 1.5 s.
    let kv = store.key_value("LEASES", 1, "").await.unwrap();
    let dead = Record {
        holder: "dead".into(),
        nonce: "n".into(),
        expires_ms: now_ms() - 1,
        busy_until_ms: now_ms() + 1500,
    };
    kv.create("slot", Bytes::from(serde_json::to_vec(&dead).unwrap()))
        .await
        .unwrap();
    assert!(matches!(
        b.try_acquire("slot").await.unwrap(),
        Acquire::Held { .. }
    ));
    let taken = testkit::within(Duration::from_secs(10), || async {
        match b.try_acquire("slot").await.unwrap() {
            Acquire::Acquired(l) => Some(l),
            Acquire::Held { .. } => None,
        }
    })
    .await
    .expect("taken over once the command is known dead");
    // Busy leases survive their holder: released while busy, the record stays until then.
    taken.busy_for(Duration::from_secs(30)).await.unwrap();
    taken.release().await.unwrap();
    assert!(matches!(
        b.try_acquire("slot").await.unwrap(),
        Acquire::Held { .. }
    ));
}

/// Counts what it handles; fails on cue; remembers whether two deliveries of one key ever
/// overlapped.
#[derive(Default)]
struct Recorder {
    handled: Mutex<HashMap<String, u32>>,
    by_instance: Mutex<HashMap<&'static str, u32>>,
    running: Mutex<HashSet<String>>,
    overlaps: Mutex<u32>,
    transient_once: Mutex<HashSet<String>>,
    name: &'static str,
}

struct Instance(Arc<Recorder>, &'static str);

impl Handler for Instance {
    fn lease_key(&self, event: &RecordedEvent) -> Option<String> {
        Some(event.tenant_id.clone())
    }

    async fn handle(&self, work: Work) -> Result<Outcome, WorkError> {
        let r = &self.0;
        let Body::TenantRequested(req) = &work.event.body else {
            return Ok(Outcome::Done);
        };
        if !r.running.lock().unwrap().insert(req.tenant_id.clone()) {
            *r.overlaps.lock().unwrap() += 1;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        work.fence().await?;
        r.running.lock().unwrap().remove(&req.tenant_id);
        match req.subdomain.as_str() {
            "poison" => return Err(WorkError::Permanent("this one never works".into())),
            "flaky"
                if r.transient_once
                    .lock()
                    .unwrap()
                    .insert(req.tenant_id.clone()) =>
            {
                return Err(WorkError::Transient("not this time".into()));
            }
            _ => {}
        }
        *r.handled
            .lock()
            .unwrap()
            .entry(req.tenant_id.clone())
            .or_default() += 1;
        *r.by_instance.lock().unwrap().entry(self.1).or_default() += 1;
        let _ = r.name;
        Ok(Outcome::Done)
    }
}

fn config(store: &EventStore) -> WorkerConfig {
    let mut c = WorkerConfig::new("test-worker", store.context_filter(EventContext::Signup));
    c.subscribe.ack_wait = Duration::from_secs(3);
    c.subscribe.max_deliver = 5;
    c.retry_initial = Duration::from_millis(50);
    c.fetch_wait = Duration::from_millis(500);
    c.lease_wait = Duration::from_secs(2);
    c.shutdown_grace = Duration::from_secs(5);
    c
}

#[tokio::test]
async fn instances_share_one_durable_and_each_event_takes_effect_once() {
    let store = testkit::event_store().await;
    let recorder = Arc::new(Recorder::default());
    let shutdown = Shutdown::new();
    let readiness = Readiness::default();
    readiness.set(true);
    let mut handles = Vec::new();
    for name in ["one", "two", "three"] {
        let leases = Leases::open(&store, "LEASES", name, Duration::from_secs(3))
            .await
            .unwrap();
        let worker = Worker::new(
            config(&store),
            store.clone(),
            Arc::new(Instance(Arc::clone(&recorder), name)),
            Some(leases),
            Arc::new(Semaphore::new(2)),
        );
        handles.push(tokio::spawn(
            worker.run(readiness.part(name), shutdown.clone()),
        ));
    }
    // 40 tenants, several events each for some (same key, so they must not overlap), one
    // poison event and one that fails once.
    let mut tenants = Vec::new();
    for i in 0..40 {
        let t = uuid::Uuid::now_v7().to_string();
        append(&store, &t, &format!("t{i}")).await;
        if i % 4 == 0 {
            append(&store, &t, &format!("t{i}")).await;
        }
        tenants.push(t);
    }
    let poison = uuid::Uuid::now_v7().to_string();
    append(&store, &poison, "poison").await;
    let flaky = uuid::Uuid::now_v7().to_string();
    append(&store, &flaky, "flaky").await;

    let expected: u32 = 40 + 10 + 1;
    testkit::eventually(|| async {
        let total: u32 = recorder.handled.lock().unwrap().values().sum();
        (total >= expected).then_some(())
    })
    .await;
    let dlq = store.dead_letters().await.unwrap();
    let letters = testkit::eventually(|| async {
        let l = dlq.list().await.unwrap();
        (!l.is_empty()).then_some(l)
    })
    .await;
    // Let anything still in flight settle, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(readiness.is_ready());
    shutdown.trigger();
    for h in handles {
        h.await.unwrap().unwrap();
    }

    let handled = recorder.handled.lock().unwrap().clone();
    for (i, t) in tenants.iter().enumerate() {
        let want = if i % 4 == 0 { 2 } else { 1 };
        assert_eq!(handled.get(t), Some(&want), "tenant {i}");
    }
    assert_eq!(
        handled.get(&flaky),
        Some(&1),
        "a transient failure is retried"
    );
    assert_eq!(handled.get(&poison), None);
    assert_eq!(
        *recorder.overlaps.lock().unwrap(),
        0,
        "one key, one handler at a time"
    );
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].tenant_id, poison);
    assert_eq!(
        letters[0].deliveries, 1,
        "a permanent error is terminated at once"
    );
    let spread = recorder.by_instance.lock().unwrap().clone();
    assert!(
        spread.len() >= 2,
        "work is shared among instances: {spread:?}"
    );
}

/// Sleeps long enough that a prefetching consumer would pile messages up.
struct Slow;

impl Handler for Slow {
    fn lease_key(&self, _: &RecordedEvent) -> Option<String> {
        None
    }

    async fn handle(&self, _: Work) -> Result<Outcome, WorkError> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(Outcome::Done)
    }
}

#[tokio::test]
async fn a_worker_holds_no_more_messages_than_it_has_permits() {
    let store = testkit::event_store().await;
    for i in 0..12 {
        append(&store, &uuid::Uuid::now_v7().to_string(), &format!("s{i}")).await;
    }
    let shutdown = Shutdown::new();
    let readiness = Readiness::default();
    let worker = Worker::new(
        config(&store),
        store.clone(),
        Arc::new(Slow),
        None,
        Arc::new(Semaphore::new(1)),
    );
    let task = tokio::spawn(worker.run(readiness.part("slow"), shutdown.clone()));
    let stream = store
        .jetstream()
        .get_stream(store.stream_name())
        .await
        .unwrap();
    let most_in_flight = std::sync::atomic::AtomicUsize::new(0);
    let done = testkit::within(Duration::from_secs(30), || async {
        let info = stream.consumer_info("test-worker").await.ok()?;
        most_in_flight.fetch_max(info.num_ack_pending, std::sync::atomic::Ordering::Relaxed);
        (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
    })
    .await;
    assert!(done.is_some(), "every message handled");
    let most = most_in_flight.into_inner();
    assert!(most <= 1, "{most} messages held by one permit");
    shutdown.trigger();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_consumer_whose_stream_is_recreated_resumes_and_readiness_says_so() {
    let store = testkit::event_store().await;
    let recorder = Arc::new(Recorder::default());
    let shutdown = Shutdown::new();
    let readiness = Readiness::default();
    readiness.set(true);
    let leases = Leases::open(&store, "LEASES", "one", Duration::from_secs(3))
        .await
        .unwrap();
    let worker = Worker::new(
        config(&store),
        store.clone(),
        Arc::new(Instance(Arc::clone(&recorder), "one")),
        Some(leases),
        Arc::new(Semaphore::new(2)),
    );
    let task = tokio::spawn(worker.run(readiness.part("consumer"), shutdown.clone()));
    let first = uuid::Uuid::now_v7().to_string();
    append(&store, &first, "before").await;
    testkit::eventually(|| async {
        recorder
            .handled
            .lock()
            .unwrap()
            .contains_key(&first)
            .then_some(())
    })
    .await;
    assert!(readiness.is_ready());

    // The stream goes away (an operator deleted it, a restore is under way).
    store
        .jetstream()
        .delete_stream(store.stream_name())
        .await
        .unwrap();
    testkit::eventually(|| async { (!readiness.is_ready()).then_some(()) }).await;
    assert!(readiness.not_ready().contains(&"consumer".to_owned()));

    // It comes back; the consumer subscribes again and new events are handled.
    store.ensure_stream().await.unwrap();
    testkit::eventually(|| async { readiness.is_ready().then_some(()) }).await;
    let second = uuid::Uuid::now_v7().to_string();
    append(&store, &second, "after").await;
    testkit::eventually(|| async {
        recorder
            .handled
            .lock()
            .unwrap()
            .contains_key(&second)
            .then_some(())
    })
    .await;
    shutdown.trigger();
    task.await.unwrap().unwrap();
}

/// Never possible: always asks to come back later.
struct NotYet;

impl Handler for NotYet {
    fn lease_key(&self, _: &RecordedEvent) -> Option<String> {
        None
    }

    async fn handle(&self, _: Work) -> Result<Outcome, WorkError> {
        Ok(Outcome::Later(Duration::from_millis(10)))
    }
}

#[tokio::test]
async fn a_delivery_that_waits_past_its_last_attempt_becomes_a_dead_letter() {
    let store = testkit::event_store().await;
    let tenant = uuid::Uuid::now_v7().to_string();
    append(&store, &tenant, "waiting").await;
    let mut c = config(&store);
    c.subscribe.max_deliver = 3;
    let shutdown = Shutdown::new();
    let readiness = Readiness::default();
    let worker = Worker::new(
        c,
        store.clone(),
        Arc::new(NotYet),
        None,
        Arc::new(Semaphore::new(1)),
    );
    let task = tokio::spawn(worker.run(readiness.part("waiting"), shutdown.clone()));
    let dlq = store.dead_letters().await.unwrap();
    // Each wait is handed back for at least half a second.
    let letters = testkit::eventually(|| async {
        let l = dlq.list().await.unwrap();
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(letters[0].tenant_id, tenant);
    assert_eq!(letters[0].deliveries, 3);
    assert!(
        letters[0].error.contains("never possible yet"),
        "{}",
        letters[0].error
    );
    shutdown.trigger();
    task.await.unwrap().unwrap();
}
