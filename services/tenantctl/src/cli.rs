//! The command line (clap). Every flag has an env fallback where a script would want one.

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

/// Tenantry operator CLI.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "tenantctl",
    version,
    about = "Tenantry operator CLI: see, change, replay and audit tenants",
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 refused (state does not allow it), 5 unavailable, 6 unauthenticated/forbidden"
)]
pub struct Cli {
    /// Where the services are and how to authenticate.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
///
/// Tokens are read from the environment (`TENANTRY_ADMIN_TOKEN`, `TENANTRY_VAULT_TOKEN`) or
/// from files (`--admin-token-file`, `--vault-token-file`), never from a flag: flags show in
/// `ps` to every user of the machine.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Operator API of the signup service (TenantAdmin: suspend, resume, delete, retry, plan).
    #[arg(
        long,
        env = "TENANTRY_ADMIN_URL",
        default_value = "http://127.0.0.1:50054",
        global = true
    )]
    pub admin_url: String,
    /// Projection (TenantDirectory, ProjectionAdmin) URL.
    #[arg(
        long,
        env = "TENANTRY_DIRECTORY_URL",
        default_value = "http://127.0.0.1:50052",
        global = true
    )]
    pub directory_url: String,
    /// Vault URL.
    #[arg(
        long,
        env = "TENANTRY_VAULT_URL",
        default_value = "http://127.0.0.1:50053",
        global = true
    )]
    pub vault_url: String,
    /// Billing API URL.
    #[arg(
        long,
        env = "TENANTRY_BILLING_URL",
        default_value = "http://127.0.0.1:50055",
        global = true
    )]
    pub billing_url: String,
    /// File holding your operator token (or set `TENANTRY_ADMIN_TOKEN`).
    #[arg(long, env = "TENANTRY_ADMIN_TOKEN_FILE", global = true)]
    pub admin_token_file: Option<std::path::PathBuf>,
    /// The operator token, when set by an embedding program (never a flag).
    #[arg(skip)]
    pub admin_token: Option<SecretString>,
    /// File holding the vault token of the `operator` caller (or set `TENANTRY_VAULT_TOKEN`).
    #[arg(long, env = "TENANTRY_VAULT_TOKEN_FILE", global = true)]
    pub vault_token_file: Option<std::path::PathBuf>,
    /// The vault token, when set by an embedding program (never a flag).
    #[arg(skip)]
    pub vault_token: Option<SecretString>,
    /// PEM CA that signs the services' certificates (needed for `https://` URLs).
    #[arg(long = "tls-ca", env = "TENANTRY_TLS_CA", global = true)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// PEM client certificate, for services that require mTLS.
    #[arg(
        long = "tls-client-cert",
        env = "TENANTRY_TLS_CLIENT_CERT",
        global = true
    )]
    pub tls_client_cert: Option<std::path::PathBuf>,
    /// PEM key of `--tls-client-cert`.
    #[arg(
        long = "tls-client-key",
        env = "TENANTRY_TLS_CLIENT_KEY",
        global = true
    )]
    pub tls_client_key: Option<std::path::PathBuf>,
    /// NATS (events tail, dlq): URL, namespace, credentials and TLS.
    #[command(flatten)]
    pub nats: svc::NatsArgs,
    /// Machine-readable output (JSON; one object per line for `events tail`).
    #[arg(long, global = true)]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// List, show and trace tenants (from the projection).
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Suspend an Active tenant (maintenance mode; data kept).
    Suspend(Reasoned),
    /// Resume a Suspended tenant.
    Resume(Reasoned),
    /// Back up and delete a tenant. Needs `--confirm <tenant id>`.
    Delete(DeleteArgs),
    /// Retry provisioning of a Failed tenant.
    Retry(Reasoned),
    /// Move a tenant to another plan.
    Plan(PlanArgs),
    /// Watch the event log.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Rebuild a read model from the event log (blue/green; queries keep working).
    Replay(ReplayArgs),
    /// Events a consumer gave up on.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Each durable consumer's progress: pending, unacknowledged, redelivered, last activity.
    Consumers(ConsumersArgs),
    /// Rebuild the KV buckets derived from the event log (claims, answers, placements, counters, pool).
    Recover(RecoverArgs),
    /// The credential vault.
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Plans, subscriptions, invoices and payments (the billing service).
    #[command(subcommand)]
    Billing(BillingCommand),
}

