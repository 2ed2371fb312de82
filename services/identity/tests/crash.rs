//! Kill-and-restart: the identity binary aborts itself (its crash hook, a `kill -9` at an exact
//! instruction) right after each Authentik or site call and around its event, then a clean
//! instance finishes; every tenant ends with exactly one of each object and one
//! IdentityConfigured.

mod common;

use std::time::Duration;

use common::{PASSWORD, Stack, owner_email};
use eventstore::EventContext;

const POINTS: [&str; 11] = [
    "at:group",
    "at:user",
    "at:password",
    "at:provider",
    "at:secret",
    "at:application",
    "at:binding",
    "at:application-provider",
    "at:social-login-key",
    "before:IdentityConfigured",
    "after:IdentityConfigured",
];

#[tokio::test]
async fn killed_after_every_call_each_tenant_gets_exactly_one_of_each_object() {
    let stack = Stack::new().await;
    let mut tenants = Vec::new();
    for (i, point) in POINTS.iter().enumerate() {
        let sub = format!("crash{i:02}");
        let tenant = stack.request_tenant(&sub).await;
        stack.provisioned(&tenant).await;
        tenants.push((tenant, sub));
        let mut child = stack.spawn_identity_process(&[("TENANTRY_IDENTITY_CRASH_AT", point)]);
        // The hook fires at the first matching point, from this tenant or one redelivered from
        // an earlier round; either way the process dies right after a call.
        let mut status = None;
        for _ in 0..1200 {
            status = child.0.try_wait().unwrap();
            if status.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let Some(status) = status else {
            panic!("{point}: identity never reached its crash point");
        };
        assert!(!status.success(), "{point}: identity should have aborted");
    }
    let _clean = stack.spawn_identity_process(&[]);
    for (tenant, sub) in &tenants {
        let events = stack
            .wait_for(EventContext::Identity, tenant, "IdentityConfigured", 1, 90)
            .await;
        let configured = events
            .iter()
            .filter(|e| e.event_type == "IdentityConfigured")
            .count();
        assert_eq!(configured, 1, "{sub}: one IdentityConfigured");
        assert_eq!(
            stack.objects_of(tenant, sub).counts(),
            [1, 1, 1, 1, 1],
            "{sub}: one of each object"
        );
        assert!(
            stack
                .authentik
                .can_sign_in(&format!("tenant-{sub}"), &owner_email(sub), PASSWORD),
            "{sub}: the owner signs in"
        );
    }
}
