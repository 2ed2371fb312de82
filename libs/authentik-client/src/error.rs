//! What can go wrong talking to Authentik, as variants a caller can act on.

use std::collections::BTreeMap;

/// An Authentik API error. Messages never hold a token, a password or a client secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthentikError {
    /// 403: the token is missing, invalid or expired, or its user lacks a permission. Authentik
    /// answers 403 (never 401) for both.
    #[error(
        "Authentik refused the token ({0}); check the identity service's Authentik token and that its user may manage users, groups, providers, applications and policy bindings"
    )]
    Forbidden(String),
    /// 404: the object (or page) does not exist.
    #[error("not found in Authentik: {0}")]
    NotFound(String),
    /// 400: validation errors keyed by field (`non_field_errors` for cross-field ones). An empty
    /// map is a 400 with no body (what `set_password` answers for a password-policy failure).
    #[error("Authentik rejected the request: {}", describe(.0))]
    Invalid(BTreeMap<String, Vec<String>>),
    /// No answer, a timeout, 429 or a 5xx: worth retrying later.
    #[error("Authentik is unavailable: {0}")]
    Unavailable(String),
    /// Anything else: an unexpected status or an answer we cannot read.
    #[error("unexpected answer from Authentik: {0}")]
    Unexpected(String),
    /// The Authentik instance lacks something Tenantry needs (a flow, a mapping, a version).
    #[error("{0}")]
    Setup(String),
}

impl AuthentikError {
    /// Whether the validation error names `field` (e.g. `name` for a duplicate group name).
    pub fn field(&self, field: &str) -> bool {
        matches!(self, Self::Invalid(m) if m.contains_key(field))
    }

    /// Whether another attempt later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Whether the object is gone (a repeated DELETE, an unknown id).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }
}

fn describe(fields: &BTreeMap<String, Vec<String>>) -> String {
    if fields.is_empty() {
        return "no details given (a password-policy failure answers 400 with an empty body)"
            .to_owned();
    }
    fields
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.join(" ")))
        .collect::<Vec<_>>()
        .join("; ")
}
