//! The owner's password appears in no event, no log line (at TRACE, every crate, vault included)
//! and no error returned to the client.

mod common;

use base64::Engine as _;
use common::*;
use prost::Message;
use proto::v1::SignupRequest;
use tonic::Code;

/// The forms a leaked password could take in text.
fn leaks(haystack: &[u8], password: &str) -> bool {
    let forms = [
        password.as_bytes().to_vec(),
        base64::engine::general_purpose::STANDARD
            .encode(password)
            .into_bytes(),
        hex::encode(password).into_bytes(),
    ];
    forms
        .iter()
        .any(|f| haystack.windows(f.len()).any(|w| w == f.as_slice()))
}

#[tokio::test]
async fn the_password_is_in_no_event_log_line_or_error() {
    let captured = capture_logs().expect("this test's process logs nowhere else yet");

    let stack = spawn_stack_with(|c| c.rate_per_address = 0).await;
    let mut client = stack.client().await;
    let strong = "Quasar-Ledger-Zebra-7741!";
    let weak = "ZqWeak77!";
    let mut errors: Vec<String> = Vec::new();
    let mut record = |status: tonic::Status| {
        errors.push(format!("{status:?} {}", status.message()));
        errors.push(String::from_utf8_lossy(status.details()).into_owned());
    };

    // Accepted, with and without an idempotency key, and replayed.
    let t = tag();
    let ok = SignupRequest {
        password: strong.into(),
        idempotency_key: format!("key-{t}"),
        ..request(&t)
    };
    client.signup(ok.clone()).await.unwrap();
    client.signup(ok.clone()).await.unwrap();
    client
        .signup(SignupRequest {
            password: strong.into(),
            ..request(&tag())
        })
        .await
        .unwrap();
    // Refused: taken subdomain, the key reused for another request, invalid fields, a weak
    // password, a password built from personal details.
    record(expect_code(
        client
            .signup(SignupRequest {
                password: strong.into(),
                email: format!("x.{t}@example.com"),
                ..request(&t)
            })
            .await,
        Code::AlreadyExists,
    ));
    record(expect_code(
        client
            .signup(SignupRequest {
                full_name: "Other Person".into(),
                ..ok.clone()
            })
            .await,
        Code::FailedPrecondition,
    ));
    record(expect_code(
        client
            .signup(SignupRequest {
                password: strong.into(),
                email: "bad".into(),
                organisation: "<b>".into(),
                ..request(&tag())
            })
            .await,
        Code::InvalidArgument,
    ));
    record(expect_code(
        client
            .signup(SignupRequest {
                password: weak.into(),
                ..request(&tag())
            })
            .await,
        Code::InvalidArgument,
    ));
    let personal = format!("owner.{t} {strong}");
    record(expect_code(
        client
            .signup(SignupRequest {
                password: personal.clone(),
                ..request(&t)
            })
            .await,
        Code::InvalidArgument,
    ));
    // A failure after the claim (the vault refuses the token).
    let broken = spawn_stack_with(|c| {
        c.vault_token = Some(secrecy::SecretString::from("wrong"));
    })
    .await;
    let mut broken_client = broken.client().await;
    record(expect_code(
        broken_client
            .signup(SignupRequest {
                password: strong.into(),
                ..request(&tag())
            })
            .await,
        Code::Internal,
    ));

    let events = stack.events().await;
    assert!(events.len() >= 2, "{} events", events.len());
    for e in &events {
        let encoded = proto::v1::Event {
            occurred_at: None,
            body: Some(e.body.clone()),
        }
        .encode_to_vec();
        let text = format!("{e:?}");
        for p in [strong, weak, personal.as_str()] {
            assert!(!leaks(&encoded, p), "password in event {}", e.event_type);
            assert!(
                !leaks(text.as_bytes(), p),
                "password in event {}",
                e.event_type
            );
        }
    }
    for p in [strong, weak, personal.as_str()] {
        assert!(
            errors.iter().all(|e| !leaks(e.as_bytes(), p)),
            "password in an error"
        );
    }
    stack.stop();
    broken.stop();
    let logs = captured.bytes();
    assert!(logs.len() > 1000, "the capture saw almost nothing");
    for p in [strong, weak, personal.as_str()] {
        assert!(!leaks(&logs, p), "password in the logs");
    }
}
