//! The new-tenant process, pure: a fold of a tenant's provisioning events into
//! [`ProvisioningState`] and [`decide`], which names the next thing to do. No I/O, no clock.
//!
//! ```text
//! Place → CreateSite (or claim a standby) → InstallApps → ┬ Configure                              ┬ → Finish
//!                                                        ├ CreateOwner                            │ (TenantProvisioned)
//!                                                        └ IssueApiCredentials → VerifyApiAccess ┘
//! a step gives up ─→ RollBack (SiteRolledBack) → ProvisioningFailed ─(operator retry)→ Place …
//! ```
//!
//! A *round* is one attempt at the whole process; every ProvisioningFailed ends one, and an
//! operator's ProvisioningRetryRequested starts the next from scratch. Event ids are derived from
//! (tenant, round, event, attempt), so re-recording after a crash de-duplicates.

use std::collections::BTreeMap;

use proto::v1::ProvisioningStep as PStep;
use proto::v1::event::Body;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// One step of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// Choose a bench (or a standby site).
    Place,
    /// `new-site` (or claim the standby: rename, host_name, re-key the vault).
    CreateSite,
    /// `install-app` per plan app.
    InstallApps,
    /// Plan limits and Tenantry keys into site_config.
    Configure,
    /// The owner as System Manager with their chosen password.
    CreateOwner,
    /// The automation user's API key pair, into the vault.
    IssueApiCredentials,
    /// The key answers `get_logged_user`.
    VerifyApiAccess,
    /// TenantProvisioned.
    Finish,
}

impl Step {
    /// Every step in order.
    pub const ALL: [Step; 8] = [
        Step::Place,
        Step::CreateSite,
        Step::InstallApps,
        Step::Configure,
        Step::CreateOwner,
        Step::IssueApiCredentials,
        Step::VerifyApiAccess,
        Step::Finish,
    ];

    /// The step as the proto names it (in failures and progress).
    pub fn proto(self) -> PStep {
        match self {
            Step::Place => PStep::Place,
            Step::CreateSite => PStep::CreateSite,
            Step::InstallApps => PStep::InstallApps,
            Step::Configure => PStep::Configure,
            Step::CreateOwner => PStep::CreateOwner,
            Step::IssueApiCredentials => PStep::IssueApiCredentials,
            Step::VerifyApiAccess => PStep::VerifyApiAccess,
            Step::Finish => PStep::Finish,
        }
    }

    /// A metric label / log name.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Place => "place",
            Step::CreateSite => "create_site",
            Step::InstallApps => "install_apps",
            Step::Configure => "configure",
            Step::CreateOwner => "create_owner",
            Step::IssueApiCredentials => "issue_api_credentials",
            Step::VerifyApiAccess => "verify_api_access",
            Step::Finish => "finish",
        }
    }

    /// The step a recorded ProvisioningStep value names.
    pub fn from_proto(step: i32) -> Option<Step> {
        let p = PStep::try_from(step).ok()?;
        Some(match p {
            PStep::Place => Step::Place,
            PStep::CreateSite | PStep::ClaimStandby => Step::CreateSite,
            PStep::InstallApps => Step::InstallApps,
            PStep::Configure => Step::Configure,
            PStep::CreateOwner => Step::CreateOwner,
            PStep::IssueApiCredentials => Step::IssueApiCredentials,
            PStep::VerifyApiAccess => Step::VerifyApiAccess,
            PStep::Finish => Step::Finish,
            _ => return None,
        })
    }
}

/// Where the current round placed the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    /// Bench name.
    pub bench: String,
    /// Fully qualified site.
    pub site: String,
    /// Database name.
    pub db_name: String,
}

/// A step that gave up in the current round and still has to be rolled back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaveUp {
    /// The step.
    pub step: Step,
    /// The proto step to report (CLAIM_STANDBY for a failed claim).
    pub proto_step: i32,
    /// Why, for a person.
    pub reason: String,
}

