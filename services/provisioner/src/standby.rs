//! The warm pool: ready sites per (bench, plan app set), made before anyone asks.
//!
//! A standby has everything that does not depend on the tenant: the site, the plan's apps, the
//! automation user and its API key pair (vaulted under the standby's id). Pool entries live in
//! the KV bucket `STANDBY_POOL` under `<bench>.<app set>.<n>` (n < pool size): a refill creates
//! a missing key create-only (so instances never build the same entry twice), builds the site,
//! then marks it ready; a claim flips ready → claimed by compare-and-set (so two tenants never
//! get one standby), and the key is deleted once the claim is done, which makes the refill build
//! a replacement.
//!
//! A build holds a lease on its standby id for as long as it runs (taken before its entry is
//! created), so an entry left "building" by an instance that died is recognised as soon as the
//! lease lapses — not after a fixed staleness period — and the instance that takes the lease
//! over discards what the build left (only a site carrying that standby's marker or database).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use eventstore::{EventContext, NewEvent};
use frappe::{
    AppName, Bench, BenchOp, ConfigEdit, ConfigKey, DbName, EditError, HostUrl, STANDBY_MARKER,
    SiteName, TENANT_MARKER,
};
use proto::v1::{self as pb, event::Body};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;
use worker::Acquire;

use crate::context::{Ctx, Fence};
use crate::error::{StepError, bench_error, is_not_found, vault_error};
use crate::fleet::{BenchConfig, PoolPolicy};
use crate::ownership::Claimant;
use crate::placement::{PlacementRecord, StandbyRef};
use crate::process;
use crate::secrets::{ADMIN_PASSWORD, API_CREDENTIALS};
use crate::site_bench::Marker;
use crate::{demand, pool_size};

/// A pool entry's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EntryState {
    /// Being built by `holder` since `since_ms`.
    Building {
        /// Instance building it.
        holder: String,
        /// Unix ms when the build began.
        since_ms: i64,
    },
    /// Ready to claim.
    Ready,
    /// Claimed by a tenant (the key is deleted once the claim is done).
    Claimed {
        /// The tenant.
        tenant: String,
    },
}

/// One pool entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Standby id (`standby-<hex>`).
    pub id: String,
    /// Bench.
    pub bench: String,
    /// Site name.
    pub site: String,
    /// Database name.
    pub db_name: String,
    /// Apps installed.
    pub apps: Vec<String>,
    /// State.
    #[serde(flatten)]
    pub state: EntryState,
}

/// The KV token of an app set (`erpnext-hrms`, or `frappe` for none).
pub fn app_set_key(apps: &[AppName]) -> String {
    app_set_key_of(apps.iter().map(AppName::as_str))
}

/// [`app_set_key`] of app names as text (a pool entry's, or an event's).
pub fn app_set_key_of<'a>(apps: impl Iterator<Item = &'a str>) -> String {
    let mut names: Vec<&str> = apps.collect();
    names.sort_unstable();
    if names.is_empty() {
        "frappe".to_owned()
    } else {
        names.join("-")
    }
}

/// The pool bucket's name.
pub const POOL: &str = "STANDBY_POOL";

/// Opens (creating if needed) the pool bucket.
pub async fn open_bucket(
    store: &eventstore::EventStore,
) -> Result<kv::Store, eventstore::StoreError> {
    store
        .key_value(POOL, 1, "Tenantry: warm standby sites")
        .await
}

async fn read(pool: &kv::Store, key: &str) -> Option<(Entry, u64)> {
    let e = pool.entry(key).await.ok()??;
    if e.operation != kv::Operation::Put {
        return None;
    }
    serde_json::from_slice(&e.value)
        .ok()
        .map(|v| (v, e.revision))
}

fn encode(entry: &Entry) -> Bytes {
    Bytes::from(serde_json::to_vec(entry).unwrap_or_default())
}

