//! The admin HTTP server: `/healthz` (process alive), `/readyz` (dependencies reachable, not
//! shutting down) and `/metrics` (Prometheus text).

use std::{
    collections::BTreeMap,
    future::Future,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use tokio::net::TcpListener;

use crate::{Metrics, Shutdown};

/// Whether the service is ready to take work: the service says so ([`Readiness::set`]) and
/// every part it registered (a consumer, a dependency) is ready. Starts not ready.
#[derive(Clone, Default, Debug)]
pub struct Readiness {
    inner: Arc<ReadinessInner>,
    // Set on a service's share of a process's readiness: its `set` is then its own part.
    scope: Option<String>,
}

#[derive(Default, Debug)]
struct ReadinessInner {
    ready: AtomicBool,
    // A plain mutex: a few map operations, never held across an await. `None` is ready,
    // `Some(why)` is not.
    parts: Mutex<BTreeMap<String, Option<String>>>,
}

impl Readiness {
    /// Marks the service ready (or not).
    pub fn set(&self, ready: bool) {
        match &self.scope {
            None => self.inner.ready.store(ready, Ordering::Release),
            Some(service) => {
                self.parts()
                    .insert(service.clone(), (!ready).then(|| "starting".to_owned()));
            }
        }
    }

    /// `service`'s share of this readiness (one process hosting several services): its
    /// [`Readiness::set`] marks part `service` (registered not ready), so one service cannot
    /// answer for the others.
    pub fn scoped(&self, service: &str) -> Readiness {
        self.parts()
            .insert(service.to_owned(), Some("starting".to_owned()));
        Readiness {
            inner: Arc::clone(&self.inner),
            scope: Some(service.to_owned()),
        }
    }

    /// A part that must be ready too (registered as not ready yet), e.g. one consumer.
    pub fn part(&self, name: impl Into<String>) -> ReadinessPart {
        let name = name.into();
        self.parts()
            .insert(name.clone(), Some("not checked yet".to_owned()));
        ReadinessPart {
            readiness: self.clone(),
            name,
        }
    }

    fn parts(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Option<String>>> {
        // A poisoned map is still a valid map of flags.
        self.inner.parts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether it is ready.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire) && self.parts().values().all(Option::is_none)
    }

    /// What is not ready, for `/readyz` and logs.
    pub fn not_ready(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .parts()
            .iter()
            .filter_map(|(name, why)| match why.as_deref() {
                None => None,
                Some("") => Some(name.clone()),
                Some(why) => Some(format!("{name} ({why})")),
            })
            .collect();
        if !self.inner.ready.load(Ordering::Acquire) {
            out.insert(0, "service".to_owned());
        }
        out
    }
}

/// One part of a service's readiness. Dropping it removes the part.
#[derive(Debug)]
pub struct ReadinessPart {
    readiness: Readiness,
    name: String,
}

impl ReadinessPart {
    /// Marks this part ready (or not).
    pub fn set(&self, ready: bool) {
        self.readiness
            .parts()
            .insert(self.name.clone(), (!ready).then(String::new));
    }

    /// Marks this part ready (`Ok`) or not, saying why (shown by `/readyz`).
    pub fn report(&self, check: Result<(), String>) {
        self.readiness
            .parts()
            .insert(self.name.clone(), check.err());
    }
}

/// How often a service re-checks what it depends on: NATS going away shows within this.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Keeps part `name` of `readiness` up to date with `check`, run every `every` until
/// `shutdown` (each run bounded by `every`, at least a second: a dependency that hangs is as
/// unready as one that refuses). Returns the watching task.
pub fn probe<F, Fut>(
    readiness: &Readiness,
    name: impl Into<String>,
    every: Duration,
    shutdown: Shutdown,
    mut check: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let part = readiness.part(name);
    let limit = every.max(Duration::from_secs(1));
    tokio::spawn(async move {
        loop {
            let result = match tokio::time::timeout(limit, check()).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {limit:?}")),
            };
            part.report(result);
            tokio::select! {
                () = shutdown.wait() => break,
                () = tokio::time::sleep(every) => {}
            }
        }
    })
}

/// What a service reports through an admin port: whether it is ready, and its metrics.
#[derive(Clone, Default)]
pub struct AdminHandle {
    /// The readiness `/readyz` answers from.
    pub readiness: Readiness,
    /// The registry `/metrics` renders.
    pub metrics: Metrics,
}

