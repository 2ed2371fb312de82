//! `Debug` for the messages that carry a secret: the field's presence shows, its value never
//! does (a logged request, a test's assertion message or a panic stays safe to share).

use std::fmt;

use crate::v1::{OpenSiteResponse, SignupRequest, SignupResponse};

fn shown(value: &str) -> &'static str {
    if value.is_empty() { "" } else { "<redacted>" }
}

impl fmt::Debug for SignupRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignupRequest")
            .field("email", &self.email)
            .field("password", &shown(&self.password))
            .field("full_name", &self.full_name)
            .field("organisation", &self.organisation)
            .field("subdomain", &self.subdomain)
            .field("plan", &self.plan)
            .field("region", &self.region)
            .field("idempotency_key", &self.idempotency_key)
            .field("human_check_token", &shown(&self.human_check_token))
            .finish()
    }
}

impl fmt::Debug for SignupResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignupResponse")
            .field("tenant_id", &self.tenant_id)
            .field("subdomain", &self.subdomain)
            .field("site", &self.site)
            .field("status", &self.status)
            .field("correlation_id", &self.correlation_id)
            .field("verification_required", &self.verification_required)
            .field("verification_id", &self.verification_id)
            .field("verification_sent_to", &self.verification_sent_to)
            .field("handoff_token", &shown(&self.handoff_token))
            .finish()
    }
}

impl fmt::Debug for OpenSiteResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The link's key logs the owner in; the site part alone is safe.
        let site = self.url.split('?').next().unwrap_or_default();
        f.debug_struct("OpenSiteResponse")
            .field("url", &format_args!("{site}?<redacted>"))
            .field("expires_in_seconds", &self.expires_in_seconds)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let req = SignupRequest {
            email: "ada@example.com".into(),
            password: "correct horse battery".into(),
            human_check_token: "turnstile-token".into(),
            ..Default::default()
        };
        let resp = SignupResponse {
            tenant_id: "t".into(),
            handoff_token: "handoff-secret".into(),
            ..Default::default()
        };
        let open = OpenSiteResponse {
            url: "https://a.example/api/method/frappe.www.login.login_via_key?key=abcdef0123"
                .into(),
            expires_in_seconds: 120,
        };
        let printed = format!("{req:?} {resp:?} {open:?}");
        for secret in [
            "correct horse",
            "turnstile-token",
            "handoff-secret",
            "abcdef0123",
        ] {
            assert!(!printed.contains(secret), "{secret} leaked: {printed}");
        }
        assert!(printed.contains("ada@example.com") && printed.contains("https://a.example/api"));
    }
}
