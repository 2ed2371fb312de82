//! How the identity service reaches a tenant's site over REST: the fleet file's benches, read
//! by [`frappe::fleet::SiteAccess`] (shared with billing).

pub use frappe::fleet::{SiteAccess as SiteApi, SiteAccessError as SiteApiError};
