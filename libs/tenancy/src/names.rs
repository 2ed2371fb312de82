//! Validated names: what a signup form and the operator API accept.

use crate::ValidationError;

/// Declares a validated string newtype with the usual conversions; `parse` is written by hand.
macro_rules! string_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(
            feature = "serde",
            derive(serde::Serialize, serde::Deserialize),
            serde(try_from = "String", into = "String")
        )]
        pub struct $name(String);

        impl $name {
            /// The validated (normalised) text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The validated text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> Self {
                v.0
            }
        }
    };
}

/// Subdomains the platform keeps for itself, its infrastructure, or that invite phishing.
pub const RESERVED_SUBDOMAINS: &[&str] = &[
    "www",
    "api",
    "admin",
    "administrator",
    "app",
    "apps",
    "mail",
    "email",
    "webmail",
    "auth",
    "oauth",
    "sso",
    "id",
    "identity",
    "login",
    "logout",
    "signin",
    "signup",
    "register",
    "account",
    "accounts",
    "my",
    "status",
    "billing",
    "pay",
    "payment",
    "payments",
    "invoice",
    "invoices",
    "support",
    "help",
    "helpdesk",
    "docs",
    "doc",
    "blog",
    "news",
    "static",
    "assets",
    "media",
    "files",
    "cdn",
    "img",
    "images",
    "ftp",
    "sftp",
    "smtp",
    "imap",
    "pop",
    "pop3",
    "mx",
    "ns",
    "ns1",
    "ns2",
    "ns3",
    "ns4",
    "dns",
    "vpn",
    "dev",
    "development",
    "stage",
    "staging",
    "test",
    "testing",
    "qa",
    "demo",
    "sandbox",
    "preview",
    "prod",
    "production",
    "beta",
    "alpha",
    "root",
    "system",
    "sys",
    "tenantry",
    "frappe",
    "erpnext",
    "erp",
    "press",
    "dashboard",
    "console",
    "portal",
    "panel",
    "internal",
    "intranet",
    "localhost",
    "local",
    "host",
    "server",
    "node",
    "grafana",
    "prometheus",
    "metrics",
    "monitoring",
    "health",
    "nats",
    "db",
    "database",
    "mysql",
    "mariadb",
    "postgres",
    "redis",
    "git",
    "gitlab",
    "github",
    "ci",
    "jenkins",
    "security",
    "abuse",
    "postmaster",
    "hostmaster",
    "webmaster",
    "noreply",
    "no-reply",
    "owner",
    "operator",
    "ops",
    "staff",
    "team",
    "about",
    "legal",
    "terms",
    "privacy",
    "contact",
    "sales",
    "marketing",
    "shop",
    "store",
    "cloud",
    "home",
    "new",
    "null",
    "undefined",
    "example",
    "authentik",
    "wildcard",
    "autodiscover",
    "autoconfig",
    "vault",
    "backup",
    "backups",
    "archive",
];

string_type!(
    /// A tenant's subdomain: one DNS label, so it can be the first label of the site's host.
    ///
    /// Rules: ASCII `a-z`, `0-9` and `-`; 3–63 characters; no leading or trailing `-`; no `--` in
    /// positions 3–4 (punycode, `xn--`), which could render as a look-alike Unicode name; not in
    /// [`RESERVED_SUBDOMAINS`]. Parsing trims surrounding whitespace and lowercases ASCII letters,
    /// because DNS is case-insensitive and people type `Acme`.
    Subdomain
);

impl Subdomain {
    /// Fewest characters allowed: one- and two-letter names are too easy to squat and confuse.
    pub const MIN_LEN: usize = 3;
    /// Most characters allowed: the DNS label limit.
    pub const MAX_LEN: usize = 63;

