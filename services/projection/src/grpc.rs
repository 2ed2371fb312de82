//! The tonic `TenantDirectory` service over the active generation.

use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::Stream;
use proto::v1::tenant_directory_server::TenantDirectory;
use proto::v1::{
    GetHistoryRequest, GetHistoryResponse, GetTenantRequest, HistoryEntry, ListTenantsRequest,
    ListTenantsResponse, Tenant, TenantStatus, WatchTenantsRequest,
};
use sqlx::postgres::PgListener;
use svc::Shutdown;
use tenancy::Status as DomainStatus;
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

use crate::behind::Gate;
use crate::error::Error;
use crate::store::{
    Cursor, HistoryRow, MAX_PAGE_SIZE, NOTIFY_CHANNEL, Store, TenantFilter, TenantRow,
};

/// The gRPC service.
#[derive(Clone, Debug)]
pub struct DirectoryService {
    store: Store,
    read_wait: Duration,
    changes: broadcast::Sender<String>,
    gate: Gate,
    shutdown: Shutdown,
}

impl DirectoryService {
    /// Serves `store`; reads with a `min_sequence` wait up to `read_wait` for it; watchers
    /// follow `changes` (see [`spawn_change_listener`]) and end at `shutdown`; nothing is
    /// answered while `gate` is closed.
    pub fn new(
        store: Store,
        read_wait: Duration,
        changes: broadcast::Sender<String>,
        gate: Gate,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            store,
            read_wait,
            changes,
            gate,
            shutdown,
        }
    }
}

/// How many change notifications a slow watcher may fall behind before its stream is ended.
const WATCH_BUFFER: usize = 4096;

/// Listens on PostgreSQL's NOTIFY channel (so changes committed by any instance's consumer are
/// seen) with one connection per process, and fans the tenant ids out to every watcher.
pub fn spawn_change_listener(store: Store, shutdown: Shutdown) -> broadcast::Sender<String> {
    // A broadcast channel: every watcher needs every change; a lagging one is told and ends.
    let (tx, _) = broadcast::channel(WATCH_BUFFER);
    let sender = tx.clone();
    tokio::spawn(async move {
        while !shutdown.is_triggered() {
            let listener = async {
                let mut l = PgListener::connect_with(store.pool()).await?;
                l.listen(NOTIFY_CHANNEL).await?;
                Ok::<_, sqlx::Error>(l)
            };
            let mut listener = match listener.await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for tenant changes; retrying");
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            loop {
                let note = tokio::select! {
                    _ = shutdown.wait() => return,
                    n = listener.recv() => n,
                };
                match note {
                    // No receivers is fine: nobody is watching right now.
                    Ok(n) => {
                        let _ = tx.send(n.payload().to_owned());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "tenant change listener failed; reconnecting");
                        break;
                    }
                }
            }
        }
    });
    sender
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The API form of a row.
pub fn tenant_to_proto(t: &TenantRow) -> Tenant {
    Tenant {
        tenant_id: t.tenant_id.clone(),
        status: TenantStatus::from(t.status) as i32,
        subdomain: t.subdomain.clone(),
        site: t.site.clone(),
        bench: t.bench.clone(),
        plan: t.plan.clone(),
        organisation: t.organisation.clone(),
        owner_email: t.owner_email.clone(),
        owner_name: t.owner_name.clone(),
        region: t.region.clone(),
        created_at: Some(timestamp(t.created_at)),
        updated_at: Some(timestamp(t.updated_at)),
        last_error: t.last_error.clone().unwrap_or_default(),
        activation_ms: t
            .activation_ms
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0),
        version: u64::try_from(t.last_sequence).unwrap_or(0),
        url: t.url.clone(),
        sso_status: t.state.sso.status.as_str().to_owned(),
        sso_login_url: if t.state.sso.status == tenancy::SsoStatus::Ready {
            t.state.sso.login_url.clone()
        } else {
            String::new()
        },
        sso_error: t.state.sso.error.clone().unwrap_or_default(),
        pending: match (t.status, t.state.pending) {
            (tenancy::Status::Deleting, _) => "deleting",
            (_, Some(tenancy::Pending::Suspension)) => "suspending",
            (_, Some(tenancy::Pending::Resume)) => "resuming",
            _ => "",
        }
        .to_owned(),
    }
}

fn history_to_proto(h: &HistoryRow) -> HistoryEntry {
    HistoryEntry {
        sequence: u64::try_from(h.sequence).unwrap_or(0),
        event_id: h.event_id.to_string(),
        event_type: h.event_type.clone(),
        context: h.context.clone(),
        summary: h.summary.clone(),
        occurred_at: Some(timestamp(h.occurred_at)),
        correlation_id: h.correlation_id.clone(),
        causation_id: h.causation_id.clone(),
    }
}

