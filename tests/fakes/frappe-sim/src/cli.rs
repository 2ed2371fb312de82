//! The `bench`-compatible command line: the subcommands and flags Tenantry's runner uses, with
//! the output shapes and exit codes of the real transcripts.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use sqlx::MySqlConnection;

use crate::sim::{self, Settings};
use crate::store::{self, Insert, SiteDb};
use crate::{archive, pylit, server};

/// Per-invocation context.
pub struct Ctx {
    pub bench: PathBuf,
    pub settings: Settings,
    pub site: Option<String>,
}

struct Opt {
    names: &'static [&'static str],
    value: bool,
}

const fn opt(names: &'static [&'static str]) -> Opt {
    Opt { names, value: true }
}
const fn flag(names: &'static [&'static str]) -> Opt {
    Opt {
        names,
        value: false,
    }
}

struct Spec {
    name: &'static str,
    usage: &'static str,
    help: &'static str,
    opts: &'static [Opt],
    positionals: &'static [&'static str],
    /// The last positional takes any number of values (`[APPS]...`).
    variadic: bool,
    min_positionals: usize,
}

#[derive(Default)]
struct Args {
    pos: Vec<String>,
    vals: BTreeMap<&'static str, Vec<String>>,
    flags: BTreeSet<&'static str>,
}

impl Args {
    fn val(&self, name: &str) -> Option<&str> {
        self.vals
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }
    fn all(&self, name: &str) -> &[String] {
        self.vals.get(name).map_or(&[], Vec::as_slice)
    }
    fn flag(&self, name: &str) -> bool {
        self.flags.contains(name)
    }
}

enum Parsed {
    Args(Args),
    Exit(i32),
}

fn usage_error(spec: &Spec, msg: &str) -> i32 {
    eprintln!(
        "Usage: bench  {} {}\nTry 'bench  {} --help' for help.\n\nError: {msg}",
        spec.name, spec.usage, spec.name
    );
    2
}

/// click-style parsing: `--opt value`, `--opt=value`, flags, `--` ends options.
fn parse(spec: &Spec, argv: &[String]) -> Parsed {
    let mut args = Args::default();
    let mut i = 0;
    let mut only_pos = false;
    while i < argv.len() {
        let a = &argv[i];
        i += 1;
        if only_pos || !a.starts_with('-') || a == "-" {
            args.pos.push(a.clone());
            continue;
        }
        if a == "--" {
            only_pos = true;
            continue;
        }
        if a == "--help" {
            println!(
                "Usage: bench  {} {}\n\n  {}\n",
                spec.name, spec.usage, spec.help
            );
            println!("Options:");
            for o in spec.opts {
                println!(
                    "  {}{}",
                    o.names.join(", "),
                    if o.value { " TEXT" } else { "" }
                );
            }
            println!("  --help  Show this message and exit.");
            return Parsed::Exit(0);
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (a.as_str(), None),
        };
        let Some(o) = spec.opts.iter().find(|o| o.names.contains(&name)) else {
            return Parsed::Exit(usage_error(spec, &format!("No such option: {name}")));
        };
        let key = o.names[0];
        if o.value {
            let v = match inline {
                Some(v) => v,
                None if i < argv.len() => {
                    i += 1;
                    argv[i - 1].clone()
                }
                None => {
                    return Parsed::Exit(usage_error(
                        spec,
                        &format!("Option '{name}' requires an argument."),
                    ));
                }
            };
            args.vals.entry(key).or_default().push(v);
        } else {
            args.flags.insert(key);
        }
    }
    if args.pos.len() < spec.min_positionals {
        let missing = spec
            .positionals
            .get(args.pos.len())
            .copied()
            .unwrap_or("ARG");
        return Parsed::Exit(usage_error(spec, &format!("Missing argument '{missing}'.")));
    }
    if !spec.variadic && args.pos.len() > spec.positionals.len() {
        let extra = &args.pos[spec.positionals.len()..];
        let msg = if extra.len() == 1 {
            format!("Got unexpected extra argument ({})", extra[0])
        } else {
            format!("Got unexpected extra arguments ({})", extra.join(" "))
        };
        return Parsed::Exit(usage_error(spec, &msg));
    }
    Parsed::Args(args)
}

const ROOT_USER: &[&str] = &[
    "--db-root-username",
    "--mariadb-root-username",
    "--root-login",
];
const ROOT_PW: &[&str] = &[
    "--db-root-password",
    "--mariadb-root-password",
    "--root-password",
];

static NEW_SITE: Spec = Spec {
    name: "new-site",
    usage: "[OPTIONS] SITE",
    help: "Create a new site",
    opts: &[
        opt(&["--db-name"]),
        opt(&["--db-password"]),
        opt(&["--db-type"]),
        opt(&["--db-host"]),
        opt(&["--db-port"]),
        opt(&["--db-root-username", "--mariadb-root-username"]),
        opt(&["--db-root-password", "--mariadb-root-password"]),
        flag(&["--no-mariadb-socket"]),
        opt(&["--admin-password"]),
        flag(&["--verbose"]),
        flag(&["--force"]),
        opt(&["--install-app"]),
        flag(&["--set-default"]),
    ],
    positionals: &["SITE"],
    variadic: false,
    min_positionals: 1,
};

static INSTALL_APP: Spec = Spec {
    name: "install-app",
    usage: "[OPTIONS] [APPS]...",
    help: "Install a new app to site, supports multiple apps",
    opts: &[flag(&["--force"])],
    positionals: &["APPS"],
    variadic: true,
    min_positionals: 0,
};

static LIST_APPS: Spec = Spec {
    name: "list-apps",
    usage: "[OPTIONS]",
    help: "List apps in site",
    opts: &[opt(&["--format", "-f"])],
    positionals: &[],
    variadic: false,
    min_positionals: 0,
};

static SET_CONFIG: Spec = Spec {
    name: "set-config",
    usage: "[OPTIONS] KEY VALUE",
    help: "Insert/Update a value in site_config.json",
    opts: &[flag(&["--global", "-g"]), flag(&["--parse", "-p"])],
    positionals: &["KEY", "VALUE"],
    variadic: false,
    min_positionals: 2,
};

static MAINTENANCE: Spec = Spec {
    name: "set-maintenance-mode",
    usage: "[OPTIONS] {on|off}",
    help: "Put the site in maintenance mode for upgrades.",
    opts: &[opt(&["--site"])],
    positionals: &["{on|off}"],
    variadic: false,
    min_positionals: 1,
};

