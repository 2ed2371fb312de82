//! Single sign-on through the real services (NATS, PostgreSQL vault, a provisioner on a
//! frappe-sim bench) and the Authentik fake: a provisioned tenant ends with exactly one group,
//! owner, provider, application and binding, the owner signs in with the signup password, the
//! site's Social Login Key points at the provider, and the client secret lives only in the
//! vault; suspension, resume and deletion follow the tenant.

mod common;

use common::{Objects, PASSWORD, Stack, owner_email};
use eventstore::{Body, EventContext};
use frappe::ApiCredentials;
use proto::v1 as pb;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

const REDIRECT: &str = "/api/method/frappe.integrations.oauth2_logins.custom/authentik";

fn configured(events: &[eventstore::RecordedEvent]) -> pb::IdentityConfigured {
    events
        .iter()
        .find_map(|e| match &e.body {
            Body::IdentityConfigured(c) => Some(c.clone()),
            _ => None,
        })
        .expect("IdentityConfigured")
}

async fn site_credentials(stack: &Stack, tenant: &str) -> ApiCredentials {
    let v = stack
        .vault
        .client("provisioner")
        .get_by_name(tenant, "api-credentials", "test")
        .await
        .expect("api credentials");
    let json: Value = serde_json::from_str(v.to_secret_string().unwrap().expose_secret()).unwrap();
    ApiCredentials {
        api_key: json["api_key"].as_str().unwrap().to_owned(),
        api_secret: json["api_secret"].as_str().unwrap().to_owned().into(),
    }
}

/// A client of the fake with its token, as an Authentik admin would use the API.
fn admin(stack: &Stack) -> authentik_client::Authentik {
    authentik_client::Authentik::new(&authentik_client::AuthentikConfig::new(
        stack.authentik.base_url(),
        secrecy::SecretString::from(authentik_fake::FakeConfig::default().token),
    ))
    .unwrap()
}

fn assert_linked(o: &Objects) {
    assert_eq!(o.counts(), [1, 1, 1, 1, 1], "one of each object: {o:#?}");
    let group = &o.groups[0]["pk"];
    assert!(
        o.users[0]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == group),
        "the owner is in the tenant's group"
    );
    assert_eq!(o.applications[0]["provider"], o.providers[0]["pk"]);
    assert_eq!(o.bindings[0]["group"], *group);
    assert_eq!(o.bindings[0]["target"], o.applications[0]["pbm_uuid"]);
    assert_eq!(o.bindings[0]["enabled"], true);
}

