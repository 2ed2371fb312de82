//! Rendering: aligned tables for people, JSON for scripts. Every command's JSON shape is built
//! from the serde views here, so it stays stable when the tables change.

use std::io::Write;

use comfy_table::{Table, presets};
use eventstore::{ConsumerStatus, DeadLetter, RecordedEvent};
use proto::v1 as pb;
use serde::Serialize;
use tenancy::Status;

use crate::error::CliError;

fn time(t: Option<prost_types::Timestamp>) -> Option<String> {
    let t = t?;
    chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn status_name(v: i32) -> &'static str {
    match Status::from_proto_i32(v) {
        Status::None => "Unknown",
        s => s.as_str(),
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// A tenant, as `tenants list|show` print it.
#[derive(Debug, Clone, Serialize)]
pub struct TenantView {
    tenant_id: String,
    status: &'static str,
    subdomain: String,
    site: String,
    url: String,
    bench: String,
    plan: String,
    organisation: String,
    owner_email: String,
    owner_name: String,
    region: String,
    created_at: Option<String>,
    updated_at: Option<String>,
    last_error: Option<String>,
    activation_ms: Option<u64>,
    sso_status: String,
    sso_login_url: Option<String>,
    sso_error: Option<String>,
    /// A command asked for and not done yet (`suspending`, `resuming`, `deleting`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<String>,
    version: u64,
}

impl From<&pb::Tenant> for TenantView {
    fn from(t: &pb::Tenant) -> Self {
        Self {
            tenant_id: t.tenant_id.clone(),
            status: status_name(t.status),
            subdomain: t.subdomain.clone(),
            site: t.site.clone(),
            url: t.url.clone(),
            bench: t.bench.clone(),
            plan: t.plan.clone(),
            organisation: t.organisation.clone(),
            owner_email: t.owner_email.clone(),
            owner_name: t.owner_name.clone(),
            region: t.region.clone(),
            created_at: time(t.created_at),
            updated_at: time(t.updated_at),
            last_error: (!t.last_error.is_empty()).then(|| t.last_error.clone()),
            activation_ms: (t.activation_ms > 0).then_some(t.activation_ms),
            sso_status: t.sso_status.clone(),
            sso_login_url: (!t.sso_login_url.is_empty()).then(|| t.sso_login_url.clone()),
            sso_error: (!t.sso_error.is_empty()).then(|| t.sso_error.clone()),
            pending: (!t.pending.is_empty()).then(|| t.pending.clone()),
            version: t.version,
        }
    }
}

/// The answer to a lifecycle command.
#[derive(Debug, Clone, Serialize)]
pub struct AdminResult {
    #[serde(skip)]
    what: &'static str,
    tenant_id: String,
    status: &'static str,
    sequence: u64,
    event_id: String,
}

impl AdminResult {
    /// `what` says what happened, e.g. "suspension requested".
    pub fn new(what: &'static str, r: &pb::AdminCommandResponse) -> Self {
        Self {
            what,
            tenant_id: r.tenant_id.clone(),
            status: status_name(r.status),
            sequence: r.sequence,
            event_id: r.event_id.clone(),
        }
    }
}

/// One line of `events tail`.
#[derive(Debug, Clone, Serialize)]
pub struct EventLine {
    sequence: u64,
    occurred_at: String,
    event_type: String,
    context: &'static str,
    tenant_id: String,
    summary: String,
    event_id: String,
    correlation_id: String,
}

impl From<&RecordedEvent> for EventLine {
    fn from(e: &RecordedEvent) -> Self {
        Self {
            sequence: e.sequence,
            occurred_at: e
                .occurred_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            event_type: e.event_type.clone(),
            context: e.body.context().as_str(),
            tenant_id: e.body.tenant_id().to_owned(),
            summary: tenancy::summarize(&e.body),
            event_id: e.event_id.to_string(),
            correlation_id: e.correlation(),
        }
    }
}

#[derive(Serialize)]
struct HistoryLine<'a> {
    sequence: u64,
    occurred_at: Option<String>,
    event_type: &'a str,
    context: &'a str,
    summary: &'a str,
    event_id: &'a str,
    correlation_id: &'a str,
    causation_id: &'a str,
}

#[derive(Serialize)]
struct AuditLine<'a> {
    id: i64,
    at: Option<String>,
    caller: &'a str,
    operation: &'a str,
    tenant_id: &'a str,
    secret_name: &'a str,
    outcome: &'a str,
    reason: &'a str,
    correlation_id: &'a str,
}

