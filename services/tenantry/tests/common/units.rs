//! The services as `deploy/systemd/` starts them: each unit's `ExecStart`, its
//! `EnvironmentFile` (the example in `deploy/systemd/env/`), its `Environment=` lines and its
//! `LoadCredential=` files under a `$CREDENTIALS_DIRECTORY` of its own — read from the units
//! themselves, so a unit that names a wrong variable or file fails this test.
//!
//! What a test machine cannot share with a real host is mapped, and only that: `/etc/tenantry`
//! is a directory of the test's, the units' fixed ports become free ones, and the database,
//! NATS namespace and Authentik URL are the test's.
//!
//! The same for `deploy/compose/compose.yaml` ([`compose_service`]): each service's command,
//! environment and the secrets it lists (only those, under a `/run/secrets` of its own); the
//! containers' network (service names, `0.0.0.0`, one port per container) becomes loopback
//! with free ports, and the test's NATS (one node, no TLS or password) and database stand in
//! for the compose file's cluster and PostgreSQL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the units and their example environment files live.
pub fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd")
}

/// One parsed unit.
#[derive(Debug, Default)]
pub struct Unit {
    /// `ExecStart`'s argv.
    pub exec: Vec<String>,
    /// `EnvironmentFile=` paths.
    pub env_files: Vec<String>,
    /// `Environment=` assignments, in order.
    pub env: Vec<(String, String)>,
    /// `LoadCredential=` (name, source path).
    pub credentials: Vec<(String, String)>,
}

/// Parses the `[Service]` settings this test needs (the units use no quoting).
pub fn parse(text: &str) -> Unit {
    let mut unit = Unit::default();
    for line in text.lines().map(str::trim) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if line.starts_with('#') {
            continue;
        }
        match key {
            "ExecStart" => unit.exec = value.split_whitespace().map(str::to_owned).collect(),
            "EnvironmentFile" => unit.env_files.push(value.to_owned()),
            "Environment" => {
                let (k, v) = value.split_once('=').expect("Environment=KEY=VALUE");
                unit.env.push((k.to_owned(), v.to_owned()));
            }
            "LoadCredential" => {
                let (name, path) = value.split_once(':').expect("LoadCredential=NAME:PATH");
                unit.credentials.push((name.to_owned(), path.to_owned()));
            }
            _ => {}
        }
    }
    unit
}

/// `KEY=VALUE` lines of an environment file (comments and blank lines skipped).
pub fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The mapping from a real host to this test: the `/etc/tenantry` stand-in, the ports.
pub struct HostMap {
    /// Stands in for `/etc/tenantry`.
    pub etc: PathBuf,
    /// The units' ports → the test's.
    pub ports: BTreeMap<u16, u16>,
}

impl HostMap {
    /// `value` with `/etc/tenantry` and every `:<unit port>` mapped (one pass, so a mapped
    /// port is never mapped again).
    pub fn map(&self, value: &str) -> String {
        let value = value.replace("/etc/tenantry", &self.etc.display().to_string());
        let mut out = String::with_capacity(value.len());
        let mut rest = value.as_str();
        while let Some(i) = rest.find(':') {
            out.push_str(&rest[..=i]);
            rest = &rest[i + 1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            match rest[..digits]
                .parse::<u16>()
                .ok()
                .and_then(|p| self.ports.get(&p))
            {
                Some(to) => out.push_str(&to.to_string()),
                None => out.push_str(&rest[..digits]),
            }
            rest = &rest[digits..];
        }
        out.push_str(rest);
        out
    }
}

/// `service`'s program, arguments and environment as its unit says, with its credentials
/// copied into `credentials` (its `$CREDENTIALS_DIRECTORY`).
pub fn command(
    service: &str,
    host: &HostMap,
    credentials: &Path,
) -> (Vec<String>, Vec<(String, String)>) {
    let path = units_dir().join(format!("tenantry-{service}.service"));
    let unit = parse(&std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e}", path.display());
    }));
    assert!(!unit.exec.is_empty(), "{} has no ExecStart", path.display());
    let mut env = Vec::new();
    for file in &unit.env_files {
        // The example shipped for the unit's file.
        let name = Path::new(file).file_name().expect("an env file name");
        let example = units_dir().join("env").join(name);
        let text = std::fs::read_to_string(&example)
            .unwrap_or_else(|e| panic!("{} (for {file}): {e}", example.display()));
        env.extend(env_file(&text).into_iter().map(|(k, v)| (k, host.map(&v))));
    }
    std::fs::create_dir_all(credentials).expect("credentials dir");
    for (name, source) in &unit.credentials {
        let source = host.map(source);
        std::fs::copy(&source, credentials.join(name)).unwrap_or_else(|e| {
            panic!("{service}: LoadCredential={name}:{source}: {e}");
        });
    }
    let creds = credentials.display().to_string();
    for (k, v) in unit.env {
        env.push((k, host.map(&v.replace("%d", &creds))));
    }
    env.push(("CREDENTIALS_DIRECTORY".to_owned(), creds));
    (unit.exec, env)
}

