//! What the provisioner does to a site on its bench — create, finish, adopt, drop, install
//! apps — each only after proving the site is the claimant's ([`crate::ownership`]), right
//! after checking the lease ([`Fence`]). A site-state check that errors is "don't know", never
//! "half-made": nothing is removed on a guess.

use frappe::{
    AppName, Bench, BenchError, ConfigEdit, ConfigKey, DbName, DropSite, EditError, NewSite,
    SiteConfig, SiteName, SiteState,
};
use serde_json::{Value, json};

use crate::context::{Ctx, Fence};
use crate::error::{StepError, bench_error};
use crate::fleet::BenchConfig;
use crate::ownership::{Claimant, Verdict, judge};

/// The site_config key and value that mark a site as its owner's.
#[derive(Debug, Clone, Copy)]
pub struct Marker<'a> {
    /// [`frappe::TENANT_MARKER`] or [`frappe::STANDBY_MARKER`].
    pub key: &'static str,
    /// The owner's id.
    pub id: &'a str,
}

impl Marker<'_> {
    fn present_in(&self, config: &SiteConfig) -> bool {
        let current = if self.key == frappe::TENANT_MARKER {
            &config.tenant_id
        } else {
            &config.standby_id
        };
        current.as_deref() == Some(self.id)
    }
}

/// How a site was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// `dropped` (database and user dropped, directory archived) or `directory_removed`.
    pub method: String,
    /// Where bench archived the directory.
    pub archived_under: String,
}

impl Ctx {
    /// What `site` is on `bench`; [`StepError::NotOurs`] if it exists and is not `claimant`'s.
    pub async fn owned_state(
        &self,
        bench: &Bench,
        site: &SiteName,
        claimant: &Claimant<'_>,
    ) -> Result<SiteState, StepError> {
        let state = bench
            .site_state(site)
            .await
            .map_err(|e| bench_error(&format!("checking site {site}"), e))?;
        if let Some(config) = state.config()
            && let Verdict::Foreign(whose) = judge(config, claimant)
        {
            return Err(StepError::NotOurs(format!(
                "site {site} exists on bench and {whose}; nothing was touched"
            )));
        }
        Ok(state)
    }

    /// Creates the claimant's site with its derived database name, then marks it — or finishes
    /// a half-made one of its own (`--force`), or adopts its own complete one. Never touches a
    /// site that is not the claimant's.
    #[allow(clippy::too_many_arguments)] // the site's identity, its owner and where it goes
    pub async fn new_site(
        &self,
        fence: &Fence,
        claimant: &Claimant<'_>,
        marker: Marker<'_>,
        bench_cfg: &BenchConfig,
        bench: &Bench,
        site: &SiteName,
        db_name: &DbName,
    ) -> Result<(), StepError> {
        let admin_password = self.ensure_admin_password(marker.id).await?;
        let force = match self.owned_state(bench, site, claimant).await? {
            SiteState::Complete(config, _) => {
                // Made by an earlier attempt of ours that died before recording it.
                return self
                    .write_marker(fence, bench, site, claimant, marker, Some(&config))
                    .await;
            }
            // Ours (judged above) and not complete: its database, if any, has our derived name.
            SiteState::HalfMade(_) => true,
            SiteState::Missing => false,
        };
        let root = self.db_root(bench_cfg).await?;
        let mut req = NewSite {
            site: site.clone(),
            admin_password,
            db_root: root,
            db_name: Some(db_name.clone()),
            install_apps: vec![],
            no_mariadb_socket: false,
            force,
        };
        fence.check().await?;
        let mut result = bench.new_site(&req).await;
        if let Err(BenchError::DatabaseExists(db)) = &result
            && db == db_name.as_str()
        {
            // Our own earlier attempt made the database: the name is derived from our id.
            req.force = true;
            fence.check().await?;
            result = bench.new_site(&req).await;
        }
        // A failed new-site leaves its directory behind; the next attempt finds it half-made
        // and ours, and the rollback drops it — nothing is removed here on a guess.
        result.map_err(|e| bench_error("new-site", e))?;
        self.crash_at("new-site");
        self.write_marker(fence, bench, site, claimant, marker, None)
            .await?;
        self.crash_at("marker");
        Ok(())
    }

