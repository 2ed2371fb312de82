//! The human check (Turnstile/hCaptcha-style siteverify) against a local fake provider: a
//! missing token is HUMAN_CHECK_REQUIRED, a refused one HUMAN_CHECK_FAILED, a good one signs up,
//! a provider that is down is UNAVAILABLE; the provider sees the secret and the client's
//! address; neither the secret nor a token shows up in an error or a log line.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use proto::v1::{SignupRequest, TenantStatus};
use secrecy::SecretString;
use signup::human_check::{HumanCheck, HumanCheckError};
use tonic::{Code, Status};

const SECRET: &str = "test-secret";
const GOOD_TOKEN: &str = "good-token";

/// One siteverify call as the fake received it.
#[derive(Debug, Clone)]
struct Seen {
    content_type: String,
    form: HashMap<String, String>,
}

/// A local siteverify endpoint: accepts only `secret=test-secret` with `response=good-token`,
/// answers like Turnstile and hCaptcha, and records every call.
struct FakeSiteVerify {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeSiteVerify {
    async fn start() -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let app = Router::new()
            .route("/siteverify", post(siteverify))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake");
        let addr: SocketAddr = listener.local_addr().expect("fake address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake serves");
        });
        Self {
            url: format!("http://{addr}/siteverify"),
            seen,
            server,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Stops listening: later calls find nothing there.
    async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
    }
}

async fn siteverify(
    State(seen): State<Arc<Mutex<Vec<Seen>>>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Json<serde_json::Value> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    seen.lock().unwrap().push(Seen {
        content_type,
        form: form.clone(),
    });
    let answer = if form.get("secret").map(String::as_str) != Some(SECRET) {
        serde_json::json!({"success": false, "error-codes": ["invalid-input-secret"]})
    } else if form.get("response").map(String::as_str) != Some(GOOD_TOKEN) {
        serde_json::json!({"success": false, "error-codes": ["invalid-input-response"]})
    } else {
        serde_json::json!({
            "success": true,
            "error-codes": [],
            "challenge_ts": "2025-01-01T00:00:00Z",
            "hostname": "signup.example.com"
        })
    };
    Json(answer)
}

fn with_token(tag: &str, token: &str) -> SignupRequest {
    SignupRequest {
        human_check_token: token.to_owned(),
        ..request(tag)
    }
}

/// Asserts `status` is INVALID_REQUEST on `human_check_token` alone, with `reason`.
fn assert_human_check_refusal(status: &Status, reason: &str) {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(violated_fields(status), ["human_check_token"], "{status:?}");
    let bad = status.get_details_bad_request().expect("BadRequest");
    assert_eq!(bad.field_violations[0].reason, reason, "{status:?}");
    let (info, metadata) = error_info(status);
    assert_eq!(info, "INVALID_REQUEST");
    assert_eq!(
        metadata.get("fields").map(String::as_str),
        Some("human_check_token")
    );
}

/// What a status shows a client: its message and its encoded details.
fn shown(status: &Status) -> String {
    format!(
        "{}\n{}",
        status.message(),
        String::from_utf8_lossy(status.details())
    )
}

