//! Parsing, validation and comparison of the catalogue file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tenancy::{Interval, PlanId};

/// One plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// What people read, e.g. `Business`.
    pub name: String,
    /// Price per interval in the currency's minor unit (cents).
    pub price_minor: i64,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    /// `month` or `year`.
    pub interval: String,
    /// Days of free trial before the first invoice (0: none).
    #[serde(default)]
    pub trial_days: u32,
    /// Most enabled users.
    pub max_users: u32,
    /// Most file storage, MB.
    pub max_storage_mb: u64,
    /// Most database size, MB.
    pub max_database_mb: u64,
    /// Apps installed on the plan's sites, besides frappe, in install order.
    #[serde(default)]
    pub apps: Vec<String>,
}

impl Plan {
    /// The interval, parsed (validated at load).
    pub fn interval(&self) -> Interval {
        Interval::parse(&self.interval).unwrap_or_default()
    }

    /// The site_config keys the provisioner writes for this plan's limits.
    pub fn site_limits(&self) -> BTreeMap<String, serde_json::Value> {
        BTreeMap::from([
            ("max_users".to_owned(), self.max_users.into()),
            ("max_storage_mb".to_owned(), self.max_storage_mb.into()),
            ("max_database_mb".to_owned(), self.max_database_mb.into()),
        ])
    }

    /// Every field as (name, value) for comparisons and messages.
    fn fields(&self) -> [(&'static str, String); 9] {
        [
            ("name", self.name.clone()),
            ("price_minor", self.price_minor.to_string()),
            ("currency", self.currency.clone()),
            ("interval", self.interval.clone()),
            ("trial_days", self.trial_days.to_string()),
            ("max_users", self.max_users.to_string()),
            ("max_storage_mb", self.max_storage_mb.to_string()),
            ("max_database_mb", self.max_database_mb.to_string()),
            ("apps", format!("{:?}", self.apps)),
        ]
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanCatalogue {
    /// Raised whenever a plan changes: services running an older version refuse to start
    /// once a newer one is published.
    pub version: u64,
    /// Plans by id (the id a signup chooses).
    pub plans: BTreeMap<String, Plan>,
}

/// A catalogue that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Not readable.
    #[error("plan catalogue {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Not TOML of the expected shape.
    #[error("plan catalogue: {0}")]
    Parse(String),
    /// A plan's field has an impossible value.
    #[error("plan catalogue: plan {plan}: {field} {reason}")]
    Invalid {
        /// Plan id.
        plan: String,
        /// Field.
        field: &'static str,
        /// What is wrong and what is expected.
        reason: String,
    },
}

/// One field of one plan that two views disagree about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Plan id.
    pub plan: String,
    /// Field (`plan` when the plan exists on one side only).
    pub field: &'static str,
    /// This view's value.
    pub ours: String,
    /// The other view's value.
    pub theirs: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plan {}: {} is {} here but {} there",
            self.plan, self.field, self.ours, self.theirs
        )
    }
}

