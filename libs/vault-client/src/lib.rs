//! The typed async client of the Tenantry vault (`tenantry.v1.Vault`).
//!
//! Its own crate so that the services calling the vault (signup, provisioner, identity, billing,
//! tenantctl) compile only proto + tonic + secrecy, never the vault's store or crypto.
//!
//! Values go in and come out as `secrecy` types; the bearer token is sent as sensitive metadata;
//! calls that fail with `UNAVAILABLE` (vault restarting, database blip) or whose attempt ran out
//! of its deadline are retried with exponential back-off (`backon`), within an overall budget:
//! a hung vault yields `DEADLINE_EXCEEDED`, never a hang. Every other code (e.g.
//! `INVALID_ARGUMENT`, `NOT_FOUND`) is an answer and returned at once.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use chrono::{DateTime, Utc};
use proto::v1::vault_client::VaultClient as Grpc;
use proto::v1::{
    AuditEntry, AuditRequest, GetSecretRequest, MoveOneTimeRequest, PutOneTimeRequest,
    PutSecretRequest, RevokeSecretRequest, RotateRequest, ShredTenantRequest, TakeOneTimeRequest,
};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use tracing::Instrument as _;

use proto::metadata::CORRELATION_ID as CORRELATION_HEADER;

/// The reason the vault gives when a tenant's keys were shredded (its secrets are gone for good).
pub const REASON_TENANT_SHREDDED: &str = "TENANT_SHREDDED";

/// Client errors. A `Status` message from the vault never contains a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint URL is not valid.
    #[error("invalid vault endpoint: {0}")]
    Endpoint(String),
    /// The token cannot be sent as a header (not printable ASCII).
    #[error("the vault token is not printable ASCII")]
    Token,
    /// The vault answered with an error status (after retries, for `UNAVAILABLE`).
    #[error("vault {operation} failed: {status_code:?}: {message}", status_code = .status.code(), message = .status.message())]
    Status {
        /// The operation.
        operation: &'static str,
        /// The status.
        status: Status,
    },
    /// The value read back is not UTF-8 (from the `*_string` helpers).
    #[error("the secret is not valid UTF-8")]
    NotUtf8,
}

impl ClientError {
    /// The gRPC code, if the vault answered.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Status { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    /// Whether the vault may not have answered at all — no status, or a lost connection
    /// (UNKNOWN from the transport), a cancelled, aborted, exhausted or timed-out call: retry it
    /// like an outage, never take it as the vault's answer.
    pub fn is_outage(&self) -> bool {
        matches!(
            self.code(),
            Some(
                Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::ResourceExhausted
                    | Code::Aborted
                    | Code::Cancelled
                    | Code::Unknown,
            ) | None
        )
    }

    /// Whether the vault answered NOT_FOUND.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(Code::NotFound)
    }

    /// Whether the secret is gone: never there, revoked, or its tenant crypto-shredded.
    pub fn is_gone(&self) -> bool {
        self.is_not_found() || self.reason().as_deref() == Some(REASON_TENANT_SHREDDED)
    }

    /// The vault's machine-readable reason (`google.rpc.ErrorInfo.reason`), e.g.
    /// [`REASON_TENANT_SHREDDED`], when it gave one.
    pub fn reason(&self) -> Option<String> {
        use tonic_types::StatusExt;
        match self {
            ClientError::Status { status, .. } => status
                .get_error_details()
                .error_info()
                .map(|i| i.reason.clone()),
            _ => None,
        }
    }
}

/// How calls are bounded in time and retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts, at least 1.
    pub attempts: u32,
    /// Wait before the first retry; doubles every retry.
    pub initial_backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
    /// Deadline of one attempt (also sent as `grpc-timeout`, so the vault gives up too). An
    /// attempt that runs out of it is retried like `UNAVAILABLE`: every vault call is safe to
    /// repeat (puts make a new version, takes carry a request id, the rest are idempotent).
    pub attempt_timeout: Duration,
    /// Deadline of the whole call, retries and back-off included.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(5),
            budget: Duration::from_secs(20),
        }
    }
}

