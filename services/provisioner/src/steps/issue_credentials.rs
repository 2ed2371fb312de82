//! IssueApiCredentials: the automation user's API key pair, generated once and vaulted.

use proto::v1::{self as pb, event::Body};
use tokio::time::Instant;

use super::{Placed, ms};
use crate::context::{Ctx, Fence};
use crate::driver::Request;
use crate::error::StepError;
use crate::site_rest::AUTOMATION_USER;

/// Issues (or finds the vaulted) key pair; returns ApiCredentialsIssued.
pub async fn run(
    ctx: &Ctx,
    fence: &Fence,
    req: &Request,
    placed: &Placed<'_>,
    started: Instant,
) -> Result<Vec<Body>, StepError> {
    let tenant = req.tenant_id.as_str();
    let reference = ctx
        .issue_credentials(fence, tenant, placed.bench_cfg, &placed.site)
        .await?;
    Ok(vec![Body::ApiCredentialsIssued(pb::ApiCredentialsIssued {
        tenant_id: tenant.to_owned(),
        site: placed.site.to_string(),
        user: AUTOMATION_USER.to_owned(),
        credentials_ref: reference,
        duration_ms: ms(started.elapsed()),
    })])
}
