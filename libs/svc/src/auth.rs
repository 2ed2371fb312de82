//! Bearer-token authentication for operator gRPC APIs (TenantAdmin, ProjectionAdmin, …).

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

/// Checks `authorization: Bearer <token>` against a set of tokens. Tokens are kept and compared
/// as SHA-256 digests in constant time, so neither their content nor their length leaks through
/// timing; the scheme is case-insensitive (RFC 7235).
#[derive(Clone)]
pub struct TokenAuth {
    digests: Arc<Vec<[u8; 32]>>,
}

impl std::fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuth")
            .field("tokens", &self.digests.len())
            .finish()
    }
}

/// The token presented in `authorization`, if it is a bearer token.
pub fn bearer_token<T>(request: &Request<T>) -> Option<&str> {
    let value = request.metadata().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

impl TokenAuth {
    /// Accepts any of `tokens` (empty ones are ignored); with none, every call is refused.
    pub fn new(tokens: &[SecretString]) -> Self {
        Self {
            digests: Arc::new(
                tokens
                    .iter()
                    .filter(|t| !t.expose_secret().is_empty())
                    .map(|t| Sha256::digest(t.expose_secret().as_bytes()).into())
                    .collect(),
            ),
        }
    }

    /// Whether any token is configured.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `request` carries one of the tokens.
    pub fn accepts<T>(&self, request: &Request<T>) -> bool {
        let Some(presented) = bearer_token(request).map(|t| Sha256::digest(t.as_bytes())) else {
            return false;
        };
        // Fold over every token so the time taken does not say which one matched.
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |acc, d| {
                acc | d.ct_eq(presented.as_slice())
            })
            .into()
    }

    /// A tonic interceptor: `UNAUTHENTICATED` unless the request carries one of the tokens.
    #[allow(clippy::result_large_err)] // the interceptor signature is tonic's
    pub fn check(&self, request: Request<()>) -> Result<Request<()>, Status> {
        if self.accepts(&request) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "a valid operator token is required: send `authorization: Bearer <token>` \
                 (tenantctl: --admin-token or TENANTRY_ADMIN_TOKEN)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> Request<()> {
        let mut r = Request::new(());
        r.metadata_mut()
            .insert("authorization", value.parse().unwrap());
        r
    }

    #[test]
    fn accepts_only_configured_tokens_with_any_scheme_case() {
        let auth = TokenAuth::new(&[SecretString::from("s3cret"), SecretString::from("")]);
        assert!(auth.accepts(&with_auth("Bearer s3cret")));
        assert!(auth.accepts(&with_auth("bearer s3cret")));
        assert!(auth.accepts(&with_auth("BEARER  s3cret ")));
        assert!(!auth.accepts(&with_auth("Bearer other")));
        assert!(!auth.accepts(&with_auth("Basic s3cret")));
        assert!(!auth.accepts(&with_auth("Bearer ")));
        assert!(!auth.accepts(&Request::new(())));
        assert!(TokenAuth::new(&[SecretString::from("")]).is_empty());
        let err = auth.check(with_auth("Bearer nope")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(!err.message().contains("nope"));
    }
}
