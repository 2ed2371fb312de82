//! Lifecycle requests: suspend, resume, delete, plan change, and the operator's provisioning
//! retry. Each compares the wanted state with what the provisioning subject records, proves
//! the site is the tenant's, does only the missing part on the bench, and records it — so
//! redelivery is harmless.

use std::time::Duration;

use eventstore::{EventContext, RecordedEvent};
use frappe::{BenchOp, ConfigKey, SiteName};
use proto::v1::{self as pb, event::Body};
use serde_json::json;

use crate::context::{Ctx, Fence};
use crate::driver::{self, Outcome, Request};
use crate::error::{StepError, bench_error};
use crate::ownership::Claimant;
use crate::process::{self, ProvisioningState};

/// What to do with the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Handled (or nothing to do): acknowledge.
    Ack,
    /// Not yet possible (the tenant is still being provisioned): ask again after the delay.
    Later(Duration),
}

/// How long to wait before re-trying a request that arrived while provisioning still runs.
const NOT_YET: Duration = Duration::from_secs(1);

/// Handles one lifecycle event.
pub async fn handle(ctx: &Ctx, fence: &Fence, event: &RecordedEvent) -> Result<Settle, StepError> {
    let tenant = event.tenant_id.as_str();
    match &event.body {
        Body::ProvisioningRetryRequested(_) => retry(ctx, fence, tenant).await,
        Body::SuspensionRequested(_) | Body::ResumeRequested(_) => {
            suspension(ctx, fence, tenant).await
        }
        Body::DeletionRequested(_) => delete(ctx, fence, tenant, event).await,
        Body::PlanChangeRequested(e) => plan_change(ctx, fence, tenant, event, e).await,
        _ => Ok(Settle::Ack),
    }
}

/// The tenant's TenantRequested, from its signup subject.
pub async fn load_request(ctx: &Ctx, tenant: &str) -> Result<Option<Request>, StepError> {
    let events = ctx
        .store
        .load(&ctx.store.subject(EventContext::Signup, tenant))
        .await?;
    Ok(events.iter().find_map(Request::from_event))
}

async fn retry(ctx: &Ctx, fence: &Fence, tenant: &str) -> Result<Settle, StepError> {
    let Some(req) = load_request(ctx, tenant).await? else {
        tracing::warn!(
            tenant,
            "retry requested for a tenant that was never requested"
        );
        return Ok(Settle::Ack);
    };
    match driver::provision(ctx, fence, &req).await? {
        Outcome::Provisioned | Outcome::Failed => Ok(Settle::Ack),
    }
}

/// Whether a live-site operation can run now: `None` = go ahead; `Some(settle)` = answer that.
fn gate(state: &ProvisioningState) -> Option<Settle> {
    if state.deleted {
        Some(Settle::Ack)
    } else if state.provisioned {
        None
    } else if state.failed.is_some() {
        // Nothing to suspend or resume on a failed tenant.
        Some(Settle::Ack)
    } else {
        Some(Settle::Later(NOT_YET))
    }
}

fn site_of(state: &ProvisioningState) -> Result<(String, SiteName), StepError> {
    let p = state
        .placement
        .as_ref()
        .ok_or_else(|| StepError::Permanent("no placement recorded".into()))?;
    let site = SiteName::parse(&p.site).map_err(|e| StepError::Permanent(e.to_string()))?;
    Ok((p.bench.clone(), site))
}

fn tenant_claim(tenant: &str) -> Claimant<'_> {
    Claimant::Tenant {
        id: tenant,
        standby: None,
    }
}

/// Writes `values` into the tenant's site config after proving the site is the tenant's.
async fn set_configs(
    ctx: &Ctx,
    fence: &Fence,
    tenant: &str,
    bench_name: &str,
    site: &SiteName,
    values: &[(ConfigKey, serde_json::Value)],
    maintenance: Option<bool>,
) -> Result<(), StepError> {
    let (bench_cfg, bench) = ctx.bench(bench_name)?;
    let slot = ctx
        .slots
        .acquire(bench_cfg, bench.command_limit(BenchOp::Other))
        .await?;
    let r = async {
        // One process: proves the site is the tenant's and writes every key (none for a plain
        // suspend/resume, which then only checks).
        ctx.edit_config(
            fence,
            bench,
            site,
            &tenant_claim(tenant),
            values.to_vec(),
            None,
        )
        .await?;
        if let Some(on) = maintenance {
            fence.check().await?;
            bench
                .set_maintenance_mode(site, on)
                .await
                .map_err(|e| bench_error("set-maintenance-mode", e))?;
        }
        Ok::<_, StepError>(())
    }
    .await;
    slot.release().await;
    r
}

