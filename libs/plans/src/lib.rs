//! The plan catalogue: one file every service reads — signup's accepted plans, the
//! provisioner's app sets and site limits, billing's prices and trials — and the check that
//! every running service reads the *same* one.
//!
//! ```toml
//! version = 3
//!
//! [plans.business]
//! name = "Business"
//! price_minor = 4900        # integer money, in the currency's minor unit
//! currency = "EUR"
//! interval = "month"        # or "year"
//! trial_days = 14
//! max_users = 25
//! max_storage_mb = 10240
//! max_database_mb = 2048
//! apps = ["erpnext", "hrms"]
//! ```
//!
//! [`agree`] publishes the catalogue in a NATS KV bucket the first time and compares it on every
//! later start: a service whose file differs from what the others run (same version, other
//! content) or is older refuses to start, naming the plan and the field.

mod agree;
mod catalogue;

pub use agree::{AgreeError, agree};
pub use catalogue::{Difference, Plan, PlanCatalogue, PlanError};
