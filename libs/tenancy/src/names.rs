//! Validated names: what a signup form and the operator API accept.

use unicode_normalization::UnicodeNormalization;

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

/// Subdomains no tenant may have: the one list, checked by [`Subdomain::parse`].
///
/// A tenant's site is `<subdomain>.<platform domain>`, so a tenant holding one of these names
/// could answer for something the platform, its mail or a visitor's software looks up there.
/// Groups:
///
/// - the platform and its infrastructure (`www`, `api`, `admin`, `tenantry`, `grafana`, …);
/// - mail and its discovery: mail clients and servers look these up by name to find settings,
///   policies and keys (`mail`, `smtp`, `imap`, `mx`, `autodiscover`, `autoconfig`, `mta-sts`,
///   `openpgpkey`, …). `_domainkey`, `_dmarc`, `_mta-sts` and `_acme-challenge` are covered by
///   the character rule (no `_`);
/// - network auto-configuration that browsers and operating systems resolve unasked (`wpad`,
///   `isatap`) and Microsoft discovery records (`lyncdiscover`, `sip`, `enterpriseregistration`,
///   `enterpriseenrollment`, `msoid`);
/// - hosting panels and their service names (`cpanel`, `whm`, `webdisk`, `plesk`, `owa`,
///   `exchange`, …);
/// - the RFC 2142 role mailboxes (`postmaster`, `hostmaster`, `abuse`, `security`, …) and names
///   that invite phishing (`login`, `billing`, `support`, `accounts`, …).
///
/// Names shorter than [`Subdomain::MIN_LEN`] (`id`, `mx`, `ns`, …) are refused by length
/// anyway; they are listed so the list stays right if the minimum changes.
pub const RESERVED_SUBDOMAINS: &[&str] = &[
    // the platform and its infrastructure
    "www",
    "api",
    "admin",
    "administrator",
    "app",
    "apps",
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
    "hosting",
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
    "authentik",
    "vault",
    "backup",
    "backups",
    "archive",
    "wildcard",
    // file transfer, DNS, remote access
    "ftp",
    "sftp",
    "ns",
    "ns1",
    "ns2",
    "ns3",
    "ns4",
    "dns",
    "vpn",
    // mail, and what mail software looks up to configure itself
    "mail",
    "email",
    "webmail",
    "smtp",
    "smtps",
    "imap",
    "imaps",
    "pop",
    "pop3",
    "pop3s",
    "mx",
    "mx1",
    "mx2",
    "autodiscover",
    "autoconfig",
    "mta-sts",
    "openpgpkey",
    "dkim",
    "dmarc",
    "spf",
    // network auto-configuration resolved unasked by browsers and operating systems
    "wpad",
    "isatap",
    // Microsoft Lync/Skype/Teams and device-enrolment discovery
    "lyncdiscover",
    "sip",
    "sipfed",
    "enterpriseregistration",
    "enterpriseenrollment",
    "msoid",
    // hosting panels and their service names
    "cpanel",
    "whm",
    "webdisk",
    "cpcalendars",
    "cpcontacts",
    "plesk",
    "owa",
    "exchange",
    "outlook",
    // role mailboxes (RFC 2142) and names that invite phishing
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
    /// An email address, held to the one rule both the signup gateway and the provisioner's
    /// Frappe side (`frappe::UserEmail`) apply, so an address accepted at signup can always become
    /// the owner's Frappe user. Deliberately narrower than RFC 5322, and than what Frappe itself
    /// accepts: the address travels in a bench argv, in Python literals and in mail headers.
    ///
    /// - One `@`. The whole address at most [`Email::MAX_LEN`] (140) characters: Frappe names
    ///   the user by the address, in a `varchar(140)` column.
    /// - Before the `@` (the local part): 1–64 ASCII letters, digits and `. _ % + -`
    ///   ([`Email::LOCAL_PART_SYMBOLS`]); no dot at either end or two in a row; no `-` first (a
    ///   bench argv would read it as an option). Quotes, `'`, `!`, `#`, `$`, `&`, `*`, `/`, `=`,
    ///   `?`, `^`, `` ` ``, `{`, `|`, `}` and `~` (the rest of the RFC's "atext") are refused.
    /// - After the `@` (the domain): at least two DNS labels of 1–63 ASCII letters, digits and
    ///   `-`, no `-` at either end of a label; the last one (the TLD) of two or more letters, or a
    ///   punycode TLD (`xn--…`). No IP addresses.
    /// - Never `undisclosed-recipient`, which Frappe's own check refuses.
    ///
    /// [`Email::parse`] trims surrounding whitespace, as people paste addresses; the domain is
    /// lowercased and the local part keeps its case, as typed. Where an address is a key (rate
    /// limits, idempotency, a Frappe user's name), compare [`Email::key`], the address in lower
    /// case: mail providers and Frappe treat `Jane@x.com` and `jane@x.com` as one person.
    /// Internationalised addresses are refused for now.
    Email
);

