//! The gateway's errors and their one mapping to gRPC statuses.
//!
//! Every handler returns [`SignupError`]; `From<SignupError> for Status` is the only place that
//! picks codes, attaches `google.rpc` details and logs causes. No variant ever holds the password:
//! validation messages come from `tenancy`, which never echoes input, and vault errors carry
//! only the vault's status message, which never holds a secret value.

use std::net::SocketAddr;
use std::time::Duration;

use tenancy::DomainError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// One bad field of a request: the proto field name and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The proto field name, e.g. `email`.
    pub field: &'static str,
    /// What is wrong, in words a person can act on (never the value itself for secrets).
    pub description: String,
    /// A reason code more precise than `INVALID_<FIELD>` (e.g. `DISPOSABLE_EMAIL`), or empty.
    pub reason: &'static str,
}

impl Violation {
    /// A violation of `field`.
    pub fn new(field: &'static str, description: impl Into<String>) -> Self {
        Self {
            field,
            description: description.into(),
            reason: "",
        }
    }

    /// A violation of `field` with its own reason code.
    pub fn with_reason(
        field: &'static str,
        reason: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Self {
            reason,
            ..Self::new(field, description)
        }
    }
}

/// Which budget a rate-limited request ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateScope {
    /// Requests from one client address.
    Address,
    /// Signups for one email address.
    Email,
    /// Subdomain checks from one client address.
    Checks,
}

impl RateScope {
    /// The limit's code (`address`, `email`, `checks`).
    pub fn code(self) -> &'static str {
        match self {
            RateScope::Address => "address",
            RateScope::Email => "email",
            RateScope::Checks => "checks",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            RateScope::Address => "signups from your network address",
            RateScope::Email => "signups for this email address",
            RateScope::Checks => "subdomain checks from your network address",
        }
    }
}

/// Which cap an extra `WatchSignup` stream hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamScope {
    /// Streams from one client address.
    Address,
    /// Streams of the whole gateway.
    Total,
}

