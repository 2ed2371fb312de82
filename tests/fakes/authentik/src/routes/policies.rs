//! `/policies/bindings/`: CRUD and the exactly-one-of rule. Group bindings are NOT unique —
//! like authentik, which only enforces `(policy, target, order)` — so a client's
//! look-before-create is what gets tested.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::Method;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Checker, uuid_key};
use crate::error::{ApiError, ApiResult, created, invalid_pk_msg, no_content, ok};
use crate::fields;
use crate::page::{Query, paginate};
use crate::render;
use crate::server::Shared;
use crate::store::{Binding, Store};

const LIST: &str = "/policies/bindings/";
const ONE: &str = "/policies/bindings/{policy_binding_uuid}/";
const MODEL: &str = "PolicyBinding";

/// `GET /policies/bindings/` with `target`, `group`, `user`, `policy`, `enabled` filters.
pub(crate) async fn list(State(st): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> ApiResult {
    let q = Query::parse(raw.as_deref());
    let target = q.uuid("target")?;
    let group = q.uuid("group")?;
    let policy = q.uuid("policy")?;
    let enabled = q.boolean("enabled")?;
    let user = match q.get("user").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .map_err(|_| ApiError::field("user", "Enter a number."))?,
        ),
    };
    let items = {
        let s = st.store();
        s.bindings
            .iter()
            .filter(|b| target.is_none_or(|t| fields::uuid(&b.fields, "target") == Some(t)))
            .filter(|b| group.is_none_or(|g| fields::uuid(&b.fields, "group") == Some(g)))
            .filter(|b| policy.is_none_or(|p| fields::uuid(&b.fields, "policy") == Some(p)))
            .filter(|b| user.is_none_or(|u| fields::int(&b.fields, "user") == Some(u)))
            .filter(|b| enabled.is_none_or(|e| fields::flag(&b.fields, "enabled") == e))
            .map(|b| render::binding(&s, b))
            .collect()
    };
    Ok(ok(&paginate(items, &q, st.config.page_size)?))
}

/// Field checks, then the cross-field rule on the merged result (`fields` = stored or
/// defaults, overlaid with the body).
fn check(s: &Store, c: &mut Checker, fields: &Map<String, Value>) -> Result<(), ApiError> {
    let unknown_target = c
        .get("target")
        .and_then(Value::as_str)
        .filter(|t| !s.apps.iter().any(|a| a.pbm_uuid.to_string() == *t));
    if let Some(t) = unknown_target.map(str::to_owned) {
        c.add("target", invalid_pk_msg(t));
    }
    let unknown_group = c
        .get("group")
        .and_then(Value::as_str)
        .filter(|g| Uuid::parse_str(g).ok().and_then(|g| s.group(g)).is_none());
    if let Some(g) = unknown_group.map(str::to_owned) {
        c.add("group", invalid_pk_msg(g));
    }
    if let Some(u) = c
        .get("user")
        .and_then(Value::as_i64)
        .filter(|u| s.user(*u).is_none())
    {
        c.add("user", invalid_pk_msg(u));
    }
    // The fake has no policies, so any policy is unknown.
    if let Some(p) = c.get("policy").and_then(Value::as_str).map(str::to_owned) {
        c.add("policy", invalid_pk_msg(p));
    }
    c.fields_done()?;
    let mut merged = fields.clone();
    fields::merge(&mut merged, &c.body);
    let set = ["policy", "group", "user"]
        .iter()
        .filter(|k| merged.get(**k).is_some_and(|v| !v.is_null()))
        .count();
    match set {
        0 => Err(ApiError::non_field(
            "One of 'policy', 'group' or 'user' must be set.",
        )),
        1 => Ok(()),
        _ => Err(ApiError::non_field(
            "Only one of 'policy', 'group' or 'user' can be set.",
        )),
    }
}

fn respond(s: &Store, pk: Uuid, status: u16) -> ApiResult {
    let b = s
        .bindings
        .iter()
        .find(|b| b.pk == pk)
        .ok_or_else(|| ApiError::not_found(MODEL))?;
    let body = render::binding(s, b);
    Ok(if status == 201 {
        created(&body)
    } else {
        ok(&body)
    })
}

/// `POST /policies/bindings/`. Duplicates are created silently.
pub(crate) async fn create(State(st): State<Arc<Shared>>, bytes: Bytes) -> ApiResult {
    let mut c = Checker::new(&Method::POST, LIST, &bytes)?;
    let mut s = st.store();
    let mut fields = fields::binding_defaults();
    check(&s, &mut c, &fields)?;
    fields::merge(&mut fields, &c.body);
    let pk = Uuid::new_v4();
    s.bindings.push(Binding { pk, fields });
    respond(&s, pk, 201)
}

/// `GET /policies/bindings/{policy_binding_uuid}/`.
pub(crate) async fn retrieve(State(st): State<Arc<Shared>>, Path(key): Path<String>) -> ApiResult {
    let pk = uuid_key(&key, MODEL)?;
    respond(&st.store(), pk, 200)
}

/// `PUT`/`PATCH /policies/bindings/{policy_binding_uuid}/` (e.g. move to another group).
pub(crate) async fn update(
    State(st): State<Arc<Shared>>,
    Path(key): Path<String>,
    method: Method,
    bytes: Bytes,
) -> ApiResult {
    let pk = uuid_key(&key, MODEL)?;
    let mut s = st.store();
    let stored = s
        .bindings
        .iter()
        .find(|b| b.pk == pk)
        .map(|b| b.fields.clone())
        .ok_or_else(|| ApiError::not_found(MODEL))?;
    let mut c = Checker::new(&method, ONE, &bytes)?;
    check(&s, &mut c, &stored)?;
    if let Some(b) = s.bindings.iter_mut().find(|b| b.pk == pk) {
        fields::merge(&mut b.fields, &c.body);
    }
    respond(&s, pk, 200)
}

/// `DELETE /policies/bindings/{policy_binding_uuid}/`.
pub(crate) async fn destroy(State(st): State<Arc<Shared>>, Path(key): Path<String>) -> ApiResult {
    let pk = uuid_key(&key, MODEL)?;
    let mut s = st.store();
    let before = s.bindings.len();
    s.bindings.retain(|b| b.pk != pk);
    if s.bindings.len() == before {
        return Err(ApiError::not_found(MODEL));
    }
    Ok(no_content())
}
