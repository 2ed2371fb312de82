//! `tenantctl`, the Tenantry operator CLI, as a library: [`run`] executes a parsed [`Cli`]
//! and writes its result to `out` (tables for people, JSON with `--json`); errors carry the
//! exit code they mean ([`ErrorKind`]). `main` only parses, calls [`run`] and exits.
//!
//! It talks to the services through their gRPC APIs (TenantDirectory, ProjectionAdmin,
//! TenantAdmin, Vault) and, for `events tail`, `dlq` and `consumers`, to NATS: it never writes a service's
//! tables itself.

#![warn(missing_docs)]

pub mod cli;
pub mod error;
mod output;
pub mod wait;

use std::io::{BufRead, Write};
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use eventstore::{EventStore, RecordedEvent};
use futures::StreamExt;
use proto::v1 as pb;
use secrecy::{ExposeSecret, SecretString};
use tonic::transport::{Channel, Endpoint};

pub use cli::{Cli, Command};
pub use error::{CliError, ErrorKind};

use crate::cli::{
    ArchiveFileArgs, AuditArgs, BillingCommand, DlqCommand, EventsCommand, Global, ListArgs,
    ReplayArgs, ShredArgs, TailArgs, TenantsCommand, VaultCommand, WaitArgs,
};
use crate::output::{AdminResult, EventLine, Output, TenantView};

