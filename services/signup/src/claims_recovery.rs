//! The subdomain claims follow from the log: every `TenantRequested` claimed its subdomain
//! first. Losing the `SUBDOMAINS` bucket would let a second signup take a live tenant's name, so:
//! - an empty bucket under a log that holds signups (judged at start-up), or a recovery not
//!   finished (judged every 5 s), shuts the door — signups and availability checks answer
//!   FAILED_PRECONDITION naming the command that restores it — until a recovery has finished;
//! - [`crate::recovery::recover`] rebuilds the claims from the log, create-only: a missing claim is written for
//!   the tenant the log names; a claim that exists is never changed, and one that disagrees with
//!   the log is reported for an operator to judge (it may be a signup in flight).
//!
//! A deleted tenant's claim is restored like any other: whether its grace period is over is
//! judged from the log when someone claims the name (see [`crate::claims`]).

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::kv;
use eventstore::derived::{self, BucketReport, Marker};
use eventstore::{EventContext, EventStore, StoreError};

use crate::claims::{Record, State};
use crate::error::SignupError;

/// Closed while the claims are missing: the reason, with the command that fixes it.
#[derive(Debug, Clone, Default)]
pub struct ClaimsGate(svc::Gate);

impl ClaimsGate {
    /// `Err` while closed.
    pub fn check(&self) -> Result<(), SignupError> {
        self.0
            .reason()
            .map_or(Ok(()), |m| Err(SignupError::ClaimsMissing(m)))
    }

    /// Whether signups are refused for missing claims.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

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
    match derived::marker(kv).await? {
        Some(Marker::Done) => return Ok(None),
        Some(Marker::InProgress) => {
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
    if !derived::is_empty(kv).await? {
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
    gate.0.set(reason);
    let (store, kv) = (store.clone(), kv.clone());
    // An open door is closed only by the marker; a closed one is judged in full, so an empty
    // bucket keeps it closed until a recovery has run.
    svc::gate::watch(
        &gate.0,
        None,
        Duration::from_secs(5),
        "subdomain claims",
        move |closed| {
            let (store, kv) = (store.clone(), kv.clone());
            async move { closed_because(&store, &kv, closed).await.ok() }
        },
    );
    Ok(())
}

/// Restores the claims of `wanted` (subdomain → the tenant whose TenantRequested named it
/// last), create-only: a claim that exists is never changed, one that disagrees with the log is
/// reported (it may be a signup in flight).
pub(crate) async fn restore(
    kv: &kv::Store,
    wanted: BTreeMap<String, String>,
    dry_run: bool,
) -> Result<BucketReport, StoreError> {
    let mut report = BucketReport::new(crate::claims::BUCKET);
    for (subdomain, tenant) in wanted {
        let held = |value: &[u8]| match serde_json::from_slice::<Record>(value) {
            Ok(r) if r.state == State::Claimed && r.tenant_id == tenant => None,
            Ok(r) if r.state == State::Claimed => Some(format!("claimed by {}", r.tenant_id)),
            Ok(r) => Some(format!("released by {}", r.tenant_id)),
            Err(_) => Some("an unreadable value".to_owned()),
        };
        let value = crate::claims::encode_claim(&tenant);
        let in_log = format!("claimed by {tenant}");
        derived::restore_key(kv, &subdomain, value, &in_log, held, dry_run, &mut report).await?;
    }
    Ok(report)
}
