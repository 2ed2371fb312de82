//! Billing one tenant: start and cancel its subscription, and do everything due at the clock's
//! now — end the trial, issue the period's invoice, charge it, suspend after the grace period,
//! reactivate once paid — one recorded fact at a time.
//!
//! Every fact's event id is derived from the tenant, the billing subject's version and what it
//! is, and every append expects that version: a redelivery, a crash between the work and its
//! fact, or a second instance records each fact once. Charges carry a per-attempt idempotency
//! key, so a charge made but not recorded is answered the same when retried.

use std::sync::Arc;
use std::time::Duration;

/// The longest a payment provider or the operator API may take to answer one call.
pub const CALL_LIMIT: Duration = Duration::from_secs(10);

use eventstore::{Body, EventContext, NewEvent, StoreError};
use proto::v1::{self as pb, tenant_admin_client::TenantAdminClient};
use secrecy::{ExposeSecret, SecretString};
use tenancy::{
    Due, Dunning, Status, SubscriptionStatus, SuspendCause, due, invoice_number, next_due_at,
};
use tonic::transport::Channel;

use crate::account::Account;
use crate::clock::Clock;
use crate::error::BillingError;
use crate::meter::{self, Meter};
use crate::payment::{Charge, ChargeOutcome, PaymentProvider};

/// The proof that this instance bills the tenant now: the worker core's fence.
pub use worker::Fence;

/// How billing asks for a suspension or resume: the signup gateway's operator API, as the
/// `billing` service operator (recorded as such on the lifecycle events).
#[derive(Clone)]
pub struct Admin {
    /// TenantAdmin client.
    pub client: TenantAdminClient<Channel>,
    /// The billing operator's token.
    pub token: SecretString,
    /// Billing's operator name there (what its lifecycle requests are recorded under).
    pub name: String,
}

impl Admin {
    /// `message` with billing's bearer token.
    fn request<T>(&self, message: T) -> Result<tonic::Request<T>, tonic::Status> {
        let mut r = tonic::Request::new(message);
        let bearer = format!("Bearer {}", self.token.expose_secret())
            .parse()
            .map_err(|_| tonic::Status::internal("billing's operator token is not ASCII"))?;
        r.metadata_mut().insert("authorization", bearer);
        Ok(r)
    }
}

/// What every step needs.
pub struct Ctx<P> {
    /// Event store.
    pub store: eventstore::EventStore,
    /// Plans.
    pub catalogue: Arc<plans::PlanCatalogue>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Payments.
    pub provider: Arc<P>,
    /// Suspension and resume.
    pub admin: Admin,
    /// Timing rules.
    pub dunning: Dunning,
    /// Usage measurement (`None`: metering is off).
    pub meter: Option<Meter>,
    /// Test hook: abort the process at `at:charge` (a charge answered, not recorded),
    /// `at:asked` (a suspension or resume asked for, not recorded), `before:<Event>` or
    /// `after:<Event>`.
    pub crash: Option<String>,
}

fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn limits(plan: &plans::Plan) -> Option<pb::PlanLimits> {
    Some(pb::PlanLimits {
        max_users: plan.max_users,
        max_storage_mb: plan.max_storage_mb,
        max_database_mb: plan.max_database_mb,
    })
}

impl<P> Ctx<P> {
    /// The crash hook: aborts the process if it is set to `point`.
    pub(crate) fn crash_at(&self, point: &str) {
        if self.crash.as_deref() == Some(point) {
            tracing::error!(point, "crash hook: aborting");
            std::process::abort();
        }
    }
}

impl<P: PaymentProvider> Ctx<P> {
    /// TenantProvisioned: the subscription starts (with the plan's trial, if any).
    pub async fn start(&self, fence: &Fence, tenant: &str) -> Result<(), BillingError> {
        let account = Account::load(&self.store, tenant).await?;
        // Already started, or the tenant is gone (a first start replays old history).
        if account.state.subscription.status != SubscriptionStatus::None
            || matches!(account.state.status, Status::Deleting | Status::Deleted)
        {
            return Ok(());
        }
        let plan_id = account.state.plan.clone();
        let plan = self.catalogue.plan(&plan_id).ok_or_else(|| {
            // An instance still on an older catalogue during a rollout: a newer one will know.
            BillingError::Transient(format!(
                "tenant {tenant} is on plan {plan_id}, which this instance's plan catalogue does not have (is it older than the others?)"
            ))
        })?;
        let now = self.clock.now();
        let body = Body::SubscriptionStarted(pb::SubscriptionStarted {
            tenant_id: tenant.to_owned(),
            subscription_id: format!("sub-{tenant}"),
            plan: plan_id,
            trial_ends_at: (plan.trial_days > 0)
                .then(|| ts(now + i64::from(plan.trial_days) * 86_400))
                .flatten(),
            price_minor: plan.price_minor,
            currency: plan.currency.clone(),
            interval: plan.interval.clone(),
            started_at: ts(now),
            limits: limits(plan),
        });
        self.record(fence, &account, "started", body).await
    }

