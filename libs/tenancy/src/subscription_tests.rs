//! The subscription fold and billing's due moments, driven through whole lives under a clock the
//! test controls.

use proptest::prelude::*;
use proto::v1::{self as pb, event::Body};

use crate::subscription::{
    Due, Dunning, Subscription, SubscriptionStatus as S, SuspendCause, due, invoice_number,
    next_due_at,
};

pub(crate) const DAY: i64 = 86_400;
/// 2026-01-31 00:00 UTC: a month end, so calendar months are exercised.
pub(crate) const T0: i64 = 1_769_817_600;

pub(crate) fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

pub(crate) fn started(trial_days: i64) -> Body {
    Body::SubscriptionStarted(pb::SubscriptionStarted {
        tenant_id: "t".into(),
        subscription_id: "sub-t".into(),
        plan: "business".into(),
        trial_ends_at: (trial_days > 0)
            .then(|| ts(T0 + trial_days * DAY))
            .flatten(),
        price_minor: 4_900,
        currency: "EUR".into(),
        interval: "month".into(),
        started_at: ts(T0),
        limits: None,
    })
}

/// The fact billing records for `d` at `now`; `pay` says whether a charge succeeds, `users` is
/// what a measurement finds.
pub(crate) fn fact(
    sub: &Subscription,
    d: &Due,
    now: i64,
    pay: bool,
    users: u32,
    dunning: &Dunning,
) -> Body {
    match d {
        Due::EndTrial => Body::TrialEnded(pb::TrialEnded::default()),
        Due::Invoice { period, start, end } => Body::InvoiceIssued(pb::InvoiceIssued {
            tenant_id: "t".into(),
            invoice_id: invoice_number("t", *period),
            number: invoice_number("t", *period),
            amount_minor: sub.price_minor,
            currency: sub.currency.clone(),
            due_at: ts(now + dunning.payment_terms),
            period_start: ts(*start),
            period_end: ts(*end),
            ..Default::default()
        }),
        Due::Charge { invoice_id } if pay => Body::InvoicePaid(pb::InvoicePaid {
            invoice_id: invoice_id.clone(),
            ..Default::default()
        }),
        Due::Charge { invoice_id } => {
            let inv = &sub.open[invoice_id];
            Body::PaymentFailed(pb::PaymentFailed {
                invoice_id: invoice_id.clone(),
                attempt: inv.failed_attempts + 1,
                grace_ends_at: ts(inv.grace_ends_at.unwrap_or(now + dunning.grace)),
                failed_at: ts(now),
                ..Default::default()
            })
        }
        Due::Suspend {
            cause: SuspendCause::Unpaid { invoice_id },
        } => Body::SubscriptionSuspended(pb::SubscriptionSuspended {
            invoice_id: invoice_id.clone(),
            ..Default::default()
        }),
        Due::Suspend {
            cause: SuspendCause::OverLimit { limit },
        } => Body::SubscriptionSuspended(pb::SubscriptionSuspended {
            limit: limit.clone(),
            ..Default::default()
        }),
        Due::Reactivate => Body::SubscriptionReactivated(pb::SubscriptionReactivated::default()),
        Due::Meter => Body::UsageRecorded(pb::UsageRecorded {
            users,
            measured_at: ts(now),
            ..Default::default()
        }),
        Due::WarnOverLimit {
            limit,
            used,
            allowed,
            grace_ends_at,
        } => Body::UsageLimitExceeded(pb::UsageLimitExceeded {
            limit: (*limit).to_owned(),
            used: *used,
            allowed: *allowed,
            grace_ends_at: ts(*grace_ends_at),
            ..Default::default()
        }),
        Due::WithinLimits => Body::UsageWithinLimits(pb::UsageWithinLimits::default()),
    }
}

/// Runs billing from `from` to `to` in steps of `step`, doing everything due at each moment;
/// `pays(now)` decides whether charges at `now` succeed. Returns every recorded fact.
fn run(
    sub: &mut Subscription,
    from: i64,
    to: i64,
    step: i64,
    dunning: &Dunning,
    pays: impl Fn(i64) -> bool,
) -> Vec<Body> {
    run_with_users(sub, from, to, step, dunning, pays, |_| 1)
}

