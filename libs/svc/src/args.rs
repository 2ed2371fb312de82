//! Flag groups shared by the services. Every flag has an env fallback (clap `env`), and the
//! defaults point at a local stack so `tenantry dev` needs no configuration.

use std::net::SocketAddr;

/// Where NATS is and which namespace to use.
#[derive(Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL.
    #[arg(
        long = "nats-url",
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Prefix for streams, subjects and buckets (isolates deployments sharing one NATS).
    #[arg(long = "namespace", env = "TENANTRY_NAMESPACE", default_value = "")]
    pub namespace: String,
}

impl std::fmt::Debug for NatsArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsArgs")
            .field("nats_url", &redact_url(&self.nats_url))
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl Default for NatsArgs {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            namespace: String::new(),
        }
    }
}

/// Where PostgreSQL is.
#[derive(Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL (may hold a password: never printed).
    #[arg(
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
    #[arg(long = "log-format", env = "LOG_FORMAT", default_value = "pretty")]
    pub log_format: LogFormat,
    /// OTLP/gRPC collector; traces are exported only when set.
    #[arg(long = "otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
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
    }
}