    /// SiteLimitsApplied: the site runs on another plan now; billing charges it from the next
    /// period on.
    pub async fn plan_applied(
        &self,
        fence: &Fence,
        tenant: &str,
        to_plan: &str,
    ) -> Result<(), BillingError> {
        let account = Account::load(&self.store, tenant).await?;
        let sub = &account.state.subscription;
        if !sub.live() || sub.plan == to_plan {
            return Ok(());
        }
        let plan = self.catalogue.plan(to_plan).ok_or_else(|| {
            BillingError::Transient(format!(
                "tenant {tenant} moved to plan {to_plan}, which this instance's plan catalogue does not have (is it older than the others?)"
            ))
        })?;
        let body = Body::PlanChanged(pb::PlanChanged {
            tenant_id: tenant.to_owned(),
            from_plan: sub.plan.clone(),
            to_plan: to_plan.to_owned(),
            price_minor: plan.price_minor,
            currency: plan.currency.clone(),
            limits: limits(plan),
        });
        self.record(fence, &account, &format!("plan:{to_plan}"), body)
            .await
    }

    /// Asks the operator API for a plan change, as billing.
    pub async fn ask_plan_change(
        &self,
        tenant: &str,
        plan: &str,
        for_person: &str,
    ) -> Result<pb::AdminCommandResponse, tonic::Status> {
        let mut client = self.admin.client.clone();
        let mut r = self.admin.request(pb::ChangePlanRequest {
            tenant_id: tenant.to_owned(),
            plan: plan.to_owned(),
        })?;
        // The audit names the person who asked billing, not only billing.
        r.metadata_mut().insert(
            "tenantry-on-behalf-of",
            for_person
                .parse()
                .map_err(|_| tonic::Status::internal("the operator's name is not ASCII"))?,
        );
        client.change_plan(r).await.map(tonic::Response::into_inner)
    }

    /// SiteDeleted: the subscription ends.
    pub async fn cancel(&self, fence: &Fence, tenant: &str) -> Result<(), BillingError> {
        let account = Account::load(&self.store, tenant).await?;
        if !account.state.subscription.live() {
            return Ok(());
        }
        let body = Body::SubscriptionCancelled(pb::SubscriptionCancelled {
            tenant_id: tenant.to_owned(),
            subscription_id: account.state.subscription.subscription_id.clone(),
            reason: "tenant deleted".into(),
        });
        self.record(fence, &account, "cancelled", body).await
    }

    /// Does everything due now; returns when billing next has something to do.
    pub async fn settle(&self, fence: &Fence, tenant: &str) -> Result<Option<i64>, BillingError> {
        let mut meter_failed_at = None;
        // Bounded: each round records one fact, and a state has few due facts at one moment.
        for _ in 0..64 {
            let account = Account::load(&self.store, tenant).await?;
            let sub = &account.state.subscription;
            if matches!(account.state.status, Status::Deleting | Status::Deleted) {
                return Ok(None);
            }
            let now = self.clock.now();
            // Only a running site can be measured (a suspended one is in maintenance mode);
            // SiteResumed settles the tenant again.
            let mut dunning = self.dunning;
            if self.meter.is_none()
                || meter_failed_at.is_some()
                || account.state.status != Status::Active
            {
                dunning.meter_every = 0;
            }
            let Some(d) = due(sub, now, &dunning) else {
                let next = next_due_at(sub, &dunning);
                // A failed measurement is tried again soon, without holding up the rest.
                let retry = meter_failed_at.map(|t: i64| t.saturating_add(meter::RETRY_AFTER));
                return Ok([next, retry].into_iter().flatten().min());
            };
            if d == Due::Meter {
                match self.measure(&account, now).await {
                    Ok(body) => self.record(fence, &account, "usage", body).await?,
                    Err(why) => {
                        tracing::warn!(tenant, error = %why, "cannot measure the tenant's usage; trying again later");
                        meter_failed_at = Some(now);
                    }
                }
                continue;
            }
            let (tag, body) = self.act(fence, &account, &d, now).await?;
            self.record(fence, &account, &tag, body).await?;
        }
        Err(BillingError::Transient(format!(
            "tenant {tenant}: billing kept finding work; continuing on the next tick"
        )))
    }

    async fn measure(&self, account: &Account, now: i64) -> Result<Body, String> {
        let meter = self.meter.as_ref().ok_or("metering is off")?;
        let usage = meter.measure(&account.id, &account.state, now).await?;
        Ok(Body::UsageRecorded(pb::UsageRecorded {
            tenant_id: account.id.clone(),
            users: usage.users,
            database_mb: usage.database_mb,
            storage_mb: usage.storage_mb,
            measured_at: ts(now),
        }))
    }