/// The fold of one tenant's `tenantry.provisioning.<tenant>` subject.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProvisioningState {
    /// Rounds that ended in ProvisioningFailed; the current round's index.
    pub failures: u32,
    /// The latest ProvisioningFailed, while no new round has started.
    pub failed: Option<(i32, String)>,
    /// Placement of the current round.
    pub placement: Option<Placement>,
    /// The site exists (SiteCreated or StandbySiteClaimed this round).
    pub site_created: bool,
    /// The site came from the standby pool.
    pub from_standby: bool,
    /// AppsInstalled this round.
    pub apps_installed: bool,
    /// SiteConfigured this round.
    pub configured: bool,
    /// OwnerUserCreated this round.
    pub owner_created: bool,
    /// ApiCredentialsIssued this round.
    pub credentials_issued: bool,
    /// ApiAccessVerified this round.
    pub verified: bool,
    /// TenantProvisioned.
    pub provisioned: bool,
    /// ProvisioningStepFailed count per step this round (the next attempt is this + 1).
    pub step_failures: BTreeMap<Step, u32>,
    /// A step gave up (will_retry = false) and the round is not closed yet.
    pub gave_up: Option<GaveUp>,
    /// SiteRolledBack this round.
    pub rolled_back: bool,
    /// The site is in maintenance mode (SiteSuspended, not yet SiteResumed).
    pub suspended: bool,
    /// SiteBackedUp seen since provisioning (the pre-delete backup).
    pub backed_up: bool,
    /// SiteDeleted.
    pub deleted: bool,
    /// The plan whose limits the latest SiteLimitsApplied wrote into the site.
    pub limits_plan: Option<String>,
    /// Events folded.
    pub events: u64,
}

impl ProvisioningState {
    fn new_round(&mut self) {
        let keep = (self.failures, self.events);
        *self = ProvisioningState {
            failures: keep.0,
            events: keep.1,
            ..ProvisioningState::default()
        };
    }

    /// The next attempt number (1-based) of `step` in this round.
    pub fn attempt(&self, step: Step) -> u32 {
        self.step_failures.get(&step).copied().unwrap_or(0) + 1
    }

    /// Whether the tenant has a live site (provisioned, not deleted).
    pub fn live(&self) -> bool {
        self.provisioned && !self.deleted
    }
}

/// Folds one provisioning event.
pub fn apply(mut s: ProvisioningState, event: &Body) -> ProvisioningState {
    s.events += 1;
    match event {
        Body::PlacementChosen(e) => {
            // The first event of a round after a failure: the retry has begun.
            s.failed = None;
            s.placement = Some(Placement {
                bench: e.bench.clone(),
                site: e.site.clone(),
                db_name: e.db_name.clone(),
            });
        }
        Body::SiteCreated(_) => s.site_created = true,
        Body::StandbySiteClaimed(_) => {
            s.site_created = true;
            s.from_standby = true;
            // A standby already has the plan's apps.
            s.apps_installed = true;
        }
        Body::AppsInstalled(_) => s.apps_installed = true,
        Body::SiteConfigured(_) => s.configured = true,
        Body::OwnerUserCreated(_) => s.owner_created = true,
        Body::ApiCredentialsIssued(_) => s.credentials_issued = true,
        Body::ApiAccessVerified(_) => s.verified = true,
        Body::TenantProvisioned(_) => s.provisioned = true,
        Body::ProvisioningStepFailed(e) => {
            s.failed = None;
            if let Some(step) = Step::from_proto(e.step) {
                *s.step_failures.entry(step).or_default() += 1;
                if !e.will_retry && !s.provisioned {
                    s.gave_up = Some(GaveUp {
                        step,
                        proto_step: e.step,
                        reason: e.reason.clone(),
                    });
                }
            }
        }
        Body::SiteRolledBack(_) => s.rolled_back = true,
        Body::ProvisioningFailed(e) => {
            if s.provisioned {
                // A failed suspend/resume/delete on a live tenant: no round ends.
                return s;
            }
            s.failures += 1;
            let failures = s.failures;
            s.new_round();
            s.failures = failures;
            s.failed = Some((e.step, e.reason.clone()));
        }
        Body::SiteSuspended(_) => s.suspended = true,
        Body::SiteResumed(_) => s.suspended = false,
        Body::SiteBackedUp(_) => s.backed_up = true,
        Body::SiteDeleted(_) => s.deleted = true,
        Body::SiteLimitsApplied(e) => s.limits_plan = Some(e.plan.clone()),
        _ => s.events -= 1,
    }
    s
}

/// Folds a subject's events from nothing.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a Body>) -> ProvisioningState {
    events.into_iter().fold(ProvisioningState::default(), apply)
}

/// What to do next for a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Run this step.
    Run(Step),
    /// A step gave up: undo what this round made, then record ProvisioningFailed.
    RollBack(GaveUp),
    /// The tenant is provisioned (or gone): nothing to do.
    Done,
    /// The last round failed; waiting for an operator retry.
    AwaitRetry,
}