/// What the test puts where a host keeps it under `/etc/tenantry`.
pub struct Etc<'a> {
    /// The vault's key ring (TOML).
    pub keyring: &'a str,
    /// The vault callers' token hashes (`[callers.*]`).
    pub vault_acl: &'a str,
    /// Operators' token hashes and roles (`[operators.*]`).
    pub operators: &'a str,
    /// Caller tokens, by credential file name (`signup.vault-token`, …).
    pub tokens: &'a [(&'a str, String)],
    /// The SMTP server URL.
    pub smtp_url: &'a str,
    /// The TLS files.
    pub ca: &'a svc::devca::DevCaFiles,
    /// The fleet and the plan catalogue.
    pub fleet: &'a Path,
    pub plans: &'a Path,
}

/// Writes `etc` (files of secrets mode 0600, as an installer would).
pub fn write_etc(root: &Path, etc: &Etc<'_>) {
    use std::os::unix::fs::PermissionsExt as _;
    let secret = |path: PathBuf, body: &[u8]| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    let plain = |path: PathBuf, body: &[u8]| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
    };
    let read = |p: &Path| std::fs::read(p).unwrap();
    plain(root.join("tls/ca.pem"), &read(&etc.ca.ca));
    plain(root.join("tls/server.pem"), &read(&etc.ca.server_cert));
    plain(root.join("tls/client.pem"), &read(&etc.ca.client_cert));
    secret(root.join("tls/server-key.pem"), &read(&etc.ca.server_key));
    secret(root.join("tls/client-key.pem"), &read(&etc.ca.client_key));
    secret(
        root.join("credentials/vault-keyring.toml"),
        etc.keyring.as_bytes(),
    );
    // The test's PostgreSQL trusts local connections; the file only has to be well-formed.
    for pgpass in ["vault.pgpass", "projection.pgpass"] {
        secret(
            root.join("credentials").join(pgpass),
            b"127.0.0.1:5432:*:*:unused\n",
        );
    }
    for (name, token) in etc.tokens {
        secret(root.join("credentials").join(name), token.as_bytes());
    }
    secret(root.join("credentials/smtp-url"), etc.smtp_url.as_bytes());
    plain(root.join("vault-acl.toml"), etc.vault_acl.as_bytes());
    plain(root.join("operators.toml"), etc.operators.as_bytes());
    plain(root.join("fleet.toml"), &read(etc.fleet));
    plain(root.join("plans.toml"), &read(etc.plans));
}

/// The compose file (`deploy/compose/compose.yaml`) as JSON, anchors and merges resolved
/// (PyYAML, which `just python-deps` brings).
pub fn compose_json() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/compose/compose.yaml");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&path)
        .output()
        .expect("python3 runs (`just python-deps` installs PyYAML)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("compose as JSON")
}

/// `${NAME:-default}` → `default` (the compose file's only interpolation form; the test sets
/// none of them).
pub fn interpolate(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find('}') else {
            break;
        };
        let inner = &rest[i + 2..i + end];
        out.push_str(inner.split_once(":-").map_or("", |(_, d)| d));
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    out
}

/// One Tenantry service of the compose file: its command, environment and secrets.
pub struct ComposeService {
    /// The container's arguments after the image's entrypoint (`["vault"]`).
    pub command: Vec<String>,
    /// Its `environment`, interpolated.
    pub env: Vec<(String, String)>,
    /// The secrets it mounts under `/run/secrets`.
    pub secrets: Vec<String>,
}

/// `service` as the compose file runs it.
pub fn compose_service(compose: &serde_json::Value, service: &str) -> ComposeService {
    let s = &compose["services"][service];
    assert!(s.is_object(), "compose has no service {service}");
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect()
    };
    let env = s["environment"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            (k.clone(), interpolate(&v))
        })
        .collect();
    ComposeService {
        command: strings(&s["command"]),
        env,
        secrets: strings(&s["secrets"]),
    }
}
