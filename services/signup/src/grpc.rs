//! `SignupService`: `Signup`, `WatchSignup`, `CheckSubdomain`.
//!
//! Signup order: address budget → validation → human check (when configured) → idempotency
//! record → email budget → subdomain claim → one-time vault secret for the password →
//! TenantRequested. Anything failing after the claim releases it, and the idempotency record of
//! a failed attempt is removed, so the person can simply try again.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use eventstore::{EventContext, EventStore, NewEvent, StoreError};
use futures::StreamExt;
use proto::v1::event::Body;
use proto::v1::signup_service_server::SignupService;
use proto::v1::{
    CheckSubdomainRequest, CheckSubdomainResponse, ListPlansRequest, ListPlansResponse,
    OpenSiteRequest, OpenSiteResponse, SignupRequest, SignupResponse, TenantRequested,
    TenantStatus, VerifyEmailRequest, WatchSignupRequest,
};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest, Sha256};
use svc::Shutdown;
use tenancy::{Subdomain, TenantId};
use tonic::{Request, Response, Status};
use uuid::Uuid;
use vault_client::VaultClient;

use crate::claims::{Claim, Claims};
use crate::error::{RateScope, SignupError, Violation};
use crate::handoff::Handoffs;
use crate::human_check::HumanCheck;
use crate::idempotency::{Answer, Begin, Idempotency};
use crate::mail::Mailer;
use crate::metrics::SignupMetrics;
use crate::ratelimit::{RateLimiter, SuccessBudget};
use crate::streams::StreamSlots;
use crate::validate::{self, Catalog, SignupInput};
use crate::verify::{self, Verifications};
use crate::watch::{self, ProgressStream};

/// The vault secret kind of the owner's password (the vault ACL grants signup exactly this).
pub const PASSWORD_KIND: &str = "owner_password";
/// Vault kind of the owner's password copy for the identity service.
pub const SSO_PASSWORD_KIND: &str = "sso_owner_password";

/// How many alternatives are tried when suggesting a free subdomain.
const ALTERNATIVES: usize = 10;

/// Settings of the signup path that come from configuration.
#[derive(Debug, Clone)]
pub struct SignupSettings {
    /// Offered plans and regions.
    pub catalog: Catalog,
    /// How long the owner's one-time password secret lives in the vault.
    pub password_ttl: Duration,
    /// Also store a one-time copy of the password for the identity service.
    pub sso: bool,
    /// Take the client address from the first `x-forwarded-for` entry (behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Longest a signup works before answering UNAVAILABLE.
    pub deadline: Duration,
    /// Where accepted signups are counted (fresh ones only: a replay is the same signup).
    pub metrics: SignupMetrics,
    /// What `ListPlans` answers: the catalogue's plans, or the configured ids alone.
    pub plan_views: ListPlansResponse,
}

/// The budgets that keep one client from starving the others.
#[derive(Debug)]
pub struct Limits {
    /// Signup attempts per client address.
    pub per_address: RateLimiter,
    /// New signups per email address.
    pub per_email: RateLimiter,
    /// Successful signups per email address per hour.
    pub per_email_hour: SuccessBudget,
    /// `CheckSubdomain` calls per client address (each costs ~20 KV reads).
    pub checks: RateLimiter,
    /// Open `WatchSignup` streams.
    pub streams: StreamSlots,
}

/// The signup gateway's shared state. One per process; handlers borrow it.
pub struct Gateway {
    store: EventStore,
    claims: Claims,
    idempotency: Idempotency,
    vault: VaultClient,
    per_address: RateLimiter,
    per_email: RateLimiter,
    per_email_hour: SuccessBudget,
    checks: RateLimiter,
    streams: StreamSlots,
    settings: SignupSettings,
    verification: Option<Verification>,
    human_check: Option<HumanCheck>,
    handoffs: Handoffs,
    shutdown: Shutdown,
}

/// Email verification: where codes wait, and how they are mailed.
pub struct Verification {
    /// The waiting signups.
    pub codes: Verifications,
    /// The SMTP sender.
    pub mailer: Mailer,
}