impl Email {
    /// Fewest characters an address can have (`a@b.co`).
    pub const MIN_LEN: usize = 6;
    /// Most characters in a whole address: Frappe stores the user's name (the address) in a
    /// `varchar(140)` column, tighter than the RFC 5321 limit of 254.
    pub const MAX_LEN: usize = 140;
    /// Most characters before the `@` (RFC 5321).
    pub const MAX_LOCAL_LEN: usize = 64;
    /// The characters allowed before the `@` besides ASCII letters and digits.
    pub const LOCAL_PART_SYMBOLS: &'static str = "._%+-";

    /// Validates and normalises an email address a person typed: surrounding whitespace is
    /// trimmed, then [`Email::parse_exact`] applies.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        Self::parse_exact(raw.trim())
    }

    /// Validates an address exactly as given, without trimming (what a program hands over,
    /// e.g. a bench argv), and lowercases its domain. Whatever this accepts, it accepts again
    /// unchanged from its own output.
    pub fn parse_exact(s: &str) -> Result<Self, ValidationError> {
        use ValidationError::{Forbidden, Malformed};
        if s.is_empty() {
            return Err(ValidationError::Empty);
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Forbidden("spaces or control characters"));
        }
        if s.contains(['<', '>']) {
            return Err(Forbidden("'<' or '>'"));
        }
        if !s.is_ascii() {
            return Err(ValidationError::NotAscii);
        }
        if s.len() > Self::MAX_LEN {
            return Err(ValidationError::Length {
                min: Self::MIN_LEN,
                max: Self::MAX_LEN,
            });
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err(Malformed("must contain an '@'"));
        };
        if domain.contains('@') {
            return Err(Malformed("must contain exactly one '@'"));
        }
        check_local_part(local)?;
        let domain = domain.to_ascii_lowercase();
        check_domain(&domain)?;
        // Frappe's `validate_email_address` refuses any address holding this text.
        if s.to_ascii_lowercase().contains("undisclosed-recipient") {
            return Err(Malformed(
                "must be a real mailbox, not 'undisclosed-recipients'",
            ));
        }
        Ok(Self(format!("{local}@{domain}")))
    }

    /// The part before the `@`, as typed.
    pub fn local_part(&self) -> &str {
        self.0.split_once('@').map_or("", |(l, _)| l)
    }

    /// The part after the `@`, lowercased.
    pub fn domain(&self) -> &str {
        self.0.split_once('@').map_or("", |(_, d)| d)
    }

    /// The whole address in lower case: what to compare and index by (rate limits, idempotency,
    /// a Frappe user's name), since `Jane@x.com` and `jane@x.com` are one mailbox in practice.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// Checks the part before the `@`.
fn check_local_part(local: &str) -> Result<(), ValidationError> {
    use ValidationError::Malformed;
    if local.is_empty() {
        return Err(Malformed("needs a name before the '@'"));
    }
    if local.len() > Email::MAX_LOCAL_LEN {
        return Err(Malformed("must have at most 64 characters before the '@'"));
    }
    if !local
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || Email::LOCAL_PART_SYMBOLS.as_bytes().contains(&b))
    {
        return Err(Malformed(
            "may only hold letters, digits and . _ % + - before the '@'",
        ));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(Malformed(
            "must not start or end with a dot, or have two dots in a row, before the '@'",
        ));
    }
    if local.starts_with('-') {
        return Err(Malformed("must not start with '-'"));
    }
    Ok(())
}

