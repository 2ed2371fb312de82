//! Query strings, filters and authentik's pagination envelope.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::ApiError;

/// The max page size authentik clamps to (`pagination_max_page_size`).
pub(crate) const MAX_PAGE_SIZE: usize = 100;

/// A decoded query string that keeps repeated keys (`?managed=a&managed=b`).
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        Query(pairs)
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A django-filter boolean: `true/false/1/0` (any case); anything else is a 400.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key).map(str::to_ascii_lowercase).as_deref() {
            None | Some("") => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(_) => Err(ApiError::field(key, "Select a valid choice.")),
        }
    }

    /// A uuid filter value; a malformed one is a 400 keyed by the parameter.
    pub fn uuid(&self, key: &str) -> Result<Option<Uuid>, ApiError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| Uuid::parse_str(v).map_err(|_| ApiError::field(key, "Must be a valid UUID.")))
            .transpose()
    }

    /// The `attributes` filter: a JSON object matched as a subset of the object's attributes.
    pub fn attributes(&self) -> Result<Option<Value>, ApiError> {
        match self.get("attributes").filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(raw) => match serde_json::from_str::<Value>(raw) {
                Ok(v @ Value::Object(_)) => Ok(Some(v)),
                _ => Err(ApiError::field(
                    "attributes",
                    "filter: failed to parse JSON",
                )),
            },
        }
    }
}

/// Percent-decoding for one query component (`+` is a space, as in forms).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `filter` is contained in `actual`: objects key by key, anything else by equality.
pub(crate) fn json_subset(filter: &Value, actual: &Value) -> bool {
    match (filter, actual) {
        (Value::Object(f), Value::Object(a)) => f
            .iter()
            .all(|(k, fv)| a.get(k).is_some_and(|av| json_subset(fv, av))),
        _ => filter == actual,
    }
}

/// Cuts one page out of `items` and wraps it in authentik's envelope. `next`/`previous` are page
/// numbers with 0 for none; a page past the end (or not a positive number) is a 404.
pub(crate) fn paginate(
    items: Vec<Value>,
    q: &Query,
    default_size: usize,
) -> Result<Value, ApiError> {
    // DRF falls back to the default for a malformed or non-positive page_size.
    let size = q
        .get("page_size")
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default_size)
        .clamp(1, MAX_PAGE_SIZE);
    let count = items.len();
    let total_pages = count.div_ceil(size).max(1);
    let page = match q.get("page") {
        None | Some("") => 1,
        Some("last") => total_pages,
        Some(p) => p
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(invalid_page)?,
    };
    if page > total_pages {
        return Err(invalid_page());
    }
    let start = (page - 1) * size;
    let results: Vec<Value> = items.into_iter().skip(start).take(size).collect();
    let (start_index, end_index) = if results.is_empty() {
        (0, 0)
    } else {
        (start + 1, start + results.len())
    };
    Ok(json!({
        "pagination": {
            "next": if page < total_pages { page + 1 } else { 0 },
            "previous": page.saturating_sub(1),
            "count": count,
            "current": page,
            "total_pages": total_pages,
            "start_index": start_index,
            "end_index": end_index,
        },
        "results": results,
        "autocomplete": {},
    }))
}

fn invalid_page() -> ApiError {
    ApiError::detail(404, "Invalid page.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_repeated_and_escaped_keys() {
        let q = Query::parse(Some("managed=a%2Fb&managed=c+d&x=%zz&y=%4"));
        assert_eq!(q.all("managed"), vec!["a/b", "c d"]);
        assert_eq!(q.get("x"), Some("%zz"));
        assert_eq!(q.get("y"), Some("%4"));
    }

    #[test]
    fn subset_matching_is_recursive() {
        let actual = json!({"tenant_id": "t1", "meta": {"a": 1, "b": 2}});
        assert!(json_subset(&json!({"meta": {"a": 1}}), &actual));
        assert!(!json_subset(&json!({"tenant_id": "t2"}), &actual));
        assert!(json_subset(&json!({}), &actual));
    }
}