/// Everything the signup gateway and the operator API can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    /// One or more fields are invalid (INVALID_ARGUMENT with field violations).
    #[error("{}", describe(.0))]
    Invalid(Vec<Violation>),
    /// The subdomain is claimed by another tenant (ALREADY_EXISTS).
    #[error("subdomain {subdomain} is already taken{}", suggestion.as_ref().map(|s| format!("; try {s}")).unwrap_or_default())]
    SubdomainTaken {
        /// The taken name.
        subdomain: String,
        /// A free alternative, when one was found.
        suggestion: Option<String>,
    },
    /// Too many requests in the window (RESOURCE_EXHAUSTED with retry info).
    #[error("too many {}; try again in {} s", .scope.as_str(), .retry_after.as_secs().max(1))]
    RateLimited {
        /// Which budget ran out.
        scope: RateScope,
        /// When the next request will be accepted.
        retry_after: Duration,
    },
    /// Too many open `WatchSignup` streams (RESOURCE_EXHAUSTED).
    #[error("{}", match .scope {
        StreamScope::Address => format!("too many open progress streams from your network address (at most {limit}); close one and watch again"),
        StreamScope::Total => format!("the gateway has {limit} progress streams open, its maximum; watch again shortly"),
    })]
    TooManyStreams {
        /// Which cap.
        scope: StreamScope,
        /// Its size.
        limit: usize,
    },
    /// The idempotency key was already used with a different request (FAILED_PRECONDITION).
    #[error(
        "this idempotency key was already used for a different signup; send a new key for a new signup"
    )]
    IdempotencyMismatch,
    /// Another request with the same idempotency key has not finished (ABORTED).
    #[error("a signup with this idempotency key is still being processed; retry in a few seconds")]
    IdempotencyInProgress,
    /// The tenant does not exist (NOT_FOUND).
    #[error("tenant {0} not found; check the tenant id")]
    TenantNotFound(String),
    /// The lifecycle refused the command (code depends on the reason).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// No or wrong bearer token (UNAUTHENTICATED).
    #[error("missing or invalid bearer token; send `authorization: Bearer <token>`")]
    Unauthenticated,
    /// The subdomain claims are missing under a log that holds signups: nothing can be claimed
    /// safely until an operator restores them (FAILED_PRECONDITION).
    #[error("{0}")]
    ClaimsMissing(String),
    /// The email verification code was refused (see [`crate::verify::Refusal`]).
    #[error(transparent)]
    Verification(#[from] crate::verify::Refusal),
    /// A failed tenant cannot be retried: its owner signed up again and the new tenant holds
    /// the name (FAILED_PRECONDITION).
    #[error(
        "subdomain {subdomain} now belongs to tenant {holder} (the owner signed up again); delete this tenant instead of retrying it"
    )]
    SubdomainReassigned {
        /// The name.
        subdomain: String,
        /// The tenant holding it now.
        holder: String,
    },
    /// `OpenSite` refused (see [`crate::handoff::HandoffRefusal`]).
    #[error(transparent)]
    Handoff(#[from] crate::handoff::HandoffRefusal),
    /// A dependency (NATS, the vault) is unreachable; retrying later may work (UNAVAILABLE).
    #[error("{0}; try again shortly")]
    Unavailable(String),
    /// A bug or an impossible state (INTERNAL). The cause is logged, never sent.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

fn describe(violations: &[Violation]) -> String {
    let parts: Vec<&str> = violations.iter().map(|v| v.description.as_str()).collect();
    format!("invalid request: {}", parts.join("; "))
}

impl SignupError {
    /// The gRPC code this error is answered with.
    pub fn code(&self) -> Code {
        match self {
            SignupError::Invalid(_) => Code::InvalidArgument,
            SignupError::SubdomainTaken { .. } => Code::AlreadyExists,
            SignupError::RateLimited { .. } | SignupError::TooManyStreams { .. } => {
                Code::ResourceExhausted
            }
            SignupError::IdempotencyMismatch | SignupError::ClaimsMissing(_) => {
                Code::FailedPrecondition
            }
            SignupError::IdempotencyInProgress => Code::Aborted,
            SignupError::TenantNotFound(_) => Code::NotFound,
            SignupError::Domain(e) => match e {
                DomainError::NotFound => Code::NotFound,
                DomainError::AlreadyExists { .. } | DomainError::AlreadyInProgress { .. } => {
                    Code::AlreadyExists
                }
                DomainError::InvalidTransition { .. } | DomainError::SamePlan { .. } => {
                    Code::FailedPrecondition
                }
            },
            SignupError::Unauthenticated => Code::Unauthenticated,
            SignupError::Verification(r) => match r {
                crate::verify::Refusal::NotFound => Code::NotFound,
                crate::verify::Refusal::Mismatch { .. } => Code::InvalidArgument,
                _ => Code::FailedPrecondition,
            },
            SignupError::SubdomainReassigned { .. } => Code::FailedPrecondition,
            SignupError::Handoff(r) => match r {
                crate::handoff::HandoffRefusal::Invalid => Code::PermissionDenied,
                crate::handoff::HandoffRefusal::UsedUp => Code::ResourceExhausted,
                _ => Code::FailedPrecondition,
            },
            SignupError::Unavailable(_) => Code::Unavailable,
            SignupError::Unexpected(_) => Code::Internal,
        }
    }

    /// A single-field violation.
    pub fn invalid(field: &'static str, description: impl Into<String>) -> Self {
        SignupError::Invalid(vec![Violation::new(field, description)])
    }
}

/// The domain of every [`SignupError::reason`] (google.rpc.ErrorInfo's `domain`).
pub const ERROR_DOMAIN: &str = "signup.tenantry.dev";

impl SignupError {
    /// A stable, machine-readable reason code (SCREAMING_SNAKE_CASE), sent as
    /// `google.rpc.ErrorInfo.reason` on every error and used as the `reason` label of the
    /// refusal metrics (lower-cased): clients branch on this, never on the message.
    pub fn reason(&self) -> &'static str {
        match self {
            SignupError::Invalid(_) => "INVALID_REQUEST",
            SignupError::SubdomainTaken { .. } => "SUBDOMAIN_TAKEN",
            SignupError::RateLimited { .. } => "RATE_LIMITED",
            SignupError::TooManyStreams { .. } => "TOO_MANY_STREAMS",
            SignupError::IdempotencyMismatch => "IDEMPOTENCY_KEY_REUSED",
            SignupError::IdempotencyInProgress => "IDEMPOTENCY_KEY_IN_PROGRESS",
            SignupError::TenantNotFound(_) | SignupError::Domain(DomainError::NotFound) => {
                "TENANT_NOT_FOUND"
            }
            SignupError::Domain(DomainError::AlreadyExists { .. }) => "TENANT_EXISTS",
            SignupError::Domain(DomainError::AlreadyInProgress { .. }) => "COMMAND_IN_PROGRESS",
            SignupError::Domain(DomainError::InvalidTransition { .. }) => "INVALID_TRANSITION",
            SignupError::Domain(DomainError::SamePlan { .. }) => "SAME_PLAN",
            SignupError::Unauthenticated => "UNAUTHENTICATED",
            SignupError::ClaimsMissing(_) => "CLAIMS_MISSING",
            SignupError::Verification(r) => match r {
                crate::verify::Refusal::NotFound => "VERIFICATION_NOT_FOUND",
                crate::verify::Refusal::Expired => "CODE_EXPIRED",
                crate::verify::Refusal::Used => "CODE_ALREADY_USED",
                crate::verify::Refusal::TooManyAttempts => "TOO_MANY_ATTEMPTS",
                crate::verify::Refusal::Mismatch { .. } => "CODE_MISMATCH",
            },
            SignupError::SubdomainReassigned { .. } => "SUBDOMAIN_REASSIGNED",
            SignupError::Handoff(r) => match r {
                crate::handoff::HandoffRefusal::Invalid => "HANDOFF_TOKEN_INVALID",
                crate::handoff::HandoffRefusal::UsedUp => "HANDOFF_USED_UP",
                crate::handoff::HandoffRefusal::NotReady => "SITE_NOT_READY",
                crate::handoff::HandoffRefusal::Suspended => "SITE_SUSPENDED",
            },
            SignupError::Unavailable(_) => "DEPENDENCY_UNAVAILABLE",
            SignupError::Unexpected(_) => "INTERNAL",
        }
    }
}

