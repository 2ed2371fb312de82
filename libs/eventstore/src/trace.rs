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

/// The current span's W3C `traceparent`, to keep beside work that another request will
/// continue (a signup waiting for its email code); `None` outside a trace.
pub fn current_traceparent() -> Option<String> {
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&current_trace_context(), &mut carrier);
    carrier.remove(crate::headers::TRACEPARENT)
}

/// Links the current span to the span `traceparent` names (it continues work begun in that
/// trace), so a trace viewer leads from one to the other. A malformed value links nothing.
pub fn link_current_span(traceparent: &str) {
    use opentelemetry::trace::TraceContextExt as _;
    let carrier = std::collections::HashMap::from([(
        crate::headers::TRACEPARENT.to_owned(),
        traceparent.to_owned(),
    )]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    tracing::Span::current().add_link(cx.span().span_context().clone());
}

/// The remote parent context carried in `headers` (empty when there is none).
pub fn extract_trace_context(headers: &HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}
