//! Placement: which bench hosts a tenant.
//!
//! [`choose`] is the pure rule — same region, every app of the plan available, below
//! `max_sites`, fewest sites first (ties by name). [`Placer`] makes it consistent across
//! concurrent requests and provisioner instances: per-bench site counters live in the KV bucket
//! `BENCH_SITES` and are only changed by compare-and-set, and each tenant's placement is recorded
//! in `PLACEMENTS`, so a redelivered request gets the same bench again. A placement is released
//! by deleting its record with a compare-and-set first and only then decrementing the counter,
//! so two releases (a redelivery, a second instance) can never decrement twice; a crash between
//! the two counts one site too many (capacity errs on the safe side; `tenantctl recover`
//! recounts from the log).
//!
//! `SITE_NAMES` holds which tenant each subdomain's site belongs to, claimed before placement:
//! the provisioner's own guard, so a tenant whose subdomain another tenant's site already has
//! (signup's claims lost or restored from an old backup) fails without touching that site.

use std::collections::{BTreeMap, BTreeSet};

use async_nats::jetstream::kv;
use bytes::Bytes;
use eventstore::EventStore;
use frappe::AppName;
use serde::{Deserialize, Serialize};

use crate::fleet::{BenchConfig, FleetConfig};

/// Why no bench fits. Messages say what an operator can change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// No bench serves the region.
    #[error("no bench serves region {0:?}; add one to the fleet or sign up in another region")]
    NoRegion(String),
    /// Benches in the region lack an app.
    #[error("no bench in region {region:?} has all apps {apps:?}; install them on a bench")]
    NoApps {
        /// The region.
        region: String,
        /// The apps asked for.
        apps: Vec<String>,
    },
    /// Every fitting bench is at max_sites.
    #[error(
        "every bench in region {0:?} that has the plan's apps is full (max_sites); add capacity"
    )]
    Full(String),
}

/// The pure rule: the fitting bench with the fewest sites; among several with as few, the
/// `tie`-th (modulo, in name order). Placements running at once pass different ties, so they
/// spread over equally loaded benches instead of all racing for the first by name.
pub fn choose<'a>(
    fleet: &'a FleetConfig,
    region: &str,
    apps: &[AppName],
    sites: &BTreeMap<String, u32>,
    tie: u64,
) -> Result<&'a BenchConfig, PlacementError> {
    let in_region: Vec<&BenchConfig> = fleet
        .benches
        .iter()
        .filter(|b| region.is_empty() || b.region == region)
        .collect();
    if in_region.is_empty() {
        return Err(PlacementError::NoRegion(region.to_owned()));
    }
    let wanted: BTreeSet<AppName> = apps.iter().cloned().collect();
    let with_apps: Vec<&BenchConfig> = in_region
        .into_iter()
        .filter(|b| wanted.is_subset(&b.app_names()))
        .collect();
    if with_apps.is_empty() {
        return Err(PlacementError::NoApps {
            region: region.to_owned(),
            apps: apps.iter().map(ToString::to_string).collect(),
        });
    }
    let count = |b: &BenchConfig| sites.get(&b.name).copied().unwrap_or(0);
    let open: Vec<&BenchConfig> = with_apps
        .into_iter()
        .filter(|b| count(b) < b.max_sites)
        .collect();
    let fewest = open
        .iter()
        .map(|b| count(b))
        .min()
        .ok_or_else(|| PlacementError::Full(region.to_owned()))?;
    let mut ties: Vec<&BenchConfig> = open.into_iter().filter(|b| count(b) == fewest).collect();
    ties.sort_by(|a, b| a.name.cmp(&b.name));
    let i = usize::try_from(tie % ties.len() as u64).unwrap_or(0);
    Ok(ties[i])
}

/// A standby site a placement took over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandbyRef {
    /// The standby's id (its vault tenant and event subject).
    pub id: String,
    /// Its site name before the claim.
    pub site: String,
    /// Its database name.
    pub db_name: String,
    /// Its pool key, deleted once the claim is done so the pool refills.
    pub pool_key: String,
}

/// A tenant's (or standby's) placement, as recorded in `PLACEMENTS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRecord {
    /// The bench.
    pub bench: String,
    /// The standby taken over, if any.
    #[serde(default)]
    pub standby: Option<StandbyRef>,
}

