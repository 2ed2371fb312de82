//! `/core/users/`: CRUD, `set_password`, username uniqueness (email is NOT unique).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::Method;
use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;

use super::{Checker, int_key};
use crate::error::{ApiError, ApiResult, created, invalid_pk_msg, no_content, ok};
use crate::fields;
use crate::page::{Query, json_subset, paginate};
use crate::render::{self, Include};
use crate::server::Shared;
use crate::store::{Store, User};

const LIST: &str = "/core/users/";
const ONE: &str = "/core/users/{id}/";
const MODEL: &str = "User";

/// `GET /core/users/`: exact `username`, `email`, `name`, `path`, `uuid`; JSON-subset
/// `attributes`; `groups_by_pk`/`type` (any of); `is_active`, `include_groups`.
pub(crate) async fn list(State(st): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> ApiResult {
    let q = Query::parse(raw.as_deref());
    let attrs = q.attributes()?;
    let active = q.boolean("is_active")?;
    let inc = Include {
        users: true,
        groups: q.boolean("include_groups")?.unwrap_or(true),
    };
    let mut by_group = Vec::new();
    for v in q.all("groups_by_pk") {
        by_group.push(
            Uuid::parse_str(v)
                .map_err(|_| ApiError::field("groups_by_pk", "Must be a valid UUID."))?,
        );
    }
    let types = q.all("type");
    let uuid = q.uuid("uuid")?;
    let exact = |u: &User, key: &str| q.get(key).is_none_or(|v| fields::text(&u.fields, key) == v);
    let items = {
        let s = st.store();
        s.users
            .iter()
            .filter(|u| {
                ["username", "email", "name", "path"]
                    .iter()
                    .all(|k| exact(u, k))
            })
            .filter(|u| {
                attrs.as_ref().is_none_or(|a| {
                    u.fields
                        .get("attributes")
                        .is_some_and(|ua| json_subset(a, ua))
                })
            })
            .filter(|u| active.is_none_or(|b| fields::flag(&u.fields, "is_active") == b))
            .filter(|u| {
                by_group.is_empty() || s.groups_of(u.pk).iter().any(|g| by_group.contains(g))
            })
            .filter(|u| types.is_empty() || types.contains(&fields::text(&u.fields, "type")))
            .filter(|u| uuid.is_none_or(|id| u.uuid == id))
            .map(|u| render::user(&s, u, inc))
            .collect()
    };
    Ok(ok(&paginate(items, &q, st.config.page_size)?))
}

/// Field checks shared by create and update; `this` is the user being updated.
/// Returns the new group list when the body sets `groups`.
fn check(s: &Store, c: &mut Checker, this: Option<i64>) -> Result<Option<Vec<Uuid>>, ApiError> {
    if let Some(name) = c.get("username").and_then(Value::as_str) {
        let taken = s
            .users
            .iter()
            .any(|u| Some(u.pk) != this && fields::text(&u.fields, "username") == name);
        if taken {
            c.add("username", "This field must be unique.");
        }
    }
    let wanted: Vec<String> = c.strs("groups").into_iter().map(str::to_owned).collect();
    let mut groups = Vec::new();
    for g in wanted {
        match Uuid::parse_str(&g).ok().filter(|g| s.group(*g).is_some()) {
            Some(g) => groups.push(g),
            None => {
                c.add("groups", invalid_pk_msg(g));
                break;
            }
        }
    }
    // The fake has no RBAC roles, so any role is unknown.
    if let Some(r) = c.strs("roles").first().map(|r| (*r).to_owned()) {
        c.add("roles", invalid_pk_msg(r));
    }
    if let Some(path) = c.get("path").and_then(Value::as_str) {
        if path.starts_with('/') || path.ends_with('/') {
            c.add("path", "No leading or trailing slashes allowed.");
        } else if path.split('/').any(str::is_empty) {
            c.add("path", "No empty segments in user path allowed.");
        }
    }
    if c.get("type").and_then(Value::as_str) == Some("internal_service_account") {
        c.add(
            "type",
            "Setting a user to internal service account is not allowed.",
        );
    }
    c.fields_done()?;
    Ok(c.get("groups").map(|_| groups))
}

fn set_groups(s: &mut Store, user: i64, groups: Option<Vec<Uuid>>) {
    if let Some(groups) = groups {
        s.members.retain(|(_, u)| *u != user);
        for g in groups {
            s.add_member(g, user);
        }
    }
}

fn respond(s: &Store, pk: i64, status: u16) -> ApiResult {
    let u = s.user(pk).ok_or_else(|| ApiError::not_found(MODEL))?;
    let body = render::user(s, u, Include::default());
    Ok(if status == 201 {
        created(&body)
    } else {
        ok(&body)
    })
}

/// `POST /core/users/`. The user starts with an unusable password.
pub(crate) async fn create(State(st): State<Arc<Shared>>, bytes: Bytes) -> ApiResult {
    let mut c = Checker::new(&Method::POST, LIST, &bytes)?;
    let mut s = st.store();
    let groups = check(&s, &mut c, None)?;
    let mut fields = fields::user_defaults();
    fields::merge(&mut fields, &c.body);
    let pk = s.next_user_pk();
    let now = Utc::now();
    s.users.push(User {
        pk,
        uuid: Uuid::new_v4(),
        fields,
        password: None,
        date_joined: now,
        password_change_date: now,
        last_updated: now,
    });
    set_groups(&mut s, pk, groups);
    respond(&s, pk, 201)
}

/// `GET /core/users/{id}/`.
pub(crate) async fn retrieve(State(st): State<Arc<Shared>>, Path(key): Path<String>) -> ApiResult {
    let pk = int_key(&key, MODEL)?;
    respond(&st.store(), pk, 200)
}

/// `PUT`/`PATCH /core/users/{id}/` (e.g. `{"is_active": false}` to suspend).
pub(crate) async fn update(
    State(st): State<Arc<Shared>>,
    Path(key): Path<String>,
    method: Method,
    bytes: Bytes,
) -> ApiResult {
    let pk = int_key(&key, MODEL)?;
    let mut s = st.store();
    s.user(pk).ok_or_else(|| ApiError::not_found(MODEL))?;
    let mut c = Checker::new(&method, ONE, &bytes)?;
    let groups = check(&s, &mut c, Some(pk))?;
    if let Some(u) = s.users.iter_mut().find(|u| u.pk == pk) {
        fields::merge(&mut u.fields, &c.body);
        u.last_updated = Utc::now();
    }
    set_groups(&mut s, pk, groups);
    respond(&s, pk, 200)
}

/// `DELETE /core/users/{id}/`.
pub(crate) async fn destroy(State(st): State<Arc<Shared>>, Path(key): Path<String>) -> ApiResult {
    let pk = int_key(&key, MODEL)?;
    if st.store().delete_user(pk) {
        Ok(no_content())
    } else {
        Err(ApiError::not_found(MODEL))
    }
}

/// `POST /core/users/{id}/set_password/` `{"password": …}` → 204. Any failure (here: a
/// missing or empty password) is a 400 with an EMPTY body, as authentik answers it.
pub(crate) async fn set_password(
    State(st): State<Arc<Shared>>,
    Path(key): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let pk = int_key(&key, MODEL)?;
    let mut s = st.store();
    s.user(pk).ok_or_else(|| ApiError::not_found(MODEL))?;
    let c = Checker::new(&Method::POST, "/core/users/{id}/set_password/", &bytes)
        .map_err(|_| ApiError::EmptyBadRequest)?;
    c.fields_done().map_err(|_| ApiError::EmptyBadRequest)?;
    let password = c.body.get("password").and_then(Value::as_str).unwrap_or("");
    if password.is_empty() {
        return Err(ApiError::EmptyBadRequest);
    }
    if let Some(u) = s.users.iter_mut().find(|u| u.pk == pk) {
        u.password = Some(password.to_owned());
        u.password_change_date = Utc::now();
    }
    Ok(no_content())
}
