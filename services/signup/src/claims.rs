//! Subdomain claims in the `SUBDOMAINS` KV bucket: key = subdomain, create-only.
//!
//! KV `create` is atomic (it publishes with expected revision 0), so of any number of concurrent
//! signups for one name exactly one wins. A claim is never deleted: `create` would succeed again
//! after a delete (DESIGN §2). A signup that fails after claiming marks its claim `released`
//! instead, with a compare-and-set on the revision, and a later claimant takes a released name
//! with another compare-and-set.

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use eventstore::EventStore;
use serde::{Deserialize, Serialize};
use tenancy::{Subdomain, TenantId};

use crate::claims_recovery::ClaimsGate;
use crate::error::SignupError;

/// The bucket's name (namespaced by the event store).
pub const BUCKET: &str = "SUBDOMAINS";

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
        })
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

    /// Claims `subdomain` for `tenant`. Claiming a name the same tenant already holds wins
    /// again (a resumed signup), and a released name can be claimed anew.
    pub async fn claim(
        &self,
        subdomain: &Subdomain,
        tenant: &TenantId,
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

    /// Whether `subdomain` can be claimed now (never claimed, or released).
    pub async fn is_free(&self, subdomain: &Subdomain) -> Result<bool, SignupError> {
        self.gate.check()?;
        let entry = self
            .kv
            .entry(subdomain.as_str())
            .await
            .map_err(|e| unavailable("read the subdomain claim", e))?;
        Ok(match entry {
            None => true,
            Some(e) if e.operation != Operation::Put => true,
            Some(e) => {
                serde_json::from_slice::<Record>(&e.value).is_ok_and(|r| r.state == State::Released)
            }
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