/// Errors of the KV-backed placer.
#[derive(Debug, thiserror::Error)]
pub enum PlacerError {
    /// No bench fits.
    #[error(transparent)]
    NoFit(#[from] PlacementError),
    /// NATS KV failed; retry later.
    #[error("placement store unavailable: {0}")]
    Unavailable(String),
    /// The subdomain's site belongs to another tenant.
    #[error(
        "subdomain {subdomain:?} already belongs to tenant {owner}; nothing was touched — \
         signup's subdomain claims are behind the log (run `tenantctl recover`), and this \
         tenant must sign up with another subdomain"
    )]
    Taken {
        /// The subdomain.
        subdomain: String,
        /// The tenant whose site it is.
        owner: String,
    },
}

fn unavailable(e: impl std::fmt::Display) -> PlacerError {
    PlacerError::Unavailable(e.to_string())
}

/// Sites counted per bench.
pub const BENCH_SITES: &str = "BENCH_SITES";
/// Each tenant's (and unclaimed standby's) placement.
pub const PLACEMENTS: &str = "PLACEMENTS";
/// The tenant each subdomain's site belongs to.
pub const SITE_NAMES: &str = "SITE_NAMES";

/// Opens (creating if needed) `BENCH_SITES`, `PLACEMENTS` and `SITE_NAMES`, in that order.
pub async fn open_buckets(
    store: &EventStore,
) -> Result<(kv::Store, kv::Store, kv::Store), eventstore::StoreError> {
    Ok((
        store
            .key_value(BENCH_SITES, 1, "Tenantry: sites per bench (CAS counters)")
            .await?,
        store
            .key_value(
                PLACEMENTS,
                1,
                "Tenantry: bench (and standby) of each tenant",
            )
            .await?,
        store
            .key_value(
                SITE_NAMES,
                1,
                "Tenantry: the tenant each subdomain's site belongs to",
            )
            .await?,
    ))
}

/// Placement backed by NATS KV.
#[derive(Clone)]
pub struct Placer {
    sites: kv::Store,
    placements: kv::Store,
    names: kv::Store,
}

/// CAS attempts before giving up on a contended counter.
const CAS_ATTEMPTS: usize = 200;

impl Placer {
    /// Placement over buckets already open (see [`open_buckets`]).
    pub fn over(sites: kv::Store, placements: kv::Store, names: kv::Store) -> Self {
        Self {
            sites,
            placements,
            names,
        }
    }