static BACKUP: Spec = Spec {
    name: "backup",
    usage: "[OPTIONS]",
    help: "Backup",
    opts: &[flag(&["--with-files"])],
    positionals: &[],
    variadic: false,
    min_positionals: 0,
};

static DROP_SITE: Spec = Spec {
    name: "drop-site",
    usage: "[OPTIONS] SITE",
    help: "Remove a site from database and filesystem.",
    opts: &[
        opt(ROOT_USER),
        opt(ROOT_PW),
        opt(&["--archived-sites-path"]),
        flag(&["--no-backup"]),
        flag(&["--force"]),
    ],
    positionals: &["SITE"],
    variadic: false,
    min_positionals: 1,
};

static EXECUTE: Spec = Spec {
    name: "execute",
    usage: "[OPTIONS] METHOD",
    help: "Execute a function",
    opts: &[opt(&["--args"]), opt(&["--kwargs"]), flag(&["--profile"])],
    positionals: &["METHOD"],
    variadic: false,
    min_positionals: 1,
};

static ADD_SYSTEM_MANAGER: Spec = Spec {
    name: "add-system-manager",
    usage: "[OPTIONS] EMAIL",
    help: "Add a new system manager to a site",
    opts: &[
        opt(&["--first-name"]),
        opt(&["--last-name"]),
        opt(&["--password"]),
        flag(&["--send-welcome-email"]),
    ],
    positionals: &["EMAIL"],
    variadic: false,
    min_positionals: 1,
};

static SET_PASSWORD: Spec = Spec {
    name: "set-password",
    usage: "[OPTIONS] USER [PASSWORD]",
    help: "Set password for a user on a site",
    opts: &[flag(&["--logout-all-sessions"])],
    positionals: &["USER", "PASSWORD"],
    variadic: false,
    min_positionals: 2,
};

static SERVE: Spec = Spec {
    name: "serve",
    usage: "[OPTIONS]",
    help: "Serve the REST API subset for every site of this bench (frappe-sim)",
    opts: &[opt(&["--port"]), opt(&["--bind"])],
    positionals: &[],
    variadic: false,
    min_positionals: 0,
};

static SIM_INIT: Spec = Spec {
    name: "sim-init",
    usage: "[OPTIONS]",
    help: "Create an empty bench layout here (frappe-sim only)",
    opts: &[opt(&["--apps"])],
    positionals: &[],
    variadic: false,
    min_positionals: 0,
};

static SIM_PURGE: Spec = Spec {
    name: "sim-purge",
    usage: "[OPTIONS]",
    help: "Drop the database of every site of this bench (frappe-sim test cleanup)",
    opts: &[opt(ROOT_USER), opt(ROOT_PW)],
    positionals: &[],
    variadic: false,
    min_positionals: 0,
};

/// Realistic durations, from the fixture transcripts (wall-clock on a 2-core box).
/// The `realistic` profile: wall-clock times measured on a real bench (frappe 15.44,
/// tests/fixtures/frappe/README.md, re-measured 2026-11-30). Every CLI call imports frappe:
/// 0.6–1.2 s idle — the profile takes ≈ 0.85 s — and [`sim::NEW_SITE_LOAD`] times that while
/// another `new-site` runs on the bench.
mod timing {
    use std::time::Duration;
    /// 17.6–19.6 s for a frappe-only site on a quiet server (31–78 s on one with ~760 schemas).
    pub const NEW_SITE: Duration = Duration::from_millis(18_600);
    pub const INSTALL_APP: Duration = Duration::from_millis(1_630);
    pub const ALREADY_INSTALLED: Duration = Duration::from_millis(900);
    pub const LIST_APPS: Duration = Duration::from_millis(850);
    pub const SET_CONFIG: Duration = Duration::from_millis(850);
    pub const MAINTENANCE: Duration = Duration::from_millis(850);
    pub const BACKUP: Duration = Duration::from_millis(900);
    pub const DROP_SITE: Duration = Duration::from_millis(1_200);
    pub const DROP_SITE_NO_BACKUP: Duration = Duration::from_millis(650);
    pub const GENERATE_KEYS: Duration = Duration::from_millis(1_100);
    pub const EXECUTE: Duration = Duration::from_millis(850);
    pub const ADD_SYSTEM_MANAGER: Duration = Duration::from_millis(2_100);
    pub const SET_PASSWORD: Duration = Duration::from_millis(900);
    pub const NO_SUCH_SITE: Duration = Duration::from_millis(600);
}

/// Runs one `bench …` invocation and returns its exit code.
pub async fn main(argv: Vec<String>) -> i32 {
    // Global options before the subcommand (`bench --site S <cmd> …`).
    let mut site = None;
    let mut i = 0;
    while i < argv.len() && argv[i].starts_with('-') {
        match argv[i].split_once('=') {
            Some(("--site", v)) => site = Some(v.to_owned()),
            _ if argv[i] == "--site" && i + 1 < argv.len() => {
                i += 1;
                site = Some(argv[i].clone());
            }
            _ if argv[i] == "--verbose" || argv[i] == "--force" || argv[i] == "--profile" => {}
            _ => {
                eprintln!(
                    "Usage: bench [OPTIONS] COMMAND [ARGS]...\n\nError: No such option: {}",
                    argv[i]
                );
                return 2;
            }
        }
        i += 1;
    }
    let Some(command) = argv.get(i).cloned() else {
        eprintln!("Usage: bench [OPTIONS] COMMAND [ARGS]...\n\nError: Missing command.");
        return 2;
    };
    let rest = &argv[i + 1..];
    let bench = sim::bench_dir();
    let settings = match Settings::load(&bench) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("frappe-sim: invalid settings: {e:#}");
            return 2;
        }
    };
    let mut ctx = Ctx {
        bench,
        settings,
        site,
    };
    if command == "serve" {
        return match parse(&SERVE, rest) {
            Parsed::Exit(c) => c,
            Parsed::Args(a) => serve(&ctx, &a).await,
        };
    }

    let started = chrono::Utc::now();
    let redacted = sim::redact_argv(&argv);
    let log_site = ctx.site.clone().or_else(|| match command.as_str() {
        "new-site" | "drop-site" => rest.iter().find(|a| !a.starts_with('-')).cloned(),
        _ => None,
    });
    let pid = std::process::id();
    sim::log_command(
        &ctx.bench,
        &json!({"phase": "start", "start": started.to_rfc3339(), "pid": pid, "command": command,
                "site": log_site, "argv": redacted}),
    );
    let code = dispatch(&mut ctx, &command, rest).await;
    let _ = std::io::stdout().flush();
    sim::log_command(
        &ctx.bench,
        &json!({"phase": "end", "start": started.to_rfc3339(), "end": chrono::Utc::now().to_rfc3339(),
                "pid": pid, "command": command, "site": log_site, "argv": redacted, "exit_code": code}),
    );
    code
}

