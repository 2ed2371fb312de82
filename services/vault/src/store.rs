//! PostgreSQL repository (sqlx). Holds only ciphertext, wrapped keys and metadata; the crypto is
//! done by the caller through closures so no plaintext crosses this module.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool, Row};
use uuid::Uuid;

use crate::crypto::{CryptoError, Sealed, WrappedKey};
use crate::error::VaultError;

/// Embedded migrations (`services/vault/migrations`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The vault's tables.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

/// What a lookup of one secret found.
pub enum Lookup {
    /// The tenant was shredded.
    Shredded(DateTime<Utc>),
    /// No such secret.
    Missing,
    /// A row (possibly revoked).
    Found(StoredSecret),
}

/// A secret row as stored.
pub struct StoredSecret {
    /// ACL kind.
    pub kind: String,
    /// Latest version.
    pub version: u32,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Data key id and its wrapped form (`None` once revoked).
    pub key: Option<(Uuid, WrappedKey)>,
    /// The sealed value (`None` once revoked).
    pub sealed: Option<Sealed>,
}

/// A data key that is not yet wrapped by the active KEK, with the secret it protects if any.
pub struct KeyToRewrap {
    /// Data key id.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: String,
    /// As stored.
    pub wrapped: WrappedKey,
    /// The secret it protects (`None` for one-time secrets).
    pub secret: Option<(String, u32)>,
}

/// A one-time secret taken out of the table.
pub struct TakenOneTime {
    /// ACL kind.
    pub kind: String,
    /// Whether it had expired (then it is deleted but not returned).
    pub expired: bool,
    /// Data key.
    pub key: (Uuid, WrappedKey),
    /// Sealed value.
    pub sealed: Sealed,
}

/// What a move of a one-time secret did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// The named secret's version it made.
    pub version: u32,
    /// It had been made by an earlier call (a retry): nothing changed now.
    pub again: bool,
}

/// One audit row to write.
#[derive(Debug, Clone, Default)]
pub struct AuditRecord {
    /// Service name, or `anonymous`.
    pub caller: String,
    /// Operation name.
    pub operation: String,
    /// Tenant, if the call named one.
    pub tenant_id: String,
    /// Secret name (or `one-time/<id>`), if any.
    pub secret_name: String,
    /// allowed | denied | unauthenticated | not_found | error.
    pub outcome: String,
    /// The caller's stated reason.
    pub reason: String,
    /// Why the vault decided what it did (error message; never a value).
    pub detail: String,
    /// The caller's correlation id.
    pub correlation_id: String,
}

/// An audit row as read back.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// Row id (monotonic).
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// The record.
    pub record: AuditRecord,
}

/// Audit query filters; empty strings and `None` mean "any".
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Tenant.
    pub tenant_id: String,
    /// Caller.
    pub caller: String,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    /// At most this many rows (newest first).
    pub limit: i64,
}

fn wrapped(
    row: &sqlx::postgres::PgRow,
    prefix: &str,
) -> Result<Option<(Uuid, WrappedKey)>, sqlx::Error> {
    let id: Option<Uuid> = row.try_get(format!("{prefix}id").as_str())?;
    let Some(id) = id else { return Ok(None) };
    Ok(Some((
        id,
        WrappedKey {
            kek_id: row.try_get("kek_id")?,
            wrapped: row.try_get("wrapped_key")?,
            nonce: row.try_get("key_nonce")?,
        },
    )))
}

