//! Tracing set-up: pretty logs locally, JSON with `LOG_FORMAT=json`, OTLP traces when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, W3C trace-context propagation always.
//!
//! Every `tracing` span is an OpenTelemetry span, exporter or not: without an endpoint the
//! spans come from a tracer provider with no exporter, so they still get ids, a caller's
//! `traceparent` is still continued and passed on, and a service without a collector does not
//! break the trace of the services around it. A JSON log line written inside a span starts
//! with that span's `trace_id` and `span_id` (lowercase hex, as exported over OTLP and carried
//! in `traceparent`), so a log search leads to the trace and a trace to its logs.
//!
//! Sampling follows the OpenTelemetry environment: `OTEL_TRACES_SAMPLER` (`always_on`,
//! `always_off`, `traceidratio`, `parentbased_always_on` — the default —,
//! `parentbased_always_off`, `parentbased_traceidratio`) with its ratio in
//! `OTEL_TRACES_SAMPLER_ARG`. opentelemetry_sdk's default tracer config reads them, and this
//! module never sets a sampler of its own. A span sampled out still has ids, so its log lines
//! still carry them; only the backend lacks the trace. An unknown sampler or a malformed ratio
//! means sampling everything, and the SDK's warning about it is lost: it comes before logging
//! is set up.
//!
//! The resource is what `OTEL_RESOURCE_ATTRIBUTES` says, with `service.name` set to the
//! service's own name and `service.instance.id` taken from `TENANTRY_INSTANCE_ID`, else
//! `OTEL_RESOURCE_ATTRIBUTES`, else `HOSTNAME` (a pod's name on Kubernetes).

use std::fmt;
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry::{Key, KeyValue};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::args::{LogFormat, TelemetryArgs};

const INSTANCE_ID: &str = "service.instance.id";

/// Keeps the tracer provider alive; dropping it flushes pending spans to the collector.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Errors setting up telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built for the configured endpoint.
    #[error("cannot build the OTLP exporter for {endpoint}: {reason}")]
    Exporter {
        /// The configured `OTEL_EXPORTER_OTLP_ENDPOINT`.
        endpoint: String,
        /// Why the exporter refused it.
        reason: String,
    },
    /// `init` ran twice, or something else installed a subscriber first.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Installs the global subscriber for `service`, logging to stdout, and the global W3C
/// propagator and tracer provider. Call once, early in `main`.
pub fn init(service: &str, args: &TelemetryArgs) -> Result<TelemetryGuard, TelemetryError> {
    let (subscriber, guard) = subscriber(service, args, std::io::stdout)?;
    subscriber
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(guard.provider.clone());
    Ok(guard)
}

/// What [`init`] installs, built but not installed, with log lines going to `writer`: for
/// tests that read what a service prints (under `tracing::subscriber::with_default`), and for
/// processes that install subscribers themselves. Sets no global state.
pub fn subscriber<W>(
    service: &str,
    args: &TelemetryArgs,
    writer: W,
) -> Result<(impl Subscriber + Send + Sync + 'static, TelemetryGuard), TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let provider = tracer_provider(service, args)?;
    let tracer = provider.tracer(service.to_owned());
    let dispatch = DispatchCell::default();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match args.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .map_event_format(|json| WithTraceIds {
                inner: json,
                dispatch: dispatch.clone(),
            })
            .with_writer(writer)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_writer(writer)
            .boxed(),
    };
    // `RUST_LOG` picks log lines only: the spans every service opens at INFO (gRPC calls,
    // deliveries, steps) carry the trace context between processes, and a quieter log level
    // must not break the trace.
    let subscriber = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        )
        .with(dispatch);
    Ok((subscriber, TelemetryGuard { provider }))
}