async fn dispatch(ctx: &mut Ctx, command: &str, rest: &[String]) -> i32 {
    let spec: &Spec = match command {
        "new-site" => &NEW_SITE,
        "install-app" => &INSTALL_APP,
        "list-apps" => &LIST_APPS,
        "set-config" => &SET_CONFIG,
        "set-maintenance-mode" => &MAINTENANCE,
        "backup" => &BACKUP,
        "drop-site" => &DROP_SITE,
        "execute" => &EXECUTE,
        "add-system-manager" => &ADD_SYSTEM_MANAGER,
        "set-password" => &SET_PASSWORD,
        "sim-init" => &SIM_INIT,
        "sim-purge" => &SIM_PURGE,
        other => {
            eprintln!(
                "Usage: bench [OPTIONS] COMMAND [ARGS]...\nTry 'bench --help' for help.\n\nError: No such command '{other}'."
            );
            return 2;
        }
    };
    let args = match parse(spec, rest) {
        Parsed::Args(a) => a,
        Parsed::Exit(c) => return c,
    };
    if command == "set-maintenance-mode"
        && let Some(s) = args.val("--site")
    {
        ctx.site = Some(s.to_owned());
    }
    match command {
        "new-site" => new_site(ctx, &args).await,
        "install-app" => install_app(ctx, &args).await,
        "list-apps" => list_apps(ctx, &args).await,
        "set-config" => set_config(ctx, &args).await,
        "set-maintenance-mode" => set_maintenance_mode(ctx, &args).await,
        "backup" => backup(ctx, &args).await,
        "drop-site" => drop_site(ctx, &args).await,
        "execute" => execute(ctx, &args).await,
        "add-system-manager" => add_system_manager(ctx, &args).await,
        "set-password" => set_password(ctx, &args).await,
        "sim-init" => sim_init(ctx, &args),
        _ => sim_purge(ctx, &args).await,
    }
}

/// A Python-looking traceback ending in `last` (what bench prints on stderr).
pub fn traceback(frames: &[&str], last: &str) -> String {
    let mut out = String::from(
        "Traceback (most recent call last):\n  File \"<frozen runpy>\", line 198, in _run_module_as_main\n  \
         File \"apps/frappe/frappe/utils/bench_helper.py\", line 114, in <module>\n    main()\n",
    );
    for f in frames {
        out.push_str("    ");
        out.push_str(f);
        out.push('\n');
    }
    out.push_str(last);
    out
}

fn injected(ctx: &Ctx, step: &str) -> Option<i32> {
    if ctx.settings.should_fail(&ctx.bench, step) {
        eprintln!(
            "{}",
            traceback(
                &["frappe_sim.inject(step)"],
                &format!("frappe_sim.InjectedError: injected failure in {step} (FRAPPE_SIM_FAIL)")
            )
        );
        Some(1)
    } else {
        None
    }
}

fn site_dir(ctx: &Ctx, site: &str) -> PathBuf {
    ctx.bench.join("sites").join(site)
}

/// The sim accepts what bench accepts as a directory name, minus path tricks.
fn plausible_site(site: &str) -> bool {
    !site.is_empty()
        && !site.starts_with('.')
        && !site.contains('/')
        && !site.contains('\0')
        && site != "assets"
        && !site.ends_with(".json")
        && !site.ends_with(".txt")
}

fn write_config(path: &Path, config: &Map<String, Value>) -> std::io::Result<()> {
    std::fs::write(path, pylit::dumps_config(&Value::Object(config.clone())))
}

fn available_apps(ctx: &Ctx) -> Vec<String> {
    match std::fs::read_to_string(ctx.bench.join("sites/apps.txt")) {
        Ok(t) => t
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        Err(_) => vec!["frappe".into(), "erpnext".into(), "hrms".into()],
    }
}

fn print_app_not_found(app: &str) {
    println!(
        "Could not find app \"{app}\": \nNo module named '{app}'\nAn error occurred while installing {app}: \
         No module named '{app}'\nTraceback with variables (most recent call last):\n    \
         app_hooks = get_module(f\"{{app}}.hooks\")\n      app = '{app}'\nbuiltins.ModuleNotFoundError: No module named '{app}'"
    );
}

/// An open site: its name, config and a connection as its DB user.
struct OpenSite {
    name: String,
    config: Map<String, Value>,
    conn: MySqlConnection,
}

/// `--site S` resolution like frappe: missing dir → `Site S does not exist!` on stdout, exit 1;
/// unreachable database → pymysql traceback, exit 1.
async fn open_site(ctx: &Ctx) -> Result<OpenSite, i32> {
    let Some(site) = ctx.site.clone() else {
        eprintln!("Please specify --site sitename");
        return Err(1);
    };
    let dir = site_dir(ctx, &site);
    if !plausible_site(&site) || !dir.join("site_config.json").is_file() {
        println!("Site {site} does not exist!");
        ctx.settings
            .delay("no-such-site", timing::NO_SUCH_SITE)
            .await;
        return Err(1);
    }
    let config = store::read_json(&dir.join("site_config.json")).unwrap_or_default();
    match store::connect_site(&ctx.bench, &config).await {
        Ok(conn) => Ok(OpenSite {
            name: site,
            config,
            conn,
        }),
        Err(e) => {
            eprintln!(
                "{}",
                traceback(
                    &[
                        "frappe.connect()",
                        "return pymysql.connect(**self.get_connection_settings())"
                    ],
                    &store::pymysql_error(&e)
                )
            );
            Err(1)
        }
    }
}