async fn suspension(ctx: &Ctx, fence: &Fence, tenant: &str) -> Result<Settle, StepError> {
    let (version, state) = driver::load_state(ctx, tenant).await?;
    if let Some(settle) = gate(&state) {
        return Ok(settle);
    }
    // The latest request wins, whatever order redeliveries arrive in.
    let lifecycle = ctx
        .store
        .load(&ctx.store.subject(EventContext::Lifecycle, tenant))
        .await?;
    let Some(latest) = lifecycle.iter().rev().find(|e| {
        matches!(
            e.body,
            Body::SuspensionRequested(_) | Body::ResumeRequested(_)
        )
    }) else {
        return Ok(Settle::Ack);
    };
    let (suspend, reason) = match &latest.body {
        Body::SuspensionRequested(r) => (true, r.reason.clone()),
        _ => (false, String::new()),
    };
    if state.suspended == suspend {
        return Ok(Settle::Ack);
    }
    let (bench_name, site) = site_of(&state)?;
    let flag =
        ConfigKey::parse("tenantry_suspended").map_err(|e| StepError::Permanent(e.to_string()))?;
    let started = std::time::Instant::now();
    set_configs(
        ctx,
        fence,
        tenant,
        &bench_name,
        &site,
        &[(flag, json!(i32::from(suspend)))],
        Some(suspend),
    )
    .await?;
    let step = if suspend { "suspend" } else { "resume" };
    ctx.metrics
        .step_done(step, &bench_name, started.elapsed().as_secs_f64());
    let body = if suspend {
        Body::SiteSuspended(pb::SiteSuspended {
            tenant_id: tenant.to_owned(),
            site: site.to_string(),
            reason,
        })
    } else {
        Body::SiteResumed(pb::SiteResumed {
            tenant_id: tenant.to_owned(),
            site: site.to_string(),
        })
    };
    let id = process::event_id(tenant, 0, body.type_name(), latest.sequence);
    let subject = ctx.store.subject(EventContext::Provisioning, tenant);
    driver::append(ctx, fence, &subject, version, latest, vec![(id, body)]).await?;
    Ok(Settle::Ack)
}

async fn delete(
    ctx: &Ctx,
    fence: &Fence,
    tenant: &str,
    cause: &RecordedEvent,
) -> Result<Settle, StepError> {
    let subject = ctx.store.subject(EventContext::Provisioning, tenant);
    let (mut version, state) = driver::load_state(ctx, tenant).await?;
    if state.deleted {
        return shred_when_due(ctx, fence, tenant).await;
    }
    if !state.provisioned && state.failed.is_none() && state.events > 0 {
        // Still provisioning: let that finish (or fail) first.
        return Ok(Settle::Later(NOT_YET));
    }
    let mut archived = String::new();
    let mut site_name = String::new();
    let mut bench_name = String::new();
    if state.provisioned {
        let (b, site) = site_of(&state)?;
        let (bench_cfg, bench) = ctx.bench(&b)?;
        site_name = site.to_string();
        bench_name = b.clone();
        if !state.backed_up {
            let slot = ctx
                .slots
                .acquire(bench_cfg, bench.command_limit(BenchOp::Backup))
                .await?;
            let started = std::time::Instant::now();
            let r = async {
                ctx.owned_state(bench, &site, &tenant_claim(tenant)).await?;
                fence.check().await?;
                Ok::<_, StepError>(bench.backup(&site, true).await)
            }
            .await;
            slot.release().await;
            match r? {
                Ok(summary) => {
                    ctx.crash_at("backup");
                    ctx.metrics
                        .step_done("backup", &b, started.elapsed().as_secs_f64());
                    let body = backed_up(tenant, &site, &summary, started.elapsed());
                    let id = process::event_id(tenant, 0, "SiteBackedUp", cause.sequence);
                    driver::append(ctx, fence, &subject, version, cause, vec![(id, body)]).await?;
                    version = driver::load_state(ctx, tenant).await?.0;
                }
                // Already dropped by an earlier, interrupted delete: nothing left to back up.
                Err(frappe::BenchError::SiteNotFound(_)) => {}
                Err(e) => return Err(bench_error("backup", e)),
            }
        }
        let slot = ctx
            .slots
            .acquire(bench_cfg, bench.command_limit(BenchOp::DropSite))
            .await?;
        let r = ctx
            .drop_owned_site(fence, &tenant_claim(tenant), bench_cfg, bench, &site, true)
            .await;
        slot.release().await;
        archived = r?.map(|r| r.archived_under).unwrap_or_default();
        fence.check().await?;
        ctx.revoke_credentials(tenant).await?;
        ctx.placer.release(tenant).await?;
    }
    fence.check().await?;
    if let Some(req) = load_request(ctx, tenant).await? {
        ctx.placer.release_name(&req.body.subdomain, tenant).await?;
    }
    ctx.forget_owner_password(tenant).await?;
    let body = Body::SiteDeleted(pb::SiteDeleted {
        tenant_id: tenant.to_owned(),
        site: site_name,
        bench: bench_name,
        archived_path: archived,
    });
    let id = process::event_id(tenant, 0, "SiteDeleted", cause.sequence);
    driver::append(ctx, fence, &subject, version, cause, vec![(id, body)]).await?;
    ctx.crash_at("deleted");
    shred_when_due(ctx, fence, tenant).await
}

