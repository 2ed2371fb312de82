//! What an operator wants to know about a durable consumer, as metrics: how much waits for it,
//! how much it holds, how often deliveries come back, how many dead letters wait for a person.

use std::time::Duration;

use eventstore::EventStore;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::{Metrics, Shutdown};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    consumer: String,
}

/// The consumer families of a process (shared by its consumers).
#[derive(Clone)]
pub struct ConsumerMetrics {
    pending: Family<ConsumerLabels, Gauge>,
    ack_pending: Family<ConsumerLabels, Gauge>,
    redeliveries: Family<ConsumerLabels, Counter>,
    dead_letters: Family<ConsumerLabels, Gauge>,
}

impl ConsumerMetrics {
    /// The families in `metrics` (registered on first use).
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            pending: metrics.shared(
                "consumer_pending",
                "Events matching a durable consumer's filter not yet delivered",
                Family::default,
            ),
            ack_pending: metrics.shared(
                "consumer_ack_pending",
                "Events delivered to a consumer and not yet acknowledged",
                Family::default,
            ),
            redeliveries: metrics.shared(
                "consumer_redeliveries",
                "Deliveries this process got that were not an event's first",
                Family::default,
            ),
            dead_letters: metrics.shared(
                "dead_letters",
                "Dead-letter records of a consumer waiting for an operator (tenantctl dead-letters)",
                Family::default,
            ),
        }
    }

    fn labels(consumer: &str) -> ConsumerLabels {
        ConsumerLabels {
            consumer: consumer.to_owned(),
        }
    }

    /// Counts a delivery of `consumer` that was the `delivered`-th of its event.
    pub fn delivered(&self, consumer: &str, delivered: u64) {
        if delivered > 1 {
            self.redeliveries
                .get_or_create(&Self::labels(consumer))
                .inc();
        }
    }

    /// Reads `consumer`'s progress and dead letters from JetStream every `every` until
    /// `shutdown` (a read that fails leaves the last figures: the readiness probe reports the
    /// outage).
    pub fn watch(
        &self,
        store: EventStore,
        consumer: &str,
        every: Duration,
        shutdown: Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        let metrics = self.clone();
        let labels = Self::labels(consumer);
        // Registered now, so the families show (at 0) before the first read.
        let _ = metrics.redeliveries.get_or_create(&labels);
        tokio::spawn(async move {
            let mut letters = None;
            loop {
                // Opened (and retried) here: NATS may be away when the watch starts.
                if letters.is_none() {
                    letters = store.dead_letters().await.ok();
                }
                if let Ok(Some(status)) = store.consumer(&labels.consumer).await {
                    let set = |f: &Family<ConsumerLabels, Gauge>, v: u64| {
                        f.get_or_create(&labels)
                            .set(i64::try_from(v).unwrap_or(i64::MAX));
                    };
                    set(&metrics.pending, status.pending);
                    set(&metrics.ack_pending, status.ack_pending);
                }
                if let Some(letters) = &letters
                    && let Ok(n) = letters.count(&labels.consumer).await
                {
                    metrics
                        .dead_letters
                        .get_or_create(&labels)
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                tokio::select! {
                    () = shutdown.wait() => break,
                    () = tokio::time::sleep(every) => {}
                }
            }
        })
    }
}
