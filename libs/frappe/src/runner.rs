//! How a bench command reaches a bench: argv construction for `local`, `docker` and `ssh`,
//! execution with a timeout, output capture and secret redaction.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// What is printed instead of a secret.
pub const REDACTED: &str = "********";

/// Where a bench lives and how to reach it. Deserialises from config as
/// `{ kind = "local", bench_dir = "…" }`, `{ kind = "docker", compose_file, service }` or
/// `{ kind = "ssh", host, bench_dir }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunnerConfig {
    /// A bench directory on this host; `bench_bin` runs with the bench directory as cwd.
    Local {
        /// The bench directory (holds `sites/`, `apps/`).
        bench_dir: PathBuf,
        /// The bench executable (default `bench`; tests point it at `frappe-sim`).
        #[serde(default = "default_bench_bin")]
        bench_bin: PathBuf,
        /// Extra environment for every command (e.g. frappe-sim settings in tests).
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Run every command as this user (`runuser -u <user> --`, so the control plane may run
        /// as root while files under `sites/` are made by the bench's own user, as gunicorn
        /// needs). Give `bench_bin` as an absolute path: the user's login PATH is not read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// `docker compose -f <compose_file> exec -T [-w workdir] [-u user] <service> bench …`.
    Docker {
        /// The compose file naming the bench service.
        compose_file: PathBuf,
        /// The compose service that runs the bench (e.g. `backend`).
        service: String,
        /// Working directory inside the container (default: the image's, usually the bench).
        #[serde(default)]
        workdir: Option<String>,
        /// User inside the container (bench refuses root outside the bench dir).
        #[serde(default)]
        user: Option<String>,
        /// The bench executable inside the container.
        #[serde(default = "default_bench_bin")]
        bench_bin: PathBuf,
    },
    /// `ssh [-p port] [-i key] <user@host> -- cd <bench_dir> && bench …`, every remote word
    /// single-quoted (the remote side always goes through a shell).
    Ssh {
        /// Host (or `user@host`, or an alias from ~/.ssh/config).
        host: String,
        /// SSH port, if not 22 / the config's.
        #[serde(default)]
        port: Option<u16>,
        /// Private key file, if not the agent's / the config's.
        #[serde(default)]
        identity_file: Option<PathBuf>,
        /// The bench directory on the remote host.
        bench_dir: String,
        /// The bench executable on the remote host.
        #[serde(default = "default_bench_bin")]
        bench_bin: PathBuf,
    },
}

fn default_bench_bin() -> PathBuf {
    PathBuf::from("bench")
}

/// One argv word: plain, or a secret that is passed to the process but redacted everywhere else.
#[derive(Clone)]
pub enum Arg {
    /// Shown as is in logs and errors.
    Plain(String),
    /// Passed to the process; shown as [`REDACTED`].
    Secret(SecretString),
    /// `--flag=<secret>`: the flag is shown, the value redacted.
    SecretOpt(&'static str, SecretString),
}

impl Arg {
    fn expose(&self) -> String {
        match self {
            Self::Plain(s) => s.clone(),
            Self::Secret(s) => s.expose_secret().to_owned(),
            Self::SecretOpt(flag, s) => format!("{flag}={}", s.expose_secret()),
        }
    }

    fn redacted(&self) -> String {
        match self {
            Self::Plain(s) => s.clone(),
            Self::Secret(_) => REDACTED.to_owned(),
            Self::SecretOpt(flag, _) => format!("{flag}={REDACTED}"),
        }
    }

    fn secret(&self) -> Option<&str> {
        match self {
            Self::Plain(_) => None,
            Self::Secret(s) | Self::SecretOpt(_, s) => Some(s.expose_secret()),
        }
    }
}

impl fmt::Debug for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl<S: Into<String>> From<S> for Arg {
    fn from(s: S) -> Self {
        Self::Plain(s.into())
    }
}

/// A fully built process invocation (program + argv + cwd), ready to spawn.
#[derive(Clone)]
pub struct Invocation {
    /// The program to run on this host (`bench`, `docker` or `ssh`).
    pub program: PathBuf,
    /// Its argv (without argv\[0\]).
    pub args: Vec<Arg>,
    /// Working directory (the bench dir for `local`).
    pub cwd: Option<PathBuf>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
}

impl Invocation {
    /// The command line with secrets redacted, for logs and errors.
    pub fn redacted(&self) -> Vec<String> {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().map(Arg::redacted))
            .collect()
    }

    /// The argv as it will be passed (secrets exposed): tests only.
    pub fn exposed_args(&self) -> Vec<String> {
        self.args.iter().map(Arg::expose).collect()
    }

    /// Every secret value in this invocation, to scrub from captured output.
    // For ssh the secret args are shell-quoted (`'--flag=value'`), but remote output would
    // echo the raw value: scrub the quoted form, the unquoted one and the bare value.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in self.args.iter().filter_map(Arg::secret) {
            let unquoted = s
                .strip_prefix('\'')
                .and_then(|r| r.strip_suffix('\''))
                .map(|r| r.replace("'\\''", "'"))
                .unwrap_or_else(|| s.to_owned());
            let bare = unquoted
                .strip_prefix("--")
                .and_then(|r| r.split_once('='))
                .map(|(_, v)| v.to_owned());
            out.push(s.to_owned());
            out.push(unquoted);
            out.extend(bare);
        }
        out.retain(|s| !s.is_empty());
        // Longest first, so a value is never half-replaced by a shorter form of itself.
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out.dedup();
        out
    }
}

