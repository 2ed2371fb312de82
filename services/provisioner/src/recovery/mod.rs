//! The provisioner's derived state — `PLACEMENTS`, `SITE_NAMES`, `BENCH_SITES`, `STANDBY_POOL` —
//! follows from the log ([`fold`]). Losing it silently would stop `max_sites` from being
//! enforced, let a second tenant's site take a live tenant's name, and orphan the warm pool, so:
//! - at start-up, a bucket that is empty while the log holds an event it derives from (a
//!   placement, a standby) closes
//!   the provisioner's [`svc::Gate`]: no delivery is worked on (each comes back later), no
//!   placement is made and the pool is not refilled, and `/readyz` says why — until
//!   `tenantctl recover` has run; every 5 s the markers are read again, so every instance also
//!   pauses while a recovery runs;
//! - [`recover`] rebuilds them: placements, names and pool entries create-only (see
//!   [`eventstore::derived`]), then each bench's counter set to the placements on it.
//!
//! Run it while the provisioners are paused by its marker: a placement already past its check
//! when the marker is written can leave a counter one too high — the safe side of `max_sites`,
//! and a second run recounts.

pub mod fold;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use eventstore::derived::{self, BucketReport, Marker, Recovery};
use eventstore::{Body, EventContext, EventStore, StoreError};
use futures::{StreamExt, TryStreamExt};
use svc::{Gate, ReadinessPart};

use crate::placement::{self, PlacementRecord};
use crate::standby::{self, Entry, EntryState};

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The four buckets.
#[derive(Clone)]
pub struct Buckets {
    placements: kv::Store,
    names: kv::Store,
    sites: kv::Store,
    pool: kv::Store,
}

impl Buckets {
    /// Opens (creating when missing) the buckets, with the provisioner's settings.
    pub async fn open(store: &EventStore) -> Result<Self, StoreError> {
        let (sites, placements, names) = placement::open_buckets(store).await?;
        let pool = standby::open_bucket(store).await?;
        Ok(Self {
            placements,
            names,
            sites,
            pool,
        })
    }

    /// Placement over these buckets.
    pub fn placer(&self) -> crate::placement::Placer {
        crate::placement::Placer::over(
            self.sites.clone(),
            self.placements.clone(),
            self.names.clone(),
        )
    }

    /// The warm pool's bucket.
    pub fn pool(&self) -> kv::Store {
        self.pool.clone()
    }

