//! The event store against a real NATS server with JetStream.

use std::time::Duration;

use eventstore::{
    Body, EventContext, EventStore, NewEvent, StoreConfig, StoreError, SubscribeOptions, headers,
};
use proto::v1::{SiteCreated, TenantRequested};
use uuid::Uuid;

async fn store() -> EventStore {
    testkit::init_logging();
    let config = StoreConfig::new(testkit::nats_url()).with_namespace(testkit::unique_namespace());
    EventStore::connect(&config)
        .await
        .expect("NATS with JetStream must be running (just up)")
}

fn requested(tenant: &str) -> NewEvent {
    NewEvent::new(Body::TenantRequested(TenantRequested {
        tenant_id: tenant.to_owned(),
        subdomain: "acme".into(),
        ..Default::default()
    }))
}

fn site_created(tenant: &str) -> NewEvent {
    NewEvent::new(Body::SiteCreated(SiteCreated {
        tenant_id: tenant.to_owned(),
        site: "acme.test".into(),
        ..Default::default()
    }))
}

#[tokio::test]
async fn two_writers_at_one_version_exactly_one_wins() {
    let store = store().await;
    let tenant = Uuid::now_v7().to_string();
    let subject = store.subject(EventContext::Provisioning, &tenant);
    let first = store
        .append(&subject, 0, vec![site_created(&tenant)])
        .await
        .unwrap();
    let version = first[0];

    let (a, b) = tokio::join!(
        store.append(&subject, version, vec![site_created(&tenant)]),
        store.append(&subject, version, vec![site_created(&tenant)]),
    );
    let (winner, loser) = match (a, b) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        other => panic!("expected exactly one winner, got {other:?}"),
    };
    match loser {
        StoreError::Conflict {
            expected, actual, ..
        } => {
            assert_eq!(expected, version);
            assert_eq!(
                actual, winner[0],
                "the conflict carries the version the winner produced"
            );
        }
        e => panic!("expected Conflict, got {e:?}"),
    }
    assert_eq!(store.version(&subject).await.unwrap(), winner[0]);
    assert_eq!(store.load(&subject).await.unwrap().len(), 2);
    store.destroy().await.unwrap();
}

#[tokio::test]
async fn re_appending_an_event_id_is_stored_once_and_answers_the_original_sequence() {
    let store = store().await;
    let tenant = Uuid::now_v7().to_string();
    let subject = store.subject(EventContext::Signup, &tenant);
    let event = requested(&tenant);
    let first = store
        .append_reporting(&subject, 0, vec![event.clone()])
        .await
        .unwrap();
    assert!(!first.duplicate, "a first append is not a duplicate");
    // The retry still claims version 0, which is stale; de-duplication answers first, and says
    // so, so a writer folding its own events forward knows to reload instead.
    let again = store
        .append_reporting(&subject, 0, vec![event.clone()])
        .await
        .unwrap();
    assert_eq!(first.sequences, again.sequences);
    assert!(again.duplicate, "the retry is reported as a duplicate");
    let loaded = store.load(&subject).await.unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].event_id, event.id);
    store.destroy().await.unwrap();
}

#[tokio::test]
async fn a_batch_appends_in_order_and_a_stale_batch_conflicts_without_writing() {
    let store = store().await;
    let tenant = Uuid::now_v7().to_string();
    let subject = store.subject(EventContext::Provisioning, &tenant);
    let seqs = store
        .append(
            &subject,
            0,
            vec![site_created(&tenant), site_created(&tenant)],
        )
        .await
        .unwrap();
    assert!(seqs[0] < seqs[1]);
    let err = store
        .append(&subject, seqs[0], vec![site_created(&tenant)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual, .. } if actual == seqs[1]),
        "{err:?}"
    );
    assert_eq!(store.load(&subject).await.unwrap().len(), 2);
    assert!(matches!(
        store.append(&subject, 0, vec![]).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store
            .append("elsewhere.x", 0, vec![site_created(&tenant)])
            .await,
        Err(StoreError::Invalid(_))
    ));
    store.destroy().await.unwrap();
}

#[tokio::test]
async fn envelope_headers_round_trip() {
    let store = store().await;
    let tenant = Uuid::now_v7().to_string();
    let subject = store.subject(EventContext::Signup, &tenant);
    let event = requested(&tenant).correlated("corr-1").caused_by("cause-1");
    store
        .append(&subject, 0, vec![event.clone()])
        .await
        .unwrap();

    let loaded = store.load(&subject).await.unwrap().remove(0);
    assert_eq!(loaded.event_id, event.id);
    assert_eq!(loaded.event_type, "TenantRequested");
    assert_eq!(loaded.tenant_id, tenant);
    assert_eq!(loaded.correlation_id.as_deref(), Some("corr-1"));
    assert_eq!(loaded.causation_id.as_deref(), Some("cause-1"));
    assert_eq!(
        loaded.headers.get(headers::SCHEMA).map(|v| v.as_str()),
        Some(headers::SCHEMA_VERSION)
    );
    assert_eq!(loaded.subject, subject);
    assert_eq!(loaded.body, event.body);
    assert_eq!(
        loaded.occurred_at.timestamp_micros(),
        event.occurred_at.timestamp_micros()
    );
    assert_eq!(
        store.parse_subject(&loaded.subject),
        Some((EventContext::Signup, tenant.as_str()))
    );

    // A follow-up event keeps the saga's correlation and names its cause.
    let next = site_created(&tenant).following(&loaded);
    assert_eq!(next.correlation_id.as_deref(), Some("corr-1"));
    assert_eq!(next.causation_id, Some(loaded.event_id.to_string()));
    store.destroy().await.unwrap();
}

