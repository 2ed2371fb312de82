//! Validated tenant ids, secret names, kinds and `vault://` references. Raw strings stop at the
//! gRPC boundary; everything past it holds these types.

use uuid::Uuid;

/// Why an input was rejected; the message says which field and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

const MAX_LEN: usize = 128;

fn check(field: &str, value: &str, max: usize, extra: &[u8]) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError(format!("{field} is required")));
    }
    if value.len() > max {
        return Err(NameError(format!(
            "{field} is longer than {max} characters"
        )));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b))
    {
        let allowed = String::from_utf8_lossy(extra).into_owned();
        // The value itself is not echoed: a confused caller might have put a secret there.
        return Err(NameError(format!(
            "{field} may contain only a-z, 0-9 and any of `{allowed}`"
        )));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $field:literal, $max:expr, $extra:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(String);

        impl $ty {
            /// Parses and validates.
            pub fn parse(value: &str) -> Result<Self, NameError> {
                check($field, value, $max, $extra).map(|()| Self(value.to_owned()))
            }

            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A tenant id (or standby id): a-z 0-9 - _ , at most 128 characters. The id is a token of
    /// the event subject `tenantry.vault.<tenant_id>`, so it must pass the event store's
    /// subject-token rule (alphanumerics, `-`, `_`); a `.`, `*`, `>` or space would split or
    /// wildcard the subject and leave the change's event unpublishable.
    TenantId, "tenant_id", MAX_LEN, b"-_"
);
name_type!(
    /// A secret name within a tenant, e.g. `site-admin-password`: the same alphabet as tenant
    /// ids, so a reference never needs escaping.
    SecretName, "name", MAX_LEN, b"-_"
);
name_type!(
    /// A secret kind the ACL is written in, e.g. `api_credentials`.
    SecretKind, "kind", 64, b"_"
);

/// `vault://tenant/<tenant_id>/<name>`: a stored secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// Owning tenant.
    pub tenant: TenantId,
    /// Name within the tenant.
    pub name: SecretName,
}

/// `vault://tenant/<tenant_id>/one-time/<uuid>`: a one-time secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimeRef {
    /// Owning tenant.
    pub tenant: TenantId,
    /// Random id of the one-time secret.
    pub id: Uuid,
}

const PREFIX: &str = "vault://tenant/";

impl SecretRef {
    /// The reference string.
    pub fn to_uri(&self) -> String {
        format!("{PREFIX}{}/{}", self.tenant, self.name)
    }

    /// Parses `vault://tenant/<tenant_id>/<name>`.
    pub fn parse(reference: &str) -> Result<Self, NameError> {
        let rest = strip(reference)?;
        match rest.split('/').collect::<Vec<_>>().as_slice() {
            [tenant, name] => Ok(Self {
                tenant: TenantId::parse(tenant)?,
                name: SecretName::parse(name)?,
            }),
            _ => Err(NameError(format!(
                "reference must look like {PREFIX}<tenant_id>/<name>"
            ))),
        }
    }

    /// Either `reference` or `tenant_id` + `name`, as the Get/Revoke requests allow.
    pub fn from_request(reference: &str, tenant_id: &str, name: &str) -> Result<Self, NameError> {
        if !reference.is_empty() {
            if !tenant_id.is_empty() || !name.is_empty() {
                return Err(NameError(
                    "give either reference or tenant_id + name, not both".into(),
                ));
            }
            return Self::parse(reference);
        }
        Ok(Self {
            tenant: TenantId::parse(tenant_id)?,
            name: SecretName::parse(name)?,
        })
    }
}

impl OneTimeRef {
    /// The reference string.
    pub fn to_uri(&self) -> String {
        format!("{PREFIX}{}/one-time/{}", self.tenant, self.id)
    }

    /// Parses `vault://tenant/<tenant_id>/one-time/<uuid>`.
    pub fn parse(reference: &str) -> Result<Self, NameError> {
        let rest = strip(reference)?;
        let bad = || {
            NameError(format!(
                "reference must look like {PREFIX}<tenant_id>/one-time/<uuid>"
            ))
        };
        match rest.split('/').collect::<Vec<_>>().as_slice() {
            [tenant, "one-time", id] => Ok(Self {
                tenant: TenantId::parse(tenant)?,
                id: Uuid::parse_str(id).map_err(|_| bad())?,
            }),
            _ => Err(bad()),
        }
    }
}

fn strip(reference: &str) -> Result<&str, NameError> {
    if reference.len() > 512 {
        return Err(NameError("reference is longer than 512 characters".into()));
    }
    reference
        .strip_prefix(PREFIX)
        .ok_or_else(|| NameError(format!("reference must start with {PREFIX}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names() {
        assert!(TenantId::parse("acme-01").is_ok());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("Acme").is_err());
        assert!(TenantId::parse("a|b").is_err());
        for bad in ["a.b", "a*", "a>", "a b", "a\tb"] {
            assert!(TenantId::parse(bad).is_err(), "{bad}");
            assert!(SecretName::parse(bad).is_err(), "{bad}");
        }
        assert!(TenantId::parse(&"a".repeat(129)).is_err());
        assert!(SecretName::parse("site-admin-password").is_ok());
        assert!(SecretName::parse("x/y").is_err());
        assert!(SecretKind::parse("api_credentials").is_ok());
        assert!(SecretKind::parse("api-credentials").is_err());
    }

    #[test]
    fn error_does_not_echo_the_value() {
        let err = SecretName::parse("P@ssw0rd!").unwrap_err().to_string();
        assert!(!err.contains("P@ssw0rd"), "{err}");
    }

    #[test]
    fn references_round_trip() {
        let r = SecretRef::parse("vault://tenant/t1/api-key").unwrap();
        assert_eq!(r.to_uri(), "vault://tenant/t1/api-key");
        assert!(SecretRef::parse("vault://tenant/t1/a/b").is_err());
        assert!(SecretRef::parse("http://x").is_err());
        let o = OneTimeRef {
            tenant: TenantId::parse("t1").unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(OneTimeRef::parse(&o.to_uri()).unwrap(), o);
        assert!(OneTimeRef::parse("vault://tenant/t1/one-time/nope").is_err());
        assert!(SecretRef::from_request("vault://tenant/t1/a", "t1", "").is_err());
        assert_eq!(
            SecretRef::from_request("", "t1", "a").unwrap().to_uri(),
            "vault://tenant/t1/a"
        );
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics_and_valid_references_round_trip(raw in ".{0,200}", tenant in "[a-z0-9_-]{1,128}", name in "[a-z0-9_-]{1,128}") {
            let _ = TenantId::parse(&raw);
            let _ = SecretRef::parse(&raw);
            let _ = OneTimeRef::parse(&raw);
            let r = SecretRef { tenant: TenantId::parse(&tenant).unwrap(), name: SecretName::parse(&name).unwrap() };
            proptest::prop_assert_eq!(SecretRef::parse(&r.to_uri()).unwrap(), r);
        }

        #[test]
        fn anything_with_a_separator_is_rejected(a in "[a-z]{1,10}", b in "[a-z]{1,10}", sep in "[|/: .*>]") {
            let joined = format!("{a}{sep}{b}");
            proptest::prop_assert!(TenantId::parse(&joined).is_err());
            proptest::prop_assert!(SecretName::parse(&joined).is_err());
        }
    }
}
