//! Flag groups shared by the services. Every flag has an env fallback (clap `env`), and the
//! defaults point at a local stack so `tenantry dev` needs no configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use eventstore::{NatsAuth, NatsTls, StoreConfig};

use crate::secret;

/// Where NATS is, which namespace to use, and how to authenticate and encrypt.
///
/// Secrets come from the environment or files only: `NATS_PASSWORD` / `--nats-password-file`,
/// `NATS_TOKEN` / `--nats-token-file`, `--nats-nkey-file`, `--nats-creds-file`.
#[derive(Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL (`tls://` forces TLS); for a cluster, its nodes separated by commas.
    #[arg(
        id = "nats-url",
        long = "nats-url",
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Copies of the event stream and of every KV bucket: 1 on one server, 3 on a cluster
    /// (survives losing a node). An existing stream is brought to it at start-up.
    #[arg(
        id = "nats-replicas",
        long = "nats-replicas",
        env = "TENANTRY_NATS_REPLICAS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u8).range(1..=5)
    )]
    pub replicas: u8,
    /// Prefix for streams, subjects and buckets (isolates deployments sharing one NATS).
    #[arg(
        id = "namespace",
        long = "namespace",
        env = "TENANTRY_NAMESPACE",
        default_value = ""
    )]
    pub namespace: String,
    /// NATS user (its password from `NATS_PASSWORD` or `--nats-password-file`).
    #[arg(id = "nats-user", long = "nats-user", env = "NATS_USER")]
    pub user: Option<String>,
    /// File holding the NATS user's password.
    #[arg(
        id = "nats-password-file",
        long = "nats-password-file",
        env = "NATS_PASSWORD_FILE"
    )]
    pub password_file: Option<PathBuf>,
    /// File holding a NATS token (or set `NATS_TOKEN`).
    #[arg(
        id = "nats-token-file",
        long = "nats-token-file",
        env = "NATS_TOKEN_FILE"
    )]
    pub token_file: Option<PathBuf>,
    /// File holding an nkey seed.
    #[arg(id = "nats-nkey-file", long = "nats-nkey-file", env = "NATS_NKEY_FILE")]
    pub nkey_file: Option<PathBuf>,
    /// A `.creds` file (JWT + seed).
    #[arg(
        id = "nats-creds-file",
        long = "nats-creds-file",
        env = "NATS_CREDS_FILE"
    )]
    pub creds_file: Option<PathBuf>,
    /// Refuse to talk to NATS without TLS.
    #[arg(
        id = "nats-tls-required",
        long = "nats-tls-required",
        env = "NATS_TLS_REQUIRED"
    )]
    pub tls_required: bool,
    /// PEM CA of the NATS server's certificate (implies TLS).
    #[arg(id = "nats-ca", long = "nats-ca", env = "NATS_CA")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate for NATS servers that verify clients.
    #[arg(
        id = "nats-client-cert",
        long = "nats-client-cert",
        env = "NATS_CLIENT_CERT"
    )]
    pub client_cert: Option<PathBuf>,
    /// PEM key of `--nats-client-cert`.
    #[arg(
        id = "nats-client-key",
        long = "nats-client-key",
        env = "NATS_CLIENT_KEY"
    )]
    pub client_key: Option<PathBuf>,
}

impl std::fmt::Debug for NatsArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsArgs")
            .field(
                "nats_url",
                &self
                    .nats_url
                    .split(',')
                    .map(redact_url)
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .field("namespace", &self.namespace)
            .field("replicas", &self.replicas)
            .field("user", &self.user)
            .field("creds_file", &self.creds_file)
            .field("tls_required", &self.tls_required)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl Default for NatsArgs {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            replicas: 1,
            namespace: String::new(),
            user: None,
            password_file: None,
            token_file: None,
            nkey_file: None,
            creds_file: None,
            tls_required: false,
            ca: None,
            client_cert: None,
            client_key: None,
        }
    }
}