/// Runs one command, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    let g = &cli.global;
    let mut o = Output::new(out, g.json);
    match cli.command {
        Command::Tenants(TenantsCommand::List(args)) => tenants_list(g, &args, &mut o).await,
        Command::Tenants(TenantsCommand::Show(args)) => {
            let mut c = directory(g).await?;
            let t = c
                .get_tenant(pb::GetTenantRequest {
                    tenant_id: args.tenant_id,
                    min_sequence: args.min_seq,
                })
                .await?
                .into_inner();
            o.tenant(&TenantView::from(&t))
        }
        Command::Tenants(TenantsCommand::History(args)) => {
            let mut c = directory(g).await?;
            let h = c
                .get_history(pb::GetHistoryRequest {
                    tenant_id: args.tenant_id.clone(),
                    min_sequence: args.min_seq,
                })
                .await?
                .into_inner();
            o.history(&args.tenant_id, &h.entries)
        }
        Command::Suspend(a) => {
            let wait = a.wait.clone();
            let mut c = admin(g).await?;
            let r = c
                .suspend_tenant(authed(
                    &admin_token(g)?,
                    pb::SuspendTenantRequest {
                        tenant_id: a.tenant_id,
                        reason: a.reason,
                    },
                )?)
                .await?
                .into_inner();
            o.admin(&AdminResult::new("suspension requested", &r))?;
            follow(g, &mut o, &r, pb::TenantStatus::Suspended, &wait).await
        }
        Command::Resume(a) => {
            let wait = a.wait.clone();
            let mut c = admin(g).await?;
            let r = c
                .resume_tenant(authed(
                    &admin_token(g)?,
                    pb::ResumeTenantRequest {
                        tenant_id: a.tenant_id,
                        reason: a.reason,
                    },
                )?)
                .await?
                .into_inner();
            o.admin(&AdminResult::new("resume requested", &r))?;
            follow(g, &mut o, &r, pb::TenantStatus::Active, &wait).await
        }
        Command::Delete(a) => {
            if a.confirm != a.tenant_id {
                return Err(CliError::new(
                    ErrorKind::Usage,
                    "--confirm must repeat the tenant id exactly; nothing was deleted",
                ));
            }
            let wait = a.wait.clone();
            let mut c = admin(g).await?;
            let r = c
                .delete_tenant(authed(
                    &admin_token(g)?,
                    pb::DeleteTenantRequest {
                        tenant_id: a.tenant_id,
                        reason: a.reason,
                        confirm: a.confirm,
                    },
                )?)
                .await?
                .into_inner();
            o.admin(&AdminResult::new("deletion requested", &r))?;
            follow(g, &mut o, &r, pb::TenantStatus::Deleted, &wait).await
        }
        Command::Retry(a) => {
            let wait = a.wait.clone();
            let mut c = admin(g).await?;
            let r = c
                .retry_provisioning(authed(
                    &admin_token(g)?,
                    pb::RetryProvisioningRequest {
                        tenant_id: a.tenant_id,
                        reason: a.reason,
                    },
                )?)
                .await?
                .into_inner();
            o.admin(&AdminResult::new("provisioning retry requested", &r))?;
            follow(g, &mut o, &r, pb::TenantStatus::Active, &wait).await
        }
        Command::Plan(a) => {
            let mut c = admin(g).await?;
            let r = c
                .change_plan(authed(
                    &admin_token(g)?,
                    pb::ChangePlanRequest {
                        tenant_id: a.tenant_id,
                        plan: a.plan,
                    },
                )?)
                .await?;
            o.admin(&AdminResult::new("plan change requested", &r.into_inner()))
        }
        Command::Events(EventsCommand::Tail(args)) => events_tail(g, &args, &mut o).await,
        Command::Events(EventsCommand::Export(args)) => events_export(g, &args, &mut o).await,
        Command::Events(EventsCommand::Import(args)) => events_import(g, &args, &mut o).await,
        Command::Replay(args) => replay(g, &args, &mut o).await,
        Command::Dlq(DlqCommand::List(args)) => {
            let store = event_store(g).await?;
            let mut letters = store.dead_letters().await?.list().await?;
            if let Some(c) = &args.consumer {
                letters.retain(|l| &l.consumer == c);
            }
            o.dead_letters(&letters)
        }
        Command::Dlq(DlqCommand::Retry(args)) => {
            let store = event_store(g).await?;
            let dlq = store.dead_letters().await?;
            if dlq.get(&args.consumer, args.sequence).await?.is_none() {
                return Err(CliError::new(
                    ErrorKind::NotFound,
                    format!(
                        "no dead letter for consumer {} at sequence {}; see `tenantctl dlq list`",
                        args.consumer, args.sequence
                    ),
                ));
            }
            dlq.retry(&args.consumer, args.sequence).await?;
            o.retried(&args.consumer, args.sequence)
        }
        Command::Recover(args) => {
            let store = event_store(g).await?;
            let bar = output::progress_bar_unless(g.json);
            let step = |bar: &indicatif::ProgressBar, what: &'static str| {
                bar.set_message(what);
                bar.set_position(0);
                let bar = bar.clone();
                move |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                }
            };
            let signup =
                signup::recovery::recover(&store, args.dry_run, step(&bar, "signup events"))
                    .await
                    .inspect_err(|_| bar.abandon())?;
            let provisioner = provisioner::recovery::recover(
                &store,
                args.dry_run,
                step(&bar, "provisioning events"),
            )
            .await
            .inspect_err(|_| bar.abandon())?;
            bar.finish_and_clear();
            o.recovered(&signup, &provisioner, args.dry_run)
        }
        Command::Consumers(args) => {
            let mut consumers = event_store(g).await?.consumers().await?;
            if let Some(part) = &args.name {
                consumers.retain(|c| c.name.contains(part.as_str()));
            }
            o.consumers(&consumers, chrono::Utc::now())
        }
        Command::Vault(VaultCommand::Audit(args)) => vault_audit(g, &args, &mut o).await,
        Command::Vault(VaultCommand::Shred(args)) => vault_shred(g, &args, &mut o).await,
        Command::Billing(cmd) => billing_command(g, cmd, &mut o).await,
    }
}

async fn billing_client(
    g: &Global,
) -> Result<
    pb::billing_client::BillingClient<
        tonic::service::interceptor::InterceptedService<Channel, Bearer>,
    >,
    CliError,
> {
    let auth = Bearer(bearer(&admin_token(g)?)?);
    Ok(pb::billing_client::BillingClient::with_interceptor(
        channel(g, &g.billing_url, "billing").await?,
        auth,
    ))
}

