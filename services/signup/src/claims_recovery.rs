//! The subdomain claims follow from the log: every `TenantRequested` claimed its subdomain
//! first. Losing the `SUBDOMAINS` bucket would let a second signup take a live tenant's name, so:
//! - an empty bucket under a log that holds signups (judged at start-up), or a recovery not
//!   finished (judged every 5 s), shuts the door — signups and availability checks answer
//!   FAILED_PRECONDITION naming the command that restores it — until a recovery has finished;
//! - [`recover`] rebuilds the claims from the log, create-only: a missing claim is written for
//!   the tenant the log names; a claim that exists is never changed, and one that disagrees with
//!   the log is reported for an operator to judge (it may be a signup in flight).
//!
//! A deleted tenant keeps its name: links, mail and SSO clients may still point at it, and
//! giving it to someone else would let them receive what was meant for the old tenant. Freeing
//! names of deleted tenants after a grace period is not built; an operator can release one by
//! hand.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation};
use eventstore::{Body, EventContext, EventStore, StoreError};
use serde::Serialize;

use crate::claims::{Record, State};
use crate::error::SignupError;

/// Closed while the claims are missing: the reason, with the command that fixes it.
#[derive(Debug, Clone, Default)]
pub struct ClaimsGate(Arc<Mutex<Option<String>>>);

impl ClaimsGate {
    fn with<R>(&self, f: impl FnOnce(&mut Option<String>) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// `Err` while closed.
    pub fn check(&self) -> Result<(), SignupError> {
        self.with(|g| {
            g.clone()
                .map_or(Ok(()), |m| Err(SignupError::ClaimsMissing(m)))
        })
    }

    /// Whether signups are refused for missing claims.
    pub fn is_closed(&self) -> bool {
        self.with(|g| g.is_some())
    }
}

/// The bucket's key saying a recovery is running (`in-progress`, also left by one that was cut
/// short) or has finished (`done`). Not a valid subdomain (`_`), so it never collides with one.
const RECOVERY_KEY: &str = "_recovery";
const IN_PROGRESS: &[u8] = b"in-progress";
const DONE: &[u8] = b"done";

/// Signups recorded in the log (TenantRequested events), counted without reading them.
async fn signups_in_log(store: &EventStore) -> Result<u64, StoreError> {
    Ok(store
        .replay(&store.context_filter(EventContext::Signup), 1)
        .await?
        .total())
}

/// Why names cannot be claimed now, if they cannot. An empty bucket is judged only with
/// `judge_empty` (at start-up, and while the door is already closed): while NATS restarts, a
/// running instance can briefly read a bucket that has not been loaded yet as empty, and closing
/// on that would turn an outage's retryable answers into a FAILED_PRECONDITION. An open door is
/// closed only by the recovery's own marker — which is why `tenantctl recover` writes it first.
async fn closed_because(
    store: &EventStore,
    kv: &kv::Store,
    judge_empty: bool,
) -> Result<Option<String>, StoreError> {
    let unavailable = |e: &dyn std::fmt::Display| StoreError::Unavailable(e.to_string());
    match kv.get(RECOVERY_KEY).await.map_err(|e| unavailable(&e))? {
        Some(v) if v.as_ref() == DONE => return Ok(None),
        Some(_) => {
            return Ok(Some(
                "a recovery of the subdomain claims is running or was cut short; no name can be \
                 checked or claimed safely until `tenantctl recover` has finished"
                    .to_owned(),
            ));
        }
        None => {}
    }
    if !judge_empty {
        return Ok(None);
    }
    let values = kv.status().await.map_err(|e| unavailable(&e))?.values();
    if values > 0 {
        return Ok(None);
    }
    let signups = signups_in_log(store).await?;
    Ok((signups > 0).then(|| {
        format!(
            "the subdomain claims are missing while the log holds {signups} signups; no name can \
             be checked or claimed safely until an operator runs `tenantctl recover`"
        )
    }))
}

/// Closes `gate` now when the claims are missing (or a recovery is unfinished), and keeps it
/// right afterwards: every 5 s, for as long as the gate is in use, the recovery marker is read
/// again — every instance, also one that was running when the bucket was lost, closes while a
/// recovery runs and opens once it has finished. A failed check keeps the last answer.
pub async fn guard(
    store: &EventStore,
    kv: &kv::Store,
    gate: &ClaimsGate,
) -> Result<(), StoreError> {
    let reason = closed_because(store, kv, true).await?;
    if let Some(r) = &reason {
        tracing::error!("{r}");
    }
    gate.with(|g| *g = reason);
    let weak = Arc::downgrade(&gate.0);
    let (store, kv) = (store.clone(), kv.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let Some(slot) = weak.upgrade() else { return };
            // An open door is closed only by the marker; a closed one is judged in full, so
            // an empty bucket keeps it closed until a recovery has run.
            let closed = slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some();
            drop(slot);
            let Ok(reason) = closed_because(&store, &kv, closed).await else {
                continue;
            };
            let Some(slot) = weak.upgrade() else { return };
            let mut g = slot.lock().unwrap_or_else(PoisonError::into_inner);
            match (&*g, &reason) {
                (Some(_), None) => tracing::info!("subdomain claims are back; accepting signups"),
                (None, Some(r)) => tracing::error!("{r}"),
                _ => {}
            }
            *g = reason;
        }
    });
    Ok(())
}

