//! What a service's log lines and exported spans look like, through the subscriber `init`
//! installs (built with `svc::telemetry::subscriber`, scoped to each test).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde_json::Value;
use svc::TelemetryArgs;
use svc::args::LogFormat;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::MakeWriter;

/// Log output kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn args(log_format: LogFormat, otlp_endpoint: Option<String>) -> TelemetryArgs {
    TelemetryArgs {
        log_format,
        otlp_endpoint,
    }
}

/// Runs `f` under the service subscriber and returns what it logged.
fn logged<T>(args: &TelemetryArgs, f: impl FnOnce() -> T) -> (String, T) {
    let captured = Captured::default();
    let (subscriber, _guard) =
        svc::telemetry::subscriber("signup", args, captured.clone()).expect("subscriber");
    let out = tracing::subscriber::with_default(subscriber, f);
    (captured.text(), out)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn line<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["message"] == message)
        .unwrap_or_else(|| panic!("no line {message:?} in {lines:#?}"))
}

/// The OpenTelemetry (trace id, span id) of `span`, as hex.
fn otel_ids(span: &tracing::Span) -> (String, String) {
    let cx = span.context();
    let otel = cx.span();
    let ids = otel.span_context();
    assert!(ids.is_valid(), "span {span:?} has no OpenTelemetry ids");
    (ids.trace_id().to_string(), ids.span_id().to_string())
}

fn ids_of(line: &Value) -> (String, String) {
    (
        line["trace_id"].as_str().expect("trace_id").to_owned(),
        line["span_id"].as_str().expect("span_id").to_owned(),
    )
}

#[test]
fn json_lines_in_a_span_carry_its_opentelemetry_ids_and_others_none() {
    let (text, (parent, child)) = logged(&args(LogFormat::Json, None), || {
        tracing::info!("before");
        let parent = tracing::info_span!("signup", tenant = "acme");
        let child = parent.in_scope(|| {
            tracing::info!("inside");
            let child = tracing::info_span!("reserve");
            child.in_scope(|| tracing::info!("in child"));
            child
        });
        tracing::info!(parent: &parent, "explicit parent");
        tracing::info!("after");
        (otel_ids(&parent), otel_ids(&child))
    });
    let lines = json_lines(&text);

    for outside in ["before", "after"] {
        let l = line(&lines, outside);
        assert!(
            l.get("trace_id").is_none() && l.get("span_id").is_none(),
            "{l}"
        );
    }
    assert_eq!(ids_of(line(&lines, "inside")), parent);
    assert_eq!(ids_of(line(&lines, "explicit parent")), parent);
    assert_eq!(ids_of(line(&lines, "in child")), child);
    assert_eq!(child.0, parent.0, "one trace");
    assert_eq!(parent.0.len(), 32);
    assert_eq!(parent.1.len(), 16);

    // The rest of the line is tracing-subscriber's JSON, unchanged.
    let inside = line(&lines, "inside");
    assert_eq!(inside["level"], "INFO");
    assert_eq!(inside["span"]["name"], "signup");
    assert_eq!(inside["span"]["tenant"], "acme");
    assert!(inside["timestamp"].is_string());
    assert_eq!(inside["spans"][0]["name"], "signup");
}

#[test]
fn a_callers_traceparent_is_continued_without_a_collector() {
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let (text, ids) = logged(&args(LogFormat::Json, None), || {
        let span = tracing::info_span!("grpc.server");
        span.set_parent(TraceContextPropagator::new().extract(&carrier))
            .expect("not yet started");
        span.in_scope(|| tracing::info!("handled"));
        otel_ids(&span)
    });
    let (trace_id, span_id) = ids_of(line(&json_lines(&text), "handled"));
    assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(
        span_id, "00f067aa0ba902b7",
        "a new span of the caller's trace"
    );
    assert_eq!((trace_id, span_id), ids);
}

#[test]
fn pretty_lines_are_unchanged() {
    let (text, ()) = logged(&args(LogFormat::Pretty, None), || {
        tracing::info_span!("signup").in_scope(|| tracing::info!("inside"));
    });
    assert!(text.contains("inside"), "{text}");
    assert!(!text.contains("trace_id"), "{text}");
}

// Multi-threaded: the batch exporter's thread blocks on a gRPC call that the runtime must
// drive while the test waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_ids_are_the_ids_of_the_exported_spans() -> anyhow::Result<()> {
    let receiver = otlp_fake::Receiver::start().await?;
    let captured = Captured::default();
    let (subscriber, guard) = svc::telemetry::subscriber(
        "signup",
        &args(LogFormat::Json, Some(receiver.endpoint())),
        captured.clone(),
    )?;
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("Signup", otel.kind = "server").in_scope(|| {
            tracing::info!("accepted");
            tracing::info_span!("reserve").in_scope(|| tracing::info!("reserved"));
        });
    });
    // Dropping the guard flushes the batch; it blocks until the collector answers.
    tokio::task::spawn_blocking(move || drop(guard)).await?;
    let spans = receiver
        .wait_for(|spans| spans.len() >= 2, Duration::from_secs(10))
        .await
        .expect("both spans exported");
    eprintln!("{}", otlp_fake::render_tree(&spans));

    let lines = json_lines(&captured.text());
    let (trace_id, parent_id) = ids_of(line(&lines, "accepted"));
    let (child_trace, child_id) = ids_of(line(&lines, "reserved"));
    let parent = spans.iter().find(|s| s.name == "Signup").expect("parent");
    let child = spans.iter().find(|s| s.name == "reserve").expect("child");
    assert_eq!((&parent.trace_id, &parent.span_id), (&trace_id, &parent_id));
    assert_eq!((&child.trace_id, &child.span_id), (&child_trace, &child_id));
    assert_eq!(child.parent_span_id.as_ref(), Some(&parent_id));
    assert_eq!(parent.service, "signup");
    assert_eq!(parent.kind, otlp_fake::SpanKind::Server);
    otlp_fake::check_links(&spans).map_err(anyhow::Error::msg)?;
    Ok(())
}

/// Re-runs itself with `OTEL_TRACES_SAMPLER=always_off`: the environment can only be set
/// for a child process (`set_var` is unsafe), and the SDK reads it when a provider is built.
#[test]
fn the_sampler_is_the_one_otel_traces_sampler_names() {
    const NAME: &str = "the_sampler_is_the_one_otel_traces_sampler_names";
    if std::env::var("OTEL_TRACES_SAMPLER").as_deref() == Ok("always_off") {
        let (text, sampled) = logged(&args(LogFormat::Json, None), || {
            let span = tracing::info_span!("signup");
            span.in_scope(|| tracing::info!("inside"));
            span.context().span().span_context().is_sampled()
        });
        assert!(!sampled, "always_off samples nothing");
        // Not sampled, still identified: the log line keeps its trace id.
        ids_of(line(&json_lines(&text), "inside"));
        return;
    }
    let run = std::process::Command::new(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--test-threads=1"])
        .env("OTEL_TRACES_SAMPLER", "always_off")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "the always_off run failed:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    // `--exact` matching nothing would pass vacuously.
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("1 passed"),
        "the always_off run ran no test:\n{}",
        String::from_utf8_lossy(&run.stdout)
    );

    if std::env::var_os("OTEL_TRACES_SAMPLER").is_some() {
        return;
    }
    let (_, sampled) = logged(&args(LogFormat::Json, None), || {
        tracing::info_span!("signup")
            .context()
            .span()
            .span_context()
            .is_sampled()
    });
    assert!(
        sampled,
        "by default (parentbased_always_on) a root span is sampled"
    );
}
