//! The `Billing` gRPC API: plans, a tenant's subscription and invoices (folded from its events),
//! and payments an operator records.

use std::sync::Arc;

use async_nats::jetstream::kv;
use eventstore::{Body, EventContext, NewEvent, StoreError};
use proto::v1::{self as pb, billing_server::Billing};
use tenancy::TenantId;
use tonic::{Request, Response, Status};

use crate::account::Account;
use crate::invoices::invoices;
use crate::payment::PaymentProvider;
use crate::process::{Ctx, Fence};

/// The service.
pub struct BillingService<P> {
    ctx: Arc<Ctx<P>>,
    due: kv::Store,
    leases: worker::Leases,
}

impl<P> BillingService<P> {
    /// Over `ctx`, updating `due` and taking tenants' `leases` for payments.
    pub fn new(ctx: Arc<Ctx<P>>, due: kv::Store, leases: worker::Leases) -> Self {
        Self { ctx, due, leases }
    }
}

fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn tenant_id(raw: &str) -> Result<String, Status> {
    TenantId::parse(raw)
        .map(|t| t.to_string())
        .map_err(|e| Status::invalid_argument(format!("tenant_id: {e}")))
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!(
        "billing cannot read the event log ({e}); try again"
    ))
}

#[tonic::async_trait]
impl<P: PaymentProvider> Billing for BillingService<P> {
    async fn list_plans(
        &self,
        _: Request<pb::ListPlansRequest>,
    ) -> Result<Response<pb::ListPlansResponse>, Status> {
        Ok(Response::new(self.ctx.catalogue.views()))
    }

    async fn get_subscription(
        &self,
        request: Request<pb::GetSubscriptionRequest>,
    ) -> Result<Response<pb::SubscriptionView>, Status> {
        let tenant = tenant_id(&request.get_ref().tenant_id)?;
        let account = Account::load(&self.ctx.store, &tenant)
            .await
            .map_err(unavailable)?;
        let sub = &account.state.subscription;
        if sub.status == tenancy::SubscriptionStatus::None {
            return Err(Status::not_found(format!(
                "tenant {tenant} has no subscription (it is not provisioned yet, or does not exist)"
            )));
        }
        Ok(Response::new(pb::SubscriptionView {
            tenant_id: tenant,
            subscription_id: sub.subscription_id.clone(),
            plan: sub.plan.clone(),
            status: sub.status.as_str().to_owned(),
            price_minor: sub.price_minor,
            currency: sub.currency.clone(),
            interval: sub.interval.as_str().to_owned(),
            trial_ends_at: sub.trial_ends_at.and_then(ts),
            next_due_at: tenancy::next_due_at(sub, &self.ctx.dunning)
                .filter(|t| *t > i64::MIN)
                .and_then(ts),
            invoiced_minor: sub.invoiced_minor,
            paid_minor: sub.paid_minor,
            open_minor: sub.open.values().map(|i| i.amount_minor).sum(),
            usage: sub.usage.map(|u| pb::UsageView {
                users: u.users,
                database_mb: u.database_mb,
                storage_mb: u.storage_mb,
                measured_at: ts(u.measured_at),
            }),
            max_users: sub.limits.max_users,
            max_storage_mb: sub.limits.max_storage_mb,
            max_database_mb: sub.limits.max_database_mb,
            over_limit: sub
                .over_limit
                .as_ref()
                .map(|o| o.limit.clone())
                .unwrap_or_default(),
            over_limit_grace_ends_at: sub.over_limit.as_ref().and_then(|o| ts(o.grace_ends_at)),
        }))
    }

    async fn list_invoices(
        &self,
        request: Request<pb::ListInvoicesRequest>,
    ) -> Result<Response<pb::ListInvoicesResponse>, Status> {
        let tenant = tenant_id(&request.get_ref().tenant_id)?;
        let store = &self.ctx.store;
        let events = store
            .load(&store.subject(EventContext::Billing, &tenant))
            .await
            .map_err(unavailable)?;
        Ok(Response::new(pb::ListInvoicesResponse {
            invoices: invoices(events.iter().map(|e| (&e.body, e.occurred_at.timestamp()))),
        }))
    }

    async fn change_plan(
        &self,
        request: Request<pb::BillingChangePlanRequest>,
    ) -> Result<Response<pb::BillingChangePlanResponse>, Status> {
        let Some(caller) = svc::auth::operator(&request)
            .filter(|o| o.role.covers(svc::Role::Admin))
            .map(|o| o.name.clone())
        else {
            return Err(Status::permission_denied(
                "changing a plan needs an admin operator's token",
            ));
        };
        let r = request.into_inner();
        let tenant = tenant_id(&r.tenant_id)?;
        let Some(plan) = self.ctx.catalogue.plan(&r.plan) else {
            let offered: Vec<&str> = self
                .ctx
                .catalogue
                .plans
                .keys()
                .map(String::as_str)
                .collect();
            return Err(Status::invalid_argument(format!(
                "plan: {} is not in the plan catalogue; choose one of {}",
                r.plan,
                offered.join(", ")
            )));
        };
        let account = Account::load(&self.ctx.store, &tenant)
            .await
            .map_err(unavailable)?;
        let from = account.state.subscription.plan.clone();
        if !account.state.subscription.live() {
            return Err(Status::failed_precondition(format!(
                "tenant {tenant} has no live subscription"
            )));
        }
        if let Some(u) = &account.state.subscription.usage {
            let over = [
                ("max_users", u64::from(u.users), u64::from(plan.max_users)),
                ("max_database_mb", u.database_mb, plan.max_database_mb),
                ("max_storage_mb", u.storage_mb, plan.max_storage_mb),
            ]
            .into_iter()
            .find(|(_, used, max)| used > max);
            if let Some((limit, used, max)) = over {
                return Err(Status::failed_precondition(format!(
                    "plan {}: {limit} is {max}, but the tenant uses {used}; reduce its usage first",
                    r.plan
                )));
            }
        }
        let answer = self.ctx.ask_plan_change(&tenant, &r.plan, &caller).await?;
        Ok(Response::new(pb::BillingChangePlanResponse {
            tenant_id: tenant,
            from_plan: from,
            to_plan: r.plan,
            sequence: answer.sequence,
        }))
    }

