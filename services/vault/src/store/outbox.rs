//! The outbox: events written in their change's transaction, handed to the relay (`crate::relay`)
//! tenant by tenant, in commit order, and deleted once JetStream acknowledged them.

use chrono::Utc;
use prost::Message as _;
use proto::v1::Event;
use proto::v1::event::Body;
use sqlx::Row;
use uuid::Uuid;

use super::Store;
use crate::error::VaultError;

/// An event of a change, with the id it is published under. The id is derived from the change
/// (e.g. tenant, name and version), so every publish of it, by any instance, is the same event
/// to JetStream's de-duplication.
pub struct OutboxEvent {
    /// Event id.
    pub id: Uuid,
    /// What happened.
    pub body: Body,
}

impl OutboxEvent {
    /// An event whose id is the v5 UUID of `key` (unique per change).
    pub fn derived(key: &str, body: Body) -> Self {
        Self {
            id: Uuid::new_v5(
                &Uuid::NAMESPACE_OID,
                format!("tenantry-vault:{key}").as_bytes(),
            ),
            body,
        }
    }
}

/// Inserts `event` for `tenant` into the outbox inside the change's transaction.
pub(crate) async fn insert(
    tx: &mut sqlx::PgConnection,
    tenant: &str,
    event: OutboxEvent,
    correlation_id: &str,
) -> Result<(), VaultError> {
    let now = Utc::now();
    let payload = Event {
        occurred_at: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap_or(0),
        }),
        body: Some(event.body),
    }
    .encode_to_vec();
    sqlx::query(
        "INSERT INTO outbox (event_id, tenant_id, event, correlation_id) VALUES ($1, $2, $3, $4)",
    )
    .bind(event.id)
    .bind(tenant)
    .bind(payload)
    .bind(correlation_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// An outbox row on its way to JetStream.
pub struct Pending {
    /// Outbox sequence.
    pub seq: i64,
    /// Event id (the JetStream de-duplication id).
    pub id: Uuid,
    /// The decoded event.
    pub event: Event,
    /// The caller's correlation id ("" when none).
    pub correlation_id: String,
}

impl Store {
    /// Tenants with pending events, oldest pending event first.
    pub async fn outbox_tenants(&self, limit: i64) -> Result<Vec<String>, VaultError> {
        Ok(sqlx::query_scalar(
            "SELECT tenant_id FROM outbox GROUP BY tenant_id ORDER BY min(seq) LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Relays up to `limit` of `tenant`'s pending events: locks the tenant's outbox for this
    /// instance (skipping it when another instance holds it, so instances never publish one
    /// tenant's events concurrently or out of order), hands them in order to `publish`, and
    /// deletes them when it succeeds. Returns how many were relayed (0 if locked elsewhere).
    pub async fn relay_tenant<F, Fut, E>(
        &self,
        tenant: &str,
        limit: i64,
        publish: F,
    ) -> Result<Result<usize, E>, VaultError>
    where
        F: FnOnce(Vec<Pending>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('vault-outbox:' || $1, 0))",
        )
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await?;
        if !locked {
            return Ok(Ok(0));
        }
        let rows = sqlx::query(
            "SELECT seq, event_id, event, correlation_id FROM outbox WHERE tenant_id = $1 ORDER BY seq LIMIT $2",
        )
        .bind(tenant)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut pending = Vec::with_capacity(rows.len());
        for row in rows {
            let bytes: Vec<u8> = row.try_get("event")?;
            let event = Event::decode(bytes.as_slice()).map_err(|e| {
                VaultError::Unexpected(anyhow::Error::new(e).context("decoding an outbox event"))
            })?;
            pending.push(Pending {
                seq: row.try_get("seq")?,
                id: row.try_get("event_id")?,
                event,
                correlation_id: row.try_get("correlation_id")?,
            });
        }
        if pending.is_empty() {
            return Ok(Ok(0));
        }
        let seqs: Vec<i64> = pending.iter().map(|p| p.seq).collect();
        // The lock (and this transaction) is held across the publish: that is what keeps a second
        // instance from publishing the same tenant's later events first.
        if let Err(e) = publish(pending).await {
            return Ok(Err(e));
        }
        sqlx::query("DELETE FROM outbox WHERE seq = ANY($1)")
            .bind(&seqs)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(seqs.len()))
    }
}
