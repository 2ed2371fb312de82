//! The pool's demand record, shared by every instance: one KV entry per pooled app set in the
//! bucket `STANDBY_DEMAND`, holding the decaying counts of placements and hits and the smoothed
//! build time ([`Demand`]). Updates are compare-and-set, retried on a conflict; a lost update
//! (an instance killed mid-way) loses one count of an estimate, never a tenant's work, so this is
//! recorded off the signup's path.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;

use crate::context::Ctx;
use crate::error::StepError;
use crate::pool_size::Demand;

const BUCKET: &str = "STANDBY_DEMAND";
const ATTEMPTS: usize = 8;

async fn bucket(ctx: &Ctx) -> Result<kv::Store, StepError> {
    ctx.store
        .key_value(BUCKET, 1, "Tenantry: signup demand per pooled app set")
        .await
        .map_err(StepError::from)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The demand seen for `set` (empty when none yet, or unreadable).
pub async fn read(ctx: &Ctx, set: &str) -> Demand {
    let Ok(pool) = bucket(ctx).await else {
        return Demand::default();
    };
    match pool.entry(set).await {
        Ok(Some(e)) if e.operation == kv::Operation::Put => {
            serde_json::from_slice(&e.value).unwrap_or_default()
        }
        _ => Demand::default(),
    }
}

/// Applies `change` to `set`'s record by compare-and-set.
async fn update(ctx: &Ctx, set: &str, change: impl Fn(Demand) -> Demand) -> Result<(), StepError> {
    let pool = bucket(ctx).await?;
    for _ in 0..ATTEMPTS {
        let current = pool.entry(set).await.ok().flatten();
        let (old, revision) = match &current {
            Some(e) if e.operation == kv::Operation::Put => (
                serde_json::from_slice(&e.value).unwrap_or_default(),
                Some(e.revision),
            ),
            Some(e) => (Demand::default(), Some(e.revision)),
            None => (Demand::default(), None),
        };
        let value = Bytes::from(serde_json::to_vec(&change(old)).unwrap_or_default());
        let written = match revision {
            Some(r) => pool.update(set, value, r).await.is_ok(),
            None => pool.create(set, value).await.is_ok(),
        };
        if written {
            return Ok(());
        }
    }
    Err(StepError::Infra(format!(
        "the demand record of {set} kept changing under {ATTEMPTS} updates"
    )))
}

/// Counts a placement of a pooled plan's tenant, in the background.
pub fn placed(ctx: &Ctx, set: &str, hit: bool, window: Duration) {
    let (ctx, set) = (ctx.clone(), set.to_owned());
    tokio::spawn(async move {
        let now = now_ms();
        match update(&ctx, &set, |d| d.placed(now, window, hit)).await {
            Ok(()) => {
                let ratio = read(&ctx, &set).await.hit_ratio(now_ms(), window);
                if let Some(r) = ratio {
                    ctx.metrics.pool_hit_ratio(&set, r);
                }
            }
            Err(e) => tracing::debug!(error = %e, apps = %set, "demand not recorded"),
        }
    });
}

/// Counts a standby build of `set` that took `secs`.
pub async fn built(ctx: &Ctx, set: &str, secs: f64) {
    if let Err(e) = update(ctx, set, |d| d.built(secs)).await {
        tracing::debug!(error = %e, apps = %set, "build time not recorded");
    }
}