async fn billing_command(
    g: &Global,
    cmd: BillingCommand,
    o: &mut Output<'_>,
) -> Result<(), CliError> {
    let mut client = billing_client(g).await?;
    let tenant = |raw: &str| {
        tenancy::TenantId::parse(raw)
            .map(|t| t.to_string())
            .map_err(|e| CliError::new(ErrorKind::Usage, format!("tenant id: {e}")))
    };
    match cmd {
        BillingCommand::Plans => {
            let plans = client
                .list_plans(pb::ListPlansRequest {})
                .await?
                .into_inner();
            o.plans(&plans)
        }
        BillingCommand::Show(a) => {
            let sub = client
                .get_subscription(pb::GetSubscriptionRequest {
                    tenant_id: tenant(&a.tenant_id)?,
                })
                .await?
                .into_inner();
            o.subscription(&sub)
        }
        BillingCommand::Invoices(a) => {
            let list = client
                .list_invoices(pb::ListInvoicesRequest {
                    tenant_id: tenant(&a.tenant_id)?,
                })
                .await?
                .into_inner();
            o.invoices(&list.invoices)
        }
        BillingCommand::Pay(a) => {
            let paid = client
                .record_payment(pb::RecordPaymentRequest {
                    tenant_id: tenant(&a.tenant_id)?,
                    invoice_id: a.invoice.clone(),
                    reference: a.reference.clone(),
                })
                .await?
                .into_inner();
            o.paid(&paid)
        }
    }
}

/// Connects a gRPC channel; a server that is not there is `Unavailable` (exit 5).
async fn channel(g: &Global, url: &str, what: &str) -> Result<Channel, CliError> {
    connect(
        endpoint(g, url, what)?.timeout(Duration::from_secs(30)),
        url,
        what,
    )
    .await
}

/// [`channel`] without a per-call timeout, for streams that run as long as their work.
async fn channel_without_timeout(g: &Global, url: &str, what: &str) -> Result<Channel, CliError> {
    connect(endpoint(g, url, what)?, url, what).await
}

fn endpoint(g: &Global, url: &str, what: &str) -> Result<Endpoint, CliError> {
    if Endpoint::from_shared(url.to_owned()).is_err() {
        return Err(CliError::new(
            ErrorKind::Usage,
            format!("{url:?} is not a valid {what} URL"),
        ));
    }
    let tls = svc::ClientTlsArgs {
        ca: g.tls_ca.clone(),
        cert: g.tls_client_cert.clone(),
        key: g.tls_client_key.clone(),
    }
    .load()
    .and_then(|tls| tls.endpoint(url))
    .map_err(|e| CliError::new(ErrorKind::Usage, e.to_string()))?;
    Ok(tls.connect_timeout(Duration::from_secs(5)))
}

async fn connect(endpoint: Endpoint, url: &str, what: &str) -> Result<Channel, CliError> {
    endpoint.connect().await.map_err(|e| {
        CliError::new(
            ErrorKind::Unavailable,
            format!("cannot reach the {what} at {url}: {e}"),
        )
    })
}

/// Adds the operator's bearer token to every call of a client.
#[derive(Clone)]
struct Bearer(tonic::metadata::AsciiMetadataValue);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

/// The directory client, authenticated as the operator.
type DirectoryClient = pb::tenant_directory_client::TenantDirectoryClient<
    tonic::service::interceptor::InterceptedService<Channel, Bearer>,
>;

/// `--wait`: the settled tenant, printed, once the read model shows it.
async fn follow(
    g: &Global,
    o: &mut Output<'_>,
    r: &pb::AdminCommandResponse,
    wanted: pb::TenantStatus,
    wait: &WaitArgs,
) -> Result<(), CliError> {
    if !wait.wait {
        return Ok(());
    }
    let c = directory(g).await?;
    let t = wait::settle(
        |req| {
            let mut c = c.clone();
            async move { c.get_tenant(req).await.map(tonic::Response::into_inner) }
        },
        &r.tenant_id,
        r.sequence,
        wanted,
        Duration::from_secs(wait.wait_timeout.max(1)),
    )
    .await?;
    o.tenant(&TenantView::from(&t))
}

