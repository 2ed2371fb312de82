//! CreateSite: `new-site` with the tenant's derived database name and its owner marker — or,
//! when placement took a standby, the claim (re-key the vault, mark, rename, `host_name`).

use frappe::{BenchOp, DbName, TENANT_MARKER};
use proto::v1::{self as pb, event::Body};
use tokio::time::Instant;

use super::{Placed, ms};
use crate::context::{Ctx, Fence};
use crate::driver::Request;
use crate::error::StepError;
use crate::ownership::Claimant;
use crate::placement::PlacementRecord;
use crate::secrets::{ADMIN_PASSWORD, vault_ref};
use crate::site_bench::Marker;

/// Makes the site (or claims the standby); returns SiteCreated or StandbySiteClaimed.
pub async fn run(
    ctx: &Ctx,
    fence: &Fence,
    req: &Request,
    placed: &Placed<'_>,
    started: Instant,
) -> Result<Vec<Body>, StepError> {
    let tenant = req.tenant_id.as_str();
    let Placed {
        bench_cfg,
        bench,
        site,
        ..
    } = placed;
    if let Some(PlacementRecord {
        standby: Some(standby),
        ..
    }) = ctx.placer.get(tenant).await?
    {
        // No bench slot: the claim is one config edit, which starts no frappe process (see
        // `configure`), and queueing it behind a refill's new-site would make a pooled signup
        // as slow as a cold one. The site's host-side lock still keeps other commands off it.
        crate::standby::take_over(ctx, fence, tenant, bench_cfg, bench, &standby, site).await?;
        return Ok(vec![Body::StandbySiteClaimed(pb::StandbySiteClaimed {
            tenant_id: tenant.to_owned(),
            standby_id: standby.id.clone(),
            bench: bench_cfg.name.clone(),
            standby_site: standby.site.clone(),
            site: site.to_string(),
        })]);
    }
    let db_name =
        DbName::parse(&placed.db_name).map_err(|e| StepError::Permanent(e.to_string()))?;
    let slot = ctx
        .slots
        .acquire(bench_cfg, placed.command_limit(BenchOp::NewSite))
        .await?;
    let r = ctx
        .new_site(
            fence,
            &Claimant::Tenant {
                id: tenant,
                standby: None,
            },
            Marker {
                key: TENANT_MARKER,
                id: tenant,
            },
            bench_cfg,
            bench,
            site,
            &db_name,
        )
        .await;
    slot.release().await;
    r?;
    Ok(vec![Body::SiteCreated(pb::SiteCreated {
        tenant_id: tenant.to_owned(),
        bench: bench_cfg.name.clone(),
        site: site.to_string(),
        db_name: db_name.to_string(),
        admin_password_ref: vault_ref(tenant, ADMIN_PASSWORD),
        duration_ms: ms(started.elapsed()),
    })])
}
