//! VerifyApiAccess: the vaulted key answers `get_logged_user` as the automation user (it does at
//! once on a real bench; the check guards against a wrong site or proxy).

use proto::v1::{self as pb, event::Body};

use super::{Placed, ms};
use crate::context::Ctx;
use crate::driver::Request;
use crate::error::StepError;
use crate::site_rest::AUTOMATION_USER;

/// Verifies the key; returns ApiAccessVerified with how long activation took.
pub async fn run(ctx: &Ctx, req: &Request, placed: &Placed<'_>) -> Result<Vec<Body>, StepError> {
    let tenant = req.tenant_id.as_str();
    let took = ctx
        .verify_credentials(tenant, placed.bench_cfg, &placed.site)
        .await?;
    Ok(vec![Body::ApiAccessVerified(pb::ApiAccessVerified {
        tenant_id: tenant.to_owned(),
        site: placed.site.to_string(),
        user: AUTOMATION_USER.to_owned(),
        activation_ms: ms(took),
    })])
}