impl NatsArgs {
    /// A local server, no namespace, no credentials.
    pub fn local(nats_url: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            namespace: namespace.into(),
            ..Self::default()
        }
    }

    /// The event store configuration: URL, namespace, credentials (read now) and TLS.
    pub fn store_config(&self) -> Result<StoreConfig, NatsConfigError> {
        let password = secret::load(
            "the NATS password",
            "NATS_PASSWORD",
            self.password_file.as_deref(),
        )?;
        let token = secret::load("the NATS token", "NATS_TOKEN", self.token_file.as_deref())?;
        let nkey = match &self.nkey_file {
            Some(p) => secret::load("the NATS nkey seed", "", Some(p))?,
            None => None,
        };
        let mut methods = Vec::new();
        if let Some(user) = &self.user {
            let password = password.ok_or_else(|| {
                NatsConfigError::Conflict(
                    "--nats-user needs a password: NATS_PASSWORD or --nats-password-file".into(),
                )
            })?;
            methods.push(NatsAuth::UserPassword {
                user: user.clone(),
                password,
            });
        }
        if let Some(t) = token {
            methods.push(NatsAuth::Token(t));
        }
        if let Some(n) = nkey {
            methods.push(NatsAuth::NKey(n));
        }
        if let Some(c) = &self.creds_file {
            methods.push(NatsAuth::CredsFile(c.clone()));
        }
        if methods.len() > 1 {
            return Err(NatsConfigError::Conflict(
                "give one NATS credential: a user + password, a token, an nkey or a creds file"
                    .into(),
            ));
        }
        let client_cert = match (&self.client_cert, &self.client_key) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            _ => {
                return Err(NatsConfigError::Conflict(
                    "--nats-client-cert and --nats-client-key go together".into(),
                ));
            }
        };
        Ok(StoreConfig::new(self.nats_url.clone())
            .with_namespace(self.namespace.clone())
            .with_replicas(usize::from(self.replicas))
            .with_security(
                methods.pop().unwrap_or_default(),
                NatsTls {
                    required: self.tls_required,
                    ca: self.ca.clone(),
                    client_cert,
                },
            ))
    }
}

/// Errors in the NATS flags.
#[derive(Debug, thiserror::Error)]
pub enum NatsConfigError {
    /// A secret could not be read.
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
    /// Flags that contradict each other.
    #[error("{0}")]
    Conflict(String),
}

/// Where PostgreSQL is.
#[derive(Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL (may hold a password: never printed).
    #[arg(
        id = "database-url",
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/tenantry"
    )]
    pub database_url: String,
}

impl std::fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseArgs")
            .field("database_url", &redact_url(&self.database_url))
            .finish()
    }
}

/// Logging and tracing.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// `pretty` for people, `json` for log shippers.
    #[arg(
        id = "log-format",
        long = "log-format",
        env = "LOG_FORMAT",
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
    /// OTLP/gRPC collector; traces are exported only when set.
    #[arg(
        id = "otlp-endpoint",
        long = "otlp-endpoint",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT"
    )]
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryArgs {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            otlp_endpoint: None,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The admin HTTP listener.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// Address of `/healthz`, `/readyz` and `/metrics` (port 0 picks a free port).
    #[arg(
        id = "admin-addr",
        long = "admin-addr",
        env = "TENANTRY_ADMIN_ADDR",
        default_value = "127.0.0.1:0"
    )]
    pub admin_addr: SocketAddr,
}

/// A URL fit for logs: the userinfo's password (or a token-only userinfo, as in
/// `nats://TOKEN@host`) and `password`/`token` query parameters become `***`.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.find("://").map(|i| i + 3) {
        Some(scheme_end) => {
            let rest = &base[scheme_end..];
            let host_start = rest.find('/').unwrap_or(rest.len());
            match rest[..host_start].rfind('@') {
                Some(at) => {
                    let userinfo = &rest[..at];
                    let redacted = match userinfo.split_once(':') {
                        Some((user, _)) => format!("{user}:***"),
                        None if userinfo.is_empty() => String::new(),
                        // user-only or token-only: NATS reads a lone userinfo as a token.
                        None => "***".to_owned(),
                    };
                    format!("{}{redacted}{}", &base[..scheme_end], &rest[at..])
                }
                None => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _))
                    if ["password", "pass", "token", "secret"]
                        .contains(&k.to_ascii_lowercase().as_str()) =>
                {
                    format!("{k}=***")
                }
                _ => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("postgres://u:hunter2@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("nats://s3cr3t@h:4222"), "nats://***@h:4222");
        assert_eq!(
            redact_url("postgres://u@h/db?password=x&sslmode=require"),
            "postgres://***@h/db?password=***&sslmode=require"
        );
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
        assert_eq!(redact_url("nonsense"), "nonsense");
        let args = DatabaseArgs {
            database_url: "postgres://u:hunter2@h/db".into(),
        };
        assert!(!format!("{args:?}").contains("hunter2"));
        // Every node of a cluster list loses its credentials, not only the first.
        let nats = NatsArgs {
            nats_url: "nats://one:pw1@a:4222,nats://two:pw2@b:4222".into(),
            ..NatsArgs::default()
        };
        let shown = format!("{nats:?}");
        assert!(!shown.contains("pw1") && !shown.contains("pw2"), "{shown}");
        assert!(shown.contains("b:4222"), "{shown}");
    }

    #[test]
    fn replicas_reach_the_store_config() {
        let nats = NatsArgs {
            replicas: 3,
            ..NatsArgs::default()
        };
        assert_eq!(nats.store_config().unwrap().replicas, 3);
        assert_eq!(NatsArgs::default().store_config().unwrap().replicas, 1);
    }
}
