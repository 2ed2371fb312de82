//! Every tenantctl command, in-process, against the real services (projection, signup's
//! TenantAdmin, vault) on port 0 and real NATS and PostgreSQL, in human and `--json` form.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use eventstore::{Body, EventStore, NewEvent, SubscribeOptions};
use proto::v1 as pb;
use secrecy::SecretString;
use serde_json::Value;
use tenantctl::{Cli, CliError, ErrorKind};

use testkit::ADMIN_TOKEN;

struct Stack {
    namespace: String,
    events: EventStore,
    directory: SocketAddr,
    operator: SocketAddr,
    vault: SocketAddr,
    versions: HashMap<String, u64>,
    services: Option<(
        testkit::TestProjection,
        testkit::TestSignup,
        testkit::TestVault,
    )>,
}

/// The real vault, signup (TenantAdmin) and projection on port 0 in one namespace.
async fn spawn_stack() -> Stack {
    testkit::init_logging();
    let namespace = testkit::unique_namespace();
    let events = testkit::event_store_in(&namespace).await;
    let vault = testkit::spawn_vault_in(&namespace).await;
    let signup = testkit::spawn_signup(&vault, |c| {
        c.operator_auth = Some(testkit::test_operators());
    })
    .await;
    let config = testkit::projection_config(&namespace).await;
    let projection = testkit::spawn_projection(config).await;
    Stack {
        namespace,
        events,
        directory: projection.addr,
        operator: signup.operator_addr,
        vault: vault.addr,
        versions: HashMap::new(),
        services: Some((projection, signup, vault)),
    }
}

impl Stack {
    fn cli(&self, args: &[&str]) -> Cli {
        self.cli_in(&self.namespace, args)
    }

    /// The command line against another namespace (another deployment on the same NATS).
    fn cli_in(&self, namespace: &str, args: &[&str]) -> Cli {
        let mut argv: Vec<String> = vec![
            "tenantctl".into(),
            "--directory-url".into(),
            format!("http://{}", self.directory),
            "--admin-url".into(),
            format!("http://{}", self.operator),
            "--vault-url".into(),
            format!("http://{}", self.vault),
            "--nats-url".into(),
            testkit::nats_url(),
            "--namespace".into(),
            namespace.to_owned(),
        ];
        argv.extend(args.iter().map(|s| (*s).to_owned()));
        let mut cli = Cli::try_parse_from(argv).expect("valid command line");
        // Tokens never travel as flags; an embedding program may hand them over directly.
        cli.global.admin_token = Some(SecretString::from(ADMIN_TOKEN));
        cli.global.vault_token = Some(testkit::caller_token(&self.namespace, "operator"));
        cli
    }

    async fn run(&self, args: &[&str]) -> Result<String, CliError> {
        let mut out = Vec::new();
        tenantctl::run(self.cli(args), &mut out).await?;
        Ok(String::from_utf8(out).expect("utf-8 output"))
    }

