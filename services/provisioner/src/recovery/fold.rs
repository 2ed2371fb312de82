//! The provisioner's derived state as the log says it should be: a pure fold over events, so
//! what a recovery writes is decided without I/O and tested without NATS.
//!
//! - A tenant holds a placement (and its subdomain's site name) from its PlacementChosen until
//!   SiteRolledBack, ProvisioningFailed (a rollback released both) or SiteDeleted; a retry's
//!   next PlacementChosen takes them again.
//! - A standby counts on its bench from StandbySiteCreated until a tenant claims it — seen as a
//!   PlacementChosen naming the standby's database, or StandbySiteClaimed — when its placement
//!   passes to the tenant. Unclaimed standbys are the pool.
//! - A bench's site count is the number of placements on it.

use std::collections::{BTreeMap, HashMap};

use eventstore::Body;

use crate::placement::{PlacementRecord, StandbyRef};
use crate::process::db_name_for;

/// A tenant's facts so far.
#[derive(Debug, Default)]
struct Tenant {
    subdomain: Option<String>,
    placed: Option<Placed>,
}

#[derive(Debug)]
struct Placed {
    bench: String,
    standby: Option<String>,
}

/// A standby's facts so far.
#[derive(Debug)]
struct Standby {
    bench: String,
    site: String,
    apps: Vec<String>,
    claimed: bool,
}

/// A standby the pool should hold (created, never claimed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyStandby {
    /// Its id.
    pub id: String,
    /// Its bench.
    pub bench: String,
    /// Its site.
    pub site: String,
    /// Its apps.
    pub apps: Vec<String>,
}

/// What the buckets should hold.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Derived {
    /// `PLACEMENTS`: tenant or standby id → placement.
    pub placements: BTreeMap<String, PlacementRecord>,
    /// `SITE_NAMES`: subdomain → tenant.
    pub names: BTreeMap<String, String>,
    /// `BENCH_SITES`: bench → sites counted on it.
    pub counts: BTreeMap<String, u32>,
    /// `STANDBY_POOL`: the ready standbys, oldest first.
    pub pool: Vec<ReadyStandby>,
}

/// Folds events in log order.
#[derive(Debug, Default)]
pub struct Fold {
    tenants: BTreeMap<String, Tenant>,
    standbys: BTreeMap<String, Standby>,
    /// Creation order of standbys.
    order: Vec<String>,
    /// A standby's database → its id (a claim's PlacementChosen names the database).
    by_db: HashMap<String, String>,
}

impl Fold {
    /// Applies one event.
    pub fn apply(&mut self, body: &Body) {
        match body {
            Body::TenantRequested(e) => {
                self.tenant(&e.tenant_id).subdomain = Some(e.subdomain.clone());
            }
            Body::StandbySiteCreated(e) => {
                if !self.standbys.contains_key(&e.standby_id) {
                    self.order.push(e.standby_id.clone());
                    self.by_db
                        .insert(db_name_for(&e.standby_id), e.standby_id.clone());
                }
                self.standbys.insert(
                    e.standby_id.clone(),
                    Standby {
                        bench: e.bench.clone(),
                        site: e.site.clone(),
                        apps: e.apps.clone(),
                        claimed: false,
                    },
                );
            }
            Body::PlacementChosen(e) => {
                let standby = self.by_db.get(&e.db_name).cloned();
                if let Some(s) = standby.as_ref().and_then(|id| self.standbys.get_mut(id)) {
                    s.claimed = true;
                }
                self.tenant(&e.tenant_id).placed = Some(Placed {
                    bench: e.bench.clone(),
                    standby,
                });
            }
            Body::StandbySiteClaimed(e) => {
                if let Some(s) = self.standbys.get_mut(&e.standby_id) {
                    s.claimed = true;
                }
                if let Some(p) = self.tenant(&e.tenant_id).placed.as_mut() {
                    p.standby = Some(e.standby_id.clone());
                }
            }
            Body::SiteRolledBack(e) => self.tenant(&e.tenant_id).placed = None,
            Body::ProvisioningFailed(e) => self.tenant(&e.tenant_id).placed = None,
            Body::SiteDeleted(e) => self.tenant(&e.tenant_id).placed = None,
            _ => {}
        }
    }

    fn tenant(&mut self, id: &str) -> &mut Tenant {
        self.tenants.entry(id.to_owned()).or_default()
    }

