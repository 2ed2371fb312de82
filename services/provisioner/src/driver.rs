//! The loop that drives a tenant through the new-tenant process: fold the tenant's
//! provisioning subject, ask [`process::decide`] for the next step, run it, append its events
//! with the expected version and a deterministic id — so a redelivery, a crash or a second
//! instance never does anything twice.

use chrono::{DateTime, Utc};
use eventstore::{EventContext, NewEvent, RecordedEvent};
use proto::v1::{self as pb, event::Body};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::context::{CrashPoint, Ctx, Fence};
use crate::error::StepError;
use crate::process::{self, Next, ProvisioningState, Step};
use crate::steps::{self, ms};

/// What a TenantRequested asked for.
#[derive(Debug, Clone)]
pub struct Request {
    /// Tenant id.
    pub tenant_id: String,
    /// The request event itself (correlation and causation of what follows).
    pub cause: RecordedEvent,
    /// The request.
    pub body: pb::TenantRequested,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
}

impl Request {
    /// From a TenantRequested event; `None` for any other event.
    pub fn from_event(event: &RecordedEvent) -> Option<Self> {
        match &event.body {
            Body::TenantRequested(r) => Some(Self {
                tenant_id: r.tenant_id.clone(),
                cause: event.clone(),
                body: r.clone(),
                requested_at: event.occurred_at,
            }),
            _ => None,
        }
    }
}

/// How a provisioning run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// TenantProvisioned is recorded (now or before).
    Provisioned,
    /// ProvisioningFailed is recorded; an operator retry may start again.
    Failed,
}

/// Appends `bodies` to `subject` at `version` with deterministic ids, after proving the lease
/// is still ours, honouring the crash hook. Returns the subject's new version, or `None` when an
/// event had been stored before (an earlier run's, possibly different): then only a reload says
/// what the subject holds.
pub async fn append(
    ctx: &Ctx,
    fence: &Fence,
    subject: &str,
    version: u64,
    cause: &RecordedEvent,
    bodies: Vec<(uuid::Uuid, Body)>,
) -> Result<Option<u64>, StepError> {
    fence.check().await?;
    let hit = |ty: &str| bodies.iter().any(|(_, b)| b.type_name() == ty);
    if let Some(CrashPoint::Before(ty)) = &ctx.settings.crash
        && hit(ty)
    {
        tracing::error!(event = %ty, "crash hook: aborting before append");
        std::process::abort();
    }
    let events: Vec<NewEvent> = bodies
        .iter()
        .map(|(id, b)| NewEvent::new(b.clone()).with_id(*id).following(cause))
        .collect();
    let appended = timeline::within(
        "events",
        ctx.store.append_reporting(subject, version, events),
    )
    .await?;
    if let Some(CrashPoint::After(ty)) = &ctx.settings.crash
        && hit(ty)
    {
        tracing::error!(event = %ty, "crash hook: aborting after append");
        std::process::abort();
    }
    if appended.duplicate {
        return Ok(None);
    }
    Ok(Some(appended.sequences.last().copied().unwrap_or(version)))
}

/// Operator retries recorded for the tenant (ProvisioningRetryRequested on its lifecycle subject).
pub async fn retries_requested(ctx: &Ctx, tenant: &str) -> Result<u32, StepError> {
    let events = ctx
        .store
        .load(&ctx.store.subject(EventContext::Lifecycle, tenant))
        .await?;
    Ok(events
        .iter()
        .filter(|e| matches!(e.body, Body::ProvisioningRetryRequested(_)))
        .count() as u32)
}

/// Loads the tenant's provisioning subject: (version, fold).
pub async fn load_state(ctx: &Ctx, tenant: &str) -> Result<(u64, ProvisioningState), StepError> {
    let subject = ctx.store.subject(EventContext::Provisioning, tenant);
    let events = timeline::within("events", ctx.store.load(&subject)).await?;
    let version = events.last().map_or(0, |e| e.sequence);
    Ok((version, process::fold(events.iter().map(|e| &e.body))))
}

/// Drives one tenant until it is provisioned or its round has failed. Errors that are not the
/// tenant's (our infrastructure, a busy site lock, a lost lease) end the run without being
/// recorded: the delivery comes back and resumes from the recorded state.
pub async fn provision(ctx: &Ctx, fence: &Fence, req: &Request) -> Result<Outcome, StepError> {
    let timeline = timeline::Timeline::new();
    let began = Utc::now();
    let mut whole = None;
    let mut finished = None;
    let outcome = timeline
        .scope(crate::known::Known::scope(steps_of(
            ctx,
            fence,
            req,
            &mut whole,
            &mut finished,
        )))
        .await?;
    // Measured by the run that recorded the last step, so a redelivery counts nothing twice.
    if outcome == Outcome::Provisioned
        && let Some(from_pool) = finished
    {
        let waited = (Utc::now() - req.requested_at).to_std().unwrap_or_default();
        ctx.metrics.provisioned(from_pool, waited.as_secs_f64());
    }
    // Only a provisioning this run did from its first step is measured: one resumed after a
    // crash would count the gap as ours.
    if outcome == Outcome::Provisioned && whole == Some(true) {
        let wall = (Utc::now() - req.requested_at).to_std().unwrap_or_default();
        let overhead = wall.saturating_sub(timeline.external());
        ctx.metrics.overhead(overhead.as_secs_f64());
        tracing::info!(
            target: "tenantry::overhead",
            tenant = %req.tenant_id,
            wall_ms = ms(wall),
            overhead_ms = ms(overhead),
            pickup_ms = ms((began - req.requested_at).to_std().unwrap_or_default()),
            external_ms = ms(timeline.external()),
            vault_ms = ms(timeline.own_of("vault")),
            events_ms = ms(timeline.own_of("events")),
            placement_ms = ms(timeline.own_of("placement")),
            "provisioned; control-plane time is the wall time not spent in bench commands, REST calls or waits for a bench slot"
        );
    }
    Ok(outcome)
}

