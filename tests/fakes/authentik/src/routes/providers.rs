//! `/providers/oauth2/`: CRUD, generated credentials, `setup_urls`, and the provider-side
//! uniqueness rules (name across all providers, `client_id`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::Method;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Value, json};

use super::{Checker, int_key};
use crate::error::{ApiError, ApiResult, created, invalid_pk_msg, no_content, ok};
use crate::fields;
use crate::page::{Query, paginate};
use crate::render;
use crate::server::Shared;
use crate::store::{Provider, Store};

const LIST: &str = "/providers/oauth2/";
const ONE: &str = "/providers/oauth2/{id}/";
const MODEL: &str = "OAuth2Provider";
const DURATIONS: [&str; 4] = [
    "access_code_validity",
    "access_token_validity",
    "refresh_token_validity",
    "refresh_token_threshold",
];

fn random(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// authentik's `timedelta_string_validator`: `hours=1;minutes=2`.
fn is_duration(s: &str) -> bool {
    const UNITS: [&str; 7] = [
        "weeks",
        "days",
        "hours",
        "minutes",
        "seconds",
        "milliseconds",
        "microseconds",
    ];
    s.split(';').filter(|p| !p.trim().is_empty()).all(|part| {
        part.split_once('=').is_some_and(|(unit, n)| {
            UNITS.contains(&unit.trim()) && n.trim().parse::<f64>().is_ok_and(f64::is_finite)
        })
    }) && !s.trim().is_empty()
}

/// `GET /providers/oauth2/` with exact `name` and `client_id` filters.
pub(crate) async fn list(State(st): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> ApiResult {
    let q = Query::parse(raw.as_deref());
    let items = {
        let s = st.store();
        s.providers
            .iter()
            .filter(|p| {
                q.get("name")
                    .is_none_or(|v| fields::text(&p.fields, "name") == v)
            })
            .filter(|p| {
                q.get("client_id")
                    .is_none_or(|v| fields::text(&p.fields, "client_id") == v)
            })
            .map(|p| render::provider(&s, p))
            .collect()
    };
    Ok(ok(&paginate(items, &q, st.config.page_size)?))
}

/// Field checks shared by create and update; `this` is the provider being updated.
fn check(s: &Store, c: &mut Checker, this: Option<i64>) -> Result<(), ApiError> {
    let others = || s.providers.iter().filter(move |p| Some(p.pk) != this);
    if let Some(name) = c.get("name").and_then(Value::as_str)
        && others().any(|p| fields::text(&p.fields, "name") == name)
    {
        c.add("name", "Provider with this name already exists.");
    }
    if let Some(id) = c.get("client_id").and_then(Value::as_str)
        && others().any(|p| fields::text(&p.fields, "client_id") == id)
    {
        c.add(
            "client_id",
            "OAuth2/OpenID Provider with this Client ID already exists.",
        );
    }
    for key in [
        "authorization_flow",
        "invalidation_flow",
        "authentication_flow",
    ] {
        let unknown = c
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !s.flows.iter().any(|f| f.pk.to_string() == *v));
        if let Some(v) = unknown.map(str::to_owned) {
            c.add(key, invalid_pk_msg(v));
        }
    }
    for key in ["signing_key", "encryption_key"] {
        let unknown = c
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !s.certs.iter().any(|k| k.pk.to_string() == *v));
        if let Some(v) = unknown.map(str::to_owned) {
            c.add(key, invalid_pk_msg(v));
        }
    }
    let unknown = c
        .strs("property_mappings")
        .into_iter()
        .find(|v| !s.mappings.iter().any(|m| m.pk.to_string() == *v));
    if let Some(v) = unknown.map(str::to_owned) {
        c.add("property_mappings", invalid_pk_msg(v));
    }
    // The fake has no sources, so any federation source is unknown.
    if let Some(v) = c
        .strs("jwt_federation_sources")
        .first()
        .map(|v| (*v).to_owned())
    {
        c.add("jwt_federation_sources", invalid_pk_msg(v));
    }
    let fed = c
        .get("jwt_federation_providers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(v) = fed
        .iter()
        .find(|v| v.as_i64().is_none_or(|pk| s.provider(pk).is_none()))
    {
        c.add("jwt_federation_providers", invalid_pk_msg(v));
    }
    let bad_regex = c
        .get("redirect_uris")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|u| u.get("matching_mode").and_then(Value::as_str) == Some("regex"))
        .filter_map(|u| u.get("url").and_then(Value::as_str))
        .find_map(|url| regex::Regex::new(url).err().map(|e| e.to_string()));
    if let Some(e) = bad_regex {
        c.add("redirect_uris", format!("Invalid Regex Pattern: {e}"));
    }
    for key in DURATIONS {
        if let Some(v) = c
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !is_duration(v))
            .map(str::to_owned)
        {
            c.add(
                key,
                format!("{v} is not in the correct format of 'hours=3;minutes=1'."),
            );
        }
    }
    c.fields_done()
}