    fn each(&self) -> [(&'static str, &kv::Store); 4] {
        [
            (placement::PLACEMENTS, &self.placements),
            (placement::SITE_NAMES, &self.names),
            (placement::BENCH_SITES, &self.sites),
            (standby::POOL, &self.pool),
        ]
    }

    async fn mark(&self, m: Marker) -> Result<(), StoreError> {
        for (_, kv) in self.each() {
            derived::set_marker(kv, m).await?;
        }
        Ok(())
    }
}

/// Whether the log holds an event of `context` that `derives` says the bucket follows from.
/// Read from the start until the first one: a lost bucket is found at its first placement,
/// and only a log without any (every tenant failed before placement) is read to its end.
async fn log_derives(
    store: &EventStore,
    context: EventContext,
    derives: fn(&Body) -> bool,
) -> Result<bool, StoreError> {
    let mut replay = store.replay(&store.context_filter(context), 1).await?;
    while let Some(e) = replay.next().await {
        if derives(&e?.body) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Why the provisioner must not work now, if it must not. An empty bucket is judged only with
/// `judge_empty` (at start-up, and while already closed): a NATS restart can briefly show a
/// running instance an unloaded bucket as empty, which must not stop a healthy fleet.
async fn closed_because(
    store: &EventStore,
    buckets: &Buckets,
    judge_empty: bool,
) -> Result<Option<String>, StoreError> {
    for (name, kv) in buckets.each() {
        if derived::marker(kv).await? == Some(Marker::InProgress) {
            return Ok(Some(format!(
                "a recovery of the provisioner's derived state ({name}) is running or was cut \
                 short; nothing is placed until `tenantctl recover` has finished"
            )));
        }
    }
    if !judge_empty {
        return Ok(None);
    }
    for (name, kv) in buckets.each() {
        if !derived::is_empty(kv).await? {
            continue;
        }
        let (context, derives, what): (_, fn(&Body) -> bool, _) = if name == standby::POOL {
            (
                EventContext::Pool,
                |b| matches!(b, Body::StandbySiteCreated(_)),
                "standby sites",
            )
        } else {
            (
                EventContext::Provisioning,
                |b| matches!(b, Body::PlacementChosen(_)),
                "placements",
            )
        };
        if log_derives(store, context, derives).await? {
            return Ok(Some(format!(
                "the {name} bucket is empty while the log holds {what}; nothing is placed until \
                 an operator runs `tenantctl recover`"
            )));
        }
    }
    Ok(None)
}

/// Closes `gate` now when derived state is missing (or a recovery is unfinished), then keeps
/// it and `part` in line every 5 s for as long as the gate is in use.
pub async fn guard(
    store: &EventStore,
    buckets: &Buckets,
    gate: &Gate,
    part: ReadinessPart,
) -> Result<(), StoreError> {
    let reason = closed_because(store, buckets, true).await?;
    if let Some(r) = &reason {
        tracing::error!("{r}");
    }
    gate.set(reason);
    let (store, buckets) = (store.clone(), buckets.clone());
    svc::gate::watch(
        gate,
        Some(part),
        Duration::from_secs(5),
        "derived state",
        move |closed| {
            let (store, buckets) = (store.clone(), buckets.clone());
            async move { closed_because(&store, &buckets, closed).await.ok() }
        },
    );
    Ok(())
}

/// Rebuilds the provisioner's buckets from the log; `progress(done, total)` while reading it.
pub async fn recover(
    store: &EventStore,
    dry_run: bool,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<Recovery, StoreError> {
    let buckets = Buckets::open(store).await?;
    if !dry_run {
        buckets.mark(Marker::InProgress).await?;
    }
    let mut replay = store.replay(&store.all_filter(), 1).await?;
    let total = replay.total();
    let mut out = Recovery::default();
    let mut f = fold::Fold::default();
    while let Some(e) = replay.next().await {
        f.apply(&e?.body);
        out.events += 1;
        progress(out.events, total);
    }
    let d = f.finish();

    // Placements as the bucket will hold them, for the recount.
    let mut benches_of = live_placements(&buckets.placements).await?;
    let mut report = BucketReport::new(placement::PLACEMENTS);
    for (id, rec) in &d.placements {
        let held = |v: &[u8]| match serde_json::from_slice::<PlacementRecord>(v) {
            Ok(r) if r.bench == rec.bench => None,
            Ok(r) => Some(format!("on bench {}", r.bench)),
            Err(_) => Some("an unreadable value".to_owned()),
        };
        let value = Bytes::from(serde_json::to_vec(rec).map_err(unavailable)?);
        let before = report.restored.len();
        let in_log = format!("on bench {}", rec.bench);
        derived::restore_key(
            &buckets.placements,
            id,
            value,
            &in_log,
            held,
            dry_run,
            &mut report,
        )
        .await?;
        if report.restored.len() > before {
            benches_of.insert(id.clone(), rec.bench.clone());
        }
    }
    out.buckets.push(report);

    let mut report = BucketReport::new(placement::SITE_NAMES);
    for (subdomain, tenant) in &d.names {
        let held =
            |v: &[u8]| (v != tenant.as_bytes()).then(|| String::from_utf8_lossy(v).into_owned());
        let value = Bytes::from(tenant.clone());
        derived::restore_key(
            &buckets.names,
            subdomain,
            value,
            tenant,
            held,
            dry_run,
            &mut report,
        )
        .await?;
    }
    out.buckets.push(report);

    out.buckets
        .push(restore_pool(&buckets.pool, &d.pool, dry_run).await?);
    out.buckets
        .push(recount(&buckets.sites, &benches_of, &d.counts, dry_run).await?);

    if !dry_run {
        buckets.mark(Marker::Done).await?;
    }
    Ok(out)
}

/// Every placement record the bucket holds: id → bench.
async fn live_placements(kv: &kv::Store) -> Result<BTreeMap<String, String>, StoreError> {
    let read = futures::stream::iter(derived::keys(kv).await?)
        .map(|k| async move {
            let v = kv.get(&k).await.map_err(unavailable)?;
            Ok::<_, StoreError>(v.and_then(|v| {
                serde_json::from_slice::<PlacementRecord>(&v)
                    .ok()
                    .map(|r| (k, r.bench))
            }))
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(read.into_iter().flatten().collect())
}

/// Puts each ready standby the pool lost back under a free key of its bench and app set.
async fn restore_pool(
    kv: &kv::Store,
    ready: &[fold::ReadyStandby],
    dry_run: bool,
) -> Result<BucketReport, StoreError> {
    let mut report = BucketReport::new(standby::POOL);
    let keys: BTreeSet<String> = derived::keys(kv).await?.into_iter().collect();
    let mut present = BTreeSet::new();
    for k in &keys {
        if let Some(v) = kv.get(k).await.map_err(unavailable)?
            && let Ok(e) = serde_json::from_slice::<Entry>(&v)
        {
            present.insert(e.id);
        }
    }
    let mut taken = keys;
    for s in ready {
        if present.contains(&s.id) {
            report.matching += 1;
            continue;
        }
        let set = standby::app_set_key_of(s.apps.iter().map(String::as_str));
        // Claims and refills scan keys from 0, so the lowest free one is found first.
        let key = (0u32..)
            .map(|n| format!("{}.{set}.{n}", s.bench))
            .find(|k| !taken.contains(k))
            .unwrap_or_default();
        taken.insert(key.clone());
        let entry = Entry {
            id: s.id.clone(),
            bench: s.bench.clone(),
            site: s.site.clone(),
            db_name: crate::process::db_name_for(&s.id),
            apps: s.apps.clone(),
            state: EntryState::Ready,
        };
        let value = Bytes::from(serde_json::to_vec(&entry).map_err(unavailable)?);
        let in_log = format!("standby {}", s.id);
        let mut one = BucketReport::new(standby::POOL);
        derived::restore_key(
            kv,
            &key,
            value,
            &in_log,
            |_| Some("another standby".into()),
            dry_run,
            &mut one,
        )
        .await?;
        report
            .restored
            .extend(one.restored.into_iter().map(|k| format!("{k}: {}", s.id)));
        report.differing.extend(one.differing);
    }
    Ok(report)
}

/// Sets each bench's counter to the placements on it (what the bucket holds after the restore).
async fn recount(
    kv: &kv::Store,
    benches_of: &BTreeMap<String, String>,
    in_log: &BTreeMap<String, u32>,
    dry_run: bool,
) -> Result<BucketReport, StoreError> {
    let mut report = BucketReport::new(placement::BENCH_SITES);
    let mut counts: BTreeMap<String, u32> = in_log.keys().map(|b| (b.clone(), 0)).collect();
    for bench in benches_of.values() {
        *counts.entry(bench.clone()).or_default() += 1;
    }
    for k in derived::keys(kv).await? {
        counts.entry(k).or_default();
    }
    for (bench, count) in counts {
        let was = kv.get(&bench).await.map_err(unavailable)?.and_then(|v| {
            std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
        });
        if was == Some(count) {
            report.matching += 1;
            continue;
        }
        if !dry_run {
            kv.put(&bench, Bytes::from(count.to_string()))
                .await
                .map_err(unavailable)?;
        }
        let was = was.map_or_else(|| "none".to_owned(), |w| w.to_string());
        report
            .restored
            .push(format!("{bench}: {count} (was {was})"));
    }
    Ok(report)
}
