//! The admin HTTP server: `/healthz` (process alive), `/readyz` (dependencies reachable, not
//! shutting down) and `/metrics` (Prometheus text).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use tokio::net::TcpListener;

use crate::{Metrics, Shutdown};

/// Whether the service is ready to take work: the service says so ([`Readiness::set`]) and
/// every part it registered (a consumer, a dependency) is ready. Starts not ready.
#[derive(Clone, Default, Debug)]
pub struct Readiness(Arc<ReadinessInner>);

#[derive(Default, Debug)]
struct ReadinessInner {
    ready: AtomicBool,
    // A plain mutex: a few map operations, never held across an await.
    parts: Mutex<BTreeMap<String, bool>>,
}

impl Readiness {
    /// Marks the service ready (or not).
    pub fn set(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::Release);
    }

    /// A part that must be ready too (registered as not ready yet), e.g. one consumer.
    pub fn part(&self, name: impl Into<String>) -> ReadinessPart {
        let name = name.into();
        self.parts().insert(name.clone(), false);
        ReadinessPart {
            readiness: self.clone(),
            name,
        }
    }

    fn parts(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, bool>> {
        // A poisoned map is still a valid map of flags.
        self.0.parts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether it is ready.
    pub fn is_ready(&self) -> bool {
        self.0.ready.load(Ordering::Acquire) && self.parts().values().all(|r| *r)
    }

    /// What is not ready, for `/readyz` and logs.
    pub fn not_ready(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .parts()
            .iter()
            .filter(|(_, ready)| !**ready)
            .map(|(name, _)| name.clone())
            .collect();
        if !self.0.ready.load(Ordering::Acquire) {
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
        self.readiness.parts().insert(self.name.clone(), ready);
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
