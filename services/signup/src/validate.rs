//! Turns raw request fields into domain types, collecting every problem at once so a form can
//! mark all bad fields in one round trip. Raw strings stop here.

use proto::v1::SignupRequest;
use sha2::{Digest, Sha256};
use tenancy::{
    Email, OrganisationName, Password, PasswordContext, PersonName, PlanId, Region, Subdomain,
    ValidationError, suggest_subdomain,
};

use crate::error::Violation;

/// Longest raw field accepted before parsing, in bytes: every real value is far shorter, and the
/// bound keeps the parsers' work small on hostile input (the message size is capped too).
pub const MAX_RAW_FIELD_BYTES: usize = 1024;

/// Longest idempotency key accepted, in characters.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;

/// The plans and regions this gateway offers (from configuration).
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Plans a signup may choose.
    pub plans: Vec<PlanId>,
    /// Regions a signup may choose; the first is the default.
    pub regions: Vec<Region>,
}

impl Catalog {
    fn plan_list(&self) -> String {
        join(&self.plans)
    }

    /// Checks that `raw` names an offered plan (field `plan`).
    pub fn plan(&self, raw: &str) -> Result<PlanId, Violation> {
        let list = self.plan_list();
        if raw.trim().is_empty() {
            return Err(Violation::new(
                "plan",
                format!("plan must not be empty; choose one of {list}"),
            ));
        }
        let plan = field("plan", "plan", raw, PlanId::parse)?;
        if !self.plans.contains(&plan) {
            return Err(Violation::new(
                "plan",
                format!("plan {plan} is not offered; choose one of {list}"),
            ));
        }
        Ok(plan)
    }

