//! One client cannot starve the others: capped progress streams, rate-limited subdomain
//! checks, and a hung vault answered with UNAVAILABLE instead of a call that never returns.

mod common;

use std::time::Duration;

use common::*;
use proto::v1::{CheckSubdomainRequest, WatchSignupRequest};
use tonic::Code;

/// A request that appears to come from `address` (the stacks here trust `x-forwarded-for`).
fn from<T>(address: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("x-forwarded-for", address.parse().unwrap());
    r
}

#[tokio::test]
async fn watch_streams_are_capped_per_address_and_signups_keep_being_answered() {
    const CAP: usize = 8;
    let stack = spawn_stack_with(|c| {
        c.trust_forwarded_for = true;
        c.watch_per_address = CAP;
        c.rate_per_address = 0;
    })
    .await;
    let mut client = stack.client().await;
    let tenant = client
        .signup(from("10.0.0.9", request(&tag())))
        .await
        .unwrap()
        .into_inner()
        .tenant_id;

    // 500 streams from one address, over a few connections, all at once.
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(stack.client().await);
    }
    let attempts = (0..500).map(|i| {
        let mut c = clients[i % clients.len()].clone();
        let tenant = tenant.clone();
        async move {
            c.watch_signup(from("10.0.0.1", WatchSignupRequest { tenant_id: tenant }))
                .await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let mut open = Vec::new();
    let mut refused = 0;
    for r in results {
        match r {
            Ok(stream) => open.push(stream.into_inner()),
            Err(s) => {
                assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
                assert!(s.message().contains("at most 8"), "{}", s.message());
                refused += 1;
            }
        }
    }
    assert_eq!(open.len(), CAP);
    assert_eq!(refused, 500 - CAP);

    // Others are not affected: a signup and a watch from another address go through.
    let other = client
        .signup(from("10.0.0.2", request(&tag())))
        .await
        .unwrap()
        .into_inner();
    client
        .watch_signup(from(
            "10.0.0.2",
            WatchSignupRequest {
                tenant_id: other.tenant_id,
            },
        ))
        .await
        .unwrap();

    // Closing streams gives their slots back.
    drop(open);
    testkit::eventually(|| {
        let mut c = client.clone();
        let tenant = tenant.clone();
        async move {
            c.watch_signup(from("10.0.0.1", WatchSignupRequest { tenant_id: tenant }))
                .await
                .ok()
        }
    })
    .await;
}

#[tokio::test]
async fn subdomain_checks_are_rate_limited_per_address() {
    let stack = spawn_stack_with(|c| {
        c.trust_forwarded_for = true;
        c.check_rate_per_address = 3;
    })
    .await;
    let mut client = stack.client().await;
    let check = |address: &str| {
        from(
            address,
            CheckSubdomainRequest {
                subdomain: format!("free-{}", tag()),
                organisation: String::new(),
            },
        )
    };
    for _ in 0..3 {
        client.check_subdomain(check("10.1.0.1")).await.unwrap();
    }
    let status = expect_code(
        client.check_subdomain(check("10.1.0.1")).await,
        Code::ResourceExhausted,
    );
    assert!(
        status.message().contains("subdomain checks"),
        "{}",
        status.message()
    );
    // Another address has its own budget.
    client.check_subdomain(check("10.1.0.2")).await.unwrap();
}

#[tokio::test]
async fn a_hung_vault_makes_signup_answer_unavailable_within_its_deadline() {
    // A "vault" that accepts connections and never says a word.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_addr = hung.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hung.accept().await {
            held.push(socket);
        }
    });
    let stack = spawn_stack_with(|c| {
        c.vault_endpoint = format!("http://{hung_addr}");
        c.signup_deadline_ms = 2_000;
    })
    .await;
    let mut client = stack.client().await;
    // The outer bound only keeps a broken build from hanging the suite.
    let answer = tokio::time::timeout(Duration::from_secs(60), client.signup(request(&tag())))
        .await
        .expect("signup answers instead of hanging");
    let status = answer.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // Nothing was recorded for the failed attempt: the same person may simply retry.
    assert!(
        stack
            .events()
            .await
            .iter()
            .all(|e| e.event_type != "TenantRequested")
    );
    holder.abort();
}
