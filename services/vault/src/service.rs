//! What each vault operation does, given an authenticated caller and validated input. The gRPC
//! layer (`grpc`) adds authentication, auditing and status mapping around these.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventstore::{EventStore, NewEvent};
use proto::EventContext;
use proto::v1::event::Body;
use proto::v1::{CredentialRevoked, CredentialRotated, CredentialStored, TenantKeysShredded};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::acl::{ANY_KIND, Acl, Caller, Op};
use crate::crypto::{DataKey, KeyRing, secret_aad};
use crate::error::VaultError;
use crate::names::{OneTimeRef, SecretKind, SecretName, SecretRef, TenantId};
use crate::store::{AuditFilter, AuditRow, Lookup, Store};

/// Limits and knobs of the core.
#[derive(Debug, Clone)]
pub struct Limits {
    /// TTL of a one-time secret when the request gives 0.
    pub default_one_time_ttl: Duration,
    /// Longest TTL a one-time secret may ask for.
    pub max_one_time_ttl: Duration,
    /// Largest secret value accepted.
    pub max_value_bytes: usize,
    /// Data keys re-wrapped per database round trip by Rotate.
    pub rotate_batch_size: u32,
}

/// A secret read back: the value is zeroised when dropped.
pub struct Plain {
    /// The value.
    pub value: Zeroizing<Vec<u8>>,
    /// Its version (0 for one-time secrets).
    pub version: u32,
    /// Its kind.
    pub kind: String,
}

/// The vault's logic, shared by every gRPC call.
pub struct VaultCore {
    pub(crate) store: Store,
    pub(crate) ring: KeyRing,
    pub(crate) acl: Acl,
    events: EventStore,
    limits: Limits,
}

fn denied(caller: &Caller, op: Op, what: impl Into<String>) -> VaultError {
    VaultError::PermissionDenied {
        caller: caller.name.clone(),
        op,
        what: what.into(),
    }
}

fn check_value(value: &[u8], max: usize) -> Result<(), VaultError> {
    if value.is_empty() {
        return Err(VaultError::InvalidArgument("value is required".into()));
    }
    if value.len() > max {
        return Err(VaultError::InvalidArgument(format!(
            "value is larger than {max} bytes"
        )));
    }
    Ok(())
}

impl VaultCore {
    /// Assembles the core.
    pub fn new(store: Store, ring: KeyRing, acl: Acl, events: EventStore, limits: Limits) -> Self {
        Self {
            store,
            ring,
            acl,
            events,
            limits,
        }
    }

    /// Appends vault events for one tenant. The event ids are fresh: these are writes whose facts
    /// do not depend on earlier events, hence `append_latest`.
    async fn publish(
        &self,
        tenant: &str,
        bodies: Vec<Body>,
        correlation_id: &str,
    ) -> Result<(), VaultError> {
        if bodies.is_empty() {
            return Ok(());
        }
        let subject = self.events.subject(EventContext::Vault, tenant);
        let events = bodies
            .into_iter()
            .map(|b| {
                let e = NewEvent::new(b);
                if correlation_id.is_empty() {
                    e
                } else {
                    e.correlated(correlation_id)
                }
            })
            .collect();
        self.events
            .append_latest(&subject, events)
            .await
            .map_err(|e| VaultError::Events(e.to_string()))?;
        Ok(())
    }

    /// Appends one vault event with a deterministic id, so re-publishing it (a retried call
    /// whose first publish was lost) stores it once.
    async fn publish_as(
        &self,
        tenant: &str,
        id: Uuid,
        body: Body,
        correlation_id: &str,
    ) -> Result<(), VaultError> {
        let subject = self.events.subject(EventContext::Vault, tenant);
        let mut event = NewEvent::new(body).with_id(id);
        if !correlation_id.is_empty() {
            event = event.correlated(correlation_id);
        }
        self.events
            .append_latest(&subject, vec![event])
            .await
            .map_err(|e| VaultError::Events(e.to_string()))?;
        Ok(())
    }

