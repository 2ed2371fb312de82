//! Subdomain claims in the `SUBDOMAINS` KV bucket: key = subdomain, create-only.
//!
//! KV `create` is atomic (it publishes with expected revision 0), so of any number of concurrent
//! signups for one name exactly one wins. A claim is never deleted: `create` would succeed again
//! after a delete (DESIGN §2). A signup that fails after claiming marks its claim `released`
//! instead, with a compare-and-set on the revision, and a later claimant takes a released name
//! with another compare-and-set.
//!
//! A deleted tenant keeps its name for a grace period (`--subdomain-grace-days`, 90 by default)
//! after its SiteDeleted: links, mail and SSO clients may still point at it, and a name handed
//! on at once would let a newcomer receive what was meant for the old tenant. After it, a
//! claim takes the name over with a compare-and-set, as it takes a released one. Only a name
//! whose holder's log says SiteDeleted is ever freed this way.
//!
//! A signup whose provisioning failed keeps its name too, except from its own owner: the same
//! email signing up again takes the name back (the failed attempt's site was rolled back;
//! anything left carries the old tenant's marker, which the new one never touches). The
//! operator API then refuses to retry the old tenant: its name is another tenant's.

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use eventstore::{Body, EventContext, EventStore};
use serde::{Deserialize, Serialize};
use tenancy::{Subdomain, TenantId};

use crate::claims_recovery::ClaimsGate;
use crate::error::SignupError;

/// The bucket's name (namespaced by the event store).
pub const BUCKET: &str = "SUBDOMAINS";

/// How long a deleted tenant keeps its name unless configured otherwise.
pub const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);

/// How many compare-and-set rounds a claim tries before giving up (each lost round means
/// another request changed the same key in between, so a handful is plenty).
const CLAIM_ROUNDS: usize = 8;

/// What the bucket stores per subdomain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) tenant_id: String,
    pub(crate) state: State,
    at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    Claimed,
    Released,
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The name is ours; `revision` is needed to release it.
    Won {
        /// KV revision of our claim.
        revision: u64,
    },
    /// Another tenant holds it.
    Taken,
}

/// The subdomain claims.
#[derive(Clone)]
pub struct Claims {
    kv: kv::Store,
    gate: ClaimsGate,
    store: EventStore,
    grace: std::time::Duration,
}

