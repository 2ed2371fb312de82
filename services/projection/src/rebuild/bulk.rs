//! The rebuild's bulk path: one replay of the log into the new generation, written with
//! `COPY`. Unlike the live path ([`apply_batch`](crate::apply::apply_batch)), it never reads
//! a tenant back: a rebuild starts from an empty generation and is its only writer until the
//! flip, so every tenant's folded state is kept in memory ([`Folded`], across passes) and a
//! tenant is written once per chunk it changed in. Reading the log (a task of its own) and
//! writing PostgreSQL overlap, through a bounded channel.
//!
//! Each chunk is one transaction: its history rows, the tenants it changed and the checkpoint
//! commit together, so the checkpoint always describes exactly what the tables hold.

use std::collections::HashMap;

use eventstore::{EventStore, RecordedEvent, Replay, StoreError};
use sqlx::postgres::PgCopyIn;
use sqlx::{Executor, PgConnection};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::copy::CopyRows;
use super::{RebuildOptions, RebuildProgress};
use crate::apply::{
    Entry, HISTORY_WRITE_COLUMNS, TENANT_UPSERT, TENANT_WRITE_COLUMNS, seq_i64, set_checkpoint,
};
use crate::error::Error;
use crate::store::{Generation, Store, checkpoint_in};

/// Batches of decoded events the reader may be ahead of the writer: enough to keep both busy,
/// few enough to bound the memory a slow database makes the replay hold.
const READ_AHEAD: usize = 8;
/// Tenant rows per `COPY` message.
const TENANTS_PER_SEND: usize = 1000;

/// Every tenant folded so far in this rebuild.
#[derive(Default)]
struct Folded {
    tenants: HashMap<String, Tenant>,
}

struct Tenant {
    entry: Entry,
    /// Has a row in the generation (so a later chunk updates it rather than inserting).
    stored: bool,
}

type Batch = Result<Vec<RecordedEvent>, StoreError>;

/// The bulk writer of one rebuild: its generation and every tenant folded so far.
pub(crate) struct Bulk<'a> {
    store: &'a Store,
    events: &'a EventStore,
    g: &'a Generation,
    options: &'a RebuildOptions,
    folded: Folded,
}

impl<'a> Bulk<'a> {
    /// A writer for the new (empty) generation `g`.
    pub(crate) fn new(
        store: &'a Store,
        events: &'a EventStore,
        g: &'a Generation,
        options: &'a RebuildOptions,
    ) -> Self {
        Self {
            store,
            events,
            g,
            options,
            folded: Folded::default(),
        }
    }

    /// Replays the log from `from` into the generation until it has caught up, committing
    /// every `chunk_events` events, reporting as it goes.
    pub(crate) async fn pass(
        &mut self,
        from: u64,
        state: &mut RebuildProgress,
        progress: &mut impl FnMut(&RebuildProgress),
    ) -> Result<(), Error> {
        let replay = self.events.replay(&self.events.all_filter(), from).await?;
        state.total += replay.total();
        progress(state);
        // The writer takes the batches in order, one at a time; the bound is the read-ahead.
        let (tx, mut rx) = mpsc::channel(READ_AHEAD);
        // Dropped with the pass, the set aborts the reader if the writer fails first.
        let mut reader = JoinSet::new();
        reader.spawn(read(replay, tx, self.options.batch_size.max(1)));
        let mut chunk = Chunk {
            g: self.g,
            limit: self.options.chunk_events.max(1),
            folded: &mut self.folded,
            state,
        };
        while chunk.write(self.store, &mut rx, progress).await? {}
        // The channel also closes if the reader died: that must not pass for the end of the log.
        while let Some(ended) = reader.join_next().await {
            ended.map_err(|e| anyhow::anyhow!("the rebuild's log reader failed: {e}"))?;
        }
        Ok(())
    }
}

/// Decodes the replay into batches for the writer until it ends, fails, or the writer is gone.
async fn read(mut replay: Replay, tx: mpsc::Sender<Batch>, batch_size: usize) {
    let mut batch = Vec::with_capacity(batch_size);
    while let Some(event) = replay.next().await {
        match event {
            Ok(e) => batch.push(e),
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
        if batch.len() >= batch_size {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
            if tx.send(Ok(full)).await.is_err() {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch)).await;
    }
}

struct Chunk<'a> {
    g: &'a Generation,
    limit: u64,
    folded: &'a mut Folded,
    state: &'a mut RebuildProgress,
}

