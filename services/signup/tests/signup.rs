//! Signup and CheckSubdomain against real NATS, PostgreSQL and the real vault.

mod common;

use std::collections::HashSet;

use common::*;
use proto::v1::event::Body;
use proto::v1::{CheckSubdomainRequest, SignupRequest, SignupResponse, TenantStatus};
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test]
async fn a_valid_signup_records_tenant_requested_with_only_a_vault_reference() {
    let stack = spawn_stack().await;
    let mut client = stack.client().await;
    let t = tag();
    let answer = client.signup(request(&t)).await.unwrap().into_inner();
    assert_eq!(answer.subdomain, format!("acme-{t}"));
    assert_eq!(answer.status, TenantStatus::Requested as i32);
    assert_eq!(answer.correlation_id, answer.tenant_id);

    let events = stack.events().await;
    let requested: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            Body::TenantRequested(r) => Some((e, r)),
            _ => None,
        })
        .collect();
    assert_eq!(requested.len(), 1);
    let (event, r) = requested[0];
    assert_eq!(
        event.subject,
        stack
            .store
            .subject(eventstore::EventContext::Signup, &answer.tenant_id)
    );
    assert_eq!(r.tenant_id, answer.tenant_id);
    assert_eq!(r.owner_email, format!("owner.{t}@example.com"));
    assert_eq!((r.plan.as_str(), r.region.as_str()), ("starter", "eu"));
    assert!(
        r.password_ref
            .starts_with(&format!("vault://tenant/{}/one-time/", answer.tenant_id)),
        "{}",
        r.password_ref
    );
    assert_eq!(
        event.correlation_id.as_deref(),
        Some(answer.tenant_id.as_str())
    );
}