    async fn ok(&self, args: &[&str]) -> String {
        match self.run(args).await {
            Ok(s) => s,
            Err(e) => panic!("tenantctl {args:?} failed ({:?}): {e}", e.kind),
        }
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut with = args.to_vec();
        with.push("--json");
        let out = self.ok(&with).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    /// `--json` output of a command against another namespace.
    async fn json_in(&self, namespace: &str, args: &[&str]) -> Value {
        let mut with = args.to_vec();
        with.push("--json");
        let mut out = Vec::new();
        tenantctl::run(self.cli_in(namespace, &with), &mut out)
            .await
            .unwrap_or_else(|e| panic!("tenantctl {args:?} in {namespace} failed: {e}"));
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e})"))
    }

    async fn fails(&self, args: &[&str]) -> ErrorKind {
        match self.run(args).await {
            Ok(out) => panic!("tenantctl {args:?} should fail, printed {out}"),
            Err(e) => e.kind,
        }
    }

    async fn append(&mut self, body: Body) -> u64 {
        let subject = self.events.subject(body.context(), body.tenant_id());
        let expected = self.versions.get(&subject).copied().unwrap_or(0);
        let seq = self
            .events
            .append(&subject, expected, vec![NewEvent::new(body)])
            .await
            .unwrap()[0];
        self.versions.insert(subject, seq);
        seq
    }

    /// A tenant requested and provisioned (Active), by appending the facts directly.
    async fn active_tenant(&mut self, name: &str) -> (String, u64) {
        let id = tenancy::TenantId::new().to_string();
        self.append(Body::TenantRequested(pb::TenantRequested {
            tenant_id: id.clone(),
            subdomain: name.into(),
            organisation: format!("{name} Ltd"),
            owner_email: format!("owner@{name}.example"),
            owner_name: "Ada Owner".into(),
            plan: "starter".into(),
            region: "eu".into(),
            password_ref: format!("vault://tenant/{id}/owner-password"),
            idempotency_key: String::new(),
            sso_password_ref: String::new(),
        }))
        .await;
        self.append(Body::PlacementChosen(pb::PlacementChosen {
            tenant_id: id.clone(),
            bench: "bench-1".into(),
            region: "eu".into(),
            site: format!("{name}.erp.example"),
            db_name: "db".into(),
        }))
        .await;
        let seq = self
            .append(Body::TenantProvisioned(pb::TenantProvisioned {
                tenant_id: id.clone(),
                site: format!("{name}.erp.example"),
                bench: "bench-1".into(),
                url: format!("https://{name}.erp.example"),
                total_ms: 4200,
                from_standby: false,
                ..Default::default()
            }))
            .await;
        (id, seq)
    }

    async fn stop(mut self) {
        if let Some((projection, _signup, vault)) = self.services.take() {
            projection.stop().await;
            vault.stop().await;
        }
    }
}

