//! Whose a site is — pure. Every site Tenantry creates carries its owner from the moment it
//! exists: its database name is derived from the owner's id (`--db-name`, the first thing
//! new-site writes), and the owner's id is written into site_config right after
//! (`tenantry_tenant_id`, or `tenantry_standby_id` for a pool site). A step adopts, configures,
//! renames, rolls back or drops only a site this judges to be its own; anything else is a
//! conflict that stops the step and touches nothing.

use frappe::{OwnerProof, SiteConfig};

use crate::process::db_name_for;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimant<'a> {
    /// A tenant, possibly through the standby site its placement claimed.
    Tenant {
        /// The tenant's id.
        id: &'a str,
        /// The standby the placement took over, if any.
        standby: Option<&'a str>,
    },
    /// A standby site being built or discarded.
    Standby {
        /// The standby's id.
        id: &'a str,
    },
}

/// The verdict on a site directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Made by (or claimed for) the claimant: it may act on it.
    Ours,
    /// Someone else's, or nobody's: hands off. The reason names the owner for the operator.
    Foreign(String),
}

fn standby_is(config: &SiteConfig, id: &str) -> bool {
    config.standby_id.as_deref() == Some(id)
        || config.db_name.as_deref() == Some(db_name_for(id).as_str())
}

/// Whether `config` (of an existing site directory) belongs to `claimant`.
pub fn judge(config: &SiteConfig, claimant: &Claimant<'_>) -> Verdict {
    match claimant {
        Claimant::Tenant { id, standby } => match config.tenant_id.as_deref() {
            Some(t) if t == *id => Verdict::Ours,
            Some(other) => Verdict::Foreign(format!("belongs to tenant {other}")),
            None if config.db_name.as_deref() == Some(db_name_for(id).as_str()) => Verdict::Ours,
            None if standby.is_some_and(|s| standby_is(config, s)) => Verdict::Ours,
            None => Verdict::Foreign(nobodys(config)),
        },
        Claimant::Standby { id } => match config.tenant_id.as_deref() {
            Some(t) => Verdict::Foreign(format!("belongs to tenant {t}")),
            None if standby_is(config, id) => Verdict::Ours,
            None => Verdict::Foreign(nobodys(config)),
        },
    }
}

impl Claimant<'_> {
    /// The same rule as [`judge`], in the form the bench host's config editor checks, so an
    /// edit proves ownership in the command that makes it.
    pub fn proof(&self) -> OwnerProof {
        match self {
            Claimant::Tenant { id, standby } => OwnerProof {
                tenant: Some((*id).to_owned()),
                standby_ids: standby.iter().map(|s| (*s).to_owned()).collect(),
                db_names: std::iter::once(*id)
                    .chain(standby.iter().copied())
                    .map(db_name_for)
                    .collect(),
            },
            Claimant::Standby { id } => OwnerProof {
                tenant: None,
                standby_ids: vec![(*id).to_owned()],
                db_names: vec![db_name_for(id)],
            },
        }
    }
}

fn nobodys(config: &SiteConfig) -> String {
    match (&config.standby_id, &config.db_name) {
        (Some(s), _) => format!("is standby site {s}"),
        (None, Some(db)) => format!(
            "carries no Tenantry owner marker and uses database {db}, which no Tenantry tenant \
             would have (not made by Tenantry, or by another deployment)"
        ),
        (None, None) => "has no site_config.json (not a site Tenantry made)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(db: Option<&str>, tenant: Option<&str>, standby: Option<&str>) -> SiteConfig {
        SiteConfig {
            db_name: db.map(str::to_owned),
            tenant_id: tenant.map(str::to_owned),
            standby_id: standby.map(str::to_owned),
        }
    }

    const T: &str = "0190f5c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d";
    const OTHER: &str = "0190f5c2-0000-7a3b-9c4d-5e6f7a8b9c0d";

    fn tenant() -> Claimant<'static> {
        Claimant::Tenant {
            id: T,
            standby: None,
        }
    }

    #[test]
    fn the_marker_or_the_derived_database_makes_a_site_ours() {
        assert_eq!(
            judge(&cfg(Some("_x"), Some(T), None), &tenant()),
            Verdict::Ours
        );
        // Made by new-site, killed before the marker was written.
        assert_eq!(
            judge(&cfg(Some(&db_name_for(T)), None, None), &tenant()),
            Verdict::Ours
        );
    }

    #[test]
    fn another_tenants_or_nobodys_site_is_foreign() {
        let v = judge(&cfg(Some(&db_name_for(T)), Some(OTHER), None), &tenant());
        assert_eq!(v, Verdict::Foreign(format!("belongs to tenant {OTHER}")));
        // Another tenant's database name without a marker.
        assert!(matches!(
            judge(&cfg(Some(&db_name_for(OTHER)), None, None), &tenant()),
            Verdict::Foreign(_)
        ));
        // A site someone made by hand, and a directory without a config.
        assert!(
            matches!(judge(&cfg(Some("_71dd730ba6ca68e8"), None, None), &tenant()), Verdict::Foreign(r) if r.contains("no Tenantry owner marker"))
        );
        assert!(
            matches!(judge(&cfg(None, None, None), &tenant()), Verdict::Foreign(r) if r.contains("no site_config"))
        );
    }

    #[test]
    fn a_claimed_standby_is_ours_only_for_its_claimant() {
        let s = "standby-0123456789ab";
        let claimed = Claimant::Tenant {
            id: T,
            standby: Some(s),
        };
        let pool_site = cfg(Some(&db_name_for(s)), None, Some(s));
        assert_eq!(judge(&pool_site, &claimed), Verdict::Ours);
        assert!(
            matches!(judge(&pool_site, &tenant()), Verdict::Foreign(r) if r.contains("standby"))
        );
        assert_eq!(
            judge(&pool_site, &Claimant::Standby { id: s }),
            Verdict::Ours
        );
        // Once a tenant's marker is on it, the pool no longer owns it.
        let taken = cfg(Some(&db_name_for(s)), Some(T), Some(s));
        assert_eq!(judge(&taken, &claimed), Verdict::Ours);
        assert!(matches!(
            judge(&taken, &Claimant::Standby { id: s }),
            Verdict::Foreign(_)
        ));
    }

    #[test]
    fn the_host_side_proof_agrees_with_the_judge() {
        let s = "standby-0123456789ab";
        let ids = [Some(T), Some(OTHER), Some(""), None];
        let standbys = [Some(s), Some("standby-ffffffffffff"), None];
        let dbs = [
            Some(db_name_for(T)),
            Some(db_name_for(OTHER)),
            Some(db_name_for(s)),
            Some("_71dd730ba6ca68e8".to_owned()),
            None,
        ];
        let claimants = [
            tenant(),
            Claimant::Tenant {
                id: T,
                standby: Some(s),
            },
            Claimant::Standby { id: s },
        ];
        for t in ids {
            for sb in standbys {
                for db in &dbs {
                    let c = cfg(db.as_deref(), t, sb);
                    for who in &claimants {
                        assert_eq!(
                            judge(&c, who) == Verdict::Ours,
                            who.proof().accepts(&c),
                            "{c:?} for {who:?}"
                        );
                    }
                }
            }
        }
    }
}
