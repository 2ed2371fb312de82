//! Typed bench operations on top of the runner.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::Instrument as _;

use crate::names::{
    AppName, ConfigKey, DbName, HostUrl, MethodPath, NameError, PersonName, PyLiteral, SiteName,
    UserEmail, UserId, check_secret,
};
use crate::parse::{self, BackupSummary, InstallOutcome, NewSiteFailure};
use crate::runner::{
    self, Arg, CommandOutput, Guard, Invocation, LOCK_BUSY_EXIT, RunError, RunnerConfig,
    TIMEOUT_EXITS,
};

/// Every bench option the runner passes, per subcommand. The transcript tests check each one
/// against the real `--help` output; a unit test checks the builders use nothing else.
pub const FLAGS_USED: &[(&str, &[&str])] = &[
    (
        "new-site",
        &[
            "--admin-password",
            "--db-root-password",
            "--db-root-username",
            "--db-name",
            "--install-app",
            "--no-mariadb-socket",
            "--force",
        ],
    ),
    ("install-app", &[]),
    ("set-config", &["--parse"]),
    ("backup", &["--with-files"]),
    (
        "drop-site",
        &[
            "--db-root-username",
            "--db-root-password",
            "--no-backup",
            "--force",
        ],
    ),
    (
        "add-system-manager",
        &["--first-name", "--last-name", "--password"],
    ),
];

/// Errors of bench operations. Messages never contain a password or secret: argv are redacted
/// and captured output is scrubbed of every secret passed in.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A name or value was refused before any command ran.
    #[error(transparent)]
    InvalidInput(#[from] NameError),
    /// `new-site` for a site whose directory already exists.
    #[error("site {0} already exists")]
    SiteExists(SiteName),
    /// The site does not exist on this bench.
    #[error("site {0} does not exist")]
    SiteNotFound(SiteName),
    /// MariaDB refused the root credentials.
    #[error("database root access denied")]
    AccessDenied,
    /// The MariaDB root (or admin) password is empty: new-site would prompt for it and abort.
    #[error(
        "the bench's database root password is empty; new-site cannot run without one (set the bench's db_root_password_ref to a MariaDB root or admin user's password)"
    )]
    RootPasswordMissing,
    /// `--db-name` names a database that already exists.
    #[error("database {0} already exists")]
    DatabaseExists(String),
    /// The bench has no such app.
    #[error("app {0} is not available on this bench")]
    AppNotFound(String),
    /// The user does not exist on the site.
    #[error("user {0} not found")]
    UserNotFound(String),
    /// The user already exists on the site.
    #[error("user {0} already exists")]
    UserExists(String),
    /// Another command holds the site's lock on the bench host (a create, drop or rename of the
    /// same site is still running, perhaps started by an instance that is gone).
    #[error(
        "{op}: another command is working on site {site} on the bench host; try again once it has finished"
    )]
    Busy {
        /// The operation.
        op: &'static str,
        /// The locked site.
        site: String,
    },
    /// The command did not finish within its timeout and was killed.
    #[error("{op} timed out after {after:?}")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// The bench program (or docker/ssh) could not be started.
    #[error("{op}: could not start {program}: {source}")]
    Spawn {
        /// The operation.
        op: &'static str,
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file on the bench host could not be read or written by this process (the config
    /// editor's in-place path).
    #[error("{op}: {}: {source}", path.display())]
    Filesystem {
        /// The operation.
        op: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The command failed for another reason.
    #[error("{op} failed (exit {exit_code:?}): {detail}")]
    CommandFailed {
        /// The operation.
        op: &'static str,
        /// Exit code, `None` if killed by a signal.
        exit_code: Option<i32>,
        /// The last exception line or the tail of stderr/stdout (secrets scrubbed).
        detail: String,
    },
    /// The command succeeded but printed something we cannot read.
    #[error("{op}: unexpected output: {detail}")]
    UnexpectedOutput {
        /// The operation.
        op: &'static str,
        /// What was wrong (secrets scrubbed).
        detail: String,
    },
}

impl BenchError {
    /// True for failures worth retrying with back-off (timeouts, unclassified failures).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. }
                | Self::CommandFailed { .. }
                | Self::Spawn { .. }
                | Self::Busy { .. }
        )
    }
}

