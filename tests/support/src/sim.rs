//! frappe-sim benches for tests: a bench directory (temp dir) with `frappe-sim serve` on port 0,
//! readers for its command log, and a MariaDB probe.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use frappe::RunnerConfig;

/// The frappe-sim binary: `FRAPPE_SIM_BIN`, or next to the running test's target dir (built on
/// demand with cargo when missing, e.g. `cargo test -p provisioner` on a fresh checkout).
pub fn frappe_sim_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FRAPPE_SIM_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/frappe-sim
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = profile_dir.join("frappe-sim");
    if !bin.exists() {
        static BUILD: std::sync::Once = std::sync::Once::new();
        BUILD.call_once(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut args = vec!["build", "-p", "frappe-sim"];
            if profile_dir.ends_with("release") {
                args.push("--release");
            }
            let st = Command::new(cargo)
                .args(args)
                .status()
                .expect("run cargo build -p frappe-sim");
            assert!(st.success(), "cargo build -p frappe-sim failed");
        });
    }
    assert!(bin.exists(), "frappe-sim not found at {}", bin.display());
    bin
}

/// A frappe-sim bench dir with its REST server. Dropping it stops the server and drops every
/// site database left behind.
pub struct SimBench {
    /// The bench dir.
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    server: Child,
}

impl SimBench {
    /// A bench with `apps` available (comma-separated), and `sim.toml` settings (e.g.
    /// `profile = "realistic"`).
    pub fn spawn(apps: &str, sim_toml: Option<&str>) -> Self {
        let sim = frappe_sim_bin();
        let dir = tempfile::tempdir().expect("tempdir");
        let st = Command::new(&sim)
            .args(["sim-init", "--apps", apps])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .status()
            .expect("frappe-sim sim-init");
        assert!(st.success());
        if let Some(t) = sim_toml {
            std::fs::write(dir.path().join("sim.toml"), t).unwrap();
        }
        let (server, base_url) = serve(dir.path(), "0");
        assert!(!base_url.is_empty(), "frappe-sim serve did not start");
        Self {
            dir,
            base_url,
            server,
        }
    }

