//! The API representation of each object: every field of the response schema, writable ones
//! from the stored map, read-only ones computed like authentik's serializers do.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::fields;
use crate::store::{App, Binding, Cert, Flow, Group, Provider, ScopeMapping, Store, User};

/// Which optional relations a list or retrieve asks for (`include_*` query parameters).
#[derive(Clone, Copy)]
pub(crate) struct Include {
    pub users: bool,
    pub groups: bool,
}

impl Default for Include {
    fn default() -> Self {
        Include {
            users: true,
            groups: true,
        }
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn with(fields: &Map<String, Value>, extra: Value) -> Value {
    let mut out = fields.clone();
    if let Value::Object(extra) = extra {
        out.extend(extra);
    }
    Value::Object(out)
}

/// `PartialGroup`: a group without its relations.
pub(crate) fn partial_group(g: &Group) -> Value {
    json!({"pk": g.uuid, "num_pk": g.num_pk, "name": g.fields.get("name"),
        "is_superuser": g.fields.get("is_superuser"), "attributes": g.fields.get("attributes")})
}

/// `RelatedGroup`: a parent or child in the hierarchy.
fn related_group(g: &Group) -> Value {
    json!({"pk": g.uuid, "group_uuid": g.uuid, "name": g.fields.get("name"),
        "is_superuser": g.fields.get("is_superuser"), "attributes": g.fields.get("attributes")})
}

/// `Group`. `*_obj` relations that were not asked for are null, as in authentik.
pub(crate) fn group(s: &Store, g: &Group, inc: Include) -> Value {
    let users = s.users_of(g.uuid);
    let users_obj = inc.users.then(|| {
        users
            .iter()
            .filter_map(|pk| s.user(*pk))
            .map(partial_user)
            .collect::<Vec<_>>()
    });
    let children: Vec<_> = s
        .groups
        .iter()
        .filter(|c| fields::uuids(&c.fields, "parents").contains(&g.uuid))
        .map(|c| c.uuid)
        .collect();
    let parents_obj: Vec<Value> = fields::uuids(&g.fields, "parents")
        .into_iter()
        .filter_map(|p| s.group(p))
        .map(related_group)
        .collect();
    with(
        &g.fields,
        json!({"pk": g.uuid, "num_pk": g.num_pk, "users": users, "users_obj": users_obj,
            "parents_obj": parents_obj, "roles_obj": [], "inherited_roles_obj": null,
            "children": children, "children_obj": null}),
    )
}

/// authentik's `uid`: a sha256 over the install id and the user pk.
fn uid(u: &User) -> String {
    hex::encode(Sha256::digest(format!("authentik-fake-install-{}", u.pk)))
}

/// `PartialUser`: a user without relations.
pub(crate) fn partial_user(u: &User) -> Value {
    let f = &u.fields;
    json!({"pk": u.pk, "username": f.get("username"), "name": f.get("name"),
        "is_active": f.get("is_active"), "last_login": f.get("last_login"), "email": f.get("email"),
        "attributes": f.get("attributes"), "uid": uid(u)})
}

/// `User`. `is_superuser` is inherited from the groups, as authentik computes it.
pub(crate) fn user(s: &Store, u: &User, inc: Include) -> Value {
    let groups = s.groups_of(u.pk);
    let group_objs: Vec<&Group> = groups.iter().filter_map(|g| s.group(*g)).collect();
    let is_superuser = group_objs
        .iter()
        .any(|g| fields::flag(&g.fields, "is_superuser"));
    let groups_obj = inc.groups.then(|| {
        group_objs
            .iter()
            .map(|g| partial_group(g))
            .collect::<Vec<_>>()
    });
    with(
        &u.fields,
        json!({"pk": u.pk, "groups": groups, "groups_obj": groups_obj, "roles_obj": [],
            "date_joined": ts(u.date_joined), "is_superuser": is_superuser,
            "avatar": "/static/dist/assets/images/user_default.png", "uid": uid(u), "uuid": u.uuid,
            "password_change_date": ts(u.password_change_date), "last_updated": ts(u.last_updated)}),
    )
}

/// The `Provider` part shared by `OAuth2Provider` and `Application.provider_obj`.
fn provider_base(s: &Store, p: &Provider) -> Value {
    let app = s.app_of_provider(p.pk);
    let f = &p.fields;
    json!({"pk": p.pk, "name": f.get("name"), "authentication_flow": f.get("authentication_flow"),
        "authorization_flow": f.get("authorization_flow"), "invalidation_flow": f.get("invalidation_flow"),
        "property_mappings": f.get("property_mappings"), "component": "ak-provider-oauth2-form",
        "assigned_application_slug": app.map(|a| fields::text(&a.fields, "slug")),
        "assigned_application_name": app.map(|a| fields::text(&a.fields, "name")),
        "assigned_backchannel_application_slug": null, "assigned_backchannel_application_name": null,
        "verbose_name": "OAuth2/OpenID Provider", "verbose_name_plural": "OAuth2/OpenID Providers",
        "meta_model_name": "authentik_providers_oauth2.oauth2provider"})
}

/// `OAuth2Provider`, including the plain-text `client_secret` (authentik returns it on GET).
pub(crate) fn provider(s: &Store, p: &Provider) -> Value {
    let mut out = Value::Object(p.fields.clone());
    if let (Value::Object(out), Value::Object(base)) = (&mut out, provider_base(s, p)) {
        out.extend(base);
        // Entries are stored as sent; the response always carries the defaulted type.
        if let Some(Value::Array(uris)) = out.get_mut("redirect_uris") {
            for uri in uris.iter_mut().filter_map(Value::as_object_mut) {
                uri.entry("redirect_uri_type")
                    .or_insert_with(|| json!("authorization"));
            }
        }
    }
    out
}

/// `Application`. `launch_url` falls back to null: an OAuth2 provider has no launch URL.
pub(crate) fn app(s: &Store, a: &App) -> Value {
    let f = &a.fields;
    let provider_obj = fields::int(f, "provider")
        .and_then(|pk| s.provider(pk))
        .map(|p| provider_base(s, p));
    let launch = Some(fields::text(f, "meta_launch_url")).filter(|u| !u.is_empty());
    with(
        f,
        json!({"pk": a.pk, "pbm_uuid": a.pbm_uuid, "provider_obj": provider_obj,
            "backchannel_providers_obj": [], "launch_url": launch, "meta_icon_url": null,
            "meta_icon_themed_urls": null}),
    )
}

/// `PolicyBinding`.
pub(crate) fn binding(s: &Store, b: &Binding) -> Value {
    let f = &b.fields;
    let group_obj = fields::uuid(f, "group")
        .and_then(|g| s.group(g))
        .map(partial_group);
    let user_obj = fields::int(f, "user")
        .and_then(|u| s.user(u))
        .map(partial_user);
    with(
        f,
        json!({"pk": b.pk, "policy_obj": null, "group_obj": group_obj, "user_obj": user_obj,
            "expires": null, "expiring": false}),
    )
}

/// `Flow`.
pub(crate) fn flow(f: &Flow) -> Value {
    let authentication = if f.designation == "authorization" {
        "require_authenticated"
    } else {
        "none"
    };
    json!({"pk": f.pk, "policybindingmodel_ptr_id": f.pk, "name": f.name, "slug": f.slug,
        "title": f.name, "designation": f.designation, "background": "",
        "background_url": "/static/dist/assets/images/flow_background.jpg",
        "background_themed_urls": null, "stages": [], "policies": [], "cache_count": 0,
        "policy_engine_mode": "any", "compatibility_mode": false,
        "export_url": format!("/api/v3/flows/instances/{}/export/", f.slug),
        "layout": "stacked", "denied_action": "message_continue", "authentication": authentication})
}

/// `ScopeMapping`.
pub(crate) fn scope_mapping(m: &ScopeMapping) -> Value {
    json!({"pk": m.pk, "managed": format!("goauthentik.io/providers/oauth2/scope-{}", m.scope),
        "name": format!("authentik default OAuth Mapping: {}", m.label),
        "expression": format!("# fake mapping for scope {}\nreturn {{}}", m.scope),
        "component": "ak-property-mapping-provider-scope-form", "verbose_name": "Scope Mapping",
        "verbose_name_plural": "Scope Mappings", "meta_model_name": "authentik_providers_oauth2.scopemapping",
        "scope_name": m.scope, "description": ""})
}

/// `CertificateKeyPair`.
pub(crate) fn cert(c: &Cert) -> Value {
    let fp = hex::encode(Sha256::digest(c.pk.as_bytes()));
    json!({"pk": c.pk, "name": c.name, "fingerprint_sha256": fp, "fingerprint_sha1": &fp[..40],
        "cert_expiry": "2027-01-01T00:00:00Z", "cert_subject": format!("CN={},O=authentik,OU=Self-signed", c.name),
        "private_key_available": true, "key_type": "rsa",
        "certificate_download_url": format!("/api/v3/crypto/certificatekeypairs/{}/view_certificate/?download", c.pk),
        "private_key_download_url": format!("/api/v3/crypto/certificatekeypairs/{}/view_private_key/?download", c.pk),
        "managed": null})
}