/// Per-operation timeouts. Defaults are generous multiples of the real bench's timings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BenchTimeouts {
    /// `new-site` (≈ 20 s on a real bench, longer with apps).
    #[serde(with = "secs")]
    pub new_site: Duration,
    /// `install-app` (seconds for small apps, minutes for erpnext).
    #[serde(with = "secs")]
    pub install_app: Duration,
    /// `backup` and `drop-site` (which backs up first).
    #[serde(with = "secs")]
    pub backup: Duration,
    /// Everything else (`execute`, `set-config`, user commands, …; ≈ 0.3–2 s).
    #[serde(with = "secs")]
    pub default: Duration,
    /// Between the TERM a command gets at its limit and the KILL that follows.
    #[serde(with = "secs")]
    pub kill_grace: Duration,
}

impl Default for BenchTimeouts {
    fn default() -> Self {
        Self {
            new_site: Duration::from_secs(300),
            install_app: Duration::from_secs(900),
            backup: Duration::from_secs(600),
            default: Duration::from_secs(60),
            kill_grace: crate::runner::KILL_GRACE,
        }
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// Kinds of bench command, for their time limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchOp {
    /// `new-site`.
    NewSite,
    /// `install-app`.
    InstallApp,
    /// `backup`.
    Backup,
    /// `drop-site`.
    DropSite,
    /// Everything else.
    Other,
}

/// MariaDB root credentials for `new-site` and `drop-site`.
#[derive(Clone)]
pub struct DbRoot {
    /// Root user name (`root` unless the bench says otherwise).
    pub username: String,
    /// Root password (may be empty where the server allows it).
    pub password: SecretString,
}

impl std::fmt::Debug for DbRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbRoot")
            .field("username", &self.username)
            .field("password", &"********")
            .finish()
    }
}

/// Arguments of `new_site`.
#[derive(Clone, Debug)]
pub struct NewSite {
    /// The site to create.
    pub site: SiteName,
    /// Password of the site's `Administrator`.
    pub admin_password: SecretString,
    /// MariaDB root credentials.
    pub db_root: DbRoot,
    /// Database (and DB user) name; bench derives one when `None`.
    pub db_name: Option<DbName>,
    /// Apps to install after `frappe`, in order.
    pub install_apps: Vec<AppName>,
    /// Make the DB user reachable over TCP (`%`), for DBs not on the bench host.
    pub no_mariadb_socket: bool,
    /// Overwrite an existing site directory/database (`--force`). Only for retrying a site
    /// Tenantry itself left half-made.
    pub force: bool,
}

/// Arguments of `drop_site`.
#[derive(Clone, Debug)]
pub struct DropSite {
    /// The site to drop.
    pub site: SiteName,
    /// MariaDB root credentials.
    pub db_root: DbRoot,
    /// Skip the backup bench takes before dropping.
    pub no_backup: bool,
    /// Carry on past errors (e.g. a missing database).
    pub force: bool,
}

/// What `drop_site` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteDropped {
    /// The backup taken first, unless `no_backup`.
    pub backup: Option<BackupSummary>,
    /// The archive directory the site directory was moved under.
    pub archived_under: Option<String>,
}

/// Arguments of `add_system_manager`.
#[derive(Clone, Debug)]
pub struct NewSystemManager {
    /// The user's email (their user id).
    pub email: UserEmail,
    /// First name.
    pub first_name: PersonName,
    /// Last name, if any.
    pub last_name: Option<PersonName>,
    /// Initial password.
    pub password: SecretString,
}

/// An API key pair. The secret is never printed by `Debug`.
#[derive(Clone)]
pub struct ApiCredentials {
    /// The 15-hex-char API key (stable across rotations).
    pub api_key: String,
    /// The 15-hex-char API secret (rotated by every `generate_keys`).
    pub api_secret: SecretString,
}

impl ApiCredentials {
    /// The form the vault keeps a site's key pair in: `{"api_key": …, "api_secret": …}`.
    pub fn from_stored_json(text: &str) -> Result<Self, String> {
        let parsed: Value =
            serde_json::from_str(text).map_err(|_| "stored api credentials are not JSON")?;
        let field = |k: &str| parsed.get(k).and_then(Value::as_str).map(str::to_owned);
        match (field("api_key"), field("api_secret")) {
            (Some(api_key), Some(secret)) => Ok(Self {
                api_key,
                api_secret: secret.into(),
            }),
            _ => Err("stored api credentials lack api_key/api_secret".into()),
        }
    }
}

impl std::fmt::Debug for ApiCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCredentials")
            .field("api_key", &self.api_key)
            .field("api_secret", &"********")
            .finish()
    }
}