async fn directory(g: &Global) -> Result<DirectoryClient, CliError> {
    let auth = Bearer(bearer(&admin_token(g)?)?);
    Ok(
        pb::tenant_directory_client::TenantDirectoryClient::with_interceptor(
            channel(g, &g.directory_url, "directory (projection)").await?,
            auth,
        ),
    )
}

async fn admin(
    g: &Global,
) -> Result<pb::tenant_admin_client::TenantAdminClient<Channel>, CliError> {
    Ok(pb::tenant_admin_client::TenantAdminClient::new(
        channel(g, &g.admin_url, "operator API of the signup service").await?,
    ))
}

/// A token from the embedding program, else `env`, else `file`; missing is exit 6.
fn token(
    given: &Option<SecretString>,
    what: &str,
    env: &str,
    file: Option<&std::path::Path>,
    file_flag: &str,
) -> Result<SecretString, CliError> {
    if let Some(t) = given {
        return Ok(t.clone());
    }
    svc::secret::load(what, env, file)
        .map_err(|e| CliError::new(ErrorKind::Usage, e.to_string()))?
        .ok_or_else(|| {
            CliError::new(
                ErrorKind::Unauthorized,
                format!("this command needs {what}: set {env} or pass {file_flag} <file>"),
            )
        })
}

fn admin_token(g: &Global) -> Result<SecretString, CliError> {
    token(
        &g.admin_token,
        "your operator token",
        "TENANTRY_ADMIN_TOKEN",
        g.admin_token_file.as_deref(),
        "--admin-token-file",
    )
}

fn vault_token(g: &Global) -> Result<SecretString, CliError> {
    token(
        &g.vault_token,
        "the vault token of the `operator` caller",
        "TENANTRY_VAULT_TOKEN",
        g.vault_token_file.as_deref(),
        "--vault-token-file",
    )
}

fn bearer(token: &SecretString) -> Result<tonic::metadata::AsciiMetadataValue, CliError> {
    let mut value: tonic::metadata::AsciiMetadataValue =
        format!("Bearer {}", token.expose_secret().trim())
            .parse()
            .map_err(|_| {
                CliError::new(
                    ErrorKind::Usage,
                    "the token holds characters a header cannot carry",
                )
            })?;
    value.set_sensitive(true);
    Ok(value)
}

/// A request with `authorization: Bearer <token>`.
fn authed<T>(token: &SecretString, message: T) -> Result<tonic::Request<T>, CliError> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", bearer(token)?);
    Ok(request)
}

async fn event_store(g: &Global) -> Result<EventStore, CliError> {
    let config = g
        .nats
        .store_config()
        .map_err(|e| CliError::new(ErrorKind::Usage, e.to_string()))?;
    Ok(EventStore::connect(&config).await?)
}

async fn tenants_list(g: &Global, args: &ListArgs, o: &mut Output<'_>) -> Result<(), CliError> {
    let mut c = directory(g).await?;
    let status = args
        .status
        .map(|s| pb::TenantStatus::from(tenancy::Status::from(s)) as i32)
        .unwrap_or(0);
    let mut tenants = Vec::new();
    let mut token = String::new();
    let mut total;
    let mut min_sequence = args.min_seq;
    loop {
        let want = if args.limit == 0 {
            500
        } else {
            (args.limit - tenants.len() as u64).min(500)
        };
        let page = c
            .list_tenants(pb::ListTenantsRequest {
                status,
                plan: args.plan.clone().unwrap_or_default(),
                bench: args.bench.clone().unwrap_or_default(),
                page_size: u32::try_from(want).unwrap_or(500),
                page_token: token.clone(),
                min_sequence,
            })
            .await?
            .into_inner();
        // Only the first page needs to wait for the sequence.
        min_sequence = 0;
        total = page.total;
        tenants.extend(page.tenants.iter().map(TenantView::from));
        token = page.next_page_token;
        if token.is_empty() || (args.limit != 0 && tenants.len() as u64 >= args.limit) {
            break;
        }
    }
    o.tenants(&tenants, total)
}

