//! What each vault operation does, given an authenticated caller and validated input. The gRPC
//! layer (`grpc`) adds authentication, auditing and status mapping around these.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventstore::EventStore;
use proto::v1::event::Body;
use proto::v1::{CredentialRevoked, CredentialRotated, CredentialStored, TenantKeysShredded};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::acl::{ANY_KIND, Acl, Caller, Op};
use crate::crypto::{DataKey, KeyRing, secret_aad};
use crate::error::VaultError;
use crate::names::{OneTimeRef, SecretKind, SecretName, SecretRef, TenantId};
use crate::store::outbox::OutboxEvent;
use crate::store::{AuditFilter, AuditRecord, AuditRow, Lookup, Rewrap, Store, Taken};

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
    /// How long a one-time secret taken with a request id can be taken again by that request.
    pub take_replay_window: Duration,
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
    pub(crate) events: EventStore,
    limits: Limits,
    /// Wakes the outbox relay after a commit, so events follow changes without waiting a poll.
    pub(crate) relay_wake: Arc<tokio::sync::Notify>,
}

fn denied(caller: &Caller, op: Op, what: impl Into<String>) -> VaultError {
    VaultError::PermissionDenied {
        caller: caller.name.clone(),
        op,
        what: what.into(),
    }
}

/// Called right after a change committed: wakes the relay, after the hidden crash point the
/// outbox test uses (`TENANTRY_VAULT_CRASH_AT=after-commit` aborts the process here, between
/// commit and publish).
fn committed(wake: &tokio::sync::Notify) {
    static CRASH: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *CRASH
        .get_or_init(|| std::env::var("TENANTRY_VAULT_CRASH_AT").is_ok_and(|v| v == "after-commit"))
    {
        std::process::abort();
    }
    wake.notify_one();
}

