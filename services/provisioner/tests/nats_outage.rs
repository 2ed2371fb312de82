//! NATS killed and restarted (same store) while 50 clients sign up: each gets its answer — or a
//! fast UNAVAILABLE it retries with its idempotency key — within seconds of NATS returning,
//! never a minute of ABORTED; and every accepted tenant ends provisioned.

mod common;

use std::time::{Duration, Instant};

use common::{FleetOptions, Outcome, PASSWORD, TestStack, signup_retrying};
use proto::v1 as pb;
use tonic::Code;

const CLIENTS: usize = 50;

async fn client(endpoint: String, i: usize) -> Outcome {
    signup_retrying(
        endpoint,
        pb::SignupRequest {
            email: format!("owner{i}@outage.example.com"),
            password: PASSWORD.to_owned(),
            full_name: "Olive Owner".to_owned(),
            organisation: format!("Outage {i}"),
            subdomain: format!("outage-{i:02}"),
            plan: "starter".to_owned(),
            region: String::new(),
            idempotency_key: format!("outage-key-{i}"),
            human_check_token: String::new(),
        },
        Duration::from_secs(120),
    )
    .await
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
