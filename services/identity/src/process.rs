//! One delivery: load the tenant, decide ([`tenancy::decide_identity`]), act, record the
//! result on the tenant's identity subject — or record the failure and let the worker retry.

use eventstore::{Body, EventContext, NewEvent, RecordedEvent, StoreError};
use proto::v1 as pb;
use tenancy::{IdentityAction, IdentityTrigger, Status};
use tracing::Instrument as _;
use worker::{Outcome, Work, WorkError};

use crate::configure::{Failed, configure};
use crate::context::{Ctx, Fence};
use crate::error::StepError;
use crate::lifecycle;
use crate::tenant::Tenant;

/// Retry settings of the process.
#[derive(Debug, Clone)]
pub struct Attempts {
    /// Deliveries of one trigger before setup gives up with IdentityConfigurationFailed.
    pub max: u64,
}

/// The trigger an event is, if the identity service reacts to it.
pub fn trigger(body: &Body) -> Option<IdentityTrigger> {
    Some(match body {
        Body::TenantProvisioned(_) => IdentityTrigger::Provisioned,
        Body::ProvisioningRetryRequested(_) => IdentityTrigger::Retry,
        Body::SiteSuspended(_) => IdentityTrigger::Suspended,
        Body::SiteResumed(_) => IdentityTrigger::Resumed,
        Body::SiteDeleted(_) => IdentityTrigger::Deleted,
        _ => return None,
    })
}

fn action_name(action: &IdentityAction) -> &'static str {
    match action {
        IdentityAction::Nothing => "nothing",
        IdentityAction::Configure { .. } => "configure",
        IdentityAction::Disable => "disable",
        IdentityAction::Enable => "enable",
        IdentityAction::Remove => "remove",
    }
}

/// Handles one delivery of a trigger event.
pub async fn handle(ctx: &Ctx, attempts: &Attempts, work: &Work) -> Result<Outcome, WorkError> {
    let Some(trigger) = trigger(&work.event.body) else {
        return Ok(Outcome::Done);
    };
    let fence = Fence::of(work.lease.clone());
    let tenant = Tenant::load(&ctx.store, &work.event.tenant_id)
        .await
        .map_err(work_error)?;
    // A retry or a replayed TenantProvisioned for a tenant whose site is not live (still
    // being built, failed, being deleted) has nothing to configure yet.
    let live = matches!(tenant.state.status, Status::Active | Status::Suspended)
        && tenant.provisioned.is_some();
    let action = tenancy::decide_identity(&tenant.state.sso, trigger, tenant.suspended());
    tracing::debug!(tenant = %tenant.id, ?trigger, ?action, "identity decision");
    // One span per action: the parent of its Authentik and site calls, a child of the delivery.
    let span = tracing::info_span!(
        "step",
        otel.name = %format!("identity {}", action_name(&action)),
        tenant = %tenant.id,
    );
    async {
        let result = match action {
            IdentityAction::Nothing => {
                // A redelivery after IdentityConfigured whose password clean-up was lost.
                if tenant.state.sso.configured() {
                    ctx.forget_password(&tenant.id).await.map_err(work_error)?;
                }
                return Ok(Outcome::Done);
            }
            IdentityAction::Configure { .. } if !live => return Ok(Outcome::Done),
            IdentityAction::Configure { active } => {
                match configure(ctx, &fence, &tenant, active).await {
                    Ok(done) => {
                        record(
                            ctx,
                            &fence,
                            &tenant,
                            &work.event,
                            "configured",
                            Body::IdentityConfigured(done),
                        )
                        .await?;
                        // Authentik holds the password now; the vault's copy goes.
                        ctx.forget_password(&tenant.id).await.map_err(work_error)?;
                        return Ok(Outcome::Done);
                    }
                    Err(failed) => Err(failed),
                }
            }
            IdentityAction::Disable => lifecycle::set_users_active(ctx, &fence, &tenant, false)
                .await
                .map(|n| {
                    Body::IdentityDisabled(pb::IdentityDisabled {
                        tenant_id: tenant.id.clone(),
                        users_deactivated: n,
                    })
                })
                .map_err(|error| Failed {
                    step: "disable",
                    error,
                }),
            IdentityAction::Enable => lifecycle::enable(ctx, &fence, &tenant)
                .await
                .map(|n| {
                    Body::IdentityEnabled(pb::IdentityEnabled {
                        tenant_id: tenant.id.clone(),
                        users_activated: n,
                    })
                })
                .map_err(|error| Failed {
                    step: "enable",
                    error,
                }),
            IdentityAction::Remove => lifecycle::remove(ctx, &fence, &tenant)
                .await
                .map(|()| {
                    Body::IdentityRemoved(pb::IdentityRemoved {
                        tenant_id: tenant.id.clone(),
                    })
                })
                .map_err(|error| Failed {
                    step: "remove",
                    error,
                }),
        };
        match result {
            Ok(body) => {
                let tag = body.type_name();
                record(ctx, &fence, &tenant, &work.event, tag, body).await?;
                Ok(Outcome::Done)
            }
            Err(failed) => {
                let configuring = matches!(action, IdentityAction::Configure { .. });
                failure(ctx, &fence, attempts, work, &tenant, failed, configuring).await
            }
        }
    }
    .instrument(span)
    .await
}

