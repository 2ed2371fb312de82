//! A typed client of the Authentik API v3, limited to what Tenantry's identity service needs:
//! groups, users, OAuth2 providers, applications, policy bindings, and the start-up lookups
//! (flows, scope mappings, signing key, version).
//!
//! Held to `contracts/authentik.md`:
//! - bearer token auth; **403** (not 401) is how Authentik says the token is bad or lacks a
//!   permission ([`AuthentikError::Forbidden`]);
//! - list endpoints are followed page by page until `pagination.next == 0`;
//! - 400 answers are field-keyed maps; callers branch on the *keys*
//!   ([`AuthentikError::field`]), never on the message text, which varies by version and
//!   language;
//! - `GET /admin/version/` picks the request shapes; servers before 2024.12 (string
//!   `redirect_uris`, no `invalidation_flow`) are refused at start-up.

mod client;
mod directory;
mod error;
mod model;
mod version;

pub use client::{Authentik, AuthentikConfig};
pub use directory::{Directory, DirectoryNames};
pub use error::AuthentikError;
pub use model::{
    Application, Binding, Group, NewApplication, NewBinding, NewGroup, NewProvider, NewUser,
    Provider, RedirectUri, SetupUrls, User,
};
pub use version::Version;