fn tracer_provider(
    service: &str,
    args: &TelemetryArgs,
) -> Result<SdkTracerProvider, TelemetryError> {
    // No `with_sampler`: the default config's sampler is the one OTEL_TRACES_SAMPLER asks for.
    let mut builder = SdkTracerProvider::builder();
    for resource in resources(service, |name| std::env::var(name).ok()) {
        builder = builder.with_resource(resource);
    }
    if let Some(endpoint) = args.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| TelemetryError::Exporter {
                endpoint: endpoint.to_owned(),
                reason: e.to_string(),
            })?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// The resources to merge, later ones winning: the detected one (`OTEL_RESOURCE_ATTRIBUTES`,
/// SDK attributes) named `service`, then the instance id when there is one to add.
// `var` stands for the environment so tests need not change the process's.
fn resources(service: &str, var: impl Fn(&str) -> Option<String>) -> Vec<Resource> {
    let detected = Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    let present = |name: &str| var(name).filter(|v| !v.is_empty());
    let instance = present("TENANTRY_INSTANCE_ID").or_else(|| {
        detected
            .get(&Key::from_static_str(INSTANCE_ID))
            .is_none()
            .then(|| present("HOSTNAME"))
            .flatten()
    });
    let mut resources = vec![detected];
    if let Some(id) = instance {
        resources.push(
            Resource::builder_empty()
                .with_attribute(KeyValue::new(INSTANCE_ID, id))
                .build(),
        );
    }
    resources
}

/// The dispatcher the subscriber was registered with. tracing-opentelemetry hands out a
/// span's context only given the `Dispatch`, which a log formatter is not; this layer catches
/// it at registration. Weak, because the subscriber holding its own dispatcher would never be
/// freed.
#[derive(Clone, Default)]
struct DispatchCell(Arc<OnceLock<WeakDispatch>>);

impl DispatchCell {
    /// The OpenTelemetry ids of span `id`, if it has valid ones.
    fn ids(&self, id: &tracing::span::Id) -> Option<(TraceId, SpanId)> {
        let dispatch = self.0.get()?.upgrade()?;
        let cx = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
        let span = cx.span();
        let ids = span.span_context();
        ids.is_valid().then(|| (ids.trace_id(), ids.span_id()))
    }
}

impl<S: Subscriber> Layer<S> for DispatchCell {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.0.set(subscriber.downgrade());
    }
}

/// A JSON event format with `"trace_id"` and `"span_id"` first on the line when the event
/// happens inside a span.
struct WithTraceIds<F> {
    inner: F,
    dispatch: DispatchCell,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The event's own span: the current one, or the explicit `parent:`.
        let span = ctx.parent_span().map(|span| span.id());
        let Some((trace_id, span_id)) = span.and_then(|id| self.dispatch.ids(&id)) else {
            return self.inner.format_event(ctx, writer, event);
        };
        // Formatting the line whole and splicing the ids in keeps every other field exactly
        // as tracing-subscriber's JSON format writes it.
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"
            ),
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance_id(resources: &[Resource]) -> Option<String> {
        resources
            .iter()
            .rev()
            .find_map(|r| r.get(&Key::from_static_str(INSTANCE_ID)))
            .map(|v| v.to_string())
    }

    #[test]
    fn the_instance_id_prefers_tenantry_instance_id_over_hostname() {
        let env = |name: &str| match name {
            "TENANTRY_INSTANCE_ID" => Some("signup-2".to_owned()),
            "HOSTNAME" => Some("pod-7f9c".to_owned()),
            _ => None,
        };
        assert_eq!(
            instance_id(&resources("signup", env)).as_deref(),
            Some("signup-2")
        );
    }

    #[test]
    fn the_instance_id_falls_back_to_hostname_and_is_optional() {
        let hostname = |name: &str| (name == "HOSTNAME").then(|| "pod-7f9c".to_owned());
        assert_eq!(
            instance_id(&resources("signup", hostname)).as_deref(),
            Some("pod-7f9c")
        );
        let empty = |_: &str| Some(String::new());
        let resources = resources("signup", empty);
        assert_eq!(resources.len(), 1);
        assert_eq!(
            resources[0]
                .get(&Key::from_static_str("service.name"))
                .map(|v| v.to_string())
                .as_deref(),
            Some("signup")
        );
    }
}