fn respond(s: &Store, pk: i64, status: u16) -> ApiResult {
    let p = s.provider(pk).ok_or_else(|| ApiError::not_found(MODEL))?;
    let body = render::provider(s, p);
    Ok(if status == 201 {
        created(&body)
    } else {
        ok(&body)
    })
}

/// `POST /providers/oauth2/`: `client_id` (40 chars) and `client_secret` (128 chars) are
/// generated when omitted, and returned on every GET.
pub(crate) async fn create(State(st): State<Arc<Shared>>, bytes: Bytes) -> ApiResult {
    let mut c = Checker::new(&Method::POST, LIST, &bytes)?;
    let mut s = st.store();
    check(&s, &mut c, None)?;
    let mut fields = fields::provider_defaults();
    fields.insert("client_id".into(), json!(random(40)));
    fields.insert("client_secret".into(), json!(random(128)));
    fields::merge(&mut fields, &c.body);
    let pk = s.next_provider_pk();
    s.providers.push(Provider { pk, fields });
    respond(&s, pk, 201)
}

/// `GET /providers/oauth2/{id}/`.
pub(crate) async fn retrieve(State(st): State<Arc<Shared>>, Path(key): Path<String>) -> ApiResult {
    let pk = int_key(&key, MODEL)?;
    respond(&st.store(), pk, 200)
}

/// `PUT`/`PATCH /providers/oauth2/{id}/`.
pub(crate) async fn update(
    State(st): State<Arc<Shared>>,
    Path(key): Path<String>,
    method: Method,
    bytes: Bytes,
) -> ApiResult {
    let pk = int_key(&key, MODEL)?;
    let mut s = st.store();
    s.provider(pk).ok_or_else(|| ApiError::not_found(MODEL))?;
    let mut c = Checker::new(&method, ONE, &bytes)?;
    check(&s, &mut c, Some(pk))?;
    if let Some(p) = s.providers.iter_mut().find(|p| p.pk == pk) {
        fields::merge(&mut p.fields, &c.body);
    }
    respond(&s, pk, 200)
}

/// `DELETE /providers/oauth2/{id}/`: the bound application keeps existing with
/// `provider = null` (SET_DEFAULT), and references from other objects are dropped.
pub(crate) async fn destroy(State(st): State<Arc<Shared>>, Path(key): Path<String>) -> ApiResult {
    let pk = int_key(&key, MODEL)?;
    let mut s = st.store();
    let before = s.providers.len();
    s.providers.retain(|p| p.pk != pk);
    if s.providers.len() == before {
        return Err(ApiError::not_found(MODEL));
    }
    for a in &mut s.apps {
        if fields::int(&a.fields, "provider") == Some(pk) {
            a.fields.insert("provider".into(), Value::Null);
        }
        drop_pk(&mut a.fields, "backchannel_providers", pk);
    }
    for p in &mut s.providers {
        drop_pk(&mut p.fields, "jwt_federation_providers", pk);
    }
    Ok(no_content())
}

fn drop_pk(fields: &mut serde_json::Map<String, Value>, key: &str, pk: i64) {
    if let Some(Value::Array(list)) = fields.get_mut(key) {
        list.retain(|v| v.as_i64() != Some(pk));
    }
}

/// `GET /providers/oauth2/{id}/setup_urls/`: the OIDC endpoints, 404 until an app is bound.
pub(crate) async fn setup_urls(
    State(st): State<Arc<Shared>>,
    Path(key): Path<String>,
) -> ApiResult {
    let pk = int_key(&key, MODEL)?;
    let s = st.store();
    let p = s.provider(pk).ok_or_else(|| ApiError::not_found(MODEL))?;
    let app = s
        .app_of_provider(pk)
        .ok_or_else(|| ApiError::detail(404, "Not found."))?;
    let host = st.config.public_host.trim_end_matches('/');
    let slug = fields::text(&app.fields, "slug");
    let per_app = format!("{host}/application/o/{slug}");
    let issuer = if fields::text(&p.fields, "issuer_mode") == "global" {
        format!("{host}/")
    } else {
        format!("{per_app}/")
    };
    Ok(ok(&json!({
        "issuer": issuer,
        "authorize": format!("{host}/application/o/authorize/"),
        "token": format!("{host}/application/o/token/"),
        "user_info": format!("{host}/application/o/userinfo/"),
        "provider_info": format!("{per_app}/.well-known/openid-configuration"),
        "logout": format!("{per_app}/end-session/"),
        "jwks": format!("{per_app}/jwks/"),
        "dcr_registration": null,
    })))
}
