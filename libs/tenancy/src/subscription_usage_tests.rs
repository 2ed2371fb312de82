//! Usage against plan limits: metering on its schedule, a warning, suspension when the grace
//! period ends still over, and the way back (less usage or a bigger plan).

use proptest::prelude::*;
use proto::v1::{self as pb, event::Body};

use crate::subscription::{
    Due, Dunning, Subscription, SubscriptionStatus as S, SuspendCause, due, next_due_at,
    next_meter_at,
};
use crate::subscription_tests::{DAY, T0, count, fact, run_with_users, started, ts};

fn metered() -> Dunning {
    Dunning {
        meter_every: DAY,
        usage_grace: 3 * DAY,
        ..Dunning::default()
    }
}

/// Started without a trial on a plan of at most `max_users` users.
fn limited(max_users: u32) -> Subscription {
    let mut sub = Subscription::default();
    let Body::SubscriptionStarted(mut e) = started(0) else {
        unreachable!()
    };
    e.limits = Some(pb::PlanLimits {
        max_users,
        max_storage_mb: 0,
        max_database_mb: 0,
    });
    assert!(sub.apply(&Body::SubscriptionStarted(e)));
    sub
}

fn plan_with(max_users: u32) -> Body {
    Body::PlanChanged(pb::PlanChanged {
        to_plan: "bigger".into(),
        price_minor: 9_900,
        currency: "EUR".into(),
        limits: Some(pb::PlanLimits {
            max_users,
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[test]
fn metering_is_off_unless_asked_for_and_then_once_per_interval() {
    let mut sub = limited(10);
    assert_eq!(next_meter_at(&sub, &Dunning::default()), None);
    let facts = run_with_users(
        &mut sub,
        T0,
        T0 + 10 * DAY,
        DAY / 6,
        &metered(),
        |_| true,
        |_| 3,
    );
    // Day 0 (at the start) through day 10.
    assert_eq!(count(&facts, "UsageRecorded"), 11);
    assert_eq!(sub.usage.map(|u| u.users), Some(3));
    assert_eq!(count(&facts, "UsageLimitExceeded"), 0);
    assert_eq!(next_meter_at(&sub, &metered()), Some(T0 + 11 * DAY));
    assert!(next_due_at(&sub, &metered()).is_some_and(|t| t <= T0 + 11 * DAY));
}

#[test]
fn over_a_limit_warns_then_suspends_after_the_grace_and_a_bigger_plan_reactivates() {
    let dunning = metered();
    let mut sub = limited(10);
    // 12 users from day 2 on.
    let users = |now: i64| if now >= T0 + 2 * DAY { 12 } else { 4 };
    let facts = run_with_users(
        &mut sub,
        T0,
        T0 + 8 * DAY,
        DAY / 4,
        &dunning,
        |_| true,
        users,
    );
    let kinds: Vec<&str> = facts.iter().map(Body::type_name).collect();
    let warned = kinds
        .iter()
        .position(|k| *k == "UsageLimitExceeded")
        .expect("a warning");
    let suspended = kinds
        .iter()
        .position(|k| *k == "SubscriptionSuspended")
        .expect("suspended after the grace");
    assert!(warned < suspended, "{kinds:?}");
    assert_eq!(
        count(&facts, "UsageLimitExceeded"),
        1,
        "one warning per episode"
    );
    assert_eq!(count(&facts, "SubscriptionSuspended"), 1);
    let Body::SubscriptionSuspended(s) = &facts[suspended] else {
        unreachable!()
    };
    assert_eq!(s.limit, "users");
    assert!(s.invoice_id.is_empty());
    let Body::UsageLimitExceeded(w) = &facts[warned] else {
        unreachable!()
    };
    assert_eq!((w.used, w.allowed), (12, 10));
    // Warned on day 2, suspended on day 5 (3 days of grace), not before.
    let grace_end = w.grace_ends_at.as_ref().unwrap().seconds;
    assert_eq!(grace_end, T0 + 5 * DAY);
    assert_eq!(sub.status, S::Suspended);
    assert!(sub.suspended_for_usage);
    assert_eq!(
        due(
            &sub,
            T0 + 30 * DAY,
            &Dunning {
                meter_every: 0,
                ..dunning
            }
        )
        .map(|d| matches!(d, Due::Invoice { .. })),
        None,
        "nothing invoiced while suspended and paid up"
    );

    // A plan with room for 25 users: within limits, then reactivated (the site is still in
    // maintenance mode: nothing is measured meanwhile).
    let site_suspended = Dunning {
        meter_every: 0,
        ..dunning
    };
    assert!(sub.apply(&plan_with(25)));
    let now = T0 + 9 * DAY;
    assert_eq!(due(&sub, now, &site_suspended), Some(Due::WithinLimits));
    let f = fact(&sub, &Due::WithinLimits, now, true, 12, &dunning);
    assert!(sub.apply(&f));
    assert_eq!(due(&sub, now, &site_suspended), Some(Due::Reactivate));
    let f = fact(&sub, &Due::Reactivate, now, true, 12, &dunning);
    assert!(sub.apply(&f));
    assert_eq!(sub.status, S::Active);
    assert!(sub.over_limit.is_none());
}

#[test]
fn a_tenant_suspended_for_an_invoice_is_reactivated_once_paid_even_while_warned() {
    let dunning = metered();
    let mut sub = limited(10);
    sub.apply(&Body::UsageRecorded(pb::UsageRecorded {
        users: 12,
        measured_at: ts(T0),
        ..Default::default()
    }));
    sub.apply(&Body::UsageLimitExceeded(pb::UsageLimitExceeded {
        limit: "users".into(),
        grace_ends_at: ts(T0 + 3 * DAY),
        ..Default::default()
    }));
    sub.apply(&Body::InvoiceIssued(pb::InvoiceIssued {
        invoice_id: "INV-1".into(),
        amount_minor: 900,
        ..Default::default()
    }));
    sub.apply(&Body::PaymentFailed(pb::PaymentFailed {
        invoice_id: "INV-1".into(),
        attempt: 1,
        grace_ends_at: ts(T0 + DAY),
        ..Default::default()
    }));
    sub.apply(&Body::SubscriptionSuspended(pb::SubscriptionSuspended {
        invoice_id: "INV-1".into(),
        ..Default::default()
    }));
    assert!(!sub.suspended_for_usage);
    sub.apply(&Body::InvoicePaid(pb::InvoicePaid {
        invoice_id: "INV-1".into(),
        ..Default::default()
    }));
    // Paid: back, though the usage warning is still open (its own grace decides later). The
    // site is in maintenance mode meanwhile, so billing meters nothing (metering off).
    let site_suspended = Dunning {
        meter_every: 0,
        ..dunning
    };
    assert_eq!(
        due(&sub, T0 + 2 * DAY, &site_suspended),
        Some(Due::Reactivate)
    );
    assert_eq!(next_due_at(&sub, &site_suspended), Some(i64::MIN));
    sub.apply(&Body::SubscriptionReactivated(Default::default()));
    // At the usage grace's end: measured again before any suspension.
    assert_eq!(due(&sub, T0 + 3 * DAY, &dunning), Some(Due::Meter));
}

#[test]
fn the_suspension_waits_for_a_measurement_taken_after_the_grace() {
    // Measured every 5 days, grace of 3: the grace ends between two measurements.
    let dunning = Dunning {
        meter_every: 5 * DAY,
        ..metered()
    };
    let mut sub = limited(10);
    let facts = run_with_users(
        &mut sub,
        T0,
        T0 + 2 * DAY,
        DAY / 4,
        &dunning,
        |_| true,
        |_| 12,
    );
    assert_eq!(count(&facts, "UsageLimitExceeded"), 1);
    assert_eq!(count(&facts, "UsageRecorded"), 1);
    // Day 4: the grace ended on day 3; the next measurement is not due till day 5, yet one is
    // taken now, and only it suspends.
    let facts = run_with_users(
        &mut sub,
        T0 + 4 * DAY + 1,
        T0 + 4 * DAY + 1,
        DAY,
        &dunning,
        |_| true,
        |_| 12,
    );
    let kinds: Vec<&str> = facts.iter().map(Body::type_name).collect();
    assert_eq!(kinds, ["UsageRecorded", "SubscriptionSuspended"]);
    // With metering off (the measurement failed), no suspension on old figures.
    let mut other = limited(10);
    run_with_users(
        &mut other,
        T0,
        T0 + 2 * DAY,
        DAY,
        &dunning,
        |_| true,
        |_| 12,
    );
    let off = Dunning {
        meter_every: 0,
        ..dunning
    };
    assert_eq!(due(&other, T0 + 10 * DAY, &off), None);
}

#[test]
fn usage_back_under_the_limit_within_the_grace_is_never_suspended() {
    let dunning = metered();
    let mut sub = limited(10);
    let users = |now: i64| {
        if (T0 + 2 * DAY..T0 + 4 * DAY).contains(&now) {
            11
        } else {
            2
        }
    };
    let facts = run_with_users(
        &mut sub,
        T0,
        T0 + 10 * DAY,
        DAY / 4,
        &dunning,
        |_| true,
        users,
    );
    assert_eq!(count(&facts, "UsageLimitExceeded"), 1);
    assert_eq!(count(&facts, "UsageWithinLimits"), 1);
    assert_eq!(count(&facts, "SubscriptionSuspended"), 0);
    assert_eq!(sub.status, S::Active);
}

#[test]
fn a_trial_suspended_for_its_usage_is_a_trial_again() {
    let dunning = metered();
    let mut sub = Subscription::default();
    let Body::SubscriptionStarted(mut e) = started(30) else {
        unreachable!()
    };
    e.limits = Some(pb::PlanLimits {
        max_users: 1,
        ..Default::default()
    });
    sub.apply(&Body::SubscriptionStarted(e));
    let facts = run_with_users(
        &mut sub,
        T0,
        T0 + 6 * DAY,
        DAY / 2,
        &dunning,
        |_| true,
        |_| 2,
    );
    assert_eq!(count(&facts, "SubscriptionSuspended"), 1);
    assert_eq!(count(&facts, "TrialEnded"), 0);
    assert!(sub.apply(&plan_with(5)));
    let facts = run_with_users(
        &mut sub,
        T0 + 7 * DAY,
        T0 + 7 * DAY,
        DAY,
        &dunning,
        |_| true,
        |_| 2,
    );
    assert_eq!(count(&facts, "SubscriptionReactivated"), 1);
    assert_eq!(sub.status, S::Trialing);
}

#[test]
fn a_usage_suspension_is_measured_first_and_lasts_while_over() {
    let dunning = metered();
    let mut sub = limited(10);
    sub.apply(&Body::UsageLimitExceeded(pb::UsageLimitExceeded {
        limit: "users".into(),
        used: 12,
        allowed: 10,
        grace_ends_at: ts(T0 + DAY),
        ..Default::default()
    }));
    sub.apply(&Body::UsageRecorded(pb::UsageRecorded {
        users: 12,
        measured_at: ts(T0),
        ..Default::default()
    }));
    // The grace ends when a measurement is due: measured first, so usage that went down in
    // the meantime is never suspended.
    assert_eq!(due(&sub, T0 + DAY, &dunning), Some(Due::Meter));
    sub.apply(&Body::UsageRecorded(pb::UsageRecorded {
        users: 12,
        measured_at: ts(T0 + DAY),
        ..Default::default()
    }));
    assert_eq!(
        due(&sub, T0 + DAY, &dunning),
        Some(Due::Suspend {
            cause: SuspendCause::OverLimit {
                limit: "users".into()
            }
        })
    );
    sub.apply(&Body::SubscriptionSuspended(pb::SubscriptionSuspended {
        limit: "users".into(),
        ..Default::default()
    }));
    // Still over: no reactivation, however long it waits.
    assert_ne!(due(&sub, T0 + 90 * DAY, &dunning), Some(Due::Reactivate));
}

proptest! {
    /// Whatever the users do over time: a suspension for usage always follows a warning by at
    /// least the grace period, and ends only after usage is back within the limits.
    #[test]
    fn suspensions_for_usage_follow_a_warning_by_the_grace(
        spikes in prop::collection::vec((0i64..40, 1i64..8, 5u32..20), 0..5),
        step_hours in 2i64..30,
    ) {
        let dunning = metered();
        let mut sub = limited(10);
        let users = |now: i64| {
            let day = (now - T0) / DAY;
            spikes.iter().filter(|(from, len, _)| (*from..from + len).contains(&day)).map(|s| s.2).max().unwrap_or(3)
        };
        let facts = run_with_users(&mut sub, T0, T0 + 50 * DAY, step_hours * 3600, &dunning, |_| true, users);
        let mut warned_grace: Option<i64> = None;
        let mut over = false;
        for (i, f) in facts.iter().enumerate() {
            match f {
                Body::UsageLimitExceeded(w) => {
                    prop_assert!(!over, "a second warning in one episode at {}", i);
                    over = true;
                    warned_grace = w.grace_ends_at.as_ref().map(|t| t.seconds);
                }
                Body::UsageWithinLimits(_) => over = false,
                Body::SubscriptionSuspended(s) => {
                    prop_assert_eq!(&s.limit, "users");
                    prop_assert!(over && warned_grace.is_some(), "suspended without a warning");
                }
                Body::SubscriptionReactivated(_) => prop_assert!(!over, "reactivated while over"),
                _ => {}
            }
        }
        prop_assert_eq!(count(&facts, "SubscriptionSuspended") >= count(&facts, "SubscriptionReactivated"), true);
    }
}
