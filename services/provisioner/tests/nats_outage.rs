//! NATS killed and restarted (same store) while 50 clients sign up: each gets its answer — or a
//! fast UNAVAILABLE it retries with its idempotency key — within seconds of NATS returning,
//! never a minute of ABORTED; and every accepted tenant ends provisioned.

mod common;

use std::time::{Duration, Instant};

use common::{FleetOptions, PASSWORD, TestStack};
use proto::v1::{self as pb, signup_service_client::SignupServiceClient};
use tonic::Code;

const CLIENTS: usize = 50;

/// What one client saw: its tenant, when it got it, and the codes of its failed attempts.
struct Outcome {
    tenant_id: String,
    answered_at: Instant,
    failures: Vec<Code>,
    slowest_failure: Duration,
}

async fn client(endpoint: String, i: usize) -> Outcome {
    let mut failures = Vec::new();
    let mut slowest_failure = Duration::ZERO;
    let giving_up = Instant::now() + Duration::from_secs(120);
    loop {
        let attempt = Instant::now();
        let answer = async {
            let mut c = SignupServiceClient::connect(endpoint.clone()).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                c.signup(pb::SignupRequest {
                    email: format!("owner{i}@outage.example.com"),
                    password: PASSWORD.to_owned(),
                    full_name: "Olive Owner".to_owned(),
                    organisation: format!("Outage {i}"),
                    subdomain: format!("outage-{i:02}"),
                    plan: "starter".to_owned(),
                    region: String::new(),
                    idempotency_key: format!("outage-key-{i}"),
                })
                .await,
            )
        }
        .await;
        match answer {
            Ok(Ok(r)) => {
                return Outcome {
                    tenant_id: r.into_inner().tenant_id,
                    answered_at: Instant::now(),
                    failures,
                    slowest_failure,
                };
            }
            Ok(Err(status)) => {
                assert!(
                    matches!(status.code(), Code::Unavailable | Code::Aborted),
                    "client {i}: {status:?}"
                );
                failures.push(status.code());
            }
            Err(_) => failures.push(Code::Unavailable),
        }
        slowest_failure = slowest_failure.max(attempt.elapsed());
        assert!(Instant::now() < giving_up, "client {i} never got an answer");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn signups_get_their_answer_soon_after_nats_returns_and_every_tenant_is_provisioned() {
    let mut nats = testkit::NatsServer::start().await;
    let stack = TestStack::new(
        1,
        FleetOptions {
            ops: 4,
            nats_url: Some(nats.url()),
            ..Default::default()
        },
    )
    .await;
    let prov = stack.start_provisioner(stack.config()).await;
    let signup = testkit::spawn_signup(&stack.vault, |c| {
        c.rate_per_address = 0;
        c.rate_per_email = 0;
    })
    .await;

    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let endpoint = signup.endpoint();
            tokio::spawn(async move {
                // Spread over two seconds, so signups are in flight when NATS dies.
                tokio::time::sleep(Duration::from_millis(40 * i as u64)).await;
                client(endpoint, i).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    nats.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    nats.restart().await;
    let back = Instant::now();

    let mut tenants = Vec::new();
    for c in clients {
        let o = c.await.unwrap();
        let after = o.answered_at.saturating_duration_since(back);
        assert!(
            after < Duration::from_secs(30),
            "{}: answered {after:?} after NATS returned ({:?})",
            o.tenant_id,
            o.failures
        );
        let aborted = o.failures.iter().filter(|c| **c == Code::Aborted).count();
        assert!(aborted <= 3, "{}: ABORTED {aborted} times", o.tenant_id);
        // A failed attempt is a fast answer, not a hang.
        assert!(
            o.slowest_failure < Duration::from_secs(12),
            "a failed attempt took {:?}",
            o.slowest_failure
        );
        tenants.push(o.tenant_id);
    }
    tenants.sort();
    tenants.dedup();
    assert_eq!(tenants.len(), CLIENTS, "one tenant per client");
    for t in &tenants {
        stack.wait_for(t, "TenantProvisioned", 120).await;
    }
    prov.stop().await;
}
