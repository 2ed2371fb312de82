//! `/core/groups/`: CRUD, membership actions, global name uniqueness and delete cascades.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::Method;
use serde_json::Value;
use uuid::Uuid;

use super::{Checker, uuid_key};
use crate::error::{ApiError, ApiResult, created, invalid_pk_msg, no_content, ok};
use crate::fields;
use crate::page::{Query, json_subset, paginate};
use crate::render::{self, Include};
use crate::server::Shared;
use crate::store::{Group, Store};

const LIST: &str = "/core/groups/";
const ONE: &str = "/core/groups/{group_uuid}/";
const MODEL: &str = "Group";

/// `GET /core/groups/`: exact `name`, JSON-subset `attributes`, `is_superuser`,
/// `members_by_pk`/`members_by_username` (any of), `include_users`.
pub(crate) async fn list(State(st): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> ApiResult {
    let q = Query::parse(raw.as_deref());
    let attrs = q.attributes()?;
    let superuser = q.boolean("is_superuser")?;
    let inc = Include {
        users: q.boolean("include_users")?.unwrap_or(true),
        groups: true,
    };
    let by_pk: Vec<i64> = q
        .all("members_by_pk")
        .iter()
        .filter_map(|v| v.parse().ok())
        .collect();
    let by_name = q.all("members_by_username");
    let items = {
        let s = st.store();
        s.groups
            .iter()
            .filter(|g| {
                q.get("name")
                    .is_none_or(|n| fields::text(&g.fields, "name") == n)
            })
            .filter(|g| {
                attrs.as_ref().is_none_or(|a| {
                    g.fields
                        .get("attributes")
                        .is_some_and(|ga| json_subset(a, ga))
                })
            })
            .filter(|g| superuser.is_none_or(|b| fields::flag(&g.fields, "is_superuser") == b))
            .filter(|g| {
                (by_pk.is_empty() && by_name.is_empty())
                    || s.users_of(g.uuid)
                        .into_iter()
                        .filter_map(|u| s.user(u))
                        .any(|u| {
                            by_pk.contains(&u.pk)
                                || by_name.contains(&fields::text(&u.fields, "username"))
                        })
            })
            .map(|g| render::group(&s, g, inc))
            .collect()
    };
    Ok(ok(&paginate(items, &q, st.config.page_size)?))
}

/// Field checks shared by create and update; `this` is the group being updated.
/// Returns the new member list when the body sets `users`.
fn check(s: &Store, c: &mut Checker, this: Option<Uuid>) -> Result<Option<Vec<i64>>, ApiError> {
    if let Some(name) = c.get("name").and_then(Value::as_str) {
        let taken = s
            .groups
            .iter()
            .any(|g| Some(g.uuid) != this && fields::text(&g.fields, "name") == name);
        if taken {
            c.add("name", "This field must be unique.");
        }
    }
    let missing_parent = c.strs("parents").into_iter().find(|p| {
        Uuid::parse_str(p)
            .ok()
            .is_none_or(|p| Some(p) == this || s.group(p).is_none())
    });
    if let Some(p) = missing_parent.map(str::to_owned) {
        c.add("parents", invalid_pk_msg(p));
    }
    // The fake has no RBAC roles, so any role is unknown.
    if let Some(r) = c.strs("roles").first().map(|r| (*r).to_owned()) {
        c.add("roles", invalid_pk_msg(r));
    }
    let users: Option<Vec<i64>> = c
        .get("users")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect());
    if let Some(missing) = users.iter().flatten().find(|u| s.user(**u).is_none()) {
        c.add("users", invalid_pk_msg(missing));
    }
    c.fields_done()?;
    Ok(users)
}

fn set_members(s: &mut Store, group: Uuid, users: Option<Vec<i64>>) {
    if let Some(users) = users {
        s.members.retain(|(g, _)| *g != group);
        for u in users {
            s.add_member(group, u);
        }
    }
}

fn respond(s: &Store, uuid: Uuid, status: u16) -> ApiResult {
    let g = s.group(uuid).ok_or_else(|| ApiError::not_found(MODEL))?;
    let body = render::group(s, g, Include::default());
    Ok(if status == 201 {
        created(&body)
    } else {
        ok(&body)
    })
}

