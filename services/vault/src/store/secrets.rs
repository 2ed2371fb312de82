//! Named secrets: put, revoke, move from a one-time secret, and Rotate's re-wrapping.

use uuid::Uuid;

use super::outbox::{self, OutboxEvent};
use super::{
    AuditRecord, Moved, Store, TakenOneTime, insert_audit, insert_data_key, lock_tenant,
    refuse_if_shredded, version,
};
use crate::crypto::{CryptoError, Sealed, WrappedKey};
use crate::error::VaultError;

/// One data key re-wrapped by Rotate, with the event to record if it changed.
pub struct Rewrap {
    /// Data key id.
    pub id: Uuid,
    /// The tenant.
    pub tenant: String,
    /// The KEK it was wrapped with when read (the update is a no-op if it changed since).
    pub old_kek: String,
    /// The new wrapping.
    pub new: WrappedKey,
    /// The event of the secret it protects, if any.
    pub event: Option<OutboxEvent>,
}

/// A move's target as stored: version, data key, `moved_from`, revoked, kind.
type MoveTarget = (i32, Option<Uuid>, Option<Uuid>, bool, String);

/// Serialises changes of one name, so two concurrent first puts do not race on the primary key
/// and versions stay gap-free; changes of different names do not wait for each other.
async fn lock_name(
    tx: &mut sqlx::PgConnection,
    tenant: &str,
    name: &str,
) -> Result<(), VaultError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("vault-secret|{tenant}|{name}"))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A stored secret's kind is fixed: `authorize(stored)` decides whether the caller may touch a
/// secret of the stored kind at all (else it is denied, whatever kind it asked for), then a
/// different requested kind is refused.
fn check_kind(
    tenant: &str,
    name: &str,
    stored: &str,
    requested: &str,
    authorize: impl FnOnce(&str) -> Result<(), VaultError>,
) -> Result<(), VaultError> {
    authorize(stored)?;
    if stored != requested {
        return Err(VaultError::KindMismatch {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            stored: stored.to_owned(),
            requested: requested.to_owned(),
        });
    }
    Ok(())
}