async fn new_site(ctx: &Ctx, a: &Args) -> i32 {
    let site = a.pos[0].clone();
    if !plausible_site(&site) {
        eprintln!(
            "{}",
            traceback(
                &["_new_site("],
                &format!("frappe.exceptions.InvalidSitePath: invalid site name {site:?}")
            )
        );
        return 1;
    }
    let dir = site_dir(ctx, &site);
    let force = a.flag("--force");
    if dir.exists() && !force {
        println!("Site {site} already exists");
        ctx.settings
            .delay("no-such-site", Duration::from_millis(360))
            .await;
        return 1;
    }
    let Some(admin_password) = a.val("--admin-password").map(str::to_owned) else {
        eprintln!(
            "{}",
            traceback(
                &["admin_password = getpass.getpass(\"Set Administrator password: \")"],
                "EOFError"
            )
        );
        return 1;
    };
    // An empty `--db-root-password=` counts as none: bench prompts, and with stdin closed the
    // prompt aborts (measured on frappe 15.44). A configuration error, never transient.
    let Some(root_password) = a
        .val("--db-root-password")
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
    else {
        print!("MySQL root password: ");
        eprintln!("Aborted!");
        return 1;
    };
    let root_user = a.val("--db-root-username").unwrap_or("root").to_owned();
    let db_name = a.val("--db-name").map_or_else(
        || {
            let abs = std::fs::canonicalize(&ctx.bench)
                .unwrap_or_else(|_| ctx.bench.clone())
                .join("sites")
                .join(&site);
            format!(
                "_{}",
                &hex::encode(Sha256::digest(abs.to_string_lossy().as_bytes()))[..16]
            )
        },
        str::to_owned,
    );
    let db_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    if !db_ok(&db_name) {
        eprintln!(
            "{}",
            traceback(
                &["setup_database(force, verbose, no_mariadb_socket)"],
                &format!("Exception: invalid database name {db_name:?}")
            )
        );
        return 1;
    }
    let db_password = a
        .val("--db-password")
        .map_or_else(|| store::random_alnum(16), str::to_owned);
    if !db_password.bytes().all(|b| b.is_ascii_alphanumeric()) {
        eprintln!("frappe-sim: --db-password must be alphanumeric");
        return 1;
    }
    let apps: Vec<String> = a.all("--install-app").to_vec();

    // Like frappe: the site directory and its config exist before the database does, which is
    // why a failed new-site leaves `sites/<site>/` behind.
    for sub in [
        "public/files",
        "private/files",
        "private/backups",
        "logs",
        "locks",
    ] {
        if let Err(e) = std::fs::create_dir_all(dir.join(sub)) {
            eprintln!(
                "{}",
                traceback(&["os.makedirs(path)"], &format!("OSError: {e}"))
            );
            return 1;
        }
    }
    sim::touch(&dir.join("locks/bench_new_site.lock"));
    // A fault for tests: a directory where frappe's site_config lock file belongs makes every
    // later config write to the site fail, as a broken site directory does on a real bench.
    if ctx.settings.should_fail(&ctx.bench, "site-config-lock") {
        let _ = std::fs::create_dir_all(dir.join("locks/site_config.lock"));
    }
    let mut config = Map::new();
    config.insert("db_name".into(), json!(db_name));
    config.insert("db_password".into(), json!(db_password));
    config.insert(
        "db_type".into(),
        json!(a.val("--db-type").unwrap_or("mariadb")),
    );
    if let Some(h) = a.val("--db-host") {
        config.insert("db_host".into(), json!(h));
    }
    if let Some(p) = a.val("--db-port") {
        config.insert(
            "db_port".into(),
            p.parse::<u16>().map_or_else(|_| json!(p), |n| json!(n)),
        );
    }
    if let Err(e) = write_config(&dir.join("site_config.json"), &config) {
        eprintln!(
            "{}",
            traceback(&["json.dump(config)"], &format!("OSError: {e}"))
        );
        return 1;
    }

    // Most of a real new-site is spent creating tables after the database exists; a new-site
    // killed then leaves a half-made site (config + partial database, no `frappe` installed),
    // so the wait is split the same way.
    let _running = sim::NewSiteRunning::start(&ctx.bench);
    let total = timing::NEW_SITE + timing::INSTALL_APP * apps.len() as u32;
    ctx.settings.delay("new-site", total / 5).await;
    if let Some(code) = injected(ctx, "new-site") {
        return code;
    }

    let (host, port) = store::db_address(&ctx.bench, Some(&config));
    let mut root = match store::connect_root(&host, port, &root_user, &root_password).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "{}",
                traceback(
                    &[
                        "_new_site(",
                        "install_db(",
                        "setup_database(force, verbose, no_mariadb_socket)",
                        "if force or (db_name not in dbman.get_database_list()):",
                        "return pymysql.connect(**self.get_connection_settings())",
                        "raise errorclass(errno, errval)"
                    ],
                    &store::pymysql_error(&e).replace("@'127.0.0.1'", "@'localhost'")
                )
            );
            return 1;
        }
    };
    match store::database_exists(&mut root, &db_name).await {
        Ok(true) if !force => {
            eprintln!(
                "{}",
                traceback(
                    &[
                        "_new_site(",
                        "install_db(",
                        "setup_database(force, verbose, no_mariadb_socket)",
                        "raise Exception(f\"Database {db_name} already exists\")"
                    ],
                    &format!("Exception: Database {db_name} already exists")
                )
            );
            return 1;
        }
        Ok(true) => {
            if let Err(e) = store::drop_site_db(&mut root, &db_name).await {
                eprintln!(
                    "{}",
                    traceback(&["drop_database(db_name)"], &store::pymysql_error(&e))
                );
                return 1;
            }
        }
        Ok(false) => {}
        Err(e) => {
            eprintln!(
                "{}",
                traceback(&["get_database_list()"], &store::pymysql_error(&e))
            );
            return 1;
        }
    }
    let available = available_apps(ctx);
    if let Some(missing) = apps.iter().find(|app| !available.contains(app)) {
        print_app_not_found(missing);
        return 1;
    }
    if let Err(e) = store::create_site_db(&mut root, &db_name, &db_password).await {
        eprintln!(
            "{}",
            traceback(
                &["setup_database(force, verbose, no_mariadb_socket)"],
                &store::pymysql_error(&e)
            )
        );
        return 1;
    }
    let result: Result<(), sqlx::Error> = async {
        let mut conn = store::connect_site(&ctx.bench, &config).await?;
        let mut db = SiteDb { conn: &mut conn };
        let admin = store::new_user_doc(
            "Administrator",
            "Administrator",
            None,
            "System User",
            &["Administrator".to_owned(), "System Manager".to_owned()],
            "Administrator",
        );
        db.insert_doc("User", "Administrator", &admin).await?;
        db.set_password("Administrator", &admin_password).await?;
        // Stallable on its own (`new-site-tables`), to leave a half-made site behind in tests.
        ctx.settings
            .delay("new-site-tables", total - total / 5)
            .await;
        db.add_installed_app("frappe").await?;
        for app in &apps {
            db.add_installed_app(app).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        eprintln!("{}", traceback(&["install_db("], &store::pymysql_error(&e)));
        return 1;
    }
    println!(
        "Warning: MariaDB version ['10.11', '19'] is more than 10.8 which is not yet tested with Frappe Framework."
    );
    println!("\nInstalling frappe...");
    let frame = |pct: usize| {
        let filled = pct * 40 / 100;
        format!(
            "Updating DocTypes for frappe        : [{}{}] {pct}%",
            "=".repeat(filled),
            " ".repeat(40 - filled)
        )
    };
    print!("{}\r{}\r{}\n", frame(10), frame(55), frame(100));
    println!("Updating Dashboard for frappe");
    for app in &apps {
        println!("\nInstalling {app}...\nUpdating Dashboard for {app}");
    }
    println!("*** Scheduler is disabled ***");
    0
}

