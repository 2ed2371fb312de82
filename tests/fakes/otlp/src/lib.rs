//! otlp-fake: an in-process OTLP/gRPC trace receiver, the test double of an OpenTelemetry
//! collector.
//!
//! Tests that claim "one signup is one trace across every service" need somewhere to send the
//! spans and something to read them back from; no collector (nor Jaeger, nor Tempo) runs where
//! the tests do. [`Receiver::start`] serves OTLP's `TraceService/Export` on `127.0.0.1:0`;
//! point a service's `OTEL_EXPORTER_OTLP_ENDPOINT` at [`Receiver::endpoint`], then assert on
//! the [`Span`]s it collected with [`check_links`] and show them with [`render_tree`].

mod span;
mod tree;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

pub use span::{Span, SpanKind};
pub use tree::{KEY_ATTRIBUTES, check_links, render_tree};

/// How often [`Receiver::wait_for`] looks at what has arrived.
const POLL: Duration = Duration::from_millis(20);

/// A running OTLP trace receiver; it stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    spans: Collected,
    server: JoinHandle<()>,
}

// A std mutex: the gRPC handler and the test's readers only push or copy under it, never
// across an `.await`.
type Collected = Arc<Mutex<Vec<Span>>>;

impl Receiver {
    /// Binds `127.0.0.1:0` and serves `opentelemetry.proto.collector.trace.v1.TraceService`
    /// on it until the receiver is dropped.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("failed to bind the OTLP receiver to 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let spans = Collected::default();
        let service = TraceServiceServer::new(Collector {
            spans: Arc::clone(&spans),
        });
        let server = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
            if let Err(e) = served {
                eprintln!("otlp-fake: the receiver on {addr} stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            spans,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`, the value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        lock(&self.spans).clone()
    }

    /// The received spans of trace `trace_id` (32 hex digits).
    pub fn trace(&self, trace_id: &str) -> Vec<Span> {
        lock(&self.spans)
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }

    /// Waits until `done` holds for the spans received so far and returns them, or `None`
    /// after `timeout`. Exporters batch, so a test cannot know when its spans arrive.
    pub async fn wait_for(
        &self,
        done: impl Fn(&[Span]) -> bool,
        timeout: Duration,
    ) -> Option<Vec<Span>> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return Some(spans);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// A test that panicked while holding the lock must not hide what was collected from the
// assertions of the others.
fn lock(spans: &Collected) -> MutexGuard<'_, Vec<Span>> {
    spans
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Collector {
    spans: Collected,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = span::from_request(request.into_inner());
        lock(&self.spans).extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}
