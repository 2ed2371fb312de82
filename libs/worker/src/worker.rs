//! The consumer loop: one message per permit, a lease per key, in-progress acks, a deadline,
//! and re-subscription when the stream or consumer goes away.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use eventstore::{Delivery, EventStore, RecordedEvent, StoreError, SubscribeOptions};
use svc::consumers::ConsumerMetrics;
use svc::{ReadinessPart, Shutdown};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::Lease;
use crate::lease::{Acquire, LeaseError, Leases};

/// How one durable consumer of a worker service runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Durable consumer name, shared by every instance of the service.
    pub durable: String,
    /// Subject filter (one per consumer on nats-server 2.9).
    pub filter: String,
    /// Ack wait, `max_deliver`, `max_ack_pending` of the durable consumer.
    pub subscribe: SubscribeOptions,
    /// Longest a handler may run on one delivery before it is abandoned (and redelivered).
    pub deadline: Duration,
    /// First nak delay after a transient failure; doubles per delivery up to `retry_max`.
    pub retry_initial: Duration,
    /// Longest nak delay after a transient failure.
    pub retry_max: Duration,
    /// How long one pull waits for a message.
    pub fetch_wait: Duration,
    /// How long a delivery waits in this process for its key's lease before it is handed back
    /// (nak'd until the lease frees up).
    pub lease_wait: Duration,
    /// How long in-flight work may finish after shutdown before it is abandoned to redelivery.
    pub shutdown_grace: Duration,
}

impl WorkerConfig {
    /// Defaults for a work consumer of `filter` named `durable`.
    pub fn new(durable: impl Into<String>, filter: impl Into<String>) -> Self {
        Self {
            durable: durable.into(),
            filter: filter.into(),
            subscribe: SubscribeOptions {
                ack_wait: Duration::from_secs(60),
                // Waits (a tenant busy elsewhere, "not yet") spend deliveries too; with their
                // stretching delays this is hours of waiting before anything is dead-lettered.
                max_deliver: 500,
                backoff: Vec::new(),
                max_ack_pending: 1000,
                ..SubscribeOptions::default()
            },
            deadline: Duration::from_secs(30 * 60),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            fetch_wait: Duration::from_secs(5),
            lease_wait: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
        }
    }

    /// How long a delivery that must wait (its key leased elsewhere, "not yet") is handed back
    /// for: what the handler asked, stretched by how often it already waited (one second per
    /// delivery, up to a minute), so a long wait spends few deliveries.
    fn wait_delay(&self, asked: Duration, delivered: u64) -> Duration {
        let stretched = Duration::from_secs(delivered.min(60));
        asked
            .max(stretched)
            .clamp(Duration::from_millis(500), Duration::from_secs(60))
    }

    fn retry_delay(&self, delivered: u64) -> Duration {
        let doublings = u32::try_from(delivered.saturating_sub(1).min(16)).unwrap_or(16);
        self.retry_initial
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.retry_max)
    }
}

/// What a handler did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Handled (or nothing to do): acknowledge.
    Done,
    /// Not possible yet (e.g. the tenant is still being provisioned): ask again after this.
    Later(Duration),
}

/// Why a handler failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkError {
    /// Worth another delivery after a back-off (our infrastructure, a timeout).
    #[error("{0}")]
    Transient(String),
    /// Another delivery will not help: dead-letter it once, for an operator.
    #[error("{0}")]
    Permanent(String),
    /// The key's lease was lost mid-work: another instance has it now.
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

/// One delivery handed to a handler.
#[derive(Debug, Clone)]
pub struct Work {
    /// The event.
    pub event: RecordedEvent,
    /// The lease of the event's key, held for the whole handling.
    pub lease: Option<Arc<Lease>>,
    /// How many times this event has been delivered to this consumer (1 the first time).
    pub delivered: u64,
    /// Whether a transient failure now makes the event a dead letter.
    pub last_attempt: bool,
}

impl Work {
    /// Proves the lease is still ours (call right before every side effect and append).
    pub async fn fence(&self) -> Result<(), LeaseError> {
        match &self.lease {
            Some(l) => l.check().await,
            None => Ok(()),
        }
    }
}

/// A worker service's reaction to its events.
pub trait Handler: Send + Sync + 'static {
    /// The lease key of an event (its tenant, usually); `None` handles it without a lease.
    fn lease_key(&self, event: &RecordedEvent) -> Option<String>;

    /// Handles one delivery.
    fn handle(&self, work: Work) -> impl Future<Output = Result<Outcome, WorkError>> + Send;
}

/// One durable consumer and the tasks working on its deliveries.
pub struct Worker<H> {
    config: WorkerConfig,
    store: EventStore,
    handler: Arc<H>,
    leases: Option<Leases>,
    permits: Arc<Semaphore>,
    metrics: Option<ConsumerMetrics>,
}

