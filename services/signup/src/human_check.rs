//! The human check: server-side verification of the token a human-check widget (Cloudflare
//! Turnstile, hCaptcha) gave the signup page.
//!
//! Both providers speak the same "siteverify" API: a `POST` of
//! `application/x-www-form-urlencoded` `secret`, `response` (the token) and optionally
//! `remoteip`, answered with JSON `{"success": bool, "error-codes": [..]}`. Tokens are
//! single-use and short-lived, so a retried signup needs a fresh one from the widget.
//!
//! Neither the secret nor the token is ever logged, echoed in an error or put in a `Debug`
//! output: errors carry only the provider's error codes or why it could not be reached.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// How long the provider may take to answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Longest token passed on to the provider, in bytes (Turnstile's are at most 2048 characters);
/// a longer one is refused without asking.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Error codes that mean the gateway's own request or configuration is wrong (or the provider
/// failed), not the person's token: answered as "unavailable", never as a failed check.
const SERVER_SIDE_CODES: &[&str] = &[
    "missing-input-secret",
    "invalid-input-secret",
    "sitekey-secret-mismatch",
    "bad-request",
    "internal-error",
];

/// Why a human check did not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HumanCheckError {
    /// The request carried no token.
    #[error("no human-check token was sent")]
    Missing,
    /// The provider refused the token (expired, already used, forged, …), with its error codes.
    #[error("the human check refused the token ({})", .0.join(", "))]
    Refused(Vec<String>),
    /// The provider could not be reached or gave no usable answer; retrying later may work.
    #[error("the human check could not be verified: {0}")]
    Unavailable(String),
}

/// A configured human-check provider: its siteverify URL and the site's secret key.
#[derive(Clone)]
pub struct HumanCheck {
    url: reqwest::Url,
    secret: SecretString,
    http: reqwest::Client,
}

impl fmt::Debug for HumanCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HumanCheck")
            .field("url", &self.url.as_str())
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// The siteverify answer (Turnstile and hCaptcha; other fields are ignored).
#[derive(Debug, serde::Deserialize)]
struct SiteVerify {
    success: bool,
    #[serde(default, rename = "error-codes")]
    error_codes: Vec<String>,
}

impl HumanCheck {
    /// A check against the siteverify endpoint `url` (`http` or `https`) with the site's
    /// `secret`, e.g. `https://challenges.cloudflare.com/turnstile/v0/siteverify` or
    /// `https://api.hcaptcha.com/siteverify`. The error says what is wrong with the URL.
    pub fn new(url: &str, secret: SecretString) -> Result<Self, String> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| format!("the human-check URL {url:?} is not a valid URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "the human-check URL {:?} must be an http(s) URL with a host",
                url.as_str()
            ));
        }
        if secret.expose_secret().trim().is_empty() {
            return Err("the human-check secret is empty".to_owned());
        }
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            // A redirect would carry the secret somewhere else: treat one as a failure instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the human-check HTTP client: {e}"))?;
        Ok(Self { url, secret, http })
    }

    /// The siteverify URL.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// Asks the provider whether `token` is a passed check for this site, from the client at
    /// `remote_ip` when known.
    pub async fn verify(
        &self,
        token: &str,
        remote_ip: Option<IpAddr>,
    ) -> Result<(), HumanCheckError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(HumanCheckError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            tracing::debug!(bytes = token.len(), "human-check token too long; not sent");
            return Err(HumanCheckError::Refused(vec!["token-too-long".to_owned()]));
        }
        let remote_ip = remote_ip.map(|ip| ip.to_string());
        let mut form: Vec<(&str, &str)> =
            vec![("secret", self.secret.expose_secret()), ("response", token)];
        if let Some(ip) = &remote_ip {
            form.push(("remoteip", ip));
        }
        let unavailable = |why: String| {
            tracing::warn!(url = %self.url, error = %why, "the human check could not be verified");
            HumanCheckError::Unavailable(why)
        };
        // reqwest's errors name the URL and the failure, never the form body.
        let answer = self
            .http
            .post(self.url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| unavailable(format!("the provider did not answer: {e}")))?;
        let status = answer.status();
        if !status.is_success() {
            return Err(unavailable(format!("the provider answered HTTP {status}")));
        }
        let verdict: SiteVerify = answer.json().await.map_err(|e| {
            unavailable(format!("the provider's answer is not siteverify JSON: {e}"))
        })?;
        if verdict.success {
            return Ok(());
        }
        if let Some(code) = verdict
            .error_codes
            .iter()
            .find(|c| SERVER_SIDE_CODES.contains(&c.as_str()))
        {
            // Not the person's fault: most likely a wrong secret.
            tracing::error!(url = %self.url, codes = ?verdict.error_codes, "the human-check provider refused the gateway's request; check the secret");
            return Err(HumanCheckError::Unavailable(format!(
                "the provider refused the gateway's request ({code})"
            )));
        }
        tracing::debug!(codes = ?verdict.error_codes, "human check refused");
        Err(HumanCheckError::Refused(verdict.error_codes))
    }
}

impl From<HumanCheckError> for crate::SignupError {
    /// A missing or refused token is the person's to fix (INVALID_ARGUMENT on
    /// `human_check_token`); a provider that cannot answer is UNAVAILABLE. None says why in the
    /// provider's words, and none holds the token.
    fn from(e: HumanCheckError) -> Self {
        use crate::error::Violation;
        match e {
            HumanCheckError::Missing => crate::SignupError::Invalid(vec![Violation::with_reason(
                "human_check_token",
                "HUMAN_CHECK_REQUIRED",
                "complete the human check on the page before signing up",
            )]),
            HumanCheckError::Refused(_) => {
                crate::SignupError::Invalid(vec![Violation::with_reason(
                    "human_check_token",
                    "HUMAN_CHECK_FAILED",
                    "the human check did not pass or has expired; complete it again and resubmit",
                )])
            }
            HumanCheckError::Unavailable(_) => {
                crate::SignupError::Unavailable("the human check could not be verified".to_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_debug_hides_the_secret() {
        let secret = || SecretString::from("s3cret-key".to_owned());
        assert!(HumanCheck::new("not a url", secret()).is_err());
        assert!(HumanCheck::new("ftp://example.com/siteverify", secret()).is_err());
        assert!(
            HumanCheck::new(
                "https://example.com/siteverify",
                SecretString::from(" ".to_owned())
            )
            .is_err()
        );
        let check = HumanCheck::new(
            "https://challenges.cloudflare.com/turnstile/v0/siteverify",
            secret(),
        )
        .expect("valid");
        let shown = format!("{check:?}");
        assert!(!shown.contains("s3cret-key"), "{shown}");
        assert!(shown.contains("challenges.cloudflare.com"), "{shown}");
    }

    #[tokio::test]
    async fn an_empty_token_is_missing_without_asking() {
        // Nothing listens there: asking would be Unavailable.
        let check = HumanCheck::new(
            "http://127.0.0.1:9/siteverify",
            SecretString::from("k".to_owned()),
        )
        .expect("valid");
        assert_eq!(
            check.verify("  ", None).await,
            Err(HumanCheckError::Missing)
        );
        let long = "x".repeat(MAX_TOKEN_BYTES + 1);
        assert!(matches!(
            check.verify(&long, None).await,
            Err(HumanCheckError::Refused(_))
        ));
    }
}
