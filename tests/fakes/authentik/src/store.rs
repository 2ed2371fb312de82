//! The in-memory objects of the fake and the rules that span them (membership, access).
//!
//! Writable fields are kept as the JSON the schema validated, with every field's server default
//! filled in: PUT and PATCH then become "merge the body into the map", which is exactly what
//! DRF's `serializer.save()` does on update (missing optional fields keep their value).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::fields::{flag, int, text, uuid, uuids};

/// A group. Members live in [`Store::members`], not here.
pub(crate) struct Group {
    pub uuid: Uuid,
    pub num_pk: i64,
    pub fields: Map<String, Value>,
}

/// A user. Group memberships live in [`Store::members`].
pub(crate) struct User {
    pub pk: i64,
    pub uuid: Uuid,
    pub fields: Map<String, Value>,
    /// `None` is Django's unusable password: every user starts that way.
    pub password: Option<String>,
    pub date_joined: DateTime<Utc>,
    pub password_change_date: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
}

/// An OAuth2/OpenID provider.
pub(crate) struct Provider {
    pub pk: i64,
    pub fields: Map<String, Value>,
}

/// An application. `pbm_uuid` is what policy bindings target.
pub(crate) struct App {
    pub pk: Uuid,
    pub pbm_uuid: Uuid,
    pub fields: Map<String, Value>,
}

/// A policy binding (group, user or policy bound to an application).
pub(crate) struct Binding {
    pub pk: Uuid,
    pub fields: Map<String, Value>,
}

/// A seeded flow (read-only in the fake).
pub(crate) struct Flow {
    pub pk: Uuid,
    pub slug: &'static str,
    pub name: &'static str,
    pub designation: &'static str,
}

/// A seeded OAuth2 scope mapping.
pub(crate) struct ScopeMapping {
    pub pk: Uuid,
    pub scope: &'static str,
    pub label: &'static str,
}

/// A seeded certificate-key pair.
pub(crate) struct Cert {
    pub pk: Uuid,
    pub name: &'static str,
}

/// Every object of the fake, in creation order (which is also the list order).
pub(crate) struct Store {
    pub groups: Vec<Group>,
    pub users: Vec<User>,
    /// (group, user) pairs, in the order they were added.
    pub members: Vec<(Uuid, i64)>,
    pub providers: Vec<Provider>,
    pub apps: Vec<App>,
    pub bindings: Vec<Binding>,
    pub flows: Vec<Flow>,
    pub mappings: Vec<ScopeMapping>,
    pub certs: Vec<Cert>,
    next_user: i64,
    next_provider: i64,
    next_group_num: i64,
}

/// Seeds get name-based uuids so they are stable across runs (handy for `tenantry dev`).
fn seed_uuid(name: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("authentik-fake:{name}").as_bytes(),
    )
}

impl Store {
    /// The blueprint defaults a fresh authentik has that Tenantry looks up.
    pub fn seeded() -> Self {
        let flows = [
            (
                "default-provider-authorization-implicit-consent",
                "Authorize Application",
                "authorization",
            ),
            (
                "default-provider-authorization-explicit-consent",
                "Authorize Application",
                "authorization",
            ),
            (
                "default-provider-invalidation-flow",
                "Logged out of application",
                "invalidation",
            ),
            (
                "default-invalidation-flow",
                "Default invalidation Flow",
                "invalidation",
            ),
        ]
        .into_iter()
        .map(|(slug, name, designation)| Flow {
            pk: seed_uuid(slug),
            slug,
            name,
            designation,
        })
        .collect();
        let mappings = [
            ("openid", "OpenID 'openid'"),
            ("email", "OpenID 'email'"),
            ("profile", "OpenID 'profile'"),
            ("offline_access", "OpenID 'offline_access'"),
        ]
        .into_iter()
        .map(|(scope, label)| ScopeMapping {
            pk: seed_uuid(scope),
            scope,
            label,
        })
        .collect();
        let name = "authentik Self-signed Certificate";
        Store {
            groups: Vec::new(),
            users: Vec::new(),
            members: Vec::new(),
            providers: Vec::new(),
            apps: Vec::new(),
            bindings: Vec::new(),
            flows,
            mappings,
            certs: vec![Cert {
                pk: seed_uuid(name),
                name,
            }],
            next_user: 1,
            next_provider: 1,
            next_group_num: 1001,
        }
    }

    pub fn next_user_pk(&mut self) -> i64 {
        self.next_user += 1;
        self.next_user - 1
    }

    pub fn next_provider_pk(&mut self) -> i64 {
        self.next_provider += 1;
        self.next_provider - 1
    }

