//! The names every Authentik object of a tenant gets, derived from the tenant, and the markers
//! that prove an object found under such a name is this tenant's.

use serde_json::{Value, json};

/// Frappe's callback for a custom Social Login Key named `Authentik` (the doc name is
/// `frappe.scrub("Authentik")`, the last path segment).
pub const REDIRECT_PATH: &str = "/api/method/frappe.integrations.oauth2_logins.custom/authentik";
/// The Social Login Key's provider name (its document name is `authentik`).
pub const SOCIAL_LOGIN_PROVIDER: &str = "Authentik";
/// The Social Login Key's document name.
pub const SOCIAL_LOGIN_KEY: &str = "authentik";

/// The derived names of one tenant's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Tenant id (the ownership marker everywhere).
    pub tenant_id: String,
    /// `tenant-<subdomain>`: group name, application slug and OAuth2 client id.
    pub slug: String,
    /// Provider name: the slug plus the tenant id, so a provider left by an earlier tenant of
    /// the same subdomain is never mistaken for ours.
    pub provider: String,
    /// Application description carrying the marker (applications have no attributes).
    pub app_marker: String,
    /// The owner's username (their email).
    pub username: String,
    /// Directory path of the tenant's users.
    pub user_path: String,
}

impl Names {
    /// The names of `tenant_id`'s objects.
    pub fn new(tenant_id: &str, subdomain: &str, owner_email: &str) -> Self {
        let slug = format!("tenant-{subdomain}");
        Self {
            tenant_id: tenant_id.to_owned(),
            provider: format!("{slug} ({tenant_id})"),
            app_marker: format!("Tenantry tenant {tenant_id}"),
            username: owner_email.to_owned(),
            user_path: format!("tenants/{subdomain}"),
            slug,
        }
    }

    /// The attributes every group and user of the tenant carries.
    pub fn attributes(&self) -> Value {
        json!({ "tenant_id": self.tenant_id, "managed_by": "tenantry" })
    }

    /// Whether `attributes` mark an object as this tenant's.
    pub fn owns(&self, attributes: &Value) -> bool {
        attributes.get("tenant_id").and_then(Value::as_str) == Some(self.tenant_id.as_str())
    }

    /// The exact redirect URI Authentik must allow for the site at `site_url`.
    pub fn redirect_uri(site_url: &str) -> String {
        format!("{}{REDIRECT_PATH}", site_url.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_tenant() {
        let n = Names::new("0190-abc", "acme", "jane@acme.example");
        assert_eq!(n.slug, "tenant-acme");
        assert_eq!(n.provider, "tenant-acme (0190-abc)");
        assert!(n.owns(&n.attributes()));
        assert!(!n.owns(&json!({"tenant_id": "other"})));
        assert!(!n.owns(&json!({})));
        assert_eq!(
            Names::redirect_uri("https://acme.example/"),
            "https://acme.example/api/method/frappe.integrations.oauth2_logins.custom/authentik"
        );
    }
}