/// The stored value of a claim by `tenant`.
pub(crate) fn encode_claim(tenant: &str) -> Bytes {
    let record = Record {
        tenant_id: tenant.to_owned(),
        state: State::Claimed,
        at: Utc::now(),
    };
    // Serialising a struct of strings and a timestamp cannot fail.
    Bytes::from(serde_json::to_vec(&record).unwrap_or_default())
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> SignupError {
    SignupError::Unavailable(format!("cannot {what} in NATS KV ({e})"))
}

impl Claims {
    /// Opens (creating when missing) the bucket.
    pub async fn open(store: &EventStore) -> Result<Self, eventstore::StoreError> {
        let kv = store
            .key_value(
                BUCKET,
                5,
                "Tenantry subdomain claims: one key per subdomain, never deleted",
            )
            .await?;
        Ok(Self {
            kv,
            gate: ClaimsGate::default(),
            store: store.clone(),
            grace: DEFAULT_GRACE,
        })
    }

    /// How long a deleted tenant keeps its name after its SiteDeleted.
    #[must_use]
    pub fn with_grace(mut self, grace: std::time::Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Whether `holder`'s claim may pass to a signup of `owner` (an email; empty for a mere
    /// availability check): `holder` was deleted longer than the grace period ago, or it is
    /// `owner`'s own signup whose provisioning failed. One read of the holder's log either way.
    async fn releases(&self, holder: &str, owner: &str) -> Result<bool, SignupError> {
        let events = if owner.is_empty() {
            // Only the deletion can matter: the provisioning subject is enough.
            let subject = self.store.subject(EventContext::Provisioning, holder);
            self.store.load(&subject).await
        } else {
            self.store.load_tenant(holder).await
        }
        .map_err(|e| unavailable("read the holder's history", e))?;
        let deleted_at = events
            .iter()
            .rev()
            .find(|e| matches!(e.body, Body::SiteDeleted(_)))
            .map(|e| e.occurred_at);
        if deleted_at.is_some_and(|at| (Utc::now() - at).to_std().unwrap_or_default() >= self.grace)
        {
            return Ok(true);
        }
        if owner.is_empty() {
            return Ok(false);
        }
        let state = tenancy::fold(events.iter().map(|e| &e.body));
        Ok(
            state.status == tenancy::Status::Failed
                && state.owner_email.eq_ignore_ascii_case(owner),
        )
    }

    /// The tenant holding `subdomain`'s claim, if any holds it.
    pub async fn holder(&self, subdomain: &str) -> Result<Option<String>, SignupError> {
        let entry = self
            .kv
            .entry(subdomain)
            .await
            .map_err(|e| unavailable("read the subdomain claim", e))?;
        Ok(entry
            .filter(|e| e.operation == Operation::Put)
            .and_then(|e| serde_json::from_slice::<Record>(&e.value).ok())
            .filter(|r| r.state == State::Claimed)
            .map(|r| r.tenant_id))
    }

    /// [`Claims::open`], refusing every claim and check while the bucket is empty under a log
    /// that holds signups (see [`crate::claims_recovery`]).
    pub async fn open_guarded(store: &EventStore) -> Result<Self, eventstore::StoreError> {
        let claims = Self::open(store).await?;
        crate::claims_recovery::guard(store, &claims.kv, &claims.gate).await?;
        Ok(claims)
    }

    /// The bucket itself (for recovery).
    pub(crate) fn bucket(&self) -> kv::Store {
        self.kv.clone()
    }

    /// Closed while the claims are missing.
    pub fn gate(&self) -> &ClaimsGate {
        &self.gate
    }

    fn encode(tenant: &TenantId, state: State) -> Bytes {
        let record = Record {
            tenant_id: tenant.to_string(),
            state,
            at: Utc::now(),
        };
        // Serialising a struct of strings and a timestamp cannot fail.
        Bytes::from(serde_json::to_vec(&record).unwrap_or_default())
    }

    /// Claims `subdomain` for `tenant` of `owner` (an email). Claiming a name the same tenant
    /// already holds wins again (a resumed signup), and a released name can be claimed anew,
    /// as can one held by `owner`'s own failed signup.
    pub async fn claim(
        &self,
        subdomain: &Subdomain,
        tenant: &TenantId,
        owner: &str,
    ) -> Result<Claim, SignupError> {
        self.gate.check()?;
        let key = subdomain.as_str();
        for _ in 0..CLAIM_ROUNDS {
            match self
                .kv
                .create(key, Self::encode(tenant, State::Claimed))
                .await
            {
                Ok(revision) => return Ok(Claim::Won { revision }),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(unavailable("claim the subdomain", e)),
            }
            let Some(entry) = self
                .kv
                .entry(key)
                .await
                .map_err(|e| unavailable("read the subdomain claim", e))?
            else {
                continue;
            };
            if entry.operation != Operation::Put {
                // Only a foreign tool deletes claims; `create` handles that case itself.
                continue;
            }
            let record: Option<Record> = serde_json::from_slice(&entry.value).ok();
            match record {
                // Released, or ours already (a resumed signup): written (again), so the revision
                // this attempt holds is its own — an earlier attempt that was taken over can no
                // longer release the name under us.
                Some(r)
                    if r.state == State::Released
                        || (r.state == State::Claimed && r.tenant_id == tenant.to_string()) =>
                {
                    match self
                        .kv
                        .update(key, Self::encode(tenant, State::Claimed), entry.revision)
                        .await
                    {
                        Ok(revision) => return Ok(Claim::Won { revision }),
                        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                        Err(e) => return Err(unavailable("claim the subdomain", e)),
                    }
                }
                // Claimed by a tenant deleted longer ago than the grace period, or by this
                // owner's own failed signup: free to take.
                Some(r)
                    if r.state == State::Claimed && self.releases(&r.tenant_id, owner).await? =>
                {
                    match self
                        .kv
                        .update(key, Self::encode(tenant, State::Claimed), entry.revision)
                        .await
                    {
                        Ok(revision) => {
                            tracing::info!(subdomain = key, from = %r.tenant_id, to = %tenant, "subdomain passed on (its tenant failed or was deleted long ago)");
                            return Ok(Claim::Won { revision });
                        }
                        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                        Err(e) => return Err(unavailable("claim the subdomain", e)),
                    }
                }
                // Claimed by someone else, or a value we cannot read: either way not ours.
                _ => return Ok(Claim::Taken),
            }
        }
        Err(SignupError::Unavailable(
            "the subdomain claim kept changing under us".to_owned(),
        ))
    }

    /// Gives back a claim won at `revision` after a failed signup, so the name can be used.
    pub async fn release(&self, subdomain: &Subdomain, tenant: &TenantId, revision: u64) {
        let result = self
            .kv
            .update(
                subdomain.as_str(),
                Self::encode(tenant, State::Released),
                revision,
            )
            .await;
        if let Err(e) = result {
            // The name stays claimed by a tenant that does not exist: wrong but safe (never two
            // tenants on one name). An operator can release it by hand.
            tracing::error!(subdomain = %subdomain, tenant = %tenant, error = %e, "cannot release subdomain claim");
        }
    }

    /// Whether `subdomain` can be claimed now (never claimed, released, or its tenant deleted
    /// longer than the grace period ago).
    pub async fn is_free(&self, subdomain: &Subdomain) -> Result<bool, SignupError> {
        self.is_free_for(subdomain, "").await
    }

    /// [`Claims::is_free`] for a signup of `owner`: also free when `owner`'s own failed signup
    /// holds it.
    pub async fn is_free_for(
        &self,
        subdomain: &Subdomain,
        owner: &str,
    ) -> Result<bool, SignupError> {
        self.gate.check()?;
        let entry = self
            .kv
            .entry(subdomain.as_str())
            .await
            .map_err(|e| unavailable("read the subdomain claim", e))?;
        Ok(match entry {
            None => true,
            Some(e) if e.operation != Operation::Put => true,
            Some(e) => match serde_json::from_slice::<Record>(&e.value) {
                Ok(r) if r.state == State::Released => true,
                Ok(r) => self.releases(&r.tenant_id, owner).await?,
                Err(_) => false,
            },
        })
    }

    /// The first free name among up to `n` alternatives of a taken one.
    pub async fn free_alternative(&self, taken: &Subdomain, n: usize) -> Option<Subdomain> {
        for alt in tenancy::suggest_alternatives(taken, n) {
            if self.is_free(&alt).await.unwrap_or(false) {
                return Some(alt);
            }
        }
        None
    }
}