#[tokio::test]
async fn a_provisioned_tenant_gets_single_sign_on_and_only_the_vault_keeps_the_secret() {
    let stack = Stack::new().await;
    let _identity = stack.start_identity(stack.identity_config()).await;
    let tenant = stack.request_tenant("acme").await;
    let site = stack.provisioned(&tenant).await;
    let events = stack
        .wait_for(EventContext::Identity, &tenant, "IdentityConfigured", 1, 60)
        .await;
    let done = configured(&events);
    assert_eq!(done.application_slug, "tenant-acme");
    assert_eq!(done.client_id, "tenant-acme");
    assert_eq!(done.login_url, format!("{}/login", site.url));

    let o = stack.objects_of(&tenant, "acme");
    assert_linked(&o);
    let provider = &o.providers[0];
    let uris = provider["redirect_uris"].as_array().unwrap();
    assert_eq!(uris.len(), 1, "one redirect URI");
    assert_eq!(uris[0]["matching_mode"], "strict");
    assert_eq!(uris[0]["url"], format!("{}{REDIRECT}", site.url));
    assert_eq!(provider["client_type"], "confidential");
    assert_eq!(provider["property_mappings"].as_array().unwrap().len(), 3);

    // Authentik's own check: the owner passes the application's policies.
    let admin = admin(&stack);
    let owner_pk = o.users[0]["pk"].as_i64().unwrap();
    assert!(admin.check_access("tenant-acme", owner_pk).await.unwrap());
    // The owner signs in with the password chosen at signup, and only with it.
    let email = owner_email("acme");
    assert!(stack.authentik.can_sign_in("tenant-acme", &email, PASSWORD));
    assert!(
        !stack
            .authentik
            .can_sign_in("tenant-acme", &email, "not-the-password")
    );

    // The site's Social Login Key.
    let creds = site_credentials(&stack, &tenant).await;
    let key = stack
        .site(&site.site)
        .with_token(&creds)
        .get_doc("Social Login Key", "authentik")
        .await
        .expect("the site has the Authentik social login key");
    assert_eq!(key["provider_name"], "Authentik");
    assert_eq!(key["social_login_provider"], "Custom");
    assert_eq!(key["enable_social_login"], 1);
    assert_eq!(key["redirect_url"], REDIRECT);
    assert_eq!(key["client_id"], "tenant-acme");
    assert_eq!(
        key["authorize_url"],
        "http://auth.localhost/application/o/authorize/"
    );
    assert_eq!(
        key["access_token_url"],
        "http://auth.localhost/application/o/token/"
    );
    assert_eq!(
        key["api_endpoint"],
        "http://auth.localhost/application/o/userinfo/"
    );
    let secret = provider["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(
        key["client_secret"],
        secret.as_str(),
        "REST never shows the secret"
    );
    let stored_key = stack
        .bench
        .social_login_key(&site.site, "authentik")
        .await
        .expect("stored key");
    assert_eq!(
        stored_key["client_secret"],
        secret.as_str(),
        "the site holds the provider's secret"
    );

    // The client secret: in the vault, never in an event or header.
    let stored = stack
        .vault
        .client("identity")
        .get(&done.client_secret_ref, "test")
        .await
        .expect("client secret in the vault");
    assert_eq!(stored.to_secret_string().unwrap().expose_secret(), secret);
    let all = stack
        .store
        .replay(&stack.store.all_filter(), 1)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert!(all.len() > 10);
    for e in &all {
        let text = format!("{:?} {:?}", e.body, e.headers);
        assert!(
            !text.contains(&secret),
            "{} carries the client secret",
            e.event_type
        );
        assert!(
            !text.contains(PASSWORD),
            "{} carries the password",
            e.event_type
        );
    }
    // Both password copies are gone once the site and Authentik have it.
    let pending = stack
        .vault
        .client("identity")
        .get_by_name(&tenant, "sso-owner-password-pending", "test")
        .await;
    assert_eq!(pending.unwrap_err().code(), Some(tonic::Code::NotFound));

    // The tenant's state says SSO is ready.
    let state = tenancy::fold(
        all.iter()
            .filter(|e| e.tenant_id == tenant)
            .map(|e| &e.body),
    );
    assert_eq!(state.sso.status, tenancy::SsoStatus::Ready);
    assert_eq!(state.sso.login_url, done.login_url);
}

fn actor() -> Option<pb::Actor> {
    Some(pb::Actor {
        kind: "operator".into(),
        id: "test".into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn suspension_resume_and_deletion_follow_the_tenant() {
    let stack = Stack::new().await;
    let _identity = stack.start_identity(stack.identity_config()).await;
    let tenant = stack.request_tenant("orbit").await;
    let site = stack.provisioned(&tenant).await;
    stack
        .wait_for(EventContext::Identity, &tenant, "IdentityConfigured", 1, 60)
        .await;
    let email = owner_email("orbit");
    assert!(
        stack
            .authentik
            .can_sign_in("tenant-orbit", &email, PASSWORD)
    );

    stack
        .request(Body::SuspensionRequested(pb::SuspensionRequested {
            tenant_id: tenant.clone(),
            reason: "unpaid".into(),
            requested_by: actor(),
        }))
        .await;
    let events = stack
        .wait_for(EventContext::Identity, &tenant, "IdentityDisabled", 1, 60)
        .await;
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.body, Body::IdentityDisabled(d) if d.users_deactivated == 1))
    );
    assert!(
        !stack
            .authentik
            .can_sign_in("tenant-orbit", &email, PASSWORD)
    );
    let o = stack.objects_of(&tenant, "orbit");
    assert_eq!(o.users[0]["is_active"], false);
    let owner_pk = o.users[0]["pk"].as_i64().unwrap();
    assert!(
        !admin(&stack)
            .check_access("tenant-orbit", owner_pk)
            .await
            .unwrap()
    );
    // The binding stays: an application without one would admit every user.
    assert_eq!(o.bindings.len(), 1);
    assert_eq!(o.bindings[0]["enabled"], true);

    stack
        .request(Body::ResumeRequested(pb::ResumeRequested {
            tenant_id: tenant.clone(),
            reason: "paid".into(),
            requested_by: actor(),
        }))
        .await;
    stack
        .wait_for(EventContext::Identity, &tenant, "IdentityEnabled", 1, 60)
        .await;
    assert!(
        admin(&stack)
            .check_access("tenant-orbit", owner_pk)
            .await
            .unwrap()
    );
    assert!(
        stack
            .authentik
            .can_sign_in("tenant-orbit", &email, PASSWORD)
    );

    stack
        .request(Body::DeletionRequested(pb::DeletionRequested {
            tenant_id: tenant.clone(),
            reason: "closed".into(),
            requested_by: actor(),
        }))
        .await;
    stack
        .wait_for(EventContext::Identity, &tenant, "IdentityRemoved", 1, 90)
        .await;
    assert_eq!(stack.objects_of(&tenant, "orbit").counts(), [0, 0, 0, 0, 0]);
    assert!(
        !stack
            .authentik
            .can_sign_in("tenant-orbit", &email, PASSWORD)
    );
    // The site (and with it its Social Login Keys) is gone.
    assert!(
        !stack.bench.site_dirs().contains(&site.site),
        "the site was dropped"
    );
}

