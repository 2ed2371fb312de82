//! Cross-instance limit on concurrent bench operations.
//!
//! A bench allows `max_concurrent_operations` operations at once, however many provisioner
//! instances run. Each operation holds one of the bench's slots: a fenced lease (see
//! [`worker::Leases`]) on the KV key `<bench>.<n>` in bucket `BENCH_SLOTS`. The lease is marked
//! busy for as long as the commands it guards may run on the bench host (their `timeout -k`
//! limit), so a slot whose holder died is not handed to anyone while its command may still be
//! running there; released normally, it is free at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use eventstore::{EventStore, StoreError};
use worker::{Acquire, Lease, LeaseError, Leases};

use crate::error::StepError;
use crate::fleet::BenchConfig;
use crate::metrics::Metrics;

/// Slot settings.
#[derive(Debug, Clone)]
pub struct SlotConfig {
    /// A lease's lifetime between heartbeats (sent every third of it).
    pub lease: Duration,
    /// How long a waiter waits before looking for a free slot again when no change to the
    /// bench's slots woke it (a holder that died frees its slot by expiry, which changes
    /// nothing in KV).
    pub poll: Duration,
}

impl Default for SlotConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
        }
    }
}

/// This instance's waiters of one bench: one looks at a time (the rest queue behind it, first
/// come first served), woken when any of the bench's slots changes.
#[derive(Default)]
struct Line {
    turn: tokio::sync::Mutex<()>,
    changed: Notify,
}

/// The slot table of every bench.
#[derive(Clone)]
pub struct Slots {
    leases: Leases,
    config: SlotConfig,
    metrics: Metrics,
    lines: Arc<StdMutex<HashMap<String, Arc<Line>>>>,
    /// Stops the change watch when the last clone goes.
    _watch: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A held slot. Release it with [`SlotGuard::release`]; dropped without a release (an error or
/// a cancellation unwound past it), the slot stays busy until its command is known dead.
pub struct SlotGuard {
    lease: Option<Lease>,
    bench: String,
    metrics: Metrics,
}

impl Slots {
    /// Opens (creating if needed) the `BENCH_SLOTS` bucket.
    pub async fn open(
        store: &EventStore,
        instance: &str,
        config: SlotConfig,
        metrics: Metrics,
    ) -> Result<Self, StoreError> {
        let leases = Leases::open(store, "BENCH_SLOTS", instance, config.lease).await?;
        let lines = Arc::default();
        let watch = tokio::spawn(watch_changes(leases.clone(), Arc::downgrade(&lines)));
        Ok(Self {
            leases,
            config,
            metrics,
            lines,
            _watch: Arc::new(AbortOnDrop(watch.abort_handle())),
        })
    }

    fn line(&self, bench: &str) -> Arc<Line> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(bench.to_owned())
            .or_default()
            .clone()
    }

    /// Waits for a free slot of `bench` and takes it, kept busy for `longest` (the longest one
    /// command it will guard may run on the bench host) beyond its last heartbeat.
    pub async fn acquire(
        &self,
        bench: &BenchConfig,
        longest: Duration,
    ) -> Result<SlotGuard, StepError> {
        // Waiting for the bench's capacity is the bench's time, not the control plane's.
        timeline::outside(self.wait_for_slot(bench, longest)).await
    }

    async fn wait_for_slot(
        &self,
        bench: &BenchConfig,
        longest: Duration,
    ) -> Result<SlotGuard, StepError> {
        let mut failures = 0;
        // One waiter per bench and instance looks at the slots; it is woken by any change to
        // them (a release above all) rather than polling, so a thousand queued tenants cost
        // no more KV reads than one, and a freed slot is taken at once.
        let line = self.line(&bench.name);
        let _turn = line.turn.lock().await;
        loop {
            let changed = line.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a release between the look and the wait is not
            // missed.
            changed.as_mut().enable();
            for n in 0..bench.max_concurrent_operations {
                let key = format!("{}.{n}", bench.name);
                match self.leases.try_acquire(&key).await {
                    Ok(Acquire::Acquired(lease)) => {
                        // A command may start right before a heartbeat that never comes: one
                        // lease period of slack.
                        lease.keep_busy(longest + self.config.lease).await?;
                        self.metrics.in_flight(&bench.name, 1);
                        return Ok(SlotGuard {
                            lease: Some(lease),
                            bench: bench.name.clone(),
                            metrics: self.metrics.clone(),
                        });
                    }
                    Ok(Acquire::Held { .. }) => {}
                    Err(LeaseError::Unavailable(e)) => {
                        failures += 1;
                        if failures >= 5 {
                            return Err(StepError::Infra(format!("bench slots: {e}")));
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let poll = self.config.poll.as_millis() as u64;
            let jitter = rand::random::<u64>() % (poll + 1);
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(Duration::from_millis(poll / 2 + jitter / 2)) => {}
            }
        }
    }
}

/// Wakes a bench's waiters whenever one of its slot keys (`<bench>.<n>`) is released, for as
/// long as the slot table lives; a broken watch is opened again (waiters poll meanwhile).
async fn watch_changes(leases: Leases, lines: Weak<StdMutex<HashMap<String, Arc<Line>>>>) {
    use futures::StreamExt;
    loop {
        if lines.strong_count() == 0 {
            return;
        }
        match leases.changes().await {
            Ok(mut changes) => {
                while let Some(change) = changes.next().await {
                    let Some(lines) = lines.upgrade() else {
                        return;
                    };
                    let Ok(entry) = change else { break };
                    // Only a delete frees a slot (a release); puts are takes, heartbeats and
                    // busy marks, and waking every waiter for them would cost KV reads for
                    // nothing. Expiries change nothing and are found by the timed look.
                    if entry.operation == async_nats::jetstream::kv::Operation::Put {
                        continue;
                    }
                    let bench = entry
                        .key
                        .rsplit_once('.')
                        .map_or(entry.key.as_str(), |(b, _)| b);
                    let line = lines
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(bench)
                        .cloned();
                    if let Some(line) = line {
                        line.changed.notify_waiters();
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "bench slot changes not watched; waiters poll"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl SlotGuard {
    /// Gives the slot back: its commands have finished.
    pub async fn release(mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        self.metrics.in_flight(&self.bench, -1);
        if let Err(e) = lease.not_busy().await {
            tracing::warn!(error = %e, bench = %self.bench, "could not mark a bench slot idle; it frees up when its busy time ends");
            return;
        }
        if let Err(e) = lease.release().await {
            tracing::warn!(error = %e, bench = %self.bench, "could not release a bench slot; its lease will expire");
        }
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        // Dropped without `release` (an error or a cancellation unwound past it): the lease's
        // own drop leaves the slot busy until its command is known dead.
        if self.lease.is_some() {
            self.metrics.in_flight(&self.bench, -1);
        }
    }
}
