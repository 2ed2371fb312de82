//! What a person watching their signup sees (`WatchSignup`).

use proto::v1::ProvisioningStep;
use proto::v1::event::Body;

/// One progress update for the signup page. Percentages only grow along the happy path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Machine-readable step, e.g. `site_created`.
    pub step: &'static str,
    /// Human label, e.g. `Site created`.
    pub label: &'static str,
    /// 0–100.
    pub percent: u32,
    /// The site is ready; the stream can end.
    pub done: bool,
    /// Provisioning gave up; the stream can end.
    pub failed: bool,
    /// Why it failed or is being retried, in words safe to show anyone (never the bench's or
    /// Authentik's own message: operators read that in the events); empty otherwise.
    pub reason: String,
    /// The site URL once done; empty otherwise.
    pub url: String,
}

impl Progress {
    fn at(step: &'static str, label: &'static str, percent: u32) -> Self {
        Self {
            step,
            label,
            percent,
            done: false,
            failed: false,
            reason: String::new(),
            url: String::new(),
        }
    }
}

/// What a person is told when a step is retried.
pub const RETRY_REASON: &str = "A temporary problem; trying again automatically.";
/// What a person is told when setting up their site failed (the watch adds a support
/// reference).
pub const FAILED_REASON: &str = "We could not finish setting up your site; our team has been told.";
/// What a person is told when single sign-on could not be set up.
pub const SSO_FAILED_REASON: &str =
    "Single sign-on could not be set up yet; sign in with your password meanwhile.";

/// [`progress`] when single sign-on is part of the signup: the site being ready is not the
/// end yet (95 %); Authentik being configured is (or, if that gives up, the site alone, with
/// the reason — password login works either way).
pub fn progress_with_sso(body: &Body) -> Option<Progress> {
    Some(match body {
        Body::TenantProvisioned(e) => Progress {
            url: e.url.clone(),
            ..Progress::at(
                "site_ready",
                "Your site is ready; setting up single sign-on",
                95,
            )
        },
        Body::IdentityStepFailed(e) if e.will_retry => Progress {
            reason: RETRY_REASON.to_owned(),
            ..Progress::at("sso_retrying", "Retrying: setting up single sign-on", 95)
        },
        Body::IdentityConfigured(e) => Progress {
            done: true,
            url: e.login_url.clone(),
            ..Progress::at("sso_ready", "Your site and single sign-on are ready", 100)
        },
        Body::IdentityConfigurationFailed(_) => Progress {
            done: true,
            reason: SSO_FAILED_REASON.to_owned(),
            ..Progress::at(
                "sso_failed",
                "Your site is ready; single sign-on will follow once an operator has fixed it",
                100,
            )
        },
        other => return progress(other),
    })
}

/// Maps an event to a progress update, or `None` for events a signing-up person does not
/// need to see (billing, vault, identity, standby pool, later lifecycle changes).
pub fn progress(body: &Body) -> Option<Progress> {
    Some(match body {
        Body::TenantRequested(_) => Progress::at("request_received", "Request received", 5),
        Body::ProvisioningRetryRequested(_) => Progress::at("retry_requested", "Trying again", 5),
        Body::PlacementChosen(_) => Progress::at("placement_chosen", "Choosing a server", 10),
        Body::SiteCreated(_) => Progress::at("site_created", "Site created", 45),
        Body::StandbySiteClaimed(_) => Progress::at("standby_claimed", "Ready site reserved", 45),
        Body::AppsInstalled(_) => Progress::at("apps_installed", "Apps installed", 60),
        Body::SiteConfigured(_) => Progress::at("site_configured", "Site configured", 70),
        Body::OwnerUserCreated(_) => Progress::at("owner_user_created", "Your account created", 80),
        Body::ApiCredentialsIssued(_) => {
            Progress::at("api_credentials_issued", "Connecting services", 88)
        }
        Body::ApiAccessVerified(_) => {
            Progress::at("api_access_verified", "Checking everything works", 95)
        }
        Body::TenantProvisioned(e) => Progress {
            done: true,
            url: e.url.clone(),
            ..Progress::at("tenant_provisioned", "Your site is ready", 100)
        },
        Body::ProvisioningStepFailed(e) => {
            let step = e.step();
            Progress {
                failed: !e.will_retry,
                reason: if e.will_retry {
                    RETRY_REASON
                } else {
                    FAILED_REASON
                }
                .to_owned(),
                ..if e.will_retry {
                    Progress::at("retrying", retry_label(step), percent_before(step))
                } else {
                    Progress::at("step_failed", "Setup failed", percent_before(step))
                }
            }
        }
        Body::ProvisioningFailed(e) => Progress {
            failed: true,
            reason: FAILED_REASON.to_owned(),
            ..Progress::at("failed", "Setup failed", percent_before(e.step()))
        },
        _ => return None,
    })
}

/// The percentage reached before `step` started, so a retry does not move the bar backwards.
fn percent_before(step: ProvisioningStep) -> u32 {
    use ProvisioningStep as P;
    match step {
        P::Place => 5,
        P::CreateSite | P::ClaimStandby => 10,
        P::InstallApps => 45,
        P::Configure => 60,
        P::CreateOwner => 70,
        P::IssueApiCredentials => 80,
        P::VerifyApiAccess => 88,
        P::Finish => 95,
        _ => 5,
    }
}

