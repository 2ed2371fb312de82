//! The live consumer: one durable JetStream consumer over `tenantry.>` feeding the active
//! generation, one event per transaction.
//!
//! Ordering: `max_ack_pending = 1`, so JetStream hands out the next event only after the
//! previous one was acknowledged — even across redeliveries and several instances sharing the
//! durable. That makes "skip anything at or below the checkpoint" a correct idempotence rule:
//! a crash after the commit and before the ack redelivers an event the checkpoint already
//! covers, and it is acknowledged without being applied again.
//!
//! Failures: applying is total (the domain fold never fails), so the only errors are database
//! ones, which are transient. They are retried here with back-off, keeping the delivery alive
//! with in-progress acks, instead of being nak'd toward a dead letter: a dead-lettered event
//! would leave a hole in the read model that only a rebuild could fill.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use eventstore::{EventStore, RecordedEvent, SubscribeOptions};
use svc::{Readiness, Shutdown};

use crate::apply::{Applied, apply_batch};
use crate::behind;
use crate::error::Error;
use crate::store::{Store, active_in};

/// Default durable consumer name.
pub const DEFAULT_DURABLE: &str = "projection-tenants";

/// Counters of what the consumer did (for tests, metrics and logs).
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Events applied.
    pub applied: AtomicU64,
    /// Redelivered events skipped because the checkpoint covered them.
    pub skipped: AtomicU64,
    /// The last checkpoint the consumer committed.
    pub checkpoint: AtomicU64,
}

/// The subscription settings of the projection's durable consumer.
pub fn subscribe_options(ack_wait: Duration) -> SubscribeOptions {
    SubscribeOptions {
        ack_wait,
        // Database errors are retried in-process, so deliveries only repeat after a crash;
        // twenty crashes on one event mean something is badly wrong — dead-letter it and let
        // an operator look (a rebuild heals the read model afterwards).
        max_deliver: 20,
        backoff: Vec::new(),
        max_ack_pending: 1,
        ..SubscribeOptions::default()
    }
}

/// Applies one event to the active generation in its own transaction. The share lock on the
/// active pointer makes a rebuild's flip wait for this transaction, and this one wait for a flip.
pub async fn handle(store: &Store, event: &RecordedEvent) -> Result<Applied, Error> {
    let mut tx = store.pool().begin().await?;
    let g = active_in(&mut tx, store.base_schema(), true).await?;
    let applied = apply_batch(&mut tx, &g, std::slice::from_ref(event), true).await?;
    tx.commit().await?;
    Ok(applied)
}

/// What the live consumer works with.
pub struct Consumer {
    /// The read model.
    pub store: Store,
    /// The event log.
    pub events: EventStore,
    /// The durable consumer's name.
    pub durable: String,
    /// How long a delivery may stay unacknowledged.
    pub ack_wait: Duration,
    /// Counters of what it did.
    pub stats: Arc<ConsumerStats>,
    /// Ready while subscribed (and the model holds the log).
    pub readiness: Readiness,
    /// Closed while the model is behind the log.
    pub gate: behind::Gate,
    /// Where redeliveries are counted.
    pub metrics: svc::consumers::ConsumerMetrics,
}

/// Consumes until `shutdown`, re-subscribing if the subscription ends. Unless `checked`, it first
/// compares the read model with the log ([`behind`]), before applying anything.
pub async fn run(c: Consumer, checked: bool, shutdown: Shutdown) -> Result<(), Error> {
    let Consumer {
        store,
        events,
        durable,
        ack_wait,
        stats,
        readiness,
        gate,
        metrics,
    } = c;
    let filter = events.all_filter();
    let mut checked = checked;
    while !shutdown.is_triggered() {
        let mut sub = match events
            .subscribe(&durable, &filter, subscribe_options(ack_wait))
            .await
        {
            Ok(s) => s,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "cannot subscribe; retrying");
                readiness.set(false);
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
            Err(e) => return Err(e.into()),
        };
        // Once per start, before anything is applied (applying would move the checkpoint past
        // the floor and hide the hole).
        if !checked {
            if let Err(e) = behind::check_and_mark(&store, &events, &durable, &gate).await {
                tracing::warn!(error = %e, "cannot compare the read model with the log; retrying");
                readiness.set(false);
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
            checked = true;
        }
        readiness.set(true);
        tracing::info!(%durable, %filter, "projection consumer subscribed");
        loop {
            let next = tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                n = sub.next() => n,
            };
            let delivery = match next {
                Some(Ok(d)) => d,
                // Undecodable messages were dead-lettered by the subscription; nothing to apply.
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "skipping an event that cannot be decoded");
                    continue;
                }
                None => {
                    // Not ready until subscribed again: reads would go stale meanwhile.
                    readiness.set(false);
                    tracing::warn!("subscription ended; re-subscribing");
                    break;
                }
            };
            metrics.delivered(&durable, delivery.delivery_count());
            let span = tracing::info_span!(
                "consume",
                otel.name = %format!("{durable} {}", delivery.event.event_type),
                otel.kind = "consumer",
                messaging.system = "nats",
                messaging.consumer.group.name = %durable,
                tenant = %delivery.event.tenant_id,
                event = %delivery.event.event_type,
                sequence = delivery.event.sequence,
            );
            // Continues the trace of whoever appended the event.
            let _ = span.set_parent(delivery.event.trace_context());
            let mut backoff = Duration::from_millis(100);
            loop {
                match handle(&store, &delivery.event)
                    .instrument(span.clone())
                    .await
                {
                    Ok(applied) => {
                        stats.applied.fetch_add(applied.applied, Ordering::Relaxed);
                        stats.skipped.fetch_add(applied.skipped, Ordering::Relaxed);
                        stats
                            .checkpoint
                            .store(applied.checkpoint, Ordering::Relaxed);
                        if let Err(e) = delivery.ack().await {
                            // Harmless: the redelivery will be skipped by the checkpoint.
                            tracing::warn!(error = %e, sequence = delivery.event.sequence, "ack failed");
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, sequence = delivery.event.sequence, "cannot apply event; retrying");
                        if shutdown.is_triggered() {
                            let _ = delivery.nak(None).await;
                            return Ok(());
                        }
                        let _ = delivery.in_progress().await;
                        tokio::select! {
                            _ = shutdown.wait() => {
                                let _ = delivery.nak(None).await;
                                return Ok(());
                            }
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }
    Ok(())
}
