//! Finish: forget the owner's pending password (and a claimed standby's secrets) and record
//! TenantProvisioned.

use chrono::Utc;
use proto::v1::{self as pb, event::Body};

use super::Placed;
use crate::context::{Ctx, Fence};
use crate::driver::Request;
use crate::error::StepError;
use crate::process::ProvisioningState;

/// Returns TenantProvisioned.
pub async fn run(
    ctx: &Ctx,
    fence: &Fence,
    req: &Request,
    state: &ProvisioningState,
    placed: &Placed<'_>,
) -> Result<Vec<Body>, StepError> {
    let tenant = req.tenant_id.as_str();
    // Kept until now: a later step's rollback drops the site and its owner, and the operator's
    // retry must be able to create the owner again.
    fence.check().await?;
    // A claimed standby's own copies of the site's secrets (the tenant has its copies since the
    // claim) go beside the owner's pending password.
    let standby = async {
        if !state.from_standby {
            return Ok(());
        }
        match ctx.placer.get(tenant).await?.and_then(|r| r.standby) {
            Some(s) => ctx.revoke_credentials(&s.id).await,
            None => Ok(()),
        }
    };
    tokio::try_join!(ctx.forget_owner_password(tenant), standby)?;
    let total = Utc::now() - req.requested_at;
    Ok(vec![Body::TenantProvisioned(pb::TenantProvisioned {
        tenant_id: tenant.to_owned(),
        site: placed.site.to_string(),
        bench: placed.bench_cfg.name.clone(),
        url: placed.bench_cfg.public_url(placed.site.as_str()),
        total_ms: u64::try_from(total.num_milliseconds()).unwrap_or(0),
        from_standby: state.from_standby,
        plan: req.body.plan.clone(),
        owner_email: req.body.owner_email.clone(),
        owner_name: req.body.owner_name.clone(),
        organisation: req.body.organisation.clone(),
        region: req.body.region.clone(),
    })])
}