async fn install_app(ctx: &Ctx, a: &Args) -> i32 {
    let mut site = match open_site(ctx).await {
        Ok(s) => s,
        Err(c) => return c,
    };
    let available = available_apps(ctx);
    for app in &a.pos {
        let mut db = SiteDb {
            conn: &mut site.conn,
        };
        let installed = match db.installed_apps().await {
            Ok(apps) => apps,
            Err(e) => {
                eprintln!(
                    "{}",
                    traceback(&["frappe.get_installed_apps()"], &store::pymysql_error(&e))
                );
                return 1;
            }
        };
        if installed.contains(app) {
            ctx.settings
                .delay("install-app", timing::ALREADY_INSTALLED)
                .await;
            println!("App {app} already installed");
            continue;
        }
        if !available.contains(app) {
            ctx.settings
                .delay("install-app", Duration::from_millis(690))
                .await;
            print_app_not_found(app);
            return 1;
        }
        ctx.settings.delay("install-app", timing::INSTALL_APP).await;
        if let Some(code) = injected(ctx, "install-app") {
            return code;
        }
        if let Err(e) = db.add_installed_app(app).await {
            eprintln!(
                "{}",
                traceback(&["install_app(app)"], &store::pymysql_error(&e))
            );
            return 1;
        }
        println!("\nInstalling {app}...\nUpdating Dashboard for {app}");
    }
    0
}

async fn list_apps(ctx: &Ctx, a: &Args) -> i32 {
    let mut site = match open_site(ctx).await {
        Ok(s) => s,
        Err(c) => return c,
    };
    ctx.settings.delay("list-apps", timing::LIST_APPS).await;
    if a.val("--format") == Some("json") {
        // Like frappe 15.44: reads the (empty) Installed Applications single.
        println!("{{\n \"{}\": []\n}}", site.name);
        return 0;
    }
    match (SiteDb {
        conn: &mut site.conn,
    })
    .installed_apps()
    .await
    {
        Ok(apps) => {
            println!("\n{}\n", apps.join("\n"));
            0
        }
        Err(e) => {
            eprintln!(
                "{}",
                traceback(&["frappe.get_installed_apps()"], &store::pymysql_error(&e))
            );
            1
        }
    }
}

async fn set_config(ctx: &Ctx, a: &Args) -> i32 {
    let (key, raw) = (&a.pos[0], &a.pos[1]);
    let value = if a.flag("--parse") {
        match pylit::parse(raw) {
            Ok(v) => v,
            Err(e) => {
                eprintln!(
                    "{}",
                    traceback(
                        &["value = frappe.safe_eval(value)"],
                        &format!("SyntaxError: {e}")
                    )
                );
                return 1;
            }
        }
    } else {
        Value::String(raw.clone())
    };
    let path = if a.flag("--global") {
        ctx.bench.join("sites/common_site_config.json")
    } else {
        let Some(site) = &ctx.site else {
            eprintln!("Please specify --site sitename");
            return 1;
        };
        let p = site_dir(ctx, site).join("site_config.json");
        if !plausible_site(site) || !p.is_file() {
            println!("Site {site} does not exist!");
            return 1;
        }
        p
    };
    ctx.settings.delay("set-config", timing::SET_CONFIG).await;
    // `set-config` fails any key; `set-config=<key>` only that one.
    if let Some(code) =
        injected(ctx, "set-config").or_else(|| injected(ctx, &format!("set-config={key}")))
    {
        return code;
    }
    update_config(&path, |c| {
        c.insert(key.clone(), value);
    })
}

fn update_config(path: &Path, f: impl FnOnce(&mut Map<String, Value>)) -> i32 {
    let mut config = store::read_json(path).unwrap_or_default();
    f(&mut config);
    // Write then rename, so the HTTP server never reads a half-written file.
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    match write_config(&tmp, &config).and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "{}",
                traceback(
                    &["update_site_config(key, value)"],
                    &format!("OSError: {e}")
                )
            );
            1
        }
    }
}

async fn set_maintenance_mode(ctx: &Ctx, a: &Args) -> i32 {
    let on = match a.pos[0].as_str() {
        "on" => true,
        "off" => false,
        other => {
            return usage_error(
                &MAINTENANCE,
                &format!("Invalid value for '{{on|off}}': '{other}' is not one of 'on', 'off'."),
            );
        }
    };
    let Some(site) = &ctx.site else {
        eprintln!("Please specify --site sitename");
        return 1;
    };
    let path = site_dir(ctx, site).join("site_config.json");
    if !plausible_site(site) || !path.is_file() {
        println!("Site {site} does not exist!");
        return 1;
    }
    ctx.settings
        .delay("set-maintenance-mode", timing::MAINTENANCE)
        .await;
    if let Some(code) = injected(ctx, "set-maintenance-mode") {
        return code;
    }
    update_config(&path, |c| {
        c.insert("maintenance_mode".into(), json!(i32::from(on)));
    })
}

