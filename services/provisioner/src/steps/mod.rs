//! One module per step of the new-tenant process. Each step first looks at reality (does the
//! site exist? which apps are installed? does the user exist? is the key in the vault?), does
//! only what is missing, and returns the events that record it; the [`driver`](crate::driver)
//! appends them.

pub mod configure;
pub mod create_owner;
pub mod create_site;
pub mod finish;
pub mod install_apps;
pub mod issue_credentials;
pub mod place;
pub mod rollback;
pub mod verify;

use std::time::Duration;

use frappe::{Bench, BenchOp, SiteName};
use proto::v1::event::Body;
use tokio::time::Instant;

use crate::context::{Ctx, Fence};
use crate::driver::Request;
use crate::error::StepError;
use crate::fleet::{BenchConfig, PlanConfig};
use crate::process::{ProvisioningState, Step};

/// Milliseconds, saturating.
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A recorded site name, parsed.
pub fn parse_site(site: &str) -> Result<SiteName, StepError> {
    SiteName::parse(site).map_err(|e| StepError::Permanent(e.to_string()))
}

/// Where the current round placed the tenant, resolved against the fleet.
pub struct Placed<'a> {
    /// The bench's configuration.
    pub bench_cfg: &'a BenchConfig,
    /// The bench's command runner.
    pub bench: &'a Bench,
    /// The tenant's site.
    pub site: SiteName,
    /// The site's database name.
    pub db_name: String,
}

impl<'a> Placed<'a> {
    /// The placement recorded in `state`.
    pub fn of(ctx: &'a Ctx, state: &ProvisioningState) -> Result<Self, StepError> {
        let placement = state
            .placement
            .as_ref()
            .ok_or_else(|| StepError::Permanent("no placement recorded".into()))?;
        let (bench_cfg, bench) = ctx.bench(&placement.bench)?;
        Ok(Self {
            bench_cfg,
            bench,
            site: parse_site(&placement.site)?,
            db_name: placement.db_name.clone(),
        })
    }

    /// The longest one command of kind `op` may run on the bench host: how long a bench slot
    /// guarding it stays busy if this instance dies.
    pub fn command_limit(&self, op: BenchOp) -> Duration {
        self.bench.command_limit(op)
    }
}

/// The tenant's plan from the fleet's catalogue.
pub fn plan<'a>(ctx: &'a Ctx, req: &Request) -> Result<&'a PlanConfig, StepError> {
    ctx.fleet.plan(&req.body.plan).ok_or_else(|| {
        StepError::Permanent(format!(
            "plan {:?} is not in the fleet's plan catalogue; add [plans.{}]",
            req.body.plan, req.body.plan
        ))
    })
}

/// Runs one step; returns the events recording it.
pub async fn run(
    ctx: &Ctx,
    fence: &Fence,
    req: &Request,
    state: &ProvisioningState,
    step: Step,
) -> Result<Vec<Body>, StepError> {
    let started = Instant::now();
    let plan = plan(ctx, req)?;
    if step == Step::Place {
        return place::run(ctx, fence, req, &plan.app_names()).await;
    }
    let placed = Placed::of(ctx, state)?;
    match step {
        Step::Place => Err(StepError::Permanent("placement is handled above".into())),
        Step::CreateSite => create_site::run(ctx, fence, req, &placed, started).await,
        Step::InstallApps => {
            install_apps::run(ctx, fence, req, &placed, &plan.app_names(), started).await
        }
        Step::Configure => configure::run(ctx, fence, req, &placed, plan, started).await,
        Step::CreateOwner => create_owner::run(ctx, fence, req, &placed, started).await,
        Step::IssueApiCredentials => {
            issue_credentials::run(ctx, fence, req, &placed, started).await
        }
        Step::VerifyApiAccess => verify::run(ctx, req, &placed).await,
        Step::Finish => finish::run(ctx, fence, req, state, &placed).await,
    }
}