/// Crypto-shreds a deleted tenant's vault keys once the retention after its SiteDeleted has
/// passed; until then the deletion request comes back when it is due. Repeating it is harmless
/// (the vault answers a shredded tenant the same).
async fn shred_when_due(ctx: &Ctx, fence: &Fence, tenant: &str) -> Result<Settle, StepError> {
    let events = ctx
        .store
        .load(&ctx.store.subject(EventContext::Provisioning, tenant))
        .await?;
    let Some(deleted) = events
        .iter()
        .rev()
        .find(|e| matches!(e.body, Body::SiteDeleted(_)))
    else {
        return Ok(Settle::Ack);
    };
    let retention = ctx.settings.shred_after;
    let age = (chrono::Utc::now() - deleted.stored_at)
        .to_std()
        .unwrap_or_default();
    if age < retention {
        return Ok(Settle::Later(retention - age));
    }
    fence.check().await?;
    let shredded = ctx.shred_keys(tenant).await?;
    tracing::info!(tenant, shredded, "deleted tenant's vault keys shredded");
    Ok(Settle::Ack)
}

fn backed_up(
    tenant: &str,
    site: &SiteName,
    summary: &frappe::BackupSummary,
    took: Duration,
) -> Body {
    Body::SiteBackedUp(pb::SiteBackedUp {
        tenant_id: tenant.to_owned(),
        site: site.to_string(),
        files: summary
            .files
            .iter()
            .map(|f| pb::BackupFile {
                kind: match f.kind {
                    frappe::BackupKind::Config => "config",
                    frappe::BackupKind::Database => "database",
                    frappe::BackupKind::Public => "public_files",
                    frappe::BackupKind::Private => "private_files",
                }
                .to_owned(),
                path: f.path.clone(),
                size_bytes: f.size_bytes,
            })
            .collect(),
        duration_ms: u64::try_from(took.as_millis()).unwrap_or(0),
    })
}

async fn plan_change(
    ctx: &Ctx,
    fence: &Fence,
    tenant: &str,
    cause: &RecordedEvent,
    e: &pb::PlanChangeRequested,
) -> Result<Settle, StepError> {
    let (version, state) = driver::load_state(ctx, tenant).await?;
    if let Some(settle) = gate(&state) {
        return Ok(settle);
    }
    // The latest request wins, whatever order redeliveries arrive in: an older one is only
    // acknowledged, and the latest one is applied once.
    let lifecycle = ctx
        .store
        .load(&ctx.store.subject(EventContext::Lifecycle, tenant))
        .await?;
    let latest = lifecycle
        .iter()
        .rev()
        .find(|e| matches!(e.body, Body::PlanChangeRequested(_)));
    if latest.is_some_and(|l| l.sequence != cause.sequence)
        || state.limits_plan.as_deref() == Some(e.to_plan.as_str())
    {
        return Ok(Settle::Ack);
    }
    let Some(plan) = ctx.fleet.plan(&e.to_plan) else {
        tracing::warn!(tenant, plan = %e.to_plan, "plan change to a plan the fleet does not know; ignored");
        return Ok(Settle::Ack);
    };
    let (bench_name, site) = site_of(&state)?;
    let mut values = plan.limit_values();
    values.push((
        ConfigKey::parse("tenantry_plan").map_err(|e| StepError::Permanent(e.to_string()))?,
        json!(e.to_plan),
    ));
    set_configs(ctx, fence, tenant, &bench_name, &site, &values, None).await?;
    let body = Body::SiteLimitsApplied(pb::SiteLimitsApplied {
        tenant_id: tenant.to_owned(),
        site: site.to_string(),
        plan: e.to_plan.clone(),
        keys: values.iter().map(|(k, _)| k.to_string()).collect(),
    });
    let id = process::event_id(tenant, 0, "SiteLimitsApplied", cause.sequence);
    let subject = ctx.store.subject(EventContext::Provisioning, tenant);
    driver::append(ctx, fence, &subject, version, cause, vec![(id, body)]).await?;
    Ok(Settle::Ack)
}