#[tokio::test]
async fn tenants_list_show_and_history() {
    let mut stack = spawn_stack().await;
    let (acme, _) = stack.active_tenant("acme").await;
    let (_globex, last) = stack.active_tenant("globex").await;
    let min = last.to_string();

    let human = stack.ok(&["tenants", "list", "--min-seq", &min]).await;
    assert!(human.contains("TENANT") && human.contains("acme") && human.contains("globex"));
    assert!(human.contains("2 of 2 tenants"), "{human}");
    let json = stack.json(&["tenants", "list", "--min-seq", &min]).await;
    assert_eq!(json["total"], 2);
    assert_eq!(json["tenants"][0]["status"], "Active");
    assert_eq!(json["tenants"][0]["bench"], "bench-1");
    let json = stack
        .json(&["tenants", "list", "--status", "suspended"])
        .await;
    assert_eq!(json["total"], 0);
    let json = stack.json(&["tenants", "list", "--limit", "1"]).await;
    assert_eq!(json["tenants"].as_array().unwrap().len(), 1);

    let human = stack.ok(&["tenants", "show", &acme]).await;
    assert!(human.contains("Status        Active"), "{human}");
    assert!(human.contains("https://acme.erp.example"));
    assert!(human.contains("SSO           pending"), "{human}");
    let json = stack.json(&["tenants", "show", &acme]).await;
    assert_eq!(json["tenant_id"], acme.as_str());
    assert_eq!(json["plan"], "starter");

    // Single sign-on configured: `show` prints where to sign in.
    let seq = stack
        .append(Body::IdentityConfigured(pb::IdentityConfigured {
            tenant_id: acme.clone(),
            application_slug: "tenant-acme".into(),
            client_id: "tenant-acme".into(),
            login_url: "https://acme.erp.example/login".into(),
            ..Default::default()
        }))
        .await;
    let human = stack
        .ok(&["tenants", "show", &acme, "--min-seq", &seq.to_string()])
        .await;
    assert!(human.contains("SSO           ready"), "{human}");
    assert!(
        human.contains("SSO login     https://acme.erp.example/login"),
        "{human}"
    );
    let json = stack.json(&["tenants", "show", &acme]).await;
    assert_eq!(json["sso_login_url"], "https://acme.erp.example/login");

    let human = stack.ok(&["tenants", "history", &acme]).await;
    assert!(human.contains("TenantRequested") && human.contains("TenantProvisioned"));
    let json = stack.json(&["tenants", "history", &acme]).await;
    let entries = json["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0]["event_type"], "TenantRequested");
    assert!(entries[0]["summary"].as_str().unwrap().contains("acme"));

    let missing = tenancy::TenantId::new().to_string();
    assert_eq!(
        stack.fails(&["tenants", "show", &missing]).await,
        ErrorKind::NotFound
    );
    assert_eq!(
        stack.fails(&["tenants", "history", &missing]).await,
        ErrorKind::NotFound
    );
    assert_eq!(
        stack.fails(&["tenants", "show", "not an id"]).await,
        ErrorKind::Usage
    );
    stack.stop().await;
}

#[tokio::test]
async fn lifecycle_commands_go_through_tenant_admin() {
    let mut stack = spawn_stack().await;
    let (id, last) = stack.active_tenant("initech").await;
    stack
        .ok(&["tenants", "show", &id, "--min-seq", &last.to_string()])
        .await;

    let out = stack.json(&["suspend", &id, "--reason", "unpaid"]).await;
    assert_eq!(out["tenant_id"], id.as_str());
    let seq = out["sequence"].as_u64().unwrap();
    assert!(seq > last);
    let history = stack
        .json(&["tenants", "history", &id, "--min-seq", &seq.to_string()])
        .await;
    let types: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types.last(), Some(&"SuspensionRequested"));
    // Asking again while it is under way is refused.
    assert_eq!(stack.fails(&["suspend", &id]).await, ErrorKind::Refused);

    // The provisioner's fact completes it; then resume (human output this time).
    stack
        .append(Body::SiteSuspended(pb::SiteSuspended {
            tenant_id: id.clone(),
            site: "initech.erp.example".into(),
            reason: "unpaid".into(),
        }))
        .await;
    let out = stack.ok(&["resume", &id, "--reason", "paid"]).await;
    assert!(out.contains("resume requested"), "{out}");
    stack
        .append(Body::SiteResumed(pb::SiteResumed {
            tenant_id: id.clone(),
            site: "initech.erp.example".into(),
        }))
        .await;

    let out = stack.json(&["plan", &id, "business"]).await;
    let seq = out["sequence"].as_u64().unwrap();
    let shown = stack
        .json(&["tenants", "show", &id, "--min-seq", &seq.to_string()])
        .await;
    assert_eq!(shown["plan"], "business");

    // Retry applies only to Failed tenants: refused here.
    assert_eq!(stack.fails(&["retry", &id]).await, ErrorKind::Refused);

    // Delete needs the id twice.
    assert_eq!(
        stack.fails(&["delete", &id, "--confirm", "other"]).await,
        ErrorKind::Usage
    );
    let out = stack
        .json(&["delete", &id, "--confirm", &id, "--reason", "closed"])
        .await;
    assert_eq!(out["status"], "Deleting");
    assert_eq!(stack.fails(&["resume", &id]).await, ErrorKind::Refused);

    // A failed tenant can be retried.
    let failed = tenancy::TenantId::new().to_string();
    stack
        .append(Body::TenantRequested(pb::TenantRequested {
            tenant_id: failed.clone(),
            subdomain: "hooli".into(),
            organisation: "Hooli".into(),
            owner_email: "o@hooli.example".into(),
            owner_name: "Gavin".into(),
            plan: "starter".into(),
            region: "eu".into(),
            ..Default::default()
        }))
        .await;
    stack
        .append(Body::ProvisioningFailed(pb::ProvisioningFailed {
            tenant_id: failed.clone(),
            step: pb::ProvisioningStep::CreateSite as i32,
            reason: "bench unreachable".into(),
            retryable: true,
        }))
        .await;
    let out = stack
        .json(&["retry", &failed, "--reason", "bench back"])
        .await;
    assert_eq!(out["status"], "Provisioning");

    // Unknown tenants, bad tokens and absent servers have their own exit codes.
    let missing = tenancy::TenantId::new().to_string();
    assert_eq!(
        stack.fails(&["suspend", &missing]).await,
        ErrorKind::NotFound
    );
    let mut out = Vec::new();
    let mut cli = stack.cli(&["suspend", &id]);
    cli.global.admin_token = Some("wrong".into());
    let err = tenantctl::run(cli, &mut out).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    let mut cli = stack.cli(&["suspend", &id]);
    cli.global.admin_token = None;
    cli.global.admin_token_file = Some("/nonexistent/token".into());
    let err = tenantctl::run(cli, &mut out).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Usage, "{err}");
    assert!(err.message.contains("/nonexistent/token"), "{err}");
    // The token from a file works; as a flag it is not even accepted.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let mut cli = stack.cli(&[
        "tenants",
        "show",
        &id,
        "--admin-token-file",
        file.to_str().unwrap(),
        "--json",
    ]);
    cli.global.admin_token = None;
    let mut shown = Vec::new();
    tenantctl::run(cli, &mut shown).await.unwrap();
    assert!(String::from_utf8(shown).unwrap().contains(&id));
    assert!(Cli::try_parse_from(["tenantctl", "--admin-token", "x", "tenants", "list"]).is_err());
    let mut cli = stack.cli(&["suspend", &id]);
    cli.global.admin_url = "http://127.0.0.1:1".into();
    let err = tenantctl::run(cli, &mut out).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert_eq!(err.exit_code(), std::process::ExitCode::from(5));
    stack.stop().await;
}