    /// Writes the owner marker unless `current` shows it already.
    pub async fn write_marker(
        &self,
        fence: &Fence,
        bench: &Bench,
        site: &SiteName,
        claimant: &Claimant<'_>,
        marker: Marker<'_>,
        current: Option<&SiteConfig>,
    ) -> Result<(), StepError> {
        if current.is_some_and(|c| marker.present_in(c)) {
            return Ok(());
        }
        let key = ConfigKey::parse(marker.key).map_err(|e| StepError::Permanent(e.to_string()))?;
        self.edit_config(
            fence,
            bench,
            site,
            claimant,
            vec![(key, json!(marker.id))],
            None,
        )
        .await
    }

    /// Sets `values` in `site`'s config in one short process on the bench host, which first
    /// proves the site is `claimant`'s (and, with `rename_from`, renames that directory to
    /// `site` unless `site` exists already). Nothing is written to a site that is not ours.
    pub async fn edit_config(
        &self,
        fence: &Fence,
        bench: &Bench,
        site: &SiteName,
        claimant: &Claimant<'_>,
        values: Vec<(ConfigKey, Value)>,
        rename_from: Option<&SiteName>,
    ) -> Result<(), StepError> {
        let edit = ConfigEdit {
            site: site.clone(),
            rename_from: rename_from.cloned(),
            owner: claimant.proof(),
            set: values,
        };
        fence.check().await?;
        bench.edit_site_config(&edit).await.map_err(|e| match e {
            EditError::Missing(which) => StepError::Transient(format!(
                "site {which} is not on its bench (restored from an older backup, or removed by hand?)"
            )),
            e @ EditError::NotOwned { .. } => StepError::NotOurs(e.to_string()),
            EditError::Bench(e) => bench_error("writing site_config", e),
        })
    }

    /// Drops the claimant's `site` to the archive (database and user too). `None` when there is
    /// no such site; [`StepError::NotOurs`] when it is someone else's.
    pub async fn drop_owned_site(
        &self,
        fence: &Fence,
        claimant: &Claimant<'_>,
        bench_cfg: &BenchConfig,
        bench: &Bench,
        site: &SiteName,
        no_backup: bool,
    ) -> Result<Option<Removed>, StepError> {
        let state = self.owned_state(bench, site, claimant).await?;
        if state == SiteState::Missing {
            return Ok(None);
        }
        let root = self.db_root(bench_cfg).await?;
        fence.check().await?;
        let dropped = bench
            .drop_site(&DropSite {
                site: site.clone(),
                db_root: root,
                no_backup,
                force: true,
            })
            .await;
        match dropped {
            Ok(d) => Ok(Some(Removed {
                method: "dropped".to_owned(),
                archived_under: d.archived_under.unwrap_or_default(),
            })),
            // Dropped between our check and the command (a concurrent redelivery).
            Err(BenchError::SiteNotFound(_)) => Ok(None),
            // A half-made site of ours whose database the root credentials cannot reach: the
            // directory is what can be removed; the database (named after the owner) is left
            // for an operator, and the event says so.
            Err(BenchError::AccessDenied) if matches!(state, SiteState::HalfMade(_)) => {
                fence.check().await?;
                bench
                    .remove_leftover_site_dir(site)
                    .await
                    .map_err(|e| bench_error("removing the site directory", e))?;
                tracing::warn!(%site, "removed a half-made site's directory; its database could not be reached with the root credentials and may remain");
                Ok(Some(Removed {
                    method: "directory_removed (database unreachable with the root credentials; drop it by hand if it exists)".to_owned(),
                    archived_under: String::new(),
                }))
            }
            Err(e) => Err(bench_error("drop-site", e)),
        }
    }

    /// Installs the missing apps one by one.
    pub async fn install_apps(
        &self,
        fence: &Fence,
        bench: &Bench,
        site: &SiteName,
        apps: &[AppName],
    ) -> Result<(), StepError> {
        // No process at all for a plan without apps (each costs a frappe import on the bench).
        if apps.is_empty() {
            return Ok(());
        }
        let installed = bench
            .list_apps(site)
            .await
            .map_err(|e| bench_error("listing installed apps", e))?;
        for app in apps {
            if installed.contains(app) {
                continue;
            }
            fence.check().await?;
            bench
                .install_app(site, app)
                .await
                .map_err(|e| bench_error(&format!("install-app {app}"), e))?;
        }
        Ok(())
    }
}
