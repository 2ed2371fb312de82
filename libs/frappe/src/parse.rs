//! Parsers for what a real bench prints (frappe 15.44, bench CLI 5.31), written against the
//! transcripts in `tests/fixtures/frappe/`. Exit codes are the truth; these only extract
//! details (paths, sizes, which error) from the text around them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One file of a backup, as listed in bench's "Backup Summary".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupFile {
    /// Which part of the site this file holds.
    pub kind: BackupKind,
    /// Path relative to the bench's `sites/` directory, e.g.
    /// `site1.localhost/private/backups/20261123_011133-site1_localhost-database.sql.gz`.
    pub path: String,
    /// Size in bytes as bench printed it (rounded to 0.1 of its unit).
    pub size_bytes: u64,
}

/// The four parts of a bench backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupKind {
    /// `site_config.json` (includes `encryption_key`).
    Config,
    /// The SQL dump (`.sql.gz`).
    Database,
    /// `public/files` as a tar.
    Public,
    /// `private/files` as a tar.
    Private,
}

/// A parsed "Backup Summary for …" block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupSummary {
    /// The site backed up.
    pub site: String,
    /// The timestamp bench printed (site time zone, no offset), e.g. `2026-11-23 01:11:34.431089`.
    pub taken_at: String,
    /// The files, in the order printed.
    pub files: Vec<BackupFile>,
}

/// Parses the first "Backup Summary" block in `stdout`.
pub fn backup_summary(stdout: &str) -> Option<BackupSummary> {
    let mut lines = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Backup Summary for "));
    let head = lines.next()?.strip_prefix("Backup Summary for ")?;
    let (site, taken_at) = head.split_once(" at ")?;
    let mut files = Vec::new();
    for line in lines {
        let Some((title, rest)) = line.split_once(':') else {
            break;
        };
        let kind = match title.trim() {
            "Config" => BackupKind::Config,
            "Database" => BackupKind::Database,
            "Public" => BackupKind::Public,
            "Private" => BackupKind::Private,
            _ => break,
        };
        let mut words = rest.split_whitespace();
        let path = words.next()?;
        let size = parse_size(words.next()?)?;
        files.push(BackupFile {
            kind,
            path: path.trim_start_matches("./").to_owned(),
            size_bytes: size,
        });
    }
    Some(BackupSummary {
        site: site.to_owned(),
        taken_at: taken_at.trim().to_owned(),
        files,
    })
}

/// Parses bench's human sizes: `331.0B`, `215.6KiB`, `1.2MiB`, `3.0GiB`.
pub fn parse_size(text: &str) -> Option<u64> {
    let units: [(&str, f64); 5] = [
        ("TiB", 1024f64.powi(4)),
        ("GiB", 1024f64.powi(3)),
        ("MiB", 1024f64.powi(2)),
        ("KiB", 1024.0),
        ("B", 1.0),
    ];
    for (suffix, factor) in units {
        if let Some(num) = text.strip_suffix(suffix) {
            let n: f64 = num.parse().ok()?;
            if !n.is_finite() || n < 0.0 {
                return None;
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            return Some((n * factor).round() as u64);
        }
    }
    None
}

/// Why `bench new-site` failed, as far as its output tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewSiteFailure {
    /// `Site X already exists` (stdout).
    SiteExists,
    /// MariaDB refused the root credentials (`(1045, "Access denied …")`).
    AccessDenied,
    /// `Exception: Database X already exists`.
    DatabaseExists(String),
    /// `--install-app` named an app the bench does not have.
    AppNotFound(String),
    /// bench asked for a password on stdin (an empty `--db-root-password=` counts as none)
    /// and, stdin being closed, printed `Aborted!`.
    PromptedAndAborted,
    /// Anything else: the last exception line, if any.
    Other(Option<String>),
}

/// Classifies a failed new-site from its stdout and stderr.
pub fn new_site_failure(stdout: &str, stderr: &str) -> NewSiteFailure {
    if stdout
        .lines()
        .any(|l| l.starts_with("Site ") && l.trim_end().ends_with(" already exists"))
    {
        return NewSiteFailure::SiteExists;
    }
    if access_denied(stderr) || access_denied(stdout) {
        return NewSiteFailure::AccessDenied;
    }
    if let Some(db) = stderr.lines().find_map(|l| {
        l.strip_prefix("Exception: Database ")?
            .strip_suffix(" already exists")
    }) {
        return NewSiteFailure::DatabaseExists(db.to_owned());
    }
    if let Some(app) = app_not_found(stdout).or_else(|| app_not_found(stderr)) {
        return NewSiteFailure::AppNotFound(app);
    }
    if stdout.contains("password:") && (stderr.contains("Aborted!") || stdout.contains("Aborted!"))
    {
        return NewSiteFailure::PromptedAndAborted;
    }
    NewSiteFailure::Other(last_exception(stderr).or_else(|| last_exception(stdout)))
}

/// True when the output holds MariaDB's "Access denied" (error 1045).
pub fn access_denied(text: &str) -> bool {
    text.lines()
        .any(|l| l.contains("(1045, \"Access denied") || l.contains("(1045, 'Access denied"))
}

