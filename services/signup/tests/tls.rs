//! With a certificate configured, both of the gateway's ports speak TLS only.

mod common;

use std::time::Duration;

use common::*;
use proto::v1::signup_service_client::SignupServiceClient;
use proto::v1::tenant_admin_client::TenantAdminClient;
use proto::v1::{CheckSubdomainRequest, SuspendTenantRequest};
use tonic::Code;
use tonic::transport::Endpoint;

fn check() -> CheckSubdomainRequest {
    CheckSubdomainRequest {
        subdomain: format!("tls-{}", tag()),
        organisation: String::new(),
    }
}

#[tokio::test]
async fn no_port_answers_without_tls_when_tls_is_configured() {
    let (_dir, files) = testkit::tls_files();
    let stack = spawn_stack_with(|c| c.grpc.tls = testkit::server_tls(&files, false)).await;
    let public = format!("https://localhost:{}", stack.addr.port());
    let operator = stack
        .operator_endpoint()
        .replace("http://127.0.0.1", "https://localhost");

    // Plaintext HTTP/2 gets no answer from either port.
    for plain in [stack.endpoint(), stack.operator_endpoint()] {
        let channel = Endpoint::from_shared(plain.clone())
            .unwrap()
            .timeout(Duration::from_secs(5))
            .connect_lazy();
        let err = SignupServiceClient::new(channel)
            .check_subdomain(check())
            .await
            .unwrap_err();
        assert_ne!(err.code(), Code::Ok, "{plain} answered in plaintext");
        assert!(
            matches!(
                err.code(),
                Code::Unavailable
                    | Code::Unknown
                    | Code::Internal
                    | Code::DeadlineExceeded
                    | Code::Cancelled
            ),
            "{plain}: {err:?}"
        );
    }

    // A client that trusts the CA gets answers on both.
    let trusted = testkit::client_tls(&files, false);
    let channel = trusted.endpoint(&public).unwrap().connect().await.unwrap();
    let answer = SignupServiceClient::new(channel)
        .check_subdomain(check())
        .await
        .unwrap()
        .into_inner();
    assert!(answer.valid && answer.available);
    let channel = trusted
        .endpoint(&operator)
        .unwrap()
        .connect()
        .await
        .unwrap();
    expect_code(
        TenantAdminClient::new(channel)
            .suspend_tenant(authorized(SuspendTenantRequest {
                tenant_id: tenancy::TenantId::new().to_string(),
                reason: String::new(),
            }))
            .await,
        Code::NotFound,
    );

    // A client that trusts another CA refuses the server.
    let (_other_dir, other) = testkit::tls_files();
    let stranger = testkit::client_tls(&other, false);
    assert!(
        stranger.endpoint(&public).unwrap().connect().await.is_err(),
        "a certificate from an unknown CA was accepted"
    );
}