    /// Validates and normalises a subdomain.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(ValidationError::Empty);
        }
        // Checked before length so that a look-alike name gets the reason that explains it.
        if !s.is_ascii() {
            return Err(ValidationError::NotAscii);
        }
        let s = s.to_ascii_lowercase();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&s.len()) {
            return Err(ValidationError::Length {
                min: Self::MIN_LEN,
                max: Self::MAX_LEN,
            });
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ValidationError::InvalidCharacters(
                "letters a–z, digits 0–9 and '-'",
            ));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(ValidationError::EdgeHyphen);
        }
        if s.len() >= 4 && &s[2..4] == "--" {
            return Err(ValidationError::Punycode);
        }
        if RESERVED_SUBDOMAINS.contains(&s.as_str()) {
            return Err(ValidationError::Reserved);
        }
        Ok(Self(s))
    }
}

string_type!(
    /// An email address, checked pragmatically: what real mailboxes use, not all of RFC 5322.
    ///
    /// One `@`; a local part of 1–64 ASCII characters from the RFC's "atext" set and dots (not at
    /// either end, never doubled); a domain of at least two DNS labels with an alphabetic TLD;
    /// at most 254 characters in all; no whitespace, control characters or angle brackets (which
    /// could smuggle a second address or markup into mail headers). Surrounding whitespace is
    /// trimmed and the domain is lowercased; the local part keeps its case, since some mail
    /// servers treat it as case-sensitive. Internationalised addresses are refused for now.
    Email
);

impl Email {
    /// Most characters in a whole address (RFC 5321 path limit minus the angle brackets).
    pub const MAX_LEN: usize = 254;

    /// Validates and normalises an email address.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(ValidationError::Empty);
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ValidationError::Forbidden("spaces or control characters"));
        }
        if s.contains(['<', '>']) {
            return Err(ValidationError::Forbidden("'<' or '>'"));
        }
        if !s.is_ascii() {
            return Err(ValidationError::NotAscii);
        }
        if s.len() > Self::MAX_LEN {
            return Err(ValidationError::Length {
                min: 6,
                max: Self::MAX_LEN,
            });
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err(ValidationError::Malformed("must contain an '@'"));
        };
        if domain.contains('@') {
            return Err(ValidationError::Malformed("must contain exactly one '@'"));
        }
        if local.is_empty() {
            return Err(ValidationError::Malformed("needs a name before the '@'"));
        }
        if local.len() > 64 {
            return Err(ValidationError::Malformed(
                "must have at most 64 characters before the '@'",
            ));
        }
        const ATEXT: &[u8] = b"!#$%&'*+/=?^_`{|}~-.";
        if !local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || ATEXT.contains(&b))
        {
            return Err(ValidationError::Malformed(
                "has a character that is not allowed before the '@'",
            ));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(ValidationError::Malformed(
                "must not start or end with a dot, or have two dots in a row, before the '@'",
            ));
        }
        let domain = domain.to_ascii_lowercase();
        check_domain(&domain)?;
        Ok(Self(format!("{local}@{domain}")))
    }

    /// The part before the `@`.
    pub fn local_part(&self) -> &str {
        self.0.split_once('@').map_or("", |(l, _)| l)
    }

    /// The part after the `@`, lowercased.
    pub fn domain(&self) -> &str {
        self.0.split_once('@').map_or("", |(_, d)| d)
    }
}

/// Checks a lowercased mail domain: dotted DNS labels, ending in an alphabetic TLD.
fn check_domain(domain: &str) -> Result<(), ValidationError> {
    const BAD_DOMAIN: ValidationError =
        ValidationError::Malformed("needs a valid domain after the '@', like example.com");
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(BAD_DOMAIN);
    }
    for label in &labels {
        let ok = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(BAD_DOMAIN);
        }
    }
    let tld = labels[labels.len() - 1];
    // `xn--` TLDs are allowed (they are ASCII); a numeric TLD means an IP address was typed.
    if tld.len() < 2 || tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD_DOMAIN);
    }
    Ok(())
}

/// Whether a character can make text lie about itself when shown: control characters and
/// Unicode bidirectional overrides/isolates (which can reverse how a name is displayed).
fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

string_type!(
    /// A person's name as they write it: trimmed, 1–100 characters, any script, but no control or
    /// bidi-override characters and no `<` `>` (the name ends up in emails and HTML).
    PersonName
);

impl PersonName {
    /// Most characters allowed.
    pub const MAX_LEN: usize = 100;