/// A bench reached through one runner. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Bench {
    runner: RunnerConfig,
    timeouts: BenchTimeouts,
}

impl Bench {
    /// A bench with default timeouts.
    pub fn new(runner: RunnerConfig) -> Self {
        Self {
            runner,
            timeouts: BenchTimeouts::default(),
        }
    }

    /// Overrides the timeouts.
    pub fn with_timeouts(mut self, timeouts: BenchTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The runner config.
    pub fn runner(&self) -> &RunnerConfig {
        &self.runner
    }

    /// Runs `bench <args>` and returns its output whatever the exit code (low-level escape hatch;
    /// build `args` only from validated types).
    pub async fn run_bench(
        &self,
        op: &'static str,
        args: Vec<Arg>,
        timeout: Duration,
    ) -> Result<CommandOutput, BenchError> {
        self.run_guarded_bench(op, args, &self.guard(timeout)).await
    }

    /// `bench --site S …`: holds the site's host-side lock, so two commands never work on one
    /// site at once — not even one started by an instance that has since died.
    async fn run_site_bench(
        &self,
        op: &'static str,
        site: &SiteName,
        args: Vec<Arg>,
        timeout: Duration,
    ) -> Result<CommandOutput, BenchError> {
        let guard = self.guard(timeout).locking(site.as_str());
        self.run_guarded_bench(op, args, &guard).await
    }

    /// `bench <args>` fenced by `guard` on the bench host.
    async fn run_guarded_bench(
        &self,
        op: &'static str,
        args: Vec<Arg>,
        guard: &Guard,
    ) -> Result<CommandOutput, BenchError> {
        let inv = self.runner.guarded_bench(args, guard);
        self.run_invocation(op, &inv, guard).await
    }

    /// A plain program in the bench directory, fenced by `guard`.
    pub(crate) async fn run_guarded_tool(
        &self,
        op: &'static str,
        program: &str,
        args: Vec<Arg>,
        guard: &Guard,
    ) -> Result<CommandOutput, BenchError> {
        let inv = self.runner.guarded_tool(program, args, guard);
        self.run_invocation(op, &inv, guard).await
    }

    /// How long a command of this kind may take on the bench host, `timeout -k` included
    /// (a lease guarding it must outlive this).
    pub fn command_limit(&self, op: BenchOp) -> Duration {
        self.guard(self.timeout_of(op)).outlives()
    }

    /// A guard of `timeout` with this bench's kill grace.
    pub(crate) fn guard(&self, timeout: Duration) -> Guard {
        Guard::timeout(timeout).with_kill_grace(self.timeouts.kill_grace)
    }

    pub(crate) fn timeout_of(&self, op: BenchOp) -> Duration {
        match op {
            BenchOp::NewSite => self.timeouts.new_site,
            BenchOp::InstallApp => self.timeouts.install_app,
            BenchOp::Backup | BenchOp::DropSite => self.timeouts.backup,
            BenchOp::Other => self.timeouts.default,
        }
    }

    async fn run_invocation(
        &self,
        op: &'static str,
        inv: &Invocation,
        guard: &Guard,
    ) -> Result<CommandOutput, BenchError> {
        // The bench host's `timeout` ends the command first; ours is only a backstop for a
        // runner (ssh, docker) that itself hangs.
        let backstop = guard.outlives() + Duration::from_secs(5);
        let command: String = inv.redacted().join(" ").chars().take(300).collect();
        let span = tracing::info_span!(
            "bench",
            otel.name = %format!("bench {op}"),
            otel.kind = "client",
            bench.op = op,
            // Redacted: passwords and keys are `***`.
            bench.command = %command,
            exit_code = tracing::field::Empty,
        );
        let out = timeline::outside(runner::run(inv, backstop))
            .instrument(span.clone())
            .await
            .inspect(|out| {
                if let Some(code) = out.exit_code {
                    span.record("exit_code", code);
                }
            })
            .map_err(|e| match e {
                RunError::Spawn { program, source } => BenchError::Spawn {
                    op,
                    program,
                    source,
                },
                RunError::Timeout { .. } => BenchError::Timeout {
                    op,
                    after: guard.timeout,
                },
            })?;
        // `flock` reports a program it cannot run with 69 and this message.
        let flock_could_not_run =
            out.exit_code == Some(69) && out.stderr.contains("flock: failed to execute");
        match out.exit_code {
            Some(_) if flock_could_not_run => Err(BenchError::Spawn {
                op,
                program: inv.redacted().join(" "),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    out.stderr.trim().chars().take(200).collect::<String>(),
                ),
            }),
            // `timeout` (or the remote shell) could not start the program.
            Some(code @ (126 | 127)) => Err(BenchError::Spawn {
                op,
                program: inv.redacted().join(" "),
                source: std::io::Error::new(
                    if code == 127 {
                        std::io::ErrorKind::NotFound
                    } else {
                        std::io::ErrorKind::PermissionDenied
                    },
                    out.stderr.trim().chars().take(200).collect::<String>(),
                ),
            }),
            Some(code) if TIMEOUT_EXITS.contains(&code) => Err(BenchError::Timeout {
                op,
                after: guard.timeout,
            }),
            Some(LOCK_BUSY_EXIT) if !guard.locked_sites.is_empty() => Err(BenchError::Busy {
                op,
                site: guard.locked_sites.join(", "),
            }),
            _ => Ok(out),
        }
    }