#[tokio::test]
async fn signup_needs_a_passed_human_check_when_one_is_configured() {
    let captured = capture_logs();

    let fake = FakeSiteVerify::start().await;
    let url = fake.url.clone();
    let stack = spawn_stack_with(|c| {
        c.human_check_url = Some(url);
        c.human_check_secret = Some(SecretString::from(SECRET.to_owned()));
    })
    .await;
    let mut client = stack.client().await;
    let bad_token = format!("forged-token-{}", tag());
    let mut errors: Vec<String> = Vec::new();

    // No token: the person has to complete the check; the provider is not asked.
    let status = expect_code(client.signup(request(&tag())).await, Code::InvalidArgument);
    assert_human_check_refusal(&status, "HUMAN_CHECK_REQUIRED");
    errors.push(shown(&status));
    assert!(fake.seen().is_empty(), "{:?}", fake.seen());

    // A token the provider refuses.
    let status = expect_code(
        client.signup(with_token(&tag(), &bad_token)).await,
        Code::InvalidArgument,
    );
    assert_human_check_refusal(&status, "HUMAN_CHECK_FAILED");
    errors.push(shown(&status));
    assert_eq!(fake.seen().len(), 1);

    // Other bad fields are reported first, before the provider is asked.
    let status = expect_code(
        client
            .signup(SignupRequest {
                email: "not an email".to_owned(),
                ..with_token(&tag(), GOOD_TOKEN)
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["email"]);
    assert_eq!(fake.seen().len(), 1, "an invalid request asks no provider");

    // A passed check signs up.
    let accepted = client
        .signup(with_token(&tag(), GOOD_TOKEN))
        .await
        .expect("a passed human check signs up")
        .into_inner();
    assert_eq!(accepted.status(), TenantStatus::Requested);
    assert!(!accepted.tenant_id.is_empty());

    // What the provider saw: a form post with the secret, the token and the client's address.
    let seen = fake.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for call in &seen {
        assert!(
            call.content_type
                .starts_with("application/x-www-form-urlencoded"),
            "{call:?}"
        );
        assert_eq!(call.form.get("secret").map(String::as_str), Some(SECRET));
        assert_eq!(
            call.form.get("remoteip").map(String::as_str),
            Some("127.0.0.1"),
            "{call:?}"
        );
    }
    assert_eq!(
        seen[0].form.get("response").map(String::as_str),
        Some(bad_token.as_str())
    );
    assert_eq!(
        seen[1].form.get("response").map(String::as_str),
        Some(GOOD_TOKEN)
    );

    // The provider down: retry later, not the person's fault.
    fake.stop().await;
    let status = expect_code(
        client.signup(with_token(&tag(), GOOD_TOKEN)).await,
        Code::Unavailable,
    );
    let (reason, _) = error_info(&status);
    assert_eq!(reason, "DEPENDENCY_UNAVAILABLE");
    assert!(
        status.message().contains("human check"),
        "{}",
        status.message()
    );
    errors.push(shown(&status));

    // Neither the secret nor a token is in any answer, nor in any log line.
    for error in &errors {
        for secret in [SECRET, GOOD_TOKEN, bad_token.as_str()] {
            assert!(!error.contains(secret), "{secret:?} leaked in {error:?}");
        }
    }
    if let Some(captured) = &captured {
        let logs = captured.bytes();
        let logs = String::from_utf8_lossy(&logs);
        assert!(
            logs.contains("human check"),
            "the capture holds the gateway's log"
        );
        for secret in [SECRET, GOOD_TOKEN, bad_token.as_str()] {
            assert!(!logs.contains(secret), "{secret:?} leaked in the log");
        }
    }
}

#[tokio::test]
async fn a_refused_secret_is_the_gateways_problem_not_the_persons() {
    let fake = FakeSiteVerify::start().await;
    let wrong =
        HumanCheck::new(&fake.url, SecretString::from("not-the-secret".to_owned())).expect("valid");
    match wrong.verify(GOOD_TOKEN, None).await {
        Err(HumanCheckError::Unavailable(why)) => {
            assert!(why.contains("invalid-input-secret"), "{why}");
            assert!(!why.contains("not-the-secret") && !why.contains(GOOD_TOKEN));
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let right = HumanCheck::new(&fake.url, SecretString::from(SECRET.to_owned())).expect("valid");
    assert_eq!(right.verify(GOOD_TOKEN, None).await, Ok(()));
    assert_eq!(
        right.verify("used-or-forged", None).await,
        Err(HumanCheckError::Refused(vec![
            "invalid-input-response".to_owned()
        ]))
    );
    assert_eq!(right.verify("", None).await, Err(HumanCheckError::Missing));
    // Without an address, none is sent.
    assert!(fake.seen().iter().all(|s| !s.form.contains_key("remoteip")));
    assert_eq!(fake.seen().len(), 3, "an empty token asks no provider");
}

#[tokio::test]
async fn a_human_check_url_without_a_secret_stops_the_start() {
    let mut config = signup::Config::new(
        svc::NatsArgs::local("nats://127.0.0.1:1".to_owned(), "unused".to_owned()),
        "http://127.0.0.1:1",
        SecretString::from("vault-token".to_owned()),
    );
    config.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.operator_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.human_check_url =
        Some("https://challenges.cloudflare.com/turnstile/v0/siteverify".to_owned());
    match signup::Application::build(config).await {
        Err(signup::ServiceError::Config(why)) => {
            assert!(why.contains("TENANTRY_HUMAN_CHECK_SECRET"), "{why}");
        }
        Err(other) => panic!("expected a config error, got {other}"),
        Ok(_) => panic!("a human check without a secret must not start"),
    }
}
