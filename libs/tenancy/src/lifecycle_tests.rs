//! Tests of the lifecycle state machine against a transition table written once, as data.

use proptest::prelude::*;
use proto::v1::event::Body;
use proto::v1::{self as pb, ProvisioningStep, TenantStatus};

use crate::*;

const T: &str = "0190f5c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d";
const OTHER: &str = "0190f5c2-7d1e-7a3b-9c4d-000000000000";

/// The status graph of DESIGN.md §2: every (from, to) a fold may take. Staying put is always
/// allowed and not listed.
const STATUS_TRANSITIONS: &[(Status, Status)] = {
    use Status::*;
    &[
        (None, Requested),
        (Requested, Provisioning),
        (Requested, Failed),
        (Provisioning, Active),
        (Provisioning, Failed),
        (Failed, Provisioning),
        (Active, Suspended),
        (Suspended, Active),
        (Active, Deleting),
        (Suspended, Deleting),
        (Failed, Deleting),
        (Deleting, Deleted),
    ]
};

/// Which command is accepted in which status, and the status its events lead to.
const COMMAND_TABLE: &[(CommandKind, Status, Status)] = {
    use CommandKind as C;
    use Status::*;
    &[
        (C::RequestTenant, None, Requested),
        (C::Suspend, Active, Active), // Suspended only once SiteSuspended is recorded
        (C::Resume, Suspended, Suspended), // Active only once SiteResumed is recorded
        (C::Delete, Active, Deleting),
        (C::Delete, Suspended, Deleting),
        (C::Delete, Failed, Deleting),
        (C::Delete, Deleting, Deleting), // re-requested after a failed deletion
        (C::RetryProvisioning, Failed, Provisioning),
        (C::ChangePlan, Active, Active),
        (C::ChangePlan, Suspended, Suspended),
    ]
};

fn table_allows(kind: CommandKind, from: Status) -> Option<Status> {
    COMMAND_TABLE
        .iter()
        .find(|(k, f, _)| *k == kind && *f == from)
        .map(|(_, _, to)| *to)
}

fn transition_allowed(from: Status, to: Status) -> bool {
    from == to || STATUS_TRANSITIONS.contains(&(from, to))
}