impl fmt::Debug for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invocation")
            .field("argv", &self.redacted())
            .field("cwd", &self.cwd)
            .finish()
    }
}

/// How a command is fenced on the bench host itself, so that it cannot outlive its time or run
/// beside another command on the same site — even when the process that started it is gone
/// (killed, or a docker/ssh client whose remote side runs on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// Time limit, enforced on the bench host by `timeout -k`: TERM at the limit, KILL
    /// [`KILL_GRACE`] later.
    pub timeout: Duration,
    /// Between the TERM at the limit and the KILL.
    pub kill_grace: Duration,
    /// Sites whose host-side lock the command holds for its whole run (`flock -n` on
    /// `sites/.tenantry-<site>.lock`); a lock held by another command fails at once with
    /// [`LOCK_BUSY_EXIT`].
    pub locked_sites: Vec<String>,
}

/// Time between `timeout`'s TERM and its KILL.
pub const KILL_GRACE: Duration = Duration::from_secs(10);

/// Exit code of a command whose site lock another command holds.
pub const LOCK_BUSY_EXIT: i32 = 75;

/// Exit codes of a command `timeout` ended (TERM'd, or KILLed after the grace).
pub const TIMEOUT_EXITS: [i32; 2] = [124, 137];

impl Guard {
    /// The same guard with another grace between TERM and KILL.
    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// A time limit and no lock.
    pub fn timeout(timeout: Duration) -> Self {
        Self {
            timeout,
            kill_grace: KILL_GRACE,
            locked_sites: Vec::new(),
        }
    }

    /// The same guard, also holding `site`'s lock.
    pub fn locking(mut self, site: &str) -> Self {
        self.locked_sites.push(site.to_owned());
        self
    }

    /// The latest the command can still be running after it starts: a lease guarding it must
    /// last this long (or outlive it some other way).
    pub fn outlives(&self) -> Duration {
        self.timeout + self.kill_grace
    }

