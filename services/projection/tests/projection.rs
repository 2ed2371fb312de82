//! The projection against real NATS and PostgreSQL: fold equivalence, exactly-once under
//! redelivery, blue/green rebuild, and the TenantDirectory API.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use eventstore::{Body, RecordedEvent};
use projection::store::{Store, TenantRow};
use projection::{RebuildOptions, consumer};
use proto::v1 as pb;
use tenancy::Status;

fn micros(t: Option<prost_types::Timestamp>) -> Option<i64> {
    let t = t?;
    Some(t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000)
}

/// Asserts that every tenant row equals the domain fold of that tenant's events, and that
/// tenants the fold says do not exist have no row.
async fn assert_matches_fold(
    store: &Store,
    by_tenant: &HashMap<String, Vec<RecordedEvent>>,
) -> usize {
    let g = store.active().await.unwrap();
    let rows: HashMap<String, TenantRow> = store
        .all_tenants_in(&g)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.tenant_id.clone(), r))
        .collect();
    let mut existing = 0;
    for (id, events) in by_tenant {
        let folded = fold(events);
        if !folded.status.exists() {
            assert!(!rows.contains_key(id), "tenant {id} should have no row");
            continue;
        }
        existing += 1;
        let row = rows
            .get(id)
            .unwrap_or_else(|| panic!("tenant {id} missing"));
        assert_eq!(row.state, folded, "state of {id}");
        assert_eq!(row.status, folded.status);
        assert_eq!(row.plan, folded.plan);
        assert_eq!(row.site, folded.site);
        assert_eq!(row.bench, folded.bench);
        assert_eq!(row.url, folded.url);
        assert_eq!(row.last_error, folded.last_error);
        assert_eq!(row.activation_ms, folded.activation_ms.map(|v| v as i64));
        assert_eq!(
            Some(row.created_at.timestamp_micros()),
            micros(folded.requested_at)
        );
        assert_eq!(
            Some(row.updated_at.timestamp_micros()),
            micros(folded.updated_at)
        );
        // The row's version is the sequence of the last event that changed the state.
        let mut state = tenancy::TenantState::default();
        let mut last_changing = 0;
        for e in events {
            let next = tenancy::apply_event(state.clone(), &projection::apply::envelope(e));
            if next.version != state.version {
                last_changing = e.sequence;
            }
            state = next;
        }
        assert_eq!(row.last_sequence as u64, last_changing, "version of {id}");
    }
    assert_eq!(rows.len(), existing, "no rows beyond the folded tenants");
    existing
}

#[tokio::test]
async fn read_model_equals_the_domain_fold_for_100_random_histories() {
    let events = event_store().await;
    let projection = spawn_projection(&events).await;
    let mut rng = rng(rand::random());
    let histories: Vec<Vec<Body>> = (0..100).map(|n| lifecycle(&mut rng, n, 30)).collect();
    let total: usize = histories.iter().map(Vec::len).sum();
    let last = append_interleaved(&events, &mut rng, histories).await;
    projection.caught_up(last).await;

    let by_tenant = events_by_tenant(&events).await;
    let existing = assert_matches_fold(&projection.store, &by_tenant).await;
    assert_eq!(existing, 100, "every history starts with TenantRequested");
    let g = projection.store.active().await.unwrap();
    let history = projection.store.history_in(&g, None).await.unwrap();
    assert_eq!(history.len(), total, "one history row per event");
    for h in &history {
        assert!(!h.summary.is_empty());
    }
    projection.stop().await;
}

