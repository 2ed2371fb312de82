//! PostgreSQL: the control schema (generations, the active pointer), the per-generation
//! read-model tables, and every query the gRPC API and tenantctl make.
//!
//! Layout: the base schema (default `projection`, the connection's `search_path`) holds the
//! migrations history, `generations` and `active_generation`; each generation `N` holds its
//! `tenants`, `tenant_history` and `projection_checkpoint` in schema `<base>_g<N>`. Queries read
//! the active generation; a rebuild fills a new one and flips the pointer when it has caught up.

use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgConnection, PgPool, QueryBuilder, Row};
use tenancy::{Status, TenantState};
use uuid::Uuid;

use crate::error::Error;

/// Embedded migrations of the control schema (`services/projection/migrations`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The DDL of one generation's tables (`{schema}` is replaced).
const GENERATION_DDL: &str = include_str!("generation.sql");

/// The checkpoint row's name in `projection_checkpoint`.
pub const CHECKPOINT_NAME: &str = "tenants";

/// The NOTIFY channel on which committed tenant changes are announced (payload: tenant id).
pub const NOTIFY_CHANNEL: &str = "tenantry_projection_tenants";

/// Default and largest `ListTenants` page.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// See [`DEFAULT_PAGE_SIZE`].
pub const MAX_PAGE_SIZE: u32 = 500;

/// One generation of the read model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// 1, 2, …
    pub number: i32,
    /// `<base>_g<number>`.
    pub schema: String,
}

/// A tenant as stored in the read model.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRow {
    /// Tenant id.
    pub tenant_id: String,
    /// Lifecycle status.
    pub status: Status,
    /// Requested subdomain.
    pub subdomain: String,
    /// Site host, once placed.
    pub site: String,
    /// Bench, once placed.
    pub bench: String,
    /// Current plan.
    pub plan: String,
    /// Organisation.
    pub organisation: String,
    /// Owner's email.
    pub owner_email: String,
    /// Owner's name.
    pub owner_name: String,
    /// Region.
    pub region: String,
    /// Site URL, once provisioned.
    pub url: String,
    /// Latest failure reason.
    pub last_error: Option<String>,
    /// How long the API key took to answer, in ms.
    pub activation_ms: Option<i64>,
    /// When the tenant first became Active (TenantProvisioned's time).
    pub activated_at: Option<DateTime<Utc>>,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Stream sequence of the last event that changed it.
    pub last_sequence: i64,
    /// The full folded domain state.
    pub state: TenantState,
}

/// One event in a tenant's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// Stream sequence.
    pub sequence: i64,
    /// Tenant (or standby) id.
    pub tenant_id: String,
    /// Event id.
    pub event_id: Uuid,
    /// Event type, e.g. `SiteCreated`.
    pub event_type: String,
    /// Context, e.g. `provisioning`.
    pub context: String,
    /// One human-readable line.
    pub summary: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Saga id.
    pub correlation_id: String,
    /// The event it reacted to ("" when none).
    pub causation_id: String,
}

/// Filters of `ListTenants`; `None` means any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantFilter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this plan.
    pub plan: Option<String>,
    /// Only this bench.
    pub bench: Option<String>,
}

/// A keyset position: the last (created_at, tenant_id) of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// created_at of the last row (microsecond precision, as PostgreSQL stores it).
    pub created_at: DateTime<Utc>,
    /// tenant_id of the last row.
    pub tenant_id: String,
}

impl Cursor {
    /// The opaque page token: base64url of `v1:<micros>:<tenant id>`.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "v1:{}:{}",
            self.created_at.timestamp_micros(),
            self.tenant_id
        ))
    }

    /// Parses a token made by [`Cursor::encode`].
    pub fn decode(token: &str) -> Result<Self, Error> {
        let bad = || {
            Error::InvalidArgument(
                "page_token is not a token from a previous ListTenants response".to_owned(),
            )
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let rest = text.strip_prefix("v1:").ok_or_else(bad)?;
        let (micros, tenant_id) = rest.split_once(':').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
        Ok(Self {
            created_at,
            tenant_id: tenant_id.to_owned(),
        })
    }
}

/// One page of tenants.
#[derive(Debug, Clone)]
pub struct TenantPage {
    /// The rows, by (created_at, tenant_id).
    pub tenants: Vec<TenantRow>,
    /// Where the next page starts, if there is one.
    pub next: Option<Cursor>,
    /// How many tenants match the filter in all.
    pub total: u64,
}