    /// `timeout -k … flock … <program>`: the words put before the program. `timeout` comes
    /// first: it leads the process group everything below it runs in, so ending that group —
    /// at the limit on the host, or when a local caller gives up — ends the lock holder and
    /// the command together.
    fn prefix(&self, program: &str) -> (String, Vec<Arg>) {
        let secs = self.timeout.as_secs().max(1);
        let mut words: Vec<Arg> = vec![
            "-k".into(),
            format!("{}s", self.kill_grace.as_secs().max(1)).into(),
            format!("{secs}s").into(),
        ];
        for site in &self.locked_sites {
            words.extend([
                "flock".into(),
                "-n".into(),
                "-E".into(),
                LOCK_BUSY_EXIT.to_string().into(),
                lock_path(site).into(),
            ]);
        }
        words.push(program.into());
        ("timeout".to_owned(), words)
    }
}

/// The host-side lock file of `site`, relative to the bench directory (a dotfile in `sites/`,
/// which frappe never takes for a site).
pub fn lock_path(site: &str) -> String {
    format!("sites/.tenantry-{site}.lock")
}

/// Quotes one word for a POSIX shell: `'…'` with embedded `'` as `'\''`.
pub fn shell_quote(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

impl RunnerConfig {
    /// The bench directory when this process may change the bench's files itself: a local
    /// runner that does not switch user (files made here belong to the bench's user already).
    pub fn own_files(&self) -> Option<&Path> {
        match self {
            Self::Local {
                bench_dir,
                user: None,
                ..
            } => Some(bench_dir),
            _ => None,
        }
    }

    /// Checks what is passed to a command line: a local runner's `user` must be a plain user
    /// name (`[a-z_][a-z0-9_-]*`, at most 32).
    pub fn validate(&self) -> Result<(), String> {
        if let Self::Local {
            user: Some(user), ..
        } = self
        {
            let ok = !user.is_empty()
                && user.len() <= 32
                && user.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && user.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-'
                });
            if !ok {
                return Err(format!(
                    "runner user {user:?} is not a user name ([a-z_][a-z0-9_-]*, at most 32)"
                ));
            }
        }
        Ok(())
    }

    /// Builds the invocation of `bench <args…>` for this runner.
    pub fn bench_invocation(&self, args: Vec<Arg>) -> Invocation {
        let bench_bin = match self {
            Self::Local { bench_bin, .. }
            | Self::Docker { bench_bin, .. }
            | Self::Ssh { bench_bin, .. } => bench_bin.display().to_string(),
        };
        match self {
            Self::Local { user: Some(_), .. } => self.tool_invocation(&bench_bin, args),
            Self::Local {
                bench_dir,
                bench_bin,
                env,
                user: None,
            } => Invocation {
                program: bench_bin.clone(),
                args,
                cwd: Some(bench_dir.clone()),
                env: env.clone(),
            },
            _ => self.tool_invocation(&bench_bin, args),
        }
    }

    /// `bench <args…>` fenced by `guard` on the bench host.
    pub fn guarded_bench(&self, args: Vec<Arg>, guard: &Guard) -> Invocation {
        let bench_bin = match self {
            Self::Local { bench_bin, .. }
            | Self::Docker { bench_bin, .. }
            | Self::Ssh { bench_bin, .. } => bench_bin.display().to_string(),
        };
        self.guarded_tool(&bench_bin, args, guard)
    }

    /// A plain program (e.g. `mv`, `cat`) in the bench directory, fenced by `guard`.
    pub fn guarded_tool(&self, program: &str, args: Vec<Arg>, guard: &Guard) -> Invocation {
        let (first, mut words) = guard.prefix(program);
        words.extend(args);
        self.tool_invocation(&first, words)
    }

    /// Builds the invocation of a plain program (e.g. `mv`, `rm`) run in the bench directory.
    pub fn tool_invocation(&self, program: &str, args: Vec<Arg>) -> Invocation {
        match self {
            Self::Local {
                bench_dir,
                env,
                user: Some(user),
                ..
            } => {
                let mut argv: Vec<Arg> = vec!["-u".into(), user.clone().into(), "--".into()];
                argv.push(program.into());
                argv.extend(args);
                Invocation {
                    program: PathBuf::from("runuser"),
                    args: argv,
                    cwd: Some(bench_dir.clone()),
                    env: env.clone(),
                }
            }
            Self::Local { bench_dir, env, .. } => Invocation {
                program: PathBuf::from(program),
                args,
                cwd: Some(bench_dir.clone()),
                env: env.clone(),
            },
            Self::Docker {
                compose_file,
                service,
                workdir,
                user,
                ..
            } => {
                let mut argv: Vec<Arg> = vec![
                    "compose".into(),
                    "-f".into(),
                    compose_file.display().to_string().into(),
                    "exec".into(),
                    "-T".into(),
                ];
                if let Some(w) = workdir {
                    argv.extend(["-w".into(), w.clone().into()]);
                }
                if let Some(u) = user {
                    argv.extend(["-u".into(), u.clone().into()]);
                }
                argv.push(service.clone().into());
                argv.push(program.into());
                argv.extend(args);
                Invocation {
                    program: PathBuf::from("docker"),
                    args: argv,
                    cwd: None,
                    env: BTreeMap::new(),
                }
            }
            Self::Ssh {
                host,
                port,
                identity_file,
                bench_dir,
                ..
            } => {
                let mut argv: Vec<Arg> = vec!["-o".into(), "BatchMode=yes".into()];
                if let Some(p) = port {
                    argv.extend(["-p".into(), p.to_string().into()]);
                }
                if let Some(i) = identity_file {
                    argv.extend(["-i".into(), i.display().to_string().into()]);
                }
                argv.push(host.clone().into());
                argv.push("--".into());
                // ssh joins these words with spaces and hands them to the remote shell, so each
                // remote word is quoted here; `cd … &&` are the only unquoted shell tokens.
                argv.extend(["cd".into(), shell_quote(bench_dir).into(), "&&".into()]);
                argv.push(shell_quote(program).into());
                argv.extend(args.into_iter().map(|a| match a {
                    Arg::Plain(s) => Arg::Plain(shell_quote(&s)),
                    Arg::Secret(s) => Arg::Secret(shell_quote(s.expose_secret()).into()),
                    Arg::SecretOpt(flag, s) => {
                        Arg::Secret(shell_quote(&format!("{flag}={}", s.expose_secret())).into())
                    }
                }));
                Invocation {
                    program: PathBuf::from("ssh"),
                    args: argv,
                    cwd: None,
                    env: BTreeMap::new(),
                }
            }
        }
    }
}

