//! A minimal OpenAPI 3.0 validator over the checked-in schema subset.
//!
//! It covers the keywords the subset uses (`$ref`, `type`, `nullable`, `enum`, `required`,
//! `properties`, `additionalProperties`, `items`, `allOf`, `anyOf`/`oneOf`, `min/maxLength`,
//! `minimum`/`maximum`, `pattern`, `format`) and reports errors the way DRF does: a map from the
//! top-level field to messages, root errors under `non_field_errors`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::Value;

use crate::validate::{Mode, check_root};

/// DRF-style validation errors: top-level field → messages.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// The key DRF uses for errors that belong to no single field.
pub const NON_FIELD: &str = "non_field_errors";

static SUBSET_TEXT: &str = include_str!("../schema/authentik-subset.json");

/// The parsed subset. A broken checked-in file is a build defect, so it degrades to an empty
/// document (every lookup then fails loudly in the tests) instead of panicking a request.
static SUBSET: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(SUBSET_TEXT).unwrap_or(Value::Null));

/// The embedded schema subset (for tests that want to look at it).
pub fn subset() -> &'static Value {
    &SUBSET
}

fn one(msg: String) -> FieldErrors {
    BTreeMap::from([(NON_FIELD.to_owned(), vec![msg])])
}

/// Strips a leading `/api/v3` so both the schema's and the wire's spelling work.
fn template_key(path_template: &str) -> &str {
    path_template
        .strip_prefix("/api/v3")
        .unwrap_or(path_template)
}

fn operation(method: &str, path_template: &str) -> Result<&'static Value, FieldErrors> {
    let m = method.to_ascii_lowercase();
    SUBSET
        .get("paths")
        .and_then(|p| p.get(template_key(path_template)))
        .and_then(|p| p.get(m.as_str()))
        .ok_or_else(|| {
            one(format!(
                "operation {} {path_template} is not in the schema subset",
                method.to_ascii_uppercase()
            ))
        })
}

/// Follows a `#/components/...` reference inside the subset.
pub(crate) fn resolve(reference: &str) -> Option<&'static Value> {
    let rest = reference.strip_prefix("#/")?;
    rest.split('/')
        .try_fold(&*SUBSET, |node, part| node.get(part))
}

/// Follows `$ref`s of a response or request-body object until a concrete one.
fn deref(mut node: &'static Value) -> Option<&'static Value> {
    for _ in 0..8 {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => node = resolve(r)?,
            None => return Some(node),
        }
    }
    None
}