/// The projection's PostgreSQL handle. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    base: String,
}

fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Store {
    /// Connects, creates the base schema, migrates it and makes sure a generation is active.
    pub async fn connect(
        url: &str,
        base_schema: &str,
        max_connections: u32,
    ) -> Result<Self, Error> {
        if !valid_schema(base_schema) {
            return Err(Error::InvalidArgument(format!(
                "database schema `{base_schema}` must start with a-z and hold only a-z 0-9 _ (at most 40)"
            )));
        }
        let options = PgConnectOptions::from_str(url)?.options([("search_path", base_schema)]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        // Two instances starting at once would race on CREATE SCHEMA and the first generation;
        // a transaction-scoped advisory lock serializes the set-up.
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("{base_schema}:setup"))
            .execute(&mut *tx)
            .await?;
        tx.execute(format!("CREATE SCHEMA IF NOT EXISTS {base_schema}").as_str())
            .await?;
        tx.commit().await?;
        MIGRATOR.run(&pool).await?;
        let store = Self {
            pool,
            base: base_schema.to_owned(),
        };
        store.ensure_active().await?;
        Ok(store)
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The base schema name.
    pub fn base_schema(&self) -> &str {
        &self.base
    }

    fn schema_of(&self, number: i32) -> String {
        format!("{}_g{number}", self.base)
    }

    /// Makes generation 1 active when no generation is (a fresh database).
    async fn ensure_active(&self) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("{}:setup", self.base))
            .execute(&mut *tx)
            .await?;
        let active: Option<i32> = sqlx::query_scalar("SELECT generation FROM active_generation")
            .fetch_optional(&mut *tx)
            .await?;
        if active.is_none() {
            let g = self.create_generation_in(&mut tx).await?;
            sqlx::query("UPDATE generations SET state = 'active', activated_at = now() WHERE generation = $1")
                .bind(g.number)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO active_generation (generation) VALUES ($1)")
                .bind(g.number)
                .execute(&mut *tx)
                .await?;
            tracing::info!(schema = %g.schema, "created the first read-model generation");
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_generation_in(&self, conn: &mut PgConnection) -> Result<Generation, Error> {
        let number: i32 =
            sqlx::query_scalar("SELECT COALESCE(MAX(generation), 0) + 1 FROM generations")
                .fetch_one(&mut *conn)
                .await?;
        let schema = self.schema_of(number);
        // A crashed earlier rebuild may have left the schema behind without its row.
        conn.execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
            .await?;
        conn.execute(GENERATION_DDL.replace("{schema}", &schema).as_str())
            .await?;
        sqlx::query(
            "INSERT INTO generations (generation, schema_name, state) VALUES ($1, $2, 'building')",
        )
        .bind(number)
        .bind(&schema)
        .execute(&mut *conn)
        .await?;
        Ok(Generation { number, schema })
    }

    /// Creates a new, empty generation (state `building`) for a rebuild.
    pub async fn create_generation(&self) -> Result<Generation, Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("{}:setup", self.base))
            .execute(&mut *tx)
            .await?;
        let g = self.create_generation_in(&mut tx).await?;
        tx.commit().await?;
        Ok(g)
    }

    /// The generation queries read now.
    pub async fn active(&self) -> Result<Generation, Error> {
        active_in(&mut *self.pool.acquire().await?, &self.base, false).await
    }

    /// A generation's checkpoint: the last stream sequence applied to it.
    pub async fn checkpoint_of(&self, g: &Generation) -> Result<u64, Error> {
        checkpoint_in(&mut *self.pool.acquire().await?, g, false).await
    }

    /// Marks generation `number` as missing events its consumer acknowledged (state `behind`),
    /// if it is the active one: every instance then refuses queries until a rebuild replaces it.
    pub async fn mark_behind(&self, number: i32) -> Result<(), Error> {
        sqlx::query(
            "UPDATE generations SET state = 'behind' WHERE generation = $1 AND state = 'active'",
        )
        .bind(number)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The active generation's number when it is marked `behind`.
    pub async fn active_behind(&self) -> Result<Option<i32>, Error> {
        Ok(sqlx::query_scalar(
            "SELECT g.generation FROM active_generation a \
             JOIN generations g ON g.generation = a.generation WHERE g.state = 'behind'",
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The active generation's checkpoint.
    pub async fn checkpoint(&self) -> Result<u64, Error> {
        let g = self.active().await?;
        self.checkpoint_of(&g).await
    }

    /// Waits until the active generation has applied `min_sequence` (read-your-writes), polling
    /// because the writer may be another process; [`Error::Behind`] after `timeout`.
    pub async fn wait_for(&self, min_sequence: u64, timeout: Duration) -> Result<(), Error> {
        if min_sequence == 0 {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let applied = self.checkpoint().await?;
            if applied >= min_sequence {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Behind {
                    applied,
                    wanted: min_sequence,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One tenant of the active generation.
    pub async fn get_tenant(&self, tenant_id: &str) -> Result<Option<TenantRow>, Error> {
        let g = self.active().await?;
        self.get_tenant_in(&g, tenant_id).await
    }

    /// One tenant of a given generation.
    pub async fn get_tenant_in(
        &self,
        g: &Generation,
        tenant_id: &str,
    ) -> Result<Option<TenantRow>, Error> {
        let row = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM {}.tenants WHERE tenant_id = $1",
            g.schema
        ))
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| tenant_from_row(&r)).transpose()
    }

    /// A page of tenants of the active generation, by (created_at, tenant_id).
    pub async fn list_tenants(
        &self,
        filter: &TenantFilter,
        after: Option<&Cursor>,
        page_size: u32,
    ) -> Result<TenantPage, Error> {
        let g = self.active().await?;
        self.list_tenants_in(&g, filter, after, page_size).await
    }

    /// A page of tenants of a given generation.
    pub async fn list_tenants_in(
        &self,
        g: &Generation,
        filter: &TenantFilter,
        after: Option<&Cursor>,
        page_size: u32,
    ) -> Result<TenantPage, Error> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let mut q = QueryBuilder::new(format!(
            "SELECT {TENANT_COLUMNS} FROM {}.tenants WHERE true",
            g.schema
        ));
        push_filter(&mut q, filter);
        if let Some(c) = after {
            q.push(" AND (created_at, tenant_id) > (")
                .push_bind(c.created_at)
                .push(", ")
                .push_bind(c.tenant_id.clone())
                .push(")");
        }
        // One extra row says whether there is a next page.
        q.push(" ORDER BY created_at, tenant_id LIMIT ")
            .push_bind(i64::from(size) + 1);
        let rows = q.build().fetch_all(&self.pool).await?;
        let mut tenants = rows
            .iter()
            .map(tenant_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if tenants.len() > size as usize {
            tenants.truncate(size as usize);
            tenants.last().map(|t| Cursor {
                created_at: t.created_at,
                tenant_id: t.tenant_id.clone(),
            })
        } else {
            None
        };
        let mut count = QueryBuilder::new(format!(
            "SELECT COUNT(*) FROM {}.tenants WHERE true",
            g.schema
        ));
        push_filter(&mut count, filter);
        let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;
        Ok(TenantPage {
            tenants,
            next,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    /// Tenants of the active generation by status, with the age in seconds of the oldest
    /// one of each status (for the metrics).
    pub async fn status_counts(&self) -> Result<Vec<(String, i64, f64)>, Error> {
        let g = self.active().await?;
        let rows: Vec<(String, i64, f64)> = sqlx::query_as(&format!(
            "SELECT status, count(*), \
             COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) \
             FROM {}.tenants GROUP BY status",
            g.schema
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Whether PostgreSQL answers (the readiness check).
    pub async fn ping(&self) -> Result<(), String> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| format!("PostgreSQL: {e}"))
    }

    /// Every tenant of a generation (for comparisons in tests and after a rebuild).
    pub async fn all_tenants_in(&self, g: &Generation) -> Result<Vec<TenantRow>, Error> {
        let rows = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM {}.tenants ORDER BY tenant_id",
            g.schema
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    /// A tenant's history in the active generation, oldest first.
    pub async fn history(&self, tenant_id: &str) -> Result<Vec<HistoryRow>, Error> {
        let g = self.active().await?;
        self.history_in(&g, Some(tenant_id)).await
    }

    /// History of one tenant (or every event with `None`) in a given generation, by sequence.
    pub async fn history_in(
        &self,
        g: &Generation,
        tenant_id: Option<&str>,
    ) -> Result<Vec<HistoryRow>, Error> {
        let sql = format!(
            "SELECT sequence, tenant_id, event_id, event_type, context, summary, occurred_at, \
             correlation_id, causation_id FROM {}.tenant_history \
             WHERE ($1::text IS NULL OR tenant_id = $1) ORDER BY sequence",
            g.schema
        );
        let rows = sqlx::query(&sql)
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(HistoryRow {
                    sequence: r.try_get("sequence")?,
                    tenant_id: r.try_get("tenant_id")?,
                    event_id: r.try_get("event_id")?,
                    event_type: r.try_get("event_type")?,
                    context: r.try_get("context")?,
                    summary: r.try_get("summary")?,
                    occurred_at: r.try_get("occurred_at")?,
                    correlation_id: r.try_get("correlation_id")?,
                    causation_id: r.try_get("causation_id")?,
                })
            })
            .collect()
    }

    /// Every generation: (number, schema, state).
    pub async fn generations(&self) -> Result<Vec<(i32, String, String)>, Error> {
        let rows = sqlx::query_as::<_, (i32, String, String)>(
            "SELECT generation, schema_name, state FROM generations ORDER BY generation",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}

/// Reads the active generation on `conn`; `lock` takes a share lock on the pointer so a flip
/// waits for this transaction (the live consumer's) to finish.
pub(crate) async fn active_in(
    conn: &mut PgConnection,
    base: &str,
    lock: bool,
) -> Result<Generation, Error> {
    let sql = if lock {
        "SELECT generation FROM active_generation FOR SHARE"
    } else {
        "SELECT generation FROM active_generation"
    };
    let number: i32 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await?;
    Ok(Generation {
        number,
        schema: format!("{base}_g{number}"),
    })
}

/// Reads a generation's checkpoint on `conn`; `lock` holds the row until the transaction ends,
/// so two writers of one generation never apply the same event.
pub(crate) async fn checkpoint_in(
    conn: &mut PgConnection,
    g: &Generation,
    lock: bool,
) -> Result<u64, Error> {
    let sql = format!(
        "SELECT stream_sequence FROM {}.projection_checkpoint WHERE name = $1{}",
        g.schema,
        if lock { " FOR UPDATE" } else { "" }
    );
    let seq: i64 = sqlx::query_scalar(&sql)
        .bind(CHECKPOINT_NAME)
        .fetch_one(&mut *conn)
        .await?;
    Ok(u64::try_from(seq).unwrap_or(0))
}

const TENANT_COLUMNS: &str = "tenant_id, status, subdomain, site, bench, plan, organisation, \
    owner_email, owner_name, region, url, last_error, activation_ms, activated_at, created_at, \
    updated_at, last_sequence, state";

fn push_filter(q: &mut QueryBuilder<'_, sqlx::Postgres>, f: &TenantFilter) {
    if let Some(s) = f.status {
        q.push(" AND status = ").push_bind(s.as_str().to_owned());
    }
    if let Some(p) = &f.plan {
        q.push(" AND plan = ").push_bind(p.clone());
    }
    if let Some(b) = &f.bench {
        q.push(" AND bench = ").push_bind(b.clone());
    }
}

fn tenant_from_row(r: &sqlx::postgres::PgRow) -> Result<TenantRow, Error> {
    let status: String = r.try_get("status")?;
    let state: sqlx::types::Json<TenantState> = r.try_get("state")?;
    Ok(TenantRow {
        tenant_id: r.try_get("tenant_id")?,
        // A status this version does not know (a newer writer) reads as None.
        status: status.parse().unwrap_or(tenancy::Status::None),
        subdomain: r.try_get("subdomain")?,
        site: r.try_get("site")?,
        bench: r.try_get("bench")?,
        plan: r.try_get("plan")?,
        organisation: r.try_get("organisation")?,
        owner_email: r.try_get("owner_email")?,
        owner_name: r.try_get("owner_name")?,
        region: r.try_get("region")?,
        url: r.try_get("url")?,
        last_error: r.try_get("last_error")?,
        activation_ms: r.try_get("activation_ms")?,
        activated_at: r.try_get("activated_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        last_sequence: r.try_get("last_sequence")?,
        state: state.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            tenant_id: "0190f5c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "!!", "djE6", "djI6MTox", "djE6eDp5"] {
            assert!(matches!(
                Cursor::decode(bad),
                Err(Error::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn schema_names_are_checked() {
        assert!(valid_schema("projection"));
        assert!(valid_schema("p_1"));
        assert!(!valid_schema("1p"));
        assert!(!valid_schema("Proj"));
        assert!(!valid_schema("a;drop"));
        assert!(!valid_schema(""));
    }
}
