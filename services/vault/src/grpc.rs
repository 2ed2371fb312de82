//! The tonic `Vault` service: authenticates the bearer token, runs the operation, writes the audit
//! row, and maps [`VaultError`] to a gRPC status (the one place that does).

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use proto::v1::vault_server::Vault;
use proto::v1::{
    AuditEntry, AuditRequest, AuditResponse, GetSecretRequest, GetSecretResponse,
    MoveOneTimeRequest, PutOneTimeRequest, PutOneTimeResponse, PutSecretRequest, PutSecretResponse,
    RevokeSecretRequest, RevokeSecretResponse, RotateRequest, RotateResponse, ShredTenantRequest,
    ShredTenantResponse, TakeOneTimeRequest, TakeOneTimeResponse,
};
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use crate::acl::{Caller, Op};
use crate::error::VaultError;
use crate::names::{OneTimeRef, SecretKind, SecretName, SecretRef, TenantId};
use crate::service::VaultCore;
use crate::store::{AuditFilter, AuditRecord};

/// Metadata key of the caller's correlation id (the signup's id across a saga).
pub const CORRELATION_HEADER: &str = proto::metadata::CORRELATION_ID;

const MAX_REASON: usize = 1024;

/// `google.rpc.ErrorInfo.reason` of a shredded tenant (the client's `REASON_TENANT_SHREDDED`).
pub const REASON_TENANT_SHREDDED: &str = "TENANT_SHREDDED";
/// `google.rpc.ErrorInfo.domain` of the vault's reasons.
pub const ERROR_DOMAIN: &str = "tenantry.vault";

impl From<VaultError> for Status {
    fn from(e: VaultError) -> Self {
        let msg = e.to_string();
        match e {
            VaultError::Unauthenticated(_) => Status::unauthenticated(msg),
            VaultError::PermissionDenied { .. } => Status::permission_denied(msg),
            VaultError::InvalidArgument(_) => Status::invalid_argument(msg),
            VaultError::NotFound(_) => Status::not_found(msg),
            // Machine-readable, so callers tell "gone for good" from other preconditions without
            // parsing the message.
            VaultError::Shredded { .. } => {
                use tonic_types::{ErrorDetails, StatusExt};
                Status::with_error_details(
                    tonic::Code::FailedPrecondition,
                    msg,
                    ErrorDetails::with_error_info(
                        REASON_TENANT_SHREDDED,
                        ERROR_DOMAIN,
                        std::collections::HashMap::<String, String>::new(),
                    ),
                )
            }
            VaultError::KeyUnavailable { .. } | VaultError::KindMismatch { .. } => {
                Status::failed_precondition(msg)
            }
            VaultError::Integrity { .. } => Status::data_loss(msg),
            VaultError::Database(
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_),
            ) => Status::unavailable("the vault's database is unavailable; retry later"),
            VaultError::Events(_) => Status::unavailable(msg),
            // Details of internal failures stay in the log (with the cause chain), not on the wire.
            VaultError::Database(_) | VaultError::Unexpected(_) => {
                Status::internal("internal error in the vault; its log has the details")
            }
        }
    }
}

/// Calls by operation and outcome, exported as `tenantry_vault_calls_total`.
pub type CallCounter = Family<Vec<(String, String)>, Counter>;

/// The gRPC service.
#[derive(Clone)]
pub struct VaultService {
    core: Arc<VaultCore>,
    calls: CallCounter,
    denials: CallCounter,
}

/// What every call carries besides its message.
struct CallMeta {
    token: Option<String>,
    correlation_id: String,
}

fn meta<T>(request: &Request<T>) -> CallMeta {
    let md = request.metadata();
    let token = md
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned());
    // Accepted only when short and printable, since it lands verbatim in the audit log and events.
    let correlation_id = md
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_default()
        .to_owned();
    CallMeta {
        token,
        correlation_id,
    }
}

/// An audit row in the making: filled in as the call learns who and what it is about.
struct Audit {
    record: AuditRecord,
}

impl Audit {
    /// The row a change writes in its transaction (the outcome is set there).
    fn allowed(&self) -> AuditRecord {
        self.record.clone()
    }

    fn new(op: Op, meta: &CallMeta, reason: &str) -> Self {
        // Reasons are free text from callers: bounded, so a caller cannot bloat the log.
        let reason: String = reason.chars().take(MAX_REASON).collect();
        Self {
            record: AuditRecord {
                caller: "anonymous".into(),
                operation: op.as_str().into(),
                correlation_id: meta.correlation_id.clone(),
                reason,
                ..AuditRecord::default()
            },
        }
    }
}

