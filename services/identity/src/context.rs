//! What every step needs ([`Ctx`]) and the fence that proves this instance still holds the
//! tenant.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use authentik_client::{Authentik, Directory};
use eventstore::EventStore;
use vault_client::VaultClient;

use crate::error::StepError;
use crate::sites::SiteApi;

/// A test hook: abort the process at a chosen instruction, to prove that a kill anywhere
/// duplicates and loses nothing: `at:<point>` right after an Authentik or site call
/// (`group`, `user`, `membership`, `password`, `provider`, `secret`, `application`,
/// `binding`, `social-login-key`, `disable`, `enable`, `remove`), `before:<Event>` or
/// `after:<Event>` around an append.
pub type CrashPoint = String;

/// Everything a step needs. Cheap to clone.
#[derive(Clone)]
pub struct Ctx {
    /// The event store.
    pub store: EventStore,
    /// Authentik.
    pub authentik: Authentik,
    /// The flows, mappings and key every provider refers to (looked up at start-up).
    pub directory: Arc<Directory>,
    /// The vault, as the `identity` caller.
    pub vault: VaultClient,
    /// How to reach each bench's sites.
    pub sites: Arc<SiteApi>,
    /// Shared HTTP pool for site calls.
    pub http: reqwest::Client,
    /// Authentik's public URL, as browsers reach it (`https://auth.example`): the Social Login
    /// Key's endpoints.
    pub public_auth_url: String,
    /// Longest one Authentik or site call may run (its client's timeout plus a margin): how
    /// long the tenant's lease stays busy around a write.
    pub write_limit: Duration,
    /// Test hook.
    pub crash: Option<CrashPoint>,
}

impl Ctx {
    /// Runs one write to Authentik or the site under a busy mark on the tenant's lease: if this
    /// instance loses its lease mid-call (NATS unreachable, a stalled heartbeat), nobody takes
    /// the tenant over before the call can no longer land, so two writers never overlap.
    pub async fn write<T>(
        &self,
        fence: &Fence,
        call: impl Future<Output = T>,
    ) -> Result<T, StepError> {
        fence.busy_for(self.write_limit).await?;
        let answer = call.await;
        fence.not_busy().await?;
        Ok(answer)
    }

    /// The crash hook: aborts the process if it is set to `point` (`at:group`, `before:…`).
    pub fn crash_at(&self, point: &str) {
        if self.crash.as_deref() == Some(point) {
            tracing::error!(point, "crash hook: aborting");
            std::process::abort();
        }
    }
}

/// The proof that this instance may act on a tenant: the worker core's fence.
pub use worker::Fence;