    /// Stores a new version of a secret.
    pub async fn put(
        &self,
        caller: &Caller,
        r: &SecretRef,
        kind: &SecretKind,
        value: &[u8],
        correlation_id: &str,
    ) -> Result<(String, u32), VaultError> {
        if !caller.may(Op::Put, kind.as_str()) {
            return Err(denied(caller, Op::Put, format!("secrets of kind `{kind}`")));
        }
        check_value(value, self.limits.max_value_bytes)?;
        let (tenant, name) = (r.tenant.as_str(), r.name.as_str());
        let version = self
            .store
            .put_secret(tenant, name, kind.as_str(), |version, key_id| {
                let key = DataKey::generate();
                let wrapped = self.ring.wrap(tenant, key_id, &key)?;
                let sealed = key.seal(secret_aad(tenant, name, version).as_bytes(), value)?;
                Ok((wrapped, sealed))
            })
            .await?;
        let reference = r.to_uri();
        let body = Body::CredentialStored(CredentialStored {
            tenant_id: tenant.to_owned(),
            name: name.to_owned(),
            kind: kind.to_string(),
            version,
            reference: reference.clone(),
        });
        self.publish(tenant, vec![body], correlation_id).await?;
        Ok((reference, version))
    }

    /// Reads the latest version of a secret.
    pub async fn get(&self, caller: &Caller, r: &SecretRef) -> Result<Plain, VaultError> {
        // Checked before the lookup so a caller with no read rights learns nothing about what exists.
        if !caller.may_any(Op::Get) {
            return Err(denied(caller, Op::Get, "any secret"));
        }
        let (tenant, name) = (r.tenant.as_str(), r.name.as_str());
        let secret = match self.store.lookup(tenant, name).await? {
            Lookup::Shredded(at) => {
                return Err(VaultError::Shredded {
                    tenant: tenant.to_owned(),
                    at,
                });
            }
            Lookup::Missing => {
                return Err(VaultError::NotFound(format!("no secret {tenant}/{name}")));
            }
            Lookup::Found(s) => s,
        };
        if !caller.may(Op::Get, &secret.kind) {
            return Err(denied(
                caller,
                Op::Get,
                format!("secrets of kind `{}`", secret.kind),
            ));
        }
        if secret.revoked {
            return Err(VaultError::NotFound(format!(
                "secret {tenant}/{name} was revoked"
            )));
        }
        let (Some((key_id, wrapped)), Some(sealed)) = (secret.key, secret.sealed) else {
            // Neither revoked nor shredded, yet no key: the row was tampered with.
            return Err(VaultError::Integrity {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
            });
        };
        let crypto = |e| VaultError::from_crypto(tenant, name, e);
        let key = self.ring.unwrap(tenant, key_id, &wrapped).map_err(crypto)?;
        let value = key
            .open(secret_aad(tenant, name, secret.version).as_bytes(), &sealed)
            .map_err(crypto)?;
        Ok(Plain {
            value,
            version: secret.version,
            kind: secret.kind,
        })
    }

    /// Revokes a secret (idempotent: revoking a revoked secret succeeds).
    pub async fn revoke(
        &self,
        caller: &Caller,
        r: &SecretRef,
        correlation_id: &str,
    ) -> Result<(), VaultError> {
        if !caller.may_any(Op::Revoke) {
            return Err(denied(caller, Op::Revoke, "any secret"));
        }
        let (tenant, name) = (r.tenant.as_str(), r.name.as_str());
        let kind = match self.store.lookup(tenant, name).await? {
            Lookup::Shredded(at) => {
                return Err(VaultError::Shredded {
                    tenant: tenant.to_owned(),
                    at,
                });
            }
            Lookup::Missing => {
                return Err(VaultError::NotFound(format!("no secret {tenant}/{name}")));
            }
            Lookup::Found(s) => s.kind,
        };
        if !caller.may(Op::Revoke, &kind) {
            return Err(denied(
                caller,
                Op::Revoke,
                format!("secrets of kind `{kind}`"),
            ));
        }
        if self.store.revoke(tenant, name).await? {
            let body = Body::CredentialRevoked(CredentialRevoked {
                tenant_id: tenant.to_owned(),
                name: name.to_owned(),
            });
            self.publish(tenant, vec![body], correlation_id).await?;
        }
        Ok(())
    }