    /// Validates and trims a person's name.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(ValidationError::Empty);
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(ValidationError::Length {
                min: 1,
                max: Self::MAX_LEN,
            });
        }
        if s.chars().any(is_deceptive) {
            return Err(ValidationError::Forbidden("control characters"));
        }
        if s.contains(['<', '>']) {
            return Err(ValidationError::Forbidden("'<' or '>'"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The words of the name (split on whitespace), e.g. for the password policy.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.0.split_whitespace()
    }
}

string_type!(
    /// An organisation's name as plain text: trimmed, 2–100 characters, with runs of spaces
    /// collapsed to one; letters and digits of any script, spaces, and `. , & ' ’ - – ( ) + ! ? : @ #`.
    /// `<`, `>`, `/`, `\`, `;`, quotes other than the apostrophe, and control characters are
    /// refused, since the name lands in site titles, emails and shell-adjacent config.
    OrganisationName
);

impl OrganisationName {
    /// Fewest characters allowed.
    pub const MIN_LEN: usize = 2;
    /// Most characters allowed.
    pub const MAX_LEN: usize = 100;
    /// The punctuation allowed besides letters, digits and spaces.
    const PUNCTUATION: &'static [char] = &[
        '.', ',', '&', '\'', '’', '-', '–', '(', ')', '+', '!', '?', ':', '@', '#',
    ];

    /// Validates and normalises an organisation name.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(ValidationError::Empty);
        }
        if s.chars().any(is_deceptive) {
            return Err(ValidationError::Forbidden("control characters"));
        }
        if s.contains(['<', '>', '/', '\\', ';']) {
            return Err(ValidationError::Forbidden("'<', '>', '/', '\\' or ';'"));
        }
        if !s
            .chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || Self::PUNCTUATION.contains(&c))
        {
            return Err(ValidationError::InvalidCharacters(
                "letters, digits, spaces and . , & ' - ( ) + ! ? : @ #",
            ));
        }
        if !s.chars().any(char::is_alphanumeric) {
            return Err(ValidationError::Malformed(
                "must contain at least one letter or digit",
            ));
        }
        let collapsed = s
            .split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let len = collapsed.chars().count();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&len) {
            return Err(ValidationError::Length {
                min: Self::MIN_LEN,
                max: Self::MAX_LEN,
            });
        }
        Ok(Self(collapsed))
    }
}

/// Checks a lowercase slug: `a-z`, `0-9`, `-`, no hyphen at either end, `min..=max` long.
fn parse_slug(raw: &str, min: usize, max: usize) -> Result<String, ValidationError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(ValidationError::Empty);
    }
    if !s.is_ascii() {
        return Err(ValidationError::NotAscii);
    }
    if !(min..=max).contains(&s.len()) {
        return Err(ValidationError::Length { min, max });
    }
    // Uppercase is refused rather than folded: plan and region ids come from configuration
    // and APIs, where a differently-cased id is a typo, not a person typing.
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ValidationError::InvalidCharacters(
            "lowercase letters a–z, digits 0–9 and '-'",
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(ValidationError::EdgeHyphen);
    }
    Ok(s.to_owned())
}

string_type!(
    /// A billing plan's id, e.g. `starter`: a lowercase slug of 1–32 characters. Whether the plan
    /// exists is the billing catalogue's business, not this type's.
    PlanId
);

impl PlanId {
    /// Validates a plan id.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        parse_slug(raw, 1, 32).map(Self)
    }
}

string_type!(
    /// A region's id, e.g. `eu-central`: a lowercase slug of 2–32 characters.
    Region
);

impl Region {
    /// Validates a region id.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        parse_slug(raw, 2, 32).map(Self)
    }
}

string_type!(
    /// A vault reference, `vault://tenant/<id>/<name>`: the only way an event may point at a
    /// secret. Having a type for it keeps a raw password from being put where a reference belongs.
    VaultRef
);

impl VaultRef {
    const PREFIX: &'static str = "vault://tenant/";

