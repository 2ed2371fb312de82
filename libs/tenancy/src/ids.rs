//! Tenant identity.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::ValidationError;

/// A tenant's id: a UUIDv7, so ids sort by creation time (useful in NATS subjects, logs and
/// database indexes). Displayed in the canonical lowercase hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "String", into = "String")
)]
pub struct TenantId(Uuid);

impl TenantId {
    /// A fresh UUIDv7 id. Reads the clock (inside `uuid`): call it at the edge that creates the
    /// tenant, never while folding events.
    #[allow(clippy::new_without_default)] // a Default that reads the clock would surprise
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps an existing UUID of any version, e.g. one made from a timestamp the caller chose.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// Parses the canonical hyphenated form (any case) of a UUIDv7. Other versions are refused
    /// because Tenantry only ever mints v7 ids: anything else is a pasted wrong id.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(ValidationError::Empty);
        }
        // Only the hyphenated form: the id is a NATS subject token and a string key elsewhere,
        // so braced/urn/simple spellings would create aliases of one tenant.
        if raw.len() != 36 {
            return Err(ValidationError::Malformed(
                "must be a UUID like 0190f5c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d",
            ));
        }
        let uuid = Uuid::try_parse(raw).map_err(|_| {
            ValidationError::Malformed("must be a UUID like 0190f5c2-7d1e-7a3b-9c4d-5e6f7a8b9c0d")
        })?;
        if uuid.get_version_num() != 7 {
            return Err(ValidationError::Malformed("must be a version 7 UUID"));
        }
        Ok(Self(uuid))
    }

    /// The wrapped UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for TenantId {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for TenantId {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> Self {
        id.to_string()
    }
}

impl From<TenantId> for Uuid {
    fn from(id: TenantId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_v7_and_round_trip() {
        let id = TenantId::new();
        assert_eq!(id.as_uuid().get_version_num(), 7);
        assert_eq!(TenantId::parse(&id.to_string()), Ok(id));
        assert_eq!(TenantId::parse(&id.to_string().to_uppercase()), Ok(id));
    }

    #[test]
    fn refuses_other_versions_and_spellings() {
        let v4 = Uuid::new_v4();
        assert_eq!(
            TenantId::parse(&v4.to_string()),
            Err(ValidationError::Malformed("must be a version 7 UUID"))
        );
        assert!(TenantId::parse(&TenantId::new().as_uuid().simple().to_string()).is_err());
        assert!(TenantId::parse("t1").is_err());
        assert_eq!(TenantId::parse("  "), Err(ValidationError::Empty));
        // from_uuid is the escape hatch for any version.
        assert_eq!(TenantId::from_uuid(v4).as_uuid(), &v4);
    }
}