    /// Writes `sim.toml` (failure injection etc.) and restarts the REST server on the same port,
    /// since `serve` reads its settings once; CLI commands read the file every time.
    pub fn set_sim_toml(&mut self, text: &str) {
        std::fs::write(self.path().join("sim.toml"), text).unwrap();
        // Counters of earlier injections must not carry over.
        let _ = std::fs::remove_file(self.path().join("sim-state.json"));
        let _ = self.server.kill();
        let _ = self.server.wait();
        let port = self.base_url.rsplit(':').next().unwrap().to_owned();
        // The old listener may linger for a moment after the kill: try the port a few times.
        for _ in 0..50 {
            let (server, url) = serve(self.path(), &port);
            if !url.is_empty() {
                self.server = server;
                assert_eq!(url, self.base_url);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("frappe-sim serve could not get port {port} back");
    }

    /// The bench directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A `local` runner for it.
    pub fn runner(&self) -> RunnerConfig {
        self.runner_with_env(BTreeMap::new())
    }

    /// A `local` runner for it whose commands get `env` (e.g. `FRAPPE_SIM_FAIL`).
    pub fn runner_with_env(&self, env: BTreeMap<String, String>) -> RunnerConfig {
        RunnerConfig::Local {
            bench_dir: self.path().to_path_buf(),
            bench_bin: frappe_sim_bin(),
            env,
            user: None,
        }
    }

    /// Site directories under `sites/`.
    pub fn site_dirs(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.path().join("sites"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "assets")
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// The site's `site_config.json` (`{}` when it has none).
    pub fn site_config(&self, site: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(
            self.path()
                .join("sites")
                .join(site)
                .join("site_config.json"),
        )
        .unwrap_or_else(|_| "{}".into());
        serde_json::from_str(&text).unwrap()
    }

    /// Parsed lines of `sim-commands.log`.
    pub fn command_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path().join("sim-commands.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The most commands that ever ran at once, from the log's start/end lines.
    pub fn max_concurrency(&self) -> usize {
        let mut edges: Vec<(chrono::DateTime<chrono::FixedOffset>, i32)> = Vec::new();
        for l in self.command_log() {
            if l["phase"] != "end" {
                continue;
            }
            let t = |k: &str| chrono::DateTime::parse_from_rfc3339(l[k].as_str().unwrap()).unwrap();
            edges.push((t("start"), 1));
            edges.push((t("end"), -1));
        }
        // Ends sort before starts at the same instant: touching intervals do not overlap.
        edges.sort();
        let (mut now, mut max) = (0i32, 0i32);
        for (_, d) in edges {
            now += d;
            max = max.max(now);
        }
        max as usize
    }

    /// Commands of one kind started for one site (a command whose parent was killed may die
    /// before it logs its end).
    pub fn started(&self, command: &str, site: &str) -> usize {
        self.command_log()
            .iter()
            .filter(|l| l["phase"] == "start" && l["command"] == command && l["site"] == site)
            .count()
    }

    /// The Social Login Key named `name` on `site` as stored, with `client_secret` in clear text
    /// (REST only ever shows it masked), or `None` if there is no such key. Reads the site's
    /// database the way frappe-sim keeps it: the document in `tabDoc`, the secret in `__Auth`.
    pub async fn social_login_key(&self, site: &str, name: &str) -> Option<serde_json::Value> {
        use sqlx::Connection;
        // The database name is formatted into the queries as an identifier: no backticks.
        let db = self.site_config(site)["db_name"].as_str()?.replace('`', "");
        let url =
            std::env::var("MARIADB_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
        let mut conn = sqlx::MySqlConnection::connect(&url)
            .await
            .expect("connect to MariaDB");
        let doc: Option<(String,)> = sqlx::query_as(&format!(
            "SELECT data FROM `{db}`.`tabDoc` WHERE doctype = 'Social Login Key' AND name = ?"
        ))
        .bind(name)
        .fetch_optional(&mut conn)
        .await
        .expect("read the site's tabDoc");
        let mut doc: serde_json::Value = serde_json::from_str(&doc?.0).expect("stored doc is JSON");
        let secret: Option<(String,)> = sqlx::query_as(&format!(
            "SELECT password FROM `{db}`.`__Auth` \
             WHERE doctype = 'Social Login Key' AND name = ? AND fieldname = 'client_secret'"
        ))
        .bind(name)
        .fetch_optional(&mut conn)
        .await
        .expect("read the site's __Auth");
        doc["client_secret"] = secret.map_or(serde_json::Value::Null, |(s,)| s.into());
        Some(doc)
    }

    /// Commands of one kind (e.g. `new-site`) that finished, for one site.
    pub fn commands(&self, command: &str, site: &str) -> usize {
        self.command_log()
            .iter()
            .filter(|l| l["phase"] == "end" && l["command"] == command && l["site"] == site)
            .count()
    }
}

/// Starts `frappe-sim serve` in `dir` on `port`; the URL is empty if it did not start.
fn serve(dir: &Path, port: &str) -> (Child, String) {
    let mut server = Command::new(frappe_sim_bin())
        .args(["serve", "--port", port])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("frappe-sim serve");
    let mut line = String::new();
    let _ = BufReader::new(server.stdout.take().unwrap()).read_line(&mut line);
    let url = line
        .trim()
        .strip_prefix("Listening on ")
        .unwrap_or_default()
        .to_owned();
    (server, url)
}

impl Drop for SimBench {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new(frappe_sim_bin())
            .args(["sim-purge", "--db-root-password="])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether MariaDB (`MARIADB_URL`, default root with an empty password at 127.0.0.1:3306) has
/// database `db`.
pub async fn mariadb_has(db: &str) -> bool {
    use sqlx::Connection;
    let url = std::env::var("MARIADB_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    let mut conn = sqlx::MySqlConnection::connect(&url)
        .await
        .expect("connect to MariaDB");
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?")
            .bind(db)
            .fetch_all(&mut conn)
            .await
            .expect("query MariaDB");
    !rows.is_empty()
}