#[tokio::test]
async fn an_empty_subdomain_is_derived_from_the_organisation() {
    let stack = spawn_stack().await;
    let mut client = stack.client().await;
    let t = tag();
    let answer = client
        .signup(SignupRequest {
            subdomain: String::new(),
            organisation: format!("Globex {t}"),
            ..request(&t)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.subdomain, format!("globex-{t}"));
}

/// (what is wrong, field, request)
fn bad_inputs() -> Vec<(&'static str, &'static str, SignupRequest)> {
    let t = "k0bad";
    let base = request(t);
    let sub = |s: &str| SignupRequest {
        subdomain: s.to_owned(),
        ..request(t)
    };
    let email = |s: &str| SignupRequest {
        email: s.to_owned(),
        ..request(t)
    };
    let name = |s: &str| SignupRequest {
        full_name: s.to_owned(),
        ..request(t)
    };
    let org = |s: &str| SignupRequest {
        organisation: s.to_owned(),
        ..request(t)
    };
    let password = |s: &str| SignupRequest {
        password: s.to_owned(),
        ..request(t)
    };
    vec![
        ("shell injection", "subdomain", sub("acme;rm -rf /")),
        ("path traversal", "subdomain", sub("../etc")),
        ("upper case", "subdomain", sub("ACME")),
        ("mixed case", "subdomain", sub("Acme-Corp")),
        ("Cyrillic homoglyph", "subdomain", sub("\u{0430}cme")),
        ("64-character label", "subdomain", sub(&"a".repeat(64))),
        ("leading hyphen", "subdomain", sub("-acme")),
        ("trailing hyphen", "subdomain", sub("acme-")),
        ("reserved www", "subdomain", sub("www")),
        ("reserved admin", "subdomain", sub("admin")),
        ("punycode", "subdomain", sub("xn--acme")),
        ("too short", "subdomain", sub("ab")),
        ("space", "subdomain", sub("ac me")),
        ("dot", "subdomain", sub("acme.evil")),
        ("10 KB subdomain", "subdomain", sub(&"a".repeat(10_000))),
        (
            "underivable subdomain",
            "subdomain",
            SignupRequest {
                subdomain: String::new(),
                organisation: "株式会社".to_owned(),
                ..request(t)
            },
        ),
        ("empty email", "email", email("")),
        ("no @", "email", email("plainaddress")),
        ("no domain", "email", email("jane@")),
        ("no local part", "email", email("@example.com")),
        ("two @", "email", email("jane@@example.com")),
        ("space in email", "email", email("jane doe@example.com")),
        ("angle brackets", "email", email("<jane@example.com>")),
        ("single-label domain", "email", email("jane@localhost")),
        ("non-ASCII email", "email", email("jané@example.com")),
        (
            "header injection",
            "email",
            email("jane@example.com\r\nBcc: x@evil.com"),
        ),
        (
            "over-long email",
            "email",
            email(&format!("{}@example.com", "x".repeat(300))),
        ),
        ("empty name", "full_name", name("")),
        ("blank name", "full_name", name("   ")),
        (
            "markup in name",
            "full_name",
            name("<script>alert(1)</script>"),
        ),
        ("over-long name", "full_name", name(&"x".repeat(101))),
        (
            "bidi override in name",
            "full_name",
            name("Jane\u{202E}eoD"),
        ),
        ("empty organisation", "organisation", org("")),
        (
            "script in organisation",
            "organisation",
            org("<script>alert(1)</script>"),
        ),
        (
            "SQL in organisation",
            "organisation",
            org("Acme; DROP TABLE tenants"),
        ),
        (
            "over-long organisation",
            "organisation",
            org(&"x".repeat(101)),
        ),
        ("one-letter organisation", "organisation", org("A")),
        ("empty password", "password", password("")),
        ("short password", "password", password("Xk9#mQ2$vL7")),
        ("common password", "password", password("Password123!")),
        (
            "repetitive password",
            "password",
            password("abababababababab"),
        ),
        (
            "personal password",
            "password",
            password("owner k0bad forever 2024"),
        ),
        (
            "over-long password",
            "password",
            password(&"xY1".repeat(50)),
        ),
        (
            "empty plan",
            "plan",
            SignupRequest {
                plan: String::new(),
                ..base.clone()
            },
        ),
        (
            "unknown plan",
            "plan",
            SignupRequest {
                plan: "gold".into(),
                ..base.clone()
            },
        ),
        (
            "upper-case plan",
            "plan",
            SignupRequest {
                plan: "Starter".into(),
                ..base.clone()
            },
        ),
        (
            "unknown region",
            "region",
            SignupRequest {
                region: "mars".into(),
                ..base.clone()
            },
        ),
        (
            "idempotency key with spaces",
            "idempotency_key",
            SignupRequest {
                idempotency_key: "not a key".into(),
                ..base
            },
        ),
    ]
}

#[tokio::test]
async fn every_bad_input_is_invalid_argument_naming_its_field_and_appends_nothing() {
    let stack = spawn_stack_with(|c| c.rate_per_address = 0).await;
    let mut client = stack.client().await;
    let cases = bad_inputs();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for (what, field, req) in cases {
        let status = expect_code(client.signup(req).await, Code::InvalidArgument);
        assert_eq!(
            violated_fields(&status),
            [field],
            "{what}: {}",
            status.message()
        );
        assert!(status.message().starts_with("invalid request: "), "{what}");
    }
    // Every field at once: all named in one answer.
    let status = expect_code(
        client
            .signup(SignupRequest {
                email: "nope".into(),
                password: "short".into(),
                full_name: String::new(),
                organisation: "<b>".into(),
                subdomain: "WWW".into(),
                plan: "gold".into(),
                region: "mars".into(),
                idempotency_key: String::new(),
                human_check_token: String::new(),
            })
            .await,
        Code::InvalidArgument,
    );
    let fields: HashSet<String> = violated_fields(&status).into_iter().collect();
    let want: HashSet<String> = [
        "email",
        "password",
        "full_name",
        "organisation",
        "subdomain",
        "plan",
        "region",
    ]
    .map(String::from)
    .into();
    assert_eq!(fields, want);
    // Machine-readable: one reason for the whole answer, one per field.
    let (reason, metadata) = error_info(&status);
    assert_eq!(reason, "INVALID_REQUEST");
    assert_eq!(
        metadata["fields"]
            .split(',')
            .map(String::from)
            .collect::<HashSet<_>>(),
        want
    );
    {
        use tonic_types::StatusExt;
        let violations = status.get_details_bad_request().unwrap().field_violations;
        assert!(
            violations
                .iter()
                .all(|v| v.reason == format!("INVALID_{}", v.field.to_ascii_uppercase())),
            "{violations:?}"
        );
    }
    assert!(
        stack.events().await.is_empty(),
        "a refused signup appended an event"
    );
    // No claim was left behind either.
    let check = client
        .check_subdomain(CheckSubdomainRequest {
            subdomain: "acme-k0bad".into(),
            organisation: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(check.valid && check.available);
}

#[tokio::test]
async fn fifty_concurrent_signups_for_one_subdomain_accept_exactly_one() {
    let stack = spawn_stack_with(|c| c.rate_per_address = 0).await;
    let t = tag();
    let client = stack.client().await;
    let calls = (0..50).map(|i| {
        let mut client = client.clone();
        let req = SignupRequest {
            email: format!("person{i}@example.com"),
            ..request(&t)
        };
        tokio::spawn(async move { client.signup(req).await })
    });
    let results = futures::future::join_all(calls).await;
    let mut accepted = 0;
    let mut taken = 0;
    for r in results {
        match r.unwrap() {
            Ok(_) => accepted += 1,
            Err(s) if s.code() == Code::AlreadyExists => {
                assert!(
                    s.message().contains(&format!("acme-{t}")),
                    "{}",
                    s.message()
                );
                taken += 1;
            }
            Err(s) => panic!("unexpected {s:?}"),
        }
    }
    assert_eq!((accepted, taken), (1, 49));
    let requested = stack
        .events()
        .await
        .into_iter()
        .filter(|e| matches!(e.body, Body::TenantRequested(_)))
        .count();
    assert_eq!(requested, 1);
}

#[tokio::test]
async fn a_taken_subdomain_suggests_a_free_one() {
    let stack = spawn_stack().await;
    let mut client = stack.client().await;
    let t = tag();
    client.signup(request(&t)).await.unwrap();
    let status = expect_code(
        client
            .signup(SignupRequest {
                email: format!("other.{t}@example.com"),
                ..request(&t)
            })
            .await,
        Code::AlreadyExists,
    );
    assert!(
        status.message().contains(&format!("try acme-{t}-2")),
        "{}",
        status.message()
    );
    // The same, as data a page can act on.
    let (reason, metadata) = error_info(&status);
    assert_eq!(reason, "SUBDOMAIN_TAKEN");
    assert_eq!(metadata["subdomain"], format!("acme-{t}"));
    assert_eq!(metadata["suggestion"], format!("acme-{t}-2"));
    use tonic_types::StatusExt;
    let resource = status.get_details_resource_info().expect("ResourceInfo");
    assert_eq!(
        (resource.resource_type.as_str(), resource.resource_name),
        ("subdomain", format!("acme-{t}"))
    );
}

#[tokio::test]
async fn fifty_concurrent_signups_with_one_idempotency_key_make_one_tenant() {
    let stack = spawn_stack_with(|c| c.rate_per_address = 0).await;
    let t = tag();
    let req = SignupRequest {
        idempotency_key: format!("key-{t}"),
        ..request(&t)
    };
    let client = stack.client().await;
    let calls = (0..50).map(|_| {
        let mut client = client.clone();
        let req = req.clone();
        tokio::spawn(async move { client.signup(req).await })
    });
    let answers: Vec<_> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| {
            r.unwrap()
                .expect("every same-key request succeeds")
                .into_inner()
        })
        .collect();
    assert_eq!(answers.len(), 50);
    // One signup: the same answer for all, and only the one that made it carries a handoff
    // token (knowing an idempotency key is no proof of being the owner).
    let with_token: Vec<_> = answers
        .iter()
        .filter(|a| !a.handoff_token.is_empty())
        .collect();
    assert_eq!(with_token.len(), 1, "exactly the fresh answer has a token");
    let bare = |a: &SignupResponse| SignupResponse {
        handoff_token: String::new(),
        ..a.clone()
    };
    assert!(
        answers.iter().all(|a| bare(a) == bare(&answers[0])),
        "answers differ"
    );
    // A later retry gets the same answer too, without a token.
    let mut c = client.clone();
    let later = c.signup(req.clone()).await.unwrap().into_inner();
    assert!(later.handoff_token.is_empty());
    assert_eq!(later, bare(&answers[0]));
    let requested: Vec<_> = stack
        .events()
        .await
        .into_iter()
        .filter_map(|e| match e.body {
            Body::TenantRequested(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(requested.len(), 1);
    assert_eq!(requested[0].tenant_id, answers[0].tenant_id);
    assert_eq!(requested[0].idempotency_key, format!("key-{t}"));

    // The same key with a different request is refused, not silently answered.
    let status = expect_code(
        c.signup(SignupRequest {
            full_name: "Someone Else".into(),
            ..req
        })
        .await,
        Code::FailedPrecondition,
    );
    assert!(
        status.message().contains("idempotency key"),
        "{}",
        status.message()
    );
    assert_eq!(error_info(&status).0, "IDEMPOTENCY_KEY_REUSED");
    use tonic_types::StatusExt;
    let precondition = status
        .get_details_precondition_failure()
        .expect("PreconditionFailure");
    assert_eq!(precondition.violations[0].subject, "idempotency_key");
}

#[tokio::test]
async fn the_twenty_first_signup_from_one_address_is_resource_exhausted() {
    // Default limits: 20 per address per minute.
    let stack = spawn_stack().await;
    let mut client = stack.client().await;
    for _ in 0..20 {
        client.signup(request(&tag())).await.unwrap();
    }
    let status = expect_code(
        client.signup(request(&tag())).await,
        Code::ResourceExhausted,
    );
    let retry = status.get_details_retry_info().expect("retry info");
    assert!(retry.retry_delay.is_some());
    let (reason, metadata) = error_info(&status);
    assert_eq!(
        (reason.as_str(), metadata["limit"].as_str()),
        ("RATE_LIMITED", "address")
    );
    assert!(
        status.message().contains("network address"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn the_email_budget_counts_new_signups_only() {
    let stack = spawn_stack_with(|c| {
        c.rate_per_address = 0;
        c.rate_per_email = 2;
    })
    .await;
    let mut client = stack.client().await;
    let email = format!("busy.{}@example.com", tag());
    let with_email = |t: &str| SignupRequest {
        email: email.clone(),
        idempotency_key: format!("key-{t}"),
        ..request(t)
    };
    let first = with_email(&tag());
    client.signup(first.clone()).await.unwrap();
    client.signup(with_email(&tag())).await.unwrap();
    // Replaying an answered key is not a new signup.
    client.signup(first).await.unwrap();
    let status = expect_code(
        client.signup(with_email(&tag())).await,
        Code::ResourceExhausted,
    );
    assert!(status.message().contains("email"), "{}", status.message());
}

#[tokio::test]
async fn forwarded_addresses_are_limited_separately_when_trusted() {
    let stack = spawn_stack_with(|c| {
        c.rate_per_address = 1;
        c.trust_forwarded_for = true;
    })
    .await;
    let mut client = stack.client().await;
    let from = |ip: &str, t: &str| {
        let mut r = tonic::Request::new(request(t));
        r.metadata_mut().insert(
            "x-forwarded-for",
            format!("{ip}, 10.0.0.1").parse().unwrap(),
        );
        r
    };
    client.signup(from("203.0.113.1", &tag())).await.unwrap();
    expect_code(
        client.signup(from("203.0.113.1", &tag())).await,
        Code::ResourceExhausted,
    );
    client.signup(from("203.0.113.2", &tag())).await.unwrap();
}

#[tokio::test]
async fn a_failure_after_the_claim_releases_the_subdomain_and_appends_nothing() {
    let stack = spawn_stack_with(|c| {
        // The vault refuses this token, so storing the password fails after the claim.
        c.vault_token = Some(secrecy::SecretString::from("not-the-token"));
    })
    .await;
    let mut client = stack.client().await;
    let t = tag();
    let req = SignupRequest {
        idempotency_key: format!("key-{t}"),
        ..request(&t)
    };
    // A vault refusing our token is our misconfiguration: INTERNAL for the caller, with none of
    // the vault's ACL details in the message.
    let status = expect_code(client.signup(req.clone()).await, Code::Internal);
    assert!(!status.message().contains("token"), "{}", status.message());
    let check = client
        .check_subdomain(CheckSubdomainRequest {
            subdomain: format!("acme-{t}"),
            organisation: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(check.valid && check.available, "{check:?}");
    // The failed attempt is not remembered under its idempotency key: a retry runs again.
    expect_code(client.signup(req).await, Code::Internal);
    assert!(stack.events().await.is_empty());
}

#[tokio::test]
async fn check_subdomain_says_valid_available_and_suggests() {
    let stack = spawn_stack().await;
    let mut client = stack.client().await;
    let t = tag();
    let check = |subdomain: String, organisation: &str| CheckSubdomainRequest {
        subdomain,
        organisation: organisation.to_owned(),
    };
    let free = client
        .check_subdomain(check(format!("acme-{t}"), ""))
        .await
        .unwrap()
        .into_inner();
    assert!(free.valid && free.available && free.suggestion.is_empty());

    client.signup(request(&t)).await.unwrap();
    let taken = client
        .check_subdomain(check(format!("acme-{t}"), ""))
        .await
        .unwrap()
        .into_inner();
    assert!(taken.valid && !taken.available);
    assert_eq!(taken.suggestion, format!("acme-{t}-2"));

    let upper = client
        .check_subdomain(check(format!("NEW-{t}"), ""))
        .await
        .unwrap()
        .into_inner();
    assert!(!upper.valid);
    assert!(upper.reason.contains("lowercase"), "{}", upper.reason);
    assert_eq!(upper.suggestion, format!("new-{t}"));

    let empty = client
        .check_subdomain(check(String::new(), &format!("Initech {t}")))
        .await
        .unwrap()
        .into_inner();
    assert!(!empty.valid);
    assert_eq!(empty.suggestion, format!("initech-{t}"));

    let reserved = client
        .check_subdomain(check("www".into(), ""))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !reserved.valid && reserved.reason.contains("reserved"),
        "{reserved:?}"
    );
    assert_eq!(reserved.suggestion, "www-co");
}
