//! How Tenantry drives Frappe.
//!
//! - [`Bench`]: typed `bench` operations (new-site, install-app, set-config, users and API keys,
//!   maintenance mode, backup, drop-site, rename) run as argv vectors through a [`RunnerConfig`]
//!   (`local`, `docker` or `ssh`), each with a timeout, output captured, secrets redacted.
//! - [`FrappeClient`]: the REST subset the provisioner needs (token/session auth, site routing,
//!   users, `generate_keys`, `wait_until_api_key_active`).
//! - [`names`]: validated names; nothing else reaches an argv.
//! - [`parse`]: readers for real bench output (see `tests/fixtures/frappe/`).

pub mod bench;
pub mod config_edit;
pub mod fleet;
pub mod inspect;
pub mod names;
pub mod parse;
pub mod rest;
pub mod runner;
pub mod usage;

pub use bench::{
    ApiCredentials, Bench, BenchError, BenchOp, BenchTimeouts, DbRoot, DropSite, NewSite,
    NewSystemManager, SiteDropped,
};
pub use config_edit::{ConfigEdit, EditError, OwnerProof};
pub use fleet::{BenchAccess, SiteAccess, SiteAccessError};
pub use inspect::{STANDBY_MARKER, SiteConfig, SiteState, TENANT_MARKER};
pub use names::{
    AppName, ConfigKey, DbName, HostUrl, MethodPath, NameError, PersonName, PyLiteral, SiteName,
    UserEmail, UserId,
};
pub use parse::{BackupFile, BackupKind, BackupSummary, InstallOutcome};
pub use rest::{AUTOMATION_USER, FrappeClient, NewUser, RestError, Session, SiteRouting};
pub use runner::{Arg, CommandOutput, Guard, Invocation, RunnerConfig};
pub use usage::SiteFootprint;
