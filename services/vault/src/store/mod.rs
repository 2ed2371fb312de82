//! PostgreSQL repository (sqlx). Holds only ciphertext, wrapped keys and metadata; the crypto is
//! done by the caller through closures so no plaintext crosses this module.
//!
//! Every change runs in one transaction that also writes its audit row ([`insert_audit`]) and its
//! events ([`outbox`]), so a change is committed exactly when its audit row and events are.
//! Tenant-scoped changes first take the tenant's lock ([`lock_tenant`]): shared for puts, moves,
//! takes and revokes, exclusive for shred, so nothing is stored after a shred's commit.

mod one_time;
pub mod outbox;
mod secrets;
mod tenant;

pub use one_time::{TakeRequest, Taken};
pub use secrets::Rewrap;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool, Row};
use uuid::Uuid;

use crate::crypto::{Sealed, WrappedKey};
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

/// A one-time secret's sealed value and data key, as taken (or moved) out of the table.
pub struct TakenOneTime {
    /// ACL kind.
    pub kind: String,
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

/// Takes `tenant`'s lock for the rest of the transaction: `exclusive` for shred, shared for every
/// other tenant-scoped change. It is taken first, before any per-secret lock, so lock order is
/// the same everywhere (no deadlock), and a shred waits for the changes in flight and is waited
/// for by the ones that come after it (which then see the tenant shredded).
pub(crate) async fn lock_tenant(
    tx: &mut sqlx::PgConnection,
    tenant: &str,
    exclusive: bool,
) -> Result<(), VaultError> {
    let sql = if exclusive {
        "SELECT pg_advisory_xact_lock(hashtextextended('vault:' || $1, 0))"
    } else {
        "SELECT pg_advisory_xact_lock_shared(hashtextextended('vault:' || $1, 0))"
    };
    sqlx::query(sql).bind(tenant).execute(&mut *tx).await?;
    Ok(())
}

/// Writes the audit row of a change inside its transaction, as `allowed`.
pub(crate) async fn insert_audit(
    tx: &mut sqlx::PgConnection,
    r: &AuditRecord,
) -> Result<(), VaultError> {
    sqlx::query(
        "INSERT INTO audit_log (caller, operation, tenant_id, secret_name, outcome, reason, detail, correlation_id)
         VALUES ($1, $2, $3, $4, 'allowed', $5, $6, $7)",
    )
    .bind(&r.caller)
    .bind(&r.operation)
    .bind(&r.tenant_id)
    .bind(&r.secret_name)
    .bind(&r.reason)
    .bind(&r.detail)
    .bind(&r.correlation_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Inserts a data key.
pub(crate) async fn insert_data_key(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    tenant: &str,
    wrapped: &WrappedKey,
) -> Result<(), VaultError> {
    sqlx::query("INSERT INTO data_keys (id, tenant_id, kek_id, wrapped_key, key_nonce) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(tenant)
        .bind(&wrapped.kek_id)
        .bind(&wrapped.wrapped)
        .bind(&wrapped.nonce)
        .execute(&mut *tx)
        .await?;
    Ok(())
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

    /// Whether PostgreSQL answers (the readiness check); the error says what failed.
    pub async fn ping(&self) -> Result<(), String> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| format!("PostgreSQL: {e}"))
    }

    /// The pool (tests inspect the tables through it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
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

    /// Deletes expired one-time secrets and taken ones past their replay window (with their
    /// data keys). Returns how many.
    pub async fn purge_expired(&self) -> Result<u64, VaultError> {
        let done = sqlx::query(
            "DELETE FROM data_keys WHERE id IN (SELECT data_key_id FROM one_time_secrets WHERE expires_at <= now())
                OR id IN (SELECT data_key_id FROM taken_one_time WHERE keep_until <= now())",
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

    /// Appends an audit row on its own (calls that changed nothing: reads and refusals).
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