    /// What the buckets should hold after the events applied so far.
    pub fn finish(self) -> Derived {
        let mut d = Derived::default();
        for (id, t) in &self.tenants {
            let Some(p) = &t.placed else { continue };
            let standby = p.standby.as_ref().and_then(|sid| {
                self.standbys.get(sid).map(|s| StandbyRef {
                    id: sid.clone(),
                    site: s.site.clone(),
                    db_name: db_name_for(sid),
                    // The pool key is not in the log; a claim only uses it to remove an entry
                    // that still names this standby, which after a loss none does.
                    pool_key: String::new(),
                })
            });
            d.placements.insert(
                id.clone(),
                PlacementRecord {
                    bench: p.bench.clone(),
                    standby,
                },
            );
            if let Some(sub) = &t.subdomain {
                d.names.insert(sub.clone(), id.clone());
            }
        }
        for id in &self.order {
            let s = &self.standbys[id];
            if s.claimed {
                continue;
            }
            d.placements.insert(
                id.clone(),
                PlacementRecord {
                    bench: s.bench.clone(),
                    standby: None,
                },
            );
            d.pool.push(ReadyStandby {
                id: id.clone(),
                bench: s.bench.clone(),
                site: s.site.clone(),
                apps: s.apps.clone(),
            });
        }
        for rec in d.placements.values() {
            *d.counts.entry(rec.bench.clone()).or_default() += 1;
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use proto::v1 as pb;

    use super::*;

    fn requested(t: &str, sub: &str) -> Body {
        Body::TenantRequested(pb::TenantRequested {
            tenant_id: t.into(),
            subdomain: sub.into(),
            ..Default::default()
        })
    }

    fn placed(t: &str, bench: &str, db: &str) -> Body {
        Body::PlacementChosen(pb::PlacementChosen {
            tenant_id: t.into(),
            bench: bench.into(),
            db_name: db.into(),
            ..Default::default()
        })
    }

    fn standby(id: &str, bench: &str) -> Body {
        Body::StandbySiteCreated(pb::StandbySiteCreated {
            standby_id: id.into(),
            bench: bench.into(),
            site: format!("{id}.b.localhost"),
            apps: vec!["erpnext".into()],
            duration_ms: 1,
        })
    }

    fn fold(events: &[Body]) -> Derived {
        let mut f = Fold::default();
        for e in events {
            f.apply(e);
        }
        f.finish()
    }

    #[test]
    fn placed_tenants_hold_bench_and_name_until_rolled_back_or_deleted() {
        let d = fold(&[
            requested("t1", "acme"),
            placed("t1", "a", &db_name_for("t1")),
            requested("t2", "beta"),
            placed("t2", "a", &db_name_for("t2")),
            Body::SiteRolledBack(pb::SiteRolledBack {
                tenant_id: "t2".into(),
                ..Default::default()
            }),
            Body::ProvisioningFailed(pb::ProvisioningFailed {
                tenant_id: "t2".into(),
                ..Default::default()
            }),
            requested("t3", "gamma"),
            placed("t3", "b", &db_name_for("t3")),
            Body::SiteDeleted(pb::SiteDeleted {
                tenant_id: "t3".into(),
                ..Default::default()
            }),
            // Requested, never placed: holds nothing.
            requested("t4", "delta"),
        ]);
        assert_eq!(d.placements.keys().collect::<Vec<_>>(), ["t1"]);
        assert_eq!(d.names, BTreeMap::from([("acme".into(), "t1".into())]));
        assert_eq!(d.counts, BTreeMap::from([("a".into(), 1)]));
    }

    #[test]
    fn a_retry_after_a_failure_places_again() {
        let d = fold(&[
            requested("t1", "acme"),
            placed("t1", "a", &db_name_for("t1")),
            Body::ProvisioningFailed(pb::ProvisioningFailed {
                tenant_id: "t1".into(),
                ..Default::default()
            }),
            placed("t1", "b", &db_name_for("t1")),
        ]);
        assert_eq!(d.placements["t1"].bench, "b");
        assert_eq!(d.counts, BTreeMap::from([("b".into(), 1)]));
        assert_eq!(d.names["acme"], "t1");
    }

    #[test]
    fn a_claimed_standby_passes_its_count_to_the_tenant_and_leaves_the_pool() {
        let d = fold(&[
            standby("standby-1", "a"),
            standby("standby-2", "a"),
            standby("standby-3", "b"),
            requested("t1", "acme"),
            placed("t1", "a", &db_name_for("standby-1")),
            Body::StandbySiteClaimed(pb::StandbySiteClaimed {
                tenant_id: "t1".into(),
                standby_id: "standby-1".into(),
                ..Default::default()
            }),
        ]);
        let ids: Vec<&str> = d.pool.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["standby-2", "standby-3"]);
        assert_eq!(
            d.placements["t1"].standby.as_ref().map(|s| s.id.as_str()),
            Some("standby-1")
        );
        assert!(!d.placements.contains_key("standby-1"));
        assert_eq!(d.counts, BTreeMap::from([("a".into(), 2), ("b".into(), 1)]));
    }
}
