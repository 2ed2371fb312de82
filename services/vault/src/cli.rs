//! Command-line flags (with env fallbacks) and how they become a [`Config`]. Shared by the `vault`
//! binary and by anything that hosts the vault in-process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::Config;
use crate::acl::AclConfig;
use crate::crypto::KeyRing;

/// Env var holding the key ring itself (JSON or TOML). Content, not a flag: key material never
/// belongs on a command line, where `ps` shows it.
pub const KEYRING_ENV: &str = "TENANTRY_VAULT_KEYRING";
/// Env var holding the ACL (TOML `[callers.<service>]` tables), as an alternative to a file.
pub const CALLERS_ENV: &str = "TENANTRY_VAULT_CALLERS";

/// The vault's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct VaultArgs {
    /// gRPC listen address.
    #[arg(long, env = "TENANTRY_VAULT_LISTEN", default_value = "127.0.0.1:50053")]
    pub listen: SocketAddr,
    /// PostgreSQL.
    #[command(flatten)]
    pub database: svc::DatabaseArgs,
    /// NATS and the event-store namespace.
    #[command(flatten)]
    pub nats: svc::NatsArgs,
    /// TLS, mTLS, limits and timeout of the gRPC listener.
    #[command(flatten)]
    pub grpc: svc::GrpcServerArgs,
    /// The admin port (`/healthz`, `/readyz`, `/metrics`).
    #[command(flatten)]
    pub admin: svc::AdminArgs,
    /// Schema for the vault's tables.
    #[arg(long, env = "TENANTRY_VAULT_DB_SCHEMA", default_value = "vault")]
    pub database_schema: String,
    /// PostgreSQL pool size.
    #[arg(long, env = "TENANTRY_VAULT_DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub database_max_connections: u32,
    /// Key ring file (JSON or TOML). Otherwise `TENANTRY_VAULT_KEYRING` holds the ring itself.
    #[arg(long, env = "TENANTRY_VAULT_KEYRING_FILE")]
    pub keyring_file: Option<PathBuf>,
    /// Generate a throw-away key ring when none is configured. Local development only: secrets
    /// stored with it are unreadable after a restart.
    #[arg(long, env = "TENANTRY_VAULT_DEV_KEYRING")]
    pub dev_keyring: bool,
    /// ACL file (TOML `[callers.<service>]` tables). Otherwise `TENANTRY_VAULT_CALLERS`.
    #[arg(long, env = "TENANTRY_VAULT_ACL_FILE")]
    pub acl_file: Option<PathBuf>,
    /// TTL of one-time secrets whose request gives none, in seconds.
    #[arg(
        long,
        env = "TENANTRY_VAULT_ONE_TIME_TTL_SECS",
        default_value_t = 86_400
    )]
    pub one_time_ttl_secs: u64,
    /// Longest TTL a one-time secret may ask for, in seconds.
    #[arg(
        long,
        env = "TENANTRY_VAULT_MAX_ONE_TIME_TTL_SECS",
        default_value_t = 604_800
    )]
    pub max_one_time_ttl_secs: u64,
    /// How long a one-time secret taken with a request id can be taken again by a retry of
    /// that request, in seconds.
    #[arg(
        long,
        env = "TENANTRY_VAULT_TAKE_REPLAY_WINDOW_SECS",
        default_value_t = 300
    )]
    pub take_replay_window_secs: u64,
    /// How often the outbox relay looks for unpublished events, in milliseconds (it is also
    /// woken by every commit of this instance).
    #[arg(long, env = "TENANTRY_VAULT_OUTBOX_POLL_MS", default_value_t = 1000)]
    pub outbox_poll_ms: u64,
}

/// Why the configuration cannot be assembled; the message says what to set.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl VaultArgs {
    /// Loads the key ring and ACL and assembles the config. Reads `TENANTRY_VAULT_KEYRING` and
    /// `TENANTRY_VAULT_CALLERS` from the environment when no file is given.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let keyring = match (&self.keyring_file, std::env::var(KEYRING_ENV).ok()) {
            (Some(path), _) => KeyRing::from_file(path).map_err(|e| ConfigError(e.to_string()))?,
            (None, Some(text)) => {
                let text = zeroize::Zeroizing::new(text);
                KeyRing::parse(&text).map_err(|e| ConfigError(format!("{KEYRING_ENV}: {e}")))?
            }
            (None, None) if self.dev_keyring => KeyRing::generate_dev(),
            (None, None) => {
                return Err(ConfigError(format!(
                    "no key ring: set --keyring-file (TENANTRY_VAULT_KEYRING_FILE) or {KEYRING_ENV}, or pass --dev-keyring for local development"
                )));
            }
        };
        let acl = match (&self.acl_file, std::env::var(CALLERS_ENV).ok()) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!("cannot read ACL file {}: {e}", path.display()))
                })?;
                AclConfig::parse_toml(&text).map_err(|e| ConfigError(e.to_string()))?
            }
            (None, Some(text)) => AclConfig::parse_toml(&text)
                .map_err(|e| ConfigError(format!("{CALLERS_ENV}: {e}")))?,
            (None, None) => AclConfig::default_policy(),
        };
        let nats = self
            .nats
            .store_config()
            .map_err(|e| ConfigError(e.to_string()))?;
        let mut config = Config::new(
            SecretString::from(self.database.database_url),
            nats.nats_url,
            keyring,
            acl,
        );
        config.listen_addr = self.listen;
        config.database_schema = self.database_schema;
        config.database_max_connections = self.database_max_connections;
        config.namespace = nats.namespace;
        config.nats_replicas = nats.replicas;
        config.nats_auth = nats.auth;
        config.nats_tls = nats.tls;
        config.grpc = self.grpc;
        config.admin_addr = self.admin.admin_addr;
        config.default_one_time_ttl = Duration::from_secs(self.one_time_ttl_secs);
        config.max_one_time_ttl = Duration::from_secs(self.max_one_time_ttl_secs);
        config.take_replay_window = Duration::from_secs(self.take_replay_window_secs);
        config.outbox_poll_interval = Duration::from_millis(self.outbox_poll_ms.max(10));
        Ok(config)
    }
}
