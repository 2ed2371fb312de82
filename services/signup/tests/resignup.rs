//! A signup whose provisioning failed does not keep its name from its own owner: the same
//! email signing up again gets the subdomain back, anyone else is still told it is taken, and
//! the operator can no longer retry the failed tenant (its name is the new tenant's).

mod common;

use common::*;
use proto::v1::event::Body;
use proto::v1::{self as pb, RetryProvisioningRequest};
use tonic::Code;

#[tokio::test]
async fn the_same_owner_gets_a_failed_signups_subdomain_back() {
    let stack = spawn_stack().await;
    let mut client = stack.client().await;
    let first = request(&tag());
    let failed_tenant = client
        .signup(first.clone())
        .await
        .unwrap()
        .into_inner()
        .tenant_id;

    // Still provisioning: nobody, not even the owner, takes the name.
    let early = expect_code(client.signup(first.clone()).await, Code::AlreadyExists);
    assert_eq!(error_info(&early).0, "SUBDOMAIN_TAKEN");

    stack
        .provision(
            &failed_tenant,
            vec![Body::ProvisioningFailed(pb::ProvisioningFailed {
                tenant_id: failed_tenant.clone(),
                step: pb::ProvisioningStep::CreateSite as i32,
                reason: "bench refused".into(),
                retryable: false,
            })],
        )
        .await;

    // Someone else: still taken.
    let mut stranger = request(&tag());
    stranger.subdomain = first.subdomain.clone();
    let taken = expect_code(client.signup(stranger).await, Code::AlreadyExists);
    assert_eq!(error_info(&taken).0, "SUBDOMAIN_TAKEN");

    // The owner again (address in other case): a new tenant with the same name.
    let mut again = first.clone();
    again.email = again.email.to_uppercase();
    let second = client.signup(again).await.unwrap().into_inner();
    assert_ne!(second.tenant_id, failed_tenant);
    assert_eq!(second.subdomain, first.subdomain);

    // The failed tenant cannot be retried into a collision.
    let mut admin = stack.admin().await;
    let refused = expect_code(
        admin
            .retry_provisioning(authorized(RetryProvisioningRequest {
                tenant_id: failed_tenant.clone(),
                reason: "try again".into(),
            }))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(error_info(&refused).0, "SUBDOMAIN_REASSIGNED");
    assert!(refused.message().contains(&second.tenant_id), "{refused:?}");
}
