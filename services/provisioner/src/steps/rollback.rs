//! Roll back: a step gave up, so undo what the round made (site, credentials, placement) and
//! record SiteRolledBack and ProvisioningFailed.

use proto::v1::{self as pb, event::Body};

use super::parse_site;
use crate::context::Ctx;
use crate::driver::Request;
use crate::error::StepError;
use crate::process::{GaveUp, ProvisioningState};
use crate::secrets::OWNER_PASSWORD_GONE;

/// Undoes what the round made (site, credentials, placement); returns SiteRolledBack (when a
/// site was placed) followed by ProvisioningFailed.
pub async fn roll_back(
    ctx: &Ctx,
    req: &Request,
    state: &ProvisioningState,
    gave_up: &GaveUp,
) -> Result<Vec<Body>, StepError> {
    let tenant = req.tenant_id.as_str();
    let mut events = Vec::new();
    if let (Some(p), false) = (&state.placement, state.rolled_back) {
        let (bench_cfg, bench) = ctx.bench(&p.bench)?;
        let site = parse_site(&p.site)?;
        let standby = ctx.placer.get(tenant).await?.and_then(|r| r.standby);
        let slot = ctx
            .slots
            .acquire(&bench_cfg.name, bench_cfg.max_concurrent_operations)
            .await;
        let mut r = ctx.remove_site(bench_cfg, bench, &site, true).await;
        if let (Ok(_), Some(s)) = (&r, &standby) {
            // A claim that failed before the rename leaves the standby under its old name.
            let old = parse_site(&s.site)?;
            if let Err(e) = ctx.remove_site(bench_cfg, bench, &old, true).await {
                r = Err(e);
            }
        }
        slot.release().await;
        let (method, _) = match r {
            Ok(m) => m,
            // Rolling back is retried by redelivery; a bench that cannot drop now may later.
            Err(e) => return Err(StepError::Infra(format!("rollback: {e}"))),
        };
        ctx.revoke_credentials(tenant)
            .await
            .map_err(|e| StepError::Infra(e.to_string()))?;
        if let Some(s) = &standby {
            ctx.revoke_credentials(&s.id)
                .await
                .map_err(|e| StepError::Infra(e.to_string()))?;
            crate::standby::forget(ctx, &s.pool_key).await;
        }
        ctx.placer.release(tenant).await?;
        events.push(Body::SiteRolledBack(pb::SiteRolledBack {
            tenant_id: tenant.to_owned(),
            bench: bench_cfg.name.clone(),
            site: site.to_string(),
            method,
        }));
    } else if state.placement.is_none() {
        // Placement may have been counted without PlacementChosen being recorded.
        ctx.placer.release(tenant).await?;
    }
    events.push(Body::ProvisioningFailed(pb::ProvisioningFailed {
        tenant_id: tenant.to_owned(),
        step: gave_up.proto_step,
        reason: gave_up.reason.clone(),
        retryable: !gave_up.reason.starts_with(OWNER_PASSWORD_GONE),
    }));
    Ok(events)
}
