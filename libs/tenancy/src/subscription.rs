//! A tenant's subscription: the fold of its billing facts ([`Subscription`]) and what billing
//! must do at a given moment ([`due`]) — end a trial, issue the next period's invoice, suspend
//! a tenant whose invoice is unpaid past its grace period, reactivate one that has paid.
//!
//! ```text
//!   Trialing ─TrialEnded→ Active ─PaymentFailed→ PastDue ─grace over→ Suspended
//!                           ↑                       │                     │
//!                           └──────InvoicePaid──────┴──────InvoicePaid────┘
//!   Trialing | Active ─over a plan limit past its grace→ Suspended ─within limits→ back
//!   any ─SubscriptionCancelled→ Cancelled
//! ```
//!
//! Usage: metered every `meter_every` (UsageRecorded); over a plan limit, a warning
//! (UsageLimitExceeded, with the grace period's end), then a suspension if still over when it
//! ends; back within the limits (less usage, or a bigger plan), UsageWithinLimits.
//!
//! Pure: time comes in as a parameter, so a restart or a second instance computes the same
//! due moments from the same facts — nothing is remembered outside the log.

use std::collections::BTreeMap;

use chrono::{DateTime, Months, Utc};
use proto::v1::event::Body;

/// Where a subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum SubscriptionStatus {
    /// No subscription (the tenant is not provisioned yet).
    #[default]
    None,
    /// In the plan's trial: nothing is charged before it ends.
    Trialing,
    /// Paying, nothing overdue.
    Active,
    /// A charge failed; the invoice may still be paid until its grace period ends.
    PastDue,
    /// Unpaid past the grace period: billing asked for the tenant's suspension.
    Suspended,
    /// Ended (the tenant was deleted).
    Cancelled,
}

impl SubscriptionStatus {
    /// Every status.
    pub const ALL: [SubscriptionStatus; 6] = [
        Self::None,
        Self::Trialing,
        Self::Active,
        Self::PastDue,
        Self::Suspended,
        Self::Cancelled,
    ];

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Trialing => "trialing",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Suspended => "suspended",
            Self::Cancelled => "cancelled",
        }
    }
}

/// How long one billing period lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Interval {
    /// A calendar month (31 January + 1 month = 28/29 February).
    #[default]
    Month,
    /// A calendar year.
    Year,
}

impl Interval {
    /// Parses `month` or `year`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "month" => Some(Self::Month),
            "year" => Some(Self::Year),
            _ => None,
        }
    }

    /// The name used in events and plan files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Month => "month",
            Self::Year => "year",
        }
    }

    fn months(self) -> u32 {
        match self {
            Self::Month => 1,
            Self::Year => 12,
        }
    }
}

/// An issued invoice that is not paid yet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OpenInvoice {
    /// Invoice id.
    pub invoice_id: String,
    /// Its deterministic number.
    pub number: String,
    /// Amount due, in minor units.
    pub amount_minor: i64,
    /// When payment is due (a charge is attempted then).
    pub due_at: i64,
    /// Failed charge attempts.
    pub failed_attempts: u32,
    /// Unpaid after this (set by the first failed charge), the tenant is suspended.
    pub grace_ends_at: Option<i64>,
    /// When the latest charge was declined.
    pub last_failed_at: Option<i64>,
}

/// A tenant's subscription, folded from its billing facts. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct Subscription {
    /// Where it stands.
    pub status: SubscriptionStatus,
    /// Its id.
    pub subscription_id: String,
    /// Current plan.
    pub plan: String,
    /// Price per period of the current plan, minor units.
    pub price_minor: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// Period length.
    pub interval: Interval,
    /// When it started.
    pub started_at: i64,
    /// When the trial ends, if there is one.
    pub trial_ends_at: Option<i64>,
    /// How many periods have been invoiced.
    pub periods_invoiced: u32,
    /// Unpaid invoices, by id.
    pub open: BTreeMap<String, OpenInvoice>,
    /// Sum of every invoice issued, minor units.
    pub invoiced_minor: i64,
    /// Sum of every payment, minor units.
    pub paid_minor: i64,
    /// Billing asked for the tenant's suspension and has not asked for its resume since.
    pub suspension_requested: bool,
    /// Every invoice id issued (paid or not): an issue recorded twice counts once.
    pub issued: std::collections::BTreeSet<String>,
    /// The latest measured usage.
    pub usage: Option<Usage>,
    /// The current plan's limits.
    pub limits: Limits,
    /// Usage is over a limit (warned, suspended when the grace ends), until UsageWithinLimits.
    pub over_limit: Option<OverLimit>,
    /// What a reactivation returns to (a trial suspended for its usage stays a trial).
    pub resume_to: SubscriptionStatus,
    /// The current suspension is for usage over a limit (not only for an unpaid invoice).
    pub suspended_for_usage: bool,
}