/// Claims a ready standby with exactly `apps` in `region` for `tenant` and records the placement;
/// `None` when the pool has none (or is off).
pub async fn claim(
    ctx: &Ctx,
    fence: &Fence,
    tenant: &str,
    region: &str,
    apps: &[AppName],
) -> Result<Option<PlacementRecord>, StepError> {
    let policy = ctx.fleet.standby.policy();
    let slots = policy.slots();
    if slots == 0 || !ctx.fleet.standby_app_sets().contains(apps) {
        return Ok(None);
    }
    let pool = &ctx.pool;
    let set = app_set_key(apps);
    let found = take(ctx, fence, tenant, region, pool, &set, slots).await?;
    ctx.metrics.pool_placement(&set, found.is_some());
    if let PoolPolicy::Adaptive(a) = policy {
        demand::placed(ctx, &set, found.is_some(), a.window);
    }
    Ok(found)
}

async fn take(
    ctx: &Ctx,
    fence: &Fence,
    tenant: &str,
    region: &str,
    pool: &kv::Store,
    set: &str,
    size: u32,
) -> Result<Option<PlacementRecord>, StepError> {
    let benches: Vec<&BenchConfig> = ctx
        .fleet
        .benches
        .iter()
        .filter(|b| region.is_empty() || b.region == region)
        .collect();
    // Two passes: first an entry this tenant already claimed (a crash after the claim), then
    // any ready one.
    for mine_only in [true, false] {
        for bench in &benches {
            for n in 0..size {
                let key = format!("{}.{set}.{n}", bench.name);
                let Some((mut entry, revision)) = read(pool, &key).await else {
                    continue;
                };
                let take = match &entry.state {
                    EntryState::Claimed { tenant: t } => t == tenant,
                    EntryState::Ready => !mine_only,
                    EntryState::Building { .. } => false,
                };
                if !take {
                    continue;
                }
                if entry.state == EntryState::Ready {
                    entry.state = EntryState::Claimed {
                        tenant: tenant.to_owned(),
                    };
                    // Lost race: another tenant claimed it first; look further.
                    fence.check().await?;
                    if pool.update(&key, encode(&entry), revision).await.is_err() {
                        continue;
                    }
                }
                let rec = PlacementRecord {
                    bench: entry.bench.clone(),
                    standby: Some(StandbyRef {
                        id: entry.id.clone(),
                        site: entry.site.clone(),
                        db_name: entry.db_name.clone(),
                        pool_key: key.clone(),
                    }),
                };
                // The standby's site count passes to the tenant.
                fence.check().await?;
                ctx.placer.record(tenant, &rec).await?;
                ctx.placer.forget(&entry.id).await?;
                tracing::info!(tenant, standby = %entry.id, bench = %entry.bench, "claimed a standby site");
                return Ok(Some(rec));
            }
        }
    }
    Ok(None)
}

/// Removes the pool entry of `standby` (its claim is complete or rolled back), letting the
/// refill replace it — only if the key still holds that standby: once removed, the refill may
/// already have put a new standby there, which must not be orphaned.
pub async fn forget(ctx: &Ctx, standby: &StandbyRef) {
    let pool = &ctx.pool;
    let key = standby.pool_key.as_str();
    let Ok(Some(entry)) = pool.entry(key).await else {
        return;
    };
    let ours = entry.operation == kv::Operation::Put
        && serde_json::from_slice::<Entry>(&entry.value).is_ok_and(|e| e.id == standby.id);
    if ours && let Err(e) = pool.delete_expect_revision(key, Some(entry.revision)).await {
        tracing::warn!(error = %e, pool_key = key, "could not remove a claimed standby's pool entry");
    }
}

