//! The Authentik objects Tenantry reads and the request bodies it sends, with only the fields
//! it uses (DRF ignores what we omit; we ignore what we do not read).

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A group (`/core/groups/`). Its key is a uuid.
#[derive(Debug, Clone, Deserialize)]
pub struct Group {
    /// uuid.
    pub pk: String,
    /// Globally unique name.
    pub name: String,
    /// Free-form attributes; ours carry `tenant_id`.
    #[serde(default)]
    pub attributes: Value,
}

/// `POST /core/groups/`.
#[derive(Debug, Clone, Serialize)]
pub struct NewGroup {
    /// Name.
    pub name: String,
    /// Never a superuser group.
    pub is_superuser: bool,
    /// Ownership marker and anything else.
    pub attributes: Value,
}

/// A user (`/core/users/`). Its key is an integer.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// Integer id.
    pub pk: i64,
    /// Unique username.
    pub username: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Email (not unique in Authentik).
    #[serde(default)]
    pub email: String,
    /// Inactive users cannot sign in and their sessions and tokens stop working.
    pub is_active: bool,
    /// Free-form attributes; ours carry `tenant_id`.
    #[serde(default)]
    pub attributes: Value,
    /// Group uuids.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `POST /core/users/`. A password cannot be set here; see `set_password`.
#[derive(Debug, Clone, Serialize)]
pub struct NewUser {
    /// Username (≤ 150, unique).
    pub username: String,
    /// Display name.
    pub name: String,
    /// Email.
    pub email: String,
    /// Whether the user may sign in.
    pub is_active: bool,
    /// Group uuids.
    pub groups: Vec<String>,
    /// Directory path (no leading or trailing `/`).
    pub path: String,
    /// `internal`.
    #[serde(rename = "type")]
    pub user_type: String,
    /// Ownership marker.
    pub attributes: Value,
}

/// One allowed redirect URI of an OAuth2 provider (≥ 2024.12 shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedirectUri {
    /// `strict` or `regex`.
    pub matching_mode: String,
    /// The URI.
    pub url: String,
}

/// An OAuth2/OpenID provider (`/providers/oauth2/`). Its key is an integer. `Debug` never
/// prints the client secret.
#[derive(Debug, Clone, Deserialize)]
pub struct Provider {
    /// Integer id.
    pub pk: i64,
    /// Name, unique across all providers.
    pub name: String,
    /// OAuth2 client id (unique).
    #[serde(default)]
    pub client_id: String,
    /// OAuth2 client secret; Authentik returns it on every read.
    #[serde(default = "empty_secret")]
    pub client_secret: SecretString,
    /// Allowed redirect URIs.
    #[serde(default)]
    pub redirect_uris: Vec<RedirectUri>,
    /// The application it is bound to, if any.
    #[serde(default)]
    pub assigned_application_slug: Option<String>,
}

fn empty_secret() -> SecretString {
    SecretString::from(String::new())
}

/// `POST /providers/oauth2/` (≥ 2024.12). `Debug` never prints the secret.
#[derive(Debug, Clone, Serialize)]
pub struct NewProvider {
    /// Name.
    pub name: String,
    /// Flow uuid used to authorize.
    pub authorization_flow: String,
    /// Flow uuid used to log out (required from 2024.10).
    pub invalidation_flow: String,
    /// `confidential`.
    pub client_type: String,
    /// Client id.
    pub client_id: String,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<RedirectUri>,
    /// Scope mapping uuids (openid, email, profile).
    pub property_mappings: Vec<String>,
    /// Certificate uuid for RS256, or none (HS256 with the client secret).
    pub signing_key: Option<String>,
    /// How `sub` is derived.
    pub sub_mode: String,
    /// `per_provider`: the issuer is `…/application/o/<slug>/`.
    pub issuer_mode: String,
    /// Claims in the id token too.
    pub include_claims_in_id_token: bool,
    /// Access token lifetime (`hours=1`).
    pub access_token_validity: String,
    /// Authorization code lifetime (`minutes=1`).
    pub access_code_validity: String,
    /// Only for servers ≥ 2026.5, which have the field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_types: Option<Vec<String>>,
}

/// `GET /providers/oauth2/{id}/setup_urls/`.
#[derive(Debug, Clone, Deserialize)]
pub struct SetupUrls {
    /// OpenID issuer.
    #[serde(default)]
    pub issuer: String,
    /// Authorize endpoint.
    #[serde(default)]
    pub authorize: String,
    /// Token endpoint.
    #[serde(default)]
    pub token: String,
    /// Userinfo endpoint.
    #[serde(default)]
    pub user_info: String,
}

/// An application (`/core/applications/`). Its path key is the slug.
#[derive(Debug, Clone, Deserialize)]
pub struct Application {
    /// uuid.
    pub pk: String,
    /// Policy-binding target of this application (not `pk`).
    pub pbm_uuid: String,
    /// Unique slug.
    pub slug: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The bound provider's id.
    #[serde(default)]
    pub provider: Option<i64>,
    /// Description; ours carries the tenant marker.
    #[serde(default)]
    pub meta_description: String,
}

/// `POST /core/applications/`.
#[derive(Debug, Clone, Serialize)]
pub struct NewApplication {
    /// Display name.
    pub name: String,
    /// Slug.
    pub slug: String,
    /// Provider id; `None` creates it unbound (no OIDC endpoints, so nobody can sign in)
    /// until its binding exists.
    pub provider: Option<i64>,
    /// Where the launch tile points.
    pub meta_launch_url: String,
    /// Description; ours carries the tenant marker (applications have no attributes).
    pub meta_description: String,
    /// Who made it.
    pub meta_publisher: String,
    /// `any`: one passing binding admits.
    pub policy_engine_mode: String,
    /// Opened in the same tab.
    pub open_in_new_tab: bool,
}

/// A policy binding (`/policies/bindings/`). Its key is a uuid.
#[derive(Debug, Clone, Deserialize)]
pub struct Binding {
    /// uuid.
    pub pk: String,
    /// The bound object (an application's `pbm_uuid`).
    pub target: String,
    /// Group uuid, for a group binding.
    #[serde(default)]
    pub group: Option<String>,
    /// User id, for a user binding.
    #[serde(default)]
    pub user: Option<i64>,
    /// Policy uuid, for a policy binding.
    #[serde(default)]
    pub policy: Option<String>,
    /// Disabled bindings do not count (an application with none enabled admits everyone).
    pub enabled: bool,
    /// Evaluation order.
    #[serde(default)]
    pub order: i64,
}

/// `POST /policies/bindings/` for a group.
#[derive(Debug, Clone, Serialize)]
pub struct NewBinding {
    /// The application's `pbm_uuid`.
    pub target: String,
    /// Group uuid.
    pub group: String,
    /// Order.
    pub order: i64,
    /// Enabled.
    pub enabled: bool,
    /// Not negated.
    pub negate: bool,
    /// Seconds.
    pub timeout: u32,
    /// What a failing evaluation means.
    pub failure_result: bool,
}

/// The page envelope of list endpoints.
#[derive(Debug, Deserialize)]
pub(crate) struct Page<T> {
    pub pagination: Pagination,
    pub results: Vec<T>,
}

/// Page numbers, 0 meaning none.
#[derive(Debug, Deserialize)]
pub(crate) struct Pagination {
    pub next: u64,
}