impl<H: Handler> Worker<H> {
    /// A worker for `config` on `store`, handing deliveries to `handler`; `leases` (if any) is
    /// where the per-key leases live, `permits` bounds how many deliveries run at once in this
    /// instance (shared by a service's consumers).
    pub fn new(
        config: WorkerConfig,
        store: EventStore,
        handler: Arc<H>,
        leases: Option<Leases>,
        permits: Arc<Semaphore>,
    ) -> Self {
        Self {
            config,
            store,
            handler,
            leases,
            permits,
            metrics: None,
        }
    }

    /// Reports this consumer's progress, redeliveries and dead letters into `metrics`.
    pub fn with_metrics(mut self, metrics: ConsumerMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Consumes until `shutdown`; `ready` is up while subscribed. Returns an error only for a
    /// configuration JetStream refuses (start-up must stop and say so).
    pub async fn run(self, ready: ReadinessPart, shutdown: Shutdown) -> Result<(), StoreError> {
        let config = Arc::new(self.config);
        let watch = self.metrics.as_ref().map(|m| {
            m.watch(
                self.store.clone(),
                &config.durable,
                Duration::from_secs(5),
                shutdown.clone(),
            )
        });
        let mut tasks = JoinSet::new();
        let mut subscription = None;
        let mut resubscribe_delay = Duration::from_millis(200);
        while !shutdown.is_triggered() {
            while tasks.try_join_next().is_some() {}
            let sub = match &mut subscription {
                Some(s) => s,
                None => {
                    match self
                        .store
                        .subscribe(&config.durable, &config.filter, config.subscribe.clone())
                        .await
                    {
                        Ok(s) => {
                            tracing::info!(durable = %config.durable, filter = %config.filter, "consuming");
                            ready.set(true);
                            resubscribe_delay = Duration::from_millis(200);
                            subscription.insert(s)
                        }
                        Err(e) if e.is_transient() => {
                            ready.set(false);
                            tracing::warn!(durable = %config.durable, error = %e, "cannot subscribe; retrying");
                            tokio::select! {
                                _ = shutdown.wait() => break,
                                _ = tokio::time::sleep(resubscribe_delay) => {}
                            }
                            resubscribe_delay = (resubscribe_delay * 2).min(Duration::from_secs(5));
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            // A permit before pulling: a busy instance leaves messages to idle ones.
            let permit = tokio::select! {
                p = Arc::clone(&self.permits).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = shutdown.wait() => break,
            };
            let next = tokio::select! {
                n = sub.next_one(config.fetch_wait) => n,
                _ = shutdown.wait() => break,
            };
            match next {
                Ok(None) => {}
                Ok(Some(delivery)) => {
                    if let Some(m) = &self.metrics {
                        m.delivered(&config.durable, delivery.delivery_count());
                    }
                    let span = consume_span(&config.durable, &delivery);
                    let handler = Arc::clone(&self.handler);
                    let leases = self.leases.clone();
                    let config = Arc::clone(&config);
                    let shutdown = shutdown.clone();
                    tasks.spawn(async move {
                        process(
                            &config,
                            handler.as_ref(),
                            leases,
                            delivery,
                            permit,
                            shutdown,
                        )
                        .instrument(span)
                        .await;
                    });
                }
                // Undecodable: dead-lettered by the subscription; the consumer itself is fine.
                Err(e @ (StoreError::Decode(_) | StoreError::Invalid(_))) => {
                    tracing::warn!(durable = %config.durable, error = %e, "skipped an undecodable event");
                }
                Err(e) => {
                    ready.set(false);
                    tracing::warn!(durable = %config.durable, error = %e, "subscription lost; subscribing again");
                    subscription = None;
                }
            }
        }
        ready.set(false);
        // In-flight deliveries get the grace period; what is left is abandoned and redelivered
        // after ack_wait (handlers resume from the recorded state).
        let drained = tokio::time::timeout(config.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(durable = %config.durable, "shutdown grace passed; abandoning in-flight work to redelivery");
            tasks.abort_all();
        }
        if let Some(w) = watch {
            w.abort();
        }
        Ok(())
    }
}

/// The span of one delivery: a child of the span that appended the event (its `traceparent`),
/// so a tenant's whole life is one trace across services.
pub fn consume_span(durable: &str, delivery: &Delivery) -> tracing::Span {
    let event = &delivery.event;
    let span = tracing::info_span!(
        "consume",
        otel.name = %format!("{durable} {}", event.event_type),
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.consumer.group.name = %durable,
        messaging.message.id = %event.event_id,
        tenant = %event.tenant_id,
        event = %event.event_type,
        sequence = event.sequence,
        delivered = delivery.delivery_count(),
    );
    // Without an OpenTelemetry layer (a test's subscriber) the span is a plain one.
    let _ = span.set_parent(event.trace_context());
    span
}

async fn process<H: Handler>(
    config: &WorkerConfig,
    handler: &H,
    leases: Option<Leases>,
    delivery: Delivery,
    _permit: OwnedSemaphorePermit,
    shutdown: Shutdown,
) {
    let delivery = Arc::new(delivery);
    // Keeps the delivery alive while the handler works (bench commands take minutes).
    let ticker = {
        let d = Arc::clone(&delivery);
        let every = config.subscribe.ack_wait / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = d.in_progress().await {
                    tracing::debug!(error = %e, "in-progress ack failed");
                }
            }
        })
    };
    let event = &delivery.event;
    let lease = match (&leases, handler.lease_key(event)) {
        (Some(leases), Some(key)) => {
            match leases
                .acquire_within(&key, config.lease_wait, Duration::from_millis(100))
                .await
            {
                Ok(Acquire::Acquired(l)) => Some(Arc::new(l)),
                Ok(Acquire::Held { holder, free_in }) => {
                    ticker.abort();
                    let delay = config.wait_delay(free_in, delivery.delivery_count());
                    tracing::debug!(key, %holder, ?delay, "key leased elsewhere; handing the delivery back");
                    settle(
                        &delivery,
                        hand_back(
                            &delivery,
                            delay,
                            "its key stayed leased by another instance",
                        )
                        .await,
                    );
                    return;
                }
                Err(e) => {
                    ticker.abort();
                    tracing::warn!(key, error = %e, "cannot take a lease; handing the delivery back");
                    settle(&delivery, delivery.nak(Some(Duration::from_secs(1))).await);
                    return;
                }
            }
        }
        _ => None,
    };
    let work = Work {
        event: event.clone(),
        lease: lease.clone(),
        delivered: delivery.delivery_count(),
        last_attempt: delivery.is_last_attempt(),
    };
    let lost = async {
        match &lease {
            Some(l) => l.lost().await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        r = tokio::time::timeout(config.deadline, handler.handle(work)) => match r {
            Ok(r) => r,
            Err(_) => Err(WorkError::Transient(format!(
                "handling took longer than the {:?} deadline", config.deadline
            ))),
        },
        () = lost => Err(WorkError::Lease(LeaseError::Lost(
            lease.as_ref().map(|l| l.key().to_owned()).unwrap_or_default(),
        ))),
    };
    ticker.abort();
    // A delivery handed back may come straight back, here or to another instance: its key is
    // freed first, or the redelivery finds it still leased (by this very delivery) and waits
    // the lease out. A finished one is acked first, so no duplicate starts while it settles.
    let done = matches!(result, Ok(Outcome::Done));
    let mut lease = lease;
    if !done {
        release(lease.take()).await;
    }
    let settled = match &result {
        Ok(Outcome::Done) => delivery.ack().await,
        Ok(Outcome::Later(delay)) => {
            let delay = config.wait_delay(*delay, delivery.delivery_count());
            hand_back(&delivery, delay, "it was never possible yet (Later)").await
        }
        Err(WorkError::Transient(m)) => {
            let delay = if shutdown.is_triggered() {
                Duration::ZERO
            } else {
                config.retry_delay(delivery.delivery_count())
            };
            tracing::warn!(event = %event.event_type, tenant = %event.tenant_id, delivered = delivery.delivery_count(), error = %m, "handling failed; will be redelivered");
            delivery.fail(m, delay).await
        }
        Err(WorkError::Permanent(m)) => {
            tracing::error!(event = %event.event_type, tenant = %event.tenant_id, error = %m, "handling failed for good; dead-lettered");
            delivery.term(m).await
        }
        // Another instance holds the key now and works on it; this delivery comes back later.
        Err(WorkError::Lease(e)) => {
            tracing::warn!(event = %event.event_type, error = %e, "lease lost mid-work");
            hand_back(
                &delivery,
                Duration::from_secs(1),
                "its lease kept being lost",
            )
            .await
        }
    };
    settle(&delivery, settled);
    release(lease).await;
}

async fn release(lease: Option<Arc<Lease>>) {
    if let Some(lease) = lease
        && let Ok(lease) = Arc::try_unwrap(lease)
        && let Err(e) = lease.release().await
    {
        tracing::debug!(error = %e, "could not release a lease; it will expire");
    }
}

/// Hands a delivery back for later; on its last allowed delivery it becomes a dead letter
/// (recorded here, not left to an advisory nobody may be listening to), so nothing waits
/// forever unseen.
async fn hand_back(delivery: &Delivery, delay: Duration, why: &str) -> Result<(), StoreError> {
    if delivery.is_last_attempt() {
        tracing::error!(event = %delivery.event.event_type, tenant = %delivery.event.tenant_id, why, "giving up on a delivery; dead-lettered");
        delivery
            .term(&format!(
                "not handled after {} deliveries: {why}",
                delivery.delivery_count()
            ))
            .await
    } else {
        delivery.nak(Some(delay)).await
    }
}

fn settle(delivery: &Delivery, result: Result<(), StoreError>) {
    if let Err(e) = result {
        tracing::warn!(sequence = delivery.event.sequence, error = %e, "could not settle a delivery; it will be redelivered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let mut c = WorkerConfig::new("d", "f");
        c.retry_initial = Duration::from_millis(100);
        c.retry_max = Duration::from_secs(1);
        let delays: Vec<_> = (1..=6).map(|n| c.retry_delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(c.retry_delay(u64::MAX), Duration::from_secs(1));
    }
}