fn json_schema(content_holder: &'static Value) -> Option<&'static Value> {
    content_holder
        .get("content")
        .and_then(|c| c.get("application/json"))
        .and_then(|c| c.get("schema"))
}

/// Checks a request body against the operation's request schema (`Patched*Request` for PATCH).
/// An operation without a request body accepts anything (DRF ignores the body there).
pub fn validate_request(
    method: &str,
    path_template: &str,
    body: &Value,
) -> Result<(), FieldErrors> {
    let op = operation(method, path_template)?;
    let Some(schema) = op.get("requestBody").and_then(deref).and_then(json_schema) else {
        return Ok(());
    };
    check_root(schema, body, Mode::Request)
}

/// Checks a response body (`Value::Null` for an empty one) against the response the schema
/// declares for `status`. The schema omits the 404s DRF sends everywhere, and some declared
/// error responses have no content although DRF sends `{"detail":…}`; both are checked
/// against `GenericError` (`ValidationError` for 400).
pub fn validate_response(
    method: &str,
    path_template: &str,
    status: u16,
    body: &Value,
) -> Result<(), FieldErrors> {
    let op = operation(method, path_template)?;
    let declared = op
        .get("responses")
        .and_then(|r| r.get(status.to_string()))
        .and_then(deref);
    let fallback = match status {
        400 => "#/components/schemas/ValidationError",
        _ => "#/components/schemas/GenericError",
    };
    match declared.map(json_schema) {
        Some(Some(schema)) => check_root(schema, body, Mode::Response),
        Some(None) if body.is_null() => Ok(()),
        Some(None) if status < 400 => Err(one(format!("status {status} must have no body"))),
        None if status < 400 => Err(one(format!("status {status} is not declared"))),
        _ => match resolve(fallback) {
            Some(schema) => check_root(schema, body, Mode::Response),
            None => Err(one(format!("{fallback} missing from the subset"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request_errors(name: &str, body: &Value) -> FieldErrors {
        let schema = resolve(&format!("#/components/schemas/{name}")).unwrap_or(&Value::Null);
        check_root(schema, body, Mode::Request)
            .err()
            .unwrap_or_default()
    }

    #[test]
    fn subset_parses_and_has_paths() {
        assert!(subset().get("paths").is_some_and(Value::is_object));
        assert!(subset().get("x-source-sha256").is_some());
    }

    #[test]
    fn nested_errors_keep_the_top_level_key() {
        let err = request_errors(
            "OAuth2ProviderRequest",
            &json!({"name": "p", "authorization_flow": "x",
                "invalidation_flow": "9b8f7a3e-2d4c-4b1a-8f0e-1c2d3e4f5a6b",
                "redirect_uris": [{"matching_mode": "fuzzy"}]}),
        );
        assert_eq!(err["authorization_flow"], vec!["Must be a valid UUID."]);
        assert_eq!(
            err["redirect_uris"],
            vec![
                "[0].url: This field is required.",
                "[0].matching_mode: \"fuzzy\" is not a valid choice."
            ]
        );
    }

    #[test]
    fn root_must_be_an_object() {
        let err = request_errors("GroupRequest", &json!([1]));
        assert_eq!(
            err[NON_FIELD],
            vec!["Invalid data. Expected a dictionary, but got list."]
        );
    }

    #[test]
    fn nullable_types_lengths_and_unknown_fields() {
        let ok = json!({"target": "9b8f7a3e-2d4c-4b1a-8f0e-1c2d3e4f5a6b", "order": 0,
            "group": null, "unknown": [1, 2]});
        assert!(request_errors("PolicyBindingRequest", &ok).is_empty());
        let bad = json!({"target": "9b8f7a3e-2d4c-4b1a-8f0e-1c2d3e4f5a6b", "order": "1",
            "negate": "yes", "timeout": -1});
        let err = request_errors("PolicyBindingRequest", &bad);
        assert_eq!(err["order"], vec!["A valid integer is required."]);
        assert_eq!(err["negate"], vec!["Must be a valid boolean."]);
        assert_eq!(
            err["timeout"],
            vec!["Ensure this value is greater than or equal to 0."]
        );
        let err = request_errors("UserRequest", &json!({"username": "", "name": null}));
        assert_eq!(err["username"], vec!["This field may not be blank."]);
        assert_eq!(err["name"], vec!["This field may not be null."]);
    }

    #[test]
    fn responses_are_checked_strictly() {
        let group = json!({"pk": "9b8f7a3e-2d4c-4b1a-8f0e-1c2d3e4f5a6b", "num_pk": 1, "name": "g",
            "children": [], "children_obj": null, "inherited_roles_obj": null, "parents_obj": [],
            "roles_obj": [], "users_obj": null});
        assert_eq!(
            validate_response("GET", "/core/groups/{group_uuid}/", 200, &group),
            Ok(())
        );
        let mut broken = group.clone();
        broken.as_object_mut().map(|m| m.remove("num_pk"));
        broken["roles_obj"] = Value::Null;
        let err = validate_response("GET", "/api/v3/core/groups/{group_uuid}/", 200, &broken)
            .err()
            .unwrap_or_default();
        assert_eq!(err.keys().collect::<Vec<_>>(), ["num_pk", "roles_obj"]);
        // 204 must be empty; undeclared 404s are GenericError.
        assert!(validate_response("DELETE", "/core/groups/{group_uuid}/", 204, &group).is_err());
        assert!(
            validate_response("DELETE", "/core/groups/{group_uuid}/", 204, &Value::Null).is_ok()
        );
        let nf = json!({"detail": "Not found."});
        assert!(validate_response("DELETE", "/core/groups/{group_uuid}/", 404, &nf).is_ok());
        assert!(validate_response("GET", "/core/groups/", 404, &json!({"x": 1})).is_err());
        assert!(validate_response("GET", "/nope/", 200, &Value::Null).is_err());
    }
}
