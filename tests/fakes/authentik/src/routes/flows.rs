//! Read-only lookups Tenantry does once at startup: version, flows, scope mappings, certificates.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use serde_json::json;

use crate::error::{ApiError, ApiResult, ok};
use crate::page::{Query, paginate};
use crate::render;
use crate::server::Shared;

const DESIGNATIONS: [&str; 7] = [
    "authentication",
    "authorization",
    "invalidation",
    "enrollment",
    "unenrollment",
    "recovery",
    "stage_configuration",
];

/// `GET /admin/version/`.
pub(crate) async fn version(State(st): State<Arc<Shared>>) -> ApiResult {
    let v = &st.config.version;
    Ok(ok(&json!({
        "version_current": v,
        "version_latest": v,
        "version_latest_valid": true,
        "build_hash": "",
        "outdated": false,
        "outpost_outdated": false,
    })))
}

/// `GET /flows/instances/` with exact `slug`, `name` and `designation` filters.
pub(crate) async fn list_flows(
    State(st): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = Query::parse(raw.as_deref());
    let designation = q.get("designation").filter(|d| !d.is_empty());
    if let Some(d) = designation
        && !DESIGNATIONS.contains(&d)
    {
        return Err(ApiError::field(
            "designation",
            format!("Select a valid choice. {d} is not one of the available choices."),
        ));
    }
    let items = {
        let s = st.store();
        s.flows
            .iter()
            .filter(|f| q.get("slug").is_none_or(|v| v == f.slug))
            .filter(|f| q.get("name").is_none_or(|v| v == f.name))
            .filter(|f| designation.is_none_or(|v| v == f.designation))
            .map(render::flow)
            .collect()
    };
    Ok(ok(&paginate(items, &q, st.config.page_size)?))
}

/// `GET /propertymappings/provider/scope/`; `managed` is repeatable and matches any value.
pub(crate) async fn list_scope_mappings(
    State(st): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = Query::parse(raw.as_deref());
    let managed = q.all("managed");
    let items = {
        let s = st.store();
        s.mappings
            .iter()
            .map(render::scope_mapping)
            .filter(|m| managed.is_empty() || managed.iter().any(|v| m["managed"] == *v))
            .filter(|m| q.get("name").is_none_or(|v| m["name"] == v))
            .filter(|m| q.get("scope_name").is_none_or(|v| m["scope_name"] == v))
            .collect()
    };
    Ok(ok(&paginate(items, &q, st.config.page_size)?))
}

/// `GET /crypto/certificatekeypairs/` with `name` and `has_key` filters.
pub(crate) async fn list_certs(
    State(st): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = Query::parse(raw.as_deref());
    let has_key = q.boolean("has_key")?;
    let items = {
        let s = st.store();
        s.certs
            .iter()
            .map(render::cert)
            .filter(|c| q.get("name").is_none_or(|v| c["name"] == v))
            .filter(|c| has_key.is_none_or(|k| c["private_key_available"] == k))
            .collect()
    };
    Ok(ok(&paginate(items, &q, st.config.page_size)?))
}
