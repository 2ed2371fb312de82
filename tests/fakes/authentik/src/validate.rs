//! The keyword checks of the validator (see `schema.rs` for what is covered), producing
//! DRF's messages under DRF's keys.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use regex::Regex;
use serde_json::{Map, Value};

use crate::schema::{FieldErrors, NON_FIELD, resolve};

/// Compiled `pattern`s, keyed by their source: there are only a handful in the subset.
static PATTERNS: LazyLock<Mutex<HashMap<String, Option<Regex>>>> = LazyLock::new(Mutex::default);

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `readOnly` properties are neither required nor checked.
    Request,
    /// `writeOnly` properties may be absent.
    Response,
}

/// Validates `body` against `schema`; `Ok` when nothing was reported.
pub(crate) fn check_root(schema: &Value, body: &Value, mode: Mode) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::new();
    check(schema, body, &mut Vec::new(), mode, &mut errors, 0);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Records `msg` under the top-level field of `path`, prefixed with the nested location.
fn push(errors: &mut FieldErrors, path: &[String], msg: impl Into<String>) {
    let msg = msg.into();
    let (key, text) = match path.split_first() {
        None => (NON_FIELD.to_owned(), msg),
        Some((top, [])) => (top.clone(), msg),
        Some((top, rest)) => (top.clone(), format!("{}: {msg}", rest.concat())),
    };
    errors.entry(key).or_default().push(text);
}

/// A property's path segment: bare at the root (it becomes the error key), `.name` below.
fn segment(path: &[String], key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!(".{key}")
    }
}

/// Python's name for the JSON type, as DRF puts it in messages.
fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn check(
    schema: &Value,
    v: &Value,
    path: &mut Vec<String>,
    mode: Mode,
    errors: &mut FieldErrors,
    depth: usize,
) {
    if depth > 32 {
        push(errors, path, "Schema nesting too deep.");
        return;
    }
    // OpenAPI 3.0: siblings of `$ref` are ignored.
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        match resolve(r) {
            Some(target) => check(target, v, path, mode, errors, depth + 1),
            None => push(errors, path, format!("Unresolvable schema reference {r}.")),
        }
        return;
    }
    if v.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            push(errors, path, "This field may not be null.");
        }
        return;
    }
    for sub in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        check(sub, v, path, mode, errors, depth + 1);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let fits = options.iter().any(|sub| {
                let mut scratch = FieldErrors::new();
                check(sub, v, &mut path.clone(), mode, &mut scratch, depth + 1);
                scratch.is_empty()
            });
            if !fits {
                push(errors, path, "Does not match any of the allowed shapes.");
            }
        }
    }
    if let Some(choices) = schema.get("enum").and_then(Value::as_array)
        && !choices.contains(v)
    {
        let shown = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        push(errors, path, format!("\"{shown}\" is not a valid choice."));
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str);
    let ty = ty.or_else(|| schema.get("properties").map(|_| "object"));
    match ty {
        Some("object") => check_object(schema, v, path, mode, errors, depth),
        Some("array") => match v.as_array() {
            None => push(
                errors,
                path,
                format!("Expected a list of items but got type \"{}\".", py_type(v)),
            ),
            Some(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        path.push(format!("[{i}]"));
                        check(item_schema, item, path, mode, errors, depth + 1);
                        path.pop();
                    }
                }
            }
        },
        Some("string") => match v.as_str() {
            None => push(errors, path, "Not a valid string."),
            Some(s) => check_string(schema, s, path, errors),
        },
        Some("integer") => match v.as_i64() {
            Some(n) => check_range(schema, n as f64, path, errors),
            None if v.as_u64().is_some() => check_range(schema, f64::MAX, path, errors),
            None => push(errors, path, "A valid integer is required."),
        },
        Some("number") => match v.as_f64() {
            Some(n) => check_range(schema, n, path, errors),
            None => push(errors, path, "A valid number is required."),
        },
        Some("boolean") if !v.is_boolean() => push(errors, path, "Must be a valid boolean."),
        _ => {}
    }
}