/// Errors with [`VaultError::Shredded`] when `tenant`'s keys were destroyed: nothing new may be
/// stored for it.
async fn refuse_if_shredded(tx: &mut sqlx::PgConnection, tenant: &str) -> Result<(), VaultError> {
    match sqlx::query_scalar::<_, DateTime<Utc>>(
        "SELECT shredded_at FROM shredded_tenants WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?
    {
        Some(at) => Err(VaultError::Shredded {
            tenant: tenant.to_owned(),
            at,
        }),
        None => Ok(()),
    }
}

/// Deletes a one-time secret (of `kind`) and its data key inside `tx`, returning what was there.
async fn take_one_time_in(
    tx: &mut sqlx::PgConnection,
    tenant: &str,
    id: Uuid,
    kind: &str,
) -> Result<Option<TakenOneTime>, VaultError> {
    let Some(row) = sqlx::query(
        "DELETE FROM one_time_secrets WHERE id = $1 AND tenant_id = $2 AND kind = $3
         RETURNING data_key_id, nonce, ciphertext, expires_at <= now() AS expired",
    )
    .bind(id)
    .bind(tenant)
    .bind(kind)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    let key_id: Uuid = row.try_get("data_key_id")?;
    let key = sqlx::query(
        "DELETE FROM data_keys WHERE id = $1 RETURNING id AS key_id, kek_id, wrapped_key, key_nonce",
    )
    .bind(key_id)
    .fetch_one(&mut *tx)
    .await?;
    Ok(Some(TakenOneTime {
        kind: kind.to_owned(),
        expired: row.try_get("expired")?,
        key: wrapped(&key, "key_")?.ok_or_else(|| anyhow::anyhow!("one-time data key vanished"))?,
        sealed: Sealed {
            nonce: row.try_get("nonce")?,
            ciphertext: row.try_get("ciphertext")?,
        },
    }))
}

fn version(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

impl Store {
    /// Connects, creates the schema if needed, and runs the embedded migrations in it.
    ///
    /// The vault keeps its tables (and its own `_sqlx_migrations`) in `schema`, so it can share a
    /// database with other services without their migration histories colliding.
    pub async fn connect(
        url: &SecretString,
        schema: &str,
        max_connections: u32,
    ) -> Result<Self, VaultError> {
        if schema.is_empty()
            || !schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(VaultError::InvalidArgument(format!(
                "database schema `{schema}` must be a-z 0-9 _"
            )));
        }
        let options =
            PgConnectOptions::from_str(url.expose_secret())?.options([("search_path", schema)]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        pool.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
            .await?;
        MIGRATOR.run(&pool).await.map_err(|e| {
            VaultError::Unexpected(anyhow::Error::new(e).context("migrating the vault schema"))
        })?;
        Ok(Self { pool })
    }

    /// The pool (tests inspect the tables through it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Stores a new version of `tenant/name`. `seal(version, data_key_id)` encrypts the value for
    /// exactly that version; it runs inside the transaction that decides the version.
    pub async fn put_secret<F>(
        &self,
        tenant: &str,
        name: &str,
        kind: &str,
        seal: F,
    ) -> Result<u32, VaultError>
    where
        F: FnOnce(u32, Uuid) -> Result<(WrappedKey, Sealed), CryptoError>,
    {
        let mut tx = self.pool.begin().await?;
        // Serialises puts of one name, so two concurrent first puts do not race on the primary key
        // and versions stay gap-free; puts of different names do not wait for each other.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("vault-secret|{tenant}|{name}"))
            .execute(&mut *tx)
            .await?;
        refuse_if_shredded(&mut tx, tenant).await?;
        let previous: Option<(i32, Option<Uuid>)> = sqlx::query_as(
            "SELECT version, data_key_id FROM secrets WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let next = previous
            .as_ref()
            .map_or(1, |(v, _)| version(*v).saturating_add(1));
        let key_id = Uuid::now_v7();
        let (wrapped, sealed) =
            seal(next, key_id).map_err(|e| VaultError::from_crypto(tenant, name, e))?;
        sqlx::query("INSERT INTO data_keys (id, tenant_id, kek_id, wrapped_key, key_nonce) VALUES ($1, $2, $3, $4, $5)")
            .bind(key_id)
            .bind(tenant)
            .bind(&wrapped.kek_id)
            .bind(&wrapped.wrapped)
            .bind(&wrapped.nonce)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO secrets (tenant_id, name, kind, version, data_key_id, nonce, ciphertext)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (tenant_id, name) DO UPDATE SET
               kind = EXCLUDED.kind, version = EXCLUDED.version, data_key_id = EXCLUDED.data_key_id,
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
        if let Some((_, Some(old_key))) = previous {
            sqlx::query("DELETE FROM data_keys WHERE id = $1")
                .bind(old_key)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(next)
    }

    /// Looks a secret up, telling shredded tenants and missing secrets apart, in one round trip.
    pub async fn lookup(&self, tenant: &str, name: &str) -> Result<Lookup, VaultError> {
        let row = sqlx::query(
            "SELECT sh.shredded_at, s.kind, s.version, s.revoked_at IS NOT NULL AS revoked, s.nonce, s.ciphertext,
                    k.id AS key_id, k.kek_id, k.wrapped_key, k.key_nonce
             FROM (SELECT 1) AS one
             LEFT JOIN shredded_tenants sh ON sh.tenant_id = $1
             LEFT JOIN secrets s ON s.tenant_id = $1 AND s.name = $2
             LEFT JOIN data_keys k ON k.id = s.data_key_id",
        )
        .bind(tenant)
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        if let Some(at) = row.try_get::<Option<DateTime<Utc>>, _>("shredded_at")? {
            return Ok(Lookup::Shredded(at));
        }
        let Some(kind) = row.try_get::<Option<String>, _>("kind")? else {
            return Ok(Lookup::Missing);
        };
        let nonce: Option<Vec<u8>> = row.try_get("nonce")?;
        let ciphertext: Option<Vec<u8>> = row.try_get("ciphertext")?;
        Ok(Lookup::Found(StoredSecret {
            kind,
            version: version(row.try_get::<Option<i32>, _>("version")?.unwrap_or(0)),
            revoked: row.try_get::<Option<bool>, _>("revoked")?.unwrap_or(false),
            key: wrapped(&row, "key_")?,
            sealed: nonce
                .zip(ciphertext)
                .map(|(nonce, ciphertext)| Sealed { nonce, ciphertext }),
        }))
    }

    /// Revokes a secret: drops its value and data key, keeps the row as a tombstone so versions stay
    /// monotonic. Returns false when it was already revoked.
    pub async fn revoke(&self, tenant: &str, name: &str) -> Result<bool, VaultError> {
        let mut tx = self.pool.begin().await?;
        let key: Option<Option<Uuid>> = sqlx::query_scalar(
            "SELECT data_key_id FROM secrets WHERE tenant_id = $1 AND name = $2 AND revoked_at IS NULL FOR UPDATE",
        )
        .bind(tenant)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(key) = key else { return Ok(false) };
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
        tx.commit().await?;
        Ok(true)
    }

    /// Stores a one-time secret. `seal(data_key_id)` encrypts it.
    pub async fn put_one_time<F>(
        &self,
        tenant: &str,
        id: Uuid,
        kind: &str,
        ttl: Duration,
        seal: F,
    ) -> Result<DateTime<Utc>, VaultError>
    where
        F: FnOnce(Uuid) -> Result<(WrappedKey, Sealed), CryptoError>,
    {
        let key_id = Uuid::now_v7();
        let (wrapped, sealed) = seal(key_id)
            .map_err(|e| VaultError::from_crypto(tenant, &format!("one-time/{id}"), e))?;
        let mut tx = self.pool.begin().await?;
        refuse_if_shredded(&mut tx, tenant).await?;
        sqlx::query("INSERT INTO data_keys (id, tenant_id, kek_id, wrapped_key, key_nonce) VALUES ($1, $2, $3, $4, $5)")
            .bind(key_id)
            .bind(tenant)
            .bind(&wrapped.kek_id)
            .bind(&wrapped.wrapped)
            .bind(&wrapped.nonce)
            .execute(&mut *tx)
            .await?;
        // Expiry is computed by the database clock, the same clock `take_one_time` compares with.
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
        tx.commit().await?;
        Ok(expires_at)
    }

    /// The kind of a live one-time secret, without consuming it (for the ACL check).
    pub async fn one_time_kind(
        &self,
        tenant: &str,
        id: Uuid,
    ) -> Result<Option<String>, VaultError> {
        Ok(sqlx::query_scalar("SELECT kind FROM one_time_secrets WHERE id = $1 AND tenant_id = $2 AND expires_at > now()")
            .bind(id)
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Deletes a one-time secret (of `kind`, as checked by the ACL) and its data key atomically,
    /// returning what was there. Of two concurrent takers only one gets a row.
    pub async fn take_one_time(
        &self,
        tenant: &str,
        id: Uuid,
        kind: &str,
    ) -> Result<Option<TakenOneTime>, VaultError> {
        let mut tx = self.pool.begin().await?;
        let taken = take_one_time_in(&mut tx, tenant, id, kind).await?;
        tx.commit().await?;
        Ok(taken)
    }

    /// Moves one-time secret `id` (of `kind`) into the named secret `tenant/name`, in one
    /// transaction: the one-time secret is gone exactly when the new version exists.
    /// `reseal(taken, version, data_key_id)` decrypts it and encrypts it for the new version.
    /// A move already made from `id` answers its version again ([`Moved::again`]).
    pub async fn move_one_time<F>(
        &self,
        tenant: &str,
        id: Uuid,
        kind: &str,
        name: &str,
        reseal: F,
    ) -> Result<Option<Moved>, VaultError>
    where
        F: FnOnce(&TakenOneTime, u32, Uuid) -> Result<(WrappedKey, Sealed), CryptoError>,
    {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("vault-secret|{tenant}|{name}"))
            .execute(&mut *tx)
            .await?;
        refuse_if_shredded(&mut tx, tenant).await?;
        let previous: Option<(i32, Option<Uuid>, Option<Uuid>, bool)> = sqlx::query_as(
            "SELECT version, data_key_id, moved_from, revoked_at IS NOT NULL
             FROM secrets WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((v, _, Some(from), false)) = &previous
            && *from == id
        {
            return Ok(Some(Moved {
                version: version(*v),
                again: true,
            }));
        }
        let Some(taken) = take_one_time_in(&mut tx, tenant, id, kind).await? else {
            return Ok(None);
        };
        if taken.expired {
            // Gone for good either way: deleting it now saves the purge.
            tx.commit().await?;
            return Ok(None);
        }
        let next = previous
            .as_ref()
            .map_or(1, |(v, ..)| version(*v).saturating_add(1));
        let key_id = Uuid::now_v7();
        let (wrapped_key, sealed) =
            reseal(&taken, next, key_id).map_err(|e| VaultError::from_crypto(tenant, name, e))?;
        sqlx::query("INSERT INTO data_keys (id, tenant_id, kek_id, wrapped_key, key_nonce) VALUES ($1, $2, $3, $4, $5)")
            .bind(key_id)
            .bind(tenant)
            .bind(&wrapped_key.kek_id)
            .bind(&wrapped_key.wrapped)
            .bind(&wrapped_key.nonce)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO secrets (tenant_id, name, kind, version, data_key_id, nonce, ciphertext, moved_from)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant_id, name) DO UPDATE SET
               kind = EXCLUDED.kind, version = EXCLUDED.version, data_key_id = EXCLUDED.data_key_id,
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
        if let Some((_, Some(old_key), _, _)) = previous {
            sqlx::query("DELETE FROM data_keys WHERE id = $1")
                .bind(old_key)
                .execute(&mut *tx)
                .await?;
        }
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

    /// Deletes expired one-time secrets (and their data keys). Returns how many.
    pub async fn purge_expired(&self) -> Result<u64, VaultError> {
        let done = sqlx::query(
            "DELETE FROM data_keys WHERE id IN (SELECT data_key_id FROM one_time_secrets WHERE expires_at <= now())",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Up to `limit` data keys not wrapped by `active`, after `after` in id order (keyset paging,
    /// so a key that cannot be re-wrapped is not fetched again and again).
    pub async fn keys_to_rewrap(
        &self,
        active: &str,
        after: Uuid,
        limit: i64,
    ) -> Result<Vec<KeyToRewrap>, VaultError> {
        let rows = sqlx::query(
            "SELECT k.id AS key_id, k.tenant_id, k.kek_id, k.wrapped_key, k.key_nonce, s.name, s.version
             FROM data_keys k LEFT JOIN secrets s ON s.data_key_id = k.id
             WHERE k.kek_id <> $1 AND k.id > $2 ORDER BY k.id LIMIT $3",
        )
        .bind(active)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let (id, wrapped) = wrapped(row, "key_")?.ok_or(sqlx::Error::RowNotFound)?;
                let name: Option<String> = row.try_get("name")?;
                let v: Option<i32> = row.try_get("version")?;
                Ok(KeyToRewrap {
                    id,
                    tenant_id: row.try_get("tenant_id")?,
                    wrapped,
                    secret: name.map(|n| (n, version(v.unwrap_or(0)))),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Replaces a wrapped key if it is still wrapped by `old_kek` (a concurrent rotation or a
    /// revoke in between simply makes this a no-op). Returns whether it changed.
    pub async fn replace_wrapped(
        &self,
        id: Uuid,
        old_kek: &str,
        new: &WrappedKey,
    ) -> Result<bool, VaultError> {
        let done = sqlx::query(
            "UPDATE data_keys SET kek_id = $3, wrapped_key = $4, key_nonce = $5, rewrapped_at = now()
             WHERE id = $1 AND kek_id = $2",
        )
        .bind(id)
        .bind(old_kek)
        .bind(&new.kek_id)
        .bind(&new.wrapped)
        .bind(&new.nonce)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Destroys every data key of a tenant and marks it shredded. Returns how many live secrets
    /// lost their key. Ciphertexts stay (they are undecryptable now); one-time secrets go.
    pub async fn shred_tenant(&self, tenant: &str) -> Result<u32, VaultError> {
        let mut tx = self.pool.begin().await?;
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM secrets WHERE tenant_id = $1 AND data_key_id IS NOT NULL",
        )
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM data_keys WHERE tenant_id = $1")
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO shredded_tenants (tenant_id, secrets_shredded) VALUES ($1, $2)
             ON CONFLICT (tenant_id) DO UPDATE SET secrets_shredded = shredded_tenants.secrets_shredded + EXCLUDED.secrets_shredded",
        )
        .bind(tenant)
        .bind(i32::try_from(live).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(u32::try_from(live).unwrap_or(u32::MAX))
    }

    /// Appends an audit row.
    pub async fn audit(&self, r: &AuditRecord) -> Result<(), VaultError> {
        sqlx::query(
            "INSERT INTO audit_log (caller, operation, tenant_id, secret_name, outcome, reason, detail, correlation_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&r.caller)
        .bind(&r.operation)
        .bind(&r.tenant_id)
        .bind(&r.secret_name)
        .bind(&r.outcome)
        .bind(&r.reason)
        .bind(&r.detail)
        .bind(&r.correlation_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Reads audit rows, newest first.
    pub async fn audit_query(&self, f: &AuditFilter) -> Result<Vec<AuditRow>, VaultError> {
        let rows = sqlx::query(
            "SELECT id, at, caller, operation, tenant_id, secret_name, outcome, reason, detail, correlation_id
             FROM audit_log
             WHERE ($1 = '' OR tenant_id = $1) AND ($2 = '' OR caller = $2)
               AND ($3::timestamptz IS NULL OR at >= $3) AND ($4::timestamptz IS NULL OR at < $4)
             ORDER BY id DESC LIMIT $5",
        )
        .bind(&f.tenant_id)
        .bind(&f.caller)
        .bind(f.since)
        .bind(f.until)
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    record: AuditRecord {
                        caller: r.try_get("caller")?,
                        operation: r.try_get("operation")?,
                        tenant_id: r.try_get("tenant_id")?,
                        secret_name: r.try_get("secret_name")?,
                        outcome: r.try_get("outcome")?,
                        reason: r.try_get("reason")?,
                        detail: r.try_get("detail")?,
                        correlation_id: r.try_get("correlation_id")?,
                    },
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
