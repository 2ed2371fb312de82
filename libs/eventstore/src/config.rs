use std::time::Duration;

/// Where the event store lives and how its stream is shaped.
#[derive(Clone)]
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

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("nats_url", &redact(&self.nats_url))
            .field("namespace", &self.namespace)
            .field("replicas", &self.replicas)
            .field("duplicate_window", &self.duplicate_window)
            .finish()
    }
}

/// The URL without credentials (NATS URLs may carry a token or user:password).
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
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
