//! Export → wipe → import of the event stream, against real JetStream: every message comes
//! back at its old sequence with its headers and payload; a resumed import adds nothing; an
//! import into a stream holding other events writes nothing.

use std::collections::BTreeMap;

use eventstore::{Body, EventContext, EventStore, NewEvent, StoreConfig, StoreError};
use proto::v1 as pb;

fn plan_change(tenant: &str, n: usize) -> NewEvent {
    NewEvent::new(Body::PlanChangeRequested(pb::PlanChangeRequested {
        tenant_id: tenant.to_owned(),
        to_plan: format!("plan-{n}"),
        ..Default::default()
    }))
}

/// Every stored message: sequence → (subject, headers without the expectation ones, payload).
async fn snapshot(store: &EventStore) -> BTreeMap<u64, (String, Vec<(String, String)>, Vec<u8>)> {
    let mut replay = store.replay(&store.all_filter(), 1).await.unwrap();
    let mut out = BTreeMap::new();
    while let Some(m) = replay.next_raw().await {
        let m = m.unwrap();
        let mut headers: Vec<(String, String)> = m
            .headers
            .iter()
            .flat_map(|(k, vs)| {
                vs.iter()
                    .map(move |v| (k.to_string(), v.as_str().to_owned()))
            })
            .filter(|(k, _)| !k.starts_with("Nats-Expected"))
            .collect();
        headers.sort();
        out.insert(m.sequence, (m.subject, headers, m.payload.to_vec()));
    }
    out
}

#[tokio::test]
async fn export_wipe_import_reproduces_every_message_at_its_sequence() {
    let namespace = testkit::unique_namespace();
    let config = StoreConfig::new(testkit::nats_url()).with_namespace(namespace.clone());
    let store = EventStore::connect(&config).await.unwrap();
    let tenants: Vec<String> = (0..7).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    for round in 0..5 {
        for t in &tenants {
            let subject = store.subject(EventContext::Billing, t);
            let version = store.version(&subject).await.unwrap();
            store
                .append(&subject, version, vec![plan_change(t, round)])
                .await
                .unwrap();
        }
    }
    let before = snapshot(&store).await;
    assert_eq!(before.len(), 35);

    let mut file = Vec::new();
    let mut seen = Vec::new();
    let exported = store
        .export(&mut file, |done, total| seen.push((done, total)))
        .await
        .unwrap();
    assert_eq!((exported.messages, exported.last_sequence), (35, 35));
    assert_eq!(seen.last(), Some(&(35, 35)), "progress reaches the total");

    // Lost: the stream is deleted; a fresh connect makes an empty one.
    store.destroy().await.unwrap();
    let store = EventStore::connect(&config).await.unwrap();
    assert!(snapshot(&store).await.is_empty());

    let imported = store.import(&mut file.as_slice(), |_| {}).await.unwrap();
    assert_eq!((imported.messages, imported.already_there), (35, 0));
    assert_eq!(
        snapshot(&store).await,
        before,
        "same sequences, subjects, headers, payloads"
    );
    // The events decode to what was appended, and appending goes on at the right version.
    let t = &tenants[3];
    let subject = store.subject(EventContext::Billing, t);
    let events = store.load(&subject).await.unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!(store.version(&subject).await.unwrap(), events[4].sequence);
    store
        .append(&subject, events[4].sequence, vec![plan_change(t, 9)])
        .await
        .unwrap();

    // Run again (a resumed import): nothing is appended twice.
    let again = store.import(&mut file.as_slice(), |_| {}).await.unwrap();
    assert_eq!((again.messages, again.already_there), (0, 35));
    assert_eq!(snapshot(&store).await.len(), 36);
    store.destroy().await.unwrap();

    // A stream holding other events is refused before anything is written.
    let other = EventStore::connect(
        &StoreConfig::new(testkit::nats_url()).with_namespace(testkit::unique_namespace()),
    )
    .await
    .unwrap();
    for n in 0..35 {
        let t = uuid::Uuid::now_v7().to_string();
        other
            .append(
                &other.subject(EventContext::Billing, &t),
                0,
                vec![plan_change(&t, n)],
            )
            .await
            .unwrap();
    }
    let refused = other
        .import(&mut file.as_slice(), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::Invalid(m) if m.contains("already holds other events")),
        "{refused}"
    );
    assert_eq!(snapshot(&other).await.len(), 35);
    // A file with a gap is refused at the gap.
    let mut gappy: Vec<&str> = std::str::from_utf8(&file).unwrap().lines().collect();
    gappy.remove(10);
    let gappy = gappy.join("\n");
    let fresh = EventStore::connect(
        &StoreConfig::new(testkit::nats_url()).with_namespace(testkit::unique_namespace()),
    )
    .await
    .unwrap();
    let gap = fresh
        .import(&mut gappy.as_bytes(), |_| {})
        .await
        .unwrap_err();
    assert!(gap.to_string().contains("gap"), "{gap}");
    assert_eq!(
        snapshot(&fresh).await.len(),
        10,
        "everything before the gap, nothing after"
    );
    other.destroy().await.unwrap();
    fresh.destroy().await.unwrap();
}
