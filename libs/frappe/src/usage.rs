//! What a site uses, measured the way Frappe Cloud's agent does: the database's size from
//! MariaDB's `information_schema` (through `bench execute frappe.db.sql`, so the site's own
//! database user reads it and no root password is needed), the files from `du` over
//! `sites/<site>/public/files` and `sites/<site>/private/files`, and enabled users over REST.

use serde_json::Value;

use crate::bench::{Bench, BenchError, BenchOp};
use crate::names::{MethodPath, SiteName};
use crate::rest::{FrappeClient, RestError};

/// Sum of data and index lengths of the site's own schema. `CAST … AS UNSIGNED` makes
/// `frappe.db.sql` return an integer (a bare `SUM` is a Decimal, printed as a float).
pub const DATABASE_SIZE_SQL: &str = "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS UNSIGNED) FROM information_schema.tables WHERE table_schema = DATABASE()";

/// Users that are Frappe's own or Tenantry's, not the tenant's: they are never counted.
pub const UNCOUNTED_USERS: [&str; 2] = ["Administrator", "Guest"];

/// Bytes a site takes on its bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SiteFootprint {
    /// Data and indexes of its database.
    pub database_bytes: u64,
    /// Public and private files.
    pub files_bytes: u64,
}

/// Whole mebibytes, rounded up: a byte over a limit is over it.
pub fn mebibytes(bytes: u64) -> u64 {
    bytes.div_ceil(1024 * 1024)
}

impl Bench {
    /// The site's database and file sizes.
    pub async fn site_footprint(&self, site: &SiteName) -> Result<SiteFootprint, BenchError> {
        let method = MethodPath::parse("frappe.db.sql")?;
        let value = self
            .execute(site, &method, &[Value::String(DATABASE_SIZE_SQL.into())])
            .await?;
        let database_bytes =
            database_size(value.as_ref()).ok_or_else(|| BenchError::UnexpectedOutput {
                op: "database-size",
                detail: format!("expected [[<bytes>]], got {value:?}"),
            })?;
        let guard = self.guard(self.timeout_of(BenchOp::Other));
        let out = self
            .run_guarded_tool(
                "files-size",
                "du",
                vec![
                    "-s".into(),
                    "-k".into(),
                    "--".into(),
                    format!("sites/{site}/public/files").into(),
                    format!("sites/{site}/private/files").into(),
                ],
                &guard,
            )
            .await?;
        let files_bytes =
            files_size(&out.stdout, &out.stderr, out.exit_code).map_err(|detail| {
                BenchError::CommandFailed {
                    op: "files-size",
                    exit_code: out.exit_code,
                    detail,
                }
            })?;
        Ok(SiteFootprint {
            database_bytes,
            files_bytes,
        })
    }
}

/// `[[<bytes>]]` as printed by `execute frappe.db.sql`. The query always answers one row, so
/// nothing printed means the output was lost: not a size.
pub fn database_size(value: Option<&Value>) -> Option<u64> {
    let value = value?;
    let cell = value.get(0)?.get(0)?;
    match cell {
        Value::Null => Some(0),
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Sum of `du -s -k` lines (KiB) in bytes. A directory that is not there (a site that never
/// stored a private file) counts as empty; any other complaint is an error.
pub fn files_size(stdout: &str, stderr: &str, exit_code: Option<i32>) -> Result<u64, String> {
    let unexpected: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("No such file or directory"))
        .collect();
    if !unexpected.is_empty() || !matches!(exit_code, Some(0 | 1)) {
        return Err(unexpected.join("; ").chars().take(300).collect());
    }
    let mut kib: u64 = 0;
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let n = line
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| format!("unexpected du line {line:?}"))?;
        kib = kib.saturating_add(n);
    }
    Ok(kib.saturating_mul(1024))
}

impl FrappeClient {
    /// Enabled System Users, leaving out Frappe's own users and `also_uncounted` (Tenantry's
    /// automation user): what a plan's `max_users` limits.
    pub async fn count_enabled_users(&self, also_uncounted: &[&str]) -> Result<u32, RestError> {
        let filters = r#"[["enabled","=",1],["user_type","=","System User"]]"#;
        let names = self.list_names_where("User", filters).await?;
        let counted = names
            .iter()
            .filter(|n| {
                !UNCOUNTED_USERS.contains(&n.as_str()) && !also_uncounted.contains(&n.as_str())
            })
            .count();
        Ok(u32::try_from(counted).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn database_size_reads_what_execute_prints() {
        assert_eq!(database_size(Some(&json!([[1_589_248]]))), Some(1_589_248));
        assert_eq!(
            database_size(Some(&json!([[1_589_248.0]]))),
            Some(1_589_248)
        );
        assert_eq!(database_size(Some(&json!([[null]]))), Some(0));
        assert_eq!(
            database_size(None),
            None,
            "no output is not an empty database"
        );
        assert_eq!(database_size(Some(&json!({"x": 1}))), None);
        assert_eq!(database_size(Some(&json!([[-1]]))), None);
    }

    #[test]
    fn files_size_sums_du_and_tolerates_a_missing_directory() {
        let out = "120\tsites/a/public/files\n8\tsites/a/private/files\n";
        assert_eq!(files_size(out, "", Some(0)), Ok(128 * 1024));
        let missing = "du: cannot access 'sites/a/private/files': No such file or directory\n";
        assert_eq!(
            files_size("4\tsites/a/public/files\n", missing, Some(1)),
            Ok(4096)
        );
        assert!(files_size("", "du: Permission denied\n", Some(1)).is_err());
        assert!(files_size("x\ty\n", "", Some(0)).is_err());
    }

    #[test]
    fn mebibytes_round_up() {
        assert_eq!(mebibytes(0), 0);
        assert_eq!(mebibytes(1), 1);
        assert_eq!(mebibytes(1024 * 1024), 1);
        assert_eq!(mebibytes(1024 * 1024 + 1), 2);
    }
}
