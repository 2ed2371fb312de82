//! Waiting for a tenant's events the way a test reads them: a subject loaded until it holds
//! what is expected, or a panic listing what it does hold.

use std::time::Duration;

use eventstore::{EventContext, EventStore, RecordedEvent};

/// The tenant's events on one context's subject (none when it has none yet).
pub async fn tenant_events(
    store: &EventStore,
    context: EventContext,
    tenant: &str,
) -> Vec<RecordedEvent> {
    store
        .load(&store.subject(context, tenant))
        .await
        .unwrap_or_default()
}

/// Waits up to `limit` until the tenant's `context` subject holds `n` events of type `ty`;
/// returns that subject's events, or panics with every event it does hold, summarised.
pub async fn wait_for_events(
    store: &EventStore,
    context: EventContext,
    tenant: &str,
    ty: &str,
    n: usize,
    limit: Duration,
) -> Vec<RecordedEvent> {
    let found = crate::within(limit, || async {
        let events = tenant_events(store, context, tenant).await;
        (events.iter().filter(|e| e.event_type == ty).count() >= n).then_some(events)
    })
    .await;
    if let Some(events) = found {
        return events;
    }
    let held: Vec<String> = tenant_events(store, context, tenant)
        .await
        .iter()
        .map(|e| format!("{}: {}", e.event_type, tenancy::summarize(&e.body)))
        .collect();
    panic!("no {n}× {ty} for {tenant} on {context:?} after {limit:?}: {held:#?}")
}