/// `caller` may run `op` on secrets of `kind`, else the denial the audit log records.
fn allow(caller: &Caller, op: Op, kind: &str) -> Result<(), VaultError> {
    if caller.may(op, kind) {
        Ok(())
    } else {
        Err(denied(caller, op, format!("secrets of kind `{kind}`")))
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
            relay_wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Stores a new version of a secret. A stored secret's kind never changes.
    pub async fn put(
        &self,
        caller: &Caller,
        r: &SecretRef,
        kind: &SecretKind,
        value: &[u8],
        audit: &AuditRecord,
    ) -> Result<(String, u32), VaultError> {
        allow(caller, Op::Put, kind.as_str())?;
        check_value(value, self.limits.max_value_bytes)?;
        let (tenant, name) = (r.tenant.as_str(), r.name.as_str());
        let reference = r.to_uri();
        let version = self
            .store
            .put_secret(
                tenant,
                name,
                kind.as_str(),
                |stored| allow(caller, Op::Put, stored),
                |version, key_id| {
                    let key = DataKey::generate();
                    let wrapped = self.ring.wrap(tenant, key_id, &key)?;
                    let sealed = key.seal(secret_aad(tenant, name, version).as_bytes(), value)?;
                    Ok((wrapped, sealed))
                },
                |version| {
                    OutboxEvent::derived(
                        &format!("stored:{tenant}/{name}/{version}"),
                        Body::CredentialStored(CredentialStored {
                            tenant_id: tenant.to_owned(),
                            name: name.to_owned(),
                            kind: kind.to_string(),
                            version,
                            reference: reference.clone(),
                        }),
                    )
                },
                audit,
            )
            .await?;
        committed(&self.relay_wake);
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
        allow(caller, Op::Get, &secret.kind)?;
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
        audit: &AuditRecord,
    ) -> Result<(), VaultError> {
        if !caller.may_any(Op::Revoke) {
            return Err(denied(caller, Op::Revoke, "any secret"));
        }
        let (tenant, name) = (r.tenant.as_str(), r.name.as_str());
        // The kind never changes once stored, so this check holds for the transaction below.
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
        allow(caller, Op::Revoke, &kind)?;
        let changed = self
            .store
            .revoke(
                tenant,
                name,
                |version| {
                    OutboxEvent::derived(
                        &format!("revoked:{tenant}/{name}/{version}"),
                        Body::CredentialRevoked(CredentialRevoked {
                            tenant_id: tenant.to_owned(),
                            name: name.to_owned(),
                        }),
                    )
                },
                audit,
            )
            .await?;
        if changed {
            committed(&self.relay_wake);
        }
        Ok(())
    }

    /// Re-wraps every data key not under the active KEK, one transaction (with its audit row
    /// and events) per batch. Idempotent; safe while serving.
    pub async fn rotate(&self, caller: &Caller, audit: &AuditRecord) -> Result<u32, VaultError> {
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
            let mut changes = Vec::with_capacity(batch.len());
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
                let event = key.secret.map(|(name, version)| {
                    OutboxEvent::derived(
                        &format!("rotated:{}:{active}", key.id),
                        Body::CredentialRotated(CredentialRotated {
                            tenant_id: key.tenant_id.clone(),
                            name,
                            version,
                            kek_id: active.clone(),
                        }),
                    )
                });
                changes.push(Rewrap {
                    id: key.id,
                    tenant: key.tenant_id,
                    old_kek: key.wrapped.kek_id.clone(),
                    new,
                    event,
                });
            }
            if changes.is_empty() {
                continue;
            }
            let n = self.store.rewrap_batch(changes, audit).await?;
            rewrapped = rewrapped.saturating_add(n);
            if n > 0 {
                committed(&self.relay_wake);
            }
        }
        Ok(rewrapped)
    }

    /// Stores a one-time secret; returns its reference and expiry. `audit` gets the secret's
    /// name once it has one.
    pub async fn put_one_time(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        kind: &SecretKind,
        value: &[u8],
        ttl_seconds: u32,
        audit: &mut AuditRecord,
    ) -> Result<(OneTimeRef, DateTime<Utc>), VaultError> {
        allow(caller, Op::PutOneTime, kind.as_str())?;
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
        audit.secret_name = name.clone();
        let t = tenant.as_str();
        let expires_at = self
            .store
            .put_one_time(
                t,
                r.id,
                kind.as_str(),
                ttl,
                |key_id| {
                    let key = DataKey::generate();
                    let wrapped = self.ring.wrap(t, key_id, &key)?;
                    let sealed = key.seal(secret_aad(t, &name, 0).as_bytes(), value)?;
                    Ok((wrapped, sealed))
                },
                audit,
            )
            .await?;
        committed(&self.relay_wake);
        Ok((r, expires_at))
    }

    /// Takes a one-time secret: returns it and consumes it, atomically. With a request id, a
    /// retry of the same request by the same caller within the replay window answers the same.
    pub async fn take_one_time(
        &self,
        caller: &Caller,
        r: &OneTimeRef,
        request_id: &str,
        audit: &AuditRecord,
    ) -> Result<Plain, VaultError> {
        if !caller.may_any(Op::TakeOneTime) {
            return Err(denied(caller, Op::TakeOneTime, "any one-time secret"));
        }
        if request_id.len() > 128 || !request_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(VaultError::InvalidArgument(
                "request_id may hold at most 128 printable ASCII characters".into(),
            ));
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
        allow(caller, Op::TakeOneTime, &kind)?;
        let name = format!("one-time/{}", r.id);
        let request = crate::store::TakeRequest {
            request_id,
            caller: &caller.name,
            window: self.limits.take_replay_window,
        };
        let taken = self
            .store
            .take_one_time(
                t,
                r.id,
                &kind,
                &request,
                |taken| {
                    let crypto = |e| VaultError::from_crypto(t, &name, e);
                    let key = self
                        .ring
                        .unwrap(t, taken.key.0, &taken.key.1)
                        .map_err(crypto)?;
                    key.open(secret_aad(t, &name, 0).as_bytes(), &taken.sealed)
                        .map_err(crypto)
                },
                audit,
            )
            .await?;
        match taken {
            Taken::Value(value) => Ok(Plain {
                value,
                version: 0,
                kind,
            }),
            Taken::Gone => Err(gone()),
        }
    }

    /// Moves a one-time secret into the named secret `name` of the same tenant, atomically;
    /// a retry of a move that happened answers the same.
    pub async fn move_one_time(
        &self,
        caller: &Caller,
        r: &OneTimeRef,
        name: &SecretName,
        audit: &AuditRecord,
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
        allow(caller, Op::MoveOneTime, &kind)?;
        let one_time_name = format!("one-time/{}", r.id);
        let reference = SecretRef {
            tenant: r.tenant.clone(),
            name: name.clone(),
        }
        .to_uri();
        let moved = self
            .store
            .move_one_time(
                t,
                r.id,
                &kind,
                name.as_str(),
                |stored| allow(caller, Op::MoveOneTime, stored),
                |taken, version, key_id| {
                    let old = self.ring.unwrap(t, taken.key.0, &taken.key.1)?;
                    let value =
                        old.open(secret_aad(t, &one_time_name, 0).as_bytes(), &taken.sealed)?;
                    let key = DataKey::generate();
                    let wrapped = self.ring.wrap(t, key_id, &key)?;
                    let sealed =
                        key.seal(secret_aad(t, name.as_str(), version).as_bytes(), &value)?;
                    Ok((wrapped, sealed))
                },
                // The id is derived from the move (as before the outbox), so the event is the
                // same whichever instance publishes it.
                |version| {
                    OutboxEvent::derived(
                        &format!("moved:{}", r.id),
                        Body::CredentialStored(CredentialStored {
                            tenant_id: t.to_owned(),
                            name: name.to_string(),
                            kind: kind.clone(),
                            version,
                            reference: reference.clone(),
                        }),
                    )
                },
                audit,
            )
            .await?
            .ok_or_else(gone)?;
        if !moved.again {
            committed(&self.relay_wake);
        }
        Ok((reference, moved.version))
    }

    /// Destroys every data key of a tenant. Needs a shred grant covering every kind the tenant
    /// holds (a `*` grant covers all): destroying keys is the strongest write there is, so a
    /// caller may not do to a kind by shredding what it could not do by revoking. Shredding a
    /// shredded tenant answers the first count again and records no second event.
    pub async fn shred(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        audit: &AuditRecord,
    ) -> Result<u32, VaultError> {
        if !caller.may_any(Op::Shred) {
            return Err(denied(caller, Op::Shred, "tenants"));
        }
        let t = tenant.as_str();
        let mut first = false;
        let shredded = self
            .store
            .shred_tenant(
                t,
                |kind| allow(caller, Op::Shred, kind),
                |count| {
                    first = true;
                    OutboxEvent::derived(
                        &format!("shredded:{t}"),
                        Body::TenantKeysShredded(TenantKeysShredded {
                            tenant_id: t.to_owned(),
                            secrets_shredded: count,
                        }),
                    )
                },
                audit,
            )
            .await?;
        if first {
            committed(&self.relay_wake);
        }
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

    /// Deletes expired one-time secrets and taken ones past their replay window.
    pub async fn purge_expired(&self) -> Result<u64, VaultError> {
        self.store.purge_expired().await
    }
}
