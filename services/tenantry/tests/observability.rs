//! One signup is one trace, and every service says how it is doing. Every service runs as its
//! own process (see `common`) exporting spans to an in-process OTLP receiver; after one signup
//! the spans of the gateway, the vault, the provisioner's steps and bench commands, identity,
//! billing and the projection share one trace id, each span's parent is in the trace, the
//! JSON logs carry the trace's ids, and every service's `/metrics` parses with the reference
//! OpenMetrics parser and holds what an operator asks.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use otlp_fake::{Receiver, Span, SpanKind};
use proto::v1::{SignupRequest, signup_service_client::SignupServiceClient};

use common::{Stack, StackOptions, parse_openmetrics};

/// Signs up and follows the signup to its end; the tenant id.
async fn sign_up(stack: &Stack) -> String {
    let mut signup = SignupServiceClient::new(stack.connect(stack.signup_port).await);
    let mut accepted = None;
    // The gateway answers UNAVAILABLE until the vault is up; a front end retries that.
    for _ in 0..150 {
        let request = SignupRequest {
            email: "ada@example.com".into(),
            password: "Tq7#mV2!pLx9@wRz-obs".into(),
            full_name: "Ada Lovelace".into(),
            organisation: "Analytical Engines".into(),
            subdomain: "analytical".into(),
            plan: "business".into(),
            region: String::new(),
            idempotency_key: format!("obs-{}", stack.namespace),
            human_check_token: String::new(),
        };
        match signup.signup(request).await {
            Ok(r) => {
                accepted = Some(r.into_inner());
                break;
            }
            Err(s) if s.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(s) => panic!("signup refused: {s:?}{}", stack.logs_tail()),
        }
    }
    let accepted = accepted.expect("signup accepted");
    let tenant = stack
        .verify(&mut signup, &accepted, "ada@example.com")
        .await
        .tenant_id;
    let updates = stack.watch_to_end(&mut signup, &tenant).await;
    let last = updates.last().expect("progress");
    assert!(
        last.done && !last.failed,
        "provisioning ended with {last:?}"
    );
    tenant
}

fn by<'a>(spans: &'a [Span], service: &str, name_part: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.service == service && s.name.contains(name_part))
        .collect()
}

fn parent_of<'a>(spans: &'a [Span], span: &Span) -> Option<&'a Span> {
    let id = span.parent_span_id.as_deref()?;
    spans.iter().find(|s| s.span_id == id)
}

/// Metrics families that only show once a step fails or a standby pool is kept.
const NEEDS_FAILURE_OR_POOL: [&str; 3] = [
    "tenantry_provisioner_step_failures",
    "tenantry_provisioner_pool_ready",
    "tenantry_provisioner_pool_target",
];

/// What the refusal metrics count: an invalid signup, subdomain checks past their rate limit,
/// a vault call with a token nobody was given.
async fn refusals(stack: &Stack) {
    let mut signup = SignupServiceClient::new(stack.connect(stack.signup_port).await);
    let invalid = signup
        .signup(SignupRequest {
            email: "not-an-email".into(),
            password: "Tq7#mV2!pLx9@wRz-obs".into(),
            full_name: "Nobody".into(),
            organisation: "Nowhere".into(),
            subdomain: "nowhere".into(),
            plan: "business".into(),
            region: String::new(),
            idempotency_key: String::new(),
            human_check_token: String::new(),
        })
        .await
        .expect_err("an invalid email is refused");
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    let mut limited = false;
    // The default budget is 60 checks a minute per address.
    for _ in 0..80 {
        let answer = signup
            .check_subdomain(proto::v1::CheckSubdomainRequest {
                subdomain: "free-name".into(),
                organisation: String::new(),
            })
            .await;
        if let Err(s) = answer {
            assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
            limited = true;
            break;
        }
    }
    assert!(limited, "80 checks in a row hit the per-address budget");
    let endpoint = testkit::client_tls(&stack.ca, true)
        .endpoint(&format!("https://localhost:{}", stack.vault_port))
        .unwrap();
    let stranger = vault_client::VaultClient::from_endpoint(
        endpoint,
        &secrecy::SecretString::from("a-token-nobody-was-given".to_owned()),
    )
    .unwrap();
    let denied = stranger
        .get(
            "01890a5d-ac96-774b-bcce-b302099a8057/api-key",
            "observability test",
        )
        .await
        .expect_err("an unknown token is refused");
    assert_eq!(
        denied.code(),
        Some(tonic::Code::Unauthenticated),
        "{denied:?}"
    );
}