/// One event of every type in the catalogue, about `tenant`, with plausible field values.
pub(crate) fn one_of_each(tenant: &str) -> Vec<Body> {
    let t = tenant.to_owned();
    let actor = Some(pb::Actor {
        kind: "operator".into(),
        id: "alice".into(),
        ..Default::default()
    });
    vec![
        Body::TenantRequested(requested(tenant)),
        Body::SuspensionRequested(pb::SuspensionRequested {
            tenant_id: t.clone(),
            reason: "asked".into(),
            requested_by: actor.clone(),
        }),
        Body::ResumeRequested(pb::ResumeRequested {
            tenant_id: t.clone(),
            reason: "paid".into(),
            requested_by: actor.clone(),
        }),
        Body::DeletionRequested(pb::DeletionRequested {
            tenant_id: t.clone(),
            reason: "left".into(),
            requested_by: actor.clone(),
        }),
        Body::PlanChangeRequested(pb::PlanChangeRequested {
            tenant_id: t.clone(),
            from_plan: "starter".into(),
            to_plan: "business".into(),
            requested_by: actor.clone(),
        }),
        Body::ProvisioningRetryRequested(pb::ProvisioningRetryRequested {
            tenant_id: t.clone(),
            reason: "fixed".into(),
            requested_by: actor,
            attempt: 1,
        }),
        Body::PlacementChosen(pb::PlacementChosen {
            tenant_id: t.clone(),
            bench: "bench-1".into(),
            region: "eu-central".into(),
            site: "acme.erp.example.com".into(),
            db_name: "_abc".into(),
        }),
        Body::SiteCreated(pb::SiteCreated {
            tenant_id: t.clone(),
            bench: "bench-1".into(),
            site: "acme.erp.example.com".into(),
            duration_ms: 18_200,
            ..Default::default()
        }),
        Body::AppsInstalled(pb::AppsInstalled {
            tenant_id: t.clone(),
            site: "acme.erp.example.com".into(),
            apps: vec!["erpnext".into()],
            duration_ms: 9_000,
        }),
        Body::SiteConfigured(pb::SiteConfigured {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::OwnerUserCreated(pb::OwnerUserCreated {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::ApiCredentialsIssued(pb::ApiCredentialsIssued {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::ApiAccessVerified(pb::ApiAccessVerified {
            tenant_id: t.clone(),
            activation_ms: 12,
            ..Default::default()
        }),
        Body::TenantProvisioned(pb::TenantProvisioned {
            tenant_id: t.clone(),
            site: "acme.erp.example.com".into(),
            bench: "bench-1".into(),
            url: "https://acme.erp.example.com".into(),
            total_ms: 25_000,
            from_standby: false,
            ..Default::default()
        }),
        Body::ProvisioningStepFailed(pb::ProvisioningStepFailed {
            tenant_id: t.clone(),
            step: ProvisioningStep::InstallApps as i32,
            attempt: 1,
            reason: "bench busy".into(),
            will_retry: true,
            retry_in_ms: 1_000,
        }),
        Body::ProvisioningFailed(pb::ProvisioningFailed {
            tenant_id: t.clone(),
            step: ProvisioningStep::CreateSite as i32,
            reason: "database unreachable".into(),
            retryable: true,
        }),
        Body::SiteRolledBack(pb::SiteRolledBack {
            tenant_id: t.clone(),
            method: "directory_removed".into(),
            ..Default::default()
        }),
        Body::SiteSuspended(pb::SiteSuspended {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::SiteResumed(pb::SiteResumed {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::SiteBackedUp(pb::SiteBackedUp {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::SiteDeleted(pb::SiteDeleted {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::StandbySiteCreated(pb::StandbySiteCreated {
            standby_id: t.clone(),
            ..Default::default()
        }),
        Body::StandbySiteClaimed(pb::StandbySiteClaimed {
            tenant_id: t.clone(),
            standby_id: "sb-1".into(),
            bench: "bench-2".into(),
            standby_site: "sb-1.erp.example.com".into(),
            site: "acme.erp.example.com".into(),
        }),
        Body::SiteLimitsApplied(pb::SiteLimitsApplied {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::CredentialStored(pb::CredentialStored {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::CredentialRotated(pb::CredentialRotated {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::TenantKeysShredded(pb::TenantKeysShredded {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::CredentialRevoked(pb::CredentialRevoked {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::IdentityConfigured(pb::IdentityConfigured {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::IdentityConfigurationFailed(pb::IdentityConfigurationFailed {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::IdentityDisabled(pb::IdentityDisabled {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::IdentityEnabled(pb::IdentityEnabled {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::IdentityRemoved(pb::IdentityRemoved {
            tenant_id: t.clone(),
        }),
        Body::IdentityStepFailed(pb::IdentityStepFailed {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::SubscriptionStarted(pb::SubscriptionStarted {
            tenant_id: t.clone(),
            plan: "starter".into(),
            ..Default::default()
        }),
        Body::TrialEnded(pb::TrialEnded {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::PlanChanged(pb::PlanChanged {
            tenant_id: t.clone(),
            from_plan: "business".into(),
            to_plan: "enterprise".into(),
            ..Default::default()
        }),
        Body::UsageRecorded(pb::UsageRecorded {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::InvoiceIssued(pb::InvoiceIssued {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::InvoicePaid(pb::InvoicePaid {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::PaymentFailed(pb::PaymentFailed {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::SubscriptionCancelled(pb::SubscriptionCancelled {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::SubscriptionSuspended(pb::SubscriptionSuspended {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::SubscriptionReactivated(pb::SubscriptionReactivated {
            tenant_id: t.clone(),
            ..Default::default()
        }),
        Body::UsageLimitExceeded(pb::UsageLimitExceeded {
            tenant_id: t.clone(),
            limit: "users".into(),
            used: 12,
            allowed: 10,
            ..Default::default()
        }),
        Body::UsageWithinLimits(pb::UsageWithinLimits { tenant_id: t }),
    ]
}

fn requested(tenant: &str) -> pb::TenantRequested {
    pb::TenantRequested {
        tenant_id: tenant.into(),
        subdomain: "acme".into(),
        organisation: "Acme".into(),
        owner_email: "jane@acme.test".into(),
        owner_name: "Jane Doe".into(),
        plan: "starter".into(),
        region: "eu-central".into(),
        password_ref: format!("vault://tenant/{tenant}/owner-password"),
        idempotency_key: String::new(),
        sso_password_ref: String::new(),
    }
}

/// The event of type `name` from [`one_of_each`].
fn ev(name: &str) -> Body {
    one_of_each(T)
        .into_iter()
        .find(|b| b.type_name() == name)
        .unwrap_or_else(|| panic!("no event {name}"))
}

/// A state in `status`, reached through the events that lead there.
fn state_in(status: Status) -> TenantState {
    let path: &[&str] = match status {
        Status::None => &[],
        Status::Requested => &["TenantRequested"],
        Status::Provisioning => &["TenantRequested", "PlacementChosen"],
        Status::Active => &["TenantRequested", "PlacementChosen", "TenantProvisioned"],
        Status::Suspended => &[
            "TenantRequested",
            "PlacementChosen",
            "TenantProvisioned",
            "SiteSuspended",
        ],
        Status::Deleting => &[
            "TenantRequested",
            "PlacementChosen",
            "TenantProvisioned",
            "DeletionRequested",
        ],
        Status::Deleted => &[
            "TenantRequested",
            "PlacementChosen",
            "TenantProvisioned",
            "DeletionRequested",
            "SiteDeleted",
        ],
        Status::Failed => &["TenantRequested", "ProvisioningFailed"],
    };
    let events: Vec<Body> = path.iter().map(|n| ev(n)).collect();
    let s = fold(&events);
    assert_eq!(s.status, status, "path to {status}");
    s
}

fn command(kind: CommandKind, plan: &str) -> Command {
    let actor = Actor::operator("alice");
    match kind {
        CommandKind::RequestTenant => Command::RequestTenant {
            tenant_id: TenantId::parse(T).unwrap(),
            subdomain: Subdomain::parse("acme").unwrap(),
            organisation: OrganisationName::parse("Acme").unwrap(),
            owner_email: Email::parse("jane@acme.test").unwrap(),
            owner_name: PersonName::parse("Jane Doe").unwrap(),
            plan: PlanId::parse("starter").unwrap(),
            region: Region::parse("eu-central").unwrap(),
            password_ref: VaultRef::parse(&format!("vault://tenant/{T}/owner-password")).unwrap(),
            sso_password_ref: None,
            idempotency_key: Some("k1".into()),
        },
        CommandKind::Suspend => Command::Suspend {
            reason: "asked".into(),
            actor,
        },
        CommandKind::Resume => Command::Resume {
            reason: "paid".into(),
            actor,
        },
        CommandKind::Delete => Command::Delete {
            reason: "left".into(),
            actor,
        },
        CommandKind::RetryProvisioning => Command::RetryProvisioning {
            reason: "fixed".into(),
            actor,
        },
        CommandKind::ChangePlan => Command::ChangePlan {
            plan: PlanId::parse(plan).unwrap(),
            actor,
        },
    }
}

#[test]
fn one_of_each_covers_the_catalogue() {
    let names: Vec<&str> = one_of_each(T).iter().map(Body::type_name).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "duplicates in one_of_each");
    assert_eq!(names.len(), Body::TYPE_NAMES.len());
}

#[test]
fn status_round_trips_through_proto() {
    for s in Status::ALL {
        let p: TenantStatus = s.into();
        assert_eq!(Status::from(p), s);
        assert_eq!(Status::from_proto_i32(p as i32), s);
    }
    assert_eq!(Status::from_proto_i32(99), Status::None);
}

#[test]
fn decide_follows_the_command_table_exhaustively() {
    for from in Status::ALL {
        for kind in CommandKind::ALL {
            let state = state_in(from);
            let result = decide(&state, command(kind, "business"));
            match (table_allows(kind, from), result) {
                (Some(to), Ok(events)) => {
                    assert_eq!(events.len(), 1, "{kind} from {from}");
                    let after = fold_from(state.clone(), &events);
                    assert_eq!(after.status, to, "{kind} from {from}");
                    assert!(transition_allowed(from, after.status));
                    assert_eq!(after.version, state.version + 1, "{kind} from {from}");
                }
                (None, Err(err)) => {
                    let want = match (kind, from) {
                        (CommandKind::RequestTenant, _) => {
                            DomainError::AlreadyExists { status: from }
                        }
                        (_, Status::None) => DomainError::NotFound,
                        _ => DomainError::InvalidTransition {
                            from,
                            command: kind,
                        },
                    };
                    assert_eq!(err, want, "{kind} from {from}");
                }
                (allowed, result) => {
                    panic!("{kind} from {from}: table says {allowed:?}, decide said {result:?}")
                }
            }
        }
    }
}

#[test]
fn allowed_from_agrees_with_the_table() {
    for kind in CommandKind::ALL {
        for from in Status::ALL {
            assert_eq!(
                kind.allowed_from().contains(&from),
                table_allows(kind, from).is_some(),
                "{kind} from {from}"
            );
        }
    }
}

fn fold_from(state: TenantState, events: &[Body]) -> TenantState {
    events.iter().fold(state, apply)
}

#[test]
fn apply_of_every_event_in_every_status_stays_in_the_graph() {
    for from in Status::ALL {
        for event in one_of_each(T) {
            let before = state_in(from);
            let after = apply(before.clone(), &event);
            assert!(
                transition_allowed(from, after.status),
                "{} moved {from} → {}",
                event.type_name(),
                after.status
            );
            // An event either counts, or leaves the state exactly as it was.
            assert!(
                after.version == before.version + 1 || after == before,
                "{} in {from}",
                event.type_name()
            );
        }
    }
}

#[test]
fn happy_path_fold() {
    let names = [
        "TenantRequested",
        "PlacementChosen",
        "SiteCreated",
        "AppsInstalled",
        "SiteConfigured",
        "OwnerUserCreated",
        "ApiCredentialsIssued",
        "ApiAccessVerified",
        "TenantProvisioned",
        "IdentityConfigured",
        "SubscriptionStarted",
    ];
    let events: Vec<Body> = names.iter().map(|n| ev(n)).collect();
    let s = fold(&events);
    assert_eq!(s.status, Status::Active);
    assert_eq!(s.tenant_id, T);
    assert_eq!(s.subdomain, "acme");
    assert_eq!(s.plan, "starter");
    assert_eq!(s.owner_email, "jane@acme.test");
    assert_eq!(s.site, "acme.erp.example.com");
    assert_eq!(s.bench, "bench-1");
    assert_eq!(s.url, "https://acme.erp.example.com");
    assert_eq!(s.activation_ms, Some(12));
    assert_eq!(s.provisioned_ms, Some(25_000));
    assert!(!s.from_standby);
    assert_eq!(s.version, names.len() as u64);
}

#[test]
fn standby_claim_provisions_from_the_pool() {
    let s = fold(&[
        ev("TenantRequested"),
        ev("StandbySiteClaimed"),
        ev("TenantProvisioned"),
    ]);
    assert_eq!(s.status, Status::Active);
    assert!(s.from_standby);
    assert_eq!(s.bench, "bench-1"); // TenantProvisioned has the final word
}

#[test]
fn suspend_is_pending_until_the_site_is_suspended() {
    let active = state_in(Status::Active);
    let events = decide(&active, command(CommandKind::Suspend, "")).unwrap();
    let pending = fold_from(active, &events);
    assert_eq!(pending.status, Status::Active);
    assert_eq!(pending.pending, Some(Pending::Suspension));
    assert_eq!(
        decide(&pending, command(CommandKind::Suspend, "")),
        Err(DomainError::AlreadyInProgress {
            command: CommandKind::Suspend
        })
    );
    // Deleting a tenant whose suspension is still pending is fine.
    assert!(decide(&pending, command(CommandKind::Delete, "")).is_ok());

    let suspended = apply(pending.clone(), &ev("SiteSuspended"));
    assert_eq!(
        (suspended.status, suspended.pending),
        (Status::Suspended, None)
    );

    // A failed suspension clears the pending flag so the operator can ask again.
    let failed = apply(
        pending,
        &Body::ProvisioningFailed(pb::ProvisioningFailed {
            tenant_id: T.into(),
            step: ProvisioningStep::Suspend as i32,
            reason: "bench unreachable".into(),
            retryable: true,
        }),
    );
    assert_eq!(failed.status, Status::Active);
    assert_eq!(failed.pending, None);
    assert_eq!(failed.last_error.as_deref(), Some("bench unreachable"));
    assert!(decide(&failed, command(CommandKind::Suspend, "")).is_ok());

    let resuming = fold_from(
        suspended.clone(),
        &decide(&suspended, command(CommandKind::Resume, "")).unwrap(),
    );
    assert_eq!(resuming.pending, Some(Pending::Resume));
    assert!(matches!(
        decide(&resuming, command(CommandKind::Resume, "")),
        Err(DomainError::AlreadyInProgress { .. })
    ));
    let active = apply(resuming, &ev("SiteResumed"));
    assert_eq!((active.status, active.pending), (Status::Active, None));
}

#[test]
fn failed_tenants_can_be_retried_and_count_retries() {
    let failed = state_in(Status::Failed);
    assert_eq!(failed.last_error.as_deref(), Some("database unreachable"));
    assert!(failed.retryable);
    let events = decide(&failed, command(CommandKind::RetryProvisioning, "")).unwrap();
    let Body::ProvisioningRetryRequested(r) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!((r.attempt, r.tenant_id.as_str()), (1, T));
    let retrying = fold_from(failed, &events);
    assert_eq!(
        (retrying.status, retrying.retry_count),
        (Status::Provisioning, 1)
    );
    let failed_again = apply(retrying, &ev("ProvisioningFailed"));
    let events = decide(&failed_again, command(CommandKind::RetryProvisioning, "")).unwrap();
    let Body::ProvisioningRetryRequested(r) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(r.attempt, 2);
    let active = fold_from(
        fold_from(failed_again, &events),
        &[ev("SiteCreated"), ev("TenantProvisioned")],
    );
    assert_eq!(active.status, Status::Active);
    assert_eq!(active.last_error, None);
}

#[test]
fn plan_changes() {
    let active = state_in(Status::Active);
    assert_eq!(
        decide(&active, command(CommandKind::ChangePlan, "starter")),
        Err(DomainError::SamePlan {
            plan: "starter".into()
        })
    );
    let events = decide(&active, command(CommandKind::ChangePlan, "business")).unwrap();
    let Body::PlanChangeRequested(p) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (p.from_plan.as_str(), p.to_plan.as_str()),
        ("starter", "business")
    );
    let changed = fold_from(active, &events);
    assert_eq!(changed.plan, "business");
    // Billing's PlanChanged is a fact too.
    assert_eq!(apply(changed, &ev("PlanChanged")).plan, "enterprise");
}

#[test]
fn request_tenant_records_everything_but_the_password() {
    let events = decide(
        &TenantState::default(),
        command(CommandKind::RequestTenant, ""),
    )
    .unwrap();
    let Body::TenantRequested(r) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(r.tenant_id, T);
    assert_eq!(r.password_ref, format!("vault://tenant/{T}/owner-password"));
    assert_eq!(r.idempotency_key, "k1");
    let s = fold(&events);
    assert_eq!(
        (s.status, s.region.as_str()),
        (Status::Requested, "eu-central")
    );
}

#[test]
fn events_of_other_tenants_and_standby_sites_are_ignored() {
    let active = state_in(Status::Active);
    for event in one_of_each(OTHER) {
        assert_eq!(
            apply(active.clone(), &event),
            active,
            "{}",
            event.type_name()
        );
    }
    // Nothing folds onto a tenant that was never requested.
    for event in one_of_each(T) {
        if !matches!(event, Body::TenantRequested(_)) {
            assert_eq!(
                apply(TenantState::default(), &event),
                TenantState::default()
            );
        }
    }
}

#[test]
fn apply_event_records_when_things_happened() {
    let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let envelopes = [
        pb::Event {
            occurred_at: at(100),
            body: Some(ev("TenantRequested")),
        },
        pb::Event {
            occurred_at: at(150),
            body: None,
        },
        pb::Event {
            occurred_at: at(200),
            body: Some(ev("PlacementChosen")),
        },
        // Ignored (illegal here): must not move updated_at.
        pb::Event {
            occurred_at: at(300),
            body: Some(ev("SiteResumed")),
        },
    ];
    let s = fold_events(&envelopes);
    assert_eq!(s.status, Status::Provisioning);
    assert_eq!(s.requested_at, at(100));
    assert_eq!(s.updated_at, at(200));
    assert_eq!(s.version, 2);
}

#[test]
fn refusals_say_what_to_do() {
    let msg = |from, kind| {
        decide(&state_in(from), command(kind, "business"))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        msg(Status::Provisioning, CommandKind::Suspend),
        "tenant is Provisioning; suspend is possible once it is Active"
    );
    assert_eq!(
        msg(Status::Requested, CommandKind::Resume),
        "tenant is Requested; resume is possible only when it is Suspended"
    );
    assert_eq!(
        msg(Status::Active, CommandKind::RetryProvisioning),
        "tenant is Active; it is already provisioned; retry applies only to Failed tenants or failed single sign-on"
    );
    assert_eq!(
        msg(Status::Deleted, CommandKind::Delete),
        "tenant is Deleted; a deleted tenant cannot be changed"
    );
    assert_eq!(
        msg(Status::None, CommandKind::Suspend),
        "tenant not found; check the tenant id"
    );
    // Every refusal has a non-empty hint.
    for from in Status::ALL {
        for kind in CommandKind::ALL {
            if let Err(e) = decide(&state_in(from), command(kind, "business")) {
                let text = e.to_string();
                assert!(!text.ends_with("; "), "{text}");
            }
        }
    }
}

// ---------------------------------------------------------------- properties

/// An arbitrary event: any type, for this tenant or another, with varied payload details.
fn arb_event() -> impl Strategy<Value = Body> {
    let n = Body::TYPE_NAMES.len();
    (
        0..n,
        prop::bool::weighted(0.9),
        any::<bool>(),
        0i32..15,
        0usize..4,
    )
        .prop_map(|(i, ours, flag, step, plan)| {
            let mut body = one_of_each(if ours { T } else { OTHER }).swap_remove(i);
            let plans = ["", "starter", "business", "enterprise"];
            match &mut body {
                Body::ProvisioningStepFailed(e) => {
                    e.will_retry = flag;
                    e.step = step;
                }
                Body::ProvisioningFailed(e) => {
                    e.retryable = flag;
                    e.step = step;
                }
                Body::PlanChanged(e) => e.to_plan = plans[plan].into(),
                Body::PlanChangeRequested(e) => e.to_plan = plans[plan].into(),
                Body::TenantProvisioned(e) => e.from_standby = flag,
                _ => {}
            }
            body
        })
}

/// One thing that can happen next: an operator command, or a fact from another service.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // test data, built a few thousand times
enum Step {
    Command(CommandKind, &'static str),
    Fact(Body),
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (
            prop::sample::select(CommandKind::ALL.to_vec()),
            prop::sample::select(vec!["starter", "business", "enterprise"])
        )
            .prop_map(|(k, p)| Step::Command(k, p)),
        arb_event().prop_map(Step::Fact),
    ]
}

proptest! {
    #[test]
    fn apply_is_total_and_stays_in_the_graph(events in prop::collection::vec(arb_event(), 0..60)) {
        let mut state = TenantState::default();
        for event in &events {
            let next = apply(state.clone(), event);
            prop_assert!(
                transition_allowed(state.status, next.status),
                "{} moved {} → {}", event.type_name(), state.status, next.status
            );
            prop_assert!(next.version == state.version || next.version == state.version + 1);
            prop_assert!(next.version == state.version + 1 || next == state);
            if state.status.exists() {
                prop_assert_eq!(&next.tenant_id, &state.tenant_id);
            }
            state = next;
        }
        prop_assert_eq!(fold(&events), state);
    }

    #[test]
    fn decide_accepts_exactly_the_table(steps in prop::collection::vec(arb_step(), 0..60)) {
        let mut state = TenantState::default();
        for step in steps {
            match step {
                Step::Fact(event) => state = apply(state, &event),
                Step::Command(kind, plan) => {
                    let from = state.status;
                    // A live tenant whose single sign-on failed may be retried; it stays live.
                    let sso_retry = kind == CommandKind::RetryProvisioning
                        && matches!(from, Status::Active | Status::Suspended)
                        && state.sso.setup == crate::SsoStatus::Failed;
                    // A request countermanding the pending opposite one keeps the status.
                    let countermand = matches!(
                        (kind, from, state.pending),
                        (CommandKind::Resume, Status::Active, Some(Pending::Suspension))
                            | (CommandKind::Suspend, Status::Suspended, Some(Pending::Resume))
                    );
                    let allowed = if sso_retry || countermand {
                        Some(from)
                    } else {
                        table_allows(kind, from)
                    };
                    match decide(&state, command(kind, plan)) {
                        Ok(events) => {
                            let to = allowed;
                            prop_assert!(to.is_some(), "{} accepted from {}", kind, from);
                            let next = fold_from(state.clone(), &events);
                            prop_assert_eq!(Some(next.status), to);
                            prop_assert!(transition_allowed(from, next.status));
                            // Every decided event is a fact apply accepts.
                            prop_assert_eq!(next.version, state.version + events.len() as u64);
                            state = next;
                        }
                        Err(DomainError::InvalidTransition { from: f, command }) => {
                            prop_assert_eq!((f, command), (from, kind));
                            prop_assert!(allowed.is_none());
                        }
                        Err(DomainError::NotFound) => prop_assert_eq!(from, Status::None),
                        Err(DomainError::AlreadyExists { status }) => {
                            prop_assert_eq!(kind, CommandKind::RequestTenant);
                            prop_assert!(status.exists());
                        }
                        Err(DomainError::SamePlan { plan: p }) => {
                            prop_assert_eq!(kind, CommandKind::ChangePlan);
                            prop_assert_eq!(p.as_str(), plan);
                            prop_assert!(table_allows(kind, from).is_some());
                        }
                        Err(DomainError::AlreadyInProgress { command }) => {
                            prop_assert_eq!(command, kind);
                            prop_assert!(state.pending.is_some());
                            prop_assert!(table_allows(kind, from).is_some());
                        }
                    }
                }
            }
        }
    }
}

/// The JSON form read models store: field names are a storage contract.
#[cfg(feature = "serde")]
mod stored_json {
    use super::*;

    #[test]
    fn round_trips_losslessly() {
        let state = TenantState {
            status: Status::Suspended,
            tenant_id: "t".into(),
            subdomain: "acme".into(),
            plan: "pro".into(),
            last_error: Some("boom".into()),
            retryable: true,
            retry_count: 2,
            activation_ms: Some(7),
            provisioned_ms: Some(9),
            from_standby: true,
            pending: Some(Pending::Resume),
            version: 12,
            requested_at: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: 123_456_789,
            }),
            updated_at: Some(prost_types::Timestamp {
                seconds: 2,
                nanos: 1,
            }),
            ..TenantState::default()
        };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["status"], "Suspended");
        assert_eq!(json["pending"], "resume");
        assert_eq!(json["requested_at"]["nanos"], 123_456_789);
        let back: TenantState = serde_json::from_value(json).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn reads_rows_written_by_earlier_and_later_versions() {
        // A row as the first projection wrote it, plus a field from a newer writer and a status
        // this version does not know.
        let row = serde_json::json!({
            "status": "Hibernating", "tenant_id": "t", "subdomain": "acme", "plan": "starter",
            "organisation": "Acme", "owner_email": "o@acme.test", "owner_name": "O",
            "region": "eu", "site": "acme.x", "bench": "b1", "url": "http://acme.x",
            "last_error": null, "retryable": false, "retry_count": 0, "activation_ms": null,
            "provisioned_ms": 5, "from_standby": false, "pending": "suspension", "version": 3,
            "requested_at": {"seconds": 10, "nanos": 0}, "updated_at": null,
            "added_by_a_newer_version": 1
        });
        let s: TenantState = serde_json::from_value(row).unwrap();
        assert_eq!(s.status, Status::None);
        assert_eq!(s.pending, Some(Pending::Suspension));
        assert_eq!(s.provisioned_ms, Some(5));
        assert_eq!(s.requested_at.map(|t| t.seconds), Some(10));
        // A field missing from an old row takes its default.
        let s: TenantState =
            serde_json::from_value(serde_json::json!({"status": "Active"})).unwrap();
        assert_eq!(s.status, Status::Active);
        assert_eq!(s.version, 0);
    }

    #[test]
    fn every_status_parses_back() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
        }
        assert!("Nonsense".parse::<Status>().is_err());
    }
}

#[test]
fn resume_countermands_a_pending_suspension_and_the_reverse() {
    let active = state_in(Status::Active);
    let suspending = fold_from(
        active,
        &decide(&state_in(Status::Active), command(CommandKind::Suspend, "")).unwrap(),
    );
    assert_eq!(suspending.pending, Some(Pending::Suspension));
    // Resume at once: accepted, and the suspension is no longer pending.
    let events = decide(&suspending, command(CommandKind::Resume, "")).expect("resume is accepted");
    let back = fold_from(suspending.clone(), &events);
    assert_eq!((back.status, back.pending), (Status::Active, None));
    // If the provisioner had begun the suspension, the site is suspended meanwhile: the
    // resume is still to come (never a settled-looking Suspended), and ends it Active.
    let mid = fold_from(back, &[ev("SiteSuspended")]);
    assert_eq!(
        (mid.status, mid.pending),
        (Status::Suspended, Some(Pending::Resume))
    );
    let raced = fold_from(mid, &[ev("SiteResumed")]);
    assert_eq!((raced.status, raced.pending), (Status::Active, None));

    let suspended = state_in(Status::Suspended);
    let resuming = fold_from(
        suspended.clone(),
        &decide(&suspended, command(CommandKind::Resume, "")).unwrap(),
    );
    assert_eq!(resuming.pending, Some(Pending::Resume));
    let events = decide(&resuming, command(CommandKind::Suspend, "")).expect("suspend is accepted");
    let kept = fold_from(resuming, &events);
    assert_eq!((kept.status, kept.pending), (Status::Suspended, None));
    let mid = fold_from(kept, &[ev("SiteResumed")]);
    assert_eq!(
        (mid.status, mid.pending),
        (Status::Active, Some(Pending::Suspension))
    );
    // Without a pending opposite, the table still decides.
    assert!(decide(&state_in(Status::Active), command(CommandKind::Resume, "")).is_err());
}
