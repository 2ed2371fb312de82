//! The fleet: which benches exist, where, what they can host and how to reach them, plus the plan
//! catalogue (plan → apps and site limits) and the standby-pool size. Loaded from TOML and
//! validated once at start-up, so a typo fails the service instead of a tenant.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use frappe::{AppName, BenchTimeouts, ConfigKey, RunnerConfig, SiteName, SiteRouting};
use serde::Deserialize;
use serde_json::Value;

use crate::pool_size::Adaptive;

/// Errors in the fleet file. Each names the bench or plan and what to change.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The file could not be read.
    #[error("cannot read fleet file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not TOML of the expected shape.
    #[error("fleet file is not valid: {0}")]
    Parse(String),
    /// A semantic problem.
    #[error("fleet config: {0}")]
    Invalid(String),
}

/// How the site's public URL is built (`<scheme>://<site>`), e.g. for `host_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// `https://` (production).
    #[default]
    Https,
    /// `http://` (local benches and tests).
    Http,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// How REST requests name the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// `Host: <site>`.
    #[default]
    Host,
    /// `X-Frappe-Site-Name: <site>`.
    Header,
}

impl From<Routing> for SiteRouting {
    fn from(r: Routing) -> Self {
        match r {
            Routing::Host => SiteRouting::Host,
            Routing::Header => SiteRouting::Header,
        }
    }
}

/// One bench of the fleet (`[[benches]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchConfig {
    /// Unique name, `[a-z0-9-]` (it is a NATS KV key token).
    pub name: String,
    /// Region tenants ask for, e.g. `eu`.
    pub region: String,
    /// How bench commands reach it.
    pub runner: RunnerConfig,
    /// Base URL of its HTTP front end, e.g. `http://127.0.0.1:8000`.
    pub base_url: String,
    /// Site names are `<subdomain>.<base_domain>`.
    pub base_domain: String,
    /// How REST requests name the site.
    #[serde(default)]
    pub routing: Routing,
    /// Scheme of the public site URL.
    #[serde(default)]
    pub public_scheme: Scheme,
    /// Port of the public site URL when it is not the scheme's own (a development bench
    /// browsers reach directly, e.g. `http://acme.erp.localhost:8000`).
    #[serde(default)]
    pub public_port: Option<u16>,
    /// Most sites (tenants and standbys) it may hold.
    pub max_sites: u32,
    /// Most bench operations at once, across every provisioner instance.
    pub max_concurrent_operations: u32,
    /// Apps installed in the bench (besides frappe) that plans may ask for.
    #[serde(default)]
    pub apps: Vec<String>,
    /// MariaDB root user.
    #[serde(default = "default_root_user")]
    pub db_root_username: String,
    /// Vault reference of the MariaDB root password (kind `db_root_password`).
    #[serde(default)]
    pub db_root_password_ref: Option<String>,
    /// Or a file holding it (e.g. a systemd credential); read at start-up and at each use.
    /// One of the two is required: new-site cannot run with an empty root password.
    #[serde(default)]
    pub db_root_password_file: Option<std::path::PathBuf>,
    /// Per-operation command timeouts (seconds).
    #[serde(default)]
    pub timeouts: BenchTimeouts,
}

fn default_root_user() -> String {
    "root".to_owned()
}

impl BenchConfig {
    /// The apps as validated names.
    pub fn app_names(&self) -> BTreeSet<AppName> {
        self.apps
            .iter()
            .filter_map(|a| AppName::parse(a).ok())
            .collect()
    }

    /// `<label>.<base_domain>` as a site name.
    pub fn site_name(&self, label: &str) -> Result<SiteName, frappe::NameError> {
        SiteName::parse(&format!("{label}.{}", self.base_domain))
    }

    /// `<scheme>://<site>[:<public_port>]`.
    pub fn public_url(&self, site: &str) -> String {
        match self.public_port {
            Some(port) => format!("{}://{site}:{port}", self.public_scheme.as_str()),
            None => format!("{}://{site}", self.public_scheme.as_str()),
        }
    }
}

/// One plan (`[plans.<id>]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// Apps installed (in this order) on the plan's sites, besides frappe.
    #[serde(default)]
    pub apps: Vec<String>,
    /// site_config keys written at configuration (e.g. `max_users = 5`); never secrets.
    #[serde(default)]
    pub limits: BTreeMap<String, toml::Value>,
}

impl PlanConfig {
    /// The apps as validated names, in install order.
    pub fn app_names(&self) -> Vec<AppName> {
        self.apps
            .iter()
            .filter_map(|a| AppName::parse(a).ok())
            .collect()
    }

