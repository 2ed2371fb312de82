//! Cross-instance limit on concurrent bench operations.
//!
//! A bench allows `max_concurrent_operations` operations at once, however many provisioner
//! instances run. Each operation holds one of the bench's slots: a fenced lease (see
//! [`worker::Leases`]) on the KV key `<bench>.<n>` in bucket `BENCH_SLOTS`. The lease is marked
//! busy for as long as the commands it guards may run on the bench host (their `timeout -k`
//! limit), so a slot whose holder died is not handed to anyone while its command may still be
//! running there; released normally, it is free at once.

use std::time::Duration;

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
    /// How long to wait before looking for a free slot again.
    pub poll: Duration,
}

impl Default for SlotConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(200),
        }
    }
}

/// The slot table of every bench.
#[derive(Clone)]
pub struct Slots {
    leases: Leases,
    config: SlotConfig,
    metrics: Metrics,
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
        Ok(Self {
            leases,
            config,
            metrics,
        })
    }

    /// Waits for a free slot of `bench` and takes it, kept busy for `longest` (the longest one
    /// command it will guard may run on the bench host) beyond its last heartbeat.
    pub async fn acquire(
        &self,
        bench: &BenchConfig,
        longest: Duration,
    ) -> Result<SlotGuard, StepError> {
        let mut failures = 0;
        // Polling loop: KV has no blocking "wait until one of these keys is free" on
        // nats-server 2.9, and operations last seconds, so a short poll with jitter costs little.
        loop {
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
            tokio::time::sleep(Duration::from_millis(poll / 2 + jitter / 2)).await;
        }
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