/// The next thing to do, given the fold and how many operator retries the lifecycle subject holds.
pub fn decide(s: &ProvisioningState, retries_requested: u32) -> Next {
    if s.provisioned || s.deleted {
        return Next::Done;
    }
    if s.failed.is_some() {
        // Round n (0-based) may start once n retries were asked for.
        return if retries_requested >= s.failures {
            Next::Run(Step::Place)
        } else {
            Next::AwaitRetry
        };
    }
    if let Some(g) = &s.gave_up {
        return Next::RollBack(g.clone());
    }
    let step = if s.placement.is_none() {
        Step::Place
    } else if !s.site_created {
        Step::CreateSite
    } else if !s.apps_installed {
        Step::InstallApps
    } else if !s.configured {
        Step::Configure
    } else if !s.owner_created {
        Step::CreateOwner
    } else if !s.credentials_issued {
        Step::IssueApiCredentials
    } else if !s.verified {
        Step::VerifyApiAccess
    } else {
        Step::Finish
    };
    Next::Run(step)
}

/// The steps that may run side by side now, in the order their events are recorded. Once the
/// site exists with its apps, Configure (site_config on the bench host), CreateOwner (the owner,
/// over REST) and IssueApiCredentials → VerifyApiAccess (the automation user and its key) touch
/// different things, so none waits for another. Fewer than two: the next step runs alone.
pub fn side_by_side(s: &ProvisioningState) -> Vec<Step> {
    let open = s.site_created
        && s.apps_installed
        && s.gave_up.is_none()
        && s.failed.is_none()
        && !s.provisioned
        && !s.deleted;
    if !open {
        return Vec::new();
    }
    [
        (Step::Configure, s.configured),
        (Step::CreateOwner, s.owner_created),
        (Step::IssueApiCredentials, s.credentials_issued),
        (Step::VerifyApiAccess, s.verified),
    ]
    .into_iter()
    .filter_map(|(step, done)| (!done).then_some(step))
    .collect()
}

