//! What the read model tells an operator: how far it is behind the log, how many tenants are
//! in each status, and how long the oldest tenant still being provisioned has waited (the
//! "provisioning stuck" signal, seen across every provisioner instance at once).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventstore::EventStore;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use svc::Shutdown;

use crate::{ConsumerStats, Store};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

type Seconds = Gauge<f64, AtomicU64>;

/// The statuses a tenant waits in before its site is ready.
const IN_PROGRESS: [&str; 2] = ["requested", "provisioning"];

/// Handles to the projection's metrics.
#[derive(Clone, Default)]
pub struct ProjectionMetrics {
    lag: Gauge,
    tenants: Family<StatusLabels, Gauge>,
    oldest: Seconds,
    // The statuses reported so far: one no tenant has any more must read 0, not its last count.
    seen: Arc<Mutex<BTreeSet<String>>>,
}

impl ProjectionMetrics {
    /// The projection's families, registered in `metrics`; `stats` is the consumer's counts.
    pub fn register(metrics: &svc::Metrics, stats: &Arc<ConsumerStats>) -> Self {
        let m = Self::default();
        metrics.register(
            "projection_lag_events",
            "Events in the log the read model has not applied yet (stream last sequence - checkpoint)",
            m.lag.clone(),
        );
        metrics.register(
            "projection_tenants",
            "Tenants in the read model by status",
            m.tenants.clone(),
        );
        metrics.register(
            "projection_oldest_provisioning_seconds",
            "Age of the oldest tenant still requested or provisioning (0 when none)",
            m.oldest.clone(),
        );
        metrics.register(
            "projection_events_applied",
            "Events this instance applied to the read model",
            Applied(Arc::clone(stats)),
        );
        m
    }

    /// Refreshes the figures every `every` until `shutdown` (a failed read keeps the last
    /// figures; the readiness probes report the outage).
    pub fn watch(
        &self,
        store: Store,
        events: EventStore,
        every: Duration,
        shutdown: Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        let m = self.clone();
        tokio::spawn(async move {
            loop {
                if let (Ok(last), Ok(checkpoint)) =
                    (events.last_sequence().await, store.checkpoint().await)
                {
                    m.lag
                        .set(i64::try_from(last.saturating_sub(checkpoint)).unwrap_or(i64::MAX));
                }
                if let Ok(rows) = store.status_counts().await {
                    m.set_statuses(&rows);
                }
                tokio::select! {
                    () = shutdown.wait() => break,
                    () = tokio::time::sleep(every) => {}
                }
            }
        })
    }

    fn set_statuses(&self, rows: &[(String, i64, f64)]) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for status in seen.iter() {
            self.tenants
                .get_or_create(&StatusLabels {
                    status: status.clone(),
                })
                .set(0);
        }
        let mut oldest: f64 = 0.0;
        for (status, count, age) in rows {
            let status = status.to_lowercase();
            if IN_PROGRESS.contains(&status.as_str()) {
                oldest = oldest.max(*age);
            }
            seen.insert(status.clone());
            self.tenants
                .get_or_create(&StatusLabels { status })
                .set(*count);
        }
        self.oldest.set(oldest);
    }
}

/// The consumer's applied count, read when scraped.
#[derive(Debug)]
struct Applied(Arc<ConsumerStats>);

impl prometheus_client::encoding::EncodeMetric for Applied {
    fn encode(
        &self,
        encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        ConstCounter::new(self.0.applied.load(Ordering::Relaxed)).encode(encoder)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Counter
    }
}