/// A plan's limits; 0 is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Limits {
    /// Enabled users.
    pub max_users: u32,
    /// File storage, MB.
    pub max_storage_mb: u64,
    /// Database, MB.
    pub max_database_mb: u64,
}

impl Limits {
    fn of(l: Option<&proto::v1::PlanLimits>) -> Option<Self> {
        l.map(|l| Self {
            max_users: l.max_users,
            max_storage_mb: l.max_storage_mb,
            max_database_mb: l.max_database_mb,
        })
    }

    /// The first limit `usage` is over: (limit name, used, allowed).
    pub fn exceeded(&self, usage: &Usage) -> Option<(&'static str, u64, u64)> {
        let checks = [
            ("users", u64::from(usage.users), u64::from(self.max_users)),
            ("database_mb", usage.database_mb, self.max_database_mb),
            ("storage_mb", usage.storage_mb, self.max_storage_mb),
        ];
        checks
            .into_iter()
            .find(|(_, used, allowed)| *allowed > 0 && used > allowed)
    }
}

/// A limit usage went over.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OverLimit {
    /// `users`, `database_mb` or `storage_mb`.
    pub limit: String,
    /// Still over at this moment, the tenant is suspended.
    pub grace_ends_at: i64,
}

/// What a tenant uses, as last measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Usage {
    /// Enabled users.
    pub users: u32,
    /// Database size, MB.
    pub database_mb: u64,
    /// File storage, MB.
    pub storage_mb: u64,
    /// When it was measured.
    pub measured_at: i64,
}

fn seconds(t: &Option<prost_types::Timestamp>) -> Option<i64> {
    t.as_ref().map(|t| t.seconds)
}