impl std::fmt::Debug for AdminHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminHandle")
            .field("ready", &self.readiness.is_ready())
            .finish_non_exhaustive()
    }
}

/// A service's admin port: its own (bound by [`Admin::open`]), or a share of the one its
/// embedding process serves (`tenantry dev` runs every service behind one port).
pub struct Admin {
    handle: AdminHandle,
    server: Option<AdminServer>,
    // Set when the port is shared: parts are then named after their service.
    service: Option<String>,
}

impl Admin {
    /// Binds `addr` for `service`, unless `shared` names the embedding process's admin port to
    /// report into.
    pub async fn open(
        addr: SocketAddr,
        shared: Option<AdminHandle>,
        service: &str,
    ) -> std::io::Result<Self> {
        match shared {
            Some(handle) => Ok(Self {
                handle: AdminHandle {
                    readiness: handle.readiness.scoped(service),
                    metrics: handle.metrics,
                },
                server: None,
                service: Some(service.to_owned()),
            }),
            None => {
                let handle = AdminHandle {
                    readiness: Readiness::default(),
                    metrics: Metrics::new(),
                };
                let server =
                    AdminServer::bind(addr, handle.readiness.clone(), handle.metrics.clone())
                        .await?;
                Ok(Self {
                    handle,
                    server: Some(server),
                    service: None,
                })
            }
        }
    }

    /// The name of readiness part `what` (`nats`, `postgres`): as is on a port of its own,
    /// `<service> <what>` on a shared one, where several services check the same thing.
    pub fn part_name(&self, what: &str) -> String {
        match &self.service {
            Some(service) => format!("{service} {what}"),
            None => what.to_owned(),
        }
    }

    /// Keeps readiness part `what` (named per [`Admin::part_name`]) up to date with `check`,
    /// every `every` until `shutdown` (see [`probe`]).
    pub fn probe<F, Fut>(
        &self,
        what: &str,
        every: Duration,
        shutdown: Shutdown,
        check: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send,
    {
        probe(
            self.readiness(),
            self.part_name(what),
            every,
            shutdown,
            check,
        )
    }

    /// Readiness part `nats`: not ready while `store`'s connection is down (reconnecting).
    pub fn probe_nats(
        &self,
        store: &eventstore::EventStore,
        shutdown: Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        let store = store.clone();
        self.probe("nats", PROBE_EVERY, shutdown, move || {
            std::future::ready(if store.is_connected() {
                Ok(())
            } else {
                Err("NATS connection down; reconnecting".to_owned())
            })
        })
    }

    /// The readiness this service reports into.
    pub fn readiness(&self) -> &Readiness {
        &self.handle.readiness
    }

    /// The registry this service registers its metrics in.
    pub fn metrics(&self) -> &Metrics {
        &self.handle.metrics
    }

    /// The bound address of its own port (`None` when it reports into a shared one).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// Serves its own port until `shutdown` (the embedding process serves a shared one).
    pub fn serve(&mut self, shutdown: Shutdown) -> tokio::task::JoinHandle<std::io::Result<()>> {
        match self.server.take() {
            Some(server) => tokio::spawn(server.serve(shutdown)),
            None => tokio::spawn(async { Ok(()) }),
        }
    }
}

impl Drop for ReadinessPart {
    fn drop(&mut self) {
        self.readiness.parts().remove(&self.name);
    }
}

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    metrics: Metrics,
}

/// A bound admin listener (bind first so port conflicts fail at start-up).
pub struct AdminServer {
    listener: TcpListener,
    readiness: Readiness,
    metrics: Metrics,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(
        addr: SocketAddr,
        readiness: Readiness,
        metrics: Metrics,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            readiness,
            metrics,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`; readiness drops to false as soon as shutdown begins.
    pub async fn serve(self, shutdown: Shutdown) -> std::io::Result<()> {
        let state = AdminState {
            readiness: self.readiness.clone(),
            metrics: self.metrics,
        };
        let app = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(state);
        let readiness = self.readiness;
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move {
                shutdown.wait().await;
                readiness.set(false);
            })
            .await
    }
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.readiness.is_ready() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", s.readiness.not_ready().join(", ")),
        )
    }
}

/// What `/metrics` sends: prometheus-client writes OpenMetrics text (`_total` counters, `# EOF`),
/// and Prometheus picks its parser by this header — under the 0.0.4 text type it would split
/// each counter into `unknown` families.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        s.metrics.render(),
    )
}