#[tokio::test]
async fn a_crash_between_apply_and_ack_never_applies_an_event_twice() {
    let events = event_store().await;
    let mut rng = rng(rand::random());
    let mut versions = HashMap::new();
    let mut history = lifecycle(&mut rng, 1, 12);
    let mut last = 0;
    for b in history.drain(..) {
        last = append(&events, &mut versions, b).await;
    }
    let mut config = config(&events).await;
    config.durable = "crashy".into();

    // The "crashing" instance: applies the first delivery (commit), then dies before the ack.
    {
        let store = Store::connect(&config.database.database_url, &config.database_schema, 2)
            .await
            .unwrap();
        let mut sub = events
            .subscribe(
                "crashy",
                &events.all_filter(),
                consumer::subscribe_options(Duration::from_millis(config.ack_wait_ms)),
            )
            .await
            .unwrap();
        let delivery = sub.next().await.unwrap().unwrap();
        assert_eq!(delivery.event.sequence, 1);
        let applied = consumer::handle(&store, &delivery.event).await.unwrap();
        assert_eq!((applied.applied, applied.checkpoint), (1, 1));
        drop(delivery);
        drop(sub);
    }

    // The restarted instance gets event 1 again after the ack wait and must skip it.
    let projection = spawn_with(config).await;
    projection.caught_up(last).await;
    let stats = projection.stats.clone();
    eventually(|| {
        let s = stats.skipped.load(Ordering::Relaxed);
        async move { (s >= 1).then_some(()) }
    })
    .await;

    let g = projection.store.active().await.unwrap();
    let rows = projection.store.history_in(&g, None).await.unwrap();
    let sequences: Vec<i64> = rows.iter().map(|h| h.sequence).collect();
    assert_eq!(sequences, (1..=last as i64).collect::<Vec<_>>());
    assert_eq!(stats.applied.load(Ordering::Relaxed), last - 1);
    let by_tenant = events_by_tenant(&events).await;
    assert_matches_fold(&projection.store, &by_tenant).await;
    projection.stop().await;
}

#[tokio::test]
async fn a_database_that_lost_applied_events_answers_nothing_until_rebuilt() {
    let events = event_store().await;
    let mut rng = rng(rand::random());
    let histories: Vec<Vec<Body>> = (0..8).map(|n| lifecycle(&mut rng, n, 10)).collect();
    let last = append_interleaved(&events, &mut rng, histories).await;
    let first = spawn_projection(&events).await;
    first.caught_up(last).await;
    assert!(first.readiness.is_ready());
    first.stop().await;

    // The database is lost and recreated empty; the durable consumer (in NATS) remembers that
    // everything up to `last` was applied.
    let fresh = config(&events).await;
    let projection = spawn_with(fresh.clone()).await;
    eventually(|| {
        let r = projection.readiness.clone();
        async move { (!r.is_ready()).then_some(()) }
    })
    .await;
    let mut client = projection.client().await;
    let refused = client
        .list_tenants(pb::ListTenantsRequest::default())
        .await
        .expect_err("an empty model under an acknowledged log is not served");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("tenantctl replay")
            && refused.message().contains(&format!("up to {last}")),
        "{}",
        refused.message()
    );
    // New events still flow in meanwhile, and the model stays refused: the hole is still there.
    let mut versions = HashMap::new();
    let later = lifecycle(&mut rng, 99, 3);
    let mut newest = last;
    for b in later {
        newest = append(&events, &mut versions, b).await;
    }
    projection.caught_up(newest).await;
    assert!(!projection.readiness.is_ready());
    // The checkpoint is past the floor now, yet the hole is still there: a second instance on
    // the same database (a restart, a replica, one without a consumer) refuses too — the
    // verdict is in the database.
    let mut reader_only = fresh.clone();
    reader_only.no_consumer = true;
    let second = spawn_with(reader_only).await;
    let refused = second
        .client()
        .await
        .list_tenants(pb::ListTenantsRequest::default())
        .await
        .expect_err("the second instance refuses as well");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(!second.readiness.is_ready());

    // Told to rebuild, it makes a generation from the whole log and serves it.
    let report = projection::rebuild(
        &projection.store,
        &events,
        &RebuildOptions::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert!(report.last_sequence >= newest);
    eventually(|| {
        let r = projection.readiness.clone();
        async move { r.is_ready().then_some(()) }
    })
    .await;
    let page = client
        .list_tenants(pb::ListTenantsRequest::default())
        .await
        .expect("served again after the rebuild")
        .into_inner();
    assert!(page.total > 0);
    assert_matches_fold(&projection.store, &events_by_tenant(&events).await).await;
    eventually(|| {
        let r = second.readiness.clone();
        async move { r.is_ready().then_some(()) }
    })
    .await;
    second
        .client()
        .await
        .list_tenants(pb::ListTenantsRequest::default())
        .await
        .expect("the second instance serves the rebuilt model");
    second.stop().await;
    projection.stop().await;
}

