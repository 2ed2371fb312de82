//! A trace as people read it, and the one structural check every trace test wants.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use crate::{Span, SpanKind};

/// The attributes [`render_tree`] shows after a span's name, when the span has them; the rest
/// would drown the shape of the trace.
pub const KEY_ATTRIBUTES: &[&str] = &[
    "tenant",
    "tenant.id",
    "event",
    "messaging.destination.name",
    "rpc.grpc.status_code",
    "error.type",
];

/// Renders the span tree of each trace in `spans`, children indented under their parent and
/// siblings in start order, one line per span:
///
/// ```text
/// trace 4bf92f3577b34da6a3ce929d0e0e4736
/// signup  tenantry.signup.v1.Signup/Signup [server] rpc.grpc.status_code=0  (12.3 ms)
///   signup  append [producer] event=TenantRequested  (1.2 ms)
/// ```
///
/// A span whose parent is not in `spans` is shown as a root, marked `[parent … missing]`.
pub fn render_tree(spans: &[Span]) -> String {
    let mut traces: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
    for span in spans {
        traces.entry(&span.trace_id).or_default().push(span);
    }
    let mut traces: Vec<Vec<&Span>> = traces.into_values().collect();
    traces.sort_by_key(|t| t.iter().map(|s| s.start_unix_nanos).min());

    let mut out = String::new();
    for trace in traces {
        let _ = writeln!(out, "trace {}", trace[0].trace_id);
        let ids: HashSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
        let mut children: HashMap<&str, Vec<&Span>> = HashMap::new();
        let mut roots = Vec::new();
        for span in &trace {
            match span.parent_span_id.as_deref() {
                Some(parent) if ids.contains(parent) => {
                    children.entry(parent).or_default().push(span)
                }
                _ => roots.push(*span),
            }
        }
        by_start(&mut roots);
        for siblings in children.values_mut() {
            by_start(siblings);
        }
        for root in roots {
            let missing = root.parent_span_id.as_deref();
            render(&mut out, root, 0, missing, &children);
        }
    }
    out
}

fn by_start(spans: &mut [&Span]) {
    spans.sort_by(|a, b| {
        (a.start_unix_nanos, &a.name, &a.span_id).cmp(&(b.start_unix_nanos, &b.name, &b.span_id))
    });
}

fn render(
    out: &mut String,
    span: &Span,
    depth: usize,
    missing_parent: Option<&str>,
    children: &HashMap<&str, Vec<&Span>>,
) {
    let _ = write!(
        out,
        "{:indent$}{}  {}",
        "",
        span.service,
        span.name,
        indent = depth * 2
    );
    if !matches!(span.kind, SpanKind::Internal | SpanKind::Unspecified) {
        let _ = write!(out, " [{}]", span.kind.as_str());
    }
    for key in KEY_ATTRIBUTES {
        if let Some(value) = span.attribute(key) {
            let _ = write!(out, " {key}={value}");
        }
    }
    if span.status_code == 2 {
        out.push_str(" ERROR");
    }
    let _ = write!(out, "  ({})", duration(span));
    if let Some(parent) = missing_parent {
        let _ = write!(out, "  [parent {parent} missing]");
    }
    out.push('\n');
    for child in children.get(span.span_id.as_str()).into_iter().flatten() {
        render(out, child, depth + 1, None, children);
    }
}

fn duration(span: &Span) -> String {
    let micros = span.duration().as_micros();
    match micros {
        0..1_000 => format!("{micros} µs"),
        1_000..1_000_000 => format!("{:.1} ms", micros as f64 / 1e3),
        _ => format!("{:.2} s", micros as f64 / 1e6),
    }
}

/// `Ok` when every span of `spans` is a root or has its parent in `spans` (same trace);
/// otherwise the broken links, one per line, with the spans' names.
pub fn check_links(spans: &[Span]) -> Result<(), String> {
    let present: HashSet<(&str, &str)> = spans
        .iter()
        .map(|s| (s.trace_id.as_str(), s.span_id.as_str()))
        .collect();
    let broken: Vec<String> = spans
        .iter()
        .filter_map(|s| {
            let parent = s.parent_span_id.as_deref()?;
            (!present.contains(&(s.trace_id.as_str(), parent))).then(|| {
                format!(
                    "{} {:?} ({}) in trace {}: parent {parent} is not among the spans",
                    s.service, s.name, s.span_id, s.trace_id
                )
            })
        })
        .collect();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(broken.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: Option<&str>, name: &str, start_ms: u64, end_ms: u64) -> Span {
        Span {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
            span_id: id.to_owned(),
            parent_span_id: parent.map(str::to_owned),
            name: name.to_owned(),
            service: "signup".to_owned(),
            kind: SpanKind::Internal,
            attributes: BTreeMap::new(),
            start_unix_nanos: start_ms * 1_000_000,
            end_unix_nanos: end_ms * 1_000_000,
            status_code: 0,
            links: Vec::new(),
        }
    }

    #[test]
    fn children_are_indented_under_their_parent_in_start_order() {
        let mut root = span("00000000000000a1", None, "Signup", 0, 12);
        root.kind = SpanKind::Server;
        root.attributes
            .insert("rpc.grpc.status_code".to_owned(), "0".to_owned());
        let spans = [
            span("00000000000000b2", Some("00000000000000a1"), "second", 5, 6),
            span("00000000000000b1", Some("00000000000000a1"), "first", 1, 3),
            span("00000000000000c1", Some("00000000000000b1"), "nested", 2, 2),
            root,
        ];
        assert_eq!(
            render_tree(&spans),
            "trace 4bf92f3577b34da6a3ce929d0e0e4736\n\
             signup  Signup [server] rpc.grpc.status_code=0  (12.0 ms)\n\
             \x20 signup  first  (2.0 ms)\n\
             \x20   signup  nested  (0 µs)\n\
             \x20 signup  second  (1.0 ms)\n"
        );
        assert_eq!(check_links(&spans), Ok(()));
    }

    #[test]
    fn a_span_whose_parent_is_missing_is_a_marked_root() {
        let spans = [span(
            "00000000000000b1",
            Some("00000000000000a1"),
            "orphan",
            0,
            1,
        )];
        assert!(
            render_tree(&spans)
                .contains("signup  orphan  (1.0 ms)  [parent 00000000000000a1 missing]")
        );
        let broken = check_links(&spans).unwrap_err();
        assert!(broken.contains("parent 00000000000000a1"), "{broken}");
    }
}
