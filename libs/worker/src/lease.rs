//! Fenced leases in a NATS KV bucket.
//!
//! A lease is the key `<name>` holding `{holder, nonce, expires_ms, busy_until_ms}`. It is
//! taken with a create-only put, or — once both its expiry and its busy time have passed — by a
//! compare-and-set over the dead holder's record. Every write the holder makes afterwards
//! (heartbeat, busy marks, release) is a compare-and-set on the revision of its previous write,
//! so a holder that lost its lease can neither renew nor delete the new holder's. That
//! revision is the fencing token: [`Lease::check`] proves, right before a side effect or an
//! append, that this process still holds the lease.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use eventstore::{EventStore, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

/// Why a lease could not be taken or kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Another holder took over (ours expired) or the key was removed: stop working on it.
    #[error("lease {0} was lost to another holder; stopping work on it")]
    Lost(String),
    /// NATS KV did not answer: try again later.
    #[error("lease store unavailable: {0}")]
    Unavailable(String),
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The stored value of a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The instance holding it.
    pub holder: String,
    /// This acquisition (a holder that re-acquires gets a new nonce).
    pub nonce: String,
    /// When it expires unless renewed.
    pub expires_ms: i64,
    /// Until when a command it guards may still run even if the holder died: the lease is not
    /// taken over before then.
    #[serde(default)]
    pub busy_until_ms: i64,
}

impl Record {
    /// When the lease becomes free if nobody renews it.
    pub fn free_at_ms(&self) -> i64 {
        self.expires_ms.max(self.busy_until_ms)
    }

    fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// The leases of one bucket, taken by one instance.
#[derive(Clone)]
pub struct Leases {
    kv: kv::Store,
    holder: Arc<str>,
    ttl: Duration,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("holder", &self.holder)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The answer of [`Leases::try_acquire`].
#[derive(Debug)]
pub enum Acquire {
    /// Taken.
    Acquired(Lease),
    /// Someone else holds it; it frees up in `free_in` unless renewed.
    Held {
        /// The current holder.
        holder: String,
        /// Time until it expires (or its command is known dead).
        free_in: Duration,
    },
}

impl Leases {
    /// Opens (creating if needed) the bucket `bucket` for `holder`, with leases lasting `ttl`
    /// between heartbeats (sent every quarter of it).
    pub async fn open(
        store: &EventStore,
        bucket: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Self, StoreError> {
        let kv = store
            .key_value(
                bucket,
                1,
                "Tenantry: fenced leases (holder, expiry, busy-until)",
            )
            .await?;
        Ok(Self {
            kv,
            holder: holder.into(),
            ttl: ttl.max(Duration::from_millis(300)),
        })
    }

    /// This instance's name.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How long a lease lasts without a heartbeat.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The margin a holder keeps before its expiry, and a taker waits past it.
    fn grace_ms(&self) -> i64 {
        ms(self.ttl / 3)
    }

    fn record(&self, nonce: &str, busy_until_ms: i64) -> Record {
        Record {
            holder: self.holder.to_string(),
            nonce: nonce.to_owned(),
            expires_ms: now_ms() + ms(self.ttl),
            busy_until_ms,
        }
    }

    /// Every change to the bucket's leases from now on (taken, renewed, released, busy
    /// marked), by key: for waiters that would rather be woken than poll. Expiries make no
    /// change, so a waiter still looks again now and then.
    pub async fn changes(&self) -> Result<kv::Watch, LeaseError> {
        self.kv
            .watch_all()
            .await
            .map_err(|e| LeaseError::Unavailable(e.to_string()))
    }

    /// The lease's current record, if any.
    pub async fn peek(&self, key: &str) -> Result<Option<(Record, u64)>, LeaseError> {
        let entry = self
            .kv
            .entry(key)
            .await
            .map_err(|e| LeaseError::Unavailable(e.to_string()))?;
        Ok(entry.and_then(|e| {
            if e.operation != kv::Operation::Put {
                return None;
            }
            serde_json::from_slice::<Record>(&e.value)
                .ok()
                .map(|r| (r, e.revision))
        }))
    }

    /// Takes the lease `key` if it is free (or its holder's expired and its command is known
    /// dead); otherwise says who holds it and for how long.
    pub async fn try_acquire(&self, key: &str) -> Result<Acquire, LeaseError> {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        // Two rounds: a lease released between our create and our read is free again.
        for _ in 0..2 {
            let record = self.record(&nonce, 0);
            match self.kv.create(key, record.encode()).await {
                Ok(revision) => return Ok(Acquire::Acquired(self.started(key, nonce, revision))),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(LeaseError::Unavailable(e.to_string())),
            }
            let Some((existing, revision)) = self.peek(key).await? else {
                continue;
            };
            // A lapsed holder checks that a third of the ttl is still left before each side
            // effect; waiting that long past the expiry (by our clock) keeps a holder whose
            // clock runs a little behind from acting after we took over.
            let now = now_ms() - self.grace_ms();
            if existing.free_at_ms() > now {
                let free_in =
                    Duration::from_millis(u64::try_from(existing.free_at_ms() - now).unwrap_or(0));
                return Ok(Acquire::Held {
                    holder: existing.holder,
                    free_in,
                });
            }
            match self.kv.update(key, record.encode(), revision).await {
                Ok(revision) => {
                    tracing::warn!(
                        key,
                        previous = %existing.holder,
                        "took over a lease whose holder stopped renewing it"
                    );
                    return Ok(Acquire::Acquired(self.started(key, nonce, revision)));
                }
                // Someone else took it over first.
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    return Ok(Acquire::Held {
                        holder: "another instance".to_owned(),
                        free_in: self.ttl,
                    });
                }
                Err(e) => return Err(LeaseError::Unavailable(e.to_string())),
            }
        }
        Ok(Acquire::Held {
            holder: "another instance".to_owned(),
            free_in: Duration::from_millis(100),
        })
    }