/// Writes the backup files and returns the summary lines bench prints.
async fn take_backup(ctx: &Ctx, site: &mut OpenSite, with_files: bool) -> Result<String, String> {
    let dir = site_dir(ctx, &site.name);
    let backups = dir.join("private/backups");
    std::fs::create_dir_all(&backups).map_err(|e| format!("OSError: {e}"))?;
    let now = chrono::Local::now();
    let stem = format!(
        "{}-{}",
        now.format("%Y%m%d_%H%M%S"),
        site.name.replace('.', "_")
    );
    let dump = (SiteDb {
        conn: &mut site.conn,
    })
    .dump()
    .await
    .map_err(|e| store::pymysql_error(&e))?;
    let mut parts: Vec<(&str, String, Vec<u8>)> = vec![
        (
            "Config",
            format!("{stem}-site_config_backup.json"),
            pylit::dumps_config(&Value::Object(site.config.clone())).into_bytes(),
        ),
        (
            "Database",
            format!("{stem}-database.sql.gz"),
            archive::gzip_stored(dump.as_bytes()),
        ),
    ];
    if with_files {
        parts.push((
            "Public",
            format!("{stem}-files.tar"),
            archive::tar_dir(
                &dir.join("public/files"),
                &format!("{}/public/files", site.name),
            ),
        ));
        parts.push((
            "Private",
            format!("{stem}-private-files.tar"),
            archive::tar_dir(
                &dir.join("private/files"),
                &format!("{}/private/files", site.name),
            ),
        ));
    }
    let mut rows = Vec::new();
    for (title, file, data) in &parts {
        std::fs::write(backups.join(file), data).map_err(|e| format!("OSError: {e}"))?;
        rows.push((
            *title,
            format!("./{}/private/backups/{file}", site.name),
            archive::human_size(data.len() as u64),
        ));
    }
    let width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut out = format!(
        "Backup Summary for {} at {}\n",
        site.name,
        now.format("%Y-%m-%d %H:%M:%S%.6f")
    );
    for (title, path, size) in rows {
        out.push_str(&format!("{title:<8}: {path:<width$} {size}\n"));
    }
    Ok(out)
}

async fn backup(ctx: &Ctx, a: &Args) -> i32 {
    let mut site = match open_site(ctx).await {
        Ok(s) => s,
        Err(c) => return c,
    };
    ctx.settings.delay("backup", timing::BACKUP).await;
    if let Some(code) = injected(ctx, "backup") {
        return code;
    }
    let with_files = a.flag("--with-files");
    match take_backup(ctx, &mut site, with_files).await {
        Ok(summary) => {
            print!("{summary}");
            println!(
                "Backup for Site {} has been successfully completed{}",
                site.name,
                if with_files { " with files" } else { "" }
            );
            0
        }
        Err(e) => {
            eprintln!("{}", traceback(&["odb.take_dump()"], &e));
            1
        }
    }
}

async fn drop_site(ctx: &mut Ctx, a: &Args) -> i32 {
    let name = a.pos[0].clone();
    let dir = site_dir(ctx, &name);
    if !plausible_site(&name) || !dir.join("site_config.json").is_file() {
        eprintln!(
            "{}",
            traceback(
                &[
                    "_drop_site(site, db_root_username, db_root_password, archived_sites_path, force, no_backup)",
                    "frappe.init(site=site)",
                    "local.conf = _dict(get_site_config())",
                    "raise IncorrectSitePath(f\"{local.site} does not exist\")"
                ],
                &format!(
                    "frappe.exceptions.IncorrectSitePath: 404 Not Found: {name} does not exist"
                )
            )
        );
        return 1;
    }
    let no_backup = a.flag("--no-backup");
    let force = a.flag("--force");
    ctx.settings
        .delay(
            "drop-site",
            if no_backup {
                timing::DROP_SITE_NO_BACKUP
            } else {
                timing::DROP_SITE
            },
        )
        .await;
    if let Some(code) = injected(ctx, "drop-site") {
        return code;
    }
    let config = store::read_json(&dir.join("site_config.json")).unwrap_or_default();
    let db_name = config
        .get("db_name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !no_backup {
        ctx.site = Some(name.clone());
        match open_site(ctx).await {
            Ok(mut site) => {
                println!("Taking backup of {name}");
                let (host, port) = store::db_address(&ctx.bench, Some(&config));
                let stem = format!(
                    "{}-{}",
                    chrono::Local::now().format("%Y%m%d_%H%M%S"),
                    name.replace('.', "_")
                );
                println!(
                    "set -o pipefail; /usr/bin/mariadb-dump --user={db_name} --host={host} --port={port} --password=********** \
                     --single-transaction --quick --lock-tables=false {db_name} | /usr/bin/gzip >> ./{name}/private/backups/{stem}-database.sql.gz\n"
                );
                match take_backup(ctx, &mut site, true).await {
                    Ok(summary) => print!("{summary}"),
                    Err(e) if !force => {
                        eprintln!("{}", traceback(&["odb.take_dump()"], &e));
                        return 1;
                    }
                    Err(_) => {}
                }
            }
            Err(code) if !force => return code,
            Err(_) => {}
        }
    }
    let root_user = a.val("--db-root-username").unwrap_or("root");
    let root_password = a.val("--db-root-password").unwrap_or_default();
    let (host, port) = store::db_address(&ctx.bench, Some(&config));
    let mut root = match store::connect_root(&host, port, root_user, root_password).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "{}",
                traceback(
                    &[
                        "_drop_site(",
                        "drop_user_and_database(frappe.conf.db_name, db_root_username, db_root_password)"
                    ],
                    &store::pymysql_error(&e).replace("@'127.0.0.1'", "@'localhost'")
                )
            );
            return 1;
        }
    };
    println!("Dropping site database and user");
    let db_ok = !db_name.is_empty()
        && db_name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if db_ok && let Err(e) = store::drop_site_db(&mut root, &db_name).await {
        eprintln!(
            "{}",
            traceback(&["drop_user_and_database("], &store::pymysql_error(&e))
        );
        return 1;
    }
    let archive_root = a.val("--archived-sites-path").map_or_else(
        || absolute(&ctx.bench).join("archived/sites"),
        PathBuf::from,
    );
    if let Err(e) = std::fs::create_dir_all(&archive_root) {
        eprintln!(
            "{}",
            traceback(
                &["move(archived_sites_path, site)"],
                &format!("OSError: {e}")
            )
        );
        return 1;
    }
    println!("Moving site to archive under {}", archive_root.display());
    let mut target = archive_root.join(&name);
    let mut n = 1;
    while target.exists() {
        target = archive_root.join(format!("{name}{n}"));
        n += 1;
    }
    if let Err(e) = std::fs::rename(&dir, &target) {
        eprintln!(
            "{}",
            traceback(
                &["move(archived_sites_path, site)"],
                &format!("OSError: {e}")
            )
        );
        return 1;
    }
    0
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