    /// Validates a vault reference.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        const SHAPE: ValidationError =
            ValidationError::Malformed("must look like vault://tenant/<id>/<name>");
        let s = raw.trim();
        if s.is_empty() {
            return Err(ValidationError::Empty);
        }
        let rest = s.strip_prefix(Self::PREFIX).ok_or(SHAPE)?;
        let (owner, name) = rest.split_once('/').ok_or(SHAPE)?;
        let token_ok = |t: &str| {
            !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        // One-time secrets (an owner's password in flight) live at `<id>/one-time/<uuid>`.
        let name_ok = match name.split_once('/') {
            Some(("one-time", id)) => token_ok(id),
            Some(_) => false,
            None => token_ok(name),
        };
        if !token_ok(owner) || !name_ok {
            return Err(SHAPE);
        }
        Ok(Self(s.to_owned()))
    }

    /// A reference for `name` under `tenant`.
    pub fn for_tenant(tenant: &crate::TenantId, name: &str) -> Result<Self, ValidationError> {
        Self::parse(&format!("{}{tenant}/{name}", Self::PREFIX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_refs_name_a_secret_or_a_one_time_secret() {
        assert!(VaultRef::parse("vault://tenant/t1/site-admin-password").is_ok());
        assert!(
            VaultRef::parse("vault://tenant/t1/one-time/0193a6c2-f1b8-7d3e-9a1b-1234567890ab")
                .is_ok()
        );
        assert!(VaultRef::parse("vault://tenant/t1/other/x").is_err());
        assert!(VaultRef::parse("vault://tenant/t1/one-time/").is_err());
        assert!(VaultRef::parse("vault://tenant/t1/one-time/a/b").is_err());
        assert!(VaultRef::parse("vault://tenant/t1/../x").is_err());
    }

    #[test]
    fn subdomain_accepts_dns_labels_and_normalises_case() {
        assert_eq!(Subdomain::parse("acme").unwrap().as_str(), "acme");
        assert_eq!(
            Subdomain::parse(" Acme-Corp ").unwrap().as_str(),
            "acme-corp"
        );
        assert_eq!(Subdomain::parse("a1b").unwrap().as_str(), "a1b");
        assert_eq!(Subdomain::parse("abc--d").unwrap().as_str(), "abc--d");
        assert!(Subdomain::parse(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn subdomain_refusals_say_why() {
        use ValidationError::*;
        let cases: &[(&str, ValidationError)] = &[
            ("", Empty),
            ("ab", Length { min: 3, max: 63 }),
            (&"a".repeat(64), Length { min: 3, max: 63 }),
            ("аcme", NotAscii), // Cyrillic а
            (
                "acme.corp",
                InvalidCharacters("letters a–z, digits 0–9 and '-'"),
            ),
            (
                "acme_corp",
                InvalidCharacters("letters a–z, digits 0–9 and '-'"),
            ),
            ("-acme", EdgeHyphen),
            ("acme-", EdgeHyphen),
            ("xn--acme", Punycode),
            ("ab--cd", Punycode),
            ("www", Reserved),
            ("API", Reserved),
            ("tenantry", Reserved),
            ("accounts", Reserved),
        ];
        for (raw, want) in cases {
            assert_eq!(Subdomain::parse(raw).as_ref(), Err(want), "{raw:?}");
        }
        assert_eq!(
            Subdomain::parse("ab").unwrap_err().to_string(),
            "must be 3–63 characters"
        );
        assert_eq!(
            Subdomain::parse("www").unwrap_err().to_string(),
            "is reserved"
        );
    }

    #[test]
    fn reserved_list_is_lowercase_and_would_otherwise_be_valid_or_short() {
        for r in RESERVED_SUBDOMAINS {
            assert_eq!(r.to_ascii_lowercase(), *r);
            assert!(!r.starts_with('-') && !r.ends_with('-'), "{r}");
        }
    }

    #[test]
    fn email_accepts_real_addresses_and_lowercases_the_domain() {
        let e = Email::parse("  Jane.Doe+erp@Example.CO.uk ").unwrap();
        assert_eq!(e.as_str(), "Jane.Doe+erp@example.co.uk");
        assert_eq!(e.local_part(), "Jane.Doe+erp");
        assert_eq!(e.domain(), "example.co.uk");
        assert!(Email::parse("o'brien@xn--mller-kva.de").is_ok());
    }

    #[test]
    fn email_refusals() {
        for bad in [
            "",
            "jane",
            "jane@",
            "@example.com",
            "jane@@example.com",
            "ja@ne@example.com",
            "jane@example",
            "jane@example.c",
            "jane@1.2.3.4",
            "jane@-example.com",
            "jane@example-.com",
            "jane@exa_mple.com",
            "jane@example..com",
            ".jane@example.com",
            "jane.@example.com",
            "ja..ne@example.com",
            "ja ne@example.com",
            "jane@exam\tple.com",
            "<jane@example.com>",
            "jane(x)@example.com",
            "jäne@example.com",
            "jane@exämple.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(200));
        assert_eq!(
            Email::parse(&long),
            Err(ValidationError::Length { min: 6, max: 254 })
        );
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn person_name() {
        assert_eq!(
            PersonName::parse("  Zoë O'Brien ").unwrap().as_str(),
            "Zoë O'Brien"
        );
        assert_eq!(PersonName::parse("李").unwrap().as_str(), "李");
        assert_eq!(PersonName::parse(" "), Err(ValidationError::Empty));
        assert!(PersonName::parse("<script>").is_err());
        assert!(PersonName::parse("Bob\u{0}").is_err());
        assert!(PersonName::parse("Bob\u{202E}evil").is_err());
        assert!(PersonName::parse(&"x".repeat(100)).is_ok());
        assert_eq!(
            PersonName::parse(&"x".repeat(101)),
            Err(ValidationError::Length { min: 1, max: 100 })
        );
        let n = PersonName::parse("Jane  van Doe").unwrap();
        assert_eq!(n.words().collect::<Vec<_>>(), ["Jane", "van", "Doe"]);
    }

    #[test]
    fn organisation_name() {
        assert_eq!(
            OrganisationName::parse("  Müller  & Söhne (Berlin) GmbH ")
                .unwrap()
                .as_str(),
            "Müller & Söhne (Berlin) GmbH"
        );
        assert!(OrganisationName::parse("O'Neil, Smith & Co.").is_ok());
        assert!(OrganisationName::parse("AB").is_ok());
        assert_eq!(
            OrganisationName::parse("A"),
            Err(ValidationError::Length { min: 2, max: 100 })
        );
        for bad in [
            "<b>Acme</b>",
            "Acme; DROP TABLE",
            "Acme/Corp",
            "Acme\\Corp",
            "Acme\nCorp",
            "Acme\"Corp",
            "Acme $",
            "...",
            "Acme\u{2066}",
        ] {
            assert!(OrganisationName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            OrganisationName::parse("...").unwrap_err().to_string(),
            "must contain at least one letter or digit"
        );
    }

    #[test]
    fn plan_and_region_slugs() {
        assert_eq!(PlanId::parse("starter").unwrap().as_str(), "starter");
        assert!(PlanId::parse("s").is_ok());
        assert!(PlanId::parse("pro-2024").is_ok());
        assert!(PlanId::parse("Pro").is_err());
        assert!(PlanId::parse("-pro").is_err());
        assert!(PlanId::parse(&"p".repeat(33)).is_err());
        assert_eq!(
            Region::parse("eu-central").unwrap().to_string(),
            "eu-central"
        );
        assert!(Region::parse("e").is_err());
        assert!(Region::parse("eu_central").is_err());
    }

    #[test]
    fn vault_refs() {
        let id = crate::TenantId::new();
        let r = VaultRef::for_tenant(&id, "owner-password").unwrap();
        assert_eq!(r.as_str(), format!("vault://tenant/{id}/owner-password"));
        assert!(VaultRef::parse("hunter2hunter2").is_err());
        assert!(VaultRef::parse("vault://tenant/x").is_err());
        assert!(VaultRef::parse("vault://tenant/x/a b").is_err());
        assert!(VaultRef::parse("vault://tenant//name").is_err());
    }
}