fn check_object(
    schema: &Value,
    v: &Value,
    path: &mut Vec<String>,
    mode: Mode,
    errors: &mut FieldErrors,
    depth: usize,
) {
    let empty = Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let Some(obj) = v.as_object() else {
        let msg = if props.is_empty() {
            format!(
                "Expected a dictionary of items but got type \"{}\".",
                py_type(v)
            )
        } else {
            format!(
                "Invalid data. Expected a dictionary, but got {}.",
                py_type(v)
            )
        };
        push(errors, path, msg);
        return;
    };
    let flag = |name: &str, key: &str| {
        props.get(name).and_then(|p| p.get(key)) == Some(&Value::Bool(true))
    };
    for name in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let exempt = match mode {
            Mode::Request => flag(name, "readOnly"),
            Mode::Response => flag(name, "writeOnly"),
        };
        if !exempt && !obj.contains_key(name) {
            path.push(segment(path, name));
            push(errors, path, "This field is required.");
            path.pop();
        }
    }
    let extra = schema.get("additionalProperties");
    for (key, value) in obj {
        let sub = match props.get(key) {
            // DRF ignores read-only fields sent in a request.
            Some(_) if mode == Mode::Request && flag(key, "readOnly") => continue,
            Some(sub) => sub,
            None => match extra {
                Some(Value::Bool(false)) => {
                    path.push(segment(path, key));
                    push(errors, path, "Unexpected field.");
                    path.pop();
                    continue;
                }
                Some(sub @ Value::Object(_)) => sub,
                // Default: unknown fields are allowed (DRF ignores them).
                _ => continue,
            },
        };
        path.push(segment(path, key));
        check(sub, value, path, mode, errors, depth + 1);
        path.pop();
    }
}

fn check_string(schema: &Value, s: &str, path: &[String], errors: &mut FieldErrors) {
    let len = s.chars().count() as u64;
    let min = schema.get("minLength").and_then(Value::as_u64);
    if let Some(min) = min
        && len < min
    {
        let msg = if len == 0 {
            "This field may not be blank.".to_owned()
        } else {
            format!("Ensure this field has at least {min} characters.")
        };
        push(errors, path, msg);
        return;
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        push(
            errors,
            path,
            format!("Ensure this field has no more than {max} characters."),
        );
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
        && !matches_pattern(pattern, s)
    {
        let msg = if pattern == "^[-a-zA-Z0-9_]+$" {
            "Enter a valid \"slug\" consisting of letters, numbers, underscores or hyphens."
        } else {
            "This value does not match the required pattern."
        };
        push(errors, path, msg);
    }
    // Blank strings are allowed where no minLength forbids them (DRF `allow_blank`).
    if s.is_empty() {
        return;
    }
    let bad = match schema.get("format").and_then(Value::as_str) {
        Some("uuid") if uuid::Uuid::parse_str(s).is_err() => Some("Must be a valid UUID."),
        Some("date-time") if chrono::DateTime::parse_from_rfc3339(s).is_err() => Some(
            "Datetime has wrong format. Use one of these formats instead: \
             YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].",
        ),
        Some("email") if !looks_like_email(s) => Some("Enter a valid email address."),
        Some("uri") if !looks_like_url(s) => Some("Enter a valid URL."),
        _ => None,
    };
    if let Some(msg) = bad {
        push(errors, path, msg);
    }
}

fn check_range(schema: &Value, n: f64, path: &[String], errors: &mut FieldErrors) {
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        push(
            errors,
            path,
            format!("Ensure this value is less than or equal to {max}."),
        );
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        push(
            errors,
            path,
            format!("Ensure this value is greater than or equal to {min}."),
        );
    }
}

fn matches_pattern(pattern: &str, s: &str) -> bool {
    let mut cache = PATTERNS.lock().unwrap_or_else(|e| e.into_inner());
    let re = cache
        .entry(pattern.to_owned())
        .or_insert_with(|| Regex::new(pattern).ok());
    // A pattern the regex crate cannot compile is not the client's fault: accept.
    re.as_ref().is_none_or(|re| re.is_match(s))
}

fn looks_like_email(s: &str) -> bool {
    match s.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

fn looks_like_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| {
        !r.is_empty() && !r.starts_with('/') && !s.chars().any(char::is_whitespace)
    })
}
