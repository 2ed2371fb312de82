//! The `/api/v3` routes and the helpers every handler shares.

mod apps;
mod flows;
mod groups;
mod policies;
mod providers;
mod users;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::Method;
use axum::routing::{get, post};
use serde_json::Value;
use uuid::Uuid;

use crate::error::ApiError;
use crate::schema::{self, FieldErrors};
use crate::server::Shared;

/// Every route the fake serves; anything else is a DRF-style 404 or 405.
pub(crate) fn router(state: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v3/admin/version/", get(flows::version))
        .route("/api/v3/flows/instances/", get(flows::list_flows))
        .route(
            "/api/v3/propertymappings/provider/scope/",
            get(flows::list_scope_mappings),
        )
        .route(
            "/api/v3/crypto/certificatekeypairs/",
            get(flows::list_certs),
        )
        .route(
            "/api/v3/core/groups/",
            get(groups::list).post(groups::create),
        )
        .route(
            "/api/v3/core/groups/{group_uuid}/",
            get(groups::retrieve)
                .put(groups::update)
                .patch(groups::update)
                .delete(groups::destroy),
        )
        .route(
            "/api/v3/core/groups/{group_uuid}/add_user/",
            post(groups::add_user),
        )
        .route(
            "/api/v3/core/groups/{group_uuid}/remove_user/",
            post(groups::remove_user),
        )
        .route("/api/v3/core/users/", get(users::list).post(users::create))
        .route(
            "/api/v3/core/users/{id}/",
            get(users::retrieve)
                .put(users::update)
                .patch(users::update)
                .delete(users::destroy),
        )
        .route(
            "/api/v3/core/users/{id}/set_password/",
            post(users::set_password),
        )
        .route(
            "/api/v3/providers/oauth2/",
            get(providers::list).post(providers::create),
        )
        .route(
            "/api/v3/providers/oauth2/{id}/",
            get(providers::retrieve)
                .put(providers::update)
                .patch(providers::update)
                .delete(providers::destroy),
        )
        .route(
            "/api/v3/providers/oauth2/{id}/setup_urls/",
            get(providers::setup_urls),
        )
        .route(
            "/api/v3/core/applications/",
            get(apps::list).post(apps::create),
        )
        .route(
            "/api/v3/core/applications/{slug}/",
            get(apps::retrieve)
                .put(apps::update)
                .patch(apps::update)
                .delete(apps::destroy),
        )
        .route(
            "/api/v3/core/applications/{slug}/check_access/",
            get(apps::check_access),
        )
        .route(
            "/api/v3/policies/bindings/",
            get(policies::list).post(policies::create),
        )
        .route(
            "/api/v3/policies/bindings/{policy_binding_uuid}/",
            get(policies::retrieve)
                .put(policies::update)
                .patch(policies::update)
                .delete(policies::destroy),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::detail(404, "Not found.")
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::detail(405, format!("Method \"{method}\" not allowed."))
}

/// Parses a JSON body. An empty body is `{}` (DRF's empty `request.data`).
fn parse_body(bytes: &Bytes) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::detail(400, format!("JSON parse error - {e}")))
}

/// A path key that must be a uuid; anything else cannot match an object, so it is a 404.
fn uuid_key(key: &str, model: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(key).map_err(|_| ApiError::not_found(model))
}

/// A path key that must be an integer id; anything else is a 404.
fn int_key(key: &str, model: &str) -> Result<i64, ApiError> {
    key.parse().map_err(|_| ApiError::not_found(model))
}

/// Field errors of one request, collected the way DRF's serializer does: schema (type and
/// required) errors first; then per-field semantic checks, skipped for a field that already
/// failed; cross-field (`non_field_errors`) checks only when every field is fine.
pub(crate) struct Checker {
    pub body: Value,
    errors: FieldErrors,
}

impl Checker {
    /// Parses the body and validates it against the operation's request schema.
    pub fn new(method: &Method, template: &str, bytes: &Bytes) -> Result<Self, ApiError> {
        let body = parse_body(bytes)?;
        let errors = schema::validate_request(method.as_str(), template, &body)
            .err()
            .unwrap_or_default();
        Ok(Checker { body, errors })
    }

    /// The body's value for `key` when it passed the schema (absent or failed → `None`).
    pub fn get(&self, key: &str) -> Option<&Value> {
        if self.errors.contains_key(key) {
            return None;
        }
        self.body.get(key)
    }

    /// The body's non-null string values under `key` (a list field), when it passed the schema.
    pub fn strs(&self, key: &str) -> Vec<&str> {
        self.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect()
    }

    /// Adds a field error unless that field already has one.
    pub fn add(&mut self, key: &str, msg: impl Into<String>) {
        if !self.errors.contains_key(key) {
            self.errors.insert(key.to_owned(), vec![msg.into()]);
        }
    }

    /// Fails with every field error so far.
    pub fn fields_done(&self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(self.errors.clone()))
        }
    }
}