    fn region(&self, raw: &str) -> Result<Region, Violation> {
        if raw.trim().is_empty() {
            return self
                .regions
                .first()
                .cloned()
                .ok_or_else(|| Violation::new("region", "no region is configured"));
        }
        let region = field("region", "region", raw, Region::parse)?;
        if !self.regions.contains(&region) {
            return Err(Violation::new(
                "region",
                format!(
                    "region {region} is not offered; choose one of {}",
                    join(&self.regions)
                ),
            ));
        }
        Ok(region)
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A signup request whose every field passed validation.
#[derive(Debug)]
pub struct SignupInput {
    /// Owner's email.
    pub email: Email,
    /// Owner's password (redacted in `Debug`).
    pub password: Password,
    /// Owner's name.
    pub full_name: PersonName,
    /// Organisation.
    pub organisation: OrganisationName,
    /// Requested (or derived) subdomain.
    pub subdomain: Subdomain,
    /// Chosen plan.
    pub plan: PlanId,
    /// Region (the default when the request left it empty).
    pub region: Region,
    /// The client's idempotency key, if any.
    pub idempotency_key: Option<String>,
}

impl SignupInput {
    /// A digest of what the request asks for, to tell a retry from a different request sent with
    /// the same idempotency key. The password is left out on purpose: a fast hash of it stored
    /// in NATS KV could be brute-forced, and a retry carries the same password anyway.
    pub fn fingerprint(&self) -> String {
        fingerprint([
            self.email.as_str(),
            self.full_name.as_str(),
            self.organisation.as_str(),
            self.subdomain.as_str(),
            self.plan.as_str(),
            self.region.as_str(),
        ])
    }
}

/// The fingerprint of a request from its fields (email, full name, organisation, subdomain,
/// plan, region) — also from a TenantRequested, whose fields are the validated ones, when the
/// idempotency answers are rebuilt from the log. The email counts in lower case (as
/// [`Email::key`]): `Jane@x.com` and `jane@x.com` are one owner, as for the rate limit and
/// for Frappe, which names the user by the lowercased address.
pub fn fingerprint(parts: [&str; 6]) -> String {
    let [email, rest @ ..] = parts;
    let email = email.to_ascii_lowercase();
    let mut h = Sha256::new();
    for part in std::iter::once(email.as_str()).chain(rest) {
        h.update(part.as_bytes());
        // A separator that cannot occur in any field keeps ("ab","c") apart from ("a","bc").
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// Parses one field, prefixing the tenancy message with the field's human name.
fn field<T>(
    name: &'static str,
    label: &str,
    raw: &str,
    parse: impl FnOnce(&str) -> Result<T, ValidationError>,
) -> Result<T, Violation> {
    if raw.len() > MAX_RAW_FIELD_BYTES {
        return Err(Violation::new(name, format!("{label} is far too long")));
    }
    parse(raw).map_err(|e| Violation::new(name, format!("{label} {e}")))
}

/// Validates a subdomain as typed: a DNS label, already in lowercase. Upper case is refused
/// rather than folded so that what the person sees in the form is exactly their site's name.
pub fn subdomain(raw: &str) -> Result<Subdomain, Violation> {
    let trimmed = raw.trim();
    if trimmed.len() <= MAX_RAW_FIELD_BYTES
        && trimmed.is_ascii()
        && trimmed.bytes().any(|b| b.is_ascii_uppercase())
    {
        return Err(Violation::new(
            "subdomain",
            format!(
                "subdomain must use lowercase letters; try {}",
                trimmed.to_ascii_lowercase()
            ),
        ));
    }
    field("subdomain", "subdomain", raw, Subdomain::parse)
}

/// Validates a whole signup request against the catalog.
pub fn signup(req: &SignupRequest, catalog: &Catalog) -> Result<SignupInput, Vec<Violation>> {
    let mut bad = Vec::new();

    // The one email rule: the provisioner's `frappe::UserEmail` is the same, so an accepted
    // owner can always be created on the site.
    let email = keep(&mut bad, field("email", "email", &req.email, Email::parse));
    let full_name = keep(
        &mut bad,
        field("full_name", "full name", &req.full_name, PersonName::parse),
    );
    let organisation = keep(
        &mut bad,
        field(
            "organisation",
            "organisation",
            &req.organisation,
            OrganisationName::parse,
        ),
    );
    let subdomain =
        if req.subdomain.trim().is_empty() {
            // Optional field: derive it from the organisation, unless that is itself invalid
            // (its own violation already says so).
            match &organisation {
            Some(org) => keep(&mut bad, suggest_subdomain(org.as_str()).ok_or_else(|| {
                Violation::new(
                    "subdomain",
                    "subdomain could not be derived from the organisation's name; choose one",
                )
            })),
            None => None,
        }
        } else {
            keep(&mut bad, subdomain(&req.subdomain))
        };
    let plan = keep(&mut bad, catalog.plan(&req.plan));
    let region = keep(&mut bad, catalog.region(&req.region));
    // The password policy compares against the other fields as typed, so it can judge the
    // password even when they are invalid and every problem is reported together.
    let derived = subdomain
        .as_ref()
        .map(Subdomain::as_str)
        .unwrap_or_default();
    let context = PasswordContext {
        email: &req.email,
        name: &req.full_name,
        subdomain: if req.subdomain.is_empty() {
            derived
        } else {
            &req.subdomain
        },
        organisation: &req.organisation,
    };
    let password = keep(
        &mut bad,
        field("password", "password", &req.password, |raw| {
            Password::parse(raw, &context)
        }),
    );
    let idempotency_key = keep(&mut bad, idempotency_key(&req.idempotency_key));

    match (
        email,
        password,
        full_name,
        organisation,
        subdomain,
        plan,
        region,
        idempotency_key,
    ) {
        (
            Some(email),
            Some(password),
            Some(full_name),
            Some(organisation),
            Some(subdomain),
            Some(plan),
            Some(region),
            Some(idempotency_key),
        ) if bad.is_empty() => Ok(SignupInput {
            email,
            password,
            full_name,
            organisation,
            subdomain,
            plan,
            region,
            idempotency_key,
        }),
        _ => Err(bad),
    }
}

/// The value, or `None` after recording why not.
fn keep<T>(bad: &mut Vec<Violation>, r: Result<T, Violation>) -> Option<T> {
    r.map_err(|v| bad.push(v)).ok()
}

/// An optional idempotency key: printable ASCII without spaces, at most 200 characters.
fn idempotency_key(raw: &str) -> Result<Option<String>, Violation> {
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() > MAX_IDEMPOTENCY_KEY_LEN || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Violation::new(
            "idempotency_key",
            format!(
                "idempotency key must be 1–{MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters without spaces (a UUID works)"
            ),
        ));
    }
    Ok(Some(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog {
            plans: vec![PlanId::parse("starter").unwrap()],
            regions: vec![Region::parse("eu").unwrap()],
        }
    }

    fn good() -> SignupRequest {
        SignupRequest {
            email: "jane@example.com".into(),
            password: "violet tractor 19 spoons".into(),
            full_name: "Jane Doe".into(),
            organisation: "Acme Widgets".into(),
            subdomain: "acme".into(),
            plan: "starter".into(),
            region: String::new(),
            idempotency_key: String::new(),
            human_check_token: String::new(),
        }
    }

    #[test]
    fn a_good_request_passes_with_defaults() {
        let input = signup(&good(), &catalog()).unwrap();
        assert_eq!(input.region.as_str(), "eu");
        assert_eq!(input.idempotency_key, None);
        let derived = signup(
            &SignupRequest {
                subdomain: String::new(),
                ..good()
            },
            &catalog(),
        )
        .unwrap();
        assert_eq!(derived.subdomain.as_str(), "acme-widgets");
    }

    #[test]
    fn every_bad_field_is_reported_and_the_password_never_echoed() {
        let req = SignupRequest {
            email: "nope".into(),
            password: "hunter2".into(),
            full_name: String::new(),
            organisation: "<script>".into(),
            subdomain: "ACME".into(),
            plan: "gold".into(),
            region: "mars".into(),
            idempotency_key: "has space".into(),
            human_check_token: String::new(),
        };
        let bad = signup(&req, &catalog()).unwrap_err();
        let fields: Vec<&str> = bad.iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            [
                "email",
                "full_name",
                "organisation",
                "subdomain",
                "plan",
                "region",
                "password",
                "idempotency_key"
            ]
        );
        assert!(bad.iter().all(|v| !v.description.contains("hunter2")));
    }

    #[test]
    fn fingerprints_differ_when_the_request_does() {
        let a = signup(&good(), &catalog()).unwrap().fingerprint();
        let b = signup(
            &SignupRequest {
                password: "another fine passphrase".into(),
                ..good()
            },
            &catalog(),
        )
        .unwrap()
        .fingerprint();
        let c = signup(
            &SignupRequest {
                full_name: "Jane Q Doe".into(),
                ..good()
            },
            &catalog(),
        )
        .unwrap()
        .fingerprint();
        assert_eq!(a, b);
        assert_ne!(a, c);
        // The email is a key: its case does not make a different request.
        let d = signup(
            &SignupRequest {
                email: "Jane@Example.com".into(),
                ..good()
            },
            &catalog(),
        )
        .unwrap()
        .fingerprint();
        assert_eq!(a, d);
        // The same answer from the recorded (validated) fields, as recovery rebuilds it.
        let input = signup(&good(), &catalog()).unwrap();
        assert_eq!(
            fingerprint([
                "JANE@example.com",
                input.full_name.as_str(),
                input.organisation.as_str(),
                input.subdomain.as_str(),
                input.plan.as_str(),
                input.region.as_str(),
            ]),
            a
        );
    }
}