/// What a recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClaimsReport {
    /// Signup events read.
    pub signups: u64,
    /// Claims the log and the bucket agree on.
    pub matching: u64,
    /// Claims written (or, in a dry run, that would be).
    pub restored: Vec<String>,
    /// Subdomains whose claim names another tenant than the log, or is released: left alone.
    pub differing: Vec<Differing>,
}

/// A claim the recovery left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Differing {
    /// The subdomain.
    pub subdomain: String,
    /// The tenant the log says requested it last.
    pub in_log: String,
    /// What the bucket holds instead.
    pub in_bucket: String,
}

/// Rebuilds the subdomain claims from the log (see the module docs); `progress(done, total)`
/// while reading the log.
pub async fn recover(
    store: &EventStore,
    dry_run: bool,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<ClaimsReport, StoreError> {
    let kv = crate::claims::Claims::open(store).await?.bucket();
    if !dry_run {
        // Every signup instance stays closed until this says `done`, even once some claims
        // are back: a name not restored yet must not be given away meanwhile.
        kv.put(RECOVERY_KEY, IN_PROGRESS.into())
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    }
    let mut replay = store
        .replay(&store.context_filter(EventContext::Signup), 1)
        .await?;
    let total = replay.total();
    let mut report = ClaimsReport::default();
    // Subdomain → tenant of its latest TenantRequested.
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    while let Some(e) = replay.next().await {
        let e = e?;
        report.signups += 1;
        if let Body::TenantRequested(r) = &e.body {
            wanted.insert(r.subdomain.clone(), r.tenant_id.clone());
        }
        progress(report.signups, total);
    }
    for (subdomain, tenant) in wanted {
        let entry = kv
            .entry(&subdomain)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let held = entry
            .filter(|e| e.operation == Operation::Put)
            .map(|e| serde_json::from_slice::<Record>(&e.value).ok());
        match held {
            Some(Some(r)) if r.state == State::Claimed && r.tenant_id == tenant => {
                report.matching += 1;
            }
            Some(other) => report.differing.push(Differing {
                subdomain,
                in_log: tenant,
                in_bucket: match other {
                    Some(r) if r.state == State::Claimed => format!("claimed by {}", r.tenant_id),
                    Some(r) => format!("released by {}", r.tenant_id),
                    None => "an unreadable value".to_owned(),
                },
            }),
            None if dry_run => report.restored.push(subdomain),
            None => {
                let value = crate::claims::encode_claim(&tenant);
                match kv.create(&subdomain, value).await {
                    Ok(_) => report.restored.push(subdomain),
                    // Claimed meanwhile (a signup in flight): that claim stands.
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                        report.differing.push(Differing {
                            subdomain,
                            in_log: tenant,
                            in_bucket: "claimed during the recovery".to_owned(),
                        });
                    }
                    Err(e) => return Err(StoreError::Unavailable(e.to_string())),
                }
            }
        }
    }
    if !dry_run {
        kv.put(RECOVERY_KEY, DONE.into())
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    }
    Ok(report)
}