    pub fn next_group_num(&mut self) -> i64 {
        self.next_group_num += 1;
        self.next_group_num - 1
    }

    pub fn group(&self, uuid: Uuid) -> Option<&Group> {
        self.groups.iter().find(|g| g.uuid == uuid)
    }

    pub fn user(&self, pk: i64) -> Option<&User> {
        self.users.iter().find(|u| u.pk == pk)
    }

    pub fn provider(&self, pk: i64) -> Option<&Provider> {
        self.providers.iter().find(|p| p.pk == pk)
    }

    pub fn app(&self, slug: &str) -> Option<&App> {
        self.apps.iter().find(|a| text(&a.fields, "slug") == slug)
    }

    /// The application a provider is bound to (`Application.provider` is one-to-one).
    pub fn app_of_provider(&self, pk: i64) -> Option<&App> {
        self.apps
            .iter()
            .find(|a| int(&a.fields, "provider") == Some(pk))
    }

    pub fn groups_of(&self, user: i64) -> Vec<Uuid> {
        self.members
            .iter()
            .filter(|(_, u)| *u == user)
            .map(|(g, _)| *g)
            .collect()
    }

    pub fn users_of(&self, group: Uuid) -> Vec<i64> {
        self.members
            .iter()
            .filter(|(g, _)| *g == group)
            .map(|(_, u)| *u)
            .collect()
    }

    /// Idempotent M2M add, like Django's `group.users.add(user)`.
    pub fn add_member(&mut self, group: Uuid, user: i64) {
        if !self.members.contains(&(group, user)) {
            self.members.push((group, user));
        }
    }

    /// Whether `user` is in `group` or in one of its descendants (authentik's `is_member`).
    pub fn is_member(&self, group: Uuid, user: i64) -> bool {
        let mut todo = vec![group];
        let mut seen = Vec::new();
        while let Some(g) = todo.pop() {
            if seen.contains(&g) {
                continue;
            }
            seen.push(g);
            if self.members.contains(&(g, user)) {
                return true;
            }
            for child in &self.groups {
                if uuids(&child.fields, "parents").contains(&g) {
                    todo.push(child.uuid);
                }
            }
        }
        false
    }

    /// The policy-engine verdict for `user` on `app`: authentik's `check_access`.
    ///
    /// An application with no enabled binding lets EVERY user in — that is real authentik
    /// behaviour, and the reason the service must never leave an app without its binding.
    pub fn check_access(&self, app: &App, user: &User) -> (bool, Vec<String>) {
        if !flag(&user.fields, "is_active") {
            return (false, vec!["User is inactive.".to_owned()]);
        }
        let results: Vec<bool> = self
            .bindings
            .iter()
            .filter(|b| {
                uuid(&b.fields, "target") == Some(app.pbm_uuid) && flag(&b.fields, "enabled")
            })
            .map(|b| {
                let hit = if let Some(g) = uuid(&b.fields, "group") {
                    self.is_member(g, user.pk)
                } else if let Some(u) = int(&b.fields, "user") {
                    u == user.pk
                } else {
                    // The fake has no policies: a policy binding yields its failure result.
                    flag(&b.fields, "failure_result")
                };
                hit != flag(&b.fields, "negate")
            })
            .collect();
        if results.is_empty() {
            return (true, Vec::new());
        }
        let passing = if text(&app.fields, "policy_engine_mode") == "all" {
            results.iter().all(|r| *r)
        } else {
            results.iter().any(|r| *r)
        };
        (passing, Vec::new())
    }

    /// Removes a group with what its foreign keys cascade to: memberships and bindings.
    /// Users stay, and child groups merely lose the parent.
    pub fn delete_group(&mut self, uuid_: Uuid) -> bool {
        let before = self.groups.len();
        self.groups.retain(|g| g.uuid != uuid_);
        if self.groups.len() == before {
            return false;
        }
        self.members.retain(|(g, _)| *g != uuid_);
        self.bindings
            .retain(|b| uuid(&b.fields, "group") != Some(uuid_));
        for g in &mut self.groups {
            let parents: Vec<Value> = uuids(&g.fields, "parents")
                .into_iter()
                .filter(|p| *p != uuid_)
                .map(|p| json!(p))
                .collect();
            g.fields.insert("parents".into(), Value::Array(parents));
        }
        true
    }

    /// Removes a user with its memberships and user bindings.
    pub fn delete_user(&mut self, pk: i64) -> bool {
        let before = self.users.len();
        self.users.retain(|u| u.pk != pk);
        if self.users.len() == before {
            return false;
        }
        self.members.retain(|(_, u)| *u != pk);
        self.bindings.retain(|b| int(&b.fields, "user") != Some(pk));
        true
    }
}