impl VaultService {
    /// Wraps the core.
    pub fn new(core: Arc<VaultCore>, calls: CallCounter, denials: CallCounter) -> Self {
        Self {
            core,
            calls,
            denials,
        }
    }

    fn authenticate(&self, meta: &CallMeta, audit: &mut Audit) -> Result<Caller, VaultError> {
        let token = meta
            .token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                VaultError::Unauthenticated(
                    "missing bearer token: send `authorization: Bearer <token>`".into(),
                )
            })?;
        let caller = self
            .core
            .acl
            .authenticate(token)
            .ok_or_else(|| VaultError::Unauthenticated("unknown bearer token".into()))?;
        audit.record.caller = caller.name.clone();
        Ok(caller)
    }

    /// Writes the audit row for a finished call and turns the result into the gRPC answer. If the
    /// audit row cannot be written, the call fails: nothing leaves the vault unaudited. A change
    /// that succeeded wrote its row in its own transaction (`in_tx`), so only its refusals and
    /// failures are written here.
    async fn finish<T>(
        &self,
        mut audit: Audit,
        result: Result<T, VaultError>,
        in_tx: bool,
    ) -> Result<T, Status> {
        match &result {
            Ok(_) => audit.record.outcome = "allowed".into(),
            Err(e) => {
                audit.record.outcome = e.outcome().into();
                audit.record.detail = e.to_string();
                log_error(&audit.record, e);
            }
        }
        self.calls
            .get_or_create(&vec![
                ("operation".to_owned(), audit.record.operation.clone()),
                ("outcome".to_owned(), audit.record.outcome.clone()),
            ])
            .inc();
        if matches!(audit.record.outcome.as_str(), "denied" | "unauthenticated") {
            // `anonymous` when the token matched no caller (the audit row's name for it).
            let caller = audit.record.caller.clone();
            self.denials
                .get_or_create(&vec![
                    ("caller".to_owned(), caller),
                    ("operation".to_owned(), audit.record.operation.clone()),
                ])
                .inc();
        }
        if in_tx && result.is_ok() {
            return result.map_err(Status::from);
        }
        if let Err(e) = self.core.store.audit(&audit.record).await {
            tracing::error!(error = %e, operation = %audit.record.operation, "cannot write audit row; failing the call");
            return Err(Status::unavailable(
                "the vault cannot write its audit log; retry later",
            ));
        }
        result.map_err(Status::from)
    }
}

fn log_error(r: &AuditRecord, e: &VaultError) {
    let (op, caller, tenant, name) = (&r.operation, &r.caller, &r.tenant_id, &r.secret_name);
    match e {
        VaultError::Database(_)
        | VaultError::Unexpected(_)
        | VaultError::Events(_)
        | VaultError::Integrity { .. } => {
            tracing::error!(error = ?anyhow_chain(e), %op, %caller, %tenant, %name, "vault call failed")
        }
        VaultError::Unauthenticated(_) | VaultError::PermissionDenied { .. } => {
            tracing::warn!(error = %e, %op, %caller, %tenant, %name, "vault call refused")
        }
        _ => tracing::debug!(error = %e, %op, %caller, %tenant, %name, "vault call failed"),
    }
}

