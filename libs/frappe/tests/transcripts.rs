//! The parsers against the real bench transcripts in `tests/fixtures/frappe/` (frappe 15.44.2,
//! bench 5.31.1; copied into the repository so a clone alone passes). Every file there must be covered here: a new file fails
//! `every_fixture_file_is_covered` until a test reads it.

use std::path::PathBuf;

use frappe::parse::{self, BackupKind, GeneratedKeys, InstallOutcome, NewSiteFailure};
use frappe::rest::{self, RestError};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

fn fixtures_dir() -> PathBuf {
    std::env::var_os("FRAPPE_FIXTURES_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/frappe"),
        PathBuf::from,
    )
}

fn fixture(name: &str) -> String {
    let path = fixtures_dir().join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} missing: {e}", path.display()))
}

/// One `$ command` block of a `--- stdout / --- stderr / --- exit code` transcript.
#[derive(Debug)]
struct Block {
    command: String,
    stdout: String,
    stderr: String,
    exit_code: Option<i32>,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    enum Mode {
        None,
        Out,
        Err,
    }
    let mut mode = Mode::None;
    for line in text.lines() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            out.push(Block {
                command: cmd.to_owned(),
                stdout: String::new(),
                stderr: String::new(),
                exit_code: None,
            });
            mode = Mode::None;
            continue;
        }
        let Some(b) = out.last_mut() else { continue };
        if line.starts_with("--- stdout") {
            mode = Mode::Out;
        } else if let Some(rest) = line.split_once("--- stderr:") {
            // `cat` without a trailing newline puts the marker at the end of the last line.
            if !rest.0.is_empty() {
                b.stdout.push_str(rest.0);
                b.stdout.push('\n');
            }
            mode = Mode::Err;
        } else if let Some(rest) = line.strip_prefix("--- exit code: ") {
            b.exit_code = rest.split_whitespace().next().and_then(|c| c.parse().ok());
            mode = Mode::None;
        } else {
            match mode {
                // cat -A marks line ends with `$`.
                Mode::Out => {
                    b.stdout.push_str(line.strip_suffix('$').unwrap_or(line));
                    b.stdout.push('\n');
                }
                Mode::Err => {
                    b.stderr.push_str(line);
                    b.stderr.push('\n');
                }
                Mode::None => {}
            }
        }
    }
    out
}

fn block<'a>(blocks: &'a [Block], needle: &str, nth: usize) -> &'a Block {
    blocks
        .iter()
        .filter(|b| b.command.contains(needle))
        .nth(nth)
        .unwrap_or_else(|| panic!("no block #{nth} containing {needle:?}"))
}

/// `(status, headers-as-text, body)` of every raw HTTP response in a curl `-i` transcript.
fn http_responses(text: &str) -> Vec<(u16, String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("HTTP/1.1 ") else {
            continue;
        };
        let status: u16 = rest[..3].parse().unwrap();
        let mut headers = String::new();
        for h in lines.by_ref() {
            let h = h.trim_end_matches('\r');
            if h.is_empty() {
                break;
            }
            headers.push_str(h);
            headers.push('\n');
        }
        let body = lines.next().unwrap_or_default().to_owned();
        out.push((status, headers, body));
    }
    out
}

fn map_error(status: u16, body: &str) -> RestError {
    rest::error_from_response(
        StatusCode::from_u16(status).unwrap(),
        &HeaderMap::new(),
        body,
    )
}

#[test]
fn every_fixture_file_is_covered() {
    let covered = [
        "02-new-site-help.txt",
        "03-new-site.txt",
        "04-bench-execute-generate-keys.txt",
        "05-rest-create-user.txt",
        "06-rest-set-password-and-login.txt",
        "07-rest-generate-keys.txt",
        "08-set-config-and-maintenance.txt",
        "09-backup-with-files.txt",
        "10-multitenancy.txt",
        "12-install-app-and-list-apps.txt",
        "13-new-site-with-install-app.txt",
        "14-drop-site.txt",
        "15-new-site-error-cases.txt",
        "16-keys-work-immediately-probes.txt",
        "17-cli-user-commands.txt",
        "19-http-only-bootstrap-admin-login.txt",
    ];
    let mut present: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir tests/fixtures/frappe (or FRAPPE_FIXTURES_DIR)")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    present.sort();
    assert_eq!(
        present, covered,
        "a fixture file is not covered by these tests"
    );
}