/// [`run`], with `users(now)` the users a measurement at `now` finds.
pub(crate) fn run_with_users(
    sub: &mut Subscription,
    from: i64,
    to: i64,
    step: i64,
    dunning: &Dunning,
    pays: impl Fn(i64) -> bool,
    users: impl Fn(i64) -> u32,
) -> Vec<Body> {
    let mut facts = Vec::new();
    let mut now = from;
    while now <= to {
        let mut guard = 0;
        while let Some(d) = due(sub, now, dunning) {
            let f = fact(sub, &d, now, pays(now), users(now), dunning);
            assert!(sub.apply(&f), "{d:?} at {now}: its fact must count");
            facts.push(f);
            guard += 1;
            assert!(guard < 50, "due never settles at {now}: {sub:?}");
        }
        now += step;
    }
    facts
}

/// The invoice a subscription started at T0 without a trial gets at once.
fn first_invoice(sub: &Subscription, dunning: &Dunning) -> Body {
    let d = due(sub, T0, dunning).expect("the first period is due at the start");
    assert!(matches!(d, Due::Invoice { period: 0, .. }), "{d:?}");
    fact(sub, &d, T0, true, 1, dunning)
}

pub(crate) fn count(facts: &[Body], name: &str) -> usize {
    facts.iter().filter(|f| f.type_name() == name).count()
}