#[tokio::test]
async fn events_tail_prints_the_log_live_and_per_tenant() {
    let mut stack = spawn_stack().await;
    let (acme, _) = stack.active_tenant("acme").await;
    stack.active_tenant("globex").await;

    let out = stack
        .ok(&["events", "tail", "--from-seq", "1", "--limit", "4"])
        .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "header and four events: {out}");
    assert!(lines[1].contains("TenantRequested"));

    let out = stack
        .ok(&[
            "events",
            "tail",
            "--tenant",
            &acme,
            "--from-seq",
            "1",
            "--limit",
            "3",
            "--json",
        ])
        .await;
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["tenant_id"] == acme.as_str()));
    assert_eq!(events[2]["event_type"], "TenantProvisioned");

    // Live: a tail started before the append sees it.
    let cli = stack.cli(&["events", "tail", "--limit", "1", "--json"]);
    let tail = tokio::spawn(async move {
        let mut out = Vec::new();
        tenantctl::run(cli, &mut out).await.map(|()| out)
    });
    // The tail's consumer must exist before the append for DeliverPolicy::New to include it;
    // appending until the tail has printed covers the start-up race without a fixed sleep.
    let mut n = 0;
    while !tail.is_finished() {
        n += 1;
        stack.active_tenant(&format!("live{n}")).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = tail.await.unwrap().unwrap();
    let line: Value = serde_json::from_slice(&out).unwrap();
    assert!(line["sequence"].as_u64().unwrap() > 6);
    stack.stop().await;
}

#[tokio::test]
async fn replay_rebuilds_the_tenants_projection_with_the_same_result() {
    let mut stack = spawn_stack().await;
    for name in ["acme", "globex", "initech"] {
        stack.active_tenant(name).await;
    }
    let last = stack.events.last_sequence().await.unwrap();
    let before = stack
        .json(&["tenants", "list", "--min-seq", &last.to_string()])
        .await;

    let report = stack.json(&["replay", "--projection", "tenants"]).await;
    assert_eq!(report["events"], last);
    assert_eq!(report["tenants"], 3);
    assert_eq!(report["generation"], 2);
    assert_eq!(report["previous_generation"], 1);
    assert_eq!(stack.json(&["tenants", "list"]).await, before);

    let human = stack
        .ok(&["replay", "--projection", "tenants", "--batch-size", "2"])
        .await;
    assert!(
        human.contains("rebuilt projection tenants: 9 events, 3 tenants"),
        "{human}"
    );
    assert!(human.contains("generation 3 is active"));
    assert_eq!(stack.json(&["tenants", "list"]).await, before);

    // A replay from a later sequence leaves the earlier events out.
    let partial = stack
        .json(&["replay", "--projection", "tenants", "--from-seq", "4"])
        .await;
    assert_eq!(partial["events"], last - 3);
    assert_eq!(partial["tenants"], 2);

    let mut cli = stack.cli(&["replay", "--projection", "tenants"]);
    cli.global.directory_url = "http://127.0.0.1:1".into();
    let mut out = Vec::new();
    let err = tenantctl::run(cli, &mut out).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");

    // The projection itself refuses a rebuild without the operator token, and changes nothing.
    let mut cli = stack.cli(&["replay", "--projection", "tenants"]);
    cli.global.admin_token = Some("not-the-token".into());
    let err = tenantctl::run(cli, &mut Vec::new()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized, "{err}");
    let again = stack.json(&["replay", "--projection", "tenants"]).await;
    assert_eq!(
        again["previous_generation"], 4,
        "the refused call made no generation"
    );
    stack.stop().await;
}

