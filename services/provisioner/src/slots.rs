//! Cross-instance limit on concurrent bench operations.
//!
//! A bench allows `max_concurrent_operations` operations at once, however many provisioner
//! instances run. Each operation holds one of the bench's slots: the KV key `<bench>.<n>` in
//! bucket `BENCH_SLOTS`, taken with a create-only put and released by delete (a slot is not a
//! uniqueness claim, so re-creating it after a delete is exactly what we want). The value is a
//! lease (holder + expiry) refreshed while held; a crashed holder's slot is taken over with a
//! compare-and-set once its lease has expired.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use eventstore::EventStore;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    holder: String,
    expires_ms: i64,
}

/// Slot settings.
#[derive(Debug, Clone)]
pub struct SlotConfig {
    /// A lease's lifetime; refreshed every third of it.
    pub lease: Duration,
    /// How long to wait before looking for a free slot again.
    pub poll: Duration,
}

impl Default for SlotConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(200),
        }
    }
}

/// The slot table of every bench.
#[derive(Clone)]
pub struct Slots {
    kv: kv::Store,
    instance: Arc<str>,
    config: SlotConfig,
    metrics: Metrics,
}

/// A held slot. Release it with [`SlotGuard::release`]; dropping it releases in the background.
pub struct SlotGuard {
    kv: kv::Store,
    key: String,
    bench: String,
    refresher: Option<JoinHandle<()>>,
    metrics: Metrics,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Slots {
    /// Opens (creating if needed) the `BENCH_SLOTS` bucket.
    pub async fn open(
        store: &EventStore,
        instance: &str,
        config: SlotConfig,
        metrics: Metrics,
    ) -> Result<Self, eventstore::StoreError> {
        let kv = store
            .key_value(
                "BENCH_SLOTS",
                1,
                "Tenantry: leases on concurrent bench operations",
            )
            .await?;
        Ok(Self {
            kv,
            instance: instance.into(),
            config,
            metrics,
        })
    }

    fn lease(&self) -> Bytes {
        let lease = Lease {
            holder: self.instance.to_string(),
            expires_ms: now_ms() + self.config.lease.as_millis() as i64,
        };
        Bytes::from(serde_json::to_vec(&lease).unwrap_or_default())
    }

    /// Waits for a free slot of `bench` (of `limit`) and takes it.
    pub async fn acquire(&self, bench: &str, limit: u32) -> SlotGuard {
        // Polling loop: KV has no blocking "wait until a key is deleted" that works across every
        // key of a bench on nats-server 2.9, and operations last seconds, so a short poll with
        // jitter costs little and never misses a release.
        loop {
            for n in 0..limit {
                let key = format!("{bench}.{n}");
                if self.try_take(&key).await {
                    return self.held(bench, key);
                }
            }
            let jitter = rand::random::<u64>() % (self.config.poll.as_millis() as u64 + 1);
            tokio::time::sleep(self.config.poll / 2 + Duration::from_millis(jitter / 2)).await;
        }
    }

    async fn try_take(&self, key: &str) -> bool {
        match self.kv.create(key, self.lease()).await {
            Ok(_) => return true,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => {
                tracing::warn!(error = %e, key, "bench slot store unavailable");
                return false;
            }
        }
        // Taken: take it over only if the holder's lease has expired (it crashed).
        let Ok(Some(entry)) = self.kv.entry(key).await else {
            return false;
        };
        if entry.operation != kv::Operation::Put {
            return false;
        }
        let expired = serde_json::from_slice::<Lease>(&entry.value)
            .map(|l| l.expires_ms < now_ms())
            .unwrap_or(true);
        if !expired {
            return false;
        }
        let taken = self
            .kv
            .update(key, self.lease(), entry.revision)
            .await
            .is_ok();
        if taken {
            tracing::warn!(key, "took over a bench slot whose holder's lease expired");
        }
        taken
    }

    fn held(&self, bench: &str, key: String) -> SlotGuard {
        self.metrics.in_flight(bench, 1);
        let kv = self.kv.clone();
        let refresh_key = key.clone();
        let this = self.clone();
        // Keeps the lease alive while the operation runs (bench commands may take minutes).
        let refresher = tokio::spawn(async move {
            let every = this.config.lease / 3;
            loop {
                tokio::time::sleep(every).await;
                if let Ok(Some(e)) = kv.entry(&refresh_key).await
                    && kv
                        .update(&refresh_key, this.lease(), e.revision)
                        .await
                        .is_err()
                {
                    tracing::warn!(key = %refresh_key, "could not refresh a bench slot lease");
                }
            }
        });
        SlotGuard {
            kv: self.kv.clone(),
            key,
            bench: bench.to_owned(),
            refresher: Some(refresher),
            metrics: self.metrics.clone(),
        }
    }
}

impl SlotGuard {
    /// Gives the slot back.
    pub async fn release(mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        if let Err(e) = self.kv.delete(&self.key).await {
            tracing::warn!(error = %e, key = %self.key, "could not release a bench slot; its lease will expire");
        }
        self.metrics.in_flight(&self.bench, -1);
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(r) = self.refresher.take() {
            // Not released explicitly (an error or cancellation unwound past it): release in the
            // background so the slot does not wait for its lease to expire.
            r.abort();
            let kv = self.kv.clone();
            let key = std::mem::take(&mut self.key);
            self.metrics.in_flight(&self.bench, -1);
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = kv.delete(&key).await;
                });
            }
        }
    }
}