/// `billing …`
#[derive(Debug, Clone, Subcommand)]
pub enum BillingCommand {
    /// The plan catalogue.
    Plans,
    /// A tenant's subscription.
    Show(TenantArg),
    /// A tenant's invoices.
    Invoices(TenantArg),
    /// Record a payment made outside Tenantry (a bank transfer) for an open invoice.
    Pay(PayArgs),
}

/// One tenant.
#[derive(Debug, Clone, Args)]
pub struct TenantArg {
    /// Tenant id.
    pub tenant_id: String,
}

/// `billing pay`
#[derive(Debug, Clone, Args)]
pub struct PayArgs {
    /// Tenant id.
    pub tenant_id: String,
    /// Invoice id (its number, e.g. INV-0190f5c2-0001).
    pub invoice: String,
    /// The payment's reference (bank, accountant).
    #[arg(long)]
    pub reference: String,
}

/// `tenants …`
#[derive(Debug, Clone, Subcommand)]
pub enum TenantsCommand {
    /// Tenants, oldest first, optionally filtered.
    List(ListArgs),
    /// One tenant's current state.
    Show(ShowArgs),
    /// Everything that happened to a tenant.
    History(ShowArgs),
}

/// `tenants list`
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only tenants in this status.
    #[arg(long, value_enum)]
    pub status: Option<StatusArg>,
    /// Only tenants on this plan.
    #[arg(long)]
    pub plan: Option<String>,
    /// Only tenants on this bench.
    #[arg(long)]
    pub bench: Option<String>,
    /// At most this many tenants (0 = all).
    #[arg(long, default_value_t = 100)]
    pub limit: u64,
    /// Wait until the projection has applied this stream sequence.
    #[arg(long, default_value_t = 0)]
    pub min_seq: u64,
}

/// `tenants show|history <id>`
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// Tenant id.
    pub tenant_id: String,
    /// Wait until the projection has applied this stream sequence.
    #[arg(long, default_value_t = 0)]
    pub min_seq: u64,
}

/// A lifecycle command with a reason.
#[derive(Debug, Clone, Args)]
pub struct Reasoned {
    /// Tenant id.
    pub tenant_id: String,
    /// Why (kept in the event for the audit trail).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// `--wait` and `--wait-timeout`.
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `--wait` on lifecycle commands.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Wait until the tenant has settled and print it (exit 4 if it settled elsewhere — a
    /// later command countermanded this one, or the work failed — and 5 if still busy at
    /// `--wait-timeout`; the command stands either way).
    #[arg(long)]
    pub wait: bool,
    /// Longest `--wait` waits, in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub wait_timeout: u64,
}

/// `delete`
#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// Tenant id.
    pub tenant_id: String,
    /// The tenant id again: a guard against deleting the wrong tenant.
    #[arg(long)]
    pub confirm: String,
    /// Why (kept in the event for the audit trail).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// `--wait` and `--wait-timeout`.
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `plan`
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Tenant id.
    pub tenant_id: String,
    /// The new plan.
    pub plan: String,
}

/// `events …`
#[derive(Debug, Clone, Subcommand)]
pub enum EventsCommand {
    /// Print events as they are appended (from `--from-seq` when given).
    Tail(TailArgs),
    /// Write every message of the event stream, raw (headers, payload), to a file (JSON lines).
    Export(ArchiveFileArgs),
    /// Append an export to an empty stream, each message at its old sequence; run again to
    /// resume an interrupted import.
    Import(ArchiveFileArgs),
}