/// Checks a lowercased mail domain: dotted DNS labels, ending in an alphabetic TLD.
fn check_domain(domain: &str) -> Result<(), ValidationError> {
    use ValidationError::Malformed;
    if !domain.contains('.') {
        return Err(Malformed(
            "needs a domain with a dot after the '@', like example.com",
        ));
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(Malformed(
                "must not have a dot at either end of the domain, or two dots in a row",
            ));
        }
        if label.len() > 63 {
            return Err(Malformed(
                "must have at most 63 characters between two dots of the domain",
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(Malformed(
                "may only hold letters, digits, '-' and dots after the '@'",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(Malformed(
                "must not have a '-' next to a dot or at either end of the domain",
            ));
        }
    }
    let tld = domain.rsplit('.').next().unwrap_or_default();
    // A numeric TLD means an IP address was typed; `xn--` TLDs are internationalised ones in
    // their ASCII form, which mail software handles like any other.
    let alphabetic = tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_lowercase());
    let punycode = tld.len() > 4
        && tld.starts_with("xn--")
        && tld[4..].bytes().all(|b| b.is_ascii_alphanumeric());
    if !alphabetic && !punycode {
        return Err(Malformed(
            "must end in a top-level domain of two or more letters, like .com",
        ));
    }
    Ok(())
}

/// Unicode bidirectional formatting characters: embeddings and overrides (U+202A–U+202E),
/// isolates (U+2066–U+2069) and the invisible direction marks (U+200E, U+200F, U+061C). Any of
/// them can make a name display in another order than it is stored, e.g. to pass one name off
/// as another in a list or an email.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// Characters that show nothing by themselves: whitespace (U+2028/U+2029 included), the
/// Unicode format characters (category Cf: U+00AD soft hyphen, U+200B–U+200F zero-width
/// spaces, joiners and marks, U+2060–U+206F word joiner and invisible operators, U+FEFF, the
/// tag characters, …), and the fillers and selectors that render blank (Hangul fillers, the
/// combining grapheme joiner, variation selectors, the braille blank).
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            // category Cf (Unicode 15.1)
            '\u{00AD}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0001}'
                | '\u{E0020}'..='\u{E007F}'
                // blank fillers and selectors of other categories
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180D}'
                | '\u{180F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FFA0}'
                | '\u{E0100}'..='\u{E01EF}'
        )
}

/// A character that shows something on its own: not invisible, and not a combining mark
/// (which only decorates the character before it).
fn is_visible(c: char) -> bool {
    !is_invisible(c) && !unicode_normalization::char::is_combining_mark(c)
}

/// What every displayed name (a person's, an organisation's) goes through first: whitespace
/// trimmed; Unicode NFC, so a decomposed "Café" (`e` + U+0301) is the same name as the composed
/// one; no control characters or line breaks; no bidi controls ([`is_bidi_control`]);
/// invisible characters trimmed from both ends; and at least one visible character left.
fn display_text(raw: &str) -> Result<String, ValidationError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(ValidationError::Empty);
    }
    if s.chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return Err(ValidationError::Forbidden(
            "control characters or line breaks",
        ));
    }
    if s.chars().any(is_bidi_control) {
        return Err(ValidationError::Forbidden(
            "bidirectional formatting characters (U+202A–U+202E, U+2066–U+2069, U+200E, \
             U+200F, U+061C), which can make text display in a misleading order",
        ));
    }
    // Trimmed before normalising, so the result is already what normalising gives: parsing
    // it again changes nothing.
    let s = s.trim_matches(is_invisible);
    if !s.chars().any(is_visible) {
        return Err(ValidationError::Malformed(
            "must contain a visible character, not only spaces or invisible formatting",
        ));
    }
    Ok(s.nfc().collect())
}

string_type!(
    /// A person's name as they write it: any script, in Unicode NFC, 1–100 characters after
    /// trimming, with a visible character; no control characters, line breaks or bidi
    /// controls, and no `<` `>` (the name ends up in emails and HTML). Zero-width joiners and
    /// non-joiners stay inside a name, where some scripts need them.
    PersonName
);

impl PersonName {
    /// Most characters allowed.
    pub const MAX_LEN: usize = 100;