impl Subscription {
    /// Folds one billing fact; returns whether it counted.
    pub fn apply(&mut self, body: &Body) -> bool {
        use SubscriptionStatus as S;
        match body {
            Body::SubscriptionStarted(e) if self.status == S::None => {
                *self = Subscription {
                    status: if e.trial_ends_at.is_some() {
                        S::Trialing
                    } else {
                        S::Active
                    },
                    subscription_id: e.subscription_id.clone(),
                    plan: e.plan.clone(),
                    price_minor: e.price_minor,
                    currency: e.currency.clone(),
                    interval: Interval::parse(&e.interval).unwrap_or_default(),
                    started_at: seconds(&e.started_at).unwrap_or_default(),
                    trial_ends_at: seconds(&e.trial_ends_at),
                    limits: Limits::of(e.limits.as_ref()).unwrap_or_default(),
                    ..Subscription::default()
                };
            }
            Body::TrialEnded(_) if self.status == S::Trialing => self.status = S::Active,
            Body::PlanChanged(e) if self.live() => {
                e.to_plan.clone_into(&mut self.plan);
                if !e.currency.is_empty() {
                    self.price_minor = e.price_minor;
                    e.currency.clone_into(&mut self.currency);
                }
                if let Some(l) = Limits::of(e.limits.as_ref()) {
                    self.limits = l;
                }
            }
            Body::InvoiceIssued(e) if self.live() => {
                if !self.issued.insert(e.invoice_id.clone()) {
                    return false;
                }
                self.periods_invoiced = self.periods_invoiced.saturating_add(1);
                self.invoiced_minor = self.invoiced_minor.saturating_add(e.amount_minor);
                self.open.insert(
                    e.invoice_id.clone(),
                    OpenInvoice {
                        invoice_id: e.invoice_id.clone(),
                        number: e.number.clone(),
                        amount_minor: e.amount_minor,
                        due_at: seconds(&e.due_at).unwrap_or_default(),
                        failed_attempts: 0,
                        grace_ends_at: None,
                        last_failed_at: None,
                    },
                );
            }
            Body::PaymentFailed(e) if self.live() => {
                let Some(inv) = self.open.get_mut(&e.invoice_id) else {
                    return false;
                };
                inv.failed_attempts = inv.failed_attempts.max(e.attempt);
                if let Some(at) = seconds(&e.failed_at) {
                    inv.last_failed_at = Some(inv.last_failed_at.map_or(at, |l| l.max(at)));
                }
                if inv.grace_ends_at.is_none() {
                    inv.grace_ends_at = seconds(&e.grace_ends_at);
                }
                if matches!(self.status, S::Active | S::Trialing) {
                    self.status = S::PastDue;
                }
            }
            Body::InvoicePaid(e) if self.status != S::None => {
                let Some(inv) = self.open.remove(&e.invoice_id) else {
                    return false;
                };
                self.paid_minor = self.paid_minor.saturating_add(inv.amount_minor);
                if self.status == S::PastDue && !self.overdue() {
                    self.status = S::Active;
                }
            }
            Body::SubscriptionSuspended(e)
                if matches!(self.status, S::PastDue | S::Active | S::Trialing) =>
            {
                self.suspended_for_usage = !e.limit.is_empty();
                self.resume_to = if self.status == S::Trialing {
                    S::Trialing
                } else {
                    S::Active
                };
                self.status = S::Suspended;
                self.suspension_requested = true;
            }
            Body::SubscriptionReactivated(_) if self.status == S::Suspended => {
                // Anything but a trial (including state saved before `resume_to` existed)
                // returns to active.
                self.status = if self.resume_to == S::Trialing {
                    S::Trialing
                } else {
                    S::Active
                };
                self.suspension_requested = false;
                self.suspended_for_usage = false;
            }
            Body::UsageLimitExceeded(e) if self.live() && self.over_limit.is_none() => {
                self.over_limit = Some(OverLimit {
                    limit: e.limit.clone(),
                    grace_ends_at: seconds(&e.grace_ends_at).unwrap_or_default(),
                });
            }
            Body::UsageWithinLimits(_) if self.over_limit.is_some() => self.over_limit = None,
            Body::SubscriptionCancelled(_) if self.status != S::None => {
                self.status = S::Cancelled;
            }
            Body::UsageRecorded(e) if self.status != S::None => {
                self.usage = Some(Usage {
                    users: e.users,
                    database_mb: e.database_mb,
                    storage_mb: e.storage_mb,
                    measured_at: seconds(&e.measured_at).unwrap_or_default(),
                });
            }
            _ => return false,
        }
        true
    }

    /// Started and not cancelled.
    pub fn live(&self) -> bool {
        !matches!(
            self.status,
            SubscriptionStatus::None | SubscriptionStatus::Cancelled
        )
    }

    /// Whether an open invoice had a failed charge (it is in its grace period or past it).
    pub fn overdue(&self) -> bool {
        self.open.values().any(|i| i.grace_ends_at.is_some())
    }

    /// When billing periods are counted from: the trial's end, else the start.
    pub fn anchor(&self) -> i64 {
        self.trial_ends_at.unwrap_or(self.started_at)
    }

    /// Start of period `n` (0-based): the anchor plus `n` intervals, in calendar months, so
    /// periods never drift.
    pub fn period_start(&self, n: u32) -> i64 {
        let anchor = DateTime::<Utc>::from_timestamp(self.anchor(), 0).unwrap_or_default();
        let months = self.interval.months().saturating_mul(n);
        anchor
            .checked_add_months(Months::new(months))
            .map_or(i64::MAX, |t| t.timestamp())
    }
}