/// The replay progress bar: count, rate and ETA, on stderr (hidden when it is not a terminal).
pub fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template(
        "{msg:>14} [{bar:40}] {pos}/{len} events  {per_sec}  ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// [`progress_bar`] on a terminal run, a hidden one under `--json` (output stays one document).
pub fn progress_bar_unless(json: bool) -> indicatif::ProgressBar {
    if json {
        indicatif::ProgressBar::hidden()
    } else {
        progress_bar()
    }
}

/// `t` as "<n>s ago", "<n>m ago", "<n>h ago" or "<n>d ago" from `now`.
fn ago(now: chrono::DateTime<chrono::Utc>, t: chrono::DateTime<chrono::Utc>) -> String {
    let secs = (now - t).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(header.iter().copied());
    t
}

/// Where output goes, and in which form.
pub struct Output<'a> {
    out: &'a mut (dyn Write + Send),
    json: bool,
}

impl<'a> Output<'a> {
    /// Writes to `out`, JSON when `json`.
    pub fn new(out: &'a mut (dyn Write + Send), json: bool) -> Self {
        Self { out, json }
    }

    fn json_line(&mut self, value: &impl Serialize) -> Result<(), CliError> {
        serde_json::to_writer(&mut *self.out, value)?;
        writeln!(self.out)?;
        Ok(())
    }

    fn print_table(&mut self, t: &Table) -> Result<(), CliError> {
        // comfy-table pads every cell, so its lines end in spaces; trim them for clean output.
        for line in t.to_string().lines() {
            writeln!(self.out, "{}", line.trim_end())?;
        }
        Ok(())
    }

    /// `tenants list`.
    pub fn tenants(&mut self, tenants: &[TenantView], total: u64) -> Result<(), CliError> {
        if self.json {
            return self.json_line(&serde_json::json!({ "tenants": tenants, "total": total }));
        }
        let mut t = table(&[
            "TENANT",
            "STATUS",
            "SUBDOMAIN",
            "PLAN",
            "BENCH",
            "SITE",
            "CREATED",
        ]);
        for v in tenants {
            t.add_row(vec![
                v.tenant_id.as_str(),
                v.status,
                dash(&v.subdomain),
                dash(&v.plan),
                dash(&v.bench),
                dash(&v.site),
                v.created_at.as_deref().unwrap_or("-"),
            ]);
        }
        if !tenants.is_empty() {
            self.print_table(&t)?;
        }
        writeln!(self.out, "{} of {} tenants", tenants.len(), total)?;
        Ok(())
    }

    /// `tenants show`.
    pub fn tenant(&mut self, v: &TenantView) -> Result<(), CliError> {
        if self.json {
            return self.json_line(v);
        }
        let rows: Vec<(&str, String)> = vec![
            ("Tenant", v.tenant_id.clone()),
            (
                "Status",
                match &v.pending {
                    // The command is accepted; the change has not happened yet.
                    Some(p) => format!("{} ({p})", v.status),
                    None => v.status.to_owned(),
                },
            ),
            ("Organisation", dash(&v.organisation).to_owned()),
            ("Owner", format!("{} <{}>", v.owner_name, v.owner_email)),
            ("Subdomain", dash(&v.subdomain).to_owned()),
            ("Site", dash(&v.site).to_owned()),
            ("URL", dash(&v.url).to_owned()),
            ("Bench", dash(&v.bench).to_owned()),
            ("Region", dash(&v.region).to_owned()),
            ("Plan", dash(&v.plan).to_owned()),
            (
                "Created",
                v.created_at.clone().unwrap_or_else(|| "-".into()),
            ),
            (
                "Updated",
                v.updated_at.clone().unwrap_or_else(|| "-".into()),
            ),
            (
                "Activation",
                v.activation_ms
                    .map(|ms| format!("{ms} ms"))
                    .unwrap_or_else(|| "-".into()),
            ),
            (
                "Last error",
                v.last_error.clone().unwrap_or_else(|| "-".into()),
            ),
            ("SSO", dash(&v.sso_status).to_owned()),
            (
                "SSO login",
                v.sso_login_url.clone().unwrap_or_else(|| "-".into()),
            ),
            (
                "SSO error",
                v.sso_error.clone().unwrap_or_else(|| "-".into()),
            ),
            ("Version", v.version.to_string()),
        ];
        for (k, val) in rows {
            writeln!(self.out, "{k:<13} {val}")?;
        }
        Ok(())
    }