    /// Waits (polling every `poll`) until the lease `key` is taken, or `give_up` passes.
    pub async fn acquire_within(
        &self,
        key: &str,
        give_up: Duration,
        poll: Duration,
    ) -> Result<Acquire, LeaseError> {
        let deadline = tokio::time::Instant::now() + give_up;
        loop {
            match self.try_acquire(key).await? {
                Acquire::Acquired(l) => return Ok(Acquire::Acquired(l)),
                held @ Acquire::Held { .. } if tokio::time::Instant::now() >= deadline => {
                    return Ok(held);
                }
                Acquire::Held { .. } => tokio::time::sleep(poll).await,
            }
        }
    }

    fn started(&self, key: &str, nonce: String, revision: u64) -> Lease {
        let (lost_tx, lost_rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            leases: self.clone(),
            key: key.to_owned(),
            nonce,
            state: Mutex::new(State {
                revision,
                busy_until_ms: 0,
                busy_window: None,
                expires_ms: now_ms() + ms(self.ttl),
                lost: false,
            }),
            lost_tx,
        });
        let heartbeat = tokio::spawn(heartbeat(Arc::clone(&inner)));
        Lease {
            inner,
            lost_rx,
            heartbeat: Some(heartbeat),
        }
    }
}

struct Inner {
    leases: Leases,
    key: String,
    nonce: String,
    // Serialises this holder's writes (heartbeat, busy marks, release): each is a CAS on the
    // revision of the previous one, so two concurrent writers here would fence each other out.
    state: Mutex<State>,
    lost_tx: watch::Sender<bool>,
}

struct State {
    revision: u64,
    busy_until_ms: i64,
    // Set by `keep_busy`: every heartbeat moves busy_until to now + this.
    busy_window: Option<Duration>,
    expires_ms: i64,
    lost: bool,
}

impl Inner {
    fn mark_lost(&self, state: &mut State) {
        if !state.lost {
            state.lost = true;
            let _ = self.lost_tx.send(true);
            tracing::warn!(key = %self.key, "lease lost");
        }
    }

    /// Rewrites the record (renewing it) with `busy_until_ms`; fenced on our last revision.
    async fn write(&self, state: &mut State, busy_until_ms: i64) -> Result<(), LeaseError> {
        if state.lost {
            return Err(LeaseError::Lost(self.key.clone()));
        }
        let record = self.leases.record(&self.nonce, busy_until_ms);
        match self
            .leases
            .kv
            .update(&self.key, record.encode(), state.revision)
            .await
        {
            Ok(revision) => {
                state.revision = revision;
                state.busy_until_ms = busy_until_ms;
                state.expires_ms = record.expires_ms;
                Ok(())
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                self.mark_lost(state);
                Err(LeaseError::Lost(self.key.clone()))
            }
            Err(e) => {
                // No answer: the write may have landed. If the stored record is still this
                // holder's, its revision is ours to continue from.
                if let Ok(Some((current, revision))) = self.leases.peek(&self.key).await
                    && current.nonce == self.nonce
                {
                    state.revision = revision;
                    state.busy_until_ms = current.busy_until_ms;
                    state.expires_ms = current.expires_ms;
                    if current.expires_ms > now_ms() {
                        return Ok(());
                    }
                }
                // Unsure whether we still hold it: once our own expiry has passed, we must
                // assume not.
                if now_ms() >= state.expires_ms {
                    self.mark_lost(state);
                    return Err(LeaseError::Lost(self.key.clone()));
                }
                Err(LeaseError::Unavailable(e.to_string()))
            }
        }
    }
}

/// Renews the lease every quarter of its ttl until it is released or lost (a quarter, so one
/// late heartbeat still leaves more than the third [`Lease::check`] wants).
async fn heartbeat(inner: Arc<Inner>) {
    let every = inner.leases.ttl / 4;
    loop {
        tokio::time::sleep(every).await;
        let mut state = inner.state.lock().await;
        if state.lost {
            return;
        }
        let busy = match state.busy_window {
            Some(w) => now_ms() + ms(w),
            None => state.busy_until_ms,
        };
        match inner.write(&mut state, busy).await {
            Ok(()) => {}
            Err(LeaseError::Lost(_)) => return,
            Err(LeaseError::Unavailable(e)) => {
                tracing::debug!(key = %inner.key, error = %e, "could not renew a lease; retrying");
            }
        }
    }
}

/// A held lease. Release it with [`Lease::release`]; dropping it releases it in the background
/// unless a command it guards may still be running.
pub struct Lease {
    inner: Arc<Inner>,
    lost_rx: watch::Receiver<bool>,
    heartbeat: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.inner.key)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// The leased key.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// The fencing token: the KV revision of this holder's latest write.
    pub async fn token(&self) -> u64 {
        self.inner.state.lock().await.revision
    }