/// Every option the runner passes must exist in the real `--help` of its subcommand.
fn assert_flags_in_help(help: &str, command: &str) {
    let used = frappe::bench::FLAGS_USED
        .iter()
        .find(|(c, _)| *c == command)
        .map(|(_, f)| *f)
        .unwrap();
    for flag in used {
        assert!(
            help.lines()
                .any(|l| l.trim_start().split([',', ' ']).any(|w| w == *flag)),
            "{command}: {flag} not in the real --help"
        );
    }
}

#[test]
fn t02_new_site_help_has_every_flag_we_use() {
    assert_flags_in_help(&fixture("02-new-site-help.txt"), "new-site");
}

#[test]
fn t03_successful_new_site_is_not_mistaken_for_a_failure() {
    let text = fixture("03-new-site.txt");
    assert!(text.contains("Warning: MariaDB version"));
    assert_eq!(
        parse::new_site_failure(&text, ""),
        NewSiteFailure::Other(None)
    );
    assert!(parse::last_exception(&text).is_none());
}

#[test]
fn t04_execute_outputs() {
    let bs = blocks(&fixture("04-bench-execute-generate-keys.txt"));
    let keys: GeneratedKeys = serde_json::from_value(
        parse::execute_result(&block(&bs, "generate_keys --args [\"Admin", 0).stdout)
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        keys,
        GeneratedKeys {
            api_key: None,
            api_secret: "989f25f3b038b19".into()
        }
    );
    let keys: GeneratedKeys = serde_json::from_value(
        parse::execute_result(&block(&bs, "--kwargs {\"user\"", 0).stdout)
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(keys.api_secret, "debd6831c262814");
    let key = parse::execute_result(
        &block(&bs, "get_value --args [\"User\", \"Administrator\"", 0).stdout,
    )
    .unwrap();
    assert_eq!(key, Some(json!("f6467e66b490452")));
    let pair = parse::execute_result(&block(&bs, "[\"api_key\", \"name\"]", 0).stdout).unwrap();
    assert_eq!(
        pair,
        Some(json!(["cfe68323d24ea34", "prov.user@example.com"]))
    );
    let dict = parse::execute_result(&block(&bs, "\"as_dict\": True", 0).stdout).unwrap();
    assert_eq!(dict, Some(json!({"api_key": "cfe68323d24ea34"})));
    let unknown_user = block(&bs, "[\"nobody@example.com\"]", 0);
    assert_eq!(unknown_user.exit_code, Some(1));
    assert_eq!(parse::execute_result(&unknown_user.stdout).unwrap(), None);
    assert_eq!(
        parse::last_exception(&unknown_user.stderr).as_deref(),
        Some("frappe.exceptions.DoesNotExistError: User nobody@example.com not found")
    );
    let unknown_site = block(&bs, "nosuch.localhost", 0);
    assert_eq!(unknown_site.exit_code, Some(1));
    assert!(parse::site_does_not_exist(&unknown_site.stdout));
}

#[test]
fn t05_rest_create_user_response() {
    let text = fixture("05-rest-create-user.txt");
    let request: Value = serde_json::from_str(
        text.split(" -d '")
            .nth(1)
            .unwrap()
            .split('\'')
            .next()
            .unwrap(),
    )
    .unwrap();
    // The body our client sends has exactly the fields of the recorded request.
    let mut keys: Vec<&str> = request
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "email",
            "first_name",
            "last_name",
            "roles",
            "send_welcome_email",
            "user_type"
        ]
    );
    let (status, headers, body) = &http_responses(&text)[0];
    assert_eq!(*status, 200);
    assert!(headers.contains("Set-Cookie: sid=Guest"));
    let data = &serde_json::from_str::<Value>(body).unwrap()["data"];
    assert_eq!(data["name"], json!("prov.user@example.com"));
    assert_eq!(data["roles"][0]["role"], json!("System Manager"));
}

#[test]
fn t06_login_cookie_and_wrong_password() {
    let text = fixture("06-rest-set-password-and-login.txt");
    let responses = http_responses(&text);
    let (status, headers, body) = responses
        .iter()
        .find(|r| r.2.contains("Logged In"))
        .unwrap();
    assert_eq!(*status, 200);
    let sid = headers
        .lines()
        .filter_map(|l| l.strip_prefix("Set-Cookie: sid="))
        .map(|v| v.split(';').next().unwrap())
        .next()
        .unwrap();
    assert_eq!(
        sid,
        "47169c4fc424489430d2a5e705c3be608f0eaae422f095084beb7cd3"
    );
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap()["full_name"],
        json!("Prov User")
    );
    let (status, _, body) = responses.iter().find(|r| r.0 == 401).unwrap();
    let err = map_error(*status, body);
    assert!(
        matches!(err, RestError::Unauthorized(ref m) if m == "Invalid login credentials"),
        "{err:?}"
    );
    assert!(!err.to_string().contains("Traceback"));
}