/// A deterministic event id: the same (tenant, round, what, n) always gives the same id, so a
/// re-append after a crash is de-duplicated by JetStream inside its window (and the fold
/// prevents it outside).
pub fn event_id(tenant: &str, round: u32, what: &str, n: u64) -> Uuid {
    let digest = Sha256::digest(format!("{tenant}:{round}:{what}:{n}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// `_` + 16 hex of sha256(tenant id): a valid MariaDB name unique to the tenant.
pub fn db_name_for(tenant: &str) -> String {
    let digest = Sha256::digest(tenant.as_bytes());
    format!("_{}", &hex::encode(digest)[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1 as pb;

    fn placed() -> Body {
        Body::PlacementChosen(pb::PlacementChosen {
            tenant_id: "t".into(),
            bench: "a".into(),
            site: "s.x".into(),
            db_name: "_d".into(),
            region: "eu".into(),
        })
    }

    fn step_failed(step: PStep, will_retry: bool) -> Body {
        Body::ProvisioningStepFailed(pb::ProvisioningStepFailed {
            tenant_id: "t".into(),
            step: step as i32,
            attempt: 1,
            reason: "boom".into(),
            will_retry,
            retry_in_ms: 0,
        })
    }

    fn failed() -> Body {
        Body::ProvisioningFailed(pb::ProvisioningFailed {
            tenant_id: "t".into(),
            step: PStep::CreateSite as i32,
            reason: "boom".into(),
            retryable: true,
        })
    }

    fn happy_path() -> Vec<Body> {
        vec![
            placed(),
            Body::SiteCreated(Default::default()),
            Body::AppsInstalled(Default::default()),
            Body::SiteConfigured(Default::default()),
            Body::OwnerUserCreated(Default::default()),
            Body::ApiCredentialsIssued(Default::default()),
            Body::ApiAccessVerified(Default::default()),
            Body::TenantProvisioned(Default::default()),
        ]
    }

    #[test]
    fn walks_the_steps_in_order() {
        let events = happy_path();
        for (i, step) in Step::ALL.iter().enumerate() {
            let s = fold(&events[..i]);
            assert_eq!(decide(&s, 0), Next::Run(*step), "after {i} events");
        }
        assert_eq!(decide(&fold(&events), 0), Next::Done);
    }

    #[test]
    fn a_standby_claim_skips_app_installation() {
        let events = [placed(), Body::StandbySiteClaimed(Default::default())];
        let s = fold(&events);
        assert!(s.from_standby);
        assert_eq!(decide(&s, 0), Next::Run(Step::Configure));
    }

    #[test]
    fn transient_failures_count_attempts() {
        let events = [
            placed(),
            step_failed(PStep::CreateSite, true),
            step_failed(PStep::CreateSite, true),
        ];
        let s = fold(&events);
        assert_eq!(s.attempt(Step::CreateSite), 3);
        assert_eq!(decide(&s, 0), Next::Run(Step::CreateSite));
    }

    #[test]
    fn giving_up_rolls_back_then_waits_for_a_retry_then_starts_clean() {
        let mut events = vec![placed(), step_failed(PStep::InstallApps, false)];
        let s = fold(&events);
        assert!(matches!(
            decide(&s, 0),
            Next::RollBack(GaveUp {
                step: Step::InstallApps,
                ..
            })
        ));
        events.push(Body::SiteRolledBack(Default::default()));
        // Crash between SiteRolledBack and ProvisioningFailed: still rolling back.
        assert!(matches!(decide(&fold(&events), 0), Next::RollBack(_)));
        events.push(failed());
        let s = fold(&events);
        assert_eq!(s.failures, 1);
        assert_eq!(decide(&s, 0), Next::AwaitRetry);
        assert_eq!(decide(&s, 1), Next::Run(Step::Place));
        // The new round starts from nothing.
        events.push(placed());
        let s = fold(&events);
        assert!(s.failed.is_none() && s.gave_up.is_none() && !s.rolled_back);
        assert_eq!(s.attempt(Step::InstallApps), 1);
        assert_eq!(decide(&s, 1), Next::Run(Step::CreateSite));
        // A second failure needs a second retry.
        events.push(step_failed(PStep::CreateSite, false));
        events.push(failed());
        assert_eq!(decide(&fold(&events), 1), Next::AwaitRetry);
        assert_eq!(decide(&fold(&events), 2), Next::Run(Step::Place));
        // In the third round, placement itself gives up: roll back, do not loop on Place.
        events.push(step_failed(PStep::Place, false));
        assert!(matches!(
            decide(&fold(&events), 2),
            Next::RollBack(GaveUp {
                step: Step::Place,
                ..
            })
        ));
    }

    #[test]
    fn the_steps_after_the_site_run_side_by_side() {
        let events = happy_path();
        // Before the site and its apps: one step at a time.
        assert!(side_by_side(&fold(&events[..2])).is_empty());
        assert_eq!(
            side_by_side(&fold(&events[..3])),
            [
                Step::Configure,
                Step::CreateOwner,
                Step::IssueApiCredentials,
                Step::VerifyApiAccess
            ]
        );
        // What is recorded drops out; a step that gave up stops the group.
        let mut partial = events[..3].to_vec();
        partial.push(Body::OwnerUserCreated(Default::default()));
        partial.push(Body::ApiCredentialsIssued(Default::default()));
        assert_eq!(
            side_by_side(&fold(&partial)),
            [Step::Configure, Step::VerifyApiAccess]
        );
        partial.push(step_failed(PStep::Configure, false));
        assert!(side_by_side(&fold(&partial)).is_empty());
        assert!(side_by_side(&fold(&events)).is_empty());
    }

    #[test]
    fn lifecycle_facts_fold() {
        let mut events = happy_path();
        events.push(Body::SiteSuspended(Default::default()));
        assert!(fold(&events).suspended);
        events.push(Body::SiteResumed(Default::default()));
        assert!(!fold(&events).suspended);
        events.push(Body::SiteBackedUp(Default::default()));
        events.push(Body::SiteDeleted(Default::default()));
        let s = fold(&events);
        assert!(s.backed_up && s.deleted && !s.live());
        assert_eq!(decide(&s, 0), Next::Done);
    }

    #[test]
    fn ids_and_db_names_are_deterministic() {
        assert_eq!(
            event_id("t", 0, "SiteCreated", 0),
            event_id("t", 0, "SiteCreated", 0)
        );
        assert_ne!(
            event_id("t", 0, "SiteCreated", 0),
            event_id("t", 1, "SiteCreated", 0)
        );
        let db = db_name_for("0190f5c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d");
        assert_eq!(db.len(), 17);
        assert!(frappe::DbName::parse(&db).is_ok());
    }
}
