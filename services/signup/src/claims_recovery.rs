//! The subdomain claims follow from the log: every `TenantRequested` claimed its subdomain
//! first. Losing the `SUBDOMAINS` bucket would let a second signup take a live tenant's name, so:
//! - at start-up, an empty bucket under a log that holds signups shuts the door — signups and
//!   availability checks answer FAILED_PRECONDITION naming the command that restores it — until
//!   the bucket holds claims again (checked every 2 s);
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
use futures::StreamExt;
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

async fn bucket_is_empty(kv: &kv::Store) -> Result<bool, StoreError> {
    let mut keys = kv
        .keys()
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok(keys.next().await.is_none())
}

/// Signups recorded in the log (TenantRequested events), counted without reading them.
async fn signups_in_log(store: &EventStore) -> Result<u64, StoreError> {
    Ok(store
        .replay(&store.context_filter(EventContext::Signup), 1)
        .await?
        .total())
}

/// Closes `gate` when the bucket is empty while the log holds signups, and opens it again once
/// the bucket holds claims (a `tenantctl recover`).
pub async fn guard(
    store: &EventStore,
    kv: &kv::Store,
    gate: &ClaimsGate,
) -> Result<(), StoreError> {
    if !bucket_is_empty(kv).await? {
        return Ok(());
    }
    let signups = signups_in_log(store).await?;
    if signups == 0 {
        return Ok(());
    }
    let reason = format!(
        "the subdomain claims are missing while the log holds {signups} signups; no name can be \
         checked or claimed safely until an operator runs `tenantctl recover`"
    );
    tracing::error!("{reason}");
    gate.with(|g| *g = Some(reason));
    let (kv, gate) = (kv.clone(), gate.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if matches!(bucket_is_empty(&kv).await, Ok(false)) {
                tracing::info!("subdomain claims are back; accepting signups");
                gate.with(|g| *g = None);
                return;
            }
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
    Ok(report)
}