impl Gateway {
    /// Assembles the gateway from its parts.
    #[allow(clippy::too_many_arguments)] // one call site, each part named there
    pub fn new(
        store: EventStore,
        claims: Claims,
        idempotency: Idempotency,
        vault: VaultClient,
        limits: Limits,
        settings: SignupSettings,
        verification: Option<Verification>,
        human_check: Option<HumanCheck>,
        handoffs: Handoffs,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            handoffs,
            store,
            claims,
            idempotency,
            vault,
            per_address: limits.per_address,
            per_email: limits.per_email,
            per_email_hour: limits.per_email_hour,
            checks: limits.checks,
            streams: limits.streams,
            settings,
            verification,
            human_check,
            shutdown,
        }
    }

    /// Spends one attempt of the client address's budget (every Signup and VerifyEmail,
    /// valid or not: spraying bad requests or guessing codes is the abuse it is for).
    fn spend_address(&self, address: Option<IpAddr>) -> Result<(), SignupError> {
        let key = address.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        self.per_address
            .check(&key)
            .map_err(|retry_after| SignupError::RateLimited {
                scope: RateScope::Address,
                retry_after,
            })
    }

    /// SUBDOMAIN_TAKEN for `subdomain`, with a free alternative when one is found.
    async fn taken(&self, subdomain: Subdomain) -> SignupError {
        let suggestion = self
            .claims
            .free_alternative(&subdomain, ALTERNATIVES)
            .await
            .map(Subdomain::into_string);
        SignupError::SubdomainTaken {
            subdomain: subdomain.into_string(),
            suggestion,
        }
    }

    /// The whole signup, for a client at `address`.
    pub async fn signup(
        &self,
        address: Option<IpAddr>,
        req: SignupRequest,
    ) -> Result<SignupResponse, SignupError> {
        // Every attempt counts against the address, valid or not: spraying bad requests is the
        // abuse this budget is for.
        self.spend_address(address)?;
        let input = validate::signup(&req, &self.settings.catalog).map_err(SignupError::Invalid)?;
        if crate::disposable::is_disposable(input.email.as_str()) {
            return Err(SignupError::Invalid(vec![Violation::with_reason(
                "email",
                "DISPOSABLE_EMAIL",
                "this address is at a disposable mail service; use one you will keep (the site's mail goes there)",
            )]));
        }
        // A bot costs one provider call, not an idempotency record, a budget or a claim.
        if let Some(check) = &self.human_check {
            check.verify(&req.human_check_token, address).await?;
        }
        // The request (and its password) is not needed past this point.
        drop(req);
        // While NATS is away a request would wait for the reconnect: answer now instead, so the
        // client retries (with its idempotency key) once it is back.
        if !self.store.is_connected() {
            return Err(SignupError::Unavailable(
                "the event store (NATS) is not reachable right now; retry shortly with the same idempotency key".to_owned(),
            ));
        }
        match tokio::time::timeout(self.settings.deadline, self.accept(input)).await {
            Ok(r) => r,
            Err(_) => Err(SignupError::Unavailable(format!(
                "the signup did not finish within {:?}; retry with the same idempotency key",
                self.settings.deadline
            ))),
        }
    }

    /// Idempotency record → email budget → the tenant, for a validated request.
    async fn accept(&self, input: SignupInput) -> Result<SignupResponse, SignupError> {
        let fingerprint = input.fingerprint();
        let (tenant, record) = match &input.idempotency_key {
            None => (TenantId::new(), None),
            Some(key) => match self
                .idempotency
                .begin(key, &fingerprint, TenantId::new())
                .await?
            {
                Begin::Replay(answer) => return Ok(response(answer)),
                Begin::Fresh {
                    key,
                    revision,
                    tenant_id,
                } => (tenant_id, Some((key, revision))),
            },
        };
        // Replays of an idempotency key are not new signups, so only fresh work spends the
        // email's budget.
        let email_key = input.email.key();
        let budget = self
            .per_email
            .check(&email_key)
            .and_then(|()| self.per_email_hour.check(&email_key));
        let outcome = match (budget, &self.verification) {
            (Ok(()), None) => self.create_tenant(input, tenant).await,
            (Ok(()), Some(v)) => self.start_verification(v, input, tenant).await,
            (Err(retry_after), _) => Err(Failure::Clean(SignupError::RateLimited {
                scope: RateScope::Email,
                retry_after,
            })),
        };
        if outcome.is_ok() {
            self.per_email_hour.record(&email_key);
        }
        // Only the fresh answer carries a handoff token: a replay proves no more than knowing
        // the idempotency key and the request's public fields, which is not enough to be let
        // into the owner's site (that caller logs in with the password instead).
        match (outcome, record) {
            (Ok(answer), Some((key, revision))) => {
                self.idempotency
                    .complete(&key, revision, &tenant, &fingerprint, &answer)
                    .await;
                Ok(self.with_handoff(response(answer)).await)
            }
            (Ok(answer), None) => Ok(self.with_handoff(response(answer)).await),
            (Err(Failure::Clean(e)), Some((key, revision))) => {
                self.idempotency.abandon(&key, revision).await;
                Err(e)
            }
            // Whether the tenant exists is unknown: keep the pending record, so a retry with
            // the same key takes it over (after it goes stale) as the same tenant.
            (Err(Failure::Uncertain(e) | Failure::Clean(e)), _) => Err(e),
        }
    }

    /// Claim → vault → TenantRequested, for a validated request.
    async fn create_tenant(&self, input: SignupInput, tenant: TenantId) -> Result<Answer, Failure> {
        let revision = match self
            .claims
            .claim(&input.subdomain, &tenant, input.email.as_str())
            .await?
        {
            Claim::Won { revision } => revision,
            Claim::Taken => {
                return Err(Failure::Clean(self.taken(input.subdomain).await));
            }
        };
        let subdomain = input.subdomain.clone();
        let plan = input.plan.clone();
        match self.record_tenant(input, &tenant).await {
            Ok(answer) => {
                self.settings.metrics.accepted(plan.as_str());
                Ok(answer)
            }
            Err(Failure::Clean(e)) => {
                self.claims.release(&subdomain, &tenant, revision).await;
                Err(Failure::Clean(e))
            }
            Err(uncertain) => Err(uncertain),
        }
    }

    /// Verification first: the name must be free now (it is claimed once the code comes
    /// back), the password goes to the vault, the request waits with a code that is mailed.
    async fn start_verification(
        &self,
        verification: &Verification,
        input: SignupInput,
        tenant: TenantId,
    ) -> Result<Answer, Failure> {
        if !self
            .claims
            .is_free_for(&input.subdomain, input.email.as_str())
            .await?
        {
            return Err(Failure::Clean(self.taken(input.subdomain).await));
        }
        let email = input.email.as_str().to_owned();
        let requested = self.requested(input, &tenant).await?;
        let subdomain = requested.subdomain.clone();
        let (id, code) = verification.codes.create(&requested).await?;
        if let Err(e) = verification
            .mailer
            .send_code(&email, &code, verification.codes.ttl())
            .await
        {
            verification.codes.discard(&id).await;
            tracing::warn!(tenant = %tenant, error = %e, "could not send the verification mail");
            return Err(Failure::Clean(SignupError::Unavailable(
                "the verification mail could not be sent".to_owned(),
            )));
        }
        tracing::info!(tenant = %tenant, subdomain, "verification code sent");
        let tenant_str = tenant.to_string();
        Ok(Answer {
            tenant_id: tenant_str.clone(),
            subdomain,
            status: TenantStatus::Unspecified as i32,
            correlation_id: tenant_str,
            verification_id: id,
            verification_sent_to: verify::mask(&email),
        })
    }

    /// `VerifyEmail`: the code that was mailed → claim → TenantRequested.
    pub async fn verify_email(
        &self,
        address: Option<IpAddr>,
        req: VerifyEmailRequest,
    ) -> Result<SignupResponse, SignupError> {
        self.spend_address(address)?;
        let mut violations = Vec::new();
        let id = req.verification_id.trim();
        if Uuid::parse_str(id).is_err() {
            violations.push(Violation::new(
                "verification_id",
                "the verification id is the one Signup answered",
            ));
        }
        let code = req.code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            violations.push(Violation::new(
                "code",
                "the code is the six digits from the mail",
            ));
        }
        if !violations.is_empty() {
            return Err(SignupError::Invalid(violations));
        }
        let Some(verification) = &self.verification else {
            return Err(SignupError::Verification(verify::Refusal::NotFound));
        };
        let (requested, again) = match verification.codes.confirm(id, code).await? {
            Ok(verify::Confirmed::Fresh(r)) => (r, false),
            Ok(verify::Confirmed::Again(r)) => (r, true),
            Err(refusal) => return Err(SignupError::Verification(refusal)),
        };
        let tenant = TenantId::parse(&requested.tenant_id).map_err(|e| {
            SignupError::Unexpected(anyhow::anyhow!("verification holds tenant id {e}"))
        })?;
        let subject = self
            .store
            .subject(EventContext::Signup, &requested.tenant_id);
        if again && self.already_requested(&subject, &tenant).await? {
            return Err(SignupError::Verification(verify::Refusal::Used));
        }
        let subdomain = Subdomain::parse(&requested.subdomain).map_err(|e| {
            SignupError::Unexpected(anyhow::anyhow!("verification holds subdomain {e}"))
        })?;
        let plan = requested.plan.clone();
        let revision = match self
            .claims
            .claim(&subdomain, &tenant, &requested.owner_email)
            .await?
        {
            Claim::Won { revision } => revision,
            Claim::Taken => {
                return Err(self.taken(subdomain).await);
            }
        };
        match self.append_requested(requested, &tenant).await {
            Ok(answer) => {
                self.settings.metrics.accepted(&plan);
                Ok(self.with_handoff(response(answer)).await)
            }
            Err(Failure::Clean(e)) => {
                self.claims.release(&subdomain, &tenant, revision).await;
                Err(e)
            }
            Err(Failure::Uncertain(e)) => Err(e),
        }
    }

    /// A recorded signup's answer gets a fresh handoff token (one waiting for its email does
    /// not: nothing will be built until it is confirmed).
    async fn with_handoff(&self, mut response: SignupResponse) -> SignupResponse {
        if !response.verification_required
            && response.handoff_token.is_empty()
            && let Some(token) = self.handoffs.issue(&response.tenant_id).await
        {
            response.handoff_token = token.expose_secret().to_owned();
        }
        response
    }

    /// `OpenSite`: a one-time logged-in link to the finished site, for the handoff token's
    /// holder.
    pub async fn open_site(
        &self,
        address: Option<IpAddr>,
        req: OpenSiteRequest,
    ) -> Result<OpenSiteResponse, SignupError> {
        self.spend_address(address)?;
        let mut violations = Vec::new();
        let tenant = TenantId::parse(req.tenant_id.trim());
        if tenant.is_err() {
            violations.push(Violation::new(
                "tenant_id",
                "the tenant id is the one Signup answered",
            ));
        }
        let token = req.handoff_token.trim();
        if token.len() != 43
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            violations.push(Violation::new(
                "handoff_token",
                "the handoff token is the one Signup or VerifyEmail answered (43 characters)",
            ));
        }
        match tenant {
            Ok(tenant) if violations.is_empty() => {
                self.handoffs.open_site(&tenant.to_string(), token).await
            }
            _ => Err(SignupError::Invalid(violations)),
        }
    }

    /// Stores the password in the vault and appends TenantRequested with its reference.
    async fn record_tenant(
        &self,
        input: SignupInput,
        tenant: &TenantId,
    ) -> Result<Answer, Failure> {
        let requested = self.requested(input, tenant).await?;
        self.append_requested(requested, tenant).await
    }

    /// The password as one-time vault secrets, and the TenantRequested that names them.
    async fn requested(
        &self,
        input: SignupInput,
        tenant: &TenantId,
    ) -> Result<TenantRequested, Failure> {
        let tenant_str = tenant.to_string();
        let secret: SecretString = input.password.into_secret();
        let stored = self
            .vault
            .with_correlation_id(&tenant_str)
            .put_one_time_string(
                &tenant_str,
                PASSWORD_KIND,
                &secret,
                self.settings.password_ttl,
                "owner password chosen at signup, for the provisioner",
            )
            .await
            .map_err(|e| {
                // Only a vault that is down is worth retrying; anything else (a wrong token, an
                // ACL gap) is our misconfiguration, logged once at the edge, not the caller's.
                Failure::Clean(if e.code() == Some(tonic::Code::Unavailable) {
                    SignupError::Unavailable("the credential vault is not reachable".to_owned())
                } else {
                    SignupError::Unexpected(anyhow::anyhow!(
                        "vault refused to store the password: {e}"
                    ))
                })
            })?;
        // The identity service's own copy: each consumer takes only its copy (a different
        // kind), and each copy is gone once its consumer has used it, so no password is kept
        // once both the site and Authentik have it.
        let sso_stored = if self.settings.sso {
            Some(
                self.vault
                    .with_correlation_id(&tenant_str)
                    .put_one_time_string(
                        &tenant_str,
                        SSO_PASSWORD_KIND,
                        &secret,
                        self.settings.password_ttl,
                        "owner password chosen at signup, for the identity service (Authentik)",
                    )
                    .await
                    .map_err(|e| {
                        Failure::Clean(if e.code() == Some(tonic::Code::Unavailable) {
                            SignupError::Unavailable(
                                "the credential vault is not reachable".to_owned(),
                            )
                        } else {
                            SignupError::Unexpected(anyhow::anyhow!(
                                "vault refused to store the password copy for single sign-on: {e}"
                            ))
                        })
                    })?,
            )
        } else {
            None
        };
        drop(secret);
        // The vault's one-time references look like vault://tenant/<id>/one-time/<uuid>; make
        // sure it names our tenant before it goes into the permanent record.
        let prefix = format!("vault://tenant/{tenant_str}/");
        if !stored.reference.starts_with(&prefix)
            || sso_stored
                .as_ref()
                .is_some_and(|s| !s.reference.starts_with(&prefix))
        {
            return Err(Failure::Clean(SignupError::Unexpected(anyhow::anyhow!(
                "the vault answered an unexpected reference shape for tenant {tenant_str}"
            ))));
        }
        Ok(TenantRequested {
            tenant_id: tenant_str.clone(),
            subdomain: input.subdomain.to_string(),
            organisation: input.organisation.into_string(),
            owner_email: input.email.into_string(),
            owner_name: input.full_name.into_string(),
            plan: input.plan.into_string(),
            region: input.region.into_string(),
            password_ref: stored.reference,
            idempotency_key: input.idempotency_key.unwrap_or_default(),
            sso_password_ref: sso_stored.map(|s| s.reference).unwrap_or_default(),
        })
    }

    /// Appends TenantRequested (idempotent: an earlier attempt's own event counts as done).
    async fn append_requested(
        &self,
        requested: TenantRequested,
        tenant: &TenantId,
    ) -> Result<Answer, Failure> {
        let tenant_str = tenant.to_string();
        let subdomain = requested.subdomain.clone();
        let event = NewEvent::new(Body::TenantRequested(requested))
            .with_id(requested_event_id(tenant))
            .correlated(tenant_str.clone());
        let subject = self.store.subject(EventContext::Signup, &tenant_str);
        let answer = Answer {
            tenant_id: tenant_str.clone(),
            subdomain,
            status: TenantStatus::Requested as i32,
            correlation_id: tenant_str,
            verification_id: String::new(),
            verification_sent_to: String::new(),
        };
        match self.store.append(&subject, 0, vec![event]).await {
            Ok(_) => {
                tracing::info!(tenant = %tenant, subdomain = %answer.subdomain, "tenant requested");
                Ok(answer)
            }
            // The subject already has an event: ours from an earlier attempt of the same
            // (idempotent) signup, or a bug.
            Err(StoreError::Conflict { .. }) => {
                match self.already_requested(&subject, tenant).await {
                    Ok(true) => Ok(answer),
                    Ok(false) => Err(Failure::Clean(SignupError::Unexpected(anyhow::anyhow!(
                        "signup subject of new tenant {tenant} already holds another event"
                    )))),
                    Err(e) => Err(Failure::Uncertain(e)),
                }
            }
            Err(e) if e.is_transient() => {
                // The publish may have been stored even though we saw no ack.
                match self.already_requested(&subject, tenant).await {
                    Ok(true) => Ok(answer),
                    Ok(false) => Err(Failure::Clean(SignupError::Unavailable(format!(
                        "cannot record the signup ({e})"
                    )))),
                    Err(_) => Err(Failure::Uncertain(SignupError::Unavailable(format!(
                        "cannot record the signup ({e})"
                    )))),
                }
            }
            Err(e) => Err(Failure::Clean(SignupError::Unexpected(anyhow::Error::new(
                e,
            )))),
        }
    }

    /// Whether `subject` starts with this tenant's TenantRequested.
    async fn already_requested(
        &self,
        subject: &str,
        tenant: &TenantId,
    ) -> Result<bool, SignupError> {
        let events = self
            .store
            .load(subject)
            .await
            .map_err(|e| SignupError::Unavailable(e.to_string()))?;
        Ok(events
            .first()
            .is_some_and(|e| e.event_id == requested_event_id(tenant)))
    }

    /// `CheckSubdomain`: validity, availability and a free suggestion.
    pub async fn check_subdomain(
        &self,
        address: Option<IpAddr>,
        req: CheckSubdomainRequest,
    ) -> Result<CheckSubdomainResponse, SignupError> {
        let address_key = address.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        self.checks
            .check(&address_key)
            .map_err(|retry_after| SignupError::RateLimited {
                scope: RateScope::Checks,
                retry_after,
            })?;
        let parsed = if req.subdomain.trim().is_empty() {
            Err("subdomain must not be empty".to_owned())
        } else {
            validate::subdomain(&req.subdomain).map_err(|v| v.description)
        };
        match parsed {
            Ok(sub) => {
                if self.claims.is_free(&sub).await? {
                    return Ok(CheckSubdomainResponse {
                        valid: true,
                        available: true,
                        ..Default::default()
                    });
                }
                let suggestion = self.claims.free_alternative(&sub, ALTERNATIVES).await;
                Ok(CheckSubdomainResponse {
                    valid: true,
                    available: false,
                    reason: format!("{sub} is already taken"),
                    suggestion: suggestion.map(Subdomain::into_string).unwrap_or_default(),
                })
            }
            Err(reason) => {
                // Suggest from what was typed ("ACME" → "acme"), else from the organisation.
                let typed = req
                    .subdomain
                    .chars()
                    .take(validate::MAX_RAW_FIELD_BYTES)
                    .collect::<String>();
                let org = req
                    .organisation
                    .chars()
                    .take(validate::MAX_RAW_FIELD_BYTES)
                    .collect::<String>();
                let mut suggestion = String::new();
                for candidate in [typed, org]
                    .iter()
                    .filter_map(|raw| tenancy::suggest_subdomain(raw))
                {
                    if self.claims.is_free(&candidate).await? {
                        suggestion = candidate.into_string();
                        break;
                    }
                    if let Some(alt) = self.claims.free_alternative(&candidate, ALTERNATIVES).await
                    {
                        suggestion = alt.into_string();
                        break;
                    }
                }
                Ok(CheckSubdomainResponse {
                    valid: false,
                    available: false,
                    reason,
                    suggestion,
                })
            }
        }
    }

    /// The client's address: the TCP peer, or the first `x-forwarded-for` hop when trusted.
    fn client_address<T>(&self, request: &Request<T>) -> Option<IpAddr> {
        if self.settings.trust_forwarded_for
            && let Some(ip) = request
                .metadata()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|first| first.trim().parse::<IpAddr>().ok())
        {
            return Some(ip);
        }
        request.remote_addr().map(|a| a.ip())
    }
}