/// What billing must do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Record TrialEnded.
    EndTrial,
    /// Issue the invoice of period `period` (0-based), covering `[start, end)`.
    Invoice {
        /// Period number.
        period: u32,
        /// Its start.
        start: i64,
        /// Its end.
        end: i64,
    },
    /// Attempt the charge of an open invoice whose due time has come (first attempt, or a
    /// retry `retry_every` after the last failure).
    Charge {
        /// The invoice.
        invoice_id: String,
    },
    /// Ask for the tenant's suspension.
    Suspend {
        /// Why.
        cause: SuspendCause,
    },
    /// Ask for the tenant's resume: nothing is overdue any more, usage is within the limits.
    Reactivate,
    /// Measure the tenant's usage (record UsageRecorded).
    Meter,
    /// Record UsageLimitExceeded: the latest usage is over `limit`.
    WarnOverLimit {
        /// `users`, `database_mb` or `storage_mb`.
        limit: &'static str,
        /// What is used.
        used: u64,
        /// What the plan allows.
        allowed: u64,
        /// Still over then, the tenant is suspended.
        grace_ends_at: i64,
    },
    /// Record UsageWithinLimits: the latest usage fits the current plan again.
    WithinLimits,
}

/// Why billing asks for a suspension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuspendCause {
    /// This invoice is unpaid past its grace period.
    Unpaid {
        /// The invoice.
        invoice_id: String,
    },
    /// Usage is over this limit past its grace period.
    OverLimit {
        /// `users`, `database_mb` or `storage_mb`.
        limit: String,
    },
}

/// Billing's timing rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dunning {
    /// Seconds from issue to due.
    pub payment_terms: i64,
    /// Seconds from the first failed charge to suspension.
    pub grace: i64,
    /// Seconds between charge attempts while in grace.
    pub retry_every: i64,
    /// Seconds between usage measurements; 0 turns metering off.
    pub meter_every: i64,
    /// Seconds from a usage warning to suspension, if still over.
    pub usage_grace: i64,
}

impl Default for Dunning {
    fn default() -> Self {
        Self {
            payment_terms: 0,
            grace: 7 * 86_400,
            retry_every: 86_400,
            meter_every: 0,
            usage_grace: 7 * 86_400,
        }
    }
}

/// The first thing billing must do at `now`, if any. Calling it again after the fact is
/// recorded gives the next thing; a fact recorded twice changes nothing (see [`Subscription::apply`]).
pub fn due(sub: &Subscription, now: i64, dunning: &Dunning) -> Option<Due> {
    use SubscriptionStatus as S;
    if !sub.live() {
        return None;
    }
    // Usage first: a warning or its end changes what a suspension or reactivation decides.
    if let Some(d) = usage_due(sub, now, dunning) {
        return Some(d);
    }
    match sub.status {
        S::None | S::Cancelled => return None,
        S::Trialing => {
            if let Some(d) = over_limit_suspension(sub, now) {
                return Some(d);
            }
            return (sub.trial_ends_at.is_some_and(|t| now >= t)).then_some(Due::EndTrial);
        }
        S::Suspended => {
            if reactivatable(sub) {
                return Some(Due::Reactivate);
            }
        }
        S::Active | S::PastDue => {}
    }
    // Suspension first: it is the most urgent, and nothing else changes it.
    if sub.status != S::Suspended {
        if let Some(inv) = sub
            .open
            .values()
            .find(|i| i.grace_ends_at.is_some_and(|g| now >= g))
        {
            return Some(Due::Suspend {
                cause: SuspendCause::Unpaid {
                    invoice_id: inv.invoice_id.clone(),
                },
            });
        }
        if let Some(d) = over_limit_suspension(sub, now) {
            return Some(d);
        }
    }
    let start = sub.period_start(sub.periods_invoiced);
    if now >= start && sub.status != S::Suspended {
        return Some(Due::Invoice {
            period: sub.periods_invoiced,
            start,
            end: sub.period_start(sub.periods_invoiced.saturating_add(1)),
        });
    }
    sub.open
        .values()
        .find(|i| now >= next_charge_at(i, dunning))
        .map(|i| Due::Charge {
            invoice_id: i.invoice_id.clone(),
        })
}

/// Suspended, and nothing holds it there any more: no overdue invoice, and if the suspension
/// was for usage, usage within the limits. (A tenant suspended only for an unpaid invoice is
/// reactivated once paid even while over a limit: it is measured again, and suspended for its
/// usage only if still over.)
fn reactivatable(sub: &Subscription) -> bool {
    !sub.overdue() && (!sub.suspended_for_usage || sub.over_limit.is_none())
}

