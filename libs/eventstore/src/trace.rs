//! W3C trace context across NATS: injected on append, extracted on delivery, so one signup
//! is one trace across every service.

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        [crate::headers::TRACEPARENT, crate::headers::TRACESTATE]
            .into_iter()
            .filter(|k| self.0.get(*k).is_some())
            .collect()
    }
}

/// The OpenTelemetry context of the current `tracing` span.
pub fn current_trace_context() -> opentelemetry::Context {
    tracing::Span::current().context()
}

/// Writes `traceparent`/`tracestate` for the current span into `headers`.
// The W3C propagator is used directly (not the global one) so the wire format never depends
// on whether a service configured a global propagator.
pub(crate) fn inject_current(headers: &mut HeaderMap) {
    TraceContextPropagator::new()
        .inject_context(&current_trace_context(), &mut HeaderInjector(headers));
}

/// The remote parent context carried in `headers` (empty when there is none).
pub fn extract_trace_context(headers: &HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}
