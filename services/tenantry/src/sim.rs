//! frappe-sim as the dev bench: `tenantry dev` uses it when no fleet file names real benches.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where the frappe-sim binary is: `FRAPPE_SIM_BIN`, else next to this executable (cargo puts
/// every workspace binary in the same target directory; tests run from its `deps/`).
pub fn locate_frappe_sim() -> anyhow::Result<PathBuf> {
    locate("frappe-sim", "FRAPPE_SIM_BIN")
}

/// Where the `name` binary is: `$env`, else next to this executable (or one directory up).
fn locate(name: &str, env: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("cannot locate the running executable")?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    for _ in 0..2 {
        if let Some(d) = &dir {
            let candidate = d.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
            dir = d.parent().map(Path::to_path_buf);
        }
    }
    bail!(
        "{name} not found next to {}; build it with `cargo build -p {name}` or set {env}",
        exe.display()
    )
}

/// A frappe-sim bench directory with its REST server running.
pub struct SimBench {
    /// The bench directory (holds `sites/`).
    pub dir: PathBuf,
    /// The frappe-sim binary, used as the bench's `bench` command.
    pub bin: PathBuf,
    /// Base URL of its REST server.
    pub base_url: String,
    /// The port it listens on (browsers reach `http://<site>:<port>`: `*.localhost` is
    /// loopback to them).
    pub port: u16,
    // Killed when the bench is dropped, so `tenantry dev` never leaves a server behind.
    _server: Child,
}

impl SimBench {
    /// Initialises `dir` as a bench (once) and starts `frappe-sim serve` on `port` (0 = any).
    pub async fn start(dir: &Path, port: u16, apps: &str) -> anyhow::Result<Self> {
        let bin = locate_frappe_sim()?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Benches made before sim-init wrote the root password file are initialised again
        // (sim-init keeps what is there).
        if !dir.join("sites").is_dir() || !dir.join("db-root-password").is_file() {
            let status = Command::new(&bin)
                .args(["sim-init", "--apps", apps])
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .await
                .context("cannot run frappe-sim sim-init")?;
            if !status.success() {
                bail!("frappe-sim sim-init failed in {}", dir.display());
            }
        }
        let mut server = Command::new(&bin)
            .args(["serve", "--port", &port.to_string()])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start frappe-sim serve")?;
        let stdout = server
            .stdout
            .take()
            .context("frappe-sim serve has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
            .await
            .context("frappe-sim serve did not start within 20 s")??
            .unwrap_or_default();
        let Some(base_url) = first
            .trim()
            .strip_prefix("Listening on ")
            .map(str::to_owned)
        else {
            bail!("frappe-sim serve did not start (is port {port} free?)");
        };
        // Keep draining its stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let port = base_url
            .rsplit_once(':')
            .and_then(|(_, p)| p.trim_end_matches('/').parse().ok())
            .with_context(|| format!("frappe-sim listens on {base_url}, which names no port"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            bin,
            port,
            base_url,
            _server: server,
        })
    }
}

/// The Authentik double (`authentik-fake`) as the dev Authentik, when no real one is configured.
/// Its objects live in memory: a restart of `tenantry dev` forgets them.
pub struct AuthentikFake {
    /// Its API base URL (the API is under `/api/v3/`).
    pub base_url: String,
    _server: Child,
}

impl AuthentikFake {
    /// Starts `authentik-fake --listen 127.0.0.1:<port>` with `token` as its API token.
    pub async fn start(port: u16, token: &secrecy::SecretString) -> anyhow::Result<Self> {
        use secrecy::ExposeSecret as _;
        let bin = locate("authentik-fake", "AUTHENTIK_FAKE_BIN")?;
        let mut server = Command::new(&bin)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--page-size",
                "20",
            ])
            .env("AUTHENTIK_FAKE_TOKEN", token.expose_secret())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start authentik-fake")?;
        let stdout = server
            .stdout
            .take()
            .context("authentik-fake has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
            .await
            .context("authentik-fake did not start within 20 s")??
            .unwrap_or_default();
        let Some(base_url) = first
            .trim()
            .strip_prefix("listening on ")
            .map(str::to_owned)
        else {
            bail!("authentik-fake did not start (is port {port} free?)");
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            base_url,
            _server: server,
        })
    }
}