/// What a finished command left behind. Secrets are already scrubbed from stdout and stderr.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// Exit code (`None` if killed by a signal).
    pub exit_code: Option<i32>,
    /// Captured stdout (scrubbed).
    pub stdout: String,
    /// Captured stderr (scrubbed).
    pub stderr: String,
    /// Wall-clock time.
    pub elapsed: Duration,
}

impl CommandOutput {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// Why a command could not be run to completion.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The program could not be started.
    #[error("failed to start {program}: {source}")]
    Spawn {
        /// The program name.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The command ran longer than its timeout and was killed.
    #[error("command timed out after {after:?}: {argv}")]
    Timeout {
        /// The timeout that expired.
        after: Duration,
        /// The redacted command line.
        argv: String,
    },
}

/// Replaces every secret in `text` with [`REDACTED`].
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        out = out.replace(s.as_str(), REDACTED);
    }
    out
}

/// Kills a process group on drop while armed (`Some(pid)`).
struct GroupKiller(Option<u32>);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `inv` with stdin `/dev/null`, capturing output, killing it after `timeout`.
pub async fn run(inv: &Invocation, timeout: Duration) -> Result<CommandOutput, RunError> {
    let mut cmd = tokio::process::Command::new(&inv.program);
    cmd.args(inv.args.iter().map(Arg::expose))
        .envs(&inv.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The child (and, via its own process group, anything it forks) must not outlive a
        // timeout or a dropped future.
        .kill_on_drop(true)
        .process_group(0);
    if let Some(cwd) = &inv.cwd {
        cmd.current_dir(cwd);
    }
    let argv = inv.redacted().join(" ");
    tracing::debug!(%argv, "running bench command");
    let started = Instant::now();
    let child = cmd.spawn().map_err(|source| RunError::Spawn {
        program: inv.program.display().to_string(),
        source,
    })?;
    let pid = child.id();
    // If this future is dropped before the command ends (a deadline, a cancelled task),
    // `kill_on_drop` kills only the direct child; this kills the rest of its process group.
    let mut group = GroupKiller(pid);
    let waited = tokio::time::timeout(timeout, child.wait_with_output()).await;
    group.0 = None;
    match waited {
        Ok(Ok(out)) => {
            let secrets = inv.secrets();
            let output = CommandOutput {
                exit_code: out.status.code(),
                stdout: scrub(&String::from_utf8_lossy(&out.stdout), &secrets),
                stderr: scrub(&String::from_utf8_lossy(&out.stderr), &secrets),
                elapsed: started.elapsed(),
            };
            tracing::debug!(%argv, exit_code = ?output.exit_code, elapsed = ?output.elapsed, "bench command finished");
            Ok(output)
        }
        Ok(Err(source)) => Err(RunError::Spawn {
            program: inv.program.display().to_string(),
            source,
        }),
        Err(_) => {
            // The future holding the child was dropped (kill_on_drop kills the leader); also
            // kill the rest of its process group, e.g. bench's Python grandchild.
            kill_group(pid);
            tracing::warn!(%argv, ?timeout, "bench command timed out and was killed");
            Err(RunError::Timeout {
                after: timeout,
                argv,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        s.to_owned().into()
    }

    #[test]
    fn local_runs_bench_in_the_bench_dir() {
        let cfg = RunnerConfig::Local {
            bench_dir: "/home/frappe/frappe-bench".into(),
            bench_bin: "bench".into(),
            env: BTreeMap::new(),
            user: None,
        };
        let inv = cfg.bench_invocation(vec![
            "--site".into(),
            "a.localhost".into(),
            "list-apps".into(),
        ]);
        assert_eq!(inv.program, PathBuf::from("bench"));
        assert_eq!(
            inv.cwd.as_deref(),
            Some(std::path::Path::new("/home/frappe/frappe-bench"))
        );
        assert_eq!(inv.exposed_args(), ["--site", "a.localhost", "list-apps"]);
    }

    #[test]
    fn docker_uses_compose_exec_without_tty() {
        let cfg = RunnerConfig::Docker {
            compose_file: "/srv/erp/compose.yml".into(),
            service: "backend".into(),
            workdir: Some("/home/frappe/frappe-bench".into()),
            user: Some("frappe".into()),
            bench_bin: "bench".into(),
        };
        let inv = cfg.bench_invocation(vec![
            "new-site".into(),
            "a.localhost".into(),
            Arg::SecretOpt("--admin-password", secret("s3cret")),
        ]);
        assert_eq!(inv.program, PathBuf::from("docker"));
        assert_eq!(
            inv.exposed_args(),
            [
                "compose",
                "-f",
                "/srv/erp/compose.yml",
                "exec",
                "-T",
                "-w",
                "/home/frappe/frappe-bench",
                "-u",
                "frappe",
                "backend",
                "bench",
                "new-site",
                "a.localhost",
                "--admin-password=s3cret"
            ]
        );
        assert!(!inv.redacted().join(" ").contains("s3cret"));
        assert!(format!("{inv:?}").contains("--admin-password=********"));
    }

    #[test]
    fn guarded_commands_end_and_lock_on_the_bench_host() {
        let guard = Guard::timeout(Duration::from_secs(300)).locking("a.localhost");
        assert_eq!(guard.outlives(), Duration::from_secs(310));
        let args = || vec!["new-site".into(), "a.localhost".into()];
        // Local: flock and timeout wrap bench in the bench directory.
        let local = RunnerConfig::Local {
            bench_dir: "/b".into(),
            bench_bin: "/usr/bin/bench".into(),
            env: BTreeMap::new(),
            user: None,
        }
        .guarded_bench(args(), &guard);
        assert_eq!(local.program, PathBuf::from("timeout"));
        assert_eq!(local.cwd, Some(PathBuf::from("/b")));
        assert_eq!(
            local.exposed_args(),
            [
                "-k",
                "10s",
                "300s",
                "flock",
                "-n",
                "-E",
                "75",
                "sites/.tenantry-a.localhost.lock",
                "/usr/bin/bench",
                "new-site",
                "a.localhost"
            ]
        );
        // Docker: inside the container, so killing `docker` here cannot leave it running.
        let docker = RunnerConfig::Docker {
            compose_file: "/c.yml".into(),
            service: "backend".into(),
            workdir: None,
            user: None,
            bench_bin: "bench".into(),
        }
        .guarded_bench(args(), &Guard::timeout(Duration::from_secs(60)));
        assert_eq!(
            docker.exposed_args()[6..],
            [
                "timeout",
                "-k",
                "10s",
                "60s",
                "bench",
                "new-site",
                "a.localhost"
            ]
        );
        // ssh: on the remote side, every word quoted.
        let ssh = RunnerConfig::Ssh {
            host: "frappe@b1".into(),
            port: None,
            identity_file: None,
            bench_dir: "/home/frappe/bench".into(),
            bench_bin: "bench".into(),
        }
        .guarded_bench(args(), &guard);
        let line = ssh.exposed_args().join(" ");
        assert!(
            line.ends_with(
                "&& 'timeout' '-k' '10s' '300s' 'flock' '-n' '-E' '75' 'sites/.tenantry-a.localhost.lock' 'bench' 'new-site' 'a.localhost'"
            ),
            "{line}"
        );
    }

    #[test]
    fn ssh_secrets_are_scrubbed_in_raw_form_too() {
        let cfg = RunnerConfig::Ssh {
            host: "frappe@bench1".into(),
            port: None,
            identity_file: None,
            bench_dir: "/home/frappe/frappe-bench".into(),
            bench_bin: "bench".into(),
        };
        let inv = cfg.bench_invocation(vec![
            "new-site".into(),
            Arg::SecretOpt("--admin-password", secret("p'w $(x)")),
        ]);
        let secrets = inv.secrets();
        // Remote bench output echoes the value as it arrived, unquoted.
        let out = scrub("error for --admin-password=p'w $(x): p'w $(x)", &secrets);
        assert!(!out.contains("p'w"), "{out}");
    }

    #[test]
    fn ssh_quotes_every_remote_word() {
        let cfg = RunnerConfig::Ssh {
            host: "frappe@bench1".into(),
            port: Some(2222),
            identity_file: None,
            bench_dir: "/home/frappe/frappe bench".into(),
            bench_bin: "bench".into(),
        };
        let inv = cfg.bench_invocation(vec![
            "--site".into(),
            "a.localhost".into(),
            "set-config".into(),
            "k".into(),
            "\"it's\"".into(),
            Arg::SecretOpt("--password", secret("p'w $(x)")),
        ]);
        assert_eq!(inv.program, PathBuf::from("ssh"));
        assert_eq!(
            inv.exposed_args(),
            [
                "-o",
                "BatchMode=yes",
                "-p",
                "2222",
                "frappe@bench1",
                "--",
                "cd",
                "'/home/frappe/frappe bench'",
                "&&",
                "'bench'",
                "'--site'",
                "'a.localhost'",
                "'set-config'",
                "'k'",
                "'\"it'\\''s\"'",
                "'--password=p'\\''w $(x)'"
            ]
        );
        assert!(!inv.redacted().join(" ").contains("p'w"));
    }

    #[test]
    fn runner_config_deserialises() {
        let cfg: RunnerConfig =
            serde_json::from_str(r#"{"kind":"local","bench_dir":"/b"}"#).unwrap();
        assert_eq!(
            cfg,
            RunnerConfig::Local {
                bench_dir: "/b".into(),
                bench_bin: "bench".into(),
                env: BTreeMap::new(),
                user: None,
            }
        );
        let cfg: RunnerConfig = serde_json::from_str(
            r#"{"kind":"ssh","host":"bench1","bench_dir":"/home/frappe/frappe-bench"}"#,
        )
        .unwrap();
        assert!(matches!(cfg, RunnerConfig::Ssh { port: None, .. }));
        let cfg: RunnerConfig =
            serde_json::from_str(r#"{"kind":"docker","compose_file":"c.yml","service":"backend"}"#)
                .unwrap();
        assert!(matches!(cfg, RunnerConfig::Docker { workdir: None, .. }));
    }

    #[tokio::test]
    async fn run_captures_output_scrubs_secrets_and_times_out() {
        let inv = Invocation {
            program: "echo".into(),
            args: vec!["hello".into(), Arg::Secret(secret("topsecret"))],
            cwd: None,
            env: BTreeMap::new(),
        };
        let out = run(&inv, Duration::from_secs(10)).await.unwrap();
        assert!(out.success());
        assert_eq!(out.stdout, format!("hello {REDACTED}\n"));

        let inv = Invocation {
            program: "sleep".into(),
            args: vec!["30".into()],
            cwd: None,
            env: BTreeMap::new(),
        };
        let err = run(&inv, Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(err, RunError::Timeout { .. }));

        let inv = Invocation {
            program: "cat".into(),
            args: vec![],
            cwd: None,
            env: BTreeMap::new(),
        };
        // stdin is /dev/null: cat returns at once instead of waiting for input.
        let out = run(&inv, Duration::from_secs(10)).await.unwrap();
        assert!(out.success() && out.stdout.is_empty());
    }

    #[tokio::test]
    async fn a_local_runner_runs_commands_as_the_benchs_user() {
        let cfg = RunnerConfig::Local {
            bench_dir: "/tmp".into(),
            bench_bin: "/usr/local/bin/bench".into(),
            env: BTreeMap::new(),
            user: Some("nobody".into()),
        };
        cfg.validate().unwrap();
        let inv = cfg.bench_invocation(vec!["--site".into(), "a.localhost".into()]);
        assert_eq!(inv.program, PathBuf::from("runuser"));
        assert_eq!(
            inv.exposed_args(),
            [
                "-u",
                "nobody",
                "--",
                "/usr/local/bin/bench",
                "--site",
                "a.localhost"
            ]
        );
        // The guard's `timeout` and `flock` run as the user too.
        let guarded = cfg.guarded_tool(
            "id",
            vec!["-un".into()],
            &Guard::timeout(Duration::from_secs(5)),
        );
        assert_eq!(
            &guarded.exposed_args()[..4],
            ["-u", "nobody", "--", "timeout"]
        );
        let me = run(
            &RunnerConfig::Local {
                bench_dir: "/tmp".into(),
                bench_bin: "bench".into(),
                env: BTreeMap::new(),
                user: None,
            }
            .tool_invocation("id", vec!["-u".into()]),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        let out = run(&guarded, Duration::from_secs(10)).await.unwrap();
        if me.stdout.trim() == "0" {
            assert!(out.success(), "{}", out.stderr);
            assert_eq!(out.stdout.trim(), "nobody");
        } else {
            // Only root may switch users: the failure is reported, not a silent run as ourselves.
            assert!(!out.success());
        }
        for bad in ["", "Root", "a b", "x;rm", "-u", &"a".repeat(33)] {
            let cfg = RunnerConfig::Local {
                bench_dir: "/tmp".into(),
                bench_bin: "bench".into(),
                env: BTreeMap::new(),
                user: Some(bad.to_owned()),
            };
            assert!(cfg.validate().is_err(), "{bad:?}");
        }
    }
}
