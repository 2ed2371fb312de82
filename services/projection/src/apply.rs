//! Events → read-model changes. One code path for the live consumer (one event per
//! transaction) and the rebuild (hundreds per transaction): load the touched tenants' folded
//! states, apply each event with the domain's `apply_event`, upsert the changed tenants, insert
//! the history rows and move the checkpoint — all on the caller's transaction, so the
//! checkpoint always describes exactly what the tables hold.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use eventstore::RecordedEvent;
use proto::v1 as pb;
use sqlx::{PgConnection, QueryBuilder, Row};
use tenancy::{Status, TenantState};

use crate::error::Error;
use crate::store::{CHECKPOINT_NAME, Generation, NOTIFY_CHANNEL, checkpoint_in};

/// What applying a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Events applied (history rows written).
    pub applied: u64,
    /// Events skipped because the checkpoint already covered them (redeliveries).
    pub skipped: u64,
    /// The checkpoint after the batch.
    pub checkpoint: u64,
    /// Tenants whose row changed, in first-change order.
    pub changed: Vec<String>,
}

/// A tenant being folded: its domain state plus the columns only the projection derives.
#[derive(Default)]
pub(crate) struct Entry {
    pub(crate) state: TenantState,
    /// Stream sequence of the last event that changed the tenant.
    pub(crate) last_sequence: i64,
    /// When it first went from Provisioning to Active.
    pub(crate) activated_at: Option<DateTime<Utc>>,
    /// Changed by the events applied so far (and so to be written).
    pub(crate) dirty: bool,
}

impl Entry {
    /// Folds `e` into the tenant; answers whether the event counted (the version moved).
    pub(crate) fn fold(&mut self, e: &RecordedEvent) -> bool {
        let before_version = self.state.version;
        let before_status = self.state.status;
        let state = std::mem::take(&mut self.state);
        self.state = tenancy::apply_event(state, &envelope(e));
        if self.state.version == before_version {
            return false;
        }
        self.last_sequence = seq_i64(e.sequence);
        if self.state.status == Status::Active
            && before_status == Status::Provisioning
            && self.activated_at.is_none()
        {
            self.activated_at = Some(e.occurred_at);
        }
        true
    }

    /// `created_at` and `updated_at` of the tenant's row.
    pub(crate) fn times(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let s = &self.state;
        let updated = to_datetime(s.updated_at).unwrap_or_else(Utc::now);
        (to_datetime(s.requested_at).unwrap_or(updated), updated)
    }

    /// `activation_ms` of the tenant's row.
    pub(crate) fn activation_ms(&self) -> Option<i64> {
        self.state
            .activation_ms
            .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
    }
}

/// The columns of a `tenants` row, in the order every writer lists them.
pub(crate) const TENANT_WRITE_COLUMNS: &str = "tenant_id, status, subdomain, site, bench, plan, \
    organisation, owner_email, owner_name, region, url, last_error, activation_ms, activated_at, \
    created_at, updated_at, last_sequence, state";

/// What an upsert of `tenants` rows replaces when the tenant is already there.
pub(crate) const TENANT_UPSERT: &str = " ON CONFLICT (tenant_id) DO UPDATE SET \
    status = EXCLUDED.status, subdomain = EXCLUDED.subdomain, site = EXCLUDED.site, \
    bench = EXCLUDED.bench, plan = EXCLUDED.plan, organisation = EXCLUDED.organisation, \
    owner_email = EXCLUDED.owner_email, owner_name = EXCLUDED.owner_name, \
    region = EXCLUDED.region, url = EXCLUDED.url, last_error = EXCLUDED.last_error, \
    activation_ms = EXCLUDED.activation_ms, activated_at = EXCLUDED.activated_at, \
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
    last_sequence = EXCLUDED.last_sequence, state = EXCLUDED.state";

/// The columns of a `tenant_history` row, in the order every writer lists them.
pub(crate) const HISTORY_WRITE_COLUMNS: &str = "sequence, tenant_id, event_id, event_type, \
    context, summary, occurred_at, correlation_id, causation_id";

