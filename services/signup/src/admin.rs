//! `TenantAdmin`: operator commands, each judged by `tenancy::decide` against the tenant's
//! folded history and appended to `tenantry.lifecycle.<tenant>`.

use eventstore::{EventContext, EventStore, NewEvent, StoreError};
use proto::v1::tenant_admin_server::TenantAdmin;
use proto::v1::{
    AdminCommandResponse, ChangePlanRequest, DeleteTenantRequest, ResumeTenantRequest,
    RetryProvisioningRequest, SuspendTenantRequest,
};
use tenancy::{Actor, Command, TenantId};
use tonic::{Request, Response, Status};

use crate::error::SignupError;
use crate::validate::Catalog;

/// How often a command is re-decided after losing an append race on the lifecycle subject.
const CONFLICT_ROUNDS: usize = 5;

/// Longest reason accepted, in characters.
const MAX_REASON: usize = 500;

/// The operator API.
pub struct AdminApi {
    store: EventStore,
    catalog: Catalog,
    claims: Option<crate::claims::Claims>,
}

impl AdminApi {
    /// An API appending to `store`, offering `catalog`'s plans.
    pub fn new(store: EventStore, catalog: Catalog) -> Self {
        Self {
            store,
            catalog,
            claims: None,
        }
    }

    /// Checks retries against the subdomain claims: a failed tenant whose owner signed up
    /// again under the same name has lost the name, and retrying it would only collide.
    pub fn with_claims(mut self, claims: crate::claims::Claims) -> Self {
        self.claims = Some(claims);
        self
    }

    /// Loads the tenant, decides, appends; re-decides on a concurrent append.
    async fn run(
        &self,
        tenant: &TenantId,
        command: impl Fn() -> Command,
    ) -> Result<AdminCommandResponse, SignupError> {
        let tenant = tenant.to_string();
        let subject = self.store.subject(EventContext::Lifecycle, &tenant);
        for _ in 0..CONFLICT_ROUNDS {
            let history = self
                .store
                .load_tenant(&tenant)
                .await
                .map_err(store_unavailable)?;
            let state = tenancy::fold(history.iter().map(|e| &e.body));
            if let (Some(claims), Command::RetryProvisioning { .. }) = (&self.claims, command())
                && !state.subdomain.is_empty()
                && let Some(holder) = claims.holder(&state.subdomain).await?
                && holder != tenant
            {
                return Err(SignupError::SubdomainReassigned {
                    subdomain: state.subdomain.clone(),
                    holder,
                });
            }
            let version = history
                .iter()
                .filter(|e| e.subject == subject)
                .map(|e| e.sequence)
                .max()
                .unwrap_or(0);
            // The saga's correlation id is the signup's: carried by TenantRequested.
            let correlation = history
                .first()
                .map(|e| e.correlation())
                .unwrap_or_else(|| tenant.clone());
            let bodies = tenancy::decide(&state, command())?;
            let events: Vec<NewEvent> = bodies
                .iter()
                .map(|b| NewEvent::new(b.clone()).correlated(correlation.clone()))
                .collect();
            let last_id = events.last().map(|e| e.id.to_string()).unwrap_or_default();
            match self.store.append(&subject, version, events).await {
                Ok(sequences) => {
                    let after = bodies.iter().fold(state, tenancy::apply);
                    tracing::info!(tenant, status = %after.status, "operator command recorded");
                    return Ok(AdminCommandResponse {
                        tenant_id: tenant,
                        status: proto::v1::TenantStatus::from(after.status) as i32,
                        sequence: sequences.last().copied().unwrap_or(0),
                        event_id: last_id,
                    });
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_unavailable(e)),
            }
        }
        Err(SignupError::Unavailable(
            "the tenant kept changing while the command was decided".to_owned(),
        ))
    }
}

fn store_unavailable(e: StoreError) -> SignupError {
    match e {
        StoreError::Unavailable(_) => SignupError::Unavailable(e.to_string()),
        other => SignupError::Unexpected(anyhow::Error::new(other)),
    }
}

fn tenant_id(raw: &str) -> Result<TenantId, SignupError> {
    TenantId::parse(raw).map_err(|e| SignupError::invalid("tenant_id", format!("tenant id {e}")))
}

fn reason(raw: &str) -> Result<String, SignupError> {
    let r = raw.trim();
    if r.chars().count() > MAX_REASON || r.chars().any(char::is_control) {
        return Err(SignupError::invalid(
            "reason",
            format!("reason must be at most {MAX_REASON} characters of plain text"),
        ));
    }
    Ok(r.to_owned())
}