#[test]
fn a_trial_then_a_paid_month_each_period() {
    let dunning = Dunning::default();
    let mut sub = Subscription::default();
    assert!(sub.apply(&started(14)));
    assert_eq!(sub.status, S::Trialing);
    assert_eq!(
        due(&sub, T0 + 13 * DAY, &dunning),
        None,
        "nothing during the trial"
    );
    assert_eq!(next_due_at(&sub, &dunning), Some(T0 + 14 * DAY));
    let facts = run(&mut sub, T0, T0 + 100 * DAY, DAY / 4, &dunning, |_| true);
    assert_eq!(count(&facts, "TrialEnded"), 1);
    // The trial ends 14 Feb; periods start 14 Feb, 14 Mar, 14 Apr (14 May is after day 100).
    let issued: Vec<String> = facts
        .iter()
        .filter_map(|f| match f {
            Body::InvoiceIssued(i) => Some(i.number.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(issued, ["INV-t-0001", "INV-t-0002", "INV-t-0003"]);
    // A payment does not make the same invoice issuable again.
    assert!(!sub.apply(&Body::InvoiceIssued(pb::InvoiceIssued {
        invoice_id: "INV-t-0001".into(),
        amount_minor: 4_900,
        ..Default::default()
    })));
    assert_eq!(count(&facts, "InvoicePaid"), 3);
    assert_eq!(count(&facts, "PaymentFailed"), 0);
    assert_eq!(sub.status, S::Active);
    assert_eq!(sub.paid_minor, 3 * 4_900);
    assert!(sub.open.is_empty());
}

#[test]
fn periods_follow_calendar_months_from_a_month_end() {
    let mut sub = Subscription::default();
    sub.apply(&started(0));
    let start = |n| {
        chrono::DateTime::<chrono::Utc>::from_timestamp(sub.period_start(n), 0)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string()
    };
    assert_eq!(
        [start(0), start(1), start(2), start(12)],
        ["2026-01-31", "2026-02-28", "2026-03-31", "2027-01-31"]
    );
}

#[test]
fn unpaid_past_grace_is_suspended_and_paying_reactivates() {
    let dunning = Dunning {
        payment_terms: 0,
        grace: 7 * DAY,
        retry_every: DAY,
        ..Dunning::default()
    };
    let mut sub = Subscription::default();
    sub.apply(&started(0));
    // Declined for 10 days, then paid.
    let paid_from = T0 + 10 * DAY;
    let facts = run(&mut sub, T0, T0 + 12 * DAY, DAY / 2, &dunning, |now| {
        now >= paid_from
    });
    let kinds: Vec<&str> = facts.iter().map(Body::type_name).collect();
    let first_fail = kinds.iter().position(|k| *k == "PaymentFailed").unwrap();
    let suspended = kinds
        .iter()
        .position(|k| *k == "SubscriptionSuspended")
        .expect("suspended after grace");
    let paid = kinds.iter().position(|k| *k == "InvoicePaid").unwrap();
    let reactivated = kinds
        .iter()
        .position(|k| *k == "SubscriptionReactivated")
        .expect("reactivated once paid");
    assert!(
        first_fail < suspended && suspended < paid && paid < reactivated,
        "{kinds:?}"
    );
    assert_eq!(count(&facts, "SubscriptionSuspended"), 1);
    assert_eq!(count(&facts, "InvoiceIssued"), 1);
    // Charges retried once a day in grace, never more.
    assert!(
        (7..=11).contains(&count(&facts, "PaymentFailed")),
        "{kinds:?}"
    );
    assert_eq!(sub.status, S::Active);
    assert!(!sub.suspension_requested);
}

#[test]
fn retries_after_a_provider_outage_do_not_catch_up_back_to_back() {
    let dunning = Dunning {
        grace: 10 * DAY,
        retry_every: DAY,
        ..Dunning::default()
    };
    let mut sub = Subscription::default();
    sub.apply(&started(0));
    let issue = first_invoice(&sub, &dunning);
    sub.apply(&issue);
    // Declined at once; then the provider is down for four days (nothing recorded).
    let first = fact(
        &sub,
        &due(&sub, T0, &dunning).unwrap(),
        T0,
        false,
        1,
        &dunning,
    );
    sub.apply(&first);
    let back = T0 + 4 * DAY;
    let retry = due(&sub, back, &dunning).expect("a retry is due");
    let declined = fact(&sub, &retry, back, false, 1, &dunning);
    assert!(matches!(declined, Body::PaymentFailed(_)));
    sub.apply(&declined);
    // The next attempt is a day after the latest decline, not at once for each missed day.
    assert_eq!(due(&sub, back + DAY - 1, &dunning), None);
    assert!(matches!(
        due(&sub, back + DAY, &dunning),
        Some(Due::Charge { .. })
    ));
}

#[test]
fn a_paid_past_due_invoice_is_active_again_without_suspension() {
    let dunning = Dunning::default();
    let mut sub = Subscription::default();
    sub.apply(&started(0));
    let facts = run(&mut sub, T0, T0 + 3 * DAY, DAY / 2, &dunning, |now| {
        now >= T0 + 2 * DAY
    });
    assert!(count(&facts, "PaymentFailed") >= 1);
    assert_eq!(count(&facts, "SubscriptionSuspended"), 0);
    assert_eq!(sub.status, S::Active);
}

#[test]
fn cancelled_is_final_and_facts_twice_count_once() {
    let dunning = Dunning::default();
    let mut sub = Subscription::default();
    sub.apply(&started(0));
    let issue = first_invoice(&sub, &dunning);
    assert!(sub.apply(&issue));
    assert!(!sub.apply(&issue), "the same invoice twice is one invoice");
    assert_eq!(sub.periods_invoiced, 1);
    let paid = Body::InvoicePaid(pb::InvoicePaid {
        invoice_id: invoice_number("t", 0),
        ..Default::default()
    });
    assert!(sub.apply(&paid));
    assert!(!sub.apply(&paid), "a payment twice is one payment");
    assert_eq!(sub.paid_minor, 4_900);
    assert!(sub.apply(&Body::SubscriptionCancelled(Default::default())));
    assert_eq!(sub.status, S::Cancelled);
    assert_eq!(due(&sub, T0 + 400 * DAY, &dunning), None);
    assert!(
        !sub.apply(&started(0)),
        "a cancelled subscription does not restart"
    );
    assert!(!sub.apply(&issue));
}

#[test]
fn invoice_numbers_are_stable_and_distinct() {
    let t = "0190f5c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d";
    assert_eq!(
        invoice_number(t, 0),
        "INV-0190f5c27d1e7a3b9c4d5e6f7a8b9c0d-0001"
    );
    assert_eq!(invoice_number(t, 0), invoice_number(t, 0));
    assert_ne!(invoice_number(t, 0), invoice_number(t, 1));
    // Tenants made in the same minute share their first digits, never their numbers.
    let u = "0190f5c2-7d1e-7a3b-9c4d-5e6f7a8b9c0e";
    assert_ne!(invoice_number(t, 0), invoice_number(u, 0));
}

/// Which status may follow which.
fn allowed(from: S, to: S) -> bool {
    use S::*;
    from == to
        || matches!(
            (from, to),
            (None, Trialing | Active)
                | (Trialing, Active | PastDue | Suspended)
                | (Active, PastDue | Suspended)
                | (PastDue, Active | Suspended)
                | (Suspended, Active | Trialing)
                | (Trialing | Active | PastDue | Suspended, Cancelled)
        )
}

fn arb_fact() -> impl Strategy<Value = Body> {
    (0usize..12, 0u32..3, any::<bool>()).prop_map(|(k, n, flag)| {
        let id = invoice_number("t", n);
        match k {
            0 => started(if flag { 14 } else { 0 }),
            1 => Body::TrialEnded(Default::default()),
            2 => Body::InvoiceIssued(pb::InvoiceIssued {
                invoice_id: id,
                amount_minor: 100,
                due_at: ts(T0),
                ..Default::default()
            }),
            3 => Body::InvoicePaid(pb::InvoicePaid {
                invoice_id: id,
                ..Default::default()
            }),
            4 => Body::PaymentFailed(pb::PaymentFailed {
                invoice_id: id,
                attempt: 1,
                grace_ends_at: ts(T0 + DAY),
                ..Default::default()
            }),
            5 => Body::SubscriptionSuspended(Default::default()),
            6 => Body::SubscriptionReactivated(Default::default()),
            7 => Body::SubscriptionCancelled(Default::default()),
            8 => Body::UsageRecorded(pb::UsageRecorded {
                users: n * 10,
                measured_at: ts(T0),
                ..Default::default()
            }),
            9 => Body::UsageLimitExceeded(pb::UsageLimitExceeded {
                limit: "users".into(),
                grace_ends_at: ts(T0 + DAY),
                ..Default::default()
            }),
            10 => Body::UsageWithinLimits(Default::default()),
            _ => Body::PlanChanged(pb::PlanChanged {
                to_plan: "pro".into(),
                price_minor: 9_900,
                currency: "EUR".into(),
                ..Default::default()
            }),
        }
    })
}

proptest! {
    #[test]
    fn any_fact_sequence_stays_in_the_graph_and_money_adds_up(facts in prop::collection::vec(arb_fact(), 0..40)) {
        let mut sub = Subscription::default();
        for f in &facts {
            let before = sub.status;
            sub.apply(f);
            prop_assert!(allowed(before, sub.status), "{:?} → {:?} on {}", before, sub.status, f.type_name());
            let open: i64 = sub.open.values().map(|i| i.amount_minor).sum();
            prop_assert_eq!(sub.invoiced_minor, sub.paid_minor + open);
        }
    }

    #[test]
    fn billing_at_any_pace_issues_each_period_once(step_hours in 1i64..72, decline_days in 0i64..20) {
        let dunning = Dunning::default();
        let mut sub = Subscription::default();
        sub.apply(&started(7));
        let facts = run(&mut sub, T0, T0 + 95 * DAY, step_hours * 3600, &dunning, |now| {
            now >= T0 + decline_days * DAY
        });
        let mut numbers: Vec<String> = facts.iter().filter_map(|f| match f {
            Body::InvoiceIssued(i) => Some(i.number.clone()),
            _ => None,
        }).collect();
        let n = numbers.len();
        numbers.dedup();
        prop_assert_eq!(numbers.len(), n, "an invoice number twice");
        // Trial ends day 7; periods start day 7, ~38, ~66: three by day 95.
        prop_assert_eq!(n, 3);
        prop_assert!(count(&facts, "SubscriptionSuspended") <= 1);
        prop_assert_eq!(count(&facts, "SubscriptionSuspended"), count(&facts, "SubscriptionReactivated"));
        prop_assert_eq!(sub.status, S::Active);
    }
}