/// `POST /core/groups/`.
pub(crate) async fn create(State(st): State<Arc<Shared>>, bytes: Bytes) -> ApiResult {
    let mut c = Checker::new(&Method::POST, LIST, &bytes)?;
    let mut s = st.store();
    let users = check(&s, &mut c, None)?;
    let mut fields = fields::group_defaults();
    fields::merge(&mut fields, &c.body);
    let uuid = Uuid::new_v4();
    let num_pk = s.next_group_num();
    s.groups.push(Group {
        uuid,
        num_pk,
        fields,
    });
    set_members(&mut s, uuid, users);
    respond(&s, uuid, 201)
}

/// `GET /core/groups/{group_uuid}/`.
pub(crate) async fn retrieve(
    State(st): State<Arc<Shared>>,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let uuid = uuid_key(&key, MODEL)?;
    let q = Query::parse(raw.as_deref());
    let inc = Include {
        users: q.boolean("include_users")?.unwrap_or(true),
        groups: true,
    };
    let s = st.store();
    let g = s.group(uuid).ok_or_else(|| ApiError::not_found(MODEL))?;
    Ok(ok(&render::group(&s, g, inc)))
}

/// `PUT`/`PATCH /core/groups/{group_uuid}/`: DRF looks the object up before validating.
pub(crate) async fn update(
    State(st): State<Arc<Shared>>,
    Path(key): Path<String>,
    method: Method,
    bytes: Bytes,
) -> ApiResult {
    let uuid = uuid_key(&key, MODEL)?;
    let mut s = st.store();
    s.group(uuid).ok_or_else(|| ApiError::not_found(MODEL))?;
    let mut c = Checker::new(&method, ONE, &bytes)?;
    let users = check(&s, &mut c, Some(uuid))?;
    if let Some(g) = s.groups.iter_mut().find(|g| g.uuid == uuid) {
        fields::merge(&mut g.fields, &c.body);
    }
    set_members(&mut s, uuid, users);
    respond(&s, uuid, 200)
}

/// `DELETE /core/groups/{group_uuid}/`: cascades to memberships and bindings, not users.
pub(crate) async fn destroy(State(st): State<Arc<Shared>>, Path(key): Path<String>) -> ApiResult {
    let uuid = uuid_key(&key, MODEL)?;
    if st.store().delete_group(uuid) {
        Ok(no_content())
    } else {
        Err(ApiError::not_found(MODEL))
    }
}

/// The group and user of an `add_user`/`remove_user` call; unknown ones are 404s.
fn member_call(
    s: &Store,
    template: &str,
    key: &str,
    bytes: &Bytes,
) -> Result<(Uuid, i64), ApiError> {
    let uuid = uuid_key(key, MODEL)?;
    s.group(uuid).ok_or_else(|| ApiError::not_found(MODEL))?;
    let c = Checker::new(&Method::POST, template, bytes)?;
    c.fields_done()?;
    // authentik raises Http404 when the user is unknown (or not visible to the caller).
    match c
        .body
        .get("pk")
        .and_then(Value::as_i64)
        .filter(|pk| s.user(*pk).is_some())
    {
        Some(pk) => Ok((uuid, pk)),
        None => Err(ApiError::detail(404, "Not found.")),
    }
}

/// `POST /core/groups/{group_uuid}/add_user/` `{"pk": int}` → 204, idempotent.
pub(crate) async fn add_user(
    State(st): State<Arc<Shared>>,
    Path(key): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let mut s = st.store();
    let (group, user) = member_call(&s, "/core/groups/{group_uuid}/add_user/", &key, &bytes)?;
    s.add_member(group, user);
    Ok(no_content())
}

/// `POST /core/groups/{group_uuid}/remove_user/` `{"pk": int}` → 204, idempotent.
pub(crate) async fn remove_user(
    State(st): State<Arc<Shared>>,
    Path(key): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let mut s = st.store();
    let (group, user) = member_call(&s, "/core/groups/{group_uuid}/remove_user/", &key, &bytes)?;
    s.members.retain(|m| *m != (group, user));
    Ok(no_content())
}