async fn execute(ctx: &Ctx, a: &Args) -> i32 {
    let method = a.pos[0].clone();
    let mut site = match open_site(ctx).await {
        Ok(s) => s,
        Err(c) => return c,
    };
    // bench eval()s --args; on a NameError the raw text becomes the single argument.
    let args: Vec<Value> = match a.val("--args") {
        None => vec![],
        Some(raw) => match pylit::parse(raw) {
            Ok(Value::Array(items)) => items,
            Ok(other) => vec![other],
            Err(_) => vec![Value::String(raw.to_owned())],
        },
    };
    let kwargs: Map<String, Value> = match a.val("--kwargs") {
        None => Map::new(),
        Some(raw) => match pylit::parse(raw) {
            Ok(Value::Object(m)) => m,
            _ => {
                eprintln!(
                    "{}",
                    traceback(&["kwargs = eval(kwargs)"], "SyntaxError: invalid syntax")
                );
                return 1;
            }
        },
    };
    let leaf = method.rsplit('.').next().unwrap_or_default();
    let arg = |i: usize, name: &str| args.get(i).or_else(|| kwargs.get(name)).cloned();
    let mut db = SiteDb {
        conn: &mut site.conn,
    };
    let result: Result<Value, String> = match method.as_str() {
        "frappe.get_installed_apps" => {
            ctx.settings.delay("execute", timing::EXECUTE).await;
            db.installed_apps()
                .await
                .map(|a| json!(a))
                .map_err(|e| store::pymysql_error(&e))
        }
        "frappe.core.doctype.user.user.generate_keys" => {
            ctx.settings.delay("execute", timing::GENERATE_KEYS).await;
            if let Some(code) = injected(ctx, "execute:generate_keys") {
                return code;
            }
            let user = arg(0, "user")
                .map(|u| u.as_str().map_or_else(|| u.to_string(), str::to_owned))
                .unwrap_or_default();
            match db.generate_keys(&user).await {
                Ok(Some((_key, secret))) => Ok(json!({"api_secret": secret})),
                Ok(None) => Err(format!(
                    "frappe.exceptions.DoesNotExistError: User {user} not found"
                )),
                Err(e) => Err(store::pymysql_error(&e)),
            }
        }
        "frappe.db.get_value" => {
            ctx.settings.delay("execute", timing::EXECUTE).await;
            let doctype = arg(0, "doctype")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let name = arg(1, "filters")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let fields = arg(2, "fieldname").unwrap_or(json!("name"));
            let as_dict = arg(4, "as_dict").is_some_and(|v| v == json!(true) || v == json!(1));
            match db.get_doc(&doctype, &name).await {
                Ok(None) => Ok(Value::Null),
                Ok(Some(doc)) => {
                    let get = |f: &str| doc.get(f).cloned().unwrap_or(Value::Null);
                    Ok(match fields {
                        Value::Array(fs) => {
                            let names: Vec<String> = fs
                                .iter()
                                .filter_map(|f| f.as_str().map(str::to_owned))
                                .collect();
                            if as_dict {
                                Value::Object(names.iter().map(|f| (f.clone(), get(f))).collect())
                            } else {
                                Value::Array(names.iter().map(|f| get(f)).collect())
                            }
                        }
                        Value::String(f) if as_dict => json!({ f.clone(): get(&f) }),
                        Value::String(f) => get(&f),
                        _ => Value::Null,
                    })
                }
                Err(e) => Err(store::pymysql_error(&e)),
            }
        }
        // Runs the statement as the site's database user, as frappe.db.sql does, and prints
        // the rows as lists (integers stay integers; anything else is text).
        "frappe.db.sql" => {
            ctx.settings.delay("execute", timing::EXECUTE).await;
            let query = arg(0, "query")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            sql_rows(db.conn, &query)
                .await
                .map_err(|e| store::pymysql_error(&e))
        }
        // frappe/www/login.py (15.x): a key in the cache for `expiry` minutes, answered as
        // get_url("/api/method/frappe.www.login.login_via_key?key=<key>") — `host_name` when
        // the site has one, else the site's own name.
        "frappe.www.login._generate_temporary_login_link" => {
            ctx.settings.delay("execute", timing::EXECUTE).await;
            let email = arg(0, "email")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let minutes = arg(1, "expiry").and_then(|v| v.as_i64()).unwrap_or(0);
            let host = site
                .config
                .get("host_name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("http://{}", site.name), str::to_owned);
            match db.get_doc("User", &email).await {
                Ok(None) => Err(format!(
                    "frappe.exceptions.DoesNotExistError: User with email address {email} does not exist"
                )),
                Ok(Some(_)) => match db.new_login_key(&email, minutes).await {
                    Ok(key) => Ok(json!(format!(
                        "{host}/api/method/frappe.www.login.login_via_key?key={key}"
                    ))),
                    Err(e) => Err(store::pymysql_error(&e)),
                },
                Err(e) => Err(store::pymysql_error(&e)),
            }
        }
        "frappe.utils.background_jobs.get_jobs" => {
            ctx.settings.delay("execute", timing::EXECUTE).await;
            let site = arg(0, "site").and_then(|v| v.as_str().map(str::to_owned));
            Ok(crate::jobs::get_jobs(&ctx.bench, site.as_deref()))
        }
        _ => Err(format!("AttributeError: module has no attribute '{leaf}'")),
    };
    match result {
        Ok(v) => {
            if !falsy(&v) {
                println!("{}", pylit::dumps(&v));
            }
            0
        }
        Err(last) => {
            eprintln!(
                "{}",
                traceback(&["ret = frappe.get_attr(method)(*args, **kwargs)"], &last)
                    + "\n\nDuring handling of the above exception, another exception occurred:\n\n"
                    + &traceback(
                        &[
                            "ret = eval(method + \"(*args, **kwargs)\", globals(), locals())  # nosemgrep"
                        ],
                        &last
                    )
            );
            1
        }
    }
}

async fn add_system_manager(ctx: &Ctx, a: &Args) -> i32 {
    let email = a.pos[0].clone();
    let mut site = match open_site(ctx).await {
        Ok(s) => s,
        Err(c) => return c,
    };
    ctx.settings
        .delay("add-system-manager", timing::ADD_SYSTEM_MANAGER)
        .await;
    if let Some(code) = injected(ctx, "add-system-manager") {
        return code;
    }
    let first = a.val("--first-name").map_or_else(
        || email.split('@').next().unwrap_or_default().to_owned(),
        str::to_owned,
    );
    let doc = store::new_user_doc(
        &email,
        &first,
        a.val("--last-name"),
        "System User",
        &["System Manager".to_owned()],
        "Administrator",
    );
    let mut db = SiteDb {
        conn: &mut site.conn,
    };
    match db.insert_doc("User", &email, &doc).await {
        Ok(Insert::Inserted(_)) => {}
        Ok(Insert::Duplicate) => {
            eprintln!(
                "{}",
                traceback(
                    &[
                        "frappe.utils.user.add_system_manager(email, first_name, last_name, send_welcome_email, password)",
                        "user.insert()",
                        "raise frappe.DuplicateEntryError(self.doctype, self.name, e)"
                    ],
                    &format!(
                        "frappe.exceptions.DuplicateEntryError: ('User', '{email}', IntegrityError(1062, \"Duplicate entry '{email}' for key 'PRIMARY'\"))"
                    )
                )
            );
            return 1;
        }
        Err(e) => {
            eprintln!(
                "{}",
                traceback(&["user.insert()"], &store::pymysql_error(&e))
            );
            return 1;
        }
    }
    if let Some(pw) = a.val("--password")
        && let Err(e) = db.set_password(&email, pw).await
    {
        eprintln!(
            "{}",
            traceback(
                &["update_password(user, password)"],
                &store::pymysql_error(&e)
            )
        );
        return 1;
    }
    0
}

async fn set_password(ctx: &Ctx, a: &Args) -> i32 {
    let (user, password) = (a.pos[0].clone(), a.pos[1].clone());
    let mut site = match open_site(ctx).await {
        Ok(s) => s,
        Err(c) => return c,
    };
    ctx.settings
        .delay("set-password", timing::SET_PASSWORD)
        .await;
    let mut db = SiteDb {
        conn: &mut site.conn,
    };
    match db.get_doc("User", &user).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            eprintln!(
                "{}",
                traceback(
                    &["update_password(user, password)"],
                    &format!("frappe.exceptions.DoesNotExistError: User {user} not found")
                )
            );
            return 1;
        }
        Err(e) => {
            eprintln!(
                "{}",
                traceback(
                    &["update_password(user, password)"],
                    &store::pymysql_error(&e)
                )
            );
            return 1;
        }
    }
    match db.set_password(&user, &password).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "{}",
                traceback(
                    &["update_password(user, password)"],
                    &store::pymysql_error(&e)
                )
            );
            1
        }
    }
}

