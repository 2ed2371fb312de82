//! One-line, human-readable summaries of events, for history tables and `tenantctl`.

use proto::v1::event::Body;
use proto::v1::{self as pb, ProvisioningStep};

/// Summarises an event in one line, e.g. "Site acme.example.com created on bench-1 in 18.2 s".
/// Never includes a secret (events hold none) and never panics on empty fields.
pub fn summarize(body: &Body) -> String {
    match body {
        Body::TenantRequested(e) => format!(
            "Signup by {} for {} ({}) on plan {} in {}",
            or_unknown(&e.owner_email),
            or_unknown(&e.organisation),
            or_unknown(&e.subdomain),
            or_unknown(&e.plan),
            or_unknown(&e.region),
        ),
        Body::SuspensionRequested(e) => format!(
            "Suspension requested{}{}",
            by(e.requested_by.as_ref()),
            because(&e.reason)
        ),
        Body::ResumeRequested(e) => format!(
            "Resume requested{}{}",
            by(e.requested_by.as_ref()),
            because(&e.reason)
        ),
        Body::DeletionRequested(e) => format!(
            "Deletion requested{}{}",
            by(e.requested_by.as_ref()),
            because(&e.reason)
        ),
        Body::PlanChangeRequested(e) => format!(
            "Plan change from {} to {} requested{}",
            or_unknown(&e.from_plan),
            or_unknown(&e.to_plan),
            by(e.requested_by.as_ref())
        ),
        Body::ProvisioningRetryRequested(e) => format!(
            "Provisioning retry #{} requested{}{}",
            e.attempt,
            by(e.requested_by.as_ref()),
            because(&e.reason)
        ),
        Body::PlacementChosen(e) => format!(
            "Placed on {} in {} as {}",
            or_unknown(&e.bench),
            or_unknown(&e.region),
            or_unknown(&e.site)
        ),
        Body::SiteCreated(e) => format!(
            "Site {} created on {} in {}",
            or_unknown(&e.site),
            or_unknown(&e.bench),
            duration(e.duration_ms)
        ),
        Body::AppsInstalled(e) => format!(
            "Installed {} in {}",
            list(&e.apps, "no apps"),
            duration(e.duration_ms)
        ),
        Body::SiteConfigured(e) => format!(
            "Site configured ({} {}) in {}",
            e.keys.len(),
            plural(e.keys.len(), "key", "keys"),
            duration(e.duration_ms)
        ),
        Body::OwnerUserCreated(e) => format!(
            "Owner {} created{} in {}",
            or_unknown(&e.email),
            if e.roles.is_empty() {
                String::new()
            } else {
                format!(" as {}", e.roles.join(", "))
            },
            duration(e.duration_ms)
        ),
        Body::ApiCredentialsIssued(e) => format!(
            "API credentials issued for {} in {}",
            or_unknown(&e.user),
            duration(e.duration_ms)
        ),
        Body::ApiAccessVerified(e) => format!(
            "API access verified for {}; key active after {}",
            or_unknown(&e.user),
            duration(e.activation_ms)
        ),
        Body::TenantProvisioned(e) => format!(
            "Tenant live at {} in {}{}",
            or_unknown(if e.url.is_empty() { &e.site } else { &e.url }),
            duration(e.total_ms),
            if e.from_standby {
                " (from standby pool)"
            } else {
                ""
            }
        ),
        Body::ProvisioningStepFailed(e) => format!(
            "Step {} failed (attempt {}){}{}",
            step_name(e.step()),
            e.attempt,
            because(&e.reason),
            if e.will_retry {
                format!("; retrying in {}", duration(e.retry_in_ms))
            } else {
                "; giving up".to_owned()
            }
        ),
        Body::ProvisioningFailed(e) => format!(
            "Provisioning failed at {}{}{}",
            step_name(e.step()),
            because(&e.reason),
            if e.retryable { " (retryable)" } else { "" }
        ),
        Body::SiteRolledBack(e) => format!(
            "Site {} on {} rolled back ({})",
            or_unknown(&e.site),
            or_unknown(&e.bench),
            match e.method.as_str() {
                "dropped" => "dropped to the archive",
                "directory_removed" => "half-made directory removed",
                "" => "unknown method",
                other => other,
            }
        ),
        Body::SiteSuspended(e) => {
            format!(
                "Site {} suspended{}",
                or_unknown(&e.site),
                because(&e.reason)
            )
        }
        Body::SiteResumed(e) => format!("Site {} resumed", or_unknown(&e.site)),
        Body::SiteBackedUp(e) => format!(
            "Site {} backed up ({} {}, {}) in {}",
            or_unknown(&e.site),
            e.files.len(),
            plural(e.files.len(), "file", "files"),
            bytes(
                e.files
                    .iter()
                    .map(|f| f.size_bytes)
                    .fold(0, u64::saturating_add)
            ),
            duration(e.duration_ms)
        ),
        Body::SiteDeleted(e) => format!(
            "Site {} deleted from {}{}",
            or_unknown(&e.site),
            or_unknown(&e.bench),
            if e.archived_path.is_empty() {
                String::new()
            } else {
                format!("; archived to {}", e.archived_path)
            }
        ),
        Body::StandbySiteCreated(e) => format!(
            "Standby site {} created on {} with {} in {}",
            or_unknown(&e.site),
            or_unknown(&e.bench),
            list(&e.apps, "no apps"),
            duration(e.duration_ms)
        ),
        Body::StandbySiteClaimed(e) => format!(
            "Standby site {} claimed as {} on {}",
            or_unknown(&e.standby_site),
            or_unknown(&e.site),
            or_unknown(&e.bench)
        ),
        Body::SiteLimitsApplied(e) => format!(
            "Limits of plan {} applied to {} ({} {})",
            or_unknown(&e.plan),
            or_unknown(&e.site),
            e.keys.len(),
            plural(e.keys.len(), "key", "keys")
        ),
        Body::CredentialStored(e) => format!(
            "Secret {} ({}) stored, version {}",
            or_unknown(&e.name),
            or_unknown(&e.kind),
            e.version
        ),
        Body::CredentialRotated(e) => format!(
            "Secret {} rotated to version {} (key {})",
            or_unknown(&e.name),
            e.version,
            or_unknown(&e.kek_id)
        ),
        Body::CredentialRevoked(e) => format!("Secret {} revoked", or_unknown(&e.name)),
        Body::TenantKeysShredded(e) => format!(
            "Encryption keys shredded ({} {} now unreadable)",
            e.secrets_shredded,
            plural(e.secrets_shredded as usize, "secret", "secrets")
        ),
        Body::IdentityConfigured(e) => format!(
            "Single sign-on configured (application {})",
            or_unknown(&e.application_slug)
        ),
        Body::IdentityConfigurationFailed(e) => format!(
            "Single sign-on setup failed{}{}",
            because(&e.reason),
            if e.retryable { " (retryable)" } else { "" }
        ),
        Body::IdentityDisabled(e) => format!(
            "Single sign-on disabled ({} {} deactivated)",
            e.users_deactivated,
            plural(e.users_deactivated as usize, "user", "users")
        ),
        Body::IdentityEnabled(e) => format!(
            "Single sign-on enabled ({} {} reactivated)",
            e.users_activated,
            plural(e.users_activated as usize, "user", "users")
        ),
        Body::IdentityRemoved(_) => "Single sign-on removed".to_owned(),
        Body::IdentityStepFailed(e) => format!(
            "Single sign-on step {} failed (attempt {}){}{}",
            or_unknown(&e.step),
            e.attempt,
            because(&e.reason),
            if e.will_retry { "; retrying" } else { "" }
        ),
        Body::SubscriptionStarted(e) => format!(
            "Subscription {} started on plan {}{}",
            or_unknown(&e.subscription_id),
            or_unknown(&e.plan),
            e.trial_ends_at
                .as_ref()
                .map(|t| format!("; trial ends {}", date(t)))
                .unwrap_or_default()
        ),
        Body::TrialEnded(_) => "Trial ended".to_owned(),
        Body::PlanChanged(e) => format!(
            "Plan changed from {} to {}",
            or_unknown(&e.from_plan),
            or_unknown(&e.to_plan)
        ),
        Body::UsageRecorded(e) => format!(
            "Usage: {} {}, database {} MB, files {} MB",
            e.users,
            plural(e.users as usize, "user", "users"),
            e.database_mb,
            e.storage_mb
        ),
        Body::InvoiceIssued(e) => format!(
            "Invoice {} issued for {}{}",
            or_unknown(&e.invoice_id),
            money(e.amount_minor, &e.currency),
            e.due_at
                .as_ref()
                .map(|t| format!(", due {}", date(t)))
                .unwrap_or_default()
        ),
        Body::InvoicePaid(e) => format!(
            "Invoice {} paid ({})",
            or_unknown(&e.invoice_id),
            money(e.amount_minor, "")
        ),
        Body::PaymentFailed(e) => format!(
            "Payment for invoice {} failed{}",
            or_unknown(&e.invoice_id),
            because(&e.reason)
        ),
        Body::SubscriptionCancelled(e) => format!(
            "Subscription {} cancelled{}",
            or_unknown(&e.subscription_id),
            because(&e.reason)
        ),
        Body::SubscriptionSuspended(e) if e.invoice_id.is_empty() => format!(
            "Billing asked for suspension: over the plan's {} limit{}",
            or_unknown(&e.limit),
            because(&e.reason)
        ),
        Body::SubscriptionSuspended(e) => format!(
            "Billing asked for suspension: invoice {} unpaid{}",
            or_unknown(&e.invoice_id),
            because(&e.reason)
        ),
        Body::SubscriptionReactivated(_) => {
            "Billing asked for resume: nothing overdue, usage within the plan".to_owned()
        }
        Body::UsageLimitExceeded(e) => format!(
            "Over the plan's {} limit: {} of {}{}",
            or_unknown(&e.limit),
            e.used,
            e.allowed,
            e.grace_ends_at
                .as_ref()
                .map(|t| format!("; suspended if still over on {}", date(t)))
                .unwrap_or_default()
        ),
        Body::UsageWithinLimits(_) => "Usage is within the plan's limits again".to_owned(),
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "?" } else { s }
}