    async fn act(
        &self,
        fence: &Fence,
        account: &Account,
        d: &Due,
        now: i64,
    ) -> Result<(String, Body), BillingError> {
        let tenant = account.id.clone();
        let sub = &account.state.subscription;
        Ok(match d {
            Due::EndTrial => (
                "trial-ended".into(),
                Body::TrialEnded(pb::TrialEnded {
                    tenant_id: tenant,
                    subscription_id: sub.subscription_id.clone(),
                }),
            ),
            Due::Invoice { period, start, end } => {
                let number = invoice_number(&tenant, *period);
                let plan_name = self
                    .catalogue
                    .plan(&sub.plan)
                    .map_or_else(|| sub.plan.clone(), |p| p.name.clone());
                (
                    format!("invoice:{number}"),
                    Body::InvoiceIssued(pb::InvoiceIssued {
                        tenant_id: tenant,
                        invoice_id: number.clone(),
                        amount_minor: sub.price_minor,
                        currency: sub.currency.clone(),
                        due_at: ts(now + self.dunning.payment_terms),
                        number: number.clone(),
                        period_start: ts(*start),
                        period_end: ts(*end),
                        idempotency_key: number,
                        lines: vec![pb::InvoiceLine {
                            description: format!("{plan_name} plan, one {}", sub.interval.as_str()),
                            amount_minor: sub.price_minor,
                        }],
                    }),
                )
            }
            Due::Charge { invoice_id } => {
                let inv = sub.open.get(invoice_id).ok_or_else(|| {
                    BillingError::Transient(format!("invoice {invoice_id} is not open any more"))
                })?;
                let attempt = inv.failed_attempts + 1;
                let key = format!("{}:{attempt}", inv.number);
                let charge = Charge {
                    tenant_id: tenant.clone(),
                    invoice: inv.number.clone(),
                    amount_minor: inv.amount_minor,
                    currency: sub.currency.clone(),
                    idempotency_key: key.clone(),
                };
                // Busy while the charge may be in flight: nobody takes the tenant over and
                // decides differently before it can no longer land.
                fence.busy_for(CALL_LIMIT + Duration::from_secs(2)).await?;
                let outcome = match tokio::time::timeout(CALL_LIMIT, self.provider.charge(&charge))
                    .await
                {
                    Ok(answer) => answer.map_err(|e| BillingError::Transient(e.to_string()))?,
                    Err(_) => {
                        return Err(BillingError::Transient(format!(
                            "the payment provider did not answer within {CALL_LIMIT:?}; the retry uses the same idempotency key"
                        )));
                    }
                };
                fence.not_busy().await?;
                self.crash_at("at:charge");
                let tag = format!("charge:{key}");
                match outcome {
                    ChargeOutcome::Paid(reference) => (
                        tag,
                        Body::InvoicePaid(pb::InvoicePaid {
                            tenant_id: tenant,
                            invoice_id: invoice_id.clone(),
                            amount_minor: inv.amount_minor,
                            payment_reference: reference,
                        }),
                    ),
                    ChargeOutcome::Declined(reason) => (
                        tag,
                        Body::PaymentFailed(pb::PaymentFailed {
                            tenant_id: tenant,
                            invoice_id: invoice_id.clone(),
                            reason,
                            attempt,
                            grace_ends_at: ts(inv
                                .grace_ends_at
                                .unwrap_or(now + self.dunning.grace)),
                            failed_at: ts(now),
                        }),
                    ),
                }
            }
            Due::Suspend {
                cause: SuspendCause::Unpaid { invoice_id },
            } => {
                let reason = format!("invoice {invoice_id} unpaid past its grace period");
                self.ask(fence, &tenant, true, &reason).await?;
                (
                    format!("suspend:{invoice_id}"),
                    Body::SubscriptionSuspended(pb::SubscriptionSuspended {
                        tenant_id: tenant,
                        invoice_id: invoice_id.clone(),
                        reason,
                        limit: String::new(),
                    }),
                )
            }
            Due::Suspend {
                cause: SuspendCause::OverLimit { limit },
            } => {
                let reason = format!("usage over the plan's {limit} limit past its grace period");
                self.ask(fence, &tenant, true, &reason).await?;
                (
                    format!("suspend:{limit}"),
                    Body::SubscriptionSuspended(pb::SubscriptionSuspended {
                        tenant_id: tenant,
                        invoice_id: String::new(),
                        reason,
                        limit: limit.clone(),
                    }),
                )
            }
            Due::WarnOverLimit {
                limit,
                used,
                allowed,
                grace_ends_at,
            } => (
                format!("over:{limit}"),
                Body::UsageLimitExceeded(pb::UsageLimitExceeded {
                    tenant_id: tenant,
                    limit: (*limit).to_owned(),
                    used: *used,
                    allowed: *allowed,
                    grace_ends_at: ts(*grace_ends_at),
                }),
            ),
            Due::WithinLimits => (
                "within-limits".into(),
                Body::UsageWithinLimits(pb::UsageWithinLimits { tenant_id: tenant }),
            ),
            Due::Meter => {
                return Err(BillingError::Transient(
                    "a measurement is taken by settle, not act".into(),
                ));
            }
            Due::Reactivate => {
                // Billing lifts only its own hold: a tenant a person suspended stays suspended
                // until a person resumes it.
                if account.suspended_by_billing(&self.admin.name) {
                    self.ask(
                        fence,
                        &tenant,
                        false,
                        "nothing overdue, usage within the plan",
                    )
                    .await?;
                } else {
                    tracing::info!(
                        tenant,
                        by = ?account.suspended_by,
                        "billing's hold is lifted; the tenant stays suspended by an operator"
                    );
                }
                (
                    "reactivate".into(),
                    Body::SubscriptionReactivated(pb::SubscriptionReactivated {
                        tenant_id: tenant,
                        invoice_id: String::new(),
                    }),
                )
            }
        })
    }