/// The step loop. `whole` is set on the first pass: whether nothing was recorded yet;
/// `finished`, when this run recorded a step and the tenant ended provisioned: whether its
/// site came from the pool.
async fn steps_of(
    ctx: &Ctx,
    fence: &Fence,
    req: &Request,
    whole: &mut Option<bool>,
    finished: &mut Option<bool>,
) -> Result<Outcome, StepError> {
    let mut ran = false;
    let tenant = req.tenant_id.as_str();
    let subject = ctx.store.subject(EventContext::Provisioning, tenant);
    // Step loop: what is decided always follows what is recorded. After our own append at the
    // expected version nothing else can have been written in between, so the state is ours
    // folded forward; any other way out of a pass (a conflict, a failure recorded, lanes side
    // by side) reloads the subject.
    let mut known: Option<(u64, ProvisioningState)> = None;
    loop {
        let (version, state) = match known.take() {
            Some(k) => k,
            None => load_state(ctx, tenant).await?,
        };
        whole.get_or_insert(version == 0);
        let retries = if state.failed.is_some() {
            retries_requested(ctx, tenant).await?
        } else {
            0
        };
        let round = state.failures;
        let next = process::decide(&state, retries);
        let group = process::side_by_side(&state);
        tracing::debug!(tenant, ?next, round, "next provisioning step");
        match next {
            Next::Done => {
                if ran {
                    *finished = Some(state.from_standby);
                }
                return Ok(Outcome::Provisioned);
            }
            Next::AwaitRetry => return Ok(Outcome::Failed),
            Next::RollBack(gave_up) => {
                fence.check().await?;
                let events = steps::rollback::roll_back(ctx, fence, req, &state, &gave_up).await?;
                let bodies = events
                    .into_iter()
                    .map(|b| (process::event_id(tenant, round, b.type_name(), 0), b))
                    .collect();
                append(ctx, fence, &subject, version, &req.cause, bodies).await?;
                tracing::warn!(tenant, step = gave_up.step.as_str(), reason = %gave_up.reason, "provisioning failed and was rolled back");
            }
            Next::Run(_) if group.len() > 1 => {
                ran = true;
                fence.check().await?;
                Box::pin(run_side_by_side(ctx, fence, req, &state, &group, version)).await?;
            }
            Next::Run(step) => {
                ran = true;
                fence.check().await?;
                let attempt = state.attempt(step);
                let started = Instant::now();
                let span = step_span(req, &state, step);
                match Box::pin(steps::run(ctx, fence, req, &state, step))
                    .instrument(span)
                    .await
                {
                    Ok(events) => {
                        let bodies =
                            done(ctx, &state, tenant, round, step, started.elapsed(), events);
                        let after = bodies
                            .iter()
                            .fold(state.clone(), |s, (_, b)| process::apply(s, b));
                        known = append(ctx, fence, &subject, version, &req.cause, bodies)
                            .await?
                            .map(|version| (version, after));
                    }
                    Err(
                        e @ (StepError::Infra(_) | StepError::Busy(_) | StepError::LeaseLost(_)),
                    ) => return Err(e),
                    Err(e) => {
                        record_failure(ctx, fence, req, &state, step, attempt, round, version, e)
                            .await?;
                    }
                }
            }
        }
    }
}

/// The bench a step runs on, for metrics and spans (`none` before the placement).
fn bench_of(state: &ProvisioningState) -> &str {
    state
        .placement
        .as_ref()
        .map_or("none", |p| p.bench.as_str())
}

/// The span of one step: a child of the delivery's, parent of its bench commands and calls.
fn step_span(req: &Request, state: &ProvisioningState, step: Step) -> tracing::Span {
    tracing::info_span!(
        "step",
        otel.name = %format!("provision {}", step.as_str()),
        tenant = %req.tenant_id,
        step = step.as_str(),
        bench = bench_of(state),
        attempt = state.attempt(step),
    )
}

/// A step that succeeded: measured, logged, and its events given their deterministic ids.
fn done(
    ctx: &Ctx,
    state: &ProvisioningState,
    tenant: &str,
    round: u32,
    step: Step,
    took: std::time::Duration,
    events: Vec<Body>,
) -> Vec<(uuid::Uuid, Body)> {
    ctx.metrics
        .step_done(step.as_str(), bench_of(state), took.as_secs_f64());
    tracing::info!(
        tenant,
        step = step.as_str(),
        bench = bench_of(state),
        ms = ms(took),
        "provisioning step done"
    );
    events
        .into_iter()
        .map(|b| (process::event_id(tenant, round, b.type_name(), 0), b))
        .collect()
}