/// Whether an attempt's failure is retried. UNAVAILABLE means the call did not take effect or
/// may safely be repeated, and so may an attempt that ran out of time or lost its connection
/// mid-call (tonic reports that as UNKNOWN with a transport error as its source): every vault
/// call is safe to repeat. Every other code is the vault's answer, returned as is.
fn retryable(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded => true,
        Code::Unknown => std::error::Error::source(status)
            .is_some_and(|s| s.downcast_ref::<tonic::transport::Error>().is_some()),
        _ => false,
    }
}

/// A secret read from the vault.
pub struct SecretValue {
    /// The value (zeroised on drop).
    pub value: SecretSlice<u8>,
    /// Its version (0 for one-time secrets).
    pub version: u32,
    /// Its kind.
    pub kind: String,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValue")
            .field("version", &self.version)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl SecretValue {
    fn new(mut value: Vec<u8>, version: u32, kind: String) -> Self {
        // Copied into an exact-size box, then the decoded buffer is wiped: converting the Vec
        // directly could reallocate (shrink) and free an unwiped copy.
        let boxed: Box<[u8]> = value.as_slice().into();
        zeroize::Zeroize::zeroize(&mut value);
        Self {
            value: SecretSlice::from(boxed),
            version,
            kind,
        }
    }

    /// The value as a UTF-8 string.
    pub fn to_secret_string(&self) -> Result<SecretString, ClientError> {
        std::str::from_utf8(self.value.expose_secret())
            .map(SecretString::from)
            .map_err(|_| ClientError::NotUtf8)
    }
}

/// A stored secret's reference and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// `vault://tenant/<tenant_id>/<name>`.
    pub reference: String,
    /// The version just written.
    pub version: u32,
}

/// A one-time secret's reference and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTime {
    /// `vault://tenant/<tenant_id>/one-time/<uuid>`.
    pub reference: String,
    /// When it stops being takeable.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Result of a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// Data keys re-wrapped.
    pub rewrapped: u32,
    /// The KEK they are now wrapped with.
    pub active_kek_id: String,
}

/// Audit query; empty fields mean "any".
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Tenant.
    pub tenant_id: String,
    /// Caller service.
    pub caller: String,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    /// At most this many (0 = 100; capped at 1000).
    pub limit: u32,
}

/// The typed vault client. Cheap to clone (one HTTP/2 channel shared by clones).
#[derive(Clone)]
pub struct VaultClient {
    inner: Grpc<Channel>,
    health: tonic_health::pb::health_client::HealthClient<Channel>,
    authorization: AsciiMetadataValue,
    correlation_id: Option<AsciiMetadataValue>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultClient")
            .field("correlation_id", &self.correlation_id)
            .finish_non_exhaustive()
    }
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

