//! Idempotency keys in the `SIGNUP_IDEMPOTENCY` KV bucket.
//!
//! Key = sha256(idempotency key) (KV keys allow few characters, and the client's key need not be
//! stored). The first request to `create` the record owns the signup and fills in the answer
//! when done; concurrent requests with the same key poll until the answer is there and return
//! it unchanged. A failed signup deletes its record so that a retry starts afresh (failures are
//! not remembered; KV `create` succeeds again after a delete, which is exactly what we want here).
//! A record left `pending` by a crashed gateway is taken over after `stale_after`, keeping its
//! tenant id, so the resumed signup converges on the same tenant.
//!
//! Each attempt writes its own `owner` nonce into the record. When NATS does not answer a
//! `create` (a blip: the write may have landed after the reconnect), the attempt reads the
//! record back: its own nonce means it owns the signup after all; if it cannot tell, it answers
//! UNAVAILABLE and keeps trying in the background to remove the record if it is its own, so the
//! client's retry starts afresh as soon as NATS is back rather than waiting for staleness. Every
//! write after the first is a compare-and-set on the revision its writer last saw, so an attempt
//! that was taken over can neither complete nor remove the new owner's record. Records expire
//! with the bucket's `max_age` (the subdomain claims, in their own bucket, keep guarding
//! uniqueness).

use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use eventstore::EventStore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tenancy::TenantId;

use crate::error::SignupError;

/// The bucket's name (namespaced by the event store).
pub const BUCKET: &str = "SIGNUP_IDEMPOTENCY";

/// First and longest pause between polls of a pending record.
const POLL_START: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(250);

/// The answer a signup gave, replayed verbatim for the same key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Answer {
    /// The tenant.
    pub tenant_id: String,
    /// Its subdomain.
    pub subdomain: String,
    /// Status at the time of the answer (`TenantStatus` as i32).
    pub status: i32,
    /// The saga's correlation id.
    pub correlation_id: String,
    /// Set when the email must be confirmed first (`VerifyEmail`).
    #[serde(default)]
    pub verification_id: String,
    /// Where the code went (masked).
    #[serde(default)]
    pub verification_sent_to: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    fingerprint: String,
    tenant_id: String,
    started_at: DateTime<Utc>,
    answer: Option<Answer>,
    /// The attempt that wrote it.
    #[serde(default)]
    owner: String,
}

/// How a request with an idempotency key proceeds.
#[derive(Debug)]
pub enum Begin {
    /// This request owns the signup: do it as `tenant_id`, then [`Idempotency::complete`] or
    /// [`Idempotency::abandon`] the record at `revision`.
    Fresh {
        /// KV key of the record.
        key: String,
        /// Revision of our pending record.
        revision: u64,
        /// The tenant id to sign up (a fresh one, or the one a crashed attempt chose).
        tenant_id: TenantId,
    },
    /// The same request was already answered: return this.
    Replay(Answer),
}

/// The idempotency records.
#[derive(Clone)]
pub struct Idempotency {
    kv: kv::Store,
    /// How long a request waits for a concurrent one with the same key to finish.
    wait: Duration,
    /// After how long a pending record is considered abandoned by a crashed gateway.
    stale_after: Duration,
}

/// How long an attempt that could not tell whether its record landed keeps trying to remove it.
const CLEANUP_FOR: Duration = Duration::from_secs(120);

fn unavailable(e: impl std::fmt::Display) -> SignupError {
    SignupError::Unavailable(format!(
        "cannot use the idempotency record in NATS KV ({e})"
    ))
}

fn encode(record: &Record) -> Bytes {
    // A struct of strings, a timestamp and an integer always serialises.
    Bytes::from(serde_json::to_vec(record).unwrap_or_default())
}