    /// `tenants history`.
    pub fn history(
        &mut self,
        tenant_id: &str,
        entries: &[pb::HistoryEntry],
    ) -> Result<(), CliError> {
        if self.json {
            let lines: Vec<HistoryLine<'_>> = entries
                .iter()
                .map(|e| HistoryLine {
                    sequence: e.sequence,
                    occurred_at: time(e.occurred_at),
                    event_type: &e.event_type,
                    context: &e.context,
                    summary: &e.summary,
                    event_id: &e.event_id,
                    correlation_id: &e.correlation_id,
                    causation_id: &e.causation_id,
                })
                .collect();
            return self
                .json_line(&serde_json::json!({ "tenant_id": tenant_id, "entries": lines }));
        }
        let mut t = table(&["SEQ", "WHEN", "EVENT", "SUMMARY"]);
        for e in entries {
            t.add_row(vec![
                e.sequence.to_string(),
                time(e.occurred_at).unwrap_or_else(|| "-".into()),
                e.event_type.clone(),
                e.summary.clone(),
            ]);
        }
        self.print_table(&t)
    }

    /// suspend|resume|delete|retry|plan.
    pub fn admin(&mut self, r: &AdminResult) -> Result<(), CliError> {
        if self.json {
            return self.json_line(r);
        }
        writeln!(
            self.out,
            "ok: {} for tenant {} (status {}, sequence {}, event {})",
            r.what, r.tenant_id, r.status, r.sequence, r.event_id
        )?;
        writeln!(
            self.out,
            "follow it with: tenantctl tenants show {} --min-seq {}",
            r.tenant_id, r.sequence
        )?;
        Ok(())
    }

    /// Header of `events tail` (people only).
    pub fn tail_header(&mut self) -> Result<(), CliError> {
        if !self.json {
            writeln!(
                self.out,
                "{:>8}  {:<24}  {:<28}  {:<36}  SUMMARY",
                "SEQ", "WHEN", "EVENT", "TENANT"
            )?;
        }
        Ok(())
    }

    /// One line of `events tail`, flushed at once so a pipe sees it live.
    pub fn event(&mut self, e: &EventLine) -> Result<(), CliError> {
        if self.json {
            self.json_line(e)?;
        } else {
            writeln!(
                self.out,
                "{:>8}  {:<24}  {:<28}  {:<36}  {}",
                e.sequence, e.occurred_at, e.event_type, e.tenant_id, e.summary
            )?;
        }
        self.out.flush()?;
        Ok(())
    }

    /// A remark that is not a result (people only; JSON consumers get only results).
    pub fn note(&mut self, text: &str) -> Result<(), CliError> {
        if !self.json {
            writeln!(self.out, "# {text}")?;
        }
        Ok(())
    }

    /// `consumers`: one row per durable, with how long ago it last delivered.
    pub fn consumers(
        &mut self,
        consumers: &[ConsumerStatus],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), CliError> {
        if self.json {
            return self.json_line(&serde_json::json!({ "consumers": consumers }));
        }
        if consumers.is_empty() {
            writeln!(
                self.out,
                "no durable consumers (no service has subscribed yet)"
            )?;
            return Ok(());
        }
        let mut t = table(&[
            "CONSUMER",
            "FILTER",
            "PENDING",
            "ACK PENDING",
            "REDELIVERED",
            "WAITING",
            "DELIVERED SEQ",
            "ACK FLOOR",
            "LAST ACTIVE",
        ]);
        for c in consumers {
            t.add_row(vec![
                c.name.clone(),
                dash(&c.filter).to_owned(),
                c.pending.to_string(),
                c.ack_pending.to_string(),
                c.redelivered.to_string(),
                c.waiting.to_string(),
                c.delivered_sequence.to_string(),
                c.ack_floor.to_string(),
                c.last_active
                    .map_or_else(|| "never".to_owned(), |t| ago(now, t)),
            ]);
        }
        self.print_table(&t)
    }