#[tokio::test]
async fn an_event_without_a_type_header_is_rejected_clearly() {
    let store = store().await;
    let tenant = Uuid::now_v7().to_string();
    let subject = store.subject(EventContext::Signup, &tenant);
    // A foreign publisher writes straight to the stream, bypassing the envelope.
    let mut h = async_nats::HeaderMap::new();
    h.insert(headers::EVENT_ID, Uuid::now_v7().to_string().as_str());
    store
        .jetstream()
        .publish_with_headers(subject.clone(), h, "junk".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let err = store.load(&subject).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("Tenantry-Event-Type"), "{message}");
    assert!(matches!(
        err,
        StoreError::Decode(eventstore::DecodeError::MissingHeader { .. })
    ));

    // A subscriber is told too, and the message becomes a dead letter instead of looping.
    let mut sub = store
        .subscribe("typeless", &store.all_filter(), SubscribeOptions::default())
        .await
        .unwrap();
    let delivered = sub.next().await.unwrap();
    assert!(matches!(delivered, Err(StoreError::Decode(_))));
    let dlq = store.dead_letters().await.unwrap().list().await.unwrap();
    assert_eq!(dlq.len(), 1);
    assert!(dlq[0].error.contains("Tenantry-Event-Type"));
    store.destroy().await.unwrap();
}

#[tokio::test]
async fn unacked_events_are_redelivered_then_dead_lettered_and_retryable() {
    let store = store().await;
    let tenant = Uuid::now_v7().to_string();
    let subject = store.subject(EventContext::Signup, &tenant);
    let seq = store
        .append(&subject, 0, vec![requested(&tenant)])
        .await
        .unwrap()[0];

    let options = SubscribeOptions {
        ack_wait: Duration::from_secs(1),
        max_deliver: 3,
        ..Default::default()
    };
    let mut sub = store
        .subscribe(
            "worker",
            &store.context_filter(EventContext::Signup),
            options,
        )
        .await
        .unwrap();
    for attempt in 1..=3u64 {
        let d = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(d.event.sequence, seq);
        assert_eq!(
            d.delivery_count(),
            attempt,
            "each ack-wait expiry redelivers"
        );
        // Deliberately neither ack nor nak: the handler "hung".
        drop(d);
    }
    let dead_letters = store.dead_letters().await.unwrap();
    let letter = testkit::within(Duration::from_secs(30), || async {
        dead_letters.get("worker", seq).await.unwrap()
    })
    .await
    .expect("after max_deliver the event is recorded as a dead letter");
    assert_eq!(letter.event_type, "TenantRequested");
    assert_eq!(letter.tenant_id, tenant);
    assert_eq!(letter.deliveries, 3);
    // Still retrievable from the log.
    let event = store
        .get(seq)
        .await
        .unwrap()
        .expect("dead-lettered event stays in the stream");
    assert_eq!(event.tenant_id, tenant);

    // An operator retries it: the running subscription gets it again and can settle it.
    dead_letters.retry("worker", seq).await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(20), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.event.sequence, seq);
    d.ack().await.unwrap();
    assert!(dead_letters.get("worker", seq).await.unwrap().is_none());
    store.destroy().await.unwrap();
}

#[tokio::test]
async fn a_failing_handler_dead_letters_on_its_last_attempt() {
    let store = store().await;
    let tenant = Uuid::now_v7().to_string();
    let subject = store.subject(EventContext::Signup, &tenant);
    let seq = store
        .append(&subject, 0, vec![requested(&tenant)])
        .await
        .unwrap()[0];
    let options = SubscribeOptions {
        max_deliver: 2,
        ..Default::default()
    };
    let mut sub = store
        .subscribe("failing", &store.all_filter(), options)
        .await
        .unwrap();
    let d = sub.next().await.unwrap().unwrap();
    assert!(!d.is_last_attempt());
    d.fail("bench unreachable", Duration::from_millis(10))
        .await
        .unwrap();
    let d = sub.next().await.unwrap().unwrap();
    assert_eq!(d.delivery_count(), 2);
    assert!(d.is_last_attempt());
    d.fail("bench unreachable", Duration::from_millis(10))
        .await
        .unwrap();
    let letter = store
        .dead_letters()
        .await
        .unwrap()
        .get("failing", seq)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(letter.error, "bench unreachable");
    store.destroy().await.unwrap();
}

