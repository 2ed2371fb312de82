//! What is on a bench for a site name: its config (who owns it) and whether it is complete.
//!
//! A site is complete only when `frappe` is among its installed apps: a `new-site` killed
//! part-way leaves `sites/<site>/` with a config and a partial database, on which
//! `execute frappe.get_installed_apps` exits 0 with nothing (tests/fixtures/frappe/README.md).

use crate::bench::{Bench, BenchError, BenchOp};
use crate::names::{AppName, SiteName};
use crate::parse;

/// The site_config key holding the id of the tenant a site belongs to.
pub const TENANT_MARKER: &str = "tenantry_tenant_id";
/// The site_config key holding the id of the standby a pool site was built as.
pub const STANDBY_MARKER: &str = "tenantry_standby_id";

/// The part of a `site_config.json` that says whose a site is. Everything else (the database
/// password among it) is dropped as soon as the file is parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteConfig {
    /// `db_name`: new-site writes it first, so even a half-made site has it.
    pub db_name: Option<String>,
    /// [`TENANT_MARKER`].
    pub tenant_id: Option<String>,
    /// [`STANDBY_MARKER`].
    pub standby_id: Option<String>,
}

impl SiteConfig {
    /// The ownership keys of a parsed `site_config.json` (a key that is not a string counts as
    /// absent).
    pub fn from_map(map: &serde_json::Map<String, serde_json::Value>) -> Self {
        let text_of = |k: &str| {
            map.get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        Self {
            db_name: text_of("db_name"),
            tenant_id: text_of(TENANT_MARKER),
            standby_id: text_of(STANDBY_MARKER),
        }
    }

    /// The ownership keys as the config editor reports them on a refusal (JSON; no secret is
    /// among them).
    pub fn markers(&self) -> String {
        serde_json::json!({
            TENANT_MARKER: self.tenant_id,
            STANDBY_MARKER: self.standby_id,
            "db_name": self.db_name,
        })
        .to_string()
    }
}

/// What a site name is on a bench.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteState {
    /// No `sites/<site>/`.
    Missing,
    /// A directory that is not a complete site: no config, a config but a database that does
    /// not answer, or one without `frappe` installed.
    HalfMade(SiteConfig),
    /// A working site and its installed apps.
    Complete(SiteConfig, Vec<AppName>),
}

impl SiteState {
    /// The config, unless the site is missing.
    pub fn config(&self) -> Option<&SiteConfig> {
        match self {
            SiteState::Missing => None,
            SiteState::HalfMade(c) | SiteState::Complete(c, _) => Some(c),
        }
    }
}

impl Bench {
    /// The ownership part of `sites/<site>/site_config.json` (read with `cat`, so it works on a
    /// half-made site); `None` when the file is not there.
    pub async fn site_config(&self, site: &SiteName) -> Result<Option<SiteConfig>, BenchError> {
        let guard = self.guard(self.timeout_of(BenchOp::Other));
        let out = self
            .run_guarded_tool(
                "read-site-config",
                "cat",
                vec!["--".into(), format!("sites/{site}/site_config.json").into()],
                &guard,
            )
            .await?;
        if !out.success() {
            if out.stderr.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(BenchError::CommandFailed {
                op: "read-site-config",
                exit_code: out.exit_code,
                detail: out.stderr.trim().chars().take(300).collect(),
            });
        }
        parse::site_ownership(&out.stdout)
            .map(Some)
            .map_err(|detail| BenchError::UnexpectedOutput {
                op: "read-site-config",
                detail,
            })
    }

    /// Whether `sites/<site>` exists at all (a directory without a config is not a site, but
    /// is in the way of one).
    pub async fn site_dir_exists(&self, site: &SiteName) -> Result<bool, BenchError> {
        let guard = self.guard(self.timeout_of(BenchOp::Other));
        let out = self
            .run_guarded_tool(
                "site-dir-exists",
                "test",
                vec!["-e".into(), format!("sites/{site}").into()],
                &guard,
            )
            .await?;
        match out.exit_code {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(BenchError::CommandFailed {
                op: "site-dir-exists",
                exit_code: out.exit_code,
                detail: out.stderr.trim().chars().take(300).collect(),
            }),
        }
    }

    /// What `site` is on this bench. An error here (timeout, ssh down, lock busy) means "don't
    /// know": callers must not take it for missing or half-made.
    pub async fn site_state(&self, site: &SiteName) -> Result<SiteState, BenchError> {
        let Some(config) = self.site_config(site).await? else {
            return Ok(if self.site_dir_exists(site).await? {
                SiteState::HalfMade(SiteConfig::default())
            } else {
                SiteState::Missing
            });
        };
        match self.list_apps(site).await {
            Ok(apps) if apps.iter().any(|a| a.as_str() == "frappe") => {
                Ok(SiteState::Complete(config, apps))
            }
            Ok(_) => Ok(SiteState::HalfMade(config)),
            // Bench ran and MariaDB said the site's database (or its user, made with it) is not
            // there: the directory is all there is. Anything else — MariaDB down (2003), a
            // timeout, too many connections — is "don't know", never "half-made".
            Err(BenchError::SiteNotFound(_)) => Ok(SiteState::HalfMade(config)),
            Err(BenchError::CommandFailed { ref detail, .. }) if database_missing(detail) => {
                Ok(SiteState::HalfMade(config))
            }
            Err(e) => Err(e),
        }
    }
}

/// Whether a failed bench command's error says the site's database is missing: MariaDB's
/// 1049 (unknown database) or 1045 (access denied for the site's own user, which new-site
/// creates together with the database).
fn database_missing(detail: &str) -> bool {
    detail.contains("(1049,") || detail.contains("(1045,")
}

#[cfg(test)]
mod tests {
    use super::database_missing;

    #[test]
    fn only_a_missing_database_counts_as_half_made() {
        assert!(database_missing(
            "pymysql.err.OperationalError: (1049, \"Unknown database '_abc'\")"
        ));
        assert!(database_missing(
            "pymysql.err.OperationalError: (1045, \"Access denied for user '_abc'@'localhost'\")"
        ));
        // MariaDB down, too many connections: don't know.
        assert!(!database_missing(
            "pymysql.err.OperationalError: (2003, \"Can't connect to MySQL server\")"
        ));
        assert!(!database_missing(
            "pymysql.err.OperationalError: (1040, \"Too many connections\")"
        ));
    }
}