    /// Re-wraps every data key not under the active KEK. Idempotent; safe while serving.
    pub async fn rotate(&self, caller: &Caller, correlation_id: &str) -> Result<u32, VaultError> {
        if !caller.may(Op::Rotate, ANY_KIND) {
            return Err(denied(caller, Op::Rotate, "the key ring"));
        }
        let active = self.ring.active_id().to_owned();
        let mut after = Uuid::nil();
        let mut rewrapped = 0u32;
        loop {
            let batch = self
                .store
                .keys_to_rewrap(&active, after, i64::from(self.limits.rotate_batch_size))
                .await?;
            let Some(last) = batch.last() else { break };
            after = last.id;
            // Events are appended per tenant after each batch, so memory stays bounded by the batch.
            let mut events: BTreeMap<String, Vec<Body>> = BTreeMap::new();
            for key in batch {
                let label = key
                    .secret
                    .as_ref()
                    .map_or_else(|| format!("data-key/{}", key.id), |(n, _)| n.clone());
                let Some(new) = self
                    .ring
                    .rewrap(&key.tenant_id, key.id, &key.wrapped)
                    .map_err(|e| VaultError::from_crypto(&key.tenant_id, &label, e))?
                else {
                    continue;
                };
                if !self
                    .store
                    .replace_wrapped(key.id, &key.wrapped.kek_id, &new)
                    .await?
                {
                    continue;
                }
                rewrapped = rewrapped.saturating_add(1);
                if let Some((name, version)) = key.secret {
                    events
                        .entry(key.tenant_id.clone())
                        .or_default()
                        .push(Body::CredentialRotated(CredentialRotated {
                            tenant_id: key.tenant_id,
                            name,
                            version,
                            kek_id: active.clone(),
                        }));
                }
            }
            for (tenant, bodies) in events {
                self.publish(&tenant, bodies, correlation_id).await?;
            }
        }
        Ok(rewrapped)
    }

    /// Stores a one-time secret; returns its reference and expiry.
    pub async fn put_one_time(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        kind: &SecretKind,
        value: &[u8],
        ttl_seconds: u32,
    ) -> Result<(OneTimeRef, DateTime<Utc>), VaultError> {
        if !caller.may(Op::PutOneTime, kind.as_str()) {
            return Err(denied(
                caller,
                Op::PutOneTime,
                format!("secrets of kind `{kind}`"),
            ));
        }
        check_value(value, self.limits.max_value_bytes)?;
        let ttl = if ttl_seconds == 0 {
            self.limits.default_one_time_ttl
        } else {
            Duration::from_secs(ttl_seconds.into())
        };
        if ttl > self.limits.max_one_time_ttl {
            return Err(VaultError::InvalidArgument(format!(
                "ttl_seconds may be at most {}",
                self.limits.max_one_time_ttl.as_secs()
            )));
        }
        // Random (v4), not time-ordered: the reference should not be guessable from another one.
        let r = OneTimeRef {
            tenant: tenant.clone(),
            id: Uuid::new_v4(),
        };
        let name = format!("one-time/{}", r.id);
        let t = tenant.as_str();
        let expires_at = self
            .store
            .put_one_time(t, r.id, kind.as_str(), ttl, |key_id| {
                let key = DataKey::generate();
                let wrapped = self.ring.wrap(t, key_id, &key)?;
                let sealed = key.seal(secret_aad(t, &name, 0).as_bytes(), value)?;
                Ok((wrapped, sealed))
            })
            .await?;
        Ok((r, expires_at))
    }

    /// Takes a one-time secret: returns it and deletes it, atomically.
    pub async fn take_one_time(
        &self,
        caller: &Caller,
        r: &OneTimeRef,
    ) -> Result<Plain, VaultError> {
        if !caller.may_any(Op::TakeOneTime) {
            return Err(denied(caller, Op::TakeOneTime, "any one-time secret"));
        }
        let t = r.tenant.as_str();
        let gone = || {
            VaultError::NotFound(format!(
                "one-time secret {} does not exist, was already taken, or expired",
                r.to_uri()
            ))
        };
        // The ACL decision needs the kind, and must happen before the secret is consumed, or a
        // caller without rights could destroy it.
        let kind = self.store.one_time_kind(t, r.id).await?.ok_or_else(gone)?;
        if !caller.may(Op::TakeOneTime, &kind) {
            return Err(denied(
                caller,
                Op::TakeOneTime,
                format!("secrets of kind `{kind}`"),
            ));
        }
        let taken = self
            .store
            .take_one_time(t, r.id, &kind)
            .await?
            .ok_or_else(gone)?;
        if taken.expired {
            return Err(gone());
        }
        let name = format!("one-time/{}", r.id);
        let crypto = |e| VaultError::from_crypto(t, &name, e);
        let key = self
            .ring
            .unwrap(t, taken.key.0, &taken.key.1)
            .map_err(crypto)?;
        let value = key
            .open(secret_aad(t, &name, 0).as_bytes(), &taken.sealed)
            .map_err(crypto)?;
        Ok(Plain {
            value,
            version: 0,
            kind: taken.kind,
        })
    }