async fn events_tail(g: &Global, args: &TailArgs, o: &mut Output<'_>) -> Result<(), CliError> {
    let store = event_store(g).await?;
    let filter = match &args.tenant {
        Some(t) => store.tenant_filter(t),
        None => store.all_filter(),
    };
    let stream = store
        .jetstream()
        .get_stream(store.stream_name())
        .await
        .map_err(|e| CliError::new(ErrorKind::Unavailable, e.to_string()))?;
    let deliver_policy = match args.from_seq {
        Some(s) => DeliverPolicy::ByStartSequence {
            start_sequence: s.max(1),
        },
        None => DeliverPolicy::New,
    };
    // An ordered consumer: ephemeral, gap-free, in stream order — what tailing a log needs.
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: filter,
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| CliError::new(ErrorKind::Unavailable, e.to_string()))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| CliError::new(ErrorKind::Unavailable, e.to_string()))?;
    o.tail_header()?;
    let mut printed = 0u64;
    if args.limit == Some(0) {
        return Ok(());
    }
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| CliError::new(ErrorKind::Unavailable, e.to_string()))?;
        let Ok(info) = message.info() else { continue };
        let (sequence, published) = (info.stream_sequence, info.published);
        let event = match RecordedEvent::decode(
            &message.subject,
            sequence,
            message.headers.as_ref(),
            &message.payload,
            published,
        ) {
            Ok(e) => e,
            Err(e) => {
                tracing_free_warn(o, &e.to_string())?;
                continue;
            }
        };
        o.event(&EventLine::from(&event))?;
        printed += 1;
        if args.limit.is_some_and(|l| printed >= l) {
            break;
        }
    }
    Ok(())
}

/// Undecodable messages are reported inline rather than ending the tail.
fn tracing_free_warn(o: &mut Output<'_>, message: &str) -> Result<(), CliError> {
    o.note(&format!("skipped a message: {message}"))
}

async fn replay(g: &Global, args: &ReplayArgs, o: &mut Output<'_>) -> Result<(), CliError> {
    let request = authed(
        &admin_token(g)?,
        pb::RebuildRequest {
            from_sequence: args.from_seq,
            batch_size: u32::try_from(args.batch_size.max(1)).unwrap_or(u32::MAX),
        },
    )?;
    // No call timeout: a rebuild of a large log runs for minutes, reporting as it goes.
    let mut c = pb::projection_admin_client::ProjectionAdminClient::new(
        channel_without_timeout(g, &g.directory_url, "projection").await?,
    );
    let mut progress = c.rebuild(request).await?.into_inner();
    let bar = output::progress_bar_unless(g.json);
    let mut report = None;
    while let Some(p) = progress.message().await.inspect_err(|_| bar.abandon())? {
        bar.set_length(p.total);
        bar.set_position(p.applied);
        bar.set_message(match pb::RebuildPhase::try_from(p.phase) {
            Ok(pb::RebuildPhase::Replaying) => "replaying",
            Ok(pb::RebuildPhase::CatchingUp) => "catching up",
            Ok(pb::RebuildPhase::Flipping) => "switching over",
            Ok(pb::RebuildPhase::Done) => "done",
            _ => "",
        });
        if p.report.is_some() {
            report = p.report;
        }
    }
    bar.finish_and_clear();
    let report = report.ok_or_else(|| {
        CliError::new(
            ErrorKind::Unavailable,
            "the projection ended the rebuild stream without a report; see its logs, then run \
             `tenantctl replay` again (a rebuild that did not finish never replaces the model)",
        )
    })?;
    o.rebuilt(&report)
}

/// Refusals of an import (another stream's events, a gap) are the operator's to resolve.
fn archive_error(e: eventstore::StoreError) -> CliError {
    match e {
        eventstore::StoreError::Invalid(m) => CliError::new(ErrorKind::Refused, m),
        other => other.into(),
    }
}