/// Metadata a service operator sets to name the person it acts for (billing: the accountant who
/// called its `ChangePlan`). Ignored from anyone else.
pub const ON_BEHALF_OF: &str = "tenantry-on-behalf-of";

/// The operator bound to the call's token (the interceptor put it there). The name is never
/// taken from what the caller says about itself; only a service may add whom it acts for.
fn actor<T>(request: &Request<T>) -> Result<Actor, SignupError> {
    let o = svc::auth::operator(request).ok_or(SignupError::Unauthenticated)?;
    if !o.service {
        return Ok(Actor::operator(&o.name));
    }
    let actor = Actor::service("service", &o.name);
    let Some(person) = request.metadata().get(ON_BEHALF_OF) else {
        return Ok(actor);
    };
    let person = person
        .to_str()
        .ok()
        .filter(|p| svc::auth::valid_name(p))
        .ok_or_else(|| {
            SignupError::Invalid(vec![crate::error::Violation::new(
                ON_BEHALF_OF,
                "the metadata tenantry-on-behalf-of must be an operator name: 1-64 of a-z A-Z 0-9 . _ @ -",
            )])
        })?;
    Ok(actor.for_person(person))
}

fn answer(
    r: Result<AdminCommandResponse, SignupError>,
) -> Result<Response<AdminCommandResponse>, Status> {
    r.map(Response::new).map_err(Status::from)
}

impl AdminApi {
    /// The commands that carry only a tenant and a reason: validate both, then decide.
    async fn with_reason(
        &self,
        raw_tenant: &str,
        raw_reason: &str,
        actor: Actor,
        make: fn(String, Actor) -> Command,
    ) -> Result<Response<AdminCommandResponse>, Status> {
        answer(
            async {
                let tenant = tenant_id(raw_tenant)?;
                let reason = reason(raw_reason)?;
                self.run(&tenant, || make(reason.clone(), actor.clone()))
                    .await
            }
            .await,
        )
    }
}

#[tonic::async_trait]
impl TenantAdmin for AdminApi {
    async fn suspend_tenant(
        &self,
        request: Request<SuspendTenantRequest>,
    ) -> Result<Response<AdminCommandResponse>, Status> {
        let actor = actor(&request).map_err(Status::from)?;
        let req = request.into_inner();
        self.with_reason(&req.tenant_id, &req.reason, actor, |reason, actor| {
            Command::Suspend { reason, actor }
        })
        .await
    }

    async fn resume_tenant(
        &self,
        request: Request<ResumeTenantRequest>,
    ) -> Result<Response<AdminCommandResponse>, Status> {
        let actor = actor(&request).map_err(Status::from)?;
        let req = request.into_inner();
        self.with_reason(&req.tenant_id, &req.reason, actor, |reason, actor| {
            Command::Resume { reason, actor }
        })
        .await
    }

    async fn delete_tenant(
        &self,
        request: Request<DeleteTenantRequest>,
    ) -> Result<Response<AdminCommandResponse>, Status> {
        let actor = actor(&request).map_err(Status::from)?;
        let req = request.into_inner();
        answer(
            async {
                let tenant = tenant_id(&req.tenant_id)?;
                // Compared as typed (after trimming): the guard is that the operator typed the id.
                if req.confirm.trim() != req.tenant_id.trim() {
                    return Err(SignupError::invalid(
                        "confirm",
                        "confirm must repeat the tenant id exactly, to guard against deleting the wrong tenant",
                    ));
                }
                let reason = reason(&req.reason)?;
                self.run(&tenant, || Command::Delete {
                    reason: reason.clone(),
                    actor: actor.clone(),
                })
                .await
            }
            .await,
        )
    }

    async fn retry_provisioning(
        &self,
        request: Request<RetryProvisioningRequest>,
    ) -> Result<Response<AdminCommandResponse>, Status> {
        let actor = actor(&request).map_err(Status::from)?;
        let req = request.into_inner();
        self.with_reason(&req.tenant_id, &req.reason, actor, |reason, actor| {
            Command::RetryProvisioning { reason, actor }
        })
        .await
    }

    async fn change_plan(
        &self,
        request: Request<ChangePlanRequest>,
    ) -> Result<Response<AdminCommandResponse>, Status> {
        let actor = actor(&request).map_err(Status::from)?;
        let req = request.into_inner();
        answer(
            async {
                let tenant = tenant_id(&req.tenant_id)?;
                let plan = self
                    .catalog
                    .plan(&req.plan)
                    .map_err(|v| SignupError::Invalid(vec![v]))?;
                self.run(&tenant, || Command::ChangePlan {
                    plan: plan.clone(),
                    actor: actor.clone(),
                })
                .await
            }
            .await,
        )
    }
}
