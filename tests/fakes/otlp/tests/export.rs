//! The receiver against the real exporter: what `opentelemetry-otlp` sends over gRPC is what
//! a test reads back.

use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use otlp_fake::{Receiver, check_links, render_tree};

fn provider(endpoint: String) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder_empty()
                .with_service_name("signup")
                .build(),
        )
        .build())
}

// Multi-threaded: the batch exporter's thread blocks on a gRPC call that the runtime must
// drive while the test waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_and_its_child_arrive_linked() -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let provider = provider(receiver.endpoint())?;
    let tracer = provider.tracer("otlp-fake-test");

    let parent = tracer
        .span_builder("Signup")
        .with_kind(SpanKind::Server)
        .with_attributes([KeyValue::new("rpc.grpc.status_code", 0)])
        .start(&tracer);
    let cx = Context::current_with_span(parent);
    let mut child = tracer.start_with_context("reserve-subdomain", &cx);
    let child_ids = child.span_context().clone();
    child.end();
    let parent_ids = cx.span().span_context().clone();
    cx.span().end();

    let flushing = provider.clone();
    tokio::task::spawn_blocking(move || flushing.force_flush()).await??;
    let spans = receiver
        .wait_for(|spans| spans.len() >= 2, Duration::from_secs(10))
        .await
        .expect("the exporter sent both spans");

    let trace_id = parent_ids.trace_id().to_string();
    assert_eq!(receiver.trace(&trace_id).len(), 2);
    let parent = spans.iter().find(|s| s.name == "Signup").expect("parent");
    let child = spans
        .iter()
        .find(|s| s.name == "reserve-subdomain")
        .expect("child");
    assert_eq!(parent.trace_id, trace_id);
    assert_eq!(parent.span_id, parent_ids.span_id().to_string());
    assert_eq!(parent.parent_span_id, None);
    assert_eq!(parent.service, "signup");
    assert_eq!(parent.kind, otlp_fake::SpanKind::Server);
    assert_eq!(parent.attribute("rpc.grpc.status_code"), Some("0"));
    assert_eq!(child.trace_id, trace_id);
    assert_eq!(child.span_id, child_ids.span_id().to_string());
    assert_eq!(
        child.parent_span_id.as_deref(),
        Some(parent.span_id.as_str())
    );
    assert!(child.start_unix_nanos >= parent.start_unix_nanos);
    assert!(child.end_unix_nanos <= parent.end_unix_nanos);
    check_links(&spans).map_err(anyhow::Error::msg)?;

    let tree = render_tree(&spans);
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines.len(), 3, "{tree}");
    assert_eq!(lines[0], format!("trace {trace_id}"));
    assert!(
        lines[1].starts_with("signup  Signup [server] rpc.grpc.status_code=0  ("),
        "{tree}"
    );
    assert!(
        lines[2].starts_with("  signup  reserve-subdomain  ("),
        "{tree}"
    );

    tokio::task::spawn_blocking(move || provider.shutdown()).await??;
    Ok(())
}

#[tokio::test]
async fn the_receiver_stops_listening_when_dropped() -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let addr = receiver.endpoint().trim_start_matches("http://").to_owned();
    tokio::net::TcpStream::connect(&addr).await?;
    drop(receiver);
    // Aborting the server task closes the listener the next time the runtime runs it.
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("{addr} still accepts connections")
}