    /// Asks the operator API for a suspension (or resume) as billing. A tenant already in the
    /// asked-for state (or on its way) is fine: the answer is the same either way.
    async fn ask(
        &self,
        fence: &Fence,
        tenant: &str,
        suspend: bool,
        reason: &str,
    ) -> Result<(), BillingError> {
        let mut client = self.admin.client.clone();
        let unusable = |s: tonic::Status| BillingError::Permanent(s.message().to_owned());
        fence.busy_for(CALL_LIMIT + Duration::from_secs(2)).await?;
        let call = async {
            if suspend {
                let r = self
                    .admin
                    .request(pb::SuspendTenantRequest {
                        tenant_id: tenant.to_owned(),
                        reason: reason.to_owned(),
                    })
                    .map_err(unusable)?;
                Ok::<_, BillingError>(client.suspend_tenant(r).await)
            } else {
                let r = self
                    .admin
                    .request(pb::ResumeTenantRequest {
                        tenant_id: tenant.to_owned(),
                        reason: reason.to_owned(),
                    })
                    .map_err(unusable)?;
                Ok(client.resume_tenant(r).await)
            }
        };
        let result = match tokio::time::timeout(CALL_LIMIT, call).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(BillingError::Transient(format!(
                    "the operator API did not answer within {CALL_LIMIT:?}"
                )));
            }
        };
        fence.not_busy().await?;
        self.crash_at("at:asked");
        match result {
            Ok(_) => Ok(()),
            // Refused as a transition: fine only if the tenant is (or is on its way to) where
            // billing wants it — an operator got there first, or an earlier attempt of ours.
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists
                ) =>
            {
                let state = Account::load(&self.store, tenant).await?.state;
                let there = if suspend {
                    state.status == Status::Suspended
                        || state.pending == Some(tenancy::Pending::Suspension)
                } else {
                    (state.status == Status::Active && state.pending.is_none())
                        || state.pending == Some(tenancy::Pending::Resume)
                };
                if there {
                    tracing::info!(tenant, suspend, "tenant already there");
                    Ok(())
                } else {
                    Err(BillingError::Transient(format!(
                        "the operator API refused ({}); the tenant is {}, trying again later",
                        s.message(),
                        state.status
                    )))
                }
            }
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                ) =>
            {
                Err(BillingError::Transient(format!(
                    "operator API: {}",
                    s.message()
                )))
            }
            Err(s) => Err(BillingError::Permanent(format!(
                "operator API refused billing's request ({:?}: {}); check billing's operator token and role",
                s.code(),
                s.message()
            ))),
        }
    }

    async fn record(
        &self,
        fence: &Fence,
        account: &Account,
        tag: &str,
        body: Body,
    ) -> Result<(), BillingError> {
        let subject = self.store.subject(EventContext::Billing, &account.id);
        let name = format!("billing:{}:{}:{tag}", account.id, account.version);
        let event = NewEvent::new(body)
            .with_id(uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                name.as_bytes(),
            ))
            .correlated(account.id.clone());
        let ty = event.event_type();
        self.crash_at(&format!("before:{ty}"));
        fence.check().await?;
        match self
            .store
            .append(&subject, account.version, vec![event])
            .await
        {
            Ok(_) => {
                self.crash_at(&format!("after:{ty}"));
                Ok(())
            }
            Err(StoreError::Conflict { .. }) => Err(BillingError::Transient(
                "the billing subject moved on; deciding again".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }
}
