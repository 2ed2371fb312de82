//! Crypto-shredding a tenant.

use super::outbox::{self, OutboxEvent};
use super::{AuditRecord, Store, insert_audit, lock_tenant};
use crate::error::VaultError;

impl Store {
    /// Destroys every data key of a tenant and marks it shredded, under the tenant's exclusive
    /// lock (so no put commits after it). `authorize(kind)` must pass for every kind whose keys
    /// would be destroyed. `event(count)` is recorded on the first shred only: shredding a
    /// shredded tenant changes nothing and answers the first shred's count again.
    /// Ciphertexts stay (undecryptable now); one-time secrets go with their keys.
    pub async fn shred_tenant(
        &self,
        tenant: &str,
        authorize: impl Fn(&str) -> Result<(), VaultError>,
        event: impl FnOnce(u32) -> OutboxEvent,
        audit: &AuditRecord,
    ) -> Result<u32, VaultError> {
        let mut tx = self.pool.begin().await?;
        lock_tenant(&mut tx, tenant, true).await?;
        let earlier: Option<i32> = sqlx::query_scalar(
            "SELECT secrets_shredded FROM shredded_tenants WHERE tenant_id = $1",
        )
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(count) = earlier {
            insert_audit(&mut tx, audit).await?;
            tx.commit().await?;
            return Ok(u32::try_from(count).unwrap_or(0));
        }
        let kinds: Vec<String> = sqlx::query_scalar(
            "SELECT kind FROM secrets WHERE tenant_id = $1 AND data_key_id IS NOT NULL
             UNION SELECT kind FROM one_time_secrets WHERE tenant_id = $1
             UNION SELECT kind FROM taken_one_time WHERE tenant_id = $1",
        )
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await?;
        for kind in &kinds {
            authorize(kind)?;
        }
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM secrets WHERE tenant_id = $1 AND data_key_id IS NOT NULL",
        )
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await?;
        let live = u32::try_from(live).unwrap_or(u32::MAX);
        sqlx::query("DELETE FROM data_keys WHERE tenant_id = $1")
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO shredded_tenants (tenant_id, secrets_shredded) VALUES ($1, $2)")
            .bind(tenant)
            .bind(i32::try_from(live).unwrap_or(i32::MAX))
            .execute(&mut *tx)
            .await?;
        outbox::insert(&mut tx, tenant, event(live), &audit.correlation_id).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(live)
    }
}
