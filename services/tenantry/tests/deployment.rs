//! The services started exactly as `deploy/systemd/` says — each unit's command, environment
//! file, `Environment=` lines and credentials — and exactly as `deploy/compose/compose.yaml`
//! says — each service's command, environment and secrets — as local processes (see
//! `common::units` for the little that is mapped), sign a person up end to end: verified
//! email, site provisioned, single sign-on ready, the owner logs in.

mod common;

use std::time::Duration;

use common::{Stack, StackOptions, units};
use proto::v1::{SignupRequest, signup_service_client::SignupServiceClient};
use secrecy::SecretString;

#[tokio::test]
async fn the_systemd_units_run_a_signup_end_to_end() {
    let stack = Stack::start(StackOptions {
        systemd: true,
        ..StackOptions::default()
    })
    .await;
    sign_up_through(&stack, "credentials").await;
}

#[tokio::test]
async fn the_compose_services_run_a_signup_end_to_end() {
    let stack = Stack::start(StackOptions {
        compose: true,
        ..StackOptions::default()
    })
    .await;
    sign_up_through(&stack, "run").await;
}

/// A signup through `stack`, to the owner's login; `secrets` is where the services' secret
/// files were put (one directory per service).
async fn sign_up_through(stack: &Stack, secrets: &str) {
    let mut signup = SignupServiceClient::new(stack.connect(stack.signup_port).await);
    let password = "Hardened-Daemons-2026!";
    let mut accepted = None;
    for _ in 0..100 {
        match signup
            .signup(SignupRequest {
                email: "linus@example.com".into(),
                password: password.into(),
                full_name: "Linus Unit".into(),
                organisation: "Unit Works".into(),
                subdomain: "unit-works".into(),
                plan: "starter".into(),
                ..Default::default()
            })
            .await
        {
            Ok(r) => {
                accepted = Some(r.into_inner());
                break;
            }
            Err(s) if s.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => panic!("signup refused: {s:?}{}", stack.logs_tail()),
        }
    }
    let accepted = accepted.unwrap_or_else(|| panic!("never accepted{}", stack.logs_tail()));
    let accepted = stack
        .verify(&mut signup, &accepted, "linus@example.com")
        .await;
    let updates = stack.watch_to_end(&mut signup, &accepted.tenant_id).await;
    let last = updates.last().expect("progress");
    assert!(
        last.done && !last.failed && last.step == "sso_ready",
        "{last:?}{}",
        stack.logs_tail()
    );
    // The owner logs in to the site with the password they chose.
    let site = frappe::SiteName::parse("unit-works.erp.localhost").unwrap();
    let client =
        frappe::FrappeClient::new(&stack.bench.base_url, site, frappe::SiteRouting::Header)
            .unwrap();
    client
        .login(
            &frappe::UserId::parse("linus@example.com").unwrap(),
            &SecretString::from(password.to_owned()),
        )
        .await
        .expect("owner logs in");
    // Resident memory after a signup, for sizing (the README's production guide and the
    // Kubernetes requests come from these figures).
    let rss = stack.rss_kib();
    assert_eq!(rss.len(), 6, "every service is still running: {rss:?}");
    for (service, kib) in &rss {
        eprintln!("rss {service} {} MiB", kib / 1024);
    }
    // Each service found its secrets where its unit put them, and nowhere else: the
    // credentials directories hold them, the environment files do not.
    for service in ["vault", "signup", "provisioner", "identity", "billing"] {
        let dir = stack.work.path().join(secrets).join(service);
        assert!(
            std::fs::read_dir(&dir).is_ok_and(|d| d.count() > 0),
            "{service} got no credentials"
        );
    }
    stack.clean_up().await;
}

#[test]
fn units_parse_and_every_service_has_one() {
    use units::{parse, units_dir};
    for service in common::SERVICES {
        let text = std::fs::read_to_string(units_dir().join(format!("tenantry-{service}.service")))
            .unwrap();
        let unit = parse(&text);
        assert_eq!(unit.exec, ["/usr/local/bin/tenantry", service]);
        assert!(text.contains("DynamicUser=yes") && text.contains("NoNewPrivileges=yes"));
        // Secrets only as credentials: no token, key or password in the environment.
        for (k, v) in &unit.env {
            assert!(
                !k.ends_with("_TOKEN") && !k.ends_with("_PASSWORD") && !v.contains("secret"),
                "{service}: {k}={v}"
            );
        }
    }
}