fn to_datetime(t: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let t = t?;
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

fn to_timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The envelope `tenancy::apply_event` folds (the body plus the writer's time).
pub fn envelope(event: &RecordedEvent) -> pb::Event {
    pb::Event {
        occurred_at: Some(to_timestamp(event.occurred_at)),
        body: Some(event.body.clone()),
    }
}

pub(crate) fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Applies `events` (in stream order) to generation `g` on `conn`, which must be inside a
/// transaction. Events at or below the generation's checkpoint are skipped: that is what makes
/// a redelivery after "committed but not acknowledged" harmless. With `notify`, committed tenant
/// changes are announced on [`NOTIFY_CHANNEL`] (for `WatchTenants`).
pub async fn apply_batch(
    conn: &mut PgConnection,
    g: &Generation,
    events: &[RecordedEvent],
    notify: bool,
) -> Result<Applied, Error> {
    // The row lock serializes writers of this generation (two consumer instances, or the
    // rebuild's final catch-up) until commit.
    let checkpoint = checkpoint_in(conn, g, true).await?;
    let mut out = Applied {
        checkpoint,
        ..Applied::default()
    };
    let mut fresh: Vec<&RecordedEvent> = Vec::with_capacity(events.len());
    for e in events {
        if e.sequence <= out.checkpoint {
            out.skipped += 1;
        } else {
            out.checkpoint = e.sequence;
            fresh.push(e);
        }
    }
    if fresh.is_empty() {
        return Ok(out);
    }

    let mut ids: Vec<String> = fresh
        .iter()
        .map(|e| e.body.tenant_id().to_owned())
        .filter(|id| !id.is_empty())
        .collect();
    ids.sort();
    ids.dedup();
    let mut entries: HashMap<String, Entry> = HashMap::with_capacity(ids.len());
    if !ids.is_empty() {
        let rows = sqlx::query(&format!(
            "SELECT tenant_id, state, last_sequence, activated_at FROM {}.tenants \
             WHERE tenant_id = ANY($1)",
            g.schema
        ))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            let state: sqlx::types::Json<TenantState> = r.try_get("state")?;
            entries.insert(
                r.try_get("tenant_id")?,
                Entry {
                    state: state.0,
                    last_sequence: r.try_get("last_sequence")?,
                    activated_at: r.try_get("activated_at")?,
                    dirty: false,
                },
            );
        }
    }

    let mut history = QueryBuilder::new(format!(
        "INSERT INTO {}.tenant_history ({HISTORY_WRITE_COLUMNS}) ",
        g.schema
    ));
    history.push_values(&fresh, |mut b, e| {
        b.push_bind(seq_i64(e.sequence))
            .push_bind(e.body.tenant_id().to_owned())
            .push_bind(e.event_id)
            .push_bind(e.event_type.clone())
            .push_bind(e.body.context().as_str())
            .push_bind(tenancy::summarize(&e.body))
            .push_bind(e.occurred_at)
            .push_bind(e.correlation())
            .push_bind(e.causation_id.clone().unwrap_or_default());
    });
    // The checkpoint already excludes re-applied events; this guards a hand-edited checkpoint.
    history.push(" ON CONFLICT (sequence) DO NOTHING");
    history.build().execute(&mut *conn).await?;
    out.applied = fresh.len() as u64;

    for e in &fresh {
        let id = e.body.tenant_id();
        if id.is_empty() {
            continue;
        }
        let entry = entries.entry(id.to_owned()).or_default();
        if entry.fold(e) && !entry.dirty {
            entry.dirty = true;
            out.changed.push(id.to_owned());
        }
    }

    // A tenant whose events were all ignored (no TenantRequested yet) gets no row.
    let dirty: Vec<(&String, &Entry)> = out
        .changed
        .iter()
        .filter_map(|id| entries.get_key_value(id))
        .filter(|(_, e)| e.state.status.exists())
        .collect();
    if !dirty.is_empty() {
        let mut upsert = QueryBuilder::new(format!(
            "INSERT INTO {}.tenants ({TENANT_WRITE_COLUMNS}) ",
            g.schema
        ));
        upsert.push_values(&dirty, |mut b, (id, e)| {
            let s = &e.state;
            let (created, updated) = e.times();
            b.push_bind((*id).clone())
                .push_bind(s.status.as_str())
                .push_bind(s.subdomain.clone())
                .push_bind(s.site.clone())
                .push_bind(s.bench.clone())
                .push_bind(s.plan.clone())
                .push_bind(s.organisation.clone())
                .push_bind(s.owner_email.clone())
                .push_bind(s.owner_name.clone())
                .push_bind(s.region.clone())
                .push_bind(s.url.clone())
                .push_bind(s.last_error.clone())
                .push_bind(e.activation_ms())
                .push_bind(e.activated_at)
                .push_bind(created)
                .push_bind(updated)
                .push_bind(e.last_sequence)
                .push_bind(sqlx::types::Json(s));
        });
        upsert.push(TENANT_UPSERT);
        upsert.build().execute(&mut *conn).await?;
    }

    set_checkpoint(conn, g, out.checkpoint).await?;

    if notify && !out.changed.is_empty() {
        // Delivered to listeners only when the transaction commits, i.e. once the row is visible.
        sqlx::query("SELECT pg_notify($1, t) FROM unnest($2::text[]) AS t")
            .bind(NOTIFY_CHANNEL)
            .bind(&out.changed)
            .execute(&mut *conn)
            .await?;
    }
    Ok(out)
}

/// Moves generation `g`'s checkpoint to `sequence`, on the caller's transaction.
pub(crate) async fn set_checkpoint(
    conn: &mut PgConnection,
    g: &Generation,
    sequence: u64,
) -> Result<(), Error> {
    sqlx::query(&format!(
        "UPDATE {}.projection_checkpoint SET stream_sequence = $1 WHERE name = $2",
        g.schema
    ))
    .bind(seq_i64(sequence))
    .bind(CHECKPOINT_NAME)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
