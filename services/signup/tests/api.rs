//! WatchSignup, TenantAdmin, and clients that are not our Rust client: gRPC reflection, health,
//! grpc-web over HTTP/1.1.

mod common;

use common::*;
use futures::StreamExt;
use prost::Message;
use proto::v1::event::Body;
use proto::v1::{
    self as pb, ChangePlanRequest, CheckSubdomainRequest, CheckSubdomainResponse,
    DeleteTenantRequest, ResumeTenantRequest, RetryProvisioningRequest, SuspendTenantRequest,
    TenantStatus, WatchSignupRequest,
};
use testkit::READER_TOKEN;
use tonic::Code;

fn provisioning_path(tenant: &str) -> Vec<Body> {
    let t = tenant.to_owned();
    let site = "acme.erp.example.com".to_owned();
    vec![
        Body::PlacementChosen(pb::PlacementChosen {
            tenant_id: t.clone(),
            bench: "bench-1".into(),
            region: "eu".into(),
            site: site.clone(),
            db_name: "_x".into(),
        }),
        Body::SiteCreated(pb::SiteCreated {
            tenant_id: t.clone(),
            bench: "bench-1".into(),
            site: site.clone(),
            ..Default::default()
        }),
        Body::AppsInstalled(pb::AppsInstalled {
            tenant_id: t.clone(),
            site: site.clone(),
            apps: vec!["erpnext".into()],
            duration_ms: 1,
        }),
        Body::SiteConfigured(pb::SiteConfigured {
            tenant_id: t.clone(),
            site: site.clone(),
            ..Default::default()
        }),
        Body::OwnerUserCreated(pb::OwnerUserCreated {
            tenant_id: t.clone(),
            site: site.clone(),
            ..Default::default()
        }),
        Body::TenantProvisioned(pb::TenantProvisioned {
            tenant_id: t,
            site: site.clone(),
            bench: "bench-1".into(),
            url: format!("https://{site}"),
            ..Default::default()
        }),
    ]
}

