//! One-time secrets: put, take (with replay of a retried take) and the helper a move shares.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{
    AuditRecord, Store, TakenOneTime, insert_audit, insert_data_key, lock_tenant,
    refuse_if_shredded, wrapped,
};
use crate::crypto::{CryptoError, Sealed, WrappedKey};
use crate::error::VaultError;

/// How a take went.
pub enum Taken<T> {
    /// Taken now, or replayed for a retry of the same request: `open`'s result.
    Value(T),
    /// No live one-time secret (never existed, expired, or taken by another request).
    Gone,
}

/// Deletes live one-time secret `id` (of `kind`) inside `tx`, returning its sealed value and data
/// key. The data key row stays: the caller deletes it or keeps it for a replay.
pub(super) async fn take_in(
    tx: &mut sqlx::PgConnection,
    tenant: &str,
    id: Uuid,
    kind: &str,
) -> Result<Option<TakenOneTime>, VaultError> {
    let Some(row) = sqlx::query(
        "DELETE FROM one_time_secrets o USING data_keys k
         WHERE o.id = $1 AND o.tenant_id = $2 AND o.kind = $3 AND o.expires_at > now() AND k.id = o.data_key_id
         RETURNING o.nonce, o.ciphertext, k.id AS key_id, k.kek_id, k.wrapped_key, k.key_nonce",
    )
    .bind(id)
    .bind(tenant)
    .bind(kind)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(TakenOneTime {
        kind: kind.to_owned(),
        key: wrapped(&row, "key_")?.ok_or_else(|| anyhow::anyhow!("one-time data key vanished"))?,
        sealed: Sealed {
            nonce: row.try_get("nonce")?,
            ciphertext: row.try_get("ciphertext")?,
        },
    }))
}

/// Who takes, and how a retry is recognised.
pub struct TakeRequest<'a> {
    /// The caller's request id ("" = no replay).
    pub request_id: &'a str,
    /// The caller's name: a replay is only for the same caller.
    pub caller: &'a str,
    /// How long a taken secret stays replayable.
    pub window: Duration,
}

impl Store {
    /// Stores a one-time secret. `seal(data_key_id)` encrypts it.
    pub async fn put_one_time(
        &self,
        tenant: &str,
        id: Uuid,
        kind: &str,
        ttl: Duration,
        seal: impl FnOnce(Uuid) -> Result<(WrappedKey, Sealed), CryptoError>,
        audit: &AuditRecord,
    ) -> Result<DateTime<Utc>, VaultError> {
        let key_id = Uuid::now_v7();
        let (wrapped, sealed) = seal(key_id)
            .map_err(|e| VaultError::from_crypto(tenant, &format!("one-time/{id}"), e))?;
        let mut tx = self.pool.begin().await?;
        lock_tenant(&mut tx, tenant, false).await?;
        refuse_if_shredded(&mut tx, tenant).await?;
        insert_data_key(&mut tx, key_id, tenant, &wrapped).await?;
        // Expiry is computed by the database clock, the same clock a take compares with.
        let expires_at: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO one_time_secrets (id, tenant_id, kind, data_key_id, nonce, ciphertext, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
             RETURNING expires_at",
        )
        .bind(id)
        .bind(tenant)
        .bind(kind)
        .bind(key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(ttl.as_secs_f64())
        .fetch_one(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(expires_at)
    }

    /// The kind of a live one-time secret, or of one taken within the replay window, without
    /// consuming it (for the ACL check).
    pub async fn one_time_kind(
        &self,
        tenant: &str,
        id: Uuid,
    ) -> Result<Option<String>, VaultError> {
        Ok(sqlx::query_scalar(
            "SELECT kind FROM one_time_secrets WHERE id = $1 AND tenant_id = $2 AND expires_at > now()
             UNION ALL
             SELECT kind FROM taken_one_time WHERE id = $1 AND tenant_id = $2 AND keep_until > now()
             LIMIT 1",
        )
        .bind(id)
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Takes one-time secret `id` (of `kind`, as checked by the ACL) in one transaction that
    /// also writes the audit row; `open(taken)` decrypts it before the commit, so a secret is
    /// never consumed without its value being returned. With a request id the sealed value and
    /// its data key are kept for `window`, and a take of the same request (and caller) answers
    /// the same; without one, both are deleted now. Of concurrent takers only one gets it.
    pub async fn take_one_time<T>(
        &self,
        tenant: &str,
        id: Uuid,
        kind: &str,
        request: &TakeRequest<'_>,
        open: impl FnOnce(&TakenOneTime) -> Result<T, VaultError>,
        audit: &AuditRecord,
    ) -> Result<Taken<T>, VaultError> {
        let mut tx = self.pool.begin().await?;
        lock_tenant(&mut tx, tenant, false).await?;
        if let Some(taken) = take_in(&mut tx, tenant, id, kind).await? {
            let value = open(&taken)?;
            if request.request_id.is_empty() {
                sqlx::query("DELETE FROM data_keys WHERE id = $1")
                    .bind(taken.key.0)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query(
                    "INSERT INTO taken_one_time (id, tenant_id, kind, request_id, caller, data_key_id, nonce, ciphertext, keep_until)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9))",
                )
                .bind(id)
                .bind(tenant)
                .bind(kind)
                .bind(request.request_id)
                .bind(request.caller)
                .bind(taken.key.0)
                .bind(&taken.sealed.nonce)
                .bind(&taken.sealed.ciphertext)
                .bind(request.window.as_secs_f64())
                .execute(&mut *tx)
                .await?;
            }
            insert_audit(&mut tx, audit).await?;
            tx.commit().await?;
            return Ok(Taken::Value(value));
        }
        if request.request_id.is_empty() {
            return Ok(Taken::Gone);
        }
        // Not live: a retry of the take that consumed it gets the kept value again.
        let Some(row) = sqlx::query(
            "SELECT t.nonce, t.ciphertext, k.id AS key_id, k.kek_id, k.wrapped_key, k.key_nonce
             FROM taken_one_time t JOIN data_keys k ON k.id = t.data_key_id
             WHERE t.id = $1 AND t.tenant_id = $2 AND t.kind = $3 AND t.request_id = $4
               AND t.caller = $5 AND t.keep_until > now()",
        )
        .bind(id)
        .bind(tenant)
        .bind(kind)
        .bind(request.request_id)
        .bind(request.caller)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(Taken::Gone);
        };
        let taken = TakenOneTime {
            kind: kind.to_owned(),
            key: wrapped(&row, "key_")?
                .ok_or_else(|| anyhow::anyhow!("taken one-time data key vanished"))?,
            sealed: Sealed {
                nonce: row.try_get("nonce")?,
                ciphertext: row.try_get("ciphertext")?,
            },
        };
        let value = open(&taken)?;
        let mut audit = audit.clone();
        audit.detail = "replayed for a retry of the same request".into();
        insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(Taken::Value(value))
    }
}