/// The reason code of one invalid field: `INVALID_<FIELD>` (e.g. `INVALID_EMAIL`).
pub fn field_reason(field: &str) -> String {
    format!("INVALID_{}", field.to_ascii_uppercase())
}

impl From<SignupError> for Status {
    fn from(e: SignupError) -> Self {
        let code = e.code();
        let mut details = ErrorDetails::new();
        let mut metadata = std::collections::HashMap::new();
        match &e {
            SignupError::Invalid(violations) => {
                let fields: Vec<&str> = violations.iter().map(|v| v.field).collect();
                metadata.insert("fields".to_owned(), fields.join(","));
                details.set_bad_request(
                    violations
                        .iter()
                        .map(|v| FieldViolation {
                            reason: if v.reason.is_empty() {
                                field_reason(v.field)
                            } else {
                                v.reason.to_owned()
                            },
                            ..FieldViolation::new(v.field, v.description.clone())
                        })
                        .collect::<Vec<_>>(),
                );
            }
            SignupError::SubdomainTaken {
                subdomain,
                suggestion,
            } => {
                // The suggestion as data, so a page can offer it as a button.
                metadata.insert("subdomain".to_owned(), subdomain.clone());
                if let Some(s) = suggestion {
                    metadata.insert("suggestion".to_owned(), s.clone());
                }
                details.set_resource_info(
                    "subdomain",
                    subdomain.clone(),
                    "",
                    "the subdomain belongs to another tenant",
                );
                details.add_bad_request_violation("subdomain", e.to_string());
            }
            SignupError::RateLimited { scope, retry_after } => {
                metadata.insert("limit".to_owned(), scope.code().to_owned());
                metadata.insert(
                    "retry_after_seconds".to_owned(),
                    retry_after.as_secs().max(1).to_string(),
                );
                details.set_retry_info(Some(*retry_after));
            }
            SignupError::Verification(crate::verify::Refusal::Mismatch { left }) => {
                metadata.insert("attempts_left".to_owned(), left.to_string());
                details.add_bad_request_violation("code", e.to_string());
            }
            SignupError::TooManyStreams { limit, .. } => {
                metadata.insert("limit".to_owned(), limit.to_string());
            }
            SignupError::IdempotencyMismatch => {
                details.add_precondition_failure_violation(
                    "IDEMPOTENCY_KEY",
                    "idempotency_key",
                    "the key was already used for a different signup",
                );
            }
            SignupError::TenantNotFound(tenant) => {
                details.set_resource_info("tenant", tenant.clone(), "", "no such tenant");
            }
            SignupError::Domain(DomainError::InvalidTransition { from, .. }) => {
                details.add_precondition_failure_violation(
                    "TENANT_STATUS",
                    from.to_string(),
                    e.to_string(),
                );
            }
            SignupError::ClaimsMissing(why) => {
                details.add_precondition_failure_violation("CLAIMS", "subdomains", why.clone());
            }
            SignupError::Unexpected(cause) => {
                // The full chain goes to the log once, here; the caller gets no internals.
                tracing::error!(error = format!("{cause:#}"), "request failed unexpectedly");
            }
            SignupError::Unavailable(_) => {
                tracing::warn!(error = %e, "dependency unavailable");
            }
            _ => tracing::debug!(code = ?code, error = %e, "request refused"),
        }
        details.set_error_info(e.reason(), ERROR_DOMAIN, metadata);
        let message = match &e {
            SignupError::Unexpected(_) => "internal error; it has been logged".to_owned(),
            other => other.to_string(),
        };
        Status::with_error_details(code, message, details)
    }
}

/// Errors that stop the service from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The gRPC listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration is inconsistent; the text says which setting.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// NATS/JetStream could not be reached or set up.
    #[error("event store: {0}")]
    EventStore(#[from] eventstore::StoreError),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}
