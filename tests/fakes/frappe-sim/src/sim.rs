//! frappe-sim's own knobs: latency profile, failure injection, stalls, and the command log.
//!
//! Settings come from `<bench>/sim.toml` and are overridden by env (`FRAPPE_SIM_PROFILE`,
//! `FRAPPE_SIM_FAIL`, `FRAPPE_SIM_STALL`), so a long-running `serve` and separate CLI
//! invocations can share them through the file.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// How long commands take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// No artificial delay.
    #[default]
    Instant,
    /// The wall-clock times measured on a real bench (tests/fixtures/frappe).
    Realistic,
}

/// Effective settings for one process.
#[derive(Debug, Clone)]
pub struct Settings {
    pub profile: Profile,
    /// Multiplies the realistic profile's durations (`0.05` = twenty times faster), so tests
    /// keep the real proportions without the real wall time.
    pub scale: f64,
    /// step → how many times to fail (counted across processes in `sim-state.json`).
    pub fail: BTreeMap<String, u32>,
    /// step → how long to stall before doing the work.
    pub stall: BTreeMap<String, Duration>,
    /// The bench, whose running `new-site`s slow every other command down.
    pub bench: Option<PathBuf>,
}

/// How much slower a CLI call or REST request runs while a `new-site` runs on the same bench
/// (measured: 0.6–1.2 s idle, 1.3–2.3 s beside a new-site; tests/fixtures/frappe/README.md).
pub const NEW_SITE_LOAD: f64 = 1.9;

const RUNNING: &str = ".sim-new-site";

/// A running `new-site`, visible to every other sim process until dropped (a killed one is
/// recognised by its pid being gone).
pub struct NewSiteRunning(PathBuf);

impl NewSiteRunning {
    /// Registers this process's new-site on `bench`.
    pub fn start(bench: &Path) -> Self {
        let dir = bench.join(RUNNING);
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(std::process::id().to_string());
        touch(&path);
        Self(path)
    }
}

impl Drop for NewSiteRunning {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether a `new-site` other than this process's own runs on `bench`.
pub fn other_new_site_running(bench: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(bench.join(RUNNING)) else {
        return false;
    };
    let me = std::process::id().to_string();
    entries.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name != me && Path::new("/proc").join(&name).exists()
    })
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            profile: Profile::default(),
            scale: 1.0,
            fail: BTreeMap::new(),
            stall: BTreeMap::new(),
            bench: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct FileSettings {
    profile: Option<String>,
    scale: Option<f64>,
    fail: Option<String>,
    stall: Option<String>,
}

impl Settings {
    /// Reads `<bench>/sim.toml` (if any), then env overrides.
    pub fn load(bench: &Path) -> anyhow::Result<Self> {
        let file: FileSettings = match std::fs::read_to_string(bench.join("sim.toml")) {
            Ok(text) => toml::from_str(&text)?,
            Err(_) => FileSettings::default(),
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let profile = env("FRAPPE_SIM_PROFILE").or(file.profile);
        let fail = env("FRAPPE_SIM_FAIL").or(file.fail);
        let stall = env("FRAPPE_SIM_STALL").or(file.stall);
        let scale = match env("FRAPPE_SIM_SCALE") {
            Some(s) => s
                .parse::<f64>()
                .map_err(|_| anyhow::anyhow!("FRAPPE_SIM_SCALE {s:?} is not a number"))?,
            None => file.scale.unwrap_or(1.0),
        };
        if !(scale.is_finite() && scale >= 0.0) {
            anyhow::bail!("the latency scale must be a non-negative number, not {scale}");
        }
        Ok(Self {
            bench: Some(bench.to_path_buf()),
            scale,
            profile: match profile.as_deref() {
                None | Some("instant") => Profile::Instant,
                Some("realistic") => Profile::Realistic,
                Some(other) => {
                    anyhow::bail!("unknown FRAPPE_SIM_PROFILE {other:?} (instant|realistic)")
                }
            },
            fail: parse_list(fail.as_deref(), |v| {
                v.parse::<u32>().map_err(|e| e.to_string())
            })?,
            stall: parse_list(stall.as_deref(), parse_duration)?,
        })
    }

    /// Sleeps for `step`'s realistic duration (if that profile is on) and its stall (if any).
    pub async fn delay(&self, step: &str, realistic: Duration) {
        if let Some(stall) = self.stall.get(step) {
            tokio::time::sleep(*stall).await;
        }
        if self.profile == Profile::Realistic {
            let loaded = !step.starts_with("new-site")
                && self.bench.as_deref().is_some_and(other_new_site_running);
            let load = if loaded { NEW_SITE_LOAD } else { 1.0 };
            tokio::time::sleep(realistic.mul_f64(self.scale * load)).await;
        }
    }

    /// True if `step` must fail now; consumes one of its injected failures. Counts live in
    /// `<bench>/sim-state.json` so they survive across CLI processes.
    pub fn should_fail(&self, bench: &Path, step: &str) -> bool {
        let Some(&limit) = self.fail.get(step) else {
            return false;
        };
        with_state(bench, |state| {
            let used = state.entry(step.to_owned()).or_insert(0);
            if *used < limit {
                *used += 1;
                true
            } else {
                false
            }
        })
        .unwrap_or(false)
    }
}

fn parse_list<T>(
    text: Option<&str>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> anyhow::Result<BTreeMap<String, T>> {
    let mut out = BTreeMap::new();
    for item in text
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (step, value) = item
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("expected step:value, got {item:?}"))?;
        let v = parse(value.trim()).map_err(|e| anyhow::anyhow!("{item:?}: {e}"))?;
        out.insert(step.trim().to_owned(), v);
    }
    Ok(out)
}