/// The app named by `Could not find app "X"`, if present.
pub fn app_not_found(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("Could not find app \"")?;
        Some(rest.split('"').next()?.to_owned())
    })
}

/// What `install-app` reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallOutcome {
    /// The app was installed by this call.
    Installed,
    /// `App X already installed` (exit 0): nothing was done.
    AlreadyInstalled,
}

/// Reads a successful install-app's stdout.
pub fn install_outcome(stdout: &str, app: &str) -> InstallOutcome {
    let marker = format!("App {app} already installed");
    if stdout.lines().any(|l| l.trim_end() == marker) {
        InstallOutcome::AlreadyInstalled
    } else {
        InstallOutcome::Installed
    }
}

/// True when a `--site S` command answered `Site S does not exist!`.
pub fn site_does_not_exist(stdout: &str) -> bool {
    stdout
        .lines()
        .any(|l| l.starts_with("Site ") && l.trim_end().ends_with(" does not exist!"))
}

/// True when drop-site (or anything that calls `frappe.init`) found no such site.
pub fn incorrect_site_path(stderr: &str) -> bool {
    stderr
        .lines()
        .any(|l| l.starts_with("frappe.exceptions.IncorrectSitePath"))
}

/// The archive directory named by drop-site's `Moving site to archive under <dir>`.
pub fn archive_dir(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Moving site to archive under "))
        .map(|s| s.trim().to_owned())
}

/// The last `module.Error: message` line of a Python traceback (or of bench's "Traceback with
/// variables" dumps), which is the only part worth showing to an operator.
pub fn last_exception(text: &str) -> Option<String> {
    text.lines().rev().map(str::trim_end).find_map(|l| {
        if l.starts_with(' ') || l.is_empty() {
            return None;
        }
        let (head, _) = l.split_once(": ").unwrap_or((l, ""));
        let looks_like_exc = !head.contains(' ')
            && head.rsplit('.').next().is_some_and(|n| {
                n.ends_with("Error")
                    || n.ends_with("Exception")
                    || n == "Exception"
                    || n.ends_with("Path")
            });
        looks_like_exc.then(|| l.to_owned())
    })
}

/// The value printed by `bench execute`: the last non-empty stdout line as JSON. `None` when
/// the method returned something falsy (bench then prints nothing at all).
pub fn execute_result(stdout: &str) -> Result<Option<Value>, serde_json::Error> {
    match stdout.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
        None => Ok(None),
        Some(line) => serde_json::from_str(line).map(Some),
    }
}

/// Keys as returned by `generate_keys`: frappe 15.44 returns only the secret; newer 15.x
/// also return `api_key`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct GeneratedKeys {
    /// Present on newer frappe versions only.
    #[serde(default)]
    pub api_key: Option<String>,
    /// The new secret (every call rotates it).
    pub api_secret: String,
}

impl std::fmt::Debug for GeneratedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKeys")
            .field("api_key", &self.api_key)
            .field("api_secret", &"[REDACTED]")
            .finish()
    }
}

/// The app names of plain `bench --site S list-apps` output (blank lines ignored; newer
/// versions append version/branch columns, which are dropped).
pub fn list_apps(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Frappe's site_config.json after `bench set-config`: values written as JSON.
pub fn site_config(text: &str) -> Result<serde_json::Map<String, Value>, serde_json::Error> {
    serde_json::from_str(text)
}

/// Whose a site is, from its `site_config.json`: `db_name` and Tenantry's markers. Nothing else
/// is kept (the file holds the database password).
pub fn site_ownership(text: &str) -> Result<crate::inspect::SiteConfig, String> {
    let map =
        site_config(text).map_err(|e| format!("site_config.json is not a JSON object: {e}"))?;
    Ok(crate::inspect::SiteConfig::from_map(&map))
}

/// The `key` of a `…/frappe.www.login.login_via_key?key=<key>` link: hex, 16 to 128
/// characters (`frappe.generate_hash()` gives 56), else `None`.
pub fn login_key(link: &str) -> Option<String> {
    let (path, query) = link.split_once('?')?;
    if !path.ends_with("/api/method/frappe.www.login.login_via_key") {
        return None;
    }
    let key = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))?;
    ((16..=128).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| key.to_owned())
}

#[cfg(test)]
mod login_key_tests {
    use super::login_key;

    #[test]
    fn the_key_of_a_login_link_is_hex_and_nothing_else() {
        let key = "a".repeat(56);
        assert_eq!(
            login_key(&format!(
                "https://acme.example/api/method/frappe.www.login.login_via_key?key={key}"
            )),
            Some(key.clone())
        );
        for bad in [
            format!("https://acme.example/api/method/other?key={key}"),
            "https://acme.example/api/method/frappe.www.login.login_via_key?key=abc".to_owned(),
            format!("https://acme.example/api/method/frappe.www.login.login_via_key?key={key}x"),
            "https://acme.example/api/method/frappe.www.login.login_via_key".to_owned(),
            format!("https://a/api/method/frappe.www.login.login_via_key?key={key}%26x=1"),
        ] {
            assert_eq!(login_key(&bad), None, "{bad}");
        }
    }
}