    fn site_args(site: &SiteName, command: &str) -> Vec<Arg> {
        vec!["--site".into(), site.as_str().into(), command.into()]
    }

    /// `bench new-site`. The exit code decides; on failure the site directory is left behind by
    /// bench: call [`Bench::remove_leftover_site_dir`], never `drop_site`.
    pub async fn new_site(&self, req: &NewSite) -> Result<CommandOutput, BenchError> {
        check_secret(req.admin_password.expose_secret(), false)?;
        if req.db_root.password.expose_secret().is_empty() {
            return Err(BenchError::RootPasswordMissing);
        }
        check_secret(req.db_root.password.expose_secret(), true)?;
        let root_user = DbName::parse(&req.db_root.username)?;
        let mut args: Vec<Arg> = vec![
            "new-site".into(),
            req.site.as_str().into(),
            Arg::SecretOpt("--admin-password", req.admin_password.clone()),
            Arg::SecretOpt("--db-root-password", req.db_root.password.clone()),
            format!("--db-root-username={root_user}").into(),
        ];
        if let Some(db) = &req.db_name {
            args.push(format!("--db-name={db}").into());
        }
        for app in &req.install_apps {
            args.push(format!("--install-app={app}").into());
        }
        if req.no_mariadb_socket {
            args.push("--no-mariadb-socket".into());
        }
        if req.force {
            args.push("--force".into());
        }
        let guard = self
            .guard(self.timeouts.new_site)
            .locking(req.site.as_str());
        let out = self.run_guarded_bench("new-site", args, &guard).await?;
        if out.success() {
            return Ok(out);
        }
        Err(match parse::new_site_failure(&out.stdout, &out.stderr) {
            NewSiteFailure::SiteExists => BenchError::SiteExists(req.site.clone()),
            NewSiteFailure::AccessDenied => BenchError::AccessDenied,
            NewSiteFailure::DatabaseExists(db) => BenchError::DatabaseExists(db),
            NewSiteFailure::AppNotFound(app) => BenchError::AppNotFound(app),
            NewSiteFailure::PromptedAndAborted => BenchError::RootPasswordMissing,
            NewSiteFailure::Other(_) => failed("new-site", &out),
        })
    }

    /// Removes `sites/<site>/` left behind by a failed `new-site`, without touching any database
    /// (its `site_config.json` may name another site's database). Idempotent.
    pub async fn remove_leftover_site_dir(&self, site: &SiteName) -> Result<(), BenchError> {
        let guard = self.guard(self.timeouts.default).locking(site.as_str());
        let out = self
            .run_guarded_tool(
                "remove-leftover-site-dir",
                "rm",
                vec!["-rf".into(), "--".into(), format!("sites/{site}").into()],
                &guard,
            )
            .await?;
        if out.success() {
            Ok(())
        } else {
            Err(failed("remove-leftover-site-dir", &out))
        }
    }

    /// `bench --site S install-app APP`.
    pub async fn install_app(
        &self,
        site: &SiteName,
        app: &AppName,
    ) -> Result<InstallOutcome, BenchError> {
        let mut args = Self::site_args(site, "install-app");
        args.push(app.as_str().into());
        let out = self
            .run_site_bench("install-app", site, args, self.timeouts.install_app)
            .await?;
        if out.success() {
            return Ok(parse::install_outcome(&out.stdout, app.as_str()));
        }
        if parse::site_does_not_exist(&out.stdout) {
            return Err(BenchError::SiteNotFound(site.clone()));
        }
        if let Some(app) = parse::app_not_found(&out.stdout) {
            return Err(BenchError::AppNotFound(app));
        }
        Err(failed("install-app", &out))
    }