async fn events_export(
    g: &Global,
    args: &ArchiveFileArgs,
    o: &mut Output<'_>,
) -> Result<(), CliError> {
    if args.file.exists() {
        return Err(CliError::new(
            ErrorKind::Refused,
            format!(
                "{} exists; move it away or name another file (an export never overwrites one)",
                args.file.display()
            ),
        ));
    }
    let store = event_store(g).await?;
    // Written beside the target and renamed at the end: a file under the name is complete.
    let partial = {
        let mut p = args.file.clone().into_os_string();
        p.push(".partial");
        std::path::PathBuf::from(p)
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(&partial).map_err(|e| {
        CliError::new(
            ErrorKind::Failure,
            format!("cannot create {}: {e}", partial.display()),
        )
    })?);
    let bar = output::progress_bar_unless(g.json);
    bar.set_message("exporting");
    let report = store
        .export(&mut out, |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .await
        .inspect_err(|_| bar.abandon())
        .map_err(archive_error)?;
    bar.finish_and_clear();
    drop(out);
    std::fs::rename(&partial, &args.file).map_err(|e| {
        CliError::new(
            ErrorKind::Failure,
            format!(
                "the export is complete in {} but cannot be renamed to {}: {e}",
                partial.display(),
                args.file.display()
            ),
        )
    })?;
    o.archived("exported", &report, &args.file)
}

async fn events_import(
    g: &Global,
    args: &ArchiveFileArgs,
    o: &mut Output<'_>,
) -> Result<(), CliError> {
    let file = std::fs::File::open(&args.file).map_err(|e| {
        CliError::new(
            ErrorKind::NotFound,
            format!("cannot open {}: {e}", args.file.display()),
        )
    })?;
    let lines = std::io::BufReader::new(&file)
        .lines()
        .filter(|l| l.as_ref().is_ok_and(|l| !l.trim().is_empty()))
        .count() as u64;
    let store = event_store(g).await?;
    let bar = output::progress_bar_unless(g.json);
    bar.set_message("importing");
    bar.set_length(lines);
    let mut input = std::io::BufReader::new(std::fs::File::open(&args.file)?);
    let report = store
        .import(&mut input, |done| bar.set_position(done))
        .await
        .inspect_err(|_| bar.abandon())
        .map_err(archive_error)?;
    bar.finish_and_clear();
    o.archived("imported", &report, &args.file)
}

fn parse_time(
    flag: &str,
    raw: &Option<String>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, CliError> {
    let Some(raw) = raw else { return Ok(None) };
    let t = chrono::DateTime::parse_from_rfc3339(raw.trim()).map_err(|_| {
        CliError::new(
            ErrorKind::Usage,
            format!("{flag} {raw:?} is not an RFC 3339 time like 2025-01-31T00:00:00Z"),
        )
    })?;
    Ok(Some(t.with_timezone(&chrono::Utc)))
}

async fn vault_audit(g: &Global, args: &AuditArgs, o: &mut Output<'_>) -> Result<(), CliError> {
    let query = vault_client::AuditQuery {
        tenant_id: args.tenant.clone().unwrap_or_default(),
        caller: args.caller.clone().unwrap_or_default(),
        since: parse_time("--since", &args.since)?,
        until: parse_time("--until", &args.until)?,
        limit: args.limit,
    };
    let vault = vault_client(g).await?;
    let entries = vault.audit(&query).await?;
    o.audit(&entries)
}

async fn vault_client(g: &Global) -> Result<vault_client::VaultClient, CliError> {
    let token = vault_token(g)?;
    vault_client::VaultClient::from_channel(channel(g, &g.vault_url, "vault").await?, &token)
        .map_err(|e| CliError::new(ErrorKind::Usage, e.to_string()))
}

async fn vault_shred(g: &Global, args: &ShredArgs, o: &mut Output<'_>) -> Result<(), CliError> {
    if args.confirm != args.tenant_id {
        return Err(CliError::new(
            ErrorKind::Usage,
            "--confirm must repeat the tenant id exactly; nothing was shredded",
        ));
    }
    let vault = vault_client(g).await?;
    let shredded = vault.shred_tenant(&args.tenant_id, &args.reason).await?;
    o.shredded(&args.tenant_id, shredded)
}