/// "Retrying …" with what is being retried.
fn retry_label(step: ProvisioningStep) -> &'static str {
    use ProvisioningStep as P;
    match step {
        P::Place => "Retrying: choosing a server",
        P::CreateSite => "Retrying: creating your site",
        P::ClaimStandby => "Retrying: reserving a ready site",
        P::InstallApps => "Retrying: installing apps",
        P::Configure => "Retrying: configuring your site",
        P::CreateOwner => "Retrying: creating your account",
        P::IssueApiCredentials => "Retrying: connecting services",
        P::VerifyApiAccess => "Retrying: checking everything works",
        P::Finish => "Retrying: finishing up",
        _ => "Retrying …",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1 as pb;

    #[test]
    fn with_sso_the_site_is_not_the_end_until_authentik_is_configured() {
        let site = progress_with_sso(&Body::TenantProvisioned(pb::TenantProvisioned {
            url: "https://acme.example".into(),
            ..Default::default()
        }))
        .unwrap();
        assert!(!site.done && !site.failed);
        assert_eq!(site.percent, 95);
        let retry = progress_with_sso(&Body::IdentityStepFailed(pb::IdentityStepFailed {
            will_retry: true,
            reason: "Authentik answered 503".into(),
            ..Default::default()
        }))
        .unwrap();
        assert!(!retry.done && retry.reason == RETRY_REASON);
        assert!(
            !retry.reason.contains("503"),
            "Authentik's own words stay in the events"
        );
        let last_try = Body::IdentityStepFailed(pb::IdentityStepFailed::default());
        assert_eq!(
            progress_with_sso(&last_try),
            None,
            "the final failure speaks for it"
        );
        let ready = progress_with_sso(&Body::IdentityConfigured(pb::IdentityConfigured {
            login_url: "https://acme.example/login".into(),
            ..Default::default()
        }))
        .unwrap();
        assert!(ready.done && !ready.failed);
        assert_eq!(ready.url, "https://acme.example/login");
        let gave_up = progress_with_sso(&Body::IdentityConfigurationFailed(
            pb::IdentityConfigurationFailed {
                reason: "group taken".into(),
                ..Default::default()
            },
        ))
        .unwrap();
        assert!(
            gave_up.done && !gave_up.failed,
            "the site works without SSO"
        );
        // Everything else is as without SSO.
        assert_eq!(
            progress_with_sso(&Body::SiteCreated(Default::default())),
            progress(&Body::SiteCreated(Default::default()))
        );
        assert_eq!(
            progress(&Body::IdentityConfigured(Default::default())),
            None
        );
    }

    #[test]
    fn happy_path_percentages_grow_to_done() {
        let path = [
            Body::TenantRequested(Default::default()),
            Body::PlacementChosen(Default::default()),
            Body::SiteCreated(Default::default()),
            Body::AppsInstalled(Default::default()),
            Body::SiteConfigured(Default::default()),
            Body::OwnerUserCreated(Default::default()),
            Body::ApiCredentialsIssued(Default::default()),
            Body::ApiAccessVerified(Default::default()),
            Body::TenantProvisioned(pb::TenantProvisioned {
                url: "https://acme.erp.example.com".into(),
                ..Default::default()
            }),
        ];
        let ps: Vec<Progress> = path.iter().map(|b| progress(b).unwrap()).collect();
        assert!(ps.windows(2).all(|w| w[0].percent < w[1].percent));
        assert!(ps[..8].iter().all(|p| !p.done && !p.failed));
        let last = ps.last().unwrap();
        assert_eq!(
            (last.percent, last.done, last.url.as_str()),
            (100, true, "https://acme.erp.example.com")
        );
        assert_eq!(ps[1].label, "Choosing a server");
        assert_eq!(ps[2].step, "site_created");
    }

    #[test]
    fn standby_claim_reports_a_reserved_site() {
        let p = progress(&Body::StandbySiteClaimed(Default::default())).unwrap();
        assert_eq!((p.label, p.percent), ("Ready site reserved", 45));
    }

    #[test]
    fn failures_and_retries() {
        let retrying = progress(&Body::ProvisioningStepFailed(pb::ProvisioningStepFailed {
            step: ProvisioningStep::InstallApps as i32,
            will_retry: true,
            reason: "bench busy".into(),
            ..Default::default()
        }))
        .unwrap();
        assert!(!retrying.failed && !retrying.done);
        assert_eq!(retrying.label, "Retrying: installing apps");
        assert_eq!(
            (retrying.percent, retrying.reason.as_str()),
            (45, RETRY_REASON)
        );

        let gave_up = progress(&Body::ProvisioningStepFailed(pb::ProvisioningStepFailed {
            step: ProvisioningStep::InstallApps as i32,
            will_retry: false,
            ..Default::default()
        }))
        .unwrap();
        assert!(gave_up.failed);

        let failed = progress(&Body::ProvisioningFailed(pb::ProvisioningFailed {
            step: ProvisioningStep::CreateSite as i32,
            reason: "database server unreachable".into(),
            ..Default::default()
        }))
        .unwrap();
        assert!(failed.failed && !failed.done);
        assert_eq!(
            failed.reason, FAILED_REASON,
            "the operator's reason stays in the event"
        );
        // An unknown step number from a newer writer still maps.
        let odd = progress(&Body::ProvisioningStepFailed(pb::ProvisioningStepFailed {
            step: 999,
            will_retry: true,
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(odd.label, "Retrying …");
    }

    #[test]
    fn unrelated_events_are_not_progress() {
        assert_eq!(progress(&Body::InvoicePaid(Default::default())), None);
        assert_eq!(progress(&Body::SiteSuspended(Default::default())), None);
        assert_eq!(
            progress(&Body::StandbySiteCreated(Default::default())),
            None
        );
    }
}