/// Why a signup step failed, and whether its effects are known to be absent.
enum Failure {
    /// Nothing was recorded: the claim and idempotency record may be released.
    Clean(SignupError),
    /// The tenant may or may not have been recorded: keep the claim and the pending record.
    Uncertain(SignupError),
}

impl From<SignupError> for Failure {
    fn from(e: SignupError) -> Self {
        Failure::Clean(e)
    }
}

/// TenantRequested's event id: derived from the tenant id, so a retried or resumed append is
/// de-duplicated by JetStream and recognisable on reload.
pub fn requested_event_id(tenant: &TenantId) -> Uuid {
    let digest = Sha256::digest(format!("tenantry:signup:TenantRequested:{tenant}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn response(answer: Answer) -> SignupResponse {
    SignupResponse {
        tenant_id: answer.tenant_id,
        subdomain: answer.subdomain,
        site: String::new(),
        status: answer.status,
        correlation_id: answer.correlation_id,
        verification_required: !answer.verification_id.is_empty(),
        verification_id: answer.verification_id,
        verification_sent_to: answer.verification_sent_to,
        handoff_token: String::new(),
    }
}

/// The tonic service over a shared [`Gateway`].
#[derive(Clone)]
pub struct SignupApi {
    gateway: Arc<Gateway>,
    metrics: SignupMetrics,
}

impl SignupApi {
    /// Serves `gateway`, counting outcomes in `metrics`.
    pub fn new(gateway: Arc<Gateway>, metrics: SignupMetrics) -> Self {
        Self { gateway, metrics }
    }
}

#[tonic::async_trait]
impl SignupService for SignupApi {
    async fn signup(
        &self,
        request: Request<SignupRequest>,
    ) -> Result<Response<SignupResponse>, Status> {
        let address = self.gateway.client_address(&request);
        match self.gateway.signup(address, request.into_inner()).await {
            Ok(answer) => Ok(Response::new(answer)),
            Err(e) => {
                self.metrics.rejected(&e);
                Err(Status::from(e))
            }
        }
    }

    type WatchSignupStream = ProgressStream;

    async fn watch_signup(
        &self,
        request: Request<WatchSignupRequest>,
    ) -> Result<Response<Self::WatchSignupStream>, Status> {
        let address = self.gateway.client_address(&request);
        let req = request.into_inner();
        let tenant = TenantId::parse(&req.tenant_id).map_err(|e| {
            Status::from(SignupError::invalid("tenant_id", format!("tenant id {e}")))
        })?;
        // Taken before the consumer exists, so a refused stream costs the server nothing.
        let slot = self.gateway.streams.acquire(address).inspect_err(|e| {
            self.metrics.limited(e);
        })?;
        let updates = watch::watch(
            &self.gateway.store,
            &tenant,
            self.gateway.settings.sso,
            self.gateway.shutdown.clone(),
        )
        .await
        .map_err(Status::from)?;
        // The slot lives as long as the stream: the client hanging up frees it.
        let updates: ProgressStream = Box::pin(updates.map(move |u| {
            let _held = &slot;
            u
        }));
        Ok(Response::new(updates))
    }

    async fn verify_email(
        &self,
        request: Request<VerifyEmailRequest>,
    ) -> Result<Response<SignupResponse>, Status> {
        let address = self.gateway.client_address(&request);
        self.gateway
            .verify_email(address, request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| {
                self.metrics.limited(&e);
                Status::from(e)
            })
    }

    async fn list_plans(
        &self,
        _: Request<ListPlansRequest>,
    ) -> Result<Response<ListPlansResponse>, Status> {
        Ok(Response::new(self.gateway.settings.plan_views.clone()))
    }

    async fn open_site(
        &self,
        request: Request<OpenSiteRequest>,
    ) -> Result<Response<OpenSiteResponse>, Status> {
        let address = self.gateway.client_address(&request);
        self.gateway
            .open_site(address, request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| {
                self.metrics.limited(&e);
                Status::from(e)
            })
    }

    async fn check_subdomain(
        &self,
        request: Request<CheckSubdomainRequest>,
    ) -> Result<Response<CheckSubdomainResponse>, Status> {
        let address = self.gateway.client_address(&request);
        self.gateway
            .check_subdomain(address, request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| {
                self.metrics.limited(&e);
                Status::from(e)
            })
    }
}