impl VaultClient {
    /// A client for `endpoint` (e.g. `http://127.0.0.1:50053`) authenticating with `token`.
    /// Connects lazily, so services can start before the vault does.
    pub fn connect(endpoint: impl Into<String>, token: &SecretString) -> Result<Self, ClientError> {
        let endpoint = Endpoint::from_shared(endpoint.into())
            .map_err(|e| ClientError::Endpoint(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        Self::from_channel(endpoint.connect_lazy(), token)
    }

    /// A client for a configured endpoint (TLS, see `svc::ClientTls::endpoint`); connects lazily.
    pub fn from_endpoint(endpoint: Endpoint, token: &SecretString) -> Result<Self, ClientError> {
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        Self::from_channel(endpoint.connect_lazy(), token)
    }

    /// A client over an existing channel.
    pub fn from_channel(channel: Channel, token: &SecretString) -> Result<Self, ClientError> {
        let mut authorization: AsciiMetadataValue =
            MetadataValue::try_from(format!("Bearer {}", token.expose_secret()))
                .map_err(|_| ClientError::Token)?;
        // Keeps the token out of `Debug` output of the request headers.
        authorization.set_sensitive(true);
        Ok(Self {
            health: tonic_health::pb::health_client::HealthClient::new(channel.clone()),
            inner: Grpc::new(channel),
            authorization,
            correlation_id: None,
            retry: RetryPolicy::default(),
        })
    }

    /// The same client, sending `x-correlation-id: <id>` on every call (ignored if not printable ASCII).
    pub fn with_correlation_id(&self, id: &str) -> Self {
        let mut c = self.clone();
        c.correlation_id = MetadataValue::try_from(id).ok();
        c
    }

    /// The same client with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Runs one call, retrying `UNAVAILABLE`. `make` builds the message afresh for every attempt.
    async fn call<M, R, F, Fut>(
        &self,
        operation: &'static str,
        make: impl Fn() -> M,
        send: F,
    ) -> Result<R, ClientError>
    where
        F: Fn(Grpc<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let per_attempt = self.retry.attempt_timeout;
        let span = tracing::info_span!(
            "vault.call",
            otel.name = %format!("vault {operation}"),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = "tenantry.v1.Vault",
            rpc.method = operation,
        );
        let attempt = || {
            let mut request = Request::new(make());
            request.set_timeout(per_attempt);
            // The vault's span continues this call's trace.
            span.in_scope(|| svc::observe::inject_context(request.metadata_mut()));
            request
                .metadata_mut()
                .insert("authorization", self.authorization.clone());
            if let Some(id) = &self.correlation_id {
                request
                    .metadata_mut()
                    .insert(CORRELATION_HEADER, id.clone());
            }
            let sent = send(self.inner.clone(), request);
            async move {
                let late = || {
                    Status::deadline_exceeded(format!(
                        "the vault did not answer within {per_attempt:?}"
                    ))
                };
                let started = tokio::time::Instant::now();
                match tokio::time::timeout(per_attempt, sent).await {
                    Err(_) => Err(late()),
                    // tonic's own `grpc-timeout` enforcement answers CANCELLED; it is the same
                    // missed deadline.
                    Ok(Err(s))
                        if s.code() == Code::Cancelled && started.elapsed() >= per_attempt =>
                    {
                        Err(late())
                    }
                    Ok(r) => r,
                }
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.initial_backoff)
            .with_max_delay(self.retry.max_backoff)
            .with_max_times(self.retry.attempts.max(1) as usize - 1);
        let budget = self.retry.budget;
        let retried =
            attempt
                .retry(backoff)
                .when(retryable)
                .notify(|status: &Status, delay: Duration| {
                    tracing::debug!(
                        operation,
                        ?delay,
                        message = status.message(),
                        "vault unavailable; retrying"
                    );
                });
        let began = tokio::time::Instant::now();
        // Marked for the caller's timeline: the vault is part of the control plane's own cost.
        let out = timeline::within("vault", tokio::time::timeout(budget, retried))
            .instrument(span.clone())
            .await;
        tracing::trace!(
            operation,
            ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
            "vault call"
        );
        out.unwrap_or_else(|_| {
            Err(Status::deadline_exceeded(format!(
                "the vault did not answer within the call's budget of {budget:?}"
            )))
        })
        .map(Response::into_inner)
        .map_err(|status| ClientError::Status { operation, status })
    }

    /// Whether the vault answers and says it is serving (gRPC health; no token needed): the
    /// readiness check of a service that cannot work without it. One attempt, bounded by
    /// the attempt timeout.
    pub async fn health(&self) -> Result<(), String> {
        let mut request = Request::new(tonic_health::pb::HealthCheckRequest {
            service: "tenantry.v1.Vault".to_owned(),
        });
        request.set_timeout(self.retry.attempt_timeout);
        let mut client = self.health.clone();
        match tokio::time::timeout(self.retry.attempt_timeout, client.check(request)).await {
            Err(_) => Err("the vault did not answer its health check".to_owned()),
            Ok(Err(status)) => Err(format!(
                "the vault's health check failed: {}",
                status.code()
            )),
            Ok(Ok(answer)) => match answer.into_inner().status() {
                tonic_health::pb::health_check_response::ServingStatus::Serving => Ok(()),
                other => Err(format!("the vault says {}", other.as_str_name())),
            },
        }
    }

    /// Stores a new version of secret `tenant_id/name` of `kind`.
    pub async fn put(
        &self,
        tenant_id: &str,
        name: &str,
        kind: &str,
        value: &SecretSlice<u8>,
        reason: &str,
    ) -> Result<Stored, ClientError> {
        self.put_bytes(tenant_id, name, kind, value.expose_secret(), reason)
            .await
    }

    /// [`put`](Self::put) for a string value.
    pub async fn put_string(
        &self,
        tenant_id: &str,
        name: &str,
        kind: &str,
        value: &SecretString,
        reason: &str,
    ) -> Result<Stored, ClientError> {
        self.put_bytes(
            tenant_id,
            name,
            kind,
            value.expose_secret().as_bytes(),
            reason,
        )
        .await
    }

    async fn put_bytes(
        &self,
        tenant_id: &str,
        name: &str,
        kind: &str,
        value: &[u8],
        reason: &str,
    ) -> Result<Stored, ClientError> {
        let r = self
            .call(
                "put",
                || PutSecretRequest {
                    tenant_id: tenant_id.to_owned(),
                    name: name.to_owned(),
                    kind: kind.to_owned(),
                    value: value.to_vec(),
                    reason: reason.to_owned(),
                },
                |mut c, r| async move { c.put(r).await },
            )
            .await?;
        Ok(Stored {
            reference: r.reference,
            version: r.version,
        })
    }

    /// Reads a secret by reference (`vault://tenant/<tenant_id>/<name>`).
    pub async fn get(&self, reference: &str, reason: &str) -> Result<SecretValue, ClientError> {
        self.get_request(GetSecretRequest {
            reference: reference.to_owned(),
            reason: reason.to_owned(),
            ..Default::default()
        })
        .await
    }

    /// Reads a secret by tenant and name.
    pub async fn get_by_name(
        &self,
        tenant_id: &str,
        name: &str,
        reason: &str,
    ) -> Result<SecretValue, ClientError> {
        self.get_request(GetSecretRequest {
            reference: String::new(),
            tenant_id: tenant_id.to_owned(),
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
        .await
    }

    async fn get_request(&self, request: GetSecretRequest) -> Result<SecretValue, ClientError> {
        let r = self
            .call(
                "get",
                || request.clone(),
                |mut c, r| async move { c.get(r).await },
            )
            .await?;
        Ok(SecretValue::new(r.value, r.version, r.kind))
    }

    /// Revokes a secret by reference.
    pub async fn revoke(&self, reference: &str, reason: &str) -> Result<(), ClientError> {
        let request = RevokeSecretRequest {
            reference: reference.to_owned(),
            reason: reason.to_owned(),
            ..Default::default()
        };
        self.call(
            "revoke",
            || request.clone(),
            |mut c, r| async move { c.revoke(r).await },
        )
        .await?;
        Ok(())
    }

    /// Re-wraps every data key under the vault's active KEK.
    pub async fn rotate(&self) -> Result<Rotated, ClientError> {
        let r = self
            .call(
                "rotate",
                || RotateRequest {},
                |mut c, r| async move { c.rotate(r).await },
            )
            .await?;
        Ok(Rotated {
            rewrapped: r.rewrapped,
            active_kek_id: r.active_kek_id,
        })
    }

    /// Stores a one-time secret for `ttl` (rounded down to seconds; zero = the vault's default).
    pub async fn put_one_time(
        &self,
        tenant_id: &str,
        kind: &str,
        value: &SecretSlice<u8>,
        ttl: Duration,
        reason: &str,
    ) -> Result<OneTime, ClientError> {
        self.put_one_time_bytes(tenant_id, kind, value.expose_secret(), ttl, reason)
            .await
    }

    /// [`put_one_time`](Self::put_one_time) for a string value.
    pub async fn put_one_time_string(
        &self,
        tenant_id: &str,
        kind: &str,
        value: &SecretString,
        ttl: Duration,
        reason: &str,
    ) -> Result<OneTime, ClientError> {
        self.put_one_time_bytes(
            tenant_id,
            kind,
            value.expose_secret().as_bytes(),
            ttl,
            reason,
        )
        .await
    }

    async fn put_one_time_bytes(
        &self,
        tenant_id: &str,
        kind: &str,
        value: &[u8],
        ttl: Duration,
        reason: &str,
    ) -> Result<OneTime, ClientError> {
        let ttl_seconds = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX);
        let r = self
            .call(
                "put_one_time",
                || PutOneTimeRequest {
                    tenant_id: tenant_id.to_owned(),
                    kind: kind.to_owned(),
                    value: value.to_vec(),
                    ttl_seconds,
                    reason: reason.to_owned(),
                },
                |mut c, r| async move { c.put_one_time(r).await },
            )
            .await?;
        let expires_at = r
            .expires_at
            .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)));
        Ok(OneTime {
            reference: r.reference,
            expires_at,
        })
    }

    /// Takes a one-time secret: the first call returns it, later ones fail with `NOT_FOUND`.
    ///
    /// The call picks one request id and sends it with every retry, so a retry after an answer
    /// was lost (timeout, reset connection) gets the same value within the vault's replay
    /// window, while any other take gets `NOT_FOUND`.
    pub async fn take_one_time(
        &self,
        reference: &str,
        reason: &str,
    ) -> Result<SecretValue, ClientError> {
        self.take_one_time_as(reference, &uuid::Uuid::new_v4().to_string(), reason)
            .await
    }

    /// [`take_one_time`](Self::take_one_time) with the caller's own request id (e.g. one kept
    /// across a process restart); the same id takes the same value again within the window.
    pub async fn take_one_time_as(
        &self,
        reference: &str,
        request_id: &str,
        reason: &str,
    ) -> Result<SecretValue, ClientError> {
        let request = TakeOneTimeRequest {
            reference: reference.to_owned(),
            reason: reason.to_owned(),
            request_id: request_id.to_owned(),
        };
        let r = self
            .call(
                "take_one_time",
                || request.clone(),
                |mut c, r| async move { c.take_one_time(r).await },
            )
            .await?;
        Ok(SecretValue::new(r.value, 0, r.kind))
    }

    /// Moves one-time secret `reference` into the named secret `name` of its tenant, in one
    /// vault transaction (the one-time secret is gone exactly when `name` exists). Safe to
    /// retry: a move that happened answers the same.
    pub async fn move_one_time(
        &self,
        reference: &str,
        name: &str,
        reason: &str,
    ) -> Result<Stored, ClientError> {
        let request = MoveOneTimeRequest {
            reference: reference.to_owned(),
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        let r = self
            .call(
                "move_one_time",
                || request.clone(),
                |mut c, r| async move { c.move_one_time(r).await },
            )
            .await?;
        Ok(Stored {
            reference: r.reference,
            version: r.version,
        })
    }

    /// Crypto-shreds a tenant; returns how many secrets lost their keys.
    pub async fn shred_tenant(&self, tenant_id: &str, reason: &str) -> Result<u32, ClientError> {
        let request = ShredTenantRequest {
            tenant_id: tenant_id.to_owned(),
            reason: reason.to_owned(),
        };
        let r = self
            .call(
                "shred_tenant",
                || request.clone(),
                |mut c, r| async move { c.shred_tenant(r).await },
            )
            .await?;
        Ok(r.secrets_shredded)
    }

    /// Queries the audit log, newest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, ClientError> {
        let request = AuditRequest {
            tenant_id: query.tenant_id.clone(),
            caller: query.caller.clone(),
            since: query.since.map(timestamp),
            until: query.until.map(timestamp),
            limit: query.limit,
        };
        let r = self
            .call(
                "audit",
                || request.clone(),
                |mut c, r| async move { c.audit(r).await },
            )
            .await?;
        Ok(r.entries)
    }
}
