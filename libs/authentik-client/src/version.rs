//! Authentik release versions (`2026.8.5`, `2024.12.0-rc1`) and the oldest we speak to.

use std::fmt;

/// A release version: year, minor, patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Release year, e.g. 2026.
    pub year: u32,
    /// Release of that year, e.g. 8.
    pub minor: u32,
    /// Patch, e.g. 5.
    pub patch: u32,
}

impl Version {
    /// The oldest release with list `redirect_uris` and a required `invalidation_flow`.
    pub const MINIMUM: Version = Version::new(2024, 12, 0);
    /// The first release with `grant_types` on OAuth2 providers.
    pub const GRANT_TYPES: Version = Version::new(2026, 5, 0);

    /// A version from its parts.
    pub const fn new(year: u32, minor: u32, patch: u32) -> Self {
        Self { year, minor, patch }
    }

    /// Parses `version_current` (`2026.8.5`, `2025.12.0-rc2`); `None` when it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let core = text.trim().split(['-', '+']).next()?;
        let mut parts = core.split('.').map(str::parse::<u32>);
        let year = parts.next()?.ok()?;
        let minor = parts.next()?.ok()?;
        let patch = match parts.next() {
            Some(p) => p.ok()?,
            None => 0,
        };
        Some(Self::new(year, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.year, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_releases_and_candidates() {
        assert_eq!(Version::parse("2026.8.5"), Some(Version::new(2026, 8, 5)));
        assert_eq!(
            Version::parse("2025.12.0-rc2"),
            Some(Version::new(2025, 12, 0))
        );
        assert_eq!(Version::parse("2024.12"), Some(Version::new(2024, 12, 0)));
        assert_eq!(Version::parse("main"), None);
        assert_eq!(Version::parse(""), None);
    }

    #[test]
    fn orders_by_year_then_minor() {
        assert!(Version::new(2024, 10, 3) < Version::MINIMUM);
        assert!(Version::new(2025, 2, 0) > Version::MINIMUM);
        assert!(Version::new(2026, 4, 9) < Version::GRANT_TYPES);
    }
}
