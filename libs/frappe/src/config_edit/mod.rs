//! Site configuration in one operation: every key, the owner check and (for a standby claim) the
//! rename, in one short process on the bench host instead of one `bench set-config` per key.
//!
//! Each `set-config` imports frappe (0.6–1.2 s on a real bench, 1.3–2.3 s while another
//! `new-site` runs; tests/fixtures/frappe/README.md), so five keys cost seconds. The editor is a
//! constant Python program run through the bench's runner (so it works the same locally, in
//! docker and over ssh) that:
//! - proves the site is the caller's ([`OwnerProof`], the same rule as the provisioner's
//!   ownership judge) and refuses otherwise — the existence check folded into the write;
//! - optionally renames a standby's directory to the tenant's first (never over an existing one);
//! - merges the keys into `site_config.json` while holding frappe's own lock on it
//!   (`sites/<site>/locks/site_config.lock`, taken with `fcntl.flock` as frappe's `filelock`
//!   does), and replaces the file atomically, written as frappe writes it (`indent=1`,
//!   `sort_keys`), so a reader never sees half a file.
//!
//! Values travel as JSON (never evaluated), so no value can become code.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::bench::{Bench, BenchError, BenchOp};
use crate::inspect::SiteConfig;
use crate::names::{ConfigKey, SiteName};
use crate::parse;

mod in_place;

/// Exit code of the editor when the site (or the directory to rename) is not there.
pub const EDIT_MISSING_EXIT: i32 = 3;
/// Exit code of the editor when the site is not the caller's.
pub const EDIT_NOT_OWNED_EXIT: i32 = 4;

/// The program. `sys.argv`: site, rename-from (or empty), proof (JSON), updates (JSON object).
const PROGRAM: &str = r#"
import fcntl, json, os, sys