    /// `recover`.
    pub fn recovered(
        &mut self,
        signup: &eventstore::derived::Recovery,
        provisioner: &eventstore::derived::Recovery,
        dry_run: bool,
    ) -> Result<(), CliError> {
        let buckets: Vec<&eventstore::derived::BucketReport> =
            signup.buckets.iter().chain(&provisioner.buckets).collect();
        if self.json {
            return self.json_line(&serde_json::json!({
                "dry_run": dry_run,
                "signup_events": signup.events,
                "events": provisioner.events,
                "buckets": buckets,
            }));
        }
        let verb = if dry_run { "would restore" } else { "restored" };
        writeln!(
            self.out,
            "read {} events ({} signups){}",
            provisioner.events,
            signup.events,
            if dry_run {
                "; dry run, nothing written"
            } else {
                ""
            }
        )?;
        let mut t = table(&["BUCKET", "MATCHING", verb_upper(verb), "DIFFERING"]);
        for b in &buckets {
            t.add_row(vec![
                b.bucket.clone(),
                b.matching.to_string(),
                b.restored.len().to_string(),
                b.differing.len().to_string(),
            ]);
        }
        self.print_table(&t)?;
        for b in &buckets {
            if !b.restored.is_empty() {
                writeln!(self.out, "{} {verb}: {}", b.bucket, b.restored.join(", "))?;
            }
        }
        let differing: Vec<_> = buckets
            .iter()
            .flat_map(|b| b.differing.iter().map(move |d| (&b.bucket, d)))
            .collect();
        if differing.is_empty() {
            return Ok(());
        }
        writeln!(
            self.out,
            "left alone (work in flight, or a hand edit — check each before changing it):"
        )?;
        let mut t = table(&["BUCKET", "KEY", "IN THE LOG", "IN THE BUCKET"]);
        for (bucket, d) in differing {
            t.add_row(vec![
                bucket.clone(),
                d.key.clone(),
                d.in_log.clone(),
                d.in_bucket.clone(),
            ]);
        }
        self.print_table(&t)
    }

    /// `events export` / `events import`.
    pub fn archived(
        &mut self,
        what: &str,
        r: &eventstore::ArchiveReport,
        file: &std::path::Path,
    ) -> Result<(), CliError> {
        if self.json {
            return self.json_line(&serde_json::json!({
                what: {
                    "file": file.display().to_string(),
                    "messages": r.messages,
                    "already_there": r.already_there,
                    "last_sequence": r.last_sequence,
                }
            }));
        }
        write!(self.out, "{what} {} events", r.messages)?;
        if r.already_there > 0 {
            write!(
                self.out,
                " ({} were already in the stream)",
                r.already_there
            )?;
        }
        writeln!(
            self.out,
            "; the stream's last sequence is {} ({})",
            r.last_sequence,
            file.display()
        )?;
        Ok(())
    }

    /// `dlq list`.
    pub fn dead_letters(&mut self, letters: &[DeadLetter]) -> Result<(), CliError> {
        if self.json {
            return self.json_line(&serde_json::json!({ "dead_letters": letters }));
        }
        if letters.is_empty() {
            writeln!(self.out, "no dead letters")?;
            return Ok(());
        }
        let mut t = table(&[
            "CONSUMER", "SEQ", "EVENT", "TENANT", "TRIES", "RECORDED", "ERROR",
        ]);
        for l in letters {
            t.add_row(vec![
                l.consumer.clone(),
                l.stream_sequence.to_string(),
                dash(&l.event_type).to_owned(),
                dash(&l.tenant_id).to_owned(),
                l.deliveries.to_string(),
                l.recorded_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                l.error.clone(),
            ]);
        }
        self.print_table(&t)
    }

    /// A tenant's keys were shredded.
    pub fn shredded(&mut self, tenant: &str, secrets: u32) -> Result<(), CliError> {
        if self.json {
            return self.json_line(&serde_json::json!({
                "tenant_id": tenant,
                "shredded": true,
                "secrets_shredded": secrets,
            }));
        }
        writeln!(
            self.out,
            "ok: tenant {tenant} shredded; its {secrets} secret(s) can never be read again"
        )?;
        Ok(())
    }

    /// `dlq retry`.
    pub fn retried(&mut self, consumer: &str, sequence: u64) -> Result<(), CliError> {
        if self.json {
            return self.json_line(
                &serde_json::json!({ "retried": true, "consumer": consumer, "sequence": sequence }),
            );
        }
        writeln!(
            self.out,
            "ok: sequence {sequence} sent back to consumer {consumer}"
        )?;
        Ok(())
    }