#[tokio::test]
async fn an_outage_is_retried_then_given_up_and_an_operator_retry_finishes_it() {
    let stack = Stack::new().await;
    let _identity = stack.start_identity(stack.identity_config()).await;
    stack.authentik.set_outage(Some(503));
    let tenant = stack.request_tenant("storm").await;
    let events = stack
        .wait_for(
            EventContext::Identity,
            &tenant,
            "IdentityConfigurationFailed",
            1,
            60,
        )
        .await;
    let steps: Vec<&pb::IdentityStepFailed> = events
        .iter()
        .filter_map(|e| match &e.body {
            Body::IdentityStepFailed(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(steps.len(), 4, "one step failure per attempt (4 attempts)");
    assert!(steps[..3].iter().all(|s| s.will_retry && s.step == "group"));
    assert!(!steps[3].will_retry);
    assert!(steps[0].reason.contains("503"), "{}", steps[0].reason);
    let failed = events
        .iter()
        .find_map(|e| match &e.body {
            Body::IdentityConfigurationFailed(f) => Some(f.clone()),
            _ => None,
        })
        .unwrap();
    assert!(failed.retryable);
    assert_eq!(failed.step, "group");
    assert_eq!(stack.objects_of(&tenant, "storm").counts(), [0, 0, 0, 0, 0]);

    // The operator's retry (what `tenantctl retry` appends for a tenant whose SSO failed).
    stack.authentik.set_outage(None);
    stack
        .request(Body::ProvisioningRetryRequested(
            pb::ProvisioningRetryRequested {
                tenant_id: tenant.clone(),
                reason: "Authentik is back".into(),
                requested_by: actor(),
                attempt: 1,
            },
        ))
        .await;
    stack
        .wait_for(EventContext::Identity, &tenant, "IdentityConfigured", 1, 60)
        .await;
    assert_linked(&stack.objects_of(&tenant, "storm"));
    assert!(
        stack
            .authentik
            .can_sign_in("tenant-storm", &owner_email("storm"), PASSWORD)
    );
}

#[tokio::test]
async fn objects_under_our_names_that_are_not_ours_are_never_adopted() {
    let stack = Stack::new().await;
    let _identity = stack.start_identity(stack.identity_config()).await;
    let foreign = stack
        .authentik
        .seed_group("tenant-taken", json!({"tenant_id": "someone-else"}));
    let tenant = stack.request_tenant("taken").await;
    let events = stack
        .wait_for(
            EventContext::Identity,
            &tenant,
            "IdentityConfigurationFailed",
            1,
            60,
        )
        .await;
    let failed = events
        .iter()
        .find_map(|e| match &e.body {
            Body::IdentityConfigurationFailed(f) => Some(f.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(failed.step, "group");
    assert!(
        failed.reason.contains("does not belong to this tenant"),
        "{}",
        failed.reason
    );
    assert!(failed.retryable, "an operator can clean up and retry");
    let snap = stack.authentik.snapshot();
    let group = snap
        .groups
        .iter()
        .find(|g| g["pk"] == foreign.as_str())
        .unwrap();
    assert_eq!(group["attributes"]["tenant_id"], "someone-else");
    assert!(
        snap.users
            .iter()
            .all(|u| u["attributes"]["tenant_id"] != tenant.as_str()),
        "nothing was made for a tenant whose group is taken"
    );
}

#[tokio::test]
async fn two_instances_make_exactly_one_of_each_object_per_tenant() {
    let stack = Stack::new().await;
    let a = stack.start_identity(stack.identity_config()).await;
    let b = stack.start_identity(stack.identity_config()).await;
    let subs = ["twin1", "twin2", "twin3", "twin4", "twin5", "twin6"];
    let mut tenants = Vec::new();
    for s in subs {
        tenants.push((stack.request_tenant(s).await, s));
    }
    for (tenant, sub) in &tenants {
        let events = stack
            .wait_for(EventContext::Identity, tenant, "IdentityConfigured", 1, 90)
            .await;
        let n = events
            .iter()
            .filter(|e| e.event_type == "IdentityConfigured")
            .count();
        assert_eq!(n, 1, "{sub}: configured once");
        assert_linked(&stack.objects_of(tenant, sub));
        assert!(
            stack
                .authentik
                .can_sign_in(&format!("tenant-{sub}"), &owner_email(sub), PASSWORD)
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_tenant_suspended_during_setup_ends_configured_with_its_users_inactive() {
    let stack = Stack::new().await;
    // Setup must still be retrying when the outage ends, which is only after the site is
    // suspended: a retry budget of seconds, not the shared config's ~1 s (seen exhausted under
    // load, ending in IdentityConfigurationFailed before the suspension arrived).
    let mut config = stack.identity_config();
    config.max_attempts = 60;
    let _identity = stack.start_identity(config).await;
    stack.authentik.set_outage(Some(502));
    let tenant = stack.request_tenant("pause").await;
    stack
        .wait_for(EventContext::Identity, &tenant, "IdentityStepFailed", 1, 60)
        .await;
    stack
        .request(Body::SuspensionRequested(pb::SuspensionRequested {
            tenant_id: tenant.clone(),
            reason: "fraud check".into(),
            requested_by: actor(),
        }))
        .await;
    stack
        .wait_for(EventContext::Provisioning, &tenant, "SiteSuspended", 1, 60)
        .await;
    stack.authentik.set_outage(None);
    let events = stack
        .wait_for(EventContext::Identity, &tenant, "IdentityConfigured", 1, 60)
        .await;
    assert!(configured(&events).users_inactive, "set up while suspended");
    let site = stack.provisioned(&tenant).await;
    assert!(
        stack
            .bench
            .social_login_key(&site.site, "authentik")
            .await
            .is_none(),
        "a site in maintenance mode takes no writes; its key follows on resume"
    );
    let email = owner_email("pause");
    assert!(
        !stack
            .authentik
            .can_sign_in("tenant-pause", &email, PASSWORD)
    );
    stack
        .request(Body::ResumeRequested(pb::ResumeRequested {
            tenant_id: tenant.clone(),
            reason: "cleared".into(),
            requested_by: actor(),
        }))
        .await;
    stack
        .wait_for(EventContext::Identity, &tenant, "IdentityEnabled", 1, 60)
        .await;
    assert!(
        stack
            .authentik
            .can_sign_in("tenant-pause", &email, PASSWORD)
    );
    assert_linked(&stack.objects_of(&tenant, "pause"));
    let key = stack
        .bench
        .social_login_key(&site.site, "authentik")
        .await
        .expect("the key is written on resume");
    assert_eq!(key["client_id"], "tenant-pause");
}

#[tokio::test]
async fn a_retry_after_a_late_failure_keeps_the_password_the_owner_changed_since() {
    let stack = Stack::new().await;
    let _identity = stack.start_identity(stack.identity_config()).await;
    // Someone else's application under our slug stops setup after the password is set.
    let admin = admin(&stack);
    admin
        .create_application(&authentik_client::NewApplication {
            name: "Not ours".into(),
            slug: "tenant-later".into(),
            provider: None,
            meta_launch_url: String::new(),
            meta_description: "someone else's".into(),
            meta_publisher: String::new(),
            policy_engine_mode: "any".into(),
            open_in_new_tab: false,
        })
        .await
        .unwrap();
    let tenant = stack.request_tenant("later").await;
    let events = stack
        .wait_for(
            EventContext::Identity,
            &tenant,
            "IdentityConfigurationFailed",
            1,
            60,
        )
        .await;
    let failed = events
        .iter()
        .find_map(|e| match &e.body {
            Body::IdentityConfigurationFailed(f) => Some(f.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(failed.step, "application");
    let email = owner_email("later");
    let user = admin.users_named(&email).await.unwrap().remove(0);
    admin
        .set_password(
            user.pk,
            &secrecy::SecretString::from("Owner-Changed-It-7".to_owned()),
        )
        .await
        .unwrap();
    // The operator removes the stray application and retries.
    admin.delete_application("tenant-later").await.unwrap();
    stack
        .request(Body::ProvisioningRetryRequested(
            pb::ProvisioningRetryRequested {
                tenant_id: tenant.clone(),
                reason: "stray application removed".into(),
                requested_by: actor(),
                attempt: 1,
            },
        ))
        .await;
    stack
        .wait_for(EventContext::Identity, &tenant, "IdentityConfigured", 1, 60)
        .await;
    assert!(
        stack
            .authentik
            .can_sign_in("tenant-later", &email, "Owner-Changed-It-7")
    );
    assert!(
        !stack
            .authentik
            .can_sign_in("tenant-later", &email, PASSWORD)
    );
}