    /// Claims `subdomain` for `tenant` (idempotent for the same tenant); [`PlacerError::Taken`]
    /// when another tenant's site has it.
    pub async fn claim_name(&self, subdomain: &str, tenant: &str) -> Result<(), PlacerError> {
        for _ in 0..3 {
            match self
                .names
                .create(subdomain, Bytes::from(tenant.to_owned()))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(unavailable(e)),
            }
            match self.names.entry(subdomain).await.map_err(unavailable)? {
                Some(e) if e.operation == kv::Operation::Put => {
                    let owner = String::from_utf8_lossy(&e.value).into_owned();
                    return if owner == tenant {
                        Ok(())
                    } else {
                        Err(PlacerError::Taken {
                            subdomain: subdomain.to_owned(),
                            owner,
                        })
                    };
                }
                // Released between our create and our read: create again.
                _ => continue,
            }
        }
        Err(unavailable(
            "subdomain claims stayed contended; retry later",
        ))
    }

    /// Gives `subdomain` back if `tenant` holds it (its site is gone).
    pub async fn release_name(&self, subdomain: &str, tenant: &str) -> Result<(), PlacerError> {
        match self.names.entry(subdomain).await.map_err(unavailable)? {
            Some(e) if e.operation == kv::Operation::Put && *e.value == *tenant.as_bytes() => {
                match self
                    .names
                    .delete_expect_revision(subdomain, Some(e.revision))
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(()),
                    Err(e) => Err(unavailable(e)),
                }
            }
            _ => Ok(()),
        }
    }

    /// The recorded placement of `id`, if any.
    pub async fn get(&self, id: &str) -> Result<Option<PlacementRecord>, PlacerError> {
        match self.placements.entry(id).await.map_err(unavailable)? {
            Some(e) if e.operation == kv::Operation::Put => serde_json::from_slice(&e.value)
                .map(Some)
                .map_err(|e| unavailable(format!("bad placement record: {e}"))),
            _ => Ok(None),
        }
    }

    /// Records a placement (overwriting).
    pub async fn record(&self, id: &str, rec: &PlacementRecord) -> Result<(), PlacerError> {
        let value = serde_json::to_vec(rec).map_err(unavailable)?;
        self.placements
            .put(id, Bytes::from(value))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Forgets a placement without touching counters (a claimed standby's record).
    pub async fn forget(&self, id: &str) -> Result<(), PlacerError> {
        self.placements.delete(id).await.map_err(unavailable)
    }

    async fn counter(&self, bench: &str) -> Result<(u32, u64), PlacerError> {
        match self.sites.entry(bench).await.map_err(unavailable)? {
            Some(e) if e.operation == kv::Operation::Put => {
                let n = std::str::from_utf8(&e.value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                Ok((n, e.revision))
            }
            Some(e) => Ok((0, e.revision)),
            None => Ok((0, 0)),
        }
    }

    /// Site counts of every bench.
    pub async fn counts(&self, fleet: &FleetConfig) -> Result<BTreeMap<String, u32>, PlacerError> {
        let read =
            futures::future::try_join_all(fleet.benches.iter().map(|b| self.counter(&b.name)))
                .await?;
        Ok(fleet
            .benches
            .iter()
            .zip(read)
            .map(|(b, (n, _))| (b.name.clone(), n))
            .collect())
    }

    /// Sets the counter from `expected` (revision) to `value`; false on a lost race.
    async fn cas(&self, bench: &str, value: u32, revision: u64) -> Result<bool, PlacerError> {
        let bytes = Bytes::from(value.to_string());
        let result = if revision == 0 {
            self.sites
                .create(bench, bytes)
                .await
                .map(drop)
                .map_err(|e| {
                    (
                        e.kind() == kv::CreateErrorKind::AlreadyExists,
                        e.to_string(),
                    )
                })
        } else {
            self.sites
                .update(bench, bytes, revision)
                .await
                .map(drop)
                .map_err(|e| {
                    (
                        e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )
                })
        };
        match result {
            Ok(()) => Ok(true),
            Err((true, _)) => Ok(false),
            Err((false, e)) => Err(unavailable(e)),
        }
    }

    /// Chooses a bench for `id` and counts the site on it; a recorded placement is returned as
    /// is (redelivery places the tenant where it was placed before).
    ///
    /// Between the counter increment and the record there is a window where a crash counts one
    /// site too many on the bench (never too few): capacity errs on the safe side.
    pub async fn place(
        &self,
        fleet: &FleetConfig,
        id: &str,
        region: &str,
        apps: &[AppName],
    ) -> Result<PlacementRecord, PlacerError> {
        if let Some(rec) = self.get(id).await? {
            return Ok(rec);
        }
        // CAS retry loop: another placement changed a counter between our read and write, so
        // read every counter again and re-choose (the rule stays "fewest sites").
        for _ in 0..CAS_ATTEMPTS {
            // Every counter read at once: a round trip, not one per bench.
            let read =
                futures::future::try_join_all(fleet.benches.iter().map(|b| self.counter(&b.name)))
                    .await?;
            let mut counts = BTreeMap::new();
            let mut revisions = BTreeMap::new();
            for (b, (n, rev)) in fleet.benches.iter().zip(read) {
                counts.insert(b.name.clone(), n);
                revisions.insert(b.name.clone(), rev);
            }
            let bench = choose(fleet, region, apps, &counts, rand::random())?;
            let n = counts[&bench.name];
            if self.cas(&bench.name, n + 1, revisions[&bench.name]).await? {
                let rec = PlacementRecord {
                    bench: bench.name.clone(),
                    standby: None,
                };
                self.record(id, &rec).await?;
                return Ok(rec);
            }
            tokio::time::sleep(std::time::Duration::from_millis(rand::random::<u64>() % 20)).await;
        }
        Err(unavailable("site counters stayed contended; retry later"))
    }

    /// Counts one more site on `bench` if it has room (for a standby); false when full.
    pub async fn reserve(&self, bench: &BenchConfig) -> Result<bool, PlacerError> {
        for _ in 0..CAS_ATTEMPTS {
            let (n, rev) = self.counter(&bench.name).await?;
            if n >= bench.max_sites {
                return Ok(false);
            }
            if self.cas(&bench.name, n + 1, rev).await? {
                return Ok(true);
            }
        }
        Err(unavailable("site counters stayed contended; retry later"))
    }

    /// Gives the site of `id` back (rollback, deletion): the record is removed by a
    /// compare-and-set, and only the caller that removed it decrements its bench's count.
    pub async fn release(&self, id: &str) -> Result<(), PlacerError> {
        let Some(entry) = self.placements.entry(id).await.map_err(unavailable)? else {
            return Ok(());
        };
        if entry.operation != kv::Operation::Put {
            return Ok(());
        }
        let rec: PlacementRecord = serde_json::from_slice(&entry.value)
            .map_err(|e| unavailable(format!("bad placement record: {e}")))?;
        match self
            .placements
            .delete_expect_revision(id, Some(entry.revision))
            .await
        {
            Ok(()) => self.uncount(&rec.bench).await,
            // Released (or changed) by someone else first: they own the decrement.
            Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// One fewer site on `bench`.
    pub async fn uncount(&self, bench: &str) -> Result<(), PlacerError> {
        for _ in 0..CAS_ATTEMPTS {
            let (n, rev) = self.counter(bench).await?;
            if n == 0 {
                return Ok(());
            }
            if self.cas(bench, n - 1, rev).await? {
                return Ok(());
            }
        }
        Err(unavailable("site counters stayed contended; retry later"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> FleetConfig {
        let bench = |name: &str, region: &str, apps: &str, max: u32| {
            format!(
                r#"
[[benches]]
name = "{name}"
region = "{region}"
base_url = "http://127.0.0.1:8000"
base_domain = "x.localhost"
max_sites = {max}
max_concurrent_operations = 2
apps = [{apps}]
db_root_password_ref = "vault://tenant/fleet/root"
runner = {{ kind = "local", bench_dir = "/b" }}
"#
            )
        };
        let text = [
            bench("a", "eu", "\"erpnext\"", 10),
            bench("b", "eu", "\"erpnext\"", 10),
            bench("c", "eu", "", 10),
            bench("d", "us", "\"erpnext\"", 1),
        ]
        .concat();
        FleetConfig::parse(&text).unwrap()
    }

    fn apps(names: &[&str]) -> Vec<AppName> {
        names.iter().map(|n| AppName::parse(n).unwrap()).collect()
    }

    #[test]
    fn fewest_sites_in_region_with_apps() {
        let f = fleet();
        let mut counts = BTreeMap::new();
        assert_eq!(
            choose(&f, "eu", &apps(&["erpnext"]), &counts, 0)
                .unwrap()
                .name,
            "a"
        );
        counts.insert("a".to_owned(), 1);
        assert_eq!(
            choose(&f, "eu", &apps(&["erpnext"]), &counts, 0)
                .unwrap()
                .name,
            "b"
        );
        // Without apps, c (empty) is a candidate too and has fewest.
        counts.insert("b".to_owned(), 1);
        assert_eq!(choose(&f, "eu", &[], &counts, 0).unwrap().name, "c");
    }

    #[test]
    fn ties_spread_over_the_equally_loaded_benches_only() {
        let f = fleet();
        let erp = apps(&["erpnext"]);
        let empty = BTreeMap::new();
        let picks: BTreeSet<String> = (0..8)
            .map(|t| choose(&f, "eu", &erp, &empty, t).unwrap().name.clone())
            .collect();
        assert_eq!(picks, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
        // One more site on a: every tie now picks b.
        let counts = BTreeMap::from([("a".to_owned(), 1)]);
        assert!((0..8).all(|t| choose(&f, "eu", &erp, &counts, t).unwrap().name == "b"));
    }

    #[test]
    fn explains_why_nothing_fits() {
        let f = fleet();
        let counts = BTreeMap::from([("d".to_owned(), 1)]);
        assert!(matches!(
            choose(&f, "ap", &[], &counts, 0),
            Err(PlacementError::NoRegion(_))
        ));
        assert!(matches!(
            choose(&f, "eu", &apps(&["hrms"]), &counts, 0),
            Err(PlacementError::NoApps { .. })
        ));
        assert!(matches!(
            choose(&f, "us", &apps(&["erpnext"]), &counts, 0),
            Err(PlacementError::Full(_))
        ));
    }
}
