//! Roll back: a step gave up, so undo what this round made — the tenant's site (only if it is
//! provably the tenant's, or the standby its placement claimed), its credentials, its placement
//! and subdomain — and record SiteRolledBack and ProvisioningFailed.

use frappe::BenchOp;
use proto::v1::{self as pb, event::Body};

use super::parse_site;
use crate::context::{Ctx, Fence};
use crate::driver::Request;
use crate::error::StepError;
use crate::ownership::Claimant;
use crate::process::{GaveUp, ProvisioningState};
use crate::secrets::OWNER_PASSWORD_GONE;
use crate::site_bench::Removed;

/// Undoes what the round made; returns SiteRolledBack (when a site was placed) followed by
/// ProvisioningFailed.
pub async fn roll_back(
    ctx: &Ctx,
    fence: &Fence,
    req: &Request,
    state: &ProvisioningState,
    gave_up: &GaveUp,
) -> Result<Vec<Body>, StepError> {
    let tenant = req.tenant_id.as_str();
    let mut events = Vec::new();
    let claim = ctx.placer.get(tenant).await?;
    let claimed_bench = claim.as_ref().map(|r| r.bench.clone());
    let standby = claim.and_then(|r| r.standby);
    // What this round may have made: the placed site, and a claimed standby (which a claim that
    // failed before its rename — or before PlacementChosen was recorded — leaves under its old
    // name).
    let placed = match (&state.placement, &claimed_bench) {
        (Some(p), _) => Some((p.bench.clone(), Some(parse_site(&p.site)?))),
        (None, Some(b)) if standby.is_some() => Some((b.clone(), None)),
        _ => None,
    };
    if let (Some((bench_name, site)), false) = (placed, state.rolled_back) {
        let (bench_cfg, bench) = ctx.bench(&bench_name)?;
        let claimant = Claimant::Tenant {
            id: tenant,
            standby: standby.as_ref().map(|s| s.id.as_str()),
        };
        let busy = bench.command_limit(BenchOp::DropSite);
        let slot = ctx.slots.acquire(bench_cfg, busy).await?;
        let mut sites: Vec<_> = site.iter().cloned().collect();
        if let Some(s) = &standby {
            sites.push(parse_site(&s.site)?);
        }
        let mut removed: Option<Removed> = None;
        let mut result = Ok(());
        for s in &sites {
            match ctx
                .drop_owned_site(fence, &claimant, bench_cfg, bench, s, true)
                .await
            {
                Ok(r) => removed = removed.or(r),
                // Someone else's site by this name (the step that gave up found it so): ours
                // to leave alone, not to undo.
                Err(StepError::NotOurs(why)) => {
                    tracing::warn!(tenant, %why, "rollback leaves a site that is not this tenant's");
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        slot.release().await;
        // Rolling back is retried by redelivery; a bench that cannot drop now may later.
        result.map_err(|e| match e {
            e @ (StepError::Busy(_) | StepError::LeaseLost(_)) => e,
            e => StepError::Infra(format!("rollback: {e}")),
        })?;
        ctx.crash_at("rollback");
        fence.check().await?;
        ctx.revoke_credentials(tenant)
            .await
            .map_err(|e| StepError::Infra(e.to_string()))?;
        if let Some(s) = &standby {
            ctx.revoke_credentials(&s.id)
                .await
                .map_err(|e| StepError::Infra(e.to_string()))?;
            crate::standby::forget(ctx, s).await;
        }
        ctx.placer.release(tenant).await?;
        ctx.placer.release_name(&req.body.subdomain, tenant).await?;
        events.push(Body::SiteRolledBack(pb::SiteRolledBack {
            tenant_id: tenant.to_owned(),
            bench: bench_cfg.name.clone(),
            site: sites.first().map(ToString::to_string).unwrap_or_default(),
            method: removed.map_or_else(|| "nothing to remove".to_owned(), |r| r.method),
        }));
    } else if state.placement.is_none() {
        // Placement may have been counted (and the name claimed) without PlacementChosen being
        // recorded.
        fence.check().await?;
        ctx.placer.release(tenant).await?;
        ctx.placer.release_name(&req.body.subdomain, tenant).await?;
    }
    events.push(Body::ProvisioningFailed(pb::ProvisioningFailed {
        tenant_id: tenant.to_owned(),
        step: gave_up.proto_step,
        reason: gave_up.reason.clone(),
        retryable: !gave_up.reason.starts_with(OWNER_PASSWORD_GONE),
    }));
    Ok(events)
}
