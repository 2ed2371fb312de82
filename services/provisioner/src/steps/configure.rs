//! Configure: plan limits and Tenantry's keys (`tenantry_tenant_id`, `tenantry_plan`,
//! `host_name`) into site_config, in one write that also proves the site is the tenant's.

use frappe::ConfigKey;
use proto::v1::{self as pb, event::Body};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Placed, ms};
use crate::context::{Ctx, Fence};
use crate::driver::Request;
use crate::error::StepError;
use crate::fleet::PlanConfig;
use crate::ownership::Claimant;

/// Writes the keys; returns SiteConfigured.
pub async fn run(
    ctx: &Ctx,
    fence: &Fence,
    req: &Request,
    placed: &Placed<'_>,
    plan: &PlanConfig,
    started: Instant,
) -> Result<Vec<Body>, StepError> {
    let tenant = req.tenant_id.as_str();
    let mut values: Vec<(ConfigKey, Value)> = plan.limit_values();
    let key = |k: &str| ConfigKey::parse(k).map_err(|e| StepError::Permanent(e.to_string()));
    values.push((key("tenantry_tenant_id")?, json!(tenant)));
    values.push((key("tenantry_plan")?, json!(req.body.plan)));
    values.push((
        key("host_name")?,
        json!(placed.bench_cfg.public_url(placed.site.as_str())),
    ));
    // One config edit proves the site is the tenant's and writes every key (rewriting them
    // after a crash changes nothing). It takes no bench slot: slots keep the bench from running
    // too many frappe processes at once, and the edit starts none (done in place, or one short
    // Python program that does not import frappe) — while waiting for a slot behind a ~20 s
    // new-site would be most of a signup's time.
    ctx.edit_config(
        fence,
        placed.bench,
        &placed.site,
        &Claimant::Tenant {
            id: tenant,
            standby: None,
        },
        values.clone(),
        None,
    )
    .await?;
    Ok(vec![Body::SiteConfigured(pb::SiteConfigured {
        tenant_id: tenant.to_owned(),
        site: placed.site.to_string(),
        keys: values.iter().map(|(k, _)| k.to_string()).collect(),
        duration_ms: ms(started.elapsed()),
    })])
}