#[test]
fn t07_generate_keys_over_rest_and_auth_errors() {
    let text = fixture("07-rest-generate-keys.txt");
    let responses = http_responses(&text);
    let (status, _, body) = &responses[0];
    let err = map_error(*status, body);
    assert!(
        matches!(err, RestError::Forbidden(ref m) if m.contains("Not permitted")),
        "{err:?}"
    );
    let (status, _, body) = &responses[1];
    assert_eq!(*status, 200);
    let msg = serde_json::from_str::<Value>(body).unwrap()["message"].clone();
    let keys: GeneratedKeys = serde_json::from_value(msg).unwrap();
    assert_eq!(keys.api_secret, "437f23d8493d463");
    // "no auth" on a non-guest method → 403 with a "not whitelisted" message, tags stripped.
    let no_auth = text
        .lines()
        .find_map(|l| l.strip_prefix("no auth: "))
        .unwrap();
    let body = no_auth.rsplit_once(" HTTP ").unwrap().0;
    let err = map_error(403, body);
    match err {
        RestError::Forbidden(m) => {
            assert!(
                m.contains("You are not permitted to access this resource."),
                "{m}"
            );
            assert!(!m.contains('<') && !m.contains("Traceback"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(text.contains("old secret: HTTP 401"));
    assert!(matches!(map_error(401, ""), RestError::Unauthorized(_)));
}

#[test]
fn t08_set_config_maintenance() {
    let text = fixture("08-set-config-and-maintenance.txt");
    let bs = blocks(&text);
    assert_flags_in_help(&block(&bs, "set-config --help", 0).stdout, "set-config");
    assert_eq!(block(&bs, "\"b\":[1 2] --parse", 0).exit_code, Some(2));
    assert_eq!(block(&bs, "set-config max_users 5 --parse", 0).stdout, "");
    let config = parse::site_config(
        block(&bs, "cat sites/site1.localhost/site_config.json", 0)
            .stdout
            .trim(),
    )
    .unwrap();
    assert_eq!(config["max_users"], json!(5));
    assert_eq!(config["provisioned_by"], json!("rust-service"));
    let on = parse::site_config(
        block(&bs, "cat sites/site1.localhost/site_config.json", 1)
            .stdout
            .trim(),
    )
    .unwrap();
    assert_eq!(on["maintenance_mode"], json!(1));
    // A literal our renderer emits for that dict is exactly what the transcript passed.
    let lit = frappe::PyLiteral::render(&json!({"a": 1, "b": [1, 2]})).unwrap();
    assert!(text.contains(&format!("set-config feature_flags {lit} --parse")));
    let stopped = text
        .lines()
        .find_map(|l| l.strip_prefix("token-auth get_logged_user: "))
        .unwrap();
    assert!(stopped.ends_with("HTTP 503"));
    assert!(matches!(
        map_error(503, "{\"exc_type\": \"SessionStopped\"}"),
        RestError::Unavailable(_)
    ));
}

#[test]
fn t09_backup_summary() {
    let bs = blocks(&fixture("09-backup-with-files.txt"));
    assert_flags_in_help(&block(&bs, "backup --help", 0).stdout, "backup");
    let summary = parse::backup_summary(&block(&bs, "backup --with-files", 0).stdout).unwrap();
    assert_eq!(summary.site, "site1.localhost");
    assert_eq!(summary.taken_at, "2026-11-23 01:11:34.431089");
    let kinds: Vec<BackupKind> = summary.files.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            BackupKind::Config,
            BackupKind::Database,
            BackupKind::Public,
            BackupKind::Private
        ]
    );
    assert_eq!(
        summary.files[1].path,
        "site1.localhost/private/backups/20261123_011133-site1_localhost-database.sql.gz"
    );
    // Sizes agree with `find -printf %s` in the same transcript to within bench's rounding.
    let find = &block(&bs, "find sites/site1.localhost", 0).stdout;
    for f in &summary.files {
        let real: u64 = find
            .lines()
            .find(|l| l.ends_with(f.path.rsplit('/').next().unwrap()))
            .and_then(|l| l.split(['\t', '^']).next()?.parse().ok())
            .unwrap();
        assert!(
            real.abs_diff(f.size_bytes) <= 60,
            "{}: {} vs {}",
            f.path,
            real,
            f.size_bytes
        );
    }
}

#[test]
fn t10_unknown_site_is_a_404_page() {
    let text = fixture("10-multitenancy.txt");
    let pages: Vec<&str> = text.split("<!doctype html>").skip(1).collect();
    assert!(!pages.is_empty());
    for page in pages {
        let html = format!("<!doctype html>{}", page.split("  => HTTP").next().unwrap());
        let err = map_error(404, &html);
        assert!(
            matches!(err, RestError::SiteNotFound(ref s) if s == "unknown.localhost" || s == "127.0.0.1"),
            "{err:?}"
        );
    }
    // A key from site1 on site2 → 401.
    assert!(text.contains("raise frappe.AuthenticationError"));
}

#[test]
fn t12_install_app_and_list_apps() {
    let bs = blocks(&fixture("12-install-app-and-list-apps.txt"));
    assert_flags_in_help(&block(&bs, "install-app --help", 0).stdout, "install-app");
    assert_eq!(
        parse::list_apps(&block(&bs, "list-apps", 0).stdout),
        ["frappe"]
    );
    let first = block(&bs, "install-app provtest", 0);
    assert_eq!(
        parse::install_outcome(&first.stdout, "provtest"),
        InstallOutcome::Installed
    );
    let again = block(&bs, "install-app provtest", 1);
    assert_eq!(again.exit_code, Some(0));
    assert_eq!(
        parse::install_outcome(&again.stdout, "provtest"),
        InstallOutcome::AlreadyInstalled
    );
    let missing = block(&bs, "install-app nosuchapp", 0);
    assert_eq!(missing.exit_code, Some(1));
    assert_eq!(
        parse::app_not_found(&missing.stdout).as_deref(),
        Some("nosuchapp")
    );
    let apps =
        parse::execute_result(&block(&bs, "execute frappe.get_installed_apps", 0).stdout).unwrap();
    assert_eq!(apps, Some(json!(["frappe", "provtest"])));
}

#[test]
fn t13_new_site_with_install_app_and_db_name() {
    let bs = blocks(&fixture("13-new-site-with-install-app.txt"));
    let create = block(&bs, "new-site site3.localhost", 0);
    assert_eq!(create.exit_code, Some(0));
    assert!(
        create.command.contains("--db-name site3_db")
            && create.command.contains("--install-app provtest")
    );
    let config =
        parse::site_config(block(&bs, "cat sites/site3.localhost", 0).stdout.trim()).unwrap();
    assert_eq!(config["db_name"], json!("site3_db"));
    assert!(frappe::DbName::parse("site3_db").is_ok());
    // What the provisioner reads to prove whose a site is: the database name, no marker yet,
    // and never the database password.
    let owner =
        parse::site_ownership(block(&bs, "cat sites/site3.localhost", 0).stdout.trim()).unwrap();
    assert_eq!(owner.db_name.as_deref(), Some("site3_db"));
    assert_eq!(owner.tenant_id, None);
    assert!(!format!("{owner:?}").contains("db_password"));
    assert!(parse::site_ownership("not json").is_err());
    assert_eq!(
        parse::list_apps(&block(&bs, "list-apps", 0).stdout),
        ["frappe", "provtest"]
    );
}

#[test]
fn t14_drop_site() {
    let bs = blocks(&fixture("14-drop-site.txt"));
    assert_flags_in_help(&block(&bs, "drop-site --help", 0).stdout, "drop-site");
    let dropped = block(&bs, "drop-site site3.localhost", 0);
    assert_eq!(dropped.exit_code, Some(0));
    assert_eq!(
        parse::archive_dir(&dropped.stdout).as_deref(),
        Some("/home/frappe/frappe-bench/archived/sites")
    );
    let summary = parse::backup_summary(&dropped.stdout).unwrap();
    assert_eq!(summary.files.len(), 4);
    assert_eq!(summary.files[0].size_bytes, 85);
    let again = block(&bs, "drop-site site3.localhost", 1);
    assert_eq!(again.exit_code, Some(1));
    assert!(parse::incorrect_site_path(&again.stderr));
    let no_backup = block(&bs, "--no-backup", 0);
    assert!(parse::backup_summary(&no_backup.stdout).is_none());
    assert!(parse::archive_dir(&no_backup.stdout).is_some());
}

#[test]
fn t15_new_site_error_cases() {
    let bs = blocks(&fixture("15-new-site-error-cases.txt"));
    let exists = block(&bs, "new-site site1.localhost", 0);
    assert_eq!(exists.exit_code, Some(1));
    assert_eq!(
        parse::new_site_failure(&exists.stdout, &exists.stderr),
        NewSiteFailure::SiteExists
    );
    let denied = block(&bs, "--db-root-password WRONG", 0);
    assert_eq!(
        parse::new_site_failure(&denied.stdout, &denied.stderr),
        NewSiteFailure::AccessDenied
    );
    let dup = block(&bs, "--db-name site2_db", 0);
    assert_eq!(
        parse::new_site_failure(&dup.stdout, &dup.stderr),
        NewSiteFailure::DatabaseExists("site2_db".into())
    );
    // The failed attempts left their directories behind.
    assert!(
        block(&bs, "ls sites", 0)
            .stdout
            .lines()
            .any(|l| l == "bad-rootpw.localhost")
    );
    assert!(
        block(&bs, "ls sites", 1)
            .stdout
            .lines()
            .any(|l| l == "dupdb.localhost")
    );
    let retry = block(&bs, "--force", 0);
    assert_eq!(retry.exit_code, Some(0));
}

#[test]
fn t16_keys_work_immediately() {
    let text = fixture("16-keys-work-immediately-probes.txt");
    let mut secrets = 0;
    for line in text.lines() {
        if let Some(rest) = line.split("stdout='").nth(1) {
            let json_text = rest.split("\\n'").next().unwrap();
            let keys: GeneratedKeys = serde_json::from_str(json_text).unwrap();
            assert_eq!(keys.api_secret.len(), 15);
            assert!(keys.api_secret.bytes().all(|b| b.is_ascii_hexdigit()));
            secrets += 1;
        }
    }
    assert_eq!(secrets, 3);
    // Every probe after generation answered 200: no warm-up exists.
    let statuses: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("HTTP ").nth(1))
        .map(|rest| &rest[..rest.len().min(3)])
        .filter(|code| code.bytes().all(|b| b.is_ascii_digit()) && code.len() == 3)
        .collect();
    assert!(statuses.len() >= 15);
    assert!(statuses.iter().all(|c| *c == "200"), "{statuses:?}");
}

#[test]
fn t17_cli_user_commands() {
    let bs = blocks(&fixture("17-cli-user-commands.txt"));
    assert_flags_in_help(
        &block(&bs, "add-system-manager --help", 0).stdout,
        "add-system-manager",
    );
    let ok = block(&bs, "--last-name User --password", 0);
    assert_eq!(ok.exit_code, Some(0));
    let dup = block(&bs, "Other-Pass-2024!x", 0);
    assert_eq!(dup.exit_code, Some(1));
    assert!(
        parse::last_exception(&dup.stderr)
            .unwrap()
            .starts_with("frappe.exceptions.DuplicateEntryError")
    );
    // Unquoted --args become one raw string: the quoting pitfall our PyLiteral avoids.
    let unquoted = block(&bs, "--args [cli.user@example.com]", 0);
    assert!(
        parse::last_exception(&unquoted.stderr)
            .unwrap()
            .contains("User [cli.user@example.com] not found")
    );
    let lit = frappe::PyLiteral::render(&json!(["cli.user@example.com"])).unwrap();
    assert!(
        bs.iter()
            .any(|b| b.command.ends_with(&format!("--args {lit}")) && b.exit_code == Some(0))
    );
    assert_eq!(block(&bs, "set-password cli.user", 0).exit_code, Some(0));
}

#[test]
fn t19_http_only_bootstrap() {
    let text = fixture("19-http-only-bootstrap-admin-login.txt");
    let line = text
        .lines()
        .find(|l| l.starts_with("{\"message\":{\"api_secret\""))
        .unwrap();
    let body = line.rsplit_once(" HTTP").unwrap().0;
    let keys: GeneratedKeys =
        serde_json::from_value(serde_json::from_str::<Value>(body).unwrap()["message"].clone())
            .unwrap();
    assert_eq!(keys.api_secret, "28d4ba9041a5421");
    assert!(
        text.contains("Basic auth with Administrator:admin123 (password, not key) -> HTTP 401")
    );
}
