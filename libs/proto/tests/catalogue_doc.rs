//! The event catalogue for outside subscribers (docs/events.md) documents every event type;
//! regenerate it with `python3 docs/events.py` after changing proto/tenantry/v1/events.proto.

use proto::v1::event::Body;

#[test]
fn the_catalogue_document_has_every_event_type() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/events.md"))
        .expect("docs/events.md");
    let missing: Vec<&str> = Body::TYPE_NAMES
        .iter()
        .copied()
        .filter(|t| !doc.contains(&format!("\n### {t}\n")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/events.md lacks {missing:?}: run python3 docs/events.py"
    );
    // Every field of the proto is in it (a field added without regenerating fails here).
    let proto = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../proto/tenantry/v1/events.proto"
    ))
    .expect("events.proto");
    for line in proto.lines() {
        let line = line.trim();
        if let Some((decl, _)) = line.split_once(" = ")
            && !line.starts_with("//")
            && line.ends_with(';')
            && let Some(name) = decl.split_whitespace().last()
            && !["option", "syntax", "package", "import"]
                .iter()
                .any(|k| decl.starts_with(k))
        {
            assert!(
                doc.contains(&format!("`{name}`")) || doc.contains(&format!("body.{name}`")),
                "field {name} is not in docs/events.md: run python3 docs/events.py"
            );
        }
    }
}
