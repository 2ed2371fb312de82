use std::time::Duration;

/// Where the event store lives and how its stream is shaped.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// NATS server(s), e.g. `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// Isolates a deployment or a test: prefixes the stream (`<ns>_TENANTRY_EVENTS`), the
    /// subjects (`<ns>.tenantry.…`) and KV buckets. Empty in production.
    pub namespace: String,
    /// Stream replicas: 1 in dev, 3 in production.
    pub replicas: usize,
    /// How long JetStream remembers event ids for de-duplication.
    pub duplicate_window: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            namespace: String::new(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

impl StoreConfig {
    /// Config for a NATS URL, other fields default.
    pub fn new(nats_url: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            ..Self::default()
        }
    }

    /// The same config in another namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// `<ns>_<name>` or `<name>`.
    pub(crate) fn prefixed_name(&self, name: &str) -> String {
        if self.namespace.is_empty() {
            name.to_owned()
        } else {
            format!("{}_{name}", self.namespace)
        }
    }

    /// `<ns>.<subject>` or `<subject>`.
    pub(crate) fn prefixed_subject(&self, subject: &str) -> String {
        if self.namespace.is_empty() {
            subject.to_owned()
        } else {
            format!("{}.{subject}", self.namespace)
        }
    }
}