    /// The limits as (validated key, JSON value).
    pub fn limit_values(&self) -> Vec<(ConfigKey, Value)> {
        self.limits
            .iter()
            .filter_map(|(k, v)| {
                let key = ConfigKey::parse(k).ok()?;
                let value = serde_json::to_value(v).ok()?;
                Some((key, value))
            })
            .collect()
    }
}

/// The warm pool (`[standby]`): a fixed `size`, or sized by demand when `target_hit_ratio` is
/// set (between `min` and `max` per bench and app set).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyConfig {
    /// Ready sites kept per (bench, plan app set); 0 (and no `target_hit_ratio`) turns the pool
    /// off.
    #[serde(default)]
    pub size: u32,
    /// Only these plans get standbys (default: every plan).
    #[serde(default)]
    pub plans: Option<Vec<String>>,
    /// Size the pool by demand: the share of pooled signups it should serve, in (0, 1).
    #[serde(default)]
    pub target_hit_ratio: Option<f64>,
    /// Adaptive: fewest standbys per (bench, app set) (default 0).
    #[serde(default)]
    pub min: Option<u32>,
    /// Adaptive: most standbys per (bench, app set) (default 10).
    #[serde(default)]
    pub max: Option<u32>,
    /// Adaptive: how far back the signup rate looks, seconds (default 900).
    #[serde(default)]
    pub demand_window_secs: Option<u64>,
    /// Adaptive: a standby's build time assumed until one is measured, seconds (default 60).
    #[serde(default)]
    pub initial_build_secs: Option<u64>,
}

/// How the pool is sized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PoolPolicy {
    /// No pool.
    Off,
    /// This many per (bench, app set).
    Fixed(u32),
    /// By demand.
    Adaptive(Adaptive),
}

impl PoolPolicy {
    /// The most entries a (bench, app set) can have: the keys a claim looks through.
    pub fn slots(&self) -> u32 {
        match self {
            Self::Off => 0,
            Self::Fixed(n) => *n,
            Self::Adaptive(a) => a.max,
        }
    }
}

impl StandbyConfig {
    /// The sizing policy (the file is validated first, so the adaptive values are sane).
    pub fn policy(&self) -> PoolPolicy {
        match self.target_hit_ratio {
            Some(ratio) => PoolPolicy::Adaptive(Adaptive {
                min: self.min.unwrap_or(0),
                max: self.max.unwrap_or(10),
                target_hit_ratio: ratio,
                window: Duration::from_secs(self.demand_window_secs.unwrap_or(900)),
                initial_build: Duration::from_secs(self.initial_build_secs.unwrap_or(60)),
            }),
            None if self.size == 0 => PoolPolicy::Off,
            None => PoolPolicy::Fixed(self.size),
        }
    }

    fn validate(&self) -> Result<(), String> {
        let adaptive_keys = self.min.is_some()
            || self.max.is_some()
            || self.demand_window_secs.is_some()
            || self.initial_build_secs.is_some();
        let Some(ratio) = self.target_hit_ratio else {
            return if adaptive_keys {
                Err("standby: min, max, demand_window_secs and initial_build_secs need target_hit_ratio (adaptive sizing)".into())
            } else {
                Ok(())
            };
        };
        if self.size != 0 {
            return Err("standby: give either size (a fixed pool) or target_hit_ratio (sized by demand), not both".into());
        }
        if !(ratio > 0.0 && ratio < 1.0) {
            return Err(format!(
                "standby.target_hit_ratio must be between 0 and 1 (exclusive), not {ratio}"
            ));
        }
        let (min, max) = (self.min.unwrap_or(0), self.max.unwrap_or(10));
        if max == 0 || min > max || max > 1000 {
            return Err(format!(
                "standby: need 0 ≤ min ≤ max, 1 ≤ max ≤ 1000 (min {min}, max {max})"
            ));
        }
        if self.demand_window_secs == Some(0) {
            return Err("standby.demand_window_secs must be at least 1".into());
        }
        Ok(())
    }
}

/// The whole fleet file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// The benches.
    pub benches: Vec<BenchConfig>,
    /// Plan id → plan.
    #[serde(default)]
    pub plans: BTreeMap<String, PlanConfig>,
    /// The warm pool.
    #[serde(default)]
    pub standby: StandbyConfig,
}

