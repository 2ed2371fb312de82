//! OTLP's nested protobuf spans flattened into what a test asserts on.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1 as proto;

/// One received span, with ids as lowercase hex (as in W3C `traceparent` and in JSON logs).
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; `None` for a root span.
    pub parent_span_id: Option<String>,
    /// The exported name (tracing-opentelemetry's `otel.name` when set).
    pub name: String,
    /// The `service.name` resource attribute of the process that sent the span.
    pub service: String,
    /// Server, client, producer, …
    pub kind: SpanKind,
    /// Every attribute, its value rendered as text (arrays as `[a, b]`).
    pub attributes: BTreeMap<String, String>,
    /// When the span started, nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// When the span ended, nanoseconds since the Unix epoch.
    pub end_unix_nanos: u64,
    /// OTLP `Status.code`: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    /// The spans it links to (follows from), as (trace id, span id) in hex.
    pub links: Vec<(String, String)>,
}

impl Span {
    /// How long the span lasted.
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.end_unix_nanos.saturating_sub(self.start_unix_nanos))
    }

    /// Attribute `key` as text, if the span has it.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// OTLP `Span.SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Not set by the sender (also any value this crate does not know).
    Unspecified,
    /// An operation inside one process.
    Internal,
    /// Handling a remote call (a gRPC server span).
    Server,
    /// Making a remote call.
    Client,
    /// Sending a message (appending an event to NATS).
    Producer,
    /// Handling a message.
    Consumer,
}

impl SpanKind {
    fn from_proto(kind: i32) -> Self {
        match proto::span::SpanKind::try_from(kind) {
            Ok(proto::span::SpanKind::Internal) => Self::Internal,
            Ok(proto::span::SpanKind::Server) => Self::Server,
            Ok(proto::span::SpanKind::Client) => Self::Client,
            Ok(proto::span::SpanKind::Producer) => Self::Producer,
            Ok(proto::span::SpanKind::Consumer) => Self::Consumer,
            Ok(proto::span::SpanKind::Unspecified) | Err(_) => Self::Unspecified,
        }
    }

    /// Lowercase, as tracing-opentelemetry's `otel.kind` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Internal => "internal",
            Self::Server => "server",
            Self::Client => "client",
            Self::Producer => "producer",
            Self::Consumer => "consumer",
        }
    }
}

/// The spans of one export call, each tagged with its resource's service name.
pub(crate) fn from_request(request: ExportTraceServiceRequest) -> Vec<Span> {
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map_or_else(|| "unknown_service".to_owned(), text);
        for scope_spans in resource_spans.scope_spans {
            spans.extend(
                scope_spans
                    .spans
                    .into_iter()
                    .map(|span| from_proto(span, &service)),
            );
        }
    }
    spans
}

fn from_proto(span: proto::Span, service: &str) -> Span {
    Span {
        trace_id: hex(&span.trace_id),
        span_id: hex(&span.span_id),
        parent_span_id: (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id)),
        name: span.name,
        service: service.to_owned(),
        kind: SpanKind::from_proto(span.kind),
        attributes: attributes(&span.attributes),
        start_unix_nanos: span.start_time_unix_nano,
        end_unix_nanos: span.end_time_unix_nano,
        status_code: span.status.map_or(0, |s| s.code),
        links: span
            .links
            .iter()
            .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
            .collect(),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(text).unwrap_or_default(),
            )
        })
        .collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => hex(b),
        Some(Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(text).collect();
            format!("[{}]", items.join(", "))
        }
        Some(Value::KvlistValue(l)) => {
            let items: Vec<String> = l
                .values
                .iter()
                .map(|kv| {
                    format!(
                        "{}={}",
                        kv.key,
                        kv.value.as_ref().map(text).unwrap_or_default()
                    )
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        // A reference into a dictionary this receiver is never sent (profiles only).
        Some(Value::StringValueStrindex(i)) => format!("#{i}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