#[tokio::test]
async fn watch_signup_returns_history_then_live_events_in_order_and_ends_at_the_final_one() {
    let stack = spawn_stack().await;
    let mut client = stack.client().await;
    let tenant = client
        .signup(request(&tag()))
        .await
        .unwrap()
        .into_inner()
        .tenant_id;
    let mut path = provisioning_path(&tenant);
    let later = path.split_off(2);
    // Before the watch: TenantRequested + two provisioning events (and an unrelated one).
    stack.provision(&tenant, path).await;
    let mut updates = client
        .watch_signup(WatchSignupRequest {
            tenant_id: tenant.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(updates.next().await.expect("history").expect("ok"));
    }
    // After the watch began: the rest, live.
    stack.provision(&tenant, later).await;
    while let Some(update) = updates.next().await {
        seen.push(update.expect("ok"));
    }
    let steps: Vec<&str> = seen.iter().map(|p| p.step.as_str()).collect();
    assert_eq!(
        steps,
        [
            "request_received",
            "placement_chosen",
            "site_created",
            "apps_installed",
            "site_configured",
            "owner_user_created",
            "tenant_provisioned"
        ]
    );
    assert!(seen.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert!(seen.windows(2).all(|w| w[0].percent < w[1].percent));
    let last = seen.last().unwrap();
    assert!(last.done && !last.failed);
    assert_eq!(last.url, "https://acme.erp.example.com");
    assert!(
        seen.iter()
            .all(|p| p.tenant_id == tenant && !p.label.is_empty())
    );

    // Watching a finished signup replays it and ends.
    let again: Vec<_> = client
        .watch_signup(WatchSignupRequest { tenant_id: tenant })
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(again.len(), 7);
}

#[tokio::test]
async fn watch_signup_ends_on_failure_but_follows_an_operator_retry() {
    let stack = spawn_stack().await;
    let mut client = stack.client().await;
    let tenant = client
        .signup(request(&tag()))
        .await
        .unwrap()
        .into_inner()
        .tenant_id;
    let failed = Body::ProvisioningFailed(pb::ProvisioningFailed {
        tenant_id: tenant.clone(),
        step: pb::ProvisioningStep::CreateSite as i32,
        reason: "database server unreachable".into(),
        retryable: true,
    });
    stack
        .provision(&tenant, vec![provisioning_path(&tenant).remove(0), failed])
        .await;
    let ended: Vec<_> = client
        .watch_signup(WatchSignupRequest {
            tenant_id: tenant.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.unwrap())
        .collect()
        .await;
    let last = ended.last().unwrap();
    assert!(last.failed, "{last:?}");
    assert_eq!(
        last.reason,
        format!("{} Support reference: {tenant}.", tenancy::FAILED_REASON),
        "a person reads a safe reason and a reference, not the bench's words"
    );

    // The operator retries; a new watch does not stop at the old failure.
    let mut admin = stack.admin().await;
    admin
        .retry_provisioning(authorized(RetryProvisioningRequest {
            tenant_id: tenant.clone(),
            reason: "database is back".into(),
        }))
        .await
        .unwrap();
    let mut updates = client
        .watch_signup(WatchSignupRequest {
            tenant_id: tenant.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut steps = Vec::new();
    let mut percents = Vec::new();
    for _ in 0..4 {
        let update = updates.next().await.unwrap().unwrap();
        percents.push(update.percent);
        steps.push(update.step);
    }
    assert_eq!(
        steps,
        [
            "request_received",
            "placement_chosen",
            "failed",
            "retry_requested"
        ]
    );
    stack.provision(&tenant, provisioning_path(&tenant)).await;
    let rest: Vec<_> = updates.map(|r| r.unwrap()).collect().await;
    assert!(rest.last().unwrap().done);
    // The operator's retry starts the work over; the bar does not go back to 5 %.
    percents.extend(rest.iter().map(|u| u.percent));
    assert!(
        percents.windows(2).all(|w| w[0] <= w[1]),
        "progress went backwards: {percents:?}"
    );
    assert_eq!(
        percents[3], percents[2],
        "retry_requested holds the bar where it was"
    );
}

#[tokio::test]
async fn watch_signup_refuses_unknown_and_malformed_tenants() {
    let stack = spawn_stack().await;
    let mut client = stack.client().await;
    let unknown = tenancy::TenantId::new().to_string();
    expect_code(
        client
            .watch_signup(WatchSignupRequest { tenant_id: unknown })
            .await,
        Code::NotFound,
    );
    let status = expect_code(
        client
            .watch_signup(WatchSignupRequest {
                tenant_id: "../etc".into(),
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["tenant_id"]);
}

#[tokio::test]
async fn tenant_admin_needs_the_bearer_token() {
    let stack = spawn_stack().await;
    let mut admin = stack.admin().await;
    let req = || SuspendTenantRequest {
        tenant_id: tenancy::TenantId::new().to_string(),
        reason: String::new(),
    };
    expect_code(admin.suspend_tenant(req()).await, Code::Unauthenticated);
    let mut wrong = tonic::Request::new(req());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    expect_code(admin.suspend_tenant(wrong).await, Code::Unauthenticated);
    // The scheme is case-insensitive.
    let mut lower = tonic::Request::new(req());
    lower.metadata_mut().insert(
        "authorization",
        format!("bearer {ADMIN_TOKEN}").parse().unwrap(),
    );
    expect_code(admin.suspend_tenant(lower).await, Code::NotFound);
    expect_code(
        admin.suspend_tenant(authorized(req())).await,
        Code::NotFound,
    );
    // A read-only operator may not command.
    let mut reader = tonic::Request::new(req());
    reader.metadata_mut().insert(
        "authorization",
        format!("Bearer {READER_TOKEN}").parse().unwrap(),
    );
    let status = expect_code(admin.suspend_tenant(reader).await, Code::PermissionDenied);
    assert!(
        status.message().contains("test-reader"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn the_public_port_does_not_serve_the_operator_api() {
    let stack = spawn_stack().await;
    // TenantAdmin is not routed on the public (grpc-web, CORS) port, even with a valid token.
    let mut on_public =
        proto::v1::tenant_admin_client::TenantAdminClient::connect(stack.endpoint())
            .await
            .unwrap();
    expect_code(
        on_public
            .suspend_tenant(authorized(SuspendTenantRequest {
                tenant_id: tenancy::TenantId::new().to_string(),
                reason: String::new(),
            }))
            .await,
        Code::Unimplemented,
    );
    // And the operator port serves nothing public.
    let mut signup_on_operator =
        proto::v1::signup_service_client::SignupServiceClient::connect(stack.operator_endpoint())
            .await
            .unwrap();
    expect_code(
        signup_on_operator.signup(request("wrongport")).await,
        Code::Unimplemented,
    );
}

#[tokio::test]
async fn tenant_admin_commands_are_checked_by_the_lifecycle_and_appended() {
    let stack = spawn_stack().await;
    let mut client = stack.client().await;
    let mut admin = stack.admin().await;
    let tenant = client
        .signup(request(&tag()))
        .await
        .unwrap()
        .into_inner()
        .tenant_id;
    let suspend = || {
        authorized(SuspendTenantRequest {
            tenant_id: tenant.clone(),
            reason: "unpaid".into(),
        })
    };
    // Still Requested: suspension is refused with advice.
    let status = expect_code(
        admin.suspend_tenant(suspend()).await,
        Code::FailedPrecondition,
    );
    assert!(
        status.message().contains("once it is Active"),
        "{}",
        status.message()
    );

    stack.provision(&tenant, provisioning_path(&tenant)).await;
    // The operator is the one the token names, whatever the caller claims about itself.
    let mut op = suspend();
    op.metadata_mut()
        .insert("x-tenantry-operator", "mallory".parse().unwrap());
    let done = admin.suspend_tenant(op).await.unwrap().into_inner();
    assert_eq!(done.status, TenantStatus::Active as i32); // Suspended once the site is
    assert!(done.sequence > 0 && !done.event_id.is_empty());
    expect_code(admin.suspend_tenant(suspend()).await, Code::AlreadyExists);

    let plan = |p: &str| {
        authorized(ChangePlanRequest {
            tenant_id: tenant.clone(),
            plan: p.into(),
        })
    };
    let status = expect_code(admin.change_plan(plan("gold")).await, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["plan"]);
    admin.change_plan(plan("business")).await.unwrap();
    expect_code(
        admin.change_plan(plan("business")).await,
        Code::FailedPrecondition,
    );

    let resume = || {
        authorized(ResumeTenantRequest {
            tenant_id: tenant.clone(),
            reason: String::new(),
        })
    };
    // The suspension is still pending: resuming countermands it (not an error)…
    admin
        .resume_tenant(resume())
        .await
        .expect("resume while a suspension is pending is accepted");
    // …after which the tenant is plainly Active, and another resume has nothing to undo.
    expect_code(
        admin.resume_tenant(resume()).await,
        Code::FailedPrecondition,
    );
    let delete = |confirm: &str| {
        authorized(DeleteTenantRequest {
            tenant_id: tenant.clone(),
            reason: "customer left".into(),
            confirm: confirm.into(),
        })
    };
    let status = expect_code(
        admin.delete_tenant(delete("yes")).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["confirm"]);
    let deleted = admin
        .delete_tenant(delete(&tenant))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.status, TenantStatus::Deleting as i32);
    // A deletion that got stuck can be requested again; nothing else can.
    let again = admin
        .delete_tenant(delete(&tenant))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.status, TenantStatus::Deleting as i32);
    expect_code(
        admin.change_plan(plan("enterprise")).await,
        Code::FailedPrecondition,
    );

    let lifecycle: Vec<_> = stack
        .events()
        .await
        .into_iter()
        .filter(|e| {
            e.subject
                == stack
                    .store
                    .subject(eventstore::EventContext::Lifecycle, &tenant)
        })
        .collect();
    let types: Vec<&str> = lifecycle.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "SuspensionRequested",
            "PlanChangeRequested",
            "ResumeRequested",
            "DeletionRequested",
            "DeletionRequested"
        ]
    );
    assert!(
        lifecycle
            .iter()
            .all(|e| e.correlation_id.as_deref() == Some(tenant.as_str()))
    );
    match &lifecycle[0].body {
        Body::SuspensionRequested(s) => {
            let by = s.requested_by.as_ref().unwrap();
            assert_eq!(
                (by.kind.as_str(), by.id.as_str()),
                ("operator", "test-admin")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn concurrent_operator_commands_are_decided_one_after_the_other() {
    let stack = spawn_stack().await;
    let mut client = stack.client().await;
    let tenant = client
        .signup(request(&tag()))
        .await
        .unwrap()
        .into_inner()
        .tenant_id;
    stack.provision(&tenant, provisioning_path(&tenant)).await;
    let admin = stack.admin().await;
    let calls = (0..8).map(|_| {
        let mut admin = admin.clone();
        let tenant = tenant.clone();
        tokio::spawn(async move {
            admin
                .suspend_tenant(authorized(SuspendTenantRequest {
                    tenant_id: tenant,
                    reason: String::new(),
                }))
                .await
        })
    });
    let results = futures::future::join_all(calls).await;
    let ok = results
        .iter()
        .filter(|r| r.as_ref().unwrap().is_ok())
        .count();
    // One suspension is recorded; the others see it pending (or lose every race and say so).
    assert_eq!(ok, 1);
    let suspensions = stack
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "SuspensionRequested")
        .count();
    assert_eq!(suspensions, 1);
}

#[tokio::test]
async fn services_are_listed_through_reflection_and_report_healthy() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let stack = spawn_stack().await;
    // Each port lists and reports what it serves, and only that.
    for (endpoint, served, not_served) in [
        (
            stack.endpoint(),
            "tenantry.v1.SignupService",
            "tenantry.v1.TenantAdmin",
        ),
        (
            stack.operator_endpoint(),
            "tenantry.v1.TenantAdmin",
            "tenantry.v1.SignupService",
        ),
    ] {
        let channel = tonic::transport::Endpoint::from_shared(endpoint)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut reflection = ServerReflectionClient::new(channel.clone());
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = reflection
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let response = responses.next().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection answer");
        };
        let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        names.sort();
        assert!(
            names.iter().any(|n| n == served) && names.iter().any(|n| n == "grpc.health.v1.Health"),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n == not_served), "{names:?}");

        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: served.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            answer.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
        let unknown = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: not_served.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
    }
}

/// One grpc-web frame: flag byte, big-endian length, payload.
fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Splits a grpc-web body into (data messages, trailer text).
fn unframe(mut body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let mut messages = Vec::new();
    let mut trailers = String::new();
    while body.len() >= 5 {
        let flag = body[0];
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let payload = &body[5..5 + len];
        if flag & 0x80 != 0 {
            trailers.push_str(std::str::from_utf8(payload).unwrap());
        } else {
            messages.push(payload.to_vec());
        }
        body = &body[5 + len..];
    }
    (messages, trailers)
}

#[tokio::test]
async fn a_grpc_web_request_over_http1_succeeds_with_cors() {
    let stack = spawn_stack().await;
    let http = reqwest::Client::builder().http1_only().build().unwrap();
    let url = format!(
        "{}/tenantry.v1.SignupService/CheckSubdomain",
        stack.endpoint()
    );
    let origin = "https://app.example.com";

    // The browser's preflight.
    let preflight = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-grpc-web")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], origin);

    let t = tag();
    let message = CheckSubdomainRequest {
        subdomain: format!("web-{t}"),
        organisation: String::new(),
    };
    let response = http
        .post(&url)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", origin)
        .body(frame(0, &message.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(response.headers()["access-control-allow-origin"], origin);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/grpc-web")
    );
    let body = response.bytes().await.unwrap();
    let (messages, trailers) = unframe(&body);
    assert!(trailers.contains("grpc-status:0"), "{trailers:?}");
    assert_eq!(messages.len(), 1);
    let answer = CheckSubdomainResponse::decode(messages[0].as_slice()).unwrap();
    assert!(answer.valid && answer.available, "{answer:?}");

    // An origin that is not configured gets no CORS grant.
    let other = http
        .post(&url)
        .header("content-type", "application/grpc-web+proto")
        .header("origin", "https://evil.example.com")
        .body(frame(0, &message.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_service_operator_is_recorded_as_a_service_on_what_it_asks_for() {
    let billing_token = "billing-service-token-0123456789";
    let person_token = "mallory-person-token-0123456789";
    let operators = format!(
        "[operators.billing]\ntoken_sha256 = \"{}\"\nrole = \"admin\"\nservice = true\n[operators.mallory]\ntoken_sha256 = \"{}\"\nrole = \"admin\"\n",
        svc::auth::token_sha256(billing_token),
        svc::auth::token_sha256(person_token)
    );
    let stack = spawn_stack_with(|c| {
        c.operator_auth = Some(svc::OperatorAuth::from_toml(&operators).unwrap());
    })
    .await;
    let mut client = stack.client().await;
    let tenant = client
        .signup(request(&tag()))
        .await
        .unwrap()
        .into_inner()
        .tenant_id;
    stack.provision(&tenant, provisioning_path(&tenant)).await;
    let mut admin = stack.admin().await;
    let mut r = tonic::Request::new(proto::v1::SuspendTenantRequest {
        tenant_id: tenant.clone(),
        reason: "invoice INV-1 unpaid".into(),
    });
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {billing_token}").parse().unwrap(),
    );
    admin.suspend_tenant(r).await.expect("billing may suspend");
    let by = stack
        .events()
        .await
        .into_iter()
        .find_map(|e| match e.body {
            Body::SuspensionRequested(s) if s.tenant_id == tenant => s.requested_by,
            _ => None,
        })
        .expect("SuspensionRequested");
    assert_eq!((by.kind.as_str(), by.id.as_str()), ("service", "billing"));
    assert!(by.on_behalf_of.is_empty(), "billing acted on its own");

    // A service names the person it acts for; a malformed name is refused, naming the field.
    let resume = |token: &str, person: &str| {
        let mut r = tonic::Request::new(proto::v1::ResumeTenantRequest {
            tenant_id: tenant.clone(),
            reason: "paid".into(),
        });
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r.metadata_mut()
            .insert("tenantry-on-behalf-of", person.parse().unwrap());
        r
    };
    let refused = admin
        .resume_tenant(resume(billing_token, "alice smith"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("tenantry-on-behalf-of"),
        "{}",
        refused.message()
    );
    // A person cannot speak for someone else: the header is ignored, the actor is themselves.
    stack
        .provision(
            &tenant,
            vec![Body::SiteSuspended(proto::v1::SiteSuspended {
                tenant_id: tenant.clone(),
                ..Default::default()
            })],
        )
        .await;
    admin
        .resume_tenant(resume(person_token, "alice"))
        .await
        .expect("mallory may resume");
    let by = stack
        .events()
        .await
        .into_iter()
        .find_map(|e| match e.body {
            Body::ResumeRequested(r) if r.tenant_id == tenant => r.requested_by,
            _ => None,
        })
        .expect("ResumeRequested");
    assert_eq!(
        (by.kind.as_str(), by.id.as_str(), by.on_behalf_of.as_str()),
        ("operator", "mallory", "")
    );
}