    /// `replay`.
    pub fn rebuilt(&mut self, r: &pb::RebuildReport) -> Result<(), CliError> {
        let seconds = r.elapsed_ms as f64 / 1000.0;
        let rate = if r.elapsed_ms > 0 {
            r.events as f64 / seconds
        } else {
            0.0
        };
        if self.json {
            return self.json_line(&serde_json::json!({
                "projection": "tenants",
                "events": r.events,
                "tenants": r.tenants,
                "last_sequence": r.last_sequence,
                "seconds": seconds,
                "events_per_second": rate,
                "generation": r.generation,
                "previous_generation": r.previous_generation,
            }));
        }
        writeln!(
            self.out,
            "rebuilt projection tenants: {} events, {} tenants in {:.1} s ({:.0} events/s); \
             generation {} is active (replaced {}), up to sequence {}",
            r.events,
            r.tenants,
            seconds,
            rate,
            r.generation,
            r.previous_generation,
            r.last_sequence
        )?;
        Ok(())
    }

    /// `vault audit`.
    pub fn audit(&mut self, entries: &[pb::AuditEntry]) -> Result<(), CliError> {
        if self.json {
            let lines: Vec<AuditLine<'_>> = entries
                .iter()
                .map(|e| AuditLine {
                    id: e.id,
                    at: time(e.at),
                    caller: &e.caller,
                    operation: &e.operation,
                    tenant_id: &e.tenant_id,
                    secret_name: &e.secret_name,
                    outcome: &e.outcome,
                    reason: &e.reason,
                    correlation_id: &e.correlation_id,
                })
                .collect();
            return self.json_line(&serde_json::json!({ "entries": lines }));
        }
        if entries.is_empty() {
            writeln!(self.out, "no audit entries")?;
            return Ok(());
        }
        let mut t = table(&[
            "AT",
            "CALLER",
            "OPERATION",
            "TENANT",
            "SECRET",
            "OUTCOME",
            "REASON",
        ]);
        for e in entries {
            t.add_row(vec![
                time(e.at).unwrap_or_else(|| "-".into()),
                e.caller.clone(),
                e.operation.clone(),
                dash(&e.tenant_id).to_owned(),
                dash(&e.secret_name).to_owned(),
                e.outcome.clone(),
                dash(&e.reason).to_owned(),
            ]);
        }
        self.print_table(&t)
    }

    /// `billing plans`.
    pub fn plans(&mut self, p: &pb::ListPlansResponse) -> Result<(), CliError> {
        let rows: Vec<serde_json::Value> = p
            .plans
            .iter()
            .map(|x| {
                serde_json::json!({
                    "id": x.id, "name": x.name, "price_minor": x.price_minor,
                    "currency": x.currency, "interval": x.interval, "trial_days": x.trial_days,
                    "max_users": x.max_users, "max_storage_mb": x.max_storage_mb,
                    "max_database_mb": x.max_database_mb, "apps": x.apps,
                })
            })
            .collect();
        if self.json {
            return self.json_line(&serde_json::json!({ "version": p.version, "plans": rows }));
        }
        let mut t = table(&[
            "PLAN",
            "NAME",
            "PRICE",
            "TRIAL",
            "USERS",
            "STORAGE MB",
            "DB MB",
            "APPS",
        ]);
        for x in &p.plans {
            t.add_row(vec![
                x.id.clone(),
                x.name.clone(),
                format!("{} {}/{}", money(x.price_minor), x.currency, x.interval),
                format!("{} d", x.trial_days),
                x.max_users.to_string(),
                x.max_storage_mb.to_string(),
                x.max_database_mb.to_string(),
                x.apps.join(", "),
            ]);
        }
        self.print_table(&t)?;
        writeln!(self.out, "catalogue version {}", p.version)?;
        Ok(())
    }

