//! Blue/green rebuild: replay the log into a fresh generation, then flip the active pointer.
//!
//! 1. Take the rebuild lock (a session advisory lock; one rebuild at a time).
//! 2. Create generation `N+1` and replay from `from_sequence` into it with `COPY`, folding
//!    tenants in memory ([`bulk`]), while queries and the live consumer keep using `N`.
//! 3. Catch up with events appended meanwhile, replay after replay, until the lag is small.
//! 4. Flip: in one transaction, lock the active pointer (the live consumer waits), apply the
//!    last tail, point queries at `N+1`. The live consumer then continues on `N+1`, skipping what
//!    the rebuild already applied.
//! 5. Drop generations older than the previous one (kept so in-flight queries can finish).

mod bulk;
mod copy;

use std::time::{Duration, Instant};

use eventstore::{EventStore, RecordedEvent};
use sqlx::{Connection, Executor, PgConnection};

use crate::apply::apply_batch;
use crate::error::Error;
use crate::store::{Generation, Store};

/// How a rebuild runs.
#[derive(Debug, Clone)]
pub struct RebuildOptions {
    /// First stream sequence to apply (1 = from the beginning). Events before it are left
    /// out of the new generation: only for logs whose head was removed, or for experiments.
    pub from_sequence: u64,
    /// Events per hand-off from the log reader to the database writer (one `COPY` message)
    /// while replaying, and per transaction while applying the last tail under the lock.
    pub batch_size: usize,
    /// Events per transaction while replaying and catching up (default: no limit, one
    /// transaction per pass). Each commits its history rows, the tenants it changed and the
    /// checkpoint together; a tenant that changes in several chunks is written in each, as an
    /// upsert, so smaller chunks bound the transaction at the cost of speed.
    pub chunk_events: u64,
    /// Catch-up stops and the flip happens once fewer events than this are outstanding.
    pub flip_lag: u64,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        Self {
            from_sequence: 1,
            batch_size: 1000,
            chunk_events: u64::MAX,
            flip_lag: 1000,
        }
    }
}

/// Where a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Replaying the log into the new generation.
    Replaying,
    /// Applying events appended during the replay.
    CatchingUp,
    /// Applying the last tail under the lock and switching queries over.
    Flipping,
    /// Finished.
    Done,
}

/// Progress report passed to the caller's callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildProgress {
    /// Current phase.
    pub phase: Phase,
    /// Events applied so far.
    pub applied: u64,
    /// Events known to be needed so far (grows if events arrive during the rebuild).
    pub total: u64,
    /// The new generation's checkpoint.
    pub last_sequence: u64,
}

/// What a finished rebuild did.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    /// The generation now active.
    pub generation: Generation,
    /// The generation it replaced.
    pub previous: Generation,
    /// Events applied.
    pub events: u64,
    /// Tenants in the new generation.
    pub tenants: u64,
    /// Its checkpoint at the flip.
    pub last_sequence: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl RebuildReport {
    /// Events per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.events as f64 / secs
        } else {
            0.0
        }
    }
}

