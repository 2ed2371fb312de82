//! Prometheus metrics registry shared by a service's parts.

use std::sync::{Arc, Mutex};

use prometheus_client::{encoding::text::encode, registry::Registry};

/// A cloneable handle to one Prometheus registry. Services register their counters and
/// histograms here; the admin server renders it at `/metrics`.
#[derive(Clone, Default)]
pub struct Metrics {
    // A mutex because registration happens at start-up from several tasks; rendering is rare.
    registry: Arc<Mutex<Registry>>,
}

impl Metrics {
    /// An empty registry with a `tenantry` prefix.
    pub fn new() -> Self {
        Self {
            registry: Arc::new(Mutex::new(Registry::with_prefix("tenantry"))),
        }
    }

    /// Registers a metric.
    pub fn register<M>(&self, name: &str, help: &str, metric: M)
    where
        M: prometheus_client::registry::Metric,
    {
        if let Ok(mut r) = self.registry.lock() {
            r.register(name, help, metric);
        }
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = encode(&mut out, &r);
        }
        out
    }
}
