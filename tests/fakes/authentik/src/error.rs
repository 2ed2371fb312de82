//! Error and success responses in DRF's shapes.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::schema::{FieldErrors, NON_FIELD};

/// What a handler answers instead of a success.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// 400 with a field-keyed map of message lists.
    Invalid(FieldErrors),
    /// 400 with no body at all (authentik's `set_password` failure).
    EmptyBadRequest,
    /// `{"detail": …}` with the given status.
    Detail(u16, String),
}

impl ApiError {
    /// 400 with one message under `key`.
    pub fn field(key: &str, msg: impl Into<String>) -> Self {
        ApiError::Invalid(FieldErrors::from([(key.to_owned(), vec![msg.into()])]))
    }

    /// 400 with one cross-field message.
    pub fn non_field(msg: impl Into<String>) -> Self {
        Self::field(NON_FIELD, msg)
    }

    /// `{"detail": msg}` with `status`.
    pub fn detail(status: u16, msg: impl Into<String>) -> Self {
        ApiError::Detail(status, msg.into())
    }

    /// DRF ≥ 3.15's text for an unknown lookup key.
    pub fn not_found(model: &str) -> Self {
        Self::detail(404, format!("No {model} matches the given query."))
    }
}

/// DRF's PrimaryKeyRelatedField message for an unknown key.
pub(crate) fn invalid_pk_msg(pk: impl std::fmt::Display) -> String {
    format!("Invalid pk \"{pk}\" - object does not exist.")
}

/// A JSON response with `status`.
pub(crate) fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// 200 with `body`.
pub(crate) fn ok(body: &Value) -> Response {
    json_response(200, body)
}

/// 201 with the created object.
pub(crate) fn created(body: &Value) -> Response {
    json_response(201, body)
}

/// 204 with an empty body (and no content type, as Django sends it).
pub(crate) fn no_content() -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Invalid(errors) => json_response(400, &json!(errors)),
            ApiError::EmptyBadRequest => {
                let mut resp = Response::new(Body::empty());
                *resp.status_mut() = StatusCode::BAD_REQUEST;
                resp
            }
            ApiError::Detail(status, msg) => json_response(status, &json!({ "detail": msg })),
        }
    }
}

impl From<FieldErrors> for ApiError {
    fn from(errors: FieldErrors) -> Self {
        ApiError::Invalid(errors)
    }
}

/// What handlers return.
pub(crate) type ApiResult = Result<Response, ApiError>;