/// One step's run, timed.
async fn timed(
    ctx: &Ctx,
    fence: &Fence,
    req: &Request,
    state: &ProvisioningState,
    step: Step,
) -> (Step, std::time::Duration, Result<Vec<Body>, StepError>) {
    let started = Instant::now();
    // Boxed: three lanes of step futures inline in one future overflow a debug build's stack.
    let r = Box::pin(steps::run(ctx, fence, req, state, step))
        .instrument(step_span(req, state, step))
        .await;
    (step, started.elapsed(), r)
}

/// Runs `group` (see [`process::side_by_side`]) in three lanes — site_config, the owner, the
/// automation key then its verification — appends what succeeded in one append, in step order,
/// and records the first failure. A crash anywhere re-runs the unrecorded steps, each of which
/// finds its own work done.
async fn run_side_by_side(
    ctx: &Ctx,
    fence: &Fence,
    req: &Request,
    state: &ProvisioningState,
    group: &[Step],
    version: u64,
) -> Result<(), StepError> {
    let tenant = req.tenant_id.as_str();
    let lane = |step: Step| async move {
        if group.contains(&step) {
            vec![timed(ctx, fence, req, state, step).await]
        } else {
            Vec::new()
        }
    };
    let keys = async {
        let mut done = Vec::new();
        for step in [Step::IssueApiCredentials, Step::VerifyApiAccess] {
            if !group.contains(&step) {
                continue;
            }
            let r = timed(ctx, fence, req, state, step).await;
            let failed = r.2.is_err();
            done.push(r);
            if failed {
                break;
            }
        }
        done
    };
    let (configure, owner, keys) =
        tokio::join!(lane(Step::Configure), lane(Step::CreateOwner), keys);
    let mut results: Vec<_> = configure.into_iter().chain(owner).chain(keys).collect();
    results.sort_by_key(|(step, _, _)| *step);
    let round = state.failures;
    let mut bodies = Vec::new();
    let mut failure = None;
    for (step, took, r) in results {
        match r {
            Ok(events) => bodies.extend(done(ctx, state, tenant, round, step, took, events)),
            Err(e) => {
                if failure.is_none() {
                    failure = Some((step, e));
                }
            }
        }
    }
    let subject = ctx.store.subject(EventContext::Provisioning, tenant);
    if !bodies.is_empty() {
        append(ctx, fence, &subject, version, &req.cause, bodies).await?;
    }
    match failure {
        None => Ok(()),
        Some((_, e @ (StepError::Infra(_) | StepError::Busy(_) | StepError::LeaseLost(_)))) => {
            Err(e)
        }
        Some((step, e)) => {
            let (version, state) = load_state(ctx, tenant).await?;
            let attempt = state.attempt(step);
            record_failure(ctx, fence, req, &state, step, attempt, round, version, e).await
        }
    }
}

/// Records a failed attempt of `step` (ProvisioningStepFailed) and waits out its back-off when
/// another attempt will follow.
#[allow(clippy::too_many_arguments)] // one call site: the step loop's locals
async fn record_failure(
    ctx: &Ctx,
    fence: &Fence,
    req: &Request,
    state: &ProvisioningState,
    step: Step,
    attempt: u32,
    round: u32,
    version: u64,
    e: StepError,
) -> Result<(), StepError> {
    let tenant = req.tenant_id.as_str();
    let subject = ctx.store.subject(EventContext::Provisioning, tenant);
    ctx.metrics.step_failed(step.as_str(), bench_of(state));
    let transient = matches!(e, StepError::Transient(_));
    let will_retry = transient && attempt < ctx.settings.step_attempts;
    let delay = ctx.settings.retry_backoff * 2u32.saturating_pow(attempt - 1);
    let proto_step = if step == Step::CreateSite && state.placement.is_some() && {
        ctx.placer
            .get(tenant)
            .await?
            .is_some_and(|r| r.standby.is_some())
    } {
        pb::ProvisioningStep::ClaimStandby
    } else {
        step.proto()
    };
    let reason = e.to_string();
    tracing::warn!(tenant, step = step.as_str(), attempt, will_retry, %reason, "provisioning step failed");
    let body = Body::ProvisioningStepFailed(pb::ProvisioningStepFailed {
        tenant_id: tenant.to_owned(),
        step: proto_step as i32,
        attempt,
        reason,
        will_retry,
        retry_in_ms: if will_retry { ms(delay) } else { 0 },
    });
    let id = process::event_id(
        tenant,
        round,
        &format!("ProvisioningStepFailed:{}", step.as_str()),
        u64::from(attempt),
    );
    append(ctx, fence, &subject, version, &req.cause, vec![(id, body)]).await?;
    if will_retry {
        // Back-off before the next attempt; the delivery is kept alive meanwhile.
        tokio::time::sleep(delay).await;
    }
    Ok(())
}