/// What one chunk's events changed, for its commit.
struct Written {
    /// Its last event's sequence (the checkpoint to commit).
    last: u64,
    /// Tenants it changed, each once.
    dirty: Vec<String>,
    /// Whether the replay has more.
    more: bool,
}

impl Chunk<'_> {
    /// Writes the next chunk in one transaction; answers whether more may follow.
    async fn write(
        &mut self,
        store: &Store,
        rx: &mut mpsc::Receiver<Batch>,
        progress: &mut impl FnMut(&RebuildProgress),
    ) -> Result<bool, Error> {
        let Some(first) = rx.recv().await else {
            return Ok(false);
        };
        let first = first?;
        let mut tx = store.pool().begin().await?;
        let checkpoint = checkpoint_in(&mut tx, self.g, true).await?;
        // Into empty tables, an index is cheaper built once after the load than kept up row by
        // row; dropped and rebuilt in this transaction, it is never seen missing.
        let indexes = if checkpoint == 0 {
            drop_secondary_indexes(&mut tx, self.g).await?
        } else {
            Vec::new()
        };
        let sql = format!(
            "COPY {}.tenant_history ({HISTORY_WRITE_COLUMNS}) FROM STDIN (FORMAT binary)",
            self.g.schema
        );
        let mut copy = tx.copy_in_raw(&sql).await?;
        let fed = self
            .history(&mut copy, checkpoint, first, rx, progress)
            .await;
        let written = match fed {
            Ok(w) => w,
            Err(e) => {
                // The server is told, so the connection goes back to the pool usable.
                let _ = copy.abort("the rebuild failed").await;
                return Err(e);
            }
        };
        copy.finish().await?;
        write_tenants(&mut tx, self.g, self.folded, &written.dirty).await?;
        for index in &indexes {
            tx.execute(index.as_str()).await?;
        }
        if written.last > checkpoint {
            set_checkpoint(&mut tx, self.g, written.last).await?;
        }
        tx.commit().await?;

        for id in &written.dirty {
            if let Some(t) = self.folded.tenants.get_mut(id) {
                t.entry.dirty = false;
                t.stored |= t.entry.state.status.exists();
            }
        }
        self.state.last_sequence = self.state.last_sequence.max(written.last);
        progress(self.state);
        Ok(written.more)
    }

    /// Folds batches and streams their history rows until the chunk is full or the replay
    /// ends.
    async fn history(
        &mut self,
        copy: &mut PgCopyIn<&mut PgConnection>,
        checkpoint: u64,
        first: Vec<RecordedEvent>,
        rx: &mut mpsc::Receiver<Batch>,
        progress: &mut impl FnMut(&RebuildProgress),
    ) -> Result<Written, Error> {
        let mut rows = CopyRows::default();
        rows.header();
        let mut written = Written {
            last: checkpoint,
            dirty: Vec::new(),
            more: true,
        };
        let mut count = 0u64;
        let mut batch = first;
        loop {
            let before = count;
            for e in &batch {
                // The replay starts after the checkpoint; this keeps a redelivery harmless.
                if e.sequence <= written.last {
                    continue;
                }
                history_row(&mut rows, e)?;
                written.last = e.sequence;
                count += 1;
                self.fold(e, &mut written.dirty);
            }
            copy.send(rows.bytes()).await?;
            rows.clear();
            self.state.applied += count - before;
            progress(self.state);
            if count >= self.limit {
                break;
            }
            match rx.recv().await {
                Some(next) => batch = next?,
                None => {
                    written.more = false;
                    break;
                }
            }
        }
        rows.trailer();
        copy.send(rows.bytes()).await?;
        Ok(written)
    }

    fn fold(&mut self, e: &RecordedEvent, dirty: &mut Vec<String>) {
        let id = e.body.tenant_id();
        if id.is_empty() {
            return;
        }
        let tenant = match self.folded.tenants.get_mut(id) {
            Some(t) => t,
            None => self
                .folded
                .tenants
                .entry(id.to_owned())
                .or_insert_with(|| Tenant {
                    entry: Entry::default(),
                    stored: false,
                }),
        };
        if tenant.entry.fold(e) && !tenant.entry.dirty {
            tenant.entry.dirty = true;
            dirty.push(id.to_owned());
        }
    }
}