    /// Moves a one-time secret into the named secret `name` of the same tenant, atomically;
    /// a retry of a move that happened answers the same.
    pub async fn move_one_time(
        &self,
        caller: &Caller,
        r: &OneTimeRef,
        name: &SecretName,
        correlation_id: &str,
    ) -> Result<(String, u32), VaultError> {
        if !caller.may_any(Op::MoveOneTime) {
            return Err(denied(caller, Op::MoveOneTime, "any one-time secret"));
        }
        let t = r.tenant.as_str();
        let gone = || {
            VaultError::NotFound(format!(
                "one-time secret {} does not exist, was already taken, or expired",
                r.to_uri()
            ))
        };
        // The kind decides the ACL before anything is consumed; a move that already happened
        // is recognised by the secret it made.
        let kind = match self.store.one_time_kind(t, r.id).await? {
            Some(k) => k,
            None => self
                .store
                .moved_kind(t, name.as_str(), r.id)
                .await?
                .ok_or_else(gone)?,
        };
        if !caller.may(Op::MoveOneTime, &kind) {
            return Err(denied(
                caller,
                Op::MoveOneTime,
                format!("secrets of kind `{kind}`"),
            ));
        }
        let one_time_name = format!("one-time/{}", r.id);
        let moved = self
            .store
            .move_one_time(t, r.id, &kind, name.as_str(), |taken, version, key_id| {
                let old = self.ring.unwrap(t, taken.key.0, &taken.key.1)?;
                let value = old.open(secret_aad(t, &one_time_name, 0).as_bytes(), &taken.sealed)?;
                let key = DataKey::generate();
                let wrapped = self.ring.wrap(t, key_id, &key)?;
                let sealed = key.seal(secret_aad(t, name.as_str(), version).as_bytes(), &value)?;
                Ok((wrapped, sealed))
            })
            .await?
            .ok_or_else(gone)?;
        let reference = SecretRef {
            tenant: r.tenant.clone(),
            name: name.clone(),
        }
        .to_uri();
        // Published on a retry too (its first publish may be what failed), under an id derived
        // from the move, so it is stored once.
        let body = Body::CredentialStored(CredentialStored {
            tenant_id: t.to_owned(),
            name: name.to_string(),
            kind,
            version: moved.version,
            reference: reference.clone(),
        });
        let id = Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("tenantry-vault:moved:{}", r.id).as_bytes(),
        );
        self.publish_as(t, id, body, correlation_id).await?;
        Ok((reference, moved.version))
    }

    /// Destroys every data key of a tenant.
    pub async fn shred(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        correlation_id: &str,
    ) -> Result<u32, VaultError> {
        if !caller.may(Op::Shred, ANY_KIND) {
            return Err(denied(caller, Op::Shred, "tenants"));
        }
        let shredded = self.store.shred_tenant(tenant.as_str()).await?;
        let body = Body::TenantKeysShredded(TenantKeysShredded {
            tenant_id: tenant.to_string(),
            secrets_shredded: shredded,
        });
        self.publish(tenant.as_str(), vec![body], correlation_id)
            .await?;
        Ok(shredded)
    }

    /// Queries the audit log.
    pub async fn audit(
        &self,
        caller: &Caller,
        mut filter: AuditFilter,
    ) -> Result<Vec<AuditRow>, VaultError> {
        if !caller.may(Op::Audit, ANY_KIND) {
            return Err(denied(caller, Op::Audit, "the audit log"));
        }
        filter.limit = match filter.limit {
            0 => 100,
            n => n.min(1000),
        };
        self.store.audit_query(&filter).await
    }

    /// Deletes expired one-time secrets.
    pub async fn purge_expired(&self) -> Result<u64, VaultError> {
        self.store.purge_expired().await
    }
}