    /// `bench --site S execute METHOD [--args LITERAL]`: the printed return value (`None` for a
    /// falsy return).
    pub async fn execute(
        &self,
        site: &SiteName,
        method: &MethodPath,
        args: &[Value],
    ) -> Result<Option<Value>, BenchError> {
        let mut argv = Self::site_args(site, "execute");
        argv.push(method.as_str().into());
        if !args.is_empty() {
            let lit = PyLiteral::render(&Value::Array(args.to_vec()))?;
            argv.push(format!("--args={lit}").into());
        }
        let out = self
            .run_site_bench("execute", site, argv, self.timeouts.default)
            .await?;
        if !out.success() {
            if parse::site_does_not_exist(&out.stdout) {
                return Err(BenchError::SiteNotFound(site.clone()));
            }
            if let Some(exc) = parse::last_exception(&out.stderr)
                && let Some(rest) = exc.strip_prefix("frappe.exceptions.DoesNotExistError: User ")
            {
                return Err(BenchError::UserNotFound(
                    rest.trim_end_matches(" not found").to_owned(),
                ));
            }
            return Err(failed("execute", &out));
        }
        parse::execute_result(&out.stdout).map_err(|e| BenchError::UnexpectedOutput {
            op: "execute",
            detail: e.to_string(),
        })
    }

