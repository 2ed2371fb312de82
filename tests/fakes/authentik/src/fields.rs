//! Typed reads of the stored JSON fields, and each model's writable fields with their defaults.
//!
//! Values are validated against the schema before they are stored, so the readers only have to
//! be total (absent or odd values read as empty), never to report errors.

use serde_json::{Map, Value, json};
use uuid::Uuid;

/// A string field, "" when absent or not a string.
pub(crate) fn text<'a>(m: &'a Map<String, Value>, key: &str) -> &'a str {
    m.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A boolean field, false when absent.
pub(crate) fn flag(m: &Map<String, Value>, key: &str) -> bool {
    m.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// An integer field, `None` when absent or null.
pub(crate) fn int(m: &Map<String, Value>, key: &str) -> Option<i64> {
    m.get(key).and_then(Value::as_i64)
}

/// A uuid field, `None` when absent, null or malformed.
pub(crate) fn uuid(m: &Map<String, Value>, key: &str) -> Option<Uuid> {
    m.get(key)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
}

/// A list-of-uuids field.
pub(crate) fn uuids(m: &Map<String, Value>, key: &str) -> Vec<Uuid> {
    m.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().and_then(|s| Uuid::parse_str(s).ok()))
        .collect()
}

/// Copies the body's writable fields (the keys `fields` already has, since it starts from the
/// defaults) into `fields`; anything else in the body is ignored, like DRF does.
pub(crate) fn merge(fields: &mut Map<String, Value>, body: &Value) {
    if let Some(obj) = body.as_object() {
        for (k, v) in obj {
            if let Some(slot) = fields.get_mut(k) {
                *slot = v.clone();
            }
        }
    }
}

/// Every writable group field with its default (`users` is handled as membership).
pub(crate) fn group_defaults() -> Map<String, Value> {
    obj(json!({"name": "", "is_superuser": false, "parents": [], "attributes": {}, "roles": []}))
}

/// Every writable user field with its default (`groups` is handled as membership).
pub(crate) fn user_defaults() -> Map<String, Value> {
    obj(
        json!({"username": "", "name": "", "is_active": true, "last_login": null, "roles": [],
        "email": "", "attributes": {}, "path": "users", "type": "internal"}),
    )
}

/// Every writable OAuth2 provider field with its default. `grant_types`: the real default was
/// not confirmed (contract §7); the fake assumes the code flow plus refresh.
pub(crate) fn provider_defaults() -> Map<String, Value> {
    obj(
        json!({"name": "", "authentication_flow": null, "authorization_flow": null,
        "invalidation_flow": null, "property_mappings": [], "client_type": "confidential",
        "grant_types": ["authorization_code", "refresh_token"], "client_id": "", "client_secret": "",
        "access_code_validity": "minutes=1", "access_token_validity": "hours=1",
        "refresh_token_validity": "days=30", "refresh_token_threshold": "seconds=0",
        "include_claims_in_id_token": true, "signing_key": null, "encryption_key": null,
        "redirect_uris": [], "logout_uri": "", "logout_method": "backchannel",
        "sub_mode": "hashed_user_id", "issuer_mode": "per_provider",
        "jwt_federation_sources": [], "jwt_federation_providers": []}),
    )
}

/// Every writable application field with its default.
pub(crate) fn app_defaults() -> Map<String, Value> {
    obj(
        json!({"name": "", "slug": "", "provider": null, "backchannel_providers": [],
        "open_in_new_tab": false, "meta_launch_url": "", "meta_icon": "", "meta_description": "",
        "meta_publisher": "", "policy_engine_mode": "any", "group": "", "meta_hide": false}),
    )
}

/// Every writable binding field with its default.
pub(crate) fn binding_defaults() -> Map<String, Value> {
    obj(
        json!({"policy": null, "group": null, "user": null, "target": null, "negate": false,
        "enabled": true, "order": 0, "timeout": 30, "failure_result": false}),
    )
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
