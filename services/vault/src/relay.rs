//! The outbox relay: every vault instance runs one. It publishes committed changes' events to
//! JetStream tenant by tenant, in commit order, and deletes them once acknowledged. Delivery is
//! at least once; the deterministic event ids make JetStream store a re-published event once
//! (within its duplicate window). An event-store outage delays events, never a change.

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use eventstore::NewEvent;
use proto::EventContext;
use tokio::sync::watch;

use crate::error::VaultError;
use crate::service::VaultCore;
use crate::store::outbox::Pending;

/// How the relay paces itself.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Poll for pending events this often even without a wake-up (another instance's commits,
    /// or events left by a crash).
    pub poll_interval: Duration,
    /// Events per tenant per publish.
    pub batch: i64,
    /// Longest wait after a failed publish (the wait doubles from 100 ms up to this).
    pub max_backoff: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            batch: 100,
            max_backoff: Duration::from_secs(30),
        }
    }
}

fn new_event(p: Pending) -> Option<NewEvent> {
    let body = p.event.body?;
    let mut e = NewEvent::new(body).with_id(p.id);
    if let Some(t) = p.event.occurred_at
        && let Some(at) = DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
    {
        e.occurred_at = at;
    }
    if !p.correlation_id.is_empty() {
        e = e.correlated(p.correlation_id);
    }
    Some(e)
}

/// Publishes what is pending now; returns how many events went out.
pub async fn relay_pending(
    core: &VaultCore,
    settings: &RelaySettings,
) -> Result<usize, VaultError> {
    let mut total = 0;
    for tenant in core.store.outbox_tenants(100).await? {
        let subject = core.events.subject(EventContext::Vault, &tenant);
        let published = core
            .store
            .relay_tenant(&tenant, settings.batch, |pending| async {
                let events: Vec<NewEvent> = pending.into_iter().filter_map(new_event).collect();
                core.events
                    .append_latest(&subject, events)
                    .await
                    .map(|_| ())
            })
            .await?
            .map_err(|e| VaultError::Events(e.to_string()))?;
        total += published;
    }
    Ok(total)
}

/// Runs until `stop` turns true.
pub async fn run(core: Arc<VaultCore>, settings: RelaySettings, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut failing = false;
        let wait = match relay_pending(&core, &settings).await {
            // More may be pending (a full batch, or commits during the publish).
            Ok(n) if n > 0 => {
                backoff = Duration::from_millis(100);
                continue;
            }
            Ok(_) => {
                backoff = Duration::from_millis(100);
                settings.poll_interval
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot relay vault events; retrying");
                failing = true;
                let wait = backoff;
                backoff = (backoff * 2).min(settings.max_backoff);
                wait
            }
        };
        // While failing, commits do not cut the back-off short (they would turn it into a
        // retry per commit against a store that is down).
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = core.relay_wake.notified(), if !failing => {}
            _ = stop.changed() => return,
        }
    }
}
