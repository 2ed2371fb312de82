//! InstallApps: `install-app` for each of the plan's apps the site does not have yet.

use frappe::{AppName, BenchOp};
use proto::v1::{self as pb, event::Body};
use tokio::time::Instant;

use super::{Placed, ms};
use crate::context::{Ctx, Fence};
use crate::driver::Request;
use crate::error::StepError;

/// Installs the missing apps; returns AppsInstalled.
pub async fn run(
    ctx: &Ctx,
    fence: &Fence,
    req: &Request,
    placed: &Placed<'_>,
    apps: &[AppName],
    started: Instant,
) -> Result<Vec<Body>, StepError> {
    // A plan without apps runs nothing on the bench: no slot to wait for behind a new-site.
    if !apps.is_empty() {
        let slot = ctx
            .slots
            .acquire(placed.bench_cfg, placed.command_limit(BenchOp::InstallApp))
            .await?;
        let r = ctx
            .install_apps(fence, placed.bench, &placed.site, apps)
            .await;
        slot.release().await;
        r?;
    }
    Ok(vec![Body::AppsInstalled(pb::AppsInstalled {
        tenant_id: req.tenant_id.clone(),
        site: placed.site.to_string(),
        apps: apps.iter().map(ToString::to_string).collect(),
        duration_ms: ms(started.elapsed()),
    })])
}