/// `30s`, `500ms`, `2m`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (num, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((text, "s"), |i| (&text[..i], &text[i..]));
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {text:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {text:?}")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// Runs `f` on the persistent failure counters under an exclusive file lock (several sim
/// processes may run at once).
fn with_state<R>(
    bench: &Path,
    f: impl FnOnce(&mut BTreeMap<String, u32>) -> R,
) -> std::io::Result<R> {
    with_locked_json(bench, "sim-state", f)
}

/// Runs `f` on the JSON state in `<bench>/<name>.json` (default when missing or unreadable)
/// while holding `<bench>/<name>.lock`, and writes it back: state shared by the `serve` process
/// and separate CLI processes.
pub fn with_locked_json<T, R>(
    bench: &Path,
    name: &str,
    f: impl FnOnce(&mut T) -> R,
) -> std::io::Result<R>
where
    T: Default + serde::Serialize + serde::de::DeserializeOwned,
{
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(bench.join(format!("{name}.lock")))?;
    lock.lock()?;
    let path = bench.join(format!("{name}.json"));
    let mut state: T = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let r = f(&mut state);
    std::fs::write(&path, serde_json::to_string(&state).unwrap_or_default())?;
    lock.unlock()?;
    Ok(r)
}

/// Options whose value is a secret.
const SECRET_FLAGS: &[&str] = &[
    "--admin-password",
    "--db-root-password",
    "--mariadb-root-password",
    "--root-password",
    "--db-password",
    "--password",
];

/// argv with every secret replaced by `********` (values of password options, and the
/// password positional of `set-password`).
pub fn redact_argv(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut redact_next = false;
    let is_set_password = argv
        .iter()
        .any(|a| a == "set-password" || a == "set-admin-password");
    let mut positionals_after_cmd = 0;
    let mut seen_cmd = false;
    for a in argv {
        if redact_next {
            out.push("********".to_owned());
            redact_next = false;
            continue;
        }
        if let Some((flag, _)) = a.split_once('=')
            && SECRET_FLAGS.contains(&flag)
        {
            out.push(format!("{flag}=********"));
            continue;
        }
        if SECRET_FLAGS.contains(&a.as_str()) {
            redact_next = true;
            out.push(a.clone());
            continue;
        }
        if is_set_password && seen_cmd && !a.starts_with('-') {
            positionals_after_cmd += 1;
            let secret_pos = if argv.iter().any(|x| x == "set-admin-password") {
                1
            } else {
                2
            };
            if positionals_after_cmd == secret_pos {
                out.push("********".to_owned());
                continue;
            }
        }
        if a == "set-password" || a == "set-admin-password" {
            seen_cmd = true;
        }
        out.push(a.clone());
    }
    out
}

/// Appends one JSON line to `<bench>/sim-commands.log`. Each command writes a `start` line when
/// it begins and an `end` line (with its exit code) when it finishes; a command killed by a
/// timeout leaves only its `start` line.
pub fn log_command(bench: &Path, entry: &serde_json::Value) {
    let line = format!("{entry}\n");
    // One write(2) of a short line to an O_APPEND file: lines from concurrent processes do not
    // interleave.
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(bench.join("sim-commands.log"))
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// The bench directory for this process: `FRAPPE_SIM_BENCH_DIR`, else the current directory
/// (like the real bench, which is run from its directory).
pub fn bench_dir() -> PathBuf {
    std::env::var_os("FRAPPE_SIM_BENCH_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Creates a file exclusively (for lock files).
pub fn touch(path: &Path) {
    let _ = File::create(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_lists_and_durations() {
        let m = parse_list(Some("new-site:2, install-app:1"), |v| {
            v.parse::<u32>().map_err(|e| e.to_string())
        })
        .unwrap();
        assert_eq!(m["new-site"], 2);
        assert_eq!(m["install-app"], 1);
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn redaction() {
        let argv: Vec<String> = [
            "new-site",
            "a.localhost",
            "--admin-password=s3cret",
            "--db-root-password",
            "rootpw",
            "--db-name=x",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            redact_argv(&argv),
            [
                "new-site",
                "a.localhost",
                "--admin-password=********",
                "--db-root-password",
                "********",
                "--db-name=x"
            ]
        );
        let argv: Vec<String> = [
            "--site",
            "a.localhost",
            "set-password",
            "u@example.com",
            "pw",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            redact_argv(&argv),
            [
                "--site",
                "a.localhost",
                "set-password",
                "u@example.com",
                "********"
            ]
        );
    }

    #[test]
    fn failure_counts_persist() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings {
            fail: [("new-site".to_owned(), 2)].into(),
            ..Settings::default()
        };
        assert!(s.should_fail(dir.path(), "new-site"));
        let again = Settings {
            fail: [("new-site".to_owned(), 2)].into(),
            ..Settings::default()
        };
        assert!(again.should_fail(dir.path(), "new-site"));
        assert!(!again.should_fail(dir.path(), "new-site"));
        assert!(!again.should_fail(dir.path(), "install-app"));
    }
}
