//! Place: a standby site from the warm pool if one matches, else the fitting bench with the
//! fewest sites. A redelivery gets the placement recorded before.

use frappe::AppName;
use proto::v1::{self as pb, event::Body};

use crate::context::{Ctx, Fence};
use crate::driver::Request;
use crate::error::StepError;
use crate::process;

/// Chooses (or finds the recorded) placement; returns PlacementChosen.
pub async fn run(
    ctx: &Ctx,
    fence: &Fence,
    req: &Request,
    apps: &[AppName],
) -> Result<Vec<Body>, StepError> {
    let tenant = req.tenant_id.as_str();
    // Before anything is placed or claimed: a subdomain whose site another tenant has stops
    // here, with nothing to undo.
    fence.check().await?;
    // A recovery may have started since the delivery was taken.
    if let Some(why) = ctx.derived.reason() {
        return Err(StepError::Busy(why));
    }
    // Marked as the control plane's own: name claim, placement record, pool claim, counters.
    let rec = timeline::within("placement", async {
        ctx.placer.claim_name(&req.body.subdomain, tenant).await?;
        Ok::<_, StepError>(match ctx.placer.get(tenant).await? {
            Some(rec) => rec,
            None => {
                match crate::standby::claim(ctx, fence, tenant, &req.body.region, apps).await? {
                    Some(rec) => rec,
                    None => {
                        fence.check().await?;
                        ctx.placer
                            .place(&ctx.fleet, tenant, &req.body.region, apps)
                            .await?
                    }
                }
            }
        })
    })
    .await?;
    let (bench, _) = ctx.bench(&rec.bench)?;
    let site = bench
        .site_name(&req.body.subdomain)
        .map_err(|e| StepError::Permanent(format!("site name: {e}")))?;
    let db_name = rec
        .standby
        .as_ref()
        .map_or_else(|| process::db_name_for(tenant), |s| s.db_name.clone());
    Ok(vec![Body::PlacementChosen(pb::PlacementChosen {
        tenant_id: tenant.to_owned(),
        bench: rec.bench.clone(),
        region: bench.region.clone(),
        site: site.to_string(),
        db_name,
    })])
}