/// The full cause chain, logged once at the edge.
fn anyhow_chain(e: &VaultError) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn from_timestamp(
    t: Option<prost_types::Timestamp>,
    field: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, VaultError> {
    t.map(|t| {
        u32::try_from(t.nanos)
            .ok()
            .and_then(|n| chrono::DateTime::from_timestamp(t.seconds, n))
            .ok_or_else(|| VaultError::InvalidArgument(format!("{field} is not a valid timestamp")))
    })
    .transpose()
}

#[tonic::async_trait]
impl Vault for VaultService {
    async fn put(
        &self,
        request: Request<PutSecretRequest>,
    ) -> Result<Response<PutSecretResponse>, Status> {
        let meta = meta(&request);
        let mut req = request.into_inner();
        // Owned by a zeroising buffer from here on; the decoded message keeps an empty Vec.
        let value = Zeroizing::new(std::mem::take(&mut req.value));
        let mut audit = Audit::new(Op::Put, &meta, &req.reason);
        let result = async {
            // The target is recorded before authentication, so refused calls say what they were after.
            let target = SecretRef::from_request("", &req.tenant_id, &req.name);
            if let Ok(r) = &target {
                audit.record.tenant_id = r.tenant.to_string();
                audit.record.secret_name = r.name.to_string();
            }
            let caller = self.authenticate(&meta, &mut audit)?;
            let r = target?;
            let kind = SecretKind::parse(&req.kind)?;
            self.core
                .put(&caller, &r, &kind, &value, &audit.allowed())
                .await
        }
        .await;
        let (reference, version) = self.finish(audit, result, true).await?;
        Ok(Response::new(PutSecretResponse { reference, version }))
    }

    async fn get(
        &self,
        request: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let meta = meta(&request);
        let req = request.into_inner();
        let mut audit = Audit::new(Op::Get, &meta, &req.reason);
        let result = async {
            // The target is recorded before authentication, so refused calls say what they were after.
            let target = SecretRef::from_request(&req.reference, &req.tenant_id, &req.name);
            if let Ok(r) = &target {
                audit.record.tenant_id = r.tenant.to_string();
                audit.record.secret_name = r.name.to_string();
            }
            let caller = self.authenticate(&meta, &mut audit)?;
            let r = target?;
            self.core.get(&caller, &r).await
        }
        .await;
        let plain = self.finish(audit, result, false).await?;
        // The response needs an owned Vec; this copy is the one tonic encodes and drops.
        Ok(Response::new(GetSecretResponse {
            value: plain.value.to_vec(),
            version: plain.version,
            kind: plain.kind,
        }))
    }

    async fn rotate(
        &self,
        request: Request<RotateRequest>,
    ) -> Result<Response<RotateResponse>, Status> {
        let meta = meta(&request);
        let mut audit = Audit::new(Op::Rotate, &meta, "");
        let result = async {
            let caller = self.authenticate(&meta, &mut audit)?;
            self.core.rotate(&caller, &audit.allowed()).await
        }
        .await;
        // Each batch wrote its own row; this one records the whole call's outcome.
        let rewrapped = self.finish(audit, result, false).await?;
        Ok(Response::new(RotateResponse {
            rewrapped,
            active_kek_id: self.core.ring.active_id().to_owned(),
        }))
    }

    async fn revoke(
        &self,
        request: Request<RevokeSecretRequest>,
    ) -> Result<Response<RevokeSecretResponse>, Status> {
        let meta = meta(&request);
        let req = request.into_inner();
        let mut audit = Audit::new(Op::Revoke, &meta, &req.reason);
        let result = async {
            // The target is recorded before authentication, so refused calls say what they were after.
            let target = SecretRef::from_request(&req.reference, &req.tenant_id, &req.name);
            if let Ok(r) = &target {
                audit.record.tenant_id = r.tenant.to_string();
                audit.record.secret_name = r.name.to_string();
            }
            let caller = self.authenticate(&meta, &mut audit)?;
            let r = target?;
            self.core.revoke(&caller, &r, &audit.allowed()).await
        }
        .await;
        self.finish(audit, result, true).await?;
        Ok(Response::new(RevokeSecretResponse {}))
    }

    async fn put_one_time(
        &self,
        request: Request<PutOneTimeRequest>,
    ) -> Result<Response<PutOneTimeResponse>, Status> {
        let meta = meta(&request);
        let mut req = request.into_inner();
        let value = Zeroizing::new(std::mem::take(&mut req.value));
        let mut audit = Audit::new(Op::PutOneTime, &meta, &req.reason);
        let result = async {
            let tenant = TenantId::parse(&req.tenant_id);
            if let Ok(t) = &tenant {
                audit.record.tenant_id = t.to_string();
            }
            let caller = self.authenticate(&meta, &mut audit)?;
            let tenant = tenant?;
            let kind = SecretKind::parse(&req.kind)?;
            self.core
                .put_one_time(
                    &caller,
                    &tenant,
                    &kind,
                    &value,
                    req.ttl_seconds,
                    &mut audit.record,
                )
                .await
        }
        .await;
        let (r, expires_at) = self.finish(audit, result, true).await?;
        Ok(Response::new(PutOneTimeResponse {
            reference: r.to_uri(),
            expires_at: Some(timestamp(expires_at)),
        }))
    }

    async fn take_one_time(
        &self,
        request: Request<TakeOneTimeRequest>,
    ) -> Result<Response<TakeOneTimeResponse>, Status> {
        let meta = meta(&request);
        let req = request.into_inner();
        let mut audit = Audit::new(Op::TakeOneTime, &meta, &req.reason);
        let result = async {
            let target = OneTimeRef::parse(&req.reference);
            if let Ok(r) = &target {
                audit.record.tenant_id = r.tenant.to_string();
                audit.record.secret_name = format!("one-time/{}", r.id);
            }
            let caller = self.authenticate(&meta, &mut audit)?;
            let r = target?;
            self.core
                .take_one_time(&caller, &r, &req.request_id, &audit.allowed())
                .await
        }
        .await;
        let plain = self.finish(audit, result, true).await?;
        Ok(Response::new(TakeOneTimeResponse {
            value: plain.value.to_vec(),
            kind: plain.kind,
        }))
    }

    async fn move_one_time(
        &self,
        request: Request<MoveOneTimeRequest>,
    ) -> Result<Response<PutSecretResponse>, Status> {
        let meta = meta(&request);
        let req = request.into_inner();
        let mut audit = Audit::new(Op::MoveOneTime, &meta, &req.reason);
        let result = async {
            let target = OneTimeRef::parse(&req.reference);
            if let Ok(r) = &target {
                audit.record.tenant_id = r.tenant.to_string();
                audit.record.secret_name = req.name.clone();
            }
            let caller = self.authenticate(&meta, &mut audit)?;
            let r = target?;
            let name = SecretName::parse(&req.name)?;
            self.core
                .move_one_time(&caller, &r, &name, &audit.allowed())
                .await
        }
        .await;
        let (reference, version) = self.finish(audit, result, true).await?;
        Ok(Response::new(PutSecretResponse { reference, version }))
    }

    async fn shred_tenant(
        &self,
        request: Request<ShredTenantRequest>,
    ) -> Result<Response<ShredTenantResponse>, Status> {
        let meta = meta(&request);
        let req = request.into_inner();
        let mut audit = Audit::new(Op::Shred, &meta, &req.reason);
        let result = async {
            let tenant = TenantId::parse(&req.tenant_id);
            if let Ok(t) = &tenant {
                audit.record.tenant_id = t.to_string();
            }
            let caller = self.authenticate(&meta, &mut audit)?;
            let tenant = tenant?;
            self.core.shred(&caller, &tenant, &audit.allowed()).await
        }
        .await;
        let secrets_shredded = self.finish(audit, result, true).await?;
        Ok(Response::new(ShredTenantResponse { secrets_shredded }))
    }

    async fn audit(
        &self,
        request: Request<AuditRequest>,
    ) -> Result<Response<AuditResponse>, Status> {
        let meta = meta(&request);
        let req = request.into_inner();
        let mut audit = Audit::new(Op::Audit, &meta, "");
        let result = async {
            let caller = self.authenticate(&meta, &mut audit)?;
            if !req.tenant_id.is_empty() {
                audit.record.tenant_id = TenantId::parse(&req.tenant_id)?.to_string();
            }
            if req.caller.len() > 128 {
                return Err(VaultError::InvalidArgument(
                    "caller is longer than 128 characters".into(),
                ));
            }
            let filter = AuditFilter {
                tenant_id: req.tenant_id.clone(),
                caller: req.caller.clone(),
                since: from_timestamp(req.since, "since")?,
                until: from_timestamp(req.until, "until")?,
                limit: i64::from(req.limit),
            };
            self.core.audit(&caller, filter).await
        }
        .await;
        let rows = self.finish(audit, result, false).await?;
        let entries = rows
            .into_iter()
            .map(|row| {
                let r = row.record;
                // The proto has one free-text field: the caller's reason, then the vault's own note.
                let reason = match (r.reason.is_empty(), r.detail.is_empty()) {
                    (_, true) => r.reason,
                    (true, false) => r.detail,
                    (false, false) => format!("{} — {}", r.reason, r.detail),
                };
                AuditEntry {
                    id: row.id,
                    caller: r.caller,
                    operation: r.operation,
                    tenant_id: r.tenant_id,
                    secret_name: r.secret_name,
                    outcome: r.outcome,
                    reason,
                    correlation_id: r.correlation_id,
                    at: Some(timestamp(row.at)),
                }
            })
            .collect();
        Ok(Response::new(AuditResponse { entries }))
    }
}