/// The usage grace is over and a measurement taken since says the tenant is still over.
fn over_limit_suspension(sub: &Subscription, now: i64) -> Option<Due> {
    let over = sub.over_limit.as_ref()?;
    let measured_since = sub
        .usage
        .is_some_and(|u| u.measured_at >= over.grace_ends_at);
    (now >= over.grace_ends_at && measured_since).then(|| Due::Suspend {
        cause: SuspendCause::OverLimit {
            limit: over.limit.clone(),
        },
    })
}

/// Metering and the limit checks on its latest result.
fn usage_due(sub: &Subscription, now: i64, dunning: &Dunning) -> Option<Due> {
    let exceeded = sub.usage.as_ref().and_then(|u| sub.limits.exceeded(u));
    match (&sub.over_limit, exceeded) {
        (None, Some((limit, used, allowed))) => {
            return Some(Due::WarnOverLimit {
                limit,
                used,
                allowed,
                grace_ends_at: now.saturating_add(dunning.usage_grace),
            });
        }
        (Some(_), None) => return Some(Due::WithinLimits),
        // The grace is over: measure once more before anything is decided on old figures.
        (Some(over), Some(_))
            if dunning.meter_every > 0
                && now >= over.grace_ends_at
                && sub.status != SubscriptionStatus::Suspended
                && sub
                    .usage
                    .is_some_and(|u| u.measured_at < over.grace_ends_at) =>
        {
            return Some(Due::Meter);
        }
        _ => {}
    }
    next_meter_at(sub, dunning)
        .filter(|at| now >= *at)
        .map(|_| Due::Meter)
}

/// When usage is next measured: `meter_every` after the last measurement (at once when there
/// is none); never with metering off. Whether the site is running (a suspended one is in
/// maintenance mode and cannot be measured) is the caller's to know: it turns metering off.
pub fn next_meter_at(sub: &Subscription, dunning: &Dunning) -> Option<i64> {
    if dunning.meter_every <= 0 || !sub.live() {
        return None;
    }
    Some(sub.usage.map_or(sub.started_at, |u| {
        u.measured_at.saturating_add(dunning.meter_every)
    }))
}

/// When the next charge of `invoice` is due: at its due time, then on the retry schedule
/// (`retry_every` apart from the due time) — but never sooner than `retry_every` after the
/// latest decline, so attempts missed while the provider was down do not catch up back to back.
pub fn next_charge_at(invoice: &OpenInvoice, dunning: &Dunning) -> i64 {
    if invoice.failed_attempts == 0 {
        return invoice.due_at;
    }
    let scheduled = invoice.due_at.saturating_add(
        dunning
            .retry_every
            .saturating_mul(i64::from(invoice.failed_attempts)),
    );
    invoice.last_failed_at.map_or(scheduled, |at| {
        scheduled.max(at.saturating_add(dunning.retry_every))
    })
}

/// When [`due`] next has something to do (to sleep until then), `None` when never without a
/// new fact.
pub fn next_due_at(sub: &Subscription, dunning: &Dunning) -> Option<i64> {
    use SubscriptionStatus as S;
    let own = match sub.status {
        S::None | S::Cancelled => return None,
        S::Trialing => sub.trial_ends_at,
        S::Suspended if reactivatable(sub) => Some(i64::MIN),
        S::Suspended => sub.open.values().map(|i| next_charge_at(i, dunning)).min(),
        S::Active | S::PastDue => {
            let grace = sub.open.values().filter_map(|i| i.grace_ends_at);
            let charges = sub.open.values().map(|i| next_charge_at(i, dunning));
            grace
                .chain(charges)
                .chain(std::iter::once(sub.period_start(sub.periods_invoiced)))
                .min()
        }
    };
    let usage_grace = sub
        .over_limit
        .as_ref()
        .filter(|_| sub.status != S::Suspended)
        .map(|o| o.grace_ends_at);
    [own, usage_grace, next_meter_at(sub, dunning)]
        .into_iter()
        .flatten()
        .min()
}

/// The invoice number of `tenant`'s period `period`: the same every time it is computed, so a
/// redelivered or replayed issue is recognised as the same invoice, and unique across tenants
/// (the whole tenant id is in it: ids made in the same minute share their first digits).
pub fn invoice_number(tenant: &str, period: u32) -> String {
    let id: String = tenant.chars().filter(|c| *c != '-').collect();
    format!("INV-{id}-{:04}", period.saturating_add(1))
}