/// Copies a standby's secret to the tenant (unless already there).
async fn rekey(
    ctx: &Ctx,
    fence: &Fence,
    from: &str,
    to: &str,
    name: &str,
    kind: &str,
) -> Result<(), StepError> {
    let reason = "standby site claimed by a tenant";
    // Both read at once. Only a NOT_FOUND of the tenant's means "not copied yet" (a timed-out
    // read of a copy that exists is an error, not a reason to copy again); the standby's entry
    // stays until Finish, so it is there whenever a copy is still to be made.
    let (mine, theirs) = tokio::join!(
        ctx.vault.get_by_name(to, name, reason),
        ctx.vault.get_by_name(from, name, reason)
    );
    match mine {
        Ok(v) => {
            if let Ok(text) = v.to_secret_string() {
                crate::known::remember(to, name, &text);
            }
            return Ok(());
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(vault_error(&format!("reading the tenant's {name}"), e)),
    }
    let value = theirs.map_err(|e| vault_error(&format!("reading the standby's {name}"), e))?;
    fence.check().await?;
    ctx.vault
        .put(to, name, kind, &value.value, reason)
        .await
        .map_err(|e| vault_error(&format!("storing the tenant's {name}"), e))?;
    if let Ok(text) = value.to_secret_string() {
        crate::known::remember(to, name, &text);
    }
    Ok(())
}

/// The claim's I/O: re-key the vault entries to the tenant, mark the standby site as the
/// tenant's, rename its directory to the tenant's host and set `host_name`. Each part checks
/// whether it was done already, and the site is touched only while it is provably the standby
/// the placement claimed (or, after the rename, the tenant's).
pub async fn take_over(
    ctx: &Ctx,
    fence: &Fence,
    tenant: &str,
    bench_cfg: &BenchConfig,
    bench: &Bench,
    standby: &StandbyRef,
    site: &SiteName,
) -> Result<(), StepError> {
    // Independent copies, made side by side and beside the site's edit below. The standby's
    // entries are revoked at Finish (or by a rollback), off the way to a usable site.
    let copies = async {
        tokio::try_join!(
            rekey(
                ctx,
                fence,
                &standby.id,
                tenant,
                ADMIN_PASSWORD,
                "site_admin_password",
            ),
            rekey(
                ctx,
                fence,
                &standby.id,
                tenant,
                API_CREDENTIALS,
                "api_credentials",
            ),
        )
        .map(drop)
    };
    let host = HostUrl::parse(&bench_cfg.public_url(site.as_str()))
        .map_err(|e| StepError::Permanent(e.to_string()))?;
    let claimant = Claimant::Tenant {
        id: tenant,
        standby: Some(&standby.id),
    };
    let from = SiteName::parse(&standby.site).map_err(|e| StepError::Permanent(e.to_string()))?;
    let key = |k: &str| ConfigKey::parse(k).map_err(|e| StepError::Permanent(e.to_string()));
    // One process on the bench host: proves the standby (or, after an earlier attempt's
    // rename, the tenant's site) is the one the placement claimed, renames it unless that is
    // done, and writes the tenant's marker and host — so from the rename on, the site is the
    // tenant's wherever a crash leaves it.
    let edit = ConfigEdit {
        site: site.clone(),
        rename_from: Some(from.clone()),
        owner: claimant.proof(),
        set: vec![
            (key(TENANT_MARKER)?, json!(tenant)),
            (key("host_name")?, json!(host.as_str())),
        ],
    };
    fence.check().await?;
    let edited = async {
        bench.edit_site_config(&edit).await.map_err(|e| match e {
            EditError::Missing(_) => StepError::Permanent(format!(
                "the claimed standby site {from} is no longer on bench {}",
                bench_cfg.name
            )),
            e @ EditError::NotOwned { .. } => StepError::NotOurs(e.to_string()),
            EditError::Bench(e) => bench_error("claiming the standby site", e),
        })
    };
    tokio::try_join!(edited, copies)?;
    ctx.crash_at("rename");
    forget(ctx, standby).await;
    Ok(())
}

/// Keeps the pool full until `shutdown`.
pub async fn refill_loop(ctx: Ctx, every: Duration, shutdown: svc::Shutdown) {
    if ctx.fleet.standby.policy() == PoolPolicy::Off {
        return;
    }
    let mut builds = tokio::task::JoinSet::new();
    loop {
        if let Err(e) = refill_once(&ctx, &mut builds, every).await {
            tracing::warn!(error = %e, "standby refill pass failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => break,
        }
        while builds.try_join_next().is_some() {}
    }
    // Builds in flight are abandoned at shutdown: their leases lapse, and a later refill (here
    // or on another instance) discards what they left.
    builds.abort_all();
}

/// How many standbys each bench that can hold `set` keeps, now.
async fn target(ctx: &Ctx, set: &str, benches: u32, every: Duration) -> u32 {
    match ctx.fleet.standby.policy() {
        PoolPolicy::Off => 0,
        PoolPolicy::Fixed(n) => n,
        PoolPolicy::Adaptive(a) => {
            let seen = demand::read(ctx, set).await;
            let now = chrono::Utc::now().timestamp_millis();
            if let Some(r) = seen.hit_ratio(now, a.window) {
                ctx.metrics.pool_hit_ratio(set, r);
            }
            pool_size::per_bench(&a, &seen, now, every, benches)
        }
    }
}

async fn refill_once(
    ctx: &Ctx,
    builds: &mut tokio::task::JoinSet<()>,
    every: Duration,
) -> Result<(), StepError> {
    // No standby is built (nor its site counted) while the counters are behind the log.
    if ctx.derived.is_closed() {
        return Ok(());
    }
    let pool = ctx.pool.clone();
    let slots = ctx.fleet.standby.policy().slots();
    // Sites per bench now: a build is not started on a bench that is full.
    let mut counts = ctx.placer.counts(&ctx.fleet).await?;
    for set in ctx.fleet.standby_app_sets() {
        let set_key = app_set_key(&set);
        let holders: Vec<&BenchConfig> = ctx
            .fleet
            .benches
            .iter()
            .filter(|b| {
                let have = b.app_names();
                set.iter().all(|a| have.contains(a))
            })
            .collect();
        let size = target(
            ctx,
            &set_key,
            u32::try_from(holders.len()).unwrap_or(u32::MAX),
            every,
        )
        .await;
        for bench in holders {
            ctx.metrics.pool_target(&bench.name, &set_key, size);
            let mut ready = 0;
            for n in 0..slots {
                let key = format!("{}.{set_key}.{n}", bench.name);
                if let Some((entry, revision)) = read(&pool, &key).await {
                    if matches!(entry.state, EntryState::Ready) {
                        ready += 1;
                    }
                    if matches!(entry.state, EntryState::Building { .. }) {
                        // A build whose builder stopped renewing its lease was abandoned: take
                        // the lease over (so nobody else cleans up at the same time) and
                        // discard what it left.
                        if let Acquire::Acquired(lease) = ctx.leases.try_acquire(&entry.id).await? {
                            let ctx = ctx.clone();
                            let pool = pool.clone();
                            builds.spawn(async move {
                                tracing::warn!(standby = %entry.id, "abandoned standby build; discarding it");
                                let fence = Fence::of(Some(Arc::new(lease)));
                                // The entry's revision moves first: a builder that was only
                                // slow then fails its compare-and-set to Ready, instead of
                                // marking ready a site that is being discarded.
                                let Ok(revision) =
                                    pool.update(&key, encode(&entry), revision).await
                                else {
                                    return;
                                };
                                if discard(&ctx, &fence, &entry).await.is_ok() {
                                    let _ = pool.delete_expect_revision(&key, Some(revision)).await;
                                }
                            });
                        }
                    }
                    continue;
                }
                // Entries past the target are not replaced: the pool shrinks as they are claimed.
                let count = counts.entry(bench.name.clone()).or_default();
                if n >= size || *count >= bench.max_sites {
                    continue;
                }
                let short = uuid::Uuid::now_v7().simple().to_string();
                let id = format!("standby-{}", &short[short.len() - 12..]);
                let site = bench
                    .site_name(&id)
                    .map_err(|e| StepError::Permanent(e.to_string()))?;
                // The build's lease first: an entry is never "building" without a live lease,
                // so other instances can tell an abandoned build from a running one.
                let Acquire::Acquired(lease) = ctx.leases.try_acquire(&id).await? else {
                    continue;
                };
                let entry = Entry {
                    id: id.clone(),
                    bench: bench.name.clone(),
                    site: site.to_string(),
                    db_name: process::db_name_for(&id),
                    apps: set.iter().map(ToString::to_string).collect(),
                    state: EntryState::Building {
                        holder: ctx.leases.holder().to_owned(),
                        since_ms: chrono::Utc::now().timestamp_millis(),
                    },
                };
                // Create-only: another instance may be filling the same slot.
                let Ok(revision) = pool.create(&key, encode(&entry)).await else {
                    let _ = lease.release().await;
                    continue;
                };
                *count += 1;
                let ctx = ctx.clone();
                let pool = pool.clone();
                let set = set.clone();
                builds.spawn(async move {
                    let fence = Fence::of(Some(Arc::new(lease)));
                    build(&ctx, &fence, &pool, &key, entry, revision, &set).await;
                });
            }
            ctx.metrics.pool_ready(&bench.name, &set_key, ready);
        }
    }
    Ok(())
}

async fn build(
    ctx: &Ctx,
    fence: &Fence,
    pool: &kv::Store,
    key: &str,
    mut entry: Entry,
    revision: u64,
    apps: &[AppName],
) {
    let started = Instant::now();
    match build_site(ctx, fence, &entry, apps).await {
        Ok(()) => {
            entry.state = EntryState::Ready;
            // An update whose answer was lost may have landed: the entry is read back before
            // the site is discarded, or the pool would list a ready standby with no site.
            let marked = fence.check().await.is_ok()
                && match pool.update(key, encode(&entry), revision).await {
                    Ok(_) => true,
                    Err(_) => matches!(
                        read(pool, key).await,
                        Some((now, _)) if now.id == entry.id && now.state == EntryState::Ready
                    ),
                };
            if !marked {
                tracing::warn!(standby = %entry.id, "standby entry changed while building; discarding it");
                let _ = discard(ctx, fence, &entry).await;
                return;
            }
            let body = Body::StandbySiteCreated(pb::StandbySiteCreated {
                standby_id: entry.id.clone(),
                bench: entry.bench.clone(),
                site: entry.site.clone(),
                apps: entry.apps.clone(),
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
            // The pool's own subject: a standby is not a tenant, and consumers of tenant
            // provisioning (billing, identity, outside subscribers) must never see one.
            let subject = ctx.store.subject(EventContext::Pool, &entry.id);
            let event = NewEvent::new(body).with_id(process::event_id(
                &entry.id,
                0,
                "StandbySiteCreated",
                0,
            ));
            if let Err(e) = ctx.store.append(&subject, 0, vec![event]).await {
                tracing::warn!(error = %e, standby = %entry.id, "could not record StandbySiteCreated");
            }
            ctx.metrics.step_done(
                "standby_build",
                &entry.bench,
                started.elapsed().as_secs_f64(),
            );
            if matches!(ctx.fleet.standby.policy(), PoolPolicy::Adaptive(_)) {
                demand::built(ctx, &app_set_key(apps), started.elapsed().as_secs_f64()).await;
            }
            tracing::info!(standby = %entry.id, bench = %entry.bench, "standby site ready");
        }
        Err(e) => {
            ctx.metrics.step_failed("standby_build", &entry.bench);
            tracing::warn!(error = %e, standby = %entry.id, "standby build failed; discarding it");
            if discard(ctx, fence, &entry).await.is_ok() {
                let _ = pool.delete_expect_revision(key, Some(revision)).await;
            }
        }
    }
}

async fn build_site(
    ctx: &Ctx,
    fence: &Fence,
    entry: &Entry,
    apps: &[AppName],
) -> Result<(), StepError> {
    let (bench_cfg, bench) = ctx.bench(&entry.bench)?;
    if ctx.placer.get(&entry.id).await?.is_none() {
        if !ctx.placer.reserve(bench_cfg).await? {
            return Err(StepError::Permanent(format!(
                "bench {} is full",
                bench_cfg.name
            )));
        }
        ctx.placer
            .record(
                &entry.id,
                &PlacementRecord {
                    bench: entry.bench.clone(),
                    standby: None,
                },
            )
            .await?;
    }
    let site = SiteName::parse(&entry.site).map_err(|e| StepError::Permanent(e.to_string()))?;
    let db = DbName::parse(&entry.db_name).map_err(|e| StepError::Permanent(e.to_string()))?;
    let slot = ctx
        .slots
        .acquire(bench_cfg, bench.command_limit(BenchOp::NewSite))
        .await?;
    let made = ctx
        .new_site(
            fence,
            &Claimant::Standby { id: &entry.id },
            Marker {
                key: STANDBY_MARKER,
                id: &entry.id,
            },
            bench_cfg,
            bench,
            &site,
            &db,
        )
        .await;
    slot.release().await;
    made?;
    // One app per slot hold, so tenant work interleaves with a long standby build.
    for app in apps {
        let slot = ctx
            .slots
            .acquire(bench_cfg, bench.command_limit(BenchOp::InstallApp))
            .await?;
        let r = ctx
            .install_apps(fence, bench, &site, std::slice::from_ref(app))
            .await;
        slot.release().await;
        r?;
    }
    fence.check().await?;
    ctx.issue_credentials(fence, &entry.id, bench_cfg, &site)
        .await?;
    ctx.verify_credentials(&entry.id, bench_cfg, &site).await?;
    wait_for_jobs(ctx, bench_cfg, bench, &site).await
}

/// Waits until the standby has no background jobs left: the automation user's insert enqueued
/// some keyed by the standby's name, and a claim renames the site — a job still queued then
/// would name a site that no longer exists.
async fn wait_for_jobs(
    ctx: &Ctx,
    bench_cfg: &BenchConfig,
    bench: &Bench,
    site: &SiteName,
) -> Result<(), StepError> {
    let started = Instant::now();
    loop {
        let slot = ctx
            .slots
            .acquire(bench_cfg, bench.command_limit(BenchOp::Other))
            .await?;
        let jobs = bench.queued_jobs(site).await;
        slot.release().await;
        let jobs = jobs.map_err(|e| bench_error("listing the standby's background jobs", e))?;
        if jobs.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= ctx.settings.jobs_drain {
            return Err(StepError::Transient(format!(
                "standby {site} still has {} background job(s) queued after {:?} ({}); are the bench's workers running?",
                jobs.len(),
                ctx.settings.jobs_drain,
                jobs.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Removes a standby that will not be used: its site (only if it is this standby's), secrets
/// and site count. Errors leave the entry for a later refill to try again.
async fn discard(ctx: &Ctx, fence: &Fence, entry: &Entry) -> Result<(), StepError> {
    let (bench_cfg, bench) = ctx.bench(&entry.bench)?;
    let site = SiteName::parse(&entry.site).map_err(|e| StepError::Permanent(e.to_string()))?;
    let slot = ctx
        .slots
        .acquire(bench_cfg, bench.command_limit(BenchOp::DropSite))
        .await?;
    let r = ctx
        .drop_owned_site(
            fence,
            &Claimant::Standby { id: &entry.id },
            bench_cfg,
            bench,
            &site,
            true,
        )
        .await;
    slot.release().await;
    match r {
        Ok(_) => {}
        // A tenant's marker is on it: a claim got there first; it is not ours to remove.
        Err(StepError::NotOurs(why)) => {
            tracing::warn!(standby = %entry.id, %why, "not discarding a standby site a tenant has claimed");
        }
        Err(e) => {
            tracing::warn!(error = %e, standby = %entry.id, "could not discard a standby site; a later refill retries");
            return Err(e);
        }
    }
    ctx.revoke_credentials(&entry.id).await?;
    ctx.placer.release(&entry.id).await?;
    Ok(())
}