    /// Proves this process still holds the lease, right before a side effect or an append:
    /// the stored record is the one we last wrote, and at least a third of its ttl is left (the
    /// margin a taker waits past the expiry, so a side effect started now finishes first).
    pub async fn check(&self) -> Result<(), LeaseError> {
        let mut state = self.inner.state.lock().await;
        if state.lost {
            return Err(LeaseError::Lost(self.inner.key.clone()));
        }
        let current = self.inner.leases.peek(&self.inner.key).await?;
        let margin = self.inner.leases.grace_ms();
        let ours = current.is_some_and(|(record, revision)| {
            revision == state.revision
                && record.nonce == self.inner.nonce
                && record.expires_ms - margin > now_ms()
        });
        if ours {
            Ok(())
        } else {
            self.inner.mark_lost(&mut state);
            Err(LeaseError::Lost(self.inner.key.clone()))
        }
    }

    /// Marks that a command guarded by this lease may run for up to `limit` from now: the
    /// lease is not taken over before then, even if this process dies.
    pub async fn busy_for(&self, limit: Duration) -> Result<(), LeaseError> {
        let mut state = self.inner.state.lock().await;
        let until = now_ms() + ms(limit);
        self.inner.write(&mut state, until).await
    }

    /// Marks that commands guarded by this lease may be running, each for up to `window`:
    /// every heartbeat moves the busy time to `window` from then, so if this process dies the
    /// lease is not taken over before any command it started can still be running.
    pub async fn keep_busy(&self, window: Duration) -> Result<(), LeaseError> {
        let mut state = self.inner.state.lock().await;
        state.busy_window = Some(window);
        let until = now_ms() + ms(window);
        self.inner.write(&mut state, until).await
    }

    /// The guarded commands have finished.
    pub async fn not_busy(&self) -> Result<(), LeaseError> {
        let mut state = self.inner.state.lock().await;
        state.busy_window = None;
        self.inner.write(&mut state, 0).await
    }

    /// Resolves when the heartbeat finds the lease lost (never, while it is held).
    pub async fn lost(&self) {
        let mut rx = self.lost_rx.clone();
        let _ = rx.wait_for(|lost| *lost).await;
    }

    /// Whether the lease is known to be lost.
    pub fn is_lost(&self) -> bool {
        *self.lost_rx.borrow()
    }

    /// Gives the lease back. Only the holder's own record is removed (a CAS on its revision);
    /// a lease still marked busy is left to expire at its busy time.
    pub async fn release(mut self) -> Result<(), LeaseError> {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        release(&self.inner).await
    }
}

async fn release(inner: &Inner) -> Result<(), LeaseError> {
    let mut state = inner.state.lock().await;
    if state.lost {
        return Ok(());
    }
    if state.busy_until_ms > now_ms() {
        // A command may still be running on its own: the record says until when.
        state.lost = true;
        return Ok(());
    }
    let result = inner
        .leases
        .kv
        .delete_expect_revision(&inner.key, Some(state.revision))
        .await;
    state.lost = true;
    match result {
        Ok(()) => Ok(()),
        // Not ours any more: nothing to give back.
        Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(()),
        Err(e) => Err(LeaseError::Unavailable(e.to_string())),
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
            // Not released explicitly (an error or cancellation unwound past it): release in
            // the background, so the key does not wait for its expiry.
            let inner = Arc::clone(&self.inner);
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = release(&inner).await;
                });
            }
        }
    }
}
