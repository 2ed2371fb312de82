//! Validated names and values: the only things allowed into a bench argv.
//!
//! Every type here is built with a `parse` constructor that refuses anything a shell, click's
//! option parser or Python's `eval` could misread (leading `-`, quotes, whitespace, path
//! separators, control characters). Raw strings stop here.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a name or value was refused. The offending input is not echoed when it may be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A site name that is not a lowercase DNS host name.
    #[error("invalid site name {input:?}: {reason}")]
    Site { input: String, reason: &'static str },
    /// An app name that is not a Python package name.
    #[error("invalid app name {input:?}: {reason}")]
    App { input: String, reason: &'static str },
    /// A user that is neither `Administrator` nor an email address under the one email rule
    /// (`tenancy::Email`); the reason is that rule's.
    #[error("invalid user email {input:?}: {reason}")]
    User { input: String, reason: String },
    /// A database name MariaDB and bench would not both accept.
    #[error("invalid database name {input:?}: {reason}")]
    DbName { input: String, reason: &'static str },
    /// A site_config key that is not `[a-z_][a-z0-9_]*`.
    #[error("invalid config key {input:?}: {reason}")]
    ConfigKey { input: String, reason: &'static str },
    /// A config value that cannot be rendered as a safe Python literal.
    #[error("invalid config value: {reason}")]
    ConfigValue { reason: &'static str },
    /// A person's first or last name with control characters or an unusable shape.
    #[error("invalid person name: {reason}")]
    PersonName { reason: &'static str },
    /// A dotted Python path for `bench execute` that is not `a.b.c` identifiers.
    #[error("invalid method path {input:?}: {reason}")]
    Method { input: String, reason: &'static str },
    /// A password or other secret that cannot travel in an argv (NUL, newline, empty).
    #[error("invalid secret: {reason}")]
    Secret { reason: &'static str },
    /// A `host_name` URL that is not `http(s)://host[:port]`.
    #[error("invalid host_name {input:?}: {reason}")]
    HostName { input: String, reason: &'static str },
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }
        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

/// A Frappe site name: a lowercase DNS host name such as `acme.tenantry.localhost`.
/// It is also a directory name under `sites/`, so `/`, `..` and leading dots are refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SiteName(String);
string_newtype!(SiteName);

impl SiteName {
    /// Parses a site name: labels of `a-z0-9-` (1–63 chars, no leading/trailing `-`) joined by
    /// dots, at most 253 characters.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let err = |reason| NameError::Site {
            input: input.chars().take(80).collect(),
            reason,
        };
        if input.is_empty() {
            return Err(err("empty"));
        }
        if input.len() > 253 {
            return Err(err("longer than 253 characters"));
        }
        if input.starts_with('.') || input.starts_with('-') {
            return Err(err("starts with '.' or '-'"));
        }
        if input.contains("..") {
            return Err(err("contains '..'"));
        }
        for label in input.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(err("each label must be 1-63 characters"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(err("a label starts or ends with '-'"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(err("only lowercase a-z, 0-9, '-' and '.' are allowed"));
            }
        }
        Ok(Self(input.to_owned()))
    }

    /// The backup-file stem bench derives from a site name (`a.b` → `a_b`).
    pub fn file_stem(&self) -> String {
        self.0.replace('.', "_")
    }
}

/// A Frappe app (Python package) name such as `erpnext`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppName(String);
string_newtype!(AppName);

impl AppName {
    /// Parses `[a-z][a-z0-9_]*`, at most 64 characters.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let err = |reason| NameError::App {
            input: input.chars().take(80).collect(),
            reason,
        };
        let mut bytes = input.bytes();
        match bytes.next() {
            None => return Err(err("empty")),
            Some(b) if !b.is_ascii_lowercase() => return Err(err("must start with a-z")),
            _ => {}
        }
        if input.len() > 64 {
            return Err(err("longer than 64 characters"));
        }
        if !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(err("only a-z, 0-9 and '_' are allowed"));
        }
        Ok(Self(input.to_owned()))
    }

    /// The framework app every site has.
    pub fn frappe() -> Self {
        Self("frappe".to_owned())
    }
}

/// A user's email address under the one email rule, [`tenancy::Email`]'s — the one the signup
/// gateway applies — so an owner accepted at signup always becomes a Frappe user: at most 140
/// characters, `[A-Za-z0-9._%+-]` before the `@` (no `-` first, a bench argv would read it as
/// an option; no dot at either end or two in a row), DNS labels after it ending in an
/// alphabetic TLD. Safe in an argv and in a Python string literal. The input is taken exactly
/// (never trimmed); the domain is lowercased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserEmail(String);
string_newtype!(UserEmail);

impl UserEmail {
    /// Parses a plain email address with [`tenancy::Email::parse_exact`].
    pub fn parse(input: &str) -> Result<Self, NameError> {
        tenancy::Email::parse_exact(input)
            .map(|email| Self(email.into_string()))
            .map_err(|e| NameError::User {
                input: input.chars().take(80).collect(),
                reason: e.to_string(),
            })
    }
}

/// A Frappe user id: the built-in `Administrator` or an email address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum UserId {
    /// The built-in administrator account every site has.
    Administrator,
    /// A regular user, named by email.
    Email(UserEmail),
}

impl UserId {
    /// `Administrator` or an email address.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        if input == "Administrator" {
            Ok(Self::Administrator)
        } else {
            UserEmail::parse(input).map(Self::Email)
        }
    }

    /// The user's document name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Administrator => "Administrator",
            Self::Email(e) => e.as_str(),
        }
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl From<UserEmail> for UserId {
    fn from(e: UserEmail) -> Self {
        Self::Email(e)
    }
}
impl TryFrom<String> for UserId {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::parse(&s)
    }
}
impl From<UserId> for String {
    fn from(u: UserId) -> String {
        u.as_str().to_owned()
    }
}

/// A MariaDB database name for `--db-name`: `[a-z_][a-z0-9_]*`, at most 64 characters
/// (the DB user gets the same name, and MariaDB user names are limited to 80).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DbName(String);
string_newtype!(DbName);

impl DbName {
    /// Parses `[a-z_][a-z0-9_]{0,63}`.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let err = |reason| NameError::DbName {
            input: input.chars().take(80).collect(),
            reason,
        };
        if !is_identifier(input, 64) {
            return Err(err(
                "must match [a-z_][a-z0-9_]* and be at most 64 characters",
            ));
        }
        Ok(Self(input.to_owned()))
    }
}

