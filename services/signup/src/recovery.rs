//! Rebuilding signup's derived state from the log — what `tenantctl recover` runs for this
//! service. One read of the signup events gives both buckets:
//! - `SUBDOMAINS`: each subdomain claimed by the tenant whose TenantRequested named it last
//!   (see [`crate::claims_recovery`] for the door that stays closed meanwhile);
//! - `SIGNUP_IDEMPOTENCY`: the answer of each signup that carried an idempotency key and is
//!   younger than the bucket's `max_age`, so a client retrying after the loss gets its tenant
//!   back instead of a "subdomain taken".

use std::collections::BTreeMap;

use eventstore::derived::{self, Marker, Recovery};
use eventstore::{Body, EventContext, EventStore, KvOptions, StoreError};
use proto::v1::TenantStatus;

use crate::idempotency::{self, Answer, Given};

/// Rebuilds signup's buckets from the log; `progress(done, total)` while reading it.
pub async fn recover(
    store: &EventStore,
    dry_run: bool,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<Recovery, StoreError> {
    let claims = crate::claims::Claims::open(store).await?.bucket();
    if !dry_run {
        // Every signup instance stays closed until this says `done`, even once some claims
        // are back: a name not restored yet must not be given away meanwhile.
        derived::set_marker(&claims, Marker::InProgress).await?;
    }
    let answers = match store.existing_key_value(idempotency::BUCKET).await? {
        Some(kv) => kv,
        None => {
            let options = KvOptions {
                history: 1,
                max_age: idempotency::DEFAULT_KEEP_FOR,
                description: "Tenantry signup idempotency keys: sha256(key) -> answer",
            };
            store.key_value_with(idempotency::BUCKET, &options).await?
        }
    };
    let mut replay = store
        .replay(&store.context_filter(EventContext::Signup), 1)
        .await?;
    let total = replay.total();
    let mut out = Recovery::default();
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    let mut given = Vec::new();
    while let Some(e) = replay.next().await {
        let e = e?;
        out.events += 1;
        if let Body::TenantRequested(r) = &e.body {
            wanted.insert(r.subdomain.clone(), r.tenant_id.clone());
            if !r.idempotency_key.is_empty() {
                given.push(Given {
                    client_key: r.idempotency_key.clone(),
                    fingerprint: crate::validate::fingerprint([
                        &r.owner_email,
                        &r.owner_name,
                        &r.organisation,
                        &r.subdomain,
                        &r.plan,
                        &r.region,
                    ]),
                    at: e.occurred_at,
                    // What the gateway answered when it appended the event.
                    answer: Answer {
                        tenant_id: r.tenant_id.clone(),
                        subdomain: r.subdomain.clone(),
                        status: TenantStatus::Requested as i32,
                        correlation_id: r.tenant_id.clone(),
                        // Confirmed already: the event exists.
                        verification_id: String::new(),
                        verification_sent_to: String::new(),
                    },
                });
            }
        }
        progress(out.events, total);
    }
    out.buckets
        .push(crate::claims_recovery::restore(&claims, wanted, dry_run).await?);
    out.buckets
        .push(idempotency::restore(&answers, given, chrono::Utc::now(), dry_run).await?);
    if !dry_run {
        derived::set_marker(&claims, Marker::Done).await?;
    }
    Ok(out)
}