#[tokio::test]
async fn replay_yields_every_event_once_in_order_then_ends() {
    let store = store().await;
    let mut appended = Vec::new();
    for i in 0..60 {
        let tenant = format!("tenant-{}", i % 7);
        let subject = store.subject(
            if i % 2 == 0 {
                EventContext::Signup
            } else {
                EventContext::Provisioning
            },
            &tenant,
        );
        let version = store.version(&subject).await.unwrap();
        appended.extend(
            store
                .append(&subject, version, vec![site_created(&tenant)])
                .await
                .unwrap(),
        );
    }
    let mut replay = store.replay(&store.all_filter(), 1).await.unwrap();
    assert_eq!(replay.total(), 60);
    let mut seen = Vec::new();
    while let Some(e) = replay.next().await {
        seen.push(e.unwrap().sequence);
    }
    assert_eq!(seen, appended);

    // From a later sequence, only the rest.
    let tail = store
        .replay(&store.all_filter(), appended[50])
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(
        tail.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        appended[50..].to_vec()
    );

    // An empty filter ends at once.
    let none = store
        .replay(&store.tenant_filter("nobody"), 1)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert!(none.is_empty());
    store.destroy().await.unwrap();
}

#[tokio::test]
async fn ensure_stream_is_idempotent() {
    let store = store().await;
    store.ensure_stream().await.unwrap();
    store.ensure_stream().await.unwrap();
    let again = EventStore::connect(store.config()).await.unwrap();
    assert_eq!(again.stream_name(), store.stream_name());
    store.destroy().await.unwrap();
}

mod tracing_context {
    use super::*;
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;

    #[tokio::test(flavor = "current_thread")]
    async fn the_appending_span_is_the_parent_on_the_consuming_side() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let tracer = provider.tracer("test");
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
        let _guard = tracing::subscriber::set_default(subscriber);

        let store = store().await;
        let tenant = Uuid::now_v7().to_string();
        let subject = store.subject(EventContext::Signup, &tenant);
        let span = tracing::info_span!("signup");
        let expected = {
            let _entered = span.enter();
            eventstore::current_trace_context()
                .span()
                .span_context()
                .clone()
        };
        assert!(expected.is_valid());
        store
            .append(&subject, 0, vec![requested(&tenant)])
            .instrument(span.clone())
            .await
            .unwrap();

        let mut sub = store
            .subscribe("traced", &store.all_filter(), SubscribeOptions::default())
            .await
            .unwrap();
        let d = sub.next().await.unwrap().unwrap();
        let parent = d.event.trace_context();
        let remote = parent.span().span_context().clone();
        assert_eq!(remote.trace_id(), expected.trace_id());
        assert_eq!(remote.span_id(), expected.span_id());
        assert!(remote.is_remote());
        d.ack().await.unwrap();
        store.destroy().await.unwrap();
    }
}

#[tokio::test]
async fn a_drifted_consumer_and_stream_are_brought_back_to_what_this_version_needs() {
    use async_nats::jetstream::{consumer::pull, stream};
    let store = store().await;
    let js = store.jetstream();
    // An older deployment (or a hand edit) left a consumer that may reorder on redelivery and
    // a stream with a short duplicate window.
    let s = js.get_stream(store.stream_name()).await.unwrap();
    s.create_consumer(pull::Config {
        durable_name: Some("ordered".into()),
        filter_subject: store.all_filter(),
        ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
        max_ack_pending: 64,
        max_deliver: 5,
        ack_wait: Duration::from_secs(30),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut info = js.get_stream(store.stream_name()).await.unwrap();
    let mut drifted = info.info().await.unwrap().config.clone();
    drifted.duplicate_window = Duration::from_secs(5);
    js.update_stream(drifted).await.unwrap();

    store.ensure_stream().await.unwrap();
    let _sub = store
        .subscribe(
            "ordered",
            &store.all_filter(),
            SubscribeOptions {
                max_ack_pending: 1,
                ..SubscribeOptions::default()
            },
        )
        .await
        .unwrap();
    let s = js.get_stream(store.stream_name()).await.unwrap();
    let consumer = s.consumer_info("ordered").await.unwrap();
    assert_eq!(consumer.config.max_ack_pending, 1);
    let mut now = js.get_stream(store.stream_name()).await.unwrap();
    let config: stream::Config = now.info().await.unwrap().config.clone();
    assert_eq!(config.duplicate_window, Duration::from_secs(120));

    // What JetStream cannot change in place is refused, naming the setting.
    let kv_stream = format!("KV_{}", store.bucket_name("PINNED"));
    js.create_stream(stream::Config {
        name: kv_stream,
        subjects: vec![format!("$KV.{}.>", store.bucket_name("PINNED"))],
        storage: stream::StorageType::Memory,
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let err = store.key_value("PINNED", 1, "pinned").await.unwrap_err();
    assert!(err.to_string().contains("storage"), "{err}");
}