fn because(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

fn by(actor: Option<&pb::Actor>) -> String {
    let who = match actor {
        Some(a) if !a.id.is_empty() && !a.kind.is_empty() => format!(" by {} {}", a.kind, a.id),
        Some(a) if !a.id.is_empty() || !a.kind.is_empty() => format!(" by {}{}", a.kind, a.id),
        _ => return String::new(),
    };
    match actor.map(|a| a.on_behalf_of.as_str()) {
        Some(person) if !person.is_empty() => format!("{who} for {person}"),
        _ => who,
    }
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

fn list(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_owned()
    } else {
        items.join(", ")
    }
}

/// `850 ms`, `18.2 s`, `3 min 5 s`.
fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// `512 B`, `1.5 KB`, `12.0 MB`, `3.2 GB` (binary multiples, as `du -h` shows them).
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `12.34 EUR` from minor units; assumes two decimals, which holds for the currencies billed.
fn money(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let amount = format!("{sign}{}.{:02}", abs / 100, abs % 100);
    if currency.is_empty() {
        amount
    } else {
        format!("{amount} {currency}")
    }
}

/// The UTC calendar date of a timestamp, `YYYY-MM-DD` (civil-from-days, no clock needed).
fn date(t: &prost_types::Timestamp) -> String {
    let days = t.seconds.div_euclid(86_400);
    // Howard Hinnant's days_from_civil inverse, valid for the whole i64 range we can meet.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn step_name(step: ProvisioningStep) -> &'static str {
    use ProvisioningStep as P;
    match step {
        P::Unspecified => "an unknown step",
        P::Place => "placement",
        P::CreateSite => "site creation",
        P::InstallApps => "app installation",
        P::Configure => "site configuration",
        P::CreateOwner => "owner creation",
        P::IssueApiCredentials => "API credential issue",
        P::VerifyApiAccess => "API access check",
        P::Suspend => "suspension",
        P::Resume => "resume",
        P::Backup => "backup",
        P::Delete => "deletion",
        P::ClaimStandby => "standby claim",
        P::Finish => "completion",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_created_reads_like_the_history_table() {
        let s = summarize(&Body::SiteCreated(pb::SiteCreated {
            site: "acme.example.com".into(),
            bench: "bench-1".into(),
            duration_ms: 18_234,
            ..Default::default()
        }));
        assert_eq!(s, "Site acme.example.com created on bench-1 in 18.2 s");
    }

    #[test]
    fn lifecycle_requests_name_the_actor_and_reason() {
        let s = summarize(&Body::SuspensionRequested(pb::SuspensionRequested {
            reason: "unpaid invoice".into(),
            requested_by: Some(pb::Actor {
                kind: "billing".into(),
                id: "billing-1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }));
        assert_eq!(
            s,
            "Suspension requested by billing billing-1: unpaid invoice"
        );
        assert_eq!(
            summarize(&Body::DeletionRequested(Default::default())),
            "Deletion requested"
        );
    }

    #[test]
    fn failures_retries_and_money() {
        let s = summarize(&Body::ProvisioningStepFailed(pb::ProvisioningStepFailed {
            step: ProvisioningStep::InstallApps as i32,
            attempt: 2,
            reason: "bench busy".into(),
            will_retry: true,
            retry_in_ms: 4_000,
            ..Default::default()
        }));
        assert_eq!(
            s,
            "Step app installation failed (attempt 2): bench busy; retrying in 4.0 s"
        );
        let s = summarize(&Body::InvoiceIssued(pb::InvoiceIssued {
            invoice_id: "INV-7".into(),
            amount_minor: 4_900,
            currency: "EUR".into(),
            due_at: Some(prost_types::Timestamp {
                seconds: 1_767_225_600, // 2026-01-01T00:00:00Z
                nanos: 0,
            }),
            ..Default::default()
        }));
        assert_eq!(s, "Invoice INV-7 issued for 49.00 EUR, due 2026-01-01");
    }

    #[test]
    fn helpers() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(125_000), "2 min 5 s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MB");
        assert_eq!(money(-5, ""), "-0.05");
        assert_eq!(
            date(&prost_types::Timestamp {
                seconds: 0,
                nanos: 0
            }),
            "1970-01-01"
        );
        assert_eq!(
            date(&prost_types::Timestamp {
                seconds: 951_782_400,
                nanos: 0
            }),
            "2000-02-29"
        );
    }

    #[test]
    fn every_event_type_has_a_non_empty_summary_even_when_empty() {
        for body in crate::lifecycle_tests::one_of_each("t") {
            let s = summarize(&body);
            assert!(
                !s.is_empty() && !s.contains('\n'),
                "{}: {s:?}",
                body.type_name()
            );
        }
    }
}