    /// Validates and normalises a person's name.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = display_text(raw)?;
        if s.chars().count() > Self::MAX_LEN {
            return Err(ValidationError::Length {
                min: 1,
                max: Self::MAX_LEN,
            });
        }
        if s.contains(['<', '>']) {
            return Err(ValidationError::Forbidden("'<' or '>'"));
        }
        Ok(Self(s))
    }

    /// The words of the name (split on whitespace), e.g. for the password policy.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.0.split_whitespace()
    }
}

string_type!(
    /// An organisation's name as plain text, in Unicode NFC: trimmed, 2–100 characters, with
    /// runs of spaces collapsed to one; letters and digits of any script, spaces, and
    /// `. , & ' ’ - – ( ) + ! ? : @ #`. `<`, `>`, `/`, `\`, `;`, quotes other than the
    /// apostrophe, control characters and bidi controls are refused, since the name lands in
    /// site titles, emails and shell-adjacent config.
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
        let s = display_text(raw)?;
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
    fn the_reserved_list_holds_mail_discovery_and_panel_names() {
        // Issue 18: what mail clients, browsers, OSes and hosting panels look up by name.
        for name in [
            "wpad",
            "mta-sts",
            "openpgpkey",
            "autodiscover",
            "autoconfig",
            "isatap",
            "imap",
            "pop",
            "pop3",
            "smtp",
            "mail",
            "webmail",
            "mx",
            "ns1",
            "ns2",
            "ns3",
            "ns4",
            "cpanel",
            "whm",
            "webdisk",
            "plesk",
            "owa",
            "exchange",
            "lyncdiscover",
            "sip",
            "ftp",
            "sftp",
            "vpn",
            "admin",
            "root",
            "postmaster",
            "hostmaster",
            "abuse",
            "security",
            "status",
            "api",
            "www",
            "app",
            "support",
            "help",
            "billing",
            "login",
            "auth",
            "sso",
            "id",
            "accounts",
        ] {
            assert!(RESERVED_SUBDOMAINS.contains(&name), "{name} is not listed");
            assert!(Subdomain::parse(name).is_err(), "{name} is accepted");
        }
        for name in [
            "wpad",
            "mta-sts",
            "openpgpkey",
            "cpanel",
            "lyncdiscover",
            "Isatap",
        ] {
            assert_eq!(
                Subdomain::parse(name),
                Err(ValidationError::Reserved),
                "{name}"
            );
        }
        // `_domainkey`, `_dmarc`: the character rule covers what cannot be listed.
        for name in ["_domainkey", "_dmarc", "_mta-sts", "_acme-challenge"] {
            assert!(
                matches!(
                    Subdomain::parse(name),
                    Err(ValidationError::InvalidCharacters(_))
                ),
                "{name}"
            );
        }
        let mut sorted = RESERVED_SUBDOMAINS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            RESERVED_SUBDOMAINS.len(),
            "a name is listed twice"
        );
    }

    #[test]
    fn email_accepts_real_addresses_and_lowercases_the_domain() {
        let e = Email::parse("  Jane.Doe+erp@Example.CO.uk ").unwrap();
        assert_eq!(e.as_str(), "Jane.Doe+erp@example.co.uk");
        assert_eq!(e.local_part(), "Jane.Doe+erp");
        assert_eq!(e.domain(), "example.co.uk");
        assert_eq!(e.key(), "jane.doe+erp@example.co.uk");
        for (raw, want) in [
            ("jane@example.com", "jane@example.com"),
            ("j@x.io", "j@x.io"),
            ("first.last@sub.example.org", "first.last@sub.example.org"),
            ("under_score@example.com", "under_score@example.com"),
            ("percent%hack@example.com", "percent%hack@example.com"),
            ("tag+erp@example.com", "tag+erp@example.com"),
            ("trailing-@example.com", "trailing-@example.com"),
            ("mid-dle@example.com", "mid-dle@example.com"),
            ("0123@9.example.com", "0123@9.example.com"),
            ("JANE@EXAMPLE.COM", "JANE@example.com"),
            ("jane@xn--mller-kva.de", "jane@xn--mller-kva.de"),
            ("jane@example.xn--p1ai", "jane@example.xn--p1ai"),
            ("jane@a-b.c-d.example", "jane@a-b.c-d.example"),
            ("\tjane@example.com\n", "jane@example.com"),
        ] {
            assert_eq!(
                Email::parse(raw).map(Email::into_string),
                Ok(want.to_owned()),
                "{raw:?}"
            );
        }
        let at_limit = format!(
            "{}@{}.{}.com",
            "a".repeat(64),
            "b".repeat(40),
            "c".repeat(30)
        );
        assert_eq!(at_limit.len(), Email::MAX_LEN);
        assert!(Email::parse(&at_limit).is_ok());
    }

    #[test]
    fn email_refusals_say_why() {
        use ValidationError::*;
        const LOCAL_CHARS: ValidationError =
            Malformed("may only hold letters, digits and . _ % + - before the '@'");
        const LOCAL_DOTS: ValidationError = Malformed(
            "must not start or end with a dot, or have two dots in a row, before the '@'",
        );
        const NO_DOT: ValidationError =
            Malformed("needs a domain with a dot after the '@', like example.com");
        const EMPTY_LABEL: ValidationError =
            Malformed("must not have a dot at either end of the domain, or two dots in a row");
        const DOMAIN_CHARS: ValidationError =
            Malformed("may only hold letters, digits, '-' and dots after the '@'");
        const EDGE_HYPHEN: ValidationError =
            Malformed("must not have a '-' next to a dot or at either end of the domain");
        const TLD: ValidationError =
            Malformed("must end in a top-level domain of two or more letters, like .com");
        let long_label = format!("jane@{}.com", "b".repeat(64));
        let cases: &[(&str, ValidationError)] = &[
            ("", Empty),
            ("   ", Empty),
            ("jane", Malformed("must contain an '@'")),
            (
                "jane@@example.com",
                Malformed("must contain exactly one '@'"),
            ),
            (
                "ja@ne@example.com",
                Malformed("must contain exactly one '@'"),
            ),
            ("@example.com", Malformed("needs a name before the '@'")),
            // Issue 18: valid for the RFC, not for the Frappe side.
            ("o'brien@example.com", LOCAL_CHARS),
            ("a!b@example.com", LOCAL_CHARS),
            ("a#b@example.com", LOCAL_CHARS),
            ("a$b@example.com", LOCAL_CHARS),
            ("a&b@example.com", LOCAL_CHARS),
            ("a*b@example.com", LOCAL_CHARS),
            ("a/b@example.com", LOCAL_CHARS),
            ("a=b@example.com", LOCAL_CHARS),
            ("a?b@example.com", LOCAL_CHARS),
            ("a^b@example.com", LOCAL_CHARS),
            ("a`b@example.com", LOCAL_CHARS),
            ("a{b}@example.com", LOCAL_CHARS),
            ("a|b@example.com", LOCAL_CHARS),
            ("a~b@example.com", LOCAL_CHARS),
            ("\"a\"@example.com", LOCAL_CHARS),
            ("jane(x)@example.com", LOCAL_CHARS),
            ("ja,ne@example.com", LOCAL_CHARS),
            (".jane@example.com", LOCAL_DOTS),
            ("jane.@example.com", LOCAL_DOTS),
            ("ja..ne@example.com", LOCAL_DOTS),
            ("-jane@example.com", Malformed("must not start with '-'")),
            ("jane@", NO_DOT),
            ("jane@example", NO_DOT),
            ("jane@localhost", NO_DOT),
            ("jane@example..com", EMPTY_LABEL),
            ("jane@.example.com", EMPTY_LABEL),
            ("jane@example.com.", EMPTY_LABEL),
            (
                &long_label,
                Malformed("must have at most 63 characters between two dots of the domain"),
            ),
            ("jane@exa_mple.com", DOMAIN_CHARS),
            ("jane@[1.2.3.4]", DOMAIN_CHARS),
            ("jane@-example.com", EDGE_HYPHEN),
            ("jane@example-.com", EDGE_HYPHEN),
            ("jane@example.c", TLD),
            ("jane@example.c0m", TLD),
            ("jane@example.co-m", TLD),
            ("jane@1.2.3.4", TLD),
            ("jane@example.xn--", EDGE_HYPHEN),
            (
                "ja ne@example.com",
                Forbidden("spaces or control characters"),
            ),
            (
                "jane@exam\tple.com",
                Forbidden("spaces or control characters"),
            ),
            (
                "jane@example.com\r\nBcc: x@evil.com",
                Forbidden("spaces or control characters"),
            ),
            (
                "jane\u{0}@example.com",
                Forbidden("spaces or control characters"),
            ),
            ("<jane@example.com>", Forbidden("'<' or '>'")),
            ("jäne@example.com", NotAscii),
            ("jane@exämple.com", NotAscii),
            ("jane@ехаmple.com", NotAscii), // Cyrillic е, х
            (
                "undisclosed-recipients@example.com",
                Malformed("must be a real mailbox, not 'undisclosed-recipients'"),
            ),
            (
                "a@Undisclosed-Recipient.example.com",
                Malformed("must be a real mailbox, not 'undisclosed-recipients'"),
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(Email::parse(raw).as_ref(), Err(want), "{raw:?}");
        }
        let too_long = format!(
            "{}@{}.{}.com",
            "a".repeat(64),
            "b".repeat(40),
            "c".repeat(31)
        );
        assert_eq!(Email::parse(&too_long), Err(Length { min: 6, max: 140 }));
        assert_eq!(
            Email::parse(&format!("{}@example.com", "a".repeat(65))),
            Err(Malformed("must have at most 64 characters before the '@'"))
        );
        assert_eq!(
            Email::parse("o'brien@example.com").unwrap_err().to_string(),
            "may only hold letters, digits and . _ % + - before the '@'"
        );
    }

    #[test]
    fn parse_exact_takes_the_address_as_given() {
        assert_eq!(
            Email::parse_exact("Jane@Example.com").unwrap().as_str(),
            "Jane@example.com"
        );
        for raw in [
            " jane@example.com",
            "jane@example.com\n",
            "jane@example.com ",
        ] {
            assert_eq!(
                Email::parse_exact(raw),
                Err(ValidationError::Forbidden("spaces or control characters")),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn person_names_accepted_and_normalised() {
        let cases: &[(&str, &str)] = &[
            ("  Zoë O'Brien ", "Zoë O'Brien"),
            ("李", "李"),
            ("Jane  van Doe", "Jane  van Doe"),
            // NFC: a decomposed é (e + U+0301) is the composed one.
            ("Cafe\u{301} Owner", "Café Owner"),
            ("Ångström", "Ångström"),
            ("A\u{30A}ngstro\u{308}m", "Ångström"),
            ("\u{212B}sa", "Åsa"), // U+212B ANGSTROM SIGN → Å
            // Invisible characters at either end are dropped; joiners inside stay.
            ("\u{FEFF}Jane Doe\u{200B}", "Jane Doe"),
            ("\u{2060}\u{200D}Jane", "Jane"),
            ("می\u{200C}خواهم", "می\u{200C}خواهم"), // Persian with a ZWNJ
            ("X Æ A-12", "X Æ A-12"),
            ("😀", "😀"),
        ];
        for (raw, want) in cases {
            assert_eq!(
                PersonName::parse(raw).map(PersonName::into_string),
                Ok((*want).to_owned()),
                "{raw:?}"
            );
        }
        assert_eq!(
            PersonName::parse("Cafe\u{301}"),
            PersonName::parse("Caf\u{e9}")
        );
        // Length counts characters after NFC: 100 decomposed é are 100 characters.
        assert!(PersonName::parse(&"e\u{301}".repeat(100)).is_ok());
        assert!(PersonName::parse(&"x".repeat(100)).is_ok());
        let n = PersonName::parse("Jane  van Doe").unwrap();
        assert_eq!(n.words().collect::<Vec<_>>(), ["Jane", "van", "Doe"]);
    }

    /// The refusals shared by person and organisation names.
    fn display_refusals() -> Vec<(&'static str, ValidationError)> {
        use ValidationError::*;
        const INVISIBLE: ValidationError =
            Malformed("must contain a visible character, not only spaces or invisible formatting");
        const BIDI: ValidationError = Forbidden(
            "bidirectional formatting characters (U+202A–U+202E, U+2066–U+2069, U+200E, \
             U+200F, U+061C), which can make text display in a misleading order",
        );
        const CONTROL: ValidationError = Forbidden("control characters or line breaks");
        vec![
            ("", Empty),
            (" \t\n ", Empty),
            ("\u{3000}\u{A0}", Empty),
            ("\u{FEFF}", INVISIBLE),
            ("\u{200B}", INVISIBLE),
            ("\u{200C}\u{200D}", INVISIBLE),
            ("\u{2060}", INVISIBLE),
            (" \u{200B} \u{FEFF} ", INVISIBLE),
            ("\u{AD}", INVISIBLE),
            ("\u{E0041}\u{E0042}", INVISIBLE), // tag characters
            ("\u{3164}", INVISIBLE),           // Hangul filler
            ("\u{2800}", INVISIBLE),           // braille blank
            ("\u{FE0F}", INVISIBLE),           // variation selector
            ("\u{301}", INVISIBLE),            // a combining mark on nothing
            ("\u{200B}\u{301}\u{200B}", INVISIBLE),
            ("Bob\u{0}", CONTROL),
            ("Bob\u{7}x", CONTROL),
            ("Bob\u{1B}[31m", CONTROL),
            ("Bob\u{7F}", CONTROL),
            ("Bob\u{85}x", CONTROL),
            ("Bob\u{9B}x", CONTROL),
            ("Jane\nDoe", CONTROL),
            ("Jane\rDoe", CONTROL),
            ("Jane\tDoe", CONTROL),
            ("Jane\u{2028}Doe", CONTROL),
            ("Jane\u{2029}Doe", CONTROL),
            ("\u{2028}", Empty), // whitespace, so trimmed away first
            ("Bob\u{202E}evil", BIDI),
            ("\u{202A}Bob", BIDI),
            ("Bob\u{202B}", BIDI),
            ("Bob\u{202C}x", BIDI),
            ("Bob\u{202D}x", BIDI),
            ("Bob\u{2066}x", BIDI),
            ("Bob\u{2067}x", BIDI),
            ("Bob\u{2068}x", BIDI),
            ("Bob\u{2069}x", BIDI),
            ("Bob\u{200E}", BIDI),
            ("\u{200F}Bob", BIDI),
            ("Bob\u{61C}x", BIDI),
            ("\u{61C}", BIDI),
        ]
    }

    #[test]
    fn person_name_refusals_say_why() {
        use ValidationError::*;
        let mut cases = display_refusals();
        cases.extend([
            ("<script>", Forbidden("'<' or '>'")),
            ("Jane <j@x.com>", Forbidden("'<' or '>'")),
        ]);
        for (raw, want) in &cases {
            assert_eq!(PersonName::parse(raw).as_ref(), Err(want), "{raw:?}");
        }
        assert_eq!(
            PersonName::parse(&"x".repeat(101)),
            Err(Length { min: 1, max: 100 })
        );
        assert_eq!(
            PersonName::parse("\u{200B}").unwrap_err().to_string(),
            "must contain a visible character, not only spaces or invisible formatting"
        );
        assert!(
            PersonName::parse("Bob\u{202E}")
                .unwrap_err()
                .to_string()
                .starts_with("must not contain bidirectional formatting characters")
        );
    }

    #[test]
    fn organisation_name() {
        for (raw, want) in [
            (
                "  Müller  & Söhne (Berlin) GmbH ",
                "Müller & Söhne (Berlin) GmbH",
            ),
            ("Cafe\u{301} Rouge", "Café Rouge"),
            ("O'Neil, Smith & Co.", "O'Neil, Smith & Co."),
            ("AB", "AB"),
            ("\u{FEFF}Acme Ltd\u{200B}", "Acme Ltd"),
        ] {
            assert_eq!(
                OrganisationName::parse(raw).map(OrganisationName::into_string),
                Ok(want.to_owned()),
                "{raw:?}"
            );
        }
        assert_eq!(
            OrganisationName::parse("Cafe\u{301}"),
            OrganisationName::parse("Caf\u{e9}")
        );
        assert_eq!(
            OrganisationName::parse("A"),
            Err(ValidationError::Length { min: 2, max: 100 })
        );
        for (raw, want) in display_refusals() {
            assert_eq!(OrganisationName::parse(raw), Err(want), "{raw:?}");
        }
        for bad in [
            "<b>Acme</b>",
            "Acme; DROP TABLE",
            "Acme/Corp",
            "Acme\\Corp",
            "Acme\"Corp",
            "Acme $",
            "...",
            "Acme\u{200B}Corp",
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