#[tokio::test]
async fn rebuild_equals_the_live_tables_and_queries_keep_answering() {
    let events = event_store().await;
    let projection = spawn_projection(&events).await;
    let mut rng = rng(rand::random());
    let histories: Vec<Vec<Body>> = (0..60).map(|n| lifecycle(&mut rng, n, 20)).collect();
    let last = append_interleaved(&events, &mut rng, histories).await;
    projection.caught_up(last).await;
    let store = projection.store.clone();
    let live = store.active().await.unwrap();
    let live_tenants = store.all_tenants_in(&live).await.unwrap();
    let live_history = store.history_in(&live, None).await.unwrap();

    // Readers hammer the API for the whole rebuild.
    let answered = Arc::new(AtomicU64::new(0));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut client = projection.client().await;
    let some_id = live_tenants[0].tenant_id.clone();
    let reader = {
        let answered = answered.clone();
        tokio::spawn(async move {
            while !*stop_rx.borrow_and_update() {
                client
                    .get_tenant(pb::GetTenantRequest {
                        tenant_id: some_id.clone(),
                        min_sequence: 0,
                    })
                    .await
                    .expect("GetTenant answers during the rebuild");
                client
                    .list_tenants(pb::ListTenantsRequest::default())
                    .await
                    .expect("ListTenants answers during the rebuild");
                answered.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let mut phases = Vec::new();
    let options = RebuildOptions {
        batch_size: 37,
        ..RebuildOptions::default()
    };
    let report = projection::rebuild(&store, &events, &options, |p| phases.push(p.phase))
        .await
        .unwrap();
    assert_ne!(report.generation, live);
    assert_eq!(report.previous, live);
    assert_eq!(report.events, last);
    assert_eq!(report.last_sequence, last);
    assert_eq!(phases.last(), Some(&projection::Phase::Done));
    assert_eq!(store.active().await.unwrap(), report.generation);

    let rebuilt = report.generation.clone();
    assert_eq!(store.all_tenants_in(&rebuilt).await.unwrap(), live_tenants);
    assert_eq!(
        store.history_in(&rebuilt, None).await.unwrap(),
        live_history
    );

    // A second rebuild while events keep arriving: the flip takes the tail with it and the
    // live consumer carries on in the new generation.
    let appender = {
        let events = events.clone();
        tokio::spawn(async move {
            let mut rng = common::rng(7);
            let histories: Vec<Vec<Body>> =
                (100..130).map(|n| lifecycle(&mut rng, n, 10)).collect();
            append_interleaved(&events, &mut rng, histories).await
        })
    };
    let second = projection::rebuild(&store, &events, &options, |_| {})
        .await
        .unwrap();
    let last = appender.await.unwrap();
    assert_eq!(store.active().await.unwrap(), second.generation);
    projection.caught_up(last).await;
    let by_tenant = events_by_tenant(&events).await;
    assert_matches_fold(&store, &by_tenant).await;
    let history = store.history_in(&second.generation, None).await.unwrap();
    assert_eq!(history.len() as u64, last);
    // The first generation was dropped; the one just replaced is kept for in-flight reads.
    let states: Vec<(i32, String)> = store
        .generations()
        .await
        .unwrap()
        .into_iter()
        .map(|(n, _, s)| (n, s))
        .collect();
    assert_eq!(
        states,
        vec![
            (1, "dropped".to_owned()),
            (2, "retired".to_owned()),
            (3, "active".to_owned())
        ]
    );

    let _ = stop_tx.send(true);
    reader.await.unwrap();
    assert!(answered.load(Ordering::Relaxed) > 0);
    projection.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_in_many_chunks_with_catch_ups_equals_the_fold() {
    let events = event_store().await;
    let projection = spawn_projection(&events).await;
    let mut rng = rng(rand::random());
    let histories: Vec<Vec<Body>> = (0..120).map(|n| lifecycle(&mut rng, n, 20)).collect();
    let last = append_interleaved(&events, &mut rng, histories).await;
    projection.caught_up(last).await;
    let store = projection.store.clone();
    let live = store.active().await.unwrap();
    let live_tenants = store.all_tenants_in(&live).await.unwrap();
    let live_history = store.history_in(&live, None).await.unwrap();

    // Tiny chunks: most tenants change in several, so later chunks update rows earlier ones
    // wrote, and each chunk is many hand-offs from the reader.
    let options = RebuildOptions {
        batch_size: 13,
        chunk_events: 97,
        ..RebuildOptions::default()
    };
    let report = projection::rebuild(&store, &events, &options, |_| {})
        .await
        .unwrap();
    assert!(
        report.events > 5 * options.chunk_events,
        "{}",
        report.events
    );
    assert_eq!(report.last_sequence, last);
    assert_eq!(
        store.all_tenants_in(&report.generation).await.unwrap(),
        live_tenants
    );
    assert_eq!(
        store.history_in(&report.generation, None).await.unwrap(),
        live_history
    );

    // Again, with events appended once the first pass has written everything that was there:
    // a catch-up pass folds them onto tenants it wrote (the flip waits until nothing is left).
    let active: Vec<String> = live_tenants
        .iter()
        .filter(|t| t.status == Status::Active)
        .map(|t| t.tenant_id.clone())
        .collect();
    let mut appended = false;
    let mut phases = Vec::new();
    let options = RebuildOptions {
        flip_lag: 1,
        ..options
    };
    let second = projection::rebuild(&store, &events, &options, |p| {
        phases.push(p.phase);
        if !appended && p.last_sequence >= last {
            appended = true;
            // The callback is synchronous; this test runs on a multi-threaded runtime.
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(append_to(&events, &active))
            });
        }
    })
    .await
    .unwrap();
    assert!(appended);
    assert!(
        phases.contains(&projection::Phase::CatchingUp),
        "{phases:?}"
    );
    let last = events.last_sequence().await.unwrap();
    assert_eq!(second.last_sequence, last);
    projection.caught_up(last).await;
    assert_eq!(store.active().await.unwrap(), second.generation);
    assert_matches_fold(&store, &events_by_tenant(&events).await).await;
    let history = store.history_in(&second.generation, None).await.unwrap();
    assert_eq!(history.len() as u64, last);
    projection.stop().await;
}

/// A backup of each of `tenants` (a fact that changes an existing tenant) and a new tenant.
async fn append_to(events: &eventstore::EventStore, tenants: &[String]) {
    let mut versions = HashMap::new();
    for t in tenants {
        let body = Body::SiteBackedUp(pb::SiteBackedUp {
            tenant_id: t.clone(),
            site: "s".into(),
            files: vec![],
            duration_ms: 900,
        });
        let subject = events.subject(body.context(), t);
        versions.insert(subject.clone(), events.version(&subject).await.unwrap());
        append(events, &mut versions, body).await;
    }
    let mut rng = common::rng(11);
    for body in lifecycle(&mut rng, 300, 5) {
        append(events, &mut versions, body).await;
    }
}

#[tokio::test]
async fn a_second_rebuild_at_the_same_time_is_refused() {
    let events = event_store().await;
    let config = config(&events).await;
    let store = Store::connect(&config.database.database_url, "projection", 3)
        .await
        .unwrap();
    // Hold the rebuild lock the way a running rebuild does.
    let mut holder = store.pool().acquire().await.unwrap();
    let held: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('projection:rebuild'))")
            .fetch_one(&mut *holder)
            .await
            .unwrap();
    assert!(held);
    let err = projection::rebuild(&store, &events, &RebuildOptions::default(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, projection::Error::RebuildRunning), "{err}");
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test]
async fn rebuild_of_an_empty_log_makes_an_empty_generation_active() {
    let events = event_store().await;
    let config = config(&events).await;
    let store = Store::connect(&config.database.database_url, "projection", 3)
        .await
        .unwrap();
    let report = projection::rebuild(&store, &events, &RebuildOptions::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(
        (report.events, report.tenants, report.last_sequence),
        (0, 0, 0)
    );
    assert_eq!(store.active().await.unwrap().number, 2);
    assert_eq!(store.checkpoint().await.unwrap(), 0);
}

#[tokio::test]
async fn tenant_status_is_reported_in_the_api_form() {
    let events = event_store().await;
    let projection = spawn_projection(&events).await;
    let mut rng = rng(3);
    let mut versions = HashMap::new();
    let mut last = 0;
    for b in lifecycle(&mut rng, 1, 1) {
        last = append(&events, &mut versions, b).await;
    }
    let mut client = projection.client().await;
    let page = client
        .list_tenants(pb::ListTenantsRequest {
            min_sequence: last,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.tenants.len(), 1);
    assert_eq!(page.tenants[0].status, pb::TenantStatus::Requested as i32);
    assert_eq!(
        Status::from_proto_i32(page.tenants[0].status),
        Status::Requested
    );
    projection.stop().await;
}