/// One `tenant_history` row, in [`HISTORY_WRITE_COLUMNS`] order.
fn history_row(rows: &mut CopyRows, e: &RecordedEvent) -> Result<(), Error> {
    rows.row(9);
    rows.int8(seq_i64(e.sequence));
    rows.text(e.body.tenant_id())?;
    rows.uuid(&e.event_id);
    rows.text(&e.event_type)?;
    rows.text(e.body.context().as_str())?;
    rows.text(&tenancy::summarize(&e.body))?;
    rows.timestamptz(e.occurred_at)?;
    match &e.correlation_id {
        Some(c) => rows.text(c)?,
        None => rows.text(
            e.event_id
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        )?,
    }
    rows.text(e.causation_id.as_deref().unwrap_or_default())
}

/// Writes the tenants a chunk changed: a plain `COPY` when none has a row yet (the first chunk
/// of a rebuild, and new tenants only), else through a staging table and an upsert.
async fn write_tenants(
    conn: &mut PgConnection,
    g: &Generation,
    folded: &Folded,
    dirty: &[String],
) -> Result<(), Error> {
    // A tenant whose events were all ignored (no TenantRequested yet) gets no row.
    let tenants: Vec<(&String, &Tenant)> = dirty
        .iter()
        .filter_map(|id| folded.tenants.get_key_value(id))
        .filter(|(_, t)| t.entry.state.status.exists())
        .collect();
    if tenants.is_empty() {
        return Ok(());
    }
    let upsert = tenants.iter().any(|(_, t)| t.stored);
    let target = if upsert {
        conn.execute(
            format!(
                "CREATE TEMP TABLE rebuild_tenants (LIKE {}.tenants) ON COMMIT DROP",
                g.schema
            )
            .as_str(),
        )
        .await?;
        "pg_temp.rebuild_tenants".to_owned()
    } else {
        format!("{}.tenants", g.schema)
    };
    let sql = format!("COPY {target} ({TENANT_WRITE_COLUMNS}) FROM STDIN (FORMAT binary)");
    let mut copy = conn.copy_in_raw(&sql).await?;
    let sent = send_tenants(&mut copy, &tenants).await;
    if let Err(e) = sent {
        let _ = copy.abort("the rebuild failed").await;
        return Err(e);
    }
    copy.finish().await?;
    if upsert {
        conn.execute(
            format!(
                "INSERT INTO {}.tenants ({TENANT_WRITE_COLUMNS}) SELECT {TENANT_WRITE_COLUMNS} \
                 FROM pg_temp.rebuild_tenants{TENANT_UPSERT}",
                g.schema
            )
            .as_str(),
        )
        .await?;
    }
    Ok(())
}

async fn send_tenants(
    copy: &mut PgCopyIn<&mut PgConnection>,
    tenants: &[(&String, &Tenant)],
) -> Result<(), Error> {
    let mut rows = CopyRows::default();
    rows.header();
    for part in tenants.chunks(TENANTS_PER_SEND) {
        for (id, t) in part {
            tenant_row(&mut rows, id, &t.entry)?;
        }
        copy.send(rows.bytes()).await?;
        rows.clear();
    }
    rows.trailer();
    copy.send(rows.bytes()).await?;
    Ok(())
}

/// One `tenants` row, in [`TENANT_WRITE_COLUMNS`] order.
fn tenant_row(rows: &mut CopyRows, id: &str, e: &Entry) -> Result<(), Error> {
    let s = &e.state;
    let (created, updated) = e.times();
    rows.row(18);
    rows.text(id)?;
    rows.text(s.status.as_str())?;
    for text in [
        &s.subdomain,
        &s.site,
        &s.bench,
        &s.plan,
        &s.organisation,
        &s.owner_email,
        &s.owner_name,
        &s.region,
        &s.url,
    ] {
        rows.text(text)?;
    }
    rows.opt_text(s.last_error.as_deref())?;
    rows.opt_int8(e.activation_ms());
    rows.opt_timestamptz(e.activated_at)?;
    rows.timestamptz(created)?;
    rows.timestamptz(updated)?;
    rows.int8(e.last_sequence);
    rows.jsonb(s)
}

/// Drops the indexes of `g`'s tables that no constraint needs; answers the statements that
/// create them again.
async fn drop_secondary_indexes(
    conn: &mut PgConnection,
    g: &Generation,
) -> Result<Vec<String>, Error> {
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT format('%I.%I', n.nspname, c.relname), pg_get_indexdef(i.indexrelid) \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND NOT i.indisprimary AND NOT i.indisunique",
    )
    .bind(&g.schema)
    .fetch_all(&mut *conn)
    .await?;
    for (name, _) in &indexes {
        conn.execute(format!("DROP INDEX {name}").as_str()).await?;
    }
    Ok(indexes.into_iter().map(|(_, create)| create).collect())
}