#[tokio::test]
async fn dlq_lists_and_retries_dead_letters() {
    let mut stack = spawn_stack().await;
    let (id, seq) = stack.active_tenant("acme").await;
    assert_eq!(stack.ok(&["dlq", "list"]).await.trim(), "no dead letters");

    // A consumer gives up on an event.
    let mut sub = stack
        .events
        .subscribe(
            "failing-worker",
            &stack.events.tenant_filter(&id),
            SubscribeOptions {
                max_deliver: 1,
                ..SubscribeOptions::default()
            },
        )
        .await
        .unwrap();
    let delivery = sub.next().await.unwrap().unwrap();
    delivery.term("bench exploded").await.unwrap();

    let json = stack.json(&["dlq", "list"]).await;
    let letters = json["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["consumer"], "failing-worker");
    assert_eq!(letters[0]["error"], "bench exploded");
    let first = letters[0]["stream_sequence"].as_u64().unwrap();
    assert!(first < seq);
    let human = stack
        .ok(&["dlq", "list", "--consumer", "failing-worker"])
        .await;
    assert!(human.contains("bench exploded"), "{human}");
    let json = stack
        .json(&["dlq", "list", "--consumer", "someone-else"])
        .await;
    assert_eq!(json["dead_letters"].as_array().unwrap().len(), 0);

    let json = stack
        .json(&["dlq", "retry", "failing-worker", &first.to_string()])
        .await;
    assert_eq!(json["retried"], true);
    // The subscription gets the event again (the tenant's later events, never dead, come
    // through too, in whatever order the two streams interleave).
    let again = loop {
        let d = sub.next().await.unwrap().unwrap();
        if d.event.sequence == first {
            break d;
        }
        assert!(
            d.event.sequence > first,
            "only later events besides the retried one"
        );
        d.ack().await.unwrap();
    };
    again.ack().await.unwrap();
    assert_eq!(
        stack
            .fails(&["dlq", "retry", "failing-worker", &first.to_string()])
            .await,
        ErrorKind::NotFound
    );
    stack.stop().await;
}

#[tokio::test]
async fn consumers_show_each_durables_progress() {
    let mut stack = spawn_stack().await;
    let (id, last) = stack.active_tenant("acme").await;
    // A worker takes the tenant's three events and acknowledges none yet.
    let mut sub = stack
        .events
        .subscribe(
            "slow-worker",
            &stack.events.tenant_filter(&id),
            SubscribeOptions::default(),
        )
        .await
        .unwrap();
    let mut held = Vec::new();
    while held.len() < 3 {
        held.push(sub.next().await.unwrap().unwrap());
    }
    let json = stack.json(&["consumers", "--name", "slow-worker"]).await;
    let list = json["consumers"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{json}");
    let c = &list[0];
    assert_eq!(c["name"], "slow-worker");
    assert_eq!(c["pending"], 0, "{c}");
    assert_eq!(c["ack_pending"], 3, "{c}");
    assert_eq!(c["delivered_sequence"], last, "{c}");
    assert!(
        c["ack_floor"].as_u64().unwrap() < held[0].event.sequence,
        "{c}"
    );
    assert!(c["last_active"].is_string(), "{c}");

    for d in held {
        d.ack_confirmed().await.unwrap();
    }
    let json = stack.json(&["consumers", "--name", "slow-worker"]).await;
    let c = &json["consumers"][0];
    assert_eq!(c["ack_pending"], 0, "{c}");
    assert_eq!(c["ack_floor"], last, "{c}");
    // Every durable is listed (the projection's too); the table names ours.
    let all = stack.json(&["consumers"]).await;
    assert!(all["consumers"].as_array().unwrap().len() >= 2, "{all}");
    let human = stack.ok(&["consumers"]).await;
    assert!(
        human.contains("slow-worker") && human.contains("ACK PENDING"),
        "{human}"
    );
    let none = stack.ok(&["consumers", "--name", "nobody"]).await;
    assert!(none.contains("no durable consumers"), "{none}");
    stack.stop().await;
}

#[tokio::test]
async fn events_export_then_import_elsewhere_gives_the_same_log_and_read_model() {
    let mut stack = spawn_stack().await;
    let (a, _) = stack.active_tenant("acme").await;
    let (b, last) = stack.active_tenant("globex").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let path = file.to_str().unwrap();

    let json = stack.json(&["events", "export", "--file", path]).await;
    assert_eq!(json["exported"]["messages"], last, "{json}");
    assert_eq!(json["exported"]["last_sequence"], last, "{json}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().lines().count() as u64,
        last
    );
    assert!(!dir.path().join("events.jsonl.partial").exists());
    // An export never overwrites a file.
    assert_eq!(
        stack.fails(&["events", "export", "--file", path]).await,
        ErrorKind::Refused
    );

    // Restored into an empty deployment (another namespace): the same events at the same
    // sequences, and a projection built there answers as the original does.
    let elsewhere = testkit::unique_namespace();
    let json = stack
        .json_in(&elsewhere, &["events", "import", "--file", path])
        .await;
    assert_eq!(json["imported"]["messages"], last, "{json}");
    let restored = testkit::event_store_in(&elsewhere).await;
    for context in [
        eventstore::EventContext::Signup,
        eventstore::EventContext::Provisioning,
    ] {
        let original = stack
            .events
            .load(&stack.events.subject(context, &a))
            .await
            .unwrap();
        let copy = restored.load(&restored.subject(context, &a)).await.unwrap();
        let key =
            |e: &eventstore::RecordedEvent| (e.sequence, e.event_id, e.body.clone(), e.occurred_at);
        assert_eq!(
            original.iter().map(key).collect::<Vec<_>>(),
            copy.iter().map(key).collect::<Vec<_>>()
        );
    }
    let projection = testkit::spawn_projection(testkit::projection_config(&elsewhere).await).await;
    projection.caught_up(last).await;
    let mine = &stack.services.as_ref().unwrap().0.store;
    let theirs = projection
        .store
        .all_tenants_in(&projection.store.active().await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        mine.all_tenants_in(&mine.active().await.unwrap())
            .await
            .unwrap(),
        theirs
    );
    assert_eq!(theirs.len(), 2);
    projection.stop().await;

    // Run again (resuming): nothing twice. Into a stream with other events: refused.
    let json = stack
        .json_in(&elsewhere, &["events", "import", "--file", path])
        .await;
    assert_eq!(json["imported"]["already_there"], last, "{json}");
    assert_eq!(json["imported"]["messages"], 0, "{json}");
    // Into a stream holding other events (the same shape, other tenants): refused, nothing
    // written.
    let (_, before) = stack.active_tenant("initech").await;
    let other = tempfile::tempdir().unwrap();
    let foreign = other.path().join("foreign.jsonl");
    let relabelled = std::fs::read_to_string(&file)
        .unwrap()
        .replace(&a, &uuid::Uuid::now_v7().to_string())
        .replace(&b, &uuid::Uuid::now_v7().to_string());
    std::fs::write(&foreign, relabelled).unwrap();
    assert_eq!(
        stack
            .fails(&["events", "import", "--file", foreign.to_str().unwrap()])
            .await,
        ErrorKind::Refused
    );
    assert_eq!(stack.events.last_sequence().await.unwrap(), before);
    assert_eq!(
        stack
            .fails(&["events", "import", "--file", "/nonexistent/x.jsonl"])
            .await,
        ErrorKind::NotFound
    );
    stack.stop().await;
}

/// One bucket's part of a `recover --json` report.
fn bucket<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["buckets"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["bucket"] == name))
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

#[tokio::test]
async fn recover_restores_lost_subdomain_claims_and_signup_waits_for_it() {
    let mut stack = spawn_stack().await;
    // Two tenants in the log and none in SUBDOMAINS: the bucket was lost.
    let (acme, _) = stack.active_tenant("acme").await;
    stack.active_tenant("globex").await;

    let dry = stack.json(&["recover", "--dry-run"]).await;
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        bucket(&dry, "SUBDOMAINS")["restored"],
        serde_json::json!(["acme", "globex"]),
        "{dry}"
    );
    assert_eq!(
        bucket(&stack.json(&["recover", "--dry-run"]).await, "SUBDOMAINS")["restored"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "a dry run writes nothing"
    );

    // A signup instance starting now refuses to check or claim any name.
    let vault = &stack.services.as_ref().unwrap().2;
    let late = testkit::spawn_signup(vault, |c| {
        // The test polls CheckSubdomain until the door opens.
        c.check_rate_per_address = 100_000;
    })
    .await;
    let mut client = pb::signup_service_client::SignupServiceClient::connect(late.endpoint())
        .await
        .unwrap();
    let check = |name: &str| pb::CheckSubdomainRequest {
        subdomain: name.to_owned(),
        organisation: String::new(),
    };
    let refused = client.check_subdomain(check("acme")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("tenantctl recover"),
        "{}",
        refused.message()
    );
    // It stays closed past its periodic re-check (5 s) while nobody has recovered.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let still = client.check_subdomain(check("acme")).await.unwrap_err();
    assert_eq!(still.code(), tonic::Code::FailedPrecondition);

    let done = stack.json(&["recover"]).await;
    assert_eq!(
        bucket(&done, "SUBDOMAINS")["restored"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{done}"
    );
    let again = stack.json(&["recover"]).await;
    assert_eq!(bucket(&again, "SUBDOMAINS")["matching"], 2, "{again}");
    assert_eq!(
        bucket(&again, "SUBDOMAINS")["restored"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // The late instance opens again by itself, and the live tenant's name is taken.
    let answer = testkit::within(Duration::from_secs(20), || {
        let mut client = client.clone();
        async move { client.check_subdomain(check("acme")).await.ok() }
    })
    .await
    .expect("signup accepts checks again after the recovery")
    .into_inner();
    assert!(answer.valid && !answer.available, "{answer:?}");
    let free = client
        .check_subdomain(check("brand-new"))
        .await
        .unwrap()
        .into_inner();
    assert!(free.available);

    // A claim that disagrees with the log is reported and left alone.
    let claims = signup::claims::Claims::open(&stack.events).await.unwrap();
    let intruder = tenancy::TenantId::new();
    let (third, _) = stack.active_tenant("initech").await;
    let initech = tenancy::Subdomain::parse("initech").unwrap();
    assert!(matches!(
        claims
            .claim(&initech, &intruder, "intruder@example.com")
            .await
            .unwrap(),
        signup::claims::Claim::Won { .. }
    ));
    let report = stack.json(&["recover"]).await;
    let differing = bucket(&report, "SUBDOMAINS")["differing"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(differing.len(), 1, "{report}");
    assert_eq!(differing[0]["key"], "initech");
    assert!(
        differing[0]["in_log"]
            .as_str()
            .unwrap()
            .contains(third.as_str())
    );
    assert!(
        differing[0]["in_bucket"]
            .as_str()
            .unwrap()
            .contains(&intruder.to_string())
    );
    assert!(!claims.is_free(&initech).await.unwrap());
    let human = stack.ok(&["recover", "--dry-run"]).await;
    assert!(
        human.contains("left alone") && human.contains("initech"),
        "{human}"
    );

    // A recovery cut short (its marker still says in progress) closes running instances too,
    // until a recovery finishes.
    let bucket = stack
        .events
        .key_value(signup::claims::BUCKET, 5, "")
        .await
        .unwrap();
    bucket.put("_recovery", "in-progress".into()).await.unwrap();
    let closed = testkit::within(Duration::from_secs(20), || {
        let mut client = client.clone();
        async move {
            let e = client.check_subdomain(check("brand-new")).await.err()?;
            (e.code() == tonic::Code::FailedPrecondition).then_some(e)
        }
    })
    .await
    .expect("a running instance closes when a recovery is unfinished");
    assert!(
        closed.message().contains("cut short"),
        "{}",
        closed.message()
    );
    stack.json(&["recover"]).await;
    testkit::within(Duration::from_secs(20), || {
        let mut client = client.clone();
        async move { client.check_subdomain(check("brand-new")).await.ok() }
    })
    .await
    .expect("open again once the recovery finished");
    let _ = acme;
    late.stop();
    stack.stop().await;
}

#[tokio::test]
async fn vault_audit_shows_who_did_what() {
    let stack = spawn_stack().await;
    // The first audit query is itself audited.
    stack.ok(&["vault", "audit"]).await;
    let json = stack
        .json(&["vault", "audit", "--caller", "operator"])
        .await;
    let entries = json["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert_eq!(entries[0]["caller"], "operator");
    assert_eq!(entries[0]["operation"], "audit");
    let human = stack.ok(&["vault", "audit", "--limit", "5"]).await;
    assert!(
        human.contains("CALLER") && human.contains("operator"),
        "{human}"
    );
    let json = stack
        .json(&["vault", "audit", "--since", "2999-01-01T00:00:00Z"])
        .await;
    assert_eq!(json["entries"].as_array().unwrap().len(), 0);
    assert_eq!(
        stack
            .fails(&["vault", "audit", "--since", "yesterday"])
            .await,
        ErrorKind::Usage
    );

    let mut cli = stack.cli(&["vault", "audit"]);
    cli.global.vault_token = Some("wrong".into());
    let mut out = Vec::new();
    let err = tenantctl::run(cli, &mut out).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    stack.stop().await;
}

#[tokio::test]
async fn an_unreachable_directory_is_unavailable() {
    let mut cli = Cli::try_parse_from([
        "tenantctl",
        "--directory-url",
        "http://127.0.0.1:1",
        "tenants",
        "list",
    ])
    .unwrap();
    cli.global.json = true;
    cli.global.admin_token = Some(SecretString::from(ADMIN_TOKEN));
    let mut out = Vec::new();
    let err = tenantctl::run(cli, &mut out).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert_eq!(err.kind.code(), 5);
    assert!(err.message.contains("127.0.0.1:1"), "{}", err.message);
    assert!(Cli::try_parse_from(["tenantctl", "replay", "--projection", "nope"]).is_err());
}

#[tokio::test]
async fn vault_shred_destroys_a_tenants_keys_after_confirmation() {
    let stack = spawn_stack().await;
    let tenant = tenancy::TenantId::new().to_string();
    let provisioner = {
        let (_, _, vault) = stack.services.as_ref().unwrap();
        vault.client("provisioner")
    };
    provisioner
        .put_string(
            &tenant,
            "site-admin-password",
            "site_admin_password",
            &SecretString::from("hunter22".to_owned()),
            "test",
        )
        .await
        .unwrap();

    // Without the tenant id repeated nothing happens.
    assert_eq!(
        stack
            .fails(&["vault", "shred", &tenant, "--confirm", "yes"])
            .await,
        ErrorKind::Usage
    );
    let reference = format!("vault://tenant/{tenant}/site-admin-password");
    provisioner.get(&reference, "still there").await.unwrap();

    let json = stack
        .json(&[
            "vault",
            "shred",
            &tenant,
            "--confirm",
            &tenant,
            "--reason",
            "gdpr",
        ])
        .await;
    assert_eq!(json["shredded"], true);
    assert_eq!(json["secrets_shredded"], 1);
    let err = provisioner.get(&reference, "gone?").await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::FailedPrecondition), "{err}");
    let audit = stack.json(&["vault", "audit", "--tenant", &tenant]).await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["operation"] == "shred" && e["caller"] == "operator"),
        "{audit}"
    );
    stack.stop().await;
}