def load(d):
    try:
        with open(os.path.join(d, "site_config.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return None

def owned(c, p):
    t = c.get("tenantry_tenant_id")
    if t is not None:
        return t == p["tenant"]
    return c.get("tenantry_standby_id") in p["standby_ids"] or c.get("db_name") in p["db_names"]

def owner(c):
    return json.dumps({k: c.get(k) for k in ("tenantry_tenant_id", "tenantry_standby_id", "db_name")})

def refuse(name, proof):
    c = load(os.path.join("sites", name))
    if c is None:
        print("missing " + name)
        return 3
    if not owned(c, proof):
        print(owner(c))
        return 4
    return 0

def main():
    site, src, proof, updates = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
    dst = os.path.join("sites", site)
    if src and not os.path.lexists(dst):
        code = refuse(src, proof)
        if code:
            return code
        # Both names are locked by the caller's guard; nothing creates dst meanwhile.
        os.rename(os.path.join("sites", src), dst)
    code = refuse(site, proof)
    if code:
        return code
    locks = os.path.join(dst, "locks")
    os.makedirs(locks, exist_ok=True)
    with open(os.path.join(locks, "site_config.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        c = load(dst)
        c.update(updates)
        tmp = os.path.join(dst, ".site_config.json.tenantry")
        with open(tmp, "w") as f:
            f.write(json.dumps(c, indent=1, sort_keys=True))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(dst, "site_config.json"))
    return 0

sys.exit(main())
"#;

/// What proves a site is the caller's: the rule of the provisioner's ownership judge, in a form
/// the editor checks on the bench host. A site marked with a tenant is the caller's only if
/// that is `tenant`; an unmarked one only if its standby marker or database name is listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OwnerProof {
    /// The tenant whose marker makes a site the caller's (none for a standby build).
    pub tenant: Option<String>,
    /// Standby markers accepted on a site without a tenant marker.
    pub standby_ids: Vec<String>,
    /// Database names (derived from owner ids) accepted on a site without a tenant marker.
    pub db_names: Vec<String>,
}

impl OwnerProof {
    /// Whether `config` passes — what the editor decides on the host, for tests and callers.
    pub fn accepts(&self, config: &SiteConfig) -> bool {
        match config.tenant_id.as_deref() {
            Some(t) => self.tenant.as_deref() == Some(t),
            None => {
                config
                    .standby_id
                    .as_ref()
                    .is_some_and(|s| self.standby_ids.contains(s))
                    || config
                        .db_name
                        .as_ref()
                        .is_some_and(|d| self.db_names.contains(d))
            }
        }
    }
}

/// One edit of a site's configuration.
#[derive(Debug, Clone)]
pub struct ConfigEdit {
    /// The site.
    pub site: SiteName,
    /// A directory to rename to `site` first, unless `site` already exists (a standby claim).
    pub rename_from: Option<SiteName>,
    /// Who must own the site.
    pub owner: OwnerProof,
    /// Keys to set.
    pub set: Vec<(ConfigKey, Value)>,
}

impl ConfigEdit {
    /// An edit of `site` by `owner` setting `set`.
    pub fn new(site: SiteName, owner: OwnerProof, set: Vec<(ConfigKey, Value)>) -> Self {
        Self {
            site,
            rename_from: None,
            owner,
            set,
        }
    }
}

/// Why an edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The site (or the directory to rename) is not on the bench.
    #[error("site {0} is not on the bench")]
    Missing(String),
    /// The site is someone else's; nothing was changed.
    #[error("site {site} is not the caller's (its markers: {owner}); nothing was changed")]
    NotOwned {
        /// The site.
        site: SiteName,
        /// Its ownership keys as found.
        owner: String,
    },
    /// The command could not run or failed.
    #[error(transparent)]
    Bench(#[from] BenchError),
}

impl Bench {
    /// Applies `edit` holding the host-side locks of the site (and of the directory it
    /// renames): in this process when the bench's files are ours ([`RunnerConfig::own_files`](crate::runner::RunnerConfig::own_files)),
    /// else by the editor program on the bench host. Both give the same result.
    pub async fn edit_site_config(&self, edit: &ConfigEdit) -> Result<(), EditError> {
        let Some(dir) = self.runner().own_files() else {
            return self.edit_site_config_by_process(edit).await;
        };
        let (dir, edit2, wait) = (
            dir.to_owned(),
            edit.clone(),
            self.timeout_of(BenchOp::Other),
        );
        timeline::outside(tokio::task::spawn_blocking(move || {
            in_place::apply(&dir, &edit2, wait)
        }))
        .await
        .unwrap_or_else(|e| {
            Err(EditError::Bench(BenchError::CommandFailed {
                op: "edit-site-config",
                exit_code: None,
                detail: format!("the in-place editor stopped: {e}"),
            }))
        })
    }

    /// Applies `edit` by the editor program on the bench host, whatever the runner: what
    /// docker, ssh and user-switching runners always do (tests hold it to the in-place path).
    pub async fn edit_site_config_by_process(&self, edit: &ConfigEdit) -> Result<(), EditError> {
        let mut updates = Map::new();
        for (k, v) in &edit.set {
            updates.insert(k.as_str().to_owned(), v.clone());
        }
        let mut guard = self
            .guard(self.timeout_of(BenchOp::Other))
            .locking(edit.site.as_str());
        if let Some(from) = &edit.rename_from {
            guard = guard.locking(from.as_str());
        }
        let proof = serde_json::to_string(&edit.owner).unwrap_or_else(|_| json!({}).to_string());
        let out = self
            .run_guarded_tool(
                "edit-site-config",
                "python3",
                vec![
                    "-c".into(),
                    PROGRAM.into(),
                    edit.site.as_str().into(),
                    edit.rename_from
                        .as_ref()
                        .map_or("", SiteName::as_str)
                        .into(),
                    proof.into(),
                    Value::Object(updates).to_string().into(),
                ],
                &guard,
            )
            .await?;
        match out.exit_code {
            Some(0) => Ok(()),
            Some(EDIT_MISSING_EXIT) => Err(EditError::Missing(
                out.stdout
                    .trim()
                    .strip_prefix("missing ")
                    .unwrap_or(edit.site.as_str())
                    .to_owned(),
            )),
            Some(EDIT_NOT_OWNED_EXIT) => Err(EditError::NotOwned {
                site: edit.site.clone(),
                owner: out.stdout.trim().chars().take(300).collect(),
            }),
            _ => Err(EditError::Bench(BenchError::CommandFailed {
                op: "edit-site-config",
                exit_code: out.exit_code,
                detail: parse::last_exception(&out.stderr)
                    .unwrap_or_else(|| out.stderr.trim().chars().take(300).collect()),
            })),
        }
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

    #[test]
    fn a_tenant_marker_is_decisive() {
        let p = OwnerProof {
            tenant: Some("t1".into()),
            standby_ids: vec!["s1".into()],
            db_names: vec!["_d1".into()],
        };
        assert!(p.accepts(&cfg(None, Some("t1"), None)));
        assert!(!p.accepts(&cfg(Some("_d1"), Some("t2"), Some("s1"))));
        assert!(p.accepts(&cfg(Some("_other"), None, Some("s1"))));
        assert!(p.accepts(&cfg(Some("_d1"), None, None)));
        assert!(!p.accepts(&cfg(Some("_other"), None, None)));
        assert!(!p.accepts(&cfg(None, None, None)));
        let standby = OwnerProof {
            tenant: None,
            standby_ids: vec!["s1".into()],
            db_names: vec![],
        };
        assert!(!standby.accepts(&cfg(None, Some("t1"), Some("s1"))));
    }
}