impl FleetConfig {
    /// Takes the plans from the plan catalogue (apps, and the limits written into each site:
    /// `max_users`, `max_storage_mb`, `max_database_mb`). A plan the fleet file also defines
    /// must agree with the catalogue; otherwise the error names the plan and the field.
    pub fn adopt_catalogue(&mut self, catalogue: &plans::PlanCatalogue) -> Result<(), FleetError> {
        for (id, own) in &self.plans {
            let Some(plan) = catalogue.plan(id) else {
                return Err(FleetError::Invalid(format!(
                    "plan {id} is in the fleet file but not in the plan catalogue; add it there or remove it here"
                )));
            };
            if !own.apps.is_empty() && own.apps != plan.apps {
                return Err(FleetError::Invalid(format!(
                    "plan {id}: apps is {:?} in the fleet file but {:?} in the plan catalogue",
                    own.apps, plan.apps
                )));
            }
            for (key, want) in plan.site_limits() {
                if let Some(have) = own.limits.get(&key) {
                    let have = serde_json::to_value(have).unwrap_or_default();
                    if have != want {
                        return Err(FleetError::Invalid(format!(
                            "plan {id}: {key} is {have} in the fleet file but {want} in the plan catalogue"
                        )));
                    }
                }
            }
        }
        for (id, plan) in &catalogue.plans {
            let entry = self.plans.entry(id.clone()).or_insert_with(|| PlanConfig {
                apps: Vec::new(),
                limits: BTreeMap::new(),
            });
            entry.apps.clone_from(&plan.apps);
            for (key, value) in plan.site_limits() {
                if let Ok(v) = toml::Value::try_from(value) {
                    entry.limits.insert(key, v);
                }
            }
        }
        Ok(())
    }