impl PlanCatalogue {
    /// Reads and validates a catalogue file.
    pub fn load(path: &Path) -> Result<Self, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text)
    }

    /// Parses and validates a catalogue's text.
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        let c: PlanCatalogue =
            toml::from_str(text).map_err(|e| PlanError::Parse(e.message().to_owned()))?;
        c.validate()?;
        Ok(c)
    }

    /// Checks every plan: ids, money, currency, interval, limits, app names.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.plans.is_empty() {
            return Err(PlanError::Parse(
                "no plans: add at least one [plans.<id>] table".into(),
            ));
        }
        for (id, p) in &self.plans {
            let bad = |field: &'static str, reason: String| PlanError::Invalid {
                plan: id.clone(),
                field,
                reason,
            };
            PlanId::parse(id).map_err(|e| bad("id", e.to_string()))?;
            if p.name.trim().is_empty() {
                return Err(bad("name", "must not be empty".into()));
            }
            if p.price_minor < 0 {
                return Err(bad(
                    "price_minor",
                    format!("is {}; it must be 0 or more", p.price_minor),
                ));
            }
            if p.currency.len() != 3 || !p.currency.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(bad(
                    "currency",
                    format!("is {:?}; use an ISO 4217 code such as \"EUR\"", p.currency),
                ));
            }
            if Interval::parse(&p.interval).is_none() {
                return Err(bad(
                    "interval",
                    format!("is {:?}; use \"month\" or \"year\"", p.interval),
                ));
            }
            if p.max_users == 0 {
                return Err(bad("max_users", "must be at least 1".into()));
            }
            if p.max_storage_mb == 0 || p.max_database_mb == 0 {
                return Err(bad(
                    if p.max_storage_mb == 0 {
                        "max_storage_mb"
                    } else {
                        "max_database_mb"
                    },
                    "must be at least 1".into(),
                ));
            }
            for app in &p.apps {
                let ok = !app.is_empty()
                    && app
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !ok {
                    return Err(bad(
                        "apps",
                        format!("names {app:?}; app names are lowercase letters, digits and _"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The plan with this id.
    pub fn plan(&self, id: &str) -> Option<&Plan> {
        self.plans.get(id)
    }

    /// Every field of every plan where `self` and `other` disagree (plan ids in order).
    pub fn differences(&self, other: &PlanCatalogue) -> Vec<Difference> {
        let mut out = Vec::new();
        let ids: std::collections::BTreeSet<&String> =
            self.plans.keys().chain(other.plans.keys()).collect();
        for id in ids {
            match (self.plans.get(id), other.plans.get(id)) {
                (Some(a), Some(b)) => {
                    for ((field, ours), (_, theirs)) in a.fields().into_iter().zip(b.fields()) {
                        if ours != theirs {
                            out.push(Difference {
                                plan: id.clone(),
                                field,
                                ours,
                                theirs,
                            });
                        }
                    }
                }
                (a, b) => out.push(Difference {
                    plan: id.clone(),
                    field: "plan",
                    ours: if a.is_some() { "offered" } else { "missing" }.into(),
                    theirs: if b.is_some() { "offered" } else { "missing" }.into(),
                }),
            }
        }
        out
    }
}

impl PlanCatalogue {
    /// The catalogue as the APIs show it (billing's and the signup gateway's `ListPlans`).
    pub fn views(&self) -> proto::v1::ListPlansResponse {
        proto::v1::ListPlansResponse {
            version: self.version,
            plans: self
                .plans
                .iter()
                .map(|(id, p)| proto::v1::PlanView {
                    id: id.clone(),
                    name: p.name.clone(),
                    price_minor: p.price_minor,
                    currency: p.currency.clone(),
                    interval: p.interval.clone(),
                    trial_days: p.trial_days,
                    max_users: p.max_users,
                    max_storage_mb: p.max_storage_mb,
                    max_database_mb: p.max_database_mb,
                    apps: p.apps.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SAMPLE: &str = r#"
version = 1

[plans.starter]
name = "Starter"
price_minor = 1900
currency = "EUR"
interval = "month"
trial_days = 14
max_users = 5
max_storage_mb = 1024
max_database_mb = 512
apps = ["erpnext"]

[plans.business]
name = "Business"
price_minor = 4900
currency = "EUR"
interval = "month"
max_users = 25
max_storage_mb = 10240
max_database_mb = 2048
apps = ["erpnext", "hrms"]
"#;

    #[test]
    fn a_sample_catalogue_loads() {
        let c = PlanCatalogue::parse(SAMPLE).unwrap();
        assert_eq!(c.plans.len(), 2);
        let starter = c.plan("starter").unwrap();
        assert_eq!(starter.trial_days, 14);
        assert_eq!(starter.interval(), Interval::Month);
        assert_eq!(c.plan("business").unwrap().trial_days, 0);
        assert_eq!(starter.site_limits()["max_users"], 5);
    }

    #[test]
    fn bad_values_name_the_plan_and_the_field() {
        let cases = [
            ("price_minor = 1900", "price_minor = -1", "price_minor"),
            (
                "currency = \"EUR\"\ninterval = \"month\"\ntrial_days",
                "currency = \"euro\"\ninterval = \"month\"\ntrial_days",
                "currency",
            ),
            (
                "interval = \"month\"\ntrial_days",
                "interval = \"weekly\"\ntrial_days",
                "interval",
            ),
            ("max_users = 5", "max_users = 0", "max_users"),
            ("apps = [\"erpnext\"]", "apps = [\"ERP next\"]", "apps"),
        ];
        for (from, to, field) in cases {
            let text = SAMPLE.replacen(from, to, 1);
            let e = PlanCatalogue::parse(&text).unwrap_err();
            assert!(
                matches!(&e, PlanError::Invalid { plan, field: f, .. } if plan == "starter" && *f == field),
                "{field}: {e}"
            );
        }
        let e = PlanCatalogue::parse(&SAMPLE.replace("trial_days = 14", "trial_dayz = 14"))
            .unwrap_err();
        assert!(e.to_string().contains("trial_dayz"), "{e}");
        assert!(PlanCatalogue::parse("version = 1\n[plans]\n").is_err());
    }

    #[test]
    fn differences_name_plan_field_and_both_values() {
        let a = PlanCatalogue::parse(SAMPLE).unwrap();
        let mut b = a.clone();
        b.plans.get_mut("business").unwrap().price_minor = 5900;
        b.plans.get_mut("starter").unwrap().apps.push("hrms".into());
        b.plans
            .remove("starter")
            .map(|p| b.plans.insert("starter".into(), p));
        let d = a.differences(&b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(
            d[0].to_string(),
            "plan business: price_minor is 4900 here but 5900 there"
        );
        assert_eq!((d[1].plan.as_str(), d[1].field), ("starter", "apps"));
        b.plans.remove("business");
        let d = a.differences(&b);
        assert!(
            d.iter()
                .any(|x| x.plan == "business" && x.field == "plan" && x.theirs == "missing")
        );
        assert!(a.differences(&a).is_empty());
    }
}