/// A `site_config.json` key: `[a-z_][a-z0-9_]*`, at most 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConfigKey(String);
string_newtype!(ConfigKey);

impl ConfigKey {
    /// Parses `[a-z_][a-z0-9_]*`.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        if !is_identifier(input, 100) {
            return Err(NameError::ConfigKey {
                input: input.chars().take(80).collect(),
                reason: "must match [a-z_][a-z0-9_]* and be at most 100 characters",
            });
        }
        Ok(Self(input.to_owned()))
    }
}

fn is_identifier(input: &str, max: usize) -> bool {
    let mut bytes = input.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b == b'_')
        && input.len() <= max
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A JSON value destined for `set-config --parse` or `execute --args`, both of which the real
/// bench evaluates as Python. [`PyLiteral::render`] turns it into a Python literal that
/// evaluates back to exactly the same value and can never be code.
#[derive(Debug, Clone, PartialEq)]
pub struct PyLiteral(String);

/// Deepest nesting accepted in a config value.
const MAX_DEPTH: usize = 16;
/// Longest rendered literal accepted (argv limits and common sense).
const MAX_LITERAL_LEN: usize = 64 * 1024;

impl PyLiteral {
    /// Renders `value` as an ASCII-only Python literal. Strings use double quotes with every
    /// non-printable or non-ASCII character escaped; negative numbers are parenthesised so the
    /// literal never starts with `-` (click would take it for an option).
    pub fn render(value: &Value) -> Result<Self, NameError> {
        let mut out = String::new();
        render_into(value, 0, &mut out)?;
        if out.len() > MAX_LITERAL_LEN {
            return Err(NameError::ConfigValue {
                reason: "rendered value is longer than 64 KiB",
            });
        }
        Ok(Self(out))
    }

