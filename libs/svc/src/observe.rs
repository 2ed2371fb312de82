//! Every gRPC call as a trace span and in the metrics: the server side continues the caller's
//! trace (W3C `traceparent` in the request metadata) and counts requests by method and code
//! with a latency histogram; the client side writes the current span's context into the
//! metadata of its calls.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tonic::Code;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: String,
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    service: String,
    method: String,
}

type Durations = Family<MethodLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 1 ms … ~33 s: a directory read to a signup waiting on a slow vault.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// A tower layer for a tonic server: one span and one count per call. Add it first (outermost)
/// so what it measures is what the caller waited for — except behind grpc-web, which it must
/// follow to see gRPC status codes.
#[derive(Clone)]
pub struct ObserveLayer {
    service: Arc<str>,
    requests: Family<RequestLabels, Counter>,
    durations: Durations,
}

impl ObserveLayer {
    /// Observes the calls of Tenantry service `service` (the `service` label), reporting into
    /// `metrics` (`tenantry_grpc_server_requests_total`, `tenantry_grpc_server_duration_seconds`).
    pub fn new(service: &str, metrics: &Metrics) -> Self {
        Self {
            service: Arc::from(service),
            requests: metrics.shared(
                "grpc_server_requests",
                "gRPC calls served, by Tenantry service, method and status code",
                Family::default,
            ),
            durations: metrics.shared(
                "grpc_server_duration_seconds",
                "Time to answer a gRPC call (for a stream: to its first answer), by method",
                || Durations::new_with_constructor(duration_histogram),
            ),
        }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observed {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service wrapped by [`ObserveLayer`].
#[derive(Clone)]
pub struct Observed<S> {
    inner: S,
    layer: ObserveLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, R> tower::Service<http::Request<B>> for Observed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The instance that was polled ready serves this call; the clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // Bounded: the path is the caller's to choose (an unknown one is relabelled below).
        let method: String = request
            .uri()
            .path()
            .trim_start_matches('/')
            .chars()
            .take(128)
            .collect();
        let (rpc_service, rpc_method) = method.split_once('/').unwrap_or((&method, ""));
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %method,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %rpc_service,
            rpc.method = %rpc_method,
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            tenantry.service = %self.layer.service,
        );
        let parent = TraceContextPropagator::new().extract(&HttpExtractor(request.headers()));
        // No OpenTelemetry layer (a test's subscriber) is fine: the span is a plain one then.
        let _ = span.set_parent(parent);
        let future = span.in_scope(|| inner.call(request));
        // Recorded when the call ends — or when it is dropped unfinished: tonic's timeout and
        // a client hanging up drop this future, and those calls count too.
        let mut record = Record {
            layer: self.layer.clone(),
            method,
            span: span.clone(),
            started: Instant::now(),
            code: None,
        };
        Box::pin(async move {
            let result = future.instrument(span).await;
            record.finish(match &result {
                // Errors travel trailers-only, in the headers; a success's status is in the
                // trailers, which only an OK call has when the headers carry none.
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(Code::Ok, Code::from_i32),
                Err(_) => Code::Unknown,
            });
            result
        })
    }
}

/// One call's measurement, taken when it is dropped.
struct Record {
    layer: ObserveLayer,
    method: String,
    span: tracing::Span,
    started: Instant,
    /// `None` while unfinished.
    code: Option<Code>,
}

impl Record {
    fn finish(&mut self, code: Code) {
        self.code = Some(code);
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // Unfinished: the deadline passed (tonic's timeout) or the client went away.
        let code = self.code.unwrap_or(Code::Cancelled);
        self.span.record("rpc.grpc.status_code", code as i32);
        if server_error(code) {
            self.span.record("otel.status_code", "ERROR");
        }
        // A path no service serves is answered Unimplemented by tonic itself: one series for
        // all of them, or every probe of a made-up path would add one.
        let method = if code == Code::Unimplemented {
            "unknown".to_owned()
        } else {
            std::mem::take(&mut self.method)
        };
        let service = self.layer.service.to_string();
        self.layer
            .requests
            .get_or_create(&RequestLabels {
                service: service.clone(),
                method: method.clone(),
                code: code_name(code).to_owned(),
            })
            .inc();
        self.layer
            .durations
            .get_or_create(&MethodLabels { service, method })
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// The codes OpenTelemetry's gRPC conventions count as a server's own failure.
fn server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// The name of a gRPC status code as operators read it (`OK`, `InvalidArgument`, …).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

struct HttpExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HttpExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Writes the current span's trace context (`traceparent`, `tracestate`) into a call's
/// metadata, so the server's span continues this trace.
pub fn inject_context(metadata: &mut MetadataMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(metadata));
}

/// A tonic interceptor for clients: [`inject_context`] on every call.
// A plain function pointer keeps the intercepted client's type nameable.
pub fn propagate(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    inject_context(request.metadata_mut());
    Ok(request)
}

/// The same headers for a plain HTTP client (REST calls to a site, to Authentik).
pub fn inject_http(headers: &mut http::HeaderMap) {
    struct HttpInjector<'a>(&'a mut http::HeaderMap);
    impl Injector for HttpInjector<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(key.as_bytes()),
                http::HeaderValue::from_str(&value),
            ) {
                self.0.insert(k, v);
            }
        }
    }
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HttpInjector(headers));
}
