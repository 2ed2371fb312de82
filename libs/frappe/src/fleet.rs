//! How services other than the provisioner reach a tenant's site: each bench's HTTP front end
//! and routing, and (for measuring) its runner, read from the same fleet file the provisioner
//! uses (its `[[benches]]` `name`, `base_url`, `routing`, `runner` and `timeouts`; everything
//! else in the file is the provisioner's business).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::bench::{Bench, BenchTimeouts};
use crate::names::SiteName;
use crate::rest::{FrappeClient, SiteRouting};
use crate::runner::RunnerConfig;

/// Bench name → how to reach its sites.
#[derive(Debug, Clone, Default)]
pub struct SiteAccess {
    benches: BTreeMap<String, BenchAccess>,
}

/// One bench's HTTP front end, and its commands when the fleet file says how to run them.
#[derive(Debug, Clone)]
pub struct BenchAccess {
    /// e.g. `http://127.0.0.1:8000`.
    pub base_url: String,
    /// `Host` or `X-Frappe-Site-Name`.
    pub routing: SiteRouting,
    /// Bench commands on its host.
    pub bench: Option<Bench>,
}

#[derive(Deserialize)]
struct Fleet {
    #[serde(default)]
    benches: Vec<FleetBench>,
}

#[derive(Deserialize)]
struct FleetBench {
    name: String,
    base_url: String,
    #[serde(default)]
    routing: Option<String>,
    #[serde(default)]
    runner: Option<RunnerConfig>,
    #[serde(default)]
    timeouts: Option<BenchTimeouts>,
}

/// A fleet file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("fleet file: {0}")]
pub struct SiteAccessError(String);

impl SiteAccess {
    /// Reads the benches of a fleet file.
    pub fn load(path: &Path) -> Result<Self, SiteAccessError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SiteAccessError(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// Parses the benches of a fleet file's text.
    pub fn parse(text: &str) -> Result<Self, SiteAccessError> {
        let fleet: Fleet =
            toml::from_str(text).map_err(|e| SiteAccessError(e.message().to_owned()))?;
        let mut benches = BTreeMap::new();
        for b in fleet.benches {
            let routing = match b.routing.as_deref() {
                None | Some("host") => SiteRouting::Host,
                Some("header") => SiteRouting::Header,
                Some(other) => {
                    return Err(SiteAccessError(format!(
                        "bench {}: routing {other:?} is neither \"host\" nor \"header\"",
                        b.name
                    )));
                }
            };
            if reqwest::Url::parse(&b.base_url).is_err() {
                return Err(SiteAccessError(format!(
                    "bench {}: base_url {:?} is not a URL",
                    b.name, b.base_url
                )));
            }
            let bench = b
                .runner
                .map(|r| Bench::new(r).with_timeouts(b.timeouts.unwrap_or_default()));
            benches.insert(
                b.name,
                BenchAccess {
                    base_url: b.base_url,
                    routing,
                    bench,
                },
            );
        }
        Ok(Self { benches })
    }

    /// One bench added by hand (tests, `tenantry dev`).
    pub fn with_bench(mut self, name: &str, base_url: &str, routing: SiteRouting) -> Self {
        self.benches.insert(
            name.to_owned(),
            BenchAccess {
                base_url: base_url.to_owned(),
                routing,
                bench: None,
            },
        );
        self
    }

    /// A REST client of `site` on `bench`, without credentials.
    pub fn client(
        &self,
        http: &reqwest::Client,
        bench: &str,
        site: &str,
    ) -> Result<FrappeClient, String> {
        let b = self.access(bench)?;
        let site = SiteName::parse(site).map_err(|e| format!("site name {site:?}: {e}"))?;
        FrappeClient::with_http(http.clone(), &b.base_url, site, b.routing)
            .map_err(|e| format!("bench {bench}: {e}"))
    }

    /// Bench commands on `bench`'s host.
    pub fn bench(&self, bench: &str) -> Result<&Bench, String> {
        self.access(bench)?.bench.as_ref().ok_or_else(|| {
            format!("bench {bench} has no runner in the fleet file; add its [benches.runner]")
        })
    }

    fn access(&self, bench: &str) -> Result<&BenchAccess, String> {
        self.benches.get(bench).ok_or_else(|| {
            format!("bench {bench} is not in the fleet file this service reads; add it (or point --fleet at the provisioner's file)")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_the_bench_endpoints_and_runner_of_a_fleet_file() {
        let access = SiteAccess::parse(
            r#"
[[benches]]
name = "bench-a"
region = "eu"
base_url = "http://127.0.0.1:8000"
routing = "header"
max_sites = 10
[benches.runner]
kind = "local"
bench_dir = "/srv/bench"
[plans.basic]
apps = []
"#,
        )
        .expect("parses");
        let b = &access.benches["bench-a"];
        assert_eq!(b.routing, SiteRouting::Header);
        let http = reqwest::Client::new();
        assert!(access.client(&http, "bench-a", "acme.localhost").is_ok());
        assert!(access.client(&http, "bench-z", "acme.localhost").is_err());
        assert!(access.bench("bench-a").is_ok());
        let no_runner = SiteAccess::default().with_bench("b", "http://h", SiteRouting::Host);
        assert!(no_runner.bench("b").unwrap_err().contains("runner"));
    }

    #[test]
    fn a_bad_routing_or_url_is_named() {
        let e = SiteAccess::parse("[[benches]]\nname='b'\nbase_url='x'\n").unwrap_err();
        assert!(e.to_string().contains("base_url"), "{e}");
        let e = SiteAccess::parse("[[benches]]\nname='b'\nbase_url='http://h'\nrouting='dns'\n")
            .unwrap_err();
        assert!(e.to_string().contains("routing"), "{e}");
    }
}