    /// The literal text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PyLiteral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn render_into(value: &Value, depth: usize, out: &mut String) -> Result<(), NameError> {
    use std::fmt::Write as _;
    if depth > MAX_DEPTH {
        return Err(NameError::ConfigValue {
            reason: "nested deeper than 16 levels",
        });
    }
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => {
            let text = n.to_string();
            // serde_json numbers are finite; refuse anything Python would not read back.
            if !text
                .bytes()
                .all(|b| b.is_ascii_digit() || b"-+.eE".contains(&b))
            {
                return Err(NameError::ConfigValue {
                    reason: "number is not a plain literal",
                });
            }
            if text.starts_with('-') {
                let _ = write!(out, "({text})");
            } else {
                out.push_str(&text);
            }
        }
        Value::String(s) => render_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_into(item, depth + 1, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_str(k, out);
                out.push_str(": ");
                render_into(v, depth + 1, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn render_str(s: &str, out: &mut String) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
}

/// A person's first or last name: 1–140 characters, no control characters, not starting with
/// `-` (click would read it as an option).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PersonName(String);
string_newtype!(PersonName);

impl PersonName {
    /// Parses a display name.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let err = |reason| NameError::PersonName { reason };
        let trimmed = input.trim();
        if trimmed.is_empty() || trimmed.chars().count() > 140 {
            return Err(err("must be 1-140 characters"));
        }
        if trimmed.starts_with('-') {
            return Err(err("must not start with '-'"));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(err("must not contain control characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }
}

/// A dotted Python path for `bench execute`, e.g. `frappe.get_installed_apps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodPath(String);
string_newtype!(MethodPath);

impl MethodPath {
    /// Parses two or more Python identifiers joined by dots.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let ok = input.len() <= 200
            && input.split('.').count() >= 2
            && input.split('.').all(|part| {
                let mut b = part.bytes();
                matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
                    && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
            });
        if !ok {
            return Err(NameError::Method {
                input: input.chars().take(80).collect(),
                reason: "must be dotted Python identifiers",
            });
        }
        Ok(Self(input.to_owned()))
    }
}

/// The site's public base URL stored as `host_name`: `http(s)://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostUrl(String);
string_newtype!(HostUrl);

impl HostUrl {
    /// Parses `http://` or `https://` followed by a site name and an optional port.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let err = |reason| NameError::HostName {
            input: input.chars().take(120).collect(),
            reason,
        };
        let rest = input
            .strip_prefix("https://")
            .or_else(|| input.strip_prefix("http://"))
            .ok_or_else(|| err("must start with http:// or https://"))?;
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        SiteName::parse(host).map_err(|_| err("host is not a valid host name"))?;
        if let Some(p) = port
            && p.parse::<u16>().is_err()
        {
            return Err(err("port is not a number"));
        }
        Ok(Self(input.to_owned()))
    }

    /// `https://<site>`.
    pub fn https(site: &SiteName) -> Self {
        Self(format!("https://{site}"))
    }
}

/// Checks that a secret can travel in an argv: no NUL, no line breaks.
pub(crate) fn check_secret(secret: &str, allow_empty: bool) -> Result<(), NameError> {
    if !allow_empty && secret.is_empty() {
        return Err(NameError::Secret { reason: "empty" });
    }
    if secret.contains(['\0', '\n', '\r']) {
        return Err(NameError::Secret {
            reason: "contains NUL or a line break",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn site_names() {
        for ok in ["site1.localhost", "acme.tenantry.localhost", "a-b.c", "x"] {
            assert!(SiteName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "-rf",
            "a..b",
            "a/b",
            "../etc",
            "Acme.localhost",
            "a b",
            "a;rm -rf /",
            "a.-b",
            "a-.b",
            "a.",
            "$(id).x",
            "a\nb",
            &"a".repeat(64),
            &format!("{}.x", ["abc"; 70].join(".")),
        ] {
            assert!(SiteName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            SiteName::parse("site1.localhost").unwrap().file_stem(),
            "site1_localhost"
        );
    }

    #[test]
    fn app_names() {
        assert!(AppName::parse("erpnext").is_ok());
        assert!(AppName::parse("provtest_2").is_ok());
        for bad in [
            "", "2app", "ERPNext", "erp-next", "a b", "--force", "app;ls", "a.b", "../x",
        ] {
            assert!(AppName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_emails() {
        assert!(UserEmail::parse("prov.user@example.com").is_ok());
        assert!(UserEmail::parse("a+b@sub.example.co").is_ok());
        assert!(UserEmail::parse("a_b%c-d@x-y.example.io").is_ok());
        // The domain is lowercased, the local part kept as given.
        assert_eq!(
            UserEmail::parse("Jane.Doe@Example.COM").unwrap().as_str(),
            "Jane.Doe@example.com"
        );
        for bad in [
            "",
            "nobody",
            "a@b",
            "-x@example.com",
            "a\"b@example.com",
            "a'b@example.com",
            "o'brien@example.com",
            "a!b@example.com",
            "a{b}@example.com",
            "a/b@example.com",
            "a b@example.com",
            " a@example.com",
            "a@exa mple.com",
            "a@example.com\n",
            "a@-example.com",
            "a..b@example.com",
            "[a@example.com]",
            "a@example.c",
            "a@10.0.0.1",
            "undisclosed-recipients@example.com",
        ] {
            assert!(UserEmail::parse(bad).is_err(), "{bad:?}");
        }
        // Frappe keeps the user's name (the address) in a varchar(140).
        let at_limit = format!(
            "{}@{}.{}.com",
            "a".repeat(64),
            "b".repeat(40),
            "c".repeat(30)
        );
        assert_eq!(at_limit.len(), 140);
        assert!(UserEmail::parse(&at_limit).is_ok());
        assert!(UserEmail::parse(&format!("{at_limit}x")).is_err());
        assert_eq!(
            UserEmail::parse("o'brien@example.com")
                .unwrap_err()
                .to_string(),
            "invalid user email \"o'brien@example.com\": \
             may only hold letters, digits and . _ % + - before the '@'"
        );
        assert_eq!(
            UserId::parse("Administrator").unwrap(),
            UserId::Administrator
        );
        assert!(UserId::parse("administrator").is_err());
    }

    #[test]
    fn config_keys_and_db_names() {
        assert!(ConfigKey::parse("max_users").is_ok());
        assert!(ConfigKey::parse("_private").is_ok());
        for bad in ["", "Max", "1a", "a-b", "a b", "--global", "a.b"] {
            assert!(ConfigKey::parse(bad).is_err(), "{bad:?}");
            assert!(DbName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(DbName::parse("_71dd730ba6ca68e8").is_ok());
        assert!(DbName::parse("site3_db").is_ok());
        assert!(DbName::parse("a`; drop database x").is_err());
    }

    #[test]
    fn python_literals() {
        let lit = |v: Value| PyLiteral::render(&v).unwrap().0;
        assert_eq!(lit(json!(5)), "5");
        assert_eq!(lit(json!(-5)), "(-5)");
        assert_eq!(lit(json!(1.5)), "1.5");
        assert_eq!(lit(json!(null)), "None");
        assert_eq!(lit(json!(true)), "True");
        assert_eq!(lit(json!("rust-service")), "\"rust-service\"");
        assert_eq!(
            lit(json!({"a": 1, "b": [1, 2]})),
            "{\"a\": 1, \"b\": [1, 2]}"
        );
        assert_eq!(
            lit(json!("q\"\\\n\u{e9}\u{1F600}")),
            r#""q\"\\\x0a\xe9\U0001f600""#
        );
        // Python injection attempts stay inert strings.
        assert_eq!(
            lit(json!("__import__('os').system('id')")),
            "\"__import__('os').system('id')\""
        );
        assert_eq!(
            lit(json!("\" + __import__('os') + \"")),
            r#""\" + __import__('os') + \"""#
        );
        let mut deep = json!(1);
        for _ in 0..20 {
            deep = json!([deep]);
        }
        assert!(PyLiteral::render(&deep).is_err());
    }

    #[test]
    fn host_urls_and_people() {
        assert!(HostUrl::parse("https://acme.tenantry.localhost").is_ok());
        assert!(HostUrl::parse("http://a.localhost:8000").is_ok());
        assert!(HostUrl::parse("ftp://a.localhost").is_err());
        assert!(HostUrl::parse("https://a.localhost/../x").is_err());
        assert!(PersonName::parse("Prov").is_ok());
        assert!(PersonName::parse("José O'Neil").is_ok());
        assert!(PersonName::parse("--password").is_err());
        assert!(PersonName::parse("a\nb").is_err());
        assert!(MethodPath::parse("frappe.get_installed_apps").is_ok());
        assert!(MethodPath::parse("os.system('x')").is_err());
        assert!(check_secret("pw\n", false).is_err());
        assert!(check_secret("", true).is_ok());
        assert!(check_secret("", false).is_err());
    }

    proptest::proptest! {
        /// The one email rule: whatever signup's `tenancy::Email` accepts, the owner step's
        /// `UserEmail` accepts unchanged, and the result is argv- and literal-safe.
        #[test]
        fn signup_emails_are_user_emails(raw in proptest::prop_oneof![
            "\\PC{0,40}",
            "[a-zA-Z0-9._%+'!#{}-]{1,20}@[a-zA-Z0-9.-]{1,20}\\.[a-zA-Z0-9-]{1,6}",
            "[ ]?[a-zA-Z0-9._%+-]{1,64}@([a-zA-Z0-9-]{1,20}\\.){1,4}[a-zA-Z]{2,8}[ ]?",
        ]) {
            if let Ok(email) = tenancy::Email::parse(&raw) {
                let user = UserEmail::parse(email.as_str());
                proptest::prop_assert!(user.is_ok(), "{:?}: {:?}", email, user);
                let user = user.unwrap();
                proptest::prop_assert_eq!(user.as_str(), email.as_str());
                proptest::prop_assert!(!user.as_str().starts_with('-'));
                proptest::prop_assert!(user.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b"._%+-@".contains(&b)));
            }
        }

        #[test]
        fn parsed_site_names_are_argv_safe(s in "[a-z0-9.-]{1,40}") {
            if let Ok(site) = SiteName::parse(&s) {
                proptest::prop_assert!(!site.as_str().starts_with(['-', '.']));
                proptest::prop_assert!(!site.as_str().contains(".."));
            }
        }

        #[test]
        fn python_strings_are_ascii_and_quoted(s in "\\PC*") {
            let lit = PyLiteral::render(&Value::String(s)).unwrap();
            let text = lit.as_str();
            proptest::prop_assert!(text.is_ascii());
            proptest::prop_assert!(text.starts_with('"') && text.ends_with('"'));
            // Every inner quote is escaped: the literal is one string token.
            let inner = &text[1..text.len() - 1];
            let mut escaped = false;
            for c in inner.chars() {
                if escaped { escaped = false; continue; }
                if c == '\\' { escaped = true; continue; }
                proptest::prop_assert!(c != '"');
            }
        }
    }
}
