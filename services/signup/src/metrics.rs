//! What the gateway tells an operator: signups accepted (by plan), refused (by reason and
//! field), and requests turned away by a rate limit (by which limit).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::error::{RateScope, SignupError, StreamScope};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlanLabels {
    plan: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    /// The error's reason code, lower-cased (`invalid_request`, `subdomain_taken`, …).
    reason: String,
    /// The request field at fault (empty when the refusal is not about one field).
    field: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    /// `address`, `email`, `checks`, `streams_address` or `streams_total`.
    limit: String,
}

/// Handles to the gateway's metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SignupMetrics {
    accepted: Family<PlanLabels, Counter>,
    rejected: Family<RejectLabels, Counter>,
    rate_limited: Family<LimitLabels, Counter>,
}

impl SignupMetrics {
    /// The gateway's families, registered in `metrics`.
    pub fn register(metrics: &svc::Metrics) -> Self {
        let m = Self {
            accepted: Family::default(),
            rejected: Family::default(),
            rate_limited: Family::default(),
        };
        metrics.register(
            "signup_accepted",
            "Signups accepted (a tenant was requested), by plan; idempotent replays count once",
            m.accepted.clone(),
        );
        metrics.register(
            "signup_rejected",
            "Signups refused, by reason code and the field at fault",
            m.rejected.clone(),
        );
        metrics.register(
            "signup_rate_limited",
            "Requests turned away by a rate limit or stream cap, by limit",
            m.rate_limited.clone(),
        );
        m
    }

    /// Counts an accepted signup of `plan` (a validated plan id: bounded cardinality).
    pub fn accepted(&self, plan: &str) {
        self.accepted
            .get_or_create(&PlanLabels {
                plan: plan.to_owned(),
            })
            .inc();
    }

    /// Counts a refused signup: one count per field at fault.
    pub fn rejected(&self, error: &SignupError) {
        let count = |reason: &str, field: &str| {
            self.rejected
                .get_or_create(&RejectLabels {
                    reason: reason.to_owned(),
                    field: field.to_owned(),
                })
                .inc();
        };
        match error {
            SignupError::Invalid(violations) => {
                for v in violations {
                    count("invalid_request", v.field);
                }
            }
            SignupError::SubdomainTaken { .. } => count("subdomain_taken", "subdomain"),
            other => count(&other.reason().to_ascii_lowercase(), ""),
        }
        self.limited(error);
    }

    /// Counts a request a limit turned away (any method); other errors are ignored.
    pub fn limited(&self, error: &SignupError) {
        let limit = match error {
            SignupError::RateLimited { scope, .. } => match scope {
                RateScope::Address => "address",
                RateScope::Email => "email",
                RateScope::Checks => "checks",
            },
            SignupError::TooManyStreams { scope, .. } => match scope {
                StreamScope::Address => "streams_address",
                StreamScope::Total => "streams_total",
            },
            _ => return,
        };
        self.rate_limited
            .get_or_create(&LimitLabels {
                limit: limit.to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Violation;

    #[test]
    fn refusals_are_counted_by_reason_and_field() {
        let registry = svc::Metrics::new();
        let m = SignupMetrics::register(&registry);
        m.rejected(&SignupError::Invalid(vec![
            Violation::new("email", "not an email"),
            Violation::new("subdomain", "too short"),
        ]));
        m.rejected(&SignupError::RateLimited {
            scope: RateScope::Email,
            retry_after: std::time::Duration::from_secs(3),
        });
        m.accepted("starter");
        let text = registry.render();
        for line in [
            r#"tenantry_signup_rejected_total{reason="invalid_request",field="email"} 1"#,
            r#"tenantry_signup_rejected_total{reason="invalid_request",field="subdomain"} 1"#,
            r#"tenantry_signup_rejected_total{reason="rate_limited",field=""} 1"#,
            r#"tenantry_signup_rate_limited_total{limit="email"} 1"#,
            r#"tenantry_signup_accepted_total{plan="starter"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
