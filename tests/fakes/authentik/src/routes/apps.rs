//! `/core/applications/`: CRUD by slug, slug rules, one application per provider, and
//! `check_access` (the policy engine's verdict for one user).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Checker;
use crate::error::{ApiError, ApiResult, created, invalid_pk_msg, no_content, ok};
use crate::fields;
use crate::page::{Query, paginate};
use crate::render;
use crate::server::Shared;
use crate::store::{App, Store};

const LIST: &str = "/core/applications/";
const ONE: &str = "/core/applications/{slug}/";
const MODEL: &str = "Application";
/// Slugs that would shadow the global OAuth2 endpoints under `/application/o/`.
const RESERVED: [&str; 6] = [
    "authorize",
    "token",
    "device",
    "userinfo",
    "introspect",
    "revoke",
];

/// `GET /core/applications/` with exact `slug`, `name` and `group` filters.
pub(crate) async fn list(State(st): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> ApiResult {
    let q = Query::parse(raw.as_deref());
    let items = {
        let s = st.store();
        s.apps
            .iter()
            .filter(|a| {
                ["slug", "name", "group"]
                    .iter()
                    .all(|k| q.get(k).is_none_or(|v| fields::text(&a.fields, k) == v))
            })
            .map(|a| render::app(&s, a))
            .collect()
    };
    Ok(ok(&paginate(items, &q, st.config.page_size)?))
}

/// Field checks shared by create and update; `this` is the application being updated.
fn check(s: &Store, c: &mut Checker, this: Option<Uuid>) -> Result<(), ApiError> {
    if let Some(slug) = c.get("slug").and_then(Value::as_str).map(str::to_owned) {
        if RESERVED.contains(&slug.as_str()) {
            c.add(
                "slug",
                format!("The slug \"{slug}\" is reserved and cannot be used."),
            );
        } else if s
            .apps
            .iter()
            .any(|a| Some(a.pk) != this && fields::text(&a.fields, "slug") == slug)
        {
            c.add("slug", "Application with this slug already exists.");
        }
    }
    if let Some(pk) = c.get("provider").and_then(Value::as_i64) {
        if s.provider(pk).is_none() {
            c.add("provider", invalid_pk_msg(pk));
        } else if s.app_of_provider(pk).is_some_and(|a| Some(a.pk) != this) {
            c.add("provider", "Application with this provider already exists.");
        }
    }
    let back = c
        .get("backchannel_providers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(v) = back
        .iter()
        .find(|v| v.as_i64().is_none_or(|pk| s.provider(pk).is_none()))
    {
        c.add("backchannel_providers", invalid_pk_msg(v));
    }
    c.fields_done()
}

fn respond(s: &Store, pk: Uuid, status: u16) -> ApiResult {
    let a = s
        .apps
        .iter()
        .find(|a| a.pk == pk)
        .ok_or_else(|| ApiError::not_found(MODEL))?;
    let body = render::app(s, a);
    Ok(if status == 201 {
        created(&body)
    } else {
        ok(&body)
    })
}

fn find(s: &Store, slug: &str) -> Result<Uuid, ApiError> {
    s.app(slug)
        .map(|a| a.pk)
        .ok_or_else(|| ApiError::not_found(MODEL))
}

/// `POST /core/applications/`. `pk` and `pbm_uuid` are distinct on purpose: policy bindings
/// must target `pbm_uuid`, and a client that sends `pk` instead gets a 400 here.
pub(crate) async fn create(State(st): State<Arc<Shared>>, bytes: Bytes) -> ApiResult {
    let mut c = Checker::new(&Method::POST, LIST, &bytes)?;
    let mut s = st.store();
    check(&s, &mut c, None)?;
    let mut fields = fields::app_defaults();
    fields::merge(&mut fields, &c.body);
    let pk = Uuid::new_v4();
    s.apps.push(App {
        pk,
        pbm_uuid: Uuid::new_v4(),
        fields,
    });
    respond(&s, pk, 201)
}

/// `GET /core/applications/{slug}/`.
pub(crate) async fn retrieve(State(st): State<Arc<Shared>>, Path(slug): Path<String>) -> ApiResult {
    let s = st.store();
    respond(&s, find(&s, &slug)?, 200)
}

/// `PUT`/`PATCH /core/applications/{slug}/` (the slug itself may change).
pub(crate) async fn update(
    State(st): State<Arc<Shared>>,
    Path(slug): Path<String>,
    method: Method,
    bytes: Bytes,
) -> ApiResult {
    let mut s = st.store();
    let pk = find(&s, &slug)?;
    let mut c = Checker::new(&method, ONE, &bytes)?;
    check(&s, &mut c, Some(pk))?;
    if let Some(a) = s.apps.iter_mut().find(|a| a.pk == pk) {
        fields::merge(&mut a.fields, &c.body);
    }
    respond(&s, pk, 200)
}

/// `DELETE /core/applications/{slug}/`: cascades to the bindings that target it.
pub(crate) async fn destroy(State(st): State<Arc<Shared>>, Path(slug): Path<String>) -> ApiResult {
    let mut s = st.store();
    let pk = find(&s, &slug)?;
    let pbm = s.apps.iter().find(|a| a.pk == pk).map(|a| a.pbm_uuid);
    s.apps.retain(|a| a.pk != pk);
    s.bindings
        .retain(|b| fields::uuid(&b.fields, "target") != pbm);
    Ok(no_content())
}

/// `GET /core/applications/{slug}/check_access/?for_user=<id>` → `PolicyTestResult`.
/// authentik answers a bad or unknown `for_user` with a 400 keyed `for_user`.
pub(crate) async fn check_access(
    State(st): State<Arc<Shared>>,
    Path(slug): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let q = Query::parse(raw.as_deref());
    let s = st.store();
    let app = s.app(&slug).ok_or_else(|| ApiError::not_found(MODEL))?;
    // The fake has no "current user" behind the token, so `for_user` is required here.
    let raw_user = q
        .get("for_user")
        .ok_or_else(|| ApiError::field("for_user", "This field is required."))?;
    let pk: i64 = raw_user
        .parse()
        .map_err(|_| ApiError::field("for_user", "for_user must be numerical"))?;
    let user = s
        .user(pk)
        .ok_or_else(|| ApiError::field("for_user", "User not found"))?;
    let (passing, messages) = s.check_access(app, user);
    Ok(ok(
        &json!({"passing": passing, "messages": messages, "log_messages": []}),
    ))
}
