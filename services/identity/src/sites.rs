//! How the identity service reaches a tenant's site over REST: each bench's HTTP front end and
//! routing, read from the same fleet file the provisioner uses (its `[[benches]]` `name`,
//! `base_url` and `routing`; everything else in the file is the provisioner's business).

use std::collections::BTreeMap;
use std::path::Path;

use frappe::{FrappeClient, SiteName, SiteRouting};
use serde::Deserialize;

/// Bench name → how to reach its sites.
#[derive(Debug, Clone, Default)]
pub struct SiteApi {
    benches: BTreeMap<String, BenchApi>,
}

/// One bench's HTTP front end.
#[derive(Debug, Clone)]
pub struct BenchApi {
    /// e.g. `http://127.0.0.1:8000`.
    pub base_url: String,
    /// `Host` or `X-Frappe-Site-Name`.
    pub routing: SiteRouting,
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
}

/// A fleet file the identity service cannot use.
#[derive(Debug, thiserror::Error)]
#[error("fleet file: {0}")]
pub struct SiteApiError(String);

impl SiteApi {
    /// Reads the benches of a fleet file.
    pub fn load(path: &Path) -> Result<Self, SiteApiError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SiteApiError(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// Parses the benches of a fleet file's text.
    pub fn parse(text: &str) -> Result<Self, SiteApiError> {
        let fleet: Fleet =
            toml::from_str(text).map_err(|e| SiteApiError(e.message().to_owned()))?;
        let mut benches = BTreeMap::new();
        for b in fleet.benches {
            let routing = match b.routing.as_deref() {
                None | Some("host") => SiteRouting::Host,
                Some("header") => SiteRouting::Header,
                Some(other) => {
                    return Err(SiteApiError(format!(
                        "bench {}: routing {other:?} is neither \"host\" nor \"header\"",
                        b.name
                    )));
                }
            };
            if reqwest::Url::parse(&b.base_url).is_err() {
                return Err(SiteApiError(format!(
                    "bench {}: base_url {:?} is not a URL",
                    b.name, b.base_url
                )));
            }
            benches.insert(
                b.name,
                BenchApi {
                    base_url: b.base_url,
                    routing,
                },
            );
        }
        Ok(Self { benches })
    }

    /// One bench added by hand (tests, `tenantry dev`).
    pub fn with_bench(mut self, name: &str, base_url: &str, routing: SiteRouting) -> Self {
        self.benches.insert(
            name.to_owned(),
            BenchApi {
                base_url: base_url.to_owned(),
                routing,
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
        let b = self.benches.get(bench).ok_or_else(|| {
            format!("bench {bench} is not in the fleet file the identity service reads; add it (or point --fleet at the provisioner's file)")
        })?;
        let site = SiteName::parse(site).map_err(|e| format!("site name {site:?}: {e}"))?;
        FrappeClient::with_http(http.clone(), &b.base_url, site, b.routing)
            .map_err(|e| format!("bench {bench}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_the_bench_endpoints_of_a_fleet_file() {
        let api = SiteApi::parse(
            r#"
[[benches]]
name = "bench-a"
region = "eu"
base_url = "http://127.0.0.1:8000"
routing = "header"
max_sites = 10
[benches.runner]
kind = "local"
[plans.basic]
apps = []
"#,
        )
        .expect("parses");
        let b = &api.benches["bench-a"];
        assert_eq!(b.routing, SiteRouting::Header);
        let http = reqwest::Client::new();
        assert!(api.client(&http, "bench-a", "acme.localhost").is_ok());
        assert!(api.client(&http, "bench-z", "acme.localhost").is_err());
    }

    #[test]
    fn a_bad_routing_or_url_is_named() {
        let e = SiteApi::parse("[[benches]]\nname='b'\nbase_url='x'\n").unwrap_err();
        assert!(e.to_string().contains("base_url"), "{e}");
        let e = SiteApi::parse("[[benches]]\nname='b'\nbase_url='http://h'\nrouting='dns'\n")
            .unwrap_err();
        assert!(e.to_string().contains("routing"), "{e}");
    }
}
