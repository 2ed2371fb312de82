//! Prometheus metrics registry shared by a service's parts.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::{encoding::text::encode, registry::Registry};

/// A cloneable handle to one Prometheus registry. Services register their counters and
/// histograms here; the admin server renders it at `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    // A mutex because registration happens at start-up from several tasks; rendering is rare.
    registry: Mutex<Registry>,
    // Families several parts of one process share (gRPC servers, consumers): in `tenantry dev`
    // every service reports into one registry, and a family may be registered only once.
    shared: Mutex<HashMap<String, Box<dyn Any + Send + Sync>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry with a `tenantry` prefix.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(Registry::with_prefix("tenantry")),
                shared: Mutex::default(),
            }),
        }
    }

    /// Registers a metric.
    pub fn register<M>(&self, name: &str, help: &str, metric: M)
    where
        M: prometheus_client::registry::Metric,
    {
        if let Ok(mut r) = self.inner.registry.lock() {
            r.register(name, help, metric);
        }
    }

    /// The metric registered under `name` by [`Metrics::shared`], or a new one from `make`,
    /// registered now. Every part of a process that reports the same family gets the same
    /// handle, so the family appears once however many services one process hosts.
    pub fn shared<M>(&self, name: &str, help: &str, make: impl FnOnce() -> M) -> M
    where
        M: prometheus_client::registry::Metric + Clone + Send + Sync + 'static,
    {
        let mut shared = self.inner.shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = shared.get(name).and_then(|m| m.downcast_ref::<M>()) {
            return m.clone();
        }
        let metric = make();
        self.register(name, help, metric.clone());
        shared.insert(name.to_owned(), Box::new(metric.clone()));
        metric
    }

    /// The registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.inner.registry.lock() {
            let _ = encode(&mut out, &r);
        }
        out
    }
}