#[tokio::test]
async fn one_signup_is_one_trace_and_every_service_reports_metrics() {
    let receiver = Receiver::start().await.expect("OTLP receiver");
    let stack = Stack::start(StackOptions {
        otlp_endpoint: Some(receiver.endpoint()),
        log_format: Some("json"),
        ..StackOptions::default()
    })
    .await;
    // Every process ready first: an attempt answered UNAVAILABLE would be a trace of its own.
    for service in stack.admin_ports.keys() {
        let mut answer = (0, String::new(), String::new());
        for _ in 0..600 {
            answer = stack.admin_get(service, "/readyz").await;
            if answer.0 == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            answer.0,
            200,
            "{service} never became ready: {answer:?}{}",
            stack.logs_tail()
        );
    }
    let tenant = sign_up(&stack).await;
    let answered = |method: &'static str| {
        move |s: &Span| {
            s.service == "signup"
                && s.name.ends_with(method)
                && s.attribute("rpc.grpc.status_code") == Some("0")
        }
    };
    // The person's first request: the Signup call stores the password in the vault and mails
    // the code — a trace of its own, gateway → vault.
    let signup_call = receiver
        .wait_for(
            |spans| spans.iter().any(answered("SignupService/Signup")),
            Duration::from_secs(30),
        )
        .await
        .expect("the gateway's Signup span arrives")
        .into_iter()
        .find(answered("SignupService/Signup"))
        .unwrap();
    let first = receiver
        .wait_for(
            |spans| {
                spans.iter().any(|s| {
                    s.trace_id == signup_call.trace_id
                        && s.service == "vault"
                        && s.name.ends_with("Vault/PutOneTime")
                })
            },
            Duration::from_secs(30),
        )
        .await
        .expect("the vault's span joins the Signup trace");
    let vault_server = first
        .iter()
        .find(|s| s.trace_id == signup_call.trace_id && s.service == "vault")
        .unwrap();
    let vault_client = parent_of(&first, vault_server).expect("the vault span has its parent");
    assert_eq!(
        (vault_client.service.as_str(), vault_client.kind),
        ("signup", SpanKind::Client)
    );
    assert_eq!(
        parent_of(&first, vault_client).map(|s| s.span_id.as_str()),
        Some(signup_call.span_id.as_str())
    );

    // The second: VerifyEmail records the tenant, and everything that builds it follows in
    // one trace.
    let root = receiver
        .wait_for(
            |spans| spans.iter().any(answered("SignupService/VerifyEmail")),
            Duration::from_secs(30),
        )
        .await
        .expect("the gateway's VerifyEmail span arrives")
        .into_iter()
        .find(answered("SignupService/VerifyEmail"))
        .unwrap();
    assert_eq!(root.kind, SpanKind::Server);
    assert_eq!(
        root.parent_span_id, None,
        "the client sent no trace context"
    );
    // A second request, but the same signup: its span links to the Signup call's trace.
    assert!(
        root.links
            .iter()
            .any(|(trace, _)| *trace == signup_call.trace_id),
        "VerifyEmail links to the Signup trace: {:?}",
        root.links
    );
    let trace_id = root.trace_id.clone();
    // Every service's part of the signup, in the same trace.
    let wanted: [(&str, &str); 8] = [
        ("provisioner", "vault "),
        ("vault", "tenantry.v1.Vault/"),
        ("provisioner", "provision create_site"),
        ("provisioner", "bench new-site"),
        ("identity", "identity configure"),
        ("billing", "billing start subscription"),
        ("projection", "TenantRequested"),
        ("projection", "TenantProvisioned"),
    ];
    let spans = receiver
        .wait_for(
            |spans| {
                wanted.iter().all(|(service, name)| {
                    spans.iter().any(|s| {
                        s.trace_id == trace_id && s.service == *service && s.name.contains(name)
                    })
                })
            },
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|| {
            let got: BTreeSet<String> = receiver
                .trace(&trace_id)
                .iter()
                .map(|s| format!("{} {}", s.service, s.name))
                .collect();
            panic!("the trace misses a service's spans; it has {got:#?}")
        });
    drop(spans);
    // Parents end (and are exported) after their children: wait until every link resolves.
    let linked = receiver
        .wait_for(
            |spans| {
                let trace: Vec<Span> = spans
                    .iter()
                    .filter(|s| s.trace_id == trace_id)
                    .cloned()
                    .collect();
                otlp_fake::check_links(&trace).is_ok()
            },
            Duration::from_secs(30),
        )
        .await;
    let trace = receiver.trace(&trace_id);
    if linked.is_none() {
        let e = otlp_fake::check_links(&trace).unwrap_err();
        panic!("{e}\n{}", otlp_fake::render_tree(&trace));
    }
    // Parent links cross process boundaries the way the work flows.
    let vault_server = by(&trace, "vault", "tenantry.v1.Vault/")[0];
    let vault_client = parent_of(&trace, vault_server).expect("the vault span has its parent");
    assert_eq!(vault_client.kind, SpanKind::Client);
    assert_ne!(vault_client.service, "vault");
    let first_consume = trace
        .iter()
        .filter(|s| s.service == "provisioner" && s.kind == SpanKind::Consumer)
        .min_by_key(|s| s.start_unix_nanos)
        .expect("the provisioner consumed the signup");
    let appender = parent_of(&trace, first_consume).expect("the delivery's parent");
    assert_eq!(
        appender.service, "signup",
        "the provisioner's first delivery continues the gateway's span that appended it"
    );
    let bench = by(&trace, "provisioner", "bench new-site")[0];
    let step = parent_of(&trace, bench).expect("the bench command's parent");
    assert_eq!(step.name, "provision create_site");
    for (service, part) in [
        ("identity", "identity configure"),
        ("billing", "billing start"),
    ] {
        let span = by(&trace, service, part)[0];
        let consume = parent_of(&trace, span).expect("the step's delivery");
        assert_eq!(consume.kind, SpanKind::Consumer);
        let appender = parent_of(&trace, consume).expect("who appended the event");
        assert_eq!(
            appender.service, "provisioner",
            "{service} continues the provisioner's trace"
        );
    }
    println!(
        "the span tree of one signup:\n{}",
        otlp_fake::render_tree(&trace)
    );

    // JSON logs carry the ids of the trace they were written in.
    let log = std::fs::read_to_string(stack.logs().join("provisioner.log")).unwrap();
    let step_line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "provisioning step done" && v["tenant"].as_str() == Some(&tenant))
        .unwrap_or_else(|| panic!("no step log line for {tenant}{}", stack.logs_tail()));
    assert_eq!(step_line["trace_id"].as_str(), Some(trace_id.as_str()));
    let logged_span = step_line["span_id"].as_str().expect("a span id");
    assert!(
        trace.iter().any(|s| s.span_id == logged_span),
        "the logged span id is a span of the trace"
    );

    // Every service's /metrics parses and answers the operator's questions.
    let expected: [(&str, &[&str]); 6] = [
        (
            "signup",
            &[
                "tenantry_signup_accepted",
                "tenantry_grpc_server_requests",
                "tenantry_grpc_server_duration_seconds",
            ],
        ),
        (
            "vault",
            &[
                "tenantry_vault_calls",
                "tenantry_grpc_server_requests",
                "tenantry_grpc_server_duration_seconds",
            ],
        ),
        (
            "provisioner",
            &[
                "tenantry_provisioner_steps",
                "tenantry_provisioner_step_duration_seconds",
                "tenantry_provisioner_time_to_provisioned_seconds",
                "tenantry_consumer_pending",
                "tenantry_consumer_redeliveries",
                "tenantry_dead_letters",
            ],
        ),
        (
            "projection",
            &[
                "tenantry_projection_lag_events",
                "tenantry_projection_tenants",
                "tenantry_projection_oldest_provisioning_seconds",
                "tenantry_consumer_pending",
            ],
        ),
        ("identity", &["tenantry_consumer_pending"]),
        ("billing", &["tenantry_consumer_pending"]),
    ];
    for (service, families) in expected {
        // Gauges read from JetStream and PostgreSQL refresh every few seconds.
        let mut names = BTreeSet::new();
        for _ in 0..100 {
            let (status, content_type, text) = stack.admin_get(service, "/metrics").await;
            assert_eq!(status, 200, "{service} /metrics");
            assert!(
                content_type.starts_with("application/openmetrics-text"),
                "{service} says {content_type}"
            );
            names = parse_openmetrics(service, &text);
            if families.iter().all(|f| names.contains(*f)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for family in families {
            assert!(
                names.contains(*family),
                "{service}'s /metrics lacks {family}; it has {names:?}"
            );
        }
        let (status, _, body) = stack.admin_get(service, "/readyz").await;
        assert_eq!(status, 200, "{service} is ready: {body}");
    }
    // The dashboard and the alert rules use only metrics the services expose.
    refusals(&stack).await;
    let mut exposed = BTreeSet::new();
    for service in stack.admin_ports.keys() {
        let (_, _, text) = stack.admin_get(service, "/metrics").await;
        exposed.extend(parse_openmetrics(service, &text));
    }
    let listed = include_str!("../../../deploy/observability/metrics.txt");
    for line in listed.lines().filter(|l| l.starts_with("tenantry_")) {
        let name = line.split_whitespace().next().unwrap();
        let family = name.strip_suffix("_total").unwrap_or(name);
        // Shown once a step fails, or once a fleet keeps a standby pool: neither happens in
        // this stack (the provisioner's own tests cover them).
        if NEEDS_FAILURE_OR_POOL.contains(&family) {
            continue;
        }
        assert!(
            exposed.contains(family),
            "deploy/observability names {name}, which no service exposes; they expose {exposed:?}"
        );
    }
    let (_, _, signup_metrics) = stack.admin_get("signup", "/metrics").await;
    for line in [
        r#"tenantry_signup_accepted_total{plan="business"} 1"#,
        r#"tenantry_signup_rejected_total{reason="invalid_request",field="email"} 1"#,
        r#"tenantry_signup_rate_limited_total{limit="checks"}"#,
        r#"tenantry_grpc_server_requests_total{service="signup",method="tenantry.v1.SignupService/Signup",code="InvalidArgument"} 1"#,
    ] {
        assert!(signup_metrics.contains(line), "{line} in {signup_metrics}");
    }
    let (_, _, vault_metrics) = stack.admin_get("vault", "/metrics").await;
    assert!(
        vault_metrics
            .contains(r#"tenantry_vault_denials_total{caller="anonymous",operation="get"} 1"#),
        "{vault_metrics}"
    );
    let (_, _, provisioner_metrics) = stack.admin_get("provisioner", "/metrics").await;
    assert!(
        provisioner_metrics
            .contains(r#"tenantry_provisioner_time_to_provisioned_seconds_count{path="cold"} 1"#),
        "{provisioner_metrics}"
    );
    stack.clean_up().await;
}