    /// `billing show`.
    pub fn subscription(&mut self, s: &pb::SubscriptionView) -> Result<(), CliError> {
        let view = serde_json::json!({
            "tenant_id": s.tenant_id, "subscription_id": s.subscription_id, "plan": s.plan,
            "status": s.status, "price_minor": s.price_minor, "currency": s.currency,
            "interval": s.interval, "trial_ends_at": time(s.trial_ends_at),
            "next_due_at": time(s.next_due_at), "invoiced_minor": s.invoiced_minor,
            "paid_minor": s.paid_minor, "open_minor": s.open_minor,
            "usage": s.usage.as_ref().map(|u| serde_json::json!({
                "users": u.users, "database_mb": u.database_mb, "storage_mb": u.storage_mb,
                "measured_at": time(u.measured_at),
            })),
            "limits": {"max_users": s.max_users, "max_storage_mb": s.max_storage_mb,
                "max_database_mb": s.max_database_mb},
            "over_limit": (!s.over_limit.is_empty()).then(|| serde_json::json!({
                "limit": s.over_limit, "grace_ends_at": time(s.over_limit_grace_ends_at),
            })),
        });
        let limit = |v: u64| {
            if v == 0 {
                "no limit".to_owned()
            } else {
                v.to_string()
            }
        };
        if self.json {
            return self.json_line(&view);
        }
        let rows = [
            ("Tenant", s.tenant_id.clone()),
            (
                "Plan",
                format!(
                    "{} ({} {}/{})",
                    s.plan,
                    money(s.price_minor),
                    s.currency,
                    s.interval
                ),
            ),
            ("Status", s.status.clone()),
            (
                "Trial ends",
                time(s.trial_ends_at).unwrap_or_else(|| "-".into()),
            ),
            (
                "Next due",
                time(s.next_due_at).unwrap_or_else(|| "-".into()),
            ),
            (
                "Invoiced",
                format!("{} {}", money(s.invoiced_minor), s.currency),
            ),
            ("Paid", format!("{} {}", money(s.paid_minor), s.currency)),
            ("Open", format!("{} {}", money(s.open_minor), s.currency)),
            (
                "Usage",
                s.usage.as_ref().map_or_else(
                    || "not measured".to_owned(),
                    |u| {
                        format!(
                            "{} {} (of {}), database {} MB (of {}), files {} MB (of {}), measured {}",
                            u.users,
                            if u.users == 1 { "user" } else { "users" },
                            limit(u64::from(s.max_users)),
                            u.database_mb,
                            limit(s.max_database_mb),
                            u.storage_mb,
                            limit(s.max_storage_mb),
                            time(u.measured_at).unwrap_or_else(|| "-".into())
                        )
                    },
                ),
            ),
            (
                "Over limit",
                if s.over_limit.is_empty() {
                    "-".to_owned()
                } else {
                    format!(
                        "{}: suspended on {} if still over",
                        s.over_limit,
                        time(s.over_limit_grace_ends_at).unwrap_or_else(|| "-".into())
                    )
                },
            ),
        ];
        for (k, v) in rows {
            writeln!(self.out, "{k:<13} {v}")?;
        }
        Ok(())
    }

    /// `billing invoices`.
    pub fn invoices(&mut self, list: &[pb::InvoiceView]) -> Result<(), CliError> {
        if self.json {
            let rows: Vec<serde_json::Value> = list
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "invoice_id": i.invoice_id, "number": i.number,
                        "amount_minor": i.amount_minor, "currency": i.currency,
                        "status": i.status, "issued_at": time(i.issued_at),
                        "due_at": time(i.due_at), "period_start": time(i.period_start),
                        "period_end": time(i.period_end), "failed_attempts": i.failed_attempts,
                        "grace_ends_at": time(i.grace_ends_at),
                        "payment_reference": i.payment_reference,
                    })
                })
                .collect();
            return self.json_line(&serde_json::json!({ "invoices": rows }));
        }
        let mut t = table(&[
            "INVOICE", "AMOUNT", "STATUS", "PERIOD", "DUE", "FAILED", "PAYMENT",
        ]);
        for i in list {
            t.add_row(vec![
                i.number.clone(),
                format!("{} {}", money(i.amount_minor), i.currency),
                i.status.clone(),
                format!(
                    "{} – {}",
                    time(i.period_start).unwrap_or_default(),
                    time(i.period_end).unwrap_or_default()
                ),
                time(i.due_at).unwrap_or_else(|| "-".into()),
                i.failed_attempts.to_string(),
                dash(&i.payment_reference).to_owned(),
            ]);
        }
        self.print_table(&t)?;
        writeln!(self.out, "{} invoice(s)", list.len())?;
        Ok(())
    }

    /// `billing pay`.
    pub fn paid(&mut self, p: &pb::RecordPaymentResponse) -> Result<(), CliError> {
        if self.json {
            return self.json_line(&serde_json::json!({
                "invoice_id": p.invoice_id, "already_paid": p.already_paid,
            }));
        }
        if p.already_paid {
            writeln!(
                self.out,
                "ok: invoice {} was already paid; nothing changed",
                p.invoice_id
            )?;
        } else {
            writeln!(self.out, "ok: payment of invoice {} recorded", p.invoice_id)?;
        }
        Ok(())
    }
}

/// Minor units as a decimal amount (two decimals).
fn money(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    format!("{sign}{}.{:02}", m / 100, m % 100)
}

fn verb_upper(verb: &str) -> &'static str {
    if verb.starts_with("would") {
        "WOULD RESTORE"
    } else {
        "RESTORED"
    }
}
