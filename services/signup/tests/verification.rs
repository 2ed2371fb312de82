//! Email verification as an owner and an abuser meet it: the code is mailed (to a local SMTP
//! sink), nothing is recorded until it comes back, it works once, wrong codes run out, it
//! expires; disposable addresses and one email signing up again and again are refused.

mod common;

use std::time::Duration;

use common::*;
use proto::v1::event::Body;
use proto::v1::{SignupRequest, TenantStatus, VerifyEmailRequest};
use tonic::Code;

async fn stack_with_mail(
    sink: &smtp_sink::SmtpSink,
    tweak: impl FnOnce(&mut signup::Config),
) -> TestStack {
    let url = sink.url();
    spawn_stack_with(move |c| {
        c.verify_email = true;
        c.smtp_url = Some(secrecy::SecretString::from(url));
        tweak(c);
    })
    .await
}

/// The six digits mailed to `to`.
async fn code_for(sink: &smtp_sink::SmtpSink, to: &str) -> String {
    let mails = sink
        .wait_for(|m| m.iter().any(|m| m.is_to(to)), Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no mail to {to}"));
    let mail = mails.iter().rev().find(|m| m.is_to(to)).unwrap();
    let code: String = mail
        .body
        .split_whitespace()
        .find(|w| w.len() == 6 && w.bytes().all(|b| b.is_ascii_digit()))
        .expect("a six-digit code in the mail")
        .to_owned();
    assert!(
        mail.subject.as_deref().unwrap_or_default().contains(&code),
        "{:?}",
        mail.subject
    );
    code
}

fn verify(id: &str, code: &str) -> VerifyEmailRequest {
    VerifyEmailRequest {
        verification_id: id.to_owned(),
        code: code.to_owned(),
    }
}

fn requested_for(events: &[eventstore::RecordedEvent], tenant: &str) -> usize {
    events
        .iter()
        .filter(|e| matches!(&e.body, Body::TenantRequested(r) if r.tenant_id == tenant))
        .count()
}

#[tokio::test]
async fn nothing_is_recorded_until_the_mailed_code_comes_back_and_it_works_once() {
    let sink = smtp_sink::SmtpSink::start().unwrap();
    let stack = stack_with_mail(&sink, |_| {}).await;
    let mut client = stack.client().await;
    let t = tag();
    let answer = client.signup(request(&t)).await.unwrap().into_inner();
    assert!(answer.verification_required);
    assert_eq!(answer.verification_sent_to, "o***@example.com");
    assert_eq!(answer.status, TenantStatus::Unspecified as i32);
    assert_eq!(requested_for(&stack.events().await, &answer.tenant_id), 0);

    let code = code_for(&sink, &format!("owner.{t}@example.com")).await;
    let done = client
        .verify_email(verify(&answer.verification_id, &code))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.tenant_id, answer.tenant_id);
    assert_eq!(done.status, TenantStatus::Requested as i32);
    assert!(!done.verification_required);
    assert_eq!(requested_for(&stack.events().await, &answer.tenant_id), 1);

    // Used: a second use is refused and records nothing more.
    let again = expect_code(
        client
            .verify_email(verify(&answer.verification_id, &code))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(error_info(&again).0, "CODE_ALREADY_USED");
    assert_eq!(requested_for(&stack.events().await, &answer.tenant_id), 1);
    // The name is the verified tenant's now.
    let taken = expect_code(
        client
            .signup(SignupRequest {
                email: format!("other.{t}@example.com"),
                ..request(&t)
            })
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(error_info(&taken).0, "SUBDOMAIN_TAKEN");
}

#[tokio::test]
async fn wrong_codes_run_out_and_codes_expire() {
    let sink = smtp_sink::SmtpSink::start().unwrap();
    let stack = stack_with_mail(&sink, |c| c.verification_ttl_secs = 2).await;
    let mut client = stack.client().await;
    let t = tag();
    let answer = client.signup(request(&t)).await.unwrap().into_inner();
    let code = code_for(&sink, &format!("owner.{t}@example.com")).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for left in (0..5).rev() {
        let refused = expect_code(
            client
                .verify_email(verify(&answer.verification_id, wrong))
                .await,
            Code::InvalidArgument,
        );
        let (reason, metadata) = error_info(&refused);
        assert_eq!(reason, "CODE_MISMATCH");
        assert_eq!(metadata["attempts_left"], left.to_string());
    }
    let spent = expect_code(
        client
            .verify_email(verify(&answer.verification_id, &code))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(error_info(&spent).0, "TOO_MANY_ATTEMPTS");

    let t2 = tag();
    let late = client.signup(request(&t2)).await.unwrap().into_inner();
    let code = code_for(&sink, &format!("owner.{t2}@example.com")).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let expired = expect_code(
        client
            .verify_email(verify(&late.verification_id, &code))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(error_info(&expired).0, "CODE_EXPIRED");
    for tenant in [&answer.tenant_id, &late.tenant_id] {
        assert_eq!(requested_for(&stack.events().await, tenant), 0);
    }
    // Malformed and unknown ids.
    let malformed = expect_code(
        client.verify_email(verify("nope", "12")).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&malformed), ["verification_id", "code"]);
    expect_code(
        client
            .verify_email(verify(&uuid::Uuid::new_v4().to_string(), "123456"))
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn disposable_addresses_and_one_email_signing_up_all_hour_are_refused() {
    let sink = smtp_sink::SmtpSink::start().unwrap();
    let stack = stack_with_mail(&sink, |c| {
        // Only the hourly budget: the per-minute one would stop the loop first.
        c.rate_per_email = 0;
        c.rate_per_address = 0;
    })
    .await;
    let mut client = stack.client().await;
    let t = tag();
    let disposable = expect_code(
        client
            .signup(SignupRequest {
                email: format!("owner.{t}@mailinator.com"),
                ..request(&t)
            })
            .await,
        Code::InvalidArgument,
    );
    {
        use tonic_types::StatusExt;
        let violation = &disposable
            .get_details_bad_request()
            .unwrap()
            .field_violations[0];
        assert_eq!(
            (violation.field.as_str(), violation.reason.as_str()),
            ("email", "DISPOSABLE_EMAIL")
        );
    }
    assert!(
        sink.messages().is_empty(),
        "no mail to a disposable address"
    );

    let email = format!("busy.{t}@example.com");
    let mut accepted = 0;
    let mut limited = None;
    for n in 0..20 {
        let answer = client
            .signup(SignupRequest {
                email: email.clone(),
                subdomain: format!("busy-{t}-{n}"),
                ..request(&t)
            })
            .await;
        match answer {
            Ok(_) => accepted += 1,
            Err(s) => {
                limited = Some(s);
                break;
            }
        }
    }
    assert_eq!(accepted, 10, "the hourly budget is 10 signups per email");
    let limited = limited.expect("the 11th signup is refused");
    assert_eq!(limited.code(), Code::ResourceExhausted);
    let (reason, metadata) = error_info(&limited);
    assert_eq!(
        (reason.as_str(), metadata["limit"].as_str()),
        ("RATE_LIMITED", "email")
    );
    assert_eq!(sink.messages_to(&email).len(), 10);
}