/// `events export` / `events import`
#[derive(Debug, Clone, Args)]
pub struct ArchiveFileArgs {
    /// The export file (export refuses to overwrite one).
    #[arg(long)]
    pub file: std::path::PathBuf,
}

/// `events tail`
#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// Only this tenant's events.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Start at this stream sequence instead of with the next new event.
    #[arg(long)]
    pub from_seq: Option<u64>,
    /// Stop after this many events.
    #[arg(long)]
    pub limit: Option<u64>,
}

/// Read models `replay` can rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProjectionName {
    /// `tenants` and `tenant_history` (services/projection).
    Tenants,
}

/// `replay`
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Which read model.
    #[arg(long, value_enum)]
    pub projection: ProjectionName,
    /// First stream sequence to apply; events before it are left out of the rebuilt model.
    #[arg(long, default_value_t = 1)]
    pub from_seq: u64,
    /// Events per hand-off from the log reader to the database writer, and per transaction
    /// of the last tail applied under the lock.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
}

/// `dlq …`
#[derive(Debug, Clone, Subcommand)]
pub enum DlqCommand {
    /// Dead letters, by consumer and sequence.
    List(DlqListArgs),
    /// Send a dead letter back to its consumer.
    Retry(DlqRetryArgs),
}

/// `dlq list`
#[derive(Debug, Clone, Args)]
pub struct DlqListArgs {
    /// Only this consumer's.
    #[arg(long)]
    pub consumer: Option<String>,
}

/// `recover`
#[derive(Debug, Clone, Args)]
pub struct RecoverArgs {
    /// Report what differs without writing anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// `consumers`
#[derive(Debug, Clone, Args)]
pub struct ConsumersArgs {
    /// Only consumers whose name contains this.
    #[arg(long)]
    pub name: Option<String>,
}

/// `dlq retry`
#[derive(Debug, Clone, Args)]
pub struct DlqRetryArgs {
    /// Durable consumer name.
    pub consumer: String,
    /// Stream sequence of the event.
    pub sequence: u64,
}

/// `vault …`
#[derive(Debug, Clone, Subcommand)]
pub enum VaultCommand {
    /// Who read or changed which secret, newest first.
    Audit(AuditArgs),
    /// Crypto-shred a tenant: destroy every data key it has, so none of its secrets can ever
    /// be read again. Needs `--confirm <tenant id>`. Deleting a tenant does this by itself.
    Shred(ShredArgs),
}

/// `vault shred`
#[derive(Debug, Clone, Args)]
pub struct ShredArgs {
    /// Tenant id.
    pub tenant_id: String,
    /// The tenant id again: there is no undo.
    #[arg(long)]
    pub confirm: String,
    /// Why (kept in the vault's audit log).
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// `vault audit`
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this caller (service).
    #[arg(long)]
    pub caller: Option<String>,
    /// At or after (RFC 3339, e.g. 2025-01-31T00:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// Before (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

/// Tenant statuses on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    /// Requested.
    Requested,
    /// Provisioning.
    Provisioning,
    /// Active.
    Active,
    /// Suspended.
    Suspended,
    /// Deleting.
    Deleting,
    /// Deleted.
    Deleted,
    /// Failed.
    Failed,
}

impl From<StatusArg> for tenancy::Status {
    fn from(s: StatusArg) -> Self {
        use tenancy::Status as S;
        match s {
            StatusArg::Requested => S::Requested,
            StatusArg::Provisioning => S::Provisioning,
            StatusArg::Active => S::Active,
            StatusArg::Suspended => S::Suspended,
            StatusArg::Deleting => S::Deleting,
            StatusArg::Deleted => S::Deleted,
            StatusArg::Failed => S::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The global flag groups (TLS, NATS) must not reuse an argument id.
    #[test]
    fn flags_are_unique() {
        super::Cli::command().debug_assert();
    }
}