/// Tenant ids are subject tokens: refuse anything else before it reaches SQL or a log line.
fn tenant_id(raw: &str) -> Result<&str, Error> {
    let id = raw.trim();
    if id.is_empty() {
        return Err(Error::InvalidArgument("tenant_id is required".to_owned()));
    }
    if id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::InvalidArgument(
            "tenant_id must be a tenant id like 0190f5c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d".to_owned(),
        ));
    }
    Ok(id)
}

fn status_filter(value: i32) -> Result<Option<DomainStatus>, Error> {
    match TenantStatus::try_from(value) {
        Ok(TenantStatus::Unspecified) => Ok(None),
        Ok(s) => Ok(Some(DomainStatus::from(s))),
        Err(_) => Err(Error::InvalidArgument(format!(
            "status {value} is not a TenantStatus"
        ))),
    }
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// Stream type of `WatchTenants`.
pub type TenantStream = Pin<Box<dyn Stream<Item = Result<Tenant, Status>> + Send>>;

#[tonic::async_trait]
impl TenantDirectory for DirectoryService {
    async fn get_tenant(
        &self,
        request: Request<GetTenantRequest>,
    ) -> Result<Response<Tenant>, Status> {
        self.gate.check()?;
        let req = request.into_inner();
        let id = tenant_id(&req.tenant_id)?;
        self.store
            .wait_for(req.min_sequence, self.read_wait)
            .await?;
        match self.store.get_tenant(id).await? {
            Some(t) => Ok(Response::new(tenant_to_proto(&t))),
            None => Err(Error::NotFound(format!("tenant {id} not found")).into()),
        }
    }

    async fn list_tenants(
        &self,
        request: Request<ListTenantsRequest>,
    ) -> Result<Response<ListTenantsResponse>, Status> {
        self.gate.check()?;
        let req = request.into_inner();
        let filter = TenantFilter {
            status: status_filter(req.status)?,
            plan: non_empty(&req.plan),
            bench: non_empty(&req.bench),
        };
        if req.page_size > MAX_PAGE_SIZE {
            return Err(Error::InvalidArgument(format!(
                "page_size may be at most {MAX_PAGE_SIZE}"
            ))
            .into());
        }
        let after = match req.page_token.trim() {
            "" => None,
            token => Some(Cursor::decode(token)?),
        };
        self.store
            .wait_for(req.min_sequence, self.read_wait)
            .await?;
        let page = self
            .store
            .list_tenants(&filter, after.as_ref(), req.page_size)
            .await?;
        Ok(Response::new(ListTenantsResponse {
            tenants: page.tenants.iter().map(tenant_to_proto).collect(),
            next_page_token: page.next.map(|c| c.encode()).unwrap_or_default(),
            total: page.total,
        }))
    }

    async fn get_history(
        &self,
        request: Request<GetHistoryRequest>,
    ) -> Result<Response<GetHistoryResponse>, Status> {
        self.gate.check()?;
        let req = request.into_inner();
        let id = tenant_id(&req.tenant_id)?;
        self.store
            .wait_for(req.min_sequence, self.read_wait)
            .await?;
        let rows = self.store.history(id).await?;
        if rows.is_empty() {
            return Err(Error::NotFound(format!("no events recorded for tenant {id}")).into());
        }
        Ok(Response::new(GetHistoryResponse {
            entries: rows.iter().map(history_to_proto).collect(),
        }))
    }

    type WatchTenantsStream = TenantStream;

    async fn watch_tenants(
        &self,
        request: Request<WatchTenantsRequest>,
    ) -> Result<Response<Self::WatchTenantsStream>, Status> {
        self.gate.check()?;
        let wanted = status_filter(request.into_inner().status)?;
        // Subscribe before taking the snapshot, so no change between the two is missed (a change
        // may then be sent twice, which a watcher tolerates: it is the same current state).
        let mut changes = self.changes.subscribe();
        let store = self.store.clone();
        let shutdown = self.shutdown.clone();
        let filter = TenantFilter {
            status: wanted,
            ..TenantFilter::default()
        };
        // Bounded: a slow watcher applies back-pressure to its own task only.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Tenant, Status>>(256);
        tokio::spawn(async move {
            let mut after: Option<Cursor> = None;
            loop {
                let page = match store
                    .list_tenants(&filter, after.as_ref(), MAX_PAGE_SIZE)
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                for t in &page.tenants {
                    if tx.send(Ok(tenant_to_proto(t))).await.is_err() {
                        return;
                    }
                }
                match page.next {
                    Some(c) => after = Some(c),
                    None => break,
                }
            }
            loop {
                // Ending the stream at shutdown lets the server's graceful stop complete.
                let id = tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tx.closed() => return,
                    c = changes.recv() => match c {
                        Ok(id) => id,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            let _ = tx.send(Err(Status::aborted(format!(
                                "watcher fell {n} changes behind; watch again for a fresh snapshot"
                            )))).await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                match store.get_tenant(&id).await {
                    Ok(Some(t)) if wanted.is_none_or(|s| s == t.status) => {
                        if tx.send(Ok(tenant_to_proto(&t))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
