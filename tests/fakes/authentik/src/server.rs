//! The shared state behind the router and the gate every request passes first: injected faults,
//! then authentication, then the route.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::FakeConfig;
use crate::error::ApiError;
use crate::store::Store;

/// Faults injected by the test (see `FakeAuthentik::set_outage` / `fail_next`).
#[derive(Default)]
struct Faults {
    outage: Option<u16>,
    fail_next: usize,
    fail_status: u16,
}

/// What the handlers and the `FakeAuthentik` handle share.
pub(crate) struct Shared {
    pub config: FakeConfig,
    store: Mutex<Store>,
    faults: Mutex<Faults>,
    requests: AtomicU64,
}

/// A poisoned lock only means another handler panicked mid-update; the fake keeps serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub fn new(config: FakeConfig) -> Self {
        Shared {
            config,
            store: Mutex::new(Store::seeded()),
            faults: Mutex::default(),
            requests: AtomicU64::new(0),
        }
    }

    /// The object store. Never hold the guard across an `.await`.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub fn set_outage(&self, status: Option<u16>) {
        lock(&self.faults).outage = status;
    }

    pub fn fail_next(&self, n: usize, status: u16) {
        let mut f = lock(&self.faults);
        f.fail_next = n;
        f.fail_status = status;
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// The status to answer instead of serving, if a fault is active; consumes one `fail_next`.
    fn take_fault(&self) -> Option<u16> {
        let mut f = lock(&self.faults);
        if let Some(status) = f.outage {
            return Some(status);
        }
        if f.fail_next > 0 {
            f.fail_next -= 1;
            return Some(f.fail_status);
        }
        None
    }

    /// authentik's TokenAuthentication: 403 (not 401, it defines no `authenticate_header`).
    /// A header with another scheme is ignored, so it reads as "not provided".
    fn authenticate(&self, req: &Request) -> Result<(), ApiError> {
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Some(token) = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
        else {
            return Err(ApiError::detail(
                403,
                "Authentication credentials were not provided.",
            ));
        };
        if token.is_empty() || token != self.config.token {
            return Err(ApiError::detail(403, "Token invalid/expired"));
        }
        Ok(())
    }
}

/// Runs before every route: faults, then auth; counts every request answered.
pub(crate) async fn gate(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let resp = if let Some(status) = shared.take_fault() {
        let reason = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Injected failure");
        ApiError::detail(status, reason).into_response()
    } else if let Err(e) = shared.authenticate(&req) {
        e.into_response()
    } else {
        next.run(req).await
    };
    shared.requests.fetch_add(1, Ordering::SeqCst);
    resp
}