    /// Reads and validates a fleet file.
    pub fn load(path: &Path) -> Result<Self, FleetError> {
        let text = std::fs::read_to_string(path).map_err(|source| FleetError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and validates fleet TOML.
    pub fn parse(text: &str) -> Result<Self, FleetError> {
        let fleet: FleetConfig =
            toml::from_str(text).map_err(|e| FleetError::Parse(e.to_string()))?;
        fleet.validate()?;
        Ok(fleet)
    }

    /// Checks names, limits and references.
    pub fn validate(&self) -> Result<(), FleetError> {
        let bad = |m: String| Err(FleetError::Invalid(m));
        if self.benches.is_empty() {
            return bad("at least one [[benches]] entry is needed".into());
        }
        let mut names = BTreeSet::new();
        for b in &self.benches {
            let ok_name = !b.name.is_empty()
                && b.name.len() <= 64
                && b.name
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !b.name.starts_with('-');
            if !ok_name {
                return bad(format!(
                    "bench name {:?} must be 1-64 of a-z 0-9 - (not starting with -)",
                    b.name
                ));
            }
            if !names.insert(b.name.clone()) {
                return bad(format!("bench {} is listed twice", b.name));
            }
            if b.region.trim().is_empty() {
                return bad(format!("bench {}: region is empty", b.name));
            }
            if SiteName::parse(&format!("x.{}", b.base_domain)).is_err() {
                return bad(format!(
                    "bench {}: base_domain {:?} is not a valid host name",
                    b.name, b.base_domain
                ));
            }
            if reqwest::Url::parse(&b.base_url).is_err() {
                return bad(format!(
                    "bench {}: base_url {:?} is not a URL",
                    b.name, b.base_url
                ));
            }
            if let Err(e) = b.runner.validate() {
                return bad(format!("bench {}: {e}", b.name));
            }
            if b.max_concurrent_operations == 0 {
                return bad(format!(
                    "bench {}: max_concurrent_operations must be at least 1",
                    b.name
                ));
            }
            for app in &b.apps {
                if AppName::parse(app).is_err() {
                    return bad(format!(
                        "bench {}: app {app:?} is not a valid app name",
                        b.name
                    ));
                }
            }
            if b.db_root_password_ref.is_some() && b.db_root_password_file.is_some() {
                return bad(format!(
                    "bench {}: set db_root_password_ref or db_root_password_file, not both",
                    b.name
                ));
            }
            if b.db_root_password_ref
                .as_ref()
                .is_some_and(|r| !r.starts_with("vault://tenant/"))
            {
                return bad(format!(
                    "bench {}: db_root_password_ref must be a vault://tenant/<id>/<name> reference",
                    b.name
                ));
            }
        }
        for (id, plan) in &self.plans {
            for app in &plan.apps {
                if AppName::parse(app).is_err() {
                    return bad(format!("plan {id}: app {app:?} is not a valid app name"));
                }
            }
            for key in plan.limits.keys() {
                if ConfigKey::parse(key).is_err() {
                    return bad(format!(
                        "plan {id}: limit key {key:?} must match [a-z_][a-z0-9_]*"
                    ));
                }
            }
            let apps: BTreeSet<_> = plan.app_names().into_iter().collect();
            if !self.benches.iter().any(|b| apps.is_subset(&b.app_names())) {
                return bad(format!(
                    "plan {id}: no bench has all of its apps {:?}",
                    plan.apps
                ));
            }
        }
        self.standby.validate().map_err(FleetError::Invalid)?;
        if let Some(plans) = &self.standby.plans {
            for p in plans {
                if !self.plans.contains_key(p) {
                    return bad(format!("standby.plans names unknown plan {p:?}"));
                }
            }
        }
        Ok(())
    }

    /// A bench by name.
    pub fn bench(&self, name: &str) -> Option<&BenchConfig> {
        self.benches.iter().find(|b| b.name == name)
    }

    /// A plan by id.
    pub fn plan(&self, id: &str) -> Option<&PlanConfig> {
        self.plans.get(id)
    }

    /// The distinct app sets that get standbys: those of the pooled plans.
    pub fn standby_app_sets(&self) -> BTreeSet<Vec<AppName>> {
        if self.standby.policy() == PoolPolicy::Off {
            return BTreeSet::new();
        }
        self.plans
            .iter()
            .filter(|(id, _)| {
                self.standby
                    .plans
                    .as_ref()
                    .is_none_or(|only| only.iter().any(|p| p == *id))
            })
            .map(|(_, p)| p.app_names())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[[benches]]
name = "bench-a"
region = "eu"
base_url = "http://127.0.0.1:8000"
base_domain = "erp.example.com"
max_sites = 100
max_concurrent_operations = 2
apps = ["erpnext"]
db_root_password_ref = "vault://tenant/fleet/bench-a-db-root"
runner = { kind = "local", bench_dir = "/home/frappe/frappe-bench" }

[plans.starter]
apps = ["erpnext"]
limits = { max_users = 5, max_storage_mb = 1024 }

[standby]
size = 3
"#;

    #[test]
    fn example_parses() {
        let f = FleetConfig::parse(EXAMPLE).unwrap();
        assert_eq!(f.benches[0].name, "bench-a");
        assert_eq!(f.plans["starter"].limit_values().len(), 2);
        assert_eq!(f.standby_app_sets().len(), 1);
        assert_eq!(f.benches[0].public_url("a.b"), "https://a.b");
        let mut dev = f.benches[0].clone();
        dev.public_port = Some(8000);
        assert_eq!(dev.public_url("a.b"), "https://a.b:8000");
    }

    #[test]
    fn the_pool_is_fixed_adaptive_or_off() {
        let f = FleetConfig::parse(EXAMPLE).unwrap();
        assert_eq!(f.standby.policy(), PoolPolicy::Fixed(3));
        let text = EXAMPLE.replace("size = 3", "target_hit_ratio = 0.9\nmax = 4");
        let PoolPolicy::Adaptive(a) = FleetConfig::parse(&text).unwrap().standby.policy() else {
            panic!("not adaptive")
        };
        assert_eq!((a.min, a.max, a.target_hit_ratio), (0, 4, 0.9));
        assert_eq!(a.window, Duration::from_secs(900));
        let off = FleetConfig::parse(&EXAMPLE.replace("size = 3", "size = 0")).unwrap();
        assert_eq!(off.standby.policy(), PoolPolicy::Off);
        assert!(off.standby_app_sets().is_empty());
    }

    #[test]
    fn rejects_bad_fleets() {
        for (from, to) in [
            ("name = \"bench-a\"", "name = \"Bench A\""),
            (
                "max_concurrent_operations = 2",
                "max_concurrent_operations = 0",
            ),
            ("apps = [\"erpnext\"]\nlimits", "apps = [\"hrms\"]\nlimits"),
            (
                "base_domain = \"erp.example.com\"",
                "base_domain = \"-bad\"",
            ),
            ("vault://tenant/fleet/bench-a-db-root", "hunter2"),
            ("max_users = 5", "Max-Users = 5"),
            ("size = 3", "size = 3\ntarget_hit_ratio = 0.9"),
            ("size = 3", "target_hit_ratio = 1.0"),
            ("size = 3", "target_hit_ratio = 0.9\nmin = 4\nmax = 2"),
            ("size = 3", "max = 4"),
        ] {
            assert!(EXAMPLE.contains(from), "{from}");
            let text = EXAMPLE.replacen(from, to, 1);
            assert!(FleetConfig::parse(&text).is_err(), "accepted {to}");
        }
    }
}
