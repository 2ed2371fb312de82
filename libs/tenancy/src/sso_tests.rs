//! The single sign-on fold and the identity service's decisions, exhaustively.

use proto::v1::{self as pb, event::Body};

use crate::sso::{IdentityAction as A, IdentityTrigger as T, Sso, SsoStatus as S, decide_identity};
use crate::{Command, CommandKind, DomainError, Status, TenantState, fold};

fn configured() -> Body {
    Body::IdentityConfigured(pb::IdentityConfigured {
        tenant_id: "t".into(),
        application_slug: "tenant-acme".into(),
        client_id: "tenant-acme".into(),
        login_url: "https://acme.example/login".into(),
        ..Default::default()
    })
}

fn failed(retryable: bool) -> Body {
    Body::IdentityConfigurationFailed(pb::IdentityConfigurationFailed {
        tenant_id: "t".into(),
        reason: "Authentik answered 503".into(),
        retryable,
        step: "group".into(),
    })
}

fn step_failed() -> Body {
    Body::IdentityStepFailed(pb::IdentityStepFailed {
        tenant_id: "t".into(),
        step: "provider".into(),
        attempt: 1,
        reason: "timed out".into(),
        will_retry: true,
    })
}

fn sso_of(events: &[Body]) -> Sso {
    let mut sso = Sso::default();
    for e in events {
        assert!(sso.apply(e), "identity events always count");
    }
    sso
}

#[test]
fn the_fold_follows_setup_suspension_and_removal() {
    let disabled = Body::IdentityDisabled(pb::IdentityDisabled::default());
    let enabled = Body::IdentityEnabled(pb::IdentityEnabled::default());
    let removed = Body::IdentityRemoved(pb::IdentityRemoved::default());
    assert_eq!(sso_of(&[configured()]).status, S::Ready);
    let ready = sso_of(&[configured()]);
    assert_eq!(ready.login_url, "https://acme.example/login");
    assert!(ready.configured());
    assert_eq!(
        sso_of(&[configured(), disabled.clone()]).status,
        S::Disabled
    );
    assert_eq!(
        sso_of(&[configured(), disabled.clone(), enabled.clone()]).status,
        S::Ready
    );
    // Configured while suspended: the users start inactive, so it reads as disabled.
    let inactive = Body::IdentityConfigured(pb::IdentityConfigured {
        users_inactive: true,
        client_id: "c".into(),
        ..Default::default()
    });
    assert_eq!(sso_of(std::slice::from_ref(&inactive)).status, S::Disabled);
    assert_eq!(sso_of(&[inactive, enabled.clone()]).status, S::Ready);
    // Suspended before setup finished: setup is still what people see.
    let s = sso_of(std::slice::from_ref(&disabled));
    assert!(s.users_disabled);
    assert_eq!(s.status, S::None);
    assert_eq!(
        sso_of(&[configured(), removed.clone(), configured()]).status,
        S::Removed
    );
    assert_eq!(sso_of(&[removed, disabled]).status, S::Removed);
}

#[test]
fn failures_are_kept_until_a_success() {
    let sso = sso_of(&[step_failed(), step_failed()]);
    assert_eq!(sso.failed_attempts, 2);
    assert_eq!(sso.error.as_deref(), Some("provider: timed out"));
    let sso = sso_of(&[step_failed(), failed(true)]);
    assert_eq!(sso.status, S::Failed);
    assert!(sso.retryable);
    let sso = sso_of(&[step_failed(), failed(true), configured()]);
    assert_eq!(sso.status, S::Ready);
    assert_eq!(sso.error, None);
    assert_eq!(sso.failed_attempts, 0);
    // A failure after success (e.g. a late one) does not unmake a ready SSO.
    assert_eq!(sso_of(&[configured(), failed(false)]).status, S::Ready);
    // Failed stays failed through a suspension and a resume: the retry stays possible.
    let cycle = [
        failed(true),
        Body::IdentityDisabled(pb::IdentityDisabled::default()),
        Body::IdentityEnabled(pb::IdentityEnabled::default()),
    ];
    assert_eq!(sso_of(&cycle).setup, S::Failed);
}

#[test]
fn other_events_do_not_count() {
    let mut sso = Sso::default();
    assert!(!sso.apply(&Body::SiteSuspended(pb::SiteSuspended::default())));
    assert_eq!(sso, Sso::default());
}

fn sso(setup: S, users_disabled: bool, removed: bool) -> Sso {
    Sso {
        setup,
        users_disabled,
        removed,
        ..Sso::default()
    }
}