    async fn record_payment(
        &self,
        request: Request<pb::RecordPaymentRequest>,
    ) -> Result<Response<pb::RecordPaymentResponse>, Status> {
        let operator = match svc::auth::operator(&request) {
            Some(o) if o.role.covers(svc::Role::Admin) => o.name.clone(),
            _ => {
                return Err(Status::permission_denied(
                    "recording a payment needs an admin operator's token",
                ));
            }
        };
        let r = request.into_inner();
        let tenant = tenant_id(&r.tenant_id)?;
        let reference = r.reference.trim();
        if reference.is_empty() || reference.len() > 200 || reference.chars().any(char::is_control)
        {
            return Err(Status::invalid_argument(
                "reference: give the payment's reference (1–200 characters of plain text)",
            ));
        }
        let lease = match self.leases.try_acquire(&tenant).await {
            Ok(worker::Acquire::Acquired(l)) => Arc::new(l),
            Ok(worker::Acquire::Held { .. }) => {
                return Err(Status::unavailable(
                    "billing is working on this tenant right now; try again in a few seconds",
                ));
            }
            Err(e) => return Err(unavailable(e)),
        };
        let fence = Fence::of(Some(Arc::clone(&lease)));
        let result = self
            .pay(
                &fence,
                &tenant,
                &r.invoice_id,
                &format!("{operator}: {reference}"),
            )
            .await;
        drop(fence);
        if let Ok(l) = Arc::try_unwrap(lease) {
            let _ = l.release().await;
        }
        result.map(Response::new)
    }
}

impl<P: PaymentProvider> BillingService<P> {
    async fn pay(
        &self,
        fence: &Fence,
        tenant: &str,
        invoice_id: &str,
        reference: &str,
    ) -> Result<pb::RecordPaymentResponse, Status> {
        let store = &self.ctx.store;
        let account = Account::load(store, tenant).await.map_err(unavailable)?;
        let sub = &account.state.subscription;
        let answer = |already_paid| pb::RecordPaymentResponse {
            invoice_id: invoice_id.to_owned(),
            already_paid,
        };
        // Due now, before the payment is recorded: whatever a payment makes due (a resume) is
        // settled by the scheduler's next tick even if this instance dies right after the
        // append, or an earlier attempt did.
        crate::index(&self.due, tenant, Some(i64::MIN))
            .await
            .map_err(|e| Status::unavailable(format!("billing's due index: {e}; try again")))?;
        let Some(open) = sub.open.get(invoice_id) else {
            let events = store
                .load(&store.subject(EventContext::Billing, tenant))
                .await
                .map_err(unavailable)?;
            let known = invoices(events.iter().map(|e| (&e.body, 0)))
                .into_iter()
                .any(|i| i.invoice_id == invoice_id);
            return if known {
                Ok(answer(true))
            } else {
                Err(Status::not_found(format!(
                    "tenant {tenant} has no invoice {invoice_id}; list them with `tenantctl billing invoices {tenant}`"
                )))
            };
        };
        let body = Body::InvoicePaid(pb::InvoicePaid {
            tenant_id: tenant.to_owned(),
            invoice_id: invoice_id.to_owned(),
            amount_minor: open.amount_minor,
            payment_reference: format!("manual ({reference})"),
        });
        let name = format!("billing:{tenant}:pay:{invoice_id}");
        let event = NewEvent::new(body)
            .with_id(uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                name.as_bytes(),
            ))
            .correlated(tenant.to_owned());
        self.ctx.crash_at("before:InvoicePaid");
        fence.check().await.map_err(unavailable)?;
        match store
            .append(
                &store.subject(EventContext::Billing, tenant),
                account.version,
                vec![event],
            )
            .await
        {
            Ok(_) => self.ctx.crash_at("after:InvoicePaid"),
            Err(StoreError::Conflict { .. }) => {
                return Err(Status::aborted(
                    "the tenant's billing changed meanwhile; try again",
                ));
            }
            Err(e) => return Err(unavailable(e)),
        }
        // Paid: a suspended tenant is reactivated now rather than at the next tick.
        match self.ctx.settle(fence, tenant).await {
            Ok(next) => {
                let _ = crate::index(&self.due, tenant, next).await;
            }
            // The index still says "due now": the scheduler settles it at its next tick.
            Err(e) => {
                tracing::warn!(tenant, error = %e, "settling after a payment failed; the scheduler retries")
            }
        }
        Ok(answer(false))
    }
}