/// Records a failed attempt; gives up (IdentityConfigurationFailed) when another attempt will
/// not help or the attempts are spent.
async fn failure(
    ctx: &Ctx,
    fence: &Fence,
    attempts: &Attempts,
    work: &Work,
    tenant: &Tenant,
    failed: Failed,
    configuring: bool,
) -> Result<Outcome, WorkError> {
    let Failed { step, error } = failed;
    if let StepError::LeaseLost(why) = &error {
        return Err(WorkError::Lease(worker::LeaseError::Lost(why.clone())));
    }
    // Attempts are the failures recorded for this trigger, not deliveries: a delivery handed
    // back while another instance held the tenant was no attempt.
    let attempt = u64::from(tenant.failures_for(&work.event.event_id)) + 1;
    let will_retry = error.is_transient()
        && !work.last_attempt
        // Setup gives up after its attempts (an operator retries); disable, enable and remove
        // must happen eventually, so they keep trying as long as the consumer redelivers.
        && (!configuring || attempt < attempts.max);
    let reason = error.to_string();
    tracing::warn!(tenant = %tenant.id, step, attempt, will_retry, %reason, "identity step failed");
    let mut events = vec![Body::IdentityStepFailed(pb::IdentityStepFailed {
        tenant_id: tenant.id.clone(),
        step: step.to_owned(),
        attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
        reason: reason.clone(),
        will_retry,
    })];
    if !will_retry && configuring {
        events.push(Body::IdentityConfigurationFailed(
            pb::IdentityConfigurationFailed {
                tenant_id: tenant.id.clone(),
                reason: reason.clone(),
                // Outages and objects an operator can clean up are worth a retry; a password that
                // is gone is not.
                retryable: !matches!(error, StepError::Gone(_)),
                step: step.to_owned(),
            },
        ));
    }
    let tag = format!("failed:{attempt}");
    append(ctx, fence, tenant, &work.event, &tag, events).await?;
    if will_retry {
        Err(WorkError::Transient(reason))
    } else if configuring {
        Ok(Outcome::Done)
    } else {
        // Disable/enable/remove must happen eventually: an operator retries the dead letter.
        Err(WorkError::Permanent(reason))
    }
}

async fn record(
    ctx: &Ctx,
    fence: &Fence,
    tenant: &Tenant,
    cause: &RecordedEvent,
    tag: &str,
    body: Body,
) -> Result<(), WorkError> {
    append(ctx, fence, tenant, cause, tag, vec![body]).await
}

/// Appends to the tenant's identity subject at the version we loaded, with ids derived from
/// the cause, so a retried append is stored once and a concurrent one is a conflict.
async fn append(
    ctx: &Ctx,
    fence: &Fence,
    tenant: &Tenant,
    cause: &RecordedEvent,
    tag: &str,
    bodies: Vec<Body>,
) -> Result<(), WorkError> {
    let subject = ctx.store.subject(EventContext::Identity, &tenant.id);
    let events: Vec<NewEvent> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let name = format!("{}:identity:{tag}:{i}", cause.event_id);
            NewEvent::new(body)
                .with_id(uuid::Uuid::new_v5(
                    &uuid::Uuid::NAMESPACE_OID,
                    name.as_bytes(),
                ))
                .following(cause)
        })
        .collect();
    let first_type = events.first().map(|e| e.event_type()).unwrap_or_default();
    ctx.crash_at(&format!("before:{first_type}"));
    fence.check().await.map_err(WorkError::Lease)?;
    match ctx
        .store
        .append(&subject, tenant.identity_version, events)
        .await
    {
        Ok(_) => {}
        // Someone recorded something first: decide again on fresh state.
        Err(StoreError::Conflict { .. }) => {
            return Err(WorkError::Transient(
                "the identity subject moved on; deciding again".into(),
            ));
        }
        Err(e) => return Err(work_error(e.into())),
    }
    ctx.crash_at(&format!("after:{first_type}"));
    Ok(())
}

fn work_error(e: StepError) -> WorkError {
    match e {
        StepError::LeaseLost(why) => WorkError::Lease(worker::LeaseError::Lost(why)),
        StepError::Transient(why) => WorkError::Transient(why),
        StepError::Permanent(why) | StepError::NotOurs(why) | StepError::Gone(why) => {
            WorkError::Permanent(why)
        }
    }
}