impl Idempotency {
    /// Opens (creating when missing) the bucket.
    pub async fn open(
        store: &EventStore,
        wait: Duration,
        stale_after: Duration,
        keep_for: Duration,
    ) -> Result<Self, eventstore::StoreError> {
        let kv = store
            .key_value_with(
                BUCKET,
                &eventstore::KvOptions {
                    history: 1,
                    max_age: keep_for,
                    description: "Tenantry signup idempotency keys: sha256(key) -> answer",
                },
            )
            .await?;
        Ok(Self {
            kv,
            wait,
            stale_after,
        })
    }

    /// Starts (or joins) the signup for `client_key`. `fingerprint` identifies the request body;
    /// `new_tenant` is used when this request is the first.
    pub async fn begin(
        &self,
        client_key: &str,
        fingerprint: &str,
        new_tenant: TenantId,
    ) -> Result<Begin, SignupError> {
        let key = hex::encode(Sha256::digest(client_key.as_bytes()));
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut pause = POLL_START;
        loop {
            let pending = Record {
                fingerprint: fingerprint.to_owned(),
                tenant_id: new_tenant.to_string(),
                started_at: Utc::now(),
                answer: None,
                owner: owner.clone(),
            };
            match self.kv.create(&key, encode(&pending)).await {
                Ok(revision) => {
                    return Ok(Begin::Fresh {
                        key,
                        revision,
                        tenant_id: new_tenant,
                    });
                }
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
                Err(e) => {
                    // No answer: the write may still have landed. Ours if the record says so.
                    if let Ok(Some(entry)) = self.kv.entry(&key).await
                        && entry.operation == Operation::Put
                        && serde_json::from_slice::<Record>(&entry.value)
                            .is_ok_and(|r| r.owner == owner && r.answer.is_none())
                    {
                        return Ok(Begin::Fresh {
                            key,
                            revision: entry.revision,
                            tenant_id: new_tenant,
                        });
                    }
                    self.clean_up_later(key, owner);
                    return Err(unavailable(e));
                }
            }
            let entry = self.kv.entry(&key).await.map_err(unavailable)?;
            let Some(entry) = entry.filter(|e| e.operation == Operation::Put) else {
                // Deleted between our create and read (the owner failed): try to own it now.
                continue;
            };
            let record: Record = serde_json::from_slice(&entry.value).map_err(|e| {
                SignupError::Unexpected(anyhow::anyhow!(
                    "idempotency record {key} is not valid JSON: {e}"
                ))
            })?;
            if record.fingerprint != fingerprint {
                return Err(SignupError::IdempotencyMismatch);
            }
            if let Some(answer) = record.answer {
                return Ok(Begin::Replay(answer));
            }
            let age = Utc::now()
                .signed_duration_since(record.started_at)
                .to_std()
                .unwrap_or_default();
            if age > self.stale_after {
                // The owner went away mid-signup: take over with its tenant id, so whatever it
                // already did (claim, event) is recognised as ours.
                let tenant_id = TenantId::parse(&record.tenant_id).map_err(|e| {
                    SignupError::Unexpected(anyhow::anyhow!(
                        "idempotency record {key} holds a bad tenant id: {e}"
                    ))
                })?;
                let takeover = Record {
                    tenant_id: record.tenant_id.clone(),
                    ..pending
                };
                match self
                    .kv
                    .update(&key, encode(&takeover), entry.revision)
                    .await
                {
                    Ok(revision) => {
                        tracing::warn!(tenant = %tenant_id, "taking over an abandoned signup");
                        return Ok(Begin::Fresh {
                            key,
                            revision,
                            tenant_id,
                        });
                    }
                    Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                    Err(e) => return Err(unavailable(e)),
                }
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(SignupError::IdempotencyInProgress);
            }
            // Polling rather than a KV watch: the wait is short (one signup) and a watch would
            // cost a consumer per waiting request.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// Removes the record `owner` may have left, once NATS answers again (in the background, for
    /// a bounded time): its request was answered UNAVAILABLE, so nobody will complete it.
    fn clean_up_later(&self, key: String, owner: String) {
        let kv = self.kv.clone();
        tokio::spawn(async move {
            let until = tokio::time::Instant::now() + CLEANUP_FOR;
            while tokio::time::Instant::now() < until {
                match kv.entry(&key).await {
                    Ok(Some(entry)) if entry.operation == Operation::Put => {
                        let ours = serde_json::from_slice::<Record>(&entry.value)
                            .is_ok_and(|r| r.owner == owner && r.answer.is_none());
                        if ours {
                            let _ = kv.delete_expect_revision(&key, Some(entry.revision)).await;
                        }
                        return;
                    }
                    // Nothing there (it never landed), or someone else's: done.
                    Ok(_) => return,
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        });
    }

    /// Records the answer of a finished signup.
    pub async fn complete(
        &self,
        key: &str,
        revision: u64,
        tenant: &TenantId,
        fingerprint: &str,
        answer: &Answer,
    ) {
        let done = Record {
            fingerprint: fingerprint.to_owned(),
            tenant_id: tenant.to_string(),
            started_at: Utc::now(),
            answer: Some(answer.clone()),
            owner: String::new(),
        };
        if let Err(e) = self.kv.update(key, encode(&done), revision).await {
            // Waiters will time out with ABORTED and the client retries; a takeover, if one
            // happened, converges on the same tenant and writes the same answer.
            tracing::warn!(tenant = %tenant, error = %e, "cannot record the idempotent answer");
        }
    }

    /// Forgets a failed attempt so that a retry with the same key starts again.
    pub async fn abandon(&self, key: &str, revision: u64) {
        if let Err(e) = self.kv.delete_expect_revision(key, Some(revision)).await {
            tracing::warn!(error = %e, "cannot remove the idempotency record of a failed signup");
        }
    }
}

/// How long answers are kept when the bucket has to be created by a recovery (the signup
/// service's default; it brings the bucket to its own setting when it starts).
pub const DEFAULT_KEEP_FOR: Duration = Duration::from_secs(86_400);

/// An answer the log proves was given: a TenantRequested that carried an idempotency key.
#[derive(Debug, Clone)]
pub(crate) struct Given {
    /// The client's key, as the event holds it.
    pub(crate) client_key: String,
    /// The request's fingerprint, from the event's validated fields.
    pub(crate) fingerprint: String,
    /// When it was requested.
    pub(crate) at: DateTime<Utc>,
    /// The answer.
    pub(crate) answer: Answer,
}

/// Writes the answers in `given` that the bucket lost, create-only; an answer older than the
/// bucket's `max_age` would have expired and is left out. A record the bucket holds for another
/// tenant or request is reported, never changed.
pub(crate) async fn restore(
    kv: &kv::Store,
    given: Vec<Given>,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<eventstore::derived::BucketReport, eventstore::StoreError> {
    let unavailable =
        |e: &dyn std::fmt::Display| eventstore::StoreError::Unavailable(e.to_string());
    let keep_for = kv.status().await.map_err(|e| unavailable(&e))?.max_age();
    let mut report = eventstore::derived::BucketReport::new(BUCKET);
    for g in given {
        let age = (now - g.at).to_std().unwrap_or_default();
        if !keep_for.is_zero() && age >= keep_for {
            continue;
        }
        let key = hex::encode(Sha256::digest(g.client_key.as_bytes()));
        let record = Record {
            fingerprint: g.fingerprint.clone(),
            tenant_id: g.answer.tenant_id.clone(),
            started_at: g.at,
            answer: Some(g.answer.clone()),
            owner: String::new(),
        };
        let held = |value: &[u8]| match serde_json::from_slice::<Record>(value) {
            Ok(r) if r.tenant_id == g.answer.tenant_id && r.fingerprint == g.fingerprint => None,
            Ok(r) => Some(format!("an answer for tenant {}", r.tenant_id)),
            Err(_) => Some("an unreadable value".to_owned()),
        };
        let in_log = format!("the answer for tenant {}", g.answer.tenant_id);
        eventstore::derived::restore_key(
            kv,
            &key,
            encode(&record),
            &in_log,
            held,
            dry_run,
            &mut report,
        )
        .await?;
    }
    Ok(report)
}