impl Store {
    /// Stores a new version of `tenant/name` of `kind`. `authorize(stored_kind)` vets an existing
    /// secret's kind; `seal(version, data_key_id)` encrypts the value for exactly that version;
    /// `event(version)` is what the outbox records. Audit row and event commit with the change.
    #[allow(clippy::too_many_arguments)] // one transaction's worth of inputs
    pub async fn put_secret(
        &self,
        tenant: &str,
        name: &str,
        kind: &str,
        authorize: impl FnOnce(&str) -> Result<(), VaultError>,
        seal: impl FnOnce(u32, Uuid) -> Result<(WrappedKey, Sealed), CryptoError>,
        event: impl FnOnce(u32) -> OutboxEvent,
        audit: &AuditRecord,
    ) -> Result<u32, VaultError> {
        let mut tx = self.pool.begin().await?;
        lock_tenant(&mut tx, tenant, false).await?;
        lock_name(&mut tx, tenant, name).await?;
        refuse_if_shredded(&mut tx, tenant).await?;
        let previous: Option<(i32, Option<Uuid>, String)> = sqlx::query_as(
            "SELECT version, data_key_id, kind FROM secrets WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((_, _, stored)) = &previous {
            check_kind(tenant, name, stored, kind, authorize)?;
        }
        let next = previous
            .as_ref()
            .map_or(1, |(v, ..)| version(*v).saturating_add(1));
        let key_id = Uuid::now_v7();
        let (wrapped, sealed) =
            seal(next, key_id).map_err(|e| VaultError::from_crypto(tenant, name, e))?;
        insert_data_key(&mut tx, key_id, tenant, &wrapped).await?;
        sqlx::query(
            "INSERT INTO secrets (tenant_id, name, kind, version, data_key_id, nonce, ciphertext)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (tenant_id, name) DO UPDATE SET
               version = EXCLUDED.version, data_key_id = EXCLUDED.data_key_id,
               nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext, moved_from = NULL,
               updated_at = now(), revoked_at = NULL",
        )
        .bind(tenant)
        .bind(name)
        .bind(kind)
        .bind(i32::try_from(next).unwrap_or(i32::MAX))
        .bind(key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .execute(&mut *tx)
        .await?;
        // Only the latest version stays readable: the previous data key goes in the same
        // transaction, which makes the old ciphertext unrecoverable.
        if let Some((_, Some(old_key), _)) = previous {
            sqlx::query("DELETE FROM data_keys WHERE id = $1")
                .bind(old_key)
                .execute(&mut *tx)
                .await?;
        }
        outbox::insert(&mut tx, tenant, event(next), &audit.correlation_id).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(next)
    }

    /// Revokes a secret: drops its value and data key, keeps the row as a tombstone so versions
    /// stay monotonic. `event(version)` is recorded when it was live; a revoked secret stays
    /// revoked (no event). Returns whether it changed.
    pub async fn revoke(
        &self,
        tenant: &str,
        name: &str,
        event: impl FnOnce(u32) -> OutboxEvent,
        audit: &AuditRecord,
    ) -> Result<bool, VaultError> {
        let mut tx = self.pool.begin().await?;
        lock_tenant(&mut tx, tenant, false).await?;
        let live: Option<(i32, Option<Uuid>)> = sqlx::query_as(
            "SELECT version, data_key_id FROM secrets WHERE tenant_id = $1 AND name = $2 AND revoked_at IS NULL FOR UPDATE",
        )
        .bind(tenant)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((v, key)) = &live {
            sqlx::query(
                "UPDATE secrets SET revoked_at = now(), updated_at = now(), data_key_id = NULL, nonce = NULL, ciphertext = NULL
                 WHERE tenant_id = $1 AND name = $2",
            )
            .bind(tenant)
            .bind(name)
            .execute(&mut *tx)
            .await?;
            if let Some(key) = key {
                sqlx::query("DELETE FROM data_keys WHERE id = $1")
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            }
            outbox::insert(&mut tx, tenant, event(version(*v)), &audit.correlation_id).await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(live.is_some())
    }

    /// Moves one-time secret `id` (of `kind`, as checked by the ACL) into the named secret
    /// `tenant/name`, in one transaction: the one-time secret is gone exactly when the new
    /// version exists. `authorize(stored_kind)` vets an existing target; `reseal(taken, version,
    /// data_key_id)` decrypts and re-encrypts for the new version. A move already made from `id`
    /// answers its version again ([`Moved::again`]) and records nothing new but the audit row.
    #[allow(clippy::too_many_arguments)] // one transaction's worth of inputs
    pub async fn move_one_time(
        &self,
        tenant: &str,
        id: Uuid,
        kind: &str,
        name: &str,
        authorize: impl FnOnce(&str) -> Result<(), VaultError>,
        reseal: impl FnOnce(&TakenOneTime, u32, Uuid) -> Result<(WrappedKey, Sealed), CryptoError>,
        event: impl FnOnce(u32) -> OutboxEvent,
        audit: &AuditRecord,
    ) -> Result<Option<Moved>, VaultError> {
        let mut tx = self.pool.begin().await?;
        lock_tenant(&mut tx, tenant, false).await?;
        lock_name(&mut tx, tenant, name).await?;
        refuse_if_shredded(&mut tx, tenant).await?;
        let previous: Option<MoveTarget> = sqlx::query_as(
            "SELECT version, data_key_id, moved_from, revoked_at IS NOT NULL, kind
             FROM secrets WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((v, _, Some(from), false, _)) = &previous
            && *from == id
        {
            insert_audit(&mut tx, audit).await?;
            tx.commit().await?;
            return Ok(Some(Moved {
                version: version(*v),
                again: true,
            }));
        }
        if let Some((.., stored)) = &previous {
            check_kind(tenant, name, stored, kind, authorize)?;
        }
        let Some(taken) = super::one_time::take_in(&mut tx, tenant, id, kind).await? else {
            return Ok(None);
        };
        let next = previous
            .as_ref()
            .map_or(1, |(v, ..)| version(*v).saturating_add(1));
        let key_id = Uuid::now_v7();
        let (wrapped_key, sealed) =
            reseal(&taken, next, key_id).map_err(|e| VaultError::from_crypto(tenant, name, e))?;
        sqlx::query("DELETE FROM data_keys WHERE id = $1")
            .bind(taken.key.0)
            .execute(&mut *tx)
            .await?;
        insert_data_key(&mut tx, key_id, tenant, &wrapped_key).await?;
        sqlx::query(
            "INSERT INTO secrets (tenant_id, name, kind, version, data_key_id, nonce, ciphertext, moved_from)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant_id, name) DO UPDATE SET
               version = EXCLUDED.version, data_key_id = EXCLUDED.data_key_id,
               nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext, moved_from = EXCLUDED.moved_from,
               updated_at = now(), revoked_at = NULL",
        )
        .bind(tenant)
        .bind(name)
        .bind(kind)
        .bind(i32::try_from(next).unwrap_or(i32::MAX))
        .bind(key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if let Some((_, Some(old_key), ..)) = previous {
            sqlx::query("DELETE FROM data_keys WHERE id = $1")
                .bind(old_key)
                .execute(&mut *tx)
                .await?;
        }
        outbox::insert(&mut tx, tenant, event(next), &audit.correlation_id).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Some(Moved {
            version: next,
            again: false,
        }))
    }

    /// The kind of a secret made by moving one-time secret `id` into `tenant/name`, if it was.
    pub async fn moved_kind(
        &self,
        tenant: &str,
        name: &str,
        id: Uuid,
    ) -> Result<Option<String>, VaultError> {
        Ok(sqlx::query_scalar(
            "SELECT kind FROM secrets WHERE tenant_id = $1 AND name = $2 AND moved_from = $3",
        )
        .bind(tenant)
        .bind(name)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Replaces a batch of wrapped keys (each only if still wrapped by its old KEK: a concurrent
    /// rotation, revoke or shred makes it a no-op), with the events of those that changed and
    /// the batch's audit row, in one transaction. Returns how many changed.
    pub async fn rewrap_batch(
        &self,
        batch: Vec<Rewrap>,
        audit: &AuditRecord,
    ) -> Result<u32, VaultError> {
        let mut tx = self.pool.begin().await?;
        let mut changed = 0u32;
        for r in batch {
            let done = sqlx::query(
                "UPDATE data_keys SET kek_id = $3, wrapped_key = $4, key_nonce = $5, rewrapped_at = now()
                 WHERE id = $1 AND kek_id = $2",
            )
            .bind(r.id)
            .bind(&r.old_kek)
            .bind(&r.new.kek_id)
            .bind(&r.new.wrapped)
            .bind(&r.new.nonce)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                continue;
            }
            changed = changed.saturating_add(1);
            if let Some(event) = r.event {
                outbox::insert(&mut tx, &r.tenant, event, &audit.correlation_id).await?;
            }
        }
        let mut audit = audit.clone();
        audit.detail = format!("re-wrapped a batch of {changed} data keys");
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(changed)
    }
}