async fn serve(ctx: &Ctx, a: &Args) -> i32 {
    let port: u16 = match a.val("--port").unwrap_or("8000").parse() {
        Ok(p) => p,
        Err(_) => return usage_error(&SERVE, "Invalid value for '--port': not a valid integer."),
    };
    let bind = a.val("--bind").unwrap_or("127.0.0.1");
    match server::run(ctx.bench.clone(), ctx.settings.clone(), bind, port).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("frappe-sim serve: {e:#}");
            1
        }
    }
}

fn sim_init(ctx: &Ctx, a: &Args) -> i32 {
    let sites = ctx.bench.join("sites");
    let mut apps = vec!["frappe".to_owned()];
    for app in a
        .val("--apps")
        .unwrap_or("erpnext,hrms")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !apps.iter().any(|x| x == app) {
            apps.push(app.to_owned());
        }
    }
    let res = std::fs::create_dir_all(sites.join("assets"))
        .and_then(|()| std::fs::write(sites.join("apps.txt"), apps.join("\n")))
        .and_then(|()| {
            let common = sites.join("common_site_config.json");
            if common.exists() {
                Ok(())
            } else {
                std::fs::write(common, "{}")
            }
        })
        // The password this bench's MariaDB root asks for, where a fleet's
        // `db_root_password_file` can point.
        .and_then(|()| {
            std::fs::write(
                ctx.bench.join("db-root-password"),
                format!("{}\n", store::SIM_ROOT_PASSWORD),
            )
        });
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("frappe-sim sim-init: {e}");
            1
        }
    }
}

async fn sim_purge(ctx: &Ctx, a: &Args) -> i32 {
    let root_user = a.val("--db-root-username").unwrap_or("root");
    let root_password = a.val("--db-root-password").unwrap_or_default();
    let (host, port) = store::db_address(&ctx.bench, None);
    let mut root = match store::connect_root(&host, port, root_user, root_password).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("frappe-sim sim-purge: {}", store::pymysql_error(&e));
            return 1;
        }
    };
    let Ok(entries) = std::fs::read_dir(ctx.bench.join("sites")) else {
        return 0;
    };
    for e in entries.flatten() {
        if let Some(config) = store::read_json(&e.path().join("site_config.json"))
            && let Some(db) = config.get("db_name").and_then(Value::as_str)
            && db
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !db.is_empty()
        {
            let _ = store::drop_site_db(&mut root, db).await;
        }
    }
    0
}

async fn sql_rows(conn: &mut MySqlConnection, query: &str) -> Result<Value, sqlx::Error> {
    use sqlx::{Row as _, ValueRef as _};
    let rows = sqlx::query(query).fetch_all(&mut *conn).await?;
    let mut out = Vec::new();
    for row in rows {
        let mut cells = Vec::new();
        for (i, _) in row.columns().iter().enumerate() {
            let cell = if row.try_get_raw(i).map(|v| v.is_null()).unwrap_or(true) {
                Value::Null
            } else if let Ok(n) = row.try_get::<u64, _>(i) {
                json!(n)
            } else if let Ok(n) = row.try_get::<i64, _>(i) {
                json!(n)
            } else if let Ok(t) = row.try_get::<String, _>(i) {
                json!(t)
            } else {
                Value::Null
            };
            cells.push(cell);
        }
        out.push(Value::Array(cells));
    }
    Ok(Value::Array(out))
}