    /// True if the site exists and answers (`execute frappe.get_installed_apps` succeeds);
    /// false on `Site S does not exist!`. A half-made leftover directory is an error.
    pub async fn site_exists(&self, site: &SiteName) -> Result<bool, BenchError> {
        match self.list_apps(site).await {
            Ok(_) => Ok(true),
            Err(BenchError::SiteNotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The apps installed on a site (via `execute frappe.get_installed_apps`: `list-apps
    /// --format json` is empty on fresh sites).
    pub async fn list_apps(&self, site: &SiteName) -> Result<Vec<AppName>, BenchError> {
        let method = MethodPath::parse("frappe.get_installed_apps")?;
        let value = self
            .execute(site, &method, &[])
            .await?
            .unwrap_or(Value::Array(vec![]));
        let names: Vec<String> =
            serde_json::from_value(value).map_err(|e| BenchError::UnexpectedOutput {
                op: "list-apps",
                detail: e.to_string(),
            })?;
        names
            .iter()
            .map(|n| {
                AppName::parse(n).map_err(|e| BenchError::UnexpectedOutput {
                    op: "list-apps",
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    /// The site's background jobs still queued or running, by `job_name`
    /// (`execute frappe.utils.background_jobs.get_jobs` for the site; nothing printed = none).
    /// RQ keys each job by the site's name when it was enqueued, so a site must not be renamed
    /// while this is not empty.
    pub async fn queued_jobs(&self, site: &SiteName) -> Result<Vec<String>, BenchError> {
        let method = MethodPath::parse("frappe.utils.background_jobs.get_jobs")?;
        let value = self
            .execute(
                site,
                &method,
                &[json!(site.as_str()), Value::Null, json!("job_name")],
            )
            .await?;
        let unexpected = |detail: String| BenchError::UnexpectedOutput {
            op: "get-jobs",
            detail,
        };
        match value {
            None => Ok(Vec::new()),
            Some(Value::Object(per_site)) => Ok(per_site
                .into_values()
                .flat_map(|v| match v {
                    Value::Array(names) => names,
                    other => vec![other],
                })
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect()),
            Some(other) => Err(unexpected(format!(
                "expected a map of site to jobs, got {}",
                other.to_string().chars().take(100).collect::<String>()
            ))),
        }
    }

    /// `bench --site S set-config KEY LITERAL --parse` (the value is rendered as a safe Python
    /// literal, so strings, numbers, lists and dicts all round-trip).
    pub async fn set_config(
        &self,
        site: &SiteName,
        key: &ConfigKey,
        value: &Value,
    ) -> Result<(), BenchError> {
        let lit = PyLiteral::render(value)?;
        let mut args = Self::site_args(site, "set-config");
        args.extend(["--parse".into(), key.as_str().into(), lit.as_str().into()]);
        self.expect_success("set-config", site, args)
            .await
            .map(drop)
    }

    /// `bench --site S set-maintenance-mode on|off`. While on, every HTTP request answers 503.
    pub async fn set_maintenance_mode(&self, site: &SiteName, on: bool) -> Result<(), BenchError> {
        let mut args = Self::site_args(site, "set-maintenance-mode");
        args.push(if on { "on" } else { "off" }.into());
        self.expect_success("set-maintenance-mode", site, args)
            .await
            .map(drop)
    }

    /// `bench --site S add-system-manager EMAIL --first-name F [--last-name L] --password P`.
    pub async fn add_system_manager(
        &self,
        site: &SiteName,
        user: &NewSystemManager,
    ) -> Result<(), BenchError> {
        check_secret(user.password.expose_secret(), false)?;
        let mut args = Self::site_args(site, "add-system-manager");
        args.push(user.email.as_str().into());
        args.push(format!("--first-name={}", user.first_name).into());
        if let Some(last) = &user.last_name {
            args.push(format!("--last-name={last}").into());
        }
        args.push(Arg::SecretOpt("--password", user.password.clone()));
        match self.expect_success("add-system-manager", site, args).await {
            Err(BenchError::CommandFailed { detail, .. })
                if detail.contains("DuplicateEntryError") =>
            {
                Err(BenchError::UserExists(user.email.to_string()))
            }
            other => other.map(drop),
        }
    }

    /// `bench --site S set-password USER PASSWORD`.
    pub async fn set_password(
        &self,
        site: &SiteName,
        user: &UserId,
        password: &SecretString,
    ) -> Result<(), BenchError> {
        check_secret(password.expose_secret(), false)?;
        if password.expose_secret().starts_with('-') {
            // A positional argument: click would read a leading '-' as an option.
            return Err(NameError::Secret {
                reason: "a password for set-password must not start with '-'",
            }
            .into());
        }
        let mut args = Self::site_args(site, "set-password");
        args.push(user.as_str().into());
        args.push(Arg::Secret(password.clone()));
        self.expect_success("set-password", site, args)
            .await
            .map(drop)
    }

    /// Generates (rotating) the user's API secret via `bench execute generate_keys`, then reads
    /// the api_key if this frappe version did not return it.
    pub async fn generate_api_keys(
        &self,
        site: &SiteName,
        user: &UserId,
    ) -> Result<ApiCredentials, BenchError> {
        let method = MethodPath::parse("frappe.core.doctype.user.user.generate_keys")?;
        let value = self
            .execute(site, &method, &[json!(user.as_str())])
            .await?
            .ok_or_else(|| BenchError::UnexpectedOutput {
                op: "generate-keys",
                detail: "no output".into(),
            })?;
        let keys: parse::GeneratedKeys =
            serde_json::from_value(value).map_err(|e| BenchError::UnexpectedOutput {
                op: "generate-keys",
                detail: format!("not a key object: {e}"),
            })?;
        let api_key = match keys.api_key {
            Some(k) => k,
            None => {
                let method = MethodPath::parse("frappe.db.get_value")?;
                let value = self
                    .execute(
                        site,
                        &method,
                        &[json!("User"), json!(user.as_str()), json!("api_key")],
                    )
                    .await?;
                match value {
                    Some(Value::String(k)) if !k.is_empty() => k,
                    _ => {
                        return Err(BenchError::UnexpectedOutput {
                            op: "generate-keys",
                            detail: "user has no api_key after generate_keys".into(),
                        });
                    }
                }
            }
        };
        Ok(ApiCredentials {
            api_key,
            api_secret: keys.api_secret.into(),
        })
    }

    /// A one-time login key for `user`, valid `minutes` (Frappe 15's
    /// `frappe.www.login._generate_temporary_login_link`, the one behind "login with email
    /// link"; the key opens `/api/method/frappe.www.login.login_via_key?key=<key>` once). Only
    /// the key is kept: the host the site would print comes from its own idea of its URL, and
    /// the caller knows the public one.
    pub async fn login_key(
        &self,
        site: &SiteName,
        user: &UserEmail,
        minutes: u32,
    ) -> Result<SecretString, BenchError> {
        let method = MethodPath::parse("frappe.www.login._generate_temporary_login_link")?;
        let value = self
            .execute(site, &method, &[json!(user.as_str()), json!(minutes)])
            .await?;
        let Some(Value::String(link)) = value else {
            return Err(BenchError::UnexpectedOutput {
                op: "login-link",
                detail: "no link printed".into(),
            });
        };
        let link = SecretString::from(link);
        parse::login_key(link.expose_secret())
            .map(SecretString::from)
            .ok_or_else(|| BenchError::UnexpectedOutput {
                op: "login-link",
                // Never the link itself: it logs the user in.
                detail: "the printed link carries no hex `key=`".into(),
            })
    }

    /// `bench --site S backup [--with-files]`, with the summary parsed.
    pub async fn backup(
        &self,
        site: &SiteName,
        with_files: bool,
    ) -> Result<BackupSummary, BenchError> {
        let mut args = Self::site_args(site, "backup");
        if with_files {
            args.push("--with-files".into());
        }
        let out = self
            .run_site_bench("backup", site, args, self.timeouts.backup)
            .await?;
        if !out.success() {
            if parse::site_does_not_exist(&out.stdout) {
                return Err(BenchError::SiteNotFound(site.clone()));
            }
            return Err(failed("backup", &out));
        }
        parse::backup_summary(&out.stdout).ok_or_else(|| BenchError::UnexpectedOutput {
            op: "backup",
            detail: "no backup summary".into(),
        })
    }

    /// `bench drop-site S --db-root-password P [--no-backup] [--force]`: drops the database and
    /// its user and moves the directory to `<bench>/archived/sites/`.
    pub async fn drop_site(&self, req: &DropSite) -> Result<SiteDropped, BenchError> {
        check_secret(req.db_root.password.expose_secret(), true)?;
        let root_user = DbName::parse(&req.db_root.username)?;
        let mut args: Vec<Arg> = vec![
            "drop-site".into(),
            req.site.as_str().into(),
            format!("--db-root-username={root_user}").into(),
            Arg::SecretOpt("--db-root-password", req.db_root.password.clone()),
        ];
        if req.no_backup {
            args.push("--no-backup".into());
        }
        if req.force {
            args.push("--force".into());
        }
        let guard = self.guard(self.timeouts.backup).locking(req.site.as_str());
        let out = self.run_guarded_bench("drop-site", args, &guard).await?;
        if !out.success() {
            if parse::incorrect_site_path(&out.stderr) {
                return Err(BenchError::SiteNotFound(req.site.clone()));
            }
            if parse::access_denied(&out.stderr) {
                return Err(BenchError::AccessDenied);
            }
            return Err(failed("drop-site", &out));
        }
        Ok(SiteDropped {
            backup: parse::backup_summary(&out.stdout),
            archived_under: parse::archive_dir(&out.stdout),
        })
    }

    /// Renames a site: moves `sites/<from>` to `sites/<to>` (refusing to overwrite) and sets
    /// `host_name`. The database keeps its name; sites are resolved per request, so no restart.
    pub async fn rename_site(
        &self,
        from: &SiteName,
        to: &SiteName,
        host_name: &HostUrl,
    ) -> Result<(), BenchError> {
        // `mv -n -T` never overwrites and never moves *into* an existing directory; a test
        // afterwards tells whether it did anything (mv -n exits 0 when it skips).
        let guard = self
            .guard(self.timeouts.default)
            .locking(from.as_str())
            .locking(to.as_str());
        let out = self
            .run_guarded_tool(
                "rename-site",
                "mv",
                vec![
                    "-n".into(),
                    "-T".into(),
                    "--".into(),
                    format!("sites/{from}").into(),
                    format!("sites/{to}").into(),
                ],
                &guard,
            )
            .await?;
        if !out.success() {
            return Err(failed("rename-site", &out));
        }
        let still_there = self
            .run_guarded_tool(
                "rename-site",
                "test",
                vec!["-e".into(), format!("sites/{from}").into()],
                &self.guard(self.timeouts.default),
            )
            .await?;
        if still_there.success() {
            return Err(BenchError::SiteExists(to.clone()));
        }
        let key = ConfigKey::parse("host_name")?;
        self.set_config(to, &key, &Value::String(host_name.to_string()))
            .await
    }

    async fn expect_success(
        &self,
        op: &'static str,
        site: &SiteName,
        args: Vec<Arg>,
    ) -> Result<CommandOutput, BenchError> {
        let out = self
            .run_site_bench(op, site, args, self.timeouts.default)
            .await?;
        if out.success() {
            Ok(out)
        } else if parse::site_does_not_exist(&out.stdout) {
            Err(BenchError::SiteNotFound(site.clone()))
        } else {
            Err(failed(op, &out))
        }
    }
}

/// A `CommandFailed` with the most useful line of output (already scrubbed of secrets).
fn failed(op: &'static str, out: &CommandOutput) -> BenchError {
    let detail = parse::last_exception(&out.stderr)
        .or_else(|| parse::last_exception(&out.stdout))
        .unwrap_or_else(|| {
            tail(if out.stderr.trim().is_empty() {
                &out.stdout
            } else {
                &out.stderr
            })
        });
    BenchError::CommandFailed {
        op,
        exit_code: out.exit_code,
        detail,
    }
}

/// The last few lines of `text`, at most 500 characters.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(3);
    let joined = lines[start..].join(" | ");
    let n = joined.chars().count();
    joined.chars().skip(n.saturating_sub(500)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A bench whose "bench" is `echo`: every op's argv comes back as stdout. Its directory
    /// has a `sites/` for the host-side site locks.
    fn echo_bench() -> Bench {
        bench_with("echo")
    }

    fn bench_with(bin: &str) -> Bench {
        let dir = std::env::temp_dir().join(format!("frappe-test-bench-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sites")).unwrap();
        Bench::new(RunnerConfig::Local {
            bench_dir: dir,
            bench_bin: bin.into(),
            env: BTreeMap::new(),
            user: None,
        })
    }

    fn flags_of(stdout: &str) -> Vec<String> {
        stdout
            .split_whitespace()
            .filter(|w| w.starts_with("--") && *w != "--site")
            .map(|w| w.split('=').next().unwrap_or(w).to_owned())
            .collect()
    }

    #[tokio::test]
    async fn new_site_argv_uses_only_documented_flags_and_hides_secrets() {
        let req = NewSite {
            site: SiteName::parse("a.localhost").unwrap(),
            admin_password: "adm-s3cret".to_owned().into(),
            db_root: DbRoot {
                username: "root".into(),
                password: "root-s3cret".to_owned().into(),
            },
            db_name: Some(DbName::parse("a_db").unwrap()),
            install_apps: vec![
                AppName::parse("erpnext").unwrap(),
                AppName::parse("hrms").unwrap(),
            ],
            no_mariadb_socket: true,
            force: true,
        };
        let out = echo_bench().new_site(&req).await.unwrap();
        let allowed = FLAGS_USED.iter().find(|(c, _)| *c == "new-site").unwrap().1;
        for f in flags_of(&out.stdout) {
            assert!(allowed.contains(&f.as_str()), "{f}");
        }
        assert!(
            out.stdout
                .contains("--install-app=erpnext --install-app=hrms")
        );
        // Secrets reached the process but were scrubbed from the captured output.
        assert!(!out.stdout.contains("s3cret"), "{}", out.stdout);
        assert!(out.stdout.contains("--admin-password=********"));
        assert!(!format!("{req:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn set_config_renders_safe_literals() {
        // echo prints nothing useful back through set_config, so check the error path instead:
        // values that cannot be rendered never reach a process.
        let mut deep = json!(0);
        for _ in 0..20 {
            deep = json!({"x": deep});
        }
        let bench = bench_with("/nonexistent/bench");
        // A site of its own: other tests hold `a.localhost`'s site lock while they run.
        let site = SiteName::parse("renders.localhost").unwrap();
        let key = ConfigKey::parse("k").unwrap();
        assert!(matches!(
            bench.set_config(&site, &key, &deep).await,
            Err(BenchError::InvalidInput(_))
        ));
        // A renderable value does try to run (and fails to spawn the missing binary).
        let r = bench.set_config(&site, &key, &json!(1)).await;
        assert!(matches!(r, Err(BenchError::Spawn { .. })), "{r:?}");
    }

    #[test]
    fn command_failed_details_prefer_the_exception_line() {
        let out = CommandOutput {
            exit_code: Some(1),
            stdout: String::new(),
            stderr: "Traceback (most recent call last):\n  File \"x\", line 1\n    boom()\nfrappe.exceptions.ValidationError: bad thing\n".into(),
            elapsed: Duration::ZERO,
        };
        let err = failed("x", &out);
        assert_eq!(
            err.to_string(),
            "x failed (exit Some(1)): frappe.exceptions.ValidationError: bad thing"
        );
        assert!(tail(&"a\n".repeat(1000)).len() <= 500);
    }
}