/// Rebuilds the tenant projection from the log into a new generation and makes it active.
pub async fn rebuild(
    store: &Store,
    events: &EventStore,
    options: &RebuildOptions,
    mut progress: impl FnMut(&RebuildProgress) + Send,
) -> Result<RebuildReport, Error> {
    let started = Instant::now();
    let batch_size = options.batch_size.max(1);
    // A dedicated connection holds the session lock for the whole rebuild; it is detached from
    // the pool so that dropping it (on any error) closes the session and releases the lock.
    let mut lock_conn = store.pool().acquire().await?.detach();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
        .bind(format!("{}:rebuild", store.base_schema()))
        .fetch_one(&mut lock_conn)
        .await?;
    if !locked {
        return Err(Error::RebuildRunning);
    }
    drop_stale_generations(store, None).await?;

    let g = store.create_generation().await?;
    tracing::info!(schema = %g.schema, from = options.from_sequence, "rebuilding the tenant projection");
    let filter = events.all_filter();
    let mut state = RebuildProgress {
        phase: Phase::Replaying,
        applied: 0,
        total: 0,
        last_sequence: 0,
    };

    // Replay, then catch up until the remaining lag is small enough to finish under the lock.
    let mut from = options.from_sequence.max(1);
    let mut bulk = bulk::Bulk::new(store, events, &g, options);
    loop {
        bulk.pass(from, &mut state, &mut progress).await?;
        state.total = state.total.max(state.applied);
        progress(&state);
        from = state.last_sequence.max(from.saturating_sub(1)) + 1;
        let last = events.last_sequence().await?;
        if last < from || last - from + 1 < options.flip_lag {
            break;
        }
        state.phase = Phase::CatchingUp;
    }
    // Every folded tenant is in the tables now: the tail below reads them back from there.
    drop(bulk);

    // The flip.
    state.phase = Phase::Flipping;
    progress(&state);
    let previous;
    {
        let mut tx = store.pool().begin().await?;
        let active: i32 = sqlx::query_scalar("SELECT generation FROM active_generation FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        previous = Generation {
            number: active,
            schema: format!("{}_g{active}", store.base_schema()),
        };
        let mut replay = events.replay(&filter, from).await?;
        state.total += replay.total();
        let mut batch: Vec<RecordedEvent> = Vec::with_capacity(batch_size);
        while let Some(event) = replay.next().await {
            batch.push(event?);
            if batch.len() >= batch_size {
                apply_on(&mut tx, &g, &mut batch, &mut state).await?;
            }
        }
        apply_on(&mut tx, &g, &mut batch, &mut state).await?;
        sqlx::query("UPDATE active_generation SET generation = $1")
            .bind(g.number)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE generations SET state = 'retired' WHERE generation = $1")
            .bind(previous.number)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE generations SET state = 'active', activated_at = now() WHERE generation = $1",
        )
        .bind(g.number)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    state.total = state.total.max(state.applied);
    state.phase = Phase::Done;
    progress(&state);
    tracing::info!(schema = %g.schema, events = state.applied, last_sequence = state.last_sequence, "tenant projection rebuilt and active");

    drop_stale_generations(store, Some(previous.number)).await?;
    let tenants: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}.tenants", g.schema))
        .fetch_one(store.pool())
        .await?;
    // Closing (rather than dropping) the session releases the lock promptly.
    let _ = lock_conn.close().await;
    Ok(RebuildReport {
        generation: g,
        previous,
        events: state.applied,
        tenants: u64::try_from(tenants).unwrap_or(0),
        last_sequence: state.last_sequence,
        elapsed: started.elapsed(),
    })
}

async fn apply_on(
    conn: &mut PgConnection,
    g: &Generation,
    batch: &mut Vec<RecordedEvent>,
    state: &mut RebuildProgress,
) -> Result<(), Error> {
    if batch.is_empty() {
        return Ok(());
    }
    let applied = apply_batch(conn, g, batch, false).await?;
    state.applied += applied.applied;
    state.last_sequence = applied.checkpoint;
    batch.clear();
    Ok(())
}

/// Drops every generation that is neither active nor `keep` (the one just replaced, which
/// in-flight queries may still be reading). Runs under the rebuild lock, so a `building`
/// generation found here was left by a rebuild that died.
async fn drop_stale_generations(store: &Store, keep: Option<i32>) -> Result<(), Error> {
    for (number, schema, state) in store.generations().await? {
        if state == "active" || state == "dropped" || Some(number) == keep {
            continue;
        }
        let mut conn = store.pool().acquire().await?;
        conn.execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
            .await?;
        sqlx::query("UPDATE generations SET state = 'dropped' WHERE generation = $1")
            .bind(number)
            .execute(&mut *conn)
            .await?;
        tracing::info!(%schema, "dropped an old read-model generation");
    }
    Ok(())
}