#[test]
fn every_trigger_in_every_state_has_one_decision() {
    let setups = [S::None, S::Pending, S::Ready, S::Failed];
    let triggers = [
        T::Provisioned,
        T::Retry,
        T::Suspended,
        T::Resumed,
        T::Deleted,
    ];
    for setup in setups {
        for users_disabled in [false, true] {
            for removed in [false, true] {
                for suspended in [false, true] {
                    let state = sso(setup, users_disabled, removed);
                    for trigger in triggers {
                        let got = decide_identity(&state, trigger, suspended);
                        let want = if removed {
                            A::Nothing
                        } else {
                            match trigger {
                                T::Deleted => A::Remove,
                                T::Provisioned if matches!(setup, S::None | S::Pending) => {
                                    A::Configure { active: !suspended }
                                }
                                T::Retry if setup != S::Ready => {
                                    A::Configure { active: !suspended }
                                }
                                T::Provisioned | T::Retry => A::Nothing,
                                T::Suspended | T::Resumed => match (users_disabled, suspended) {
                                    (false, true) => A::Disable,
                                    (true, false) => A::Enable,
                                    _ => A::Nothing,
                                },
                            }
                        };
                        assert_eq!(
                            got, want,
                            "{trigger:?} with setup {setup:?}, disabled {users_disabled}, removed {removed}, suspended {suspended}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_late_suspension_never_locks_out_a_resumed_tenant() {
    // SiteSuspended redelivered after SiteResumed was handled: the tenant is not suspended now.
    let resumed = sso(S::Ready, false, false);
    assert_eq!(decide_identity(&resumed, T::Suspended, false), A::Nothing);
    // And a late SiteResumed never re-enables a tenant that is suspended again.
    let suspended = sso(S::Ready, true, false);
    assert_eq!(decide_identity(&suspended, T::Resumed, true), A::Nothing);
}

#[test]
fn a_removed_tenant_is_never_configured_again() {
    let removed = sso(S::Ready, false, true);
    for t in [
        T::Provisioned,
        T::Retry,
        T::Resumed,
        T::Suspended,
        T::Deleted,
    ] {
        assert_eq!(decide_identity(&removed, t, false), A::Nothing);
    }
}

fn live_tenant(extra: &[Body]) -> TenantState {
    let mut events = vec![
        Body::TenantRequested(pb::TenantRequested {
            tenant_id: "t".into(),
            subdomain: "acme".into(),
            plan: "basic".into(),
            ..Default::default()
        }),
        Body::PlacementChosen(pb::PlacementChosen {
            tenant_id: "t".into(),
            bench: "b".into(),
            site: "acme.example".into(),
            ..Default::default()
        }),
        Body::TenantProvisioned(pb::TenantProvisioned {
            tenant_id: "t".into(),
            site: "acme.example".into(),
            ..Default::default()
        }),
    ];
    events.extend_from_slice(extra);
    fold(events.iter())
}

fn retry() -> crate::Command {
    Command::RetryProvisioning {
        reason: "sso".into(),
        actor: crate::Actor::operator("ops"),
    }
}

#[test]
fn a_provisioned_tenant_has_pending_sso_until_identity_reports() {
    let t = live_tenant(&[]);
    assert_eq!(t.status, Status::Active);
    assert_eq!(t.sso.status, S::Pending);
    assert_eq!(live_tenant(&[configured()]).sso.status, S::Ready);
}

#[test]
fn retry_on_a_live_tenant_is_allowed_only_when_sso_failed() {
    let refused = crate::decide(&live_tenant(&[configured()]), retry());
    assert!(matches!(
        refused,
        Err(DomainError::InvalidTransition {
            command: CommandKind::RetryProvisioning,
            ..
        })
    ));
    let failed_sso = live_tenant(&[failed(true)]);
    let events = crate::decide(&failed_sso, retry()).expect("retry of failed SSO");
    assert!(matches!(events[0], Body::ProvisioningRetryRequested(_)));
    let after = crate::apply(failed_sso, &events[0]);
    assert_eq!(after.status, Status::Active, "the site stays active");
    assert_eq!(after.sso.status, S::Pending);
    // Still possible after a suspension and a resume in between.
    let cycled = live_tenant(&[
        failed(true),
        Body::IdentityDisabled(pb::IdentityDisabled::default()),
        Body::IdentityEnabled(pb::IdentityEnabled::default()),
    ]);
    assert!(crate::decide(&cycled, retry()).is_ok());
    assert_eq!(after.retry_count, 1);
}
